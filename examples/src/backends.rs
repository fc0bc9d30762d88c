//! What every load_balancing example shares: which backends to call (servers it starts, or
//! servers already running), and a resolver of our own that names them.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use croupier::{Endpoint, ResolverError, ResolverUpdate, Target};
use croupier_channel::{BoxFuture, Resolver, ResolverContext};

/// The scheme our resolver is registered for.
pub const EXAMPLE_SCHEME: &str = "example";
/// The one name it resolves.
pub const EXAMPLE_SERVICE_NAME: &str = "lb.example.grpc.io";

/// The backends an example calls, from its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backends {
    /// Start servers on 127.0.0.1 at these ports (`--ports 6001,6002`; 50051 and 50052 by
    /// default).
    Start(Vec<u16>),
    /// Call servers that already listen (`--connect 127.0.0.1:50051,127.0.0.1:50052`).
    Connect(Vec<SocketAddr>),
}

impl Backends {
    /// Reads `--ports PORT,PORT` or `--connect HOST:PORT,HOST:PORT` from the command line;
    /// `program` names the example in the usage message.
    pub fn from_args(program: &str) -> Result<Backends, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Backends::parse(&args).map_err(|error| {
            format!("{error}\nusage: {program} [--ports PORT,PORT | --connect HOST:PORT,HOST:PORT]")
        })
    }

    /// Reads the arguments (without the program's name).
    pub fn parse(args: &[String]) -> Result<Backends, String> {
        match args {
            [] => Ok(Backends::Start(vec![50051, 50052])),
            [flag, list] if flag == "--ports" => list
                .split(',')
                .map(|port| {
                    port.trim()
                        .parse::<u16>()
                        .map_err(|_| format!("not a port: {port:?}"))
                })
                .collect::<Result<_, _>>()
                .map(Backends::Start),
            [flag, list] if flag == "--connect" => list
                .split(',')
                .map(|server| {
                    let server = server.trim();
                    server
                        .to_socket_addrs()
                        .ok()
                        .and_then(|mut addresses| addresses.next())
                        .ok_or_else(|| format!("not a HOST:PORT that resolves: {server:?}"))
                })
                .collect::<Result<_, _>>()
                .map(Backends::Connect),
            _ => Err(format!("unexpected arguments: {}", args.join(" "))),
        }
    }
}

impl Backends {
    /// The servers to call: for [`Backends::Start`], one started by `start` on each port (they
    /// run while the returned servers live; `address` reads each one's); for
    /// [`Backends::Connect`], none started and the addresses given. `run` is the command that
    /// runs the example, for the hint when a port is taken.
    pub async fn serve<S, F>(
        &self,
        run: &str,
        mut start: impl FnMut(u16) -> F,
        address: impl Fn(&S) -> SocketAddr,
    ) -> Result<(Vec<S>, Vec<SocketAddr>), String>
    where
        F: Future<Output = io::Result<S>>,
    {
        let ports = match self {
            Backends::Connect(addresses) => return Ok((Vec::new(), addresses.clone())),
            Backends::Start(ports) => ports,
        };
        let mut servers = Vec::new();
        for &port in ports {
            let server = start(port).await.map_err(|error| {
                format!(
                    "cannot listen on 127.0.0.1:{port}: {error}\n\
                     another program holds that port; pick free ones with: \
                     {run} -- --ports 6001,6002"
                )
            })?;
            servers.push(server);
        }
        let addresses = servers.iter().map(address).collect();
        Ok((servers, addresses))
    }
}

/// Resolves `example:///lb.example.grpc.io` to the backends' addresses.
#[derive(Debug)]
pub struct ExampleResolver {
    addresses: Vec<SocketAddr>,
}

impl ExampleResolver {
    /// A resolver that answers `addresses` for [`EXAMPLE_SERVICE_NAME`].
    pub fn new(addresses: Vec<SocketAddr>) -> Self {
        ExampleResolver { addresses }
    }

    /// The target that names the backends through this resolver.
    pub fn target() -> String {
        format!("{EXAMPLE_SCHEME}:///{EXAMPLE_SERVICE_NAME}")
    }
}

impl Resolver for ExampleResolver {
    fn resolve(&self, target: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        if target.endpoint() == EXAMPLE_SERVICE_NAME {
            context.update(ResolverUpdate::new(
                self.addresses.iter().copied().map(Endpoint::new),
            ));
        } else {
            context.error(ResolverError::new(format!(
                "the example resolver only knows {EXAMPLE_SERVICE_NAME}, not {}",
                target.endpoint()
            )));
        }
        // A static list: nothing more to do. A real resolver would loop on `context.resolve_now()`.
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn reads_ports_and_servers_to_connect_to() {
        assert_eq!(
            Backends::parse(&[]),
            Ok(Backends::Start(vec![50051, 50052]))
        );
        assert_eq!(
            Backends::parse(&args("--ports 6001,6002")),
            Ok(Backends::Start(vec![6001, 6002]))
        );
        assert_eq!(
            Backends::parse(&args("--connect 127.0.0.1:50051,127.0.0.1:50052")),
            Ok(Backends::Connect(vec![
                "127.0.0.1:50051".parse().unwrap(),
                "127.0.0.1:50052".parse().unwrap()
            ]))
        );
        assert_eq!(
            Backends::parse(&args("--ports 6001,x")),
            Err("not a port: \"x\"".to_owned())
        );
        assert!(Backends::parse(&args("--connect 127.0.0.1")).is_err());
        assert!(Backends::parse(&args("--verbose")).is_err());
    }
}
