//! The channel's metrics (feature `metrics`) as Prometheus scrapes them: a real exporter on a
//! loopback port, real tonic servers, known calls, and the counters read back over HTTP. One
//! binary holds every metrics test: a process has one global recorder.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use std::time::Duration;

use croupier::policy::WeightedRoundRobinConfig;
use croupier::retry::{CodeSet, RetryPolicy};
use croupier::{Code, ConnectivityState, PolicyConfig};
use croupier_echo_grpc::orca::OrcaLoadReport;
use croupier_echo_grpc::{EchoClient, ServerOptions};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use support::{call, echo, servers, until, GrpcChannel, PATIENCE};

/// The exporter's address: installed once for the whole binary. It is installed from a thread
/// with no runtime, so that it serves from a runtime of its own for the life of the process:
/// installed within a test's runtime, it would stop when that test ends, under the other.
fn exporter() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        let address = closed_port();
        std::thread::spawn(move || {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(address)
                .install()
                .map_err(|error| error.to_string())
        })
        .join()
        .expect("the exporter's installer does not panic")
        .expect("the exporter listens on loopback");
        address
    })
}

/// A loopback address nothing listens on: a port the system gave, then closed.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// The exporter's page, fetched with a plain HTTP/1 request.
async fn scrape(address: SocketAddr) -> String {
    tokio::time::timeout(PATIENCE, async {
        let stream = loop {
            // The listener starts on a task of its own: retry until it accepts.
            match tokio::net::TcpStream::connect(address).await {
                Ok(stream) => break stream,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("an HTTP/1 connection");
        tokio::spawn(connection);
        let request = http::Request::get("/metrics")
            .header(http::header::HOST, address.to_string())
            .body(Empty::<Bytes>::new())
            .expect("a request");
        let response = sender.send_request(request).await.expect("a response");
        assert_eq!(response.status(), http::StatusCode::OK);
        let body = response.into_body().collect().await.expect("the page");
        String::from_utf8(body.to_bytes().to_vec()).expect("text")
    })
    .await
    .expect("the scrape in time")
}

/// The samples of `name` on `page` whose labels include every one of `labels`, by their whole
/// label set.
fn samples(page: &str, name: &str, labels: &[(&str, &str)]) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let set = rest.strip_suffix('}')?;
            let all = labels
                .iter()
                .all(|(key, value)| set.contains(&format!("{key}=\"{value}\"")));
            if !all {
                return None;
            }
            Some((set.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The one sample of `name` with `labels`; 0 if there is none.
fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(page, name, labels);
    assert!(
        found.len() <= 1,
        "one series of {name} {labels:?}: {found:?}"
    );
    found.values().sum()
}

const METHOD: &str = "grpc.examples.echo.Echo/UnaryEcho";

#[tokio::test]
async fn a_scrape_counts_the_calls_of_each_backend_and_each_attempt_exactly() {
    let exporter = exporter();
    let servers = servers(2, ServerOptions::new().fail_message("fail")).await;
    let down = closed_port();
    let target = format!(
        "ipv4:{},{},{down}",
        servers[0].address(),
        servers[1].address()
    );
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    until(&channel, |subchannels| {
        let count = |state| subchannels.iter().filter(|s| s.state == state).count();
        count(ConnectivityState::Ready) == 2 && count(ConnectivityState::TransientFailure) == 1
    })
    .await;
    let target = channel.target().to_string();

    const SUCCEEDED: usize = 6;
    const FAILED: usize = 4;
    let mut client = EchoClient::new(channel.clone());
    let mut received = 0;
    for _ in 0..SUCCEEDED {
        let reply = call(&mut client, "hi").await.expect("an echo");
        received += 2 + reply.len(); // the field's tag and length, then the text
    }
    for _ in 0..FAILED {
        let status = call(&mut client, "fail").await.expect_err("a failure");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    }

    let page = scrape(exporter).await;
    let target_label = ("grpc_target", target.as_str());
    let method = ("grpc_method", METHOD);
    let ok = ("grpc_status", "OK");
    let failed = ("grpc_status", "FAILED_PRECONDITION");

    // croupier's own: calls by backend, method and status, exactly as each server saw them.
    let mut by_status = [0.0, 0.0];
    for server in &servers {
        let address = server.address().to_string();
        let backend = ("croupier_backend", address.as_str());
        let calls = |status| {
            value(
                &page,
                "croupier_client_backend_calls",
                &[target_label, method, backend, status],
            )
        };
        let (succeeded, failures) = (calls(ok), calls(failed));
        assert_eq!(succeeded + failures, server.calls() as f64, "{address}");
        by_status[0] += succeeded;
        by_status[1] += failures;
    }
    assert_eq!(by_status, [SUCCEEDED as f64, FAILED as f64]);
    let down_address = down.to_string();
    assert!(samples(
        &page,
        "croupier_client_backend_calls",
        &[("croupier_backend", down_address.as_str())]
    )
    .is_empty());

    // gRFC A66: every attempt, and its duration and sizes by status.
    let total = (SUCCEEDED + FAILED) as f64;
    assert_eq!(
        value(
            &page,
            "grpc_client_attempt_started",
            &[target_label, method]
        ),
        total
    );
    let attempts = |name: &str, status| value(&page, name, &[target_label, method, status]);
    assert_eq!(
        attempts("grpc_client_attempt_duration_count", ok),
        SUCCEEDED as f64
    );
    assert_eq!(
        attempts("grpc_client_attempt_duration_count", failed),
        FAILED as f64
    );
    // One call per attempt here (no retries): the call's own duration, once per call.
    let calls = |status| attempts("grpc_client_call_duration_count", status);
    assert_eq!(calls(ok), SUCCEEDED as f64);
    assert_eq!(calls(failed), FAILED as f64);
    // Sent: EchoRequest { message } is the field's tag, its length and its text.
    let sent = "grpc_client_attempt_sent_total_compressed_message_size_sum";
    assert_eq!(attempts(sent, ok), (SUCCEEDED * (2 + 2)) as f64);
    assert_eq!(attempts(sent, failed), (FAILED * (2 + 4)) as f64);
    let rcvd = "grpc_client_attempt_rcvd_total_compressed_message_size_sum";
    assert_eq!(attempts(rcvd, ok), received as f64);
    assert_eq!(attempts(rcvd, failed), 0.0, "a failure has no message");

    // gRFC A94: two connections made and open, the third address refused at least once.
    let subchannel = |name: &str| value(&page, name, &[target_label]);
    assert_eq!(
        subchannel("grpc_subchannel_connection_attempts_succeeded"),
        2.0
    );
    assert!(subchannel("grpc_subchannel_connection_attempts_failed") >= 1.0);
    assert_eq!(subchannel("grpc_subchannel_open_connections"), 2.0);
    assert!(samples(&page, "grpc_subchannel_disconnections", &[target_label]).is_empty());
    // round_robin's endpoints walk their addresses as pick_first does, but are not pick_first.
    for name in [
        "grpc_lb_pick_first_connection_attempts_succeeded",
        "grpc_lb_pick_first_connection_attempts_failed",
    ] {
        assert!(samples(&page, name, &[target_label]).is_empty(), "{name}");
    }

    // Dropping the channel closes both connections: disconnections, none left open.
    drop(client);
    drop(channel);
    let page = tokio::time::timeout(PATIENCE, async {
        loop {
            let page = scrape(exporter).await;
            if value(&page, "grpc_subchannel_open_connections", &[target_label]) == 0.0 {
                return page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the connections closed in time");
    assert_eq!(
        value(
            &page,
            "grpc_subchannel_disconnections",
            &[
                target_label,
                ("grpc_disconnect_error", "subchannel shutdown")
            ]
        ),
        2.0
    );
}

#[tokio::test]
async fn an_attempt_with_no_backend_to_pick_is_counted_with_its_status() {
    let exporter = exporter();
    let down = closed_port();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(format!("ipv4:{down}"))
        .build()
        .unwrap();
    until(&channel, |subchannels| {
        subchannels
            .iter()
            .any(|s| s.state == ConnectivityState::TransientFailure)
    })
    .await;
    let mut client = EchoClient::new(channel.clone());
    for _ in 0..3 {
        let status = call(&mut client, "hi").await.expect_err("no backend");
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    let target = channel.target().to_string();
    let page = scrape(exporter).await;
    let labels = [("grpc_target", target.as_str()), ("grpc_method", METHOD)];
    assert_eq!(value(&page, "grpc_client_attempt_started", &labels), 3.0);
    let unavailable = [labels[0], labels[1], ("grpc_status", "UNAVAILABLE")];
    assert_eq!(
        value(&page, "grpc_client_attempt_duration_count", &unavailable),
        3.0
    );
    assert_eq!(
        value(&page, "grpc_client_call_duration_count", &unavailable),
        3.0
    );
    assert!(samples(
        &page,
        "croupier_client_backend_calls",
        &[("grpc_target", target.as_str())]
    )
    .is_empty());
}

#[tokio::test]
async fn a_call_is_recorded_once_across_its_attempts_with_the_status_it_ended_with() {
    let exporter = exporter();
    let options = ServerOptions::new()
        .fail_message("fail")
        .stall_message("stall");
    let servers = servers(2, options).await;
    let retry = RetryPolicy::new(
        2,
        Duration::from_millis(1),
        Duration::from_millis(1),
        1.0,
        CodeSet::new().with(Code::FailedPrecondition),
    )
    .unwrap();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(support::target(&servers))
        .policy(PolicyConfig::round_robin())
        .retry_policy(retry)
        .build()
        .unwrap();
    until(&channel, |subchannels| {
        subchannels
            .iter()
            .all(|s| s.state == ConnectivityState::Ready)
            && subchannels.len() == 2
    })
    .await;
    let mut client = EchoClient::new(channel.clone());

    // Retried once: one call, two attempts, each FAILED_PRECONDITION.
    let status = call(&mut client, "fail").await.expect_err("a failure");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    // Past its deadline: DEADLINE_EXCEEDED, once.
    let mut late = echo("stall");
    late.set_timeout(Duration::from_millis(200));
    let status = tokio::time::timeout(PATIENCE, client.unary_echo(late))
        .await
        .expect("the deadline ends the call")
        .expect_err("past its deadline");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    // Given up by its caller before any answer: CANCELLED, once.
    let given_up =
        tokio::time::timeout(Duration::from_millis(200), client.unary_echo(echo("stall"))).await;
    assert!(given_up.is_err(), "the stalled call is still waiting");
    // And one that succeeds at once.
    call(&mut client, "hi").await.expect("an echo");

    let target = channel.target().to_string();
    let page = scrape(exporter).await;
    let of = |name: &str, status: &str| {
        value(
            &page,
            name,
            &[
                ("grpc_target", target.as_str()),
                ("grpc_method", METHOD),
                ("grpc_status", status),
            ],
        )
    };
    let calls = |status| of("grpc_client_call_duration_count", status);
    let attempts = |status| of("grpc_client_attempt_duration_count", status);
    assert_eq!(calls("FAILED_PRECONDITION"), 1.0);
    assert_eq!(attempts("FAILED_PRECONDITION"), 2.0);
    assert_eq!(calls("DEADLINE_EXCEEDED"), 1.0);
    assert_eq!(calls("CANCELLED"), 1.0);
    assert_eq!(calls("OK"), 1.0);
    let all: f64 = samples(
        &page,
        "grpc_client_call_duration_count",
        &[("grpc_target", target.as_str())],
    )
    .values()
    .sum();
    assert_eq!(all, 4.0, "each call once");
    // The deadline bounds the call's duration: 200 ms, give or take the machine's load.
    let late_sum = of("grpc_client_call_duration_sum", "DEADLINE_EXCEEDED");
    assert!((0.2..0.7).contains(&late_sum), "{late_sum} s");
}

#[tokio::test]
async fn weighted_round_robin_counts_its_fallback_until_the_load_reports_weigh() {
    let exporter = exporter();
    // A58 weighs 100 queries per second at utilization 0.25 as 400, at 0.75 as 133.3.
    let report = |utilization| OrcaLoadReport {
        rps_fractional: 100.0,
        application_utilization: utilization,
        ..OrcaLoadReport::default()
    };
    let mut servers = Vec::new();
    for utilization in [0.25, 0.75] {
        let options = ServerOptions::new().load_report(&report(utilization));
        servers.extend(support::servers(1, options).await);
    }
    let policy = WeightedRoundRobinConfig::default()
        .blackout_period(Duration::from_millis(300))
        .weight_update_period(Duration::from_millis(100));
    let channel: GrpcChannel = croupier_tokio::grpc::builder(support::target(&servers))
        .policy(PolicyConfig::new(policy))
        .build()
        .unwrap();
    support::until_ready(&channel, 2).await;
    let target = channel.target().to_string();
    let labels = [("grpc_target", target.as_str()), ("grpc_lb_locality", "")];
    let of = |page: &str, name: &str| value(page, name, &labels);

    // No report yet: every scheduler so far fell back, with no usable weight.
    let page = scrape(exporter).await;
    let fallbacks = of(&page, "grpc_lb_wrr_rr_fallback");
    assert!(fallbacks >= 1.0, "{fallbacks}");
    let not_yet = of(&page, "grpc_lb_wrr_endpoint_weight_not_yet_usable");
    assert!(
        not_yet >= 2.0,
        "both endpoints of the last update: {not_yet}"
    );
    assert_eq!(of(&page, "grpc_lb_wrr_endpoint_weight_stale"), 0.0);
    assert_eq!(of(&page, "grpc_lb_wrr_endpoint_weights_count"), not_yet);
    assert_eq!(of(&page, "grpc_lb_wrr_endpoint_weights_sum"), 0.0);

    // Calls bring reports; past the blackout a scheduler weighs by them: 400 and 133.3.
    let mut client = EchoClient::new(channel.clone());
    let page = tokio::time::timeout(PATIENCE, async {
        loop {
            for _ in 0..10 {
                call(&mut client, "weigh").await.expect("an echo");
            }
            let page = scrape(exporter).await;
            if of(&page, "grpc_lb_wrr_endpoint_weights_sum") > 0.0 {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the reported weights counted in time");
    let sum = of(&page, "grpc_lb_wrr_endpoint_weights_sum");
    let updates = sum / (400.0 + 400.0 / 3.0);
    assert!(
        updates >= 1.0 && (updates - updates.round()).abs() < 1e-6,
        "each weighed update records both weights: {sum}"
    );
    assert_eq!(
        of(&page, "grpc_lb_wrr_rr_fallback"),
        fallbacks,
        "no fallback since"
    );
    assert_eq!(
        of(&page, "grpc_lb_wrr_endpoint_weight_not_yet_usable"),
        not_yet
    );
    assert_eq!(
        of(&page, "grpc_lb_wrr_endpoint_weights_count"),
        not_yet + 2.0 * updates.round()
    );
}

#[tokio::test]
async fn pick_first_counts_its_failed_attempts_its_connection_and_its_loss() {
    let exporter = exporter();
    let down = closed_port();
    let mut servers = servers(1, ServerOptions::new()).await;
    // The address that refuses comes first: pick_first tries it, then connects the second.
    let target = format!("ipv4:{down},{}", servers[0].address());
    let channel: GrpcChannel = croupier_tokio::grpc::builder(target)
        .policy(PolicyConfig::pick_first())
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel.clone());
    call(&mut client, "hi").await.expect("an echo");
    let target = channel.target().to_string();
    let labels = [("grpc_target", target.as_str())];
    let page = scrape(exporter).await;
    let of = |page: &str, name: &str| value(page, name, &labels);
    assert_eq!(
        of(&page, "grpc_lb_pick_first_connection_attempts_failed"),
        1.0
    );
    assert_eq!(
        of(&page, "grpc_lb_pick_first_connection_attempts_succeeded"),
        1.0
    );
    assert_eq!(of(&page, "grpc_lb_pick_first_disconnections"), 0.0);

    // The server goes away: its connection, the one chosen, is lost once.
    drop(servers.remove(0));
    let page = tokio::time::timeout(PATIENCE, async {
        loop {
            let page = scrape(exporter).await;
            if of(&page, "grpc_lb_pick_first_disconnections") > 0.0 {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the lost connection counted in time");
    assert_eq!(of(&page, "grpc_lb_pick_first_disconnections"), 1.0);
    assert_eq!(
        of(&page, "grpc_lb_pick_first_connection_attempts_succeeded"),
        1.0
    );
}
