//! Building a [`Graph`] in code, for frontends: the same graph the JSON
//! format gives, checked the same way.
//!
//! ```
//! use hardmerge::graph::{Graph, GraphBuilder, Local, Mkfile, WithDirectory};
//!
//! let mut g = GraphBuilder::new();
//! let ctx = g.local("ctx", Local::new("app").exclude("target/**"));
//! let motd = g.mkfile("motd", None, Mkfile::new("/motd").data("hello\n"));
//! let out = g.with_directory("out", Some(&motd), &ctx, WithDirectory::new("/srv/app"));
//! g.output("default", &out);
//! let built = g.build()?;
//!
//! let parsed = Graph::from_json(r#"{
//!   "version": 1,
//!   "ops": {
//!     "ctx":  {"local": {"path": "app", "exclude": ["target/**"]}},
//!     "motd": {"mkfile": {"path": "/motd", "data": "hello\n"}},
//!     "out":  {"with_directory": {"base": "motd", "path": "/srv/app", "source": "ctx"}}
//!   },
//!   "outputs": {"default": "out"}
//! }"#)?;
//! assert_eq!(built, parsed);
//! # Ok::<(), hardmerge::graph::GraphError>(())
//! ```

use std::collections::BTreeMap;

use super::error::GraphError;
use super::normalize::normalize_op;
use super::op::{
    Copy, FileAction, Local, Mkdir, Mkfile, Op, Placement, Rm, Symlink, WithDirectory, WithFile,
};
use super::value::{Data, Mode, Owner};
use super::{parse, Graph};

/// A reference to an op added to a [`GraphBuilder`]: its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpRef(pub String);

impl OpRef {
    /// The op's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Builds a [`Graph`] op by op; [`GraphBuilder::build`] checks it.
#[derive(Clone, Debug, Default)]
pub struct GraphBuilder {
    epoch: i64,
    ops: BTreeMap<String, Op>,
    outputs: BTreeMap<String, String>,
    error: Option<GraphError>,
}

impl GraphBuilder {
    /// An empty builder (epoch 0).
    pub fn new() -> GraphBuilder {
        GraphBuilder::default()
    }

    /// Sets the graph's `epoch`.
    pub fn epoch(&mut self, epoch: i64) -> &mut Self {
        self.epoch = epoch;
        self
    }

    /// Adds an op under a name. A name used twice is reported by `build`.
    pub fn op(&mut self, name: &str, op: Op) -> OpRef {
        if self.ops.insert(name.to_string(), op).is_some() && self.error.is_none() {
            self.error = Some(GraphError::op(name, None, None, "defined twice"));
        }
        OpRef(name.to_string())
    }

    /// Names an output.
    pub fn output(&mut self, name: &str, op: &OpRef) -> &mut Self {
        self.outputs.insert(name.to_string(), op.0.clone());
        self
    }

    /// Adds a `scratch` op.
    pub fn scratch(&mut self, name: &str) -> OpRef {
        self.op(name, Op::Scratch)
    }

    /// Adds a `local` op.
    pub fn local(&mut self, name: &str, local: Local) -> OpRef {
        self.op(name, Op::Local(local))
    }

    fn file(&mut self, name: &str, base: Option<&OpRef>, action: FileAction) -> OpRef {
        let base = base.map(|b| b.0.clone());
        self.op(name, Op::File { base, action })
    }

    /// Adds a `mkdir` op on `base` (`None`: the empty tree).
    pub fn mkdir(&mut self, name: &str, base: Option<&OpRef>, mkdir: Mkdir) -> OpRef {
        self.file(name, base, FileAction::Mkdir(mkdir))
    }

    /// Adds a `mkfile` op on `base`.
    pub fn mkfile(&mut self, name: &str, base: Option<&OpRef>, mkfile: Mkfile) -> OpRef {
        self.file(name, base, FileAction::Mkfile(mkfile))
    }

    /// Adds a `symlink` op on `base`.
    pub fn symlink(&mut self, name: &str, base: Option<&OpRef>, symlink: Symlink) -> OpRef {
        self.file(name, base, FileAction::Symlink(symlink))
    }

    /// Adds an `rm` op on `base`.
    pub fn rm(&mut self, name: &str, base: Option<&OpRef>, rm: Rm) -> OpRef {
        self.file(name, base, FileAction::Rm(rm))
    }

    fn place(&mut self, name: &str, base: Option<&OpRef>, source: &OpRef, p: Placement) -> OpRef {
        let op = Op::Place {
            base: base.map(|b| b.0.clone()),
            source: source.0.clone(),
            placement: p,
        };
        self.op(name, op)
    }

    /// Adds a `copy` from `source` into `base`.
    pub fn copy(&mut self, name: &str, base: Option<&OpRef>, source: &OpRef, copy: Copy) -> OpRef {
        self.place(name, base, source, Placement::Copy(copy))
    }

    /// Adds a `with_directory` of `source` into `base`.
    pub fn with_directory(
        &mut self,
        name: &str,
        base: Option<&OpRef>,
        source: &OpRef,
        w: WithDirectory,
    ) -> OpRef {
        self.place(name, base, source, Placement::WithDirectory(w))
    }

    /// Adds a `with_file` of a file of `source` into `base`.
    pub fn with_file(
        &mut self,
        name: &str,
        base: Option<&OpRef>,
        source: &OpRef,
        w: WithFile,
    ) -> OpRef {
        self.place(name, base, source, Placement::WithFile(w))
    }

    /// Adds a `merge` of `inputs`, later ones winning.
    pub fn merge(&mut self, name: &str, inputs: &[&OpRef]) -> OpRef {
        let inputs = inputs.iter().map(|r| r.0.clone()).collect();
        self.op(name, Op::Merge { inputs })
    }

    /// Adds a `diff` from `lower` to `upper`.
    pub fn diff(&mut self, name: &str, lower: &OpRef, upper: &OpRef) -> OpRef {
        let op = Op::Diff {
            lower: lower.0.clone(),
            upper: upper.0.clone(),
        };
        self.op(name, op)
    }

    /// Checks every op as the JSON reader does, cleans paths, and returns
    /// the graph.
    pub fn build(self) -> Result<Graph, GraphError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut ops = self.ops;
        for (name, op) in ops.iter_mut() {
            parse::check_name("op", name)?;
            let kind = op.kind();
            normalize_op(op).map_err(|(field, m)| GraphError::op(name, Some(kind), field, m))?;
        }
        let graph = Graph {
            epoch: self.epoch,
            ops,
            outputs: self.outputs,
        };
        graph.validate()?;
        Ok(graph)
    }
}

impl Local {
    /// A `local` of a directory relative to the context.
    pub fn new(path: &str) -> Local {
        Local {
            path: path.to_string(),
            ..Local::default()
        }
    }
    /// Adds an include pattern.
    pub fn include(mut self, pattern: &str) -> Local {
        self.include.push(pattern.to_string());
        self
    }
    /// Adds an exclude pattern.
    pub fn exclude(mut self, pattern: &str) -> Local {
        self.exclude.push(pattern.to_string());
        self
    }
}

impl Mkdir {
    /// A `mkdir` of `path`, mode 0755, without parents.
    pub fn new(path: &str) -> Mkdir {
        Mkdir {
            path: path.to_string(),
            mode: Mode::DIR,
            parents: false,
            owner: None,
            timestamp: None,
        }
    }
    /// Creates missing parents too.
    pub fn parents(mut self) -> Mkdir {
        self.parents = true;
        self
    }
    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Mkdir {
        self.mode = mode;
        self
    }
    /// Sets the owner.
    pub fn owner(mut self, owner: Owner) -> Mkdir {
        self.owner = Some(owner);
        self
    }
    /// Sets the mtime.
    pub fn timestamp(mut self, t: i64) -> Mkdir {
        self.timestamp = Some(t);
        self
    }
}

impl Mkfile {
    /// An empty `mkfile` of `path`, mode 0644.
    pub fn new(path: &str) -> Mkfile {
        Mkfile {
            path: path.to_string(),
            data: Data::default(),
            mode: Mode::FILE,
            owner: None,
            timestamp: None,
        }
    }
    /// Sets the content.
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Mkfile {
        self.data = Data(data.into());
        self
    }
    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Mkfile {
        self.mode = mode;
        self
    }
    /// Sets the owner.
    pub fn owner(mut self, owner: Owner) -> Mkfile {
        self.owner = Some(owner);
        self
    }
    /// Sets the mtime.
    pub fn timestamp(mut self, t: i64) -> Mkfile {
        self.timestamp = Some(t);
        self
    }
}

impl Symlink {
    /// A `symlink` at `path` pointing to `target`.
    pub fn new(path: &str, target: &str) -> Symlink {
        Symlink {
            path: path.to_string(),
            target: target.to_string(),
            owner: None,
            timestamp: None,
        }
    }
}

impl Rm {
    /// An `rm` of `path`.
    pub fn new(path: &str) -> Rm {
        Rm {
            path: path.to_string(),
            allow_not_found: false,
            allow_wildcard: false,
        }
    }
    /// A missing path is not an error.
    pub fn allow_not_found(mut self) -> Rm {
        self.allow_not_found = true;
        self
    }
    /// Matches `path` as a wildcard.
    pub fn allow_wildcard(mut self) -> Rm {
        self.allow_wildcard = true;
        self
    }
}

impl Copy {
    /// A `copy` of `src` to `dest` with every option at its default.
    pub fn new(src: &str, dest: &str) -> Copy {
        Copy {
            src: src.to_string(),
            dest: dest.to_string(),
            owner: None,
            mode: None,
            timestamp: None,
            follow_symlinks: false,
            contents_only: false,
            create_dest_path: false,
            allow_wildcard: false,
            allow_empty_wildcard: false,
            include: Vec::new(),
            exclude: Vec::new(),
            replace_existing: false,
        }
    }
}

impl WithDirectory {
    /// A `with_directory` of the source's root at `path`.
    pub fn new(path: &str) -> WithDirectory {
        WithDirectory {
            path: path.to_string(),
            source_path: "/".to_string(),
            include: Vec::new(),
            exclude: Vec::new(),
            owner: None,
            mode: None,
            timestamp: None,
        }
    }
    /// Takes this directory of the source instead of its root.
    pub fn source_path(mut self, p: &str) -> WithDirectory {
        self.source_path = p.to_string();
        self
    }
    /// Adds an include pattern.
    pub fn include(mut self, pattern: &str) -> WithDirectory {
        self.include.push(pattern.to_string());
        self
    }
    /// Adds an exclude pattern.
    pub fn exclude(mut self, pattern: &str) -> WithDirectory {
        self.exclude.push(pattern.to_string());
        self
    }
    /// Sets the owner of every placed entry.
    pub fn owner(mut self, owner: Owner) -> WithDirectory {
        self.owner = Some(owner);
        self
    }
    /// Sets the mode of every placed entry.
    pub fn mode(mut self, mode: Mode) -> WithDirectory {
        self.mode = Some(mode);
        self
    }
    /// Sets the mtime of every placed entry.
    pub fn timestamp(mut self, t: i64) -> WithDirectory {
        self.timestamp = Some(t);
        self
    }
}

impl WithFile {
    /// A `with_file` of the source's `source_path` at `path`.
    pub fn new(path: &str, source_path: &str) -> WithFile {
        WithFile {
            path: path.to_string(),
            source_path: source_path.to_string(),
            mode: None,
            owner: None,
            timestamp: None,
        }
    }
    /// Sets the file's mode.
    pub fn mode(mut self, mode: Mode) -> WithFile {
        self.mode = Some(mode);
        self
    }
    /// Sets the file's owner.
    pub fn owner(mut self, owner: Owner) -> WithFile {
        self.owner = Some(owner);
        self
    }
    /// Sets the file's mtime.
    pub fn timestamp(mut self, t: i64) -> WithFile {
        self.timestamp = Some(t);
        self
    }
}
