//! `merge`: layers applied in order to an empty tree.

use super::place::{Conflicts, Placer, Rules};
use super::{copy, with_directory, with_file, Ctx, OpResult, Overrides};
use crate::graph::Placement;
use crate::tree::{split_path, Kind, Tree};

/// Applies a plain layer: `src` placed at `/` by the merge rule, a diff's
/// deletions first.
pub fn plain_layer(dst: &mut Tree, src: &Tree, link: bool) -> OpResult<()> {
    if src.is_diff {
        for path in &src.deletions {
            delete(dst, path);
        }
    }
    let rules = Rules {
        over: Overrides::default(),
        link,
        conflicts: Conflicts::Replace,
        structural_defers: src.is_diff,
    };
    Placer::new(dst, src, rules).merge_entries(Tree::ROOT, Tree::ROOT, b"")
}

/// Removes `path` if every component exists as a real directory (no symlink
/// is followed); a missing path, or one under a symlink, is ignored.
fn delete(tree: &mut Tree, path: &[u8]) {
    let names: Vec<&[u8]> = split_path(path).collect();
    let Some((last, parents)) = names.split_last() else {
        return;
    };
    let mut at = Tree::ROOT;
    for name in parents {
        match tree.child(at, name) {
            Some(c) if matches!(tree.node(c).kind, Kind::Dir(_)) => at = c,
            _ => return,
        }
    }
    tree.detach(at, last);
}

/// Applies a placed layer: the op it replaces, applied to the tree so far.
pub fn placed_layer(
    dst: &mut Tree,
    src: &Tree,
    p: &Placement,
    link: bool,
    ctx: &Ctx,
) -> OpResult<()> {
    match p {
        Placement::WithDirectory(w) => with_directory::apply(dst, src, w, link, ctx),
        Placement::WithFile(w) => with_file::apply(dst, src, w, link, ctx),
        Placement::Copy(c) => copy::apply(dst, src, c, link, ctx),
    }
}
