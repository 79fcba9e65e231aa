//! Exit statuses, in one place; the README's table lists the same.

use crate::report::Counts;

/// Every item was downloaded (or skipped by a re-run: its file is there).
pub const OK: u8 = 0;
/// Some item ended NOT_FOUND or ERROR.
pub const SOME_FAILED: u8 = 1;
/// Usage or set-up error: bad arguments, unreadable or empty list, bad URL,
/// unusable destination, workers that could not start. Nothing was downloaded.
pub const USAGE: u8 = 2;
/// Interrupted by Ctrl-C (SIGINT).
pub const INTERRUPTED: u8 = 130;

/// The status of a run that got to the end.
pub fn for_counts(counts: &Counts) -> u8 {
    if counts.not_found + counts.error == 0 {
        OK
    } else {
        SOME_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_failure_is_one() {
        let c = |ok, not_found, error| Counts {
            ok,
            not_found,
            error,
            skipped: 0,
            interrupted: 0,
        };
        assert_eq!(for_counts(&c(3, 0, 0)), OK);
        assert_eq!(for_counts(&c(3, 1, 0)), SOME_FAILED);
        assert_eq!(for_counts(&c(0, 0, 1)), SOME_FAILED);
        let skipped = Counts {
            skipped: 5,
            ..c(0, 0, 0)
        };
        assert_eq!(for_counts(&skipped), OK, "skipped files are there");
    }
}
