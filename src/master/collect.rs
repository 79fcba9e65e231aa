//! The master's drive loop and its results: folds worker events into run
//! statistics, answers `Want`s through the [`Queue`], passes what happens to
//! the reporter (bar, `-v` lines, warnings) and to `master.log`, and accounts
//! for every item even when a worker dies or the run is interrupted.
//!
//! The loop never stops early: it runs until every worker has gone (finished or
//! died), so that no report is lost.
//!
//! The collector is shared (`Arc<Mutex<_>>`) between the thread that drives the
//! run and the signal watcher, which must be able to stop the workers and print
//! the partial report while the driving thread is blocked. The lock is only
//! held to handle one event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use flagmaster_worker::log::{LogFile, OrDash, Secs};
use flagmaster_worker::protocol::{Command, Event, Item, ItemReport, WorkerSummary};
use flagmaster_worker::Tally;

use super::queue::Queue;
use crate::plan::Chunking;
use crate::report::progress::{Reporter, RunEvent};

/// How often the main loop looks for stuck workers while no event arrives.
const TICK: Duration = Duration::from_millis(250);

/// Something that can take a command to one worker: a crossbeam sender in
/// this process, an `IpcSender` to a worker process.
pub trait CommandTx: Send {
    /// False when the worker can no longer be reached.
    fn send_command(&self, command: Command) -> bool;
}

impl CommandTx for crossbeam_channel::Sender<Command> {
    fn send_command(&self, command: Command) -> bool {
        self.send(command).is_ok()
    }
}

impl CommandTx for ipc_channel::ipc::IpcSender<Command> {
    fn send_command(&self, command: Command) -> bool {
        self.send(command).is_ok()
    }
}

/// What reaches the main loop from a worker.
#[derive(Debug)]
pub enum Envelope {
    Event {
        worker: u32,
        event: Event,
    },
    /// The worker's channel closed: it finished or died. Nothing follows.
    Gone {
        worker: u32,
    },
}

/// One worker as the master sees it.
pub struct WorkerState {
    pub worker: u32,
    pub pid: u32,
    /// A child process of ours (proc mode), which may be killed by pid.
    process: bool,
    tx: Option<Box<dyn CommandTx>>,
    /// Last time the worker was heard from.
    last_heard: Instant,
    gone: bool,
    /// Totals of the reports received from this worker.
    pub tally: Tally,
    pub summary: Option<WorkerSummary>,
    /// How the worker process ended (proc mode), e.g. `exit status: 0`.
    pub exit: Option<String>,
}

/// The results of a run.
pub struct Collected {
    /// One report per item, in list order.
    pub reports: Vec<ItemReport>,
    pub workers: Vec<WorkerState>,
}

pub type Shared = Arc<Mutex<Collector>>;

pub struct Collector {
    queue: Queue,
    workers: BTreeMap<u32, WorkerState>,
    /// Workers not gone, kept as a count for the same reason as the queue's.
    live: usize,
    reports: Vec<Option<ItemReport>>,
    log: Arc<LogFile>,
    /// A worker holding items and silent for this long is stuck.
    stuck_after: Duration,
    reporter: Reporter,
}

/// Locks the collector. A panic while it was held cannot leave it half-updated
/// in a way that matters more than losing the run, so a poisoned lock is used as is.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Collector> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Collector {
    pub fn new(
        items: Vec<Item>,
        chunking: Chunking,
        log: Arc<LogFile>,
        stuck_after: Duration,
        reporter: Reporter,
    ) -> Collector {
        // Indexes, not positions: items finished before the run (see
        // `add_finished`) leave gaps in the list of those to fetch.
        let slots = items
            .iter()
            .map(|i| i.index as usize + 1)
            .max()
            .unwrap_or(0);
        Collector {
            queue: Queue::new(items, chunking),
            workers: BTreeMap::new(),
            live: 0,
            reports: vec![None; slots],
            log,
            stuck_after,
            reporter,
        }
    }

    pub fn add_worker(
        &mut self,
        worker: u32,
        pid: u32,
        process: bool,
        tx: Option<Box<dyn CommandTx>>,
    ) {
        self.live += 1;
        let replaced = self.workers.insert(
            worker,
            WorkerState {
                worker,
                pid,
                process,
                tx,
                last_heard: Instant::now(),
                gone: false,
                tally: Tally::default(),
                summary: None,
                exit: None,
            },
        );
        if replaced.is_some_and(|old| !old.gone) {
            self.live -= 1;
        }
    }

    /// Adds reports of items that were finished before the run started (a
    /// re-run's skipped files), so that the results hold every item of the
    /// list, in order. They belong to no worker.
    pub fn add_finished(&mut self, reports: Vec<ItemReport>) {
        for report in reports {
            let slot = report.index as usize;
            if slot >= self.reports.len() {
                self.reports.resize(slot + 1, None);
            }
            self.reporter.report_event(RunEvent::Item(&report));
            self.reports[slot] = Some(report);
        }
    }

    /// Forgets a worker that never started, so the loop does not wait for it;
    /// the chunks it was given go back to the queue.
    pub fn abandon_worker(&mut self, worker: u32) {
        if let Some(w) = self.workers.remove(&worker) {
            if !w.gone {
                self.live -= 1;
            }
            self.queue.release(worker);
        }
    }

    /// The master's log.
    pub fn log(&self) -> &LogFile {
        &self.log
    }

    /// Passes something that happened to the reporter.
    pub fn report(&mut self, event: RunEvent) {
        self.reporter.report_event(event);
    }

    /// The next chunk for `worker`, remembered as its outstanding work.
    pub fn take_chunk(&mut self, worker: u32) -> Option<Vec<Item>> {
        self.queue.take_chunk(worker)
    }

    fn record(&mut self, worker: u32, mut report: ItemReport) {
        // The envelope, not the message, says who sent it.
        report.worker = worker;
        if !self.queue.finish(worker, report.index) {
            return;
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.tally.count(&report);
        }
        if report.disk_full && !self.queue.is_closed() {
            // Said once: later reports of a full disk change nothing.
            self.queue.close();
            self.log.line(&[
                ("event", &"disk_full"),
                ("worker", &worker),
                ("item", &report.name),
            ]);
            self.reporter.report_event(RunEvent::DiskFull(&report.name));
        }
        self.reporter.report_event(RunEvent::Item(&report));
        if let Some(slot) = self.reports.get_mut(report.index as usize) {
            *slot = Some(report);
        }
    }

    fn handle(&mut self, worker: u32, event: Event) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_heard = Instant::now();
        }
        match event {
            Event::Want { .. } => self.queue.park(worker),
            Event::Items(reports) => {
                for report in reports {
                    self.record(worker, report);
                }
            }
            Event::Finished(summary) => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.summary = Some(summary);
                }
            }
            // A Hello after the handshake is a protocol slip; ignore it.
            Event::Hello(_) => {}
        }
        self.answer_parked();
    }

    /// Marks `worker` gone, before it is reaped: from now on it is never
    /// signalled by pid, since its pid may be reused once reaped.
    fn mark_gone(&mut self, worker: u32) {
        if let Some(w) = self.workers.get_mut(&worker) {
            if !w.gone {
                self.live -= 1;
            }
            w.gone = true;
            w.tx = None;
        }
    }

    /// Records how a gone worker ended and requeues what it did not finish.
    fn settle_gone(&mut self, worker: u32, exit: Option<String>) {
        let unfinished = self.queue.release(worker);
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.exit = exit;
        let clean = w.summary.is_some() && unfinished.is_empty();
        let exit = w.exit.clone().unwrap_or_else(|| "-".into());
        // The figures of the reports received; the time is the worker's own.
        let t = &w.tally;
        self.log.line(&[
            ("event", &"worker_end"),
            ("worker", &worker),
            ("pid", &w.pid),
            ("exit", &exit),
            ("finished", &w.summary.is_some()),
            ("items", &t.items),
            ("ok", &t.ok),
            ("not_found", &t.not_found),
            ("error", &t.error),
            ("retries", &t.retries),
            ("bytes", &t.bytes),
            ("secs", &OrDash(w.summary.as_ref().map(|s| Secs(s.secs)))),
        ]);
        if !clean && !self.queue.is_stopping() {
            self.log.line(&[
                ("event", &"worker_died"),
                ("worker", &worker),
                ("pid", &w.pid),
                ("requeued", &unfinished.len()),
            ]);
            for item in &unfinished {
                self.log.line(&[
                    ("event", &"requeued"),
                    ("worker", &worker),
                    ("item", &item.name),
                ]);
            }
            let event = RunEvent::WorkerLost {
                worker,
                pid: w.pid,
                exit: &exit,
                handed_on: unfinished.len(),
            };
            self.reporter.report_event(event);
        }
        self.answer_parked();
    }

    fn answer_parked(&mut self) {
        while let Some((worker, command)) = self.queue.next_answer() {
            // A worker that cannot be reached has its `Gone` on the way, which
            // requeues whatever it held.
            if let Some(tx) = self.workers.get(&worker).and_then(|w| w.tx.as_ref()) {
                tx.send_command(command);
            }
        }
    }

    /// First stage of an interrupt: no more work is handed out, and every
    /// worker is told to abandon what it is doing.
    pub fn interrupt(&mut self) {
        if self.queue.is_stopping() {
            return;
        }
        self.queue.stop();
        self.log.line(&[("event", &"interrupted")]);
        for w in self.workers.values().filter(|w| !w.gone) {
            if let Some(tx) = &w.tx {
                tx.send_command(Command::Stop);
            }
        }
        self.answer_parked();
    }

    /// Kills every worker process still running, by pid: the second stage
    /// of an interrupt. Under the lock, so that no pid is signalled once
    /// [`Collector::mark_gone`] let it be reaped.
    pub fn kill_processes(&self) {
        for w in self.workers.values().filter(|w| w.process && !w.gone) {
            super::reap::kill(w.pid);
        }
    }

    /// Worker processes that hold items but have been silent for longer than
    /// an item may take: once killed, their forwarders report them gone and
    /// their items are handed to others. Each is named once per silence.
    fn stuck(&mut self) -> Vec<u32> {
        let now = Instant::now();
        let mut stuck = Vec::new();
        for w in self.workers.values_mut() {
            let silent = now.duration_since(w.last_heard);
            if w.process && !w.gone && self.queue.held_by(w.worker) > 0 && silent > self.stuck_after
            {
                self.log.line(&[
                    ("event", &"worker_stuck"),
                    ("worker", &w.worker),
                    ("pid", &w.pid),
                ]);
                let event = RunEvent::WorkerStuck {
                    worker: w.worker,
                    pid: w.pid,
                    silent,
                };
                self.reporter.report_event(event);
                w.last_heard = now;
                stuck.push(w.pid);
            }
        }
        stuck
    }

    pub fn is_stopping(&self) -> bool {
        self.queue.is_stopping()
    }

    /// Reports for every item, taken out of the collector: items nobody
    /// reported end as errors ("interrupted", or "no worker left"), so no item
    /// is ever silently lost.
    pub fn take_results(&mut self) -> Collected {
        let reason = if self.queue.is_stopping() {
            INTERRUPTED
        } else if self.queue.is_closed() {
            flagmaster_worker::save::DISK_FULL
        } else {
            "no worker left to fetch it"
        };
        for item in self.queue.take_unfinished() {
            if let Some(slot) = self.reports.get_mut(item.index as usize) {
                slot.get_or_insert_with(|| ItemReport::unfinished(&item, reason));
            }
        }
        Collected {
            reports: std::mem::take(&mut self.reports)
                .into_iter()
                .flatten()
                .collect(),
            workers: std::mem::take(&mut self.workers).into_values().collect(),
        }
    }
}

/// The reason of an item the run stopped before it finished.
pub const INTERRUPTED: &str = "interrupted";

/// Runs until every worker has gone. `reap` waits for a gone worker's process
/// and tells how it ended, if there is a process to reap.
pub fn drive(
    shared: &Shared,
    events: Receiver<Envelope>,
    mut reap: impl FnMut(u32) -> Option<String>,
) {
    while lock(shared).live > 0 {
        match events.recv_timeout(TICK) {
            Ok(Envelope::Event { worker, event }) => lock(shared).handle(worker, event),
            Ok(Envelope::Gone { worker }) => {
                lock(shared).mark_gone(worker);
                let exit = reap(worker);
                lock(shared).settle_gone(worker, exit);
            }
            Err(RecvTimeoutError::Timeout) => {
                // Killed here, by this thread, which alone reaps: none of
                // them can have been reaped since `stuck` saw it running.
                let stuck = lock(shared).stuck();
                for pid in stuck {
                    super::reap::kill(pid);
                }
            }
            // Every sender is held by a worker or its forwarder, and each sends
            // `Gone` before dropping it, so this means every worker has gone.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

#[cfg(test)]
impl WorkerState {
    pub fn for_test(
        worker: u32,
        pid: u32,
        items: u32,
        bytes: u64,
        secs: Option<f64>,
        exit: Option<&str>,
    ) -> WorkerState {
        WorkerState {
            worker,
            pid,
            process: false,
            tx: None,
            last_heard: Instant::now(),
            gone: true,
            tally: Tally {
                items,
                bytes,
                ..Tally::default()
            },
            summary: secs.map(|secs| WorkerSummary {
                items,
                bytes,
                secs,
                ..WorkerSummary::default()
            }),
            exit: exit.map(str::to_string),
        }
    }
}
