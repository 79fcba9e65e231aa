//! The end of a run: temporary files removed, the validators of
//! `--if-changed` saved, `master.log`'s `done` line, the report printed and the
//! exit status chosen, once, by whichever thread gets there first.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use flagmaster_worker::log::{LogFile, OrDash};
use flagmaster_worker::protocol::ItemReport;
use flagmaster_worker::save::remove_leftovers;

use crate::config::RunConfig;
use crate::input::rerun::Book;
use crate::master::collect::{lock, Shared};
use crate::report::{RunInfo, RunReport};
use crate::run::manifest::Manifest;

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
    /// `--manifest`, written when the run ends.
    manifest: Option<Manifest>,
}

impl Finale {
    pub fn new(
        info: RunInfo,
        config: &RunConfig,
        collector: Shared,
        log: Arc<LogFile>,
        region: Option<PathBuf>,
        validators: Option<Book>,
        manifest: Option<Manifest>,
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
            manifest,
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
        let manifest_failed = self
            .manifest
            .as_ref()
            .is_some_and(|m| !write_manifest(m, &collected.reports, &self.log));
        if let Some(region) = &self.region {
            let _ = fs::remove_file(region);
        }
        let report = RunReport::new(self.info.clone(), collected, elapsed, interrupted);
        let status = if interrupted {
            crate::report::exit::INTERRUPTED
        } else if manifest_failed {
            crate::report::exit::SOME_FAILED
        } else {
            crate::report::exit::for_counts(&report.counts)
        };
        log_failed(&self.log, &report.results);
        self.log.line(&[
            ("event", &"done"),
            ("ok", &report.counts.ok),
            ("not_found", &report.counts.not_found),
            ("error", &report.counts.error),
            ("skipped", &report.counts.skipped),
            ("unfinished", &report.counts.interrupted),
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

/// Writes `--manifest` and says so in `master.log` (`manifest`); a manifest
/// that cannot be written is one line on stderr too. False if it failed.
fn write_manifest(manifest: &Manifest, reports: &[ItemReport], log: &LogFile) -> bool {
    let path = manifest.path().display().to_string();
    match manifest.write(reports) {
        Ok(files) => {
            log.line(&[("event", &"manifest"), ("path", &path), ("files", &files)]);
            true
        }
        Err(e) => {
            eprintln!("flagmaster: error: cannot write manifest {path}: {e}");
            let why = e.to_string();
            log.line(&[
                ("event", &"manifest_failed"),
                ("path", &path),
                ("why", &why),
            ]);
            false
        }
    }
}

/// Most `failed` lines in `master.log`; the rest are counted in `failed_more`
/// (every failed item is in the worker logs' `item_done` lines and the JSON
/// report).
const MAX_LOGGED_FAILURES: usize = 100;

/// One `failed` line per failed item, at most [`MAX_LOGGED_FAILURES`], then
/// `failed_more` with the count of the others.
fn log_failed(log: &LogFile, results: &[ItemReport]) {
    let mut failed = crate::report::failed(results);
    for r in failed.by_ref().take(MAX_LOGGED_FAILURES) {
        log.line(&[
            ("event", &"failed"),
            ("item", &r.name),
            ("status", &r.status.label()),
            ("reason", &OrDash(r.reason.as_deref())),
            ("attempts", &r.attempts),
            // 0: no worker reported it (none was left to fetch it).
            ("worker", &OrDash((r.worker > 0).then_some(r.worker))),
        ]);
    }
    let more = failed.count();
    if more > 0 {
        log.line(&[("event", &"failed_more"), ("count", &more)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagmaster_worker::protocol::Status;

    #[test]
    fn master_log_lists_a_hundred_failures_and_counts_the_rest() {
        let mut results: Vec<ItemReport> = (0..103)
            .map(|i| ItemReport {
                reason: Some("HTTP 404".into()),
                ..ItemReport::for_test(i, Status::NotFound, 0)
            })
            .collect();
        results.push(ItemReport::for_test(103, Status::Ok, 5));
        // Not failures: stopped by an interrupt.
        results.insert(
            0,
            ItemReport::unfinished(
                &flagmaster_worker::protocol::Item {
                    index: 104,
                    name: "Chad".into(),
                    url: String::new(),
                    file: String::new(),
                    ext_from_type: false,
                    validators: None,
                    sha256: None,
                },
                crate::master::collect::INTERRUPTED,
            ),
        );
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::append(&dir.path().join("master.log")).unwrap();
        log_failed(&log, &results);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 101);
        assert!(
            lines[0].ends_with(
                " event=failed item=N0 status=NOT_FOUND reason=\"HTTP 404\" attempts=1 worker=1"
            ),
            "{}",
            lines[0]
        );
        assert!(lines[99].contains(" item=N99 "), "{}", lines[99]);
        assert!(lines[100].ends_with(" event=failed_more count=3"), "{text}");
    }
}
