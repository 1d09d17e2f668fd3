//! Placing a tree into another (SPEC §2, rules 1–5), shared by `merge`,
//! `with_directory`, `with_file` and `copy`.

use std::collections::HashMap;

use super::resolve::{resolve, Found};
use super::{OpError, OpResult, Overrides};
use crate::tree::{InodeId, Kind, Meta, Node, NodeId, Tree};

/// How an entry meets what is already at its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflicts {
    /// The merge rule: any pair but directory-onto-directory replaces.
    Replace,
    /// `copy`: a file onto a directory or a directory onto a non-directory
    /// is an error, unless `replace_existing`.
    Copy {
        /// Replace instead of failing.
        replace_existing: bool,
    },
}

/// The rules of one placement.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Owner, mode, timestamp for every entry written.
    pub over: Overrides,
    /// Whether placed files may be hard-linked from their origin.
    pub link: bool,
    /// Type conflicts.
    pub conflicts: Conflicts,
    /// Placing a diff as a plain layer: its structural parents keep the
    /// metadata of a directory already there.
    pub structural_defers: bool,
}

/// One placement's state: the inode map that keeps hardlink groups of the
/// source together (and separate from every other placement).
pub struct Placer<'a> {
    /// The tree being written.
    pub dst: &'a mut Tree,
    /// The tree read.
    pub src: &'a Tree,
    /// The rules.
    pub rules: Rules,
    /// Source inode to placed inode: a source inode met again (a hardlink
    /// group, or the same group across wildcard matches) is the same file.
    pub inodes: HashMap<InodeId, InodeId>,
}

impl<'a> Placer<'a> {
    /// A placement of `src` into `dst`.
    pub fn new(dst: &'a mut Tree, src: &'a Tree, rules: Rules) -> Placer<'a> {
        Placer {
            dst,
            src,
            rules,
            inodes: HashMap::new(),
        }
    }

    /// Copies the subtree at `s` into `dst` (unattached), with overrides,
    /// link flag and no structural marks.
    pub fn import(&mut self, s: NodeId) -> NodeId {
        let first_new_inode = self.dst.inodes().len() as InodeId;
        let root = self.dst.import_subtree(self.src, s, &mut self.inodes);
        let mut todo = vec![root];
        while let Some(id) = todo.pop() {
            self.finish_node(id, first_new_inode);
            let kids: Vec<NodeId> = self.dst.children(id).map(|(_, c)| c).collect();
            todo.extend(kids);
        }
        root
    }

    /// Overrides, link flag and structural mark of one freshly imported node.
    fn finish_node(&mut self, id: NodeId, first_new_inode: InodeId) {
        let over = self.rules.over;
        let link = self.rules.link;
        let node = self.dst.node_mut(id);
        node.structural = false;
        let is_symlink = matches!(node.kind, Kind::Symlink(_));
        match node.kind {
            Kind::File(i) => {
                // An inode met again (hardlink group) was already finished.
                if i >= first_new_inode {
                    let inode = self.dst.inode_mut(i);
                    over.apply(&mut inode.meta, false);
                    inode.link &= link && !over.any();
                }
            }
            _ => over.apply(&mut node.meta, is_symlink),
        }
    }

    /// The metadata a placed directory brings onto an existing one.
    fn placed_dir_meta(&self, s: NodeId) -> Meta {
        let mut meta = self.src.meta(s).clone();
        self.rules.over.apply(&mut meta, false);
        meta
    }

    /// Places the entries of source directory `s` into destination directory
    /// `d` (rule 4): directories merge, the placed one's metadata winning;
    /// any other pair replaces, or for `copy` is a type conflict. `at` is
    /// `d`'s path, for messages. Iterative.
    pub fn merge_entries(&mut self, s: NodeId, d: NodeId, at: &[u8]) -> OpResult<()> {
        let mut stack: Vec<(NodeId, NodeId, Vec<u8>)> = vec![(s, d, at.to_vec())];
        while let Some((s, d, at)) = stack.pop() {
            let entries: Vec<(Vec<u8>, NodeId)> =
                self.src.children(s).map(|(n, c)| (n.to_vec(), c)).collect();
            for (name, sc) in entries {
                let mut path = at.clone();
                path.push(b'/');
                path.extend_from_slice(&name);
                let src_is_dir = self.src.node(sc).kind.is_dir();
                match self.dst.child(d, &name) {
                    Some(dc) if src_is_dir && self.dst.node(dc).kind.is_dir() => {
                        let defer = self.rules.structural_defers && self.src.node(sc).structural;
                        if !defer {
                            let meta = self.placed_dir_meta(sc);
                            *self.dst.meta_mut(dc) = meta;
                        }
                        stack.push((sc, dc, path));
                    }
                    Some(dc) => {
                        self.check_conflict(src_is_dir, dc, &path)?;
                        let nc = self.import(sc);
                        self.dst.attach(d, &name, nc);
                    }
                    None => {
                        let nc = self.import(sc);
                        self.dst.attach(d, &name, nc);
                    }
                }
            }
        }
        Ok(())
    }

    /// For `copy`: whether placing a (non-)directory onto `existing` is allowed.
    pub fn check_conflict(&self, src_is_dir: bool, existing: NodeId, path: &[u8]) -> OpResult<()> {
        let Conflicts::Copy { replace_existing } = self.rules.conflicts else {
            return Ok(());
        };
        if replace_existing {
            return Ok(());
        }
        let dst_is_dir = self.dst.node(existing).kind.is_dir();
        if dst_is_dir && !src_is_dir {
            return Err(OpError::at(path, "cannot replace directory with file"));
        }
        if src_is_dir && !dst_is_dir {
            let what = self.dst.node(existing).kind.type_name();
            return Err(OpError::at(
                path,
                format!("cannot replace {what} with directory"),
            ));
        }
        Ok(())
    }
}

/// Where a placement lands once its parents exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The root.
    Root,
    /// An existing entry.
    Entry {
        /// Its directory.
        parent: NodeId,
        /// Its name.
        name: Vec<u8>,
        /// The entry.
        node: NodeId,
    },
    /// A missing entry whose directory exists.
    Missing {
        /// Its directory.
        parent: NodeId,
        /// Its name.
        name: Vec<u8>,
    },
}

/// What to do about missing parents and parents that are not directories.
#[derive(Clone, Debug)]
pub enum Parents {
    /// Missing parents are an error ("no such file or directory").
    MustExist,
    /// Create missing parents with this metadata; a non-directory parent is
    /// an error.
    Create(Meta),
    /// Create missing parents, and replace a non-directory parent by a new
    /// directory, with this metadata (`with_directory`, `with_file`).
    CreateOrReplace(Meta),
}

/// Resolves `path` (final symlink followed when `follow_last`), creating or
/// replacing parents as `parents` says.
pub fn prepare(
    tree: &mut Tree,
    path: &[u8],
    follow_last: bool,
    parents: &Parents,
) -> OpResult<Slot> {
    // Each round creates one directory; a path's depth bounds the rounds.
    loop {
        match resolve(tree, path, follow_last)? {
            Found::Root => return Ok(Slot::Root),
            Found::Entry { parent, name, node } => return Ok(Slot::Entry { parent, name, node }),
            Found::Missing { parent, name } => return Ok(Slot::Missing { parent, name }),
            Found::MissingParents { dir, rest, .. } => {
                let meta = match parents {
                    Parents::MustExist => {
                        return Err(OpError::at(path, "parent directory does not exist"))
                    }
                    Parents::Create(m) | Parents::CreateOrReplace(m) => m.clone(),
                };
                let new = tree.add_node(Node::dir(meta));
                tree.attach(dir, &rest[0], new);
            }
            Found::NotDir { parent, name, .. } => match parents {
                Parents::CreateOrReplace(m) => {
                    let new = tree.add_node(Node::dir(m.clone()));
                    tree.attach(parent, &name, new);
                }
                _ => return Err(OpError::at(path, "not a directory (a parent is not one)")),
            },
        }
    }
}
