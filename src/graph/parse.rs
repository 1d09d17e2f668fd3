//! JSON text to [`Graph`]: the version 1 format of SPEC §2, with one clear
//! error per mistake, naming the op and the field.
//!
//! Two readers share the top level. The direct reader (`parse/direct.rs`) makes
//! each op straight from the text and gives up at the first thing wrong;
//! only then does the worded reader read the text again, into a raw form
//! whose maps keep their keys in order and reject duplicates, and check
//! each op on its own, so an error always knows which op it is in. Every
//! message comes from the worded reader. Nothing here recurses over the
//! input's depth beyond serde_json's own limit (128 levels).

mod direct;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::error::GraphError;
use super::op::{kind_fields, FileAction, Op, Placement, KINDS};
use super::Graph;

/// The top level of a graph or IR file, before its parts are checked.
#[derive(Default)]
pub(crate) struct RawTop {
    pub version: Option<Value>,
    pub epoch: Option<Value>,
    pub ops: Option<RawOps>,
    pub outputs: Option<Entries>,
    pub rewrites: Option<Value>,
}

/// `ops`: a map of named ops in a graph, an array in compiled IR.
pub(crate) enum RawOps {
    Named(NamedOps),
    List(Vec<Value>),
}

/// A graph's named ops, each parsed as soon as its JSON is read so that a
/// large graph never holds all of its JSON values at once. The first op
/// that fails stops the parsing of later ones; its error waits in `error`
/// until the whole text is known to be JSON and the top level is checked,
/// so errors come in the same order as when everything is read first.
pub(crate) struct NamedOps {
    pub ops: BTreeMap<String, Op>,
    pub error: Option<GraphError>,
}

struct NamedOpsVisitor;

impl<'de> Visitor<'de> for NamedOpsVisitor {
    type Value = NamedOps;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of named ops")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NamedOps, A::Error> {
        // Ops in input order, sorted into the map once read (building a
        // map from sorted entries is linear).
        let mut parsed: Vec<(String, Op)> = Vec::new();
        let mut seen = rustc_hash::FxHashSet::default();
        let mut error = None;
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format!("`{name}` is defined twice")));
            }
            let value = map.next_value::<Strict>()?.0;
            if error.is_some() {
                continue;
            }
            match check_name("op", &name).and_then(|()| parse_op(&name, value)) {
                Ok(op) => parsed.push((name, op)),
                Err(e) => error = Some(e),
            }
        }
        parsed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let ops: BTreeMap<String, Op> = parsed.into_iter().collect();
        Ok(NamedOps { ops, error })
    }
}

/// A JSON object's entries, in order, with duplicate keys rejected.
pub(crate) struct Entries(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("`{key}` is defined twice")));
            }
            out.push((key, map.next_value::<Strict>()?.0));
        }
        Ok(Entries(out))
    }
}

/// A JSON value whose objects may not repeat a key (serde_json's `Value`
/// silently keeps the last), at any depth.
pub(crate) struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Strict>()? {
                    out.push(v.0);
                }
                Ok(Strict(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!("key `{key}` is given twice")));
                    }
                    let v = map.next_value::<Strict>()?;
                    out.insert(key, v.0);
                }
                Ok(Strict(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawTop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawTop, D::Error> {
        d.deserialize_map(TopVisitor { direct: false })
    }
}

/// Reads the top level; with `direct`, a graph's named ops are read by
/// the direct reader (see `parse/direct.rs`).
struct TopVisitor {
    direct: bool,
}

impl<'de> Visitor<'de> for TopVisitor {
    type Value = RawTop;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a graph: an object with version, epoch, ops and outputs")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTop, A::Error> {
        let mut top = RawTop::default();
        while let Some(key) = map.next_key::<String>()? {
            let twice = || de::Error::custom(format!("top-level field `{key}` is given twice"));
            match key.as_str() {
                "version" if top.version.is_none() => top.version = Some(map.next_value()?),
                "epoch" if top.epoch.is_none() => top.epoch = Some(map.next_value()?),
                "ops" if top.ops.is_none() && self.direct => {
                    top.ops = Some(map.next_value_seed(DirectRawOps)?)
                }
                "ops" if top.ops.is_none() => top.ops = Some(map.next_value()?),
                "outputs" if top.outputs.is_none() => top.outputs = Some(map.next_value()?),
                "rewrites" if top.rewrites.is_none() => top.rewrites = Some(map.next_value()?),
                "version" | "epoch" | "ops" | "outputs" | "rewrites" => return Err(twice()),
                _ => {
                    return Err(de::Error::custom(format!(
                        "unknown top-level field `{key}` (a graph has version, epoch, ops, outputs)"
                    )))
                }
            }
        }
        Ok(top)
    }
}

/// `ops` for the direct reader: a graph's named ops read directly; an IR's
/// array of ops as the worded reader reads it.
struct DirectRawOps;

impl<'de> de::DeserializeSeed<'de> for DirectRawOps {
    type Value = RawOps;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawOps, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DirectRawOps {
    type Value = RawOps;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of named ops")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawOps, A::Error> {
        direct::DirectOps.visit_map(map).map(RawOps::Named)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawOps, A::Error> {
        read_op_list(seq)
    }
}

impl<'de> Deserialize<'de> for RawOps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawOps, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOps;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of named ops")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawOps, A::Error> {
                NamedOpsVisitor.visit_map(map).map(RawOps::Named)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawOps, A::Error> {
                read_op_list(seq)
            }
        }
        d.deserialize_any(V)
    }
}

/// An IR's array of ops, each a [`Strict`] value.
fn read_op_list<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<RawOps, A::Error> {
    let mut out = Vec::new();
    while let Some(v) = seq.next_element::<Strict>()? {
        out.push(v.0);
    }
    Ok(RawOps::List(out))
}

/// Reads the raw top level; syntax errors carry their line and column.
///
/// A graph's ops are first read by the direct reader, which makes each op
/// straight from the text but gives up at the first thing wrong; then the
/// text is read again by the worded reader (one [`Strict`] value per op,
/// checked field by field), which says what is wrong. A valid graph is
/// read once, an invalid one twice.
pub(crate) fn read_top(text: &str) -> Result<RawTop, GraphError> {
    let raw = match read_direct(text) {
        Ok(raw) => raw,
        Err(_) => serde_json::from_str(text).map_err(|e| GraphError::json(&e))?,
    };
    match &raw.version {
        None => {
            return Err(GraphError::top(
                Some("version"),
                "missing: the graph format version, 1",
            ))
        }
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(other) => {
            return Err(GraphError::top(
                Some("version"),
                format!("unsupported version {other}: this is hardmerge's format version 1"),
            ))
        }
    }
    Ok(raw)
}

/// The top level read with the direct reader; any error means "read again".
fn read_direct(text: &str) -> Result<RawTop, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = de.deserialize_map(TopVisitor { direct: true })?;
    de.end()?;
    Ok(raw)
}

/// The graph's `epoch`: integer seconds, default 0.
pub(crate) fn read_epoch(v: Option<&Value>) -> Result<i64, GraphError> {
    match v {
        None => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            GraphError::top(
                Some("epoch"),
                format!("{n} is not an integer number of seconds"),
            )
        }),
        Some(other) => Err(GraphError::top(
            Some("epoch"),
            format!(
                "expected integer seconds since the Unix epoch, got {}",
                describe(other)
            ),
        )),
    }
}

/// A short description of a JSON value, for type errors.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() <= 40 => format!("string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Whether a name is a valid op name: 1–128 of `A-Z a-z 0-9 _ . -`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<(), GraphError> {
    if is_valid_name(name) {
        return Ok(());
    }
    let mut shown: String = name.chars().take(40).collect();
    if shown.len() < name.len() {
        shown.push_str("...");
    }
    let why = if name.is_empty() {
        "is empty".to_string()
    } else if name.len() > 128 {
        format!("is {} bytes long (at most 128)", name.len())
    } else {
        "may only hold A-Z a-z 0-9 _ . -".to_string()
    };
    let message = format!("bad {what} name {shown:?}: a name {why}");
    Err(match what {
        "op" if name.len() <= 128 => GraphError::op(name, None, None, message),
        "op" => GraphError::top(Some("ops"), message),
        _ => GraphError::top(Some("outputs"), message),
    })
}

/// Parses the graph format from JSON text and validates it (SPEC §2, §7).
pub fn parse_graph(text: &str) -> Result<Graph, GraphError> {
    let raw = read_top(text)?;
    graph_from_raw(raw)
}

pub(crate) fn graph_from_raw(raw: RawTop) -> Result<Graph, GraphError> {
    if raw.rewrites.is_some() {
        return Err(GraphError::top(
            Some("rewrites"),
            "unknown field (only compiled IR has `rewrites`, and its `ops` is an array)",
        ));
    }
    let epoch = read_epoch(raw.epoch.as_ref())?;
    let ops = match raw.ops {
        None => {
            return Err(GraphError::top(
                Some("ops"),
                "missing: an object of named ops",
            ))
        }
        Some(RawOps::Named(NamedOps {
            error: Some(error), ..
        })) => return Err(error),
        Some(RawOps::Named(NamedOps { ops, .. })) => ops,
        Some(RawOps::List(_)) => unreachable!("arrays of ops are read as IR"),
    };
    let outputs = read_outputs(raw.outputs)?;
    let graph = Graph {
        epoch,
        ops,
        outputs,
    };
    graph.validate()?;
    Ok(graph)
}

pub(crate) fn read_outputs(
    outputs: Option<Entries>,
) -> Result<BTreeMap<String, String>, GraphError> {
    let entries = match outputs {
        None => {
            return Err(GraphError::top(
                Some("outputs"),
                "missing: at least one output, like {\"default\": \"OP\"}",
            ))
        }
        Some(e) => e.0,
    };
    if entries.is_empty() {
        return Err(GraphError::top(
            Some("outputs"),
            "empty: at least one output, like {\"default\": \"OP\"}",
        ));
    }
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        check_name("output", &name)?;
        match value {
            Value::String(s) => {
                out.insert(name, s);
            }
            other => {
                return Err(GraphError::top(
                    Some(&format!("outputs.{name}")),
                    format!("expected an op name (a string), got {}", describe(&other)),
                ))
            }
        }
    }
    Ok(out)
}

/// Parses one op, `{KIND: {fields}}`.
pub(crate) fn parse_op(name: &str, value: Value) -> Result<Op, GraphError> {
    let (kind, fields) = split_kind(name, value, KINDS)?;
    parse_kind(name, &kind, fields)
}

/// Splits `{KIND: {fields}}`, checking it has exactly one key, a known kind.
pub(crate) fn split_kind(
    name: &str,
    value: Value,
    kinds: &[&str],
) -> Result<(String, serde_json::Map<String, Value>), GraphError> {
    let err = |m: String| GraphError::op(name, None, None, m);
    let obj = match value {
        Value::Object(o) => o,
        other => {
            return Err(err(format!(
                "an op is an object with one key, its kind (like {{\"mkdir\": {{...}}}}); got {}",
                describe(&other)
            )))
        }
    };
    if obj.len() != 1 {
        let keys: Vec<String> = obj.keys().map(|k| format!("`{k}`")).collect();
        return Err(err(if keys.is_empty() {
            "an op is an object with one key, its kind; got {}".to_string()
        } else {
            format!(
                "an op has exactly one key, its kind; found {}",
                keys.join(", ")
            )
        }));
    }
    let (kind, fields) = obj.into_iter().next().expect("one key");
    if !kinds.contains(&kind.as_str()) {
        return Err(err(format!(
            "unknown op kind `{kind}` (kinds: {})",
            kinds.join(", ")
        )));
    }
    let fields = match fields {
        Value::Object(o) => o,
        Value::Null if kind == "scratch" => serde_json::Map::new(),
        other => {
            return Err(GraphError::op(
                name,
                Some(&kind),
                None,
                format!(
                    "the fields of an op are an object, got {}",
                    describe(&other)
                ),
            ))
        }
    };
    Ok((kind, fields))
}

/// Parses an op's fields; its references (`base`, `source`, `inputs`,
/// `lower`, `upper`) are op names.
pub(crate) fn parse_kind(
    name: &str,
    kind: &str,
    mut fields: serde_json::Map<String, Value>,
) -> Result<Op, GraphError> {
    let allowed = kind_fields(kind).expect("known kind");
    for key in fields.keys() {
        if !allowed.contains(&key.as_str()) {
            let takes = if allowed.is_empty() {
                "it takes no fields".to_string()
            } else {
                format!("it takes {}", allowed.join(", "))
            };
            return Err(GraphError::op(
                name,
                Some(kind),
                Some(key),
                format!("unknown field for {kind} ({takes})"),
            ));
        }
    }
    let mut take_ref = |field: &str, required: bool| -> Result<Option<String>, GraphError> {
        match fields.remove(field) {
            None if required => Err(GraphError::op(
                name,
                Some(kind),
                Some(field),
                "missing: the name of an op",
            )),
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(GraphError::op(
                name,
                Some(kind),
                Some(field),
                format!("expected an op name (a string), got {}", describe(&other)),
            )),
        }
    };
    let op = match kind {
        "scratch" => Op::Scratch,
        "local" => Op::Local(fields_of(name, kind, fields)?),
        "mkdir" | "mkfile" | "symlink" | "rm" => {
            let base = take_ref("base", false)?;
            Op::File {
                base,
                action: parse_action(name, kind, fields)?,
            }
        }
        "copy" | "with_directory" | "with_file" => {
            let base = take_ref("base", false)?;
            let source = take_ref("source", true)?.expect("required");
            Op::Place {
                base,
                source,
                placement: parse_placement(name, kind, fields)?,
            }
        }
        "merge" => {
            let inputs = match fields.remove("inputs") {
                None => Vec::new(),
                Some(Value::Array(items)) => {
                    let mut inputs = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Value::String(s) => inputs.push(s),
                            other => {
                                return Err(GraphError::op(
                                    name,
                                    Some(kind),
                                    Some(&format!("inputs[{i}]")),
                                    format!(
                                        "expected an op name (a string), got {}",
                                        describe(&other)
                                    ),
                                ))
                            }
                        }
                    }
                    inputs
                }
                Some(other) => {
                    return Err(GraphError::op(
                        name,
                        Some(kind),
                        Some("inputs"),
                        format!("expected an array of op names, got {}", describe(&other)),
                    ))
                }
            };
            Op::Merge { inputs }
        }
        "diff" => {
            let lower = take_ref("lower", true)?.expect("required");
            let upper = take_ref("upper", true)?.expect("required");
            Op::Diff { lower, upper }
        }
        _ => unreachable!("kind checked"),
    };
    let mut op = op;
    super::normalize::normalize_op(&mut op)
        .map_err(|(field, m)| GraphError::op(name, Some(kind), field, m))?;
    Ok(op)
}

pub(crate) fn parse_action(
    name: &str,
    kind: &str,
    fields: serde_json::Map<String, Value>,
) -> Result<FileAction, GraphError> {
    Ok(match kind {
        "mkdir" => FileAction::Mkdir(fields_of(name, kind, fields)?),
        "mkfile" => FileAction::Mkfile(fields_of(name, kind, fields)?),
        "symlink" => FileAction::Symlink(fields_of(name, kind, fields)?),
        "rm" => FileAction::Rm(fields_of(name, kind, fields)?),
        _ => {
            return Err(GraphError::op(
                name,
                Some(kind),
                None,
                "not a file action (mkdir, mkfile, symlink, rm)",
            ))
        }
    })
}

pub(crate) fn parse_placement(
    name: &str,
    kind: &str,
    fields: serde_json::Map<String, Value>,
) -> Result<Placement, GraphError> {
    Ok(match kind {
        "copy" => Placement::Copy(fields_of(name, kind, fields)?),
        "with_directory" => Placement::WithDirectory(fields_of(name, kind, fields)?),
        "with_file" => Placement::WithFile(fields_of(name, kind, fields)?),
        _ => {
            return Err(GraphError::op(
                name,
                Some(kind),
                None,
                "not a placement (copy, with_directory, with_file)",
            ))
        }
    })
}

/// Deserialises an op's own fields, reporting the failing field's path.
pub(crate) fn fields_of<T: DeserializeOwned>(
    name: &str,
    kind: &str,
    fields: serde_json::Map<String, Value>,
) -> Result<T, GraphError> {
    let value = Value::Object(fields);
    // Valid fields (the usual case) are read directly; only a failure is
    // read again through serde_path_to_error, to name the failing field.
    if let Ok(t) = T::deserialize(&value) {
        return Ok(t);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field in its message; say it as the field.
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.trim_end_matches('`');
            return GraphError::op(
                name,
                Some(kind),
                Some(field),
                "missing: this field is required",
            );
        }
        let field = (path != ".").then_some(path);
        GraphError::op(name, Some(kind), field.as_deref(), inner)
    })
}
