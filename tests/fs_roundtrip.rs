//! Scan and materialise real trees: a copy and a linked build must both give
//! the source's tree digest back, linked files must share the store's inodes
//! and keep their metadata, and failed links must fall back to copies.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use hardmerge::fs::materialize::{materialize, LinkPolicy};
use hardmerge::fs::scan::{scan, OriginKind, Owners, ScanOptions};
use hardmerge::tree::manifest::{manifest, tree_digest};
use hardmerge::tree::{Kind, Tree};
use nix::errno::Errno;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn p(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(rel))
}

/// Pseudo-random bytes.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// A source tree with most of what a tree can hold: files of several sizes,
/// nested and special-mode directories, symlinks of every sort, a hardlink
/// group, xattrs, odd names, a fifo, and (as root) devices, a socket and
/// foreign owners.
fn build_source(dir: &Path) {
    let w = |rel: &[u8], data: &[u8]| fs::write(p(dir, rel), data).unwrap();
    for d in [
        &b"d1"[..],
        b"d1/d2",
        b"d1/d2/d3",
        b"sticky",
        b"ro",
        b"sgid",
        b"empty_dir",
    ] {
        fs::create_dir(p(dir, d)).unwrap();
    }
    w(b"empty", b"");
    w(b"small.txt", b"hello");
    w(b"d1/medium.bin", &bytes(1, 100_000));
    w(b"d1/d2/d3/large.bin", &bytes(2, 1_500_000));
    w(b"ro/inside", b"read-only parent");
    w(b"sgid/f", b"x");
    w(b"new\nline", b"newline in the name");
    w(b"bad\xff\xfe", b"invalid utf-8 name");
    w(b"hl1", b"hardlinked");
    fs::hard_link(p(dir, b"hl1"), p(dir, b"d1/hl2")).unwrap();
    w(b"setuid", b"#!/bin/sh\n");
    fs::set_permissions(p(dir, b"setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    w(b"private", b"secret");
    fs::set_permissions(p(dir, b"private"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("small.txt", p(dir, b"link_rel")).unwrap();
    symlink("/etc/passwd", p(dir, b"link_abs")).unwrap();
    symlink("nowhere/at/all", p(dir, b"d1/dangling")).unwrap();
    symlink(OsStr::from_bytes(b"bad\xff\xfe"), p(dir, b"link_bad")).unwrap();
    nix::unistd::mkfifo(
        &p(dir, b"fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    xattr::set(p(dir, b"small.txt"), "user.note", b"a value\0with nul").unwrap();
    xattr::set(p(dir, b"d1"), "user.dir", b"on a dir").unwrap();
    if is_root() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        mknod(
            &p(dir, b"null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .unwrap();
        mknod(
            &p(dir, b"blk"),
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o660),
            makedev(7, 200),
        )
        .unwrap();
        mknod(
            &p(dir, b"sock"),
            SFlag::S_IFSOCK,
            Mode::from_bits_truncate(0o755),
            0,
        )
        .unwrap();
        std::os::unix::fs::lchown(p(dir, b"private"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(p(dir, b"link_rel"), Some(42), Some(43)).unwrap();
        std::os::unix::fs::lchown(p(dir, b"d1/d2"), Some(7), Some(8)).unwrap();
        xattr::set(p(dir, b"link_abs"), "trusted.sym", b"on a symlink").unwrap();
    }
    let mut t = 1_600_000_000;
    for rel in [
        &b"empty"[..],
        b"small.txt",
        b"d1/medium.bin",
        b"d1/d2/d3/large.bin",
        b"ro/inside",
        b"new\nline",
        b"bad\xff\xfe",
        b"hl1",
        b"link_rel",
        b"link_abs",
        b"d1/dangling",
        b"fifo",
    ] {
        t += 1001;
        set_mtime(&p(dir, rel), t, 123_456_789);
    }
    set_mtime(&p(dir, b"setuid"), -1000, 500_000_000); // before 1970
    fs::set_permissions(p(dir, b"sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(p(dir, b"sgid"), fs::Permissions::from_mode(0o2750)).unwrap();
    for (k, rel) in [
        &b"d1/d2/d3"[..],
        b"d1/d2",
        b"d1",
        b"sticky",
        b"sgid",
        b"empty_dir",
        b"ro",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p(dir, rel), 1_500_000_000 + k as i64 * 77, 999_999_999);
    }
    fs::set_permissions(p(dir, b"ro"), fs::Permissions::from_mode(0o555)).unwrap();
}

fn host_scan(dir: &Path) -> Tree {
    scan(dir, ScanOptions::default()).unwrap()
}

fn stored_scan(dir: &Path) -> Tree {
    scan(
        dir,
        ScanOptions {
            origin: OriginKind::Stored,
            ..ScanOptions::default()
        },
    )
    .unwrap()
}

/// Inode number of every regular file below `dir`, by path.
fn inodes(dir: &Path, tree: &Tree) -> HashMap<Vec<u8>, (u64, u64)> {
    tree.walk(Tree::ROOT)
        .into_iter()
        .filter(|(_, id)| matches!(tree.node(*id).kind, Kind::File(_)))
        .map(|(rel, _)| {
            let m = fs::symlink_metadata(p(dir, &rel)).unwrap();
            (
                rel,
                (
                    m.ino(),
                    m.ctime_nsec() as u64 + m.ctime() as u64 * 1_000_000_000,
                ),
            )
        })
        .collect()
}

#[test]
fn copy_roundtrip_keeps_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_source(&src);
    let mut tree = host_scan(&src);
    let digest = tree_digest(&tree);

    // what the scan saw
    let m = manifest(&tree);
    let get = |path: &str| {
        m.iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path}"))
    };
    assert_eq!(get("setuid").mode, "4755");
    assert_eq!(get("setuid").mtime, -1000);
    assert_eq!(get("sticky").mode, "1777");
    assert_eq!(get("sgid").mode, "2750");
    assert_eq!(get("ro").mode, "0555");
    assert_eq!(get("link_rel").mode, "0777");
    assert_eq!(get("link_rel").target.as_deref(), Some("small.txt"));
    assert_eq!(get("link_bad").target.as_deref(), Some("bad\\xff\\xfe"));
    assert_eq!(get("d1/hl2").link.as_deref(), None);
    assert_eq!(get("hl1").link.as_deref(), Some("d1/hl2"));
    assert_eq!(get("d1/d2/d3/large.bin").size, Some(1_500_000));
    assert_eq!(get("empty").size, Some(0));
    assert_eq!(get("small.txt").mtime, 1_600_000_000 + 1001 * 2);
    assert_eq!(get("d1").mtime, 1_500_000_000 + 2 * 77);
    assert_eq!(get("fifo").kind, "fifo");
    assert_eq!(get("new\nline").kind, "file");
    assert!(get("small.txt")
        .xattrs
        .as_ref()
        .unwrap()
        .contains_key("user.note"));
    assert!(get("d1").xattrs.as_ref().unwrap().contains_key("user.dir"));
    if is_root() {
        assert_eq!((get("private").uid, get("private").gid), (1234, 5678));
        assert_eq!((get("link_rel").uid, get("link_rel").gid), (42, 43));
        assert_eq!(get("null").rdev, Some(nix::sys::stat::makedev(1, 3)));
        assert_eq!(get("sock").kind, "socket");
        assert_eq!(get("blk").kind, "block");
    } else {
        eprintln!(
            "skipped (needs root): devices, sockets, owners and trusted xattrs in the round trip"
        );
    }

    let out = tmp.path().join("out");
    let done = materialize(&mut tree, &out, LinkPolicy::Never).unwrap();
    assert_eq!(done.files_linked, 0);
    assert_eq!(done.files_copied, 11); // hl1 and d1/hl2 are one inode
    assert!(done.fallbacks.is_empty());
    assert_eq!(
        done.bytes_copied,
        tree.inodes().iter().map(|i| i.size).sum::<u64>()
    );
    assert_eq!(tree_digest(&host_scan(&out)), digest);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    // hardlink group kept, phys recorded
    let a = fs::metadata(out.join("hl1")).unwrap();
    let b = fs::metadata(out.join("d1/hl2")).unwrap();
    assert_eq!(a.ino(), b.ino());
    for (rel, id) in tree.walk(Tree::ROOT) {
        if let Kind::File(i) = tree.node(id).kind {
            let m = fs::symlink_metadata(p(&out, &rel)).unwrap();
            assert_eq!(tree.inode(i).phys, Some((m.dev(), m.ino())));
        }
    }
    // a second export of the same tree: copies again, same digest
    let out2 = tmp.path().join("out2");
    materialize(&mut tree, &out2, LinkPolicy::Never).unwrap();
    assert_eq!(tree_digest(&host_scan(&out2)), digest);
}

#[test]
fn stored_tree_materialises_as_links() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    fs::create_dir(&a).unwrap();
    build_source(&a);
    let mut tree = stored_scan(&a);
    let digest = tree_digest(&tree);
    let before = inodes(&a, &tree);
    std::thread::sleep(std::time::Duration::from_millis(20));

    let b = tmp.path().join("b");
    let done = materialize(&mut tree, &b, LinkPolicy::AsTree).unwrap();
    assert_eq!(done.files_linked, 11);
    assert_eq!(done.files_copied, 0);
    assert_eq!(done.bytes_copied, 0);
    for (rel, (ino, _)) in &before {
        let m = fs::symlink_metadata(p(&b, rel)).unwrap();
        assert_eq!(m.ino(), *ino, "{}", String::from_utf8_lossy(rel));
    }
    assert_eq!(tree_digest(&host_scan(&b)), digest);
    // linking added links but never touched the stored files' metadata:
    // their ctime changed only by the link count, so compare everything else
    // through a fresh scan of A.
    assert_eq!(tree_digest(&stored_scan(&a)), digest);

    // Never copies; Always links even inodes whose link flag is unset.
    let c = tmp.path().join("c");
    let done = materialize(&mut tree, &c, LinkPolicy::Never).unwrap();
    assert_eq!((done.files_linked, done.files_copied), (0, 11));
    assert_eq!(tree_digest(&host_scan(&c)), digest);
    let mut unflagged = stored_scan(&a);
    let n = unflagged.inodes().len() as u32;
    for i in 0..n {
        unflagged.inode_mut(i).link = false;
    }
    let d = tmp.path().join("d");
    assert_eq!(
        materialize(&mut unflagged.clone(), &d, LinkPolicy::AsTree)
            .unwrap()
            .files_linked,
        0
    );
    let e = tmp.path().join("e");
    assert_eq!(
        materialize(&mut unflagged, &e, LinkPolicy::Always)
            .unwrap()
            .files_linked,
        11
    );
}

#[test]
fn linked_files_keep_their_metadata_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    fs::create_dir(&a).unwrap();
    fs::write(a.join("f"), b"data").unwrap();
    fs::set_permissions(a.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    set_mtime(&a.join("f"), 1_000_000, 0);
    let mut tree = stored_scan(&a);
    // Metadata in the tree that differs from the stored file's: had
    // materialize applied it to a linked file, it would show on the store.
    let i = match tree.node(tree.lookup(b"f").unwrap()).kind {
        Kind::File(i) => i,
        _ => unreachable!(),
    };
    let meta = &mut tree.inode_mut(i).meta;
    meta.mode = 0o600;
    meta.mtime = 5;
    meta.uid = 4321;
    meta.xattrs.insert(b"user.added".to_vec(), b"x".to_vec());
    let b = tmp.path().join("b");
    let done = materialize(&mut tree, &b, LinkPolicy::AsTree).unwrap();
    assert_eq!(done.files_linked, 1);
    let m = fs::metadata(a.join("f")).unwrap();
    assert_eq!(m.nlink(), 2);
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 1_000_000);
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    assert!(xattr::get(a.join("f"), "user.added").unwrap().is_none());
    // link(2) itself moves the stored file's ctime (its link count
    // changed); a copy export leaves it alone entirely.
    let before = (m.ctime(), m.ctime_nsec());
    std::thread::sleep(std::time::Duration::from_millis(30));
    let c = tmp.path().join("c");
    materialize(&mut tree, &c, LinkPolicy::Never).unwrap();
    let m = fs::metadata(a.join("f")).unwrap();
    assert_eq!((m.ctime(), m.ctime_nsec()), before);
    assert_eq!(fs::metadata(c.join("f")).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn two_placements_of_one_stored_file_are_two_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    fs::create_dir_all(a.join("sub")).unwrap();
    fs::write(a.join("sub/f"), b"shared").unwrap();
    fs::hard_link(a.join("sub/f"), a.join("sub/g")).unwrap();
    fs::write(a.join("sub/h"), b"alone").unwrap();
    let src = stored_scan(&a);
    let sub = src.lookup(b"sub").unwrap();

    let mut tree = Tree::new();
    for name in [&b"one"[..], b"two"] {
        let mut map = HashMap::new();
        let root = tree.import_subtree(&src, sub, &mut map);
        tree.attach(Tree::ROOT, name, root);
    }
    let out = tmp.path().join("out");
    let done = materialize(&mut tree, &out, LinkPolicy::AsTree).unwrap();
    assert_eq!((done.files_linked, done.files_copied), (2, 2));
    assert!(done.fallbacks.is_empty());
    let ino = |rel: &str| fs::metadata(out.join(rel)).unwrap().ino();
    let stored = fs::metadata(a.join("sub/f")).unwrap().ino();
    assert_ne!(ino("one/f"), ino("two/f"));
    assert_ne!(ino("one/h"), ino("two/h"));
    // each placement keeps its own hardlink group
    assert_eq!(ino("one/f"), ino("one/g"));
    assert_eq!(ino("two/f"), ino("two/g"));
    assert!(ino("one/f") == stored || ino("two/f") == stored);
    // the materialised tree equals what it describes
    assert_eq!(tree_digest(&host_scan(&out)), tree_digest(&tree));
}

#[test]
fn cross_device_links_fall_back_to_copies() {
    let shm = Path::new("/dev/shm");
    let tmp = tempfile::tempdir().unwrap();
    let same_dev = fs::metadata(shm)
        .map(|m| m.dev() == fs::metadata(tmp.path()).unwrap().dev())
        .unwrap_or(true);
    if same_dev || !shm.is_dir() {
        eprintln!("skipped: /dev/shm is missing or on the same filesystem as the temp folder");
        return;
    }
    let store = tempfile::Builder::new().tempdir_in(shm).unwrap();
    let a = store.path().join("a");
    fs::create_dir(&a).unwrap();
    fs::create_dir(a.join("d")).unwrap();
    fs::write(a.join("d/one"), bytes(3, 70_000)).unwrap();
    fs::write(a.join("two"), b"2").unwrap();
    fs::hard_link(a.join("two"), a.join("d/three")).unwrap();
    set_mtime(&a.join("two"), 12345, 0);
    let mut tree = stored_scan(&a);
    let digest = tree_digest(&tree);
    let b = tmp.path().join("b");
    let done = materialize(&mut tree, &b, LinkPolicy::AsTree).unwrap();
    assert_eq!((done.files_linked, done.files_copied), (0, 2));
    assert_eq!(done.fallbacks.len(), 2);
    assert!(done.fallbacks.iter().all(|f| f.errno == Errno::EXDEV));
    let mut paths: Vec<_> = done.fallbacks.iter().map(|f| f.path.clone()).collect();
    paths.sort();
    // the group's first name written is the one met first (`two`, at the
    // top level); which name holds the data does not change the tree
    assert_eq!(paths, vec![b"d/one".to_vec(), b"two".to_vec()]);
    assert!(done.fallbacks[0]
        .to_string()
        .contains("cross-device (EXDEV), copied instead"));
    assert_eq!(tree_digest(&host_scan(&b)), digest);
    assert_eq!(
        fs::metadata(b.join("two")).unwrap().ino(),
        fs::metadata(b.join("d/three")).unwrap().ino()
    );
}

/// Whether `dir` is on ext2/3/4, whose inodes take at most 65,000 links.
fn on_ext4(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type() == nix::sys::statfs::EXT4_SUPER_MAGIC)
        .unwrap_or(false)
}

#[test]
fn full_link_counts_fall_back_to_copies() {
    let tmp = tempfile::tempdir().unwrap();
    if !on_ext4(tmp.path()) {
        eprintln!(
            "skipped: the temp folder is not on ext4 (its 65,000-link limit is what is tested)"
        );
        return;
    }
    let a = tmp.path().join("a");
    let extra = tmp.path().join("extra");
    fs::create_dir(&a).unwrap();
    fs::create_dir(&extra).unwrap();
    fs::write(a.join("full"), b"many links").unwrap();
    fs::write(a.join("g1"), b"group").unwrap();
    fs::hard_link(a.join("g1"), a.join("g2")).unwrap();
    // `full` at 65,000 links: one more fails with EMLINK. The g1/g2 group
    // at 64,999: its first name would fit, its second would not.
    for k in 0..64_999 {
        fs::hard_link(a.join("full"), extra.join(format!("f{k}"))).unwrap();
        if k < 64_997 {
            fs::hard_link(a.join("g1"), extra.join(format!("g{k}"))).unwrap();
        }
    }
    assert_eq!(fs::metadata(a.join("full")).unwrap().nlink(), 65_000);
    assert_eq!(fs::metadata(a.join("g1")).unwrap().nlink(), 64_999);
    fs::write(a.join("plain"), b"plain").unwrap();
    let mut tree = stored_scan(&a);
    let digest = tree_digest(&tree);
    let b = tmp.path().join("b");
    let done = materialize(&mut tree, &b, LinkPolicy::AsTree).unwrap();
    assert_eq!((done.files_linked, done.files_copied), (1, 2));
    let mut fallbacks: Vec<_> = done
        .fallbacks
        .iter()
        .map(|f| (String::from_utf8_lossy(&f.path).into_owned(), f.errno))
        .collect();
    fallbacks.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        fallbacks,
        vec![
            ("full".to_string(), Errno::EMLINK),
            ("g1".to_string(), Errno::EMLINK)
        ]
    );
    assert_eq!(tree_digest(&host_scan(&b)), digest);
    let ino = |rel: &str| fs::metadata(b.join(rel)).unwrap().ino();
    assert_eq!(ino("g1"), ino("g2"));
    assert_ne!(ino("g1"), fs::metadata(a.join("g1")).unwrap().ino());
    assert_eq!(ino("plain"), fs::metadata(a.join("plain")).unwrap().ino());
}

#[test]
fn owners_current_records_the_running_user() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("d")).unwrap();
    fs::write(tmp.path().join("d/f"), b"x").unwrap();
    symlink("f", tmp.path().join("d/l")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(tmp.path().join("d/f"), Some(1000), Some(1000)).unwrap();
    }
    let tree = scan(
        tmp.path(),
        ScanOptions {
            owners: Owners::Current,
            ..ScanOptions::default()
        },
    )
    .unwrap();
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    for e in manifest(&tree) {
        assert_eq!((e.uid, e.gid), me, "{}", e.path);
    }
}

#[test]
fn errors_name_the_path_and_the_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let e = scan(&missing, ScanOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot open directory "), "{e}");
    assert!(e.contains(&*missing.to_string_lossy()), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");

    fs::write(tmp.path().join("file"), b"").unwrap();
    let e = scan(&tmp.path().join("file"), ScanOptions::default()).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOTDIR));

    symlink(tmp.path(), tmp.path().join("link")).unwrap();
    // the caller resolves the folder: a symlink to one is refused
    let e = scan(&tmp.path().join("link"), ScanOptions::default()).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOTDIR), "{e}");

    let mut tree = Tree::new();
    let e = materialize(&mut tree, tmp.path(), LinkPolicy::Never)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot create directory "), "{e}");
    assert!(e.contains("File exists"), "{e}");
}
