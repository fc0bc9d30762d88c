//! Arbitrary input sequences through every built-in policy, with the core's invariants checked
//! after every step (croupier_testing), then a liveness check.
#![no_main]

use croupier_testing::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|scenario: Scenario| {
    scenario.run();
});
