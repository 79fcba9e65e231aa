//! Proxies: which way each request goes (directly, or through the run's
//! proxy for its scheme, HTTP CONNECT or SOCKS), and proxy URLs with their
//! credentials hidden.
//!
//! The master decides the settings once, from `--proxy`, `--noproxy` and the
//! environment (curl's convention, see docs/network.md), and sends them in
//! [`crate::protocol::FetchSettings`]; a worker never reads the environment's
//! proxy variables itself. The choice is made per request from the URL's
//! scheme and host, so a run whose items mix hosts or schemes is routed right.

use serde::{Deserialize, Serialize};
use ureq::{Proxy, ProxyProtocol};

/// The proxies of a run. The URLs may carry `user:pass@`: they are never
/// logged or shown as they are, only through [`redact`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxySettings {
    /// Proxy for `http://` URLs. Defaults to none.
    pub http: Option<String>,
    /// Proxy for `https://` URLs. Defaults to none.
    pub https: Option<String>,
    /// Hosts reached directly, curl's `NO_PROXY` rules (see [`bypassed`]).
    pub no_proxy: Vec<String>,
    /// Loopback hosts are reached directly whatever `no_proxy` says: true for
    /// the environment's proxies, false for `--proxy`.
    pub direct_loopback: bool,
}

/// Which way a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through [`ProxySettings::http`].
    HttpProxy,
    /// Through [`ProxySettings::https`].
    HttpsProxy,
}

impl ProxySettings {
    /// No proxy at all: every request goes directly.
    pub fn is_none(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The way a request for `url` goes.
    pub fn route(&self, url: &str) -> Route {
        if self.is_none() {
            return Route::Direct;
        }
        let Ok(uri) = url.parse::<ureq::http::Uri>() else {
            return Route::Direct;
        };
        let route = match uri.scheme_str() {
            Some("http") if self.http.is_some() => Route::HttpProxy,
            Some("https") if self.https.is_some() => Route::HttpsProxy,
            _ => return Route::Direct,
        };
        let host = uri.host().unwrap_or("").trim_matches(['[', ']']);
        if (self.direct_loopback && is_loopback_host(host)) || bypassed(&self.no_proxy, host) {
            Route::Direct
        } else {
            route
        }
    }
}

/// Whether `host` matches a `NO_PROXY` list, as curl reads it: `*` matches
/// every host; any other entry matches that host and its subdomains, with or
/// without a leading dot (`example.com` and `.example.com` both match
/// `example.com` and `a.example.com`). Case is ignored; IP addresses match
/// exactly (no CIDR ranges).
pub fn bypassed(no_proxy: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    no_proxy.iter().any(|entry| {
        let entry = entry.trim().trim_matches(['[', ']']);
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches('.').to_ascii_lowercase();
        !entry.is_empty()
            && (host == entry
                || host
                    .strip_suffix(entry.as_str())
                    .is_some_and(|rest| rest.ends_with('.')))
    })
}

/// Splits a `NO_PROXY` value (commas, and curl also takes spaces) into entries.
pub fn split_no_proxy(list: &str) -> Vec<String> {
    list.split([',', ' ', '\t'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `url` with any `user:pass@` replaced by `***@`, for logs and messages.
pub fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

/// Checks a proxy URL and returns its `host:port`: an `http://` or
/// `https://` proxy (no scheme means `http://`), or a SOCKS proxy
/// (`socks5://`, `socks5h://`, `socks4://`, `socks4a://`). The error never
/// repeats the URL, which may hold a password.
pub fn check(url: &str) -> Result<String, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    // ureq reads `socks://` as SOCKS5, curl as SOCKS4: either guess would
    // surprise someone.
    if scheme.as_deref() == Some("socks") {
        return Err(
            "say socks5:// or socks4:// (curl and others read socks:// differently)".into(),
        );
    }
    let proxy = Proxy::new(url).map_err(|_| {
        "not a proxy URL (http://HOST:PORT, https://, socks5://, socks5h://, socks4://, socks4a://)"
            .to_string()
    })?;
    if proxy.host().is_empty() {
        return Err("the proxy URL has no host".into());
    }
    let login = proxy.username().is_some() || proxy.password().is_some();
    match proxy.protocol() {
        ProxyProtocol::Http | ProxyProtocol::Https => {}
        // ureq would drop them without a word.
        ProxyProtocol::Socks4 | ProxyProtocol::Socks4A if login => {
            return Err("a SOCKS4 proxy takes no user or password: use socks5://".into())
        }
        ProxyProtocol::Socks4 | ProxyProtocol::Socks4A => {}
        // RFC 1929 sends each in one length byte and neither may be empty.
        ProxyProtocol::Socks5 | ProxyProtocol::Socks5h if login => {
            let fits = |s: Option<&str>| s.is_some_and(|s| (1..=255).contains(&s.len()));
            if !fits(proxy.username()) || !fits(proxy.password()) {
                return Err("a SOCKS5 user and password are 1 to 255 bytes each".into());
            }
        }
        ProxyProtocol::Socks5 | ProxyProtocol::Socks5h => {}
        _ => return Err("not a proxy kind flagmaster knows".into()),
    }
    Ok(host_port(&proxy))
}

/// Whether a proxy speaks SOCKS (any version) rather than HTTP CONNECT.
pub fn is_socks(proxy: &Proxy) -> bool {
    !matches!(proxy.protocol(), ProxyProtocol::Http | ProxyProtocol::Https)
}

/// `host:port` of a proxy, as messages name it.
pub fn host_port(proxy: &Proxy) -> String {
    let host = proxy.host();
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{}", proxy.port())
    } else {
        format!("{host}:{}", proxy.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        split_no_proxy(s)
    }

    #[test]
    fn no_proxy_follows_curl() {
        let l = list("example.com, .internal.org,10.0.0.1 [::1]");
        assert!(bypassed(&l, "example.com"));
        assert!(bypassed(&l, "a.b.EXAMPLE.com"));
        assert!(!bypassed(&l, "notexample.com"));
        assert!(bypassed(&l, "internal.org"));
        assert!(bypassed(&l, "x.internal.org"));
        assert!(bypassed(&l, "10.0.0.1"));
        assert!(!bypassed(&l, "10.0.0.10"));
        assert!(bypassed(&l, "::1"));
        assert!(!bypassed(&l, "127.0.0.1"));
        assert!(bypassed(&list("*"), "anything.org"));
        assert!(!bypassed(&[], "anything.org"));
    }

    #[test]
    fn routes_by_scheme_host_and_source() {
        let env = ProxySettings {
            http: Some("http://p:1".into()),
            https: None,
            no_proxy: list("skip.org"),
            direct_loopback: true,
        };
        assert_eq!(env.route("http://example.org/a.jpg"), Route::HttpProxy);
        assert_eq!(env.route("https://example.org/a.jpg"), Route::Direct);
        assert_eq!(env.route("http://skip.org/a.jpg"), Route::Direct);
        assert_eq!(env.route("http://127.0.0.1:8000/a.jpg"), Route::Direct);
        assert_eq!(env.route("http://localhost/a.jpg"), Route::Direct);
        let explicit = ProxySettings {
            https: Some("http://p:1".into()),
            direct_loopback: false,
            no_proxy: Vec::new(),
            ..env.clone()
        };
        assert_eq!(explicit.route("http://127.0.0.1:8000/a"), Route::HttpProxy);
        assert_eq!(explicit.route("https://[::1]/a"), Route::HttpsProxy);
        assert_eq!(
            ProxySettings::default().route("http://a.org/"),
            Route::Direct
        );
    }

    #[test]
    fn credentials_are_hidden() {
        assert_eq!(
            redact("http://user:s3cret@proxy.corp:3128"),
            "http://***@proxy.corp:3128"
        );
        assert_eq!(redact("u:p@proxy:1/x@y"), "***@proxy:1/x@y");
        assert_eq!(redact("http://proxy:3128/"), "http://proxy:3128/");
        assert_eq!(
            redact("socks5h://user:s3cret@127.0.0.1:1080"),
            "socks5h://***@127.0.0.1:1080"
        );
    }

    #[test]
    fn proxy_urls_are_checked() {
        assert_eq!(
            check("http://u:p@127.0.0.1:8888").unwrap(),
            "127.0.0.1:8888"
        );
        assert_eq!(check("proxy.corp:3128").unwrap(), "proxy.corp:3128");
        assert_eq!(check("https://proxy.corp").unwrap(), "proxy.corp:443");
        assert_eq!(check("socks5://u:secret@h:1081").unwrap(), "h:1081");
        assert_eq!(check("SOCKS5H://h").unwrap(), "h:1080");
        assert_eq!(check("socks4a://10.0.0.1:9050").unwrap(), "10.0.0.1:9050");
        for bad in [
            "ftp://h:1",
            "http://",
            "http://u:secret@:80:x",
            "socks://u:secret@h:1080",
            "socks4://u:secret@h",
            "socks5://u@h",
            "socks5h://:secret@h",
        ] {
            let e = check(bad).unwrap_err();
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
