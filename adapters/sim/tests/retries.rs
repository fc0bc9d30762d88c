//! Retries and hedging in the simulator: deterministic, and doing what gRFC A6 says they are for.

use std::time::Duration;

use croupier::PolicyConfig;
use croupier_sim::{
    hedging, retries, simulate, Cancellation, FleetEvent, Router, RunResult, Scenario,
    ScenarioName, HEDGING_DELAY,
};

fn round_robin() -> Router {
    Router::policy("round_robin", PolicyConfig::round_robin())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

#[test]
fn the_hedging_delay_is_the_healthy_fleets_p95() {
    let s1 = Scenario::builtin(ScenarioName::S1);
    let p95 = median(
        (1..=3)
            .map(|seed| simulate(&s1, &round_robin(), seed).quantile(0.95))
            .collect(),
    );
    println!("S1 round_robin p95: {p95:?}");
    let gap = p95.abs_diff(HEDGING_DELAY);
    assert!(
        gap <= Duration::from_micros(500),
        "p95 {p95:?}, delay {HEDGING_DELAY:?}"
    );
}

/// 10 backends x 4 slots of mean 10 ms, backend 0 ten times slower, 300 calls/s from 4 clients
/// for 20 s: round_robin sends backend 0 its tenth (30/s of the 40/s it can serve), so about one
/// call in ten is slow.
fn one_slow_backend() -> Scenario {
    let mut scenario = Scenario::uniform(10, 4, Duration::from_millis(10), 0.075, secs(20));
    scenario.backends[0].mean_service = Duration::from_millis(100);
    scenario
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn with_spec(scenario: &Scenario, spec: croupier_sim::RetrySpec) -> Scenario {
    let mut scenario = scenario.clone();
    scenario.retry = Some(spec);
    scenario
}

#[test]
fn hedging_cuts_the_tail_a_ten_times_slower_backend_makes() {
    let plain = one_slow_backend();
    let hedged = with_spec(&plain, hedging(2));
    for seed in 1..=3 {
        let without = simulate(&plain, &round_robin(), seed);
        let with = simulate(&hedged, &round_robin(), seed);
        let (p99_without, p99_with) = (without.quantile(0.99), with.quantile(0.99));
        // Without hedging the p99 is a call served by backend 0; with it, a hedge sent after
        // 33 ms to a fast backend answers first.
        // (Seeds 1 to 3: 270, 274 and 294 ms without; 61, 58 and 63 ms with.)
        assert!(p99_without > Duration::from_millis(200), "{p99_without:?}");
        assert!(p99_with < Duration::from_millis(100), "{p99_with:?}");
        assert_eq!((with.failed, with.unfinished), (0, 0));
        assert_eq!(with.issued, without.issued);
        // Hedges go out for the slow calls only: about one call in ten, and never to the
        // backend the first copy went to (round_robin passes over tried subchannels).
        let attempts = with.attempts_per_call();
        assert!((1.05..1.25).contains(&attempts), "{attempts}");
        assert_eq!(with.repeated_backend, 0);
        assert!((without.attempts_per_call() - 1.0).abs() < 1e-9);
    }
}

#[test]
fn a_cancelled_hedge_stops_its_work_unless_the_backend_finishes_it_anyway() {
    let plain = one_slow_backend();
    let stops = simulate(&with_spec(&plain, hedging(2)), &round_robin(), 1);
    let finishes = hedging(2).cancellation(Cancellation::FinishesWork);
    let finishes = simulate(&with_spec(&plain, finishes), &round_robin(), 1);
    let without = simulate(&plain, &round_robin(), 1);
    // The same calls and the same hedges: only what the backends do with the losers differs.
    assert_eq!(stops.issued, finishes.issued);
    let (base, stopped, finished) = (
        without.work_per_call().as_secs_f64(),
        stops.work_per_call().as_secs_f64(),
        finishes.work_per_call().as_secs_f64(),
    );
    assert!(stopped < finished, "{stopped} vs {finished}");
    // Finishing every losing copy costs more than the calls themselves did without hedging.
    assert!(finished > base, "{finished} vs {base}");
}

/// 10 backends at 30% load; backends 0 to 4 crash at 2 s (the other five then run at 60%) and
/// come back at 3 s; each link has a 2 ms delay, so requests on their way fail too.
fn half_the_fleet_crashes() -> Scenario {
    let mut scenario = Scenario::uniform(10, 4, Duration::from_millis(10), 0.3, secs(5));
    for backend in &mut scenario.backends {
        backend.link_delay = Duration::from_millis(2);
    }
    for backend in 0..5 {
        scenario
            .events
            .push((secs(2), FleetEvent::Crash { backend }));
        scenario
            .events
            .push((secs(3), FleetEvent::Restart { backend }));
    }
    scenario
}

#[test]
fn retries_turn_the_failures_of_a_crash_into_successes() {
    let plain = half_the_fleet_crashes();
    let retried = with_spec(&plain, retries(3));
    for router in [
        round_robin(),
        Router::policy("p2c_ewma", PolicyConfig::p2c_ewma()),
        Router::JoinShortestQueue,
    ] {
        for seed in 1..=3 {
            let without = simulate(&plain, &router, seed);
            let with = simulate(&retried, &router, seed);
            assert!(
                without.failed >= 3,
                "{}: {}",
                router.label(),
                without.failed
            );
            assert_eq!(with.failed, 0, "{}", router.label());
            assert_eq!(with.completed, with.issued, "{}", router.label());
            assert_eq!(with.issued, without.issued);
            // One more attempt per failure, give or take: nothing else was retried.
            let extra = with.attempts_per_call() * with.issued as f64 - with.issued as f64;
            assert!(extra >= without.failed as f64 * 0.5, "{extra}");
            assert!(extra <= without.failed as f64 * 3.0, "{extra}");
        }
    }
}

/// Every backend fails every call it serves from 2 s to 4 s, its connections up.
fn full_outage() -> Scenario {
    let mut scenario = Scenario::uniform(10, 4, Duration::from_millis(10), 0.3, secs(6));
    for backend in 0..10 {
        let errors = |probability| FleetEvent::Errors {
            backend,
            probability,
        };
        scenario.events.push((secs(2), errors(1.0)));
        scenario.events.push((secs(4), errors(0.0)));
    }
    scenario
}

#[test]
fn a_throttle_holds_back_the_retries_of_a_full_outage() {
    let plain = full_outage();
    let unthrottled = with_spec(&plain, retries(3));
    let throttled = with_spec(&plain, retries(3).throttle(10, 0.1).expect("A6's example"));
    for seed in 1..=3 {
        let without = simulate(&plain, &round_robin(), seed);
        let free = simulate(&unthrottled, &round_robin(), seed);
        let held = simulate(&throttled, &round_robin(), seed);
        // Two of the five counted seconds fail whatever is done.
        let failed_share = without.failed as f64 / without.issued as f64;
        assert!((0.37..0.43).contains(&failed_share), "{failed_share}");
        // Retries save only calls whose last attempt falls after the outage.
        assert!(free.failed as f64 >= without.failed as f64 * 0.8);
        assert!(held.failed as f64 >= without.failed as f64 * 0.95);
        // Unthrottled, each call of the outage is tried three times (0.4 x 3 + 0.6 = 1.8
        // attempts per call); throttled, a few retries go out before each client's bucket falls
        // to half its tokens, and the fleet does no more work than without retries.
        assert!(
            free.attempts_per_call() > 1.7,
            "{}",
            free.attempts_per_call()
        );
        assert!(
            held.attempts_per_call() < 1.01,
            "{}",
            held.attempts_per_call()
        );
        let work = |run: &RunResult| run.work_per_call().as_secs_f64();
        assert!(work(&free) > 1.6 * work(&without));
        assert!(work(&held) < 1.01 * work(&without));
    }
}

#[test]
fn the_same_seed_gives_the_same_retried_run_and_another_seed_does_not() {
    let mut study = croupier_sim::RetryStudy::builtin(ScenarioName::S2).expect("a study");
    study.scenario.duration = secs(4);
    let run = study.run(&[1, 2, 3], 1);
    let one = run.to_string();
    let again = study.run(&[1, 2, 3], 2).to_string();
    // Even in 4 s, backend 0's queue makes round_robin's tail, and hedging cuts it.
    let p99 = |spec| run.row("round_robin", spec).map(|row| row.p99);
    assert!(p99(Some(0)) < p99(None), "{one}");
    assert!(run.row("round_robin", Some(2)).is_none());
    assert_eq!(one, again);
    let other = study.run(&[4, 5, 6], 2).to_string();
    assert_ne!(one, other);
    // Bit for bit, down to every latency.
    let hedged = with_spec(&study.scenario, hedging(2));
    let p2c = Router::policy("p2c_ewma", PolicyConfig::p2c_ewma());
    let (a, b) = (simulate(&hedged, &p2c, 7), simulate(&hedged, &p2c, 7));
    assert_eq!(a.latencies(), b.latencies());
    assert_eq!(a.calls_per_backend, b.calls_per_backend);
    assert_eq!((a.work, a.repeated_backend), (b.work, b.repeated_backend));
    assert!(
        one.contains("| round_robin | hedging (2 attempts, 33 ms) |"),
        "{one}"
    );
}

#[test]
fn a_per_attempt_recv_timeout_moves_calls_off_a_slow_backend() {
    use croupier::retry::{CallPolicy, CodeSet, RetryPolicy};
    // No retryable codes: only attempts that pass 40 ms without an answer are tried again.
    let policy = RetryPolicy::with_recv_timeout(
        2,
        Duration::from_millis(1),
        Duration::from_millis(1),
        1.0,
        CodeSet::new(),
        Duration::from_millis(40),
    )
    .unwrap();
    let plain = one_slow_backend();
    let timed = with_spec(
        &plain,
        croupier_sim::RetrySpec::new(CallPolicy::Retry(policy)),
    );
    for seed in 1..=3 {
        let without = simulate(&plain, &round_robin(), seed);
        let with = simulate(&timed, &round_robin(), seed);
        let (p99_without, p99_with) = (without.quantile(0.99), with.quantile(0.99));
        println!(
            "seed {seed}: p99 {p99_without:?} without, {p99_with:?} with the timeout; \
             {} of {} calls failed",
            with.failed, with.issued
        );
        // A call that waits 40 ms on backend 0 is cancelled there and retried on a fast one.
        assert!(p99_without > Duration::from_millis(200), "{p99_without:?}");
        assert!(p99_with < Duration::from_millis(100), "{p99_with:?}");
        // Every attempt carries the call's work: one of more than four times the mean (e^-4,
        // under 2% of calls) passes 40 ms on a fast backend too, and fails CANCELLED.
        assert_eq!((without.failed, with.unfinished), (0, 0));
        assert!(with.failed * 40 < with.issued, "{} failed", with.failed);
        let attempts = with.attempts_per_call();
        assert!((1.02..1.25).contains(&attempts), "{attempts}");
    }
}
