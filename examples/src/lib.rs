//! Runnable examples of croupier: see the `[[example]]` entries in this crate's manifest.

#[cfg(feature = "grpc")]
pub mod grpc;
