//! The one error type of graph input: what is wrong, and where.

use std::fmt;

/// A malformed graph (or IR): names the op, its kind and the field, or the
/// line and column of a JSON syntax error. The CLI maps it to exit code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError {
    /// The op the error is in, by its name in the graph.
    pub op: Option<String>,
    /// That op's kind, when known.
    pub kind: Option<String>,
    /// The field, as a path inside the op (`mode`, `owner.uid`) or the graph
    /// (`outputs.default`).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Line and column in the JSON text, for syntax errors.
    pub position: Option<(usize, usize)>,
}

impl GraphError {
    /// An error about the graph as a whole, or one of its top-level fields.
    pub fn top(field: Option<&str>, message: impl Into<String>) -> GraphError {
        GraphError {
            op: None,
            kind: None,
            field: field.map(str::to_string),
            message: message.into(),
            position: None,
        }
    }

    /// An error about one op's field (or the op itself when `field` is `None`).
    pub fn op(
        op: &str,
        kind: Option<&str>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> GraphError {
        GraphError {
            op: Some(op.to_string()),
            kind: kind.map(str::to_string),
            field: field.map(str::to_string),
            message: message.into(),
            position: None,
        }
    }

    /// A JSON syntax or structure error from serde_json, with its position.
    pub fn json(e: &serde_json::Error) -> GraphError {
        let text = e.to_string();
        let message = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        GraphError {
            op: None,
            kind: None,
            field: None,
            message: match e.classify() {
                serde_json::error::Category::Data => message,
                _ => format!("invalid JSON: {message}"),
            },
            position: (e.line() > 0).then(|| (e.line(), e.column())),
        }
    }
}

/// A string with its control characters escaped (`\n`, `\u{1b}`), so a
/// hostile name cannot break a one-line message or drive a terminal.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(op) = &self.op {
            write!(f, "op `{}`", printable(op))?;
            if let Some(kind) = &self.kind {
                write!(f, " ({})", printable(kind))?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{}`: ", printable(field))?;
        }
        f.write_str(&printable(&self.message))?;
        if let Some((line, column)) = self.position {
            write!(f, " at line {line} column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for GraphError {}
