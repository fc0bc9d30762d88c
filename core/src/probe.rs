//! What a backend answers to a probe: its load as it sees it, for policies that ask
//! ([`Action::Probe`](crate::Action::Probe)), such as [`prequal`](crate::policy::prequal).

use std::time::Duration;

/// A backend's answer to a probe: the calls it has in flight and the latency it expects.
///
/// Both are the server's own view, across every client, which a client-side count cannot see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeResult {
    /// Requests in flight at the server when it answered, every client's together.
    pub requests_in_flight: u32,
    /// The server's estimate of a call's latency, `None` when it has none it trusts (no call
    /// ended recently). A policy then ranks the backend by its requests in flight alone.
    pub latency: Option<Duration>,
}

impl ProbeResult {
    /// An answer of `requests_in_flight` calls in flight and a latency estimate, if any.
    pub fn new(requests_in_flight: u32, latency: Option<Duration>) -> Self {
        ProbeResult {
            requests_in_flight,
            latency,
        }
    }
}
