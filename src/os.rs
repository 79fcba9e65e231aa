//! flagmaster's calls into the operating system below std, in one place.
//!
//! Everything here is Linux, as flagmaster is (pidfds, timerfds). Most of it
//! goes through `rustix`, whose calls are safe. What no safe API offers stays
//! `unsafe`, each block with a `SAFETY` comment, and nowhere else in the crate:
//! the resource usage of this process and of a reaped child (`getrusage`,
//! `wait4`; rustix has neither), and registering the timer's descriptor with
//! tokio's reactor, which tokio marks `unsafe` because it cannot check that the
//! descriptor outlives the registration. The rest of the crate calls the safe
//! functions below.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::process::{getrlimit, kill_process, setrlimit, Pid, Resource, Rlimit, Signal};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Raises this process's soft limit on open files to its hard limit.
pub fn raise_fd_limit() {
    let limit = getrlimit(Resource::Nofile);
    // `None` is no limit.
    if limit.current.unwrap_or(u64::MAX) < limit.maximum.unwrap_or(u64::MAX) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// `pid` as a process id: a positive one.
fn pid(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Sends SIGKILL to process `pid`; a process already gone is no error.
pub fn kill(pid: u32) {
    if let Some(pid) = self::pid(pid) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

/// A `Timespec` of `d`, or the longest one.
fn timespec(d: Duration) -> Timespec {
    Timespec::try_from(d).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

/// A pidfd: a descriptor that becomes readable when its process exits.
#[cfg(target_os = "linux")]
pub struct PidFd(OwnedFd);

#[cfg(target_os = "linux")]
impl PidFd {
    /// A pidfd for process `pid`; `None` where the kernel refuses (before
    /// 5.3, some sandboxes). For a child of ours not yet reaped, the pid
    /// cannot name another process.
    pub fn open(pid: u32) -> Option<PidFd> {
        use rustix::process::{pidfd_open, PidfdFlags};
        pidfd_open(self::pid(pid)?, PidfdFlags::empty())
            .ok()
            .map(PidFd)
    }

    /// Returns when the process has exited, or after `timeout`; an error
    /// (`Interrupted` when a signal came first) otherwise.
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        use rustix::event::{poll, PollFd, PollFlags};
        let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
        poll(&mut fds, Some(&timespec(timeout)))?;
        Ok(())
    }
}

/// A kernel timer (`timerfd`) on `CLOCK_MONOTONIC`, with nanosecond deadlines
/// and no timer slack, watched by a tokio runtime's reactor.
pub struct Timer {
    /// Never handed out, nor its descriptor exchanged: see `Timer::new`.
    fd: AsyncFd<OwnedFd>,
}

impl Timer {
    /// A timer that is not set, registered with the reactor of the runtime
    /// entered. Panics outside a runtime.
    pub fn new() -> io::Result<Timer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: tokio asks that the descriptor stay open, and the same one,
        // for as long as the `AsyncFd` lives. An `OwnedFd` closes its
        // descriptor only when dropped, which the `AsyncFd` does as it drops
        // (deregistering first), and nothing can swap it for another: the
        // `AsyncFd` is private to `Timer`, which never calls `get_mut` or
        // `into_inner` and lends the descriptor out only by shared reference.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Timer { fd })
    }

    /// Sets the timer to go off once, `after` from now; `None` (or a zero
    /// duration, as for the kernel) unsets it.
    pub fn set(&self, after: Option<Duration>) {
        // As a timer's value, "never"; as its interval, "once".
        const ZERO: Timespec = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let spec = Itimerspec {
            it_interval: ZERO,
            it_value: after.map_or(ZERO, timespec),
        };
        // It fails only for a bad descriptor or value, neither possible.
        let _ = timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec);
    }

    /// Waits until the timer has gone off, and resets its count of expiries,
    /// so that it does not wake the reactor again until it next goes off. An
    /// error means the runtime is shutting down.
    pub async fn expired(&self) -> io::Result<()> {
        let mut ready = self.fd.readable().await?;
        // It finds no expiry (EAGAIN) if the timer was set again since it
        // went off, which is no matter: the count is reset either way.
        let mut expiries = [0u8; 8];
        let _ = rustix::io::read(self.fd.get_ref(), &mut expiries);
        ready.clear_ready();
        Ok(())
    }
}

/// `getrusage(who)`, `who` being `RUSAGE_SELF`, `RUSAGE_THREAD` or
/// `RUSAGE_CHILDREN`; `None` if it fails.
pub fn getrusage(who: libc::c_int) -> Option<libc::rusage> {
    // SAFETY: `rusage` holds integers only, so all zeros is a valid value;
    // `getrusage` writes one `rusage` through the pointer, which is valid
    // for writes for the duration of the call, and nothing else. An unknown
    // `who` is refused with EINVAL.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(who, &mut usage) == 0).then_some(usage)
    }
}

/// Waits for our child `pid` to exit and reaps it, returning the resource
/// usage of it and of the descendants it reaped; `None` if it was not reaped
/// (not a child of ours, already reaped, a signal came first).
pub fn wait4(pid: u32) -> Option<libc::rusage> {
    // Positive only: 0 and -1 would reap any child.
    let pid = libc::pid_t::try_from(pid).ok().filter(|&pid| pid > 0)?;
    let mut status = 0;
    // SAFETY: as in `getrusage`, all zeros is a valid `rusage`; `wait4`
    // writes one `c_int` and one `rusage` through the pointers, both valid
    // for writes for the duration of the call, and nothing else. Reaping a
    // process is no memory hazard: a `Child` for it would only find it gone.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::wait4(pid, &mut status, 0, &mut usage) == pid).then_some(usage)
    }
}
