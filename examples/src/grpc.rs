//! What the gRPC examples share (feature `grpc`): tonic Echo servers on the ports asked for (or
//! servers already running), the `example` resolver naming them, and ten `UnaryEcho` calls
//! through a pick_first channel, then ten through a round_robin one.

use croupier::PolicyConfig;
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::Http2Channel;
use croupier_tokio::BuildError;

use crate::backends::{Backends, ExampleResolver};

/// The channel a tonic client uses.
pub type Channel = Http2Channel<tonic::body::Body>;

/// A tonic client on a croupier channel: the only croupier-specific part is the channel.
type Client = EchoClient<Channel>;

/// Starts an Echo server with `options` on each port [`Backends::Start`] names (none for
/// [`Backends::Connect`], whose servers already run), and registers the `example` resolver for
/// the servers' addresses. `run` is the command that runs the example, for the hint when a port
/// is taken. Returns the servers it started (dropping them stops them) and how many backends
/// the resolver names.
pub async fn start_servers(
    backends: &Backends,
    options: ServerOptions,
    run: &str,
) -> Result<(Vec<GrpcEchoServer>, usize), String> {
    let (servers, addresses) = backends
        .serve(
            run,
            |port| GrpcEchoServer::start(port, options.clone()),
            GrpcEchoServer::address,
        )
        .await?;
    let count = addresses.len();
    // Register the resolver for the whole program before building channels (gRPC's
    // `resolver.Register` in `init`).
    croupier_tokio::register_resolver(
        crate::backends::EXAMPLE_SCHEME,
        ExampleResolver::new(addresses),
    );
    Ok((servers, count))
}

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

async fn wait_until_all_ready(channel: &Channel, backends: usize) {
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

/// Ten calls through a pick_first channel (all to one server), then ten through a round_robin
/// one (alternating over `backends` servers); `channel` builds each channel with the policy.
pub async fn call_with_each_policy(
    backends: usize,
    channel: impl Fn(PolicyConfig) -> Result<Channel, BuildError>,
) -> Result<(), String> {
    // pick_first is the default policy; named here to show both.
    let pick_first = channel(PolicyConfig::pick_first()).map_err(|error| error.to_string())?;
    let round_robin = channel(PolicyConfig::round_robin()).map_err(|error| error.to_string())?;
    call_through(backends, pick_first, round_robin).await
}

/// Ten calls through the `pick_first` channel (all to one server), then ten through the
/// `round_robin` one (alternating over `backends` servers).
pub async fn call_through(
    backends: usize,
    pick_first: Channel,
    round_robin: Channel,
) -> Result<(), String> {
    let mut client = EchoClient::new(pick_first);
    println!("--- calling grpc.examples.echo.Echo/UnaryEcho with pick_first ---");
    make_rpcs(&mut client, 10).await?;
    println!();

    // round_robin connects to every backend at once and spreads calls over the READY ones; let
    // both connections finish so the output shows the alternation from the first call.
    wait_until_all_ready(&round_robin, backends).await;
    let mut client = EchoClient::new(round_robin);
    println!("--- calling grpc.examples.echo.Echo/UnaryEcho with round_robin ---");
    make_rpcs(&mut client, 10).await
}
