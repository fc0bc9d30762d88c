//! Call outcomes: what the adapter reports when a call that a pick routed has ended.

use std::time::Duration;

use crate::status::Code;

/// How a call ended: its status code and how long it took. Policies that weigh backends by their
/// behaviour (least request, latency EWMA, outlier detection) learn from these.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CallOutcome {
    /// The call's final status code (`Code::Ok` for success).
    pub code: Code,
    /// The time from the pick to the end of the call.
    pub latency: Duration,
}

impl CallOutcome {
    /// A call that ended with `code` after `latency`.
    pub fn new(code: Code, latency: Duration) -> Self {
        CallOutcome { code, latency }
    }

    /// A successful call.
    pub fn ok(latency: Duration) -> Self {
        CallOutcome::new(Code::Ok, latency)
    }

    /// Whether the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }
}
