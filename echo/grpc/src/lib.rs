//! The gRPC echo service of croupier's examples and tests (`grpc.examples.echo.Echo`, from
//! `proto/echo.proto`), and tonic servers of it on loopback.
//!
//! A server answers `UnaryEcho` with `"<message> (from :<port>)"`, as gRPC's load-balancing
//! example does, and `ServerStreamingEcho` with that reply [`STREAMED_REPLIES`] times (or as
//! often and as far apart as [`ServerOptions::stream`] says: a call that stays open); it can be
//! told to fail or to stall on a given message ([`ServerOptions`]). It also serves the standard health service (`grpc.health.v1.Health`) unless
//! asked not to, and can report its load as ORCA does (gRFC A51: [`orca`]), with every response
//! or on the out-of-band stream. It runs on a thread and runtime of its own, so that it can be stopped two ways:
//! gracefully ([`GrpcEchoServer::shutdown`]: GOAWAY, in-flight calls finish) or abruptly
//! ([`GrpcEchoServer::kill`]: every socket is dropped at once, as when a process dies).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// The messages, client and server generated from `proto/echo.proto`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("grpc.examples.echo");
}

pub mod orca;
mod seen;
#[cfg(feature = "tls")]
pub mod tls;

use orca::pb::xds::service::orca::v3 as pb_orca;
pub use pb::echo_client::EchoClient;
pub use pb::{EchoRequest, EchoResponse};
pub use seen::SeenRequest;
pub use tonic_health::ServingStatus;

/// How many replies `ServerStreamingEcho` sends to a call it answers in full.
pub const STREAMED_REPLIES: usize = 3;

/// What a server counts of the calls it receives.
#[derive(Debug, Default)]
struct Tally {
    calls: AtomicUsize,
    /// Calls dropped before they were answered: the client reset their streams.
    cancelled: AtomicUsize,
    /// The `grpc-timeout` of the last call, if it had one.
    grpc_timeout: Mutex<Option<String>>,
    /// How long each `UnaryEcho` call waits before its reply, in microseconds.
    delay_micros: AtomicU64,
}

/// The Echo service: replies with the message and the port it was served on.
#[derive(Debug, Clone)]
struct Echo {
    port: u16,
    tally: Arc<Tally>,
    /// Calls whose message is this fail with `FAILED_PRECONDITION`.
    fail_message: Option<String>,
    /// Calls whose message is this are never answered (a stream: never ended).
    stall_message: Option<String>,
    /// `ServerStreamingEcho` sends this many replies, one every `interval`.
    stream: (usize, Duration),
}

impl Echo {
    /// Counts a call, and fails it if its message is the one to refuse.
    fn receive(&self, request: Request<EchoRequest>) -> Result<String, Status> {
        self.tally.calls.fetch_add(1, Ordering::SeqCst);
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        if let Ok(mut last) = self.tally.grpc_timeout.lock() {
            *last = timeout;
        }
        let message = request.into_inner().message;
        if self.fail_message.as_deref() == Some(message.as_str()) {
            return Err(Status::failed_precondition(format!(
                "this server refuses {message:?}"
            )));
        }
        Ok(message)
    }

    fn reply(&self, message: &str) -> EchoResponse {
        EchoResponse {
            message: format!("{message} (from :{})", self.port),
        }
    }

    fn stalls(&self, message: &str) -> bool {
        self.stall_message.as_deref() == Some(message)
    }
}

/// Counts its call as cancelled if dropped before it is answered.
#[derive(Debug)]
struct Unanswered {
    cancelled: Option<Arc<Tally>>,
}

impl Unanswered {
    fn answered(&mut self) {
        self.cancelled = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(tally) = self.cancelled.take() {
            tally.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tonic::async_trait]
impl pb::echo_server::Echo for Echo {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let message = self.receive(request)?;
        if self.stalls(&message) {
            let _call = Unanswered {
                cancelled: Some(Arc::clone(&self.tally)),
            };
            // Ends only when the server drops the call: the client reset its stream.
            std::future::pending::<()>().await;
        }
        let delay = self.tally.delay_micros.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_micros(delay)).await;
        }
        Ok(Response::new(self.reply(&message)))
    }

    type ServerStreamingEchoStream =
        tokio_stream::wrappers::ReceiverStream<Result<EchoResponse, Status>>;

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamingEchoStream>, Status> {
        let message = self.receive(request)?;
        let stall = self.stalls(&message);
        let reply = self.reply(&message);
        let (count, interval) = if stall {
            (1, Duration::ZERO)
        } else {
            self.stream
        };
        let mut call = Unanswered {
            cancelled: Some(Arc::clone(&self.tally)),
        };
        let (replies, stream) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..count {
                if i > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                if replies.send(Ok(reply.clone())).await.is_err() {
                    return; // the client reset the stream: `call` counts it cancelled
                }
            }
            if stall {
                // The stream stays open until the client resets it.
                replies.closed().await;
                return;
            }
            call.answered();
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            stream,
        )))
    }
}

/// How to start a [`GrpcEchoServer`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    health: bool,
    fail_message: Option<String>,
    stall_message: Option<String>,
    stream: (usize, Duration),
    max_concurrent_streams: Option<u32>,
    max_connection_age: Option<Duration>,
    load_report: Option<http::HeaderValue>,
    oob_load_report: Option<orca::OrcaLoadReport>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tls::rustls::ServerConfig>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            health: false,
            fail_message: None,
            stall_message: None,
            stream: (STREAMED_REPLIES, Duration::ZERO),
            max_concurrent_streams: None,
            max_connection_age: None,
            load_report: None,
            oob_load_report: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ServerOptions {
    /// Echo only, no health service; a `ServerStreamingEcho` call gets [`STREAMED_REPLIES`]
    /// replies at once.
    pub fn new() -> Self {
        ServerOptions::default()
    }

    /// A `ServerStreamingEcho` call gets `count` replies, `interval` apart.
    pub fn stream(mut self, count: usize, interval: Duration) -> Self {
        self.stream = (count, interval);
        self
    }

    /// Closes each connection gracefully (GOAWAY, its calls finish) once it is `age` old.
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// At most `max` calls at once on each connection (HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = Some(max);
        self
    }

    /// Also serve `grpc.health.v1.Health` (starting SERVING for the whole server, `""`).
    pub fn health(mut self, health: bool) -> Self {
        self.health = health;
        self
    }

    /// Fail calls whose message is `message` with `FAILED_PRECONDITION`.
    pub fn fail_message(mut self, message: impl Into<String>) -> Self {
        self.fail_message = Some(message.into());
        self
    }

    /// Never answer calls whose message is `message`: a `UnaryEcho` gets no response at all, a
    /// `ServerStreamingEcho` one reply and then nothing, its stream left open. A server whose
    /// handler hangs, for testing what bounds a call on the client's side.
    pub fn stall_message(mut self, message: impl Into<String>) -> Self {
        self.stall_message = Some(message.into());
        self
    }

    /// Put `report` in every response, as ORCA's per-call load report (gRFC A51): the trailer
    /// `endpoint-load-metrics-bin`, or a header of a response without a body.
    pub fn load_report(self, report: &orca::OrcaLoadReport) -> Self {
        self.load_report_value(orca::trailer_value(report))
    }

    /// Put `value` in every response as the `endpoint-load-metrics-bin` trailer, as it is (a
    /// garbled one, say).
    pub fn load_report_value(mut self, value: http::HeaderValue) -> Self {
        self.load_report = Some(value);
        self
    }

    /// Also serve ORCA's out-of-band `xds.service.orca.v3.OpenRcaService`, whose
    /// `StreamCoreMetrics` sends `report` at the interval each call asks for (at least
    /// [`orca::MIN_REPORT_INTERVAL`]).
    pub fn oob_load_report(mut self, report: orca::OrcaLoadReport) -> Self {
        self.oob_load_report = Some(report);
        self
    }

    /// Serve over TLS with `config` (see [`tls::server_config`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<tls::rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

/// A tonic Echo server on 127.0.0.1, on a thread of its own.
#[derive(Debug)]
pub struct GrpcEchoServer {
    address: SocketAddr,
    tally: Arc<Tally>,
    connections: Arc<AtomicUsize>,
    seen: seen::Seen,
    /// The report interval the last `StreamCoreMetrics` call asked for.
    report_interval: Arc<Mutex<Option<Duration>>>,
    health: Option<tonic_health::server::HealthReporter>,
    graceful: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl GrpcEchoServer {
    /// Starts a server on `127.0.0.1:port` (port 0: any free port).
    pub async fn start(port: u16, options: ServerOptions) -> io::Result<GrpcEchoServer> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let tally = Arc::new(Tally::default());
        let echo = pb::echo_server::EchoServer::new(Echo {
            port: address.port(),
            tally: Arc::clone(&tally),
            fail_message: options.fail_message,
            stall_message: options.stall_message,
            stream: options.stream,
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let (health, health_service) = if options.health {
            let (reporter, service) = tonic_health::server::health_reporter();
            reporter
                .set_service_status("", tonic_health::ServingStatus::Serving)
                .await;
            (Some(reporter), Some(service))
        } else {
            (None, None)
        };
        let seen = seen::Seen::default();
        let mut server = tonic::transport::Server::builder()
            .max_concurrent_streams(options.max_concurrent_streams);
        if let Some(age) = options.max_connection_age {
            server = server.max_connection_age(age);
        }
        let report_interval = Arc::new(Mutex::new(None));
        let oob = options.oob_load_report.map(|report| {
            pb_orca::open_rca_service_server::OpenRcaServiceServer::new(orca::OpenRca {
                report,
                asked: Arc::clone(&report_interval),
            })
        });
        let router = server
            .layer(seen::RecordLayer(Arc::clone(&seen)))
            .layer(orca::TrailerLayer(options.load_report))
            .add_optional_service(health_service)
            .add_optional_service(oob)
            .add_service(echo);
        #[cfg(feature = "tls")]
        let tls = options.tls;
        let (graceful, graceful_rx) = oneshot::channel::<()>();
        let (kill, kill_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("grpc-echo-{}", address.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let serve = async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let graceful = async {
                            let _ = graceful_rx.await;
                        };
                        #[cfg(feature = "tls")]
                        if let Some(config) = tls {
                            let counted = Arc::clone(&accepted);
                            let incoming = tokio_stream::StreamExt::map(
                                tls::incoming(listener, config),
                                move |connection| {
                                    counted.fetch_add(1, Ordering::SeqCst);
                                    connection
                                },
                            );
                            return router
                                .serve_with_incoming_shutdown(incoming, graceful)
                                .await
                                .map_err(io::Error::other);
                        }
                        let incoming = tokio_stream::StreamExt::map(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            move |connection| {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                connection
                            },
                        );
                        router
                            .serve_with_incoming_shutdown(incoming, graceful)
                            .await
                            .map_err(io::Error::other)
                    };
                    tokio::select! {
                        _ = serve => {}
                        _ = kill_rx => {}
                    }
                });
                // Dropping the runtime drops every connection task and socket at once.
                drop(runtime);
                let _ = stopped_tx.send(());
            })?;
        Ok(GrpcEchoServer {
            address,
            tally,
            connections,
            seen,
            report_interval,
            health,
            graceful: Some(graceful),
            kill: Some(kill),
            stopped: Some(stopped),
        })
    }

    /// The report interval the last out-of-band load report stream asked for
    /// ([`ServerOptions::oob_load_report`]), if one did.
    pub fn report_interval(&self) -> Option<Duration> {
        self.report_interval.lock().ok().and_then(|asked| *asked)
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Makes every `UnaryEcho` call from now on wait `delay` before its reply (none at first):
    /// a server that turns slow, and recovers.
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.tally.delay_micros.store(micros, Ordering::Relaxed);
    }

    /// The calls it has received, of either method.
    pub fn calls(&self) -> usize {
        self.tally.calls.load(Ordering::SeqCst)
    }

    /// The calls it dropped unanswered because their client reset the stream (stalled calls
    /// whose client gave up, see [`ServerOptions::stall_message`]).
    pub fn cancelled(&self) -> usize {
        self.tally.cancelled.load(Ordering::SeqCst)
    }

    /// The `grpc-timeout` header of the last call it received (`None` if it had none): the
    /// deadline its client told it.
    pub fn last_grpc_timeout(&self) -> Option<String> {
        self.tally
            .grpc_timeout
            .lock()
            .ok()
            .and_then(|last| last.clone())
    }

    /// The connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The names (`:authority`, `:scheme`, `user-agent`) of every request it has received, in
    /// order, health checks included.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }

    /// Sets the health status of the whole server (`""`); does nothing without a health service.
    pub async fn set_health(&self, status: ServingStatus) {
        if let Some(reporter) = &self.health {
            reporter.set_service_status("", status).await;
        }
    }

    /// Stops gracefully: sends GOAWAY, lets in-flight calls finish, then closes; returns once
    /// every connection is closed.
    pub async fn shutdown(mut self) {
        if let Some(graceful) = self.graceful.take() {
            let _ = graceful.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }

    /// Stops abruptly: the listener and every connection are dropped at once, as when the
    /// process dies; returns once they are.
    pub async fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for GrpcEchoServer {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}
