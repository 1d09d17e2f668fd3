//! Reading a directory on disk into a [`Tree`].
//!
//! ```no_run
//! use hardmerge::fs::scan::{scan, ScanOptions, StatCache};
//! use hardmerge::tree::manifest::tree_digest;
//!
//! let mut cache = StatCache::load("/tmp/app.statcache".as_ref());
//! let tree = scan(
//!     "/src/app".as_ref(),
//!     ScanOptions { stat_cache: Some(&mut cache), ..ScanOptions::default() },
//! )?;
//! println!("{}", tree_digest(&tree));
//! cache.save("/tmp/app.statcache".as_ref())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The walk never follows a symlink: entries are `lstat`ed relative to their
//! directory's descriptor, directories are opened with `O_NOFOLLOW`, and
//! files are opened for hashing below the scanned root with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so a tree that changes while it
//! is read cannot lead the scan outside it. It runs in three phases:
//! 1. every directory is read (entries, `lstat`, xattrs, symlink targets)
//!    by its own task, in parallel: an unchanged rebuild is mostly these
//!    system calls;
//! 2. the tree is made from what was read, on one thread, in the order of
//!    a depth-first walk (iterative, any depth), so the first error it meets
//!    is the one a walk reading an entry at a time would meet;
//! 3. the files the [`StatCache`] does not vouch for are hashed in parallel.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{open, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::pattern::{Decision, Filter};
use super::stat_cache::{Known, Stamp};
pub use super::stat_cache::{StatCache, RACY_NS};
use super::{join_rel, keep_open, now_nanos, open_below, path_of, read_entries, read_xattrs_at};
use crate::tree::{Inode, InodeId, Kind, Meta, Node, NodeId, Origin, Tree};

/// Whose owner ids a scan records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Owners {
    /// The uid and gid each entry has on disk.
    #[default]
    Keep,
    /// The running user's effective uid and gid for every entry (a user who
    /// is not root cannot give files away, so an import records what it can
    /// write).
    Current,
}

/// What the scanned files' [`Origin`] is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OriginKind {
    /// A host folder (a `local` source): [`Origin::Host`] with the scanned
    /// folder and the file's path below it, never linked.
    #[default]
    Host,
    /// A folder of the store: [`Origin::Stored`], linkable, with the file's
    /// `(st_dev, st_ino)` as its `phys`.
    Stored,
}

/// How to scan.
#[derive(Debug, Default)]
pub struct ScanOptions<'a> {
    /// Which entries to take (`include` / `exclude`); `None` takes all.
    pub filter: Option<&'a Filter>,
    /// Whose owner ids to record.
    pub owners: Owners,
    /// The origin given to the files.
    pub origin: OriginKind,
    /// Hashes of earlier scans, reused for files whose size, mtime, ctime,
    /// inode and device have not changed; updated with what this scan hashes.
    pub stat_cache: Option<&'a mut StatCache>,
}

/// The longest path below a scanned root, in bytes. A tree's manifest holds
/// every full path, so its size grows with the square of the depth: a
/// limit keeps a hostile source (say 100,000 nested folders) a clean error
/// rather than gigabytes of paths. Eight times Linux's `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 32 * 1024;

/// A scan that failed: the operation, the path and the system's reason.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A system call failed.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        /// What was being done (`read`, `open directory`, `stat`, ...).
        op: &'static str,
        /// The entry's full path.
        path: PathBuf,
        /// The system's error.
        error: io::Error,
    },
    /// A directory lies deeper than [`MAX_PATH_BYTES`] below the root.
    #[error("cannot read {}: a folder below {} lies deeper than hardmerge's limit of {max} bytes of path (a tree that deep is refused)", shown.display(), root.display(), max = MAX_PATH_BYTES)]
    TooDeep {
        /// The source folder.
        root: PathBuf,
        /// The start of the folder's path.
        shown: PathBuf,
    },
    /// A file turned into something else while it was being read.
    #[error("cannot read {}: it is no longer a regular file (it changed during the scan)", path.display())]
    Changed {
        /// The entry's full path.
        path: PathBuf,
    },
}

impl ScanError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ScanError::Io { path, .. } | ScanError::Changed { path } => path,
            ScanError::TooDeep { root, .. } => root,
        }
    }

    /// The system error number, when a system call failed.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ScanError::Io { error, .. } => error.raw_os_error().map(Errno::from_raw),
            ScanError::Changed { .. } | ScanError::TooDeep { .. } => None,
        }
    }
}

/// Reads the directory `dir` (which must be a directory, not a symlink to
/// one) into a tree. The root's own metadata is not recorded.
///
/// Records every entry's type, mode (`& 0o7777`; symlinks `0o777`),
/// owner (per [`Owners`]), mtime in whole seconds, xattrs, symlink targets,
/// device numbers, and each file's size and sha256; files sharing an inode
/// inside `dir` become one [`Inode`]. Entries a [`Filter`] skips are not
/// read at all.
pub fn scan(dir: &Path, opts: ScanOptions) -> Result<Tree, ScanError> {
    let root = std::path::absolute(dir).map_err(|e| io_err("resolve", dir, e))?;
    let root_fd = open(
        &root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open directory", &root, e.into()))?;
    let ScanOptions {
        filter,
        owners,
        origin,
        stat_cache,
    } = opts;
    let owner = match owners {
        Owners::Keep => None,
        Owners::Current => Some((
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )),
    };
    let root_fd = Arc::new(root_fd);
    let root_bytes = root.as_os_str().as_bytes().to_vec();
    let listings = {
        let reader = Reader {
            root_bytes: &root_bytes,
            filter: filter.filter(|f| !f.is_trivial()),
            cache: stat_cache.as_deref(),
            listings: Mutex::new(Vec::new()),
            next: AtomicUsize::new(1),
        };
        let task = DirTask {
            rel: Vec::new(),
            depth: 0,
            base: root_fd.clone(),
            from_base: Vec::new(),
        };
        rayon::scope(|s| reader.read(s, 0, task));
        reader.listings.into_inner().expect("listings lock")
    };
    let mut tree = Tree::new();
    if let Some(cache) = &stat_cache {
        // The files of the last scan, and a directory for about 16 of them:
        // the tree's arrays are allocated once instead of grown.
        tree.reserve(cache.len() + cache.len() / 16, cache.len());
    }
    let mut walker = Walker {
        root_bytes,
        root_arc: Arc::new(root),
        owner,
        origin,
        tree,
        descended: Vec::new(),
        links: HashMap::new(),
        jobs: Vec::new(),
        cache: stat_cache,
    };
    walker.build(listings)?;
    walker.prune_descended();
    walker.hash_files(&root_fd)?;
    Ok(walker.tree)
}

fn io_err(op: &'static str, path: &Path, error: io::Error) -> ScanError {
    ScanError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// A file whose content must be read.
struct HashJob {
    inode: InodeId,
    /// Path below the scanned root.
    rel: Vec<u8>,
}

/// An entry as the first phase read it.
struct Listed {
    name: Vec<u8>,
    /// Its path below the root (a directory's goes to its task).
    rel: Vec<u8>,
    st: FileStat,
    decision: Decision,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// A symlink's target.
    target: Vec<u8>,
    /// What the stat cache knows of a regular file.
    known: Option<Known>,
    /// A directory's listing (an index into [`Reader::listings`]).
    child: usize,
}

/// A directory as the first phase read it.
struct Listing {
    /// Its entries in name order, without those the filter skips and those
    /// that vanished while it was read.
    entries: Vec<Listed>,
    /// What failed after `entries` (nothing after it was read): the
    /// directory itself, or the entry that follows them.
    error: Option<ScanError>,
}

/// Below this many entries, a directory's entries are read on one thread.
const PARALLEL_ENTRIES: usize = 64;

/// A directory for the first phase to read.
struct DirTask {
    /// Its path below the root.
    rel: Vec<u8>,
    /// Its depth (the root's entries are at 1).
    depth: usize,
    /// The nearest ancestor kept open (see [`keep_open`]) and the path from
    /// there: a deep tree is opened one short run at a time, and holds few
    /// descriptors open at once.
    base: Arc<OwnedFd>,
    from_base: Vec<u8>,
}

/// The first phase of a scan: every directory is read (entries, `lstat`,
/// xattrs, symlink targets) by its own task, in parallel.
struct Reader<'a> {
    root_bytes: &'a [u8],
    filter: Option<&'a Filter>,
    cache: Option<&'a StatCache>,
    /// The listings by index; the root's is 0.
    listings: Mutex<Vec<Option<Listing>>>,
    next: AtomicUsize,
}

impl<'a> Reader<'a> {
    fn full_path(&self, rel: &[u8]) -> PathBuf {
        path_of(self.root_bytes, rel)
    }

    fn err(&self, op: &'static str, rel: &[u8], error: impl Into<io::Error>) -> ScanError {
        io_err(op, &self.full_path(rel), error.into())
    }

    /// Reads the directory of `task` as listing `id`, and its
    /// subdirectories as new tasks of `scope`.
    fn read<'s>(&'s self, scope: &rayon::Scope<'s>, id: usize, task: DirTask) {
        let listing = match self.open(&task) {
            Ok(fd) => {
                let mut listing = self.list(fd.as_fd(), &task.rel);
                // Children open from here, or from this directory's own base.
                let (base, from) = if keep_open(task.depth) {
                    (fd, &[][..])
                } else {
                    (task.base.clone(), &task.from_base[..])
                };
                for l in &mut listing.entries {
                    if l.st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        l.child = self.next.fetch_add(1, Ordering::Relaxed);
                        let child = DirTask {
                            from_base: join_rel(from, &l.name),
                            rel: std::mem::take(&mut l.rel),
                            depth: task.depth + 1,
                            base: base.clone(),
                        };
                        let id = l.child;
                        scope.spawn(move |s| self.read(s, id, child));
                    }
                }
                listing
            }
            Err(error) => Listing {
                entries: Vec::new(),
                error: Some(error),
            },
        };
        let mut listings = self.listings.lock().expect("listings lock");
        if listings.len() <= id {
            listings.resize_with(id + 1, || None);
        }
        listings[id] = Some(listing);
    }

    /// Opens the directory of `task` (the root is open already).
    fn open(&self, task: &DirTask) -> Result<Arc<OwnedFd>, ScanError> {
        if task.depth == 0 {
            return Ok(task.base.clone());
        }
        if task.rel.len() > MAX_PATH_BYTES {
            let shown = String::from_utf8_lossy(&task.rel[..120]).into_owned() + "...";
            return Err(ScanError::TooDeep {
                root: PathBuf::from(OsStr::from_bytes(self.root_bytes)),
                shown: self.full_path(shown.as_bytes()),
            });
        }
        open_below(
            task.base.as_fd(),
            &task.from_base,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            true,
        )
        .map(Arc::new)
        .map_err(|e| self.err("open directory", &task.rel, e))
    }

    /// The entries of the directory `fd` at `rel`.
    fn list(&self, fd: BorrowedFd, rel: &[u8]) -> Listing {
        let mut names = match read_entries(fd) {
            Ok(names) => names,
            Err(e) => {
                return Listing {
                    entries: Vec::new(),
                    error: Some(self.err("read directory", rel, e)),
                }
            }
        };
        names.sort_unstable();
        let read: Vec<Result<Option<Listed>, ScanError>> = if names.len() < PARALLEL_ENTRIES {
            names
                .into_iter()
                .map(|(name, dtype)| self.entry(fd, rel, name, dtype))
                .collect()
        } else {
            names
                .into_par_iter()
                .map(|(name, dtype)| self.entry(fd, rel, name, dtype))
                .collect()
        };
        let mut entries = Vec::with_capacity(read.len());
        let mut error = None;
        for r in read {
            match r {
                Ok(Some(l)) => entries.push(l),
                Ok(None) => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        Listing { entries, error }
    }

    fn decide(&self, rel: &[u8], is_dir: bool) -> Decision {
        match self.filter {
            Some(f) => f.decide_bytes(rel, is_dir),
            None => Decision::Take,
        }
    }

    /// `lstat` of an entry; `None` when it vanished since it was listed.
    fn lstat(
        &self,
        dir: BorrowedFd,
        name: &[u8],
        rel: &[u8],
    ) -> Result<Option<FileStat>, ScanError> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.err("stat", rel, e)),
        }
    }

    /// Reads entry `name` (of type `dtype` as listed) of the directory `dir`
    /// at `dir_rel`; `None` when the filter skips it or it vanished.
    fn entry(
        &self,
        dir: BorrowedFd,
        dir_rel: &[u8],
        name: Vec<u8>,
        dtype: u8,
    ) -> Result<Option<Listed>, ScanError> {
        let rel = join_rel(dir_rel, &name);
        let mut st = None;
        let guess_dir = match dtype {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => {
                let Some(s) = self.lstat(dir, &name, &rel)? else {
                    return Ok(None);
                };
                let is_dir = s.st_mode & libc::S_IFMT == libc::S_IFDIR;
                st = Some(s);
                is_dir
            }
            _ => false,
        };
        let mut decision = self.decide(&rel, guess_dir);
        if decision == Decision::Skip {
            return Ok(None);
        }
        let st = match st {
            Some(s) => s,
            None => match self.lstat(dir, &name, &rel)? {
                Some(s) => s,
                None => return Ok(None),
            },
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if (fmt == libc::S_IFDIR) != guess_dir {
            // Replaced between readdir and lstat: decide on what is there.
            decision = self.decide(&rel, fmt == libc::S_IFDIR);
            if decision == Decision::Skip {
                return Ok(None);
            }
        }
        let full = || self.full_path(&rel).into_os_string().into_vec();
        // A regular file's hash and xattrs, if the stat cache vouches for
        // them (same stamp): they need not be read again.
        let mut known = match self.cache {
            Some(cache) if fmt == libc::S_IFREG => Some(cache.known(full, &Stamp::of(&st))),
            _ => None,
        };
        let xattrs = match known.as_mut().and_then(|k| k.xattrs.take()) {
            Some(x) => x,
            None => {
                read_xattrs_at(dir, &name, full).map_err(|e| self.err("read xattrs of", &rel, e))?
            }
        };
        let target = if fmt == libc::S_IFLNK {
            match readlinkat(dir, name.as_slice()) {
                Ok(t) => t.into_vec(),
                Err(Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(self.err("read symlink", &rel, e)),
            }
        } else {
            Vec::new()
        };
        Ok(Some(Listed {
            name,
            rel,
            st,
            decision,
            xattrs,
            target,
            known,
            child: 0,
        }))
    }
}

/// The second phase of a scan: the tree made from the listings, one thread,
/// in the order of a depth-first walk (so the first error met is the one a
/// walk reading one entry at a time would meet), then the hashing.
struct Walker<'a> {
    root_arc: Arc<PathBuf>,
    root_bytes: Vec<u8>,
    owner: Option<(u32, u32)>,
    origin: OriginKind,
    tree: Tree,
    /// Directories taken only because something below may be: `(parent,
    /// name, node)`, in walk order.
    descended: Vec<(NodeId, Vec<u8>, NodeId)>,
    /// Files with more than one link, by `(st_dev, st_ino)`.
    links: HashMap<(u64, u64), InodeId>,
    jobs: Vec<HashJob>,
    cache: Option<&'a mut StatCache>,
}

impl Walker<'_> {
    fn full_path(&self, rel: &[u8]) -> PathBuf {
        path_of(&self.root_bytes, rel)
    }

    fn err(&self, op: &'static str, rel: &[u8], error: impl Into<io::Error>) -> ScanError {
        io_err(op, &self.full_path(rel), error.into())
    }

    /// Adds the listings to the tree, from the root's (listing 0).
    fn build(&mut self, mut listings: Vec<Option<Listing>>) -> Result<(), ScanError> {
        let mut stack = vec![(0usize, Tree::ROOT)];
        while let Some((id, dir)) = stack.pop() {
            let listing = listings
                .get_mut(id)
                .and_then(Option::take)
                .expect("every directory was read");
            let first_subdir = stack.len();
            for l in listing.entries {
                let (uid, gid) = self.owner.unwrap_or((l.st.st_uid, l.st.st_gid));
                let mut meta = Meta {
                    mode: l.st.st_mode & 0o7777,
                    uid,
                    gid,
                    mtime: l.st.st_mtime,
                    xattrs: l.xattrs,
                };
                let id = match l.st.st_mode & libc::S_IFMT {
                    libc::S_IFDIR => {
                        let id = self.tree.add_node(Node::dir(meta));
                        if l.decision == Decision::Descend {
                            self.descended.push((dir, l.name.clone(), id));
                        }
                        stack.push((l.child, id));
                        id
                    }
                    libc::S_IFREG => self.file(&l.st, meta, l.rel, l.known),
                    libc::S_IFLNK => {
                        meta.mode = 0o777;
                        self.tree
                            .add_node(Node::other(Kind::Symlink(l.target), meta))
                    }
                    libc::S_IFIFO => self.tree.add_node(Node::other(Kind::Fifo, meta)),
                    libc::S_IFSOCK => self.tree.add_node(Node::other(Kind::Socket, meta)),
                    libc::S_IFCHR => self
                        .tree
                        .add_node(Node::other(Kind::Char(l.st.st_rdev), meta)),
                    libc::S_IFBLK => self
                        .tree
                        .add_node(Node::other(Kind::Block(l.st.st_rdev), meta)),
                    _ => continue,
                };
                self.tree.attach(dir, &l.name, id);
            }
            if let Some(e) = listing.error {
                return Err(e);
            }
            // Popped in name order.
            stack[first_subdir..].reverse();
        }
        Ok(())
    }

    /// Adds a regular file: a new name of an inode already met, or a new
    /// inode, hashed now from the cache or later from disk.
    fn file(&mut self, st: &FileStat, meta: Meta, rel: Vec<u8>, known: Option<Known>) -> NodeId {
        let phys = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(&i) = self.links.get(&phys) {
                return self
                    .tree
                    .add_node(Node::other(Kind::File(i), Meta::default()));
            }
        }
        let stamp = Stamp::of(st);
        let cached = match (self.cache.as_mut(), known) {
            (Some(cache), Some(known)) => {
                cache.count(&known);
                known.sha256
            }
            _ => None,
        };
        let job = cached.is_none().then(|| rel.clone());
        let (origin, link, stored_phys) = match self.origin {
            OriginKind::Host => (
                Origin::Host {
                    root: self.root_arc.clone(),
                    path: rel,
                },
                false,
                None,
            ),
            OriginKind::Stored => (
                Origin::Stored {
                    root: self.root_arc.clone(),
                    path: rel,
                },
                true,
                Some(phys),
            ),
        };
        let inode = self.tree.add_inode(Inode {
            meta,
            size: stamp.size,
            sha256: cached.unwrap_or([0; 32]),
            origin,
            link,
            phys: stored_phys,
        });
        if let Some(rel) = job {
            self.jobs.push(HashJob { inode, rel });
        }
        if st.st_nlink > 1 {
            self.links.insert(phys, inode);
        }
        self.tree
            .add_node(Node::other(Kind::File(inode), Meta::default()))
    }

    /// Takes out the directories that were walked only because something
    /// below them might be taken, and nothing was.
    fn prune_descended(&mut self) {
        for (parent, name, id) in std::mem::take(&mut self.descended).into_iter().rev() {
            if self.tree.children(id).next().is_none() {
                self.tree.detach(parent, &name);
            }
        }
    }

    /// Hashes the files the cache did not vouch for, in parallel.
    fn hash_files(&mut self, root_fd: &OwnedFd) -> Result<(), ScanError> {
        let jobs = std::mem::take(&mut self.jobs);
        let results: Vec<Result<Hashed, HashError>> = jobs
            .par_iter()
            .map_init(
                || vec![0u8; 256 * 1024],
                |buf, job| hash_file(root_fd, &job.rel, buf),
            )
            .collect();
        for (job, result) in jobs.into_iter().zip(results) {
            let h = result.map_err(|e| match e {
                HashError::Io(op, err) => self.err(op, &job.rel, err),
                HashError::Changed => ScanError::Changed {
                    path: self.full_path(&job.rel),
                },
            })?;
            let inode = self.tree.inode_mut(job.inode);
            inode.size = h.size;
            inode.sha256 = h.sha256;
            let key = self.full_path(&job.rel).into_os_string().into_vec();
            if let Some(cache) = self.cache.as_mut() {
                match h.stamp {
                    Some(stamp) => {
                        let xattrs = self.tree.inode(job.inode).meta.xattrs.clone();
                        cache.record(key, stamp, h.sha256, xattrs)
                    }
                    None => cache.forget(&key),
                }
            }
        }
        Ok(())
    }
}

struct Hashed {
    size: u64,
    sha256: [u8; 32],
    /// The stamp to cache the hash under; `None` when the file is racy.
    stamp: Option<Stamp>,
}

enum HashError {
    Io(&'static str, io::Error),
    Changed,
}

/// Reads and hashes the file at `rel` below `root`.
fn hash_file(root: &OwnedFd, rel: &[u8], buf: &mut [u8]) -> Result<Hashed, HashError> {
    let started = now_nanos();
    let fd = open_below(
        root.as_fd(),
        rel,
        OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        true,
    )
    .map_err(|e| HashError::Io("open", e.into()))?;
    let st = fstat(&fd).map_err(|e| HashError::Io("stat", e.into()))?;
    if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFREG {
        return Err(HashError::Changed);
    }
    let mut file = File::from(fd);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(HashError::Io("read", e)),
        }
    }
    let stamp = Stamp::of(&st);
    let racy = stamp.ctime_ns.saturating_add(RACY_NS) >= started || size != stamp.size;
    Ok(Hashed {
        size,
        sha256: hasher.finalize().into(),
        stamp: (!racy).then_some(stamp),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tree::manifest::manifest;
    use nix::fcntl::openat;
    use nix::sys::stat::mkdirat;
    use std::io::Write;

    fn paths(tree: &Tree) -> Vec<String> {
        manifest(tree).into_iter().map(|e| e.path).collect()
    }

    fn filtered(dir: &Path, include: &[&str], exclude: &[&str]) -> Tree {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let filter = Filter::new(&s(include), &s(exclude)).unwrap();
        scan(
            dir,
            ScanOptions {
                filter: Some(&filter),
                ..ScanOptions::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn filters_take_skip_and_descend() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for dir in ["target/debug", "src/gen", "a/b", "a/c", "docs"] {
            std::fs::create_dir_all(d.join(dir)).unwrap();
        }
        for f in [
            "target/debug/x.o",
            "src/main.rs",
            "src/gen/g.rs",
            "a/b/x.rs",
            "a/b/y.txt",
            "a/c/z.txt",
            "docs/d.md",
            "top.rs",
        ] {
            std::fs::write(d.join(f), f).unwrap();
        }
        assert_eq!(
            paths(&filtered(d, &[], &["target/**"])),
            [
                "a",
                "a/b",
                "a/b/x.rs",
                "a/b/y.txt",
                "a/c",
                "a/c/z.txt",
                "docs",
                "docs/d.md",
                "src",
                "src/gen",
                "src/gen/g.rs",
                "src/main.rs",
                "target",
                "top.rs"
            ]
        );
        // descended directories come along only as parents of what is taken
        assert_eq!(
            paths(&filtered(d, &["**/*.rs"], &["src/gen"])),
            ["a", "a/b", "a/b/x.rs", "src", "src/main.rs", "top.rs"]
        );
        assert_eq!(
            paths(&filtered(d, &["a/*/x.rs"], &[])),
            ["a", "a/b", "a/b/x.rs"]
        );
        assert_eq!(paths(&filtered(d, &["nothing"], &[])), Vec::<String>::new());
        // an excluded directory with an exception below it is its parent
        assert_eq!(
            paths(&filtered(
                d,
                &[],
                &["a", "!a/c/z.txt", "docs", "src", "target", "*.rs"]
            )),
            ["a", "a/c", "a/c/z.txt"]
        );
        // the parent keeps its own metadata
        let meta = std::fs::metadata(d.join("a")).unwrap();
        let t = filtered(d, &["a/c"], &[]);
        assert_eq!(manifest(&t)[0].mtime, meta.mtime());
        assert_eq!(
            manifest(&t)[0].mode,
            format!("{:04o}", meta.mode() & 0o7777)
        );
    }

    use std::os::unix::fs::MetadataExt;

    #[test]
    fn stat_cache_skips_unchanged_files() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        for k in 0..20 {
            std::fs::write(src.join(format!("sub/f{k}")), format!("file {k}")).unwrap();
        }
        std::fs::write(src.join("big"), vec![7u8; 300_000]).unwrap();
        std::fs::hard_link(src.join("big"), src.join("sub/big2")).unwrap();
        // an xattr the cache must keep (where the filesystem has them)
        let xattr = xattr::set(src.join("sub/f1"), "user.hm", b"kept").is_ok();
        // Files this fresh are racy: give their ctimes time to settle.
        std::thread::sleep(std::time::Duration::from_millis(
            2 * RACY_NS as u64 / 1_000_000,
        ));
        let mut cache = StatCache::new();
        let with = |cache: &mut StatCache| {
            scan(
                &src,
                ScanOptions {
                    stat_cache: Some(cache),
                    ..ScanOptions::default()
                },
            )
            .unwrap()
        };
        let first = with(&mut cache);
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (0, 21, 21));
        let second = with(&mut cache);
        assert_eq!((cache.hits(), cache.misses()), (21, 21));
        let digest = crate::tree::manifest::tree_digest(&first);
        assert_eq!(crate::tree::manifest::tree_digest(&second), digest);

        // a saved cache serves the next process the same way
        let file = tmp.path().join("cache");
        cache.save(&file).unwrap();
        let mut loaded = StatCache::load(&file);
        assert_eq!(loaded.len(), 21);
        let from_cache = with(&mut loaded);
        assert_eq!((loaded.hits(), loaded.misses()), (21, 0));
        assert_eq!(crate::tree::manifest::tree_digest(&from_cache), digest);
        if xattr {
            let e = manifest(&from_cache)
                .into_iter()
                .find(|e| e.path == "sub/f1")
                .unwrap();
            assert_eq!(
                e.xattrs.unwrap()["user.hm"],
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"kept")
            );
        }
        // nothing changed: nothing to save
        loaded.prune_unseen();
        assert!(!loaded.is_dirty());

        // one file changed: only it is read again
        std::fs::write(src.join("sub/f3"), "changed!").unwrap();
        let t = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        filetime::set_file_mtime(src.join("sub/f3"), t).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(
            2 * RACY_NS as u64 / 1_000_000,
        ));
        let third = with(&mut loaded);
        assert_eq!((loaded.hits(), loaded.misses()), (41, 1));
        assert!(loaded.is_dirty(), "a new hash is worth saving");
        let e = manifest(&third)
            .into_iter()
            .find(|e| e.path == "sub/f3")
            .unwrap();
        assert_eq!(e.sha256.unwrap(), hex::encode(Sha256::digest(b"changed!")));
        assert_ne!(crate::tree::manifest::tree_digest(&third), digest);

        // a file changed just now is hashed but not trusted to the cache
        std::fs::write(src.join("sub/f4"), "racy").unwrap();
        with(&mut loaded);
        assert_eq!(loaded.misses(), 2);
        with(&mut loaded);
        assert_eq!(loaded.misses(), 3);

        // deleted files are forgotten on request
        std::fs::remove_file(src.join("sub/f5")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(
            2 * RACY_NS as u64 / 1_000_000,
        ));
        let mut fresh = StatCache::load(&file);
        with(&mut fresh);
        fresh.prune_unseen();
        assert_eq!(fresh.len(), 20);
    }

    /// The name of each level of [`deep_tree`]: long, so that a few
    /// hundred levels pass PATH_MAX and the runs between kept descriptors
    /// pass the length of one `*at` path.
    pub(crate) const DEEP: &str = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

    /// Makes `levels` nested directories [`DEEP`] below `root` (deeper than
    /// PATH_MAX allows by path), each also holding a file `f` and, every
    /// seventh level, a directory `e` with a file, so a walk must come back
    /// to directories deeper than it keeps open.
    pub(crate) fn deep_tree(root: &Path, levels: usize) {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut fd = open(root, flags, Mode::empty()).unwrap();
        for k in 0..levels {
            let file = openat(
                &fd,
                "f",
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            File::from(file)
                .write_all(format!("level {k}").as_bytes())
                .unwrap();
            if k % 7 == 0 {
                mkdirat(&fd, "e", Mode::from_bits_truncate(0o750)).unwrap();
                let e = openat(&fd, "e", flags, Mode::empty()).unwrap();
                let x = openat(
                    &e,
                    "x",
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .unwrap();
                File::from(x).write_all(b"x").unwrap();
            }
            if k == levels - 1 {
                nix::unistd::symlinkat("../f", &fd, "up").unwrap();
                break;
            }
            mkdirat(&fd, DEEP, Mode::from_bits_truncate(0o755)).unwrap();
            fd = openat(&fd, DEEP, flags, Mode::empty()).unwrap();
        }
    }

    #[test]
    fn trees_deeper_than_path_max_scan() {
        let tmp = tempfile::tempdir().unwrap();
        let levels = 300; // 18 kB of path
        deep_tree(tmp.path(), levels);
        let tree = scan(tmp.path(), ScanOptions::default()).unwrap();
        let mut at = Tree::ROOT;
        for k in 0..levels {
            let f = tree.child(at, b"f").unwrap();
            let Kind::File(i) = tree.node(f).kind else {
                panic!()
            };
            assert_eq!(
                tree.inode(i).sha256,
                <[u8; 32]>::from(Sha256::digest(format!("level {k}")))
            );
            assert_eq!(tree.child(at, b"e").is_some(), k % 7 == 0);
            if let Some(e) = tree.child(at, b"e") {
                assert!(tree.child(e, b"x").is_some());
            }
            match tree.child(at, DEEP.as_bytes()) {
                Some(d) => at = d,
                None => assert_eq!(k, levels - 1),
            }
        }
        assert_eq!(
            tree.node(tree.child(at, b"up").unwrap()).kind,
            Kind::Symlink(b"../f".to_vec())
        );
        // a filter sees the full relative paths, however deep
        let filter = Filter::new(&[], &["**/e".to_string()]).unwrap();
        let t = scan(
            tmp.path(),
            ScanOptions {
                filter: Some(&filter),
                ..ScanOptions::default()
            },
        )
        .unwrap();
        assert!(t.lookup(b"e").is_none());
        assert!(t.lookup(format!("{DEEP}/f").as_bytes()).is_some());
    }

    /// Directories are read in parallel, but the error a scan reports is
    /// the first a depth-first walk meets: here two branches are too deep,
    /// and the one under `a` is always named, however the reads interleave.
    #[test]
    fn the_first_error_in_walk_order_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let levels = MAX_PATH_BYTES / (DEEP.len() + 1) + 2;
        for branch in ["a", "b"] {
            std::fs::create_dir(tmp.path().join(branch)).unwrap();
            deep_tree(&tmp.path().join(branch), levels);
        }
        std::fs::write(tmp.path().join("c"), b"after").unwrap();
        for _ in 0..4 {
            let e = scan(tmp.path(), ScanOptions::default()).unwrap_err();
            let ScanError::TooDeep { shown, .. } = &e else {
                panic!("{e}");
            };
            let prefix = tmp.path().join("a").join(DEEP);
            assert!(shown.starts_with(&prefix), "{}", shown.display());
        }
    }

    /// A directory large enough to be read in parallel keeps name order,
    /// filters, hardlink groups and symlinks as a small one does.
    #[test]
    fn large_directories_read_in_parallel_keep_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let n = 3 * PARALLEL_ENTRIES;
        for k in 0..n {
            let name = format!("f{k:04}.{}", if k % 3 == 0 { "skip" } else { "txt" });
            std::fs::write(tmp.path().join(name), format!("{k}")).unwrap();
        }
        std::fs::hard_link(tmp.path().join("f0001.txt"), tmp.path().join("z-link")).unwrap();
        std::os::unix::fs::symlink("f0001.txt", tmp.path().join("z-sym")).unwrap();
        std::fs::create_dir(tmp.path().join("z-dir")).unwrap();
        std::fs::write(tmp.path().join("z-dir/inner.skip"), b"x").unwrap();
        let tree = filtered(tmp.path(), &[], &["**/*.skip"]);
        let mut want: Vec<String> = (0..n)
            .filter(|k| k % 3 != 0)
            .map(|k| format!("f{k:04}.txt"))
            .collect();
        want.extend(["z-dir", "z-link", "z-sym"].map(String::from));
        assert_eq!(paths(&tree), want);
        let inode = |path: &[u8]| match tree.node(tree.lookup(path).unwrap()).kind {
            Kind::File(i) => i,
            ref k => panic!("{k:?}"),
        };
        assert_eq!(inode(b"f0001.txt"), inode(b"z-link"));
        assert_ne!(inode(b"f0001.txt"), inode(b"f0002.txt"));
        assert_eq!(
            tree.node(tree.lookup(b"z-sym").unwrap()).kind,
            Kind::Symlink(b"f0001.txt".to_vec())
        );
        assert_eq!(
            tree.inode(inode(b"f0100.txt")).sha256,
            <[u8; 32]>::from(Sha256::digest(b"100"))
        );
    }

    #[test]
    fn stored_scans_record_phys_and_link() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), b"x").unwrap();
        let t = scan(
            tmp.path(),
            ScanOptions {
                origin: OriginKind::Stored,
                ..ScanOptions::default()
            },
        )
        .unwrap();
        let m = std::fs::metadata(tmp.path().join("a")).unwrap();
        let inode = &t.inodes()[0];
        assert!(inode.link);
        assert_eq!(inode.phys, Some((m.dev(), m.ino())));
        assert_eq!(
            inode.origin,
            Origin::Stored {
                root: Arc::new(tmp.path().to_path_buf()),
                path: b"a".to_vec()
            }
        );
        let t = scan(tmp.path(), ScanOptions::default()).unwrap();
        let inode = &t.inodes()[0];
        assert!(!inode.link && inode.phys.is_none());
        assert_eq!(
            inode.origin,
            Origin::Host {
                root: Arc::new(tmp.path().to_path_buf()),
                path: b"a".to_vec()
            }
        );
    }
}
