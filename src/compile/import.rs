//! Graph to IR, one node per graph op, before any rewrite.
//!
//! Graph `merge` ops become IR merges of plain layers here; copies stay
//! [`IrOp::Place`] until the `lower` pass.

use crate::graph::{Graph, Op};

use super::ir::{Action, Ir, IrOp, Layer, Node};

/// The IR of a validated graph, nodes in dependency order.
pub fn import(graph: &Graph) -> Ir {
    let index = graph
        .index()
        .expect("a validated graph refers to its own ops");
    let order = graph.order(&index).expect("a validated graph has no cycle");
    // Node of each op position, set as the op is imported (inputs first).
    let mut node_of = vec![usize::MAX; index.names.len()];
    let mut nodes = Vec::with_capacity(order.len());
    for i in order {
        let name = index.names[i];
        let mut refs = index.refs_of(i).iter().map(|&j| node_of[j]);
        let mut next = || refs.next().expect("one position per reference");
        let op = match index.ops[i] {
            Op::Scratch => IrOp::Scratch,
            Op::Local(l) => IrOp::Local(l.clone()),
            Op::File { base, action } => IrOp::Action {
                base: base.as_ref().map(|_| next()),
                action: action.clone(),
            },
            Op::Place {
                base,
                source: _,
                placement,
            } => IrOp::Place {
                base: base.as_ref().map(|_| next()),
                source: next(),
                placement: placement.clone(),
            },
            Op::Merge { inputs } => IrOp::Merge {
                layers: inputs
                    .iter()
                    .map(|_| Layer {
                        input: next(),
                        link: true,
                        names: vec![name.to_string()],
                        placement: None,
                    })
                    .collect(),
            },
            Op::Diff { .. } => IrOp::Diff {
                lower: next(),
                upper: next(),
            },
        };
        node_of[i] = nodes.len();
        nodes.push(Node {
            names: vec![name.to_string()],
            op,
        });
    }
    let outputs = graph
        .outputs
        .iter()
        .map(|(out, op)| {
            let at = index
                .names
                .binary_search(&op.as_str())
                .expect("validated output");
            (out.clone(), node_of[at])
        })
        .collect();
    Ir {
        epoch: graph.epoch,
        nodes,
        outputs,
        rewrites: Vec::new(),
    }
}

/// An action of a node that is one file action, for `fuse`.
pub(crate) fn as_action(node: &Node) -> Option<Action> {
    match &node.op {
        IrOp::Action { action, .. } => Some(Action {
            names: node.names.clone(),
            action: action.clone(),
        }),
        _ => None,
    }
}
