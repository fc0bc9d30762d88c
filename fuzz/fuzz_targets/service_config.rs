//! Arbitrary bytes as service configs: never a panic, errors name their path, and a config that
//! parses prints back to JSON that parses to the same config
//! (croupier_fuzz_checks::check_service_config).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| croupier_fuzz_checks::check_service_config(data));
