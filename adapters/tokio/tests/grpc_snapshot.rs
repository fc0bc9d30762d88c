//! The channel's snapshot over real tonic servers on loopback: the channel's state and since
//! when, the resolver's last result, and per subchannel its state, attempts, last error and the
//! calls made on it, counted exactly.

mod support;

use std::time::{Duration, Instant};

use croupier::{Address, ConnectivityState, PolicyConfig, ResolverError, Target};
use croupier_echo_grpc::{EchoClient, ServerOptions};
use croupier_tokio::{BoxFuture, Resolver, ResolverContext, SubchannelSnapshot};
use support::{call, servers, until, GrpcChannel, PATIENCE};

/// A loopback address nothing listens on: a port the system gave, then closed.
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

#[tokio::test]
async fn a_snapshot_counts_each_backends_calls_and_shows_the_one_that_is_down() {
    let servers = servers(2, ServerOptions::new().fail_message("fail")).await;
    let down = closed_port();
    let target = format!(
        "ipv4:{},{},{down}",
        servers[0].address(),
        servers[1].address()
    );
    let built = Instant::now();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    until(&channel, |subchannels| {
        let state = |s: &croupier::SubchannelInfo| s.state;
        subchannels.len() == 3
            && subchannels
                .iter()
                .filter(|s| state(s) == ConnectivityState::Ready)
                .count()
                == 2
            && subchannels
                .iter()
                .any(|s| state(s) == ConnectivityState::TransientFailure)
    })
    .await;

    let mut client = EchoClient::new(channel.clone());
    for _ in 0..6 {
        call(&mut client, "hi").await.expect("an echo");
    }
    for _ in 0..4 {
        let status = call(&mut client, "fail").await.expect_err("a failure");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    }

    let snapshot = tokio::time::timeout(PATIENCE, channel.snapshot())
        .await
        .expect("a snapshot in time");
    let after = Instant::now();
    assert_eq!(snapshot.target, channel.target().to_string());
    assert_eq!(snapshot.state, ConnectivityState::Ready);
    assert!(built <= snapshot.state_since && snapshot.state_since <= after);
    let resolved = snapshot.resolver.at.expect("the resolver answered");
    assert!(built <= resolved && resolved <= snapshot.state_since);
    assert_eq!(snapshot.resolver.endpoints.len(), 3);
    assert_eq!(snapshot.resolver.error, None);
    assert!(snapshot.resolver.service_config.is_none());

    let find = |address: std::net::SocketAddr| -> &SubchannelSnapshot {
        snapshot
            .subchannel(&Address::Socket(address))
            .unwrap_or_else(|| panic!("a subchannel for {address}"))
    };
    let failed = find(down);
    assert_eq!(failed.state, ConnectivityState::TransientFailure);
    assert!(failed.connection_attempts >= 1, "{failed:?}");
    let error = failed.last_error.as_deref().expect("why it failed");
    assert!(!error.is_empty());
    assert!(built <= failed.since && failed.since <= after);
    assert_eq!(failed.calls.started, 0);

    let mut total = croupier_tokio::CallCounts::default();
    for server in &servers {
        let subchannel = find(server.address());
        assert_eq!(subchannel.state, ConnectivityState::Ready);
        assert_eq!(subchannel.connection_attempts, 1);
        assert_eq!(subchannel.last_error, None);
        // Exactly the calls its server answered.
        assert_eq!(
            subchannel.calls.started,
            server.calls() as u64,
            "{subchannel:?}"
        );
        assert_eq!(subchannel.calls.in_flight, 0);
        assert_eq!(
            subchannel.calls.succeeded + subchannel.calls.failed,
            subchannel.calls.started
        );
        // Filled when the policy reports them: round_robin reports none.
        assert_eq!(subchannel.weight, None);
        assert_eq!(subchannel.ejected, None);
        total.started += subchannel.calls.started;
        total.succeeded += subchannel.calls.succeeded;
        total.failed += subchannel.calls.failed;
    }
    assert_eq!(
        (total.started, total.succeeded, total.failed),
        (10, 6, 4),
        "ten calls: six OK, four FAILED_PRECONDITION"
    );
}

/// Fails every resolution with the same error.
struct Failing;

impl Resolver for Failing {
    fn resolve(&self, _: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        context.error(ResolverError::new("no such service: lb.example.grpc.io"));
        Box::pin(async {})
    }
}

#[tokio::test]
async fn a_snapshot_quotes_the_resolvers_error() {
    let channel: GrpcChannel = croupier_tokio::grpc::builder("failing:///lb.example.grpc.io")
        .resolver("failing", Failing)
        .build()
        .unwrap();
    let snapshot = tokio::time::timeout(PATIENCE, async {
        loop {
            let snapshot = channel.snapshot().await;
            if snapshot.resolver.at.is_some() {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the resolver's answer in time");
    assert_eq!(
        snapshot.resolver.error.as_deref(),
        Some("no such service: lb.example.grpc.io")
    );
    assert!(snapshot.resolver.endpoints.is_empty());
    assert!(snapshot.subchannels.is_empty());
    assert_eq!(snapshot.state, ConnectivityState::TransientFailure);
}

#[tokio::test]
async fn a_snapshot_shows_what_the_policy_knows_of_each_subchannel() {
    let servers = servers(2, ServerOptions::new()).await;
    let target = format!("ipv4:{},{}", servers[0].address(), servers[1].address());
    let policy = PolicyConfig::new(croupier::policy::OutlierDetectionConfig::new(
        PolicyConfig::p2c_ewma(),
    ));
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .policy(policy)
        .build()
        .unwrap();
    until(&channel, |subchannels| {
        subchannels
            .iter()
            .filter(|s| s.state == ConnectivityState::Ready)
            .count()
            == 2
    })
    .await;
    let mut client = EchoClient::new(channel.clone());
    for _ in 0..4 {
        call(&mut client, "hi").await.expect("an echo");
    }
    let snapshot = tokio::time::timeout(PATIENCE, channel.snapshot())
        .await
        .expect("a snapshot in time");
    for server in &servers {
        let subchannel = snapshot
            .subchannel(&Address::Socket(server.address()))
            .expect("a subchannel per server");
        // p2c_ewma's estimate and outlier detection's verdict, through the wrapper.
        assert!(subchannel.latency_estimate.is_some(), "{subchannel:?}");
        assert_eq!(subchannel.ejected, Some(false), "{subchannel:?}");
        assert_eq!(subchannel.weight, None);
    }
}
