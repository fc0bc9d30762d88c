//! S6: two localities, and the tree policies that know them.
//!
//! Backends 0-4 are the clients' own locality (`zone-a`), backends 5-9 another one (`zone-b`),
//! 5 ms farther each way. The resolver places each backend under its zone (its hierarchy path
//! is `[zone]`). The load is 70% of one zone's capacity. From 10 s the near zone's backends
//! crash one every 2 s, until none is left at 18 s; from 30 s they restart one every 2 s.
//!
//! The routers compared: `priority` (zone-a, then zone-b, round_robin in each), which keeps
//! every call near while zone-a can take any and fails over only when it cannot;
//! `weighted_target`, which sends a fixed share to each zone that has a READY backend; flat
//! round_robin and least_request, which ignore the zones; and the references.

use std::time::Duration;

use croupier::policy::{PriorityConfig, WeightedTargetConfig};
use croupier::PolicyConfig;

use crate::router::{builtin_routers, Router};
use crate::scenario::{FleetEvent, Scenario, ScenarioName};

/// The zones, near first.
const ZONES: [&str; 2] = ["zone-a", "zone-b"];
/// Backends per zone.
const PER_ZONE: usize = 5;

/// The S6 scenario.
pub(crate) fn scenario() -> Scenario {
    let ms = Duration::from_millis;
    let secs = Duration::from_secs;
    let mut s = Scenario::uniform(2 * PER_ZONE, 4, ms(10), 0.35, secs(60));
    for (index, backend) in s.backends.iter_mut().enumerate() {
        let zone = index / PER_ZONE;
        backend.hierarchy = vec![ZONES[zone].to_owned()];
        if zone == 1 {
            backend.link_delay = ms(5);
        }
    }
    let mut events = Vec::new();
    for backend in 0..PER_ZONE {
        let step = secs(2 * backend as u64);
        events.push((secs(10) + step, FleetEvent::Crash { backend }));
        events.push((secs(30) + step, FleetEvent::Restart { backend }));
    }
    events.sort_by_key(|(at, _)| *at);
    s.events = events;
    s.description = "two zones of 5 backends x 4 slots (zone-b 5 ms farther), load 70% of one \
                     zone; zone-a's backends crash one every 2 s from 10 s and restart one \
                     every 2 s from 30 s"
        .to_owned();
    s
}

/// The routers S6 compares (see the [module docs](self)).
pub(crate) fn locality_routers() -> Vec<Router> {
    let per_zone = |policy: PolicyConfig| {
        ZONES.iter().fold(PriorityConfig::new(), |config, zone| {
            config.child(zone, policy.clone())
        })
    };
    let weighted = ZONES
        .iter()
        .zip([4, 1])
        .fold(WeightedTargetConfig::new(), |config, (zone, weight)| {
            config.target(zone, weight, PolicyConfig::round_robin())
        });
    vec![
        Router::policy(
            "priority(zone-a, zone-b; round_robin)",
            PolicyConfig::new(per_zone(PolicyConfig::round_robin())),
        ),
        Router::policy(
            "priority(zone-a, zone-b; least_request)",
            PolicyConfig::new(per_zone(PolicyConfig::least_request())),
        ),
        Router::policy(
            "weighted_target(zone-a 4, zone-b 1; round_robin)",
            PolicyConfig::new(weighted),
        ),
        Router::policy("round_robin", PolicyConfig::round_robin()),
        Router::policy("least_request", PolicyConfig::least_request()),
        Router::JoinShortestQueue,
        Router::ShortestExpectedDelay,
    ]
}

/// The routers a built-in scenario is compared with: [`builtin_routers`], except for S6, whose
/// backends sit in two localities and which compares the policies that know localities with
/// some that do not.
pub fn routers_for(name: ScenarioName) -> Vec<Router> {
    match name {
        ScenarioName::S6 => locality_routers(),
        _ => builtin_routers(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s6_places_each_backend_in_its_zone_and_fails_the_near_one_backend_by_backend() {
        let s = Scenario::builtin(ScenarioName::S6);
        assert_eq!(s.backends[0].hierarchy, ["zone-a"]);
        assert_eq!(s.backends[9].hierarchy, ["zone-b"]);
        let crashes: Vec<usize> = s
            .events
            .iter()
            .filter_map(|(_, event)| match event {
                FleetEvent::Crash { backend } => Some(*backend),
                _ => None,
            })
            .collect();
        assert_eq!(crashes, [0, 1, 2, 3, 4]);
        assert!((s.rate - 1400.0).abs() < 1e-6, "{}", s.rate);
    }
}
