//! A fast, deterministic hasher for the core's internal maps.
//!
//! std's default hasher seeds itself from the operating system's randomness; the core reads no OS
//! randomness and must behave the same on every run, so its maps use these instead: the same
//! inputs give the same iteration order too. Keys come from the resolver and from the core itself,
//! not from an attacker, so a keyed hash is not needed.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Word-at-a-time multiply-rotate hashing (the FxHash construction).
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
        self.0
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
