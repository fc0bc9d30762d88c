//! The gRPC channel's builder: the channel's settings and the HTTP/2 connector's, in one place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use croupier::{BackoffConfig, PolicyConfig, ResolutionConfig};
use croupier_channel::{BoxError, BuildError, ChannelBuilder, Resolver};
use http::uri::Authority;
use http::HeaderValue;
use http_body::Body;

use super::{HealthCheck, Http2Channel, Http2Connector, Transport};
use crate::connector::StreamConnector;
use crate::runtime::TokioRuntime;

/// Builds a gRPC channel: what [`builder`](super::builder) returns. The channel's own settings
/// (policy, backoff, resolvers) and the HTTP/2 connector's (health checking, keepalive, the
/// `:authority`, the transport) are set here alike; `B` is the request body type of the client
/// that will use the channel (for a tonic client, `tonic::body::Body`), which the compiler infers
/// from that use.
pub struct GrpcChannelBuilder<B, T = StreamConnector> {
    inner: ChannelBuilder<Http2Connector<B, T>>,
    /// A setting that could not be taken, reported by `build`.
    invalid: Option<BuildError>,
}

impl<B, T> fmt::Debug for GrpcChannelBuilder<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcChannelBuilder")
            .field("inner", &self.inner)
            .field("invalid", &self.invalid)
            .finish()
    }
}

impl<B> GrpcChannelBuilder<B, StreamConnector>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// A builder for `target` on the current tokio runtime, over TCP and unix-domain streams.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub(super) fn new(target: impl Into<String>) -> Self {
        GrpcChannelBuilder {
            inner: ChannelBuilder::new(
                target,
                Arc::new(TokioRuntime::current()),
                Http2Connector::new(StreamConnector::new()),
            ),
            invalid: None,
        }
    }
}

#[cfg(feature = "tls")]
impl<B> GrpcChannelBuilder<B, StreamConnector>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Runs every connection over TLS with `config` (feature `tls`): see [`super::tls`] for
    /// the configurations it offers, which name each server is verified against, and ALPN.
    /// Calls say `:scheme` `https`. Over a transport of your own:
    /// `.transport(TlsTransport::over(yours, config))`.
    pub fn tls(
        self,
        config: super::tls::rustls::ClientConfig,
    ) -> GrpcChannelBuilder<B, super::TlsTransport> {
        self.transport(super::TlsTransport::new(config))
    }
}

impl<B, T> GrpcChannelBuilder<B, T>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    T: Transport,
{
    /// The load-balancing policy (default: pick_first).
    pub fn policy(self, policy: PolicyConfig) -> Self {
        self.channel(|b| b.policy(policy))
    }

    /// Makes `policy` choosable by name in resolver updates.
    pub fn register_policy(self, policy: PolicyConfig) -> Self {
        self.channel(|b| b.register_policy(policy))
    }

    /// Connection backoff (default: gRPC's).
    pub fn backoff(self, backoff: BackoffConfig) -> Self {
        self.channel(|b| b.backoff(backoff))
    }

    /// When to ask the resolver again (default: on request at most every 5 s, and every 30 s).
    pub fn resolution(self, resolution: ResolutionConfig) -> Self {
        self.channel(|b| b.resolution(resolution))
    }

    /// The port for targets that name none (default 443, as gRPC).
    pub fn default_port(self, port: u16) -> Self {
        self.channel(|b| b.default_port(port))
    }

    /// Registers a resolver for `scheme` for this channel only (on top of the process-wide ones).
    pub fn resolver(self, scheme: &str, resolver: impl Resolver) -> Self {
        self.channel(|b| b.resolver(scheme, resolver))
    }

    /// The seed of every random choice the core makes (default: a random one).
    pub fn seed(self, seed: u64) -> Self {
        self.channel(|b| b.seed(seed))
    }

    /// Watches each connection's health with `grpc.health.v1.Health/Watch` (client-side health
    /// checking, gRFC A17): see [`HealthCheck`]. Off by default.
    pub fn health_check(self, check: HealthCheck) -> Self {
        self.connector(|c| c.health_check(check))
    }

    /// Sends an HTTP/2 PING every `interval` and closes the connection, reporting it lost, if no
    /// answer comes within `timeout`. Off by default.
    pub fn keep_alive(self, interval: Duration, timeout: Duration) -> Self {
        self.connector(|c| c.keep_alive(interval, timeout))
    }

    /// The `:authority` of requests that name none (a tonic client names none), and the name
    /// TLS verifies, for every connection: see [`Http2Connector::authority`].
    pub fn authority(self, authority: Authority) -> Self {
        self.connector(|c| c.authority(authority))
    }

    /// Puts `prefix` before the library's own `croupier/<version>` in every request's
    /// `user-agent` (`myapp/1.2` -> `myapp/1.2 croupier/0.1.0`), as gRPC does; the channel's
    /// `user-agent` replaces any a request carries. A prefix that cannot be a header value
    /// (control characters) fails [`build`](Self::build), naming it.
    pub fn user_agent(mut self, prefix: &str) -> Self {
        match HeaderValue::from_str(prefix.trim()) {
            Ok(prefix) => self.connector(|c| c.user_agent(&prefix)),
            Err(_) => {
                self.invalid.get_or_insert(BuildError::Setting {
                    setting: "user_agent",
                    reason: format!("{prefix:?} is not a valid header value"),
                });
                self
            }
        }
    }

    /// Opens the byte streams that HTTP/2 runs over with `transport` (TLS, a proxy's tunnel)
    /// instead of plain TCP and unix-domain streams; the connector's other settings stay.
    pub fn transport<U: Transport>(self, transport: U) -> GrpcChannelBuilder<B, U> {
        GrpcChannelBuilder {
            inner: self.inner.map_connector(|c| c.with_transport(transport)),
            invalid: self.invalid,
        }
    }

    /// Parses the target, starts its resolver and the channel's driver task, and returns the
    /// channel. Must run inside a tokio runtime.
    pub fn build(self) -> Result<Http2Channel<B>, BuildError> {
        if let Some(invalid) = self.invalid {
            return Err(invalid);
        }
        self.inner.build()
    }

    /// The channel builder underneath, for settings of its own. A setting this builder refused
    /// (a `user_agent` that is no header value) is not carried over: only [`build`](Self::build)
    /// reports it.
    pub fn into_inner(self) -> ChannelBuilder<Http2Connector<B, T>> {
        self.inner
    }

    fn channel(
        self,
        f: impl FnOnce(ChannelBuilder<Http2Connector<B, T>>) -> ChannelBuilder<Http2Connector<B, T>>,
    ) -> Self {
        GrpcChannelBuilder {
            inner: f(self.inner),
            invalid: self.invalid,
        }
    }

    fn connector(self, f: impl FnOnce(Http2Connector<B, T>) -> Http2Connector<B, T>) -> Self {
        GrpcChannelBuilder {
            inner: self.inner.map_connector(f),
            invalid: self.invalid,
        }
    }
}
