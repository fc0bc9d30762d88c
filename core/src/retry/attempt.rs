//! The vocabulary between a [`RetryCall`](super::RetryCall) and the adapter running it: attempt
//! handles, what an attempt's end carries, and the actions the machine asks for.

use std::fmt;
use std::time::Duration;

use crate::status::Code;

/// One attempt of a call (the first, a retry, a hedge or a transparent retry). Handles count up
/// from 0 and are never reused within a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub(crate) u32);

impl AttemptId {
    /// The handle numbered `n`, as a call numbers its attempts (for tests and logs: a call
    /// ignores any input about an attempt it is not running).
    pub const fn new(n: u32) -> Self {
        AttemptId(n)
    }

    /// The handle's number: 0 for the first attempt, then one more per attempt started.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {}", self.0)
    }
}

/// The server's `grpc-retry-pushback-ms`, given with an attempt's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushback {
    /// No pushback: the policy's own backoff or hedging delay applies.
    #[default]
    None,
    /// Wait exactly this long before the next attempt.
    After(Duration),
    /// Do not retry, and send no more hedges.
    Stop,
}

impl Pushback {
    /// The pushback a `grpc-retry-pushback-ms` header value asks for: a non-negative decimal
    /// integer that fits 32 signed bits is a wait in milliseconds; anything else (negative,
    /// garbled, too large) asks not to retry. `None` (no header) is no pushback.
    pub fn from_header(value: Option<&[u8]>) -> Pushback {
        let Some(value) = value else {
            return Pushback::None;
        };
        let millis = std::str::from_utf8(value)
            .ok()
            .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|text| text.parse::<i32>().ok());
        match millis {
            Some(ms) => Pushback::After(Duration::from_millis(ms.unsigned_abs().into())),
            None => Pushback::Stop,
        }
    }
}

/// Why an attempt's request never reached the server's application: such an attempt is replayed
/// at once (a transparent retry), outside the policy's attempt count and throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unprocessed {
    /// It never left the client (no stream could be opened, the connection closed first).
    NotSent,
    /// It reached the server's gRPC library, which refused it (`REFUSED_STREAM`, or a GOAWAY
    /// whose last stream id is below the attempt's).
    Refused,
}

/// What a [`RetryCall`](super::RetryCall) asks the adapter to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryAction {
    /// Start `attempt` now: pick a subchannel and send the (buffered) request on a new stream.
    Start {
        /// The new attempt's handle.
        attempt: AttemptId,
        /// The value of its `grpc-previous-rpc-attempts` header; 0 means send none.
        previous_attempts: u32,
        /// Whether it replays an attempt no server processed (it then counts as the attempt it
        /// replaces, and `previous_attempts` is that attempt's).
        transparent: bool,
    },
    /// Cancel `attempt` (reset its stream): another attempt won, or the call finished.
    Cancel(AttemptId),
    /// `attempt` waited its policy's `perAttemptRecvTimeout` without response headers: cancel it
    /// (reset its stream, not its connection); its status is CANCELLED. The machine goes on as
    /// after any failure: a retry, or a `Finish` with this attempt's CANCELLED.
    TimedOut(AttemptId),
    /// The call is committed to `attempt`: no other attempt will be made, the replay buffer may
    /// be freed and later messages go to this attempt alone.
    Commit(AttemptId),
    /// The call is over: hand `attempt`'s status (`code`, with its message and trailers) to the
    /// application. Always the last action.
    Finish {
        /// The attempt whose status is the call's.
        attempt: AttemptId,
        /// Its status code.
        code: Code,
    },
}
