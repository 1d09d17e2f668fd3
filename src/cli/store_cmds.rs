//! `tree`, `du`, `prune` and `verify`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::json;

use super::{Failure, EXIT_STORE};
use crate::fs::scan::{scan, OriginKind, Owners, ScanOptions};
use crate::snapshot::native::NativeStore;
use crate::snapshot::Snapshotter;
use crate::solve::report::human_bytes;
use crate::tree::manifest::{digest_of, manifest};

fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: EXIT_STORE,
        message: e.to_string(),
    }
}

/// `tree DIR`: the manifest and tree digest of a folder.
pub fn tree(dir: &Path, json_out: bool) -> Result<String, Failure> {
    if !dir.is_dir() {
        return Err(Failure {
            code: 2,
            message: format!("{}: not a directory", dir.display()),
        });
    }
    let owners = Owners::Keep;
    let t = scan(
        dir,
        ScanOptions {
            filter: None,
            owners,
            origin: OriginKind::Stored,
            stat_cache: None,
        },
    )
    .map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    let entries = manifest(&t);
    let digest = digest_of(&entries);
    if json_out {
        return Ok(format!(
            "{}\n",
            serde_json::to_string(&entries).expect("serialise")
        ));
    }
    let mut out = String::new();
    for e in &entries {
        let extra = match (&e.target, &e.sha256, &e.link) {
            (Some(t), _, _) => format!(" -> {t}"),
            (_, _, Some(l)) => format!(" (hardlink of {l})"),
            (_, Some(h), _) => format!(" {} {}", e.size.unwrap_or(0), &h[..12]),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{} {} {}:{} {} {}{extra}\n",
            e.kind, e.mode, e.uid, e.gid, e.mtime, e.path
        ));
    }
    out.push_str(&digest);
    out.push('\n');
    Ok(out)
}

/// Per-snapshot and store-wide usage, from the snapshots' records.
struct Usage {
    rows: Vec<(crate::snapshot::Info, u64)>,
    logical: u64,
    physical: u64,
}

fn usage(store: &NativeStore) -> Result<Usage, Failure> {
    let infos = store.list().map_err(store_failure)?;
    // phys -> (size, snapshots holding it)
    let mut inodes: HashMap<(u64, u64), (u64, HashSet<usize>)> = HashMap::new();
    let mut logical = 0;
    for (k, info) in infos.iter().enumerate() {
        let rec = store.record(&info.key).map_err(store_failure)?;
        for r in &rec.entries {
            if r.entry.kind != "file" {
                continue;
            }
            let size = r.entry.size.unwrap_or(0);
            logical += size;
            let phys = r.phys.unwrap_or((u64::MAX, inodes.len() as u64));
            inodes
                .entry(phys)
                .or_insert((size, HashSet::new()))
                .1
                .insert(k);
        }
    }
    let physical = inodes.values().map(|(s, _)| *s).sum();
    let mut exclusive = vec![0u64; infos.len()];
    for (size, holders) in inodes.values() {
        if holders.len() == 1 {
            exclusive[*holders.iter().next().expect("one")] += size;
        }
    }
    Ok(Usage {
        rows: infos.into_iter().zip(exclusive).collect(),
        logical,
        physical,
    })
}

/// `du`: logical and physical bytes, each inode counted once.
pub fn du(store: &NativeStore, json_out: bool) -> Result<String, Failure> {
    let u = usage(store)?;
    if json_out {
        let snaps: Vec<_> = u
            .rows
            .iter()
            .map(|(i, ex)| {
                json!({"id": i.key, "names": i.names, "files": i.files,
                       "logical_bytes": i.logical_bytes, "exclusive_bytes": ex})
            })
            .collect();
        let v = json!({
            "snapshots": snaps,
            "logical_bytes": u.logical,
            "physical_bytes": u.physical,
            "saved_bytes": u.logical.saturating_sub(u.physical),
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&v).expect("serialise")
        ));
    }
    let mut out = String::new();
    for (i, ex) in &u.rows {
        out.push_str(&format!(
            "{}  {:>10} logical  {:>10} exclusive  {:>6} files  {} {}\n",
            &i.key[..19.min(i.key.len())],
            human_bytes(i.logical_bytes),
            human_bytes(*ex),
            i.files,
            i.kind,
            i.names.join(",")
        ));
    }
    out.push_str(&format!(
        "{} snapshots: {} logical, {} physical, {} saved by hard links\n",
        u.rows.len(),
        human_bytes(u.logical),
        human_bytes(u.physical),
        human_bytes(u.logical.saturating_sub(u.physical))
    ));
    Ok(out)
}

/// `prune`: removes snapshots, all or least recently used first down to a
/// ceiling of physical bytes; says what it freed.
pub fn prune(store: &NativeStore, all: bool, keep_bytes: Option<u64>) -> Result<String, Failure> {
    let u = usage(store)?;
    let mut rows = u.rows.clone();
    rows.sort_by_key(|(i, _)| (store.last_used(&i.key), i.key.clone()));
    let mut physical = u.physical;
    let mut removed = 0;
    let mut freed = 0u64;
    for (info, exclusive) in rows {
        let over = match keep_bytes {
            _ if all => true,
            Some(limit) => physical > limit,
            None => false,
        };
        if !over {
            break;
        }
        store.remove(&info.key).map_err(store_failure)?;
        removed += 1;
        freed += exclusive;
        physical = physical.saturating_sub(exclusive);
    }
    // What is left, counted again: bytes shared by removed snapshots only
    // are freed too, which the estimate above cannot see.
    let left = usage(store)?.physical;
    let _ = physical;
    Ok(format!(
        "pruned {removed} snapshot{}: freed {} ({} bytes); {} left\n",
        if removed == 1 { "" } else { "s" },
        human_bytes(u.physical.saturating_sub(left).max(freed)),
        u.physical.saturating_sub(left).max(freed),
        human_bytes(left)
    ))
}

/// `verify`: every snapshot's tree against the digest recorded at commit.
pub fn verify(store: &NativeStore) -> Result<String, Failure> {
    let infos = store.list().map_err(store_failure)?;
    let mut damaged = Vec::new();
    for info in &infos {
        let dir = store.tree_dir(&info.key);
        let found = scan(
            &dir,
            ScanOptions {
                filter: None,
                owners: Owners::Keep,
                origin: OriginKind::Stored,
                stat_cache: None,
            },
        );
        // A store written by a user other than root holds its directories
        // with u+rwx: their recorded modes count.
        let found = found.map(|mut t| {
            if let Ok(rec) = store.record(&info.key) {
                crate::tree::manifest::undo_stored_dir_modes(&mut t, &rec);
            }
            t
        });
        match found {
            Ok(t) => {
                let d = crate::tree::manifest::tree_digest(&t);
                if d != info.digest {
                    damaged.push(format!(
                        "{} ({}): tree digest {d}, recorded {}",
                        info.key,
                        info.names.join(","),
                        info.digest
                    ));
                }
            }
            Err(e) => damaged.push(format!("{} ({}): {e}", info.key, info.names.join(","))),
        }
    }
    if damaged.is_empty() {
        return Ok(format!("ok: {} snapshots verified\n", infos.len()));
    }
    Err(Failure {
        code: EXIT_STORE,
        message: format!(
            "{} of {} snapshots damaged:\n{}",
            damaged.len(),
            infos.len(),
            damaged.join("\n")
        ),
    })
}
