pub mod cli;
pub mod compile;
pub mod dot;
pub mod fs;
pub mod graph;

use compile::Ir;
use graph::{Graph, GraphError};

/// What a JSON file given to the CLI holds: a graph, or a compiled IR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A graph in the version 1 format.
    Graph(Graph),
    /// A compiled IR (its `ops` is an array of ops keyed by digest).
    Ir(Ir),
}

/// Reads a graph or a compiled IR from JSON text, validating it.
pub fn parse_input(text: &str) -> Result<Input, GraphError> {
    let raw = graph::parse::read_top(text)?;
    if matches!(raw.ops, Some(graph::parse::RawOps::List(_))) {
        compile::read::ir_from_raw(raw).map(Input::Ir)
    } else {
        graph::parse::graph_from_raw(raw).map(Input::Graph)
    }
}
