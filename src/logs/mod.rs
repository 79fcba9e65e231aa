//! `flagmaster logs [DIR ...]`: reads the logs of one or more runs (a run of
//! any mode, or the log directories of several shards) and answers the usual
//! questions: what each worker did and which was slowest, the slowest
//! attempts, what failed and why, what was retried, which workers died and
//! what they handed on; and draws the runs as a timeline.
//!
//! `read.rs` turns lines into typed records (tolerating what a killed run
//! leaves), `model.rs` folds them into a [`Summary`], `table.rs` prints it,
//! serde prints it as JSON, `timeline.rs` draws it. docs/logs.md is the format.

mod model;
mod read;
mod table;
mod timeline;

use std::path::{Path, PathBuf};

use crate::cli::LogsArgs;
use crate::error::Error;
use crate::report::exit;
use crate::report::svg::SvgFile;

pub use model::{summarize, Filter, Run, Summary};
pub use read::{parse_fields, read_dir, read_line, DirLogs, Fields, Line, Record, Skipped};
pub use table::to_text;

/// The log directory when none is named: `--log-dir`'s default.
pub const DEFAULT_DIR: &str = "logs";

/// At most this many files are named in the warning line.
const MAX_WARNED_FILES: usize = 5;

pub fn run(args: LogsArgs) -> Result<u8, Error> {
    let dirs = if args.dirs.is_empty() {
        vec![PathBuf::from(DEFAULT_DIR)]
    } else {
        args.dirs
    };
    // A bad picture path must not wait for the reading.
    let timeline = args.timeline.as_deref().map(Timeline::create).transpose()?;
    let (runs, skipped) = read_runs(&dirs)?;
    if let Some(line) = warning(&skipped) {
        eprintln!("{line}");
    }
    let filter = Filter {
        worker: args.worker,
        status: args.status.map(crate::cli::StatusArg::status),
    };
    let summary = summarize(&runs, filter, args.top);
    if args.json {
        // Plain structs of strings and numbers: serializing cannot fail.
        let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
        println!("{json}");
    } else {
        print!("{}", to_text(&summary));
    }
    if let Some(timeline) = timeline {
        let path = timeline.write(&runs, filter)?;
        eprintln!("flagmaster: timeline written to {}", path.display());
    }
    Ok(exit::OK)
}

/// Reads every directory, in order: the runs and what was skipped.
pub fn read_runs(dirs: &[PathBuf]) -> Result<(Vec<Run>, Vec<Skipped>), Error> {
    let mut runs = Vec::with_capacity(dirs.len());
    let mut skipped = Vec::new();
    for dir in dirs {
        let mut logs = read_dir(dir)?;
        skipped.append(&mut logs.skipped);
        runs.push(Run::new(logs));
    }
    Ok((runs, skipped))
}

/// The one warning line for everything skipped, if anything was.
pub fn warning(skipped: &[Skipped]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = skipped
        .iter()
        .take(MAX_WARNED_FILES)
        .map(ToString::to_string)
        .collect();
    if skipped.len() > MAX_WARNED_FILES {
        parts.push(format!(
            "and {} more files",
            skipped.len() - MAX_WARNED_FILES
        ));
    }
    Some(format!("flagmaster: warning: {}", parts.join("; ")))
}

/// The `--timeline` file, created before anything is read so that a bad
/// path is an error at once; the picture is written into it at the end.
pub struct Timeline(SvgFile);

impl Timeline {
    pub fn create(path: &Path) -> Result<Timeline, Error> {
        let hint = " (for a PNG, convert it, e.g. with rsvg-convert)";
        SvgFile::create("--timeline", "timeline", hint, path).map(Timeline)
    }

    /// Draws `runs` into the file, and returns its path.
    pub fn write(self, runs: &[Run], filter: Filter) -> Result<PathBuf, Error> {
        let svg = timeline::svg(runs, filter).map_err(Error::Setup)?;
        self.0.write(&svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagmaster_worker::protocol::Status;
    use std::fmt::Display;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// 2026-12-07T05:00:00Z plus `ms`.
    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_446_800_000 + ms)
    }

    fn time(ms: u64) -> String {
        humantime::format_rfc3339_millis(at(ms)).to_string()
    }

    /// Lines as the writer formats them.
    #[derive(Default)]
    struct Log(String);

    impl Log {
        fn line(&mut self, ms: u64, fields: &[(&str, &dyn Display)]) -> &mut Self {
            self.0 += &flagmaster_worker::log::format_line(at(ms), fields);
            self
        }

        /// An attempt from `start` for `ms`, with its `item_done` if `last`.
        #[allow(clippy::too_many_arguments)]
        fn attempt(
            &mut self,
            (worker, thread): (u32, u32),
            item: &str,
            n: u32,
            last: bool,
            start: u64,
            ms: u64,
            status: Status,
            reason: Option<&str>,
        ) -> &mut Self {
            let pid = 1000 + worker;
            let bytes = if status == Status::Ok { 1000 } else { 0 };
            let http = match status {
                Status::Ok => "200",
                Status::NotFound => "404",
                _ => "503",
            };
            let begun = time(start);
            let label = status.label();
            let mut f: Vec<(&str, &dyn Display)> = vec![
                ("event", &"attempt"),
                ("worker", &worker),
                ("pid", &pid),
                ("thread", &thread),
                ("item", &item),
                ("attempt", &n),
                ("last", &last),
                ("start", &begun),
                ("ms", &ms),
                ("status", &label),
                ("http", &http),
                ("bytes", &bytes),
                ("url", &"http://127.0.0.1:1/x.jpg"),
            ];
            if let Some(r) = &reason {
                f.push(("reason", r));
            }
            self.line(start + ms, &f);
            if last {
                let mut f: Vec<(&str, &dyn Display)> = vec![
                    ("event", &"item_done"),
                    ("worker", &worker),
                    ("pid", &pid),
                    ("thread", &thread),
                    ("item", &item),
                    ("status", &label),
                    ("attempts", &n),
                    ("ms", &ms),
                    ("bytes", &bytes),
                    ("http", &http),
                ];
                if let Some(r) = &reason {
                    f.push(("reason", r));
                }
                self.line(start + ms, &f);
            }
            self
        }
    }

    /// A proc run of 3 workers x 1 thread: worker 1 retries Chad and fails
    /// Atlantis; worker 2 is killed holding Chile and Cuba, which worker 3
    /// then does; worker 3 is the slowest.
    fn proc_run(dir: &Path) {
        use Status::*;
        let mut master = Log::default();
        master.line(
            0,
            &[
                ("event", &"start"),
                ("pid", &999),
                ("mode", &"proc"),
                ("procs", &3),
                ("threads", &1),
                ("items", &7),
                ("site", &"ERROR"),
                ("list", &"built-in flags.txt"),
            ],
        );
        for w in 1..=3u32 {
            master.line(
                1,
                &[("event", &"spawn"), ("worker", &w), ("pid", &(1000 + w))],
            );
        }
        let mut w1 = Log::default();
        w1.attempt((1, 0), "Chad", 1, false, 10, 100, Error, Some("HTTP 503"))
            .attempt((1, 0), "Chad", 2, true, 300, 120, Ok, None)
            .attempt(
                (1, 0),
                "Atlantis",
                1,
                true,
                430,
                50,
                NotFound,
                Some("HTTP 404"),
            )
            .attempt((1, 0), "Peru", 1, true, 490, 100, Ok, None)
            .line(
                600,
                &[
                    ("event", &"worker_summary"),
                    ("worker", &1),
                    ("pid", &1001),
                    ("threads", &1),
                    ("items", &3),
                    ("ok", &2),
                    ("not_found", &1),
                    ("error", &0),
                    ("skipped", &0),
                    ("retries", &1),
                    ("bytes", &2000),
                    ("busy_secs", &0.57),
                    ("idle_secs", &0.01),
                    ("wall_secs", &0.6),
                ],
            );
        let mut w2 = Log::default();
        w2.attempt((2, 0), "Fiji", 1, true, 10, 200, Ok, None);
        w2.0 += "thread '<unnamed>' panicked at worker/src/lib.rs:1:1:\ninjected\n";
        w2.attempt((2, 0), "Chile", 1, false, 220, 10, Error, None);
        // Cut mid-line by the kill.
        w2.0.truncate(w2.0.len() - 20);
        let mut w3 = Log::default();
        w3.attempt((3, 0), "Oman", 1, true, 10, 400, Ok, None)
            .attempt((3, 0), "Chile", 1, true, 420, 300, Ok, None)
            .attempt(
                (3, 0),
                "Cuba",
                1,
                true,
                730,
                270,
                Error,
                Some("timeout (global)"),
            );
        master
            .line(
                240,
                &[
                    ("event", &"worker_end"),
                    ("worker", &2),
                    ("pid", &1002),
                    ("exit", &"signal: 9 (SIGKILL)"),
                    ("finished", &false),
                    ("items", &1),
                ],
            )
            .line(
                240,
                &[
                    ("event", &"worker_died"),
                    ("worker", &2),
                    ("pid", &1002),
                    ("requeued", &2),
                ],
            )
            .line(
                240,
                &[("event", &"requeued"), ("worker", &2), ("item", &"Chile")],
            )
            .line(
                240,
                &[("event", &"requeued"), ("worker", &2), ("item", &"Cuba")],
            );
        for (w, items) in [(1u32, 3u32), (3, 3)] {
            master.line(
                1000,
                &[
                    ("event", &"worker_end"),
                    ("worker", &w),
                    ("pid", &(1000 + w)),
                    ("exit", &"exit status: 0"),
                    ("finished", &true),
                    ("items", &items),
                ],
            );
        }
        master.line(
            1010,
            &[
                ("event", &"done"),
                ("ok", &5),
                ("not_found", &1),
                ("error", &1),
                ("skipped", &0),
                ("unfinished", &0),
                ("bytes", &5000),
                ("elapsed_secs", &1.01),
                ("interrupted", &false),
                ("exit", &1),
            ],
        );
        std::fs::create_dir_all(dir).unwrap();
        for (name, log) in [
            ("master.log", &master),
            ("worker-01.log", &w1),
            ("worker-02.log", &w2),
            ("worker-03.log", &w3),
        ] {
            std::fs::write(dir.join(name), &log.0).unwrap();
        }
    }

    fn read(dirs: &[PathBuf]) -> (Vec<Run>, Vec<Skipped>) {
        read_runs(dirs).unwrap()
    }

    #[test]
    fn a_proc_run_with_a_killed_worker() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        proc_run(&dir);
        let (runs, skipped) = read(std::slice::from_ref(&dir));
        let warning = warning(&skipped).unwrap();
        assert_eq!(
            warning,
            format!(
                "flagmaster: warning: {}: 3 lines not read (truncated or not logfmt)",
                dir.join("worker-02.log").display()
            )
        );
        let s = summarize(&runs, Filter::default(), 3);
        let run = &s.runs[0];
        assert_eq!(
            (run.counts.ok, run.counts.not_found, run.counts.error),
            (5, 1, 1)
        );
        assert_eq!(run.bytes, 5000);
        let items: Vec<(u32, u32, u32)> = run
            .workers
            .iter()
            .map(|w| (w.worker, w.items, w.retries))
            .collect();
        assert_eq!(items, [(1, 3, 1), (2, 1, 0), (3, 3, 0)]);
        assert_eq!(run.workers[1].exit.as_deref(), Some("signal: 9 (SIGKILL)"));
        assert!(!run.workers[1].finished);
        assert_eq!(run.workers[0].busy_secs, Some(0.57));
        let slowest = run.slowest.as_ref().unwrap();
        // Worker 2 died: it did not run out of work, so it is not the measure.
        assert_eq!((slowest.worker, slowest.first_done_worker), (3, 1));
        assert_eq!(slowest.last_end_secs, 1.0);
        let slow: Vec<(&str, u64)> = s
            .slowest_attempts
            .iter()
            .map(|a| (a.item.as_str(), a.ms))
            .collect();
        assert_eq!(slow, [("Oman", 400), ("Chile", 300), ("Cuba", 270)]);
        let failed: Vec<(&str, Status)> = s
            .failed
            .iter()
            .map(|f| (f.item.as_str(), f.status))
            .collect();
        assert_eq!(
            failed,
            [("Atlantis", Status::NotFound), ("Cuba", Status::Error)]
        );
        assert_eq!(s.retried.len(), 1);
        assert_eq!(s.retried[0].reasons, ["HTTP 503"]);
        assert_eq!(s.lost_workers.len(), 1);
        let lost = &s.lost_workers[0];
        assert_eq!((lost.worker, lost.items_done, lost.requeued), (2, 1, 2));
        let handed: Vec<(&str, Option<u32>)> = lost
            .handed_on
            .iter()
            .map(|h| (h.item.as_str(), h.worker))
            .collect();
        assert_eq!(handed, [("Chile", Some(3)), ("Cuba", Some(3))]);

        let text = to_text(&s);
        println!("{text}");
        for expected in [
            "proc 3x1, 7 items in 1.010 s, exit 1",
            "5 OK, 1 not found, 1 errors; 5000 bytes",
            "Slowest: worker 03, done at 1.000 s, 0.410 s after worker 01, the first to run out of work\n",
            "NOT_FOUND  Atlantis         1      01  HTTP 404\n",
            "OK      Chad         2  0.120      01  HTTP 503\n",
            "worker 02 pid 1002 ended without finishing (signal: 9 (SIGKILL)) after 1 item; \
             handed on 2 items: Chile (worker 03: OK), Cuba (worker 03: ERROR)",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
    }

    #[test]
    fn filters_keep_one_worker_or_one_outcome() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        proc_run(&dir);
        let (runs, _) = read(&[dir]);
        let only_3 = Filter {
            worker: Some(3),
            status: None,
        };
        let s = summarize(&runs, only_3, 10);
        assert_eq!(s.runs[0].workers.len(), 1);
        assert!(s.slowest_attempts.iter().all(|a| a.worker == 3));
        assert!(s.lost_workers.is_empty());
        let errors = Filter {
            worker: None,
            status: Some(Status::Error),
        };
        let s = summarize(&runs, errors, 10);
        assert!(s.slowest_attempts.iter().all(|a| a.status == Status::Error));
        // Chad's first attempt and Cuba's; Chile's on worker 2 was cut short.
        assert_eq!(s.slowest_attempts.len(), 2);
        assert_eq!(s.failed.len(), 1);
        // The run's own figures stay whole.
        assert_eq!(s.runs[0].counts.ok, 5);
    }

    #[test]
    fn a_missing_worker_log_and_a_missing_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        proc_run(&dir);
        std::fs::remove_file(dir.join("worker-03.log")).unwrap();
        std::fs::write(dir.join("worker-02.log"), "").unwrap();
        let (runs, skipped) = read(std::slice::from_ref(&dir));
        assert_eq!(
            warning(&skipped).unwrap(),
            format!(
                "flagmaster: warning: {}: missing",
                dir.join("worker-03.log").display()
            )
        );
        let s = summarize(&runs, Filter::default(), 10);
        // What master.log says of the failed items no worker log has.
        assert_eq!(s.runs[0].workers.len(), 3);
        assert!(s.lost_workers.iter().any(|l| l.worker == 2));
        let err = read_runs(&[tmp.path().join("nope")]).unwrap_err();
        assert!(err.to_string().starts_with("cannot read log dir "), "{err}");
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err = read_runs(&[empty]).unwrap_err();
        assert!(err.to_string().contains("no flagmaster logs"), "{err}");
    }

    #[test]
    fn the_timeline_has_a_lane_per_thread_and_a_bar_per_attempt() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        proc_run(&a);
        proc_run(&b);
        let (runs, _) = read(&[a, b]);
        let svg = timeline::svg(&runs, Filter::default()).unwrap();
        std::fs::write("/tmp/timeline-test.svg", &svg).unwrap();
        assert_eq!(svg.matches("class=\"lane\"").count(), 6);
        let attempts: usize = runs.iter().map(|r| r.attempts.len()).sum();
        assert_eq!(attempts, 2 * 8);
        assert_eq!(svg.matches("class=\"attempt ").count(), attempts);
        assert_eq!(svg.matches("class=\"attempt error\"").count(), 2 * 2);
        assert!(svg.contains("<title>Chad attempt 2: OK in 120 ms</title>"));
        assert!(
            svg.contains("7 items: proc 3x1 1.01 s, proc 3x1 1.01 s"),
            "{svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
        // The text adds the runs up.
        let text = to_text(&summarize(&runs, Filter::default(), 10));
        assert!(
            text.contains("\nAll 2 runs: 10 OK, 2 not found, 2 errors; 10000 bytes\n"),
            "{text}"
        );
        assert!(text.contains("/a/03.0  "), "workers named by run: {text}");
    }
}
