//! The comparison: samples folded into rows (pure arithmetic), and the rows
//! as a text or markdown table.

use std::fmt::Write as _;

use serde::Serialize;

use super::measure::Sample;
use super::setups::{BenchMode, Setup};

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
        .find(|r| r.setup.mode == BenchMode::Serial)
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
                    r.setup.mode.to_string(),
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
        use clap::ValueEnum;
        Setup::new(BenchMode::from_str(mode, false).unwrap(), procs, threads)
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
}
