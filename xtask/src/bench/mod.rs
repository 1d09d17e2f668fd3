//! `cargo xtask bench`: the benchmark harness of SPEC §9.
//!
//! Every scenario is a [`Scenario`] in [`SCENARIOS`]: a name, a line saying
//! what it times, and a function that gets a [`Bench`] (the release binary,
//! the run count, a scratch folder) and returns table [`Row`]s. A scenario
//! that is not written yet has no function and shows as a "not implemented
//! yet" row; adding one is writing its module and filling in `run`.
//!
//! The filesystem scenarios (`big-copy`, `import`, `chain`, `rebuild`,
//! `disk`) share one generated data set, a [`workload::Workload`], made on
//! first use (see that module for the layout and sizes).
//!
//! Invariants: timings are wall clock around whole `hardmerge` processes,
//! with a warm page cache (an untimed warm-up of every timed command) and a
//! `sync` before each; every file a scenario makes lives under the bench's
//! scratch folder, on the filesystem of the stores (`target/bench-tmp/` or
//! `--tmp`), which is removed at the end unless the process is killed;
//! nothing here asserts a timing.

mod big_copy;
mod chain;
mod compile;
mod graphgen;
mod import;
mod measure;
mod report;
mod rng;
mod trees;
mod workload;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use measure::ScratchDir;
use report::Row;

/// A scenario's body: measures and returns its rows.
pub type RunScenario = fn(&Bench) -> Result<Vec<Row>>;

/// A benchmark scenario of SPEC §9.
#[derive(Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// What is timed, and against which peers; shown by `--help`.
    pub what: &'static str,
    /// `None` until the scenario is written: it then shows as a
    /// "not implemented yet" row, or is an error when asked for by name.
    pub run: Option<RunScenario>,
}

/// Every scenario, in the order of the table in SPEC §9.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "big-copy",
        what: "a build adding one with_directory of a 50,000-file ~800 MB source \
               onto a base (source imported before); peers cp -a, cp -al",
        run: Some(big_copy::run_big_copy),
    },
    Scenario {
        name: "import",
        what: "the first build of that source (a local import); peer cp -a",
        run: Some(import::run),
    },
    Scenario {
        name: "chain",
        what: "100 chained with_directory of 500 files each onto a 50,000-file base; \
               peer one with_directory of all the same files",
        run: Some(chain::run),
    },
    Scenario {
        name: "rebuild",
        what: "the big-copy graph again, unchanged; peer the big-copy build",
        run: Some(big_copy::run_rebuild),
    },
    Scenario {
        name: "compile",
        what: "hardmerge compile of generated graphs of 10k, 100k and 1M ops \
               (--sizes); ops/s and time per op relative to the smallest size",
        run: Some(compile::run),
    },
    Scenario {
        name: "disk",
        what: "bytes added to the store by big-copy (du physical); peer the tree's own size",
        run: Some(big_copy::run_disk),
    },
];

const DEFAULT_RUNS: usize = 5;

/// What a scenario gets to work with.
pub struct Bench {
    /// The `hardmerge` binary under test.
    pub hardmerge: PathBuf,
    /// Timed runs per measurement.
    pub runs: usize,
    /// `--sizes`, for the scenarios that generate inputs of several sizes.
    pub sizes: Option<Vec<usize>>,
    /// `--small`: the filesystem scenarios use a tree a tenth the size.
    pub small: bool,
    scratch: ScratchDir,
    /// The filesystem scenarios' data, generated on first use.
    workload: OnceCell<workload::Workload>,
}

impl Bench {
    /// A fresh folder for one scenario inside the bench's scratch folder
    /// (removed with it).
    pub fn scenario_dir(&self, scenario: &str) -> Result<PathBuf> {
        let dir = self.scratch.path().join(scenario);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// The filesystem scenarios' trees, generated on the first call.
    pub fn workload(&self) -> Result<&workload::Workload> {
        if let Some(work) = self.workload.get() {
            return Ok(work);
        }
        let work = workload::Workload::generate(self)?;
        Ok(self.workload.get_or_init(|| work))
    }
}

/// The parsed command line of `cargo xtask bench`.
#[derive(Debug, Default, PartialEq)]
struct Options {
    scenarios: Vec<String>,
    runs: Option<usize>,
    json: Option<PathBuf>,
    sizes: Option<Vec<usize>>,
    hardmerge: Option<PathBuf>,
    tmp: Option<PathBuf>,
    small: bool,
    help: bool,
}

fn usage() -> String {
    let mut text = String::from(
        "\
usage: cargo xtask bench [SCENARIO...] [options]

Builds hardmerge with --release (target/release/hardmerge), runs each scenario
N times and prints the median, min and max, peer timings and ratios.
No SCENARIO means every scenario; the ones not written yet show as rows.

The filesystem scenarios generate a 50,000-file, 800 MB tree (not timed) in
a scratch folder on the stores' filesystem, and need about 5 GB free there.
Every timed command gets an untimed warm-up first (warm page cache) and a
`sync` before it. The scratch folder is removed at the end.

options:
  --runs N          timed runs per measurement (default 5)
  --json FILE       also write the rows as a JSON array to FILE
  --sizes LIST      graph sizes for `compile`, comma-separated, k/M suffixes
                    allowed (default 10k,100k,1M)
  --hardmerge PATH  time this binary instead of building target/release/hardmerge
  --tmp DIR         make the scratch folder (data, stores, copies) in DIR
                    (default: target/bench-tmp); pick a folder on the disk
                    you want to measure
  --small           a 5,000-file, 80 MB tree instead, for a quick run

scenarios:
",
    );
    for s in SCENARIOS {
        let state = if s.run.is_some() {
            ""
        } else {
            " (not implemented yet)"
        };
        text.push_str(&format!("  {:<9} {}{state}\n", s.name, s.what));
    }
    text
}

/// Entry point of `cargo xtask bench`.
pub fn main(args: &[String]) -> Result<()> {
    let opts = parse_args(args)?;
    if opts.help {
        print!("{}", usage());
        return Ok(());
    }
    let selected = select(&opts.scenarios)?;
    let hardmerge = match &opts.hardmerge {
        Some(path) => path.clone(),
        None => build_release()?,
    };
    let tmp = match &opts.tmp {
        Some(dir) => dir.clone(),
        None => target_dir(&crate::workspace_root()).join("bench-tmp"),
    };
    let scratch = ScratchDir::new_in(&tmp, "hardmerge-bench")?;
    eprintln!("==> scratch folder {}", scratch.path().display());
    // A private copy, so that a `cargo build` elsewhere cannot swap the
    // binary in the middle of the run.
    let private = scratch.path().join("hardmerge");
    std::fs::copy(&hardmerge, &private)
        .with_context(|| format!("copying {} to {}", hardmerge.display(), private.display()))?;
    let bench = Bench {
        hardmerge: private,
        runs: opts.runs.unwrap_or(DEFAULT_RUNS),
        sizes: opts.sizes,
        small: opts.small,
        scratch,
        workload: OnceCell::new(),
    };

    let mut rows = Vec::new();
    for scenario in selected {
        match scenario.run {
            Some(run) => {
                eprintln!("==> bench {}", scenario.name);
                let found =
                    run(&bench).with_context(|| format!("scenario `{}` failed", scenario.name))?;
                rows.extend(found);
            }
            None => rows.push(Row::not_implemented(scenario.name)),
        }
    }
    drop(bench);
    if opts.tmp.is_none() {
        // Only when empty: another bench may be running.
        let _ = std::fs::remove_dir(&tmp);
    }

    println!(
        "hardmerge bench: wall clock of whole processes, warm page cache (an untimed \
         warm-up of each timed command, `sync` before each run); hardmerge syncs the \
         filesystem when it commits, `+ sync` peers count that writeback too; scratch in {}",
        tmp.display()
    );
    print!("{}", report::table(&rows));
    if let Some(path) = &opts.json {
        report::write_json(path, &rows)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Entry point of `cargo xtask gen-graph OPS [FILE] [--seed N]`.
pub fn gen_graph(args: &[String]) -> Result<()> {
    let mut positional = Vec::new();
    let mut seed = compile::SEED;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seed" => {
                let v = args.next().context("--seed needs a value")?;
                seed = v
                    .parse()
                    .with_context(|| format!("--seed wants an integer, not `{v}`"))?;
            }
            _ if arg.starts_with('-') && arg != "-" => bail!("unknown option `{arg}`"),
            _ => positional.push(arg.as_str()),
        }
    }
    let (ops, file) = match positional[..] {
        [ops] => (ops, None),
        [ops, file] => (ops, Some(file).filter(|f| *f != "-")),
        _ => bail!("usage: cargo xtask gen-graph OPS [FILE] [--seed N]"),
    };
    let [ops] = parse_sizes(ops)?[..] else {
        bail!("gen-graph takes one size, not `{ops}`");
    };
    let stats = match file {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("creating {path}"))?;
            graphgen::write_graph(std::io::BufWriter::new(file), ops, seed)?
        }
        None => {
            graphgen::write_graph(std::io::BufWriter::new(std::io::stdout().lock()), ops, seed)?
        }
    };
    eprintln!("{stats:?}");
    Ok(())
}

/// The scenarios to run: all of them when none is named, else the named
/// ones in the order given. Unknown and unwritten names are errors.
fn select(names: &[String]) -> Result<Vec<&'static Scenario>> {
    if names.is_empty() {
        return Ok(SCENARIOS.iter().collect());
    }
    let known = || {
        SCENARIOS
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut selected: Vec<&'static Scenario> = Vec::new();
    for name in names {
        let Some(scenario) = SCENARIOS.iter().find(|s| s.name == name) else {
            bail!("unknown scenario `{name}`; known scenarios: {}", known());
        };
        if scenario.run.is_none() {
            bail!("scenario `{name}` is not implemented yet");
        }
        if !selected.iter().any(|s| s.name == scenario.name) {
            selected.push(scenario);
        }
    }
    Ok(selected)
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut opts = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if arg.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String> {
            match inline.clone().or_else(|| args.next().cloned()) {
                Some(v) => Ok(v),
                None => bail!("{flag} needs a value"),
            }
        };
        match flag {
            "-h" | "--help" => opts.help = true,
            "--runs" => {
                let v = value()?;
                let runs: usize = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--runs wants a positive integer, not `{v}`"))?;
                opts.runs = Some(runs);
            }
            "--json" => opts.json = Some(PathBuf::from(value()?)),
            "--sizes" => opts.sizes = Some(parse_sizes(&value()?)?),
            "--hardmerge" => opts.hardmerge = Some(PathBuf::from(value()?)),
            "--tmp" => opts.tmp = Some(PathBuf::from(value()?)),
            "--small" => opts.small = true,
            _ if flag.starts_with('-') => bail!("unknown option `{arg}`\n\n{}", usage()),
            _ => opts.scenarios.push(arg.clone()),
        }
    }
    Ok(opts)
}

/// `10k,100000,1M` → `[10000, 100000, 1000000]`.
fn parse_sizes(list: &str) -> Result<Vec<usize>> {
    list.split(',')
        .map(|item| {
            let item = item.trim();
            let (digits, scale) = match item.strip_suffix(['k', 'K']) {
                Some(d) => (d, 1_000),
                None => match item.strip_suffix('M') {
                    Some(d) => (d, 1_000_000),
                    None => (item, 1),
                },
            };
            digits
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_mul(scale))
                .filter(|&n| n > 0)
                .with_context(|| format!("--sizes: `{item}` is not a size like 5000, 10k or 1M"))
        })
        .collect()
}

/// `cargo build --release -p hardmerge`, then the path of the binary.
fn build_release() -> Result<PathBuf> {
    let args = ["build", "--release", "--package", "hardmerge"];
    eprintln!("==> cargo {}", args.join(" "));
    let status = crate::cargo()
        .args(args)
        .status()
        .context("could not run cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    let bin = release_binary(&crate::workspace_root());
    if !bin.is_file() {
        bail!("cargo build succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// `target`, honouring `$CARGO_TARGET_DIR`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `target/release/hardmerge`, honouring `$CARGO_TARGET_DIR`.
fn release_binary(root: &Path) -> PathBuf {
    target_dir(root)
        .join("release")
        .join(format!("hardmerge{}", std::env::consts::EXE_SUFFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_scenarios_and_options() {
        let opts = parse_args(&strings(&[
            "compile",
            "--runs",
            "3",
            "--json=out.json",
            "--sizes",
            "1k,20000,1M",
        ]))
        .unwrap();
        assert_eq!(
            opts,
            Options {
                scenarios: strings(&["compile"]),
                runs: Some(3),
                json: Some("out.json".into()),
                sizes: Some(vec![1_000, 20_000, 1_000_000]),
                ..Options::default()
            }
        );
    }

    #[test]
    fn rejects_bad_options() {
        assert!(parse_args(&strings(&["--runs", "0"])).is_err());
        assert!(parse_args(&strings(&["--runs"])).is_err());
        assert!(parse_args(&strings(&["--sizes", "10q"])).is_err());
        assert!(parse_args(&strings(&["--frobnicate"])).is_err());
    }

    #[test]
    fn selects_scenarios() {
        assert_eq!(select(&[]).unwrap().len(), SCENARIOS.len());
        let names = |r: Vec<&Scenario>| r.iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(
            names(select(&strings(&["compile", "compile"])).unwrap()),
            ["compile"]
        );
        let unknown = select(&strings(&["nope"])).unwrap_err().to_string();
        assert!(unknown.contains("big-copy, import, chain, rebuild, compile, disk"));
        if let Some(unwritten) = SCENARIOS.iter().find(|s| s.run.is_none()) {
            let err = select(&strings(&[unwritten.name])).unwrap_err();
            assert!(err.to_string().contains("not implemented yet"));
        }
    }
}
