//! Synthetic op graphs (SPEC §2) for the `compile` benchmark.
//!
//! A graph is a run of **modules**, each the kind of thing a real build
//! graph is made of: a `local` context, a small base rootfs (a fusable
//! mkdir/mkfile chain), then a random mix of
//! - chains of `with_directory` (each step onto the previous one, of a small
//!   `mkfile` or of the context at a varying path; some filtered with
//!   `include`/`exclude`, a few with `owner`, `mode` or `timestamp`, some
//!   `with_file` steps), 2 to 150 steps long;
//! - chains of file ops (`mkdir`, `mkfile`, `symlink`, `rm`), some with a
//!   middle op used elsewhere so that fusing has to stop there;
//! - `copy` ops with wildcards, a few whole-tree ones and a few with overrides;
//! - `merge`s of chain ends, some with a `diff` input;
//! - dead ops no output reaches, and exact duplicates of recent ops;
//!
//! and a root `merge` of what the module built. The outputs merge the roots
//! in three groups, and `default` merges the groups.
//!
//! Invariants: the graph has exactly the number of ops asked for; the same
//! seed gives the same bytes; every reference names an op written earlier
//! (so the graph is acyclic); op names use only `A-Z a-z 0-9 _ . -`; `local`
//! paths are relative and never read by `compile`. The JSON is streamed one
//! op at a time, so memory stays flat whatever the size.

use std::collections::VecDeque;
use std::io::Write;

use anyhow::{ensure, Result};
use serde_json::{Map, Value};

use super::rng::Rng;

/// The smallest graph [`write_graph`] makes.
pub const MIN_OPS: usize = 16;

/// Module sizes, in ops, root included.
const MODULE_OPS: (usize, usize) = (200, 2_500);

/// The output groups; `default` merges them.
const GROUPS: [&str; 3] = ["apps", "tools", "docs"];

/// How many recent op bodies are kept as models for duplicates.
const RECENT: usize = 32;

const EPOCH: u64 = 1_700_000_000;

const LOCAL_PATHS: &[&str] = &["src", "app", "vendor/lib", "docs"];
const EXCLUDES: &[&[&str]] = &[
    &["*.log"],
    &["target/**"],
    &["**/*.o", "!keep.o"],
    &["tmp/**", ".git"],
];
const INCLUDES: &[&[&str]] = &[&["*.txt"], &["bin/**", "lib/**"]];
const WILDCARDS: &[&str] = &["/*.txt", "/f[0-4].txt", "/sub*", "/opt/*/s1"];
/// Shared file contents: equal `mkfile`s in different chains are one op
/// after `dedupe`.
const COMMON_FILES: &[(&str, &str)] = &[
    ("/f0.txt", "hello\n"),
    ("/f1.txt", "#!/bin/sh\nexit 0\n"),
    ("/f2.txt", "key=value\n"),
    ("/f3.txt", "{\"json\": true}\n"),
];

/// What a generated graph holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GraphStats {
    pub ops: usize,
    pub modules: usize,
    pub outputs: usize,
    /// Ops written so that no output reaches them (the real count can be a
    /// little higher: a module's context may go unused).
    pub dead: usize,
    /// Ops written as exact copies of an earlier op's body.
    pub duplicates: usize,
}

/// Writes a graph of exactly `ops` ops as JSON to `out`; the same `seed`
/// gives the same graph.
pub fn write_graph<W: Write>(out: W, ops: usize, seed: u64) -> Result<GraphStats> {
    ensure!(
        ops >= MIN_OPS,
        "a generated graph has at least {MIN_OPS} ops, not {ops}"
    );
    let mut gen = Generator::new(out, seed)?;
    let tail = GROUPS.len() + 1;
    while ops - gen.out.written > tail {
        let rest = ops - gen.out.written - tail;
        let size = if rest < 2 * MODULE_OPS.1 {
            rest
        } else {
            gen.rng.range(MODULE_OPS.0, MODULE_OPS.1)
        };
        gen.module(size)?;
    }
    gen.finish()
}

/// An op body under construction: `{kind: {fields}}`.
struct Op {
    kind: &'static str,
    fields: Map<String, Value>,
}

impl Op {
    fn new(kind: &'static str) -> Self {
        Op {
            kind,
            fields: Map::new(),
        }
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    fn set_if(self, cond: bool, key: &str, value: impl Into<Value>) -> Self {
        if cond {
            self.set(key, value)
        } else {
            self
        }
    }

    fn opt(self, key: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    fn into_value(self) -> Value {
        let mut op = Map::new();
        op.insert(self.kind.to_string(), Value::Object(self.fields));
        Value::Object(op)
    }
}

/// Streams `{"version":1,"epoch":N,"ops":{...},"outputs":{...}}`, one op
/// per line.
struct OpWriter<W: Write> {
    out: W,
    written: usize,
}

impl<W: Write> OpWriter<W> {
    fn begin(mut out: W) -> Result<Self> {
        write!(out, "{{\"version\":1,\"epoch\":{EPOCH},\"ops\":{{")?;
        Ok(OpWriter { out, written: 0 })
    }

    fn op(&mut self, name: &str, body: &Value) -> Result<()> {
        debug_assert!(is_op_name(name), "bad op name {name:?}");
        let sep = if self.written == 0 { "" } else { "," };
        write!(self.out, "{sep}\n\"{name}\":")?;
        serde_json::to_writer(&mut self.out, body)?;
        self.written += 1;
        Ok(())
    }

    fn finish(mut self, outputs: &[(String, String)]) -> Result<()> {
        let outputs: Map<String, Value> = outputs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        write!(self.out, "\n}},\"outputs\":")?;
        serde_json::to_writer(&mut self.out, &outputs)?;
        writeln!(self.out, "}}")?;
        self.out.flush()?;
        Ok(())
    }
}

fn is_op_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The ops of the module being written that later ops build on.
struct Module {
    id: usize,
    /// Its `local` context.
    ctx: String,
    /// Its base rootfs.
    base: String,
    /// Results nothing in the module uses yet; they end up in its root merge.
    ends: Vec<String>,
}

impl Module {
    /// Removes and returns a random end.
    fn take_end(&mut self, rng: &mut Rng) -> Option<String> {
        if self.ends.is_empty() {
            return None;
        }
        let i = rng.below(self.ends.len());
        Some(self.ends.swap_remove(i))
    }

    /// A random end, left in place (a second use of it).
    fn peek_end(&self, rng: &mut Rng) -> Option<String> {
        if self.ends.is_empty() {
            return None;
        }
        Some(self.ends[rng.below(self.ends.len())].clone())
    }
}

/// Ids per kind of component, for op names.
#[derive(Default)]
struct Counters {
    chains: usize,
    file_chains: usize,
    copies: usize,
    merges: usize,
    dead: usize,
    dups: usize,
}

fn next(counter: &mut usize) -> usize {
    *counter += 1;
    *counter - 1
}

struct Generator<W: Write> {
    out: OpWriter<W>,
    rng: Rng,
    /// The op count the current module's components must stop at (its root
    /// comes after).
    stop: usize,
    ids: Counters,
    roots: Vec<String>,
    recent: VecDeque<Value>,
    stats: GraphStats,
}

impl<W: Write> Generator<W> {
    fn new(out: W, seed: u64) -> Result<Self> {
        Ok(Generator {
            out: OpWriter::begin(out)?,
            rng: Rng(seed),
            stop: 0,
            ids: Counters::default(),
            roots: Vec::new(),
            recent: VecDeque::with_capacity(RECENT),
            stats: GraphStats::default(),
        })
    }

    /// Ops the current module's components may still write.
    fn room(&self) -> usize {
        self.stop.saturating_sub(self.out.written)
    }

    /// Writes a live op, and keeps it as a model for duplicates.
    fn emit(&mut self, name: &str, op: Op) -> Result<()> {
        self.emit_value(name, op.into_value())
    }

    fn emit_value(&mut self, name: &str, body: Value) -> Result<()> {
        self.out.op(name, &body)?;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(body);
        Ok(())
    }

    /// Writes an op no output will reach. It never becomes a model for a
    /// duplicate, which could be live and so revive what it references.
    fn emit_dead(&mut self, name: &str, body: &Value) -> Result<()> {
        self.out.op(name, body)?;
        self.stats.dead += 1;
        Ok(())
    }

    fn module(&mut self, size: usize) -> Result<()> {
        ensure!(
            size >= 5,
            "a module needs room for its context, base and root"
        );
        let m = next(&mut self.stats.modules);
        self.stop = self.out.written + size - 1;

        let ctx = format!("ctx_{m}");
        let local = Op::new("local")
            .set("path", self.rng.pick(LOCAL_PATHS))
            .set_if(self.rng.chance(50), "exclude", vec!["target/**", "*.tmp"]);
        self.emit(&ctx, local)?;
        self.emit(
            &format!("b{m}s0"),
            Op::new("mkdir")
                .set("path", "/usr/local/bin")
                .set("parents", true),
        )?;
        self.emit(
            &format!("b{m}s1"),
            Op::new("mkdir")
                .set("base", format!("b{m}s0"))
                .set("path", "/etc"),
        )?;
        let base = format!("b{m}s2");
        self.emit(
            &base,
            Op::new("mkfile")
                .set("base", format!("b{m}s1"))
                .set("path", "/etc/os-release")
                .set("data", format!("ID=bench\nMODULE={m}\n")),
        )?;

        let mut md = Module {
            id: m,
            ctx,
            base,
            ends: Vec::new(),
        };
        while self.room() > 0 {
            match self.rng.below(100) {
                0..=54 => self.chain(&mut md)?,
                55..=74 => self.file_chain(&mut md)?,
                75..=82 => self.copies(&mut md)?,
                83..=90 => self.merge(&mut md)?,
                91..=95 => self.dead(&mut md)?,
                _ => self.duplicate(&mut md)?,
            }
        }

        let root = format!("r{m}");
        let mut inputs = vec![md.base];
        inputs.append(&mut md.ends);
        self.emit(&root, Op::new("merge").set("inputs", inputs))?;
        self.roots.push(root);
        Ok(())
    }

    /// A chain of `with_directory` (and a few `with_file`) steps.
    fn chain(&mut self, md: &mut Module) -> Result<()> {
        let k = next(&mut self.ids.chains);
        let len = match self.rng.below(100) {
            0..=69 => self.rng.range(2, 10),
            70..=94 => self.rng.range(10, 40),
            _ => self.rng.range(40, 150),
        };
        let mut prev = match self.rng.below(10) {
            0..=4 => Some(md.base.clone()),
            5 | 6 => None,
            _ => md.take_end(&mut self.rng).or_else(|| Some(md.base.clone())),
        };
        for s in 0..len {
            if self.room() == 0 {
                break;
            }
            let name = format!("c{k}s{s}");
            let op = if self.room() >= 2 && self.rng.chance(45) {
                let source = format!("c{k}s{s}f");
                let (path, data) = if self.rng.chance(30) {
                    let (path, data) = self.rng.pick(COMMON_FILES);
                    (path.to_string(), data.to_string())
                } else {
                    (format!("/f{}.txt", s % 9), format!("chain {k} step {s}\n"))
                };
                let file = Op::new("mkfile")
                    .set("path", path.as_str())
                    .set("data", data)
                    .set_if(self.rng.chance(10), "mode", "0755");
                self.emit(&source, file)?;
                if self.rng.chance(15) {
                    Op::new("with_file")
                        .opt("base", prev)
                        .set("path", format!("/usr/local/bin/c{k}-{s}"))
                        .set("source", source)
                        .set("source_path", path)
                        .set_if(self.rng.chance(30), "mode", "0755")
                } else {
                    self.with_directory(md, k, s, prev, source, None)
                }
            } else if self.rng.chance(60) || md.ends.is_empty() {
                let source_path = self.rng.chance(30).then(|| format!("/sub{}", s % 4));
                self.with_directory(md, k, s, prev, md.ctx.clone(), source_path)
            } else {
                let source = md.peek_end(&mut self.rng).unwrap_or_else(|| md.ctx.clone());
                self.with_directory(md, k, s, prev, source, None)
            };
            self.emit(&name, op)?;
            prev = Some(name);
        }
        md.ends.extend(prev);
        Ok(())
    }

    fn with_directory(
        &mut self,
        md: &Module,
        k: usize,
        s: usize,
        base: Option<String>,
        source: String,
        source_path: Option<String>,
    ) -> Op {
        let rng = &mut self.rng;
        let path = match rng.below(100) {
            0..=7 => "/".to_string(),
            8..=39 => format!("/opt/c{k}/s{s}"),
            40..=69 => format!("/usr/lib/m{}/p{}", md.id, s % 17),
            70..=89 => format!("/srv/app/layer{}", s % 5),
            _ => format!("/home/user/.cache/c{k}"),
        };
        Op::new("with_directory")
            .opt("base", base)
            .set("path", path)
            .set("source", source)
            .opt("source_path", source_path)
            .set_if(rng.chance(15), "exclude", rng.pick(EXCLUDES))
            .set_if(rng.chance(5), "include", rng.pick(INCLUDES))
            .set_if(rng.chance(3), "owner", "1000:1000")
            .set_if(rng.chance(3), "mode", "0755")
            .set_if(rng.chance(1), "timestamp", EPOCH + 86_400)
    }

    /// A chain of `mkdir`/`mkfile`/`symlink`/`rm`, each onto the previous.
    fn file_chain(&mut self, md: &mut Module) -> Result<()> {
        let k = next(&mut self.ids.file_chains);
        let len = self.rng.range(2, 20);
        let mut prev = match self.rng.below(4) {
            0 | 1 => Some(md.base.clone()),
            2 => None,
            _ => md.peek_end(&mut self.rng).or_else(|| Some(md.base.clone())),
        };
        let dir = format!("/var/lib/f{k}");
        let mut last = None;
        for s in 0..len {
            if self.room() == 0 {
                break;
            }
            let rng = &mut self.rng;
            let op = if s == 0 {
                Op::new("mkdir")
                    .set("path", dir.as_str())
                    .set("parents", true)
                    .set_if(rng.chance(20), "mode", "0750")
            } else {
                match rng.below(10) {
                    0..=3 => Op::new("mkfile")
                        .set("path", format!("{dir}/file{s}"))
                        .set("data", format!("f{k} {s}\n"))
                        .set_if(rng.chance(20), "mode", "0600")
                        .set_if(rng.chance(5), "owner", "0:0")
                        .set_if(rng.chance(5), "timestamp", EPOCH),
                    4 | 5 => Op::new("mkdir").set("path", format!("{dir}/sub{s}")),
                    6 | 7 => Op::new("symlink")
                        .set("path", format!("{dir}/link{s}"))
                        .set("target", format!("file{}", s - 1)),
                    _ => Op::new("rm")
                        .set("path", format!("{dir}/file{}", s - 1))
                        .set("allow_not_found", true),
                }
            };
            let name = format!("f{k}s{s}");
            self.emit(&name, op.opt("base", prev))?;
            // A use outside the chain: fusing must stop at this op.
            if s + 1 < len && self.rng.chance(5) {
                md.ends.push(name.clone());
            }
            prev = Some(name.clone());
            last = Some(name);
        }
        md.ends.extend(last);
        Ok(())
    }

    /// One to three `copy` ops, each onto the previous.
    fn copies(&mut self, md: &mut Module) -> Result<()> {
        let k = next(&mut self.ids.copies);
        let count = self.rng.range(1, 3);
        let mut base = md
            .take_end(&mut self.rng)
            .unwrap_or_else(|| md.base.clone());
        for i in 0..count {
            if self.room() == 0 {
                break;
            }
            let source = match self.rng.chance(50) {
                true => md.ctx.clone(),
                false => md.peek_end(&mut self.rng).unwrap_or_else(|| md.ctx.clone()),
            };
            let rng = &mut self.rng;
            let op = match rng.below(10) {
                0..=5 => Op::new("copy")
                    .set("src", rng.pick(WILDCARDS))
                    .set("dest", format!("/dst/cp{k}/"))
                    .set("allow_wildcard", true)
                    .set("allow_empty_wildcard", true)
                    .set("create_dest_path", true)
                    .set_if(rng.chance(20), "exclude", vec!["*.bak"]),
                6 | 7 => Op::new("copy")
                    .set("src", "/")
                    .set("dest", "/")
                    .set("replace_existing", true),
                8 => Op::new("copy")
                    .set("src", "/etc")
                    .set("dest", format!("/etc-copy{k}"))
                    .set("mode", "0644"),
                _ => Op::new("copy")
                    .set("src", "/f0.txt")
                    .set("dest", format!("/dst/cp{k}/"))
                    .set("create_dest_path", true)
                    .set("owner", "1000:1000"),
            };
            let name = format!("cp{k}-{i}");
            self.emit(&name, op.set("base", base).set("source", source))?;
            base = name;
        }
        md.ends.push(base);
        Ok(())
    }

    /// A `merge` of two to six ends, sometimes with a `diff` input.
    fn merge(&mut self, md: &mut Module) -> Result<()> {
        if md.ends.len() < 2 {
            return self.chain(md);
        }
        let k = next(&mut self.ids.merges);
        let n = self.rng.range(2, 6).min(md.ends.len());
        let mut inputs: Vec<String> = (0..n).filter_map(|_| md.take_end(&mut self.rng)).collect();
        if self.room() >= 2 && self.rng.chance(20) {
            let diff = format!("d{k}");
            let upper = inputs.pop();
            self.emit(
                &diff,
                Op::new("diff")
                    .set("lower", md.base.as_str())
                    .opt("upper", upper),
            )?;
            inputs.push(diff);
        }
        let name = format!("m{k}");
        self.emit(&name, Op::new("merge").set("inputs", inputs))?;
        md.ends.push(name);
        Ok(())
    }

    /// A short chain that no output reaches.
    fn dead(&mut self, md: &mut Module) -> Result<()> {
        let k = next(&mut self.ids.dead);
        let len = self.rng.range(1, 4);
        let mut prev = md
            .peek_end(&mut self.rng)
            .unwrap_or_else(|| md.base.clone());
        for s in 0..len {
            if self.room() == 0 {
                break;
            }
            let op = if self.rng.chance(50) {
                Op::new("with_directory")
                    .set("path", format!("/unused/z{k}"))
                    .set("source", md.ctx.as_str())
            } else {
                Op::new("mkfile")
                    .set("path", format!("/unused-{k}-{s}"))
                    .set("data", "dead\n")
            };
            let name = format!("z{k}s{s}");
            self.emit_dead(&name, &op.set("base", prev).into_value())?;
            prev = name;
        }
        Ok(())
    }

    /// An exact copy of a recent op's body under a new name; mostly used.
    fn duplicate(&mut self, md: &mut Module) -> Result<()> {
        let k = next(&mut self.ids.dups);
        let body = self.recent[self.rng.below(self.recent.len())].clone();
        let name = format!("dup{k}");
        self.stats.duplicates += 1;
        if self.rng.chance(70) {
            self.emit_value(&name, body)?;
            md.ends.push(name);
        } else {
            self.emit_dead(&name, &body)?;
        }
        Ok(())
    }

    /// The output merges: the module roots in groups, `default` over them.
    fn finish(mut self) -> Result<GraphStats> {
        let mut outputs = Vec::new();
        let mut groups = Vec::new();
        for (g, group) in GROUPS.iter().enumerate() {
            let roots: Vec<&str> = self
                .roots
                .iter()
                .skip(g)
                .step_by(GROUPS.len())
                .map(String::as_str)
                .collect();
            let name = format!("out.{group}");
            self.emit(&name, Op::new("merge").set("inputs", roots))?;
            outputs.push((group.to_string(), name.clone()));
            groups.push(name);
        }
        self.emit("out.default", Op::new("merge").set("inputs", groups))?;
        outputs.insert(0, ("default".to_string(), "out.default".to_string()));

        let mut stats = self.stats;
        stats.ops = self.out.written;
        stats.outputs = outputs.len();
        self.out.finish(&outputs)?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// The names an op body refers to.
    fn references(body: &Value) -> Vec<&str> {
        let (_, fields) = body.as_object().unwrap().iter().next().unwrap();
        let mut refs = Vec::new();
        for key in ["base", "source", "lower", "upper"] {
            if let Some(v) = fields.get(key) {
                refs.push(v.as_str().unwrap());
            }
        }
        if let Some(inputs) = fields.get("inputs") {
            refs.extend(
                inputs
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap()),
            );
        }
        refs
    }

    /// Op names in file order: serde_json's map sorts keys, so read them
    /// from the one-op-per-line text.
    fn names_in_order(text: &str) -> Vec<&str> {
        text.lines()
            .skip(1)
            .filter_map(|line| line.strip_prefix('"')?.split_once("\":").map(|(n, _)| n))
            .collect()
    }

    fn generate(ops: usize, seed: u64) -> (String, GraphStats) {
        let mut buf = Vec::new();
        let stats = write_graph(&mut buf, ops, seed).unwrap();
        (String::from_utf8(buf).unwrap(), stats)
    }

    #[test]
    fn graph_is_valid_acyclic_and_exact() {
        for (ops, seed) in [(MIN_OPS, 1), (517, 2), (12_000, 3)] {
            let (text, stats) = generate(ops, seed);
            let graph: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(graph["version"], 1);
            let table = graph["ops"].as_object().unwrap();
            assert_eq!(table.len(), ops, "op count");
            assert_eq!(stats.ops, ops);

            let order = names_in_order(&text);
            assert_eq!(order.len(), ops, "one op per line, no repeated name");
            let position: HashMap<&str, usize> =
                order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
            for (name, body) in table {
                assert!(is_op_name(name), "{name}");
                for r in references(body) {
                    assert!(
                        position[r] < position[name.as_str()],
                        "{name} refers to {r}, which is not earlier"
                    );
                }
            }

            // Reachability from the outputs.
            let outputs = graph["outputs"].as_object().unwrap();
            assert_eq!(outputs.len(), stats.outputs);
            let mut live = HashSet::new();
            let mut todo: Vec<&str> = outputs.values().map(|v| v.as_str().unwrap()).collect();
            while let Some(n) = todo.pop() {
                if live.insert(n) {
                    todo.extend(references(&table[n]));
                }
            }
            assert!(ops - live.len() >= stats.dead, "dead ops stay dead");
        }
    }

    #[test]
    fn graph_has_the_advertised_mix() {
        let (text, stats) = generate(20_000, 7);
        let graph: Value = serde_json::from_str(&text).unwrap();
        let mut kinds: HashMap<&str, usize> = HashMap::new();
        for body in graph["ops"].as_object().unwrap().values() {
            let kind = body.as_object().unwrap().keys().next().unwrap();
            *kinds.entry(kind.as_str()).or_default() += 1;
        }
        for kind in [
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
            assert!(kinds.get(kind).copied().unwrap_or(0) > 0, "no {kind} op");
        }
        assert!(kinds["with_directory"] > 20_000 / 5);
        assert!(stats.dead > 0 && stats.duplicates > 0);
        for field in ["\"exclude\"", "\"owner\"", "\"mode\"", "\"allow_wildcard\""] {
            assert!(text.contains(field), "no {field}");
        }
    }

    #[test]
    fn same_seed_same_graph() {
        assert_eq!(generate(3_000, 9).0, generate(3_000, 9).0);
        assert_ne!(generate(3_000, 9).0, generate(3_000, 10).0);
    }

    #[test]
    fn too_small_is_an_error() {
        assert!(write_graph(Vec::new(), MIN_OPS - 1, 0).is_err());
    }
}
