//! prequal: probes asked for in proportion to calls, answers kept in an aged pool, picks by the
//! hot-cold rule, round robin while no answer is in the pool. Virtual time throughout.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use croupier::policy::PrequalConfig;
use croupier::{
    Action, CallOutcome, ConnectionEvent, Pick, PolicyConfig, ProbeResult, SubchannelId,
};
use croupier_testing::{addr, ms, update};
use support::{attempts, Quiet};

/// A balancer whose backends on `ports` are all READY, driven without the harness's own picks
/// (they would use the pool's probes).
fn ready(config: PrequalConfig, ports: &[u16]) -> Quiet {
    let mut q = Quiet::new(PolicyConfig::new(config), 7);
    let mut actions = q.resolve(update(ports));
    actions.extend(q.exit_idle());
    for (connection, _) in attempts(&actions) {
        q.event(connection, ConnectionEvent::Connected);
    }
    q
}

fn drain(q: &mut Quiet) -> Vec<Action> {
    std::iter::from_fn(|| q.lb.poll_action()).collect()
}

fn subchannel(h: &Quiet, port: u16) -> SubchannelId {
    let address = addr(port);
    h.lb.subchannels()
        .into_iter()
        .find(|s| s.address == address)
        .map(|s| s.id)
        .expect("a subchannel per backend")
}

fn probes(actions: &[Action]) -> Vec<SubchannelId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Probe { subchannel } => Some(*subchannel),
            _ => None,
        })
        .collect()
}

fn answer(h: &mut Quiet, port: u16, rif: u32, latency_ms: Option<u64>) {
    let id = subchannel(h, port);
    h.lb.handle_probe_result(id, ProbeResult::new(rif, latency_ms.map(ms)), h.now);
    drain(h);
}

fn call_ended(h: &mut Quiet, id: SubchannelId) -> Vec<Action> {
    h.lb.handle_call_outcome(id, CallOutcome::ok(ms(5)), h.now);
    drain(h)
}

fn picked_port(h: &Quiet) -> u16 {
    let Pick::Ready(id) = h.pick(0) else {
        panic!("READY expected")
    };
    let address =
        h.lb.subchannels()
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.address);
    match address {
        Some(croupier::Address::Socket(socket)) => socket.port(),
        other => panic!("a socket address expected, got {other:?}"),
    }
}

#[test]
fn prequal_asks_for_probes_in_proportion_to_the_calls_that_end() {
    let mut h = ready(PrequalConfig::default().probes_per_call(0.5), &[1, 2, 3, 4]);
    let any = subchannel(&h, 1);
    let mut asked = Vec::new();
    for _ in 0..100 {
        asked.extend(probes(&call_ended(&mut h, any)));
    }
    assert_eq!(asked.len(), 50, "half a probe per call");
    // Targets are drawn among the READY backends: each of the four is probed.
    for port in 1..=4 {
        let id = subchannel(&h, port);
        assert!(
            asked.contains(&id),
            "backend {port} never probed: {asked:?}"
        );
    }
}

#[test]
fn prequal_asks_for_no_probe_before_a_call_ends() {
    let mut q = Quiet::new(PolicyConfig::prequal(), 7);
    let mut actions = q.resolve(update(&[1, 2, 3]));
    for (connection, _) in attempts(&actions.clone()) {
        actions.extend(q.event(connection, ConnectionEvent::Connected));
    }
    actions.extend(q.advance(ms(5_000)));
    assert!(probes(&actions).is_empty(), "{actions:?}");
}

#[test]
fn prequal_spreads_picks_while_nothing_is_known() {
    let h = ready(PrequalConfig::default(), &[1, 2, 3]);
    let mut counts = BTreeMap::new();
    for _ in 0..300 {
        *counts.entry(picked_port(&h)).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n > 60), "{counts:?}");
}

#[test]
fn with_its_pool_used_up_prequal_avoids_the_backend_whose_latest_answer_is_worst() {
    let mut h = ready(PrequalConfig::default().max_uses(1), &[1, 2]);
    answer(&mut h, 1, 0, Some(50));
    answer(&mut h, 2, 0, Some(5));
    // Two picks use both probes up; later picks go by the latest answers.
    let _ = (picked_port(&h), picked_port(&h));
    for _ in 0..20 {
        assert_eq!(picked_port(&h), 2);
    }
}

#[test]
fn prequal_sends_a_call_to_the_cold_backend_with_the_lowest_latency() {
    let config = PrequalConfig::default().max_uses(1).cold_quantile(0.5);
    let mut h = ready(config, &[1, 2, 3]);
    // The threshold is the median of the RIFs answered, 1.
    answer(&mut h, 1, 9, Some(1)); // fastest, but hot
    answer(&mut h, 2, 0, Some(20));
    answer(&mut h, 3, 1, Some(5)); // cold and faster than 2
    assert_eq!(picked_port(&h), 3);
    // That probe is used up; of the cold ones 2 is left.
    assert_eq!(picked_port(&h), 2);
    // Only the hot one is left: it is the one with the fewest requests in flight.
    assert_eq!(picked_port(&h), 1);
}

#[test]
fn prequal_uses_a_probe_at_most_max_uses_times_counting_each_call_on_it() {
    let mut h = ready(PrequalConfig::default().max_uses(3), &[1, 2]);
    answer(&mut h, 1, 0, Some(2));
    answer(&mut h, 2, 2, Some(2));
    // The threshold is the 75th percentile of [0, 2]: 0. Backend 1 is cold until its first call
    // counts on its probe; then both are hot, and ties in RIF go to the lower latency.
    let picks: Vec<u16> = (0..4).map(|_| picked_port(&h)).collect();
    assert_eq!(picks[0], 1);
    assert_eq!(picks[1..3], [1, 1], "RIF 1, then 2 against 2: {picks:?}");
    // Three uses and backend 1's probe is gone: backend 2's is all that is left.
    assert_eq!(picks[3], 2, "{picks:?}");
}

#[test]
fn a_newer_answer_from_a_backend_replaces_its_older_one() {
    let mut h = ready(PrequalConfig::default().max_uses(15), &[1, 2]);
    answer(&mut h, 1, 0, Some(1));
    answer(&mut h, 1, 0, Some(50));
    answer(&mut h, 2, 0, Some(10));
    // Kept beside the new one, backend 1's 1 ms would win.
    assert_eq!(picked_port(&h), 2, "backend 1's first answer is gone");
}

#[test]
fn probes_older_than_max_age_leave_the_pool() {
    let mut h = ready(
        PrequalConfig::default().max_age(ms(500)).max_uses(15),
        &[1, 2, 3],
    );
    answer(&mut h, 2, 0, Some(1));
    for _ in 0..5 {
        assert_eq!(picked_port(&h), 2);
    }
    // The timer ages the pool out even with no call ending: the latest answers decide, and
    // the backends never probed are as good a choice as backend 2.
    h.advance(ms(600));
    let ports: std::collections::BTreeSet<u16> = (0..60).map(|_| picked_port(&h)).collect();
    assert_eq!(ports.len(), 3, "{ports:?}");
}

#[test]
fn a_backend_without_a_latency_is_taken_at_the_median_of_the_recent_ones() {
    let mut h = ready(PrequalConfig::default().max_uses(1), &[1, 2, 3, 4, 5]);
    answer(&mut h, 2, 0, Some(10));
    answer(&mut h, 3, 0, Some(300));
    answer(&mut h, 4, 0, Some(500));
    answer(&mut h, 5, 0, Some(700));
    answer(&mut h, 1, 0, None); // the median of the four: 500 ms
    let picks: Vec<u16> = (0..5).map(|_| picked_port(&h)).collect();
    assert_eq!(picks[..2], [2, 3], "{picks:?}");
    let position = |port| picks.iter().position(|&p| p == port).unwrap();
    assert!(
        position(1) < position(5),
        "ahead of the slowest, not behind: {picks:?}"
    );
}

#[test]
fn an_answer_for_a_removed_subchannel_is_ignored() {
    let mut h = ready(PrequalConfig::default(), &[1, 2]);
    let gone = subchannel(&h, 2);
    h.resolve(update(&[1]));
    h.lb.handle_probe_result(gone, ProbeResult::new(0, Some(ms(1))), h.now);
    drain(&mut h);
    for _ in 0..4 {
        assert_eq!(picked_port(&h), 1);
    }
}

#[test]
fn a_probe_of_a_subchannel_removed_before_it_was_polled_is_not_announced() {
    let mut h = ready(PrequalConfig::default().probes_per_call(4.0), &[1, 2]);
    let one = subchannel(&h, 1);
    h.lb.handle_call_outcome(one, CallOutcome::ok(ms(1)), h.now);
    // Both backends removed before the adapter polls: no probe names a removed subchannel.
    h.lb.handle_resolver_update(update(&[3]), h.now);
    let actions = drain(&mut h);
    assert!(probes(&actions).is_empty(), "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Shutdown { .. })));
}

#[test]
fn prequal_takes_its_settings_by_name_with_errors_that_name_the_parameter() {
    let config = PolicyConfig::prequal()
        .with_params(&[("max_age_ms".into(), "250".into())])
        .expect("a known parameter");
    let settings = config.downcast_ref::<PrequalConfig>().expect("prequal");
    assert_eq!(settings.max_age, Duration::from_millis(250));
    let error = PolicyConfig::prequal()
        .with_params(&[("pool".into(), "3".into())])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("prequal") && error.contains("pool"),
        "{error}"
    );
}
