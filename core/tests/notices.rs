//! Notices: each kind is queued when what it tells happens and not otherwise, only when the
//! config turns them on, and a full queue says how many it dropped. Virtual time, fixed seeds.

mod support;

use std::time::Duration;

use croupier::policy::{OutlierDetectionConfig, WeightedRoundRobinConfig};
use croupier::{
    BalancerConfig, CallOutcome, ConnectionEvent, ConnectivityState, Endpoint, LoadReport,
    LoadWeight, Notice, PickFirstEvent, PolicyChoice, PolicyConfig, ResolverUpdate,
    SubchannelWeight, DEFAULT_NOTICE_CAPACITY,
};
use support::*;

use ConnectivityState::{Connecting, Idle, Ready, Shutdown, TransientFailure};

fn harness(policy: PolicyConfig) -> Harness {
    let config = BalancerConfig::default()
        .policy(policy)
        .notices(DEFAULT_NOTICE_CAPACITY);
    Harness::with_config(config, 7)
}

fn notices(h: &mut Harness) -> Vec<Notice> {
    std::iter::from_fn(|| h.lb.poll_notice()).collect()
}

/// The subchannel state changes among `notices`, as (port, from, to, reason).
fn changes(notices: &[Notice]) -> Vec<(u16, ConnectivityState, ConnectivityState, Option<String>)> {
    notices
        .iter()
        .filter_map(|notice| match notice {
            Notice::SubchannelState {
                address,
                from,
                to,
                reason,
                ..
            } => Some((
                port_of(address),
                *from,
                *to,
                reason.as_deref().map(String::from),
            )),
            _ => None,
        })
        .collect()
}

fn port_of(address: &croupier::Address) -> u16 {
    match address {
        croupier::Address::Socket(socket) => socket.port(),
        other => panic!("the tests' addresses are sockets: {other}"),
    }
}

#[test]
fn notices_are_off_unless_the_config_turns_them_on() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 7);
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    h.failed(&addr(2));
    h.resolver_error("lookup failed");
    assert_eq!(h.lb.poll_notice(), None);
}

#[test]
fn a_resolver_update_is_told_with_its_endpoint_count_and_policy() {
    let mut h = harness(PolicyConfig::round_robin());
    h.resolve(update(&[1, 2, 3]));
    let seen = notices(&mut h);
    assert_eq!(
        seen[0],
        Notice::ResolverApplied {
            endpoints: 3,
            policy: "round_robin".into()
        }
    );
    assert_eq!(
        seen[0].to_string(),
        "resolver update applied: 3 endpoints, policy round_robin"
    );
    // The same list again changes nothing, and tells nothing.
    h.resolve(update(&[1, 2, 3]));
    assert_eq!(notices(&mut h), []);
}

#[test]
fn a_resolver_error_and_a_refused_update_are_told_apart() {
    let config = BalancerConfig::default()
        .policy(PolicyConfig::round_robin())
        .max_endpoints(2)
        .notices(16);
    let mut h = Harness::with_config(config, 7);
    h.resolver_error("no such host");
    let seen = notices(&mut h);
    assert!(
        matches!(&seen[..], [Notice::ResolverRejected { endpoints: None, error }, _]
            if error.message() == "no such host"),
        "{seen:?}"
    );
    // With no endpoints ever, the channel fails.
    assert_eq!(
        seen[1],
        Notice::ChannelState {
            from: Connecting,
            to: TransientFailure
        }
    );
    assert_eq!(
        seen[1].to_string(),
        "channel: CONNECTING -> TRANSIENT_FAILURE"
    );
    h.resolve(update(&[1, 2, 3]));
    let seen = notices(&mut h);
    let [Notice::ResolverRejected {
        endpoints: Some(3),
        error,
    }] = &seen[..]
    else {
        panic!("{seen:?}")
    };
    assert!(error.message().contains("limit of 2"), "{error}");
    assert!(seen[0]
        .to_string()
        .starts_with("resolver update of 3 endpoints refused"));
}

#[test]
fn a_failed_attempt_is_told_with_its_reason_and_a_success_without_one() {
    let mut h = harness(PolicyConfig::pick_first());
    h.resolve(update(&[1]));
    let seen = notices(&mut h);
    let connection = h.attempts_in_flight()[0];
    assert!(seen.contains(&Notice::ConnectStarted {
        connection,
        address: addr(1)
    }));
    assert_eq!(changes(&seen), [(1, Idle, Connecting, None)]);

    h.failed(&addr(1));
    let seen = notices(&mut h);
    let refused = "connection refused by 127.0.0.1:1".to_string();
    assert_eq!(
        seen[0],
        Notice::ConnectFailed {
            connection,
            address: addr(1),
            error: refused.clone().into()
        }
    );
    assert_eq!(
        changes(&seen),
        [(1, Connecting, TransientFailure, Some(refused.clone()))]
    );
    assert_eq!(
        seen[1].to_string(),
        format!(
            "{} 127.0.0.1:1: CONNECTING -> TRANSIENT_FAILURE: {refused}",
            connection.subchannel()
        )
    );

    // The backoff ends: back to IDLE, with no reason; pick_first connects again at once.
    h.advance(Duration::from_secs(2));
    let seen = notices(&mut h);
    assert_eq!(
        changes(&seen)[..2],
        [
            (1, TransientFailure, Idle, None),
            (1, Idle, Connecting, None)
        ]
    );
    h.connected(&addr(1));
    let seen = notices(&mut h);
    assert_eq!(changes(&seen), [(1, Connecting, Ready, None)]);
    assert!(!seen
        .iter()
        .any(|n| matches!(n, Notice::ConnectFailed { .. })));

    // A connection lost says how.
    h.closed(&addr(1));
    let seen = notices(&mut h);
    assert_eq!(
        changes(&seen)[0],
        (1, Ready, Idle, Some("peer went away".into()))
    );
}

#[test]
fn an_attempt_that_times_out_is_a_failed_attempt() {
    let mut h = harness(PolicyConfig::pick_first());
    h.resolve(update(&[1]));
    notices(&mut h);
    h.advance(Duration::from_secs(21));
    let seen = notices(&mut h);
    let failed: Vec<_> = seen
        .iter()
        .filter_map(|n| match n {
            Notice::ConnectFailed { error, .. } => Some(error.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{seen:?}");
    assert!(failed[0].contains("timed out"), "{failed:?}");
}

#[test]
fn a_removed_subchannel_is_told_shut_down() {
    let mut h = harness(PolicyConfig::round_robin());
    h.resolve(update(&[1, 2]));
    h.connected(&addr(1));
    notices(&mut h);
    h.resolve(update(&[2]));
    let seen = notices(&mut h);
    assert!(
        changes(&seen).contains(&(1, Ready, Shutdown, None)),
        "{seen:?}"
    );
    assert!(!changes(&seen).iter().any(|c| c.0 == 2), "{seen:?}");
}

#[test]
fn a_policy_switch_is_told_when_it_starts_and_when_it_ends() {
    let mut h = harness(PolicyConfig::round_robin());
    h.resolve(update(&[1]));
    h.connected(&addr(1));
    notices(&mut h);
    h.resolve(update(&[1]).with_policy(PolicyChoice::new("pick_first")));
    let seen = notices(&mut h);
    let started = Notice::PolicySwitchStarted {
        from: "round_robin".into(),
        to: "pick_first".into(),
    };
    assert!(seen.contains(&started), "{seen:?}");
    assert!(!seen
        .iter()
        .any(|n| matches!(n, Notice::PolicySwitched { .. })));
    // The new policy's own subchannel to port 1 comes up: it takes over.
    let newest = *h.attempts_in_flight().iter().max().expect("an attempt");
    h.report(newest, ConnectionEvent::Connected);
    let seen = notices(&mut h);
    let switched = Notice::PolicySwitched {
        from: "round_robin".into(),
        to: "pick_first".into(),
    };
    assert!(seen.contains(&switched), "{seen:?}");
    assert_eq!(
        switched.to_string(),
        "policy switched from round_robin to pick_first"
    );
    // Settings for the running policy are no switch.
    h.resolve(update(&[1, 2]).with_policy(PolicyChoice::new("pick_first")));
    let seen = notices(&mut h);
    assert!(
        !seen.iter().any(|n| matches!(
            n,
            Notice::PolicySwitchStarted { .. } | Notice::PolicySwitched { .. }
        )),
        "{seen:?}"
    );
}

#[test]
fn outlier_detection_tells_each_ejection_and_return() {
    let policy = PolicyConfig::new(OutlierDetectionConfig::new(PolicyConfig::round_robin()));
    let mut h = harness(policy);
    let ports = [1, 2, 3, 4, 5];
    h.resolve(update(&ports));
    for &port in &ports {
        h.connected(&addr(port));
    }
    for &port in &ports {
        calls_ended(&mut h, &addr(port), 100, port != 5);
    }
    notices(&mut h);
    h.advance(Duration::from_secs(10));
    let seen = notices(&mut h);
    let ejected: Vec<_> = seen
        .iter()
        .filter(|n| matches!(n, Notice::Ejected { .. }))
        .collect();
    assert!(
        matches!(&ejected[..], [Notice::Ejected { address, times: 1, .. }] if *address == addr(5)),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|n| matches!(n, Notice::Restored { .. })));
    // Its connection stays open: no subchannel changed state.
    assert_eq!(changes(&seen), []);
    // Out for 30 s, checked at each 10 s interval.
    h.advance(Duration::from_secs(20));
    assert!(!notices(&mut h)
        .iter()
        .any(|n| matches!(n, Notice::Restored { .. })));
    h.advance(Duration::from_secs(10));
    let seen = notices(&mut h);
    assert!(
        matches!(&seen[..], [Notice::Restored { address, .. }] if *address == addr(5)),
        "{seen:?}"
    );
}

#[test]
fn weighted_round_robin_tells_the_weights_it_picks_by() {
    let policy = PolicyConfig::weighted_round_robin();
    let mut h = harness(policy);
    h.resolve(ResolverUpdate::new([
        Endpoint::new(addr(1)).weight(1),
        Endpoint::new(addr(2)).weight(3),
    ]));
    h.connected(&addr(1));
    let seen = notices(&mut h);
    assert!(
        !seen
            .iter()
            .any(|n| matches!(n, Notice::WeightsUpdated { .. })),
        "one endpoint READY: plain round robin, {seen:?}"
    );
    h.connected(&addr(2));
    let seen = notices(&mut h);
    let weights: Vec<_> = seen
        .iter()
        .filter_map(|n| match n {
            Notice::WeightsUpdated { weights } => Some(weights.clone()),
            _ => None,
        })
        .collect();
    let ids: Vec<_> = h.lb.subchannels().iter().map(|s| s.id).collect();
    assert_eq!(
        weights,
        [vec![
            SubchannelWeight::new(ids[0], addr(1), 21845),
            SubchannelWeight::new(ids[1], addr(2), 65535),
        ]]
    );
    let line = seen
        .iter()
        .find(|n| matches!(n, Notice::WeightsUpdated { .. }))
        .unwrap()
        .to_string();
    assert!(line.contains("127.0.0.1:2 65535 (75.0%)"), "{line}");
    // The same weights again: no notice.
    h.resolve(ResolverUpdate::new([
        Endpoint::new(addr(1)).weight(1),
        Endpoint::new(addr(2)).weight(3),
        Endpoint::new(addr(3)).weight(1),
    ]));
    notices(&mut h);
    h.failed(&addr(3));
    assert!(!notices(&mut h)
        .iter()
        .any(|n| matches!(n, Notice::WeightsUpdated { .. })));
}

#[test]
fn weighted_round_robin_with_equal_weights_tells_none() {
    let policy = PolicyConfig::new(WeightedRoundRobinConfig::default());
    let mut h = harness(policy);
    h.resolve(update(&[1, 2, 3]));
    for port in 1..=3 {
        h.connected(&addr(port));
    }
    assert!(!notices(&mut h)
        .iter()
        .any(|n| matches!(n, Notice::WeightsUpdated { .. })));
}

/// The scheduler updates among `notices`: each endpoint's port and load weight, and whether
/// the scheduler fell back from load reports.
fn scheduler_updates(notices: &[Notice]) -> Vec<(Vec<(u16, LoadWeight)>, bool)> {
    notices
        .iter()
        .filter_map(|notice| match notice {
            Notice::SchedulerUpdated {
                endpoints,
                fallback,
            } => Some((
                endpoints
                    .iter()
                    .map(|endpoint| (port_of(&endpoint.address), endpoint.weight))
                    .collect(),
                *fallback,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn weighted_round_robin_tells_each_scheduler_update_what_the_load_reports_gave() {
    use LoadWeight::{NotYetUsable, Stale, Usable};
    let mut h = harness(PolicyConfig::new(WeightedRoundRobinConfig::default()));
    h.resolve(update(&[1, 2, 3]));
    for port in 1..=3 {
        h.connected(&addr(port));
    }
    // Equal weights, so no WeightsUpdated; but each scheduler is told, falling back to round
    // robin: no endpoint has reported.
    let updates = scheduler_updates(&notices(&mut h));
    assert_eq!(
        updates.last(),
        Some(&(
            vec![(1, NotYetUsable), (2, NotYetUsable), (3, NotYetUsable)],
            true
        ))
    );
    assert!(updates.iter().all(|(_, fallback)| *fallback), "{updates:?}");
    // 1 and 2 report (weights 100 / 0.5 and 300 / 1.0), 3 never does. A weight update that
    // changes nothing builds no scheduler: the one update comes as the blackout ends.
    let ids: Vec<_> = h.lb.subchannels().iter().map(|s| s.id).collect();
    let mut seen = Vec::new();
    for _ in 0..12 {
        let loads = [
            (ids[0], LoadReport::new(100.0, 0.5)),
            (ids[1], LoadReport::new(300.0, 1.0)),
        ];
        for (id, load) in loads {
            h.lb.handle_call_outcome(id, CallOutcome::ok(ms(2)).with_load(load), h.now);
        }
        h.drain();
        h.advance(Duration::from_secs(1));
        seen.extend(notices(&mut h));
    }
    assert_eq!(
        scheduler_updates(&seen),
        [(
            vec![(1, Usable(200.0)), (2, Usable(300.0)), (3, NotYetUsable)],
            false
        )]
    );
    let line = seen
        .iter()
        .find(|n| matches!(n, Notice::SchedulerUpdated { .. }))
        .unwrap()
        .to_string();
    assert!(line.contains("127.0.0.1:1 200.0"), "{line}");
    assert!(line.contains("127.0.0.1:3 not yet usable"), "{line}");
    // Three minutes of silence: the reported weights are stale, and the scheduler falls back.
    h.advance(Duration::from_secs(180));
    let seen = notices(&mut h);
    assert_eq!(
        scheduler_updates(&seen),
        [(vec![(1, Stale), (2, Stale), (3, NotYetUsable)], true)]
    );
    let line = seen
        .iter()
        .find(|n| matches!(n, Notice::SchedulerUpdated { .. }))
        .unwrap()
        .to_string();
    assert!(line.contains("too few usable weights"), "{line}");
    assert!(line.contains("127.0.0.1:2 stale"), "{line}");
}

/// The pick_first events among `notices`, by port.
fn pick_first_events(notices: &[Notice]) -> Vec<(u16, PickFirstEvent)> {
    notices
        .iter()
        .filter_map(|notice| match notice {
            Notice::PickFirst { address, event, .. } => Some((port_of(address), *event)),
            _ => None,
        })
        .collect()
}

#[test]
fn pick_first_tells_each_failed_attempt_connection_and_lost_connection() {
    use PickFirstEvent::{AttemptFailed, Connected, Disconnected};
    let mut h = harness(PolicyConfig::pick_first());
    h.resolve(update(&[1, 2]));
    h.failed(&addr(1));
    h.connected(&addr(2));
    let seen = notices(&mut h);
    assert_eq!(
        pick_first_events(&seen),
        [(1, AttemptFailed), (2, Connected)]
    );
    let line = seen
        .iter()
        .find(|n| matches!(n, Notice::PickFirst { .. }))
        .unwrap()
        .to_string();
    assert!(
        line.ends_with("127.0.0.1:1: pick_first: connection attempt failed"),
        "{line}"
    );
    // The chosen connection lost, once; the next pass fails both before 1 connects.
    h.closed(&addr(2));
    assert_eq!(pick_first_events(&notices(&mut h)), [(2, Disconnected)]);
    h.exit_idle();
    h.failed(&addr(1));
    h.failed(&addr(2));
    h.advance(Duration::from_secs(2));
    h.connected(&addr(1));
    assert_eq!(
        pick_first_events(&notices(&mut h)),
        [(1, AttemptFailed), (2, AttemptFailed), (1, Connected)]
    );
}

#[test]
fn round_robin_endpoints_tell_no_pick_first_events() {
    let mut h = harness(PolicyConfig::round_robin());
    h.resolve(update(&[1, 2]));
    h.failed(&addr(1));
    h.connected(&addr(2));
    h.closed(&addr(2));
    assert_eq!(pick_first_events(&notices(&mut h)), []);
}

#[test]
fn a_full_queue_drops_the_oldest_and_says_how_many() {
    let config = BalancerConfig::default()
        .policy(PolicyConfig::round_robin())
        .notices(4);
    let mut h = Harness::with_config(config, 7);
    // The update, then two notices per endpoint connecting, then READY for each (and the
    // channel READY with the first).
    h.resolve(update(&[1, 2, 3, 4, 5]));
    for port in 1..=5 {
        h.connected(&addr(port));
    }
    let seen = notices(&mut h);
    // 1 + 5 * 2 + 1 + 5 = 17 notices, 4 kept.
    assert_eq!(seen[0], Notice::Dropped { count: 13 });
    assert_eq!(
        seen[0].to_string(),
        "13 notices dropped: the queue was full"
    );
    assert_eq!(
        changes(&seen[1..]),
        (2..=5)
            .map(|p| (p, Connecting, Ready, None))
            .collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), 5);
    // Drained: nothing more, not even a count.
    assert_eq!(h.lb.poll_notice(), None);
}
