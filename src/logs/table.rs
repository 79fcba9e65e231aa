//! The text form of a [`Summary`]: per run, a heading and the per-worker
//! table with the slowest worker; then the slowest attempts, the failed and
//! retried items, and the lost workers, across all runs.

use std::fmt::Write as _;

use super::model::{Loss, LostWorker, RunSummary, Summary, WorkerRow};
use crate::report::Counts;

/// How many failed or retried items the text lists (the JSON has them all).
const MAX_LISTED: usize = 50;
/// How many handed-on items a lost worker's line names.
const MAX_HANDED_ON: usize = 8;

pub fn to_text(summary: &Summary) -> String {
    let mut out = String::new();
    let several = summary.runs.len() > 1;
    for run in &summary.runs {
        write_run(&mut out, run);
        out.push('\n');
    }
    if several {
        let _ = writeln!(
            out,
            "All {} runs: {}\n",
            summary.runs.len(),
            counts_line(&summary.counts, summary.bytes)
        );
    }
    // Where a worker is, when there are several runs: `logs-b/03`.
    let at = |dir: &str, worker: u32| {
        if several {
            format!("{dir}/{worker:02}")
        } else {
            format!("{worker:02}")
        }
    };
    if !summary.slowest_attempts.is_empty() {
        let _ = writeln!(out, "Slowest attempts:");
        let rows = summary.slowest_attempts.iter().map(|a| {
            vec![
                a.ms.to_string(),
                a.status.label().to_string(),
                a.http.map_or_else(|| "-".to_string(), |c| c.to_string()),
                format!("{}.{}", at(&a.dir, a.worker), a.thread),
                format!("{:.3}", a.start_secs),
                format!("{} ({})", a.item, a.attempt),
                a.reason.clone().unwrap_or_default(),
            ]
        });
        let head = [
            "ms",
            "status",
            "http",
            "worker",
            "start_s",
            "item (attempt)",
            "reason",
        ];
        columns(&mut out, &head, &[R, L, R, R, R, L, L], rows);
        out.push('\n');
    }
    if !summary.failed.is_empty() {
        let _ = writeln!(out, "Failed items ({}):", summary.failed.len());
        let rows = summary.failed.iter().take(MAX_LISTED).map(|f| {
            vec![
                f.status.label().to_string(),
                f.item.clone(),
                f.attempts
                    .map_or_else(|| "-".to_string(), |n| n.to_string()),
                f.worker.map_or_else(|| "-".to_string(), |w| at(&f.dir, w)),
                f.reason.clone().unwrap_or_else(|| "-".to_string()),
            ]
        });
        let head = ["status", "item", "attempts", "worker", "reason"];
        columns(&mut out, &head, &[L, L, R, R, L], rows);
        more(&mut out, summary.failed.len());
        out.push('\n');
    }
    if !summary.retried.is_empty() {
        let _ = writeln!(out, "Retried items ({}):", summary.retried.len());
        let rows = summary.retried.iter().take(MAX_LISTED).map(|r| {
            vec![
                r.status.label().to_string(),
                r.item.clone(),
                r.attempts.to_string(),
                format!("{:.3}", r.ms as f64 / 1000.0),
                at(&r.dir, r.worker),
                r.reasons.join(", "),
            ]
        });
        let head = [
            "status",
            "item",
            "attempts",
            "secs",
            "worker",
            "before the last",
        ];
        columns(&mut out, &head, &[L, L, R, R, R, L], rows);
        more(&mut out, summary.retried.len());
        out.push('\n');
    }
    if !summary.lost_workers.is_empty() {
        let _ = writeln!(out, "Lost workers ({}):", summary.lost_workers.len());
        for l in &summary.lost_workers {
            write_lost(&mut out, l, &at(&l.dir, l.worker));
        }
        out.push('\n');
    }
    // No trailing blank line.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// How a column is aligned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}
use Align::{Left as L, Right as R};

/// A table whose columns are as wide as their widest cell, two spaces apart;
/// the last column is not padded.
fn columns(
    out: &mut String,
    head: &[&str],
    align: &[Align],
    rows: impl Iterator<Item = Vec<String>>,
) {
    let mut table: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    table.extend(rows);
    let mut widths = vec![0; head.len()];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &table {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            let last = i + 1 == row.len();
            match align[i] {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn more(out: &mut String, n: usize) {
    if n > MAX_LISTED {
        let _ = writeln!(
            out,
            "... and {} more (--json lists them all)",
            n - MAX_LISTED
        );
    }
}

/// `28 OK, 0 not found, 2 errors; 404191 bytes` (skipped and interrupted when there are any).
fn counts_line(c: &Counts, bytes: u64) -> String {
    let mut line = format!("{} OK, {} not found, {} errors", c.ok, c.not_found, c.error);
    if c.skipped > 0 {
        let _ = write!(line, ", {} skipped", c.skipped);
    }
    if c.interrupted > 0 {
        let _ = write!(line, ", {} interrupted", c.interrupted);
    }
    let _ = write!(line, "; {bytes} bytes");
    line
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |s| format!("{s:.3}"))
}

/// `logs: proc 4x1, 197 items in 2.345 s, exit 1`, the counts, the table and
/// the slowest worker.
fn write_run(out: &mut String, run: &RunSummary) {
    let mut head = run.dir.clone();
    head.push(':');
    if let (Some(mode), Some(p), Some(t)) = (&run.mode, run.procs, run.threads) {
        let _ = write!(head, " {mode} {p}x{t},");
    }
    if let Some(shard) = &run.shard {
        let _ = write!(head, " shard {shard},");
    }
    if let Some(items) = run.items {
        let _ = write!(head, " {items} items");
    }
    if let Some(e) = run.elapsed_secs {
        let _ = write!(head, " in {e:.3} s");
    }
    if let Some(exit) = run.exit {
        let _ = write!(head, ", exit {exit}");
    }
    if run.interrupted {
        head.push_str(", interrupted");
    }
    let _ = writeln!(out, "{}", head.trim_end_matches(','));
    let _ = writeln!(out, "{}", counts_line(&run.counts, run.bytes));
    if run.workers.is_empty() {
        return;
    }
    // Columns of figures no worker has are left out.
    let any = |f: fn(&WorkerRow) -> u32| run.workers.iter().any(|w| f(w) > 0);
    let threads = run.workers.iter().any(|w| w.threads > 1);
    type Cell = fn(&WorkerRow) -> String;
    let mut cols: Vec<(&str, Align, Cell)> = vec![
        ("worker", R, |w| format!("{:02}", w.worker)),
        ("pid", R, |w| w.pid.to_string()),
    ];
    if threads {
        cols.push(("threads", R, |w| w.threads.to_string()));
    }
    cols.extend([
        ("items", R, (|w| w.items.to_string()) as Cell),
        ("ok", R, |w| w.ok.to_string()),
        ("not_found", R, |w| w.not_found.to_string()),
        ("errors", R, |w| w.error.to_string()),
    ]);
    if any(|w| w.skipped) {
        cols.push(("skipped", R, |w| w.skipped.to_string()));
    }
    if any(|w| w.interrupted) {
        cols.push(("interrupted", R, |w| w.interrupted.to_string()));
    }
    cols.extend([
        ("retries", R, (|w| w.retries.to_string()) as Cell),
        ("bytes", R, |w| w.bytes.to_string()),
        ("busy_s", R, |w| secs(w.busy_secs)),
        ("idle_s", R, |w| secs(w.idle_secs)),
        ("first_s", R, |w| secs(w.first_start_secs)),
        ("last_s", R, |w| secs(w.last_end_secs)),
        // `exit status: 0` is `0` here; a signal is named as it is.
        ("exit", L, |w| {
            w.exit.as_deref().map_or_else(
                || "-".to_string(),
                |e| e.strip_prefix("exit status: ").unwrap_or(e).to_string(),
            )
        }),
    ]);
    let head: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let align: Vec<Align> = cols.iter().map(|c| c.1).collect();
    let rows = run
        .workers
        .iter()
        .map(|w| cols.iter().map(|c| (c.2)(w)).collect());
    columns(out, &head, &align, rows);
    if let Some(s) = &run.slowest {
        let lane = |worker: u32, thread: Option<u32>| match thread {
            Some(t) => format!("worker {worker:02} thread {t}"),
            None => format!("worker {worker:02}"),
        };
        let _ = writeln!(
            out,
            "Slowest: {}, done at {:.3} s, {:.3} s after {}, the first to run out of work",
            lane(s.worker, s.thread),
            s.last_end_secs,
            s.behind_secs,
            lane(s.first_done_worker, s.first_done_thread),
        );
    }
}

fn write_lost(out: &mut String, l: &LostWorker, who: &str) {
    let how = match l.how {
        Loss::Died => "ended without finishing",
        Loss::Stuck => "was stuck and killed",
        Loss::HandshakeFailed => "never completed its handshake",
        Loss::NoSummary => "left no summary (killed with the run?)",
    };
    let exit = l
        .exit
        .as_deref()
        .map_or_else(String::new, |e| format!(" ({e})"));
    let _ = write!(
        out,
        "worker {who} pid {} {how}{exit} after {}",
        l.pid,
        plural(l.items_done as usize, "item")
    );
    if l.requeued > 0 || !l.handed_on.is_empty() {
        let named: Vec<String> = l
            .handed_on
            .iter()
            .take(MAX_HANDED_ON)
            .map(|h| match (h.worker, h.status) {
                (Some(w), Some(s)) => format!("{} (worker {w:02}: {})", h.item, s.label()),
                _ => format!("{} (not ended)", h.item),
            })
            .collect();
        let n = (l.requeued as usize).max(l.handed_on.len());
        let _ = write!(out, "; handed on {}", plural(n, "item"));
        if !named.is_empty() {
            let _ = write!(out, ": {}", named.join(", "));
        }
        if l.handed_on.len() > MAX_HANDED_ON {
            let _ = write!(out, " and {} more", l.handed_on.len() - MAX_HANDED_ON);
        }
    }
    out.push('\n');
}
