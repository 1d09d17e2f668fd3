//! What the build tests share: running the real binary with a time cap,
//! a private store / context / output per test, source trees with stable
//! mtimes, and reading exported trees back through `hardmerge tree --json`.
//!
//! Each test binary uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use filetime::FileTime;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_hardmerge");

/// Wall-time cap of one run of the binary.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The mtime given to every entry of a test's source tree (a fixed value,
/// so that digests do not depend on when the test ran).
pub const T0: i64 = 1_600_000_000;

/// One finished run of the binary.
pub struct Run {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Never a signal or a panic, whatever the exit code.
    pub fn assert_no_crash(&self) -> &Self {
        assert!(
            self.status.signal().is_none(),
            "{}: killed by signal {:?}; stderr: {}",
            self.what,
            self.status.signal(),
            self.stderr
        );
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !self.stderr.contains(bad),
                "{}: stderr holds {bad:?}: {}",
                self.what,
                self.stderr
            );
        }
        self
    }

    /// Exit 0.
    pub fn ok(&self) -> &Self {
        self.assert_no_crash();
        assert_eq!(
            self.code(),
            Some(0),
            "{}: expected success\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Exit `code`, with one `error: ` message on stderr.
    pub fn fails(&self, code: i32) -> &Self {
        self.assert_no_crash();
        assert_eq!(
            self.code(),
            Some(code),
            "{}: expected exit {code}\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains("error: "),
            "{}: no `error: ` line on stderr: {}",
            self.what,
            self.stderr
        );
        self
    }

    /// The `error: ` lines of stderr.
    pub fn error(&self) -> String {
        self.stderr
            .lines()
            .filter(|l| l.contains("error"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The tree digest `build` prints on the last line of stdout.
    pub fn digest(&self) -> String {
        let last = self.stdout.lines().last().unwrap_or("").trim().to_string();
        assert!(
            last.starts_with("sha256:") && last.len() == 71,
            "{}: last stdout line is not a digest: {:?}",
            self.what,
            self.stdout
        );
        last
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {}", self.what, self.stdout))
    }
}

/// Runs the binary with `args` and no stdin, killed after the time cap.
pub fn hm<S: AsRef<OsStr>>(args: &[S]) -> Run {
    hm_as(None, args)
}

/// The same, as user and group `ids` when given (root only).
pub fn hm_as<S: AsRef<OsStr>>(ids: Option<(u32, u32)>, args: &[S]) -> Run {
    let what = format!(
        "hardmerge {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = Command::new(BIN);
    if let Some((uid, gid)) = ids {
        use std::os::unix::process::CommandExt;
        // std drops root's supplementary groups along with the uid
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd
        .args(args)
        .env_remove("HARDMERGE_STORE")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).expect("read")).into_owned();
    Run {
        what,
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a root-only test may run; prints the skip line otherwise.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        true
    } else {
        eprintln!("skipped {test}: needs root (chown, mount)");
        false
    }
}

/// A test's private folders: `store`, `ctx` (the context), and room for
/// graphs, outputs and reports.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub store: PathBuf,
    pub ctx: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        Env::in_dir(&std::env::temp_dir())
    }

    pub fn in_dir(parent: &Path) -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("hm-build-")
            .tempdir_in(parent)
            .expect("tempdir");
        let store = tmp.path().join("store");
        let ctx = tmp.path().join("ctx");
        fs::create_dir(&ctx).expect("ctx");
        Env { tmp, store, ctx }
    }

    /// A path in the test's folder (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a graph file (outside the context) and returns its path.
    pub fn graph(&self, name: &str, graph: &Value) -> PathBuf {
        let p = self.path(&format!("{name}.json"));
        fs::write(&p, serde_json::to_vec_pretty(graph).expect("json")).expect("write graph");
        p
    }

    /// `build GRAPH --store S --context C --progress quiet EXTRA...`.
    pub fn build(&self, graph: &Path, extra: &[&str]) -> Run {
        self.build_in(&self.store, graph, extra)
    }

    /// The same against another store.
    pub fn build_in(&self, store: &Path, graph: &Path, extra: &[&str]) -> Run {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("build"),
            graph.as_os_str(),
            OsStr::new("--store"),
            store.as_os_str(),
            OsStr::new("--context"),
            self.ctx.as_os_str(),
        ];
        if !extra.iter().any(|a| a.starts_with("--progress")) {
            args.push(OsStr::new("--progress"));
            args.push(OsStr::new("plain"));
        }
        args.extend(extra.iter().map(OsStr::new));
        hm(&args)
    }

    /// Builds `target` (or the default) and exports it to a fresh folder
    /// `out-NAME`; returns the digest and the export's path.
    pub fn export(&self, graph: &Path, target: Option<&str>, out: &str) -> (String, PathBuf) {
        let dir = self.path(out);
        let mut extra = vec!["--output", dir.to_str().expect("utf-8 path")];
        if let Some(t) = target {
            extra.extend(["--target", t]);
        }
        let run = self.build(graph, &extra);
        run.ok();
        (run.digest(), dir)
    }

    /// `du --store S --json`.
    pub fn du(&self) -> Value {
        let run = hm(&[
            OsStr::new("du"),
            OsStr::new("--store"),
            self.store.as_os_str(),
            OsStr::new("--json"),
        ]);
        run.ok();
        run.json()
    }

    /// `verify --store S` exits 0.
    pub fn verify(&self) {
        verify(&self.store);
    }
}

pub fn verify(store: &Path) {
    hm(&[
        OsStr::new("verify"),
        OsStr::new("--store"),
        store.as_os_str(),
    ])
    .ok();
}

/// The manifest of a folder (`tree DIR --json`), by path.
pub fn manifest(dir: &Path) -> BTreeMap<String, Value> {
    let run = hm(&[OsStr::new("tree"), dir.as_os_str(), OsStr::new("--json")]);
    run.ok();
    let entries = run.json();
    entries
        .as_array()
        .expect("manifest array")
        .iter()
        .map(|e| (e["path"].as_str().expect("path").to_string(), e.clone()))
        .collect()
}

/// The tree digest of a folder (`tree DIR`, last line).
pub fn tree_digest(dir: &Path) -> String {
    let run = hm(&[OsStr::new("tree"), dir.as_os_str()]);
    run.ok();
    run.digest()
}

/// The manifest entry at `path`, or a panic listing what is there.
pub fn entry<'m>(m: &'m BTreeMap<String, Value>, path: &str) -> &'m Value {
    m.get(path).unwrap_or_else(|| {
        panic!(
            "no entry {path:?}; the tree holds {:?}",
            m.keys().collect::<Vec<_>>()
        )
    })
}

pub fn paths(m: &BTreeMap<String, Value>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

/// Writes `data` at `root/rel`, parents created, with permission `mode`.
pub fn write(root: &Path, rel: &str, data: &[u8], mode: u32) -> PathBuf {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, data).expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

/// Sets the mtime (and atime) of `path`, not following a symlink.
pub fn set_mtime(path: &Path, secs: i64) {
    let t = FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(path, t, t)
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// Gives every entry below `root` (the root too) the mtime `secs`, children
/// first so that setting them does not move their directory's mtime.
pub fn freeze_mtimes(root: &Path, secs: i64) {
    fn walk(p: &Path, secs: i64) {
        let meta = fs::symlink_metadata(p).expect("stat");
        if meta.is_dir() {
            for e in fs::read_dir(p).expect("readdir") {
                walk(&e.expect("entry").path(), secs);
            }
        }
        set_mtime(p, secs);
    }
    walk(root, secs);
}

/// Pseudo-random bytes, distinct per seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads a build report written by `--report`.
pub fn report(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Everything of a manifest entry but the fields named.
pub fn without(e: &Value, fields: &[&str]) -> Value {
    let mut e = e.clone();
    if let Some(o) = e.as_object_mut() {
        for f in fields {
            o.remove(*f);
        }
    }
    e
}

/// The test source tree at `ctx/src`, every mtime fixed:
///
/// ```text
/// a.txt        "alpha\n" 0640, mtime T0+1, xattr user.color=blue
/// sub/         0755, xattr user.dir=1
/// sub/a-link   hardlink of a.txt
/// sub/deep/    mtime T0+2
/// sub/deep/f   "deep\n"
/// bin/run.sh   0755
/// bin/suid     04755
/// private/     0700, private/key 0600
/// notes.md, readme.md
/// ln -> a.txt, dangling -> nowhere
/// ```
pub fn make_src(ctx: &Path) -> PathBuf {
    let src = ctx.join("src");
    write(&src, "a.txt", b"alpha\n", 0o640);
    fs::create_dir_all(src.join("sub/deep")).expect("mkdir");
    fs::hard_link(src.join("a.txt"), src.join("sub/a-link")).expect("link");
    write(&src, "sub/deep/f", b"deep\n", 0o644);
    write(&src, "bin/run.sh", b"#!/bin/sh\necho run\n", 0o755);
    write(&src, "bin/suid", b"#!/bin/sh\n", 0o4755);
    write(&src, "private/key", b"secret\n", 0o600);
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o700)).expect("chmod");
    write(&src, "notes.md", b"# notes\n", 0o644);
    write(&src, "readme.md", b"# readme\n", 0o644);
    std::os::unix::fs::symlink("a.txt", src.join("ln")).expect("symlink");
    std::os::unix::fs::symlink("nowhere", src.join("dangling")).expect("symlink");
    xattr::set(src.join("a.txt"), "user.color", b"blue").expect("xattr (user.* needed)");
    xattr::set(src.join("sub"), "user.dir", b"1").expect("xattr");
    freeze_mtimes(&src, T0);
    set_mtime(&src.join("a.txt"), T0 + 1);
    set_mtime(&src.join("sub/deep"), T0 + 2);
    src
}

/// base64 of `s`, as the manifest writes xattr values.
pub fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A filesystem mounted for a test, unmounted when dropped.
pub struct Mount {
    pub at: PathBuf,
    /// A folder deleted once unmounted (a loop image's).
    pub remove_after: Option<PathBuf>,
}

impl Mount {
    /// `mount -t tmpfs -o OPTS tmpfs AT`.
    pub fn tmpfs(at: &Path, opts: &str) -> Result<Mount, String> {
        Mount::run(&["-t", "tmpfs", "-o", opts, "tmpfs"], at)
    }

    /// `mount -o loop IMAGE AT`; `holder` is deleted after the unmount.
    pub fn loop_image(image: &Path, at: &Path, holder: Option<PathBuf>) -> Result<Mount, String> {
        let img = image.to_str().ok_or("image path is not UTF-8")?;
        let mut m = Mount::run(&["-o", "loop", img], at)?;
        m.remove_after = holder;
        Ok(m)
    }

    fn run(args: &[&str], at: &Path) -> Result<Mount, String> {
        let out = Command::new("mount")
            .args(args)
            .arg(at)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if out.status.success() {
            Ok(Mount {
                at: at.to_path_buf(),
                remove_after: None,
            })
        } else {
            Err(format!(
                "mount {args:?} {}: {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
        if let Some(dir) = &self.remove_after {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// The link limit of an ext4 inode (ext2/3: 32,000; `fill_links` stops at
/// whichever the filesystem enforces).
pub const EXT_LINK_MAX: u64 = 65_000;

/// Whether `dir` is on ext2/3/4 (one magic number for the three), the
/// filesystems whose link limit a test can reach.
pub fn on_ext(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type() == nix::sys::statfs::EXT4_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Links `file` from `dir` (created, on the same filesystem) until it has
/// `n` links or the filesystem refuses one more (EMLINK); returns its link
/// count then.
pub fn fill_links(file: &Path, dir: &Path, n: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::create_dir_all(dir).unwrap();
    let mut nlink = fs::metadata(file).unwrap().nlink();
    let mut k = 0u64;
    while nlink < n {
        match fs::hard_link(file, dir.join(format!("l{k}"))) {
            Ok(()) => nlink += 1,
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => break,
            Err(e) => panic!("link {} into {}: {e}", file.display(), dir.display()),
        }
        k += 1;
    }
    nlink
}
