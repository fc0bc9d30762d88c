//! How the simulated clients retry or hedge their calls: a gRFC A6 policy run by the core's
//! [`RetryCall`](croupier::retry::RetryCall), a throttle per client, and what a backend does with
//! an attempt the client cancels.

use std::fmt;
use std::time::Duration;

use croupier::retry::{CallPolicy, RetryPolicyError, RetryThrottle};

/// What a backend does when the client cancels an attempt it holds (an HTTP/2 `RST_STREAM`, sent
/// for a losing hedge).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cancellation {
    /// The attempt leaves the backend when the cancel reaches it: out of the queue if it waits,
    /// its slot freed if it is in service. This is what a tonic server does (hyper drops the
    /// handler's future when the stream is reset) and what a grpc-go handler does that returns
    /// when its context is cancelled.
    #[default]
    StopsWork,
    /// The backend serves the attempt to its end anyway and the client drops the response: a
    /// handler that never looks at cancellation.
    FinishesWork,
}

/// A scenario's retries or hedging: the policy every call of every client runs under, and the
/// `retryThrottling` each client's channel shares among its calls.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetrySpec {
    policy: CallPolicy,
    throttle: Option<(u32, u32)>,
    cancellation: Cancellation,
}

impl RetrySpec {
    /// Every call runs under `policy`, without a throttle; cancelled attempts stop the work.
    pub fn new(policy: CallPolicy) -> Self {
        RetrySpec {
            policy,
            throttle: None,
            cancellation: Cancellation::default(),
        }
    }

    /// Each client throttles its retries and hedges with `retryThrottling { maxTokens, tokenRatio }`
    /// (A6's rules: 1 to 1000 tokens, a ratio of at least 0.001).
    pub fn throttle(mut self, max_tokens: u32, token_ratio: f64) -> Result<Self, RetryPolicyError> {
        let throttle = RetryThrottle::new(max_tokens, token_ratio)?;
        let thousandths = (throttle.token_ratio() * 1000.0).round() as u32;
        self.throttle = Some((max_tokens, thousandths));
        Ok(self)
    }

    /// What backends do with cancelled attempts.
    pub fn cancellation(mut self, cancellation: Cancellation) -> Self {
        self.cancellation = cancellation;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &CallPolicy {
        &self.policy
    }

    /// What backends do with cancelled attempts.
    pub fn cancels(&self) -> Cancellation {
        self.cancellation
    }

    /// A fresh throttle for one client, full, if the spec sets one.
    pub(crate) fn new_throttle(&self) -> Option<RetryThrottle> {
        let (tokens, thousandths) = self.throttle?;
        RetryThrottle::with_thousandths(tokens, thousandths).ok()
    }
}

impl fmt::Display for RetrySpec {
    /// A short label: `hedging (2 attempts, 30 ms)`, `retries (3 attempts, backoff 100 ms..1 s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            CallPolicy::Hedging(hedging) => write!(
                f,
                "hedging ({} attempts, {})",
                hedging.max_attempts(),
                duration(hedging.hedging_delay())
            )?,
            CallPolicy::Retry(retry) => write!(
                f,
                "retries ({} attempts, backoff {}..{})",
                retry.max_attempts(),
                duration(retry.initial_backoff()),
                duration(retry.max_backoff())
            )?,
            _ => f.write_str("no retries")?,
        }
        if let Some((tokens, thousandths)) = self.throttle {
            write!(f, ", throttle {tokens}/{}", f64::from(thousandths) / 1000.0)?;
        }
        if self.cancellation == Cancellation::FinishesWork {
            f.write_str(", cancelled work finished")?;
        }
        Ok(())
    }
}

fn duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
