//! The IR as JSON: the canonical form its digests are taken of, and the
//! compiled output of SPEC §6.

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::ir::{IrOp, Node, NodeId};
use super::Compiled;

/// The `{KIND: {fields}}` object of a node, inputs by digest. With `names`
/// false it is the canonical form (no `names` anywhere).
pub fn op_value(node: &Node, epoch: i64, digests: &[String], names: bool) -> Value {
    let d = |i: &NodeId| Value::String(digests[*i].clone());
    let mut fields = Map::new();
    match &node.op {
        IrOp::Scratch => {}
        IrOp::Local(l) => fields = object(serde_json::to_value(l).expect("serialise")),
        IrOp::Action { base, action } => {
            fields = object(action.fields_json());
            if let Some(b) = base {
                fields.insert("base".into(), d(b));
            }
        }
        IrOp::File { base, actions } => {
            if let Some(b) = base {
                fields.insert("base".into(), d(b));
            }
            let list = actions
                .iter()
                .map(|a| {
                    let mut m = Map::new();
                    if names {
                        m.insert("names".into(), json!(a.names));
                    }
                    m.insert(a.action.kind().into(), a.action.fields_json());
                    Value::Object(m)
                })
                .collect();
            fields.insert("actions".into(), Value::Array(list));
        }
        IrOp::Place {
            base,
            source,
            placement,
        } => {
            fields = object(placement.fields_json());
            if let Some(b) = base {
                fields.insert("base".into(), d(b));
            }
            fields.insert("source".into(), d(source));
        }
        IrOp::Merge { layers } => {
            let list = layers
                .iter()
                .map(|l| {
                    let mut m = Map::new();
                    m.insert("input".into(), d(&l.input));
                    m.insert("link".into(), Value::Bool(l.link));
                    if names && !l.names.is_empty() {
                        m.insert("names".into(), json!(l.names));
                    }
                    if let Some(p) = &l.placement {
                        m.insert(p.kind().into(), p.fields_json());
                    }
                    Value::Object(m)
                })
                .collect();
            fields.insert("layers".into(), Value::Array(list));
        }
        IrOp::Diff { lower, upper } => {
            fields.insert("lower".into(), d(lower));
            fields.insert("upper".into(), d(upper));
        }
    }
    if epoch != 0 && node.op.takes_epoch() {
        fields.insert("epoch".into(), json!(epoch));
    }
    let mut m = Map::new();
    m.insert(node.op.kind().into(), Value::Object(fields));
    Value::Object(m)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `sha256:` and the hex sha256 of a value serialised without spaces, keys
/// sorted (serde_json's maps are ordered by key).
pub fn digest_of(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).expect("serialise");
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// The digest of every node, inputs first (the arena order guarantees it).
pub fn digests(nodes: &[Node], epoch: i64) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let v = op_value(node, epoch, &out, false);
        out.push(digest_of(&v));
    }
    out
}

/// The compiled output: `{"version", "epoch", "ops", "outputs", "rewrites"}`.
pub fn compiled_value(c: &Compiled) -> Value {
    let ir = &c.ir;
    let ops: Vec<Value> = ir
        .nodes
        .iter()
        .zip(&c.digests)
        .map(|(node, digest)| {
            let mut m = object(op_value(node, ir.epoch, &c.digests, true));
            m.insert("digest".into(), Value::String(digest.clone()));
            m.insert("names".into(), json!(node.names));
            Value::Object(m)
        })
        .collect();
    let outputs: Map<String, Value> = ir
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(c.digests[*v].clone())))
        .collect();
    json!({
        "version": 1,
        "epoch": ir.epoch,
        "ops": ops,
        "outputs": outputs,
        "rewrites": ir.rewrites,
    })
}
