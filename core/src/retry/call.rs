//! The per-call machine: given a call's policy and its channel's throttle and buffer, it answers
//! every attempt's end and every timer with what to do next.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::attempt::{AttemptId, Pushback, RetryAction, Unprocessed};
use super::channel::ChannelRetry;
use super::jitter::BackoffCeiling;
use super::policy::{CallPolicy, MAX_ATTEMPTS_LIMIT};
use crate::rng::Rng;
use crate::status::Code;

/// How many attempts that never left the client one call replays transparently; the next such
/// attempt counts as an ordinary failure. (A6 lets these go on until the deadline; the bound keeps
/// a picker that keeps naming a dead connection from spinning a call in a loop.)
pub const NOT_SENT_REPLAY_LIMIT: u32 = 10;
/// How many attempts refused by the server's gRPC library one call replays transparently (A6:
/// once); the next refusal counts as an ordinary failure.
pub const REFUSED_REPLAY_LIMIT: u32 = 1;

/// The retry and hedging decisions of one call, sans-IO.
///
/// Feed it each attempt's fate with `handle_*` and the time; drain [`RetryCall::poll_action`]
/// after every input and carry out each [`RetryAction`] in order; call
/// [`RetryCall::handle_timeout`] when [`RetryCall::poll_timeout`] says. The first attempt's
/// `Start` is queued by [`RetryCall::new`]. The call ends with exactly one
/// [`RetryAction::Finish`], after which every input is ignored. Inputs naming an attempt that is
/// not running (already ended or cancelled, or unknown) are ignored too, so a late event can never
/// start or end anything.
#[derive(Debug)]
pub struct RetryCall {
    policy: CallPolicy,
    channel: Arc<ChannelRetry>,
    rng: Rng,
    ceiling: Option<BackoffCeiling>,
    /// The attempts running, oldest first.
    running: SmallVec<[Running; MAX_ATTEMPTS_LIMIT as usize]>,
    /// `perAttemptRecvTimeout` of the retry policy, if it sets one.
    recv_timeout: Option<Duration>,
    /// The running attempt that `recv_timeout` times, and when it passes (a retried call runs
    /// one attempt at a time; response headers or the attempt's end clear it).
    recv_deadline: Option<(AttemptId, Instant)>,
    next_id: u32,
    /// Attempts started under the policy (transparent replays aside).
    policy_attempts: u32,
    not_sent_replays: u32,
    refused_replays: u32,
    /// When the next policy attempt (a retry or a hedge) starts.
    next_attempt_at: Option<Instant>,
    /// Set once pushback or the throttle stops further hedges.
    hedging_stopped: bool,
    committed: Option<AttemptId>,
    last_end: Option<(AttemptId, Code)>,
    /// Bytes of request this call holds in the channel's buffer.
    buffered: u64,
    finished: bool,
    now: Instant,
    actions: VecDeque<RetryAction>,
}

impl RetryCall {
    /// A call under `policy`, sharing `channel`'s throttle and buffer, its backoff jitter drawn
    /// from `seed`. Its first attempt's `Start` (and, for hedging with no delay, every copy's) is
    /// queued at once.
    pub fn new(policy: CallPolicy, channel: Arc<ChannelRetry>, seed: u64, now: Instant) -> Self {
        let (ceiling, recv_timeout) = match &policy {
            CallPolicy::Retry(retry) => (
                Some(BackoffCeiling::first(retry)),
                retry.per_attempt_recv_timeout(),
            ),
            _ => (None, None),
        };
        let mut call = RetryCall {
            policy,
            channel,
            rng: Rng::new(seed),
            ceiling,
            running: SmallVec::new(),
            recv_timeout,
            recv_deadline: None,
            next_id: 0,
            policy_attempts: 0,
            not_sent_replays: 0,
            refused_replays: 0,
            next_attempt_at: Some(now),
            hedging_stopped: false,
            committed: None,
            last_end: None,
            buffered: 0,
            finished: false,
            now,
            // Room for a burst of hedges or a commit with its cancels, so the queue never grows.
            actions: VecDeque::with_capacity(2 * MAX_ATTEMPTS_LIMIT as usize),
        };
        call.run_timers();
        call
    }

    /// `attempt` ended with `code` (and the server's pushback, if its trailers carried
    /// `grpc-retry-pushback-ms`; see [`Pushback::from_header`]). Then drain
    /// [`RetryCall::poll_action`] and ask [`RetryCall::poll_timeout`] again.
    pub fn handle_attempt_end(
        &mut self,
        attempt: AttemptId,
        code: Code,
        pushback: Pushback,
        now: Instant,
    ) {
        self.advance(now);
        if self.finished || self.take_running(attempt).is_none() {
            return;
        }
        self.count_for_throttle(code, pushback);
        self.ended(attempt, code, pushback, self.policy.allows(code));
        self.run_timers();
    }

    /// `attempt` failed without the server's application seeing it (`why`), with `code`. It is
    /// replayed at once as a transparent retry, outside `maxAttempts` and the throttle, unless the
    /// call is committed or has used up its replays of this kind ([`NOT_SENT_REPLAY_LIMIT`],
    /// [`REFUSED_REPLAY_LIMIT`]): then it counts as an ordinary end with `code`.
    pub fn handle_attempt_unprocessed(
        &mut self,
        attempt: AttemptId,
        why: Unprocessed,
        code: Code,
        now: Instant,
    ) {
        self.advance(now);
        if self.finished || !self.is_running(attempt) {
            return;
        }
        let (used, limit) = match why {
            Unprocessed::NotSent => (&mut self.not_sent_replays, NOT_SENT_REPLAY_LIMIT),
            Unprocessed::Refused => (&mut self.refused_replays, REFUSED_REPLAY_LIMIT),
        };
        if self.committed.is_some() || *used >= limit {
            return self.handle_attempt_end(attempt, code, Pushback::None, now);
        }
        *used += 1;
        if let Some(previous_attempts) = self.take_running(attempt) {
            self.start(previous_attempts, true);
        }
    }

    /// `attempt` received its response headers (or a response message): the call commits to it,
    /// every other attempt is cancelled, and its `perAttemptRecvTimeout` no longer runs.
    pub fn handle_response_headers(&mut self, attempt: AttemptId, now: Instant) {
        self.advance(now);
        if self.finished {
            return;
        }
        if !self.is_running(attempt) {
            return;
        }
        if self
            .recv_deadline
            .is_some_and(|(timed, _)| timed == attempt)
        {
            self.recv_deadline = None;
        }
        self.commit(attempt);
    }

    /// The application sent `bytes` more of request, which the call must keep for replays. If
    /// that passes the per-call or the per-channel limit, the call commits to its oldest running
    /// attempt (the one that has sent the most); with none running (a retry is waiting), it
    /// finishes with the last attempt's status, as nothing could carry the new message.
    pub fn handle_request_buffered(&mut self, bytes: u64, now: Instant) {
        self.advance(now);
        if self.finished || self.committed.is_some() {
            return;
        }
        if self.channel.buffer.try_take(self.buffered, bytes) {
            self.buffered += bytes;
            return;
        }
        match self.running.first() {
            Some(oldest) => self.commit(oldest.attempt),
            None => self.finish_with_last_end(),
        }
    }

    /// Time passed: cancels the attempts whose `perAttemptRecvTimeout` passed (with
    /// [`RetryAction::TimedOut`]), then starts the retry or hedge that is due. Call it at
    /// [`RetryCall::poll_timeout`]; an input about an attempt given before it counts, even if
    /// that attempt's timeout had passed by then.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.run_timers();
    }

    /// The next thing to do, or `None` until the next input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<RetryAction> {
        self.actions.pop_front()
    }

    /// When [`RetryCall::handle_timeout`] must be called next, if ever: a retry's backoff or the
    /// next hedge is due, or a running attempt's `perAttemptRecvTimeout` passes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        match (self.next_attempt_at, self.recv_deadline) {
            (Some(next), Some((_, recv_by))) => Some(next.min(recv_by)),
            (next, recv) => next.or(recv.map(|(_, recv_by)| recv_by)),
        }
    }

    /// Whether the call has finished.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The attempt the call is committed to, if it is.
    pub fn committed(&self) -> Option<AttemptId> {
        self.committed
    }

    /// The attempts started under the policy so far (retries and hedges, the first included;
    /// transparent replays not).
    pub fn policy_attempts(&self) -> u32 {
        self.policy_attempts
    }

    /// The transparent replays so far.
    pub fn transparent_retries(&self) -> u32 {
        self.not_sent_replays + self.refused_replays
    }

    /// The attempts running now, oldest first.
    pub fn running(&self) -> impl ExactSizeIterator<Item = AttemptId> + '_ {
        self.running.iter().map(|running| running.attempt)
    }

    /// The request bytes this call holds in its channel's buffer.
    pub fn buffered(&self) -> u64 {
        self.buffered
    }

    /// What follows `attempt`'s end with `code`, taken off the running list: a retry or the next
    /// hedge if `may_go_on` and the rest of the policy allow, else the call's end.
    fn ended(&mut self, attempt: AttemptId, code: Code, pushback: Pushback, may_go_on: bool) {
        self.last_end = Some((attempt, code));
        if code == Code::Ok || self.committed == Some(attempt) {
            return self.commit_and_finish(attempt, code);
        }
        let max_attempts = self.policy.max_attempts();
        match &self.policy {
            CallPolicy::Retry(retry) => {
                let retry_now = may_go_on
                    && pushback != Pushback::Stop
                    && self.committed.is_none()
                    && self.policy_attempts < max_attempts
                    && self.channel.allows_retries();
                if !retry_now {
                    return self.finish(attempt, code);
                }
                let ceiling = self.ceiling.get_or_insert(BackoffCeiling::first(retry));
                let wait = match pushback {
                    Pushback::After(wait) => {
                        // A6: after a pushback, the backoff starts over from initialBackoff.
                        *ceiling = BackoffCeiling::first(retry);
                        wait
                    }
                    _ => ceiling.next_wait(retry, &mut self.rng),
                };
                self.next_attempt_at = Some(later(self.now, wait));
            }
            CallPolicy::Hedging(_) => {
                if !may_go_on {
                    return self.commit_and_finish(attempt, code);
                }
                if pushback == Pushback::Stop {
                    self.hedging_stopped = true;
                    self.next_attempt_at = None;
                } else if !self.hedging_stopped && self.policy_attempts < max_attempts {
                    // A non-fatal status sends the next hedge at once, or after the pushback.
                    let wait = match pushback {
                        Pushback::After(wait) => wait,
                        _ => Duration::ZERO,
                    };
                    self.next_attempt_at = Some(later(self.now, wait));
                }
                if self.running.is_empty() && self.next_attempt_at.is_none() {
                    self.finish(attempt, code);
                }
            }
            CallPolicy::None => self.finish(attempt, code),
        }
    }

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards, whatever the caller passes.
        self.now = self.now.max(now);
    }

    fn run_timers(&mut self) {
        self.expire_recv_timeout();
        while let Some(at) = self.next_attempt_at {
            if self.finished || at > self.now {
                return;
            }
            self.next_attempt_at = None;
            self.launch();
        }
    }

    /// Starts the due policy attempt: a retry, or a hedge (which the throttle may stop).
    fn launch(&mut self) {
        let max_attempts = self.policy.max_attempts();
        if self.policy_attempts >= max_attempts {
            return;
        }
        let hedging = match &self.policy {
            CallPolicy::Hedging(hedging) => Some(hedging.hedging_delay()),
            _ => None,
        };
        if let Some(delay) = hedging {
            if self.policy_attempts > 0 && !self.channel.allows_retries() {
                self.hedging_stopped = true;
                if self.running.is_empty() {
                    self.finish_with_last_end();
                }
                return;
            }
            if self.policy_attempts + 1 < max_attempts && !self.hedging_stopped {
                self.next_attempt_at = Some(later(self.now, delay));
            }
        }
        let previous_attempts = self.policy_attempts;
        self.policy_attempts += 1;
        self.start(previous_attempts, false);
    }

    /// Ends the attempt that has waited `perAttemptRecvTimeout` for its response headers, if
    /// one has. It is cancelled and ends with CANCELLED; that counts as a failure for the
    /// throttle and is retried whatever the retryable codes say, while `maxAttempts`, the
    /// throttle and a commit allow (gRPC's own client does the same).
    fn expire_recv_timeout(&mut self) {
        let Some((attempt, at)) = self.recv_deadline else {
            return;
        };
        if at <= self.now && !self.finished && self.take_running(attempt).is_some() {
            self.actions.push_back(RetryAction::TimedOut(attempt));
            if let Some(throttle) = &self.channel.throttle {
                throttle.record_failure();
            }
            self.ended(attempt, Code::Cancelled, Pushback::None, true);
        }
    }

    fn start(&mut self, previous_attempts: u32, transparent: bool) {
        let attempt = AttemptId(self.next_id);
        self.next_id += 1;
        if let Some(timeout) = self.recv_timeout {
            self.recv_deadline = Some((attempt, later(self.now, timeout)));
        }
        self.running.push(Running {
            attempt,
            previous_attempts,
        });
        self.actions.push_back(RetryAction::Start {
            attempt,
            previous_attempts,
            transparent,
        });
    }

    fn is_running(&self, attempt: AttemptId) -> bool {
        self.running
            .iter()
            .any(|running| running.attempt == attempt)
    }

    /// Takes `attempt` off the running list; its `grpc-previous-rpc-attempts` if it was there.
    fn take_running(&mut self, attempt: AttemptId) -> Option<u32> {
        let index = self
            .running
            .iter()
            .position(|running| running.attempt == attempt)?;
        if self
            .recv_deadline
            .is_some_and(|(timed, _)| timed == attempt)
        {
            self.recv_deadline = None;
        }
        Some(self.running.remove(index).previous_attempts)
    }

    /// A6's throttle counts successes, and failures that the policy would retry or hedge past
    /// (or that pushback says not to retry); other failures are the caller's, not the server's.
    fn count_for_throttle(&self, code: Code, pushback: Pushback) {
        let Some(throttle) = &self.channel.throttle else {
            return;
        };
        if code == Code::Ok {
            throttle.record_success();
        } else if self.policy.allows(code) || pushback == Pushback::Stop {
            throttle.record_failure();
        }
    }

    fn commit(&mut self, attempt: AttemptId) {
        if self.committed.is_some() {
            return;
        }
        self.committed = Some(attempt);
        self.next_attempt_at = None;
        self.release_buffer();
        self.actions.push_back(RetryAction::Commit(attempt));
        self.cancel_running_except(Some(attempt));
    }

    fn commit_and_finish(&mut self, attempt: AttemptId, code: Code) {
        self.commit(attempt);
        self.finish(attempt, code);
    }

    fn finish_with_last_end(&mut self) {
        if let Some((attempt, code)) = self.last_end {
            self.finish(attempt, code);
        }
    }

    fn finish(&mut self, attempt: AttemptId, code: Code) {
        self.cancel_running_except(None);
        self.next_attempt_at = None;
        self.recv_deadline = None;
        self.release_buffer();
        self.finished = true;
        self.actions
            .push_back(RetryAction::Finish { attempt, code });
    }

    fn cancel_running_except(&mut self, keep: Option<AttemptId>) {
        let actions = &mut self.actions;
        self.running.retain(|running| {
            let cancel = Some(running.attempt) != keep;
            if cancel {
                actions.push_back(RetryAction::Cancel(running.attempt));
            }
            !cancel
        });
    }

    fn release_buffer(&mut self) {
        self.channel
            .buffer
            .give_back(std::mem::take(&mut self.buffered));
    }
}

impl Drop for RetryCall {
    fn drop(&mut self) {
        self.release_buffer();
    }
}

/// One running attempt.
#[derive(Clone, Copy, Debug)]
struct Running {
    attempt: AttemptId,
    /// Its `grpc-previous-rpc-attempts`.
    previous_attempts: u32,
}

/// The longest wait the machine plans: a policy's backoff may be any `Duration`, an `Instant` may
/// not reach that far.
const LONGEST_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait.min(LONGEST_WAIT)).unwrap_or(now)
}
