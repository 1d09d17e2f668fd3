//! `with_file`: Dagger's `Directory.withFile`.

use super::place::{prepare, Conflicts, Parents, Placer, Rules, Slot};
use super::resolve::existing;
use super::{Ctx, OpError, OpResult, Overrides};
use crate::graph::WithFile;
use crate::tree::{split_path, Kind, Tree};

/// Places the regular file `source:source_path` at `path` of `dst` (inside
/// it, under the source's name, when `path` is a directory).
pub fn apply(dst: &mut Tree, src: &Tree, w: &WithFile, link: bool, ctx: &Ctx) -> OpResult<()> {
    let (file, _) = existing(src, w.source_path.as_bytes(), true)?;
    if !matches!(src.node(file).kind, Kind::File(_)) {
        return Err(OpError::at(
            w.source_path.as_bytes(),
            format!(
                "source_path is a {}, not a regular file",
                src.node(file).kind.type_name()
            ),
        ));
    }
    let name = split_path(w.source_path.as_bytes())
        .last()
        .expect("validated: not the root")
        .to_vec();
    let parents = Parents::CreateOrReplace(ctx.default_dir());
    let mut slot = prepare(dst, w.path.as_bytes(), true, &parents)?;
    let into_dir = match &slot {
        Slot::Root => true,
        Slot::Entry { node, .. } => dst.node(*node).kind.is_dir(),
        Slot::Missing { .. } => false,
    };
    if into_dir {
        let mut inside = w.path.as_bytes().to_vec();
        inside.push(b'/');
        inside.extend_from_slice(&name);
        slot = prepare(dst, &inside, true, &parents)?;
    }
    let (parent, name) = match slot {
        Slot::Entry { parent, name, .. } | Slot::Missing { parent, name } => (parent, name),
        Slot::Root => unreachable!("a file's path is never the root"),
    };
    let rules = Rules {
        over: Overrides::from_fields(w.owner, w.mode, w.timestamp),
        link,
        conflicts: Conflicts::Replace,
        structural_defers: false,
    };
    let mut placer = Placer::new(dst, src, rules);
    let placed = placer.import(file);
    placer.dst.attach(parent, &name, placed);
    Ok(())
}
