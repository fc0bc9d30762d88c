//! Retries and hedging (gRFC A6) in the channel: the settings a builder takes, the policy each
//! call is looked up by, and (feature `tower`) the front that runs a call's attempts by
//! [`croupier::retry::RetryCall`]'s decisions.

#[cfg(feature = "tower")]
mod front;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use croupier::retry::{
    CallPolicy, ChannelRetry, HedgingPolicy, RetryBuffer, RetryCall, RetryPolicy, RetryThrottle,
};
use croupier::service_config::MethodConfig;

use crate::channel::ChannelBuilder;
use crate::connector::Connector;

#[cfg(feature = "tower")]
pub(crate) use front::{send, Committed};

/// What a builder was told about retries, before the channel is built.
#[derive(Debug, Default)]
pub(crate) struct RetrySettings {
    policy: CallPolicy,
    throttle: Option<RetryThrottle>,
    buffer: Option<RetryBuffer>,
}

impl RetrySettings {
    /// The channel's part, shared by its calls; `seed` seeds each call's backoff jitter.
    pub(crate) fn build(self, seed: u64) -> Retries {
        Retries {
            policy: self.policy,
            throttle: self.throttle.map(Arc::new),
            buffer: Arc::new(self.buffer.unwrap_or_default()),
            seed,
            calls: AtomicU64::new(0),
        }
    }
}

/// A channel's retries: the builder's policy and throttle (a service config's win over them),
/// the buffer budget its calls share, and the seed of their jitter.
#[derive(Debug)]
pub(crate) struct Retries {
    policy: CallPolicy,
    throttle: Option<Arc<RetryThrottle>>,
    buffer: Arc<RetryBuffer>,
    seed: u64,
    /// Calls that retried so far, to give each its own seed.
    calls: AtomicU64,
}

impl Retries {
    /// The policy of a call whose method the service config in use gives `method`: the one
    /// place a call's retry or hedging policy comes from. The method config's `retryPolicy` or
    /// `hedgingPolicy` if it has one (gRFC A6), else the builder's.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn call_policy(&self, method: Option<&MethodConfig>) -> CallPolicy {
        match method.map(|method| &method.call_policy) {
            Some(policy) if !matches!(policy, CallPolicy::None) => policy.clone(),
            _ => self.policy.clone(),
        }
    }

    /// The most request data one call keeps to send again.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn per_call_limit(&self) -> u64 {
        self.buffer.per_call_limit()
    }

    /// The retry machine of a new call under `policy`, started at `now`, throttled by the
    /// service config's throttle (`configured`, from its `retryThrottling`) if it sets one,
    /// else by the builder's.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn start(
        &self,
        policy: CallPolicy,
        configured: Option<Arc<RetryThrottle>>,
        now: Instant,
    ) -> RetryCall {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let seed = self.seed ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut channel = ChannelRetry::new().shared_buffer(Arc::clone(&self.buffer));
        if let Some(throttle) = configured.or_else(|| self.throttle.clone()) {
            channel = channel.shared_throttle(throttle);
        }
        RetryCall::new(policy, Arc::new(channel), seed, now)
    }
}

impl<C: Connector> ChannelBuilder<C> {
    /// Retries every gRPC call by `policy` (gRFC A6's `retryPolicy`), in place of a hedging
    /// policy set before: a call that fails with one of its retryable codes before the
    /// server's response headers is sent again, on another backend where the picker can,
    /// after a jittered, growing backoff. Default: no retries (only transparent ones of calls
    /// no server processed). Applies through the channel's `Service` (feature `tower`).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry.policy = CallPolicy::Retry(policy);
        self
    }

    /// Hedges every gRPC call by `policy` (gRFC A6's `hedgingPolicy`), in place of a retry
    /// policy set before: a copy of the call goes out every `hedgingDelay`, each on another
    /// backend where the picker can; the first response (or a fatal status) wins and the
    /// other copies are cancelled.
    pub fn hedging_policy(mut self, policy: HedgingPolicy) -> Self {
        self.retry.policy = CallPolicy::Hedging(policy);
        self
    }

    /// Throttles retries and hedges channel-wide (gRFC A6's `retryThrottling`): failures
    /// take tokens, successes give some back, and calls retry or hedge only while more than
    /// half the tokens are left. Default: no throttle.
    pub fn retry_throttle(mut self, throttle: RetryThrottle) -> Self {
        self.retry.throttle = Some(throttle);
        self
    }

    /// How much request data calls may keep to send again (default: 1 MiB per call, 16 MiB
    /// for the channel, [`RetryBuffer::default`]). A call whose request passes either limit
    /// is committed to the attempt it has running, and is not retried.
    pub fn retry_buffer(mut self, buffer: RetryBuffer) -> Self {
        self.retry.buffer = Some(buffer);
        self
    }
}
