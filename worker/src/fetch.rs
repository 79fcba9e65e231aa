//! Fetching one item: one ureq `Agent` per worker, attempts with back-off, and
//! the classification of every response and failure into an outcome.
//!
//! A 404 or a reset connection is not a Rust error here: it is an outcome that
//! is counted, logged and reported. Every timeout is set, because ureq's default
//! for each is none and a stalled server would hang the worker.
//!
//! An item that carries validators (a conditional re-run) is asked for with
//! `If-None-Match` / `If-Modified-Since`; a 304 then leaves the file alone and
//! the item is `Skipped` ("not modified").

use std::borrow::Cow;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ureq::http::header::{
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, RETRY_AFTER,
};
use ureq::http::HeaderMap;
use ureq::Proxy;

use crate::blur;
use crate::digest::{HexDigest, Sha256Digest};
use crate::http;
use crate::log::{Line, LogFile, OrDash};
use crate::polite::{host_key, Gate};
use crate::protocol::{FetchSettings, Item, ItemReport, Status, Validators};
use crate::save::{check_file_name, extension_for_type, save_stream, Expect, SaveError, DISK_FULL};

/// First back-off delay; doubled for each further attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest back-off, and the cap on a server's `Retry-After`.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How much of an item's time may be gone before its attempt gets a timeout
/// of its own (see `attempt`): what a deadline may be overrun by.
const BUDGET_SLACK: Duration = Duration::from_millis(1);
/// How much of an error body is read to keep the connection reusable.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// Longest `ETag` / `Last-Modified` kept for the next run; real ones are tens
/// of bytes, and the master stores them in its sidecar file.
const MAX_VALIDATOR_LEN: usize = 512;

/// Who is fetching: written into every log line and report.
#[derive(Clone, Debug)]
pub struct WorkerId {
    pub worker: u32,
    pub pid: u32,
    pub thread: u32,
}

/// Fetches and saves items. Cloning shares the connection pool; each worker
/// thread takes its own with [`Fetcher::for_thread`].
#[derive(Clone)]
pub struct Fetcher {
    agents: http::Agents,
    settings: Arc<FetchSettings>,
    dest: Arc<PathBuf>,
    /// The run's politeness caps, shared with every other worker; `None` when
    /// no cap is in effect, which costs nothing.
    gate: Option<Arc<Gate>>,
}

/// The result of one attempt.
struct Attempt {
    status: Status,
    http: Option<u16>,
    bytes: u64,
    reason: Option<String>,
    /// Worth another attempt (connection errors, timeouts, 408, 429, 5xx).
    transient: bool,
    retry_after: Option<Duration>,
    /// The response's `ETag` and `Last-Modified`, for the next conditional run.
    seen: Validators,
    /// Time spent in the blur stage, when it ran.
    blur_ms: Option<u64>,
    /// The body's size, when the blur stage rewrote what was saved.
    fetched: Option<u64>,
    /// The saved file's SHA-256, when the run hashes.
    sha256: Option<Sha256Digest>,
    /// With `--keep-original`, the blurred copy's SHA-256.
    blurred_sha256: Option<Sha256Digest>,
    /// The name saved under, when the worker added an extension.
    saved_as: Option<String>,
    /// The body did not have the expected SHA-256.
    mismatch: bool,
    /// The file system of the destination is full.
    disk_full: bool,
}

impl Attempt {
    fn failed(reason: String, http: Option<u16>, transient: bool) -> Attempt {
        Attempt {
            status: Status::Error,
            http,
            bytes: 0,
            reason: Some(reason),
            transient,
            retry_after: None,
            seen: Validators::default(),
            blur_ms: None,
            fetched: None,
            sha256: None,
            blurred_sha256: None,
            saved_as: None,
            mismatch: false,
            disk_full: false,
        }
    }
}

impl Fetcher {
    pub fn new(settings: FetchSettings, dest: PathBuf) -> Fetcher {
        let agents = http::Agents::new(&settings);
        // An absolute dest spares the temporary-file code a getcwd per item.
        let dest = std::path::absolute(&dest).unwrap_or(dest);
        Fetcher {
            agents,
            settings: Arc::new(settings),
            dest: Arc::new(dest),
            gate: None,
        }
    }

    /// The same fetcher with a connection pool of its own, for one worker
    /// thread. ureq's pool is one mutex around a list that every checkout and
    /// every return walks whole, comparing keys, and a checkout probes the
    /// socket while holding the lock; shared by 256 threads that was a queue
    /// on every request. A thread holds one connection at a time, so a pool of
    /// its own reuses connections just as well.
    pub fn for_thread(&self) -> Fetcher {
        Fetcher {
            agents: self.agents.for_thread(),
            ..self.clone()
        }
    }

    /// Makes every attempt wait for the run's politeness caps (`--max-rps`,
    /// `--per-host`) first.
    pub fn with_gate(mut self, gate: Arc<Gate>) -> Fetcher {
        self.gate = Some(gate);
        self
    }

    /// Fetches and saves one item, retrying transient failures within the
    /// item's deadline, and logs one line per attempt and, after the last,
    /// the item's outcome (`item_done`). This is the one fetch path of every
    /// mode.
    pub fn fetch(&self, item: &Item, who: &WorkerId, log: &LogFile) -> ItemReport {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.settings.timeout_ms);
        let max_attempts = self.settings.retries.saturating_add(1);
        let log = ItemLog { log, who, item };
        // When the first attempt began, after its wait for a politeness slot:
        // `item_done`'s `ms` counts from there.
        let mut first_began = None;
        let mut attempt_no = 0;
        // An attempt has already found a wrong checksum.
        let mut mismatched = false;
        loop {
            attempt_no += 1;
            // The first attempt begins with the item: without a politeness
            // cap, the log's `ms` of the item and the report's are one figure.
            let mut began = if attempt_no == 1 {
                started
            } else {
                Instant::now()
            };
            let mut waited = None;
            let attempt = if crate::stopping() {
                Attempt::failed("interrupted".into(), None, false)
            } else if let Err(e) = check_file_name(&item.file) {
                // Refused before asking for a slot: no request is made.
                Attempt::failed(e.to_string(), None, false)
            } else {
                let remaining = deadline.saturating_duration_since(began);
                match self
                    .gate
                    .as_deref()
                    .map(|g| g.admit(host_key(&item.url), remaining))
                {
                    None => self.attempt(item, remaining),
                    Some(Err(refused)) => {
                        let now = Instant::now();
                        waited = Some(now - began);
                        began = now;
                        Attempt::failed(refused.to_string(), None, false)
                    }
                    Some(Ok(_pass)) => {
                        // The pass is held until the attempt is over, body included.
                        let admitted = Instant::now();
                        waited = Some(admitted - began);
                        began = admitted;
                        self.attempt(item, deadline.saturating_duration_since(admitted))
                    }
                }
            };
            let first = *first_began.get_or_insert(began);
            let ended = Instant::now();
            // Decided before the line is written, which says whether it was the last.
            let wait = backoff(attempt_no, attempt.retry_after);
            // A wrong checksum is retried once, not `--retries` times.
            let retry = attempt.transient
                && !(attempt.mismatch && mismatched)
                && attempt_no < max_attempts
                && ended + wait < deadline
                && !crate::stopping();
            mismatched |= attempt.mismatch;
            let span = Span {
                began,
                ended,
                now: SystemTime::now(),
            };
            let done = (!retry).then(|| millis(ended - first));
            log.attempt(attempt_no, &attempt, &span, waited, done);
            if retry && sleep_unless_stopped(wait) {
                continue;
            }
            let ended = if retry {
                // A stop cut the back-off short: this attempt was the last
                // after all, and its line said otherwise.
                let now = Instant::now();
                log.done(&attempt, attempt_no, millis(now - first));
                now
            } else {
                ended
            };
            return ItemReport {
                index: item.index,
                name: item.name.clone(),
                status: attempt.status,
                http: attempt.http,
                bytes: attempt.bytes,
                ms: millis(ended - started),
                attempts: attempt_no,
                reason: attempt.reason,
                blur_ms: attempt.blur_ms,
                fetched: attempt.fetched,
                worker: who.worker,
                thread: who.thread,
                etag: attempt.seen.etag,
                last_modified: attempt.seen.last_modified,
                sha256: attempt.sha256.map(|d| Box::new(HexDigest(d))),
                blurred_sha256: attempt.blurred_sha256.map(|d| Box::new(HexDigest(d))),
                saved_as: attempt.saved_as,
                disk_full: attempt.disk_full,
            };
        }
    }

    /// One request with at most `budget` for all of it.
    /// The file name has been checked by the caller.
    fn attempt(&self, item: &Item, budget: Duration) -> Attempt {
        let chosen = match self.agents.for_url(&item.url) {
            Ok(chosen) => chosen,
            Err(reason) => return Attempt::failed(reason, None, false),
        };
        let mut request = chosen.agent.get(&item.url);
        for (name, value) in &self.settings.headers {
            request = request.header(name, value);
        }
        if let Some(v) = &item.validators {
            if let Some(etag) = &v.etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(date) = &v.last_modified {
                request = request.header(IF_MODIFIED_SINCE, date);
            }
        }
        // The agent's own global timeout is the whole `--timeout`: a request
        // of its own (a copy of the agent's configuration) is needed only
        // once part of the item's budget is spent, by earlier attempts or a
        // wait for a politeness slot.
        let full = Duration::from_millis(self.settings.timeout_ms);
        let called = if full.saturating_sub(budget) <= BUDGET_SLACK {
            request.call()
        } else {
            request.config().timeout_global(Some(budget)).build().call()
        };
        let mut response = match called {
            Ok(r) => r,
            Err(e) => {
                let (reason, transient) = describe_failure(&e, chosen.proxy, &item.url);
                return Attempt::failed(reason, None, transient);
            }
        };
        let code = response.status().as_u16();
        let seen = validators_of(response.headers());
        if code == 304 && item.validators.is_some() {
            // Not modified: the file in the destination stays as it is. A 304
            // has no body, but reading to its end keeps the connection pooled.
            let _ = io::copy(
                &mut response.body_mut().as_reader().take(DRAIN_LIMIT),
                &mut io::sink(),
            );
            return Attempt {
                status: Status::Skipped,
                http: Some(code),
                // The master hashes the kept file for `--manifest`.
                saved_as: self.settings.hash.then(|| item.file.clone()),
                bytes: 0,
                reason: Some("not modified".into()),
                transient: false,
                retry_after: None,
                seen,
                ..Attempt::failed(String::new(), None, false)
            };
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start().to_ascii_lowercase())
            .unwrap_or_default();
        let html = content_type.starts_with("text/html");
        if response.status().is_success() && !html {
            // With a content encoding the declared length is that of the
            // encoded body, not of what we save.
            let expected = if response.headers().contains_key(CONTENT_ENCODING) {
                None
            } else {
                response
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if expected.is_some_and(|len| len > self.settings.max_size) {
                // Refused on its declaration, without streaming it to disk first.
                let reason = SaveError::TooLarge(self.settings.max_size).to_string();
                return Attempt::failed(reason, Some(code), false);
            }
            let expect = Expect {
                max_size: self.settings.max_size,
                len: expected,
                jpeg: content_type.starts_with("image/jpeg"),
                hash: self.settings.hash,
                sha256: item.sha256,
            };
            let file = match extension_for_type(&content_type).filter(|_| item.ext_from_type) {
                Some(ext) => Cow::Owned(format!("{}.{ext}", item.file)),
                None => Cow::Borrowed(item.file.as_str()),
            };
            let mut body = response.body_mut().as_reader();
            return match save_stream(&self.dest, &file, &mut body, expect) {
                Ok(saved) => Attempt {
                    // The manifest names the file its digest is of.
                    saved_as: (saved.sha256.is_some() || matches!(file, Cow::Owned(_)))
                        .then(|| file.to_string()),
                    ..self.after_save(&file, code, saved.bytes, saved.sha256, seen)
                },
                Err(e) => {
                    // A cut connection can also cause a wrong checksum: it is
                    // retried, but once only (see `fetch`).
                    let mismatch = matches!(e, SaveError::ChecksumMismatch { .. });
                    let transient = mismatch
                        || matches!(e, SaveError::Read(_) | SaveError::LengthMismatch { .. });
                    // A full disk ends the run's work, not only this item's.
                    let disk_full = e.is_disk_full();
                    if disk_full {
                        crate::note_disk_full();
                    }
                    let reason = match &e {
                        SaveError::Read(io) => describe_io(io, &item.url).0,
                        _ if disk_full => DISK_FULL.to_string(),
                        other => other.to_string(),
                    };
                    Attempt {
                        mismatch,
                        disk_full,
                        ..Attempt::failed(reason, Some(code), transient)
                    }
                }
            };
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Reading a small error body to its end returns the connection to the pool.
        let _ = io::copy(
            &mut response.body_mut().as_reader().take(DRAIN_LIMIT),
            &mut io::sink(),
        );
        if html && response.status().is_success() {
            // An HTML "error page" served with 200 is not the file we asked for.
            return Attempt::failed(
                "unexpected content type text/html".into(),
                Some(code),
                false,
            );
        }
        if code == 404 || code == 410 {
            return Attempt {
                status: Status::NotFound,
                http: Some(code),
                bytes: 0,
                reason: Some(format!("HTTP {code}")),
                ..Attempt::failed(String::new(), Some(code), false)
            };
        }
        let transient = code == 408 || code == 429 || (500..600).contains(&code);
        Attempt {
            retry_after,
            ..Attempt::failed(format!("HTTP {code}"), Some(code), transient)
        }
    }
}

impl Fetcher {
    /// The outcome of a saved body: OK, after the blur stage when `--blur`
    /// asks for it. An image that cannot be blurred fails the item for good
    /// (another download would bring the same bytes) and leaves no file.
    fn after_save(
        &self,
        file: &str,
        code: u16,
        bytes: u64,
        sha256: Option<Sha256Digest>,
        seen: Validators,
    ) -> Attempt {
        let ok = Attempt {
            status: Status::Ok,
            http: Some(code),
            bytes,
            reason: None,
            seen,
            sha256,
            ..Attempt::failed(String::new(), None, false)
        };
        let Some(sigma) = self.settings.blur else {
            return ok;
        };
        let keep = self.settings.keep_original;
        let watch = blur::CpuStopwatch::start();
        let hash = sha256.is_some();
        let result = blur::blur_file(&self.dest, file, sigma, keep, self.settings.max_size, hash);
        let blur_ms = Some(watch.elapsed_ms());
        match result {
            // The reported bytes are those written to the dest, as without --blur.
            Ok(blurred) => Attempt {
                bytes: if keep {
                    bytes + blurred.bytes
                } else {
                    blurred.bytes
                },
                blur_ms,
                fetched: Some(bytes),
                // The digests of the files as written.
                sha256: if keep { sha256 } else { blurred.sha256 },
                blurred_sha256: if keep { blurred.sha256 } else { None },
                ..ok
            },
            Err(e) => {
                let _ = std::fs::remove_file(self.dest.join(file));
                Attempt {
                    blur_ms,
                    ..Attempt::failed(e.to_string(), Some(code), false)
                }
            }
        }
    }
}

/// When an attempt ran: from `began` to `ended`, which was `now` by the clock.
struct Span {
    began: Instant,
    ended: Instant,
    now: SystemTime,
}

/// Writes what the log says of one item (see docs/logs.md).
struct ItemLog<'a> {
    log: &'a LogFile,
    who: &'a WorkerId,
    item: &'a Item,
}

impl ItemLog<'_> {
    /// The line of attempt `attempt_no`, which waited `waited` for a
    /// politeness slot before it began. `done`: it was the item's last, which
    /// took `done` ms in all, and its `item_done` line goes in the same write.
    fn attempt(
        &self,
        attempt_no: u32,
        attempt: &Attempt,
        span: &Span,
        waited: Option<Duration>,
        done: Option<u64>,
    ) {
        let took = span.ended - span.began;
        let start = span.now.checked_sub(took).unwrap_or(span.now);
        let mut line = Line::new(span.now, if done.is_some() { 448 } else { 256 });
        line.field("event", &"attempt")
            .field("worker", &self.who.worker)
            .field("pid", &self.who.pid)
            .field("thread", &self.who.thread)
            .field("item", &self.item.name)
            .field("attempt", &attempt_no)
            .field("last", &done.is_some())
            .field("start", &humantime::format_rfc3339_millis(start))
            .field("ms", &millis(took))
            .field("status", &attempt.status.label())
            .field("http", &OrDash(attempt.http))
            .field("bytes", &attempt.bytes);
        if let Some(blur_ms) = &attempt.blur_ms {
            line.field("blur_ms", blur_ms);
        }
        line.field("url", &self.item.url);
        // Only with a politeness cap: how long the attempt waited for it.
        if let Some(waited) = waited {
            line.field("wait_ms", &millis(waited));
        }
        if let Some(reason) = &attempt.reason {
            line.field("reason", reason);
        }
        if let Some(ms) = done {
            line.next_line(span.now);
            self.done_fields(&mut line, attempt, attempt_no, ms);
        }
        self.log.write(&line.finish());
    }

    /// The item's `item_done` line on its own, when the line of its last
    /// attempt did not know it was the last.
    fn done(&self, attempt: &Attempt, attempts: u32, ms: u64) {
        let mut line = Line::new(SystemTime::now(), 192);
        self.done_fields(&mut line, attempt, attempts, ms);
        self.log.write(&line.finish());
    }

    fn done_fields(&self, line: &mut Line, attempt: &Attempt, attempts: u32, ms: u64) {
        line.field("event", &"item_done")
            .field("worker", &self.who.worker)
            .field("pid", &self.who.pid)
            .field("thread", &self.who.thread)
            .field("item", &self.item.name)
            .field("status", &attempt.status.label())
            .field("attempts", &attempts)
            .field("ms", &ms)
            .field("bytes", &attempt.bytes)
            .field("http", &OrDash(attempt.http));
        if let Some(reason) = &attempt.reason {
            line.field("reason", reason);
        }
    }
}

/// Sleeps for `wait` unless the run is stopping; false if it was stopped.
fn sleep_unless_stopped(wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while !crate::stopping() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Exponential back-off with jitter (between half and all of the step), or the
/// server's `Retry-After` when it gave one; both capped.
fn backoff(attempt_no: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(BACKOFF_MAX);
    }
    let step = BACKOFF_BASE
        .saturating_mul(1 << attempt_no.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    step / 2 + step.mul_f64(fastrand::f64() / 2.0)
}

/// The `ETag` and `Last-Modified` of a response, when they are short, visible
/// ASCII (so they can be sent back as request headers as they are).
fn validators_of(headers: &HeaderMap) -> Validators {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_VALIDATOR_LEN)
            .map(str::to_string)
    };
    Validators {
        etag: get(ETAG),
        last_modified: get(LAST_MODIFIED),
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A short reason for a failed request of `url`, and whether another
/// attempt may help. TLS failures (an untrusted or expired certificate, a
/// failed handshake) are permanent: the next attempt meets the same server.
fn describe_ureq(e: &ureq::Error, url: &str) -> (String, bool) {
    match e {
        ureq::Error::Timeout(t) => (format!("timeout ({t})"), true),
        ureq::Error::Io(io) => describe_io(io, url),
        ureq::Error::ConnectionFailed => ("connection failed".into(), true),
        ureq::Error::HostNotFound => ("host not found".into(), false),
        ureq::Error::TooManyRedirects => ("too many redirects".into(), false),
        // Garbage on a pooled connection (left by an earlier, broken response)
        // shows up as a protocol error; a fresh connection may well succeed.
        ureq::Error::Protocol(p) => (format!("protocol error: {p}"), true),
        ureq::Error::BadUri(u) => (format!("bad url: {u}"), false),
        ureq::Error::Tls(t) => (format!("TLS: {t}"), false),
        ureq::Error::Rustls(t) => (describe_tls(t, url), false),
        other => (other.to_string(), false),
    }
}

/// A short reason for a failed request, sent directly or through `proxy`,
/// and whether another attempt may help.
pub fn describe_failure(e: &ureq::Error, proxy: Option<&Proxy>, url: &str) -> (String, bool) {
    match proxy {
        Some(proxy) => describe_via_proxy(e, proxy, url),
        None => describe_ureq(e, url),
    }
}

/// A short reason for a failed request that went through `proxy`. ureq
/// connects to the proxy itself, which connects to the site, so a failure to
/// connect is the proxy's; the proxy's answer to the CONNECT (or to the SOCKS
/// handshake) says what became of the site.
fn describe_via_proxy(e: &ureq::Error, proxy: &Proxy, url: &str) -> (String, bool) {
    let name = crate::proxy::host_port(proxy);
    let unreachable = |why: &str| (format!("proxy {name} unreachable: {why}"), true);
    match e {
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            ) =>
        {
            unreachable(&describe_io(io, url).0)
        }
        ureq::Error::Io(io) if crate::proxy::is_socks(proxy) => {
            describe_socks(io, proxy.username().is_some(), &name)
                .unwrap_or_else(|| describe_io(io, url))
        }
        ureq::Error::ConnectionFailed => unreachable("connection failed"),
        ureq::Error::Timeout(ureq::Timeout::Connect) => unreachable("connect timeout"),
        // A SOCKS5 or SOCKS4 proxy gets the site's address: its name was
        // looked up here, and the failure may be the site's.
        ureq::Error::HostNotFound if !proxy.resolve_target() => {
            (format!("proxy {name}: host not found"), false)
        }
        ureq::Error::ConnectProxyFailed(why) => {
            // `proxy server responded 502/Bad Gateway`: the site's fault,
            // retried like a 5xx; `407`, `403`: the proxy's refusal, final.
            let code = why
                .strip_prefix("proxy server responded ")
                .and_then(|rest| rest.get(..3))
                .and_then(|c| c.parse::<u16>().ok());
            let reason = match code {
                Some(code) => format!("proxy {name} answered {code} to CONNECT"),
                None => format!("proxy {name}: {why}"),
            };
            (reason, code.is_none_or(|c| c >= 500))
        }
        other => describe_ureq(other, url),
    }
}

/// A failed SOCKS handshake with proxy `name` in words, and whether another
/// attempt may help; `None` for an I/O error that is not one. ureq reports
/// each as an I/O error whose text is all there is to tell them apart (its
/// `unversioned/transport/socks.rs`, ureq 3.5.1): `login` is whether a user
/// and password were offered. The proxy's failing to reach the site is
/// retried like a connection error; a refusal or a reply that is not SOCKS
/// is final.
fn describe_socks(e: &io::Error, login: bool, name: &str) -> Option<(String, bool)> {
    let text = e.get_ref()?.to_string();
    let site = |why: &str| {
        (
            format!("proxy {name} could not reach the site: {why}"),
            true,
        )
    };
    let fin = |why: &str| (format!("proxy {name} {why}"), false);
    Some(match text.as_str() {
        // SOCKS5's replies (RFC 1928), then SOCKS4's.
        "general SOCKS server failure" => site("general failure"),
        "network unreachable" | "host unreachable" | "connection refused" | "TTL expired" => {
            site(&text)
        }
        "request rejected or failed" => site("rejected or failed"),
        "connection not allowed by ruleset" => fin("does not allow this connection (its rules)"),
        "command not supported" => fin("does not support CONNECT"),
        "address kind not supported" => fin("does not take this kind of address"),
        "SOCKS4 does not support IPv6" => fin("speaks SOCKS4, which cannot reach an IPv6 address"),
        "domain name too long" => fin("cannot be given a host name over 255 bytes"),
        t if t.contains("identd") => fin("refused the connection (its identd check failed)"),
        // Authentication (RFC 1929).
        "password authentication failed" => fin("refused the user name or password"),
        "no acceptable auth methods" if login => {
            fin("accepts none of the login methods offered (none; user and password)")
        }
        "no acceptable auth methods" => fin("wants a user name and password"),
        "unknown auth method" => fin("asked for a login method that was not offered"),
        "invalid username" | "invalid password" => {
            fin("needs a user name and password of 1 to 255 bytes each")
        }
        // Whatever answered does not speak SOCKS (an HTTP proxy, say).
        "invalid response version"
        | "invalid reserved byte"
        | "invalid response code"
        | "unsupported address type" => {
            fin("gave a reply that is not SOCKS (is it a SOCKS proxy?)")
        }
        "unknown error" => fin("answered with an unknown SOCKS error code"),
        _ => return None,
    })
}

/// A short reason for an I/O failure, unwrapping the ureq and rustls errors
/// carried inside, and whether another attempt may help.
fn describe_io(e: &io::Error, url: &str) -> (String, bool) {
    if let Some(inner) = e.get_ref() {
        if let Some(ureq) = inner.downcast_ref::<ureq::Error>() {
            return describe_ureq(ureq, url);
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return (describe_tls(tls, url), false);
        }
    }
    // std reports a failed `getaddrinfo` only as text, its error code in
    // words after this prefix.
    if let Some(why) = e
        .to_string()
        .strip_prefix("failed to lookup address information: ")
    {
        let host = host_of(url);
        return match why.starts_with("Temporary failure") {
            // EAI_AGAIN: the resolver did not answer in time.
            true => (format!("cannot look up {host}: DNS did not answer"), true),
            false => (format!("host not found: {host}"), false),
        };
    }
    let reason = match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::UnexpectedEof => "connection closed early".into(),
        io::ErrorKind::TimedOut => "timeout".into(),
        _ => format!("i/o: {e}"),
    };
    (reason, true)
}

/// A TLS failure in words (rustls's own text is its `Debug` form:
/// `invalid peer certificate: UnknownIssuer`).
fn describe_tls(e: &rustls::Error, url: &str) -> String {
    use rustls::CertificateError as C;
    let host = || host_of(url);
    let why = match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => {
                format!("certificate for {} is not trusted (unknown issuer)", host())
            }
            C::Expired | C::ExpiredContext { .. } => "certificate expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet".into(),
            C::NotValidForName => format!("name mismatch (certificate is not for {})", host()),
            C::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
                format!("name mismatch (certificate is for {})", names.join(", "))
            }
            C::NotValidForNameContext { .. } => "name mismatch (certificate names no host)".into(),
            C::Revoked => "certificate revoked".into(),
            C::BadSignature
            | C::UnsupportedSignatureAlgorithmContext { .. }
            | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                "certificate signature not accepted".into()
            }
            C::BadEncoding => "certificate is malformed".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "certificate is not for a server".into()
            }
            C::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
                format!(
                    "certificate for {} is a CA certificate, not a server's",
                    host()
                )
            }
            _ => format!("certificate for {} not accepted", host()),
        },
        rustls::Error::NoCertificatesPresented => "handshake failed (no certificate)".into(),
        rustls::Error::AlertReceived(_) => "handshake failed (refused by the server)".into(),
        rustls::Error::InvalidMessage(_) => {
            "handshake failed (malformed message: is the server speaking TLS?)".into()
        }
        rustls::Error::PeerIncompatible(_) => {
            "handshake failed (no TLS version or cipher in common)".into()
        }
        rustls::Error::PeerMisbehaved(_) => {
            "handshake failed (the server broke the protocol)".into()
        }
        rustls::Error::General(why) => format!("handshake failed ({why})"),
        _ => "handshake failed".into(),
    };
    format!("TLS: {why}")
}

/// The host of a URL, as a certificate must name it.
fn host_of(url: &str) -> String {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()))
        .unwrap_or_else(|| "the server".into())
}

/// A name as webpki presents it (`DnsName("localhost")`, `IpAddress(127.0.0.1)`),
/// without the wrapping.
fn plain_name(presented: &str) -> &str {
    let inner = presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(presented);
    inner.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_lookups_name_the_host() {
        // As std words a failed `getaddrinfo`, EAI_NONAME then EAI_AGAIN.
        let lookup = |why: &str| {
            let e = io::Error::other(format!("failed to lookup address information: {why}"));
            describe_io(&e, "http://flags.example:8000/f/Chad.jpg")
        };
        assert_eq!(
            lookup("Name or service not known"),
            ("host not found: flags.example".to_string(), false)
        );
        assert_eq!(
            lookup("Temporary failure in name resolution"),
            (
                "cannot look up flags.example: DNS did not answer".to_string(),
                true
            )
        );
    }

    #[test]
    fn tls_failures_are_permanent_and_in_words() {
        use rustls::pki_types::ServerName;
        use rustls::{CertificateError as C, Error as E, OtherError};
        let url = "https://127.0.0.1:8443/f/Chad.jpg";
        let cases: Vec<(E, &str)> = vec![
            (
                C::UnknownIssuer.into(),
                "TLS: certificate for 127.0.0.1 is not trusted (unknown issuer)",
            ),
            (C::Expired.into(), "TLS: certificate expired"),
            (C::NotValidYet.into(), "TLS: certificate not valid yet"),
            (
                C::NotValidForNameContext {
                    expected: ServerName::try_from("127.0.0.1").unwrap(),
                    presented: vec![r#"DnsName("localhost")"#.into()],
                }
                .into(),
                "TLS: name mismatch (certificate is for localhost)",
            ),
            (
                C::NotValidForNameContext {
                    expected: ServerName::try_from("example.org").unwrap(),
                    presented: vec![r#"DnsName("a.test")"#.into(), "IpAddress(10.0.0.1)".into()],
                }
                .into(),
                "TLS: name mismatch (certificate is for a.test, 10.0.0.1)",
            ),
            (C::Revoked.into(), "TLS: certificate revoked"),
            (
                C::Other(OtherError(std::sync::Arc::new(io::Error::other(
                    "CaUsedAsEndEntity",
                ))))
                .into(),
                "TLS: certificate for 127.0.0.1 is a CA certificate, not a server's",
            ),
            (
                E::NoCertificatesPresented,
                "TLS: handshake failed (no certificate)",
            ),
            (
                E::General("no luck".into()),
                "TLS: handshake failed (no luck)",
            ),
        ];
        for (error, want) in cases {
            // As ureq hands it over: an I/O error carrying rustls's.
            let io = io::Error::new(io::ErrorKind::InvalidData, error.clone());
            let wrapped = ureq::Error::Io(io);
            assert_eq!(describe_ureq(&wrapped, url), (want.to_string(), false));
            let direct = ureq::Error::Rustls(error);
            assert_eq!(describe_ureq(&direct, url), (want.to_string(), false));
            assert!(
                !want.contains("Context") && !want.contains("Error("),
                "{want}"
            );
        }
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            describe_ureq(&ureq::Error::Io(refused), url),
            ("connection refused".to_string(), true)
        );
    }

    /// A one-connection SOCKS proxy on 127.0.0.1 that answers `replies`
    /// whatever it is sent, and the reason flagmaster gives for a request
    /// of `url` through it as `scheme://[login@]`, after `proxy HOST:PORT `.
    fn through_fake_socks(scheme: &str, login: &str, url: &str, replies: &[u8]) -> (String, bool) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let replies = replies.to_vec();
        listener.set_nonblocking(true).unwrap();
        let server = std::thread::spawn(move || {
            let started = Instant::now();
            let mut conn = loop {
                match listener.accept() {
                    Ok((conn, _)) => break conn,
                    Err(_) if started.elapsed() < Duration::from_secs(5) => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("no client: {e}"),
                }
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = conn.write_all(&replies);
            // Until the client hangs up, so that its writes never meet a reset.
            let _ = io::copy(&mut conn, &mut io::sink());
        });
        let proxy = Proxy::new(&format!("{scheme}://{login}127.0.0.1:{port}")).unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(Some(proxy.clone()))
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let error = agent.get(url).call().unwrap_err();
        server.join().unwrap();
        let (reason, transient) = describe_failure(&error, Some(&proxy), url);
        let name = format!("proxy 127.0.0.1:{port} ");
        let rest = reason
            .strip_prefix(&name)
            .unwrap_or_else(|| panic!("{reason}"));
        (rest.to_string(), transient)
    }

    #[test]
    fn socks_failures_are_in_words() {
        let url = "http://10.0.0.1/Chad.jpg";
        // SOCKS5's replies to CONNECT: the proxy could not reach the site
        // (retried), or would not (final).
        for (code, want, retried) in [
            (1, "could not reach the site: general failure", true),
            (3, "could not reach the site: network unreachable", true),
            (4, "could not reach the site: host unreachable", true),
            (5, "could not reach the site: connection refused", true),
            (6, "could not reach the site: TTL expired", true),
            (2, "does not allow this connection (its rules)", false),
            (7, "does not support CONNECT", false),
            (8, "does not take this kind of address", false),
            (9, "answered with an unknown SOCKS error code", false),
        ] {
            let got = through_fake_socks("socks5", "", url, &[5, 0, 5, code]);
            assert_eq!(got, (want.to_string(), retried), "reply {code}");
        }
        const NOT_SOCKS: &str = "gave a reply that is not SOCKS (is it a SOCKS proxy?)";
        const ID: &str = "refused the connection (its identd check failed)";
        let long = format!("http://{}.org/Chad.jpg", "x".repeat(260));
        let v6 = "http://[::1]/Chad.jpg";
        // rustfmt would spread each case over seven lines.
        #[rustfmt::skip]
        let cases: [(&str, &str, &str, &[u8], &str); 16] = [
            ("socks5", "u:pw@", url, &[5, 2, 1, 1], "refused the user name or password"),
            ("socks5", "", url, &[5, 0xff], "wants a user name and password"),
            ("socks5", "u:pw@", url, &[5, 0xff],
                "accepts none of the login methods offered (none; user and password)"),
            ("socks5", "", url, &[5, 2], "asked for a login method that was not offered"),
            // The master refuses such a URL first (`proxy::check`).
            ("socks5", "u:@", url, &[5, 2],
                "needs a user name and password of 1 to 255 bytes each"),
            ("socks5h", "", &long, &[5, 0], "cannot be given a host name over 255 bytes"),
            // An HTTP server where a SOCKS proxy was expected, or a broken one.
            ("socks5", "", url, b"HTTP/1.1 400 Bad Request\r\n\r\n", NOT_SOCKS),
            ("socks5", "", url, &[5, 0, 5, 0, 1, 1], NOT_SOCKS),
            ("socks5", "", url, &[5, 0, 5, 0, 0, 2], NOT_SOCKS),
            ("socks5", "u:pw@", url, &[5, 2, 2, 0], NOT_SOCKS),
            ("socks4", "", url, &[0, 91, 0, 0, 0, 0, 0, 0],
                "could not reach the site: rejected or failed"),
            ("socks4", "", url, &[0, 92, 0, 0, 0, 0, 0, 0], ID),
            ("socks4a", "", url, &[0, 93, 0, 0, 0, 0, 0, 0], ID),
            ("socks4", "", url, &[0, 94, 0, 0, 0, 0, 0, 0], NOT_SOCKS),
            ("socks4a", "", url, &[4, 90, 0, 0, 0, 0, 0, 0], NOT_SOCKS),
            ("socks4", "", v6, &[], "speaks SOCKS4, which cannot reach an IPv6 address"),
        ];
        for (scheme, login, url, replies, want) in cases {
            let got = through_fake_socks(scheme, login, url, replies);
            let retried = want.starts_with("could not reach");
            assert_eq!(got, (want.to_string(), retried), "{scheme} {replies:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let step = BACKOFF_BASE
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(BACKOFF_MAX);
            let d = backoff(attempt, None);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3600))),
            BACKOFF_MAX,
            "Retry-After is capped"
        );
    }
}
