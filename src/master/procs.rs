//! Proc mode: N worker processes, the same binary re-executed with the hidden
//! worker subcommand, fed and reporting over ipc-channel.
//!
//! Handshake (as in ipc-channel's own tests): for each worker the master
//! creates an `IpcOneShotServer`, passes its name on the child's command line,
//! and `accept()`s the child's `Hello`, which carries the sender for commands.
//! `accept()` has no timeout and blocks forever if the child dies before it
//! connects, so it runs on a helper thread while the master watches the child
//! with `try_wait()` under a deadline, and releases a stuck helper by connecting
//! to the server itself.
//!
//! After the handshake a forwarder thread per child moves its events into the
//! one crossbeam channel the main loop reads; when the child's channel
//! disconnects (it exited, crashed or was killed) the forwarder sends `Gone`.
//! The global ipc-channel ROUTER is deliberately not used: it silently drops
//! closed routes and would hide a dead worker.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command as Process, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use flagmaster_worker::affinity::{allowed_cpus, cpu_for};
use flagmaster_worker::child::SUBCOMMAND;
use flagmaster_worker::polite::Region;
use flagmaster_worker::protocol::{Command, Event, Hello, WorkerSetup};
use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};

use super::collect::{drive, lock, Envelope, Shared};
use super::reap::{describe, kill_all, reap};
use super::worker_log_path;
use crate::error::Error;
use crate::plan::Plan;
use crate::report::progress::RunEvent;

/// How long all workers together may take to start and say hello.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(20);

type Accepted = Result<(IpcReceiver<Event>, Event), ipc_channel::IpcError>;

struct Pending {
    child: Child,
    server_name: String,
}

pub fn run(plan: &Plan, collector: &Shared, polite: Option<&Region>) -> Result<(), Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Spawn(format!("cannot find my own executable: {e}")))?;
    let (accepted_tx, accepted) = unbounded::<(u32, Accepted)>();
    let (events_tx, events) = unbounded::<Envelope>();
    let cpus = if plan.pin {
        allowed_cpus().unwrap_or_else(|e| {
            crate::report::progress::warn(&format!(
                "--pin: cannot read the CPUs this process may use ({e}); workers run unpinned"
            ));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let mut hs = Handshakes {
        plan,
        collector,
        polite,
        cpus,
        events: events_tx,
        pending: Vec::new(),
        children: Vec::new(),
    };
    for worker in 1..=plan.procs {
        match spawn(&exe, plan, worker, &accepted_tx) {
            Ok(p) => {
                collector_log(collector, "spawn", worker, p.child.id());
                hs.pending.push((worker, p));
            }
            Err(e) => {
                kill_all(hs.pending.into_iter().map(|(_, p)| p.child));
                kill_all(hs.children.into_iter().map(|(_, c)| c));
                return Err(e);
            }
        }
        // A worker is ready a few ms after its spawn, while the next ones are
        // still being spawned; setting it up now lets it start fetching
        // instead of waiting ~10 ms for the last spawn.
        while let Ok((worker, result)) = accepted.try_recv() {
            hs.settle(worker, result);
        }
    }
    drop(accepted_tx);

    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    while !hs.pending.is_empty() {
        match accepted.recv_timeout(Duration::from_millis(20)) {
            Ok((worker, result)) => hs.settle(worker, result),
            Err(RecvTimeoutError::Timeout) => {
                let timed_out = Instant::now() >= deadline;
                let mut i = 0;
                while i < hs.pending.len() {
                    let exited = matches!(hs.pending[i].1.child.try_wait(), Ok(Some(_)));
                    if exited || timed_out {
                        let (worker, mut p) = hs.pending.swap_remove(i);
                        // Release the helper thread blocked in accept().
                        let _ = IpcSender::<Event>::connect(p.server_name.clone());
                        let why = if exited {
                            "exited before connecting"
                        } else {
                            "did not connect in time"
                        };
                        handshake_failed(collector, worker, &mut p.child, why);
                    } else {
                        i += 1;
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let Handshakes {
        events: events_tx,
        mut children,
        ..
    } = hs;
    drop(events_tx);
    if children.is_empty() {
        return Err(Error::Spawn(format!(
            "none of the {} worker processes completed the handshake (see {})",
            plan.procs,
            plan.log_dir.display()
        )));
    }

    drive(collector, events, |worker| {
        let pos = children.iter().position(|(w, _)| *w == worker)?;
        let (_, mut child) = children.swap_remove(pos);
        let exit = describe(reap(&mut child));
        if let Some(region) = polite {
            // A process killed mid-request never dropped its per-host passes.
            let units = region.gate.reclaim(worker);
            if units > 0 {
                lock(collector).log().line(&[
                    ("event", &"per_host_reclaimed"),
                    ("worker", &worker),
                    ("units", &units),
                ]);
            }
        }
        Some(exit)
    });
    kill_all(children.into_iter().map(|(_, c)| c));
    Ok(())
}

/// Workers spawned and not yet set up, and those set up.
struct Handshakes<'a> {
    plan: &'a Plan,
    collector: &'a Shared,
    polite: Option<&'a Region>,
    /// The CPUs to pin the workers to in turn (`--pin`); empty: no pinning.
    cpus: Vec<usize>,
    events: Sender<Envelope>,
    pending: Vec<(u32, Pending)>,
    children: Vec<(u32, Child)>,
}

impl Handshakes<'_> {
    /// Sets up a worker whose connection was accepted, or gives up on it.
    fn settle(&mut self, worker: u32, result: Accepted) {
        let Some(pos) = self.pending.iter().position(|(w, _)| *w == worker) else {
            return;
        };
        let (_, mut p) = self.pending.swap_remove(pos);
        let collector = self.collector;
        match result {
            Ok((receiver, Event::Hello(hello))) if hello.worker == worker => {
                let cpu = cpu_for(worker, &self.cpus);
                if greet(
                    self.plan,
                    collector,
                    hello,
                    receiver,
                    &self.events,
                    self.polite,
                    cpu,
                ) {
                    self.children.push((worker, p.child));
                } else {
                    handshake_failed(collector, worker, &mut p.child, "setup not delivered");
                }
            }
            Ok(_) => handshake_failed(collector, worker, &mut p.child, "bad hello"),
            Err(e) => handshake_failed(collector, worker, &mut p.child, &e.to_string()),
        }
    }
}

/// Starts worker `worker` with its stderr going to its log file (so a panic
/// message is never lost), and a helper thread accepting its connection.
fn spawn(
    exe: &std::path::Path,
    plan: &Plan,
    worker: u32,
    accepted: &Sender<(u32, Accepted)>,
) -> Result<Pending, Error> {
    let (server, server_name) = IpcOneShotServer::<Event>::new()
        .map_err(|e| Error::Spawn(format!("cannot create an IPC server: {e}")))?;
    let log_path = worker_log_path(&plan.log_dir, worker);
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| Error::Unwritable {
            what: "log",
            path: log_path.clone(),
            source,
        })?;
    let child = Process::new(exe)
        .arg(SUBCOMMAND)
        .arg("--server")
        .arg(&server_name)
        .arg("--worker")
        .arg(worker.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        // Its own process group: a terminal's Ctrl-C reaches only the master,
        // which stops the workers over IPC (and by pid if they do not listen).
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Spawn(format!("cannot start {}: {e}", exe.display())))?;
    let accepted = accepted.clone();
    thread::Builder::new()
        .name(format!("accept-{worker:02}"))
        .spawn(move || {
            let _ = accepted.send((worker, server.accept()));
        })
        .map_err(|e| Error::Spawn(format!("cannot start a thread: {e}")))?;
    Ok(Pending { child, server_name })
}

/// Sends the worker its setup and starts forwarding its events. False if the
/// worker could not be reached.
fn greet(
    plan: &Plan,
    collector: &Shared,
    hello: Hello,
    receiver: IpcReceiver<Event>,
    events: &Sender<Envelope>,
    polite: Option<&Region>,
    cpu: Option<usize>,
) -> bool {
    let worker = hello.worker;
    let first_chunks = {
        let mut collector = lock(collector);
        let tx = Box::new(hello.commands.clone());
        collector.add_worker(worker, hello.pid, true, Some(tx));
        (0..plan.threads)
            .map_while(|_| collector.take_chunk(worker))
            .collect()
    };
    let setup = Box::new(WorkerSetup {
        worker,
        threads: plan.threads,
        dest: plan.dest.clone(),
        log: worker_log_path(&plan.log_dir, worker),
        fetch: plan.fetch.clone(),
        polite: polite.map(|r| r.path().to_path_buf()),
        cpu,
        first_chunks,
    });
    if hello.commands.send(Command::Setup(setup)).is_err() {
        lock(collector).abandon_worker(worker);
        return false;
    }
    collector_log(collector, "hello", worker, hello.pid);
    let events = events.clone();
    let forwarder = thread::Builder::new()
        .name(format!("forward-{worker:02}"))
        .spawn(move || {
            // Messages sent before a worker dies are still delivered; then recv
            // fails with Disconnected.
            while let Ok(event) = receiver.recv() {
                if events.send(Envelope::Event { worker, event }).is_err() {
                    return;
                }
            }
            let _ = events.send(Envelope::Gone { worker });
        });
    if forwarder.is_err() {
        lock(collector).abandon_worker(worker);
        return false;
    }
    true
}

fn collector_log(collector: &Shared, event: &str, worker: u32, pid: u32) {
    lock(collector)
        .log()
        .line(&[("event", &event), ("worker", &worker), ("pid", &pid)]);
}

fn handshake_failed(collector: &Shared, worker: u32, child: &mut Child, why: &str) {
    let _ = child.kill();
    let status = describe(reap(child));
    let mut collector = lock(collector);
    collector.report(RunEvent::NotStarted {
        worker,
        why: format!("(pid {}) failed to start: {why} ({status})", child.id()),
    });
    collector.log().line(&[
        ("event", &"handshake_failed"),
        ("worker", &worker),
        ("pid", &child.id()),
        ("why", &why),
        ("exit", &status),
    ]);
}
