//! Process control of proc mode: waiting for a worker process to exit
//! (reaping it with its status, killing it if it does not), and killing by
//! pid one that went silent or an interrupted run's stragglers.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// How long a worker whose channel closed may take to exit before it is killed.
const REAP_DEADLINE: Duration = Duration::from_secs(2);

/// Waits up to [`REAP_DEADLINE`] for `child` to exit, then kills it.
///
/// A worker's channel closes while its process is still exiting, so the
/// first look usually finds it running, and the last worker's exit is the end
/// of the run: the wait ends the moment the child exits (see [`ExitWatch`]).
pub fn reap(child: &mut Child) -> std::io::Result<ExitStatus> {
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
    pidfd: Option<std::os::fd::OwnedFd>,
    pause: Duration,
}

impl ExitWatch {
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    fn new(child: &Child) -> ExitWatch {
        ExitWatch {
            #[cfg(target_os = "linux")]
            pidfd: pidfd_open(child.id()),
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
        if let Some(fd) = &self.pidfd {
            use std::os::fd::AsRawFd;
            let mut poll = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // Rounded up: a timeout of 0 would spin until the deadline.
            let ms = libc::c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd, for the duration of the call.
            if unsafe { libc::poll(&mut poll, 1, ms) } >= 0 {
                return;
            }
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                return;
            }
            self.pidfd = None;
        }
        thread::sleep(self.pause.min(left));
        self.pause = (self.pause * 2).min(Duration::from_millis(5));
    }
}

/// A pidfd for our own unreaped child `pid`; None where the kernel refuses.
#[cfg(target_os = "linux")]
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; the pid is our child, not yet reaped, so it cannot name another
    // process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` was just returned to us and is owned by nobody else.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

pub fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

pub fn kill_all(children: impl Iterator<Item = Child>) {
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGKILL to a child process of ours.
pub fn kill(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is one of our
    // own children that has not been reaped yet (see `Collector::mark_gone`).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command as Process;

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
