//! The IR (SPEC §3): ops keyed by digest, copies turned into merge layers.
//!
//! Inside the compiler the IR is an arena: [`Node`]s in a `Vec`, each
//! referring to its inputs by index, and **every input has a smaller index
//! than its user**. Passes walk the arena once, front to back, relying on that
//! order; none of them recurses, so a million-op chain compiles in constant
//! stack.

use std::collections::BTreeMap;

use crate::graph::{FileAction, Local, Placement};

use super::rewrite::Rewrite;

/// The index of a node in [`Ir::nodes`].
pub type NodeId = usize;

/// A compiled (or compiling) graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ir {
    /// The graph's epoch; ops that may create entries carry it in their digest.
    pub epoch: i64,
    /// The ops, inputs before users.
    pub nodes: Vec<Node>,
    /// Output name to node.
    pub outputs: BTreeMap<String, NodeId>,
    /// What each pass did, in order.
    pub rewrites: Vec<Rewrite>,
}

/// One IR op and the graph ops it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The graph ops this op stands for (for messages; not in the digest).
    pub names: Vec<String>,
    /// What it is.
    pub op: IrOp,
}

/// The kinds of IR ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrOp {
    /// The empty tree.
    Scratch,
    /// A host directory.
    Local(Local),
    /// One `mkdir`, `mkfile`, `symlink` or `rm` on `base`.
    Action {
        /// The tree it changes; `None` is the empty tree.
        base: Option<NodeId>,
        /// What it does.
        action: FileAction,
    },
    /// Fused file actions, applied in order to `base`.
    File {
        /// The tree they change; `None` is the empty tree.
        base: Option<NodeId>,
        /// The actions, in order.
        actions: Vec<Action>,
    },
    /// A `copy`, `with_directory` or `with_file` not yet lowered (only
    /// before the `lower` pass; never in a compiled IR).
    Place {
        /// The tree it writes into; `None` is the empty tree.
        base: Option<NodeId>,
        /// The tree it takes from.
        source: NodeId,
        /// What it places, where.
        placement: Placement,
    },
    /// Layers applied in order to an empty tree.
    Merge {
        /// The layers.
        layers: Vec<Layer>,
    },
    /// The changes that turn `lower` into `upper`.
    Diff {
        /// The tree before.
        lower: NodeId,
        /// The tree after.
        upper: NodeId,
    },
}

/// One action of a fused `file` op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// The graph op it came from.
    pub names: Vec<String>,
    /// What it does.
    pub action: FileAction,
}

/// One layer of a merge: a plain layer (the input's tree at `/`, with a
/// diff's deletions) or a placed one (the fields of the op it replaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The tree the layer takes from.
    pub input: NodeId,
    /// Whether file data may be hard-linked from the input (else copied).
    pub link: bool,
    /// The graph op that made the layer.
    pub names: Vec<String>,
    /// `None` for a plain layer; else how the input is placed.
    pub placement: Option<Placement>,
}

impl Layer {
    /// Whether it is a plain layer (no placement).
    pub fn is_plain(&self) -> bool {
        self.placement.is_none()
    }
}

impl IrOp {
    /// The kind's name in the IR.
    pub fn kind(&self) -> &'static str {
        match self {
            IrOp::Scratch => "scratch",
            IrOp::Local(_) => "local",
            IrOp::Action { action, .. } => action.kind(),
            IrOp::File { .. } => "file",
            IrOp::Place { placement, .. } => placement.kind(),
            IrOp::Merge { .. } => "merge",
            IrOp::Diff { .. } => "diff",
        }
    }

    /// Calls `f` on every input reference, in order, to read or rewrite it.
    pub fn for_each_input_mut(&mut self, mut f: impl FnMut(&mut NodeId)) {
        match self {
            IrOp::Scratch | IrOp::Local(_) => {}
            IrOp::Action { base, .. } | IrOp::File { base, .. } => {
                if let Some(b) = base {
                    f(b)
                }
            }
            IrOp::Place { base, source, .. } => {
                if let Some(b) = base {
                    f(b)
                }
                f(source)
            }
            IrOp::Merge { layers } => layers.iter_mut().for_each(|l| f(&mut l.input)),
            IrOp::Diff { lower, upper } => {
                f(lower);
                f(upper)
            }
        }
    }

    /// Every input reference, in order (repeats kept).
    pub fn inputs(&self) -> Vec<NodeId> {
        match self {
            IrOp::Scratch | IrOp::Local(_) => Vec::new(),
            IrOp::Action { base, .. } | IrOp::File { base, .. } => base.iter().copied().collect(),
            IrOp::Place { base, source, .. } => base.iter().copied().chain([*source]).collect(),
            IrOp::Merge { layers } => layers.iter().map(|l| l.input).collect(),
            IrOp::Diff { lower, upper } => vec![*lower, *upper],
        }
    }

    /// Whether the op may create entries (and so carries the epoch).
    pub fn takes_epoch(&self) -> bool {
        matches!(
            self,
            IrOp::Action {
                action: FileAction::Mkdir(_) | FileAction::Mkfile(_) | FileAction::Symlink(_),
                ..
            } | IrOp::File { .. }
                | IrOp::Merge { .. }
                | IrOp::Place { .. }
        )
    }
}

/// Appends the names of `from` to `to`. Repeats are allowed while passes
/// run (checking each time would be quadratic on long chains);
/// [`Ir::dedupe_names`] removes them once at the end.
pub fn add_names(to: &mut Vec<String>, from: &[String]) {
    to.extend_from_slice(from);
}

/// Removes repeated names, keeping the first of each.
fn unique(names: &mut Vec<String>) {
    if names.len() < 2 {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.retain(|n| seen.insert(n.clone()));
}

impl Ir {
    /// Removes repeated names from every op, layer and action.
    pub fn dedupe_names(&mut self) {
        for node in &mut self.nodes {
            unique(&mut node.names);
            match &mut node.op {
                IrOp::Merge { layers } => layers.iter_mut().for_each(|l| unique(&mut l.names)),
                IrOp::File { actions, .. } => actions.iter_mut().for_each(|a| unique(&mut a.names)),
                _ => {}
            }
        }
    }

    /// Which nodes an output reaches, walking inputs without recursion.
    pub fn reachable(&self) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        let mut stack: Vec<NodeId> = self.outputs.values().copied().collect();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut live[i], true) {
                continue;
            }
            for j in self.nodes[i].op.inputs() {
                if !live[j] {
                    stack.push(j);
                }
            }
        }
        live
    }

    /// Keeps the nodes marked in `keep` (which must hold every input of a
    /// kept node and every output), renumbering references.
    pub fn retain(&mut self, keep: &[bool]) {
        let mut new_index = vec![usize::MAX; self.nodes.len()];
        let mut next = 0;
        for (i, k) in keep.iter().enumerate() {
            if *k {
                new_index[i] = next;
                next += 1;
            }
        }
        let nodes = std::mem::take(&mut self.nodes);
        self.nodes = nodes
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(mut n, _)| {
                n.op.for_each_input_mut(|r| *r = new_index[*r]);
                n
            })
            .collect();
        for o in self.outputs.values_mut() {
            *o = new_index[*o];
        }
    }

    /// Drops every node no output reaches, without a record.
    pub fn sweep(&mut self) {
        let live = self.reachable();
        if live.iter().all(|l| *l) {
            return;
        }
        self.retain(&live);
    }

    /// Points every output through `redirect` (a pass's replacements).
    pub fn redirect_outputs(&mut self, redirect: &[NodeId]) {
        for o in self.outputs.values_mut() {
            *o = redirect[*o];
        }
    }

    /// The display name of a node: its first graph name, or its kind.
    pub fn label(&self, id: NodeId) -> String {
        self.label_str(id).to_string()
    }

    /// [`Ir::label`], borrowed.
    pub fn label_str(&self, id: NodeId) -> &str {
        let n = &self.nodes[id];
        n.names.first().map_or(n.op.kind(), String::as_str)
    }
}
