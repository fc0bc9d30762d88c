//! The checks croupier's fuzz targets make (`fuzz/fuzz_targets/`), one per input surface, as
//! ordinary functions: the targets call them, and the tests here replay every checked-in corpus
//! file through them on stable Rust, so whatever a fuzzer once found stays fixed.
//!
//! The checks that random-sequence tests share with fuzzing (the balancer's inputs, one call's
//! retries) live in `croupier-testing`; these are the ones only fuzzing needs. Each panics with a
//! message saying what broke.

mod policy_choice;
mod request_hash;
mod service_config;
mod target;

pub use policy_choice::check_policy_choice;
pub use request_hash::{check_request_hash, request_hash_fixture};
pub use service_config::check_service_config;
pub use target::check_target;
