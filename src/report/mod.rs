//! The run report: figures folded from the collected results, and their text
//! and JSON forms. Pure functions of the results, so they are tested directly.

use std::fmt::Write as _;
use std::ops::AddAssign;

use flagmaster_worker::protocol::{ItemReport, Status};
use serde::{Deserialize, Serialize};

pub mod exit;
pub mod merge;
pub mod progress;
pub mod svg;

use crate::input::shard::Shard;
use crate::master::collect::{Collected, INTERRUPTED};

/// How many failed items the text report lists before pointing at the logs.
const MAX_LISTED_FAILURES: usize = 50;

/// Counts by outcome. Missing fields read as 0, so reports written before a
/// new outcome was added still merge.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Counts {
    pub ok: usize,
    pub not_found: usize,
    pub error: usize,
    /// Not downloaded because the file was already there (a success).
    pub skipped: usize,
    /// Not finished because the run was interrupted (Ctrl-C): not failures,
    /// a run again completes them.
    pub interrupted: usize,
}

impl AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        // Destructured so that a new field cannot be forgotten here.
        let Counts {
            ok,
            not_found,
            error,
            skipped,
            interrupted,
        } = other;
        self.ok += ok;
        self.not_found += not_found;
        self.error += error;
        self.skipped += skipped;
        self.interrupted += interrupted;
    }
}

/// The shard a run downloaded, as reported.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardInfo {
    #[serde(flatten)]
    pub shard: Shard,
    /// Items of the whole list, before the shard was taken.
    pub list_items: usize,
}

/// One row of the per-worker table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerRow {
    pub worker: u32,
    pub pid: u32,
    pub items: u32,
    pub bytes: u64,
    /// The worker's own time from start to finish; `None` if it never finished.
    pub secs: Option<f64>,
    /// How the worker process ended (proc mode only).
    pub exit: Option<String>,
    /// Peak resident memory of the worker's process in KiB, as it reported it
    /// (in threads mode, the whole process's).
    #[serde(default)]
    pub peak_rss_kb: Option<u64>,
}

/// Settings of the run, as reported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub mode: String,
    pub procs: u32,
    pub threads: u32,
    /// Worker processes pinned to CPUs (`--pin`). Absent from reports of
    /// versions without it.
    #[serde(default)]
    pub pin: bool,
    pub site: String,
    pub base_url: String,
    pub list: String,
    pub dest: String,
    pub log_dir: String,
    /// The largest chunk handed to a worker (see `config::Chunking`).
    pub chunk_size: usize,
    /// The share of the list this run took; `None` for the whole list.
    #[serde(default)]
    pub shard: Option<ShardInfo>,
    /// `--max-rps` in effect, if any.
    pub max_rps: Option<f64>,
    /// `--per-host` in effect (given, or the default for a remote site), if any.
    pub per_host: Option<u32>,
    /// HTTPS certificates were not verified (`--insecure`). Absent from
    /// reports of versions without it.
    #[serde(default)]
    pub insecure: bool,
}

/// Everything a run reports; `--json` prints it as is, and `merge-reports`
/// reads it back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    #[serde(flatten)]
    pub info: RunInfo,
    pub items: usize,
    pub counts: Counts,
    /// Bytes saved to disk: the sum of the sizes of the files written (skipped
    /// files count 0: they were not downloaded).
    pub bytes: u64,
    /// Bytes downloaded, when the blur stage made them differ from `bytes`
    /// (`--blur`); `None` when they are the same.
    #[serde(default)]
    pub bytes_fetched: Option<u64>,
    pub elapsed_secs: f64,
    /// CPU seconds the workers spent in the blur stage (`--blur`), summed over
    /// items; `None` without `--blur`.
    pub blur_secs: Option<f64>,
    /// The run was interrupted; unfinished items count as `interrupted`.
    pub interrupted: bool,
    /// Peak resident memory of the master process in KiB (the workers' are in
    /// their rows).
    #[serde(default)]
    pub master_peak_rss_kb: Option<u64>,
    pub workers: Vec<WorkerRow>,
    pub results: Vec<ItemReport>,
}

impl RunReport {
    pub fn new(
        info: RunInfo,
        collected: Collected,
        elapsed_secs: f64,
        interrupted: bool,
    ) -> RunReport {
        let mut counts = Counts::default();
        let mut bytes = 0;
        let mut fetched = 0;
        for r in &collected.reports {
            fetched += r.fetched.unwrap_or(r.bytes);
            match r.status {
                Status::Ok => counts.ok += 1,
                Status::NotFound => counts.not_found += 1,
                Status::Error if is_interrupted(r) => counts.interrupted += 1,
                Status::Error => counts.error += 1,
                Status::Skipped => counts.skipped += 1,
            }
            bytes += r.bytes;
        }
        let master_peak_rss_kb = flagmaster_worker::peak_rss_kb();
        let own_pid = std::process::id();
        let workers = collected
            .workers
            .iter()
            .map(|w| WorkerRow {
                worker: w.worker,
                pid: w.pid,
                items: w.tally.items,
                bytes: w.tally.bytes,
                secs: w.summary.as_ref().map(|s| s.secs),
                exit: w.exit.clone(),
                // A worker thread of this process shares its memory.
                peak_rss_kb: w
                    .summary
                    .as_ref()
                    .and_then(|s| s.peak_rss_kb)
                    .or(master_peak_rss_kb.filter(|_| w.pid == own_pid)),
            })
            .collect();
        let blurred: Vec<u64> = collected.reports.iter().filter_map(|r| r.blur_ms).collect();
        let blur_secs = (!blurred.is_empty()).then(|| blurred.iter().sum::<u64>() as f64 / 1000.0);
        RunReport {
            info,
            items: collected.reports.len(),
            counts,
            bytes,
            bytes_fetched: blur_secs.map(|_| fetched),
            elapsed_secs,
            blur_secs,
            interrupted,
            master_peak_rss_kb,
            workers,
            results: collected.reports,
        }
    }

    /// The text report; its last two lines are the classic
    /// `Elapsed time: …` and `… bytes downloaded`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let with_exit = self.workers.iter().any(|w| w.exit.is_some());
        // No worker runs for an empty shard, so there is no table to show.
        if !self.workers.is_empty() {
            let _ = write!(
                out,
                "{:>6} {:>8} {:>6} {:>10} {:>8}",
                "worker", "pid", "items", "bytes", "seconds"
            );
            out.push_str(if with_exit { "  exit\n" } else { "\n" });
        }
        for w in &self.workers {
            let secs = w
                .secs
                .map_or_else(|| "-".to_string(), |s| format!("{s:.3}"));
            let _ = write!(
                out,
                "{:>6} {:>8} {:>6} {:>10} {:>8}",
                format!("{:02}", w.worker),
                w.pid,
                w.items,
                w.bytes,
                secs
            );
            match &w.exit {
                Some(exit) => {
                    let _ = writeln!(out, "  {exit}");
                }
                None => out.push('\n'),
            }
        }
        write_failures(
            &mut out,
            &self.results,
            &format!("see {}", self.info.log_dir),
        );
        if self.interrupted {
            write_interrupted(&mut out, &self.results);
        }
        if let Some(info) = &self.info.shard {
            let _ = writeln!(out, "{}", shard_line(info, self.items));
        }
        if let Some(secs) = self.blur_secs {
            // What the blur stage wrote; the classic last line stays what was
            // downloaded.
            if self.bytes_fetched.is_some() {
                let _ = writeln!(out, "{} bytes written", self.bytes);
            }
            let blurred = self
                .results
                .iter()
                .filter(|r| r.status == Status::Ok && r.blur_ms.is_some())
                .count();
            let _ = writeln!(
                out,
                "{blurred} images blurred, {secs:.3} CPU s of blurring in the workers"
            );
        }
        let fetched = self.bytes_fetched.unwrap_or(self.bytes);
        write_totals(&mut out, &self.counts, self.elapsed_secs, fetched);
        out
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Whether an item ended because the run was interrupted, not by a failure.
pub fn is_interrupted(r: &ItemReport) -> bool {
    r.status == Status::Error && r.reason.as_deref() == Some(INTERRUPTED)
}

/// The items that failed: NOT_FOUND, or ERROR but not interrupted.
pub fn failed<'a>(
    results: impl IntoIterator<Item = &'a ItemReport>,
) -> impl Iterator<Item = &'a ItemReport> {
    results
        .into_iter()
        .filter(|r| matches!(r.status, Status::NotFound | Status::Error) && !is_interrupted(r))
}

/// How many unfinished items an interrupted run's report names.
const MAX_LISTED_INTERRUPTED: usize = 5;

/// `Interrupted: 37 items not finished (Chad, Chile, China, ... and 34 more);
/// run again to complete`.
fn write_interrupted(out: &mut String, results: &[ItemReport]) {
    let unfinished: Vec<&str> = results
        .iter()
        .filter(|r| is_interrupted(r))
        .map(|r| r.name.as_str())
        .collect();
    let mut names = unfinished
        .iter()
        .take(MAX_LISTED_INTERRUPTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if unfinished.len() > MAX_LISTED_INTERRUPTED {
        names += &format!(" and {} more", unfinished.len() - MAX_LISTED_INTERRUPTED);
    }
    let listed = if names.is_empty() {
        String::new()
    } else {
        format!(" ({names})")
    };
    let _ = writeln!(
        out,
        "Interrupted: {} items not finished{listed}; run again to complete",
        unfinished.len()
    );
}

/// The items that failed (NOT_FOUND, ERROR), one line each, at most
/// [`MAX_LISTED_FAILURES`]; `rest` says where the others are.
pub fn write_failures<'a>(
    out: &mut String,
    results: impl IntoIterator<Item = &'a ItemReport>,
    rest: &str,
) {
    let failed: Vec<&ItemReport> = failed(results).collect();
    for r in failed.iter().take(MAX_LISTED_FAILURES) {
        let reason = r.reason.as_deref().unwrap_or("");
        let _ = writeln!(out, "{:<9}  {}  {reason}", r.status.label(), r.name);
    }
    if failed.len() > MAX_LISTED_FAILURES {
        let _ = writeln!(
            out,
            "... and {} more ({rest})",
            failed.len() - MAX_LISTED_FAILURES
        );
    }
}

/// The classic closing lines: the counts, `Elapsed time: …` and
/// `… bytes downloaded`. The count line stays as it was unless a re-run
/// skipped files.
pub fn write_totals(out: &mut String, counts: &Counts, elapsed_secs: f64, bytes: u64) {
    let skipped = match counts.skipped {
        0 => String::new(),
        n => format!(", {n} skipped"),
    };
    let interrupted = match counts.interrupted {
        0 => String::new(),
        n => format!(", {n} interrupted"),
    };
    let _ = writeln!(
        out,
        "{} downloaded{skipped}, {} not found, {} errors{interrupted}",
        counts.ok, counts.not_found, counts.error
    );
    let _ = writeln!(out, "Elapsed time: {elapsed_secs:.8}");
    let _ = writeln!(out, "{bytes} bytes downloaded");
}

/// `Shard 2/4 (from Slurm): 49 of 197 items`.
pub fn shard_line(info: &ShardInfo, items: usize) -> String {
    format!(
        "Shard {} (from {}): {items} of {} items",
        info.shard,
        info.shard.source.label(),
        info.list_items
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::collect::WorkerState;

    fn item(index: u32, status: Status, bytes: u64) -> ItemReport {
        ItemReport {
            ms: 5,
            reason: (status != Status::Ok).then(|| "HTTP 404".to_string()),
            ..ItemReport::for_test(index, status, bytes)
        }
    }

    fn info() -> RunInfo {
        RunInfo {
            mode: "proc".into(),
            procs: 2,
            threads: 1,
            pin: false,
            site: "LOCAL".into(),
            base_url: "http://127.0.0.1:1/x".into(),
            list: "l".into(),
            dest: "flags".into(),
            log_dir: "logs".into(),
            chunk_size: 1,
            shard: None,
            max_rps: None,
            per_host: Some(8),
            insecure: false,
        }
    }

    #[test]
    fn counts_bytes_and_closing_lines() {
        let collected = Collected {
            reports: vec![
                item(0, Status::Ok, 100),
                item(1, Status::NotFound, 0),
                item(2, Status::Ok, 23),
            ],
            workers: vec![WorkerState::for_test(
                1,
                42,
                3,
                123,
                Some(0.5),
                Some("exit status: 0"),
            )],
        };
        let report = RunReport::new(info(), collected, 1.5, false);
        assert_eq!(
            report.counts,
            Counts {
                ok: 2,
                not_found: 1,
                error: 0,
                skipped: 0,
                interrupted: 0,
            }
        );
        assert_eq!(report.bytes, 123);
        let text = report.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "worker      pid  items      bytes  seconds  exit");
        assert_eq!(
            lines[1],
            "    01       42      3        123    0.500  exit status: 0"
        );
        assert_eq!(lines[2], "NOT_FOUND  N1  HTTP 404");
        assert_eq!(
            &lines[lines.len() - 3..],
            [
                "2 downloaded, 1 not found, 0 errors",
                "Elapsed time: 1.50000000",
                "123 bytes downloaded"
            ]
        );
    }

    #[test]
    fn json_has_the_documented_fields() {
        let collected = Collected {
            reports: vec![item(0, Status::Ok, 7)],
            workers: vec![WorkerState::for_test(1, 42, 1, 7, None, None)],
        };
        let json: serde_json::Value =
            serde_json::from_str(&RunReport::new(info(), collected, 0.25, false).to_json())
                .unwrap();
        assert_eq!(json["mode"], "proc");
        assert_eq!(json["max_rps"], serde_json::Value::Null);
        assert_eq!(json["per_host"], 8);
        assert_eq!(json["counts"]["ok"], 1);
        assert_eq!(json["bytes"], 7);
        assert_eq!(json["elapsed_secs"], 0.25);
        assert_eq!(json["workers"][0]["pid"], 42);
        assert_eq!(json["workers"][0]["secs"], serde_json::Value::Null);
        assert_eq!(json["results"][0]["status"], "OK");
        assert_eq!(json["results"][0]["name"], "N0");
        assert_eq!(json["blur_secs"], serde_json::Value::Null);
        assert_eq!(json["results"][0]["blur_ms"], serde_json::Value::Null);
    }

    #[test]
    fn blur_time_is_summed_and_shown() {
        let mut a = item(0, Status::Ok, 7);
        a.blur_ms = Some(250);
        let mut b = item(1, Status::Error, 0);
        b.blur_ms = Some(5);
        let collected = Collected {
            reports: vec![a, b],
            workers: vec![WorkerState::for_test(1, 42, 2, 7, None, None)],
        };
        let report = RunReport::new(info(), collected, 1.0, false);
        assert_eq!(report.blur_secs, Some(0.255));
        let text = report.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[lines.len() - 4],
            "1 images blurred, 0.255 CPU s of blurring in the workers"
        );
    }

    #[test]
    fn a_shard_shows_in_text_and_json() {
        use crate::input::shard::{Shard, ShardSource};
        let collected = Collected {
            reports: vec![item(0, Status::Ok, 7)],
            workers: vec![WorkerState::for_test(1, 42, 1, 7, Some(0.1), None)],
        };
        let mut info = info();
        info.shard = Some(ShardInfo {
            shard: Shard {
                index: 2,
                count: 4,
                source: ShardSource::Slurm,
            },
            list_items: 197,
        });
        let report = RunReport::new(info, collected, 0.25, false);
        assert!(
            report
                .to_text()
                .contains("\nShard 2/4 (from Slurm): 1 of 197 items\n"),
            "{}",
            report.to_text()
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(
            json["shard"],
            serde_json::json!({"index": 2, "count": 4, "source": "slurm", "list_items": 197})
        );
    }

    #[test]
    fn counts_add_up_field_by_field() {
        let mut total = Counts {
            ok: 1,
            not_found: 2,
            error: 3,
            skipped: 4,
            interrupted: 0,
        };
        total += Counts {
            ok: 10,
            not_found: 20,
            error: 30,
            skipped: 40,
            interrupted: 0,
        };
        assert_eq!(
            total,
            Counts {
                ok: 11,
                not_found: 22,
                error: 33,
                skipped: 44,
                interrupted: 0,
            }
        );
    }
}
