//! Everything a flagmaster worker runs: fetching and saving one item
//! ([`fetch`], [`save`]), logging it ([`log`]), the messages it exchanges with
//! the master ([`protocol`]), and the entry point of a worker process ([`child`]).
//!
//! The worker loop, [`run_loop`], is the same in every mode, and so is the
//! code that hosts its threads ([`host`]). A mode only supplies the
//! transport: crossbeam channels to the master in serial and threads mode,
//! ipc-channel from a worker process.

// `unsafe` is allowed only in `os`, each block with its `SAFETY` comment.
#![deny(unsafe_code, clippy::undocumented_unsafe_blocks)]

pub mod affinity;
pub mod blur;
pub mod child;
pub mod digest;
pub mod fetch;
pub mod host;
pub mod http;
pub mod log;
#[allow(unsafe_code)]
mod os;
pub mod polite;
pub mod protocol;
pub mod proxy;
pub mod save;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fetch::{Fetcher, WorkerId};
use log::LogFile;
use protocol::{Item, ItemReport, Status, WorkerSummary};

/// Set when the run is interrupted. Process-wide, because a signal is: in
/// serial and threads mode the master's signal handler sets it, in a worker
/// process the master's `Stop` command does.
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every worker loop of this process to stop: no new item is started, and
/// an item in flight is abandoned at its next read (as an ERROR, "interrupted").
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether [`request_stop`] was called.
pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Set when a save found the destination's file system full. Process-wide,
/// because the file system is: every loop of this process then ends the
/// items of its chunk that it has not started, without a request.
static DISK_FULL: AtomicBool = AtomicBool::new(false);

/// A save found the disk full.
pub fn note_disk_full() {
    DISK_FULL.store(true, Ordering::SeqCst);
}

/// Whether [`note_disk_full`] was called.
pub fn disk_full() -> bool {
    DISK_FULL.load(Ordering::SeqCst)
}

/// What one run of the worker loop did, or (summed with `+=`) a worker of
/// several loops. The master keeps one per worker too, counted from the
/// reports it received ([`Tally::count`]); its `busy` and `idle` stay zero,
/// the worker's own figures come in its [`WorkerSummary`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub items: u32,
    /// `items` by outcome.
    pub ok: u32,
    pub not_found: u32,
    pub error: u32,
    pub skipped: u32,
    /// Attempts beyond the first, summed over the items.
    pub retries: u32,
    pub bytes: u64,
    /// Time spent on items: fetching, saving, logging and reporting them.
    pub busy: Duration,
    /// Time spent waiting for a chunk (in `host::Transport::want`).
    pub idle: Duration,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        // Destructured so that a new field cannot be forgotten here.
        let Tally {
            items,
            ok,
            not_found,
            error,
            skipped,
            retries,
            bytes,
            busy,
            idle,
        } = other;
        self.items += items;
        self.ok += ok;
        self.not_found += not_found;
        self.error += error;
        self.skipped += skipped;
        self.retries += retries;
        self.bytes += bytes;
        self.busy += busy;
        self.idle += idle;
    }
}

impl Tally {
    /// Counts one finished item.
    pub fn count(&mut self, report: &ItemReport) {
        self.items += 1;
        match report.status {
            Status::Ok => self.ok += 1,
            Status::NotFound => self.not_found += 1,
            Status::Error => self.error += 1,
            Status::Skipped => self.skipped += 1,
        }
        self.retries += report.attempts.saturating_sub(1);
        self.bytes += report.bytes;
    }

    /// The summary of a worker that ran for `secs`, without its memory: a
    /// worker process adds its own peak, while the threads of one process
    /// share the master's (reading `/proc/self/status` once per thread cost
    /// ~25 µs each, all of it after the last item).
    pub fn summary(self, secs: f64) -> WorkerSummary {
        WorkerSummary {
            items: self.items,
            ok: self.ok,
            not_found: self.not_found,
            error: self.error,
            skipped: self.skipped,
            retries: self.retries,
            bytes: self.bytes,
            busy_secs: self.busy.as_secs_f64(),
            idle_secs: self.idle.as_secs_f64(),
            secs,
            peak_rss_kb: None,
        }
    }
}

/// Descriptors a worker loop may hold at once: its socket, the file being
/// written, and a log file (threads mode) or the site's end of the connection
/// (the built-in site in the same process).
pub const FDS_PER_LOOP: usize = 4;

/// Grows this process's descriptor table to hold `count` descriptors, so that
/// it never has to grow while worker threads run.
///
/// Linux grows the table as descriptors are opened (to 128, 256, 512, ...),
/// and in a process with more than one thread each growth waits for an RCU
/// grace period while holding up every other thread that opens a file: with
/// 256 threads the growth past 256 took 22 ms, in the middle of starting the
/// threads. Call this while the process still has one thread, where the
/// growth costs a copy. The table never shrinks, and costs 8 bytes a slot.
pub fn reserve_descriptors(count: usize) {
    os::grow_fd_table(count);
}

/// Blocks the calling worker thread until the process exits, instead of
/// ending it.
///
/// glibc's teardown of a thread gives its stack back with `madvise` and
/// Rust's unmaps its signal stack; each flushes the TLB of every core and they
/// take the process's memory lock in turn, about 100 µs per thread: at 256
/// threads, ~30 ms between the last item and the report. A parked thread
/// keeps its stack, signal stack and whatever it still owns (its connection,
/// its log file) until the process exits and frees them all at once, which
/// moves the cost to the exit (4 ms at 256 threads, after the last answer).
/// Ending the thread with the bare `exit` system call spared even that (tail
/// 8.7 -> 7.0 ms at 2000 files over 256 threads, medians of 9), but only by
/// going around Rust's guarantees; parking keeps them. Nothing of the thread
/// runs after the call, so it must hold no lock and owe nothing to anyone:
/// call it last, once everything that must be said has been sent. Never join
/// such a thread: the join would wait for the process exit. Only for threads
/// of a process that exits when the run is over (the `flagmaster` binary, a
/// worker process).
pub fn end_thread() -> ! {
    // `park` may return spuriously: park again.
    loop {
        std::thread::park();
    }
}

/// This process's peak resident memory, in KiB: `VmHWM` of `/proc/self/status`.
///
/// Not `getrusage`: Linux starts a child's `ru_maxrss` at the size of the
/// parent it was spawned from (the memory is counted until `exec` replaces
/// it), so a small worker spawned by a large process would be reported large.
/// `VmHWM` is the high-water mark of this process's own memory only.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The worker loop: ask for a chunk, fetch each of its items, report each one,
/// until `next_chunk` says there is no more work, `report` says the master is
/// gone, or the run is stopping (items not started stay unreported; the master
/// accounts for them). The tally counts the items reported and the time spent
/// on them (`busy`); the time spent waiting in `next_chunk` (`idle`) is the
/// host's to measure.
pub fn run_loop(
    fetcher: &Fetcher,
    who: &WorkerId,
    log: &LogFile,
    mut next_chunk: impl FnMut() -> Option<Vec<Item>>,
    mut report: impl FnMut(ItemReport) -> bool,
) -> Tally {
    let mut tally = Tally::default();
    while let Some(chunk) = next_chunk() {
        for item in &chunk {
            if stopping() {
                return tally;
            }
            let begun = Instant::now();
            let r = if disk_full() {
                ItemReport {
                    worker: who.worker,
                    thread: who.thread,
                    disk_full: true,
                    ..ItemReport::unfinished(item, save::DISK_FULL)
                }
            } else {
                fetcher.fetch(item, who, log)
            };
            tally.count(&r);
            let sent = report(r);
            tally.busy += begun.elapsed();
            if !sent {
                return tally;
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_outcomes_and_retries_and_adds_up() {
        let mut one = Tally::default();
        one.count(&ItemReport::for_test(0, Status::Ok, 10));
        one.count(&ItemReport {
            attempts: 3,
            ..ItemReport::for_test(1, Status::Error, 0)
        });
        one.busy = Duration::from_millis(30);
        let mut two = Tally::default();
        two.count(&ItemReport::for_test(2, Status::NotFound, 0));
        two.count(&ItemReport::for_test(3, Status::Skipped, 0));
        two.idle = Duration::from_millis(5);
        one += two;
        let expected = Tally {
            items: 4,
            ok: 1,
            not_found: 1,
            error: 1,
            skipped: 1,
            retries: 2,
            bytes: 10,
            busy: Duration::from_millis(30),
            idle: Duration::from_millis(5),
        };
        assert_eq!(one, expected);
        let summary = one.summary(0.5);
        assert_eq!((summary.retries, summary.busy_secs), (2, 0.03));
    }

    /// The size of this process's descriptor table (`FDSize`).
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn reserving_descriptors_grows_the_table_and_leaves_no_descriptor_open() {
        let wanted = table_size() + 1;
        super::reserve_descriptors(wanted);
        assert!(table_size() >= wanted, "{} < {wanted}", table_size());
        // The copy that grew it is closed (other tests' files take the
        // lowest free descriptors, never this one).
        let copy = format!("/proc/self/fd/{}", wanted - 1);
        assert!(!std::path::Path::new(&copy).exists(), "{copy} is open");
    }
}
