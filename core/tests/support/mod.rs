//! Helpers shared by the core's integration tests, on top of `croupier::testing` (the simulated
//! adapter and invariant checker that the fuzz targets use too).

#![allow(dead_code, unused_imports, unreachable_pub)] // each test file uses a different part

pub use croupier::testing::{addr, ms, update, Harness, Seen};
use croupier::{Address, ConnectivityState, Endpoint};

/// One endpoint per port.
pub fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
    ports.iter().map(|&p| Endpoint::new(addr(p))).collect()
}

/// The Connect actions in `seen`, as addresses.
pub fn connects(seen: &[Seen]) -> Vec<Address> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Connect(_, a, _) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// The number of ResolveNow requests in `seen`.
pub fn resolve_nows(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| matches!(s, Seen::ResolveNow(_)))
        .count()
}

/// The states announced in `seen`.
pub fn states(seen: &[Seen]) -> Vec<ConnectivityState> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::State(state) => Some(*state),
            _ => None,
        })
        .collect()
}
