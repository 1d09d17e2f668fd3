//! `cargo xtask fuzz`: runs the libFuzzer targets of `fuzz/` through
//! cargo-fuzz on the stable toolchain.
//!
//! cargo-fuzz wants nightly only for its `-Z` flags; `RUSTC_BOOTSTRAP=1`
//! lets the stable compiler take them, and `-s none` drops the sanitizer
//! (AddressSanitizer needs a nightly-built std). Rust's own checks (bounds,
//! overflow in debug assertions, `unreachable!`) still abort the run.
//!
//! The committed corpus (`fuzz/corpus/<target>/`) is read, never written:
//! new inputs go to `fuzz/target/corpus/<target>/`, and `--cmin` folds them
//! back into the committed folder with libFuzzer's `-merge=1` (the smallest
//! set of inputs that keeps the coverage). Crashes land in
//! `fuzz/artifacts/<target>/`; a fixed one goes to `fuzz/regressions/`, which
//! `tests/fuzz_corpus.rs` replays.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The fuzz targets, in `fuzz/fuzz_targets/`.
pub const TARGETS: &[&str] = &["graph", "ir"];

const HELP: &str = "\
usage: cargo xtask fuzz [TARGET...] [--seconds N] [--jobs N] [--cmin]

  TARGET       graph (parse + validate + compile of graph JSON) or ir (compile
               of compiled IR read back); default: both, the time split evenly
  --seconds N  total time (default 60)
  --jobs N     fuzzing processes, one core each (default 1; N > 1 is
               libFuzzer's -fork=N)
  --cmin       afterwards, merge the new inputs into fuzz/corpus/TARGET,
               minimised (libFuzzer -merge=1)

needs cargo-fuzz (`cargo install cargo-fuzz`); runs on stable with
RUSTC_BOOTSTRAP=1 and no sanitizer (-s none)";

struct Args {
    targets: Vec<String>,
    seconds: u64,
    jobs: u64,
    cmin: bool,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        targets: Vec::new(),
        seconds: 60,
        jobs: 1,
        cmin: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut num = |what: &str| -> Result<u64> {
            let v = it.next().with_context(|| format!("{what} needs a value"))?;
            v.parse()
                .with_context(|| format!("{what}: `{v}` is not a number"))
        };
        match arg.as_str() {
            "--seconds" => a.seconds = num("--seconds")?,
            "--jobs" => a.jobs = num("--jobs")?.max(1),
            "--cmin" => a.cmin = true,
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            t if TARGETS.contains(&t) => a.targets.push(t.to_string()),
            other => bail!("unknown argument `{other}`\n\n{HELP}"),
        }
    }
    if a.targets.is_empty() {
        a.targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    Ok(a)
}

/// `cargo fuzz ARGS` in the fuzz crate's parent, on stable.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut cmd = crate::cargo();
    cmd.arg("fuzz").args(args).env("RUSTC_BOOTSTRAP", "1");
    cmd
}

fn run_status(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

pub fn main(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    let root = crate::workspace_root();
    let probe = crate::cargo().args(["fuzz", "--version"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        bail!("cargo-fuzz is not installed: run `cargo install cargo-fuzz`");
    }
    let per_target = (a.seconds / a.targets.len() as u64).max(1);
    let dict = root.join("fuzz/graph.dict");
    for t in &a.targets {
        let committed = root.join("fuzz/corpus").join(t);
        let work = root.join("fuzz/target/corpus").join(t);
        std::fs::create_dir_all(&work).with_context(|| format!("mkdir {}", work.display()))?;
        eprintln!("==> fuzz {t} for {per_target} s ({} jobs)", a.jobs);
        let mut cmd = cargo_fuzz(&["run", "-s", "none", "--release", t]);
        cmd.arg(&work).arg(&committed).arg("--").args([
            format!("-max_total_time={per_target}"),
            format!("-dict={}", dict.display()),
            "-print_final_stats=1".to_string(),
        ]);
        if a.jobs > 1 {
            // fork mode: N processes, one log (stdout), new inputs merged
            cmd.arg(format!("-fork={}", a.jobs));
        }
        run_status(cmd, &format!("cargo fuzz run {t}"))?;
        if a.cmin {
            merge(t, &committed, &work)?;
        }
    }
    Ok(())
}

/// Replaces `committed` by the minimised union of it and `work`.
fn merge(t: &str, committed: &Path, work: &Path) -> Result<()> {
    let fresh: PathBuf = committed.with_extension("merging");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh)?;
    let mut cmd = cargo_fuzz(&["run", "-s", "none", "--release", t]);
    cmd.arg(&fresh)
        .arg(committed)
        .arg(work)
        .args(["--", "-merge=1"]);
    run_status(cmd, &format!("cargo fuzz run {t} -- -merge=1"))?;
    std::fs::remove_dir_all(committed)?;
    std::fs::rename(&fresh, committed)?;
    let n = std::fs::read_dir(committed)?.count();
    eprintln!("==> fuzz/corpus/{t}: {n} inputs after the merge");
    Ok(())
}
