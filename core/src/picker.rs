//! Pickers: the immutable snapshots that every call asks which subchannel to use.
//!
//! A policy publishes a new picker whenever its view changes; adapters share the newest one with
//! every task (`Arc<dyn Picker>`), and each call asks it once. A pick never blocks, never allocates
//! and never takes a lock: it answers from the snapshot, plus atomics where a policy needs them.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use http::{HeaderMap, Uri};

use crate::status::Status;
use crate::subchannel::SubchannelId;

/// What a pick may look at: the call's URI (its path names the method), its headers, and a hash a
/// caller may supply for affinity. Build one per call; it borrows, so it costs nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickRequest<'a> {
    uri: Option<&'a Uri>,
    headers: Option<&'a HeaderMap>,
    hash: Option<u64>,
    tried: &'a [SubchannelId],
}

impl<'a> PickRequest<'a> {
    /// A request with nothing to look at: fine for policies that ignore the call.
    pub fn new() -> Self {
        PickRequest::default()
    }

    /// A request for an HTTP call (for gRPC: `/package.Service/Method` and the metadata).
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        PickRequest {
            uri: Some(&parts.uri),
            headers: Some(&parts.headers),
            hash: None,
            tried: &[],
        }
    }

    /// Sets the URI.
    pub fn with_uri(mut self, uri: &'a Uri) -> Self {
        self.uri = Some(uri);
        self
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: &'a HeaderMap) -> Self {
        self.headers = Some(headers);
        self
    }

    /// Sets an explicit hash (for hash-based policies: the same hash, the same backend).
    pub fn with_hash(mut self, hash: u64) -> Self {
        self.hash = Some(hash);
        self
    }

    /// Names the subchannels that earlier attempts of this call used (a retry or a hedge), oldest
    /// first. A policy may prefer another READY subchannel; with no other, it may pick one of these.
    pub fn with_tried(mut self, tried: &'a [SubchannelId]) -> Self {
        self.tried = tried;
        self
    }

    /// The call's URI, if given.
    pub fn uri(&self) -> Option<&'a Uri> {
        self.uri
    }

    /// The call's path (`/package.Service/Method`), if a URI was given.
    pub fn path(&self) -> Option<&'a str> {
        self.uri.map(Uri::path)
    }

    /// The call's headers, if given.
    pub fn headers(&self) -> Option<&'a HeaderMap> {
        self.headers
    }

    /// The explicit hash, if given.
    pub fn hash(&self) -> Option<u64> {
        self.hash
    }

    /// The subchannels earlier attempts of this call used (empty for a first attempt).
    pub fn tried(&self) -> &'a [SubchannelId] {
        self.tried
    }

    /// Whether an earlier attempt of this call used `subchannel`.
    pub fn has_tried(&self, subchannel: SubchannelId) -> bool {
        self.tried.contains(&subchannel)
    }
}

/// A picker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pick {
    /// Send the call on this subchannel (READY when the picker was made). If the adapter finds it
    /// no longer connected, it picks again from the newest picker.
    Ready(SubchannelId),
    /// No answer yet: wait for the next picker (or the call's deadline).
    Queue,
    /// No backend can take the call now. A call that asked to wait for ready waits for the next
    /// picker instead; any other call fails with this status.
    Fail(Status),
    /// Fail the call with this status, even if it asked to wait for ready.
    Drop(Status),
}

/// What a picker noted about one pick, for its policy to read back from the call's outcome
/// ([`CallOutcome::note`](crate::CallOutcome::note)): least_latency notes how many calls were in
/// flight on the subchannel with this one, so that a latency can be told from a queue. Eight
/// bytes, copied; [`PickNote::NONE`] when a picker notes nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PickNote(u64);

impl PickNote {
    /// Nothing noted.
    pub const NONE: PickNote = PickNote(0);

    /// A note holding `value` (what it means is the picker's policy's business).
    pub const fn new(value: u64) -> Self {
        PickNote(value)
    }

    /// The value noted (0 for [`PickNote::NONE`]).
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A snapshot that answers picks. Policies implement it; adapters call it from many threads at once.
pub trait Picker: Send + Sync + fmt::Debug {
    /// Chooses for one call. Must not block, allocate, or lock.
    fn pick(&self, request: &PickRequest<'_>) -> Pick;

    /// Chooses for one call, as [`Picker::pick`] does, and notes what the policy wants back with
    /// the call's outcome. An adapter that reports outcomes picks with this and hands the note
    /// back in [`CallOutcome::note`](crate::CallOutcome::note). The default notes nothing; a
    /// picker that wraps others passes their notes on.
    fn pick_with_note(&self, request: &PickRequest<'_>) -> (Pick, PickNote) {
        (self.pick(request), PickNote::NONE)
    }
}

/// A picker that queues every call: published while a policy has no answer yet.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueuePicker;

impl Picker for QueuePicker {
    fn pick(&self, _: &PickRequest<'_>) -> Pick {
        Pick::Queue
    }
}

/// A picker that fails every call with one status: published in TRANSIENT_FAILURE.
#[derive(Clone, Debug)]
pub struct FailPicker {
    status: Status,
}

impl FailPicker {
    /// A picker that fails with `status`.
    pub fn new(status: Status) -> Self {
        FailPicker { status }
    }

    /// The status every pick fails with.
    pub fn status(&self) -> &Status {
        &self.status
    }
}

impl Picker for FailPicker {
    fn pick(&self, _: &PickRequest<'_>) -> Pick {
        Pick::Fail(self.status.clone())
    }
}

/// A picker that sends every call to one subchannel (pick_first's READY picker).
#[derive(Clone, Copy, Debug)]
pub struct SinglePicker {
    subchannel: SubchannelId,
}

impl SinglePicker {
    /// A picker that always answers `subchannel`.
    pub fn new(subchannel: SubchannelId) -> Self {
        SinglePicker { subchannel }
    }
}

impl Picker for SinglePicker {
    fn pick(&self, _: &PickRequest<'_>) -> Pick {
        Pick::Ready(self.subchannel)
    }
}

/// A picker that cycles over a fixed list of subchannels, one step per pick, from a chosen start.
///
/// The counter is one relaxed atomic add: threads picking at once each get a distinct step. The
/// step is reduced to an index with two multiplications instead of a division (Lemire's
/// "faster remainder by direct computation"); the 32-bit counter wraps every 2^32 picks, which
/// shifts the cycle once, harmlessly.
#[derive(Debug)]
pub struct RoundRobinPicker {
    ready: Box<[SubchannelId]>,
    next: AtomicU32,
    /// `u64::MAX / len + 1`: the reciprocal the remainder is computed with.
    reciprocal: u64,
}

/// `step % len` for `len` in `1..=u32::MAX`, given `reciprocal = u64::MAX / len + 1`.
#[inline]
pub(crate) fn fast_remainder(step: u32, len: u32, reciprocal: u64) -> u32 {
    let low = reciprocal.wrapping_mul(u64::from(step));
    ((u128::from(low) * u128::from(len)) >> 64) as u32
}

/// `step / len` for `len` in `2..=u32::MAX`, given `reciprocal = u64::MAX / len + 1` (exact for
/// 32-bit operands; Lemire's "faster division").
#[inline]
pub(crate) fn fast_quotient(step: u32, reciprocal: u64) -> u32 {
    ((u128::from(reciprocal) * u128::from(step)) >> 64) as u32
}

impl RoundRobinPicker {
    /// A picker over `ready` (which must not be empty for picks to succeed; an empty list queues),
    /// whose first pick is `ready[start % len]`.
    pub fn new(ready: impl Into<Box<[SubchannelId]>>, start: usize) -> Self {
        let mut ready: Box<[SubchannelId]> = ready.into();
        if ready.len() > u32::MAX as usize {
            // Four billion READY subchannels will not happen; keep the arithmetic exact anyway.
            ready = ready[..u32::MAX as usize].into();
        }
        let len = ready.len() as u64;
        let reciprocal = u64::MAX.checked_div(len).map_or(0, |q| q.wrapping_add(1));
        let start = if len == 0 {
            0
        } else {
            (start as u64 % len) as u32
        };
        RoundRobinPicker {
            ready,
            next: AtomicU32::new(start),
            reciprocal,
        }
    }

    /// The subchannels it cycles over.
    pub fn subchannels(&self) -> &[SubchannelId] {
        &self.ready
    }
}

impl Picker for RoundRobinPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        let len = self.ready.len();
        if len == 0 {
            return Pick::Queue;
        }
        let step = self.next.fetch_add(1, Ordering::Relaxed);
        let index = fast_remainder(step, len as u32, self.reciprocal) as usize;
        match self.ready.get(index) {
            Some(&chosen) if request.tried().is_empty() => Pick::Ready(chosen),
            Some(_) => self.retry(request, index),
            None => Pick::Queue, // unreachable: the remainder is below len
        }
    }
}

impl RoundRobinPicker {
    /// A retry's pick: the cycle's choice at `index`, or the next subchannels after it that no
    /// earlier attempt used. At most `tried.len()` of them are skipped, so this stays bounded
    /// whatever the list's length. Apart from `pick`, so a first attempt's pick stays as small
    /// as it was.
    #[cold]
    #[inline(never)]
    fn retry(&self, request: &PickRequest<'_>, index: usize) -> Pick {
        let len = self.ready.len();
        let untried = (0..=request.tried().len().min(len - 1))
            .map(|offset| self.ready[(index + offset) % len])
            .find(|&subchannel| !request.has_tried(subchannel));
        Pick::Ready(untried.unwrap_or(self.ready[index]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<SubchannelId> {
        (1..=n).map(SubchannelId::from_u64).collect()
    }

    #[test]
    fn round_robin_picker_passes_over_subchannels_a_call_already_tried() {
        let picker = RoundRobinPicker::new(ids(3), 0);
        let tried = [SubchannelId::from_u64(1), SubchannelId::from_u64(2)];
        for _ in 0..6 {
            let pick = picker.pick(&PickRequest::new().with_tried(&tried));
            assert_eq!(pick, Pick::Ready(SubchannelId::from_u64(3)));
        }
        // With every subchannel tried, it answers the cycle's own choice rather than failing.
        let all = ids(3);
        let picks: Vec<_> = (0..3)
            .map(|_| picker.pick(&PickRequest::new().with_tried(&all)))
            .collect();
        assert!(picks.iter().all(|pick| matches!(pick, Pick::Ready(_))));
    }

    #[test]
    fn round_robin_picker_cycles_from_its_start() {
        let picker = RoundRobinPicker::new(ids(3), 4);
        let got: Vec<_> = (0..6).map(|_| picker.pick(&PickRequest::new())).collect();
        let want: Vec<_> = [2, 3, 1, 2, 3, 1]
            .into_iter()
            .map(|i| Pick::Ready(SubchannelId::from_u64(i)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn fast_quotient_matches_the_quotient() {
        for len in [2u32, 3, 7, 1000, 10_007, 65_535, u32::MAX / 3, u32::MAX] {
            let reciprocal = u64::MAX / u64::from(len) + 1;
            for step in [
                0u32,
                1,
                len - 1,
                len,
                len.wrapping_add(1),
                12_345_678,
                u32::MAX - 1,
                u32::MAX,
            ] {
                assert_eq!(
                    fast_quotient(step, reciprocal),
                    step / len,
                    "{step} / {len}"
                );
            }
        }
    }

    #[test]
    fn fast_remainder_matches_the_remainder() {
        let mut rng = crate::rng::Rng::new(5);
        for len in (1..200u32).chain([255, 256, 1000, 4096, 10_000, 65_537, u32::MAX]) {
            let reciprocal = (u64::MAX / u64::from(len)).wrapping_add(1);
            for _ in 0..200 {
                let step = rng.next_u64() as u32;
                assert_eq!(
                    fast_remainder(step, len, reciprocal),
                    step % len,
                    "{step} % {len}"
                );
            }
            for step in [0, 1, len - 1, len, u32::MAX] {
                assert_eq!(
                    fast_remainder(step, len, reciprocal),
                    step % len,
                    "{step} % {len}"
                );
            }
        }
    }

    #[test]
    fn empty_round_robin_picker_queues() {
        let picker = RoundRobinPicker::new(Vec::new(), 0);
        assert_eq!(picker.pick(&PickRequest::new()), Pick::Queue);
    }

    #[test]
    fn fail_picker_returns_its_status() {
        let picker = FailPicker::new(Status::unavailable("down"));
        assert_eq!(
            picker.pick(&PickRequest::new()),
            Pick::Fail(Status::unavailable("down"))
        );
    }

    #[test]
    fn request_from_parts_exposes_path_and_headers() {
        let (parts, ()) = http::Request::builder()
            .uri("http://x/pkg.Svc/Method")
            .header("user", "alice")
            .body(())
            .unwrap()
            .into_parts();
        let request = PickRequest::from_parts(&parts).with_hash(9);
        assert_eq!(request.path(), Some("/pkg.Svc/Method"));
        assert_eq!(request.headers().unwrap()["user"], "alice");
        assert_eq!(request.hash(), Some(9));
    }
}
