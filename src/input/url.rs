//! URL checks shared by the sources: a base URL a user typed, and whether a
//! URL stays on this machine (which decides proxies and politeness).

use crate::error::Error;

/// Accepts `http://` and `https://` URLs with a host, and returns the URL
/// without a trailing slash.
pub fn check_base_url(url: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    if !url.contains("://") {
        return Err(bad("missing http:// or https://"));
    }
    let uri: ureq::http::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(_) => return Err(bad("only http and https are supported")),
        None => return Err(bad("missing http:// or https://")),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => {}
        _ => return Err(bad("missing host")),
    }
    if uri.query().is_some() {
        return Err(bad("a base URL takes no query"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

pub fn is_loopback_url(url: &str) -> bool {
    let host = url
        .parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()));
    match host.as_deref() {
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            check_base_url("http://127.0.0.1:8000/images/").unwrap(),
            "http://127.0.0.1:8000/images"
        );
        assert!(check_base_url("https://example.org/x").is_ok());
        for bad in [
            "",
            "example.org/x",
            "ftp://h/x",
            "http://",
            "http://h/x?y=1",
            "not a url",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:80/x"));
        assert!(is_loopback_url("http://localhost/x"));
        assert!(is_loopback_url("http://[::1]:8000/x"));
        assert!(!is_loopback_url(crate::config::REMOTE_BASE));
    }
}
