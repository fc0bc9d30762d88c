//! A simulated adapter for driving a `Balancer` in tests: it carries out actions the way a real
//! adapter would, keeps the clock, and checks the core's invariants after every step.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::{
    Action, Address, Balancer, BalancerConfig, ConnectionEvent, ConnectionId, ConnectivityState,
    Endpoint, Pick, PickRequest, Picker, PolicyConfig, ResolverError, ResolverUpdate, SubchannelId,
};

/// `127.0.0.1:<port>`.
pub fn addr(port: u16) -> Address {
    Address::Socket(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// One endpoint per port.
pub fn endpoints(ports: &[u16]) -> Vec<Endpoint> {
    ports.iter().map(|&p| Endpoint::new(addr(p))).collect()
}

pub fn update(ports: &[u16]) -> ResolverUpdate {
    ResolverUpdate::new(endpoints(ports))
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the simulated adapter saw, in order (for determinism checks and assertions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Connect(ConnectionId, Address, Duration),
    Disconnect(ConnectionId),
    Shutdown(SubchannelId),
    ResolveNow(Duration),
    State(ConnectivityState),
    Picker,
}

pub struct Harness {
    pub lb: Balancer,
    pub start: Instant,
    pub now: Instant,
    /// Attempts the adapter is running, by subchannel.
    pub attempts: BTreeMap<SubchannelId, (ConnectionId, Address)>,
    /// Established connections, by subchannel.
    pub connections: BTreeMap<SubchannelId, (ConnectionId, Address)>,
    /// Subchannels shut down so far.
    pub shut: BTreeSet<SubchannelId>,
    /// Every action seen, in order.
    pub seen: Vec<Seen>,
    /// The highest subchannel id seen in a Connect.
    pub max_id: u64,
    /// How many addresses the latest non-empty update named (the memory bound).
    pub bound: usize,
}

impl Harness {
    pub fn new(policy: PolicyConfig, seed: u64) -> Self {
        Harness::with_config(BalancerConfig::default().policy(policy), seed)
    }

    pub fn with_config(config: BalancerConfig, seed: u64) -> Self {
        let start = Instant::now();
        Harness {
            lb: Balancer::new(config, seed, start),
            start,
            now: start,
            attempts: BTreeMap::new(),
            connections: BTreeMap::new(),
            shut: BTreeSet::new(),
            seen: Vec::new(),
            max_id: 0,
            bound: 0,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Carries out every queued action, checking invariants about them.
    pub fn drain(&mut self) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Some(action) = self.lb.poll_action() {
            let seen = match action {
                Action::Connect {
                    connection,
                    address,
                    deadline,
                } => {
                    let id = connection.subchannel();
                    assert!(!self.shut.contains(&id), "connect for removed {id}");
                    assert!(
                        !self.attempts.contains_key(&id),
                        "second attempt in flight for {id}"
                    );
                    assert!(
                        !self.connections.contains_key(&id),
                        "connect for {id} while it has a connection"
                    );
                    assert!(deadline > self.now, "a deadline in the past");
                    self.max_id = self.max_id.max(id.as_u64());
                    self.attempts.insert(id, (connection, address.clone()));
                    Seen::Connect(connection, address, self.elapsed())
                }
                Action::Disconnect { connection } => {
                    let id = connection.subchannel();
                    if self
                        .attempts
                        .get(&id)
                        .is_some_and(|(c, _)| *c == connection)
                    {
                        self.attempts.remove(&id);
                    }
                    if self
                        .connections
                        .get(&id)
                        .is_some_and(|(c, _)| *c == connection)
                    {
                        self.connections.remove(&id);
                    }
                    Seen::Disconnect(connection)
                }
                Action::Shutdown { subchannel } => {
                    assert!(self.shut.insert(subchannel), "{subchannel} shut down twice");
                    self.attempts.remove(&subchannel);
                    self.connections.remove(&subchannel);
                    Seen::Shutdown(subchannel)
                }
                Action::ResolveNow => Seen::ResolveNow(self.elapsed()),
                Action::StateChanged(state) => Seen::State(state),
                Action::UpdatePicker(_) => Seen::Picker,
                other => panic!("unexpected action {other:?}"),
            };
            out.push(seen);
        }
        self.check_invariants();
        self.seen.extend(out.iter().cloned());
        out
    }

    /// Checks what must hold between inputs.
    pub fn check_invariants(&self) {
        let subchannels = self.lb.subchannels();
        let picker = self.lb.picker();
        for _ in 0..4 {
            if let Pick::Ready(id) = picker.pick(&PickRequest::new()) {
                assert_eq!(
                    self.lb.subchannel_state(id),
                    Some(ConnectivityState::Ready),
                    "picked {id}, which is not READY"
                );
            }
        }
        let any_ready = subchannels
            .iter()
            .any(|s| s.state == ConnectivityState::Ready);
        assert_eq!(
            any_ready,
            self.lb.state() == ConnectivityState::Ready,
            "channel state {} does not match subchannels {subchannels:?}",
            self.lb.state()
        );
        assert!(
            subchannels.len() <= self.bound.max(1),
            "{} subchannels for {} addresses",
            subchannels.len(),
            self.bound
        );
        for info in &subchannels {
            assert!(
                !self.shut.contains(&info.id),
                "{} is shut but alive",
                info.id
            );
        }
    }

    pub fn resolve(&mut self, update: ResolverUpdate) -> Vec<Seen> {
        let count: usize = update.endpoints.iter().map(|e| e.addresses().len()).sum();
        if count > 0 {
            self.bound = count;
        }
        self.lb.handle_resolver_update(update, self.now);
        self.drain()
    }

    pub fn resolver_error(&mut self, message: &str) -> Vec<Seen> {
        self.lb
            .handle_resolver_error(ResolverError::new(message), self.now);
        self.drain()
    }

    fn attempt_for(&self, address: &Address) -> ConnectionId {
        self.attempts
            .values()
            .find(|(_, a)| a == address)
            .map(|(c, _)| *c)
            .unwrap_or_else(|| panic!("no attempt in flight to {address}: {:?}", self.attempts))
    }

    pub fn has_attempt(&self, address: &Address) -> bool {
        self.attempts.values().any(|(_, a)| a == address)
    }

    /// The attempt to `address` succeeds.
    pub fn connected(&mut self, address: &Address) -> Vec<Seen> {
        let connection = self.attempt_for(address);
        self.attempts.remove(&connection.subchannel());
        self.connections
            .insert(connection.subchannel(), (connection, address.clone()));
        self.lb
            .handle_connection_event(connection, ConnectionEvent::Connected, self.now);
        self.drain()
    }

    /// The attempt to `address` fails.
    pub fn failed(&mut self, address: &Address) -> Vec<Seen> {
        let connection = self.attempt_for(address);
        self.attempts.remove(&connection.subchannel());
        let reason = format!("connection refused by {address}");
        self.lb
            .handle_connection_event(connection, ConnectionEvent::Failed(reason), self.now);
        self.drain()
    }

    /// The connection to `address` closes.
    pub fn closed(&mut self, address: &Address) -> Vec<Seen> {
        let (id, (connection, _)) = self
            .connections
            .iter()
            .find(|(_, (_, a))| a == address)
            .map(|(id, c)| (*id, c.clone()))
            .unwrap_or_else(|| panic!("no connection to {address}"));
        self.connections.remove(&id);
        self.lb.handle_connection_event(
            connection,
            ConnectionEvent::Closed("peer went away".into()),
            self.now,
        );
        self.drain()
    }

    /// Moves the clock forward by `by`, running every timer that comes due on the way.
    pub fn advance(&mut self, by: Duration) -> Vec<Seen> {
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

    pub fn exit_idle(&mut self) -> Vec<Seen> {
        self.lb.exit_idle(self.now);
        self.drain()
    }

    pub fn picker(&self) -> Arc<dyn Picker> {
        self.lb.picker()
    }

    pub fn pick(&self) -> Pick {
        self.lb.picker().pick(&PickRequest::new())
    }

    /// The address a pick lands on, if it lands.
    pub fn pick_address(&self) -> Option<Address> {
        match self.pick() {
            Pick::Ready(id) => self
                .lb
                .subchannels()
                .into_iter()
                .find(|s| s.id == id)
                .map(|s| s.address),
            _ => None,
        }
    }

    pub fn state(&self) -> ConnectivityState {
        self.lb.state()
    }
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
