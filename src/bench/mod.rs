//! `flagmaster bench`: the classic comparison, measured. The same workload is
//! downloaded serially, with a thread pool, with worker processes and with
//! processes x threads, a warm-up round and then `--runs` rounds, one run of
//! each setup per round, every run a fresh `flagmaster` process into a fresh
//! dest, against the built-in DELAY site (or `--base-url`). The table is pure
//! arithmetic over the samples.

mod plot;

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::cli::BenchArgs;
use crate::config::{check_base_url, fit_layout};
use crate::error::Error;
use crate::list;
use crate::site::{Site, SiteConfig};

/// The `--modes` suffix that pins a proc or hybrid setup's workers (`--pin`).
const PINNED: &str = "-pinned";

/// One configuration to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setup {
    /// As named in `--modes`, `-pinned` included.
    pub mode: String,
    pub procs: u32,
    pub threads: u32,
    /// Worker processes pinned to the CPUs in turn (`--pin`).
    pub pin: bool,
}

impl Setup {
    fn concurrency(&self) -> u32 {
        self.procs * self.threads
    }

    fn args(&self) -> Vec<String> {
        let mode = match self.mode.strip_suffix(PINNED).unwrap_or(&self.mode) {
            "hybrid" => "proc",
            mode => mode,
        };
        let mut args = vec!["--mode".to_string(), mode.to_string()];
        match mode {
            "threads" => args.extend(["--threads".into(), self.threads.to_string()]),
            "proc" => args.extend([
                "--procs".into(),
                self.procs.to_string(),
                "--threads".into(),
                self.threads.to_string(),
            ]),
            _ => {}
        }
        if self.pin {
            args.push("--pin".into());
        }
        args
    }
}

/// One measured run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub secs: f64,
    pub ok: u64,
    pub bytes: u64,
    /// User + system CPU seconds of the run's whole process tree.
    pub cpu_secs: f64,
    /// Peak resident set of the largest process of the run, in MB.
    pub peak_rss_mb: f64,
    /// CPU seconds the workers spent blurring (`--blur`), summed over items.
    pub blur_secs: Option<f64>,
    /// CPU seconds of the built-in site during the run.
    pub site_cpu_secs: Option<f64>,
    /// How many of the built-in site's answers in the run waited for its latency.
    pub site_delayed: Option<u64>,
    /// How late the built-in site's delayed answers were ready, in ms: mean
    /// and 99th percentile (none without a latency).
    pub site_late_ms: Option<f64>,
    pub site_late_p99_ms: Option<f64>,
}

/// A row of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub setup: Setup,
    pub median_secs: f64,
    pub min_secs: f64,
    pub max_secs: f64,
    pub items_per_sec: f64,
    pub mb_per_sec: f64,
    pub speedup_vs_serial: Option<f64>,
    /// The latency limit divided by the median, when the site's latency is known.
    pub efficiency: Option<f64>,
    pub cpu_secs: f64,
    pub peak_rss_mb: f64,
    /// Median of the runs' blurring seconds (`--blur`).
    pub blur_secs: Option<f64>,
    /// Medians of the runs' site CPU seconds and mean site lateness (ms),
    /// when the bench ran the built-in site.
    pub site_cpu_secs: Option<f64>,
    pub site_late_ms: Option<f64>,
    /// Runs in which every item was downloaded, of all runs.
    pub complete_runs: usize,
    pub samples: Vec<Sample>,
}

/// The whole comparison, as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bench {
    pub items: usize,
    pub runs: u64,
    pub site: String,
    /// Mean latency of the built-in site, in seconds.
    pub mean_latency_secs: Option<f64>,
    /// The `--blur` sigma of every run, if any.
    pub blur_sigma: Option<f32>,
    pub rows: Vec<Row>,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Folds the samples of each setup into rows. `latency` is the site's mean
/// latency; the latency limit of a setup is ceil(items / concurrency) x latency.
pub fn rows(items: usize, latency: Option<f64>, measured: Vec<(Setup, Vec<Sample>)>) -> Vec<Row> {
    let mut rows: Vec<Row> = measured
        .into_iter()
        .map(|(setup, samples)| {
            let mut secs: Vec<f64> = samples.iter().map(|s| s.secs).collect();
            secs.sort_by(f64::total_cmp);
            let median_secs = median(&secs);
            let bytes = samples.first().map_or(0, |s| s.bytes);
            // The median of what the runs measured, if any measured it.
            let median_of = |field: fn(&Sample) -> Option<f64>| {
                let mut values: Vec<f64> = samples.iter().filter_map(field).collect();
                values.sort_by(f64::total_cmp);
                (!values.is_empty()).then(|| median(&values))
            };
            let rate = |x: f64| {
                if median_secs > 0.0 {
                    x / median_secs
                } else {
                    0.0
                }
            };
            // A site without latency has no latency limit to compare with.
            let limit = latency
                .filter(|l| *l > 0.0)
                .map(|l| (items as f64 / setup.concurrency() as f64).ceil() * l);
            Row {
                median_secs,
                min_secs: secs.first().copied().unwrap_or(0.0),
                max_secs: secs.last().copied().unwrap_or(0.0),
                items_per_sec: rate(items as f64),
                mb_per_sec: rate(bytes as f64 / 1e6),
                speedup_vs_serial: None,
                efficiency: limit.filter(|_| median_secs > 0.0).map(|l| l / median_secs),
                cpu_secs: median_of(|s| Some(s.cpu_secs)).unwrap_or(0.0),
                peak_rss_mb: samples.iter().map(|s| s.peak_rss_mb).fold(0.0, f64::max),
                blur_secs: median_of(|s| s.blur_secs),
                site_cpu_secs: median_of(|s| s.site_cpu_secs),
                site_late_ms: median_of(|s| s.site_late_ms),
                complete_runs: samples.iter().filter(|s| s.ok == items as u64).count(),
                setup,
                samples,
            }
        })
        .collect();
    let serial = rows
        .iter()
        .find(|r| r.setup.mode == "serial")
        .map(|r| r.median_secs);
    for row in &mut rows {
        row.speedup_vs_serial = serial
            .filter(|_| row.median_secs > 0.0)
            .map(|s| s / row.median_secs);
    }
    rows
}

impl Bench {
    /// The table, as text (`markdown` false) or as a markdown table.
    pub fn table(&self, markdown: bool) -> String {
        let with_blur = self.rows.iter().any(|r| r.blur_secs.is_some());
        let with_site = self.rows.iter().any(|r| r.site_cpu_secs.is_some());
        // After "CPU s", when the bench ran the built-in site.
        const SITE_AT: usize = 8;
        let mut header = vec![
            "mode",
            "workers x threads",
            "median s (min-max)",
            "items/s",
            "MB/s",
            "speed-up",
            "efficiency",
            "CPU s",
            "peak RSS MB",
            "complete",
        ];
        if with_site {
            header.splice(SITE_AT..SITE_AT, ["site CPU s", "site late ms"]);
        }
        if with_blur {
            header.insert(header.len() - 1, "blur CPU s");
        }
        let lines: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let mut cells = vec![
                    r.setup.mode.clone(),
                    format!("{} x {}", r.setup.procs, r.setup.threads),
                    format!("{:.3} ({:.3}-{:.3})", r.median_secs, r.min_secs, r.max_secs),
                    format!("{:.0}", r.items_per_sec),
                    format!("{:.2}", r.mb_per_sec),
                    r.speedup_vs_serial
                        .map_or("-".into(), |s| format!("{s:.1}x")),
                    r.efficiency
                        .map_or("-".into(), |e| format!("{:.0}%", e * 100.0)),
                    format!("{:.2}", r.cpu_secs),
                    format!("{:.1}", r.peak_rss_mb),
                    format!("{}/{}", r.complete_runs, r.samples.len()),
                ];
                if with_site {
                    cells.splice(
                        SITE_AT..SITE_AT,
                        [cell(r.site_cpu_secs), cell(r.site_late_ms)],
                    );
                }
                if with_blur {
                    cells.insert(cells.len() - 1, cell(r.blur_secs));
                }
                cells
            })
            .collect();
        let mut out = String::new();
        if markdown {
            let _ = writeln!(out, "| {} |", header.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
            for line in &lines {
                let _ = writeln!(out, "| {} |", line.join(" | "));
            }
            return out;
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let row = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string() + "\n"
        };
        out.push_str(&row(header.clone()));
        for line in &lines {
            out.push_str(&row(line.iter().map(String::as_str).collect()));
        }
        out
    }
}

/// A figure to two decimals, or "-" for one not measured.
fn cell(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.2}"))
}

/// Mean and 99th percentile, in ms, of how late (µs) the site's answers were.
fn lateness_ms(mut late_us: Vec<u32>) -> (Option<f64>, Option<f64>) {
    if late_us.is_empty() {
        return (None, None);
    }
    late_us.sort_unstable();
    let n = late_us.len();
    let mean = late_us.iter().map(|&us| f64::from(us)).sum::<f64>() / n as f64;
    // The smallest value at or above 99% of them.
    let p99 = late_us[(n * 99).div_ceil(100) - 1];
    (Some(mean / 1000.0), Some(f64::from(p99) / 1000.0))
}

/// Runs the benchmark and prints its table (or JSON).
pub fn run(args: BenchArgs) -> Result<u8, Error> {
    let names = bench_names(args.items.map(|n| n as usize));
    let setups = setups(&args, names.len())?;
    // An unwritable plot must not cost minutes of measurements first.
    let plot = match &args.plot {
        Some(path) => Some((path.clone(), open_plot(path)?)),
        None => None,
    };
    let exe = std::env::current_exe()
        .map_err(|e| Error::Spawn(format!("cannot find my own executable: {e}")))?;
    let (site, base, site_label, latency) = match &args.base_url {
        Some(url) => (None, check_base_url(url)?, url.clone(), None),
        None => {
            let config = SiteConfig {
                names: names.clone(),
                delay_ms: args.delay_ms,
                jitter_ms: args.jitter_ms,
                error_rate: 0.0,
                image_size: args.image_size,
            };
            let site = crate::site::start_loopback(config)?;
            let base = site.base_url();
            let (w, h) = args.image_size;
            let label = format!(
                "built-in, {}-{} ms latency, {w}x{h} px",
                args.delay_ms,
                args.delay_ms + args.jitter_ms
            );
            let mean = (args.delay_ms as f64 + args.jitter_ms as f64 / 2.0) / 1000.0;
            (Some(site), base, label, Some(mean))
        }
    };
    let work = tempfile::tempdir().map_err(|source| Error::Unwritable {
        what: "temporary directory",
        path: std::env::temp_dir(),
        source,
    })?;
    let list_path = work.path().join("list.txt");
    std::fs::write(&list_path, names.join("\n") + "\n").map_err(|source| Error::Unwritable {
        what: "list",
        path: list_path.clone(),
        source,
    })?;
    let blur_note = args
        .blur
        .map_or_else(String::new, |s| format!(", --blur {s}"));
    eprintln!(
        "bench: {} items from {base} ({site_label}), {} round(s) of every setup after a warm-up round{blur_note}",
        names.len(),
        args.runs
    );
    // In turn: a warm-up round, then run r of every setup before run r+1 of
    // any. A machine's speed drifts (on this project's, by several percent
    // within an hour), and all of one setup's runs in a row would give each
    // setup its own stretch of the drift.
    let mut measured: Vec<(Setup, Vec<Sample>)> =
        setups.into_iter().map(|s| (s, Vec::new())).collect();
    for run in 0..=args.runs {
        for (setup, samples) in &mut measured {
            let sample = measure(
                &exe,
                setup,
                &base,
                site.as_ref(),
                &list_path,
                work.path(),
                args.blur,
            )?;
            if run > 0 {
                eprintln!(
                    "bench: {} {}x{} run {run}: {:.3} s, {} ok",
                    setup.mode, setup.procs, setup.threads, sample.secs, sample.ok
                );
                samples.push(sample);
            }
        }
    }
    let bench = Bench {
        items: names.len(),
        runs: args.runs,
        site: site_label,
        mean_latency_secs: latency,
        blur_sigma: args.blur,
        rows: rows(names.len(), latency, measured),
    };
    let out = if args.json {
        serde_json::to_string_pretty(&bench).unwrap_or_default() + "\n"
    } else {
        bench.table(args.markdown)
    };
    print!("{out}");
    if let Some((path, file)) = plot {
        write_plot(&bench, &path, file)?;
        eprintln!("bench: chart written to {}", path.display());
    }
    let complete = bench
        .rows
        .iter()
        .all(|r| r.complete_runs == r.samples.len());
    Ok(if complete {
        crate::exit::OK
    } else {
        crate::exit::SOME_FAILED
    })
}

/// Creates the `--plot` file now, so that a bad path is a usage error before
/// any measurement; it is filled in at the end.
fn open_plot(path: &Path) -> Result<std::fs::File, Error> {
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if !svg {
        return Err(Error::Usage(format!(
            "bad --plot {}: the chart is SVG, name it FILE.svg",
            path.display()
        )));
    }
    std::fs::File::create(path).map_err(|source| Error::Unwritable {
        what: "--plot",
        path: path.to_path_buf(),
        source,
    })
}

fn write_plot(bench: &Bench, path: &Path, mut file: std::fs::File) -> Result<(), Error> {
    use std::io::Write as _;
    let bars: Vec<plot::Bar> = bench
        .rows
        .iter()
        .map(|r| plot::Bar {
            label: format!("{} {}x{}", r.setup.mode, r.setup.procs, r.setup.threads),
            median: r.median_secs,
            min: r.min_secs,
            max: r.max_secs,
        })
        .collect();
    let mut title = format!("flagmaster bench: {} items, {}", bench.items, bench.site);
    if let Some(sigma) = bench.blur_sigma {
        title += &format!(", --blur {sigma}");
    }
    let svg = plot::bar_chart_svg(&title, &bars).map_err(Error::Usage)?;
    file.write_all(svg.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|source| Error::Unwritable {
            what: "--plot",
            path: path.to_path_buf(),
            source,
        })
}

/// The built-in list, extended with made-up names when more items are asked for.
fn bench_names(items: Option<usize>) -> Vec<String> {
    let mut names = list::parse(list::BUILTIN).names;
    let want = items.unwrap_or(names.len());
    let mut extra = 0;
    while names.len() < want {
        extra += 1;
        names.push(format!("Extra_{extra:06}"));
    }
    names.truncate(want);
    names
}

/// The setups of `--modes`, each fitted to `items` as a run fits itself
/// (`config::fit_layout`), so that a row is labelled with what ran.
fn setups(args: &BenchArgs, items: usize) -> Result<Vec<Setup>, Error> {
    let (hp, ht) = args
        .hybrid
        .split_once('x')
        .and_then(|(p, t)| Some((p.parse::<u32>().ok()?, t.parse::<u32>().ok()?)))
        .filter(|&(p, t)| p > 0 && t > 0)
        .ok_or_else(|| {
            Error::Usage(format!(
                "bad --hybrid {:?}: expected PxT, e.g. 4x8",
                args.hybrid
            ))
        })?;
    let mut setups = Vec::new();
    for mode in &args.modes {
        let (base, pin) = match mode.strip_suffix(PINNED) {
            Some(base) => (base, true),
            None => (mode.as_str(), false),
        };
        let (procs, threads) = match base {
            "serial" | "threads" if pin => {
                return Err(Error::Usage(format!(
                    "bad --modes entry {mode:?}: only proc and hybrid workers can be pinned"
                )))
            }
            "serial" => (1, 1),
            "threads" => (1, args.threads),
            "proc" => (args.procs, 1),
            "hybrid" => (hp, ht),
            _ => {
                return Err(Error::Usage(format!(
                    "bad --modes entry {mode:?}: expected serial, threads, proc, hybrid, \
                     proc-pinned or hybrid-pinned"
                )))
            }
        };
        let (procs, threads) = fit_layout(procs, threads, items);
        setups.push(Setup {
            mode: mode.clone(),
            procs,
            threads,
            pin,
        });
    }
    Ok(setups)
}

/// One run in a child process, into a fresh dest. With the built-in `site`
/// (in this process), also what the run cost it.
fn measure(
    exe: &Path,
    setup: &Setup,
    base: &str,
    site: Option<&Site>,
    list: &Path,
    work: &Path,
    blur: Option<f32>,
) -> Result<Sample, Error> {
    let run_dir = tempfile::tempdir_in(work).map_err(|source| Error::Unwritable {
        what: "temporary directory",
        path: work.to_path_buf(),
        source,
    })?;
    // The site's CPU is this process's but for this thread's, which only
    // starts the run and waits for it.
    let site_cpu = || cpu_secs(libc::RUSAGE_SELF) - cpu_secs(libc::RUSAGE_THREAD);
    let site_before = site.map(|site| (site.delayed(), site_cpu()));
    let mut child = Command::new(exe)
        .args(["--base-url", base, "--json", "--retries", "0"])
        .arg("--list")
        .arg(list)
        .arg("--dest")
        .arg(run_dir.path().join("flags"))
        .arg("--log-dir")
        .arg(run_dir.path().join("logs"))
        .args(setup.args())
        .args(blur.map(|s| format!("--blur={s}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Spawn(format!("cannot start {}: {e}", exe.display())))?;
    let mut stdout = Vec::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    let usage = wait_with_usage(child.id());
    let (site_cpu_secs, site_delayed, (site_late_ms, site_late_p99_ms)) =
        match site.zip(site_before) {
            Some((site, (delayed, cpu))) => (
                Some(site_cpu() - cpu),
                Some(site.delayed() - delayed),
                lateness_ms(site.late_us_since(delayed)),
            ),
            None => (None, None, (None, None)),
        };
    let report: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|e| Error::Bench(format!("a {} run printed no report: {e}", setup.mode)))?;
    // A row must be what its label says (the report's `pin` is absent, so
    // false, in reports of older versions).
    if report["pin"].as_bool().unwrap_or(false) != setup.pin {
        return Err(Error::Bench(format!(
            "a {} run reported pin={}",
            setup.mode, report["pin"]
        )));
    }
    let layout = (report["procs"].as_u64(), report["threads"].as_u64());
    if layout != (Some(setup.procs.into()), Some(setup.threads.into())) {
        return Err(Error::Bench(format!(
            "a {} {}x{} run reported {}x{}",
            setup.mode, setup.procs, setup.threads, report["procs"], report["threads"]
        )));
    }
    let cpu_secs = usage.unwrap_or(0.0);
    // The largest process of the run, as each measured itself (see
    // `flagmaster_worker::peak_rss_kb` for why not the rusage of the wait).
    let peak_kb = report["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| &w["peak_rss_kb"])
        .chain([&report["master_peak_rss_kb"]])
        .filter_map(serde_json::Value::as_u64)
        .max()
        .unwrap_or(0);
    let peak_rss_mb = peak_kb as f64 / 1024.0;
    Ok(Sample {
        secs: report["elapsed_secs"].as_f64().unwrap_or(0.0),
        ok: report["counts"]["ok"].as_u64().unwrap_or(0),
        bytes: report["bytes"].as_u64().unwrap_or(0),
        cpu_secs,
        peak_rss_mb,
        blur_secs: report["blur_secs"].as_f64(),
        site_cpu_secs,
        site_delayed,
        site_late_ms,
        site_late_p99_ms,
    })
}

/// User + system CPU seconds of `who`: `RUSAGE_SELF` or `RUSAGE_THREAD`.
fn cpu_secs(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value, and getrusage writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for the call; `who` is a valid selector.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    rusage_cpu(&usage)
}

fn rusage_cpu(usage: &libc::rusage) -> f64 {
    let secs = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (secs(usage.ru_utime) + secs(usage.ru_stime)).as_secs_f64()
}

/// Reaps `pid` and returns the CPU seconds of it and its reaped descendants
/// (the worker processes).
fn wait_with_usage(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child; the pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        return None;
    }
    Some(rusage_cpu(&usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: f64) -> Sample {
        Sample {
            secs,
            ok: 10,
            bytes: 2_000_000,
            cpu_secs: 0.5,
            peak_rss_mb: 8.0,
            blur_secs: None,
            site_cpu_secs: None,
            site_delayed: None,
            site_late_ms: None,
            site_late_p99_ms: None,
        }
    }

    fn setup(mode: &str, procs: u32, threads: u32) -> Setup {
        Setup {
            mode: mode.into(),
            procs,
            threads,
            pin: mode.ends_with(PINNED),
        }
    }

    #[test]
    fn medians_speedups_and_efficiency() {
        let rows = rows(
            10,
            Some(0.2),
            vec![
                (
                    setup("serial", 1, 1),
                    vec![sample(2.2), sample(2.0), sample(2.4)],
                ),
                (
                    setup("proc", 5, 1),
                    vec![sample(0.5), sample(0.4), sample(0.45), sample(0.6)],
                ),
            ],
        );
        assert_eq!(rows[0].median_secs, 2.2);
        assert_eq!((rows[0].min_secs, rows[0].max_secs), (2.0, 2.4));
        assert_eq!(rows[0].speedup_vs_serial, Some(1.0));
        assert!((rows[1].median_secs - 0.475).abs() < 1e-9);
        assert!((rows[1].speedup_vs_serial.unwrap() - 2.2 / 0.475).abs() < 1e-9);
        // ceil(10 / 5) x 0.2 s = 0.4 s of latency limit.
        assert!((rows[1].efficiency.unwrap() - 0.4 / 0.475).abs() < 1e-9);
        assert!((rows[1].items_per_sec - 10.0 / 0.475).abs() < 1e-9);
        assert_eq!(rows[1].complete_runs, 4);
    }

    #[test]
    fn tables() {
        let bench = Bench {
            items: 10,
            runs: 1,
            site: "x".into(),
            mean_latency_secs: None,
            blur_sigma: None,
            rows: rows(10, None, vec![(setup("threads", 1, 4), vec![sample(0.5)])]),
        };
        let text = bench.table(false);
        assert!(
            text.starts_with("mode     workers x threads  median s (min-max)"),
            "{text}"
        );
        assert!(
            text.contains("threads  1 x 4              0.500 (0.500-0.500)  20"),
            "{text}"
        );
        let md = bench.table(true);
        assert!(md.starts_with("| mode | workers x threads |"), "{md}");
        assert!(
            md.contains(
                "| threads | 1 x 4 | 0.500 (0.500-0.500) | 20 | 4.00 | - | - | 0.50 | 8.0 | 1/1 |"
            ),
            "{md}"
        );
    }

    #[test]
    fn blur_column_only_with_blur() {
        let blurred = |secs, blur| Sample {
            blur_secs: Some(blur),
            ..sample(secs)
        };
        let measured = vec![(
            setup("proc", 2, 1),
            vec![blurred(1.0, 1.5), blurred(1.2, 1.9), blurred(1.1, 1.7)],
        )];
        let bench = Bench {
            items: 10,
            runs: 3,
            site: "x".into(),
            mean_latency_secs: None,
            blur_sigma: Some(15.0),
            rows: rows(10, None, measured),
        };
        assert_eq!(bench.rows[0].blur_secs, Some(1.7));
        let md = bench.table(true);
        assert!(
            md.contains("| peak RSS MB | blur CPU s | complete |"),
            "{md}"
        );
        assert!(md.contains("| 8.0 | 1.70 | 3/3 |"), "{md}");
    }

    #[test]
    fn site_columns_only_with_the_built_in_site() {
        let measured = |cpu: Option<f64>, late: Option<f64>| {
            let sample = |secs| Sample {
                site_cpu_secs: cpu,
                site_late_ms: late,
                ..sample(secs)
            };
            vec![(setup("threads", 1, 4), vec![sample(0.5), sample(0.6)])]
        };
        let bench = |measured| Bench {
            items: 10,
            runs: 2,
            site: "x".into(),
            mean_latency_secs: None,
            blur_sigma: None,
            rows: rows(10, None, measured),
        };
        let md = bench(measured(Some(0.25), Some(0.41))).table(true);
        assert!(
            md.contains("| CPU s | site CPU s | site late ms | peak RSS MB |"),
            "{md}"
        );
        assert!(md.contains("| 0.50 | 0.25 | 0.41 | 8.0 | 2/2 |"), "{md}");
        // A site without latency has nothing to be late for.
        let md = bench(measured(Some(0.25), None)).table(true);
        assert!(md.contains("| 0.50 | 0.25 | - | 8.0 | 2/2 |"), "{md}");
        let md = bench(measured(None, None)).table(true);
        assert!(!md.contains("site"), "{md}");
    }

    #[test]
    fn lateness_mean_and_99th_percentile() {
        assert_eq!(lateness_ms(Vec::new()), (None, None));
        assert_eq!(lateness_ms(vec![300]), (Some(0.3), Some(0.3)));
        // 99 answers 100 µs late and one 10.1 ms: the 99th percentile is the
        // 99th of them, the mean 0.2 ms.
        let mut late = vec![100; 99];
        late.insert(17, 10_100);
        let (mean, p99) = lateness_ms(late);
        assert!((mean.unwrap() - 0.2).abs() < 1e-9, "{mean:?}");
        assert_eq!(p99, Some(0.1));
        // 200 of them: the 198th.
        let mut late: Vec<u32> = (1..=200).collect();
        late.reverse();
        assert_eq!(lateness_ms(late).1, Some(0.198));
    }

    #[test]
    fn setups_from_arguments() {
        let s = setup("hybrid", 4, 8);
        assert_eq!(
            s.args(),
            ["--mode", "proc", "--procs", "4", "--threads", "8"]
        );
        assert_eq!(setup("serial", 1, 1).args(), ["--mode", "serial"]);
        assert_eq!(
            setup("hybrid-pinned", 2, 3).args(),
            ["--mode", "proc", "--procs", "2", "--threads", "3", "--pin"]
        );
        assert_eq!(
            setup("proc-pinned", 2, 1).args(),
            ["--mode", "proc", "--procs", "2", "--threads", "1", "--pin"]
        );
        assert_eq!(bench_names(Some(200)).len(), 200);
        assert_eq!(bench_names(Some(200))[199], "Extra_000003");
    }
}
