//! `flagmaster bench` end to end, on a tiny workload against the built-in site.

use crate::common;

use common::{stderr, stdout, Site, Work};

#[test]
fn bench_measures_every_setup_and_every_run_completes() {
    let work = Work::new();
    let out = work.run(&[
        "bench",
        "--items",
        "12",
        "--runs",
        "2",
        "--delay-ms",
        "10",
        "--jitter-ms",
        "0",
        "--procs",
        "3",
        "--threads",
        "3",
        "--hybrid",
        "4x8",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bench: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bench["items"], 12);
    let rows = bench["rows"].as_array().unwrap();
    let shapes: Vec<(String, u64, u64)> = rows
        .iter()
        .map(|r| {
            let mode = r["mode"].as_str().unwrap().to_string();
            (
                mode,
                r["procs"].as_u64().unwrap(),
                r["threads"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("serial", 1, 1),
        ("threads", 1, 3),
        ("proc", 3, 1),
        // Fitted to the 12 items, as the run itself fits: a row is labelled
        // with what ran, and the bench checks the run's report says so.
        ("hybrid", 4, 3),
    ];
    let expected: Vec<(String, u64, u64)> = expected
        .iter()
        .map(|&(m, p, t)| (m.to_string(), p, t))
        .collect();
    assert_eq!(shapes, expected);
    for r in rows {
        assert_eq!(r["complete_runs"], 2, "{r}");
        let samples = r["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "warm-up runs are not counted");
        for s in samples {
            assert_eq!(s["ok"], 12, "{s}");
            assert!(s["secs"].as_f64().unwrap() > 0.0);
            assert!(s["bytes"].as_u64().unwrap() > 12 * 1000);
            // What the run cost the built-in site: its own 12 answers, each
            // after the latency, not the warm-up's or another run's.
            assert_eq!(s["site_delayed"], 12, "{s}");
            assert!(s["site_cpu_secs"].as_f64().unwrap() > 0.0, "{s}");
            let (mean, p99) = (s["site_late_ms"].as_f64(), s["site_late_p99_ms"].as_f64());
            assert!(mean.unwrap() >= 0.0 && p99.unwrap() >= 0.0, "{s}");
        }
        assert!(r["site_cpu_secs"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["site_late_ms"].is_f64(), "{r}");
        let (min, med, max) = (
            r["min_secs"].as_f64(),
            r["median_secs"].as_f64(),
            r["max_secs"].as_f64(),
        );
        assert!(min <= med && med <= max, "{r}");
        assert!(
            r["efficiency"].as_f64().unwrap() > 0.0,
            "the built-in site's latency is known"
        );
    }
    assert_eq!(rows[0]["speedup_vs_serial"], 1.0);
    // The setups take turns: run 1 of each, then run 2 of each.
    let order: Vec<String> = stderr(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("bench: "))
        .filter(|l| l.contains(" run "))
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect();
    let setups = ["serial 1x1", "threads 1x3", "proc 3x1", "hybrid 4x3"];
    let expected: Vec<String> = (1..=2)
        .flat_map(|run| setups.iter().map(move |s| format!("{s} run {run}")))
        .collect();
    assert_eq!(order, expected, "{}", stderr(&out));
}

#[test]
fn bench_markdown_and_bad_setups() {
    let work = Work::new();
    let out = work.run(&[
        "bench",
        "--items",
        "4",
        "--runs",
        "1",
        "--delay-ms",
        "0",
        "--jitter-ms",
        "0",
        "--modes",
        "threads,proc,proc-pinned",
        "--procs",
        "2",
        "--threads",
        "2",
        "--markdown",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let md = stdout(&out);
    let lines: Vec<&str> = md.lines().collect();
    assert!(
        lines[0].starts_with("| mode | workers x threads | median s (min-max) |"),
        "{md}"
    );
    assert!(
        lines[0].contains("| CPU s | site CPU s | site late ms | peak RSS MB |"),
        "{md}"
    );
    // Without a latency, no answer waited: nothing to be late for.
    assert!(lines[2].contains(" | - | "), "{md}");
    assert!(lines[2].starts_with("| threads | 1 x 2 |"), "{md}");
    assert!(lines[3].starts_with("| proc | 2 x 1 |"), "{md}");
    assert!(lines[3].ends_with("| 1/1 |"), "{md}");
    // Its runs said they were pinned, or the bench would have failed.
    assert!(lines[4].starts_with("| proc-pinned | 2 x 1 |"), "{md}");
    assert!(lines[4].ends_with("| 1/1 |"), "{md}");

    for bad in [
        &["bench", "--hybrid", "4by8"][..],
        &["bench", "--modes", "fibers"],
        &["bench", "--modes", "threads-pinned"],
    ] {
        let out = work.run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert_eq!(stderr(&out).lines().count(), 1, "{bad:?}: {}", stderr(&out));
    }
}

#[test]
fn bench_against_another_site_has_no_site_figures() {
    let site = Site::start(&[]);
    let work = Work::new();
    let out = work.run(&[
        "bench",
        "--base-url",
        &site.base,
        "--runs",
        "1",
        "--modes",
        "threads",
        "--threads",
        "8",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bench: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &bench["rows"][0];
    assert_eq!(row["complete_runs"], 1, "{row}");
    // Its CPU is another process's, and its lateness its own business.
    for field in ["site_cpu_secs", "site_late_ms"] {
        assert!(row[field].is_null(), "{field}: {row}");
        assert!(row["samples"][0][field].is_null(), "{field}: {row}");
    }
    // A warm-up of 4 items per worker loop (8 threads), and a measured run
    // of the whole list.
    let items = bench["items"].as_u64().unwrap();
    assert!(items > 100, "{bench}");
    assert_eq!(site.requests(), 4 * 8 + items);
}

#[test]
fn bench_blur_with_a_plot_of_every_setup() {
    let work = Work::new();
    let svg_path = work.path("chart.svg");
    let out = work.run(&[
        "bench",
        "--items",
        "4",
        "--runs",
        "1",
        "--delay-ms",
        "0",
        "--jitter-ms",
        "0",
        "--procs",
        "2",
        "--threads",
        "2",
        "--hybrid",
        "2x2",
        "--blur",
        "3",
        "--image-size",
        "120x80",
        "--plot",
        svg_path.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bench: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bench["blur_sigma"], 3.0);
    assert!(
        bench["site"].as_str().unwrap().contains("120x80 px"),
        "{bench}"
    );
    let rows = bench["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(r["complete_runs"], 1, "{r}");
        assert!(r["blur_secs"].is_f64(), "every run blurred: {r}");
    }

    let svg = std::fs::read_to_string(&svg_path).expect("the chart is written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(100)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for setup in ["serial 1x1", "threads 1x2", "proc 2x1", "hybrid 2x2"] {
        assert!(svg.contains(setup), "{setup} is named in the chart");
    }
    assert!(svg.contains("--blur 3"), "the title says what was measured");
}

#[test]
fn bench_plot_path_is_checked_before_measuring() {
    let work = Work::new();
    let missing_dir = work.path("no/such/dir/chart.svg");
    let not_svg = work.path("chart.png");
    for plot in [&missing_dir, &not_svg] {
        // A workload that would take minutes if it were measured.
        let out = work.run(&[
            "bench",
            "--items",
            "5000",
            "--delay-ms",
            "1000",
            "--plot",
            plot.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{plot:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{plot:?}: {err}");
        assert!(err.contains("--plot"), "{err}");
        assert!(!plot.exists());
    }
}

#[test]
fn bench_timeline_keeps_a_run_of_each_setup_and_stacks_them() {
    let work = Work::new();
    let out = work.run(&[
        "bench",
        "--items",
        "12",
        "--runs",
        "2",
        "--delay-ms",
        "10",
        "--jitter-ms",
        "0",
        "--modes",
        "serial,threads,proc",
        "--procs",
        "2",
        "--threads",
        "3",
        "--timeline",
        "kept",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for setup in ["serial", "threads", "proc"] {
        assert!(
            work.path(&format!("kept/{setup}/master.log")).is_file(),
            "{setup}"
        );
    }
    let svg = std::fs::read_to_string(work.path("kept/timeline.svg")).unwrap();
    // Lanes: 1 + 3 + 2; bars: 12 items of each setup, one attempt each.
    assert_eq!(svg.matches("<rect class=\"lane\"").count(), 6);
    assert_eq!(svg.matches("<rect class=\"attempt ok\"").count(), 36);
    for heading in [
        "kept/serial: serial 1x1",
        "kept/threads: threads 1x3",
        "kept/proc: proc 2x1",
    ] {
        assert!(svg.contains(heading), "{heading}");
    }
    assert!(
        stderr(&out).contains("kept/timeline.svg"),
        "{}",
        stderr(&out)
    );
}
