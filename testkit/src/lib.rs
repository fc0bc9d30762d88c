//! Scenario tests written once and run against every runtime adapter.
//!
//! Each scenario is an async function generic over an [`Adapter`]: how to build a channel on that
//! runtime, make one echo call on a picked connection, spawn, and sleep. Every scenario uses real
//! echo servers on 127.0.0.1 and bounds every wait with a timeout, so a hang fails the test.
//! An adapter's test file instantiates them all with [`scenario_tests!`].

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use croupier::{
    Address, BackoffConfig, Code, ConnectivityState, Endpoint, PickRequest, PolicyConfig,
    ResolverUpdate, Target,
};
use croupier_channel::{
    BoxFuture, BuildError, Channel, ChannelBuilder, Connector, PickOptions, Resolver,
    ResolverContext,
};
use croupier_echo::EchoServer;
use futures_lite::future;

mod recording;
mod scenarios;
pub use recording::{recording, Outcomes};
pub use scenarios::*;

/// What a scenario needs from a runtime adapter.
pub trait Adapter: 'static {
    /// The adapter's default connector.
    type Connector: Connector;

    /// A channel builder for `target` on this runtime, with the default connector.
    fn builder(target: &str) -> ChannelBuilder<Self::Connector>;

    /// One echo call on a picked connection.
    fn echo<'a>(connection: &'a Conn<Self>, message: &'a str) -> BoxFuture<'a, io::Result<String>>;

    /// Runs `future` as a task of its own; the returned future gives its output.
    fn spawn<T: Send + 'static>(future: BoxFuture<'static, T>) -> BoxFuture<'static, T>;

    /// Completes after `duration`.
    fn sleep(duration: Duration) -> BoxFuture<'static, ()>;
}

/// The connection type an adapter's channels hand out.
pub type Conn<A> = <<A as Adapter>::Connector as Connector>::Connection;

/// How long any single wait may take before the scenario fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `check` every 10 ms until it holds; panics after [`PATIENCE`].
pub async fn eventually<A: Adapter>(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        A::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `future`, panicking if it takes longer than [`PATIENCE`].
pub async fn bounded<A: Adapter, T>(what: &str, future: impl Future<Output = T>) -> T {
    let timeout = async {
        A::sleep(PATIENCE).await;
        None
    };
    match future::or(async { Some(future.await) }, timeout).await {
        Some(value) => value,
        None => panic!("{what} did not finish within {PATIENCE:?}"),
    }
}

/// One echo call through `channel`; the reply names the server.
pub async fn call<A: Adapter>(
    channel: &Channel<Conn<A>>,
    options: PickOptions,
) -> Result<String, String> {
    let picked = channel
        .pick_with(&PickRequest::new(), options)
        .await
        .map_err(|status| status.to_string())?;
    match A::echo(&picked.connection, "hello").await {
        Ok(reply) => {
            picked.call.success();
            Ok(reply)
        }
        Err(error) => {
            picked.call.finish(Code::Unavailable);
            Err(error.to_string())
        }
    }
}

/// Pick options for an ordinary call: wait up to 5 s.
pub fn quick() -> PickOptions {
    PickOptions::new().timeout(Duration::from_secs(5))
}

/// Backoff short enough for tests: 50 ms, at most 200 ms.
pub fn fast_backoff() -> BackoffConfig {
    BackoffConfig::default()
        .initial_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(200))
        .min_connect_timeout(Duration::from_secs(2))
}

/// `ipv4:a,b,...` for these servers.
pub fn ipv4_target(servers: &[&EchoServer]) -> String {
    let list: Vec<String> = servers.iter().map(|s| s.address().to_string()).collect();
    format!("ipv4:{}", list.join(","))
}

/// The reply `server` gives to "hello".
pub fn from(server: &EchoServer) -> String {
    format!("hello (from {})", server.address())
}

/// Starts an echo server on any free loopback port.
pub async fn server() -> EchoServer {
    EchoServer::start(0).await.expect("a free loopback port")
}

/// Starts an echo server that a test will stop, on a loopback address of its own (127.0.1.N, a
/// new N each time in this process): once it is stopped, no server that another test starts
/// meanwhile (on 127.0.0.1) can take its port and answer the calls the test expects to fail
/// or to go elsewhere.
pub async fn server_to_stop() -> EchoServer {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 250 + 1;
    let address = SocketAddr::from(([127, 0, 1, n], 0));
    EchoServer::start_on(address)
        .await
        .expect("a free port on a loopback address")
}

/// Starts a server on `address` again, retrying while the port is still held.
pub async fn restart<A: Adapter>(address: SocketAddr) -> EchoServer {
    bounded::<A, _>("rebinding", async {
        loop {
            match EchoServer::start_on(address).await {
                Ok(server) => return server,
                Err(_) => A::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
}

/// The address of a loopback port where nothing listens. It is on 127.0.0.2, where no test
/// server listens (they all take 127.0.0.1), so no server started meanwhile by another test can
/// take the port and answer.
pub async fn dead_address() -> SocketAddr {
    let placeholder = std::net::TcpListener::bind(("127.0.0.2", 0)).expect("a loopback port");
    placeholder.local_addr().expect("a bound address")
}

/// Waits until the channel is in `state`.
pub async fn reach<A: Adapter>(channel: &Channel<Conn<A>>, state: ConnectivityState) {
    bounded::<A, _>(state.as_str(), async {
        loop {
            // One read: a state read again for `state_changed` may already be the one awaited,
            // and would then wait for the change after it.
            let current = channel.state();
            if current == state {
                return;
            }
            channel.state_changed(current).await;
        }
    })
    .await;
}

/// Counts replies per server over `n` calls.
pub async fn spread<A: Adapter>(channel: &Channel<Conn<A>>, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let reply = bounded::<A, _>("a call", call::<A>(channel, quick()))
            .await
            .unwrap();
        *counts.entry(reply).or_insert(0) += 1;
    }
    counts
}

/// A resolver whose answers the scenario sets.
#[derive(Clone, Debug, Default)]
pub struct Controlled {
    contexts: Arc<Mutex<Vec<ResolverContext>>>,
    current: Arc<Mutex<Option<ResolverUpdate>>>,
}

impl Controlled {
    /// Reports `update` now and to channels built later.
    pub fn set(&self, update: ResolverUpdate) {
        *self.current.lock().unwrap() = Some(update.clone());
        for context in self.contexts.lock().unwrap().iter() {
            context.update(update.clone());
        }
    }
}

impl Resolver for Controlled {
    fn resolve(&self, _: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        if let Some(update) = self.current.lock().unwrap().clone() {
            context.update(update);
        }
        self.contexts.lock().unwrap().push(context);
        Box::pin(async {})
    }
}

/// An update naming these servers.
pub fn endpoints(servers: &[&EchoServer]) -> ResolverUpdate {
    ResolverUpdate::new(servers.iter().map(|s| Endpoint::new(s.address())))
}

/// Whether the channel has a READY subchannel to `address`.
pub async fn ready_to<A: Adapter>(channel: &Channel<Conn<A>>, address: SocketAddr) -> bool {
    channel
        .subchannels()
        .await
        .iter()
        .any(|s| s.address == Address::Socket(address) && s.state == ConnectivityState::Ready)
}

/// Builds with the round_robin policy.
pub fn round_robin<A: Adapter>(target: &str) -> ChannelBuilder<A::Connector> {
    A::builder(target).policy(PolicyConfig::round_robin())
}

/// Asserts a build error mentions `needle`.
pub fn assert_build_error(result: Result<impl Sized, BuildError>, needle: &str) {
    match result {
        Ok(_) => panic!("expected a build error mentioning {needle:?}"),
        Err(error) => assert!(error.to_string().contains(needle), "{error}"),
    }
}

/// Declares one test per scenario for an adapter: `scenario_tests!(MyAdapter, #[tokio::test]);`.
#[macro_export]
macro_rules! scenario_tests {
    ($adapter:ty, #[$test:meta]) => {
        $crate::scenario_tests!(@each $adapter, $test,
            round_robin_spreads_300_calls_evenly_over_three_servers,
            pick_first_sticks_to_the_first_server_and_fails_over_when_it_stops,
            a_server_stopped_under_load_gets_no_new_calls_and_nothing_hangs,
            a_restarted_server_gets_traffic_again_after_backoff,
            with_no_server_up_a_call_fails_fast_naming_the_addresses,
            a_wait_for_ready_call_completes_once_a_server_starts,
            a_call_with_a_deadline_fails_at_the_deadline_quoting_the_last_failure,
            a_custom_scheme_resolves_and_an_updated_list_moves_traffic,
            dns_resolves_localhost,
            a_target_without_scheme_defaults_to_dns_with_the_default_port,
            unknown_schemes_and_malformed_targets_are_errors_at_build_time,
            a_resolver_that_reports_no_endpoints_fails_calls_saying_so,
            dropping_the_channel_closes_every_connection,
            subchannels_report_address_state_and_last_error,
            a_connection_closed_by_the_server_while_idle_is_noticed_without_a_call,
            load_reports_from_calls_weigh_endpoints_under_weighted_round_robin,
            a_queued_call_reaches_exit_idle_while_another_call_waits
        );
    };
    (@each $adapter:ty, $test:meta, $($name:ident),* $(,)?) => {
        $(
            #[$test]
            async fn $name() {
                $crate::$name::<$adapter>().await;
            }
        )*
    };
}
