//! What the gRPC tests share: tonic echo servers on loopback, targets naming them, and bounded
//! waits on the channel's subchannels.

#![allow(dead_code, unreachable_pub)]

pub mod http2;

use std::time::Duration;

use croupier::ConnectivityState;
use croupier::SubchannelInfo;
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::Http2Channel;

/// A bound on every wait, so that a broken test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(10);

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

pub fn target(servers: &[GrpcEchoServer]) -> String {
    let addresses: Vec<String> = servers.iter().map(|s| s.address().to_string()).collect();
    format!("ipv4:{}", addresses.join(","))
}

/// One unary call, bounded by [`PATIENCE`]; the reply's message.
pub async fn call(
    client: &mut EchoClient<GrpcChannel>,
    message: &str,
) -> Result<String, tonic::Status> {
    let mut request = tonic::Request::new(EchoRequest {
        message: message.to_owned(),
    });
    request.set_timeout(PATIENCE);
    let response = tokio::time::timeout(PATIENCE * 2, client.unary_echo(request))
        .await
        .expect("a call sent to a server ends")?;
    Ok(response.into_inner().message)
}

/// The number of READY subchannels.
pub async fn ready_count(channel: &GrpcChannel) -> usize {
    channel
        .subchannels()
        .await
        .iter()
        .filter(|s| s.state == ConnectivityState::Ready)
        .count()
}

/// Waits until exactly `ready` subchannels are READY (looking every few milliseconds: the
/// channel's aggregate state does not change when a second subchannel becomes READY).
pub async fn until_ready(channel: &GrpcChannel, ready: usize) {
    tokio::time::timeout(PATIENCE, async {
        while ready_count(channel).await != ready {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the subchannels became ready in time");
}

/// Waits until a subchannel is in TRANSIENT_FAILURE with an error: that error, and every
/// subchannel as it was then.
pub async fn until_failed(channel: &GrpcChannel) -> (std::sync::Arc<str>, Vec<SubchannelInfo>) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let subchannels = channel.subchannels().await;
            if let Some(error) = subchannels
                .iter()
                .find(|s| s.state == ConnectivityState::TransientFailure)
                .and_then(|s| s.last_error.clone())
            {
                return (error, subchannels);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a connection attempt failed in time")
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
