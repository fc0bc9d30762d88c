//! `perAttemptRecvTimeout`: each attempt's wait for its response headers, timed by the machine.

use std::sync::Arc;
use std::time::Instant;

use croupier::retry::{CallPolicy, RetryAction, RetryCall, RetryPolicy};
use croupier::Code;

use super::support::*;

/// A retry policy with `perAttemptRecvTimeout` of `timeout` ms; backoffs of 10 ms, UNAVAILABLE
/// retryable.
fn timed(max_attempts: u32, timeout: u64) -> CallPolicy {
    let CallPolicy::Retry(policy) = retry(max_attempts, 10, 10, 1.0) else {
        unreachable!()
    };
    CallPolicy::Retry(policy.with_per_attempt_recv_timeout(ms(timeout)).unwrap())
}

fn timed_out(attempt: u32) -> RetryAction {
    RetryAction::TimedOut(attempt_id(attempt))
}

#[test]
fn an_attempt_without_response_headers_times_out_and_is_retried() {
    let t0 = Instant::now();
    let mut call = RetryCall::new(timed(3, 250), channel(), 1, t0);
    assert_eq!(drain(&mut call), [start(0, 0)]);
    assert_eq!(
        call.poll_timeout(),
        Some(t0 + ms(250)),
        "the first attempt's timer"
    );
    call.handle_timeout(t0 + ms(249));
    assert_eq!(drain(&mut call), [], "not yet");
    call.handle_timeout(t0 + ms(250));
    assert_eq!(drain(&mut call), [timed_out(0)]);
    // CANCELLED is not among the retryable codes, yet the timed-out attempt is retried after
    // the backoff.
    let retry_at = call.poll_timeout().expect("a retry is planned");
    assert!(retry_at <= t0 + ms(260), "{:?}", retry_at - t0);
    call.handle_timeout(retry_at);
    assert_eq!(drain(&mut call), [start(1, 1)]);
    // The retry has a timer of its own, from its start.
    assert_eq!(call.poll_timeout(), Some(retry_at + ms(250)));
    call.handle_response_headers(attempt_id(1), retry_at + ms(100));
    assert_eq!(drain(&mut call), [RetryAction::Commit(attempt_id(1))]);
    assert_eq!(call.poll_timeout(), None, "headers stop the timer");
    call.handle_timeout(retry_at + ms(10_000));
    assert_eq!(
        drain(&mut call),
        [],
        "a committed attempt streams as long as it needs"
    );
    fail(&mut call, 1, Code::Ok, retry_at + ms(10_000));
    assert_eq!(drain(&mut call), [finish(1, Code::Ok)]);
}

#[test]
fn when_every_attempt_times_out_the_call_ends_cancelled() {
    let mut now = Instant::now();
    let mut call = RetryCall::new(timed(3, 100), channel(), 1, now);
    assert_eq!(drain(&mut call), [start(0, 0)]);
    let mut actions = Vec::new();
    while let Some(at) = call.poll_timeout() {
        now = at;
        call.handle_timeout(now);
        actions.extend(drain(&mut call));
    }
    assert_eq!(
        actions,
        [
            timed_out(0),
            start(1, 1),
            timed_out(1),
            start(2, 2),
            timed_out(2),
            finish(2, Code::Cancelled),
        ]
    );
    assert!(call.is_finished());
}

#[test]
fn an_attempt_that_ends_before_its_timeout_is_not_timed_out() {
    let t0 = Instant::now();
    let mut call = RetryCall::new(timed(2, 100), channel(), 1, t0);
    drain(&mut call);
    fail(&mut call, 0, Code::Unavailable, t0 + ms(50));
    let retry_at = call.poll_timeout().unwrap();
    assert!(retry_at <= t0 + ms(60), "the backoff, not the timer");
    call.handle_timeout(retry_at);
    assert_eq!(drain(&mut call), [start(1, 1)]);
    fail(&mut call, 1, Code::InvalidArgument, retry_at + ms(99));
    assert_eq!(drain(&mut call), [finish(1, Code::InvalidArgument)]);
    assert_eq!(call.poll_timeout(), None);
}

#[test]
fn a_timeout_counts_as_a_failure_for_the_throttle() {
    let channel = throttled(4, 0.1);
    let now = Instant::now();
    // 4 tokens: one timed-out attempt leaves 3, above half: it retries.
    let mut call = RetryCall::new(timed(5, 100), Arc::clone(&channel), 1, now);
    drain(&mut call);
    call.handle_timeout(now + ms(100));
    assert_eq!(drain(&mut call), [timed_out(0)]);
    assert!(call.poll_timeout().is_some(), "a retry is planned");
    assert!((channel.throttle.as_ref().unwrap().tokens() - 3.0).abs() < 1e-9);
    // A second one leaves 2, not above half: the call ends with CANCELLED.
    let at = call.poll_timeout().unwrap();
    call.handle_timeout(at);
    assert_eq!(drain(&mut call), [start(1, 1)]);
    call.handle_timeout(at + ms(100));
    assert_eq!(drain(&mut call), [timed_out(1), finish(1, Code::Cancelled)]);
}

#[test]
fn a_call_committed_by_its_buffer_still_times_its_attempt() {
    let now = Instant::now();
    let mut call = RetryCall::new(timed(3, 100), buffered_channel(10, 100), 1, now);
    drain(&mut call);
    call.handle_request_buffered(11, now + ms(10));
    assert_eq!(drain(&mut call), [RetryAction::Commit(attempt_id(0))]);
    assert_eq!(call.poll_timeout(), Some(now + ms(100)));
    call.handle_timeout(now + ms(100));
    assert_eq!(
        drain(&mut call),
        [timed_out(0), finish(0, Code::Cancelled)],
        "committed: no retry"
    );
}

#[test]
fn a_transparent_replay_gets_a_timer_of_its_own() {
    let t0 = Instant::now();
    let mut call = RetryCall::new(timed(2, 100), channel(), 1, t0);
    drain(&mut call);
    call.handle_attempt_unprocessed(
        attempt_id(0),
        croupier::retry::Unprocessed::NotSent,
        Code::Unavailable,
        t0 + ms(60),
    );
    assert_eq!(drain(&mut call), [transparent(1, 0)]);
    assert_eq!(call.poll_timeout(), Some(t0 + ms(160)));
}

#[test]
fn hedging_has_no_recv_timeout_only_its_delay() {
    // perAttemptRecvTimeout belongs to retryPolicy; a hedged call's timers are its delays.
    let t0 = Instant::now();
    let mut call = RetryCall::new(hedging(2, 500), channel(), 1, t0);
    assert_eq!(drain(&mut call), [start(0, 0)]);
    assert_eq!(call.poll_timeout(), Some(t0 + ms(500)));
}

#[test]
fn no_timeout_set_means_attempts_wait_for_the_deadline() {
    let t0 = Instant::now();
    let mut call = RetryCall::new(retry(3, 10, 10, 1.0), channel(), 1, t0);
    drain(&mut call);
    assert_eq!(call.poll_timeout(), None);
    assert!(
        RetryPolicy::new(2, ms(1), ms(1), 1.0, codes(&[Code::Unavailable]))
            .unwrap()
            .per_attempt_recv_timeout()
            .is_none()
    );
}

#[test]
fn a_policy_with_a_timeout_and_no_codes_retries_timeouts_alone() {
    let policy = RetryPolicy::with_recv_timeout(3, ms(10), ms(10), 1.0, codes(&[]), ms(100));
    let policy = CallPolicy::Retry(policy.expect("no codes are allowed with a timeout"));
    let now = Instant::now();
    let mut call = RetryCall::new(policy.clone(), channel(), 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::Unavailable, now + ms(50));
    assert_eq!(
        drain(&mut call),
        [finish(0, Code::Unavailable)],
        "no code retries"
    );
    let mut call = RetryCall::new(policy, channel(), 1, now);
    drain(&mut call);
    call.handle_timeout(now + ms(100));
    assert_eq!(drain(&mut call), [timed_out(0)]);
    assert!(call.poll_timeout().is_some(), "the timeout retries");
}

#[test]
fn without_a_timeout_a_policy_needs_a_retryable_code() {
    let error = RetryPolicy::new(3, ms(10), ms(10), 1.0, codes(&[])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "retryPolicy.retryableStatusCodes is empty: name at least one status code, or set \
         perAttemptRecvTimeout"
    );
    let zero = RetryPolicy::with_recv_timeout(3, ms(10), ms(10), 1.0, codes(&[]), ms(0));
    assert!(zero
        .unwrap_err()
        .to_string()
        .contains("perAttemptRecvTimeout is zero"));
}

#[test]
fn a_service_config_may_leave_out_retryable_codes_when_it_sets_the_timeout() {
    let parser = croupier::ServiceConfigParser::new();
    let with = |fields: &str| {
        format!(
            r#"{{"methodConfig": [{{"name": [{{}}], "retryPolicy": {{"maxAttempts": 3,
                "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2{fields}}}}}]}}"#
        )
    };
    let timeout = r#", "perAttemptRecvTimeout": "0.5s""#;
    for codes in ["", r#", "retryableStatusCodes": []"#] {
        let json = with(&format!("{codes}{timeout}"));
        let config = parser.parse(&json).expect("a timeout-only retry policy");
        let policy = &config.methods.default_config().unwrap().call_policy;
        let CallPolicy::Retry(retry) = policy else {
            panic!("a retry policy, got {policy:?}")
        };
        assert!(retry.retryable_status_codes().is_empty());
        assert_eq!(retry.per_attempt_recv_timeout(), Some(ms(500)));
    }
    let error = parser.parse(&with("")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "methodConfig[0].retryPolicy: retryableStatusCodes is required"
    );
}
