//! What the channel keeps of each subchannel and shares with the calls on it: its address and
//! its call counts, one `Arc` a call holds from its pick to its end.

use std::sync::atomic::{AtomicU64, Ordering};

use croupier::{Address, Code};

use crate::snapshot::CallCounts;

/// One subchannel's backend, as calls see it.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) address: Address,
    calls: CallStats,
    /// Its instruments, with its address as a label (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::BackendMetrics,
}

impl Backend {
    pub(crate) fn new(address: Address) -> Self {
        Backend {
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::BackendMetrics::new(&address),
            address,
            calls: CallStats::default(),
        }
    }

    /// A call was picked for it.
    pub(crate) fn call_started(&self) {
        self.calls.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A call on it ended with `code`.
    pub(crate) fn call_ended(&self, code: Code) {
        let counter = match code {
            Code::Ok => &self.calls.succeeded,
            _ => &self.calls.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Its calls so far.
    pub(crate) fn calls(&self) -> CallCounts {
        // The ends first: a call's start is counted before its end, so `in_flight` is never
        // made up of ends whose starts were not yet seen.
        let succeeded = self.calls.succeeded.load(Ordering::Acquire);
        let failed = self.calls.failed.load(Ordering::Acquire);
        let started = self.calls.started.load(Ordering::Acquire);
        CallCounts {
            started,
            succeeded,
            failed,
            in_flight: started.saturating_sub(succeeded + failed),
        }
    }
}

/// Counters, each touched by one relaxed atomic add per call: no lock, no allocation.
#[derive(Debug, Default)]
struct CallStats {
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_in_flight_are_those_started_and_not_ended() {
        let backend = Backend::new(Address::Opaque("backend:50051".into()));
        for _ in 0..5 {
            backend.call_started();
        }
        backend.call_ended(Code::Ok);
        backend.call_ended(Code::Ok);
        backend.call_ended(Code::Unavailable);
        assert_eq!(
            backend.calls(),
            CallCounts {
                started: 5,
                succeeded: 2,
                failed: 1,
                in_flight: 2
            }
        );
    }
}
