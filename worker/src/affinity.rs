//! Pinning a worker process to one CPU (`--pin`).
//!
//! With no latency to hide, the threads of two worker processes take turns on
//! the same cores, and each turn is a switch of address space too. Pinned, a
//! core runs the threads of one worker (and whatever else the machine runs).
//! The master hands out the CPUs it may itself run on, in turn, so a
//! `taskset` or a container's cpuset is respected.

use std::io;

use crate::os;

/// The CPUs this process may run on, in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    os::allowed_cpus()
}

/// Pins the calling thread to `cpu`. Threads it starts afterwards inherit
/// that, so a worker process calls it before it starts any.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    os::pin_thread(cpu)
}

/// The CPU of worker `worker` (1-based): the CPUs of `cpus` in turn.
pub fn cpu_for(worker: u32, cpus: &[usize]) -> Option<usize> {
    let index = (worker as usize).checked_sub(1)? % cpus.len().max(1);
    cpus.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_the_cpus_in_turn() {
        let cpus = [0, 2, 5];
        let given: Vec<_> = (1..=7).map(|w| cpu_for(w, &cpus)).collect();
        assert_eq!(given, [0, 2, 5, 0, 2, 5, 0].map(Some));
        assert_eq!(cpu_for(1, &[]), None);
        assert_eq!(cpu_for(0, &cpus), None, "workers are numbered from 1");
    }

    #[test]
    fn a_pinned_thread_runs_only_on_its_cpu() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        // In a thread of its own, so the test runner's threads stay as they were.
        let seen = std::thread::spawn(move || {
            pin_to(last).unwrap();
            let inherited = std::thread::spawn(allowed_cpus).join().unwrap();
            (allowed_cpus().unwrap(), inherited.unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (vec![last], vec![last]), "and its new threads too");
        assert!(pin_to(os::MAX_CPUS).is_err());
    }
}
