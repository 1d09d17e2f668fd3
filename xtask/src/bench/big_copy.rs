//! `big-copy`, `rebuild` and `disk`: one `with_directory` of the big tree
//! onto a small base, in a store that already holds both sources.
//!
//! The graph is `base = local base`, `src = local src`, `out =
//! with_directory(base, /appN, src)`. One **warm store** serves the three
//! scenarios: its first build (`/app0`, untimed) imports both trees; every
//! later big-copy build uses a new N, so its sources are cached but its
//! merge is not (a new cache key, a new hardlink farm), which is exactly
//! what big-copy times. `rebuild` builds the `/app0` graph again, all
//! cached. `disk` measures what one uncached big-copy build adds to the
//! store (`hardmerge du` physical bytes, before and after).
//!
//! After the first build, the result is exported with `--link-output` and
//! `hardmerge tree` checks that its `/app0` equals `src`; a mismatch is a
//! warning and `app0_equals_src=NO` in the big-copy row, not fatal.

use std::cell::{Cell, OnceCell};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;

use super::measure::{command_output, remove_tree, sync, Samples};
use super::report::Row;
use super::workload::{
    disk_use, local, log_run, tree_digest, with_directory, write_graph, BuildReport, CpPeer,
    Workload, CP_A, CP_AL, CP_AL_SYNC, CP_A_SYNC,
};
use super::Bench;

/// The warm store and what was measured in it.
pub struct Warm {
    dir: PathBuf,
    store: PathBuf,
    /// The N of the next `/appN`.
    next: Cell<usize>,
    /// The big-copy measurement, made once and shared with `rebuild`.
    measured: OnceCell<Measured>,
    /// Whether `/app0` of the first build equals `src`.
    app0_ok: Cell<bool>,
}

/// big-copy's peers (see [`CpPeer`]).
const PEERS: [CpPeer; 4] = [CP_AL, CP_AL_SYNC, CP_A, CP_A_SYNC];

struct Measured {
    build: Samples,
    /// One per [`PEERS`].
    peers: Vec<Samples>,
    /// The report of the last timed build.
    report: BuildReport,
}

impl Warm {
    /// The store after its first build: both sources imported, `/app0`
    /// built and checked against `src`.
    fn get(bench: &Bench) -> Result<&Warm> {
        let work = bench.workload()?;
        if let Some(warm) = work.warm.get() {
            return Ok(warm);
        }
        let dir = bench.scenario_dir("warm-store")?;
        let warm = Warm {
            store: dir.join("store"),
            dir,
            next: Cell::new(0),
            measured: OnceCell::new(),
            app0_ok: Cell::new(false),
        };
        eprintln!("  warm store: importing src and base, building /app0 (not timed)");
        let (took, report) = warm.build_next(bench, work)?;
        eprintln!(
            "  warm store: first build {:.3} s: {} ops run, {} files copied, {} linked",
            took.as_secs_f64(),
            report.total("ops_run"),
            report.total("files_copied"),
            report.total("files_linked"),
        );
        warm.check_app0(bench, work)?;
        Ok(work.warm.get_or_init(|| warm))
    }

    fn graph(&self, n: usize) -> PathBuf {
        self.dir.join(format!("big-copy-app{n}.json"))
    }

    /// Writes the big-copy graph placing src at `/appN` for the next N and
    /// builds it (timed).
    fn build_next(&self, bench: &Bench, work: &Workload) -> Result<(Duration, BuildReport)> {
        let n = self.next.get();
        self.next.set(n + 1);
        let graph = self.graph(n);
        write_graph(
            &graph,
            json!({
                "base": local("base"),
                "src": local("src"),
                "out": with_directory("base", &format!("/app{n}"), "src"),
            }),
            "out",
        )?;
        work.timed_build(bench, &graph, &self.store, &self.dir.join("report.json"))
    }

    /// Exports the `/app0` build (cached) by hard links and compares its
    /// `/app0` with `src`.
    fn check_app0(&self, bench: &Bench, work: &Workload) -> Result<()> {
        let export = self.dir.join("export");
        let mut cmd =
            work.build_command(bench, &self.graph(0), &self.store, &self.dir.join("r.json"));
        cmd.arg("--output").arg(&export).arg("--link-output");
        command_output(&mut cmd)?;
        let want = tree_digest(bench, &work.src_path())?;
        let got = tree_digest(bench, &export.join("app0"))?;
        remove_tree(&export)?;
        if want == got {
            eprintln!("  warm store: /app0 of the export equals src ({want})");
            self.app0_ok.set(true);
        } else {
            eprintln!(
                "  warning: hardmerge misbehaves: /app0 of the big-copy build ({got}) differs \
                 from the source tree ({want}); graph {}",
                self.graph(0).display()
            );
        }
        Ok(())
    }

    /// The big-copy build and its peers, measured once.
    fn measured(&self, bench: &Bench, work: &Workload) -> Result<&Measured> {
        if let Some(m) = self.measured.get() {
            return Ok(m);
        }
        let src = work.peer_src()?;
        let copy = self.dir.join("cp-dst");
        eprintln!("  big-copy: warm-up of each command (not timed)");
        self.build_next(bench, work)?;
        for peer in PEERS {
            peer.time(&src, &copy)?;
        }

        let runs = bench.runs;
        let mut build = Vec::new();
        let mut peers = vec![Vec::new(); PEERS.len()];
        let mut last = None;
        for run in 0..runs {
            let (took, report) = self.build_next(bench, work)?;
            log_run("hardmerge build", run, runs, took);
            build.push(took.as_secs_f64());
            last = Some(report);
            for (peer, samples) in PEERS.iter().zip(&mut peers) {
                let took = peer.time(&src, &copy)?;
                log_run(peer.name, run, runs, took);
                samples.push(took.as_secs_f64());
            }
        }
        let measured = Measured {
            build: Samples { values: build },
            peers: peers.into_iter().map(|values| Samples { values }).collect(),
            report: last.expect("at least one run"),
        };
        Ok(self.measured.get_or_init(|| measured))
    }
}

fn variant(work: &Workload) -> String {
    format!(
        "{} files, {} MB",
        work.src.files,
        work.src.bytes / 1_000_000
    )
}

/// `big-copy`: the uncached build, against `cp -al` and `cp -a` of the
/// tree, each with and without a `sync` in the timed span.
pub fn run_big_copy(bench: &Bench) -> Result<Vec<Row>> {
    let warm = Warm::get(bench)?;
    let work = bench.workload()?;
    let m = warm.measured(bench, work)?;
    let r = &m.report;
    let mut row = Row::measured("big-copy", &variant(work), m.build.clone());
    for (peer, samples) in PEERS.iter().zip(&m.peers) {
        row = row.with_peer(peer.name, samples.clone());
    }
    let row = row
        .with_extra("ops_run", r.total("ops_run"))
        .with_extra("ops_cached", r.total("ops_cached"))
        .with_extra("files_linked", r.total("files_linked"))
        .with_extra("files_copied", r.total("files_copied"))
        .with_extra("copied_bytes", r.total("bytes_copied"))
        .with_extra("fallbacks", r.total("fallbacks"))
        .with_extra(
            "app0_equals_src",
            if warm.app0_ok.get() { "yes" } else { "NO" },
        );
    Ok(vec![row])
}

/// `rebuild`: the `/app0` graph again, everything cached, against the
/// big-copy build (measured now if `big-copy` did not run before).
pub fn run_rebuild(bench: &Bench) -> Result<Vec<Row>> {
    let warm = Warm::get(bench)?;
    let work = bench.workload()?;
    let peer = warm.measured(bench, work)?.build.clone();
    let graph = warm.graph(0);
    let report = warm.dir.join("rebuild-report.json");
    eprintln!("  rebuild: warm-up (not timed)");
    work.timed_build(bench, &graph, &warm.store, &report)?;
    let mut last = None;
    let samples = Samples::measure(bench.runs, |run| {
        let (took, r) = work.timed_build(bench, &graph, &warm.store, &report)?;
        log_run("hardmerge build (cached)", run, bench.runs, took);
        last = Some(r);
        Ok(took)
    })?;
    let r = last.expect("at least one run");
    let row = Row::measured("rebuild", &variant(work), samples)
        .with_peer("big-copy build", peer)
        .with_extra("ops_run", r.total("ops_run"))
        .with_extra("ops_cached", r.total("ops_cached"));
    Ok(vec![row])
}

/// `disk`: physical bytes one uncached big-copy build adds to the store
/// (`hardmerge du`), against the tree's own size. Also shown: what the
/// filesystem allocated (`du -sB1` of the store, which counts directory
/// blocks and the store's own records too, each inode once).
pub fn run_disk(bench: &Bench) -> Result<Vec<Row>> {
    let warm = Warm::get(bench)?;
    let work = bench.workload()?;
    let (mut physical, mut logical, mut blocks) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..bench.runs {
        sync()?;
        let before = (disk_use(bench, &warm.store)?, allocated(&warm.store)?);
        let (took, _) = warm.build_next(bench, work)?;
        sync()?;
        let after = (disk_use(bench, &warm.store)?, allocated(&warm.store)?);
        let added = after.0 .0 as f64 - before.0 .0 as f64;
        let added_logical = after.0 .1 as f64 - before.0 .1 as f64;
        let added_blocks = after.1 as f64 - before.1 as f64;
        eprintln!(
            "  disk: run {}/{}: build {:.3} s, du physical +{added} bytes, du logical \
             +{added_logical} bytes, allocated on disk (du -sB1) +{added_blocks} bytes",
            run + 1,
            bench.runs,
            took.as_secs_f64(),
        );
        physical.push(added);
        logical.push(added_logical);
        blocks.push(added_blocks);
    }
    let added = Samples { values: physical };
    let blocks = Samples { values: blocks };
    let tree = work.src.bytes as f64;
    let share = added.median() / tree;
    let row = Row::measured("disk", &variant(work), added)
        .in_bytes()
        .with_peer(
            "tree",
            Samples {
                values: vec![work.src.bytes as f64],
            },
        )
        .with_ratio("allocated_vs_tree", blocks.median() / tree)
        .with_extra("share_of_tree", format!("{:.3}%", share * 100.0))
        .with_extra("target", "<= 2%")
        .with_extra("logical_added_bytes", Samples { values: logical }.median())
        .with_extra("allocated_added_bytes", blocks.median())
        .with_extra(
            "allocated_share_of_tree",
            format!("{:.3}%", blocks.median() / tree * 100.0),
        );
    Ok(vec![row])
}

/// `du -s -B1 DIR`: bytes allocated under `dir`, each inode counted once.
fn allocated(dir: &Path) -> Result<u64> {
    let out = command_output(Command::new("du").arg("-s").arg("-B1").arg(dir))?;
    let text = String::from_utf8_lossy(&out);
    match text.split_whitespace().next().map(str::parse) {
        Some(Ok(n)) => Ok(n),
        _ => bail!("du -sB1 {} printed `{}`", dir.display(), text.trim_end()),
    }
}
