//! Runnable examples of croupier: see the `[[example]]` entries in this crate's manifest.
