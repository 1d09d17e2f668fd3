//! The data the filesystem scenarios share (`big-copy`, `import`, `chain`,
//! `rebuild`, `disk`), generated once per bench run, and the helpers that
//! run `hardmerge` and the peers on it.
//!
//! Layout, under the bench's scratch folder (on the store's filesystem, so
//! that hard links and `cp -al` work and every copy stays on one disk):
//!
//! ```text
//! data/               the context folder of every graph (`--context`)
//!   src/              the big tree: 50,000 files, 800 MB (--small: 5,000, 80 MB)
//!   src-peer/         a `cp -a` of it that the `cp` peers copy (see below)
//!   base/             a small tree the big-copy graph places src onto
//!   layers/000..099/  chain's 100 sources (made on first use), together
//!                     the single source of its peer
//! <scenario>/         stores, graphs, reports and peer copies
//! ```
//!
//! Invariants: generating data is never timed; every timed command runs
//! after a `sync`, so it does not pay for the writeback of the one before;
//! the `cp` peers never touch `src`. (`cp -al src X`, and removing X, change
//! the ctime of every file of `src`, and hardmerge rightly re-reads and
//! re-hashes a source file whose ctime changed, so a peer run would add a
//! full re-hash of the source to the next timed build. The peers copy
//! `src-peer`, the same tree, instead.)

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::big_copy::Warm;
use super::measure::{command_output, remove_tree, sync, time_command};
use super::trees::{self, TreeSpec, TreeStats};
use super::Bench;

/// The big tree of SPEC §9, and the `--small` one.
const FULL: (usize, u64) = (50_000, 800_000_000);
const SMALL: (usize, u64) = (5_000, 80_000_000);
/// The base the big-copy graph places the big tree onto.
const BASE: (usize, u64) = (200, 2_000_000);
/// chain: this many sources, holding as many files as the big tree
/// together and a tenth of its bytes.
pub const LAYERS: usize = 100;

const SEED: u64 = 0x6261_7365_7472_6565;

/// The generated trees, and the state the scenarios share.
pub struct Workload {
    /// The context folder: `src`, `base`, `layers`.
    pub dir: PathBuf,
    pub src: TreeStats,
    /// Whether `src-peer` was made yet.
    peer_src: OnceCell<()>,
    layers: OnceCell<TreeStats>,
    /// The store big-copy, rebuild and disk build into.
    pub(super) warm: OnceCell<Warm>,
}

impl Workload {
    /// Generates `src` and `base` under `<scratch>/data`.
    pub fn generate(bench: &Bench) -> Result<Self> {
        let dir = bench.scenario_dir("data")?;
        let (files, bytes) = if bench.small { SMALL } else { FULL };
        let start = Instant::now();
        eprintln!(
            "  generating the source tree: {files} files, {} MB (not timed)",
            bytes / 1_000_000
        );
        let src = trees::generate(
            &dir.join("src"),
            TreeSpec {
                files,
                bytes,
                seed: SEED,
            },
        )?;
        trees::generate(
            &dir.join("base"),
            TreeSpec {
                files: BASE.0,
                bytes: BASE.1,
                seed: SEED + 1,
            },
        )?;
        sync()?;
        eprintln!(
            "  generated src ({} files, {} dirs) and base in {:.1} s",
            src.files,
            src.dirs,
            start.elapsed().as_secs_f64()
        );
        Ok(Workload {
            dir,
            src,
            peer_src: OnceCell::new(),
            layers: OnceCell::new(),
            warm: OnceCell::new(),
        })
    }

    pub fn src_path(&self) -> PathBuf {
        self.dir.join("src")
    }

    /// `src-peer`, the copy of `src` the `cp` peers copy, made (`cp -a`,
    /// not timed) on the first call.
    pub fn peer_src(&self) -> Result<PathBuf> {
        let path = self.dir.join("src-peer");
        if self.peer_src.get().is_none() {
            eprintln!("  copying src to src-peer for the cp peers (not timed)");
            command_output(Command::new("cp").arg("-a").arg(self.src_path()).arg(&path))?;
            sync()?;
            let _ = self.peer_src.set(());
        }
        Ok(path)
    }

    /// `layers/000` … `layers/099`, generated on first use: [`LAYERS`]
    /// trees of `src.files / LAYERS` files each. Each one's own directory
    /// gets mode 0755 and mtime 0, what hardmerge gives the directory a
    /// `with_directory` creates with `epoch` 0, so that placing the 100
    /// trees one by one and placing `layers` whole give equal trees.
    pub fn layers(&self) -> Result<TreeStats> {
        if let Some(stats) = self.layers.get() {
            return Ok(*stats);
        }
        let root = self.dir.join("layers");
        std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        let files = (self.src.files / LAYERS).max(1);
        let bytes = self.src.bytes / 10 / LAYERS as u64;
        eprintln!("  generating {LAYERS} layer trees of {files} files each (not timed)");
        let mut total = TreeStats::default();
        for k in 0..LAYERS {
            let dir = root.join(layer_name(k));
            let stats = trees::generate(
                &dir,
                TreeSpec {
                    files,
                    bytes,
                    seed: SEED + 100 + k as u64,
                },
            )?;
            trees::set_epoch_dir(&dir, 0o755)?;
            total.files += stats.files;
            total.dirs += stats.dirs + 1;
            total.bytes += stats.bytes;
        }
        sync()?;
        Ok(*self.layers.get_or_init(|| total))
    }

    /// `hardmerge build GRAPH --store STORE --context DATA --report REPORT
    /// --progress quiet`.
    pub fn build_command(
        &self,
        bench: &Bench,
        graph: &Path,
        store: &Path,
        report: &Path,
    ) -> Command {
        let mut cmd = Command::new(&bench.hardmerge);
        cmd.arg("build")
            .arg(graph)
            .arg("--store")
            .arg(store)
            .arg("--context")
            .arg(&self.dir)
            .arg("--report")
            .arg(report)
            .args(["--progress", "quiet"]);
        cmd
    }

    /// Runs [`build_command`](Self::build_command) after a `sync`; returns
    /// its wall-clock time and its report.
    pub fn timed_build(
        &self,
        bench: &Bench,
        graph: &Path,
        store: &Path,
        report: &Path,
    ) -> Result<(Duration, BuildReport)> {
        // A stale report must not pass for this run's.
        let _ = std::fs::remove_file(report);
        sync()?;
        let took = time_command(&mut self.build_command(bench, graph, store, report))?;
        Ok((took, BuildReport::read(report)?))
    }
}

/// `000`, `001`, … `099`.
pub fn layer_name(k: usize) -> String {
    format!("{k:03}")
}

/// Writes a graph (`version` 1, one `default` output) to `path`.
pub fn write_graph(path: &Path, ops: Value, output: &str) -> Result<()> {
    let graph = json!({"version": 1, "ops": ops, "outputs": {"default": output}});
    std::fs::write(path, serde_json::to_vec_pretty(&graph)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// `{"local": {"path": PATH}}`.
pub fn local(path: &str) -> Value {
    json!({"local": {"path": path}})
}

/// `{"with_directory": {"base": BASE, "path": PATH, "source": SOURCE}}`.
pub fn with_directory(base: &str, path: &str, source: &str) -> Value {
    json!({"with_directory": {"base": base, "path": path, "source": source}})
}

/// What a `--report` file says (SPEC §6).
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub digest: String,
    totals: Value,
}

impl BuildReport {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).with_context(|| {
            format!(
                "hardmerge build exited successfully but wrote no report {}",
                path.display()
            )
        })?;
        let report: Value = serde_json::from_slice(&text)
            .with_context(|| format!("the build report {} is not JSON", path.display()))?;
        let Some(digest) = report.get("digest").and_then(Value::as_str) else {
            bail!("the build report {} has no `digest`", path.display());
        };
        let Some(totals) = report.get("totals").filter(|t| t.is_object()) else {
            bail!("the build report {} has no `totals`", path.display());
        };
        Ok(BuildReport {
            digest: digest.to_string(),
            totals: totals.clone(),
        })
    }

    /// A count from `totals` (`ops_run`, `files_linked`, `bytes_copied`, ...);
    /// 0 when missing.
    pub fn total(&self, key: &str) -> u64 {
        self.totals.get(key).and_then(Value::as_u64).unwrap_or(0)
    }
}

/// `hardmerge du --store STORE --json`: (physical, logical) bytes.
pub fn disk_use(bench: &Bench, store: &Path) -> Result<(u64, u64)> {
    let out = command_output(
        Command::new(&bench.hardmerge)
            .arg("du")
            .arg("--store")
            .arg(store)
            .arg("--json"),
    )?;
    let du: Value = serde_json::from_slice(&out).context("hardmerge du --json printed no JSON")?;
    let field = |key: &str| {
        du.get(key)
            .and_then(Value::as_u64)
            .with_context(|| format!("hardmerge du --json has no `{key}`"))
    };
    Ok((field("physical_bytes")?, field("logical_bytes")?))
}

/// `hardmerge tree DIR`: the tree digest (its last line).
pub fn tree_digest(bench: &Bench, dir: &Path) -> Result<String> {
    let out = command_output(Command::new(&bench.hardmerge).arg("tree").arg(dir))?;
    let text = String::from_utf8_lossy(&out);
    match text.lines().last() {
        Some(line) if line.starts_with("sha256:") => Ok(line.to_string()),
        _ => bail!(
            "hardmerge tree {} printed no digest on its last line",
            dir.display()
        ),
    }
}

/// A `cp` peer: `cp FLAG src dst`, optionally followed by `sync` in the
/// timed span. hardmerge flushes the filesystem (`syncfs`) when it commits
/// a snapshot, so its timings include the writeback of what it wrote;
/// `cp` returns as soon as the data is in the page cache. The `+ sync`
/// peers count the writeback too, for a like-for-like comparison.
#[derive(Debug, Clone, Copy)]
pub struct CpPeer {
    pub name: &'static str,
    flag: &'static str,
    then_sync: bool,
}

pub const CP_A: CpPeer = CpPeer {
    name: "cp -a",
    flag: "-a",
    then_sync: false,
};
pub const CP_A_SYNC: CpPeer = CpPeer {
    name: "cp -a + sync",
    flag: "-a",
    then_sync: true,
};
pub const CP_AL: CpPeer = CpPeer {
    name: "cp -al",
    flag: "-al",
    then_sync: false,
};
pub const CP_AL_SYNC: CpPeer = CpPeer {
    name: "cp -al + sync",
    flag: "-al",
    then_sync: true,
};

impl CpPeer {
    /// Times the copy of `src` to a fresh `dst` (after a `sync`, not
    /// timed), then removes `dst` (not timed).
    pub fn time(self, src: &Path, dst: &Path) -> Result<Duration> {
        remove_tree(dst)?;
        sync()?;
        let start = Instant::now();
        time_command(Command::new("cp").arg(self.flag).arg(src).arg(dst))?;
        if self.then_sync {
            sync()?;
        }
        let took = start.elapsed();
        remove_tree(dst)?;
        Ok(took)
    }
}

/// One line of progress for a timed run.
pub fn log_run(what: &str, run: usize, runs: usize, took: Duration) {
    eprintln!(
        "  {what}: run {}/{runs}: {:.3} s",
        run + 1,
        took.as_secs_f64()
    );
}
