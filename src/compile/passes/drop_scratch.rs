//! `drop-scratch`: layers of an empty tree go; a merge of one plain,
//! non-diff layer is its input.

use crate::compile::ir::{add_names, Ir, IrOp, NodeId};
use crate::compile::rewrite::{Rewrite, Rule};

/// Whether a node is an empty tree by construction.
fn is_empty_tree(op: &IrOp) -> bool {
    match op {
        IrOp::Scratch => true,
        IrOp::Merge { layers } => layers.is_empty(),
        _ => false,
    }
}

/// Removes empty plain layers and replaces one-layer merges by their input.
pub fn run(ir: &mut Ir) {
    let mut redirect: Vec<NodeId> = (0..ir.nodes.len()).collect();
    for i in 0..ir.nodes.len() {
        ir.nodes[i].op.for_each_input_mut(|r| *r = redirect[*r]);
        let IrOp::Merge { layers } = &ir.nodes[i].op else {
            continue;
        };
        let name = ir.label(i);
        let mut kept = Vec::with_capacity(layers.len());
        for layer in layers {
            let input = &ir.nodes[layer.input];
            if layer.is_plain() && is_empty_tree(&input.op) {
                let what = if matches!(input.op, IrOp::Scratch) {
                    "scratch"
                } else {
                    "a merge with no layers"
                };
                ir.rewrites.push(Rewrite::new(
                    &name,
                    Rule::DropScratch,
                    "merge".to_string(),
                    "merge".to_string(),
                    format!(
                        "layer `{}` is {what}, an empty tree: removed",
                        ir.label_str(layer.input)
                    ),
                ));
            } else {
                kept.push(layer.clone());
            }
        }
        if let [only] = kept.as_slice() {
            let input = only.input;
            if only.is_plain() && !matches!(ir.nodes[input].op, IrOp::Diff { .. }) {
                let input_name = ir.label_str(input);
                ir.rewrites.push(Rewrite {
                    to: format!("`{input_name}`"),
                    reason: format!(
                        "one plain layer, not a diff: the merge is its input `{input_name}`"
                    ),
                    op: name,
                    rule: Rule::DropScratch,
                    from: "merge".to_string(),
                });
                let names = ir.nodes[i].names.clone();
                add_names(&mut ir.nodes[input].names, &names);
                redirect[i] = input;
                ir.nodes[i].op = IrOp::Merge { layers: kept };
                continue;
            }
        }
        ir.nodes[i].op = IrOp::Merge { layers: kept };
    }
    ir.redirect_outputs(&redirect);
}
