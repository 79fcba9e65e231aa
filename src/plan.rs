//! What is known once the items are: the layout fitted to them, how they are
//! chunked, whether the environment's proxy applies, and the politeness caps.
//!
//! [`crate::config::RunConfig`] is what the user asked for, checked once and
//! never changed; a [`Plan`] is what the run does about it.

use std::path::PathBuf;

use flagmaster_worker::protocol::FetchSettings;
use flagmaster_worker::proxy::ProxySettings;

use crate::cli::Mode;
use crate::config::RunConfig;
use crate::polite::Politeness;

/// The largest automatic chunk.
const MAX_AUTO_CHUNK: usize = 32;

/// How this run fetches its items.
#[derive(Clone, Debug)]
pub struct Plan {
    pub mode: Mode,
    /// Worker processes (1 unless proc mode), fitted to the items.
    pub procs: u32,
    /// Threads per worker process, or the loops of threads mode, fitted.
    pub threads: u32,
    /// The `--procs` x `--threads` asked for, when fitting changed it.
    pub asked: Option<(u32, u32)>,
    pub pin: bool,
    pub chunking: Chunking,
    /// The run's settings, with the environment's proxy dropped when every
    /// item is on this machine.
    pub fetch: FetchSettings,
    /// The caps, with "remote" decided by the items' hosts.
    pub polite: Politeness,
    pub dest: PathBuf,
    pub log_dir: PathBuf,
}

impl Plan {
    /// The plan for fetching `to_fetch` items with `fetch` (the run's
    /// settings, trusting the built-in site's CA when it speaks HTTPS);
    /// `remote` says whether any item is on a host other than this machine.
    pub fn new(config: &RunConfig, fetch: &FetchSettings, to_fetch: usize, remote: bool) -> Plan {
        // With a fixed `--chunk-size` a loop takes a whole chunk, so only as
        // many loops as there are chunks can have work.
        let units = match config.chunk_size {
            Some(n) => to_fetch.div_ceil(n.max(1)),
            None => to_fetch,
        };
        let (procs, threads) = fit_layout(config.procs, config.threads, units);
        let asked = (config.procs, config.threads);
        let chunking = match config.chunk_size {
            Some(n) => Chunking::Fixed(n),
            None => Chunking::Guided {
                max: MAX_AUTO_CHUNK,
                loops: (procs * threads) as usize,
            },
        };
        Plan {
            mode: config.mode,
            procs,
            threads,
            asked: (asked != (procs, threads)).then_some(asked),
            pin: config.pin,
            chunking,
            fetch: FetchSettings {
                // The environment's proxies are for other hosts only.
                proxy: if remote || !fetch.proxy.direct_loopback {
                    fetch.proxy.clone()
                } else {
                    ProxySettings::default()
                },
                ..fetch.clone()
            },
            polite: config.polite.clone().with_remote(remote),
            dest: config.dest.clone(),
            log_dir: config.log_dir.clone(),
        }
    }

    /// Worker loops that run at once.
    pub fn concurrency(&self) -> u32 {
        self.procs * self.threads
    }
}

/// The layout that runs `items` with `procs` x `threads` asked for: no more
/// processes than items, and no more threads in each than its share of them.
///
/// A worker loop with nothing to fetch still costs its start: about 1 ms of
/// CPU per worker process and 25-35 us per thread, on the same cores as the
/// loops that do have work. A 1-file run with `--procs 8 --threads 32` took
/// 19-20 ms against 2 ms serially; fitted (1 x 1), 4 ms. Processes are kept
/// before threads: `--procs N` is the comparison a user asked to see, with one
/// log per process, and only fewer items than processes takes one away.
pub fn fit_layout(procs: u32, threads: u32, items: usize) -> (u32, u32) {
    let items = u32::try_from(items.max(1)).unwrap_or(u32::MAX);
    let procs = procs.min(items);
    (procs, threads.min(items.div_ceil(procs.max(1))))
}

/// How many items a worker gets per `Want`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunking {
    /// Always this many (`--chunk-size`).
    Fixed(usize),
    /// Guided self-scheduling: a share of what is left, `remaining / (2 x
    /// loops)`, between 1 and `max`. Chunks shrink as the queue drains, so
    /// the last ones are single items and no worker loop is left holding a
    /// long chunk while the others idle; a fixed size that does not divide the
    /// work evenly costs up to a whole chunk of latency at the tail.
    Guided { max: usize, loops: usize },
}

impl Chunking {
    /// The size of the next chunk when `remaining` items are queued.
    pub fn next(self, remaining: usize) -> usize {
        match self {
            Chunking::Fixed(n) => n.max(1),
            Chunking::Guided { max, loops } => remaining.div_ceil(2 * loops.max(1)).clamp(1, max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_fits_the_items() {
        // Enough items: as asked.
        assert_eq!(fit_layout(8, 32, 2000), (8, 32));
        assert_eq!(fit_layout(8, 32, 256), (8, 32));
        // Fewer: processes kept while each has an item, threads shrunk first.
        assert_eq!(fit_layout(8, 32, 195), (8, 25));
        assert_eq!(fit_layout(3, 4, 7), (3, 3));
        assert_eq!(fit_layout(1, 256, 3), (1, 3));
        assert_eq!(fit_layout(8, 1, 5), (5, 1));
        assert_eq!(fit_layout(8, 32, 1), (1, 1));
        // Nothing to fetch (a re-run that skips everything) starts nothing,
        // but the layout stays valid.
        assert_eq!(fit_layout(8, 32, 0), (1, 1));
    }

    #[test]
    fn guided_chunks_shrink_to_single_items_at_the_tail() {
        let guided = Chunking::Guided {
            max: 32,
            loops: 100,
        };
        assert_eq!(guided.next(20_000), 32, "capped");
        assert_eq!(guided.next(3_000), 15);
        assert_eq!(guided.next(150), 1);
        assert_eq!(guided.next(1), 1);
        // Handing out 20000 items to 100 loops: the last chunks are 1 item.
        let (mut left, mut sizes) = (20_000, Vec::new());
        while left > 0 {
            let n = guided.next(left).min(left);
            sizes.push(n);
            left -= n;
        }
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "never grows");
        assert_eq!(sizes.iter().rev().take(100).max(), Some(&1));
        assert_eq!(Chunking::Fixed(7).next(3), 7);
        assert_eq!(Chunking::Fixed(0).next(3), 1);
    }
}
