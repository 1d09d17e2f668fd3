//! The `compile` scenario: `hardmerge compile` of generated graphs of
//! several sizes (10k, 100k and 1M ops unless `--sizes`), timed as whole
//! processes. Per size it reports ops per second and, as `per_op_vs_<n>`,
//! the time per op relative to the smallest size: 1.0 everywhere means the
//! compiler scales linearly.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::graphgen;
use super::measure::{time_command, Samples};
use super::report::Row;
use super::Bench;

const NAME: &str = "compile";
pub const DEFAULT_SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
/// The seed of every generated graph, so runs compare like with like.
pub const SEED: u64 = 0x6861_7264_6d65_7267;
/// Compiled outputs larger than this are not parsed to count their ops.
const MAX_PARSED_IR: u64 = 1 << 30;

pub fn run(bench: &Bench) -> Result<Vec<Row>> {
    let dir = bench.scenario_dir(NAME)?;
    let sizes = bench
        .sizes
        .clone()
        .unwrap_or_else(|| DEFAULT_SIZES.to_vec());
    let mut measured = Vec::new();
    for ops in sizes {
        let label = size_label(ops);
        let graph = dir.join(format!("graph-{label}.json"));
        let out = dir.join(format!("out-{label}.json"));

        let start = Instant::now();
        let file = File::create(&graph).with_context(|| format!("creating {}", graph.display()))?;
        let stats = graphgen::write_graph(BufWriter::new(file), ops, SEED)
            .with_context(|| format!("generating {}", graph.display()))?;
        let graph_bytes = fs::metadata(&graph)?.len();
        eprintln!(
            "  {label}: generated {} ops ({} modules, {} dead, {} duplicates), {graph_bytes} bytes, in {:.2} s",
            stats.ops,
            stats.modules,
            stats.dead,
            stats.duplicates,
            start.elapsed().as_secs_f64()
        );

        let samples = Samples::measure(bench.runs, |i| {
            // A stale output must not pass for this run's.
            let _ = fs::remove_file(&out);
            let took = time_command(
                Command::new(&bench.hardmerge)
                    .arg("compile")
                    .arg(&graph)
                    .arg("-o")
                    .arg(&out),
            )?;
            eprintln!(
                "  {label}: run {}/{}: {:.3} s",
                i + 1,
                bench.runs,
                took.as_secs_f64()
            );
            Ok(took)
        })?;

        let ir = compiled_size(&out)?;
        let mut row = Row::measured(NAME, &label, samples.clone())
            .with_extra("graph_ops", ops)
            .with_extra("ops_per_s", ops as f64 / samples.median())
            .with_extra("graph_bytes", graph_bytes)
            .with_extra("ir_bytes", ir.bytes);
        if let Some((ir_ops, rewrites)) = ir.counts {
            row = row
                .with_extra("ir_ops", ir_ops)
                .with_extra("rewrites", rewrites);
        }
        // The inputs of the big sizes are large; free the disk as we go.
        fs::remove_file(&graph)?;
        fs::remove_file(&out)?;
        measured.push((ops, row));
    }
    Ok(with_linearity(measured))
}

/// Adds `per_op_vs_<smallest>`: each row's time per op over the smallest
/// size's.
fn with_linearity(measured: Vec<(usize, Row)>) -> Vec<Row> {
    let per_op = |ops: usize, row: &Row| row.median().unwrap_or(f64::NAN) / ops as f64;
    let Some((base_ops, base)) = measured
        .iter()
        .min_by_key(|(ops, _)| *ops)
        .map(|(ops, row)| (*ops, per_op(*ops, row)))
    else {
        return Vec::new();
    };
    let key = format!("per_op_vs_{}", size_label(base_ops));
    measured
        .into_iter()
        .map(|(ops, row)| {
            let ratio = per_op(ops, &row) / base;
            row.with_ratio(&key, ratio)
        })
        .collect()
}

/// The compiled output's size, and its op and rewrite counts when it is
/// small enough to parse in reasonable time and memory.
struct CompiledSize {
    bytes: u64,
    counts: Option<(usize, usize)>,
}

fn compiled_size(out: &Path) -> Result<CompiledSize> {
    let bytes = match fs::metadata(out) {
        Ok(meta) => meta.len(),
        Err(err) => bail!(
            "hardmerge compile exited successfully but wrote no {}: {err}",
            out.display()
        ),
    };
    if bytes > MAX_PARSED_IR {
        return Ok(CompiledSize {
            bytes,
            counts: None,
        });
    }
    let text = fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    let ir: Value = serde_json::from_slice(&text)
        .with_context(|| format!("hardmerge compile wrote invalid JSON to {}", out.display()))?;
    let count = |key: &str| -> Result<usize> {
        match ir.get(key).and_then(Value::as_array) {
            Some(items) => Ok(items.len()),
            None => bail!("the compiled output has no `{key}` array"),
        }
    };
    Ok(CompiledSize {
        bytes,
        counts: Some((count("ops")?, count("rewrites")?)),
    })
}

/// `10000` → `10k`, `1000000` → `1M`, `1500` → `1500`.
fn size_label(ops: usize) -> String {
    if ops >= 1_000_000 && ops.is_multiple_of(1_000_000) {
        format!("{}M", ops / 1_000_000)
    } else if ops >= 1_000 && ops.is_multiple_of(1_000) {
        format!("{}k", ops / 1_000)
    } else {
        ops.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(size_label(10_000), "10k");
        assert_eq!(size_label(1_000_000), "1M");
        assert_eq!(size_label(2_500_000), "2500k");
        assert_eq!(size_label(1_500), "1500");
    }

    #[test]
    fn linearity_is_relative_to_the_smallest_size() {
        let row = |s: f64| Row::measured(NAME, "x", Samples { values: vec![s] });
        let rows = with_linearity(vec![(100_000, row(2.0)), (10_000, row(0.1))]);
        assert_eq!(
            rows[0].ratios,
            [(
                "per_op_vs_10k".to_string(),
                2.0 / 100_000.0 / (0.1 / 10_000.0)
            )]
        );
        assert_eq!(rows[1].ratios, [("per_op_vs_10k".to_string(), 1.0)]);
    }
}
