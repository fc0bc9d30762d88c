//! The probe pool as pickers read it: a fixed array of atomic words, one probe each, so a pick
//! reads every probe without a lock and uses one with a single compare-and-swap.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::picker::{Pick, PickRequest, Picker, RoundRobinPicker};
use crate::rng::AtomicRng;

/// The most probes a pool holds (Prequal's default pool size).
pub(crate) const POOL_CAPACITY: usize = 16;

/// A slot without a probe.
const EMPTY: u64 = u64::MAX;
/// The index of a slot's endpoint in its picker's READY list: 24 bits.
const INDEX_BITS: u32 = 24;
/// The largest index a probe can name (all ones marks an empty slot).
pub(crate) const MAX_INDEX: u32 = (1 << INDEX_BITS) - 2;
/// Requests in flight: 12 bits, saturating.
const RIF_BITS: u32 = 12;
const MAX_RIF: u32 = (1 << RIF_BITS) - 1;
/// Latency in microseconds: 24 bits, saturating below the value that means "none reported".
const LATENCY_BITS: u32 = 24;
const NO_LATENCY: u32 = (1 << LATENCY_BITS) - 1;
/// Times the probe was used: 4 bits.
const USES_BITS: u32 = 4;
const MAX_USES: u32 = (1 << USES_BITS) - 1;

/// One probe, as a slot holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    /// The endpoint's place in the picker's READY list.
    pub(crate) index: u32,
    /// Requests in flight the server reported, plus the calls sent there on this probe since.
    pub(crate) rif: u32,
    /// The server's latency estimate in microseconds; `NO_LATENCY` if it gave none.
    pub(crate) latency: u32,
    /// How many picks used it.
    pub(crate) uses: u32,
}

impl Probe {
    /// A probe of the endpoint at `index`. A latency the server did not give ranks above every
    /// reported one, so such a backend is chosen among the cold ones last.
    pub(crate) fn new(index: u32, rif: u32, latency: Option<Duration>) -> Self {
        let latency = latency.map_or(NO_LATENCY, |latency| {
            u32::try_from(latency.as_micros()).map_or(NO_LATENCY - 1, |us| us.min(NO_LATENCY - 1))
        });
        Probe {
            index,
            rif: rif.min(MAX_RIF),
            latency,
            uses: 0,
        }
    }

    fn pack(self) -> u64 {
        (u64::from(self.index) << (RIF_BITS + LATENCY_BITS + USES_BITS))
            | (u64::from(self.rif.min(MAX_RIF)) << (LATENCY_BITS + USES_BITS))
            | (u64::from(self.latency) << USES_BITS)
            | u64::from(self.uses.min(MAX_USES))
    }

    fn unpack(word: u64) -> Option<Probe> {
        (word != EMPTY).then_some(Probe {
            index: (word >> (RIF_BITS + LATENCY_BITS + USES_BITS)) as u32,
            rif: ((word >> (LATENCY_BITS + USES_BITS)) as u32) & MAX_RIF,
            latency: ((word >> USES_BITS) as u32) & NO_LATENCY,
            uses: (word as u32) & MAX_USES,
        })
    }
}

/// The probes one picker reads, the hot-cold threshold, and each endpoint's latest answer.
#[derive(Debug)]
pub(crate) struct Pool {
    slots: [AtomicU64; POOL_CAPACITY],
    /// A probe with at most this many requests in flight is cold.
    threshold: AtomicU32,
    /// Per place in the picker's READY list: its latest answer, whether or not the pool still
    /// holds it. What a pick goes by when the pool is empty.
    latest: Box<[AtomicU64]>,
}

impl Pool {
    /// An empty pool for a picker over `len` endpoints.
    pub(crate) fn new(len: usize) -> Self {
        Pool {
            slots: std::array::from_fn(|_| AtomicU64::new(EMPTY)),
            threshold: AtomicU32::new(0),
            latest: (0..len).map(|_| AtomicU64::new(EMPTY)).collect(),
        }
    }

    pub(crate) fn latest(&self, place: usize) -> Option<Probe> {
        Probe::unpack(self.latest.get(place)?.load(Ordering::Relaxed))
    }

    pub(crate) fn set_latest(&self, place: usize, probe: Probe) {
        if let Some(word) = self.latest.get(place) {
            word.store(probe.pack(), Ordering::Relaxed);
        }
    }

    /// Of the endpoints at `a` and `b`, the one whose latest answer promises the sooner
    /// service: the lower latency (the server's estimate at its load) when both gave one, else
    /// the lower RIF; `a` when neither answered.
    #[inline]
    fn better_of(&self, a: usize, b: usize) -> usize {
        match (self.latest(a), self.latest(b)) {
            (Some(x), Some(y)) => {
                let prefer_b = if x.latency != NO_LATENCY && y.latency != NO_LATENCY {
                    (y.latency, y.rif) < (x.latency, x.rif)
                } else {
                    y.rif < x.rif
                };
                if prefer_b {
                    b
                } else {
                    a
                }
            }
            (None, Some(_)) => a, // never probed: worth a call, and its probe will come
            _ => a,
        }
    }

    pub(crate) fn get(&self, slot: usize) -> Option<Probe> {
        Probe::unpack(self.slots.get(slot)?.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, slot: usize, probe: Option<Probe>) {
        if let Some(word) = self.slots.get(slot) {
            word.store(probe.map_or(EMPTY, Probe::pack), Ordering::Relaxed);
        }
    }

    pub(crate) fn threshold(&self) -> u32 {
        self.threshold.load(Ordering::Relaxed)
    }

    pub(crate) fn set_threshold(&self, threshold: u32) {
        self.threshold.store(threshold, Ordering::Relaxed);
    }

    /// The slot the hot-cold rule chooses: of the cold probes (requests in flight at most the
    /// threshold) the one with the lowest latency; if none is cold, the one with the fewest
    /// requests in flight. Ties go to the other measure, then to the lower slot.
    #[inline]
    fn choose(&self) -> Option<(usize, u64)> {
        let threshold = self.threshold.load(Ordering::Relaxed);
        let mut cold: Option<(u64, usize, u64)> = None;
        let mut hot: Option<(u64, usize, u64)> = None;
        for (slot, word) in self.slots.iter().enumerate() {
            let word = word.load(Ordering::Relaxed);
            let Some(probe) = Probe::unpack(word) else {
                continue;
            };
            let (best, rank) = if probe.rif <= threshold {
                (
                    &mut cold,
                    (u64::from(probe.latency) << 32) | u64::from(probe.rif),
                )
            } else {
                (
                    &mut hot,
                    (u64::from(probe.rif) << 32) | u64::from(probe.latency),
                )
            };
            if best.is_none_or(|(least, _, _)| rank < least) {
                *best = Some((rank, slot, word));
            }
        }
        cold.or(hot).map(|(_, slot, word)| (slot, word))
    }

    /// Marks the probe in `slot` (read as `word`) used once more: one more request in flight, and
    /// gone after `max_uses`. A pick that raced another for it keeps its choice.
    #[inline]
    fn consume(&self, slot: usize, word: u64, max_uses: u32) {
        let Some(mut probe) = Probe::unpack(word) else {
            return;
        };
        probe.uses += 1;
        probe.rif = (probe.rif + 1).min(MAX_RIF);
        let next = if probe.uses >= max_uses {
            EMPTY
        } else {
            probe.pack()
        };
        let _ = self.slots[slot].compare_exchange(word, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// prequal's picker: the hot-cold rule over its pool; while the pool is empty, the better of
/// two random endpoints by their latest answers.
#[derive(Debug)]
pub(crate) struct PrequalPicker {
    pool: std::sync::Arc<Pool>,
    /// The READY subchannels, in the order probes' indices name them; a retry's search.
    ready: RoundRobinPicker,
    rng: AtomicRng,
    max_uses: u32,
}

impl PrequalPicker {
    pub(crate) fn new(
        pool: std::sync::Arc<Pool>,
        ready: RoundRobinPicker,
        seed: u64,
        max_uses: u32,
    ) -> Self {
        PrequalPicker {
            pool,
            ready,
            rng: AtomicRng::new(seed),
            max_uses: max_uses.clamp(1, MAX_USES),
        }
    }

    /// The pick while the pool is empty.
    #[inline]
    fn by_latest(&self) -> Pick {
        let ready = self.ready.subchannels();
        let len = ready.len();
        if len < 2 {
            return ready.first().map_or(Pick::Queue, |&only| Pick::Ready(only));
        }
        let a = self.rng.index(len);
        // A second place, distinct from the first.
        let b = (a + 1 + self.rng.index(len - 1)) % len;
        Pick::Ready(ready[self.pool.better_of(a, b)])
    }
}

impl Picker for PrequalPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        if !request.tried().is_empty() {
            // A retry goes where round robin's search for an untried endpoint sends it.
            return self.ready.pick(request);
        }
        if let Some((slot, word)) = self.pool.choose() {
            if let Some(probe) = Probe::unpack(word) {
                if let Some(&subchannel) = self.ready.subchannels().get(probe.index as usize) {
                    self.pool.consume(slot, word, self.max_uses);
                    return Pick::Ready(subchannel);
                }
            }
        }
        self.by_latest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subchannel::SubchannelId;
    use std::sync::Arc;

    fn picker(len: u64, max_uses: u32) -> (Arc<Pool>, PrequalPicker) {
        let ids: Vec<_> = (1..=len).map(SubchannelId::from_u64).collect();
        let pool = Arc::new(Pool::new(ids.len()));
        let fallback = RoundRobinPicker::new(ids, 0);
        let picker = PrequalPicker::new(Arc::clone(&pool), fallback, 1, max_uses);
        (pool, picker)
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn a_probe_packs_and_unpacks_to_itself_saturating_what_does_not_fit() {
        let probe = Probe::new(MAX_INDEX, 9_999, Some(Duration::from_secs(100)));
        let back = Probe::unpack(probe.pack()).unwrap();
        assert_eq!(back.index, MAX_INDEX);
        assert_eq!(back.rif, MAX_RIF);
        assert_eq!(back.latency, NO_LATENCY - 1);
        let none = Probe::new(3, 2, None);
        assert_eq!(Probe::unpack(none.pack()), Some(none));
        assert_eq!(Probe::unpack(EMPTY), None);
    }

    #[test]
    fn the_cold_probe_with_the_lowest_latency_wins_over_a_less_loaded_slower_one() {
        let (pool, picker) = picker(4, 1);
        pool.set_threshold(2);
        pool.set(0, Some(Probe::new(0, 0, ms(40))));
        pool.set(1, Some(Probe::new(1, 2, ms(10))));
        pool.set(2, Some(Probe::new(2, 5, ms(1))));
        assert_eq!(
            picker.pick(&PickRequest::new()),
            Pick::Ready(SubchannelId::from_u64(2))
        );
        // That probe is used up; the next cold one is index 0.
        assert_eq!(pool.get(1), None);
        assert_eq!(
            picker.pick(&PickRequest::new()),
            Pick::Ready(SubchannelId::from_u64(1))
        );
    }

    #[test]
    fn with_every_probe_hot_the_fewest_requests_in_flight_win() {
        let (pool, picker) = picker(4, 3);
        pool.set_threshold(1);
        pool.set(0, Some(Probe::new(0, 7, ms(1))));
        pool.set(1, Some(Probe::new(3, 4, ms(90))));
        assert_eq!(
            picker.pick(&PickRequest::new()),
            Pick::Ready(SubchannelId::from_u64(4))
        );
        // Used once: one more request in flight counted on it.
        let used = pool.get(1).unwrap();
        assert_eq!((used.rif, used.uses), (5, 1));
    }

    #[test]
    fn an_unreported_latency_ranks_last_among_cold_probes() {
        let (pool, picker) = picker(3, 1);
        pool.set_threshold(3);
        pool.set(0, Some(Probe::new(0, 0, None)));
        pool.set(1, Some(Probe::new(1, 1, ms(500))));
        assert_eq!(
            picker.pick(&PickRequest::new()),
            Pick::Ready(SubchannelId::from_u64(2))
        );
    }

    #[test]
    fn an_empty_pool_picks_the_better_of_two_by_their_latest_answers() {
        let (pool, picker) = picker(2, 1);
        pool.set_latest(0, Probe::new(0, 0, ms(30)));
        pool.set_latest(1, Probe::new(1, 3, ms(10))); // busier, but sooner
        for _ in 0..20 {
            let pick = picker.pick(&PickRequest::new());
            assert_eq!(pick, Pick::Ready(SubchannelId::from_u64(2)));
        }
        // Without a latency on one side, requests in flight decide.
        pool.set_latest(1, Probe::new(1, 4, None));
        for _ in 0..20 {
            let pick = picker.pick(&PickRequest::new());
            assert_eq!(pick, Pick::Ready(SubchannelId::from_u64(1)));
        }
    }

    #[test]
    fn with_nothing_known_picks_reach_every_endpoint() {
        let (_, picker) = picker(3, 1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            if let Pick::Ready(id) = picker.pick(&PickRequest::new()) {
                seen.insert(id);
            }
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_probe_naming_a_place_past_the_list_is_never_picked() {
        let (pool, picker) = picker(2, 1);
        pool.set(0, Some(Probe::new(7, 0, ms(1))));
        assert!(matches!(picker.pick(&PickRequest::new()), Pick::Ready(id) if id.as_u64() <= 2));
    }
}
