//! The fault modes of the built-in site, seen by a client over 127.0.0.1:
//! statuses and headers with ureq, and what reaches the wire with a raw
//! socket where ureq would hide it (decompression, a short body). Every wait
//! is bounded by a client timeout of at most a few seconds.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use common::Site;
use flagmaster::site::conditional::{etag, LAST_MODIFIED};
use flagmaster::site::flag::flag_jpeg;
use ureq::http::Response;
use ureq::{Agent, Body};

/// A client that reports every status as a response, with every wait bounded
/// and the proxy settings of the environment ignored (traffic is loopback).
fn agent(max_redirects: u32, timeout: Duration) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(max_redirects)
        .proxy(None)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(Duration::from_secs(2)))
        .build()
        .new_agent()
}

fn quick() -> Agent {
    agent(0, Duration::from_secs(3))
}

fn get(agent: &Agent, url: &str) -> Response<Body> {
    agent.get(url).call().expect("response")
}

fn header<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

fn by_name(site: &Site, name: &str) -> u64 {
    site.stats()["by_name"][name].as_u64().unwrap_or(0)
}

/// What a raw HTTP/1.1 GET of `path` receives until the server closes the
/// connection or 2 s pass: the head (lowercased) and the body bytes.
fn raw_get(site: &Site, path: &str) -> (String, Vec<u8>) {
    let host = site.origin.trim_start_matches("http://");
    let mut conn = TcpStream::connect(host).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&received[..split]).to_lowercase();
    (head, received[split + 4..].to_vec())
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length")
}

#[test]
fn status_faults_fail_first_then_serve_the_flag() {
    let site = Site::start(&[]);
    let agent = quick();
    let chad = flag_jpeg("Chad");

    let mut res = get(&agent, &site.url("Chad__status-429"));
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "1");
    let _ = res.body_mut().read_to_vec();
    let mut res = get(&agent, &site.url("Chad__status-429"));
    assert_eq!(res.status(), 200);
    assert_eq!(res.body_mut().read_to_vec().expect("body"), chad);

    let mut res = get(&agent, &site.url("Chad__status-503"));
    assert_eq!(res.status(), 503);
    let when = httpdate::parse_http_date(header(&res, "retry-after")).expect("HTTP date");
    let ahead = when
        .duration_since(SystemTime::now() - Duration::from_secs(1))
        .expect("Retry-After in the future (to the second)");
    assert!(ahead <= Duration::from_secs(3), "{ahead:?}");
    let _ = res.body_mut().read_to_vec();
    assert_eq!(get(&agent, &site.url("Chad__status-503")).status(), 200);

    let statuses: Vec<u16> = (0..3)
        .map(|_| get(&agent, &site.url("Chad__flaky")).status().as_u16())
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
    // Counters are per requested name: another flag starts over.
    assert_eq!(get(&agent, &site.url("Fiji__flaky")).status(), 500);

    let stats = site.stats();
    assert_eq!(stats["requests"], 8);
    assert_eq!(stats["by_name"]["Chad__status-429"], 2);
    assert_eq!(stats["by_name"]["Chad__status-503"], 2);
    assert_eq!(stats["by_name"]["Chad__flaky"], 3);
    assert_eq!(stats["by_name"]["Fiji__flaky"], 1);
    assert!(stats["by_name"].get("Chad").is_none());
}

#[test]
fn healthy_answers_carry_their_validators_and_honour_them() {
    let site = Site::start(&[]);
    let agent = quick();
    let chad = flag_jpeg("Chad");
    let mut res = get(&agent, &site.url("Chad"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "image/jpeg");
    assert_eq!(header(&res, "last-modified"), LAST_MODIFIED);
    // Made once per flag at start-up: still the checksum of what is served.
    let tag = header(&res, "etag").to_string();
    assert_eq!(tag, etag(&chad));
    assert_eq!(res.body_mut().read_to_vec().expect("body"), chad);
    let mut fiji = get(&agent, &site.url("Fiji"));
    assert_ne!(header(&fiji, "etag"), tag, "every flag has its own tag");
    let _ = fiji.body_mut().read_to_vec();

    let conditional = |tag: &str| {
        let mut res = agent
            .get(&site.url("Chad"))
            .header("If-None-Match", tag)
            .call()
            .expect("response");
        let body = res.body_mut().read_to_vec().expect("body");
        (res.status().as_u16(), body.len())
    };
    assert_eq!(conditional(&tag), (304, 0));
    assert_eq!(conditional("\"other\""), (200, chad.len()));
}

#[test]
fn unknown_fault_or_flag_is_a_404_and_counted() {
    let site = Site::start(&[]);
    let agent = quick();
    for name in ["Chad__bogus", "Chad__", "Atlantis__flaky", "Atlantis"] {
        assert_eq!(get(&agent, &site.url(name)).status(), 404, "{name}");
    }
    assert_eq!(get(&agent, &site.url("Chad")).status(), 200);
    assert_eq!(by_name(&site, "Chad__bogus"), 1);
    assert_eq!(by_name(&site, "Atlantis"), 1);
    assert_eq!(site.requests(), 5);
}

#[test]
fn redirect_goes_to_the_healthy_flag_and_redirect_loop_to_itself() {
    let site = Site::start(&[]);
    let res = get(&quick(), &site.url("Chad__redirect"));
    assert_eq!(res.status(), 302);
    assert_eq!(
        header(&res, "location"),
        "/images/pictures/flags96/Chad.jpg?redirected"
    );
    let res = get(&quick(), &site.url("Chad__redirect-loop"));
    assert_eq!(res.status(), 302);
    assert_eq!(
        header(&res, "location"),
        "/images/pictures/flags96/Chad__redirect-loop.jpg"
    );

    let follow = agent(5, Duration::from_secs(3));
    let mut res = get(&follow, &site.url("Chad__redirect"));
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.body_mut().read_to_vec().expect("body"),
        flag_jpeg("Chad")
    );
    let looped = follow.get(site.url("Chad__redirect-loop")).call();
    assert!(
        matches!(looped, Err(ureq::Error::TooManyRedirects)),
        "{looped:?}"
    );
    assert_eq!(by_name(&site, "Chad__redirect-loop"), 1 + 6);
}

#[test]
fn fault_flag_applies_to_every_flag_and_a_suffix_wins() {
    let site = Site::start(&["--fault", "redirect"]);
    let follow = agent(5, Duration::from_secs(3));
    // The redirect target is served healthy, or --fault redirect would loop.
    let mut res = get(&follow, &site.url("Peru"));
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.body_mut().read_to_vec().expect("body"),
        flag_jpeg("Peru")
    );
    assert_eq!(get(&quick(), &site.url("Peru")).status(), 302);
    assert_eq!(get(&quick(), &site.url("Peru__flaky")).status(), 500);

    let site = Site::start(&["--fault", "html-200"]);
    let mut res = get(&quick(), &site.url("Chad"));
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/html"));
    let page = res.body_mut().read_to_string().expect("page");
    assert!(page.contains("<html>"), "{page}");
}

#[test]
fn bad_fault_flag_is_a_usage_error() {
    let out = common::Work::new().run(&["serve", "--port", "0", "--fault", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("bogus"), "{out:?}");
}

#[test]
fn huge_declares_a_gibibyte_and_streams_zeros() {
    let site = Site::start(&[]);
    let mut res = get(&quick(), &site.url("Chad__huge"));
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "image/jpeg");
    assert_eq!(res.body().content_length(), Some(1 << 30));
    let mut start = vec![0u8; 1 << 20];
    res.body_mut()
        .as_reader()
        .read_exact(&mut start)
        .expect("first MiB");
    assert!(start.iter().all(|&b| b == 0));
}

#[test]
fn gzip_bomb_is_small_on_the_wire_and_huge_inflated() {
    let site = Site::start(&[]);
    let (head, body) = raw_get(&site, "/images/pictures/flags96/Chad__gzip-bomb.jpg");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert_eq!(content_length(&head), body.len());
    assert!(body.len() < 400 * 1024, "{} bytes", body.len());
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");

    // ureq inflates transparently, and `with_config().limit(n)` counts the
    // compressed bytes (ureq 3.5.1: the limit sits under the decoder), so it
    // would let all 256 MiB through: a client must cap what the reader yields.
    let mut res = get(&quick(), &site.url("Chad__gzip-bomb"));
    assert_eq!(res.status(), 200);
    let cap = 1_000_000;
    let mut inflated = Vec::new();
    res.body_mut()
        .as_reader()
        .take(cap + 1)
        .read_to_end(&mut inflated)
        .expect("inflate");
    assert_eq!(inflated.len() as u64, cap + 1, "more than the cap");
    assert!(inflated.iter().all(|&b| b == 0));
}

#[test]
fn reset_and_short_body_stop_at_half_the_declared_length() {
    let site = Site::start(&[]);
    let full = flag_jpeg("Chad").len();
    for fault in ["reset", "short-body"] {
        let path = format!("/images/pictures/flags96/Chad__{fault}.jpg");
        let (head, body) = raw_get(&site, &path);
        assert!(head.starts_with("http/1.1 200"), "{fault}: {head}");
        assert_eq!(content_length(&head), full, "{fault}");
        assert_eq!(body.len(), full / 2, "{fault}");
        assert_eq!(body, flag_jpeg("Chad")[..full / 2], "{fault}");

        let mut res = get(&quick(), &site.url(&format!("Chad__{fault}")));
        assert_eq!(res.body().content_length(), Some(full as u64));
        let read = res.body_mut().read_to_vec();
        assert!(
            read.is_err(),
            "{fault}: read {:?} bytes",
            read.map(|v| v.len())
        );
    }
}

#[test]
fn timing_faults_stall_past_a_client_deadline() {
    let site = Site::start(&["--fault-ms", "300"]);

    // slow-headers: nothing within 150 ms, the flag after 300 ms.
    let started = Instant::now();
    let stalled = agent(0, Duration::from_millis(150))
        .get(site.url("Chad__slow-headers"))
        .call();
    assert!(
        matches!(stalled, Err(ureq::Error::Timeout(_))),
        "{stalled:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let started = Instant::now();
    let mut res = get(&quick(), &site.url("Chad__slow-headers"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        res.body_mut().read_to_vec().expect("body"),
        flag_jpeg("Chad")
    );

    // hang: no answer at all.
    let started = Instant::now();
    let hung = agent(0, Duration::from_millis(500))
        .get(site.url("Chad__hang"))
        .call();
    assert!(matches!(hung, Err(ureq::Error::Timeout(_))), "{hung:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // trickle: the headers at once, then 64 bytes every 75 ms.
    let started = Instant::now();
    let mut res = get(
        &agent(0, Duration::from_millis(800)),
        &site.url("Chad__trickle"),
    );
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(res.status(), 200);
    let full = flag_jpeg("Chad").len() as u64;
    assert_eq!(res.body().content_length(), Some(full));
    let mut got = Vec::new();
    let read = res.body_mut().as_reader().read_to_end(&mut got);
    assert!(read.is_err(), "whole body within the deadline");
    assert!(started.elapsed() < Duration::from_secs(2));
    // About 800 / 75 pieces of 64 bytes arrived before the deadline.
    assert!(!got.is_empty() && got.len() < 2048, "{} bytes", got.len());
}
