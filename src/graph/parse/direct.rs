//! The direct reader: each op deserialised into its typed fields straight
//! from the JSON text, with no [`serde_json::Value`] in between.
//!
//! It reads only what is valid. On the first thing it does not like (a
//! duplicate key or op name, an unknown kind or field, a bad value, a name
//! or path that fails its check) it gives up with [`GIVE_UP`], and
//! [`super::read_top`] reads the whole text again with the worded reader,
//! which finds the error and words it. So every message, and the choice of
//! which error comes first, is the worded reader's alone; the two readers
//! need only agree on the valid inputs, where both make the same [`Op`].
//!
//! What makes them agree: every struct of op fields denies unknown fields
//! and serde rejects a repeated field of a struct, so a repeated key is
//! refused at every depth, as the worded reader's `Strict` refuses it; the
//! references (`base`, `source`) are taken out before the rest goes to the
//! same `Deserialize` impls the worded reader uses; and the same
//! [`normalize_op`] checks and cleans the result.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor,
};
use serde::Deserialize;

use super::super::normalize::normalize_op;
use super::super::op::{FileAction, Local, Op, Placement};
use super::{is_valid_name, NamedOps};

/// The message of the direct reader's one error: it never reaches a user.
pub(super) const GIVE_UP: &str = "not read directly; read again to word the error";

fn give_up<E: de::Error>() -> E {
    E::custom(GIVE_UP)
}

/// Reads a graph's named ops; gives up on any op that is not valid.
pub(super) struct DirectOps;

impl<'de> Visitor<'de> for DirectOps {
    type Value = NamedOps;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of named ops")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NamedOps, A::Error> {
        let mut parsed: Vec<(String, Op)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(name) = map.next_key::<String>()? {
            if !is_valid_name(&name) {
                return Err(give_up());
            }
            let op = map.next_value_seed(OpSeed)?;
            parsed.push((name, op));
        }
        // Sorted, a name given twice sits next to itself.
        parsed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if parsed.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(give_up());
        }
        Ok(NamedOps {
            ops: parsed.into_iter().collect(),
            error: None,
        })
    }
}

/// One op, `{KIND: {fields}}`.
struct OpSeed;

impl<'de> DeserializeSeed<'de> for OpSeed {
    type Value = Op;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Op, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OpSeed {
    type Value = Op;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an op")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        let Some(kind) = map.next_key::<Key<'de>>()? else {
            return Err(give_up());
        };
        let mut op = match kind.as_str() {
            "scratch" => map.next_value_seed(ScratchSeed)?,
            "local" => Op::Local(map.next_value::<Local>()?),
            "mkdir" => file(&mut map, FileAction::Mkdir)?,
            "mkfile" => file(&mut map, FileAction::Mkfile)?,
            "symlink" => file(&mut map, FileAction::Symlink)?,
            "rm" => file(&mut map, FileAction::Rm)?,
            "copy" => place(&mut map, Placement::Copy)?,
            "with_directory" => place(&mut map, Placement::WithDirectory)?,
            "with_file" => place(&mut map, Placement::WithFile)?,
            "merge" => {
                let f = map.next_value::<MergeFields>()?;
                Op::Merge { inputs: f.inputs }
            }
            "diff" => {
                let f = map.next_value::<DiffFields>()?;
                Op::Diff {
                    lower: f.lower,
                    upper: f.upper,
                }
            }
            _ => return Err(give_up()),
        };
        // An op has exactly one key, its kind.
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(give_up());
        }
        normalize_op(&mut op).map_err(|_| give_up())?;
        Ok(op)
    }
}

/// A file action's fields, with its optional `base`.
fn file<'de, A, T, F>(map: &mut A, action: F) -> Result<Op, A::Error>
where
    A: MapAccess<'de>,
    T: DeserializeOwned,
    F: FnOnce(T) -> FileAction,
{
    let (fields, [base, _]) = map.next_value_seed(WithRefs::<T>::new(&["base"]))?;
    Ok(Op::File {
        base,
        action: action(fields),
    })
}

/// A placement's fields, with its optional `base` and its `source`.
fn place<'de, A, T, F>(map: &mut A, placement: F) -> Result<Op, A::Error>
where
    A: MapAccess<'de>,
    T: DeserializeOwned,
    F: FnOnce(T) -> Placement,
{
    let (fields, [base, source]) = map.next_value_seed(WithRefs::<T>::new(&["base", "source"]))?;
    Ok(Op::Place {
        base,
        source: source.ok_or_else(give_up)?,
        placement: placement(fields),
    })
}

/// `scratch` takes no fields: `null` or `{}`.
struct ScratchSeed;

impl<'de> DeserializeSeed<'de> for ScratchSeed {
    type Value = Op;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Op, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScratchSeed {
    type Value = Op;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no fields")
    }
    fn visit_unit<E>(self) -> Result<Op, E> {
        Ok(Op::Scratch)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        match map.next_key::<IgnoredAny>()? {
            None => Ok(Op::Scratch),
            Some(_) => Err(give_up()),
        }
    }
}

/// `merge`'s fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeFields {
    #[serde(default)]
    inputs: Vec<String>,
}

/// `diff`'s fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffFields {
    lower: String,
    upper: String,
}

/// A map key, borrowed from the text when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// An op's fields: the references named in `refs` (at most two, each a
/// string given at most once) taken out, the rest read as a `T`.
struct WithRefs<T> {
    refs: &'static [&'static str],
    fields: PhantomData<T>,
}

impl<T> WithRefs<T> {
    fn new(refs: &'static [&'static str]) -> WithRefs<T> {
        WithRefs {
            refs,
            fields: PhantomData,
        }
    }
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for WithRefs<T> {
    type Value = (T, [Option<String>; 2]);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for WithRefs<T> {
    type Value = (T, [Option<String>; 2]);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of fields")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut rest = WithoutRefs {
            map,
            refs: self.refs,
            values: [None, None],
        };
        let fields = T::deserialize(MapAccessDeserializer::new(&mut rest))?;
        // `T` stops at its map's end, or errs first; either way every key
        // has been seen.
        Ok((fields, rest.values))
    }
}

/// A map with the reference fields held back (into `values`).
struct WithoutRefs<'r, A> {
    map: A,
    refs: &'r [&'r str],
    values: [Option<String>; 2],
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutRefs<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            if let Some(at) = self.refs.iter().position(|r| *r == key.as_str()) {
                if self.values[at].is_some() {
                    return Err(give_up());
                }
                self.values[at] = Some(self.map.next_value::<String>()?);
                continue;
            }
            return match key {
                Key::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::new(k)),
                Key::Owned(k) => seed.deserialize(StringDeserializer::new(k)),
            }
            .map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{graph_from_raw, read_direct, RawOps, RawTop};
    use crate::graph::{Graph, GraphError};

    /// The worded reader alone, as `read_top` then `graph_from_raw` read a
    /// graph before the direct reader existed.
    fn worded(text: &str) -> Result<(Option<serde_json::Value>, Graph), GraphError> {
        let raw: RawTop = serde_json::from_str(text).map_err(|e| GraphError::json(&e))?;
        let version = raw.version.clone();
        graph_from_raw(raw).map(|g| (version, g))
    }

    /// Whatever the direct reader reads, the worded reader reads the same
    /// (and the direct reader gives up on everything the worded one refuses).
    /// Returns whether the direct reader read it.
    fn agrees(text: &str) -> bool {
        let Ok(raw) = read_direct(text) else {
            return false;
        };
        if !matches!(raw.ops, Some(RawOps::Named(_))) {
            return false;
        }
        let version = raw.version.clone();
        let direct = graph_from_raw(raw).map(|g| (version, g));
        assert_eq!(direct, worded(text), "the readers differ on {text}");
        true
    }

    fn graph(ops: &str) -> String {
        format!(r#"{{"version": 1, "ops": {{{ops}}}, "outputs": {{"default": "a"}}}}"#)
    }

    #[test]
    fn gives_up_where_the_worded_reader_finds_an_error() {
        let s = r#""s": {"scratch": null}"#;
        for ops in [
            r#""a": {"mkdir": {"path": "/x", "path": "/y"}}"#,
            r#""a": {"mkdir": {"path": "/x", "owner": {"uid": 1, "uid": 2, "gid": 3}}}"#,
            r#""a": {"mkdir": {"path": "/x", "base": "s", "base": "s"}}, "s": {"scratch": null}"#,
            r#""a": {"mkdir": {"path": "/x", "base": null}}"#,
            r#""a": {"mkdir": {"path": "/x", "source": "a"}}"#,
            r#""a": {"mkdir": {"path": "/x"}, "rm": {"path": "/y"}}"#,
            r#""a": {}"#,
            r#""a": null"#,
            r#""a": {"scratch": []}"#,
            r#""a": {"scratch": {"x": 1}}"#,
            r#""a": {"scratch": {}}, "a": {"scratch": {}}"#,
            r#""a": {"nope": {}}"#,
            r#""a": {"local": {"path": "app", "base": "s"}}, "s": {"scratch": null}"#,
            r#""a": {"local": {"path": "/abs"}}"#,
            r#""a": {"with_directory": {"path": "/x"}}"#,
            r#""a": {"with_directory": {"path": "/x", "source": 7}}"#,
            r#""a": {"with_directory": {"path": "/x", "source": "s", "source": "s"}}, "s": {"scratch": null}"#,
            r#""a": {"merge": {"inputs": null}}"#,
            r#""a": {"merge": {"inputs": ["s", 1]}}, "s": {"scratch": null}"#,
            r#""a": {"diff": {"lower": "s"}}, "s": {"scratch": null}"#,
            r#""a": {"mkfile": {"path": "/f", "data": "x", "data_base64": "eA=="}}"#,
            r#""a": {"mkfile": {"path": "/f", "data_base64": "!"}}"#,
            r#""a": {"mkdir": {"path": "/x", "timestamp": 1.0}}"#,
            r#""a": {"mkdir": {"path": "/x", "timestamp": null}}"#,
            r#""a": {"mkdir": {"path": "/x", "mode": 493}}"#,
            r#""a": {"rm": {"path": "/a/.."}}"#,
            r#""a": {"symlink": {"path": "/l", "target": ""}}"#,
            r#""a b": {"scratch": null}"#,
            // The first bad op, then a later op with a repeated key: the
            // worded reader reports the repeated key first.
            r#""a": {"nope": {}}, "b": {"scratch": {"x": 1, "x": 2}}"#,
        ] {
            let text = graph(&format!("{ops}, {s}"));
            assert!(!agrees(&text), "read directly: {text}");
            assert!(worded(&text).is_err(), "the worded reader accepts {text}");
        }
    }

    #[test]
    fn reads_valid_ops_as_the_worded_reader_does() {
        let s = r#""s": {"scratch": null}"#;
        for ops in [
            r#""a": {"mk\u0064ir": {"p\u0061th": "x/./y/", "b\u0061se": "s"}}"#,
            r#""a": {"scratch": {}}"#,
            r#""a": {"mkdir": {"path": "/x", "owner": {"gid": 3, "uid": 0}}}"#,
            r#""a": {"mkdir": {"path": "/x", "owner": null, "mode": "0700", "parents": true}}"#,
            r#""a": {"mkfile": {"path": "/f", "data_base64": "/w=="}}"#,
            r#""a": {"copy": {"src": "/", "dest": "./", "source": "s", "include": ["*.c"]}}"#,
            r#""a": {"with_file": {"source": "s", "path": "/f", "source_path": "a/../b"}}"#,
            r#""a": {"merge": {}}"#,
            r#""a": {"merge": {"inputs": ["s", "s"]}}"#,
            r#""a": {"diff": {"upper": "s", "lower": "s"}}"#,
            r#""a": {"local": {"path": "./app/"}}"#,
            // A reference to no op is the graph's error, found once read.
            r#""a": {"mkdir": {"path": "/x", "base": "missing"}}"#,
        ] {
            let text = graph(&format!("{ops}, {s}"));
            assert!(agrees(&text), "not read directly: {text}");
        }
    }

    #[test]
    fn agrees_on_every_fixture_and_corpus_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut read = 0;
        for dir in [
            "fixtures",
            "fixtures/invalid",
            "fixtures/hostile",
            "fuzz/corpus/graph",
            "fuzz/regressions",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                if agrees(&text) {
                    read += 1;
                }
            }
        }
        // The valid fixtures, at least, are read directly.
        assert!(read > 40, "only {read} files read directly");
    }
}
