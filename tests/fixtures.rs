//! Snapshot tests over every fixture (SPEC §8): the compiled IR and the
//! explain text of each valid graph, the error of each invalid one.
//! `cargo insta review` accepts a changed rewrite on purpose.

use std::path::Path;
use std::process::Command;

use hardmerge::compile::{compile, compile_ir, Strategy};
use hardmerge::graph::Graph;
use hardmerge::{parse_input, Input};

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn valid_fixtures_compile_to_their_snapshots() {
    settings().bind(|| {
        insta::glob!("../fixtures", "*.json", |path| {
            let graph =
                Graph::from_json(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let compiled = compile(&graph, Strategy::Hardlink);
            insta::assert_snapshot!("ir", compiled.to_json_pretty());
            insta::assert_snapshot!("explain", compiled.explain());
            let reference = compile(&graph, Strategy::Copy);
            insta::assert_snapshot!("explain-copy", reference.explain());
        });
    });
}

#[test]
fn invalid_fixtures_exit_2_with_their_snapshot_message() {
    settings().bind(|| {
        insta::glob!("../fixtures/invalid", "*.json", |path| {
            let out = Command::new(env!("CARGO_BIN_EXE_hardmerge"))
                .arg("compile")
                .arg(path)
                .output()
                .expect("run hardmerge");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
            assert!(out.stdout.is_empty(), "{}: wrote to stdout", path.display());
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            insta::assert_snapshot!("error", stderr.trim_end());
        });
    });
}

/// Every valid fixture: compiling the compiled IR again gives the same ops
/// and outputs (rewrites aside), byte for byte.
#[test]
fn compiling_is_idempotent_on_every_fixture() {
    insta::glob!("../fixtures", "*.json", |path| {
        for strategy in [Strategy::Hardlink, Strategy::Copy] {
            let graph = Graph::from_json(&read(path)).unwrap();
            let once = compile(&graph, strategy);
            let text = once.to_json_pretty();
            let Input::Ir(ir) = parse_input(&text).unwrap() else {
                panic!("compiled output read back as a graph");
            };
            let twice = compile_ir(ir, strategy);
            let strip = |mut v: serde_json::Value| {
                v.as_object_mut().unwrap().remove("rewrites");
                v
            };
            assert_eq!(
                strip(once.to_json()),
                strip(twice.to_json()),
                "{} ({strategy:?})",
                path.display()
            );
        }
    });
}

/// The compiled output is written by a batched, parallel writer; it must be
/// byte for byte serde_json's pretty printing of the output value, on every
/// fixture and on a graph whose op and rewrite lists span many batches.
#[test]
fn fast_writer_is_serde_jsons_pretty_printing() {
    let check = |what: &str, compiled: &hardmerge::compile::Compiled| {
        let expected = serde_json::to_string_pretty(&compiled.to_json()).expect("json") + "\n";
        assert!(
            compiled.to_json_pretty() == expected,
            "{what}: outputs differ"
        );
        let mut written = Vec::new();
        compiled
            .clone()
            .write_json_pretty(&mut written)
            .expect("write");
        assert!(
            written == expected.as_bytes(),
            "{what}: written output differs"
        );
    };
    insta::glob!("../fixtures", "*.json", |path| {
        let graph = Graph::from_json(&read(path)).expect("valid fixture");
        check(
            &path.display().to_string(),
            &compile(&graph, Strategy::Hardlink),
        );
    });
    // 20,000 with_directory steps, each with its own mkfile source: 20,000
    // nodes and 40,000 rewrites, past the writer's batches of 16 × 256 items.
    let mut ops = serde_json::Map::new();
    ops.insert("s".into(), serde_json::json!({"scratch": {}}));
    let mut prev = "s".to_string();
    for i in 0..20_000 {
        ops.insert(
            format!("f{i}"),
            serde_json::json!({"mkfile": {"path": format!("/f{i}"), "data": format!("{i}\n")}}),
        );
        ops.insert(
            format!("w{i}"),
            serde_json::json!({"with_directory": {"base": prev, "path": format!("/d{i}"), "source": format!("f{i}")}}),
        );
        prev = format!("w{i}");
    }
    let doc = serde_json::json!({"version": 1, "ops": ops, "outputs": {"default": prev}});
    let graph = Graph::from_json(&doc.to_string()).expect("valid graph");
    let compiled = compile(&graph, Strategy::Hardlink);
    assert!(compiled.ir.nodes.len() > 16 * 1024 && compiled.ir.rewrites.len() > 16 * 1024);
    check("20k chain", &compiled);
}
