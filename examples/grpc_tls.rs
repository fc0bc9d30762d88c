//! The grpc_load_balancing program over TLS: at start it makes a private certificate authority
//! and a certificate for `lb.example.grpc.io` (with rcgen), serves two tonic Echo servers over
//! rustls with it, and calls them through channels that trust that authority alone and verify
//! each server against the target's name.
//!
//! ```text
//! cargo run --example grpc_tls --features tls                      # :50051, :50052
//! cargo run --example grpc_tls --features tls -- --ports 6001,6002 # if those are taken
//! ```

use std::process::ExitCode;

use croupier_echo_grpc::tls::{server_config, Authority};
use croupier_echo_grpc::ServerOptions;
use croupier_examples::backends::{Backends, ExampleResolver, EXAMPLE_SERVICE_NAME};
use croupier_examples::grpc::{call_with_each_policy, start_servers};
use croupier_tokio::grpc::tls::client_config;

async fn run() -> Result<(), String> {
    let backends = match Backends::from_args("grpc_tls")? {
        Backends::Connect(_) => {
            return Err(
                "grpc_tls starts its own servers (they need its certificate authority): \
                        use --ports, or grpc_load_balancing --connect"
                    .to_owned(),
            )
        }
        ports => ports,
    };
    let ca = Authority::new("croupier example CA").map_err(|e| e.to_string())?;
    let identity = ca
        .issue(&[EXAMPLE_SERVICE_NAME])
        .map_err(|e| e.to_string())?;
    println!(
        "made a private certificate authority and a certificate for {EXAMPLE_SERVICE_NAME} \
         that it signed; the servers present it, the channels trust that authority alone"
    );
    let tls = server_config(&identity, &[b"h2"], None).map_err(|e| e.to_string())?;
    let run = "cargo run --example grpc_tls --features tls";
    let (_servers, count) = start_servers(&backends, ServerOptions::new().tls(tls), run).await?;
    println!();

    // Each server is verified against the target's name, lb.example.grpc.io; calls say
    // `:scheme` https.
    let config = client_config(ca.roots()).map_err(|e| e.to_string())?;
    let target = ExampleResolver::target();
    call_with_each_policy(count, |policy| {
        croupier_tokio::grpc::builder(&target)
            .policy(policy)
            .tls(config.clone())
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
