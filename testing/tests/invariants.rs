//! What the harness's invariant checks tell apart: a policy whose picker contradicts its state,
//! and one that keeps a READY subchannel out of use on purpose.

mod policies;

use croupier::{ConnectivityState, Pick};
use croupier_testing::{addr, update, Harness};
use policies::{Fault, Misbehaving};

#[test]
#[should_panic(expected = "the channel is CONNECTING but its picker hands out READY")]
fn a_picker_handing_out_subchannels_of_a_channel_not_ready_is_caught() {
    let mut h = Harness::new(Misbehaving::config(Fault::ReadyButConnecting), 1);
    h.resolve(update(&[1]));
    h.connected(&addr(1));
}

#[test]
fn a_policy_keeping_a_ready_subchannel_out_of_use_is_not_a_violation() {
    let mut h = Harness::new(Misbehaving::config(Fault::HidesReady), 1);
    h.resolve(update(&[1]));
    h.connected(&addr(1));
    let ready: Vec<_> = h.lb.subchannel_states().collect();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].1, ConnectivityState::Ready);
    assert_eq!(h.state(), ConnectivityState::TransientFailure);
    assert!(matches!(h.pick(), Pick::Fail(_)), "{:?}", h.pick());
}

#[test]
#[should_panic(expected = "shut down twice")]
fn an_action_naming_a_removed_subchannel_is_caught() {
    let mut h = Harness::new(croupier::PolicyConfig::round_robin(), 1);
    h.resolve(update(&[1]));
    let id = *h.attempts.keys().next().expect("an attempt");
    // As if the adapter had already carried out this subchannel's removal.
    h.shut.insert(id);
    h.resolve(update(&[2]));
}
