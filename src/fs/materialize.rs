//! Writing a [`Tree`] to a new directory: hard links from the store where
//! the [`LinkPolicy`] allows, new files everywhere else.
//!
//! ```no_run
//! use hardmerge::fs::materialize::{materialize, LinkPolicy};
//! # let mut tree = hardmerge::tree::Tree::new();
//! let done = materialize(&mut tree, "/tmp/out".as_ref(), LinkPolicy::Never)?;
//! println!("{} copied, {} bytes", done.files_copied, done.bytes_copied);
//! # Ok::<(), hardmerge::fs::materialize::MaterializeError>(())
//! ```
//!
//! Order of work: a depth-first walk creates every directory (mode 0700
//! while it is written) and queues its entries; queued files are written in
//! parallel batches; every directory gets its metadata after all of its
//! entries, deepest first, so its mtime and a read-only mode stick.
//!
//! Invariants:
//! - a file linked from the store is never changed: no chmod, chown, utime
//!   or setxattr on it (the store's immutability depends on it); its
//!   metadata is the stored file's;
//! - every other file is a new inode (`O_CREAT | O_EXCL`): nothing is ever
//!   opened for writing that existed before;
//! - two inodes of the tree never become links to one physical file (the
//!   second is copied), and the names of one inode become hard links to the
//!   first name written, so hardlink groups are kept exactly.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{open, openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, mkdir, mkfifoat, symlinkat, Gid, Uid};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::{
    cstring, entry_path, join_rel, keep_open, locate, open_below, path_of, set_xattr_fd,
    set_xattr_path,
};
use crate::tree::{Inode, InodeId, Kind, Meta, NodeId, Origin, Tree};

/// Which files are hard-linked from their origin instead of copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkPolicy {
    /// An inode whose `link` flag is set and whose origin is in the store.
    #[default]
    AsTree,
    /// None: every file is a new copy (an export the user may change).
    Never,
    /// Every inode whose origin is in the store (`--link-output`). The
    /// stored file's metadata must be the inode's, as it is for a committed
    /// snapshot's own files.
    Always,
}

/// What a materialisation did. Files are counted per inode: the other names
/// of a hardlink group are links inside the destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Materialized {
    /// Inodes hard-linked from their origin.
    pub files_linked: u64,
    /// Inodes written as new files.
    pub files_copied: u64,
    /// Bytes written into new files.
    pub bytes_copied: u64,
    /// Links that failed with `EXDEV` or `EMLINK` and were copied instead.
    pub fallbacks: Vec<Fallback>,
}

/// A file that was to be linked and was copied, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// Its path in the tree.
    pub path: Vec<u8>,
    /// `EXDEV` (origin on another filesystem) or `EMLINK` (the stored inode
    /// has as many links as its filesystem allows).
    pub errno: Errno,
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.errno {
            Errno::EXDEV => "cross-device (EXDEV)",
            Errno::EMLINK => "too many links (EMLINK)",
            other => other.desc(),
        };
        write!(
            f,
            "failed to link {}: {why}, copied instead",
            crate::tree::manifest::escape_bytes(&self.path)
        )
    }
}

/// A materialisation that failed: the operation, the path and the reason.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    /// The destination's filesystem is full.
    #[error("no space left on device while writing {}", path.display())]
    NoSpace {
        /// The file or directory being written.
        path: PathBuf,
    },
    /// A hard link could not be made (for a reason other than `EXDEV` or
    /// `EMLINK`, which fall back to a copy).
    #[error("cannot link {} to {}: {error}", from.display(), to.display())]
    Link {
        /// The existing file.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// Another system call failed.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        /// What was being done (`create directory`, `set mode of`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
}

impl MaterializeError {
    /// The system error number, when one caused the failure.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            MaterializeError::NoSpace { .. } => Some(Errno::ENOSPC),
            MaterializeError::Link { error, .. } | MaterializeError::Io { error, .. } => {
                error.raw_os_error().map(Errno::from_raw)
            }
        }
    }
}

fn fail(op: &'static str, path: PathBuf, error: impl Into<io::Error>) -> MaterializeError {
    let error = error.into();
    if error.raw_os_error() == Some(libc::ENOSPC) {
        MaterializeError::NoSpace { path }
    } else {
        MaterializeError::Io { op, path, error }
    }
}

/// Writes `tree` to `dest`, which must not exist yet (its parent must).
///
/// On success every written inode's `phys` is the `(st_dev, st_ino)` of its
/// file in `dest`, and an inode copied from a host file has the size and
/// sha256 of the bytes actually copied. `dest` itself ends with mode 0755
/// (the root of a tree has no metadata). On error, `dest` is left partly
/// written for the caller to remove.
pub fn materialize(
    tree: &mut Tree,
    dest: &Path,
    policy: LinkPolicy,
) -> Result<Materialized, MaterializeError> {
    let (stats, updates) = write_tree(tree, dest, policy)?;
    updates.apply(tree);
    Ok(stats)
}

/// What materialising learnt of a tree's inodes (see [`materialize`]),
/// to be applied to it with [`Updates::apply`].
#[must_use]
pub struct Updates(Vec<Update>);

impl Updates {
    /// Sets each written inode's `phys`, and the size and sha256 of the
    /// bytes copied from the host.
    pub fn apply(self, tree: &mut Tree) {
        for u in self.0 {
            let inode = tree.inode_mut(u.inode);
            inode.phys = Some(u.phys);
            if let Some((size, sha256)) = u.content {
                inode.size = size;
                inode.sha256 = sha256;
            }
        }
    }
}

/// [`materialize`] on a shared tree: writes it, and returns what it
/// learnt instead of setting it, so other work may read the tree meanwhile.
pub fn write_tree(
    tree: &Tree,
    dest: &Path,
    policy: LinkPolicy,
) -> Result<(Materialized, Updates), MaterializeError> {
    write_tree_as(tree, dest, policy, false)
}

/// [`write_tree`] for a tree the store keeps. A process that is not root
/// needs the owner's `rwx` on a stored directory to read it back (to link
/// or copy its files, to verify it), so such a process stores directories
/// with `u+rwx` added to their mode; their true mode is in the snapshot's
/// record, which is what exports and digests use. Root stores exact modes.
pub fn write_stored_tree(
    tree: &Tree,
    dest: &Path,
    policy: LinkPolicy,
) -> Result<(Materialized, Updates), MaterializeError> {
    write_tree_as(tree, dest, policy, true)
}

/// The mode a directory of mode `mode` gets in the store (see
/// [`write_stored_tree`]).
pub fn stored_dir_mode(mode: u32, as_root: bool) -> u32 {
    if as_root {
        mode
    } else {
        mode | 0o700
    }
}

fn write_tree_as(
    tree: &Tree,
    dest: &Path,
    policy: LinkPolicy,
    stored: bool,
) -> Result<(Materialized, Updates), MaterializeError> {
    let dest = std::path::absolute(dest).map_err(|e| fail("resolve", dest.to_path_buf(), e))?;
    mkdir(&dest, Mode::S_IRWXU).map_err(|e| fail("create directory", dest.clone(), e))?;
    let dest_fd = open(
        &dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open directory", dest.clone(), e))?;
    let dest_fd = Arc::new(dest_fd);
    let as_root = nix::unistd::geteuid().is_root();
    let (stats, updates) = {
        let ctx = Ctx {
            tree,
            policy,
            as_root,
            searchable_dirs: stored && !as_root,
            dest_bytes: dest.as_os_str().as_bytes().to_vec(),
            dest_fd: dest_fd.clone(),
            names: names_per_inode(tree),
            link_max: link_max(&dest_fd),
            claims: Mutex::new(HashMap::new()),
        };
        let mut w = Writer {
            ctx,
            queued: vec![false; tree.inodes().len()],
            first: HashMap::new(),
            roots: HashMap::new(),
            path: Vec::new(),
            bounds: vec![0],
            fds: vec![Some(dest_fd.clone())],
            batch: Batch::default(),
            stats: Materialized::default(),
            updates: Vec::new(),
        };
        w.run()?;
        (w.stats, w.updates)
    };
    fchmod(dest_fd.as_fd(), Mode::from_bits_truncate(0o755))
        .map_err(|e| fail("set mode of", dest.clone(), e))?;
    Ok((stats, Updates(updates)))
}

/// How many names each inode has in the tree (entries of its arena that no
/// node reaches count zero).
fn names_per_inode(tree: &Tree) -> Vec<u32> {
    let mut names = vec![0u32; tree.inodes().len()];
    let mut stack = vec![Tree::ROOT];
    while let Some(id) = stack.pop() {
        for (_, c) in tree.children(id) {
            match tree.node(c).kind {
                Kind::Dir(_) => stack.push(c),
                Kind::File(i) => names[i as usize] += 1,
                _ => {}
            }
        }
    }
    names
}

/// The most links a file may have on the destination's filesystem, where
/// known: a hardlink group linked from the store is copied instead when it
/// would pass it (ext4 allows 65,000, btrfs 65,535; others fail with EMLINK
/// on the link itself, which falls back for single files too).
fn link_max(fd: &OwnedFd) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs fills the struct it is given.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return u64::MAX;
    }
    // SAFETY: fstatfs succeeded.
    let st = unsafe { st.assume_init() };
    match st.f_type as u64 {
        0xEF53 => 65_000,
        0x9123_683E => 65_535,
        _ => u64::MAX,
    }
}

/// What every job needs, shared by the worker threads.
struct Ctx<'t> {
    tree: &'t Tree,
    policy: LinkPolicy,
    as_root: bool,
    /// Directories keep the owner's read, write and search bits (see
    /// [`write_stored_tree`]).
    searchable_dirs: bool,
    dest_bytes: Vec<u8>,
    dest_fd: Arc<OwnedFd>,
    names: Vec<u32>,
    link_max: u64,
    /// `(st_dev, st_ino)` of each stored file linked so far, and the inode
    /// it was linked for.
    claims: Mutex<HashMap<(u64, u64), InodeId>>,
}

/// A walk step: a directory to fill, or one whose entries are all queued.
enum Step {
    Enter {
        node: NodeId,
        depth: usize,
        name: Vec<u8>,
    },
    Exit {
        node: NodeId,
        depth: usize,
    },
}

/// An entry to create in an open directory.
struct EntryJob {
    dir: Arc<OwnedFd>,
    name: CString,
    rel: Vec<u8>,
    work: Work,
}

enum Work {
    /// The first name of an inode, with its origin's snapshot folder.
    Inode(InodeId, Option<Arc<OwnedFd>>),
    /// A symlink, fifo, socket or device.
    Special(NodeId),
}

/// Another name of an inode already written at `first`.
struct LinkJob {
    dir: Arc<OwnedFd>,
    name: CString,
    rel: Vec<u8>,
    first: Vec<u8>,
}

/// A directory's own metadata, set once its entries exist.
struct MetaJob {
    fd: Arc<OwnedFd>,
    node: NodeId,
    rel: Vec<u8>,
}

#[derive(Default)]
struct Batch {
    entries: Vec<EntryJob>,
    links: Vec<LinkJob>,
    metas: Vec<MetaJob>,
    /// Directory descriptors the batch holds open.
    dirs: usize,
    /// Path bytes it holds.
    bytes: usize,
}

impl Batch {
    fn full(&self) -> bool {
        self.entries.len() + self.links.len() + self.metas.len() >= 4096
            || self.dirs >= 256
            || self.bytes >= 4 << 20
    }
}

enum Outcome {
    Linked {
        phys: (u64, u64),
    },
    Copied {
        bytes: u64,
        phys: (u64, u64),
        content: Option<(u64, [u8; 32])>,
        fallback: Option<Errno>,
    },
    Special,
}

struct Update {
    inode: InodeId,
    phys: (u64, u64),
    content: Option<(u64, [u8; 32])>,
}

/// Below this many entries a batch is written on the walking thread.
const PARALLEL_MIN: usize = 64;

struct Writer<'t> {
    ctx: Ctx<'t>,
    queued: Vec<bool>,
    /// The first name of each inode with several, once queued.
    first: HashMap<InodeId, Vec<u8>>,
    /// Snapshot folders of stored origins, opened once.
    roots: HashMap<PathBuf, Arc<OwnedFd>>,
    /// As in the scan: the current directory's path, the length of each
    /// ancestor's path, and the descriptors kept open along the branch.
    path: Vec<u8>,
    bounds: Vec<usize>,
    fds: Vec<Option<Arc<OwnedFd>>>,
    batch: Batch,
    stats: Materialized,
    updates: Vec<Update>,
}

impl Writer<'_> {
    fn dest_path(&self, rel: &[u8]) -> PathBuf {
        path_of(&self.ctx.dest_bytes, rel)
    }

    fn run(&mut self) -> Result<(), MaterializeError> {
        let mut stack = Vec::new();
        let root = self.ctx.dest_fd.clone();
        self.fill_dir(&root, Tree::ROOT, 0, &mut stack)?;
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter { node, depth, name } => {
                    self.path.truncate(self.bounds[depth - 1]);
                    if !self.path.is_empty() {
                        self.path.push(b'/');
                    }
                    self.path.extend_from_slice(&name);
                    self.bounds.truncate(depth);
                    self.bounds.push(self.path.len());
                    self.fds.truncate(depth);
                    let parent = self.dir_fd(depth - 1)?;
                    let fd = open_below(
                        parent.as_fd(),
                        &name,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                        false,
                    )
                    .map_err(|e| fail("open directory", self.dest_path(&self.path), e))?;
                    let fd = Arc::new(fd);
                    stack.push(Step::Exit { node, depth });
                    self.fill_dir(&fd, node, depth, &mut stack)?;
                    self.fds.push(keep_open(depth).then_some(fd));
                }
                Step::Exit { node, depth } => {
                    self.path.truncate(self.bounds[depth]);
                    self.bounds.truncate(depth + 1);
                    self.fds.truncate(depth + 1);
                    let fd = self.dir_fd(depth)?;
                    self.batch.bytes += self.path.len();
                    self.batch.dirs += 1;
                    self.batch.metas.push(MetaJob {
                        fd,
                        node,
                        rel: self.path.clone(),
                    });
                    if self.batch.full() {
                        self.flush()?;
                    }
                }
            }
        }
        self.flush()
    }

    /// The descriptor of the directory at depth `d` of the current branch,
    /// reopened from the nearest open ancestor when it was not kept.
    fn dir_fd(&self, d: usize) -> Result<Arc<OwnedFd>, MaterializeError> {
        if let Some(fd) = &self.fds[d] {
            return Ok(fd.clone());
        }
        let a = (0..d).rev().find(|&a| self.fds[a].is_some()).unwrap_or(0);
        let base = self.fds[a].as_ref().expect("the root stays open");
        let start = if a == 0 { 0 } else { self.bounds[a] + 1 };
        let rel = &self.path[start..self.bounds[d]];
        open_below(
            base.as_fd(),
            rel,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            false,
        )
        .map(Arc::new)
        .map_err(|e| {
            fail(
                "open directory",
                self.dest_path(&self.path[..self.bounds[d]]),
                e,
            )
        })
    }

    /// Creates the subdirectories of `node` (open as `fd`) and queues its
    /// other entries.
    fn fill_dir(
        &mut self,
        fd: &Arc<OwnedFd>,
        node: NodeId,
        depth: usize,
        stack: &mut Vec<Step>,
    ) -> Result<(), MaterializeError> {
        let tree = self.ctx.tree;
        let first_subdir = stack.len();
        self.batch.dirs += 1;
        for (name, child) in tree.children(node) {
            let rel = join_rel(&self.path, name);
            let cname = cstring(name).map_err(|e| fail("create", self.dest_path(&rel), e))?;
            match &tree.node(child).kind {
                Kind::Dir(_) => {
                    mkdirat(fd.as_fd(), cname.as_c_str(), Mode::S_IRWXU)
                        .map_err(|e| fail("create directory", self.dest_path(&rel), e))?;
                    stack.push(Step::Enter {
                        node: child,
                        depth: depth + 1,
                        name: name.to_vec(),
                    });
                    continue;
                }
                Kind::File(i) if self.queued[*i as usize] => {
                    let first = self.first[i].clone();
                    self.batch.bytes += rel.len() + first.len();
                    self.batch.links.push(LinkJob {
                        dir: fd.clone(),
                        name: cname,
                        rel,
                        first,
                    });
                }
                Kind::File(i) => {
                    self.queued[*i as usize] = true;
                    if self.ctx.names[*i as usize] > 1 {
                        self.first.insert(*i, rel.clone());
                    }
                    let root = match &tree.inode(*i).origin {
                        Origin::Stored { root, .. } => Some(self.origin_root(root)?),
                        _ => None,
                    };
                    self.batch.bytes += rel.len();
                    self.batch.entries.push(EntryJob {
                        dir: fd.clone(),
                        name: cname,
                        rel,
                        work: Work::Inode(*i, root),
                    });
                }
                _ => {
                    self.batch.bytes += rel.len();
                    self.batch.entries.push(EntryJob {
                        dir: fd.clone(),
                        name: cname,
                        rel,
                        work: Work::Special(child),
                    });
                }
            }
        }
        // Popped in name order.
        stack[first_subdir..].reverse();
        if self.batch.full() {
            self.flush()?;
        }
        Ok(())
    }

    fn origin_root(&mut self, root: &Path) -> Result<Arc<OwnedFd>, MaterializeError> {
        if let Some(fd) = self.roots.get(root) {
            return Ok(fd.clone());
        }
        let fd = open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail("open snapshot folder", root.to_path_buf(), e))?;
        let fd = Arc::new(fd);
        self.roots.insert(root.to_path_buf(), fd.clone());
        Ok(fd)
    }

    /// Writes the queued work: new files and special entries (in parallel),
    /// then the other names of hardlink groups, then directory metadata,
    /// deepest first.
    fn flush(&mut self) -> Result<(), MaterializeError> {
        let batch = std::mem::take(&mut self.batch);
        let ctx = &self.ctx;
        let results: Vec<Result<Outcome, MaterializeError>> = if batch.entries.len() >= PARALLEL_MIN
        {
            batch
                .entries
                .par_iter()
                .map_init(
                    || vec![0u8; 256 * 1024],
                    |buf, job| ctx.write_entry(job, buf),
                )
                .collect()
        } else {
            let mut buf = Vec::new();
            batch
                .entries
                .iter()
                .map(|job| ctx.write_entry(job, &mut buf))
                .collect()
        };
        for (job, result) in batch.entries.into_iter().zip(results) {
            let Work::Inode(inode, _) = job.work else {
                result?;
                continue;
            };
            match result? {
                Outcome::Linked { phys } => {
                    self.stats.files_linked += 1;
                    self.updates.push(Update {
                        inode,
                        phys,
                        content: None,
                    });
                }
                Outcome::Copied {
                    bytes,
                    phys,
                    content,
                    fallback,
                } => {
                    self.stats.files_copied += 1;
                    self.stats.bytes_copied += bytes;
                    if let Some(errno) = fallback {
                        self.stats.fallbacks.push(Fallback {
                            path: job.rel,
                            errno,
                        });
                    }
                    self.updates.push(Update {
                        inode,
                        phys,
                        content,
                    });
                }
                Outcome::Special => {}
            }
        }
        for job in &batch.links {
            self.ctx.link_name(job)?;
        }
        for job in &batch.metas {
            self.ctx.dir_meta(job)?;
        }
        Ok(())
    }
}

/// The owner of `meta` for chown(2), which reads the id 4294967295 (-1) as
/// "leave unchanged": a file would silently keep another owner than the one
/// its snapshot records.
fn owner_ids(meta: &Meta) -> io::Result<(Uid, Gid)> {
    if meta.uid == u32::MAX || meta.gid == u32::MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "owner {}:{} cannot be set (chown reads the id 4294967295 as \"unchanged\")",
                meta.uid, meta.gid
            ),
        ));
    }
    Ok((Uid::from_raw(meta.uid), Gid::from_raw(meta.gid)))
}

/// Checks that the filesystem stored `mtime` as given: past its range
/// (ext4 ends in 2446) the kernel clamps it silently, and the file would
/// differ from its snapshot's record. Only times outside 1901..2038 can be
/// clamped, so only those cost a stat.
fn check_mtime(mtime: i64, stat: impl FnOnce() -> nix::Result<FileStat>) -> io::Result<()> {
    if i32::try_from(mtime).is_ok() {
        return Ok(());
    }
    let stored = stat()?.st_mtime;
    if stored == mtime {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mtime {mtime} is out of this filesystem's range (it stored {stored})"),
        ))
    }
}

fn timespec(sec: i64) -> TimeSpec {
    TimeSpec::new(sec, 0)
}

impl Ctx<'_> {
    fn dest_path(&self, rel: &[u8]) -> PathBuf {
        path_of(&self.dest_bytes, rel)
    }

    fn write_entry(&self, job: &EntryJob, buf: &mut Vec<u8>) -> Result<Outcome, MaterializeError> {
        match &job.work {
            Work::Inode(i, root) => self.write_inode(job, *i, root.as_deref(), buf),
            Work::Special(node) => self.write_special(job, *node).map(|()| Outcome::Special),
        }
    }

    /// Records that `inode` links the stored file `phys`; false when another
    /// inode already does.
    fn claim(&self, phys: (u64, u64), inode: InodeId) -> bool {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        *claims.entry(phys).or_insert(inode) == inode
    }

    /// The first name of an inode: a link from its stored origin when the
    /// policy allows, else (or when linking fails with EXDEV or EMLINK) a
    /// new file.
    fn write_inode(
        &self,
        job: &EntryJob,
        id: InodeId,
        root: Option<&OwnedFd>,
        buf: &mut Vec<u8>,
    ) -> Result<Outcome, MaterializeError> {
        let inode = self.tree.inode(id);
        let link = match (&inode.origin, self.policy) {
            (Origin::Stored { .. }, LinkPolicy::Always) => true,
            (Origin::Stored { .. }, LinkPolicy::AsTree) => inode.link,
            _ => false,
        };
        let mut fallback = None;
        if let (true, Origin::Stored { root: folder, path }, Some(root)) =
            (link, &inode.origin, root)
        {
            let origin_path = || path_of(folder.as_os_str().as_bytes(), path);
            let (parent, name) =
                locate(root.as_fd(), path).map_err(|e| fail("open", origin_path(), e))?;
            let at = parent.as_ref().map_or(root.as_fd(), |p| p.as_fd());
            let names = self.names[id as usize] as u64;
            let (phys, nlink) = match inode.phys {
                Some(p) if names == 1 => (p, 0),
                _ => {
                    let st = fstatat(at, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .map_err(|e| fail("stat", origin_path(), e))?;
                    ((st.st_dev, st.st_ino), st.st_nlink)
                }
            };
            if names > 1 && nlink.saturating_add(names) > self.link_max {
                // The group's other names would not fit on the stored inode.
                fallback = Some(Errno::EMLINK);
            } else if self.claim(phys, id) {
                match linkat(
                    at,
                    name.as_c_str(),
                    job.dir.as_fd(),
                    job.name.as_c_str(),
                    AtFlags::empty(),
                ) {
                    Ok(()) => return Ok(Outcome::Linked { phys }),
                    Err(e @ (Errno::EXDEV | Errno::EMLINK)) => fallback = Some(e),
                    Err(e) => {
                        return Err(MaterializeError::Link {
                            from: origin_path(),
                            to: self.dest_path(&job.rel),
                            error: e.into(),
                        })
                    }
                }
            }
        }
        let (bytes, phys, content) = self.copy_inode(job, inode, root, buf)?;
        Ok(Outcome::Copied {
            bytes,
            phys,
            content,
            fallback,
        })
    }

    /// Writes an inode's bytes into a new file with its metadata; returns
    /// the bytes written, the new file's `(st_dev, st_ino)`, and for a host
    /// file the size and sha256 of what was copied.
    #[allow(clippy::type_complexity)]
    fn copy_inode(
        &self,
        job: &EntryJob,
        inode: &Inode,
        root: Option<&OwnedFd>,
        buf: &mut Vec<u8>,
    ) -> Result<(u64, (u64, u64), Option<(u64, [u8; 32])>), MaterializeError> {
        if buf.len() < 128 * 1024 {
            buf.resize(256 * 1024, 0);
        }
        let dest = || self.dest_path(&job.rel);
        let out = openat(
            job.dir.as_fd(),
            job.name.as_c_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            // Its final permission bits (less the umask) spare most files a
            // chmod; the directory is private while it is written.
            Mode::from_bits_truncate(inode.meta.mode & 0o777),
        )
        .map_err(|e| fail("create", dest(), e))?;
        let mut out = File::from(out);
        let (bytes, content) = match &inode.origin {
            Origin::Data(data) => {
                out.write_all(data).map_err(|e| fail("write", dest(), e))?;
                (data.len() as u64, None)
            }
            Origin::Stored { root: folder, path } => {
                let origin = || path_of(folder.as_os_str().as_bytes(), path);
                let root = root.ok_or_else(|| fail("open", origin(), Errno::EBADF))?;
                let src = open_below(root.as_fd(), path, OFlag::O_RDONLY, false)
                    .map_err(|e| fail("open", origin(), e))?;
                let n = copy_bytes(&src, &mut out, inode.size, buf).map_err(|e| match e {
                    CopyError::Read(e) => fail("read", origin(), e),
                    CopyError::Write(e) => fail("write", dest(), e),
                })?;
                (n, None)
            }
            Origin::Host { root: folder, path } => {
                let host = path_of(folder.as_os_str().as_bytes(), path);
                let src = open(
                    &host,
                    OFlag::O_RDONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_NONBLOCK
                        | OFlag::O_NOCTTY
                        | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail("open", host.clone(), e))?;
                let st = fstat(&src).map_err(|e| fail("stat", host.clone(), e))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(fail("read", host, Errno::EINVAL));
                }
                let mut src = File::from(src);
                let mut hasher = Sha256::new();
                let mut n = 0u64;
                loop {
                    let k = match src.read(buf) {
                        Ok(0) => break,
                        Ok(k) => k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(fail("read", host.clone(), e)),
                    };
                    hasher.update(&buf[..k]);
                    out.write_all(&buf[..k])
                        .map_err(|e| fail("write", dest(), e))?;
                    n += k as u64;
                }
                (n, Some((n, hasher.finalize().into())))
            }
        };
        let st = fstat(&out).map_err(|e| fail("stat", dest(), e))?;
        self.file_meta(out.as_fd(), &st, &inode.meta, dest)?;
        Ok((bytes, (st.st_dev, st.st_ino), content))
    }

    /// Owner, mode, xattrs and mtime of an open new file or directory
    /// whose current status is `st`, in that order (chown clears setuid;
    /// xattrs and chmod change the ctime, never the mtime). Owner and mode
    /// are set only when they differ.
    fn file_meta(
        &self,
        fd: BorrowedFd,
        st: &FileStat,
        meta: &Meta,
        path: impl Fn() -> PathBuf,
    ) -> Result<(), MaterializeError> {
        let chown = self.as_root && (st.st_uid, st.st_gid) != (meta.uid, meta.gid);
        if chown {
            let (uid, gid) = owner_ids(meta).map_err(|e| fail("set owner of", path(), e))?;
            fchown(fd, Some(uid), Some(gid)).map_err(|e| fail("set owner of", path(), e))?;
        }
        let mode = meta.mode & 0o7777;
        if chown || st.st_mode & 0o7777 != mode {
            fchmod(fd, Mode::from_bits_truncate(mode))
                .map_err(|e| fail("set mode of", path(), e))?;
        }
        for (name, value) in &meta.xattrs {
            set_xattr_fd(fd, name, value).map_err(|e| fail("set xattrs of", path(), e))?;
        }
        let t = timespec(meta.mtime);
        futimens(fd, &t, &t).map_err(|e| fail("set mtime of", path(), e))?;
        check_mtime(meta.mtime, || fstat(fd)).map_err(|e| fail("set mtime of", path(), e))
    }

    /// A symlink, fifo, socket or device, with its metadata.
    fn write_special(&self, job: &EntryJob, node: NodeId) -> Result<(), MaterializeError> {
        let n = self.tree.node(node);
        let dir = job.dir.as_fd();
        let name = job.name.as_c_str();
        let dest = || self.dest_path(&job.rel);
        let private = Mode::S_IRUSR | Mode::S_IWUSR;
        let made = match &n.kind {
            Kind::Symlink(target) => {
                symlinkat(target.as_slice(), dir, name).map_err(|e| ("create symlink", e))
            }
            Kind::Fifo => mkfifoat(dir, name, private).map_err(|e| ("create fifo", e)),
            Kind::Socket => {
                mknodat(dir, name, SFlag::S_IFSOCK, private, 0).map_err(|e| ("create socket", e))
            }
            Kind::Char(rdev) => mknodat(dir, name, SFlag::S_IFCHR, private, *rdev as libc::dev_t)
                .map_err(|e| ("create device", e)),
            Kind::Block(rdev) => mknodat(dir, name, SFlag::S_IFBLK, private, *rdev as libc::dev_t)
                .map_err(|e| ("create device", e)),
            Kind::Dir(_) | Kind::File(_) => unreachable!("queued as a special entry"),
        };
        made.map_err(|(op, e)| fail(op, dest(), e))?;
        let meta = &n.meta;
        if self.as_root {
            let (uid, gid) = owner_ids(meta).map_err(|e| fail("set owner of", dest(), e))?;
            fchownat(
                dir,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| fail("set owner of", dest(), e))?;
        }
        if !matches!(n.kind, Kind::Symlink(_)) {
            fchmodat(
                dir,
                name,
                Mode::from_bits_truncate(meta.mode & 0o7777),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| fail("set mode of", dest(), e))?;
        }
        if !meta.xattrs.is_empty() {
            let at = entry_path(dir, name.to_bytes(), || {
                dest().into_os_string().into_encoded_bytes()
            })
            .map_err(|e| fail("set xattrs of", dest(), e))?;
            for (k, v) in &meta.xattrs {
                set_xattr_path(&at, k, v).map_err(|e| fail("set xattrs of", dest(), e))?;
            }
        }
        let t = timespec(meta.mtime);
        utimensat(dir, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| fail("set mtime of", dest(), e))?;
        check_mtime(meta.mtime, || {
            fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        })
        .map_err(|e| fail("set mtime of", dest(), e))
    }

    /// Another name of a hardlink group: a link to its first name.
    fn link_name(&self, job: &LinkJob) -> Result<(), MaterializeError> {
        let err = |e: Errno| MaterializeError::Link {
            from: self.dest_path(&job.first),
            to: self.dest_path(&job.rel),
            error: e.into(),
        };
        let (parent, first) = locate(self.dest_fd.as_fd(), &job.first).map_err(err)?;
        let at = parent.as_ref().map_or(self.dest_fd.as_fd(), |p| p.as_fd());
        linkat(
            at,
            first.as_c_str(),
            job.dir.as_fd(),
            job.name.as_c_str(),
            AtFlags::empty(),
        )
        .map_err(err)
    }

    fn dir_meta(&self, job: &MetaJob) -> Result<(), MaterializeError> {
        let path = || self.dest_path(&job.rel);
        let st = fstat(job.fd.as_fd()).map_err(|e| fail("stat", path(), e))?;
        let meta = &self.tree.node(job.node).meta;
        if self.searchable_dirs && meta.mode & 0o700 != 0o700 {
            let mut meta = meta.clone();
            meta.mode = stored_dir_mode(meta.mode, false);
            return self.file_meta(job.fd.as_fd(), &st, &meta, path);
        }
        self.file_meta(job.fd.as_fd(), &st, meta, path)
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `src` into `out`: `copy_file_range` (in the kernel, and a reflink
/// where the filesystem can), else a read/write loop. `size` is the size
/// the store recorded: reaching it ends the copy without asking for more.
fn copy_bytes(src: &OwnedFd, out: &mut File, size: u64, buf: &mut [u8]) -> Result<u64, CopyError> {
    let mut total = 0u64;
    loop {
        let want = if total < size { size - total } else { 1 << 20 };
        // SAFETY: both descriptors are open; null offsets use and advance
        // the files' own offsets.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                out.as_raw_fd(),
                std::ptr::null_mut(),
                want.min(1 << 30) as usize,
                0,
            )
        };
        match Errno::result(n).map(|n| n as u64) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                total += n;
                if total == size {
                    return Ok(total);
                }
            }
            Err(Errno::EINTR) => {}
            Err(
                Errno::EXDEV | Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP | Errno::EPERM,
            ) => break,
            Err(e) => return Err(CopyError::Write(e.into())),
        }
    }
    let mut src = File::from(src.try_clone().map_err(CopyError::Read)?);
    loop {
        let k = match src.read(buf) {
            Ok(0) => return Ok(total),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..k]).map_err(CopyError::Write)?;
        total += k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::scan::{scan, OriginKind, ScanOptions};
    use crate::tree::manifest::tree_digest;
    use crate::tree::Node;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    fn data_inode(data: &[u8], mode: u32, mtime: i64) -> Inode {
        Inode {
            meta: Meta {
                mode,
                uid: nix::unistd::geteuid().as_raw(),
                gid: nix::unistd::getegid().as_raw(),
                mtime,
                xattrs: BTreeMap::new(),
            },
            size: data.len() as u64,
            sha256: Sha256::digest(data).into(),
            origin: Origin::Data(Arc::new(data.to_vec())),
            link: false,
            phys: None,
        }
    }

    fn dir_meta(mode: u32, mtime: i64) -> Meta {
        Meta {
            mode,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mtime,
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn writes_data_with_exact_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let mut tree = Tree::new();
        let ro = tree.add_node(Node::dir(dir_meta(0o2555, 1_000)));
        tree.attach(Tree::ROOT, b"ro", ro);
        let f = tree.add_file(data_inode(b"hello\n", 0o4711, -86_400));
        tree.attach(ro, b"motd", f);
        let Kind::File(i) = tree.node(f).kind else {
            unreachable!()
        };
        let again = tree.add_node(Node::other(Kind::File(i), Meta::default()));
        tree.attach(Tree::ROOT, b"again", again);
        let mut m = dir_meta(0o777, 77);
        m.mode = 0o777;
        let l = tree.add_node(Node::other(Kind::Symlink(b"ro/motd".to_vec()), m));
        tree.attach(ro, b"link", l);
        let fifo = tree.add_node(Node::other(Kind::Fifo, dir_meta(0o620, 5)));
        tree.attach(Tree::ROOT, b"pipe", fifo);
        let out = tmp.path().join("out");
        let done = materialize(&mut tree, &out, LinkPolicy::AsTree).unwrap();
        assert_eq!(
            (done.files_linked, done.files_copied, done.bytes_copied),
            (0, 1, 6)
        );
        let md = std::fs::symlink_metadata(out.join("ro/motd")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o4711);
        assert_eq!(md.mtime(), -86_400);
        assert_eq!(md.atime(), -86_400);
        assert_eq!(md.nlink(), 2);
        assert_eq!(tree.inode(i).phys, Some((md.dev(), md.ino())));
        assert_eq!(std::fs::read(out.join("again")).unwrap(), b"hello\n");
        let d = std::fs::symlink_metadata(out.join("ro")).unwrap();
        assert_eq!((d.mode() & 0o7777, d.mtime()), (0o2555, 1_000));
        let l = std::fs::symlink_metadata(out.join("ro/link")).unwrap();
        assert_eq!(l.mtime(), 77);
        let p = std::fs::symlink_metadata(out.join("pipe")).unwrap();
        assert_eq!((p.mode() & 0o7777, p.mtime()), (0o620, 5));
        assert_eq!(
            tree_digest(&scan(&out, ScanOptions::default()).unwrap()),
            tree_digest(&tree)
        );
        // the destination must be new
        let again = materialize(&mut tree, &out, LinkPolicy::AsTree).unwrap_err();
        assert_eq!(again.errno(), Some(Errno::EEXIST));
    }

    #[test]
    fn host_copies_record_what_was_copied() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"before").unwrap();
        let mut tree = scan(&src, ScanOptions::default()).unwrap();
        std::fs::write(src.join("f"), b"after, longer").unwrap();
        materialize(&mut tree, &tmp.path().join("out"), LinkPolicy::Always).unwrap();
        let inode = &tree.inodes()[0];
        assert_eq!(inode.size, 13);
        assert_eq!(
            inode.sha256,
            <[u8; 32]>::from(Sha256::digest(b"after, longer"))
        );
        assert_eq!(
            std::fs::read(tmp.path().join("out/f")).unwrap(),
            b"after, longer"
        );
    }

    #[test]
    fn many_files_in_parallel_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        // more directories than one batch holds, and a directory with more
        // files than are written on one thread
        for d in 0..300 {
            std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
            for f in 0..if d == 7 { 200 } else { 2 } {
                std::fs::write(src.join(format!("d{d}/f{f}")), format!("{d}/{f}")).unwrap();
            }
        }
        let mut tree = scan(
            &src,
            ScanOptions {
                origin: OriginKind::Stored,
                ..ScanOptions::default()
            },
        )
        .unwrap();
        let digest = tree_digest(&tree);
        let done = materialize(&mut tree, &tmp.path().join("linked"), LinkPolicy::AsTree).unwrap();
        assert_eq!(done.files_linked, 798);
        let done = materialize(&mut tree, &tmp.path().join("copied"), LinkPolicy::Never).unwrap();
        assert_eq!(done.files_copied, 798);
        for out in ["linked", "copied"] {
            assert_eq!(
                tree_digest(&scan(&tmp.path().join(out), ScanOptions::default()).unwrap()),
                digest
            );
        }
    }

    #[test]
    fn trees_deeper_than_path_max_materialise() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir(&src).unwrap();
        crate::fs::scan::tests::deep_tree(&src, 220);
        // a hardlink group whose names are both deeper than PATH_MAX
        let root = open(&src, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let at = |levels: usize| {
            let rel = vec![crate::fs::scan::tests::DEEP; levels].join("/");
            open_below(
                root.as_fd(),
                rel.as_bytes(),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                false,
            )
            .unwrap()
        };
        linkat(at(150), "f", at(210), "h", AtFlags::empty()).unwrap();
        let mut tree = scan(
            &src,
            ScanOptions {
                origin: OriginKind::Stored,
                ..ScanOptions::default()
            },
        )
        .unwrap();
        let digest = tree_digest(&tree);
        let linked = tmp.path().join("linked");
        let done = materialize(&mut tree, &linked, LinkPolicy::AsTree).unwrap();
        assert_eq!(done.files_copied, 0);
        let copied = tmp.path().join("copied");
        materialize(&mut tree, &copied, LinkPolicy::Never).unwrap();
        for out in [&linked, &copied] {
            assert_eq!(
                tree_digest(&scan(out, ScanOptions::default()).unwrap()),
                digest
            );
        }
        let grouped = crate::tree::manifest::manifest(&tree)
            .into_iter()
            .filter(|e| e.link.as_ref().is_some_and(|l| l.len() > 9_000))
            .count();
        assert_eq!(grouped, 1);
    }

    /// A full disk fails with a message that says so and names the file.
    #[test]
    fn full_disk_is_reported() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped (needs root): mounting a small tmpfs to fill it");
            return;
        }
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let tmp = tempfile::tempdir().unwrap();
        mount(
            Some("tmpfs"),
            tmp.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .unwrap();
        let mut tree = Tree::new();
        let f = tree.add_file(data_inode(&vec![1u8; 1 << 20], 0o644, 0));
        tree.attach(Tree::ROOT, b"big", f);
        let r = materialize(&mut tree, &tmp.path().join("out"), LinkPolicy::Never);
        umount2(tmp.path(), MntFlags::MNT_DETACH).unwrap();
        let e = r.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("no space left on device"), "{msg}");
        assert!(msg.contains("out/big"), "{msg}");
        assert_eq!(e.errno(), Some(Errno::ENOSPC));
    }
}
