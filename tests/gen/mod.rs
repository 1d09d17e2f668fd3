//! The generators of `tests/differential.rs`: seeded random source trees on
//! disk, random graphs over them (every op kind and option), a runner of the
//! `hardmerge` binary (the one under test, or `$HARDMERGE_BIN`), and the
//! pieces the shrinker works on.
//!
//! Everything is driven by one `u64` seed, so a case printed by a failing run
//! is rebuilt exactly by `HARDMERGE_DIFF_SEED=<seed> HARDMERGE_DIFF_CASES=1`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use filetime::FileTime;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Randomness.

/// splitmix64: small, fast, and the same on every platform.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6A09_E667_F3BC_C909)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p` percent.
    pub fn pct(&mut self, p: u32) -> bool {
        (self.next() % 100) < p as u64
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// An index drawn by weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = (self.next() % total as u64) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Pseudo-random file contents, the same for the same seed and length.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ---------------------------------------------------------------------------
// Source trees.

/// What an entry of a source tree is.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Dir,
    /// `len` bytes of `bytes(seed, len)`: equal seeds give equal contents in
    /// distinct inodes (which a content-addressed store must not merge).
    File {
        len: usize,
        seed: u64,
    },
    Symlink(Vec<u8>),
    /// A second name of the file entry at this path (its own metadata is
    /// the file's: the fields of this entry are ignored). Skipped when that
    /// file is not in the tree (after shrinking).
    Link(Vec<u8>),
}

/// One entry of the context folder, its path relative to the context.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits, 0..=0o7777 (files and directories).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub nsec: u32,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Names, weighted towards a few common ones so that trees collide.
const COMMON: &[&[u8]] = &[b"a", b"b", b"c", b"d", b"sub", b"f.txt"];
const ODD: &[&[u8]] = &[
    b"g.log",
    b"x y",
    b"new\nline",
    b"-dash",
    b"*",
    b"[ab]",
    b"q?",
    b"caf\xc3\xa9",
    b"\xff\xfe",
    b"bad\x80name",
    b".hidden",
    b"...",
    b"!bang",
    b"back\\slash",
    b"#hash",
    b"tab\there",
    b" lead",
    b"trail ",
    b"a.txt",
    b"deep",
];

fn name(rng: &mut Rng) -> Vec<u8> {
    if rng.pct(65) {
        rng.pick(COMMON).to_vec()
    } else if rng.pct(3) {
        // the longest name a component may have
        let mut n = b"long-".to_vec();
        n.resize(255, b'n');
        n
    } else {
        rng.pick(ODD).to_vec()
    }
}

/// How trees are generated.
#[derive(Clone, Copy)]
pub struct TreeOpts {
    /// Hardlinks may join files of different trees of the context.
    pub cross_links: bool,
    /// Owners other than the running user (needs root).
    pub owners: bool,
    /// Upper bound on entries per tree.
    pub max_entries: usize,
}

impl TreeOpts {
    pub fn default_for_run() -> TreeOpts {
        TreeOpts {
            cross_links: true,
            owners: is_root(),
            max_entries: 40,
        }
    }
}

fn file_mode(rng: &mut Rng) -> u32 {
    if rng.pct(60) {
        *rng.pick(&[0o644, 0o755, 0o600, 0o400, 0o444, 0o640, 0o4755, 0o2755])
    } else {
        rng.below(0o10000) as u32
    }
}

fn dir_mode(rng: &mut Rng) -> u32 {
    if rng.pct(70) {
        *rng.pick(&[0o755, 0o700, 0o775, 0o1777, 0o2755, 0o750, 0o555])
    } else {
        rng.below(0o10000) as u32
    }
}

fn mtime(rng: &mut Rng) -> (i64, u32) {
    let secs = match rng.below(10) {
        0 => 0,
        1 => 1_600_000_000,
        _ => rng.below(2_000_000_000) as i64,
    };
    let nsec = if rng.pct(30) {
        rng.below(1_000_000_000) as u32
    } else {
        0
    };
    (secs, nsec)
}

fn xattrs(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    if !rng.pct(20) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for key in ["user.a", "user.b", "user.dagger.x"] {
        if rng.pct(50) {
            let v = match rng.below(3) {
                0 => Vec::new(),
                1 => b"blue".to_vec(),
                _ => bytes(rng.next(), rng.range(1, 40)),
            };
            out.push((key.to_string(), v));
        }
    }
    out
}

fn owner(rng: &mut Rng, opts: TreeOpts) -> (u32, u32) {
    if opts.owners && rng.pct(30) {
        (
            *rng.pick(&[0, 1, 1000, 4242, 65534]),
            *rng.pick(&[0, 1, 1000, 777, 65534]),
        )
    } else {
        (0, 0)
    }
}

fn symlink_target(rng: &mut Rng, own: &[u8]) -> Vec<u8> {
    let n = name(rng);
    match rng.below(12) {
        0 => n,
        1 => [b"../".as_slice(), &n].concat(),
        2 => b"../../..".to_vec(),
        3 => b"/".to_vec(),
        4 => [b"/".as_slice(), &n].concat(),
        5 => b"nowhere/at/all".to_vec(),
        6 => b".".to_vec(),
        7 => b"..".to_vec(),
        8 => own.to_vec(), // a loop
        9 => b"/etc/passwd".to_vec(),
        10 => {
            let c = rng.pick(COMMON).to_vec();
            [n.as_slice(), b"/", &c].concat()
        }
        _ => b"../a/b".to_vec(),
    }
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        b.to_vec()
    } else {
        [a, b"/", b].concat()
    }
}

/// A random tree whose entries live under `root` (e.g. `t0`) of the context.
pub fn gen_tree(rng: &mut Rng, root: &[u8], opts: TreeOpts) -> Vec<Entry> {
    let mut out = Vec::new();
    let budget = rng.range(3, opts.max_entries);
    gen_dir(rng, root, 0, budget, opts, &mut out);
    if rng.pct(15) {
        // a deep chain of directories, a file at the bottom
        let depth = rng.range(12, 40);
        let mut p = root.to_vec();
        for i in 0..depth {
            p = join(&p, if i % 2 == 0 { b"deep" } else { b"d" });
            if !out.iter().any(|e: &Entry| e.path == p) {
                let (uid, gid) = owner(rng, opts);
                let (mtime, nsec) = mtime(rng);
                out.push(Entry {
                    path: p.clone(),
                    kind: Kind::Dir,
                    mode: 0o755,
                    uid,
                    gid,
                    mtime,
                    nsec,
                    xattrs: Vec::new(),
                });
            } else if out.iter().any(|e| e.path == p && e.kind != Kind::Dir) {
                break;
            }
        }
        let f = join(&p, b"bottom");
        if !out.iter().any(|e| e.path == f) && out.iter().any(|e| e.path == p) {
            out.push(Entry {
                path: f,
                kind: Kind::File {
                    len: 7,
                    seed: rng.next(),
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 1,
                nsec: 0,
                xattrs: Vec::new(),
            });
        }
    }
    out
}

fn gen_dir(
    rng: &mut Rng,
    dir: &[u8],
    depth: usize,
    budget: usize,
    opts: TreeOpts,
    out: &mut Vec<Entry>,
) {
    let n = if depth == 0 {
        rng.range(1, 6)
    } else {
        rng.range(0, 4)
    };
    let mut used = BTreeSet::new();
    for _ in 0..n {
        if out.len() >= budget {
            return;
        }
        let nm = name(rng);
        if !used.insert(nm.clone()) {
            continue;
        }
        let path = join(dir, &nm);
        let (uid, gid) = owner(rng, opts);
        let (mtime, nsec) = mtime(rng);
        let kind = match rng.weighted(&[if depth < 5 { 30 } else { 5 }, 45, 20]) {
            0 => Kind::Dir,
            1 => {
                let len = match rng.below(10) {
                    0 | 1 => 0,
                    2..=5 => rng.range(1, 100),
                    6..=8 => rng.range(100, 4096),
                    _ => rng.range(4096, 65536),
                };
                // a few shared seeds: equal contents in distinct files
                let seed = if rng.pct(25) {
                    rng.below(3) as u64
                } else {
                    rng.next()
                };
                Kind::File { len, seed }
            }
            _ => Kind::Symlink(symlink_target(rng, &nm)),
        };
        let is_dir = kind == Kind::Dir;
        let mode = match kind {
            Kind::Dir => dir_mode(rng),
            Kind::File { .. } => file_mode(rng),
            _ => 0o777,
        };
        let xattrs = if matches!(kind, Kind::Symlink(_)) {
            Vec::new()
        } else {
            xattrs(rng)
        };
        out.push(Entry {
            path: path.clone(),
            kind,
            mode,
            uid,
            gid,
            mtime,
            nsec,
            xattrs,
        });
        if is_dir {
            gen_dir(rng, &path, depth + 1, budget, opts, out);
        }
    }
}

/// Adds hardlinked pairs among the files of `entries` (each new name in a
/// directory of the same tree, or of any tree with `cross`).
pub fn add_links(rng: &mut Rng, entries: &mut Vec<Entry>, roots: &[Vec<u8>], cross: bool) {
    let files: Vec<Vec<u8>> = entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::File { .. }))
        .map(|e| e.path.clone())
        .collect();
    if files.is_empty() {
        return;
    }
    let count = rng.range(0, 1 + files.len() / 3);
    for _ in 0..count {
        let f = rng.pick(&files).clone();
        let tree_of = |p: &[u8]| p.split(|b| *b == b'/').next().unwrap_or(b"").to_vec();
        let tree = if cross && rng.pct(30) {
            rng.pick(roots).clone()
        } else {
            tree_of(&f)
        };
        let mut dirs: Vec<Vec<u8>> = vec![tree.clone()];
        dirs.extend(
            entries
                .iter()
                .filter(|e| e.kind == Kind::Dir && tree_of(&e.path) == tree)
                .map(|e| e.path.clone()),
        );
        let dir = rng.pick(&dirs).clone();
        let p = join(&dir, &name(rng));
        if entries.iter().any(|e| e.path == p) {
            continue;
        }
        entries.push(Entry {
            path: p,
            kind: Kind::Link(f),
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            nsec: 0,
            xattrs: Vec::new(),
        });
    }
}

fn os(p: &[u8]) -> &OsStr {
    OsStr::from_bytes(p)
}

/// Writes `entries` below `ctx` (which must exist). Directories the entries
/// need but do not list are made 0755. Returns the paths skipped (links to
/// files that are not there).
pub fn write_tree(ctx: &Path, entries: &[Entry]) -> Vec<Vec<u8>> {
    let root = is_root();
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by(|a, b| a.path.cmp(&b.path));
    let mut skipped = Vec::new();
    let mut written: Vec<&Entry> = Vec::new();
    let file_paths: BTreeSet<&[u8]> = entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::File { .. }))
        .map(|e| e.path.as_slice())
        .collect();
    // files first, so that links find their targets
    order.sort_by_key(|e| matches!(e.kind, Kind::Link(_)));
    for e in order {
        let full = ctx.join(os(&e.path));
        let parent = full.parent().expect("parent");
        if let Err(err) = fs::create_dir_all(parent) {
            // a file of the tree where a parent should be (a shrunk case)
            let _ = err;
            skipped.push(e.path.clone());
            continue;
        }
        let made = match &e.kind {
            Kind::Dir => match fs::create_dir(&full) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && full.is_dir() => {
                    Ok(())
                }
                Err(err) => Err(err),
            },
            Kind::File { len, seed } => fs::write(&full, bytes(*seed, *len)),
            Kind::Symlink(t) => std::os::unix::fs::symlink(os(t), &full),
            Kind::Link(t) => {
                if file_paths.contains(t.as_slice()) && ctx.join(os(t)).is_file() {
                    fs::hard_link(ctx.join(os(t)), &full)
                } else {
                    Err(std::io::Error::other("no target"))
                }
            }
        };
        match made {
            Ok(()) => {
                if !matches!(e.kind, Kind::Link(_)) {
                    written.push(e);
                }
            }
            Err(_) => skipped.push(e.path.clone()),
        }
    }
    for e in written
        .iter()
        .filter(|e| !matches!(e.kind, Kind::Symlink(_)))
    {
        let full = ctx.join(os(&e.path));
        for (k, v) in &e.xattrs {
            xattr::set(&full, k, v).unwrap_or_else(|err| panic!("xattr {k} on {full:?}: {err}"));
        }
    }
    if root {
        for e in &written {
            let full = ctx.join(os(&e.path));
            std::os::unix::fs::lchown(&full, Some(e.uid), Some(e.gid))
                .unwrap_or_else(|err| panic!("lchown {full:?}: {err}"));
        }
    }
    for e in &written {
        let full = ctx.join(os(&e.path));
        let mode = match e.kind {
            Kind::Dir if !root => e.mode | 0o700,
            Kind::File { .. } if !root => e.mode | 0o600,
            Kind::Dir | Kind::File { .. } => e.mode,
            _ => continue,
        };
        fs::set_permissions(&full, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|err| panic!("chmod {full:?}: {err}"));
    }
    // mtimes last, deepest first, so that nothing moves them afterwards
    written.sort_by_key(|e| std::cmp::Reverse(e.path.iter().filter(|b| **b == b'/').count()));
    for e in &written {
        let full = ctx.join(os(&e.path));
        let t = FileTime::from_unix_time(e.mtime, e.nsec);
        filetime::set_symlink_file_times(&full, t, t)
            .unwrap_or_else(|err| panic!("utimes {full:?}: {err}"));
    }
    skipped
}

/// A fingerprint of every entry below `dir` (inode, link count, metadata):
/// a build must leave its context exactly as it was.
pub fn fingerprint(dir: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        let x = xattr::list(&p)
            .map(|l| {
                l.map(|k| {
                    let v = xattr::get(&p, &k).ok().flatten().unwrap_or_default();
                    format!("{}={}", k.to_string_lossy(), hex::encode(v))
                })
                .collect::<Vec<_>>()
                .join(",")
            })
            .unwrap_or_default();
        out.insert(
            p.as_os_str().as_bytes().to_vec(),
            format!(
                "ino={} nlink={} mode={:o} uid={} gid={} size={} mtime={}.{} x={x}",
                m.ino(),
                m.nlink(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            ),
        );
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                for e in rd.flatten() {
                    stack.push(e.path());
                }
            }
        }
    }
    out
}

/// `path` with the bytes that are not printable ASCII as `\xNN`.
pub fn escape(p: &[u8]) -> String {
    let mut s = String::new();
    for &b in p {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// One line per entry, for a printed case.
pub fn describe_tree(entries: &[Entry]) -> String {
    let mut s = String::new();
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for e in sorted {
        let what = match &e.kind {
            Kind::Dir => format!("dir  {:04o}", e.mode),
            Kind::File { len, seed } => format!("file {:04o} len={len} seed={seed}", e.mode),
            Kind::Symlink(t) => format!("symlink -> {}", escape(t)),
            Kind::Link(t) => {
                let _ = writeln!(s, "{}  hardlink of {}", escape(&e.path), escape(t));
                continue;
            }
        };
        let x: Vec<String> = e
            .xattrs
            .iter()
            .map(|(k, v)| format!("{k}={}", escape(v)))
            .collect();
        let _ = writeln!(
            s,
            "{}  {what} owner={}:{} mtime={}.{:09}{}",
            escape(&e.path),
            e.uid,
            e.gid,
            e.mtime,
            e.nsec,
            if x.is_empty() {
                String::new()
            } else {
                format!(" xattrs[{}]", x.join(" "))
            }
        );
    }
    s
}

fn rust_bytes(p: &[u8]) -> String {
    let mut s = String::from("b\"");
    for &b in p {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// The entries as Rust source (`Entry` literals), for regression fixtures.
pub fn rust_tree(entries: &[Entry]) -> String {
    let mut s = String::from("vec![\n");
    for e in entries {
        let kind = match &e.kind {
            Kind::Dir => "Kind::Dir".to_string(),
            Kind::File { len, seed } => format!("Kind::File {{ len: {len}, seed: {seed} }}"),
            Kind::Symlink(t) => format!("Kind::Symlink({}.to_vec())", rust_bytes(t)),
            Kind::Link(t) => format!("Kind::Link({}.to_vec())", rust_bytes(t)),
        };
        let x: Vec<String> = e
            .xattrs
            .iter()
            .map(|(k, v)| format!("({k:?}.to_string(), {}.to_vec())", rust_bytes(v)))
            .collect();
        let _ = writeln!(
            s,
            "    Entry {{ path: {}.to_vec(), kind: {kind}, mode: 0o{:o}, uid: {}, gid: {}, mtime: {}, nsec: {}, xattrs: vec![{}] }},",
            rust_bytes(&e.path),
            e.mode,
            e.uid,
            e.gid,
            e.mtime,
            e.nsec,
            x.join(", ")
        );
    }
    s.push(']');
    s
}

// ---------------------------------------------------------------------------
// Graphs.

/// A graph in the version 1 format, kept as ordered lists for the shrinker.
#[derive(Clone, Debug)]
pub struct GraphSpec {
    pub epoch: i64,
    pub ops: Vec<(String, Value)>,
    pub outputs: Vec<(String, String)>,
}

impl GraphSpec {
    pub fn to_json(&self) -> Value {
        let mut ops = Map::new();
        for (n, op) in &self.ops {
            ops.insert(n.clone(), op.clone());
        }
        let mut outs = Map::new();
        for (n, o) in &self.outputs {
            outs.insert(n.clone(), Value::String(o.clone()));
        }
        let mut g = Map::new();
        g.insert("version".into(), json!(1));
        if self.epoch != 0 {
            g.insert("epoch".into(), json!(self.epoch));
        }
        g.insert("ops".into(), Value::Object(ops));
        g.insert("outputs".into(), Value::Object(outs));
        Value::Object(g)
    }

    pub fn op(&self, name: &str) -> Option<&Value> {
        self.ops.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The op names `op` refers to.
    pub fn refs(op: &Value) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((_, body)) = op.as_object().and_then(|o| o.iter().next()) {
            for f in ["base", "source", "lower", "upper"] {
                if let Some(s) = body.get(f).and_then(Value::as_str) {
                    out.push(s.to_string());
                }
            }
            if let Some(a) = body.get("inputs").and_then(Value::as_array) {
                out.extend(a.iter().filter_map(Value::as_str).map(str::to_string));
            }
        }
        out
    }

    /// Drops the ops no output reaches.
    pub fn gc(&mut self) {
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = self.outputs.iter().map(|(_, o)| o.clone()).collect();
        while let Some(n) = stack.pop() {
            if live.insert(n.clone()) {
                if let Some(op) = self.op(&n) {
                    stack.extend(Self::refs(op));
                }
            }
        }
        self.ops.retain(|(n, _)| live.contains(n));
    }
}

/// Paths of the trees, relative to each tree's root (UTF-8 ones only: a
/// graph is JSON), with their kinds.
pub struct Pool {
    pub all: Vec<String>,
    pub dirs: Vec<String>,
    pub files: Vec<String>,
    /// Directories of the context a `local` may take (`t0`, `t1/sub`, ...).
    pub local_dirs: Vec<String>,
    /// What each of those holds.
    pub known: BTreeMap<String, Known>,
}

impl Pool {
    pub fn new(entries: &[Entry], roots: &[&str]) -> Pool {
        let mut pool = Pool {
            all: Vec::new(),
            dirs: Vec::new(),
            files: Vec::new(),
            local_dirs: roots.iter().map(|r| r.to_string()).collect(),
            known: BTreeMap::new(),
        };
        for e in entries {
            let Ok(p) = std::str::from_utf8(&e.path) else {
                continue;
            };
            let Some((_, rel)) = p.split_once('/') else {
                continue;
            };
            if rel.len() > 200 {
                continue;
            }
            pool.all.push(rel.to_string());
            match e.kind {
                Kind::Dir => {
                    pool.dirs.push(rel.to_string());
                    if rel.matches('/').count() < 3 {
                        pool.local_dirs.push(p.to_string());
                    }
                }
                Kind::File { .. } | Kind::Link(_) => pool.files.push(rel.to_string()),
                Kind::Symlink(_) => {}
            }
        }
        for d in &pool.local_dirs {
            let mut k = Known::default();
            let prefix = format!("{d}/");
            for e in entries {
                let Some(rel) = std::str::from_utf8(&e.path)
                    .ok()
                    .and_then(|p| p.strip_prefix(&prefix))
                else {
                    continue;
                };
                match e.kind {
                    Kind::Dir => k.add_dir(rel),
                    Kind::File { .. } | Kind::Link(_) => k.add_file(rel),
                    Kind::Symlink(_) => {}
                }
            }
            pool.known.insert(d.clone(), k);
        }
        pool
    }
}

const PATTERNS: &[&str] = &[
    "*",
    "**",
    "**/a",
    "a/**",
    "!a",
    "!**/b",
    "*.txt",
    "[ab]*",
    "?",
    "sub/**/f.txt",
    "\\*",
    "d/*",
    "/a",
    "b",
    "sub",
    "f.txt",
    "x y",
    "!sub/c",
    "**/*.log",
    "c/",
    "[!a]",
    "deep/**",
];

fn patterns(rng: &mut Rng, pool: &Pool) -> Vec<String> {
    let n = rng.range(1, 3);
    (0..n)
        .map(|_| {
            if rng.pct(30) && !pool.all.is_empty() {
                let p = rng.pick(&pool.all).clone();
                if rng.pct(20) {
                    format!("!{p}")
                } else {
                    p
                }
            } else {
                rng.pick(PATTERNS).to_string()
            }
        })
        .collect()
}

fn decorate(rng: &mut Rng, p: String) -> String {
    let mut p = p;
    if rng.pct(50) {
        p = format!("/{p}");
    }
    if rng.pct(8) {
        p.push('/');
    } else if rng.pct(3) {
        p.push_str("/.");
    }
    p
}

const SYNTHETIC: &[&str] = &[
    "new",
    "new/deeper",
    "/",
    "",
    ".",
    "a/../b",
    "../a",
    "a/",
    "/a/./b",
    "n1/n2/n3",
    "a/b",
    "sub/new",
    "a/new",
    "d/c",
    "x y/z",
    "new\nline/f",
];

/// The paths an op's tree likely holds (a rough model of the ops, so that
/// graphs name existing paths often enough to build), without a leading `/`.
#[derive(Clone, Default)]
pub struct Known {
    pub dirs: BTreeSet<String>,
    pub files: BTreeSet<String>,
}

impl Known {
    fn all(&self) -> Vec<&String> {
        self.dirs.iter().chain(self.files.iter()).collect()
    }

    fn add_dir(&mut self, p: &str) {
        let p = clean(p);
        let mut acc = String::new();
        for c in p.split('/').filter(|c| !c.is_empty()) {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            self.files.remove(&acc);
            self.dirs.insert(acc.clone());
        }
    }

    fn add_file(&mut self, p: &str) {
        let p = clean(p);
        if let Some((parent, _)) = p.rsplit_once('/') {
            self.add_dir(parent);
        }
        if !p.is_empty() {
            self.remove(&p);
            self.files.insert(p);
        }
    }

    fn remove(&mut self, p: &str) {
        let p = clean(p);
        let sub = format!("{p}/");
        self.dirs.retain(|d| *d != p && !d.starts_with(&sub));
        self.files.retain(|d| *d != p && !d.starts_with(&sub));
    }

    /// `other`'s paths below `from`, placed at `at`.
    fn place(&mut self, other: &Known, from: &str, at: &str) {
        let (from, at) = (clean(from), clean(at));
        let rebase = |p: &String| -> Option<String> {
            let rest = if from.is_empty() {
                p.as_str()
            } else {
                p.strip_prefix(&format!("{from}/"))?
            };
            Some(if at.is_empty() {
                rest.to_string()
            } else {
                format!("{at}/{rest}")
            })
        };
        if !at.is_empty() {
            self.add_dir(&at);
        }
        for d in &other.dirs {
            if let Some(p) = rebase(d) {
                self.add_dir(&p);
            }
        }
        for f in &other.files {
            if let Some(p) = rebase(f) {
                self.add_file(&p);
            }
        }
    }
}

/// A path cleaned lexically, without a leading or trailing `/`.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn any_path(rng: &mut Rng, pool: &Pool, k: &Known) -> String {
    let known = k.all();
    if rng.pct(70) && !known.is_empty() {
        let p = rng.pick(&known).to_string();
        if rng.pct(15) {
            let leaf = *rng.pick(&["new", "a", "z.txt"]);
            decorate(rng, format!("{p}/{leaf}"))
        } else {
            decorate(rng, p)
        }
    } else if rng.pct(60) && !pool.all.is_empty() {
        let p = rng.pick(&pool.all).clone();
        decorate(rng, p)
    } else if rng.pct(40) && !pool.all.is_empty() {
        let p = rng.pick(&pool.all).clone();
        let leaf = *rng.pick(&["new", "a", "z.txt"]);
        decorate(rng, format!("{p}/{leaf}"))
    } else {
        rng.pick(SYNTHETIC).to_string()
    }
}

fn dir_path(rng: &mut Rng, pool: &Pool, k: &Known) -> String {
    if rng.pct(70) && !k.dirs.is_empty() {
        let d: Vec<&String> = k.dirs.iter().collect();
        let p = rng.pick(&d).to_string();
        decorate(rng, p)
    } else if rng.pct(40) && !pool.dirs.is_empty() {
        let p = rng.pick(&pool.dirs).clone();
        decorate(rng, p)
    } else {
        any_path(rng, pool, k)
    }
}

fn file_path(rng: &mut Rng, pool: &Pool, k: &Known) -> String {
    if rng.pct(75) && !k.files.is_empty() {
        let f: Vec<&String> = k.files.iter().collect();
        let p = rng.pick(&f).to_string();
        decorate(rng, p)
    } else if rng.pct(50) && !pool.files.is_empty() {
        let p = rng.pick(&pool.files).clone();
        decorate(rng, p)
    } else {
        any_path(rng, pool, k)
    }
}

/// A path whose last component (or a middle one) is a wildcard.
fn wildcard(rng: &mut Rng, pool: &Pool, k: &Known) -> String {
    let known = k.all();
    let base = if rng.pct(50) && !known.is_empty() {
        rng.pick(&known).to_string()
    } else if rng.pct(50) && !pool.all.is_empty() {
        rng.pick(&pool.all).clone()
    } else {
        rng.pick(&["a", "sub/b", "x"]).to_string()
    };
    let star = *rng.pick(&["*", "a*", "[ab]*", "?", "*.txt", "*/f.txt", "[!a]*", "*/*"]);
    let p = match base.rsplit_once('/') {
        Some((dir, _)) if rng.pct(70) => format!("{dir}/{star}"),
        _ => star.to_string(),
    };
    if rng.pct(40) {
        format!("/{p}")
    } else {
        p
    }
}

fn mode_str(rng: &mut Rng, dir: bool) -> String {
    let m = if rng.pct(60) {
        if dir {
            *rng.pick(&[0o755, 0o700, 0o1777, 0o2775, 0o555])
        } else {
            *rng.pick(&[0o644, 0o755, 0o600, 0o4755, 0o6711, 0o1644, 0o400])
        }
    } else {
        rng.below(0o10000) as u32
    };
    if rng.pct(50) {
        format!("{m:04o}")
    } else {
        format!("{m:o}")
    }
}

fn owner_val(rng: &mut Rng) -> Value {
    let (u, g) = (
        *rng.pick(&[0u32, 1, 1000, 4242, 65534]),
        *rng.pick(&[0u32, 1, 1000, 777, 65534]),
    );
    if rng.pct(50) {
        json!(format!("{u}:{g}"))
    } else {
        json!({"uid": u, "gid": g})
    }
}

fn timestamp(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => json!(0),
        1 => json!(1_700_000_000),
        2 if rng.pct(20) => json!(-1),
        _ => json!(rng.below(2_000_000_000)),
    }
}

/// Adds `owner` / `mode` / `timestamp` overrides, each with probability `p`.
fn overrides(rng: &mut Rng, body: &mut Map<String, Value>, p: u32, dir: bool, mode: bool) {
    if rng.pct(p) {
        body.insert("owner".into(), owner_val(rng));
    }
    if mode && rng.pct(p) {
        body.insert("mode".into(), json!(mode_str(rng, dir)));
    }
    if rng.pct(p) {
        body.insert("timestamp".into(), timestamp(rng));
    }
}

fn flag(rng: &mut Rng, body: &mut Map<String, Value>, key: &str, p: u32) {
    if rng.pct(p) {
        body.insert(key.into(), json!(true));
    }
}

/// A random graph over the trees of `pool`: `locals` first, then ops of every
/// kind, each referring only to earlier ops.
pub fn gen_graph(rng: &mut Rng, pool: &Pool) -> GraphSpec {
    let mut ops: Vec<(String, Value)> = Vec::new();
    // per op: its ancestors (by index), for diffs whose upper grows from
    // lower, and the paths its tree likely holds
    let mut anc: Vec<BTreeSet<usize>> = Vec::new();
    let mut known: Vec<Known> = Vec::new();
    let empty = Known::default();
    let local_known = |path: &str| pool.known.get(path).cloned().unwrap_or_default();
    let n_locals = rng.range(1, 3);
    for i in 0..n_locals {
        let mut body = Map::new();
        let path = if rng.pct(3) {
            "missing".to_string()
        } else if i < 3 && rng.pct(70) {
            format!("t{}", i % 3)
        } else {
            rng.pick(&pool.local_dirs).clone()
        };
        known.push(local_known(&path));
        body.insert("path".into(), json!(path));
        if rng.pct(25) {
            body.insert("include".into(), json!(patterns(rng, pool)));
        }
        if rng.pct(25) {
            body.insert("exclude".into(), json!(patterns(rng, pool)));
        }
        ops.push((format!("src{i}"), json!({ "local": body })));
        anc.push(BTreeSet::new());
    }
    let n_ops = rng.range(2, 12);
    for i in 0..n_ops {
        let idx = ops.len();
        let pick_ref = |rng: &mut Rng| -> usize {
            if rng.pct(50) {
                idx - 1
            } else {
                rng.below(idx)
            }
        };
        let mut used: BTreeSet<usize> = BTreeSet::new();
        let mut body = Map::new();
        let base = |rng: &mut Rng,
                    body: &mut Map<String, Value>,
                    used: &mut BTreeSet<usize>|
         -> Option<usize> {
            if rng.pct(85) {
                let r = pick_ref(rng);
                used.insert(r);
                body.insert("base".into(), json!(ops[r].0));
                Some(r)
            } else {
                None
            }
        };
        let mut k;
        let kind = match rng.weighted(&[8, 8, 5, 7, 12, 12, 8, 10, 8, 3, 2, 2]) {
            0 => {
                let b = base(rng, &mut body, &mut used);
                k = b.map_or_else(Known::default, |b| known[b].clone());
                let p = any_path(rng, pool, &k);
                body.insert("path".into(), json!(p));
                if rng.pct(40) {
                    body.insert("mode".into(), json!(mode_str(rng, true)));
                }
                flag(rng, &mut body, "parents", 75);
                overrides(rng, &mut body, 25, true, false);
                k.add_dir(&p);
                "mkdir"
            }
            1 => {
                let b = base(rng, &mut body, &mut used);
                k = b.map_or_else(Known::default, |b| known[b].clone());
                let p = if rng.pct(50) && !k.dirs.is_empty() {
                    // a new file in a directory that is there
                    let d: Vec<&String> = k.dirs.iter().collect();
                    format!("/{}/{}", rng.pick(&d), rng.pick(&["new", "f.txt", "a"]))
                } else {
                    file_path(rng, pool, &k)
                };
                body.insert("path".into(), json!(p));
                match rng.below(3) {
                    0 => {
                        body.insert("data".into(), json!(format!("data {}\n", rng.below(5))));
                    }
                    1 => {
                        use base64::Engine;
                        let b = bytes(rng.next(), rng.range(0, 300));
                        body.insert(
                            "data_base64".into(),
                            json!(base64::engine::general_purpose::STANDARD.encode(b)),
                        );
                    }
                    _ => {}
                }
                if rng.pct(40) {
                    body.insert("mode".into(), json!(mode_str(rng, false)));
                }
                overrides(rng, &mut body, 25, false, false);
                k.add_file(&p);
                "mkfile"
            }
            2 => {
                let b = base(rng, &mut body, &mut used);
                k = b.map_or_else(Known::default, |b| known[b].clone());
                let p = if rng.pct(50) && !k.dirs.is_empty() {
                    let d: Vec<&String> = k.dirs.iter().collect();
                    format!("/{}/{}", rng.pick(&d), rng.pick(&["link", "l2"]))
                } else {
                    any_path(rng, pool, &k)
                };
                body.insert("path".into(), json!(p));
                let t = match rng.below(5) {
                    0 => "a".to_string(),
                    1 => "../../..".to_string(),
                    2 if !pool.all.is_empty() => format!("/{}", rng.pick(&pool.all)),
                    3 => "nowhere".to_string(),
                    _ => rng.pick(&["sub", "/", ".", "f.txt", "../b"]).to_string(),
                };
                body.insert("target".into(), json!(t));
                overrides(rng, &mut body, 20, false, false);
                k.remove(&p);
                "symlink"
            }
            3 => {
                let b = base(rng, &mut body, &mut used);
                k = b.map_or_else(Known::default, |b| known[b].clone());
                let wild = rng.pct(35);
                let p = if wild {
                    wildcard(rng, pool, &k)
                } else {
                    any_path(rng, pool, &k)
                };
                let p = if p.trim_matches(['/', '.']).is_empty() {
                    "a".to_string()
                } else {
                    p
                };
                body.insert("path".into(), json!(p));
                flag(rng, &mut body, "allow_not_found", 40);
                if wild || rng.pct(10) {
                    flag(rng, &mut body, "allow_wildcard", 85);
                }
                k.remove(&p);
                "rm"
            }
            4 => {
                let b = base(rng, &mut body, &mut used);
                k = b.map_or_else(Known::default, |b| known[b].clone());
                let s = pick_ref(rng);
                used.insert(s);
                body.insert("source".into(), json!(ops[s].0));
                let wild = rng.pct(25);
                let src_all = known[s].all();
                let src = if wild {
                    wildcard(rng, pool, &known[s])
                } else if rng.pct(10) {
                    "/".to_string()
                } else if rng.pct(70) && !src_all.is_empty() {
                    format!("/{}", rng.pick(&src_all))
                } else {
                    any_path(rng, pool, &known[s])
                };
                let dest = if rng.pct(15) {
                    "/".to_string()
                } else {
                    dir_path(rng, pool, &k)
                };
                body.insert("src".into(), json!(src));
                body.insert("dest".into(), json!(dest));
                if wild {
                    flag(rng, &mut body, "allow_wildcard", 85);
                    flag(rng, &mut body, "allow_empty_wildcard", 40);
                }
                for (key, p) in [
                    ("follow_symlinks", 25),
                    ("contents_only", 30),
                    ("create_dest_path", 70),
                    ("replace_existing", 65),
                ] {
                    flag(rng, &mut body, key, p);
                }
                if rng.pct(15) {
                    body.insert("include".into(), json!(patterns(rng, pool)));
                }
                if rng.pct(15) {
                    body.insert("exclude".into(), json!(patterns(rng, pool)));
                }
                overrides(rng, &mut body, 20, false, true);
                let src_k = known[s].clone();
                k.place(&src_k, &src, &dest);
                "copy"
            }
            5 => {
                let b = base(rng, &mut body, &mut used);
                k = b.map_or_else(Known::default, |b| known[b].clone());
                let s = pick_ref(rng);
                used.insert(s);
                body.insert("source".into(), json!(ops[s].0));
                let path = if rng.pct(25) {
                    "/".to_string()
                } else {
                    dir_path(rng, pool, &k)
                };
                body.insert("path".into(), json!(path));
                let mut sp = "/".to_string();
                if rng.pct(40) {
                    sp = dir_path(rng, pool, &known[s]);
                    body.insert("source_path".into(), json!(sp));
                }
                if rng.pct(20) {
                    body.insert("include".into(), json!(patterns(rng, pool)));
                }
                if rng.pct(20) {
                    body.insert("exclude".into(), json!(patterns(rng, pool)));
                }
                overrides(rng, &mut body, 20, true, true);
                let src_k = known[s].clone();
                k.place(&src_k, &sp, &path);
                "with_directory"
            }
            6 => {
                let b = base(rng, &mut body, &mut used);
                k = b.map_or_else(Known::default, |b| known[b].clone());
                let s = pick_ref(rng);
                used.insert(s);
                body.insert("source".into(), json!(ops[s].0));
                let p = any_path(rng, pool, &k);
                body.insert("path".into(), json!(p));
                let sp = file_path(rng, pool, &known[s]);
                let sp = if sp.trim_matches(['/', '.']).is_empty() {
                    "f.txt".to_string()
                } else {
                    sp
                };
                body.insert("source_path".into(), json!(sp));
                overrides(rng, &mut body, 20, false, true);
                k.add_file(&p);
                "with_file"
            }
            7 => {
                let n = rng.range(0, 4);
                let mut inputs = Vec::new();
                k = Known::default();
                for _ in 0..n {
                    let r = pick_ref(rng);
                    used.insert(r);
                    inputs.push(json!(ops[r].0));
                    let other = known[r].clone();
                    k.place(&other, "", "");
                }
                body.insert("inputs".into(), json!(inputs));
                "merge"
            }
            8 => {
                // upper often derived from lower, so the diff is small
                let upper = pick_ref(rng);
                let lower = if rng.pct(65) && !anc[upper].is_empty() {
                    let a: Vec<usize> = anc[upper].iter().copied().collect();
                    *rng.pick(&a)
                } else if rng.pct(10) {
                    upper
                } else {
                    rng.below(idx)
                };
                used.insert(upper);
                used.insert(lower);
                body.insert("lower".into(), json!(ops[lower].0));
                body.insert("upper".into(), json!(ops[upper].0));
                k = known[upper].clone();
                "diff"
            }
            9 => {
                let p = rng.pick(&pool.local_dirs).clone();
                k = local_known(&p);
                body.insert("path".into(), json!(p));
                if rng.pct(40) {
                    body.insert("exclude".into(), json!(patterns(rng, pool)));
                }
                if rng.pct(30) {
                    body.insert("include".into(), json!(patterns(rng, pool)));
                }
                "local"
            }
            10 => {
                k = empty.clone();
                "scratch"
            }
            _ => {
                // a duplicate of an earlier op under another name (dedupe)
                let r = rng.below(idx);
                let op = ops[r].1.clone();
                for d in GraphSpec::refs(&op) {
                    if let Some(j) = ops.iter().position(|(n, _)| *n == d) {
                        used.insert(j);
                    }
                }
                let (kd, b) = op
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .map(|(kd, b)| (kd.clone(), b.clone()))
                    .expect("op");
                body = b.as_object().cloned().unwrap_or_default();
                let name = format!("op{i}_{kd}_dup");
                let mut a = BTreeSet::new();
                for u in &used {
                    a.insert(*u);
                    a.extend(anc[*u].iter().copied());
                }
                ops.push((name, json!({ kd: Value::Object(body) })));
                anc.push(a);
                known.push(known[r].clone());
                continue;
            }
        };
        let mut a = BTreeSet::new();
        for u in &used {
            a.insert(*u);
            a.extend(anc[*u].iter().copied());
        }
        ops.push((
            format!("op{i}_{kind}"),
            json!({ kind: Value::Object(body) }),
        ));
        anc.push(a);
        known.push(k);
    }
    let last = ops.last().expect("ops").0.clone();
    let mut outputs = vec![("default".to_string(), last)];
    if rng.pct(50) {
        outputs.push(("o2".to_string(), rng.pick(&ops).0.clone()));
    }
    if rng.pct(20) {
        outputs.push(("o3".to_string(), rng.pick(&ops).0.clone()));
    }
    let epoch = if rng.pct(30) {
        rng.below(2_000_000_000) as i64
    } else {
        0
    };
    let mut g = GraphSpec {
        epoch,
        ops,
        outputs,
    };
    if rng.pct(80) {
        g.gc();
    }
    g
}

// ---------------------------------------------------------------------------
// Running the binary.

/// The binary under test: `$HARDMERGE_BIN`, else the one cargo built.
pub fn bin() -> PathBuf {
    match std::env::var_os("HARDMERGE_BIN") {
        Some(b) if !b.is_empty() => {
            let p = PathBuf::from(b);
            std::path::absolute(&p).unwrap_or(p)
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_hardmerge")),
    }
}

/// One finished run.
#[derive(Clone, Debug)]
pub struct Out {
    /// The exit code, or `-signal` when killed (`-1000` on the time cap).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The tree digest `build` prints last, if it did.
    pub fn digest(&self) -> Option<String> {
        let last = self.stdout.lines().last()?.trim();
        (last.starts_with("sha256:") && last.len() == 71).then(|| last.to_string())
    }

    /// The first `error:` line of stderr.
    pub fn error(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .or_else(|| self.stderr.lines().find(|l| l.contains("error")))
            .unwrap_or("")
            .to_string()
    }

    /// A crash: a signal, the time cap, or a panic message.
    pub fn crashed(&self) -> bool {
        self.code < 0
            || ["panicked", "RUST_BACKTRACE", "stack backtrace"]
                .iter()
                .any(|b| self.stderr.contains(b))
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(300);

pub fn run<S: AsRef<OsStr>>(bin: &Path, args: &[S]) -> Out {
    let dir = tempfile::tempdir().expect("tempdir");
    let (op, ep) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("HARDMERGE_STORE")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&op).expect("stdout file"))
        .stderr(fs::File::create(&ep).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let start = Instant::now();
    let mut sleep = Duration::from_micros(200);
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code().unwrap_or_else(|| -s.signal().unwrap_or(1000));
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break -1000;
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(5));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Out {
        code,
        stdout: read(&op),
        stderr: read(&ep),
    }
}

/// `build GRAPH --store S --context C --strategy X --progress quiet EXTRA..`
pub fn build(
    bin: &Path,
    graph: &Path,
    store: &Path,
    ctx: &Path,
    strategy: &str,
    extra: &[&OsStr],
) -> Out {
    let mut args: Vec<OsString> = vec![
        "build".into(),
        graph.into(),
        "--store".into(),
        store.into(),
        "--context".into(),
        ctx.into(),
        "--strategy".into(),
        strategy.into(),
        "--progress".into(),
        "quiet".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_os_string()));
    run(bin, &args)
}

pub fn verify(bin: &Path, store: &Path) -> Out {
    run(
        bin,
        &[
            OsStr::new("verify"),
            OsStr::new("--store"),
            store.as_os_str(),
        ],
    )
}

/// The manifest of a folder (`tree DIR --json`), entries by path.
pub fn manifest(bin: &Path, dir: &Path) -> Result<BTreeMap<String, Value>, String> {
    let out = run(
        bin,
        &[OsStr::new("tree"), dir.as_os_str(), OsStr::new("--json")],
    );
    if out.code != 0 {
        return Err(format!(
            "tree {}: exit {}: {}",
            dir.display(),
            out.code,
            out.stderr
        ));
    }
    let v: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("tree json: {e}"))?;
    Ok(v.as_array()
        .ok_or("manifest is not an array")?
        .iter()
        .map(|e| (e["path"].as_str().unwrap_or("?").to_string(), e.clone()))
        .collect())
}

/// The entries where two manifests differ, one line each.
pub fn manifest_diff(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => {
                let mut fields = Vec::new();
                let (xo, yo) = (x.as_object().cloned(), y.as_object().cloned());
                let (xo, yo) = (xo.unwrap_or_default(), yo.unwrap_or_default());
                let fk: BTreeSet<&String> = xo.keys().chain(yo.keys()).collect();
                for f in fk {
                    if xo.get(f) != yo.get(f) {
                        fields.push(format!(
                            "{f}: {} vs {}",
                            xo.get(f).map(Value::to_string).unwrap_or("-".into()),
                            yo.get(f).map(Value::to_string).unwrap_or("-".into())
                        ));
                    }
                }
                out.push(format!("  {k:?} differs: {}", fields.join("; ")));
            }
            (Some(x), None) => out.push(format!("  {k:?} only in the first: {x}")),
            (None, Some(y)) => out.push(format!("  {k:?} only in the second: {y}")),
            (None, None) => {}
        }
    }
    out
}

/// Reads an environment number, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            let v = v.trim();
            let parsed = if let Some(h) = v.strip_prefix("0x") {
                u64::from_str_radix(h, 16)
            } else {
                v.parse()
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        _ => default,
    }
}

pub fn os_path(p: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(p.to_vec()))
}
