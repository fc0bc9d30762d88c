//! # croupier-etcd
//!
//! Discovery from an etcd v3 registry for croupier's channels: the resolver for targets
//! `etcd://127.0.0.1:2379,127.0.0.1:22379/services/echo`, whose authority lists the etcd members
//! to ask and whose path names a key prefix. Every key under `services/echo/` is one endpoint,
//! its value in the format etcd's Go `client/v3/naming/endpoints` package writes
//! (`{"Op":0,"Addr":"10.0.0.1:50051","Metadata":{"weight":3,"zone":"eu-1a"}}`), so a Go
//! service that registers itself with etcd's own client is found as it is.
//!
//! ```no_run
//! use croupier_etcd::EtcdResolver;
//! use croupier_tokio::PolicyConfig;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = croupier_tokio::grpc::builder::<tonic::body::Body>("etcd://127.0.0.1:2379/services/echo")
//!     .resolver("etcd", EtcdResolver::new().user("croupier", "secret"))
//!     .policy(PolicyConfig::round_robin())
//!     .build()?;
//! // Hand `channel` to a tonic client: `EchoClient::new(channel)`.
//! # let _ = channel; Ok(()) }
//! ```
//!
//! The resolver reads the prefix in full, then watches it from the revision after that read;
//! each watch response reaches the channel as one update. A compacted revision, a lost watch or
//! the channel's request to resolve again reads it in full again. It asks one member at a time
//! and moves to the next when one fails, reading in full there, so no endpoint is lost on the
//! way; when every member has failed the channel hears an error and keeps serving its last list,
//! and the resolver keeps trying the members with backoff until one answers. A key whose value
//! is not an endpoint is skipped with an error that names it ([`EtcdError::MalformedValue`]),
//! and the rest of the list applied. A list longer than the channel's endpoint limit
//! (`max_endpoints`) is refused by the channel with that limit's error.
//!
//! When `Metadata` is an object: `weight` (a whole number) is the endpoint's static weight,
//! `server_name` the name its server answers to (TLS verification, `:authority`), `hierarchy`
//! (an array of strings) its place in a tree of policies, and every member whose value is a
//! string, a number or a boolean also a label of the same name (`zone`, `hash_key`, ...).
//!
//! ## Features
//!
//! - `tls` (off by default): [`EtcdResolver::tls`], TLS to the members on rustls with ring.

#![forbid(unsafe_code)]
// On docs.rs, items behind a feature carry a badge naming it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod event;
mod registry;
mod resolver;
mod target;
mod value;
mod watch;

pub use error::EtcdError;
/// The TLS settings [`EtcdResolver::tls`] takes: a CA certificate to trust, a client identity
/// for etcd's client-certificate auth, the name to verify the members by.
#[cfg(feature = "tls")]
pub use etcd_client::{Certificate, Identity, TlsOptions};
pub use event::EtcdEvent;
pub use resolver::EtcdResolver;

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
