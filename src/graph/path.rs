//! Lexical path cleaning for paths inside trees and for `local` paths.

/// Cleans a path inside a tree: taken from the root whether or not it starts
/// with `/`, `.` and empty components dropped, `..` removing the previous
/// component and never climbing above the root (as BuildKit does).
///
/// ```
/// use hardmerge::graph::path::clean;
/// assert_eq!(clean("a/./b/../c"), "/a/c");
/// assert_eq!(clean("/../.."), "/");
/// assert_eq!(clean(""), "/");
/// ```
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether [`clean`] would give the path back unchanged: `/`, or `/` and
/// components none of which is empty, `.` or `..`.
///
/// ```
/// use hardmerge::graph::path::is_clean;
/// assert!(is_clean("/a/b"));
/// assert!(!is_clean("/a/b/") && !is_clean("a") && !is_clean("/a/./b"));
/// ```
pub fn is_clean(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(|c| !matches!(c, "" | "." | "..")))
}

/// Cleans a `copy` destination, keeping the one thing cleaning would lose
/// that matters to it: a trailing `/` (or `/.`), which means "a directory".
pub fn clean_dest(path: &str) -> String {
    let mut out = clean(path);
    let dir_suffix = path.ends_with('/') || path.ends_with("/.") || path == ".";
    if dir_suffix && out != "/" {
        out.push('/');
    }
    out
}

/// Whether a path cleans to the root.
pub fn is_root(path: &str) -> bool {
    if is_clean(path) {
        return path == "/";
    }
    clean(path) == "/"
}

/// Cleans a `local` path, relative to the context directory. An absolute
/// path, or one whose `..` climbs out of the context, is an error. The
/// context itself is `"."`.
pub fn clean_relative(path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute: a local path is relative to the context directory"
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{path:?} leaves the context directory"));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_never_leaves_the_root() {
        assert_eq!(clean("/a/b/"), "/a/b");
        assert_eq!(clean("a//b"), "/a/b");
        assert_eq!(clean("/."), "/");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean("a/../../b"), "/b");
        assert!(is_root("a/../.."));
        assert!(!is_root("a/.."[..2].as_ref()));
    }

    #[test]
    fn a_clean_path_is_what_cleaning_gives_back() {
        for p in [
            "",
            "/",
            "//",
            "/.",
            "/..",
            "a",
            "/a",
            "/a/",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/a/b",
            "/.a/..b/...",
            "/a b/c",
            "./a",
            "/a/.",
            "/a.",
            "/a..",
        ] {
            assert_eq!(is_clean(p), clean(p) == p, "{p:?}");
            assert_eq!(is_root(p), clean(p) == "/", "{p:?}");
        }
    }

    #[test]
    fn dest_keeps_its_directory_suffix() {
        assert_eq!(clean_dest("/d/"), "/d/");
        assert_eq!(clean_dest("d/."), "/d/");
        assert_eq!(clean_dest("d"), "/d");
        assert_eq!(clean_dest("/"), "/");
        assert_eq!(clean_dest("."), "/");
    }

    #[test]
    fn local_paths_stay_in_the_context() {
        assert_eq!(clean_relative("app").unwrap(), "app");
        assert_eq!(clean_relative("./a/../b/").unwrap(), "b");
        assert_eq!(clean_relative("").unwrap(), ".");
        assert!(clean_relative("/etc").is_err());
        assert!(clean_relative("../x").is_err());
        assert!(clean_relative("a/../../x").is_err());
    }
}
