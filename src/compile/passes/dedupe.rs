//! `dedupe`: ops with the same digest are one op.

use std::collections::HashMap;

use crate::compile::ir::{add_names, Ir, NodeId};
use crate::compile::json::{digest_of, op_value};
use crate::compile::rewrite::{Rewrite, Rule};

/// Merges equal nodes into the first of them; returns the digests of the
/// nodes left, in arena order.
pub fn run(ir: &mut Ir) -> Vec<String> {
    let mut redirect: Vec<NodeId> = (0..ir.nodes.len()).collect();
    let mut first: HashMap<String, NodeId> = HashMap::with_capacity(ir.nodes.len());
    // Digests by (pre-sweep) index; a replaced node's slot holds its twin's.
    let mut digests: Vec<String> = Vec::with_capacity(ir.nodes.len());
    let mut any = false;
    for i in 0..ir.nodes.len() {
        ir.nodes[i].op.for_each_input_mut(|r| *r = redirect[*r]);
        let digest = digest_of(&op_value(&ir.nodes[i], ir.epoch, &digests, false));
        match first.get(&digest) {
            Some(&twin) => {
                any = true;
                redirect[i] = twin;
                let names = ir.nodes[i].names.clone();
                let kind = ir.nodes[i].op.kind();
                for name in &names {
                    ir.rewrites.push(Rewrite::new(
                        name,
                        Rule::Dedupe,
                        kind.to_string(),
                        format!("`{}`", ir.label(twin)),
                        format!("the same op as `{}` ({})", ir.label(twin), short(&digest)),
                    ));
                }
                add_names(&mut ir.nodes[twin].names, &names);
            }
            None => {
                first.insert(digest.clone(), i);
            }
        }
        digests.push(digest);
    }
    if any {
        ir.redirect_outputs(&redirect);
        let live = ir.reachable();
        digests = digests
            .into_iter()
            .zip(&live)
            .filter(|(_, l)| **l)
            .map(|(d, _)| d)
            .collect();
        ir.retain(&live);
    }
    digests
}

/// The first 12 hex digits of a digest, for messages.
pub fn short(digest: &str) -> &str {
    let end = "sha256:".len() + 12;
    digest.get(..end).unwrap_or(digest)
}
