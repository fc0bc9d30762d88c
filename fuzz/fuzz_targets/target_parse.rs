//! Arbitrary bytes as targets: never a panic, and anything that parses prints back to an
//! equivalent target (croupier::testing::check_target).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| croupier::testing::check_target(data));
