//! The gRPC echo service of croupier's examples and tests (`grpc.examples.echo.Echo`, from
//! `proto/echo.proto`), and tonic servers of it on loopback.
//!
//! A server answers `UnaryEcho` with `"<message> (from :<port>)"`, as gRPC's load-balancing
//! example does, and `ServerStreamingEcho` with that reply several times, a while apart (see
//! [`ServerOptions::stream`]): a call that stays open. It also serves the standard health service (`grpc.health.v1.Health`) unless
//! asked not to. It runs on a thread and runtime of its own, so that it can be stopped two ways:
//! gracefully ([`GrpcEchoServer::shutdown`]: GOAWAY, in-flight calls finish) or abruptly
//! ([`GrpcEchoServer::kill`]: every socket is dropped at once, as when a process dies).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// The messages, client and server generated from `proto/echo.proto`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("grpc.examples.echo");
}

pub use pb::echo_client::EchoClient;
pub use pb::{EchoRequest, EchoResponse};
pub use tonic_health::ServingStatus;

/// The Echo service: replies with the message and the port it was served on.
#[derive(Debug, Clone)]
struct Echo {
    port: u16,
    calls: Arc<AtomicUsize>,
    /// Calls whose message is this fail with `FAILED_PRECONDITION`.
    fail_message: Option<String>,
    /// `ServerStreamingEcho` sends this many replies, one every `interval`.
    stream: (usize, Duration),
}

impl Echo {
    fn reply(&self, message: &str) -> EchoResponse {
        EchoResponse {
            message: format!("{message} (from :{})", self.port),
        }
    }
}

#[tonic::async_trait]
impl pb::echo_server::Echo for Echo {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let message = request.into_inner().message;
        if self.fail_message.as_deref() == Some(message.as_str()) {
            return Err(Status::failed_precondition(format!(
                "this server refuses {message:?}"
            )));
        }
        Ok(Response::new(self.reply(&message)))
    }

    type ServerStreamingEchoStream =
        tokio_stream::wrappers::ReceiverStream<Result<EchoResponse, Status>>;

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamingEchoStream>, Status> {
        let reply = self.reply(&request.into_inner().message);
        let (count, interval) = self.stream;
        let (replies, stream) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..count {
                if i > 0 {
                    tokio::time::sleep(interval).await;
                }
                if replies.send(Ok(reply.clone())).await.is_err() {
                    return; // the client cancelled the call
                }
            }
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
    stream: (usize, Duration),
    max_concurrent_streams: Option<u32>,
    max_connection_age: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            health: false,
            fail_message: None,
            stream: (10, Duration::from_millis(50)),
            max_concurrent_streams: None,
            max_connection_age: None,
        }
    }
}

impl ServerOptions {
    /// Echo only, no health service; a `ServerStreamingEcho` call gets 10 replies, 50 ms apart.
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
}

/// A tonic Echo server on 127.0.0.1, on a thread of its own.
#[derive(Debug)]
pub struct GrpcEchoServer {
    address: SocketAddr,
    calls: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
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
        let calls = Arc::new(AtomicUsize::new(0));
        let echo = pb::echo_server::EchoServer::new(Echo {
            port: address.port(),
            calls: Arc::clone(&calls),
            fail_message: options.fail_message,
            stream: options.stream,
        });
        let max_concurrent_streams = options.max_concurrent_streams;
        let max_connection_age = options.max_connection_age;
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
                        let incoming = tokio_stream::StreamExt::map(
                            tokio_stream::wrappers::TcpListenerStream::new(listener),
                            move |connection| {
                                accepted.fetch_add(1, Ordering::SeqCst);
                                connection
                            },
                        );
                        let mut server = tonic::transport::Server::builder()
                            .max_concurrent_streams(max_concurrent_streams);
                        if let Some(age) = max_connection_age {
                            server = server.max_connection_age(age);
                        }
                        server
                            .add_optional_service(health_service)
                            .add_service(echo)
                            .serve_with_incoming_shutdown(incoming, async {
                                let _ = graceful_rx.await;
                            })
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
            calls,
            connections,
            health,
            graceful: Some(graceful),
            kill: Some(kill),
            stopped: Some(stopped),
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The `UnaryEcho` calls it has received.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
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
