//! Hostile input (SPEC §7): every case of `fixtures/hostile/` (see its
//! README) runs through the real binary in a sandbox of its own. The exit
//! code, the output and a listing of the export are an insta snapshot
//! (`snapshots/hostile@<case>.snap`), and every case checks that nothing
//! outside the context, the store and the export changed: canary files,
//! folders and symlinks around them are compared, bytes and metadata, before
//! and after (a read of a canary file shows as a changed atime).
//!
//! The sandbox, `[TMP]` in snapshots:
//!
//! ```text
//! [TMP]/top-canary.txt
//! [TMP]/w/ctx/            the context; cases put their sources here
//! [TMP]/w/store/          the store
//! [TMP]/w/out/            the export (missing unless a case makes it)
//! [TMP]/w/outside/        canaries that symlinks point to
//! [TMP]/w/sibling.txt     a canary next to the context
//! [TMP]/w/linked.txt      a canary that a source may hard-link
//! ```

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{freeze_mtimes, hm, is_root, set_mtime, write, Run, T0};
use filetime::FileTime;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mkdirat, Mode};

/// Where a case's graph comes from.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hostile")
        .join(format!("{name}.json"))
}

/// A name that a write escaping the tree would leave at the host's `/` or
/// `/etc`; checked after every case.
const PROBE: &str = "hm-hostile-probe";

// ===========================================================================
// The sandbox and its canaries
// ===========================================================================

struct Sandbox {
    tmp: tempfile::TempDir,
    /// `[TMP]/w`.
    w: PathBuf,
    ctx: PathBuf,
    store: PathBuf,
    out: PathBuf,
    outside: PathBuf,
}

/// Removed one level at a time: std's `remove_dir_all` (TempDir's drop)
/// recurses, and a case may leave a 100,000-level tree behind.
impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = hardmerge::fs::remove::remove_all(self.tmp.path());
    }
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("hm-hostile-")
            .tempdir()
            .expect("tempdir");
        let w = tmp.path().join("w");
        let s = Sandbox {
            ctx: w.join("ctx"),
            store: w.join("store"),
            out: w.join("out"),
            outside: w.join("outside"),
            w,
            tmp,
        };
        fs::create_dir_all(&s.ctx).expect("ctx");
        write(s.tmp.path(), "top-canary.txt", b"top\n", 0o644);
        write(&s.w, "sibling.txt", b"sibling\n", 0o600);
        write(&s.w, "linked.txt", b"linked\n", 0o640);
        write(&s.outside, "secret.txt", b"secret\n", 0o600);
        write(&s.outside, "run.sh", b"#!/bin/sh\n", 0o4755);
        write(&s.outside, "dir/nested.txt", b"nested\n", 0o444);
        symlink("secret.txt", s.outside.join("link")).expect("symlink");
        fs::set_permissions(s.outside.join("dir"), fs::Permissions::from_mode(0o2750))
            .expect("chmod");
        // An old atime: under relatime (or strictatime) any read moves it.
        for f in ["top-canary.txt", "w/sibling.txt", "w/linked.txt"]
            .iter()
            .map(|f| s.tmp.path().join(f))
            .chain(
                ["secret.txt", "run.sh", "dir/nested.txt"]
                    .iter()
                    .map(|f| s.outside.join(f)),
            )
        {
            filetime::set_file_times(
                &f,
                FileTime::from_unix_time(T0 - 30 * 86_400, 0),
                FileTime::from_unix_time(T0, 7),
            )
            .expect("utimes");
        }
        set_mtime(&s.outside.join("link"), T0 + 1);
        set_mtime(&s.outside.join("dir"), T0 + 2);
        set_mtime(&s.outside, T0 + 3);
        s
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The standard source `ctx/src`, with symlinks leading out of it:
    ///
    /// ```text
    /// hello.txt, dir/inner.txt, payload.txt
    /// root -> /            up -> ../../..   ([TMP] on the host)
    /// rel -> ../../outside abs -> [TMP]/w/outside
    /// ```
    fn src(&self) -> PathBuf {
        let src = self.ctx.join("src");
        write(&src, "hello.txt", b"hello\n", 0o644);
        write(&src, "dir/inner.txt", b"inner\n", 0o640);
        write(&src, "payload.txt", b"payload\n", 0o644);
        symlink("/", src.join("root")).expect("symlink");
        symlink("../../..", src.join("up")).expect("symlink");
        symlink("../../outside", src.join("rel")).expect("symlink");
        symlink(&self.outside, src.join("abs")).expect("symlink");
        chmod(&src.join("dir"), 0o755);
        freeze_mtimes(&src, T0);
        src
    }

    /// Replaces the sandbox's path by `[TMP]` (`[TMP-in-tree]` where a
    /// symlink placed it inside a tree, without its leading `/`), the
    /// checkout's by `[REPO]`, and the store's work folders by `work/[id]`.
    fn redact(&self, text: &str) -> String {
        let mut text = text.replace(env!("CARGO_MANIFEST_DIR"), "[REPO]");
        let real = self.root().canonicalize().expect("canonicalize");
        for p in [real.as_path(), self.root()] {
            let p = p.to_str().expect("utf-8 temp dir");
            text = text.replace(p, "[TMP]");
            text = text.replace(p.trim_start_matches('/'), "[TMP-in-tree]");
        }
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("/work/") {
            out.push_str(&rest[..i + 6]);
            rest = &rest[i + 6..];
            let n = rest
                .bytes()
                .take_while(|b| b.is_ascii_digit() || *b == b'-')
                .count();
            if n > 0 {
                out.push_str("[id]");
                rest = &rest[n..];
            }
        }
        out + rest
    }
}

/// Sets the mode of `path` (folders and special files are made under the
/// umask, and the snapshots must not depend on it).
fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// What is compared of a canary entry.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    nlink: u64,
    rdev: u64,
    mtime: (i64, i64),
    /// Files with one name only: a file with others may be read through them.
    atime: Option<(i64, i64)>,
    /// File bytes or symlink target.
    data: Vec<u8>,
}

fn kind(t: fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else {
        "socket"
    }
}

/// Every entry below `root` (itself included) but the subtrees `skip`, with
/// its metadata and bytes; files are read with O_NOATIME, so that taking the
/// picture does not change it. The folders holding a skipped path get it
/// created or removed: their mtime, size and link count are left out (their
/// entries are not).
fn picture(root: &Path, skip: &[&Path]) -> BTreeMap<PathBuf, Stat> {
    let mut all = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        if skip.contains(&p.as_path()) {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let kind = kind(m.file_type());
        let data = match kind {
            "file" => {
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOATIME)
                    .open(&p)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut v).expect("read");
                v
            }
            "symlink" => fs::read_link(&p)
                .expect("readlink")
                .into_os_string()
                .into_vec(),
            "dir" => {
                for e in fs::read_dir(&p).expect("readdir") {
                    todo.push(e.expect("entry").path());
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        let atime = (kind == "file" && m.nlink() == 1).then(|| (m.atime(), m.atime_nsec()));
        let holder = skip.iter().any(|s| s.parent() == Some(p.as_path()));
        all.insert(
            p.strip_prefix(root).expect("below root").to_path_buf(),
            Stat {
                kind,
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                size: if holder { 0 } else { m.size() },
                nlink: if holder { 0 } else { m.nlink() },
                rdev: m.rdev(),
                mtime: if holder {
                    (0, 0)
                } else {
                    (m.mtime(), m.mtime_nsec())
                },
                atime,
                data,
            },
        );
    }
    all
}

/// Panics naming every canary that changed, appeared or went.
fn assert_same(case: &str, before: &BTreeMap<PathBuf, Stat>, after: &BTreeMap<PathBuf, Stat>) {
    let mut diffs = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => diffs.push(format!("{} removed", p.display())),
            Some(a) if a != b => diffs.push(format!("{} changed: {b:?} -> {a:?}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("{} appeared", p.display()));
    }
    assert!(
        diffs.is_empty(),
        "{case}: outside the context, store and export:\n{}",
        diffs.join("\n")
    );
}

/// The host's own `/` and `/etc` hold no probe a case tried to write.
fn assert_no_probe(case: &str) {
    for dir in ["/", "/etc"] {
        let p = Path::new(dir).join(PROBE);
        assert!(
            fs::symlink_metadata(&p).is_err(),
            "{case}: {} exists: a write left the tree",
            p.display()
        );
        let p = Path::new(dir).join(format!("{PROBE}.txt"));
        assert!(fs::symlink_metadata(&p).is_err(), "{case}: {}", p.display());
    }
}

// ===========================================================================
// Reading results back
// ===========================================================================

/// A name with every byte that is not printable ASCII as `\xNN`.
fn shown(name: &[u8]) -> String {
    let mut s = String::new();
    for &b in name {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// One line per entry of `dir`, sorted by path bytes: path, type, mode,
/// then the bytes of a small file (or its size), a symlink's target or a
/// device's number. Iterative, descriptors only for directories.
fn listing(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut todo: Vec<Vec<u8>> = vec![Vec::new()];
    let mut entries: Vec<(Vec<u8>, fs::Metadata, PathBuf)> = Vec::new();
    while let Some(rel) = todo.pop() {
        let here = dir.join(OsStr::from_bytes(&rel));
        for e in fs::read_dir(&here).unwrap_or_else(|e| panic!("{}: {e}", here.display())) {
            let e = e.expect("entry");
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(e.file_name().as_bytes());
            let m = fs::symlink_metadata(e.path()).expect("lstat");
            if m.is_dir() {
                todo.push(r.clone());
            }
            entries.push((r, m, e.path()));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, m, path) in entries {
        let kind = kind(m.file_type());
        let mut line = format!("{} {kind}", shown(&rel));
        if kind != "symlink" {
            line += &format!(" {:04o}", m.mode() & 0o7777);
        }
        match kind {
            "file" if m.len() <= 64 => {
                line += &format!(" \"{}\"", shown(&fs::read(&path).expect("read")));
            }
            "file" => line += &format!(" {} bytes", m.len()),
            "symlink" => {
                let t = fs::read_link(&path).expect("readlink");
                line += &format!(" -> {}", shown(t.as_os_str().as_bytes()));
            }
            "char" | "block" => line += &format!(" rdev {}", m.rdev()),
            _ => {}
        }
        lines.push(line);
    }
    lines
}

/// Hex digests (snapshot records and tree digests) as `[digest]`: the
/// uid/gid of entries, and so the digest, depend on who runs the tests.
fn without_digests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("sha256:") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        let n = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if n == 64 {
            out.push_str("[digest]");
            rest = &rest[64..];
        }
    }
    out + rest
}

// ===========================================================================
// Cases
// ===========================================================================

/// One hostile case: its graph, the sources it needs, the command line and
/// the exit code SPEC §5/§7 ask for.
struct Case {
    /// The graph `fixtures/hostile/NAME.json`, also the snapshot's name.
    name: &'static str,
    /// Extra arguments of `build`; `{out}` `{w}` `{ctx}` are the sandbox's.
    args: &'static [&'static str],
    setup: fn(&Sandbox),
    code: i32,
    /// Assertions of the case's own, after the run.
    check: fn(&Sandbox, &Run),
    /// Whether the snapshot lists the export.
    list_export: bool,
    /// The context (default the sandbox's `ctx`).
    context: fn(&Sandbox) -> PathBuf,
    /// The store (default the sandbox's `store`).
    store: fn(&Sandbox) -> PathBuf,
}

fn nothing(_: &Sandbox) {}
fn no_check(_: &Sandbox, _: &Run) {}
fn default_ctx(s: &Sandbox) -> PathBuf {
    s.ctx.clone()
}
fn default_store(s: &Sandbox) -> PathBuf {
    s.store.clone()
}

impl Case {
    /// `build GRAPH --output {out}`, expecting `code`.
    fn build(name: &'static str, code: i32) -> Case {
        Case {
            name,
            args: &["--output", "{out}"],
            setup: nothing,
            code,
            check: no_check,
            list_export: true,
            context: default_ctx,
            store: default_store,
        }
    }

    fn setup(mut self, f: fn(&Sandbox)) -> Case {
        self.setup = f;
        self
    }

    fn args(mut self, a: &'static [&'static str]) -> Case {
        self.args = a;
        self
    }

    fn check(mut self, f: fn(&Sandbox, &Run)) -> Case {
        self.check = f;
        self
    }

    fn unlisted(mut self) -> Case {
        self.list_export = false;
        self
    }

    fn context(mut self, f: fn(&Sandbox) -> PathBuf) -> Case {
        self.context = f;
        self
    }

    fn store(mut self, f: fn(&Sandbox) -> PathBuf) -> Case {
        self.store = f;
        self
    }
}

fn settings(case: &str) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_snapshot_suffix(case);
    if fixture(case).exists() {
        s.set_input_file(fixture(case));
    }
    s.set_omit_expression(true);
    s
}

/// The snapshot text of a run: exit code, stdout, stderr, and the export.
fn report(s: &Sandbox, run: &Run, export: Option<Vec<String>>) -> String {
    let mut text = format!("exit: {:?}\n", run.code());
    for (what, out) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        text += &format!("{what}:\n");
        for l in out.lines() {
            text += &format!("  {}\n", without_digests(&s.redact(l)));
        }
    }
    if let Some(lines) = export {
        text += "export:\n";
        for l in lines {
            text += &format!("  {}\n", s.redact(&l));
        }
    }
    text
}

fn run_case(case: Case) {
    let s = Sandbox::new();
    (case.setup)(&s);
    let ctx = (case.context)(&s);
    let store = (case.store)(&s);
    let allowed = [ctx.as_path(), store.as_path(), s.out.as_path()];
    let before = picture(s.root(), &allowed);
    let fill = |a: &str| -> OsString {
        a.replace("{out}", s.out.to_str().unwrap())
            .replace("{w}", s.w.to_str().unwrap())
            .replace("{ctx}", s.ctx.to_str().unwrap())
            .into()
    };
    let mut args: Vec<OsString> = vec![
        "build".into(),
        fixture(case.name).into(),
        "--store".into(),
        store.clone().into(),
        "--context".into(),
        ctx.clone().into(),
        "--progress".into(),
        "quiet".into(),
    ];
    args.extend(case.args.iter().map(|a| fill(a)));
    let run = hm(&args);
    run.assert_no_crash();
    assert_eq!(
        run.code(),
        Some(case.code),
        "{}: exit code\nstdout: {}\nstderr: {}",
        case.name,
        run.stdout,
        run.stderr
    );
    if case.code == 0 {
        run.digest();
    } else {
        assert!(
            run.stderr.starts_with("error: "),
            "{}: {}",
            case.name,
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}: one message", case.name);
    }
    (case.check)(&s, &run);
    assert_same(case.name, &before, &picture(s.root(), &allowed));
    assert_no_probe(case.name);
    let export = (case.list_export && s.out.is_dir()).then(|| listing(&s.out));
    settings(case.name).bind(|| insta::assert_snapshot!("hostile", report(&s, &run, export)));
}

macro_rules! cases {
    ($($(#[$attr:meta])* $test:ident: $case:expr;)*) => {
        $(
            #[test]
            $(#[$attr])*
            fn $test() {
                run_case($case);
            }
        )*

        /// Every graph in `fixtures/hostile/` has a case, and every case a graph.
        #[test]
        fn every_hostile_fixture_has_a_case() {
            let mut named: Vec<&str> = vec![$($case.name,)* DEEP, DEVICES, WITH_FILE_OF_DEVICE, OWNER_MAX];
            named.sort_unstable();
            let mut files: Vec<String> = fs::read_dir(fixture("x").parent().unwrap())
                .expect("fixtures/hostile")
                .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
                .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
                .collect();
            files.sort_unstable();
            assert_eq!(named, files);
        }
    };
}

// --- setups -----------------------------------------------------------------

fn src(s: &Sandbox) {
    s.src();
}

fn escape_links(s: &Sandbox) {
    symlink("../outside", s.ctx.join("escape")).expect("symlink");
    symlink(&s.outside, s.ctx.join("escape-abs")).expect("symlink");
    symlink("loop", s.ctx.join("loop")).expect("symlink");
}

fn full_out(s: &Sandbox) {
    write(&s.out, "old/keep.txt", b"old\n", 0o644);
    chmod(&s.out.join("old"), 0o755);
}

fn out_link(s: &Sandbox) {
    symlink(&s.outside, s.w.join("outlink")).expect("symlink");
}

fn odd_names(s: &Sandbox) {
    let src = s.ctx.join("src");
    let mk = |name: &[u8], data: &[u8]| {
        let p = src.join(OsStr::from_bytes(name));
        fs::create_dir_all(p.parent().unwrap()).expect("mkdir");
        fs::write(&p, data).expect("write");
        chmod(&p, 0o644);
    };
    mk(b"new\nline.txt", b"newline\n");
    mk(b"dir\nwith newline/f", b"f\n");
    mk(b"bad-\xff\xfe-utf8", b"invalid\n");
    mk(b"caf\xe9/latin1.txt", b"latin1\n");
    mk(&[b'n'; 255], b"255\n");
    mk(b" leading space and trailing ", b"spaces\n");
    mk(b"-dash", b"dash\n");
    for dir in [&b"dir\nwith newline"[..], b"caf\xe9"] {
        chmod(&src.join(OsStr::from_bytes(dir)), 0o755);
    }
    freeze_mtimes(&src, T0);
}

fn fifo(s: &Sandbox) {
    let src = s.src();
    nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o640)).expect("mkfifo");
    chmod(&src.join("fifo"), 0o640);
    set_mtime(&src.join("fifo"), T0);
    set_mtime(&src, T0);
}

fn socket(s: &Sandbox) {
    let src = s.src();
    // The listener is dropped at once; the socket file stays.
    std::os::unix::net::UnixListener::bind(src.join("sock")).expect("bind");
    chmod(&src.join("sock"), 0o660);
    set_mtime(&src.join("sock"), T0);
    set_mtime(&src, T0);
}

fn hardlink_outside(s: &Sandbox) {
    let src = s.ctx.join("src");
    write(&src, "own.txt", b"own\n", 0o644);
    fs::hard_link(s.w.join("linked.txt"), src.join("hl.txt")).expect("link");
    set_mtime(&src, T0);
}

fn store_in_ctx(s: &Sandbox) -> PathBuf {
    s.ctx.join("store")
}

fn ctx_is_file(s: &Sandbox) -> PathBuf {
    s.w.join("sibling.txt")
}

fn with_probe_file(s: &Sandbox) {
    s.src();
    write(&s.ctx, "data.txt", b"data\n", 0o644);
}

// --- checks -----------------------------------------------------------------

fn out_untouched(s: &Sandbox, _: &Run) {
    assert_eq!(fs::read(s.out.join("old/keep.txt")).unwrap(), b"old\n");
    assert!(!s.store.exists(), "a refused --output opened the store");
}

fn out_replaced(s: &Sandbox, _: &Run) {
    assert!(!s.out.join("old").exists(), "--force replaces the contents");
    assert_eq!(fs::read(s.out.join("new.txt")).unwrap(), b"new\n");
}

fn no_export(s: &Sandbox, _: &Run) {
    assert!(!s.out.exists(), "nothing exported");
}

/// Nothing is written to the store by invalid input (SPEC §7).
fn store_untouched(s: &Sandbox, run: &Run) {
    no_export(s, run);
    let snapshots = fs::read_dir(&s.store).map(|d| d.count()).unwrap_or(0);
    assert_eq!(snapshots, 0, "invalid input created {}", s.store.display());
}

/// Whatever the build did, the store holds what it recorded.
fn store_verifies(s: &Sandbox, _: &Run) {
    if s.store.exists() {
        common::verify(&s.store);
    }
}

/// The export keeps the source's links as links: nothing followed.
fn links_kept(s: &Sandbox, _: &Run) {
    for (name, target) in [("root", "/"), ("up", "../../..")] {
        assert_eq!(
            fs::read_link(s.out.join(name)).unwrap(),
            Path::new(target),
            "{name}"
        );
    }
}

/// The hard-linked file was copied into the store, never linked: the
/// canary check sees its link count unchanged, this sees the export's.
fn copied_not_linked(s: &Sandbox, _: &Run) {
    let m = fs::metadata(s.out.join("hl.txt")).unwrap();
    assert_eq!(m.nlink(), 1);
    assert_ne!(m.ino(), fs::metadata(s.w.join("linked.txt")).unwrap().ino());
}

/// The export holds the 6,000-byte path: 30 directories of 200 bytes,
/// walked through descriptors (a path that long cannot be given to lstat).
fn thirty_levels(s: &Sandbox, _: &Run) {
    let name = "d".repeat(200);
    let mut fd: OwnedFd =
        nix::fcntl::open(&s.out, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
            .expect("open export");
    for level in 0..30 {
        fd = openat(
            &fd,
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("level {level}: {e}"));
    }
    let st = nix::sys::stat::fstat(&fd).expect("fstat");
    assert_eq!(st.st_mode & 0o7777, 0o755);
}

cases! {
    // --- local paths escaping the context ---
    local_dotdot: Case::build("local-dotdot", 2).check(store_untouched);
    local_absolute: Case::build("local-absolute", 2).check(store_untouched);
    local_symlink_escape: Case::build("local-symlink-escape", 1).setup(escape_links).check(no_export);
    local_symlink_absolute_escape:
        Case::build("local-symlink-absolute-escape", 1).setup(escape_links).check(no_export);
    local_through_symlinked_parent:
        Case::build("local-through-symlinked-parent", 1).setup(escape_links).check(no_export);
    local_symlink_loop: Case::build("local-symlink-loop", 1).setup(escape_links).check(no_export);
    local_filter_dotdot_patterns: Case::build("local-filter-dotdot-patterns", 0).setup(src);
    // --- sources holding symlinks out of their root; ops writing through them ---
    source_symlinks_kept: Case::build("source-symlinks-kept", 0).setup(src).check(links_kept);
    with_directory_through_symlink_to_root:
        Case::build("with-directory-through-symlink-to-root", 0).setup(src).check(links_kept);
    mkfile_through_dotdot_symlink: Case::build("mkfile-through-dotdot-symlink", 0).setup(src);
    copy_dest_through_relative_symlink:
        Case::build("copy-dest-through-relative-symlink", 0).setup(src);
    with_file_through_absolute_symlink:
        Case::build("with-file-through-absolute-symlink", 0).setup(src);
    mkdir_parents_through_symlink: Case::build("mkdir-parents-through-symlink", 0).setup(src);
    symlink_op_through_symlink: Case::build("symlink-op-through-symlink", 1).setup(src);
    dest_symlink_to_etc: Case::build("dest-symlink-to-etc", 0);
    dest_symlink_to_etc_link_output:
        Case::build("dest-symlink-to-etc-link-output", 0).args(&["--output", "{out}", "--link-output"]);
    dest_symlink_to_outside_dir: Case::build("dest-symlink-to-outside-dir", 0).setup(src);
    copy_src_through_symlink: Case::build("copy-src-through-symlink", 1).setup(src);
    with_file_source_through_symlink: Case::build("with-file-source-through-symlink", 1).setup(src);
    with_directory_source_through_symlink:
        Case::build("with-directory-source-through-symlink", 1).setup(src);
    symlink_loop_in_tree: Case::build("symlink-loop-in-tree", 1);
    // --- rm ---
    rm_root: Case::build("rm-root", 2).check(store_untouched);
    rm_dotdot: Case::build("rm-dotdot", 2).check(store_untouched);
    rm_through_symlink: Case::build("rm-through-symlink", 1).setup(src);
    rm_through_symlink_allow_not_found:
        Case::build("rm-through-symlink-allow-not-found", 0).setup(src);
    rm_wildcard_through_symlink: Case::build("rm-wildcard-through-symlink", 0).setup(src);
    rm_symlink_to_root: Case::build("rm-symlink-to-root", 0).setup(src);
    // --- the export folder and the context ---
    output_symlink_to_outside: Case::build("output-symlink-to-outside", 2)
        .setup(out_link)
        .check(store_untouched)
        .args(&["--output", "{w}/outlink", "--force"]);
    output_not_empty: Case::build("output-not-empty", 2).setup(full_out).check(out_untouched);
    output_not_empty_force: Case::build("output-not-empty-force", 0)
        .setup(full_out)
        .args(&["--output", "{out}", "--force"])
        .check(out_replaced);
    output_holds_context: Case::build("output-holds-context", 2)
        .args(&["--output", "{w}", "--force"])
        .check(store_untouched);
    store_inside_context: Case::build("store-inside-context", 0)
        .setup(with_probe_file)
        .store(store_in_ctx)
        .unlisted();
    context_is_a_file: Case::build("context-is-a-file", 2).context(ctx_is_file).check(store_untouched);
    source_hardlink_to_outside_file:
        Case::build("source-hardlink-to-outside-file", 0).setup(hardlink_outside).check(copied_not_linked);
    // --- names ---
    names_newline: Case::build("names-newline", 0).setup(odd_names);
    names_invalid_utf8: Case::build("names-invalid-utf8", 0).setup(odd_names);
    names_255_bytes: Case::build("names-255-bytes", 0).setup(src);
    names_256_bytes: Case::build("names-256-bytes", 1);
    path_longer_than_path_max:
        Case::build("path-longer-than-path-max", 0).unlisted().check(thirty_levels);
    // --- special files ---
    source_fifo: Case::build("source-fifo", 0).setup(fifo);
    with_file_of_fifo: Case::build("with-file-of-fifo", 1).setup(fifo);
    source_socket: Case::build("source-socket", 0).setup(socket);
    // --- graph structure, modes, owners, times ---
    graph_invalid_utf8: Case::build("graph-invalid-utf8", 2).check(store_untouched);
    cycle: Case::build("cycle", 2).check(store_untouched);
    self_reference: Case::build("self-reference", 2).check(store_untouched);
    mode_octal_prefix: Case::build("mode-octal-prefix", 2).check(store_untouched);
    mode_file_type_bits: Case::build("mode-file-type-bits", 2).check(store_untouched);
    owner_negative: Case::build("owner-negative", 2).check(store_untouched);
    owner_overflow: Case::build("owner-overflow", 2).check(store_untouched);
    timestamp_huge: Case::build("timestamp-huge", 1).check(store_verifies);
    timestamp_huge_symlink: Case::build("timestamp-huge-symlink", 1).check(store_verifies);
    timestamp_negative: Case::build("timestamp-negative", 0).check(store_verifies);
}

// ===========================================================================
// Cases that need more than a table row
// ===========================================================================

const DEEP: &str = "deep-source";
const DEVICES: &str = "source-devices";
const WITH_FILE_OF_DEVICE: &str = "with-file-of-char-device";

/// Device nodes in a source (mknod: root only). `zero` has /dev/zero's
/// number: reading it as a file would never end.
fn devices(s: &Sandbox) {
    let src = s.src();
    let dev = |name: &str, kind, major, minor| {
        nix::sys::stat::mknod(
            &src.join(name),
            kind,
            Mode::from_bits_truncate(0o640),
            nix::sys::stat::makedev(major, minor),
        )
        .expect("mknod");
        chmod(&src.join(name), 0o640);
        set_mtime(&src.join(name), T0);
    };
    dev("zero", nix::sys::stat::SFlag::S_IFCHR, 1, 5);
    dev("loop7", nix::sys::stat::SFlag::S_IFBLK, 7, 7);
    set_mtime(&src, T0);
}

#[test]
fn source_devices() {
    if !is_root() {
        eprintln!("skipped source_devices: mknod needs root");
        return;
    }
    run_case(Case::build(DEVICES, 0).setup(devices));
}

#[test]
fn with_file_of_char_device() {
    if !is_root() {
        eprintln!("skipped with_file_of_char_device: mknod needs root");
        return;
    }
    run_case(Case::build(WITH_FILE_OF_DEVICE, 1).setup(devices));
}

const OWNER_MAX: &str = "owner-max-u32";

/// Owners are set only by root.
#[test]
fn owner_max_u32() {
    if !is_root() {
        eprintln!("skipped owner_max_u32: chown needs root");
        return;
    }
    run_case(Case::build(OWNER_MAX, 1).check(store_verifies));
}

/// The canary check itself: a read of a canary file and a new file next to
/// the context are both seen.
#[test]
fn canary_check_sees_reads_and_writes() {
    let s = Sandbox::new();
    let allowed = [s.ctx.as_path(), s.store.as_path(), s.out.as_path()];
    let before = picture(s.root(), &allowed);
    assert_same("untouched", &before, &picture(s.root(), &allowed));
    fs::read(s.outside.join("secret.txt")).expect("read");
    let read =
        std::panic::catch_unwind(|| assert_same("read", &before, &picture(s.root(), &allowed)));
    assert!(read.is_err(), "a read of outside/secret.txt went unseen");
    let before = picture(s.root(), &allowed);
    write(&s.w, "new.txt", b"new\n", 0o644);
    let wrote =
        std::panic::catch_unwind(|| assert_same("write", &before, &picture(s.root(), &allowed)));
    assert!(wrote.is_err(), "a new file next to the context went unseen");
}

/// Levels of the deep source.
const DEPTH: usize = 100_000;

/// `ctx/deep/d/d/.../d/leaf.txt`, `DEPTH` directories below `deep`, made
/// one level at a time through descriptors (no path is ever that long).
fn deep(s: &Sandbox) {
    let top = s.ctx.join("deep");
    fs::create_dir(&top).expect("mkdir");
    let mut fd: OwnedFd = nix::fcntl::open(
        &top,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .expect("open");
    for _ in 0..DEPTH {
        mkdirat(&fd, "d", Mode::from_bits_truncate(0o755)).expect("mkdirat");
        fd = openat(
            &fd,
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("openat");
    }
    let leaf = openat(
        &fd,
        "leaf.txt",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .expect("create leaf");
    nix::unistd::write(&leaf, b"bottom\n").expect("write leaf");
}

/// Address space given to the binary in the deep case: enough for a tree
/// of 100,000 nodes, and a bound on a bug that would take the machine's.
const DEEP_MEMORY: u64 = 4 << 30;

/// Runs the binary like `common::hm`, its address space capped at `bytes`,
/// killed after `cap` (a hang, not a slow machine: a loaded debug build
/// compiles the million-op graph in over 100 s).
fn hm_capped(args: &[&OsStr], bytes: u64, cap: std::time::Duration) -> Run {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(args)
        .env_remove("HARDMERGE_STORE")
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out).expect("stdout"))
        .stderr(fs::File::create(&err).expect("stderr"));
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().expect("run hardmerge");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > cap {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hardmerge {args:?}: still running after {cap:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).expect("read")).into_owned();
    Run {
        what: format!("hardmerge {args:?} (address space {bytes} bytes)"),
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}

/// A 100,000-level deep directory in a source: refused cleanly (exit 1,
/// the limit named) once its paths pass `MAX_PATH_BYTES`, with no stack
/// overflow and bounded memory (a manifest of every full path would hold
/// ~10 GB); removed again one level at a time (std's `remove_dir_all`
/// recurses).
#[test]
fn deep_source() {
    let s = Sandbox::new();
    deep(&s);
    let allowed = [s.ctx.as_path(), s.store.as_path(), s.out.as_path()];
    let before = picture(s.root(), &allowed);
    let run = hm_capped(
        &[
            OsStr::new("build"),
            fixture(DEEP).as_os_str(),
            OsStr::new("--store"),
            s.store.as_os_str(),
            OsStr::new("--context"),
            s.ctx.as_os_str(),
            OsStr::new("--progress"),
            OsStr::new("quiet"),
            OsStr::new("--output"),
            s.out.as_os_str(),
        ],
        DEEP_MEMORY,
        std::time::Duration::from_secs(600),
    );
    run.fails(1);
    assert!(
        run.stderr
            .contains("deeper than hardmerge's limit of 32768 bytes"),
        "{}",
        run.stderr
    );
    assert!(!s.out.exists(), "no export of a failed build");
    assert_same(DEEP, &before, &picture(s.root(), &allowed));
    settings(DEEP).bind(|| insta::assert_snapshot!("hostile", report(&s, &run, None)));
    hardmerge::fs::remove::remove_all(s.root()).expect("remove the deep trees");
    assert!(!s.root().exists());
}

/// `count` ops, each the base of the next (`first`, then `step(i, prev)`),
/// as compact JSON, the last one the output.
fn chain(count: usize, first: &str, step: impl Fn(usize, usize) -> String) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(count * 80);
    write!(s, r#"{{"version":1,"ops":{{"o0":{first}"#).unwrap();
    for i in 1..count {
        write!(s, r#","o{i}":{}"#, step(i, i - 1)).unwrap();
    }
    write!(s, r#"}},"outputs":{{"default":"o{}"}}}}"#, count - 1).unwrap();
    s
}

/// Runs `compile` on a generated graph in a sandbox; returns the run and
/// the compiled JSON (when it succeeded).
fn compile_generated(s: &Sandbox, text: &str) -> (Run, Option<serde_json::Value>) {
    let graph = s.w.join("graph.json");
    fs::write(&graph, text).expect("write graph");
    let ir = s.w.join("ir.json");
    let run = hm_capped(
        &[
            OsStr::new("compile"),
            graph.as_os_str(),
            OsStr::new("-o"),
            ir.as_os_str(),
        ],
        COMPILE_MEMORY,
        std::time::Duration::from_secs(600),
    );
    run.assert_no_crash();
    let v = ir
        .exists()
        .then(|| serde_json::from_slice(&fs::read(&ir).expect("read ir")).expect("ir is JSON"));
    (run, v)
}

/// Address space for compiling the generated graphs (the million-op one
/// peaks near 2.3 GB resident in a debug build).
const COMPILE_MEMORY: u64 = 12 << 30;

/// Ops in the million-op graph.
const MILLION: usize = 1_000_000;

/// A 1,000,000-op graph (SPEC §7): a file then a chain of `rm`s with
/// `allow_not_found`, each the base of the next. `compile` only (a debug
/// build takes about a minute): it must not crash, and fuses the chain into
/// one `file` op of a million actions.
#[test]
fn million_ops() {
    let s = Sandbox::new();
    let text = chain(MILLION, r#"{"mkfile":{"path":"/f"}}"#, |_, prev| {
        format!(r#"{{"rm":{{"base":"o{prev}","path":"/f","allow_not_found":true}}}}"#)
    });
    let before = picture(s.root(), &[]);
    let (run, ir) = compile_generated(&s, &text);
    run.ok();
    let ir = ir.expect("compiled output");
    let ops = ir["ops"].as_array().expect("ops");
    let mut summary = format!("ops: {}\n", ops.len());
    for op in ops {
        let kind = op
            .as_object()
            .unwrap()
            .keys()
            .find(|k| !["digest", "names"].contains(&k.as_str()))
            .unwrap()
            .clone();
        let actions = op[&kind]["actions"].as_array().map_or(0, Vec::len);
        summary += &format!(
            "  {kind}: {} names, {actions} actions\n",
            op["names"].as_array().unwrap().len()
        );
    }
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    for r in ir["rewrites"].as_array().expect("rewrites") {
        *rules
            .entry(r["rule"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    summary += &format!("rewrites: {rules:?}\n");
    assert_eq!(ops.len(), 1, "one fused file op");
    assert_eq!(ops[0]["file"]["actions"].as_array().unwrap().len(), MILLION);
    // Only the graph and the IR were written.
    let after = picture(s.root(), &[&s.w.join("graph.json"), &s.w.join("ir.json")]);
    let before: BTreeMap<_, _> = before
        .into_iter()
        .filter(|(p, _)| p != Path::new("w"))
        .collect();
    let after: BTreeMap<_, _> = after
        .into_iter()
        .filter(|(p, _)| p != Path::new("w"))
        .collect();
    assert_same("million-ops", &before, &after);
    settings("million-ops")
        .bind(|| insta::assert_snapshot!("hostile", report(&s, &run, None) + &summary));
}

/// A cycle through 10,000 ops: found without recursion, shown by its ends.
#[test]
fn cycle_long() {
    let s = Sandbox::new();
    let n = 10_000;
    let text = chain(
        n,
        &format!(r#"{{"mkdir":{{"base":"o{}","path":"/d"}}}}"#, n - 1),
        |i, prev| format!(r#"{{"mkdir":{{"base":"o{prev}","path":"/d{i}"}}}}"#),
    );
    let (run, ir) = compile_generated(&s, &text);
    run.fails(2);
    assert!(ir.is_none(), "no output on invalid input");
    assert_eq!(run.stderr.lines().count(), 1, "one message");
    assert!(
        run.stderr.len() < 1000,
        "a short message: {} bytes",
        run.stderr.len()
    );
    settings("cycle-long").bind(|| insta::assert_snapshot!("hostile", report(&s, &run, None)));
}
