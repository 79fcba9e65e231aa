//! The validated configuration of a download run, built once from the CLI.
//!
//! Everything a user can get wrong is checked here, before anything is written:
//! a bad list, URL or destination ends the run with one line and status 2 and
//! leaves no directory or log behind.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use flagmaster_worker::protocol::FetchSettings;

use crate::cli::{Mode, RunArgs, ServerKind};
use crate::error::Error;
use crate::list;
use crate::polite::Politeness;
use crate::progress::Display;
use crate::rerun::Rerun;
use crate::shard::{self, Shard};
use crate::source::{self, Input, Listing, Template};

/// The real flag site of the classic lesson.
pub const REMOTE_BASE: &str = "https://www.sciencekids.co.nz/images/pictures/flags96";

/// Connect budget for one attempt (capped by `--timeout`).
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Longest silence while reading a response before the attempt is cut.
const READ_TIMEOUT_MS: u64 = 10_000;
/// The largest automatic chunk.
const MAX_AUTO_CHUNK: usize = 32;

/// Where the files come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The built-in site, started inside the run on 127.0.0.1.
    Builtin(ServerKind),
    /// A site at this base URL (REMOTE or `--base-url`).
    Url { label: String, base: String },
    /// No site: the items carry full URLs (`--urls`, an absolute `--listing`
    /// or `--template`).
    Direct,
}

#[derive(Debug)]
pub struct RunConfig {
    pub mode: Mode,
    /// Worker processes (1 unless proc mode).
    pub procs: u32,
    /// Threads per worker process, or the pool size in threads mode.
    pub threads: u32,
    /// Pin each worker process to one CPU (`--pin`, proc mode only).
    pub pin: bool,
    pub input: Input,
    /// Take only the first N items.
    pub limit: Option<usize>,
    /// Entries that repeated an earlier one and were dropped.
    pub duplicates: Vec<String>,
    pub list_label: String,
    pub source: Source,
    pub dest: PathBuf,
    pub log_dir: PathBuf,
    /// `--chunk-size`; `None` for the automatic size, see [`RunConfig::chunk_size`].
    chunk_size: Option<usize>,
    /// The share of the list this run takes (`--shard` or a scheduler's array).
    pub shard: Option<Shard>,
    pub fetch: FetchSettings,
    /// `--max-rps` and `--per-host`, with the default for remote sites.
    pub polite: Politeness,
    pub json: bool,
    pub display: Display,
    /// No notes before the run (`--quiet`).
    pub quiet: bool,
    /// What to do about files already in the destination.
    pub rerun: Rerun,
}

impl RunConfig {
    pub fn from_args(args: RunArgs) -> Result<RunConfig, Error> {
        let (input, duplicates, list_label) = input(&args)?;
        let explicit_site = args.base_url.is_some() || args.server.is_some();
        let source = match (&args.base_url, args.server.unwrap_or(ServerKind::Delay)) {
            _ if !explicit_site && !input.uses_site() => Source::Direct,
            (Some(url), _) => Source::Url {
                label: "custom".into(),
                base: check_base_url(url)?,
            },
            (None, ServerKind::Remote) => Source::Url {
                label: "REMOTE".into(),
                base: REMOTE_BASE.into(),
            },
            (None, kind) => Source::Builtin(kind),
        };

        // Checked here rather than by clap, whose message for a missing
        // companion option spans several lines.
        if args.pin && args.mode != Mode::Proc {
            return Err(Error::Usage(
                "--pin pins worker processes to CPUs: it needs --mode proc".into(),
            ));
        }
        if args.keep_original && args.blur.is_none() {
            return Err(Error::Usage(
                "--keep-original needs --blur SIGMA (it keeps the original next to the blurred copy)"
                    .into(),
            ));
        }
        check_dir_target("--dest", &args.dest)?;
        check_dir_target("--log-dir", &args.log_dir)?;

        let shard = shard::resolve(args.shard, args.shard_count, |name| {
            std::env::var(name).ok()
        })?;

        let (procs, threads) = match args.mode {
            Mode::Serial => (1, 1),
            Mode::Threads => (1, args.threads.unwrap_or(8)),
            Mode::Proc => (args.procs, args.threads.unwrap_or(1)),
        };
        // Refined once the items are known (see `source::all_loopback`).
        let env_proxy = match (&source, &input) {
            (Source::Builtin(_), _) => false,
            (Source::Url { base, .. }, _) => !is_loopback_url(base),
            (Source::Direct, Input::Listing(listing)) => !is_loopback_url(&listing.url),
            (Source::Direct, _) => true,
        };
        let timeout_ms = (args.timeout * 1000.0).round() as u64;
        Ok(RunConfig {
            mode: args.mode,
            procs,
            threads,
            pin: args.pin,
            input,
            limit: args.limit,
            duplicates,
            list_label,
            source,
            dest: args.dest,
            log_dir: args.log_dir,
            chunk_size: args.chunk_size.map(|n| n as usize),
            shard,
            fetch: FetchSettings {
                timeout_ms,
                connect_timeout_ms: CONNECT_TIMEOUT_MS.min(timeout_ms),
                read_timeout_ms: READ_TIMEOUT_MS.min(timeout_ms),
                retries: args.retries,
                max_size: args.max_size,
                env_proxy,
                headers: parse_headers(&args.headers)?,
                blur: args.blur,
                keep_original: args.keep_original,
            },
            polite: Politeness::new(args.max_rps, args.per_host, env_proxy),
            json: args.json,
            display: Display::choose(args.quiet, args.verbose, args.json),
            quiet: args.quiet,
            rerun: Rerun::from_flags(args.skip_existing, args.if_changed),
        })
    }

    /// Shrinks `procs` x `threads` to what `items` can keep busy (see
    /// [`fit_layout`]); returns the layout asked for when it was shrunk. With
    /// a fixed `--chunk-size` a loop takes a whole chunk, so only as many
    /// loops as there are chunks can have work.
    pub fn fit_to(&mut self, items: usize) -> Option<(u32, u32)> {
        let units = match self.chunking() {
            Chunking::Fixed(n) => items.div_ceil(n.max(1)),
            Chunking::Guided { .. } => items,
        };
        let asked = (self.procs, self.threads);
        (self.procs, self.threads) = fit_layout(self.procs, self.threads, units);
        (asked != (self.procs, self.threads)).then_some(asked)
    }

    /// Worker loops that run at once.
    pub fn concurrency(&self) -> u32 {
        self.procs * self.threads
    }

    /// How items are handed out: `--chunk-size` as given, or guided.
    pub fn chunking(&self) -> Chunking {
        match self.chunk_size {
            Some(n) => Chunking::Fixed(n),
            None => Chunking::Guided {
                max: MAX_AUTO_CHUNK,
                loops: self.concurrency() as usize,
            },
        }
    }
}

/// The layout that runs `items` with `procs` x `threads` asked for: no more
/// processes than items, and no more threads in each than its share of them.
///
/// A worker loop with nothing to fetch still costs its start: about 1 ms of
/// CPU per worker process and 25-35 us per thread, on the same cores as the
/// loops that do have work. A 1-file run with `--procs 8 --threads 32` took
/// 19-20 ms against 2 ms serially; fitted (1 x 1), 4 ms. Processes are kept
/// before threads: `--procs N` is the comparison a user asked to see, with one
/// log per process, and only fewer items than processes takes one away.
pub fn fit_layout(procs: u32, threads: u32, items: usize) -> (u32, u32) {
    let items = u32::try_from(items.max(1)).unwrap_or(u32::MAX);
    let procs = procs.min(items);
    (procs, threads.min(items.div_ceil(procs.max(1))))
}

/// How many items a worker gets per `Want`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunking {
    /// Always this many (`--chunk-size`).
    Fixed(usize),
    /// Guided self-scheduling: a share of what is left, `remaining / (2 x
    /// loops)`, between 1 and `max`. Chunks shrink as the queue drains, so
    /// the last ones are single items and no worker loop is left holding a
    /// long chunk while the others idle; a fixed size that does not divide the
    /// work evenly costs up to a whole chunk of latency at the tail.
    Guided { max: usize, loops: usize },
}

impl Chunking {
    /// The size of the next chunk when `remaining` items are queued.
    pub fn next(self, remaining: usize) -> usize {
        match self {
            Chunking::Fixed(n) => n.max(1),
            Chunking::Guided { max, loops } => remaining.div_ceil(2 * loops.max(1)).clamp(1, max),
        }
    }
}

/// What to download, the entries dropped as repeats, and a label for it.
fn input(args: &RunArgs) -> Result<(Input, Vec<String>, String), Error> {
    if let Some(path) = &args.urls {
        let label = path.display().to_string();
        let (urls, repeats) = source::parse_urls(&read_list(path)?, &label)?;
        if urls.is_empty() || args.limit == Some(0) {
            return Err(Error::EmptyList(format!("URL file {label}")));
        }
        return Ok((Input::Urls(urls), repeats, label));
    }
    if let Some(url) = &args.listing {
        let listing = Listing::new(url, args.pick.as_deref(), &args.types)?;
        if args.limit == Some(0) {
            return Err(Error::EmptyList(format!("listing {url}")));
        }
        return Ok((
            Input::Listing(listing),
            Vec::new(),
            format!("listing {url}"),
        ));
    }
    let (text, label) = match &args.list {
        Some(path) => (read_list(path)?, path.display().to_string()),
        None => (list::BUILTIN.to_string(), "built-in flags.txt".to_string()),
    };
    let mut parsed = list::parse(&text);
    if let Some(limit) = args.limit {
        parsed.names.truncate(limit);
    }
    if parsed.names.is_empty() {
        return Err(Error::EmptyList(format!("list {label}")));
    }
    let template = match &args.template {
        Some(t) => Template::parse(t)?,
        None => Template::default(),
    };
    let input = Input::Names {
        names: parsed.names,
        template,
    };
    Ok((input, parsed.duplicates, label))
}

/// Parses `Name: value`. The error names the header but never repeats the
/// value, which may be a secret.
pub fn parse_header(header: &str) -> Result<(String, String), Error> {
    let (name, value) = header
        .split_once(':')
        .ok_or_else(|| Error::Usage("bad --header: expected 'Name: value'".into()))?;
    let (name, value) = (name.trim(), value.trim());
    if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(Error::Usage(format!("bad --header name {name:?}")));
    }
    if ureq::http::HeaderValue::from_str(value).is_err() {
        return Err(Error::Usage(format!("bad --header value for {name}")));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Room for `--header`s in a request head: the worker's output buffer holds
/// the whole head (request line, our own headers, these), see
/// `flagmaster_worker::fetch::OUTPUT_BUFFER`.
const MAX_HEADER_BYTES: usize = 8 * 1024;

fn parse_headers(headers: &[String]) -> Result<Vec<(String, String)>, Error> {
    let parsed: Vec<(String, String)> = headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<_, _>>()?;
    let bytes: usize = parsed.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(Error::Usage(format!(
            "--header values take {bytes} bytes; at most {MAX_HEADER_BYTES} fit in a request"
        )));
    }
    Ok(parsed)
}

/// Reads a list file as UTF-8 text.
pub fn read_list(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|source| Error::ReadList {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| Error::ReadList {
        path: path.to_path_buf(),
        source: std::io::Error::new(ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// Accepts `http://` and `https://` URLs with a host, and returns the URL
/// without a trailing slash.
pub fn check_base_url(url: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    if !url.contains("://") {
        return Err(bad("missing http:// or https://"));
    }
    let uri: ureq::http::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(_) => return Err(bad("only http and https are supported")),
        None => return Err(bad("missing http:// or https://")),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => {}
        _ => return Err(bad("missing host")),
    }
    if uri.query().is_some() {
        return Err(bad("a base URL takes no query"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

pub fn is_loopback_url(url: &str) -> bool {
    let host = url
        .parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()));
    match host.as_deref() {
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A directory we will create or write into must not be a file, and its nearest
/// existing ancestor must be a directory. Writability is checked when it is created.
fn check_dir_target(what: &'static str, path: &Path) -> Result<(), Error> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotADirectory {
            what,
            path: path.to_path_buf(),
        }),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            let mut ancestor = path.parent();
            while let Some(dir) = ancestor {
                if dir.as_os_str().is_empty() {
                    return Ok(());
                }
                match fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => return Ok(()),
                    Ok(_) => {
                        return Err(Error::NotADirectory {
                            what,
                            path: dir.to_path_buf(),
                        })
                    }
                    Err(_) => ancestor = dir.parent(),
                }
            }
            Ok(())
        }
        Err(source) => Err(Error::Unwritable {
            what,
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates `path` if needed and proves it writable with a temporary file.
pub fn prepare_dir(what: &'static str, path: &Path) -> Result<(), Error> {
    let unwritable = |source| Error::Unwritable {
        what,
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(path).map_err(unwritable)?;
    tempfile::Builder::new()
        .prefix(".flagmaster-probe")
        .tempfile_in(path)
        .map(drop)
        .map_err(unwritable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_fits_the_items() {
        // Enough items: as asked.
        assert_eq!(fit_layout(8, 32, 2000), (8, 32));
        assert_eq!(fit_layout(8, 32, 256), (8, 32));
        // Fewer: processes kept while each has an item, threads shrunk first.
        assert_eq!(fit_layout(8, 32, 195), (8, 25));
        assert_eq!(fit_layout(3, 4, 7), (3, 3));
        assert_eq!(fit_layout(1, 256, 3), (1, 3));
        assert_eq!(fit_layout(8, 1, 5), (5, 1));
        assert_eq!(fit_layout(8, 32, 1), (1, 1));
        // Nothing to fetch (a re-run that skips everything) starts nothing,
        // but the layout stays valid.
        assert_eq!(fit_layout(8, 32, 0), (1, 1));
    }

    #[test]
    fn guided_chunks_shrink_to_single_items_at_the_tail() {
        let guided = Chunking::Guided {
            max: 32,
            loops: 100,
        };
        assert_eq!(guided.next(20_000), 32, "capped");
        assert_eq!(guided.next(3_000), 15);
        assert_eq!(guided.next(150), 1);
        assert_eq!(guided.next(1), 1);
        // Handing out 20000 items to 100 loops: the last chunks are 1 item.
        let (mut left, mut sizes) = (20_000, Vec::new());
        while left > 0 {
            let n = guided.next(left).min(left);
            sizes.push(n);
            left -= n;
        }
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "never grows");
        assert_eq!(sizes.iter().rev().take(100).max(), Some(&1));
        assert_eq!(Chunking::Fixed(7).next(3), 7);
        assert_eq!(Chunking::Fixed(0).next(3), 1);
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            check_base_url("http://127.0.0.1:8000/images/").unwrap(),
            "http://127.0.0.1:8000/images"
        );
        assert!(check_base_url("https://example.org/x").is_ok());
        for bad in [
            "",
            "example.org/x",
            "ftp://h/x",
            "http://",
            "http://h/x?y=1",
            "not a url",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("Authorization:  Client-ID abc ").unwrap(),
            ("Authorization".to_string(), "Client-ID abc".to_string())
        );
        let err = parse_header("Bad Name: secret").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        let err = parse_header("X-Key: sec\nret").unwrap_err().to_string();
        assert!(!err.contains("sec"), "{err}");
        assert!(parse_header("no colon").is_err());
    }

    #[test]
    fn remote_sites_get_the_default_per_host_cap() {
        use clap::Parser;
        let polite = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from([&["flagmaster"][..], args].concat())
                .expect("valid arguments");
            RunConfig::from_args(cli.run).expect("valid config").polite
        };
        let remote = polite(&["--server", "REMOTE"]);
        assert!(remote.remote && remote.default_per_host);
        assert_eq!(remote.limits.per_host, Some(crate::polite::REMOTE_PER_HOST));
        let custom = polite(&["--base-url", "https://example.org/f", "--per-host", "2"]);
        assert!(custom.remote && !custom.default_per_host);
        assert_eq!(custom.limits.per_host, Some(2));
        let local = polite(&["--server", "LOCAL", "--max-rps", "5"]);
        assert!(!local.remote);
        assert_eq!(local.limits.per_host, None);
        assert_eq!(local.limits.max_rps, Some(5.0));
        let loopback = polite(&["--base-url", "http://127.0.0.1:9/f"]);
        assert!(!loopback.limits.any());
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:80/x"));
        assert!(is_loopback_url("http://localhost/x"));
        assert!(is_loopback_url("http://[::1]:8000/x"));
        assert!(!is_loopback_url(REMOTE_BASE));
    }
}
