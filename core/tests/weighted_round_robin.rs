//! weighted_round_robin (gRFC A58): static weights, load-report weights with blackout, expiry and
//! update period, all in virtual time.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use croupier::policy::WeightedRoundRobinConfig;
use croupier::{
    Address, CallOutcome, Endpoint, LoadReport, PolicyChoice, PolicyConfig, PolicyParamErrorKind,
    ResolverUpdate, SubchannelId,
};
use support::*;

fn weighted(ports_and_weights: &[(u16, u32)]) -> ResolverUpdate {
    ResolverUpdate::new(
        ports_and_weights
            .iter()
            .map(|&(port, weight)| Endpoint::new(addr(port)).weight(weight)),
    )
}

fn ready(policy: PolicyConfig, update: ResolverUpdate, seed: u64) -> Harness {
    let mut h = Harness::new(policy, seed);
    let addresses: Vec<Address> = update
        .endpoints
        .iter()
        .map(|e| e.addresses()[0].clone())
        .collect();
    h.resolve(update);
    for address in &addresses {
        h.connected(address);
    }
    h
}

fn shares(h: &Harness, picks: usize) -> BTreeMap<Address, usize> {
    let picker = h.picker();
    let mut counts = BTreeMap::new();
    for _ in 0..picks {
        let croupier::Pick::Ready(id) = picker.pick(&croupier::PickRequest::new()) else {
            panic!("READY expected")
        };
        *counts.entry(address_of(h, id).expect("known")).or_insert(0) += 1;
    }
    counts
}

/// Asserts each endpoint's share of `picks` is within `tolerance` (a fraction of all picks) of
/// its weight's share.
fn assert_shares(counts: &BTreeMap<Address, usize>, weights: &[(u16, f64)], tolerance: f64) {
    let picks: usize = counts.values().sum();
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    for &(port, weight) in weights {
        let share = *counts.get(&addr(port)).unwrap_or(&0) as f64 / picks as f64;
        let expected = weight / total;
        assert!(
            (share - expected).abs() <= tolerance,
            "{port}: share {share:.4}, expected {expected:.4}: {counts:?}"
        );
    }
}

/// Every READY endpoint reports `qps` at `utilization` with a call, `rounds` times, `every` apart.
fn report(h: &mut Harness, loads: &[(u16, f64, f64)], rounds: usize, every: Duration) {
    send_reports(h, loads, rounds, every, |h, id, load| {
        h.lb.handle_call_outcome(id, CallOutcome::ok(ms(2)).with_load(load), h.now);
    });
}

/// Each of `loads` delivered by `deliver` to its endpoint's subchannel, `rounds` times, `every`
/// apart.
fn send_reports(
    h: &mut Harness,
    loads: &[(u16, f64, f64)],
    rounds: usize,
    every: Duration,
    deliver: impl Fn(&mut Harness, SubchannelId, LoadReport),
) {
    for _ in 0..rounds {
        for &(port, qps, utilization) in loads {
            let id =
                h.lb.subchannels()
                    .into_iter()
                    .find(|s| s.address == addr(port))
                    .expect("a subchannel")
                    .id;
            deliver(h, id, LoadReport::new(qps, utilization));
        }
        h.drain();
        h.advance(every);
    }
}

#[test]
fn static_weights_one_two_three_share_calls_within_one_percent() {
    let h = ready(
        PolicyConfig::weighted_round_robin(),
        weighted(&[(1, 1), (2, 2), (3, 3)]),
        1,
    );
    let counts = shares(&h, 60_000);
    assert_shares(&counts, &[(1, 1.0), (2, 2.0), (3, 3.0)], 0.01);
}

#[test]
fn equal_or_missing_weights_are_plain_round_robin() {
    let h = ready(PolicyConfig::weighted_round_robin(), update(&[1, 2, 3]), 2);
    let picker = h.picker();
    // Round robin: every three consecutive picks cover the three endpoints.
    for _ in 0..100 {
        let mut seen: Vec<Address> = (0..3)
            .map(|_| match picker.pick(&croupier::PickRequest::new()) {
                croupier::Pick::Ready(id) => address_of(&h, id).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        seen.sort();
        assert_eq!(seen, vec![addr(1), addr(2), addr(3)]);
    }
}

#[test]
fn a_changed_static_weight_takes_effect_with_the_next_update() {
    let mut h = ready(
        PolicyConfig::weighted_round_robin(),
        weighted(&[(1, 1), (2, 1)]),
        3,
    );
    assert_shares(&shares(&h, 10_000), &[(1, 1.0), (2, 1.0)], 0.01);
    h.resolve(weighted(&[(1, 1), (2, 4)]));
    assert_shares(&shares(&h, 10_000), &[(1, 1.0), (2, 4.0)], 0.01);
}

#[test]
fn load_reports_set_the_weights_after_the_blackout() {
    let mut h = ready(PolicyConfig::weighted_round_robin(), update(&[1, 2, 3]), 4);
    // qps / utilization: 100 / 0.6, 100 / 0.3, 100 / 0.2 = 166.7 : 333.3 : 500 = 1 : 2 : 3.
    let loads = [(1, 100.0, 0.6), (2, 100.0, 0.3), (3, 100.0, 0.2)];
    // Nine seconds of reports: still inside the ten-second blackout, so still even.
    report(&mut h, &loads, 9, Duration::from_secs(1));
    assert_shares(&shares(&h, 6_000), &[(1, 1.0), (2, 1.0), (3, 1.0)], 0.01);
    // Past the blackout, the next weight update (every second) publishes the weights.
    report(&mut h, &loads, 2, Duration::from_secs(1));
    assert_shares(&shares(&h, 60_000), &[(1, 1.0), (2, 2.0), (3, 3.0)], 0.01);
}

#[test]
fn reported_weights_expire_without_fresh_reports() {
    let mut h = ready(
        PolicyConfig::weighted_round_robin(),
        weighted(&[(1, 1), (2, 1), (3, 1)]),
        5,
    );
    let loads = [(1, 100.0, 0.6), (2, 100.0, 0.3), (3, 100.0, 0.2)];
    report(&mut h, &loads, 12, Duration::from_secs(1));
    assert_shares(&shares(&h, 6_000), &[(1, 1.0), (2, 2.0), (3, 3.0)], 0.01);
    // Three minutes of silence: the weights lapse and the static (equal) ones are back.
    h.advance(Duration::from_secs(180));
    assert_shares(&shares(&h, 6_000), &[(1, 1.0), (2, 1.0), (3, 1.0)], 0.01);
}

#[test]
fn endpoints_without_reports_get_the_mean_weight() {
    let mut h = ready(PolicyConfig::weighted_round_robin(), update(&[1, 2, 3]), 6);
    // 1 and 2 report weights 100 and 300; 3 reports nothing and counts as the mean, 200.
    let loads = [(1, 100.0, 1.0), (2, 300.0, 1.0)];
    report(&mut h, &loads, 12, Duration::from_secs(1));
    assert_shares(&shares(&h, 60_000), &[(1, 1.0), (2, 3.0), (3, 2.0)], 0.01);
}

#[test]
fn one_reporting_endpoint_is_not_enough_to_weigh_by_reports() {
    let mut h = ready(
        PolicyConfig::weighted_round_robin(),
        weighted(&[(1, 1), (2, 3)]),
        7,
    );
    report(&mut h, &[(1, 1000.0, 0.1)], 12, Duration::from_secs(1));
    // The static weights still rule.
    assert_shares(&shares(&h, 8_000), &[(1, 1.0), (2, 3.0)], 0.01);
}

#[test]
fn errors_lower_a_reported_weight() {
    let mut h = ready(PolicyConfig::weighted_round_robin(), update(&[1, 2]), 8);
    let (one, two) = (
        h.lb.subchannels()
            .into_iter()
            .find(|s| s.address == addr(1))
            .unwrap()
            .id,
        h.lb.subchannels()
            .into_iter()
            .find(|s| s.address == addr(2))
            .unwrap()
            .id,
    );
    for _ in 0..12 {
        // Same qps and utilization, but 2 fails half its calls: 100 / (0.5 + 0.5) = 100 against
        // 100 / 0.5 = 200.
        let clean = LoadReport::new(100.0, 0.5);
        h.lb.handle_call_outcome(one, CallOutcome::ok(ms(1)).with_load(clean), h.now);
        let erring = LoadReport::new(100.0, 0.5).eps(50.0);
        h.lb.handle_call_outcome(two, CallOutcome::ok(ms(1)).with_load(erring), h.now);
        h.drain();
        h.advance(Duration::from_secs(1));
    }
    assert_shares(&shares(&h, 30_000), &[(1, 2.0), (2, 1.0)], 0.01);
}

#[test]
fn a_reconnected_endpoint_waits_out_a_new_blackout() {
    let config = WeightedRoundRobinConfig::default();
    let mut h = ready(PolicyConfig::new(config), update(&[1, 2, 3]), 9);
    let loads = [(1, 100.0, 0.6), (2, 100.0, 0.3), (3, 100.0, 0.2)];
    report(&mut h, &loads, 12, Duration::from_secs(1));
    assert_shares(&shares(&h, 6_000), &[(1, 1.0), (2, 2.0), (3, 3.0)], 0.01);
    // 3 loses its connection and gets it back: its reports start a new blackout, during which
    // it counts as the mean of the others (1 and 2: 1.5 in the same units).
    h.closed(&addr(3));
    h.connected(&addr(3));
    report(&mut h, &loads, 3, Duration::from_secs(1));
    assert_shares(&shares(&h, 9_000), &[(1, 1.0), (2, 2.0), (3, 1.5)], 0.01);
    report(&mut h, &loads, 9, Duration::from_secs(1));
    assert_shares(&shares(&h, 6_000), &[(1, 1.0), (2, 2.0), (3, 3.0)], 0.01);
}

#[test]
fn chosen_by_name_with_parameters() {
    let mut h = Harness::new(PolicyConfig::pick_first(), 10);
    let choice = PolicyChoice::new("weighted_round_robin")
        .param("blackout_period_ms", "0")
        .param("weight_update_period_ms", "100");
    h.resolve(update(&[1, 2]).with_policy(choice));
    h.connected(&addr(1));
    h.connected(&addr(2));
    // No blackout: the first reports count at the next update, 100 ms later.
    report(&mut h, &[(1, 100.0, 1.0), (2, 300.0, 1.0)], 2, ms(100));
    assert_shares(&shares(&h, 8_000), &[(1, 1.0), (2, 3.0)], 0.01);
}

#[test]
fn bad_parameters_are_refused_naming_them() {
    let config = PolicyConfig::weighted_round_robin();
    let params = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    let err = config
        .with_params(&params("error_utilization_penalty", "-1"))
        .unwrap_err();
    assert!(
        matches!(&err.kind, PolicyParamErrorKind::InvalidValue { key, .. }
            if key == "error_utilization_penalty"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("error_utilization_penalty"),
        "{err}"
    );
    let err = config
        .with_params(&params("enable_oob_load_report", "yes"))
        .unwrap_err();
    assert!(err.to_string().contains("enable_oob_load_report"), "{err}");
    assert!(config
        .with_params(&params("enable_oob_load_report", "true"))
        .is_ok());
    assert!(config
        .with_params(&params("oob_reporting_period_ms", "5000"))
        .is_ok());
    let err = config.with_params(&params("nonsense", "1")).unwrap_err();
    assert_eq!(err.policy, "weighted_round_robin");
    assert!(
        matches!(&err.kind, PolicyParamErrorKind::UnknownParameter { key, .. } if key == "nonsense"),
        "{err:?}"
    );
    assert!(err.to_string().contains("nonsense"), "{err}");
}

/// Sends each of `loads` as an out-of-band report, `rounds` times, `every` apart.
fn report_out_of_band(h: &mut Harness, loads: &[(u16, f64, f64)], rounds: usize, every: Duration) {
    send_reports(h, loads, rounds, every, |h, id, load| {
        h.lb.handle_load_report(id, load, h.now);
    });
}

#[test]
fn out_of_band_reports_set_the_weights_when_enabled_and_call_reports_do_not() {
    let config = WeightedRoundRobinConfig::default()
        .blackout_period(Duration::ZERO)
        .enable_oob_load_report(true);
    let mut h = ready(PolicyConfig::new(config), update(&[1, 2]), 12);
    // Reports with calls are ignored: still an even split.
    report(&mut h, &[(1, 100.0, 1.0), (2, 300.0, 1.0)], 3, ms(1000));
    assert_shares(&shares(&h, 8_000), &[(1, 1.0), (2, 1.0)], 0.01);
    report_out_of_band(&mut h, &[(1, 100.0, 1.0), (2, 300.0, 1.0)], 2, ms(1000));
    assert_shares(&shares(&h, 8_000), &[(1, 1.0), (2, 3.0)], 0.01);
}

#[test]
fn out_of_band_reports_are_ignored_unless_enabled() {
    let config = WeightedRoundRobinConfig::default().blackout_period(Duration::ZERO);
    let mut h = ready(PolicyConfig::new(config), update(&[1, 2]), 13);
    report_out_of_band(&mut h, &[(1, 100.0, 1.0), (2, 300.0, 1.0)], 3, ms(1000));
    assert_shares(&shares(&h, 8_000), &[(1, 1.0), (2, 1.0)], 0.01);
}
