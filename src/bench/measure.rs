//! One run of a setup, measured: a fresh `flagmaster` process into a fresh
//! dest, its `--json` report read back as a [`RunReport`], its CPU and peak
//! memory, and what it cost the built-in site.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use super::setups::Setup;
use crate::error::Error;
use crate::report::RunReport;
use crate::site::Site;

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

/// What every run of a bench shares: this executable, the site, the list of
/// the workload, and `--blur`.
pub struct Runner {
    exe: PathBuf,
    base: String,
    /// The built-in site, when the bench started it (in this process): the
    /// runs are also measured by what they cost it.
    site: Option<Site>,
    /// Holds the list and the dest and logs of every run; removed on drop.
    work: tempfile::TempDir,
    list: PathBuf,
    blur: Option<f32>,
}

impl Runner {
    /// Writes the list of `names` into a temporary directory for the runs to read.
    pub fn new(
        names: &[String],
        base: String,
        site: Option<Site>,
        blur: Option<f32>,
    ) -> Result<Runner, Error> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::Bench(format!("cannot find my own executable: {e}")))?;
        let work = tempfile::tempdir().map_err(|source| Error::Unwritable {
            what: "temporary directory",
            path: std::env::temp_dir(),
            source,
        })?;
        let list = work.path().join("list.txt");
        std::fs::write(&list, names.join("\n") + "\n").map_err(|source| Error::Unwritable {
            what: "list",
            path: list.clone(),
            source,
        })?;
        Ok(Runner {
            exe,
            base,
            site,
            work,
            list,
            blur,
        })
    }

    /// One run of `setup` in a child process, into a fresh dest: of the whole
    /// list, or of its first `limit` items; its logs in `logs`, or thrown away.
    pub fn run(
        &self,
        setup: &Setup,
        limit: Option<usize>,
        logs: Option<&Path>,
    ) -> Result<Sample, Error> {
        let run_dir =
            tempfile::tempdir_in(self.work.path()).map_err(|source| Error::Unwritable {
                what: "temporary directory",
                path: self.work.path().to_path_buf(),
                source,
            })?;
        // The site's CPU is this process's but for this thread's, which only
        // starts the run and waits for it.
        let site_cpu = || cpu_secs(libc::RUSAGE_SELF) - cpu_secs(libc::RUSAGE_THREAD);
        let site_before = self.site.as_ref().map(|site| (site.delayed(), site_cpu()));
        let mut child = Command::new(&self.exe)
            .args(["--base-url", &self.base, "--json", "--retries", "0"])
            .arg("--list")
            .arg(&self.list)
            .arg("--dest")
            .arg(run_dir.path().join("flags"))
            .arg("--log-dir")
            .arg(logs.map_or_else(|| run_dir.path().join("logs"), Path::to_path_buf))
            .args(setup.args())
            .args(limit.map(|n| format!("--limit={n}")))
            .args(self.blur.map(|s| format!("--blur={s}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Bench(format!(
                    "cannot start a {} run of {}: {e}",
                    setup.mode,
                    self.exe.display()
                ))
            })?;
        let mut stdout = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_end(&mut stdout);
        }
        let cpu_secs = wait_with_usage(child.id()).unwrap_or(0.0);
        let (site_cpu_secs, site_delayed, (site_late_ms, site_late_p99_ms)) =
            match self.site.as_ref().zip(site_before) {
                Some((site, (delayed, cpu))) => (
                    Some(site_cpu() - cpu),
                    Some(site.delayed() - delayed),
                    lateness_ms(site.late_us_since(delayed)),
                ),
                None => (None, None, (None, None)),
            };
        let report: RunReport = serde_json::from_slice(&stdout)
            .map_err(|e| Error::Bench(format!("a {} run printed no report: {e}", setup.mode)))?;
        // A row must be what its label says.
        let info = &report.info;
        if info.pin != setup.pin {
            return Err(Error::Bench(format!(
                "a {} run reported pin={}",
                setup.mode, info.pin
            )));
        }
        if (info.procs, info.threads) != (setup.procs, setup.threads) {
            return Err(Error::Bench(format!(
                "a {} {}x{} run reported {}x{}",
                setup.mode, setup.procs, setup.threads, info.procs, info.threads
            )));
        }
        // The largest process of the run, as each measured itself (see
        // `flagmaster_worker::peak_rss_kb` for why not the rusage of the wait).
        let peak_kb = report
            .workers
            .iter()
            .filter_map(|w| w.peak_rss_kb)
            .chain(report.master_peak_rss_kb)
            .max()
            .unwrap_or(0);
        Ok(Sample {
            secs: report.elapsed_secs,
            ok: report.counts.ok as u64,
            bytes: report.bytes,
            cpu_secs,
            peak_rss_mb: peak_kb as f64 / 1024.0,
            blur_secs: report.blur_secs,
            site_cpu_secs,
            site_delayed,
            site_late_ms,
            site_late_p99_ms,
        })
    }
}

/// User + system CPU seconds of `who`: `RUSAGE_SELF` or `RUSAGE_THREAD`.
fn cpu_secs(who: libc::c_int) -> f64 {
    crate::os::getrusage(who).map_or(0.0, |usage| rusage_cpu(&usage))
}

fn rusage_cpu(usage: &libc::rusage) -> f64 {
    let secs = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (secs(usage.ru_utime) + secs(usage.ru_stime)).as_secs_f64()
}

/// Reaps `pid` and returns the CPU seconds of it and its reaped descendants
/// (the worker processes).
fn wait_with_usage(pid: u32) -> Option<f64> {
    crate::os::wait4(pid).map(|usage| rusage_cpu(&usage))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
