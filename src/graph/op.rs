//! The op kinds of the graph format (SPEC §2) and their fields.
//!
//! Each kind's own fields live in a struct (`Mkdir`, `Copy`, ...) without its
//! references to other ops; [`Op`] adds the references. The same structs are
//! carried by the IR's actions and placed layers, so a layer has exactly the
//! fields of the op it replaces. Serialising a struct leaves out every field
//! at its default: that is the canonical form digests are taken of.

use serde::{Deserialize, Serialize};

use super::path;
use super::value::{self, Data, Mode, Owner};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_root_path(p: &String) -> bool {
    p == "/"
}

fn root_path() -> String {
    "/".to_string()
}

/// `local`: a host directory, relative to the context directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Local {
    /// The directory, relative to the context; `"."` is the context itself.
    pub path: String,
    /// Only entries matching these patterns (and their parents) are imported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Entries matching these patterns are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// `mkdir`: like `mkdir` / `mkdir -p`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mkdir {
    /// The directory to create.
    pub path: String,
    /// Its mode (default `0755`).
    #[serde(default = "dir_mode", skip_serializing_if = "Mode::is_dir_default")]
    pub mode: Mode,
    /// Create missing parents too, with this op's mode, owner and timestamp.
    #[serde(default, skip_serializing_if = "is_false")]
    pub parents: bool,
    /// Owner of what it creates (default `0:0`, the running user when not root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Mtime of what it creates (default: the graph's `epoch`).
    #[serde(
        default,
        deserialize_with = "value::timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<i64>,
}

fn dir_mode() -> Mode {
    Mode::DIR
}

fn file_mode() -> Mode {
    Mode::FILE
}

/// `mkfile`: creates or replaces a file, always as a new inode.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "MkfileFields")]
pub struct Mkfile {
    /// The file to write.
    pub path: String,
    /// Its content.
    pub data: Data,
    /// Its mode (default `0644`).
    pub mode: Mode,
    /// Its owner.
    pub owner: Option<Owner>,
    /// Its mtime.
    pub timestamp: Option<i64>,
}

/// `mkfile` as written in JSON: `data` or `data_base64`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MkfileFields {
    path: String,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default = "file_mode")]
    mode: Mode,
    #[serde(default)]
    owner: Option<Owner>,
    #[serde(default, deserialize_with = "value::timestamp")]
    timestamp: Option<i64>,
}

impl TryFrom<MkfileFields> for Mkfile {
    type Error = String;
    fn try_from(f: MkfileFields) -> Result<Mkfile, String> {
        let data = match (f.data, f.data_base64) {
            (Some(_), Some(_)) => {
                return Err("`data` and `data_base64` are both set: give one".into());
            }
            (Some(s), None) => Data(s.into_bytes()),
            (None, Some(b)) => {
                Data::decode_base64(&b).map_err(|e| format!("field `data_base64`: {e}"))?
            }
            (None, None) => Data::default(),
        };
        Ok(Mkfile {
            path: f.path,
            data,
            mode: f.mode,
            owner: f.owner,
            timestamp: f.timestamp,
        })
    }
}

/// `mkfile` as serialised: [`MkfileFields`] borrowing from the op, so
/// that writing an op (for its digest, or the output) copies nothing.
#[derive(Serialize)]
struct MkfileFieldsRef<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    #[serde(skip_serializing_if = "Mode::is_file_default")]
    mode: Mode,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<Owner>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
}

impl Serialize for Mkfile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // UTF-8 content is written as `data`, other bytes as `data_base64`.
        let (data, data_base64) = if self.data.is_empty() {
            (None, None)
        } else {
            match std::str::from_utf8(&self.data.0) {
                Ok(text) => (Some(text), None),
                Err(_) => (None, Some(self.data.encode_base64())),
            }
        };
        MkfileFieldsRef {
            path: &self.path,
            data,
            data_base64,
            mode: self.mode,
            owner: self.owner,
            timestamp: self.timestamp,
        }
        .serialize(s)
    }
}

/// `symlink`: creates a symbolic link; an existing path is an error.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Symlink {
    /// Where the link is made.
    pub path: String,
    /// What it points to, kept as written.
    pub target: String,
    /// Its owner (lchown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Its mtime (lutimes).
    #[serde(
        default,
        deserialize_with = "value::timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<i64>,
}

/// `rm`: removes recursively.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rm {
    /// What to remove (the entry itself, not a symlink's target).
    pub path: String,
    /// A missing path is not an error.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_not_found: bool,
    /// `path` is matched per component like a `copy` wildcard.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_wildcard: bool,
}

/// `copy`: BuildKit's `FileActionCopy`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Copy {
    /// What to copy, in the source tree.
    pub src: String,
    /// Where, in the base tree (a trailing `/` means "into this directory").
    pub dest: String,
    /// Owner of every copied entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Mode of every copied entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Mtime of every copied entry.
    #[serde(
        default,
        deserialize_with = "value::timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<i64>,
    /// Follow a final symlink of `src`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub follow_symlinks: bool,
    /// Copy a directory's contents rather than the directory.
    #[serde(default, skip_serializing_if = "is_false")]
    pub contents_only: bool,
    /// Create missing parents of `dest`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_dest_path: bool,
    /// Match `src` components holding `*`, `?` or `[`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_wildcard: bool,
    /// No wildcard match is not an error (nothing is copied).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_empty_wildcard: bool,
    /// Only entries matching these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Entries matching these patterns are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// A type conflict replaces what is there instead of failing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replace_existing: bool,
}

/// `with_directory`: Dagger's `Directory.withDirectory`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithDirectory {
    /// Where the directory lands in the base tree.
    pub path: String,
    /// Which directory of the source (default `/`).
    #[serde(default = "root_path", skip_serializing_if = "is_root_path")]
    pub source_path: String,
    /// Only entries matching these patterns (relative to `source_path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Entries matching these patterns are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Owner of every placed entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Mode of every placed entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Mtime of every placed entry.
    #[serde(
        default,
        deserialize_with = "value::timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<i64>,
}

/// `with_file`: Dagger's `Directory.withFile`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithFile {
    /// Where the file lands (inside it, when an existing directory).
    pub path: String,
    /// The regular file in the source (a symlink there is followed).
    pub source_path: String,
    /// Its mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Its mtime.
    #[serde(
        default,
        deserialize_with = "value::timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<i64>,
}

/// A file action: an op that changes its base in place (`mkdir`, `mkfile`,
/// `symlink`, `rm`). Several in a row fuse into one IR `file` op.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FileAction {
    /// `mkdir`.
    Mkdir(Mkdir),
    /// `mkfile`.
    Mkfile(Mkfile),
    /// `symlink`.
    Symlink(Symlink),
    /// `rm`.
    Rm(Rm),
}

/// A placement: an op that places (part of) a source tree into its base
/// (`copy`, `with_directory`, `with_file`). Each becomes a merge layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Placement {
    /// `copy`.
    Copy(Copy),
    /// `with_directory`.
    WithDirectory(WithDirectory),
    /// `with_file`.
    WithFile(WithFile),
}

/// The overrides a placement sets, in the order `kept-copy` names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// An owner is set.
    pub owner: bool,
    /// A mode is set.
    pub mode: bool,
    /// A timestamp is set.
    pub timestamp: bool,
}

impl Overrides {
    /// Whether any override is set.
    pub fn any(self) -> bool {
        self.owner || self.mode || self.timestamp
    }

    /// The names of the set overrides: `owner`, `mode`, `timestamp`.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.owner {
            v.push("owner");
        }
        if self.mode {
            v.push("mode");
        }
        if self.timestamp {
            v.push("timestamp");
        }
        v
    }
}

impl FileAction {
    /// The kind's name in the graph format.
    pub fn kind(&self) -> &'static str {
        match self {
            FileAction::Mkdir(_) => "mkdir",
            FileAction::Mkfile(_) => "mkfile",
            FileAction::Symlink(_) => "symlink",
            FileAction::Rm(_) => "rm",
        }
    }

    /// The action's own fields, canonical (defaults left out).
    pub fn fields_json(&self) -> serde_json::Value {
        let v = match self {
            FileAction::Mkdir(a) => serde_json::to_value(a),
            FileAction::Mkfile(a) => serde_json::to_value(a),
            FileAction::Symlink(a) => serde_json::to_value(a),
            FileAction::Rm(a) => serde_json::to_value(a),
        };
        v.expect("op fields serialise")
    }

    /// The path the action works on.
    pub fn path(&self) -> &str {
        match self {
            FileAction::Mkdir(a) => &a.path,
            FileAction::Mkfile(a) => &a.path,
            FileAction::Symlink(a) => &a.path,
            FileAction::Rm(a) => &a.path,
        }
    }
}

impl Placement {
    /// The kind's name in the graph format.
    pub fn kind(&self) -> &'static str {
        match self {
            Placement::Copy(_) => "copy",
            Placement::WithDirectory(_) => "with_directory",
            Placement::WithFile(_) => "with_file",
        }
    }

    /// The placement's own fields, canonical (defaults left out).
    pub fn fields_json(&self) -> serde_json::Value {
        let v = match self {
            Placement::Copy(a) => serde_json::to_value(a),
            Placement::WithDirectory(a) => serde_json::to_value(a),
            Placement::WithFile(a) => serde_json::to_value(a),
        };
        v.expect("op fields serialise")
    }

    /// Which of owner, mode and timestamp it sets.
    pub fn overrides(&self) -> Overrides {
        let (owner, mode, timestamp) = match self {
            Placement::Copy(c) => (c.owner.is_some(), c.mode.is_some(), c.timestamp.is_some()),
            Placement::WithDirectory(w) => {
                (w.owner.is_some(), w.mode.is_some(), w.timestamp.is_some())
            }
            Placement::WithFile(w) => (w.owner.is_some(), w.mode.is_some(), w.timestamp.is_some()),
        };
        Overrides {
            owner,
            mode,
            timestamp,
        }
    }

    /// Where the placement writes in its base, as written (for messages and dot).
    pub fn at(&self) -> &str {
        match self {
            Placement::Copy(c) => &c.dest,
            Placement::WithDirectory(w) => &w.path,
            Placement::WithFile(w) => &w.path,
        }
    }

    /// Whether it places the whole source tree at `/` with no filter and no
    /// override: then it is a plain merge of its source (`direct-merge`).
    pub fn is_whole_tree_at_root(&self) -> bool {
        match self {
            Placement::WithDirectory(w) => {
                path::is_root(&w.path)
                    && path::is_root(&w.source_path)
                    && w.include.is_empty()
                    && w.exclude.is_empty()
            }
            Placement::Copy(c) => {
                path::is_root(&c.src)
                    && path::is_root(&c.dest)
                    && c.replace_existing
                    && c.include.is_empty()
                    && c.exclude.is_empty()
                    && !c.allow_wildcard
            }
            Placement::WithFile(_) => false,
        }
    }
}

/// One op of a graph, with its references to other ops by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `scratch`: the empty tree.
    Scratch,
    /// `local`: a host directory.
    Local(Local),
    /// `mkdir`, `mkfile`, `symlink` or `rm` on `base`.
    File {
        /// The tree it changes; `None` is the empty tree.
        base: Option<String>,
        /// What it does.
        action: FileAction,
    },
    /// `copy`, `with_directory` or `with_file` from `source` into `base`.
    Place {
        /// The tree it writes into; `None` is the empty tree.
        base: Option<String>,
        /// The tree it takes from.
        source: String,
        /// What it places, where.
        placement: Placement,
    },
    /// `merge`: layered union, later inputs win.
    Merge {
        /// The inputs, in order.
        inputs: Vec<String>,
    },
    /// `diff`: the changes that turn `lower` into `upper`.
    Diff {
        /// The tree before.
        lower: String,
        /// The tree after.
        upper: String,
    },
}

impl Op {
    /// The kind's name in the graph format.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Scratch => "scratch",
            Op::Local(_) => "local",
            Op::File { action, .. } => action.kind(),
            Op::Place { placement, .. } => placement.kind(),
            Op::Merge { .. } => "merge",
            Op::Diff { .. } => "diff",
        }
    }

    /// Every reference to another op, with the field that holds it.
    pub fn refs(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        self.for_each_ref(|field, name| out.push((field, name)));
        out
    }

    /// Calls `f` with each reference (field, op name), in the order of
    /// [`Op::refs`]: `base`, `source`, `inputs`, `lower`, `upper`.
    pub fn for_each_ref<'a>(&'a self, mut f: impl FnMut(&'static str, &'a str)) {
        match self {
            Op::Scratch | Op::Local(_) => {}
            Op::File { base, .. } => {
                if let Some(b) = base {
                    f("base", b)
                }
            }
            Op::Place { base, source, .. } => {
                if let Some(b) = base {
                    f("base", b)
                }
                f("source", source);
            }
            Op::Merge { inputs } => inputs.iter().for_each(|i| f("inputs", i)),
            Op::Diff { lower, upper } => {
                f("lower", lower);
                f("upper", upper);
            }
        }
    }

    /// The op as graph JSON: `{KIND: {fields}}`, defaults left out.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let mut fields = match self {
            Op::Scratch => Map::new(),
            Op::Local(l) => to_map(serde_json::to_value(l).expect("serialise")),
            Op::File { action, .. } => to_map(action.fields_json()),
            Op::Place { placement, .. } => to_map(placement.fields_json()),
            Op::Merge { inputs } => {
                let mut m = Map::new();
                m.insert("inputs".into(), json!(inputs));
                m
            }
            Op::Diff { lower, upper } => {
                let mut m = Map::new();
                m.insert("lower".into(), json!(lower));
                m.insert("upper".into(), json!(upper));
                m
            }
        };
        match self {
            Op::File { base, .. } | Op::Place { base, .. } => {
                if let Some(b) = base {
                    fields.insert("base".into(), json!(b));
                }
            }
            _ => {}
        }
        if let Op::Place { source, .. } = self {
            fields.insert("source".into(), json!(source));
        }
        let mut m = Map::new();
        m.insert(self.kind().into(), Value::Object(fields));
        Value::Object(m)
    }
}

fn to_map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// The fields each kind takes, references included, for the unknown-field error.
pub(crate) fn kind_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "scratch" => &[],
        "local" => &["path", "include", "exclude"],
        "mkdir" => &["base", "path", "mode", "parents", "owner", "timestamp"],
        "mkfile" => &[
            "base",
            "path",
            "data",
            "data_base64",
            "mode",
            "owner",
            "timestamp",
        ],
        "symlink" => &["base", "path", "target", "owner", "timestamp"],
        "rm" => &["base", "path", "allow_not_found", "allow_wildcard"],
        "copy" => &[
            "base",
            "source",
            "src",
            "dest",
            "owner",
            "mode",
            "timestamp",
            "follow_symlinks",
            "contents_only",
            "create_dest_path",
            "allow_wildcard",
            "allow_empty_wildcard",
            "include",
            "exclude",
            "replace_existing",
        ],
        "with_directory" => &[
            "base",
            "path",
            "source",
            "source_path",
            "include",
            "exclude",
            "owner",
            "mode",
            "timestamp",
        ],
        "with_file" => &[
            "base",
            "path",
            "source",
            "source_path",
            "mode",
            "owner",
            "timestamp",
        ],
        "merge" => &["inputs"],
        "diff" => &["lower", "upper"],
        _ => return None,
    })
}

/// Every op kind of the graph format.
pub const KINDS: &[&str] = &[
    "scratch",
    "local",
    "mkdir",
    "mkfile",
    "symlink",
    "rm",
    "copy",
    "with_directory",
    "with_file",
    "merge",
    "diff",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfile_writes_its_data_in_one_canonical_spelling() {
        let read = |text: &str| serde_json::from_str::<Mkfile>(text).unwrap();
        let write = |m: &Mkfile| serde_json::to_string(m).unwrap();
        // UTF-8 bytes are `data`, whichever way they were given.
        let text = read(r#"{"path": "/f", "data_base64": "aGk="}"#);
        assert_eq!(write(&text), r#"{"path":"/f","data":"hi"}"#);
        // Other bytes are `data_base64`; no content is neither.
        let binary = read(r#"{"path": "/f", "data_base64": "/w==", "mode": "0600"}"#);
        assert_eq!(
            write(&binary),
            r#"{"path":"/f","data_base64":"/w==","mode":"0600"}"#
        );
        let empty = read(r#"{"path": "/f", "data": "", "owner": "1:2", "timestamp": 5}"#);
        assert_eq!(
            write(&empty),
            r#"{"path":"/f","owner":"1:2","timestamp":5}"#
        );
        for m in [text, binary, empty] {
            assert_eq!(read(&write(&m)), m);
        }
    }
}
