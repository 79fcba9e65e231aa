//! `flagmaster logs` on the logs of real runs: in every mode against the
//! built-in site with faults, its figures agree with the run's own JSON
//! report and its timeline has a lane per worker thread and a bar per
//! attempt; the logs of a killed worker, a panicked one, a cut file and a
//! missing one are read with one warning, and the dead worker's items named.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

use common::{logfmt, signal, stderr, stdout, Site, Work};
use serde_json::Value;

/// Healthy names, and faults the site serves: retried then OK, NOT_FOUND,
/// an ERROR after its retries, and a hang that times out.
const NAMES: &[&str] = &[
    "Chad",
    "Peru__flaky",
    "Chile__status-503",
    "Atlantis",
    "Oman__reset",
    "Niger__hang",
    "Fiji",
    "Cuba",
    "Iran",
    "Iraq",
    "Laos",
    "Mali",
    "Togo",
    "Yemen",
    "Spain",
    "Italy",
];

/// (mode arguments, worker threads in all)
const MODES: &[(&[&str], usize)] = &[
    (&["--mode", "serial"], 1),
    (&["--mode", "threads", "--threads", "4"], 4),
    (&["--mode", "proc", "--procs", "3"], 3),
    (&["--mode", "proc", "--procs", "2", "--threads", "2"], 4),
];

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// Names of the failed items of a report's results, or of `logs --json`'s `failed`.
fn names(items: &Value, key: &str, keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| keep(r))
        .map(|r| r[key].as_str().unwrap().to_string())
        .collect()
}

/// Worker number to items, of a report's or of `logs --json`'s first run's workers.
fn per_worker(workers: &Value) -> BTreeMap<u64, u64> {
    workers
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["worker"].as_u64().unwrap(), w["items"].as_u64().unwrap()))
        .collect()
}

#[test]
fn logs_agree_with_the_report_and_draw_every_attempt_in_every_mode() {
    for &(mode, loops) in MODES {
        let site = Site::start(&["--fault-ms", "300"]);
        let work = Work::new();
        let list = work.write_list(NAMES);
        let mut args = vec!["--base-url", &site.base, "--list", list.to_str().unwrap()];
        args.extend_from_slice(&["--timeout", "2", "--retries", "2", "--chunk-size", "1"]);
        args.extend_from_slice(&["--json", "--quiet"]);
        args.extend_from_slice(mode);
        let run = work.run(&args);
        assert_eq!(run.status.code(), Some(1), "{mode:?}: {}", stderr(&run));
        let report = json(&run);

        let out = work.run(&["logs", "--json", "--top", "5"]);
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{mode:?}: no warning for a whole run");
        let logs = json(&out);
        assert_eq!(logs["counts"], report["counts"], "{mode:?}");
        assert_eq!(logs["bytes"], report["bytes"], "{mode:?}");
        let failed = |r: &Value| r["status"] != "OK";
        assert_eq!(
            names(&logs["failed"], "item", |_| true),
            names(&report["results"], "name", failed),
            "{mode:?}"
        );
        assert_eq!(
            names(&logs["failed"], "item", |_| true),
            ["Atlantis", "Niger__hang", "Oman__reset"]
                .map(String::from)
                .into(),
            "{mode:?}"
        );
        let run0 = &logs["runs"][0];
        assert_eq!(
            per_worker(&run0["workers"]),
            per_worker(&report["workers"]),
            "{mode:?}"
        );
        let retried = names(&logs["retried"], "item", |_| true);
        for name in ["Peru__flaky", "Chile__status-503", "Oman__reset"] {
            assert!(retried.contains(name), "{mode:?}: {name} in {retried:?}");
        }
        assert_eq!(logs["slowest_attempts"].as_array().unwrap().len(), 5);
        assert_eq!(
            logs["slowest_attempts"][0]["item"], "Niger__hang",
            "{mode:?}: the hang is the slowest"
        );
        assert!(logs["lost_workers"].as_array().unwrap().is_empty());

        // The timeline: a lane per worker thread, a bar per attempt.
        let out = work.run(&["logs", "--timeline", "t.svg"]);
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {}", stderr(&out));
        let svg = fs::read_to_string(work.path("t.svg")).unwrap();
        let attempts: u64 = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["attempts"].as_u64().unwrap())
            .sum();
        let attempt_lines = work
            .worker_logs("logs")
            .values()
            .flat_map(|log| log.lines().map(logfmt).collect::<Vec<_>>())
            .filter(|f| f.get("event").map(String::as_str) == Some("attempt"))
            .count();
        assert_eq!(attempt_lines as u64, attempts, "{mode:?}");
        assert_eq!(
            svg.matches("<rect class=\"attempt ").count() as u64,
            attempts,
            "{mode:?}"
        );
        assert_eq!(
            svg.matches("<rect class=\"lane\"").count(),
            loops,
            "{mode:?}"
        );
        assert_eq!(
            svg.matches("<rect class=\"attempt not-found\"").count(),
            1,
            "{mode:?}"
        );
        // Peru__flaky: two failed attempts, then an OK one, as three bars.
        assert_eq!(svg.matches("<title>Peru__flaky attempt ").count(), 3);

        // Filters: one outcome, one worker.
        let out = work.run(&["logs", "--json", "--status", "NOT_FOUND"]);
        let filtered = json(&out);
        let slow = filtered["slowest_attempts"].as_array().unwrap();
        assert_eq!(slow.len(), 1, "{mode:?}");
        assert_eq!(slow[0]["item"], "Atlantis");
        let out = work.run(&["logs", "--json", "--worker", "1"]);
        let one = json(&out);
        let workers = one["runs"][0]["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 1);
        assert!(one["slowest_attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["worker"] == 1));
    }
}

#[test]
fn the_text_names_the_slowest_worker_and_the_failures() {
    let site = Site::start(&["--delay-ms", "20"]);
    let work = Work::new();
    let list = work.write_list(&["Chad", "Atlantis", "Peru", "Fiji", "Cuba", "Iran"]);
    let run = work.run(&[
        "--base-url",
        &site.base,
        "--list",
        list.to_str().unwrap(),
        "--mode",
        "proc",
        "--procs",
        "2",
        "--quiet",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let out = work.run(&["logs", "logs"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("logs: proc 2x1, 6 items in "), "{text}");
    assert!(text.contains("5 OK, 1 not found, 0 errors"), "{text}");
    assert!(text.contains("\nSlowest: worker 0"), "{text}");
    assert!(text.contains("\nSlowest attempts:\n"), "{text}");
    let failed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Failed items (1):"))
        .take(3)
        .collect();
    assert_eq!(failed[1], "status     item      attempts  worker  reason");
    assert!(
        failed[2].starts_with("NOT_FOUND  Atlantis         1      0"),
        "{text}"
    );
    assert!(failed[2].ends_with("  HTTP 404"), "{text}");
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("worker "))
        .take(3)
        .collect();
    assert!(table[1].trim_start().starts_with("01 "), "{table:?}");
    assert!(table[2].trim_start().starts_with("02 "), "{table:?}");
}

#[test]
fn a_missing_dir_is_one_line_and_status_2() {
    let work = Work::new();
    let out = work.run(&["logs", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "flagmaster: cannot read log dir nowhere: No such file or directory (os error 2)\n"
    );
    fs::create_dir(work.path("empty")).unwrap();
    let out = work.run(&["logs", "empty"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = work.run(&["logs", "empty", "--timeline", "t.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("name it FILE.svg"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_killed_worker_a_cut_line_and_a_missing_log_give_one_warning() {
    let site = Site::start(&["--delay-ms", "100"]);
    let work = Work::new();
    let child = work.spawn(
        &common::proc_run(&site.base, "40", "3", &["--chunk-size", "4", "--json"]),
        &[],
    );
    // Killed once it has finished an item, so that it has a lane to end.
    let (victim, pid) = common::hellos(&work, 3, std::time::Duration::from_secs(20))[1];
    let log = work.path(&format!("logs/worker-{victim:02}.log"));
    let start = std::time::Instant::now();
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("event=item_done")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "worker {victim} did nothing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    signal("KILL", pid);
    let out = common::wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    let died = work.master_events("worker_died");
    assert_eq!(died.len(), 1);
    let dead: u64 = died[0]["worker"].parse().unwrap();
    let requeued: BTreeSet<String> = work
        .master_events("requeued")
        .iter()
        .map(|f| f["item"].clone())
        .collect();
    assert!(!requeued.is_empty(), "the killed worker held items");

    // Whole logs: no warning, the dead worker and what it handed on named.
    let out = work.run(&["logs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let logs = json(&out);
    assert_eq!(logs["counts"], report["counts"]);
    let lost = logs["lost_workers"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["worker"], dead);
    assert_eq!(lost[0]["how"], "died");
    assert!(
        lost[0]["exit"].as_str().unwrap().contains("signal: 9"),
        "{lost:?}"
    );
    assert_eq!(names(&lost[0]["handed_on"], "item", |_| true), requeued);
    for h in lost[0]["handed_on"].as_array().unwrap() {
        assert_eq!(h["status"], "OK", "another worker did it: {h}");
        assert_ne!(h["worker"], dead);
    }
    let text = stdout(&work.run(&["logs"]));
    let first = requeued.iter().next().unwrap();
    assert!(
        text.contains(&format!("{first} (worker ")),
        "the text names the handed-on items: {text}"
    );

    // Cut the last line of one surviving worker's log mid-line, and lose
    // the other's (hello order is not worker order: the dead one may be any).
    let survivors: Vec<u64> = (1..=3).filter(|&w| w != dead).collect();
    let (cut, gone) = (
        format!("logs/worker-{:02}.log", survivors[0]),
        format!("logs/worker-{:02}.log", survivors[1]),
    );
    let mut bytes = fs::read(work.path(&cut)).unwrap();
    bytes.truncate(bytes.len() - 10);
    fs::write(work.path(&cut), bytes).unwrap();
    fs::remove_file(work.path(&gone)).unwrap();
    let out = work.run(&["logs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one warning line: {err}");
    assert_eq!(
        err,
        format!(
            "flagmaster: warning: {cut}: 1 line not read (truncated or not logfmt); {gone}: missing\n"
        )
    );
    let logs = json(&out);
    assert_eq!(logs["lost_workers"][0]["worker"], dead);
    // The text and the timeline still come out.
    let out = work.run(&["logs", "--timeline", "t.svg"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("ended without finishing"));
    let svg = fs::read_to_string(work.path("t.svg")).unwrap();
    assert!(
        svg.contains("died (signal: 9"),
        "the dead worker's lane says so"
    );
}

#[test]
fn a_panicked_worker_s_log_is_read_up_to_its_panic() {
    let site = Site::start(&["--delay-ms", "20"]);
    let work = Work::new();
    let child = work.spawn(
        &common::proc_run(&site.base, "30", "3", &["--chunk-size", "2", "--quiet"]),
        &[(flagmaster_worker::child::PANIC_AFTER_ENV, "2:3")],
    );
    let out = common::wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let w2 = fs::read_to_string(work.path("logs/worker-02.log")).unwrap();
    assert!(w2.contains("panicked"), "{w2}");
    let out = work.run(&["logs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("flagmaster: warning: logs/worker-02.log: ")
            && err.contains("not read (truncated or not logfmt)"),
        "{err}"
    );
    let logs = json(&out);
    assert_eq!(logs["counts"]["ok"], 30);
    let lost = logs["lost_workers"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0]["worker"], 2);
    assert_eq!(lost[0]["items_done"], 3);
    let w2_row = &logs["runs"][0]["workers"][1];
    assert_eq!(w2_row["worker"], 2);
    assert_eq!(w2_row["items"], 3);
    assert_eq!(w2_row["finished"], false);
}

#[test]
fn an_interrupted_run_is_read_as_the_report_tells_it() {
    let site = Site::start(&["--delay-ms", "150"]);
    let work = Work::new();
    let child = work.spawn(&common::proc_run(&site.base, "60", "3", &["--json"]), &[]);
    let pid = child.id();
    let start = std::time::Instant::now();
    while work.files("flags").len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal("INT", pid);
    let out = common::wait_output(child, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let report = json(&out);
    let out = work.run(&["logs", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let logs = json(&out);
    assert_eq!(logs["counts"], report["counts"]);
    assert!(logs["counts"]["interrupted"].as_u64().unwrap() > 0);
    assert_eq!(logs["runs"][0]["interrupted"], true);
    assert_eq!(
        per_worker(&logs["runs"][0]["workers"]),
        per_worker(&report["workers"])
    );
    assert!(logs["failed"].as_array().unwrap().is_empty(), "{logs}");
    assert!(
        logs["lost_workers"].as_array().unwrap().is_empty(),
        "{logs}"
    );
    let text = stdout(&work.run(&["logs"]));
    assert!(text.contains(", interrupted\n"), "{text}");
}
