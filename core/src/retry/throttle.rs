//! The channel-wide retry throttle (gRFC A6 `retryThrottling`): a token bucket that stops retries
//! and hedges while a channel's failures outweigh its successes.
//!
//! The bucket starts full at `maxTokens`. Each failed attempt takes one token, each successful
//! one gives back `tokenRatio`; retries and hedges are allowed only while more than half the
//! tokens are left. Tokens are counted in thousandths, the three decimal places A6 keeps, so the
//! arithmetic is exact. The count is one atomic integer: every call of a channel shares the
//! throttle without a lock.

use std::sync::atomic::{AtomicU32, Ordering};

use super::policy::RetryPolicyError;

/// The most tokens a throttle may hold (A6).
pub const MAX_TOKENS_LIMIT: u32 = 1000;

const MILLIS: u32 = 1000;

/// A retry throttle, shared by every call of a channel (by reference or `Arc`).
#[derive(Debug)]
pub struct RetryThrottle {
    /// The tokens left, in thousandths.
    tokens: AtomicU32,
    /// `maxTokens`, in thousandths.
    max: u32,
    /// `tokenRatio`, in thousandths.
    ratio: u32,
}

impl RetryThrottle {
    /// A full throttle of `max_tokens` (1 to 1000) that regains `token_ratio` (at least 0.001;
    /// digits past the third decimal place are dropped) per success.
    pub fn new(max_tokens: u32, token_ratio: f64) -> Result<Self, RetryPolicyError> {
        // The small bias keeps a ratio such as 1.001, stored as 1.000999..., at 1001 thousandths.
        let thousandths = (token_ratio * f64::from(MILLIS) + 1e-6).floor();
        if !(thousandths.is_finite() && thousandths >= 1.0) {
            return Err(RetryPolicyError::BadTokenRatio(token_ratio));
        }
        // Past u32, the ratio refills any bucket at once anyway.
        RetryThrottle::with_thousandths(max_tokens, thousandths.min(f64::from(u32::MAX)) as u32)
    }

    /// The same with `tokenRatio` given exactly, in thousandths of a token (as a parser that
    /// reads the decimal digits has it): at least 1.
    pub fn with_thousandths(
        max_tokens: u32,
        token_ratio_thousandths: u32,
    ) -> Result<Self, RetryPolicyError> {
        if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
            return Err(RetryPolicyError::BadMaxTokens(max_tokens));
        }
        if token_ratio_thousandths == 0 {
            return Err(RetryPolicyError::BadTokenRatio(0.0));
        }
        let max = max_tokens * MILLIS;
        Ok(RetryThrottle {
            tokens: AtomicU32::new(max),
            max,
            // A ratio past maxTokens refills the bucket at once, as maxTokens itself does.
            ratio: token_ratio_thousandths.min(max),
        })
    }

    /// The tokens left, to three decimal places.
    pub fn tokens(&self) -> f64 {
        f64::from(self.tokens.load(Ordering::Relaxed)) / f64::from(MILLIS)
    }

    /// `maxTokens`.
    pub fn max_tokens(&self) -> u32 {
        self.max / MILLIS
    }

    /// `tokenRatio`, to three decimal places.
    pub fn token_ratio(&self) -> f64 {
        f64::from(self.ratio) / f64::from(MILLIS)
    }

    /// Whether retries and hedges may be sent now: more than `maxTokens / 2` tokens are left.
    pub fn allows_retries(&self) -> bool {
        self.tokens.load(Ordering::Relaxed) > self.max / 2
    }

    /// Counts a failed attempt: one token less, never below zero.
    pub fn record_failure(&self) {
        self.update(|tokens| tokens.saturating_sub(MILLIS));
    }

    /// Counts a successful attempt: `tokenRatio` more, never above `maxTokens`.
    pub fn record_success(&self) {
        let (ratio, max) = (self.ratio, self.max);
        self.update(|tokens| tokens.saturating_add(ratio).min(max));
    }

    fn update(&self, change: impl Fn(u32) -> u32) {
        // `fetch_update` retries until no other call changed the count in between; the closure
        // always answers `Some`, so it cannot fail.
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                Some(change(tokens))
            });
    }
}
