//! `mkdir`, `mkfile`, `symlink` and `rm`: file actions on a tree, alone or
//! fused into one `file` op (applied in order, exactly as separate ops).

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::copy::wildcard_matches;
use super::place::{prepare, Parents, Slot};
use super::resolve::{resolve, Found};
use super::{Ctx, OpError, OpResult};
use crate::graph::{FileAction, Mkdir, Mkfile, Rm, Symlink};
use crate::tree::{Inode, Kind, Meta, Node, Origin, Tree};

/// Applies one file action to `tree`. A diff base is its exported tree:
/// the result is a plain tree, without the diff's deletions.
pub fn apply(tree: &mut Tree, action: &FileAction, ctx: &Ctx) -> OpResult<()> {
    tree.make_plain();
    match action {
        FileAction::Mkdir(a) => mkdir(tree, a, ctx),
        FileAction::Mkfile(a) => mkfile(tree, a, ctx),
        FileAction::Symlink(a) => symlink(tree, a, ctx),
        FileAction::Rm(a) => rm(tree, a),
    }
}

fn meta(mode: u32, owner: Option<crate::graph::Owner>, timestamp: Option<i64>, ctx: &Ctx) -> Meta {
    let (uid, gid) = owner.map(|o| (o.uid, o.gid)).unwrap_or(ctx.owner);
    Meta {
        mode,
        uid,
        gid,
        mtime: timestamp.unwrap_or(ctx.epoch),
        xattrs: Default::default(),
    }
}

/// `mkdir`: follows a final symlink; an existing directory is left as it is.
pub fn mkdir(tree: &mut Tree, a: &Mkdir, ctx: &Ctx) -> OpResult<()> {
    let m = meta(a.mode.bits(), a.owner, a.timestamp, ctx);
    let parents = if a.parents {
        Parents::Create(m.clone())
    } else {
        Parents::MustExist
    };
    match prepare(tree, a.path.as_bytes(), true, &parents)? {
        Slot::Root => Ok(()),
        Slot::Entry { node, .. } if tree.node(node).kind.is_dir() => Ok(()),
        Slot::Entry { node, .. } => Err(OpError::at(
            a.path.as_bytes(),
            format!(
                "exists and is a {}, not a directory",
                tree.node(node).kind.type_name()
            ),
        )),
        Slot::Missing { parent, name } => {
            let d = tree.add_node(Node::dir(m));
            tree.attach(parent, &name, d);
            Ok(())
        }
    }
}

/// `mkfile`: a new inode in place of whatever file was there.
pub fn mkfile(tree: &mut Tree, a: &Mkfile, ctx: &Ctx) -> OpResult<()> {
    let (parent, name) = match prepare(tree, a.path.as_bytes(), true, &Parents::MustExist)? {
        Slot::Root => return Err(OpError::at(b"/", "is a directory")),
        Slot::Entry { node, .. } if tree.node(node).kind.is_dir() => {
            return Err(OpError::at(
                a.path.as_bytes(),
                "is a directory: mkfile does not replace one",
            ))
        }
        Slot::Entry { parent, name, .. } | Slot::Missing { parent, name } => (parent, name),
    };
    let data = Arc::new(a.data.0.clone());
    let inode = Inode {
        meta: meta(a.mode.bits(), a.owner, a.timestamp, ctx),
        size: data.len() as u64,
        sha256: Sha256::digest(data.as_slice()).into(),
        origin: Origin::Data(data),
        link: false,
        phys: None,
    };
    let f = tree.add_file(inode);
    tree.attach(parent, &name, f);
    Ok(())
}

/// `symlink`: an existing path, a dangling symlink included, is an error.
pub fn symlink(tree: &mut Tree, a: &Symlink, ctx: &Ctx) -> OpResult<()> {
    match resolve(tree, a.path.as_bytes(), false)? {
        Found::Missing { parent, name } => {
            let mut m = meta(0o777, a.owner, a.timestamp, ctx);
            m.mode = 0o777;
            let l = tree.add_node(Node::other(Kind::Symlink(a.target.as_bytes().to_vec()), m));
            tree.attach(parent, &name, l);
            Ok(())
        }
        Found::Root | Found::Entry { .. } => Err(OpError::at(a.path.as_bytes(), "already exists")),
        Found::MissingParents { .. } => Err(OpError::at(
            a.path.as_bytes(),
            "parent directory does not exist",
        )),
        Found::NotDir { .. } => Err(OpError::at(
            a.path.as_bytes(),
            "not a directory (a parent is not one)",
        )),
    }
}

/// `rm`: removes the entry itself (never a symlink's target), recursively.
pub fn rm(tree: &mut Tree, a: &Rm) -> OpResult<()> {
    if a.allow_wildcard && a.path.split('/').any(crate::fs::pattern::has_wildcard) {
        let matches = wildcard_matches(tree, &a.path, false)?;
        // Deepest first, so a match inside another is removed before it.
        for (_, parent, name, _) in matches.into_iter().rev() {
            tree.detach(parent, &name);
        }
        return Ok(());
    }
    match resolve(tree, a.path.as_bytes(), false)? {
        Found::Entry { parent, name, .. } => {
            tree.detach(parent, &name);
            Ok(())
        }
        Found::Root => Err(OpError::at(b"/", "cannot remove the root")),
        // With allow_wildcard, zero matches (a missing path) is not an error.
        _ if a.allow_not_found || a.allow_wildcard => Ok(()),
        _ => Err(OpError::at(a.path.as_bytes(), "no such file or directory")),
    }
}
