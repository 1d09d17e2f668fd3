//! Property tests (proptest) of the graph reader and the compiler.
//!
//! A generator makes random *valid* graphs in the version 1 format (SPEC §2):
//! every op kind with random options, references only to earlier ops (so the
//! graph is acyclic), `with_directory` chains, merges of merges, diffs fed
//! into merges, duplicated ops under other names, dead ops, 1–3 outputs.
//! Over them the tests check:
//!
//! - the graph parses, and reads back equal from its own `to_json`;
//! - determinism: compiling twice, compiling the same graph written with its
//!   object keys in another order, and compiling it with every op renamed
//!   give the same IR (names aside);
//! - idempotence: compiling the compiled IR again gives the same ops;
//! - structural invariants of the IR (SPEC §3, §6);
//! - no panic on hostile input: arbitrary JSON, mutated graphs and IRs,
//!   random text, and a few explicit giants (deep nesting, a 200,000-input
//!   merge, a 100,000-op chain).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use hardmerge::compile::{compile, compile_ir, Compiled, Strategy as Build};
use hardmerge::graph::{parse_graph, Graph};
use hardmerge::{parse_input, Input};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// A tiny deterministic RNG, for choices made outside proptest (key orders,
// whitespace, renaming) from a seed proptest draws.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// The generator of valid graphs.

const TREE_PATHS: &[&str] = &[
    "a",
    "/a/b",
    "a/./b/../c",
    "/",
    ".",
    "",
    "/..",
    "b/",
    "x.y/z_-1",
    "../a",
    "//a//b//",
    "/a/b/c/d",
];
/// Paths that never clean to `/` (for `rm` and `with_file`'s `source_path`).
const NON_ROOT_PATHS: &[&str] = &[
    "a",
    "/a/b",
    "a/./b/../c",
    "b/",
    "x.y/z_-1",
    "../a",
    "//a//b//",
    "/t.txt",
];
const RM_PATHS: &[&str] = &["a", "/a/b", "a/./b/../c", "/a/*.log", "*/b", "../a", "b/"];
/// `local` paths: relative, never leaving the context.
const LOCAL_PATHS: &[&str] = &["app", "a/./b/../c", ".", "", "a/b/", "x/../y", "ctx"];
const SRCS: &[&str] = &["/", "a", "/a/b", "/*.txt", "a/./b/../c", "x/[ab]?", "."];
const DESTS: &[&str] = &[
    "/",
    "/d/",
    "d/.",
    "./",
    "a",
    "/a/b",
    "a/./b/../c",
    "/srv/app",
];
const PATTERNS: &[&str] = &[
    "*.log",
    "target/**",
    "!keep.log",
    "**/*.tmp",
    "/abs/x",
    "a/*/b",
    "[a-c]?",
    "docs",
];
const MODES: &[&str] = &["0644", "755", "4755", "0", "7777", "00644", "0755", "1777"];
const TIMESTAMPS: &[i64] = &[0, 1, -1, 1_700_000_000, i64::MAX, i64::MIN];
const IDS: &[u32] = &[0, 1, 1000, 65534, u32::MAX];
const TARGETS: &[&str] = &["a", "../x", "/etc/passwd", "b/c/", "."];
const OUTPUT_NAMES: &[&str] = &["default", "out", "b.2", "x-y_Z"];
const EPOCHS: &[i64] = &[0, 1, -7, 1_700_000_000, i64::MAX, i64::MIN];
/// Op names: the characters SPEC §2 allows, short enough that the fixed
/// names the mutations add (longer) never collide.
const NAME_RE: &str = "[A-Za-z0-9_.-]{1,12}";
const MISSING: &str = "does-not-exist-anywhere";

/// How op `i` picks an earlier op to use: the one just before it (chains of
/// `with_directory` and of file ops), one no op uses yet (so few ops are
/// dead), or any.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Prev,
    Fresh(Index),
    Any(Index),
}

/// One field of a generated op: a plain value, or references to earlier ops
/// (picks while generating, indices once resolved; rendered as names).
#[derive(Clone, Debug)]
enum F {
    V(Value),
    P(Pick),
    Ps(Vec<Pick>),
    R(usize),
    Rs(Vec<usize>),
}

/// One generated op: its kind and fields, in the order generated.
#[derive(Clone, Debug)]
struct GenOp {
    kind: &'static str,
    fields: Vec<(&'static str, F)>,
}

impl GenOp {
    fn new(kind: &'static str) -> GenOp {
        GenOp {
            kind,
            fields: Vec::new(),
        }
    }

    fn v(mut self, key: &'static str, value: Option<Value>) -> GenOp {
        if let Some(v) = value {
            self.fields.push((key, F::V(v)));
        }
        self
    }

    fn r(mut self, key: &'static str, target: Option<Pick>) -> GenOp {
        if let Some(t) = target {
            self.fields.push((key, F::P(t)));
        }
        self
    }

    fn field(&self, key: &str) -> Option<&F> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, f)| f)
    }

    fn value(&self, key: &str) -> Option<&Value> {
        match self.field(key) {
            Some(F::V(v)) => Some(v),
            _ => None,
        }
    }

    fn refs(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (_, f) in &self.fields {
            match f {
                F::R(r) => out.push(*r),
                F::Rs(rs) => out.extend(rs),
                F::V(_) | F::P(_) | F::Ps(_) => {}
            }
        }
        out
    }

    fn render(&self, names: &[String]) -> Value {
        let mut fields = Map::new();
        for (k, f) in &self.fields {
            let v = match f {
                F::V(v) => v.clone(),
                F::R(r) => json!(names[*r]),
                F::Rs(rs) => Value::Array(rs.iter().map(|r| json!(names[*r])).collect()),
                F::P(_) | F::Ps(_) => unreachable!("picks are resolved"),
            };
            fields.insert((*k).to_string(), v);
        }
        let mut m = Map::new();
        m.insert(self.kind.to_string(), Value::Object(fields));
        Value::Object(m)
    }
}

/// A generated graph: ops (op `i` only refers to ops before it), a pool of
/// `2n` distinct names (the first `n` name the ops), outputs, epoch, and a
/// seed for key orders and renaming.
#[derive(Clone, Debug)]
struct GenGraph {
    epoch: Option<i64>,
    ops: Vec<GenOp>,
    pool: Vec<String>,
    outputs: BTreeMap<&'static str, usize>,
    seed: u64,
}

impl GenGraph {
    fn names(&self) -> &[String] {
        &self.pool[..self.ops.len()]
    }

    /// A random bijection of the op names onto other valid names (some of
    /// them maybe the old names of other ops).
    fn renamed(&self) -> Vec<String> {
        let mut p = self.pool.clone();
        Rng(self.seed ^ 0x5EED).shuffle(&mut p);
        p.truncate(self.ops.len());
        p
    }

    fn value_with(&self, names: &[String]) -> Value {
        let ops: Map<String, Value> = self
            .ops
            .iter()
            .enumerate()
            .map(|(i, op)| (names[i].clone(), op.render(names)))
            .collect();
        let outputs: Map<String, Value> = self
            .outputs
            .iter()
            .map(|(k, i)| ((*k).to_string(), json!(names[*i])))
            .collect();
        let mut top = json!({"version": 1, "ops": ops, "outputs": outputs});
        if let Some(e) = self.epoch {
            top["epoch"] = json!(e);
        }
        top
    }

    fn value(&self) -> Value {
        self.value_with(self.names())
    }

    fn text(&self) -> String {
        self.value().to_string()
    }

    /// Which ops an output reaches.
    fn live(&self) -> Vec<bool> {
        let mut live = vec![false; self.ops.len()];
        let mut stack: Vec<usize> = self.outputs.values().copied().collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut live[i], true) {
                stack.extend(self.ops[i].refs());
            }
        }
        live
    }
}

fn owner() -> BoxedStrategy<Option<Value>> {
    let ids = (select(IDS), select(IDS));
    prop_oneof![
        6 => Just(None),
        1 => ids.clone().prop_map(|(u, g)| Some(json!(format!("{u}:{g}")))),
        1 => ids.prop_map(|(u, g)| Some(json!({"uid": u, "gid": g}))),
    ]
    .boxed()
}

fn mode() -> BoxedStrategy<Option<Value>> {
    prop::option::weighted(0.25, select(MODES).prop_map(|m| json!(m))).boxed()
}

fn timestamp() -> BoxedStrategy<Option<Value>> {
    prop::option::weighted(0.2, select(TIMESTAMPS).prop_map(Value::from)).boxed()
}

fn flag() -> BoxedStrategy<Option<Value>> {
    prop::option::weighted(0.4, any::<bool>().prop_map(Value::Bool)).boxed()
}

fn patterns() -> BoxedStrategy<Option<Value>> {
    prop::option::weighted(
        0.3,
        prop::collection::vec(select(PATTERNS), 0..3).prop_map(|v| json!(v)),
    )
    .boxed()
}

fn path(list: &'static [&'static str]) -> BoxedStrategy<Value> {
    select(list).prop_map(|p| json!(p)).boxed()
}

/// A reference from op `i` (> 0) to an earlier op.
fn reference(i: usize) -> BoxedStrategy<Pick> {
    assert!(i > 0);
    prop_oneof![
        2 => Just(Pick::Prev),
        3 => any::<Index>().prop_map(Pick::Fresh),
        1 => any::<Index>().prop_map(Pick::Any),
    ]
    .boxed()
}

fn base(i: usize) -> BoxedStrategy<Option<Pick>> {
    if i == 0 {
        Just(None).boxed()
    } else {
        prop::option::weighted(0.85, reference(i)).boxed()
    }
}

/// `mkfile` content: none, `data`, or `data_base64` (UTF-8 or not).
fn data() -> BoxedStrategy<Vec<(&'static str, Value)>> {
    prop_oneof![
        Just(vec![]),
        Just(vec![("data", json!("hello\n"))]),
        Just(vec![("data", json!(""))]),
        Just(vec![("data_base64", json!("aGVsbG8K"))]),
        Just(vec![("data_base64", json!("/w=="))]),
    ]
    .boxed()
}

/// Op `i` of a graph. `dup` (an earlier op's exact copy under this name)
/// is resolved by [`graph_strategy`].
fn op_strategy(i: usize) -> BoxedStrategy<GenOp> {
    let scratch = Just(GenOp::new("scratch")).boxed();
    let local = (path(LOCAL_PATHS), patterns(), patterns())
        .prop_map(|(p, inc, exc)| {
            GenOp::new("local")
                .v("path", Some(p))
                .v("include", inc)
                .v("exclude", exc)
        })
        .boxed();
    let mkdir = (
        base(i),
        path(TREE_PATHS),
        mode(),
        flag(),
        owner(),
        timestamp(),
    )
        .prop_map(|(b, p, m, parents, o, t)| {
            GenOp::new("mkdir")
                .r("base", b)
                .v("path", Some(p))
                .v("mode", m)
                .v("parents", parents)
                .v("owner", o)
                .v("timestamp", t)
        })
        .boxed();
    let mkfile = (
        base(i),
        path(TREE_PATHS),
        data(),
        mode(),
        owner(),
        timestamp(),
    )
        .prop_map(|(b, p, d, m, o, t)| {
            let mut op = GenOp::new("mkfile").r("base", b).v("path", Some(p));
            for (k, v) in d {
                op = op.v(k, Some(v));
            }
            op.v("mode", m).v("owner", o).v("timestamp", t)
        })
        .boxed();
    let symlink = (
        base(i),
        path(TREE_PATHS),
        select(TARGETS),
        owner(),
        timestamp(),
    )
        .prop_map(|(b, p, target, o, t)| {
            GenOp::new("symlink")
                .r("base", b)
                .v("path", Some(p))
                .v("target", Some(json!(target)))
                .v("owner", o)
                .v("timestamp", t)
        })
        .boxed();
    let rm = (base(i), path(RM_PATHS), flag(), flag())
        .prop_map(|(b, p, nf, wc)| {
            GenOp::new("rm")
                .r("base", b)
                .v("path", Some(p))
                .v("allow_not_found", nf)
                .v("allow_wildcard", wc)
        })
        .boxed();
    if i == 0 {
        let empty_merge = Just(GenOp::new("merge").v("inputs", Some(json!([])))).boxed();
        return prop_oneof![scratch, local, mkdir, mkfile, symlink, rm, empty_merge].boxed();
    }
    let copy = (
        (base(i), reference(i), path(SRCS), path(DESTS)),
        (owner(), mode(), timestamp()),
        (flag(), flag(), flag(), flag(), flag(), flag()),
        (patterns(), patterns()),
    )
        .prop_map(|((b, s, src, dest), (o, m, t), flags, (inc, exc))| {
            let (follow, contents, create, wild, empty_wild, replace) = flags;
            GenOp::new("copy")
                .r("base", b)
                .r("source", Some(s))
                .v("src", Some(src))
                .v("dest", Some(dest))
                .v("owner", o)
                .v("mode", m)
                .v("timestamp", t)
                .v("follow_symlinks", follow)
                .v("contents_only", contents)
                .v("create_dest_path", create)
                .v("allow_wildcard", wild)
                .v("allow_empty_wildcard", empty_wild)
                .v("include", inc)
                .v("exclude", exc)
                .v("replace_existing", replace)
        })
        .boxed();
    let with_directory = (
        (
            base(i),
            reference(i),
            path(TREE_PATHS),
            prop::option::weighted(0.5, path(TREE_PATHS)),
        ),
        (patterns(), patterns()),
        (owner(), mode(), timestamp()),
    )
        .prop_map(|((b, s, p, sp), (inc, exc), (o, m, t))| {
            GenOp::new("with_directory")
                .r("base", b)
                .v("path", Some(p))
                .r("source", Some(s))
                .v("source_path", sp)
                .v("include", inc)
                .v("exclude", exc)
                .v("owner", o)
                .v("mode", m)
                .v("timestamp", t)
        })
        .boxed();
    let with_file = (
        base(i),
        reference(i),
        path(TREE_PATHS),
        path(NON_ROOT_PATHS),
        owner(),
        mode(),
        timestamp(),
    )
        .prop_map(|(b, s, p, sp, o, m, t)| {
            GenOp::new("with_file")
                .r("base", b)
                .v("path", Some(p))
                .r("source", Some(s))
                .v("source_path", Some(sp))
                .v("mode", m)
                .v("owner", o)
                .v("timestamp", t)
        })
        .boxed();
    let merge = prop::option::weighted(0.9, prop::collection::vec(reference(i), 0..5))
        .prop_map(|inputs| {
            let mut op = GenOp::new("merge");
            if let Some(inputs) = inputs {
                op.fields.push(("inputs", F::Ps(inputs)));
            }
            op
        })
        .boxed();
    let diff = (reference(i), reference(i))
        .prop_map(|(l, u)| GenOp::new("diff").r("lower", Some(l)).r("upper", Some(u)))
        .boxed();
    let dup = any::<Index>()
        .prop_map(|j| GenOp::new("dup").r("of", Some(Pick::Any(j))))
        .boxed();
    prop_oneof![
        1 => scratch,
        1 => local,
        2 => mkdir,
        2 => mkfile,
        1 => symlink,
        1 => rm,
        2 => copy,
        4 => with_directory,
        2 => with_file,
        3 => merge,
        2 => diff,
        1 => dup,
    ]
    .boxed()
}

fn graph_strategy() -> impl Strategy<Value = GenGraph> {
    (1..=40usize).prop_flat_map(|n| {
        let ops: Vec<BoxedStrategy<GenOp>> = (0..n).map(op_strategy).collect();
        let pool = prop::collection::btree_set(NAME_RE, 2 * n)
            .prop_map(|s| s.into_iter().collect::<Vec<String>>())
            .prop_shuffle();
        // An output is the last op, an op nothing uses, or any op.
        let target = prop_oneof![2 => Just(None), 2 => any::<Index>().prop_map(|x| Some((true, x))), 1 => any::<Index>().prop_map(|x| Some((false, x)))];
        let outputs = prop::collection::btree_map(select(OUTPUT_NAMES), target, 1..=3);
        let epoch = prop::option::of(select(EPOCHS));
        (ops, pool, outputs, epoch, any::<u64>()).prop_map(|(mut ops, pool, outputs, epoch, seed)| {
            let n = ops.len();
            let mut used = vec![false; n];
            for i in 0..n {
                let resolve = |p: &Pick| match *p {
                    Pick::Prev => i - 1,
                    Pick::Fresh(x) => {
                        let free: Vec<usize> = (0..i).filter(|&j| !used[j]).collect();
                        if free.is_empty() { x.index(i) } else { free[x.index(free.len())] }
                    }
                    Pick::Any(x) => x.index(i),
                };
                let fields: Vec<(&'static str, F)> = ops[i]
                    .fields
                    .iter()
                    .map(|(k, f)| {
                        let f = match f {
                            F::P(p) => F::R(resolve(p)),
                            F::Ps(ps) => F::Rs(ps.iter().map(resolve).collect()),
                            other => other.clone(),
                        };
                        (*k, f)
                    })
                    .collect();
                ops[i].fields = fields;
                if let ("dup", Some(F::R(j))) = (ops[i].kind, ops[i].field("of")) {
                    ops[i] = ops[*j].clone();
                }
                for j in ops[i].refs() {
                    used[j] = true;
                }
            }
            let sinks: Vec<usize> = (0..n).filter(|&j| !used[j]).collect();
            let outputs = outputs
                .into_iter()
                .map(|(k, t)| {
                    let i = match t {
                        None => n - 1,
                        Some((true, x)) => sinks[x.index(sinks.len())],
                        Some((false, x)) => x.index(n),
                    };
                    (k, i)
                })
                .collect();
            GenGraph {
                epoch,
                ops,
                pool,
                outputs,
                seed,
            }
        })
    })
}

// ---------------------------------------------------------------------------
// Helpers.

/// JSON text of a value with every object's entries in a random order and
/// random whitespace between tokens (arrays keep their order: it matters).
fn shuffled_text(v: &Value, seed: u64) -> String {
    fn ws(rng: &mut Rng, out: &mut String) {
        match rng.below(6) {
            0 => out.push(' '),
            1 => out.push_str("\n  "),
            2 => out.push('\t'),
            _ => {}
        }
    }
    fn go(v: &Value, rng: &mut Rng, out: &mut String) {
        ws(rng, out);
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                rng.shuffle(&mut entries);
                out.push('{');
                for (k, (key, val)) in entries.into_iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    ws(rng, out);
                    out.push_str(&serde_json::to_string(key).unwrap());
                    ws(rng, out);
                    out.push(':');
                    go(val, rng, out);
                }
                ws(rng, out);
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (k, val) in a.iter().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    go(val, rng, out);
                }
                ws(rng, out);
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
        ws(rng, out);
    }
    let mut out = String::new();
    go(v, &mut Rng(seed), &mut out);
    out
}

fn parse_ok(text: &str) -> Graph {
    match parse_graph(text) {
        Ok(g) => g,
        Err(e) => panic!("a generated graph was rejected: {e}\n{text}"),
    }
}

/// Removes every `names` key, recursively.
fn strip_names(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("names");
            m.values_mut().for_each(strip_names);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_names),
        _ => {}
    }
}

fn without_rewrites(c: &Compiled) -> Value {
    let mut v = c.to_json();
    v.as_object_mut().unwrap().remove("rewrites");
    v
}

fn rewrites(c: &Compiled) -> Vec<(String, String, String)> {
    c.to_json()["rewrites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("op"), s("rule"), s("reason"))
        })
        .collect()
}

/// The rules of the rewrites as a multiset.
fn rule_multiset(c: &Compiled) -> Vec<String> {
    let mut rules: Vec<String> = rewrites(c).into_iter().map(|(_, r, _)| r).collect();
    rules.sort();
    rules
}

/// The kind key of a compiled op or a layer's placement.
fn kind_of(op: &Value) -> &str {
    op.as_object()
        .unwrap()
        .keys()
        .find(|k| !matches!(k.as_str(), "digest" | "names"))
        .expect("an op has a kind")
}

/// Lexical cleaning of a tree path (SPEC §2), independent of the crate's.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn is_empty_list(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(v) => v.as_array().is_some_and(Vec::is_empty),
    }
}

/// The lowering rule SPEC §3 gives a placement op of the graph, and the
/// overrides `kept-copy` names.
fn expected_lowering(g: &GenGraph, op: &GenOp) -> (&'static str, Vec<&'static str>) {
    let overrides: Vec<&'static str> = ["owner", "mode", "timestamp"]
        .into_iter()
        .filter(|k| op.value(k).is_some())
        .collect();
    if !overrides.is_empty() {
        return ("kept-copy", overrides);
    }
    let s = |k: &str| {
        op.value(k)
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_string()
    };
    let filtered = !is_empty_list(op.value("include")) || !is_empty_list(op.value("exclude"));
    let whole = match op.kind {
        "with_directory" => {
            clean(&s("path")) == "/" && clean(&s("source_path")) == "/" && !filtered
        }
        "copy" => {
            clean(&s("src")) == "/"
                && clean(&s("dest")) == "/"
                && op.value("replace_existing") == Some(&json!(true))
                && op.value("allow_wildcard") != Some(&json!(true))
                && !filtered
        }
        _ => false,
    };
    let Some(F::R(source)) = op.field("source") else {
        panic!("a placement has a source")
    };
    if whole && g.ops[*source].kind != "diff" {
        ("direct-merge", vec![])
    } else {
        ("placed-merge", vec![])
    }
}

const IR_KINDS: &[&str] = &[
    "scratch", "local", "mkdir", "mkfile", "symlink", "rm", "file", "merge", "diff",
];
const ACTION_KINDS: &[&str] = &["mkdir", "mkfile", "symlink", "rm"];
const PLACEMENT_KINDS: &[&str] = &["copy", "with_directory", "with_file"];

/// Every structural promise of SPEC §3 and §6 about a compiled IR of `g`.
fn check_invariants(g: &GenGraph, c: &Compiled, strategy: Build) {
    let v = c.to_json();
    let ctx = || {
        format!(
            "{strategy:?}\ngraph: {}\nir: {}",
            g.text(),
            c.to_json_pretty()
        )
    };
    let top: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        top,
        BTreeSet::from(["epoch", "ops", "outputs", "rewrites", "version"]),
        "{}",
        ctx()
    );
    assert_eq!(v["version"], json!(1));
    let epoch = g.epoch.unwrap_or(0);
    assert_eq!(v["epoch"], json!(epoch), "{}", ctx());
    let ops = v["ops"].as_array().unwrap();
    assert_eq!(ops.len(), c.digests.len());

    // Digests: unique, well formed; references only to earlier ops.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut kinds: Vec<&str> = Vec::new();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    let mut deps: Vec<BTreeSet<&str>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let digest = op["digest"].as_str().unwrap();
        assert_eq!(digest, c.digests[i]);
        let hex = digest.strip_prefix("sha256:").expect("sha256: digest");
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{digest}"
        );
        assert!(
            index.insert(digest, i).is_none(),
            "digest {digest} twice\n{}",
            ctx()
        );
        assert!(op["names"].is_array(), "{}", ctx());
        let obj = op.as_object().unwrap();
        assert_eq!(obj.len(), 3, "digest, names and one kind: {op}");
        let kind = kind_of(op);
        assert!(IR_KINDS.contains(&kind), "kind {kind} in the IR\n{}", ctx());
        kinds.push(kind);
        let fields = &op[kind];
        let mut refs: Vec<&str> = Vec::new();
        for key in ["base", "lower", "upper"] {
            if let Some(r) = fields.get(key) {
                refs.push(r.as_str().unwrap());
            }
        }
        if kind == "merge" {
            for layer in fields["layers"].as_array().unwrap() {
                let l = layer.as_object().unwrap();
                refs.push(l["input"].as_str().unwrap());
                let link = l["link"].as_bool().expect("every layer has `link`");
                let placement: Vec<&String> = l
                    .keys()
                    .filter(|k| !matches!(k.as_str(), "input" | "link" | "names"))
                    .collect();
                assert!(placement.len() <= 1, "{layer}");
                let overridden = placement.first().is_some_and(|p| {
                    assert!(PLACEMENT_KINDS.contains(&p.as_str()), "{layer}");
                    ["owner", "mode", "timestamp"]
                        .iter()
                        .any(|k| l[p.as_str()].get(k).is_some())
                });
                match strategy {
                    Build::Copy => assert!(!link, "a reference layer links: {layer}"),
                    Build::Hardlink => assert_eq!(
                        link,
                        !overridden,
                        "hardlink exactly when no owner/mode/timestamp: {layer}\n{}",
                        ctx()
                    ),
                }
            }
        }
        if kind == "file" {
            let actions = fields["actions"].as_array().unwrap();
            assert!(
                actions.len() >= 2,
                "a file op fuses two or more actions\n{}",
                ctx()
            );
            for a in actions {
                assert!(ACTION_KINDS.contains(&kind_of(a)), "{a}");
            }
        }
        for r in &refs {
            let j = *index
                .get(r)
                .unwrap_or_else(|| panic!("{r} is not an earlier op\n{}", ctx()));
            assert!(j < i);
            *uses.entry(r).or_default() += 1;
        }
        deps.push(refs.iter().copied().collect());
        // epoch: carried exactly by the kinds that may create entries.
        let takes = matches!(kind, "mkdir" | "mkfile" | "symlink" | "file" | "merge");
        assert_eq!(
            fields.get("epoch").cloned(),
            (takes && epoch != 0).then(|| json!(epoch)),
            "epoch of {kind}\n{}",
            ctx()
        );
    }
    let outputs = v["outputs"].as_object().unwrap();
    let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    let expected: Vec<&str> = g.outputs.keys().copied().collect();
    assert_eq!(names, expected);
    for d in outputs.values() {
        let d = d.as_str().unwrap();
        assert!(index.contains_key(d), "output {d} is not an op\n{}", ctx());
        *uses.entry(d).or_default() += 1;
    }
    // Every op is reached from an output (dead ones and leftovers dropped).
    let mut live = vec![false; ops.len()];
    let mut stack: Vec<usize> = outputs
        .values()
        .map(|d| index[d.as_str().unwrap()])
        .collect();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut live[i], true) {
            stack.extend(deps[i].iter().map(|d| index[d]));
        }
    }
    assert!(
        live.iter().all(|l| *l),
        "an unreachable op is left\n{}",
        ctx()
    );

    // Order (SPEC §6): inputs first, ties by digest.
    let mut pending: Vec<usize> = deps.iter().map(BTreeSet::len).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    for (i, d) in deps.iter().enumerate() {
        for r in d {
            users[index[r]].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<(&str, usize)>> = (0..ops.len())
        .filter(|&i| pending[i] == 0)
        .map(|i| Reverse((c.digests[i].as_str(), i)))
        .collect();
    let mut order = Vec::new();
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(Reverse((c.digests[u].as_str(), u)));
            }
        }
    }
    assert_eq!(
        order,
        (0..ops.len()).collect::<Vec<_>>(),
        "op order\n{}",
        ctx()
    );

    let rw = rewrites(c);
    let rules: BTreeSet<&str> = rw.iter().map(|(_, r, _)| r.as_str()).collect();
    match strategy {
        Build::Copy => {
            assert!(
                !kinds.contains(&"file"),
                "a file op in the reference\n{}",
                ctx()
            );
            for r in ["flatten", "drop-scratch", "fuse"] {
                assert!(!rules.contains(r), "{r} in the reference\n{}", ctx());
            }
        }
        Build::Hardlink => {
            for (i, op) in ops.iter().enumerate() {
                let kind = kinds[i];
                let fields = &op[kind];
                if kind == "merge" {
                    let layers = fields["layers"].as_array().unwrap();
                    let plain = |l: &Value| {
                        l.as_object()
                            .unwrap()
                            .keys()
                            .all(|k| matches!(k.as_str(), "input" | "link" | "names"))
                    };
                    let input_of = |l: &Value| index[l["input"].as_str().unwrap()];
                    if let Some(first) = layers.first() {
                        if plain(first) {
                            assert_ne!(
                                kinds[input_of(first)],
                                "merge",
                                "flatten left a first-layer merge\n{}",
                                ctx()
                            );
                        }
                    }
                    for l in layers {
                        if plain(l) {
                            let input = input_of(l);
                            assert_ne!(
                                kinds[input],
                                "scratch",
                                "a scratch layer is left\n{}",
                                ctx()
                            );
                            let empty = kinds[input] == "merge"
                                && ops[input]["merge"]["layers"].as_array().unwrap().is_empty();
                            assert!(!empty, "an empty-merge layer is left\n{}", ctx());
                        }
                    }
                    if let [only] = layers.as_slice() {
                        assert!(
                            !plain(only) || kinds[input_of(only)] == "diff",
                            "a one-plain-layer merge is left\n{}",
                            ctx()
                        );
                    }
                }
                // fuse: a file op's base is never a file op used only by it.
                if ACTION_KINDS.contains(&kind) || kind == "file" {
                    if let Some(b) = fields.get("base").and_then(Value::as_str) {
                        let bk = kinds[index[b]];
                        if ACTION_KINDS.contains(&bk) || bk == "file" {
                            assert!(uses[b] >= 2, "an unfused chain of file ops\n{}", ctx());
                        }
                    }
                }
            }
        }
    }

    // The rewrites record exactly the graph's dead ops and one lowering per
    // live placement, by SPEC §3's rules.
    let gnames = g.names();
    let by_name: HashMap<&str, usize> = gnames
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let glive = g.live();
    let mut dead: Vec<&str> = rw
        .iter()
        .filter(|(_, r, _)| r == "dead")
        .map(|(o, _, _)| o.as_str())
        .collect();
    dead.sort_unstable();
    let mut expected_dead: Vec<&str> = (0..g.ops.len())
        .filter(|&i| !glive[i])
        .map(|i| gnames[i].as_str())
        .collect();
    expected_dead.sort_unstable();
    assert_eq!(dead, expected_dead, "dead records\n{}", ctx());
    let mut lowered: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (o, r, reason) in &rw {
        if matches!(r.as_str(), "direct-merge" | "placed-merge" | "kept-copy") {
            let prior = lowered.insert(o.as_str(), (r.as_str(), reason.as_str()));
            assert!(prior.is_none(), "{o} lowered twice\n{}", ctx());
        }
    }
    for (i, op) in g.ops.iter().enumerate() {
        let name = gnames[i].as_str();
        if !glive[i] || !PLACEMENT_KINDS.contains(&op.kind) {
            assert!(!lowered.contains_key(name), "{name} lowered\n{}", ctx());
            continue;
        }
        let (rule, overrides) = expected_lowering(g, op);
        let (got, reason) = lowered
            .get(name)
            .unwrap_or_else(|| panic!("live placement {name} not lowered\n{}", ctx()));
        assert_eq!(*got, rule, "rule of {name}\n{}", ctx());
        for o in overrides {
            assert!(
                reason.contains(o),
                "kept-copy of {name} does not name {o}: {reason}"
            );
        }
    }
    for (o, r, _) in &rw {
        if r == "kept-copy" {
            let op = &g.ops[by_name[o.as_str()]];
            assert!(PLACEMENT_KINDS.contains(&op.kind));
            assert!(["owner", "mode", "timestamp"]
                .iter()
                .any(|k| op.value(k).is_some()));
        }
    }
}

/// Parses and, when it is valid, compiles `text` with both strategies,
/// rendering everything: never a panic; an error says something.
fn exercise(text: &str) {
    match parse_input(text) {
        Ok(Input::Graph(g)) => {
            for s in [Build::Hardlink, Build::Copy] {
                let c = compile(&g, s);
                let _ = c.to_json_pretty();
                let _ = c.explain();
            }
        }
        Ok(Input::Ir(ir)) => {
            for s in [Build::Hardlink, Build::Copy] {
                let c = compile_ir(ir.clone(), s);
                let _ = c.to_json_pretty();
                let _ = c.explain();
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.trim().is_empty(), "an empty error message");
        }
    }
}

// ---------------------------------------------------------------------------
// 1–4: valid graphs.

/// The number of cases: `PROPTEST_CASES` when set (for long runs), else `n`.
fn cases(n: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    /// Generated graphs parse, as a graph, and read back equal from their
    /// own JSON.
    #[test]
    fn generated_graphs_are_valid(g in graph_strategy()) {
        let text = g.text();
        let graph = parse_ok(&text);
        prop_assert_eq!(graph.ops.len(), g.ops.len());
        prop_assert_eq!(graph.epoch, g.epoch.unwrap_or(0));
        match parse_input(&text) {
            Ok(Input::Graph(other)) => prop_assert_eq!(&other, &graph),
            other => prop_assert!(false, "not read as a graph: {:?}", other.map(|_| ())),
        }
        let again = parse_ok(&graph.to_json().to_string());
        prop_assert_eq!(again, graph);
    }

    /// Compiling is a function of the graph: twice, with keys in another
    /// order and other whitespace, and with other op names.
    #[test]
    fn compiling_is_deterministic(g in graph_strategy()) {
        let graph = parse_ok(&g.text());
        let shuffled = parse_ok(&shuffled_text(&g.value(), g.seed));
        let renamed = parse_ok(&g.value_with(&g.renamed()).to_string());
        for s in [Build::Hardlink, Build::Copy] {
            let once = compile(&graph, s);
            let text = once.to_json_pretty();
            prop_assert_eq!(&compile(&graph, s).to_json_pretty(), &text, "twice ({:?})", s);
            prop_assert_eq!(&compile(&shuffled, s).to_json_pretty(), &text, "keys shuffled ({:?})", s);
            let other = compile(&renamed, s);
            let (mut a, mut b) = (without_rewrites(&once), without_rewrites(&other));
            strip_names(&mut a);
            strip_names(&mut b);
            prop_assert_eq!(&a, &b, "renamed ({:?})\n{}", s, g.text());
            prop_assert_eq!(&once.digests, &other.digests);
            prop_assert_eq!(rule_multiset(&once), rule_multiset(&other), "rules, renamed ({:?})\n{}", s, g.text());
        }
    }

    /// Compiling the compiled IR again gives the same ops and outputs.
    #[test]
    fn compiling_is_idempotent(g in graph_strategy()) {
        let graph = parse_ok(&g.text());
        for s in [Build::Hardlink, Build::Copy] {
            let once = compile(&graph, s);
            let text = once.to_json_pretty();
            let ir = match parse_input(&text) {
                Ok(Input::Ir(ir)) => ir,
                Ok(Input::Graph(_)) => panic!("compiled output read back as a graph"),
                Err(e) => panic!("compiled output rejected: {e}\n{text}"),
            };
            let twice = compile_ir(ir, s);
            prop_assert_eq!(without_rewrites(&once), without_rewrites(&twice), "{:?}\n{}", s, g.text());
        }
    }

    /// The structural promises of the IR.
    #[test]
    fn compiled_ir_keeps_its_invariants(g in graph_strategy()) {
        let graph = parse_ok(&g.text());
        for s in [Build::Hardlink, Build::Copy] {
            check_invariants(&g, &compile(&graph, s), s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// `names` (SPEC §3): an IR op lists the graph ops it stands for. An
    /// output added on one of them changes no rewrite of that op (only the
    /// use counts of `flatten` and `fuse` could move, and they concern
    /// other ops), so the new output is that op's digest. A `file` op is
    /// probed through its last action, the op the chain ends in.
    #[test]
    fn names_are_the_ops_they_stand_for(g in graph_strategy()) {
        use hardmerge::compile::IrOp;
        let graph = parse_ok(&g.text());
        for s in [Build::Hardlink, Build::Copy] {
            let c = compile(&graph, s);
            for (i, node) in c.ir.nodes.iter().enumerate() {
                let probed = match &node.op {
                    IrOp::File { actions, .. } => &actions.last().unwrap().names,
                    _ => &node.names,
                };
                for x in probed {
                    let mut with_probe = graph.clone();
                    with_probe.outputs.insert(PROBE.to_string(), x.clone());
                    let c2 = compile(&with_probe, s);
                    let got = &c2.digests[c2.output(PROBE).unwrap()];
                    prop_assert_eq!(
                        got, &c.digests[i],
                        "`{}` is named on {} ({:?}), but stands for another op\n{}",
                        x, c.digests[i], s, g.text()
                    );
                }
            }
        }
    }
}

const PROBE: &str = "zz-probe-output";

/// An inner merge that `flatten` empties (its layers moved into the outer
/// merge) is gone before `dedupe`: it must not fold with a real empty merge,
/// which would then carry its name (`o2` named `["w1", "zz"]`, and "zz: the
/// same op as `w1`" in `explain`, though `w1` is a `with_directory` of a
/// local onto `/x`). Found by `names_are_the_ops_they_stand_for`.
#[test]
fn an_emptied_inner_merge_is_not_an_empty_merge() {
    let text = r#"{"version": 1, "ops": {
        "s": {"local": {"path": "app"}},
        "x": {"mkdir": {"path": "/x"}},
        "w1": {"with_directory": {"base": "x", "path": "/p", "source": "s"}},
        "w2": {"with_directory": {"base": "w1", "path": "/q", "source": "s"}},
        "zz": {"merge": {}}
    }, "outputs": {"o1": "w2", "o2": "zz"}}"#;
    let c = compile(&parse_ok(text), Build::Hardlink);
    let empty = &c.ir.nodes[c.output("o2").unwrap()];
    assert_eq!(empty.names, ["zz"], "{}", c.explain());
    assert!(
        !rewrites(&c).iter().any(|(_, r, _)| r == "dedupe"),
        "{}",
        c.explain()
    );
}

/// Renaming ops changes no rule's count. `m` (a one-input merge) is
/// replaced by its input `a` with drop-scratch and passes its name on, so
/// the node carries names `a` and `m`; arena order breaks ties by name, and
/// dedupe folds the later of two equal ops into the earlier. With ops `a`,
/// `m`, `z`, `z` is folded into `a`; renamed `q`, `m`, `b`, the node `q`/`m`
/// is folded into `b`: one `dedupe` record either way (it once was one per
/// name the folded op carries, so 1 and 2). Found by
/// `compiling_is_deterministic`.
#[test]
fn renaming_keeps_the_number_of_dedupe_records() {
    let text = |a: &str, z: &str| {
        format!(
            r#"{{"version": 1, "ops": {{"{a}": {{"mkdir": {{"path": "/a"}}}}, "m": {{"merge": {{"inputs": ["{a}"]}}}}, "{z}": {{"mkdir": {{"path": "/a"}}}}}}, "outputs": {{"o1": "m", "o2": "{z}"}}}}"#
        )
    };
    let count = |a: &str, z: &str| {
        let c = compile(&parse_ok(&text(a, z)), Build::Hardlink);
        rewrites(&c)
            .iter()
            .filter(|(_, r, _)| r == "dedupe")
            .count()
    };
    assert_eq!(count("a", "z"), count("q", "b"));
}

// ---------------------------------------------------------------------------
// 5: hostile input never panics.

const FIELD_NAMES: &[&str] = &[
    "version",
    "epoch",
    "ops",
    "outputs",
    "rewrites",
    "digest",
    "names",
    "base",
    "source",
    "path",
    "source_path",
    "include",
    "exclude",
    "owner",
    "mode",
    "timestamp",
    "parents",
    "data",
    "data_base64",
    "target",
    "allow_not_found",
    "allow_wildcard",
    "src",
    "dest",
    "follow_symlinks",
    "contents_only",
    "create_dest_path",
    "allow_empty_wildcard",
    "replace_existing",
    "inputs",
    "lower",
    "upper",
    "layers",
    "input",
    "link",
    "actions",
    "uid",
    "gid",
    "scratch",
    "local",
    "mkdir",
    "mkfile",
    "symlink",
    "rm",
    "copy",
    "with_directory",
    "with_file",
    "merge",
    "diff",
    "file",
    "default",
];
const STRINGS: &[&str] = &[
    "",
    "/",
    ".",
    "..",
    "a",
    "/a/b",
    "../../etc",
    "sha256:",
    "0644",
    "7777",
    "77777",
    "999",
    "1:2",
    "1:2:3",
    "-1:0",
    "aGk=",
    "!!!",
    "*",
    "!",
    "[",
    "[z-a]",
    "\\",
    "\u{0}",
    "a\u{0}b",
    "default",
    "é",
    "\u{10FFFF}",
];
const OP_KINDS: &[&str] = &[
    "scratch",
    "local",
    "mkdir",
    "mkfile",
    "symlink",
    "rm",
    "copy",
    "with_directory",
    "with_file",
    "merge",
    "diff",
    "file",
];

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(FIELD_NAMES).prop_map(str::to_string),
        1 => ".{0,6}",
    ]
    .boxed()
}

fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(&[0i64, 1, -1, 493, 0o7777, 1 << 40][..]).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        select(STRINGS).prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An op-shaped value: `{KIND: {field: anything}}` with fields of the
/// right vocabulary, so it gets past the first checks.
fn arb_op() -> BoxedStrategy<Value> {
    (
        select(OP_KINDS),
        prop::collection::vec((key(), arb_json()), 0..5),
    )
        .prop_map(|(kind, fields)| {
            let fields: Map<String, Value> = fields.into_iter().collect();
            json!({ kind: fields })
        })
        .boxed()
}

/// Whole documents: anything, graph-shaped, or IR-shaped.
fn hostile_doc() -> BoxedStrategy<Value> {
    let names = prop::collection::vec(NAME_RE, 1..5);
    prop_oneof![
        arb_json(),
        (
            names.clone(),
            prop::collection::vec(arb_op(), 1..5),
            arb_json()
        )
            .prop_map(|(names, ops, out)| {
                let ops: Map<String, Value> = names.iter().cloned().zip(ops).collect();
                let out = if out.is_string() {
                    json!(names[0])
                } else {
                    out
                };
                json!({"version": 1, "ops": ops, "outputs": {"default": out}})
            }),
        (
            prop::collection::vec((arb_op(), arb_json()), 0..4),
            arb_json()
        )
            .prop_map(|(ops, out)| {
                let ops: Vec<Value> = ops
                    .into_iter()
                    .map(|(mut op, digest)| {
                        op["digest"] = digest;
                        op
                    })
                    .collect();
                json!({"version": 1, "ops": ops, "outputs": {"default": out}})
            }),
    ]
    .boxed()
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    At(usize),
}

/// Every location in a value (the root included), without recursion.
fn locations(v: &Value) -> Vec<Vec<Seg>> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<Seg>, &Value)> = vec![(Vec::new(), v)];
    while let Some((path, v)) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let mut p = path.clone();
                    p.push(Seg::Key(k.clone()));
                    stack.push((p, x));
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let mut p = path.clone();
                    p.push(Seg::At(i));
                    stack.push((p, x));
                }
            }
            _ => {}
        }
        out.push(path);
    }
    out
}

fn at_mut<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::At(i) => &mut v[*i],
    })
}

/// A value of another JSON type than `v`.
fn retype(v: &Value) -> Value {
    match v {
        Value::Null => json!(0),
        Value::Bool(b) => json!(b.to_string()),
        Value::Number(n) => json!(n.to_string()),
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!([s]),
        },
        Value::Array(a) => a.first().cloned().map_or(json!({}), |x| json!({ "x": x })),
        Value::Object(_) => json!(null),
    }
}

/// One generic mutation of a JSON document.
#[derive(Clone, Debug)]
struct Mutation {
    at: Index,
    how: u8,
    key: String,
    with: Value,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<Index>(), 0u8..5, key(), arb_json()).prop_map(|(at, how, key, with)| Mutation {
        at,
        how,
        key,
        with,
    })
}

fn apply(v: &mut Value, m: &Mutation) {
    let locs = locations(v);
    let path = &locs[m.at.index(locs.len())];
    match (m.how, path.split_last()) {
        // Drop a field or an element.
        (0, Some((last, parent))) => match (at_mut(v, parent), last) {
            (Value::Object(o), Seg::Key(k)) => {
                o.remove(k);
            }
            (Value::Array(a), Seg::At(i)) => {
                a.remove(*i);
            }
            _ => unreachable!(),
        },
        // Change the type.
        (1, _) => {
            let t = at_mut(v, path);
            *t = retype(t);
        }
        // Add an unknown (or known) field to an object.
        (2, _) => match at_mut(v, path) {
            Value::Object(o) => {
                o.insert(m.key.clone(), m.with.clone());
            }
            Value::Array(a) => a.push(m.with.clone()),
            other => *other = m.with.clone(),
        },
        // Duplicate an array element / replace with anything.
        (3, Some((Seg::At(i), parent))) => {
            if let Value::Array(a) = at_mut(v, parent) {
                let x = a[*i].clone();
                a.insert(*i, x);
            }
        }
        _ => *at_mut(v, path) = m.with.clone(),
    }
}

/// Every reference of a graph document: (op name, field, index in `inputs`).
fn graph_refs(doc: &Value) -> Vec<(String, String, Option<usize>)> {
    let mut out = Vec::new();
    for (name, op) in doc["ops"].as_object().unwrap() {
        let (_, fields) = op.as_object().unwrap().iter().next().unwrap();
        for (k, f) in fields.as_object().unwrap() {
            match (k.as_str(), f) {
                ("base" | "source" | "lower" | "upper", _) => {
                    out.push((name.clone(), k.clone(), None))
                }
                ("inputs", Value::Array(a)) => {
                    out.extend((0..a.len()).map(|i| (name.clone(), k.clone(), Some(i))))
                }
                _ => {}
            }
        }
    }
    out
}

fn ref_slot<'a>(doc: &'a mut Value, r: &(String, String, Option<usize>)) -> &'a mut Value {
    let op = doc["ops"][r.0.as_str()].as_object_mut().unwrap();
    let fields = op.values_mut().next().unwrap();
    let slot = &mut fields[r.1.as_str()];
    match r.2 {
        Some(i) => &mut slot[i],
        None => slot,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// Arbitrary JSON documents (graph-shaped, IR-shaped or neither).
    #[test]
    fn arbitrary_json_never_panics(doc in hostile_doc(), seed in any::<u64>()) {
        exercise(&doc.to_string());
        exercise(&shuffled_text(&doc, seed));
    }

    /// Random text and bytes.
    #[test]
    fn random_text_never_panics(s in ".{0,64}", bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        exercise(&s);
        exercise(&String::from_utf8_lossy(&bytes));
        exercise(&format!("{{\"version\": 1, \"ops\": {s}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), ..ProptestConfig::default() })]

    /// A valid graph with one to three random mutations (drop a field,
    /// change a type, add a field, duplicate an element, replace a value).
    #[test]
    fn mutated_graphs_never_panic(g in graph_strategy(), ms in prop::collection::vec(mutation(), 1..4)) {
        let mut doc = g.value();
        for m in &ms {
            apply(&mut doc, m);
        }
        exercise(&doc.to_string());
        exercise(&shuffled_text(&doc, g.seed));
    }

    /// A reference to a missing op is an error that says so; a cycle is an
    /// error that says so.
    #[test]
    fn missing_refs_and_cycles_are_errors(g in graph_strategy(), pick in any::<Index>()) {
        let doc = g.value();
        let refs = graph_refs(&doc);

        let mut missing = doc.clone();
        if refs.is_empty() {
            missing["ops"]["zz-missing-user-op"] = json!({"merge": {"inputs": [MISSING]}});
        } else {
            *ref_slot(&mut missing, &refs[pick.index(refs.len())]) = json!(MISSING);
        }
        let e = parse_input(&missing.to_string()).expect_err("a missing op is an error");
        prop_assert!(e.to_string().contains("no op named"), "{}", e);
        prop_assert!(e.to_string().contains(MISSING), "{}", e);

        let mut cyclic = doc.clone();
        let names = g.names();
        if refs.is_empty() {
            let n = &names[pick.index(names.len())];
            cyclic["ops"][n.as_str()] = json!({"merge": {"inputs": [n]}});
        } else {
            // user -> target becomes a loop: target now merges user.
            let r = &refs[pick.index(refs.len())];
            let target = ref_slot(&mut cyclic, r).as_str().unwrap().to_string();
            cyclic["ops"][target.as_str()] = json!({"merge": {"inputs": [r.0]}});
        }
        let e = parse_input(&cyclic.to_string()).expect_err("a cycle is an error");
        prop_assert!(e.to_string().contains("cycle"), "{}", e);
    }

    /// Text cut short, or with one byte changed.
    #[test]
    fn damaged_text_never_panics(g in graph_strategy(), cut in any::<Index>(), byte in any::<u8>()) {
        let text = g.text();
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        exercise(&text[..at]);
        let mut bytes = text.into_bytes();
        if at < bytes.len() {
            bytes[at] = byte;
        }
        exercise(&String::from_utf8_lossy(&bytes));
    }

    /// Compiled IR, mutated (generic mutations mostly break a digest; the
    /// targeted ones keep every digest right), read back and compiled with
    /// either strategy.
    #[test]
    fn mutated_ir_never_panics(
        g in graph_strategy(),
        hardlink in any::<bool>(),
        ms in prop::collection::vec(mutation(), 0..3),
        targeted in 0u8..7,
        pick in any::<Index>(),
        other in any::<Index>(),
    ) {
        let graph = parse_ok(&g.text());
        let s = if hardlink { Build::Hardlink } else { Build::Copy };
        let mut doc = compile(&graph, s).to_json();
        // The other strategy's passes over this IR.
        exercise(&doc.to_string());
        let ops = doc["ops"].as_array_mut().unwrap();
        let n = ops.len();
        let (i, j) = (pick.index(n), other.index(n));
        match targeted {
            0 => {
                ops.remove(i);
            }
            1 => ops.swap(i, j),
            2 => {
                let x = ops[i].clone();
                ops.push(x);
            }
            3 => {
                let d = ops[j]["digest"].clone();
                doc["outputs"]["default"] = d;
            }
            4 => strip_names(&mut doc),
            5 => {
                let e = doc["epoch"].as_i64().unwrap();
                doc["epoch"] = json!(e.wrapping_add(1));
            }
            _ => {
                doc.as_object_mut().unwrap().remove("rewrites");
            }
        }
        exercise(&doc.to_string());
        for m in &ms {
            apply(&mut doc, m);
        }
        exercise(&doc.to_string());
    }
}

// ---------------------------------------------------------------------------
// Explicit edge cases.

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    let mut s = String::with_capacity(depth * (open.len() + close.len()) + inner.len());
    for _ in 0..depth {
        s.push_str(open);
    }
    s.push_str(inner);
    for _ in 0..depth {
        s.push_str(close);
    }
    s
}

/// JSON nested 100,000 levels deep anywhere is an error, not a stack
/// overflow.
#[test]
fn deep_nesting_is_an_error() {
    let depth = 100_000;
    let arrays = nested("[", "", "]", depth);
    let objects = nested("{\"a\":", "1", "}", depth);
    let docs = [
        format!(
            r#"{{"version": 1, "ops": {{"m": {{"mkdir": {{"path": {arrays}}}}}}}, "outputs": {{"default": "m"}}}}"#
        ),
        format!(
            r#"{{"version": 1, "ops": {{"m": {{"merge": {{"inputs": {arrays}}}}}}}, "outputs": {{"default": "m"}}}}"#
        ),
        format!(r#"{{"version": 1, "ops": {{"m": {objects}}}, "outputs": {{"default": "m"}}}}"#),
        format!(r#"{{"version": 1, "ops": [{arrays}], "outputs": {{}}}}"#),
        format!(
            r#"{{"version": 1, "ops": [{{"digest": "x", "merge": {{"layers": {arrays}}}}}], "outputs": {{}}}}"#
        ),
        format!(r#"{{"ops": {arrays}, "version": 1}}"#),
        format!(r#"{{"version": 1, "epoch": {objects}}}"#),
        arrays.clone(),
        objects.clone(),
        // Unclosed.
        nested("[", "", "", depth),
        format!(
            r#"{{"version": 1, "ops": {{"m": {{"mkdir": {{"path": {}"#,
            nested("[", "", "", depth)
        ),
    ];
    for doc in &docs {
        let e = parse_input(doc).expect_err("100,000 levels of nesting");
        assert!(!e.to_string().is_empty());
    }
    // Deep, but within serde_json's limit: still an error of the field.
    let shallow = nested("[", "", "]", 100);
    let doc = format!(
        r#"{{"version": 1, "ops": {{"m": {{"mkfile": {{"path": "/f", "data": {shallow}}}}}}}, "outputs": {{"default": "m"}}}}"#
    );
    let e = parse_input(&doc).expect_err("an array is not data");
    assert!(e.to_string().contains("op `m`"), "{e}");
}

/// Over 200 generated graphs, every rule of SPEC §3 fires and every op
/// kind appears: the generator reaches what the properties are about.
#[test]
fn the_generator_reaches_every_rule() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = graph_strategy();
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ir_kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for _ in 0..200 {
        let g = strategy.new_tree(&mut runner).unwrap().current();
        for op in &g.ops {
            *kinds.entry(op.kind).or_default() += 1;
        }
        let graph = parse_ok(&g.text());
        for s in [Build::Hardlink, Build::Copy] {
            let c = compile(&graph, s);
            for (_, r, _) in rewrites(&c) {
                *rules.entry(r).or_default() += 1;
            }
            for n in &c.ir.nodes {
                *ir_kinds.entry(n.op.kind()).or_default() += 1;
            }
        }
    }
    println!("graph kinds {kinds:?}\nIR kinds {ir_kinds:?}\nrules {rules:?}");
    for rule in [
        "direct-merge",
        "placed-merge",
        "kept-copy",
        "flatten",
        "drop-scratch",
        "fuse",
        "dedupe",
        "dead",
    ] {
        assert!(
            rules.get(rule).copied().unwrap_or(0) >= 5,
            "{rule}: {rules:?}"
        );
    }
    for kind in [
        "scratch",
        "local",
        "mkdir",
        "mkfile",
        "symlink",
        "rm",
        "copy",
        "with_directory",
        "with_file",
        "merge",
        "diff",
    ] {
        assert!(kinds.contains_key(kind), "{kind}: {kinds:?}");
    }
    assert!(ir_kinds.contains_key("file"), "{ir_kinds:?}");
}

/// A merge of one op repeated 200,000 times compiles: 200,000 layers, or
/// none when the op is `scratch` (each layer dropped).
#[test]
fn a_merge_of_200000_inputs_compiles() {
    use hardmerge::compile::IrOp;
    let n = 200_000;
    for (input, layers) in [
        (r#"{"local": {"path": "app"}}"#, n),
        (r#"{"scratch": {}}"#, 0),
    ] {
        let inputs = vec!["x"; n];
        let text = format!(
            r#"{{"version": 1, "ops": {{"x": {input}, "m": {{"merge": {{"inputs": {}}}}}}}, "outputs": {{"default": "m"}}}}"#,
            serde_json::to_string(&inputs).unwrap()
        );
        let graph = parse_ok(&text);
        for s in [Build::Hardlink, Build::Copy] {
            let c = compile(&graph, s);
            let out = c.output("default").unwrap();
            let IrOp::Merge { layers: got } = &c.ir.nodes[out].op else {
                panic!("not a merge")
            };
            let expected = if s == Build::Copy { n } else { layers };
            assert_eq!(got.len(), expected, "{s:?} {input}");
        }
    }
}

/// A chain of `n` mkdir ops, each the base of the next.
fn chain(n: usize) -> Graph {
    let mut ops = Map::new();
    for i in 0..n {
        let mut f = json!({"path": format!("/d{i}")});
        if i > 0 {
            f["base"] = json!(format!("m{}", i - 1));
        }
        ops.insert(format!("m{i}"), json!({ "mkdir": f }));
    }
    let last = format!("m{}", n - 1);
    parse_ok(&json!({"version": 1, "ops": ops, "outputs": {"default": last}}).to_string())
}

/// A 100,000-op chain parses, validates and compiles without recursion:
/// one fused `file` op of 100,000 actions (hardlink), one op each (copy).
#[test]
fn a_100000_op_chain_compiles() {
    let n = 100_000;
    let graph = chain(n);
    let c = compile(&graph, Build::Hardlink);
    assert_eq!(c.ir.nodes.len(), 1);
    let v = c.to_json();
    assert_eq!(v["ops"][0]["file"]["actions"].as_array().unwrap().len(), n);
    assert_eq!(v["ops"][0]["names"].as_array().unwrap().len(), n);
    let c = compile(&graph, Build::Copy);
    assert_eq!(c.ir.nodes.len(), n);
}

/// A cycle through a long chain is found and printed without recursion.
#[test]
fn a_long_cycle_is_an_error() {
    let n = 100_000;
    let mut ops = Map::new();
    for i in 0..n {
        let base = format!("m{}", (i + 1) % n);
        ops.insert(
            format!("m{i}"),
            json!({"mkdir": {"path": "/d", "base": base}}),
        );
    }
    let text = json!({"version": 1, "ops": ops, "outputs": {"default": "m0"}}).to_string();
    let e = parse_input(&text).expect_err("a cycle");
    let shown = e.to_string();
    assert!(
        shown.contains("cycle"),
        "{}",
        shown.chars().take(300).collect::<String>()
    );
}
