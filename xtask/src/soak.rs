//! `cargo xtask soak`: the hardlink-vs-copy differential test of
//! `tests/differential.rs` for many cases, against the release binary.
//!
//! The test is driven by its environment knobs (`HARDMERGE_DIFF_CASES`,
//! `_SEED`, `_THREADS`, `_SECONDS`); this task sets them, builds
//! `target/release/hardmerge`, runs the test with `HARDMERGE_BIN` pointing
//! at that binary, streams its output and ends with one line: cases run and
//! mismatches. The test harness itself stays a debug build (it only writes
//! trees and starts processes): one release build of the crate, not two.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::{bail, Context, Result};

const HELP: &str = "\
usage: cargo xtask soak --cases N [--seed S] [--threads T] [--seconds X]

  --cases N    random cases to build with both strategies
  --seed S     the first case's seed (case i uses S + i; default: the test's)
  --threads T  cases run at once (default: the cores)
  --seconds X  stop starting cases after X seconds (default: no limit)

A mismatch is shrunk and dumped under target/tmp/differential-failures/ (the
path is printed); rerun one case with --seed SEED --cases 1.";

pub fn main(args: &[String]) -> Result<()> {
    let mut env: Vec<(&str, String)> = Vec::new();
    let mut cases = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let var = match arg.as_str() {
            "--cases" => "HARDMERGE_DIFF_CASES",
            "--seed" => "HARDMERGE_DIFF_SEED",
            "--threads" => "HARDMERGE_DIFF_THREADS",
            "--seconds" => "HARDMERGE_DIFF_SECONDS",
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n\n{HELP}"),
        };
        let v = it.next().with_context(|| format!("{arg} needs a value"))?;
        let hex = v.strip_prefix("0x");
        let ok = match hex {
            Some(h) => u64::from_str_radix(h, 16).is_ok(),
            None => v.parse::<u64>().is_ok(),
        };
        if !ok {
            bail!("{arg}: `{v}` is not a number");
        }
        if arg == "--cases" {
            cases = Some(v.clone());
        }
        env.push((var, v.clone()));
    }
    if cases.is_none() {
        bail!("--cases N is required\n\n{HELP}");
    }

    eprintln!("==> cargo build --release --bin hardmerge");
    let status = crate::cargo()
        .args(["build", "--release", "--bin", "hardmerge"])
        .status()
        .context("could not run cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    let bin = crate::workspace_root().join("target/release/hardmerge");

    let mut cmd = crate::cargo();
    cmd.args([
        "test",
        "--test",
        "differential",
        "--",
        "--exact",
        "differential_hardlink_vs_copy",
        "--nocapture",
    ])
    .env("HARDMERGE_BIN", &bin)
    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
    .stderr(Stdio::piped());
    eprintln!(
        "==> {} HARDMERGE_BIN={} cargo test --test differential",
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        bin.display()
    );
    let mut child = cmd.spawn().context("could not run cargo test")?;
    // The test prints its summary on stderr: pass it through, keep the line.
    let mut summary = None;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line.context("reading the test's output")?;
            eprintln!("{line}");
            if line.starts_with("differential: ") && line.contains(" mismatches") {
                summary = Some(line);
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    match summary.as_deref().and_then(counts) {
        Some((run, mismatches)) => {
            println!("soak: {run} cases run, {mismatches} mismatches");
        }
        None => println!("soak: the test printed no summary"),
    }
    if !status.success() {
        bail!("the differential test failed ({status})");
    }
    Ok(())
}

/// `(cases, mismatches)` from "differential: N cases in …, M mismatches".
fn counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("differential: ")?;
    let run = rest.split_whitespace().next()?.parse().ok()?;
    let before = line.strip_suffix(" mismatches")?;
    let mismatches = before.rsplit(' ').next()?.parse().ok()?;
    Some((run, mismatches))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_reads_the_summary_line() {
        let line = "differential: 40 cases in 12.3s: 90 targets built with equal digests, \
                    3 failed alike, 1 failed alike after a cross-check, 2 mismatches";
        assert_eq!(super::counts(line), Some((40, 2)));
        assert_eq!(super::counts("differential: ops in the targets"), None);
    }
}
