//! Timing processes and keeping the bench's files in one removable folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// The figures of several runs of one measurement: wall-clock seconds, or
/// bytes for a row in [`Unit::Bytes`](super::report::Unit).
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// In the order measured.
    pub values: Vec<f64>,
}

impl Samples {
    /// Runs `f` `runs` times and records how long each run took.
    pub fn measure(runs: usize, mut f: impl FnMut(usize) -> Result<Duration>) -> Result<Self> {
        let values = (0..runs)
            .map(|i| f(i).map(|d| d.as_secs_f64()))
            .collect::<Result<_>>()?;
        Ok(Samples { values })
    }

    pub fn runs(&self) -> usize {
        self.values.len()
    }

    /// The middle run; the mean of the two middle ones for an even count.
    pub fn median(&self) -> f64 {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.values.iter().copied().fold(f64::NAN, f64::max)
    }
}

/// Runs `cmd` to completion and returns its wall-clock time, from spawn to
/// exit. Its stdout is discarded; a failure is an error carrying its stderr.
pub fn time_command(cmd: &mut Command) -> Result<Duration> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let start = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("could not run {shown}"))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim_end();
        if stderr.is_empty() {
            bail!("{shown} failed ({}), printing nothing", output.status);
        }
        bail!("{shown} failed ({}):\n{stderr}", output.status);
    }
    Ok(elapsed)
}

/// Runs `cmd` to completion and returns its stdout; a failure is an error
/// carrying its stderr.
pub fn command_output(cmd: &mut Command) -> Result<Vec<u8>> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .with_context(|| format!("could not run {shown}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!("{shown} failed ({}):\n{}", output.status, stderr.trim_end());
    }
    Ok(output.stdout)
}

/// `sync`: writes back every dirty page, so that one timed command does not
/// pay for the writeback of the one before. Not timed.
pub fn sync() -> Result<()> {
    let status = Command::new("sync")
        .status()
        .context("could not run sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}

/// Removes a folder and everything in it; a missing folder is fine. When
/// the first try fails (a directory without write permission, when not
/// root), makes every directory writable and tries again.
pub fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    make_writable(path);
    std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// A uniquely named folder, removed with all its contents when dropped.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<parent>/<prefix>-<pid>-<nanos>` (and `parent` if needed);
    /// `create_dir` (not `_all`) for the last component so that a name clash
    /// is an error rather than a shared folder.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let path = parent.join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(err) = remove_tree(&self.path) {
            eprintln!("warning: could not remove {}: {err}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(seconds: &[f64]) -> Samples {
        Samples {
            values: seconds.to_vec(),
        }
    }

    #[test]
    fn median_min_max() {
        let odd = samples(&[3.0, 1.0, 2.0]);
        assert_eq!((odd.median(), odd.min(), odd.max()), (2.0, 1.0, 3.0));
        let even = samples(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!((even.median(), even.min(), even.max()), (2.5, 1.0, 4.0));
        assert_eq!(even.runs(), 4);
    }

    #[test]
    fn scratch_dir_is_removed() {
        let dir = ScratchDir::new_in(&std::env::temp_dir(), "xtask-test").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
