//! `cargo xtask ci`: the checks every change must pass, in the order CI runs
//! them. The cheap ones go first so a formatting slip fails in a second.

use anyhow::{bail, Context, Result};

/// One CI step: a name for messages and the `cargo` arguments.
struct Step {
    name: &'static str,
    args: &'static [&'static str],
}

const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        args: &["fmt", "--all", "--", "--check"],
    },
    Step {
        name: "clippy",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    },
    Step {
        name: "test",
        args: &["test", "--workspace"],
    },
];

/// Runs every step in order and stops at the first that fails.
pub fn run() -> Result<()> {
    for step in STEPS {
        let shown = format!("cargo {}", step.args.join(" "));
        eprintln!("==> ci step `{}`: {shown}", step.name);
        let status = crate::cargo()
            .args(step.args)
            .status()
            .with_context(|| format!("ci step `{}` failed: could not run {shown}", step.name))?;
        if !status.success() {
            bail!("ci step `{}` failed: {shown} ({status})", step.name);
        }
    }
    eprintln!("==> ci passed: {}", step_names());
    Ok(())
}

fn step_names() -> String {
    STEPS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}
