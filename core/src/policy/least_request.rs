//! least_request (gRFC A48): sample `choice_count` READY endpoints at random (with
//! replacement) and send the call to the one with the fewest calls outstanding.
//!
//! A retry ([`PickRequest::tried`]) takes the least loaded of the samples its call has not tried
//! yet; if it tried them all, the next untried endpoint after the first sample (looking no
//! further than it tried), and only with none left, one it tried.
//!
//! Outstanding counts are atomics shared by the picker and the policy: a pick adds one, the call's
//! outcome (whatever its status) takes one away. Endpoints are connected and aggregated by
//! [`EndpointPolicy`], as for round_robin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::call::CallOutcome;
use crate::hasher::FastSet;
use crate::picker::{Pick, PickRequest, Picker};
use crate::policy::endpoints::{EndpointKey, EndpointPolicy, ReadyEndpoints, Spread};
use crate::policy::{
    parse_whole, Controller, Policy, PolicyBuilder, PolicyConfig, PolicyDetails, PolicyParamError,
};
use crate::rng::AtomicRng;
use crate::subchannel::{IdMap, SubchannelId};

/// Settings of least_request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeastRequestConfig {
    /// How many endpoints each pick compares (A48: default 2, at least 2, at most 10).
    pub choice_count: u32,
}

impl Default for LeastRequestConfig {
    fn default() -> Self {
        LeastRequestConfig { choice_count: 2 }
    }
}

impl LeastRequestConfig {
    /// Sets [`LeastRequestConfig::choice_count`] (clamped to 2..=10 when used).
    pub fn choice_count(mut self, count: u32) -> Self {
        self.choice_count = count;
        self
    }
}

impl PolicyBuilder for LeastRequestConfig {
    fn name(&self) -> &str {
        "least_request"
    }

    fn build(&self) -> Box<dyn Policy> {
        let choices = self.choice_count.clamp(2, 10) as usize;
        Box::new(EndpointPolicy::new(LeastRequest {
            choices,
            outstanding: IdMap::default(),
        }))
    }

    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        for (key, value) in params {
            match key.as_str() {
                "choice_count" | "choiceCount" => {
                    config.choice_count = parse_whole(self.name(), key, value)?;
                }
                other => {
                    return Err(PolicyParamError::unknown_parameter(
                        self.name(),
                        other,
                        "choice_count",
                    ))
                }
            }
        }
        Ok(PolicyConfig::new(config))
    }
}

/// least_request's spread: the choice count, and the outstanding calls per READY subchannel,
/// kept across pickers.
#[derive(Debug)]
pub(crate) struct LeastRequest {
    choices: usize,
    outstanding: IdMap<Arc<AtomicUsize>>,
}

impl Spread for LeastRequest {
    type Endpoint = ();

    fn reconfigure(&mut self, config: &PolicyConfig) -> bool {
        let Some(config) = config.downcast_ref::<LeastRequestConfig>() else {
            return false;
        };
        self.choices = config.choice_count.clamp(2, 10) as usize;
        true
    }

    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, ()>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        let live: FastSet<SubchannelId> = ready.subchannels().collect();
        self.outstanding.retain(|id, _| live.contains(id));
        let mut loaded = Vec::with_capacity(ready.len());
        loaded.extend(
            ready
                .subchannels()
                .map(|id| (id, Arc::clone(self.outstanding.entry(id).or_default()))),
        );
        let seed = ctl.rng().next_u64();
        Arc::new(LeastRequestPicker::new(loaded, self.choices, seed))
    }

    fn wants_call_outcomes(&self) -> bool {
        true
    }

    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        _: Option<(EndpointKey, &mut ())>,
        _: &CallOutcome,
        _: Instant,
    ) -> bool {
        if let Some(counter) = self.outstanding.get(&subchannel) {
            call_ended(counter);
        }
        false
    }

    fn describe_subchannel(
        &self,
        subchannel: SubchannelId,
        _: Option<(EndpointKey, &())>,
        details: &mut PolicyDetails,
    ) {
        if let Some(counter) = self.outstanding.get(&subchannel) {
            details.in_flight = Some(counter.load(Ordering::Relaxed));
        }
    }
}

/// A READY subchannel with its count of outstanding calls.
pub(crate) type Loaded = (SubchannelId, Arc<AtomicUsize>);

/// Picks the least loaded of `choices` random READY subchannels.
#[derive(Debug)]
pub(crate) struct LeastRequestPicker {
    ready: Box<[Loaded]>,
    choices: usize,
    rng: AtomicRng,
}

impl LeastRequestPicker {
    pub(crate) fn new(ready: Vec<Loaded>, choices: usize, seed: u64) -> Self {
        LeastRequestPicker {
            ready: ready.into_boxed_slice(),
            choices,
            rng: AtomicRng::new(seed),
        }
    }
}

impl LeastRequestPicker {
    /// A retry: the least loaded of the samples its call has not tried yet; if it tried them
    /// all, the next untried endpoint after the first sample, looking no further than it tried
    /// (so the work stays bounded whatever the list's length); else the least loaded sample.
    #[cold]
    fn pick_retry(&self, request: &PickRequest<'_>) -> &Loaded {
        let len = self.ready.len();
        let first = self.rng.index(len);
        let mut best = &self.ready[first];
        let mut best_load = best.1.load(Ordering::Relaxed);
        let mut untried = (!request.has_tried(best.0)).then_some((best, best_load));
        for _ in 1..self.choices {
            let candidate = &self.ready[self.rng.index(len)];
            let load = candidate.1.load(Ordering::Relaxed);
            if load < best_load {
                best = candidate;
                best_load = load;
            }
            if !request.has_tried(candidate.0) && untried.is_none_or(|(_, least)| load < least) {
                untried = Some((candidate, load));
            }
        }
        let next = || {
            (1..=request.tried().len().min(len - 1))
                .map(|offset| &self.ready[(first + offset) % len])
                .find(|loaded| !request.has_tried(loaded.0))
        };
        untried
            .map(|(loaded, _)| loaded)
            .or_else(next)
            .unwrap_or(best)
    }
}

impl Picker for LeastRequestPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        let len = self.ready.len();
        if len == 0 {
            return Pick::Queue;
        }
        if !request.tried().is_empty() {
            let chosen = self.pick_retry(request);
            chosen.1.fetch_add(1, Ordering::Relaxed);
            return Pick::Ready(chosen.0);
        }
        let mut best = &self.ready[self.rng.index(len)];
        let mut best_load = best.1.load(Ordering::Relaxed);
        for _ in 1..self.choices {
            let candidate = &self.ready[self.rng.index(len)];
            let load = candidate.1.load(Ordering::Relaxed);
            if load < best_load {
                best = candidate;
                best_load = load;
            }
        }
        best.1.fetch_add(1, Ordering::Relaxed);
        Pick::Ready(best.0)
    }
}

/// One call on a subchannel ended: its outstanding count drops, never below zero.
fn call_ended(counter: &AtomicUsize) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(loads: &[usize]) -> Vec<Loaded> {
        loads
            .iter()
            .enumerate()
            .map(|(i, load)| {
                let id = SubchannelId::from_u64(i as u64 + 1);
                (id, Arc::new(AtomicUsize::new(*load)))
            })
            .collect()
    }

    #[test]
    fn a_retry_goes_to_an_untried_endpoint_even_if_it_is_busier() {
        // Two endpoints and two choices: a first attempt always finds the idle one.
        let picker = LeastRequestPicker::new(loaded(&[0, 50]), 2, 3);
        let (idle, busy) = (SubchannelId::from_u64(1), SubchannelId::from_u64(2));
        let tried = [idle];
        for _ in 0..20 {
            assert_eq!(
                picker.pick(&PickRequest::new().with_tried(&tried)),
                Pick::Ready(busy)
            );
        }
        // With both tried it still picks one.
        let both = [idle, busy];
        assert!(matches!(
            picker.pick(&PickRequest::new().with_tried(&both)),
            Pick::Ready(_)
        ));
    }

    #[test]
    fn a_retry_looks_past_samples_it_already_tried() {
        // Ten endpoints, nine tried: whatever the samples, the one untried endpoint is found.
        let picker = LeastRequestPicker::new(loaded(&[0; 10]), 2, 11);
        let tried: Vec<SubchannelId> = (1..=9).map(SubchannelId::from_u64).collect();
        for _ in 0..50 {
            assert_eq!(
                picker.pick(&PickRequest::new().with_tried(&tried)),
                Pick::Ready(SubchannelId::from_u64(10))
            );
        }
    }
}
