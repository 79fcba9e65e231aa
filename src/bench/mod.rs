//! `flagmaster bench`: the classic comparison, measured. The same workload is
//! downloaded serially, with a thread pool, with worker processes and with
//! processes x threads: a short warm-up run of each setup, then `--runs`
//! rounds, one run of each setup per round, every run a fresh `flagmaster`
//! process into a fresh dest, against the built-in DELAY site (or
//! `--base-url`). The table is pure arithmetic over the samples.
//!
//! `setups.rs` names the setups and gives their runs' arguments, `measure.rs`
//! runs one and measures it, `table.rs` folds the samples into rows and
//! prints them, `plot.rs` draws them.

mod measure;
mod plot;
mod setups;
mod table;

use std::path::{Path, PathBuf};

use crate::cli::BenchArgs;
use crate::error::Error;
use crate::input::list;
use crate::input::url::check_base_url;
use crate::site::{Site, SiteConfig};

pub use measure::Sample;
pub use setups::{parse_hybrid, BenchMode, ModeParser, Setup};
pub use table::{rows, Bench, Row};

use measure::Runner;
use plot::Plot;

/// Runs the benchmark and prints its table (or JSON).
pub fn run(args: BenchArgs) -> Result<u8, Error> {
    let names = bench_names(args.items.map(|n| n as usize));
    let setups = setups::fit(&args, names.len());
    // An unwritable plot must not cost minutes of measurements first.
    let plot = args.plot.as_deref().map(Plot::create).transpose()?;
    let timeline = args
        .timeline
        .as_deref()
        .map(|dir| KeptLogs::create(dir, &setups))
        .transpose()?;
    let target = target(&args, &names)?;
    let runner = Runner::new(&names, target.base.clone(), target.site, args.blur)?;
    let blur_note = args
        .blur
        .map_or_else(String::new, |s| format!(", --blur {s}"));
    eprintln!(
        "bench: {} items from {} ({}), {} round(s) of every setup, each warmed up \
         first on {} items per worker loop{blur_note}",
        names.len(),
        target.base,
        target.label,
        args.runs,
        setups::WARM_UP_ITEMS_PER_LOOP,
    );
    for setup in &setups {
        let items = setup.warm_up_items(names.len());
        let warm = runner.run(setup, Some(items), None)?;
        eprintln!(
            "bench: {} {}x{} warm-up on {items} items: {:.3} s, {} ok",
            setup.mode, setup.procs, setup.threads, warm.secs, warm.ok
        );
    }
    // In turn: run r of every setup before run r+1 of any. A machine's speed
    // drifts (on this project's, by several percent within an hour), and all
    // of one setup's runs in a row would give each setup its own stretch of
    // the drift.
    let mut measured: Vec<(Setup, Vec<Sample>)> =
        setups.into_iter().map(|s| (s, Vec::new())).collect();
    for run in 1..=args.runs {
        for (i, (setup, samples)) in measured.iter_mut().enumerate() {
            let logs = timeline
                .as_ref()
                .filter(|_| run == 1)
                .map(|t| t.dirs[i].as_path());
            let sample = runner.run(setup, None, logs)?;
            eprintln!(
                "bench: {} {}x{} run {run}: {:.3} s, {} ok",
                setup.mode, setup.procs, setup.threads, sample.secs, sample.ok
            );
            samples.push(sample);
        }
    }
    let bench = Bench {
        items: names.len(),
        runs: args.runs,
        site: target.label,
        mean_latency_secs: target.mean_latency_secs,
        blur_sigma: args.blur,
        rows: rows(names.len(), target.mean_latency_secs, measured),
    };
    let out = if args.json {
        serde_json::to_string_pretty(&bench).unwrap_or_default() + "\n"
    } else {
        bench.table(args.markdown)
    };
    print!("{out}");
    if let Some(plot) = plot {
        let path = plot.write(&bench)?;
        eprintln!("bench: chart written to {}", path.display());
    }
    if let Some(kept) = timeline {
        let (runs, skipped) = crate::logs::read_runs(&kept.dirs)?;
        if let Some(line) = crate::logs::warning(&skipped) {
            eprintln!("{line}");
        }
        let path = kept.picture.write(&runs, crate::logs::Filter::default())?;
        eprintln!(
            "bench: timeline of the first measured runs written to {}",
            path.display()
        );
    }
    let complete = bench
        .rows
        .iter()
        .all(|r| r.complete_runs == r.samples.len());
    Ok(if complete {
        crate::report::exit::OK
    } else {
        crate::report::exit::SOME_FAILED
    })
}

/// `--timeline DIR`: a log directory per setup under DIR (named after the
/// setup, `proc`, `hybrid`, ...) and the picture, created before any
/// measurement so that a bad DIR is an error at once.
struct KeptLogs {
    dirs: Vec<PathBuf>,
    picture: crate::logs::Timeline,
}

impl KeptLogs {
    fn create(dir: &Path, setups: &[Setup]) -> Result<KeptLogs, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Unwritable {
            what: "--timeline",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(setups.len());
        for setup in setups {
            let mut name = setup.mode.to_string();
            // The same setup twice in --modes: a directory each.
            let mut n = 1;
            while dirs.iter().any(|d| d.ends_with(&name)) {
                n += 1;
                name = format!("{}-{n}", setup.mode);
            }
            dirs.push(dir.join(name));
        }
        let picture = crate::logs::Timeline::create(&dir.join("timeline.svg"))?;
        Ok(KeptLogs { dirs, picture })
    }
}

/// Where the runs download from.
struct Target {
    /// The built-in site, started by the bench; none with `--base-url`.
    site: Option<Site>,
    base: String,
    /// The site, as the table's title names it.
    label: String,
    /// The built-in site's mean latency, in seconds.
    mean_latency_secs: Option<f64>,
}

/// `--base-url`, or the built-in site started on loopback with the bench's
/// latency and image size, serving `names`.
fn target(args: &BenchArgs, names: &[String]) -> Result<Target, Error> {
    if let Some(url) = &args.base_url {
        return Ok(Target {
            site: None,
            base: check_base_url(url)?,
            label: url.clone(),
            mean_latency_secs: None,
        });
    }
    let site = crate::site::start_loopback(
        SiteConfig {
            names: names.to_vec(),
            delay_ms: args.delay_ms,
            jitter_ms: args.jitter_ms,
            error_rate: 0.0,
            image_size: args.image_size,
        },
        None,
    )?;
    let (w, h) = args.image_size;
    Ok(Target {
        base: site.base_url(),
        site: Some(site),
        label: format!(
            "built-in, {}-{} ms latency, {w}x{h} px",
            args.delay_ms,
            args.delay_ms + args.jitter_ms
        ),
        mean_latency_secs: Some((args.delay_ms as f64 + args.jitter_ms as f64 / 2.0) / 1000.0),
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
