//! `flagmaster race`: the lesson's racy shared counter, and the two ways out.
//!
//! W threads take N tasks from one shared queue; each task pauses, as a
//! download would, and counts itself done. The same tasks are counted three
//! ways: read the shared counter, pause, write it back plus one (lost updates:
//! the read and the write are separate steps); pause, then `fetch_add` (one
//! atomic read-modify-write); and a count per worker, sent over a crossbeam
//! channel at the end and summed by the master, the way flagmaster's own
//! workers report their bytes. The racy counter is an `AtomicU64` loaded and
//! stored apart, so the race is in the logic, not undefined behaviour.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::cli::RaceArgs;
use crate::error::Error;
use crate::report::exit;

/// The tasks and who runs them, checked by clap before they get here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Tasks to count, each once.
    pub tasks: u64,
    /// Threads taking tasks from the queue.
    pub workers: u32,
    /// What each task waits between reading and writing the counter.
    pub pause: Duration,
}

impl From<&RaceArgs> for Setup {
    fn from(args: &RaceArgs) -> Setup {
        Setup {
            tasks: args.tasks,
            workers: args.workers,
            pause: Duration::from_millis(args.pause_ms),
        }
    }
}

/// One way of counting the tasks done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    /// One shared counter: load, pause, store the loaded value plus one.
    Racy,
    /// One shared counter: pause, then `fetch_add(1)`.
    FetchAdd,
    /// A count per worker, sent over a channel at the end and summed.
    PerWorker,
}

impl Counter {
    /// Every counter, in the order the table shows them.
    pub const ALL: [Counter; 3] = [Counter::Racy, Counter::FetchAdd, Counter::PerWorker];

    /// The row label of the table.
    pub fn label(self) -> &'static str {
        match self {
            Counter::Racy => "read-pause-write (racy)",
            Counter::FetchAdd => "fetch_add",
            Counter::PerWorker => "per-worker counts, summed",
        }
    }
}

/// What one counter ended at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trial {
    pub counter: Counter,
    pub total: u64,
    pub expected: u64,
    /// Updates overwritten by another worker's: `expected - total`.
    pub lost: u64,
    pub seconds: f64,
}

/// Everything `flagmaster race` prints; `--json` prints it as is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RaceReport {
    pub tasks: u64,
    pub workers: u32,
    pub pause_ms: u64,
    pub trials: Vec<Trial>,
}

/// Runs the three counters one after the other, prints the table (or the
/// JSON document), and returns the exit status: lost updates are the lesson,
/// not a failure.
pub fn run(args: RaceArgs) -> Result<u8, Error> {
    let setup = Setup::from(&args);
    let report = race(setup)?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Usage(format!("cannot write the race report: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(exit::OK)
}

/// Counts the tasks with every counter, timing each.
pub fn race(setup: Setup) -> Result<RaceReport, Error> {
    let mut trials = Vec::with_capacity(Counter::ALL.len());
    for counter in Counter::ALL {
        let start = Instant::now();
        let total = count(counter, setup)?;
        trials.push(Trial {
            counter,
            total,
            expected: setup.tasks,
            lost: setup.tasks.saturating_sub(total),
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    Ok(RaceReport {
        tasks: setup.tasks,
        workers: setup.workers,
        pause_ms: u64::try_from(setup.pause.as_millis()).unwrap_or(u64::MAX),
        trials,
    })
}

/// Runs `setup.tasks` tasks on `setup.workers` threads and returns what
/// `counter` says they added up to.
pub fn count(counter: Counter, setup: Setup) -> Result<u64, Error> {
    let pause = setup.pause;
    match counter {
        Counter::Racy => {
            let shared = AtomicU64::new(0);
            on_workers(setup, |queue| {
                for_each_task(queue, || {
                    let seen = shared.load(Ordering::SeqCst);
                    thread::sleep(pause);
                    shared.store(seen + 1, Ordering::SeqCst);
                })
            })?;
            Ok(shared.into_inner())
        }
        Counter::FetchAdd => {
            let shared = AtomicU64::new(0);
            on_workers(setup, |queue| {
                for_each_task(queue, || {
                    thread::sleep(pause);
                    shared.fetch_add(1, Ordering::SeqCst);
                })
            })?;
            Ok(shared.into_inner())
        }
        Counter::PerWorker => {
            let (tally, tallies) = crossbeam_channel::unbounded::<u64>();
            on_workers(setup, |queue| {
                let mut mine = 0u64;
                for_each_task(queue, || {
                    thread::sleep(pause);
                    mine += 1;
                });
                // The receiver outlives every worker: this cannot fail.
                let _ = tally.send(mine);
            })?;
            drop(tally);
            // Every worker has ended and the last sender is gone: this
            // reads the tallies sent and stops.
            Ok(tallies.iter().sum())
        }
    }
}

/// The worker loop: takes tasks until the queue is empty, running `task` for
/// each. Bounded: the queue holds `setup.tasks` tasks and nobody adds more.
fn for_each_task(queue: &Receiver<()>, mut task: impl FnMut()) {
    while queue.recv().is_ok() {
        task();
    }
}

/// Fills a queue with `setup.tasks` tasks, runs `worker` on `setup.workers`
/// threads over it and waits for them all. If a thread cannot start, those
/// already running still empty the queue, and the failure is returned.
fn on_workers(setup: Setup, worker: impl Fn(&Receiver<()>) + Sync) -> Result<(), Error> {
    let (fill, queue) = crossbeam_channel::unbounded();
    for _ in 0..setup.tasks {
        // `queue` is alive: this cannot fail.
        let _ = fill.send(());
    }
    // Closed: `recv` fails once the queue is empty instead of waiting.
    drop(fill);
    thread::scope(|scope| {
        for n in 1..=setup.workers {
            thread::Builder::new()
                .name(format!("race-{n}"))
                .spawn_scoped(scope, || worker(&queue))
                .map_err(|e| Error::Spawn(format!("thread {n} of {}: {e}", setup.workers)))?;
        }
        Ok(())
    })
}

impl RaceReport {
    /// The heading line and the aligned table of the text output.
    pub fn table(&self) -> String {
        let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let mut out = format!(
            "race: {}, {}, {} ms pause\n",
            plural(self.tasks, "task"),
            plural(u64::from(self.workers), "worker"),
            self.pause_ms
        );
        let mut rows = vec![["counter", "total", "expected", "lost", "seconds"].map(String::from)];
        for t in &self.trials {
            rows.push([
                t.counter.label().to_string(),
                t.total.to_string(),
                t.expected.to_string(),
                t.lost.to_string(),
                format!("{:.3}", t.seconds),
            ]);
        }
        let mut widths = [0; 5];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        for row in &rows {
            let mut line = format!("{:<w$}", row[0], w = widths[0]);
            for (cell, w) in row.iter().zip(widths).skip(1) {
                line.push_str(&format!("  {cell:>w$}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn race_loses_updates_and_both_fixes_do_not() {
        let setup = Setup {
            tasks: 200,
            workers: 8,
            pause: Duration::from_millis(2),
        };
        let racy = count(Counter::Racy, setup).unwrap();
        assert!(racy < 200, "racy counter ended at {racy}");
        assert!(racy > 0, "racy counter ended at {racy}");
        assert_eq!(count(Counter::FetchAdd, setup).unwrap(), 200);
        assert_eq!(count(Counter::PerWorker, setup).unwrap(), 200);
    }

    #[test]
    fn one_worker_has_no_race_and_more_workers_than_tasks_are_fine() {
        let one = Setup {
            tasks: 30,
            workers: 1,
            pause: Duration::from_millis(1),
        };
        let crowd = Setup {
            tasks: 3,
            workers: 16,
            pause: Duration::ZERO,
        };
        for counter in Counter::ALL {
            assert_eq!(count(counter, one).unwrap(), 30, "{counter:?}");
        }
        assert_eq!(count(Counter::FetchAdd, crowd).unwrap(), 3);
        assert_eq!(count(Counter::PerWorker, crowd).unwrap(), 3);
    }

    #[test]
    fn table_is_aligned() {
        let trial = |counter, total: u64, seconds| Trial {
            counter,
            total,
            expected: 500,
            lost: 500 - total,
            seconds,
        };
        let report = RaceReport {
            tasks: 500,
            workers: 20,
            pause_ms: 1,
            trials: vec![
                trial(Counter::Racy, 27, 0.0261),
                trial(Counter::FetchAdd, 500, 0.026),
                trial(Counter::PerWorker, 500, 0.0254),
            ],
        };
        assert_eq!(
            report.table(),
            "race: 500 tasks, 20 workers, 1 ms pause\n\
             counter                    total  expected  lost  seconds\n\
             read-pause-write (racy)       27       500   473    0.026\n\
             fetch_add                    500       500     0    0.026\n\
             per-worker counts, summed    500       500     0    0.025\n"
        );
    }
}
