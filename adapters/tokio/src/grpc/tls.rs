//! TLS for the gRPC channel (feature `tls`): rustls through tokio-rustls, on ring.
//!
//! [`GrpcChannelBuilder::tls`](super::GrpcChannelBuilder::tls) runs every connection over TLS
//! with a rustls [`ClientConfig`]: yours, or one of [`client_config`] (roots you give, say a
//! private CA's, or the platform's from [`native_roots`]) and [`client_config_with_identity`]
//! (the same, with a client certificate for servers that ask for one: mutual TLS).
//!
//! - The server is verified against its name, as gRPC names it: the channel's authority if set,
//!   else the server name the resolver gave the address's endpoint, else the target's authority
//!   (`dns:///api.internal:50051` -> `api.internal`); the port is not part of it.
//! - ALPN offers `h2` only, and a server that does not select it fails the attempt: gRPC runs on
//!   HTTP/2 and nothing else.
//! - A failed handshake fails the connection attempt with a message that names the address and
//!   rustls's reason (`TLS handshake with 127.0.0.1:50051 failed: invalid peer certificate:
//!   UnknownIssuer`), which the subchannel's last error and the calls it fails quote.

use std::future::Future;
use std::io;
use std::sync::Arc;

use croupier::Address;
use croupier_channel::BoxFuture;
use http::uri::Authority;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::Transport;
use crate::connector::StreamConnector;

pub use rustls;

/// The ALPN protocol gRPC runs on.
const H2: &[u8] = b"h2";

/// A [`Transport`] that runs TLS over the streams of another (by default, TCP): each stream is
/// verified against the name its calls go to, and must agree on HTTP/2 by ALPN.
pub struct TlsTransport<T = StreamConnector> {
    inner: T,
    connector: TlsConnector,
}

impl<T> std::fmt::Debug for TlsTransport<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl TlsTransport<StreamConnector> {
    /// TLS over TCP (and unix-domain sockets) with `config`, whose ALPN protocols become `h2`
    /// alone.
    pub fn new(config: ClientConfig) -> Self {
        TlsTransport::over(StreamConnector::new(), config)
    }
}

impl<T: Transport> TlsTransport<T> {
    /// TLS over the streams `inner` opens (a proxy's tunnel, say) with `config`, whose ALPN
    /// protocols become `h2` alone.
    pub fn over(inner: T, mut config: ClientConfig) -> Self {
        config.alpn_protocols = vec![H2.to_vec()];
        TlsTransport {
            inner,
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    fn handshake(
        &self,
        address: &Address,
        authority: &Authority,
    ) -> impl Future<Output = io::Result<TlsStream<T::Io>>> + Send + 'static {
        let server_name = server_name(authority);
        let opened: BoxFuture<'static, io::Result<T::Io>> =
            Box::pin(self.inner.open_for(address, authority));
        let connector = self.connector.clone();
        let address = address.clone();
        async move {
            let server_name = server_name.map_err(|reason| failed(&address, reason))?;
            let stream = opened.await?;
            let tls = connector
                .connect(server_name, stream)
                .await
                .map_err(|error| failed(&address, error))?;
            match tls.get_ref().1.alpn_protocol() {
                Some(H2) => Ok(tls),
                Some(other) => Err(failed(
                    &address,
                    format!(
                        "the server chose {:?} by ALPN, not h2",
                        String::from_utf8_lossy(other)
                    ),
                )),
                None => Err(failed(&address, "the server did not agree on h2 by ALPN")),
            }
        }
    }
}

impl<T: Transport> Transport for TlsTransport<T> {
    type Io = TlsStream<T::Io>;

    /// Opens a TLS stream that verifies the server against the name of `address` itself (its
    /// IP address); the connector opens with [`Transport::open_for`] instead.
    fn open(
        &self,
        address: &Address,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static {
        self.handshake(address, &super::names::of_address(address))
    }

    fn open_for(
        &self,
        address: &Address,
        authority: &Authority,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static {
        self.handshake(address, authority)
    }

    fn is_secure(&self) -> bool {
        true
    }
}

/// The name TLS verifies for calls to `authority`: its host, without the port (and without the
/// brackets of an IPv6 address).
fn server_name(authority: &Authority) -> Result<ServerName<'static>, String> {
    let host = authority.host();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))
}

fn failed(address: &Address, reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("TLS handshake with {address} failed: {reason}"),
    )
}

/// A rustls configuration, on ring, that trusts the certificate authorities in `roots` and
/// presents no client certificate.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, rustls::Error> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A rustls configuration, on ring, that trusts the certificate authorities in `roots` and
/// presents the certificate `chain` (its own first) with its private `key` to servers that ask
/// for one (mutual TLS). Fails if the key does not suit the certificate.
pub fn client_config_with_identity(
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
}

/// The certificate authorities the platform trusts (on Linux, the system's CA bundle; honours
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`), read with rustls-native-certs. Certificates that do
/// not parse are skipped; finding none at all is an error.
pub fn native_roots() -> io::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _skipped) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let reasons: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no trusted certificate authority found on this platform{}",
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", reasons.join("; "))
                }
            ),
        ));
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_authoritys_host_without_port_or_brackets() {
        let name = |a: &'static str| server_name(&Authority::from_static(a));
        assert_eq!(
            name("api.internal:50051").unwrap(),
            ServerName::try_from("api.internal").unwrap()
        );
        assert_eq!(
            name("[::1]:443").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            name("127.0.0.1:1").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert!(name("bad_name!:1").is_err());
    }
}
