//! The record of what the compiler did, one entry per decision.

use serde::{Deserialize, Serialize};

/// The compiler's rules (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A whole-tree copy onto `/`: a plain merge layer.
    DirectMerge,
    /// Any other copy without overrides: a placed, hard-linked layer.
    PlacedMerge,
    /// A copy with owner, mode or timestamp: a placed layer that copies.
    KeptCopy,
    /// A merge's first layer, itself a merge, inlined.
    Flatten,
    /// An empty layer removed, or a one-layer merge replaced by its input.
    DropScratch,
    /// Consecutive file ops made one `file` op.
    Fuse,
    /// Equal ops made one.
    Dedupe,
    /// An op no output reaches, removed.
    Dead,
}

impl Rule {
    /// The rule's name as written in `rewrites`.
    pub fn name(self) -> &'static str {
        match self {
            Rule::DirectMerge => "direct-merge",
            Rule::PlacedMerge => "placed-merge",
            Rule::KeptCopy => "kept-copy",
            Rule::Flatten => "flatten",
            Rule::DropScratch => "drop-scratch",
            Rule::Fuse => "fuse",
            Rule::Dedupe => "dedupe",
            Rule::Dead => "dead",
        }
    }
}

/// One decision of the compiler: which graph op, which rule, why.
///
/// `from` and `to` (what the op was and what it became) feed `explain`; the
/// compiled JSON carries `op`, `rule` and `reason` (SPEC §6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rewrite {
    // Fields in name order: the compiled output's keys are sorted.
    /// The graph op, by name.
    pub op: String,
    /// Why, for a person.
    pub reason: String,
    /// The rule applied.
    pub rule: Rule,
    /// What the op was.
    #[serde(skip)]
    pub from: String,
    /// What it became.
    #[serde(skip)]
    pub to: String,
}

impl Rewrite {
    /// A record.
    pub fn new(op: &str, rule: Rule, from: String, to: String, reason: String) -> Rewrite {
        Rewrite {
            op: op.to_string(),
            rule,
            reason,
            from,
            to,
        }
    }

    /// The `explain` line: op, from -> to, rule, reason.
    pub fn explain_line(&self) -> String {
        let line = format!(
            "{}: {} -> {} [{}] {}",
            self.op,
            self.from,
            self.to,
            self.rule.name(),
            self.reason
        );
        crate::graph::error::printable(&line).into_owned()
    }
}
