//! The channel's metrics, served as Prometheus text: a Prometheus exporter (the
//! `metrics-exporter-prometheus` crate) on a loopback port, two tonic Echo servers, and a
//! round_robin channel making ten calls that succeed and two that fail; then the page the
//! exporter serves, as a scrape reads it.
//!
//! ```text
//! cargo run --example metrics_prometheus --features metrics                      # :50051, :50052
//! cargo run --example metrics_prometheus --features metrics -- --ports 6001,6002 # if those are taken
//! ```
//!
//! The channel records through the `metrics` facade (croupier-tokio's feature `metrics`), so any
//! exporter works; the recorder is installed before the channel is built, as the facade asks.

use std::net::SocketAddr;
use std::process::ExitCode;

use croupier_echo_grpc::{EchoClient, EchoRequest, ServerOptions};
use croupier_examples::backends::{Backends, ExampleResolver};
use croupier_examples::grpc::start_servers;
use croupier_tokio::{metrics, PolicyConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// gRFC A66's latency buckets, in seconds.
const LATENCY: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005,
    0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16,
    0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// gRFC A66's size buckets, in bytes.
const SIZE: [f64; 14] = [
    0.0,
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// Installs the Prometheus recorder for the whole program and serves its page on a free
/// loopback port: the port, and a handle that renders the same page.
fn serve_metrics() -> Result<(SocketAddr, PrometheusHandle), String> {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| format!("no free loopback port for the exporter: {error}"))?;
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(Matcher::Full(metrics::CALL_DURATION.into()), &LATENCY)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(metrics::ATTEMPT_DURATION.into()), &LATENCY)
        })
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(metrics::ATTEMPT_SENT.into()), &SIZE))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(metrics::ATTEMPT_RCVD.into()), &SIZE))
        .and_then(PrometheusBuilder::build)
        .map_err(|error| format!("the exporter: {error}"))?;
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|error| error.to_string())?;
    tokio::spawn(exporter);
    Ok((address, handle))
}

async fn run() -> Result<(), String> {
    let (address, page) = serve_metrics()?;
    println!("serving Prometheus text at http://{address}/metrics");
    let backends = Backends::from_args("metrics_prometheus")?;
    let run = "cargo run --example metrics_prometheus --features metrics";
    let options = ServerOptions::new().fail_message("fail");
    let (_servers, _) = start_servers(&backends, options, run).await?;
    let channel = croupier_tokio::grpc::builder(ExampleResolver::target())
        .policy(PolicyConfig::round_robin())
        .build()
        .map_err(|error| error.to_string())?;
    let mut client = EchoClient::new(channel);
    for message in ["hi"; 10].into_iter().chain(["fail"; 2]) {
        let request = EchoRequest {
            message: message.to_owned(),
        };
        match client.unary_echo(request).await {
            Ok(reply) => println!("{}", reply.into_inner().message),
            Err(status) => println!("{:?}: {}", status.code(), status.message()),
        }
    }
    println!();
    println!("--- what a scrape reads (histogram buckets left out) ---");
    for line in page.render().lines() {
        if !line.contains("_bucket{") && !line.starts_with("# HELP") {
            println!("{line}");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
