//! # croupier-async-std
//!
//! Client-side load balancing for async-std and smol programs: the same load-balanced
//! [`Channel`] as `croupier-tokio`, with the same builder, resolvers, connectors and picks, so a
//! program moves between runtimes by changing one import.
//!
//! async-std's authors have discontinued it in favour of smol (see its README and
//! RUSTSEC-2025-0052). async-std itself runs on `async-io`, `async-net` and `futures-lite`, so this
//! adapter is written on those crates: it runs under async-std (its tests and example use
//! async-std's executor) and equally under smol, without making you depend on an unmaintained
//! crate.
//!
//! ```no_run
//! use croupier_async_std::{PickRequest, PolicyConfig};
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = croupier_async_std::builder("dns:///localhost:50051")
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
//! The channel's background tasks (its driver, connection attempts, resolvers) run on a small
//! executor thread of croupier's own unless you hand it yours with
//! [`AsyncIoRuntime::with_spawner`] and [`builder_with`]; timers and sockets use async-io's reactor,
//! the one async-std and smol share.

#![forbid(unsafe_code)]

mod connector;
mod runtime;

pub use connector::{SharedStream, Stream, StreamConnector, StreamGuard};
/// The core's types that the channel's API takes and returns, so that this crate is the one
/// dependency a program needs; the whole core is [`croupier`], its policies' settings
/// [`policy`].
pub use croupier::{
    self, policy, Address, Attributes, BackoffConfig, CallOutcome, Code, ConnectivityState,
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
    Connected, Connector, PickOptions, Picked, Resolver, ResolverContext, ResolverRegistry,
    Runtime, StaticResolver,
};
pub use croupier_channel::{CallCounts, ChannelSnapshot, ResolverSnapshot, SubchannelSnapshot};
pub use runtime::AsyncIoRuntime;

/// A builder for a channel to `target`, with the default [`StreamConnector`] and tasks on
/// croupier's own executor thread.
pub fn builder(target: impl Into<String>) -> ChannelBuilder<StreamConnector> {
    builder_with(target, AsyncIoRuntime::new())
}

/// A builder for a channel to `target` whose tasks run on `runtime`.
pub fn builder_with(
    target: impl Into<String>,
    runtime: AsyncIoRuntime,
) -> ChannelBuilder<StreamConnector> {
    ChannelBuilder::new(target, std::sync::Arc::new(runtime), StreamConnector::new())
}
