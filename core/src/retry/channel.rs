//! What a channel's calls share for retries: the throttle and the replay buffer budget.

use std::sync::Arc;

use super::buffer::RetryBuffer;
use super::throttle::RetryThrottle;

/// The channel-wide part of retries and hedging, handed to each call by `Arc`: the optional
/// [`RetryThrottle`] (from `retryThrottling`) and the [`RetryBuffer`] budget. Both are shared
/// by `Arc` themselves, so that a channel whose service config changes its throttle can hand
/// new calls a new throttle over the same buffer budget.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ChannelRetry {
    /// The throttle, if the service config sets one; without it nothing is throttled.
    pub throttle: Option<Arc<RetryThrottle>>,
    /// How much request data calls may keep for replays.
    pub buffer: Arc<RetryBuffer>,
}

impl ChannelRetry {
    /// No throttle and the default buffer limits.
    pub fn new() -> Self {
        ChannelRetry::default()
    }

    /// Sets the throttle.
    pub fn throttle(self, throttle: RetryThrottle) -> Self {
        self.shared_throttle(Arc::new(throttle))
    }

    /// Sets a throttle that other [`ChannelRetry`]s share too.
    pub fn shared_throttle(mut self, throttle: Arc<RetryThrottle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Sets the buffer budget.
    pub fn buffer(self, buffer: RetryBuffer) -> Self {
        self.shared_buffer(Arc::new(buffer))
    }

    /// Sets a buffer budget that other [`ChannelRetry`]s share too.
    pub fn shared_buffer(mut self, buffer: Arc<RetryBuffer>) -> Self {
        self.buffer = buffer;
        self
    }

    /// Whether the throttle (if any) lets a retry or hedge go now.
    pub(crate) fn allows_retries(&self) -> bool {
        self.throttle
            .as_deref()
            .is_none_or(RetryThrottle::allows_retries)
    }
}
