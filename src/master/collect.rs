//! The master's bookkeeping and main loop: hands out chunks on demand, folds
//! reports into run statistics, and accounts for every item even when a worker
//! dies or the run is interrupted.
//!
//! The loop never stops early: it runs until every worker has gone (finished or
//! died), so that no report is lost. A `Want` that arrives while the queue is
//! empty but other workers still hold unfinished items is parked rather than
//! answered with `Done`: if one of those workers dies, its items go back to the
//! queue and the parked workers pick them up. No more `Want`s are parked than
//! there are unfinished items, since no more could ever come back; the others
//! are answered `Done` at once.
//!
//! The collector is shared (`Arc<Mutex<_>>`) between the thread that drives the
//! run and the signal watcher, which must be able to stop the workers and print
//! the partial report while the driving thread is blocked, e.g. in serial mode
//! inside a request. The lock is only held to handle one event.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use flagmaster_worker::log::LogFile;
use flagmaster_worker::protocol::{Command, Event, Item, ItemReport, Status, WorkerSummary};
use flagmaster_worker::Tally;

use crate::config::Chunking;
use crate::progress::{self, Progress};

/// How often the main loop looks for stuck workers while no event arrives.
const TICK: Duration = Duration::from_millis(250);

/// Something that can take a command to one worker: a crossbeam sender in
/// threads mode, an `IpcSender` in proc mode.
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
    /// Items handed out and not yet reported, by index.
    outstanding: BTreeMap<u32, Item>,
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
    queue: VecDeque<Item>,
    chunking: Chunking,
    workers: BTreeMap<u32, WorkerState>,
    /// Items handed out and not yet reported, over all workers, and workers
    /// not gone: kept as counts because every event asks for them, and a
    /// walk over 1000 workers per event showed in profiles.
    outstanding: usize,
    live: usize,
    /// Workers waiting for an answer to a `Want`, once per `Want`.
    parked: VecDeque<u32>,
    reports: Vec<Option<ItemReport>>,
    log: Arc<LogFile>,
    /// Set by an interrupt: every `Want` is answered with `Done`.
    stopping: bool,
    /// A worker holding items and silent for this long is stuck.
    stuck_after: Duration,
    progress: Progress,
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
        progress: Progress,
    ) -> Collector {
        // Indexes, not positions: items finished before the run (see
        // `add_finished`) leave gaps in the list of those to fetch.
        let slots = items
            .iter()
            .map(|i| i.index as usize + 1)
            .max()
            .unwrap_or(0);
        let reports = vec![None; slots];
        Collector {
            queue: items.into(),
            chunking,
            workers: BTreeMap::new(),
            outstanding: 0,
            live: 0,
            parked: VecDeque::new(),
            reports,
            log,
            stopping: false,
            stuck_after,
            progress,
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
                outstanding: BTreeMap::new(),
                last_heard: Instant::now(),
                gone: false,
                tally: Tally::default(),
                summary: None,
                exit: None,
            },
        );
        if let Some(old) = replaced {
            self.forget(&old);
        }
    }

    /// Takes a worker's state out of the counts.
    fn forget(&mut self, w: &WorkerState) {
        self.outstanding -= w.outstanding.len();
        if !w.gone {
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
            self.progress.item(&report);
            self.reports[slot] = Some(report);
        }
    }

    /// Forgets a worker that never started, so the loop does not wait for it;
    /// the chunks it was given go back to the queue.
    pub fn abandon_worker(&mut self, worker: u32) {
        if let Some(w) = self.workers.remove(&worker) {
            self.forget(&w);
            self.requeue(w.outstanding.into_values());
        }
    }

    /// Puts unfinished items back at the front of the queue, in list order.
    fn requeue(&mut self, items: impl IntoIterator<Item = Item>) {
        let mut items: Vec<Item> = items.into_iter().collect();
        items.sort_by_key(|i| i.index);
        for item in items.into_iter().rev() {
            self.queue.push_front(item);
        }
    }

    /// The master's log.
    pub fn log(&self) -> &LogFile {
        &self.log
    }

    /// The next chunk for `worker`, remembered as its outstanding work.
    pub fn take_chunk(&mut self, worker: u32) -> Option<Vec<Item>> {
        if self.stopping {
            return None;
        }
        if self.queue.is_empty() {
            return None;
        }
        let size = self.chunking.next(self.queue.len()).min(self.queue.len());
        let chunk: Vec<Item> = self.queue.drain(..size).collect();
        if let Some(w) = self.workers.get_mut(&worker) {
            w.outstanding
                .extend(chunk.iter().map(|item| (item.index, item.clone())));
            self.outstanding += chunk.len();
        }
        Some(chunk)
    }

    pub fn record(&mut self, report: ItemReport) {
        if let Some(w) = self.workers.get_mut(&report.worker) {
            if w.outstanding.remove(&report.index).is_none() {
                // Not ours to count: a stale or duplicate report.
                return;
            }
            self.outstanding -= 1;
            w.tally.items += 1;
            w.tally.bytes += report.bytes;
        }
        self.progress.item(&report);
        if let Some(slot) = self.reports.get_mut(report.index as usize) {
            *slot = Some(report);
        }
    }

    pub fn finished(&mut self, worker: u32, summary: WorkerSummary) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.summary = Some(summary);
        }
    }

    fn handle(&mut self, worker: u32, event: Event) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.last_heard = Instant::now();
        }
        match event {
            Event::Want { .. } => self.parked.push_back(worker),
            // The envelope, not the message, says who sent it.
            Event::Item(mut report) => {
                report.worker = worker;
                self.record(report);
            }
            Event::Items(reports) => {
                for mut report in reports {
                    report.worker = worker;
                    self.record(report);
                }
            }
            Event::Finished(summary) => self.finished(worker, summary),
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
        self.parked.retain(|&p| p != worker);
    }

    /// Records how a gone worker ended and requeues what it did not finish.
    fn settle_gone(&mut self, worker: u32, exit: Option<String>) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.exit = exit;
        let unfinished: Vec<Item> = std::mem::take(&mut w.outstanding).into_values().collect();
        self.outstanding -= unfinished.len();
        let clean = w.summary.is_some() && unfinished.is_empty();
        let exit = w.exit.clone().unwrap_or_else(|| "-".into());
        self.log.line(&[
            ("event", &"worker_end"),
            ("worker", &worker),
            ("pid", &w.pid),
            ("exit", &exit),
            ("finished", &w.summary.is_some()),
            ("items", &w.tally.items),
            ("bytes", &w.tally.bytes),
        ]);
        if !clean && !self.stopping {
            progress::warn(&format!(
                "worker {worker} (pid {}) ended without finishing ({exit}); \
                 {} unfinished items handed to other workers",
                w.pid,
                unfinished.len()
            ));
            self.log.line(&[
                ("event", &"worker_died"),
                ("worker", &worker),
                ("pid", &w.pid),
                ("requeued", &unfinished.len()),
            ]);
        }
        self.requeue(unfinished);
        self.answer_parked();
    }

    /// Answers parked `Want`s: with chunks while there are any, and with `Done`
    /// those beyond the number of items still outstanding (all of them once
    /// nothing is, or the run is stopping). Keeping all of them until the last
    /// item ended meant waking every idle worker at that moment, one futex
    /// wake each: 255 of them at the end of a run with 256 threads.
    fn answer_parked(&mut self) {
        while !self.parked.is_empty() {
            if !self.stopping && self.queue.is_empty() && self.parked.len() <= self.outstanding {
                return;
            }
            let Some(worker) = self.parked.pop_front() else {
                return;
            };
            let command = match self.take_chunk(worker) {
                Some(chunk) => Command::Chunk(chunk),
                None => Command::Done,
            };
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
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.log.line(&[("event", &"interrupted")]);
        for w in self.workers.values().filter(|w| !w.gone) {
            if let Some(tx) = &w.tx {
                tx.send_command(Command::Stop);
            }
        }
        self.answer_parked();
    }

    /// Kills every worker process still running, by pid.
    pub fn kill_processes(&mut self) {
        for w in self.workers.values().filter(|w| w.process && !w.gone) {
            kill(w.pid);
        }
    }

    /// Kills worker processes that hold items but have been silent for longer
    /// than an item may take: their forwarders then report them gone and their
    /// items are handed to others.
    fn kill_stuck(&mut self) {
        let now = Instant::now();
        for w in self.workers.values_mut() {
            let stuck = w.process
                && !w.gone
                && !w.outstanding.is_empty()
                && now.duration_since(w.last_heard) > self.stuck_after;
            if stuck {
                progress::warn(&format!(
                    "worker {} (pid {}) silent for {:?} with items in hand; killing it",
                    w.worker,
                    w.pid,
                    now.duration_since(w.last_heard)
                ));
                self.log.line(&[
                    ("event", &"worker_stuck"),
                    ("worker", &w.worker),
                    ("pid", &w.pid),
                ]);
                kill(w.pid);
                // Once per silence: the kill makes it go away.
                w.last_heard = now;
            }
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    fn live(&self) -> usize {
        self.live
    }

    /// Reports for every item, taken out of the collector: items nobody
    /// reported are errors ("interrupted", or "no worker left"), so no item is
    /// ever silently lost.
    pub fn take_results(&mut self) -> Collected {
        let reason = if self.stopping {
            "interrupted"
        } else {
            "no worker left to fetch it"
        };
        let mut lost: Vec<Item> = self.queue.drain(..).collect();
        for w in self.workers.values_mut() {
            lost.extend(std::mem::take(&mut w.outstanding).into_values());
        }
        self.outstanding = 0;
        for item in lost {
            if let Some(slot) = self.reports.get_mut(item.index as usize) {
                slot.get_or_insert_with(|| ItemReport {
                    index: item.index,
                    name: item.name.clone(),
                    status: Status::Error,
                    http: None,
                    bytes: 0,
                    ms: 0,
                    attempts: 0,
                    reason: Some(reason.into()),
                    blur_ms: None,
                    worker: 0,
                    thread: 0,
                    etag: None,
                    last_modified: None,
                });
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

/// Runs until every worker has gone. `reap` waits for a gone worker's process
/// and tells how it ended, if there is a process to reap.
pub fn drive(
    shared: &Shared,
    events: Receiver<Envelope>,
    mut reap: impl FnMut(u32) -> Option<String>,
) {
    while lock(shared).live() > 0 {
        match events.recv_timeout(TICK) {
            Ok(Envelope::Event { worker, event }) => lock(shared).handle(worker, event),
            Ok(Envelope::Gone { worker }) => {
                lock(shared).mark_gone(worker);
                let exit = reap(worker);
                lock(shared).settle_gone(worker, exit);
            }
            Err(RecvTimeoutError::Timeout) => lock(shared).kill_stuck(),
            // Every sender is held by a worker or its forwarder, and each sends
            // `Gone` before dropping it, so this means every worker has gone.
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// SIGKILL to a child process of ours.
fn kill(pid: u32) {
    // The pid is one of our own children that has not been reaped yet (see
    // `mark_gone`), so it names no other process.
    crate::os::kill(pid);
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
            outstanding: BTreeMap::new(),
            last_heard: Instant::now(),
            gone: true,
            tally: Tally { items, bytes },
            summary: secs.map(|secs| WorkerSummary {
                items,
                bytes,
                secs,
                peak_rss_kb: None,
            }),
            exit: exit.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;
    use flagmaster_worker::protocol::Status;

    use crate::progress::Display;

    fn item(index: u32) -> Item {
        Item {
            index,
            name: format!("N{index}"),
            url: format!("http://127.0.0.1:1/N{index}.jpg"),
            file: format!("N{index}.jpg"),
            ext_from_type: false,
            validators: None,
        }
    }

    fn report(index: u32) -> ItemReport {
        ItemReport {
            index,
            name: format!("N{index}"),
            status: Status::Ok,
            http: Some(200),
            bytes: 10,
            ms: 5,
            attempts: 1,
            reason: None,
            blur_ms: None,
            worker: 0,
            thread: 0,
            etag: None,
            last_modified: None,
        }
    }

    /// What a worker was told, if anything.
    fn told(rx: &Receiver<Command>) -> Option<String> {
        rx.try_recv().ok().map(|c| match c {
            Command::Chunk(items) => format!(
                "chunk {:?}",
                items.iter().map(|i| i.index).collect::<Vec<_>>()
            ),
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn parks_no_more_wants_than_items_that_could_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(LogFile::append(&dir.path().join("master.log")).unwrap());
        let progress = Progress::new(Display::Silent, 2);
        let mut c = Collector::new(
            vec![item(0), item(1)],
            Chunking::Fixed(1),
            log,
            Duration::from_secs(60),
            progress,
        );
        let rx: Vec<Receiver<Command>> = (1..=3)
            .map(|w| {
                let (tx, rx) = unbounded();
                c.add_worker(w, 100 + w, false, Some(Box::new(tx)));
                rx
            })
            .collect();
        let want = || Event::Want { thread: 0 };
        c.handle(1, want());
        c.handle(2, want());
        assert_eq!(told(&rx[0]).as_deref(), Some("chunk [0]"));
        assert_eq!(told(&rx[1]).as_deref(), Some("chunk [1]"));
        // Two items out, one idle worker: it waits, as either item may come back.
        c.handle(3, want());
        assert_eq!(told(&rx[2]), None);
        // Worker 2 is done with its item: one item is out, two workers idle.
        c.handle(2, Event::Item(report(1)));
        c.handle(2, want());
        assert_eq!(
            told(&rx[2]).as_deref(),
            Some("Done"),
            "the longest parked goes"
        );
        assert_eq!(told(&rx[1]), None);
        // Worker 1 dies holding item 0: the worker still parked takes it.
        c.mark_gone(1);
        c.settle_gone(1, Some("signal: 9".into()));
        assert_eq!(told(&rx[1]).as_deref(), Some("chunk [0]"));
        c.handle(2, Event::Item(report(0)));
        c.handle(2, want());
        assert_eq!(told(&rx[1]).as_deref(), Some("Done"));
    }
}
