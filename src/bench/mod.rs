//! `flagmaster bench`: the classic comparison, measured. The same workload is
//! downloaded serially, with a thread pool, with worker processes and with
//! processes x threads, a warm-up round and then `--runs` rounds, one run of
//! each setup per round, every run a fresh `flagmaster` process into a fresh
//! dest, against the built-in DELAY site (or `--base-url`). The table is pure
//! arithmetic over the samples.

mod measure;
mod plot;
mod setups;
mod table;

use crate::cli::BenchArgs;
use crate::config::check_base_url;
use crate::error::Error;
use crate::list;
use crate::site::SiteConfig;

pub use measure::Sample;
pub use setups::{parse_hybrid, BenchMode, ModeParser, Setup};
pub use table::{rows, Bench, Row};

use measure::measure;
use plot::{open_plot, write_plot};

/// Runs the benchmark and prints its table (or JSON).
pub fn run(args: BenchArgs) -> Result<u8, Error> {
    let names = bench_names(args.items.map(|n| n as usize));
    let setups = setups::fit(&args, names.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_workload() {
        assert_eq!(bench_names(Some(200)).len(), 200);
        assert_eq!(bench_names(Some(200))[199], "Extra_000003");
    }
}
