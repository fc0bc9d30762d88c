//! The load_balancing scenario over real gRPC: two tonic Echo servers, a resolver of our own for
//! the `example` scheme, and ten `UnaryEcho` calls through tonic clients on each of two croupier
//! channels, one pick_first and one round_robin.
//!
//! ```text
//! cargo run --example grpc_load_balancing --features grpc                      # :50051, :50052
//! cargo run --example grpc_load_balancing --features grpc -- --ports 6001,6002 # if those are taken
//! ```
//!
//! With pick_first every call goes to the first server; with round_robin they alternate.

use std::process::ExitCode;

use croupier_echo_grpc::ServerOptions;
use croupier_examples::grpc::{
    call_with_each_policy, ports_from_args, start_servers, EXAMPLE_SCHEME, EXAMPLE_SERVICE_NAME,
};

async fn run() -> Result<(), String> {
    let ports = ports_from_args("grpc_load_balancing")?;
    let run = "cargo run --example grpc_load_balancing --features grpc";
    let servers = start_servers(&ports, ServerOptions::new(), run).await?;
    let target = format!("{EXAMPLE_SCHEME}:///{EXAMPLE_SERVICE_NAME}");
    call_with_each_policy(servers.len(), |policy| {
        croupier_tokio::grpc::builder(&target)
            .policy(policy)
            .build()
    })
    .await
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
