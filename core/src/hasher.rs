//! A fast, deterministic hasher for the core's internal maps.
//!
//! std's default hasher seeds itself from the operating system's randomness; the core reads no OS
//! randomness and must behave the same on every run, so its maps use these instead: the same
//! inputs give the same iteration order too. Keys come from the resolver and from the core itself,
//! not from an attacker, so a keyed hash is not needed.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Word-at-a-time multiply-rotate hashing (the FxHash construction), finished with murmur3's
/// 64-bit avalanche.
///
/// The multiply-rotate steps alone leave the low bits of the hash depending on the low bits of
/// the input only, and hashbrown finds a bucket by the low bits: 100,000 consecutive IPv4
/// addresses behind one port (a fleet of pods) landed in 64 of 131,072 buckets, 78 probes per
/// insert. The finalizer makes every output bit depend on every input bit, for a few cycles per
/// key; its output is fixed by its constants, so it is the same on every run and every version.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        avalanche(self.0)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u16(&mut self, value: u16) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
}

/// murmur3's `fmix64`: each input bit flips about half of the output bits.
#[inline]
fn avalanche(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A hasher for keys that are handed out in sequence (subchannel ids, child keys): the low bits
/// of the hash are the key itself, so keys made one after another sit in neighbouring buckets and
/// a pass over them in order walks memory in order (at 10,000 endpoints this, not the hashing, is
/// what a resolver update costs); the top seven bits, which hashbrown compares before the keys,
/// are mixed so that they still tell keys apart.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SequentialHasher(u64);

impl Hasher for SequentialHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let key = self.0;
        key ^ (key.wrapping_mul(MULTIPLIER) & (0x7f << 57))
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Not used by the keys this hasher is for; any input still hashes deterministically.
        let mut inner = FastHasher(self.0);
        inner.write(bytes);
        self.0 = inner.0;
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.0 = u64::from(value);
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A map keyed by sequentially handed-out numbers, with [`SequentialHasher`].
pub(crate) type SequentialMap<K, V> = HashMap<K, V, BuildHasherDefault<SequentialHasher>>;

/// A map with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A set with [`FastHasher`].
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(value)
    }

    #[test]
    fn equal_keys_hash_equal_and_different_ones_differ() {
        assert_eq!(hash(&"127.0.0.1:80"), hash(&"127.0.0.1:80"));
        assert_ne!(hash(&"127.0.0.1:80"), hash(&"127.0.0.1:81"));
        assert_ne!(hash(&[1u8, 2, 3][..]), hash(&[1u8, 2, 3, 0][..]));
        let distinct: FastSet<u64> = (0..10_000u64).map(|i| hash(&i)).collect();
        assert_eq!(distinct.len(), 10_000);
    }

    /// How 100,000 keys spread over a hashbrown table of 131,072 buckets: the most keys in one
    /// bucket (by the low bits, where hashbrown starts probing), how many buckets are used, and
    /// how many of the 128 tags (the top seven bits, compared before the keys) occur.
    fn spread(hashes: impl Iterator<Item = u64>) -> (usize, usize, usize) {
        const BUCKETS: usize = 1 << 17;
        let mut load = vec![0usize; BUCKETS];
        let mut tags = [false; 128];
        for hash in hashes {
            load[hash as usize & (BUCKETS - 1)] += 1;
            tags[(hash >> 57) as usize] = true;
        }
        let max = load.iter().copied().max().unwrap_or(0);
        let used = load.iter().filter(|n| **n > 0).count();
        (max, used, tags.iter().filter(|t| **t).count())
    }

    fn assert_spread_evenly(what: &str, hashes: impl Iterator<Item = u64>) {
        // Uniform hashes put 100,000 keys in about 69,700 of the buckets, at most 8 or 9 in one.
        let (max, used, tags) = spread(hashes);
        assert!(max <= 16, "{what}: {max} keys in one bucket");
        assert!(used >= 65_000, "{what}: only {used} buckets used");
        assert_eq!(tags, 128, "{what}: only {tags} distinct tags");
    }

    #[test]
    fn consecutive_addresses_behind_one_port_spread_over_the_buckets() {
        use crate::address::Address;
        use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
        let v4 = (0..100_000u32).map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            hash(&Address::from(SocketAddr::new(ip.into(), 8080)))
        });
        assert_spread_evenly("10.0.0.0 + i, port 8080", v4);
        let v6 = (0..100_000u128).map(|i| {
            let ip = Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0000_0000 + i);
            hash(&Address::from(SocketAddr::new(ip.into(), 8080)))
        });
        assert_spread_evenly("[fd00:: + i]:8080", v6);
        let lists = (0..100_000u32).map(|i| {
            let ip = Ipv4Addr::from(0xc0a8_0000 + i);
            hash(&[Address::from(SocketAddr::new(ip.into(), 443))][..])
        });
        assert_spread_evenly("one-address lists from 192.168.0.0, port 443", lists);
        let numbers = (0..100_000u64).map(|i| hash(&i));
        assert_spread_evenly("0..100,000", numbers);
    }

    #[test]
    fn sequential_keys_keep_their_low_bits_and_mix_their_top_bits() {
        let build = BuildHasherDefault::<SequentialHasher>::default();
        let tags: FastSet<u64> = (0..1_000u64)
            .map(|i| {
                let hash = build.hash_one(i);
                assert_eq!(hash & ((1 << 57) - 1), i, "low bits are the key");
                hash >> 57
            })
            .collect();
        assert!(
            tags.len() > 100,
            "only {} distinct top-bit tags",
            tags.len()
        );
        assert_eq!(build.hash_one(7u32) & 0xffff, 7);
    }
}
