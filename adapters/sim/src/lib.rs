//! # croupier-sim
//!
//! Runs croupier's real policies against a simulated fleet in virtual time: a third adapter, like
//! the tokio one, except that the network, the backends and the clock are simulated. Because the
//! core is sans-IO and deterministic, a run of a minute of traffic takes a fraction of a second,
//! and the same seed gives the same figures, bit for bit.
//!
//! **Model.** Clients issue calls as Poisson processes; each client owns a
//! [`croupier::Balancer`] and feeds it what a real adapter would: resolver updates, connection
//! outcomes, call outcomes with their latency, and timeouts. Backends are FIFO servers with a
//! number of slots and exponential or lognormal service times; they can slow down, crash, come
//! back, or be added and removed through the resolver. Reference routers with full information
//! (join-shortest-queue, shortest-expected-delay) bypass the balancer, for comparison.
//!
//! ```
//! use std::time::Duration;
//! use croupier_sim::{simulate, Router, Scenario, ScenarioName};
//! use croupier::PolicyConfig;
//!
//! let mut scenario = Scenario::builtin(ScenarioName::S2); // backend 0 five times slower
//! scenario.duration = Duration::from_secs(3); // a short run, for the example
//! let round_robin = simulate(&scenario, &Router::policy("round_robin", PolicyConfig::round_robin()), 1);
//! let least_request = simulate(&scenario, &Router::policy("least_request", PolicyConfig::least_request()), 1);
//!
//! // round_robin sends backend 0 its tenth of the calls; least_request sees its calls pile up.
//! assert!(round_robin.shares()[0] > 0.09);
//! assert!(least_request.shares()[0] < round_robin.shares()[0]);
//! assert_eq!(least_request.failed, 0);
//! // Same seed, same run.
//! let again = simulate(&scenario, &Router::policy("least_request", PolicyConfig::least_request()), 1);
//! assert_eq!(again.latencies(), least_request.latencies());
//! ```
//!
//! [`compare`] runs routers (all of them: [`builtin_routers`]) over several seeds and gives the
//! medians, printed as a Markdown table by its `Display`; [`draw`] draws each router's
//! per-backend request rate and p99 latency over time as an SVG.
//! `cargo run --release -p croupier-sim --example simulate -- S2` does both.
//!
//! **Retries and hedging.** A scenario with a [`RetrySpec`] runs every call under a gRFC A6
//! policy, decided by the core's [`croupier::retry::RetryCall`]: each attempt is picked (naming
//! the subchannels already tried), served and reported to the balancer on its own, losing hedges
//! are cancelled (and their backends stop them, or finish them: [`Cancellation`]), backoffs run
//! in virtual time, and each client's calls share one throttle. A [`RetryStudy`] runs routers
//! without and with specs and prints what each costs in attempts and server work;
//! `cargo run --release -p croupier-sim --example retries` runs the built-in ones.

mod compare;
mod compare_retry;
mod dist;
mod localities;
mod plot;
mod record;
mod retry;
mod router;
mod scenario;
mod sim;

pub use compare::{compare, summarize, Comparison, Row, DEFAULT_SEEDS};
pub use compare_retry::{hedging, retries, RetryComparison, RetryStudy, HEDGING_DELAY};
pub use dist::ServiceTime;
pub use localities::routers_for;
pub use plot::{draw, PlotError};
pub use record::{Recovery, RunResult, Timeline};
pub use retry::{Cancellation, RetrySpec};
pub use router::{builtin_routers, router_named, Router};
pub use scenario::{BackendSpec, ConnectSpec, FleetEvent, Scenario, ScenarioName, UnknownScenario};
pub use sim::{backend_address, simulate, LoadReport, BASE_PORT};
