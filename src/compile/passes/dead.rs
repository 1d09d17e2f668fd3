//! `dead`: ops no output reaches are removed, each recorded.

use crate::compile::ir::Ir;
use crate::compile::rewrite::{Rewrite, Rule};

/// Removes and records the nodes no output reaches. Run first, while every
/// node is still one graph op, so the records name graph ops.
pub fn run(ir: &mut Ir) {
    let live = ir.reachable();
    if live.iter().all(|l| *l) {
        return;
    }
    for (node, _) in ir.nodes.iter().zip(&live).filter(|(_, l)| !**l) {
        let kind = node.op.kind();
        for name in &node.names {
            ir.rewrites.push(Rewrite::new(
                name,
                Rule::Dead,
                kind.to_string(),
                "(removed)".to_string(),
                "no output reaches it".to_string(),
            ));
        }
    }
    ir.retain(&live);
}
