//! The master's side of politeness: which caps a run gets (with the default for
//! remote sites), the one-line reminder of them, and the shared region that
//! carries them to every worker (the waiting itself is in
//! `flagmaster_worker::polite`).

use std::path::PathBuf;

use flagmaster_worker::polite::{host_port, Limits, Region};

use crate::error::Error;

/// Requests in flight to one remote host when `--per-host` is not given: the
/// default concurrency (8) and no more, whatever `--procs` x `--threads` is.
pub const REMOTE_PER_HOST: u32 = 8;

/// The caps of a run and where they come from.
#[derive(Clone, Debug, PartialEq)]
pub struct Politeness {
    pub limits: Limits,
    /// The site is not on a loopback address: a public server, maybe.
    pub remote: bool,
    /// `--per-host` was not given and [`REMOTE_PER_HOST`] applies.
    pub default_per_host: bool,
}

impl Politeness {
    pub fn new(max_rps: Option<f64>, per_host: Option<u32>, remote: bool) -> Politeness {
        let default_per_host = remote && per_host.is_none();
        Politeness {
            limits: Limits {
                max_rps,
                per_host: per_host.or(default_per_host.then_some(REMOTE_PER_HOST)),
            },
            remote,
            default_per_host,
        }
    }

    /// The same caps as given on the command line, for a site that is (or is
    /// not) remote after all.
    pub fn with_remote(self, remote: bool) -> Politeness {
        let per_host = self.limits.per_host.filter(|_| !self.default_per_host);
        Politeness::new(self.limits.max_rps, per_host, remote)
    }

    /// The reminder printed with the run's notes; `None` for a loopback site
    /// without caps.
    pub fn note(&self, base_url: &str) -> Option<String> {
        if !self.limits.any() {
            return None;
        }
        let host = host_port(base_url).unwrap_or_else(|| base_url.to_string());
        let mut parts = Vec::new();
        if let Some(n) = self.limits.per_host {
            let default = if self.default_per_host {
                " (the default for remote sites; --per-host N to change)"
            } else {
                ""
            };
            parts.push(format!(
                "at most {n} connection{} to {host} at once{default}",
                if n == 1 { "" } else { "s" }
            ));
        }
        if let Some(r) = self.limits.max_rps {
            parts.push(format!("{r} requests/s"));
        }
        let mut line = format!("Politeness: {}", parts.join(", "));
        if self.remote {
            line += "; please be gentle with public servers";
        }
        Some(line)
    }

    /// A warning when `concurrency` workers sharing `--max-rps` would queue
    /// for longer than an item may take: a slot beyond an item's deadline fails
    /// it at once, so such a run would end with errors rather than slowly.
    pub fn warning(&self, concurrency: u32, timeout_ms: u64) -> Option<String> {
        let rps = self.limits.max_rps?;
        let workers = f64::from(concurrency.min(self.limits.per_host.unwrap_or(u32::MAX)));
        let queue_secs = workers / rps;
        let timeout_secs = timeout_ms as f64 / 1000.0;
        (queue_secs > timeout_secs).then(|| {
            format!(
                "{workers} concurrent requests at {rps} requests/s queue up to {queue_secs:.1} s \
                 for a slot, longer than --timeout {timeout_secs} s: items may fail with \
                 \"rate limit wait exceeds timeout\"; use fewer workers or a longer --timeout"
            )
        })
    }

    /// The shared region of the run, with a row for each of `procs` worker
    /// processes; `None` when no cap is in effect, so an unlimited run does
    /// not pay for it at all.
    pub fn region(&self, procs: u32) -> Result<Option<Region>, Error> {
        if !self.limits.any() {
            return Ok(None);
        }
        let dir = Region::default_dir();
        match Region::create(&dir, self.limits, procs) {
            Ok(region) => Ok(Some(region)),
            // /dev/shm may be missing or full in a container; the temporary
            // directory works just as well, at the cost of a page in its cache.
            Err(_) if dir != std::env::temp_dir() => {
                Region::create(&std::env::temp_dir(), self.limits, procs)
                    .map(Some)
                    .map_err(|source| unwritable(std::env::temp_dir(), source))
            }
            Err(source) => Err(unwritable(dir, source)),
        }
    }
}

fn unwritable(path: PathBuf, source: std::io::Error) -> Error {
    Error::Unwritable {
        what: "the politeness region in",
        path,
        source,
    }
}

/// `--max-rps`: requests per second, more than 0; at most 10^9, since the
/// schedule counts in nanoseconds.
pub fn parse_max_rps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e9 => Ok(v),
        _ => Err("expected requests per second, more than 0 and at most 1000000000".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: &str = "https://www.sciencekids.co.nz/images/pictures/flags96";
    const LOCAL: &str = "http://127.0.0.1:8000/images/pictures/flags96";

    #[test]
    fn remote_sites_get_a_modest_default_and_a_reminder() {
        let p = Politeness::new(None, None, true);
        assert_eq!(p.limits.per_host, Some(REMOTE_PER_HOST));
        assert_eq!(
            p.note(REMOTE).unwrap(),
            "Politeness: at most 8 connections to www.sciencekids.co.nz:443 at once \
             (the default for remote sites; --per-host N to change); \
             please be gentle with public servers"
        );
        let p = Politeness::new(Some(2.5), Some(1), true);
        assert_eq!(
            p.note(REMOTE).unwrap(),
            "Politeness: at most 1 connection to www.sciencekids.co.nz:443 at once, \
             2.5 requests/s; please be gentle with public servers"
        );
    }

    #[test]
    fn loopback_sites_are_capped_only_when_asked() {
        let p = Politeness::new(None, None, false);
        assert!(!p.limits.any());
        assert_eq!(p.note(LOCAL), None);
        assert!(p.region(8).unwrap().is_none());
        let p = Politeness::new(Some(20.0), None, false);
        assert_eq!(p.note(LOCAL).unwrap(), "Politeness: 20 requests/s");
        let region = p.region(8).unwrap().unwrap();
        assert!(region.path().exists());
        let path = region.path().to_path_buf();
        drop(region);
        assert!(!path.exists(), "the region is removed with its handle");
    }

    #[test]
    fn a_rate_too_low_for_the_workers_and_timeout_is_warned_about() {
        let p = Politeness::new(Some(2.0), None, false);
        assert_eq!(p.warning(8, 30_000), None);
        let w = p.warning(64, 30_000).unwrap();
        assert!(w.contains("queue up to 32.0 s"), "{w}");
        // The per-host cap limits who can queue for a slot at once.
        let p = Politeness::new(Some(2.0), Some(4), false);
        assert_eq!(p.warning(64, 30_000), None);
        assert!(Politeness::new(None, None, true).warning(64, 1).is_none());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_max_rps("20"), Ok(20.0));
        assert_eq!(parse_max_rps("0.5"), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "x", "1e10", ""] {
            assert!(parse_max_rps(bad).is_err(), "{bad}");
        }
    }
}
