//! Every attempt a balancer's picker hands out comes back to that balancer as an outcome: the
//! answered ones when they are answered, the losing hedges when they are cancelled. Checked with
//! a policy of the test's own that wraps round_robin and counts both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier::{
    CallOutcome, Code, ConnectivityState, Controller, Endpoint, Pick, PickRequest, Picker, Policy,
    PolicyBuilder, PolicyConfig, ResolverError, Rng, SubchannelId, SubchannelUpdate, TimerToken,
};
use croupier_sim::{hedging, simulate, Cancellation, Router, Scenario};

#[derive(Debug, Default)]
struct Counts {
    picks: AtomicU64,
    outcomes: AtomicU64,
    cancelled: AtomicU64,
}

#[derive(Debug)]
struct CountingPicker {
    inner: Arc<dyn Picker>,
    counts: Arc<Counts>,
}

impl Picker for CountingPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        let pick = self.inner.pick(request);
        if matches!(pick, Pick::Ready(_)) {
            self.counts.picks.fetch_add(1, Ordering::Relaxed);
        }
        pick
    }
}

/// Passes everything through, wrapping each published picker.
struct Wrapping<'a> {
    ctl: &'a mut dyn Controller,
    counts: &'a Arc<Counts>,
}

impl Controller for Wrapping<'_> {
    fn now(&self) -> Instant {
        self.ctl.now()
    }
    fn create_subchannel(&mut self, address: &croupier::Address) -> SubchannelId {
        self.ctl.create_subchannel(address)
    }
    fn connect(&mut self, subchannel: SubchannelId) {
        self.ctl.connect(subchannel);
    }
    fn remove_subchannel(&mut self, subchannel: SubchannelId) {
        self.ctl.remove_subchannel(subchannel);
    }
    fn subchannel_state(&self, subchannel: SubchannelId) -> Option<ConnectivityState> {
        self.ctl.subchannel_state(subchannel)
    }
    fn publish(&mut self, state: ConnectivityState, picker: Arc<dyn Picker>) {
        let counts = Arc::clone(self.counts);
        let picker = Arc::new(CountingPicker {
            inner: picker,
            counts,
        });
        self.ctl.publish(state, picker);
    }
    fn request_resolution(&mut self) {
        self.ctl.request_resolution();
    }
    fn set_timer(&mut self, at: Instant, token: TimerToken) {
        self.ctl.set_timer(at, token);
    }
    fn rng(&mut self) -> &mut Rng {
        self.ctl.rng()
    }
}

#[derive(Debug)]
struct Counting {
    inner: Box<dyn Policy>,
    counts: Arc<Counts>,
}

impl Counting {
    fn with<'a>(counts: &'a Arc<Counts>, ctl: &'a mut dyn Controller) -> Wrapping<'a> {
        Wrapping { ctl, counts }
    }
}

impl Policy for Counting {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        let mut ctl = Counting::with(&self.counts, ctl);
        self.inner.resolver_update(endpoints, &mut ctl);
    }
    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        let mut ctl = Counting::with(&self.counts, ctl);
        self.inner.resolver_error(error, &mut ctl);
    }
    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        let mut ctl = Counting::with(&self.counts, ctl);
        self.inner.subchannel_update(subchannel, update, &mut ctl);
    }
    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        let mut ctl = Counting::with(&self.counts, ctl);
        self.inner.exit_idle(&mut ctl);
    }
    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let mut ctl = Counting::with(&self.counts, ctl);
        self.inner.timer(token, &mut ctl);
    }
    fn call_finished(
        &mut self,
        subchannel: SubchannelId,
        outcome: &CallOutcome,
        ctl: &mut dyn Controller,
    ) {
        self.counts.outcomes.fetch_add(1, Ordering::Relaxed);
        if outcome.code == Code::Cancelled {
            self.counts.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        let mut ctl = Counting::with(&self.counts, ctl);
        self.inner.call_finished(subchannel, outcome, &mut ctl);
    }
}

#[derive(Debug)]
struct CountingBuilder(Arc<Counts>);

impl PolicyBuilder for CountingBuilder {
    fn name(&self) -> &str {
        "counting_round_robin"
    }
    fn build(&self) -> Box<dyn Policy> {
        let inner = croupier::policy::RoundRobinConfig::default().build();
        Box::new(Counting {
            inner,
            counts: Arc::clone(&self.0),
        })
    }
}

#[test]
fn every_attempt_picked_is_reported_to_the_balancer_once() {
    // Backend 0 ten times slower: hedges go out, and many lose.
    let mut scenario = Scenario::uniform(
        10,
        4,
        Duration::from_millis(10),
        0.075,
        Duration::from_secs(5),
    );
    scenario.backends[0].mean_service = Duration::from_millis(100);
    for cancellation in [Cancellation::StopsWork, Cancellation::FinishesWork] {
        scenario.retry = Some(hedging(2).cancellation(cancellation));
        let counts = Arc::new(Counts::default());
        let router = Router::policy(
            "counting_round_robin",
            PolicyConfig::new(CountingBuilder(Arc::clone(&counts))),
        );
        let run = simulate(&scenario, &router, 1);
        assert_eq!((run.failed, run.unfinished), (0, 0));
        let picks = counts.picks.load(Ordering::Relaxed);
        let outcomes = counts.outcomes.load(Ordering::Relaxed);
        let cancelled = counts.cancelled.load(Ordering::Relaxed);
        assert!(picks > 1000, "{picks}");
        assert_eq!(outcomes, picks, "{cancellation:?}");
        // Each call that hedged has one loser, cancelled; the others were answered.
        assert!(cancelled > 20, "{cancelled}");
        assert!(run.attempts_per_call() > 1.05);
    }
}
