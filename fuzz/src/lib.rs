//! The oracle of the fuzz targets, shared with `tests/fuzz_corpus.rs` (which
//! includes this file by path), so the replayed corpus is checked exactly as
//! the fuzzer checked it.
//!
//! For any bytes: reading them as the CLI does never panics. For a graph that
//! parses: its own JSON reads back as the same graph, and for each strategy
//! compiling is deterministic and idempotent (the compiled JSON read back and
//! compiled again gives the same ops and outputs). For a compiled IR that
//! reads back: the same, from the IR.

use hardmerge::compile::{compile, compile_ir, Compiled, Ir, Strategy};
use hardmerge::graph::Graph;
use hardmerge::{parse_input, Input};

const STRATEGIES: [Strategy; 2] = [Strategy::Hardlink, Strategy::Copy];

/// Checks one input; panics on a broken promise.
pub fn check(data: &[u8]) {
    // The CLI reads a file as UTF-8 text and skips a byte order mark.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match parse_input(text) {
        Ok(Input::Graph(g)) => check_graph(&g),
        Ok(Input::Ir(ir)) => check_ir(&ir),
        Err(e) => {
            // the message is what a user sees: rendering it must not panic
            let _ = e.to_string();
        }
    }
}

fn check_graph(g: &Graph) {
    let json = g.to_json().to_string();
    match Graph::from_json(&json) {
        Ok(again) => assert!(
            again == *g,
            "the graph's own JSON reads back differently: {json}"
        ),
        Err(e) => panic!("the graph's own JSON is rejected: {e}\n{json}"),
    }
    let _ = hardmerge::dot::graph_dot(g);
    for s in STRATEGIES {
        let once = compile(g, s);
        assert_eq!(
            once.to_json(),
            compile(g, s).to_json(),
            "compiling is not deterministic ({s:?})"
        );
        check_compiled(&once, s);
    }
}

fn check_ir(ir: &Ir) {
    for s in STRATEGIES {
        let once = compile_ir(ir.clone(), s);
        assert_eq!(
            once.to_json(),
            compile_ir(ir.clone(), s).to_json(),
            "compiling an IR is not deterministic ({s:?})"
        );
        check_compiled(&once, s);
    }
}

/// `once` renders, and its JSON compiles again to the same ops and outputs.
fn check_compiled(once: &Compiled, s: Strategy) {
    let _ = once.explain();
    let _ = hardmerge::dot::ir_dot(once);
    let text = once.to_json_pretty();
    let ir = match parse_input(&text) {
        Ok(Input::Ir(ir)) => ir,
        Ok(Input::Graph(_)) => panic!("compiled output read back as a graph:\n{text}"),
        Err(e) => panic!("compiled output rejected ({s:?}): {e}\n{text}"),
    };
    let twice = compile_ir(ir, s);
    let strip = |mut v: serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("rewrites");
        }
        v
    };
    assert_eq!(
        strip(once.to_json()),
        strip(twice.to_json()),
        "compiling is not idempotent ({s:?})\n{text}"
    );
}
