//! What every op does to trees (SPEC §2), on the in-memory [`Tree`] model.
//!
//! Nothing here touches the disk: an op takes its input trees (as committed
//! snapshots describe them) and computes its result tree, whose files point
//! at their origins; the snapshotter then materialises it. So the placing
//! rules, symlink resolution inside the root, wildcards and filters are all
//! plain functions, tested without a filesystem, and a destination can never
//! escape its tree: paths are resolved in the model, not on the host.
//!
//! One file per op kind; `resolve.rs` walks paths through symlinks inside a
//! tree's root, `place.rs` is the placing machinery shared by `merge`,
//! `with_directory`, `with_file` and `copy`.

pub mod copy;
pub mod diff;
pub mod file;
pub mod filter;
pub mod merge;
pub mod place;
pub mod resolve;
pub mod with_directory;
pub mod with_file;

use crate::tree::{Meta, Tree};

/// What an op needs to know besides its inputs.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// The mtime of entries created without a `timestamp`.
    pub epoch: i64,
    /// The owner of entries created without an `owner`: `0:0` as root, the
    /// running user otherwise.
    pub owner: (u32, u32),
}

impl Ctx {
    /// The context of the running process.
    pub fn current(epoch: i64) -> Ctx {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        Ctx {
            epoch,
            owner: if uid == 0 { (0, 0) } else { (uid, gid) },
        }
    }

    /// Metadata of a directory the op creates with default metadata.
    pub fn default_dir(&self) -> Meta {
        Meta {
            mode: 0o755,
            uid: self.owner.0,
            gid: self.owner.1,
            mtime: self.epoch,
            xattrs: Default::default(),
        }
    }
}

/// A failed op: the path inside the tree and what went wrong. The solver
/// adds the op's name and kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct OpError {
    /// The path the op failed on, from the tree's root.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

impl OpError {
    /// An error at a path (bytes, shown with `\xNN` escapes).
    pub fn at(path: &[u8], message: impl Into<String>) -> OpError {
        let shown = crate::tree::manifest::escape_bytes(path);
        let shown = crate::graph::error::printable(&shown).into_owned();
        OpError {
            path: if shown.starts_with('/') {
                shown
            } else {
                format!("/{shown}")
            },
            message: message.into(),
        }
    }
}

/// The result of an op, or why it failed.
pub type OpResult<T> = Result<T, OpError>;

/// Owner, mode and timestamp set by an op, applied to every entry it writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `(uid, gid)`.
    pub owner: Option<(u32, u32)>,
    /// Permission and special bits (never applied to symlinks).
    pub mode: Option<u32>,
    /// Mtime.
    pub mtime: Option<i64>,
}

impl Overrides {
    /// Whether any is set.
    pub fn any(&self) -> bool {
        self.owner.is_some() || self.mode.is_some() || self.mtime.is_some()
    }

    /// Applies them to one entry's metadata.
    pub fn apply(&self, meta: &mut Meta, is_symlink: bool) {
        if let Some((u, g)) = self.owner {
            meta.uid = u;
            meta.gid = g;
        }
        if let Some(m) = self.mode {
            if !is_symlink {
                meta.mode = m;
            }
        }
        if let Some(t) = self.mtime {
            meta.mtime = t;
        }
    }

    /// From an op's optional fields.
    pub fn from_fields(
        owner: Option<crate::graph::Owner>,
        mode: Option<crate::graph::Mode>,
        timestamp: Option<i64>,
    ) -> Overrides {
        Overrides {
            owner: owner.map(|o| (o.uid, o.gid)),
            mode: mode.map(|m| m.bits()),
            mtime: timestamp,
        }
    }
}

/// The tree an absent `base` stands for.
pub fn empty() -> Tree {
    Tree::new()
}
