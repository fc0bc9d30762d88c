//! Retries and hedging (gRFC A6), decided per call by a sans-IO machine.
//!
//! A [`RetryCall`] holds one call's [`CallPolicy`] (a [`RetryPolicy`], a [`HedgingPolicy`] or
//! neither) and shares its channel's [`ChannelRetry`]: the [`RetryThrottle`] token bucket and the
//! [`RetryBuffer`] budget. It never sends anything: the adapter tells it what happened to each
//! attempt, with the time, and carries out the [`RetryAction`]s it answers with.
//!
//! 1. [`RetryCall::new`] queues the first attempt's `Start`.
//! 2. Tell it each attempt's fate: [`RetryCall::handle_attempt_end`] (its status and the server's
//!    [`Pushback`]), [`RetryCall::handle_attempt_unprocessed`] (no server application saw it),
//!    [`RetryCall::handle_response_headers`] (the call commits to it), and the request bytes it
//!    must keep for replays, [`RetryCall::handle_request_buffered`].
//! 3. Drain [`RetryCall::poll_action`] after each input: `Start` an attempt (with its
//!    `grpc-previous-rpc-attempts`), `Cancel` one, cancel one that timed out (`TimedOut`, its
//!    status CANCELLED), `Commit` to one, or `Finish` with one attempt's status.
//! 4. Wake at [`RetryCall::poll_timeout`] and call [`RetryCall::handle_timeout`]: a retry's
//!    backoff or the next hedge is due, or an attempt's `perAttemptRecvTimeout` passed.
//!
//! The rules are A6's:
//!
//! - Retry `n` waits `random(0, min(initialBackoff * multiplier^(n-1), maxBackoff))`, and only
//!   after a status in `retryableStatusCodes`, while fewer than `maxAttempts` (at most 5) attempts
//!   were made.
//! - A server's `grpc-retry-pushback-ms` of `n` >= 0 makes the next attempt wait exactly `n` ms,
//!   and the backoff starts over from `initialBackoff`; a negative or garbled value stops retries
//!   and hedges.
//! - Hedging starts a copy every `hedgingDelay` up to `maxAttempts`; a non-fatal status sends the
//!   next copy at once (or after the pushback), later ones follow at `hedgingDelay`; success or a
//!   fatal status commits, cancels the others, and ends the call.
//! - A retry policy's `perAttemptRecvTimeout` runs from each attempt's start (a transparent
//!   replay's too) until its response headers or its end. An attempt it overtakes is cancelled
//!   and ends with CANCELLED; that counts as a failure for the throttle and is retried whatever
//!   `retryableStatusCodes` says, while `maxAttempts`, the throttle and a commit allow; else the
//!   call ends with it. A6 leaves the field to `retryPolicy`: a hedged call's timers are its
//!   `hedgingDelay`s.
//! - Response headers commit the call to their attempt; so does passing the buffer limit (per call
//!   or per channel): the call goes on with its running attempt and makes no other.
//! - The throttle takes a token per failed attempt whose status the policy would retry or hedge
//!   past (or whose pushback says stop), gives back `tokenRatio` per success, and lets retries
//!   and hedges go only while more than half its tokens are left.
//! - An attempt no server application saw is replayed at once (a transparent retry), outside
//!   `maxAttempts` and the throttle. To keep that from looping, one call replays at most
//!   [`NOT_SENT_REPLAY_LIMIT`] attempts that never left the client and [`REFUSED_REPLAY_LIMIT`]
//!   (A6: one) that a server refused; past that, such an end counts as an ordinary failure.
//!
//! Where A6 leaves a choice open, the machine takes these:
//!
//! - The buffer limit passed while a retry waits ends the call with the last attempt's status (no
//!   attempt could carry the new message); passed while hedges run, it commits to the oldest
//!   running copy, which has sent the most.
//! - A hedge that the throttle holds back ends the call's hedging; the copies running go on.
//! - A call's deadline is the adapter's: it ends the call, and drops the machine, when it passes,
//!   whatever the attempts' `perAttemptRecvTimeout`.
//! - A call committed by its buffer limit still times its attempt: past the timeout it ends with
//!   CANCELLED (it cannot be retried), as gRPC's own client does.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use croupier::retry::{
//!     CallPolicy, ChannelRetry, CodeSet, Pushback, RetryAction, RetryCall, RetryPolicy,
//!     RetryThrottle,
//! };
//! use croupier::Code;
//!
//! let policy = RetryPolicy::new(
//!     3,
//!     Duration::from_millis(100),
//!     Duration::from_secs(1),
//!     2.0,
//!     CodeSet::new().with(Code::Unavailable),
//! )?;
//! let channel = Arc::new(ChannelRetry::new().throttle(RetryThrottle::new(10, 0.1)?));
//! let start = Instant::now(); // the adapter reads the clock; the machine never does
//! let mut call = RetryCall::new(CallPolicy::Retry(policy), channel, 7, start);
//!
//! // The first attempt starts at once, without grpc-previous-rpc-attempts.
//! let Some(RetryAction::Start { attempt: first, previous_attempts: 0, .. }) = call.poll_action()
//! else { unreachable!() };
//!
//! // It fails UNAVAILABLE: the retry waits a random time up to initialBackoff.
//! call.handle_attempt_end(first, Code::Unavailable, Pushback::None, start);
//! assert_eq!(call.poll_action(), None);
//! let retry_at = call.poll_timeout().expect("a retry is planned");
//! assert!(retry_at <= start + Duration::from_millis(100));
//!
//! // At that time the second attempt starts, saying one attempt came before it.
//! call.handle_timeout(retry_at);
//! let Some(RetryAction::Start { attempt: second, previous_attempts: 1, .. }) = call.poll_action()
//! else { unreachable!() };
//!
//! // Its response headers commit the call to it; it succeeds and the call is over.
//! call.handle_response_headers(second, retry_at);
//! assert_eq!(call.poll_action(), Some(RetryAction::Commit(second)));
//! call.handle_attempt_end(second, Code::Ok, Pushback::None, retry_at);
//! assert_eq!(call.poll_action(), Some(RetryAction::Finish { attempt: second, code: Code::Ok }));
//! assert!(call.is_finished() && call.poll_timeout().is_none());
//! # Ok::<(), croupier::retry::RetryPolicyError>(())
//! ```

mod attempt;
mod buffer;
mod call;
mod channel;
mod jitter;
mod policy;
mod throttle;

pub use attempt::{AttemptId, Pushback, RetryAction, Unprocessed};
pub use buffer::{RetryBuffer, DEFAULT_PER_CALL_LIMIT, DEFAULT_PER_CHANNEL_LIMIT};
pub use call::{RetryCall, NOT_SENT_REPLAY_LIMIT, REFUSED_REPLAY_LIMIT};
pub use channel::ChannelRetry;
pub use policy::{
    CallPolicy, CodeSet, HedgingPolicy, RetryPolicy, RetryPolicyError, MAX_ATTEMPTS_LIMIT,
};
pub use throttle::{RetryThrottle, MAX_TOKENS_LIMIT};
