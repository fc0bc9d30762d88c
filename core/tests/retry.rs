//! The retry machine against gRFC A6, rule by rule, in virtual time (backoff, maxAttempts,
//! retryable codes, throttle, pushback, commit, buffer limits, transparent retries); then random
//! scenarios and the fuzz corpus checked against its invariants.

#[path = "support/retry.rs"]
mod support;

#[path = "retry/recv_timeout.rs"]
mod recv_timeout;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use croupier::retry::{
    CallPolicy, ChannelRetry, CodeSet, HedgingPolicy, Pushback, RetryAction, RetryCall,
    RetryPolicy, RetryPolicyError, RetryThrottle, Unprocessed, NOT_SENT_REPLAY_LIMIT,
};
use croupier::{Code, Rng};
use croupier_testing::retry::RetryScenario;
use support::*;

/// Runs a retried call whose attempts all fail UNAVAILABLE: the waits before each retry.
fn retry_waits(policy: &CallPolicy, seed: u64) -> Vec<Duration> {
    let mut now = Instant::now();
    let mut call = RetryCall::new(policy.clone(), channel(), seed, now);
    let mut waits = Vec::new();
    for attempt in 0.. {
        assert_eq!(drain(&mut call), [start(attempt, attempt)]);
        fail(&mut call, attempt, Code::Unavailable, now);
        let Some(at) = call.poll_timeout() else {
            break;
        };
        waits.push(at - now);
        now = at;
        call.handle_timeout(now);
    }
    waits
}

#[test]
fn retry_waits_lie_within_a_growing_ceiling_and_use_all_of_it() {
    let policy = retry(5, 100, 1000, 2.0);
    let ceilings = [ms(100), ms(200), ms(400), ms(800)];
    let mut longest = [Duration::ZERO; 4];
    for seed in 0..200 {
        let waits = retry_waits(&policy, seed);
        assert_eq!(waits.len(), 4);
        for (i, wait) in waits.iter().enumerate() {
            assert!(*wait <= ceilings[i], "retry {} waited {wait:?}", i + 1);
            longest[i] = longest[i].max(*wait);
        }
    }
    for (ceiling, longest) in ceilings.iter().zip(longest) {
        assert!(longest > ceiling.mul_f64(0.9), "{longest:?} of {ceiling:?}");
    }
}

#[test]
fn retry_waits_never_pass_max_backoff() {
    let policy = retry(5, 100, 300, 10.0);
    let ceilings = [ms(100), ms(300), ms(300), ms(300)];
    for seed in 0..100 {
        for (wait, ceiling) in retry_waits(&policy, seed).iter().zip(ceilings) {
            assert!(*wait <= ceiling);
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_waits() {
    let policy = retry(5, 100, 1000, 2.0);
    assert_eq!(retry_waits(&policy, 9), retry_waits(&policy, 9));
    assert_ne!(retry_waits(&policy, 9), retry_waits(&policy, 10));
}

#[test]
fn max_attempts_bounds_the_attempts_and_the_last_status_is_the_call_s() {
    let policy = retry(3, 10, 10, 1.0);
    assert_eq!(retry_waits(&policy, 1).len(), 2);
    let mut now = Instant::now();
    let mut call = RetryCall::new(policy, channel(), 1, now);
    for attempt in 0..2 {
        drain(&mut call);
        fail(&mut call, attempt, Code::Unavailable, now);
        now = call.poll_timeout().unwrap();
        call.handle_timeout(now);
    }
    assert_eq!(drain(&mut call), [start(2, 2)]);
    fail(&mut call, 2, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(2, Code::Unavailable)]);
    assert_eq!(call.policy_attempts(), 3);
}

#[test]
fn max_attempts_above_five_counts_as_five() {
    let policy = retry(100, 10, 10, 1.0);
    assert_eq!(policy.max_attempts(), 5);
    assert_eq!(retry_waits(&policy, 3).len(), 4);
    let CallPolicy::Retry(retry) = &policy else {
        unreachable!()
    };
    assert_eq!(retry.configured_max_attempts(), 100);
    let hedging = hedging(9, 10);
    assert_eq!(hedging.max_attempts(), 5);
}

#[test]
fn a_status_not_in_retryable_codes_fails_at_once() {
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), channel(), 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::InvalidArgument, now);
    assert_eq!(drain(&mut call), [finish(0, Code::InvalidArgument)]);
    assert_eq!(call.poll_timeout(), None);
    assert!(call.is_finished());
}

#[test]
fn success_finishes_the_call() {
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), channel(), 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::Ok, now);
    let commit = RetryAction::Commit(attempt_id(0));
    assert_eq!(drain(&mut call), [commit, finish(0, Code::Ok)]);
}

/// Starts a call on `channel` whose first attempt fails UNAVAILABLE; whether it retries.
fn first_failure_retries(channel: &Arc<ChannelRetry>) -> bool {
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), Arc::clone(channel), 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::Unavailable, now);
    let retries = call.poll_timeout().is_some();
    assert_eq!(drain(&mut call).is_empty(), retries);
    retries
}

fn succeed_once(channel: &Arc<ChannelRetry>) {
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), Arc::clone(channel), 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::Ok, now);
}

#[test]
fn the_throttle_stops_retries_at_half_its_tokens_and_successes_bring_them_back() {
    let channel = throttled(4, 1.0);
    let tokens = || channel.throttle.as_ref().unwrap().tokens();
    assert!(first_failure_retries(&channel)); // 4 -> 3 > 2
    assert_eq!(tokens(), 3.0);
    assert!(!first_failure_retries(&channel)); // 3 -> 2, not above half
    assert!(!first_failure_retries(&channel)); // 2 -> 1
    assert_eq!(tokens(), 1.0);
    succeed_once(&channel);
    succeed_once(&channel);
    assert_eq!(tokens(), 3.0);
    assert!(!first_failure_retries(&channel)); // 3 -> 2
    succeed_once(&channel);
    succeed_once(&channel);
    succeed_once(&channel);
    assert_eq!(tokens(), 4.0, "never above maxTokens");
    assert!(first_failure_retries(&channel));
}

#[test]
fn the_throttle_counts_only_failures_the_policy_would_retry() {
    let channel = throttled(4, 1.0);
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), Arc::clone(&channel), 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::InvalidArgument, now);
    assert_eq!(channel.throttle.as_ref().unwrap().tokens(), 4.0);
}

#[test]
fn the_throttle_keeps_three_decimal_places_exactly() {
    let throttle = RetryThrottle::new(10, 0.1234).unwrap();
    assert_eq!(throttle.token_ratio(), 0.123);
    assert_eq!(RetryThrottle::new(10, 1.001).unwrap().token_ratio(), 1.001);
    let exact = RetryThrottle::with_thousandths(10, 123).unwrap();
    assert_eq!(exact.token_ratio(), 0.123);
    assert_eq!(
        RetryThrottle::with_thousandths(10, 0)
            .unwrap_err()
            .to_string(),
        "retryThrottling.tokenRatio is 0: it must be at least 0.001"
    );
    assert_eq!(
        RetryThrottle::new(2, 5.0).unwrap().token_ratio(),
        2.0,
        "at most maxTokens"
    );
    throttle.record_failure();
    for _ in 0..3 {
        throttle.record_success();
    }
    assert_eq!(throttle.tokens(), 9.369);
    for _ in 0..20 {
        throttle.record_failure();
    }
    assert_eq!(throttle.tokens(), 0.0, "never below zero");
    assert!(!throttle.allows_retries());
}

#[test]
fn pushback_waits_exactly_its_time_and_the_backoff_starts_over() {
    // Without the reset, the third wait's ceiling would be 1 s: most seeds would wait longer.
    for seed in 0..50 {
        let mut now = Instant::now();
        let mut call = RetryCall::new(retry(5, 100, 10_000, 10.0), channel(), seed, now);
        drain(&mut call);
        fail(&mut call, 0, Code::Unavailable, now);
        now = call.poll_timeout().unwrap();
        call.handle_timeout(now);
        assert_eq!(drain(&mut call), [start(1, 1)]);
        let pushback = Pushback::from_header(Some(b"250"));
        call.handle_attempt_end(attempt_id(1), Code::Unavailable, pushback, now);
        assert_eq!(call.poll_timeout(), Some(now + ms(250)));
        now += ms(249);
        call.handle_timeout(now);
        assert_eq!(drain(&mut call), []);
        now += ms(1);
        call.handle_timeout(now);
        assert_eq!(drain(&mut call), [start(2, 2)]);
        fail(&mut call, 2, Code::Unavailable, now);
        assert!(call.poll_timeout().unwrap() - now <= ms(100), "seed {seed}");
    }
}

#[test]
fn negative_or_garbled_pushback_stops_retries() {
    for header in [&b"-1"[..], b"abc", b"", b"+5", b"2147483648", b"1.5"] {
        assert_eq!(Pushback::from_header(Some(header)), Pushback::Stop);
        let now = Instant::now();
        let mut call = RetryCall::new(retry(5, 10, 10, 1.0), channel(), 1, now);
        drain(&mut call);
        let pushback = Pushback::from_header(Some(header));
        call.handle_attempt_end(attempt_id(0), Code::Unavailable, pushback, now);
        assert_eq!(drain(&mut call), [finish(0, Code::Unavailable)]);
    }
    assert_eq!(Pushback::from_header(None), Pushback::None);
    assert_eq!(Pushback::from_header(Some(b"0")), Pushback::After(ms(0)));
    assert_eq!(
        Pushback::from_header(Some(b"2147483647")),
        Pushback::After(ms(2_147_483_647))
    );
}

#[test]
fn pushback_does_not_retry_past_max_attempts() {
    let now = Instant::now();
    let mut call = RetryCall::new(retry(2, 10, 10, 1.0), channel(), 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::Unavailable, now);
    let now = call.poll_timeout().unwrap();
    call.handle_timeout(now);
    drain(&mut call);
    let pushback = Pushback::After(ms(5));
    call.handle_attempt_end(attempt_id(1), Code::Unavailable, pushback, now);
    assert_eq!(drain(&mut call), [finish(1, Code::Unavailable)]);
}

#[test]
fn response_headers_commit_a_retried_call() {
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), channel(), 1, now);
    drain(&mut call);
    call.handle_response_headers(attempt_id(0), now);
    assert_eq!(drain(&mut call), [RetryAction::Commit(attempt_id(0))]);
    fail(&mut call, 0, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(0, Code::Unavailable)], "no retry");
}

#[test]
fn passing_the_per_call_buffer_limit_commits() {
    let channel = buffered_channel(100, 1000);
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), Arc::clone(&channel), 1, now);
    drain(&mut call);
    call.handle_request_buffered(60, now);
    assert_eq!(drain(&mut call), []);
    assert_eq!(channel.buffer.used(), 60);
    call.handle_request_buffered(50, now);
    assert_eq!(drain(&mut call), [RetryAction::Commit(attempt_id(0))]);
    assert_eq!(
        channel.buffer.used(),
        0,
        "a committed call frees its buffer"
    );
    fail(&mut call, 0, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(0, Code::Unavailable)]);
}

#[test]
fn the_per_channel_buffer_limit_is_shared_across_calls() {
    let channel = buffered_channel(80, 100);
    let now = Instant::now();
    let mut first = RetryCall::new(retry(5, 10, 10, 1.0), Arc::clone(&channel), 1, now);
    let mut second = RetryCall::new(retry(5, 10, 10, 1.0), Arc::clone(&channel), 2, now);
    drain(&mut first);
    drain(&mut second);
    first.handle_request_buffered(70, now);
    second.handle_request_buffered(40, now);
    assert_eq!(drain(&mut first), []);
    assert_eq!(drain(&mut second), [RetryAction::Commit(attempt_id(0))]);
    assert_eq!(channel.buffer.used(), 70);
    drop(first);
    assert_eq!(
        channel.buffer.used(),
        0,
        "a dropped call gives its bytes back"
    );
    let mut third = RetryCall::new(retry(5, 10, 10, 1.0), Arc::clone(&channel), 3, now);
    third.handle_request_buffered(70, now);
    assert_eq!(drain(&mut third), [start(0, 0)]);
}

#[test]
fn passing_the_buffer_limit_while_a_retry_waits_ends_the_call() {
    let channel = buffered_channel(100, 100);
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), channel, 1, now);
    drain(&mut call);
    fail(&mut call, 0, Code::Unavailable, now);
    call.handle_request_buffered(101, now);
    assert_eq!(drain(&mut call), [finish(0, Code::Unavailable)]);
    assert_eq!(call.poll_timeout(), None);
}

#[test]
fn transparent_retries_are_counted_apart_from_the_policy_s() {
    let channel = throttled(10, 0.1);
    let now = Instant::now();
    let mut call = RetryCall::new(retry(2, 10, 10, 1.0), Arc::clone(&channel), 1, now);
    assert_eq!(drain(&mut call), [start(0, 0)]);
    let not_sent = Unprocessed::NotSent;
    call.handle_attempt_unprocessed(attempt_id(0), not_sent, Code::Unavailable, now);
    assert_eq!(
        drain(&mut call),
        [transparent(1, 0)],
        "replayed at once, as attempt 0"
    );
    fail(&mut call, 1, Code::Unavailable, now);
    let now = call.poll_timeout().unwrap();
    call.handle_timeout(now);
    assert_eq!(drain(&mut call), [start(2, 1)]);
    let refused = Unprocessed::Refused;
    call.handle_attempt_unprocessed(attempt_id(2), refused, Code::Unavailable, now);
    assert_eq!(
        drain(&mut call),
        [transparent(3, 1)],
        "maxAttempts is used up, yet"
    );
    call.handle_attempt_unprocessed(attempt_id(3), refused, Code::Unavailable, now);
    assert_eq!(
        drain(&mut call),
        [finish(3, Code::Unavailable)],
        "a second refusal is an ordinary failure"
    );
    assert_eq!(call.policy_attempts(), 2);
    assert_eq!(call.transparent_retries(), 2);
    let tokens = channel.throttle.as_ref().unwrap().tokens();
    assert_eq!(tokens, 8.0, "two failures counted, not the two replays");
}

#[test]
fn replays_of_attempts_never_sent_are_bounded() {
    let now = Instant::now();
    let mut call = RetryCall::new(CallPolicy::None, channel(), 1, now);
    drain(&mut call);
    for n in 0..NOT_SENT_REPLAY_LIMIT {
        let why = Unprocessed::NotSent;
        call.handle_attempt_unprocessed(attempt_id(n), why, Code::Unavailable, now);
        assert_eq!(drain(&mut call), [transparent(n + 1, 0)]);
    }
    let last = NOT_SENT_REPLAY_LIMIT;
    let why = Unprocessed::NotSent;
    call.handle_attempt_unprocessed(attempt_id(last), why, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(last, Code::Unavailable)]);
}

#[test]
fn a_committed_attempt_is_not_replayed() {
    let channel = buffered_channel(10, 10);
    let now = Instant::now();
    let mut call = RetryCall::new(retry(5, 10, 10, 1.0), channel, 1, now);
    drain(&mut call);
    call.handle_request_buffered(11, now);
    drain(&mut call);
    let why = Unprocessed::Refused;
    call.handle_attempt_unprocessed(attempt_id(0), why, Code::Unavailable, now);
    assert_eq!(drain(&mut call), [finish(0, Code::Unavailable)]);
}

#[test]
fn invalid_policies_are_errors_that_name_the_field() {
    let unavailable = codes(&[Code::Unavailable]);
    let cases = [
        (
            RetryPolicy::new(1, ms(1), ms(1), 1.0, unavailable).unwrap_err(),
            "retryPolicy.maxAttempts is 1",
        ),
        (
            RetryPolicy::new(2, ms(0), ms(1), 1.0, unavailable).unwrap_err(),
            "retryPolicy.initialBackoff is zero",
        ),
        (
            RetryPolicy::new(2, ms(1), ms(0), 1.0, unavailable).unwrap_err(),
            "retryPolicy.maxBackoff is zero",
        ),
        (
            RetryPolicy::new(2, ms(1), ms(1), 0.0, unavailable).unwrap_err(),
            "retryPolicy.backoffMultiplier is 0",
        ),
        (
            RetryPolicy::new(2, ms(1), ms(1), f64::NAN, unavailable).unwrap_err(),
            "retryPolicy.backoffMultiplier is NaN",
        ),
        (
            RetryPolicy::new(2, ms(1), ms(1), 1.0, CodeSet::new()).unwrap_err(),
            "retryPolicy.retryableStatusCodes is empty",
        ),
        (
            RetryPolicy::new(2, ms(1), ms(1), 1.0, unavailable)
                .and_then(|policy| policy.with_per_attempt_recv_timeout(ms(0)))
                .unwrap_err(),
            "retryPolicy.perAttemptRecvTimeout is zero",
        ),
        (
            HedgingPolicy::new(0, ms(1), unavailable).unwrap_err(),
            "hedgingPolicy.maxAttempts is 0",
        ),
        (
            RetryThrottle::new(0, 0.1).unwrap_err(),
            "retryThrottling.maxTokens is 0",
        ),
        (
            RetryThrottle::new(1001, 0.1).unwrap_err(),
            "retryThrottling.maxTokens is 1001",
        ),
        (
            RetryThrottle::new(10, 0.0004).unwrap_err(),
            "retryThrottling.tokenRatio is 0.0004",
        ),
    ];
    for (error, message) in cases {
        assert!(error.to_string().starts_with(message), "{error}");
    }
    let retry = RetryPolicy::new(2, ms(1), ms(1), 1.0, unavailable).unwrap();
    let hedging = HedgingPolicy::new(2, ms(1), unavailable).unwrap();
    let both = CallPolicy::from_parts(Some(retry.clone()), Some(hedging)).unwrap_err();
    assert_eq!(both, RetryPolicyError::BothPolicies);
    assert!(both.to_string().contains("retryPolicy and hedgingPolicy"));
    assert_eq!(
        CallPolicy::from_parts(Some(retry.clone()), None),
        Ok(CallPolicy::Retry(retry.clone()))
    );
    assert_eq!(CallPolicy::from_parts(None, None), Ok(CallPolicy::None));
    let timed = retry.with_per_attempt_recv_timeout(ms(250)).unwrap();
    assert_eq!(timed.per_attempt_recv_timeout(), Some(ms(250)));
}

#[test]
fn inputs_for_attempts_not_running_are_ignored() {
    let now = Instant::now();
    let mut call = RetryCall::new(retry(3, 10, 10, 1.0), channel(), 1, now);
    drain(&mut call);
    fail(&mut call, 7, Code::Unavailable, now);
    call.handle_response_headers(attempt_id(7), now);
    let why = Unprocessed::NotSent;
    call.handle_attempt_unprocessed(attempt_id(7), why, Code::Unavailable, now);
    assert_eq!(drain(&mut call), []);
    assert_eq!(call.running().count(), 1);
}

/// Random scenarios from a fixed seed, each decoded as the fuzz target decodes its input.
#[test]
fn random_scenarios_keep_the_invariants() {
    let mut rng = Rng::new(0x5eed);
    let (mut retried, mut replayed, mut committed, mut runs) = (0, 0, 0, 0);
    for _ in 0..3000 {
        let len = 16 + rng.index(240);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let Ok(scenario) = RetryScenario::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        let run = scenario.run(Instant::now());
        runs += 1;
        retried += usize::from(run.policy_attempts > 1);
        replayed += usize::from(run.transparent_retries > 0);
        committed += usize::from(run.committed);
    }
    // The scenarios reach the interesting paths, not only trivial ones.
    assert!(runs > 2500, "{runs}");
    assert!(retried > runs / 10, "{retried} of {runs}");
    assert!(replayed > runs / 20, "{replayed} of {runs}");
    assert!(committed > runs / 20, "{committed} of {runs}");
}

#[test]
fn the_retry_fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/retry");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut replayed = 0;
    for entry in entries.flatten() {
        // A fuzzer running beside the tests may remove files as it minimises: skip what vanished.
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        if let Ok(scenario) = RetryScenario::arbitrary_take_rest(Unstructured::new(&bytes)) {
            scenario.run(Instant::now());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "the retry corpus is empty");
}
