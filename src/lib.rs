//! # hardmerge
//!
//! Build tools copy directory trees all day (`COPY` in a Dockerfile,
//! `withDirectory` in Dagger, `FileOp` copies in BuildKit). Most of those
//! copies change no owner, mode or timestamp, so their files can be hard
//! links instead. hardmerge takes a DAG of BuildKit-style filesystem ops as
//! JSON and compiles every copy into a layer of a merge, hard-linked wherever
//! that changes nothing but speed and disk use.
//!
//! ```text
//! JSON ─► graph::parse_graph ─► Graph (named ops)            graph/
//!      ─► compile::compile: dead, lower, drop-scratch,        compile/
//!         flatten, dedupe, fuse ─► Compiled IR (ops by sha256)
//!      ─► solve::build: cache keys, schedule, run each op        solve/
//!         on in-memory trees (ops/, tree/) ─► Snapshotter     ops/, tree/
//!         (native store: commit = materialise, sync, rename)  snapshot/, fs/
//!      ─► export (copy, or --link-output)
//! ```
//!
//! ```
//! use hardmerge::compile::{compile, Strategy};
//! use hardmerge::graph::{GraphBuilder, Local, Mkdir, WithDirectory};
//!
//! let mut g = GraphBuilder::new();
//! let src = g.local("src", Local::new("app"));
//! let srv = g.mkdir("srv", None, Mkdir::new("/srv"));
//! let out = g.with_directory("out", Some(&srv), &src, WithDirectory::new("/srv/app"));
//! g.output("default", &out);
//! let compiled = compile(&g.build()?, Strategy::Hardlink);
//! assert!(compiled.explain().contains("[placed-merge]"));
//! # Ok::<(), hardmerge::graph::GraphError>(())
//! ```
//!
//! ## Code map
//!
//! **[`graph`]**: the input as the user wrote it. `op.rs` holds the op kinds
//! and their fields, `parse.rs` the JSON reader (`parse/direct.rs` reads
//! valid ops straight into their types, and leaves every error to the
//! worded reader of `parse.rs`), `normalize.rs` the checks
//! serde cannot do (NUL bytes, paths escaping, patterns) and path cleaning,
//! `builder.rs` the [`graph::GraphBuilder`] for frontends.
//! - *Invariant*: `graph` knows nothing of the filesystem; a [`graph::Graph`]
//!   is a value, fully described by its JSON, and the builder and the JSON
//!   reader make equal graphs from equal inputs.
//! - *Invariant*: parsing never panics and never recurses deeper than
//!   serde_json's limit of 128 levels; every error names the op, its kind
//!   and the field (or the JSON line and column).
//!
//! **[`compile`]**: graph to IR. `import.rs` makes one IR node per graph op,
//! `passes/` holds one file per rule of SPEC §3, `json.rs` the canonical
//! serialisation and digests, `read.rs` reads a compiled IR back.
//! - *Invariant*: `compile` never touches the disk; every pass is a function
//!   from IR to IR that records what it did in `rewrites`.
//! - *Invariant*: in the IR arena every input has a smaller index than its
//!   user; passes walk it front to back and never recurse, so a million-op
//!   chain compiles in constant stack.
//! - *Invariant*: a rewrite changes how data is written, never the result:
//!   `flatten` inlines only a merge's first layer, a diff source is never a
//!   `direct-merge`, `drop-scratch` never replaces a merge by a diff.
//! - *Invariant*: a digest depends on what an op does, never on op names or
//!   the order of keys in the input.
//!
//! **[`tree`]**: the in-memory model of a filesystem tree (an arena of nodes
//! and inodes, each inode knowing where its bytes are), its canonical
//! manifest and tree digest, the tree's fingerprint (equal fingerprints,
//! equal manifests: the stat cache finds an unchanged source's digest by
//! it), and the record a snapshot keeps of it.
//! - *Invariant*: walks are iterative and dropping a tree is flat, so depth
//!   never overflows the stack. A manifest holds every full path, so its
//!   size grows with the square of the depth: scans refuse sources with
//!   paths longer than [`fs::scan::MAX_PATH_BYTES`] (a clean error).
//!
//! **[`ops`]**: what each op does to trees (SPEC §2), one file per op kind,
//! `place.rs` for the placing rules and `resolve.rs` for symlinks resolved
//! inside a tree's root.
//! - *Invariant*: ops never touch the disk; they compute result trees whose
//!   files point at their origins, so a destination can never escape its
//!   tree through a host symlink.
//!
//! **[`snapshot`]**: the `Snapshotter` trait and the native store (atomic
//! commits, file locks, leftovers of killed processes discarded at open).
//! - *Invariant*: only the snapshotter writes into the store, and nothing
//!   else knows its layout.
//! - *Invariant*: nothing writes into an inode that a committed snapshot
//!   holds: files are linked, copied or written new, never opened for
//!   writing in place; a changed owner, mode or mtime means a copy.
//!
//! **[`solve`]**: the solver: cache keys (op digest plus input keys; a
//! `local`'s key is its filtered content digest), parallel scheduling, the
//! build report and progress events.
//! - *Invariant*: the solver sees trees only through the `Snapshotter`.
//!
//! **[`fs`]**: filesystem primitives. `scan.rs` reads a folder into a tree
//! (its directories read in parallel), `stat_cache.rs` keeps the hashes of
//! unchanged host files between builds, `materialize.rs` writes a tree (links, copies, link
//! fallback on EXDEV/EMLINK), `remove.rs` removes trees of any depth,
//! `pattern.rs` is the `.dockerignore` pattern matcher (moby/patternmatcher
//! semantics) used by filters and wildcards.
//! - *Invariant*: walks use directory descriptors, never follow a symlink,
//!   and are not limited by PATH_MAX.
//!
//! **[`dot`]**: Graphviz renderings of a graph and of a compiled IR.
//!
//! **[`cli`]**: the command line.
//! - *Invariant*: the CLI is the only place that knows about exit codes,
//!   stdin/stdout and terminals.
pub mod cli;
pub mod compile;
pub mod dot;
pub mod fs;
pub mod graph;
pub mod ops;
pub mod snapshot;
pub mod solve;
pub mod tree;

use compile::Ir;
use graph::{Graph, GraphError};

/// What a JSON file given to the CLI holds: a graph, or a compiled IR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A graph in the version 1 format.
    Graph(Graph),
    /// A compiled IR (its `ops` is an array of ops keyed by digest).
    Ir(Ir),
}

/// Reads a graph or a compiled IR from JSON text, validating it.
pub fn parse_input(text: &str) -> Result<Input, GraphError> {
    let raw = graph::parse::read_top(text)?;
    if matches!(raw.ops, Some(graph::parse::RawOps::List(_))) {
        compile::read::ir_from_raw(raw).map(Input::Ir)
    } else {
        graph::parse::graph_from_raw(raw).map(Input::Graph)
    }
}
