//! Re-runs against the real built-in site, in every mode: `--skip-existing`
//! sends no request for complete files and fetches exactly the missing or
//! broken ones; `--if-changed` asks for every file and turns 304 into a skip,
//! from the sidecar's validators or the file's mtime.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{flag_names, stderr, stdout, Site, Work};
use flagmaster::input::rerun::SIDECAR;
use flagmaster::site::flag::flag_jpeg;

const MODES: &[&[&str]] = &[
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "4"],
    &["--mode", "proc", "--procs", "3"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

/// Runs flagmaster with `--json` against `site` plus `args`; checks the exit
/// status and returns the report and stderr.
fn run(work: &Work, site: &Site, mode: &[&str], args: &[&str]) -> (serde_json::Value, String) {
    let mut all = vec!["--base-url", &site.base, "--json"];
    all.extend_from_slice(mode);
    all.extend_from_slice(args);
    let out = work.run(&all);
    assert_eq!(out.status.code(), Some(0), "{all:?}: {}", stderr(&out));
    let report = serde_json::from_str(&stdout(&out)).expect("stdout is one JSON document");
    (report, stderr(&out))
}

fn mtimes(dir: &Path) -> BTreeMap<String, SystemTime> {
    fs::read_dir(dir)
        .expect("dest")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().into_string().expect("UTF-8");
            (name, e.metadata().expect("meta").modified().expect("mtime"))
        })
        .filter(|(name, _)| name != SIDECAR)
        .collect()
}

fn count(report: &serde_json::Value, what: &str) -> u64 {
    report["counts"][what].as_u64().expect("a count")
}

/// Results with this status, name to result.
fn results<'a>(
    report: &'a serde_json::Value,
    status: &str,
) -> BTreeMap<String, &'a serde_json::Value> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["status"] == status)
        .map(|r| (r["name"].as_str().expect("name").to_string(), r))
        .collect()
}

/// Every flag of the list is in `dest`, byte-exact, and nothing else.
fn assert_all_flags(work: &Work, names: &[String], what: &str) {
    let files = work.files("flags");
    assert_eq!(files.len(), names.len(), "{what}: {:?}", files.keys());
    for name in names {
        assert_eq!(
            files[&format!("{name}.jpg")],
            flag_jpeg(name),
            "{what}: {name}"
        );
    }
}

fn by_name(site: &Site) -> BTreeMap<String, u64> {
    site.stats()["by_name"]
        .as_object()
        .expect("by_name")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("count")))
        .collect()
}

#[test]
fn skip_existing_sends_no_request_and_refetches_only_missing_or_broken_files() {
    let site = Site::start(&[]);
    let names = flag_names(usize::MAX);
    assert_eq!(names.len(), 197);
    for mode in MODES {
        let what = format!("{mode:?}");
        let work = Work::new();
        let before = site.requests();
        let (first, _) = run(&work, &site, mode, &[]);
        assert_eq!(count(&first, "ok"), 197, "{what}");
        assert_eq!(site.requests() - before, 197, "{what}");
        assert_all_flags(&work, &names, &what);
        let dest = work.path("flags");
        let stamps = mtimes(&dest);

        let before = site.requests();
        let (second, err) = run(&work, &site, mode, &["--skip-existing"]);
        assert_eq!(site.requests(), before, "{what}: no flag request at all");
        assert_eq!(count(&second, "skipped"), 197, "{what}");
        assert_eq!(count(&second, "ok"), 0, "{what}");
        assert_eq!(second["bytes"], 0, "{what}: nothing downloaded");
        assert_eq!(second["items"], 197, "{what}");
        let skipped = results(&second, "SKIPPED");
        assert_eq!(skipped.len(), 197, "{what}");
        assert!(skipped
            .values()
            .all(|r| r["reason"] == "exists" && r["bytes"] == 0));
        assert!(
            err.contains("Skipping 197 files already in flags"),
            "{what}: {err}"
        );
        assert_all_flags(&work, &names, &what);
        assert_eq!(mtimes(&dest), stamps, "{what}: files untouched");
        let done = work.master_events("done");
        assert_eq!(done[0]["skipped"], "197", "{what}");
        assert_eq!(done[0]["exit"], "0", "{what}");
        assert!(
            !dest.join(SIDECAR).exists(),
            "{what}: no sidecar without --if-changed"
        );

        // Five files gone, one emptied, one without its JPEG end marker.
        let gone = &names[10..15];
        for name in gone {
            fs::remove_file(dest.join(format!("{name}.jpg"))).expect("remove");
        }
        let emptied = &names[50];
        fs::write(dest.join(format!("{emptied}.jpg")), b"").expect("truncate");
        let cut = &names[100];
        let cut_path = dest.join(format!("{cut}.jpg"));
        let mut bytes = fs::read(&cut_path).expect("read");
        let n = bytes.len();
        bytes[n - 2..].copy_from_slice(b"xx");
        fs::write(&cut_path, bytes).expect("corrupt");
        let mut broken: Vec<&String> = gone.iter().collect();
        broken.extend([emptied, cut]);

        let before = site.requests();
        let counts_before = by_name(&site);
        let (third, _) = run(&work, &site, mode, &["--skip-existing"]);
        assert_eq!(site.requests() - before, 7, "{what}");
        let counts_after = by_name(&site);
        for name in &broken {
            assert_eq!(
                counts_after.get(*name).copied().unwrap_or(0),
                counts_before.get(*name).copied().unwrap_or(0) + 1,
                "{what}: {name} asked for once"
            );
        }
        assert_eq!(count(&third, "ok"), 7, "{what}");
        assert_eq!(count(&third, "skipped"), 190, "{what}");
        let ok = results(&third, "OK");
        let mut fetched: Vec<&String> = ok.keys().collect();
        fetched.sort();
        broken.sort();
        assert_eq!(fetched, broken, "{what}");
        let on_disk: u64 = broken.iter().map(|n| flag_jpeg(n).len() as u64).sum();
        assert_eq!(third["bytes"], on_disk, "{what}: bytes of the 7 only");
        assert_all_flags(&work, &names, &what);
    }
}

#[test]
fn skip_existing_text_report_and_conflicting_flags() {
    let site = Site::start(&[]);
    let work = Work::new();
    let list = work.write_list(&["Chad", "Peru", "Atlantis"]);
    let args = [
        "--base-url",
        &site.base,
        "--list",
        list.to_str().unwrap(),
        "--mode",
        "serial",
    ];
    let first = work.run(&args);
    assert_eq!(first.status.code(), Some(1), "Atlantis is not found");
    let before = site.requests();
    let mut again = args.to_vec();
    again.push("--skip-existing");
    let out = work.run(&again);
    assert_eq!(out.status.code(), Some(1), "Atlantis is still not found");
    assert_eq!(site.requests() - before, 1, "only Atlantis is asked for");
    let text = stdout(&out);
    assert!(text.contains("Skipping 2 files already in flags"), "{text}");
    assert!(
        text.contains("0 downloaded, 2 skipped, 1 not found, 0 errors"),
        "{text}"
    );
    assert!(text.contains("NOT_FOUND  Atlantis"), "{text}");
    assert!(
        !text.contains("SKIPPED"),
        "skips are not listed as failures: {text}"
    );

    let mut both = again.clone();
    both.push("--if-changed");
    let out = work.run(&both);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--if-changed") && err.contains("--skip-existing"),
        "{err}"
    );
}

#[test]
fn if_changed_turns_304_into_skips_from_records_or_mtimes() {
    let site = Site::start(&[]);
    let names = flag_names(usize::MAX);
    for mode in MODES {
        let what = format!("{mode:?}");
        let work = Work::new();
        let dest = work.path("flags");
        let (first, err) = run(&work, &site, mode, &["--if-changed"]);
        assert_eq!(count(&first, "ok"), 197, "{what}");
        assert!(err.contains("Asking whether 0 files"), "{what}: {err}");
        let sidecar: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dest.join(SIDECAR)).expect("sidecar"))
                .expect("sidecar JSON");
        let records = sidecar["files"].as_object().expect("files");
        assert_eq!(records.len(), 197, "{what}");
        let chad = &records["Chad.jpg"];
        assert_eq!(chad["url"], site.url("Chad"), "{what}");
        assert!(chad["etag"].as_str().is_some_and(|e| e.starts_with('"')));
        assert_eq!(chad["bytes"], flag_jpeg("Chad").len(), "{what}");
        let stamps = mtimes(&dest);

        let before = site.requests();
        let (second, err) = run(&work, &site, mode, &["--if-changed"]);
        assert_eq!(
            site.requests() - before,
            197,
            "{what}: every file asked about"
        );
        assert!(err.contains("Asking whether 197 files"), "{what}: {err}");
        assert_eq!(count(&second, "skipped"), 197, "{what}");
        assert_eq!(second["bytes"], 0, "{what}");
        let skipped = results(&second, "SKIPPED");
        assert!(
            skipped
                .values()
                .all(|r| r["reason"] == "not modified" && r["http"] == 304 && r["worker"] != 0),
            "{what}"
        );
        assert_eq!(mtimes(&dest), stamps, "{what}: files untouched");
        assert_all_flags(&work, &names, &what);
        let lines: usize = work
            .worker_logs("logs")
            .values()
            .map(|log| {
                log.lines()
                    .filter(|l| l.contains("status=SKIPPED http=304"))
                    .count()
            })
            .sum();
        assert_eq!(lines, 197, "{what}: one log line per 304");

        // A: no record, recent mtime -> 304 by mtime. B: wrong ETag and an
        // mtime of 1970 -> 200. C: no record and an mtime of 1970 -> 200.
        let (a, b, c) = (&names[3], &names[4], &names[5]);
        let mut sidecar = sidecar.clone();
        let files = sidecar["files"].as_object_mut().expect("files");
        files.remove(&format!("{a}.jpg"));
        files.remove(&format!("{c}.jpg"));
        files[&format!("{b}.jpg")]["etag"] = "\"not-the-one\"".into();
        fs::write(dest.join(SIDECAR), sidecar.to_string()).expect("edit sidecar");
        for name in [b, c] {
            let file = fs::File::options()
                .write(true)
                .open(dest.join(format!("{name}.jpg")))
                .expect("open");
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
                .expect("touch 1970");
        }

        let (third, _) = run(&work, &site, mode, &["--if-changed"]);
        let ok = results(&third, "OK");
        let mut fetched: Vec<&String> = ok.keys().collect();
        fetched.sort();
        let mut want = vec![b, c];
        want.sort();
        assert_eq!(fetched, want, "{what}");
        assert_eq!(ok[b.as_str()]["http"], 200, "{what}");
        assert_eq!(count(&third, "skipped"), 195, "{what}");
        assert_eq!(
            results(&third, "SKIPPED")[a.as_str()]["reason"],
            "not modified"
        );
        let after = mtimes(&dest);
        for name in [b, c] {
            let stamp = after[&format!("{name}.jpg")];
            assert!(
                stamp > SystemTime::UNIX_EPOCH + Duration::from_secs(86_400),
                "{what}: {name} written afresh"
            );
        }
        assert_all_flags(&work, &names, &what);
        let sidecar: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dest.join(SIDECAR)).expect("sidecar"))
                .expect("sidecar JSON");
        let files = sidecar["files"].as_object().expect("files");
        assert_eq!(files.len(), 197, "{what}: every record back");
        assert_eq!(
            files[&format!("{b}.jpg")]["etag"],
            records[&format!("{b}.jpg")]["etag"]
        );
        assert_eq!(
            files[&format!("{a}.jpg")]["etag"],
            records[&format!("{a}.jpg")]["etag"]
        );
    }
}

#[test]
fn a_corrupt_sidecar_is_a_warning_and_the_mtimes_decide() {
    let site = Site::start(&[]);
    let work = Work::new();
    let list = work.write_list(&["Chad", "Peru", "Fiji"]);
    let list = list.to_str().unwrap();
    let mode: &[&str] = &["--mode", "threads", "--list", list];
    run(&work, &site, mode, &["--if-changed"]);
    let sidecar = work.path("flags").join(SIDECAR);
    let text = fs::read_to_string(&sidecar).expect("sidecar");
    fs::write(&sidecar, &text[..text.len() / 2]).expect("cut sidecar");

    let before = site.requests();
    let (report, err) = run(&work, &site, mode, &["--if-changed"]);
    assert_eq!(site.requests() - before, 3);
    assert_eq!(count(&report, "skipped"), 3, "304 from the mtimes");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].starts_with("flagmaster: warning: ignoring ") && warnings[0].contains(SIDECAR),
        "{err}"
    );
    let rewritten: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&sidecar).expect("sidecar")).expect("valid again");
    assert_eq!(rewritten["files"].as_object().map(|f| f.len()), Some(3));
    assert_eq!(work.files("flags").len(), 3, "no temporary file left");
}
