//! Per-worker log files: the path rule and the line format.
//!
//! Lines are logfmt (`key=value`, values quoted only when they need it), one per
//! item attempt, so they can be read by eye, grepped, or parsed with any logfmt
//! reader. Each line is written with a single `write` on a file opened for
//! appending: threads of one worker process share the file, and the worker's
//! stderr (panic messages) lands in the same file, without lines tearing.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
        let line = format_line(SystemTime::now(), fields);
        if let Err(e) = (&self.file).write_all(line.as_bytes()) {
            eprintln!("flagmaster: cannot write to {}: {e}", self.path.display());
        }
    }
}

/// Formats one logfmt line: `ts=<RFC 3339, ms> k=v ...\n`.
///
/// Each value is written straight into the line and quoted afterwards only if
/// it needs it: this runs once per item, and a `String` per field was most of
/// its cost.
pub fn format_line(ts: SystemTime, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut line = String::with_capacity(160);
    let _ = write!(line, "ts={}", humantime::format_rfc3339_millis(ts));
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push('=');
        let start = line.len();
        let _ = write!(line, "{value}");
        if !is_plain(&line[start..]) {
            let raw = line.split_off(start);
            push_quoted(&mut line, &raw);
        }
    }
    line.push('\n');
    line
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
}
