//! A scripted adapter around one call's retry machine, a [`RetryCall`], that checks the
//! machine's invariants after every step (with feature `arbitrary`, fuzzers generate
//! [`RetryScenario`]s):
//!
//! - no more policy attempts than `maxAttempts` (at most 5), each with
//!   `grpc-previous-rpc-attempts` one more than the last; attempt handles never reused;
//! - no attempt starts after the call committed or finished;
//! - a `Cancel` or a `TimedOut` names a running attempt (a timed-out one ends CANCELLED);
//!   there is at most one `Commit`;
//! - the call finishes exactly once, with the status of an attempt that ended with it, and by
//!   then every started attempt has ended or been cancelled;
//! - the throttle stays within `0..=maxTokens`, and the channel's buffer holds exactly what the
//!   call holds (nothing once it is over).
//!
//! A broken invariant panics with a message saying which.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::retry::{
    AttemptId, CallPolicy, ChannelRetry, CodeSet, HedgingPolicy, Pushback, RetryAction,
    RetryBuffer, RetryCall, RetryPolicy, RetryThrottle, Unprocessed, NOT_SENT_REPLAY_LIMIT,
    REFUSED_REPLAY_LIMIT,
};
use croupier::Code;

/// One call's policy, channel settings and the events its attempts meet.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RetryScenario {
    /// 0: no policy, odd: a retry policy, even: a hedging policy.
    pub kind: u8,
    /// `maxAttempts` (values below 2 make the policy invalid: the call then has none).
    pub max_attempts: u8,
    /// `initialBackoff` or `hedgingDelay`, in milliseconds.
    pub delay_ms: u16,
    /// `maxBackoff`, in milliseconds.
    pub max_backoff_ms: u16,
    /// `backoffMultiplier`, in tenths.
    pub multiplier_tenths: u8,
    /// The retryable or non-fatal codes, one bit per code value.
    pub codes: u32,
    /// `retryThrottling` as (`maxTokens`, `tokenRatio` in thousandths), if any.
    pub throttle: Option<(u16, u16)>,
    /// The per-call and per-channel buffer limits, in bytes.
    pub buffer: (u16, u16),
    /// The jitter seed.
    pub seed: u64,
    /// A retry policy's `perAttemptRecvTimeout`, in milliseconds (0: none).
    pub recv_timeout_ms: u16,
    /// What happens, in order.
    pub steps: Vec<RetryStep>,
}

/// One event of a [`RetryScenario`]. `pick` chooses a running attempt by index; one past the
/// last names an attempt that is not running, which the machine must ignore.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum RetryStep {
    /// An attempt ends with a code (by value) and a pushback header.
    End(u8, u8, PushbackHeader),
    /// An attempt was not processed (refused by the server if `true`), with a code.
    Unprocessed(u8, bool, u8),
    /// An attempt receives response headers.
    Headers(u8),
    /// The application sends more request bytes.
    Buffered(u16),
    /// Time passes, in milliseconds.
    Advance(u16),
    /// Time jumps to the machine's timeout, if it has one.
    Timeout,
}

/// A `grpc-retry-pushback-ms` header as a server might send it.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum PushbackHeader {
    /// No header.
    Absent,
    /// A wait in milliseconds.
    Millis(u16),
    /// A negative number.
    Negative,
    /// Not a number.
    Garbled,
}

impl PushbackHeader {
    fn parse(self) -> Pushback {
        match self {
            PushbackHeader::Absent => Pushback::from_header(None),
            PushbackHeader::Millis(ms) => Pushback::from_header(Some(ms.to_string().as_bytes())),
            PushbackHeader::Negative => Pushback::from_header(Some(b"-1")),
            PushbackHeader::Garbled => Pushback::from_header(Some(b"12x")),
        }
    }
}

/// What a run of a [`RetryScenario`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryRun {
    /// Attempts started under the policy.
    pub policy_attempts: u32,
    /// Transparent replays.
    pub transparent_retries: u32,
    /// Whether the call committed to an attempt.
    pub committed: bool,
    /// The call's final code.
    pub code: Code,
}

impl RetryScenario {
    /// The policy the scenario describes (none if its settings are invalid).
    pub fn policy(&self) -> CallPolicy {
        let codes: CodeSet = (0..17)
            .filter(|bit| self.codes & 1 << bit != 0)
            .map(Code::from_value)
            .collect();
        let attempts = u32::from(self.max_attempts);
        let delay = Duration::from_millis(self.delay_ms.into());
        let built = match self.kind {
            0 => return CallPolicy::None,
            kind if kind % 2 == 1 => {
                let max_backoff = Duration::from_millis(self.max_backoff_ms.into());
                let multiplier = f64::from(self.multiplier_tenths) / 10.0;
                match self.recv_timeout_ms {
                    0 => RetryPolicy::new(attempts, delay, max_backoff, multiplier, codes),
                    ms => RetryPolicy::with_recv_timeout(
                        attempts,
                        delay,
                        max_backoff,
                        multiplier,
                        codes,
                        Duration::from_millis(ms.into()),
                    ),
                }
                .map(CallPolicy::Retry)
            }
            _ => HedgingPolicy::new(attempts, delay, codes).map(CallPolicy::Hedging),
        };
        built.unwrap_or_default()
    }

    /// Runs the scenario from `start` (any instant: only the steps' advances matter), then ends
    /// every attempt still running until the call finishes, checking the invariants throughout.
    pub fn run(&self, start: Instant) -> RetryRun {
        let mut channel = ChannelRetry::new()
            .buffer(RetryBuffer::new(self.buffer.0.into(), self.buffer.1.into()));
        if let Some((tokens, ratio)) = self.throttle {
            if let Ok(throttle) = RetryThrottle::new(tokens.into(), f64::from(ratio) / 1000.0) {
                channel = channel.throttle(throttle);
            }
        }
        let channel = Arc::new(channel);
        let policy = self.policy();
        let mut check = Checker::new(&policy);
        let mut now = start;
        let mut call = RetryCall::new(policy, Arc::clone(&channel), self.seed, now);
        check.drain(&mut call, &channel);
        for step in &self.steps {
            match *step {
                RetryStep::End(pick, code, pushback) => {
                    let attempt = check.pick(pick);
                    let code = code_of(code);
                    check.ended(attempt, code);
                    call.handle_attempt_end(attempt, code, pushback.parse(), now);
                }
                RetryStep::Unprocessed(pick, refused, code) => {
                    let attempt = check.pick(pick);
                    let code = code_of(code);
                    check.ended(attempt, code);
                    let why = if refused {
                        Unprocessed::Refused
                    } else {
                        Unprocessed::NotSent
                    };
                    call.handle_attempt_unprocessed(attempt, why, code, now);
                }
                RetryStep::Headers(pick) => call.handle_response_headers(check.pick(pick), now),
                RetryStep::Buffered(bytes) => call.handle_request_buffered(bytes.into(), now),
                RetryStep::Advance(ms) => {
                    now += Duration::from_millis(ms.into());
                    call.handle_timeout(now);
                }
                RetryStep::Timeout => {
                    if let Some(at) = call.poll_timeout() {
                        now = now.max(at);
                        call.handle_timeout(now);
                    }
                }
            }
            check.drain(&mut call, &channel);
        }
        // Every attempt left fails UNAVAILABLE, every timer fires: the call must end.
        let bound = 2 * (5 + NOT_SENT_REPLAY_LIMIT + REFUSED_REPLAY_LIMIT) as usize + 2;
        for _ in 0..bound {
            if check.finished.is_some() {
                break;
            }
            let oldest = call.running().next();
            if let Some(attempt) = oldest {
                check.ended(attempt, Code::Unavailable);
                call.handle_attempt_end(attempt, Code::Unavailable, Pushback::None, now);
            } else if let Some(at) = call.poll_timeout() {
                now = now.max(at);
                call.handle_timeout(now);
            }
            check.drain(&mut call, &channel);
        }
        let code = check.finished.expect("the call never finished");
        let run = RetryRun {
            policy_attempts: call.policy_attempts(),
            transparent_retries: call.transparent_retries(),
            committed: call.committed().is_some(),
            code,
        };
        drop(call);
        assert_eq!(
            channel.buffer.used(),
            0,
            "a dropped call left bytes buffered"
        );
        run
    }
}

fn code_of(value: u8) -> Code {
    Code::from_value(u32::from(value % 17))
}

/// The model of what the adapter holds, against which every action is checked.
struct Checker {
    max_attempts: u32,
    hedging: bool,
    /// Running attempts, oldest first.
    running: Vec<AttemptId>,
    /// Every attempt ever started, with its `grpc-previous-rpc-attempts`.
    started: BTreeMap<AttemptId, u32>,
    /// The code each attempt ended with.
    ended: BTreeMap<AttemptId, Code>,
    policy_starts: u32,
    transparent_starts: u32,
    committed: Option<AttemptId>,
    finished: Option<Code>,
}

impl Checker {
    fn new(policy: &CallPolicy) -> Self {
        Checker {
            max_attempts: policy.max_attempts(),
            hedging: matches!(policy, CallPolicy::Hedging(_)),
            running: Vec::new(),
            started: BTreeMap::new(),
            ended: BTreeMap::new(),
            policy_starts: 0,
            transparent_starts: 0,
            committed: None,
            finished: None,
        }
    }

    /// A running attempt by index, or (one past the last) an attempt that is not running.
    fn pick(&self, pick: u8) -> AttemptId {
        let index = usize::from(pick) % (self.running.len() + 1);
        self.running
            .get(index)
            .copied()
            .unwrap_or(AttemptId::new(u32::from(pick) + 1000))
    }

    /// The adapter reports `attempt`'s end (ignored by the machine if it is not running).
    fn ended(&mut self, attempt: AttemptId, code: Code) {
        if self.finished.is_none() {
            if let Some(index) = self.running.iter().position(|&a| a == attempt) {
                self.running.remove(index);
                self.ended.insert(attempt, code);
            }
        }
    }

    fn drain(&mut self, call: &mut RetryCall, channel: &ChannelRetry) {
        while let Some(action) = call.poll_action() {
            assert!(
                self.finished.is_none(),
                "{action:?} after the call finished"
            );
            self.apply(action);
        }
        let machine: Vec<AttemptId> = call.running().collect();
        assert_eq!(machine, self.running, "the machine's running attempts");
        assert_eq!(call.is_finished(), self.finished.is_some());
        if self.finished.is_some() {
            assert_eq!(call.poll_timeout(), None, "a timer after the call finished");
        }
        assert_eq!(channel.buffer.used(), call.buffered(), "buffer accounting");
        assert!(call.buffered() <= channel.buffer.per_call_limit());
        if let Some(throttle) = &channel.throttle {
            let tokens = throttle.tokens();
            assert!((0.0..=f64::from(throttle.max_tokens())).contains(&tokens));
        }
    }

    fn apply(&mut self, action: RetryAction) {
        match action {
            RetryAction::Start {
                attempt,
                previous_attempts,
                transparent,
            } => {
                assert!(self.committed.is_none(), "{attempt} started after a commit");
                assert!(!self.started.contains_key(&attempt), "{attempt} reused");
                assert!(previous_attempts < self.max_attempts.max(1));
                if transparent {
                    self.transparent_starts += 1;
                    assert!(
                        self.transparent_starts <= NOT_SENT_REPLAY_LIMIT + REFUSED_REPLAY_LIMIT
                    );
                } else {
                    assert_eq!(previous_attempts, self.policy_starts, "previous attempts");
                    self.policy_starts += 1;
                    assert!(self.policy_starts <= self.max_attempts, "past maxAttempts");
                }
                self.started.insert(attempt, previous_attempts);
                self.running.push(attempt);
                let most = if self.hedging { self.max_attempts } else { 1 };
                assert!(
                    self.running.len() as u32 <= most,
                    "too many attempts at once"
                );
            }
            RetryAction::Cancel(attempt) => {
                let index = self.running.iter().position(|&a| a == attempt);
                let index = index.unwrap_or_else(|| panic!("{attempt} cancelled, not running"));
                self.running.remove(index);
            }
            RetryAction::TimedOut(attempt) => {
                let index = self.running.iter().position(|&a| a == attempt);
                let index = index.unwrap_or_else(|| panic!("{attempt} timed out, not running"));
                self.running.remove(index);
                self.ended.insert(attempt, Code::Cancelled);
            }
            RetryAction::Commit(attempt) => {
                assert!(self.committed.is_none(), "a second commit, to {attempt}");
                // To a running attempt, or to the one whose end just committed the call.
                let live = self.running.contains(&attempt) || self.ended.contains_key(&attempt);
                assert!(live, "commit to {attempt}, never started");
                self.committed = Some(attempt);
            }
            RetryAction::Finish { attempt, code } => {
                assert!(
                    self.running.is_empty(),
                    "finished with {:?} running",
                    self.running
                );
                assert_eq!(
                    self.ended.get(&attempt),
                    Some(&code),
                    "finish with {attempt}"
                );
                if let Some(committed) = self.committed {
                    assert_eq!(
                        committed, attempt,
                        "finished with another than the committed"
                    );
                }
                self.finished = Some(code);
            }
            // Checking an action it does not know would make every later check a guess.
            other => panic!("the scripted retry adapter cannot carry out {other:?}"),
        }
    }
}
