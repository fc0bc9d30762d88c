//! The policies a call is retried or hedged by (gRFC A6 `retryPolicy` and `hedgingPolicy`), and the
//! set of status codes they name. Each is built by a validating constructor, so a policy that
//! exists is one the machine can run.

use std::fmt;
use std::time::Duration;

use crate::status::Code;

/// The most attempts A6 lets a retry or hedging policy make; a larger `maxAttempts` counts as this.
pub const MAX_ATTEMPTS_LIMIT: u32 = 5;

/// A set of gRPC status codes, as bits: asking whether it holds one costs nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CodeSet(u32);

impl CodeSet {
    /// The empty set.
    pub const fn new() -> Self {
        CodeSet(0)
    }

    /// This set with `code` added.
    #[must_use]
    pub fn with(self, code: Code) -> Self {
        CodeSet(self.0 | 1 << code.value())
    }

    /// Whether `code` is in the set.
    pub fn contains(&self, code: Code) -> bool {
        self.0 & 1 << code.value() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The codes in the set, by numeric value.
    pub fn iter(&self) -> impl Iterator<Item = Code> + '_ {
        (0..17u32)
            .map(Code::from_value)
            .filter(move |code| self.contains(*code))
    }
}

impl FromIterator<Code> for CodeSet {
    fn from_iter<I: IntoIterator<Item = Code>>(codes: I) -> Self {
        codes.into_iter().fold(CodeSet::new(), CodeSet::with)
    }
}

/// `retryPolicy`: a failed attempt whose status is retryable is tried again after a random,
/// exponentially growing wait.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    backoff_multiplier: f64,
    retryable_status_codes: CodeSet,
    per_attempt_recv_timeout: Option<Duration>,
}

impl RetryPolicy {
    /// A retry policy, checked as A6 asks: `max_attempts` at least 2 (more than 5 counts as 5),
    /// both backoffs and the multiplier more than zero, at least one retryable code.
    pub fn new(
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
        backoff_multiplier: f64,
        retryable_status_codes: CodeSet,
    ) -> Result<Self, RetryPolicyError> {
        if retryable_status_codes.is_empty() {
            return Err(RetryPolicyError::NoRetryableCodes);
        }
        RetryPolicy::checked(
            max_attempts,
            initial_backoff,
            max_backoff,
            backoff_multiplier,
            retryable_status_codes,
        )
    }

    /// A retry policy with `perAttemptRecvTimeout` of `recv_timeout`, checked as
    /// [`RetryPolicy::new`] but for `retryable_status_codes`, which may be empty here: such a
    /// policy retries only attempts that wait longer than `recv_timeout` for their response
    /// headers (as Envoy's `per_try_timeout` does, and gRPC's clients allow).
    pub fn with_recv_timeout(
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
        backoff_multiplier: f64,
        retryable_status_codes: CodeSet,
        recv_timeout: Duration,
    ) -> Result<Self, RetryPolicyError> {
        RetryPolicy::checked(
            max_attempts,
            initial_backoff,
            max_backoff,
            backoff_multiplier,
            retryable_status_codes,
        )?
        .with_per_attempt_recv_timeout(recv_timeout)
    }

    /// The checks of [`RetryPolicy::new`] but for the retryable codes.
    fn checked(
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
        backoff_multiplier: f64,
        retryable_status_codes: CodeSet,
    ) -> Result<Self, RetryPolicyError> {
        check_attempts("retryPolicy", max_attempts)?;
        for (field, value) in [
            ("initialBackoff", initial_backoff),
            ("maxBackoff", max_backoff),
        ] {
            if value.is_zero() {
                return Err(RetryPolicyError::NonPositiveBackoff { field });
            }
        }
        if !(backoff_multiplier.is_finite() && backoff_multiplier > 0.0) {
            return Err(RetryPolicyError::BadMultiplier(backoff_multiplier));
        }
        Ok(RetryPolicy {
            max_attempts,
            initial_backoff,
            max_backoff,
            backoff_multiplier,
            retryable_status_codes,
            per_attempt_recv_timeout: None,
        })
    }

    /// This policy with `perAttemptRecvTimeout` (gRFC A6): how long one attempt may wait, from
    /// its start, for its response headers, more than zero. An attempt that waits longer is
    /// cancelled and ends with CANCELLED, which is retried whatever the retryable codes; the
    /// call's own deadline still bounds every attempt together.
    pub fn with_per_attempt_recv_timeout(
        self,
        timeout: Duration,
    ) -> Result<Self, RetryPolicyError> {
        if timeout.is_zero() {
            return Err(RetryPolicyError::ZeroPerAttemptRecvTimeout);
        }
        Ok(RetryPolicy {
            per_attempt_recv_timeout: Some(timeout),
            ..self
        })
    }

    /// `maxAttempts` as given.
    pub fn configured_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The attempts a call makes at most, the first included: `maxAttempts`, capped at 5.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.min(MAX_ATTEMPTS_LIMIT)
    }

    /// `initialBackoff`: the longest wait before the first retry.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// `maxBackoff`: no wait is longer.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// `backoffMultiplier`: how the longest wait grows from one retry to the next.
    pub fn backoff_multiplier(&self) -> f64 {
        self.backoff_multiplier
    }

    /// `retryableStatusCodes`: the statuses that are retried.
    pub fn retryable_status_codes(&self) -> CodeSet {
        self.retryable_status_codes
    }

    /// `perAttemptRecvTimeout`, if set: the longest one attempt waits for its response headers.
    pub fn per_attempt_recv_timeout(&self) -> Option<Duration> {
        self.per_attempt_recv_timeout
    }
}

/// `hedgingPolicy`: copies of a call start every `hedging_delay`, up to `max_attempts`, until one
/// of them succeeds or fails with a fatal status.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgingPolicy {
    max_attempts: u32,
    hedging_delay: Duration,
    non_fatal_status_codes: CodeSet,
}

impl HedgingPolicy {
    /// A hedging policy: `max_attempts` at least 2 (more than 5 counts as 5). A zero delay starts
    /// every copy at once; an empty `non_fatal_status_codes` makes every failure fatal.
    pub fn new(
        max_attempts: u32,
        hedging_delay: Duration,
        non_fatal_status_codes: CodeSet,
    ) -> Result<Self, RetryPolicyError> {
        check_attempts("hedgingPolicy", max_attempts)?;
        Ok(HedgingPolicy {
            max_attempts,
            hedging_delay,
            non_fatal_status_codes,
        })
    }

    /// `maxAttempts` as given.
    pub fn configured_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The copies a call sends at most, the first included: `maxAttempts`, capped at 5.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.min(MAX_ATTEMPTS_LIMIT)
    }

    /// `hedgingDelay`: the wait from one copy to the next.
    pub fn hedging_delay(&self) -> Duration {
        self.hedging_delay
    }

    /// `nonFatalStatusCodes`: statuses after which the other copies go on and the next starts.
    pub fn non_fatal_status_codes(&self) -> CodeSet {
        self.non_fatal_status_codes
    }
}

/// What a call does about failures: one policy or neither (a method config may not set both).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum CallPolicy {
    /// No retries and no hedges: only transparent retries of attempts no server processed.
    #[default]
    None,
    /// Retries by a [`RetryPolicy`].
    Retry(RetryPolicy),
    /// Hedges by a [`HedgingPolicy`].
    Hedging(HedgingPolicy),
}

impl CallPolicy {
    /// The policy of a method config that may name either: an error if it names both.
    pub fn from_parts(
        retry: Option<RetryPolicy>,
        hedging: Option<HedgingPolicy>,
    ) -> Result<Self, RetryPolicyError> {
        match (retry, hedging) {
            (Some(_), Some(_)) => Err(RetryPolicyError::BothPolicies),
            (Some(retry), None) => Ok(CallPolicy::Retry(retry)),
            (None, Some(hedging)) => Ok(CallPolicy::Hedging(hedging)),
            (None, None) => Ok(CallPolicy::None),
        }
    }

    /// The attempts a call makes at most under this policy (1 without one), transparent retries
    /// aside.
    pub fn max_attempts(&self) -> u32 {
        match self {
            CallPolicy::None => 1,
            CallPolicy::Retry(policy) => policy.max_attempts(),
            CallPolicy::Hedging(policy) => policy.max_attempts(),
        }
    }

    /// Whether a failure with `code` lets the call go on: retryable for a retry policy, non-fatal
    /// for a hedging one, never without a policy.
    pub(crate) fn allows(&self, code: Code) -> bool {
        match self {
            CallPolicy::None => false,
            CallPolicy::Retry(policy) => policy.retryable_status_codes.contains(code),
            CallPolicy::Hedging(policy) => policy.non_fatal_status_codes.contains(code),
        }
    }
}

fn check_attempts(policy: &'static str, max_attempts: u32) -> Result<(), RetryPolicyError> {
    if max_attempts < 2 {
        return Err(RetryPolicyError::TooFewAttempts {
            policy,
            max_attempts,
        });
    }
    Ok(())
}

/// A retry, hedging or throttling setting that cannot be used, naming the field and the rule.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RetryPolicyError {
    /// `maxAttempts` below 2.
    TooFewAttempts {
        /// `retryPolicy` or `hedgingPolicy`.
        policy: &'static str,
        /// The value given.
        max_attempts: u32,
    },
    /// `initialBackoff` or `maxBackoff` is zero.
    NonPositiveBackoff {
        /// The field's name.
        field: &'static str,
    },
    /// `perAttemptRecvTimeout` is zero.
    ZeroPerAttemptRecvTimeout,
    /// `backoffMultiplier` is zero, negative or not a number.
    BadMultiplier(f64),
    /// `retryableStatusCodes` is empty, and no `perAttemptRecvTimeout` is set.
    NoRetryableCodes,
    /// Both `retryPolicy` and `hedgingPolicy` are set.
    BothPolicies,
    /// `retryThrottling.maxTokens` is not in `1..=1000`.
    BadMaxTokens(u32),
    /// `retryThrottling.tokenRatio` is not more than zero to three decimal places.
    BadTokenRatio(f64),
}

impl fmt::Display for RetryPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryPolicyError::TooFewAttempts {
                policy,
                max_attempts,
            } => write!(
                f,
                "{policy}.maxAttempts is {max_attempts}: it must be 2 or more"
            ),
            RetryPolicyError::NonPositiveBackoff { field } => {
                write!(f, "retryPolicy.{field} is zero: it must be more than zero")
            }
            RetryPolicyError::ZeroPerAttemptRecvTimeout => {
                f.write_str("retryPolicy.perAttemptRecvTimeout is zero: it must be more than zero")
            }
            RetryPolicyError::BadMultiplier(value) => write!(
                f,
                "retryPolicy.backoffMultiplier is {value}: it must be a number more than zero"
            ),
            RetryPolicyError::NoRetryableCodes => f.write_str(
                "retryPolicy.retryableStatusCodes is empty: name at least one status code, or set \
                 perAttemptRecvTimeout",
            ),
            RetryPolicyError::BothPolicies => f.write_str(
                "both retryPolicy and hedgingPolicy are set: a method may have only one",
            ),
            RetryPolicyError::BadMaxTokens(value) => write!(
                f,
                "retryThrottling.maxTokens is {value}: it must be from 1 to 1000"
            ),
            RetryPolicyError::BadTokenRatio(value) => write!(
                f,
                "retryThrottling.tokenRatio is {value}: it must be at least 0.001"
            ),
        }
    }
}

impl std::error::Error for RetryPolicyError {}
