//! When a policy over many endpoints rebuilds its picker.
//!
//! A picker is an immutable snapshot, so a new one costs as much as the list it holds. Rebuilt on
//! every endpoint that becomes READY, a list of `n` endpoints coming up one connection at a time
//! costs `n` squared: 96 s at 100,000 endpoints. So a change that no call is waiting for (an
//! endpoint joining the READY ones, a failure message) is gathered with the next ones:
//!
//! - a picker is built at once when the policy's state changes, when an endpoint the current
//!   picker offers is no longer READY (its calls would go to a lost connection), when an eighth
//!   of the endpoints changed since the last picker (so the rebuilds of a burst cost a few times
//!   the list, not the list per change), or when the last picker is older than
//!   [`PUBLICATION_WINDOW`] (a lone change is not delayed);
//! - otherwise the change waits for a timer at the end of that window.
//!
//! Below 16 endpoints an eighth is one change, so small lists are always rebuilt at once, as
//! before. Time is the core's input, so the outcome is as deterministic as the rest.

use std::time::{Duration, Instant};

/// How long a change may wait for the next picker while others arrive (100 ms): an endpoint
/// that just became READY starts taking calls at most this much later, during a burst.
pub(crate) const PUBLICATION_WINDOW: Duration = Duration::from_millis(100);

/// Whether to build a picker now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Build and publish it now.
    Now,
    /// Wait; if `Some`, set a timer at that instant (the policy then calls
    /// [`Pacing::timer_fired`] and publishes what waited).
    Later(Option<Instant>),
}

/// When the last picker was built, and how many changes wait for the next.
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    last: Option<Instant>,
    waiting: usize,
    timer_set: bool,
}

impl Pacing {
    /// Whether a picker over `endpoints` endpoints should be built at `now` for one more change;
    /// `urgent` when the change cannot wait (see the module documentation).
    pub(crate) fn admit(&mut self, urgent: bool, endpoints: usize, now: Instant) -> Admit {
        let window_over = self
            .last
            .is_none_or(|last| now >= crate::backoff::later(last, PUBLICATION_WINDOW));
        let enough = self.waiting + 1 >= (endpoints / 8).max(1);
        if urgent || window_over || enough {
            self.last = Some(now);
            self.waiting = 0;
            return Admit::Now;
        }
        self.waiting += 1;
        if self.timer_set {
            return Admit::Later(None);
        }
        self.timer_set = true;
        let last = self.last.unwrap_or(now);
        Admit::Later(Some(crate::backoff::later(last, PUBLICATION_WINDOW)))
    }

    /// The timer set by [`Pacing::admit`] fired.
    pub(crate) fn timer_fired(&mut self) {
        self.timer_set = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_lists_are_always_rebuilt_at_once() {
        let now = Instant::now();
        let mut pacing = Pacing::default();
        for _ in 0..100 {
            assert_eq!(pacing.admit(false, 15, now), Admit::Now);
        }
    }

    #[test]
    fn a_burst_rebuilds_once_an_eighth_changed_and_the_rest_waits_for_the_timer() {
        let now = Instant::now();
        let mut pacing = Pacing::default();
        assert_eq!(pacing.admit(false, 800, now), Admit::Now, "the first");
        let end = now + PUBLICATION_WINDOW;
        assert_eq!(pacing.admit(false, 800, now), Admit::Later(Some(end)));
        for _ in 2..100 {
            assert_eq!(pacing.admit(false, 800, now), Admit::Later(None));
        }
        assert_eq!(
            pacing.admit(false, 800, now),
            Admit::Now,
            "the hundredth change of 800 endpoints"
        );
        assert_eq!(
            pacing.admit(false, 800, now),
            Admit::Later(None),
            "timer set"
        );
        assert_eq!(pacing.admit(true, 800, now), Admit::Now, "urgent");
        pacing.timer_fired();
        let later = now + Duration::from_millis(1);
        assert_eq!(pacing.admit(false, 800, later), Admit::Later(Some(end)));
        assert_eq!(
            pacing.admit(false, 800, end),
            Admit::Now,
            "the window is over"
        );
    }
}
