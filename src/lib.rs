//! flagmaster downloads many small files and shows what serial code, a thread
//! pool and a pool of worker processes do for I/O-bound work.
//!
//! One fetch path, three transports: the code that fetches, saves, logs and
//! reports one item, and the code that hosts the threads running it, live in
//! the `flagmaster_worker` crate and are the same in every mode. [`master`]
//! only decides where the loops run (in this process, over crossbeam-channel,
//! or in N child processes, over ipc-channel) and folds their reports into a
//! [`report::RunReport`]. Worker processes are this same binary, re-executed
//! with a hidden subcommand. [`run`] tells a download from start to end.
//!
//! See `docs/architecture.md` for the whole picture.

// `unsafe` is allowed only in `os`, each block with its `SAFETY` comment.
#![deny(unsafe_code, clippy::undocumented_unsafe_blocks)]

pub mod bench;
pub mod cli;
pub mod completions;
pub mod config;
pub mod error;
pub mod input;
pub mod logs;
pub mod master;
#[allow(unsafe_code)]
mod os;
pub mod plan;
pub mod polite;
pub mod proxy;
pub mod race;
pub mod report;
pub mod run;
pub mod site;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use report::exit;

/// Parses the command line, runs, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    raise_fd_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    let result = match cli.command {
        Some(Command::Worker(args)) => {
            return match flagmaster_worker::child::run(&args.server, args.worker) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("flagmaster worker {}: {e}", args.worker);
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Serve(args)) => site::serve::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::MergeReports(args)) => report::merge::run(args),
        Some(Command::Logs(args)) => logs::run(args),
        Some(Command::Completions(args)) => completions::run(args.shell),
        Some(Command::Race(args)) => race::run(args),
        None => run::download(cli.run),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("flagmaster: {e}");
            ExitCode::from(exit::USAGE)
        }
    }
}

/// A run with 1000 connections holds about 2000 descriptors (sockets, files
/// being written), and the built-in site as many; the usual soft limit of 1024
/// would make connects fail. The hard limit is ours to use, so the soft one is
/// raised to it, as Go's runtime does. Worker processes inherit it.
fn raise_fd_limit() {
    os::raise_fd_limit();
}

/// Help and version go to stdout with status 0; a usage error is one line on
/// stderr with status 2 (clap's own rendering spans several lines).
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let rendered = e.render().to_string();
            let mut lines = rendered.lines().filter(|l| !l.trim().is_empty());
            let mut first = lines
                .next()
                .unwrap_or("usage error")
                .trim_start_matches("error: ")
                .to_string();
            // "the following required arguments were not provided:" names
            // them on the next line.
            if first.ends_with(':') {
                if let Some(what) = lines.next() {
                    first = format!("{first} {}", what.trim());
                }
            }
            // An invalid choice: clap lists the valid ones on a line of their own.
            if let Some(values) = rendered
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix("[possible values: "))
            {
                first = format!("{first} (expected one of: {}", values.trim_end_matches(']'));
                first.push(')');
            }
            eprintln!("flagmaster: {first}");
            ExitCode::from(exit::USAGE)
        }
    }
}
