//! The `policy_params` fuzz target's check.

use croupier::{PolicyChoice, PolicyConfig};
use croupier_testing::{update, Harness};

/// The check of the `policy_params` fuzz target: a resolver's policy choice, whatever its name
/// and parameters, either switches the policy or is reported as a resolver error; the balancer
/// keeps its invariants and still recovers.
pub fn check_policy_choice(name: &str, params: &[(String, String)]) {
    let mut choice = PolicyChoice::new(name);
    for (key, value) in params.iter().take(8) {
        choice = choice.param(key.clone(), value.clone());
    }
    let mut harness = Harness::new(PolicyConfig::pick_first(), 1);
    harness.resolve(update(&[1, 2]).with_policy(choice));
    harness.recover();
}
