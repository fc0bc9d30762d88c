//! ORCA load reports (gRFC A51) from real tonic servers reach weighted_round_robin (gRFC A58):
//! the per-call report in each response's `endpoint-load-metrics-bin` trailer (or a
//! trailers-only response's headers) goes back with the call's outcome, so calls split by the
//! weights the reports give; a garbled report is ignored and the call is unaffected. Out of
//! band, the reports of each connection's `StreamCoreMetrics` stream do the same.

mod support;

use std::time::Duration;

use croupier::policy::WeightedRoundRobinConfig;
use croupier::PolicyConfig;
use croupier_echo_grpc::orca::OrcaLoadReport;
use croupier_echo_grpc::{EchoClient, GrpcEchoServer, ServerOptions};
use support::{call, target, until_ready, GrpcChannel, PATIENCE};

/// Calls per round when measuring the split.
const ROUND: usize = 100;

/// A report of 100 queries per second at `utilization`: A58 weighs it 100 / utilization.
fn report(utilization: f64) -> OrcaLoadReport {
    OrcaLoadReport {
        rps_fractional: 100.0,
        application_utilization: utilization,
        ..OrcaLoadReport::default()
    }
}

/// A server started with `options`.
async fn server(options: ServerOptions) -> GrpcEchoServer {
    GrpcEchoServer::start(0, options)
        .await
        .expect("a free port on loopback")
}

/// weighted_round_robin that counts reports at once and recomputes weights every 100 ms.
fn quick_weighted_round_robin() -> PolicyConfig {
    PolicyConfig::new(
        WeightedRoundRobinConfig::default()
            .blackout_period(Duration::ZERO)
            .weight_update_period(Duration::from_millis(100)),
    )
}

/// A weighted_round_robin channel to `servers`, once all of them are READY.
async fn channel(servers: &[GrpcEchoServer]) -> EchoClient<GrpcChannel> {
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(servers))
        .policy(quick_weighted_round_robin())
        .build()
        .unwrap();
    until_ready(&channel, servers.len()).await;
    EchoClient::new(channel)
}

/// Sends rounds of [`ROUND`] calls of `message` (each may fail, as `message` makes it) until
/// `servers[0]`'s share of a round is within 0.07 of `share`; fails after [`PATIENCE`] with the
/// last share seen.
async fn until_share(
    client: &mut EchoClient<GrpcChannel>,
    servers: &[GrpcEchoServer],
    message: &str,
    share: f64,
) {
    let mut last = f64::NAN;
    let reached = tokio::time::timeout(PATIENCE, async {
        loop {
            let before = servers[0].calls();
            for _ in 0..ROUND {
                let _ = call(client, message).await;
            }
            last = (servers[0].calls() - before) as f64 / ROUND as f64;
            if (last - share).abs() <= 0.07 {
                return;
            }
            // Let the next weight update come.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "the first server's share of calls never came near {share}; last {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_splits_calls_by_the_load_servers_report_per_call() {
    // Weights 400 and 133: three calls in four go to the first server.
    let servers = [
        server(ServerOptions::new().load_report(&report(0.25))).await,
        server(ServerOptions::new().load_report(&report(0.75))).await,
    ];
    let mut client = channel(&servers).await;
    until_share(&mut client, &servers, "weigh", 0.75).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_in_a_trailers_only_response_counts_too() {
    // Every call fails on the server, which answers with its status (and report) in headers.
    let options = |utilization| {
        ServerOptions::new()
            .fail_message("refused")
            .load_report(&report(utilization))
    };
    let servers = [server(options(0.75)).await, server(options(0.25)).await];
    let mut client = channel(&servers).await;
    let status = call(&mut client, "refused").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    until_share(&mut client, &servers, "refused", 0.25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_report_is_ignored_and_the_call_succeeds() {
    let garbled = |value: &'static str| {
        ServerOptions::new().load_report_value(http::HeaderValue::from_static(value))
    };
    // Not base64, and base64 of a message cut short: neither is a report.
    let servers = [
        server(garbled("not base64!")).await,
        server(garbled("CQAA")).await,
    ];
    let mut client = channel(&servers).await;
    for _ in 0..ROUND {
        let reply = call(&mut client, "garbled")
            .await
            .expect("the call succeeds");
        assert!(reply.starts_with("garbled (from :"), "{reply}");
    }
    // No weights: round robin's even split, round after round.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = servers[0].calls();
    for _ in 0..ROUND {
        call(&mut client, "garbled").await.unwrap();
    }
    assert_eq!(servers[0].calls() - before, ROUND / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_splits_calls_by_out_of_band_reports() {
    // The streams say 3 to 1 for the first server; the per-call reports, which weighted_round_robin
    // then ignores, say the opposite.
    let options = |stream, per_call| {
        ServerOptions::new()
            .oob_load_report(report(stream))
            .load_report(&report(per_call))
    };
    let servers = [
        server(options(0.25, 0.75)).await,
        server(options(0.75, 0.25)).await,
    ];
    let period = Duration::from_millis(50);
    let policy = WeightedRoundRobinConfig::default()
        .blackout_period(Duration::ZERO)
        .weight_update_period(Duration::from_millis(100))
        .enable_oob_load_report(true);
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::new(policy))
        .orca_oob(period)
        .build()
        .unwrap();
    until_ready(&channel, servers.len()).await;
    let mut client = EchoClient::new(channel);
    until_share(&mut client, &servers, "weigh", 0.75).await;
    for server in &servers {
        assert_eq!(server.report_interval(), Some(period));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_report_stream_still_takes_calls() {
    // Neither server serves OpenRcaService: each stream ends UNIMPLEMENTED at once.
    let servers = [
        server(ServerOptions::new()).await,
        server(ServerOptions::new()).await,
    ];
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .policy(PolicyConfig::round_robin())
        .orca_oob(Duration::from_millis(50))
        .build()
        .unwrap();
    until_ready(&channel, servers.len()).await;
    let mut client = EchoClient::new(channel);
    for _ in 0..10 {
        call(&mut client, "plain").await.expect("the call succeeds");
    }
    assert_eq!(servers[0].calls(), 5);
    assert_eq!(servers[0].report_interval(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_graceful_shutdown_is_not_held_up_by_its_report_stream() {
    let servers = [server(ServerOptions::new().oob_load_report(report(0.5))).await];
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target(&servers))
        .orca_oob(Duration::from_millis(50))
        .build()
        .unwrap();
    until_ready(&channel, 1).await;
    let mut client = EchoClient::new(channel);
    call(&mut client, "before").await.unwrap();
    let [server] = servers;
    // The stream is open (the server has been asked); GOAWAY ends it with the connection.
    tokio::time::timeout(PATIENCE, async {
        while server.report_interval().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the report stream opens");
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("the server's graceful shutdown ends");
}

/// How many times [`Counting`] was asked to read a report.
static READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The gRPC connector, counting the load reports the channel asks it to read.
struct Counting(croupier_tokio::grpc::Http2Connector<tonic::body::Body>);

impl croupier_tokio::Connector for Counting {
    type Connection = croupier_tokio::grpc::Http2Connection<tonic::body::Body>;

    fn connect(
        &self,
        address: &croupier::Address,
    ) -> impl std::future::Future<
        Output = std::io::Result<croupier_tokio::Connected<Self::Connection>>,
    > + Send
           + 'static {
        self.0.connect(address)
    }

    fn load_report(trailers: &http::HeaderMap) -> Option<croupier::LoadReport> {
        READS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        croupier_tokio::grpc::orca::load_report(trailers)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_read_only_while_the_policy_learns_from_calls() {
    use std::sync::atomic::Ordering::SeqCst;
    let servers = [
        server(ServerOptions::new().load_report(&report(0.25))).await,
        server(ServerOptions::new().load_report(&report(0.75))).await,
    ];
    let connector = || {
        Counting(croupier_tokio::grpc::Http2Connector::new(
            croupier_tokio::StreamConnector::new(),
        ))
    };
    let calls = |policy| async {
        let channel = croupier_tokio::builder(target(&servers))
            .policy(policy)
            .connector(connector())
            .build()
            .unwrap();
        until_ready(&channel, servers.len()).await;
        let mut client = EchoClient::new(channel);
        for _ in 0..10 {
            call(&mut client, "count").await.unwrap();
        }
    };
    calls(PolicyConfig::round_robin()).await;
    assert_eq!(READS.load(SeqCst), 0, "round_robin ignores outcomes");
    calls(quick_weighted_round_robin()).await;
    assert_eq!(READS.load(SeqCst), 10, "one read per call");
}
