//! Arbitrary header names for ring_hash's config and arbitrary values of the hashed header: never
//! a panic, picks name READY subchannels, and equal values pick the same one
//! (croupier_fuzz_checks::check_request_hash).
#![no_main]

use croupier_fuzz_checks::{check_request_hash, request_hash_fixture};
use croupier_testing::Harness;
use libfuzzer_sys::fuzz_target;

thread_local! {
    // Built once: eight READY endpoints behind a ring_hash picker hashing on `x-user`.
    static FIXTURE: Harness = request_hash_fixture();
}

fuzz_target!(|input: (String, Vec<Vec<u8>>)| {
    FIXTURE.with(|fixture| check_request_hash(fixture, &input.0, &input.1));
});
