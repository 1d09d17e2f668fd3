//! Bench results: one [`Row`] per measured variant, printed as a table and
//! written as JSON with the same data.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::measure::Samples;

const NOT_IMPLEMENTED: &str = "not implemented yet";

/// What a row's samples count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Unit {
    /// Wall-clock seconds; JSON keys end in `_s`.
    #[default]
    Seconds,
    /// Bytes (disk use); JSON keys end in `_bytes`.
    Bytes,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "bytes",
        }
    }

    fn show(self, value: f64) -> String {
        match self {
            Unit::Seconds => seconds(value),
            Unit::Bytes => bytes(value),
        }
    }
}

/// A peer measured in the same run (`cp -a` of the same tree, ...).
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub samples: Samples,
}

/// One line of the results: a scenario at one variant (a size, a strategy).
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub variant: String,
    /// What the samples (and the peers') count.
    pub unit: Unit,
    /// `None` for a scenario that is not written yet.
    pub samples: Option<Samples>,
    pub peers: Vec<Peer>,
    /// Named ratios, in insertion order (e.g. `vs_cp_a`, `per_op_vs_10k`).
    pub ratios: Vec<(String, f64)>,
    /// Scenario-specific figures, in insertion order. Keys ending in
    /// `_bytes` are shown as sizes in the table.
    pub extra: Vec<(String, Value)>,
}

impl Row {
    pub fn measured(scenario: &str, variant: &str, samples: Samples) -> Self {
        Row {
            scenario: scenario.to_string(),
            variant: variant.to_string(),
            unit: Unit::Seconds,
            samples: Some(samples),
            peers: Vec::new(),
            ratios: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A row whose samples (and peers) are byte counts, not timings.
    pub fn in_bytes(mut self) -> Self {
        self.unit = Unit::Bytes;
        self
    }

    pub fn not_implemented(scenario: &str) -> Self {
        Row {
            scenario: scenario.to_string(),
            variant: "-".to_string(),
            unit: Unit::Seconds,
            samples: None,
            peers: Vec::new(),
            ratios: Vec::new(),
            extra: vec![("status".to_string(), NOT_IMPLEMENTED.into())],
        }
    }

    pub fn median(&self) -> Option<f64> {
        self.samples.as_ref().map(Samples::median)
    }

    /// Adds a peer and the ratio `vs_<peer>`: this row's median over the
    /// peer's (below 1 means hardmerge is faster, or smaller).
    pub fn with_peer(mut self, name: &str, samples: Samples) -> Self {
        if let Some(median) = self.median() {
            let key = name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            self.ratios
                .push((format!("vs_{key}"), median / samples.median()));
        }
        self.peers.push(Peer {
            name: name.to_string(),
            samples,
        });
        self
    }

    pub fn with_ratio(mut self, name: &str, value: f64) -> Self {
        self.ratios.push((name.to_string(), value));
        self
    }

    pub fn with_extra(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.push((name.to_string(), value.into()));
        self
    }

    /// The JSON form: `{scenario, variant, median_s, min_s, max_s, runs,
    /// peers: [{name, median_s}], ratios: {..}, extra: {..}}`, with `_bytes`
    /// instead of `_s` for a row in bytes; the timings are `null` and `runs`
    /// 0 for a scenario not written yet.
    pub fn to_json(&self) -> Value {
        let (median, min, max, runs) = match &self.samples {
            Some(s) => (json!(s.median()), json!(s.min()), json!(s.max()), s.runs()),
            None => (Value::Null, Value::Null, Value::Null, 0),
        };
        let unit = self.unit.suffix();
        let peers: Vec<Value> = self
            .peers
            .iter()
            .map(|p| json!({"name": p.name, format!("median_{unit}"): p.samples.median()}))
            .collect();
        let ratios: Map<String, Value> = self
            .ratios
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let extra: Map<String, Value> = self.extra.iter().cloned().collect();
        json!({
            "scenario": self.scenario,
            "variant": self.variant,
            format!("median_{unit}"): median,
            format!("min_{unit}"): min,
            format!("max_{unit}"): max,
            "runs": runs,
            "peers": peers,
            "ratios": ratios,
            "extra": extra,
        })
    }
}

/// Writes the rows as a pretty-printed JSON array.
pub fn write_json(path: &Path, rows: &[Row]) -> Result<()> {
    let array = Value::Array(rows.iter().map(Row::to_json).collect());
    let mut text = serde_json::to_string_pretty(&array)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario", "variant", "runs", "median", "min", "max", "peers", "ratios", "extra",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let mut cells = vec![row.scenario.clone(), row.variant.clone()];
        match &row.samples {
            None => cells.extend(["-".to_string(), NOT_IMPLEMENTED.to_string()]),
            Some(s) => {
                let peers = row
                    .peers
                    .iter()
                    .map(|p| format!("{} {}", p.name, row.unit.show(p.samples.median())))
                    .collect::<Vec<_>>();
                let ratios = row
                    .ratios
                    .iter()
                    .map(|(k, v)| format!("{k}={}", ratio(*v)))
                    .collect::<Vec<_>>();
                let extra = row
                    .extra
                    .iter()
                    .map(|(k, v)| format!("{k}={}", extra_value(k, v)))
                    .collect::<Vec<_>>();
                cells.extend([
                    s.runs().to_string(),
                    row.unit.show(s.median()),
                    row.unit.show(s.min()),
                    row.unit.show(s.max()),
                    dash_if_empty(peers.join(", ")),
                    dash_if_empty(ratios.join(" ")),
                    extra.join(" "),
                ]);
            }
        }
        lines.push(cells);
    }

    // A short line's last cell ("not implemented yet") overflows its
    // column rather than widening it.
    let mut widths = vec![0; header.len()];
    for line in &lines {
        let counted = if line.len() == header.len() {
            line.len()
        } else {
            line.len() - 1
        };
        for (w, cell) in widths.iter_mut().zip(&line[..counted]) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// Two decimals, four below 0.1 (a disk share of 0.3% is not `0.00`).
fn ratio(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.1 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

fn dash_if_empty(text: String) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text
    }
}

/// `0.0123` → `12.3 ms`.
fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

fn extra_value(key: &str, value: &Value) -> String {
    match value {
        Value::Number(n) if key.ends_with("_bytes") => bytes(n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) if n.is_f64() => compact(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Three significant figures with a k/M suffix: `245123.4` → `245k`.
fn compact(x: f64) -> String {
    let (value, suffix) = if x.abs() >= 1e6 {
        (x / 1e6, "M")
    } else if x.abs() >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let decimals = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}{suffix}")
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row::measured(
            "compile",
            "10k",
            Samples {
                values: vec![0.5, 0.25, 1.0],
            },
        )
        .with_ratio("per_op_vs_10k", 1.0)
        .with_extra("ops_per_s", 20_000.5)
        .with_extra("ir_ops", 7)
        .with_extra("graph_bytes", 3 << 20)
    }

    #[test]
    fn json_has_the_documented_shape() {
        let rows = [row(), Row::not_implemented("disk")];
        assert_eq!(
            rows[0].to_json(),
            json!({
                "scenario": "compile", "variant": "10k",
                "median_s": 0.5, "min_s": 0.25, "max_s": 1.0, "runs": 3,
                "peers": [], "ratios": {"per_op_vs_10k": 1.0},
                "extra": {"ops_per_s": 20_000.5, "ir_ops": 7, "graph_bytes": 3 << 20},
            })
        );
        assert_eq!(
            rows[1].to_json(),
            json!({
                "scenario": "disk", "variant": "-",
                "median_s": null, "min_s": null, "max_s": null, "runs": 0,
                "peers": [], "ratios": {}, "extra": {"status": "not implemented yet"},
            })
        );
    }

    #[test]
    fn table_lines_up() {
        let text = table(&[row(), Row::not_implemented("big-copy")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("scenario  variant  runs  median"));
        assert!(lines[1].contains("500.0 ms"));
        assert!(lines[1].contains("per_op_vs_10k=1.00"));
        assert!(lines[1].contains("ops_per_s=20.0k ir_ops=7 graph_bytes=3.0 MiB"));
        assert!(lines[2].starts_with("big-copy  -        -     not implemented yet"));
    }

    #[test]
    fn peers_add_ratios() {
        let peer = Samples { values: vec![2.0] };
        let row = row().with_peer("cp -a", peer);
        assert_eq!(row.ratios.last(), Some(&("vs_cp_a".to_string(), 0.25)));
        assert_eq!(
            row.to_json()["peers"],
            json!([{"name": "cp -a", "median_s": 2.0}])
        );
    }

    #[test]
    fn byte_rows_say_so() {
        let row = Row::measured(
            "disk",
            "big-copy",
            Samples {
                values: vec![2048.0],
            },
        )
        .in_bytes()
        .with_peer(
            "tree",
            Samples {
                values: vec![1024.0 * 1024.0],
            },
        );
        let json = row.to_json();
        assert_eq!(json["median_bytes"], json!(2048.0));
        assert_eq!(
            json["peers"],
            json!([{"name": "tree", "median_bytes": 1048576.0}])
        );
        assert!(json.get("median_s").is_none());
        let text = table(&[row]);
        assert!(text.contains("2.0 KiB"), "{text}");
        assert!(text.contains("tree 1.0 MiB"), "{text}");
    }
}
