//! The canonical manifest of a tree and its digest (SPEC §6), and the
//! record a snapshot keeps of its tree.
//!
//! Two trees are equal exactly when their manifests are: same paths, and for
//! each the type, permission bits, owner, mtime, content, symlink target,
//! device number, xattrs and hardlink grouping.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{split_path, Inode, InodeId, Kind, Meta, Node, NodeId, Origin, Tree};

/// One manifest entry, its fields in the order SPEC §6 gives (the digest
/// hashes them in that order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path from the root, no leading `/`; non-UTF-8 bytes as `\xNN`.
    pub path: String,
    /// `file`, `dir`, `symlink`, `fifo`, `char`, `block` or `socket`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Permission bits, four octal digits.
    pub mode: String,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Files: size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Files: hex sha256 of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlinks: the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Devices: the device number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Extended attributes: name to base64 value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<BTreeMap<String, String>>,
    /// Files: the first path of the hardlink group, when not this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Writes bytes as UTF-8, with `\xNN` for every byte that is not part of
/// valid UTF-8.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Every entry of a tree with its path, sorted by path bytes.
pub fn sorted_entries(tree: &Tree) -> Vec<(Vec<u8>, NodeId)> {
    let mut all = tree.walk(Tree::ROOT);
    all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    all
}

fn meta_fields(meta: &Meta) -> (String, Option<BTreeMap<String, String>>) {
    let xattrs = (!meta.xattrs.is_empty()).then(|| {
        meta.xattrs
            .iter()
            .map(|(k, v)| (escape_bytes(k), b64(v)))
            .collect()
    });
    (format!("{:04o}", meta.mode & 0o7777), xattrs)
}

/// The manifest of a tree (root excluded, sorted by path bytes). Entries
/// are built in parallel.
pub fn manifest(tree: &Tree) -> Vec<Entry> {
    manifest_of(tree, &sorted_entries(tree))
}

/// The first name (in path order, an index into `entries`) of each inode:
/// later names link to it.
fn first_names(tree: &Tree, entries: &[(Vec<u8>, NodeId)]) -> Vec<usize> {
    let mut first_name = vec![usize::MAX; tree.inodes().len()];
    for (k, (_, id)) in entries.iter().enumerate() {
        if let Kind::File(i) = tree.node(*id).kind {
            if first_name[i as usize] == usize::MAX {
                first_name[i as usize] = k;
            }
        }
    }
    first_name
}

/// The manifest entry of `entries[k]`.
fn entry_at(tree: &Tree, entries: &[(Vec<u8>, NodeId)], first_name: &[usize], k: usize) -> Entry {
    let (path, id) = &entries[k];
    let node = tree.node(*id);
    let meta = tree.meta(*id);
    let (mode, xattrs) = meta_fields(meta);
    let mut e = Entry {
        path: escape_bytes(path),
        kind: node.kind.type_name().to_string(),
        mode,
        uid: meta.uid,
        gid: meta.gid,
        mtime: meta.mtime,
        size: None,
        sha256: None,
        target: None,
        rdev: None,
        xattrs,
        link: None,
    };
    match &node.kind {
        Kind::File(i) => {
            let inode = tree.inode(*i);
            e.size = Some(inode.size);
            e.sha256 = Some(hex::encode(inode.sha256));
            let first = first_name[*i as usize];
            if first != k {
                e.link = Some(escape_bytes(&entries[first].0));
            }
        }
        Kind::Symlink(t) => e.target = Some(escape_bytes(t)),
        Kind::Char(r) | Kind::Block(r) => e.rdev = Some(*r),
        _ => {}
    }
    e
}

/// The manifest of `entries` (from [`sorted_entries`]).
fn manifest_of(tree: &Tree, entries: &[(Vec<u8>, NodeId)]) -> Vec<Entry> {
    use rayon::prelude::*;
    let first_name = first_names(tree, entries);
    (0..entries.len())
        .into_par_iter()
        .map(|k| entry_at(tree, entries, &first_name, k))
        .collect()
}

/// Entries serialised per chunk by [`digest_of`] and [`tree_digest`].
const DIGEST_CHUNK: usize = 2048;

/// Hashes chunks of serialised entries (each chunk a JSON array) as one
/// array: `[`, their items joined by `,`, `]`.
fn hash_chunks(h: &mut Sha256, parts: &[Vec<u8>], first: &mut bool) {
    for part in parts {
        let items = &part[1..part.len() - 1];
        if items.is_empty() {
            continue;
        }
        if !std::mem::take(first) {
            h.update(b",");
        }
        h.update(items);
    }
}

/// The digest of a manifest: `sha256:` and the hex sha256 of the array
/// serialised without spaces, fields in manifest order. Chunks of entries
/// are serialised in parallel and hashed in order.
pub fn digest_of(entries: &[Entry]) -> String {
    use rayon::prelude::*;
    let parts: Vec<Vec<u8>> = entries
        .par_chunks(DIGEST_CHUNK)
        .map(|chunk| serde_json::to_vec(chunk).expect("serialise"))
        .collect();
    let mut h = Sha256::new();
    h.update(b"[");
    hash_chunks(&mut h, &parts, &mut true);
    h.update(b"]");
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The tree digest of a tree: [`digest_of`] its [`manifest`], without
/// holding the manifest. Entries are made and serialised chunk by chunk in
/// parallel, a few chunks per thread at a time, and hashed in order, so
/// memory stays small whatever the size of the tree.
pub fn tree_digest(tree: &Tree) -> String {
    use rayon::prelude::*;
    let entries = sorted_entries(tree);
    let first_name = first_names(tree, &entries);
    let chunks: Vec<std::ops::Range<usize>> = (0..entries.len())
        .step_by(DIGEST_CHUNK)
        .map(|start| start..(start + DIGEST_CHUNK).min(entries.len()))
        .collect();
    let round = 4 * rayon::current_num_threads();
    let mut h = Sha256::new();
    h.update(b"[");
    let mut first = true;
    for group in chunks.chunks(round) {
        let parts: Vec<Vec<u8>> = group
            .par_iter()
            .map(|range| {
                let mut out = Vec::with_capacity(range.len() * 256);
                let mut seq = serde_json::Serializer::new(&mut out);
                use serde::ser::{SerializeSeq as _, Serializer as _};
                let mut seq = (&mut seq)
                    .serialize_seq(Some(range.len()))
                    .expect("serialise");
                for k in range.clone() {
                    seq.serialize_element(&entry_at(tree, &entries, &first_name, k))
                        .expect("serialise");
                }
                seq.end().expect("serialise");
                out
            })
            .collect();
        hash_chunks(&mut h, &parts, &mut first);
    }
    h.update(b"]");
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// A sha256 of everything a tree's manifest holds, in a binary encoding
/// that is cheap to make: equal fingerprints mean equal manifests, so a
/// digest computed once can be found again by fingerprint (the stat cache
/// keeps a source's last one: an unchanged rebuild skips the manifest).
///
/// The encoding lists the entries of each directory (the root first, then
/// every directory in depth-first order, children in name order), each
/// block ended by a mark, and gives for each entry its depth and name, its
/// type, mode, owner, mtime and xattrs, and a file's size, sha256 and
/// hardlink group (the ordinal of its inode's first name in the walk), a
/// symlink's target or a device's number; every variable-length part is
/// length-prefixed. It encodes at least what [`manifest`] shows.
pub fn fingerprint(tree: &Tree) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"hardmerge tree fingerprint 1\0");
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let bytes = |buf: &mut Vec<u8>, b: &[u8]| {
        buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
        buf.extend_from_slice(b);
    };
    let mut group: HashMap<InodeId, u64> = HashMap::new();
    let mut stack: Vec<(NodeId, u32)> = vec![(Tree::ROOT, 0)];
    let mut children: Vec<NodeId> = Vec::new();
    while let Some((dir, depth)) = stack.pop() {
        children.clear();
        for (name, id) in tree.children(dir) {
            let node = tree.node(id);
            let meta = tree.meta(id);
            buf.extend_from_slice(&(depth + 1).to_le_bytes());
            bytes(&mut buf, name);
            let tag: u8 = match &node.kind {
                Kind::Dir(_) => 0,
                Kind::File(_) => 1,
                Kind::Symlink(_) => 2,
                Kind::Fifo => 3,
                Kind::Socket => 4,
                Kind::Char(_) => 5,
                Kind::Block(_) => 6,
            };
            buf.push(tag);
            buf.extend_from_slice(&meta.mode.to_le_bytes());
            buf.extend_from_slice(&meta.uid.to_le_bytes());
            buf.extend_from_slice(&meta.gid.to_le_bytes());
            buf.extend_from_slice(&meta.mtime.to_le_bytes());
            buf.extend_from_slice(&(meta.xattrs.len() as u64).to_le_bytes());
            for (k, v) in &meta.xattrs {
                bytes(&mut buf, k);
                bytes(&mut buf, v);
            }
            match &node.kind {
                Kind::Dir(_) => children.push(id),
                Kind::File(i) => {
                    let inode = tree.inode(*i);
                    buf.extend_from_slice(&inode.size.to_le_bytes());
                    buf.extend_from_slice(&inode.sha256);
                    let next = group.len() as u64;
                    let g = *group.entry(*i).or_insert(next);
                    buf.extend_from_slice(&g.to_le_bytes());
                }
                Kind::Symlink(t) => bytes(&mut buf, t),
                Kind::Char(r) | Kind::Block(r) => buf.extend_from_slice(&r.to_le_bytes()),
                Kind::Fifo | Kind::Socket => {}
            }
            if buf.len() >= 60 * 1024 {
                h.update(&buf);
                buf.clear();
            }
        }
        // Depth 0 ends the directory's entries (an empty directory is just
        // this mark): with it the sequence of blocks has one reading.
        buf.extend_from_slice(&0u32.to_le_bytes());
        // Its subdirectories are listed next, in name order.
        stack.extend(children.iter().rev().map(|&c| (c, depth + 1)));
    }
    h.update(&buf);
    h.finalize().into()
}

/// What a snapshot records of its tree: enough to rebuild the [`Tree`]
/// (with every file's origin in the snapshot) without reading the disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The tree digest at commit.
    pub digest: String,
    /// Whether the tree is a diff.
    #[serde(default)]
    pub is_diff: bool,
    /// A diff's deletions (base64 of the path bytes).
    #[serde(default)]
    pub deletions: Vec<String>,
    /// The entries.
    pub entries: Vec<RecordEntry>,
}

/// One entry of a [`Record`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    /// The manifest entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// The exact path bytes, when `entry.path` had to escape some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_path: Option<String>,
    /// The exact symlink target bytes, when escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_target: Option<String>,
    /// The exact xattr names, when some were escaped (base64 name to base64 value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_xattrs: Option<BTreeMap<String, String>>,
    /// A diff's structural parent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub structural: bool,
    /// Files: `[st_dev, st_ino]` of the stored file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phys: Option<(u64, u64)>,
}

/// The record of a tree, as it is stored (its files at their paths).
pub fn record(tree: &Tree) -> Record {
    record_parts(tree).finish(tree)
}

/// A record with everything but the files' `phys`, which [`PartialRecord::finish`]
/// takes from the tree: the bulk of a record (manifest, digest) can be made
/// while the tree is being materialised, which only sets `phys` (and the
/// content of files copied from the host).
pub struct PartialRecord {
    rec: Record,
    ids: Vec<NodeId>,
}

impl PartialRecord {
    /// The record, each file's `phys` read from `tree` now.
    pub fn finish(mut self, tree: &Tree) -> Record {
        self.fill_phys(tree);
        self.rec
    }

    /// Sets each file's `phys` to what `tree` says now.
    pub fn fill_phys(&mut self, tree: &Tree) {
        for (entry, id) in self.rec.entries.iter_mut().zip(&self.ids) {
            if let Kind::File(i) = tree.node(*id).kind {
                entry.phys = tree.inode(i).phys;
            }
        }
    }

    /// Whether every file's `phys` is what `tree` says now.
    pub fn phys_matches(&self, tree: &Tree) -> bool {
        self.rec
            .entries
            .iter()
            .zip(&self.ids)
            .all(|(entry, id)| match tree.node(*id).kind {
                Kind::File(i) => entry.phys == tree.inode(i).phys,
                _ => true,
            })
    }

    /// The record as it stands.
    pub fn record(&self) -> &Record {
        &self.rec
    }
}

/// [`record`] without the files' `phys`.
pub fn record_parts(tree: &Tree) -> PartialRecord {
    let entries = sorted_entries(tree);
    let manifest = manifest_of(tree, &entries);
    let digest = digest_of(&manifest);
    let records = manifest
        .into_iter()
        .zip(&entries)
        .map(|(entry, (path, id))| {
            let node = tree.node(*id);
            let meta = tree.meta(*id);
            let raw_path = std::str::from_utf8(path).is_err().then(|| b64(path));
            let raw_target = match &node.kind {
                Kind::Symlink(t) if std::str::from_utf8(t).is_err() => Some(b64(t)),
                _ => None,
            };
            let raw_xattrs = meta
                .xattrs
                .keys()
                .any(|k| std::str::from_utf8(k).is_err())
                .then(|| meta.xattrs.iter().map(|(k, v)| (b64(k), b64(v))).collect());
            RecordEntry {
                entry,
                raw_path,
                raw_target,
                raw_xattrs,
                structural: node.structural,
                phys: None,
            }
        })
        .collect();
    PartialRecord {
        rec: Record {
            digest,
            is_diff: tree.is_diff,
            deletions: tree.deletions.iter().map(|d| b64(d)).collect(),
            entries: records,
        },
        ids: entries.into_iter().map(|(_, id)| id).collect(),
    }
}

/// Why a record cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("damaged snapshot record: {0}")]
pub struct RecordError(pub String);

/// Gives a tree scanned from a snapshot's folder the directory modes its
/// record gives, where the folder holds the mode the store writes for them
/// (see [`crate::fs::materialize::write_stored_tree`]: a store written by a
/// user other than root adds `u+rwx`). Any other difference is left for
/// the digest to show.
pub fn undo_stored_dir_modes(tree: &mut Tree, rec: &Record) {
    let mut recorded: HashMap<Vec<u8>, u32> = HashMap::new();
    for r in &rec.entries {
        if r.entry.kind != "dir" {
            continue;
        }
        let path = match &r.raw_path {
            Some(p) => match unb64(p) {
                Some(p) => p,
                None => continue,
            },
            None => r.entry.path.as_bytes().to_vec(),
        };
        if let Ok(mode) = u32::from_str_radix(&r.entry.mode, 8) {
            recorded.insert(path, mode);
        }
    }
    for (path, id) in tree.walk(Tree::ROOT) {
        if !tree.node(id).kind.is_dir() {
            continue;
        }
        if let Some(&mode) = recorded.get(&path) {
            let meta = tree.meta_mut(id);
            if meta.mode != mode
                && meta.mode == crate::fs::materialize::stored_dir_mode(mode, false)
            {
                meta.mode = mode;
            }
        }
    }
}

/// Rebuilds the tree of a record whose files are stored under `root`.
pub fn tree_from_record(rec: &Record, root: &Arc<PathBuf>) -> Result<Tree, RecordError> {
    let bad = |m: String| RecordError(m);
    let mut tree = Tree::new();
    tree.is_diff = rec.is_diff;
    for d in &rec.deletions {
        tree.deletions
            .push(unb64(d).ok_or_else(|| bad(format!("deletion {d:?}")))?);
    }
    let mut by_path: HashMap<String, InodeId> = HashMap::new();
    for r in &rec.entries {
        let e = &r.entry;
        let path = match &r.raw_path {
            Some(p) => unb64(p).ok_or_else(|| bad(format!("path {p:?}")))?,
            None => e.path.as_bytes().to_vec(),
        };
        let mode =
            u32::from_str_radix(&e.mode, 8).map_err(|_| bad(format!("mode {:?}", e.mode)))?;
        let mut xattrs = BTreeMap::new();
        match &r.raw_xattrs {
            Some(raw) => {
                for (k, v) in raw {
                    let k = unb64(k).ok_or_else(|| bad("xattr name".into()))?;
                    let v = unb64(v).ok_or_else(|| bad("xattr value".into()))?;
                    xattrs.insert(k, v);
                }
            }
            None => {
                for (k, v) in e.xattrs.iter().flatten() {
                    let v = unb64(v).ok_or_else(|| bad("xattr value".into()))?;
                    xattrs.insert(k.as_bytes().to_vec(), v);
                }
            }
        }
        let meta = Meta {
            mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            xattrs,
        };
        let (parent_path, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        let parent = tree
            .lookup(parent_path)
            .filter(|p| tree.node(*p).kind.is_dir())
            .ok_or_else(|| bad(format!("{} has no parent directory", e.path)))?;
        if name.is_empty() || split_path(name).count() != 1 {
            return Err(bad(format!("bad name in {}", e.path)));
        }
        let id = match e.kind.as_str() {
            "dir" => tree.add_node(Node::dir(meta)),
            "file" => {
                let linked = e
                    .link
                    .as_ref()
                    .and_then(|first| by_path.get(first.as_str()).copied());
                let inode = match linked {
                    Some(i) => i,
                    None => {
                        let sha = e
                            .sha256
                            .as_deref()
                            .and_then(|h| hex::decode(h).ok())
                            .and_then(|v| <[u8; 32]>::try_from(v).ok())
                            .ok_or_else(|| bad(format!("sha256 of {}", e.path)))?;
                        tree.add_inode(Inode {
                            meta,
                            size: e.size.unwrap_or(0),
                            sha256: sha,
                            origin: Origin::Stored {
                                root: root.clone(),
                                path: path.clone(),
                            },
                            link: true,
                            phys: r.phys,
                        })
                    }
                };
                by_path.insert(e.path.clone(), inode);
                tree.add_node(Node::other(Kind::File(inode), Meta::default()))
            }
            "symlink" => {
                let target = match &r.raw_target {
                    Some(t) => unb64(t).ok_or_else(|| bad("target".into()))?,
                    None => e.target.clone().unwrap_or_default().into_bytes(),
                };
                tree.add_node(Node::other(Kind::Symlink(target), meta))
            }
            "fifo" => tree.add_node(Node::other(Kind::Fifo, meta)),
            "socket" => tree.add_node(Node::other(Kind::Socket, meta)),
            "char" => tree.add_node(Node::other(Kind::Char(e.rdev.unwrap_or(0)), meta)),
            "block" => tree.add_node(Node::other(Kind::Block(e.rdev.unwrap_or(0)), meta)),
            other => return Err(bad(format!("type {other:?}"))),
        };
        tree.node_mut(id).structural = r.structural;
        tree.attach(parent, name, id);
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of `dirs` directories of `files` files each, with xattrs, a
    /// symlink, a device, non-UTF-8 names, and hardlink groups whose names
    /// lie thousands of entries apart (so in different digest chunks).
    fn sample(dirs: usize, files: usize) -> Tree {
        let mut tree = Tree::new();
        let mut groups: Vec<InodeId> = Vec::new();
        for d in 0..dirs {
            let meta = Meta {
                mode: 0o755,
                mtime: d as i64,
                ..Meta::default()
            };
            let dir = tree.add_node(Node::dir(meta));
            tree.attach(Tree::ROOT, format!("d{d:03}").as_bytes(), dir);
            for f in 0..files {
                let inode = match (f % 7, groups.get(f)) {
                    (0, Some(&i)) => i,
                    _ => {
                        let mut meta = Meta {
                            mode: 0o644,
                            uid: f as u32,
                            ..Meta::default()
                        };
                        if f % 5 == 0 {
                            meta.xattrs.insert(b"user.\xffk".to_vec(), vec![f as u8, 0]);
                        }
                        let i = tree.add_inode(Inode {
                            meta,
                            size: f as u64,
                            sha256: [(f % 251) as u8; 32],
                            origin: Origin::Data(Arc::new(Vec::new())),
                            link: false,
                            phys: None,
                        });
                        if d == 0 {
                            groups.push(i);
                        }
                        i
                    }
                };
                let node = tree.add_node(Node::other(Kind::File(inode), Meta::default()));
                tree.attach(dir, format!("f{f:04}\u{e9}").as_bytes(), node);
            }
            let link = tree.add_node(Node::other(
                Kind::Symlink(b"../\xfe".to_vec()),
                Meta::default(),
            ));
            tree.attach(dir, b"ln\xff", link);
            let dev = tree.add_node(Node::other(Kind::Char(259), Meta::default()));
            tree.attach(dir, b"dev", dev);
        }
        tree
    }

    /// Every change a manifest shows changes the fingerprint, and so do
    /// changes of shape that keep the same entries in a different place;
    /// the same tree built again has the same fingerprint.
    #[test]
    fn fingerprints_tell_trees_apart() {
        let base = sample(3, 20);
        assert_eq!(fingerprint(&base), fingerprint(&sample(3, 20)));
        let file = |t: &Tree, path: &[u8]| match t.node(t.lookup(path).unwrap()).kind {
            Kind::File(i) => i,
            ref k => panic!("{k:?}"),
        };
        type Change = Box<dyn Fn(&mut Tree)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "mode",
                Box::new(|t| t.meta_mut(t.lookup(b"d001").unwrap()).mode = 0o700),
            ),
            (
                "uid",
                Box::new(move |t| t.inode_mut(file(t, "d001/f0003\u{e9}".as_bytes())).meta.uid = 9),
            ),
            (
                "gid",
                Box::new(move |t| t.inode_mut(file(t, "d001/f0003\u{e9}".as_bytes())).meta.gid = 9),
            ),
            (
                "mtime",
                Box::new(|t| t.meta_mut(t.lookup(b"d002/ln\xff").unwrap()).mtime = 5),
            ),
            (
                "xattr value",
                Box::new(move |t| {
                    t.inode_mut(file(t, "d000/f0005\u{e9}".as_bytes()))
                        .meta
                        .xattrs
                        .insert(b"user.\xffk".to_vec(), vec![1]);
                }),
            ),
            (
                "xattr name",
                Box::new(|t| {
                    t.meta_mut(t.lookup(b"d000").unwrap())
                        .xattrs
                        .insert(b"user.x".to_vec(), Vec::new());
                }),
            ),
            (
                "size",
                Box::new(move |t| t.inode_mut(file(t, "d002/f0001\u{e9}".as_bytes())).size += 1),
            ),
            (
                "content",
                Box::new(move |t| {
                    t.inode_mut(file(t, "d002/f0001\u{e9}".as_bytes())).sha256[31] ^= 1
                }),
            ),
            (
                "target",
                Box::new(|t| {
                    let id = t.lookup(b"d000/ln\xff").unwrap();
                    t.node_mut(id).kind = Kind::Symlink(b"../\xfd".to_vec());
                }),
            ),
            (
                "rdev",
                Box::new(|t| {
                    let id = t.lookup(b"d000/dev").unwrap();
                    t.node_mut(id).kind = Kind::Block(259);
                }),
            ),
            (
                "rename",
                Box::new(|t| {
                    let id = t.lookup(b"d001/dev").unwrap();
                    let d = t.lookup(b"d001").unwrap();
                    t.detach(d, b"dev");
                    t.attach(d, b"dew", id);
                }),
            ),
            (
                "move to a sibling folder",
                Box::new(|t| {
                    // an empty folder before the one that loses its entry: the
                    // same blocks of entries, split at another place
                    let empty = t.add_node(Node::dir(Meta::default()));
                    t.attach(Tree::ROOT, b"c", empty);
                    let d = t.lookup(b"d000").unwrap();
                    let id = t.lookup(b"d000/dev").unwrap();
                    t.detach(d, b"dev");
                    t.attach(empty, b"dev", id);
                }),
            ),
            (
                "split a hardlink group",
                Box::new(move |t| {
                    let i = file(t, "d001/f0000\u{e9}".as_bytes());
                    let copy = t.inode(i).clone();
                    let j = t.add_inode(copy);
                    let id = t.lookup("d001/f0000\u{e9}".as_bytes()).unwrap();
                    t.node_mut(id).kind = Kind::File(j);
                }),
            ),
        ];
        let mut seen = std::collections::HashMap::new();
        seen.insert(fingerprint(&base), "base");
        for (what, change) in &changes {
            let mut t = sample(3, 20);
            change(&mut t);
            let digest_changed = tree_digest(&t) != tree_digest(&base);
            let fp = fingerprint(&t);
            if let Some(other) = seen.insert(fp, what) {
                panic!("{what} has the fingerprint of {other}");
            }
            // the fingerprint tells apart at least what the digest does
            assert!(digest_changed, "{what} is not a change of the manifest");
        }
        // two empty folders and one with an entry, against the entry in
        // the other folder: the end marks keep them apart
        let shape = |first: bool| {
            let mut t = Tree::new();
            let a = t.add_node(Node::dir(Meta::default()));
            let b = t.add_node(Node::dir(Meta::default()));
            t.attach(Tree::ROOT, b"a", a);
            t.attach(Tree::ROOT, b"b", b);
            let x = t.add_node(Node::other(Kind::Fifo, Meta::default()));
            t.attach(if first { a } else { b }, b"x", x);
            t
        };
        assert_ne!(fingerprint(&shape(true)), fingerprint(&shape(false)));
    }

    /// `tree_digest` streams the manifest; it must hash exactly what
    /// `digest_of(&manifest(..))` does, for trees smaller than a chunk,
    /// exactly a chunk, and many rounds of chunks.
    #[test]
    fn streamed_digest_is_the_digest_of_the_manifest() {
        let cases = [(0, 0), (1, 1), (1, DIGEST_CHUNK - 3), (3, 900), (40, 700)];
        let mut seen = std::collections::HashSet::new();
        for (dirs, files) in cases {
            let tree = sample(dirs, files);
            let want = digest_of(&manifest(&tree));
            assert_eq!(tree_digest(&tree), want, "{dirs} x {files}");
            assert!(seen.insert(want), "distinct trees, distinct digests");
        }
        // the empty manifest is `[]`
        assert_eq!(
            tree_digest(&Tree::new()),
            format!("sha256:{}", hex::encode(Sha256::digest(b"[]")))
        );
    }
}
