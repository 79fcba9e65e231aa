//! The reporter: what the user sees while a run is going. An indicatif
//! progress bar on a terminal, one line per item with `--verbose`, or
//! nothing; and warnings when a worker is lost, stuck or does not start.
//!
//! The collector produces [`RunEvent`]s and the reporter consumes them, the
//! same in every mode, so the bar moves the same way whoever fetched the item.
//! Worker processes write to their own log files, never to the terminal; the
//! master's own warnings go through [`warn`], which clears the bar, prints and
//! redraws it, so the two never garble each other.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use flagmaster_worker::protocol::{ItemReport, Status};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How the run shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Nothing until the report (`--quiet`, or output is not a terminal).
    Silent,
    /// A bar on stderr.
    Bar,
    /// One line per item, as it completes (`--verbose`).
    Lines { to_stderr: bool },
}

impl Display {
    /// The bar only when a person is watching: both stdout and stderr are a
    /// terminal (stderr is where it is drawn; stdout being piped means the
    /// output is going to a program or a file).
    pub fn choose(quiet: bool, verbose: bool, json: bool) -> Display {
        if verbose {
            // With --json, stdout carries the JSON document only.
            Display::Lines { to_stderr: json }
        } else if quiet || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            Display::Silent
        } else {
            Display::Bar
        }
    }
}

/// The bar of this run, if one is drawn; [`warn`] needs to find it from
/// wherever a warning comes from.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// Serializes verbose lines and warnings written from several threads.
static OUTPUT: Mutex<()> = Mutex::new(());

/// Figures shown on the bar.
#[derive(Default)]
struct Tallies {
    ok: u64,
    skipped: u64,
    not_found: u64,
    error: u64,
    bytes: u64,
}

/// What happened during a run, as the reporter hears of it.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// An item ended.
    Item(&'a ItemReport),
    /// A worker ended without finishing; what it held went to the others.
    WorkerLost {
        worker: u32,
        pid: u32,
        exit: &'a str,
        handed_on: usize,
    },
    /// A worker process held items and said nothing for too long: killed.
    WorkerStuck {
        worker: u32,
        pid: u32,
        silent: Duration,
    },
    /// A worker could not be started; the run goes on with the others.
    NotStarted { worker: u32, why: String },
    /// Saving this item found the disk full: no more items are started.
    DiskFull(&'a str),
}

pub struct Reporter {
    display: Display,
    bar: Option<ProgressBar>,
    tallies: Tallies,
}

impl Reporter {
    pub fn new(display: Display, items: usize) -> Reporter {
        let bar = (display == Display::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(items as u64),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} {pos}/{len} {msg} ETA {eta} [{wide_bar}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            // Redraw even while no item completes, so elapsed time and ETA move.
            bar.enable_steady_tick(Duration::from_millis(250));
            let _ = BAR.set(bar.clone());
            bar
        });
        let reporter = Reporter {
            display,
            bar,
            tallies: Tallies::default(),
        };
        reporter.refresh();
        reporter
    }

    pub fn report_event(&mut self, event: RunEvent) {
        match event {
            RunEvent::Item(report) => self.item(report),
            RunEvent::WorkerLost {
                worker,
                pid,
                exit,
                handed_on,
            } => warn(&format!(
                "worker {worker} (pid {pid}) ended without finishing ({exit}); \
                 {handed_on} unfinished items handed to other workers"
            )),
            RunEvent::WorkerStuck {
                worker,
                pid,
                silent,
            } => warn(&format!(
                "worker {worker} (pid {pid}) silent for {:.1} s with items in hand; killing it",
                silent.as_secs_f64()
            )),
            RunEvent::NotStarted { worker, why } => warn(&format!("worker {worker} {why}")),
            RunEvent::DiskFull(item) => warn(&format!(
                "error: disk full (saving {item}): no more items are started; \
                 the rest end as ERROR (disk full)"
            )),
        }
    }

    fn item(&mut self, report: &ItemReport) {
        match report.status {
            Status::Ok => self.tallies.ok += 1,
            Status::Skipped => self.tallies.skipped += 1,
            Status::NotFound => self.tallies.not_found += 1,
            Status::Error => self.tallies.error += 1,
        }
        self.tallies.bytes += report.bytes;
        match self.display {
            Display::Silent => {}
            Display::Bar => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                self.refresh();
            }
            Display::Lines { to_stderr } => {
                let line = item_line(report);
                let _guard = OUTPUT.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = if to_stderr {
                    writeln!(std::io::stderr().lock(), "{line}")
                } else {
                    writeln!(std::io::stdout().lock(), "{line}")
                };
            }
        }
    }

    fn refresh(&self) {
        if let Some(bar) = &self.bar {
            let t = &self.tallies;
            let secs = bar.elapsed().as_secs_f64();
            let rate = if secs > 0.0 {
                bar.position() as f64 / secs
            } else {
                0.0
            };
            let skipped = match t.skipped {
                0 => String::new(),
                n => format!(" | skipped {n}"),
            };
            bar.set_message(format!(
                "| OK {}{skipped} | not found {} | errors {} | {} | {rate:.1}/s |",
                t.ok,
                t.not_found,
                t.error,
                HumanBytes(t.bytes),
            ));
        }
    }
}

/// The `--verbose` line of one item, like the classic scripts print them.
pub fn item_line(r: &ItemReport) -> String {
    let mut line = format!(
        "{:<9} {}  {} bytes  worker {} thread {}  {} ms",
        r.status.label(),
        r.name,
        r.bytes,
        r.worker,
        r.thread,
        r.ms
    );
    if let Some(reason) = r.reason.as_deref().filter(|_| r.status != Status::Ok) {
        line += &format!("  ({reason})");
    }
    line
}

/// Prints a warning on stderr without garbling the bar.
pub fn warn(message: &str) {
    let _guard = OUTPUT.lock().unwrap_or_else(PoisonError::into_inner);
    match BAR.get().filter(|bar| !bar.is_finished()) {
        Some(bar) => bar.suspend(|| eprintln!("flagmaster: {message}")),
        None => eprintln!("flagmaster: {message}"),
    }
}

/// Takes the bar off the screen, from wherever the run ends (the report
/// printer, or the signal watcher).
pub fn clear() {
    if let Some(bar) = BAR.get() {
        bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status, reason: Option<&str>) -> ItemReport {
        ItemReport {
            name: "Chad".into(),
            ms: 56,
            reason: reason.map(str::to_string),
            worker: 3,
            thread: 1,
            ..ItemReport::for_test(0, status, 1234)
        }
    }

    #[test]
    fn verbose_lines_name_status_bytes_and_worker() {
        assert_eq!(
            item_line(&report(Status::Ok, None)),
            "OK        Chad  1234 bytes  worker 3 thread 1  56 ms"
        );
        assert_eq!(
            item_line(&report(Status::Error, Some("HTTP 503"))),
            "ERROR     Chad  1234 bytes  worker 3 thread 1  56 ms  (HTTP 503)"
        );
    }

    #[test]
    fn verbose_wins_and_json_moves_lines_to_stderr() {
        assert_eq!(
            Display::choose(false, true, true),
            Display::Lines { to_stderr: true }
        );
        assert_eq!(Display::choose(true, false, false), Display::Silent);
    }
}
