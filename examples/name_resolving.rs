//! How targets are resolved: `dns:///localhost:PORT` looks the name up, `passthrough:///addr`
//! hands the address to the connector as it is, and a target with no scheme defaults to `dns`.
//!
//! ```text
//! cargo run --example name_resolving
//! ```

use std::process::ExitCode;
use std::time::Duration;

use croupier::PickRequest;
use croupier_echo::{tokio_io::echo, EchoServer};
use croupier_tokio::PickOptions;

async fn call(target: &str) -> Result<String, String> {
    let channel = croupier_tokio::builder(target)
        .build()
        .map_err(|error| error.to_string())?;
    let options = PickOptions::new().timeout(Duration::from_secs(5));
    let picked = channel
        .pick_with(&PickRequest::new(), options)
        .await
        .map_err(|status| status.to_string())?;
    let reply = {
        let mut stream = picked.connection.lock().await;
        echo(&mut *stream, "this is examples/name_resolving").await
    };
    picked.call.success();
    reply.map_err(|error| error.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let server = match EchoServer::start(0).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: cannot start an echo server on 127.0.0.1: {error}");
            return ExitCode::FAILURE;
        }
    };
    let port = server.port();
    let targets = [
        format!("dns:///localhost:{port}"),
        format!("passthrough:///127.0.0.1:{port}"),
        format!("127.0.0.1:{port}"),
        format!("ipv4:127.0.0.1:{port}"),
        "nosuchscheme:///somewhere".to_owned(),
    ];
    for target in &targets {
        match call(target).await {
            Ok(reply) => println!("{target:<36} -> {reply}"),
            Err(error) => println!("{target:<36} -> error: {error}"),
        }
    }
    ExitCode::SUCCESS
}
