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
//! With pick_first every call goes to the first server; with round_robin they alternate.

use std::process::ExitCode;

use croupier_echo_grpc::ServerOptions;
use croupier_examples::backends::{Backends, ExampleResolver};
use croupier_examples::grpc::{call_with_each_policy, start_servers};

async fn run() -> Result<(), String> {
    let backends = Backends::from_args("grpc_load_balancing")?;
    let run = "cargo run --example grpc_load_balancing --features grpc";
    let (_servers, count) = start_servers(&backends, ServerOptions::new(), run).await?;
    let target = ExampleResolver::target();
    call_with_each_policy(count, |policy| {
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
