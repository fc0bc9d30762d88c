//! The load_balancing scenario over real gRPC: two tonic Echo servers, a resolver of our own for
//! the `example` scheme, and ten `UnaryEcho` calls through tonic clients on each of two croupier
//! channels, one pick_first and one round_robin.
//!
//! ```text
//! cargo run --example grpc_load_balancing --features grpc                      # :50051, :50052
//! cargo run --example grpc_load_balancing --features grpc -- --ports 6001,6002 # if those are taken
//! ```
//!
//! With pick_first every call goes to the first server; with round_robin they alternate. As in
//! grpc-go's example, the round_robin channel chooses its policy with a default service config
//! (grpc-go's `WithDefaultServiceConfig`); a service config from the resolver would replace it.

use std::process::ExitCode;

use croupier_echo_grpc::ServerOptions;
use croupier_examples::grpc::{
    call_through, ports_from_args, start_servers, EXAMPLE_SCHEME, EXAMPLE_SERVICE_NAME,
};

/// The round_robin channel's default service config: its policy, and a deadline for every call
/// of the echo service that sets none shorter.
const ROUND_ROBIN_CONFIG: &str = r#"{
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{"name": [{"service": "grpc.examples.echo.Echo"}], "timeout": "5s"}]
}"#;

async fn run() -> Result<(), String> {
    let ports = ports_from_args("grpc_load_balancing")?;
    let run = "cargo run --example grpc_load_balancing --features grpc";
    let servers = start_servers(&ports, ServerOptions::new(), run).await?;
    let target = format!("{EXAMPLE_SCHEME}:///{EXAMPLE_SERVICE_NAME}");
    // pick_first is the policy of a channel without a service config.
    let pick_first = croupier_tokio::grpc::builder(&target)
        .build()
        .map_err(|error| error.to_string())?;
    let round_robin = croupier_tokio::grpc::builder(&target)
        .default_service_config(ROUND_ROBIN_CONFIG)
        .build()
        .map_err(|error| error.to_string())?;
    call_through(servers.len(), pick_first, round_robin).await
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
