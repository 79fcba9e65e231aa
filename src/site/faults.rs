//! Fault modes of the built-in site: real-world server failures on demand, so
//! that tests (and people learning how clients fail) can reproduce them.
//!
//! A fault is chosen per name, by asking for `{Flag}__{fault}.jpg` (so one list
//! can mix healthy and faulty items), or for every flag with `serve --fault`;
//! the per-name suffix wins. [`resolve`] splits a requested name, [`respond`]
//! builds the faulty answer. Timing faults wait on tokio timers and bodies are
//! streams, so a thousand hanging or trickling clients cost no threads and
//! `huge` never allocates its gigabyte.
//!
//! hyper enforces HTTP/1.1 framing, so two classic faults cannot be built
//! here: a body longer than its Content-Length (hyper stops at the declared
//! length) and malformed chunked encoding (hyper writes the chunk framing).

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use super::FLAGS_PATH;

/// Separates a flag name from a fault in a requested name: `Chad__flaky`.
pub const SEPARATOR: &str = "__";

/// Query string of the target of a `redirect`: `--fault` does not apply to it,
/// or `serve --fault redirect` would be a redirect loop.
pub const REDIRECTED_QUERY: &str = "redirected";

/// One way for the site to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Waits `fault_ms` before sending the normal response.
    SlowHeaders,
    /// Never answers: holds the connection for an hour.
    Hang,
    /// Full Content-Length, then the body 64 bytes every `fault_ms / 4` ms.
    Trickle,
    /// Full Content-Length, half the body, then the body fails and hyper drops the connection.
    Reset,
    /// Full Content-Length, half the body, then the body ends and the connection is closed.
    ShortBody,
    /// The first request of a name gets 429 with `Retry-After: 1`, later ones succeed.
    Status429,
    /// The first request of a name gets 503 with an HTTP-date `Retry-After` 1 s ahead.
    Status503,
    /// The first two requests of a name get 500, later ones succeed.
    Flaky,
    /// A 1 GiB `image/jpeg` of zeros, streamed in 64 KiB pieces.
    Huge,
    /// `Content-Encoding: gzip` over 256 MiB of zeros (about 260 KB on the wire).
    GzipBomb,
    /// 302 to the healthy flag (the name without the fault suffix).
    Redirect,
    /// 302 to the very URL requested.
    RedirectLoop,
    /// 200 with `text/html`: an "error page" where a JPEG was expected.
    Html200,
    /// 307 to a raw listener (over TLS when the site is) that sends 256 bytes
    /// more than its Content-Length.
    LongBody,
    /// 307 to a raw listener (over TLS when the site is) that sends a chunked
    /// body with a malformed chunk size.
    BadChunked,
    /// 200 `image/jpeg` with the flag's length and JPEG start and end markers,
    /// but zeros in between: passes every download check, fails to decode.
    BadImage,
}

impl Fault {
    /// Every kind, in the order of the documentation.
    pub const ALL: [Fault; 16] = [
        Fault::SlowHeaders,
        Fault::Hang,
        Fault::Trickle,
        Fault::Reset,
        Fault::ShortBody,
        Fault::Status429,
        Fault::Status503,
        Fault::Flaky,
        Fault::Huge,
        Fault::GzipBomb,
        Fault::Redirect,
        Fault::RedirectLoop,
        Fault::Html200,
        Fault::LongBody,
        Fault::BadChunked,
        Fault::BadImage,
    ];

    /// The name used in `{Flag}__{fault}.jpg` and by `--fault`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::SlowHeaders => "slow-headers",
            Fault::Hang => "hang",
            Fault::Trickle => "trickle",
            Fault::Reset => "reset",
            Fault::ShortBody => "short-body",
            Fault::Status429 => "status-429",
            Fault::Status503 => "status-503",
            Fault::Flaky => "flaky",
            Fault::Huge => "huge",
            Fault::GzipBomb => "gzip-bomb",
            Fault::Redirect => "redirect",
            Fault::RedirectLoop => "redirect-loop",
            Fault::Html200 => "html-200",
            Fault::LongBody => "long-body",
            Fault::BadChunked => "bad-chunked",
            Fault::BadImage => "bad-image",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Fault::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFault(pub String);

impl fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fault {:?}; expected one of: ", self.0)?;
        let names: Vec<&str> = Fault::ALL.iter().map(|k| k.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

impl std::error::Error for UnknownFault {}

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        Fault::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

/// Faults applied to every flag request, as `serve --fault` sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultConfig {
    /// Fault of every flag request without a fault suffix. Defaults to none.
    pub fault: Option<Fault>,
    /// Wait of the timing faults (`slow-headers`, `trickle`), in milliseconds.
    /// Defaults to [`DEFAULT_FAULT_MS`].
    pub fault_ms: u64,
}

/// Default of [`FaultConfig::fault_ms`]: longer than a typical client's
/// per-read timeout in tests, short enough to watch by hand.
pub const DEFAULT_FAULT_MS: u64 = 2000;

impl Default for FaultConfig {
    fn default() -> FaultConfig {
        FaultConfig {
            fault: None,
            fault_ms: DEFAULT_FAULT_MS,
        }
    }
}

/// Splits a requested name (the file name without `.jpg`) into the flag to
/// serve and its fault, or `None` for a 404.
///
/// A name the site knows as a whole is served healthy even if it contains
/// `__`. Otherwise the text after the last `__` must be a fault and the text
/// before it a known flag: `Chad__bogus` is a 404 like any other missing file,
/// since a client asking for it gets the same answer from a real site.
pub fn resolve(requested: &str, known: impl Fn(&str) -> bool) -> Option<(&str, Option<Fault>)> {
    if known(requested) {
        return Some((requested, None));
    }
    let (flag, fault) = requested.rsplit_once(SEPARATOR)?;
    let fault = fault.parse().ok()?;
    known(flag).then_some((flag, Some(fault)))
}

/// How long `hang` holds a connection: "never" for any client, yet bounded so
/// that a forgotten connection does not live as long as the process.
const HANG: Duration = Duration::from_secs(3600);

/// Piece size of `trickle`.
const TRICKLE_PIECE: usize = 64;

/// Pause before `reset` and `short-body` cut the connection, so that hyper
/// flushes the first half first: an error in the same poll would discard it.
const CUT_PAUSE: Duration = Duration::from_millis(100);

/// Declared size of `huge`.
const HUGE_LEN: u64 = 1 << 30;

/// Piece size of `huge`, and a static buffer of zeros to serve them from.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Size of the content `gzip-bomb` decompresses to.
const BOMB_LEN: usize = 256 << 20;

/// `gzip-bomb`'s body, compressed on its first request and kept.
static BOMB: OnceLock<Bytes> = OnceLock::new();

/// One flag request to answer with a fault.
pub(super) struct Faulty<'a> {
    /// The flag served (a name the site knows).
    pub flag: &'a str,
    /// The name as requested, fault suffix included.
    pub requested: &'a str,
    /// The flag's JPEG.
    pub jpeg: &'a Bytes,
    /// Requests of `requested` so far, this one included.
    pub count: u64,
    /// Wait of the timing faults, in milliseconds.
    pub fault_ms: u64,
    /// Origin of the raw listener of the wire faults, as the client reaches
    /// it (`https://127.0.0.1:PORT`).
    pub wire: String,
}

/// The answer to a request for `req` under `fault`.
pub(super) async fn respond(fault: Fault, req: Faulty<'_>) -> Response {
    let healthy = || super::flag_response(req.jpeg.clone());
    match fault {
        Fault::SlowHeaders => {
            tokio::time::sleep(Duration::from_millis(req.fault_ms)).await;
            healthy()
        }
        Fault::Hang => {
            tokio::time::sleep(HANG).await;
            healthy()
        }
        Fault::Trickle => trickle(req.jpeg.clone(), req.fault_ms),
        Fault::Reset => cut(req.jpeg.clone(), true),
        Fault::ShortBody => cut(req.jpeg.clone(), false),
        Fault::Status429 if req.count <= 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            "too many requests, retry in 1 second\n",
        )
            .into_response(),
        Fault::Status503 if req.count <= 1 => {
            let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(1));
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, when)],
                "service unavailable, retry later\n",
            )
                .into_response()
        }
        Fault::Flaky if req.count <= 2 => {
            (StatusCode::INTERNAL_SERVER_ERROR, "simulated failure\n").into_response()
        }
        Fault::Status429 | Fault::Status503 | Fault::Flaky => healthy(),
        Fault::Huge => huge(),
        Fault::GzipBomb => gzip_bomb().await,
        Fault::Redirect => {
            let target = crate::input::list::item_url(FLAGS_PATH, req.flag);
            redirect(format!("{target}?{REDIRECTED_QUERY}"))
        }
        Fault::RedirectLoop => redirect(crate::input::list::item_url(FLAGS_PATH, req.requested)),
        Fault::LongBody | Fault::BadChunked => {
            let path = crate::input::list::item_url(FLAGS_PATH, req.requested);
            let target = format!("{}{path}", req.wire);
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]).into_response()
        }
        Fault::Html200 => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            ERROR_PAGE,
        )
            .into_response(),
        Fault::BadImage => super::flag_response(bad_image(req.jpeg)),
    }
}

/// The flag's bytes with everything between the start and end markers zeroed:
/// a download cannot tell it from the real thing, a decoder finds no frame.
fn bad_image(jpeg: &[u8]) -> Bytes {
    let mut bytes = jpeg.to_vec();
    let len = bytes.len();
    if len >= 4 {
        bytes[2..len - 2].fill(0);
    }
    Bytes::from(bytes)
}

const ERROR_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Oops</title></head>\n\
<body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>\n";

/// Headers of the whole JPEG, then `body` as it comes.
fn jpeg_stream<S>(full_len: usize, body: S) -> Response
where
    S: futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CONTENT_LENGTH, HeaderValue::from(full_len)),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn trickle(jpeg: Bytes, fault_ms: u64) -> Response {
    let period = Duration::from_millis((fault_ms / 4).max(1));
    let len = jpeg.len();
    // The first piece goes out with the headers; each later one after a pause.
    let pieces = stream::unfold((jpeg, 0usize), move |(jpeg, sent)| async move {
        if sent >= jpeg.len() {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(period).await;
        }
        let end = (sent + TRICKLE_PIECE).min(jpeg.len());
        Some((Ok(jpeg.slice(sent..end)), (jpeg, end)))
    });
    jpeg_stream(len, pieces)
}

/// Half the JPEG under its full Content-Length, then either a body error
/// (`fail`: hyper aborts the connection) or a plain end (hyper sees the body
/// short of its length and closes the connection).
fn cut(jpeg: Bytes, fail: bool) -> Response {
    let len = jpeg.len();
    let half = jpeg.slice(..len / 2);
    let pieces = stream::unfold(Some(half), move |half| async move {
        match half {
            Some(half) => Some((Ok(half), None)),
            None => {
                tokio::time::sleep(CUT_PAUSE).await;
                fail.then(|| (Err(io::Error::other("simulated connection reset")), None))
            }
        }
    });
    // After an error the stream is not polled again, so it needs no end state.
    jpeg_stream(len, pieces)
}

fn huge() -> Response {
    let pieces = HUGE_LEN / ZEROS.len() as u64;
    let zeros = stream::iter((0..pieces).map(|_| Ok::<_, io::Error>(Bytes::from_static(&ZEROS))));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CONTENT_LENGTH, HeaderValue::from(HUGE_LEN)),
        ],
        Body::from_stream(zeros),
    )
        .into_response()
}

async fn gzip_bomb() -> Response {
    // Compressing takes a fraction of a second: off the async workers, once.
    let body = tokio::task::spawn_blocking(|| BOMB.get_or_init(compress_zeros).clone()).await;
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("gzip-bomb failed: {e}\n"),
        )
            .into_response(),
    }
}

/// gzip of [`BOMB_LEN`] zeros, fed in pieces so they are never in memory whole.
fn compress_zeros() -> Bytes {
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use io::Write;

    let mut gz = GzEncoder::new(Vec::with_capacity(300 * 1024), Compression::best());
    let result = (0..BOMB_LEN / ZEROS.len())
        .try_for_each(|_| gz.write_all(&ZEROS))
        .and_then(|()| gz.finish());
    match result {
        Ok(compressed) => Bytes::from(compressed),
        // Writing into a Vec only fails if memory runs out, which aborts anyway.
        Err(e) => unreachable!("gzip into memory failed: {e}"),
    }
}

fn redirect(location: String) -> Response {
    // The location is an encoded path (ASCII), always a valid header value.
    match HeaderValue::try_from(location) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("bad redirect: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        matches!(name, "Chad" | "Cote__d_Ivoire" | "Fiji")
    }

    #[test]
    fn names_round_trip() {
        for fault in Fault::ALL {
            assert_eq!(fault.as_str().parse::<Fault>(), Ok(fault));
            assert_eq!(fault.to_string(), fault.as_str());
        }
        let err = "bogus".parse::<Fault>().unwrap_err();
        assert!(err.to_string().contains("slow-headers"), "{err}");
    }

    #[test]
    fn suffix_selects_the_fault() {
        assert_eq!(
            resolve("Chad__flaky", known),
            Some(("Chad", Some(Fault::Flaky)))
        );
        assert_eq!(
            resolve("Fiji__gzip-bomb", known),
            Some(("Fiji", Some(Fault::GzipBomb)))
        );
    }

    #[test]
    fn names_without_separator_are_healthy_or_missing() {
        assert_eq!(resolve("Chad", known), Some(("Chad", None)));
        assert_eq!(resolve("Atlantis", known), None);
        assert_eq!(resolve("", known), None);
    }

    #[test]
    fn unknown_suffix_or_flag_is_a_404() {
        assert_eq!(resolve("Chad__bogus", known), None);
        assert_eq!(resolve("Chad__", known), None);
        assert_eq!(
            resolve("Chad__Flaky", known),
            None,
            "names are case-sensitive"
        );
        assert_eq!(resolve("Atlantis__flaky", known), None);
        assert_eq!(resolve("__flaky", known), None);
    }

    #[test]
    fn known_names_with_separator_win_and_take_a_suffix() {
        assert_eq!(
            resolve("Cote__d_Ivoire", known),
            Some(("Cote__d_Ivoire", None))
        );
        assert_eq!(
            resolve("Cote__d_Ivoire__hang", known),
            Some(("Cote__d_Ivoire", Some(Fault::Hang)))
        );
    }

    #[test]
    fn bad_image_has_the_markers_but_does_not_decode() {
        let jpeg = crate::site::flag::flag_jpeg("Chad");
        let bad = bad_image(&jpeg);
        assert_eq!(bad.len(), jpeg.len());
        assert_eq!(
            (&bad[..2], &bad[bad.len() - 2..]),
            (&[0xFF, 0xD8][..], &[0xFF, 0xD9][..])
        );
        assert!(image::load_from_memory(&bad).is_err());
        assert!(image::load_from_memory(&jpeg).is_ok());
    }

    #[test]
    fn bomb_is_small_and_inflates_to_its_size() {
        use std::io::Read;
        let bomb = compress_zeros();
        assert!(bomb.len() < 400 * 1024, "{} bytes", bomb.len());
        let mut inflated = 0u64;
        let mut gz = flate2::read::GzDecoder::new(&bomb[..]);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = gz.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 0));
            inflated += n as u64;
        }
        assert_eq!(inflated, BOMB_LEN as u64);
    }
}
