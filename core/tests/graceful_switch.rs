//! The graceful policy switch: a config naming another policy builds it beside the running one,
//! which keeps serving until the new one is READY (or it leaves READY itself); then each of the
//! old policy's subchannels gets exactly one shutdown. Virtual time, fixed seeds.
#![cfg(feature = "service-config")]

mod support;

use croupier::service_config::ServiceConfigParser;
use croupier::{Address, ConnectionEvent, ConnectivityState, PolicyConfig, ResolverUpdate};
use croupier::{Pick, SubchannelId};
use support::{addr, connects, ms, update, Harness, Seen};

fn with_policy(ports: &[u16], policy: &str) -> ResolverUpdate {
    let json = format!(r#"{{"loadBalancingConfig": [{{"{policy}": {{}}}}]}}"#);
    update(ports).with_service_config(ServiceConfigParser::new().parse(&json))
}

/// The subchannels shut down in `seen`.
fn shutdowns(seen: &[Seen]) -> Vec<SubchannelId> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Shutdown(id) => Some(*id),
            _ => None,
        })
        .collect()
}

/// The newest attempt to `address` (the new policy's, during a switch) succeeds.
fn newest_connected(h: &mut Harness, address: &Address) -> Vec<Seen> {
    let connection = h
        .attempts
        .values()
        .filter(|(_, a)| a == address)
        .map(|(c, _)| *c)
        .max()
        .unwrap_or_else(|| panic!("no attempt to {address}"));
    h.report(connection, ConnectionEvent::Connected)
}

/// The subchannel a pick lands on.
fn picked(h: &Harness) -> SubchannelId {
    match h.pick() {
        Pick::Ready(id) => id,
        other => panic!("{other:?}"),
    }
}

/// pick_first READY on port 1 of `ports`, chosen by the resolver's config.
fn serving_pick_first(ports: &[u16]) -> (Harness, SubchannelId) {
    let mut h = Harness::new(PolicyConfig::round_robin(), 3);
    h.resolve(with_policy(ports, "pick_first"));
    h.connected(&addr(ports[0]));
    assert_eq!(h.state(), ConnectivityState::Ready);
    let old = picked(&h);
    (h, old)
}

#[test]
fn the_old_policy_serves_until_the_new_one_is_ready() {
    let (mut h, old) = serving_pick_first(&[1, 2]);
    let seen = h.resolve(with_policy(&[1, 2], "round_robin"));
    assert_eq!(
        connects(&seen),
        vec![addr(1), addr(2)],
        "round_robin connects beside"
    );
    assert!(
        shutdowns(&seen).is_empty(),
        "nothing of pick_first's goes yet"
    );
    assert!(h.lb.is_switching_policy());
    assert_eq!(h.state(), ConnectivityState::Ready);
    assert_eq!(picked(&h), old, "calls still go to pick_first's connection");
    // One of round_robin's two fails: it is not READY, so pick_first serves on.
    h.failed(&addr(2));
    assert_eq!(picked(&h), old);

    let seen = newest_connected(&mut h, &addr(1));
    assert_eq!(
        shutdowns(&seen),
        vec![old],
        "exactly pick_first's subchannel, once"
    );
    assert!(!h.lb.is_switching_policy());
    assert_eq!(h.state(), ConnectivityState::Ready);
    let now = picked(&h);
    assert_ne!(now, old, "round_robin's own subchannel");
    assert_eq!(
        h.lb.subchannels().len(),
        2,
        "round_robin's two, nothing else"
    );
    let all_shutdowns = shutdowns(&h.seen);
    assert_eq!(all_shutdowns.iter().filter(|id| **id == old).count(), 1);
}

#[test]
fn a_switch_from_a_policy_that_is_not_ready_happens_at_once() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 3);
    h.resolve(with_policy(&[1, 2], "pick_first"));
    let old: Vec<SubchannelId> = h.lb.subchannels().iter().map(|s| s.id).collect();
    let seen = h.resolve(with_policy(&[1, 2], "round_robin"));
    assert_eq!(shutdowns(&seen), old, "pick_first was only connecting");
    assert!(!h.lb.is_switching_policy());
    assert_eq!(connects(&seen), vec![addr(1), addr(2)]);
}

#[test]
fn the_new_policy_takes_over_when_the_old_one_leaves_ready() {
    let (mut h, old) = serving_pick_first(&[1, 2]);
    h.resolve(with_policy(&[1, 2], "round_robin"));
    assert!(h.lb.is_switching_policy());
    let seen = h.closed(&addr(1));
    assert_eq!(shutdowns(&seen), vec![old]);
    assert!(!h.lb.is_switching_policy());
    assert_eq!(
        h.state(),
        ConnectivityState::Connecting,
        "round_robin's state"
    );
    assert!(
        matches!(h.pick(), Pick::Queue),
        "calls wait for round_robin"
    );
    newest_connected(&mut h, &addr(2));
    assert_eq!(h.pick_address(), Some(addr(2)));
}

#[test]
fn a_config_for_the_running_policy_drops_the_pending_one() {
    let (mut h, old) = serving_pick_first(&[1, 2]);
    h.resolve(with_policy(&[1, 2], "round_robin"));
    let pending: Vec<SubchannelId> =
        h.lb.subchannels()
            .iter()
            .map(|s| s.id)
            .filter(|id| *id != old)
            .collect();
    assert_eq!(pending.len(), 2);
    let seen = h.resolve(with_policy(&[1, 2], "pick_first"));
    assert_eq!(shutdowns(&seen), pending, "round_robin's, each once");
    assert!(!h.lb.is_switching_policy());
    assert_eq!(picked(&h), old, "pick_first never stopped");
    assert!(connects(&seen).is_empty(), "its connection is kept");
}

#[test]
fn the_pending_policys_timers_are_its_own_and_die_with_it() {
    let mut h = Harness::new(PolicyConfig::round_robin(), 3);
    h.resolve(with_policy(&[1, 2], "round_robin"));
    newest_connected(&mut h, &addr(1));
    newest_connected(&mut h, &addr(2));
    // pick_first pending on two new addresses: its happy-eyeballs timer starts the second
    // attempt 250 ms on.
    let seen = h.resolve(with_policy(&[3, 4], "pick_first"));
    assert_eq!(connects(&seen), vec![addr(3)]);
    let seen = h.advance(ms(250));
    assert_eq!(
        connects(&seen),
        vec![addr(4)],
        "the pending policy's timer reached it"
    );
    assert!(h.lb.is_switching_policy());

    // Again, but the switch is called off before the timer: the timer of a policy gone does
    // nothing.
    let mut h = Harness::new(PolicyConfig::round_robin(), 3);
    h.resolve(with_policy(&[1, 2], "round_robin"));
    newest_connected(&mut h, &addr(1));
    h.resolve(with_policy(&[3, 4], "pick_first"));
    let seen = h.resolve(with_policy(&[1, 2], "round_robin"));
    assert_eq!(shutdowns(&seen).len(), 1, "pick_first's one subchannel");
    let seen = h.advance(ms(300));
    assert!(connects(&seen).is_empty(), "{seen:?}");
    assert!(
        h.lb.poll_timeout() > Some(h.now),
        "no stale timer stays due"
    );
}

#[test]
fn a_policy_switch_keeps_the_core_deterministic() {
    let run = |seed| {
        let (mut h, _) = {
            let mut h = Harness::new(PolicyConfig::round_robin(), seed);
            h.resolve(with_policy(&[1, 2, 3], "pick_first"));
            h.connected(&addr(1));
            (h, ())
        };
        h.resolve(with_policy(&[1, 2, 3], "round_robin"));
        h.advance(ms(100));
        newest_connected(&mut h, &addr(3));
        h.resolve(with_policy(&[2, 3], "least_request"));
        newest_connected(&mut h, &addr(2));
        h.seen
    };
    assert_eq!(run(5), run(5));
}

#[test]
fn a_call_waiting_on_the_current_policy_still_gets_its_endpoint_connected() {
    // ring_hash connects endpoints lazily: a call hashed to an IDLE one queues, and leaving
    // IDLE connects it. It must work while a switch is under way too.
    let mut h = Harness::new(PolicyConfig::round_robin(), 3);
    h.resolve(with_policy(&[1, 2, 3], "ring_hash"));
    let queued = (0..64u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .find(|&hash| {
            matches!(
                h.picker()
                    .pick(&croupier::PickRequest::new().with_hash(hash)),
                Pick::Queue
            )
        })
        .expect("a hash on an IDLE endpoint");
    h.exit_idle();
    let attempts: Vec<Address> = h.attempts.values().map(|(_, a)| a.clone()).collect();
    assert!(!attempts.is_empty() && attempts.len() < 3, "{attempts:?}");
    for address in attempts {
        h.connected(&address);
    }
    assert_eq!(h.state(), ConnectivityState::Ready);
    h.resolve(with_policy(&[4], "pick_first"));
    assert!(
        h.lb.is_switching_policy(),
        "pick_first connects to 4, not READY yet"
    );
    let queues = (0..256u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ queued)
        .any(|hash| {
            matches!(
                h.picker()
                    .pick(&croupier::PickRequest::new().with_hash(hash)),
                Pick::Queue
            )
        });
    assert!(
        queues,
        "a call hashed to another IDLE endpoint of ring_hash's waits"
    );
    let seen = h.exit_idle();
    let connected = connects(&seen);
    assert_eq!(connected.len(), 1, "{seen:?}");
    assert!(
        [addr(1), addr(2), addr(3)].contains(&connected[0]),
        "ring_hash's"
    );
}

/// A config naming `policy` with `settings` (a JSON object) over `ports`.
fn with_settings(ports: &[u16], policy: &str, settings: &str) -> ResolverUpdate {
    let json = format!(r#"{{"loadBalancingConfig": [{{"{policy}": {settings}}}]}}"#);
    update(ports).with_service_config(ServiceConfigParser::new().parse(&json))
}

#[test]
fn new_settings_for_the_running_policy_are_taken_in_place_when_it_can() {
    let cases = [
        (
            "least_request_experimental",
            r#"{"choiceCount": 2}"#,
            r#"{"choiceCount": 3}"#,
        ),
        (
            "weighted_round_robin",
            r#"{"blackoutPeriod": "1s"}"#,
            r#"{"blackoutPeriod": "2s"}"#,
        ),
    ];
    for (policy, first, second) in cases {
        let mut h = Harness::new(PolicyConfig::pick_first(), 5);
        h.resolve(with_settings(&[1, 2], policy, first));
        // Every attempt made connects (pick_first makes one).
        let attempted: Vec<Address> = h.attempts.values().map(|(_, a)| a.clone()).collect();
        for address in &attempted {
            h.connected(address);
        }
        assert_eq!(h.state(), ConnectivityState::Ready, "{policy}");
        let before: Vec<_> = h.lb.subchannels().iter().map(|s| s.id).collect();

        // The policy takes the new settings as it is: no switch, nothing connects or goes.
        let seen = h.resolve(with_settings(&[1, 2], policy, second));
        assert!(!h.lb.is_switching_policy(), "{policy}");
        assert!(connects(&seen).is_empty(), "{policy}: {seen:?}");
        assert!(shutdowns(&seen).is_empty(), "{policy}: {seen:?}");
        let after: Vec<_> = h.lb.subchannels().iter().map(|s| s.id).collect();
        assert_eq!(before, after, "{policy}");
        assert_eq!(h.state(), ConnectivityState::Ready, "{policy}");
    }
}

#[test]
fn new_settings_a_policy_cannot_take_in_place_build_it_anew() {
    let od = "outlier_detection_experimental";
    let settings = |interval: &str| {
        format!(r#"{{"interval": "{interval}", "childPolicy": [{{"round_robin": {{}}}}]}}"#)
    };
    let mut h = Harness::new(PolicyConfig::pick_first(), 5);
    h.resolve(with_settings(&[1, 2], od, &settings("10s")));
    let before: Vec<_> = h.lb.subchannels().iter().map(|s| s.id).collect();
    assert_eq!(before.len(), 2);
    // outlier detection does not take a new interval in place: a new one replaces it (at once,
    // as the running one is not READY), and each old subchannel is shut down.
    let seen = h.resolve(with_settings(&[1, 2], od, &settings("20s")));
    let mut gone = shutdowns(&seen);
    gone.sort();
    assert_eq!(gone, before, "{seen:?}");
    let after: Vec<_> = h.lb.subchannels().iter().map(|s| s.id).collect();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|id| !before.contains(id)));
}
