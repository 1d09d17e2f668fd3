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
