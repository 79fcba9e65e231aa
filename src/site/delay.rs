//! The site's latency, kept to the microsecond rather than the millisecond.
//!
//! tokio's timer counts in 1 ms ticks and rounds every deadline up, and its
//! park timeout is rounded up to a millisecond again: a 50 ms `sleep` answered
//! a keep-alive request after 51.9 ms (median of 200, idle machine). A DELAY
//! site 4% slower than it says would make every client look 4% further from
//! the latency limit than it is, and the error grows with every round. So the
//! deadlines share one `timerfd` (a kernel timer with nanosecond deadlines and
//! no timer slack), set to the earliest of them and watched by tokio's own
//! reactor: when it goes off, the runtime thread waiting in `epoll` wakes and
//! wakes each request's task in turn.
//!
//! Before, a thread of its own slept to the earliest deadline and then woke a
//! runtime thread: two wake-ups for each deadline instead of one, each slow on
//! this project's VM. Answers one at a time were ready 0.14 ms after their
//! deadline on average with that thread, 0.07 ms with the timerfd; at 2000
//! files over 256 connections, 0.35 against 0.27 ms for a threads-mode client
//! and 0.87 against 0.62 ms for curl, with 5% less CPU for the site (A/B of 15).
//!
//! The heap of deadlines is shared under a lock, and a request re-arms the
//! timer only when its deadline comes before all the others, which with one
//! latency for all requests is never: one `timerfd_settime` per expiry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::os::Timer;

/// A handle on the site's timer; its task ends when the handle is dropped.
pub struct Delays {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Armed to the earliest pending deadline, and disarmed with none.
    timer: Timer,
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

    /// Sets the timer to go off at `at`, or never. Called with the state
    /// locked, so that the timer always matches the heap's earliest deadline.
    fn arm(&self, at: Option<Instant>) {
        self.timer.set(at.map(|at| {
            // A zero value would disarm it: a deadline already past gets
            // the shortest wait instead.
            at.saturating_duration_since(Instant::now())
                .max(Duration::from_nanos(1))
        }));
    }
}

impl Delays {
    /// Starts the timer's task on `runtime`.
    pub fn start(runtime: &Handle) -> io::Result<Delays> {
        // The reactor it registers with is the runtime's.
        let _runtime = runtime.enter();
        let timer = Timer::new()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            timer,
        });
        runtime.spawn(run(Arc::clone(&shared)));
        Ok(Delays { shared })
    }

    /// Waits `delay` from now, and returns the deadline it waited for.
    pub async fn sleep(&self, delay: Duration) -> Instant {
        let at = Instant::now() + delay;
        let (done, woken) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            // Only an earlier deadline than all others moves the timer.
            let earliest = state.pending.peek().is_none_or(|next| at < next.0.at);
            state.pending.push(Reverse(Pending { at, done }));
            if earliest {
                self.shared.arm(Some(at));
            }
        }
        // An error means the request was dropped unanswered, which happens
        // only when the site is shutting down: answering at once is right then.
        let _ = woken.await;
        at
    }
}

impl Drop for Delays {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        // Wakes the task, to see that it is done.
        self.shared.arm(Some(Instant::now()));
    }
}

async fn run(shared: Arc<Shared>) {
    let mut due = Vec::new();
    loop {
        // The timer may have been re-armed since it went off: what is due is
        // decided by the clock.
        if shared.timer.expired().await.is_err() {
            return;
        }
        {
            let mut state = shared.lock();
            if state.closed {
                return;
            }
            let now = Instant::now();
            while state.pending.peek().is_some_and(|next| next.0.at <= now) {
                due.extend(state.pending.pop());
            }
            shared.arm(state.pending.peek().map(|next| next.0.at));
        }
        // Waking the requests' tasks outside the lock, so that new requests
        // are not held up meanwhile.
        for Reverse(request) in due.drain(..) {
            // The request may have been cancelled (the client left).
            let _ = request.done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_delay_ends_early() {
        let delays = std::sync::Arc::new(Delays::start(&Handle::current()).unwrap());
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
    async fn an_earlier_deadline_moves_the_timer() {
        let delays = Delays::start(&Handle::current()).unwrap();
        let long = delays.sleep(Duration::from_secs(600));
        tokio::pin!(long);
        // The long deadline is registered, and the timer set to it.
        let waited = tokio::time::timeout(Duration::from_millis(20), &mut long).await;
        assert!(waited.is_err(), "a 600 s delay ended early");
        // A timer left as it was would answer this one after 600 s.
        tokio::time::timeout(
            Duration::from_secs(60),
            delays.sleep(Duration::from_millis(1)),
        )
        .await
        .expect("a short delay behind a long one ended");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_timer_task_ends_with_its_handle() {
        let delays = Delays::start(&Handle::current()).unwrap();
        delays.sleep(Duration::from_millis(1)).await;
        let shared = Arc::clone(&delays.shared);
        drop(delays);
        // The task holds the only other reference, until it ends.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Arc::strong_count(&shared) > 1 {
            assert!(
                Instant::now() < deadline,
                "the timer's task is still running"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
