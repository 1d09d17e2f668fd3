//! `hardmerge build`.

use std::path::{Path, PathBuf};

use super::progress::{Progress, ProgressMode};
use super::{
    open_store, read_text, write_out, Failure, StrategyArg, EXIT_FAILED, EXIT_INVALID, EXIT_STORE,
};
use crate::compile::{compile, compile_ir};
use crate::snapshot::lock::Mode;
use crate::snapshot::Snapshotter;
use crate::solve::{build_compiled, BuildError, BuildOptions};
use crate::{parse_input, Input};

/// The flags of `build` (SPEC §5).
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The graph (or a compiled IR) as JSON: a file path, or `-` for stdin.
    graph: String,
    /// The store folder (default: $HARDMERGE_STORE, $XDG_CACHE_HOME/hardmerge, ~/.cache/hardmerge).
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// The folder `local` paths are relative to (default: the graph file's folder).
    #[arg(long, value_name = "DIR")]
    context: Option<PathBuf>,
    /// The output to build (default: `default`, or the only one).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Export the result to this folder (missing or empty, unless --force).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Replace a non-empty --output folder's contents.
    #[arg(long, requires = "output")]
    force: bool,
    /// Hard-link the export from the store instead of copying (same filesystem;
    /// writing into the exported files in place would damage the store).
    #[arg(long, requires = "output")]
    link_output: bool,
    /// Hard-link where nothing changes (default), or copy every byte (the reference).
    #[arg(long, value_enum, default_value = "hardlink")]
    strategy: StrategyArg,
    /// Write the build report (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Ops run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

fn invalid(message: String) -> Failure {
    Failure {
        code: EXIT_INVALID,
        message,
    }
}

/// A path made absolute with symlinks resolved as far as it exists (the
/// rest appended as written), for comparing folders that may not exist yet.
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for name in rest.iter().rev() {
        out.push(name);
    }
    out
}

/// Whether `outer` is `inner` or one of its ancestors.
fn contains(outer: &Path, inner: &Path) -> bool {
    resolved(inner).starts_with(resolved(outer))
}

/// Checks `--output` before anything runs: missing, or an empty folder, or
/// `--force`; never a folder holding the store or the context.
fn check_output(dir: &Path, force: bool, store: &Path, context: &Path) -> Result<(), Failure> {
    if contains(store, dir) {
        return Err(invalid(format!(
            "--output {}: is inside the store {}; export somewhere else",
            dir.display(),
            store.display()
        )));
    }
    match std::fs::symlink_metadata(dir) {
        Err(_) => Ok(()),
        Ok(m) if !m.is_dir() => Err(invalid(format!(
            "--output {}: exists and is not a directory",
            dir.display()
        ))),
        Ok(_) => {
            if contains(dir, store) || contains(dir, context) {
                return Err(invalid(format!(
                    "--output {}: holds the store or the context; refusing to replace it",
                    dir.display()
                )));
            }
            let empty = std::fs::read_dir(dir)
                .map_err(|e| invalid(format!("--output {}: {e}", dir.display())))?
                .next()
                .is_none();
            if empty || force {
                Ok(())
            } else {
                Err(invalid(format!(
                    "--output {}: not empty (give --force to replace its contents)",
                    dir.display()
                )))
            }
        }
    }
}

/// Runs `build`.
pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let text = read_text(&args.graph)?;
    let context = match &args.context {
        Some(c) => c.clone(),
        None if args.graph == "-" => PathBuf::from("."),
        None => Path::new(&args.graph)
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    if !context.is_dir() {
        return Err(invalid(format!(
            "--context {}: not a directory",
            context.display()
        )));
    }
    let strategy = args.strategy.into();
    let compiled = match parse_input(&text)? {
        Input::Graph(g) => compile(&g, strategy),
        Input::Ir(ir) => compile_ir(ir, strategy),
    };
    // An unknown --target is invalid input: found before the store is opened.
    crate::solve::pick_output(&compiled, args.target.as_deref())
        .map_err(|e| invalid(e.to_string()))?;
    let store_path = super::store_dir(args.store.clone())?;
    if let Some(out) = &args.output {
        check_output(out, args.force, &store_path, &context)?;
    }
    let progress = Progress::new(args.progress);
    let store = open_store(Some(store_path), Mode::Shared, "hardmerge build")?;
    let events = |e| progress.event(e);
    let opts = BuildOptions {
        context,
        target: args.target.clone(),
        strategy,
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        events: &events,
    };
    let built = build_compiled(&compiled, &store, &opts);
    progress.finish();
    let mut built = built.map_err(|e| match e {
        BuildError::Invalid(m) => invalid(m),
        BuildError::Failed(m) => Failure {
            code: EXIT_FAILED,
            message: m,
        },
        BuildError::Store(m) => Failure {
            code: EXIT_STORE,
            message: m,
        },
    })?;
    if let Some(out) = &args.output {
        if out.exists() {
            crate::fs::remove::remove_all(out)
                .map_err(|e| failed(format!("cannot clear --output {}: {e}", out.display())))?;
        }
        let stats = store
            .export(&built.key, out, args.link_output)
            .map_err(|e| failed(format!("export to {}: {e}", out.display())))?;
        // Link fallbacks of the export count like those of the ops.
        if !stats.fallbacks.is_empty() {
            let report = &mut built.report;
            report.totals.fallbacks += stats.fallbacks.len() as u64;
            for f in &stats.fallbacks {
                let why = format!(
                    "{} in the export",
                    crate::solve::report::fallback_reason(f.errno)
                );
                match report.fallback_reasons.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, n)) => *n += 1,
                    None => report.fallback_reasons.push((why, 1)),
                }
            }
        }
    }
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&built.report).expect("serialise") + "\n";
        std::fs::write(path, text)
            .map_err(|e| failed(format!("cannot write report {}: {e}", path.display())))?;
    }
    if !progress.quiet() {
        eprintln!("{}", built.report.summary());
    }
    write_out(None, &format!("{}\n", built.digest))
}

fn failed(message: String) -> Failure {
    Failure {
        code: EXIT_FAILED,
        message,
    }
}
