//! Arbitrary policy choices from a resolver (name and parameters): never a panic, and the
//! balancer keeps its invariants (croupier_fuzz_checks::check_policy_choice).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (String, Vec<(String, String)>)| {
    croupier_fuzz_checks::check_policy_choice(&input.0, &input.1);
});
