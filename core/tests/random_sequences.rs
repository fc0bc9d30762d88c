//! Thousands of random input sequences (fixed seeds) through every built-in policy, with the
//! invariants checked after every step: the same checker the fuzz targets use.

use croupier::Rng;
use croupier_testing::{Scenario, Seen};

#[test]
fn random_sequences_keep_every_invariant() {
    let mut rng = Rng::new(0x5eed_cafe);
    for _ in 0..3_000 {
        let len = 20 + rng.index(80);
        Scenario::random(&mut rng, len).run();
    }
}

#[test]
fn the_same_scenario_gives_the_same_actions() {
    let mut rng = Rng::new(99);
    for _ in 0..200 {
        let scenario = Scenario::random(&mut rng, 60);
        let first: Vec<Seen> = scenario.run().seen;
        let second: Vec<Seen> = scenario.run().seen;
        assert_eq!(first, second);
    }
}
