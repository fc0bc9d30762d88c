//! The cost of one call's retry decisions in the core: a call that succeeds at once, one retried
//! twice before it succeeds, one hedged three ways whose last copy wins, and one whose first
//! attempt passes `perAttemptRecvTimeout`; each from `RetryCall::new` to its `Finish`, with a
//! throttle shared by every call.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use croupier::retry::{
    AttemptId, CallPolicy, ChannelRetry, CodeSet, HedgingPolicy, Pushback, RetryAction, RetryCall,
    RetryPolicy, RetryThrottle,
};
use croupier::Code;

fn drain(call: &mut RetryCall) -> usize {
    std::iter::from_fn(|| call.poll_action()).count()
}

fn started(call: &mut RetryCall) -> AttemptId {
    match call.poll_action() {
        Some(RetryAction::Start { attempt, .. }) => attempt,
        other => panic!("expected a start, got {other:?}"),
    }
}

fn retry(c: &mut Criterion) {
    let unavailable = CodeSet::new().with(Code::Unavailable);
    let ms = Duration::from_millis;
    let retry =
        CallPolicy::Retry(RetryPolicy::new(5, ms(100), ms(1000), 2.0, unavailable).unwrap());
    let hedging = CallPolicy::Hedging(HedgingPolicy::new(3, ms(0), unavailable).unwrap());
    let timed = CallPolicy::Retry(
        RetryPolicy::with_recv_timeout(5, ms(100), ms(1000), 2.0, unavailable, ms(250)).unwrap(),
    );
    // A large bucket with a full refill per success: the benchmark never throttles itself.
    let channel = Arc::new(ChannelRetry::new().throttle(RetryThrottle::new(1000, 1000.0).unwrap()));
    let now = Instant::now();

    let mut group = c.benchmark_group("retry");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));

    group.bench_function("call_succeeds_at_once", |b| {
        let mut seed = 0;
        b.iter(|| {
            seed += 1;
            let mut call = RetryCall::new(retry.clone(), Arc::clone(&channel), seed, now);
            let first = started(&mut call);
            call.handle_attempt_end(first, Code::Ok, Pushback::None, now);
            black_box(drain(&mut call))
        })
    });

    group.bench_function("call_retried_twice", |b| {
        let mut seed = 0;
        b.iter(|| {
            seed += 1;
            let mut at = now;
            let mut call = RetryCall::new(retry.clone(), Arc::clone(&channel), seed, at);
            for _ in 0..2 {
                let attempt = started(&mut call);
                call.handle_attempt_end(attempt, Code::Unavailable, Pushback::None, at);
                at = call.poll_timeout().expect("a retry");
                call.handle_timeout(at);
            }
            let last = started(&mut call);
            call.handle_attempt_end(last, Code::Ok, Pushback::None, at);
            black_box(drain(&mut call))
        })
    });

    group.bench_function("call_hedged_three_ways", |b| {
        let mut seed = 0;
        b.iter(|| {
            seed += 1;
            let mut call = RetryCall::new(hedging.clone(), Arc::clone(&channel), seed, now);
            let copies = [started(&mut call), started(&mut call), started(&mut call)];
            call.handle_attempt_end(copies[0], Code::Unavailable, Pushback::None, now);
            call.handle_attempt_end(copies[2], Code::Ok, Pushback::None, now);
            black_box(drain(&mut call))
        })
    });
    group.bench_function("call_timed_out_once", |b| {
        let mut seed = 0;
        b.iter(|| {
            seed += 1;
            let mut call = RetryCall::new(timed.clone(), Arc::clone(&channel), seed, now);
            started(&mut call);
            let expires = call.poll_timeout().expect("the attempt's timeout");
            call.handle_timeout(expires);
            let retry_at = call.poll_timeout().expect("a retry");
            call.handle_timeout(retry_at);
            let mut actions = drain(&mut call);
            let last = AttemptId::new(1);
            call.handle_response_headers(last, retry_at);
            call.handle_attempt_end(last, Code::Ok, Pushback::None, retry_at);
            actions += drain(&mut call);
            black_box(actions)
        })
    });
    group.finish();
}

criterion_group!(benches, retry);
criterion_main!(benches);
