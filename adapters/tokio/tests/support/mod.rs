//! What the gRPC tests share: tonic echo servers on loopback, targets naming them (directly, or
//! through a resolver with fixed endpoints), bounded calls, and bounded waits on the channel's
//! subchannels.

#![allow(dead_code, unreachable_pub)]

pub mod http2;

use std::time::Duration;

use croupier::{ConnectivityState, Endpoint, ResolverUpdate, SubchannelInfo, Target};
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::Http2Channel;
use croupier_tokio::{BoxFuture, Resolver, ResolverContext};

/// A bound on every wait, so that a broken test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The channel a tonic client uses.
pub type GrpcChannel = Http2Channel<tonic::body::Body>;

pub async fn servers(n: usize, options: ServerOptions) -> Vec<GrpcEchoServer> {
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(
            GrpcEchoServer::start(0, options.clone())
                .await
                .expect("a free port on loopback"),
        );
    }
    servers
}

/// `ipv4:` and the servers' addresses.
pub fn target(servers: &[GrpcEchoServer]) -> String {
    let addresses: Vec<String> = servers.iter().map(|s| s.address().to_string()).collect();
    format!("ipv4:{}", addresses.join(","))
}

/// The scheme of [`Fixed`]'s targets, and the name it resolves.
pub const SCHEME: &str = "example";
pub const SERVICE: &str = "lb.example.grpc.io";

/// `example:///lb.example.grpc.io`, for a channel with [`Fixed`] registered.
pub fn example_target() -> String {
    format!("{SCHEME}:///{SERVICE}")
}

/// Resolves any target to the same endpoints, once.
pub struct Fixed(pub Vec<Endpoint>);

impl Resolver for Fixed {
    fn resolve(&self, _: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        context.update(ResolverUpdate::new(self.0.clone()));
        Box::pin(async {})
    }
}

/// A `UnaryEcho` request with `message`.
pub fn echo(message: &str) -> tonic::Request<EchoRequest> {
    tonic::Request::new(EchoRequest {
        message: message.to_owned(),
    })
}

/// One unary call of `message`, bounded by [`PATIENCE`]; the reply's message.
pub async fn call(
    client: &mut EchoClient<GrpcChannel>,
    message: &str,
) -> Result<String, tonic::Status> {
    send(client, echo(message)).await
}

/// One `UnaryEcho` call of `request`, bounded by [`PATIENCE`]; the reply's message.
pub async fn send(
    client: &mut EchoClient<GrpcChannel>,
    mut request: tonic::Request<EchoRequest>,
) -> Result<String, tonic::Status> {
    request.set_timeout(PATIENCE);
    let response = tokio::time::timeout(PATIENCE * 2, client.unary_echo(request))
        .await
        .expect("a call sent to a server ends")?;
    Ok(response.into_inner().message)
}

/// Waits until `done` holds for the channel's subchannels, and returns them.
pub async fn until(
    channel: &GrpcChannel,
    done: impl Fn(&[SubchannelInfo]) -> bool,
) -> Vec<SubchannelInfo> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let subchannels = channel.subchannels().await;
            if done(&subchannels) {
                return subchannels;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the subchannels reached the state awaited in time")
}

/// How many of `subchannels` are READY.
fn ready_among(subchannels: &[SubchannelInfo]) -> usize {
    subchannels
        .iter()
        .filter(|s| s.state == ConnectivityState::Ready)
        .count()
}

/// The number of READY subchannels.
pub async fn ready_count(channel: &GrpcChannel) -> usize {
    ready_among(&channel.subchannels().await)
}

/// Waits until exactly `ready` subchannels are READY (looking every few milliseconds: the
/// channel's aggregate state does not change when a second subchannel becomes READY).
pub async fn until_ready(channel: &GrpcChannel, ready: usize) {
    until(channel, |subchannels| ready_among(subchannels) == ready).await;
}

/// Waits until a subchannel is in TRANSIENT_FAILURE with an error: that error, and every
/// subchannel as it was then.
pub async fn until_failed(channel: &GrpcChannel) -> (std::sync::Arc<str>, Vec<SubchannelInfo>) {
    let failed = |s: &SubchannelInfo| s.state == ConnectivityState::TransientFailure;
    let subchannels = until(channel, |subchannels| {
        subchannels
            .iter()
            .any(|s| failed(s) && s.last_error.is_some())
    })
    .await;
    let error = subchannels
        .iter()
        .find(|s| failed(s))
        .and_then(|s| s.last_error.clone())
        .expect("a failed subchannel with an error");
    (error, subchannels)
}

/// Accepts every connection to `listener` and holds it open without a word.
pub fn hold_connections(listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.expect("a connection");
            held.push(stream);
        }
    })
}

/// Waits until `backends` subchannels of a round_robin `channel` are READY, then makes one call
/// per backend through it (so each gets one), and returns the replies.
pub async fn call_each(channel: GrpcChannel, backends: usize) -> Vec<String> {
    until_ready(&channel, backends).await;
    let mut client = EchoClient::new(channel);
    let mut replies = Vec::new();
    for _ in 0..backends {
        replies.push(call(&mut client, "hi").await.unwrap());
    }
    replies
}
