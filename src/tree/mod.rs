//! The in-memory model of a filesystem tree: what a snapshot holds, and what
//! every op computes before anything is written to disk.
//!
//! A [`Tree`] is an arena of [`Node`]s (index 0 is the root directory) and of
//! [`Inode`]s: a regular file's node points at an inode, and two nodes
//! pointing at one inode are one hardlink group. A file's metadata lives on
//! its inode, as on disk. Every inode knows its [`Origin`]: where its bytes
//! can be found (a committed snapshot's file, a host file, or data in
//! memory), so that materialising a tree links or copies from there.
//!
//! Invariants:
//! - the tree knows nothing of where it will be written; paths are bytes,
//!   names never hold `/` and are never `.` or `..`;
//! - walks are iterative (a 100,000-level deep tree is fine), and dropping a
//!   tree is flat (nodes refer to each other by index, never by `Box`);
//! - the root carries no metadata: it is not in the manifest.

pub mod manifest;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The index of a node in a [`Tree`].
pub type NodeId = u32;
/// The index of an inode in a [`Tree`].
pub type InodeId = u32;

/// Metadata of a directory, symlink, special file, or a file's inode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Permission bits plus setuid/setgid/sticky (`0o7777` at most).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, whole seconds.
    pub mtime: i64,
    /// Extended attributes, by name.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory and its entries, by name.
    Dir(BTreeMap<Vec<u8>, NodeId>),
    /// A regular file: one name of an inode.
    File(InodeId),
    /// A symbolic link and its target, as written.
    Symlink(Vec<u8>),
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device.
    Char(u64),
    /// A block device.
    Block(u64),
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Its metadata (unused for files: their inode holds it).
    pub meta: Meta,
    /// In a diff: a directory that is there only as the parent of a change.
    /// Merged, it keeps the metadata already there.
    pub structural: bool,
}

/// Where an inode's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A file of a committed snapshot: the file at `path` under `root`.
    Stored {
        /// The snapshot's tree folder.
        root: Arc<PathBuf>,
        /// The file's path below it.
        path: Vec<u8>,
    },
    /// A host file (a `local` source), copied, never linked: the file at
    /// `path` under the scanned folder `root`.
    Host {
        /// The scanned folder (absolute).
        root: Arc<PathBuf>,
        /// The file's path below it.
        path: Vec<u8>,
    },
    /// Bytes in memory (`mkfile`).
    Data(Arc<Vec<u8>>),
}

/// A regular file's inode: its metadata, content and origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Mode, owner, mtime and xattrs.
    pub meta: Meta,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content.
    pub sha256: [u8; 32],
    /// Where the bytes are.
    pub origin: Origin,
    /// Whether materialising may hard-link it from its origin (`Stored` only).
    pub link: bool,
    /// `(st_dev, st_ino)` of the stored file, when known: two inodes of one
    /// tree never materialise as links to the same physical file.
    pub phys: Option<(u64, u64)>,
}

/// A filesystem tree in memory.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: Vec<Node>,
    inodes: Vec<Inode>,
    /// For a diff: paths (from the root, no leading `/`) that `lower` has and
    /// `upper` lacks, each the top of a deleted subtree.
    pub deletions: Vec<Vec<u8>>,
    /// Whether this tree is a diff (its deletions apply where it is a plain
    /// merge layer, and its structural parents defer to what is there).
    pub is_diff: bool,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree::new()
    }
}

/// The file type names of the manifest.
impl Kind {
    /// `file`, `dir`, `symlink`, `fifo`, `char`, `block` or `socket`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Dir(_) => "dir",
            Kind::File(_) => "file",
            Kind::Symlink(_) => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::Char(_) => "char",
            Kind::Block(_) => "block",
        }
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self, Kind::Dir(_))
    }
}

impl Node {
    /// A directory with no entries.
    pub fn dir(meta: Meta) -> Node {
        Node {
            kind: Kind::Dir(BTreeMap::new()),
            meta,
            structural: false,
        }
    }

    /// A node of a kind other than a directory or file.
    pub fn other(kind: Kind, meta: Meta) -> Node {
        Node {
            kind,
            meta,
            structural: false,
        }
    }
}

impl Tree {
    /// The root's id.
    pub const ROOT: NodeId = 0;

    /// An empty tree: a root directory with no entries.
    pub fn new() -> Tree {
        Tree {
            nodes: vec![Node::dir(Meta {
                mode: 0o755,
                ..Meta::default()
            })],
            inodes: Vec::new(),
            deletions: Vec::new(),
            is_diff: false,
        }
    }

    /// An empty tree sharing this one's inode table (same ids), for views
    /// of it (filters) that keep inode identities.
    pub fn clone_inodes_only(&self) -> Tree {
        let mut t = Tree::new();
        t.inodes = self.inodes.clone();
        t.is_diff = self.is_diff;
        t
    }

    /// The tree as a plain tree: a diff used anywhere but as a plain merge
    /// layer is just its exported tree (no deletions, no structural marks).
    pub fn make_plain(&mut self) {
        if self.is_diff {
            self.is_diff = false;
            self.deletions.clear();
            for n in &mut self.nodes {
                n.structural = false;
            }
        }
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// A node, to change it.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    /// An inode.
    pub fn inode(&self, id: InodeId) -> &Inode {
        &self.inodes[id as usize]
    }

    /// An inode, to change it (every name of it sees the change).
    pub fn inode_mut(&mut self, id: InodeId) -> &mut Inode {
        &mut self.inodes[id as usize]
    }

    /// Every inode slot (some may no longer be named by any node).
    pub fn inodes(&self) -> &[Inode] {
        &self.inodes
    }

    /// The metadata of a node (a file's is its inode's).
    pub fn meta(&self, id: NodeId) -> &Meta {
        match self.node(id).kind {
            Kind::File(i) => &self.inode(i).meta,
            _ => &self.node(id).meta,
        }
    }

    /// The metadata of a node, to change it (a file's inode: every name of
    /// the hardlink group sees it).
    pub fn meta_mut(&mut self, id: NodeId) -> &mut Meta {
        match self.node(id).kind {
            Kind::File(i) => &mut self.inode_mut(i).meta,
            _ => &mut self.node_mut(id).meta,
        }
    }

    /// Makes room for `nodes` more nodes and `inodes` more inodes (a hint:
    /// a tree grows as needed).
    pub fn reserve(&mut self, nodes: usize, inodes: usize) {
        self.nodes.reserve(nodes);
        self.inodes.reserve(inodes);
    }

    /// Adds a node, not yet attached anywhere.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    /// Adds an inode, not yet named.
    pub fn add_inode(&mut self, inode: Inode) -> InodeId {
        self.inodes.push(inode);
        (self.inodes.len() - 1) as InodeId
    }

    /// Adds a file node naming a new inode.
    pub fn add_file(&mut self, inode: Inode) -> NodeId {
        let i = self.add_inode(inode);
        self.add_node(Node::other(Kind::File(i), Meta::default()))
    }

    /// A directory's entry by name.
    pub fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        match &self.node(dir).kind {
            Kind::Dir(entries) => entries.get(name).copied(),
            _ => None,
        }
    }

    /// A directory's entries, in name order (empty for a non-directory).
    pub fn children(&self, dir: NodeId) -> impl Iterator<Item = (&[u8], NodeId)> + '_ {
        let entries = match &self.node(dir).kind {
            Kind::Dir(entries) => Some(entries),
            _ => None,
        };
        entries
            .into_iter()
            .flat_map(|e| e.iter().map(|(k, v)| (k.as_slice(), *v)))
    }

    /// Puts `node` in directory `dir` under `name`, returning what it
    /// replaced. Panics if `dir` is not a directory (a bug in the caller).
    pub fn attach(&mut self, dir: NodeId, name: &[u8], node: NodeId) -> Option<NodeId> {
        debug_assert!(!name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/'));
        match &mut self.node_mut(dir).kind {
            Kind::Dir(entries) => entries.insert(name.to_vec(), node),
            _ => panic!("attach into a non-directory"),
        }
    }

    /// Takes entry `name` out of directory `dir` (with its subtree).
    pub fn detach(&mut self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        match &mut self.node_mut(dir).kind {
            Kind::Dir(entries) => entries.remove(name),
            _ => None,
        }
    }

    /// The node at a path of names from the root, following nothing.
    pub fn lookup(&self, path: &[u8]) -> Option<NodeId> {
        let mut at = Tree::ROOT;
        for name in split_path(path) {
            at = self.child(at, name)?;
        }
        Some(at)
    }

    /// Copies the subtree of `src` at `from` into this tree, unattached, and
    /// returns its new root. Inodes are mapped through `inodes`: a source
    /// inode met twice (a hardlink group) becomes one new inode, so groups
    /// within one placement are kept and groups of separate placements are
    /// separate files.
    pub fn import_subtree(
        &mut self,
        src: &Tree,
        from: NodeId,
        inodes: &mut std::collections::HashMap<InodeId, InodeId>,
    ) -> NodeId {
        let new_root = self.import_node(src, from, inodes);
        let mut stack = vec![(from, new_root)];
        while let Some((s, d)) = stack.pop() {
            let names: Vec<(Vec<u8>, NodeId)> =
                src.children(s).map(|(n, c)| (n.to_vec(), c)).collect();
            for (name, c) in names {
                let nc = self.import_node(src, c, inodes);
                self.attach(d, &name, nc);
                if src.node(c).kind.is_dir() {
                    stack.push((c, nc));
                }
            }
        }
        new_root
    }

    /// Copies one node (a directory without its entries).
    fn import_node(
        &mut self,
        src: &Tree,
        id: NodeId,
        inodes: &mut std::collections::HashMap<InodeId, InodeId>,
    ) -> NodeId {
        let node = src.node(id);
        match &node.kind {
            Kind::Dir(_) => self.add_node(Node {
                kind: Kind::Dir(BTreeMap::new()),
                meta: node.meta.clone(),
                structural: node.structural,
            }),
            Kind::File(i) => {
                let ni = *inodes.entry(*i).or_insert_with(|| {
                    self.inodes.push(src.inode(*i).clone());
                    (self.inodes.len() - 1) as InodeId
                });
                self.add_node(Node::other(Kind::File(ni), Meta::default()))
            }
            other => self.add_node(Node::other(other.clone(), node.meta.clone())),
        }
    }

    /// Every entry below `from` (not `from` itself) with its path relative to
    /// `from`, in depth-first order, parents before children. Iterative.
    pub fn walk(&self, from: NodeId) -> Vec<(Vec<u8>, NodeId)> {
        let mut out = Vec::new();
        let mut stack: Vec<(Vec<u8>, NodeId)> = vec![(Vec::new(), from)];
        while let Some((path, id)) = stack.pop() {
            let first = out.len();
            for (name, c) in self.children(id) {
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(name);
                out.push((p, c));
            }
            // Children of this directory are pushed in reverse, so they are
            // visited in name order.
            for (p, c) in out[first..].iter().rev() {
                if self.node(*c).kind.is_dir() {
                    stack.push((p.clone(), *c));
                }
            }
        }
        out
    }

    /// Number of entries below the root.
    pub fn len(&self) -> usize {
        self.walk(Tree::ROOT).len()
    }

    /// Whether the root has no entries.
    pub fn is_empty(&self) -> bool {
        self.children(Tree::ROOT).next().is_none()
    }
}

/// The names of a path (`a/b/c`, leading and doubled `/` ignored).
pub fn split_path(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}
