//! Arbitrary bytes as targets: never a panic, and anything that parses prints back to an
//! equivalent target (croupier_fuzz_checks::check_target).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| croupier_fuzz_checks::check_target(data));
