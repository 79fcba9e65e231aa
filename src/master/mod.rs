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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use flagmaster_worker::fetch::{Fetcher, WorkerId};
use flagmaster_worker::log::{worker_log_name, LogFile};
use flagmaster_worker::polite::Region;
use flagmaster_worker::run_loop;

use crate::cli::Mode;
use crate::config::RunConfig;
use crate::error::Error;
use collect::{lock, Shared};

/// Runs every item held by `collector` through the workers of `config.mode`,
/// all of them held to the caps of `polite` when there are any.
pub fn run(config: &RunConfig, collector: &Shared, polite: Option<&Region>) -> Result<(), Error> {
    match config.mode {
        Mode::Serial => serial(config, collector, polite),
        Mode::Threads => threads::run(config, collector, polite),
        Mode::Proc => procs::run(config, collector, polite),
    }
}

/// The fetcher of a mode that runs in this process.
fn local_fetcher(config: &RunConfig, polite: Option<&Region>) -> Fetcher {
    let fetcher = Fetcher::new(config.fetch.clone(), config.dest.clone());
    match polite {
        Some(region) => fetcher.with_gate(Arc::clone(&region.gate)),
        None => fetcher,
    }
}

fn serial(config: &RunConfig, collector: &Shared, polite: Option<&Region>) -> Result<(), Error> {
    let worker = 1;
    let who = WorkerId {
        worker,
        pid: std::process::id(),
        thread: 0,
    };
    let log = open_worker_log(&config.log_dir, worker)?;
    let fetcher = local_fetcher(config, polite);
    lock(collector).add_worker(worker, who.pid, false, None);
    let started = Instant::now();
    let tally = run_loop(
        &fetcher,
        &who,
        &log,
        || lock(collector).take_chunk(worker),
        |report| {
            lock(collector).record(report);
            true
        },
    );
    lock(collector).finished(worker, tally.summary(started.elapsed().as_secs_f64()));
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
