//! Per-worker log files: the path rule and the line format.
//!
//! Lines are logfmt (`key=value`, values quoted only when they need it), so
//! they can be read by eye, grepped, or parsed with any logfmt reader; what
//! they say is docs/logs.md. Each write is a single `write` on a file opened for
//! appending: threads of one worker process share the file, and the worker's
//! stderr (panic messages) lands in the same file, without lines tearing.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::protocol::WorkerSummary;

/// File name of worker `n`'s log (1-based): `worker-01.log`.
pub fn worker_log_name(worker: u32) -> String {
    format!("worker-{worker:02}.log")
}

/// The master's own log.
pub const MASTER_LOG: &str = "master.log";

/// An append-only log file shared by the threads of one worker.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    path: PathBuf,
}

impl LogFile {
    /// Opens `path` for appending, creating it if needed.
    pub fn append(path: &Path) -> io::Result<LogFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line, stamped with the current time. A failed log write must
    /// not fail a download, so it is reported on stderr and otherwise ignored.
    pub fn line(&self, fields: &[(&str, &dyn std::fmt::Display)]) {
        self.write(&format_line(SystemTime::now(), fields));
    }

    /// Writes what [`Line`] built (one line or more) with a single `write`.
    pub fn write(&self, text: &str) {
        if let Err(e) = (&self.file).write_all(text.as_bytes()) {
            eprintln!("flagmaster: cannot write to {}: {e}", self.path.display());
        }
    }
}

/// Writes a worker's last line, `event=worker_summary`: what its `threads`
/// loops did, summed.
pub fn worker_summary(log: &LogFile, worker: u32, pid: u32, threads: u32, s: &WorkerSummary) {
    log.line(&[
        ("event", &"worker_summary"),
        ("worker", &worker),
        ("pid", &pid),
        ("threads", &threads),
        ("items", &s.items),
        ("ok", &s.ok),
        ("not_found", &s.not_found),
        ("error", &s.error),
        ("skipped", &s.skipped),
        ("retries", &s.retries),
        ("bytes", &s.bytes),
        ("busy_secs", &Secs(s.busy_secs)),
        ("idle_secs", &Secs(s.idle_secs)),
        ("wall_secs", &Secs(s.secs)),
    ]);
}

/// Seconds as logged: to the millisecond (`1.250`).
pub struct Secs(pub f64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

/// Formats one logfmt line: `ts=<RFC 3339, ms> k=v ...\n`.
pub fn format_line(ts: SystemTime, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut line = Line::new(ts, 160);
    for (key, value) in fields {
        line.field(key, value);
    }
    line.finish()
}

/// Logfmt lines built in one buffer, to be written with one `write`: an
/// item's last attempt and its `item_done` go out together.
///
/// Each value is written straight into the buffer and quoted afterwards only
/// if it needs it: this runs once per attempt, and a `String` per field was
/// most of its cost.
pub struct Line {
    buf: String,
}

impl Line {
    /// Starts a line stamped `ts`, in a buffer of `capacity` bytes.
    pub fn new(ts: SystemTime, capacity: usize) -> Line {
        let mut line = Line {
            buf: String::with_capacity(capacity),
        };
        line.stamp(ts);
        line
    }

    fn stamp(&mut self, ts: SystemTime) {
        let _ = write!(self.buf, "ts={}", humantime::format_rfc3339_millis(ts));
    }

    /// Adds ` key=value`.
    pub fn field(&mut self, key: &str, value: &dyn std::fmt::Display) -> &mut Line {
        self.buf.push(' ');
        self.buf.push_str(key);
        self.buf.push('=');
        let start = self.buf.len();
        let _ = write!(self.buf, "{value}");
        if !is_plain(&self.buf[start..]) {
            let raw = self.buf.split_off(start);
            push_quoted(&mut self.buf, &raw);
        }
        self
    }

    /// Ends this line and starts another, stamped `ts`, in the same buffer.
    pub fn next_line(&mut self, ts: SystemTime) -> &mut Line {
        self.buf.push('\n');
        self.stamp(ts);
        self
    }

    /// The finished text, ending with a newline.
    pub fn finish(mut self) -> String {
        self.buf.push('\n');
        self.buf
    }
}

/// A value that may be missing, written `-` when it is: `http=-`.
pub struct OrDash<T>(pub Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\')
}

fn push_quoted(line: &mut String, value: &str) {
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn names_are_zero_padded() {
        assert_eq!(worker_log_name(3), "worker-03.log");
        assert_eq!(worker_log_name(12), "worker-12.log");
        assert_eq!(worker_log_name(123), "worker-123.log");
    }

    #[test]
    fn line_is_logfmt_with_quoting() {
        let ts = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let line = format_line(
            ts,
            &[
                ("worker", &3),
                ("item", &"Côte_d'Ivoire"),
                ("status", &"ERROR"),
                ("reason", &"HTTP 503 \"busy\""),
                ("empty", &""),
                ("ctl", &"a\nb\u{1}"),
            ],
        );
        assert_eq!(
            line,
            "ts=2023-11-14T22:13:20.123Z worker=3 item=Côte_d'Ivoire status=ERROR \
             reason=\"HTTP 503 \\\"busy\\\"\" empty=\"\" ctl=\"a\\nb\\u{1}\"\n"
        );
    }

    #[test]
    fn lines_share_one_buffer_and_missing_values_are_dashes() {
        let ts = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let mut line = Line::new(ts, 16);
        line.field("event", &"attempt")
            .field("http", &OrDash(None::<u16>))
            .next_line(ts + Duration::from_millis(1))
            .field("event", &"item_done")
            .field("http", &OrDash(Some(404)))
            .field("reason", &"HTTP 404");
        assert_eq!(
            line.finish(),
            "ts=2023-11-14T22:13:20.123Z event=attempt http=-\n\
             ts=2023-11-14T22:13:20.124Z event=item_done http=404 reason=\"HTTP 404\"\n"
        );
    }

    #[test]
    fn a_worker_summary_is_one_line_of_figures() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::append(&dir.path().join("w.log")).unwrap();
        let summary = WorkerSummary {
            items: 5,
            ok: 3,
            not_found: 1,
            error: 1,
            retries: 2,
            bytes: 1234,
            busy_secs: 1.5,
            idle_secs: 0.25,
            secs: 0.8754,
            ..WorkerSummary::default()
        };
        worker_summary(&log, 2, 77, 2, &summary);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let (_, rest) = text.split_once(' ').unwrap();
        assert_eq!(
            rest,
            "event=worker_summary worker=2 pid=77 threads=2 items=5 ok=3 not_found=1 \
             error=1 skipped=0 retries=2 bytes=1234 busy_secs=1.500 idle_secs=0.250 \
             wall_secs=0.875\n"
        );
    }
}
