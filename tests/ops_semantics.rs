//! The semantics of every op (SPEC §2: placing rules 1–5, `with_directory`,
//! `with_file`, `copy`, `mkdir`/`mkfile`/`symlink`/`rm`, `merge`, `diff`, the
//! fine points and equal trees), checked on in-memory trees only: no disk.
//!
//! Trees are built with a small DSL ([`T`]) and read back as one line per
//! manifest entry ([`listing`]):
//!
//! ```text
//! path type mode uid:gid @mtime ['content'] [link=first-path] [-> target] [xattr=value]
//! ```
//!
//! Parents the DSL creates on its own are `0755 0:0 @1`; files and symlinks
//! it makes without explicit metadata are `0:0 @100` (symlinks `0777`). Every
//! op runs with `Ctx { epoch: 1000, owner: (0, 0) }`.
//!
//! Each placement is run twice: as the op itself with the hardlink strategy,
//! and as a merge layer (`placed_layer`) with the copy strategy; the two must
//! give the same tree or the same error (SPEC §2: "the rewrite changes how
//! data is written, never what the result is").
//!
//! Tests marked `` document a disagreement between the
//! code and SPEC; they are meant to pass once the code is fixed.

use std::collections::BTreeMap;
use std::sync::Arc;

use hardmerge::graph::path::{clean, clean_dest};
use hardmerge::graph::{
    Copy as CopyOp, FileAction, Mkdir, Mkfile, Mode, Owner, Placement, Rm, Symlink, WithDirectory,
    WithFile,
};
use hardmerge::ops::diff::diff;
use hardmerge::ops::{copy, file, merge, with_directory, with_file, Ctx, OpError, OpResult};
use hardmerge::tree::manifest::{manifest, tree_digest};
use hardmerge::tree::{Inode, Kind, Meta, Node, NodeId, Origin, Tree};
use sha2::{Digest as _, Sha256};

const CTX: Ctx = Ctx {
    epoch: 1000,
    owner: (0, 0),
};

// ---------------------------------------------------------------------------
// Building trees.

fn meta(mode: u32, owner: (u32, u32), mtime: i64) -> Meta {
    Meta {
        mode,
        uid: owner.0,
        gid: owner.1,
        mtime,
        xattrs: BTreeMap::new(),
    }
}

fn inode(data: &[u8], meta: Meta) -> Inode {
    Inode {
        meta,
        size: data.len() as u64,
        sha256: Sha256::digest(data).into(),
        origin: Origin::Data(Arc::new(data.to_vec())),
        link: false,
        phys: None,
    }
}

/// A tree under construction. Paths are from the root, `/` optional.
struct T(Tree);

impl T {
    fn new() -> T {
        T(Tree::new())
    }

    /// The directory that holds `path` (missing parents created `0755 0:0
    /// @1`) and the last name.
    fn slot(&mut self, path: &str) -> (NodeId, Vec<u8>) {
        let names: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let (last, dirs) = names.split_last().expect("a path below the root");
        let mut at = Tree::ROOT;
        for d in dirs {
            at = match self.0.child(at, d.as_bytes()) {
                Some(c) => {
                    assert!(
                        self.0.node(c).kind.is_dir(),
                        "{path}: {d} is not a directory"
                    );
                    c
                }
                None => {
                    let n = self.0.add_node(Node::dir(meta(0o755, (0, 0), 1)));
                    self.0.attach(at, d.as_bytes(), n);
                    n
                }
            };
        }
        (at, last.as_bytes().to_vec())
    }

    fn put(mut self, path: &str, node: Node) -> T {
        let (dir, name) = self.slot(path);
        let id = self.0.add_node(node);
        self.0.attach(dir, &name, id);
        self
    }

    fn id(&self, path: &str) -> NodeId {
        self.0
            .lookup(path.as_bytes())
            .unwrap_or_else(|| panic!("{path} is not in the tree"))
    }

    fn dir(self, path: &str, mode: u32, mtime: i64) -> T {
        self.dir_m(path, mode, (0, 0), mtime)
    }

    /// A directory; an existing one (a parent made earlier) gets this metadata.
    fn dir_m(mut self, path: &str, mode: u32, owner: (u32, u32), mtime: i64) -> T {
        if let Some(id) = self.0.lookup(path.as_bytes()) {
            if self.0.node(id).kind.is_dir() {
                let xattrs = std::mem::take(&mut self.0.meta_mut(id).xattrs);
                *self.0.meta_mut(id) = Meta {
                    xattrs,
                    ..meta(mode, owner, mtime)
                };
                return self;
            }
        }
        self.put(path, Node::dir(meta(mode, owner, mtime)))
    }

    fn file(self, path: &str, data: &[u8], mode: u32) -> T {
        self.file_m(path, data, mode, (0, 0), 100)
    }

    fn file_m(mut self, path: &str, data: &[u8], mode: u32, owner: (u32, u32), mtime: i64) -> T {
        let (dir, name) = self.slot(path);
        let id = self.0.add_file(inode(data, meta(mode, owner, mtime)));
        self.0.attach(dir, &name, id);
        self
    }

    fn symlink(self, path: &str, target: &str) -> T {
        let node = Node::other(
            Kind::Symlink(target.as_bytes().to_vec()),
            meta(0o777, (0, 0), 100),
        );
        self.put(path, node)
    }

    fn fifo(self, path: &str) -> T {
        self.put(path, Node::other(Kind::Fifo, meta(0o644, (0, 0), 100)))
    }

    fn char_dev(self, path: &str, rdev: u64) -> T {
        self.put(
            path,
            Node::other(Kind::Char(rdev), meta(0o600, (0, 0), 100)),
        )
    }

    /// A second name `new` of the file at `existing`.
    fn hardlink(mut self, existing: &str, new: &str) -> T {
        let Kind::File(i) = self.0.node(self.id(existing)).kind else {
            panic!("{existing} is not a file")
        };
        let (dir, name) = self.slot(new);
        let id = self.0.add_node(Node::other(Kind::File(i), Meta::default()));
        self.0.attach(dir, &name, id);
        self
    }

    fn xattr(mut self, path: &str, name: &str, value: &str) -> T {
        let id = self.id(path);
        self.0
            .meta_mut(id)
            .xattrs
            .insert(name.as_bytes().to_vec(), value.as_bytes().to_vec());
        self
    }

    fn tree(self) -> Tree {
        self.0
    }
}

fn mode(bits: u32) -> Mode {
    Mode::new(bits).expect("a valid mode")
}

fn src_f() -> Tree {
    T::new().file("f", b"F", 0o644).tree()
}

// ---------------------------------------------------------------------------
// Reading trees.

/// The content of the file at `path` (its bytes are in memory).
fn content(t: &Tree, path: &str) -> String {
    let id = t
        .lookup(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} missing"));
    let Kind::File(i) = t.node(id).kind else {
        panic!("{path} is not a file")
    };
    match &t.inode(i).origin {
        Origin::Data(d) => String::from_utf8(d.to_vec()).expect("test data is UTF-8"),
        other => panic!("{path}: unexpected origin {other:?}"),
    }
}

/// One line per manifest entry (see the module docs).
fn listing(t: &Tree) -> Vec<String> {
    manifest(t)
        .into_iter()
        .map(|e| {
            let mut s = format!(
                "{} {} {} {}:{} @{}",
                e.path, e.kind, e.mode, e.uid, e.gid, e.mtime
            );
            if e.kind == "file" {
                let c = content(t, &e.path);
                let sha = hex::encode(Sha256::digest(c.as_bytes()));
                assert_eq!(
                    e.sha256.as_deref(),
                    Some(sha.as_str()),
                    "{}: sha256",
                    e.path
                );
                assert_eq!(e.size, Some(c.len() as u64), "{}: size", e.path);
                s += &format!(" '{c}'");
                if let Some(first) = &e.link {
                    s += &format!(" link={first}");
                }
            }
            if let Some(target) = &e.target {
                s += &format!(" -> {target}");
            }
            let id = t.lookup(e.path.as_bytes()).expect("listed path");
            for (k, v) in &t.meta(id).xattrs {
                s += &format!(
                    " {}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                );
            }
            s
        })
        .collect()
}

/// The listing line of one path.
fn line(t: &Tree, path: &str) -> String {
    listing(t)
        .into_iter()
        .find(|l| l.split(' ').next() == Some(path))
        .unwrap_or_else(|| panic!("{path} is not in the tree: {:#?}", listing(t)))
}

/// Asserts the tree's exact entries (the expected lines in any order).
#[track_caller]
fn assert_tree(t: &Tree, expected: &[&str]) {
    let key = |s: &String| s.split(' ').next().unwrap_or("").as_bytes().to_vec();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort_by_key(key);
    assert_eq!(listing(t), want);
}

/// Asserts two trees are equal (SPEC §2 "Equal trees").
#[track_caller]
fn assert_same(a: &Tree, b: &Tree) {
    assert_eq!(listing(a), listing(b));
    assert_eq!(tree_digest(a), tree_digest(b));
}

fn deletions(t: &Tree) -> Vec<String> {
    t.deletions
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// Running ops.

/// Cleans a placement's paths as the graph reader does.
fn normalized(p: Placement) -> Placement {
    match p {
        Placement::WithDirectory(mut w) => {
            w.path = clean(&w.path);
            w.source_path = clean(&w.source_path);
            Placement::WithDirectory(w)
        }
        Placement::WithFile(mut w) => {
            w.path = clean(&w.path);
            w.source_path = clean(&w.source_path);
            Placement::WithFile(w)
        }
        Placement::Copy(mut c) => {
            c.src = clean(&c.src);
            c.dest = clean_dest(&c.dest);
            Placement::Copy(c)
        }
    }
}

/// Runs a placement on a copy of `base`, as the op (hardlink strategy) and as
/// a merge layer (copy strategy), and checks they agree.
fn place(base: &Tree, src: &Tree, p: Placement) -> OpResult<Tree> {
    let p = normalized(p);
    let mut linked = base.clone();
    let direct = match &p {
        Placement::WithDirectory(w) => with_directory::apply(&mut linked, src, w, true, &CTX),
        Placement::WithFile(w) => with_file::apply(&mut linked, src, w, true, &CTX),
        Placement::Copy(c) => copy::apply(&mut linked, src, c, true, &CTX),
    };
    let mut copied = base.clone();
    let layer = merge::placed_layer(&mut copied, src, &p, false, &CTX);
    assert_eq!(direct, layer, "the op and its merge layer disagree");
    direct?;
    assert_same(&linked, &copied);
    Ok(linked)
}

fn wd(base: &Tree, src: &Tree, w: WithDirectory) -> OpResult<Tree> {
    place(base, src, Placement::WithDirectory(w))
}

fn wf(base: &Tree, src: &Tree, w: WithFile) -> OpResult<Tree> {
    place(base, src, Placement::WithFile(w))
}

fn cp(base: &Tree, src: &Tree, c: CopyOp) -> OpResult<Tree> {
    place(base, src, Placement::Copy(c))
}

/// A copy with `allow_wildcard`.
fn wild(src: &str, dest: &str) -> CopyOp {
    CopyOp {
        allow_wildcard: true,
        ..CopyOp::new(src, dest)
    }
}

/// Runs a file action on a copy of `base` (as the solver does: the base
/// tree cloned, the action applied in place), its path cleaned.
fn act(base: &Tree, a: FileAction) -> OpResult<Tree> {
    let a = match a {
        FileAction::Mkdir(mut m) => {
            m.path = clean(&m.path);
            FileAction::Mkdir(m)
        }
        FileAction::Mkfile(mut m) => {
            m.path = clean(&m.path);
            FileAction::Mkfile(m)
        }
        FileAction::Symlink(mut s) => {
            s.path = clean(&s.path);
            FileAction::Symlink(s)
        }
        FileAction::Rm(mut r) => {
            r.path = clean(&r.path);
            FileAction::Rm(r)
        }
    };
    let mut t = base.clone();
    file::apply(&mut t, &a, &CTX)?;
    Ok(t)
}

fn run_mkdir(base: &Tree, m: Mkdir) -> OpResult<Tree> {
    act(base, FileAction::Mkdir(m))
}

fn run_mkfile(base: &Tree, m: Mkfile) -> OpResult<Tree> {
    act(base, FileAction::Mkfile(m))
}

fn run_symlink(base: &Tree, s: Symlink) -> OpResult<Tree> {
    act(base, FileAction::Symlink(s))
}

fn run_rm(base: &Tree, r: Rm) -> OpResult<Tree> {
    act(base, FileAction::Rm(r))
}

/// `merge[inputs]`: each a plain layer, with both strategies (same result).
fn merged(inputs: &[&Tree]) -> Tree {
    let mut linked = Tree::new();
    let mut copied = Tree::new();
    for input in inputs {
        merge::plain_layer(&mut linked, input, true).expect("a plain layer never fails");
        merge::plain_layer(&mut copied, input, false).expect("a plain layer never fails");
    }
    assert_same(&linked, &copied);
    linked
}

#[track_caller]
fn assert_err<T: std::fmt::Debug>(r: OpResult<T>, needle: &str) -> OpError {
    match r {
        Ok(v) => panic!("expected an error containing {needle:?}, got {v:?}"),
        Err(e) => {
            assert!(
                e.to_string().contains(needle),
                "error {e} does not contain {needle:?}"
            );
            e
        }
    }
}

// ---------------------------------------------------------------------------
// Placing rules.

#[test]
fn place_dir_over_file() {
    let base = T::new()
        .file("a", b"old", 0o644)
        .file("keep", b"k", 0o644)
        .tree();
    let src = T::new()
        .dir_m("a", 0o750, (3, 3), 7)
        .file("a/x", b"x", 0o600)
        .tree();
    let out = merged(&[&base, &src]);
    assert_tree(
        &out,
        &[
            "a dir 0750 3:3 @7",
            "a/x file 0600 0:0 @100 'x'",
            "keep file 0644 0:0 @100 'k'",
        ],
    );
    assert_same(&wd(&base, &src, WithDirectory::new("/")).unwrap(), &out);
}

#[test]
fn place_file_over_dir_drops_the_subtree() {
    let base = T::new()
        .dir("a", 0o755, 5)
        .file("a/x", b"x", 0o644)
        .dir("a/y", 0o755, 5)
        .file("a/y/z", b"z", 0o644)
        .tree();
    let src = T::new().file("a", b"new", 0o600).tree();
    let out = merged(&[&base, &src]);
    assert_tree(&out, &["a file 0600 0:0 @100 'new'"]);
    assert_same(&wd(&base, &src, WithDirectory::new("/")).unwrap(), &out);
}

#[test]
fn place_symlink_over_dir() {
    let base = T::new()
        .dir("lib", 0o755, 5)
        .file("lib/x", b"x", 0o644)
        .tree();
    let src = T::new().symlink("lib", "usr/lib").tree();
    let out = merged(&[&base, &src]);
    assert_tree(&out, &["lib symlink 0777 0:0 @100 -> usr/lib"]);
    assert_same(&wd(&base, &src, WithDirectory::new("/")).unwrap(), &out);
}

#[test]
fn destination_through_usr_lib64_lands_in_usr_lib() {
    let base = T::new()
        .dir("usr", 0o755, 5)
        .dir_m("usr/lib", 0o700, (2, 2), 6)
        .file("usr/lib/libc.so", b"c", 0o755)
        .symlink("usr/lib64", "lib")
        .tree();
    let src = T::new().file("pkg.so", b"p", 0o644).tree();
    let out = wd(&base, &src, WithDirectory::new("/usr/lib64/pkg")).unwrap();
    assert_tree(
        &out,
        &[
            "usr dir 0755 0:0 @5",
            "usr/lib dir 0700 2:2 @6",
            "usr/lib/libc.so file 0755 0:0 @100 'c'",
            "usr/lib/pkg dir 0755 0:0 @1000",
            "usr/lib/pkg/pkg.so file 0644 0:0 @100 'p'",
            "usr/lib64 symlink 0777 0:0 @100 -> lib",
        ],
    );
    // P's last component a symlink: written into its target, the link kept.
    let out = wd(&base, &src, WithDirectory::new("/usr/lib64")).unwrap();
    assert_tree(
        &out,
        &[
            "usr dir 0755 0:0 @5",
            "usr/lib dir 0700 2:2 @6",
            "usr/lib/libc.so file 0755 0:0 @100 'c'",
            "usr/lib/pkg.so file 0644 0:0 @100 'p'",
            "usr/lib64 symlink 0777 0:0 @100 -> lib",
        ],
    );
}

#[test]
fn destination_through_absolute_symlink_stays_inside_the_tree() {
    let base = T::new().dir("etc", 0o700, 5).symlink("conf", "/etc").tree();
    let out = wd(&base, &src_f(), WithDirectory::new("/conf/app")).unwrap();
    assert_tree(
        &out,
        &[
            "conf symlink 0777 0:0 @100 -> /etc",
            "etc dir 0700 0:0 @5",
            "etc/app dir 0755 0:0 @1000",
            "etc/app/f file 0644 0:0 @100 'F'",
        ],
    );
    // The same for with_file, copy and mkfile destinations.
    let out = wf(&base, &src_f(), WithFile::new("/conf/g", "/f")).unwrap();
    assert_eq!(line(&out, "etc/g"), "etc/g file 0644 0:0 @100 'F'");
    let out = cp(&base, &src_f(), CopyOp::new("/f", "/conf/h")).unwrap();
    assert_eq!(line(&out, "etc/h"), "etc/h file 0644 0:0 @100 'F'");
    let out = run_mkfile(&base, Mkfile::new("/conf/i").data("I")).unwrap();
    assert_eq!(line(&out, "etc/i"), "etc/i file 0644 0:0 @1000 'I'");
}

#[test]
fn dotdot_symlink_targets_never_leave_the_root() {
    let base = T::new()
        .dir("etc", 0o700, 5)
        .dir("a", 0o755, 5)
        .dir("a/b", 0o755, 5)
        .symlink("a/b/up", "../../../../etc")
        .symlink("esc", "/../../etc/../../etc")
        .tree();
    let out = wd(&base, &src_f(), WithDirectory::new("/a/b/up/x")).unwrap();
    let out = wd(&out, &src_f(), WithDirectory::new("/esc/y")).unwrap();
    assert_tree(
        &out,
        &[
            "a dir 0755 0:0 @5",
            "a/b dir 0755 0:0 @5",
            "a/b/up symlink 0777 0:0 @100 -> ../../../../etc",
            "esc symlink 0777 0:0 @100 -> /../../etc/../../etc",
            "etc dir 0700 0:0 @5",
            "etc/x dir 0755 0:0 @1000",
            "etc/x/f file 0644 0:0 @100 'F'",
            "etc/y dir 0755 0:0 @1000",
            "etc/y/f file 0644 0:0 @100 'F'",
        ],
    );
}

#[test]
fn more_than_255_symlinks_is_an_error() {
    // l001 -> l002 -> ... -> l255 -> d: exactly 255 links, allowed.
    let mut t = T::new().dir("d", 0o755, 5);
    for k in 1..=255 {
        let target = if k == 255 {
            "d".to_string()
        } else {
            format!("l{:03}", k + 1)
        };
        t = t.symlink(&format!("l{k:03}"), &target);
    }
    let base = t.tree();
    let out = wd(&base, &src_f(), WithDirectory::new("/l001/x")).unwrap();
    assert_eq!(line(&out, "d/x/f"), "d/x/f file 0644 0:0 @100 'F'");
    // One more link: 256.
    let base = T(base).symlink("l000", "l001").tree();
    assert_err(
        wd(&base, &src_f(), WithDirectory::new("/l000/x")),
        "symbolic links",
    );
    // A loop.
    let base = T::new().symlink("a", "b").symlink("b", "a").tree();
    assert_err(
        wd(&base, &src_f(), WithDirectory::new("/a/x")),
        "symbolic links",
    );
    assert_err(
        wf(&base, &src_f(), WithFile::new("/a", "/f")),
        "symbolic links",
    );
    assert_err(
        cp(&base, &src_f(), CopyOp::new("/f", "/a/x")),
        "symbolic links",
    );
    assert_err(run_mkdir(&base, Mkdir::new("/a")), "symbolic links");
    assert_err(run_mkfile(&base, Mkfile::new("/a")), "symbolic links");
}

#[test]
fn existing_parents_keep_their_metadata() {
    let base = T::new()
        .dir_m("opt", 0o700, (5, 5), 7)
        .file("opt/old", b"o", 0o600)
        .tree();
    let out = wd(&base, &src_f(), WithDirectory::new("/opt/app")).unwrap();
    assert_tree(
        &out,
        &[
            "opt dir 0700 5:5 @7",
            "opt/app dir 0755 0:0 @1000",
            "opt/app/f file 0644 0:0 @100 'F'",
            "opt/old file 0600 0:0 @100 'o'",
        ],
    );
    // Every op that writes into `opt` leaves it as it was (fine point).
    let want = "opt dir 0700 5:5 @7";
    let over = WithDirectory::new("/opt/b")
        .owner(Owner::new(1, 1))
        .mode(mode(0o700))
        .timestamp(3);
    assert_eq!(line(&wd(&base, &src_f(), over).unwrap(), "opt"), want);
    assert_eq!(
        line(
            &wf(&base, &src_f(), WithFile::new("/opt", "/f")).unwrap(),
            "opt"
        ),
        want
    );
    assert_eq!(
        line(
            &cp(&base, &src_f(), CopyOp::new("/f", "/opt/")).unwrap(),
            "opt"
        ),
        want
    );
    assert_eq!(
        line(&run_mkdir(&base, Mkdir::new("/opt/d")).unwrap(), "opt"),
        want
    );
    assert_eq!(
        line(&run_mkfile(&base, Mkfile::new("/opt/old")).unwrap(), "opt"),
        want
    );
    assert_eq!(
        line(
            &run_symlink(&base, Symlink::new("/opt/l", "x")).unwrap(),
            "opt"
        ),
        want
    );
    assert_eq!(
        line(&run_rm(&base, Rm::new("/opt/old")).unwrap(), "opt"),
        want
    );
}

#[test]
fn missing_parents_get_0755_default_owner_and_epoch() {
    let src = T::new()
        .dir_m("sub", 0o750, (3, 3), 42)
        .file("sub/f", b"F", 0o644)
        .tree();
    // The overrides go to the placed entries and the created root, never to
    // the created parents (rule 5).
    let w = WithDirectory::new("/a/b/c")
        .owner(Owner::new(9, 9))
        .mode(mode(0o700))
        .timestamp(77);
    let out = wd(&Tree::new(), &src, w.clone()).unwrap();
    assert_tree(
        &out,
        &[
            "a dir 0755 0:0 @1000",
            "a/b dir 0755 0:0 @1000",
            "a/b/c dir 0700 9:9 @77",
            "a/b/c/sub dir 0700 9:9 @77",
            "a/b/c/sub/f file 0700 9:9 @77 'F'",
        ],
    );
    let f = WithFile::new("/x/y/g", "/sub/f")
        .owner(Owner::new(9, 9))
        .mode(mode(0o700))
        .timestamp(77);
    let out = wf(&Tree::new(), &src, f).unwrap();
    assert_tree(
        &out,
        &[
            "x dir 0755 0:0 @1000",
            "x/y dir 0755 0:0 @1000",
            "x/y/g file 0700 9:9 @77 'F'",
        ],
    );
    // The default owner is the context's (the running user when not root).
    let ctx = Ctx {
        epoch: 1000,
        owner: (1000, 1001),
    };
    let mut out = Tree::new();
    with_directory::apply(&mut out, &src, &WithDirectory::new("/a/b"), true, &ctx).unwrap();
    assert_eq!(line(&out, "a"), "a dir 0755 1000:1001 @1000");
    assert_eq!(line(&out, "a/b"), "a/b dir 0755 1000:1001 @1000");
}

#[test]
fn placed_directory_metadata_wins_on_merge() {
    let base = T::new()
        .dir_m("etc", 0o700, (1, 1), 5)
        .xattr("etc", "user.a", "1")
        .file("etc/keep", b"k", 0o644)
        .tree();
    let src = T::new()
        .dir_m("etc", 0o750, (2, 2), 9)
        .xattr("etc", "user.b", "2")
        .file("etc/new", b"n", 0o644)
        .tree();
    let out = merged(&[&base, &src]);
    assert_tree(
        &out,
        &[
            "etc dir 0750 2:2 @9 user.b=2",
            "etc/keep file 0644 0:0 @100 'k'",
            "etc/new file 0644 0:0 @100 'n'",
        ],
    );
    assert_same(&wd(&base, &src, WithDirectory::new("/")).unwrap(), &out);
}

#[test]
fn overrides_apply_to_placed_entries_and_a_created_root_only() {
    let base = T::new()
        .dir_m("srv", 0o700, (1, 1), 3)
        .dir_m("srv/sub", 0o700, (1, 1), 3)
        .file_m("srv/sub/old", b"o", 0o600, (1, 1), 3)
        .tree();
    let src = T::new()
        .dir("sub", 0o755, 9)
        .file_m("sub/new", b"n", 0o644, (0, 0), 9)
        .dir("bin", 0o755, 9)
        .file("bin/tool", b"t", 0o755)
        .symlink("bin/link", "tool")
        .tree();
    let w = |p: &str| {
        WithDirectory::new(p)
            .owner(Owner::new(5, 6))
            .mode(mode(0o2750))
            .timestamp(77)
    };
    // P exists: it keeps its metadata; a placed directory merged onto an
    // existing one is written (rule 4), so it takes the overrides.
    let out = wd(&base, &src, w("/srv")).unwrap();
    assert_tree(
        &out,
        &[
            "srv dir 0700 1:1 @3",
            "srv/bin dir 2750 5:6 @77",
            "srv/bin/link symlink 0777 5:6 @77 -> tool",
            "srv/bin/tool file 2750 5:6 @77 't'",
            "srv/sub dir 2750 5:6 @77",
            "srv/sub/new file 2750 5:6 @77 'n'",
            "srv/sub/old file 0600 1:1 @3 'o'",
        ],
    );
    // P created: it takes the overrides; its created parent does not.
    let out = wd(&base, &src, w("/opt/srv")).unwrap();
    assert_eq!(line(&out, "opt"), "opt dir 0755 0:0 @1000");
    assert_eq!(line(&out, "opt/srv"), "opt/srv dir 2750 5:6 @77");
    assert_eq!(
        line(&out, "opt/srv/bin/tool"),
        "opt/srv/bin/tool file 2750 5:6 @77 't'"
    );
}

#[test]
fn mode_is_never_applied_to_symlinks() {
    let src = T::new()
        .dir("d", 0o755, 9)
        .symlink("d/l", "x")
        .symlink("top", "d")
        .tree();
    let w = WithDirectory::new("/w")
        .owner(Owner::new(5, 6))
        .mode(mode(0o600))
        .timestamp(77);
    let out = wd(&Tree::new(), &src, w).unwrap();
    assert_eq!(line(&out, "w/d/l"), "w/d/l symlink 0777 5:6 @77 -> x");
    assert_eq!(line(&out, "w/top"), "w/top symlink 0777 5:6 @77 -> d");
    let c = CopyOp {
        owner: Some(Owner::new(5, 6)),
        mode: Some(mode(0o600)),
        timestamp: Some(77),
        ..CopyOp::new("/top", "/c")
    };
    let out = cp(&Tree::new(), &src, c).unwrap();
    assert_tree(&out, &["c symlink 0777 5:6 @77 -> d"]);
}

#[test]
fn with_directory_root_metadata_rule_3() {
    let src = T::new()
        .dir_m("sub", 0o750, (3, 3), 42)
        .file("sub/f", b"F", 0o644)
        .symlink("lnk", "sub")
        .file("plain", b"p", 0o644)
        .tree();
    let sub = |p: &str| WithDirectory::new(p).source_path("/sub");
    // P missing, source_path a real directory: P takes its metadata.
    let out = wd(&Tree::new(), &src, sub("/p")).unwrap();
    assert_tree(&out, &["p dir 0750 3:3 @42", "p/f file 0644 0:0 @100 'F'"]);
    // source_path a symlink to it: followed, same result.
    let out2 = wd(
        &Tree::new(),
        &src,
        WithDirectory::new("/p").source_path("/lnk"),
    )
    .unwrap();
    assert_same(&out2, &out);
    // source_path `/`: the root has no metadata, P gets the defaults.
    let out = wd(&Tree::new(), &src, WithDirectory::new("/p")).unwrap();
    assert_eq!(line(&out, "p"), "p dir 0755 0:0 @1000");
    assert_eq!(line(&out, "p/sub"), "p/sub dir 0750 3:3 @42");
    // P an existing directory: it keeps its own metadata.
    let base = T::new().dir_m("p", 0o700, (1, 1), 5).tree();
    let out = wd(&base, &src, sub("/p")).unwrap();
    assert_tree(&out, &["p dir 0700 1:1 @5", "p/f file 0644 0:0 @100 'F'"]);
    // P an existing file: replaced by a new directory.
    let base = T::new().file("p", b"old", 0o644).tree();
    let out = wd(&base, &src, sub("/p")).unwrap();
    assert_tree(&out, &["p dir 0750 3:3 @42", "p/f file 0644 0:0 @100 'F'"]);
    // source_path not a directory, or missing: an error.
    assert!(wd(
        &Tree::new(),
        &src,
        WithDirectory::new("/p").source_path("/plain")
    )
    .is_err());
    assert!(wd(
        &Tree::new(),
        &src,
        WithDirectory::new("/p").source_path("/nope")
    )
    .is_err());
}

#[test]
fn with_directory_of_scratch_root_equals_the_tree() {
    let x = T::new()
        .dir_m("d", 0o750, (1, 2), 3)
        .xattr("d", "user.k", "v")
        .file_m("d/f", b"f", 0o4755, (7, 8), 9)
        .hardlink("d/f", "g")
        .symlink("l", "d")
        .fifo("p")
        .tree();
    let scratch = Tree::new();
    assert_same(&wd(&scratch, &x, WithDirectory::new("/")).unwrap(), &x);
    assert_same(&merged(&[&scratch, &x]), &x);
    assert_same(&merged(&[&x]), &x);
    assert_same(&merged(&[&x, &x]), &x);
    assert!(merged(&[]).is_empty());
    assert_eq!(
        listing(&x),
        [
            "d dir 0750 1:2 @3 user.k=v",
            "d/f file 4755 7:8 @9 'f'",
            "g file 4755 7:8 @9 'f' link=d/f",
            "l symlink 0777 0:0 @100 -> d",
            "p fifo 0644 0:0 @100",
        ]
    );
}

fn project() -> Tree {
    T::new()
        .file("Cargo.toml", b"toml", 0o644)
        .dir("src", 0o750, 8)
        .file("src/main.rs", b"main", 0o644)
        .file("src/lib.rs", b"lib", 0o644)
        .file("src/notes.txt", b"notes", 0o644)
        .dir("target", 0o700, 3)
        .dir("target/debug", 0o755, 3)
        .file("target/debug/app", b"app", 0o755)
        .dir("docs", 0o711, 4)
        .file("docs/keep.md", b"keep", 0o644)
        .file("docs/other.md", b"other", 0o644)
        .tree()
}

#[test]
fn filter_exclude_contents_keeps_the_empty_directory() {
    let w = WithDirectory::new("/app").exclude("target/**");
    let out = wd(&Tree::new(), &project(), w).unwrap();
    assert_tree(
        &out,
        &[
            "app dir 0755 0:0 @1000",
            "app/Cargo.toml file 0644 0:0 @100 'toml'",
            "app/docs dir 0711 0:0 @4",
            "app/docs/keep.md file 0644 0:0 @100 'keep'",
            "app/docs/other.md file 0644 0:0 @100 'other'",
            "app/src dir 0750 0:0 @8",
            "app/src/lib.rs file 0644 0:0 @100 'lib'",
            "app/src/main.rs file 0644 0:0 @100 'main'",
            "app/src/notes.txt file 0644 0:0 @100 'notes'",
            "app/target dir 0700 0:0 @3",
        ],
    );
    // copy of the source root with the same filter: the same tree.
    let c = CopyOp {
        exclude: vec!["target/**".into()],
        ..CopyOp::new("/", "/app")
    };
    assert_same(&cp(&Tree::new(), &project(), c).unwrap(), &out);
}

#[test]
fn filter_exception_brings_its_excluded_parent() {
    let w = WithDirectory::new("/")
        .exclude("docs")
        .exclude("!docs/keep.md")
        .exclude("target");
    let out = wd(&Tree::new(), &project(), w).unwrap();
    assert_tree(
        &out,
        &[
            "Cargo.toml file 0644 0:0 @100 'toml'",
            "docs dir 0711 0:0 @4",
            "docs/keep.md file 0644 0:0 @100 'keep'",
            "src dir 0750 0:0 @8",
            "src/lib.rs file 0644 0:0 @100 'lib'",
            "src/main.rs file 0644 0:0 @100 'main'",
            "src/notes.txt file 0644 0:0 @100 'notes'",
        ],
    );
}

#[test]
fn filter_include_only_some_files() {
    let w = WithDirectory::new("/").include("src/*.rs").include("docs");
    let out = wd(&Tree::new(), &project(), w).unwrap();
    assert_tree(
        &out,
        &[
            "docs dir 0711 0:0 @4",
            "docs/keep.md file 0644 0:0 @100 'keep'",
            "docs/other.md file 0644 0:0 @100 'other'",
            "src dir 0750 0:0 @8",
            "src/lib.rs file 0644 0:0 @100 'lib'",
            "src/main.rs file 0644 0:0 @100 'main'",
        ],
    );
    // Patterns are relative to source_path; P takes source_path's metadata.
    let w = WithDirectory::new("/s").source_path("/src").include("*.rs");
    let out = wd(&Tree::new(), &project(), w).unwrap();
    assert_tree(
        &out,
        &[
            "s dir 0750 0:0 @8",
            "s/lib.rs file 0644 0:0 @100 'lib'",
            "s/main.rs file 0644 0:0 @100 'main'",
        ],
    );
}

// ---------------------------------------------------------------------------
// with_file.

#[test]
fn with_file_into_existing_directory_under_source_name() {
    let base = T::new().dir_m("bin", 0o700, (1, 1), 5).tree();
    let src = T::new()
        .file_m("build/out/tool", b"T", 0o755, (2, 2), 9)
        .tree();
    let out = wf(&base, &src, WithFile::new("/bin", "/build/out/tool")).unwrap();
    assert_tree(
        &out,
        &["bin dir 0700 1:1 @5", "bin/tool file 0755 2:2 @9 'T'"],
    );
    // Into the root.
    let out = wf(&Tree::new(), &src, WithFile::new("/", "/build/out/tool")).unwrap();
    assert_tree(&out, &["tool file 0755 2:2 @9 'T'"]);
    // A missing path: the file takes that name.
    let out = wf(&base, &src, WithFile::new("/bin/t2", "/build/out/tool")).unwrap();
    assert_eq!(line(&out, "bin/t2"), "bin/t2 file 0755 2:2 @9 'T'");
}

#[test]
fn with_file_onto_symlink_writes_its_target() {
    let base = T::new()
        .dir("etc", 0o755, 5)
        .file("etc/real", b"old", 0o600)
        .symlink("etc/link", "real")
        .symlink("etc/dangling", "made")
        .tree();
    let out = wf(&base, &src_f(), WithFile::new("/etc/link", "/f")).unwrap();
    assert_tree(
        &out,
        &[
            "etc dir 0755 0:0 @5",
            "etc/dangling symlink 0777 0:0 @100 -> made",
            "etc/link symlink 0777 0:0 @100 -> real",
            "etc/real file 0644 0:0 @100 'F'",
        ],
    );
    let out = wf(&base, &src_f(), WithFile::new("/etc/dangling", "/f")).unwrap();
    assert_eq!(
        line(&out, "etc/dangling"),
        "etc/dangling symlink 0777 0:0 @100 -> made"
    );
    assert_eq!(line(&out, "etc/made"), "etc/made file 0644 0:0 @100 'F'");
}

#[test]
fn with_file_replaces_a_directory_at_the_final_path() {
    let base = T::new()
        .dir("bin", 0o755, 5)
        .dir("bin/tool", 0o755, 5)
        .file("bin/tool/x", b"x", 0o644)
        .dir("bin/tool/y", 0o755, 5)
        .tree();
    let src = T::new().file("tool", b"T", 0o755).tree();
    let out = wf(&base, &src, WithFile::new("/bin", "/tool")).unwrap();
    assert_tree(
        &out,
        &["bin dir 0755 0:0 @5", "bin/tool file 0755 0:0 @100 'T'"],
    );
}

#[test]
fn with_file_follows_source_symlink_keeping_the_link_name() {
    let base = T::new().dir("bin", 0o755, 5).tree();
    let src = T::new()
        .file_m("real-1.2", b"R", 0o755, (2, 2), 9)
        .symlink("tool", "real-1.2")
        .symlink("dl", "d")
        .file("d/f", b"DF", 0o600)
        .tree();
    let out = wf(&base, &src, WithFile::new("/bin", "/tool")).unwrap();
    assert_tree(
        &out,
        &["bin dir 0755 0:0 @5", "bin/tool file 0755 2:2 @9 'R'"],
    );
    // A symlink among the parents of source_path is followed too.
    let out = wf(&base, &src, WithFile::new("/bin", "/dl/f")).unwrap();
    assert_eq!(line(&out, "bin/f"), "bin/f file 0600 0:0 @100 'DF'");
}

#[test]
fn with_file_of_a_non_regular_file_is_an_error() {
    let src = T::new()
        .dir("d", 0o755, 5)
        .fifo("p")
        .symlink("dang", "nowhere")
        .symlink("dl", "d")
        .tree();
    for sp in ["/d", "/p", "/dang", "/dl", "/missing"] {
        assert!(
            wf(&Tree::new(), &src, WithFile::new("/x", sp)).is_err(),
            "{sp}"
        );
    }
}

#[test]
fn with_directory_and_with_file_replace_a_non_directory_parent() {
    let base = T::new().file_m("opt", b"o", 0o600, (4, 4), 4).tree();
    let out = wd(&base, &src_f(), WithDirectory::new("/opt/app")).unwrap();
    assert_tree(
        &out,
        &[
            "opt dir 0755 0:0 @1000",
            "opt/app dir 0755 0:0 @1000",
            "opt/app/f file 0644 0:0 @100 'F'",
        ],
    );
    let out = wf(&base, &src_f(), WithFile::new("/opt/g", "/f")).unwrap();
    assert_tree(
        &out,
        &["opt dir 0755 0:0 @1000", "opt/g file 0644 0:0 @100 'F'"],
    );
    // copy, mkdir, mkfile and symlink fail instead.
    assert_err(
        cp(&base, &src_f(), CopyOp::new("/f", "/opt/g")),
        "not a directory",
    );
    let c = CopyOp {
        create_dest_path: true,
        ..CopyOp::new("/f", "/opt/g")
    };
    assert_err(cp(&base, &src_f(), c), "not a directory");
    assert_err(
        run_mkdir(&base, Mkdir::new("/opt/d").parents()),
        "not a directory",
    );
    assert_err(run_mkfile(&base, Mkfile::new("/opt/f")), "not a directory");
    assert_err(
        run_symlink(&base, Symlink::new("/opt/l", "x")),
        "not a directory",
    );
}

// ---------------------------------------------------------------------------
// copy.

#[test]
fn copy_src_resolution_and_follow_symlinks() {
    let src = T::new()
        .file_m("file", b"F", 0o600, (0, 0), 9)
        .symlink("link", "file")
        .dir_m("d", 0o750, (3, 3), 42)
        .file("d/x", b"x", 0o644)
        .symlink("dl", "d")
        .symlink("dang", "nowhere")
        .tree();
    let none = Tree::new();
    let follow = |s: &str, d: &str| CopyOp {
        follow_symlinks: true,
        ..CopyOp::new(s, d)
    };
    assert_err(
        cp(&none, &src, CopyOp::new("/nope", "/out")),
        "no such file",
    );
    // A final symlink is copied as a symlink...
    assert_tree(
        &cp(&none, &src, CopyOp::new("/link", "/out")).unwrap(),
        &["out symlink 0777 0:0 @100 -> file"],
    );
    assert_tree(
        &cp(&none, &src, CopyOp::new("/dl", "/out")).unwrap(),
        &["out symlink 0777 0:0 @100 -> d"],
    );
    assert_tree(
        &cp(&none, &src, CopyOp::new("/dang", "/out")).unwrap(),
        &["out symlink 0777 0:0 @100 -> nowhere"],
    );
    // ... or followed with follow_symlinks.
    assert_tree(
        &cp(&none, &src, follow("/link", "/out")).unwrap(),
        &["out file 0600 0:0 @9 'F'"],
    );
    assert_tree(
        &cp(&none, &src, follow("/dl", "/out")).unwrap(),
        &["out dir 0750 3:3 @42", "out/x file 0644 0:0 @100 'x'"],
    );
    assert!(cp(&none, &src, follow("/dang", "/out")).is_err());
    // Inside a directory, the source keeps the name written in src.
    let base = T::new().dir("o", 0o755, 5).tree();
    assert_tree(
        &cp(&base, &src, follow("/link", "/o")).unwrap(),
        &["o dir 0755 0:0 @5", "o/link file 0600 0:0 @9 'F'"],
    );
    // A symlink among src's parents is followed.
    assert_tree(
        &cp(&none, &src, CopyOp::new("/dl/x", "/y")).unwrap(),
        &["y file 0644 0:0 @100 'x'"],
    );
}

#[test]
fn copy_wildcard_matches_are_copied_in_lexical_order() {
    let src = T::new()
        .file("d1/f", b"one", 0o644)
        .file("d10/f", b"ten", 0o644)
        .file("d2/f", b"two", 0o644)
        .tree();
    // d1, d10, d2: the last one copied wins.
    let out = cp(&Tree::new(), &src, wild("/d*/f", "/out/")).unwrap();
    assert_tree(
        &out,
        &["out dir 0755 0:0 @1000", "out/f file 0644 0:0 @100 'two'"],
    );
}

#[test]
fn copy_wildcard_star_never_crosses_a_slash() {
    let src = T::new()
        .file("a/x.txt", b"x", 0o644)
        .file("a/z.txt", b"z", 0o644)
        .file("a/b/y.txt", b"y", 0o644)
        .file("top.txt", b"t", 0o644)
        .tree();
    let none = Tree::new();
    let names = |t: &Tree| {
        listing(t)
            .into_iter()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&cp(&none, &src, wild("/a/*.txt", "/out/")).unwrap()),
        ["out", "out/x.txt", "out/z.txt"]
    );
    assert_eq!(
        names(&cp(&none, &src, wild("/*.txt", "/out/")).unwrap()),
        ["out", "out/top.txt"]
    );
    assert_eq!(
        names(&cp(&none, &src, wild("/*/*.txt", "/out/")).unwrap()),
        ["out", "out/x.txt", "out/z.txt"]
    );
    assert_eq!(
        names(&cp(&none, &src, wild("/a/?.txt", "/out/")).unwrap()),
        ["out", "out/x.txt", "out/z.txt"]
    );
    assert_eq!(
        names(&cp(&none, &src, wild("/a/[xy].txt", "/out/")).unwrap()),
        ["out", "out/x.txt"]
    );
}

#[test]
fn copy_wildcard_without_match() {
    let src = T::new().file("a/x.txt", b"x", 0o644).tree();
    let base = T::new().file("keep", b"k", 0o644).tree();
    assert_err(
        cp(&base, &src, wild("/a/*.md", "/out/")),
        "no source matches",
    );
    // allow_empty_wildcard: nothing at all happens, not even `out/`.
    let c = CopyOp {
        allow_empty_wildcard: true,
        create_dest_path: true,
        ..wild("/a/*.md", "/x/y/out/")
    };
    assert_same(&cp(&base, &src, c).unwrap(), &base);
    let c = CopyOp {
        allow_empty_wildcard: true,
        ..wild("/a/*.md", "/out/")
    };
    assert_same(&cp(&base, &src, c).unwrap(), &base);
}

#[test]
fn copy_wildcard_missing_prefix_is_always_an_error() {
    let src = T::new().file("a/x.txt", b"x", 0o644).tree();
    let c = CopyOp {
        allow_empty_wildcard: true,
        ..wild("/nope/*.txt", "/out/")
    };
    assert!(cp(&Tree::new(), &src, c).is_err());
    assert!(cp(&Tree::new(), &src, wild("/nope/sub/*.txt", "/out/")).is_err());
}

#[test]
fn copy_star_is_literal_without_allow_wildcard() {
    let src = T::new()
        .file("*.txt", b"literal", 0o644)
        .file("a.txt", b"a", 0o644)
        .tree();
    let out = cp(&Tree::new(), &src, CopyOp::new("/*.txt", "/out")).unwrap();
    assert_tree(&out, &["out file 0644 0:0 @100 'literal'"]);
    let src = T::new().file("a.txt", b"a", 0o644).tree();
    assert!(cp(&Tree::new(), &src, CopyOp::new("/*.txt", "/out")).is_err());
}

fn dir_src() -> Tree {
    T::new()
        .dir_m("d", 0o750, (3, 3), 42)
        .file("d/x", b"x", 0o644)
        .dir("d/sub", 0o700, 8)
        .file("d/sub/y", b"y", 0o644)
        .tree()
}

#[test]
fn copy_contents_only() {
    let c = CopyOp {
        contents_only: true,
        ..CopyOp::new("/d", "/out")
    };
    let out = cp(&Tree::new(), &dir_src(), c.clone()).unwrap();
    assert_tree(
        &out,
        &[
            "out dir 0750 3:3 @42",
            "out/sub dir 0700 0:0 @8",
            "out/sub/y file 0644 0:0 @100 'y'",
            "out/x file 0644 0:0 @100 'x'",
        ],
    );
    // Without contents_only, into an existing directory: under its own name.
    let base = T::new().dir("out", 0o711, 5).tree();
    let out = cp(&base, &dir_src(), CopyOp::new("/d", "/out")).unwrap();
    assert_tree(
        &out,
        &[
            "out dir 0711 0:0 @5",
            "out/d dir 0750 3:3 @42",
            "out/d/sub dir 0700 0:0 @8",
            "out/d/sub/y file 0644 0:0 @100 'y'",
            "out/d/x file 0644 0:0 @100 'x'",
        ],
    );
    // With it, into the same existing directory: the contents only.
    let out = cp(&base, &dir_src(), c).unwrap();
    assert_eq!(line(&out, "out"), "out dir 0711 0:0 @5");
    assert_eq!(line(&out, "out/x"), "out/x file 0644 0:0 @100 'x'");
    assert!(out.lookup(b"out/d").is_none());
}

#[test]
fn copy_of_src_root_is_like_contents_only() {
    let out = cp(&Tree::new(), &dir_src(), CopyOp::new("/", "/out")).unwrap();
    assert_tree(
        &out,
        &[
            "out dir 0755 0:0 @1000",
            "out/d dir 0750 3:3 @42",
            "out/d/sub dir 0700 0:0 @8",
            "out/d/sub/y file 0644 0:0 @100 'y'",
            "out/d/x file 0644 0:0 @100 'x'",
        ],
    );
    // Into an existing directory, and onto `/` (the same as a merge).
    let base = T::new()
        .dir("out", 0o711, 5)
        .file("keep", b"k", 0o644)
        .tree();
    let out = cp(&base, &dir_src(), CopyOp::new("/", "/out")).unwrap();
    assert_eq!(line(&out, "out"), "out dir 0711 0:0 @5");
    assert_eq!(line(&out, "out/d/x"), "out/d/x file 0644 0:0 @100 'x'");
    assert_same(
        &cp(&base, &dir_src(), CopyOp::new("/", "/")).unwrap(),
        &merged(&[&base, &dir_src()]),
    );
}

#[test]
fn copy_dest_with_trailing_slash_is_created() {
    let none = Tree::new();
    let out = cp(&none, &src_f(), CopyOp::new("/f", "/newdir/")).unwrap();
    assert_tree(
        &out,
        &[
            "newdir dir 0755 0:0 @1000",
            "newdir/f file 0644 0:0 @100 'F'",
        ],
    );
    assert_same(
        &cp(&none, &src_f(), CopyOp::new("/f", "/newdir/.")).unwrap(),
        &out,
    );
    // Without it, the source takes the name.
    assert_tree(
        &cp(&none, &src_f(), CopyOp::new("/f", "/newdir")).unwrap(),
        &["newdir file 0644 0:0 @100 'F'"],
    );
    // Only dest itself may be created: its parent must exist.
    assert!(cp(&none, &src_f(), CopyOp::new("/f", "/a/newdir/")).is_err());
    // A created dest/ takes the copy's overrides.
    let c = CopyOp {
        owner: Some(Owner::new(5, 5)),
        mode: Some(mode(0o700)),
        timestamp: Some(77),
        ..CopyOp::new("/f", "/nd/")
    };
    assert_tree(
        &cp(&none, &src_f(), c).unwrap(),
        &["nd dir 0700 5:5 @77", "nd/f file 0700 5:5 @77 'F'"],
    );
}

#[test]
fn copy_create_dest_path_parents_take_the_overrides() {
    let base = T::new().dir_m("a", 0o711, (1, 1), 3).tree();
    let c = CopyOp {
        create_dest_path: true,
        owner: Some(Owner::new(5, 5)),
        mode: Some(mode(0o700)),
        timestamp: Some(77),
        ..CopyOp::new("/f", "/a/b/c/g")
    };
    assert_tree(
        &cp(&base, &src_f(), c).unwrap(),
        &[
            "a dir 0711 1:1 @3",
            "a/b dir 0700 5:5 @77",
            "a/b/c dir 0700 5:5 @77",
            "a/b/c/g file 0700 5:5 @77 'F'",
        ],
    );
    let c = CopyOp {
        create_dest_path: true,
        ..CopyOp::new("/f", "/x/y/")
    };
    assert_tree(
        &cp(&Tree::new(), &src_f(), c).unwrap(),
        &[
            "x dir 0755 0:0 @1000",
            "x/y dir 0755 0:0 @1000",
            "x/y/f file 0644 0:0 @100 'F'",
        ],
    );
}

#[test]
fn copy_parent_missing_is_an_error() {
    assert!(cp(&Tree::new(), &src_f(), CopyOp::new("/f", "/a/b/g")).is_err());
    assert!(cp(&Tree::new(), &dir_src(), CopyOp::new("/d", "/a/b")).is_err());
    let c = CopyOp {
        contents_only: true,
        ..CopyOp::new("/d", "/a/b")
    };
    assert!(cp(&Tree::new(), &dir_src(), c).is_err());
}

#[test]
fn copy_file_onto_directory_is_a_type_conflict() {
    let src = T::new().file("f", b"new", 0o644).tree();
    let base = T::new()
        .dir("out", 0o755, 5)
        .dir("out/f", 0o755, 5)
        .file("out/f/old", b"o", 0o644)
        .tree();
    assert_err(
        cp(&base, &src, CopyOp::new("/f", "/out")),
        "cannot replace directory with file",
    );
    let c = CopyOp {
        replace_existing: true,
        ..CopyOp::new("/f", "/out")
    };
    assert_tree(
        &cp(&base, &src, c).unwrap(),
        &["out dir 0755 0:0 @5", "out/f file 0644 0:0 @100 'new'"],
    );
    // Nested: a file of the copied tree onto a directory.
    let src = T::new().dir("d", 0o750, 9).file("d/x", b"x", 0o644).tree();
    let base = T::new()
        .dir("o", 0o755, 5)
        .dir("o/d", 0o711, 5)
        .dir("o/d/x", 0o755, 5)
        .file("o/d/x/y", b"y", 0o644)
        .tree();
    assert_err(
        cp(&base, &src, CopyOp::new("/d", "/o")),
        "cannot replace directory with file",
    );
    let c = CopyOp {
        replace_existing: true,
        ..CopyOp::new("/d", "/o")
    };
    assert_tree(
        &cp(&base, &src, c).unwrap(),
        &[
            "o dir 0755 0:0 @5",
            "o/d dir 0711 0:0 @5",
            "o/d/x file 0644 0:0 @100 'x'",
        ],
    );
}

#[test]
fn copy_directory_onto_non_directory_is_a_type_conflict() {
    let src = T::new()
        .dir_m("d", 0o750, (3, 3), 42)
        .file("d/x", b"x", 0o644)
        .tree();
    let base = T::new()
        .dir("out", 0o755, 5)
        .file("out/d", b"o", 0o644)
        .file("g", b"g", 0o644)
        .symlink("out2/d", "/elsewhere")
        .dir("elsewhere", 0o700, 5)
        .tree();
    let replace = |s: &str, d: &str| CopyOp {
        replace_existing: true,
        ..CopyOp::new(s, d)
    };
    // Inside an existing directory, onto a file.
    assert!(cp(&base, &src, CopyOp::new("/d", "/out")).is_err());
    let out = cp(&base, &src, replace("/d", "/out")).unwrap();
    assert_eq!(line(&out, "out/d"), "out/d dir 0750 3:3 @42");
    assert_eq!(line(&out, "out/d/x"), "out/d/x file 0644 0:0 @100 'x'");
    // dest itself an existing file.
    assert!(cp(&base, &src, CopyOp::new("/d", "/g")).is_err());
    let out = cp(&base, &src, replace("/d", "/g")).unwrap();
    assert_eq!(line(&out, "g"), "g dir 0750 3:3 @42");
    assert_eq!(line(&out, "g/x"), "g/x file 0644 0:0 @100 'x'");
    // Inside a directory, onto a symlink: never followed, a type conflict.
    assert!(cp(&base, &src, CopyOp::new("/d", "/out2")).is_err());
    let out = cp(&base, &src, replace("/d", "/out2")).unwrap();
    assert_eq!(line(&out, "out2/d"), "out2/d dir 0750 3:3 @42");
    assert_eq!(line(&out, "elsewhere"), "elsewhere dir 0700 0:0 @5");
    assert!(out.lookup(b"elsewhere/x").is_none());
    // A file onto a file replaces it.
    let out = cp(&base, &src_f(), CopyOp::new("/f", "/g")).unwrap();
    assert_eq!(line(&out, "g"), "g file 0644 0:0 @100 'F'");
}

#[test]
fn copy_existing_top_level_directory_keeps_its_metadata_nested_ones_take_the_source() {
    let base = T::new()
        .dir_m("out", 0o700, (1, 1), 5)
        .dir_m("out/sub", 0o700, (1, 1), 5)
        .file("out/keep", b"k", 0o644)
        .tree();
    let src = T::new()
        .dir_m("d", 0o755, (2, 2), 9)
        .dir_m("d/sub", 0o750, (2, 2), 9)
        .file("d/sub/n", b"n", 0o644)
        .file("d/x", b"x", 0o644)
        .tree();
    let c = CopyOp {
        contents_only: true,
        ..CopyOp::new("/d", "/out")
    };
    assert_tree(
        &cp(&base, &src, c.clone()).unwrap(),
        &[
            "out dir 0700 1:1 @5",
            "out/keep file 0644 0:0 @100 'k'",
            "out/sub dir 0750 2:2 @9",
            "out/sub/n file 0644 0:0 @100 'n'",
            "out/x file 0644 0:0 @100 'x'",
        ],
    );
    // With an owner: the top-level directory still keeps its metadata.
    let c = CopyOp {
        owner: Some(Owner::new(7, 7)),
        ..c
    };
    assert_tree(
        &cp(&base, &src, c).unwrap(),
        &[
            "out dir 0700 1:1 @5",
            "out/keep file 0644 0:0 @100 'k'",
            "out/sub dir 0750 7:7 @9",
            "out/sub/n file 0644 7:7 @100 'n'",
            "out/x file 0644 7:7 @100 'x'",
        ],
    );
    // Not contents_only: the top-level directory is dest/d.
    let base = T::new()
        .dir("o", 0o755, 5)
        .dir_m("o/d", 0o700, (1, 1), 5)
        .dir_m("o/d/sub", 0o700, (1, 1), 5)
        .tree();
    assert_tree(
        &cp(&base, &src, CopyOp::new("/d", "/o")).unwrap(),
        &[
            "o dir 0755 0:0 @5",
            "o/d dir 0700 1:1 @5",
            "o/d/sub dir 0750 2:2 @9",
            "o/d/sub/n file 0644 0:0 @100 'n'",
            "o/d/x file 0644 0:0 @100 'x'",
        ],
    );
}

#[test]
fn copy_keeps_symlinks_inside_the_copied_tree() {
    let src = T::new()
        .dir("d", 0o755, 9)
        .symlink("d/rel", "../../etc/passwd")
        .symlink("d/abs", "/etc")
        .file("d/f", b"f", 0o644)
        .tree();
    let base = T::new().dir("etc", 0o700, 5).tree();
    assert_tree(
        &cp(&base, &src, CopyOp::new("/d", "/out")).unwrap(),
        &[
            "etc dir 0700 0:0 @5",
            "out dir 0755 0:0 @9",
            "out/abs symlink 0777 0:0 @100 -> /etc",
            "out/f file 0644 0:0 @100 'f'",
            "out/rel symlink 0777 0:0 @100 -> ../../etc/passwd",
        ],
    );
}

#[test]
fn copy_never_follows_an_existing_symlink_inside_dest() {
    let base = T::new()
        .dir("out", 0o755, 5)
        .symlink("out/x", "/victim")
        .dir("victim", 0o700, 5)
        .file("victim/keep", b"k", 0o644)
        .tree();
    let src = T::new()
        .dir("d", 0o755, 9)
        .file("d/x", b"new", 0o644)
        .dir("e", 0o755, 9)
        .dir("e/x", 0o755, 9)
        .file("e/x/y", b"y", 0o644)
        .tree();
    let contents = |s: &str| CopyOp {
        contents_only: true,
        ..CopyOp::new(s, "/out")
    };
    let want = [
        "out dir 0755 0:0 @5",
        "out/x file 0644 0:0 @100 'new'",
        "victim dir 0700 0:0 @5",
        "victim/keep file 0644 0:0 @100 'k'",
    ];
    // A file replaces the symlink.
    assert_tree(&cp(&base, &src, contents("/d")).unwrap(), &want);
    assert_tree(
        &cp(&base, &src, CopyOp::new("/d/x", "/out/")).unwrap(),
        &want,
    );
    // A directory onto it is a type conflict.
    assert!(cp(&base, &src, contents("/e")).is_err());
    // dest itself is resolved following symlinks: `/out/x` is `/victim`.
    let out = cp(&base, &src, CopyOp::new("/d/x", "/out/x")).unwrap();
    assert_eq!(
        line(&out, "out/x"),
        "out/x symlink 0777 0:0 @100 -> /victim"
    );
    assert_eq!(line(&out, "victim/x"), "victim/x file 0644 0:0 @100 'new'");
}

#[test]
fn copy_keeps_hardlinks_across_wildcard_matches() {
    let src = T::new()
        .file("a.txt", b"s", 0o644)
        .hardlink("a.txt", "b.txt")
        .file("c.txt", b"s", 0o644)
        .dir("sub", 0o755, 5)
        .hardlink("a.txt", "sub/d.txt")
        .tree();
    let none = Tree::new();
    assert_tree(
        &cp(&none, &src, wild("/*.txt", "/out/")).unwrap(),
        &[
            "out dir 0755 0:0 @1000",
            "out/a.txt file 0644 0:0 @100 's'",
            "out/b.txt file 0644 0:0 @100 's' link=out/a.txt",
            "out/c.txt file 0644 0:0 @100 's'",
        ],
    );
    // A file match and a directory match.
    assert_tree(
        &cp(&none, &src, wild("/[as]*", "/w/")).unwrap(),
        &[
            "w dir 0755 0:0 @1000",
            "w/a.txt file 0644 0:0 @100 's'",
            "w/sub dir 0755 0:0 @5",
            "w/sub/d.txt file 0644 0:0 @100 's' link=w/a.txt",
        ],
    );
    // Within one copied tree.
    assert_tree(
        &cp(&none, &src, CopyOp::new("/", "/all")).unwrap(),
        &[
            "all dir 0755 0:0 @1000",
            "all/a.txt file 0644 0:0 @100 's'",
            "all/b.txt file 0644 0:0 @100 's' link=all/a.txt",
            "all/c.txt file 0644 0:0 @100 's'",
            "all/sub dir 0755 0:0 @5",
            "all/sub/d.txt file 0644 0:0 @100 's' link=all/a.txt",
        ],
    );
}

#[test]
fn copy_filters_apply_to_directories_and_are_ignored_for_a_single_file() {
    let c = CopyOp {
        include: vec!["nothing".into()],
        exclude: vec!["f".into(), "*".into()],
        ..CopyOp::new("/f", "/g")
    };
    assert_tree(
        &cp(&Tree::new(), &src_f(), c).unwrap(),
        &["g file 0644 0:0 @100 'F'"],
    );
    let src = T::new()
        .dir("d", 0o755, 9)
        .file("d/a.log", b"l", 0o644)
        .file("d/b.rs", b"r", 0o644)
        .tree();
    let c = CopyOp {
        exclude: vec!["*.log".into()],
        ..CopyOp::new("/d", "/out")
    };
    assert_tree(
        &cp(&Tree::new(), &src, c).unwrap(),
        &["out dir 0755 0:0 @9", "out/b.rs file 0644 0:0 @100 'r'"],
    );
}

#[test]
fn copy_overrides_apply_to_every_copied_entry() {
    let src = T::new()
        .dir("d", 0o755, 9)
        .dir("d/sub", 0o700, 9)
        .file("d/sub/f", b"f", 0o644)
        .symlink("d/l", "sub")
        .tree();
    let c = CopyOp {
        owner: Some(Owner::new(5, 6)),
        mode: Some(mode(0o2750)),
        timestamp: Some(77),
        ..CopyOp::new("/d", "/out")
    };
    assert_tree(
        &cp(&Tree::new(), &src, c).unwrap(),
        &[
            "out dir 2750 5:6 @77",
            "out/l symlink 0777 5:6 @77 -> sub",
            "out/sub dir 2750 5:6 @77",
            "out/sub/f file 2750 5:6 @77 'f'",
        ],
    );
}

#[test]
fn copy_follow_symlinks_with_wildcard_keeps_the_match_name() {
    let src = T::new()
        .file_m("real", b"R", 0o600, (0, 0), 9)
        .symlink("l1", "real")
        .symlink("l2", "d")
        .dir("d", 0o750, 4)
        .file("d/x", b"x", 0o644)
        .tree();
    let c = CopyOp {
        follow_symlinks: true,
        ..wild("/l*", "/out/")
    };
    assert_tree(
        &cp(&Tree::new(), &src, c).unwrap(),
        &[
            "out dir 0755 0:0 @1000",
            "out/l1 file 0600 0:0 @9 'R'",
            "out/l2 dir 0750 0:0 @4",
            "out/l2/x file 0644 0:0 @100 'x'",
        ],
    );
    // Without follow_symlinks the matches are copied as symlinks.
    assert_tree(
        &cp(&Tree::new(), &src, wild("/l*", "/out/")).unwrap(),
        &[
            "out dir 0755 0:0 @1000",
            "out/l1 symlink 0777 0:0 @100 -> real",
            "out/l2 symlink 0777 0:0 @100 -> d",
        ],
    );
}

#[test]
fn copy_wildcard_never_descends_through_a_symlinked_directory() {
    let src = T::new()
        .symlink("l", "/hidden/real")
        .file("hidden/real/x.txt", b"x", 0o644)
        .tree();
    assert!(cp(&Tree::new(), &src, wild("/*/x.txt", "/out/")).is_err());
    let c = CopyOp {
        allow_empty_wildcard: true,
        ..wild("/*/x.txt", "/out/")
    };
    assert!(cp(&Tree::new(), &src, c).unwrap().is_empty());
}

#[test]
fn copy_dest_is_resolved_through_symlinks() {
    let base = T::new().dir("srv", 0o700, 5).symlink("opt", "/srv").tree();
    let out = cp(&base, &src_f(), CopyOp::new("/f", "/opt/g")).unwrap();
    assert_tree(
        &out,
        &[
            "opt symlink 0777 0:0 @100 -> /srv",
            "srv dir 0700 0:0 @5",
            "srv/g file 0644 0:0 @100 'F'",
        ],
    );
    let out = cp(&base, &src_f(), CopyOp::new("/f", "/opt")).unwrap();
    assert_eq!(line(&out, "srv/f"), "srv/f file 0644 0:0 @100 'F'");
}

// ---------------------------------------------------------------------------
// mkdir, mkfile, symlink, rm.

#[test]
fn mkdir_parents_take_the_op_metadata() {
    let base = T::new().dir_m("a", 0o711, (1, 1), 3).tree();
    let m = Mkdir::new("/a/b/c")
        .parents()
        .mode(mode(0o2700))
        .owner(Owner::new(5, 5))
        .timestamp(77);
    assert_tree(
        &run_mkdir(&base, m).unwrap(),
        &[
            "a dir 0711 1:1 @3",
            "a/b dir 2700 5:5 @77",
            "a/b/c dir 2700 5:5 @77",
        ],
    );
    assert_tree(
        &run_mkdir(&Tree::new(), Mkdir::new("/x")).unwrap(),
        &["x dir 0755 0:0 @1000"],
    );
    assert!(run_mkdir(&base, Mkdir::new("/a/b/c")).is_err());
}

#[test]
fn mkdir_on_an_existing_directory_changes_nothing() {
    let base = T::new()
        .dir_m("a", 0o711, (1, 1), 3)
        .file("a/f", b"f", 0o644)
        .symlink("l", "a")
        .tree();
    for m in [
        Mkdir::new("/a"),
        Mkdir::new("/a").parents(),
        Mkdir::new("/a")
            .mode(mode(0o700))
            .owner(Owner::new(5, 5))
            .timestamp(77),
        Mkdir::new("/a").parents().mode(mode(0o700)).timestamp(77),
        Mkdir::new("/l"),
        Mkdir::new("/"),
    ] {
        assert_same(&run_mkdir(&base, m).unwrap(), &base);
    }
}

#[test]
fn mkdir_on_an_existing_non_directory_is_an_error() {
    let base = T::new()
        .file("f", b"f", 0o644)
        .symlink("lf", "f")
        .fifo("p")
        .tree();
    for p in ["/f", "/lf", "/p"] {
        assert!(run_mkdir(&base, Mkdir::new(p)).is_err(), "{p}");
        assert!(
            run_mkdir(&base, Mkdir::new(p).parents()).is_err(),
            "{p} with parents"
        );
    }
}

#[test]
fn mkdir_through_a_dangling_symlink_creates_its_target() {
    let base = T::new()
        .symlink("l", "real")
        .symlink("l2", "/data/real")
        .tree();
    assert_tree(
        &run_mkdir(&base, Mkdir::new("/l").mode(mode(0o700))).unwrap(),
        &[
            "l symlink 0777 0:0 @100 -> real",
            "l2 symlink 0777 0:0 @100 -> /data/real",
            "real dir 0700 0:0 @1000",
        ],
    );
    assert!(run_mkdir(&base, Mkdir::new("/l2")).is_err());
    assert_tree(
        &run_mkdir(&base, Mkdir::new("/l2").parents().mode(mode(0o700))).unwrap(),
        &[
            "data dir 0700 0:0 @1000",
            "data/real dir 0700 0:0 @1000",
            "l symlink 0777 0:0 @100 -> real",
            "l2 symlink 0777 0:0 @100 -> /data/real",
        ],
    );
}

fn mkfile_base() -> Tree {
    T::new()
        .dir_m("etc", 0o700, (1, 1), 5)
        .file_m("etc/a", b"old", 0o600, (2, 2), 5)
        .hardlink("etc/a", "etc/b")
        .symlink("etc/c", "a")
        .symlink("etc/dang", "made")
        .dir("etc/sub", 0o755, 5)
        .tree()
}

#[test]
fn mkfile_writes_a_new_inode() {
    let out = run_mkfile(&mkfile_base(), Mkfile::new("/etc/a").data("new")).unwrap();
    assert_tree(
        &out,
        &[
            "etc dir 0700 1:1 @5",
            "etc/a file 0644 0:0 @1000 'new'",
            "etc/b file 0600 2:2 @5 'old'",
            "etc/c symlink 0777 0:0 @100 -> a",
            "etc/dang symlink 0777 0:0 @100 -> made",
            "etc/sub dir 0755 0:0 @5",
        ],
    );
    // Through a symlink to a file: a new file at its target, the link kept.
    let m = Mkfile::new("/etc/c")
        .data("v")
        .mode(mode(0o4755))
        .owner(Owner::new(3, 4))
        .timestamp(9);
    let out = run_mkfile(&mkfile_base(), m).unwrap();
    assert_eq!(line(&out, "etc/a"), "etc/a file 4755 3:4 @9 'v'");
    assert_eq!(line(&out, "etc/b"), "etc/b file 0600 2:2 @5 'old'");
    assert_eq!(line(&out, "etc/c"), "etc/c symlink 0777 0:0 @100 -> a");
    // Through a dangling symlink: creates the target.
    let out = run_mkfile(&mkfile_base(), Mkfile::new("/etc/dang")).unwrap();
    assert_eq!(line(&out, "etc/made"), "etc/made file 0644 0:0 @1000 ''");
    assert_eq!(
        line(&out, "etc/dang"),
        "etc/dang symlink 0777 0:0 @100 -> made"
    );
}

#[test]
fn mkfile_errors() {
    let base = T(mkfile_base())
        .symlink("etc/far", "/nodir/x")
        .symlink("etc/ds", "sub")
        .tree();
    for p in [
        "/etc/sub", "/etc/ds", "/nope/f", "/etc/a/f", "/", "/etc/far",
    ] {
        assert!(run_mkfile(&base, Mkfile::new(p).data("x")).is_err(), "{p}");
    }
}

#[test]
fn symlink_creates_a_link_and_never_replaces() {
    let base = T::new()
        .dir("etc", 0o700, 5)
        .file("etc/f", b"f", 0o644)
        .symlink("etc/dang", "nowhere")
        .symlink("e", "etc")
        .tree();
    let out = run_symlink(&base, Symlink::new("/etc/l", "../x")).unwrap();
    assert_eq!(line(&out, "etc/l"), "etc/l symlink 0777 0:0 @1000 -> ../x");
    let s = Symlink {
        owner: Some(Owner::new(5, 5)),
        timestamp: Some(77),
        ..Symlink::new("/e/l2", "t")
    };
    let out = run_symlink(&base, s).unwrap();
    assert_eq!(line(&out, "etc/l2"), "etc/l2 symlink 0777 5:5 @77 -> t");
    assert_eq!(line(&out, "etc"), "etc dir 0700 0:0 @5");
    for p in ["/etc/f", "/etc", "/etc/dang", "/e", "/nope/l", "/"] {
        assert!(run_symlink(&base, Symlink::new(p, "x")).is_err(), "{p}");
    }
}

fn rm_base() -> Tree {
    T::new()
        .dir("d", 0o750, 5)
        .file("d/x", b"x", 0o644)
        .dir("d/sub", 0o755, 5)
        .file("d/sub/y", b"y", 0o644)
        .symlink("l", "d")
        .symlink("dl", "nowhere")
        .tree()
}

#[test]
fn rm_removes_the_entry_itself() {
    let base = rm_base();
    // A symlink, not its target.
    assert_tree(
        &run_rm(&base, Rm::new("/l")).unwrap(),
        &[
            "d dir 0750 0:0 @5",
            "d/sub dir 0755 0:0 @5",
            "d/sub/y file 0644 0:0 @100 'y'",
            "d/x file 0644 0:0 @100 'x'",
            "dl symlink 0777 0:0 @100 -> nowhere",
        ],
    );
    // Parents are resolved through symlinks.
    let out = run_rm(&base, Rm::new("/l/x")).unwrap();
    assert!(out.lookup(b"d/x").is_none());
    assert_eq!(line(&out, "l"), "l symlink 0777 0:0 @100 -> d");
    assert_eq!(line(&out, "d"), "d dir 0750 0:0 @5");
    // A dangling symlink; a directory, recursively.
    assert!(run_rm(&base, Rm::new("/dl"))
        .unwrap()
        .lookup(b"dl")
        .is_none());
    assert_tree(
        &run_rm(&base, Rm::new("/d")).unwrap(),
        &[
            "dl symlink 0777 0:0 @100 -> nowhere",
            "l symlink 0777 0:0 @100 -> d",
        ],
    );
    // Not the root.
    assert!(run_rm(&base, Rm::new("/")).is_err());
}

#[test]
fn rm_missing_path() {
    let base = rm_base();
    assert!(run_rm(&base, Rm::new("/nope")).is_err());
    assert!(run_rm(&base, Rm::new("/nope/deeper")).is_err());
    assert_same(
        &run_rm(&base, Rm::new("/nope").allow_not_found()).unwrap(),
        &base,
    );
    assert_same(
        &run_rm(&base, Rm::new("/nope/deeper").allow_not_found()).unwrap(),
        &base,
    );
    assert_same(
        &run_rm(&base, Rm::new("/dl/x").allow_not_found()).unwrap(),
        &base,
    );
}

fn rm_wild_base() -> Tree {
    T::new()
        .dir("a", 0o755, 5)
        .dir("a/d", 0o755, 5)
        .file("a/d/x.log", b"x", 0o644)
        .file("a/d/y.txt", b"y", 0o644)
        .symlink("a/d/s.log", "/real/w.log")
        .dir("a/e", 0o755, 5)
        .file("a/e/z.log", b"z", 0o644)
        .symlink("a/l", "/real")
        .dir("real", 0o755, 5)
        .file("real/w.log", b"w", 0o644)
        .tree()
}

#[test]
fn rm_wildcard_never_goes_through_a_symlinked_directory() {
    let base = rm_wild_base();
    let out = run_rm(&base, Rm::new("/a/*/*.log").allow_wildcard()).unwrap();
    assert_tree(
        &out,
        &[
            "a dir 0755 0:0 @5",
            "a/d dir 0755 0:0 @5",
            "a/d/y.txt file 0644 0:0 @100 'y'",
            "a/e dir 0755 0:0 @5",
            "a/l symlink 0777 0:0 @100 -> /real",
            "real dir 0755 0:0 @5",
            "real/w.log file 0644 0:0 @100 'w'",
        ],
    );
    // A match that is a symlink is removed itself.
    let out = run_rm(&base, Rm::new("/a/*").allow_wildcard()).unwrap();
    assert_tree(
        &out,
        &[
            "a dir 0755 0:0 @5",
            "real dir 0755 0:0 @5",
            "real/w.log file 0644 0:0 @100 'w'",
        ],
    );
    // Without allow_wildcard, `*` is literal.
    assert!(run_rm(&base, Rm::new("/a/*")).is_err());
}

#[test]
fn rm_wildcard_zero_matches_is_fine() {
    let base = rm_wild_base();
    for p in [
        "/a/*/*.none",
        "/missing/*.log",
        "/a/d/y.txt/*",
        "/a/missing/x/*",
    ] {
        assert_same(&run_rm(&base, Rm::new(p).allow_wildcard()).unwrap(), &base);
    }
}

#[test]

fn rm_allow_wildcard_on_a_plain_path_removes_it() {
    // SPEC: with allow_wildcard "the path is matched as a copy wildcard is"; a
    // path without `*?[` matches itself (BuildKit: ResolveWildcards / Glob
    // returns the existing path), and rm removes the entry itself.
    let base = rm_wild_base();
    let out = run_rm(&base, Rm::new("/a/d/y.txt").allow_wildcard()).unwrap();
    assert!(out.lookup(b"a/d/y.txt").is_none(), "{:#?}", listing(&out));
    let out = run_rm(&base, Rm::new("/a/l").allow_wildcard()).unwrap();
    assert!(out.lookup(b"a/l").is_none(), "{:#?}", listing(&out));
    assert_eq!(
        line(&out, "real/w.log"),
        "real/w.log file 0644 0:0 @100 'w'"
    );
}

// ---------------------------------------------------------------------------
// merge and diff.

fn del_a() -> Tree {
    T::new()
        .file("a", b"a", 0o644)
        .file("b", b"b", 0o644)
        .dir("d", 0o755, 5)
        .file("d/x", b"x", 0o644)
        .file("d/y", b"y", 0o644)
        .tree()
}

fn del_b() -> Tree {
    T::new()
        .file("a", b"a", 0o644)
        .dir("d", 0o755, 5)
        .file("d/y", b"y", 0o644)
        .tree()
}

#[test]
fn merge_applies_the_deletions_of_a_diff_layer() {
    let d = diff(&del_a(), &del_b());
    assert!(d.is_diff);
    assert_eq!(deletions(&d), ["b", "d/x"]);
    assert_tree(&d, &[]);
    let c = T(del_a()).file("c", b"c", 0o644).tree();
    assert_tree(
        &merged(&[&c, &d]),
        &[
            "a file 0644 0:0 @100 'a'",
            "c file 0644 0:0 @100 'c'",
            "d dir 0755 0:0 @5",
            "d/y file 0644 0:0 @100 'y'",
        ],
    );
}

#[test]
fn a_deletion_under_a_symlink_or_missing_does_nothing() {
    let d = diff(&del_a(), &del_b());
    let e = T::new()
        .symlink("d", "e")
        .dir("e", 0o755, 5)
        .file("e/x", b"x", 0o644)
        .file("b", b"b", 0o644)
        .tree();
    assert_tree(
        &merged(&[&e, &d]),
        &[
            "d symlink 0777 0:0 @100 -> e",
            "e dir 0755 0:0 @5",
            "e/x file 0644 0:0 @100 'x'",
        ],
    );
    // Missing: no error, no parent created.
    let f = T::new().file("z", b"z", 0o644).tree();
    assert_same(&merged(&[&f, &d]), &f);
    // Under a file.
    let g = T::new().file("d", b"d", 0o644).tree();
    assert_same(&merged(&[&g, &d]), &g);
}

#[test]
fn structural_parents_keep_the_metadata_already_there() {
    let a = T::new()
        .dir("etc", 0o755, 5)
        .file("etc/a", b"a", 0o644)
        .tree();
    let b = T(a.clone()).file("etc/b", b"b", 0o644).tree();
    let d = diff(&a, &b);
    assert_tree(&d, &["etc dir 0755 0:0 @5", "etc/b file 0644 0:0 @100 'b'"]);
    assert!(d.node(d.lookup(b"etc").unwrap()).structural);
    // The merge base has etc: its metadata stays.
    let c = T::new()
        .dir_m("etc", 0o700, (1, 1), 3)
        .file("etc/c", b"c", 0o644)
        .tree();
    assert_tree(
        &merged(&[&c, &d]),
        &[
            "etc dir 0700 1:1 @3",
            "etc/b file 0644 0:0 @100 'b'",
            "etc/c file 0644 0:0 @100 'c'",
        ],
    );
    // The merge base lacks it, or has a non-directory: upper's metadata.
    let expected = ["etc dir 0755 0:0 @5", "etc/b file 0644 0:0 @100 'b'"];
    assert_tree(&merged(&[&Tree::new(), &d]), &expected);
    let f = T::new().file("etc", b"f", 0o644).tree();
    assert_tree(&merged(&[&f, &d]), &expected);
    // Anywhere but directly in a merge a diff is its exported tree: placed
    // by with_directory, the parent's metadata is written.
    assert_tree(
        &wd(&c, &d, WithDirectory::new("/")).unwrap(),
        &[
            "etc dir 0755 0:0 @5",
            "etc/b file 0644 0:0 @100 'b'",
            "etc/c file 0644 0:0 @100 'c'",
        ],
    );
}

#[test]
fn a_diff_deletes_only_directly_in_a_merge() {
    let x = T::new()
        .file("a", b"xa", 0o644)
        .file("k", b"k", 0o644)
        .tree();
    let y = T::new().file("a", b"ya", 0o644).tree();
    let gone = diff(&y, &Tree::new());
    assert_eq!(deletions(&gone), ["a"]);
    // merge[X, merge[Y, diff(Y, scratch)]] is X.
    let inner = merged(&[&y, &gone]);
    assert!(inner.is_empty());
    assert_same(&merged(&[&x, &inner]), &x);
    // As the source of a with_directory it deletes nothing.
    assert_same(&wd(&x, &gone, WithDirectory::new("/")).unwrap(), &x);
}

#[test]

fn a_file_op_on_a_diff_base_gives_a_plain_tree() {
    // SPEC fine point: "A diff deletes only where it is directly an input of
    // a merge; anywhere else (a base, ...) it is just its exported tree".
    // The solver runs a file op on a clone of its base's tree (store.prepare)
    // and commits the result as it is, `is_diff` and `deletions` included.
    let a = T::new()
        .dir("etc", 0o755, 5)
        .file("etc/a", b"a", 0o644)
        .file("gone", b"g", 0o644)
        .tree();
    let b = T::new()
        .dir("etc", 0o755, 5)
        .file("etc/a", b"a", 0o644)
        .file("etc/b", b"b", 0o644)
        .tree();
    let d = diff(&a, &b);
    assert_eq!(deletions(&d), ["gone"]);
    let t = run_mkfile(&d, Mkfile::new("/z").data("z")).unwrap();
    let x = T::new()
        .dir_m("etc", 0o700, (1, 1), 3)
        .file("gone", b"kept", 0o644)
        .tree();
    assert_tree(
        &merged(&[&x, &t]),
        &[
            "etc dir 0755 0:0 @5",
            "etc/b file 0644 0:0 @100 'b'",
            "gone file 0644 0:0 @100 'kept'",
            "z file 0644 0:0 @1000 'z'",
        ],
    );
}

/// `merge[A, diff(A, B)] == B`, both ways.
#[track_caller]
fn roundtrip(a: &Tree, b: &Tree) {
    for (x, y) in [(a, b), (b, a)] {
        let d = diff(x, y);
        assert_same(&merged(&[x, &d]), y);
    }
}

#[test]
fn merge_of_a_diff_gives_upper_type_changes() {
    // file -> dir
    roundtrip(
        &T::new().file("x", b"f", 0o644).tree(),
        &T::new().dir("x", 0o755, 5).file("x/y", b"y", 0o644).tree(),
    );
    // dir -> file
    roundtrip(
        &T::new()
            .dir("x", 0o755, 5)
            .file("x/y", b"y", 0o644)
            .dir("x/z", 0o755, 5)
            .file("x/z/w", b"w", 0o644)
            .tree(),
        &T::new().file("x", b"f", 0o644).tree(),
    );
    // symlink -> dir
    roundtrip(
        &T::new()
            .symlink("x", "y")
            .dir("y", 0o755, 5)
            .file("y/f", b"f", 0o644)
            .tree(),
        &T::new()
            .dir_m("x", 0o700, (1, 1), 6)
            .file("x/f", b"g", 0o644)
            .dir("y", 0o755, 5)
            .file("y/f", b"f", 0o644)
            .tree(),
    );
    // fifo -> file, symlink target, deep deletions next to additions
    roundtrip(
        &T::new()
            .fifo("p")
            .symlink("l", "x")
            .file("a/b/c/d", b"d", 0o644)
            .file("a/b/c/e", b"e", 0o644)
            .tree(),
        &T::new()
            .file("p", b"p", 0o644)
            .symlink("l", "y")
            .file("a/b/c/e", b"e", 0o644)
            .file("a/b/n", b"n", 0o644)
            .tree(),
    );
}

#[test]
fn merge_of_a_diff_gives_upper_metadata_changes() {
    // A directory whose only change is its mtime.
    let a = T::new().dir("d", 0o755, 5).file("d/f", b"f", 0o644).tree();
    let b = T::new().dir("d", 0o755, 6).file("d/f", b"f", 0o644).tree();
    assert_tree(&diff(&a, &b), &["d dir 0755 0:0 @6"]);
    roundtrip(&a, &b);
    // Mode, owner, mtime, xattrs of files and directories.
    roundtrip(
        &T::new()
            .dir("d", 0o755, 5)
            .file("d/f", b"f", 0o644)
            .file("g", b"g", 0o644)
            .xattr("g", "user.a", "1")
            .tree(),
        &T::new()
            .dir_m("d", 0o700, (1, 1), 5)
            .file_m("d/f", b"f", 0o600, (2, 2), 7)
            .file("g", b"g", 0o644)
            .xattr("g", "user.a", "2")
            .tree(),
    );
}

#[test]
fn merge_of_a_diff_gives_upper_hardlink_grouping() {
    // a+b linked, c alone  ->  a alone, b+c linked (same bytes, same metadata).
    let a = T::new()
        .file("a", b"s", 0o644)
        .hardlink("a", "b")
        .file("c", b"s", 0o644)
        .tree();
    let b = T::new()
        .file("a", b"s", 0o644)
        .file("b", b"s", 0o644)
        .hardlink("b", "c")
        .tree();
    let d = diff(&a, &b);
    assert_eq!(
        d.len(),
        3,
        "a grouping change is a change: {:#?}",
        listing(&d)
    );
    roundtrip(&a, &b);
    // Separate -> linked.
    roundtrip(
        &T::new()
            .file("a", b"s", 0o644)
            .file("b", b"s", 0o644)
            .tree(),
        &T::new().file("a", b"s", 0o644).hardlink("a", "b").tree(),
    );
    // An unchanged group next to a change.
    roundtrip(
        &T::new().file("h1", b"h", 0o644).hardlink("h1", "h2").tree(),
        &T::new()
            .file("h1", b"h", 0o644)
            .hardlink("h1", "h2")
            .file("n", b"n", 0o644)
            .tree(),
    );
    // A group whose content changed, every name of it.
    roundtrip(
        &T::new().file("h1", b"h", 0o644).hardlink("h1", "h2").tree(),
        &T::new()
            .file("h1", b"new", 0o644)
            .hardlink("h1", "h2")
            .tree(),
    );
    // One name of a group deleted, the other unchanged.
    roundtrip(
        &T::new().file("h1", b"h", 0o644).hardlink("h1", "h2").tree(),
        &T::new().file("h2", b"h", 0o644).tree(),
    );
}

#[test]
fn merge_of_a_diff_gives_upper_device_numbers() {
    let a = T::new().char_dev("dev/null", 0x103).tree();
    let b = T::new().char_dev("dev/null", 0x104).tree();
    assert_eq!(diff(&a, &b).len(), 2, "{:#?}", listing(&diff(&a, &b)));
    roundtrip(&a, &b);
}

#[test]
fn more_destination_and_source_resolution() {
    // with_directory onto a dangling symlink: its target is created.
    let base = T::new()
        .symlink("app", "srv/app")
        .dir("srv", 0o700, 5)
        .tree();
    let out = wd(&base, &src_f(), WithDirectory::new("/app")).unwrap();
    assert_tree(
        &out,
        &[
            "app symlink 0777 0:0 @100 -> srv/app",
            "srv dir 0700 0:0 @5",
            "srv/app dir 0755 0:0 @1000",
            "srv/app/f file 0644 0:0 @100 'F'",
        ],
    );
    // A wildcard's plain prefix is resolved through symlinks.
    let src = T::new()
        .symlink("dl", "d")
        .file("d/a.txt", b"a", 0o644)
        .tree();
    let out = cp(&Tree::new(), &src, wild("/dl/*.txt", "/out/")).unwrap();
    assert_eq!(line(&out, "out/a.txt"), "out/a.txt file 0644 0:0 @100 'a'");
    // mkdir parents through a symlink to a missing directory.
    let base = T::new().symlink("a", "x").tree();
    let out = run_mkdir(&base, Mkdir::new("/a/b").parents()).unwrap();
    assert_tree(
        &out,
        &[
            "a symlink 0777 0:0 @100 -> x",
            "x dir 0755 0:0 @1000",
            "x/b dir 0755 0:0 @1000",
        ],
    );
    // contents_only onto an existing non-directory: a type conflict.
    let base = T::new().file("out", b"o", 0o644).tree();
    let c = CopyOp {
        contents_only: true,
        ..CopyOp::new("/d", "/out")
    };
    assert!(cp(&base, &dir_src(), c.clone()).is_err());
    let c = CopyOp {
        replace_existing: true,
        ..c
    };
    assert_eq!(
        line(&cp(&base, &dir_src(), c).unwrap(), "out"),
        "out dir 0750 3:3 @42"
    );
    // contents_only of a file is a plain copy of the file.
    let c = CopyOp {
        contents_only: true,
        ..CopyOp::new("/f", "/g")
    };
    assert_tree(
        &cp(&Tree::new(), &src_f(), c).unwrap(),
        &["g file 0644 0:0 @100 'F'"],
    );
}

#[test]
fn diff_of_equal_trees_is_empty() {
    let a = del_a();
    for (x, y) in [(&a, &a), (&a, &del_a()), (&Tree::new(), &Tree::new())] {
        let d = diff(x, y);
        assert!(d.is_empty(), "{:#?}", listing(&d));
        assert!(d.deletions.is_empty());
    }
    let linked = T::new().file("a", b"s", 0o644).hardlink("a", "b").tree();
    let same = T::new().file("a", b"s", 0o644).hardlink("a", "b").tree();
    assert!(diff(&linked, &same).is_empty());
}

#[test]
fn diff_from_scratch_is_the_tree() {
    let x = T::new()
        .dir_m("d", 0o750, (1, 2), 3)
        .file("d/f", b"f", 0o644)
        .hardlink("d/f", "g")
        .symlink("l", "d")
        .fifo("p")
        .tree();
    let d = diff(&Tree::new(), &x);
    assert_eq!(manifest(&d), manifest(&x));
    assert!(d.deletions.is_empty());
}

#[test]
fn diff_to_scratch_deletes_every_top_level_entry() {
    let x = T::new()
        .dir("d", 0o755, 5)
        .file("d/f", b"f", 0o644)
        .symlink("l", "d")
        .file("a", b"a", 0o644)
        .tree();
    let d = diff(&x, &Tree::new());
    assert!(d.is_empty());
    assert_eq!(deletions(&d), ["a", "d", "l"]);
}

#[test]
fn each_placement_makes_new_files() {
    let x = T::new().file("f", b"F", 0o644).hardlink("f", "g").tree();
    let none = Tree::new();
    // The same source placed twice.
    let t = wd(&none, &x, WithDirectory::new("/a")).unwrap();
    let t = wd(&t, &x, WithDirectory::new("/b")).unwrap();
    assert_tree(
        &t,
        &[
            "a dir 0755 0:0 @1000",
            "a/f file 0644 0:0 @100 'F'",
            "a/g file 0644 0:0 @100 'F' link=a/f",
            "b dir 0755 0:0 @1000",
            "b/f file 0644 0:0 @100 'F'",
            "b/g file 0644 0:0 @100 'F' link=b/f",
        ],
    );
    // The base's own files placed again.
    let base = wd(&none, &x, WithDirectory::new("/a")).unwrap();
    assert_same(
        &wd(&base, &base, WithDirectory::new("/b").source_path("/a")).unwrap(),
        &t,
    );
    let c = cp(&base, &base, CopyOp::new("/a/f", "/c")).unwrap();
    assert_eq!(line(&c, "c"), "c file 0644 0:0 @100 'F'");
    // with_file twice.
    let t = wf(&none, &x, WithFile::new("/x", "/f")).unwrap();
    let t = wf(&t, &x, WithFile::new("/y", "/g")).unwrap();
    assert_tree(
        &t,
        &["x file 0644 0:0 @100 'F'", "y file 0644 0:0 @100 'F'"],
    );
    // One copy, two wildcard matches of the same group: one group (kept);
    // two copies: two groups.
    let t = cp(&none, &x, wild("/[fg]", "/w/")).unwrap();
    assert_eq!(line(&t, "w/g"), "w/g file 0644 0:0 @100 'F' link=w/f");
    let t = cp(&none, &x, CopyOp::new("/f", "/p")).unwrap();
    let t = cp(&t, &x, CopyOp::new("/g", "/q")).unwrap();
    assert_tree(
        &t,
        &["p file 0644 0:0 @100 'F'", "q file 0644 0:0 @100 'F'"],
    );
    // Two merge inputs holding one placement's result.
    let a = wd(&none, &x, WithDirectory::new("/a")).unwrap();
    let b = wd(&none, &a, WithDirectory::new("/b").source_path("/a")).unwrap();
    assert_same(&merged(&[&a, &b]), &t_ab());
}

fn t_ab() -> Tree {
    T::new()
        .dir("a", 0o755, 1000)
        .file("a/f", b"F", 0o644)
        .hardlink("a/f", "a/g")
        .dir("b", 0o755, 1000)
        .file("b/f", b"F", 0o644)
        .hardlink("b/f", "b/g")
        .tree()
}
