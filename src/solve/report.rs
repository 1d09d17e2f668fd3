//! The build report (SPEC §6) and the progress events frontends read.

use serde::Serialize;

/// One op of a build, as the report lists it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpReport {
    /// The op's IR digest.
    pub digest: String,
    /// The graph ops it stands for.
    pub names: Vec<String>,
    /// Its IR kind.
    pub kind: String,
    /// `hardlink` or `copy`.
    pub strategy: String,
    /// Whether its result came from the cache.
    pub cached: bool,
    /// Wall time spent on it.
    pub seconds: f64,
    /// Files hard-linked from an earlier snapshot.
    pub files_linked: u64,
    /// Files written as new copies.
    pub files_copied: u64,
    /// Bytes written into new files.
    pub bytes_copied: u64,
    /// Links that failed with EXDEV or EMLINK and were copied instead.
    pub fallbacks: u64,
    /// Bytes not written thanks to links.
    #[serde(skip)]
    pub bytes_saved: u64,
}

/// The sums over a build.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    /// Ops that ran.
    pub ops_run: u64,
    /// Ops whose result was cached.
    pub ops_cached: u64,
    /// Files hard-linked.
    pub files_linked: u64,
    /// Files copied.
    pub files_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Link fallbacks.
    pub fallbacks: u64,
    /// Bytes not written thanks to links.
    #[serde(skip)]
    pub bytes_saved: u64,
}

/// The report of one build (`--report FILE`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The output built.
    pub output: String,
    /// Its tree digest.
    pub digest: String,
    /// Every op the output needed, in dependency order.
    pub ops: Vec<OpReport>,
    /// The sums.
    pub totals: Totals,
    /// Why links fell back to copies: reason and count (summary only).
    #[serde(skip)]
    pub fallback_reasons: Vec<(String, u64)>,
}

impl Report {
    /// Adds up the ops into the totals.
    pub fn total(&mut self) {
        let mut t = Totals::default();
        for op in &self.ops {
            if op.cached {
                t.ops_cached += 1;
            } else {
                t.ops_run += 1;
            }
            t.files_linked += op.files_linked;
            t.files_copied += op.files_copied;
            t.bytes_copied += op.bytes_copied;
            t.fallbacks += op.fallbacks;
            t.bytes_saved += op.bytes_saved;
        }
        self.totals = t;
    }

    /// The one-line summary printed at the end of a build.
    pub fn summary(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "ops: {} run, {} cached; files: {} linked, {} copied; {} copied, {} saved; fallbacks: {}",
            t.ops_run,
            t.ops_cached,
            t.files_linked,
            t.files_copied,
            human_bytes(t.bytes_copied),
            human_bytes(t.bytes_saved),
            t.fallbacks
        );
        for (why, n) in &self.fallback_reasons {
            s.push_str(&format!(" ({n} {why})"));
        }
        s
    }
}

/// Why a link fell back to a copy, as the summary says it.
pub fn fallback_reason(errno: nix::errno::Errno) -> String {
    match errno {
        nix::errno::Errno::EXDEV => "cross-device (EXDEV), copied instead".to_string(),
        nix::errno::Errno::EMLINK => "too many links (EMLINK), copied instead".to_string(),
        e => format!("{}, copied instead", e.desc()),
    }
}

/// Bytes for people: `812 B`, `3.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What the solver tells its frontend as it goes.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The build plan is known.
    Plan {
        /// Ops the output needs.
        ops: usize,
        /// Of those, already in the store.
        cached: usize,
    },
    /// An op found in the store.
    Cached {
        /// Its graph names.
        names: Vec<String>,
        /// Its kind.
        kind: String,
    },
    /// An op started.
    Started {
        /// Its graph names.
        names: Vec<String>,
        /// Its kind.
        kind: String,
    },
    /// An op finished.
    Done {
        /// Its graph names.
        names: Vec<String>,
        /// Its kind.
        kind: String,
        /// Seconds it took.
        seconds: f64,
        /// Files linked.
        files_linked: u64,
        /// Files copied.
        files_copied: u64,
        /// Link fallbacks.
        fallbacks: u64,
    },
    /// Waiting for another process's lock on the store.
    Waiting {
        /// Who holds it.
        holders: Vec<String>,
    },
}
