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

/// The real flag site of the classic lesson.
pub const REMOTE_BASE: &str = "https://www.sciencekids.co.nz/images/pictures/flags96";

/// Connect budget for one attempt (capped by `--timeout`).
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Longest silence while reading a response before the attempt is cut.
const READ_TIMEOUT_MS: u64 = 10_000;
/// Bounds of the automatic chunk size.
const MAX_AUTO_CHUNK: usize = 32;

/// Where the files come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The built-in site, started inside the run on 127.0.0.1.
    Builtin(ServerKind),
    /// A site at this base URL (REMOTE or `--base-url`).
    Url { label: String, base: String },
}

#[derive(Debug)]
pub struct RunConfig {
    pub mode: Mode,
    /// Worker processes (1 unless proc mode).
    pub procs: u32,
    /// Threads per worker process, or the pool size in threads mode.
    pub threads: u32,
    pub names: Vec<String>,
    pub duplicates: Vec<String>,
    pub list_label: String,
    pub source: Source,
    pub dest: PathBuf,
    pub log_dir: PathBuf,
    pub chunk_size: usize,
    pub fetch: FetchSettings,
    pub json: bool,
}

impl RunConfig {
    pub fn from_args(args: RunArgs) -> Result<RunConfig, Error> {
        let (text, list_label) = match &args.list {
            Some(path) => (read_list(path)?, path.display().to_string()),
            None => (list::BUILTIN.to_string(), "built-in flags.txt".to_string()),
        };
        let mut parsed = list::parse(&text);
        if let Some(limit) = args.limit {
            parsed.names.truncate(limit);
        }
        if parsed.names.is_empty() {
            return Err(Error::EmptyList(list_label));
        }

        let source = match (&args.base_url, args.server.unwrap_or(ServerKind::Delay)) {
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
        if args.keep_original && args.blur.is_none() {
            return Err(Error::Usage(
                "--keep-original needs --blur SIGMA (it keeps the original next to the blurred copy)"
                    .into(),
            ));
        }
        check_dir_target("--dest", &args.dest)?;
        check_dir_target("--log-dir", &args.log_dir)?;

        let (procs, threads) = match args.mode {
            Mode::Serial => (1, 1),
            Mode::Threads => (1, args.threads.unwrap_or(8)),
            Mode::Proc => (args.procs, args.threads.unwrap_or(1)),
        };
        let workers = (procs * threads) as usize;
        let chunk_size = match args.chunk_size {
            Some(n) => n as usize,
            None => (parsed.names.len() / (workers * 4)).clamp(1, MAX_AUTO_CHUNK),
        };
        let env_proxy = match &source {
            Source::Builtin(_) => false,
            Source::Url { base, .. } => !is_loopback_url(base),
        };
        let timeout_ms = (args.timeout * 1000.0).round() as u64;
        Ok(RunConfig {
            mode: args.mode,
            procs,
            threads,
            names: parsed.names,
            duplicates: parsed.duplicates,
            list_label,
            source,
            dest: args.dest,
            log_dir: args.log_dir,
            chunk_size,
            fetch: FetchSettings {
                timeout_ms,
                connect_timeout_ms: CONNECT_TIMEOUT_MS.min(timeout_ms),
                read_timeout_ms: READ_TIMEOUT_MS.min(timeout_ms),
                retries: args.retries,
                max_size: args.max_size,
                env_proxy,
                pool_per_host: threads,
                headers: args
                    .headers
                    .iter()
                    .map(|h| parse_header(h))
                    .collect::<Result<_, _>>()?,
                blur: args.blur,
                keep_original: args.keep_original,
            },
            json: args.json,
        })
    }

    /// Worker loops that run at once.
    pub fn concurrency(&self) -> u32 {
        self.procs * self.threads
    }
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

fn is_loopback_url(url: &str) -> bool {
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
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:80/x"));
        assert!(is_loopback_url("http://localhost/x"));
        assert!(is_loopback_url("http://[::1]:8000/x"));
        assert!(!is_loopback_url(REMOTE_BASE));
    }
}
