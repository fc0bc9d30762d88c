//! TXT lookups on hickory-resolver (feature `dns-txt`), so that the `dns` resolver reads a
//! target's service config from DNS as gRPC's does (gRFC A2).

use std::io;
use std::net::SocketAddr;

use croupier_channel::{BoxFuture, TxtLookup};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

/// Looks TXT records up with hickory-resolver: the system's name servers
/// ([`HickoryTxtLookup::system`]) or given ones. Hand it to
/// [`DnsResolver::service_config_from`](croupier_channel::DnsResolver::service_config_from):
///
/// ```no_run
/// use croupier_tokio::{DnsResolver, HickoryTxtLookup};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let dns = DnsResolver::new().service_config_from(HickoryTxtLookup::system()?);
/// let channel = croupier_tokio::builder("dns:///api.internal:50051")
///     .resolver("dns", dns) // reads _grpc_config.api.internal's TXT records too
///     .build()?;
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HickoryTxtLookup {
    resolver: TokioResolver,
}

impl HickoryTxtLookup {
    /// The system's name servers and options (`/etc/resolv.conf` on Unix). Fails when they
    /// cannot be read.
    pub fn system() -> io::Result<Self> {
        let builder = TokioResolver::builder_tokio().map_err(io::Error::other)?;
        Ok(HickoryTxtLookup {
            resolver: builder.build(),
        })
    }

    /// These name servers, asked over UDP (and TCP for answers too long for UDP).
    pub fn with_name_servers(servers: &[SocketAddr]) -> Self {
        let mut config = ResolverConfig::new();
        for server in servers {
            config.add_name_server(NameServerConfig::new(*server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*server, Protocol::Tcp));
        }
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).build();
        HickoryTxtLookup { resolver }
    }
}

impl TxtLookup for HickoryTxtLookup {
    fn lookup_txt(&self, name: String) -> BoxFuture<'static, io::Result<Vec<String>>> {
        let resolver = self.resolver.clone();
        Box::pin(async move {
            // A fully qualified name: the search domains would only add queries.
            let fqdn = if name.ends_with('.') {
                name
            } else {
                format!("{name}.")
            };
            match resolver.txt_lookup(fqdn).await {
                Ok(found) => Ok(found
                    .iter()
                    .map(|txt| {
                        txt.txt_data()
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>()
                    })
                    .collect()),
                Err(error) if error.is_no_records_found() => Ok(Vec::new()),
                Err(error) => Err(io::Error::other(error)),
            }
        })
    }
}
