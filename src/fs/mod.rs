//! Filesystem primitives: the `.dockerignore` pattern matcher
//! ([`pattern`]), reading a directory into a [`Tree`](crate::tree::Tree)
//! ([`scan`]) and writing a tree to a new directory ([`materialize`]).
//!
//! Invariants:
//! - a tree on disk is read and written through directory descriptors and
//!   `*at` calls that never follow a symlink, so a tree deeper than
//!   `PATH_MAX` works and nothing outside it is touched;
//! - walks are iterative and keep a bounded number of descriptors open.

pub mod materialize;
pub mod pattern;
pub mod remove;
pub mod scan;
pub mod stat_cache;

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// The longest relative path given to one `*at` call. Longer paths (a deep
/// tree) are opened a run of components at a time; `PATH_MAX` is 4096.
const PATH_CHUNK: usize = 3072;

/// How many levels of a walk keep their directory open; below that, one
/// level in [`KEEP_EVERY`] does, and the others are reopened from the
/// nearest open ancestor when needed.
const KEEP_DEPTH: usize = 64;
const KEEP_EVERY: usize = 256;

/// Whether a walk keeps the descriptor of a directory at `depth` open.
fn keep_open(depth: usize) -> bool {
    depth < KEEP_DEPTH || depth % KEEP_EVERY == 0
}

/// A name or relative path as a C string (names from a tree never hold NUL).
fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(Errno::EINVAL))
}

/// A base path and a relative path below it, joined (`base` alone for an
/// empty `rel`).
fn path_of(base: &[u8], rel: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    let mut p = base.to_vec();
    if !rel.is_empty() {
        p.push(b'/');
        p.extend_from_slice(rel);
    }
    std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&p))
}

/// Joins a relative path and a name.
fn join_rel(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Splits a relative path into runs of whole components, each shorter than
/// [`PATH_CHUNK`].
fn chunks(rel: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = rel;
    while rest.len() >= PATH_CHUNK {
        let cut = rest[..PATH_CHUNK]
            .iter()
            .rposition(|b| *b == b'/')
            .filter(|&c| c > 0)
            .unwrap_or(PATH_CHUNK.min(rest.len()));
        out.push(&rest[..cut]);
        rest = rest[cut..].strip_prefix(b"/").unwrap_or(&rest[cut..]);
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens one run of components below `at`. `strict`: no symlink may be met
/// on the way, the final component included (an untrusted tree that may
/// change while it is read); otherwise only the final component is not
/// followed (a tree we created ourselves).
fn open_run(at: BorrowedFd, rel: &[u8], flags: OFlag, strict: bool) -> nix::Result<OwnedFd> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let path = cstring(rel).map_err(|_| Errno::EINVAL)?;
    if !strict || !rel.contains(&b'/') {
        return openat(at, path.as_c_str(), flags, Mode::empty());
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow::new()
            .flags(flags)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        match openat2(at, path.as_c_str(), how) {
            Err(Errno::ENOSYS) | Err(Errno::EPERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    // Without openat2 (before Linux 5.6, or a seccomp filter): one
    // component at a time.
    let mut cur: Option<OwnedFd> = None;
    let names: Vec<&[u8]> = rel
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    for (k, name) in names.iter().enumerate() {
        let fl = if k + 1 == names.len() {
            flags
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
        };
        let name = cstring(name).map_err(|_| Errno::EINVAL)?;
        let base = cur.as_ref().map_or(at, |f| f.as_fd());
        cur = Some(openat(base, name.as_c_str(), fl, Mode::empty())?);
    }
    cur.ok_or(Errno::EINVAL)
}

/// Opens `rel` (a relative path of any length) below directory `base`.
fn open_below(base: BorrowedFd, rel: &[u8], flags: OFlag, strict: bool) -> nix::Result<OwnedFd> {
    let runs = chunks(rel);
    let mut cur: Option<OwnedFd> = None;
    for (k, run) in runs.iter().enumerate() {
        let fl = if k + 1 == runs.len() {
            flags
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY
        };
        let at = cur.as_ref().map_or(base, |f| f.as_fd());
        cur = Some(open_run(at, run, fl, strict)?);
    }
    cur.ok_or(Errno::EINVAL)
}

/// A directory and a name in it that reach `rel` below `base`, for the `*at`
/// calls: `base` and `rel` itself when short enough, else the opened parent
/// and the last component.
fn locate(base: BorrowedFd, rel: &[u8]) -> nix::Result<(Option<OwnedFd>, CString)> {
    if rel.len() < PATH_CHUNK {
        return Ok((None, cstring(rel).map_err(|_| Errno::EINVAL)?));
    }
    let cut = rel
        .iter()
        .rposition(|b| *b == b'/')
        .ok_or(Errno::ENAMETOOLONG)?;
    let parent = open_below(base, &rel[..cut], OFlag::O_PATH | OFlag::O_DIRECTORY, false)?;
    Ok((
        Some(parent),
        cstring(&rel[cut + 1..]).map_err(|_| Errno::EINVAL)?,
    ))
}

/// Whether `/proc/self/fd` can name an entry of an open directory.
fn proc_fd_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| std::path::Path::new("/proc/self/fd").is_dir())
}

/// A path to entry `name` of the open directory `dir`, for the calls that
/// have no `*at` form (the `l*xattr` family): `/proc/self/fd/N/name`, whose
/// length does not depend on the depth of `dir`. `full` gives the entry's
/// ordinary path, used when `/proc` is not mounted.
fn entry_path(dir: BorrowedFd, name: &[u8], full: impl FnOnce() -> Vec<u8>) -> io::Result<CString> {
    if proc_fd_works() {
        let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        cstring(&p)
    } else {
        cstring(&full())
    }
}

/// Calls a `*listxattr`/`*getxattr`-style function with a buffer big enough
/// for its answer.
fn sized(mut call: impl FnMut(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
        let need = call(std::ptr::null_mut(), 0);
        if need < 0 {
            return Err(io::Error::last_os_error());
        }
        buf = vec![0u8; (need as usize).max(buf.len() * 2)];
    }
}

/// Reads every extended attribute from a list call and a get call. A
/// filesystem without xattrs has none; an attribute removed while it is
/// read is left out.
fn read_xattrs_with(
    mut list: impl FnMut(*mut u8, usize) -> isize,
    mut get: impl FnMut(&CStr, *mut u8, usize) -> isize,
) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = match sized(&mut list) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(e),
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cname = cstring(name)?;
        match sized(|b, n| get(&cname, b, n)) {
            Ok(v) => {
                out.insert(name.to_vec(), v);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every extended attribute of the entry at `path` (not following a final
/// symlink).
fn read_xattrs(path: &CStr) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    read_xattrs_with(
        // SAFETY: `path` is NUL-terminated and `sized` passes a buffer of
        // the length it gives.
        |b, n| unsafe { libc::llistxattr(path.as_ptr(), b.cast(), n) },
        // SAFETY: as above.
        |name, b, n| unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), b.cast(), n) },
    )
}

/// `listxattrat` and `getxattrat` (Linux 6.13), with their numbers on the
/// architectures that share the common syscall table.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64"
))]
mod xattrat {
    pub const GET: libc::c_long = 464;
    pub const LIST: libc::c_long = 465;
    pub const AVAILABLE: bool = true;
}
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64"
)))]
mod xattrat {
    pub const GET: libc::c_long = -1;
    pub const LIST: libc::c_long = -1;
    pub const AVAILABLE: bool = false;
}

/// `struct xattr_args` of `getxattrat`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

static NO_XATTRAT: AtomicBool = AtomicBool::new(!xattrat::AVAILABLE);

/// Every extended attribute of entry `name` of the open directory `dir`
/// (not following a symlink): relative to `dir` where the kernel has the
/// `*xattrat` calls (one path component to resolve, and nothing outside the
/// tree can be reached), else through [`entry_path`].
fn read_xattrs_at(
    dir: BorrowedFd,
    name: &[u8],
    full: impl FnOnce() -> Vec<u8>,
) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    if !NO_XATTRAT.load(Ordering::Relaxed) {
        let cname = cstring(name)?;
        let fd = dir.as_raw_fd();
        let flags = libc::AT_SYMLINK_NOFOLLOW as libc::c_uint;
        let r = read_xattrs_with(
            // SAFETY: the strings are NUL-terminated, the buffer is valid
            // for its length.
            |b, n| unsafe {
                libc::syscall(xattrat::LIST, fd, cname.as_ptr(), flags, b, n) as isize
            },
            |attr, b, n| {
                let mut args = XattrArgs {
                    value: b as u64,
                    size: n as u32,
                    flags: 0,
                };
                // SAFETY: as above; `args` lives across the call.
                unsafe {
                    libc::syscall(
                        xattrat::GET,
                        fd,
                        cname.as_ptr(),
                        flags,
                        attr.as_ptr(),
                        &mut args as *mut XattrArgs,
                        std::mem::size_of::<XattrArgs>(),
                    ) as isize
                }
            },
        );
        match r {
            // Older kernels have no such call; a seccomp filter may refuse it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                NO_XATTRAT.store(true, Ordering::Relaxed)
            }
            r => return r,
        }
    }
    read_xattrs(&entry_path(dir, name, full)?)
}

/// Sets one extended attribute on the entry at `path` (not following a
/// final symlink).
fn set_xattr_path(path: &CStr, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = cstring(name)?;
    // SAFETY: both strings are NUL-terminated; the value is a valid slice.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets one extended attribute on an open file or directory.
fn set_xattr_fd(fd: BorrowedFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let cname = cstring(name)?;
    // SAFETY: the name is NUL-terminated; the value is a valid slice.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads a directory's entries (`.` and `..` left out) with their `d_type`.
fn read_entries(dir: BorrowedFd) -> io::Result<Vec<(Vec<u8>, u8)>> {
    thread_local! {
        // One buffer per thread: a walk reads thousands of directories.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
    }
    BUF.with_borrow_mut(|buf| read_entries_into(dir, buf))
}

/// [`read_entries`] with `buf` for `getdents64`.
fn read_entries_into(dir: BorrowedFd, buf: &mut [u8]) -> io::Result<Vec<(Vec<u8>, u8)>> {
    let mut out = Vec::new();
    loop {
        // SAFETY: the buffer is valid for its length; getdents64 writes
        // whole records into it.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(out);
        }
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        let mut at = 0usize;
        while at < n as usize {
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let dtype = buf[at + 18];
            let name_area = &buf[at + 19..at + reclen];
            let len = name_area
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(name_area.len());
            let name = &name_area[..len];
            if name != b"." && name != b".." {
                out.push((name.to_vec(), dtype));
            }
            at += reclen;
        }
    }
}

/// Nanoseconds since the epoch of a `(seconds, nanoseconds)` timestamp.
fn nanos(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The current wall-clock time in nanoseconds since the epoch.
fn now_nanos() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_keeps_whole_components() {
        assert_eq!(chunks(b"a/b"), vec![&b"a/b"[..]]);
        assert!(chunks(b"").is_empty());
        let long: Vec<u8> = std::iter::repeat(&b"abcdefghi/"[..])
            .take(1000)
            .flatten()
            .copied()
            .collect();
        let long = &long[..long.len() - 1];
        let runs = chunks(long);
        assert!(runs.len() > 1);
        for r in &runs {
            assert!(r.len() < PATH_CHUNK);
            assert!(!r.starts_with(b"/") && !r.ends_with(b"/"));
        }
        assert_eq!(runs.join(&b'/'), long);
    }

    #[test]
    fn xattrs_read_alike_by_descriptor_and_by_path() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        std::fs::write(&f, b"").unwrap();
        xattr::set(&f, "user.a", b"1").unwrap();
        xattr::set(&f, "user.big", &vec![7u8; 3000]).unwrap();
        std::os::unix::fs::symlink("f", tmp.path().join("l")).unwrap();
        let dir = nix::fcntl::open(
            tmp.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        for name in [&b"f"[..], b"l"] {
            let full = || {
                tmp.path()
                    .join(std::ffi::OsStr::from_bytes(name))
                    .into_os_string()
                    .into_vec()
            };
            let at = read_xattrs_at(dir.as_fd(), name, full).unwrap();
            let by_proc = read_xattrs(&entry_path(dir.as_fd(), name, full).unwrap()).unwrap();
            let by_path = read_xattrs(&cstring(&full()).unwrap()).unwrap();
            assert_eq!(at, by_proc);
            assert_eq!(at, by_path);
            assert_eq!(at.len(), if name == b"f" { 2 } else { 0 });
        }
        let missing = read_xattrs_at(dir.as_fd(), b"missing", Vec::new);
        assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc::ENOENT));
    }

    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    #[test]
    fn keeps_shallow_levels_open() {
        assert!(keep_open(0) && keep_open(KEEP_DEPTH - 1));
        assert!(!keep_open(KEEP_DEPTH + 1));
        assert!(keep_open(KEEP_EVERY * 3));
    }
}
