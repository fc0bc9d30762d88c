//! Tonic echo servers that follow a script: fail the first calls with given codes and pushback,
//! answer the first one slowly, and record what each call carried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use croupier_echo_grpc::pb::echo_server::{Echo, EchoServer};
use croupier_echo_grpc::{EchoRequest, EchoResponse};
use tokio::sync::Notify;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

/// What a set of scripted servers do, and what they saw: shared, so that "the first call"
/// means the first to reach any of them.
#[derive(Default)]
pub(crate) struct Script {
    /// Call `n` fails with `failures[n]`'s code and `grpc-retry-pushback-ms`, if it names one
    /// (and succeeds if it is `None`).
    pub(crate) failures: Vec<Option<(tonic::Code, Option<&'static str>)>>,
    /// Every call past `failures` fails with this code, if set.
    pub(crate) fail_rest: Option<tonic::Code>,
    /// The first call is answered after this long.
    pub(crate) slow_first: Option<Duration>,
    /// Every call is answered after this long (the first after `slow_first`, if set).
    pub(crate) slow_all: Option<Duration>,
    pub(crate) calls: AtomicUsize,
    /// Each call, in order.
    pub(crate) seen: Mutex<Vec<Seen>>,
    /// Calls dropped unanswered (their client reset the stream).
    pub(crate) cancelled: AtomicUsize,
    pub(crate) cancel: Notify,
}

impl Script {
    pub(crate) fn failing(n: usize, code: tonic::Code) -> Self {
        Script::failing_with(vec![(code, None); n])
    }

    pub(crate) fn failing_with(failures: Vec<(tonic::Code, Option<&'static str>)>) -> Self {
        Script {
            failures: failures.into_iter().map(Some).collect(),
            ..Script::default()
        }
    }

    /// How call `n` fails, if it does.
    fn failure(&self, n: usize) -> Option<(tonic::Code, Option<&'static str>)> {
        match self.failures.get(n) {
            Some(failure) => *failure,
            None => self.fail_rest.map(|code| (code, None)),
        }
    }

    pub(crate) fn previous_attempts(&self) -> Vec<Option<String>> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|call| call.previous.clone()).collect()
    }

    pub(crate) fn messages(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|call| call.message.clone()).collect()
    }

    /// Each call's `grpc-timeout`, in microseconds.
    pub(crate) fn timeouts(&self) -> Vec<u64> {
        let seen = self.seen.lock().unwrap();
        let micros = |timeout: &str| timeout.strip_suffix('u').and_then(|n| n.parse().ok());
        seen.iter()
            .map(|call| {
                call.timeout
                    .as_deref()
                    .and_then(micros)
                    .expect("a timeout in µs")
            })
            .collect()
    }

    /// The client address of each call: one connection's calls share it.
    pub(crate) fn peers(&self) -> Vec<Option<std::net::SocketAddr>> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|call| call.peer).collect()
    }

    /// For each call, how many calls the server had seen reset when it came.
    pub(crate) fn cancelled_before(&self) -> Vec<usize> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|call| call.cancelled_before).collect()
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// What a scripted server saw of one call.
pub(crate) struct Seen {
    /// Its `grpc-previous-rpc-attempts`.
    previous: Option<String>,
    message: String,
    /// Its `grpc-timeout`.
    timeout: Option<String>,
    /// The address it came from.
    peer: Option<std::net::SocketAddr>,
    /// How many calls the server had seen reset when it came.
    cancelled_before: usize,
}

/// Counts its call cancelled if dropped before it is answered.
struct Unanswered(Option<Arc<Script>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(script) = self.0.take() {
            script.cancelled.fetch_add(1, Ordering::SeqCst);
            script.cancel.notify_one();
        }
    }
}

struct Scripted {
    port: u16,
    script: Arc<Script>,
}

#[tonic::async_trait]
impl Echo for Scripted {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        let script = &self.script;
        let n = script.calls.fetch_add(1, Ordering::SeqCst);
        let header = |name: &str| {
            let value = request.metadata().get(name)?;
            value.to_str().ok().map(str::to_owned)
        };
        let previous = header("grpc-previous-rpc-attempts");
        let timeout = header("grpc-timeout");
        let peer = request.remote_addr();
        let message = request.into_inner().message;
        script.seen.lock().unwrap().push(Seen {
            previous,
            message: message.clone(),
            timeout,
            peer,
            cancelled_before: script.cancelled.load(Ordering::SeqCst),
        });
        if let Some((code, pushback)) = script.failure(n) {
            let mut metadata = MetadataMap::new();
            if let Some(pushback) = pushback {
                metadata.insert("grpc-retry-pushback-ms", pushback.parse().unwrap());
            }
            return Err(Status::with_metadata(
                code,
                format!("call {n} fails"),
                metadata,
            ));
        }
        let slow = match n {
            0 => script.slow_first.or(script.slow_all),
            _ => script.slow_all,
        };
        if let Some(slow) = slow {
            let mut unanswered = Unanswered(Some(Arc::clone(script)));
            tokio::time::sleep(slow).await;
            unanswered.0 = None;
        }
        Ok(Response::new(EchoResponse {
            message: format!("{message} (from :{})", self.port),
        }))
    }

    type ServerStreamingEchoStream = std::pin::Pin<
        Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<EchoResponse, Status>> + Send>,
    >;

    async fn server_streaming_echo(
        &self,
        _request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamingEchoStream>, Status> {
        Err(Status::unimplemented(
            "scripted servers answer UnaryEcho only",
        ))
    }
}

/// Starts `n` tonic servers on loopback that follow `script`; their addresses.
pub(crate) async fn scripted(n: usize, script: &Arc<Script>) -> Vec<std::net::SocketAddr> {
    let mut addresses = Vec::new();
    for _ in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = EchoServer::new(Scripted {
            port: address.port(),
            script: Arc::clone(script),
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        addresses.push(address);
    }
    addresses
}

pub(crate) fn target_of(addresses: &[std::net::SocketAddr]) -> String {
    let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    format!("ipv4:{}", listed.join(","))
}
