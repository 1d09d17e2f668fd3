//! Several processes on one store (SPEC §4): they never see each other's
//! unfinished work and never corrupt it; `prune` takes the store alone and
//! says who it waits for.
//!
//! Four builds of overlapping graphs start at once into one store, round
//! after round: they share the sources and the first ops (so they race to
//! import and commit the same keys) and differ in their last ops (a
//! `with_directory`, a `copy` with a mode, a merge of a diff, a
//! `with_file`). Each round's graphs have another `epoch`, so every round
//! but the last commits new merges over the already imported sources; the
//! last round repeats the first (all cached, read by four processes at
//! once). Every digest must be the one a fresh store of its own gives.
#![cfg(unix)]

mod common;
mod stress;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use stress::*;

const CAP: Duration = Duration::from_secs(300);

/// Graph `k` (0..4) at `epoch`: the shared part, then its own output.
fn graph(k: usize, epoch: u64) -> Value {
    let mut ops = json!({
        "shared": {"local": {"path": "shared"}},
        "extra": {"local": {"path": "extra", "exclude": ["d02"]}},
        "etc": {"mkdir": {"path": "/etc"}},
        "release": {"mkfile": {"base": "etc", "path": "/etc/os-release", "data": "hardmerge\n"}},
        "app": {"with_directory": {"base": "release", "path": "/srv/app", "source": "shared"}},
    });
    let own = match k {
        0 => json!({
            "out": {"with_directory": {"base": "app", "path": "/srv/extra", "source": "extra",
                                       "exclude": ["**/f0000*"]}},
        }),
        1 => json!({
            "out": {"copy": {"base": "app", "source": "shared", "src": "/d01", "dest": "/opt/d01",
                             "mode": "0640", "create_dest_path": true}},
        }),
        2 => json!({
            "trimmed": {"rm": {"base": "app", "path": "/srv/app/d00"}},
            "gone": {"diff": {"lower": "app", "upper": "trimmed"}},
            "placed": {"with_directory": {"path": "/extra", "source": "extra"}},
            "out": {"merge": {"inputs": ["app", "placed", "gone"]}},
        }),
        _ => json!({
            "tool": {"with_file": {"base": "app", "path": "/bin/tool", "source": "extra",
                                   "source_path": "/d00/e0/f00000", "mode": "0755"}},
            "out": {"mkfile": {"base": "tool", "path": "/bin/VERSION", "data": format!("{k}\n")}},
        }),
    };
    for (name, op) in own.as_object().expect("ops") {
        ops[name] = op.clone();
    }
    json!({"version": 1, "epoch": epoch, "ops": ops, "outputs": {"default": "out"}})
}

/// The shared and extra sources.
fn sources(env: &Env) {
    small_files_tree(&env.ctx.join("shared"), 1500, 21);
    small_files_tree(&env.ctx.join("extra"), 600, 22);
}

#[test]
fn four_builds_at_once_into_one_store_round_after_round() {
    let started = Instant::now();
    let env = Env::in_dir(&fast_parent());
    sources(&env);
    let epochs = [0u64, 1, 2, 0];
    let distinct: BTreeSet<u64> = epochs.iter().copied().collect();

    // References: each graph alone in a fresh store of its own.
    let mut refs = std::collections::BTreeMap::new();
    let mut fresh_keys = BTreeSet::new();
    let mut procs = Vec::new();
    for &e in &distinct {
        for k in 0..4 {
            let g = env.graph(&format!("g{k}-e{e}"), &graph(k, e));
            let store = env.path(&format!("fresh-{k}-{e}"));
            procs.push((
                (k, e),
                store.clone(),
                spawn_build(&g, &store, &env.ctx, &[]),
            ));
            // At most four at once.
            if procs.len() == 4 {
                for (ke, store, p) in procs.drain(..) {
                    let run = p.wait(CAP);
                    run.ok();
                    refs.insert(ke, run.digest());
                    fresh_keys.extend(snapshot_keys(&store));
                }
            }
        }
    }
    assert_eq!(refs.len(), 4 * distinct.len());
    let outputs: BTreeSet<&String> = refs.values().collect();
    assert_eq!(
        outputs.len(),
        refs.len(),
        "every graph and epoch gives its own tree: {refs:?}"
    );
    eprintln!(
        "concurrency: {} reference builds in {:.1?}",
        refs.len(),
        started.elapsed()
    );

    // A tiny cached build, run again and again beside the four builds:
    // every open of the store discards dead work areas, and must never
    // take a live one.
    let ping = env.graph(
        "ping",
        &json!({"version": 1, "ops": {"ping": {"mkfile": {"path": "/ping", "data": "ping"}}},
                "outputs": {"default": "ping"}}),
    );
    let ping_store = env.path("fresh-ping");
    let ping_digest = env.build_in(&ping_store, &ping, &[]).ok().digest();
    fresh_keys.extend(snapshot_keys(&ping_store));
    // The store is made before the rounds: its first creation by
    // processes at once is the next test's (it is racy).
    env.build(&ping, &[]).ok();
    let mut opens = 0;
    for (round, &e) in epochs.iter().enumerate() {
        let t = Instant::now();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let hammer = |stop: &std::sync::atomic::AtomicBool| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let run = env.build(&ping, &["--progress", "quiet"]);
                run.ok();
                assert_eq!(run.digest(), ping_digest, "the ping build");
                n += 1;
            }
            n
        };
        let procs: Vec<(usize, PathBuf, Proc)> = (0..4)
            .map(|k| {
                let g = env.path(&format!("g{k}-e{e}.json"));
                let out = env.path(&format!("out-{round}-{k}"));
                let p = spawn_build(
                    &g,
                    &env.store,
                    &env.ctx,
                    &["--output", out.to_str().expect("utf-8")],
                );
                (k, out, p)
            })
            .collect();
        let (runs, n) = std::thread::scope(|sc| {
            let h = sc.spawn(|| hammer(&stop));
            let runs: Vec<_> = procs
                .into_iter()
                .map(|(k, out, p)| (k, out, p.wait(CAP)))
                .collect();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (runs, h.join().expect("du thread"))
        });
        opens += n;
        for (k, out, run) in runs {
            run.ok();
            assert_eq!(
                run.digest(),
                refs[&(k, e)],
                "round {round}: graph {k} (epoch {e}) in the shared store"
            );
            assert_eq!(
                tree_digest(&out),
                refs[&(k, e)],
                "round {round}: graph {k}'s export"
            );
        }
        verify_ok(&env.store);
        assert!(
            work_entries(&env.store).is_empty(),
            "round {round}: work areas left: {:?}",
            work_entries(&env.store)
        );
        let strange: Vec<_> = snapshot_keys(&env.store)
            .difference(&fresh_keys)
            .cloned()
            .collect();
        assert!(
            strange.is_empty(),
            "round {round}: snapshots no fresh store has: {strange:?}"
        );
        eprintln!(
            "concurrency: round {round} (epoch {e}): 4 builds ok beside {n} pings in {:.1?}",
            t.elapsed()
        );
    }
    // Every round's ops were committed once, and nothing else.
    assert_eq!(
        snapshot_keys(&env.store),
        fresh_keys,
        "the shared store holds exactly the fresh stores' snapshots"
    );
    eprintln!(
        "concurrency: {} rounds of 4 builds, {opens} concurrent pings, {} snapshots, {:.1?} in all",
        epochs.len(),
        fresh_keys.len(),
        started.elapsed()
    );
}

/// `prune --all` while a build holds the store: it waits (it takes the
/// lock alone), says so naming the build's pid, and runs once the build is
/// done; the build is not disturbed.
#[test]
fn prune_waits_for_a_running_build_and_names_it() {
    let env = Env::in_dir(&fast_parent());
    sources(&env);
    small_files_tree(&env.ctx.join("more"), 3000, 23);
    // Something to prune from before.
    let g0 = env.graph("g0", &graph(3, 0));
    env.build(&g0, &[]).ok();
    let before = snapshot_keys(&env.store).len();
    assert!(before > 0);

    let g = env.graph(
        "slow",
        &json!({
            "version": 1,
            "ops": {
                "more": {"local": {"path": "more"}},
                "out": {"with_directory": {"path": "/a", "source": "more", "mode": "0700"}},
            },
            "outputs": {"default": "out"}
        }),
    );
    let reference = env.build_in(&env.path("fresh"), &g, &[]);
    reference.ok();

    let mut build = spawn_build(&g, &env.store, &env.ctx, &[]);
    let pid = build.pid();
    let note = env.store.join("holders").join(pid.to_string());
    let t = Instant::now();
    while !note.exists() {
        assert!(build.running(), "the build ended before taking the lock");
        assert!(t.elapsed() < CAP, "no holder note {}", note.display());
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut prune = spawn(&[
        "prune",
        "--all",
        "--store",
        env.store.to_str().expect("utf-8"),
    ]);
    let want = format!("waiting for the store lock, held by pid {pid}");
    let mut said = false;
    while build.running() {
        let err = prune.stderr_now();
        if err.contains(&want) {
            said = true;
        }
        assert!(
            prune.running(),
            "prune ended while the build (pid {pid}) held the store; stderr: {err}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let run = build.wait(CAP);
    run.ok();
    assert_eq!(run.digest(), reference.digest(), "the build beside a prune");
    let pruned = prune.wait(CAP);
    pruned.ok();
    assert!(
        said || pruned.stderr.contains(&want),
        "prune never said it waited for pid {pid}: {}",
        pruned.stderr
    );
    let line = pruned
        .stderr
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("hardmerge build"),
        "the waiting line says what holds the lock: {line:?}"
    );
    assert!(
        pruned.stdout.starts_with("pruned "),
        "prune's report: {}",
        pruned.stdout
    );
    // It ran after the build: the build's snapshots went too.
    assert!(
        snapshot_keys(&env.store).is_empty(),
        "prune --all after the build left {:?}",
        snapshot_keys(&env.store)
    );
    verify_ok(&env.store);
    assert!(work_entries(&env.store).is_empty());
    eprintln!("concurrency: prune waited for pid {pid}: {line}");
}

/// The first opens of a new store by several processes at once: each one
/// finds no `VERSION` and writes it, or reads it while another writes it.
/// All must succeed.
#[test]
fn processes_creating_one_store_at_once_all_succeed() {
    let env = Env::in_dir(&fast_parent());
    let mut failures = Vec::new();
    let tries = 100;
    for t in 0..tries {
        let store = env.path(&format!("store-{t}"));
        let procs: Vec<Proc> = (0..8)
            .map(|_| spawn(&["du", "--store", store.to_str().expect("utf-8")]))
            .collect();
        for p in procs {
            let run = p.wait(CAP);
            if run.code() != Some(0) {
                failures.push(format!("try {t}: {}", run.stderr.trim()));
            }
        }
        verify_ok(&store);
    }
    assert!(
        failures.is_empty(),
        "{} of {} first opens failed:\n{}",
        failures.len(),
        tries * 8,
        failures.join("\n")
    );
}
