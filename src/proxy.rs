//! The run's proxies, decided once from `--proxy`, `--noproxy` and the
//! environment, with curl's convention (docs/network.md): `https_proxy` /
//! `HTTPS_PROXY` for https URLs, `http_proxy` (lower case only, as curl: a
//! CGI program gets `HTTP_PROXY` from a request's `Proxy:` header) for http
//! URLs, `all_proxy` / `ALL_PROXY` for either when the other is unset;
//! `--noproxy` or else `no_proxy` / `NO_PROXY` for the hosts that go directly.
//!
//! The environment's proxies are for sites off this machine: loopback hosts
//! never use them. `--proxy` applies to every host, loopback ones too,
//! except those of the no-proxy list. Workers get the result in
//! `FetchSettings` and never read the environment themselves.

use flagmaster_worker::proxy::{self, redact, split_no_proxy, ProxySettings};

use crate::error::Error;

/// The proxies of a run. `may_be_remote`: some item may be off this machine
/// (without it the environment's proxies are not even read); `env` reads an
/// environment variable.
pub fn settings(
    proxy_arg: Option<&str>,
    noproxy_arg: Option<&str>,
    may_be_remote: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ProxySettings, Error> {
    let var = |names: &[&'static str]| {
        names.iter().find_map(|&name| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        })
    };
    let no_proxy = match noproxy_arg {
        Some(list) => split_no_proxy(list),
        None => var(&["no_proxy", "NO_PROXY"]).map_or_else(Vec::new, |(_, v)| split_no_proxy(&v)),
    };
    if let Some(url) = proxy_arg {
        proxy::check(url)
            .map_err(|why| Error::Usage(format!("bad --proxy {}: {why}", redact(url))))?;
        return Ok(ProxySettings {
            http: Some(url.to_string()),
            https: Some(url.to_string()),
            no_proxy,
            direct_loopback: false,
        });
    }
    if !may_be_remote {
        return Ok(ProxySettings::default());
    }
    let checked = |found: Option<(&str, String)>| -> Result<Option<String>, Error> {
        let Some((name, url)) = found else {
            return Ok(None);
        };
        proxy::check(&url).map_err(|why| {
            Error::Usage(format!("bad proxy in {name} ({}): {why}", redact(&url)))
        })?;
        Ok(Some(url))
    };
    const ALL: [&str; 2] = ["all_proxy", "ALL_PROXY"];
    Ok(ProxySettings {
        https: checked(var(&["https_proxy", "HTTPS_PROXY"]).or_else(|| var(&ALL)))?,
        http: checked(var(&["http_proxy"]).or_else(|| var(&ALL)))?,
        no_proxy,
        direct_loopback: true,
    })
}

/// What the notes say of a run's proxies, credentials hidden; `None` when
/// every request goes directly.
pub fn note(p: &ProxySettings) -> Option<String> {
    let mut out = match (&p.http, &p.https) {
        (None, None) => return None,
        (Some(h), Some(s)) if h == s => format!("{} for every URL", redact(h)),
        (h, s) => [(h, "http"), (s, "https")]
            .iter()
            .filter_map(|(url, scheme)| {
                url.as_deref()
                    .map(|u| format!("{} for {scheme} URLs", redact(u)))
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    out += if p.direct_loopback {
        " (environment), not for loopback hosts"
    } else {
        " (--proxy)"
    };
    if !p.no_proxy.is_empty() {
        out += &format!(", not for {}", p.no_proxy.join(","));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_environment_follows_curl() {
        let env = [
            ("HTTPS_PROXY", "http://s:1"),
            ("HTTP_PROXY", "http://ignored:1"),
            ("ALL_PROXY", "http://all:1"),
            ("NO_PROXY", "a.org, .b.org"),
        ];
        let p = settings(None, None, true, with_env(&env)).unwrap();
        assert_eq!(p.https.as_deref(), Some("http://s:1"));
        assert_eq!(p.http.as_deref(), Some("http://all:1"), "never HTTP_PROXY");
        assert_eq!(p.no_proxy, ["a.org", ".b.org"]);
        assert!(p.direct_loopback);
        let lower = [("http_proxy", "http://h:1"), ("https_proxy", "")];
        let p = settings(None, Some("x.org"), true, with_env(&lower)).unwrap();
        assert_eq!(p.http.as_deref(), Some("http://h:1"));
        assert_eq!(p.https, None, "empty is unset");
        assert_eq!(p.no_proxy, ["x.org"]);
        // SOCKS proxies come from the same variables.
        let socks = [
            ("ALL_PROXY", "socks5h://u:pw@s:1080"),
            ("http_proxy", "socks5://h:1"),
        ];
        let p = settings(None, None, true, with_env(&socks)).unwrap();
        assert_eq!(p.https.as_deref(), Some("socks5h://u:pw@s:1080"));
        assert_eq!(p.http.as_deref(), Some("socks5://h:1"));
        assert_eq!(
            note(&p).unwrap(),
            "socks5://h:1 for http URLs, socks5h://***@s:1080 for https URLs \
             (environment), not for loopback hosts"
        );
        // A run on this machine only does not read them at all.
        let p = settings(None, None, false, with_env(&env)).unwrap();
        assert!(p.is_none());
    }

    #[test]
    fn an_explicit_proxy_applies_to_loopback_too() {
        let env = [("https_proxy", "http://s:1"), ("no_proxy", "c.org")];
        let p = settings(
            Some("http://u:pw@127.0.0.1:8888"),
            None,
            false,
            with_env(&env),
        )
        .unwrap();
        assert_eq!(p.http, p.https);
        assert!(!p.direct_loopback);
        assert_eq!(p.no_proxy, ["c.org"]);
        assert_eq!(
            note(&p).unwrap(),
            "http://***@127.0.0.1:8888 for every URL (--proxy), not for c.org"
        );
    }

    #[test]
    fn bad_proxies_are_set_up_errors_without_secrets() {
        let e = settings(Some("socks://u:pw1@h:1"), None, true, with_env(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad --proxy socks://***@h:1: say socks5:// or socks4:// \
             (curl and others read socks:// differently)"
        );
        let env = [("https_proxy", "ftp://u:pw2@h:1")];
        let e = settings(None, None, true, with_env(&env)).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("bad proxy in https_proxy (ftp://***@h:1)"));
        assert!(!e.to_string().contains("pw2"));
    }
}
