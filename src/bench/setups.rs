//! The setups `flagmaster bench --modes` names, and the arguments of a run of each.

use serde::Serialize;

use crate::cli::BenchArgs;
use crate::config::fit_layout;
use crate::error::Error;

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
    pub fn concurrency(&self) -> u32 {
        self.procs * self.threads
    }

    pub fn args(&self) -> Vec<String> {
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

/// The setups of `--modes`, each fitted to `items` as a run fits itself
/// (`config::fit_layout`), so that a row is labelled with what ran.
pub fn setups(args: &BenchArgs, items: usize) -> Result<Vec<Setup>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(mode: &str, procs: u32, threads: u32) -> Setup {
        Setup {
            mode: mode.into(),
            procs,
            threads,
            pin: mode.ends_with(PINNED),
        }
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
}
