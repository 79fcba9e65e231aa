//! SOCKS proxies: downloads through a real SOCKS5 proxy (microsocks, which
//! `.ci/run` installs) in every mode, over HTTP and HTTPS, with its user and
//! password checked; the no-proxy list, the environment, an unreachable
//! proxy, and credentials that never show. microsocks logs each tunnel it
//! opens (`client[4] 127.0.0.1: connected to HOST:PORT`) on stderr: that log
//! shows the traffic went through it.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;

use crate::common::{ChildGuard, Site, Work};
use crate::proxies::{
    downloads_that_bypass, every_mode_through, failures, free_port, listening, remote_urls,
    site_host_port, Case, SECRET,
};

/// microsocks's user.
const USER: &str = "alice";

/// A microsocks on a free 127.0.0.1 port that asks for `USER` and
/// `SECRET`, its stderr in a file of its own; stopped by pid when dropped.
struct Microsocks {
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _guard: ChildGuard,
}

impl Microsocks {
    fn start() -> Microsocks {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("microsocks.log");
        let mut command = Command::new("microsocks");
        command
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-u", USER, "-P", SECRET])
            .stderr(File::create(&log).expect("create microsocks.log"));
        let guard = listening(command, port, "microsocks (Debian package microsocks)");
        Microsocks {
            port,
            log,
            _dir: dir,
            _guard: guard,
        }
    }

    /// The proxy's URL with `scheme` and the right credentials.
    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{USER}:{SECRET}@127.0.0.1:{}", self.port)
    }

    /// What messages call it.
    fn name(&self) -> String {
        format!("proxy 127.0.0.1:{}", self.port)
    }

    /// Tunnels opened so far to `host_port`, as the client named it.
    fn tunnels_to(&self, host_port: &str) -> usize {
        let needle = format!(": connected to {host_port}");
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(&needle))
            .count()
    }

    /// Every tunnel it opened so far.
    fn tunnels(&self) -> usize {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        log.matches(": connected to ").count()
    }
}

#[test]
fn every_mode_downloads_through_socks5() {
    let site = Site::start(&[]);
    let proxy = Microsocks::start();
    let target = site_host_port(&site);
    let shown = format!("socks5://***@127.0.0.1:{}", proxy.port);
    every_mode_through(&site.base, &proxy.url("socks5"), &[], &shown, || {
        proxy.tunnels_to(&target)
    });
}

/// socks5h sends the site's name to the proxy, which looks it up: the log
/// names `localhost`, not an address. HTTPS is verified end to end, the
/// certificate checked for `localhost`.
#[test]
fn every_mode_downloads_https_through_socks5h_which_resolves_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    let site = Site::start_tls(&ca, &[]);
    let port = site_host_port(&site)
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let base = site.base.replace("127.0.0.1", "localhost");
    let target = format!("localhost:{port}");
    let proxy = Microsocks::start();
    let shown = format!("socks5h://***@127.0.0.1:{}", proxy.port);
    let cacert = ["--cacert", ca.to_str().unwrap()];
    every_mode_through(&base, &proxy.url("socks5h"), &cacert, &shown, || {
        proxy.tunnels_to(&target)
    });
}

#[test]
fn wrong_or_missing_socks_credentials_are_final() {
    let site = Site::start(&[]);
    let proxy = Microsocks::start();
    let wrong = format!("socks5://{USER}:wrong-{SECRET}@127.0.0.1:{}", proxy.port);
    let none = format!("socks5h://127.0.0.1:{}", proxy.port);
    for (url, why) in [
        (&wrong, "refused the user name or password"),
        (&none, "wants a user name and password"),
    ] {
        let args = ["--base-url", &site.base, "--limit", "3", "--proxy", url];
        let reason = format!("{} {why}", proxy.name());
        assert_eq!(failures(&Work::new(), &args, &[]), vec![(reason, 1); 3]);
    }
    assert_eq!(proxy.tunnels(), 0, "no tunnel without the right password");
}

#[test]
fn the_no_proxy_list_and_loopback_items_bypass_socks() {
    let site = Site::start(&[]);
    let proxy = Microsocks::start();
    downloads_that_bypass(
        &site.base,
        &proxy.url("socks5"),
        ["ALL_PROXY", "https_proxy"],
    );
    assert_eq!(proxy.tunnels(), 0, "microsocks saw requests");
}

/// A remote site's name goes to the environment's socks5h proxy unresolved:
/// microsocks cannot look `flags.invalid` up and says so (a SOCKS general
/// failure), which shows the items went to it, logged in, for each scheme.
#[test]
fn the_environment_sends_remote_sites_to_a_socks_proxy() {
    let proxy = Microsocks::start();
    let work = Work::new();
    let urls = remote_urls(&work);
    let url = proxy.url("socks5h");
    let reason = format!("{} could not reach the site: general failure", proxy.name());
    let args = ["--urls", urls.to_str().unwrap(), "--retries", "1"];
    for env in [
        vec![("ALL_PROXY", url.as_str())],
        vec![("all_proxy", url.as_str()), ("NO_PROXY", "example.org")],
        vec![("http_proxy", url.as_str()), ("HTTPS_PROXY", url.as_str())],
    ] {
        let got = failures(&work, &args, &env);
        assert_eq!(got, vec![(reason.clone(), 2); 2], "{env:?}");
    }
}

#[test]
fn an_unreachable_socks_proxy_is_a_retried_connection_error() {
    let site = Site::start(&[]);
    let port = free_port();
    let reason = format!("proxy 127.0.0.1:{port} unreachable: connection refused");
    let work = Work::new();
    let urls = remote_urls(&work);
    let dead = |scheme| format!("{scheme}://{USER}:{SECRET}@127.0.0.1:{port}");
    let (socks5, socks5h) = (dead("socks5"), dead("socks5h"));
    let runs: [Case; 3] = [
        (
            vec!["--base-url", &site.base, "--limit", "2", "--proxy", &socks5],
            vec![],
        ),
        (
            vec![
                "--base-url",
                &site.base,
                "--limit",
                "2",
                "--proxy",
                &socks5h,
            ],
            vec![],
        ),
        (
            vec!["--urls", urls.to_str().unwrap()],
            vec![("ALL_PROXY", &socks5h)],
        ),
    ];
    for (args, env) in runs {
        // The default --retries, 2: three attempts, as for any connection error.
        let got = failures(&work, &args, &env);
        assert_eq!(got, vec![(reason.clone(), 3); 2], "{args:?} {env:?}");
    }
}
