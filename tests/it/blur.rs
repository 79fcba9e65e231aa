//! The blur stage (`--blur SIGMA`, `--keep-original`) against the real
//! built-in site in every mode: what lands on disk decodes, keeps the served
//! picture's dimensions and differs from it; a picture that does not decode
//! is an ERROR with its reason and leaves nothing behind.

use crate::common;

use std::collections::BTreeMap;

use common::{logfmt, stderr, stdout, Site, Work};
use flagmaster::site::flag::flag_jpeg;
use image::RgbImage;

const MODES: &[&[&str]] = &[
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "2"],
    &["--mode", "proc", "--procs", "2"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

const NAMES: &[&str] = &["Chad", "Fiji", "Brazil", "Japan", "Norway"];
const BAD: &str = "Chad__bad-image";

/// The picture the site serves for `name`, fetched from it.
fn served(site: &Site, name: &str) -> Vec<u8> {
    let body = ureq::get(site.url(name))
        .call()
        .expect("GET flag")
        .body_mut()
        .read_to_vec()
        .expect("flag body");
    assert_eq!(body, flag_jpeg(name), "the site serves the generated flag");
    body
}

fn decode(bytes: &[u8], what: &str) -> RgbImage {
    image::load_from_memory(bytes)
        .unwrap_or_else(|e| panic!("{what} does not decode: {e}"))
        .to_rgb8()
}

/// Mean absolute difference per channel, 0 to 255.
fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// Checks that `blurred` is a blurred version of the served `original`.
fn assert_blurred(blurred: &[u8], original: &[u8], what: &str) {
    let (b, o) = (decode(blurred, what), decode(original, "served flag"));
    assert_eq!(b.dimensions(), o.dimensions(), "{what}: dimensions kept");
    let diff = mean_diff(&b, &o);
    // The flags' grain is +-12 to +-111 levels per pixel; a sigma-2 blur
    // averages it away, so the pictures differ by several levels on average.
    assert!(
        diff > 2.0,
        "{what}: differs from the original by only {diff:.2}"
    );
    assert_eq!(&blurred[..2], &[0xFF, 0xD8], "{what}: still a JPEG");
}

fn no_temporary_files(files: &BTreeMap<String, Vec<u8>>, what: &str) {
    assert!(
        files.keys().all(|n| !n.starts_with(".flagmaster-")),
        "{what}: temporary files left: {:?}",
        files.keys()
    );
}

/// Every attempt line of every worker log, as fields.
fn attempt_lines(work: &Work) -> Vec<BTreeMap<String, String>> {
    work.worker_logs("logs")
        .values()
        .flat_map(|log| log.lines().map(logfmt).collect::<Vec<_>>())
        .filter(|f| f.contains_key("attempt"))
        .collect()
}

fn run(work: &Work, site: &Site, mode: &[&str], extra: &[&str]) -> (i32, serde_json::Value) {
    let mut list: Vec<&str> = NAMES.to_vec();
    list.push(BAD);
    let list = work.write_list(&list);
    let mut args = vec![
        "--base-url",
        &site.base,
        "--list",
        list.to_str().expect("UTF-8 path"),
        "--json",
        "--blur",
        "2",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(mode);
    let out = work.run(&args);
    let report = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{mode:?}: no JSON report ({e}): {}", stderr(&out)));
    (out.status.code().expect("exit status"), report)
}

/// Checks the report's items: every good name OK with its blur time, the
/// bad image ERROR after one attempt with the decoder's reason.
fn check_results(report: &serde_json::Value, what: &str) {
    assert_eq!(report["counts"]["ok"], NAMES.len(), "{what}");
    assert_eq!(report["counts"]["error"], 1, "{what}");
    for r in report["results"].as_array().expect("results") {
        let name = r["name"].as_str().expect("name");
        assert!(r["blur_ms"].is_u64(), "{what}: {name} has a blur time: {r}");
        if name == BAD {
            assert_eq!(r["status"], "ERROR", "{what}: {r}");
            assert_eq!(r["attempts"], 1, "{what}: not retried: {r}");
            let reason = r["reason"].as_str().expect("reason");
            assert!(
                reason.starts_with("cannot decode image: "),
                "{what}: {reason}"
            );
        } else {
            assert_eq!(r["status"], "OK", "{what}: {r}");
        }
    }
    assert!(
        report["blur_secs"].is_f64(),
        "{what}: {}",
        report["blur_secs"]
    );
}

#[test]
fn blur_replaces_each_download_in_every_mode() {
    let site = Site::start(&[]);
    let originals: BTreeMap<&str, Vec<u8>> = NAMES.iter().map(|n| (*n, served(&site, n))).collect();
    for mode in MODES {
        let what = format!("{mode:?}");
        let work = Work::new();
        let (status, report) = run(&work, &site, mode, &[]);
        assert_eq!(status, 1, "{what}: the bad image fails the run");
        check_results(&report, &what);

        let files = work.files("flags");
        no_temporary_files(&files, &what);
        let expected: Vec<String> = NAMES.iter().map(|n| format!("{n}.jpg")).collect();
        let mut on_disk: Vec<&String> = files.keys().collect();
        on_disk.sort();
        let mut want: Vec<&String> = expected.iter().collect();
        want.sort();
        assert_eq!(
            on_disk, want,
            "{what}: one blurred file per good name, nothing for {BAD}"
        );
        for name in NAMES {
            assert_blurred(&files[&format!("{name}.jpg")], &originals[name], &what);
        }
        let sizes: u64 = files.values().map(|b| b.len() as u64).sum();
        assert_eq!(
            report["bytes"], sizes,
            "{what}: reported bytes are the files'"
        );

        // One attempt line per item, each with its blur time; the bad one
        // carries the reason.
        let lines = attempt_lines(&work);
        assert_eq!(lines.len(), NAMES.len() + 1, "{what}: {lines:?}");
        for line in &lines {
            assert!(line["blur_ms"].parse::<u64>().is_ok(), "{what}: {line:?}");
            if line["item"] == BAD {
                assert!(
                    line["reason"].starts_with("cannot decode image"),
                    "{line:?}"
                );
            }
        }
        let start = work.master_events("start");
        assert_eq!(start[0]["blur"], "2", "{what}: {start:?}");
    }
    // Never retried: one request per run and mode for the bad image.
    assert_eq!(site.stats()["by_name"][BAD], MODES.len() as u64);
}

#[test]
fn keep_original_keeps_both_in_every_mode() {
    let site = Site::start(&[]);
    for mode in MODES {
        let what = format!("{mode:?} --keep-original");
        let work = Work::new();
        let (status, report) = run(&work, &site, mode, &["--keep-original"]);
        assert_eq!(status, 1, "{what}");
        check_results(&report, &what);
        let files = work.files("flags");
        no_temporary_files(&files, &what);
        assert_eq!(files.len(), 2 * NAMES.len(), "{what}: {:?}", files.keys());
        for name in NAMES {
            let original = &files[&format!("{name}.jpg")];
            assert_eq!(original, &flag_jpeg(name), "{what}: {name} kept byte-exact");
            assert_blurred(&files[&format!("{name}.blur.jpg")], original, &what);
        }
        assert!(
            files.keys().all(|n| !n.starts_with("Chad__")),
            "{what}: nothing kept for the bad image"
        );
        let sizes: u64 = files.values().map(|b| b.len() as u64).sum();
        assert_eq!(report["bytes"], sizes, "{what}: both files are counted");
    }
}

#[test]
fn larger_flags_keep_their_size_when_blurred() {
    let site = Site::start(&["--image-size", "160x120"]);
    let work = Work::new();
    let list = work.write_list(&["Chad", "Peru"]);
    let out = work.run(&[
        "--base-url",
        &site.base,
        "--list",
        list.to_str().expect("UTF-8 path"),
        "--mode",
        "threads",
        "--blur",
        "4",
        "--keep-original",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 images blurred"),
        "{}",
        stdout(&out)
    );
    let files = work.files("flags");
    for name in ["Chad", "Peru"] {
        let original = &files[&format!("{name}.jpg")];
        assert_eq!(decode(original, name).dimensions(), (160, 120));
        assert_ne!(original, &flag_jpeg(name), "not the default size");
        assert_blurred(&files[&format!("{name}.blur.jpg")], original, name);
    }
}

#[test]
fn bad_blur_options_are_one_line_and_write_nothing() {
    let work = Work::new();
    let cases: &[&[&str]] = &[
        &["--blur", "0"],
        &["--blur", "-1"],
        &["--blur", "100.5"],
        &["--blur", "nan"],
        &["--blur", "soft"],
        &["--blur"],
        &["--keep-original"],
        &["serve", "--image-size", "640"],
        &["serve", "--image-size", "0x10"],
    ];
    for args in cases {
        let out = work.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("flagmaster: "), "{args:?}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    assert!(
        !work.path("flags").exists() && !work.path("logs").exists(),
        "nothing written"
    );
}
