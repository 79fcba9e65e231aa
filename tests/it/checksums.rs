//! `--checksums` and `--manifest` in every mode: a right digest passes, a
//! wrong one is an ERROR after two attempts with nothing written, and the
//! manifest passes `sha256sum -c` in the destination, also after a re-run
//! with `--skip-existing`.

use crate::common;

use std::process::Command;

use common::{flag_names, stderr, stdout, Site, Work};
use flagmaster::site::flag::flag_jpeg;
use flagmaster_worker::digest::{to_hex, Hasher};

const MODES: &[&[&str]] = &[
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "2"],
    &["--mode", "proc", "--procs", "2"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Hasher::new(true);
    h.update(bytes);
    to_hex(&h.finish().unwrap())
}

/// `sha256sum -c MANIFEST` run in `dir`: its output, and whether it passed.
fn sha256sum_check(dir: &std::path::Path, manifest: &std::path::Path) -> (bool, String) {
    let out = Command::new("sha256sum")
        .arg("-c")
        .arg(manifest)
        .current_dir(dir)
        .output()
        .expect("run sha256sum (coreutils)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn checksums_and_manifest_in_every_mode() {
    let site = Site::start(&["--delay-ms", "0"]);
    let names = flag_names(6);
    let wrong = &names[4];
    let unlisted = &names[5];
    for mode in MODES {
        let what = format!("{mode:?}");
        let work = Work::new();
        let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let mut sums = String::from("# expected digests\n\n");
        for name in &names[..4] {
            sums += &format!("{}  {name}.jpg\n", sha256_hex(&flag_jpeg(name)));
        }
        sums += &format!("{} *{wrong}.jpg\n", "0".repeat(64));
        std::fs::write(work.path("sums"), sums).unwrap();
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--json",
            "--checksums",
            "sums",
            "--manifest",
            "SHA256SUMS",
        ];
        args.extend_from_slice(mode);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        let warnings: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("no line in"))
            .map(str::trim)
            .collect();
        assert_eq!(
            warnings,
            ["flagmaster: warning: 1 items have no line in sums: fetched unchecked"],
            "{what}"
        );
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        for r in report["results"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            if name == wrong {
                assert_eq!(r["status"], "ERROR", "{what}: {r}");
                assert_eq!(r["attempts"], 2, "{what}: {r}");
                let reason = r["reason"].as_str().unwrap();
                let got = &sha256_hex(&flag_jpeg(name))[..8];
                assert_eq!(
                    reason,
                    format!("checksum mismatch (expected 00000000…, got {got}…)"),
                    "{what}"
                );
            } else {
                assert_eq!(r["status"], "OK", "{what}: {r}");
                assert_eq!(r["attempts"], 1, "{what}: {r}");
                assert_eq!(r["sha256"], sha256_hex(&flag_jpeg(name)), "{what}: {r}");
            }
        }
        let files = work.files("flags");
        assert_eq!(
            files.len(),
            5,
            "{what}: nothing else written: {:?}",
            files.keys()
        );
        assert!(!files.contains_key(&format!("{wrong}.jpg")), "{what}");
        assert!(files.contains_key(&format!("{unlisted}.jpg")), "{what}");

        let manifest = std::fs::read_to_string(work.path("SHA256SUMS")).unwrap();
        assert_eq!(manifest.lines().count(), 5, "{what}: {manifest}");
        let (ok, said) = sha256sum_check(&work.path("flags"), &work.path("SHA256SUMS"));
        assert!(ok, "{what}: {said}");
        let logged = work.master_events("manifest");
        assert_eq!(logged.len(), 1, "{what}");
        assert_eq!(logged[0]["files"], "5", "{what}");

        // A re-run keeps the five files (hashed by the master) and fetches
        // the sixth, unchecked this time.
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--skip-existing",
            "--manifest",
            "SHA256SUMS",
            "--quiet",
        ];
        args.extend_from_slice(mode);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let manifest = std::fs::read_to_string(work.path("SHA256SUMS")).unwrap();
        assert_eq!(manifest.lines().count(), 6, "{what}: {manifest}");
        let mut sorted: Vec<&str> = manifest.lines().map(|l| &l[66..]).collect();
        sorted.sort();
        assert_eq!(
            manifest.lines().map(|l| &l[66..]).collect::<Vec<_>>(),
            sorted,
            "{what}: sorted by name"
        );
        let (ok, said) = sha256sum_check(&work.path("flags"), &work.path("SHA256SUMS"));
        assert!(ok, "{what}: {said}");

        // `--if-changed` asks again; the site answers 304 to the five whose
        // validators a run recorded, and their workers name the kept files.
        std::fs::remove_file(work.path("SHA256SUMS")).unwrap();
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--if-changed",
            "--manifest",
            "SHA256SUMS",
            "--json",
        ];
        args.extend_from_slice(mode);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let not_modified = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["http"] == 304)
            .count();
        let manifest = std::fs::read_to_string(work.path("SHA256SUMS")).unwrap();
        assert_eq!(manifest.lines().count(), 6, "{what}: {manifest}");
        let (ok, said) = sha256sum_check(&work.path("flags"), &work.path("SHA256SUMS"));
        assert!(ok, "{what}: {said}");
        assert!(not_modified > 0, "{what}: no 304 was tried: {report}");
    }
}

#[test]
fn a_malformed_checksums_file_is_one_line_and_status_2() {
    let work = Work::new();
    std::fs::write(work.path("sums"), "not a checksum line\n").unwrap();
    let out = work.run(&["--server", "LOCAL", "--limit", "2", "--checksums", "sums"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad checksums file sums: line 1: expected '<64 hex digits>  <name>'"),
        "{err}"
    );
    assert!(!work.path("flags").exists(), "nothing written");
}

#[test]
fn the_manifest_holds_the_files_as_written_with_blur() {
    let site = Site::start(&["--delay-ms", "0"]);
    let names = flag_names(3);
    for keep in [false, true] {
        let work = Work::new();
        let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--mode",
            "threads",
            "--threads",
            "2",
            "--blur",
            "2",
            "--manifest",
            "SHA256SUMS",
            "--quiet",
        ];
        if keep {
            args.push("--keep-original");
        }
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(0), "keep {keep}: {}", stderr(&out));
        let manifest = std::fs::read_to_string(work.path("SHA256SUMS")).unwrap();
        let files = work.files("flags");
        assert_eq!(files.len(), if keep { 6 } else { 3 });
        assert_eq!(manifest.lines().count(), files.len(), "{manifest}");
        for (file, bytes) in &files {
            assert!(
                manifest.contains(&format!("{}  {file}\n", sha256_hex(bytes))),
                "keep {keep}: {file}: {manifest}"
            );
        }
        let (ok, said) = sha256sum_check(&work.path("flags"), &work.path("SHA256SUMS"));
        assert!(ok, "keep {keep}: {said}");
    }
}
