//! The HTTP client of every request flagmaster makes: one ureq configuration
//! (every timeout set, statuses as outcomes, small buffers, no proxy of ureq's
//! own choosing) and the agents built on it, one for each way a request can go
//! (see [`crate::proxy`]), for the workers' fetches and the master's listing
//! alike. HTTPS servers are checked against the system's trust store plus the
//! run's own CA certificates (see `root_certs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::config::{Config, ConfigBuilder};
use ureq::http::Uri;
use ureq::tls::{parse_pem, Certificate, PemItem, RootCerts, TlsConfig};
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};
use ureq::{Agent, Proxy};

use crate::protocol::FetchSettings;
use crate::proxy::{self, ProxySettings, Route};

/// Hosts an agent keeps an idle connection to.
const IDLE_HOSTS: usize = 10;
/// Buffers of each connection (see `config`).
const INPUT_BUFFER: usize = 32 * 1024;
pub const OUTPUT_BUFFER: usize = 16 * 1024;

/// The client configuration of a run. Every timeout is set: ureq's default
/// for each is none, and a stalled server would hang a worker.
pub fn config(settings: &FetchSettings) -> Config {
    builder(settings).build()
}

/// The configuration of [`config`], still open to changes.
fn builder(settings: &FetchSettings) -> ConfigBuilder<AgentScope> {
    let timeout = Duration::from_millis(settings.timeout_ms);
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("flagmaster/", env!("CARGO_PKG_VERSION")))
        .timeout_global(Some(timeout))
        .timeout_connect(Some(
            Duration::from_millis(settings.connect_timeout_ms).min(timeout),
        ))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(Duration::from_millis(settings.read_timeout_ms)))
        // A stalled write is bounded like a stalled read. Without a
        // per-write bound the socket's send timeout would be the rest of
        // the item's budget, different on every request: a setsockopt
        // each time.
        .timeout_per_write(Some(Duration::from_millis(settings.read_timeout_ms)))
        // ureq's 128 KiB per direction and connection is zeroed on first
        // use: with 256 connections that was 64 MB of page faults, the
        // largest CPU cost of starting a run. A request head fits in
        // 16 KiB (`--header`s are capped at 8 KiB), and a 32 KiB input
        // buffer still reads a small file in one or two calls; it grows
        // if a response head needs more.
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        // An agent serves one thread (see `Fetcher::for_thread`), which holds one
        // connection at a time: one idle connection per host is enough,
        // for a few hosts.
        .max_idle_connections(IDLE_HOSTS)
        .max_idle_connections_per_host(1)
        .tls_config(
            TlsConfig::builder()
                .root_certs(root_certs(settings))
                .disable_verification(settings.insecure)
                .build(),
        );
    // ureq's default is the environment's proxy for every URL; which proxy a
    // request uses is decided by `Agents` instead.
    config.proxy(None)
}

/// One agent for each way a request can go: directly, and through each proxy
/// of the run. A pool is per agent, so a connection to a proxy is never
/// reused for a direct request or the other way round.
#[derive(Clone)]
pub struct Agents {
    direct: Agent,
    http: Option<Via>,
    https: Option<Via>,
    proxy: Arc<ProxySettings>,
    connector: SharedConnector,
}

/// The agent whose requests go through a proxy, or the proxy's URL
/// (redacted) when it does not make a proxy (the master checks it first).
type Via = Result<Agent, Arc<str>>;

/// The agent for a request, and the proxy it goes through.
pub struct Chosen<'a> {
    pub agent: &'a Agent,
    pub proxy: Option<&'a Proxy>,
}

impl Agents {
    pub fn new(settings: &FetchSettings) -> Agents {
        let connector = SharedConnector::default();
        let via = |url: &Option<String>| {
            url.as_deref().map(|url| match Proxy::new(url) {
                Ok(p) => Ok(agent(builder(settings).proxy(Some(p)).build(), &connector)),
                Err(_) => Err(proxy::redact(url).into()),
            })
        };
        Agents {
            http: via(&settings.proxy.http),
            https: via(&settings.proxy.https),
            direct: agent(config(settings), &connector),
            proxy: Arc::new(settings.proxy.clone()),
            connector,
        }
    }

    /// The same agents with connection pools of their own (see
    /// `Fetcher::for_thread`).
    pub fn for_thread(&self) -> Agents {
        let fresh = |via: &Option<Via>| {
            via.as_ref().map(|v| {
                v.as_ref()
                    .map(|a| agent(a.config().clone(), &self.connector))
                    .map_err(Arc::clone)
            })
        };
        Agents {
            direct: agent(self.direct.config().clone(), &self.connector),
            http: fresh(&self.http),
            https: fresh(&self.https),
            proxy: Arc::clone(&self.proxy),
            connector: self.connector.clone(),
        }
    }

    /// The agent for `url`, or the reason it has none (a proxy URL that
    /// makes no proxy).
    pub fn for_url(&self, url: &str) -> Result<Chosen<'_>, String> {
        let via = match self.proxy.route(url) {
            Route::Direct => {
                return Ok(Chosen {
                    agent: &self.direct,
                    proxy: None,
                })
            }
            Route::HttpProxy => &self.http,
            Route::HttpsProxy => &self.https,
        };
        let agent = match via {
            Some(Ok(agent)) => agent,
            Some(Err(name)) => return Err(format!("bad proxy {name}")),
            None => return Err("no proxy".into()),
        };
        Ok(Chosen {
            agent,
            proxy: agent.config().proxy(),
        })
    }
}

/// The certificates HTTPS servers are checked against: the system's trust
/// store (or, where it has none, the WebPKI roots compiled in), plus the
/// PEM certificates of `settings.ca_pem`. The system's store is read once
/// per process. Verification is off only with `--insecure`, which every
/// run reports.
fn root_certs(settings: &FetchSettings) -> RootCerts {
    let mut roots: Vec<Certificate<'static>> = system_roots().to_vec();
    roots.extend(pem_certificates(&settings.ca_pem));
    RootCerts::from(roots)
}

/// The system's trust store (`rustls-native-certs`, which also honours
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`), read on first use; the WebPKI roots
/// where it holds no certificate.
fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs().certs;
        let ders = if native.is_empty() {
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec()
        } else {
            native
        };
        ders.iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned())
            .collect()
    })
}

/// The certificates of a PEM bundle; other items (keys) are skipped.
pub fn pem_certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect()
}

/// An agent with a connection pool of its own over `config`, making its
/// connections with `connector`.
fn agent(config: Config, connector: &SharedConnector) -> Agent {
    Agent::with_parts(config, connector.clone(), IpLiteralResolver::default())
}

/// ureq's connectors shared by the agents of one [`Agents`] and its copies
/// for each thread. ureq's TLS connector builds its rustls configuration on
/// first use and keeps it: every root certificate hashed and parsed once per
/// process instead of once per thread and route (at 256 threads over HTTPS,
/// a quarter of the client's CPU and 44 MB; docs/benchmarks.md). Sound
/// because every agent of an `Agents` has the same TLS settings (`builder`),
/// the first one to connect deciding the one configuration they all use.
/// (`unversioned` API: pinned by Cargo.lock, revisit on ureq upgrades.)
#[derive(Debug, Clone, Default)]
struct SharedConnector(Arc<DefaultConnector>);

impl Connector for SharedConnector {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        self.0.connect(details, chained)
    }
}

/// ureq resolves the host before every request, pooled connection or not,
/// and once any timeout is set it resolves on a new thread: one thread per
/// request, which costs more than the request itself on a fast site. An IP
/// literal needs no lookup, so it is answered here at once; names still go
/// through ureq's resolver, with its timeout. (`unversioned` API: pinned by
/// Cargo.lock, revisit on ureq upgrades.)
#[derive(Debug, Default)]
struct IpLiteralResolver(DefaultResolver);

impl Resolver for IpLiteralResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match literal_addr(uri) {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                Ok(addrs)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

/// The socket address of a URI whose host is an IP address.
fn literal_addr(uri: &Uri) -> Option<SocketAddr> {
    let ip: IpAddr = uri.host()?.trim_matches(['[', ']']).parse().ok()?;
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_need_no_lookup() {
        let addr = |u: &str| literal_addr(&u.parse().unwrap());
        assert_eq!(
            addr("http://127.0.0.1:8000/x"),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(addr("http://[::1]/x"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(
            addr("https://10.0.0.1/x"),
            Some("10.0.0.1:443".parse().unwrap())
        );
        assert_eq!(addr("https://example.org/x"), None);
    }
}
