//! `with_directory`: Dagger's `Directory.withDirectory`.

use super::filter::filtered;
use super::place::{prepare, Conflicts, Parents, Placer, Rules, Slot};
use super::resolve::existing;
use super::{Ctx, OpError, OpResult, Overrides};
use crate::fs::pattern::Filter;
use crate::graph::WithDirectory;
use crate::tree::{Node, Tree};

/// Places `source:source_path` (a directory, filtered) at `path` of `dst`.
pub fn apply(dst: &mut Tree, src: &Tree, w: &WithDirectory, link: bool, ctx: &Ctx) -> OpResult<()> {
    let (sp, _) = existing(src, w.source_path.as_bytes(), true)?;
    if !src.node(sp).kind.is_dir() {
        return Err(OpError::at(
            w.source_path.as_bytes(),
            "source_path is not a directory in the source",
        ));
    }
    let over = Overrides::from_fields(w.owner, w.mode, w.timestamp);
    // The placed root's metadata when the op creates it (rule 3).
    let mut root_meta = if sp == Tree::ROOT {
        ctx.default_dir()
    } else {
        src.meta(sp).clone()
    };
    over.apply(&mut root_meta, false);

    let filter = Filter::new(&w.include, &w.exclude)
        .map_err(|e| OpError::at(w.source_path.as_bytes(), e.to_string()))?;
    let view;
    let (source, source_root) = if filter.is_trivial() {
        (src, sp)
    } else {
        view = filtered(src, sp, &filter);
        (&view, Tree::ROOT)
    };

    let slot = prepare(
        dst,
        w.path.as_bytes(),
        true,
        &Parents::CreateOrReplace(ctx.default_dir()),
    )?;
    let target = match slot {
        Slot::Root => Tree::ROOT,
        Slot::Entry { node, .. } if dst.node(node).kind.is_dir() => node,
        Slot::Entry { parent, name, .. } | Slot::Missing { parent, name } => {
            let d = dst.add_node(Node::dir(root_meta));
            dst.attach(parent, &name, d);
            d
        }
    };
    let rules = Rules {
        over,
        link,
        conflicts: Conflicts::Replace,
        structural_defers: false,
    };
    Placer::new(dst, source, rules).merge_entries(source_root, target, w.path.as_bytes())
}
