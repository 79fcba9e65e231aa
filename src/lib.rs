//! flagmaster downloads many small files and shows what serial code, a thread
//! pool and a pool of worker processes do for I/O-bound work.
//!
//! One fetch path, three transports: the code that fetches, saves, logs and
//! reports one item lives in the `flagmaster_worker` crate and is the same in
//! every mode. [`master`] only decides who runs the worker loop (the main
//! thread, N threads fed over crossbeam-channel, or N child processes fed over
//! ipc-channel) and folds the reports into a [`report::RunReport`]. Worker
//! processes are this same binary, re-executed with a hidden subcommand.

pub mod bench;
pub mod cli;
pub mod completions;
pub mod config;
pub mod error;
pub mod exit;
pub mod interrupt;
pub mod list;
pub mod master;
pub mod merge;
pub mod polite;
pub mod progress;
pub mod report;
pub mod rerun;
pub mod shard;
pub mod site;
pub mod source;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use flagmaster_worker::log::{LogFile, MASTER_LOG};
use flagmaster_worker::save::remove_leftovers;

use cli::{Cli, Command, Mode, RunArgs, ServeArgs, ServerKind};
use config::{RunConfig, Source};
use error::Error;
use master::collect::{lock, Collector};
use report::{RunInfo, RunReport, ShardInfo};
use site::SiteConfig;

/// Parses the command line, runs, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    raise_fd_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let result = match cli.command {
        Some(Command::Worker(args)) => {
            return match flagmaster_worker::child::run(&args.server, args.worker) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("flagmaster worker {}: {e}", args.worker);
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::MergeReports(args)) => merge::run(args),
        Some(Command::Completions(args)) => completions::run(args.shell),
        None => download(cli.run),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("flagmaster: {e}");
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Descriptors a process holds besides those of its worker loops: standard
/// streams, lists, logs, IPC channels, the runtime's own.
const BASE_DESCRIPTORS: usize = 64;

/// A run with 1000 connections holds about 2000 descriptors (sockets, files
/// being written), and the built-in site as many; the usual soft limit of 1024
/// would make connects fail. The hard limit is ours to use, so the soft one is
/// raised to it, as Go's runtime does. Worker processes inherit it.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Help and version go to stdout with status 0; a usage error is one line on
/// stderr with status 2 (clap's own rendering spans several lines).
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = e.render().to_string();
            let mut lines = rendered.lines().filter(|l| !l.trim().is_empty());
            let mut first = lines
                .next()
                .unwrap_or("usage error")
                .trim_start_matches("error: ")
                .to_string();
            // "the following required arguments were not provided:" names
            // them on the next line.
            if first.ends_with(':') {
                if let Some(what) = lines.next() {
                    first = format!("{first} {}", what.trim());
                }
            }
            eprintln!("flagmaster: {first}");
            ExitCode::from(exit::USAGE)
        }
    }
}

/// The latency of the built-in DELAY and ERROR sites: 100 ms plus 0-200 ms.
const DELAY_MS: u64 = 100;
const JITTER_MS: u64 = 200;
/// Share of 503 answers of the ERROR site.
const ERROR_RATE: f64 = 0.25;

fn site_config(kind: ServerKind, names: Vec<String>) -> SiteConfig {
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

fn describe_site(config: &SiteConfig) -> String {
    let mut text = format!("{} flags", config.names.len());
    if config.delay_ms > 0 || config.jitter_ms > 0 {
        text += &format!(
            ", {}-{} ms latency",
            config.delay_ms,
            config.delay_ms + config.jitter_ms
        );
    }
    if config.error_rate > 0.0 {
        text += &format!(", {:.0}% errors", config.error_rate * 100.0);
    }
    if config.image_size != (site::flag::WIDTH, site::flag::HEIGHT) {
        let (w, h) = config.image_size;
        text += &format!(", {w}x{h} px");
    }
    text
}

fn download(args: RunArgs) -> Result<u8, Error> {
    let mut config = RunConfig::from_args(args)?;
    // While this process has one thread (see `reserve_descriptors`); the
    // built-in site reserves its own.
    flagmaster_worker::reserve_descriptors(
        BASE_DESCRIPTORS + flagmaster_worker::FDS_PER_LOOP * config.concurrency() as usize,
    );

    // The built-in site always serves the built-in list: like a real site, it
    // has the flags it has, and other names are 404s.
    let (site, site_label, base_url) = match &config.source {
        Source::Builtin(kind) => {
            let site_config = site_config(*kind, list::parse(list::BUILTIN).names);
            let description = describe_site(&site_config);
            let site = site::start_loopback(site_config)?;
            let base = site.base_url();
            let label = format!("{kind:?}").to_uppercase();
            (
                Some(site),
                format!("{label} (built-in, {description})"),
                base,
            )
        }
        Source::Url { label, base } => (None, label.clone(), base.clone()),
        Source::Direct => (None, "none".to_string(), String::new()),
    };

    // Before anything is written: a listing that cannot be read is a set-up error.
    let mut items = config.input.items(&base_url, &config.fetch)?;
    if let Some(limit) = config.limit {
        items.truncate(limit);
    }
    if items.is_empty() {
        return Err(Error::EmptyList(config.list_label.clone()));
    }
    config.fetch.env_proxy = !source::all_loopback(&items);
    // Remote is known for sure once the items are: their hosts decide.
    config.polite = config.polite.with_remote(config.fetch.env_proxy);
    let shard = config.shard.map(|shard| ShardInfo {
        shard,
        list_items: items.len(),
    });
    let items = match &config.shard {
        Some(s) => shard::select(items, s),
        None => items,
    };
    let total = items.len();
    let prepared = rerun::prepare(config.rerun, items, &config.dest);
    let asked = config.fit_to(prepared.to_fetch.len());
    let chunking = config.chunking();
    // Guided chunks only shrink, so the first is the largest.
    let chunk_size = chunking.next(prepared.to_fetch.len());

    config::prepare_dir("--dest", &config.dest)?;
    config::prepare_dir("--log-dir", &config.log_dir)?;
    let leftovers = remove_leftovers(&config.dest).unwrap_or(0);
    reset_logs(&config.log_dir)?;
    let master_log_path = config.log_dir.join(MASTER_LOG);
    let log = LogFile::append(&master_log_path).map_err(|source| Error::Unwritable {
        what: "log",
        path: master_log_path.clone(),
        source,
    })?;

    // With --json, stdout carries the JSON document only.
    let mut notes: Box<dyn Write> = if config.quiet {
        Box::new(std::io::sink())
    } else if config.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mode = mode_name(config.mode);
    match config.source {
        Source::Direct => {
            let _ = writeln!(notes, "Site: none (full URLs from {})", config.list_label);
        }
        _ => {
            let _ = writeln!(notes, "Site: {site_label} at {base_url}");
        }
    }
    let hosts = match config.source {
        Source::Direct => "each host",
        _ => base_url.as_str(),
    };
    if let Some(line) = config.polite.note(hosts) {
        let _ = writeln!(notes, "{line}");
    }
    let share = match &shard {
        Some(info) => format!(
            " (shard {} from {}, of {})",
            info.shard,
            info.shard.source.label(),
            info.list_items
        ),
        None => String::new(),
    };
    let _ = writeln!(
        notes,
        "Mode: {mode}, {} x {} thread(s){}{}, {} items{share} from {} in chunks of {}{chunk_size} -> {} (logs in {})",
        config.procs,
        config.threads,
        fitted_note(asked, prepared.to_fetch.len(), chunking),
        if config.pin { ", pinned to CPUs" } else { "" },
        total,
        config.list_label,
        match chunking {
            config::Chunking::Fixed(_) => "",
            config::Chunking::Guided { .. } => "up to ",
        },
        config.dest.display(),
        config.log_dir.display(),
    );
    if let Some(blur) = blur_note(&config) {
        let _ = writeln!(notes, "Blur: {blur}");
    }
    for dup in &config.duplicates {
        eprintln!("flagmaster: warning: duplicate entry {dup:?} is downloaded once");
    }
    if let Some(warning) = config
        .polite
        .warning(config.concurrency(), config.fetch.timeout_ms)
    {
        eprintln!("flagmaster: warning: {warning}");
    }
    if leftovers > 0 {
        eprintln!("flagmaster: removed {leftovers} temporary files left by an earlier run");
    }
    let _ = notes.flush();
    drop(notes);

    let info = RunInfo {
        mode: mode.to_string(),
        procs: config.procs,
        threads: config.threads,
        pin: config.pin,
        site: site_label.split(' ').next().unwrap_or("").to_string(),
        base_url: base_url.clone(),
        list: config.list_label.clone(),
        dest: config.dest.display().to_string(),
        log_dir: config.log_dir.display().to_string(),
        chunk_size,
        shard,
        max_rps: config.polite.limits.max_rps,
        per_host: config.polite.limits.per_host,
    };
    let (shard_field, shard_source) = match &shard {
        Some(info) => (info.shard.to_string(), info.shard.source.key()),
        None => ("none".to_string(), "-"),
    };
    let region = config.polite.region(config.procs)?;
    let region_path = region
        .as_ref()
        .map_or_else(|| "-".to_string(), |r| r.path().display().to_string());
    log.line(&[
        ("event", &"start"),
        ("pid", &std::process::id()),
        ("mode", &mode),
        ("procs", &config.procs),
        ("threads", &config.threads),
        // What `--procs` x `--threads` said, when the layout was fitted to the items.
        (
            "asked",
            &asked.map_or("-".to_string(), |(p, t)| format!("{p}x{t}")),
        ),
        ("pin", &config.pin),
        ("items", &total),
        ("shard", &shard_field),
        ("shard_source", &shard_source),
        ("list_items", &shard.map_or(total, |s| s.list_items)),
        ("chunk_size", &chunk_size),
        ("site", &info.site),
        ("base_url", &base_url),
        ("list", &info.list),
        ("dest", &info.dest),
        ("timeout_ms", &config.fetch.timeout_ms),
        ("retries", &config.fetch.retries),
        ("max_size", &config.fetch.max_size),
        ("headers", &config.fetch.headers.len()),
        ("max_rps", &or_dash(info.max_rps)),
        ("per_host", &or_dash(info.per_host)),
        ("polite_region", &region_path),
        (
            "blur",
            &config
                .fetch
                .blur
                .map_or("none".to_string(), |s| s.to_string()),
        ),
        ("keep_original", &config.fetch.keep_original),
    ]);

    prepared.announce(config.rerun, config.json, &config.dest, &log);
    let log = Arc::new(log);
    let progress = progress::Progress::new(config.display, total);
    let items_empty = prepared.to_fetch.is_empty();
    let collector = Arc::new(Mutex::new(Collector::new(
        prepared.to_fetch,
        chunking,
        Arc::clone(&log),
        stuck_after(&config),
        progress,
    )));
    lock(&collector).add_finished(prepared.skipped);
    let finale = Arc::new(Finale {
        info,
        json: config.json,
        dest: config.dest.clone(),
        started: Instant::now(),
        collector: Arc::clone(&collector),
        log,
        region: region.as_ref().map(|r| r.path().to_path_buf()),
        concluded: AtomicBool::new(false),
        validators: prepared.book,
    });
    interrupt::watch(Arc::clone(&finale))
        .map_err(|e| Error::Spawn(format!("cannot watch signals: {e}")))?;
    // An empty share (more shards than items), or a re-run that skipped every
    // file, is complete without starting a worker.
    if !items_empty {
        master::run(&config, &collector, region.as_ref())?;
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

/// What the Mode line adds when the layout was fitted to the items.
fn fitted_note(asked: Option<(u32, u32)>, items: usize, chunking: config::Chunking) -> String {
    let Some((p, t)) = asked else {
        return String::new();
    };
    let s = if items == 1 { "" } else { "s" };
    let chunks = match chunking {
        config::Chunking::Fixed(c) => format!(" in chunks of {c}"),
        config::Chunking::Guided { .. } => String::new(),
    };
    format!(" ({p} x {t} asked, fitted to {items} item{s} to fetch{chunks})")
}

/// The notes line of the blur stage, if the run has one.
fn blur_note(config: &RunConfig) -> Option<String> {
    let sigma = config.fetch.blur?;
    let what = if config.fetch.keep_original {
        "blurred copy saved next to each original as NAME.blur.EXT"
    } else {
        "the blurred image replaces each download"
    };
    Some(format!(
        "Gaussian, sigma {sigma} px, in the worker that fetched it; {what}"
    ))
}

/// A worker process that holds items and has not been heard from for this long
/// is stuck: every item ends within `--timeout`, so it should have reported.
fn stuck_after(config: &RunConfig) -> Duration {
    Duration::from_millis(config.fetch.timeout_ms) + Duration::from_secs(5)
}

/// What it takes to end a run and print its report, from whichever thread gets
/// there first: the main thread when the workers are done, or the signal
/// watcher when an interrupt's grace period runs out.
pub struct Finale {
    info: RunInfo,
    json: bool,
    dest: PathBuf,
    started: Instant,
    pub collector: master::collect::Shared,
    log: Arc<LogFile>,
    /// The politeness region, removed here too because an interrupted run
    /// exits from the signal watcher without running destructors.
    region: Option<PathBuf>,
    concluded: AtomicBool,
    /// The sidecar of `--if-changed`, written when the run ends.
    validators: Option<rerun::Book>,
}

impl Finale {
    pub fn is_concluded(&self) -> bool {
        self.concluded.load(Ordering::SeqCst)
    }

    /// Removes temporary files, prints the report and returns the exit status;
    /// `None` if another thread has already done so.
    pub fn conclude(&self) -> Option<u8> {
        if self.concluded.swap(true, Ordering::SeqCst) {
            return None;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let (collected, interrupted) = {
            let mut collector = lock(&self.collector);
            (collector.take_results(), collector.is_stopping())
        };
        progress::clear();
        // Only a worker that did not finish (killed, crashed, interrupted) can
        // leave a temporary file behind; a clean run spares the scan of a
        // destination that may hold many thousands of files.
        let unclean = interrupted || collected.workers.iter().any(|w| w.summary.is_none());
        if unclean {
            let _ = remove_leftovers(&self.dest);
        }
        if let Some(book) = &self.validators {
            book.finish(&collected.reports, &self.log);
        }
        if let Some(region) = &self.region {
            let _ = fs::remove_file(region);
        }
        let report = RunReport::new(self.info.clone(), collected, elapsed, interrupted);
        let status = if interrupted {
            exit::INTERRUPTED
        } else {
            exit::for_counts(&report.counts)
        };
        self.log.line(&[
            ("event", &"done"),
            ("ok", &report.counts.ok),
            ("not_found", &report.counts.not_found),
            ("error", &report.counts.error),
            ("skipped", &report.counts.skipped),
            ("bytes", &report.bytes),
            ("elapsed_secs", &format!("{elapsed:.6}")),
            ("interrupted", &interrupted),
            ("exit", &status),
        ]);
        let text = if self.json {
            report.to_json() + "\n"
        } else {
            report.to_text()
        };
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
        Some(status)
    }
}

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Serial => "serial",
        Mode::Threads => "threads",
        Mode::Proc => "proc",
    }
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

fn serve(args: ServeArgs) -> Result<u8, Error> {
    let (text, label) = match &args.list {
        Some(path) => (config::read_list(path)?, path.display().to_string()),
        None => (list::BUILTIN.to_string(), "built-in flags.txt".into()),
    };
    let names = list::parse(&text).names;
    if names.is_empty() {
        return Err(Error::EmptyList(format!("list {label}")));
    }
    let config = SiteConfig {
        names,
        delay_ms: args.delay_ms,
        jitter_ms: args.jitter_ms,
        error_rate: args.error_rate,
        image_size: args.image_size,
    };
    let faults = site::FaultConfig {
        fault: args.fault,
        fault_ms: args.fault_ms,
    };
    let mut description = describe_site(&config);
    if let Some(fault) = faults.fault {
        description += &format!(", fault {fault}");
    }
    let bind = SocketAddr::new(args.bind, args.port);
    let site = site::start_on(config, faults, bind)?;
    // Whoever started us may read only the first line and close the pipe; that
    // must not stop the site.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "Serving {description} at {}", site.base_url());
    let _ = writeln!(
        stdout,
        "Request count at http://{}/stats. Stop with Ctrl-C.",
        site.addr()
    );
    let _ = stdout.flush();
    drop(stdout);
    site.wait();
    Ok(exit::OK)
}
