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
    /// Merge the --json reports of shards (or of any runs) into one report.
    MergeReports(MergeArgs),
    /// Read the logs of runs: per-worker figures, the slowest attempts,
    /// failures, retries, lost workers; --timeline draws them.
    Logs(LogsArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Show the lesson's race: a shared counter that loses updates, and two fixes.
    Race(RaceArgs),
    /// Run as a worker process of a master (internal).
    #[command(name = flagmaster_worker::child::SUBCOMMAND, hide = true)]
    Worker(WorkerArgs),
}

/// Who runs the worker loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// One worker loop: one item at a time.
    Serial,
    /// A pool of --threads threads in one process.
    Threads,
    /// --procs worker processes, each with --threads threads.
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

/// Headings of `--help`, so that some twenty options read as four groups.
const CONCURRENCY: &str = "Concurrency";
const SOURCE: &str = "Source";
const FILES: &str = "Output and files";
const HTTP: &str = "HTTP";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Who runs the worker loop: the main thread, a thread pool, or worker processes.
    #[arg(long, value_enum, default_value_t = Mode::Proc, help_heading = CONCURRENCY)]
    pub mode: Mode,

    /// Worker processes in proc mode (1 to 1024) [default: 8].
    #[arg(long, value_name = "N", help_heading = CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub procs: Option<u32>,

    /// Pool size in threads mode [default: 8]; threads inside each worker
    /// process in proc mode [default: 1].
    #[arg(long, value_name = "N", help_heading = CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: Option<u32>,

    /// Pin each worker process to one CPU, taking the CPUs flagmaster may run
    /// on in turn (proc mode). Saves switches between the workers' address
    /// spaces when work is CPU-bound; best with at most one worker per CPU on
    /// an otherwise idle machine.
    #[arg(long, help_heading = CONCURRENCY)]
    pub pin: bool,

    /// Names, one per line; blank lines and '#' comments are ignored
    /// [default: the built-in copy of flags.txt].
    #[arg(long, value_name = "FILE", help_heading = SOURCE)]
    pub list: Option<PathBuf>,

    /// URL of each name: {base} (the site's base URL), {origin} (its
    /// scheme://host:port), {name} as listed, {lower} / {upper} in lower / upper
    /// case. The last path segment names the file. Fluent Python's layout:
    /// '{origin}/data/flags/{lower}/{lower}.gif'. [default: {base}/{name}.jpg]
    #[arg(long, value_name = "TEMPLATE", help_heading = SOURCE)]
    pub template: Option<String>,

    /// File of full URLs, one per line ('#' comments and blank lines ignored),
    /// instead of names; each file is named after its URL's last path segment.
    #[arg(long, value_name = "FILE", help_heading = SOURCE, conflicts_with_all = ["list", "template", "listing", "server", "base_url"])]
    pub urls: Option<PathBuf>,

    /// JSON listing of an image API, like Picsum's /v2/list (an array of
    /// objects with download_url) or Imgur's album images ({"data": [...]} with
    /// link and type). A path such as '/v2/list?limit=50' is asked of the site
    /// in use (the built-in one by default).
    #[arg(long, value_name = "URL", help_heading = SOURCE, conflicts_with_all = ["list", "template"])]
    pub listing: Option<String>,

    /// Field of a listing entry that holds its URL: a JSON pointer
    /// ('/download_url') or a dotted path ('images.0.link').
    /// [default: download_url, link or url, whichever the entry has]
    #[arg(long, value_name = "POINTER", requires = "listing", help_heading = SOURCE)]
    pub pick: Option<String>,

    /// Keep only listing entries whose 'type' is one of these, comma-separated
    /// ('image/jpeg,image/png'; 'image/*' for any image).
    #[arg(
        long = "type",
        value_name = "TYPES",
        value_delimiter = ',',
        requires = "listing",
        help_heading = SOURCE
    )]
    pub types: Vec<String>,

    /// Take only the first N items.
    #[arg(long, value_name = "N", help_heading = SOURCE)]
    pub limit: Option<usize>,

    /// Download only shard I of N (1-based, e.g. 2/4): a fixed hash of each file
    /// name decides its shard, the same on every machine. Without it, the shard
    /// comes from Slurm, Kubernetes or AWS Batch array variables, if set.
    #[arg(long, value_name = "I/N", help_heading = SOURCE,
          value_parser = crate::input::shard::parse_flag, conflicts_with = "shard_count")]
    pub shard: Option<crate::input::shard::Shard>,

    /// Number of shards, for a scheduler that gives only an index
    /// (JOB_COMPLETION_INDEX of a Kubernetes Indexed Job) [env: FLAGMASTER_SHARD_COUNT].
    #[arg(long, value_name = "N", help_heading = SOURCE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub shard_count: Option<u32>,

    /// Site to download from [default: DELAY, built in].
    #[arg(long, value_enum, ignore_case = true, conflicts_with = "base_url", help_heading = SOURCE)]
    pub server: Option<ServerKind>,

    /// Download from another site with the same layout: {base}/{name}.jpg.
    #[arg(long, value_name = "URL", help_heading = SOURCE)]
    pub base_url: Option<String>,

    /// Directory the files are saved in.
    #[arg(long, value_name = "DIR", default_value = "flags", help_heading = FILES)]
    pub dest: PathBuf,

    /// Directory of master.log and the per-worker logs (replaced on every run).
    #[arg(long, value_name = "DIR", default_value = "logs", help_heading = FILES)]
    pub log_dir: PathBuf,

    /// Items handed to a worker loop at a time [default: guided, what is left
    /// / (2 x loops), between 1 and 32, so chunks shrink towards the end].
    #[arg(long, value_name = "N", help_heading = CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub chunk_size: Option<u32>,

    /// Seconds one item may take, all attempts and back-off included.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_secs,
          help_heading = HTTP)]
    pub timeout: f64,

    /// Extra attempts for transient failures (connection errors, timeouts, 408, 429, 5xx).
    #[arg(long, value_name = "N", default_value_t = 2, help_heading = HTTP)]
    pub retries: u32,

    /// Most requests per second over the whole run, across every thread and
    /// process; every attempt counts [default: no cap].
    #[arg(long, value_name = "R", help_heading = HTTP, value_parser = crate::polite::parse_max_rps)]
    pub max_rps: Option<f64>,

    /// Most requests in flight to one host (host:port) at once, across the
    /// whole run [default: 8 for a site not on a loopback address, else no cap].
    #[arg(long, value_name = "N", help_heading = HTTP, value_parser = clap::value_parser!(u32).range(1..))]
    pub per_host: Option<u32>,

    /// Largest body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 50 * 1024 * 1024, help_heading = HTTP)]
    pub max_size: u64,

    /// Re-run: do not fetch items whose file is already complete in the
    /// destination (reported SKIPPED, reason "exists"). No request is sent for them.
    #[arg(long, conflicts_with = "if_changed", help_heading = FILES)]
    pub skip_existing: bool,

    /// Re-run: ask the server whether files already in the destination
    /// changed (If-None-Match / If-Modified-Since, from the validators of the
    /// last such run or the file's mtime); a 304 keeps the file (SKIPPED,
    /// "not modified").
    #[arg(long, help_heading = FILES)]
    pub if_changed: bool,

    /// Blur every downloaded image with a Gaussian of SIGMA pixels (0 < SIGMA <= 100),
    /// in the worker that fetched it; the blurred image replaces the download.
    #[arg(long, value_name = "SIGMA", value_parser = parse_sigma, help_heading = FILES)]
    pub blur: Option<f32>,

    /// With --blur, keep the downloaded image and save the blurred one next to
    /// it as NAME.blur.jpg.
    #[arg(long, help_heading = FILES)]
    pub keep_original: bool,

    /// Send requests through this proxy: http://[USER:PASS@]HOST:PORT
    /// (https:// for TLS to the proxy; every URL goes through a CONNECT
    /// tunnel), or SOCKS: socks5:// (names looked up here), socks5h:// (by the
    /// proxy), socks4://, socks4a://. Applies to every item, loopback ones
    /// too, except --noproxy's hosts [default: https_proxy / HTTPS_PROXY for
    /// https URLs, http_proxy for http URLs, else ALL_PROXY, for non-loopback
    /// items only].
    #[arg(long, value_name = "URL", help_heading = HTTP)]
    pub proxy: Option<String>,

    /// Hosts reached without a proxy, comma-separated, as curl reads them:
    /// 'example.com' or '.example.com' matches it and its subdomains, '*'
    /// every host [default: NO_PROXY / no_proxy].
    #[arg(long, value_name = "LIST", help_heading = HTTP)]
    pub noproxy: Option<String>,

    /// Check every download against FILE, in sha256sum's format ('HEX  NAME',
    /// NAME a file name in the destination): a body with another SHA-256 is
    /// an ERROR ("checksum mismatch"), retried once, and nothing is saved.
    /// Items without a line are fetched unchecked.
    #[arg(long, value_name = "FILE", help_heading = FILES)]
    pub checksums: Option<PathBuf>,

    /// At the end, write FILE: the SHA-256 of every file the run saved or
    /// kept, in sha256sum's format, sorted by name (check it with `cd DEST &&
    /// sha256sum -c FILE`).
    #[arg(long, value_name = "FILE", help_heading = FILES)]
    pub manifest: Option<PathBuf>,

    /// Extra request header 'Name: value', repeatable (e.g. 'Authorization:
    /// Client-ID ...'); values never appear in logs or reports.
    #[arg(long = "header", value_name = "HEADER", help_heading = HTTP)]
    pub headers: Vec<String>,

    /// Also trust the CA certificates of this PEM file for HTTPS, besides the
    /// system's (as does a PEM file named by the SSL_CERT_FILE variable).
    #[arg(long, value_name = "FILE", help_heading = HTTP)]
    pub cacert: Option<PathBuf>,

    /// Do not verify HTTPS certificates at all. Anyone on the path can then
    /// read and change the downloads; every run says so.
    #[arg(long, help_heading = HTTP)]
    pub insecure: bool,

    /// Serve the built-in site (LOCAL, DELAY, ERROR) over HTTPS, with a CA made
    /// for this run and trusted by it.
    #[arg(long, help_heading = SOURCE)]
    pub tls: bool,

    /// Print one JSON document instead of the text report.
    #[arg(long, help_heading = FILES)]
    pub json: bool,

    /// Print one line per item as it completes (status, name, bytes, worker)
    /// instead of the progress bar.
    #[arg(short, long, conflicts_with = "quiet", help_heading = FILES)]
    pub verbose: bool,

    /// No progress bar and no notes: only the report (and warnings).
    #[arg(short, long, help_heading = FILES)]
    pub quiet: bool,
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

    /// Serve over HTTPS, with a CA and a certificate for 127.0.0.1 and
    /// localhost made at start-up (or --cert and --key).
    #[arg(long)]
    pub tls: bool,

    /// With --tls, write the CA certificate (PEM) to FILE, for clients'
    /// --cacert.
    #[arg(long, value_name = "FILE", requires = "tls", conflicts_with = "cert")]
    pub ca_out: Option<PathBuf>,

    /// With --tls, serve this certificate chain (PEM, the server's
    /// certificate first) instead of making one; its dates and names are not
    /// checked, so an expired or misnamed one can test clients.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,

    /// With --cert, the certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    pub key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Measured runs per setup, after a short warm-up run of each (4 items
    /// per worker loop); the setups take turns, one run of each per round.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    pub runs: u64,

    /// Items to download [default: the built-in list]; beyond it, made-up names
    /// the built-in site serves too.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub items: Option<u64>,

    /// Setups to measure, in order, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "serial,threads,proc,hybrid",
        value_parser = crate::bench::ModeParser
    )]
    pub modes: Vec<crate::bench::BenchMode>,

    /// Worker processes of the proc setup.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub procs: u32,

    /// Threads of the threads setup.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub threads: u32,

    /// Processes x threads of the hybrid setup.
    #[arg(long, value_name = "PxT", default_value = "4x8", value_parser = crate::bench::parse_hybrid)]
    pub hybrid: (u32, u32),

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

    /// Keep the logs of each setup's first measured run in DIR/SETUP and draw
    /// them stacked on one time axis in DIR/timeline.svg (see `flagmaster logs`).
    #[arg(long, value_name = "DIR")]
    pub timeline: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Reports written by flagmaster --json, one per shard.
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,

    /// Print the merged report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Log directories: of one run, or of several (shards, or runs to
    /// compare) [default: logs].
    #[arg(value_name = "DIR")]
    pub dirs: Vec<PathBuf>,

    /// How many of the slowest attempts to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Print one JSON document instead of the text.
    #[arg(long)]
    pub json: bool,

    /// Only worker N: its row, attempts, items and timeline lanes.
    #[arg(long, value_name = "N")]
    pub worker: Option<u32>,

    /// Only attempts and items that ended so (the table stays whole).
    #[arg(long, value_enum, ignore_case = true)]
    pub status: Option<StatusArg>,

    /// Draw the runs as a timeline in this SVG file: a lane per worker
    /// thread, a bar per attempt; several runs stacked on one time axis.
    #[arg(long, value_name = "FILE.svg")]
    pub timeline: Option<PathBuf>,
}

/// An outcome, as the logs write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    #[value(name = "OK")]
    Ok,
    #[value(name = "NOT_FOUND")]
    NotFound,
    #[value(name = "ERROR")]
    Error,
    #[value(name = "SKIPPED")]
    Skipped,
}

impl StatusArg {
    pub fn status(self) -> flagmaster_worker::protocol::Status {
        use flagmaster_worker::protocol::Status;
        match self {
            StatusArg::Ok => Status::Ok,
            StatusArg::NotFound => Status::NotFound,
            StatusArg::Error => Status::Error,
            StatusArg::Skipped => Status::Skipped,
        }
    }
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct RaceArgs {
    /// Tasks to count, each once (1 to 1000000).
    #[arg(long, value_name = "N", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub tasks: u64,

    /// Threads taking the tasks from one queue (1 to 1024).
    #[arg(long, value_name = "W", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,

    /// Pause of each task between reading and writing the counter, in
    /// milliseconds (0 to 1000); the default makes the whole command take
    /// about a second and a half.
    #[arg(long, value_name = "MS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub pause_ms: u64,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
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
    fn race_defaults_and_limits() {
        let cli = Cli::try_parse_from(["flagmaster", "race"]).unwrap();
        let Some(Command::Race(args)) = cli.command else {
            panic!("race subcommand");
        };
        assert_eq!((args.tasks, args.workers, args.pause_ms), (500, 20, 20));
        for bad in [
            ["--tasks", "0"],
            ["--tasks", "1000001"],
            ["--workers", "0"],
            ["--workers", "1025"],
            ["--pause-ms", "1001"],
            ["--pause-ms", "-1"],
        ] {
            let argv = ["flagmaster", "race", bad[0], bad[1]];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
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
