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
use crate::input::checksums::Checksums;
use crate::input::rerun::Rerun;
use crate::input::shard::{self, Shard};
use crate::input::{self, url, Input};
use crate::polite::Politeness;
use crate::report::progress::Display;

/// The real flag site of the classic lesson.
pub const REMOTE_BASE: &str = "https://www.sciencekids.co.nz/images/pictures/flags96";

/// Connect budget for one attempt (capped by `--timeout`).
const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Longest silence while reading a response before the attempt is cut.
const READ_TIMEOUT_MS: u64 = 10_000;

/// Worker processes of proc mode without `--procs`.
const DEFAULT_PROCS: u32 = 8;
/// The pool of threads mode without `--threads`.
const DEFAULT_POOL: u32 = 8;

/// The server the items are fetched from (the items themselves are
/// [`crate::input::Input`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Server {
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
    /// Options given that the chosen mode does not use, as warnings.
    pub ignored: Vec<String>,
    pub list_label: String,
    pub server: Server,
    /// Serve the built-in site over HTTPS (`--tls`).
    pub tls: bool,
    pub dest: PathBuf,
    pub log_dir: PathBuf,
    /// `--chunk-size`; `None` for the automatic size (see [`crate::plan::Chunking`]).
    pub chunk_size: Option<usize>,
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
    /// `--checksums`: the SHA-256 each file must have.
    pub checksums: Option<Checksums>,
    /// `--manifest`: where to write the SHA-256 of every file saved.
    pub manifest: Option<PathBuf>,
}

impl RunConfig {
    pub fn from_args(args: RunArgs) -> Result<RunConfig, Error> {
        let (input, duplicates, list_label) = input::from_args(&args)?;
        let explicit_site = args.base_url.is_some() || args.server.is_some();
        let server = match (&args.base_url, args.server.unwrap_or(ServerKind::Delay)) {
            _ if !explicit_site && !input.uses_site() => Server::Direct,
            (Some(url), _) => Server::Url {
                label: "custom".into(),
                base: url::check_base_url(url)?,
            },
            (None, ServerKind::Remote) => Server::Url {
                label: "REMOTE".into(),
                base: REMOTE_BASE.into(),
            },
            (None, kind) => Server::Builtin(kind),
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
        let checksums = args.checksums.as_deref().map(Checksums::read).transpose()?;
        if args.tls && !matches!(server, Server::Builtin(_)) {
            return Err(Error::Usage(
                "--tls serves the built-in site over HTTPS: it needs --server LOCAL, DELAY or ERROR"
                    .into(),
            ));
        }
        let ca_pem = trusted_pem(args.cacert.as_deref(), std::env::var_os(SSL_CERT_FILE))?;
        check_dir_target("--dest", &args.dest)?;
        check_dir_target("--log-dir", &args.log_dir)?;

        let shard = shard::resolve(args.shard, args.shard_count, |name| {
            std::env::var(name).ok()
        })?;

        let (procs, threads) = match args.mode {
            Mode::Serial => (1, 1),
            Mode::Threads => (1, args.threads.unwrap_or(DEFAULT_POOL)),
            Mode::Proc => (
                args.procs.unwrap_or(DEFAULT_PROCS),
                args.threads.unwrap_or(1),
            ),
        };
        let ignored = ignored_options(&args);
        // Refined once the items are known (see `crate::plan::Plan::new`).
        let may_be_remote = match (&server, &input) {
            (Server::Builtin(_), _) => false,
            (Server::Url { base, .. }, _) => !url::is_loopback_url(base),
            (Server::Direct, Input::Listing(listing)) => !url::is_loopback_url(&listing.url),
            (Server::Direct, _) => true,
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
            ignored,
            list_label,
            server,
            tls: args.tls,
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
                proxy: crate::proxy::settings(
                    args.proxy.as_deref(),
                    args.noproxy.as_deref(),
                    may_be_remote,
                    |name| std::env::var(name).ok(),
                )?,
                headers: parse_headers(&args.headers)?,
                blur: args.blur,
                keep_original: args.keep_original,
                hash: args.manifest.is_some(),
                ca_pem,
                insecure: args.insecure,
            },
            polite: Politeness::new(args.max_rps, args.per_host, may_be_remote),
            json: args.json,
            display: Display::choose(args.quiet, args.verbose, args.json),
            quiet: args.quiet,
            rerun: Rerun::from_flags(args.skip_existing, args.if_changed),
            checksums,
            manifest: args.manifest,
        })
    }

    /// Worker loops that run at once.
    pub fn concurrency(&self) -> u32 {
        self.procs * self.threads
    }
}

/// Warnings for options the chosen mode has no use for: the run goes on
/// without them.
fn ignored_options(args: &RunArgs) -> Vec<String> {
    let mode = match args.mode {
        Mode::Serial => "serial",
        Mode::Threads => "threads",
        Mode::Proc => return Vec::new(),
    };
    let mut ignored = Vec::new();
    if args.procs.is_some() {
        ignored.push(format!(
            "--procs is for --mode proc; ignored in {mode} mode"
        ));
    }
    if args.threads.is_some() && args.mode == Mode::Serial {
        ignored.push("--threads is for --mode threads or proc; ignored in serial mode".into());
    }
    ignored
}

/// The environment variable naming a PEM file of trusted CAs (OpenSSL's
/// convention, which curl and most TLS clients follow).
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// The PEM certificates a run trusts besides the system's: `--cacert`'s and
/// `SSL_CERT_FILE`'s. A file that cannot be read or holds no certificate is
/// a set-up error, before anything is written.
fn trusted_pem(
    cacert: Option<&Path>,
    env_file: Option<std::ffi::OsString>,
) -> Result<Vec<u8>, Error> {
    let mut pem = Vec::new();
    let env_file = env_file.filter(|f| !f.is_empty()).map(PathBuf::from);
    for (what, path) in [("--cacert", cacert), (SSL_CERT_FILE, env_file.as_deref())] {
        let Some(path) = path else { continue };
        let bad = |why: String| Error::PemFile {
            what,
            path: path.to_path_buf(),
            why,
        };
        let bytes = fs::read(path).map_err(|e| bad(e.to_string()))?;
        if flagmaster_worker::http::pem_certificates(&bytes).is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        pem.extend_from_slice(&bytes);
        pem.push(b'\n');
    }
    Ok(pem)
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
/// `flagmaster_worker::http::OUTPUT_BUFFER`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "").unwrap();
        let err = trusted_pem(Some(&empty), None).unwrap_err().to_string();
        assert!(err.starts_with("cannot use --cacert "), "{err}");
        assert!(err.ends_with("no PEM certificate in it"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = trusted_pem(None, Some(missing.into()))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot use SSL_CERT_FILE "), "{err}");
        assert!(trusted_pem(None, Some("".into())).unwrap().is_empty());
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
}
