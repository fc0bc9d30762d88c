//! The load_balancing scenario on async-std: two echo servers, a resolver of our own for the
//! `example` scheme, and ten calls through each of two policies. The same program as
//! `load_balancing`, with `croupier_async_std` in place of `croupier_tokio`.
//!
//! ```text
//! cargo run --example load_balancing_async_std
//! cargo run --example load_balancing_async_std -- --ports 6001,6002 # if those ports are taken
//! cargo run --example load_balancing_async_std -- --connect 127.0.0.1:50051,127.0.0.1:50052 # servers already running
//! ```
//!
//! With pick_first every call goes to the first server; with round_robin they alternate.

use std::process::ExitCode;
use std::time::Duration;

use croupier::{PickRequest, PolicyConfig};
use croupier_async_std::{Channel, PickOptions, SharedStream};
use croupier_echo::{futures_io::echo, EchoServer};
use croupier_examples::backends::{Backends, ExampleResolver, EXAMPLE_SCHEME};

async fn call_unary_echo(channel: &Channel<SharedStream>, message: &str) -> Result<(), String> {
    let options = PickOptions::new().timeout(Duration::from_secs(5));
    let picked = channel
        .pick_with(&PickRequest::new(), options)
        .await
        .map_err(|status| format!("could not pick a backend: {status}"))?;
    let reply = {
        let mut stream = picked.connection.lock().await;
        echo(&mut *stream, message).await
    };
    match reply {
        Ok(reply) => {
            picked.call.success();
            println!("{reply}");
            Ok(())
        }
        Err(error) => {
            // The connection itself failed: take it out of rotation now.
            picked.connection.mark_broken(error.to_string());
            picked.call.finish(croupier::Code::Unavailable);
            Err(format!("the call failed: {error}"))
        }
    }
}

async fn make_rpcs(channel: &Channel<SharedStream>, n: usize) -> Result<(), String> {
    for _ in 0..n {
        call_unary_echo(channel, "this is examples/load_balancing").await?;
    }
    Ok(())
}

async fn wait_until_all_ready(channel: &Channel<SharedStream>, backends: usize) {
    for _ in 0..500 {
        let ready = channel
            .subchannels()
            .await
            .iter()
            .filter(|s| s.state == croupier::ConnectivityState::Ready)
            .count();
        if ready >= backends {
            return;
        }
        async_std::task::sleep(Duration::from_millis(10)).await;
    }
}

async fn run() -> Result<(), String> {
    let backends = Backends::from_args("load_balancing_async_std")?;
    let run = "cargo run --example load_balancing_async_std";
    let (_servers, addresses) = backends
        .serve(run, EchoServer::start, EchoServer::address)
        .await?;
    let backends = addresses.len();

    // Register the resolver for the whole program before building channels (gRPC's
    // `resolver.Register` in `init`).
    croupier_async_std::register_resolver(EXAMPLE_SCHEME, ExampleResolver::new(addresses));
    let target = ExampleResolver::target();

    // pick_first is the default policy.
    let pick_first = croupier_async_std::builder(&target)
        .build()
        .map_err(|error| error.to_string())?;
    println!("--- calling echo with pick_first ---");
    make_rpcs(&pick_first, 10).await?;
    println!();

    let round_robin = croupier_async_std::builder(&target)
        .policy(PolicyConfig::round_robin())
        .build()
        .map_err(|error| error.to_string())?;
    // round_robin connects to every backend at once and spreads calls over the READY ones; let
    // both connections finish so the output shows the alternation from the first call.
    wait_until_all_ready(&round_robin, backends).await;
    println!("--- calling echo with round_robin ---");
    make_rpcs(&round_robin, 10).await?;
    Ok(())
}

#[async_std::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
