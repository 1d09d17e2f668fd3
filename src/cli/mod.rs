//! The command line (SPEC §5). The only place that knows about exit codes,
//! stdin/stdout and terminals.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod build;
mod progress;
mod store_cmds;

pub use progress::ProgressMode;

use crate::compile::{compile, compile_ir, Compiled, Strategy};
use crate::graph::GraphError;
use crate::{parse_input, Input};

/// Exit code: the build failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the input or the command line is invalid.
pub const EXIT_INVALID: u8 = 2;
/// Exit code: the store is unusable, or `verify` found damage.
pub const EXIT_STORE: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "hardmerge",
    version,
    about = "Compile BuildKit-style filesystem op graphs into hard-linked merges",
    long_about = "hardmerge reads a DAG of filesystem ops (sources, mkdir/mkfile/rm/symlink, copy, \
merge, diff, with_directory/with_file) as JSON, compiles every copy into a merge layer that \
hard-links wherever no owner, mode or timestamp changes, and explains each decision.",
    after_help = "Examples:\n  hardmerge build fixtures/example.json --output out/\n  hardmerge explain fixtures/example.json\n  hardmerge compile fixtures/example.json -o plan.json\n  hardmerge dot --compiled fixtures/example.json | dot -Tsvg > plan.svg"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrategyArg {
    /// Hard-link wherever no owner, mode or timestamp changes.
    Hardlink,
    /// The reference: copy every byte.
    Copy,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Hardlink => Strategy::Hardlink,
            StrategyArg::Copy => Strategy::Copy,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile a graph to the IR (JSON, keys sorted, ops in dependency order).
    #[command(
        after_help = "Examples:\n  hardmerge compile fixtures/example.json\n  hardmerge compile graph.json --strategy copy -o reference.json\n  cat graph.json | hardmerge compile -"
    )]
    Compile {
        /// The graph (or a compiled IR) as JSON: a file path, or `-` for stdin.
        graph: String,
        /// Which strategy layers use.
        #[arg(long, value_enum, default_value = "hardlink")]
        strategy: StrategyArg,
        /// Write the IR to this file instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print every rewrite decision, one line each: op, from -> to, [rule], reason.
    #[command(
        after_help = "Example:\n  hardmerge explain fixtures/example.json\n  out: with_directory -> merge[base, placed with_directory] (link) [placed-merge] placed at /srv/app, filtered; ..."
    )]
    Explain {
        /// The graph as JSON: a file path, or `-` for stdin.
        graph: String,
        /// Which strategy layers use.
        #[arg(long, value_enum, default_value = "hardlink")]
        strategy: StrategyArg,
    },
    /// Print the graph (or, with --compiled, the IR) in Graphviz dot.
    #[command(
        after_help = "Examples:\n  hardmerge dot fixtures/example.json | dot -Tsvg > graph.svg\n  hardmerge dot --compiled fixtures/example.json | dot -Tpng > ir.png"
    )]
    Dot {
        /// The graph as JSON: a file path, or `-` for stdin.
        graph: String,
        /// Render the compiled IR instead of the input graph.
        #[arg(long)]
        compiled: bool,
        /// With --compiled, which strategy layers use.
        #[arg(long, value_enum, default_value = "hardlink")]
        strategy: StrategyArg,
    },
    /// Build an output of the graph into the store; print its tree digest last.
    #[command(
        after_help = "Examples:\n  hardmerge build fixtures/example.json --output out/\n  hardmerge build graph.json --target image --store /var/cache/hm --report report.json\n  hardmerge build graph.json --strategy copy --progress plain"
    )]
    Build(build::BuildArgs),
    /// Print the manifest of a folder (SPEC §6) and its tree digest.
    #[command(
        after_help = "Examples:\n  hardmerge tree out/\n  hardmerge tree out/ --json | jq length"
    )]
    Tree {
        /// The folder.
        dir: PathBuf,
        /// Print the manifest as JSON (the exact bytes the digest hashes).
        #[arg(long)]
        json: bool,
    },
    /// Disk use of the store: logical, physical (each inode once), saved.
    #[command(
        after_help = "Examples:\n  hardmerge du\n  hardmerge du --store /var/cache/hm --json"
    )]
    Du {
        /// The store folder.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove snapshots to free space; prints what was freed.
    #[command(
        after_help = "Examples:\n  hardmerge prune --all\n  hardmerge prune --keep-bytes 10000000000"
    )]
    Prune {
        /// The store folder.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Remove every snapshot.
        #[arg(long)]
        all: bool,
        /// Remove least recently used snapshots until the store holds at most N bytes.
        #[arg(long, value_name = "N")]
        keep_bytes: Option<u64>,
    },
    /// Check every snapshot against the tree digest recorded at commit.
    #[command(
        after_help = "Example:\n  hardmerge verify --store /var/cache/hm   # exit 3 and the damaged snapshots on a mismatch"
    )]
    Verify {
        /// The store folder.
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
}

/// The store folder: `--store`, else `$HARDMERGE_STORE`, else
/// `$XDG_CACHE_HOME/hardmerge`, else `~/.cache/hardmerge`.
pub fn store_dir(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("HARDMERGE_STORE") {
        return Ok(p);
    }
    if let Some(p) = env("XDG_CACHE_HOME") {
        return Ok(p.join("hardmerge"));
    }
    if let Some(h) = env("HOME") {
        return Ok(h.join(".cache").join("hardmerge"));
    }
    Err(Failure {
        code: EXIT_INVALID,
        message: "no store: give --store DIR or set HARDMERGE_STORE".into(),
    })
}

/// Opens the store, saying who holds its lock if it has to wait.
pub fn open_store(
    flag: Option<PathBuf>,
    mode: crate::snapshot::lock::Mode,
    what: &str,
) -> Result<crate::snapshot::native::NativeStore, Failure> {
    let dir = store_dir(flag)?;
    let waiting = |h: &[String]| eprintln!("{}", progress::waiting_line(h));
    crate::snapshot::native::NativeStore::open(&dir, mode, what, &waiting).map_err(|e| Failure {
        code: EXIT_STORE,
        message: e.to_string(),
    })
}

/// A failed command: its exit code and message.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code (SPEC §5).
    pub code: u8,
    /// The message, printed after `error: `.
    pub message: String,
}

impl From<GraphError> for Failure {
    fn from(e: GraphError) -> Failure {
        Failure {
            code: EXIT_INVALID,
            message: e.to_string(),
        }
    }
}

pub(crate) fn read_text(arg: &str) -> Result<String, Failure> {
    let mut text = String::new();
    let result = if arg == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read(arg).and_then(|bytes| {
            String::from_utf8(bytes)
                .map(|s| text = s)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
        })
    };
    let shown = if arg == "-" { "stdin" } else { arg };
    result.map_err(|e| Failure {
        code: EXIT_INVALID,
        message: format!("cannot read graph {shown}: {e}"),
    })?;
    // A UTF-8 byte order mark (some editors write one) is not JSON: skip it.
    if let Some(rest) = text.strip_prefix('\u{feff}') {
        text = rest.to_string();
    }
    Ok(text)
}

fn compile_input(arg: &str, strategy: Strategy) -> Result<Compiled, Failure> {
    let text = read_text(arg)?;
    let input = parse_input(&text)?;
    let compiled = match &input {
        Input::Graph(g) => compile(g, strategy),
        Input::Ir(ir) => compile_ir(ir.clone(), strategy),
    };
    // The input is not needed any more; freeing a large one costs time.
    std::mem::forget(input);
    std::mem::forget(text);
    Ok(compiled)
}

pub(crate) fn write_out(path: Option<&Path>, text: &str) -> Result<(), Failure> {
    let result = match path {
        Some(p) => std::fs::write(p, text),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|_| out.flush())
        }
    };
    match result {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is not a failure of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure {
            code: 1,
            message: match path {
                Some(p) => format!("cannot write {}: {e}", p.display()),
                None => format!("cannot write to stdout: {e}"),
            },
        }),
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Compile {
            graph,
            strategy,
            output,
        } => {
            let compiled = compile_input(&graph, strategy.into())?;
            let result = match &output {
                Some(p) => std::fs::File::create(p).and_then(|f| compiled.write_json_pretty(f)),
                None => compiled.write_json_pretty(std::io::stdout().lock()),
            };
            // Freeing a large IR takes a while, and the process ends here.
            std::mem::forget(compiled);
            match result {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(Failure {
                    code: EXIT_FAILED,
                    message: match &output {
                        Some(p) => format!("cannot write {}: {e}", p.display()),
                        None => format!("cannot write to stdout: {e}"),
                    },
                }),
            }
        }
        Command::Explain { graph, strategy } => {
            let compiled = compile_input(&graph, strategy.into())?;
            write_out(None, &compiled.explain())
        }
        Command::Dot {
            graph,
            compiled,
            strategy,
        } => {
            let text = read_text(&graph)?;
            let input = parse_input(&text)?;
            let dot = match (input, compiled) {
                (Input::Graph(g), false) => crate::dot::graph_dot(&g),
                (Input::Graph(g), true) => crate::dot::ir_dot(&compile(&g, strategy.into())),
                (Input::Ir(ir), _) => crate::dot::ir_dot(&compile_ir(ir, strategy.into())),
            };
            write_out(None, &dot)
        }
        Command::Build(args) => build::run(args),
        Command::Tree { dir, json } => write_out(None, &store_cmds::tree(&dir, json)?),
        Command::Du { store, json } => {
            let s = open_store(store, crate::snapshot::lock::Mode::Shared, "hardmerge du")?;
            write_out(None, &store_cmds::du(&s, json)?)
        }
        Command::Prune {
            store,
            all,
            keep_bytes,
        } => {
            if !all && keep_bytes.is_none() {
                return Err(Failure {
                    code: EXIT_INVALID,
                    message: "prune needs --all or --keep-bytes N".into(),
                });
            }
            let s = open_store(
                store,
                crate::snapshot::lock::Mode::Exclusive,
                "hardmerge prune",
            )?;
            write_out(None, &store_cmds::prune(&s, all, keep_bytes)?)
        }
        Command::Verify { store } => {
            let s = open_store(
                store,
                crate::snapshot::lock::Mode::Shared,
                "hardmerge verify",
            )?;
            write_out(None, &store_cmds::verify(&s)?)
        }
    }
}

/// Runs the CLI with the process's arguments; returns the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_INVALID } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // Control characters escaped, line by line (verify lists one
            // damaged snapshot per line).
            let lines: Vec<String> = f
                .message
                .split('\n')
                .map(|l| crate::graph::error::printable(l).into_owned())
                .collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::from(f.code)
        }
    }
}
