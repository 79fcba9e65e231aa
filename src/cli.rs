//! Command-line definitions, and nothing else: clap types are turned into a
//! validated [`crate::config::RunConfig`] once, and nothing below sees clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "flagmaster",
    version,
    about = "Download many small files serially, with a thread pool, or with worker processes, \
             and compare what each buys for I/O-bound work.",
    after_help = "Without a subcommand, downloads every name of the list. \
                  By default the built-in DELAY site is started on 127.0.0.1, so no network is needed.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the built-in flag site (generated JPEGs) until interrupted.
    Serve(ServeArgs),
    /// Compare serial, threads, proc and hybrid on the same workload.
    Bench(BenchArgs),
    /// Run as a worker process of a master (internal).
    #[command(name = flagmaster_worker::child::SUBCOMMAND, hide = true)]
    Worker(WorkerArgs),
}

/// Who runs the worker loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One worker loop in the main thread.
    Serial,
    /// `--threads` worker threads in one process.
    Threads,
    /// `--procs` worker processes (each with `--threads` threads).
    Proc,
}

/// Which site to download from (the labels of Fluent Python's flags2 scripts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServerKind {
    /// Built-in site on 127.0.0.1, no delay.
    #[value(name = "LOCAL")]
    Local,
    /// Built-in site on 127.0.0.1 with 100-300 ms latency, like a real remote site.
    #[value(name = "DELAY")]
    Delay,
    /// As DELAY, and a quarter of the answers are 503 errors.
    #[value(name = "ERROR")]
    Error,
    /// The real flag site on the internet.
    #[value(name = "REMOTE")]
    Remote,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Who runs the worker loop.
    #[arg(long, value_enum, default_value_t = Mode::Proc)]
    pub mode: Mode,

    /// Worker processes in proc mode.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub procs: u32,

    /// Worker threads: the pool size in threads mode (default 8), threads inside
    /// each worker process in proc mode (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: Option<u32>,

    /// List of names, one per line; blank lines and '#' comments are ignored.
    /// Default: the built-in copy of flags.txt.
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,

    /// Take only the first N names.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,

    /// Site to download from [default: DELAY].
    #[arg(long, value_enum, ignore_case = true, conflicts_with = "base_url")]
    pub server: Option<ServerKind>,

    /// Download from this base URL instead ({base}/{name}.jpg).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// Directory the files are saved in.
    #[arg(long, value_name = "DIR", default_value = "flags")]
    pub dest: PathBuf,

    /// Directory of the per-worker logs and master.log (replaced on every run).
    #[arg(long, value_name = "DIR", default_value = "logs")]
    pub log_dir: PathBuf,

    /// Items handed to a worker at a time [default: items / (workers x 4), 1 to 32].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk_size: Option<u32>,

    /// Seconds one item may take, all attempts and back-off included.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_secs)]
    pub timeout: f64,

    /// Extra attempts for transient failures (connection errors, timeouts, 408, 429, 5xx).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,

    /// Largest body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_size: u64,

    /// Blur every downloaded image with a Gaussian of SIGMA pixels (0 < SIGMA <= 100),
    /// in the worker that fetched it; the blurred image replaces the download.
    #[arg(long, value_name = "SIGMA", value_parser = parse_sigma)]
    pub blur: Option<f32>,

    /// With --blur, keep the downloaded image and save the blurred one next to
    /// it as NAME.blur.jpg.
    #[arg(long)]
    pub keep_original: bool,

    /// Extra request header, 'Name: value' (repeatable), e.g. an API's
    /// 'Authorization: Client-ID ...'. Values never appear in logs or reports.
    #[arg(long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Print one JSON document instead of the text report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,

    /// Delay before every answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub delay_ms: u64,

    /// Extra random delay, 0 to MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub jitter_ms: u64,

    /// Share of requests answered with 503, from 0 to 1.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,

    /// Names to serve. Default: the built-in copy of flags.txt.
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,

    /// Fail every flag request this way: slow-headers, hang, trickle, reset,
    /// short-body, status-429, status-503, flaky, huge, gzip-bomb, redirect,
    /// redirect-loop, html-200, long-body, bad-chunked or bad-image. A request
    /// for {name}__{fault}.jpg gets that fault instead.
    #[arg(long, value_name = "KIND")]
    pub fault: Option<crate::site::Fault>,

    /// Wait of the slow-headers and trickle faults, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = crate::site::faults::DEFAULT_FAULT_MS)]
    pub fault_ms: u64,

    /// Size of the generated flags, WIDTHxHEIGHT in pixels (larger pictures make
    /// --blur CPU-bound).
    #[arg(long, value_name = "WxH", default_value = "96x64", value_parser = parse_image_size)]
    pub image_size: (u32, u32),
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Measured runs per setup, each after the setup's warm-up run.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    pub runs: u64,

    /// Items to download [default: the built-in list]; beyond it, made-up names
    /// the built-in site serves too.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub items: Option<u64>,

    /// Setups to measure, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "serial,threads,proc,hybrid"
    )]
    pub modes: Vec<String>,

    /// Worker processes of the proc setup.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub procs: u32,

    /// Threads of the threads setup.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: u32,

    /// Processes x threads of the hybrid setup.
    #[arg(long, value_name = "PxT", default_value = "4x8")]
    pub hybrid: String,

    /// Latency of the built-in site: a fixed delay, in milliseconds...
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub delay_ms: u64,

    /// ...plus a random 0 to MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub jitter_ms: u64,

    /// Measure against this site instead ({base}/{name}.jpg for the built-in list).
    #[arg(long, value_name = "URL", conflicts_with_all = ["delay_ms", "jitter_ms", "items"])]
    pub base_url: Option<String>,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,

    /// Print the table as markdown.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,

    /// Pass --blur SIGMA to every measured run: the CPU-bound comparison.
    #[arg(long, value_name = "SIGMA", value_parser = parse_sigma)]
    pub blur: Option<f32>,

    /// Size of the built-in site's flags, WIDTHxHEIGHT in pixels.
    #[arg(long, value_name = "WxH", default_value = "96x64", value_parser = parse_image_size,
          conflicts_with = "base_url")]
    pub image_size: (u32, u32),

    /// Also draw the medians, with min-max whiskers, as a bar chart in this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Name of the master's one-shot IPC server.
    #[arg(long)]
    pub server: String,
    /// This worker's number (1-based).
    #[arg(long)]
    pub worker: u32,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err("expected seconds, more than 0 and at most 86400".into()),
    }
}

/// Largest `--blur` sigma: beyond it every flag is a flat colour anyway, and
/// the kernel (about 6 sigma wide) costs time for nothing.
pub const MAX_SIGMA: f32 = 100.0;

fn parse_sigma(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_SIGMA => Ok(v),
        _ => Err(format!(
            "expected a sigma in pixels, more than 0 and at most {MAX_SIGMA}"
        )),
    }
}

/// `WxH` in pixels, each side 1 to [`crate::site::flag::MAX_SIDE`].
pub fn parse_image_size(s: &str) -> Result<(u32, u32), String> {
    let max = crate::site::flag::MAX_SIDE;
    let bad = || format!("expected WIDTHxHEIGHT in pixels, each 1 to {max}, e.g. 640x426");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
    };
    match (side(w), side(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(bad()),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a number from 0 to 1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn server_labels_ignore_case() {
        let cli = Cli::try_parse_from(["flagmaster", "--server", "local"]).unwrap();
        assert_eq!(cli.run.server, Some(ServerKind::Local));
    }

    #[test]
    fn blur_sigma_and_image_size() {
        let cli = Cli::try_parse_from(["flagmaster", "--blur", "2.5", "--keep-original"]).unwrap();
        assert_eq!((cli.run.blur, cli.run.keep_original), (Some(2.5), true));
        for bad in ["0", "-1", "100.5", "NaN", "inf", "x"] {
            assert!(
                Cli::try_parse_from(["flagmaster", "--blur", bad]).is_err(),
                "{bad}"
            );
        }
        assert_eq!(parse_image_size("640x426"), Ok((640, 426)));
        assert_eq!(parse_image_size("96X64"), Ok((96, 64)));
        for bad in ["640", "0x10", "10x0", "x", "99999x10", "axb"] {
            assert!(parse_image_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_workers_are_refused() {
        assert!(Cli::try_parse_from(["flagmaster", "--procs", "0"]).is_err());
        assert!(Cli::try_parse_from(["flagmaster", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["flagmaster", "--timeout", "0"]).is_err());
        assert!(
            Cli::try_parse_from(["flagmaster", "--server", "LOCAL", "--base-url", "x"]).is_err()
        );
    }
}
