//! `diff`: the changes that turn `lower` into `upper`.

use std::collections::HashMap;

use crate::tree::{InodeId, Kind, Node, NodeId, Tree};

/// For each inode of a tree, the sorted paths that name it.
fn groups(tree: &Tree) -> HashMap<InodeId, Vec<Vec<u8>>> {
    let mut g: HashMap<InodeId, Vec<Vec<u8>>> = HashMap::new();
    for (path, id) in tree.walk(Tree::ROOT) {
        if let Kind::File(i) = tree.node(id).kind {
            g.entry(i).or_default().push(path);
        }
    }
    for v in g.values_mut() {
        v.sort();
    }
    g
}

/// Whether the entry of `upper` differs from the one of `lower` at the
/// same path (type, metadata, content, target, device, hardlink grouping).
fn differs(
    lower: &Tree,
    l: NodeId,
    upper: &Tree,
    u: NodeId,
    lg: &HashMap<InodeId, Vec<Vec<u8>>>,
    ug: &HashMap<InodeId, Vec<Vec<u8>>>,
) -> bool {
    if lower.meta(l) != upper.meta(u) {
        return true;
    }
    match (&lower.node(l).kind, &upper.node(u).kind) {
        (Kind::Dir(_), Kind::Dir(_)) => false,
        (Kind::File(a), Kind::File(b)) => {
            let (a, b) = (lower.inode(*a), upper.inode(*b));
            a.size != b.size
                || a.sha256 != b.sha256
                || lg.get(&lookup_inode(lower, l)) != ug.get(&lookup_inode(upper, u))
        }
        (Kind::Symlink(a), Kind::Symlink(b)) => a != b,
        (Kind::Char(a), Kind::Char(b)) | (Kind::Block(a), Kind::Block(b)) => a != b,
        (Kind::Fifo, Kind::Fifo) | (Kind::Socket, Kind::Socket) => false,
        _ => true,
    }
}

fn lookup_inode(tree: &Tree, id: NodeId) -> InodeId {
    match tree.node(id).kind {
        Kind::File(i) => i,
        _ => InodeId::MAX,
    }
}

/// The diff from `lower` to `upper`: every entry of `upper` that `lower`
/// lacks or that differs, with its parents as structural entries (upper's
/// metadata), and one deletion per top-most entry of `lower` that `upper`
/// lacks.
pub fn diff(lower: &Tree, upper: &Tree) -> Tree {
    let lg = groups(lower);
    let ug = groups(upper);
    let mut out = upper.clone_inodes_only();
    out.is_diff = true;
    let mut tentative: Vec<(NodeId, Vec<u8>, NodeId)> = Vec::new();
    // (lower dir or None, upper dir, out dir, path)
    let mut stack: Vec<(Option<NodeId>, NodeId, NodeId, Vec<u8>)> =
        vec![(Some(Tree::ROOT), Tree::ROOT, Tree::ROOT, Vec::new())];
    while let Some((l, u, o, path)) = stack.pop() {
        let join = |name: &[u8]| {
            let mut p = path.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            p
        };
        if let Some(l) = l {
            for (name, _) in lower.children(l) {
                if upper.child(u, name).is_none() {
                    out.deletions.push(join(name));
                }
            }
        }
        let kids: Vec<(Vec<u8>, NodeId)> =
            upper.children(u).map(|(n, c)| (n.to_vec(), c)).collect();
        for (name, uc) in kids {
            let lc = l.and_then(|l| lower.child(l, &name));
            let changed = match lc {
                None => true,
                Some(lc) => differs(lower, lc, upper, uc, &lg, &ug),
            };
            let unode = upper.node(uc);
            let is_dir = unode.kind.is_dir();
            if is_dir {
                let d = out.add_node(Node {
                    kind: Kind::Dir(Default::default()),
                    meta: unode.meta.clone(),
                    structural: !changed,
                });
                out.attach(o, &name, d);
                if !changed {
                    tentative.push((o, name.clone(), d));
                }
                // A directory that replaced a non-directory: everything in it is new.
                let lower_dir = lc.filter(|lc| lower.node(*lc).kind.is_dir());
                stack.push((lower_dir, uc, d, join(&name)));
            } else if changed {
                let n = out.add_node(Node {
                    kind: unode.kind.clone(),
                    meta: unode.meta.clone(),
                    structural: false,
                });
                out.attach(o, &name, n);
            }
        }
    }
    for (parent, name, id) in tentative.into_iter().rev() {
        if out.children(id).next().is_none() {
            out.detach(parent, &name);
        }
    }
    out.deletions.sort();
    out
}
