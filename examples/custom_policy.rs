//! A load-balancing policy of your own, written outside croupier against its public `Policy`
//! trait, and plugged into a tokio channel.
//!
//! ```text
//! cargo run --example custom_policy
//! ```
//!
//! The policy, `zone_affinity`, prefers endpoints whose `zone` label matches the client's own
//! zone and round-robins over them; when none of them is READY it round-robins over all. Three
//! echo servers run on 127.0.0.1 (two in zone `a`, one in zone `b`); a client in zone `a` makes
//! ten calls (they alternate between the two zone-`a` servers); then zone `a` goes down and the
//! next calls fall back to zone `b`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use croupier::policy::pick_first::{PickFirstList, DEFAULT_HAPPY_EYEBALLS_DELAY};
use croupier::policy::SlotController;
use croupier::{
    Address, ConnectivityState, Controller, Endpoint, FailPicker, Picker, Policy, PolicyBuilder,
    PolicyConfig, QueuePicker, ResolverError, RoundRobinPicker, Status, SubchannelId,
    SubchannelUpdate, TimerToken,
};
use croupier_echo::{tokio_io::echo, EchoServer};
use croupier_tokio::{Channel, PickOptions, SharedStream, StaticResolver};

/// The policy's settings; croupier asks this builder for a fresh policy whenever it needs one.
#[derive(Clone, Debug)]
struct ZoneAffinity {
    zone: String,
}

impl PolicyBuilder for ZoneAffinity {
    fn name(&self) -> &str {
        "zone_affinity"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(ZoneAffinityPolicy {
            zone: self.zone.clone(),
            backends: BTreeMap::new(),
            next_tag: 0,
        })
    }
}

/// One endpoint: whether it is in our zone, and the list that keeps it connected (croupier's
/// pick_first engine: it tries the endpoint's addresses in turn, backs off, and retries).
#[derive(Debug)]
struct Backend {
    addresses: Vec<Address>,
    local: bool,
    list: PickFirstList,
}

#[derive(Debug)]
struct ZoneAffinityPolicy {
    zone: String,
    /// Backends by slot: each list works through a `SlotController` of it, so timers find it.
    backends: BTreeMap<u32, Backend>,
    next_tag: u32,
}

impl ZoneAffinityPolicy {
    /// Publishes the state and a picker over the READY local backends, or else over every READY
    /// backend.
    fn publish(&self, ctl: &mut dyn Controller) {
        let ready = |local_only: bool| -> Vec<SubchannelId> {
            self.backends
                .values()
                .filter(|b| b.local || !local_only)
                .filter(|b| b.list.state() == ConnectivityState::Ready)
                .filter_map(|b| b.list.ready_subchannel())
                .collect()
        };
        let mut chosen = ready(true);
        if chosen.is_empty() {
            chosen = ready(false);
        }
        let any = |state| self.backends.values().any(|b| b.list.state() == state);
        let (state, picker): (ConnectivityState, Arc<dyn Picker>) = if !chosen.is_empty() {
            let start = ctl.rng().index(chosen.len());
            let picker = RoundRobinPicker::new(chosen, start);
            (ConnectivityState::Ready, Arc::new(picker))
        } else if any(ConnectivityState::Connecting) {
            (ConnectivityState::Connecting, Arc::new(QueuePicker))
        } else {
            let errors: Vec<String> = self
                .backends
                .values()
                .map(|b| b.list.failure_message())
                .collect();
            let status = Status::unavailable(if errors.is_empty() {
                "zone_affinity: the resolver returned no endpoints".to_owned()
            } else {
                format!("zone_affinity: {}", errors.join("; "))
            });
            (
                ConnectivityState::TransientFailure,
                Arc::new(FailPicker::new(status)),
            )
        };
        ctl.publish(state, picker);
    }
}

impl Policy for ZoneAffinityPolicy {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        // Drop the backends that are gone; keep (and re-label) the others; add the new ones.
        let listed = |b: &Backend| endpoints.iter().any(|e| e.addresses() == b.addresses);
        let gone: Vec<u32> = self
            .backends
            .iter()
            .filter(|(_, b)| !listed(b))
            .map(|(tag, _)| *tag)
            .collect();
        for tag in gone {
            if let Some(mut backend) = self.backends.remove(&tag) {
                backend.list.shutdown(&mut SlotController::new(ctl, tag));
            }
        }
        for endpoint in endpoints {
            let local = endpoint.attributes().label("zone") == Some(self.zone.as_str());
            let known = self
                .backends
                .values_mut()
                .find(|b| b.addresses == endpoint.addresses());
            if let Some(backend) = known {
                backend.local = local;
                continue;
            }
            let tag = self.next_tag;
            self.next_tag += 1;
            let mut list = PickFirstList::new(DEFAULT_HAPPY_EYEBALLS_DELAY);
            let slot = &mut SlotController::new(ctl, tag);
            list.set_addresses(endpoint.addresses().to_vec(), slot); // starts connecting
            let addresses = endpoint.addresses().to_vec();
            let backend = Backend {
                addresses,
                local,
                list,
            };
            self.backends.insert(tag, backend);
        }
        self.publish(ctl);
    }

    fn resolver_error(&mut self, error: &ResolverError, ctl: &mut dyn Controller) {
        if self.backends.is_empty() {
            let picker = FailPicker::new(Status::unavailable(error.to_string()));
            ctl.publish(ConnectivityState::TransientFailure, Arc::new(picker));
        }
    }

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        // A list ignores subchannels that are not its own, so offering the update to each is
        // enough with a handful of backends.
        for (tag, backend) in &mut self.backends {
            let slot = &mut SlotController::new(ctl, *tag);
            if backend.list.subchannel_update(subchannel, update, slot)
                && backend.list.state() == ConnectivityState::Idle
            {
                backend.list.exit_idle(slot); // a lost connection: reconnect at once
            }
        }
        self.publish(ctl);
    }

    fn wants_call_outcomes(&self) -> bool {
        false // it never looks at how calls ended, so the channel need not report them
    }

    fn timer(&mut self, token: TimerToken, ctl: &mut dyn Controller) {
        let Some((tag, token)) = token.split() else {
            return;
        };
        if let Some(backend) = self.backends.get_mut(&tag) {
            if backend
                .list
                .on_timer(token, &mut SlotController::new(ctl, tag))
            {
                self.publish(ctl);
            }
        }
    }
}

async fn call(channel: &Channel<SharedStream>, message: &str) -> Result<String, String> {
    let options = PickOptions::new().timeout(Duration::from_secs(5));
    let picked = channel
        .pick_with(&croupier::PickRequest::new(), options)
        .await
        .map_err(|status| format!("could not pick a backend: {status}"))?;
    let reply = {
        let mut stream = picked.connection.lock().await;
        echo(&mut *stream, message).await
    };
    match reply {
        Ok(reply) => {
            picked.call.success();
            Ok(reply)
        }
        Err(error) => {
            picked.call.finish(croupier::Code::Unavailable);
            Err(format!("the call failed: {error}"))
        }
    }
}

/// Waits (up to 5 s) until the addresses of the READY subchannels satisfy `wanted`.
async fn wait_for(channel: &Channel<SharedStream>, wanted: impl Fn(&[Address]) -> bool) {
    for _ in 0..500 {
        let ready: Vec<Address> = channel
            .subchannels()
            .await
            .into_iter()
            .filter(|s| s.state == ConnectivityState::Ready)
            .map(|s| s.address)
            .collect();
        if wanted(&ready) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn run() -> Result<(), String> {
    let zones = ["a", "b", "a"];
    let mut servers = Vec::new();
    for _ in zones {
        let server = EchoServer::start(0)
            .await
            .map_err(|error| format!("cannot start an echo server on 127.0.0.1: {error}"))?;
        servers.push(server);
    }
    let endpoints: Vec<Endpoint> = servers
        .iter()
        .zip(zones)
        .map(|(server, zone)| Endpoint::new(server.address()).label("zone", zone))
        .collect();
    for endpoint in &endpoints {
        let zone = endpoint.attributes().label("zone").unwrap_or("?");
        println!("server {endpoint} is in zone {zone}");
    }

    let channel = croupier_tokio::builder("static:///echo")
        .resolver("static", StaticResolver::new(endpoints))
        .policy(PolicyConfig::new(ZoneAffinity {
            zone: "a".to_owned(),
        }))
        .build()
        .map_err(|error| error.to_string())?;
    // The policy connects to every backend; let all three connections finish so the output
    // shows the preference from the first call.
    wait_for(&channel, |ready| ready.len() == servers.len()).await;

    println!("--- the client is in zone a: ten calls ---");
    for i in 1..=10 {
        println!("call {i:2}: {}", call(&channel, "hello").await?);
    }

    println!("--- zone a goes down: calls fall back to zone b ---");
    let zone_a: Vec<Address> = [0, 2]
        .iter()
        .map(|&i| Address::from(servers[i].address()))
        .collect();
    servers[0].stop();
    servers[2].stop();
    wait_for(&channel, |ready| !ready.iter().any(|a| zone_a.contains(a))).await;
    for i in 1..=4 {
        println!("call {i:2}: {}", call(&channel, "hello").await?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
