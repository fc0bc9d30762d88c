//! # croupier
//!
//! Client-side load balancing for RPC clients, built the gRPC way (resolver -> balancer ->
//! subchannels -> picker), as a **sans-IO** state machine.
//!
//! This crate does no I/O at all: no sockets, no clock reads, no threads, no async, no global
//! state. Resolver results, connection events and the current time go in; connect, disconnect and
//! re-resolve requests, timer deadlines and pickers come out. Every random choice comes from a
//! seed, so the same inputs at the same instants give the same outputs, byte for byte. That makes
//! the core exactly testable, fuzzable, and runnable in simulated time; runtime adapters
//! (`croupier-tokio`, ...) perform what it asks on real sockets.
//!
//! ## The run loop
//!
//! An adapter drives a [`Balancer`] like this:
//!
//! 1. Feed each input with the time it happened: [`Balancer::handle_resolver_update`],
//!    [`Balancer::handle_resolver_error`], [`Balancer::handle_connection_event`],
//!    [`Balancer::handle_call_outcome`], [`Balancer::exit_idle`].
//! 2. Drain [`Balancer::poll_action`] until `None`, carrying out each [`Action`]: open or drop a
//!    connection, ask the resolver again, publish a new picker. An adapter may feed every input
//!    already waiting before it drains (cheaper in a burst): a newer picker or state change takes
//!    the place of one not yet polled, so the queue stays bounded.
//!    With notices on ([`BalancerConfig::notices`]), drain [`Balancer::poll_notice`] too: typed
//!    [`Notice`]s of what happened (a subchannel's state change and why, a failed attempt, a
//!    resolver result applied or refused, a policy switch, an ejection, new weights), to log or
//!    count. [`Balancer::snapshot`] shows the channel, the resolver's last result and every
//!    subchannel as they stand.
//! 3. Ask [`Balancer::poll_timeout`] when to wake up, after every input (each may move it); at
//!    that instant call [`Balancer::handle_timeout`], then drain actions again.
//! 4. Calls pick from the newest [`Picker`] (`Send + Sync`, shared by `Arc`) without touching the
//!    balancer: [`Pick::Ready`] names the subchannel to use, [`Pick::Queue`] means wait for the next
//!    picker (and call [`Balancer::exit_idle`]: an IDLE channel connects only when asked),
//!    [`Pick::Fail`] and [`Pick::Drop`] carry the error.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use croupier::{
//!     Action, Balancer, BalancerConfig, ConnectionEvent, ConnectivityState, Endpoint, Pick,
//!     PickRequest, PolicyConfig, ResolverUpdate,
//! };
//!
//! let start = Instant::now(); // an adapter reads the clock; the core never does
//! let config = BalancerConfig::default().policy(PolicyConfig::round_robin());
//! let mut balancer = Balancer::new(config, 42, start);
//!
//! // 1. The resolver found two backends.
//! let backends = ["127.0.0.1:50051", "127.0.0.1:50052"];
//! let update = ResolverUpdate::new(backends.map(|a| Endpoint::new(a.parse::<std::net::SocketAddr>().unwrap())));
//! balancer.handle_resolver_update(update, start);
//!
//! // 2. It asks for a connection to each; pretend both succeed 5 ms later.
//! let mut attempts = Vec::new();
//! while let Some(action) = balancer.poll_action() {
//!     if let Action::Connect { connection, .. } = action {
//!         attempts.push(connection);
//!     }
//! }
//! assert_eq!(attempts.len(), 2);
//! let later = start + Duration::from_millis(5);
//! for connection in attempts {
//!     balancer.handle_connection_event(connection, ConnectionEvent::Connected, later);
//! }
//! while let Some(_action) = balancer.poll_action() {}
//! assert_eq!(balancer.state(), ConnectivityState::Ready);
//!
//! // 3. Picks alternate between the two READY subchannels.
//! let picker = balancer.picker();
//! let first = picker.pick(&PickRequest::new());
//! let second = picker.pick(&PickRequest::new());
//! assert!(matches!(first, Pick::Ready(_)));
//! assert_ne!(first, second);
//!
//! // 4. Time is an input too: nothing is due yet but the next resolver refresh.
//! assert!(balancer.poll_timeout().is_some());
//! ```
//!
//! ## Service configs
//!
//! With the default feature `service-config`, a channel can be configured the way gRPC's are,
//! with a JSON service config (grpc-go's `WithDefaultServiceConfig`); [`service_config`] parses
//! it into typed values, the chosen policy among them:
//!
//! ```
//! # #[cfg(feature = "service-config")]
//! # fn main() -> Result<(), croupier::ServiceConfigError> {
//! use croupier::{Balancer, BalancerConfig, ServiceConfig};
//!
//! let config: ServiceConfig = r#"{
//!     "loadBalancingConfig": [{"round_robin": {}}],
//!     "methodConfig": [{"name": [{"service": "echo.Echo"}], "timeout": "2s"}]
//! }"#.parse()?;
//! // The channel's default; a resolver's config replaces it (gRFC A21).
//! let config = BalancerConfig::default().default_service_config(config);
//! let balancer = Balancer::new(config, 42, std::time::Instant::now());
//! let methods = &balancer.service_config().methods;
//! assert_eq!(
//!     methods.for_path("/echo.Echo/UnaryEcho").and_then(|m| m.timeout),
//!     Some(std::time::Duration::from_secs(2)),
//! );
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "service-config"))]
//! # fn main() {}
//! ```
//!
//! ## Layers
//!
//! From the bottom up, each module depending only on those before it: [`target`] (parsing
//! `scheme://authority/endpoint`), addresses and endpoints, the seeded generator, connection
//! backoff, resolver results, subchannels, pickers, [`policy`] (the [`Policy`] trait and the
//! built-in policies), and the [`Balancer`] on top. Beside them, [`retry`] decides each call's
//! retries and hedges (gRFC A6) with a machine of its own per call.
//!
//! ## Glossary
//!
//! The words are gRPC's; two of them name a type one level away from grpc-go's type of the same
//! name, so they are worth pinning down.
//!
//! - **Target**: the name a channel is made for, `scheme://authority/endpoint` ([`Target`]); its
//!   scheme chooses the resolver.
//! - **Resolver**: turns a target into endpoints. It runs in the adapter (the core has no I/O) and
//!   hands the balancer [`ResolverUpdate`]s, which may carry a service config (feature
//!   `service-config`) or a [`PolicyChoice`], or [`ResolverError`]s.
//! - **Address** and **Endpoint**: an [`Address`] is one place to connect to (a socket address, a
//!   Unix path); an [`Endpoint`] is one backend, reachable at one or more addresses (say its IPv4
//!   and IPv6 ones), with [`Attributes`] such as a weight. Resolvers list endpoints; policies
//!   balance over endpoints and connect to addresses.
//! - **Subchannel**: one logical connection to one address, named by a [`SubchannelId`] that
//!   stays valid until the policy removes it; the balancer asks the adapter to open and drop its
//!   actual connections ([`ConnectionId`]) and reconnects it with backoff.
//! - **Connectivity state**: IDLE, CONNECTING, READY, TRANSIENT_FAILURE or SHUTDOWN
//!   ([`ConnectivityState`]), of a subchannel and, as its policy sums them up, of the channel.
//! - **[`Balancer`]**: the channel side of load balancing: what grpc-go's `ClientConn` and its
//!   balancer wrapper do. It owns the subchannels, the timers and the current policy, chooses
//!   the service config by gRFC A21's rules, switches policy gracefully when the config names
//!   another, and emits [`Action`]s for the adapter.
//! - **[`Policy`]**: a load-balancing policy: what grpc-go calls a `Balancer` (pick_first,
//!   round_robin, ...). It decides which subchannels exist and which are used, and publishes
//!   pickers. [`PolicyConfig`] is a policy with its settings (grpc-go's `Builder` plus parsed
//!   config).
//! - **[`Controller`]**: the balancer as a policy sees it (grpc-go's `balancer.ClientConn`):
//!   create, connect and remove subchannels, set timers, publish a picker, ask to re-resolve.
//! - **[`EndpointPolicy`](policy::endpoints::EndpointPolicy)** and
//!   **[`Spread`](policy::endpoints::Spread)**: the layer under every policy that connects each
//!   endpoint (grpc-go's `endpointsharding`), and the one thing such a policy adds to it: how the
//!   READY endpoints share the calls.
//! - **[`Picker`]**: the policy's immutable snapshot for calls; each call's pick ([`Pick`])
//!   names a READY subchannel, or says to queue, fail or drop the call.
//!
//! ## Features
//!
//! - `service-config` (on by default): [`service_config`], gRPC's JSON service config parsed
//!   into typed values (the policy, per-method settings, retry throttling), on `serde_json`.
//!
//! ## Testing a policy
//!
//! The crate `croupier-testing` is a simulated adapter: it drives a [`Balancer`] in virtual
//! time, carries out its actions, ends connection attempts as a test scripts, and checks the
//! core's invariants after every input. The core's own tests and fuzz targets use it; so can the
//! tests of a policy of your own.
//!
//! ## Where croupier differs from gRPC on purpose
//!
//! - A jittered backoff wait never exceeds the configured maximum (gRPC allows 1.2 x the max).
//! - Besides re-resolving on request, the balancer asks the resolver again periodically (30 s,
//!   jittered) so scale-ups are found; see [`ResolutionConfig`].
//! - A resolver's [`PolicyChoice`] (a policy by name, with string parameters) counts as a service
//!   config that holds only that policy; one that names an unknown policy is an invalid config
//!   (gRFC A21: the config in use stays, else the default, else calls fail saying why).
//! - A policy switch waits for the new policy to be READY (or IDLE), or for the old one to leave
//!   READY, as gRPC's does. A config for the same policy with other settings goes to the running
//!   policy ([`Policy::reconfigure`]), as gRPC hands it its new config; a policy that does not
//!   take new settings in place (the default) is built anew beside it and switched to the same
//!   graceful way.
//! - A resolver list longer than [`BalancerConfig::max_endpoints`] (100,000 by default) is refused
//!   as a resolver error and the last good list kept (gRPC takes any list).
//! - round_robin and the policies built on it rebuild their picker for a change no call waits for
//!   (an endpoint joining the READY ones) at most once an eighth of the endpoints changed or every
//!   100 ms, not on every change as gRPC does, so a large list coming up costs linear work; a
//!   change that calls depend on (the state, an endpoint lost) is published at once.
//! - least_request compares distinct endpoints (gRFC A48 samples with replacement, so a pick may
//!   compare an endpoint with itself): in croupier-sim's S3 at 90% load, p99 98 ms against
//!   217 ms. A48's sampling is
//!   [`distinct_candidates(false)`](policy::LeastRequestConfig::distinct_candidates).
//! - weighted_round_robin uses the resolver's static endpoint weights while fewer than two
//!   endpoints have usable load reports (gRPC then falls back to plain round robin).
//! - A call replays at most [`retry::NOT_SENT_REPLAY_LIMIT`] attempts that never left the client
//!   (A6 allows any number until the deadline), so a picker that keeps naming a dead connection
//!   cannot spin it; a hedge the throttle holds back ends the call's hedging.

#![forbid(unsafe_code)]
// On docs.rs, items behind a feature carry a badge naming it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod address;
mod authority;
mod backoff;
mod balancer;
mod call;
mod hasher;
mod notice;
mod picker;
pub mod policy;
mod probe;
mod resolution;
mod resolver;
pub mod retry;
mod rng;
#[cfg(feature = "service-config")]
pub mod service_config;
mod slab;
mod status;
mod subchannel;
pub mod target;

pub use address::{Address, Attributes, Endpoint};
pub use backoff::BackoffConfig;
pub use balancer::{
    Action, Balancer, BalancerConfig, BalancerSnapshot, ResolverResult, DEFAULT_MAX_ENDPOINTS,
};
pub use call::{CallOutcome, LoadReport};
pub use notice::{
    EndpointLoad, LoadWeight, Notice, PickFirstEvent, SubchannelWeight, DEFAULT_NOTICE_CAPACITY,
};
pub use picker::{
    FailPicker, Pick, PickNote, PickRequest, Picker, QueuePicker, RoundRobinPicker, SinglePicker,
};
pub use policy::{
    Controller, Policy, PolicyBuilder, PolicyConfig, PolicyDetails, PolicyParamError,
    PolicyParamErrorKind, SubchannelUpdate, TimerToken,
};
pub use probe::{ArrivedAt, ProbeResult, ServerLoad};
pub use resolution::ResolutionConfig;
pub use resolver::{PolicyChoice, ResolverError, ResolverUpdate};
pub use rng::Rng;
#[cfg(feature = "service-config")]
pub use service_config::{ServiceConfig, ServiceConfigError, ServiceConfigParser};
pub use status::{Code, ConnectivityState, Status};
pub use subchannel::{ConnectionEvent, ConnectionId, SubchannelId, SubchannelInfo};
pub use target::{Target, TargetError};
