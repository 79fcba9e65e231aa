//! Hostile and unusual input on the download side: unsafe names, Unicode
//! names, secret headers, and a worker process that stops answering.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::{alive, signal, stderr, stdout, Site, Work};
use flagmaster::site::flag::flag_jpeg;

#[test]
fn unsafe_names_are_errors_and_nothing_escapes_dest() {
    let site = Site::start(&[]);
    let work = Work::new();
    let list = work.write_list(&[
        "Chad",
        "../escaped",
        "a/b",
        "..\\windows",
        "..%2Fencoded",
        "nul\u{1}char",
        &"x".repeat(300),
    ]);
    for mode in [
        &["--mode", "serial"][..],
        &["--mode", "proc", "--procs", "2"],
    ] {
        let mut args = vec![
            "--base-url",
            &site.base,
            "--list",
            list.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(mode);
        let out = work.run(&args);
        assert_eq!(out.status.code(), Some(1), "{mode:?}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["counts"]["ok"], 1);
        assert_eq!(report["counts"]["error"], 6);
        for r in report["results"].as_array().unwrap() {
            if r["name"] != "Chad" {
                let reason = r["reason"].as_str().unwrap();
                assert!(reason.starts_with("unsafe name"), "{mode:?}: {r}");
                assert_eq!(r["http"], serde_json::Value::Null, "no request was made");
            }
        }
        assert_eq!(work.files("flags").keys().collect::<Vec<_>>(), ["Chad.jpg"]);
        let mut top: Vec<String> = std::fs::read_dir(work.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["flags", "list.txt", "logs"],
            "nothing written outside dest"
        );
    }
    assert_eq!(site.requests(), 2, "only Chad was requested, once per run");
}

#[test]
fn unicode_names_are_encoded_and_saved() {
    let work = Work::new();
    let names = ["Côte_d'Ivoire", "São_Tomé", "日本"];
    let served = work.write_list(&names);
    let site = Site::start(&["--list", served.to_str().unwrap()]);
    let out = work.run(&[
        "--base-url",
        &site.base,
        "--list",
        served.to_str().unwrap(),
        "--mode",
        "threads",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for name in names {
        let bytes = &work.files("flags")[&format!("{name}.jpg")];
        assert_eq!(bytes, &flag_jpeg(name), "{name}");
    }
    let logs = work.worker_logs("logs").into_values().collect::<String>();
    assert!(logs.contains("url=http://127.0.0.1:"), "{logs}");
    assert!(logs.contains("/C%C3%B4te_d%27Ivoire.jpg"), "{logs}");
}

/// A server for `requests` requests that records their heads and answers the
/// smallest body that passes for a JPEG (start and end markers).
fn capture_server(requests: usize) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/flags", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..requests {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\
                  Connection: close\r\n\r\n\xff\xd8\xff\xd9",
            );
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        }
    });
    (base, rx)
}

#[test]
fn header_values_are_sent_but_never_logged_or_reported() {
    let secret = "Client-ID s3cr3t-t0ken";
    for mode in [
        &["--mode", "serial"][..],
        &["--mode", "proc", "--procs", "1"],
    ] {
        let (base, heads) = capture_server(2);
        let work = Work::new();
        let list = work.write_list(&["Chad"]);
        let header = format!("Authorization: {secret}");
        let mut args = vec!["--base-url", &base, "--list", list.to_str().unwrap()];
        args.extend_from_slice(&["--header", &header, "--header", "X-Api-Key: k3y-value"]);
        args.extend_from_slice(mode);
        let text = work.run(&args);
        let json = work.run(&[&args[..], &["--json"]].concat());
        for out in [&text, &json] {
            assert_eq!(out.status.code(), Some(0), "{mode:?}: {}", stderr(out));
            for leak in [stdout(out), stderr(out)] {
                assert!(
                    !leak.contains("s3cr3t") && !leak.contains("k3y"),
                    "{mode:?}: {leak}"
                );
            }
        }
        let head = heads
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .to_lowercase();
        assert!(
            head.contains(&format!("authorization: {}", secret.to_lowercase())),
            "{head}"
        );
        assert!(head.contains("x-api-key: k3y-value"), "{head}");
        for entry in std::fs::read_dir(work.path("logs")).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(
                !text.contains("s3cr3t") && !text.contains("k3y"),
                "{mode:?}: {text}"
            );
        }
    }
}

#[test]
fn headers_up_to_the_cap_fit_in_the_request() {
    let (base, heads) = capture_server(1);
    let work = Work::new();
    let list = work.write_list(&["Chad"]);
    // 8192 bytes with the name and separators: exactly at the cap.
    let value = "v".repeat(8192 - "X-Long".len() - 4);
    let header = format!("X-Long: {value}");
    let out = work.run(&[
        "--base-url",
        &base,
        "--list",
        list.to_str().unwrap(),
        "--header",
        &header,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let head = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        head.to_lowercase().contains(&header.to_lowercase()),
        "the header arrived whole"
    );
}

#[test]
fn a_stopped_worker_is_killed_and_its_items_handed_on() {
    let site = Site::start(&["--delay-ms", "100"]);
    let work = Work::new();
    let child = work.spawn(
        &common::proc_run(
            &site.base,
            "30",
            "2",
            &["--chunk-size", "5", "--timeout", "1", "--json"],
        ),
        &[],
    );
    // Wait for the first hello, then freeze that worker: alive, but silent.
    let (_, frozen) = common::hellos(&work, 1, Duration::from_secs(20))[0];
    signal("STOP", frozen);
    let out = common::wait_output(child, Duration::from_secs(60));
    // Should the master have failed to kill it, do not leave it behind.
    if alive(frozen) {
        signal("KILL", frozen);
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["ok"], 30, "every item still downloaded");
    let stuck = work.master_events("worker_stuck");
    assert_eq!(stuck.len(), 1, "the stuck worker is recorded");
    let end = work.master_events("worker_end");
    let killed = end.iter().find(|f| f["pid"] == frozen.to_string()).unwrap();
    assert!(killed["exit"].contains("signal: 9"), "{killed:?}");
    let stuck = &stuck[0];
    assert_eq!(stuck["pid"], frozen.to_string());
}
