//! gRPC and HTTP/2 (feature `grpc`): an HTTP/2 connector on hyper, whose channel is a
//! `tower_service::Service` that a tonic-generated client takes unchanged.
//!
//! ```
//! use croupier_tokio::PolicyConfig;
//! use tonic_health::pb::health_client::HealthClient;
//! use tonic_health::pb::health_check_response::ServingStatus;
//! use tonic_health::pb::HealthCheckRequest;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let mut addresses = Vec::new();
//! # for _ in 0..2 {
//! #     let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse()?)?;
//! #     addresses.push(incoming.local_addr()?.to_string());
//! #     let (_, health) = tonic_health::server::health_reporter();
//! #     let server = tonic::transport::Server::builder().add_service(health);
//! #     tokio::spawn(server.serve_with_incoming(incoming));
//! # }
//! # let target = format!("ipv4:{}", addresses.join(","));
//! // `target` names two gRPC servers, say "ipv4:127.0.0.1:50051,127.0.0.1:50052".
//! let channel = croupier_tokio::grpc::builder(target)
//!     .policy(PolicyConfig::round_robin())
//!     .build()?;
//! let mut client = HealthClient::new(channel); // any tonic-generated client
//! let reply = client.check(HealthCheckRequest::default()).await?;
//! assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
//! # Ok(()) }
//! ```
//!
//! The connector's options (health checking, the connect timeout, TCP and HTTP/2 settings,
//! keepalive pings, a transport of your own) are set on the same builder as the channel's:
//! [`GrpcChannelBuilder`]; the HTTP/2 ones are grouped in [`Http2Options`].
//!
//! - One HTTP/2 connection per subchannel, multiplexing every call sent on it. Its end (reset,
//!   the peer gone, a keepalive ping unanswered) is reported to the balancer at once, and a
//!   request that the closing connection had not sent yet, or that the server's last GOAWAY
//!   excluded, is sent on another one. That GOAWAY is read even when the server's reset has
//!   already failed a write: a write that finds the peer gone leaves the connection's end to
//!   the read side, which still has the server's last frames to give.
//! - A server's GOAWAY ends the connection for the balancer when it arrives, as in grpc-go: the
//!   subchannel leaves READY (IDLE; the policy reconnects as after any loss), its health check's
//!   stream is cancelled, and new calls go elsewhere, while the calls already open on the
//!   draining connection run to their end. A GOAWAY `ENHANCE_YOUR_CALM` `too_many_pings`
//!   doubles the channel's keepalive time ([`KeepAlive`]). A GOAWAY that comes with the
//!   server's preface fails the connection attempt.
//! - When a connection has as many calls open as the server's `MAX_CONCURRENT_STREAMS` allows,
//!   a further call sent on it waits (HTTP/2 queues it) until one of them ends; it does not fail.
//! - A connection is established once the server's HTTP/2 preface (its SETTINGS) has arrived,
//!   not merely when the client has sent its own: a server that never took the connection (one
//!   shutting down with it still in its listener's backlog) fails the connection attempt, not the
//!   calls sent on it. The attempt (TCP or unix socket, the handshake, the server's preface) is
//!   bounded by the core's connect deadline, and by [`Http2Options::connect_timeout`] if shorter.
//! - Each request picks from its path and headers; each response's end reports the call's gRPC
//!   status and latency to the balancer (least_request, outlier detection and p2c learn from it).
//!   Each response names the backend that served it in its extensions: with tonic,
//!   `reply.extensions().get::<ServedBy>()` ([`ServedBy::address`]).
//! - A call's deadline (its `grpc-timeout`, else the channel's
//!   [`default_timeout`](GrpcChannelBuilder::default_timeout)) bounds it until its response
//!   ends: then its stream is reset and it fails `DEADLINE_EXCEEDED`. A call lost with its
//!   connection fails `UNAVAILABLE`, naming the address (see `croupier_channel`'s `Service`).
//! - Message size limits: a response message over the call's limit
//!   ([`GrpcChannelBuilder::max_decoding_message_size`], 4 MiB by default, or the method's
//!   `maxResponseMessageBytes` where lower) ends the call `RESOURCE_EXHAUSTED` at its 5-byte
//!   header, before its bytes are read, resetting only its stream; a request message over
//!   [`GrpcChannelBuilder::max_encoding_message_size`] (or `maxRequestMessageBytes`) is not
//!   sent, and the call ends `RESOURCE_EXHAUSTED`, not retried.
//! - Retries and hedging (gRFC A6), with a policy from
//!   [`GrpcChannelBuilder::retry_policy`] or [`GrpcChannelBuilder::hedging_policy`]: a call
//!   that fails before its response headers with a status the policy names is tried again
//!   (after a jittered backoff, or the server's `grpc-retry-pushback-ms`) on a new pick that
//!   passes over the backends tried, saying `grpc-previous-rpc-attempts`; hedges race, and the
//!   losers' streams are reset. Its request body, streams included, is kept and replayed until
//!   the call commits, within [`GrpcChannelBuilder::retry_buffer`]; the channel's
//!   [`GrpcChannelBuilder::retry_throttle`] stops retries after repeated failures; the call's
//!   deadline bounds every attempt together; each attempt's outcome reaches the balancer.
//! - A backend's ORCA load report (gRFC A51) in a response's `endpoint-load-metrics-bin`
//!   trailer goes back with the call's outcome, for weighted_round_robin to weigh it by (see
//!   [`orca`]); it is read only while the policy learns from outcomes, and one that does not
//!   read is ignored. Out of band: [`GrpcChannelBuilder::orca_oob`].
//! - Client-side health checking (gRFC A17) is optional: [`Http2Connector::health_check`].
//! - Names, as gRPC sets them: a request's `:authority` is the target's endpoint
//!   (`dns:///api.internal:50051` -> `api.internal:50051`), or the server name a resolver gave
//!   the address's endpoint ([`Endpoint::server_name`](croupier::Endpoint::server_name)), or the
//!   channel's own ([`GrpcChannelBuilder::authority`]), which wins; `:scheme` is `https` over a
//!   secure [`Transport`], else `http`; `user-agent` is `croupier/<version>` after the
//!   application's prefix ([`GrpcChannelBuilder::user_agent`]).
//! - TLS is built in with the `tls` feature (rustls): `GrpcChannelBuilder::tls` and the `tls`
//!   module. Other wrappings of the byte stream (a proxy's tunnel): implement [`Transport`] and
//!   pass it to [`GrpcChannelBuilder::transport`].

mod builder;
mod client_io;
mod codes;
mod frames;
mod health;
mod names;
mod options;
pub mod orca;
pub mod probe;
mod streaming;
#[cfg(feature = "tls")]
pub mod tls;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use croupier::Address;
use croupier_channel::{
    describe_error as describe, BoxError, ConnectContext, Connected, Connector, ReplayBody,
    Unprocessed,
};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, Notify};

use crate::connector::{Stream, StreamConnector};
use client_io::ClientIo;
use frames::{GoAway, GoAwaySignal};
use names::RequestNames;

pub use builder::GrpcChannelBuilder;
pub use croupier_channel::ServedBy;
pub use health::HealthCheck;
pub use options::{Http2Options, KeepAlive};
#[cfg(feature = "tls")]
pub use tls::TlsTransport;

/// Opens the byte stream an HTTP/2 connection runs over. [`StreamConnector`] opens plain TCP and
/// unix-domain streams; implement it to wrap them (TLS, a proxy's tunnel).
///
/// ```
/// use std::future::Future;
/// use std::io;
///
/// use croupier::Address;
/// use croupier_tokio::grpc::Transport;
/// use croupier_tokio::{Stream, StreamConnector};
///
/// /// Every connection goes to a local proxy (a service mesh's sidecar, say), which forwards it
/// /// by the `:authority` each call names; the balancer still sees one subchannel per backend.
/// struct ViaSidecar {
///     tcp: StreamConnector,
///     sidecar: Address,
/// }
///
/// impl Transport for ViaSidecar {
///     type Io = Stream;
///
///     fn open(&self, _backend: &Address) -> impl Future<Output = io::Result<Stream>> + Send + 'static {
///         self.tcp.open(&self.sidecar)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sidecar = Address::from("127.0.0.1:15001".parse::<std::net::SocketAddr>()?);
/// let channel: croupier_tokio::grpc::Http2Channel<tonic::body::Body> =
///     croupier_tokio::grpc::builder("dns:///echo.internal:50051")
///         .transport(ViaSidecar { tcp: StreamConnector::new(), sidecar })
///         .build()?;
/// # let _ = channel; Ok(()) }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// The byte stream.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// Opens a stream to `address`.
    fn open(
        &self,
        address: &Address,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static;

    /// Opens a stream to `address` for calls to `authority`, the name the server goes by (what
    /// TLS verifies its certificate against). The connector calls this; the default ignores
    /// the name and calls [`Transport::open`].
    fn open_for(
        &self,
        address: &Address,
        authority: &Authority,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static {
        let _ = authority;
        self.open(address)
    }

    /// Whether the streams are secure (TLS): calls over them say `:scheme` `https`, else
    /// `http`. The default is `false`.
    fn is_secure(&self) -> bool {
        false
    }
}

impl Transport for StreamConnector {
    type Io = Stream;

    fn open(&self, address: &Address) -> impl Future<Output = io::Result<Stream>> + Send + 'static {
        let (connector, address) = (*self, address.clone());
        async move { connector.open(&address).await }
    }
}

/// A channel over HTTP/2 connections that send requests with bodies of type `B` (for a tonic
/// client, `tonic::body::Body`): what [`builder`] builds.
pub type Http2Channel<B> = croupier_channel::Channel<Http2Connection<B>>;

/// A builder for a channel to `target` over HTTP/2, on the current tokio runtime, with the
/// default [`Http2Connector`] (plain TCP and unix-domain streams): the channel is a
/// `tower_service::Service<http::Request<B>>` for the request body `B` of the client that uses it
/// (for a tonic client, `tonic::body::Body`, which the compiler infers).
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn builder<B>(target: impl Into<String>) -> GrpcChannelBuilder<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    GrpcChannelBuilder::new(target)
}

/// Makes one HTTP/2 connection per subchannel, with hyper, over the streams a [`Transport`]
/// opens. `B` is the request body type of the calls sent on it.
pub struct Http2Connector<B, T = StreamConnector> {
    transport: Arc<T>,
    options: Http2Options,
    authority: Option<Authority>,
    user_agent: HeaderValue,
    health: Option<HealthCheck>,
    orca_oob: Option<Duration>,
    _body: PhantomData<fn(B)>,
}

impl<B, T> fmt::Debug for Http2Connector<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http2Connector")
            .field("options", &self.options)
            .field("authority", &self.authority)
            .field("user_agent", &self.user_agent)
            .field("health", &self.health)
            .field("orca_oob", &self.orca_oob)
            .finish_non_exhaustive()
    }
}

impl<B, T: Transport> Http2Connector<B, T> {
    /// HTTP/2 over the streams `transport` opens.
    pub fn new(transport: T) -> Self {
        Http2Connector {
            transport: Arc::new(transport),
            options: Http2Options::new(),
            authority: None,
            user_agent: HeaderValue::from_static(names::USER_AGENT_BASE),
            health: None,
            orca_oob: None,
            _body: PhantomData,
        }
    }

    /// The same settings over the streams `transport` opens.
    pub fn with_transport<U: Transport>(self, transport: U) -> Http2Connector<B, U> {
        Http2Connector {
            transport: Arc::new(transport),
            options: self.options,
            authority: self.authority,
            user_agent: self.user_agent,
            health: self.health,
            orca_oob: self.orca_oob,
            _body: PhantomData,
        }
    }

    /// The HTTP/2 settings of its connections (default: [`Http2Options::new`]). The keepalive
    /// time that servers' `too_many_pings` double is this connector's own from here on.
    pub fn options(mut self, options: Http2Options) -> Self {
        self.options = options;
        self
    }

    /// The HTTP/2 settings of its connections, with the keepalive time now in force
    /// ([`Http2Options::keep_alive_time`]).
    pub fn get_options(&self) -> &Http2Options {
        &self.options
    }

    /// Watches each connection's health with `grpc.health.v1.Health/Watch` (client-side health
    /// checking, gRFC A17): see [`HealthCheck`]. Off by default.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    /// Opens ORCA's out-of-band load report stream (gRFC A51,
    /// `xds.service.orca.v3.OpenRcaService/StreamCoreMetrics`) on each connection, asking for a
    /// report every `period`, and passes the reports to the balancer: weighted_round_robin
    /// weighs by them when its `enable_oob_load_report` is set (see [`orca`]). Off by default.
    pub fn orca_oob(mut self, period: Duration) -> Self {
        self.orca_oob = Some(period);
        self
    }

    /// The `:authority` of requests that name none (a tonic client names none), and the name a
    /// TLS transport verifies, for every connection of the channel. By default, the server name
    /// the resolver gave the address's endpoint, else the target's default authority
    /// (`api.internal:50051` for `dns:///api.internal:50051`), as gRPC: see [`ConnectContext`].
    pub fn authority(mut self, authority: Authority) -> Self {
        self.authority = Some(authority);
        self
    }

    /// Puts `prefix` before the library's own `croupier/<version>` in every request's
    /// `user-agent` (`myapp/1.2` -> `myapp/1.2 croupier/0.1.0`), as gRPC does with its own. The
    /// channel's `user-agent` replaces any a request carries (gRPC reserves the header; a tonic
    /// client drops one set in a call's metadata before it reaches the channel).
    pub fn user_agent(mut self, prefix: &HeaderValue) -> Self {
        self.user_agent = names::user_agent(prefix);
        self
    }
}

/// One HTTP/2 connection: a cheap handle that sends requests on it (a `tower_service::Service`).
pub struct Http2Connection<B> {
    sender: http2::SendRequest<ReplayBody<B>>,
    state: Arc<ConnectionState>,
}

impl<B> Clone for Http2Connection<B> {
    fn clone(&self) -> Self {
        Http2Connection {
            sender: self.sender.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<B> fmt::Debug for Http2Connection<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http2Connection")
            .field("closed", &self.sender.is_closed())
            .field("broken", &self.state.broken.get())
            .field("goaway", &self.state.goaway.get())
            .finish()
    }
}

/// What every handle to one connection shares.
#[derive(Debug)]
struct ConnectionState {
    /// What requests are named with (a tonic client sends only the path).
    names: RequestNames,
    /// Set when a call found the connection dead.
    broken: OnceLock<String>,
    /// The server's first GOAWAY, once it has come: the connection drains, taking no new call.
    goaway: Arc<GoAwaySignal>,
    /// Wakes the connection's task to close it.
    kill: Notify,
}

impl<B> Http2Connection<B> {
    /// Whether the connection has ended, a call found it dead, or the server's GOAWAY said it
    /// takes no new call (the calls open on it still finish).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
            || self.state.broken.get().is_some()
            || self.state.goaway.get().is_some()
    }

    /// Takes the connection out of rotation and closes it: the balancer hears at once that it
    /// is gone. Calls do this themselves when the connection fails under them.
    pub fn mark_broken(&self, reason: impl Into<String>) {
        if self.state.broken.set(reason.into()).is_ok() {
            self.state.kill.notify_one();
        }
    }
}

impl<B> tower_service::Service<Request<ReplayBody<B>>> for Http2Connection<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = croupier_channel::BoxFuture<'static, Result<Response<Incoming>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if let Some(reason) = self.state.broken.get() {
            return Poll::Ready(Err(reason.clone().into()));
        }
        self.sender.poll_ready(cx).map_err(|error| {
            self.mark_broken(format!("the HTTP/2 connection is closed: {error}"));
            error.into()
        })
    }

    fn call(&mut self, mut request: Request<ReplayBody<B>>) -> Self::Future {
        if let Some(goaway) = self.state.goaway.get() {
            // Not sent: the channel sends it on another connection.
            let error = Unprocessed::new(format!("{goaway}: the connection takes no new call"));
            return Box::pin(std::future::ready(Err(Box::new(error) as BoxError)));
        }
        self.state.names.apply(&mut request);
        let connection = self.clone();
        let sent = self.sender.try_send_request(request);
        Box::pin(async move {
            match sent.await {
                Ok(response) => Ok(response),
                Err(mut error) => {
                    let unsent = error.take_message().is_some();
                    let error = error.into_error();
                    if connection.sender.is_closed() || error.is_closed() || error.is_canceled() {
                        connection.mark_broken(format!(
                            "the HTTP/2 connection failed: {}",
                            describe(&error)
                        ));
                    }
                    if unsent {
                        Err(Box::new(Unprocessed::new(error)) as BoxError)
                    } else if refused(&error) {
                        Err(Box::new(Unprocessed::refused(error)) as BoxError)
                    } else {
                        Err(error.into())
                    }
                }
            }
        })
    }
}

/// Whether the server said it did not process the request: a GOAWAY whose last stream came
/// before the request's (a graceful shutdown), or `REFUSED_STREAM` (RFC 9113, 8.7).
fn refused(error: &hyper::Error) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        next = error.source();
    }
    false
}

impl<B, T> Connector for Http2Connector<B, T>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    T: Transport,
{
    type Connection = Http2Connection<B>;

    fn is_broken(connection: &Http2Connection<B>) -> bool {
        connection.is_closed()
    }

    fn error_code(error: &(dyn StdError + 'static)) -> Option<croupier::Code> {
        codes::error_code(error)
    }

    fn load_report(trailers: &http::HeaderMap) -> Option<croupier::LoadReport> {
        orca::load_report(trailers)
    }

    fn probe(
        &self,
        connection: &Http2Connection<B>,
    ) -> Option<croupier_channel::BoxFuture<'static, Result<croupier::ProbeResult, String>>> {
        Some(probe::probe(connection))
    }

    fn connect(
        &self,
        address: &Address,
    ) -> impl Future<Output = io::Result<Connected<Http2Connection<B>>>> + Send + 'static {
        let authority = self
            .authority
            .clone()
            .unwrap_or_else(|| names::of_address(address));
        self.attempt(address, Ok(authority))
    }

    fn connect_with(
        &self,
        address: &Address,
        context: &ConnectContext<'_>,
    ) -> impl Future<Output = io::Result<Connected<Http2Connection<B>>>> + Send + 'static {
        let authority = names::authority(self.authority.as_ref(), context, address);
        self.attempt(address, authority)
    }
}

impl<B, T> Http2Connector<B, T>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    T: Transport,
{
    /// One connection attempt to `address`, whose calls go to `authority`.
    fn attempt(
        &self,
        address: &Address,
        authority: io::Result<Authority>,
    ) -> impl Future<Output = io::Result<Connected<Http2Connection<B>>>> + Send + 'static {
        let opened = authority.map(|authority| {
            let opened: croupier_channel::BoxFuture<'static, io::Result<T::Io>> =
                Box::pin(self.transport.open_for(address, &authority));
            (opened, authority)
        });
        let scheme = if self.transport.is_secure() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let user_agent = self.user_agent.clone();
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        self.options.configure(&mut builder);
        let heard = self.options.goaway_listener();
        let health = self.health.clone();
        let orca_oob = self.orca_oob;
        let attempt = async move {
            let (opened, authority) = opened?;
            let (io, preface, goaway) = ClientIo::new(opened.await?);
            let (sender, connection) = builder
                .handshake::<_, ReplayBody<B>>(TokioIo::new(io))
                .await
                .map_err(|error| {
                    io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("HTTP/2 handshake failed: {}", describe(&error)),
                    )
                })?;
            let state = Arc::new(ConnectionState {
                names: RequestNames {
                    authority,
                    scheme,
                    user_agent,
                },
                broken: OnceLock::new(),
                goaway: Arc::clone(&goaway),
                kill: Notify::new(),
            });
            let (ended, closed) = oneshot::channel::<String>();
            let watched = Arc::clone(&state);
            // The connection runs in a task of its own, so that calls in flight finish even when
            // the balancer lets the subchannel go; it ends when every handle is dropped.
            tokio::spawn(async move {
                let reason = tokio::select! {
                    result = connection => match result {
                        Ok(()) => "the server closed the HTTP/2 connection".to_owned(),
                        Err(error) => format!("the HTTP/2 connection failed: {}", describe(&error)),
                    },
                    () = watched.kill.notified() => watched
                        .broken
                        .get()
                        .cloned()
                        .unwrap_or_else(|| "the connection was closed".to_owned()),
                };
                let _ = ended.send(reason);
            });
            let connection = Http2Connection { sender, state };
            let mut closed = Box::pin(over(closed, goaway, heard));
            // Established once the server has answered: before that, nothing says it has even
            // accepted the connection.
            let early_end = tokio::select! {
                // The verdict on the server's first frame comes before HTTP/2 reads it, so what
                // the server sent is named even when HTTP/2 then fails on it.
                biased;
                receipt = preface => match receipt {
                    Ok(Ok(())) => None,
                    Ok(Err(message)) => Some(message),
                    Err(_) => Some((&mut closed).await),
                },
                reason = &mut closed => Some(reason),
            };
            if let Some(reason) = early_end {
                connection.mark_broken(reason.clone());
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("no HTTP/2 preface from the server: {reason}"),
                ));
            }
            if let Some(goaway) = connection.state.goaway.get() {
                // Refused with its first words: a failed attempt (which backs off), not a
                // connection that is READY for a moment.
                let reason = format!("{goaway} with its preface");
                connection.mark_broken(reason.clone());
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, reason));
            }
            let connected = match health {
                None => Connected::new(connection, closed),
                Some(check) => health::connect(check, connection, closed).await?,
            };
            Ok(match orca_oob {
                None => connected,
                Some(period) => orca::attach(connected, period),
            })
        };
        self.options.bound(address, attempt)
    }
}

/// When the connection is over for the balancer: at the server's GOAWAY (the subchannel leaves
/// READY at once, and a health check's stream ends), while the calls open on it run to their
/// end; or when it ends. A GOAWAY is read before HTTP/2 acts on it, so one that ended the
/// connection is always seen first.
async fn over(
    ended: oneshot::Receiver<String>,
    goaway: Arc<GoAwaySignal>,
    heard: impl Fn(&GoAway),
) -> String {
    tokio::select! {
        biased;
        goaway = goaway.arrived() => {
            heard(&goaway);
            format!("{goaway}: the connection drains and takes no new call")
        }
        reason = ended => reason.unwrap_or_else(|_| "the HTTP/2 connection task ended".to_owned()),
    }
}
