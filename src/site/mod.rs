//! The built-in flag site, so that everything runs offline.
//!
//! It serves every name of its list at `/images/pictures/flags96/{name}.jpg`
//! (the layout of the classic flag site) as a generated JPEG, with an optional
//! delay, jitter and share of errors: Fluent Python's LOCAL, DELAY and ERROR
//! test servers. It runs on tokio so that a slow response is a timer, not a
//! parked thread: thousands of concurrent slow requests cost a few MB.
//!
//! It can also fail on purpose, per name (`{name}__{fault}.jpg`) or for every
//! flag (`serve --fault`): see [`faults`].
//!
//! Healthy answers carry an `ETag` and a `Last-Modified` and honour
//! conditional requests with a 304 (see [`conditional`]).
//!
//! `GET /stats` answers the number of flag requests served so far, in total
//! and by requested name, their arrival times and the most that were in
//! flight at once, as JSON, so tests and benchmarks can see what the clients
//! really asked for, and how fast and how many at a time. With a latency it
//! also says how late each delayed answer was ready: a site sharing its cores
//! with a busy client can be starved of CPU, and then its answers come later
//! than its latency says, which a benchmark would count against the client.

pub mod apis;
pub mod conditional;
mod delay;
pub mod faults;
pub mod flag;
pub mod serve;
pub mod tls;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::sync::oneshot;

pub use faults::{Fault, FaultConfig};
pub use tls::SiteTls;

use crate::error::Error;

/// Where the flags live on the site, as on the real one.
pub const FLAGS_PATH: &str = "/images/pictures/flags96";

/// Pending connections the listener accepts before the kernel drops SYNs; the
/// default of 128 would make a burst of 1000 clients retry their connects.
const BACKLOG: u32 = 4096;

/// How the site behaves.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// Names served; any other name is a 404.
    pub names: Vec<String>,
    /// Fixed delay before every answer, in milliseconds.
    pub delay_ms: u64,
    /// Extra random delay, uniform in `0..=jitter_ms`.
    pub jitter_ms: u64,
    /// Share of requests answered with 503 (0.0 to 1.0).
    pub error_rate: f64,
    /// Width and height of the generated flags, in pixels
    /// ([`flag::WIDTH`] x [`flag::HEIGHT`] unless `--image-size` says otherwise).
    pub image_size: (u32, u32),
}

/// Distinct names `/stats` counts beyond the ones the site can serve: a
/// client asking for endless made-up names must not grow the map forever.
const MAX_OTHER_NAMES: usize = 10_000;

/// Arrival times `/stats` keeps: the most recent ones, so memory stays bounded.
const MAX_ARRIVALS: usize = 100_000;

struct Shared {
    flags: HashMap<String, Flag>,
    /// The raw listener of the faults hyper will not produce (see [`wire`]).
    wire: Wire,
    config: SiteConfig,
    faults: FaultConfig,
    requests: AtomicU64,
    /// Flag requests by requested name (fault suffix included). The counts
    /// also drive the faults that fail only the first requests of a name.
    by_name: Mutex<HashMap<String, u64>>,
    /// When the site started: arrival times are counted from here.
    started: Instant,
    /// Arrival of each flag request, in ms since `started` (the last
    /// [`MAX_ARRIVALS`]), so a test can check a client's request rate.
    arrivals: Mutex<VecDeque<f64>>,
    /// How many answers waited for the latency, and by how many microseconds
    /// each was late: from its deadline until its task ran again (the last
    /// [`MAX_ARRIVALS`]).
    delayed: AtomicU64,
    late_us: Mutex<VecDeque<u32>>,
    /// Flag requests being answered right now, and the most there ever were.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Connections accepted, so a test can check that a client reuses them.
    connections: Arc<AtomicU64>,
    /// The latency's timer, when there is a latency.
    delays: Option<delay::Delays>,
}

/// A flag's JPEG and its `ETag`, made once: the tag is a checksum of the whole
/// body, and computing it for every answer was about a tenth of the site's CPU.
struct Flag {
    jpeg: Bytes,
    etag: HeaderValue,
}

/// Counts a flag request as in flight while it lives; dropped when the answer
/// is ready or when the request is cancelled (the client went away), so an
/// abandoned request is not counted forever.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(site: &'a Shared) -> InFlight<'a> {
        let now = site.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        site.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(site)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Counts a request of `requested` and returns its count so far.
    fn count(&self, requested: &str, servable: bool) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        push_recent(&self.arrivals, ms);
        // A panic while holding the lock cannot leave a count half-updated.
        let mut by_name = self.by_name.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = by_name.get_mut(requested) {
            *count += 1;
            return *count;
        }
        if servable || by_name.len() < MAX_OTHER_NAMES {
            by_name.insert(requested.to_string(), 1);
        }
        1
    }
}

/// Appends to one of `/stats`' lists, keeping only the last [`MAX_ARRIVALS`].
fn push_recent<T>(list: &Mutex<VecDeque<T>>, value: T) {
    let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
    if list.len() == MAX_ARRIVALS {
        list.pop_front();
    }
    list.push_back(value);
}

impl Shared {
    fn record_lateness(&self, late: Duration) {
        let us = u32::try_from(late.as_micros()).unwrap_or(u32::MAX);
        push_recent(&self.late_us, us);
        self.delayed.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits the configured latency; then, for the share of requests that
    /// should fail, the simulated error to answer instead.
    async fn latency_and_errors(&self) -> Option<Response> {
        let config = &self.config;
        let delay = config.delay_ms + fastrand::u64(0..=config.jitter_ms);
        if let (Some(delays), true) = (&self.delays, delay > 0) {
            let due = delays.sleep(Duration::from_millis(delay)).await;
            self.record_lateness(due.elapsed());
        }
        (config.error_rate > 0.0 && fastrand::f64() < config.error_rate)
            .then(|| (StatusCode::SERVICE_UNAVAILABLE, "simulated error\n").into_response())
    }
}

/// `197 flags, 100-300 ms latency, 25% errors`: what a site serves.
pub fn describe(config: &SiteConfig) -> String {
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
    if config.image_size != (flag::WIDTH, flag::HEIGHT) {
        let (w, h) = config.image_size;
        text += &format!(", {w}x{h} px");
    }
    text
}

/// Starts the site for a run or a bench of this process: on 127.0.0.1, on a
/// free port, without faults; over HTTPS with `tls`.
pub fn start_loopback(config: SiteConfig, tls: Option<SiteTls>) -> Result<Site, Error> {
    start_on(
        config,
        FaultConfig::default(),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        tls,
    )
}

/// Starts the site on `bind` with `faults` (`flagmaster serve`); a failure is
/// a set-up error that names the address.
pub fn start_on(
    config: SiteConfig,
    faults: FaultConfig,
    bind: SocketAddr,
    tls: Option<SiteTls>,
) -> Result<Site, Error> {
    Site::start_with_faults(config, faults, bind, tls).map_err(|source| Error::Site {
        addr: bind.to_string(),
        source,
    })
}

/// A running site. Dropping it stops the server.
pub struct Site {
    addr: SocketAddr,
    https: bool,
    /// The CA's certificate (PEM) when the site speaks HTTPS with a
    /// certificate it made.
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Site {
    /// Starts the site on `bind` (port 0 picks a free port) in a background thread.
    pub fn start(config: SiteConfig, bind: SocketAddr) -> io::Result<Site> {
        Site::start_with_faults(config, FaultConfig::default(), bind, None)
    }

    /// As [`Site::start`], with faults for every flag request, and over
    /// HTTPS with `tls` (the raw listener of [`wire`] too).
    pub fn start_with_faults(
        config: SiteConfig,
        faults: FaultConfig,
        bind: SocketAddr,
        tls: Option<SiteTls>,
    ) -> io::Result<Site> {
        // Before the runtime's threads start (see `reserve_descriptors`): a
        // connection per slot of the backlog, plus the site's own.
        flagmaster_worker::reserve_descriptors(BACKLOG as usize + 64);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flag-site")
            .enable_all()
            .build()?;
        let (listener, wire) = runtime.block_on(async {
            let wire_bind = SocketAddr::new(bind.ip(), 0);
            io::Result::Ok((listen(bind)?, listen(wire_bind)?))
        })?;
        let addr = listener.local_addr()?;
        let flags: Arc<HashMap<String, Bytes>> = Arc::new(
            config
                .names
                .iter()
                .map(|name| {
                    let (w, h) = config.image_size;
                    (name.clone(), Bytes::from(flag::flag_jpeg_sized(name, w, h)))
                })
                .collect(),
        );
        let connections = Arc::new(AtomicU64::new(0));
        let delays = if config.delay_ms > 0 || config.jitter_ms > 0 {
            Some(delay::Delays::start(runtime.handle())?)
        } else {
            None
        };
        let (app, shared) = router(
            config,
            faults,
            Arc::clone(&flags),
            Wire {
                addr: wire.local_addr()?,
                https: tls.is_some(),
            },
            Arc::clone(&connections),
            delays,
        );
        let listener = match &tls {
            None => Listening::Plain(listener),
            Some(tls) => {
                let _guard = runtime.enter();
                Listening::Tls(tls::TlsListener::new(listener, tls)?)
            }
        };
        runtime.spawn(wire::serve(
            wire,
            flags,
            tls.as_ref().map(SiteTls::acceptor),
        ));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let thread = std::thread::Builder::new()
            .name("flag-site".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match listener {
                        Listening::Plain(plain) => {
                            axum::serve(plain.tap_io(counter(connections)), app)
                                .with_graceful_shutdown(stopped)
                                .await
                        }
                        Listening::Tls(tls) => {
                            axum::serve(tls.tap_io(counter(connections)), app)
                                .with_graceful_shutdown(stopped)
                                .await
                        }
                    };
                    if let Err(e) = served {
                        eprintln!("flagmaster: built-in site failed: {e}");
                    }
                });
                // Connections still open must not delay the exit of the run.
                runtime.shutdown_background();
            })?;
        Ok(Site {
            addr,
            https: tls.is_some(),
            ca_pem: tls.and_then(|tls| tls.ca_pem),
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the flags, as `--base-url` takes it.
    pub fn base_url(&self) -> String {
        format!("{}{FLAGS_PATH}", self.origin())
    }

    /// `http://127.0.0.1:PORT`, or `https://` over TLS.
    pub fn origin(&self) -> String {
        origin(self.addr, self.https)
    }

    /// The CA certificate (PEM) a client must trust, when the site speaks
    /// HTTPS with a certificate it made.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// How many answers have waited for the latency so far.
    pub fn delayed(&self) -> u64 {
        self.shared.delayed.load(Ordering::Relaxed)
    }

    /// How many microseconds late each answer delayed since [`Site::delayed`]
    /// returned `before` was ready (at most the last [`MAX_ARRIVALS`]). For a
    /// benchmark that runs the site in its own process, between runs: an
    /// answer being recorded meanwhile may be missed.
    pub fn late_us_since(&self, before: u64) -> Vec<u32> {
        let late = self
            .shared
            .late_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let new = usize::try_from(self.delayed().saturating_sub(before)).unwrap_or(usize::MAX);
        late.iter()
            .skip(late.len().saturating_sub(new))
            .copied()
            .collect()
    }

    /// Serves until the thread ends (it does not, short of an error).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// `http://ADDR`, or `https://ADDR`.
fn origin(addr: SocketAddr, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// The raw listener of [`wire`]: its address, and whether it speaks TLS.
#[derive(Debug, Clone, Copy)]
struct Wire {
    addr: SocketAddr,
    https: bool,
}

impl Wire {
    /// Its origin as the client that sent `request` reaches it: the host the
    /// client asked for (`Host`), at the wire listener's port. A site bound
    /// to 0.0.0.0 is reached by some other address than its own.
    fn origin_for(&self, request: &HeaderMap) -> String {
        let asked = request
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
        match asked {
            Some(authority) => {
                let scheme = if self.https { "https" } else { "http" };
                format!("{scheme}://{}:{}", authority.host(), self.addr.port())
            }
            None => origin(self.addr, self.https),
        }
    }
}

/// Counts the connections the site accepts, for `/stats`.
fn counter<T>(connections: Arc<AtomicU64>) -> impl FnMut(&mut T) + Send + 'static {
    move |_| {
        connections.fetch_add(1, Ordering::Relaxed);
    }
}

/// The site's listener: plain HTTP, or HTTPS (`--tls`).
enum Listening {
    Plain(tokio::net::TcpListener),
    Tls(tls::TlsListener),
}

fn listen(bind: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if bind.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(bind)?;
    socket.listen(BACKLOG)
}

fn router(
    config: SiteConfig,
    faults: FaultConfig,
    flags: Arc<HashMap<String, Bytes>>,
    wire: Wire,
    connections: Arc<AtomicU64>,
    delays: Option<delay::Delays>,
) -> (Router, Arc<Shared>) {
    let flags = flags
        .iter()
        .map(|(name, jpeg)| {
            let flag = Flag {
                jpeg: jpeg.clone(),
                etag: conditional::etag_header(jpeg),
            };
            (name.clone(), flag)
        })
        .collect();
    let shared = Arc::new(Shared {
        flags,
        wire,
        config,
        faults,
        requests: AtomicU64::new(0),
        by_name: Mutex::new(HashMap::new()),
        started: Instant::now(),
        arrivals: Mutex::new(VecDeque::new()),
        delayed: AtomicU64::new(0),
        late_us: Mutex::new(VecDeque::new()),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
        connections,
        delays,
    });
    let router = Router::new()
        .route(&format!("{FLAGS_PATH}/{{file}}"), get(serve_flag))
        .route("/stats", get(stats))
        .merge(apis::routes())
        .with_state(Arc::clone(&shared));
    (router, shared)
}

async fn serve_flag(
    State(site): State<Arc<Shared>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let _in_flight = InFlight::enter(&site);
    let requested = file.strip_suffix(".jpg");
    let resolved = requested.and_then(|name| faults::resolve(name, |n| site.flags.contains_key(n)));
    let count = site.count(requested.unwrap_or(&file), resolved.is_some());
    if let Some(failure) = site.latency_and_errors().await {
        return failure;
    }
    let (Some(requested), Some((flag, suffix))) = (requested, resolved) else {
        return (StatusCode::NOT_FOUND, "no such flag\n").into_response();
    };
    let Some(Flag { jpeg, etag }) = site.flags.get(flag) else {
        return (StatusCode::NOT_FOUND, "no such flag\n").into_response();
    };
    // The target of a `redirect` is the healthy flag, whatever `--fault` says.
    let global = match query.as_deref() {
        Some(faults::REDIRECTED_QUERY) => None,
        _ => site.faults.fault,
    };
    match suffix.or(global) {
        None => conditional_flag_response(&headers, jpeg.clone(), etag.clone()),
        Some(fault) => {
            let req = faults::Faulty {
                flag,
                requested,
                jpeg,
                count,
                fault_ms: site.faults.fault_ms,
                wire: site.wire.origin_for(&headers),
            };
            faults::respond(fault, req).await
        }
    }
}

/// The healthy answer: the flag's JPEG, with its validators. (Faults that end
/// in a healthy answer send it as is, whatever the request's conditions.)
fn flag_response(jpeg: Bytes) -> Response {
    let etag = conditional::etag_header(&jpeg);
    tagged_flag_response(jpeg, etag)
}

fn tagged_flag_response(jpeg: Bytes, etag: HeaderValue) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::ETAG, etag),
            (
                header::LAST_MODIFIED,
                HeaderValue::from_static(conditional::LAST_MODIFIED),
            ),
        ],
        jpeg,
    )
        .into_response()
}

/// The healthy answer to a request that may be conditional: 304 without a
/// body when the client already has this flag. Still counted by `/stats`.
fn conditional_flag_response(request: &HeaderMap, jpeg: Bytes, etag: HeaderValue) -> Response {
    if conditional::not_modified(request, etag.to_str().unwrap_or_default()) {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (
                    header::LAST_MODIFIED,
                    HeaderValue::from_static(conditional::LAST_MODIFIED),
                ),
            ],
        )
            .into_response();
    }
    tagged_flag_response(jpeg, etag)
}

async fn stats(State(site): State<Arc<Shared>>) -> impl IntoResponse {
    let requests = site.requests.load(Ordering::Relaxed);
    // Sorted, so that the output is stable and easy to read.
    let by_name: std::collections::BTreeMap<String, u64> = site
        .by_name
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(name, count)| (name.clone(), *count))
        .collect();
    let arrivals_ms: Vec<f64> = site
        .arrivals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        // Microseconds are plenty, and keep the document short.
        .map(|ms| (ms * 1000.0).round() / 1000.0)
        .collect();
    let max_in_flight = site.max_in_flight.load(Ordering::SeqCst);
    let late_us: Vec<u32> = site
        .late_us
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .copied()
        .collect();
    let connections = site.connections.load(Ordering::Relaxed);
    let body = serde_json::json!({
        "connections": connections,
        "requests": requests,
        "by_name": by_name,
        "arrivals_ms": arrivals_ms,
        "max_in_flight": max_in_flight,
        "delayed": site.delayed.load(Ordering::Relaxed),
        "late_us": late_us,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_listener_is_reached_by_the_host_the_client_asked_for() {
        let wire = Wire {
            addr: "0.0.0.0:4242".parse().unwrap(),
            https: false,
        };
        let asked = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            wire.origin_for(&headers)
        };
        assert_eq!(asked("192.168.1.5:8000"), "http://192.168.1.5:4242");
        assert_eq!(asked("flags.lan"), "http://flags.lan:4242");
        assert_eq!(asked("[::1]:8000"), "http://[::1]:4242");
        assert_eq!(wire.origin_for(&HeaderMap::new()), "http://0.0.0.0:4242");
        let tls = Wire {
            https: true,
            ..wire
        };
        assert_eq!(tls.origin_for(&HeaderMap::new()), "https://0.0.0.0:4242");
    }

    fn get(agent: &ureq::Agent, url: &str) -> Vec<u8> {
        agent
            .get(url)
            .call()
            .expect("response")
            .body_mut()
            .read_to_vec()
            .expect("body")
    }

    #[test]
    fn stats_say_how_late_each_delayed_answer_was() {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        for (delay_ms, delayed) in [(20, 3), (0, 0)] {
            let config = SiteConfig {
                names: vec!["Chad".into()],
                delay_ms,
                jitter_ms: 0,
                error_rate: 0.0,
                image_size: (flag::WIDTH, flag::HEIGHT),
            };
            let site = Site::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).expect("site");
            for _ in 0..delayed.max(2) {
                get(&agent, &format!("{}/Chad.jpg", site.base_url()));
            }
            let body = get(&agent, &format!("http://{}/stats", site.addr()));
            let stats: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(stats["delayed"], delayed, "{delay_ms} ms: {stats}");
            let late = stats["late_us"].as_array().expect("late_us");
            assert_eq!(late.len(), delayed, "{delay_ms} ms: {stats}");
            assert!(late.iter().all(|us| us.is_u64()), "{stats}");
        }
    }
}
