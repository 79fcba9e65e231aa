//! The tolerant reader: a log directory's files, line by line, into typed
//! [`Record`]s, as docs/logs.md describes them.
//!
//! Tolerant means it never gives up on a file: a line that is not logfmt (a
//! worker's panic message), a last line cut short by a kill, or a known event
//! without the keys it needs is counted and skipped; unknown keys and unknown
//! events are ignored, as the format asks of readers. What was skipped is
//! returned beside the records, for one warning line.

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use flagmaster_worker::log::MASTER_LOG;
use flagmaster_worker::protocol::Status;

use crate::error::Error;

/// The `key=value` pairs of one logfmt line, values unescaped, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a>(pub Vec<(&'a str, Cow<'a, str>)>);

impl<'a> Fields<'a> {
    /// The value of `key` (the first, if a line repeats it).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| &**v)
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.get(key)?.parse().ok()
    }

    /// A number that may be written `-` for "none".
    fn optional<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.get(key).filter(|v| *v != "-")?.parse().ok()
    }

    fn text(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    fn time(&self, key: &str) -> Option<i64> {
        parse_time(self.get(key)?)
    }
}

/// Splits one line (without its newline) into its fields; `None` if it is not
/// logfmt as flagmaster writes it: `ts=` first, then `key=value` pairs
/// separated by single spaces, a quoted value closed.
pub fn parse_fields(line: &str) -> Option<Fields<'_>> {
    if !line.starts_with("ts=") {
        return None;
    }
    let mut fields = Vec::with_capacity(16);
    let mut rest = line;
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        if key.is_empty() || key.contains([' ', '"']) {
            return None;
        }
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let (v, after) = unquote(quoted)?;
            value = v;
            rest = after;
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = Cow::Borrowed(&rest[..end]);
            rest = &rest[end..];
        }
        fields.push((key, value));
        if !rest.is_empty() {
            rest = rest.strip_prefix(' ')?;
        }
    }
    Some(Fields(fields))
}

/// Reads a quoted value up to its closing quote (the opening one is gone):
/// the value, unescaped, and what follows the quote. The escapes are those of
/// `flagmaster_worker::log`: `\"`, `\\`, `\n` and `\u{hex}`.
fn unquote(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let end = s.find(['"', '\\'])?;
    if s.as_bytes()[end] == b'"' {
        return Some((Cow::Borrowed(&s[..end]), &s[end + 1..]));
    }
    let mut value = String::with_capacity(s.len());
    value.push_str(&s[..end]);
    let mut chars = s[end..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(value), &s[end + i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                'u' => {
                    if chars.next()?.1 != '{' {
                        return None;
                    }
                    let mut code = 0u32;
                    loop {
                        let d = chars.next()?.1;
                        if d == '}' {
                            break;
                        }
                        code = code.checked_mul(16)?.checked_add(d.to_digit(16)?)?;
                    }
                    value.push(char::from_u32(code)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// Milliseconds since the Unix epoch of an RFC 3339 time (`2026-12-07T04:57:26.123Z`).
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_millis()).ok()?,
    };
    Some(ms)
}

pub fn parse_status(s: &str) -> Option<Status> {
    match s {
        "OK" => Some(Status::Ok),
        "NOT_FOUND" => Some(Status::NotFound),
        "ERROR" => Some(Status::Error),
        "SKIPPED" => Some(Status::Skipped),
        _ => None,
    }
}

/// `event=attempt`: one request (or an attempt that ended without one).
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub worker: u32,
    pub pid: u32,
    pub thread: u32,
    pub item: String,
    pub attempt: u32,
    /// No other attempt of the item follows.
    pub last: bool,
    /// When it began, in ms since the epoch.
    pub start: i64,
    pub ms: u64,
    pub status: Status,
    pub http: Option<u16>,
    pub bytes: u64,
    pub blur_ms: Option<u64>,
    pub url: String,
    pub wait_ms: Option<u64>,
    pub reason: Option<String>,
}

impl Attempt {
    /// When it ended, in ms since the epoch.
    pub fn end(&self) -> i64 {
        self.start.saturating_add(self.ms as i64)
    }
}

/// `event=item_done`: an item's outcome, after its last attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemDone {
    /// When the line was written (just after the last attempt ended).
    pub ts: i64,
    pub worker: u32,
    pub pid: u32,
    pub thread: u32,
    pub item: String,
    pub status: Status,
    pub attempts: u32,
    pub ms: u64,
    pub bytes: u64,
    pub http: Option<u16>,
    pub reason: Option<String>,
}

/// `event=worker_summary`: the last line of a worker that finished its work.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerSummary {
    pub worker: u32,
    pub pid: u32,
    pub threads: u32,
    pub items: u32,
    pub ok: u32,
    pub not_found: u32,
    pub error: u32,
    pub skipped: u32,
    pub retries: u32,
    pub bytes: u64,
    pub busy_secs: f64,
    pub idle_secs: f64,
    pub wall_secs: f64,
}

/// `master.log`'s `event=start`: the settings this reader uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Start {
    pub ts: i64,
    pub pid: u32,
    pub mode: String,
    pub procs: u32,
    pub threads: u32,
    pub items: Option<usize>,
    pub site: Option<String>,
    /// `2/4`, when the run took one shard of the list.
    pub shard: Option<String>,
}

/// `event=worker_end`: how a worker ended, with the master's figures for it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerEnd {
    pub worker: u32,
    pub pid: u32,
    /// `None` where the master recorded none (`-`: a worker thread).
    pub exit: Option<String>,
    pub finished: bool,
    pub items: Option<u32>,
}

/// `event=failed`: one failed item, as the master recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct Failed {
    pub item: String,
    pub status: Status,
    pub reason: Option<String>,
    pub attempts: Option<u32>,
    pub worker: Option<u32>,
}

/// `event=done`: the run's final figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    pub ts: i64,
    pub ok: usize,
    pub not_found: usize,
    pub error: usize,
    pub skipped: usize,
    pub unfinished: usize,
    pub bytes: u64,
    pub elapsed_secs: f64,
    pub interrupted: bool,
    pub exit: Option<u8>,
}

/// One line this reader understands.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Attempt(Attempt),
    ItemDone(ItemDone),
    WorkerSummary(WorkerSummary),
    Start(Start),
    /// `spawn` and `hello`: a worker process existed.
    Spawned {
        worker: u32,
        pid: u32,
    },
    HandshakeFailed {
        worker: u32,
        pid: u32,
        why: Option<String>,
    },
    WorkerEnd(WorkerEnd),
    WorkerDied {
        ts: i64,
        worker: u32,
        pid: u32,
        requeued: u32,
    },
    Requeued {
        worker: u32,
        item: String,
    },
    WorkerStuck {
        worker: u32,
        pid: u32,
    },
    Failed(Failed),
    FailedMore {
        count: usize,
    },
    Interrupted,
    Done(Done),
}

/// What one line turned out to be.
#[derive(Debug, PartialEq)]
pub enum Line {
    Record(Record),
    /// Logfmt, but nothing this reader uses (an unknown event, a line
    /// without `event=`): skipped quietly, as the format asks.
    Unknown,
    /// Not read: not logfmt, or a known event without the keys it needs.
    Bad,
}

/// Reads one line (without its newline).
pub fn read_line(line: &str) -> Line {
    let Some(f) = parse_fields(line) else {
        return Line::Bad;
    };
    let Some(event) = f.get("event") else {
        return Line::Unknown;
    };
    let record = match event {
        "attempt" => attempt(&f).map(Record::Attempt),
        "item_done" => item_done(&f).map(Record::ItemDone),
        "worker_summary" => summary(&f).map(Record::WorkerSummary),
        "start" => start(&f).map(Record::Start),
        "spawn" | "hello" => (|| {
            Some(Record::Spawned {
                worker: f.parse("worker")?,
                pid: f.parse("pid").unwrap_or(0),
            })
        })(),
        "handshake_failed" => (|| {
            Some(Record::HandshakeFailed {
                worker: f.parse("worker")?,
                pid: f.parse("pid").unwrap_or(0),
                why: f.text("why"),
            })
        })(),
        "worker_end" => (|| {
            Some(Record::WorkerEnd(WorkerEnd {
                worker: f.parse("worker")?,
                pid: f.parse("pid").unwrap_or(0),
                exit: f.get("exit").filter(|e| *e != "-").map(str::to_string),
                finished: f.parse("finished").unwrap_or(false),
                items: f.parse("items"),
            }))
        })(),
        "worker_died" => (|| {
            Some(Record::WorkerDied {
                ts: f.time("ts")?,
                worker: f.parse("worker")?,
                pid: f.parse("pid").unwrap_or(0),
                requeued: f.parse("requeued").unwrap_or(0),
            })
        })(),
        "requeued" => (|| {
            Some(Record::Requeued {
                worker: f.parse("worker")?,
                item: f.text("item")?,
            })
        })(),
        "worker_stuck" => (|| {
            Some(Record::WorkerStuck {
                worker: f.parse("worker")?,
                pid: f.parse("pid").unwrap_or(0),
            })
        })(),
        "failed" => (|| {
            Some(Record::Failed(Failed {
                item: f.text("item")?,
                status: parse_status(f.get("status")?)?,
                reason: f.get("reason").filter(|r| *r != "-").map(str::to_string),
                attempts: f.parse("attempts"),
                worker: f.optional("worker"),
            }))
        })(),
        "failed_more" => f.parse("count").map(|count| Record::FailedMore { count }),
        "interrupted" => Some(Record::Interrupted),
        "done" => done(&f).map(Record::Done),
        _ => return Line::Unknown,
    };
    record.map_or(Line::Bad, Line::Record)
}

fn attempt(f: &Fields) -> Option<Attempt> {
    Some(Attempt {
        worker: f.parse("worker")?,
        pid: f.parse("pid").unwrap_or(0),
        thread: f.parse("thread").unwrap_or(0),
        item: f.text("item")?,
        attempt: f.parse("attempt")?,
        last: f.parse("last").unwrap_or(false),
        start: f.time("start")?,
        ms: f.parse("ms")?,
        status: parse_status(f.get("status")?)?,
        http: f.optional("http"),
        bytes: f.parse("bytes").unwrap_or(0),
        blur_ms: f.parse("blur_ms"),
        url: f.text("url").unwrap_or_default(),
        wait_ms: f.parse("wait_ms"),
        reason: f.text("reason"),
    })
}

fn item_done(f: &Fields) -> Option<ItemDone> {
    Some(ItemDone {
        ts: f.time("ts")?,
        worker: f.parse("worker")?,
        pid: f.parse("pid").unwrap_or(0),
        thread: f.parse("thread").unwrap_or(0),
        item: f.text("item")?,
        status: parse_status(f.get("status")?)?,
        attempts: f.parse("attempts").unwrap_or(1),
        ms: f.parse("ms").unwrap_or(0),
        bytes: f.parse("bytes").unwrap_or(0),
        http: f.optional("http"),
        reason: f.text("reason"),
    })
}

fn summary(f: &Fields) -> Option<WorkerSummary> {
    let n = |key| f.parse::<u32>(key).unwrap_or(0);
    let secs = |key| f.parse::<f64>(key).unwrap_or(0.0);
    Some(WorkerSummary {
        worker: f.parse("worker")?,
        pid: f.parse("pid").unwrap_or(0),
        threads: f.parse("threads").unwrap_or(1),
        items: n("items"),
        ok: n("ok"),
        not_found: n("not_found"),
        error: n("error"),
        skipped: n("skipped"),
        retries: n("retries"),
        bytes: f.parse("bytes").unwrap_or(0),
        busy_secs: secs("busy_secs"),
        idle_secs: secs("idle_secs"),
        wall_secs: secs("wall_secs"),
    })
}

fn start(f: &Fields) -> Option<Start> {
    Some(Start {
        ts: f.time("ts")?,
        pid: f.parse("pid").unwrap_or(0),
        mode: f.text("mode")?,
        procs: f.parse("procs").unwrap_or(1),
        threads: f.parse("threads").unwrap_or(1),
        items: f.parse("items"),
        site: f.text("site"),
        shard: f.get("shard").filter(|s| *s != "none").map(str::to_string),
    })
}

fn done(f: &Fields) -> Option<Done> {
    let n = |key| f.parse::<usize>(key).unwrap_or(0);
    Some(Done {
        ts: f.time("ts")?,
        ok: n("ok"),
        not_found: n("not_found"),
        error: n("error"),
        skipped: n("skipped"),
        unfinished: n("unfinished"),
        bytes: f.parse("bytes").unwrap_or(0),
        elapsed_secs: f.parse("elapsed_secs")?,
        interrupted: f.parse("interrupted").unwrap_or(false),
        exit: f.parse("exit"),
    })
}

/// Reads a whole file's text: its records and how many lines were not read.
/// A last line without its newline was cut short (the writer ends every line
/// with one) and is not read, even if what is left of it parses.
pub fn read_text(bytes: &[u8], records: &mut Vec<Record>) -> usize {
    let mut bad = 0;
    let mut lines = bytes.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            // After the last newline: nothing, or a truncated line.
            bad += usize::from(!line.is_empty());
            break;
        }
        if line.is_empty() {
            continue;
        }
        match std::str::from_utf8(line).map(read_line) {
            Ok(Line::Record(r)) => records.push(r),
            Ok(Line::Unknown) => {}
            Ok(Line::Bad) | Err(_) => bad += 1,
        }
    }
    bad
}

/// Something of a directory that was not read, for the warning line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// Lines of a file that were not read.
    Lines { file: PathBuf, lines: usize },
    /// A log a worker should have written is not there.
    Missing { file: PathBuf },
    /// A file that could not be opened or read.
    Unreadable { file: PathBuf, why: String },
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::Lines { file, lines } => write!(
                f,
                "{}: {lines} line{} not read (truncated or not logfmt)",
                file.display(),
                if *lines == 1 { "" } else { "s" }
            ),
            Skipped::Missing { file } => write!(f, "{}: missing", file.display()),
            Skipped::Unreadable { file, why } => write!(f, "{}: not read ({why})", file.display()),
        }
    }
}

/// Everything read from one log directory.
#[derive(Debug, Default)]
pub struct DirLogs {
    pub dir: PathBuf,
    /// master.log's records, in order.
    pub master: Vec<Record>,
    /// The worker logs' records, file by file (in name order), each in order.
    pub workers: Vec<Record>,
    /// Whether `master.log` was there.
    pub has_master: bool,
    /// Worker numbers of the `worker-NN.log` files found.
    pub worker_logs: Vec<u32>,
    pub skipped: Vec<Skipped>,
}

/// The worker number of a `worker-NN.log` file name.
fn worker_of(name: &str) -> Option<u32> {
    name.strip_prefix("worker-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Reads a log directory: `master.log` and every `worker-NN.log`. An error
/// only if the directory itself cannot be read or holds no flagmaster log.
pub fn read_dir(dir: &Path) -> Result<DirLogs, Error> {
    let cannot = |source: io::Error| Error::LogDir {
        path: dir.to_path_buf(),
        why: source.to_string(),
    };
    let entries = fs::read_dir(dir).map_err(cannot)?;
    let mut workers: Vec<(u32, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(cannot)?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(worker_of) {
            workers.push((n, entry.path()));
        }
    }
    workers.sort();
    let mut logs = DirLogs {
        dir: dir.to_path_buf(),
        ..DirLogs::default()
    };
    let master_path = dir.join(MASTER_LOG);
    match fs::read(&master_path) {
        Ok(bytes) => {
            logs.has_master = true;
            let bad = read_text(&bytes, &mut logs.master);
            if bad > 0 {
                logs.skipped.push(Skipped::Lines {
                    file: master_path,
                    lines: bad,
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !workers.is_empty() {
                logs.skipped.push(Skipped::Missing { file: master_path });
            }
        }
        Err(e) => logs.skipped.push(Skipped::Unreadable {
            file: master_path,
            why: e.to_string(),
        }),
    }
    if !logs.has_master && workers.is_empty() {
        return Err(Error::LogDir {
            path: dir.to_path_buf(),
            why: format!("no flagmaster logs in it ({MASTER_LOG}, worker-NN.log)"),
        });
    }
    for (n, path) in workers {
        logs.worker_logs.push(n);
        match fs::read(&path) {
            Ok(bytes) => {
                let bad = read_text(&bytes, &mut logs.workers);
                if bad > 0 {
                    logs.skipped.push(Skipped::Lines {
                        file: path,
                        lines: bad,
                    });
                }
            }
            Err(e) => logs.skipped.push(Skipped::Unreadable {
                file: path,
                why: e.to_string(),
            }),
        }
    }
    // A worker master.log names whose log is not there.
    let mut named: Vec<u32> = logs
        .master
        .iter()
        .filter_map(|r| match r {
            Record::Spawned { worker, .. } => Some(*worker),
            Record::WorkerEnd(e) => Some(e.worker),
            _ => None,
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    for n in named {
        if !logs.worker_logs.contains(&n) {
            logs.skipped.push(Skipped::Missing {
                file: dir.join(flagmaster_worker::log::worker_log_name(n)),
            });
        }
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagmaster_worker::log::format_line;
    use std::time::{Duration, SystemTime};

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn a_line_splits_into_unescaped_fields() {
        let f = parse_fields(
            r#"ts=2026-12-07T04:57:26.123Z event=attempt reason="HTTP 503 \"busy\"" e="" u="a\nb\u{1}c" x=y"#,
        )
        .unwrap();
        assert_eq!(f.get("ts"), Some("2026-12-07T04:57:26.123Z"));
        assert_eq!(f.get("reason"), Some("HTTP 503 \"busy\""));
        assert_eq!(f.get("e"), Some(""));
        assert_eq!(f.get("u"), Some("a\nb\u{1}c"));
        assert_eq!(f.get("x"), Some("y"));
        assert_eq!(f.get("nope"), None);
    }

    #[test]
    fn what_is_not_logfmt_is_refused() {
        for line in [
            "",
            "thread '<unnamed>' panicked at worker/src/lib.rs:12:5:",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            "ts=2026-12-07T04:57:26.123Z reason=\"open",
            "ts=2026-12-07T04:57:26.123Z key",
            "ts=2026-12-07T04:57:26.123Z a=\"x\"b=1",
            "ts=2026-12-07T04:57:26.123Z =1",
        ] {
            assert_eq!(parse_fields(line), None, "{line}");
        }
    }

    #[test]
    fn times_are_milliseconds_since_the_epoch() {
        assert_eq!(parse_time("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    const ATTEMPT: &str = "ts=2026-12-07T04:57:26.400Z event=attempt worker=3 pid=9246 \
        thread=1 item=Chad attempt=2 last=true start=2026-12-07T04:57:26.123Z ms=277 \
        status=ERROR http=503 bytes=0 url=http://127.0.0.1:1/Chad.jpg reason=\"HTTP 503\"";

    #[test]
    fn an_attempt_line_is_typed() {
        let Line::Record(Record::Attempt(a)) = read_line(ATTEMPT) else {
            panic!("not an attempt");
        };
        assert_eq!((a.worker, a.pid, a.thread, a.attempt), (3, 9246, 1, 2));
        assert_eq!(a.item, "Chad");
        assert!(a.last);
        assert_eq!(a.end() - a.start, 277);
        assert_eq!(a.status, Status::Error);
        assert_eq!(a.http, Some(503));
        assert_eq!(a.reason.as_deref(), Some("HTTP 503"));
        assert_eq!((a.blur_ms, a.wait_ms), (None, None));
    }

    #[test]
    fn unknown_events_and_keys_are_ignored_and_known_events_need_their_keys() {
        let extra = format!("{ATTEMPT} future_key=1");
        assert!(matches!(
            read_line(&extra),
            Line::Record(Record::Attempt(_))
        ));
        assert_eq!(
            read_line("ts=2026-12-07T04:57:26.400Z event=teleported worker=1"),
            Line::Unknown
        );
        assert_eq!(
            read_line("ts=2026-12-07T04:57:26.400Z worker=1 item=Chad"),
            Line::Unknown
        );
        let no_start = ATTEMPT.replace("start=2026-12-07T04:57:26.123Z ", "");
        assert_eq!(read_line(&no_start), Line::Bad);
        let odd_status = ATTEMPT.replace("status=ERROR", "status=MAYBE");
        assert_eq!(read_line(&odd_status), Line::Bad);
    }

    #[test]
    fn master_lines_are_typed() {
        let lines = [
            "ts=2026-12-07T05:06:20.472Z event=start pid=19417 mode=proc procs=3 threads=2 asked=- \
             pin=false items=30 shard=none list=\"built-in flags.txt\" site=ERROR",
            "ts=2026-12-07T05:06:22.186Z event=worker_end worker=1 pid=19423 exit=\"signal: 9 (SIGKILL)\" \
             finished=false items=10 ok=9 not_found=0 error=1 retries=2 bytes=129499 secs=1.7",
            "ts=2026-12-07T05:06:22.186Z event=worker_end worker=2 pid=19417 exit=- finished=true items=3",
            "ts=2026-12-07T05:06:22.187Z event=worker_died worker=1 pid=19423 requeued=2",
            "ts=2026-12-07T05:06:22.187Z event=requeued worker=1 item=Chad",
            "ts=2026-12-07T05:06:22.452Z event=failed item=Afghanistan status=ERROR reason=\"HTTP 503\" \
             attempts=3 worker=1",
            "ts=2026-12-07T05:06:22.452Z event=done ok=29 not_found=0 error=1 skipped=0 unfinished=0 \
             bytes=417447 elapsed_secs=1.979507 interrupted=false exit=1",
        ];
        let records: Vec<Record> = lines
            .iter()
            .map(|l| match read_line(l) {
                Line::Record(r) => r,
                other => panic!("{l}: {other:?}"),
            })
            .collect();
        let Record::Start(s) = &records[0] else {
            panic!()
        };
        assert_eq!((s.mode.as_str(), s.procs, s.threads), ("proc", 3, 2));
        assert_eq!(s.items, Some(30));
        let Record::WorkerEnd(e) = &records[1] else {
            panic!()
        };
        assert_eq!(e.exit.as_deref(), Some("signal: 9 (SIGKILL)"));
        assert!(!e.finished);
        let Record::WorkerEnd(e) = &records[2] else {
            panic!()
        };
        assert_eq!(e.exit, None);
        assert_eq!(
            records[3],
            Record::WorkerDied {
                ts: parse_time("2026-12-07T05:06:22.187Z").unwrap(),
                worker: 1,
                pid: 19423,
                requeued: 2
            }
        );
        assert_eq!(
            records[4],
            Record::Requeued {
                worker: 1,
                item: "Chad".into()
            }
        );
        let Record::Done(d) = &records[6] else {
            panic!()
        };
        assert_eq!((d.ok, d.error, d.exit), (29, 1, Some(1)));
    }

    #[test]
    fn a_file_is_read_as_far_as_it_goes() {
        let good = format_line(
            at(1_000),
            &[("event", &"worker_stuck"), ("worker", &2), ("pid", &7)],
        );
        let text = format!(
            "{good}thread '<unnamed>' panicked at src/x.rs:1:1:\nboom\n\n{good}{}",
            &good[..good.len() / 2]
        );
        let mut records = Vec::new();
        let bad = read_text(text.as_bytes(), &mut records);
        assert_eq!(
            bad, 3,
            "two lines of panic text and the truncated last line"
        );
        assert_eq!(records.len(), 2);
        // Invalid UTF-8 is a line not read, not a panic.
        let mut records = Vec::new();
        assert_eq!(read_text(b"ts=\xff\xfe x=1\n", &mut records), 1);
        // A file that ends with its newline has nothing cut off.
        assert_eq!(read_text(good.as_bytes(), &mut records), 0);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Arbitrary bytes: never a panic, and every line is accounted for.
            #[test]
            fn any_bytes_are_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let mut records = Vec::new();
                let bad = read_text(&bytes, &mut records);
                let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
                prop_assert!(bad + records.len() <= lines);
            }

            /// Lines that look like logfmt, cut anywhere: never a panic.
            #[test]
            fn logfmt_like_lines_are_read_without_panic(
                line in "ts=[0-9TZ:.-]{0,30}( [a-z_]{1,8}=(\"([^\"\\\\]|\\\\[\"\\\\nu{}0-9a-f]){0,12}\"?|[^ \"]{0,12})){0,12}",
                cut in 0usize..400,
            ) {
                let _ = read_line(&line);
                let mut records = Vec::new();
                // Cut anywhere, even inside a character.
                let cut = cut.min(line.len());
                let _ = read_text(&line.as_bytes()[..cut], &mut records);
                let _ = read_text(format!("{line}\n").as_bytes(), &mut records);
            }

            /// Every line format_line writes is read back as written: the
            /// same keys, the same values, in order.
            #[test]
            fn written_lines_read_back_as_written(
                ms in 0u64..4_102_444_800_000,
                fields in proptest::collection::vec(("[a-z_]{1,12}", any::<String>()), 0..10),
            ) {
                let refs: Vec<(&str, &dyn std::fmt::Display)> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v as &dyn std::fmt::Display))
                    .collect();
                let line = format_line(at(ms), &refs);
                let mut records = Vec::new();
                prop_assert_eq!(read_text(line.as_bytes(), &mut records), 0);
                let read = parse_fields(line.strip_suffix('\n').unwrap());
                prop_assert!(read.is_some(), "{}", line);
                let read = read.unwrap();
                prop_assert_eq!(read.0.len(), fields.len() + 1);
                prop_assert_eq!(parse_time(read.get("ts").unwrap()), Some(ms as i64));
                for ((k, v), (rk, rv)) in fields.iter().zip(&read.0[1..]) {
                    prop_assert_eq!(k.as_str(), *rk);
                    prop_assert_eq!(v.as_str(), &**rv);
                }
            }

            /// An attempt line as the worker writes it comes back as the
            /// same typed record, whatever the item's name and reason.
            #[test]
            fn attempt_records_read_back_as_written(
                item in any::<String>(),
                reason in proptest::option::of(any::<String>()),
                worker in 1u32..2000,
                thread in 0u32..5000,
                attempt in 1u32..10,
                start in 0u64..4_102_444_800_000,
                ms in 0u64..100_000,
                status in prop_oneof![Just(Status::Ok), Just(Status::NotFound), Just(Status::Error), Just(Status::Skipped)],
                http in proptest::option::of(100u16..600),
                bytes in any::<u64>(),
                wait_ms in proptest::option::of(0u64..10_000),
            ) {
                let expected = Attempt {
                    worker, pid: 4242, thread, item, attempt, last: attempt > 3,
                    start: start as i64, ms, status, http, bytes, blur_ms: None,
                    url: "http://127.0.0.1:8000/x y.jpg".into(), wait_ms, reason,
                };
                let line = write_attempt(&expected);
                let read = read_line(line.strip_suffix('\n').unwrap());
                prop_assert_eq!(read, Line::Record(Record::Attempt(expected)));
            }
        }

        /// The line the worker writes for an attempt, as docs/logs.md lists its keys.
        fn write_attempt(a: &Attempt) -> String {
            let start = humantime::format_rfc3339_millis(at(a.start as u64)).to_string();
            let http = a.http.map_or_else(|| "-".to_string(), |c| c.to_string());
            let status = a.status.label();
            let mut fields: Vec<(&str, &dyn std::fmt::Display)> = vec![
                ("event", &"attempt"),
                ("worker", &a.worker),
                ("pid", &a.pid),
                ("thread", &a.thread),
                ("item", &a.item),
                ("attempt", &a.attempt),
                ("last", &a.last),
                ("start", &start),
                ("ms", &a.ms),
                ("status", &status),
                ("http", &http),
                ("bytes", &a.bytes),
                ("url", &a.url),
            ];
            if let Some(w) = &a.wait_ms {
                fields.push(("wait_ms", w));
            }
            if let Some(r) = &a.reason {
                fields.push(("reason", r));
            }
            format_line(at(a.start as u64 + a.ms), &fields)
        }
    }
}
