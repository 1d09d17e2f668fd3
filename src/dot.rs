//! Graphviz renderings of a graph and of a compiled IR (`hardmerge dot`).

use std::fmt::Write as _;

use crate::compile::passes::dedupe::short;
use crate::compile::{Compiled, IrOp};
use crate::graph::{Graph, Op};

/// Escapes a string for a double-quoted Graphviz label.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A one-line summary of an op's main fields, for its node label.
fn graph_detail(op: &Op) -> String {
    match op {
        Op::Scratch | Op::Merge { .. } | Op::Diff { .. } => String::new(),
        Op::Local(l) => l.path.clone(),
        Op::File { action, .. } => action.path().to_string(),
        Op::Place { placement, .. } => format!("at {}", placement.at()),
    }
}

/// The input graph: one node per op (kind and name), edges labelled with
/// the field that references, outputs as ellipses.
pub fn graph_dot(graph: &Graph) -> String {
    let mut s = String::from(
        "digraph hardmerge_graph {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for (name, op) in &graph.ops {
        let detail = graph_detail(op);
        let label = if detail.is_empty() {
            format!("{name}\n{}", op.kind())
        } else {
            format!("{name}\n{} {detail}", op.kind())
        };
        let _ = writeln!(s, "  \"{}\" [label=\"{}\"];", esc(name), esc(&label));
    }
    for (name, op) in &graph.ops {
        for (i, (field, target)) in op.refs().into_iter().enumerate() {
            let label = if field == "inputs" {
                format!("inputs[{i}]")
            } else {
                field.to_string()
            };
            let _ = writeln!(
                s,
                "  \"{}\" -> \"{}\" [label=\"{}\"];",
                esc(target),
                esc(name),
                esc(&label)
            );
        }
    }
    for (out, op) in &graph.outputs {
        let _ = writeln!(
            s,
            "  \"output:{}\" [shape=ellipse, label=\"output {}\"];",
            esc(out),
            esc(out)
        );
        let _ = writeln!(s, "  \"{}\" -> \"output:{}\";", esc(op), esc(out));
    }
    s.push_str("}\n");
    s
}

/// The compiled IR: one node per op (kind, names, short digest), merge
/// layers as edges labelled with their index, placement, `at` path and
/// whether they link or copy.
pub fn ir_dot(c: &Compiled) -> String {
    let mut s = String::from(
        "digraph hardmerge_ir {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for (i, node) in c.ir.nodes.iter().enumerate() {
        let mut label = format!("{}\n{}", node.op.kind(), short(&c.digests[i]));
        if !node.names.is_empty() {
            let _ = write!(label, "\n{}", node.names.join(", "));
        }
        if let IrOp::File { actions, .. } = &node.op {
            for a in actions {
                let _ = write!(label, "\n{} {}", a.action.kind(), a.action.path());
            }
        }
        let _ = writeln!(s, "  n{i} [label=\"{}\"];", esc(&label));
    }
    for (i, node) in c.ir.nodes.iter().enumerate() {
        match &node.op {
            IrOp::Merge { layers } => {
                for (k, l) in layers.iter().enumerate() {
                    let how = if l.link { "link" } else { "copy" };
                    let label = match &l.placement {
                        None => format!("#{k} / {how}"),
                        Some(p) => format!("#{k} {} at {} {how}", p.kind(), p.at()),
                    };
                    let style = if l.link { "solid" } else { "dashed" };
                    let _ = writeln!(
                        s,
                        "  n{} -> n{i} [label=\"{}\", style={style}];",
                        l.input,
                        esc(&label)
                    );
                }
            }
            IrOp::Diff { lower, upper } => {
                let _ = writeln!(s, "  n{lower} -> n{i} [label=\"lower\"];");
                let _ = writeln!(s, "  n{upper} -> n{i} [label=\"upper\"];");
            }
            op => {
                for j in op.inputs() {
                    let _ = writeln!(s, "  n{j} -> n{i} [label=\"base\"];");
                }
            }
        }
    }
    for (out, &id) in &c.ir.outputs {
        let _ = writeln!(
            s,
            "  \"output:{}\" [shape=ellipse, label=\"output {}\"];",
            esc(out),
            esc(out)
        );
        let _ = writeln!(s, "  n{id} -> \"output:{}\";", esc(out));
    }
    s.push_str("}\n");
    s
}
