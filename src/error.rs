//! The set-up errors of a run. Anything that goes wrong with one item is an
//! outcome, not an error; these are the failures that stop a run before or
//! outside the downloads, and all of them exit with status 2.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read list {}: {source}", path.display())]
    ReadList {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} has nothing to download")]
    EmptyList(String),
    #[error("bad --base-url {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("{what} {} is not a directory", path.display())]
    NotADirectory { what: &'static str, path: PathBuf },
    #[error("cannot write to {what} {}: {source}", path.display())]
    Unwritable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the built-in site on {addr}: {source}")]
    Site {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// A PEM file (`--cacert`, `SSL_CERT_FILE`, `serve --cert`/`--key`) that
    /// cannot be read or holds nothing usable.
    #[error("cannot use {what} {}: {why}", path.display())]
    PemFile {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("cannot use listing {url}: {why}")]
    Listing { url: String, why: String },
    #[error("cannot start workers: {0}")]
    Spawn(String),
    /// Anything else the run needs before it starts (watching signals).
    #[error("{0}")]
    Setup(String),
    /// `flagmaster logs`: a log directory that is missing, unreadable, or
    /// holds no flagmaster log.
    #[error("cannot read log dir {}: {why}", path.display())]
    LogDir { path: PathBuf, why: String },
    #[error("bench: {0}")]
    Bench(String),
}
