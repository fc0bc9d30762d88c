//! The harness running the simulated adapter by itself: scripted attempts, timers in virtual
//! time, and livelocks reported instead of looped through.

mod policies;

use std::time::Duration;

use croupier::{ConnectivityState, PolicyConfig};
use croupier_testing::{addr, ms, update, ConnectOutcome, DriveError, Harness, Seen};
use policies::{Fault, Misbehaving};

/// The virtual times at which attempts started, in `seen`.
fn connect_times(seen: &[Seen]) -> Vec<Duration> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Connect(_, _, at) => Some(*at),
            _ => None,
        })
        .collect()
}

#[test]
fn drive_ends_attempts_as_scripted_until_round_robin_settles() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 3);
    h.script(addr(2), ConnectOutcome::Refuse);
    h.script_unlisted(ConnectOutcome::Connect);
    h.resolve(update(&[1, 2, 3]));
    assert_eq!(h.attempts.len(), 3, "nothing is scripted before drive");
    h.drive().expect("round_robin settles");
    assert!(h.attempts.is_empty(), "{:?}", h.attempts);
    assert_eq!(h.state(), ConnectivityState::Ready);
    let connected: Vec<_> = h.connections.values().map(|(_, a)| a.clone()).collect();
    assert_eq!(connected, [addr(1), addr(3)]);
    for _ in 0..8 {
        assert_ne!(h.pick_address(), Some(addr(2)));
    }
    assert_eq!(h.elapsed(), Duration::ZERO, "drive stands still in time");
}

#[test]
fn drive_leaves_hanging_attempts_in_flight() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    h.script(addr(1), ConnectOutcome::Connect);
    h.resolve(update(&[2]));
    let seen = h.drive().expect("nothing to do");
    assert!(seen.is_empty(), "{seen:?}");
    assert!(h.has_attempt(&addr(2)));
    assert_eq!(h.state(), ConnectivityState::Connecting);
}

#[test]
fn drive_for_fires_backoff_timers_and_the_script_then_connects() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 5);
    h.script_unlisted(ConnectOutcome::Refuse);
    h.resolve(update(&[1]));
    h.drive().expect("a refusal settles");
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    h.script_unlisted(ConnectOutcome::Connect);
    let seen = h.drive_for(ms(2_000)).expect("a backoff settles");
    assert_eq!(h.state(), ConnectivityState::Ready);
    // The first backoff is 1 s, +-20 %.
    let times = connect_times(&seen);
    assert_eq!(times.len(), 1, "{seen:?}");
    assert!((ms(800)..=ms(1_200)).contains(&times[0]), "{times:?}");
    assert_eq!(h.elapsed(), ms(2_000));
}

#[test]
fn a_ping_pong_policy_is_reported_as_a_livelock() {
    let mut h = Harness::new(Misbehaving::config(Fault::PingPong), 1);
    h.script_unlisted(ConnectOutcome::Connect);
    h.drive_limit = 50;
    h.resolve(update(&[1]));
    let Err(DriveError::Livelock { rounds, at, recent }) = h.drive() else {
        panic!("a policy that reconnects forever settled");
    };
    assert_eq!((rounds, at), (50, Duration::ZERO));
    assert_eq!(recent.len(), 8);
    assert!(
        recent.iter().any(|s| matches!(s, Seen::Shutdown(_))),
        "{recent:?}"
    );
    assert!(
        recent.iter().any(|s| matches!(s, Seen::Connect(..))),
        "{recent:?}"
    );
    // Each round made a subchannel of its own: the policy went round, not the harness.
    assert!(h.shut.len() >= 50, "{} removed", h.shut.len());
}

#[test]
fn a_timer_that_keeps_coming_due_is_a_livelock_in_virtual_time() {
    let mut h = Harness::new(Misbehaving::config(Fault::RestlessTimer), 1);
    h.drive_limit = 20;
    h.resolve(update(&[1]));
    let error = h.drive_for(ms(10)).expect_err("a timer due forever");
    let DriveError::Livelock { rounds, at, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!((*rounds, *at), (20, ms(5)));
    let message = error.to_string();
    assert!(message.contains("livelocked"), "{message}");
    assert!(message.contains("20 rounds"), "{message}");
}

#[test]
#[should_panic(expected = "the balancer is livelocked: still busy after 20 rounds")]
fn advance_panics_on_a_livelock_instead_of_looping() {
    let mut h = Harness::new(Misbehaving::config(Fault::RestlessTimer), 1);
    h.drive_limit = 20;
    h.resolve(update(&[1]));
    h.advance(ms(10));
}
