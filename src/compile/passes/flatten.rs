//! `flatten`: a merge whose first layer is a plain layer of a merge takes
//! that merge's layers in its place, so a chain of N `with_directory` is one
//! N-way merge, not N merges of a growing tree.
//!
//! Only the first layer: its tree is placed onto an empty tree, which is
//! the same as applying its layers there. A later layer is never inlined:
//! placing a merged tree differs from placing its parts in turn (a file then
//! a directory at one path; a diff's deletions and structural parents).

use crate::compile::ir::{Ir, IrOp};
use crate::compile::rewrite::{Rewrite, Rule};

/// The merge a node's first layer inlines, if any: the node is a merge and
/// its first layer is a plain layer whose input is a merge.
fn first_layer_merge(ir: &Ir, i: usize) -> Option<usize> {
    let IrOp::Merge { layers } = &ir.nodes[i].op else {
        return None;
    };
    let first = layers.first().filter(|l| l.is_plain())?;
    matches!(ir.nodes[first.input].op, IrOp::Merge { .. }).then_some(first.input)
}

/// Inlines first-layer merges, front to back (inner merges are already flat).
pub fn run(ir: &mut Ir) {
    for i in 0..ir.nodes.len() {
        while let Some(inner) = first_layer_merge(ir, i) {
            let (
                IrOp::Merge { layers: outer },
                IrOp::Merge {
                    layers: inner_layers,
                },
            ) = (&ir.nodes[i].op, &ir.nodes[inner].op)
            else {
                unreachable!("both are merges");
            };
            let count = inner_layers.len();
            let mut merged = inner_layers.clone();
            merged.extend_from_slice(&outer[1..]);
            ir.rewrites.push(Rewrite::new(
                &ir.label(i),
                Rule::Flatten,
                "merge[merge, ...]".to_string(),
                format!("merge of {} layers", merged.len()),
                format!(
                    "first layer is the merge `{}`: its {count} layer{} inlined",
                    ir.label(inner),
                    if count == 1 { "" } else { "s" }
                ),
            ));
            ir.nodes[i].op = IrOp::Merge { layers: merged };
        }
    }
    ir.sweep();
}
