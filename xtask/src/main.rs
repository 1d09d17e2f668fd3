//! Developer tasks for the hardmerge workspace, run as `cargo xtask <task>`.
//!
//! - `ci`: the checks CI runs (fmt, clippy, tests), stopping at the first
//!   failure.
//! - `bench`: the benchmark harness of SPEC §9 (see [`bench`]).
//! - `gen-graph`: one of the bench's generated graphs, to profile or inspect.
//! - `fuzz`: the libFuzzer targets of `fuzz/` (see [`fuzz`]).
//! - `soak`: the differential test for many cases (see [`soak`]).
//!
//! Invariant: xtask only drives `cargo` and the `hardmerge` binary as
//! processes; it never links the hardmerge library, so timings measure what a
//! user runs.

mod bench;
mod ci;
mod fuzz;
mod soak;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  ci                      cargo fmt --check, cargo clippy -D warnings, cargo test;
                          stops at the first step that fails
  bench [SCENARIO...] [--runs N] [--json FILE] [--sizes LIST] [--hardmerge PATH]
        [--tmp DIR] [--small]
                          build hardmerge --release and time the scenarios of
                          SPEC §9; no SCENARIO means all of them
  gen-graph OPS [FILE] [--seed N]
                          write the generated graph the `compile` bench uses
                          (OPS ops, k/M suffixes allowed) to FILE or stdout
  fuzz [TARGET...] [--seconds N] [--jobs N] [--cmin]
                          run the libFuzzer targets `graph` (parse, validate,
                          compile) and `ir` (compile of compiled IR) through
                          cargo-fuzz on stable (RUSTC_BOOTSTRAP=1, -s none),
                          N seconds in all (default 60); --cmin merges new
                          inputs into fuzz/corpus/TARGET
  soak --cases N [--seed S] [--threads T] [--seconds X]
                          build hardmerge --release and run the hardlink-vs-copy
                          differential test for N random cases against it;
                          prints the cases run and the mismatches
  help                    this text

Run `cargo xtask bench --help` for the scenarios and options, and
`cargo xtask fuzz --help`, `cargo xtask soak --help` for theirs.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => ci::run(),
        Some("ci") => Err(anyhow::anyhow!("`ci` takes no arguments")),
        Some("bench") => bench::main(&args[1..]),
        Some("gen-graph") => bench::gen_graph(&args[1..]),
        Some("fuzz") => fuzz::main(&args[1..]),
        Some("soak") => soak::main(&args[1..]),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(anyhow::anyhow!("no task given\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of xtask's own manifest directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The `cargo` that runs us (cargo sets `$CARGO`), so that the toolchain
/// chosen by rustup for `cargo xtask` is the one used for every step.
fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}
