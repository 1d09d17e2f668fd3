//! `dedupe`: ops with the same digest are one op.
//!
//! Two ops have the same digest exactly when their content is equal (kind,
//! fields, inputs; names aside), so equality is decided on the content
//! itself, hashed in memory, and no digest is computed here.

use crate::compile::ir::{add_names, Ir, IrOp, NodeId};
use crate::compile::rewrite::{Rewrite, Rule};
use crate::graph::{FileAction, Local, Placement};

/// An op's content with its inputs already redirected: what its digest is
/// taken of, without `names`.
#[derive(PartialEq, Eq, Hash)]
enum Content<'a> {
    Scratch,
    Local(&'a Local),
    Action(Option<NodeId>, &'a FileAction),
    File(Option<NodeId>, Vec<&'a FileAction>),
    Place(Option<NodeId>, NodeId, &'a Placement),
    Merge(Vec<(NodeId, bool, Option<&'a Placement>)>),
    Diff(NodeId, NodeId),
}

fn content<'a>(op: &'a IrOp, r: &[NodeId]) -> Content<'a> {
    match op {
        IrOp::Scratch => Content::Scratch,
        IrOp::Local(l) => Content::Local(l),
        IrOp::Action { base, action } => Content::Action(base.map(|b| r[b]), action),
        IrOp::File { base, actions } => Content::File(
            base.map(|b| r[b]),
            actions.iter().map(|a| &a.action).collect(),
        ),
        IrOp::Place {
            base,
            source,
            placement,
        } => Content::Place(base.map(|b| r[b]), r[*source], placement),
        IrOp::Merge { layers } => Content::Merge(
            layers
                .iter()
                .map(|l| (r[l.input], l.link, l.placement.as_ref()))
                .collect(),
        ),
        IrOp::Diff { lower, upper } => Content::Diff(r[*lower], r[*upper]),
    }
}

/// Merges equal nodes into the first of them, recording each graph op that
/// was folded into another.
pub fn run(ir: &mut Ir) {
    // Only live ops count: what earlier passes left unused is dropped first.
    ir.sweep();
    let n = ir.nodes.len();
    let mut redirect: Vec<NodeId> = (0..n).collect();
    {
        let mut first: rustc_hash::FxHashMap<Content<'_>, NodeId> =
            rustc_hash::FxHashMap::default();
        first.reserve(n);
        for (i, node) in ir.nodes.iter().enumerate() {
            let c = content(&node.op, &redirect);
            match first.get(&c) {
                Some(&twin) => redirect[i] = twin,
                None => {
                    first.insert(c, i);
                }
            }
        }
    }
    if redirect.iter().enumerate().all(|(i, r)| i == *r) {
        return;
    }
    for i in 0..n {
        ir.nodes[i].op.for_each_input_mut(|r| *r = redirect[*r]);
        let twin = redirect[i];
        if twin == i {
            continue;
        }
        // One record per folded op (however many graph names it carries),
        // so the count does not depend on which of two twins comes first.
        let names = ir.nodes[i].names.clone();
        let kind = ir.nodes[i].op.kind();
        let also = if names.len() > 1 {
            format!(" (it also stands for {})", names[1..].join(", "))
        } else {
            String::new()
        };
        let twin_name = ir.label_str(twin);
        ir.rewrites.push(Rewrite {
            to: format!("`{twin_name}`"),
            reason: format!("the same op as `{twin_name}` (equal content, one digest){also}"),
            op: ir.label(i),
            rule: Rule::Dedupe,
            from: kind.to_string(),
        });
        add_names(&mut ir.nodes[twin].names, &names);
    }
    ir.redirect_outputs(&redirect);
    ir.sweep();
}

/// The first 12 hex digits of a digest, for messages.
pub fn short(digest: &str) -> &str {
    let end = "sha256:".len() + 12;
    digest.get(..end).unwrap_or(digest)
}
