//! Rules that hold whatever the policy: resolver results, subchannel lifecycle, backoff,
//! re-resolution, determinism.

mod support;

use std::time::Duration;

use croupier::{
    BackoffConfig, BalancerConfig, CallOutcome, Code, ConnectionEvent, ConnectivityState, Pick,
    PolicyChoice, PolicyConfig, ResolutionConfig, ResolverUpdate,
};
use support::*;

fn both() -> [PolicyConfig; 2] {
    [PolicyConfig::pick_first(), PolicyConfig::round_robin()]
}

#[test]
fn an_empty_endpoint_list_is_transient_failure_with_an_error_that_says_so() {
    for policy in both() {
        let name = policy.name().to_owned();
        let mut h = Harness::new(policy, 1);
        let seen = h.resolve(ResolverUpdate::new([]));
        assert_eq!(h.state(), ConnectivityState::TransientFailure, "{name}");
        match h.pick() {
            Pick::Fail(status) => {
                assert_eq!(status.code(), Code::Unavailable);
                assert!(
                    status.message().contains("no endpoints")
                        || status.message().contains("no addresses"),
                    "{name}: {status}"
                );
            }
            other => panic!("{name}: expected failure, got {other:?}"),
        }
        assert!(connects(&seen).is_empty());
        // ...and the resolver is asked again, with backoff.
        let seen = h.advance(Duration::from_secs(1));
        assert_eq!(resolve_nows(&seen), 1, "{name}");
    }
}

#[test]
fn an_empty_list_after_a_good_one_removes_the_old_subchannels() {
    for policy in both() {
        let mut h = Harness::new(policy, 1);
        h.resolve(update(&[1, 2]));
        h.connected(&addr(1));
        h.resolve(ResolverUpdate::new([]));
        assert!(h.lb.subchannels().is_empty());
        assert_eq!(h.state(), ConnectivityState::TransientFailure);
    }
}

#[test]
fn a_resolver_error_before_any_update_fails_picks_quoting_the_error() {
    for policy in both() {
        let mut h = Harness::new(policy, 1);
        assert_eq!(h.pick(), Pick::Queue, "waiting for the resolver");
        h.resolver_error("lookup of api.internal failed: NXDOMAIN");
        assert_eq!(h.state(), ConnectivityState::TransientFailure);
        match h.pick() {
            Pick::Fail(status) => assert!(status.message().contains("NXDOMAIN"), "{status}"),
            other => panic!("expected failure, got {other:?}"),
        }
    }
}

#[test]
fn a_resolver_error_keeps_the_last_good_endpoints() {
    for policy in both() {
        let mut h = Harness::new(policy, 1);
        h.resolve(update(&[1]));
        h.connected(&addr(1));
        let seen = h.resolver_error("temporary failure");
        assert!(seen.is_empty(), "nothing changes: {seen:?}");
        assert_eq!(h.state(), ConnectivityState::Ready);
        assert_eq!(h.pick_address(), Some(addr(1)));
    }
}

#[test]
fn a_list_longer_than_the_limit_is_refused_and_the_last_good_list_kept() {
    for policy in both() {
        let name = policy.name().to_owned();
        let config = BalancerConfig::default().policy(policy).max_endpoints(3);
        let mut h = Harness::with_config(config, 1);
        // Too many before any good list: calls fail with the reason.
        let seen = h.resolve(update(&[1, 2, 3, 4]));
        assert!(connects(&seen).is_empty(), "{name}: {seen:?}");
        assert_eq!(h.state(), ConnectivityState::TransientFailure, "{name}");
        match h.pick() {
            Pick::Fail(status) => assert!(
                status.message().contains("returned 4 endpoints")
                    && status.message().contains("limit of 3"),
                "{name}: {status}"
            ),
            other => panic!("{name}: expected failure, got {other:?}"),
        }
        // At the limit the list is taken; beyond it again, the last good one stays in use.
        h.resolve(update(&[1, 2, 3]));
        h.connected(&addr(1));
        assert_eq!(h.state(), ConnectivityState::Ready, "{name}");
        let before: Vec<_> = h.lb.subchannels().into_iter().map(|s| s.id).collect();
        let seen = h.resolve(update(&[5, 6, 7, 8, 9]));
        assert!(connects(&seen).is_empty(), "{name}: {seen:?}");
        let after: Vec<_> = h.lb.subchannels().into_iter().map(|s| s.id).collect();
        assert_eq!(
            before, after,
            "{name}: the subchannels are those of the last good list"
        );
        assert_eq!(h.state(), ConnectivityState::Ready, "{name}");
        assert_eq!(h.pick_address(), Some(addr(1)), "{name}");
        let kept: Vec<_> =
            h.lb.endpoints()
                .iter()
                .map(|e| e.addresses()[0].clone())
                .collect();
        assert_eq!(
            kept,
            [addr(1), addr(2), addr(3)],
            "{name}: the endpoints in use"
        );
    }
}

#[test]
fn the_default_limit_is_a_hundred_thousand_endpoints() {
    assert_eq!(BalancerConfig::default().max_endpoints, 100_000);
    assert_eq!(croupier::DEFAULT_MAX_ENDPOINTS, 100_000);
}

#[test]
fn resolver_errors_are_retried_with_backoff_until_an_answer() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    h.resolver_error("down");
    assert_eq!(resolve_nows(&h.advance(ms(999))), 0);
    assert_eq!(resolve_nows(&h.advance(ms(1))), 1);
    h.resolver_error("still down");
    let seen = h.advance(Duration::from_secs(2));
    assert_eq!(resolve_nows(&seen), 1);
    let at = seen
        .iter()
        .find_map(|s| match s {
            Seen::ResolveNow(at) => Some(*at),
            _ => None,
        })
        .unwrap();
    assert!(
        at >= ms(1000 + 1280) && at <= ms(1000 + 1920),
        "second retry at {at:?}"
    );
}

#[test]
fn reapplying_the_same_update_changes_nothing_and_emits_no_actions() {
    for policy in both() {
        let mut h = Harness::new(policy, 1);
        h.resolve(update(&[1, 2, 3]));
        h.connected(&addr(1));
        let before = h.lb.subchannels();
        let seen = h.resolve(update(&[1, 2, 3]));
        assert!(seen.is_empty(), "{seen:?}");
        assert_eq!(h.lb.subchannels(), before);
    }
}

#[test]
fn events_for_unknown_or_removed_subchannels_are_ignored() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    let seen = h.resolve(update(&[1, 2]));
    let old = match &seen[0] {
        Seen::Connect(c, _, _) => *c,
        other => panic!("{other:?}"),
    };
    h.resolve(update(&[2]));
    assert!(h.lb.subchannel_state(old.subchannel()).is_none());
    h.lb.handle_connection_event(old, ConnectionEvent::Connected, h.now);
    h.lb.handle_call_outcome(old.subchannel(), CallOutcome::ok(ms(1)), h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.state(), ConnectivityState::Connecting);
}

#[test]
fn a_connection_attempt_times_out_at_the_min_connect_timeout_and_is_disconnected() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    let seen = h.resolve(update(&[1]));
    let connection = match &seen[0] {
        Seen::Connect(c, _, _) => *c,
        other => panic!("{other:?}"),
    };
    assert!(h
        .advance(ms(19_999))
        .iter()
        .all(|s| !matches!(s, Seen::Disconnect(_))));
    let seen = h.advance(ms(1));
    assert!(seen.contains(&Seen::Disconnect(connection)), "{seen:?}");
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    // The backoff (1 s) ran out long ago, so the retry starts at once.
    assert_eq!(connects(&seen), vec![addr(1)]);
    match h.pick() {
        Pick::Fail(status) => assert!(status.message().contains("timed out after 20"), "{status}"),
        other => panic!("{other:?}"),
    }
    // A late success report for the abandoned attempt is ignored.
    h.lb.handle_connection_event(connection, ConnectionEvent::Connected, h.now);
    h.drain();
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
}

#[test]
fn reconnect_delays_follow_grpc_backoff_and_reset_after_success() {
    let config = BalancerConfig::default().policy(PolicyConfig::round_robin());
    let mut h = Harness::with_config(config, 9);
    h.resolve(update(&[1]));
    let mut starts = vec![Duration::ZERO];
    for _ in 0..8 {
        h.failed(&addr(1)); // each attempt fails as soon as it starts
        let at = loop {
            let seen = h.advance(ms(10));
            if let Some(at) = seen.iter().find_map(|s| match s {
                Seen::Connect(_, _, at) => Some(*at),
                _ => None,
            }) {
                break at;
            }
            assert!(h.elapsed() < Duration::from_secs(1000), "no retry");
        };
        starts.push(at);
    }
    let mut spec = 1.0f64;
    for (i, pair) in starts.windows(2).enumerate() {
        let wait = (pair[1] - pair[0]).as_secs_f64();
        if i == 0 {
            assert!((wait - 1.0).abs() < 1e-3, "first wait {wait}");
        } else {
            spec = (spec * 1.6).min(120.0);
            assert!(
                wait >= spec * 0.8 - 1e-3 && wait <= spec * 1.2 + 1e-3,
                "wait {i}: {wait} vs {spec}"
            );
        }
    }
    h.connected(&addr(1));
    h.closed(&addr(1)); // reconnects at once (round_robin) with a fresh backoff
    h.failed(&addr(1));
    let seen = h.advance(Duration::from_secs(2));
    assert_eq!(connects(&seen), vec![addr(1)]);
}

#[test]
fn backoff_settings_are_honoured() {
    let backoff = BackoffConfig::default()
        .initial_delay(ms(100))
        .min_connect_timeout(ms(500));
    let config = BalancerConfig::default()
        .policy(PolicyConfig::round_robin())
        .backoff(backoff);
    let mut h = Harness::with_config(config, 1);
    h.resolve(update(&[1]));
    h.failed(&addr(1));
    assert_eq!(connects(&h.advance(ms(100))), vec![addr(1)]);
    let seen = h.advance(ms(500));
    assert!(
        seen.iter().any(|s| matches!(s, Seen::Disconnect(_))),
        "timed out at 500 ms"
    );
}

#[test]
fn removed_subchannels_get_exactly_one_shutdown_and_ids_are_never_reused() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    let mut ids = Vec::new();
    for round in 0..5u16 {
        let seen = h.resolve(update(&[1, 2]));
        ids.extend(seen.iter().filter_map(|s| match s {
            Seen::Connect(c, _, _) => Some(c.subchannel()),
            _ => None,
        }));
        h.resolve(update(&[10 + round]));
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "an id was reused: {ids:?}");
    for id in ids {
        let count = h.seen.iter().filter(|s| **s == Seen::Shutdown(id)).count();
        assert_eq!(count, 1, "{id}");
    }
}

#[test]
fn re_resolution_requests_are_rate_limited_and_merged_not_lost() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    h.connected(&addr(2));
    assert_eq!(resolve_nows(&h.closed(&addr(1))), 1);
    h.connected(&addr(1));
    assert_eq!(
        resolve_nows(&h.closed(&addr(1))),
        0,
        "within 5 s of the last"
    );
    assert_eq!(resolve_nows(&h.closed(&addr(2))), 0);
    let seen = h.advance(Duration::from_secs(5));
    assert_eq!(
        resolve_nows(&seen),
        1,
        "the merged request goes out when allowed"
    );
}

#[test]
fn the_resolver_is_asked_again_periodically() {
    let config = BalancerConfig::default()
        .policy(PolicyConfig::round_robin())
        .resolution(ResolutionConfig::default().refresh_interval(Some(Duration::from_secs(30))));
    let mut h = Harness::with_config(config, 1);
    h.resolve(update(&[1]));
    h.connected(&addr(1));
    assert_eq!(resolve_nows(&h.advance(Duration::from_secs(26))), 0);
    assert_eq!(resolve_nows(&h.advance(Duration::from_secs(8))), 1);
    assert_eq!(
        resolve_nows(&h.advance(Duration::from_secs(34))),
        1,
        "and again, even unanswered"
    );
}

#[test]
fn a_resolver_can_switch_the_policy_by_name() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    let seen = h.resolve(update(&[1, 2]).with_policy(PolicyChoice::new("round_robin")));
    assert_eq!(connects(&seen), vec![addr(1), addr(2)]);
    h.connected(&addr(1));
    h.connected(&addr(2));
    let a = h.pick_address();
    let b = h.pick_address();
    assert_ne!(a, b, "round_robin alternates");
}

#[test]
fn an_unknown_policy_name_is_a_resolver_error_naming_it() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 1);
    h.resolve(update(&[1]).with_policy(PolicyChoice::new("no_such_policy")));
    match h.pick() {
        Pick::Fail(status) => {
            assert!(status.message().contains("no_such_policy"), "{status}");
            assert!(
                status.message().contains("round_robin"),
                "lists the known ones: {status}"
            );
        }
        other => panic!("{other:?}"),
    }
    let seen = h.resolve(
        update(&[1])
            .with_policy(PolicyChoice::new("pick_first").param("shuffle_address_list", "maybe")),
    );
    assert!(connects(&seen).is_empty());
    match h.pick() {
        Pick::Fail(status) => assert!(
            status.message().contains("shuffle_address_list"),
            "{status}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_same_seed_and_inputs_give_identical_outputs() {
    let run = |seed| {
        let mut h = Harness::new(PolicyConfig::round_robin(), seed);
        h.resolve(update(&[1, 2, 3, 4]));
        for p in [1, 2, 3, 4] {
            h.failed(&addr(p));
        }
        h.advance(Duration::from_secs(1));
        for p in [1, 2, 3, 4] {
            h.failed(&addr(p));
        }
        h.advance(Duration::from_secs(3));
        h.connected(&addr(2));
        h.connected(&addr(3));
        let picks: Vec<_> = (0..5).map(|_| h.pick_address()).collect();
        (h.seen, picks)
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn time_running_backwards_is_harmless() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    h.resolve(update(&[1]));
    h.advance(Duration::from_secs(10));
    let past = h.start;
    h.bound = 2;
    h.lb.handle_timeout(past);
    h.lb.handle_resolver_update(update(&[1, 2]), past);
    h.drain();
    assert_eq!(h.lb.subchannels().len(), 2);
}

#[test]
fn call_outcomes_for_live_subchannels_are_accepted() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    h.resolve(update(&[1]));
    h.connected(&addr(1));
    let Pick::Ready(id) = h.pick() else { panic!() };
    h.lb.handle_call_outcome(id, CallOutcome::new(Code::Internal, ms(3)), h.now);
    assert!(h.drain().is_empty());
    assert_eq!(h.pick(), Pick::Ready(id));
}

#[test]
fn a_late_report_for_a_removed_subchannel_does_not_reach_the_one_that_took_its_place() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 1);
    let first = h.resolve(update(&[1]));
    let Some(Seen::Connect(old, _, _)) = first.iter().find(|s| matches!(s, Seen::Connect(..)))
    else {
        panic!("a connect: {first:?}")
    };
    let old = *old;
    // The endpoint goes away and another comes: the new subchannel may reuse the old one's
    // storage, but never its handle.
    let second = h.resolve(update(&[2]));
    let new = second
        .iter()
        .find_map(|s| match s {
            Seen::Connect(c, _, _) => Some(*c),
            _ => None,
        })
        .expect("a connect for the new endpoint");
    assert_ne!(new.subchannel(), old.subchannel());
    assert_eq!(h.lb.subchannel_state(old.subchannel()), None);
    // The old attempt's success arrives late: ignored.
    h.report(old, ConnectionEvent::Connected);
    assert_eq!(
        h.lb.subchannel_state(new.subchannel()),
        Some(ConnectivityState::Connecting)
    );
    assert_eq!(h.state(), ConnectivityState::Connecting);
    h.report(new, ConnectionEvent::Connected);
    assert_eq!(h.state(), ConnectivityState::Ready);
}

/// Creates, connects and removes a subchannel within one input, then connects another.
#[derive(Debug)]
struct ChangesItsMind;

impl croupier::PolicyBuilder for ChangesItsMind {
    fn name(&self) -> &str {
        "changes_its_mind"
    }

    fn build(&self) -> Box<dyn croupier::Policy> {
        Box::new(ChangesItsMind)
    }
}

impl croupier::Policy for ChangesItsMind {
    fn resolver_update(
        &mut self,
        endpoints: &[croupier::Endpoint],
        ctl: &mut dyn croupier::Controller,
    ) {
        let dropped = ctl.create_subchannel(&endpoints[0].addresses()[0]);
        ctl.connect(dropped);
        ctl.remove_subchannel(dropped);
        let kept = ctl.create_subchannel(&endpoints[1].addresses()[0]);
        ctl.connect(kept);
    }

    fn resolver_error(&mut self, _: &croupier::ResolverError, _: &mut dyn croupier::Controller) {}

    fn subchannel_update(
        &mut self,
        _: croupier::SubchannelId,
        _: &croupier::SubchannelUpdate,
        _: &mut dyn croupier::Controller,
    ) {
    }
}

#[test]
fn an_attempt_whose_subchannel_is_removed_in_the_same_input_is_never_announced() {
    let now = std::time::Instant::now();
    let config = BalancerConfig::default().policy(PolicyConfig::new(ChangesItsMind));
    let mut balancer = croupier::Balancer::new(config, 1, now);
    balancer.handle_resolver_update(ResolverUpdate::new(endpoints(&[1, 2])), now);
    let mut actions = Vec::new();
    while let Some(action) = balancer.poll_action() {
        actions.push(action);
    }
    let connects: Vec<_> = actions
        .iter()
        .filter_map(|action| match action {
            croupier::Action::Connect {
                connection,
                address,
                deadline,
            } => Some((connection.subchannel(), address.clone(), *deadline)),
            _ => None,
        })
        .collect();
    let shutdowns: Vec<_> = actions
        .iter()
        .filter_map(|action| match action {
            croupier::Action::Shutdown { subchannel } => Some(*subchannel),
            _ => None,
        })
        .collect();
    assert_eq!(connects.len(), 1, "{actions:?}");
    assert_eq!(connects[0].1, croupier_testing::addr(2));
    assert!(connects[0].2 > now, "the attempt has a deadline ahead");
    assert_eq!(shutdowns.len(), 1, "{actions:?}");
    assert_ne!(shutdowns[0], connects[0].0);
}
