//! random_subsetting: each client balances over a subset of at most `subset_size` endpoints,
//! chosen at random per client, so that a large fleet behind many clients gets each client's
//! connections spread evenly without every client connecting to every backend (gRFC A68).
//!
//! The subset is a rendezvous choice: each endpoint's address list is hashed (XXH64) with the
//! client's seed, and the `subset_size` endpoints with the lowest hashes are kept, in the
//! resolver's order, for the child policy. The seed is drawn from the balancer's generator at
//! the first resolver update, so it differs between clients seeded differently and stays fixed
//! for the policy's life: an update that adds or removes a few endpoints changes the subset by
//! about as many (an endpoint leaves only when it is removed or a newcomer hashes below it).
//! Clients with independent seeds pick independent subsets, so across many clients each backend
//! is chosen about equally often. A list no longer than `subset_size` goes to the child whole.

use crate::address::Endpoint;
use crate::call::{CallOutcome, LoadReport};
use crate::policy::{
    Controller, Policy, PolicyBuilder, PolicyConfig, SlotController, SubchannelUpdate, TimerToken,
};
use crate::probe::ProbeResult;
use crate::resolver::ResolverError;
use crate::subchannel::SubchannelId;

/// Settings of `random_subsetting`; see the [policy docs](self).
///
/// ```
/// use croupier::policy::RandomSubsettingConfig;
/// use croupier::PolicyConfig;
///
/// // Each client connects to 10 of the backends, round robin over them.
/// let config = RandomSubsettingConfig::new(10, PolicyConfig::round_robin());
/// assert_eq!(PolicyConfig::new(config).name(), "random_subsetting");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RandomSubsettingConfig {
    /// How many endpoints the child gets at most (at least 1).
    pub subset_size: u32,
    /// The policy that balances over the subset.
    pub child_policy: PolicyConfig,
}

impl RandomSubsettingConfig {
    /// Subsets of `subset_size` endpoints (0 is taken as 1) for `child_policy`.
    pub fn new(subset_size: u32, child_policy: PolicyConfig) -> Self {
        RandomSubsettingConfig {
            subset_size: subset_size.max(1),
            child_policy,
        }
    }
}

impl PolicyBuilder for RandomSubsettingConfig {
    fn name(&self) -> &str {
        "random_subsetting"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(RandomSubsetting {
            subset_size: self.subset_size.max(1) as usize,
            child: self.child_policy.build(),
            seed: None,
        })
    }
}

/// The child's slot in its timer tokens.
const CHILD_SLOT: u32 = 0;

/// The random_subsetting policy.
#[derive(Debug)]
struct RandomSubsetting {
    subset_size: usize,
    child: Box<dyn Policy>,
    /// This client's seed, drawn at the first update.
    seed: Option<u64>,
}

/// The endpoints of `endpoints` in the subset of at most `size` that `seed` chooses, in their
/// order.
fn subset(endpoints: &[Endpoint], size: usize, seed: u64) -> Vec<Endpoint> {
    if endpoints.len() <= size {
        return endpoints.to_vec();
    }
    let mut ranked: Vec<(u64, usize)> = endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| {
            let key = endpoint.to_string();
            (xxhash_rust::xxh64::xxh64(key.as_bytes(), seed), index)
        })
        .collect();
    ranked.select_nth_unstable(size - 1);
    let mut kept: Vec<usize> = ranked[..size].iter().map(|(_, index)| *index).collect();
    kept.sort_unstable();
    kept.into_iter()
        .map(|index| endpoints[index].clone())
        .collect()
}

impl Policy for RandomSubsetting {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        let seed = *self.seed.get_or_insert_with(|| ctl.rng().next_u64());
        let chosen = subset(endpoints, self.subset_size, seed);
        self.child
            .resolver_update(&chosen, &mut SlotController::new(ctl, CHILD_SLOT));
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        self.child
            .resolver_error(error, &mut SlotController::new(ctl, CHILD_SLOT));
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        let mut child_ctl = SlotController::new(ctl, CHILD_SLOT);
        self.child
            .subchannel_update(subchannel, update, &mut child_ctl);
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        self.child
            .exit_idle(&mut SlotController::new(ctl, CHILD_SLOT));
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        if let Some((CHILD_SLOT, inner)) = token.split() {
            self.child
                .timer(inner, &mut SlotController::new(ctl, CHILD_SLOT));
        }
    }

    fn wants_call_outcomes(&self) -> bool {
        self.child.wants_call_outcomes()
    }

    fn describe_subchannel(
        &self,
        subchannel: SubchannelId,
        details: &mut crate::policy::PolicyDetails,
    ) {
        self.child.describe_subchannel(subchannel, details);
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        let mut child_ctl = SlotController::new(ctl, CHILD_SLOT);
        self.child
            .call_finished(subchannel, outcome, &mut child_ctl);
    }

    fn load_report(
        &mut self,
        subchannel: SubchannelId,
        report: &LoadReport,
        ctl: &mut dyn Controller,
    ) {
        let mut child_ctl = SlotController::new(ctl, CHILD_SLOT);
        self.child.load_report(subchannel, report, &mut child_ctl);
    }

    fn probe_result(
        &mut self,
        subchannel: SubchannelId,
        result: &ProbeResult,
        ctl: &mut dyn Controller,
    ) {
        let mut child_ctl = SlotController::new(ctl, CHILD_SLOT);
        self.child.probe_result(subchannel, result, &mut child_ctl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;

    fn fleet(range: std::ops::Range<u32>) -> Vec<Endpoint> {
        range
            .map(|i| Endpoint::new(Address::Opaque(format!("backend-{i}").into())))
            .collect()
    }

    fn names(endpoints: &[Endpoint]) -> std::collections::BTreeSet<String> {
        endpoints.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_subset_has_the_configured_size_in_the_resolvers_order() {
        let all = fleet(0..100);
        let chosen = subset(&all, 10, 42);
        assert_eq!(chosen.len(), 10);
        let positions: Vec<usize> = chosen
            .iter()
            .map(|e| all.iter().position(|a| a == e).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        assert_eq!(subset(&all[..7], 10, 42).len(), 7);
        assert_ne!(names(&chosen), names(&subset(&all, 10, 43)));
    }

    #[test]
    fn a_small_change_keeps_most_of_the_subset() {
        let before = subset(&fleet(0..100), 10, 7);
        // Five backends leave, five others join.
        let after = subset(&fleet(5..105), 10, 7);
        let kept = names(&before).intersection(&names(&after)).count();
        let removed = names(&before)
            .iter()
            .filter(|n| {
                let i: u32 = n.trim_start_matches("backend-").parse().unwrap();
                i < 5
            })
            .count();
        assert!(kept + removed >= 9, "kept {kept} of 10 ({removed} removed)");
    }

    #[test]
    fn many_clients_spread_over_the_whole_fleet() {
        let all = fleet(0..50);
        let mut counts = std::collections::BTreeMap::<String, u32>::new();
        for client in 0..1_000u64 {
            for endpoint in subset(&all, 5, client.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
                *counts.entry(endpoint.to_string()).or_default() += 1;
            }
        }
        // 5,000 slots over 50 backends: about 100 each.
        assert_eq!(counts.len(), 50);
        for (name, count) in &counts {
            assert!((60..=140).contains(count), "{name} chosen {count} times");
        }
    }
}
