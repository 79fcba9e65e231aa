//! The end of a run: temporary files removed, the validators of
//! `--if-changed` saved, `master.log`'s `done` line, the report printed and the
//! exit status chosen, once, by whichever thread gets there first.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flagmaster_worker::log::LogFile;
use flagmaster_worker::save::remove_leftovers;

use crate::config::RunConfig;
use crate::input::rerun::Book;
use crate::master::collect::{lock, Shared};
use crate::report::{RunInfo, RunReport};

/// What it takes to end a run and print its report, from whichever thread gets
/// there first: the main thread when the workers are done, or the signal
/// watcher when an interrupt's grace period runs out.
pub struct Finale {
    info: RunInfo,
    json: bool,
    dest: PathBuf,
    started: Instant,
    pub collector: Shared,
    log: Arc<LogFile>,
    /// The politeness region, removed here too because an interrupted run
    /// exits from the signal watcher without running destructors.
    region: Option<PathBuf>,
    concluded: AtomicBool,
    /// The sidecar of `--if-changed`, written when the run ends.
    validators: Option<Book>,
}

impl Finale {
    pub fn new(
        info: RunInfo,
        config: &RunConfig,
        collector: Shared,
        log: Arc<LogFile>,
        region: Option<PathBuf>,
        validators: Option<Book>,
    ) -> Finale {
        Finale {
            info,
            json: config.json,
            dest: config.dest.clone(),
            started: Instant::now(),
            collector,
            log,
            region,
            concluded: AtomicBool::new(false),
            validators,
        }
    }

    pub fn is_concluded(&self) -> bool {
        self.concluded.load(Ordering::SeqCst)
    }

    /// Removes temporary files, prints the report and returns the exit status;
    /// `None` if another thread has already done so.
    pub fn conclude(&self) -> Option<u8> {
        if self.concluded.swap(true, Ordering::SeqCst) {
            return None;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let (collected, interrupted) = {
            let mut collector = lock(&self.collector);
            (collector.take_results(), collector.is_stopping())
        };
        crate::report::progress::clear();
        // Only a worker that did not finish (killed, crashed, interrupted) can
        // leave a temporary file behind; a clean run spares the scan of a
        // destination that may hold many thousands of files.
        let unclean = interrupted || collected.workers.iter().any(|w| w.summary.is_none());
        if unclean {
            let _ = remove_leftovers(&self.dest);
        }
        if let Some(book) = &self.validators {
            book.finish(&collected.reports, &self.log);
        }
        if let Some(region) = &self.region {
            let _ = fs::remove_file(region);
        }
        let report = RunReport::new(self.info.clone(), collected, elapsed, interrupted);
        let status = if interrupted {
            crate::report::exit::INTERRUPTED
        } else {
            crate::report::exit::for_counts(&report.counts)
        };
        self.log.line(&[
            ("event", &"done"),
            ("ok", &report.counts.ok),
            ("not_found", &report.counts.not_found),
            ("error", &report.counts.error),
            ("skipped", &report.counts.skipped),
            ("bytes", &report.bytes),
            ("elapsed_secs", &format!("{elapsed:.6}")),
            ("interrupted", &interrupted),
            ("exit", &status),
        ]);
        let text = if self.json {
            report.to_json() + "\n"
        } else {
            report.to_text()
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        Some(status)
    }
}
