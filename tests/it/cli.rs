//! Bad input: one clear line on stderr, exit status 2, no panic, nothing written.

use crate::common;

use common::{stderr, Work};

fn assert_refused(work: &Work, args: &[&str], expect: &str) {
    let out = work.run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    assert!(err.starts_with("flagmaster: "), "{args:?}: {err}");
    assert!(
        err.contains(expect),
        "{args:?}: {err:?} should mention {expect:?}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    for dir in ["flags", "logs"] {
        assert!(!work.path(dir).exists(), "{args:?}: {dir} was created");
    }
}

#[test]
fn bad_arguments_and_lists_get_status_2_and_one_line() {
    let work = Work::new();
    std::fs::write(work.path("empty.txt"), "# nothing\n\n").unwrap();
    std::fs::write(work.path("binary.txt"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    std::fs::write(work.path("a-file"), "x").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--procs", "0"], "--procs"),
        (&["--threads", "0"], "--threads"),
        (&["--mode", "fibers"], "--mode"),
        (&["--list", "missing.txt"], "cannot read list missing.txt"),
        (
            &["--list", "empty.txt"],
            "list empty.txt has nothing to download",
        ),
        (&["--list", "binary.txt"], "not UTF-8"),
        (
            &["--base-url", "ftp://example.org/x"],
            "only http and https",
        ),
        (&["--base-url", "not a url"], "bad --base-url"),
        (&["--base-url", "example.org/flags"], "missing http://"),
        (&["--dest", "a-file"], "--dest a-file is not a directory"),
        (
            &["--dest", "a-file/sub"],
            "--dest a-file is not a directory",
        ),
        (
            &["--log-dir", "a-file"],
            "--log-dir a-file is not a directory",
        ),
        (&["--timeout", "0"], "--timeout"),
        (
            &["--server", "LOCAL", "--base-url", "http://127.0.0.1:1/x"],
            "cannot be used with",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, expect) in cases {
        assert_refused(&work, args, expect);
    }
    // Headers must fit in a request head with room to spare.
    let huge = format!("X-Token: {}", "a".repeat(9000));
    assert_refused(&work, &["--header", &huge], "at most 8192 fit in a request");
}

#[test]
fn help_and_version_succeed() {
    let work = Work::new();
    let help = work.run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = common::stdout(&help);
    for flag in [
        "--mode",
        "--procs",
        "--threads",
        "--server",
        "--base-url",
        "--dest",
        "--log-dir",
        "--json",
        "--shard",
        "--shard-count",
        "merge-reports",
        "completions",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
    // The run options come in groups, in this order.
    let headings: Vec<usize> = [
        "\nConcurrency:\n",
        "\nSource:\n",
        "\nOutput and files:\n",
        "\nHTTP:\n",
    ]
    .iter()
    .map(|h| text.find(h).unwrap_or_else(|| panic!("--help has {h:?}")))
    .collect();
    assert!(headings.windows(2).all(|w| w[0] < w[1]), "{text}");
    let in_group =
        |flag: &str, heading: usize| text.find(flag).is_some_and(|at| at > headings[heading]);
    assert!(in_group("--procs", 0) && in_group("--shard", 1) && in_group("--timeout", 3));
    assert!(
        !text.contains("__worker"),
        "the worker subcommand is hidden"
    );
    let version = work.run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(common::stdout(&version).starts_with("flagmaster "));
}

#[test]
fn serve_refuses_a_busy_port_with_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let work = Work::new();
    let out = work.run(&["serve", "--port", &port]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot start the built-in site"), "{err}");
}
