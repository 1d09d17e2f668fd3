//! Field checks that serde cannot do, and the cleaning of paths, shared by
//! the JSON reader and the builder so both make the same [`Op`].

use super::op::{FileAction, Op, Placement};
use super::path::{clean, clean_dest, clean_relative, is_clean, is_root};

/// What is wrong with a field: the field's name (or `None` for the op) and why.
pub(crate) type FieldError = (Option<&'static str>, String);

fn no_nul(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err((Some(field), "a NUL byte is not allowed in a path".into()));
    }
    Ok(())
}

fn tree_path(field: &'static str, value: &mut String) -> Result<(), FieldError> {
    no_nul(field, value)?;
    // Most paths are written clean: those keep their allocation.
    if !is_clean(value) {
        *value = clean(value);
    }
    Ok(())
}

fn patterns(field: &'static str, list: &[String]) -> Result<(), FieldError> {
    for p in list {
        if p.contains('\0') {
            return Err((Some(field), "a NUL byte is not allowed in a pattern".into()));
        }
    }
    // Whether a pattern is valid depends on it alone, so a list is valid
    // when each of its patterns is; graphs repeat the same few patterns,
    // and each distinct one is checked once per thread.
    thread_local! {
        static VALID: std::cell::RefCell<rustc_hash::FxHashSet<String>> =
            std::cell::RefCell::new(rustc_hash::FxHashSet::default());
    }
    VALID.with(|valid| {
        let mut valid = valid.borrow_mut();
        for p in list {
            if valid.contains(p.as_str()) {
                continue;
            }
            crate::fs::pattern::PatternSet::new(std::slice::from_ref(p))
                .map_err(|e| (Some(field), e.to_string()))?;
            if valid.len() >= 4096 {
                valid.clear();
            }
            valid.insert(p.clone());
        }
        Ok(())
    })
}

/// Checks an op's fields and cleans its paths in place.
pub(crate) fn normalize_op(op: &mut Op) -> Result<(), FieldError> {
    match op {
        Op::Scratch | Op::Merge { .. } | Op::Diff { .. } => Ok(()),
        Op::Local(l) => {
            no_nul("path", &l.path)?;
            l.path = clean_relative(&l.path).map_err(|m| (Some("path"), m))?;
            patterns("include", &l.include)?;
            patterns("exclude", &l.exclude)
        }
        Op::File { action, .. } => normalize_action(action),
        Op::Place { placement, .. } => normalize_placement(placement),
    }
}

/// Checks a file action's fields and cleans its paths in place.
pub(crate) fn normalize_action(action: &mut FileAction) -> Result<(), FieldError> {
    match action {
        FileAction::Mkdir(a) => tree_path("path", &mut a.path),
        FileAction::Mkfile(a) => tree_path("path", &mut a.path),
        FileAction::Symlink(a) => {
            tree_path("path", &mut a.path)?;
            if a.target.contains('\0') {
                return Err((
                    Some("target"),
                    "a NUL byte is not allowed in a symlink target".into(),
                ));
            }
            if a.target.is_empty() {
                return Err((Some("target"), "a symlink target may not be empty".into()));
            }
            Ok(())
        }
        FileAction::Rm(a) => {
            no_nul("path", &a.path)?;
            if is_root(&a.path) {
                return Err((
                    Some("path"),
                    format!("{:?} cleans to `/`: rm of the root is not allowed", a.path),
                ));
            }
            a.path = clean(&a.path);
            Ok(())
        }
    }
}

/// Checks a placement's fields and cleans its paths in place.
pub(crate) fn normalize_placement(placement: &mut Placement) -> Result<(), FieldError> {
    match placement {
        Placement::Copy(c) => {
            tree_path("src", &mut c.src)?;
            no_nul("dest", &c.dest)?;
            c.dest = clean_dest(&c.dest);
            patterns("include", &c.include)?;
            patterns("exclude", &c.exclude)
        }
        Placement::WithDirectory(w) => {
            tree_path("path", &mut w.path)?;
            tree_path("source_path", &mut w.source_path)?;
            patterns("include", &w.include)?;
            patterns("exclude", &w.exclude)
        }
        Placement::WithFile(w) => {
            tree_path("path", &mut w.path)?;
            tree_path("source_path", &mut w.source_path)?;
            if w.source_path == "/" {
                return Err((
                    Some("source_path"),
                    "`/` is the source's root, a directory: with_file takes a regular file".into(),
                ));
            }
            Ok(())
        }
    }
}
