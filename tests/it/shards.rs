//! Sharding across machines, `merge-reports` and shell completions, with the
//! real binary against the real built-in site: the shards of the built-in list
//! cover it exactly once in every mode, the same on every run and whichever
//! scheduler's variables name the shard; their reports merge into the whole.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{flag_names, logfmt, stderr, stdout, wait_output, Site, Work, BIN, RUN_DEADLINE};
use flagmaster::site::flag::flag_jpeg;

/// Variables that name a shard; removed from every run unless a test sets
/// them, so a test machine that is itself an array task cannot skew a result.
const SHARD_VARS: &[&str] = &[
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
    "AWS_BATCH_JOB_ARRAY_SIZE",
    "FLAGMASTER_SHARD_COUNT",
];

/// The four shards' modes: every transport takes part.
const MODES: [&[&str]; 4] = [
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "4"],
    &["--mode", "proc", "--procs", "2"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

/// Environment variables a run gets.
type Env<'a> = Vec<(&'a str, &'a str)>;
/// Arguments and environment of a refused run, and what its one line says.
type Refused<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for var in SHARD_VARS {
        cmd.env_remove(var);
    }
    let child = cmd
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flagmaster");
    wait_output(child, RUN_DEADLINE)
}

/// One shard run's outcome: its report and the names of the files it wrote.
struct Share {
    report: serde_json::Value,
    files: BTreeSet<String>,
}

impl Share {
    fn names(&self) -> BTreeSet<String> {
        self.report["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["name"].as_str().expect("name").to_string())
            .collect()
    }
}

/// Downloads one share into a fresh directory of `work` and checks that the
/// report, the files and the logs agree.
fn download(work: &Work, dir: &str, site: &Site, extra: &[&str], env: &[(&str, &str)]) -> Share {
    let root = work.path(dir);
    std::fs::create_dir_all(&root).expect("run dir");
    let mut args = vec!["--base-url", site.base.as_str(), "--json"];
    args.extend_from_slice(extra);
    let out = run(&root, &args, env);
    let what = format!("{dir} {extra:?} {env:?}");
    assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
    std::fs::write(root.join("report.json"), &out.stdout).expect("save report");
    let report: serde_json::Value =
        serde_json::from_str(&stdout(&out)).expect("stdout is one JSON document");

    let mut files = BTreeSet::new();
    let mut on_disk = 0;
    for entry in std::fs::read_dir(root.join("flags")).expect("dest") {
        let entry = entry.expect("dir entry");
        let file = entry.file_name().into_string().expect("UTF-8 name");
        let bytes = std::fs::read(entry.path()).expect("read file");
        let name = file.trim_end_matches(".jpg").to_string();
        assert_eq!(bytes, flag_jpeg(&name), "{what}: {file}");
        on_disk += bytes.len() as u64;
        files.insert(name);
    }
    let share = Share { report, files };
    let r = &share.report;
    assert_eq!(share.names(), share.files, "{what}: report and disk");
    assert_eq!(r["items"], share.files.len(), "{what}");
    assert_eq!(r["counts"]["ok"], share.files.len(), "{what}");
    assert_eq!(r["bytes"], on_disk, "{what}");
    let indexes: Vec<u64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indexes,
        (0..indexes.len() as u64).collect::<Vec<_>>(),
        "{what}"
    );

    // The shard shows in master.log's start line and in the worker logs.
    let master = std::fs::read_to_string(root.join("logs/master.log")).expect("master.log");
    let start = logfmt(master.lines().next().expect("start line"));
    assert_eq!(start["event"], "start", "{what}");
    assert_eq!(start["items"], share.files.len().to_string(), "{what}");
    assert_eq!(start["list_items"], "197", "{what}");
    if let Some(shard) = r["shard"].as_object() {
        assert_eq!(
            start["shard"],
            format!("{}/{}", shard["index"], shard["count"]),
            "{what}"
        );
        assert_eq!(start["shard_source"], shard["source"].as_str().unwrap());
        let notes = stderr(&out);
        assert!(
            notes.contains(&format!(
                "{} items (shard {}/{} from ",
                share.files.len(),
                shard["index"],
                shard["count"]
            )),
            "{what}: {notes}"
        );
    }
    let mut logged = 0;
    for entry in std::fs::read_dir(root.join("logs")).expect("logs") {
        let entry = entry.expect("dir entry");
        if entry.file_name().to_string_lossy().starts_with("worker-") {
            let log = std::fs::read_to_string(entry.path()).unwrap();
            for line in common::attempt_lines(&log) {
                assert!(
                    share.files.contains(&logfmt(line)["item"]),
                    "{what}: {line}"
                );
                logged += 1;
            }
        }
    }
    assert_eq!(logged, share.files.len(), "{what}: one log line per item");
    share
}

fn shard_json(index: u32, source: &str) -> serde_json::Value {
    serde_json::json!({ "index": index, "count": 4, "source": source, "list_items": 197 })
}

#[test]
fn four_shards_cover_the_list_once_stably_and_merge() {
    let site = Site::start(&[]);
    let work = Work::new();
    let all: BTreeSet<String> = flag_names(usize::MAX).into_iter().collect();
    assert_eq!(all.len(), 197);

    let mut shares = Vec::new();
    for (i, mode) in (1..=4).zip(MODES) {
        let spec = format!("{i}/4");
        let args = [&["--shard", spec.as_str()][..], mode].concat();
        let share = download(&work, &format!("shard{i}"), &site, &args, &[]);
        assert_eq!(share.report["shard"], shard_json(i, "flag"), "{spec}");
        assert!(
            !share.files.is_empty(),
            "{spec}: the built-in list fills 4 shards"
        );
        shares.push(share);
    }
    let mut union = BTreeSet::new();
    let mut total = 0;
    for share in &shares {
        total += share.files.len();
        union.extend(share.files.iter().cloned());
    }
    assert_eq!(union, all, "the union of the shards is the list");
    assert_eq!(total, all.len(), "no item in two shards");

    // A second run of each shard, in another mode, takes the same share.
    for (i, mode) in (1..=4).zip(MODES.iter().rev()) {
        let spec = format!("{i}/4");
        let args = [&["--shard", spec.as_str()][..], mode].concat();
        let again = download(&work, &format!("again{i}"), &site, &args, &[]);
        assert_eq!(again.files, shares[i as usize - 1].files, "{spec} again");
    }

    // The merge of the four is the whole list.
    let reports: Vec<String> = (1..=4).map(|i| format!("shard{i}/report.json")).collect();
    let merge = |files: &[&str], json: bool| {
        let mut args = vec!["merge-reports"];
        args.extend_from_slice(files);
        if json {
            args.push("--json");
        }
        run(work.dir.path(), &args, &[])
    };
    let names: Vec<&str> = reports.iter().map(String::as_str).collect();
    let bytes: u64 = shares
        .iter()
        .map(|s| s.report["bytes"].as_u64().unwrap())
        .sum();
    let longest = shares
        .iter()
        .map(|s| s.report["elapsed_secs"].as_f64().unwrap())
        .fold(0.0, f64::max);

    let out = merge(&names, false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    assert_eq!(
        lines[0],
        "Merged 4 of 4 shards (197 of 197 items); elapsed time is the longest shard's"
    );
    assert_eq!(
        lines[n - 3],
        "197 downloaded, 0 not found, 0 errors",
        "{text}"
    );
    assert_eq!(
        lines[n - 2],
        format!("Elapsed time: {longest:.8}"),
        "{text}"
    );
    assert_eq!(lines[n - 1], format!("{bytes} bytes downloaded"), "{text}");
    for i in 1..=4 {
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with(&format!("{i}/4 "))
                    && l.ends_with(&format!("shard{i}/report.json"))),
            "a row for shard {i}: {text}"
        );
    }

    // In reverse order, as JSON: the same figures, shards in order.
    let reversed: Vec<&str> = names.iter().rev().copied().collect();
    let out = merge(&reversed, true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let merged: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("merged JSON");
    assert_eq!(merged["items"], 197);
    assert_eq!(merged["counts"]["ok"], 197);
    assert_eq!(merged["counts"]["not_found"], 0);
    assert_eq!(merged["counts"]["error"], 0);
    assert_eq!(merged["bytes"], bytes);
    assert_eq!(merged["elapsed_secs"], longest);
    assert_eq!(merged["complete"], true);
    assert_eq!(merged["missing_shards"], serde_json::json!([]));
    let per_shard: Vec<(u64, f64)> = merged["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["shard"]["index"].as_u64().unwrap(),
                s["elapsed_secs"].as_f64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(u64, f64)> = shares
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64 + 1, s.report["elapsed_secs"].as_f64().unwrap()))
        .collect();
    assert_eq!(per_shard, expected, "per-shard elapsed, shards in order");
    let merged_names: BTreeSet<String> = merged["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(merged_names, all);

    // Three of four: the missing shard is named, and the result is incomplete.
    let out = merge(&[names[0], names[1], names[3]], false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Missing shards: 3/4 (incomplete: run them and merge again)"),
        "{text}"
    );
    let three = bytes - shares[2].report["bytes"].as_u64().unwrap();
    assert!(
        text.ends_with(&format!("{three} bytes downloaded\n")),
        "{text}"
    );
    let out = merge(&[names[0], names[1], names[3]], true);
    assert_eq!(out.status.code(), Some(1));
    let merged: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("merged JSON");
    assert_eq!(merged["missing_shards"], serde_json::json!([3]));
    assert_eq!(merged["complete"], false);

    // Reports that do not belong together: one line, status 2, nothing on stdout.
    std::fs::write(work.path("text.txt"), "197 downloaded\n").unwrap();
    let refused: &[(&[&str], &str)] = &[
        (&[names[0], names[1], names[1]], "shard 2/4 is in both"),
        (&[names[0], "again1/report.json"], "shard 1/4 is in both"),
        (
            &[names[0], "missing.json"],
            "cannot read report missing.json",
        ),
        (
            &[names[0], "text.txt"],
            "text.txt is not a flagmaster --json report",
        ),
    ];
    let out = merge(&[], false);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "flagmaster: the following required arguments were not provided: <REPORT>...\n"
    );
    for (files, expect) in refused {
        let out = merge(files, false);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{files:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{files:?}: {err}");
        assert!(
            err.starts_with("flagmaster: ") && err.contains(expect),
            "{files:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{files:?}");
    }
}

#[test]
fn scheduler_variables_pick_the_same_share_as_the_flag() {
    let site = Site::start(&[]);
    let work = Work::new();
    for i in 1..=4u32 {
        let spec = format!("{i}/4");
        let serial = ["--mode", "serial"];
        let flag = download(
            &work,
            &format!("flag{i}"),
            &site,
            &[&["--shard", spec.as_str()][..], &serial[..]].concat(),
            &[],
        );
        let zero = (i - 1).to_string();
        // Slurm `--array=0-3`, and `--array=10-16:2` (tasks 10, 12, 14, 16).
        let stepped = (10 + 2 * (i - 1)).to_string();
        let cases: Vec<(&str, Vec<&str>, Env)> = vec![
            (
                "slurm",
                vec![],
                vec![
                    ("SLURM_ARRAY_TASK_ID", zero.as_str()),
                    ("SLURM_ARRAY_TASK_MIN", "0"),
                    ("SLURM_ARRAY_TASK_MAX", "3"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                ],
            ),
            (
                "slurm",
                vec![],
                vec![
                    ("SLURM_ARRAY_TASK_ID", stepped.as_str()),
                    ("SLURM_ARRAY_TASK_MIN", "10"),
                    ("SLURM_ARRAY_TASK_STEP", "2"),
                    ("SLURM_ARRAY_TASK_COUNT", "4"),
                ],
            ),
            (
                "kubernetes",
                vec![],
                vec![
                    ("JOB_COMPLETION_INDEX", zero.as_str()),
                    ("FLAGMASTER_SHARD_COUNT", "4"),
                ],
            ),
            (
                "kubernetes",
                vec!["--shard-count", "4"],
                vec![("JOB_COMPLETION_INDEX", zero.as_str())],
            ),
            (
                "aws-batch",
                vec![],
                vec![
                    ("AWS_BATCH_JOB_ARRAY_INDEX", zero.as_str()),
                    ("AWS_BATCH_JOB_ARRAY_SIZE", "4"),
                ],
            ),
        ];
        for (n, (source, extra, env)) in cases.into_iter().enumerate() {
            let share = download(
                &work,
                &format!("env{i}-{n}"),
                &site,
                &[&serial[..], &extra[..]].concat(),
                &env,
            );
            assert_eq!(share.report["shard"], shard_json(i, source), "{env:?}");
            assert_eq!(share.files, flag.files, "{env:?} picks shard {spec}");
        }
    }
    // --shard wins over the environment.
    let share = download(
        &work,
        "flag-wins",
        &site,
        &["--mode", "serial", "--shard", "2/4"],
        &[
            ("JOB_COMPLETION_INDEX", "0"),
            ("FLAGMASTER_SHARD_COUNT", "4"),
        ],
    );
    assert_eq!(share.report["shard"], shard_json(2, "flag"));
}

#[test]
fn bad_shards_get_one_line_status_2_and_write_nothing() {
    let work = Work::new();
    let cases: &[Refused] = &[
        (&["--shard", "0/4"], &[], "shards are numbered 1 to 4"),
        (&["--shard", "5/4"], &[], "shards are numbered 1 to 4"),
        (
            &["--shard", "1/0"],
            &[],
            "the shard count must be at least 1",
        ),
        (&["--shard", "two/4"], &[], "expected I/N"),
        (&["--shard", "2"], &[], "expected I/N"),
        (&["--shard-count", "0"], &[], "--shard-count"),
        (
            &["--shard", "1/4", "--shard-count", "4"],
            &[],
            "cannot be used with",
        ),
        (
            &[],
            &[("JOB_COMPLETION_INDEX", "1")],
            "JOB_COMPLETION_INDEX=1 needs the shard count",
        ),
        (
            &[],
            &[
                ("JOB_COMPLETION_INDEX", "4"),
                ("FLAGMASTER_SHARD_COUNT", "4"),
            ],
            "JOB_COMPLETION_INDEX=4 is beyond the 4 shards",
        ),
        (
            &[],
            &[
                ("JOB_COMPLETION_INDEX", "x"),
                ("FLAGMASTER_SHARD_COUNT", "4"),
            ],
            "bad JOB_COMPLETION_INDEX",
        ),
        (
            &[],
            &[
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            "SLURM_ARRAY_TASK_ID=4 is beyond the 4 shards",
        ),
        (
            &[],
            &[("AWS_BATCH_JOB_ARRAY_INDEX", "0")],
            "without a count",
        ),
        (
            &[],
            &[("FLAGMASTER_SHARD_COUNT", "4")],
            "FLAGMASTER_SHARD_COUNT=4 needs a shard index",
        ),
        (
            &["--shard-count", "4"],
            &[],
            "--shard-count needs a shard index",
        ),
    ];
    for (args, env, expect) in cases {
        let out = run(work.dir.path(), args, env);
        let err = stderr(&out);
        let what = format!("{args:?} {env:?}");
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err:?}");
        assert!(err.starts_with("flagmaster: "), "{what}: {err}");
        assert!(
            err.contains(expect),
            "{what}: {err:?} should mention {expect:?}"
        );
        assert!(out.stdout.is_empty(), "{what}");
        for dir in ["flags", "logs"] {
            assert!(!work.path(dir).exists(), "{what}: {dir} was created");
        }
    }
}

#[test]
fn an_empty_share_is_a_complete_run_of_nothing() {
    let site = Site::start(&[]);
    let work = Work::new();
    let list = work.write_list(&["Chad"]);
    let chad = flagmaster::input::shard::shard_of("Chad.jpg", 4);
    let other = format!("{}/4", chad % 4 + 1);
    for mode in MODES {
        let mut args = vec![
            "--base-url",
            site.base.as_str(),
            "--list",
            list.to_str().unwrap(),
            "--shard",
            &other,
            "--json",
        ];
        args.extend_from_slice(mode);
        let out = run(work.dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(report["items"], 0, "{mode:?}");
        assert_eq!(report["shard"]["list_items"], 1, "{mode:?}");
        assert_eq!(
            report["workers"],
            serde_json::json!([]),
            "{mode:?}: no worker started"
        );
        assert!(work.files("flags").is_empty(), "{mode:?}");
    }
    assert_eq!(site.requests(), 0);
    let out = run(
        work.dir.path(),
        &[
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--shard",
            &other,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Shard {other} (from --shard): 0 of 1 items")),
        "{text}"
    );
    assert!(
        text.contains("0 downloaded, 0 not found, 0 errors"),
        "{text}"
    );
}

#[test]
fn completions_for_each_shell_leave_out_the_worker() {
    let work = Work::new();
    let expected: BTreeMap<&str, &str> =
        BTreeMap::from([("bash", "--mode"), ("zsh", "--mode"), ("fish", "-l mode")]);
    for (shell, mode) in expected {
        let out = run(work.dir.path(), &["completions", shell], &[]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(mode), "{shell} completes --mode");
        assert!(
            script.contains("merge-reports"),
            "{shell} completes merge-reports"
        );
        assert!(
            !script.contains("__worker"),
            "{shell}: the worker is hidden"
        );
    }
    let out = run(work.dir.path(), &["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
