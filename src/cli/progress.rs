//! Build progress on stderr: a bar on a terminal, plain lines otherwise,
//! JSON lines for frontends, or nothing.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::solve::Event;

/// How progress is shown (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// One line per op.
    Plain,
    /// Nothing but errors and the summary.
    Quiet,
    /// One JSON event per line.
    Json,
}

/// Renders solver events.
pub struct Progress {
    mode: ProgressMode,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// A renderer; `auto` picks the bar only when stderr is a terminal.
    pub fn new(mode: ProgressMode) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Auto,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        Progress {
            mode,
            bar: Mutex::new(None),
        }
    }

    /// Whether the summary line is printed.
    pub fn quiet(&self) -> bool {
        self.mode == ProgressMode::Quiet
    }

    /// Shows one event.
    pub fn event(&self, e: Event) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Json => {
                let line = serde_json::to_string(&e).expect("serialise");
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{line}");
            }
            ProgressMode::Plain => {
                let line = match &e {
                    Event::Plan { ops, cached } => format!("plan: {ops} ops, {cached} cached"),
                    Event::Cached { .. } => return,
                    Event::Started { names, kind } => format!("run   {kind} {}", names.join(", ")),
                    Event::Done {
                        names,
                        kind,
                        seconds,
                        files_linked,
                        files_copied,
                        ..
                    } => format!(
                        "done  {kind} {} in {seconds:.2}s ({files_linked} linked, {files_copied} copied)",
                        names.join(", ")
                    ),
                    Event::Waiting { holders } => waiting_line(holders),
                };
                eprintln!("{line}");
            }
            ProgressMode::Auto => {
                let mut bar = self.bar.lock().expect("bar");
                match &e {
                    Event::Plan { ops, cached } => {
                        let b = ProgressBar::new(*ops as u64);
                        b.set_style(
                            ProgressStyle::with_template(
                                "{spinner} [{bar:30}] {pos}/{len} ops {wide_msg}",
                            )
                            .expect("template")
                            .progress_chars("=> "),
                        );
                        b.set_position(*cached as u64);
                        *bar = Some(b);
                    }
                    Event::Started { names, kind } => {
                        if let Some(b) = bar.as_ref() {
                            b.set_message(format!("{kind} {}", names.join(", ")));
                        }
                    }
                    Event::Done { .. } => {
                        if let Some(b) = bar.as_ref() {
                            b.inc(1);
                        }
                    }
                    Event::Cached { .. } => {}
                    Event::Waiting { holders } => eprintln!("{}", waiting_line(holders)),
                }
            }
        }
    }

    /// Clears the bar before the summary.
    pub fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("bar").take() {
            b.finish_and_clear();
        }
    }
}

/// The line a process prints while it waits for the store lock.
pub fn waiting_line(holders: &[String]) -> String {
    if holders.is_empty() {
        "waiting for the store lock (held by another hardmerge process)".to_string()
    } else {
        format!("waiting for the store lock, held by {}", holders.join("; "))
    }
}
