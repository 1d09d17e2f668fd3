//! Synthetic source trees for the filesystem scenarios: a given number of
//! regular files totalling a given number of bytes, in nested directories.
//!
//! Sizes are mostly small with a long tail: 80% of the files drawn
//! log-uniformly from 64 B–8 KiB, 19% from 8–128 KiB and 1% from
//! 128 KiB–4 MiB, then all scaled so that the total is exactly the bytes
//! asked for. A directory holds at most [`LEAF_MAX`] files, else a few files
//! and 20–40 subdirectories sharing the rest, so directories have about
//! 20–100 entries. One file in ten is executable (0755), the others 0644.
//!
//! Invariants: the same [`TreeSpec`] gives the same paths, sizes, modes and
//! bytes (mtimes are whenever it was written); every file's content is
//! distinct, so nothing can be deduplicated by content.

use std::fs::{self, File, FileTimes, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::{ensure, Context, Result};

use super::rng::Rng;

/// A directory with at most this many files has no subdirectories.
const LEAF_MAX: usize = 80;

/// Size classes: (percent of the files, smallest, largest), before scaling.
const SIZE_CLASSES: [(u64, f64, f64); 3] = [
    (80, 64.0, 8192.0),
    (19, 8192.0, 131_072.0),
    (1, 131_072.0, 4_194_304.0),
];

const EXTENSIONS: &[&str] = &["rs", "txt", "json", "bin", "h", "c", "py", "md"];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeSpec {
    pub files: usize,
    pub bytes: u64,
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeStats {
    pub files: usize,
    /// Directories, the root not counted.
    pub dirs: usize,
    /// The sum of the file sizes.
    pub bytes: u64,
}

/// The directory layout: how many files each directory holds.
#[derive(Debug, PartialEq)]
struct Node {
    files: usize,
    dirs: Vec<Node>,
}

#[cfg(test)]
impl Node {
    /// (files, directories) in this subtree, itself not counted.
    fn count(&self) -> (usize, usize) {
        self.dirs.iter().fold((self.files, 0), |(f, d), child| {
            let (cf, cd) = child.count();
            (f + cf, d + cd + 1)
        })
    }
}

/// Writes the tree described by `spec` into `root`, which must not exist.
pub fn generate(root: &Path, spec: TreeSpec) -> Result<TreeStats> {
    let mut rng = Rng(spec.seed);
    let layout = plan(&mut rng, spec.files);
    let sizes = sizes(&mut rng, spec.files, spec.bytes);
    let mut writer = Writer {
        sizes: sizes.into_iter(),
        content: Rng(spec.seed ^ 0x5EED_C0DE_F11E_5000),
        buf: Vec::new(),
        stats: TreeStats::default(),
    };
    fs::create_dir(root).with_context(|| format!("creating {}", root.display()))?;
    writer.write(root, &layout, &mut rng)?;
    ensure!(
        writer.stats.files == spec.files && writer.stats.bytes == spec.bytes,
        "generated {:?}, asked for {spec:?}",
        writer.stats
    );
    Ok(writer.stats)
}

/// Sets a directory's mode and its mtime (and atime) to the epoch, so that
/// it matches a directory `hardmerge` creates with `epoch` 0.
pub fn set_epoch_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(dir, Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dir.display()))?;
    let times = FileTimes::new()
        .set_accessed(UNIX_EPOCH)
        .set_modified(UNIX_EPOCH);
    File::open(dir)
        .and_then(|f| f.set_times(times))
        .with_context(|| format!("setting the times of {}", dir.display()))
}

/// The directory layout of `files` files.
fn plan(rng: &mut Rng, files: usize) -> Node {
    if files <= LEAF_MAX {
        return Node {
            files,
            dirs: Vec::new(),
        };
    }
    let here = rng.range(5, 20);
    let rest = files - here;
    let subdirs = rng.range(20, 40).min(rest.div_ceil(20)).max(2);
    let weights: Vec<usize> = (0..subdirs).map(|_| rng.range(50, 150)).collect();
    let total: usize = weights.iter().sum();
    let mut shares: Vec<usize> = weights.iter().map(|w| rest * w / total).collect();
    let short = rest - shares.iter().sum::<usize>();
    for share in shares.iter_mut().take(short) {
        *share += 1;
    }
    Node {
        files: here,
        dirs: shares.into_iter().map(|n| plan(rng, n)).collect(),
    }
}

/// `files` sizes summing to exactly `bytes`.
fn sizes(rng: &mut Rng, files: usize, bytes: u64) -> Vec<u64> {
    if files == 0 {
        return Vec::new();
    }
    let raw: Vec<f64> = (0..files)
        .map(|_| {
            let mut roll = rng.below(100) as u64;
            let (_, lo, hi) = SIZE_CLASSES
                .iter()
                .copied()
                .find(|(percent, _, _)| {
                    let hit = roll < *percent;
                    roll = roll.saturating_sub(*percent);
                    hit
                })
                .unwrap_or(SIZE_CLASSES[0]);
            lo * (hi / lo).powf(rng.unit())
        })
        .collect();
    let scale = bytes as f64 / raw.iter().sum::<f64>();
    let mut sizes: Vec<u64> = raw.iter().map(|r| (r * scale) as u64).collect();
    // Rounding down left a little over; the largest file takes it, or gives
    // back what rounding could not (never below zero: the sum is below).
    let sum: u64 = sizes.iter().sum();
    let largest = (0..files).max_by_key(|&i| sizes[i]).unwrap_or(0);
    sizes[largest] += bytes - sum;
    sizes
}

struct Writer {
    sizes: std::vec::IntoIter<u64>,
    content: Rng,
    buf: Vec<u8>,
    stats: TreeStats,
}

impl Writer {
    fn write(&mut self, dir: &Path, node: &Node, rng: &mut Rng) -> Result<()> {
        for i in 0..node.files {
            let size = self.sizes.next().context("ran out of file sizes")?;
            let path = dir.join(format!("f{i:03}.{}", rng.pick(EXTENSIONS)));
            self.buf.resize(size as usize, 0);
            self.content.fill(&mut self.buf);
            fs::write(&path, &self.buf).with_context(|| format!("writing {}", path.display()))?;
            if rng.chance(10) {
                fs::set_permissions(&path, Permissions::from_mode(0o755))
                    .with_context(|| format!("chmod {}", path.display()))?;
            }
            self.stats.files += 1;
            self.stats.bytes += size;
        }
        for (i, child) in node.dirs.iter().enumerate() {
            let sub = dir.join(format!("d{i:02}"));
            fs::create_dir(&sub).with_context(|| format!("creating {}", sub.display()))?;
            self.stats.dirs += 1;
            self.write(&sub, child, rng)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_every_file_and_reasonable_directories() {
        for files in [0, 1, 80, 81, 5_000, 50_000] {
            let node = plan(&mut Rng(7), files);
            assert_eq!(node.count().0, files);
            fn check(node: &Node) {
                let entries = node.files + node.dirs.len();
                assert!(entries <= 100, "{entries} entries");
                node.dirs.iter().for_each(check);
            }
            check(&node);
        }
        let (_, dirs) = plan(&mut Rng(7), 50_000).count();
        assert!((500..2_500).contains(&dirs), "{dirs} directories");
    }

    #[test]
    fn sizes_sum_exactly_and_have_a_tail() {
        let s = sizes(&mut Rng(1), 50_000, 800_000_000);
        assert_eq!(s.iter().sum::<u64>(), 800_000_000);
        let small = s.iter().filter(|&&n| n < 8_192).count();
        let large = s.iter().filter(|&&n| n > 1 << 20).count();
        assert!(small > 35_000, "{small} small files");
        assert!(large > 50, "{large} files over 1 MiB");
        assert_eq!(sizes(&mut Rng(1), 0, 0), Vec::<u64>::new());
    }

    #[test]
    fn generates_the_same_tree_from_a_seed() {
        let scratch =
            super::super::measure::ScratchDir::new_in(&std::env::temp_dir(), "xtask-trees-test")
                .unwrap();
        let spec = TreeSpec {
            files: 300,
            bytes: 1 << 20,
            seed: 3,
        };
        let a = generate(&scratch.path().join("a"), spec).unwrap();
        let b = generate(&scratch.path().join("b"), spec).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.files, a.bytes), (300, 1 << 20));
        let pick = "d01/f002";
        let find = |root: &str| {
            fs::read_dir(scratch.path().join(root).join("d01"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().contains(pick))
                .unwrap()
        };
        assert_eq!(fs::read(find("a")).unwrap(), fs::read(find("b")).unwrap());
    }
}
