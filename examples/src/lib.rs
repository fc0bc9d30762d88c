//! Runnable examples of croupier: see the `[[example]]` entries in this crate's manifest.

pub mod backends;
#[cfg(feature = "grpc")]
pub mod grpc;
