//! A full disk (SPEC §4, §5): a build whose data does not fit in the
//! store's filesystem exits 1 saying the disk is full; nothing partial is
//! served (`verify` is clean, the work area is gone after the next open,
//! every snapshot left is one a whole build commits), and once there is
//! room (a bigger remount, or `prune --all`) the same build succeeds with
//! the digest of a normal store.
//!
//! Root only (mounts a small tmpfs, or a loop-mounted ext2 image); each
//! test prints a skip line otherwise. The mounts are undone by a guard,
//! whatever happens.
#![cfg(unix)]

mod common;
mod stress;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use stress::*;

const KIB: usize = 1024;

/// Which small filesystem holds the store.
#[derive(Clone, Copy, Debug)]
enum Small {
    Tmpfs,
    Ext2,
}

/// Mounts a `mib` MiB filesystem at `env`'s `small/` (its image, for
/// ext2, in `env`'s folder); `None` (with the reason printed) when that
/// cannot be done here.
fn mount_small(env: &Env, kind: Small, mib: u64, test: &str) -> Option<(Mount, PathBuf)> {
    let at = env.path("small");
    std::fs::create_dir(&at).expect("mount point");
    let mounted = match kind {
        Small::Tmpfs => Mount::tmpfs(&at, &format!("size={mib}m")),
        Small::Ext2 => {
            let img = env.path("ext2.img");
            std::fs::File::create(&img)
                .and_then(|f| f.set_len(mib << 20))
                .expect("image");
            match Command::new("mkfs.ext2")
                .args(["-q", "-F", "-m", "0"])
                .arg(&img)
                .output()
            {
                Ok(o) if o.status.success() => Mount::loop_image(&img, &at, None),
                Ok(o) => Err(format!(
                    "mkfs.ext2: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => Err(format!("mkfs.ext2: {e}")),
            }
        }
    };
    match mounted {
        Ok(m) => Some((m, at.join("store"))),
        Err(e) => {
            eprintln!("skipped {test}: cannot mount a small {kind:?} ({e})");
            None
        }
    }
}

fn says_disk_full(run: &Run) {
    run.fails(1);
    assert!(
        run.stderr
            .to_lowercase()
            .contains("no space left on device"),
        "{}: the message does not say the disk is full: {}",
        run.what,
        run.stderr
    );
}

/// After a failed build: `verify` (the next open) is clean, no work area
/// is left, and every snapshot is one of `allowed` (whole builds' commits).
fn nothing_partial(store: &Path, allowed: &BTreeSet<String>, when: &str) {
    verify_ok(store);
    assert!(
        work_entries(store).is_empty(),
        "{when}: work/ holds {:?} after the next open",
        work_entries(store)
    );
    let strange: Vec<_> = snapshot_keys(store).difference(allowed).cloned().collect();
    assert!(
        strange.is_empty(),
        "{when}: snapshots no whole build commits: {strange:?}"
    );
}

/// A graph importing `dir` under a small file, with its files re-moded
/// (a kept copy, every byte written again) when `copy_mode` is set.
fn graph(dir: &str, copy_mode: bool) -> Value {
    let mut place = json!({"base": "note", "path": "/data", "source": "src"});
    if copy_mode {
        place["mode"] = json!("0600");
    }
    json!({
        "version": 1,
        "ops": {
            "src": {"local": {"path": dir}},
            "note": {"mkfile": {"path": "/NOTE", "data": "full disks\n"}},
            "out": {"with_directory": place}
        },
        "outputs": {"default": "out"}
    })
}

/// A normal store's digest and snapshots for `g`.
fn reference(env: &Env, g: &Path, name: &str) -> (String, BTreeSet<String>) {
    let store = env.path(&format!("ref-{name}"));
    let run = env.build_in(&store, g, &[]);
    run.ok();
    (run.digest(), snapshot_keys(&store))
}

#[test]
fn a_build_too_big_for_the_disk_fails_cleanly_then_succeeds_after_a_remount() {
    let test = "a_build_too_big_for_the_disk_fails_cleanly_then_succeeds_after_a_remount";
    if !root_or_skip(test) {
        return;
    }
    let env = Env::new();
    big_files_tree(&env.ctx.join("big"), 40, 256 * KIB, 1); // 10 MiB
    let g = env.graph("g", &graph("big", false));
    let (digest, keys) = reference(&env, &g, "g");
    let Some((_mount, store)) = mount_small(&env, Small::Tmpfs, 8, test) else {
        return;
    };
    for attempt in 0..2 {
        let run = env.build_in(&store, &g, &[]);
        says_disk_full(&run);
        nothing_partial(&store, &keys, &format!("failed build {attempt}"));
        assert!(
            snapshot_keys(&store).len() < keys.len(),
            "the output was committed though the build failed"
        );
    }
    let out = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(env.path("small"))
        .output()
        .expect("mount");
    assert!(out.status.success(), "remount: {out:?}");
    let run = env.build_in(&store, &g, &[]);
    run.ok();
    assert_eq!(run.digest(), digest, "the build once there is room");
    nothing_partial(&store, &keys, "after the remount");
    assert_eq!(snapshot_keys(&store), keys);
}

/// A store holding an earlier build has no room for a new one, whose
/// import fits but whose re-moded copy does not: the import stays (it is
/// whole), the merge is discarded; `prune --all` makes room and the build
/// succeeds.
fn room_by_prune(kind: Small, test: &str) {
    if !root_or_skip(test) {
        return;
    }
    let env = Env::new();
    big_files_tree(&env.ctx.join("old"), 16, 256 * KIB, 2); // 4 MiB
    big_files_tree(&env.ctx.join("new"), 10, 256 * KIB, 3); // 2.5 MiB, twice
    let g_old = env.graph("old", &graph("old", false));
    let g_new = env.graph("new", &graph("new", true));
    let (old_digest, old_keys) = reference(&env, &g_old, "old");
    let (new_digest, new_keys) = reference(&env, &g_new, "new");
    let allowed: BTreeSet<String> = old_keys.union(&new_keys).cloned().collect();
    let Some((_mount, store)) = mount_small(&env, kind, 8, test) else {
        return;
    };
    let run = env.build_in(&store, &g_old, &[]);
    run.ok();
    assert_eq!(run.digest(), old_digest);

    let run = env.build_in(&store, &g_new, &[]);
    says_disk_full(&run);
    nothing_partial(&store, &allowed, "the failed build");
    let left = snapshot_keys(&store);
    assert!(
        left.is_superset(&old_keys),
        "the failed build removed the earlier snapshots"
    );
    assert!(
        !new_keys.is_subset(&left),
        "the failed build's output was committed"
    );
    eprintln!(
        "{test}: failed as it should ({}), {} of its {} snapshots committed whole",
        run.error().trim(),
        left.intersection(&new_keys).count(),
        new_keys.len()
    );

    prune_all(&store);
    let run = env.build_in(&store, &g_new, &[]);
    run.ok();
    assert_eq!(run.digest(), new_digest, "the build after prune --all");
    nothing_partial(&store, &new_keys, "after prune and rebuild");
    assert_eq!(snapshot_keys(&store), new_keys);
}

#[test]
fn a_full_tmpfs_store_builds_after_prune() {
    room_by_prune(Small::Tmpfs, "a_full_tmpfs_store_builds_after_prune");
}

#[test]
fn a_full_ext2_store_builds_after_prune() {
    room_by_prune(Small::Ext2, "a_full_ext2_store_builds_after_prune");
}

/// SPEC §5: an error names the op (by its graph name), its kind, and the
/// path. A full disk names only a path in the store's work area.
#[test]
fn a_full_disk_error_names_the_op() {
    let test = "a_full_disk_error_names_the_op";
    if !root_or_skip(test) {
        return;
    }
    let env = Env::new();
    big_files_tree(&env.ctx.join("big"), 40, 256 * KIB, 1);
    let g = env.graph("g", &graph("big", false));
    let Some((_mount, store)) = mount_small(&env, Small::Tmpfs, 8, test) else {
        return;
    };
    let run = env.build_in(&store, &g, &[]);
    says_disk_full(&run);
    let err = run.error();
    assert!(
        err.contains("`src`") && err.contains("local"),
        "the message names neither the op `src` nor its kind: {err}"
    );
}

/// A filesystem out of inodes (not of bytes): the store still opens, so
/// that `verify` can run and `prune --all` can make room, and a build
/// fails with exit 1 ("no space left on device"), not 3 (store unusable).
#[test]
fn a_store_out_of_inodes_still_opens_and_prunes() {
    let test = "a_store_out_of_inodes_still_opens_and_prunes";
    if !root_or_skip(test) {
        return;
    }
    let env = Env::new();
    small_files_tree(&env.ctx.join("a"), 150, 4);
    small_files_tree(&env.ctx.join("b"), 100, 5);
    let g_a = env.graph("a", &graph("a", false));
    let g_b = env.graph("b", &graph("b", false));
    let (b_digest, _) = reference(&env, &g_b, "b");
    let at = env.path("small");
    std::fs::create_dir(&at).expect("mount point");
    let _mount = match Mount::tmpfs(&at, "size=64m,nr_inodes=400") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped {test}: {e}");
            return;
        }
    };
    let store = at.join("store");
    env.build_in(&store, &g_a, &[]).ok();
    // Use up the inodes left, beside the store.
    let fill = at.join("fill");
    std::fs::create_dir(&fill).expect("fill dir");
    let mut n = 0;
    while std::fs::File::create(fill.join(n.to_string())).is_ok() {
        n += 1;
    }
    let run = env.build_in(&store, &g_b, &[]);
    says_disk_full(&run);
    verify_ok(&store);
    std::fs::remove_dir_all(&fill).expect("unfill");
    // Fill again, then make room with prune alone.
    std::fs::create_dir(&fill).expect("fill dir");
    let mut k = 0;
    while k < n && std::fs::File::create(fill.join(k.to_string())).is_ok() {
        k += 1;
    }
    prune_all(&store);
    let run = env.build_in(&store, &g_b, &[]);
    run.ok();
    assert_eq!(run.digest(), b_digest);
}
