//! The memory a channel lets its calls keep for replaying requests (gRFC A6 "Memory Management").
//!
//! A call can be retried or hedged only while its whole request is buffered. Two limits bound
//! that buffer: one per call, so a single large call cannot crowd out the others, and one per
//! channel, across every call in flight. A call whose next message passes either limit is
//! committed (it runs on with its current attempt and is never tried again), and gives its bytes
//! back; so does a call that finishes or is dropped.

use std::sync::atomic::{AtomicU64, Ordering};

/// The per-call limit when none is set: 1 MiB (grpc-java's default).
pub const DEFAULT_PER_CALL_LIMIT: u64 = 1 << 20;
/// The per-channel limit when none is set: 16 MiB (grpc-java's default).
pub const DEFAULT_PER_CHANNEL_LIMIT: u64 = 16 << 20;

/// A channel's replay buffer budget, shared by every call of the channel; counted with one
/// atomic integer, without a lock.
#[derive(Debug)]
pub struct RetryBuffer {
    per_call: u64,
    per_channel: u64,
    used: AtomicU64,
}

impl Default for RetryBuffer {
    fn default() -> Self {
        RetryBuffer::new(DEFAULT_PER_CALL_LIMIT, DEFAULT_PER_CHANNEL_LIMIT)
    }
}

impl RetryBuffer {
    /// A budget of `per_channel` bytes across calls, at most `per_call` of them for one call.
    pub fn new(per_call: u64, per_channel: u64) -> Self {
        RetryBuffer {
            per_call,
            per_channel,
            used: AtomicU64::new(0),
        }
    }

    /// The most one call may buffer.
    pub fn per_call_limit(&self) -> u64 {
        self.per_call
    }

    /// The most all calls together may buffer.
    pub fn per_channel_limit(&self) -> u64 {
        self.per_channel
    }

    /// The bytes buffered now, across calls.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more for a call holding `held` already; `false`, and nothing taken, if that
    /// passes the per-call or the per-channel limit.
    pub(crate) fn try_take(&self, held: u64, bytes: u64) -> bool {
        if held.saturating_add(bytes) > self.per_call {
            return false;
        }
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.per_channel)
            })
            .is_ok()
    }

    /// Gives back `bytes` a call held.
    pub(crate) fn give_back(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}
