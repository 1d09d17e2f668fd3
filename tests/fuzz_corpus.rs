//! Replays the fuzz corpus on the stable toolchain, without libFuzzer: every
//! file of `fuzz/corpus/<target>/` and of `fuzz/regressions/` goes through
//! the fuzz targets' own oracle (`fuzz/src/lib.rs`): reading it never panics,
//! and a graph or IR that reads back compiles deterministically and
//! idempotently with both strategies.
//!
//! `fuzz/regressions/` holds inputs that once crashed the fuzzer and are
//! fixed. An input whose bug is still open goes to `fuzz/regressions/open/`,
//! replayed by the ignored test below (`cargo test --test fuzz_corpus --
//! --ignored`).

#[path = "../fuzz/src/lib.rs"]
mod oracle;

use std::panic;
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    out.sort();
    out
}

/// Runs the oracle on every file; returns the files that panicked.
fn replay(paths: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for p in paths {
        let data = std::fs::read(p).expect("read corpus file");
        if let Err(e) = panic::catch_unwind(|| oracle::check(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let first = msg.lines().next().unwrap_or("").to_string();
            failed.push(format!("{}: {first}", p.display()));
        }
    }
    failed
}

#[test]
fn corpus_and_regressions_replay_without_a_panic() {
    let graph = files("fuzz/corpus/graph");
    let ir = files("fuzz/corpus/ir");
    let regressions = files("fuzz/regressions");
    // an empty or missing corpus would pass anything
    assert!(
        graph.len() >= 50,
        "fuzz/corpus/graph: {} files",
        graph.len()
    );
    assert!(!ir.is_empty(), "fuzz/corpus/ir is empty");
    let all: Vec<PathBuf> = [graph, ir, regressions].concat();
    let failed = replay(&all);
    assert!(
        failed.is_empty(),
        "{} of {} inputs break the fuzz oracle:\n{}",
        failed.len(),
        all.len(),
        failed.join("\n")
    );
}

#[test]
#[ignore = "bugs still open: the inputs of fuzz/regressions/open/"]
fn open_regressions_replay_without_a_panic() {
    let open = files("fuzz/regressions/open");
    let failed = replay(&open);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
