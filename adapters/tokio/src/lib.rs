//! # croupier-tokio
//!
//! Client-side load balancing for tokio programs: a load-balanced [`Channel`] to the backends a
//! target names, with croupier's sans-IO core making every decision and tokio doing the I/O
//! (sockets, timers, DNS).
//!
//! ```no_run
//! use croupier_tokio::{PickRequest, PolicyConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = croupier_tokio::builder("dns:///localhost:50051")
//!     .policy(PolicyConfig::round_robin())
//!     .build()?;
//! let picked = channel.pick(&PickRequest::new()).await?;
//! let mut stream = picked.connection.lock().await;
//! stream.write_all(b"ping").await?;
//! let mut reply = [0u8; 4];
//! stream.read_exact(&mut reply).await?;
//! picked.call.success();
//! # Ok(()) }
//! ```
//!
//! Resolvers are registered by scheme, for the whole process with [`register_resolver`] (as
//! gRPC's `resolver.Register`) or per channel with [`ChannelBuilder::resolver`]. Built in: `dns`
//! (looked up again when a connection is lost, after errors with backoff, and every 30 s),
//! `passthrough`, `ipv4`, `ipv6`, `unix`, `unix-abstract`.
//!
//! The default connector ([`StreamConnector`]) opens TCP (with `TCP_NODELAY`) or unix-domain
//! streams; implement [`Connector`] for TLS, HTTP/2 or any other transport.
//!
//! ## Features
//!
//! - `metrics` (off by default): the channel's calls and connections recorded through the
//!   `metrics` facade, with gRPC's names (gRFC A66, A94, A78), named in the `metrics` module;
//!   the README's "Metrics" lists them.
//! - `grpc` (off by default): an HTTP/2 connector on hyper, and the channel as a
//!   `tower_service::Service`, so that a tonic-generated client sends through croupier
//!   unchanged. See the `grpc` module.
//! - `dns-txt` (off by default): [`HickoryTxtLookup`], TXT lookups on hickory-resolver, with
//!   which the `dns` resolver ([`DnsResolver::service_config_from`]) reads a target's service
//!   config from DNS (gRFC A2).

#![forbid(unsafe_code)]
// On docs.rs, items behind a feature carry a badge naming it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connector;
#[cfg(feature = "grpc")]
pub mod grpc;
mod runtime;
#[cfg(feature = "dns-txt")]
mod txt;

pub use connector::{SharedStream, Stream, StreamConnector, StreamGuard};
/// The core's types that the channel's API takes and returns, so that this crate is the one
/// dependency a program needs; the whole core is [`croupier`], its policies' settings
/// [`policy`].
pub use croupier::{
    self, policy, retry, Address, Attributes, BackoffConfig, CallOutcome, Code, ConnectivityState,
    Controller, Endpoint, LoadReport, Pick, PickRequest, Picker, Policy, PolicyBuilder,
    PolicyChoice, PolicyConfig, ResolutionConfig, ResolverError, ResolverUpdate, ServiceConfig,
    ServiceConfigError, Status, SubchannelId, SubchannelInfo, SubchannelUpdate, Target,
    TargetError,
};
/// The names of the channel's metrics (feature `metrics`).
#[cfg(feature = "metrics")]
pub use croupier_channel::metrics;
pub use croupier_channel::{
    global_resolvers, register_resolver, BoxFuture, BuildError, CallGuard, Channel, ChannelBuilder,
    Connected, Connector, DnsResolver, PickOptions, Picked, Resolver, ResolverContext,
    ResolverRegistry, Runtime, StaticResolver, TxtLookup,
};
pub use croupier_channel::{CallCounts, ChannelSnapshot, ResolverSnapshot, SubchannelSnapshot};
pub use runtime::TokioRuntime;
#[cfg(feature = "dns-txt")]
pub use txt::HickoryTxtLookup;

/// A builder for a channel to `target`, on the current tokio runtime, with the default
/// [`StreamConnector`]. Call [`ChannelBuilder::build`] inside the runtime.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn builder(target: impl Into<String>) -> ChannelBuilder<StreamConnector> {
    ChannelBuilder::new(
        target,
        std::sync::Arc::new(TokioRuntime::current()),
        StreamConnector::new(),
    )
}

/// The README's examples, compiled and run as doctests (with every feature: they show gRPC and
/// TLS beside the rest).
#[cfg(all(doctest, feature = "grpc", feature = "tls"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
