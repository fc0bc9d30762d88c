//! The `dns` resolver: the target's host looked up at start and whenever the channel asks (on a
//! lost connection, after an error with backoff, and periodically: the core's re-resolution
//! schedule), and, if asked to, its service config from DNS TXT records (gRFC A2).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::Arc;

use croupier::service_config::{ClientCriteria, ServiceConfigParser};
use croupier::{Endpoint, ResolverError, ResolverUpdate, Target};

use crate::resolver::{Resolver, ResolverContext};
use crate::runtime::BoxFuture;

/// Looks up the TXT records of a DNS name: what the `dns` resolver reads service configs from.
/// The tokio adapter has one on hickory-resolver (feature `dns-txt`).
pub trait TxtLookup: Send + Sync + 'static {
    /// The texts of `name`'s TXT records, each record's strings joined (RFC 4408); an empty list
    /// when the name has none (NXDOMAIN, no TXT data).
    fn lookup_txt(&self, name: String) -> BoxFuture<'static, io::Result<Vec<String>>>;
}

/// Where the `dns` resolver's service configs come from: the TXT lookup, the parser for the
/// configs, and the client as the records' choices see it.
#[derive(Clone)]
struct TxtConfig {
    lookup: Arc<dyn TxtLookup>,
    parser: ServiceConfigParser,
    client: ClientCriteria,
}

/// The `dns` resolver, built in for the scheme `dns`: the host's addresses from the runtime's
/// lookup, and (with [`DnsResolver::service_config_from`]) the service config from the TXT
/// records of `_grpc_config.<host>`, as gRPC's DNS resolver reads them (gRFC A2). Register one
/// with options for a channel with `.resolver("dns", DnsResolver::new()...)`.
#[derive(Clone, Default)]
pub struct DnsResolver {
    txt: Option<TxtConfig>,
}

impl fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsResolver")
            .field("service_config_from_txt", &self.txt.is_some())
            .field("client", &self.txt.as_ref().map(|txt| &txt.client))
            .finish()
    }
}

impl DnsResolver {
    /// Addresses only, as the built-in `dns` resolver.
    pub fn new() -> Self {
        DnsResolver::default()
    }

    /// Also reads the service config from TXT records with `lookup` (off by default, as
    /// grpc-go's `GRPC_ENABLE_TXT_SERVICE_CONFIG` can turn it off: a TXT lookup is one more
    /// query per resolution). The choices are read with the built-in policies' parser and a
    /// client that drew a random percentage once; see [`DnsResolver::txt_parser`] and
    /// [`DnsResolver::txt_client`]. A config that does not parse reaches the channel as an
    /// invalid one (gRFC A21 applies); a failed TXT lookup counts as no config.
    pub fn service_config_from(mut self, lookup: impl TxtLookup) -> Self {
        self.txt = Some(TxtConfig {
            lookup: Arc::new(lookup),
            parser: ServiceConfigParser::new(),
            client: ClientCriteria::new(random_percentage()),
        });
        self
    }

    /// Reads the TXT records' configs with `parser` (one that knows your own policies).
    pub fn txt_parser(mut self, parser: ServiceConfigParser) -> Self {
        if let Some(txt) = self.txt.as_mut() {
            txt.parser = parser;
        }
        self
    }

    /// Chooses among the TXT records' configs as `client` (its host name, its percentage draw).
    pub fn txt_client(mut self, client: ClientCriteria) -> Self {
        if let Some(txt) = self.txt.as_mut() {
            txt.client = client;
        }
        self
    }
}

/// A number from 1 to 100, drawn once per resolver.
fn random_percentage() -> u8 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e3779b9);
    (hasher.finish() % 100) as u8 + 1
}

impl Resolver for DnsResolver {
    fn resolve(&self, target: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        let target = target.clone();
        let txt = self.txt.clone();
        Box::pin(async move {
            let (host, port) = match target.host_port(context.default_port()) {
                Ok(host_port) => host_port,
                Err(error) => {
                    context.error(ResolverError::new(error.to_string()));
                    return;
                }
            };
            loop {
                let looked_up = context.runtime().lookup_host(host.clone(), port).await;
                match looked_up {
                    Ok(addresses) if addresses.is_empty() => context.error(ResolverError::new(
                        format!("DNS lookup of {host} returned no addresses"),
                    )),
                    Ok(mut addresses) => {
                        addresses.dedup();
                        let update = ResolverUpdate::new(addresses.into_iter().map(Endpoint::new));
                        let update = match &txt {
                            Some(txt) => txt.apply(&host, update).await,
                            None => update,
                        };
                        context.update(update);
                    }
                    Err(error) => context.error(ResolverError::new(format!(
                        "DNS lookup of {host}:{port} failed: {error}"
                    ))),
                }
                context.resolve_now().await;
            }
        })
    }
}

impl TxtConfig {
    /// `update` with the service config `host`'s TXT records give this client, if any.
    async fn apply(&self, host: &str, update: ResolverUpdate) -> ResolverUpdate {
        let name = format!("_grpc_config.{host}");
        let Ok(records) = self.lookup.lookup_txt(name).await else {
            return update;
        };
        match self
            .client
            .choose(records.iter().map(String::as_str), &self.parser)
        {
            Ok(None) => update,
            Ok(Some(config)) => update.with_service_config(Ok(config)),
            Err(error) => update.with_service_config(Err(error)),
        }
    }
}
