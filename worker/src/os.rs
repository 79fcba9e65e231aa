//! The worker crate's calls into the operating system below std, in one place.
//!
//! Everything here is Linux, as the worker is (CPU affinity, `O_TMPFILE`), and
//! goes through `rustix`, whose calls are safe, except one thing no safe API
//! offers: seeing a shared memory mapping as atomic words ([`SharedWords`]).
//! That is the crate's only `unsafe` block, and its `SAFETY` comment says why
//! it holds. The rest of the crate calls the safe functions below and names
//! neither `rustix` nor a raw descriptor.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, RawFd};
#[cfg(target_os = "linux")]
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use memmap2::MmapRaw;
use rustix::process::{getrlimit, Resource};
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
use rustix::time::{clock_gettime, ClockId};

/// An OS error number, to tell apart the errors of the calls below.
pub use rustix::io::Errno;

/// Grows this process's descriptor table to hold `count` descriptors (at most
/// the soft limit on open files).
///
/// A copy of any open descriptor at `count - 1` or above makes the kernel grow
/// the table to fit it; closing the copy keeps the table. The copy is of a
/// standard stream, whichever is open; with none open, nothing changes.
pub fn grow_fd_table(count: usize) {
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let highest = count
        .min(usize::try_from(soft).unwrap_or(usize::MAX))
        .saturating_sub(1);
    let Ok(highest) = RawFd::try_from(highest) else {
        return;
    };
    for stream in [
        io::stderr().as_fd(),
        io::stdout().as_fd(),
        io::stdin().as_fd(),
    ] {
        // The copy is closed as it is dropped, at once.
        if rustix::io::fcntl_dupfd_cloexec(stream, highest).is_ok() {
            return;
        }
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`, which every process of the machine shares.
#[inline]
pub fn monotonic_ns() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Option<Duration> {
    Duration::try_from(clock_gettime(ClockId::ThreadCPUTime)).ok()
}

/// CPUs a CPU set can name: 0 to `MAX_CPUS - 1`.
pub const MAX_CPUS: usize = CpuSet::MAX_CPU;

/// The CPUs this process may run on, in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(None)?;
    Ok((0..MAX_CPUS).filter(|&cpu| set.is_set(cpu)).collect())
}

/// Lets the calling thread run on `cpu` only.
pub fn pin_thread(cpu: usize) -> io::Result<()> {
    if cpu >= MAX_CPUS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond the {MAX_CPUS} a CPU set holds"),
        ));
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    Ok(sched_setaffinity(None, &set)?)
}

/// The `open` flag that makes an unnamed file in the directory opened.
#[cfg(target_os = "linux")]
pub const O_TMPFILE: i32 = rustix::fs::OFlags::TMPFILE.bits() as i32;

/// Gives the open file `file` the name `to`: `linkat` with `AT_EMPTY_PATH`,
/// which needs `CAP_DAC_READ_SEARCH` (or a kernel that allows it to the file's
/// opener).
#[cfg(target_os = "linux")]
pub fn link_file(file: &File, to: &Path) -> io::Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    Ok(linkat(file, c"", CWD, to, AtFlags::EMPTY_PATH)?)
}

/// Gives the file at `from`, following a symbolic link there, the name `to`
/// too: `linkat` with `AT_SYMLINK_FOLLOW`.
#[cfg(target_os = "linux")]
pub fn link_following(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{linkat, AtFlags, CWD};
    Ok(linkat(CWD, from, CWD, to, AtFlags::SYMLINK_FOLLOW)?)
}

/// A file mapped read-write and shared, seen as 8-byte atomic words: every
/// process that maps the same file sees, and changes, the same words.
pub struct SharedWords {
    /// Made by `MmapRaw::map_raw` (read-write, `MAP_SHARED`, from offset 0),
    /// and never exposed, so nothing reaches its memory but [`Self::word`].
    map: MmapRaw,
}

impl SharedWords {
    /// Maps all of `file`, which must be open for reading and writing.
    pub fn map(file: &File) -> io::Result<SharedWords> {
        let map = MmapRaw::map_raw(file)?;
        // A mapping from offset 0 starts on a page boundary, even an empty one.
        assert!(
            map.as_ptr().cast::<AtomicU64>().is_aligned(),
            "a shared mapping is not aligned for 8-byte words"
        );
        Ok(SharedWords { map })
    }

    /// Word `index`, bytes `8 * index` to `8 * index + 7` of the file.
    ///
    /// # Panics
    ///
    /// If the mapping is too short to hold that word.
    #[inline]
    pub fn word(&self, index: usize) -> &AtomicU64 {
        assert!(
            index < self.map.len() / 8,
            "shared word {index} beyond the mapping's {} bytes",
            self.map.len()
        );
        // SAFETY: the word lies inside the mapping (checked above), which is
        // aligned for `AtomicU64` (checked in `map`), mapped readable and
        // writable, and stays mapped for as long as `self` is borrowed, which
        // outlives the reference. `AtomicU64` has the size of a `u64` and any
        // bit pattern is a valid one, so whatever the file holds is a valid
        // value. Within this process the words are reached only through such
        // references, so every access is atomic; the other processes that map
        // the file touch it only through atomics as well (a process writing
        // it otherwise could tear a value, never make it invalid). Another
        // process truncating the file would make an access fault (SIGBUS),
        // not read or write outside the mapping.
        unsafe { &*self.map.as_mut_ptr().add(index * 8).cast::<AtomicU64>() }
    }
}
