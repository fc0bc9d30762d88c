//! The action queue stays bounded whatever the adapter's order of calls: a newer picker or state
//! change replaces one that nobody has taken yet.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use croupier::{
    Action, Balancer, BalancerConfig, ConnectionEvent, ConnectionId, ConnectivityState, Endpoint,
    Pick, PickRequest, PolicyConfig, ResolverUpdate,
};

fn pods(n: u32) -> Vec<Endpoint> {
    (0..n)
        .map(|i| {
            Endpoint::new(SocketAddr::new(
                Ipv4Addr::from(0x0a00_0000 + i).into(),
                8080,
            ))
        })
        .collect()
}

fn drain(balancer: &mut Balancer) -> Vec<Action> {
    std::iter::from_fn(|| balancer.poll_action()).collect()
}

fn connects(actions: &[Action]) -> Vec<ConnectionId> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Connect { connection, .. } => Some(*connection),
            _ => None,
        })
        .collect()
}

fn pickers(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|action| matches!(action, Action::UpdatePicker(_)))
        .count()
}

fn states(actions: &[Action]) -> Vec<ConnectivityState> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::StateChanged(state) => Some(*state),
            _ => None,
        })
        .collect()
}

#[test]
fn ten_thousand_connections_reported_without_draining_leave_one_picker_queued() {
    let start = Instant::now();
    let config = BalancerConfig::default().policy(PolicyConfig::round_robin());
    let mut balancer = Balancer::new(config, 3, start);
    balancer.handle_resolver_update(ResolverUpdate::new(pods(10_000)), start);
    let attempts = connects(&drain(&mut balancer));
    assert_eq!(attempts.len(), 10_000);
    for (i, connection) in attempts.iter().enumerate() {
        let at = start + Duration::from_micros(i as u64);
        balancer.handle_connection_event(*connection, ConnectionEvent::Connected, at);
    }
    let queued = drain(&mut balancer);
    assert_eq!(pickers(&queued), 1, "one picker, the newest");
    assert_eq!(states(&queued), [ConnectivityState::Ready]);
    assert!(queued.len() <= 2, "{} actions queued", queued.len());
    // The one queued is the balancer's newest.
    let Some(Action::UpdatePicker(picker)) = queued
        .iter()
        .find(|action| matches!(action, Action::UpdatePicker(_)))
    else {
        unreachable!()
    };
    let newest = balancer.picker();
    assert!(std::sync::Arc::ptr_eq(picker, &newest));
    assert!(matches!(picker.pick(&PickRequest::new()), Pick::Ready(_)));
}

#[test]
fn connections_lost_and_regained_without_draining_stay_bounded_by_the_subchannels() {
    let start = Instant::now();
    let config = BalancerConfig::default().policy(PolicyConfig::round_robin());
    let mut balancer = Balancer::new(config, 3, start);
    balancer.handle_resolver_update(ResolverUpdate::new(pods(100)), start);
    let mut attempts = connects(&drain(&mut balancer));
    let mut queued = 0;
    // Ten rounds of: every connection made, then every one lost (each loss reconnects at once).
    for round in 0..10u64 {
        let at = start + Duration::from_secs(round);
        for connection in &attempts {
            balancer.handle_connection_event(*connection, ConnectionEvent::Connected, at);
        }
        for connection in &attempts {
            let closed = ConnectionEvent::Closed("reset by peer".into());
            balancer.handle_connection_event(*connection, closed, at);
        }
        let actions = drain(&mut balancer);
        assert!(
            pickers(&actions) <= 1,
            "round {round}: {}",
            pickers(&actions)
        );
        assert!(
            states(&actions).len() <= 1,
            "round {round}: {:?}",
            states(&actions)
        );
        attempts = connects(&actions);
        queued = queued.max(actions.len());
    }
    // Per subchannel: its reconnect; then a re-resolution request, a state, a picker.
    assert!(
        queued <= 100 + 3,
        "{queued} actions queued for 100 subchannels"
    );
}

#[test]
fn a_state_change_undone_before_it_is_polled_is_not_announced() {
    for drain_between in [true, false] {
        let start = Instant::now();
        let config = BalancerConfig::default().policy(PolicyConfig::round_robin());
        let mut balancer = Balancer::new(config, 3, start);
        balancer.handle_resolver_update(ResolverUpdate::new(pods(2)), start);
        assert!(
            states(&drain(&mut balancer)).is_empty(),
            "it starts CONNECTING"
        );
        // CONNECTING -> TRANSIENT_FAILURE (no endpoints) -> CONNECTING (endpoints again).
        balancer.handle_resolver_update(ResolverUpdate::new([]), start);
        let mut seen = if drain_between {
            drain(&mut balancer)
        } else {
            Vec::new()
        };
        balancer.handle_resolver_update(ResolverUpdate::new(pods(3)), start);
        seen.extend(drain(&mut balancer));
        let expected: &[ConnectivityState] = if drain_between {
            &[
                ConnectivityState::TransientFailure,
                ConnectivityState::Connecting,
            ]
        } else {
            &[]
        };
        assert_eq!(
            states(&seen),
            expected,
            "drained in between: {drain_between}"
        );
        assert_eq!(pickers(&seen), if drain_between { 2 } else { 1 });
        assert_eq!(connects(&seen).len(), 3);
    }
}
