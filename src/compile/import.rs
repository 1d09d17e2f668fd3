//! Graph to IR, one node per graph op, before any rewrite.
//!
//! Graph `merge` ops become IR merges of plain layers here; copies stay
//! [`IrOp::Place`] until the `lower` pass.

use crate::graph::{Graph, Op};

use super::ir::{Action, Ir, IrOp, Layer, Node, NodeId};

/// The IR of a validated graph, nodes in dependency order.
pub fn import(graph: &Graph) -> Ir {
    let order = graph.topo_order().expect("a validated graph has no cycle");
    let mut ids: rustc_hash::FxHashMap<&str, NodeId> = rustc_hash::FxHashMap::default();
    let mut nodes = Vec::with_capacity(order.len());
    for name in order {
        let id = |n: &str| ids[n];
        let op = match &graph.ops[name] {
            Op::Scratch => IrOp::Scratch,
            Op::Local(l) => IrOp::Local(l.clone()),
            Op::File { base, action } => IrOp::Action {
                base: base.as_deref().map(id),
                action: action.clone(),
            },
            Op::Place {
                base,
                source,
                placement,
            } => IrOp::Place {
                base: base.as_deref().map(id),
                source: id(source),
                placement: placement.clone(),
            },
            Op::Merge { inputs } => IrOp::Merge {
                layers: inputs
                    .iter()
                    .map(|i| Layer {
                        input: id(i),
                        link: true,
                        names: vec![name.to_string()],
                        placement: None,
                    })
                    .collect(),
            },
            Op::Diff { lower, upper } => IrOp::Diff {
                lower: id(lower),
                upper: id(upper),
            },
        };
        ids.insert(name, nodes.len());
        nodes.push(Node {
            names: vec![name.to_string()],
            op,
        });
    }
    let outputs = graph
        .outputs
        .iter()
        .map(|(out, op)| (out.clone(), ids[op.as_str()]))
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
