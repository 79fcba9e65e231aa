//! HTTPS: the built-in site over TLS (`serve --tls --ca-out`), trusted with
//! `--cacert` or `SSL_CERT_FILE`, or not trusted at all; and a run's own site
//! over TLS (`--server LOCAL --tls`), which needs nothing extra.

use crate::common;

use std::collections::BTreeMap;

use common::{flag_names, logfmt, stderr, wait_output, Site, Work, RUN_DEADLINE};
use flagmaster::site::flag::flag_jpeg;

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

#[test]
fn an_untrusted_site_fails_every_item_once_in_plain_words() {
    let ca_dir = Work::new();
    let site = Site::start_tls(&ca_dir.path("ca.pem"), &[]);
    let names = flag_names(6);
    for mode in MODES {
        let mut args = vec!["--base-url", site.base.as_str()];
        args.extend_from_slice(mode);
        let what = format!("{mode:?}");
        let (work, code, report) = run(&names, &args, &[]);
        assert_eq!(code, Some(1), "{what}: {report}");
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), names.len(), "{what}");
        for r in results {
            assert_eq!(r["status"], "ERROR", "{what}: {r}");
            assert_eq!(r["reason"], UNTRUSTED, "{what}: {r}");
            assert_eq!(r["attempts"], 1, "{what}: not retried: {r}");
        }
        // One attempt line per item, with the same reason.
        let logs = work.worker_logs("logs").into_values().collect::<String>();
        let attempts: Vec<_> = common::attempt_lines(&logs).map(logfmt).collect();
        assert_eq!(attempts.len(), names.len(), "{what}: attempt lines");
        for a in &attempts {
            assert_eq!(a["attempt"], "1", "{what}: {a:?}");
            assert_eq!(a["reason"], UNTRUSTED, "{what}: {a:?}");
        }
        assert!(work.files("flags").is_empty(), "{what}: nothing written");
    }
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
