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
                        m.insert("names".into(), strings(&a.names));
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
                        m.insert("names".into(), strings(&l.names));
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

/// A list of names as a JSON array.
fn strings(names: &[String]) -> Value {
    Value::Array(names.iter().map(|n| Value::String(n.clone())).collect())
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
    let mut buf = Vec::new();
    digest_into(v, &mut buf)
}

/// [`digest_of`], serialising into `buf` (cleared first) so that a caller
/// hashing many values reuses one buffer and hashes each in one call.
fn digest_into(v: &Value, buf: &mut Vec<u8>) -> String {
    buf.clear();
    serde_json::to_writer(&mut *buf, v).expect("serialise");
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    text.push_str(&hex::encode(Sha256::digest(buf.as_slice())));
    text
}

/// The digest of every node. A node's digest covers its inputs' digests,
/// so nodes are taken level by level (a level's inputs all lie in lower
/// levels) and each level's nodes are hashed in parallel. Each canonical
/// value is dropped once hashed: memory stays flat however large the graph.
pub fn digests(nodes: &[Node], epoch: i64) -> Vec<String> {
    use rayon::prelude::*;
    let mut level = vec![0usize; nodes.len()];
    let mut levels: Vec<Vec<NodeId>> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        // Inputs have smaller indices: their levels are known.
        let l = node
            .op
            .inputs()
            .iter()
            .map(|&j| level[j] + 1)
            .max()
            .unwrap_or(0);
        level[i] = l;
        if levels.len() <= l {
            levels.resize_with(l + 1, Vec::new);
        }
        levels[l].push(i);
    }
    let mut out: Vec<String> = vec![String::new(); nodes.len()];
    for ids in levels {
        let hash = |buf: &mut Vec<u8>, i: NodeId| {
            digest_into(&op_value(&nodes[i], epoch, &out, false), buf)
        };
        let done: Vec<String> = if ids.len() < 64 {
            let mut buf = Vec::with_capacity(4096);
            ids.iter().map(|&i| hash(&mut buf, i)).collect()
        } else {
            ids.par_iter()
                .map_init(|| Vec::with_capacity(4096), |buf, &i| hash(buf, i))
                .collect()
        };
        for (i, d) in ids.into_iter().zip(done) {
            out[i] = d;
        }
    }
    out
}

/// The op entry of a node in the compiled output: its canonical value with
/// the `names` of the node and of its layers or actions, and its digest.
fn named_entry(c: &Compiled, i: NodeId) -> Value {
    let node = &c.ir.nodes[i];
    let mut v = op_value(node, c.ir.epoch, &c.digests, true);
    if let Value::Object(outer) = &mut v {
        outer.insert("digest".into(), Value::String(c.digests[i].clone()));
        outer.insert("names".into(), strings(&node.names));
    }
    v
}

/// The compiled output (SPEC §6), serialised straight from the IR: each op
/// entry is built, written and dropped in turn.
pub struct Output<'a>(pub &'a Compiled);

impl serde::Serialize for Output<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Ops<'a>(&'a Compiled);
        impl serde::Serialize for Ops<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq((0..self.0.ir.nodes.len()).map(|i| named_entry(self.0, i)))
            }
        }
        struct Outputs<'a>(&'a Compiled);
        impl serde::Serialize for Outputs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let c = self.0;
                s.collect_map(
                    c.ir.outputs
                        .iter()
                        .map(|(k, v)| (k.as_str(), c.digests[*v].as_str())),
                )
            }
        }
        let c = self.0;
        // Keys in sorted order, as everywhere in the compiled output.
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("epoch", &c.ir.epoch)?;
        m.serialize_entry("ops", &Ops(c))?;
        m.serialize_entry("outputs", &Outputs(c))?;
        m.serialize_entry("rewrites", &c.ir.rewrites)?;
        m.serialize_entry("version", &1)?;
        m.end()
    }
}

/// Writes the compiled output as serde_json's pretty JSON (two-space
/// indent, keys sorted) without a final newline, byte for byte what
/// `serde_json::to_writer_pretty(w, &Output(c))` writes. The op entries and
/// rewrite records are serialised in parallel, a batch at a time, so the
/// text is never held whole.
pub fn write_pretty<W: std::io::Write>(c: &Compiled, w: &mut W) -> std::io::Result<()> {
    write!(w, "{{\n  \"epoch\": {},\n  \"ops\": ", c.ir.epoch)?;
    pretty_array(w, c.ir.nodes.len(), |i| named_entry(c, i))?;
    w.write_all(b",\n  \"outputs\": ")?;
    let outputs: Map<String, Value> =
        c.ir.outputs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(c.digests[*v].clone())))
            .collect();
    let mut buf = Vec::new();
    write_pretty_at(&mut buf, 1, &outputs)?;
    w.write_all(&buf)?;
    w.write_all(b",\n  \"rewrites\": ")?;
    pretty_array(w, c.ir.rewrites.len(), |i| &c.ir.rewrites[i])?;
    w.write_all(b",\n  \"version\": 1\n}")
}

/// A pretty array at depth 1 of the document (its items at depth 2).
fn pretty_array<W, T, F>(w: &mut W, n: usize, item: F) -> std::io::Result<()>
where
    W: std::io::Write,
    T: serde::Serialize,
    F: Fn(usize) -> T + Sync,
{
    use rayon::prelude::*;
    // Items per task, and tasks per batch written before the next starts.
    // Each task fills one buffer; the buffers are reused from batch to
    // batch, so the memory in flight stays a few megabytes.
    const CHUNK: usize = 256;
    const BATCH: usize = 16;
    if n == 0 {
        return w.write_all(b"[]");
    }
    w.write_all(b"[\n")?;
    let chunks = n.div_ceil(CHUNK);
    let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); BATCH.min(chunks)];
    for batch in (0..chunks).step_by(BATCH) {
        let count = BATCH.min(chunks - batch);
        buffers[..count]
            .par_iter_mut()
            .enumerate()
            .try_for_each(|(k, out)| {
                out.clear();
                let first = (batch + k) * CHUNK;
                for i in first..n.min(first + CHUNK) {
                    if i > 0 {
                        out.extend_from_slice(b",\n");
                    }
                    out.extend_from_slice(b"    ");
                    write_pretty_at(out, 2, &item(i))?;
                }
                Ok::<(), std::io::Error>(())
            })?;
        for b in &buffers[..count] {
            w.write_all(b)?;
        }
    }
    w.write_all(b"\n  ]")
}

/// Writes `value` as serde_json's pretty JSON would inside a document,
/// `depth` levels in: every line after the first indented by `depth` more
/// steps.
fn write_pretty_at<T: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    depth: usize,
    value: &T,
) -> std::io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(
        out,
        PrettyAt {
            depth,
            has_value: false,
        },
    );
    value.serialize(&mut ser).map_err(std::io::Error::other)
}

/// serde_json's `PrettyFormatter` (two spaces per level) starting at
/// `depth`, so a value is written in place, already indented for where it
/// sits in the document, instead of being written and indented after.
/// Its methods are `PrettyFormatter`'s, with the indent count shared.
struct PrettyAt {
    depth: usize,
    has_value: bool,
}

impl PrettyAt {
    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W, first: bool) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }

    fn indent<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        for _ in 0..self.depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, end: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(end)
    }
}

impl serde_json::ser::Formatter for PrettyAt {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.newline(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.newline(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// The compiled output: `{"version", "epoch", "ops", "outputs", "rewrites"}`.
pub fn compiled_value(c: &Compiled) -> Value {
    serde_json::to_value(Output(c)).expect("serialise")
}
