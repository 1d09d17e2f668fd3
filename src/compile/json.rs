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
    struct Hasher(Sha256);
    impl std::io::Write for Hasher {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.update(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hasher(Sha256::new());
    serde_json::to_writer(&mut h, v).expect("serialise");
    format!("sha256:{}", hex::encode(h.0.finalize()))
}

/// The digest and canonical value of every node, inputs first (the arena
/// order guarantees it).
pub fn digests(nodes: &[Node], epoch: i64) -> (Vec<String>, Vec<Value>) {
    let mut out: Vec<String> = Vec::with_capacity(nodes.len());
    let mut values = Vec::with_capacity(nodes.len());
    for node in nodes {
        let v = op_value(node, epoch, &out, false);
        out.push(digest_of(&v));
        values.push(v);
    }
    (out, values)
}

/// Adds the `names` of a node (and of its layers or actions) to its
/// canonical value, making the op entry of the compiled output.
fn named_entry(mut v: Value, node: &Node, digest: &str) -> Value {
    if let Value::Object(outer) = &mut v {
        if let Some(Value::Object(fields)) = outer.values_mut().next() {
            let lists: Vec<&[String]> = match &node.op {
                IrOp::Merge { layers } => layers.iter().map(|l| l.names.as_slice()).collect(),
                IrOp::File { actions, .. } => actions.iter().map(|a| a.names.as_slice()).collect(),
                _ => Vec::new(),
            };
            let key = if matches!(node.op, IrOp::Merge { .. }) {
                "layers"
            } else {
                "actions"
            };
            if let Some(Value::Array(items)) = fields.get_mut(key) {
                for (item, names) in items.iter_mut().zip(lists) {
                    if let Value::Object(m) = item {
                        if !names.is_empty() || key == "actions" {
                            m.insert("names".into(), json!(names));
                        }
                    }
                }
            }
        }
        outer.insert("digest".into(), Value::String(digest.to_string()));
        outer.insert("names".into(), json!(node.names));
    }
    v
}

/// The parts of the compiled output: epoch, op entries, outputs, rewrites.
pub struct Parts {
    /// The graph's epoch.
    pub epoch: i64,
    /// Op entries, in output order.
    pub ops: Vec<Value>,
    /// Output name to digest.
    pub outputs: Map<String, Value>,
    /// The rewrite records.
    pub rewrites: Vec<super::rewrite::Rewrite>,
}

impl serde::Serialize for Parts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // Keys in sorted order, as everywhere in the compiled output.
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("epoch", &self.epoch)?;
        m.serialize_entry("ops", &self.ops)?;
        m.serialize_entry("outputs", &self.outputs)?;
        m.serialize_entry("rewrites", &self.rewrites)?;
        m.serialize_entry("version", &1)?;
        m.end()
    }
}

/// Splits a compiled IR into the parts of its output (SPEC §6).
pub fn parts(c: Compiled) -> Parts {
    let Compiled {
        ir,
        digests,
        canonical,
    } = c;
    let ops: Vec<Value> = canonical
        .into_iter()
        .zip(ir.nodes.iter().zip(&digests))
        .map(|(v, (node, digest))| named_entry(v, node, digest))
        .collect();
    let outputs: Map<String, Value> = ir
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(digests[*v].clone())))
        .collect();
    Parts {
        epoch: ir.epoch,
        ops,
        outputs,
        rewrites: ir.rewrites,
    }
}

/// The compiled output: `{"version", "epoch", "ops", "outputs", "rewrites"}`.
pub fn compiled_value(c: Compiled) -> Value {
    serde_json::to_value(parts(c)).expect("serialise")
}
