//! Removing a directory tree of any depth: iterative, one open directory at
//! a time (walking back up through `..`), so neither the stack nor the
//! descriptor table nor PATH_MAX limits it.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{unlinkat, UnlinkatFlags};

fn open_dir_at(parent: &impl AsFd, name: &OsString) -> nix::Result<OwnedFd> {
    openat(
        parent.as_fd(),
        name.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Removes `path` and everything below it; a missing `path` is not an error.
/// Never follows a symlink (a symlink is removed, not its target).
pub fn remove_all(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    // Directories must be writable and searchable to be emptied.
    let mut cur: OwnedFd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names: Vec<OsString> = Vec::new();
    loop {
        let mut subdir = None;
        {
            let mut dir = Dir::from_fd(cur.try_clone()?)?;
            for entry in dir.iter() {
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let name = OsString::from(std::ffi::OsStr::from_bytes(name));
                let is_dir = match entry.file_type() {
                    Some(t) => t == nix::dir::Type::Directory,
                    None => nix::sys::stat::fstatat(
                        &cur,
                        name.as_os_str(),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR)
                    .unwrap_or(false),
                };
                if is_dir {
                    if subdir.is_none() {
                        subdir = Some(name);
                    }
                } else {
                    unlinkat(&cur, name.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
                }
            }
        }
        if let Some(name) = subdir {
            let _ = nix::sys::stat::fchmodat(
                &cur,
                name.as_os_str(),
                Mode::from_bits_truncate(0o700),
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            );
            cur = open_dir_at(&cur, &name)?;
            names.push(name);
            continue;
        }
        match names.pop() {
            Some(name) => {
                let parent = open_dir_at(&cur, &OsString::from(".."))?;
                unlinkat(&parent, name.as_os_str(), UnlinkatFlags::RemoveDir)?;
                cur = parent;
            }
            None => break,
        }
    }
    drop(cur);
    std::fs::remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_deep_trees_and_never_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let root = tmp.path().join("tree");
        std::fs::create_dir(&root).unwrap();
        // 3,000 levels: far past PATH_MAX for path-based removal.
        let mut fd: OwnedFd =
            nix::fcntl::open(&root, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..3000 {
            nix::sys::stat::mkdirat(&fd, "dd", Mode::from_bits_truncate(0o755)).unwrap();
            fd = open_dir_at(&fd, &OsString::from("dd")).unwrap();
        }
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::fs::create_dir(root.join("ro")).unwrap();
        std::fs::write(root.join("ro/f"), b"y").unwrap();
        std::fs::set_permissions(
            root.join("ro"),
            std::os::unix::fs::PermissionsExt::from_mode(0o500),
        )
        .unwrap();
        remove_all(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"x");
        remove_all(&root).unwrap();
    }
}
