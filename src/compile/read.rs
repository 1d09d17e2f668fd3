//! Compiled IR read back from JSON, so `compile` can take its own output
//! (compiling is idempotent: the same ops come out). Digests are checked:
//! an op whose content does not match its digest is rejected.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::graph::error::GraphError;
use crate::graph::normalize::{normalize_action, normalize_placement};
use crate::graph::parse::{
    describe, fields_of, parse_action, parse_placement, read_epoch, read_outputs, split_kind,
    RawOps, RawTop,
};

use super::ir::{Action, Ir, IrOp, Layer, Node, NodeId};
use super::json::{digest_of, op_value};

const IR_KINDS: &[&str] = &[
    "scratch", "local", "mkdir", "mkfile", "symlink", "rm", "file", "merge", "diff",
];
const ACTION_KINDS: &[&str] = &["mkdir", "mkfile", "symlink", "rm"];

/// Reads a compiled IR from the raw top level (its `ops` is an array).
pub(crate) fn ir_from_raw(raw: RawTop) -> Result<Ir, GraphError> {
    let epoch = read_epoch(raw.epoch.as_ref())?;
    let items = match raw.ops {
        Some(RawOps::List(items)) => items,
        _ => unreachable!("called for IR only"),
    };
    let mut ids: HashMap<String, NodeId> = HashMap::with_capacity(items.len());
    let mut nodes: Vec<Node> = Vec::with_capacity(items.len());
    let mut digests: Vec<String> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let at = format!("ops[{index}]");
        let Value::Object(mut obj) = item else {
            return Err(GraphError::top(Some(&at), "an IR op is an object"));
        };
        let digest = match obj.remove("digest") {
            Some(Value::String(d)) => d,
            _ => {
                return Err(GraphError::top(
                    Some(&format!("{at}.digest")),
                    "missing: a sha256: digest",
                ))
            }
        };
        let names = read_names(obj.remove("names"), &format!("{at}.names"))?;
        let label = names.first().cloned().unwrap_or_else(|| digest.clone());
        let (kind, fields) = split_kind(&label, Value::Object(obj), IR_KINDS)?;
        let op = read_op(&label, &kind, fields, epoch, &ids)?;
        let node = Node { names, op };
        let actual = digest_of(&op_value(&node, epoch, &digests, false));
        if actual != digest {
            return Err(GraphError::op(
                &label,
                Some(&kind),
                Some("digest"),
                format!("{digest} does not match the op's content ({actual})"),
            ));
        }
        ids.insert(digest.clone(), nodes.len());
        digests.push(digest);
        nodes.push(node);
    }
    let mut outputs = BTreeMap::new();
    for (out, digest) in read_outputs(raw.outputs)? {
        let id = *ids.get(&digest).ok_or_else(|| {
            GraphError::top(
                Some(&format!("outputs.{out}")),
                format!("no op with digest {digest}"),
            )
        })?;
        outputs.insert(out, id);
    }
    Ok(Ir {
        epoch,
        nodes,
        outputs,
        rewrites: Vec::new(),
    })
}

fn read_names(v: Option<Value>, at: &str) -> Result<Vec<String>, GraphError> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                other => Err(GraphError::top(
                    Some(at),
                    format!("expected strings, got {}", describe(&other)),
                )),
            })
            .collect(),
        Some(other) => Err(GraphError::top(
            Some(at),
            format!("expected an array of names, got {}", describe(&other)),
        )),
    }
}

struct Reader<'a> {
    label: &'a str,
    kind: &'a str,
    ids: &'a HashMap<String, NodeId>,
}

impl Reader<'_> {
    fn err(&self, field: &str, m: impl Into<String>) -> GraphError {
        GraphError::op(self.label, Some(self.kind), Some(field), m)
    }

    fn reference(
        &self,
        fields: &mut Map<String, Value>,
        field: &str,
    ) -> Result<Option<NodeId>, GraphError> {
        match fields.remove(field) {
            None => Ok(None),
            Some(Value::String(d)) => self
                .ids
                .get(&d)
                .copied()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("no earlier op with digest {d}"))),
            Some(other) => Err(self.err(
                field,
                format!("expected a digest, got {}", describe(&other)),
            )),
        }
    }

    fn required(&self, fields: &mut Map<String, Value>, field: &str) -> Result<NodeId, GraphError> {
        self.reference(fields, field)?
            .ok_or_else(|| self.err(field, "missing: a digest"))
    }

    fn epoch(&self, fields: &mut Map<String, Value>, epoch: i64) -> Result<(), GraphError> {
        let given = match fields.remove("epoch") {
            None => 0,
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| self.err("epoch", "not an integer"))?,
            Some(other) => {
                return Err(self.err(
                    "epoch",
                    format!("expected an integer, got {}", describe(&other)),
                ))
            }
        };
        if given != epoch && given != 0 {
            return Err(self.err(
                "epoch",
                format!("{given} differs from the IR's epoch {epoch}"),
            ));
        }
        Ok(())
    }

    fn fix<T>(&self, r: Result<T, (Option<&'static str>, String)>) -> Result<T, GraphError> {
        r.map_err(|(f, m)| GraphError::op(self.label, Some(self.kind), f, m))
    }
}

fn read_op(
    label: &str,
    kind: &str,
    mut fields: Map<String, Value>,
    epoch: i64,
    ids: &HashMap<String, NodeId>,
) -> Result<IrOp, GraphError> {
    let r = Reader { label, kind, ids };
    Ok(match kind {
        "scratch" => IrOp::Scratch,
        "local" => {
            let mut op = crate::graph::Op::Local(fields_of(label, kind, fields)?);
            r.fix(crate::graph::normalize::normalize_op(&mut op))?;
            match op {
                crate::graph::Op::Local(l) => IrOp::Local(l),
                _ => unreachable!(),
            }
        }
        "mkdir" | "mkfile" | "symlink" | "rm" => {
            let base = r.reference(&mut fields, "base")?;
            r.epoch(&mut fields, epoch)?;
            let mut action = parse_action(label, kind, fields)?;
            r.fix(normalize_action(&mut action))?;
            IrOp::Action { base, action }
        }
        "file" => {
            let base = r.reference(&mut fields, "base")?;
            r.epoch(&mut fields, epoch)?;
            let list = match fields.remove("actions") {
                Some(Value::Array(list)) => list,
                _ => return Err(r.err("actions", "missing: an array of actions")),
            };
            if let Some(k) = fields.keys().next() {
                return Err(r.err(k, "unknown field for file (it takes base, actions, epoch)"));
            }
            let mut actions = Vec::with_capacity(list.len());
            for (i, a) in list.into_iter().enumerate() {
                let Value::Object(mut a) = a else {
                    return Err(r.err(&format!("actions[{i}]"), "an action is an object"));
                };
                let names = read_names(a.remove("names"), &format!("actions[{i}].names"))?;
                let (akind, afields) = split_kind(label, Value::Object(a), ACTION_KINDS)?;
                let mut action = parse_action(label, &akind, afields)?;
                r.fix(normalize_action(&mut action))?;
                actions.push(Action { names, action });
            }
            IrOp::File { base, actions }
        }
        "merge" => {
            r.epoch(&mut fields, epoch)?;
            let list = match fields.remove("layers") {
                Some(Value::Array(list)) => list,
                None => Vec::new(),
                Some(other) => {
                    return Err(r.err(
                        "layers",
                        format!("expected an array, got {}", describe(&other)),
                    ))
                }
            };
            if let Some(k) = fields.keys().next() {
                return Err(r.err(k, "unknown field for merge (it takes layers, epoch)"));
            }
            let mut layers = Vec::with_capacity(list.len());
            for (i, l) in list.into_iter().enumerate() {
                let at = format!("layers[{i}]");
                let Value::Object(mut l) = l else {
                    return Err(r.err(&at, "a layer is an object"));
                };
                let input = r.required(&mut l, "input").map_err(|mut e| {
                    e.field = Some(format!("{at}.input"));
                    e
                })?;
                let link = match l.remove("link") {
                    Some(Value::Bool(b)) => b,
                    _ => return Err(r.err(&format!("{at}.link"), "missing: true or false")),
                };
                let names = read_names(l.remove("names"), &format!("{at}.names"))?;
                let placement = match l.len() {
                    0 => None,
                    1 => {
                        let (pkind, pfields) = l.into_iter().next().expect("one");
                        let Value::Object(pfields) = pfields else {
                            return Err(r.err(&format!("{at}.{pkind}"), "expected an object"));
                        };
                        let mut p = parse_placement(label, &pkind, pfields)?;
                        r.fix(normalize_placement(&mut p))?;
                        Some(p)
                    }
                    _ => return Err(r.err(&at, "a layer has at most one placement")),
                };
                layers.push(Layer {
                    input,
                    link,
                    names,
                    placement,
                });
            }
            IrOp::Merge { layers }
        }
        "diff" => {
            let lower = r.required(&mut fields, "lower")?;
            let upper = r.required(&mut fields, "upper")?;
            if let Some(k) = fields.keys().next() {
                return Err(r.err(k, "unknown field for diff (it takes lower, upper)"));
            }
            IrOp::Diff { lower, upper }
        }
        other => {
            return Err(GraphError::op(
                label,
                Some(other),
                None,
                "not an IR op kind (copy, with_directory and with_file are merge layers in the IR)",
            ))
        }
    })
}
