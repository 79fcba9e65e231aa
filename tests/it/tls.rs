//! HTTPS: the built-in site over TLS (`serve --tls --ca-out`), trusted with
//! `--cacert` or `SSL_CERT_FILE`, or not trusted at all; the site with a
//! certificate made here (`serve --tls --cert --key`) that has expired or
//! names another host; the wire faults over TLS; and a run's own site over
//! TLS (`--server LOCAL --tls`), which needs nothing extra.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{flag_names, logfmt, stderr, wait_output, Site, Work, RUN_DEADLINE};
use flagmaster::site::flag::flag_jpeg;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Serial, threads, proc and hybrid.
const MODES: &[&[&str]] = &[
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "3"],
    &["--mode", "proc", "--procs", "2"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

/// What every item of an untrusted site ends with.
const UNTRUSTED: &str = "TLS: certificate for 127.0.0.1 is not trusted (unknown issuer)";

/// The flags `names` as the site serves them, by file name.
fn expected(names: &[String]) -> BTreeMap<String, Vec<u8>> {
    names
        .iter()
        .map(|n| (format!("{n}.jpg"), flag_jpeg(n)))
        .collect()
}

/// Runs `args` (plus `--list` of `names` and `--json`) in a fresh directory
/// with `env`; returns the directory, the exit status and the JSON report.
fn run(
    names: &[String],
    args: &[&str],
    env: &[(&str, &str)],
) -> (Work, Option<i32>, serde_json::Value) {
    let work = Work::new();
    let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut all = vec!["--list", list.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let out = wait_output(work.spawn(&all, env), RUN_DEADLINE);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: JSON report ({e}): {}", stderr(&out)));
    (work, out.status.code(), report)
}

#[test]
fn a_trusted_ca_downloads_every_flag_byte_exact() {
    let ca_dir = Work::new();
    let ca = ca_dir.path("ca.pem");
    let site = Site::start_tls(&ca, &[]);
    let ca = ca.to_str().unwrap();
    let names = flag_names(12);
    for mode in MODES {
        for by_env in [false, true] {
            let mut args = vec!["--base-url", site.base.as_str()];
            args.extend_from_slice(mode);
            let env: &[(&str, &str)] = if by_env {
                &[("SSL_CERT_FILE", ca)]
            } else {
                args.extend(["--cacert", ca]);
                &[]
            };
            let what = format!("{mode:?}, SSL_CERT_FILE: {by_env}");
            let (work, code, report) = run(&names, &args, env);
            assert_eq!(code, Some(0), "{what}: {report}");
            assert_eq!(report["counts"]["ok"], names.len(), "{what}");
            assert_eq!(report["insecure"], false, "{what}");
            assert_eq!(work.files("flags"), expected(&names), "{what}: files");
        }
    }
}

/// Downloads `names` from `base` with `args` in every mode, and checks that
/// every item is an ERROR with `reason` after one attempt (one attempt line
/// each in the workers' logs), that nothing is written, and the exit status 1
/// of a run with failed items.
fn fails_once_in_every_mode(base: &str, args: &[&str], reason: &str) {
    let names = flag_names(6);
    for mode in MODES {
        let mut all = vec!["--base-url", base];
        all.extend_from_slice(args);
        all.extend_from_slice(mode);
        let what = format!("{mode:?}");
        let (work, code, report) = run(&names, &all, &[]);
        assert_eq!(code, Some(1), "{what}: {report}");
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), names.len(), "{what}");
        for r in results {
            assert_eq!(r["status"], "ERROR", "{what}: {r}");
            assert_eq!(r["reason"], reason, "{what}: {r}");
            assert_eq!(r["attempts"], 1, "{what}: not retried: {r}");
        }
        let logs = work.worker_logs("logs").into_values().collect::<String>();
        let attempts: Vec<_> = common::attempt_lines(&logs).map(logfmt).collect();
        assert_eq!(attempts.len(), names.len(), "{what}: attempt lines");
        for a in &attempts {
            assert_eq!(a["attempt"], "1", "{what}: {a:?}");
            assert_eq!(a["reason"], reason, "{what}: {a:?}");
        }
        assert!(work.files("flags").is_empty(), "{what}: nothing written");
    }
}

#[test]
fn an_untrusted_site_fails_every_item_once_in_plain_words() {
    let ca_dir = Work::new();
    let site = Site::start_tls(&ca_dir.path("ca.pem"), &[]);
    fails_once_in_every_mode(&site.base, &[], UNTRUSTED);
}

/// A CA made for one test, which signs server certificates into `dir`.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate (PEM), for `--cacert`.
    pem: PathBuf,
}

impl TestCa {
    fn new(dir: &Path) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, issuer.pem()).unwrap();
        TestCa { issuer, pem }
    }

    /// A server certificate for `names`, valid until `not_after` (y, m, d),
    /// and its key: `(cert.pem, key.pem)` in `dir`.
    fn server(&self, dir: &Path, names: &[&str], not_after: (i32, u8, u8)) -> (PathBuf, PathBuf) {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let paths = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&paths.0, cert.pem()).unwrap();
        std::fs::write(&paths.1, key.serialize_pem()).unwrap();
        paths
    }
}

#[test]
fn an_expired_certificate_fails_every_item_once_in_plain_words() {
    let dir = Work::new();
    let ca = TestCa::new(dir.dir.path());
    let (cert, key) = ca.server(dir.dir.path(), &["127.0.0.1", "localhost"], (2021, 1, 1));
    let site = Site::start_with_cert(&cert, &key, &ca.pem);
    let cacert = ca.pem.to_str().unwrap();
    fails_once_in_every_mode(
        &site.base,
        &["--cacert", cacert],
        "TLS: certificate expired",
    );
}

#[test]
fn a_certificate_for_another_name_fails_every_item_once_in_plain_words() {
    let dir = Work::new();
    let ca = TestCa::new(dir.dir.path());
    let (cert, key) = ca.server(dir.dir.path(), &["localhost"], (4000, 1, 1));
    let site = Site::start_with_cert(&cert, &key, &ca.pem);
    let cacert = ca.pem.to_str().unwrap();
    let reason = "TLS: name mismatch (certificate is for localhost)";
    fails_once_in_every_mode(&site.base, &["--cacert", cacert], reason);
    // The same certificate is fine for the name it is for: only the name failed.
    let base = site.base.replace("127.0.0.1", "localhost");
    let names = flag_names(3);
    let (work, code, report) = run(&names, &["--base-url", &base, "--cacert", cacert], &[]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(work.files("flags"), expected(&names));
}

#[test]
fn the_built_in_site_over_tls_is_trusted_without_help() {
    let names = flag_names(10);
    for mode in [MODES[1], MODES[3]] {
        let mut args = vec!["--server", "LOCAL", "--tls"];
        args.extend_from_slice(mode);
        let (work, code, report) = run(&names, &args, &[]);
        assert_eq!(code, Some(0), "{mode:?}: {report}");
        assert_eq!(work.files("flags"), expected(&names), "{mode:?}: files");
    }
}

#[test]
fn an_unusable_cacert_stops_the_run_before_anything_is_written() {
    let work = Work::new();
    std::fs::write(work.path("empty.pem"), "").unwrap();
    for (cacert, why) in [
        ("empty.pem", "no PEM certificate in it"),
        ("missing.pem", "No such file"),
    ] {
        let out = work.run(&["--server", "LOCAL", "--cacert", cacert]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{cacert}: {err}");
        assert_eq!(err.lines().count(), 1, "{cacert}: one line: {err}");
        assert!(
            err.contains(&format!("cannot use --cacert {cacert}: {why}")),
            "{err}"
        );
        assert!(!work.path("flags").exists() && !work.path("logs").exists());
    }
}

#[test]
fn insecure_downloads_unverified_and_says_so_every_run() {
    let ca_dir = Work::new();
    let site = Site::start_tls(&ca_dir.path("ca.pem"), &[]);
    let names = flag_names(5);
    for mode in [MODES[0], MODES[2]] {
        let work = Work::new();
        let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args = vec![
            "--base-url",
            site.base.as_str(),
            "--list",
            list.to_str().unwrap(),
            "--json",
            "--insecure",
        ];
        args.extend_from_slice(mode);
        let out = wait_output(work.spawn(&args, &[]), RUN_DEADLINE);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {err}");
        assert!(
            err.contains("warning: --insecure: HTTPS certificates are not verified"),
            "{mode:?}: {err}"
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["insecure"], true, "{mode:?}");
        assert_eq!(work.master_events("start")[0]["insecure"], "true");
        assert_eq!(work.files("flags"), expected(&names), "{mode:?}: files");
    }
}

#[test]
fn serve_refuses_an_unusable_cert_or_key_in_one_line() {
    let work = Work::new();
    let ca = TestCa::new(work.dir.path());
    let (_cert, key) = ca.server(work.dir.path(), &["127.0.0.1"], (4000, 1, 1));
    // A key of another certificate: `other/key.pem`.
    std::fs::create_dir(work.path("other")).unwrap();
    ca.server(&work.path("other"), &["127.0.0.1"], (4000, 1, 1));
    std::fs::write(work.path("empty.pem"), "").unwrap();
    let key = key.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--cert", "cert.pem", "--key", key], "--tls"),
        (&["--tls", "--cert", "cert.pem"], "--key"),
        (&["--tls", "--key", key], "--cert"),
        (
            &[
                "--tls", "--cert", "cert.pem", "--key", key, "--ca-out", "ca2.pem",
            ],
            "'--cert <FILE>' cannot be used with '--ca-out <FILE>'",
        ),
        (
            &["--tls", "--cert", "missing.pem", "--key", key],
            "cannot use --cert missing.pem: No such file",
        ),
        (
            &["--tls", "--cert", "empty.pem", "--key", key],
            "cannot use --cert empty.pem: no PEM certificate in it",
        ),
        (
            &["--tls", "--cert", "cert.pem", "--key", "cert.pem"],
            "cannot use --key cert.pem: no PEM private key in it",
        ),
        (
            &["--tls", "--cert", "cert.pem", "--key", "other/key.pem"],
            "cannot use --key other/key.pem: not the key of the certificate in cert.pem",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["serve", "--port", "0"];
        all.extend_from_slice(args);
        // A serve that wrongly starts is killed at the deadline.
        let out = wait_output(work.spawn(&all, &[]), Duration::from_secs(30));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: not serving");
    }
}

/// The faults of the site's raw listener (see `src/site/wire.rs`) and a
/// healthy flag.
const WIRE_FAULTS: [&str; 3] = ["Yemen__long-body", "Italy__bad-chunked", "Chad"];

#[test]
fn wire_faults_over_tls_fail_as_over_plain_http() {
    let ca_dir = Work::new();
    let ca = ca_dir.path("ca.pem");
    let tls = Site::start_tls(&ca, &[]);
    let plain = Site::start(&[]);
    // The redirect to the raw listener stays on HTTPS.
    for fault in &WIRE_FAULTS[..2] {
        let res = tls
            .agent()
            .get(tls.url(fault))
            .config()
            .max_redirects(0)
            .build()
            .call()
            .unwrap();
        assert_eq!(res.status(), 307, "{fault}");
        let location = res.headers()["location"].to_str().unwrap();
        assert!(location.starts_with("https://127.0.0.1:"), "{location}");
    }
    let names = WIRE_FAULTS.map(String::from);
    let args = [
        "--timeout",
        "3",
        "--retries",
        "2",
        "--cacert",
        ca.to_str().unwrap(),
    ];
    for mode in [MODES[0], MODES[2]] {
        // (status, attempts, reason) of each item, over plain HTTP then TLS.
        let outcomes = [&plain, &tls].map(|site| {
            let mut all = vec!["--base-url", site.base.as_str()];
            all.extend_from_slice(&args);
            all.extend_from_slice(mode);
            let (work, code, report) = run(&names, &all, &[]);
            assert_eq!(code, Some(1), "{} {mode:?}: {report}", site.base);
            let files: Vec<String> = work.files("flags").into_keys().collect();
            assert_eq!(files, ["Chad.jpg"], "{} {mode:?}: files", site.base);
            report["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let name = r["name"].as_str().unwrap().to_string();
                    let outcome = format!("{} {} {}", r["status"], r["attempts"], r["reason"]);
                    (name, outcome)
                })
                .collect::<BTreeMap<String, String>>()
        });
        assert_eq!(outcomes[0], outcomes[1], "{mode:?}: plain, then TLS");
        let tls = &outcomes[1];
        assert_eq!(
            tls["Yemen__long-body"], r#""ERROR" 1 "incomplete JPEG: no end marker""#,
            "{mode:?}"
        );
        assert!(
            tls["Italy__bad-chunked"].starts_with(r#""ERROR" 3 "#),
            "{mode:?}: {tls:?}"
        );
    }
}
