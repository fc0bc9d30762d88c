//! Whole generated runs: a built-in policy, a seed and a sequence of [`Step`]s, checked after
//! every step and then for liveness (the channel still recovers).

use std::time::Duration;

use croupier::policy::{
    PickFirstConfig, PriorityConfig, RandomSubsettingConfig, WeightedRoundRobinConfig,
    WeightedTargetConfig,
};
use croupier::{
    ConnectionEvent, ConnectivityState, Endpoint, Pick, PolicyConfig, ResolverUpdate, Rng,
};

use crate::addr;
use crate::harness::Harness;
use crate::step::{tree_path, Step};

/// Runs `steps` against a fresh harness with `policy`, checking invariants after every step.
pub fn run(policy: PolicyConfig, seed: u64, steps: &[Step]) -> Harness {
    let mut harness = Harness::new(policy, seed);
    for step in steps {
        harness.apply(step);
    }
    harness
}

/// Every built-in policy, in the configurations fuzzing and random-sequence tests cover.
pub fn builtin_policies() -> Vec<PolicyConfig> {
    vec![
        PolicyConfig::pick_first(),
        PolicyConfig::new(PickFirstConfig::default().shuffle_address_list(true)),
        PolicyConfig::round_robin(),
        PolicyConfig::random(),
        PolicyConfig::least_request(),
        PolicyConfig::ring_hash(),
        PolicyConfig::outlier_detection(PolicyConfig::round_robin()),
        PolicyConfig::outlier_detection(PolicyConfig::pick_first()),
        PolicyConfig::weighted_round_robin(),
        PolicyConfig::new(
            WeightedRoundRobinConfig::default()
                .blackout_period(Duration::ZERO)
                .weight_update_period(Duration::from_millis(100)),
        ),
        PolicyConfig::p2c_ewma(),
        PolicyConfig::prequal(),
        PolicyConfig::outlier_detection(PolicyConfig::prequal()),
        PolicyConfig::new(
            PriorityConfig::new()
                .child("a0", PolicyConfig::round_robin())
                .child(
                    "a1",
                    PolicyConfig::new(
                        WeightedTargetConfig::new()
                            .target("b0", 1, PolicyConfig::pick_first())
                            .target("b1", 2, PolicyConfig::round_robin()),
                    ),
                ),
        ),
        PolicyConfig::new(
            WeightedTargetConfig::new()
                .target("a0", 1, PolicyConfig::round_robin())
                .target("a1", 3, PolicyConfig::least_request()),
        ),
        PolicyConfig::new(RandomSubsettingConfig::new(2, PolicyConfig::round_robin())),
    ]
}

/// A whole generated run: which built-in policy, the balancer's seed, and the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Scenario {
    /// Index into [`builtin_policies`] (modulo its length).
    pub policy: u8,
    /// The balancer's seed.
    pub seed: u64,
    /// The inputs, in order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Runs the scenario, checking the invariants after every step (panics on a violation), then
    /// checks that the balancer still works: with every attempt succeeding, it becomes READY.
    pub fn run(&self) -> Harness {
        let policies = builtin_policies();
        let policy = policies[usize::from(self.policy) % policies.len()].clone();
        let mut harness = Harness::new(policy, self.seed);
        // The probes are calls like the steps': a policy that counts calls in flight
        // (least_request, p2c_ewma) must see them end.
        harness.report_probes = true;
        for step in &self.steps {
            harness.apply(step);
        }
        harness.recover();
        harness
    }
}

impl Harness {
    /// Liveness: after whatever came before, a good update and connections that succeed bring
    /// the channel to READY within a bounded number of rounds.
    pub fn recover(&mut self) {
        let ports = [40_001, 40_002];
        let endpoints = ports.map(|port| Endpoint::new(addr(port)).hierarchy(tree_path(port)));
        self.resolve(ResolverUpdate::new(endpoints));
        for _ in 0..64 {
            if self.state() == ConnectivityState::Ready {
                break;
            }
            self.exit_idle();
            let in_flight = self.attempts_in_flight();
            for connection in in_flight {
                self.report(connection, ConnectionEvent::Connected);
            }
            self.advance(Duration::from_secs(5));
        }
        assert_eq!(
            self.state(),
            ConnectivityState::Ready,
            "the channel never recovered"
        );
        assert!(
            matches!(self.pick(), Pick::Ready(_)),
            "READY but the pick fails"
        );
    }
}

impl Scenario {
    /// A random scenario of `len` steps drawn from `rng`: mostly small time steps and connection
    /// events, with updates that overlap, repeat, contain duplicates, or are empty.
    pub fn random(rng: &mut Rng, len: usize) -> Scenario {
        let policy = rng.below(256) as u8;
        let seed = rng.next_u64();
        let steps = (0..len).map(|_| Step::random(rng)).collect();
        Scenario {
            policy,
            seed,
            steps,
        }
    }
}
