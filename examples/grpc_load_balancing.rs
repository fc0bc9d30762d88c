//! The load_balancing scenario over real gRPC: two tonic Echo servers, a resolver of our own for
//! the `example` scheme, and ten `UnaryEcho` calls through tonic clients on each of two croupier
//! channels, one pick_first and one round_robin.
//!
//! ```text
//! cargo run --example grpc_load_balancing --features grpc                      # :50051, :50052
//! cargo run --example grpc_load_balancing --features grpc -- --ports 6001,6002 # if those are taken
//! cargo run --example grpc_load_balancing --features grpc -- --connect 127.0.0.1:50051,127.0.0.1:50052
//! ```
//!
//! With `--connect` it starts no servers and calls Echo servers that already listen there (grpc-go's
//! `examples/features/load_balancing/server`, say, or another run's).
//!
//! With pick_first every call goes to the first server; with round_robin they alternate. As in
//! grpc-go's example, the round_robin channel chooses its policy with a default service config
//! (grpc-go's `WithDefaultServiceConfig`); a service config from the resolver would replace it.

use std::process::ExitCode;

use croupier_echo_grpc::ServerOptions;
use croupier_examples::backends::{Backends, ExampleResolver};
use croupier_examples::grpc::{call_through, start_servers};

/// The round_robin channel's default service config: its policy, and a deadline for every call
/// of the echo service that sets none shorter.
const ROUND_ROBIN_CONFIG: &str = r#"{
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{"name": [{"service": "grpc.examples.echo.Echo"}], "timeout": "5s"}]
}"#;

async fn run() -> Result<(), String> {
    let backends = Backends::from_args("grpc_load_balancing")?;
    let run = "cargo run --example grpc_load_balancing --features grpc";
    let (_servers, count) = start_servers(&backends, ServerOptions::new(), run).await?;
    let target = ExampleResolver::target();
    // pick_first is the policy of a channel without a service config.
    let pick_first = croupier_tokio::grpc::builder(&target)
        .build()
        .map_err(|error| error.to_string())?;
    let round_robin = croupier_tokio::grpc::builder(&target)
        .default_service_config(ROUND_ROBIN_CONFIG)
        .build()
        .map_err(|error| error.to_string())?;
    call_through(count, pick_first, round_robin).await
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
