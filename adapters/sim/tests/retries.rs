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
