//! Worker processes that die: the run still accounts for every item, and a
//! killed master leaves no worker behind.

use crate::common;

use std::time::{Duration, Instant};

use common::{alive, signal, stderr, ChildGuard, Site, Work};

/// Pids of the workers the master spawned, read from master.log, waiting up to
/// `deadline` for `n` of them.
fn spawned_pids(work: &Work, n: usize, deadline: Duration) -> Vec<i32> {
    common::hellos(work, n, deadline)
        .into_iter()
        .map(|(_, pid)| pid)
        .collect()
}

#[test]
fn a_killed_worker_hands_its_items_to_the_others() {
    let site = Site::start(&["--delay-ms", "100"]);
    let work = Work::new();
    let child = work.spawn(
        &common::proc_run(&site.base, "40", "3", &["--chunk-size", "4", "--json"]),
        &[],
    );
    let pids = spawned_pids(&work, 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(250));
    signal("KILL", pids[1]);
    let out = common::wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["ok"], 40, "every item still downloaded");
    assert_eq!(work.files("flags").len(), 40);
    let died = work.master_events("worker_died");
    assert_eq!(died.len(), 1, "master.log records the death");
    assert_eq!(died[0]["pid"], pids[1].to_string());
    let end = work.master_events("worker_end");
    let killed = end.iter().find(|f| f["pid"] == died[0]["pid"]).unwrap();
    assert!(killed["exit"].contains("signal: 9"), "{killed:?}");
    assert!(
        stderr(&out).contains("ended without finishing"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn workers_exit_when_the_master_is_killed() {
    // Trickling bodies: the kill lands while workers are writing temporary files.
    let site = Site::start(&["--fault", "trickle", "--fault-ms", "400"]);
    let work = Work::new();
    let master = work.spawn(
        &[
            "--base-url",
            &site.base,
            "--mode",
            "proc",
            "--procs",
            "3",
            "--chunk-size",
            "1",
        ],
        &[],
    );
    let mut master = ChildGuard(master);
    let pids = spawned_pids(&work, 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    master.0.kill().unwrap();
    master.0.wait().unwrap();
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let survivors: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &pid in &survivors {
        signal("KILL", pid);
    }
    assert!(survivors.is_empty(), "orphaned workers: {survivors:?}");
    let temporary: Vec<String> = work
        .files("flags")
        .into_keys()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(temporary.is_empty(), "temporary files left: {temporary:?}");
    assert!(partial_files(&work).is_empty());
}

/// Files left in `dest` that are not complete flags.
fn partial_files(work: &Work) -> Vec<String> {
    work.files("flags")
        .into_iter()
        .filter(|(name, bytes)| {
            let flag = name.strip_suffix(".jpg").unwrap_or(name);
            *bytes != flagmaster::site::flag::flag_jpeg(flag)
        })
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn ctrl_c_stops_cleanly_in_every_mode_and_a_rerun_completes() {
    let site = Site::start(&["--delay-ms", "150", "--jitter-ms", "100"]);
    for mode in [
        &["--mode", "serial"][..],
        &["--mode", "threads", "--threads", "4"],
        &["--mode", "proc", "--procs", "3"],
    ] {
        let work = Work::new();
        let args = ["--base-url", &site.base, "--limit", "60", "--json"];
        let child = work.spawn(&[&args[..], mode].concat(), &[]);
        let master_pid = child.id();
        // Wait until some items are done, so the interrupt lands mid-run.
        let start = Instant::now();
        while work.files("flags").len() < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{mode:?}: no progress"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let workers: Vec<i32> = if mode.contains(&"proc") {
            spawned_pids(&work, 3, Duration::from_secs(5))
        } else {
            Vec::new()
        };
        signal("INT", master_pid);
        let out = common::wait_output(child, Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(130), "{mode:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{mode:?}: {err}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{mode:?}: partial report is JSON ({e})"));
        assert_eq!(report["interrupted"], true);
        let ok = report["counts"]["ok"].as_u64().unwrap();
        assert!(
            ok > 0 && ok < 60,
            "{mode:?}: {ok} done before the interrupt"
        );
        assert_eq!(
            report["counts"]["ok"].as_u64().unwrap()
                + report["counts"]["error"].as_u64().unwrap()
                + report["counts"]["interrupted"].as_u64().unwrap(),
            60,
            "{mode:?}: every item accounted for"
        );
        // master.log counts the unfinished and lists no failure for them.
        let done = &work.master_events("done")[0];
        let unfinished = report["counts"]["interrupted"].to_string();
        assert_eq!(done["unfinished"], unfinished, "{mode:?}");
        assert_eq!(done["interrupted"], "true", "{mode:?}");
        let failures = report["counts"]["error"].as_u64().unwrap()
            + report["counts"]["not_found"].as_u64().unwrap();
        let failed = work.master_events("failed");
        assert_eq!(failed.len() as u64, failures, "{mode:?}: {failed:?}");
        let files = work.files("flags");
        assert_eq!(files.len() as u64, ok, "{mode:?}: one file per OK item");
        assert!(partial_files(&work).is_empty(), "{mode:?}: partial files");
        let hidden: Vec<_> = files.keys().filter(|n| n.starts_with('.')).collect();
        assert!(
            hidden.is_empty(),
            "{mode:?}: temporary files left: {hidden:?}"
        );
        let start = Instant::now();
        while workers.iter().any(|&p| alive(p)) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let orphans: Vec<i32> = workers.iter().copied().filter(|&p| alive(p)).collect();
        orphans.iter().for_each(|&p| signal("KILL", p));
        assert!(orphans.is_empty(), "{mode:?}: orphans {orphans:?}");

        // A later run completes what is missing (in threads mode, to be quick).
        let again = work.run(&[&args[..], &["--mode", "threads", "--threads", "8"]].concat());
        assert_eq!(again.status.code(), Some(0), "{mode:?}: {}", stderr(&again));
        assert_eq!(work.files("flags").len(), 60);
        assert!(partial_files(&work).is_empty());
    }
}

#[test]
fn a_worker_that_dies_before_its_hello_does_not_hang_the_run() {
    let site = Site::start(&[]);
    let work = Work::new();
    let child = work.spawn(
        &common::proc_run(&site.base, "20", "3", &["--json"]),
        &[(flagmaster_worker::child::EXIT_BEFORE_HELLO_ENV, "2")],
    );
    let out = common::wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["ok"], 20);
    assert_eq!(report["workers"].as_array().unwrap().len(), 2);
    let failed = work.master_events("handshake_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["worker"], "2");
    assert_eq!(failed[0]["exit"], "exit status: 7");
    let log = std::fs::read_to_string(work.path("logs/worker-02.log")).unwrap();
    assert!(
        log.contains("injected exit before hello"),
        "stderr is in the log: {log}"
    );
}

#[test]
fn a_panicking_worker_is_recorded_and_its_items_handed_on() {
    let site = Site::start(&["--delay-ms", "20"]);
    let work = Work::new();
    let child = work.spawn(
        &common::proc_run(&site.base, "30", "2", &["--chunk-size", "5", "--json"]),
        &[(flagmaster_worker::child::PANIC_AFTER_ENV, "1:2")],
    );
    let out = common::wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        !err.contains("panicked"),
        "workers' panics stay in their logs: {err}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["ok"], 30, "every item still downloaded");
    assert_eq!(work.files("flags").len(), 30);
    let died = work.master_events("worker_died");
    assert_eq!(died.len(), 1, "one death");
    assert_eq!(died[0]["worker"], "1");
    let end = work.master_events("worker_end");
    let w1 = end.iter().find(|f| f["worker"] == "1").unwrap();
    assert_eq!(w1["exit"], "exit status: 1");
    assert_eq!(w1["finished"], "false");
    let log = std::fs::read_to_string(work.path("logs/worker-01.log")).unwrap();
    assert!(log.contains("injected panic after 2 items"), "{log}");
    assert!(log.contains("a worker thread panicked"), "{log}");
}

#[test]
fn a_second_ctrl_c_quits_at_once_without_partial_files() {
    // Every item hangs, so the first Ctrl-C alone would wait out its grace period.
    let site = Site::start(&["--fault", "trickle", "--fault-ms", "4000"]);
    for mode in [
        &["--mode", "threads", "--threads", "4"][..],
        &["--mode", "proc", "--procs", "2"],
    ] {
        let work = Work::new();
        let requests = site.requests();
        let child = work.spawn(
            &[
                &["--base-url", &site.base, "--limit", "8", "--json"][..],
                mode,
            ]
            .concat(),
            &[],
        );
        let pid = child.id();
        // Wait until bodies are being written: the site sends the first piece
        // with the headers. (The file being written has no name yet, see
        // `save::Pending`, so the destination cannot tell.)
        let start = Instant::now();
        while site.requests() == requests {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{mode:?}: no download started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        signal("INT", pid);
        std::thread::sleep(Duration::from_millis(100));
        signal("INT", pid);
        let out = common::wait_output(child, Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(130), "{mode:?}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["interrupted"], true);
        // Unfinished, not failed: a Ctrl-C is no error of the items.
        assert_eq!(
            report["counts"]["interrupted"], 8,
            "{mode:?}: nothing finished"
        );
        assert_eq!(report["counts"]["error"], 0, "{mode:?}");
        assert!(
            work.files("flags").is_empty(),
            "{mode:?}: {:?}",
            work.files("flags").keys()
        );
    }
}
