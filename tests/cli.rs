//! End-to-end tests of the `hardmerge` binary (SPEC §5 command line, §6
//! compile output, §7 bad input): every run goes through the real
//! executable, its exit code, stdout and stderr.
//!
//! Every run is capped (address space and wall time) so that a runaway case
//! fails the test instead of taking the machine down, and every run is
//! checked for a crash: a signal, a panic or a backtrace is never an answer.
//!
//! Tests marked `#[ignore = "bug: ..."]` hold a known bug; run them with
//! `cargo test --test cli -- --ignored`.
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hardmerge");

/// Address-space cap of every run, in KiB (`ulimit -v`): 4 GiB.
const MEM_CAP_KB: u64 = 4 * 1024 * 1024;

/// Default wall-time cap of one run.
const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// One finished run of the binary.
struct Run {
    what: String,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn out(&self) -> &str {
        std::str::from_utf8(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not UTF-8: {e}", self.what))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON: {e}", self.what))
    }

    /// Never a signal, a panic or a backtrace, whatever the exit code.
    fn assert_no_crash(&self) -> &Self {
        assert!(
            self.status.signal().is_none(),
            "{}: killed by signal {:?} after {:?}; stderr: {}",
            self.what,
            self.status.signal(),
            self.elapsed,
            head(&self.stderr)
        );
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !self.stderr.contains(bad),
                "{}: stderr holds {bad:?}: {}",
                self.what,
                head(&self.stderr)
            );
        }
        self
    }

    /// Exit 0, nothing on stderr.
    fn assert_ok(&self) -> &Self {
        self.assert_no_crash();
        assert_eq!(
            self.code(),
            Some(0),
            "{}: expected success; stderr: {}",
            self.what,
            head(&self.stderr)
        );
        assert!(
            self.stderr.is_empty(),
            "{}: stderr on success: {}",
            self.what,
            head(&self.stderr)
        );
        self
    }

    /// Exit `code`, stdout empty, stderr starting with `error: `.
    fn assert_error(&self, code: i32) -> &Self {
        self.assert_no_crash();
        assert_eq!(
            self.code(),
            Some(code),
            "{}: expected exit {code}; stdout: {} stderr: {}",
            self.what,
            head(&String::from_utf8_lossy(&self.stdout)),
            head(&self.stderr)
        );
        assert!(
            self.stdout.is_empty(),
            "{}: stdout not empty on error: {}",
            self.what,
            head(&String::from_utf8_lossy(&self.stdout))
        );
        assert!(
            self.stderr.starts_with("error:"),
            "{}: stderr does not start with `error:`: {}",
            self.what,
            head(&self.stderr)
        );
        self
    }

    /// Exit 0 or a clean exit 2 (hostile input: works or fails cleanly).
    fn assert_works_or_fails_cleanly(&self) -> &Self {
        self.assert_no_crash();
        match self.code() {
            Some(0) => {}
            Some(2) => {
                self.assert_error(2);
            }
            other => panic!(
                "{}: exit {other:?}, expected 0 or 2; stderr: {}",
                self.what,
                head(&self.stderr)
            ),
        }
        self
    }
}

/// The first 600 characters of a message, for assertion output.
fn head(s: &str) -> String {
    let cut: String = s.chars().take(600).collect();
    if cut.len() < s.len() {
        format!("{cut}... ({} bytes)", s.len())
    } else {
        cut
    }
}

/// Runs `hardmerge ARGS` with no stdin.
fn hm(args: &[&str]) -> Run {
    hm_with(args, None, TIMEOUT)
}

/// Runs `hardmerge ARGS` with `stdin` as its standard input.
fn hm_in(args: &[&str], stdin: &[u8]) -> Run {
    hm_with(args, Some(stdin), TIMEOUT)
}

/// Runs the binary under an address-space cap (`ulimit -v`, through `sh`,
/// which `exec`s the binary so the pid and the status are the binary's) and a
/// wall-time cap (the child is killed when it runs out).
fn hm_with(args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Run {
    let what = format!("hardmerge {}", args.join(" "));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEM_CAP_KB}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let start = Instant::now();
    let writer = stdin.map(|bytes| {
        let bytes = bytes.to_vec();
        let mut pipe = child.stdin.take().expect("stdin piped");
        // The child may exit (an error) before reading it all: a broken pipe
        // here is not a failure of the test.
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?}: killed");
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&err_reader.join().expect("stderr reader")).into_owned();
    Run {
        what,
        status,
        stdout,
        stderr,
        elapsed,
    }
}

// ---------------------------------------------------------------------------
// Fixtures and files
// ---------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    root()
        .join("fixtures")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn json_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", dir.display());
    v
}

/// Every valid graph in `fixtures/`.
fn valid_fixtures() -> Vec<String> {
    json_files(&root().join("fixtures"))
}

/// Every malformed graph in `fixtures/invalid/`.
fn invalid_fixtures() -> Vec<String> {
    json_files(&root().join("fixtures/invalid"))
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A temporary folder; files written into it live as long as it does.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self, name: &str) -> String {
        self.0.path().join(name).to_str().unwrap().to_string()
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{p}: {e}"));
        p
    }
}

/// A minimal valid graph with one op (the JSON text of the op's value).
fn one_op_graph(op: &str) -> String {
    format!(r#"{{"version":1,"ops":{{"a":{op}}},"outputs":{{"default":"a"}}}}"#)
}

// ---------------------------------------------------------------------------
// Reading the compile output
// ---------------------------------------------------------------------------

/// The digests an IR op references (`input`, `base`, `lower`, `upper`
/// anywhere inside its kind's object), in order.
fn op_refs(op: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("input" | "base" | "lower" | "upper", Value::String(s)) => {
                            out.push(s.clone());
                        }
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (k, v) in op.as_object().expect("an op is an object") {
        if k != "digest" && k != "names" {
            walk(v, &mut out);
        }
    }
    out
}

/// The kind key of an IR op.
fn op_kind(op: &Value) -> &str {
    let kinds: Vec<&str> = op
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "digest" && *k != "names")
        .collect();
    assert_eq!(kinds.len(), 1, "one kind key: {op}");
    kinds[0]
}

/// Whether every object's keys iterate in sorted order.
fn keys_sorted(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            let keys: Vec<&String> = m.keys().collect();
            keys.windows(2).all(|w| w[0] < w[1]) && m.values().all(keys_sorted)
        }
        Value::Array(a) => a.iter().all(keys_sorted),
        _ => true,
    }
}

/// Checks the shape of a compile output (SPEC §6) and that its ops come in
/// dependency order, inputs first, ties broken by digest.
fn check_compiled(what: &str, text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    let top: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        top,
        BTreeSet::from(["epoch", "ops", "outputs", "rewrites", "version"]),
        "{what}: top-level keys"
    );
    assert_eq!(v["version"], 1, "{what}: version");
    assert!(v["epoch"].is_u64(), "{what}: epoch is an integer");
    assert!(keys_sorted(&v), "{what}: keys not sorted");
    // Pretty, sorted, one final newline: re-serialising gives the same text.
    let again = serde_json::to_string_pretty(&v).unwrap() + "\n";
    assert_eq!(again, text, "{what}: not the canonical pretty form");

    let ops = v["ops"].as_array().expect("ops is an array");
    let digests: Vec<&str> = ops
        .iter()
        .map(|op| op["digest"].as_str().expect("digest"))
        .collect();
    let mut position = HashMap::new();
    for (i, d) in digests.iter().enumerate() {
        assert!(
            d.starts_with("sha256:") && d.len() == 7 + 64,
            "{what}: bad digest {d}"
        );
        assert!(position.insert(*d, i).is_none(), "{what}: {d} twice");
        op_kind(&ops[i]);
    }
    let refs: Vec<Vec<String>> = ops.iter().map(op_refs).collect();
    for (i, r) in refs.iter().enumerate() {
        for d in r {
            let at = *position
                .get(d.as_str())
                .unwrap_or_else(|| panic!("{what}: ops[{i}] references unknown {d}"));
            assert!(
                at < i,
                "{what}: ops[{i}] references {d}, which comes later (ops[{at}])"
            );
        }
    }
    // The exact order: at each step, the smallest digest among the ops whose
    // inputs are all placed.
    let mut placed = BTreeSet::new();
    for (i, d) in digests.iter().enumerate() {
        let smallest_ready = (0..ops.len())
            .filter(|j| !placed.contains(j))
            .filter(|&j| {
                refs[j]
                    .iter()
                    .all(|r| placed.contains(&position[r.as_str()]))
            })
            .map(|j| digests[j])
            .min()
            .unwrap();
        assert_eq!(
            *d, smallest_ready,
            "{what}: ops[{i}] is not the smallest ready digest"
        );
        placed.insert(i);
    }
    let outputs = v["outputs"].as_object().expect("outputs is an object");
    assert!(!outputs.is_empty(), "{what}: no outputs");
    for (name, d) in outputs {
        let d = d.as_str().expect("an output is a digest");
        assert!(
            position.contains_key(d),
            "{what}: output {name} -> unknown {d}"
        );
    }
    for r in v["rewrites"].as_array().expect("rewrites is an array") {
        for k in ["op", "rule", "reason"] {
            assert!(r[k].is_string(), "{what}: rewrite without {k}: {r}");
        }
    }
    v
}

fn rules(v: &Value) -> Vec<(String, String)> {
    v["rewrites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["op"].as_str().unwrap().to_string(),
                r["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `ops` and `outputs` of a compile output (rewrites aside).
fn ops_and_outputs(v: &Value) -> (Value, Value) {
    (v["ops"].clone(), v["outputs"].clone())
}

/// Every layer of every merge op.
fn layers(v: &Value) -> Vec<Value> {
    v["ops"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|op| op.get("merge"))
        .flat_map(|m| m["layers"].as_array().unwrap().clone())
        .collect()
}

/// The placement of a layer (`with_directory`, `with_file` or `copy`) and
/// its `at` path, or None for a plain layer.
fn placement(layer: &Value) -> Option<(&str, &str)> {
    for (kind, at) in [
        ("with_directory", "path"),
        ("with_file", "path"),
        ("copy", "dest"),
    ] {
        if let Some(p) = layer.get(kind) {
            return Some((kind, p[at].as_str().expect("at path")));
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Reading dot
// ---------------------------------------------------------------------------

/// Plausible Graphviz: a `digraph NAME {` header, `}` last, braces and
/// brackets balanced outside quoted strings, quotes closed, every line
/// inside a statement ending in `;`.
fn check_dot_syntax(what: &str, dot: &str) {
    assert!(dot.starts_with("digraph "), "{what}: no digraph header");
    assert!(dot.ends_with("}\n"), "{what}: does not end with }}");
    let (mut braces, mut brackets, mut in_str, mut escaped) = (0i64, 0i64, false, false);
    for c in dot.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                (false, '\n') => panic!("{what}: raw newline inside a quoted string"),
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            _ => {}
        }
        assert!(braces >= 0 && brackets >= 0, "{what}: unbalanced");
    }
    assert!(!in_str, "{what}: unclosed string");
    assert_eq!((braces, brackets), (0, 0), "{what}: unbalanced braces");
    let lines: Vec<&str> = dot.lines().collect();
    for l in &lines[1..lines.len() - 1] {
        assert!(l.ends_with(';'), "{what}: statement without `;`: {l}");
    }
}

/// Whether Graphviz's `dot` is installed.
fn graphviz() -> bool {
    Command::new("dot")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Renders `dot` text with `dot -Tsvg`; returns (success, stderr).
fn render_svg(dot: &str) -> (bool, String) {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dot");
    let mut pipe = child.stdin.take().unwrap();
    let text = dot.to_string();
    let w = thread::spawn(move || {
        let _ = pipe.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("dot");
    let _ = w.join();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The references of a graph op (SPEC §2), in the order `dot` draws them:
/// (target, field).
fn graph_refs(op: &Value) -> Vec<(String, String)> {
    let (_, fields) = op.as_object().unwrap().iter().next().unwrap();
    let mut out = Vec::new();
    for f in ["base", "source", "lower", "upper"] {
        if let Some(Value::String(t)) = fields.get(f) {
            out.push((t.clone(), f.to_string()));
        }
    }
    if let Some(Value::Array(inputs)) = fields.get("inputs") {
        for t in inputs {
            out.push((t.as_str().unwrap().to_string(), "inputs".to_string()));
        }
    }
    out
}

// ===========================================================================
// compile
// ===========================================================================

/// stdout, `-o FILE` and `--output FILE` give the same bytes; with `-o`
/// nothing goes to stdout.
#[test]
fn compile_stdout_and_output_file_are_the_same_bytes() {
    let dir = Scratch::new();
    for (i, path) in valid_fixtures().iter().enumerate() {
        let to_stdout = hm(&["compile", path]);
        to_stdout.assert_ok();
        let file = dir.path(&format!("out-{i}.json"));
        let to_file = hm(&["compile", path, "-o", &file]);
        to_file.assert_ok();
        assert!(to_file.stdout.is_empty(), "{path}: -o also wrote stdout");
        let written = std::fs::read(&file).unwrap();
        assert_eq!(written, to_stdout.stdout, "{path}: -o differs from stdout");
        let long = dir.path(&format!("long-{i}.json"));
        hm(&["compile", "--output", &long, path]).assert_ok();
        assert_eq!(std::fs::read(&long).unwrap(), written, "{path}: --output");
    }
}

/// `-o` over an existing file replaces it.
#[test]
fn compile_output_file_is_replaced() {
    let dir = Scratch::new();
    let file = dir.write("out.json", "x".repeat(100_000));
    let path = fixture("chain-3.json");
    hm(&["compile", &path, "-o", &file]).assert_ok();
    let expected = hm(&["compile", &path]);
    assert_eq!(std::fs::read(&file).unwrap(), expected.stdout);
}

/// The output of every fixture, both strategies: valid JSON with the keys of
/// §6, keys sorted, ops in dependency order.
#[test]
fn compile_output_shape_and_dependency_order() {
    for path in valid_fixtures() {
        for strategy in ["hardlink", "copy"] {
            let run = hm(&["compile", &path, "--strategy", strategy]);
            run.assert_ok();
            check_compiled(&format!("{path} ({strategy})"), run.out());
        }
    }
}

/// `GRAPH` as `-` reads stdin, for every subcommand, and gives what the
/// file gives.
#[test]
fn dash_reads_stdin() {
    for name in ["example.json", "chain-20.json", "diff-into-merge.json"] {
        let path = fixture(name);
        let text = std::fs::read(&path).unwrap();
        for args in [
            vec!["compile"],
            vec!["compile", "--strategy", "copy"],
            vec!["explain"],
            vec!["dot"],
            vec!["dot", "--compiled"],
        ] {
            let mut from_file = args.clone();
            from_file.push(&path);
            let mut from_stdin = args.clone();
            from_stdin.push("-");
            let a = hm(&from_file);
            a.assert_ok();
            let b = hm_in(&from_stdin, &text);
            b.assert_ok();
            assert_eq!(a.stdout, b.stdout, "{name}: {args:?} from stdin");
        }
    }
}

/// `--strategy copy`: link false on every layer, and none of the rules that
/// only the hardlink strategy runs.
#[test]
fn strategy_copy_links_nothing() {
    let mut layers_seen = 0;
    for path in valid_fixtures() {
        let run = hm(&["compile", &path, "--strategy", "copy"]);
        run.assert_ok();
        let v = run.json();
        for l in layers(&v) {
            layers_seen += 1;
            assert_eq!(l["link"], false, "{path}: a layer links: {l}");
        }
        for (op, rule) in rules(&v) {
            assert!(
                !["flatten", "drop-scratch", "fuse"].contains(&rule.as_str()),
                "{path}: --strategy copy recorded {rule} for {op}"
            );
        }
        for op in v["ops"].as_array().unwrap() {
            assert_ne!(op_kind(op), "file", "{path}: a fused op under copy");
        }
        assert!(!run.out().contains("\"link\": true"), "{path}");
    }
    assert!(layers_seen > 50, "only {layers_seen} layers seen");
}

/// Every layer writes `link`, always a boolean; the hardlink strategy links
/// somewhere.
#[test]
fn link_is_always_written() {
    let mut linked = 0;
    for path in valid_fixtures() {
        let v = hm(&["compile", &path]).assert_ok().json();
        for l in layers(&v) {
            assert!(l["link"].is_boolean(), "{path}: {l}");
            linked += usize::from(l["link"] == true);
        }
    }
    assert!(linked > 50, "only {linked} linked layers");
}

/// A compiled output fed back (file or stdin) compiles to the same ops and
/// outputs, both strategies, and is accepted by explain and dot.
#[test]
fn compile_of_compiled_output() {
    let dir = Scratch::new();
    for (i, path) in valid_fixtures().iter().enumerate() {
        for strategy in ["hardlink", "copy"] {
            let what = format!("{path} ({strategy})");
            let once_file = dir.path(&format!("once-{i}-{strategy}.json"));
            hm(&["compile", path, "--strategy", strategy, "-o", &once_file]).assert_ok();
            let once_text = std::fs::read_to_string(&once_file).unwrap();
            let once: Value = serde_json::from_str(&once_text).unwrap();

            let twice = hm(&["compile", &once_file, "--strategy", strategy]);
            twice.assert_ok();
            let twice_v = check_compiled(&format!("{what} recompiled"), twice.out());
            assert_eq!(
                ops_and_outputs(&once),
                ops_and_outputs(&twice_v),
                "{what}: recompiling changed the IR"
            );
            assert_eq!(
                once_text.contains("sha256:"),
                twice.out().contains("sha256:")
            );

            let from_stdin = hm_in(
                &["compile", "-", "--strategy", strategy],
                once_text.as_bytes(),
            );
            from_stdin.assert_ok();
            assert_eq!(from_stdin.stdout, twice.stdout, "{what}: IR from stdin");

            hm(&["explain", &once_file]).assert_ok();
            let dot = hm(&["dot", &once_file]);
            dot.assert_ok();
            check_dot_syntax(&format!("{what} dot of IR"), dot.out());
        }
    }
}

/// A compiled output whose op was edited is rejected: digests are checked.
#[test]
fn tampered_compiled_output_is_rejected() {
    let dir = Scratch::new();
    let text = hm(&["compile", &fixture("example.json")])
        .assert_ok()
        .out()
        .to_string();
    let tampered = text.replacen("/etc/motd", "/etc/motD", 1);
    assert_ne!(tampered, text);
    let p = dir.write("tampered.json", &tampered);
    let run = hm(&["compile", &p]);
    run.assert_error(2);
    assert!(run.stderr.contains("digest"), "{}", run.stderr);
}

// ===========================================================================
// explain
// ===========================================================================

/// One line per rewrite: `OP: FROM -> TO [RULE] REASON`, in the order of
/// the compile output's `rewrites`.
#[test]
fn explain_prints_one_line_per_rewrite() {
    let mut total = 0;
    for path in valid_fixtures() {
        for strategy in ["hardlink", "copy"] {
            let what = format!("{path} ({strategy})");
            let v = hm(&["compile", &path, "--strategy", strategy])
                .assert_ok()
                .json();
            let explain = hm(&["explain", &path, "--strategy", strategy]);
            explain.assert_ok();
            let lines: Vec<&str> = explain.out().lines().collect();
            let rewrites = v["rewrites"].as_array().unwrap();
            assert_eq!(lines.len(), rewrites.len(), "{what}: {}", explain.out());
            assert!(
                rewrites.is_empty() || explain.out().ends_with('\n'),
                "{what}: no final newline"
            );
            for (line, r) in lines.iter().zip(rewrites) {
                let op = r["op"].as_str().unwrap();
                let rule = r["rule"].as_str().unwrap();
                let reason = r["reason"].as_str().unwrap();
                assert!(line.starts_with(&format!("{op}: ")), "{what}: {line}");
                let arrow = line
                    .find(" -> ")
                    .unwrap_or_else(|| panic!("{what}: {line}"));
                let tag = format!(" [{rule}] {reason}");
                assert!(line.ends_with(&tag), "{what}: `{line}` lacks `{tag}`");
                assert!(arrow < line.len() - tag.len(), "{what}: {line}");
                total += 1;
            }
        }
    }
    assert!(total > 100, "only {total} explain lines");
}

/// chain-20: 20 placed-merge and 19 flatten lines, and the output is one
/// merge of 21 layers, the plain rootfs then the 20 placed layers in order
/// (the issue: a 20-step `with_directory` chain compiles to one N-way merge).
#[test]
fn chain_20_is_one_21_layer_merge() {
    let path = fixture("chain-20.json");
    let explain = hm(&["explain", &path]);
    explain.assert_ok();
    let lines: Vec<&str> = explain.out().lines().collect();
    let with_rule = |rule: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains(&format!(" [{rule}] ")))
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect()
    };
    let placed = with_rule("placed-merge");
    let flatten = with_rule("flatten");
    let steps: Vec<String> = (1..=20).map(|i| format!("step{i:02}")).collect();
    assert_eq!(placed, steps, "placed-merge lines");
    assert_eq!(flatten, steps[1..].to_vec(), "flatten lines");
    assert_eq!(lines.len(), 39, "{}", explain.out());
    for l in &lines {
        assert!(l.contains(" -> "), "{l}");
    }

    let v = hm(&["compile", &path]).assert_ok().json();
    let ops = v["ops"].as_array().unwrap();
    let by_digest: HashMap<&str, &Value> = ops
        .iter()
        .map(|op| (op["digest"].as_str().unwrap(), op))
        .collect();
    let out = v["outputs"]["default"].as_str().unwrap();
    // Every op the output reaches.
    let mut reached = BTreeSet::new();
    let mut stack = vec![out.to_string()];
    while let Some(d) = stack.pop() {
        if reached.insert(d.clone()) {
            stack.extend(op_refs(by_digest[d.as_str()]));
        }
    }
    let merges: Vec<&str> = reached
        .iter()
        .map(String::as_str)
        .filter(|d| op_kind(by_digest[d]) == "merge")
        .collect();
    assert_eq!(merges, vec![out], "exactly one merge, the output");
    let layers = by_digest[out]["merge"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 21);
    assert_eq!(
        placement(&layers[0]),
        None,
        "layer 0 is plain: {}",
        layers[0]
    );
    assert_eq!(layers[0]["names"], serde_json::json!(["step01"]));
    for (k, l) in layers.iter().enumerate() {
        assert_eq!(l["link"], true, "layer {k}");
        if k > 0 {
            let at = format!("/opt/layers/{k:02}");
            assert_eq!(
                placement(l),
                Some(("with_directory", at.as_str())),
                "layer {k}"
            );
            assert_eq!(l["names"], serde_json::json!([format!("step{k:02}")]));
        }
    }
    // Nothing left over: the inner merges are gone.
    assert_eq!(ops.iter().filter(|op| op_kind(op) == "merge").count(), 1);
}

// ===========================================================================
// dot
// ===========================================================================

/// `dot GRAPH`: a digraph with one node per op, one edge per reference
/// (labelled with its field) and one per output.
#[test]
fn dot_of_graph_has_a_node_per_op_and_an_edge_per_reference() {
    for path in valid_fixtures() {
        let run = hm(&["dot", &path]);
        run.assert_ok();
        let dot = run.out();
        check_dot_syntax(&path, dot);
        let graph = read_json(&path);
        let ops = graph["ops"].as_object().unwrap();
        let node_lines = dot
            .lines()
            .filter(|l| l.starts_with("  \"") && !l.contains(" -> ") && !l.contains("output:"))
            .count();
        assert_eq!(node_lines, ops.len(), "{path}: node count\n{dot}");
        let mut edges = 0;
        for (name, op) in ops {
            assert!(
                dot.contains(&format!("  \"{name}\" [label=\"{name}\\n")),
                "{path}: no node for {name}"
            );
            for (i, (target, field)) in graph_refs(op).into_iter().enumerate() {
                let label = if field == "inputs" {
                    format!("inputs[{i}]")
                } else {
                    field
                };
                let edge = format!("  \"{target}\" -> \"{name}\" [label=\"{label}\"];");
                assert!(dot.contains(&edge), "{path}: missing edge {edge}\n{dot}");
                edges += 1;
            }
        }
        let outputs = graph["outputs"].as_object().unwrap();
        for (out, op) in outputs {
            let edge = format!("  \"{}\" -> \"output:{out}\";", op.as_str().unwrap());
            assert!(dot.contains(&edge), "{path}: missing {edge}");
        }
        let edge_lines = dot.lines().filter(|l| l.contains(" -> ")).count();
        assert_eq!(
            edge_lines,
            edges + outputs.len(),
            "{path}: edge count\n{dot}"
        );
    }
}

/// `dot --compiled`: a node per IR op, merge layers drawn as edges labelled
/// `#k`, with their `at` path when placed; diff and base edges.
#[test]
fn dot_compiled_labels_layers() {
    let mut placed_seen = 0;
    for path in valid_fixtures() {
        let v = hm(&["compile", &path]).assert_ok().json();
        let run = hm(&["dot", "--compiled", &path]);
        run.assert_ok();
        let dot = run.out();
        check_dot_syntax(&path, dot);
        let ops = v["ops"].as_array().unwrap();
        let index: HashMap<&str, usize> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| (op["digest"].as_str().unwrap(), i))
            .collect();
        let mut edges = 0;
        for (i, op) in ops.iter().enumerate() {
            let kind = op_kind(op);
            let short = &op["digest"].as_str().unwrap()[..7 + 12];
            let node = format!("  n{i} [label=\"{kind}\\n{short}");
            assert!(dot.contains(&node), "{path}: no node `{node}`\n{dot}");
            if let Some(m) = op.get("merge") {
                for (k, l) in m["layers"].as_array().unwrap().iter().enumerate() {
                    let from = index[l["input"].as_str().unwrap()];
                    let how = if l["link"] == true { "link" } else { "copy" };
                    let prefix = format!("  n{from} -> n{i} [label=\"#{k} ");
                    let line = dot
                        .lines()
                        .find(|x| x.starts_with(&prefix))
                        .unwrap_or_else(|| panic!("{path}: no edge `{prefix}`\n{dot}"));
                    assert!(line.contains(&format!(" {how}\"")), "{path}: {line}");
                    if let Some((pkind, at)) = placement(l) {
                        placed_seen += 1;
                        let want = format!("#{k} {pkind} at {at} {how}");
                        assert!(line.contains(&want), "{path}: `{line}` lacks `{want}`");
                    }
                    edges += 1;
                }
            } else if let Some(d) = op.get("diff") {
                for f in ["lower", "upper"] {
                    let from = index[d[f].as_str().unwrap()];
                    let edge = format!("  n{from} -> n{i} [label=\"{f}\"];");
                    assert!(dot.contains(&edge), "{path}: missing {edge}");
                    edges += 1;
                }
            } else {
                for r in op_refs(op) {
                    let edge = format!("  n{} -> n{i} [label=\"base\"];", index[r.as_str()]);
                    assert!(dot.contains(&edge), "{path}: missing {edge}");
                    edges += 1;
                }
            }
        }
        let outputs = v["outputs"].as_object().unwrap();
        for (out, d) in outputs {
            let edge = format!("  n{} -> \"output:{out}\";", index[d.as_str().unwrap()]);
            assert!(dot.contains(&edge), "{path}: missing {edge}");
        }
        let node_lines = dot
            .lines()
            .filter(|l| {
                l.strip_prefix("  n")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    && !l.contains(" -> ")
            })
            .count();
        assert_eq!(node_lines, ops.len(), "{path}: node count");
        let edge_lines = dot.lines().filter(|l| l.contains(" -> ")).count();
        assert_eq!(edge_lines, edges + outputs.len(), "{path}: edge count");
    }
    assert!(placed_seen > 30, "only {placed_seen} placed layers drawn");
}

/// Graphviz renders every `dot --compiled` output (skipped, with a line,
/// when Graphviz is not installed).
#[test]
fn graphviz_renders_dot_compiled() {
    if !graphviz() {
        println!("skipped: Graphviz `dot` is not installed; dot output checked by syntax only");
        return;
    }
    for path in valid_fixtures() {
        for strategy in ["hardlink", "copy"] {
            let argv = ["dot", "--compiled", "--strategy", strategy, &path];
            let run = hm(&argv);
            run.assert_ok();
            let (ok, err) = render_svg(run.out());
            assert!(ok, "{path}: {argv:?} | dot -Tsvg failed: {err}");
        }
    }
}

/// Graphviz renders every `dot GRAPH` output.
#[test]
fn graphviz_renders_dot_of_graph() {
    if !graphviz() {
        println!("skipped: Graphviz `dot` is not installed");
        return;
    }
    for path in valid_fixtures() {
        let run = hm(&["dot", &path]);
        run.assert_ok();
        let (ok, err) = render_svg(run.out());
        assert!(ok, "{path}: dot | dot -Tsvg failed: {err}");
    }
}

/// The graph's name is not a Graphviz keyword (checked without Graphviz).
#[test]
fn dot_graph_name_is_not_a_keyword() {
    let run = hm(&["dot", &fixture("chain-3.json")]);
    run.assert_ok();
    let first = run.out().lines().next().unwrap();
    let name = first
        .strip_prefix("digraph ")
        .and_then(|s| s.strip_suffix(" {"))
        .unwrap_or_else(|| panic!("header: {first}"));
    let keywords = ["node", "edge", "graph", "digraph", "subgraph", "strict"];
    assert!(
        !keywords.contains(&name.to_ascii_lowercase().as_str()),
        "digraph named with the keyword `{name}`"
    );
}

// ===========================================================================
// --help, usage
// ===========================================================================

/// Every subcommand's help (and the top-level one) exits 0, on stdout,
/// with an example.
#[test]
fn every_help_has_an_example() {
    let mut cases: Vec<Vec<&str>> = vec![vec!["--help"], vec!["-h"], vec!["help"]];
    for sub in ["compile", "explain", "dot"] {
        cases.push(vec![sub, "--help"]);
        cases.push(vec![sub, "-h"]);
        cases.push(vec!["help", sub]);
    }
    for args in cases {
        let run = hm(&args);
        run.assert_ok();
        assert!(
            run.out().contains("Example"),
            "{args:?}: no example:\n{}",
            run.out()
        );
        assert!(run.out().contains("Usage:"), "{args:?}");
    }
    let v = hm(&["--version"]);
    v.assert_ok();
    assert!(v.out().starts_with("hardmerge "), "{}", v.out());
}

/// Usage errors: exit 2, nothing on stdout, a message on stderr.
#[test]
fn usage_errors_exit_2() {
    let g = fixture("chain-3.json");
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["compile"],
        vec!["explain"],
        vec!["dot"],
        vec!["compile", &g, "--bogus"],
        vec!["compile", "--bogus", &g],
        vec!["explain", &g, "-x"],
        vec!["dot", &g, "--compiled=yes"],
        vec!["compile", &g, "--strategy", "reflink"],
        vec!["compile", &g, "--strategy"],
        vec!["compile", &g, "--strategy", ""],
        vec!["explain", &g, "--strategy", "HARDLINK2"],
        vec!["dot", &g, "--compiled", "--strategy", "nope"],
        vec!["compile", &g, "-o"],
        vec!["compile", &g, &g],
        vec!["explain", &g, "-o", "x.json"],
        vec!["dot", &g, "extra"],
    ];
    for args in cases {
        let run = hm(&args);
        run.assert_no_crash();
        assert_eq!(run.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: stdout {}", run.out());
        assert!(!run.stderr.trim().is_empty(), "{args:?}: no message");
    }
}

// ===========================================================================
// Errors
// ===========================================================================

/// A missing graph file: exit 2, `error:` naming the path, for every
/// subcommand.
#[test]
fn missing_graph_file() {
    let dir = Scratch::new();
    let missing = dir.path("no-such-graph.json");
    for args in [
        vec!["compile", &missing],
        vec!["compile", &missing, "-o", "/dev/null"],
        vec!["explain", &missing],
        vec!["dot", &missing],
        vec!["dot", "--compiled", &missing],
    ] {
        let run = hm(&args);
        run.assert_error(2);
        assert!(run.stderr.contains(&missing), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
}

/// A folder, an empty file or an unreadable path as GRAPH: exit 2.
#[test]
fn unreadable_graphs() {
    let dir = Scratch::new();
    let folder = dir.0.path().to_str().unwrap().to_string();
    let empty = dir.write("empty.json", "");
    let spaces = dir.write("spaces.json", " \n\t\n");
    for path in [&folder, &empty, &spaces] {
        let run = hm(&["compile", path]);
        run.assert_error(2);
        assert!(run.stderr.lines().count() == 1, "{}", run.stderr);
    }
    let run = hm_in(&["compile", "-"], b"");
    run.assert_error(2);
}

/// Invalid JSON: exit 2, the message gives line and column.
#[test]
fn invalid_json_gives_line_and_column() {
    let dir = Scratch::new();
    let mut cases = vec![
        fixture("invalid/syntax-trailing-comma.json"),
        fixture("invalid/syntax-truncated.json"),
    ];
    cases.push(dir.write("garbage.json", "{\"version\": 1,\n  \"ops\": {\n    oops\n"));
    cases.push(dir.write(
        "two-docs.json",
        format!("{} {{}}", one_op_graph(r#"{"scratch":{}}"#)),
    ));
    cases.push(dir.write("nan.json", r#"{"version": NaN}"#));
    for path in cases {
        for sub in ["compile", "explain", "dot"] {
            let run = hm(&[sub, &path]);
            run.assert_error(2);
            assert!(
                run.stderr.contains("line") && run.stderr.contains("column"),
                "{sub} {path}: {}",
                run.stderr
            );
        }
    }
    let run = hm_in(&["compile", "-"], b"{\n\n  \"version\": 1,,\n}");
    run.assert_error(2);
    assert!(run.stderr.contains("line 3"), "{}", run.stderr);
}

/// Every invalid fixture fails the same way through explain and dot as
/// through compile (fixtures.rs holds compile's messages).
#[test]
fn invalid_fixtures_fail_in_every_subcommand() {
    let dir = Scratch::new();
    for path in invalid_fixtures() {
        let compile = hm(&["compile", &path]);
        compile.assert_error(2);
        for args in [
            vec!["explain", path.as_str()],
            vec!["dot", path.as_str()],
            vec!["dot", "--compiled", path.as_str()],
            vec!["compile", "--strategy", "copy", path.as_str()],
        ] {
            let run = hm(&args);
            run.assert_error(2);
            assert_eq!(run.stderr, compile.stderr, "{args:?}");
        }
        // Nothing written with -o.
        let out = dir.path("never.json");
        hm(&["compile", &path, "-o", &out]).assert_error(2);
        assert!(!Path::new(&out).exists(), "{path}: -o written on error");
        // The same from stdin.
        let text = std::fs::read(&path).unwrap();
        hm_in(&["compile", "-"], &text).assert_error(2);
    }
}

/// `-o` into a folder that does not exist: a clean error naming the path.
#[test]
fn unwritable_output_file() {
    let dir = Scratch::new();
    let out = dir.path("no/such/dir/out.json");
    let run = hm(&["compile", &fixture("chain-3.json"), "-o", &out]);
    run.assert_no_crash();
    assert_eq!(run.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error:") && run.stderr.contains(&out),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

/// A reader that goes away (`| head`) is not a crash.
#[test]
fn closed_stdout_is_not_a_crash() {
    let dir = Scratch::new();
    let big = format!(
        r#"{{"mkfile":{{"path":"/x","data":"{}"}}}}"#,
        "y".repeat(2_000_000)
    );
    let path = dir.write("big.json", one_op_graph(&big));
    let mut child = Command::new(BIN)
        .args(["compile", &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read a little, then hang up.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.signal().is_none(),
        "signal {:?}",
        out.status.signal()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

// ===========================================================================
// Hostile inputs (SPEC §7): work or fail cleanly
// ===========================================================================

/// 100,000-level nested arrays (and objects) as a field value, an unknown
/// field, the whole document, in a compiled IR: exit 2 with a position, for
/// every subcommand, from a file and from stdin.
#[test]
fn hostile_deep_nesting() {
    let dir = Scratch::new();
    let n = 100_000;
    let arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    let cases = [
        (
            "data",
            one_op_graph(&format!(r#"{{"mkfile":{{"path":"/x","data":{arrays}}}}}"#)),
        ),
        (
            "unknown-field",
            one_op_graph(&format!(r#"{{"mkfile":{{"path":"/x","perm":{arrays}}}}}"#)),
        ),
        (
            "op-value",
            one_op_graph(&format!(r#"{{"scratch":{arrays}}}"#)),
        ),
        (
            "inputs",
            one_op_graph(&format!(r#"{{"merge":{{"inputs":{arrays}}}}}"#)),
        ),
        (
            "objects",
            one_op_graph(&format!(r#"{{"scratch":{objects}}}"#)),
        ),
        (
            "epoch",
            format!(r#"{{"version":1,"epoch":{arrays},"ops":{{}},"outputs":{{}}}}"#),
        ),
        (
            "outputs",
            format!(r#"{{"version":1,"ops":{{"a":{{"scratch":{{}}}}}},"outputs":{objects}}}"#),
        ),
        ("document", arrays.clone()),
        (
            "ir-ops",
            format!(r#"{{"version":1,"epoch":0,"ops":[{arrays}],"outputs":{{}},"rewrites":[]}}"#),
        ),
    ];
    for (name, text) in &cases {
        let path = dir.write(&format!("{name}.json"), text);
        for sub in ["compile", "explain", "dot"] {
            let run = hm(&[sub, &path]);
            run.assert_error(2);
            assert_eq!(
                run.stderr.lines().count(),
                1,
                "{name}: {}",
                head(&run.stderr)
            );
        }
        let run = hm_in(&["compile", "-"], text.as_bytes());
        run.assert_error(2);
        assert!(run.stderr.contains("line"), "{name}: {}", head(&run.stderr));
    }
}

/// A 5 MB string as data, as a path, as an op name, as an output name.
#[test]
fn hostile_huge_strings() {
    let dir = Scratch::new();
    let s = "x".repeat(5 * 1024 * 1024);
    // Data and paths: they work, and come back whole.
    let data = dir.write(
        "data.json",
        one_op_graph(&format!(r#"{{"mkfile":{{"path":"/f","data":"{s}"}}}}"#)),
    );
    let run = hm(&["compile", &data]);
    run.assert_ok();
    let v = run.json();
    assert_eq!(
        v["ops"][0]["mkfile"]["data"].as_str().map(str::len),
        Some(s.len())
    );
    let path = dir.write(
        "path.json",
        one_op_graph(&format!(r#"{{"mkfile":{{"path":"/{s}"}}}}"#)),
    );
    let run = hm(&["compile", &path]);
    run.assert_ok();
    assert_eq!(
        run.json()["ops"][0]["mkfile"]["path"]
            .as_str()
            .map(str::len),
        Some(s.len() + 1)
    );
    let placed = dir.write(
        "placed.json",
        format!(
            r#"{{"version":1,"ops":{{"s":{{"scratch":{{}}}},"b":{{"mkdir":{{"path":"/b"}}}},
            "w":{{"with_directory":{{"base":"b","source":"s","path":"/{s}"}}}}}},"outputs":{{"default":"w"}}}}"#
        ),
    );
    for args in [
        vec!["compile"],
        vec!["explain"],
        vec!["dot"],
        vec!["dot", "--compiled"],
    ] {
        let mut argv = args.clone();
        argv.push(&placed);
        hm(&argv).assert_ok();
    }
    // Names: at most 128 characters, a clean error that does not echo 5 MB.
    let op_name = dir.write(
        "op-name.json",
        format!(
            r#"{{"version":1,"ops":{{"{s}":{{"scratch":{{}}}}}},"outputs":{{"default":"a"}}}}"#
        ),
    );
    let out_name = dir.write(
        "out-name.json",
        format!(r#"{{"version":1,"ops":{{"a":{{"scratch":{{}}}}}},"outputs":{{"{s}":"a"}}}}"#),
    );
    for p in [op_name, out_name] {
        let run = hm(&["compile", &p]);
        run.assert_error(2);
        assert!(
            run.stderr.len() < 10_000,
            "{p}: a {} byte message",
            run.stderr.len()
        );
    }
}

/// Newlines (and other control characters) in `mkfile.path` and `data`: they
/// compile, survive the JSON round trip exactly, and `dot` escapes them.
#[test]
fn hostile_newlines_in_paths_and_data() {
    let dir = Scratch::new();
    let graph = r#"{"version":1,"ops":{
        "f":{"mkfile":{"path":"/etc/a\nb\r\tc \"q\" \\ \u0007","data":"line1\nline2\r\n\u0000end"}},
        "s":{"scratch":{}},
        "w":{"with_directory":{"base":"f","source":"s","path":"/srv/x\ny"}}
      },"outputs":{"default":"w","file":"f"}}"#;
    let path = dir.write("nl.json", graph);
    let run = hm(&["compile", &path]);
    run.assert_ok();
    let v = check_compiled("newlines", run.out());
    let mkfile = v["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|op| op.get("mkfile"))
        .unwrap();
    assert_eq!(mkfile["path"], "/etc/a\nb\r\tc \"q\" \\ \u{7}");
    assert_eq!(mkfile["data"], "line1\nline2\r\n\u{0}end");
    let placed = layers(&v)
        .into_iter()
        .find_map(|l| placement(&l).map(|(_, at)| at.to_string()))
        .unwrap();
    assert_eq!(placed, "/srv/x\ny");
    // Fed back, the same.
    let ir = dir.write("nl-ir.json", run.out());
    let again = hm(&["compile", &ir]);
    again.assert_ok();
    assert_eq!(ops_and_outputs(&again.json()), ops_and_outputs(&v));
    // dot: no raw newline inside a label, Graphviz takes the IR form.
    for args in [vec!["dot"], vec!["dot", "--compiled"]] {
        let mut argv = args.clone();
        argv.push(&path);
        let run = hm(&argv);
        run.assert_ok();
        check_dot_syntax(&format!("{args:?} newlines"), run.out());
        assert!(!run.out().contains('\u{7}') && !run.out().contains('\r'));
    }
    if graphviz() {
        let run = hm(&["dot", "--compiled", &path]);
        let (ok, err) = render_svg(run.out());
        assert!(ok, "dot -Tsvg: {err}");
    } else {
        println!("skipped: Graphviz `dot` is not installed");
    }
}

/// `explain` keeps one line per rewrite even when a path holds a newline.
#[test]
fn explain_escapes_newlines() {
    let dir = Scratch::new();
    let path = dir.write(
        "nl.json",
        r#"{"version":1,"ops":{"s":{"scratch":{}},"b":{"mkdir":{"path":"/b"}},
           "w":{"with_directory":{"base":"b","source":"s","path":"/srv/x\ny"}}},
           "outputs":{"default":"w"}}"#,
    );
    let v = hm(&["compile", &path]).assert_ok().json();
    let run = hm(&["explain", &path]);
    run.assert_ok();
    assert_eq!(
        run.out().lines().count(),
        v["rewrites"].as_array().unwrap().len(),
        "{}",
        run.out()
    );
}

/// An error message is one line, and echoes no control character, whatever
/// the graph's strings hold (a hostile graph must not write terminal escapes).
#[test]
fn error_messages_escape_control_characters() {
    let dir = Scratch::new();
    let cases = [
        one_op_graph(r#"{"mkfile":{"path":"/x","base":"no\nop"}}"#),
        one_op_graph(r#"{"exe\nc":{}}"#),
        one_op_graph(r#"{"ex\u001b[31mred":{}}"#),
        one_op_graph(r#"{"mkfile":{"path":"/x","pe\nrm":1}}"#),
        r#"{"version":1,"ops":{"a":{"scratch":{}}},"outputs":{"d":"no\nop"}}"#.to_string(),
        r#"{"version":1,"ops":{"a\nb":{"scratch":{}}},"outputs":{"d":"a"}}"#.to_string(),
        r#"{"version":1,"ops":{"a":{"scratch":{}}},"outputs":{"d":"a"},"x\ny":1}"#.to_string(),
    ];
    let mut bad = Vec::new();
    for (i, text) in cases.iter().enumerate() {
        let p = dir.write(&format!("c{i}.json"), text);
        let run = hm(&["compile", &p]);
        run.assert_error(2);
        let body = run.stderr.strip_suffix('\n').unwrap_or(&run.stderr);
        if body.chars().any(char::is_control) {
            bad.push(format!("{text}\n  -> {:?}", run.stderr));
        }
    }
    assert!(
        bad.is_empty(),
        "raw control characters in:\n{}",
        bad.join("\n")
    );
}

/// Invalid UTF-8 bytes: exit 2 with a message that says so, from a file and
/// from stdin, in a string and outside one.
#[test]
fn hostile_invalid_utf8() {
    let dir = Scratch::new();
    let mut in_string = br#"{"version":1,"ops":{"a":{"mkfile":{"path":"/x"#.to_vec();
    in_string.extend_from_slice(b"\xff\xfe\x80");
    in_string.extend_from_slice(br#""}}},"outputs":{"default":"a"}}"#);
    let mut outside = b"{\"version\":1,\xc3\x28".to_vec();
    outside.extend_from_slice(br#""ops":{}}"#);
    let overlong = b"{\"version\":1,\"ops\":{\"\xc0\xaf\":{}}}".to_vec();
    for (name, bytes) in [
        ("in-string", in_string),
        ("outside", outside),
        ("overlong", overlong),
    ] {
        let p = dir.write(&format!("{name}.json"), &bytes);
        for sub in ["compile", "explain", "dot"] {
            let run = hm(&[sub, &p]);
            run.assert_error(2);
            assert!(run.stderr.contains("UTF-8"), "{name}: {}", run.stderr);
            assert!(
                run.stderr.contains(&p),
                "{name}: path not named: {}",
                run.stderr
            );
        }
        let run = hm_in(&["compile", "-"], &bytes);
        run.assert_error(2);
        assert!(run.stderr.contains("UTF-8"), "{name} stdin: {}", run.stderr);
    }
}

/// A UTF-8 byte order mark before the graph: either accepted (the same IR as
/// without it) or a clean exit 2. Prints which.
#[test]
fn hostile_utf8_bom() {
    let dir = Scratch::new();
    let path = fixture("chain-3.json");
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend(std::fs::read(&path).unwrap());
    let p = dir.write("bom.json", &bytes);
    let plain = hm(&["compile", &path]);
    let run = hm(&["compile", &p]);
    run.assert_works_or_fails_cleanly();
    if run.code() == Some(0) {
        println!("BOM: accepted");
        assert_eq!(run.stdout, plain.stdout);
    } else {
        println!("BOM: rejected with exit 2: {}", run.stderr.trim_end());
        assert!(run.stderr.contains("line 1 column 1"), "{}", run.stderr);
    }
    hm_in(&["compile", "-"], &bytes).assert_works_or_fails_cleanly();
}

/// Duplicate op names: exit 2 naming the duplicate. Other duplicate keys of
/// the graph's own maps too.
#[test]
fn duplicate_op_names() {
    let dir = Scratch::new();
    let text = r#"{"version":1,"ops":{
        "dup-op":{"mkdir":{"path":"/a"}},
        "other":{"scratch":{}},
        "dup-op":{"mkdir":{"path":"/b"}}},
      "outputs":{"default":"dup-op"}}"#;
    let p = dir.write("dup.json", text);
    for sub in ["compile", "explain", "dot"] {
        let run = hm(&[sub, &p]);
        run.assert_error(2);
        assert!(run.stderr.contains("`dup-op`"), "{}", run.stderr);
        assert!(
            run.stderr.contains("twice") || run.stderr.contains("duplicate"),
            "{}",
            run.stderr
        );
    }
    for text in [
        r#"{"version":1,"ops":{"a":{"scratch":{}}},"outputs":{"out1":"a","out1":"a"}}"#,
        r#"{"version":1,"version":1,"ops":{"a":{"scratch":{}}},"outputs":{"d":"a"}}"#,
        r#"{"version":1,"ops":{"a":{"scratch":{}}},"ops":{},"outputs":{"d":"a"}}"#,
    ] {
        let p = dir.write("dup2.json", text);
        hm(&["compile", &p]).assert_error(2);
    }
}

/// Duplicate keys inside an op (a field, or the kind itself) are rejected
/// like duplicate op names, not silently resolved to the last one.
#[test]
fn duplicate_keys_inside_an_op() {
    let dir = Scratch::new();
    for op in [
        r#"{"mkfile":{"path":"/a","path":"/b"}}"#,
        r#"{"mkfile":{"path":"/a"},"mkfile":{"path":"/b"}}"#,
        r#"{"merge":{"inputs":[],"inputs":[]}}"#,
    ] {
        let p = dir.write("dup.json", one_op_graph(op));
        let run = hm(&["compile", &p]);
        run.assert_no_crash();
        assert_eq!(run.code(), Some(2), "{op} accepted: {}", head(run.out()));
    }
}

/// A graph (a map of `ops`) with a `rewrites` field: exit 2.
#[test]
fn graph_with_rewrites_field() {
    let dir = Scratch::new();
    for rewrites in ["[]", r#"[{"op":"a","rule":"dead","reason":"x"}]"#, "null"] {
        let text = format!(
            r#"{{"version":1,"ops":{{"a":{{"scratch":{{}}}}}},"outputs":{{"default":"a"}},"rewrites":{rewrites}}}"#
        );
        let p = dir.write("rw.json", &text);
        for sub in ["compile", "explain", "dot"] {
            let run = hm(&[sub, &p]);
            run.assert_error(2);
            assert!(run.stderr.contains("rewrites"), "{}", run.stderr);
        }
    }
}

/// The JSON text of a chain of `n` ops: `first` then `n - 1` ops made by
/// `step(i, previous)`.
fn chain_graph(n: usize, first: &str, step: impl Fn(usize, usize) -> String) -> String {
    let mut s = String::with_capacity(n * 80);
    s.push_str(r#"{"version":1,"ops":{"o0":"#);
    s.push_str(first);
    for i in 1..n {
        let _ = write!(s, ",\"o{i}\":{}", step(i, i - 1));
    }
    let _ = write!(s, r#"}},"outputs":{{"default":"o{}"}}}}"#, n - 1);
    s
}

/// Size of the big-graph tests. SPEC §7 says a million ops, but a debug
/// build compiles a 200,000-op `with_directory` chain in ~30 s on an idle
/// machine (a release build does 1,000,000 in ~60 s, 6.6 GB), so the chains
/// here use 200,000 (the ignored bug tests) and 100,000 (the passing one).
const BIG_CHAIN: usize = 200_000;

/// A 200,000-op chain: mkfile then rm with `allow_not_found`, each the base of
/// the next. Must compile (to one fused `file` op) or fail cleanly.
#[test]
fn hostile_200k_op_rm_chain() {
    let dir = Scratch::new();
    let text = chain_graph(BIG_CHAIN, r#"{"mkfile":{"path":"/f"}}"#, |_, prev| {
        format!(r#"{{"rm":{{"base":"o{prev}","path":"/f","allow_not_found":true}}}}"#)
    });
    let p = dir.write("chain.json", text);
    let out = dir.path("out.json");
    let run = hm_with(&["compile", &p, "-o", &out], None, Duration::from_secs(120));
    run.assert_ok();
    println!("{BIG_CHAIN}-op rm chain compiled in {:?}", run.elapsed);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let ops = v["ops"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "one fused file op");
    assert_eq!(
        ops[0]["file"]["actions"].as_array().unwrap().len(),
        BIG_CHAIN
    );
}

/// A 200,000-op chain of mkdir, each the base of the next.
#[test]
fn hostile_200k_op_mkdir_chain() {
    let dir = Scratch::new();
    let text = chain_graph(BIG_CHAIN, r#"{"mkdir":{"path":"/d0"}}"#, |i, prev| {
        format!(r#"{{"mkdir":{{"base":"o{prev}","path":"/d{i}"}}}}"#)
    });
    let p = dir.write("chain.json", text);
    let out = dir.path("out.json");
    let run = hm_with(&["compile", &p, "-o", &out], None, Duration::from_secs(120));
    run.assert_ok();
    println!("{BIG_CHAIN}-op mkdir chain compiled in {:?}", run.elapsed);
}

/// A 200,000-op chain of one-input merges (each merge[previous, scratch]):
/// drop-scratch replaces each by its input, so one op ends up with all the
/// names.
#[test]
fn hostile_200k_op_merge_chain() {
    let dir = Scratch::new();
    let text = chain_graph(BIG_CHAIN, r#"{"mkdir":{"path":"/d"}}"#, |_, prev| {
        format!(r#"{{"merge":{{"inputs":["o{prev}","s"]}}}}"#)
    })
    .replacen(r#""ops":{"#, r#""ops":{"s":{"scratch":{}},"#, 1);
    let p = dir.write("chain.json", text);
    let out = dir.path("out.json");
    let run = hm_with(&["compile", &p, "-o", &out], None, Duration::from_secs(120));
    run.assert_ok();
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["ops"][0]["names"].as_array().unwrap().len(), BIG_CHAIN);
}

/// A 100,000-op `with_directory` chain (the flatten path, no fuse): compiles
/// to one merge of 100,000 layers.
#[test]
fn hostile_100k_op_with_directory_chain() {
    let n = 100_000;
    let dir = Scratch::new();
    let text = chain_graph(n, r#"{"mkdir":{"path":"/d"}}"#, |i, prev| {
        format!(r#"{{"with_directory":{{"base":"o{prev}","path":"/p{i}","source":"src"}}}}"#)
    })
    .replacen(r#""ops":{"#, r#""ops":{"src":{"local":{"path":"x"}},"#, 1);
    let p = dir.write("chain.json", text);
    let out = dir.path("out.json");
    // A generous cap: it catches a hang, not a slow machine.
    let run = hm_with(&["compile", &p, "-o", &out], None, Duration::from_secs(600));
    run.assert_ok();
    println!("{n}-op with_directory chain compiled in {:?}", run.elapsed);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let ops = v["ops"].as_array().unwrap();
    assert_eq!(ops.len(), 3, "mkdir, local, one merge");
    let merge = ops.iter().find_map(|op| op.get("merge")).unwrap();
    assert_eq!(merge["layers"].as_array().unwrap().len(), n);
    // placed-merge for o1..o(n-1), flatten for o2..o(n-1).
    assert_eq!(v["rewrites"].as_array().unwrap().len(), (n - 1) + (n - 2));
}

// ===========================================================================
// Determinism
// ===========================================================================

/// Running every subcommand twice on every fixture gives identical bytes.
#[test]
fn every_fixture_compiles_deterministically() {
    let mut outputs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for path in valid_fixtures() {
        for args in [
            vec!["compile"],
            vec!["compile", "--strategy", "copy"],
            vec!["explain"],
            vec!["dot"],
            vec!["dot", "--compiled"],
        ] {
            let mut argv = args.clone();
            argv.push(&path);
            let a = hm(&argv);
            a.assert_ok();
            let b = hm(&argv);
            b.assert_ok();
            assert_eq!(a.stdout, b.stdout, "{argv:?} differs between runs");
            outputs.insert(argv.join(" "), a.stdout);
        }
    }
    // Different fixtures compile to different IR.
    let irs: BTreeSet<&Vec<u8>> = outputs
        .iter()
        .filter(|(k, _)| k.starts_with("compile /"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        irs.len() > 50,
        "only {} distinct compile outputs",
        irs.len()
    );
}
