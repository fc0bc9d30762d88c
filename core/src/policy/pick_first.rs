//! pick_first: one connection, to the first address that answers (gRFC A61, A62).
//!
//! The addresses of all endpoints are flattened, de-duplicated and interleaved by IP family
//! (RFC 8305), optionally after shuffling the endpoints. A first pass tries them in order with happy
//! eyeballs: the next address starts after a delay (250 ms) without cancelling the one in flight,
//! or at once when the current one fails. The first to be READY wins and the others are removed.
//! When every address has failed once, the policy reports TRANSIENT_FAILURE (and stays there until
//! something is READY: "sticky"), asks for re-resolution, and reconnects each address as its
//! backoff ends. When the READY connection is lost the policy goes IDLE; the next queued call
//! starts a new pass.
//!
//! The engine that walks one address list, `PickFirstList`, is also what round_robin runs for
//! each of its endpoints.

use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::address::{Address, Endpoint};
use crate::backoff::later;
use crate::hasher::FastSet;
use crate::picker::{FailPicker, Picker, QueuePicker, SinglePicker};
use crate::policy::{
    describe_failures, parse_bool, parse_millis, Controller, Policy, PolicyBuilder, PolicyConfig,
    PolicyParamError, SubchannelUpdate, TimerToken,
};
use crate::resolver::ResolverError;
use crate::status::{ConnectivityState, Status};
use crate::subchannel::SubchannelId;

mod notices;

/// The happy eyeballs delay gRPC uses: 250 ms.
pub const DEFAULT_HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);

/// How many failed addresses an error message names before it says "and N more".
const ERRORS_SHOWN: usize = 8;

/// Settings of pick_first.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PickFirstConfig {
    /// Shuffle the endpoints (with the balancer's seeded generator) before trying them, so many
    /// clients of one list spread over it (gRFC A62's `shuffleAddressList`).
    pub shuffle_address_list: bool,
    /// How long an attempt runs before the next address starts beside it (clamped to 100 ms..2 s).
    pub happy_eyeballs_delay: Duration,
}

impl Default for PickFirstConfig {
    fn default() -> Self {
        PickFirstConfig {
            shuffle_address_list: false,
            happy_eyeballs_delay: DEFAULT_HAPPY_EYEBALLS_DELAY,
        }
    }
}

impl PickFirstConfig {
    /// Sets [`PickFirstConfig::shuffle_address_list`].
    pub fn shuffle_address_list(mut self, shuffle: bool) -> Self {
        self.shuffle_address_list = shuffle;
        self
    }

    /// Sets [`PickFirstConfig::happy_eyeballs_delay`].
    pub fn happy_eyeballs_delay(mut self, delay: Duration) -> Self {
        self.happy_eyeballs_delay = delay;
        self
    }

    fn clamped_delay(&self) -> Duration {
        self.happy_eyeballs_delay
            .clamp(Duration::from_millis(100), Duration::from_secs(2))
    }
}

impl PolicyBuilder for PickFirstConfig {
    fn name(&self) -> &str {
        "pick_first"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(PickFirst::new(self.clone()))
    }

    fn with_params(&self, params: &[(String, String)]) -> Result<PolicyConfig, PolicyParamError> {
        let mut config = self.clone();
        for (key, value) in params {
            match key.as_str() {
                "shuffle_address_list" | "shuffleAddressList" => {
                    config.shuffle_address_list = parse_bool(self.name(), key, value)?;
                }
                "happy_eyeballs_delay_ms" => {
                    config.happy_eyeballs_delay = parse_millis(self.name(), key, value)?;
                }
                other => {
                    return Err(PolicyParamError::unknown_parameter(
                        self.name(),
                        other,
                        "shuffle_address_list, happy_eyeballs_delay_ms",
                    ))
                }
            }
        }
        Ok(PolicyConfig::new(config))
    }
}

/// One address of a `PickFirstList`.
#[derive(Debug)]
struct Entry {
    address: Address,
    subchannel: Option<SubchannelId>,
    error: Option<Arc<str>>,
}

/// Walks one address list the pick_first way and holds on to the first connection that works:
/// the engine of pick_first, and of every policy that connects its endpoints one by one
/// (round_robin and ring_hash run one per endpoint; so can a policy of your own).
///
/// It publishes no picker and keeps no map of its own: its owner feeds it every
/// [`Policy`] input that concerns it and, after every call that returned `true` (something
/// changed), reads [`PickFirstList::state`] and [`PickFirstList::ready_subchannel`] to build its
/// picker.
///
/// - [`PickFirstList::set_addresses`] gives it the endpoint's addresses. The first call starts
///   connecting (a list never given addresses is IDLE and connects nothing, so an owner that
///   connects lazily, as ring_hash does, gives the addresses when it first needs the endpoint);
///   later calls keep a READY address's connection, and keep an IDLE list idle.
/// - [`PickFirstList::subchannel_update`] takes every subchannel update; it returns `false` for a
///   subchannel that is not its own, so an owner with few lists may offer each update to all.
/// - [`PickFirstList::on_timer`] takes the timers it set through [`Controller::set_timer`] for
///   happy eyeballs. An owner of several lists hands each its own
///   [`SlotController`](crate::policy::SlotController), so its timers carry the list's slot,
///   and routes them back with [`TimerToken::split`].
/// - When the READY connection is lost the list goes IDLE; [`PickFirstList::exit_idle`]
///   reconnects it (round_robin does so at once, pick_first at the next queued call).
/// - [`PickFirstList::shutdown`] removes its subchannels when the endpoint goes away.
///
/// Like pick_first, it reports TRANSIENT_FAILURE once every address failed, stays there
/// ("sticky") until one is READY, and retries each address as its backoff ends.
#[derive(Debug)]
pub struct PickFirstList {
    /// One entry per address, inline for the usual single-address endpoint.
    entries: SmallVec<[Entry; 1]>,
    /// The entry whose connection is READY. (Indices are `u32`: a list is never longer, and
    /// every round_robin or ring_hash endpoint carries a list, so its size counts.)
    selected: Option<u32>,
    state: ConnectivityState,
    /// Whether a first pass over the list is under way.
    in_pass: bool,
    /// The next entry the pass will start.
    next: u32,
    /// Whether the list has ever been given addresses (or was last given none).
    fresh: bool,
    /// In nanoseconds, saturating (8 bytes where a `Duration` takes 16: round_robin and
    /// ring_hash keep a list per endpoint).
    happy_eyeballs_nanos: u64,
    /// The happy eyeballs timer that is current; older tokens are stale.
    timer_seq: u32,
}

impl PickFirstList {
    /// An empty, IDLE list. `happy_eyeballs_delay` is how long an attempt runs before the next
    /// address starts beside it.
    pub fn new(happy_eyeballs_delay: Duration) -> Self {
        PickFirstList {
            entries: SmallVec::new(),
            selected: None,
            state: ConnectivityState::Idle,
            in_pass: false,
            next: 0,
            fresh: true,
            happy_eyeballs_nanos: u64::try_from(happy_eyeballs_delay.as_nanos())
                .unwrap_or(u64::MAX),
            timer_seq: 0,
        }
    }

    /// The same list with its timer sequence starting at `base`. An owner that reuses a slot
    /// for a new list starts it where no timer of the slot's previous list can still be
    /// pending, so a late timer of the old list never counts for the new one.
    pub(crate) fn with_timer_seq_base(mut self, base: u32) -> Self {
        self.timer_seq = base;
        self
    }

    /// The list's state: IDLE, CONNECTING, READY or (sticky) TRANSIENT_FAILURE.
    pub fn state(&self) -> ConnectivityState {
        self.state
    }

    /// Whether the list holds no address (never given any, or given none).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The connected subchannel, while the list is READY.
    pub fn ready_subchannel(&self) -> Option<SubchannelId> {
        self.selected
            .and_then(|i| self.entries.get(i as usize))
            .and_then(|entry| entry.subchannel)
    }

    /// Every address with its last error, for failure messages.
    pub fn failures(&self) -> impl Iterator<Item = (&Address, Option<&str>)> {
        self.entries
            .iter()
            .map(|entry| (&entry.address, entry.error.as_deref()))
    }

    /// Replaces the address list. Keeps a READY connection whose address is still listed.
    /// Returns whether the state or the chosen subchannel changed.
    pub fn set_addresses(&mut self, addresses: Vec<Address>, ctl: &mut dyn Controller) -> bool {
        self.set_address_slice(&addresses, ctl)
    }

    /// The addresses it walks, in order.
    pub(crate) fn addresses(&self) -> impl ExactSizeIterator<Item = &Address> {
        self.entries.iter().map(|entry| &entry.address)
    }

    /// Whether it walks exactly `addresses`, in that order.
    pub(crate) fn has_addresses(&self, addresses: &[Address]) -> bool {
        self.addresses().eq(addresses)
    }

    /// Gives a list never given addresses its (deduplicated) `addresses` and leaves it IDLE: it
    /// connects at the first [`PickFirstList::exit_idle`] (ring_hash's endpoints connect when a
    /// pick needs them). A list that has addresses is left as it is.
    pub(crate) fn hold_addresses(&mut self, addresses: &[Address]) {
        if self.fresh && self.entries.is_empty() && !addresses.is_empty() {
            self.entries = entries_for(addresses);
            self.fresh = false;
        }
    }

    /// [`PickFirstList::set_addresses`] from a borrowed list (what round_robin's children use:
    /// no list is copied unless it repeats an address).
    pub(crate) fn set_address_slice(
        &mut self,
        addresses: &[Address],
        ctl: &mut dyn Controller,
    ) -> bool {
        let deduped;
        let addresses = match dedup(addresses) {
            Some(unique) => {
                deduped = unique;
                &deduped[..]
            }
            None => addresses,
        };
        if !self.fresh && self.has_addresses(addresses) {
            return false;
        }
        let was_fresh = self.fresh;
        self.fresh = addresses.is_empty();

        if let Some(kept) = self.keep_selected(addresses, ctl) {
            self.entries = entries_for(addresses);
            self.entries[kept.0] = kept.1;
            self.selected = Some(kept.0 as u32);
            return false;
        }

        self.remove_all(ctl);
        self.entries = entries_for(addresses);
        if self.entries.is_empty() {
            self.in_pass = false;
            self.state = ConnectivityState::TransientFailure;
            return true;
        }
        let before = self.state;
        match self.state {
            ConnectivityState::Idle if !was_fresh => {}
            ConnectivityState::TransientFailure if !was_fresh => self.start_pass(ctl),
            _ => {
                self.state = ConnectivityState::Connecting;
                self.start_pass(ctl);
            }
        }
        before != self.state || self.state == ConnectivityState::TransientFailure
    }

    /// If the selected connection's address is in `addresses`, takes its entry out (to be put back
    /// at its new index) after removing every other subchannel.
    fn keep_selected(
        &mut self,
        addresses: &[Address],
        ctl: &mut dyn Controller,
    ) -> Option<(usize, Entry)> {
        let selected = self.selected? as usize;
        let position = addresses
            .iter()
            .position(|a| *a == self.entries[selected].address)?;
        let kept = self.entries.swap_remove(selected);
        self.remove_all(ctl);
        Some((position, kept))
    }

    fn remove_all(&mut self, ctl: &mut dyn Controller) {
        for entry in &mut self.entries {
            if let Some(id) = entry.subchannel.take() {
                ctl.remove_subchannel(id);
            }
        }
        self.selected = None;
        self.in_pass = false;
        self.timer_seq = self.timer_seq.wrapping_add(1);
    }

    /// Removes every subchannel; the list is left empty and IDLE.
    pub fn shutdown(&mut self, ctl: &mut dyn Controller) {
        self.remove_all(ctl);
        self.entries.clear();
        self.state = ConnectivityState::Idle;
        self.fresh = true;
    }

    /// Starts a pass if the list is IDLE. Returns whether the state changed.
    pub fn exit_idle(&mut self, ctl: &mut dyn Controller) -> bool {
        if self.state != ConnectivityState::Idle || self.entries.is_empty() {
            return false;
        }
        self.state = ConnectivityState::Connecting;
        self.start_pass(ctl);
        true
    }

    fn start_pass(&mut self, ctl: &mut dyn Controller) {
        self.in_pass = true;
        self.next = 0;
        self.try_next(ctl);
    }

    /// Starts the next address of the pass; ends the pass if none is left and none is in flight.
    fn try_next(&mut self, ctl: &mut dyn Controller) {
        while (self.next as usize) < self.entries.len() {
            let entry = &mut self.entries[self.next as usize];
            self.next += 1;
            let id = *entry
                .subchannel
                .get_or_insert_with(|| ctl.create_subchannel(&entry.address));
            match ctl.subchannel_state(id) {
                Some(ConnectivityState::Idle) => ctl.connect(id),
                Some(ConnectivityState::Connecting | ConnectivityState::Ready) => {}
                // Still backing off from an earlier failure: it counts as failed in this pass.
                _ => continue,
            }
            if (self.next as usize) < self.entries.len() {
                // Happy eyeballs: start the next address beside this one if it takes too long.
                self.timer_seq = self.timer_seq.wrapping_add(1);
                let token = TimerToken::new(self.timer_seq);
                let delay = Duration::from_nanos(self.happy_eyeballs_nanos);
                ctl.set_timer(later(ctl.now(), delay), token);
            }
            return;
        }
        self.end_pass_if_done(ctl);
    }

    fn end_pass_if_done(&mut self, ctl: &mut dyn Controller) {
        if !self.in_pass || (self.next as usize) < self.entries.len() {
            return;
        }
        let in_flight = self.entries.iter().any(|entry| {
            entry.subchannel.and_then(|id| ctl.subchannel_state(id))
                == Some(ConnectivityState::Connecting)
        });
        if in_flight {
            return;
        }
        self.in_pass = false;
        self.state = ConnectivityState::TransientFailure;
        ctl.request_resolution();
        // Addresses whose backoff ended during the pass reconnect now; the rest as theirs ends.
        for entry in &self.entries {
            if let Some(id) = entry.subchannel {
                if ctl.subchannel_state(id) == Some(ConnectivityState::Idle) {
                    ctl.connect(id);
                }
            }
        }
    }

    /// A happy eyeballs timer fired. Returns whether the state changed.
    pub fn on_timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) -> bool {
        if token != TimerToken::new(self.timer_seq) || !self.in_pass || self.selected.is_some() {
            return false;
        }
        let before = self.state;
        self.try_next(ctl);
        before != self.state
    }

    /// A subchannel's state changed. Returns whether the list's state, its READY subchannel or its
    /// failure message changed.
    pub fn subchannel_update(
        &mut self,
        id: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) -> bool {
        let Some(index) = self.entries.iter().position(|e| e.subchannel == Some(id)) else {
            return false;
        };
        if update.error.is_some() {
            self.entries[index].error.clone_from(&update.error);
        }
        match update.state {
            ConnectivityState::Ready => {
                if self.selected == Some(index as u32) {
                    return false;
                }
                for (i, entry) in self.entries.iter_mut().enumerate() {
                    if i != index {
                        if let Some(other) = entry.subchannel.take() {
                            ctl.remove_subchannel(other);
                        }
                    }
                }
                self.selected = Some(index as u32);
                self.in_pass = false;
                self.timer_seq = self.timer_seq.wrapping_add(1);
                self.state = ConnectivityState::Ready;
                true
            }
            // The connection was lost. (The core moves a READY subchannel only to IDLE; a wrapping
            // policy may show it as TRANSIENT_FAILURE, as outlier detection does when it ejects.)
            ConnectivityState::Idle | ConnectivityState::TransientFailure
                if self.selected == Some(index as u32) =>
            {
                self.selected = None;
                self.state = ConnectivityState::Idle;
                ctl.request_resolution();
                true
            }
            ConnectivityState::TransientFailure => {
                if self.in_pass {
                    let before = self.state;
                    self.try_next(ctl);
                    return before != self.state
                        || self.state == ConnectivityState::TransientFailure;
                }
                self.state == ConnectivityState::TransientFailure
            }
            ConnectivityState::Idle => {
                if !self.in_pass && self.state == ConnectivityState::TransientFailure {
                    ctl.connect(id);
                }
                false
            }
            ConnectivityState::Connecting | ConnectivityState::Shutdown => false,
        }
    }

    /// The message calls fail with in TRANSIENT_FAILURE.
    pub fn failure_message(&self) -> String {
        if self.entries.is_empty() {
            return "the resolver returned no addresses".to_owned();
        }
        format!(
            "all {} addresses failed to connect: {}",
            self.entries.len(),
            describe_failures(self.failures(), ERRORS_SHOWN)
        )
    }
}

fn entries_for(addresses: &[Address]) -> SmallVec<[Entry; 1]> {
    let entry = |address: &Address| Entry {
        address: address.clone(),
        subchannel: None,
        error: None,
    };
    match addresses {
        // The usual endpoint: one address, written in place.
        [one] => SmallVec::from_buf([entry(one)]),
        many => many.iter().map(entry).collect(),
    }
}

/// The addresses without repeats (the first of each kept), or `None` if there are none.
pub(crate) fn dedup(addresses: &[Address]) -> Option<Vec<Address>> {
    match addresses {
        [] | [_] => return None,
        [a, b] => return (a == b).then(|| vec![a.clone()]),
        _ => {}
    }
    let mut seen = FastSet::default();
    seen.reserve(addresses.len());
    if addresses.iter().all(|address| seen.insert(address)) {
        return None;
    }
    seen.clear();
    let mut kept = Vec::with_capacity(addresses.len());
    for address in addresses {
        if seen.insert(address) {
            kept.push(address.clone());
        }
    }
    Some(kept)
}

/// Orders addresses by alternating IP families, starting with the first address's family
/// (RFC 8305 section 4; non-IP addresses form a family of their own).
pub(crate) fn interleave_families(addresses: Vec<Address>) -> Vec<Address> {
    let first = addresses.first().map(Address::is_ipv6);
    if addresses
        .iter()
        .all(|address| Some(address.is_ipv6()) == first)
    {
        return addresses; // one family: nothing to interleave
    }
    let mut families: Vec<(Option<bool>, std::collections::VecDeque<Address>)> = Vec::new();
    for address in addresses {
        let family = address.is_ipv6();
        match families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, list)) => list.push_back(address),
            None => families.push((family, std::iter::once(address).collect())),
        }
    }
    if families.len() < 2 {
        return families
            .pop()
            .map(|(_, list)| list.into())
            .unwrap_or_default();
    }
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for (_, list) in &mut families {
            if let Some(address) = list.pop_front() {
                out.push(address);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// The pick_first policy.
#[derive(Debug)]
pub(crate) struct PickFirst {
    config: PickFirstConfig,
    list: PickFirstList,
    /// Whether any resolver update arrived yet.
    resolved: bool,
}

impl PickFirst {
    pub(crate) fn new(config: PickFirstConfig) -> Self {
        let delay = config.clamped_delay();
        PickFirst {
            config,
            list: PickFirstList::new(delay),
            resolved: false,
        }
    }

    fn publish(&self, ctl: &mut dyn Controller) {
        let state = self.list.state();
        let picker: Arc<dyn Picker> = match (state, self.list.ready_subchannel()) {
            (ConnectivityState::Ready, Some(id)) => Arc::new(SinglePicker::new(id)),
            (ConnectivityState::TransientFailure, _) => Arc::new(FailPicker::new(
                Status::unavailable(self.list.failure_message()),
            )),
            _ => Arc::new(QueuePicker),
        };
        ctl.publish(state, picker);
    }
}

impl Policy for PickFirst {
    fn wants_call_outcomes(&self) -> bool {
        false
    }

    /// Takes a new `shuffleAddressList` in place (the next resolver update is shuffled, or
    /// not); a new happy eyeballs delay needs a fresh list, so it declines.
    fn reconfigure(&mut self, config: &PolicyConfig, _: &mut dyn Controller) -> bool {
        match config.downcast_ref::<PickFirstConfig>() {
            Some(new) if new.clamped_delay() == self.config.clamped_delay() => {
                self.config = new.clone();
                true
            }
            _ => false,
        }
    }

    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        self.resolved = true;
        let mut endpoints: Vec<&Endpoint> = endpoints.iter().collect();
        if self.config.shuffle_address_list {
            ctl.rng().shuffle(&mut endpoints);
        }
        let addresses = endpoints
            .into_iter()
            .flat_map(|endpoint| endpoint.addresses().iter().cloned())
            .collect();
        if self.list.set_addresses(interleave_families(addresses), ctl) {
            self.publish(ctl);
        }
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if !self.resolved || self.list.is_empty() {
            ctl.publish(
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker::new(Status::unavailable(error.to_string()))),
            );
        }
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        // The balancer tells a policy of its own subchannels only.
        let told = ctl.notices_enabled();
        let before = self.list.ready_subchannel();
        let changed = self.list.subchannel_update(subchannel, update, ctl);
        let after = self.list.ready_subchannel();
        if let Some(event) = told
            .then(|| notices::event(subchannel, update.state, before, after))
            .flatten()
        {
            notices::tell(ctl, subchannel, event);
        }
        if changed {
            self.publish(ctl);
        }
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        if self.list.exit_idle(ctl) {
            self.publish(ctl);
        }
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        if self.list.on_timer(token, ctl) {
            self.publish(ctl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> Address {
        Address::Socket(([10, 0, 0, last], 80).into())
    }

    fn v6(last: u16) -> Address {
        Address::Socket((std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last), 80).into())
    }

    #[test]
    fn addresses_interleave_by_family_starting_with_the_first() {
        let got = interleave_families(vec![v6(1), v6(2), v6(3), v4(1), v4(2)]);
        assert_eq!(got, vec![v6(1), v4(1), v6(2), v4(2), v6(3)]);
        let same = vec![v4(1), v4(2)];
        assert_eq!(interleave_families(same.clone()), same);
    }

    #[test]
    fn duplicate_addresses_are_dropped() {
        assert_eq!(dedup(&[v4(1), v4(2), v4(1)]), Some(vec![v4(1), v4(2)]));
        assert_eq!(dedup(&[v4(1), v4(1)]), Some(vec![v4(1)]));
        assert_eq!(dedup(&[v4(1), v4(2), v4(3)]), None, "nothing repeated");
        assert_eq!(dedup(&[v4(1), v4(2)]), None);
        assert_eq!(dedup(&[v4(1)]), None);
    }

    #[test]
    fn params_set_shuffle_and_reject_unknown_keys() {
        let config = PickFirstConfig::default();
        let built = config
            .with_params(&[("shuffle_address_list".into(), "true".into())])
            .unwrap();
        assert!(format!("{built:?}").contains("shuffle_address_list: true"));
        let err = config
            .with_params(&[("bogus".into(), "1".into())])
            .unwrap_err();
        assert_eq!(
            err,
            PolicyParamError::unknown_parameter(
                "pick_first",
                "bogus",
                "shuffle_address_list, happy_eyeballs_delay_ms"
            )
        );
    }
}
