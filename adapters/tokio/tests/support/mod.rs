//! What the gRPC name and TLS tests share: bounded calls, a resolver that answers with fixed
//! endpoints, and waits on the channel's subchannels.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use croupier::{ConnectivityState, Endpoint, ResolverUpdate, SubchannelInfo, Target};
use croupier_echo_grpc::{EchoClient, EchoRequest};
use croupier_tokio::grpc::Http2Channel;
use croupier_tokio::{BoxFuture, Resolver, ResolverContext};

/// A bound on every wait, so that a broken test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The channel a tonic client uses.
pub type GrpcChannel = Http2Channel<tonic::body::Body>;

/// The scheme of [`Fixed`]'s targets, and the name it resolves.
pub const SCHEME: &str = "example";
pub const SERVICE: &str = "lb.example.grpc.io";

/// `example:///lb.example.grpc.io`, for a channel with [`Fixed`] registered.
pub fn target() -> String {
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

/// One `UnaryEcho` call, bounded by [`PATIENCE`].
pub async fn call(
    client: &mut EchoClient<GrpcChannel>,
    request: tonic::Request<EchoRequest>,
) -> Result<String, tonic::Status> {
    let mut request = request;
    request.set_timeout(PATIENCE);
    let response = tokio::time::timeout(PATIENCE * 2, client.unary_echo(request))
        .await
        .expect("a call sent to a server ends")?;
    Ok(response.into_inner().message)
}

/// A `UnaryEcho` request with `message`.
pub fn echo(message: &str) -> tonic::Request<EchoRequest> {
    tonic::Request::new(EchoRequest {
        message: message.to_owned(),
    })
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

/// Waits until `ready` subchannels are READY.
pub async fn until_ready(channel: &GrpcChannel, ready: usize) {
    until(channel, |subchannels| {
        subchannels
            .iter()
            .filter(|s| s.state == ConnectivityState::Ready)
            .count()
            == ready
    })
    .await;
}

/// Waits until `backends` subchannels of a round_robin `channel` are READY, then makes one call
/// per backend through it (so each gets one), and returns the replies.
pub async fn call_each(channel: GrpcChannel, backends: usize) -> Vec<String> {
    until_ready(&channel, backends).await;
    let mut client = EchoClient::new(channel);
    let mut replies = Vec::new();
    for _ in 0..backends {
        replies.push(call(&mut client, echo("hi")).await.unwrap());
    }
    replies
}
