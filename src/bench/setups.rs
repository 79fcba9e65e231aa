//! The setups `flagmaster bench --modes` names, each fitted to the workload,
//! and the arguments of a run of each. clap parses the names, so a misspelt
//! one is a usage error before anything starts.

use std::ffi::OsStr;
use std::fmt;

use clap::builder::{EnumValueParser, PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::ValueEnum;
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::plan::fit_layout;

/// A setup as `--modes` names it. The names are clap's and serde's kebab-case
/// of the variants (a test checks they agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchMode {
    /// One worker loop in the main thread.
    Serial,
    /// A pool of --threads threads in one process.
    Threads,
    /// --procs worker processes of one thread each.
    Proc,
    /// --hybrid PxT: P worker processes of T threads each.
    Hybrid,
    /// proc, with each worker process pinned to a CPU (--pin).
    ProcPinned,
    /// hybrid, with each worker process pinned to a CPU (--pin).
    HybridPinned,
}

impl BenchMode {
    /// Worker processes pinned to the CPUs in turn (`--pin`).
    pub fn pinned(self) -> bool {
        match self {
            BenchMode::ProcPinned | BenchMode::HybridPinned => true,
            BenchMode::Serial | BenchMode::Threads | BenchMode::Proc | BenchMode::Hybrid => false,
        }
    }

    /// Processes x threads that `args` ask of this setup, before fitting.
    fn asked(self, args: &BenchArgs) -> (u32, u32) {
        match self {
            BenchMode::Serial => (1, 1),
            BenchMode::Threads => (1, args.threads),
            BenchMode::Proc | BenchMode::ProcPinned => (args.procs, 1),
            BenchMode::Hybrid | BenchMode::HybridPinned => args.hybrid,
        }
    }
}

impl fmt::Display for BenchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.to_possible_value().expect("no mode is skipped");
        f.write_str(value.get_name())
    }
}

/// The parser of a `--modes` entry: clap's own for [`BenchMode`], with the
/// valid names in the first line of its error, since flagmaster prints a usage
/// error as one line and clap's puts them on the next.
#[derive(Clone, Copy, Debug)]
pub struct ModeParser;

impl TypedValueParser for ModeParser {
    type Value = BenchMode;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<BenchMode, clap::Error> {
        EnumValueParser::<BenchMode>::new()
            .parse_ref(cmd, arg, value)
            .map_err(|_| {
                let names: Vec<String> = BenchMode::value_variants()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let message = format!(
                    "invalid value '{}' for '--modes': expected one of {}\n",
                    value.to_string_lossy(),
                    names.join(", ")
                );
                clap::Error::raw(ErrorKind::InvalidValue, message).with_cmd(cmd)
            })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let values = BenchMode::value_variants()
            .iter()
            .filter_map(ValueEnum::to_possible_value);
        Some(Box::new(values))
    }
}

/// `--hybrid PxT`: worker processes x threads, each at least 1.
pub fn parse_hybrid(s: &str) -> Result<(u32, u32), String> {
    s.split_once('x')
        .and_then(|(p, t)| Some((p.parse::<u32>().ok()?, t.parse::<u32>().ok()?)))
        .filter(|&(p, t)| p > 0 && t > 0)
        .ok_or_else(|| "expected PxT, e.g. 4x8".to_string())
}

/// Items per worker loop of a warm-up run: enough for every loop to start,
/// connect and fetch a few, so that the measured runs find the executable, the
/// site and the machine warm; and a few seconds at most, where a warm-up of the
/// whole workload took as long as a measured run (serially, the items times
/// the site's mean latency).
pub const WARM_UP_ITEMS_PER_LOOP: usize = 4;

/// One configuration to measure: a mode and the layout its runs have.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setup {
    pub mode: BenchMode,
    pub procs: u32,
    pub threads: u32,
    /// `mode.pinned()`, spelt out for the JSON.
    pub pin: bool,
}

impl Setup {
    pub fn new(mode: BenchMode, procs: u32, threads: u32) -> Setup {
        Setup {
            mode,
            procs,
            threads,
            pin: mode.pinned(),
        }
    }

    pub fn concurrency(&self) -> u32 {
        self.procs * self.threads
    }

    /// Items of this setup's warm-up run, of a workload of `items`: the first
    /// [`WARM_UP_ITEMS_PER_LOOP`] per worker loop. Never fewer than the loops,
    /// so the run keeps the setup's layout (`config::fit_layout`).
    pub fn warm_up_items(&self, items: usize) -> usize {
        items.min(WARM_UP_ITEMS_PER_LOOP * self.concurrency() as usize)
    }

    /// The arguments of a run of this setup.
    pub fn args(&self) -> Vec<String> {
        let (procs, threads) = (self.procs.to_string(), self.threads.to_string());
        let mut args: Vec<String> = match self.mode {
            BenchMode::Serial => vec!["--mode", "serial"],
            BenchMode::Threads => vec!["--mode", "threads", "--threads", &threads],
            BenchMode::Proc
            | BenchMode::ProcPinned
            | BenchMode::Hybrid
            | BenchMode::HybridPinned => {
                vec!["--mode", "proc", "--procs", &procs, "--threads", &threads]
            }
        }
        .into_iter()
        .map(String::from)
        .collect();
        if self.pin {
            args.push("--pin".into());
        }
        args
    }
}

/// The setups of `--modes`, each fitted to `items` as a run fits itself
/// (`config::fit_layout`), so that a row is labelled with what ran.
pub fn fit(args: &BenchArgs, items: usize) -> Vec<Setup> {
    args.modes
        .iter()
        .map(|&mode| {
            let (procs, threads) = mode.asked(args);
            let (procs, threads) = fit_layout(procs, threads, items);
            Setup::new(mode, procs, threads)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(mode: &str, procs: u32, threads: u32) -> Setup {
        Setup::new(BenchMode::from_str(mode, false).unwrap(), procs, threads)
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
    }

    #[test]
    fn warm_up_runs_are_short_and_keep_the_layout() {
        assert_eq!(setup("serial", 1, 1).warm_up_items(2000), 4);
        assert_eq!(setup("threads", 1, 8).warm_up_items(2000), 32);
        assert_eq!(setup("hybrid", 4, 8).warm_up_items(2000), 128);
        assert_eq!(setup("threads", 1, 3).warm_up_items(12), 12);
        for items in [1, 5, 12, 100, 2000] {
            for (p, t) in [(1, 1), (1, 8), (8, 1), (4, 8), (3, 3), (1000, 1)] {
                let (p, t) = fit_layout(p, t, items);
                let warm = setup("hybrid", p, t).warm_up_items(items);
                assert_eq!(fit_layout(p, t, warm), (p, t), "{p}x{t} on {items}");
            }
        }
    }

    #[test]
    fn names_are_the_same_for_clap_and_the_json() {
        let names: Vec<String> = BenchMode::value_variants()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "serial",
                "threads",
                "proc",
                "hybrid",
                "proc-pinned",
                "hybrid-pinned"
            ]
        );
        for mode in BenchMode::value_variants() {
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                mode.to_string(),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn modes_and_hybrid_are_checked_by_clap() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["flagmaster", "bench"].iter().chain(args)).map(|cli| {
                match cli.command {
                    Some(Command::Bench(args)) => (args.modes, args.hybrid),
                    other => panic!("{other:?}"),
                }
            })
        };
        let (modes, hybrid) = parse(&[]).unwrap();
        assert_eq!(
            modes,
            [
                BenchMode::Serial,
                BenchMode::Threads,
                BenchMode::Proc,
                BenchMode::Hybrid
            ]
        );
        assert_eq!(hybrid, (4, 8));
        let (modes, hybrid) =
            parse(&["--modes", "proc-pinned,threads", "--hybrid", "2x3"]).unwrap();
        assert_eq!(modes, [BenchMode::ProcPinned, BenchMode::Threads]);
        assert_eq!(hybrid, (2, 3));
        let error = parse(&["--modes", "threads,threads-pinned"]).unwrap_err();
        let first = error.render().to_string();
        let first = first.lines().next().unwrap();
        assert_eq!(
            first,
            "error: invalid value 'threads-pinned' for '--modes': expected one of serial, \
             threads, proc, hybrid, proc-pinned, hybrid-pinned"
        );
        for bad in ["4by8", "0x8", "4x0", "4x", "x8"] {
            assert!(parse(&["--hybrid", bad]).is_err(), "{bad}");
        }
    }
}
