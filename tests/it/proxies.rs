//! Proxies: downloads through a real proxy (tinyproxy, which `.ci/run`
//! installs), the no-proxy list, the environment's convention, an unreachable
//! proxy, bad proxy URLs, and credentials that never show. The helpers serve
//! the SOCKS tests (`socks.rs`) too.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flagmaster::site::flag::flag_jpeg;

use crate::common::{
    flag_names, stderr, stdout, wait_output, ChildGuard, Site, Work, BIN, RUN_DEADLINE,
};

/// Serial, threads, proc and hybrid.
pub(crate) const MODES: [&[&str]; 4] = [
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "4"],
    &["--mode", "proc", "--procs", "2"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

/// The password of the proxy URLs below: it must appear nowhere.
pub(crate) const SECRET: &str = "pw-0f-the-proxy";

/// Every variable a proxy setting could come from, removed from each run so
/// that the machine's own settings do not leak into the tests.
const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// A run's arguments and environment.
pub(crate) type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// A tinyproxy on a free 127.0.0.1 port, with its config and log in a
/// directory of its own; stopped by pid when dropped.
struct Tinyproxy {
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _guard: ChildGuard,
}

impl Tinyproxy {
    fn start() -> Tinyproxy {
        Tinyproxy::with_config("")
    }

    /// With `extra` lines in its configuration (`BasicAuth USER PASS`).
    fn with_config(extra: &str) -> Tinyproxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nLogFile \"{}\"\n\
                 LogLevel Connect\nMaxClients 64\nTimeout 30\n{extra}\n",
                log.display()
            ),
        )
        .expect("write tinyproxy.conf");
        let mut command = Command::new("tinyproxy");
        command.arg("-d").arg("-c").arg(&conf).stderr(Stdio::null());
        let guard = listening(command, port, "tinyproxy (Debian package tinyproxy)");
        Tinyproxy {
            port,
            log,
            _dir: dir,
            _guard: guard,
        }
    }

    /// The proxy's URL, with credentials (tinyproxy ignores them).
    fn url(&self) -> String {
        format!("http://user:{SECRET}@127.0.0.1:{}", self.port)
    }

    /// Tunnels opened so far to `host_port` (`CONNECT host:port` requests).
    fn tunnels_to(&self, host_port: &str) -> usize {
        let needle = format!("CONNECT {host_port} ");
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

/// Starts `command`, a server that will listen on 127.0.0.1:`port`, and
/// waits until it does; `what` names it (and its package) if it fails.
pub(crate) fn listening(mut command: Command, port: u16, what: &str) -> ChildGuard {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}; .ci/run installs it: {e}"));
    let guard = ChildGuard(child);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} listens on {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}

/// A port nothing listens on (free a moment ago).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Runs flagmaster in `work` with no proxy settings but `env`.
pub(crate) fn run(work: &Work, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    let child = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(work.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flagmaster");
    wait_output(child, RUN_DEADLINE)
}

/// Everything a run left that a person could read: stdout, stderr, every log.
pub(crate) fn everything_shown(work: &Work, out: &Output) -> String {
    let mut all = stdout(out) + &stderr(out);
    for entry in fs::read_dir(work.path("logs")).into_iter().flatten() {
        all += &fs::read_to_string(entry.expect("entry").path()).unwrap_or_default();
    }
    all
}

/// Runs `args` (plus `--json`) with `env` in `work`, expecting every item to
/// fail; returns each item's reason and attempts. No password shows.
pub(crate) fn failures(work: &Work, args: &[&str], env: &[(&str, &str)]) -> Vec<(String, u64)> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(work, &all, env);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    assert!(!everything_shown(work, &out).contains(SECRET), "{args:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let reason = r["reason"].as_str().expect("a reason").to_string();
            (reason, r["attempts"].as_u64().expect("attempts"))
        })
        .collect()
}

/// A `--urls` file in `work` of two remote-looking items, http and https,
/// that only a proxy can be asked for (`.invalid` never resolves).
pub(crate) fn remote_urls(work: &Work) -> PathBuf {
    let urls = work.path("urls.txt");
    fs::write(
        &urls,
        "http://flags.invalid/a.jpg\nhttps://flags.invalid/b.jpg\n",
    )
    .expect("write urls");
    urls
}

/// `host:port` of the site's base URL.
pub(crate) fn site_host_port(site: &Site) -> String {
    site.origin
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string()
}

/// Downloads `names` from the site at `base` with `args` and checks every file.
pub(crate) fn download(
    work: &Work,
    base: &str,
    names: &[String],
    args: &[&str],
    env: &[(&str, &str)],
) {
    let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut all = vec!["--base-url", base, "--list", list.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push("--json");
    let out = run(work, &all, env);
    let what = format!("{args:?} {env:?}");
    assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["counts"]["ok"], names.len(), "{what}");
    let files = work.files("flags");
    assert_eq!(files.len(), names.len(), "{what}");
    for name in names {
        assert_eq!(
            files[&format!("{name}.jpg")],
            flag_jpeg(name),
            "{what}: {name}"
        );
    }
    assert!(
        !everything_shown(work, &out).contains(SECRET),
        "{what}: the proxy's password shows"
    );
}

/// Downloads 12 flags from `base` through the proxy `url` (with `extra`
/// arguments) in every mode: the files are the site's, `tunnels` (the
/// proxy's own log of its tunnels to the site) grows in each mode, and
/// master.log names the proxy as `shown`, its credentials hidden.
pub(crate) fn every_mode_through(
    base: &str,
    url: &str,
    extra: &[&str],
    shown: &str,
    tunnels: impl Fn() -> usize,
) {
    let names = flag_names(12);
    for mode in MODES {
        let work = Work::new();
        let before = tunnels();
        let mut args = mode.to_vec();
        args.extend(["--proxy", url]);
        args.extend_from_slice(extra);
        download(&work, base, &names, &args, &[]);
        assert!(
            tunnels() > before,
            "{mode:?}: the proxy's log shows no tunnel"
        );
        let start = &work.master_events("start")[0];
        assert_eq!(start["proxy_http"], shown, "{mode:?}");
        assert_eq!(start["proxy_https"], shown, "{mode:?}");
    }
}

#[test]
fn every_mode_downloads_through_a_real_proxy() {
    let site = Site::start(&[]);
    let proxy = Tinyproxy::start();
    let target = site_host_port(&site);
    let shown = format!("http://***@127.0.0.1:{}", proxy.port);
    every_mode_through(&site.base, &proxy.url(), &[], &shown, || {
        proxy.tunnels_to(&target)
    });
}

/// Verified end to end through the tunnel: the files are the site's.
#[test]
fn every_mode_downloads_https_through_a_real_proxy() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca = dir.path().join("ca.pem");
    let site = Site::start_tls(&ca, &[]);
    assert!(site.base.starts_with("https://"), "{}", site.base);
    let proxy = Tinyproxy::start();
    let target = site_host_port(&site);
    let shown = format!("http://***@127.0.0.1:{}", proxy.port);
    let cacert = ["--cacert", ca.to_str().unwrap()];
    every_mode_through(&site.base, &proxy.url(), &cacert, &shown, || {
        proxy.tunnels_to(&target)
    });
}

#[test]
fn credentials_reach_the_proxy_and_its_refusal_is_final() {
    let site = Site::start(&[]);
    let proxy = Tinyproxy::with_config(&format!("BasicAuth alice {SECRET}"));
    let names = flag_names(4);
    let work = Work::new();
    download(
        &work,
        &site.base,
        &names,
        &["--proxy", &proxy.url().replace("user", "alice")],
        &[],
    );
    let wrong = format!("http://alice:wrong-{SECRET}@127.0.0.1:{}", proxy.port);
    let args = ["--base-url", &site.base, "--limit", "2", "--proxy", &wrong];
    // tinyproxy says 401 where RFC 9110 says 407. A refusal is not retried.
    let reason = format!("proxy 127.0.0.1:{} answered 401 to CONNECT", proxy.port);
    assert_eq!(failures(&Work::new(), &args, &[]), vec![(reason, 1); 2]);
}

/// Downloads from `base` that must bypass the proxy `url`: with
/// `--noproxy`, `NO_PROXY` or `no_proxy`, and with the proxy in the
/// environment's `vars`, which are never used for loopback hosts.
pub(crate) fn downloads_that_bypass(base: &str, url: &str, vars: [&str; 2]) {
    let names = flag_names(6);
    let cases: [Case; 4] = [
        (vec!["--proxy", url, "--noproxy", "127.0.0.1"], vec![]),
        (
            vec!["--proxy", url],
            vec![("NO_PROXY", "localhost,127.0.0.1")],
        ),
        (
            vec!["--proxy", url, "--mode", "threads"],
            vec![("no_proxy", "*")],
        ),
        (vec![], vec![(vars[0], url), (vars[1], url)]),
    ];
    for (args, env) in cases {
        download(&Work::new(), base, &names, &args, &env);
    }
}

#[test]
fn the_no_proxy_list_and_loopback_items_bypass_the_proxy() {
    let site = Site::start(&[]);
    let proxy = Tinyproxy::start();
    downloads_that_bypass(&site.base, &proxy.url(), ["http_proxy", "ALL_PROXY"]);
    let log = fs::read_to_string(&proxy.log).unwrap_or_default();
    // (Its `Connect` lines are the readiness probe's.)
    assert!(
        !log.contains(": CONNECT "),
        "tinyproxy saw requests:\n{log}"
    );
}

#[test]
fn an_unreachable_proxy_is_a_retried_connection_error() {
    let site = Site::start(&[]);
    let port = free_port();
    let reason = format!("proxy 127.0.0.1:{port} unreachable: connection refused");
    let dead = format!("http://user:{SECRET}@127.0.0.1:{port}");
    let work = Work::new();
    // Remote-looking items (never resolved: the proxy would resolve them)
    // use the environment's proxy for their scheme.
    let urls = remote_urls(&work);
    let runs: [Case; 3] = [
        (
            vec!["--base-url", &site.base, "--limit", "2", "--proxy", &dead],
            vec![],
        ),
        (
            vec!["--urls", urls.to_str().unwrap()],
            vec![("http_proxy", &dead), ("HTTPS_PROXY", &dead)],
        ),
        (
            vec!["--urls", urls.to_str().unwrap()],
            vec![("all_proxy", &dead), ("HTTP_PROXY", "http://127.0.0.1:1")],
        ),
    ];
    for (mut args, env) in runs {
        args.extend(["--mode", "serial", "--retries", "1"]);
        // Retried as a connection error.
        let got = failures(&work, &args, &env);
        assert_eq!(got, vec![(reason.clone(), 2); 2], "{args:?} {env:?}");
    }
    // A listing is read through the proxy too: failing, a set-up error.
    let listing = format!("{}/v2/list", site.origin);
    let out = run(&work, &["--listing", &listing, "--proxy", &dead], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("flagmaster: cannot use listing {listing}: {reason}\n")
    );
}

#[test]
fn a_bad_proxy_url_is_a_set_up_error() {
    let work = Work::new();
    for (args, env, says) in [
        (
            vec!["--proxy", "socks://u:pw-0f-the-proxy@h:1080"],
            vec![],
            "bad --proxy socks://***@h:1080: say socks5:// or socks4://",
        ),
        (
            vec!["--proxy", "socks4a://u:pw-0f-the-proxy@h"],
            vec![],
            "bad --proxy socks4a://***@h: a SOCKS4 proxy takes no user or password",
        ),
        (
            vec!["--proxy", "ftp://u:pw-0f-the-proxy@h:21"],
            vec![],
            "bad --proxy ftp://***@h:21: not a proxy URL",
        ),
        (
            vec!["--urls", "urls.txt"],
            vec![("https_proxy", "gopher://u:pw-0f-the-proxy@h")],
            "bad proxy in https_proxy (gopher://***@h): not a proxy URL",
        ),
    ] {
        fs::write(work.path("urls.txt"), "https://flags.invalid/a.jpg\n").expect("urls");
        let out = run(&work, &args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains(SECRET) && stdout(&out).is_empty());
    }
}
