//! Shared test harness: the real binary, the real built-in site on 127.0.0.1,
//! a temporary directory per test, and guards that stop by pid what a test
//! started. Every wait is bounded.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_flagmaster");

/// Longest a single flagmaster run may take in a test before it is killed.
pub const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Kills and reaps a child by pid when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `flagmaster serve` process on 127.0.0.1 with a free port.
pub struct Site {
    pub base: String,
    pub origin: String,
    /// Trusts the site's CA when it speaks HTTPS. Each request gets an agent
    /// of its own, so a new connection, as tests of `connections` expect.
    client: ureq::config::Config,
    _guard: ChildGuard,
}

impl Site {
    pub fn start(extra: &[&str]) -> Site {
        Site::start_with(os_args(extra), None)
    }

    /// The site over HTTPS (`--tls`), its CA certificate written to `ca`.
    pub fn start_tls(ca: &Path, extra: &[&str]) -> Site {
        let mut args = os_args(&["--tls", "--ca-out"]);
        args.push(ca.into());
        args.extend(os_args(extra));
        Site::start_with(args, Some(ca))
    }

    /// The site over HTTPS with the certificate chain `cert` and its `key`
    /// (`--tls --cert --key`); `ca` holds the CA that signed it.
    pub fn start_with_cert(cert: &Path, key: &Path, ca: &Path) -> Site {
        let args = vec![
            "--tls".into(),
            "--cert".into(),
            cert.into(),
            "--key".into(),
            key.into(),
        ];
        Site::start_with(args, Some(ca))
    }

    /// `flagmaster serve --port 0 ARGS`; over HTTPS, trusting the CA
    /// certificate in `ca`, when there is one.
    fn start_with(args: Vec<OsString>, ca: Option<&Path>) -> Site {
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start flagmaster serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let guard = ChildGuard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("site announces its URL within 30 s");
        let base = line
            .trim()
            .rsplit(" at ")
            .next()
            .expect("URL in the first line")
            .to_string();
        let scheme = if ca.is_some() { "https" } else { "http" };
        assert!(
            base.starts_with(&format!("{scheme}://127.0.0.1:")),
            "{line}"
        );
        let origin = base
            .trim_end_matches(flagmaster::site::FLAGS_PATH)
            .to_string();
        let mut config = ureq::Agent::config_builder();
        if let Some(ca) = ca {
            let pem = fs::read(ca).expect("the site wrote its CA");
            let certs = flagmaster_worker::http::pem_certificates(&pem);
            assert_eq!(certs.len(), 1, "one CA certificate in {}", ca.display());
            let roots = ureq::tls::RootCerts::new_with_certs(&certs);
            config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
        }
        Site {
            base,
            origin,
            client: config.build(),
            _guard: guard,
        }
    }

    /// A client that trusts the site's CA, with a connection pool of its own.
    pub fn agent(&self) -> ureq::Agent {
        ureq::Agent::new_with_config(self.client.clone())
    }

    /// Flag requests the site has answered so far.
    pub fn requests(&self) -> u64 {
        self.stats()["requests"].as_u64().expect("requests count")
    }

    /// The whole `/stats` document: `requests` and `by_name`.
    pub fn stats(&self) -> serde_json::Value {
        let body = self
            .agent()
            .get(format!("{}/stats", self.origin))
            .call()
            .expect("GET /stats")
            .body_mut()
            .read_to_string()
            .expect("stats body");
        serde_json::from_str(&body).expect("stats JSON")
    }

    /// The URL of `name` (a flag name, maybe with a fault suffix).
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}.jpg", self.base)
    }
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// A temporary working directory with helpers to write lists and read results.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_list(&self, names: &[&str]) -> PathBuf {
        let path = self.path("list.txt");
        fs::write(&path, names.join("\n") + "\n").expect("write list");
        path
    }

    /// Runs flagmaster in this directory, killing it if it overruns.
    pub fn run(&self, args: &[&str]) -> Output {
        wait_output(self.spawn(args, &[]), RUN_DEADLINE)
    }

    /// Starts flagmaster in this directory with its output piped; finish with
    /// [`wait_output`], which bounds the wait and drains the pipes.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flagmaster")
    }

    /// The lines of `logs/master.log` with `event=<event>`, as fields.
    pub fn master_events(&self, event: &str) -> Vec<BTreeMap<String, String>> {
        fs::read_to_string(self.path("logs/master.log"))
            .unwrap_or_default()
            .lines()
            .map(logfmt)
            .filter(|f| f.get("event").map(String::as_str) == Some(event))
            .collect()
    }

    /// Files in `dest`, name to bytes; the validators sidecar of
    /// `--if-changed` is not one of them (temporary files are).
    pub fn files(&self, dest: &str) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let Ok(entries) = fs::read_dir(self.path(dest)) else {
            return files;
        };
        for entry in entries {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().into_string().expect("UTF-8 name");
            if name == flagmaster::input::rerun::SIDECAR {
                continue;
            }
            files.insert(name, fs::read(entry.path()).expect("read file"));
        }
        files
    }

    /// The worker log files in `log_dir`, by name.
    pub fn worker_logs(&self, log_dir: &str) -> BTreeMap<String, String> {
        let mut logs = BTreeMap::new();
        for entry in fs::read_dir(self.path(log_dir)).expect("log dir") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().into_string().expect("UTF-8 name");
            if name.starts_with("worker-") {
                logs.insert(name, fs::read_to_string(entry.path()).expect("read log"));
            }
        }
        logs
    }
}

/// Waits for `child` with a deadline, reading its pipes on threads so it can
/// never block on a full pipe.
pub fn wait_output(mut child: Child, deadline: Duration) -> Output {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || read_all(stdout.as_mut()));
    let err = std::thread::spawn(move || read_all(stderr.as_mut()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flagmaster ran longer than {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn read_all(pipe: Option<&mut impl std::io::Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf);
    }
    buf
}

/// The `event=attempt` lines of a log, one per attempt (a worker log also has
/// `item_done`, `worker_summary` and maybe `pinned` lines).
pub fn attempt_lines(log: &str) -> impl Iterator<Item = &str> {
    log.lines().filter(|l| is_event(l, "attempt"))
}

/// Whether a logfmt line is `event=<event>`.
pub fn is_event(line: &str, event: &str) -> bool {
    logfmt(line).get("event").map(String::as_str) == Some(event)
}

/// Parses one logfmt line into key/value pairs (quoted values unescaped).
pub fn logfmt(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut chars = line.trim_end().chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            return fields;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(if n == 'n' { '\n' } else { n });
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.insert(key, value);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `pid` is running (a zombie is not).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends `signal` (as `kill` names it: `INT`, `KILL`, `STOP`) to `pid`.
pub fn signal(signal: &str, pid: impl std::fmt::Display) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// `--base-url BASE --limit LIMIT --mode proc --procs PROCS` and `more`: the
/// runs that tests start and then disturb (kill, stop, interrupt).
pub fn proc_run<'a>(
    base: &'a str,
    limit: &'a str,
    procs: &'a str,
    more: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--base-url",
        base,
        "--limit",
        limit,
        "--mode",
        "proc",
        "--procs",
        procs,
    ];
    args.extend_from_slice(more);
    args
}

/// The first `n` names of the built-in list.
pub fn flag_names(n: usize) -> Vec<String> {
    flagmaster::input::list::parse(flagmaster::input::list::BUILTIN)
        .names
        .into_iter()
        .take(n)
        .collect()
}

/// The workers that said hello in master.log, as (worker, pid), waiting up to
/// `deadline` for `n` of them.
pub fn hellos(work: &Work, n: usize, deadline: Duration) -> Vec<(u64, i32)> {
    let start = Instant::now();
    loop {
        let hellos = work.master_events("hello");
        if hellos.len() >= n {
            return hellos
                .iter()
                .map(|f| (f["worker"].parse().unwrap(), f["pid"].parse().unwrap()))
                .collect();
        }
        assert!(
            start.elapsed() < deadline,
            "workers did not start: {hellos:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
