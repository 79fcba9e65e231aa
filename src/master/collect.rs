//! The master's bookkeeping and main loop: hands out chunks on demand, folds
//! reports into run statistics, and accounts for every item even when a worker
//! dies.
//!
//! The loop never stops early: it runs until every worker has gone (finished or
//! died), so that no report is lost. A `Want` that arrives while the queue is
//! empty but other workers still hold unfinished items is parked rather than
//! answered with `Done`: if one of those workers dies, its items go back to the
//! queue and the parked workers pick them up.

use std::collections::{BTreeMap, VecDeque};

use crossbeam_channel::Receiver;
use flagmaster_worker::log::LogFile;
use flagmaster_worker::protocol::{Command, Event, Item, ItemReport, Status, WorkerSummary};
use flagmaster_worker::Tally;

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
    tx: Option<Box<dyn CommandTx>>,
    /// Items handed out and not yet reported, by index.
    outstanding: BTreeMap<u32, Item>,
    /// Totals of the reports received from this worker.
    pub tally: Tally,
    pub summary: Option<WorkerSummary>,
    /// How the worker process ended (proc mode), e.g. `exit status: 0`.
    pub exit: Option<String>,
}

/// The statistics of a finished run.
pub struct Collected {
    /// One report per item, in list order.
    pub reports: Vec<ItemReport>,
    pub workers: Vec<WorkerState>,
}

pub struct Collector<'a> {
    queue: VecDeque<Vec<Item>>,
    workers: BTreeMap<u32, WorkerState>,
    /// Workers waiting for an answer to a `Want`, once per `Want`.
    parked: Vec<u32>,
    reports: Vec<Option<ItemReport>>,
    log: &'a LogFile,
}

impl<'a> Collector<'a> {
    pub fn new(items: Vec<Item>, chunk_size: usize, log: &'a LogFile) -> Collector<'a> {
        let reports = vec![None; items.len()];
        let mut queue = VecDeque::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            queue.push_back(items.by_ref().take(chunk_size.max(1)).collect());
        }
        Collector {
            queue,
            workers: BTreeMap::new(),
            parked: Vec::new(),
            reports,
            log,
        }
    }

    pub fn add_worker(&mut self, worker: u32, pid: u32, tx: Option<Box<dyn CommandTx>>) {
        self.workers.insert(
            worker,
            WorkerState {
                worker,
                pid,
                tx,
                outstanding: BTreeMap::new(),
                tally: Tally::default(),
                summary: None,
                exit: None,
            },
        );
    }

    /// Forgets a worker that never started, so the loop does not wait for it.
    pub fn abandon_worker(&mut self, worker: u32) {
        self.workers.remove(&worker);
    }

    /// The master's log.
    pub fn log(&self) -> &LogFile {
        self.log
    }

    /// The next chunk for `worker`, remembered as its outstanding work.
    pub fn take_chunk(&mut self, worker: u32) -> Option<Vec<Item>> {
        let chunk = self.queue.pop_front()?;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.outstanding
                .extend(chunk.iter().map(|item| (item.index, item.clone())));
        }
        Some(chunk)
    }

    pub fn record(&mut self, report: ItemReport) {
        if let Some(w) = self.workers.get_mut(&report.worker) {
            if w.outstanding.remove(&report.index).is_none() {
                // Not ours to count: a stale or duplicate report.
                return;
            }
            w.tally.items += 1;
            w.tally.bytes += report.bytes;
        }
        if let Some(slot) = self.reports.get_mut(report.index as usize) {
            *slot = Some(report);
        }
    }

    pub fn finished(&mut self, worker: u32, summary: WorkerSummary) {
        if let Some(w) = self.workers.get_mut(&worker) {
            w.summary = Some(summary);
        }
    }

    /// Runs until every worker has gone. `on_gone` reaps a worker and tells how
    /// it ended (its exit status), if there is a process to reap.
    pub fn drive(
        &mut self,
        events: Receiver<Envelope>,
        mut on_gone: impl FnMut(u32) -> Option<String>,
    ) {
        let mut live = self.workers.len();
        while live > 0 {
            // Every sender is held by a worker or its forwarder, and each of them
            // sends `Gone` before it drops its sender, so this cannot disconnect
            // before `live` reaches 0; if it does anyway, stop rather than spin.
            let Ok(envelope) = events.recv() else { break };
            match envelope {
                Envelope::Event { worker, event } => match event {
                    Event::Want { .. } => {
                        self.parked.push(worker);
                        self.answer_parked();
                    }
                    Event::Item(mut report) => {
                        // The envelope, not the message, says who sent it.
                        report.worker = worker;
                        self.record(report);
                        self.answer_parked();
                    }
                    Event::Finished(summary) => self.finished(worker, summary),
                    // A Hello after the handshake is a protocol slip; ignore it.
                    Event::Hello(_) => {}
                },
                Envelope::Gone { worker } => {
                    live -= 1;
                    let exit = on_gone(worker);
                    self.gone(worker, exit);
                    self.answer_parked();
                }
            }
        }
    }

    fn gone(&mut self, worker: u32, exit: Option<String>) {
        let Some(w) = self.workers.get_mut(&worker) else {
            return;
        };
        w.tx = None;
        w.exit = exit;
        self.parked.retain(|&p| p != worker);
        let unfinished: Vec<Item> = std::mem::take(&mut w.outstanding).into_values().collect();
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
        if !clean {
            eprintln!(
                "flagmaster: worker {worker} (pid {}) ended without finishing ({exit}); \
                 {} unfinished items handed to other workers",
                w.pid,
                unfinished.len()
            );
            self.log.line(&[
                ("event", &"worker_died"),
                ("worker", &worker),
                ("pid", &w.pid),
                ("requeued", &unfinished.len()),
            ]);
        }
        if !unfinished.is_empty() {
            self.queue.push_front(unfinished);
        }
    }

    /// Answers parked `Want`s: with chunks while there are any, with `Done` once
    /// nothing is queued or outstanding anywhere.
    fn answer_parked(&mut self) {
        while !self.parked.is_empty() {
            let all_quiet = self.workers.values().all(|w| w.outstanding.is_empty());
            if self.queue.is_empty() && !all_quiet {
                return;
            }
            let worker = self.parked.remove(0);
            let command = match self.take_chunk(worker) {
                Some(chunk) => Command::Chunk(chunk),
                None => Command::Done,
            };
            let reached = self
                .workers
                .get(&worker)
                .and_then(|w| w.tx.as_ref())
                .is_some_and(|tx| tx.send_command(command));
            if !reached {
                // Its `Gone` is on the way and will requeue what it held.
                continue;
            }
        }
    }

    /// Reports for every item: items nobody reported (every worker died) are
    /// errors, so no item is ever silently lost.
    pub fn finish(mut self) -> Collected {
        let mut lost: Vec<Item> = self.queue.drain(..).flatten().collect();
        for w in self.workers.values_mut() {
            lost.extend(std::mem::take(&mut w.outstanding).into_values());
        }
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
                    reason: Some("no worker left to fetch it".into()),
                    worker: 0,
                    thread: 0,
                });
            }
        }
        Collected {
            reports: self.reports.into_iter().flatten().collect(),
            workers: self.workers.into_values().collect(),
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
            tx: None,
            outstanding: BTreeMap::new(),
            tally: Tally { items, bytes },
            summary: secs.map(|secs| WorkerSummary { items, bytes, secs }),
            exit: exit.map(str::to_string),
        }
    }
}
