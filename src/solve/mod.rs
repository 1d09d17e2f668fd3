//! The solver: runs a compiled IR against a [`Snapshotter`] (SPEC §4).
//!
//! Every op's result is cached under a key: its IR digest plus its inputs'
//! keys, where a `local` source's key is the digest of its filtered
//! contents (so a rebuild reads no unchanged source file: the stat cache
//! gives their hashes). Only the ops the target output needs and the store
//! lacks run, in dependency order, independent ones in parallel.
//!
//! Invariant: the solver reads and writes trees only through the
//! [`Snapshotter`]; it never sees a store path.

pub mod report;
mod run;

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::compile::{compile, Compiled, IrOp, NodeId, Strategy};
use crate::fs::pattern::Filter;
use crate::fs::scan::{scan, OriginKind, Owners, ScanOptions, StatCache};
use crate::graph::Graph;
use crate::snapshot::native::NativeStore;
use crate::snapshot::{Key, Snapshotter, StoreError};
use crate::tree::Tree;

pub use report::{Event, OpReport, Report};

/// What a build needs besides the graph.
pub struct BuildOptions<'a> {
    /// The folder `local` paths are relative to.
    pub context: PathBuf,
    /// The output to build (`None`: `default`, or the only one).
    pub target: Option<String>,
    /// Hardlink, or the copy reference.
    pub strategy: Strategy,
    /// Ops run at once.
    pub jobs: usize,
    /// Where progress events go.
    pub events: &'a (dyn Fn(Event) + Sync),
}

/// A failed build: which op, and the SPEC §5 exit code class.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The request is invalid (exit 2): an unknown `--target`, say.
    #[error("{0}")]
    Invalid(String),
    /// An op failed (exit 1); the message names the op, its kind, the path.
    #[error("{0}")]
    Failed(String),
    /// The store is unusable (exit 3).
    #[error("{0}")]
    Store(String),
}

impl From<StoreError> for BuildError {
    fn from(e: StoreError) -> BuildError {
        match e {
            StoreError::Unusable { .. } => BuildError::Store(e.to_string()),
            other => BuildError::Failed(other.to_string()),
        }
    }
}

/// The result of a build.
pub struct Built {
    /// The output's name.
    pub output: String,
    /// The output's snapshot key.
    pub key: Key,
    /// The output's tree digest.
    pub digest: String,
    /// What each op did.
    pub report: Report,
}

/// Picks the output: the named one, else `default`, else the only one.
pub fn pick_output(
    compiled: &Compiled,
    target: Option<&str>,
) -> Result<(String, NodeId), BuildError> {
    let outs = &compiled.ir.outputs;
    let name = match target {
        Some(t) => t.to_string(),
        None if outs.contains_key("default") => "default".to_string(),
        None if outs.len() == 1 => outs.keys().next().expect("one").clone(),
        None => {
            let names: Vec<&str> = outs.keys().map(String::as_str).collect();
            return Err(BuildError::Invalid(format!(
                "the graph has several outputs and none is named `default`: pick one with --target ({})",
                names.join(", ")
            )));
        }
    };
    match outs.get(&name) {
        Some(&id) => Ok((name, id)),
        None => {
            let names: Vec<&str> = outs.keys().map(String::as_str).collect();
            Err(BuildError::Invalid(format!(
                "--target {name}: no such output (outputs: {})",
                names.join(", ")
            )))
        }
    }
}

fn key_of(parts: &[&str]) -> Key {
    let mut h = Sha256::new();
    h.update(b"hardmerge cache key 1\0");
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\0");
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Reads a `local` source (through its stat cache) and checks it stays in
/// the context.
fn read_local(
    store: &NativeStore,
    context: &Path,
    local: &crate::graph::Local,
    name: &str,
) -> Result<(Tree, String), BuildError> {
    let fail = |m: String| BuildError::Failed(format!("op `{name}` (local): {m}"));
    let context = context
        .canonicalize()
        .map_err(|e| fail(format!("context {}: {e}", context.display())))?;
    let dir = context.join(&local.path);
    let real = dir
        .canonicalize()
        .map_err(|e| fail(format!("path {}: {e}", dir.display())))?;
    if !real.starts_with(&context) {
        return Err(fail(format!(
            "path {} leaves the context directory {} (through a symlink)",
            local.path,
            context.display()
        )));
    }
    if !real.is_dir() {
        return Err(fail(format!("path {} is not a directory", dir.display())));
    }
    let filter = Filter::new(&local.include, &local.exclude).map_err(|e| fail(e.to_string()))?;
    let cache_path = store.stat_cache_path(&real);
    let mut cache = StatCache::load(&cache_path);
    let owners = if nix::unistd::geteuid().is_root() {
        Owners::Keep
    } else {
        Owners::Current
    };
    let opts = ScanOptions {
        filter: (!filter.is_trivial()).then_some(&filter),
        owners,
        origin: OriginKind::Host,
        stat_cache: Some(&mut cache),
    };
    let tree = scan(&real, opts).map_err(|e| fail(e.to_string()))?;
    // An unchanged source has the fingerprint of its last scan: its digest
    // is the one computed then.
    let fingerprint = crate::tree::manifest::fingerprint(&tree);
    let digest = match cache.digest_for(&fingerprint) {
        Some(d) => d.to_string(),
        None => {
            let d = crate::tree::manifest::tree_digest(&tree);
            cache.remember_digest(fingerprint, d.clone());
            d
        }
    };
    cache.prune_unseen();
    if cache.is_dirty() {
        let _ = cache.save(&cache_path);
    }
    Ok((tree, digest))
}

/// Builds `graph`'s target output into `store`.
pub fn build(
    graph: &Graph,
    store: &NativeStore,
    opts: &BuildOptions<'_>,
) -> Result<Built, BuildError> {
    build_compiled(&compile(graph, opts.strategy), store, opts)
}

/// Builds a compiled IR's target output into `store`.
pub fn build_compiled(
    compiled: &Compiled,
    store: &NativeStore,
    opts: &BuildOptions<'_>,
) -> Result<Built, BuildError> {
    let (output, out) = pick_output(compiled, opts.target.as_deref())?;
    let ir = &compiled.ir;
    // The ops the output needs, in dependency order.
    let mut needed = vec![false; ir.nodes.len()];
    needed[out] = true;
    for i in (0..ir.nodes.len()).rev() {
        if needed[i] {
            for j in ir.nodes[i].op.inputs() {
                needed[j] = true;
            }
        }
    }
    let mut keys: Vec<Key> = vec![String::new(); ir.nodes.len()];
    let mut sources: Vec<Option<Tree>> = (0..ir.nodes.len()).map(|_| None).collect();
    for i in 0..ir.nodes.len() {
        if !needed[i] {
            continue;
        }
        let digest = &compiled.digests[i];
        keys[i] = match &ir.nodes[i].op {
            IrOp::Local(l) => {
                let name = ir.label(i);
                let (tree, content) = read_local(store, &opts.context, l, &name)?;
                sources[i] = Some(tree);
                key_of(&[digest, &content])
            }
            op => {
                let inputs: Vec<&str> = op.inputs().into_iter().map(|j| keys[j].as_str()).collect();
                let mut parts = vec![digest.as_str()];
                parts.extend(inputs);
                key_of(&parts)
            }
        };
    }
    run::run(compiled, out, &needed, &keys, sources, store, opts, output)
}

/// The tree digest of a committed snapshot (for `tree` of a store key).
pub fn snapshot_digest(store: &dyn Snapshotter, key: &str) -> Result<String, StoreError> {
    Ok(store.lookup(key)?.map(|i| i.digest).unwrap_or_default())
}
