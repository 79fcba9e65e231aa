//! Serial and threads mode: the loops run in this process, hosted by
//! [`flagmaster_worker::host`], each one a worker of its own with its own log
//! and connection pool, talking to the drive loop over crossbeam channels.
//! Serial mode is one such loop.

use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use flagmaster_worker::fetch::{Fetcher, WorkerId};
use flagmaster_worker::host::{self, Loop, LoopEnd, Transport};
use flagmaster_worker::log::{self, LogFile};
use flagmaster_worker::protocol::{Command, Event, Item, ItemReport};

use super::collect::{drive, lock, Envelope, Shared};
use super::open_worker_log;
use crate::error::Error;
use crate::plan::Plan;
use crate::report::progress::RunEvent;

/// The channels between the loops of this process and the drive loop.
struct LocalTransport {
    events: Sender<Envelope>,
    /// Commands for each loop, by worker number - 1.
    commands: Vec<Receiver<Command>>,
    /// Each loop's log, by worker number - 1, for its `worker_summary`.
    logs: Vec<Arc<LogFile>>,
}

impl LocalTransport {
    fn send(&self, worker: u32, event: Event) -> bool {
        self.events.send(Envelope::Event { worker, event }).is_ok()
    }
}

impl Transport for LocalTransport {
    fn want(&self, who: &WorkerId) -> Option<Vec<Item>> {
        if !self.send(who.worker, Event::Want { thread: 0 }) {
            return None;
        }
        match self.commands.get(who.worker as usize - 1)?.recv() {
            Ok(Command::Chunk(items)) => Some(items),
            _ => None,
        }
    }

    fn report(&self, who: &WorkerId, report: ItemReport) -> bool {
        self.send(who.worker, Event::Items(vec![report]))
    }

    fn ended(&self, who: &WorkerId, end: LoopEnd) {
        if let Some(tally) = end.tally {
            let summary = tally.summary(end.secs);
            // Before the drive loop hears of it: then the run may end at once.
            if let Some(log) = self.logs.get(who.worker as usize - 1) {
                log::worker_summary(log, who.worker, who.pid, 1, &summary);
            }
            self.send(who.worker, Event::Finished(summary));
        }
        // Also after a panic, so that the drive loop hands on what it held.
        let _ = self.events.send(Envelope::Gone { worker: who.worker });
    }
}

/// Runs `plan.threads` loops in this process until every item is done.
pub fn run(plan: &Plan, fetcher: &Fetcher, collector: &Shared) -> Result<(), Error> {
    let pid = std::process::id();
    let (events_tx, events) = unbounded::<Envelope>();
    let mut commands = Vec::new();
    let mut logs = Vec::new();
    let mut loops = Vec::new();
    for worker in 1..=plan.threads {
        let log = Arc::new(open_worker_log(&plan.log_dir, worker)?);
        let (commands_tx, commands_rx) = unbounded::<Command>();
        commands.push(commands_rx);
        logs.push(Arc::clone(&log));
        let first = {
            let mut collector = lock(collector);
            collector.add_worker(worker, pid, false, Some(Box::new(commands_tx)));
            collector.take_chunk(worker)
        };
        let who = WorkerId {
            worker,
            pid,
            thread: 0,
        };
        loops.push(Loop { who, log, first });
    }
    let transport = Arc::new(LocalTransport {
        events: events_tx,
        commands,
        logs,
    });
    let mut started_any = false;
    for (who, spawned) in host::spawn(fetcher, loops, &transport, |who| {
        format!("worker-{:02}", who.worker)
    }) {
        match spawned {
            Ok(()) => started_any = true,
            Err(e) => {
                // Loops already started are released by the drive loop.
                let mut collector = lock(collector);
                collector.abandon_worker(who.worker);
                collector.report(RunEvent::NotStarted {
                    worker: who.worker,
                    why: format!("(a thread) could not be started: {e}"),
                });
            }
        }
    }
    if !started_any {
        return Err(Error::Spawn("no worker thread could be started".into()));
    }
    drive(collector, events, |_| None);
    Ok(())
}
