//! The compiler: graph to IR (SPEC §3).
//!
//! `compile` never touches the disk. It imports the graph one node per op,
//! then runs the passes in this order, each a pure function from IR to IR
//! that records what it did:
//!
//! 1. `dead` — ops no output reaches go (first, so nothing is said of them);
//! 2. `lower` — `direct-merge` / `placed-merge` / `kept-copy`;
//! 3. `drop-scratch` — empty layers go, one-layer merges become their input;
//! 4. `flatten` — first-layer merges are inlined;
//! 5. `dedupe` — equal ops are one (before `fuse`, so use counts are true);
//! 6. `fuse` — chains of file actions become one `file` op;
//! 7. `dedupe` again — equal fused chains are one.
//!
//! [`Strategy::Copy`] compiles the reference: `dead`, `lower` with `link`
//! false everywhere, and `dedupe`. Compiling a compiled IR again gives the
//! same ops: every pass leaves nothing for itself or a later pass to do.

pub mod import;
pub mod ir;
pub mod json;
pub mod passes;
pub mod read;
pub mod rewrite;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::graph::Graph;

pub use ir::{Action, Ir, IrOp, Layer, Node, NodeId};
pub use rewrite::{Rewrite, Rule};

/// How layers write file data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Hard-link wherever no owner, mode or timestamp changes (the default).
    #[default]
    Hardlink,
    /// The reference: copy every byte, no `flatten`, `drop-scratch` or `fuse`.
    Copy,
}

/// A compiled IR: nodes in output order (inputs first, ties by digest) with
/// their digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// The IR; `ir.nodes[i]` has digest `digests[i]`.
    pub ir: Ir,
    /// `sha256:<hex>` of each node's canonical serialisation.
    pub digests: Vec<String>,
}

impl Compiled {
    /// The compiled output of SPEC §6 as a JSON value (keys sorted).
    pub fn to_json(&self) -> serde_json::Value {
        json::compiled_value(self)
    }

    /// The compiled output of SPEC §6, consuming the IR (no copy of it).
    pub fn into_json(self) -> serde_json::Value {
        json::compiled_value(&self)
    }

    /// The compiled output as pretty JSON text, with a final newline.
    pub fn to_json_pretty(&self) -> String {
        let mut out = Vec::new();
        json::write_pretty(self, &mut out).expect("writing to memory");
        out.push(b'\n');
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// Writes the compiled output as pretty JSON, with a final newline.
    pub fn write_json_pretty<W: std::io::Write>(&self, w: W) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
        json::write_pretty(self, &mut w)?;
        w.write_all(b"\n")?;
        w.flush()
    }

    /// The rewrites as `explain` prints them, one line each.
    pub fn explain(&self) -> String {
        self.ir
            .rewrites
            .iter()
            .map(|r| r.explain_line() + "\n")
            .collect()
    }

    /// The node an output names.
    pub fn output(&self, name: &str) -> Option<NodeId> {
        self.ir.outputs.get(name).copied()
    }
}

/// Compiles a graph.
///
/// ```
/// use hardmerge::compile::{compile, Rule, Strategy};
/// use hardmerge::graph::Graph;
///
/// let graph = Graph::from_json(r#"{
///   "version": 1,
///   "ops": {
///     "ctx":  {"local": {"path": "app"}},
///     "base": {"mkdir": {"path": "/srv"}},
///     "out":  {"with_directory": {"base": "base", "path": "/srv/app", "source": "ctx"}}
///   },
///   "outputs": {"default": "out"}
/// }"#)?;
/// let compiled = compile(&graph, Strategy::Hardlink);
/// assert_eq!(compiled.ir.rewrites[0].rule, Rule::PlacedMerge);
/// let out = compiled.output("default").unwrap();
/// assert_eq!(compiled.ir.nodes[out].op.kind(), "merge");
/// # Ok::<(), hardmerge::graph::GraphError>(())
/// ```
pub fn compile(graph: &Graph, strategy: Strategy) -> Compiled {
    compile_ir(import::import(graph), strategy)
}

/// Runs the passes over an IR (imported from a graph, or read back from a
/// compiled file) and orders the result.
pub fn compile_ir(mut ir: Ir, strategy: Strategy) -> Compiled {
    passes::dead::run(&mut ir);
    passes::lower::run(&mut ir, strategy);
    if strategy == Strategy::Hardlink {
        passes::drop_scratch::run(&mut ir);
        passes::flatten::run(&mut ir);
        // Dedupe first sweeps what drop-scratch and flatten left unused, so
        // that fuse counts only live uses.
        passes::dedupe::run(&mut ir);
        passes::fuse::run(&mut ir);
    }
    passes::dedupe::run(&mut ir);
    ir.dedupe_names();
    let digests = json::digests(&ir.nodes, ir.epoch);
    order(ir, digests)
}

/// Puts the nodes in output order: inputs first, ties by digest.
fn order(mut ir: Ir, digests: Vec<String>) -> Compiled {
    let n = ir.nodes.len();
    let mut pending = vec![0usize; n];
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for (i, node) in ir.nodes.iter().enumerate() {
        let mut inputs = node.op.inputs();
        inputs.sort_unstable();
        inputs.dedup();
        pending[i] = inputs.len();
        for j in inputs {
            users[j].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<(&str, NodeId)>> = (0..n)
        .filter(|&i| pending[i] == 0)
        .map(|i| Reverse((digests[i].as_str(), i)))
        .collect();
    let mut position = vec![0usize; n];
    let mut sequence = Vec::with_capacity(n);
    while let Some(Reverse((_, i))) = ready.pop() {
        position[i] = sequence.len();
        sequence.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(Reverse((digests[u].as_str(), u)));
            }
        }
    }
    let mut slots: Vec<Option<Node>> = ir.nodes.into_iter().map(Some).collect();
    let nodes: Vec<Node> = sequence
        .iter()
        .map(|&i| {
            let mut node = slots[i].take().expect("each node once");
            node.op.for_each_input_mut(|r| *r = position[*r]);
            node
        })
        .collect();
    let digests = sequence.iter().map(|&i| digests[i].clone()).collect();
    ir.nodes = nodes;
    for o in ir.outputs.values_mut() {
        *o = position[*o];
    }
    Compiled { ir, digests }
}
