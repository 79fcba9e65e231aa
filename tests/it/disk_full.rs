//! A full disk: the dest on a 300 KiB tmpfs, in every mode. Some files are
//! saved whole, the rest end as ERROR "disk full" and most of them without a
//! request, nothing partial is left, and the run exits 1.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{flag_names, stderr, stdout, Site, Work};
use flagmaster::site::flag::flag_jpeg;

const MODES: &[&[&str]] = &[
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "2"],
    &["--mode", "proc", "--procs", "2"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// `None` (with a note) where mounting is not permitted.
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount(dir.to_path_buf())),
            Ok(o) => {
                println!(
                    "note: skipped, cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("note: skipped, cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_full_disk_stops_the_work_in_every_mode() {
    let site = Site::start(&["--delay-ms", "0"]);
    let names = flag_names(197);
    for mode in MODES {
        let what = format!("{mode:?}");
        let work = Work::new();
        let Some(_mount) = Mount::tmpfs(&work.path("small"), "300k") else {
            return;
        };
        let list = work.write_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let before = site.requests();
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--dest",
            "small",
            "--json",
        ];
        args.extend_from_slice(mode);
        let out = work.run(&args);
        let requests = site.requests() - before;
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(
            err.matches("disk full (saving").count(),
            1,
            "{what}: said once: {err}"
        );
        assert_eq!(work.master_events("disk_full").len(), 1, "{what}");

        let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), names.len(), "{what}");
        let mut ok = 0;
        let mut without_request = 0;
        for r in results {
            match r["status"].as_str().unwrap() {
                "OK" => ok += 1,
                "ERROR" => {
                    assert_eq!(r["reason"], "disk full", "{what}: {r}");
                    if r["attempts"] == 0 {
                        without_request += 1;
                    }
                }
                other => panic!("{what}: {other}: {r}"),
            }
        }
        assert!(ok > 0, "{what}: some files complete");
        assert!(
            without_request > names.len() / 2,
            "{what}: {without_request}"
        );
        assert!(
            requests < names.len() as u64 / 2,
            "{what}: {requests} requests for {} items",
            names.len()
        );

        println!("{what}: {ok} saved, {without_request} without a request, {requests} requests");
        // Every file there is whole; nothing partial or temporary.
        let files = work.files("small");
        assert_eq!(files.len(), ok, "{what}: {:?}", files.keys());
        for (file, bytes) in &files {
            let name = file.strip_suffix(".jpg").expect("a .jpg");
            assert_eq!(bytes, &flag_jpeg(name), "{what}: {file}");
        }
    }
}
