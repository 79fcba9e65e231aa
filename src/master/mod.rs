//! The master: chunking, running the workers of the chosen mode, collecting.
//!
//! All three modes share the [`collect::Collector`] bookkeeping and the worker
//! loop of `flagmaster_worker`; they differ only in who runs that loop and how
//! its `Want`s and reports travel:
//! - serial: the main thread runs it, its closures call the collector directly;
//! - threads: N threads run it, over crossbeam channels ([`threads`]);
//! - proc: N child processes run it, over ipc-channel ([`procs`]).

pub mod collect;
pub mod procs;
pub mod threads;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flagmaster_worker::fetch::{Fetcher, WorkerId};
use flagmaster_worker::log::{worker_log_name, LogFile};
use flagmaster_worker::protocol::Item;
use flagmaster_worker::run_loop;

use crate::cli::Mode;
use crate::config::RunConfig;
use crate::error::Error;
use collect::{Collected, Collector};

/// Runs every item through the workers of `config.mode`.
pub fn run(config: &RunConfig, items: Vec<Item>, log: &LogFile) -> Result<Collected, Error> {
    let mut collector = Collector::new(items, config.chunk_size, log);
    match config.mode {
        Mode::Serial => serial(config, &mut collector)?,
        Mode::Threads => threads::run(config, &mut collector)?,
        Mode::Proc => procs::run(config, &mut collector)?,
    }
    Ok(collector.finish())
}

fn serial(config: &RunConfig, collector: &mut Collector) -> Result<(), Error> {
    let worker = 1;
    let who = WorkerId {
        worker,
        pid: std::process::id(),
        thread: 0,
    };
    let log = open_worker_log(&config.log_dir, worker)?;
    let fetcher = Fetcher::new(config.fetch.clone(), config.dest.clone());
    collector.add_worker(worker, who.pid, None);
    let started = Instant::now();
    let collector = RefCell::new(collector);
    let tally = run_loop(
        &fetcher,
        &who,
        &log,
        || collector.borrow_mut().take_chunk(worker),
        |report| {
            collector.borrow_mut().record(report);
            true
        },
    );
    let summary = tally.summary(started.elapsed().as_secs_f64());
    collector.borrow_mut().finished(worker, summary);
    Ok(())
}

/// Path of worker `n`'s log.
pub fn worker_log_path(log_dir: &Path, worker: u32) -> PathBuf {
    log_dir.join(worker_log_name(worker))
}

/// Opens worker `n`'s log (already created empty by the run's set-up).
pub fn open_worker_log(log_dir: &Path, worker: u32) -> Result<LogFile, Error> {
    let path = worker_log_path(log_dir, worker);
    LogFile::append(&path).map_err(|source| Error::Unwritable {
        what: "log",
        path,
        source,
    })
}
