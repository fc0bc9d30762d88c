//! The load_balancing scenario on async-std: two echo servers, a resolver of our own for the
//! `example` scheme, and ten calls through each of two policies. The same program as
//! `load_balancing`, with `croupier_async_std` in place of `croupier_tokio`.
//!
//! ```text
//! cargo run --example load_balancing_async_std
//! cargo run --example load_balancing_async_std -- --ports 6001,6002 # if those ports are taken
//! ```
//!
//! With pick_first every call goes to the first server; with round_robin they alternate.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use croupier::{Endpoint, PickRequest, PolicyConfig, ResolverUpdate, Target};
use croupier_async_std::{
    BoxFuture, Channel, PickOptions, Resolver, ResolverContext, SharedStream,
};
use croupier_echo::{futures_io::echo, EchoServer};

const EXAMPLE_SCHEME: &str = "example";
const EXAMPLE_SERVICE_NAME: &str = "lb.example.grpc.io";

/// Resolves `example:///lb.example.grpc.io` to the two servers' addresses.
struct ExampleResolver {
    addresses: Vec<SocketAddr>,
}

impl Resolver for ExampleResolver {
    fn resolve(&self, target: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        if target.endpoint() == EXAMPLE_SERVICE_NAME {
            context.update(ResolverUpdate::new(
                self.addresses.iter().copied().map(Endpoint::new),
            ));
        } else {
            context.error(croupier::ResolverError::new(format!(
                "the example resolver only knows {EXAMPLE_SERVICE_NAME}, not {}",
                target.endpoint()
            )));
        }
        // A static list: nothing more to do. A real resolver would loop on `context.resolve_now()`.
        Box::pin(async {})
    }
}

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

fn ports_from_args() -> Result<Vec<u16>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(vec![50051, 50052]),
        [flag, list] if flag == "--ports" => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("not a port: {p:?}"))
            })
            .collect(),
        _ => Err("usage: load_balancing_async_std [--ports PORT,PORT]".to_owned()),
    }
}

async fn run() -> Result<(), String> {
    let ports = ports_from_args()?;
    let mut servers = Vec::new();
    for port in ports {
        let server = EchoServer::start(port).await.map_err(|error| {
            format!(
                "cannot listen on 127.0.0.1:{port}: {error}\n\
                 another program holds that port; pick free ones with: \
                 cargo run --example load_balancing_async_std -- --ports 6001,6002"
            )
        })?;
        servers.push(server);
    }

    // Register the resolver for the whole program before building channels (gRPC's
    // `resolver.Register` in `init`).
    croupier_async_std::register_resolver(
        EXAMPLE_SCHEME,
        ExampleResolver {
            addresses: servers.iter().map(EchoServer::address).collect(),
        },
    );
    let target = format!("{EXAMPLE_SCHEME}:///{EXAMPLE_SERVICE_NAME}");

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
    wait_until_all_ready(&round_robin, servers.len()).await;
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
