//! The connections a snapshot offers, by subchannel: shared between snapshots, and copied only
//! where they differ.
//!
//! Every snapshot the driver publishes carries the connections its picker may name. Copying a
//! single map for each one cost the whole map per published change: with 200,000 endpoints
//! connecting, each completed connection would copy 200,000 entries. The map is cut into
//! [`SHARDS`] parts by subchannel, each behind its own `Arc`: a new snapshot shares every part
//! with the last one but those that changed, which are copied once (copy-on-write), so a change
//! costs a part (a 128th of the map) and a pointer per part.

use std::collections::HashMap;
use std::sync::Arc;

use croupier::SubchannelId;

/// How many parts the map is cut into.
const SHARDS: usize = 128;

/// Connections by subchannel, cheap to clone and to change one at a time.
pub(crate) struct Connections<T> {
    shards: Box<[Arc<HashMap<SubchannelId, T>>]>,
}

impl<T> Default for Connections<T> {
    fn default() -> Self {
        let empty = Arc::new(HashMap::new());
        Connections {
            shards: (0..SHARDS).map(|_| Arc::clone(&empty)).collect(),
        }
    }
}

impl<T> Clone for Connections<T> {
    fn clone(&self) -> Self {
        Connections {
            shards: self.shards.clone(),
        }
    }
}

/// The part that holds `subchannel` (its number's low bits are its slot in the balancer, so
/// consecutive subchannels go to consecutive parts).
fn shard_of(subchannel: SubchannelId) -> usize {
    (subchannel.as_u64() % SHARDS as u64) as usize
}

impl<T> Connections<T> {
    /// The connection of `subchannel`, if it has one.
    pub(crate) fn get(&self, subchannel: &SubchannelId) -> Option<&T> {
        self.shards.get(shard_of(*subchannel))?.get(subchannel)
    }
}

impl<T: Clone> Connections<T> {
    /// Sets the connection of `subchannel`; its part is copied first if a snapshot shares it.
    pub(crate) fn insert(&mut self, subchannel: SubchannelId, connection: T) {
        if let Some(shard) = self.shards.get_mut(shard_of(subchannel)) {
            Arc::make_mut(shard).insert(subchannel, connection);
        }
    }

    /// Forgets the connection of `subchannel`.
    pub(crate) fn remove(&mut self, subchannel: SubchannelId) {
        if let Some(shard) = self.shards.get_mut(shard_of(subchannel)) {
            if shard.contains_key(&subchannel) {
                Arc::make_mut(shard).remove(&subchannel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use croupier::{Balancer, BalancerConfig, Endpoint, PolicyConfig, ResolverUpdate};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Instant;

    /// The handles of 1,002 subchannels, from a balancer that made them.
    fn ids() -> Vec<SubchannelId> {
        let now = Instant::now();
        let config = BalancerConfig::default().policy(PolicyConfig::round_robin());
        let mut balancer = Balancer::new(config, 1, now);
        let endpoints = (0..1_002u32)
            .map(|i| Endpoint::new(SocketAddr::new(Ipv4Addr::from(0x0a00_0000 + i).into(), 80)));
        balancer.handle_resolver_update(ResolverUpdate::new(endpoints), now);
        while balancer.poll_action().is_some() {}
        balancer.subchannels().into_iter().map(|s| s.id).collect()
    }

    #[test]
    fn a_clone_keeps_what_it_saw_and_shares_the_parts_that_did_not_change() {
        let ids = ids();
        let id = |n: usize| ids[n];
        let mut connections = Connections::default();
        for n in 0..1_000 {
            connections.insert(id(n), n);
        }
        let before = connections.clone();
        connections.insert(id(1_001), 1_001);
        connections.remove(id(7));
        connections.remove(id(1_000)); // never there: nothing copied
        assert_eq!(before.get(&id(7)), Some(&7));
        assert_eq!(before.get(&id(1_001)), None);
        assert_eq!(connections.get(&id(7)), None);
        assert_eq!(connections.get(&id(1_001)), Some(&1_001));
        assert_eq!(connections.get(&id(500)), Some(&500));
        let shared = (0..SHARDS)
            .filter(|&i| Arc::ptr_eq(&before.shards[i], &connections.shards[i]))
            .count();
        assert_eq!(
            shared,
            SHARDS - 2,
            "only the two parts that changed were copied"
        );
    }
}
