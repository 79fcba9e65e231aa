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

/// SIGKILL to a child process of ours. The pid must be one that has not
/// been reaped yet (see `Collector::mark_gone`), so it names no other process.
pub fn kill(pid: u32) {
    crate::os::kill(pid);
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
