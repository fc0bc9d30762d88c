//! Message size limits through croupier's gRPC channel, against real tonic servers on loopback:
//! the channel's own (`max_decoding_message_size`, `max_encoding_message_size`) and a method's
//! from the service config (`maxResponseMessageBytes`, `maxRequestMessageBytes`), the lower of
//! the two holding. A response message over the limit ends its call `RESOURCE_EXHAUSTED` and
//! resets its stream only; a request message over it is never sent, nor retried.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use croupier_echo_grpc::pb::echo_server::{Echo, EchoServer};
use croupier_echo_grpc::{EchoClient, EchoRequest, EchoResponse, GrpcEchoServer, ServerOptions};
use croupier_tokio::croupier::retry::{CodeSet, HedgingPolicy, RetryPolicy};
use croupier_tokio::croupier::Code as CroupierCode;
use support::{call, echo, send, GrpcChannel, PATIENCE};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

/// The length of `EchoResponse { message }` as protobuf encodes it: a tag, a varint length,
/// the text (nothing at all for an empty one).
fn encoded_len(text: usize) -> usize {
    if text == 0 {
        return 0;
    }
    let mut varint = 1;
    while text >> (7 * varint) > 0 {
        varint += 1;
    }
    1 + varint + text
}

/// A text whose `EchoResponse` encodes to exactly `size` bytes.
fn text_of_encoded(size: usize) -> String {
    let text = (0..size)
        .rev()
        .find(|&text| encoded_len(text) == size)
        .expect("a size protobuf can encode");
    "x".repeat(text)
}

/// An Echo service whose replies are of exact encoded sizes: `UnaryEcho` of `"<n>"` answers
/// with a message of `n` bytes, and `ServerStreamingEcho` of `"<n>,<m>,..."` with one message
/// per size (and, with `",open"` after them, holds the stream open until the client resets
/// it). It counts the calls whose request it received, and the streams the client reset.
#[derive(Clone, Default)]
struct Sized {
    calls: Arc<AtomicUsize>,
    reset: Arc<AtomicUsize>,
}

/// The sizes a request asks for.
fn sizes(request: &EchoRequest) -> Result<Vec<usize>, Status> {
    request
        .message
        .split(',')
        .map(|size| size.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| Status::invalid_argument("sizes, comma-separated"))
}

fn reply(size: usize) -> EchoResponse {
    EchoResponse {
        message: text_of_encoded(size),
    }
}

#[tonic::async_trait]
impl Echo for Sized {
    async fn unary_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let request = request.into_inner();
        match sizes(&request) {
            Ok(sizes) => Ok(Response::new(reply(sizes[0]))),
            // Not a size: an echo, for requests of any length.
            Err(_) => Ok(Response::new(EchoResponse {
                message: request.message,
            })),
        }
    }

    type ServerStreamingEchoStream = ReceiverStream<Result<EchoResponse, Status>>;

    async fn server_streaming_echo(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<Self::ServerStreamingEchoStream>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut request = request.into_inner();
        let open = request.message.ends_with(",open");
        if open {
            request
                .message
                .truncate(request.message.len() - ",open".len());
        }
        let sizes = sizes(&request)?;
        let (replies, stream) = tokio::sync::mpsc::channel(sizes.len().max(1));
        for size in sizes {
            // All queued at once: the server may put several in one DATA frame.
            let _ = replies.try_send(Ok(reply(size)));
        }
        if open {
            let reset = Arc::clone(&self.reset);
            tokio::spawn(async move {
                replies.closed().await;
                reset.fetch_add(1, Ordering::SeqCst);
            });
        }
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

/// A tonic server of [`Sized`] on loopback: its address and call count.
async fn sized_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let (address, service) = sized_server_of().await;
    (address, service.calls)
}

/// A tonic server of [`Sized`] on loopback: its address and what it counts.
async fn sized_server_of() -> (std::net::SocketAddr, Sized) {
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .expect("a free port on loopback");
    let address = incoming.local_addr().unwrap();
    let service = Sized::default();
    let server = tonic::transport::Server::builder().add_service(EchoServer::new(service.clone()));
    tokio::spawn(server.serve_with_incoming(incoming));
    (address, service)
}

/// A channel to `address`, as `build` sets it up.
fn channel(
    address: std::net::SocketAddr,
    build: impl FnOnce(
        croupier_tokio::grpc::GrpcChannelBuilder<tonic::body::Body>,
    ) -> croupier_tokio::grpc::GrpcChannelBuilder<tonic::body::Body>,
) -> EchoClient<GrpcChannel> {
    let builder = croupier_tokio::grpc::builder(format!("ipv4:{address}"));
    EchoClient::new(build(builder).build().unwrap())
}

/// A service config whose one entry names the echo service's methods with `settings`.
fn echo_config(settings: &str) -> String {
    format!(
        r#"{{"methodConfig": [{{
            "name": [{{"service": "grpc.examples.echo.Echo"}}],
            {settings}
        }}]}}"#
    )
}

fn assert_too_large(status: &Status, size: usize, limit: usize) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let message = status.message();
    assert!(
        message.contains(&format!("message of {size} bytes"))
            && message.contains(&format!("limit of {limit} bytes")),
        "the message names the size and the limit: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_exactly_at_the_limit_passes_and_one_byte_over_fails() {
    let (address, _) = sized_server().await;
    let mut client = channel(address, |b| b.max_decoding_message_size(1000));
    assert_eq!(call(&mut client, "1000").await.unwrap().len(), 997);
    let status = call(&mut client, "1001").await.unwrap_err();
    assert_too_large(&status, 1001, 1000);
    assert!(
        status.message().contains(&address.to_string()),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_receive_limit_is_4_mib() {
    let (address, _) = sized_server().await;
    // tonic's own limit raised, so that the channel's is the one met.
    let mut client = channel(address, |b| b).max_decoding_message_size(usize::MAX);
    let limit = 4 * 1024 * 1024;
    assert_eq!(
        encoded_len(call(&mut client, &limit.to_string()).await.unwrap().len()),
        limit
    );
    let status = call(&mut client, &(limit + 1).to_string())
        .await
        .unwrap_err();
    assert_too_large(&status, limit + 1, limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_limit_tighter_than_the_channels_holds() {
    let (address, _) = sized_server().await;
    let config = echo_config(r#""maxResponseMessageBytes": 500"#);
    let mut client = channel(address, |b| {
        b.max_decoding_message_size(1000)
            .default_service_config(config.as_str())
    });
    assert!(call(&mut client, "500").await.is_ok());
    assert_too_large(&call(&mut client, "501").await.unwrap_err(), 501, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_limit_looser_than_the_channels_does_not_raise_it() {
    let (address, _) = sized_server().await;
    let config = echo_config(r#""maxResponseMessageBytes": 100000"#);
    let mut client = channel(address, |b| {
        b.max_decoding_message_size(1000)
            .default_service_config(config.as_str())
    });
    assert!(call(&mut client, "1000").await.is_ok());
    assert_too_large(&call(&mut client, "5000").await.unwrap_err(), 5000, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_methods_limit_alone_raises_grpcs_default() {
    let (address, _) = sized_server().await;
    let config = echo_config(r#""maxResponseMessageBytes": 5000000"#);
    let mut client = channel(address, |b| b.default_service_config(config.as_str()))
        .max_decoding_message_size(usize::MAX);
    assert!(call(&mut client, "4500000").await.is_ok());
    assert_too_large(
        &call(&mut client, "5000001").await.unwrap_err(),
        5_000_001,
        5_000_000,
    );
}

/// Reads a `ServerStreamingEcho` of `sizes`: the sizes of the messages received, then how it
/// ended.
async fn stream(
    client: &mut EchoClient<GrpcChannel>,
    sizes: &str,
) -> (Vec<usize>, Result<(), Status>) {
    let mut request = echo(sizes);
    request.set_timeout(PATIENCE);
    let read = async {
        let mut received = Vec::new();
        let mut replies = match client.server_streaming_echo(request).await {
            Ok(replies) => replies.into_inner(),
            Err(status) => return (received, Err(status)),
        };
        loop {
            match replies.message().await {
                Ok(Some(reply)) => received.push(encoded_len(reply.message.len())),
                Ok(None) => return (received, Ok(())),
                Err(status) => return (received, Err(status)),
            }
        }
    };
    tokio::time::timeout(PATIENCE * 2, read)
        .await
        .expect("a stream ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivers_the_messages_before_an_oversized_one_and_then_fails() {
    let (address, _) = sized_server().await;
    let mut client = channel(address, |b| b.max_decoding_message_size(1000));
    let (received, ended) = stream(&mut client, "10,1000,200,1001,10").await;
    assert_eq!(received, [10, 1000, 200]);
    assert_too_large(&ended.unwrap_err(), 1001, 1000);
    // Messages past the first over the limit never count: a stream within it ends well.
    let (received, ended) = stream(&mut client, "10,1000,200,10").await;
    assert_eq!(received, [10, 1000, 200, 10]);
    assert!(ended.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_ends_the_call_at_its_header_and_resets_the_stream() {
    let (address, server) = sized_server_of().await;
    let mut client = channel(address, |b| b.max_decoding_message_size(1000))
        .max_decoding_message_size(usize::MAX);
    // 5 MB announced, on a stream the server never ends: the call ends without waiting for
    // the message, or for the stream's end.
    let (received, ended) = stream(&mut client, "10,5000000,open").await;
    assert_eq!(received, [10]);
    assert_too_large(&ended.unwrap_err(), 5_000_000, 1000);
    // The server hears the reset.
    tokio::time::timeout(PATIENCE, async {
        while server.reset.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the stream was reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_resets_its_stream_and_the_connection_goes_on() {
    let server = GrpcEchoServer::start(
        0,
        ServerOptions::new().stream(20, Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(format!("ipv4:{}", server.address()))
        .max_decoding_message_size(1000)
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    assert!(call(&mut client, "warm").await.is_ok());
    // A long stream on the same connection, open across the reset.
    let mut streaming = client.clone();
    let long = tokio::spawn(async move {
        let mut request = echo("along");
        request.set_timeout(PATIENCE);
        let mut replies = streaming.server_streaming_echo(request).await?.into_inner();
        let mut count = 0;
        while replies.message().await?.is_some() {
            count += 1;
        }
        Ok::<_, Status>(count)
    });
    let status = call(&mut client, &"y".repeat(2000)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The next call goes on the same connection.
    assert!(call(&mut client, "after").await.is_ok());
    let streamed = tokio::time::timeout(PATIENCE, long).await.unwrap().unwrap();
    assert_eq!(streamed.unwrap(), 20);
    assert_eq!(server.connections(), 1);
    // The server heard the reset: the oversized call counts as cancelled, or as answered
    // (its reply was written before the reset reached it); the connection was not closed.
    assert_eq!(server.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_send_limit_is_never_sent() {
    let (address, calls) = sized_server().await;
    let mut client = channel(address, |b| b.max_encoding_message_size(1000));
    // "7" and two bytes of protobuf framing: 3 bytes.
    assert!(call(&mut client, "7").await.is_ok());
    let message = "z".repeat(1200);
    let status = call(&mut client, &message).await.unwrap_err();
    assert_too_large(&status, 1203, 1000);
    assert!(status.message().contains("request message"), "{status:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the server never saw it");
    assert!(call(&mut client, "8").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_methods_request_limit_holds_and_its_failure_is_not_retried() {
    let (address, calls) = sized_server().await;
    let config = echo_config(
        r#""maxRequestMessageBytes": 100,
           "retryPolicy": {
               "maxAttempts": 5, "initialBackoff": "0.01s", "maxBackoff": "0.01s",
               "backoffMultiplier": 1, "retryableStatusCodes": ["RESOURCE_EXHAUSTED"]
           }"#,
    );
    let mut client = channel(address, |b| {
        b.max_encoding_message_size(1000)
            .default_service_config(config.as_str())
    });
    let status = call(&mut client, &"z".repeat(200)).await.unwrap_err();
    assert_too_large(&status, 203, 100);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(call(&mut client, "9").await.is_ok());
    // The builder's retry policy, too, leaves it alone.
    let mut client = channel(address, |b| {
        b.max_encoding_message_size(100).retry_policy(
            RetryPolicy::new(
                5,
                Duration::from_millis(10),
                Duration::from_millis(10),
                1.0,
                CodeSet::new().with(CroupierCode::ResourceExhausted),
            )
            .unwrap(),
        )
    });
    let mut request = echo(&"z".repeat(200));
    request.set_timeout(PATIENCE);
    let status = send(&mut client, request).await.unwrap_err();
    assert_too_large(&status, 203, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_is_not_retried_for_its_call_was_committed() {
    let (address, calls) = sized_server().await;
    let config = echo_config(
        r#""maxResponseMessageBytes": 100,
           "retryPolicy": {
               "maxAttempts": 5, "initialBackoff": "0.01s", "maxBackoff": "0.01s",
               "backoffMultiplier": 1, "retryableStatusCodes": ["RESOURCE_EXHAUSTED"]
           }"#,
    );
    let mut client = channel(address, |b| b.default_service_config(config.as_str()));
    assert_too_large(&call(&mut client, "101").await.unwrap_err(), 101, 100);
    let (received, ended) = stream(&mut client, "100,101").await;
    assert_eq!(received, [100]);
    assert_too_large(&ended.unwrap_err(), 101, 100);
    // One attempt each: the response's headers had committed them.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedged_request_over_the_send_limit_reaches_no_server() {
    let (address, calls) = sized_server().await;
    let hedging = HedgingPolicy::new(
        3,
        Duration::from_millis(1),
        CodeSet::new().with(CroupierCode::ResourceExhausted),
    )
    .unwrap();
    let mut client = channel(address, |b| {
        b.max_encoding_message_size(100).hedging_policy(hedging)
    });
    assert_too_large(
        &call(&mut client, &"z".repeat(200)).await.unwrap_err(),
        203,
        100,
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A call within the limit goes (its hedges too, maybe).
    assert!(call(&mut client, "5").await.is_ok());
}
