//! Politeness over the whole run: at most R requests per second (`--max-rps`)
//! and at most N requests in flight to one host (`--per-host`), counted across
//! every thread of every worker process, not per worker.
//!
//! The state lives in a small file mapped `MAP_SHARED` by the master and by
//! every worker process (serial and threads mode use the master's own mapping),
//! so the one code path below is the same in every mode and no request ever
//! waits for a round trip to the master. Every value is an `AtomicU64` in that
//! region, changed with compare-and-swap only:
//!
//! - the rate cap is a schedule on the system-wide `CLOCK_MONOTONIC` (an
//!   `Instant` is not comparable across processes): an attempt reserves the slot
//!   `max(now, next)` and moves `next` on by 1/R, then sleeps until its slot.
//!   Slots are at least 1/R apart, so any half-open second holds at most R of
//!   them, and there is no burst after an idle spell.
//! - the per-host cap is a small open-addressed table of (host hash, requests
//!   in flight). A [`Pass`] holds one unit of it and gives it back when dropped,
//!   whatever ended the attempt (an answer, an error, a panic unwinding). Each
//!   worker process also counts what it holds in its own row, so that when a
//!   process dies without unwinding (SIGKILL) the master gives its units back
//!   ([`Gate::reclaim`]) instead of losing them for the rest of the run.
//!
//! Waiting is bounded: it ends when the run is stopping, and never goes past the
//! item's deadline; an attempt that would have to wait longer is refused at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::os::SharedWords;

/// Marks a region written by this version of the layout.
const MAGIC: u64 = u64::from_le_bytes(*b"FMPOLIT1");
/// Distinct hosts tracked by the per-host table. A run talks to one base URL;
/// beyond this many hosts, hosts share a slot, so the cap then covers them
/// together: stricter, never looser.
pub const HOSTS: usize = 64;

// Layout, in 8-byte words: a header, the host table (key, count), and one row
// of held counts per process (row 0: the master, row N: worker process N).
const W_MAGIC: usize = 0;
const W_INTERVAL_NS: usize = 1;
const W_PER_HOST: usize = 2;
const W_ROWS: usize = 3;
const W_NEXT_NS: usize = 4;
const HEADER_WORDS: usize = 8;
const TABLE: usize = HEADER_WORDS;
const HELD: usize = TABLE + 2 * HOSTS;

/// Longest single sleep while waiting, so a stop is noticed promptly.
const STOP_POLL: Duration = Duration::from_millis(20);
/// First and longest pause between two looks at a full per-host slot.
const HOST_POLL_MIN: Duration = Duration::from_millis(1);
const HOST_POLL_MAX: Duration = Duration::from_millis(8);

/// The caps of a run; `None` is no cap.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    pub max_rps: Option<f64>,
    pub per_host: Option<u32>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.max_rps.is_some() || self.per_host.is_some()
    }
}

/// Why an attempt was not let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("interrupted")]
    Stopped,
    #[error("rate limit wait exceeds timeout")]
    RateWait,
    #[error("per-host limit wait exceeds timeout")]
    HostWait,
}

/// One process's view of the shared region.
pub struct Gate {
    map: SharedWords,
    /// This process's row of held counts.
    row: usize,
    interval_ns: u64,
    per_host: u64,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("row", &self.row)
            .field("interval_ns", &self.interval_ns)
            .field("per_host", &self.per_host)
            .finish()
    }
}

/// The region file of a run, removed when dropped.
pub struct Region {
    pub gate: Arc<Gate>,
    path: tempfile::TempPath,
}

impl Region {
    /// Creates the region for `limits` in `dir`, with a row for the master
    /// (row 0) and for each of `procs` worker processes.
    pub fn create(dir: &Path, limits: Limits, procs: u32) -> io::Result<Region> {
        let rows = procs as usize + 1;
        let file = tempfile::Builder::new()
            .prefix(".flagmaster-polite-")
            .tempfile_in(dir)?;
        file.as_file().set_len(words(rows) as u64 * 8)?;
        let map = SharedWords::map(file.as_file())?;
        let interval_ns = limits.max_rps.map_or(0, interval_ns);
        let per_host = limits.per_host.map_or(0, u64::from);
        let gate = Gate {
            map,
            row: 0,
            interval_ns,
            per_host,
        };
        // A new file reads as zeros: no host known, nothing held, next slot now.
        gate.word(W_INTERVAL_NS)
            .store(interval_ns, Ordering::Relaxed);
        gate.word(W_PER_HOST).store(per_host, Ordering::Relaxed);
        gate.word(W_ROWS).store(rows as u64, Ordering::Relaxed);
        gate.word(W_MAGIC).store(MAGIC, Ordering::Release);
        Ok(Region {
            gate: Arc::new(gate),
            path: file.into_temp_path(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the master's region goes: shared memory when the system has it
    /// (nothing touches a disk), else the temporary directory.
    pub fn default_dir() -> PathBuf {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    }
}

/// Spacing of the rate schedule for `rps` requests per second, at least 1 ns.
fn interval_ns(rps: f64) -> u64 {
    let ns = (1e9 / rps).round();
    if ns.is_finite() && ns >= 1.0 {
        ns as u64
    } else {
        1
    }
}

/// Size of a region with `rows` rows, in words.
fn words(rows: usize) -> usize {
    HELD + rows * HOSTS
}

impl Gate {
    /// Maps the master's region in a worker process, as row `row`.
    pub fn open(path: &Path, row: u32) -> io::Result<Gate> {
        let invalid = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        };
        let file: File = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        if len < (HEADER_WORDS * 8) as u64 {
            return Err(invalid("too short for a politeness region"));
        }
        let map = SharedWords::map(&file)?;
        let mut gate = Gate {
            map,
            row: row as usize,
            interval_ns: 0,
            per_host: 0,
        };
        if gate.word(W_MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(invalid("not a politeness region"));
        }
        let rows = usize::try_from(gate.word(W_ROWS).load(Ordering::Relaxed)).unwrap_or(0);
        if len < words(rows) as u64 * 8 || gate.row >= rows {
            return Err(invalid("region smaller than its layout"));
        }
        gate.interval_ns = gate.word(W_INTERVAL_NS).load(Ordering::Relaxed);
        gate.per_host = gate.word(W_PER_HOST).load(Ordering::Relaxed);
        Ok(gate)
    }

    /// The caps this region enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_rps: (self.interval_ns > 0).then(|| 1e9 / self.interval_ns as f64),
            per_host: u32::try_from(self.per_host).ok().filter(|&n| n > 0),
        }
    }

    /// Word `index` of the region. Every index used is below the size the
    /// layout promises, which `create` and `open` have checked.
    fn word(&self, index: usize) -> &AtomicU64 {
        self.map.word(index)
    }

    fn key(&self, slot: usize) -> &AtomicU64 {
        self.word(TABLE + 2 * slot)
    }

    fn count(&self, slot: usize) -> &AtomicU64 {
        self.word(TABLE + 2 * slot + 1)
    }

    fn held(&self, row: usize, slot: usize) -> &AtomicU64 {
        self.word(HELD + row * HOSTS + slot)
    }

    /// Waits until one more request to `host` (see [`host_key`]) is allowed,
    /// for at most `budget`. The per-host unit is taken first and the rate slot
    /// last, so a request goes out right after its slot and slots are not used
    /// up by attempts still waiting for a connection.
    pub fn admit(&self, host: u64, budget: Duration) -> Result<Pass<'_>, Refused> {
        let deadline = monotonic_ns().saturating_add(nanos(budget));
        let pass = Pass {
            gate: self,
            slot: if self.per_host > 0 {
                Some(self.take_host(host, deadline)?)
            } else {
                None
            },
        };
        if self.interval_ns > 0 {
            let slot = self.reserve(deadline)?;
            sleep_until(slot)?;
        }
        Ok(pass)
    }

    /// Reserves the next slot of the rate schedule, unless it lies past `deadline`.
    fn reserve(&self, deadline: u64) -> Result<u64, Refused> {
        let next = self.word(W_NEXT_NS);
        let mut seen = next.load(Ordering::Acquire);
        loop {
            let slot = seen.max(monotonic_ns());
            if slot > deadline {
                return Err(Refused::RateWait);
            }
            let after = slot.saturating_add(self.interval_ns);
            match next.compare_exchange_weak(seen, after, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(slot),
                Err(actual) => seen = actual,
            }
        }
    }

    /// Takes one unit of `host`'s per-host allowance, polling while it is full.
    fn take_host(&self, host: u64, deadline: u64) -> Result<usize, Refused> {
        let slot = self.find_host(host);
        let held = self.held(self.row, slot);
        let count = self.count(slot);
        let mut poll = HOST_POLL_MIN;
        loop {
            let now_count = count.load(Ordering::Acquire);
            if now_count < self.per_host {
                // Held just before the count, and only around the swap (a
                // waiter holds nothing): a process killed in between can make
                // the master give back one unit too many, never lose one.
                held.fetch_add(1, Ordering::AcqRel);
                if count
                    .compare_exchange_weak(
                        now_count,
                        now_count + 1,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    return Ok(slot);
                }
                held.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            if crate::stopping() {
                return Err(Refused::Stopped);
            }
            if monotonic_ns() >= deadline {
                return Err(Refused::HostWait);
            }
            let left = Duration::from_nanos(deadline.saturating_sub(monotonic_ns()));
            std::thread::sleep(poll.min(left));
            poll = (poll * 2).min(HOST_POLL_MAX);
        }
    }

    /// The table slot of `host`, claiming a free one on first use.
    fn find_host(&self, host: u64) -> usize {
        let start = (host % HOSTS as u64) as usize;
        for probe in 0..HOSTS {
            let slot = (start + probe) % HOSTS;
            let key = self.key(slot);
            match key.load(Ordering::Acquire) {
                k if k == host => return slot,
                0 => match key.compare_exchange(0, host, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return slot,
                    Err(k) if k == host => return slot,
                    Err(_) => {}
                },
                _ => {}
            }
        }
        start
    }

    fn release(&self, slot: usize) {
        saturating_decrement(self.count(slot));
        saturating_decrement(self.held(self.row, slot));
    }

    /// Gives back what worker process `row` held when it died; returns how many
    /// units. Called by the master once the process has been reaped.
    pub fn reclaim(&self, row: u32) -> u64 {
        let row = row as usize;
        let rows = usize::try_from(self.word(W_ROWS).load(Ordering::Relaxed)).unwrap_or(0);
        if self.per_host == 0 || row == 0 || row >= rows {
            return 0;
        }
        let mut total = 0;
        for slot in 0..HOSTS {
            let n = self.held(row, slot).swap(0, Ordering::AcqRel);
            if n > 0 {
                let _ = self
                    .count(slot)
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                        Some(c.saturating_sub(n))
                    });
                total += n;
            }
        }
        total
    }

    /// Requests in flight to `host` right now (for tests and diagnostics).
    pub fn in_flight(&self, host: u64) -> u64 {
        self.count(self.find_host(host)).load(Ordering::Acquire)
    }
}

fn saturating_decrement(word: &AtomicU64) {
    let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
        Some(c.saturating_sub(1))
    });
}

/// Permission for one attempt; gives its per-host unit back when dropped.
#[must_use]
pub struct Pass<'a> {
    gate: &'a Gate,
    slot: Option<usize>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.gate.release(slot);
        }
    }
}

/// Sleeps until `slot` on the monotonic clock, unless the run stops first.
fn sleep_until(slot: u64) -> Result<(), Refused> {
    loop {
        let now = monotonic_ns();
        if now >= slot {
            return Ok(());
        }
        if crate::stopping() {
            return Err(Refused::Stopped);
        }
        std::thread::sleep(Duration::from_nanos(slot - now).min(STOP_POLL));
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`, which every process of the machine shares.
pub fn monotonic_ns() -> u64 {
    crate::os::monotonic_ns()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `host:port` of a URL (the port from the scheme when not given), lower-cased.
pub fn host_port(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("https")) => 443,
        _ => 80,
    };
    Some(format!("{host}:{port}"))
}

/// The per-host table key of a URL: a 64-bit FNV-1a hash of its `host:port`
/// (the whole URL if it has no host), never 0, which marks a free slot.
pub fn host_key(url: &str) -> u64 {
    let text = host_port(url);
    let bytes = text.as_deref().unwrap_or(url).as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(limits: Limits, procs: u32) -> Region {
        Region::create(&std::env::temp_dir(), limits, procs).unwrap()
    }

    #[test]
    fn hosts_and_keys() {
        assert_eq!(
            host_port("https://WWW.Example.org/a/b.jpg").as_deref(),
            Some("www.example.org:443")
        );
        assert_eq!(
            host_port("http://127.0.0.1:8000/x").as_deref(),
            Some("127.0.0.1:8000")
        );
        assert_eq!(host_key("http://h:1/a"), host_key("http://H:1/b"));
        assert_ne!(host_key("http://h:1/a"), host_key("http://h:2/a"));
        assert_ne!(host_key("not a url"), 0);
    }

    #[test]
    fn per_host_units_are_released_on_every_path() {
        let r = region(
            Limits {
                max_rps: None,
                per_host: Some(2),
            },
            2,
        );
        let host = host_key("http://127.0.0.1:9/x");
        let budget = Duration::from_millis(30);
        let a = r.gate.admit(host, budget).unwrap();
        let b = r.gate.admit(host, budget).unwrap();
        assert_eq!(r.gate.in_flight(host), 2);
        // Full: a third waits out its budget and is refused.
        assert_eq!(r.gate.admit(host, budget).err(), Some(Refused::HostWait));
        // A refused waiter holds nothing a reclaim could give back.
        assert_eq!(
            r.gate
                .held(0, r.gate.find_host(host))
                .load(Ordering::SeqCst),
            2
        );
        // Another host is not affected.
        let other = host_key("http://127.0.0.2:9/x");
        drop(r.gate.admit(other, budget).unwrap());
        drop(a);
        assert_eq!(r.gate.in_flight(host), 1);
        // A panic while holding a pass gives it back while unwinding.
        let gate = &r.gate;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _pass = gate.admit(host, budget).unwrap();
            panic!("attempt panicked");
        }));
        assert!(result.is_err());
        assert_eq!(r.gate.in_flight(host), 1);
        drop(b);
        assert_eq!(r.gate.in_flight(host), 0);
    }

    #[test]
    fn a_dead_process_units_are_reclaimed() {
        let r = region(
            Limits {
                max_rps: None,
                per_host: Some(3),
            },
            2,
        );
        let worker = Gate::open(r.path(), 2).unwrap();
        assert_eq!(worker.limits(), r.gate.limits());
        let host = host_key("http://127.0.0.1:9/x");
        let budget = Duration::from_millis(10);
        let held = [
            worker.admit(host, budget).unwrap(),
            worker.admit(host, budget).unwrap(),
        ];
        let mine = r.gate.admit(host, budget).unwrap();
        assert_eq!(r.gate.in_flight(host), 3);
        // The worker dies without unwinding: its passes are never dropped.
        std::mem::forget(held);
        assert_eq!(r.gate.reclaim(2), 2);
        assert_eq!(r.gate.in_flight(host), 1);
        drop(mine);
        assert_eq!(r.gate.in_flight(host), 0);
        assert_eq!(r.gate.reclaim(2), 0);
    }

    #[test]
    fn rate_slots_are_spaced_across_threads() {
        let rps = 200.0;
        let r = Arc::new(region(
            Limits {
                max_rps: Some(rps),
                per_host: None,
            },
            0,
        ));
        let host = host_key("http://127.0.0.1:9/x");
        let t0 = monotonic_ns();
        let times: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let r = Arc::clone(&r);
                    s.spawn(move || {
                        (0..10)
                            .map(|_| {
                                let _pass = r.gate.admit(host, Duration::from_secs(10)).unwrap();
                                monotonic_ns()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        // Slot k is at least t0 + k intervals and nobody passes before its
        // slot, so the last of 40 passes comes 39 intervals after t0 or later.
        let last = times.iter().copied().max().unwrap();
        assert!(last - t0 >= 39 * interval_ns(rps), "{}", last - t0);
        // And the schedule has moved on by exactly one interval per pass.
        let next = r.gate.word(W_NEXT_NS).load(Ordering::Relaxed);
        assert!(next >= t0 + 40 * interval_ns(rps));
    }

    #[test]
    fn a_slot_past_the_deadline_is_refused_at_once() {
        let r = region(
            Limits {
                max_rps: Some(1.0),
                per_host: Some(1),
            },
            0,
        );
        let host = host_key("http://127.0.0.1:9/x");
        drop(r.gate.admit(host, Duration::from_secs(5)).unwrap());
        // The next slot is a second away; a 50 ms budget cannot reach it.
        assert_eq!(
            r.gate.admit(host, Duration::from_millis(50)).err(),
            Some(Refused::RateWait)
        );
        // The refused attempt gave its per-host unit back.
        assert_eq!(r.gate.in_flight(host), 0);
    }

    #[test]
    fn open_refuses_what_is_not_a_region() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), [0u8; 4096]).unwrap();
        assert!(Gate::open(file.path(), 1).is_err());
        let r = region(Limits::default(), 1);
        assert!(Gate::open(r.path(), 2).is_err(), "row beyond the layout");
        assert!(Gate::open(r.path(), 1).is_ok());
    }

    #[test]
    fn interval_of_extreme_rates() {
        assert_eq!(interval_ns(20.0), 50_000_000);
        assert_eq!(interval_ns(1e12), 1);
        assert_eq!(interval_ns(0.5), 2_000_000_000);
    }
}
