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
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use flagmaster_worker::affinity::{allowed_cpus, cpu_for};
use flagmaster_worker::child::SUBCOMMAND;
use flagmaster_worker::polite::Region;
use flagmaster_worker::protocol::{Command, Event, Hello, WorkerSetup};
use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};

use super::collect::{drive, lock, Envelope, Shared};
use super::worker_log_path;
use crate::config::RunConfig;
use crate::error::Error;

/// How long all workers together may take to start and say hello.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(20);
/// How long a worker whose channel closed may take to exit before it is killed.
const REAP_DEADLINE: Duration = Duration::from_secs(2);

type Accepted = Result<(IpcReceiver<Event>, Event), ipc_channel::IpcError>;

struct Pending {
    child: Child,
    server_name: String,
}

pub fn run(config: &RunConfig, collector: &Shared, polite: Option<&Region>) -> Result<(), Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Spawn(format!("cannot find my own executable: {e}")))?;
    let (accepted_tx, accepted) = unbounded::<(u32, Accepted)>();
    let (events_tx, events) = unbounded::<Envelope>();
    let cpus = if config.pin {
        allowed_cpus().unwrap_or_else(|e| {
            crate::progress::warn(&format!(
                "--pin: cannot read the CPUs this process may use ({e}); workers run unpinned"
            ));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let mut hs = Handshakes {
        config,
        collector,
        polite,
        cpus,
        events: events_tx,
        pending: Vec::new(),
        children: Vec::new(),
    };
    for worker in 1..=config.procs {
        match spawn(&exe, config, worker, &accepted_tx) {
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
            config.procs,
            config.log_dir.display()
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
    config: &'a RunConfig,
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
                    self.config,
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
    config: &RunConfig,
    worker: u32,
    accepted: &Sender<(u32, Accepted)>,
) -> Result<Pending, Error> {
    let (server, server_name) = IpcOneShotServer::<Event>::new()
        .map_err(|e| Error::Spawn(format!("cannot create an IPC server: {e}")))?;
    let log_path = worker_log_path(&config.log_dir, worker);
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
    config: &RunConfig,
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
        (0..config.threads)
            .map_while(|_| collector.take_chunk(worker))
            .collect()
    };
    let setup = Box::new(WorkerSetup {
        worker,
        threads: config.threads,
        dest: config.dest.clone(),
        log: worker_log_path(&config.log_dir, worker),
        fetch: config.fetch.clone(),
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
    crate::progress::warn(&format!(
        "worker {worker} (pid {}) failed to start: {why} ({status})",
        child.id()
    ));
    lock(collector).log().line(&[
        ("event", &"handshake_failed"),
        ("worker", &worker),
        ("pid", &child.id()),
        ("why", &why),
        ("exit", &status),
    ]);
}

/// Waits up to [`REAP_DEADLINE`] for `child` to exit, then kills it.
///
/// A worker's channel closes while its process is still exiting, so the
/// first look usually finds it running, and the last worker's exit is the end
/// of the run: the wait ends the moment the child exits (see [`ExitWatch`]).
fn reap(child: &mut Child) -> std::io::Result<ExitStatus> {
    let watch = ExitWatch::new(child);
    reap_with(child, watch, REAP_DEADLINE)
}

fn reap_with(
    child: &mut Child,
    mut watch: ExitWatch,
    patience: Duration,
) -> std::io::Result<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait();
        }
        watch.wait(deadline);
    }
}

/// Waits for a child process to exit without reaping it.
///
/// On Linux it polls a pidfd, which becomes readable the moment the child
/// exits. Elsewhere, or where pidfds are refused (kernels before 5.3, some
/// sandboxes), it pauses, starting at 50 µs and doubling up to 5 ms: the
/// master used to pause a fixed 5 ms, which made every proc run that much
/// longer, and the doubling pauses still left a worker unreaped for a median
/// of 0.18 ms (up to 1.8 ms) after it had exited.
struct ExitWatch {
    #[cfg(target_os = "linux")]
    pidfd: Option<crate::os::PidFd>,
    pause: Duration,
}

impl ExitWatch {
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn new(child: &Child) -> ExitWatch {
        ExitWatch {
            #[cfg(target_os = "linux")]
            pidfd: crate::os::PidFd::open(child.id()),
            ..ExitWatch::pausing()
        }
    }

    /// Without a pidfd: pauses only.
    fn pausing() -> ExitWatch {
        ExitWatch {
            #[cfg(target_os = "linux")]
            pidfd: None,
            pause: Duration::from_micros(50),
        }
    }

    /// Returns when the child may have exited, or at `deadline` at the latest.
    fn wait(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        #[cfg(target_os = "linux")]
        if let Some(pidfd) = &self.pidfd {
            // Rounded up: a timeout of 0 would spin until the deadline.
            let ms = u64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
            match pidfd.wait(Duration::from_millis(ms)) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
                Err(_) => self.pidfd = None,
            }
        }
        thread::sleep(self.pause.min(left));
        self.pause = (self.pause * 2).min(Duration::from_millis(5));
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

fn kill_all(children: impl Iterator<Item = Child>) {
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn shell(script: &str) -> Child {
        Process::new("sh").args(["-c", script]).spawn().unwrap()
    }

    /// A pidfd watch (`watched`) or pauses only.
    fn watch_for(child: &Child, watched: bool) -> ExitWatch {
        if watched {
            ExitWatch::new(child)
        } else {
            ExitWatch::pausing()
        }
    }

    #[test]
    fn a_child_is_reaped_with_its_status_whether_watched_or_paused_for() {
        for watched in [true, false] {
            let mut child = shell("sleep 0.05; exit 3");
            let watch = watch_for(&child, watched);
            #[cfg(target_os = "linux")]
            assert_eq!(watch.pidfd.is_some(), watched);
            let status = reap_with(&mut child, watch, Duration::from_secs(10)).unwrap();
            assert_eq!(status.code(), Some(3), "watched: {watched}");
        }
    }

    #[test]
    fn a_child_that_does_not_exit_in_time_is_killed() {
        for watched in [true, false] {
            let mut child = shell("sleep 30");
            let watch = watch_for(&child, watched);
            let status = reap_with(&mut child, watch, Duration::from_millis(100)).unwrap();
            assert_eq!(status.signal(), Some(libc::SIGKILL), "watched: {watched}");
        }
    }
}
