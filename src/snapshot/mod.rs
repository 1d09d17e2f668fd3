//! Snapshotters: where committed trees live (SPEC §4).
//!
//! The solver and the ops see a [`Snapshotter`], never the store's folders:
//! they read a committed snapshot as a [`Tree`] whose files point at their
//! stored origins, compute a new tree, and hand it back to be committed.
//! [`native::NativeStore`] is the first implementation: every committed
//! snapshot a plain directory tree, merges built as hardlink farms.
//!
//! Invariants:
//! - only the snapshotter writes into the store, and nothing else knows its
//!   layout;
//! - a committed snapshot is never written into, content or metadata: new
//!   snapshots link its files or copy them, and no op ever opens a stored
//!   file for writing;
//! - a commit is atomic (private work area, sync, rename into place), so a
//!   killed build leaves nothing that is ever served.

pub mod lock;
pub mod native;

use std::path::Path;
use std::sync::Arc;

use crate::fs::materialize::Materialized;
use crate::tree::Tree;

/// The key of a snapshot in the store: the cache key of the op that made
/// it, `sha256:` and 64 hex digits.
pub type Key = String;

/// What is known of a committed snapshot without reading its tree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Info {
    /// The cache key.
    pub key: Key,
    /// The tree digest at commit.
    pub digest: String,
    /// The op kind that made it.
    pub kind: String,
    /// The graph ops it stands for (for `du` and messages).
    pub names: Vec<String>,
    /// Regular files in it.
    pub files: u64,
    /// Sum of its files' sizes.
    pub logical_bytes: u64,
}

/// How a commit writes file data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Link every file the tree allows (`Inode::link`) from its origin.
    Link,
    /// Copy every byte (the reference build).
    Copy,
}

/// A commit's outcome.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The snapshot.
    pub info: Info,
    /// What materialising it did (all zero when another process had
    /// committed the same key first).
    pub stats: Materialized,
}

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be used (missing, unreadable, damaged record).
    #[error("store {path}: {message}")]
    Unusable {
        /// The store folder or file.
        path: String,
        /// Why.
        message: String,
    },
    /// Writing a snapshot failed (disk full, link error, ...).
    #[error("{0}")]
    Write(String),
    /// The disk is full (the message says so).
    #[error("{0}")]
    NoSpace(String),
}

/// The operations the solver needs from a store of snapshots.
pub trait Snapshotter: Send + Sync {
    /// The committed snapshot under `key`, if any.
    fn lookup(&self, key: &str) -> Result<Option<Info>, StoreError>;
    /// The tree of a committed snapshot, its files pointing at the store.
    fn view(&self, key: &str) -> Result<Arc<Tree>, StoreError>;
    /// A tree to change, starting from a committed parent (or empty). A
    /// diff parent is its exported tree: its deletions do not carry over.
    fn prepare(&self, parent: Option<&str>) -> Result<Tree, StoreError> {
        match parent {
            Some(p) => {
                let mut t = (*self.view(p)?).clone();
                t.make_plain();
                Ok(t)
            }
            None => Ok(Tree::new()),
        }
    }
    /// Writes `tree` and commits it under `key`, atomically.
    fn commit(
        &self,
        key: &str,
        tree: Tree,
        kind: &str,
        names: &[String],
        write: Write,
    ) -> Result<Committed, StoreError>;
    /// Writes a committed snapshot's tree to `dest` (which must not exist),
    /// copying by default or linking with `link`.
    fn export(&self, key: &str, dest: &Path, link: bool) -> Result<Materialized, StoreError>;
    /// Every committed snapshot.
    fn list(&self) -> Result<Vec<Info>, StoreError>;
    /// Removes a committed snapshot.
    fn remove(&self, key: &str) -> Result<(), StoreError>;
}
