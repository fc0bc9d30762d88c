//! Helpers shared by the retry and hedging tests: policies, channels, and the actions a
//! `RetryCall` answers with.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::retry::{
    AttemptId, CallPolicy, ChannelRetry, CodeSet, HedgingPolicy, Pushback, RetryAction,
    RetryBuffer, RetryCall, RetryPolicy, RetryThrottle,
};
use croupier::Code;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn codes(codes: &[Code]) -> CodeSet {
    codes.iter().copied().collect()
}

pub fn retry(max_attempts: u32, initial: u64, max: u64, multiplier: f64) -> CallPolicy {
    let policy = RetryPolicy::new(
        max_attempts,
        ms(initial),
        ms(max),
        multiplier,
        codes(&[Code::Unavailable]),
    );
    CallPolicy::Retry(policy.unwrap())
}

pub fn hedging(max_attempts: u32, delay: u64) -> CallPolicy {
    let policy = HedgingPolicy::new(max_attempts, ms(delay), codes(&[Code::Unavailable]));
    CallPolicy::Hedging(policy.unwrap())
}

pub fn channel() -> Arc<ChannelRetry> {
    Arc::new(ChannelRetry::new())
}

pub fn throttled(max_tokens: u32, ratio: f64) -> Arc<ChannelRetry> {
    Arc::new(ChannelRetry::new().throttle(RetryThrottle::new(max_tokens, ratio).unwrap()))
}

pub fn drain(call: &mut RetryCall) -> Vec<RetryAction> {
    std::iter::from_fn(|| call.poll_action()).collect()
}

pub fn start(attempt: u32, previous_attempts: u32) -> RetryAction {
    RetryAction::Start {
        attempt: attempt_id(attempt),
        previous_attempts,
        transparent: false,
    }
}

pub fn transparent(attempt: u32, previous_attempts: u32) -> RetryAction {
    RetryAction::Start {
        attempt: attempt_id(attempt),
        previous_attempts,
        transparent: true,
    }
}

pub fn attempt_id(n: u32) -> AttemptId {
    AttemptId::new(n)
}

pub fn finish(attempt: u32, code: Code) -> RetryAction {
    RetryAction::Finish {
        attempt: attempt_id(attempt),
        code,
    }
}

pub fn fail(call: &mut RetryCall, attempt: u32, code: Code, now: Instant) {
    call.handle_attempt_end(attempt_id(attempt), code, Pushback::None, now);
}

pub fn buffered_channel(per_call: u64, per_channel: u64) -> Arc<ChannelRetry> {
    Arc::new(ChannelRetry::new().buffer(RetryBuffer::new(per_call, per_channel)))
}
