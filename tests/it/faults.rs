//! Hostile servers, in every mode: the built-in site's fault modes against the
//! real binary. Every item ends as the expected outcome, counts, files and
//! logs agree, the site saw exactly the expected retries, and nothing partial
//! or temporary is left in the destination.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{logfmt, stderr, Site, Work};
use flagmaster::site::flag::flag_jpeg;

/// (requested name, expected status, attempts, requests the site sees for
/// that name, reason prefix)
const CASES: &[(&str, &str, u64, u64, &str)] = &[
    ("Chad", "OK", 1, 1, ""),
    ("Peru__flaky", "OK", 3, 3, ""),
    ("Chile__status-429", "OK", 2, 2, ""),
    ("Cuba__status-503", "OK", 2, 2, ""),
    ("Fiji__redirect", "OK", 1, 1, ""),
    ("Spain__slow-headers", "OK", 1, 1, ""),
    ("Atlantis", "NOT_FOUND", 1, 1, "HTTP 404"),
    // One attempt that follows the loop ten times before giving up.
    ("Iran__redirect-loop", "ERROR", 1, 11, "too many redirects"),
    (
        "Iraq__html-200",
        "ERROR",
        1,
        1,
        "unexpected content type text/html",
    ),
    ("Mali__short-body", "ERROR", 3, 3, ""),
    ("Oman__reset", "ERROR", 3, 3, ""),
    (
        "Togo__huge",
        "ERROR",
        1,
        1,
        "body larger than 1000000 bytes",
    ),
    (
        "Laos__gzip-bomb",
        "ERROR",
        1,
        1,
        "body larger than 1000000 bytes",
    ),
    ("Niger__hang", "ERROR", 1, 1, "timeout"),
    ("Qatar__trickle", "ERROR", 1, 1, "timeout"),
    // The length header lies; the JPEG end marker is missing from what it declares.
    (
        "Yemen__long-body",
        "ERROR",
        1,
        1,
        "incomplete JPEG: no end marker",
    ),
    ("Italy__bad-chunked", "ERROR", 3, 3, ""),
];

#[test]
fn every_fault_ends_as_expected_in_every_mode() {
    for mode in [
        &["--mode", "serial"][..],
        &["--mode", "threads", "--threads", "4"],
        &["--mode", "proc", "--procs", "3"],
        &["--mode", "proc", "--procs", "2", "--threads", "2"],
    ] {
        // A fresh site per mode: the retry faults count requests per name.
        let site = Site::start(&["--fault-ms", "300"]);
        let work = Work::new();
        let names: Vec<&str> = CASES.iter().map(|c| c.0).collect();
        let list = work.write_list(&names);
        let mut args = vec!["--base-url", &site.base, "--list", list.to_str().unwrap()];
        args.extend_from_slice(&["--timeout", "3", "--retries", "2", "--max-size", "1000000"]);
        args.extend_from_slice(&["--chunk-size", "1", "--json"]);
        args.extend_from_slice(mode);
        let started = Instant::now();
        let out = work.run(&args);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let results: BTreeMap<String, &serde_json::Value> = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_string(), r))
            .collect();
        let by_name = site.stats()["by_name"].clone();
        for &(name, status, attempts, requests, reason) in CASES {
            let r = results[name];
            assert_eq!(r["status"], status, "{mode:?} {name}: {r}");
            let got_reason = r["reason"].as_str().unwrap_or("");
            assert!(got_reason.starts_with(reason), "{mode:?} {name}: {r}");
            assert_eq!(r["attempts"], attempts, "{mode:?} {name}: {r}");
            assert_eq!(
                by_name[name], requests,
                "{mode:?} {name}: requests seen by the site"
            );
        }
        let count = |s: &str| CASES.iter().filter(|c| c.1 == s).count();
        assert_eq!(report["counts"]["ok"], count("OK"), "{mode:?}");
        assert_eq!(
            report["counts"]["not_found"],
            count("NOT_FOUND"),
            "{mode:?}"
        );
        assert_eq!(report["counts"]["error"], count("ERROR"), "{mode:?}");

        // Only the OK items are on disk, byte-exact; nothing partial or temporary.
        let files = work.files("flags");
        let mut expected = BTreeMap::new();
        for &(name, status, ..) in CASES {
            if status == "OK" {
                let flag = name.split("__").next().unwrap();
                expected.insert(format!("{name}.jpg"), flag_jpeg(flag));
            }
        }
        assert_eq!(files, expected, "{mode:?}: files on disk");
        let on_disk: usize = files.values().map(Vec::len).sum();
        assert_eq!(report["bytes"], on_disk, "{mode:?}");

        // One log line per attempt, each item's last line agreeing with the report.
        let logs = work.worker_logs("logs").into_values().collect::<String>();
        let mut last: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut lines = 0u64;
        for line in common::attempt_lines(&logs) {
            let f = logfmt(line);
            lines += 1;
            last.insert(f["item"].clone(), f);
        }
        assert_eq!(
            lines,
            CASES.iter().map(|c| c.2).sum::<u64>(),
            "{mode:?}: {logs}"
        );
        for &(name, status, attempts, ..) in CASES {
            assert_eq!(last[name]["status"], status, "{mode:?} {name}");
            assert_eq!(
                last[name]["attempt"],
                attempts.to_string(),
                "{mode:?} {name}"
            );
        }
        // Bounded: the slowest items are cut by the 3 s deadline.
        assert!(took < Duration::from_secs(60), "{mode:?}: took {took:?}");
    }
}

#[test]
fn the_error_site_is_retried_to_success() {
    let work = Work::new();
    let out = work.run(&[
        "--server", "ERROR", "--limit", "60", "--mode", "threads", "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    let retried = results
        .iter()
        .filter(|r| r["attempts"].as_u64() > Some(1))
        .count();
    assert!(
        retried > 0,
        "a quarter of the answers are 503s, some items need retries"
    );
    let ok = report["counts"]["ok"].as_u64().unwrap();
    let failed = report["counts"]["error"].as_u64().unwrap();
    assert_eq!(ok + failed, 60);
    let expected = if failed == 0 { 0 } else { 1 };
    assert_eq!(out.status.code(), Some(expected), "{}", stderr(&out));
    for r in results.iter().filter(|r| r["status"] == "ERROR") {
        assert_eq!(r["reason"], "HTTP 503", "{r}");
        assert_eq!(r["attempts"], 3, "{r}");
    }
}
