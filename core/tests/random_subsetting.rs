//! random_subsetting (gRFC A68): the child sees at most `subset_size` endpoints, the same ones
//! for the same seed, and an update that changes little keeps most of them.

mod support;

use std::collections::BTreeSet;

use croupier::policy::RandomSubsettingConfig;
use croupier::{Address, PolicyConfig};
use support::*;

fn subsetting(seed: u64, ports: &[u16]) -> (Harness, BTreeSet<Address>) {
    let config = RandomSubsettingConfig::new(5, PolicyConfig::round_robin());
    let mut h = Harness::new(PolicyConfig::new(config), seed);
    let seen = h.resolve(update(ports));
    let chosen: BTreeSet<Address> = connects(&seen).into_iter().collect();
    (h, chosen)
}

#[test]
fn the_child_connects_to_subset_size_endpoints_chosen_by_the_seed() {
    let ports: Vec<u16> = (1..=40).collect();
    let (_, first) = subsetting(1, &ports);
    assert_eq!(first.len(), 5, "{first:?}");
    let (_, again) = subsetting(1, &ports);
    assert_eq!(first, again, "the same seed chose another subset");
    let (_, other) = subsetting(2, &ports);
    assert_eq!(other.len(), 5);
    assert_ne!(first, other, "another client chose the same subset");
}

#[test]
fn an_update_that_changes_little_keeps_most_of_the_subset() {
    let ports: Vec<u16> = (1..=40).collect();
    let (mut h, before) = subsetting(9, &ports);
    for address in &before {
        h.connected(address);
    }
    // Two backends outside the subset leave, two new ones join.
    let outside: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|&p| !before.contains(&addr(p)))
        .take(2)
        .collect();
    let next: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| !outside.contains(p))
        .chain([41, 42])
        .collect();
    let seen = h.resolve(update(&next));
    let shut = seen
        .iter()
        .filter(|s| matches!(s, Seen::Shutdown(_)))
        .count();
    assert!(shut <= 2, "{shut} of 5 connections dropped: {seen:?}");
    let after: BTreeSet<Address> = h.lb.subchannels().into_iter().map(|s| s.address).collect();
    assert_eq!(after.len(), 5);
    assert!(before.intersection(&after).count() >= 3);
}
