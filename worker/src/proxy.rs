//! Proxies: which way each request goes (directly, or through the run's
//! proxy for its scheme), and proxy URLs with their credentials hidden.
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
/// `https://` proxy (no scheme means `http://`). The error never repeats the
/// URL, which may hold a password.
pub fn check(url: &str) -> Result<String, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if let Some(scheme) = &scheme {
        if scheme.starts_with("socks") {
            return Err(format!(
                "{scheme} proxies are not supported, only http:// and https://"
            ));
        }
    }
    let proxy = Proxy::new(url).map_err(|_| "not a proxy URL (http://HOST:PORT)".to_string())?;
    match proxy.protocol() {
        ProxyProtocol::Http | ProxyProtocol::Https => {}
        _ => return Err("only http:// and https:// proxies are supported".into()),
    }
    if proxy.host().is_empty() {
        return Err("the proxy URL has no host".into());
    }
    Ok(host_port(&proxy))
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
    }

    #[test]
    fn proxy_urls_are_checked() {
        assert_eq!(
            check("http://u:p@127.0.0.1:8888").unwrap(),
            "127.0.0.1:8888"
        );
        assert_eq!(check("proxy.corp:3128").unwrap(), "proxy.corp:3128");
        assert_eq!(check("https://proxy.corp").unwrap(), "proxy.corp:443");
        let socks = check("socks5://u:secret@h:1080").unwrap_err();
        assert!(socks.contains("not supported") && !socks.contains("secret"));
        for bad in ["ftp://h:1", "http://", "http://u:secret@:80:x"] {
            let e = check(bad).unwrap_err();
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
