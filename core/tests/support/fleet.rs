//! A client sending one call every millisecond of virtual time to a fleet whose latencies a
//! closure gives, each outcome reported with its pick's note: for the latency-aware policies.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use croupier::{
    Action, Address, CallOutcome, ConnectionEvent, Pick, PickNote, PickRequest, PolicyConfig,
    SubchannelId,
};
use croupier_testing::{addr, ms, update};

use super::{attempts, Quiet};

/// The client, its balancer and its calls in flight.
pub struct Fleet {
    pub q: Quiet,
    /// Calls in flight: (end in ms, subchannel, latency in ms, the pick's note).
    calls: BinaryHeap<Reverse<(u64, SubchannelId, u64, u64)>>,
    addresses: BTreeMap<SubchannelId, Address>,
    clock_ms: u64,
}

impl Fleet {
    /// A balancer under `policy` with every endpoint (one per port) connected.
    pub fn new(policy: PolicyConfig, ports: &[u16], seed: u64) -> Self {
        let mut q = Quiet::new(policy, seed);
        let mut actions = q.resolve(update(ports));
        actions.extend(q.exit_idle());
        for (connection, _) in attempts(&actions) {
            q.event(connection, ConnectionEvent::Connected);
        }
        let addresses =
            q.lb.subchannels()
                .into_iter()
                .map(|s| (s.id, s.address))
                .collect();
        Fleet {
            q,
            calls: BinaryHeap::new(),
            addresses,
            clock_ms: 0,
        }
    }

    /// Runs `millis` of virtual time; returns the calls each address received.
    pub fn run(
        &mut self,
        millis: u64,
        mut latency: impl FnMut(&Address) -> u64,
    ) -> BTreeMap<Address, usize> {
        let mut sent = BTreeMap::new();
        for _ in 0..millis {
            self.clock_ms += 1;
            let actions = self.q.advance(ms(1));
            assert!(
                !actions
                    .iter()
                    .any(|a| matches!(a, Action::Disconnect { .. })),
                "nothing disconnects here"
            );
            while let Some(Reverse((end, id, took, note))) = self.calls.peek().copied() {
                if end > self.clock_ms {
                    break;
                }
                self.calls.pop();
                let outcome = CallOutcome::ok(ms(took)).with_note(PickNote::new(note));
                self.q.lb.handle_call_outcome(id, outcome, self.q.now);
            }
            let (Pick::Ready(id), note) = self.q.lb.picker().pick_with_note(&PickRequest::new())
            else {
                panic!("READY expected")
            };
            let address = self.addresses[&id].clone();
            let took = latency(&address);
            self.calls
                .push(Reverse((self.clock_ms + took, id, took, note.get())));
            *sent.entry(address).or_insert(0) += 1;
        }
        sent
    }
}

/// The share of `sent` that went to `port`.
pub fn share(sent: &BTreeMap<Address, usize>, port: u16) -> f64 {
    let total: usize = sent.values().sum();
    *sent.get(&addr(port)).unwrap_or(&0) as f64 / total as f64
}
