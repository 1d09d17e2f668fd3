//! The stat cache: hashes of host files from earlier scans, so that a scan
//! of an unchanged source reads no file's content (see [`StatCache`]).
//!
//! The file format is `MAGIC`, the source's last tree fingerprint and
//! digest (see [`StatCache::digest_for`]), then one record per file in
//! increasing key order, then the sha256 of everything before it:
//!
//! ```text
//! u8 1 and [u8; 32] fingerprint, u32 length, digest bytes; or u8 0
//! then per file:
//! u32 key length, key bytes (the file's absolute path)
//! u64 size, i64 mtime ns, i64 ctime ns, u64 inode, u64 device, [u8; 32] sha256
//! u32 xattr count, then per xattr: u32 length, name, u32 length, value
//! ```
//!
//! (integers little-endian). A loaded cache keeps the file's bytes and
//! finds a key by binary search over the record offsets: loading costs one
//! read, one checksum and one pass, with no allocation per file, which is
//! most of what an unchanged rebuild does with it.
//!
//! Invariant: the records of `bytes` are sorted by key with no duplicate
//! (checked at load, so a damaged file reads as empty instead of finding
//! wrong entries), and a key is live in at most one of `bytes` (not
//! `dropped`) and `fresh`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::sys::stat::FileStat;
use rustc_hash::FxHashMap;
use sha2::{Digest as _, Sha256};

use super::nanos;

/// How close to its hashing a file's ctime makes the file racy (the kernel
/// stamps files with a clock that may lag by a tick, 10 ms at HZ=100).
pub const RACY_NS: i64 = 50_000_000;

const MAGIC: &[u8] = b"hardmerge statcache 3\n";
/// The fixed part of a record after its key: the stamp and the sha256.
const FIXED: usize = 8 * 5 + 32;

/// What identifies an unchanged file: if all of it is equal, so is the
/// content (the same rule as git's index and BuildKit's content hash cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl Stamp {
    pub fn of(st: &FileStat) -> Stamp {
        Stamp {
            size: st.st_size as u64,
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
            dev: st.st_dev,
        }
    }
}

/// A record made since the cache was loaded.
#[derive(Clone, Debug)]
struct Fresh {
    stamp: Stamp,
    sha256: [u8; 32],
    /// The file's xattrs (setting one changes the ctime, so the stamp
    /// vouches for them too).
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A record of the loaded file, read in place.
struct Loaded<'a> {
    stamp: Stamp,
    sha256: [u8; 32],
    /// The xattr count and the encoded xattrs.
    xattrs: (u32, &'a [u8]),
}

/// Where a key's live record is.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Loaded(usize),
    Fresh,
}

/// What the cache knows of a file with a given stamp (see
/// [`StatCache::known`]): a read-only look, which many threads can take at
/// once; [`StatCache::count`] records it afterwards.
#[derive(Debug)]
pub(crate) struct Known {
    slot: Option<Slot>,
    /// The file's hash, when its record has the same stamp.
    pub sha256: Option<[u8; 32]>,
    /// The file's xattrs, when its record has the same stamp.
    pub xattrs: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
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
    /// The loaded file without its checksum (empty for a new cache).
    bytes: Vec<u8>,
    /// Where each loaded record starts in `bytes`, in key order; one more
    /// entry at the end gives where the last one ends.
    starts: Vec<usize>,
    /// Per loaded record: whether a scan looked at its file.
    seen: Vec<bool>,
    /// Per loaded record: replaced by a fresh one, forgotten or pruned.
    dropped: Vec<bool>,
    /// How many of `dropped` are set.
    dropped_count: usize,
    /// Records made since loading, by key.
    fresh: FxHashMap<Vec<u8>, Fresh>,
    /// The fingerprint and digest of the tree the last scan of the source
    /// gave.
    digest: Option<([u8; 32], String)>,

    hits: u64,
    misses: u64,
    /// Whether it differs from the file it was loaded from.
    dirty: bool,
}

/// Reads a little-endian u32 at the front of `rest` and advances past it.
fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_le_bytes(*head))
}

/// Takes `n` bytes from the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// A length-prefixed byte string.
fn take_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = take_u32(rest)? as usize;
    take(rest, n)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// Decodes the xattrs part of a record.
fn decode_xattrs((count, mut rest): (u32, &[u8])) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    for _ in 0..count {
        // Checked at load.
        let (Some(k), Some(v)) = (take_bytes(&mut rest), take_bytes(&mut rest)) else {
            break;
        };
        out.insert(k.to_vec(), v.to_vec());
    }
    out
}

fn encode_record(out: &mut Vec<u8>, key: &[u8], rec: &Fresh) {
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    for v in [
        rec.stamp.size,
        rec.stamp.mtime_ns as u64,
        rec.stamp.ctime_ns as u64,
        rec.stamp.ino,
        rec.stamp.dev,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&rec.sha256);
    out.extend_from_slice(&(rec.xattrs.len() as u32).to_le_bytes());
    for (k, v) in &rec.xattrs {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
}

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
            .and_then(StatCache::decode)
            .unwrap_or_default()
    }

    /// Checks a cache file's bytes (checksum, record bounds, key order) and
    /// indexes its records.
    fn decode(mut bytes: Vec<u8>) -> Option<StatCache> {
        let body_len = bytes.len().checked_sub(32)?;
        let (body, sum) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != sum || !body.starts_with(MAGIC) {
            return None;
        }
        bytes.truncate(body_len);
        let mut rest = &bytes[MAGIC.len()..];
        let digest = match take(&mut rest, 1)? {
            [0] => None,
            [1] => {
                let fp: [u8; 32] = take(&mut rest, 32)?.try_into().ok()?;
                let digest = std::str::from_utf8(take_bytes(&mut rest)?).ok()?;
                Some((fp, digest.to_string()))
            }
            _ => return None,
        };
        // A record is at least 80 bytes: sized once.
        let mut starts = Vec::with_capacity(rest.len() / (4 + FIXED + 4) + 1);
        let mut last_key: Option<&[u8]> = None;
        while !rest.is_empty() {
            starts.push(bytes.len() - rest.len());
            let key = take_bytes(&mut rest)?;
            if last_key.is_some_and(|last| last >= key) {
                return None;
            }
            last_key = Some(key);
            take(&mut rest, FIXED)?;
            for _ in 0..take_u32(&mut rest)? {
                take_bytes(&mut rest)?;
                take_bytes(&mut rest)?;
            }
        }
        let records = starts.len();
        starts.push(bytes.len());
        Some(StatCache {
            bytes,
            starts,
            seen: vec![false; records],
            dropped: vec![false; records],
            digest,
            ..StatCache::default()
        })
    }

    /// Number of records in the loaded file.
    fn loaded_len(&self) -> usize {
        self.seen.len()
    }

    /// The key of loaded record `k`.
    fn loaded_key(&self, k: usize) -> &[u8] {
        let mut rest = &self.bytes[self.starts[k]..];
        take_bytes(&mut rest).expect("checked at load")
    }

    /// Loaded record `k`.
    fn loaded(&self, k: usize) -> Loaded<'_> {
        let mut rest = &self.bytes[self.starts[k]..self.starts[k + 1]];
        take_bytes(&mut rest).expect("checked at load");
        let fixed = take(&mut rest, FIXED).expect("checked at load");
        let count = take_u32(&mut rest).expect("checked at load");
        Loaded {
            stamp: Stamp {
                size: u64_at(fixed, 0),
                mtime_ns: u64_at(fixed, 1) as i64,
                ctime_ns: u64_at(fixed, 2) as i64,
                ino: u64_at(fixed, 3),
                dev: u64_at(fixed, 4),
            },
            sha256: fixed[40..72].try_into().expect("32 bytes"),
            xattrs: (count, rest),
        }
    }

    /// Drops loaded record `k` (replaced, forgotten or pruned).
    fn drop_loaded(&mut self, k: usize) {
        if !std::mem::replace(&mut self.dropped[k], true) {
            self.dropped_count += 1;
            self.dirty = true;
        }
    }

    /// Where `key`'s live record is.
    fn find(&self, key: &[u8]) -> Option<Slot> {
        if !self.fresh.is_empty() && self.fresh.contains_key(key) {
            return Some(Slot::Fresh);
        }
        let n = self.loaded_len();
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.loaded_key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return (!self.dropped[mid]).then_some(Slot::Loaded(mid));
                }
            }
        }
        None
    }

    /// Writes the cache to `path` (a new file renamed into place, so a
    /// reader never sees half of it; a torn file fails its checksum and
    /// reads as empty). Loaded records are copied as they are, merged in
    /// key order with the fresh ones.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut out =
            Vec::with_capacity(self.bytes.len().max(MAGIC.len()) + self.fresh.len() * 128 + 32);
        out.extend_from_slice(MAGIC);
        match &self.digest {
            Some((fp, digest)) => {
                out.push(1);
                out.extend_from_slice(fp);
                out.extend_from_slice(&(digest.len() as u32).to_le_bytes());
                out.extend_from_slice(digest.as_bytes());
            }
            None => out.push(0),
        }
        let mut fresh: Vec<(&Vec<u8>, &Fresh)> = self.fresh.iter().collect();
        fresh.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut fresh = fresh.into_iter().peekable();
        for k in (0..self.loaded_len()).filter(|&k| !self.dropped[k]) {
            let key = self.loaded_key(k);
            while let Some((fk, rec)) = fresh.next_if(|(fk, _)| fk.as_slice() < key) {
                encode_record(&mut out, fk, rec);
            }
            out.extend_from_slice(&self.bytes[self.starts[k]..self.starts[k + 1]]);
        }
        for (fk, rec) in fresh {
            encode_record(&mut out, fk, rec);
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
        self.loaded_len() - self.dropped_count + self.fresh.len()
    }

    /// Whether the cache knows no file.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the files no scan has looked at since the cache was loaded
    /// (deleted files, or sources no longer built), to keep it small.
    pub fn prune_unseen(&mut self) {
        for k in 0..self.loaded_len() {
            if !self.seen[k] {
                self.drop_loaded(k);
            }
        }
    }

    /// The digest of the source's tree if the last scan saw a tree with
    /// this fingerprint ([`crate::tree::manifest::fingerprint`]).
    pub fn digest_for(&self, fingerprint: &[u8; 32]) -> Option<&str> {
        match &self.digest {
            Some((fp, digest)) if fp == fingerprint => Some(digest),
            _ => None,
        }
    }

    /// Keeps the digest of the source's tree, by its fingerprint.
    pub fn remember_digest(&mut self, fingerprint: [u8; 32], digest: String) {
        if self.digest_for(&fingerprint) != Some(digest.as_str()) {
            self.digest = Some((fingerprint, digest));
            self.dirty = true;
        }
    }

    /// Whether it changed since it was loaded (or made): an unchanged cache
    /// need not be saved again.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// What the cache knows of the file at `key` when its stamp is `stamp`.
    /// `key` is only made when the cache holds something.
    pub(crate) fn known(&self, key: impl FnOnce() -> Vec<u8>, stamp: &Stamp) -> Known {
        let mut known = Known {
            slot: None,
            sha256: None,
            xattrs: None,
        };
        if self.is_empty() {
            return known;
        }
        let key = key();
        known.slot = self.find(&key);
        match known.slot {
            Some(Slot::Loaded(k)) => {
                let rec = self.loaded(k);
                if rec.stamp == *stamp {
                    known.sha256 = Some(rec.sha256);
                    known.xattrs = Some(decode_xattrs(rec.xattrs));
                }
            }
            Some(Slot::Fresh) => {
                let rec = &self.fresh[&key];
                if rec.stamp == *stamp {
                    known.sha256 = Some(rec.sha256);
                    known.xattrs = Some(rec.xattrs.clone());
                }
            }
            None => {}
        }
        known
    }

    /// Records that a scan used what [`StatCache::known`] found (valid while
    /// the cache has not changed since): a hit or a miss, and the file seen.
    pub(crate) fn count(&mut self, known: &Known) {
        if let Some(Slot::Loaded(k)) = known.slot {
            self.seen[k] = true;
        }
        match known.sha256 {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
    }

    /// The hash of the file at `key` when its stamp is `stamp`; counts a
    /// hit or a miss, and marks the file seen.
    #[cfg(test)]
    fn lookup(&mut self, key: &[u8], stamp: &Stamp) -> Option<[u8; 32]> {
        let known = self.known(|| key.to_vec(), stamp);
        self.count(&known);
        known.sha256
    }

    /// Records the hash and xattrs of the file at `key`, replacing what
    /// was known of it.
    pub(crate) fn record(
        &mut self,
        key: Vec<u8>,
        stamp: Stamp,
        sha256: [u8; 32],
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    ) {
        self.dirty = true;
        if let Some(Slot::Loaded(k)) = self.find(&key) {
            self.drop_loaded(k);
        }
        self.fresh.insert(
            key,
            Fresh {
                stamp,
                sha256,
                xattrs,
            },
        );
    }

    /// The xattrs of the file at `key` when its stamp is `stamp` (a read
    /// that counts neither as a hit nor as a miss).
    #[cfg(test)]
    fn xattrs(&self, key: &[u8], stamp: &Stamp) -> Option<BTreeMap<Vec<u8>, Vec<u8>>> {
        self.known(|| key.to_vec(), stamp).xattrs
    }

    /// Forgets the file at `key`.
    pub(crate) fn forget(&mut self, key: &[u8]) {
        match self.find(key) {
            Some(Slot::Loaded(k)) => self.drop_loaded(k),
            Some(Slot::Fresh) => {
                self.fresh.remove(key);
                self.dirty = true;
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: i64) -> Stamp {
        Stamp {
            size: 1,
            mtime_ns: -5,
            ctime_ns: n,
            ino: 8,
            dev: 9,
        }
    }

    #[test]
    fn damaged_or_missing_cache_files_read_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(StatCache::load(&tmp.path().join("none")).is_empty());
        let mut c = StatCache::new();
        let stamp = stamp(7);
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
        assert_eq!(back.xattrs(b"/a/\xff\nname", &stamp), Some(xattrs));
        assert_eq!(back.lookup(b"/b", &stamp), Some([4; 32]));
        assert_eq!(back.xattrs(b"/a/\xff\nname", &self::stamp(8)), None);
        let mut bytes = std::fs::read(&file).unwrap();
        for cut in [0, 5, MAGIC.len() + 3, bytes.len() - 1] {
            std::fs::write(&file, &bytes[..cut]).unwrap();
            assert!(StatCache::load(&file).is_empty(), "cut at {cut}");
        }
        bytes[MAGIC.len() + 6] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(StatCache::load(&file).is_empty());
    }

    /// A file whose checksum holds but whose records are out of order (or
    /// repeat a key) would make binary search miss or find a stale record:
    /// it reads as empty.
    #[test]
    fn records_out_of_order_read_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("c");
        let rec = |key: &[u8]| {
            let mut out = Vec::new();
            let fresh = Fresh {
                stamp: stamp(1),
                sha256: [1; 32],
                xattrs: BTreeMap::new(),
            };
            encode_record(&mut out, key, &fresh);
            out
        };
        for keys in [&[b"/b", b"/a"], &[b"/a", b"/a"]] {
            let mut body = MAGIC.to_vec();
            body.push(0);
            for k in keys {
                body.extend(rec(*k));
            }
            let sum = Sha256::digest(&body);
            body.extend_from_slice(&sum);
            std::fs::write(&file, &body).unwrap();
            assert!(StatCache::load(&file).is_empty(), "{keys:?}");
        }
        // the same records in order load
        let mut body = MAGIC.to_vec();
        body.push(0);
        body.extend(rec(b"/a"));
        body.extend(rec(b"/b"));
        let sum = Sha256::digest(&body);
        body.extend_from_slice(&sum);
        std::fs::write(&file, &body).unwrap();
        assert_eq!(StatCache::load(&file).len(), 2);
    }

    /// The last fingerprint and digest are kept across a save, and only a
    /// different pair makes the cache worth saving again.
    #[test]
    fn the_last_digest_is_kept_by_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("c");
        let mut c = StatCache::new();
        assert_eq!(c.digest_for(&[1; 32]), None);
        c.remember_digest([1; 32], "sha256:one".into());
        c.record(b"/a".to_vec(), stamp(1), [5; 32], BTreeMap::new());
        c.save(&file).unwrap();

        let mut back = StatCache::load(&file);
        assert_eq!(back.digest_for(&[1; 32]), Some("sha256:one"));
        assert_eq!(back.digest_for(&[2; 32]), None);
        assert_eq!(back.lookup(b"/a", &stamp(1)), Some([5; 32]));
        back.remember_digest([1; 32], "sha256:one".into());
        assert!(!back.is_dirty(), "the same pair again changes nothing");
        back.remember_digest([2; 32], "sha256:two".into());
        assert!(back.is_dirty());
        assert_eq!(back.digest_for(&[1; 32]), None, "only the last is kept");
        back.save(&file).unwrap();
        assert_eq!(
            StatCache::load(&file).digest_for(&[2; 32]),
            Some("sha256:two")
        );
    }

    /// Saving merges loaded records (copied as they are) with fresh ones in
    /// key order, without what was replaced, forgotten or pruned.
    #[test]
    fn save_merges_loaded_and_fresh_records_in_key_order() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("c");
        let mut c = StatCache::new();
        for key in [b"/b".as_slice(), b"/d", b"/f", b"/h"] {
            c.record(key.to_vec(), stamp(1), [key[1]; 32], BTreeMap::new());
        }
        c.save(&file).unwrap();

        let mut c = StatCache::load(&file);
        assert!(!c.is_dirty());
        // /b seen and kept, /d replaced, /f forgotten, /h never seen
        assert_eq!(c.lookup(b"/b", &stamp(1)), Some([b'b'; 32]));
        assert_eq!(c.lookup(b"/d", &stamp(2)), None);
        c.record(b"/d".to_vec(), stamp(2), [9; 32], BTreeMap::new());
        c.lookup(b"/f", &stamp(1));
        c.forget(b"/f");
        for key in [b"/a".as_slice(), b"/c", b"/z"] {
            c.record(key.to_vec(), stamp(1), [key[1]; 32], BTreeMap::new());
        }
        c.prune_unseen();
        assert!(c.is_dirty());
        assert_eq!(c.len(), 5);
        c.save(&file).unwrap();

        let mut back = StatCache::load(&file);
        assert_eq!(back.len(), 5);
        let keys: Vec<Vec<u8>> = (0..back.loaded_len())
            .map(|k| back.loaded_key(k).to_vec())
            .collect();
        let want: Vec<Vec<u8>> = ["/a", "/b", "/c", "/d", "/z"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        assert_eq!(keys, want);
        assert_eq!(back.lookup(b"/d", &stamp(2)), Some([9; 32]));
        assert_eq!(back.lookup(b"/b", &stamp(1)), Some([b'b'; 32]));
        assert_eq!(back.lookup(b"/f", &stamp(1)), None);
        assert_eq!(back.lookup(b"/h", &stamp(1)), None);
        assert_eq!((back.hits(), back.misses()), (2, 2));
    }
}
