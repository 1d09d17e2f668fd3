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
//! is read cannot lead the scan outside it. It runs in two phases: the
//! structure first (one thread, iterative, any depth), then the contents of
//! the files the [`StatCache`] does not vouch for, hashed in parallel.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{open, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::pattern::{Decision, Filter};
use super::{join_rel, keep_open, nanos, now_nanos, open_below, read_entries, read_xattrs_at};
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
    /// A host folder (a `local` source): [`Origin::Host`] with the file's
    /// absolute path, never linked.
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

/// An entry's `lstat` and xattrs, read ahead (see [`Walker::prefetch`]);
/// each is taken once.
struct Fetched {
    st: Option<nix::Result<FileStat>>,
    xattrs: Option<io::Result<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

/// The xattrs of a regular file the stat cache vouches for (same stamp):
/// they need not be read again. `full` gives the file's absolute path, the
/// cache's key.
fn cached_xattrs(
    cache: Option<&StatCache>,
    st: &FileStat,
    full: impl FnOnce() -> Vec<u8>,
) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
    let cache = cache?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || cache.is_empty() {
        return None;
    }
    cache.xattrs(&full(), &Stamp::of(st)).cloned()
}

/// What identifies an unchanged file: if all of it is equal, so is the
/// content (the same rule as git's index and BuildKit's content hash cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(st: &FileStat) -> Stamp {
        Stamp {
            size: st.st_size as u64,
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
            dev: st.st_dev,
        }
    }
}

#[derive(Clone, Debug)]
struct Cached {
    stamp: Stamp,
    sha256: [u8; 32],
    /// The file's xattrs (setting one changes the ctime, so the stamp
    /// vouches for them too).
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    seen: bool,
}

/// Hashes of files from earlier scans, by absolute path, each valid while
/// the file's size, mtime, ctime, inode and device are unchanged.
///
/// A file changed within the kernel's timestamp granularity of being hashed
/// could keep its stamp; such "racy" files (ctime within [`RACY_NS`] of the
/// moment the scan read them) are not recorded, so the next scan hashes them
/// again, as git does with its index.
#[derive(Clone, Debug, Default)]
pub struct StatCache {
    map: rustc_hash::FxHashMap<Vec<u8>, Cached>,
    hits: u64,
    misses: u64,
    /// Whether it differs from the file it was loaded from.
    dirty: bool,
}

/// How close to its hashing a file's ctime makes the file racy (the kernel
/// stamps files with a clock that may lag by a tick, 10 ms at HZ=100).
pub const RACY_NS: i64 = 50_000_000;

const CACHE_MAGIC: &[u8] = b"hardmerge statcache 2\n";
const CACHE_RECORD: usize = 8 * 5 + 32;

impl StatCache {
    /// An empty cache.
    pub fn new() -> StatCache {
        StatCache::default()
    }

    /// Reads a cache file. A missing, unreadable or damaged file gives an
    /// empty cache: the cache only saves work, it is never needed.
    pub fn load(path: &Path) -> StatCache {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| StatCache::decode(&bytes))
            .unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<StatCache> {
        let body_len = bytes.len().checked_sub(32)?;
        let (body, sum) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != sum {
            return None;
        }
        let mut rest = body.strip_prefix(CACHE_MAGIC)?;
        // Sized once (a record is at least 80 bytes): no rehashing as it fills.
        let mut map = rustc_hash::FxHashMap::with_capacity_and_hasher(
            rest.len() / (4 + CACHE_RECORD + 4 + 8),
            Default::default(),
        );
        let u64_at =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let key = rest.get(4..4 + len)?.to_vec();
            let rec = rest.get(4 + len..4 + len + CACHE_RECORD)?;
            let stamp = Stamp {
                size: u64_at(rec, 0),
                mtime_ns: u64_at(rec, 1) as i64,
                ctime_ns: u64_at(rec, 2) as i64,
                ino: u64_at(rec, 3),
                dev: u64_at(rec, 4),
            };
            let sha256 = rec[40..72].try_into().ok()?;
            rest = &rest[4 + len + CACHE_RECORD..];
            let take = |rest: &mut &[u8]| -> Option<Vec<u8>> {
                let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
                let v = rest.get(4..4 + n)?.to_vec();
                *rest = &rest[4 + n..];
                Some(v)
            };
            let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
            rest = &rest[4..];
            let mut xattrs = BTreeMap::new();
            for _ in 0..count {
                let k = take(&mut rest)?;
                let v = take(&mut rest)?;
                xattrs.insert(k, v);
            }
            map.insert(
                key,
                Cached {
                    stamp,
                    sha256,
                    xattrs,
                    seen: false,
                },
            );
        }
        Some(StatCache {
            map,
            hits: 0,
            misses: 0,
            dirty: false,
        })
    }

    /// Writes the cache to `path` (a new file renamed into place, so a
    /// reader never sees half of it; a torn file fails its checksum and
    /// reads as empty).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut out = Vec::with_capacity(CACHE_MAGIC.len() + self.map.len() * 128 + 32);
        out.extend_from_slice(CACHE_MAGIC);
        let mut keys: Vec<&Vec<u8>> = self.map.keys().collect();
        keys.sort_unstable();
        for key in keys {
            let c = &self.map[key];
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            for v in [
                c.stamp.size,
                c.stamp.mtime_ns as u64,
                c.stamp.ctime_ns as u64,
                c.stamp.ino,
                c.stamp.dev,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&c.sha256);
            out.extend_from_slice(&(c.xattrs.len() as u32).to_le_bytes());
            for (k, v) in &c.xattrs {
                for part in [k, v] {
                    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
                    out.extend_from_slice(part);
                }
            }
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = File::create(&tmp).and_then(|mut f| f.write_all(&out));
        match written.and_then(|()| std::fs::rename(&tmp, path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Files whose hash scans took from the cache, since it was made.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Files scans had to hash, since the cache was made.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Number of files the cache knows.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache knows no file.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Forgets the files no scan has looked at since the cache was loaded
    /// (deleted files, or sources no longer built), to keep it small.
    pub fn prune_unseen(&mut self) {
        let before = self.map.len();
        self.map.retain(|_, c| c.seen);
        self.dirty |= self.map.len() != before;
    }

    /// Whether it changed since it was loaded (or made): an unchanged cache
    /// need not be saved again.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    fn lookup(&mut self, key: &[u8], stamp: &Stamp) -> Option<[u8; 32]> {
        let hit = match self.map.get_mut(key) {
            Some(c) => {
                c.seen = true;
                (c.stamp == *stamp).then_some(c.sha256)
            }
            None => None,
        };
        match hit {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        hit
    }

    fn record(
        &mut self,
        key: Vec<u8>,
        stamp: Stamp,
        sha256: [u8; 32],
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    ) {
        self.dirty = true;
        self.map.insert(
            key,
            Cached {
                stamp,
                sha256,
                xattrs,
                seen: true,
            },
        );
    }

    /// The xattrs of the file at `key` when its stamp is `stamp` (a read
    /// that counts neither as a hit nor as a miss).
    fn xattrs(&self, key: &[u8], stamp: &Stamp) -> Option<&BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map
            .get(key)
            .filter(|c| c.stamp == *stamp)
            .map(|c| &c.xattrs)
    }

    fn forget(&mut self, key: &[u8]) {
        self.dirty |= self.map.remove(key).is_some();
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
    let root_fd = Rc::new(root_fd);
    let mut walker = Walker {
        root_bytes: root.as_os_str().as_bytes().to_vec(),
        root_arc: Arc::new(root),
        filter: filter.filter(|f| !f.is_trivial()),
        owner,
        origin,
        tree: Tree::new(),
        path: Vec::new(),
        bounds: vec![0],
        fds: vec![Some(root_fd.clone())],
        descended: Vec::new(),
        links: HashMap::new(),
        jobs: Vec::new(),
        cache: stat_cache,
    };
    walker.walk(&root_fd)?;
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
    /// Its stat cache key (the absolute path).
    key: Vec<u8>,
}

/// A directory waiting to be read.
struct Pending {
    node: NodeId,
    depth: usize,
    name: Vec<u8>,
}

struct Walker<'a> {
    root_arc: Arc<PathBuf>,
    root_bytes: Vec<u8>,
    filter: Option<&'a Filter>,
    owner: Option<(u32, u32)>,
    origin: OriginKind,
    tree: Tree,
    /// The path of the directory being read, relative to the root.
    path: Vec<u8>,
    /// `bounds[d]`: the length of `path` at the directory of depth `d` on
    /// the current branch (a depth-first walk only ever returns to an
    /// ancestor, so one buffer serves every directory).
    bounds: Vec<usize>,
    /// `fds[d]`: that directory's descriptor, if kept open.
    fds: Vec<Option<Rc<OwnedFd>>>,
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
        let mut p = self.root_bytes.clone();
        if !rel.is_empty() {
            p.push(b'/');
            p.extend_from_slice(rel);
        }
        PathBuf::from(OsStr::from_bytes(&p))
    }

    fn err(&self, op: &'static str, rel: &[u8], error: impl Into<io::Error>) -> ScanError {
        io_err(op, &self.full_path(rel), error.into())
    }

    fn walk(&mut self, root_fd: &Rc<OwnedFd>) -> Result<(), ScanError> {
        let mut stack = Vec::new();
        self.read_dir(root_fd, Tree::ROOT, 0, &mut stack)?;
        while let Some(p) = stack.pop() {
            let d = p.depth;
            self.path.truncate(self.bounds[d - 1]);
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&p.name);
            if self.path.len() > MAX_PATH_BYTES {
                let shown = String::from_utf8_lossy(&self.path[..120]).into_owned() + "...";
                return Err(ScanError::TooDeep {
                    root: PathBuf::from(OsStr::from_bytes(&self.root_bytes)),
                    shown: self.full_path(shown.as_bytes()),
                });
            }
            self.bounds.truncate(d);
            self.bounds.push(self.path.len());
            self.fds.truncate(d);
            let parent = self.dir_fd(d - 1)?;
            let fd = open_below(
                parent.as_fd(),
                &p.name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                true,
            )
            .map_err(|e| self.err("open directory", &self.path, e))?;
            drop(parent);
            let fd = Rc::new(fd);
            self.read_dir(&fd, p.node, d, &mut stack)?;
            self.fds.push(keep_open(d).then_some(fd));
        }
        Ok(())
    }

    /// The descriptor of the directory at depth `d` of the current branch,
    /// reopened from the nearest open ancestor when it was not kept.
    fn dir_fd(&self, d: usize) -> Result<Rc<OwnedFd>, ScanError> {
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
            true,
        )
        .map(Rc::new)
        .map_err(|e| self.err("open directory", &self.path[..self.bounds[d]], e))
    }

    /// Reads the entries of directory `node` (open as `fd`, at depth `depth`,
    /// its path in `self.path`), adding them to the tree and its
    /// subdirectories to `stack`.
    fn read_dir(
        &mut self,
        fd: &OwnedFd,
        node: NodeId,
        depth: usize,
        stack: &mut Vec<Pending>,
    ) -> Result<(), ScanError> {
        let mut entries =
            read_entries(fd.as_fd()).map_err(|e| self.err("read directory", &self.path, e))?;
        entries.sort_unstable();
        let mut fetched = self.prefetch(fd, &entries);
        let first_subdir = stack.len();
        for (k, (name, dtype)) in entries.into_iter().enumerate() {
            let rel = join_rel(&self.path, &name);
            let mut pre = fetched.as_mut().and_then(|f| f[k].take());
            let mut st = None;
            let guess_dir = match dtype {
                libc::DT_DIR => true,
                libc::DT_UNKNOWN => {
                    let s = match self.lstat_or(pre.as_mut(), fd, &name, &rel)? {
                        Some(s) => s,
                        None => continue,
                    };
                    let is_dir = s.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    st = Some(s);
                    is_dir
                }
                _ => false,
            };
            let mut decision = self.decide(&rel, guess_dir);
            if decision == Decision::Skip {
                continue;
            }
            let st = match st {
                Some(s) => s,
                None => match self.lstat_or(pre.as_mut(), fd, &name, &rel)? {
                    Some(s) => s,
                    None => continue,
                },
            };
            let fmt = st.st_mode & libc::S_IFMT;
            if (fmt == libc::S_IFDIR) != guess_dir {
                // Replaced between readdir and lstat: decide on what is there.
                decision = self.decide(&rel, fmt == libc::S_IFDIR);
                if decision == Decision::Skip {
                    continue;
                }
            }
            // Prefetched xattrs were read after the stat used here; an entry
            // replaced in between is read again.
            let full = || self.full_path(&rel).into_os_string().into_vec();
            let xattrs = match pre.and_then(|p| p.xattrs) {
                Some(x) if (fmt == libc::S_IFDIR) == guess_dir => x,
                _ => match cached_xattrs(self.cache.as_deref(), &st, full) {
                    Some(x) => Ok(x),
                    None => read_xattrs_at(fd.as_fd(), &name, full),
                },
            }
            .map_err(|e| self.err("read xattrs of", &rel, e))?;
            let (uid, gid) = self.owner.unwrap_or((st.st_uid, st.st_gid));
            let mut meta = Meta {
                mode: st.st_mode & 0o7777,
                uid,
                gid,
                mtime: st.st_mtime,
                xattrs,
            };
            let id = match fmt {
                libc::S_IFDIR => {
                    let id = self.tree.add_node(Node::dir(meta));
                    if decision == Decision::Descend {
                        self.descended.push((node, name.clone(), id));
                    }
                    stack.push(Pending {
                        node: id,
                        depth: depth + 1,
                        name: name.clone(),
                    });
                    id
                }
                libc::S_IFREG => self.file(&st, meta, rel),
                libc::S_IFLNK => {
                    meta.mode = 0o777;
                    let target = match readlinkat(fd.as_fd(), name.as_slice()) {
                        Ok(t) => t.into_vec(),
                        Err(Errno::ENOENT) => continue,
                        Err(e) => return Err(self.err("read symlink", &rel, e)),
                    };
                    self.tree.add_node(Node::other(Kind::Symlink(target), meta))
                }
                libc::S_IFIFO => self.tree.add_node(Node::other(Kind::Fifo, meta)),
                libc::S_IFSOCK => self.tree.add_node(Node::other(Kind::Socket, meta)),
                libc::S_IFCHR => self
                    .tree
                    .add_node(Node::other(Kind::Char(st.st_rdev), meta)),
                libc::S_IFBLK => self
                    .tree
                    .add_node(Node::other(Kind::Block(st.st_rdev), meta)),
                _ => continue,
            };
            self.tree.attach(node, &name, id);
        }
        // Popped in name order.
        stack[first_subdir..].reverse();
        Ok(())
    }

    fn decide(&self, rel: &[u8], is_dir: bool) -> Decision {
        match self.filter {
            Some(f) => f.decide_bytes(rel, is_dir),
            None => Decision::Take,
        }
    }

    /// The `lstat` and xattrs of a large directory's entries, read in
    /// parallel (most of a scan is these two calls per entry); `None` for
    /// small directories, read one entry at a time. Entries the filter skips
    /// on their listed type are not read.
    fn prefetch(&self, fd: &OwnedFd, entries: &[(Vec<u8>, u8)]) -> Option<Vec<Option<Fetched>>> {
        const PARALLEL_MIN: usize = 8;
        if entries.len() < PARALLEL_MIN {
            return None;
        }
        let wanted: Vec<bool> = entries
            .iter()
            .map(|(name, dtype)| {
                *dtype == libc::DT_UNKNOWN
                    || self.decide(&join_rel(&self.path, name), *dtype == libc::DT_DIR)
                        != Decision::Skip
            })
            .collect();
        let dir_path = self.full_path(&self.path).into_os_string().into_vec();
        let dir = fd.as_fd();
        let cache = self.cache.as_deref();
        Some(
            entries
                .par_iter()
                .zip(wanted.par_iter())
                .map(|((name, _), &wanted)| {
                    if !wanted {
                        return None;
                    }
                    let st = fstatat(dir, name.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW);
                    let full = || {
                        let mut p = dir_path.clone();
                        p.push(b'/');
                        p.extend_from_slice(name);
                        p
                    };
                    let xattrs = st
                        .as_ref()
                        .ok()
                        .map(|st| match cached_xattrs(cache, st, full) {
                            Some(x) => Ok(x),
                            None => read_xattrs_at(dir, name, full),
                        });
                    Some(Fetched {
                        st: Some(st),
                        xattrs,
                    })
                })
                .collect(),
        )
    }

    /// [`Walker::lstat`], taken from a prefetch when there is one.
    fn lstat_or(
        &self,
        pre: Option<&mut Fetched>,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
    ) -> Result<Option<FileStat>, ScanError> {
        match pre.and_then(|p| p.st.take()) {
            Some(Ok(st)) => Ok(Some(st)),
            Some(Err(Errno::ENOENT)) => Ok(None),
            Some(Err(e)) => Err(self.err("stat", rel, e)),
            None => self.lstat(dir, name, rel),
        }
    }

    /// `lstat` of an entry; `None` when it vanished since it was listed.
    fn lstat(&self, dir: &OwnedFd, name: &[u8], rel: &[u8]) -> Result<Option<FileStat>, ScanError> {
        match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.err("stat", rel, e)),
        }
    }

    /// Adds a regular file: a new name of an inode already met, or a new
    /// inode, hashed now from the cache or later from disk.
    fn file(&mut self, st: &FileStat, meta: Meta, rel: Vec<u8>) -> NodeId {
        let phys = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(&i) = self.links.get(&phys) {
                return self
                    .tree
                    .add_node(Node::other(Kind::File(i), Meta::default()));
            }
        }
        let key = {
            let mut k = self.root_bytes.clone();
            k.push(b'/');
            k.extend_from_slice(&rel);
            k
        };
        let (origin, link, stored_phys) = match self.origin {
            OriginKind::Host => (
                Origin::Host(Arc::new(PathBuf::from(OsStr::from_bytes(&key)))),
                false,
                None,
            ),
            OriginKind::Stored => (
                Origin::Stored {
                    root: self.root_arc.clone(),
                    path: rel.clone(),
                },
                true,
                Some(phys),
            ),
        };
        let stamp = Stamp::of(st);
        let cached = self.cache.as_mut().and_then(|c| c.lookup(&key, &stamp));
        let inode = self.tree.add_inode(Inode {
            meta,
            size: stamp.size,
            sha256: cached.unwrap_or([0; 32]),
            origin,
            link,
            phys: stored_phys,
        });
        if cached.is_none() {
            self.jobs.push(HashJob { inode, rel, key });
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
            if let Some(cache) = self.cache.as_mut() {
                match h.stamp {
                    Some(stamp) => {
                        let xattrs = self.tree.inode(job.inode).meta.xattrs.clone();
                        cache.record(job.key, stamp, h.sha256, xattrs)
                    }
                    None => cache.forget(&job.key),
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

    #[test]
    fn damaged_or_missing_cache_files_read_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(StatCache::load(&tmp.path().join("none")).is_empty());
        let mut c = StatCache::new();
        let stamp = Stamp {
            size: 1,
            mtime_ns: -5,
            ctime_ns: 7,
            ino: 8,
            dev: 9,
        };
        let xattrs: BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"user.a".to_vec(), b"\0\xff".to_vec()),
            (b"user.b".to_vec(), Vec::new()),
        ]
        .into();
        c.record(b"/a/\xff\nname".to_vec(), stamp, [3; 32], xattrs.clone());
        c.record(b"/b".to_vec(), stamp, [4; 32], BTreeMap::new());
        let file = tmp.path().join("c");
        c.save(&file).unwrap();
        let mut back = StatCache::load(&file);
        assert_eq!(back.lookup(b"/a/\xff\nname", &stamp), Some([3; 32]));
        assert_eq!(back.xattrs(b"/a/\xff\nname", &stamp), Some(&xattrs));
        assert_eq!(back.lookup(b"/b", &stamp), Some([4; 32]));
        let other = Stamp {
            ctime_ns: 8,
            ..stamp
        };
        assert_eq!(back.xattrs(b"/a/\xff\nname", &other), None);
        let mut bytes = std::fs::read(&file).unwrap();
        for cut in [0, 5, CACHE_MAGIC.len() + 3, bytes.len() - 1] {
            std::fs::write(&file, &bytes[..cut]).unwrap();
            assert!(StatCache::load(&file).is_empty(), "cut at {cut}");
        }
        bytes[CACHE_MAGIC.len() + 6] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(StatCache::load(&file).is_empty());
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
        assert_eq!(inode.origin, Origin::Host(Arc::new(tmp.path().join("a"))));
    }
}
