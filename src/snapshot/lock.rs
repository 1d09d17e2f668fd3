//! File locks on the store: builds share it, `prune` takes it alone, and a
//! process that has to wait says who holds it.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock on a file; released (and its holder note removed) on drop.
pub struct HeldLock {
    _lock: Flock<File>,
    note: Option<PathBuf>,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(n) = &self.note {
            let _ = std::fs::remove_file(n);
        }
    }
}

/// Shared or exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Many holders (builds, verify).
    Shared,
    /// One holder (prune).
    Exclusive,
}

/// Who holds the store's lock, from the holder notes of live processes.
pub fn holders(notes: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(notes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let alive = name
            .parse::<i32>()
            .map(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .unwrap_or(false);
        if alive {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.push(format!("pid {name} ({})", text.trim()));
        }
    }
    out.sort();
    out
}

/// Takes the lock on `file` in `mode`, calling `waiting` with the holders
/// (read from `notes`) if it has to wait, and leaves a note of its own there.
pub fn lock(
    file: &Path,
    notes: &Path,
    mode: Mode,
    what: &str,
    waiting: &dyn Fn(&[String]),
) -> std::io::Result<HeldLock> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(file)?;
    let (now, later) = match mode {
        Mode::Shared => (FlockArg::LockSharedNonblock, FlockArg::LockShared),
        Mode::Exclusive => (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive),
    };
    let held = match Flock::lock(f, now) {
        Ok(l) => l,
        Err((f, Errno::EWOULDBLOCK)) => {
            waiting(&holders(notes));
            Flock::lock(f, later).map_err(|(_, e)| std::io::Error::from(e))?
        }
        Err((_, e)) => return Err(e.into()),
    };
    // The note only tells waiting processes who holds the lock: failing to
    // write it (a full disk) must not make the store unusable. Notes of
    // dead processes go, so a reused pid is never named.
    let _ = std::fs::create_dir_all(notes);
    if let Ok(dir) = std::fs::read_dir(notes) {
        for e in dir.flatten() {
            let dead = e
                .file_name()
                .to_string_lossy()
                .parse::<u32>()
                .map(|p| !Path::new(&format!("/proc/{p}")).exists())
                .unwrap_or(true);
            if dead {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let note = notes.join(std::process::id().to_string());
    let written = File::create(&note).and_then(|mut n| writeln!(n, "{what}"));
    Ok(HeldLock {
        _lock: held,
        note: written.is_ok().then_some(note),
    })
}

/// Tries to take an exclusive lock without waiting: `None` when another
/// process holds it (a work area still in use).
pub fn try_exclusive(file: &Path) -> std::io::Result<Option<HeldLock>> {
    let f = OpenOptions::new().read(true).write(true).open(file)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(HeldLock {
            _lock: l,
            note: None,
        })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

/// Creates `file` and locks it exclusively (a new work area's lock).
pub fn create_exclusive(file: &Path) -> std::io::Result<HeldLock> {
    let f = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(file)?;
    let l = Flock::lock(f, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| std::io::Error::from(e))?;
    Ok(HeldLock {
        _lock: l,
        note: None,
    })
}
