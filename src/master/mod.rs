//! The master: runs the worker loops of the chosen mode and collects.
//!
//! Every mode hosts its loops with `flagmaster_worker::host` and feeds the
//! same drive loop ([`collect::drive`]); they differ only in where the loops
//! run and how their `Want`s and reports travel:
//! - serial: one loop in this process ([`threads`] with one thread);
//! - threads: N loops in this process, over crossbeam channels ([`threads`]);
//! - proc: N child processes of T loops each, over ipc-channel ([`procs`]).
//!
//! [`queue`] hands out chunks and decides who waits; [`collect`] folds events
//! into results and passes them to the reporter; [`reap`] controls processes.

pub mod collect;
pub mod procs;
pub mod queue;
pub mod reap;
pub mod threads;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flagmaster_worker::fetch::Fetcher;
use flagmaster_worker::log::{worker_log_name, LogFile};
use flagmaster_worker::polite::Region;

use crate::cli::Mode;
use crate::error::Error;
use crate::plan::Plan;
use collect::Shared;

/// Runs every item held by `collector` through the workers of `plan.mode`,
/// all of them held to the caps of `polite` when there are any.
pub fn run(plan: &Plan, collector: &Shared, polite: Option<&Region>) -> Result<(), Error> {
    match plan.mode {
        Mode::Serial | Mode::Threads => threads::run(plan, &local_fetcher(plan, polite), collector),
        Mode::Proc => procs::run(plan, collector, polite),
    }
}

/// The fetcher of loops that run in this process.
fn local_fetcher(plan: &Plan, polite: Option<&Region>) -> Fetcher {
    let fetcher = Fetcher::new(plan.fetch.clone(), plan.dest.clone());
    match polite {
        Some(region) => fetcher.with_gate(Arc::clone(&region.gate)),
        None => fetcher,
    }
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
