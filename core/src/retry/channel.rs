//! What a channel's calls share for retries: the throttle and the replay buffer budget.

use super::buffer::RetryBuffer;
use super::throttle::RetryThrottle;

/// The channel-wide part of retries and hedging, handed to each call by `Arc`: the optional
/// [`RetryThrottle`] (from `retryThrottling`) and the [`RetryBuffer`] budget.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ChannelRetry {
    /// The throttle, if the service config sets one; without it nothing is throttled.
    pub throttle: Option<RetryThrottle>,
    /// How much request data calls may keep for replays.
    pub buffer: RetryBuffer,
}

impl ChannelRetry {
    /// No throttle and the default buffer limits.
    pub fn new() -> Self {
        ChannelRetry::default()
    }

    /// Sets the throttle.
    pub fn throttle(mut self, throttle: RetryThrottle) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Sets the buffer budget.
    pub fn buffer(mut self, buffer: RetryBuffer) -> Self {
        self.buffer = buffer;
        self
    }

    /// Whether the throttle (if any) lets a retry or hedge go now.
    pub(crate) fn allows_retries(&self) -> bool {
        self.throttle
            .as_ref()
            .is_none_or(RetryThrottle::allows_retries)
    }
}
