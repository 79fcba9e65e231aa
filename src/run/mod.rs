//! A download run, as a short story of named steps: start the site, find the
//! items, plan, prepare the output, announce, fetch, conclude.

pub mod finale;
pub mod interrupt;
pub mod manifest;
mod notes;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagmaster_worker::log::{LogFile, MASTER_LOG};
use flagmaster_worker::protocol::{FetchSettings, Item};
use flagmaster_worker::save::remove_leftovers;

use crate::cli::{RunArgs, ServerKind};
use crate::config::{RunConfig, Server};
use crate::error::Error;
use crate::input::{self, list, rerun, shard};
use crate::master::collect::{lock, Collector};
use crate::plan::Plan;
use crate::report::progress::Reporter;
use crate::report::ShardInfo;
use crate::site::{self, Site, SiteConfig, SiteTls};
use finale::Finale;
use manifest::Manifest;

/// Descriptors a process holds besides those of its worker loops: standard
/// streams, lists, logs, IPC channels, the runtime's own.
pub const BASE_DESCRIPTORS: usize = 64;

/// Downloads what `args` say and returns the exit status.
pub fn download(args: RunArgs) -> Result<u8, Error> {
    let config = RunConfig::from_args(args)?;
    // While this process has one thread (see `reserve_descriptors`); the
    // built-in site reserves its own.
    flagmaster_worker::reserve_descriptors(
        BASE_DESCRIPTORS + flagmaster_worker::FDS_PER_LOOP * config.concurrency() as usize,
    );
    let site = SiteInUse::start(&config.server, config.tls)?;
    let fetch = site.trusted(&config.fetch);
    let (items, found) = find_items(&config, &fetch, &site.base_url)?;
    let mut prepared = rerun::prepare(config.rerun, items, &config.dest);
    let unchecked = config
        .checksums
        .as_ref()
        .map(|sums| (sums.apply(&mut prepared.to_fetch), &sums.label));
    let manifest = config
        .manifest
        .clone()
        .map(|path| Manifest::new(path, &config.dest));
    let plan = Plan::new(&config, &fetch, prepared.to_fetch.len(), found.remote);
    let log = prepare_output(&config)?;
    let region = plan.polite.region(plan.procs)?;
    let info = notes::announce(
        &config,
        &plan,
        &site,
        &found,
        &prepared,
        region.as_ref(),
        &log,
    );
    prepared.announce(config.rerun, config.json, &config.dest, &log);
    if let Some((count @ 1.., label)) = unchecked {
        eprintln!("flagmaster: warning: {count} items have no line in {label}: fetched unchecked");
    }

    let log = Arc::new(log);
    let reporter = Reporter::new(config.display, found.total);
    let nothing_to_fetch = prepared.to_fetch.is_empty();
    let collector = Arc::new(Mutex::new(Collector::new(
        prepared.to_fetch,
        plan.chunking,
        Arc::clone(&log),
        stuck_after(&plan),
        reporter,
    )));
    lock(&collector).add_finished(prepared.skipped);
    let finale = Arc::new(Finale::new(
        info,
        &config,
        Arc::clone(&collector),
        log,
        region.as_ref().map(|r| r.path().to_path_buf()),
        prepared.book,
        manifest,
    ));
    interrupt::watch(Arc::clone(&finale))
        .map_err(|e| Error::Setup(format!("cannot watch for Ctrl-C: {e}")))?;
    // An empty share (more shards than items), or a re-run that skipped every
    // file, is complete without starting a worker.
    if !nothing_to_fetch {
        crate::master::run(&plan, &collector, region.as_ref())?;
    }
    drop(site);
    match finale.conclude() {
        Some(status) => Ok(status),
        // The signal watcher is printing the report and will exit.
        None => loop {
            std::thread::park();
        },
    }
}

/// The site of this run: the built-in one started here, or a URL.
pub struct SiteInUse {
    /// The built-in site, which runs until this is dropped.
    _site: Option<Site>,
    /// `DELAY (built-in, 197 flags, 100-300 ms latency)`, `REMOTE`, `none`.
    pub label: String,
    /// Empty when the items carry full URLs.
    pub base_url: String,
}

impl SiteInUse {
    fn start(server: &Server, tls: bool) -> Result<SiteInUse, Error> {
        Ok(match server {
            // The built-in site always serves the built-in list: like a real
            // site, it has the flags it has, and other names are 404s.
            Server::Builtin(kind) => {
                let config = builtin_site(*kind, list::parse(list::BUILTIN).names);
                let description = site::describe(&config);
                let tls = match tls {
                    true => Some(SiteTls::generate().map_err(Error::Setup)?),
                    false => None,
                };
                let https = if tls.is_some() { ", HTTPS" } else { "" };
                let site = site::start_loopback(config, tls)?;
                let kind = format!("{kind:?}").to_uppercase();
                SiteInUse {
                    base_url: site.base_url(),
                    label: format!("{kind} (built-in, {description}{https})"),
                    _site: Some(site),
                }
            }
            Server::Url { label, base } => SiteInUse {
                _site: None,
                label: label.clone(),
                base_url: base.clone(),
            },
            Server::Direct => SiteInUse {
                _site: None,
                label: "none".into(),
                base_url: String::new(),
            },
        })
    }

    /// `fetch`, trusting also the CA of a built-in site served over HTTPS
    /// (in memory: no file is needed).
    fn trusted(&self, fetch: &FetchSettings) -> FetchSettings {
        let mut fetch = fetch.clone();
        if let Some(pem) = self._site.as_ref().and_then(Site::ca_pem) {
            fetch.ca_pem.extend_from_slice(pem.as_bytes());
        }
        fetch
    }

    /// The site's short name for reports: `DELAY`, `REMOTE`, `custom`, `none`.
    pub fn short_label(&self) -> &str {
        self.label.split(' ').next().unwrap_or("")
    }
}

/// The latency of the built-in DELAY and ERROR sites: 100 ms plus 0-200 ms.
const DELAY_MS: u64 = 100;
const JITTER_MS: u64 = 200;
/// Share of 503 answers of the ERROR site.
const ERROR_RATE: f64 = 0.25;

fn builtin_site(kind: ServerKind, names: Vec<String>) -> SiteConfig {
    let (delay_ms, jitter_ms, error_rate) = match kind {
        ServerKind::Delay => (DELAY_MS, JITTER_MS, 0.0),
        ServerKind::Error => (DELAY_MS, JITTER_MS, ERROR_RATE),
        ServerKind::Local | ServerKind::Remote => (0, 0, 0.0),
    };
    SiteConfig {
        names,
        delay_ms,
        jitter_ms,
        error_rate,
        image_size: (site::flag::WIDTH, site::flag::HEIGHT),
    }
}

/// What is known of this run's items.
pub struct Found {
    /// Items of this run (its share of the list).
    pub total: usize,
    pub shard: Option<ShardInfo>,
    /// Some item is on a host other than this machine.
    pub remote: bool,
}

/// Resolves the items (a listing is fetched here: one that cannot be read is a
/// set-up error, before anything is written), then takes this run's share,
/// in list order.
fn find_items(
    config: &RunConfig,
    fetch: &FetchSettings,
    base_url: &str,
) -> Result<(Vec<Item>, Found), Error> {
    let mut items = config.input.items(base_url, fetch)?;
    if let Some(limit) = config.limit {
        items.truncate(limit);
    }
    if items.is_empty() {
        return Err(Error::EmptyList(config.list_label.clone()));
    }
    let remote = !input::all_loopback(&items);
    let shard = config.shard.map(|shard| ShardInfo {
        shard,
        list_items: items.len(),
    });
    let items = match &config.shard {
        Some(s) => shard::select(items, s),
        None => items,
    };
    let found = Found {
        total: items.len(),
        shard,
        remote,
    };
    Ok((items, found))
}

/// Creates the destination and log directories, removes what an earlier run
/// left (temporary files, its logs), and opens `master.log`.
fn prepare_output(config: &RunConfig) -> Result<LogFile, Error> {
    prepare_dir("--dest", &config.dest)?;
    prepare_dir("--log-dir", &config.log_dir)?;
    let leftovers = remove_leftovers(&config.dest).unwrap_or(0);
    if leftovers > 0 {
        eprintln!("flagmaster: removed {leftovers} temporary files left by an earlier run");
    }
    reset_logs(&config.log_dir)?;
    let path = config.log_dir.join(MASTER_LOG);
    LogFile::append(&path).map_err(|source| Error::Unwritable {
        what: "log",
        path,
        source,
    })
}

/// Creates `path` if needed and proves it writable with a temporary file.
fn prepare_dir(what: &'static str, path: &Path) -> Result<(), Error> {
    let unwritable = |source| Error::Unwritable {
        what,
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path).map_err(unwritable)?;
    tempfile::Builder::new()
        .prefix(".flagmaster-probe")
        .tempfile_in(path)
        .map(drop)
        .map_err(unwritable)
}

/// Removes the logs of the previous run so that they are replaced, not mixed in.
fn reset_logs(dir: &Path) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|source| Error::Unwritable {
        what: "--log-dir",
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name == MASTER_LOG || (name.starts_with("worker-") && name.ends_with(".log"));
        if ours {
            fs::remove_file(entry.path()).map_err(|source| Error::Unwritable {
                what: "log",
                path: entry.path(),
                source,
            })?;
        }
    }
    Ok(())
}

/// A worker process that holds items and has not been heard from for this long
/// is stuck: every item ends within `--timeout`, so it should have reported.
fn stuck_after(plan: &Plan) -> Duration {
    Duration::from_millis(plan.fetch.timeout_ms) + Duration::from_secs(5)
}
