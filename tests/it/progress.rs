//! What a run shows while it goes: the progress bar in a pseudo-terminal (and
//! never in a pipe), `--verbose` lines, `--quiet`.

use crate::common;

use std::process::{Command, Stdio};

use common::{stderr, stdout, wait_output, Site, Work, BIN, RUN_DEADLINE};

/// Clears the current terminal line: indicatif starts every redraw with it.
const CLEAR_LINE: &str = "\x1b[2K";

/// Runs flagmaster inside a pseudo-terminal of 120 columns (`script` from
/// util-linux), so that stdout and stderr are a terminal. Returns the exit
/// status and everything the terminal received.
fn run_in_pty(work: &Work, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let command = std::iter::once(BIN.to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let child = Command::new("script")
        .args([
            "-qfec",
            &format!("stty cols 120 rows 40; exec {command}"),
            "/dev/null",
        ])
        .env("TERM", "xterm-256color")
        .envs(env.iter().copied())
        .current_dir(work.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start script(1)");
    let out = wait_output(child, RUN_DEADLINE);
    (out.status.code().unwrap_or(-1), stdout(&out))
}

/// The part of the terminal output after the bar was cleared for the last
/// time: the report.
fn after_last_clear(screen: &str) -> &str {
    screen.rsplit(CLEAR_LINE).next().unwrap_or(screen)
}

#[test]
fn bar_is_drawn_on_a_terminal_and_cleared_before_the_report() {
    let site = Site::start(&["--delay-ms", "60"]);
    for mode in [
        &["--mode", "threads", "--threads", "4"][..],
        &["--mode", "proc", "--procs", "4"],
    ] {
        let work = Work::new();
        let mut args = mode.to_vec();
        args.extend(["--base-url", &site.base, "--limit", "40"]);
        let (code, screen) = run_in_pty(&work, &args, &[]);
        assert_eq!(code, 0, "{screen}");
        let frames: Vec<&str> = screen
            .split(CLEAR_LINE)
            .filter(|f| f.contains("ETA"))
            .collect();
        assert!(!frames.is_empty(), "no bar drawn:\n{screen}");
        assert!(
            frames
                .iter()
                .any(|f| f.contains("/40 | OK ") && f.contains("not found 0")),
            "bar shows items, counts: {frames:?}"
        );
        let report = after_last_clear(&screen);
        assert!(!report.contains("ETA"), "bar left in the report:\n{report}");
        assert!(
            report.contains("40 downloaded, 0 not found, 0 errors"),
            "{report}"
        );
        assert_eq!(work.files("flags").len(), 40);
    }
}

#[test]
fn a_warning_during_the_bar_gets_its_own_line() {
    let site = Site::start(&["--delay-ms", "60"]);
    let work = Work::new();
    let args = [
        "--procs",
        "3",
        "--base-url",
        &site.base,
        "--limit",
        "30",
        "--chunk-size",
        "2",
    ];
    let (code, screen) = run_in_pty(&work, &args, &[("FLAGMASTER_INJECT_PANIC_AFTER", "2:1")]);
    assert_eq!(code, 0, "{screen}");
    let line = screen
        .lines()
        .find(|l| l.contains("ended without finishing"))
        .unwrap_or_else(|| panic!("no warning:\n{screen}"));
    let text = after_last_clear(line).trim_end_matches('\r');
    assert!(
        text.starts_with("flagmaster: worker 2 ") && !text.contains("ETA"),
        "warning mixed with the bar: {line:?}"
    );
    assert!(
        after_last_clear(&screen).contains("30 downloaded"),
        "{screen}"
    );
}

#[test]
fn no_bar_and_no_escape_codes_in_a_pipe() {
    let site = Site::start(&[]);
    let work = Work::new();
    let out = work.run(&[
        "--mode",
        "threads",
        "--base-url",
        &site.base,
        "--limit",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains('\x1b') && !text.contains("ETA"), "{text}");
    }
    assert!(stdout(&out).contains("20 downloaded"));
}

#[test]
fn verbose_prints_one_line_per_item_in_every_mode() {
    let site = Site::start(&[]);
    let list_names = ["Chad", "Peru", "Atlantis", "Iran", "Togo", "Mali"];
    for mode in [
        &["--mode", "serial"][..],
        &["--mode", "threads", "--threads", "3"],
        &["--mode", "proc", "--procs", "3"],
        &["--mode", "proc", "--procs", "2", "--threads", "2"],
    ] {
        let work = Work::new();
        let list = work.write_list(&list_names);
        let mut args = mode.to_vec();
        args.extend([
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "-v",
        ]);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let text = stdout(&out);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" bytes  worker "))
            .collect();
        assert_eq!(lines.len(), list_names.len(), "{text}");
        for name in list_names {
            let line = lines
                .iter()
                .find(|l| l.split_whitespace().nth(1) == Some(name))
                .unwrap_or_else(|| panic!("{name}: {text}"));
            let expected = if name == "Atlantis" {
                "NOT_FOUND"
            } else {
                "OK"
            };
            assert!(line.starts_with(expected), "{line}");
        }
        assert!(!text.contains("ETA"));
    }
}

#[test]
fn verbose_with_json_keeps_stdout_a_json_document() {
    let site = Site::start(&[]);
    let work = Work::new();
    let out = work.run(&[
        "--mode",
        "threads",
        "--base-url",
        &site.base,
        "--limit",
        "5",
        "-v",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["counts"]["ok"], 5);
    let lines = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("OK "))
        .count();
    assert_eq!(lines, 5, "{}", stderr(&out));
}

#[test]
fn quiet_prints_only_the_report() {
    let site = Site::start(&[]);
    let work = Work::new();
    let out = work.run(&[
        "--mode",
        "threads",
        "--base-url",
        &site.base,
        "--limit",
        "5",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("Site:") && !text.contains("Mode:"), "{text}");
    assert!(text.contains("5 downloaded"), "{text}");
    assert_eq!(stderr(&out), "");
    let both = work.run(&["-q", "-v"]);
    assert_eq!(both.status.code(), Some(2));
}
