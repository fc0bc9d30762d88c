//! The scenarios, one async function each. Every one fails (panics) when its rule is broken.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use croupier::{
    Address, BackoffConfig, ConnectivityState, Controller, Pick, Picker, Policy, PolicyBuilder,
    ResolverUpdate, SubchannelId, SubchannelUpdate,
};
use croupier_channel::{BuildError, PickOptions};

use crate::*;

/// round_robin over three servers spreads 300 calls evenly (each within 100 +- 5).
pub async fn round_robin_spreads_300_calls_evenly_over_three_servers<A: Adapter>() {
    let servers = [server().await, server().await, server().await];
    let channel = round_robin::<A>(&ipv4_target(&[&servers[0], &servers[1], &servers[2]]))
        .build()
        .unwrap();
    eventually::<A>("three connections", || {
        servers.iter().all(|s| s.stats().accepted() == 1)
    })
    .await;
    for server in &servers {
        let address = server.address();
        bounded::<A, _>("READY subchannels", async {
            while !ready_to::<A>(&channel, address).await {
                A::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
    let counts = spread::<A>(&channel, 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (reply, count) in &counts {
        assert!((95..=105).contains(count), "{reply}: {count} of 300");
    }
}

/// pick_first sticks to the first address, and fails over when that server stops.
pub async fn pick_first_sticks_to_the_first_server_and_fails_over_when_it_stops<A: Adapter>() {
    let first = server_to_stop().await;
    let second = server().await;
    let channel = A::builder(&ipv4_target(&[&first, &second]))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    for _ in 0..10 {
        let reply = bounded::<A, _>("a call", call::<A>(&channel, quick())).await;
        assert_eq!(reply.unwrap(), from(&first));
    }
    assert_eq!(
        second.stats().accepted(),
        0,
        "pick_first connects to one address only"
    );
    first.stop();
    bounded::<A, _>(
        "leaving READY",
        channel.state_changed(ConnectivityState::Ready),
    )
    .await;
    for _ in 0..5 {
        let reply = bounded::<A, _>("a call", call::<A>(&channel, quick())).await;
        assert_eq!(reply.unwrap(), from(&second));
    }
}

/// A server stopped under load: only calls in flight on it may fail; once its connection closed,
/// no new call goes to it; nothing hangs.
pub async fn a_server_stopped_under_load_gets_no_new_calls_and_nothing_hangs<A: Adapter>() {
    let servers = [server_to_stop().await, server().await, server().await];
    let channel = round_robin::<A>(&ipv4_target(&[&servers[0], &servers[1], &servers[2]]))
        .backoff(BackoffConfig::default().initial_delay(Duration::from_secs(30)))
        .build()
        .unwrap();
    eventually::<A>("three connections", || {
        servers.iter().all(|s| s.stats().accepted() == 1)
    })
    .await;
    let mut workers = Vec::new();
    for _ in 0..8 {
        let channel = channel.clone();
        workers.push(A::spawn(Box::pin(async move {
            let mut results = Vec::new();
            for _ in 0..50 {
                results.push(call::<A>(&channel, quick()).await);
            }
            results
        })));
    }
    servers[0].stop();
    let (mut failed, mut total) = (0, 0);
    for worker in workers {
        for result in bounded::<A, _>("a worker", worker).await {
            total += 1;
            failed += usize::from(result.is_err());
        }
    }
    assert_eq!(total, 400);
    assert!(
        failed <= 8,
        "only calls in flight on the stopped server may fail: {failed}"
    );
    let stopped = servers[0].address();
    bounded::<A, _>("the stopped server to leave rotation", async {
        while ready_to::<A>(&channel, stopped).await {
            A::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let stopped = from(&servers[0]);
    for _ in 0..30 {
        let reply = bounded::<A, _>("a call", call::<A>(&channel, quick())).await;
        assert_ne!(reply.unwrap(), stopped);
    }
}

/// A stopped server restarted on the same port gets traffic again, on the backoff schedule.
pub async fn a_restarted_server_gets_traffic_again_after_backoff<A: Adapter>() {
    let stable = server().await;
    let flaky = server().await;
    let flaky_address = flaky.address();
    let channel = round_robin::<A>(&ipv4_target(&[&stable, &flaky]))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    eventually::<A>("both connected", || {
        stable.stats().accepted() == 1 && flaky.stats().accepted() == 1
    })
    .await;
    drop(flaky);
    let restarted = restart::<A>(flaky_address).await;
    // Backoff is at most 200 ms here: the channel reconnects on its own schedule.
    eventually::<A>("a reconnection", || restarted.stats().accepted() >= 1).await;
    bounded::<A, _>("READY again", async {
        while !ready_to::<A>(&channel, flaky_address).await {
            A::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let counts = spread::<A>(&channel, 20).await;
    assert_eq!(counts.get(&from(&restarted)), Some(&10), "{counts:?}");
}

/// With no server up, a plain call fails fast with an error naming the address.
pub async fn with_no_server_up_a_call_fails_fast_naming_the_addresses<A: Adapter>() {
    let address = dead_address().await;
    let channel = A::builder(&format!("ipv4:{address}"))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    reach::<A>(&channel, ConnectivityState::TransientFailure).await;
    let started = Instant::now();
    let error = call::<A>(&channel, PickOptions::new()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast");
    assert!(error.contains(&address.to_string()), "{error}");
    assert!(error.contains("UNAVAILABLE"), "{error}");
}

/// A wait-for-ready call waits through TRANSIENT_FAILURE and completes once a server starts.
pub async fn a_wait_for_ready_call_completes_once_a_server_starts<A: Adapter>() {
    let address = dead_address().await;
    let channel = A::builder(&format!("ipv4:{address}"))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let waiting = {
        let channel = channel.clone();
        A::spawn(Box::pin(async move {
            let options = PickOptions::new().wait_for_ready(true).timeout(PATIENCE);
            call::<A>(&channel, options).await
        }))
    };
    reach::<A>(&channel, ConnectivityState::TransientFailure).await;
    let server = restart::<A>(address).await;
    let reply = bounded::<A, _>("the waiting call", waiting).await;
    assert_eq!(reply.unwrap(), from(&server));
}

/// A call with a deadline fails at the deadline, quoting the last failure.
pub async fn a_call_with_a_deadline_fails_at_the_deadline_quoting_the_last_failure<A: Adapter>() {
    let address = dead_address().await;
    let channel = A::builder(&format!("ipv4:{address}")).build().unwrap();
    let started = Instant::now();
    let options = PickOptions::new()
        .wait_for_ready(true)
        .timeout(Duration::from_millis(300));
    let error = bounded::<A, _>("the call", call::<A>(&channel, options))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(error.contains("DEADLINE_EXCEEDED"), "{error}");
    assert!(
        error.contains(&address.to_string()),
        "quotes the failure: {error}"
    );
}

/// A custom scheme resolves through a registered resolver, and an updated list moves traffic.
pub async fn a_custom_scheme_resolves_and_an_updated_list_moves_traffic<A: Adapter>() {
    let old = server().await;
    let new = server().await;
    let resolver = Controlled::default();
    resolver.set(endpoints(&[&old]));
    let channel = round_robin::<A>("example:///lb.example.grpc.io")
        .resolver("example", resolver.clone())
        .build()
        .unwrap();
    let reply = bounded::<A, _>("a call", call::<A>(&channel, quick())).await;
    assert_eq!(reply.unwrap(), from(&old));
    resolver.set(endpoints(&[&new]));
    eventually::<A>("the old connection to close", || old.stats().open() == 0).await;
    for _ in 0..5 {
        let reply = bounded::<A, _>("a call", call::<A>(&channel, quick())).await;
        assert_eq!(reply.unwrap(), from(&new));
    }
}

/// `dns:///localhost:PORT` resolves (and pick_first moves past a `::1` where nothing listens).
pub async fn dns_resolves_localhost<A: Adapter>() {
    let server = server().await;
    let channel = A::builder(&format!("dns:///localhost:{}", server.port()))
        .build()
        .unwrap();
    let reply = bounded::<A, _>("a call", call::<A>(&channel, quick())).await;
    assert_eq!(reply.unwrap(), from(&server));
}

/// A target without a scheme is a dns target, with the builder's default port.
pub async fn a_target_without_scheme_defaults_to_dns_with_the_default_port<A: Adapter>() {
    let server = server().await;
    let channel = A::builder("127.0.0.1")
        .default_port(server.port())
        .build()
        .unwrap();
    assert_eq!(channel.target().scheme(), "dns");
    let reply = bounded::<A, _>("a call", call::<A>(&channel, quick())).await;
    assert_eq!(reply.unwrap(), from(&server));
}

/// Unknown schemes and malformed targets are errors when the channel is built.
pub async fn unknown_schemes_and_malformed_targets_are_errors_at_build_time<A: Adapter>() {
    let error = A::builder("nosuch:///x").build().unwrap_err();
    assert!(matches!(error, BuildError::Target(_)));
    assert_build_error(Err::<(), _>(error), "nosuch");
    assert_build_error(A::builder("ipv4:1.2.3:80").build(), "1.2.3");
    assert_build_error(A::builder("").build(), "empty");
}

/// A resolver that reports an empty list fails calls with an error that says so.
pub async fn a_resolver_that_reports_no_endpoints_fails_calls_saying_so<A: Adapter>() {
    let resolver = Controlled::default();
    resolver.set(ResolverUpdate::new([]));
    let channel = A::builder("example:///empty")
        .resolver("example", resolver)
        .build()
        .unwrap();
    reach::<A>(&channel, ConnectivityState::TransientFailure).await;
    let error = bounded::<A, _>("a call", call::<A>(&channel, quick()))
        .await
        .unwrap_err();
    assert!(!error.contains("DEADLINE"), "fails at once: {error}");
    assert!(
        error.contains("no addresses") || error.contains("no endpoints"),
        "{error}"
    );
}

/// Dropping the last handle closes every connection: the servers see them close.
pub async fn dropping_the_channel_closes_every_connection<A: Adapter>() {
    let servers = [server().await, server().await];
    let channel = round_robin::<A>(&ipv4_target(&[&servers[0], &servers[1]]))
        .build()
        .unwrap();
    bounded::<A, _>("a call", call::<A>(&channel, quick()))
        .await
        .unwrap();
    eventually::<A>("both connected", || {
        servers.iter().all(|s| s.stats().open() == 1)
    })
    .await;
    let clone = channel.clone();
    drop(channel);
    assert!(
        servers.iter().all(|s| s.stats().open() == 1),
        "a clone keeps it open"
    );
    drop(clone);
    eventually::<A>("every connection to close", || {
        servers.iter().all(|s| s.stats().open() == 0)
    })
    .await;
}

/// The subchannel snapshot names each address with its state and last error.
pub async fn subchannels_report_address_state_and_last_error<A: Adapter>() {
    let up = server().await;
    let down = dead_address().await;
    let channel = round_robin::<A>(&format!("ipv4:{},{down}", up.address()))
        .backoff(BackoffConfig::default().initial_delay(Duration::from_secs(30)))
        .build()
        .unwrap();
    let snapshot = bounded::<A, _>("a snapshot", async {
        loop {
            let all = channel.subchannels().await;
            let failed = all
                .iter()
                .any(|s| s.state == ConnectivityState::TransientFailure);
            let ready = all.iter().any(|s| s.state == ConnectivityState::Ready);
            if failed && ready {
                return all;
            }
            A::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let failed = snapshot
        .iter()
        .find(|s| s.state == ConnectivityState::TransientFailure)
        .unwrap();
    assert_eq!(failed.address, Address::Socket(down));
    assert!(failed.last_error.is_some());
}

/// A connection the server closes while no call uses it is noticed at once: the channel leaves
/// READY without any call being made.
pub async fn a_connection_closed_by_the_server_while_idle_is_noticed_without_a_call<A: Adapter>() {
    let only = server().await;
    let channel = A::builder(&format!("ipv4:{}", only.address()))
        .backoff(BackoffConfig::default().initial_delay(Duration::from_secs(30)))
        .build()
        .unwrap();
    bounded::<A, _>("a call", call::<A>(&channel, quick()))
        .await
        .unwrap();
    assert_eq!(channel.state(), ConnectivityState::Ready);
    only.stop();
    let next = bounded::<A, _>(
        "leaving READY",
        channel.state_changed(ConnectivityState::Ready),
    )
    .await;
    assert_eq!(
        next,
        ConnectivityState::Idle,
        "pick_first goes IDLE when its connection is lost"
    );
}

/// Load reports passed with call outcomes (`CallGuard::finish_with_load`) reach
/// weighted_round_robin: a server reporting four times the capacity gets about four calls in
/// five once the weights are in.
pub async fn load_reports_from_calls_weigh_endpoints_under_weighted_round_robin<A: Adapter>() {
    let (light, heavy) = (server().await, server().await);
    let policy = croupier::policy::WeightedRoundRobinConfig::default()
        .blackout_period(Duration::ZERO)
        .weight_update_period(Duration::from_millis(100));
    let channel = A::builder(&ipv4_target(&[&light, &heavy]))
        .policy(PolicyConfig::new(policy))
        .build()
        .unwrap();
    // 100 calls/s each; the light one at 25% utilization (weight 400), the heavy one at 100%
    // (weight 100).
    let report = |reply: &str| {
        let utilization = if reply == from(&light) { 0.25 } else { 1.0 };
        croupier::LoadReport::new(100.0, utilization)
    };
    let start = Instant::now();
    loop {
        let mut to_light = 0;
        for _ in 0..100 {
            let picked = bounded::<A, _>("a pick", channel.pick_with(&PickRequest::new(), quick()))
                .await
                .unwrap();
            let reply = bounded::<A, _>("a call", A::echo(&picked.connection, "hello"))
                .await
                .unwrap();
            if reply == from(&light) {
                to_light += 1;
            }
            picked.call.finish_with_load(Code::Ok, report(&reply));
        }
        if (70..=90).contains(&to_light) {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the light server still got {to_light} of 100 calls"
        );
        A::sleep(Duration::from_millis(50)).await;
    }
}

/// A call that queues always reaches the policy's `exit_idle`, even when another queued call's
/// `exit_idle` changed nothing just before: the second call's server connects and the call
/// completes while the first still waits (as with ring_hash, where one call waits for its
/// endpoint's connection while another's hash lands on an IDLE endpoint).
pub async fn a_queued_call_reaches_exit_idle_while_another_call_waits<A: Adapter>() {
    let server = server().await;
    let exits = Arc::new(AtomicUsize::new(0));
    let policy = OnRequest {
        exits: Arc::clone(&exits),
    };
    let channel = A::builder(&ipv4_target(&[&server]))
        .policy(PolicyConfig::new(policy))
        .build()
        .unwrap();
    reach::<A>(&channel, ConnectivityState::Idle).await;
    // The first call waits for something that never comes; its exit_idle does nothing.
    let waits = PickRequest::new().with_hash(OnRequest::WAITS);
    let mut first = Box::pin(channel.pick_with(&waits, PickOptions::new().timeout(PATIENCE)));
    assert!(future::poll_once(&mut first).await.is_none());
    eventually::<A>("the first call's exit_idle", || {
        exits.load(Ordering::SeqCst) >= 1
    })
    .await;
    // The second call asks for a connection: it must be heard, and complete.
    let connects = PickRequest::new().with_hash(OnRequest::CONNECTS);
    let picked = bounded::<A, _>("the second call", channel.pick_with(&connects, quick()))
        .await
        .expect("the second call gets its connection");
    let reply = bounded::<A, _>("an echo", A::echo(&picked.connection, "hello")).await;
    assert_eq!(reply.unwrap(), from(&server));
    picked.call.success();
    // The first call still waits, as its picker says.
    assert!(future::poll_once(&mut first).await.is_none());
}

/// A policy that connects its one address only when a pick asks for it: picks with hash
/// [`OnRequest::WAITS`] queue without asking anything (like a call waiting for another endpoint's
/// connection); picks with [`OnRequest::CONNECTS`] flag the address and queue until it is READY.
#[derive(Debug)]
struct OnRequest {
    exits: Arc<AtomicUsize>,
}

impl OnRequest {
    const WAITS: u64 = 1;
    const CONNECTS: u64 = 2;
}

impl PolicyBuilder for OnRequest {
    fn name(&self) -> &str {
        "on_request"
    }

    fn build(&self) -> Box<dyn Policy> {
        Box::new(OnRequestPolicy {
            exits: Arc::clone(&self.exits),
            address: None,
            wanted: Arc::new(AtomicBool::new(false)),
            subchannel: None,
        })
    }
}

#[derive(Debug)]
struct OnRequestPolicy {
    exits: Arc<AtomicUsize>,
    address: Option<Address>,
    wanted: Arc<AtomicBool>,
    subchannel: Option<SubchannelId>,
}

impl OnRequestPolicy {
    fn publish(&self, ready: Option<SubchannelId>, ctl: &mut dyn Controller) {
        let state = match ready {
            Some(_) => ConnectivityState::Ready,
            None => ConnectivityState::Idle,
        };
        let picker = OnRequestPicker {
            wanted: Arc::clone(&self.wanted),
            ready,
        };
        ctl.publish(state, Arc::new(picker));
    }
}

impl Policy for OnRequestPolicy {
    fn resolver_update(&mut self, endpoints: &[Endpoint], ctl: &mut dyn Controller) {
        self.address = endpoints.first().map(|e| e.addresses()[0].clone());
        self.publish(None, ctl);
    }

    fn resolver_error(&mut self, _: &croupier::ResolverError, _: &mut dyn Controller) {}

    fn subchannel_update(
        &mut self,
        subchannel: SubchannelId,
        update: &SubchannelUpdate,
        ctl: &mut dyn Controller,
    ) {
        if update.state == ConnectivityState::Ready {
            self.publish(Some(subchannel), ctl);
        }
    }

    fn exit_idle(&mut self, ctl: &mut dyn Controller) {
        self.exits.fetch_add(1, Ordering::SeqCst);
        if !self.wanted.swap(false, Ordering::Relaxed) || self.subchannel.is_some() {
            return;
        }
        if let Some(address) = &self.address {
            let subchannel = ctl.create_subchannel(address);
            ctl.connect(subchannel);
            self.subchannel = Some(subchannel);
        }
    }
}

#[derive(Debug)]
struct OnRequestPicker {
    wanted: Arc<AtomicBool>,
    ready: Option<SubchannelId>,
}

impl Picker for OnRequestPicker {
    fn pick(&self, request: &PickRequest<'_>) -> Pick {
        match (request.hash(), self.ready) {
            (Some(OnRequest::CONNECTS), Some(subchannel)) => Pick::Ready(subchannel),
            (Some(OnRequest::CONNECTS), None) => {
                self.wanted.store(true, Ordering::Relaxed);
                Pick::Queue
            }
            _ => Pick::Queue,
        }
    }
}
