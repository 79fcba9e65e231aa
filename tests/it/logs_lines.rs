//! The logs answer questions (docs/logs.md): every item's outcome in its
//! worker's log (`item_done`), every worker's figures (`worker_summary`), the
//! failed and requeued items in master.log, and the README's "Reading the
//! logs" recipes, each run with `sh -c` in the log directory: in every mode,
//! all of it agrees with the JSON report.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use common::{flag_names, is_event, logfmt, signal, stderr, Site, Work};

type Fields = BTreeMap<String, String>;

const README: &str = include_str!("../../README.md");

/// The README's recipes, by what they answer (the comment after each).
fn recipes() -> BTreeMap<&'static str, &'static str> {
    let section = README
        .split("### Reading the logs")
        .nth(1)
        .expect("README has a \"Reading the logs\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the recipes are a sh block");
    block
        .lines()
        .map(|line| {
            let (command, what) = line.split_once("  # ").expect(line);
            (what.trim(), command.trim())
        })
        .collect()
}

/// The output lines of the README's recipe for `what`, run in the log dir.
fn recipe(work: &Work, what: &str) -> Vec<String> {
    let recipes = recipes();
    let command = recipes
        .get(what)
        .unwrap_or_else(|| panic!("no README recipe for {what:?}: {recipes:?}"));
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(work.path("logs"))
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{command}: {}", stderr(&out));
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A recipe line `VALUE <log line>`: the value and the line's fields.
fn ranked(line: &str) -> (f64, Fields) {
    let (value, rest) = line.split_once(' ').expect(line);
    (value.parse().expect(line), logfmt(rest))
}

/// The lines of every worker log with `event=<event>`, with the worker of
/// the file they are in.
fn worker_events(work: &Work, event: &str) -> Vec<(u32, Fields)> {
    let mut found = Vec::new();
    for (file, text) in work.worker_logs("logs") {
        let worker = file["worker-".len()..file.len() - ".log".len()]
            .parse()
            .expect(&file);
        found.extend(
            text.lines()
                .filter(|l| is_event(l, event))
                .map(|l| (worker, logfmt(l))),
        );
    }
    found
}

fn names(
    report: &[serde_json::Value],
    keep: impl Fn(&serde_json::Value) -> bool,
) -> BTreeSet<String> {
    report
        .iter()
        .filter(|r| keep(r))
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn is_failed(r: &serde_json::Value) -> bool {
    (r["status"] == "NOT_FOUND" || r["status"] == "ERROR") && r["reason"] != "interrupted"
}

/// (fault item, status) mixed into the list: retried to success, not found,
/// failed after retries, timed out.
const FAULTS: &[(&str, &str)] = &[
    ("Peru__flaky", "OK"),
    ("Atlantis", "NOT_FOUND"),
    ("Oman__reset", "ERROR"),
    ("Chad__flaky", "OK"),
    ("Niger__hang", "ERROR"),
    ("Narnia", "NOT_FOUND"),
];

#[test]
fn the_logs_agree_with_the_report_in_every_mode() {
    for (mode, threads_per_worker) in [
        (&["--mode", "serial"][..], 1),
        (&["--mode", "threads", "--threads", "4"], 1),
        (&["--mode", "proc", "--procs", "3"], 1),
        (&["--mode", "proc", "--procs", "2", "--threads", "4"], 4),
    ] {
        // A fresh site per mode: `flaky` counts the requests per name.
        let site = Site::start(&[]);
        let work = Work::new();
        let mut list = flag_names(30);
        for (i, (name, _)) in FAULTS.iter().enumerate() {
            list.insert(i * 5 + 2, name.to_string());
        }
        let list = work.write_list(&list.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args = vec!["--base-url", &site.base, "--list", list.to_str().unwrap()];
        args.extend_from_slice(&["--timeout", "2", "--retries", "2", "--json"]);
        args.extend_from_slice(mode);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), 36, "{mode:?}");
        for (name, status) in FAULTS {
            let r = results.iter().find(|r| r["name"] == *name).unwrap();
            assert_eq!(r["status"], *status, "{mode:?}: {r}");
        }
        check_items(&work, results, mode);
        check_workers(&work, &report, threads_per_worker, mode);
        check_master_log(&work, &report, mode);
        check_recipes(&work, results, &report["workers"], mode);
    }
}

/// One `item_done` per item, in the log of the worker that finished it, as
/// the report says; each attempt line says whether it was the last.
fn check_items(work: &Work, results: &[serde_json::Value], mode: &[&str]) {
    let mut done: BTreeMap<String, (u32, Fields)> = BTreeMap::new();
    for (worker, f) in worker_events(work, "item_done") {
        let again = done.insert(f["item"].clone(), (worker, f));
        assert!(again.is_none(), "{mode:?}: item_done twice: {again:?}");
    }
    assert_eq!(done.len(), results.len(), "{mode:?}");
    for r in results {
        let name = r["name"].as_str().unwrap();
        let (worker, f) = &done[name];
        assert_eq!(
            f["status"],
            r["status"].as_str().unwrap(),
            "{mode:?} {name}"
        );
        assert_eq!(f["attempts"], r["attempts"].to_string(), "{mode:?} {name}");
        assert_eq!(f["bytes"], r["bytes"].to_string(), "{mode:?} {name}");
        // One clock for both: without a politeness cap, the same figure.
        assert_eq!(f["ms"], r["ms"].to_string(), "{mode:?} {name}");
        let reason = f.get("reason").map(String::as_str);
        assert_eq!(reason, r["reason"].as_str(), "{mode:?} {name}");
        assert_eq!(f["worker"], r["worker"].to_string(), "{mode:?} {name}");
        assert_eq!(
            *worker as u64,
            r["worker"].as_u64().unwrap(),
            "{mode:?} {name}"
        );
    }
    let mut attempts: BTreeMap<String, Vec<Fields>> = BTreeMap::new();
    for (_, f) in worker_events(work, "attempt") {
        assert!(f["start"] <= f["ts"], "{mode:?}: {f:?}");
        assert_eq!(f["start"].len(), "2026-12-07T04:57:26.123Z".len(), "{f:?}");
        attempts.entry(f["item"].clone()).or_default().push(f);
    }
    for (name, lines) in &attempts {
        let n = lines.len();
        assert_eq!(done[name].1["attempts"], n.to_string(), "{mode:?} {name}");
        for (i, f) in lines.iter().enumerate() {
            assert_eq!(f["attempt"], (i + 1).to_string(), "{mode:?} {name}");
            let last = if i + 1 == n { "true" } else { "false" };
            assert_eq!(f["last"], last, "{mode:?} {name}: {f:?}");
        }
        assert_eq!(lines[n - 1]["status"], done[name].1["status"], "{name}");
    }
}

/// One `worker_summary` per worker, its log's last line, with the report's
/// figures.
fn check_workers(work: &Work, report: &serde_json::Value, threads: u32, mode: &[&str]) {
    let rows = report["workers"].as_array().unwrap();
    let logs = work.worker_logs("logs");
    assert_eq!(logs.len(), rows.len(), "{mode:?}");
    let results = report["results"].as_array().unwrap();
    for row in rows {
        let worker = row["worker"].as_u64().unwrap();
        let log = &logs[&format!("worker-{worker:02}.log")];
        let last = logfmt(log.lines().last().unwrap());
        assert_eq!(last["event"], "worker_summary", "{mode:?}: {log}");
        assert_eq!(log.matches("event=worker_summary").count(), 1, "{log}");
        assert_eq!(last["worker"], worker.to_string());
        assert_eq!(last["pid"], row["pid"].to_string(), "{mode:?}");
        assert_eq!(last["threads"], threads.to_string(), "{mode:?}");
        assert_eq!(last["items"], row["items"].to_string(), "{mode:?}");
        assert_eq!(last["bytes"], row["bytes"].to_string(), "{mode:?}");
        let wall: f64 = last["wall_secs"].parse().unwrap();
        let secs = row["secs"].as_f64().unwrap();
        assert!((wall - secs).abs() < 0.0011, "{mode:?}: {wall} vs {secs}");
        let mine: Vec<&serde_json::Value> =
            results.iter().filter(|r| r["worker"] == worker).collect();
        let count = |s: &str| mine.iter().filter(|r| r["status"] == s).count().to_string();
        assert_eq!(last["ok"], count("OK"), "{mode:?}");
        assert_eq!(last["not_found"], count("NOT_FOUND"), "{mode:?}");
        assert_eq!(last["error"], count("ERROR"), "{mode:?}");
        assert_eq!(last["skipped"], count("SKIPPED"), "{mode:?}");
        let retries: u64 = mine
            .iter()
            .map(|r| r["attempts"].as_u64().unwrap() - 1)
            .sum();
        assert_eq!(last["retries"], retries.to_string(), "{mode:?}");
        let busy: f64 = last["busy_secs"].parse().unwrap();
        let idle: f64 = last["idle_secs"].parse().unwrap();
        // Each thread is busy or idle most of its time; the rest is its set-up.
        let spent: f64 = mine.iter().map(|r| r["ms"].as_f64().unwrap()).sum::<f64>() / 1000.0;
        assert!(busy >= spent - 0.01, "{mode:?}: busy {busy} < {spent}");
        assert!(
            busy + idle <= wall * threads as f64 + 0.01,
            "{mode:?}: busy {busy} + idle {idle} > {threads} x {wall}"
        );
    }
}

/// `worker_end` has each worker's figures, `failed` names exactly the failed
/// items, `done` the counts.
fn check_master_log(work: &Work, report: &serde_json::Value, mode: &[&str]) {
    let results = report["results"].as_array().unwrap();
    let failed = work.master_events("failed");
    let logged: BTreeSet<String> = failed.iter().map(|f| f["item"].clone()).collect();
    assert_eq!(logged.len(), failed.len(), "{mode:?}: {failed:?}");
    assert_eq!(logged, names(results, is_failed), "{mode:?}");
    for f in &failed {
        let r = results.iter().find(|r| r["name"] == f["item"]).unwrap();
        assert_eq!(f["status"], r["status"].as_str().unwrap(), "{mode:?}");
        assert_eq!(f["reason"], r["reason"].as_str().unwrap(), "{mode:?}");
        assert_eq!(f["attempts"], r["attempts"].to_string(), "{mode:?}");
        assert_eq!(f["worker"], r["worker"].to_string(), "{mode:?}");
    }
    assert!(work.master_events("failed_more").is_empty(), "{mode:?}");
    let done = &work.master_events("done")[0];
    for key in ["ok", "not_found", "error", "skipped"] {
        assert_eq!(
            done[key],
            report["counts"][key].to_string(),
            "{mode:?} {key}"
        );
    }
    assert_eq!(done["unfinished"], "0", "{mode:?}");
    let summaries: BTreeMap<String, Fields> = worker_events(work, "worker_summary")
        .into_iter()
        .map(|(w, f)| (w.to_string(), f))
        .collect();
    let ends = work.master_events("worker_end");
    assert_eq!(ends.len(), summaries.len(), "{mode:?}");
    for end in ends {
        let summary = &summaries[&end["worker"]];
        assert_eq!(end["finished"], "true");
        for key in ["items", "ok", "not_found", "error", "retries", "bytes"] {
            assert_eq!(end[key], summary[key], "{mode:?} {key}");
        }
        assert_eq!(end["secs"], summary["wall_secs"], "{mode:?}");
    }
}

/// The README's recipes give what the report says.
fn check_recipes(
    work: &Work,
    results: &[serde_json::Value],
    workers: &serde_json::Value,
    mode: &[&str],
) {
    let failed: BTreeSet<String> = recipe(work, "every failed item")
        .iter()
        .map(|l| logfmt(l)["item"].clone())
        .collect();
    assert_eq!(failed, names(results, is_failed), "{mode:?}");

    let retried: BTreeSet<String> = recipe(work, "every retried item")
        .iter()
        .map(|l| logfmt(l)["item"].clone())
        .collect();
    let expected = names(results, |r| r["attempts"].as_u64() > Some(1));
    assert_eq!(retried, expected, "{mode:?}");
    assert!(retried.contains("Oman__reset") && retried.contains("Peru__flaky"));

    // The 10 slowest: their times are the report's 10 largest (ties may
    // pick either item), each the report's time of the item named.
    let slowest: Vec<(f64, Fields)> = recipe(work, "the 10 slowest items")
        .iter()
        .map(|l| ranked(l))
        .collect();
    let mut times: Vec<f64> = results.iter().map(|r| r["ms"].as_f64().unwrap()).collect();
    times.sort_by(|a, b| b.total_cmp(a));
    let listed: Vec<f64> = slowest.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(listed, times[..10], "{mode:?}");
    for (ms, f) in &slowest {
        let r = results.iter().find(|r| r["name"] == f["item"]).unwrap();
        assert_eq!(r["ms"].as_f64(), Some(*ms), "{mode:?}: {r}");
    }
    assert_eq!(
        slowest[0].1["item"], "Niger__hang",
        "{mode:?}: cut by --timeout"
    );

    let slowest = recipe(work, "the slowest worker");
    assert_eq!(slowest.len(), 1, "{mode:?}: {slowest:?}");
    let (secs, f) = ranked(&slowest[0]);
    let rows = workers.as_array().unwrap();
    let most = rows
        .iter()
        .map(|w| w["secs"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let row = rows
        .iter()
        .find(|w| w["worker"].as_u64() == f["worker"].parse().ok())
        .unwrap();
    assert!((secs - most).abs() < 0.0011, "{mode:?}: {secs} vs {most}");
    assert!(
        (row["secs"].as_f64().unwrap() - most).abs() < 0.0011,
        "{mode:?}: {row}"
    );
}

#[test]
fn past_a_hundred_failures_master_log_counts_the_rest() {
    let site = Site::start(&[]);
    let work = Work::new();
    let missing: Vec<String> = (1..=103).map(|i| format!("Atlantis_{i}")).collect();
    let list = work.write_list(&missing.iter().map(String::as_str).collect::<Vec<_>>());
    let out = work.run(&[
        "--base-url",
        &site.base,
        "--list",
        list.to_str().unwrap(),
        "--mode",
        "threads",
        "--threads",
        "4",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failed = work.master_events("failed");
    assert_eq!(failed.len(), 100);
    assert!(failed.iter().all(|f| f["status"] == "NOT_FOUND"));
    assert_eq!(work.master_events("failed_more")[0]["count"], "3");
    // The worker logs have them all.
    assert_eq!(recipe(&work, "every failed item").len(), 103);
}

#[test]
fn a_killed_worker_s_items_are_named_and_finished_by_others() {
    // The first chunk is the two slow items, and goes to the first worker to
    // say hello; it is killed before the first of them is answered.
    let site = Site::start(&["--fault-ms", "1000"]);
    let work = Work::new();
    let slow = ["Chad__slow-headers", "Peru__slow-headers"];
    let mut list: Vec<String> = slow.iter().map(|s| s.to_string()).collect();
    list.extend(flag_names(20));
    let list = work.write_list(&list.iter().map(String::as_str).collect::<Vec<_>>());
    let child = work.spawn(
        &[
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--mode",
            "proc",
            "--procs",
            "3",
            "--chunk-size",
            "2",
            "--json",
        ],
        &[],
    );
    let (worker, pid) = common::hellos(&work, 1, Duration::from_secs(20))[0];
    signal("KILL", pid);
    let out = common::wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["ok"], 22, "every item still downloaded");

    let dead = &worker.to_string();
    let died = work.master_events("worker_died");
    assert_eq!(died.len(), 1, "{died:?}");
    assert_eq!(&died[0]["worker"], dead);
    assert_eq!(died[0]["requeued"], "2");
    let end = work.master_events("worker_end");
    let end = end.iter().find(|f| &f["worker"] == dead).unwrap();
    assert_eq!(end["finished"], "false", "{end:?}");
    assert_eq!(end["secs"], "-", "{end:?}");

    // The README's recipe names what it held, and another worker finished
    // each of those later.
    let requeued: Vec<Fields> = recipe(&work, "what a dead worker was holding")
        .iter()
        .map(|l| logfmt(l))
        .collect();
    let held: Vec<&str> = requeued.iter().map(|f| f["item"].as_str()).collect();
    assert_eq!(held, slow, "{requeued:?}");
    assert!(
        requeued.iter().all(|f| &f["worker"] == dead),
        "{requeued:?}"
    );
    let done = worker_events(&work, "item_done");
    for f in &requeued {
        let (worker, finished) = done
            .iter()
            .find(|(_, d)| d["item"] == f["item"])
            .unwrap_or_else(|| panic!("{} finished by nobody", f["item"]));
        assert_ne!(&worker.to_string(), dead, "{finished:?}");
        assert_eq!(finished["status"], "OK");
        assert!(finished["ts"] >= f["ts"], "{finished:?} before {f:?}");
        let r = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == f["item"])
            .unwrap();
        assert_eq!(r["worker"].as_u64(), Some(*worker as u64), "{r}");
    }
    // A dead worker's log simply stops: no outcome, no summary.
    let log = std::fs::read_to_string(work.path(&format!("logs/worker-{dead:0>2}.log"))).unwrap();
    assert!(!log.contains("event=item_done"), "{log}");
    assert!(!log.contains("event=worker_summary"), "{log}");
}
