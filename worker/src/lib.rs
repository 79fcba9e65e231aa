//! Everything a flagmaster worker runs: fetching and saving one item
//! ([`fetch`], [`save`]), logging it ([`log`]), the messages it exchanges with
//! the master ([`protocol`]), and the entry point of a worker process ([`child`]).
//!
//! The worker loop, [`run_loop`], is the same in every mode. A mode only
//! decides who calls it and what its two closures do: in serial mode they
//! touch the master's queue and statistics directly, in threads mode they send
//! over crossbeam channels, in proc mode over ipc-channel.

pub mod blur;
pub mod child;
pub mod fetch;
pub mod log;
pub mod polite;
pub mod protocol;
pub mod save;

use std::sync::atomic::{AtomicBool, Ordering};

use fetch::{Fetcher, WorkerId};
use log::LogFile;
use protocol::{Item, ItemReport, WorkerSummary};

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

/// What one run of the worker loop did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub items: u32,
    pub bytes: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.items += other.items;
        self.bytes += other.bytes;
    }
}

impl Tally {
    /// The summary of a worker that ran for `secs`, without its memory: a
    /// worker process adds its own peak, while the threads of one process
    /// share the master's (reading `/proc/self/status` once per thread cost
    /// ~25 µs each, all of it after the last item).
    pub fn summary(self, secs: f64) -> WorkerSummary {
        WorkerSummary {
            items: self.items,
            bytes: self.bytes,
            secs,
            peak_rss_kb: None,
        }
    }
}

/// Blocks the calling thread until the process exits.
///
/// A worker thread that is done calls this instead of returning. glibc's
/// teardown of a thread gives its stack back with `madvise` and Rust's
/// unmaps its signal stack; each flushes the TLB of every core and they take
/// the process's memory lock in turn, about 100 µs per thread. At 256 threads
/// that was ~30 ms between the last item and the report. The process exit
/// releases them all at once. Only for threads of a process that exits when
/// the run is over (the `flagmaster` binary, a worker process).
pub fn linger() -> ! {
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
/// accounts for them).
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
            let r = fetcher.fetch(item, who, log);
            tally.items += 1;
            tally.bytes += r.bytes;
            if !report(r) {
                return tally;
            }
        }
    }
    tally
}
