//! The ring itself, the request's hash, and the picker that walks the ring.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};
use xxhash_rust::xxh64::{xxh64, Xxh64};

use crate::picker::{Pick, PickRequest, Picker};
use crate::status::{ConnectivityState, Status};
use crate::subchannel::SubchannelId;

/// One point of the ring: a hash and the endpoint (its index in the picker's slots) it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RingEntry {
    pub(super) hash: u64,
    pub(super) slot: u32,
}

/// Builds the ring for endpoints with these keys and weights (A42's algorithm), sorted by hash.
pub(super) fn build_ring(
    endpoints: &[(String, u64)],
    min_size: u64,
    max_size: u64,
) -> Vec<RingEntry> {
    let total: u64 = endpoints.iter().map(|(_, w)| *w).sum();
    let Some(lightest) = endpoints.iter().map(|(_, w)| *w).min() else {
        return Vec::new();
    };
    if total == 0 || lightest == 0 {
        return Vec::new();
    }
    let lightest = lightest as f64 / total as f64;
    // Just enough entries for the lightest endpoint to get ceil(its share of min_size).
    let scale = ((lightest * min_size as f64).ceil() / lightest).min(max_size as f64);
    let mut ring = Vec::with_capacity(scale.ceil() as usize + endpoints.len());
    let mut key_buf = String::new();
    let (mut placed, mut target) = (0.0f64, 0.0f64);
    for (slot, (key, weight)) in endpoints.iter().enumerate() {
        target += scale * (*weight as f64 / total as f64);
        let mut i = 0u64;
        while placed < target {
            key_buf.clear();
            let _ = write!(key_buf, "{key}_{i}");
            ring.push(RingEntry {
                hash: xxh64(key_buf.as_bytes(), 0),
                slot: slot as u32,
            });
            i += 1;
            placed += 1.0;
        }
    }
    ring.sort_unstable();
    ring
}

/// The hash of a request's header values joined by `,`, or `None` if it has no (or an empty)
/// value. Hashes piece by piece, so nothing is allocated.
fn hash_header(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut hasher = Xxh64::new(0);
    hasher.update(first.as_bytes());
    let mut empty = first.is_empty();
    for value in values {
        hasher.update(b",");
        hasher.update(value.as_bytes());
        empty = false;
    }
    (!empty).then(|| hasher.digest())
}

/// One endpoint as it is now, shared by the policy and every picker: its state and READY
/// subchannel, which the policy updates in place (so a change of state needs no new picker, only
/// the same one published again to wake the calls that wait), and the flag a pick raises when it
/// needs the endpoint connected.
#[derive(Debug, Default)]
pub(super) struct Live {
    /// A READY endpoint's subchannel number (whose low 32 bits are never all zero), else the
    /// state's code in the high 32 bits: one word, so a pick never reads half an update.
    word: AtomicU64,
    /// Set by a pick that needs this IDLE endpoint connected; the policy reads and clears it.
    pub(super) connect: AtomicBool,
}

const STATES: [ConnectivityState; 5] = [
    ConnectivityState::Idle,
    ConnectivityState::Connecting,
    ConnectivityState::Ready,
    ConnectivityState::TransientFailure,
    ConnectivityState::Shutdown,
];

impl Live {
    /// An endpoint that is gone: skipped by every walk.
    pub(super) fn gone() -> Self {
        let live = Live::default();
        live.set(ConnectivityState::TransientFailure, None);
        live
    }

    pub(super) fn set(&self, state: ConnectivityState, ready: Option<SubchannelId>) {
        let word = match ready.map(SubchannelId::as_u64) {
            Some(id) if state == ConnectivityState::Ready && id & 0xffff_ffff != 0 => id,
            _ => (STATES.iter().position(|s| *s == state).unwrap_or(3) as u64) << 32,
        };
        self.word.store(word, Ordering::Relaxed);
    }

    fn get(&self) -> (ConnectivityState, Option<SubchannelId>) {
        let word = self.word.load(Ordering::Relaxed);
        if word & 0xffff_ffff != 0 {
            return (ConnectivityState::Ready, SubchannelId::from_raw(word));
        }
        let state = STATES
            .get((word >> 32) as usize)
            .copied()
            .unwrap_or(ConnectivityState::TransientFailure);
        (state, None)
    }
}

/// One endpoint as a picker sees it.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) live: Arc<Live>,
    /// What a pick fails with when its walk found every endpoint failed, starting here.
    pub(super) failure: Option<Status>,
}

/// The picker: the ring, each endpoint's state, and the seed of random hashes.
#[derive(Debug)]
pub(super) struct RingHashPicker {
    pub(super) ring: Arc<[RingEntry]>,
    pub(super) slots: Box<[Slot]>,
    pub(super) header: Option<HeaderName>,
    /// The state of random hashes: advanced by a constant per pick, then mixed.
    pub(super) random: AtomicU64,
    /// For an empty ring, or a failed endpoint with no message.
    pub(super) fallback: Status,
    /// Whether any endpoint is READY (shared with the policy, which keeps it current): if none
    /// is, a random hash's walk stops once it has flagged an endpoint, instead of going round
    /// the whole ring looking for one.
    pub(super) any_ready: Arc<AtomicBool>,
    /// Raised (after the endpoint's own flag) by a pick that flags an endpoint, so the policy
    /// looks for flagged endpoints only when there are some.
    pub(super) any_flagged: Arc<AtomicBool>,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finalizer: spreads consecutive counter values over all 64 bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl RingHashPicker {
    /// The request's hash, and whether it is a random one.
    fn request_hash(&self, request: &PickRequest<'_>) -> (u64, bool) {
        if let Some(hash) = request.hash() {
            return (hash, false);
        }
        if let (Some(name), Some(headers)) = (&self.header, request.headers()) {
            if let Some(hash) = hash_header(headers, name) {
                return (hash, false);
            }
        }
        let step = self.random.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed);
        (mix64(step.wrapping_add(GOLDEN_GAMMA)), true)
    }
}

impl Picker for RingHashPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        let len = self.ring.len();
        if len == 0 || self.slots.is_empty() {
            return Pick::Fail(self.fallback.clone());
        }
        let (hash, random) = self.request_hash(request);
        let mut first = self.ring.partition_point(|entry| entry.hash < hash);
        if first == len {
            first = 0;
        }
        if request.tried().is_empty() {
            self.walk::<false>(request, first, random)
        } else {
            self.walk::<true>(request, first, random)
        }
    }
}

impl RingHashPicker {
    /// Walks the ring from entry `first`. A `RETRY` walks on past READY endpoints its call
    /// already tried; the first of them is where it goes if the walk finds no other (rather
    /// than waiting). (A parameter of the type, so a first attempt's walk checks nothing.)
    fn walk<const RETRY: bool>(
        &self,
        request: &PickRequest<'_>,
        first: usize,
        random: bool,
    ) -> Pick {
        let len = self.ring.len();
        let mut flagged = false;
        let retry = RETRY;
        let mut tried = None;
        let queue = |tried: Option<SubchannelId>| tried.map_or(Pick::Queue, Pick::Ready);
        for i in 0..len {
            let entry = self.ring[(first + i) % len];
            let Some(slot) = self.slots.get(entry.slot as usize) else {
                continue;
            };
            match slot.live.get() {
                (ConnectivityState::Ready, Some(subchannel))
                    if retry && request.has_tried(subchannel) =>
                {
                    tried = tried.or(Some(subchannel));
                }
                (ConnectivityState::Ready, Some(subchannel)) => return Pick::Ready(subchannel),
                _ if flagged => {}
                (ConnectivityState::Idle, _) => {
                    slot.live.connect.store(true, Ordering::Relaxed);
                    self.any_flagged.store(true, Ordering::Release);
                    if !random {
                        return queue(tried);
                    }
                    // A76: a random hash flags one endpoint, then looks on for a READY one.
                    if !self.any_ready.load(Ordering::Relaxed) {
                        return queue(tried);
                    }
                    flagged = true;
                }
                (ConnectivityState::Connecting | ConnectivityState::Ready, _) => {
                    return queue(tried)
                }
                (ConnectivityState::TransientFailure | ConnectivityState::Shutdown, _) => {}
            }
        }
        if flagged || tried.is_some() {
            return queue(tried);
        }
        let slot = self.slots.get(self.ring[first].slot as usize);
        Pick::Fail(
            slot.and_then(|slot| slot.failure.clone())
                .unwrap_or_else(|| self.fallback.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_follows_the_lightest_endpoint_within_bounds() {
        let even = [("a".to_owned(), 1), ("b".to_owned(), 1)];
        assert_eq!(build_ring(&even, 1024, 4096).len(), 1024);
        let skewed = [("a".to_owned(), 1), ("b".to_owned(), 2)];
        let ring = build_ring(&skewed, 1024, 4096);
        assert_eq!(ring.len(), 1026);
        let a = ring.iter().filter(|e| e.slot == 0).count();
        assert_eq!(a, 342);
        let capped = [("a".to_owned(), 1), ("b".to_owned(), 1000)];
        assert!(build_ring(&capped, 1024, 4096).len() <= 4097);
        assert!(build_ring(&[], 1024, 4096).is_empty());
    }

    /// A picker over endpoints `a`, `b`, `c`, each READY on subchannel 1, 2, 3.
    fn ready_picker() -> RingHashPicker {
        let keys = ["a", "b", "c"].map(|key| (key.to_owned(), 1));
        let slots = (1..=3)
            .map(|id| {
                let live = Live::default();
                live.set(ConnectivityState::Ready, Some(SubchannelId::from_u64(id)));
                Slot {
                    live: Arc::new(live),
                    failure: None,
                }
            })
            .collect();
        RingHashPicker {
            ring: Arc::from(build_ring(&keys, 1024, 4096)),
            slots,
            header: None,
            random: AtomicU64::new(1),
            fallback: Status::unavailable("none"),
            any_ready: Arc::new(AtomicBool::new(true)),
            any_flagged: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn a_retry_walks_on_along_the_ring_past_endpoints_it_tried() {
        let picker = ready_picker();
        let ids: Vec<SubchannelId> = (1..=3).map(SubchannelId::from_u64).collect();
        for hash in (0..64u64).map(|i| i.wrapping_mul(u64::MAX / 64)) {
            let request = PickRequest::new().with_hash(hash);
            let Pick::Ready(first) = picker.pick(&request) else {
                panic!("every endpoint is READY");
            };
            let once = [first];
            let Pick::Ready(second) = picker.pick(&request.with_tried(&once)) else {
                panic!("two more are READY");
            };
            assert_ne!(second, first, "hash {hash}");
            let twice = [first, second];
            let third = picker.pick(&request.with_tried(&twice));
            let last = ids.iter().find(|id| !twice.contains(id)).copied();
            assert_eq!(third, Pick::Ready(last.unwrap()), "hash {hash}");
            // Every endpoint tried: the hash's own endpoint again, not a failure.
            assert_eq!(picker.pick(&request.with_tried(&ids)), Pick::Ready(first));
        }
    }

    #[test]
    fn ring_entries_are_xxh64_of_key_underscore_index() {
        let ring = build_ring(&[("10.0.0.1:80".to_owned(), 1)], 3, 3);
        let mut want: Vec<u64> = (0..3)
            .map(|i| xxh64(format!("10.0.0.1:80_{i}").as_bytes(), 0))
            .collect();
        want.sort_unstable();
        assert_eq!(ring.iter().map(|e| e.hash).collect::<Vec<_>>(), want);
    }
}
