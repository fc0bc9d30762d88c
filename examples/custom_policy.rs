//! A load-balancing policy of your own, written outside croupier as a `Spread` over its public
//! `EndpointPolicy`, and plugged into a tokio channel.
//!
//! ```text
//! cargo run --example custom_policy
//! ```
//!
//! The policy, `zone_affinity`, prefers endpoints whose `zone` label matches the client's own
//! zone and round-robins over them; when none of them is READY it round-robins over all.
//! `EndpointPolicy` does the rest: it connects every endpoint (trying its addresses in turn,
//! backing off and retrying), knows an endpoint across resolver updates, counts states, fails
//! calls with the endpoints' errors when none connects, and asks the spread for a picker over
//! the READY endpoints whenever they change. Three echo servers run on 127.0.0.1 (two in zone
//! `a`, one in zone `b`); a client in zone `a` makes ten calls (they alternate between the two
//! zone-`a` servers); then zone `a` goes down and the next calls fall back to zone `b`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use croupier::policy::endpoints::{EndpointKey, EndpointPolicy, ReadyEndpoints, Spread};
use croupier::{
    Address, ConnectivityState, Controller, Endpoint, Picker, Policy, PolicyBuilder, PolicyConfig,
    RoundRobinPicker, SubchannelId,
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
        Box::new(EndpointPolicy::new(self.clone()))
    }
}

impl ZoneAffinity {
    /// Whether `endpoint` is in our zone.
    fn is_local(&self, endpoint: &Endpoint) -> bool {
        endpoint.attributes().label("zone") == Some(self.zone.as_str())
    }
}

impl Spread for ZoneAffinity {
    /// Kept beside each endpoint: whether it is in our zone.
    type Endpoint = bool;

    fn add_endpoint(&mut self, _: EndpointKey, endpoint: &Endpoint) -> bool {
        self.is_local(endpoint)
    }

    fn update_endpoint(&mut self, _: EndpointKey, local: &mut bool, endpoint: &Endpoint) -> bool {
        let was = std::mem::replace(local, self.is_local(endpoint));
        was != *local // a READY endpoint that changed zone changes the picker
    }

    /// Round robin over the READY local endpoints, or else over every READY endpoint.
    fn picker(
        &mut self,
        ready: &ReadyEndpoints<'_, bool>,
        ctl: &mut dyn Controller,
    ) -> Arc<dyn Picker> {
        let local: Vec<SubchannelId> = ready
            .iter()
            .filter(|endpoint| *endpoint.kept)
            .map(|endpoint| endpoint.subchannel)
            .collect();
        let chosen = if local.is_empty() {
            ready.subchannels().collect()
        } else {
            local
        };
        let start = ctl.rng().index(chosen.len());
        Arc::new(RoundRobinPicker::new(chosen, start))
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
