//! Crash safety (SPEC §4): a build killed with SIGKILL at any moment
//! leaves a store that the next command uses without error; unfinished
//! work is discarded, never served, and the store does not grow with it.
//!
//! The main test builds one graph (a `local` import of a few thousand small
//! files, a fused mkdir+mkfile, a chain of three `with_directory` and a
//! `copy` with a mode, flattened into one merge) and kills it at 20+
//! moments drawn by a seeded generator, stratified over the measured length
//! of a fresh build so that they cover it from the store's opening to the
//! last commit. Every kill reuses the same store; after every other kill
//! the store is pruned, so that the next build starts from nothing again,
//! and in between a build resumes on top of what the killed one committed.
//!
//! Knobs for longer runs by hand: `HM_CRASH_SEED`, `HM_CRASH_KILLS`,
//! `HM_CRASH_FILES`.
#![cfg(unix)]

mod common;
mod stress;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use stress::*;

/// The top-level entries a store may hold (src/snapshot/native.rs).
const STORE_ENTRIES: [&str; 6] = [
    "VERSION",
    "holders",
    "lock",
    "snapshots",
    "stat-cache",
    "work",
];

fn graph() -> Value {
    json!({
        "version": 1,
        "epoch": 7,
        "ops": {
            "src": {"local": {"path": "src"}},
            "etc": {"mkdir": {"path": "/etc"}},
            "motd": {"mkfile": {"base": "etc", "path": "/etc/motd", "data": "hello\n"}},
            "a": {"with_directory": {"base": "motd", "path": "/srv/a", "source": "src"}},
            "b": {"with_directory": {"base": "a", "path": "/srv/b", "source": "src",
                                     "source_path": "/d01"}},
            "c": {"with_directory": {"base": "b", "path": "/srv/c", "source": "src",
                                     "exclude": ["d0*"]}},
            "d": {"copy": {"base": "c", "source": "src", "src": "/d02", "dest": "/opt/d02",
                           "mode": "0600", "create_dest_path": true}}
        },
        "outputs": {"default": "d"}
    })
}

/// Checks what the next command after a kill must find: `verify` exits 0,
/// and once it has opened the store no work area is left; every snapshot
/// is one the same graph commits in a fresh store (nothing else is served).
fn check_after(store: &Path, fresh_keys: &BTreeSet<String>, when: &str) {
    verify_ok(store);
    let work = work_entries(store);
    assert!(
        work.is_empty(),
        "{when}: work/ still holds {work:?} after the next command opened the store"
    );
    let keys = snapshot_keys(store);
    let strange: Vec<_> = keys.difference(fresh_keys).collect();
    assert!(
        strange.is_empty(),
        "{when}: snapshots a fresh build never commits: {strange:?}"
    );
    let top = names(store);
    for n in &top {
        assert!(
            STORE_ENTRIES.contains(&n.as_str()),
            "{when}: unexpected entry {n:?} at the top of the store: {top:?}"
        );
    }
    // A kill inside the stat cache's save leaves its temporary file (a
    // known bug, `a_kill_while_saving_the_stat_cache_leaves_nothing`):
    // said, not failed on, so that this test holds everything else.
    let (n, bytes) = stat_cache_leftovers(store);
    if n > 0 {
        eprintln!("{when}: {n} stat-cache temporary files ({bytes} bytes) left (known bug)");
    }
}

/// The temporary files of stat-cache saves left in the store, and their size.
fn stat_cache_leftovers(store: &Path) -> (usize, u64) {
    let dir = store.join("stat-cache");
    names(&dir)
        .into_iter()
        .filter(|n| n.contains(".tmp"))
        .fold((0, 0), |(n, b), f| {
            let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
            (n + 1, b + len)
        })
}

#[test]
fn sigkill_at_random_moments_leaves_a_usable_store() {
    let seed = env_num("HM_CRASH_SEED", 0x5EED_C0DE);
    let want_kills = env_num("HM_CRASH_KILLS", 22) as usize;
    let files = env_num("HM_CRASH_FILES", 5000) as usize;
    let started = Instant::now();

    let env = Env::in_dir(&fast_parent());
    small_files_tree(&env.ctx.join("src"), files, seed);
    let g = env.graph("g", &graph());

    // A fresh store: the digest and the snapshots a whole build commits;
    // then, its stat cache warm (as in the store under test after its
    // first build), how long a build of everything takes, and its size.
    let fresh = env.path("fresh");
    let run = env.build_in(&fresh, &g, &["--progress", "quiet"]);
    run.ok();
    let digest = run.digest();
    let fresh_keys = snapshot_keys(&fresh);
    assert!(
        fresh_keys.len() >= 3,
        "a fresh build commits the import, the file op and the merge: {fresh_keys:?}"
    );
    prune_all(&fresh);
    let t = Instant::now();
    let run = env.build_in(&fresh, &g, &["--progress", "quiet"]);
    let build_time = t.elapsed();
    run.ok();
    assert_eq!(run.digest(), digest);
    assert_eq!(snapshot_keys(&fresh), fresh_keys);
    verify_ok(&fresh);
    let fresh_du = du_sb(&fresh);
    let fresh_physical = du_physical(&fresh);
    eprintln!(
        "crash: seed {seed:#x}, {files} files, build {build_time:.2?}, {} snapshots, {fresh_du} bytes",
        fresh_keys.len()
    );

    // Kill delays: one uniform draw in each of `want_kills` equal slices of
    // [0, build_time), in shuffled order; more rounds of the same when some
    // builds finish before their kill.
    let mut rng = Rng::new(seed);
    let mut strata = || {
        let n = want_kills;
        let mut d: Vec<Duration> = (0..n)
            .map(|k| build_time.mul_f64((k as f64 + rng.unit()) / n as f64))
            .collect();
        rng.shuffle(&mut d);
        d
    };
    let mut delays = strata();
    let store = env.store.clone();
    let (mut kills, mut finished, mut with_leftovers, mut resumed_kills) = (Vec::new(), 0, 0, 0);
    let mut iteration = 0;
    while kills.len() < want_kills {
        assert!(
            iteration < want_kills * 4,
            "only {} kills in {iteration} builds: every build finished before its kill",
            kills.len()
        );
        if delays.is_empty() {
            delays = strata();
        }
        // A build resuming on a killed one's commits has less left to do:
        // its kill comes in the first half of the same spread.
        let resuming = !snapshot_keys(&store).is_empty();
        let mut delay = delays.pop().expect("a delay");
        if resuming {
            delay /= 2;
        }
        let when = format!("build {iteration} (kill after {delay:.2?}, resuming: {resuming})");
        let p = spawn_build(&g, &store, &env.ctx, &[]);
        std::thread::sleep(delay);
        let (killed, run) = p.kill9();
        if killed {
            kills.push(delay);
            resumed_kills += usize::from(resuming);
            if !work_entries(&store).is_empty() {
                with_leftovers += 1;
            }
        } else {
            // Finished first: the right result, even on top of a killed
            // build's commits.
            run.ok();
            assert_eq!(run.digest(), digest, "{when}: a resumed build's digest");
            finished += 1;
        }
        check_after(&store, &fresh_keys, &when);
        // Every other build starts from an empty store, so that kills
        // land in every phase; the others resume what the killed one left.
        if !killed || iteration % 2 == 0 {
            prune_all(&store);
            check_after(&store, &fresh_keys, &format!("{when}, pruned"));
            assert!(
                snapshot_keys(&store).is_empty(),
                "prune --all left snapshots"
            );
        }
        iteration += 1;
    }

    // The last kill's store, rebuilt: the fresh digest, the export too.
    let out = env.path("out");
    let run = env.build(&g, &["--output", out.to_str().expect("utf-8")]);
    run.ok();
    assert_eq!(run.digest(), digest, "the rebuild after the kills");
    assert_eq!(tree_digest(&out), digest, "the export after the kills");
    check_after(&store, &fresh_keys, "after the final rebuild");
    assert!(
        !snapshot_keys(&store).is_empty(),
        "the rebuild committed its output"
    );

    // No growth: what is left is at most what a fresh store holds.
    // (less the known stat-cache leftovers, said above when there are any)
    let du = du_sb(&store) - stat_cache_leftovers(&store).1;
    let physical = du_physical(&store);
    let slack = 64 * 1024 + fresh_du / 100;
    assert!(
        du <= fresh_du + slack,
        "du -sb of the killed store {du} > fresh {fresh_du} (+{slack})"
    );
    assert!(
        physical <= fresh_physical,
        "du physical of the killed store {physical} > fresh {fresh_physical}"
    );

    let mut sorted = kills.clone();
    sorted.sort();
    eprintln!(
        "crash: {} kills survived ({resumed_kills} of builds resuming a killed one's commits; \
         {with_leftovers} left a work area, each discarded by the next open), \
         {finished} builds finished before their kill, delays {:.2?} .. {:.2?}; \
         store {du} bytes vs fresh {fresh_du}; {:.1?} in all",
        kills.len(),
        sorted.first().expect("kills"),
        sorted.last().expect("kills"),
        started.elapsed()
    );
}

/// Builds killed in a row, each once it has a work area of its own: each
/// next open (the next build's, then a read-only `du`) discards the dead
/// one's work area, and the store then builds the fresh digest.
#[test]
fn leftovers_of_two_kills_in_a_row_go_at_the_next_open() {
    let env = Env::in_dir(&fast_parent());
    small_files_tree(&env.ctx.join("src"), 3000, 11);
    let g = env.graph("g", &graph());
    let fresh = env.path("fresh");
    let run = env.build_in(&fresh, &g, &["--progress", "quiet"]);
    run.ok();
    let digest = run.digest();
    let fresh_keys = snapshot_keys(&fresh);

    // Kill each build once it has a work area of its own.
    let mut seen_leftovers = 0;
    for round in 0..2 {
        let p = spawn_build(&g, &env.store, &env.ctx, &[]);
        let t = Instant::now();
        while work_entries(&env.store)
            .iter()
            .all(|n| n.ends_with(".lock"))
            && t.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let (killed, _) = p.kill9();
        assert!(killed, "round {round}: the build finished before its kill");
        if !work_entries(&env.store).is_empty() {
            seen_leftovers += 1;
        }
    }
    assert!(
        seen_leftovers > 0,
        "no kill left a work area: the test did not test anything"
    );
    env.du();
    assert_eq!(
        work_entries(&env.store),
        Vec::<String>::new(),
        "`du` opened the store and left the dead builds' work areas"
    );
    check_after(&env.store, &fresh_keys, "after two kills");
    let run = env.build(&g, &[]);
    run.ok();
    assert_eq!(run.digest(), digest);
}

/// A killed build's lock-holder note (`STORE/holders/PID`) is removed by
/// the next open: it is a leftover like a work area, one more file per
/// killed process, and once the pid is reused by another process, a
/// waiting `prune` names that process as the holder.
#[test]
fn killed_builds_leave_no_holder_notes() {
    let env = Env::in_dir(&fast_parent());
    small_files_tree(&env.ctx.join("src"), 2000, 5);
    let g = env.graph("g", &graph());
    let mut dead = Vec::new();
    for _ in 0..3 {
        let p = spawn_build(&g, &env.store, &env.ctx, &[]);
        let pid = p.pid();
        let note = env.store.join("holders").join(pid.to_string());
        let t = Instant::now();
        while !note.exists() && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(2));
        }
        let (killed, _) = p.kill9();
        assert!(killed, "the build finished before its kill");
        dead.push(pid.to_string());
    }
    env.verify();
    env.du();
    let notes = names(&env.store.join("holders"));
    let stale: Vec<_> = notes.iter().filter(|n| dead.contains(n)).collect();
    assert!(
        stale.is_empty(),
        "notes of killed builds still in holders/ after two opens: {stale:?}"
    );
}

/// A build killed while it saves a source's stat cache
/// (`STORE/stat-cache/HEX.tmpPID`, written then renamed by
/// `StatCache::save`) leaves that temporary file; the next open must
/// remove it (it is never read, and each kill there adds one of the size
/// of the whole cache).
#[test]
fn a_kill_while_saving_the_stat_cache_leaves_nothing() {
    let env = Env::in_dir(&fast_parent());
    small_files_tree(&env.ctx.join("src"), 20_000, 3);
    let g = env.graph("g", &graph());
    env.build(&g, &["--progress", "quiet"]).ok();
    let cache = env.store.join("stat-cache");
    // Every build saves the cache again: poll for the temporary file and
    // kill the build while it is there.
    let mut caught = None;
    for _ in 0..40 {
        let mut p = spawn_build(&g, &env.store, &env.ctx, &[]);
        while p.running() && !names(&cache).iter().any(|n| n.contains(".tmp")) {}
        let (killed, _) = p.kill9();
        if killed {
            if let Some(n) = names(&cache).into_iter().find(|n| n.contains(".tmp")) {
                caught = Some(n);
                break;
            }
        }
    }
    let Some(tmp) = caught else {
        eprintln!("skipped: no kill landed inside StatCache::save in 40 tries");
        return;
    };
    env.verify();
    env.build(&g, &["--progress", "quiet"]).ok();
    let left: Vec<_> = names(&cache)
        .into_iter()
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(
        left.is_empty(),
        "{tmp} of a killed build: still there after two opens ({left:?})"
    );
}
