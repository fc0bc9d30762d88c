//! S6: priority keeps the calls in the near zone while it can take them, fails over to the far
//! one when it cannot, and comes back; weighted_target keeps each zone's share.

use croupier_sim::{routers_for, simulate, RunResult, Scenario, ScenarioName};

/// Calls per second to zone-a (backends 0-4) and zone-b (5-9) in bucket `second`.
fn zones(run: &RunResult, second: usize) -> (f64, f64) {
    let rate = &run.timeline.rate;
    let near: f64 = (0..5).map(|b| rate[b][second]).sum();
    let far: f64 = (5..10).map(|b| rate[b][second]).sum();
    (near, far)
}

fn run(label_start: &str) -> RunResult {
    let scenario = Scenario::builtin(ScenarioName::S6);
    let routers = routers_for(ScenarioName::S6);
    let router = routers
        .iter()
        .find(|r| r.label().starts_with(label_start))
        .expect("a router of that name");
    simulate(&scenario, router, 1)
}

/// The near zone's share of the calls over `seconds`.
fn near_share(run: &RunResult, seconds: std::ops::Range<usize>) -> f64 {
    let (near, far) = seconds
        .map(|s| zones(run, s))
        .fold((0.0, 0.0), |(n, f), (a, b)| (n + a, f + b));
    near / (near + far)
}

#[test]
fn priority_stays_near_fails_over_when_the_zone_is_gone_and_comes_back() {
    let run = run("priority(zone-a, zone-b; round_robin)");
    // Every call near while zone-a has a backend, even as it loses four of five.
    assert_eq!(near_share(&run, 2..18), 1.0);
    // zone-a's last backend crashed at 18 s: every call far, at the offered rate.
    assert_eq!(near_share(&run, 19..30), 0.0);
    for second in 19..30 {
        let (_, far) = zones(&run, second);
        assert!(far > 1_200.0, "{far} calls/s at {second} s");
    }
    // Restarted from 30 s, zone-a takes the calls back.
    assert_eq!(near_share(&run, 45..60), 1.0);
}

#[test]
fn weighted_target_keeps_each_zones_share_while_both_are_up() {
    let run = run("weighted_target");
    let share = near_share(&run, 2..10);
    assert!((0.77..0.83).contains(&share), "{share}");
    assert_eq!(near_share(&run, 19..30), 0.0);
    let share = near_share(&run, 45..60);
    assert!((0.77..0.83).contains(&share), "{share}");
}

#[test]
fn a_flat_policy_ignores_the_zones() {
    let run = run("round_robin");
    let share = near_share(&run, 2..10);
    assert!((0.48..0.52).contains(&share), "{share}");
}
