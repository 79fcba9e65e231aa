//! What a run says before it starts: the notes on stdout (the site, the mode
//! line, politeness, blur), warnings on stderr, and the `start` line of
//! `master.log`. Also builds the [`RunInfo`] the report repeats.

use std::io::Write;

use flagmaster_worker::log::LogFile;
use flagmaster_worker::polite::Region;
use flagmaster_worker::proxy::redact;

use super::{Found, SiteInUse};
use crate::cli::Mode;
use crate::config::{RunConfig, Server};
use crate::input::rerun::Prepared;
use crate::plan::{Chunking, Plan};
use crate::report::RunInfo;

/// Prints the notes and warnings, logs the start, and returns the run's info.
pub(super) fn announce(
    config: &RunConfig,
    plan: &Plan,
    site: &SiteInUse,
    found: &Found,
    prepared: &Prepared,
    region: Option<&Region>,
    log: &LogFile,
) -> RunInfo {
    // Guided chunks only shrink, so the first is the largest.
    let chunk_size = plan.chunking.next(prepared.to_fetch.len());
    let info = RunInfo {
        mode: mode_name(plan.mode).to_string(),
        procs: plan.procs,
        threads: plan.threads,
        pin: plan.pin,
        site: site.short_label().to_string(),
        base_url: site.base_url.clone(),
        list: config.list_label.clone(),
        dest: config.dest.display().to_string(),
        log_dir: config.log_dir.display().to_string(),
        chunk_size,
        shard: found.shard,
        max_rps: plan.polite.limits.max_rps,
        per_host: plan.polite.limits.per_host,
        insecure: plan.fetch.insecure,
    };
    if !config.quiet {
        // With --json, stdout carries the JSON document only.
        let text = notes(
            config,
            plan,
            site,
            found,
            prepared.to_fetch.len(),
            chunk_size,
        );
        let _ = if config.json {
            std::io::stderr().lock().write_all(text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())
        };
    }
    for warning in warnings(config, plan) {
        eprintln!("flagmaster: warning: {warning}");
    }
    log_start(plan, &info, found, region, log);
    info
}

fn notes(
    config: &RunConfig,
    plan: &Plan,
    site: &SiteInUse,
    found: &Found,
    to_fetch: usize,
    chunk_size: usize,
) -> String {
    let mut out = match config.server {
        Server::Direct => format!("Site: none (full URLs from {})\n", config.list_label),
        _ => format!("Site: {} at {}\n", site.label, site.base_url),
    };
    if let Some(proxy) = crate::proxy::note(&plan.fetch.proxy) {
        out += &format!("Proxy: {proxy}\n");
    }
    let hosts = match config.server {
        Server::Direct => "each host",
        _ => site.base_url.as_str(),
    };
    if let Some(line) = plan.polite.note(hosts) {
        out += &format!("{line}\n");
    }
    let share = match &found.shard {
        Some(info) => format!(
            " (shard {} from {}, of {})",
            info.shard,
            info.shard.source.label(),
            info.list_items
        ),
        None => String::new(),
    };
    out += &format!(
        "Mode: {}, {} x {} thread(s){}{}, {} items{share} from {} in chunks of {}{chunk_size} -> {} (logs in {})\n",
        mode_name(plan.mode),
        plan.procs,
        plan.threads,
        fitted_note(plan.asked, to_fetch, plan.chunking),
        if plan.pin { ", pinned to CPUs" } else { "" },
        found.total,
        config.list_label,
        match plan.chunking {
            Chunking::Fixed(_) => "",
            Chunking::Guided { .. } => "up to ",
        },
        config.dest.display(),
        config.log_dir.display(),
    );
    if let Some(blur) = blur_note(config) {
        out += &format!("Blur: {blur}\n");
    }
    out
}

/// What every `--insecure` run prints.
pub const INSECURE_WARNING: &str =
    "--insecure: HTTPS certificates are not verified; anyone on the path can read and change the downloads";

fn warnings(config: &RunConfig, plan: &Plan) -> Vec<String> {
    let mut warnings = config.ignored.clone();
    if plan.fetch.insecure {
        warnings.push(INSECURE_WARNING.into());
    }
    for dup in &config.duplicates {
        warnings.push(format!("duplicate entry {dup:?} is downloaded once"));
    }
    warnings.extend(
        plan.polite
            .warning(plan.concurrency(), plan.fetch.timeout_ms),
    );
    warnings
}

/// The `start` line of `master.log`: every setting that shapes the run.
fn log_start(plan: &Plan, info: &RunInfo, found: &Found, region: Option<&Region>, log: &LogFile) {
    let (shard_field, shard_source) = match &found.shard {
        Some(s) => (s.shard.to_string(), s.shard.source.key()),
        None => ("none".to_string(), "-"),
    };
    let proxy = &plan.fetch.proxy;
    let redacted = |url: &Option<String>| url.as_deref().map_or("-".to_string(), redact);
    let region_path = region.map_or_else(|| "-".to_string(), |r| r.path().display().to_string());
    log.line(&[
        ("event", &"start"),
        ("pid", &std::process::id()),
        ("mode", &info.mode),
        ("procs", &plan.procs),
        ("threads", &plan.threads),
        // What `--procs` x `--threads` said, when the layout was fitted to the items.
        (
            "asked",
            &plan
                .asked
                .map_or("-".to_string(), |(p, t)| format!("{p}x{t}")),
        ),
        ("pin", &plan.pin),
        ("items", &found.total),
        ("shard", &shard_field),
        ("shard_source", &shard_source),
        (
            "list_items",
            &found.shard.map_or(found.total, |s| s.list_items),
        ),
        ("chunk_size", &info.chunk_size),
        ("site", &info.site),
        ("base_url", &info.base_url),
        ("list", &info.list),
        ("dest", &info.dest),
        ("timeout_ms", &plan.fetch.timeout_ms),
        ("retries", &plan.fetch.retries),
        ("max_size", &plan.fetch.max_size),
        ("headers", &plan.fetch.headers.len()),
        ("max_rps", &or_dash(info.max_rps)),
        ("per_host", &or_dash(info.per_host)),
        ("polite_region", &region_path),
        ("blur", &or_dash(plan.fetch.blur)),
        ("keep_original", &plan.fetch.keep_original),
        // Credentials replaced by `***`.
        ("proxy_http", &redacted(&proxy.http)),
        ("proxy_https", &redacted(&proxy.https)),
        (
            "no_proxy",
            &if proxy.no_proxy.is_empty() {
                "-".to_string()
            } else {
                proxy.no_proxy.join(",")
            },
        ),
        ("insecure", &plan.fetch.insecure),
    ]);
}

/// What the Mode line adds when the layout was fitted to the items.
fn fitted_note(asked: Option<(u32, u32)>, items: usize, chunking: Chunking) -> String {
    let Some((p, t)) = asked else {
        return String::new();
    };
    let s = if items == 1 { "" } else { "s" };
    let chunks = match chunking {
        Chunking::Fixed(c) => format!(" in chunks of {c}"),
        Chunking::Guided { .. } => String::new(),
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

fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Serial => "serial",
        Mode::Threads => "threads",
        Mode::Proc => "proc",
    }
}
