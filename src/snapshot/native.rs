//! The native snapshotter: a folder of plain directory trees.
//!
//! ```text
//! STORE/
//!   VERSION                 "hardmerge store 1"
//!   lock, holders/          the store lock (builds share it, prune takes it alone)
//!   snapshots/HEX/          committed: tree/, record.json.gz (every entry, to
//!                           rebuild the Tree without reading files), info.json
//!   work/NAME, NAME.lock    work areas; a lock nobody holds is a dead
//!                           process's leftover, removed at the next open
//!   stat-cache/HEX          hashes of local sources' files, by stat
//! ```

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::lock::{self, HeldLock, Mode};
use super::{Committed, Info, Key, Snapshotter, StoreError, Write};
use crate::fs::materialize::{
    materialize, write_stored_tree, LinkPolicy, MaterializeError, Materialized,
};
use crate::tree::manifest::{record, record_parts, tree_from_record, Record};
use crate::tree::{Kind, Origin, Tree};

const VERSION: &str = "hardmerge store 1\n";

/// A snapshot's record: every entry of its tree, gzip-compressed JSON (a
/// 50,000-file record is a few megabytes; compressed, a fraction of that).
const RECORD: &str = "record.json.gz";

/// A record as the bytes of its file: gzip-compressed JSON.
fn encode_record(rec: &Record) -> Vec<u8> {
    // The serialiser makes many small writes: buffer them before the
    // encoder, which does work per write call.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, gz);
    serde_json::to_writer(&mut w, rec).expect("writing to memory");
    let gz = w.into_inner().expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// A store folder opened by this process.
pub struct NativeStore {
    root: PathBuf,
    _lock: HeldLock,
    views: Mutex<HashMap<Key, Arc<Tree>>>,
    counter: AtomicU64,
}

fn unusable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unusable {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn hex_of(key: &str) -> &str {
    key.strip_prefix("sha256:").unwrap_or(key)
}

/// A private area of the store a commit writes in; removed unless renamed.
struct WorkArea {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: HeldLock,
    keep: bool,
}

impl Drop for WorkArea {
    fn drop(&mut self) {
        if !self.keep {
            let _ = crate::fs::remove::remove_all(&self.dir);
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

impl NativeStore {
    /// Opens (creating if needed) the store at `root`, taking its lock in
    /// `mode` and discarding the leftovers of killed processes. `waiting`
    /// is told who holds the lock if this process has to wait for it.
    pub fn open(
        root: &Path,
        mode: Mode,
        what: &str,
        waiting: &dyn Fn(&[String]),
    ) -> Result<NativeStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| unusable(root, e))?;
        let root = root.canonicalize().map_err(|e| unusable(root, e))?;
        let version = root.join("VERSION");
        match std::fs::read_to_string(&version) {
            Ok(v) if v == VERSION => {}
            Ok(v) => {
                return Err(unusable(
                    &version,
                    format!("not a hardmerge store of this version ({:?})", v.trim()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Several processes may create one store at once: only the
                // store's own names are allowed in a folder becoming one,
                // and VERSION appears whole (written aside, then renamed).
                let foreign = std::fs::read_dir(&root)
                    .map_err(|e| unusable(&root, e))?
                    .flatten()
                    .any(|e| {
                        let n = e.file_name().to_string_lossy().to_string();
                        !(n.starts_with("VERSION")
                            || ["lock", "holders", "snapshots", "work", "stat-cache"]
                                .contains(&n.as_str()))
                    });
                if foreign {
                    return Err(unusable(
                        &root,
                        "exists, is not empty and is not a hardmerge store",
                    ));
                }
                let tmp = root.join(format!("VERSION.tmp{}", std::process::id()));
                std::fs::write(&tmp, VERSION).map_err(|e| unusable(&tmp, e))?;
                std::fs::rename(&tmp, &version).map_err(|e| unusable(&version, e))?;
            }
            Err(e) => return Err(unusable(&version, e)),
        }
        for d in ["snapshots", "work", "stat-cache", "holders"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| unusable(&root.join(d), e))?;
        }
        let held = lock::lock(
            &root.join("lock"),
            &root.join("holders"),
            mode,
            what,
            waiting,
        )
        .map_err(|e| unusable(&root.join("lock"), e))?;
        let store = NativeStore {
            root,
            _lock: held,
            views: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        };
        store.discard_leftovers()?;
        Ok(store)
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where local sources' stat caches live.
    pub fn stat_cache_path(&self, source: &Path) -> PathBuf {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(source.as_os_str().as_encoded_bytes());
        self.root.join("stat-cache").join(hex::encode(h))
    }

    fn snap_dir(&self, key: &str) -> PathBuf {
        self.root.join("snapshots").join(hex_of(key))
    }

    /// Removes work areas whose lock nobody holds (their process died).
    fn discard_leftovers(&self) -> Result<(), StoreError> {
        let work = self.root.join("work");
        let entries = std::fs::read_dir(&work).map_err(|e| unusable(&work, e))?;
        let mut locks = HashSet::new();
        let mut dirs = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            match name.strip_suffix(".lock") {
                Some(base) => {
                    locks.insert(base.to_string());
                }
                None => dirs.push(name),
            }
        }
        for base in &locks {
            let lock_path = work.join(format!("{base}.lock"));
            // A lock file is created, then locked: in that gap it is free
            // though its process lives. So a free lock of a live process
            // counts only once it is old (its pid may have been reused).
            let pid_alive = base
                .split('-')
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .map(|p| Path::new(&format!("/proc/{p}")).exists())
                .unwrap_or(false);
            let young = std::fs::metadata(&lock_path)
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().map(|d| d.as_secs() < 10).unwrap_or(true))
                .unwrap_or(false);
            if pid_alive && young {
                continue;
            }
            if let Ok(Some(_held)) = lock::try_exclusive(&lock_path) {
                let _ = crate::fs::remove::remove_all(&work.join(base));
                let _ = std::fs::remove_file(&lock_path);
            }
        }
        // Half-written files of dead processes (a stat cache being saved, a
        // VERSION being created): named NAME.tmpPID.
        for dir in [self.root.join("stat-cache"), self.root.clone()] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some((_, pid)) = name.rsplit_once(".tmp") {
                    let dead = pid
                        .parse::<u32>()
                        .map(|p| !Path::new(&format!("/proc/{p}")).exists())
                        .unwrap_or(false);
                    if dead {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        for d in dirs {
            if !locks.contains(&d) {
                // A work area without a lock file: its lock was removed, so
                // it is not in use (trash of a removal, or an unlucky kill).
                let _ = crate::fs::remove::remove_all(&work.join(&d));
            }
        }
        Ok(())
    }

    fn new_work(&self) -> Result<WorkArea, StoreError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{}-{nanos}-{n}", std::process::id());
        let work = self.root.join("work");
        let lock_path = work.join(format!("{name}.lock"));
        let held = lock::create_exclusive(&lock_path).map_err(|e| write_error(&lock_path, e))?;
        let dir = work.join(&name);
        std::fs::create_dir(&dir).map_err(|e| write_error(&dir, e))?;
        Ok(WorkArea {
            dir,
            lock_path,
            _lock: held,
            keep: false,
        })
    }

    fn read_info(&self, dir: &Path) -> Result<Info, StoreError> {
        let p = dir.join("info.json");
        let text = std::fs::read(&p).map_err(|e| unusable(&p, e))?;
        serde_json::from_slice(&text).map_err(|e| unusable(&p, e))
    }

    /// The record of a committed snapshot.
    pub fn record(&self, key: &str) -> Result<Record, StoreError> {
        let p = self.snap_dir(key).join(RECORD);
        use std::io::Read as _;
        let f = std::fs::File::open(&p).map_err(|e| unusable(&p, e))?;
        // Inflated whole, then parsed from memory: serde_json parses a
        // slice several times faster than a reader.
        let mut text = Vec::with_capacity(1 << 20);
        flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 16, f))
            .read_to_end(&mut text)
            .map_err(|e| unusable(&p, e))?;
        serde_json::from_slice(&text).map_err(|e| unusable(&p, e))
    }

    /// The folder holding a committed snapshot's tree (for `verify`).
    pub fn tree_dir(&self, key: &str) -> PathBuf {
        self.snap_dir(key).join("tree")
    }

    /// Marks a snapshot as used now (for `prune --keep-bytes`, which removes
    /// the least recently used first).
    pub fn touch(&self, key: &str) {
        let p = self.snap_dir(key).join("info.json");
        let _ = filetime::set_file_mtime(&p, filetime::FileTime::now());
    }

    /// When a snapshot was last used.
    pub fn last_used(&self, key: &str) -> i64 {
        std::fs::metadata(self.snap_dir(key).join("info.json"))
            .map(|m| filetime::FileTime::from_last_modification_time(&m).unix_seconds())
            .unwrap_or(0)
    }
}

fn write_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        StoreError::NoSpace(format!(
            "no space left on device while writing {}",
            path.display()
        ))
    } else {
        StoreError::Write(format!("cannot write {}: {e}", path.display()))
    }
}

fn materialize_error(e: MaterializeError) -> StoreError {
    match e {
        MaterializeError::NoSpace { .. } => StoreError::NoSpace(e.to_string()),
        other => StoreError::Write(other.to_string()),
    }
}

/// [`materialize_error`] for a tree written into a work area at `tree`:
/// paths are shown as they are in the tree (`/usr/bin/x`), not in the
/// store's private work area, which means nothing to a user and is gone.
fn commit_error(tree: &Path) -> impl Fn(MaterializeError) -> StoreError + '_ {
    move |e| {
        let prefix = format!("{}/", tree.display());
        match materialize_error(e) {
            StoreError::NoSpace(m) => StoreError::NoSpace(m.replace(&prefix, "/")),
            StoreError::Write(m) => StoreError::Write(m.replace(&prefix, "/")),
            other => other,
        }
    }
}

/// Flushes everything written to the store's filesystem (one syscall for a
/// whole snapshot, instead of one fsync per file).
fn sync_filesystem(dir: &Path) -> Result<(), StoreError> {
    let f = std::fs::File::open(dir).map_err(|e| write_error(dir, e))?;
    // SAFETY: syncfs only reads the descriptor, which `f` keeps open.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(write_error(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    let f = std::fs::File::open(dir).map_err(|e| write_error(dir, e))?;
    f.sync_all().map_err(|e| write_error(dir, e))
}

fn info_of(key: &str, tree: &Tree, digest: String, kind: &str, names: &[String]) -> Info {
    let mut files = 0;
    let mut logical = 0;
    for (_, id) in tree.walk(Tree::ROOT) {
        if let Kind::File(i) = tree.node(id).kind {
            files += 1;
            logical += tree.inode(i).size;
        }
    }
    Info {
        key: key.to_string(),
        digest,
        kind: kind.to_string(),
        names: names.to_vec(),
        files,
        logical_bytes: logical,
    }
}

impl Snapshotter for NativeStore {
    fn lookup(&self, key: &str) -> Result<Option<Info>, StoreError> {
        let dir = self.snap_dir(key);
        if !dir.join("info.json").exists() {
            return Ok(None);
        }
        self.read_info(&dir).map(Some)
    }

    fn view(&self, key: &str) -> Result<Arc<Tree>, StoreError> {
        if let Some(t) = self.views.lock().expect("views lock").get(key) {
            return Ok(t.clone());
        }
        let rec = self.record(key)?;
        let root = Arc::new(self.tree_dir(key));
        let tree = tree_from_record(&rec, &root).map_err(|e| unusable(&self.snap_dir(key), e))?;
        let tree = Arc::new(tree);
        self.views
            .lock()
            .expect("views lock")
            .insert(key.to_string(), tree.clone());
        Ok(tree)
    }

    fn commit(
        &self,
        key: &str,
        mut tree: Tree,
        kind: &str,
        names: &[String],
        write: Write,
    ) -> Result<Committed, StoreError> {
        if let Some(info) = self.lookup(key)? {
            return Ok(Committed {
                info,
                stats: Materialized::default(),
            });
        }
        let mut work = self.new_work()?;
        let policy = match write {
            Write::Link => LinkPolicy::AsTree,
            Write::Copy => LinkPolicy::Never,
        };
        let dest = work.dir.join("tree");
        let (stats, digest, encoded) = if tree
            .inodes()
            .iter()
            .any(|i| matches!(i.origin, Origin::Host { .. }))
        {
            // Files copied from the host are hashed as they are copied:
            // the record waits for those hashes.
            let (stats, updates) =
                write_stored_tree(&tree, &dest, policy).map_err(commit_error(&dest))?;
            updates.apply(&mut tree);
            let rec = record(&tree);
            (stats, rec.digest.clone(), encode_record(&rec))
        } else {
            // Every content is known: the record is made and encoded while
            // the tree is written, with each file's `phys` as it is before
            // (a linked file keeps its inode). Only when writing gave some
            // file another inode (a copy) is it encoded again.
            let (written, (mut partial, encoded)) = rayon::join(
                || write_stored_tree(&tree, &dest, policy),
                || {
                    let mut partial = record_parts(&tree);
                    partial.fill_phys(&tree);
                    let encoded = encode_record(partial.record());
                    (partial, encoded)
                },
            );
            let (stats, updates) = written.map_err(commit_error(&dest))?;
            updates.apply(&mut tree);
            let encoded = if partial.phys_matches(&tree) {
                encoded
            } else {
                partial.fill_phys(&tree);
                encode_record(partial.record())
            };
            (stats, partial.record().digest.clone(), encoded)
        };
        let info = info_of(key, &tree, digest, kind, names);
        let rec_path = work.dir.join(RECORD);
        std::fs::write(&rec_path, encoded).map_err(|e| write_error(&rec_path, e))?;
        let info_path = work.dir.join("info.json");
        std::fs::write(
            &info_path,
            serde_json::to_vec_pretty(&info).expect("serialise"),
        )
        .map_err(|e| write_error(&info_path, e))?;
        sync_filesystem(&work.dir)?;
        let dest = self.snap_dir(key);
        match std::fs::rename(&work.dir, &dest) {
            Ok(()) => {
                work.keep = true;
                fsync_dir(&self.root.join("snapshots"))?;
                Ok(Committed { info, stats })
            }
            // Another process committed the same key first: theirs is served.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                let info = self.read_info(&dest)?;
                Ok(Committed {
                    info,
                    stats: Materialized::default(),
                })
            }
            Err(e) => Err(write_error(&dest, e)),
        }
    }

    fn export(&self, key: &str, dest: &Path, link: bool) -> Result<Materialized, StoreError> {
        let mut tree = (*self.view(key)?).clone();
        let policy = if link {
            LinkPolicy::Always
        } else {
            LinkPolicy::Never
        };
        materialize(&mut tree, dest, policy).map_err(materialize_error)
    }

    fn list(&self) -> Result<Vec<Info>, StoreError> {
        let snaps = self.root.join("snapshots");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&snaps)
            .map_err(|e| unusable(&snaps, e))?
            .flatten()
        {
            out.push(self.read_info(&e.path())?);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        // Renamed out of `snapshots/` first, so it disappears at once, into
        // a work-area name with no lock file: if this process dies while
        // deleting it, the next open removes the rest. No new file is
        // created, so this works on a full disk (it is how one makes room).
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let trash = self
            .root
            .join("work")
            .join(format!("{}-trash-{n}", std::process::id()));
        std::fs::rename(self.snap_dir(key), &trash).map_err(|e| write_error(&trash, e))?;
        self.views.lock().expect("views lock").remove(key);
        crate::fs::remove::remove_all(&trash).map_err(|e| write_error(&trash, e))?;
        Ok(())
    }
}
