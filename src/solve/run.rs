//! Running the ops a build needs: a small scheduler over the IR, and what
//! each op kind does with the snapshotter.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::report::{Event, OpReport, Report};
use super::{BuildError, BuildOptions, Built};
use crate::compile::{Compiled, IrOp, NodeId, Strategy};
use crate::ops::{self, Ctx, OpError};
use crate::snapshot::native::NativeStore;
use crate::snapshot::{Committed, Key, Snapshotter, Write};
use crate::tree::Tree;

struct State {
    ready: Vec<NodeId>,
    waiting_on: Vec<usize>,
    running: usize,
    left: usize,
    error: Option<BuildError>,
    reports: Vec<Option<OpReport>>,
    /// Why links fell back to copies, with counts, in order first seen.
    fallbacks: Vec<(String, u64)>,
}

/// Runs every needed op missing from the store, then reports.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    compiled: &Compiled,
    out: NodeId,
    needed: &[bool],
    keys: &[Key],
    mut sources: Vec<Option<Tree>>,
    store: &NativeStore,
    opts: &BuildOptions<'_>,
    output: String,
) -> Result<Built, BuildError> {
    let ir = &compiled.ir;
    let n = ir.nodes.len();
    let strategy = match opts.strategy {
        Strategy::Hardlink => "hardlink",
        Strategy::Copy => "copy",
    };
    let report_of = |i: NodeId, cached: bool| OpReport {
        digest: compiled.digests[i].clone(),
        names: ir.nodes[i].names.clone(),
        kind: ir.nodes[i].op.kind().to_string(),
        strategy: strategy.to_string(),
        cached,
        ..OpReport::default()
    };
    // Which ops must run: walking down from the output, an op found in the
    // store needs nothing below it.
    let mut runs = vec![false; n];
    let mut present = vec![false; n];
    let mut stack = vec![out];
    let mut seen = vec![false; n];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        if store.lookup(&keys[i])?.is_some() {
            present[i] = true;
            continue;
        }
        runs[i] = true;
        stack.extend(ir.nodes[i].op.inputs());
    }
    let mut reports: Vec<Option<OpReport>> = (0..n).map(|_| None).collect();
    let mut cached_count = 0;
    for i in 0..n {
        if present[i] {
            cached_count += 1;
            store.touch(&keys[i]);
            (opts.events)(Event::Cached {
                names: ir.nodes[i].names.clone(),
                kind: ir.nodes[i].op.kind().to_string(),
            });
            reports[i] = Some(report_of(i, true));
        }
    }
    let to_run = runs.iter().filter(|r| **r).count();
    (opts.events)(Event::Plan {
        ops: to_run + cached_count,
        cached: cached_count,
    });

    let mut waiting_on = vec![0usize; n];
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for i in 0..n {
        if !runs[i] {
            continue;
        }
        let mut inputs = ir.nodes[i].op.inputs();
        inputs.sort_unstable();
        inputs.dedup();
        for j in inputs {
            if runs[j] {
                waiting_on[i] += 1;
                users[j].push(i);
            }
        }
    }
    let ready: Vec<NodeId> = (0..n)
        .filter(|&i| runs[i] && waiting_on[i] == 0)
        .rev()
        .collect();
    let state = Mutex::new(State {
        ready,
        waiting_on,
        running: 0,
        left: to_run,
        error: None,
        reports,
        fallbacks: Vec::new(),
    });
    let wake = Condvar::new();
    let sources: Vec<Mutex<Option<Tree>>> = sources.drain(..).map(Mutex::new).collect();
    let ctx = Ctx::current(ir.epoch);
    let write = match opts.strategy {
        Strategy::Hardlink => Write::Link,
        Strategy::Copy => Write::Copy,
    };
    let jobs = opts.jobs.max(1).min(to_run.max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = {
                    let mut st = state.lock().expect("scheduler");
                    loop {
                        if st.error.is_some() || st.left == 0 {
                            return;
                        }
                        if let Some(i) = st.ready.pop() {
                            st.running += 1;
                            break i;
                        }
                        st = wake.wait(st).expect("scheduler");
                    }
                };
                let node = &ir.nodes[i];
                (opts.events)(Event::Started {
                    names: node.names.clone(),
                    kind: node.op.kind().to_string(),
                });
                let started = Instant::now();
                let source = sources[i].lock().expect("sources").take();
                let result = run_op(compiled, i, keys, source, store, &ctx, write);
                let seconds = started.elapsed().as_secs_f64();
                let mut st = state.lock().expect("scheduler");
                st.running -= 1;
                match result {
                    Ok(c) => {
                        let mut r = report_of(i, false);
                        r.seconds = seconds;
                        r.files_linked = c.stats.files_linked;
                        r.files_copied = c.stats.files_copied;
                        r.bytes_copied = c.stats.bytes_copied;
                        r.fallbacks = c.stats.fallbacks.len() as u64;
                        r.bytes_saved = c.info.logical_bytes.saturating_sub(c.stats.bytes_copied);
                        (opts.events)(Event::Done {
                            names: node.names.clone(),
                            kind: node.op.kind().to_string(),
                            seconds,
                            files_linked: r.files_linked,
                            files_copied: r.files_copied,
                            fallbacks: r.fallbacks,
                        });
                        for f in &c.stats.fallbacks {
                            fallback_note(&mut st, f);
                        }
                        st.reports[i] = Some(r);
                        st.left -= 1;
                        for &u in &users[i] {
                            st.waiting_on[u] -= 1;
                            if st.waiting_on[u] == 0 {
                                st.ready.push(u);
                            }
                        }
                    }
                    Err(e) => {
                        if st.error.is_none() {
                            st.error = Some(e);
                        }
                    }
                }
                wake.notify_all();
            });
        }
    });
    let st = state.into_inner().expect("scheduler");
    if let Some(e) = st.error {
        return Err(e);
    }
    let info = store
        .lookup(&keys[out])?
        .ok_or_else(|| BuildError::Failed("the output was not committed".into()))?;
    let mut report = Report {
        output,
        digest: info.digest.clone(),
        ops: (0..n)
            .filter(|&i| needed[i])
            .filter_map(|i| st.reports[i].clone())
            .collect(),
        ..Report::default()
    };
    report.fallback_reasons = st.fallbacks;
    report.total();
    Ok(Built {
        output: report.output.clone(),
        key: keys[out].clone(),
        digest: info.digest,
        report,
    })
}

fn fallback_note(st: &mut State, f: &crate::fs::materialize::Fallback) {
    let why = super::report::fallback_reason(f.errno);
    match st.fallbacks.iter_mut().find(|(w, _)| *w == why) {
        Some((_, n)) => *n += 1,
        None => st.fallbacks.push((why, 1)),
    }
}

/// What a failed op says: its graph name, its kind, the path and the reason.
fn op_failure(names: &[String], kind: &str, e: &OpError) -> BuildError {
    let name = names.first().map(String::as_str).unwrap_or("?");
    BuildError::Failed(format!("op `{name}` ({kind}): {e}"))
}

/// Computes and commits one op's result.
fn run_op(
    compiled: &Compiled,
    i: NodeId,
    keys: &[Key],
    source: Option<Tree>,
    store: &NativeStore,
    ctx: &Ctx,
    write: Write,
) -> Result<Committed, BuildError> {
    let node = &compiled.ir.nodes[i];
    let kind = node.op.kind();
    let view = |j: NodeId| -> Result<Arc<Tree>, BuildError> { Ok(store.view(&keys[j])?) };
    let tree = match &node.op {
        IrOp::Scratch => Tree::new(),
        IrOp::Local(_) => source.expect("a local source is read before the build"),
        IrOp::Action { base, action } => {
            let mut t = store.prepare(base.map(|b| keys[b].as_str()))?;
            ops::file::apply(&mut t, action, ctx)
                .map_err(|e| op_failure(&node.names, action.kind(), &e))?;
            t
        }
        IrOp::File { base, actions } => {
            let mut t = store.prepare(base.map(|b| keys[b].as_str()))?;
            for a in actions {
                ops::file::apply(&mut t, &a.action, ctx)
                    .map_err(|e| op_failure(&a.names, a.action.kind(), &e))?;
            }
            t
        }
        IrOp::Merge { layers } => {
            let mut t = Tree::new();
            for layer in layers {
                let input = view(layer.input)?;
                let result = match &layer.placement {
                    None => ops::merge::plain_layer(&mut t, &input, layer.link),
                    Some(p) => ops::merge::placed_layer(&mut t, &input, p, layer.link, ctx),
                };
                let layer_kind = layer
                    .placement
                    .as_ref()
                    .map(|p| p.kind())
                    .unwrap_or("merge");
                result.map_err(|e| op_failure(&layer.names, layer_kind, &e))?;
            }
            t
        }
        IrOp::Diff { lower, upper } => ops::diff::diff(&*view(*lower)?, &*view(*upper)?),
        IrOp::Place { .. } => unreachable!("compiled IR has no unlowered placements"),
    };
    // Host files are always copied; everything else as the strategy says.
    store
        .commit(&keys[i], tree, kind, &node.names, write)
        .map_err(|e| {
            let name = node.names.first().map(String::as_str).unwrap_or("?");
            match BuildError::from(e) {
                BuildError::Failed(m) => BuildError::Failed(format!("op `{name}` ({kind}): {m}")),
                other => other,
            }
        })
}
