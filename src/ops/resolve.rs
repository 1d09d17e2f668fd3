//! Paths resolved inside a tree's own root: symlinks are followed in the
//! model, an absolute target or a `..` starts from (and never climbs above)
//! the tree's root, and more than 255 links is an error.

use std::collections::VecDeque;

use super::{OpError, OpResult};
use crate::tree::{split_path, Kind, NodeId, Tree};

/// At most this many symlinks are followed while resolving one path.
pub const MAX_LINKS: usize = 255;

/// Where a path leads in a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The path is the root.
    Root,
    /// The final entry exists: `node`, named `name` in directory `parent`.
    Entry {
        /// Its directory.
        parent: NodeId,
        /// Its name there.
        name: Vec<u8>,
        /// The entry.
        node: NodeId,
    },
    /// The final entry is missing; its directory exists.
    Missing {
        /// Its directory.
        parent: NodeId,
        /// Its name there.
        name: Vec<u8>,
    },
    /// Components before the final one are missing (`rest` from `dir` on,
    /// the last of them the final name; may hold `..` from a link target).
    MissingParents {
        /// The deepest existing directory reached.
        dir: NodeId,
        /// The path of directories reached from the root to `dir`.
        stack: Vec<NodeId>,
        /// What is still to be walked.
        rest: Vec<Vec<u8>>,
    },
    /// A component before the final one exists but is not a directory.
    NotDir {
        /// The directory holding it.
        parent: NodeId,
        /// The path of directories from the root to `parent`.
        stack: Vec<NodeId>,
        /// Its name.
        name: Vec<u8>,
        /// What follows it (the last the final name).
        rest: Vec<Vec<u8>>,
    },
}

/// Resolves `path` (bytes, from the root) in `tree`. Symlinks met before the
/// final component are always followed; the final one only with
/// `follow_last`.
pub fn resolve(tree: &Tree, path: &[u8], follow_last: bool) -> OpResult<Found> {
    let mut queue: VecDeque<Vec<u8>> = split_path(path).map(<[u8]>::to_vec).collect();
    let mut stack: Vec<NodeId> = vec![Tree::ROOT];
    let mut links = 0usize;
    loop {
        let Some(name) = queue.pop_front() else {
            // Everything consumed: we stand on a directory reached by `..` or
            // a link to a directory (or the root itself).
            let dir = *stack.last().expect("root");
            return Ok(if stack.len() == 1 {
                Found::Root
            } else {
                let parent = stack[stack.len() - 2];
                let name = name_of(tree, parent, dir);
                Found::Entry {
                    parent,
                    name,
                    node: dir,
                }
            });
        };
        let dir = *stack.last().expect("root");
        if name == b".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let last = queue.is_empty();
        match tree.child(dir, &name) {
            None => {
                if last {
                    return Ok(Found::Missing { parent: dir, name });
                }
                let mut rest = vec![name];
                rest.extend(queue);
                return Ok(Found::MissingParents { dir, stack, rest });
            }
            Some(node) => match &tree.node(node).kind {
                Kind::Dir(_) => {
                    if last {
                        return Ok(Found::Entry {
                            parent: dir,
                            name,
                            node,
                        });
                    }
                    stack.push(node);
                }
                Kind::Symlink(target) if !last || follow_last => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(OpError::at(path, "too many levels of symbolic links"));
                    }
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    for c in split_path(target).collect::<Vec<_>>().into_iter().rev() {
                        queue.push_front(c.to_vec());
                    }
                }
                _ => {
                    if last {
                        return Ok(Found::Entry {
                            parent: dir,
                            name,
                            node,
                        });
                    }
                    return Ok(Found::NotDir {
                        parent: dir,
                        stack,
                        name,
                        rest: queue.into_iter().collect(),
                    });
                }
            },
        }
    }
}

/// The name under which `child` is found in `dir`.
fn name_of(tree: &Tree, dir: NodeId, child: NodeId) -> Vec<u8> {
    tree.children(dir)
        .find(|(_, c)| *c == child)
        .map(|(n, _)| n.to_vec())
        .unwrap_or_default()
}

/// Where an entry is: its directory and its name there.
pub type Place = (NodeId, Vec<u8>);

/// Resolves a path that must name an existing entry (final symlink followed
/// or not); the root is `None` in the `(parent, name)` part.
pub fn existing(tree: &Tree, path: &[u8], follow_last: bool) -> OpResult<(NodeId, Option<Place>)> {
    match resolve(tree, path, follow_last)? {
        Found::Root => Ok((Tree::ROOT, None)),
        Found::Entry { parent, name, node } => Ok((node, Some((parent, name)))),
        Found::Missing { .. } | Found::MissingParents { .. } => {
            Err(OpError::at(path, "no such file or directory"))
        }
        Found::NotDir { .. } => Err(OpError::at(
            path,
            "not a directory (a component of the path is not one)",
        )),
    }
}
