//! Hedging (gRFC A6 `hedgingPolicy`) in virtual time: copies every hedgingDelay, non-fatal and
//! fatal statuses, success, pushback, commit by headers or by the buffer limit, the throttle.

#[path = "support/retry.rs"]
mod support;

use std::time::Instant;

use croupier::retry::{AttemptId, Pushback, RetryAction, RetryCall};
use croupier::Code;
use support::*;

#[test]
fn a_hedge_is_not_sent_while_the_throttle_is_at_half() {
    let channel = throttled(2, 1.0);
    channel.throttle.as_ref().unwrap().record_failure(); // 1: not above half
    let now = Instant::now();
    let mut call = RetryCall::new(hedging(3, 0), channel, 1, now);
    assert_eq!(
        drain(&mut call),
        [start(0, 0)],
        "the first copy always goes"
    );
    assert_eq!(call.poll_timeout(), None);
    fail(&mut call, 0, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(0, Code::Unavailable)]);
}

#[test]
fn hedges_start_every_hedging_delay_up_to_max_attempts() {
    let start_time = Instant::now();
    let mut call = RetryCall::new(hedging(4, 500), channel(), 1, start_time);
    assert_eq!(drain(&mut call), [start(0, 0)]);
    for n in 1..4 {
        let due = start_time + ms(500 * u64::from(n));
        assert_eq!(call.poll_timeout(), Some(due));
        call.handle_timeout(due - ms(1));
        assert_eq!(drain(&mut call), []);
        call.handle_timeout(due);
        assert_eq!(drain(&mut call), [start(n, n)]);
    }
    assert_eq!(call.poll_timeout(), None, "no fifth copy");
    assert_eq!(call.running().count(), 4);
}

#[test]
fn a_zero_hedging_delay_sends_every_copy_at_once() {
    let mut call = RetryCall::new(hedging(3, 0), channel(), 1, Instant::now());
    assert_eq!(drain(&mut call), [start(0, 0), start(1, 1), start(2, 2)]);
    assert_eq!(call.poll_timeout(), None);
}

#[test]
fn a_non_fatal_status_keeps_the_others_and_sends_the_next_hedge_at_once() {
    let t0 = Instant::now();
    let mut call = RetryCall::new(hedging(4, 1000), channel(), 1, t0);
    drain(&mut call);
    call.handle_timeout(t0 + ms(1000));
    assert_eq!(drain(&mut call), [start(1, 1)]);
    fail(&mut call, 0, Code::Unavailable, t0 + ms(1200));
    assert_eq!(drain(&mut call), [start(2, 2)], "no Cancel of attempt 1");
    assert_eq!(
        call.poll_timeout(),
        Some(t0 + ms(2200)),
        "then hedgingDelay again"
    );
    let running: Vec<u32> = call.running().map(AttemptId::get).collect();
    assert_eq!(running, [1, 2]);
}

#[test]
fn the_last_hedge_failing_non_fatally_ends_the_call_with_its_status() {
    let now = Instant::now();
    let mut call = RetryCall::new(hedging(2, 0), channel(), 1, now);
    drain(&mut call);
    fail(&mut call, 1, Code::Unavailable, now);
    assert_eq!(drain(&mut call), []);
    fail(&mut call, 0, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(0, Code::Unavailable)]);
}

#[test]
fn a_successful_hedge_commits_and_cancels_the_rest() {
    let now = Instant::now();
    let mut call = RetryCall::new(hedging(3, 0), channel(), 1, now);
    drain(&mut call);
    fail(&mut call, 1, Code::Ok, now);
    let id = attempt_id;
    assert_eq!(
        drain(&mut call),
        [
            RetryAction::Commit(id(1)),
            RetryAction::Cancel(id(0)),
            RetryAction::Cancel(id(2)),
            finish(1, Code::Ok)
        ]
    );
    fail(&mut call, 0, Code::Ok, now);
    assert_eq!(drain(&mut call), [], "a late end is ignored");
}

#[test]
fn a_fatal_hedge_status_commits_cancels_the_rest_and_stops_hedging() {
    let t0 = Instant::now();
    let mut call = RetryCall::new(hedging(3, 100), channel(), 1, t0);
    drain(&mut call);
    call.handle_timeout(t0 + ms(100));
    drain(&mut call);
    fail(&mut call, 0, Code::PermissionDenied, t0 + ms(150));
    let id = attempt_id;
    assert_eq!(
        drain(&mut call),
        [
            RetryAction::Commit(id(0)),
            RetryAction::Cancel(id(1)),
            finish(0, Code::PermissionDenied)
        ]
    );
    assert_eq!(call.poll_timeout(), None);
}

#[test]
fn pushback_delays_the_next_hedge_or_stops_hedging() {
    let t0 = Instant::now();
    let mut call = RetryCall::new(hedging(4, 1000), channel(), 1, t0);
    drain(&mut call);
    let pushback = Pushback::After(ms(300));
    call.handle_attempt_end(attempt_id(0), Code::Unavailable, pushback, t0 + ms(10));
    assert_eq!(call.poll_timeout(), Some(t0 + ms(310)));
    call.handle_timeout(t0 + ms(310));
    assert_eq!(drain(&mut call), [start(1, 1)]);
    assert_eq!(call.poll_timeout(), Some(t0 + ms(1310)), "n + hedgingDelay");
    call.handle_timeout(t0 + ms(1310));
    assert_eq!(drain(&mut call), [start(2, 2)]);
    call.handle_attempt_end(
        attempt_id(1),
        Code::Unavailable,
        Pushback::Stop,
        t0 + ms(1400),
    );
    assert_eq!(drain(&mut call), [], "attempt 2 runs on");
    assert_eq!(call.poll_timeout(), None, "no more hedges");
    fail(&mut call, 2, Code::Unavailable, t0 + ms(1500));
    assert_eq!(drain(&mut call), [finish(2, Code::Unavailable)]);
}

#[test]
fn response_headers_commit_a_hedged_call_to_their_attempt() {
    let now = Instant::now();
    let mut call = RetryCall::new(hedging(3, 0), channel(), 1, now);
    drain(&mut call);
    call.handle_response_headers(attempt_id(2), now);
    let id = attempt_id;
    assert_eq!(
        drain(&mut call),
        [
            RetryAction::Commit(id(2)),
            RetryAction::Cancel(id(0)),
            RetryAction::Cancel(id(1))
        ]
    );
    fail(&mut call, 2, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(2, Code::Unavailable)]);
}

#[test]
fn passing_the_buffer_limit_commits_a_hedged_call_to_its_oldest_attempt() {
    let channel = buffered_channel(100, 100);
    let now = Instant::now();
    let mut call = RetryCall::new(hedging(3, 0), channel, 1, now);
    drain(&mut call);
    call.handle_request_buffered(101, now);
    let id = attempt_id;
    assert_eq!(
        drain(&mut call),
        [
            RetryAction::Commit(id(0)),
            RetryAction::Cancel(id(1)),
            RetryAction::Cancel(id(2))
        ]
    );
}
