//! The gRPC channel's builder: the channel's settings and the HTTP/2 connector's, in one place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use croupier::retry::{HedgingPolicy, RetryBuffer, RetryPolicy, RetryThrottle};
use croupier::service_config::IntoServiceConfig;
use croupier::{BackoffConfig, PolicyConfig, ResolutionConfig};
use croupier_channel::{BoxError, BuildError, ChannelBuilder, Resolver};
use http::uri::Authority;
use http::HeaderValue;
use http_body::Body;

use super::{HealthCheck, Http2Channel, Http2Connector, Http2Options, KeepAlive, Transport};
use crate::connector::StreamConnector;
use crate::runtime::TokioRuntime;

/// Builds a gRPC channel: what [`builder`](super::builder) returns. The channel's own settings
/// (policy, backoff, resolvers) and the HTTP/2 connector's (health checking, the connect
/// timeout, TCP and HTTP/2 settings, keepalive pings, the `:authority`, the transport) are set
/// here alike, with tonic's `Endpoint` names where they mean the same; `B` is the request body type of the client
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

    /// The service config used while the resolver gives none (grpc-go's
    /// `WithDefaultServiceConfig`): its JSON, a [`ServiceConfig`](croupier::ServiceConfig), or a
    /// parser's result. Its policy wins over [`policy`](Self::policy); each call gets its
    /// method's `timeout` (the sooner of it and the request's `grpc-timeout`) and
    /// `waitForReady`. An invalid JSON fails [`build`](Self::build), naming the path; see
    /// [`ChannelBuilder::default_service_config`].
    pub fn default_service_config(self, config: impl IntoServiceConfig) -> Self {
        self.channel(|b| b.default_service_config(config))
    }

    /// Ignores service configs (and policy choices) from the resolver (grpc-go's
    /// `WithDisableServiceConfig`): the default service config, or the policy, always applies.
    pub fn ignore_resolver_service_config(self, ignore: bool) -> Self {
        self.channel(|b| b.ignore_resolver_service_config(ignore))
    }

    /// Connection backoff (default: gRPC's).
    pub fn backoff(self, backoff: BackoffConfig) -> Self {
        self.channel(|b| b.backoff(backoff))
    }

    /// When to ask the resolver again (default: on request at most every 5 s, and every 30 s).
    pub fn resolution(self, resolution: ResolutionConfig) -> Self {
        self.channel(|b| b.resolution(resolution))
    }

    /// The most endpoints a resolver update may list (default 100,000); see
    /// [`ChannelBuilder::max_endpoints`].
    pub fn max_endpoints(self, max: usize) -> Self {
        self.channel(|b| b.max_endpoints(max))
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

    /// The timeout of a call whose request sets none (no `grpc-timeout`, as a tonic request
    /// without `set_timeout`): default none. It bounds the call from the moment it enters the
    /// channel until its response ends, and goes to the server as the request's `grpc-timeout`.
    pub fn default_timeout(self, timeout: Duration) -> Self {
        self.channel(|b| b.default_timeout(timeout))
    }

    /// The largest response message a call accepts, in bytes (default 4 MiB, gRPC's; tonic's
    /// client setting of the same name). A method's `maxResponseMessageBytes` in the service
    /// config lowers it for that method; set here, it also bounds one that would raise it. A
    /// larger message ends its call `RESOURCE_EXHAUSTED`, naming its size and the limit, as
    /// soon as its 5-byte header arrives, before its bytes are read: the call's stream is
    /// reset, the connection and its other calls go on. See
    /// [`ChannelBuilder::max_decoding_message_size`].
    pub fn max_decoding_message_size(self, limit: usize) -> Self {
        self.channel(|b| b.max_decoding_message_size(limit))
    }

    /// The largest request message a call sends, in bytes (default: unlimited, as gRPC;
    /// tonic's client setting of the same name). A method's `maxRequestMessageBytes` lowers it
    /// for that method. A larger message is not sent: the call's stream is reset and the call
    /// ends `RESOURCE_EXHAUSTED` when that message comes (for a streaming request, the messages
    /// before it have gone), and is not retried. See
    /// [`ChannelBuilder::max_encoding_message_size`].
    pub fn max_encoding_message_size(self, limit: usize) -> Self {
        self.channel(|b| b.max_encoding_message_size(limit))
    }

    /// Retries gRPC calls by `policy` (gRFC A6), in place of a hedging policy: see
    /// [`ChannelBuilder::retry_policy`] and the crate's "Retries and hedging".
    pub fn retry_policy(self, policy: RetryPolicy) -> Self {
        self.channel(|b| b.retry_policy(policy))
    }

    /// Hedges gRPC calls by `policy` (gRFC A6), in place of a retry policy: see
    /// [`ChannelBuilder::hedging_policy`].
    pub fn hedging_policy(self, policy: HedgingPolicy) -> Self {
        self.channel(|b| b.hedging_policy(policy))
    }

    /// Throttles retries and hedges channel-wide (gRFC A6's `retryThrottling`): see
    /// [`ChannelBuilder::retry_throttle`].
    pub fn retry_throttle(self, throttle: RetryThrottle) -> Self {
        self.channel(|b| b.retry_throttle(throttle))
    }

    /// How much request data calls keep to send again, per call and for the channel (default
    /// 1 MiB and 16 MiB): see [`ChannelBuilder::retry_buffer`].
    pub fn retry_buffer(self, buffer: RetryBuffer) -> Self {
        self.channel(|b| b.retry_buffer(buffer))
    }

    /// Watches each connection's health with `grpc.health.v1.Health/Watch` (client-side health
    /// checking, gRFC A17): see [`HealthCheck`]. Off by default.
    pub fn health_check(self, check: HealthCheck) -> Self {
        self.connector(|c| c.health_check(check))
    }

    /// Opens ORCA's out-of-band load report stream on each connection, asking for a report
    /// every `period`, for weighted_round_robin with `enable_oob_load_report` to weigh by: see
    /// [`Http2Connector::orca_oob`].
    pub fn orca_oob(self, period: Duration) -> Self {
        self.connector(|c| c.orca_oob(period))
    }

    /// Sends HTTP/2 keepalive pings (gRFC A8) and closes a connection whose ping goes
    /// unanswered: see [`KeepAlive`]. Off by default. (tonic: `http2_keep_alive_interval`,
    /// `keep_alive_timeout`, `keep_alive_while_idle`.)
    pub fn keep_alive(self, keep_alive: KeepAlive) -> Self {
        self.options(|o| o.keep_alive(keep_alive))
    }

    /// Bounds each connection attempt by `timeout`, within the core's own bound of at least the
    /// backoff's min connect timeout (20 s): see [`Http2Options::connect_timeout`]. Default: none.
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.options(|o| o.connect_timeout(timeout))
    }

    /// The HTTP/2 flow-control window of each stream, in bytes (default 2 MiB).
    pub fn initial_stream_window_size(self, size: u32) -> Self {
        self.options(|o| o.initial_stream_window_size(size))
    }

    /// The HTTP/2 flow-control window of each connection, in bytes (default 5 MiB).
    pub fn initial_connection_window_size(self, size: u32) -> Self {
        self.options(|o| o.initial_connection_window_size(size))
    }

    /// Sizes the HTTP/2 flow-control windows from measured bandwidth and delay (default: off).
    pub fn http2_adaptive_window(self, enabled: bool) -> Self {
        self.options(|o| o.adaptive_window(enabled))
    }

    /// The largest response header list accepted, in bytes (default 16 KiB).
    pub fn http2_max_header_list_size(self, size: u32) -> Self {
        self.options(|o| o.max_header_list_size(size))
    }

    /// Every HTTP/2 setting at once, in place of those set so far: see [`Http2Options`].
    pub fn http2_options(self, options: Http2Options) -> Self {
        self.options(|_| options)
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

    fn options(self, f: impl FnOnce(Http2Options) -> Http2Options) -> Self {
        self.connector(|mut c| {
            c.options = f(std::mem::take(&mut c.options));
            c
        })
    }

    fn connector(self, f: impl FnOnce(Http2Connector<B, T>) -> Http2Connector<B, T>) -> Self {
        GrpcChannelBuilder {
            inner: self.inner.map_connector(f),
            invalid: self.invalid,
        }
    }
}

impl<B> GrpcChannelBuilder<B, StreamConnector>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Whether TCP connections send small writes at once (`TCP_NODELAY`; default: on).
    pub fn tcp_nodelay(self, enabled: bool) -> Self {
        self.tcp(|t| t.tcp_nodelay(enabled))
    }

    /// TCP keepalive probes after `idle` without traffic (default: `None`, off).
    pub fn tcp_keepalive(self, idle: Option<Duration>) -> Self {
        self.tcp(|t| t.tcp_keepalive(idle))
    }

    /// The time between TCP keepalive probes (default: the operating system's).
    pub fn tcp_keepalive_interval(self, interval: Option<Duration>) -> Self {
        self.tcp(|t| t.tcp_keepalive_interval(interval))
    }

    /// How many TCP keepalive probes may go unanswered (default: the operating system's).
    pub fn tcp_keepalive_retries(self, retries: Option<u32>) -> Self {
        self.tcp(|t| t.tcp_keepalive_retries(retries))
    }

    fn tcp(self, f: impl FnOnce(StreamConnector) -> StreamConnector) -> Self {
        self.connector(|c| {
            let tcp = f(*c.transport);
            c.with_transport(tcp)
        })
    }
}
