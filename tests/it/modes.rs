//! The three modes (and hybrid proc x threads) against the real built-in site:
//! files on disk, reported figures and logs must all agree.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::{flag_names, logfmt, stderr, stdout, Site, Work};
use flagmaster::site::flag::flag_jpeg;

struct Case {
    args: &'static [&'static str],
    /// Worker log files expected.
    logs: usize,
    /// Distinct worker processes expected (proc mode).
    procs: Option<usize>,
    /// Worker loops, each of which keeps one connection alive for all its items.
    loops: u64,
}

const CASES: &[Case] = &[
    Case {
        args: &["--mode", "serial"],
        logs: 1,
        procs: None,
        loops: 1,
    },
    Case {
        args: &["--mode", "threads", "--threads", "4"],
        logs: 4,
        procs: None,
        loops: 4,
    },
    Case {
        args: &["--mode", "proc", "--procs", "3"],
        logs: 3,
        procs: Some(3),
        loops: 3,
    },
    Case {
        args: &[
            "--mode",
            "proc",
            "--procs",
            "2",
            "--threads",
            "3",
            "--chunk-size",
            "2",
        ],
        logs: 2,
        procs: Some(2),
        loops: 6,
    },
];

#[test]
fn every_mode_downloads_every_flag_byte_exact() {
    let site = Site::start(&["--delay-ms", "5"]);
    let names = flag_names(40);
    for case in CASES {
        let work = Work::new();
        let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(case.args);
        let connections_before = site.stats()["connections"].as_u64().unwrap();
        let out = work.run(&args);
        let what = format!("{:?}", case.args);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));

        // Connections: one per worker loop, reused for all its items. Each
        // `/stats` request comes on a connection of its own.
        let opened = site.stats()["connections"].as_u64().unwrap() - connections_before - 1;
        assert_eq!(opened, case.loops, "{what}: connections opened");
        let report: serde_json::Value =
            serde_json::from_str(&stdout(&out)).expect("stdout is one JSON document");

        // Files: one per name, exactly the bytes the site generates.
        let files = work.files("flags");
        assert_eq!(files.len(), names.len(), "{what}: {:?}", files.keys());
        let mut on_disk = 0u64;
        for name in &names {
            let bytes = &files[&format!("{name}.jpg")];
            assert_eq!(bytes, &flag_jpeg(name), "{what}: {name}");
            on_disk += bytes.len() as u64;
        }

        // Figures: counts and bytes agree with the disk.
        assert_eq!(report["counts"]["ok"], names.len(), "{what}");
        assert_eq!(report["counts"]["not_found"], 0, "{what}");
        assert_eq!(report["counts"]["error"], 0, "{what}");
        assert_eq!(report["bytes"], on_disk, "{what}");
        let workers = report["workers"].as_array().unwrap();
        assert_eq!(workers.len(), case.logs, "{what}");
        let worker_items: u64 = workers.iter().map(|w| w["items"].as_u64().unwrap()).sum();
        let worker_bytes: u64 = workers.iter().map(|w| w["bytes"].as_u64().unwrap()).sum();
        assert_eq!(worker_items, names.len() as u64, "{what}");
        assert_eq!(worker_bytes, on_disk, "{what}");
        assert_eq!(report["results"].as_array().unwrap().len(), names.len());

        // Logs: one per worker, one line per item, every item once.
        let logs = work.worker_logs("logs");
        assert_eq!(logs.len(), case.logs, "{what}: {:?}", logs.keys());
        let mut logged = BTreeMap::new();
        let mut pids = BTreeSet::new();
        for (file, text) in &logs {
            for line in common::attempt_lines(text) {
                let f = logfmt(line);
                assert_eq!(f["status"], "OK", "{what}: {file}: {line}");
                assert_eq!(f["http"], "200", "{what}: {line}");
                assert_eq!(f["attempt"], "1", "{what}: {line}");
                assert_eq!(
                    f["bytes"].parse::<usize>().unwrap(),
                    flag_jpeg(&f["item"]).len()
                );
                assert_eq!(format!("worker-{:0>2}.log", f["worker"]), *file, "{line}");
                *logged.entry(f["item"].clone()).or_insert(0) += 1;
                pids.insert(f["pid"].clone());
            }
        }
        assert_eq!(logged.len(), names.len(), "{what}");
        assert!(logged.values().all(|&n| n == 1), "{what}: {logged:?}");

        // The master's pid, from master.log.
        let master_log = std::fs::read_to_string(work.path("logs/master.log")).unwrap();
        let start = logfmt(master_log.lines().next().unwrap());
        assert_eq!(start["event"], "start");
        let master_pid = start["pid"].clone();
        match case.procs {
            Some(n) => {
                assert_eq!(pids.len(), n, "{what}: distinct worker pids {pids:?}");
                assert!(
                    !pids.contains(&master_pid),
                    "{what}: workers are other processes"
                );
                let reported: BTreeSet<String> =
                    workers.iter().map(|w| w["pid"].to_string()).collect();
                assert_eq!(reported, pids, "{what}: report and logs name the same pids");
                assert_eq!(master_log.matches("event=spawn").count(), n);
                assert_eq!(
                    master_log.matches("exit=\"exit status: 0\"").count(),
                    n,
                    "{master_log}"
                );
            }
            None => assert_eq!(pids, BTreeSet::from([master_pid]), "{what}"),
        }
        assert!(master_log.contains("event=done"), "{master_log}");
    }
}

#[test]
fn text_report_ends_with_the_classic_lines_and_counts_not_found() {
    let site = Site::start(&[]);
    let work = Work::new();
    let list = work.write_list(&["Chad", "Atlantis", "Peru", "Chad"]);
    let out = work.run(&[
        "--base-url",
        &site.base,
        "--list",
        list.to_str().unwrap(),
        "--mode",
        "proc",
        "--procs",
        "2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a NOT_FOUND item makes the status 1"
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    assert_eq!(
        lines[n - 3],
        "2 downloaded, 1 not found, 0 errors",
        "{text}"
    );
    let elapsed = lines[n - 2].strip_prefix("Elapsed time: ").expect(&text);
    let (whole, frac) = elapsed.split_once('.').expect("decimal");
    assert!(whole.parse::<u64>().is_ok() && frac.len() == 8, "{elapsed}");
    let on_disk: usize = work.files("flags").values().map(Vec::len).sum();
    assert_eq!(lines[n - 1], format!("{on_disk} bytes downloaded"));
    assert!(text.contains("NOT_FOUND  Atlantis  HTTP 404"), "{text}");
    assert!(
        stderr(&out).contains("duplicate entry \"Chad\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        work.files("flags").keys().collect::<Vec<_>>(),
        ["Chad.jpg", "Peru.jpg"]
    );
    assert_eq!(site.requests(), 3, "the duplicate is fetched once");
    let logs = work.worker_logs("logs").into_values().collect::<String>();
    let atlantis = common::attempt_lines(&logs)
        .map(logfmt)
        .find(|f| f["item"] == "Atlantis")
        .expect("Atlantis logged");
    assert_eq!(atlantis["status"], "NOT_FOUND");
    assert_eq!(atlantis["http"], "404");
}

#[test]
fn built_in_site_runs_inside_the_run() {
    let work = Work::new();
    let out = work.run(&[
        "--server", "local", "--mode", "proc", "--procs", "2", "--limit", "12",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Site: LOCAL (built-in"), "{text}");
    assert!(
        text.lines().next().unwrap().contains("http://127.0.0.1:"),
        "{text}"
    );
    let files = work.files("flags");
    assert_eq!(files.len(), 12);
    for (file, bytes) in files {
        assert_eq!(bytes, flag_jpeg(file.trim_end_matches(".jpg")), "{file}");
    }
}

#[test]
fn logs_of_the_previous_run_are_replaced() {
    let site = Site::start(&[]);
    let work = Work::new();
    let base = ["--base-url", site.base.as_str(), "--limit", "6"];
    let first = work.run(&[&base[..], &["--mode", "threads", "--threads", "4"][..]].concat());
    assert_eq!(first.status.code(), Some(0));
    let second = work.run(&[&base[..], &["--mode", "serial"][..]].concat());
    assert_eq!(second.status.code(), Some(0));
    let logs = work.worker_logs("logs");
    assert_eq!(logs.keys().collect::<Vec<_>>(), ["worker-01.log"]);
    assert_eq!(common::attempt_lines(&logs["worker-01.log"]).count(), 6);
    let master = std::fs::read_to_string(work.path("logs/master.log")).unwrap();
    assert_eq!(master.matches("event=start").count(), 1);
}

#[test]
fn a_run_starts_no_more_worker_loops_than_items() {
    let site = Site::start(&[]);
    struct Fit {
        args: &'static [&'static str],
        limit: u64,
        /// Processes and threads expected.
        layout: (u64, u64),
        /// Loops that get an item: each opens one connection.
        busy: u64,
        /// The Mode line's note, if the layout was shrunk.
        note: &'static str,
    }
    const CASES: [Fit; 5] = [
        Fit {
            args: &["--mode", "threads", "--threads", "8"],
            limit: 3,
            layout: (1, 3),
            busy: 3,
            note: "1 x 8 asked, fitted to 3 items to fetch",
        },
        Fit {
            args: &["--mode", "proc", "--procs", "4", "--threads", "8"],
            limit: 1,
            layout: (1, 1),
            busy: 1,
            note: "4 x 8 asked, fitted to 1 item to fetch",
        },
        // 3 threads each for 7 items: one loop is left without an item.
        Fit {
            args: &["--mode", "proc", "--procs", "3", "--threads", "4"],
            limit: 7,
            layout: (3, 3),
            busy: 7,
            note: "3 x 4 asked, fitted to 7 items to fetch",
        },
        Fit {
            args: &["--mode", "proc", "--procs", "2", "--threads", "2"],
            limit: 4,
            layout: (2, 2),
            busy: 4,
            note: "",
        },
        // Chunks of 3: 7 items are 3 chunks, so at most 3 loops have work.
        Fit {
            args: &[
                "--mode",
                "proc",
                "--procs",
                "2",
                "--threads",
                "4",
                "--chunk-size",
                "3",
            ],
            limit: 7,
            layout: (2, 2),
            busy: 3,
            note: "2 x 4 asked, fitted to 7 items to fetch in chunks of 3",
        },
    ];
    for Fit {
        args,
        limit,
        layout: (procs, threads),
        busy,
        note,
    } in CASES
    {
        let what = format!("{args:?} --limit {limit}");
        let work = Work::new();
        let run = |extra: &[&str]| {
            let limit = limit.to_string();
            let common = ["--base-url", site.base.as_str(), "--limit", &limit];
            work.run(&[&common[..], args, extra].concat())
        };
        let connections_before = site.stats()["connections"].as_u64().unwrap();
        let out = run(&[]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let opened = site.stats()["connections"].as_u64().unwrap() - connections_before - 1;
        assert_eq!(opened, busy, "{what}: connections");
        let mode_line = stdout(&out)
            .lines()
            .find(|l| l.starts_with("Mode: "))
            .unwrap_or_default()
            .to_string();
        let expected = format!("{procs} x {threads} thread(s)");
        assert!(mode_line.contains(&expected), "{what}: {mode_line}");
        if note.is_empty() {
            assert!(!mode_line.contains("asked"), "{what}: {mode_line}");
        } else {
            assert!(mode_line.contains(note), "{what}: {mode_line}");
        }
        let master_log = std::fs::read_to_string(work.path("logs/master.log")).unwrap();
        let start = logfmt(master_log.lines().next().unwrap_or_default());
        assert_eq!(
            (start["procs"].as_str(), start["threads"].as_str()),
            (procs.to_string().as_str(), threads.to_string().as_str()),
            "{what}"
        );
        let asked = if note.is_empty() {
            "-".to_string()
        } else {
            note.split(' ').take(3).collect::<Vec<_>>().join("")
        };
        assert_eq!(start["asked"], asked, "{what}");
        let logs = work.worker_logs("logs");
        let expected_logs = if args[1] == "threads" { threads } else { procs };
        assert_eq!(
            logs.len() as u64,
            expected_logs,
            "{what}: {:?}",
            logs.keys()
        );

        let out = run(&["--json"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(
            (report["procs"].as_u64(), report["threads"].as_u64()),
            (Some(procs), Some(threads)),
            "{what}"
        );
        assert_eq!(report["counts"]["ok"].as_u64(), Some(limit), "{what}");
    }
}

#[test]
fn the_site_serves_the_generated_flags() {
    let site = Site::start(&[]);
    let mut ok = ureq::get(format!("{}/Brazil.jpg", site.base))
        .call()
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "image/jpeg");
    assert_eq!(ok.body_mut().read_to_vec().unwrap(), flag_jpeg("Brazil"));
    let missing = ureq::get(format!("{}/Atlantis.jpg", site.base)).call();
    assert!(
        matches!(missing, Err(ureq::Error::StatusCode(404))),
        "{missing:?}"
    );
}

#[test]
fn every_process_reports_its_own_peak_memory() {
    let site = Site::start(&[]);
    let names = flag_names(20);
    for mode in [
        &["--mode", "threads"][..],
        &["--mode", "proc", "--procs", "3"],
    ] {
        let work = Work::new();
        let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(mode);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let plausible =
            |kb: &serde_json::Value| kb.as_u64().is_some_and(|kb| (500..500_000).contains(&kb));
        assert!(plausible(&report["master_peak_rss_kb"]), "{report}");
        let workers = report["workers"].as_array().unwrap();
        assert!(!workers.is_empty());
        for w in workers {
            assert!(plausible(&w["peak_rss_kb"]), "{w}");
        }
    }
}

#[test]
fn pinned_workers_take_the_cpus_in_turn() {
    let site = Site::start(&[]);
    let work = Work::new();
    let run = |extra: &[&str]| {
        let args = [
            "--base-url",
            site.base.as_str(),
            "--limit",
            "12",
            "--mode",
            "proc",
        ];
        work.run(&[&args[..], &["--procs", "3", "--threads", "2"][..], extra].concat())
    };
    let pinned_to = |log: &str| -> Vec<String> {
        log.lines()
            .map(logfmt)
            .filter(|f| f.get("event").map(String::as_str) == Some("pinned"))
            .map(|f| f["cpu"].clone())
            .collect()
    };

    let pin_reported = |out: &std::process::Output| {
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["pin"].clone()
    };

    let out = run(&["--pin", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(work.files("flags").len(), 12);
    assert_eq!(work.master_events("start")[0]["pin"], "true");
    assert_eq!(pin_reported(&out), true);
    // The CPUs this test may run on are the master's, which it inherits.
    let cpus = flagmaster_worker::affinity::allowed_cpus().unwrap();
    let logs = work.worker_logs("logs");
    assert_eq!(logs.len(), 3);
    for (w, log) in logs.values().enumerate() {
        assert_eq!(pinned_to(log), [cpus[w % cpus.len()].to_string()], "{log}");
    }

    let out = run(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(pin_reported(&out), false);
    let logs = work.worker_logs("logs");
    assert!(
        logs.values().all(|log| pinned_to(log).is_empty()),
        "{logs:?}"
    );

    let out = work.run(&["--base-url", &site.base, "--mode", "threads", "--pin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--pin"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
