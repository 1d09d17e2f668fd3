//! `copy`: BuildKit's `FileActionCopy`, with its wildcards, filters, type
//! conflicts and created parents.

use super::filter::filtered;
use super::place::{prepare, Conflicts, Parents, Placer, Rules, Slot};
use super::resolve::{existing, resolve, Found};
use super::{Ctx, OpError, OpResult, Overrides};
use crate::fs::pattern::{has_wildcard, ComponentPattern, Filter};
use crate::graph::Copy;
use crate::tree::{split_path, Kind, Meta, Node, NodeId, Tree};

/// One source entry of a copy: the node, and the name it takes inside a
/// destination directory (the last component of `src` as written, or the
/// match's own name).
struct Item {
    node: NodeId,
    name: Option<Vec<u8>>,
}

/// A wildcard match: its path, its directory, its name, the entry.
pub type Match = (Vec<u8>, NodeId, Vec<u8>, NodeId);

/// Entries of `tree` matching a wildcard path, in lexical order of their
/// paths: the plain prefix is resolved through symlinks (and must exist
/// when `prefix_must_exist`); wildcard components match one name each and
/// never descend through a symlink.
pub fn wildcard_matches(tree: &Tree, path: &str, prefix_must_exist: bool) -> OpResult<Vec<Match>> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let first = comps
        .iter()
        .position(|c| has_wildcard(c))
        .unwrap_or(comps.len());
    let prefix: String = comps[..first].iter().map(|c| format!("/{c}")).collect();
    let start = match resolve(tree, prefix.as_bytes(), true)? {
        Found::Root => Tree::ROOT,
        Found::Entry { node, .. } if tree.node(node).kind.is_dir() => node,
        _ if prefix_must_exist => {
            return Err(OpError::at(
                prefix.as_bytes(),
                "no such directory (the part of src before the wildcard)",
            ))
        }
        _ => return Ok(Vec::new()),
    };
    // (path, parent, name, node) of the candidates matched so far.
    let mut current: Vec<Match> = vec![(prefix.into_bytes(), Tree::ROOT, Vec::new(), start)];
    for (k, comp) in comps[first..].iter().enumerate() {
        let last = first + k + 1 == comps.len();
        let pattern =
            ComponentPattern::new(comp).map_err(|e| OpError::at(path.as_bytes(), e.to_string()))?;
        let mut next = Vec::new();
        for (p, _, _, dir) in &current {
            if !matches!(tree.node(*dir).kind, Kind::Dir(_)) {
                continue;
            }
            for (name, child) in tree.children(*dir) {
                if !pattern.matches_bytes(name) {
                    continue;
                }
                if !last && !tree.node(child).kind.is_dir() {
                    continue;
                }
                let mut cp = p.clone();
                cp.push(b'/');
                cp.extend_from_slice(name);
                next.push((cp, *dir, name.to_vec(), child));
            }
        }
        current = next;
    }
    current.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(current)
}

/// Copies `c.src` of `src` to `c.dest` of `dst`.
pub fn apply(dst: &mut Tree, src: &Tree, c: &Copy, link: bool, ctx: &Ctx) -> OpResult<()> {
    let over = Overrides::from_fields(c.owner, c.mode, c.timestamp);
    let items = sources(src, c)?;
    if items.is_empty() {
        // allow_empty_wildcard with no match: nothing at all happens.
        return Ok(());
    }
    let contents_only = c.contents_only || c.src == "/";
    let mut parent_meta = ctx.default_dir();
    over.apply(&mut parent_meta, false);
    let parents = if c.create_dest_path {
        Parents::Create(parent_meta.clone())
    } else {
        Parents::MustExist
    };
    let dirlike = c.dest.ends_with('/') || items.len() > 1;
    let filter = Filter::new(&c.include, &c.exclude)
        .map_err(|e| OpError::at(c.src.as_bytes(), e.to_string()))?;
    let rules = Rules {
        over,
        link,
        conflicts: Conflicts::Copy {
            replace_existing: c.replace_existing,
        },
        structural_defers: false,
    };
    let mut inodes = std::collections::HashMap::new();
    for item in items {
        let item_is_dir = src.node(item.node).kind.is_dir();
        // The metadata a directory this copy creates for the item takes.
        let mut item_meta = if item.node == Tree::ROOT {
            ctx.default_dir()
        } else {
            src.meta(item.node).clone()
        };
        over.apply(&mut item_meta, false);
        let view;
        let (source, root) = if item_is_dir && !filter.is_trivial() {
            view = filtered(src, item.node, &filter);
            (&view, Tree::ROOT)
        } else {
            (src, item.node)
        };
        let mut placer = Placer::new(dst, source, rules);
        placer.inodes = std::mem::take(&mut inodes);
        if item_is_dir && contents_only {
            let target = into_dir(placer.dst, &c.dest, &parents, &item_meta, &rules)?;
            placer.merge_entries(root, target, c.dest.as_bytes())?;
        } else {
            let (slot, at) = target_slot(
                placer.dst,
                c,
                item.name.as_deref(),
                dirlike,
                &parents,
                &parent_meta,
            )?;
            match slot {
                Slot::Root => {
                    return Err(OpError::at(b"/", "cannot replace the root"));
                }
                Slot::Entry { node, .. } if item_is_dir && placer.dst.node(node).kind.is_dir() => {
                    // An existing top-level directory keeps its metadata.
                    placer.merge_entries(root, node, &at)?;
                }
                Slot::Entry { parent, name, node } => {
                    placer.check_conflict(item_is_dir, node, &at)?;
                    place_item(
                        &mut placer,
                        root,
                        item_is_dir,
                        item_meta,
                        parent,
                        &name,
                        &at,
                    )?;
                }
                Slot::Missing { parent, name } => {
                    place_item(
                        &mut placer,
                        root,
                        item_is_dir,
                        item_meta,
                        parent,
                        &name,
                        &at,
                    )?;
                }
            }
        }
        inodes = std::mem::take(&mut placer.inodes);
    }
    Ok(())
}

/// Places one item (its subtree) as a new entry `name` of `parent`.
fn place_item(
    placer: &mut Placer<'_>,
    root: NodeId,
    is_dir: bool,
    dir_meta: Meta,
    parent: NodeId,
    name: &[u8],
    at: &[u8],
) -> OpResult<()> {
    if is_dir {
        // The directory itself takes the item's metadata even when the item
        // is the root of a filtered view (which carries none).
        let d = placer.dst.add_node(Node::dir(dir_meta));
        placer.dst.attach(parent, name, d);
        placer.merge_entries(root, d, at)
    } else {
        let n = placer.import(root);
        placer.dst.attach(parent, name, n);
        Ok(())
    }
}

/// The source entries of a copy, in order.
fn sources(src: &Tree, c: &Copy) -> OpResult<Vec<Item>> {
    if c.allow_wildcard && c.src.split('/').any(has_wildcard) {
        let matches = wildcard_matches(src, &c.src, true)?;
        if matches.is_empty() && !c.allow_empty_wildcard {
            return Err(OpError::at(
                c.src.as_bytes(),
                "no source matches the wildcard",
            ));
        }
        let mut items = Vec::with_capacity(matches.len());
        for (path, _, name, node) in matches {
            let node = if c.follow_symlinks && matches!(src.node(node).kind, Kind::Symlink(_)) {
                existing(src, &path, true)?.0
            } else {
                node
            };
            items.push(Item {
                node,
                name: Some(name),
            });
        }
        return Ok(items);
    }
    let (node, _) = existing(src, c.src.as_bytes(), c.follow_symlinks)?;
    let name = split_path(c.src.as_bytes()).last().map(<[u8]>::to_vec);
    Ok(vec![Item { node, name }])
}

/// The directory a `contents_only` copy fills: `dest`, created when missing.
fn into_dir(
    dst: &mut Tree,
    dest: &str,
    parents: &Parents,
    item_meta: &Meta,
    rules: &Rules,
) -> OpResult<NodeId> {
    match prepare(dst, dest.as_bytes(), true, parents)? {
        Slot::Root => Ok(Tree::ROOT),
        Slot::Entry { node, .. } if dst.node(node).kind.is_dir() => Ok(node),
        Slot::Entry { parent, name, node } => {
            let replace = matches!(
                rules.conflicts,
                Conflicts::Copy {
                    replace_existing: true
                }
            );
            if !replace {
                let what = dst.node(node).kind.type_name();
                return Err(OpError::at(
                    dest.as_bytes(),
                    format!("cannot replace {what} with directory"),
                ));
            }
            let d = dst.add_node(Node::dir(item_meta.clone()));
            dst.attach(parent, &name, d);
            Ok(d)
        }
        Slot::Missing { parent, name } => {
            let d = dst.add_node(Node::dir(item_meta.clone()));
            dst.attach(parent, &name, d);
            Ok(d)
        }
    }
}

/// Where a (non-contents-only) item lands: inside `dest` when it is (or is
/// to be) a directory, else `dest` itself. Returns the slot and its path.
fn target_slot(
    dst: &mut Tree,
    c: &Copy,
    name: Option<&[u8]>,
    dirlike: bool,
    parents: &Parents,
    parent_meta: &Meta,
) -> OpResult<(Slot, Vec<u8>)> {
    let dest = c.dest.trim_end_matches('/');
    let dest = if dest.is_empty() { "/" } else { dest };
    let slot = prepare(dst, dest.as_bytes(), true, parents)?;
    let into = match &slot {
        Slot::Root => true,
        Slot::Entry { node, .. } => {
            let is_dir = dst.node(*node).kind.is_dir();
            if dirlike && !is_dir {
                return Err(OpError::at(dest.as_bytes(), "not a directory"));
            }
            is_dir
        }
        Slot::Missing { parent, name } if dirlike => {
            // A dest ending in `/` may itself be created.
            let d = dst.add_node(Node::dir(parent_meta.clone()));
            dst.attach(*parent, name, d);
            true
        }
        Slot::Missing { .. } => false,
    };
    if !into {
        return Ok((slot, dest.as_bytes().to_vec()));
    }
    let Some(name) = name else {
        return Err(OpError::at(
            c.src.as_bytes(),
            "the source root has no name to copy it under",
        ));
    };
    let mut inside = dest.trim_end_matches('/').as_bytes().to_vec();
    inside.push(b'/');
    inside.extend_from_slice(name);
    // Inside the destination, an existing symlink is never followed.
    let slot = match resolve(dst, &inside, false)? {
        Found::Entry { parent, name, node } => Slot::Entry { parent, name, node },
        Found::Missing { parent, name } => Slot::Missing { parent, name },
        _ => return Err(OpError::at(&inside, "not a directory")),
    };
    Ok((slot, inside))
}
