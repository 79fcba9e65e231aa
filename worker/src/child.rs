//! The entry point of a worker process: the hidden subcommand the master
//! re-executes its own binary with.
//!
//! Handshake: connect to the master's one-shot server, send `Hello` with our
//! own command sender, receive `Setup`. Then [`crate::host`] runs `threads`
//! loops over this process's transport: `Want`s go straight to the master;
//! one pump thread owns the IPC receiver and forwards every answer to a local
//! channel that idle loops take from (every `Want` gets exactly one answer,
//! so it does not matter which idle loop takes which); one reporter thread
//! batches the loops' reports into `Items` messages. When the master
//! disappears the pump notices at once and the process exits, so a killed
//! master leaves no orphan workers behind.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use ipc_channel::ipc::{self, IpcSender};

use crate::fetch::{Fetcher, WorkerId};
use crate::host::{self, Loop, LoopEnd, Transport};
use crate::log::LogFile;
use crate::polite::Gate;
use crate::protocol::{Command, Event, Hello, Item, ItemReport};
use crate::Tally;

/// Name of the hidden subcommand that turns the binary into a worker.
pub const SUBCOMMAND: &str = "__worker";

/// Exit status of a worker whose master went away.
pub const EXIT_MASTER_GONE: i32 = 3;

/// Most reports in one `Items` message, so one message stays small.
const MAX_BATCH: usize = 256;

/// Why a worker process could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot connect to the master: {0}")]
    Connect(#[source] std::io::Error),
    #[error("ipc with the master failed: {0}")]
    Ipc(#[from] ipc_channel::IpcError),
    #[error("cannot create a channel: {0}")]
    Channel(#[source] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("cannot open log {path}: {source}")]
    Log {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot map the politeness region: {0}")]
    Polite(#[source] std::io::Error),
    #[error("cannot start a worker thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("a worker thread panicked")]
    Panicked,
}

/// Fault injection, for tests and for seeing what the master does: the worker
/// whose number this names exits with status 7 before connecting.
pub const EXIT_BEFORE_HELLO_ENV: &str = "FLAGMASTER_INJECT_EXIT_BEFORE_HELLO";
/// Fault injection: `N:K` makes worker N panic after reporting K items.
pub const PANIC_AFTER_ENV: &str = "FLAGMASTER_INJECT_PANIC_AFTER";

fn injected(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// Runs worker `worker` against the master's server `server_name`.
pub fn run(server_name: &str, worker: u32) -> Result<(), ChildError> {
    if injected(EXIT_BEFORE_HELLO_ENV).and_then(|v| v.parse().ok()) == Some(worker) {
        eprintln!("flagmaster worker {worker}: injected exit before hello");
        std::process::exit(7);
    }
    let panic_after: Option<u32> = injected(PANIC_AFTER_ENV).and_then(|v| {
        let (w, k) = v.split_once(':')?;
        (w.parse() == Ok(worker)).then(|| k.parse().ok())?
    });
    let events: IpcSender<Event> =
        IpcSender::connect(server_name.to_string()).map_err(ChildError::Connect)?;
    let (commands_tx, commands) = ipc::channel::<Command>().map_err(ChildError::Channel)?;
    let pid = std::process::id();
    events.send(Event::Hello(Hello {
        worker,
        pid,
        commands: commands_tx,
    }))?;
    let setup = match commands.recv()? {
        Command::Setup(setup) => *setup,
        other => {
            let got = match other {
                Command::Chunk(_) => "items",
                Command::Done => "done",
                Command::Stop | Command::Setup(_) => "stop",
            };
            return Err(ChildError::Protocol(format!(
                "the master sent {got} before the settings"
            )));
        }
    };
    // Before any thread of ours starts (see `reserve_descriptors`).
    crate::reserve_descriptors(64 + crate::FDS_PER_LOOP * setup.threads as usize);
    let log = LogFile::append(&setup.log).map_err(|source| ChildError::Log {
        path: setup.log.display().to_string(),
        source,
    })?;
    if let Some(cpu) = setup.cpu {
        // Before any thread of ours starts, so that they all inherit it. A
        // worker that cannot be pinned still does its work, unpinned.
        match crate::affinity::pin_to(cpu) {
            Ok(()) => log.line(&[
                ("event", &"pinned"),
                ("worker", &worker),
                ("pid", &pid),
                ("cpu", &cpu),
            ]),
            Err(e) => log.line(&[
                ("event", &"not_pinned"),
                ("worker", &worker),
                ("pid", &pid),
                ("cpu", &cpu),
                ("reason", &e),
            ]),
        }
    }
    let mut fetcher = Fetcher::new(setup.fetch.clone(), setup.dest.clone());
    if let Some(path) = &setup.polite {
        let gate = Gate::open(path, worker).map_err(ChildError::Polite)?;
        fetcher = fetcher.with_gate(Arc::new(gate));
    }
    let started = Instant::now();

    let finishing = Arc::new(AtomicBool::new(false));
    let (answers_tx, answers) = crossbeam_channel::unbounded::<Command>();
    {
        let finishing = Arc::clone(&finishing);
        let dest = setup.dest.clone();
        let pump = move || loop {
            match commands.recv() {
                Ok(Command::Stop) => crate::request_stop(),
                Ok(command) => {
                    if answers_tx.send(command).is_err() {
                        return;
                    }
                }
                Err(_) if finishing.load(Ordering::SeqCst) => return,
                Err(e) => {
                    eprintln!("flagmaster worker {worker}: lost the master ({e}); exiting");
                    // Exiting skips the destructors that delete temporary files,
                    // and no master is left to clean up after us.
                    crate::request_stop();
                    let _ = crate::save::remove_leftovers(&dest);
                    std::process::exit(EXIT_MASTER_GONE);
                }
            }
        };
        thread::Builder::new()
            .name(format!("pump-{worker:02}"))
            .spawn(pump)
            .map_err(ChildError::Thread)?;
    }

    // `None` closes the channel: the loops' threads never drop their senders.
    let (reports_tx, reports) = crossbeam_channel::unbounded::<Option<ItemReport>>();
    // One thread sends the reports of all the others, as many as have piled
    // up in one message: when items are small and fast, that is a fraction of
    // the send/receive syscalls and master wake-ups of one message per item;
    // when they are slow, a report still goes at once.
    let reporter = {
        let events = events.clone();
        thread::Builder::new()
            .name(format!("report-{worker:02}"))
            .spawn(move || {
                while let Ok(Some(first)) = reports.recv() {
                    let mut batch = vec![first];
                    let mut closing = false;
                    for next in reports.try_iter().take(MAX_BATCH - 1) {
                        match next {
                            Some(report) => batch.push(report),
                            None => {
                                closing = true;
                                break;
                            }
                        }
                    }
                    if events.send(Event::Items(batch)).is_err() || closing {
                        return;
                    }
                }
            })
            .map_err(ChildError::Thread)?
    };
    let (done_tx, done) = crossbeam_channel::unbounded::<LoopEnd>();
    let transport = Arc::new(IpcTransport {
        events: events.clone(),
        answers,
        reports: reports_tx,
        done: done_tx,
        reported: AtomicU32::new(0),
        panic_after,
    });
    let log = Arc::new(log);
    let mut first_chunks = setup.first_chunks.into_iter();
    let loops = (0..setup.threads)
        .map(|thread| Loop {
            who: WorkerId {
                worker,
                pid,
                thread,
            },
            log: Arc::clone(&log),
            first: first_chunks.next(),
        })
        .collect();
    for (_, spawned) in host::spawn(&fetcher, loops, &transport, |who| {
        format!("worker-{worker:02}-{}", who.thread)
    }) {
        // Without `Finished` the master hands our unfinished items to others.
        spawned.map_err(ChildError::Thread)?;
    }
    let ends: Vec<LoopEnd> = done.iter().take(setup.threads as usize).collect();
    // Every loop has ended: the reporter ends once it has sent what is left.
    transport.close_reports();
    let _ = reporter.join();
    // From here on the master may close our channel at any moment (it does
    // once we finish or fail); that is no reason for the pump to cry foul.
    finishing.store(true, Ordering::SeqCst);
    let mut tally = Tally::default();
    for end in ends {
        tally += end.tally.ok_or(ChildError::Panicked)?;
    }
    let mut summary = tally.summary(started.elapsed().as_secs_f64());
    summary.peak_rss_kb = crate::peak_rss_kb();
    // The log's last line, written before the master hears of it: once it
    // has, the run may end at any moment.
    crate::log::worker_summary(&log, worker, pid, setup.threads, &summary);
    events.send(Event::Finished(summary))?;
    Ok(())
}

/// The loops' side of a worker process's channels: `Want`s go straight to
/// the master, answers come through the pump, reports through the batching
/// reporter.
struct IpcTransport {
    events: IpcSender<Event>,
    answers: crossbeam_channel::Receiver<Command>,
    reports: crossbeam_channel::Sender<Option<ItemReport>>,
    done: crossbeam_channel::Sender<LoopEnd>,
    reported: AtomicU32,
    panic_after: Option<u32>,
}

impl IpcTransport {
    /// Lets the reporter end once it has sent every report before this.
    fn close_reports(&self) {
        let _ = self.reports.send(None);
    }
}

impl Transport for IpcTransport {
    fn want(&self, who: &WorkerId) -> Option<Vec<Item>> {
        self.events.send(Event::Want { thread: who.thread }).ok()?;
        // Every `Want` gets exactly one answer, so it does not matter which
        // idle loop takes which.
        match self.answers.recv() {
            Ok(Command::Chunk(items)) => Some(items),
            _ => None,
        }
    }

    fn report(&self, _who: &WorkerId, report: ItemReport) -> bool {
        let sent = self.reports.send(Some(report)).is_ok();
        let n = self.reported.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) == self.panic_after {
            panic!("injected panic after {n} items");
        }
        sent
    }

    fn ended(&self, _who: &WorkerId, end: LoopEnd) {
        let _ = self.done.send(end);
    }
}
