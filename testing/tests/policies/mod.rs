//! Small policies that misbehave on purpose, written against croupier's public `Policy` trait as
//! any user's policy is, to show what the harness catches.

#![allow(dead_code, unreachable_pub)] // each test file uses some of them

use std::sync::Arc;
use std::time::Duration;

use croupier::{
    Address, ConnectivityState, Controller, Endpoint, FailPicker, Policy, PolicyBuilder,
    PolicyConfig, QueuePicker, ResolverError, SinglePicker, Status, SubchannelId, SubchannelUpdate,
    TimerToken,
};

/// What a [`Misbehaving`] policy does wrong.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Each time its subchannel is READY it replaces it with a new one to the same address, which
    /// connects again: it never settles.
    PingPong,
    /// 5 ms after its first update, and from then on at the instant its timer fires, it sets a
    /// timer: from then on one is always due.
    RestlessTimer,
    /// Its subchannel READY, it says CONNECTING but hands the subchannel out.
    ReadyButConnecting,
    /// Its subchannel READY, it keeps it out of use: TRANSIENT_FAILURE, and calls fail.
    HidesReady,
}

/// One subchannel to the first address of the first endpoint, handled with a [`Fault`].
#[derive(Debug)]
pub struct Misbehaving {
    fault: Fault,
    address: Option<Address>,
}

impl Misbehaving {
    /// The policy as a balancer takes it.
    pub fn config(fault: Fault) -> PolicyConfig {
        PolicyConfig::new(Builder(fault))
    }

    fn start(&mut self, ctl: &mut dyn Controller) {
        if let Some(address) = &self.address {
            let subchannel = ctl.create_subchannel(address);
            ctl.connect(subchannel);
        }
    }
}

#[derive(Debug)]
struct Builder(Fault);

impl PolicyBuilder for Builder {
    fn name(&self) -> &str {
        "misbehaving"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(Misbehaving {
            fault: self.0,
            address: None,
        })
    }
}

impl Policy for Misbehaving {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        if self.address.is_none() {
            self.address = endpoints
                .first()
                .and_then(|e| e.addresses().first().cloned());
            self.start(ctl);
        }
        ctl.publish(ConnectivityState::Connecting, Arc::new(QueuePicker));
        if let Fault::RestlessTimer = self.fault {
            ctl.set_timer(ctl.now() + Duration::from_millis(5), TimerToken::new(0));
        }
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        let status = Status::unavailable(error.to_string());
        ctl.publish(
            ConnectivityState::TransientFailure,
            Arc::new(FailPicker::new(status)),
        );
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        if update.state != ConnectivityState::Ready {
            return;
        }
        match self.fault {
            Fault::PingPong => {
                ctl.remove_subchannel(subchannel);
                self.start(ctl);
            }
            Fault::RestlessTimer => {}
            Fault::ReadyButConnecting => ctl.publish(
                ConnectivityState::Connecting,
                Arc::new(SinglePicker::new(subchannel)),
            ),
            Fault::HidesReady => ctl.publish(
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker::new(Status::unavailable("kept out of use"))),
            ),
        }
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        ctl.set_timer(ctl.now(), token);
    }
}
