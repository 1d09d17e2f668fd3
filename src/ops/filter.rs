//! A source subtree seen through `include`/`exclude` patterns.

use crate::fs::pattern::{Decision, Filter};
use crate::tree::{Node, NodeId, Tree};

/// The subtree of `src` at `root` keeping only what `filter` selects, as a
/// tree whose root stands for `root`. Parents of a selected entry come along
/// with their own metadata; inode ids are those of `src`, so hardlink groups
/// stay recognisable across several filtered views of one source.
pub fn filtered(src: &Tree, root: NodeId, filter: &Filter) -> Tree {
    let mut out = src.clone_inodes_only();
    // Directories kept only as the way to something below: dropped again
    // when nothing below them was taken.
    let mut tentative: Vec<(NodeId, Vec<u8>, NodeId)> = Vec::new();
    let mut stack: Vec<(NodeId, NodeId, Vec<u8>)> = vec![(root, Tree::ROOT, Vec::new())];
    while let Some((s, d, rel)) = stack.pop() {
        let kids: Vec<(Vec<u8>, NodeId)> = src.children(s).map(|(n, c)| (n.to_vec(), c)).collect();
        for (name, c) in kids {
            let mut path = rel.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let node = src.node(c);
            let is_dir = node.kind.is_dir();
            match filter.decide_bytes(&path, is_dir) {
                Decision::Skip => {}
                Decision::Take if !is_dir => {
                    let copy = Node {
                        kind: node.kind.clone(),
                        meta: node.meta.clone(),
                        structural: node.structural,
                    };
                    let id = out.add_node(copy);
                    out.attach(d, &name, id);
                }
                decision => {
                    let id = out.add_node(Node {
                        kind: crate::tree::Kind::Dir(Default::default()),
                        meta: node.meta.clone(),
                        structural: node.structural,
                    });
                    out.attach(d, &name, id);
                    if decision == Decision::Descend {
                        tentative.push((d, name.clone(), id));
                    }
                    stack.push((c, id, path));
                }
            }
        }
    }
    // Children were created after their parents: undo in reverse order.
    for (parent, name, id) in tentative.into_iter().rev() {
        if out.children(id).next().is_none() {
            out.detach(parent, &name);
        }
    }
    out
}
