//! Generated inputs to a [`Harness`]: the alphabet of fuzzing and of the random-sequence tests,
//! and how the harness applies each.

use std::net::SocketAddr;

use croupier::{
    Address, CallOutcome, Code, ConnectionEvent, ConnectionId, Endpoint, LoadReport, Pick,
    PickRequest, ProbeResult, ResolverUpdate, Rng, SubchannelId,
};

use crate::harness::Harness;
use crate::{addr, ms};

/// One generated input to a [`Harness`]: the alphabet of fuzzing and random-sequence tests.
///
/// Indices pick among what the harness holds at that moment (attempts in flight, open
/// connections, every attempt ever made, every subchannel ever seen), modulo their number.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Step {
    /// A resolver update with these endpoints (possibly none, possibly repeated).
    Resolve(Vec<GenEndpoint>),
    /// A resolver update with this many distinct endpoints (modulo 256).
    ResolveMany(u16),
    /// A resolver error.
    ResolverError,
    /// The n-th attempt in flight connects.
    Connected(u8),
    /// The n-th attempt in flight fails.
    Failed(u8),
    /// The n-th open connection closes.
    Closed(u8),
    /// A late report (kind modulo 3: connected, failed, closed) for the n-th attempt ever made.
    Stale(u8, u8),
    /// The n-th open connection's health check says it is serving (`true`) or not (`false`).
    Health(u8, bool),
    /// A call on the n-th subchannel ever seen ends (successfully or not) after this many ms; three
    /// latencies in four also carry a load report drawn from them.
    CallEnded(u8, bool, u16),
    /// Virtual time moves forward this many milliseconds: up to a minute timer by timer, longer
    /// in one jump (as a process that was suspended sees it).
    Advance(u32),
    /// A queued call asks an idle policy to connect.
    ExitIdle,
    /// A pick, with an optional hash.
    Pick(Option<u64>),
}

/// A generated endpoint: one or more addresses from a small pool, so that updates overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GenEndpoint {
    /// Indices into the address pool (modulo its size); none gives an endpoint with no address.
    pub addresses: Vec<u8>,
    /// The endpoint's weight.
    pub weight: u8,
}

impl GenEndpoint {
    /// The pool: eight IPv4 and four IPv6 loopback-range addresses, a unix path, an opaque name.
    fn address(index: u8) -> Address {
        match index % 14 {
            i @ 0..=7 => addr(50_000 + u16::from(i)),
            i @ 8..=11 => Address::Socket(SocketAddr::from((
                std::net::Ipv6Addr::LOCALHOST,
                50_000 + u16::from(i),
            ))),
            12 => Address::Unix("/tmp/croupier-test.sock".into()),
            _ => Address::Opaque("backend.internal:443".into()),
        }
    }

    /// The endpoint this describes.
    pub fn endpoint(&self) -> Endpoint {
        let addresses = self
            .addresses
            .iter()
            .take(4)
            .map(|&i| GenEndpoint::address(i));
        let place = self.addresses.first().copied().unwrap_or(0);
        Endpoint::with_addresses(addresses)
            .weight(u32::from(self.weight))
            .hierarchy(tree_path(u16::from(place)))
    }
}

/// The hierarchy path every generated endpoint carries (from a number of its own: an address
/// index, a port), so that the tree policies among
/// [`builtin_policies`](crate::builtin_policies) have their children fed: `a0` or `a1` at the
/// first level, `b0` or `b1` at the second.
pub fn tree_path(n: u16) -> [String; 2] {
    [format!("a{}", n % 2), format!("b{}", n / 2 % 2)]
}

impl Harness {
    /// Applies one generated step (see [`Step`]).
    pub fn apply(&mut self, step: &Step) {
        match step {
            Step::Resolve(endpoints) => {
                let endpoints = endpoints.iter().map(|e| e.endpoint()).collect::<Vec<_>>();
                self.resolve(ResolverUpdate::new(endpoints));
            }
            Step::ResolveMany(count) => {
                let count = usize::from(*count % 256);
                self.resolve(ResolverUpdate::new((0..count).map(|i| {
                    Endpoint::new(addr(10_000 + i as u16)).hierarchy(tree_path(i as u16))
                })));
            }
            Step::ResolverError => {
                self.resolver_error("generated resolver failure");
            }
            Step::Connected(index) => self.report_nth(*index, |_| ConnectionEvent::Connected),
            Step::Failed(index) => self.report_nth(*index, |_| {
                ConnectionEvent::Failed("generated failure".into())
            }),
            Step::Closed(index) => {
                let open = self.open_connections();
                if let Some(connection) = nth(&open, *index) {
                    self.report(
                        connection,
                        ConnectionEvent::Closed("generated close".into()),
                    );
                }
            }
            Step::Health(index, serving) => {
                let open = self.open_connections();
                if let Some(connection) = nth(&open, *index) {
                    let event = if *serving {
                        ConnectionEvent::Healthy
                    } else {
                        ConnectionEvent::Unhealthy("generated health check failure".into())
                    };
                    self.report(connection, event);
                }
            }
            Step::Stale(index, kind) => {
                if let Some(connection) = nth(&self.history, *index) {
                    let event = match kind % 3 {
                        0 => ConnectionEvent::Connected,
                        1 => ConnectionEvent::Failed("late failure".into()),
                        _ => ConnectionEvent::Closed("late close".into()),
                    };
                    self.report(connection, event);
                }
            }
            Step::CallEnded(index, ok, latency_ms) => {
                let known: Vec<SubchannelId> = self.known.iter().copied().collect();
                if let Some(id) = nth(&known, *index) {
                    let code = if *ok { Code::Ok } else { Code::Unavailable };
                    // Some calls carry a load report, its figures drawn from the latency.
                    let mut outcome = CallOutcome::new(code, ms(u64::from(*latency_ms)));
                    if latency_ms % 4 != 0 {
                        let qps = f64::from(latency_ms % 97);
                        let utilization = f64::from(latency_ms % 13) / 10.0;
                        let report = LoadReport::new(qps, utilization).eps(f64::from(!*ok as u8));
                        outcome = outcome.with_load(report);
                    }
                    self.lb.handle_call_outcome(id, outcome, self.now);
                    self.drain();
                    // The oldest probe asked for is answered, its figures drawn from the call.
                    if let Some(&probed) = self.probes.iter().next() {
                        let latency = (latency_ms % 5 != 0).then(|| ms(u64::from(*latency_ms)));
                        let result = ProbeResult::new(u32::from(latency_ms % 7), latency);
                        self.answer_probe(probed, result);
                    }
                }
            }
            Step::Advance(millis) if *millis > 60_000 => {
                // A long jump, as when a suspended process wakes: one timeout at the end.
                self.now = self
                    .now
                    .checked_add(ms(u64::from(*millis)))
                    .unwrap_or(self.now);
                self.lb.handle_timeout(self.now);
                self.drain();
            }
            Step::Advance(millis) => {
                self.advance(ms(u64::from(*millis)));
            }
            Step::ExitIdle => {
                self.exit_idle();
            }
            Step::Pick(hash) => {
                let request = match hash {
                    Some(hash) => PickRequest::new().with_hash(*hash),
                    None => PickRequest::new(),
                };
                if let Pick::Ready(id) = self.lb.picker().pick(&request) {
                    self.check_pick(id);
                }
            }
        }
    }

    fn report_nth(&mut self, index: u8, event: impl FnOnce(ConnectionId) -> ConnectionEvent) {
        let in_flight = self.attempts_in_flight();
        if let Some(connection) = nth(&in_flight, index) {
            let event = event(connection);
            self.report(connection, event);
        }
    }
}
fn nth<T: Copy>(items: &[T], index: u8) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(index) % items.len()])
}

impl Step {
    /// One random step.
    pub fn random(rng: &mut Rng) -> Step {
        let byte = |rng: &mut Rng| rng.below(256) as u8;
        match rng.below(100) {
            0..=11 => {
                let count = rng.index(7);
                let endpoints = (0..count)
                    .map(|_| GenEndpoint {
                        addresses: (0..1 + rng.index(2)).map(|_| rng.below(16) as u8).collect(),
                        weight: byte(rng),
                    })
                    .collect();
                Step::Resolve(endpoints)
            }
            12 => Step::ResolveMany(rng.below(300) as u16),
            13..=15 => Step::ResolverError,
            16..=33 => Step::Connected(byte(rng)),
            34..=45 => Step::Failed(byte(rng)),
            46..=50 => Step::Closed(byte(rng)),
            51..=53 => Step::Health(byte(rng), rng.below(2) == 0),
            54..=58 => Step::Stale(byte(rng), byte(rng)),
            59..=65 => Step::CallEnded(byte(rng), rng.below(2) == 0, rng.below(1000) as u16),
            66..=85 => {
                let millis = match rng.below(10) {
                    0 => rng.below(200_000),
                    1..=3 => rng.below(5_000),
                    _ => rng.below(300),
                };
                Step::Advance(millis as u32)
            }
            86..=90 => Step::ExitIdle,
            _ => Step::Pick((rng.below(2) == 0).then(|| rng.next_u64())),
        }
    }
}
