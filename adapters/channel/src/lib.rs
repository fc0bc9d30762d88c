//! # croupier-channel
//!
//! The runtime-agnostic half of croupier's adapters: a [`Channel`] that drives the sans-IO core
//! ([`croupier::Balancer`]) from one background task, with resolvers registered by scheme,
//! connectors that make connections of your type, and picks that wait, fail fast or time out as
//! gRPC's do.
//!
//! It needs three things from a runtime (spawning, sleeping, DNS lookups: the [`Runtime`] trait)
//! and nothing else, so the tokio and async-std adapters share every line of it. Application code
//! normally uses an adapter crate (`croupier-tokio`, `croupier-async-std`), which re-exports
//! what is here with its runtime filled in.
//!
//! ## How it works
//!
//! - One driver task per channel owns the `Balancer`. It carries out the core's actions (start a
//!   connection attempt, drop one, ask the resolver again), feeds back what happens (connected,
//!   failed, closed, call ended, resolver results), and sleeps until the core's next timer.
//! - The driver publishes each new picker together with the connections it may name, in one
//!   atomically swapped snapshot; a pick reads it without a lock.
//! - A pick that has to wait (the picker said queue, or wait-for-ready in TRANSIENT_FAILURE) sleeps
//!   until the next snapshot or its deadline; it is never lost.
//! - Dropping the last [`Channel`] handle stops the driver, which drops every connection, attempt
//!   and resolver task.
//!
//! ## Features
//!
//! - `metrics` (off by default): calls and connections recorded through the `metrics` facade,
//!   with gRPC's names and labels (gRFC A66 per call and per attempt, A94 per subchannel, A78
//!   for weighted_round_robin and pick_first) and a per-backend
//!   call counter (the `metrics` module names them). Without it, [`Channel::snapshot`] still
//!   counts each subchannel's calls.
//! - `tracing` (on by default): the channel logs through [`tracing`](https://docs.rs/tracing), in a
//!   span per channel (`target`) and per subchannel (`id`, `address`), every notice of the core
//!   ([`croupier::Notice`]): a subchannel's state changes and why at `debug` (leaving READY at
//!   `info`), failed connection attempts, refused resolver updates and ejections at `warn`,
//!   resolver results and policy switches at `info`, picks at `trace`. Every event's target is
//!   `croupier` (`RUST_LOG=croupier=debug`). No event carries a payload, a header value or a
//!   credential. With it, the balancer keeps notices for the driver to log: a few allocations per
//!   subchannel state change, none per pick; an event no subscriber wants costs a load and a
//!   compare. It is on by default because a channel that fails calls should say why without a
//!   rebuild; turn it off (`default-features = false`) and the channel logs nothing and the core
//!   builds no notices.
//! - `tower` (off by default): a `Channel` whose connections are `tower_service::Service`s over
//!   `http::Request`s is itself one, picking per request from the request's path and headers and
//!   reporting each response's end (its gRPC status, or its HTTP status) as the call's outcome.
//!   A tonic-generated client takes such a channel as it is. A request that its server did not
//!   process (a GOAWAY, a refused stream) is sent again on another connection (see `Unprocessed`
//!   and `ReplayBody`). A call's deadline bounds it until its response ends, and a gRPC call that
//!   fails (its deadline passed, its connection lost) gets the gRPC status that says so.
//!   With a retry or hedging policy ([`ChannelBuilder::retry_policy`],
//!   [`ChannelBuilder::hedging_policy`]), a gRPC call runs its attempts as
//!   [`croupier::retry::RetryCall`] decides: a pick and a stream per attempt, the request body
//!   kept and replayed until the call commits, within [`ChannelBuilder::retry_buffer`]'s limits
//!   and [`ChannelBuilder::retry_throttle`]'s tokens.

#![forbid(unsafe_code)]
// On docs.rs, items behind a feature carry a badge naming it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
#[cfg(feature = "tower")]
mod body;
mod channel;
mod connections;
mod connector;
mod dns;
mod driver;
#[cfg(feature = "tower")]
mod error;
#[cfg(feature = "tower")]
mod grpc;
mod inbox;
mod message_size;
#[cfg(feature = "metrics")]
pub mod metrics;
mod names;
mod records;
#[cfg(feature = "tower")]
mod replay;
mod resolver;
mod retry;
mod runtime;
#[cfg(feature = "tower")]
mod service;
mod shared;
mod snapshot;
mod stream;
mod trace;

#[cfg(feature = "tower")]
pub use body::ServedBy;
pub use channel::{BuildError, CallGuard, Channel, ChannelBuilder, PickOptions, Picked};
pub use connector::{
    health_channel, load_report_channel, ConnectContext, Connected, Connector, Health,
    HealthReporter, HealthWatch, LoadReporter, LoadWatch, Reporter, Watch,
};
pub use dns::{DnsResolver, TxtLookup};
#[cfg(feature = "tower")]
pub use error::{describe_error, BoxError};
pub use message_size::DEFAULT_MAX_DECODING_MESSAGE_SIZE;
#[cfg(feature = "tower")]
pub use replay::{ReplayBody, REPLAY_LIMIT};
pub use resolver::{
    global_resolvers, register_resolver, Resolver, ResolverContext, ResolverRegistry,
    StaticResolver,
};
pub use runtime::{BoxFuture, Runtime};
#[cfg(feature = "tower")]
pub use service::{CallBody, Unprocessed};
pub use snapshot::{CallCounts, ChannelSnapshot, ResolverSnapshot, SubchannelSnapshot};
pub use stream::{PeerWatch, SharedStream, StreamGuard, SETTLE};
