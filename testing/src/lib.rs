//! # croupier-testing
//!
//! A simulated adapter for [croupier]'s sans-IO core, and the core's invariant
//! checker, for the tests of built-in policies and of your own.
//!
//! [`Harness`] drives a [`Balancer`](croupier::Balancer) in virtual time the way a real adapter
//! would: it carries out every action, tracks the attempts and connections it holds, and after
//! every input checks the invariants the core promises ([`invariants`]). A broken invariant
//! panics with a message saying which, so test runners and fuzzers both catch it.
//!
//! A test feeds inputs one at a time ([`Harness::resolve`], [`Harness::connected`],
//! [`Harness::advance`], ...) and asserts on what the adapter saw ([`Seen`]); or it scripts how
//! attempts to connect end ([`Harness::script`]) and lets [`Harness::drive`] run the adapter
//! until nothing is left to do, which reports a policy that never settles as a
//! [`DriveError::Livelock`] instead of looping forever.
//!
//! ```
//! use croupier::{ConnectivityState, PolicyConfig};
//! use croupier_testing::{addr, update, ConnectOutcome, Harness};
//!
//! let mut h = Harness::new(PolicyConfig::round_robin(), 7);
//! h.script(addr(2), ConnectOutcome::Refuse);
//! h.script_unlisted(ConnectOutcome::Connect);
//! h.resolve(update(&[1, 2]));
//! h.drive().expect("round_robin settles");
//! assert_eq!(h.state(), ConnectivityState::Ready);
//! assert_eq!(h.pick_address(), Some(addr(1)));
//! ```
//!
//! [`Step`] and [`Scenario`] are the alphabet of generated input sequences (seeded random ones
//! in tests; with feature `arbitrary`, a fuzzer's); [`retry`] does the same for one call's retry
//! machine; [`scale`] builds balancers with many endpoints for tests and benchmarks of work and
//! memory at scale.

pub mod drive;
pub mod harness;
pub mod invariants;
pub mod retry;
pub mod scale;
pub mod scenario;
pub mod step;

use std::net::SocketAddr;
use std::time::Duration;

use croupier::{Address, Endpoint, ResolverUpdate};

pub use drive::{ConnectOutcome, DriveError, DEFAULT_DRIVE_LIMIT};
pub use harness::{Harness, Seen};
pub use scenario::{builtin_policies, run, Scenario};
pub use step::{tree_path, GenEndpoint, Step};

/// `127.0.0.1:<port>`.
pub fn addr(port: u16) -> Address {
    Address::Socket(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// An update with one endpoint per port on 127.0.0.1.
pub fn update(ports: &[u16]) -> ResolverUpdate {
    ResolverUpdate::new(ports.iter().map(|&p| Endpoint::new(addr(p))))
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
