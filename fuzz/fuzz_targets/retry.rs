//! Arbitrary policies, throttles, buffer limits and attempt events through one call's retry and
//! hedging machine, with its invariants checked after every step (croupier_testing::retry::RetryScenario),
//! then a liveness check: ending every attempt left finishes the call.
#![no_main]

use croupier_testing::retry::RetryScenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|scenario: RetryScenario| {
    scenario.run(std::time::Instant::now());
});
