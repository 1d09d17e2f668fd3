//! The graph: named ops as the user wrote them (SPEC §2).
//!
//! A [`Graph`] is a value, fully described by its JSON: it knows nothing of
//! the filesystem. It is built by [`parse_graph`] from JSON text or by
//! [`GraphBuilder`] in code; both check it the same way and clean its paths
//! the same way, so equal inputs give equal graphs.

pub mod builder;
pub mod error;
pub mod normalize;
pub mod op;
pub mod parse;
pub mod path;
pub mod value;

use std::collections::BTreeMap;

pub use builder::{GraphBuilder, OpRef};
pub use error::GraphError;
pub use op::{
    Copy, FileAction, Local, Mkdir, Mkfile, Op, Overrides, Placement, Rm, Symlink, WithDirectory,
    WithFile,
};
pub use parse::parse_graph;
pub use value::{Data, Mode, Owner};

/// A graph's ops by position (the order of their names), with their
/// references resolved to positions.
pub(crate) struct Index<'a> {
    /// The op names, sorted.
    pub names: Vec<&'a str>,
    /// The ops, in the same order.
    pub ops: Vec<&'a Op>,
    /// Op `i`'s references are `refs[start[i]..start[i + 1]]`, in the
    /// order of [`Op::for_each_ref`].
    pub start: Vec<usize>,
    /// The referenced positions.
    pub refs: Vec<usize>,
}

impl Index<'_> {
    /// The positions op `i` refers to, in [`Op::for_each_ref`] order.
    pub fn refs_of(&self, i: usize) -> &[usize] {
        &self.refs[self.start[i]..self.start[i + 1]]
    }
}

/// A validated graph of named ops with named outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// The mtime of entries the graph creates without a `timestamp`.
    pub epoch: i64,
    /// The ops, by name.
    pub ops: BTreeMap<String, Op>,
    /// The outputs: output name to op name.
    pub outputs: BTreeMap<String, String>,
}

impl Graph {
    /// Parses and validates a graph from JSON text (see [`parse_graph`]).
    pub fn from_json(text: &str) -> Result<Graph, GraphError> {
        parse_graph(text)
    }

    /// The graph as JSON in the version 1 format, defaults left out.
    pub fn to_json(&self) -> serde_json::Value {
        let ops: serde_json::Map<String, serde_json::Value> = self
            .ops
            .iter()
            .map(|(name, op)| (name.clone(), op.to_json()))
            .collect();
        let mut top = serde_json::json!({
            "version": 1,
            "ops": ops,
            "outputs": self.outputs,
        });
        if self.epoch != 0 {
            top["epoch"] = self.epoch.into();
        }
        top
    }

    /// Checks outputs, references and cycles (fields are checked as ops are read).
    pub fn validate(&self) -> Result<(), GraphError> {
        if self.outputs.is_empty() {
            return Err(GraphError::top(
                Some("outputs"),
                "empty: at least one output",
            ));
        }
        for (out, op) in &self.outputs {
            parse::check_name("output", out)?;
            if !self.ops.contains_key(op) {
                return Err(GraphError::top(
                    Some(&format!("outputs.{out}")),
                    format!("no op named `{op}`"),
                ));
            }
        }
        for name in self.ops.keys() {
            parse::check_name("op", name)?;
        }
        let index = self.index()?;
        self.order(&index).map(|_| ())
    }

    /// The op names in dependency order (every op after the ops it uses),
    /// ties by name; a cycle is an error that prints it (`a -> b -> a`).
    ///
    /// Iterative (Kahn's algorithm): a million-op chain does not recurse.
    pub fn topo_order(&self) -> Result<Vec<&str>, GraphError> {
        let index = self.index()?;
        let order = self.order(&index)?;
        Ok(order.into_iter().map(|i| index.names[i]).collect())
    }

    /// The ops by position (their names' order) with every reference
    /// resolved to a position; a reference to no op is an error.
    pub(crate) fn index(&self) -> Result<Index<'_>, GraphError> {
        let n = self.ops.len();
        let names: Vec<&str> = self.ops.keys().map(String::as_str).collect();
        let ids: rustc_hash::FxHashMap<&str, usize> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut start = Vec::with_capacity(n + 1);
        let mut refs = Vec::with_capacity(n + n / 2);
        let mut ops = Vec::with_capacity(n);
        for (name, op) in &self.ops {
            start.push(refs.len());
            ops.push(op);
            let mut missing = None;
            op.for_each_ref(|field, target| match ids.get(target) {
                Some(&j) => refs.push(j),
                None => {
                    missing.get_or_insert((field, target));
                }
            });
            if let Some((field, target)) = missing {
                let shown: String = target.chars().take(60).collect();
                return Err(GraphError::op(
                    name,
                    Some(op.kind()),
                    Some(field),
                    format!("no op named `{shown}`"),
                ));
            }
        }
        start.push(refs.len());
        Ok(Index {
            names,
            ops,
            start,
            refs,
        })
    }

    /// Positions in dependency order, ties by name (Kahn's algorithm).
    pub(crate) fn order(&self, index: &Index<'_>) -> Result<Vec<usize>, GraphError> {
        let n = index.names.len();
        let mut pending = vec![0usize; n];
        // Users of each op, as one array sliced by `first` (CSR).
        let mut first = vec![0usize; n + 1];
        for &j in &index.refs {
            first[j + 1] += 1;
        }
        for k in 0..n {
            first[k + 1] += first[k];
        }
        let mut fill = first.clone();
        let mut users = vec![0usize; index.refs.len()];
        for (i, p) in pending.iter_mut().enumerate() {
            let refs = index.refs_of(i);
            *p = refs.len();
            for &j in refs {
                users[fill[j]] = i;
                fill[j] += 1;
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = pending
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == 0)
            .map(|(i, _)| std::cmp::Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[first[i]..first[i + 1]] {
                pending[u] -= 1;
                if pending[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        Err(self.cycle_error(&index.names, &pending))
    }

    /// Finds one cycle among the ops Kahn's algorithm could not order: each
    /// of them uses another of them, so following such uses must loop.
    fn cycle_error(&self, names: &[&str], pending: &[usize]) -> GraphError {
        let index = |n: &str| names.binary_search(&n).ok();
        let stuck = |i: usize| pending[i] > 0;
        let start = (0..names.len()).find(|&i| stuck(i)).expect("a stuck op");
        let mut seen = vec![usize::MAX; names.len()];
        let mut path = Vec::new();
        let mut at = start;
        while seen[at] == usize::MAX {
            seen[at] = path.len();
            path.push(at);
            let op = &self.ops[names[at]];
            at = op
                .refs()
                .into_iter()
                .filter_map(|(_, r)| index(r))
                .find(|&j| stuck(j))
                .expect("a stuck op uses a stuck op");
        }
        let mut cycle: Vec<usize> = path[seen[at]..].to_vec();
        // Start the cycle at its smallest name, so the message is stable.
        let min = (0..cycle.len())
            .min_by_key(|&k| names[cycle[k]])
            .expect("non-empty");
        cycle.rotate_left(min);
        let first = cycle[0];
        let next = if cycle.len() > 1 { cycle[1] } else { first };
        let op = &self.ops[names[first]];
        let field = op
            .refs()
            .into_iter()
            .find(|(_, r)| *r == names[next])
            .map(|(f, _)| f);
        let mut text: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
        text.push(names[first]);
        // A long cycle is shown by its ends, so the message stays one line.
        let skipped;
        if text.len() > 12 {
            skipped = format!("... ({} more) ...", text.len() - 8);
            let tail = text.split_off(text.len() - 3);
            text.truncate(5);
            text.push(&skipped);
            text.extend(tail);
        }
        GraphError::op(
            names[first],
            Some(op.kind()),
            field,
            format!("cycle: {} (each op uses the next)", text.join(" -> ")),
        )
    }
}
