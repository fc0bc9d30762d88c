//! Helpers shared by the core's integration tests, on top of `croupier-testing` (the simulated
//! adapter and invariant checker that the fuzz targets use too).

#![allow(dead_code, unused_imports, unreachable_pub)] // each test file uses a different part

use croupier::{Address, ConnectivityState, Endpoint};
pub use croupier_testing::{addr, ms, update, Harness, Seen};

pub mod fleet;

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

/// The address of subchannel `id`, if it is alive.
pub fn address_of(h: &Harness, id: croupier::SubchannelId) -> Option<Address> {
    h.lb.subchannels()
        .into_iter()
        .find(|s| s.id == id)
        .map(|s| s.address)
}

/// The address a pick of `request` lands on, if it lands.
pub fn pick_address_for(h: &Harness, request: &croupier::PickRequest<'_>) -> Option<Address> {
    match h.picker().pick(request) {
        croupier::Pick::Ready(id) => address_of(h, id),
        _ => None,
    }
}

/// The address a pick with explicit `hash` lands on, if it lands.
pub fn pick_hash(h: &Harness, hash: u64) -> Option<Address> {
    pick_address_for(h, &croupier::PickRequest::new().with_hash(hash))
}

/// `n` hashes spread evenly over the whole 64-bit range.
pub fn spread_hashes(n: u64) -> impl Iterator<Item = u64> {
    let step = u64::MAX / n.max(1);
    (0..n).map(move |i| i.wrapping_mul(step).wrapping_add(step / 2))
}

/// Connects every endpoint of a lazily connecting policy (ring_hash): picks over many hashes flag
/// every IDLE endpoint, `exit_idle` connects them, and every attempt succeeds.
pub fn connect_everything(h: &mut Harness) {
    for _ in 0..16 {
        for hash in spread_hashes(4096) {
            let _ = h
                .picker()
                .pick(&croupier::PickRequest::new().with_hash(hash));
        }
        h.exit_idle();
        let attempts: Vec<Address> = h.attempts.values().map(|(_, a)| a.clone()).collect();
        if attempts.is_empty() {
            return;
        }
        for address in attempts {
            h.connected(&address);
        }
    }
}

/// A balancer driven by hand, step by step, without the harness's invariant checks. Those pick
/// a few fixed hashes after every step, and a pick of an IDLE ring_hash endpoint asks for its
/// connection: tests that count exactly which endpoints connect use this instead.
#[derive(Debug)]
pub struct Quiet {
    /// The balancer.
    pub lb: croupier::Balancer,
    /// The current virtual time.
    pub now: std::time::Instant,
}

impl Quiet {
    /// A balancer with `policy` and `seed`.
    pub fn new(policy: croupier::PolicyConfig, seed: u64) -> Self {
        let now = std::time::Instant::now();
        let config = croupier::BalancerConfig::default().policy(policy);
        Quiet {
            lb: croupier::Balancer::new(config, seed, now),
            now,
        }
    }

    fn drain(&mut self) -> Vec<croupier::Action> {
        std::iter::from_fn(|| self.lb.poll_action()).collect()
    }

    /// Feeds a resolver update; returns the actions.
    pub fn resolve(&mut self, update: croupier::ResolverUpdate) -> Vec<croupier::Action> {
        self.lb.handle_resolver_update(update, self.now);
        self.drain()
    }

    /// A queued call asks the policy to connect what it needs.
    pub fn exit_idle(&mut self) -> Vec<croupier::Action> {
        self.lb.exit_idle(self.now);
        self.drain()
    }

    /// Reports `event` for `connection`.
    pub fn event(
        &mut self,
        connection: croupier::ConnectionId,
        event: croupier::ConnectionEvent,
    ) -> Vec<croupier::Action> {
        self.lb.handle_connection_event(connection, event, self.now);
        self.drain()
    }

    /// Moves the clock forward by `by`, running every timer due on the way.
    pub fn advance(&mut self, by: std::time::Duration) -> Vec<croupier::Action> {
        let end = self.now + by;
        let mut out = Vec::new();
        while let Some(at) = self.lb.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.lb.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        out
    }

    /// A pick with explicit `hash`.
    pub fn pick(&self, hash: u64) -> croupier::Pick {
        self.lb
            .picker()
            .pick(&croupier::PickRequest::new().with_hash(hash))
    }
}

/// The connection attempts among `actions`.
pub fn attempts(actions: &[croupier::Action]) -> Vec<(croupier::ConnectionId, Address)> {
    actions
        .iter()
        .filter_map(|action| match action {
            croupier::Action::Connect {
                connection,
                address,
                ..
            } => Some((*connection, address.clone())),
            _ => None,
        })
        .collect()
}

impl Quiet {
    /// Connects every endpoint of a lazily connecting policy: picks over many hashes ask for
    /// every IDLE endpoint, `exit_idle` connects them, and every attempt succeeds. Returns the
    /// connections made.
    pub fn connect_everything(&mut self) -> Vec<(croupier::ConnectionId, Address)> {
        let mut made = Vec::new();
        for _ in 0..16 {
            for hash in spread_hashes(4096) {
                let _ = self.pick(hash);
            }
            let started = attempts(&self.exit_idle());
            if started.is_empty() {
                break;
            }
            for (connection, address) in started {
                self.event(connection, croupier::ConnectionEvent::Connected);
                made.push((connection, address));
            }
        }
        made
    }
}

/// `n` calls on the subchannel connected to `address` end, successfully or not.
pub fn calls_ended(h: &mut Harness, address: &Address, n: usize, ok: bool) {
    let id =
        h.lb.subchannels()
            .into_iter()
            .find(|s| s.address == *address)
            .map(|s| s.id)
            .unwrap_or_else(|| panic!("no subchannel for {address}"));
    let code = if ok {
        croupier::Code::Ok
    } else {
        croupier::Code::Unavailable
    };
    for _ in 0..n {
        let outcome = croupier::CallOutcome::new(code, ms(3));
        h.lb.handle_call_outcome(id, outcome, h.now);
    }
    h.drain();
}
