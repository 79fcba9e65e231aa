//! The site's latency, kept to the microsecond rather than the millisecond.
//!
//! tokio's timer counts in 1 ms ticks and rounds every deadline up, and its
//! park timeout is rounded up to a millisecond again: a 50 ms `sleep` answered
//! a keep-alive request after 51.9 ms (median of 200, idle machine). A DELAY
//! site 4% slower than it says would make every client look 4% further from
//! the latency limit than it is, and the error grows with every round. So the
//! deadlines go to one thread that keeps them in a heap and sleeps to the
//! nearest with a futex timeout, which the kernel keeps to its timer slack
//! (50 µs), and wakes each request's task when its time has come.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A handle on the delay thread; the thread ends when every handle is gone.
pub struct Delays {
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    at: Instant,
    done: oneshot::Sender<()>,
}

// The heap orders by deadline only.
impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

impl Delays {
    pub fn start() -> io::Result<Delays> {
        let (queue, pending) = mpsc::channel();
        std::thread::Builder::new()
            .name("flag-site-delay".into())
            .spawn(move || run(pending))?;
        Ok(Delays { queue })
    }

    /// Waits `delay` from now.
    pub async fn sleep(&self, delay: Duration) {
        let at = Instant::now() + delay;
        let (done, woken) = oneshot::channel();
        if self.queue.send(Pending { at, done }).is_err() {
            // The thread could not be reached: the coarse timer is still a
            // delay.
            tokio::time::sleep_until(at.into()).await;
            return;
        }
        // An error means the thread dropped the request, which it does only
        // when the site is shutting down: answering at once is right then.
        let _ = woken.await;
    }
}

fn run(pending: mpsc::Receiver<Pending>) {
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|next| next.0.at <= now) {
            if let Some(Reverse(due)) = heap.pop() {
                // The request may have been cancelled (the client left).
                let _ = due.done.send(());
            }
        }
        let received = match heap.peek() {
            Some(next) => pending.recv_timeout(next.0.at.saturating_duration_since(now)),
            None => pending.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(request) => heap.push(Reverse(request)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_delay_ends_early() {
        let delays = std::sync::Arc::new(Delays::start().unwrap());
        let started = Instant::now();
        let mut tasks = Vec::new();
        for ms in [30u64, 10, 20, 0] {
            let delays = std::sync::Arc::clone(&delays);
            tasks.push(tokio::spawn(async move {
                delays.sleep(Duration::from_millis(ms)).await;
                (ms, started.elapsed())
            }));
        }
        for task in tasks {
            let (ms, elapsed) = task.await.unwrap();
            assert!(
                elapsed >= Duration::from_millis(ms),
                "{ms} ms delay ended after {elapsed:?}"
            );
        }
    }
}
