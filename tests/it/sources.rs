//! Sources beside a names list, against the built-in site's image APIs:
//! `--urls`, `--listing` (Picsum-like and Imgur-like, `--pick`, `--type`,
//! `--header`) and `--template` (Fluent Python's layout), in every mode.

use crate::common;

use std::fs;

use common::{flag_names, stderr, Site, Work};
use flagmaster::site::flag::flag_jpeg;

const MODES: [&[&str]; 4] = [
    &["--mode", "serial"],
    &["--mode", "threads", "--threads", "3"],
    &["--mode", "proc", "--procs", "3"],
    &["--mode", "proc", "--procs", "2", "--threads", "2"],
];

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report ({e}): {}", stderr(out)))
}

fn decoded(bytes: &[u8]) -> (image::ImageFormat, u32, u32) {
    let format = image::guess_format(bytes).expect("an image format");
    let img = image::load_from_memory(bytes).expect("decodes");
    (format, img.width(), img.height())
}

#[test]
fn urls_file_names_files_after_the_last_segment() {
    let site = Site::start(&[]);
    let o = &site.origin;
    let urls = [
        format!("# a comment, then a blank line\n\n{}", site.url("Chad")),
        // Picsum-style: no extension, the Content-Type gives one; same last segment twice.
        format!("{o}/id/3/96/64"),
        format!("{o}/id/4/96/64"),
        format!("{o}/i/Peru.png"),
        format!("{o}/i/Nowhere.jpg"),
        // A percent-encoded slash stays in the name, which is refused.
        format!("{}/..%2Fx.jpg", site.base),
        site.url("Chad"),
    ];
    let names = flag_names(5);
    for mode in MODES {
        let work = Work::new();
        fs::write(work.path("urls.txt"), urls.join("\n")).unwrap();
        let mut args = mode.to_vec();
        args.extend(["--urls", "urls.txt", "--json"]);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("duplicate entry"), "{}", stderr(&out));
        let report = json(&out);
        assert_eq!(report["items"], 6);
        assert_eq!(report["counts"]["ok"], 4, "{report}");
        assert_eq!(report["counts"]["not_found"], 1);
        assert_eq!(report["counts"]["error"], 1);
        let files = work.files("flags");
        let listed: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            listed,
            ["64-2.jpg", "64.jpg", "Chad.jpg", "Peru.png"],
            "{mode:?}"
        );
        assert_eq!(files["Chad.jpg"], flag_jpeg("Chad"));
        assert_eq!(files["64.jpg"], flag_jpeg(&names[3]));
        assert_eq!(files["64-2.jpg"], flag_jpeg(&names[4]));
        assert_eq!(
            decoded(&files["Peru.png"]),
            (image::ImageFormat::Png, 96, 64)
        );
        let bytes: u64 = files.values().map(|f| f.len() as u64).sum();
        assert_eq!(report["bytes"], bytes);
    }
}

#[test]
fn picsum_listing_on_the_builtin_site() {
    let names = flag_names(12);
    for mode in MODES {
        let work = Work::new();
        let mut args = mode.to_vec();
        args.extend([
            "--server",
            "LOCAL",
            "--listing",
            "/v2/list?limit=12",
            "--json",
        ]);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report = json(&out);
        assert_eq!(report["counts"]["ok"], 12, "{report}");
        let files = work.files("flags");
        assert_eq!(files.len(), 12);
        for (id, name) in names.iter().enumerate() {
            assert_eq!(files[&format!("{id}.jpg")], flag_jpeg(name), "{id}");
        }
    }
}

#[test]
fn picsum_listing_pages_and_limit() {
    let site = Site::start(&[]);
    let work = Work::new();
    let url = format!("{}/v2/list?page=2&limit=10", site.origin);
    let out = work.run(&[
        "--mode",
        "threads",
        "--listing",
        &url,
        "--limit",
        "4",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["site"], "none");
    let names = flag_names(14);
    let files = work.files("flags");
    assert_eq!(files.len(), 4);
    for id in 10..14 {
        assert_eq!(files[&format!("{id}.jpg")], flag_jpeg(&names[id]));
    }
}

#[test]
fn imgur_listing_with_header_type_filter_and_pick() {
    let site = Site::start(&[]);
    let album = format!("{}/3/album/flags/images", site.origin);
    let auth = "Authorization: Client-ID not-a-real-id";
    for mode in MODES {
        let work = Work::new();
        let mut args = mode.to_vec();
        args.extend([
            "--listing",
            &album,
            "--header",
            auth,
            "--limit",
            "12",
            "--json",
        ]);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let files = work.files("flags");
        let names = flag_names(12);
        // Every fourth image of the album is a PNG.
        for (i, name) in names.iter().enumerate() {
            if i % 4 == 3 {
                assert_eq!(
                    decoded(&files[&format!("{name}.png")]).0,
                    image::ImageFormat::Png
                );
            } else {
                assert_eq!(files[&format!("{name}.jpg")], flag_jpeg(name));
            }
        }
        let logs: String = work.worker_logs("logs").into_values().collect();
        assert!(
            !logs.contains("not-a-real-id"),
            "the header value leaked into a log"
        );
    }

    let work = Work::new();
    let out = work.run(&[
        "--listing",
        &album,
        "--header",
        auth,
        "--type",
        "image/png",
        "--pick",
        "/link",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files = work.files("flags");
    assert_eq!(files.len(), flag_names(200).len() / 4, "only the PNGs");
    assert!(files.keys().all(|f| f.ends_with(".png")));
}

#[test]
fn listing_failures_are_one_line_and_write_nothing() {
    let site = Site::start(&[]);
    let album = format!("{}/3/album/flags/images", site.origin);
    let jpeg = site.url("Chad");
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--listing", &album], "HTTP 401"),
        (vec!["--listing", &jpeg], "not JSON"),
        (
            vec![
                "--listing",
                "/v2/list",
                "--server",
                "LOCAL",
                "--pick",
                "images.0.link",
            ],
            "no http(s) URL at /images/0/link",
        ),
        (vec!["--listing", "ftp://x/list"], "bad --listing"),
    ];
    for (args, expected) in cases {
        let work = Work::new();
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!work.path("flags").exists() && !work.path("logs").exists());
    }
}

#[test]
fn fluent_python_template_with_lower_case_codes() {
    let site = Site::start(&[]);
    for mode in MODES {
        let work = Work::new();
        let list = work.write_list(&["CN", "IN", "US", "BR", "XX"]);
        let mut args = mode.to_vec();
        args.extend([
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--template",
            "{origin}/data/flags/{lower}/{lower}.gif",
            "--json",
        ]);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let report = json(&out);
        assert_eq!(report["counts"]["ok"], 4);
        assert_eq!(report["counts"]["not_found"], 1, "XX is not a country");
        let files = work.files("flags");
        let listed: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(listed, ["br.gif", "cn.gif", "in.gif", "us.gif"]);
        for bytes in files.values() {
            assert_eq!(decoded(bytes), (image::ImageFormat::Gif, 96, 64));
        }
    }
    let stats = site.stats();
    assert!(
        stats["by_name"]["data/flags/cn/cn.gif"].as_u64() >= Some(4),
        "{stats}"
    );
}

#[test]
fn bad_templates_and_conflicting_sources_exit_2() {
    for args in [
        &["--template", "{base}/{nam}.jpg"][..],
        &["--template", "{base}/{name}/flag.jpg"],
        &["--urls", "u.txt", "--list", "l.txt"],
        &["--pick", "/x"],
        &["--urls", "u.txt"],
    ] {
        let work = Work::new();
        fs::write(work.path("u.txt"), "http://127.0.0.1:9/a.jpg\nnot a url\n").unwrap();
        let out = work.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(!work.path("flags").exists());
    }
}

#[test]
fn a_rerun_finds_files_named_by_their_content_type() {
    let site = Site::start(&[]);
    let listing = format!("{}/v2/list?limit=6", site.origin);
    let work = Work::new();
    let first = work.run(&["--mode", "threads", "--listing", &listing, "--json"]);
    assert_eq!(json(&first)["counts"]["ok"], 6, "{}", stderr(&first));
    let before = site.requests();
    let again = work.run(&[
        "--mode",
        "proc",
        "--procs",
        "2",
        "--listing",
        &listing,
        "--skip-existing",
        "--json",
    ]);
    let report = json(&again);
    assert_eq!(report["counts"]["skipped"], 6, "{report}");
    assert_eq!(report["counts"]["ok"], 0);
    assert_eq!(site.requests(), before, "no image was asked for again");
    assert_eq!(work.files("flags").len(), 6);
}
