//! Threads mode: N worker threads in this process, each fed and reporting over
//! crossbeam channels, each with its own HTTP agent (connection pool).

use std::thread;
use std::time::Instant;

use crossbeam_channel::{unbounded, Sender};
use flagmaster_worker::fetch::WorkerId;
use flagmaster_worker::polite::Region;
use flagmaster_worker::protocol::{Command, Event};
use flagmaster_worker::run_loop;

use super::collect::{drive, lock, Envelope, Shared};
use super::open_worker_log;
use crate::config::RunConfig;
use crate::error::Error;

/// Sends `Gone` when a worker thread ends, by returning or by panicking, so the
/// main loop always learns about it and can requeue what the thread held.
struct GoneGuard {
    worker: u32,
    events: Sender<Envelope>,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        let _ = self.events.send(Envelope::Gone {
            worker: self.worker,
        });
    }
}

pub fn run(config: &RunConfig, collector: &Shared, polite: Option<&Region>) -> Result<(), Error> {
    let fetcher = super::local_fetcher(config, polite);
    let pid = std::process::id();
    let (events_tx, events) = unbounded::<Envelope>();
    let mut started_any = false;
    // Everything a thread needs is made before the first one starts. Once
    // threads run, the main thread shares the cores with them: opening the
    // logs between the spawns took 11 to 37 ms of the 38 to 73 ms it took to
    // start 256 threads, and every later thread started that much later.
    let ready = (1..=config.threads)
        .map(|worker| {
            Ok((
                worker,
                open_worker_log(&config.log_dir, worker)?,
                fetcher.for_thread(),
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    for (worker, log, fetcher) in ready {
        let (commands_tx, commands) = unbounded::<Command>();
        let mut first = {
            let mut collector = lock(collector);
            collector.add_worker(worker, pid, false, Some(Box::new(commands_tx)));
            // Given now, so the thread starts at once instead of waiting for
            // the main loop, which runs only once every thread is spawned.
            collector.take_chunk(worker)
        };
        let events = events_tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("worker-{worker:02}"))
            .spawn(move || {
                let _gone = GoneGuard {
                    worker,
                    events: events.clone(),
                };
                let who = WorkerId {
                    worker,
                    pid,
                    thread: 0,
                };
                let started = Instant::now();
                let send = |event| events.send(Envelope::Event { worker, event }).is_ok();
                let next_chunk = || {
                    if let Some(chunk) = first.take() {
                        return Some(chunk);
                    }
                    if !send(Event::Want { thread: 0 }) {
                        return None;
                    }
                    match commands.recv() {
                        Ok(Command::Chunk(items)) => Some(items),
                        _ => None,
                    }
                };
                let tally = run_loop(&fetcher, &who, &log, next_chunk, |r| send(Event::Item(r)));
                send(Event::Finished(
                    tally.summary(started.elapsed().as_secs_f64()),
                ));
                // Gone before the end: the run is over for this thread.
                drop(_gone);
                flagmaster_worker::end_thread()
            });
        match spawned {
            // Not joined: a finished thread ends itself (see `end_thread`).
            Ok(_) => started_any = true,
            Err(e) => {
                // Threads already started are released by the drained loop below.
                lock(collector).abandon_worker(worker);
                crate::progress::warn(&format!("cannot start worker thread {worker}: {e}"));
            }
        }
    }
    drop(events_tx);
    if !started_any {
        return Err(Error::Spawn("no worker thread could be started".into()));
    }
    drive(collector, events, |_| None);
    Ok(())
}
