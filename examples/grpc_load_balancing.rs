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

use std::net::SocketAddr;
use std::process::ExitCode;

use croupier::{Endpoint, PolicyConfig, ResolverUpdate, Target};
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::Http2Channel;
use croupier_tokio::{BoxFuture, Resolver, ResolverContext};

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

/// A tonic client on a croupier channel: the only croupier-specific line is the channel.
type Client = EchoClient<Http2Channel<tonic::body::Body>>;

async fn call_unary_echo(client: &mut Client, message: &str) -> Result<(), String> {
    let request = tonic::Request::new(EchoRequest {
        message: message.to_owned(),
    });
    let response = client
        .unary_echo(request)
        .await
        .map_err(|status| format!("the call failed: {status}"))?;
    println!("{}", response.into_inner().message);
    Ok(())
}

async fn make_rpcs(client: &mut Client, n: usize) -> Result<(), String> {
    for _ in 0..n {
        call_unary_echo(client, "this is examples/load_balancing").await?;
    }
    Ok(())
}

async fn wait_until_all_ready(channel: &Http2Channel<tonic::body::Body>, backends: usize) {
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
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
        _ => Err("usage: grpc_load_balancing [--ports PORT,PORT]".to_owned()),
    }
}

async fn run() -> Result<(), String> {
    let ports = ports_from_args()?;
    let mut servers = Vec::new();
    for port in ports {
        let server = GrpcEchoServer::start(port, ServerOptions::new())
            .await
            .map_err(|error| {
                format!(
                    "cannot listen on 127.0.0.1:{port}: {error}\n\
                     another program holds that port; pick free ones with: \
                     cargo run --example grpc_load_balancing --features grpc -- --ports 6001,6002"
                )
            })?;
        servers.push(server);
    }

    // Register the resolver for the whole program before building channels (gRPC's
    // `resolver.Register` in `init`).
    croupier_tokio::register_resolver(
        EXAMPLE_SCHEME,
        ExampleResolver {
            addresses: servers.iter().map(GrpcEchoServer::address).collect(),
        },
    );
    let target = format!("{EXAMPLE_SCHEME}:///{EXAMPLE_SERVICE_NAME}");

    // pick_first is the default policy.
    let pick_first = croupier_tokio::grpc::builder(&target)
        .build()
        .map_err(|error| error.to_string())?;
    let mut client = EchoClient::new(pick_first);
    println!("--- calling grpc.examples.echo.Echo/UnaryEcho with pick_first ---");
    make_rpcs(&mut client, 10).await?;
    println!();

    let round_robin = croupier_tokio::grpc::builder(&target)
        .policy(PolicyConfig::round_robin())
        .build()
        .map_err(|error| error.to_string())?;
    // round_robin connects to every backend at once and spreads calls over the READY ones; let
    // both connections finish so the output shows the alternation from the first call.
    wait_until_all_ready(&round_robin, servers.len()).await;
    let mut client = EchoClient::new(round_robin);
    println!("--- calling grpc.examples.echo.Echo/UnaryEcho with round_robin ---");
    make_rpcs(&mut client, 10).await?;
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
