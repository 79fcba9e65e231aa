//! The site's latency, kept to the microsecond rather than the millisecond.
//!
//! tokio's timer counts in 1 ms ticks and rounds every deadline up, and its
//! park timeout is rounded up to a millisecond again: a 50 ms `sleep` answered
//! a keep-alive request after 51.9 ms (median of 200, idle machine). A DELAY
//! site 4% slower than it says would make every client look 4% further from
//! the latency limit than it is, and the error grows with every round. So the
//! deadlines go to one thread that sleeps to the nearest with a futex timeout
//! (its timer slack set to nothing, from the default 50 µs), and wakes each
//! request's task when its time has come.
//!
//! The heap of deadlines is shared under a lock rather than sent to the thread
//! over a channel: a send woke the thread for every request, only to push it
//! and go back to sleep. Now a request wakes it only when its deadline comes
//! before all the others, which with one latency for all requests is never:
//! the site's CPU per 2000 requests at 256 connections went from 112 to 94
//! ms (medians of 12 runs).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A handle on the delay thread; the thread ends when the handle is dropped.
pub struct Delays {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a deadline earlier than all others arrives, and at the end.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    pending: BinaryHeap<Reverse<Pending>>,
    closed: bool,
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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The heap stays a heap whatever panicked while it was held.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Delays {
    pub fn start() -> io::Result<Delays> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("flag-site-delay".into())
            .spawn(move || run(&thread_shared))?;
        Ok(Delays { shared })
    }

    /// Waits `delay` from now, and returns the deadline it waited for.
    pub async fn sleep(&self, delay: Duration) -> Instant {
        let at = Instant::now() + delay;
        let (done, woken) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            // The thread sleeps until the earliest deadline: only an earlier
            // one needs to wake it (see the module's doc).
            let earliest = state.pending.peek().is_none_or(|next| at < next.0.at);
            state.pending.push(Reverse(Pending { at, done }));
            if earliest {
                self.shared.changed.notify_one();
            }
        }
        // An error means the thread dropped the request, which it does only
        // when the site is shutting down: answering at once is right then.
        let _ = woken.await;
        at
    }
}

impl Drop for Delays {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_one();
    }
}

fn run(shared: &Shared) {
    // Wake-ups exactly at the deadline, not up to the default 50 µs later:
    // the thread wakes once per answer, and is idle in between.
    // SAFETY: PR_SET_TIMERSLACK only sets this thread's slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
    let mut due = Vec::new();
    let mut state = shared.lock();
    while !state.closed {
        let now = Instant::now();
        while state.pending.peek().is_some_and(|next| next.0.at <= now) {
            due.extend(state.pending.pop());
        }
        if !due.is_empty() {
            // Waking the requests' tasks outside the lock, so that new
            // requests are not held up meanwhile.
            drop(state);
            for Reverse(request) in due.drain(..) {
                // The request may have been cancelled (the client left).
                let _ = request.done.send(());
            }
            state = shared.lock();
            continue;
        }
        state = match state.pending.peek() {
            Some(next) => {
                let wait = next.0.at.saturating_duration_since(now);
                shared
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        };
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_earlier_deadline_wakes_the_thread() {
        let delays = Delays::start().unwrap();
        let long = delays.sleep(Duration::from_secs(600));
        tokio::pin!(long);
        // The long deadline is registered, and the thread goes to sleep until it.
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut long).await;
        assert!(waited.is_err(), "a 600 s delay ended early");
        // A thread left asleep would answer this one after 600 s.
        tokio::time::timeout(
            Duration::from_secs(60),
            delays.sleep(Duration::from_millis(1)),
        )
        .await
        .expect("a short delay behind a long one ended");
    }
}
