//! `fuse`: consecutive `mkdir`/`mkfile`/`rm`/`symlink` ops, each the base
//! of the next and used by nothing else, become one `file` op.

use crate::compile::import::as_action;
use crate::compile::ir::{add_names, Action, Ir, IrOp};
use crate::compile::rewrite::{Rewrite, Rule};

/// Fuses chains of file actions. Run after `dead` and `dedupe`: a use by a
/// dead op does not count, and two equal users are one.
pub fn run(ir: &mut Ir) {
    let n = ir.nodes.len();
    let mut uses = vec![0u32; n];
    for node in &ir.nodes {
        for j in node.op.inputs() {
            uses[j] += 1;
        }
    }
    for &o in ir.outputs.values() {
        uses[o] += 1;
    }
    let mut fused = vec![false; n];
    let mut absorbed = vec![false; n];
    // Indexed: node `i` absorbs its base `b`, an earlier node of the arena.
    #[allow(clippy::needless_range_loop)]
    for i in 0..n {
        let IrOp::Action {
            base: Some(b),
            action,
        } = &ir.nodes[i].op
        else {
            continue;
        };
        let b = *b;
        if uses[b] != 1 {
            continue;
        }
        let action = action.clone();
        // `b` has this one use: its actions and names move into `i`.
        let (base, mut actions) = match &ir.nodes[b].op {
            IrOp::Action { base, .. } => (*base, vec![as_action(&ir.nodes[b]).expect("an action")]),
            IrOp::File { base, .. } => {
                let base = *base;
                let IrOp::File { actions, .. } = &mut ir.nodes[b].op else {
                    unreachable!("a file op")
                };
                (base, std::mem::take(actions))
            }
            _ => continue,
        };
        actions.push(Action {
            names: ir.nodes[i].names.clone(),
            action,
        });
        let mut names = std::mem::take(&mut ir.nodes[b].names);
        add_names(&mut names, &ir.nodes[i].names);
        ir.nodes[i].names = names;
        ir.nodes[i].op = IrOp::File { base, actions };
        fused[i] = true;
        absorbed[b] = true;
    }
    let ends = (0..n).filter(|&i| fused[i] && !absorbed[i]);
    for i in ends {
        let IrOp::File { actions, .. } = &ir.nodes[i].op else {
            continue;
        };
        let list: Vec<String> = actions
            .iter()
            .map(|a| format!("{} `{}`", a.action.kind(), a.names.join("`/`")))
            .collect();
        let last = actions.last().expect("two or more");
        ir.rewrites.push(Rewrite::new(
            last.names.first().map(String::as_str).unwrap_or("?"),
            Rule::Fuse,
            format!("{} file ops", actions.len()),
            format!("file op of {} actions", actions.len()),
            format!(
                "{}: each the base of the next and used by nothing else",
                list.join(", ")
            ),
        ));
    }
    ir.sweep();
}
