//! The gRPC echo service of croupier's examples and tests (`grpc.examples.echo.Echo`, from
//! `proto/echo.proto`), and tonic servers of it on loopback.
//!
//! A server answers `UnaryEcho` with `"<message> (from :<port>)"`, as gRPC's load-balancing
//! example does, and also serves the standard health service (`grpc.health.v1.Health`) unless
//! asked not to. It runs on a thread and runtime of its own, so that it can be stopped two ways:
//! gracefully ([`GrpcEchoServer::shutdown`]: GOAWAY, in-flight calls finish) or abruptly
//! ([`GrpcEchoServer::kill`]: every socket is dropped at once, as when a process dies).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// The messages, client and server generated from `proto/echo.proto`.
#[allow(missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("grpc.examples.echo");
}

mod seen;
#[cfg(feature = "tls")]
pub mod tls;

pub use pb::echo_client::EchoClient;
pub use pb::{EchoRequest, EchoResponse};
pub use seen::SeenRequest;
pub use tonic_health::ServingStatus;

/// The Echo service: replies with the message and the port it was served on.
#[derive(Debug, Clone)]
struct Echo {
    port: u16,
    calls: Arc<AtomicUsize>,
    /// Calls whose message is this fail with `FAILED_PRECONDITION`.
    fail_message: Option<String>,
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
        Ok(Response::new(EchoResponse {
            message: format!("{message} (from :{})", self.port),
        }))
    }
}

/// How to start a [`GrpcEchoServer`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    health: bool,
    fail_message: Option<String>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tls::rustls::ServerConfig>>,
}

impl ServerOptions {
    /// Echo only, no health service.
    pub fn new() -> Self {
        ServerOptions::default()
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
    calls: Arc<AtomicUsize>,
    seen: seen::Seen,
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
        });
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
        let router = tonic::transport::Server::builder()
            .layer(seen::RecordLayer(Arc::clone(&seen)))
            .add_optional_service(health_service)
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
                            let incoming = tls::incoming(listener, config);
                            return router
                                .serve_with_incoming_shutdown(incoming, graceful)
                                .await
                                .map_err(io::Error::other);
                        }
                        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
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
            calls,
            seen,
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
