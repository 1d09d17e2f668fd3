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
///
/// An inner merge used only by this layer gives up its layers (moved, not
/// cloned), so a chain of N steps costs O(N), not O(N²).
pub fn run(ir: &mut Ir) {
    let mut uses = vec![0u32; ir.nodes.len()];
    for node in &ir.nodes {
        for j in node.op.inputs() {
            uses[j] += 1;
        }
    }
    for &o in ir.outputs.values() {
        uses[o] += 1;
    }
    for i in 0..ir.nodes.len() {
        while let Some(inner) = first_layer_merge(ir, i) {
            let inner_layers = if uses[inner] == 1 {
                match &mut ir.nodes[inner].op {
                    IrOp::Merge { layers } => std::mem::take(layers),
                    _ => unreachable!("a merge"),
                }
            } else {
                match &ir.nodes[inner].op {
                    IrOp::Merge { layers } => layers.clone(),
                    _ => unreachable!("a merge"),
                }
            };
            // The inner merge loses this use; its own inputs gain the copies.
            uses[inner] -= 1;
            if uses[inner] > 0 {
                for l in &inner_layers {
                    uses[l.input] += 1;
                }
            }
            let IrOp::Merge { layers: outer } = &mut ir.nodes[i].op else {
                unreachable!("a merge");
            };
            let count = inner_layers.len();
            let rest = outer.split_off(1);
            *outer = inner_layers;
            outer.extend(rest);
            let total = outer.len();
            let reason = format!(
                "first layer is the merge `{}`: its {count} layer{} inlined",
                ir.label_str(inner),
                if count == 1 { "" } else { "s" }
            );
            ir.rewrites.push(Rewrite {
                op: ir.label(i),
                rule: Rule::Flatten,
                reason,
                from: "merge[merge, ...]".to_string(),
                to: format!("merge of {total} layers"),
            });
        }
    }
}
