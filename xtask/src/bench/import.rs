//! `import`: the first build of the big tree, a graph of one `local`, into
//! a fresh store each run; peers `cp -a` of the same tree, and `cp -a`
//! then `sync` (a fresh copy each run; see [`CpPeer`]). Stores and copies
//! are removed between runs, not timed.

use anyhow::Result;

use super::measure::{remove_tree, Samples};
use super::report::Row;
use super::workload::{local, log_run, write_graph, CpPeer, CP_A, CP_A_SYNC};
use super::Bench;

const NAME: &str = "import";
const PEERS: [CpPeer; 2] = [CP_A, CP_A_SYNC];

pub fn run(bench: &Bench) -> Result<Vec<Row>> {
    let work = bench.workload()?;
    let dir = bench.scenario_dir(NAME)?;
    let graph = dir.join("import.json");
    write_graph(&graph, serde_json::json!({"src": local("src")}), "src")?;
    let store = dir.join("store");
    let report = dir.join("report.json");
    let copy = dir.join("cp-dst");
    let src = work.peer_src()?;

    eprintln!("  import: warm-up of each command (not timed)");
    work.timed_build(bench, &graph, &store, &report)?;
    remove_tree(&store)?;
    for peer in PEERS {
        peer.time(&src, &copy)?;
    }

    let runs = bench.runs;
    let mut build = Vec::new();
    let mut peers = vec![Vec::new(); PEERS.len()];
    let mut last = None;
    for run in 0..runs {
        let (took, r) = work.timed_build(bench, &graph, &store, &report)?;
        remove_tree(&store)?;
        log_run("hardmerge build (fresh store)", run, runs, took);
        build.push(took.as_secs_f64());
        last = Some(r);
        for (peer, samples) in PEERS.iter().zip(&mut peers) {
            let took = peer.time(&src, &copy)?;
            log_run(peer.name, run, runs, took);
            samples.push(took.as_secs_f64());
        }
    }
    let r = last.expect("at least one run");
    let variant = format!(
        "{} files, {} MB",
        work.src.files,
        work.src.bytes / 1_000_000
    );
    let mut row = Row::measured(NAME, &variant, Samples { values: build });
    for (peer, values) in PEERS.iter().zip(peers) {
        row = row.with_peer(peer.name, Samples { values });
    }
    let row = row
        .with_extra("files_copied", r.total("files_copied"))
        .with_extra("copied_bytes", r.total("bytes_copied"))
        .with_extra("tree_bytes", work.src.bytes);
    Ok(vec![row])
}
