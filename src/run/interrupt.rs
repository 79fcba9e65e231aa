//! Ctrl-C (SIGINT) and SIGTERM, in two stages.
//!
//! First signal: hand out no more work, tell every worker to abandon what it is
//! doing, and give items in flight up to [`GRACE`] to finish or abort. If the
//! run has not ended by then, or at a second signal, worker processes are
//! killed by pid and the partial report is printed from here, since the main
//! thread may be blocked in a request (serial mode). Either way temporary
//! files are removed and the exit status is 130.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::finale::Finale;
use crate::master::collect::lock;

/// How long items in flight get after the first signal.
pub const GRACE: Duration = Duration::from_secs(2);

/// Starts watching for signals for the rest of the run.
pub fn watch(finale: Arc<Finale>) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_none() {
                return;
            }
            crate::report::progress::warn(
                "interrupted; stopping (press Ctrl-C again to quit at once)",
            );
            flagmaster_worker::request_stop();
            lock(&finale.collector).interrupt();
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline {
                if finale.is_concluded() {
                    return;
                }
                if signals.pending().next().is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            lock(&finale.collector).kill_processes();
            if let Some(status) = finale.conclude() {
                std::process::exit(i32::from(status));
            }
        })?;
    Ok(())
}
