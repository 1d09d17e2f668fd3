//! `chain`: 100 chained `with_directory` of 500-file sources onto the big
//! tree, against one `with_directory` of a single source holding all the
//! same files.
//!
//! Graphs: `base = local src`; the chain places `layers/K` at
//! `/layers-T/K` onto the step before (the first onto `base`), only the
//! last step an output; the peer places `layers` (the 100 trees as one)
//! at `/layers-T` onto `base`. The two give equal trees (the layer
//! directories have the metadata hardmerge gives a directory it creates),
//! and every run compares their digests. Each run uses a new tag
//! T, so both builds have their sources cached (an untimed warm-up of each
//! imports them) but their merges not. A mismatch is reported (a warning,
//! and `same_tree=NO` in the row), not fatal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value};

use super::measure::Samples;
use super::report::Row;
use super::workload::{
    layer_name, local, log_run, with_directory, write_graph, BuildReport, LAYERS,
};
use super::Bench;

const NAME: &str = "chain";

pub fn run(bench: &Bench) -> Result<Vec<Row>> {
    let work = bench.workload()?;
    let layers = work.layers()?;
    let dir = bench.scenario_dir(NAME)?;
    let store = dir.join("store");
    let report = dir.join("report.json");

    // Builds both graphs for one tag; false when their trees differ.
    let mut mismatches = 0;
    let mut both = |tag: &str| -> Result<(Duration, BuildReport, Duration, BuildReport)> {
        let (chain_graph, one_graph) = (chain_graph(&dir, tag)?, one_graph(&dir, tag)?);
        let (chain, chain_report) = work.timed_build(bench, &chain_graph, &store, &report)?;
        let (one, one_report) = work.timed_build(bench, &one_graph, &store, &report)?;
        if chain_report.digest != one_report.digest {
            mismatches += 1;
            eprintln!(
                "  warning: hardmerge misbehaves: the chain of {LAYERS} with_directory ({}) and \
                 the one with_directory of the same files ({}) give different trees; graphs {} \
                 and {}",
                chain_report.digest,
                one_report.digest,
                chain_graph.display(),
                one_graph.display(),
            );
        }
        Ok((chain, chain_report, one, one_report))
    };

    eprintln!("  chain: importing the sources, warm-up of each build (not timed)");
    both("warm")?;
    let runs = bench.runs;
    let (mut chain, mut one) = (Vec::new(), Vec::new());
    let (mut chain_ops, mut one_ops) = (0, 0);
    for run in 0..runs {
        let (c, c_report, o, o_report) = both(&format!("r{run}"))?;
        log_run("chain of 100 with_directory", run, runs, c);
        log_run("one with_directory", run, runs, o);
        chain.push(c.as_secs_f64());
        one.push(o.as_secs_f64());
        (chain_ops, one_ops) = (c_report.total("ops_run"), o_report.total("ops_run"));
    }
    let same = if mismatches == 0 {
        "yes".to_string()
    } else {
        format!("NO ({mismatches} of {} builds)", runs + 1)
    };
    let variant = format!(
        "{LAYERS} x {} files onto {} files",
        layers.files / LAYERS,
        work.src.files
    );
    let row = Row::measured(NAME, &variant, Samples { values: chain })
        .with_peer("one with_directory", Samples { values: one })
        .with_extra("chain_ops_run", chain_ops)
        .with_extra("one_ops_run", one_ops)
        .with_extra("same_tree", same);
    Ok(vec![row])
}

/// The chain graph for tag `tag`, written to `dir/chain-TAG.json`.
fn chain_graph(dir: &Path, tag: &str) -> Result<PathBuf> {
    let mut ops = Map::new();
    ops.insert("base".into(), local("src"));
    let mut below = "base".to_string();
    for k in 0..LAYERS {
        let name = layer_name(k);
        let source = format!("L{name}");
        let step = format!("s{name}");
        ops.insert(source.clone(), local(&format!("layers/{name}")));
        ops.insert(
            step.clone(),
            with_directory(&below, &format!("/layers-{tag}/{name}"), &source),
        );
        below = step;
    }
    let path = dir.join(format!("chain-{tag}.json"));
    write_graph(&path, Value::Object(ops), &below)?;
    Ok(path)
}

/// The peer graph for tag `tag`, written to `dir/one-TAG.json`.
fn one_graph(dir: &Path, tag: &str) -> Result<PathBuf> {
    let path = dir.join(format!("one-{tag}.json"));
    write_graph(
        &path,
        serde_json::json!({
            "base": local("src"),
            "all": local("layers"),
            "one": with_directory("base", &format!("/layers-{tag}"), "all"),
        }),
        "one",
    )?;
    Ok(path)
}
