//! The model: the records of one log directory gathered into a [`Run`], and
//! runs folded into the [`Summary`] that `flagmaster logs` prints, as text
//! (`table.rs`) or as JSON (this file's serde derives). Pure functions of the
//! records, so they are tested on hand-written lines.
//!
//! The figures come from the worker logs (`item_done`, `attempt`,
//! `worker_summary`); `master.log` adds the run's settings and start, how
//! each worker ended, and what a dead worker handed on. An item a worker
//! died before reporting may be done again by another worker: it counts once,
//! as its last `item_done` says.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use flagmaster_worker::protocol::Status;
use serde::Serialize;

use super::read::{
    Attempt, DirLogs, Done, Failed, ItemDone, Record, Start, WorkerEnd, WorkerSummary,
};
use crate::master::collect::INTERRUPTED;
use crate::report::Counts;

/// Everything read from one log directory, by kind.
#[derive(Debug, Default)]
pub struct Run {
    pub dir: PathBuf,
    pub start: Option<Start>,
    pub done: Option<Done>,
    /// When the run began, in ms since the epoch: `master.log`'s `start`
    /// line, else the first attempt's start.
    pub origin: i64,
    pub attempts: Vec<Attempt>,
    pub items: Vec<ItemDone>,
    pub summaries: BTreeMap<u32, WorkerSummary>,
    pub ends: BTreeMap<u32, WorkerEnd>,
    /// Workers that ended without finishing (`worker_died`).
    pub died: Vec<Died>,
    /// Worker, item: what a dead worker's items were.
    pub requeued: Vec<(u32, String)>,
    /// Worker, pid.
    pub stuck: Vec<(u32, u32)>,
    /// Worker, pid, why.
    pub handshake_failed: Vec<(u32, u32, Option<String>)>,
    /// master.log's `failed` lines.
    pub failed: Vec<Failed>,
    pub failed_more: usize,
    pub interrupted: bool,
    /// Pids master.log gives the workers (`spawn`, `hello`).
    pub pids: BTreeMap<u32, u32>,
    /// Workers that have a log file.
    pub worker_logs: Vec<u32>,
}

impl Run {
    pub fn new(logs: DirLogs) -> Run {
        let mut run = Run {
            dir: logs.dir,
            worker_logs: logs.worker_logs,
            ..Run::default()
        };
        for record in logs.master.into_iter().chain(logs.workers) {
            match record {
                Record::Attempt(a) => run.attempts.push(a),
                Record::ItemDone(i) => run.items.push(i),
                Record::WorkerSummary(s) => {
                    run.summaries.insert(s.worker, s);
                }
                Record::Start(s) => run.start = Some(s),
                Record::Spawned { worker, pid } => {
                    run.pids.insert(worker, pid);
                }
                Record::HandshakeFailed { worker, pid, why } => {
                    run.handshake_failed.push((worker, pid, why));
                }
                Record::WorkerEnd(e) => {
                    run.ends.insert(e.worker, e);
                }
                Record::WorkerDied {
                    ts,
                    worker,
                    pid,
                    requeued,
                } => run.died.push(Died {
                    ts,
                    worker,
                    pid,
                    requeued,
                }),
                Record::Requeued { worker, item } => run.requeued.push((worker, item)),
                Record::WorkerStuck { worker, pid } => run.stuck.push((worker, pid)),
                Record::Failed(f) => run.failed.push(f),
                Record::FailedMore { count } => run.failed_more += count,
                Record::Interrupted => run.interrupted = true,
                Record::Done(d) => {
                    run.interrupted |= d.interrupted;
                    run.done = Some(d);
                }
            }
        }
        run.origin = run
            .start
            .as_ref()
            .map(|s| s.ts)
            .or_else(|| run.attempts.iter().map(|a| a.start).min())
            .unwrap_or(0);
        run
    }

    /// Seconds from the run's start to `ms` (since the epoch).
    pub fn secs(&self, ms: i64) -> f64 {
        (ms - self.origin) as f64 / 1000.0
    }

    /// The run's elapsed time: master.log's, else to the last attempt's end.
    pub fn elapsed_secs(&self) -> Option<f64> {
        self.done.as_ref().map(|d| d.elapsed_secs).or_else(|| {
            let end = self.attempts.iter().map(Attempt::end).max()?;
            Some(self.secs(end))
        })
    }

    /// `proc 4x2`, `threads 1x8`, or the directory when master.log is gone.
    pub fn label(&self) -> String {
        match &self.start {
            Some(s) => format!("{} {}x{}", s.mode, s.procs, s.threads),
            None => "(no master.log)".to_string(),
        }
    }

    /// Each item's outcome: its last `item_done` line (an item done twice,
    /// after its first worker died unreported, counts once).
    pub fn outcomes(&self) -> HashMap<&str, &ItemDone> {
        let mut last: HashMap<&str, &ItemDone> = HashMap::with_capacity(self.items.len());
        for i in &self.items {
            match last.get(i.item.as_str()) {
                Some(seen) if seen.ts > i.ts => {}
                _ => {
                    last.insert(&i.item, i);
                }
            }
        }
        last
    }
}

/// A `worker_died` line: the master saw the worker end without finishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Died {
    /// When, in ms since the epoch.
    pub ts: i64,
    pub worker: u32,
    pub pid: u32,
    /// Items it held, handed back to the queue.
    pub requeued: u32,
}

/// What `--worker` and `--status` keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub worker: Option<u32>,
    pub status: Option<Status>,
}

impl Filter {
    pub fn worker(&self, worker: u32) -> bool {
        self.worker.is_none_or(|w| w == worker)
    }

    pub fn keeps(&self, worker: u32, status: Status) -> bool {
        self.worker(worker) && self.status.is_none_or(|s| s == status)
    }
}

/// What `flagmaster logs` prints, for one or more runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub runs: Vec<RunSummary>,
    /// The runs' counts and bytes, added up.
    pub counts: Counts,
    pub bytes: u64,
    /// The slowest attempts, slowest first (`--top`).
    pub slowest_attempts: Vec<AttemptRow>,
    /// Every failed item (NOT_FOUND or ERROR; not the interrupted ones).
    pub failed: Vec<FailedItem>,
    /// Every item that took more than one attempt.
    pub retried: Vec<RetriedItem>,
    /// Workers that died, were killed as stuck, never started, or left no summary.
    pub lost_workers: Vec<LostWorker>,
}

/// One run (one log directory).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunSummary {
    pub dir: String,
    pub mode: Option<String>,
    pub procs: Option<u32>,
    pub threads: Option<u32>,
    /// Items the run set out to do (`master.log`'s `start`).
    pub items: Option<usize>,
    /// `2/4`, when the run took one shard of the list.
    pub shard: Option<String>,
    pub elapsed_secs: Option<f64>,
    /// Outcomes of the items, from the `item_done` lines (and master.log's
    /// `failed` lines for a failed item no worker log has).
    pub counts: Counts,
    pub bytes: u64,
    pub interrupted: bool,
    /// The exit status master.log records.
    pub exit: Option<u8>,
    pub workers: Vec<WorkerRow>,
    /// The worker (or thread) whose last attempt ended last.
    pub slowest: Option<Slowest>,
}

/// One worker: a worker process in proc mode, a thread in threads mode.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WorkerRow {
    pub worker: u32,
    pub pid: u32,
    pub threads: u32,
    /// Items it ended (its `item_done` lines), by outcome.
    pub items: u32,
    pub ok: u32,
    pub not_found: u32,
    /// ERROR, but not the items an interrupt cut short.
    pub error: u32,
    pub skipped: u32,
    /// Items an interrupt cut short (ERROR, reason `interrupted`).
    pub interrupted: u32,
    /// Attempts beyond the first.
    pub retries: u32,
    pub bytes: u64,
    /// From its `worker_summary`: none if it died.
    pub busy_secs: Option<f64>,
    pub idle_secs: Option<f64>,
    /// Its first attempt's start and last attempt's end, in seconds from the run's start.
    pub first_start_secs: Option<f64>,
    pub last_end_secs: Option<f64>,
    /// How it ended, as master.log says (`exit status: 0`, `signal: 9 (SIGKILL)`).
    pub exit: Option<String>,
    /// It wrote its `worker_summary`.
    pub finished: bool,
}

/// Who held the run up: the lane whose last attempt ended last, and how long
/// after the first lane to run out of work it did.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Slowest {
    pub worker: u32,
    /// The thread, when workers have several.
    pub thread: Option<u32>,
    pub last_end_secs: f64,
    pub first_done_worker: u32,
    pub first_done_thread: Option<u32>,
    pub first_done_secs: f64,
    pub behind_secs: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AttemptRow {
    pub dir: String,
    pub worker: u32,
    pub thread: u32,
    pub item: String,
    pub attempt: u32,
    pub status: Status,
    pub http: Option<u16>,
    pub ms: u64,
    pub start_secs: f64,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FailedItem {
    pub dir: String,
    pub item: String,
    pub status: Status,
    pub reason: Option<String>,
    pub attempts: Option<u32>,
    pub worker: Option<u32>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RetriedItem {
    pub dir: String,
    pub item: String,
    pub status: Status,
    pub attempts: u32,
    /// From its first attempt's start to its last one's end, back-off included.
    pub ms: u64,
    pub worker: u32,
    /// Why the attempts before the last failed, in order.
    pub reasons: Vec<String>,
}

/// How a worker was lost.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// It ended without finishing (`worker_died`): crashed or killed.
    Died,
    /// It said nothing for too long and the master killed it (`worker_stuck`).
    Stuck,
    /// It never completed its handshake.
    HandshakeFailed,
    /// Its log stops without a `worker_summary` and master.log does not say why.
    NoSummary,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LostWorker {
    pub dir: String,
    pub worker: u32,
    pub pid: u32,
    pub how: Loss,
    pub exit: Option<String>,
    /// Items it finished before it was lost.
    pub items_done: u32,
    /// What it held, handed back to the queue, and who ended each.
    pub handed_on: Vec<HandedOn>,
    /// `requeued` of `worker_died`, which may exceed the items named.
    pub requeued: u32,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HandedOn {
    pub item: String,
    pub worker: Option<u32>,
    pub status: Option<Status>,
}

/// Folds the runs into the summary, with `top` slowest attempts.
pub fn summarize(runs: &[Run], filter: Filter, top: usize) -> Summary {
    let mut summary = Summary {
        runs: Vec::new(),
        counts: Counts::default(),
        bytes: 0,
        slowest_attempts: Vec::new(),
        failed: Vec::new(),
        retried: Vec::new(),
        lost_workers: Vec::new(),
    };
    let mut slow: Vec<(&Run, &Attempt)> = Vec::new();
    for run in runs {
        let outcomes = run.outcomes();
        let run_summary = run_summary(run, &outcomes, filter);
        summary.counts += run_summary.counts;
        summary.bytes += run_summary.bytes;
        summary.runs.push(run_summary);
        slow.extend(
            run.attempts
                .iter()
                .filter(|a| filter.keeps(a.worker, a.status))
                .map(|a| (run, a)),
        );
        summary.failed.extend(failed(run, &outcomes, filter));
        summary.retried.extend(retried(run, filter));
        summary.lost_workers.extend(
            lost(run, &outcomes)
                .into_iter()
                .filter(|l| filter.worker(l.worker)),
        );
    }
    // Slowest first; among equals, the earlier first.
    let by = |x: &(&Run, &Attempt)| (std::cmp::Reverse(x.1.ms), x.1.start);
    if slow.len() > top {
        slow.select_nth_unstable_by_key(top, by);
        slow.truncate(top);
    }
    slow.sort_by_key(by);
    summary.slowest_attempts = slow
        .into_iter()
        .map(|(run, a)| AttemptRow {
            dir: run.dir.display().to_string(),
            worker: a.worker,
            thread: a.thread,
            item: a.item.clone(),
            attempt: a.attempt,
            status: a.status,
            http: a.http,
            ms: a.ms,
            start_secs: run.secs(a.start),
            reason: a.reason.clone(),
        })
        .collect();
    summary
}

fn run_summary(run: &Run, outcomes: &HashMap<&str, &ItemDone>, filter: Filter) -> RunSummary {
    let mut counts = Counts::default();
    let mut bytes = 0;
    for i in outcomes.values() {
        count(&mut counts, i.status, i.reason.as_deref());
        bytes += i.bytes;
    }
    // A failed item no worker log tells of (its log is gone, or no worker
    // ever held it): master.log's word for it.
    for f in &run.failed {
        if !outcomes.contains_key(f.item.as_str()) {
            count(&mut counts, f.status, f.reason.as_deref());
        }
    }
    if let Some(done) = &run.done {
        if run.items.is_empty() {
            // No worker log tells of any item (they are gone, or older than
            // item_done lines): master.log's figures.
            counts = Counts {
                ok: done.ok,
                not_found: done.not_found,
                error: done.error,
                skipped: done.skipped,
                interrupted: 0,
            };
            bytes = done.bytes;
        }
        // Items an interrupt stopped before any worker took them.
        counts.interrupted = counts.interrupted.max(done.unfinished);
    }
    let workers = worker_rows(run)
        .into_iter()
        .filter(|w| filter.worker(w.worker))
        .collect();
    RunSummary {
        dir: run.dir.display().to_string(),
        mode: run.start.as_ref().map(|s| s.mode.clone()),
        procs: run.start.as_ref().map(|s| s.procs),
        threads: run.start.as_ref().map(|s| s.threads),
        items: run.start.as_ref().and_then(|s| s.items),
        shard: run.start.as_ref().and_then(|s| s.shard.clone()),
        elapsed_secs: run.elapsed_secs(),
        counts,
        bytes,
        interrupted: run.interrupted,
        exit: run.done.as_ref().and_then(|d| d.exit),
        workers,
        slowest: slowest(run).filter(|_| filter.worker.is_none()),
    }
}

fn count(counts: &mut Counts, status: Status, reason: Option<&str>) {
    match status {
        Status::Ok => counts.ok += 1,
        Status::NotFound => counts.not_found += 1,
        Status::Error if reason == Some(INTERRUPTED) => counts.interrupted += 1,
        Status::Error => counts.error += 1,
        Status::Skipped => counts.skipped += 1,
    }
}

/// The per-worker table: every worker that has a log, a line in master.log,
/// or a line in another log.
pub fn worker_rows(run: &Run) -> Vec<WorkerRow> {
    let mut numbers: BTreeSet<u32> = run.worker_logs.iter().copied().collect();
    numbers.extend(run.pids.keys());
    numbers.extend(run.ends.keys());
    numbers.extend(run.summaries.keys());
    let mut rows: BTreeMap<u32, WorkerRow> = numbers
        .into_iter()
        .map(|worker| {
            let summary = run.summaries.get(&worker);
            let end = run.ends.get(&worker);
            let pid = end
                .map(|e| e.pid)
                .or_else(|| run.pids.get(&worker).copied())
                .or_else(|| summary.map(|s| s.pid))
                .unwrap_or(0);
            let row = WorkerRow {
                worker,
                pid,
                threads: summary.map_or(1, |s| s.threads),
                items: 0,
                ok: 0,
                not_found: 0,
                error: 0,
                skipped: 0,
                interrupted: 0,
                retries: 0,
                bytes: 0,
                busy_secs: summary.map(|s| s.busy_secs),
                idle_secs: summary.map(|s| s.idle_secs),
                first_start_secs: None,
                last_end_secs: None,
                exit: end.and_then(|e| e.exit.clone()),
                finished: summary.is_some(),
            };
            (worker, row)
        })
        .collect();
    let blank = |worker| WorkerRow {
        worker,
        pid: 0,
        threads: 1,
        items: 0,
        ok: 0,
        not_found: 0,
        error: 0,
        skipped: 0,
        interrupted: 0,
        retries: 0,
        bytes: 0,
        busy_secs: None,
        idle_secs: None,
        first_start_secs: None,
        last_end_secs: None,
        exit: None,
        finished: false,
    };
    for i in &run.items {
        let row = rows.entry(i.worker).or_insert_with(|| blank(i.worker));
        row.items += 1;
        match i.status {
            Status::Ok => row.ok += 1,
            Status::NotFound => row.not_found += 1,
            Status::Error if i.reason.as_deref() == Some(INTERRUPTED) => row.interrupted += 1,
            Status::Error => row.error += 1,
            Status::Skipped => row.skipped += 1,
        }
        row.bytes += i.bytes;
        if row.pid == 0 {
            row.pid = i.pid;
        }
    }
    let mut threads: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let mut spans: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
    for a in &run.attempts {
        let row = rows.entry(a.worker).or_insert_with(|| blank(a.worker));
        if a.attempt > 1 {
            row.retries += 1;
        }
        if row.pid == 0 {
            row.pid = a.pid;
        }
        threads.entry(a.worker).or_default().insert(a.thread);
        let span = spans.entry(a.worker).or_insert((a.start, a.end()));
        span.0 = span.0.min(a.start);
        span.1 = span.1.max(a.end());
    }
    for (worker, row) in &mut rows {
        if let Some(&(first, last)) = spans.get(worker) {
            row.first_start_secs = Some(run.secs(first));
            row.last_end_secs = Some(run.secs(last));
        }
        if !run.summaries.contains_key(worker) {
            row.threads = threads.get(worker).map_or(1, |t| t.len() as u32);
        }
    }
    rows.into_values().collect()
}

/// The lane (worker, or worker and thread when workers have several threads)
/// whose last attempt ended last, against the one that ended first.
pub fn slowest(run: &Run) -> Option<Slowest> {
    let threaded = run.start.as_ref().map_or_else(
        || run.attempts.iter().any(|a| a.thread > 0),
        |s| s.threads > 1 && s.mode == "proc",
    );
    // A worker that died did not run out of work: it is no measure.
    let lost =
        |w: u32| run.died.iter().any(|d| d.worker == w) || run.stuck.iter().any(|s| s.0 == w);
    let mut ends: BTreeMap<(u32, Option<u32>), i64> = BTreeMap::new();
    for a in run.attempts.iter().filter(|a| !lost(a.worker)) {
        let lane = (a.worker, threaded.then_some(a.thread));
        let end = ends.entry(lane).or_insert(a.end());
        *end = (*end).max(a.end());
    }
    if ends.len() < 2 {
        return None;
    }
    let (&last_lane, &last) = ends
        .iter()
        .max_by_key(|(lane, end)| (**end, std::cmp::Reverse(**lane)))?;
    let (&first_lane, &first) = ends.iter().min_by_key(|(lane, end)| (**end, **lane))?;
    Some(Slowest {
        worker: last_lane.0,
        thread: last_lane.1,
        last_end_secs: run.secs(last),
        first_done_worker: first_lane.0,
        first_done_thread: first_lane.1,
        first_done_secs: run.secs(first),
        behind_secs: (last - first) as f64 / 1000.0,
    })
}

fn failed(run: &Run, outcomes: &HashMap<&str, &ItemDone>, filter: Filter) -> Vec<FailedItem> {
    let dir = run.dir.display().to_string();
    let is_failure = |status: Status, reason: Option<&str>| {
        matches!(status, Status::NotFound | Status::Error) && reason != Some(INTERRUPTED)
    };
    let mut failed: Vec<(i64, FailedItem)> = outcomes
        .values()
        .filter(|i| is_failure(i.status, i.reason.as_deref()) && filter.keeps(i.worker, i.status))
        .map(|i| {
            let item = FailedItem {
                dir: dir.clone(),
                item: i.item.clone(),
                status: i.status,
                reason: i.reason.clone(),
                attempts: Some(i.attempts),
                worker: Some(i.worker),
            };
            (i.ts, item)
        })
        .collect();
    failed.sort_by(|a, b| (a.0, &a.1.item).cmp(&(b.0, &b.1.item)));
    let mut failed: Vec<FailedItem> = failed.into_iter().map(|(_, f)| f).collect();
    for f in &run.failed {
        let kept = f
            .worker
            .map_or(filter.worker.is_none(), |w| filter.worker(w))
            && filter.status.is_none_or(|s| s == f.status);
        if !outcomes.contains_key(f.item.as_str())
            && kept
            && is_failure(f.status, f.reason.as_deref())
        {
            failed.push(FailedItem {
                dir: dir.clone(),
                item: f.item.clone(),
                status: f.status,
                reason: f.reason.clone(),
                attempts: f.attempts,
                worker: f.worker.filter(|&w| w > 0),
            });
        }
    }
    failed
}

fn retried(run: &Run, filter: Filter) -> Vec<RetriedItem> {
    let dir = run.dir.display().to_string();
    let mut reasons: HashMap<(u32, &str), Vec<(u32, String)>> = HashMap::new();
    for a in run.attempts.iter().filter(|a| !a.last || a.attempt > 1) {
        if let Some(r) = &a.reason {
            reasons
                .entry((a.worker, a.item.as_str()))
                .or_default()
                .push((a.attempt, r.clone()));
        }
    }
    let mut items: Vec<&ItemDone> = run
        .items
        .iter()
        .filter(|i| i.attempts > 1 && filter.keeps(i.worker, i.status))
        .collect();
    items.sort_by_key(|i| i.ts);
    items
        .into_iter()
        .map(|i| {
            let mut before = reasons
                .remove(&(i.worker, i.item.as_str()))
                .unwrap_or_default();
            before.sort();
            before.retain(|(n, _)| *n < i.attempts);
            RetriedItem {
                dir: dir.clone(),
                item: i.item.clone(),
                status: i.status,
                attempts: i.attempts,
                ms: i.ms,
                worker: i.worker,
                reasons: before.into_iter().map(|(_, r)| r).collect(),
            }
        })
        .collect()
}

fn lost(run: &Run, outcomes: &HashMap<&str, &ItemDone>) -> Vec<LostWorker> {
    let dir = run.dir.display().to_string();
    let done_by = |worker: u32| run.items.iter().filter(|i| i.worker == worker).count() as u32;
    let exit = |worker: u32| run.ends.get(&worker).and_then(|e| e.exit.clone());
    let mut lost = Vec::new();
    let mut named = BTreeSet::new();
    for &Died {
        worker,
        pid,
        requeued,
        ..
    } in &run.died
    {
        named.insert(worker);
        let handed_on = run
            .requeued
            .iter()
            .filter(|(w, _)| *w == worker)
            .map(|(_, item)| {
                let after = outcomes.get(item.as_str());
                HandedOn {
                    item: item.clone(),
                    worker: after.map(|i| i.worker),
                    status: after.map(|i| i.status),
                }
            })
            .collect();
        let stuck = run.stuck.iter().any(|&(w, _)| w == worker);
        lost.push(LostWorker {
            dir: dir.clone(),
            worker,
            pid,
            how: if stuck { Loss::Stuck } else { Loss::Died },
            exit: exit(worker),
            items_done: done_by(worker),
            handed_on,
            requeued,
        });
    }
    for &(worker, pid) in &run.stuck {
        if named.insert(worker) {
            lost.push(LostWorker {
                dir: dir.clone(),
                worker,
                pid,
                how: Loss::Stuck,
                exit: exit(worker),
                items_done: done_by(worker),
                handed_on: Vec::new(),
                requeued: 0,
            });
        }
    }
    for (worker, pid, _) in &run.handshake_failed {
        if named.insert(*worker) {
            lost.push(LostWorker {
                dir: dir.clone(),
                worker: *worker,
                pid: *pid,
                how: Loss::HandshakeFailed,
                exit: exit(*worker),
                items_done: 0,
                handed_on: Vec::new(),
                requeued: 0,
            });
        }
    }
    // A log that stops without a summary, with nothing in master.log to say
    // why (master.log is gone too, or the master was killed as well). An
    // interrupted run's workers are stopped, not lost.
    if !run.interrupted {
        for row in worker_rows(run) {
            let ended_well = run.ends.get(&row.worker).is_some_and(|e| e.finished);
            if !row.finished
                && !ended_well
                && named.insert(row.worker)
                && row.last_end_secs.is_some()
            {
                lost.push(LostWorker {
                    dir: dir.clone(),
                    worker: row.worker,
                    pid: row.pid,
                    how: Loss::NoSummary,
                    exit: row.exit,
                    items_done: row.items,
                    handed_on: Vec::new(),
                    requeued: 0,
                });
            }
        }
    }
    lost.sort_by_key(|l| l.worker);
    lost
}
