//! What the crash, concurrency and full-disk tests share, on top of
//! `common`: a seeded random generator, the binary started in the
//! background (to be killed, or to run beside others), large generated
//! source trees, and a look at the store's own folders (SPEC §4: a work
//! area is `STORE/work/NAME` with `NAME.lock`, a commit is
//! `STORE/snapshots/HEX`).
//!
//! Each test binary uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, Run, BIN, T0};

/// A small seeded generator (splitmix64): the same seed gives the same
/// kill delays and trees on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// A number from the environment variable `name`, else `default` (to run
/// the tests bigger by hand: `HM_CRASH_KILLS=200 cargo test --test crash`).
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A folder for the tests' stores and sources: `/dev/shm` when it is a
/// writable folder (a tmpfs: the builds' cost is then CPU, not a shared
/// disk's `syncfs`, so kill delays spread over the build as measured),
/// else the temp folder.
pub fn fast_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Writes `files` small files (16 to 271 bytes of distinct data each) under
/// `root`, spread over 2 levels of folders, every mtime `T0`. The same
/// `seed` gives the same tree.
pub fn small_files_tree(root: &Path, files: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let dirs = (files / 200).clamp(1, 50);
    for i in 0..files {
        let rel = format!("d{:02}/e{}/f{i:05}", i % dirs, (i / dirs) % 10);
        let len = 16 + rng.below(256) as usize;
        let mode = if i % 7 == 0 { 0o755 } else { 0o644 };
        common::write(root, &rel, &common::bytes(seed ^ (i as u64 + 1), len), mode);
    }
    common::freeze_mtimes(root, T0);
}

/// Writes `files` files of `size` distinct bytes at `root/fNNN`, mtimes `T0`.
pub fn big_files_tree(root: &Path, files: usize, size: usize, seed: u64) {
    for i in 0..files {
        common::write(
            root,
            &format!("f{i:03}"),
            &common::bytes(seed.wrapping_mul(1000) + i as u64 + 1, size),
            0o644,
        );
    }
    common::freeze_mtimes(root, T0);
}

/// The binary running in the background, its output going to files.
pub struct Proc {
    pub what: String,
    pub child: Child,
    pub started: Instant,
    dir: tempfile::TempDir,
}

/// Starts the binary with `args` (no `HARDMERGE_STORE`, no stdin).
pub fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Proc {
    let what = format!(
        "hardmerge {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new(BIN)
        .args(args)
        .env_remove("HARDMERGE_STORE")
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.path().join("out")).expect("stdout file"))
        .stderr(fs::File::create(dir.path().join("err")).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    Proc {
        what,
        child,
        started: Instant::now(),
        dir,
    }
}

/// `build GRAPH --store S --context C --progress plain EXTRA...`, started.
pub fn spawn_build(graph: &Path, store: &Path, ctx: &Path, extra: &[&str]) -> Proc {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("build"),
        graph.as_os_str(),
        OsStr::new("--store"),
        store.as_os_str(),
        OsStr::new("--context"),
        ctx.as_os_str(),
        OsStr::new("--progress"),
        OsStr::new("plain"),
    ];
    args.extend(extra.iter().map(OsStr::new));
    spawn(&args)
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running (not yet exited).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Its stderr so far.
    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.path().join("err")).unwrap_or_default())
            .into_owned()
    }

    /// SIGKILL if still running; reaped either way. Returns whether it was
    /// killed (false: it had already finished).
    pub fn kill9(mut self) -> (bool, Run) {
        let killed = match self.child.try_wait().expect("try_wait") {
            Some(_) => false,
            None => {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(self.child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .expect("kill");
                true
            }
        };
        let run = self.wait(Duration::from_secs(30));
        // A process that exited on its own just before the signal counts
        // as finished, not killed.
        let killed = killed && run.status.code().is_none();
        (killed, run)
    }

    /// Waits for the end (killed, and the test failed, after `cap`).
    pub fn wait(mut self, cap: Duration) -> Run {
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if self.started.elapsed() > cap {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{}: still running after {cap:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let read = |n: &str| {
            String::from_utf8_lossy(&fs::read(self.dir.path().join(n)).unwrap_or_default())
                .into_owned()
        };
        Run {
            what: self.what.clone(),
            status,
            stdout: read("out"),
            stderr: read("err"),
        }
    }
}

/// The names in a folder, sorted (empty when it is missing).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The store's work areas and their locks (`STORE/work`).
pub fn work_entries(store: &Path) -> Vec<String> {
    names(&store.join("work"))
}

/// The keys (hex) of the store's committed snapshots.
pub fn snapshot_keys(store: &Path) -> BTreeSet<String> {
    names(&store.join("snapshots")).into_iter().collect()
}

/// `du -sb DIR`: apparent bytes, each hardlinked inode once.
pub fn du_sb(dir: &Path) -> u64 {
    let out = Command::new("du")
        .arg("-sb")
        .arg(dir)
        .output()
        .expect("du -sb");
    assert!(out.status.success(), "du -sb {}", dir.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du -sb output")
}

/// `verify --store S`, which must exit 0 (it opens the store, so it also
/// discards the leftovers of dead processes).
pub fn verify_ok(store: &Path) -> Run {
    let run = common::hm(&[
        OsStr::new("verify"),
        OsStr::new("--store"),
        store.as_os_str(),
    ]);
    run.ok();
    assert!(
        run.stdout.starts_with("ok: "),
        "{}: {}",
        run.what,
        run.stdout
    );
    run
}

/// `prune --all --store S`, which must exit 0.
pub fn prune_all(store: &Path) -> Run {
    let run = common::hm(&[
        OsStr::new("prune"),
        OsStr::new("--all"),
        OsStr::new("--store"),
        store.as_os_str(),
    ]);
    run.ok();
    run
}

/// `du --store S --json`'s `physical_bytes`.
pub fn du_physical(store: &Path) -> u64 {
    let run = common::hm(&[
        OsStr::new("du"),
        OsStr::new("--store"),
        store.as_os_str(),
        OsStr::new("--json"),
    ]);
    run.ok();
    run.json()["physical_bytes"]
        .as_u64()
        .expect("physical_bytes")
}

/// Whether a process `pid` is alive (a zombie counts as dead).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .map(|r| r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
