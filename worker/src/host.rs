//! The one driver of worker loops: T threads, each running [`run_loop`] over
//! a [`Transport`].
//!
//! Every mode hosts its loops here. Serial mode is one loop and threads mode
//! T loops in the master, over crossbeam channels; a worker process hosts its
//! T loops over ipc-channel. A mode supplies only the transport: how a loop
//! asks for a chunk, how its reports travel, and what is said when it ends.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::fetch::{Fetcher, WorkerId};
use crate::log::LogFile;
use crate::protocol::{Item, ItemReport};
use crate::{end_thread, run_loop, Tally};

/// How the loops of one host talk to the master.
pub trait Transport: Send + Sync + 'static {
    /// The next chunk for the loop `who`, blocking until the master answers;
    /// `None` when there is no more work or the master cannot be reached.
    fn want(&self, who: &WorkerId) -> Option<Vec<Item>>;
    /// One item of `who` is finished; false when the master is gone.
    fn report(&self, who: &WorkerId, report: ItemReport) -> bool;
    /// The loop `who` has ended, after its last report. Called once per loop,
    /// from the loop's own thread, even when the loop panicked.
    fn ended(&self, who: &WorkerId, end: LoopEnd);
}

/// How one loop ended.
#[derive(Clone, Copy, Debug)]
pub struct LoopEnd {
    /// What the loop did, its time waiting in [`Transport::want`] included;
    /// `None` if it panicked (the message is on stderr).
    pub tally: Option<Tally>,
    /// Seconds from the loop's start to its end.
    pub secs: f64,
}

/// One loop to run.
pub struct Loop {
    pub who: WorkerId,
    /// Where the loop logs its attempts; the loops of a worker process share one.
    pub log: Arc<LogFile>,
    /// Handed out with the set-up, so the loop starts fetching at once rather
    /// than after a `Want` that the master answers only once every loop is up.
    pub first: Option<Vec<Item>>,
}

/// Starts one thread per loop, named `name(who)`, and returns at once; each
/// loop reports its end through [`Transport::ended`]. The result says, per
/// loop in order, whether its thread started.
///
/// Each thread gets its own connection pool ([`Fetcher::for_thread`]), and
/// everything a thread needs is made before the first one starts: once
/// threads run, the spawning thread shares the cores with them, and making
/// per-thread state between spawns delayed every later thread.
pub fn spawn<T: Transport>(
    fetcher: &Fetcher,
    loops: Vec<Loop>,
    transport: &Arc<T>,
    name: impl Fn(&WorkerId) -> String,
) -> Vec<(WorkerId, io::Result<()>)> {
    let ready: Vec<(Loop, Fetcher)> = loops
        .into_iter()
        .map(|l| (l, fetcher.for_thread()))
        .collect();
    ready
        .into_iter()
        .map(|(spec, fetcher)| {
            let who = spec.who.clone();
            let transport = Arc::clone(transport);
            let spawned = thread::Builder::new()
                .name(name(&who))
                .spawn(move || run_one(spec, &fetcher, &*transport));
            // Not joined: a loop that ended ends its thread (see `end_thread`).
            (who, spawned.map(drop))
        })
        .collect()
}

fn run_one<T: Transport>(spec: Loop, fetcher: &Fetcher, transport: &T) -> ! {
    let Loop {
        who,
        log,
        mut first,
    } = spec;
    let started = Instant::now();
    let mut idle = Duration::ZERO;
    let next_chunk = || {
        first.take().or_else(|| {
            let asked = Instant::now();
            let chunk = transport.want(&who);
            idle += asked.elapsed();
            chunk
        })
    };
    let report = |r| transport.report(&who, r);
    // A panic's message is already on stderr (a worker process's log file).
    let tally = panic::catch_unwind(AssertUnwindSafe(|| {
        run_loop(fetcher, &who, &log, next_chunk, report)
    }))
    .ok()
    .map(|tally| Tally { idle, ..tally });
    transport.ended(
        &who,
        LoopEnd {
            tally,
            secs: started.elapsed().as_secs_f64(),
        },
    );
    end_thread()
}
