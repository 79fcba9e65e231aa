//! The messages between the master and its workers.
//!
//! One contract, two transports: in threads mode these values travel over
//! crossbeam channels, in proc mode over ipc-channel (serialized with postcard,
//! so no untagged enums and no `serde_json::Value` in here). Messages going up to
//! the master are [`Event`]s, messages going down to a worker are [`Command`]s.

use std::path::PathBuf;

use ipc_channel::ipc::IpcSender;
use serde::{Deserialize, Serialize};

use crate::digest::HexDigest;

/// One thing to download.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Item {
    /// Position in the list, unique within a run; reports refer to items by it.
    pub index: u32,
    /// The entry as the list gave it (`United_States`).
    pub name: String,
    /// The full, percent-encoded URL to fetch.
    pub url: String,
    /// The file name to save under inside the destination directory.
    pub file: String,
    /// `file` has no extension yet: the worker adds the one of the response's
    /// Content-Type (`.jpg` for `image/jpeg`), as for Picsum's `/id/0/200/300`.
    pub ext_from_type: bool,
    /// Set on a conditional re-run (`--if-changed`) when the file is already
    /// in the destination: the request asks the server to answer 304 if the
    /// file has not changed since.
    pub validators: Option<Validators>,
    /// The SHA-256 the body must have (`--checksums`); `None`: unchecked.
    #[serde(default)]
    pub sha256: Option<crate::digest::Sha256Digest>,
}

impl Item {
    /// Item `index` named and saved as `file`, with no URL, for tests.
    #[doc(hidden)]
    pub fn for_test(index: u32, file: &str) -> Item {
        Item {
            index,
            name: file.into(),
            url: String::new(),
            file: file.into(),
            ext_from_type: false,
            validators: None,
            sha256: None,
        }
    }
}

/// What a conditional request sends: `If-None-Match` with the ETag and
/// `If-Modified-Since` with the date, whichever is known.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    /// An HTTP date: the server's `Last-Modified`, or the file's mtime.
    pub last_modified: Option<String>,
}

/// How an item ended. Every item ends as exactly one of these.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Downloaded and saved.
    Ok,
    /// The server answered 404 or 410.
    NotFound,
    /// Anything else; the report carries a short reason.
    Error,
    /// Not downloaded, because the file in the destination is already good:
    /// reason `exists` (`--skip-existing`) or `not modified` (a 304 answer
    /// to a conditional request, `--if-changed`). A success.
    Skipped,
}

impl Status {
    /// The label used in logs and reports.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotFound => "NOT_FOUND",
            Status::Error => "ERROR",
            Status::Skipped => "SKIPPED",
        }
    }
}

/// What a worker reports for one item, after its last attempt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ItemReport {
    pub index: u32,
    pub name: String,
    pub status: Status,
    /// HTTP status code of the last attempt, if a response arrived.
    pub http: Option<u16>,
    /// Bytes saved to disk (0 unless `Ok`; 0 for `Skipped`, nothing was downloaded).
    pub bytes: u64,
    /// Milliseconds spent on the item, all attempts and back-off included.
    pub ms: u64,
    pub attempts: u32,
    /// Short reason for `Error`, `NotFound` and `Skipped`, e.g. `HTTP 503`,
    /// `timeout` or `not modified`.
    pub reason: Option<String>,
    /// CPU milliseconds the worker thread spent decoding, blurring,
    /// re-encoding and writing the image (`--blur`), when that stage ran.
    pub blur_ms: Option<u64>,
    /// The body's size as downloaded, when the blur stage wrote a file of
    /// another size (`bytes`); `None` when the two are the same.
    #[serde(default)]
    pub fetched: Option<u64>,
    /// The worker (1-based) and the thread inside it (0-based) that handled it.
    pub worker: u32,
    pub thread: u32,
    /// The `ETag` and `Last-Modified` of the last response (200 or 304), which
    /// the master records for the next conditional re-run.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The SHA-256 (hex) of the file saved, computed as it was written
    /// (with `--blur`, of the blurred file; with `--keep-original`, of the
    /// original), when the run hashes (`--checksums`, `--manifest`).
    #[serde(default)]
    pub sha256: Option<Box<HexDigest>>,
    /// With `--keep-original`, the SHA-256 (hex) of the blurred copy.
    #[serde(default)]
    pub blurred_sha256: Option<Box<HexDigest>>,
    /// The file's name in the destination, when it may not be the item's
    /// `file` (the worker added the extension of the Content-Type, or a
    /// re-run kept a file found under such a name), and whenever the run
    /// hashes: the manifest is written from the reports alone.
    #[serde(default)]
    pub saved_as: Option<String>,
    /// The item could not be saved, or was not started, because the
    /// destination's file system is full (`ENOSPC`, `EDQUOT`): the master
    /// hands out no more work.
    #[serde(default)]
    pub disk_full: bool,
}

impl ItemReport {
    /// The report of an item that ended as `status` for `reason` without a
    /// request or a worker: the base of every other report.
    pub fn without_request(item: &Item, status: Status, reason: Option<&str>) -> ItemReport {
        ItemReport {
            index: item.index,
            name: item.name.clone(),
            status,
            http: None,
            bytes: 0,
            ms: 0,
            attempts: 0,
            reason: reason.map(str::to_string),
            blur_ms: None,
            fetched: None,
            worker: 0,
            thread: 0,
            etag: None,
            last_modified: None,
            sha256: None,
            blurred_sha256: None,
            saved_as: None,
            disk_full: false,
        }
    }

    /// The report of an item that no worker finished: an ERROR with `reason`.
    pub fn unfinished(item: &Item, reason: &str) -> ItemReport {
        ItemReport::without_request(item, Status::Error, Some(reason))
    }

    /// A report of item `index` named `N{index}`, for tests.
    #[doc(hidden)]
    pub fn for_test(index: u32, status: Status, bytes: u64) -> ItemReport {
        let item = Item::for_test(index, &format!("N{index}"));
        ItemReport {
            http: Some(200),
            bytes,
            ms: 1,
            attempts: 1,
            worker: 1,
            ..ItemReport::without_request(&item, status, None)
        }
    }
}

/// A worker's own summary, sent once when it has no more work; its log's
/// `worker_summary` line says the same.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerSummary {
    pub items: u32,
    /// `items` by outcome.
    pub ok: u32,
    pub not_found: u32,
    pub error: u32,
    pub skipped: u32,
    /// Attempts beyond the first, summed over the items.
    pub retries: u32,
    pub bytes: u64,
    /// Seconds its loops spent on items, summed over its threads.
    pub busy_secs: f64,
    /// Seconds its loops spent waiting for a chunk, summed over its threads.
    pub idle_secs: f64,
    /// Seconds from the worker's start to its end, measured by the worker
    /// (`wall_secs` in its log).
    pub secs: f64,
    /// Peak resident memory of the worker's process, in KiB (see
    /// [`crate::peak_rss_kb`]); `None` where it cannot be read.
    pub peak_rss_kb: Option<u64>,
}

/// Worker to master.
#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    /// First message of a worker process (proc mode only): who it is and the
    /// sender the master uses to talk back.
    Hello(Hello),
    /// A thread of this worker is idle and wants a chunk. Every `Want` is
    /// answered by exactly one `Chunk` or `Done`.
    Want { thread: u32 },
    /// Items are finished, in the order they finished: one at a time from a
    /// loop in the master, batched by a worker process's reporter thread.
    Items(Vec<ItemReport>),
    /// The worker has stopped asking for work; nothing follows.
    Finished(WorkerSummary),
}

/// The greeting of a worker process.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub worker: u32,
    pub pid: u32,
    pub commands: IpcSender<Command>,
}

/// Master to worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum Command {
    /// Settings for a worker process; the first command it gets (proc mode only).
    /// Boxed so that a `Command` is 32 bytes, not 176: threads mode gives every
    /// worker thread a channel of them, whose first send allocates a block of
    /// 31 slots, and at 256 threads those blocks were about 400 page faults.
    Setup(Box<WorkerSetup>),
    /// Items to download, answering a `Want`.
    Chunk(Vec<Item>),
    /// No more work for the thread that asked.
    Done,
    /// The run is interrupted: start no new item, abandon the ones in flight.
    Stop,
}

/// Everything a worker process needs to know, sent over IPC rather than on its
/// command line so that secrets in headers never show up in `ps`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSetup {
    pub worker: u32,
    /// Threads inside this worker process (hybrid procs x threads when > 1).
    pub threads: u32,
    pub dest: PathBuf,
    /// This worker's log file; the master already created it and made it the
    /// worker's stderr, so it is opened for appending.
    pub log: PathBuf,
    pub fetch: FetchSettings,
    /// The run's politeness region (`--max-rps`, `--per-host`), which the
    /// worker maps to share the caps with every other worker; `None`: no cap.
    pub polite: Option<PathBuf>,
    /// The CPU to pin this worker to (`--pin`), before it starts any thread.
    pub cpu: Option<usize>,
    /// The first chunk of each thread (fewer when the list is short). Handed
    /// out with the setup so that every thread starts at once, rather than
    /// after a `Want` that the master answers only once every worker is up.
    pub first_chunks: Vec<Vec<Item>>,
}

/// How a worker talks HTTP. Each field documents its default, which lives in
/// the CLI.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FetchSettings {
    /// Budget for one item, all attempts and back-off included.
    pub timeout_ms: u64,
    /// Budget for establishing a connection (capped by `timeout_ms`).
    pub connect_timeout_ms: u64,
    /// Longest wait for any single read of the response, so a stalled body is cut.
    pub read_timeout_ms: u64,
    /// Extra attempts for transient failures (connection errors, timeouts, 408, 429, 5xx).
    pub retries: u32,
    /// Largest body accepted, in bytes.
    pub max_size: u64,
    /// Which proxy each request goes through (`--proxy`, `--noproxy`, the
    /// environment), as the master decided. Defaults to none.
    pub proxy: crate::proxy::ProxySettings,
    /// Extra request headers (`--header`), e.g. `Authorization`. Never logged.
    pub headers: Vec<(String, String)>,
    /// Gaussian blur applied to each saved image (`--blur SIGMA`), if any.
    pub blur: Option<f32>,
    /// With `blur`, keep the downloaded file and write the blurred one next to it.
    pub keep_original: bool,
    /// Hash every saved file and report its SHA-256 (`--manifest`); items
    /// with an expected digest are hashed anyway. Defaults to off, which
    /// costs nothing.
    pub hash: bool,
    /// PEM certificates trusted besides the system's: `--cacert`,
    /// `SSL_CERT_FILE` and the CA of a built-in site served over TLS, read
    /// and checked by the master. Empty by default: the system's alone.
    pub ca_pem: Vec<u8>,
    /// Certificates are not verified at all (`--insecure`). Off by default.
    pub insecure: bool,
}
