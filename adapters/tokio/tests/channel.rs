//! croupier-tokio on real sockets: echo servers on 127.0.0.1, bounded waits, no fixed sleeps.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use croupier::{
    BackoffConfig, Code, ConnectivityState, Endpoint, PickRequest, PolicyConfig, ResolverUpdate,
    Target,
};
use croupier_echo::{tokio_io::echo, EchoServer};
use croupier_tokio::{BuildError, Channel, PickOptions, ResolverContext, SharedStream};

const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `check` every 10 ms until it holds, failing the test after `PATIENCE`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bounds a whole step, so a hang fails the test instead of stalling it.
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {PATIENCE:?}"))
}

/// One echo call through the channel; the reply names the server.
async fn call(channel: &Channel<SharedStream>, options: PickOptions) -> Result<String, String> {
    let picked = channel
        .pick_with(&PickRequest::new(), options)
        .await
        .map_err(|status| status.to_string())?;
    let result = {
        let mut stream = picked.connection.lock().await;
        echo(&mut *stream, "hello").await
    };
    match result {
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

fn quick() -> PickOptions {
    PickOptions::new().timeout(Duration::from_secs(5))
}

fn ipv4_target(servers: &[&EchoServer]) -> String {
    let list: Vec<String> = servers.iter().map(|s| s.address().to_string()).collect();
    format!("ipv4:{}", list.join(","))
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig::default()
        .initial_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(200))
        .min_connect_timeout(Duration::from_secs(2))
}

fn from(server: &EchoServer) -> String {
    format!("hello (from {})", server.address())
}

#[tokio::test]
async fn round_robin_spreads_300_calls_evenly_over_three_servers() {
    let servers = [
        EchoServer::start(0).await.unwrap(),
        EchoServer::start(0).await.unwrap(),
        EchoServer::start(0).await.unwrap(),
    ];
    let channel = croupier_tokio::builder(ipv4_target(&[&servers[0], &servers[1], &servers[2]]))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    bounded(
        "READY",
        channel.state_changed(ConnectivityState::Connecting),
    )
    .await;
    // Wait until all three are connected, so the count is over three.
    eventually("three connections", || {
        servers.iter().all(|s| s.stats().accepted() == 1)
    })
    .await;
    let mut counts = BTreeMap::new();
    for _ in 0..300 {
        let reply = bounded("a call", call(&channel, quick())).await.unwrap();
        *counts.entry(reply).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (reply, count) in &counts {
        assert!((95..=105).contains(count), "{reply}: {count} of 300");
    }
}

#[tokio::test]
async fn pick_first_sticks_to_the_first_server_and_fails_over_when_it_stops() {
    let first = EchoServer::start(0).await.unwrap();
    let second = EchoServer::start(0).await.unwrap();
    let channel = croupier_tokio::builder(ipv4_target(&[&first, &second]))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            bounded("call", call(&channel, quick())).await.unwrap(),
            from(&first)
        );
    }
    assert_eq!(
        second.stats().accepted(),
        0,
        "pick_first connects to one address only"
    );
    first.stop();
    // The closed connection is noticed without a call; the channel goes IDLE.
    bounded(
        "leaving READY",
        channel.state_changed(ConnectivityState::Ready),
    )
    .await;
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(bounded("call", call(&channel, quick())).await);
    }
    assert!(
        replies
            .iter()
            .all(|r| r.as_deref() == Ok(from(&second).as_str())),
        "{replies:?}"
    );
}

#[tokio::test]
async fn a_server_stopped_under_load_gets_no_new_calls_and_nothing_hangs() {
    let servers = [
        EchoServer::start(0).await.unwrap(),
        EchoServer::start(0).await.unwrap(),
        EchoServer::start(0).await.unwrap(),
    ];
    let channel = croupier_tokio::builder(ipv4_target(&[&servers[0], &servers[1], &servers[2]]))
        .policy(PolicyConfig::round_robin())
        .backoff(BackoffConfig::default().initial_delay(Duration::from_secs(30)))
        .build()
        .unwrap();
    eventually("three connections", || {
        servers.iter().all(|s| s.stats().accepted() == 1)
    })
    .await;
    let mut workers = Vec::new();
    for _ in 0..8 {
        let channel = channel.clone();
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..50 {
                results.push(call(&channel, quick()).await);
            }
            results
        }));
    }
    servers[0].stop();
    let mut failed = 0;
    let mut total = 0;
    for worker in workers {
        for result in bounded("a worker", worker).await.unwrap() {
            total += 1;
            failed += usize::from(result.is_err());
        }
    }
    assert_eq!(total, 400);
    assert!(
        failed <= 8,
        "only calls in flight on the stopped server may fail: {failed}"
    );
    // Once its connection closed, every call lands on the other two.
    eventually("the stopped server's connection to close", || {
        servers[0].stats().open() == 0
    })
    .await;
    bounded("leaving the stopped server", async {
        while channel.subchannels().await.iter().any(|s| {
            s.address == croupier::Address::Socket(servers[0].address())
                && s.state == ConnectivityState::Ready
        }) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let stopped = from(&servers[0]);
    for _ in 0..30 {
        let reply = bounded("call", call(&channel, quick())).await.unwrap();
        assert_ne!(reply, stopped);
    }
}

#[tokio::test]
async fn a_restarted_server_gets_traffic_again_after_backoff() {
    let stable = EchoServer::start(0).await.unwrap();
    let flaky = EchoServer::start(0).await.unwrap();
    let flaky_address = flaky.address();
    let channel = croupier_tokio::builder(ipv4_target(&[&stable, &flaky]))
        .policy(PolicyConfig::round_robin())
        .backoff(fast_backoff())
        .build()
        .unwrap();
    eventually("both connected", || {
        stable.stats().accepted() == 1 && flaky.stats().accepted() == 1
    })
    .await;
    drop(flaky);
    let restarted = bounded("rebinding", async {
        loop {
            match EchoServer::start_on(flaky_address).await {
                Ok(server) => return server,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    // Backoff is at most 200 ms here: the channel reconnects on its own schedule.
    eventually("a reconnection", || restarted.stats().accepted() >= 1).await;
    let mut landed = false;
    for _ in 0..20 {
        if bounded("call", call(&channel, quick())).await.unwrap() == from(&restarted) {
            landed = true;
        }
    }
    assert!(landed, "the restarted server gets calls again");
}

#[tokio::test]
async fn with_no_server_up_a_call_fails_fast_naming_the_addresses() {
    let gone = EchoServer::start(0).await.unwrap();
    let address = gone.address();
    drop(gone);
    let channel = croupier_tokio::builder(format!("ipv4:{address}"))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    bounded("TRANSIENT_FAILURE", async {
        while channel.state() != ConnectivityState::TransientFailure {
            channel.state_changed(channel.state()).await;
        }
    })
    .await;
    let started = Instant::now();
    let error = call(&channel, PickOptions::new()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "fails fast");
    assert!(error.contains(&address.to_string()), "{error}");
    assert!(error.contains("UNAVAILABLE"), "{error}");
}

#[tokio::test]
async fn a_wait_for_ready_call_completes_once_a_server_starts() {
    let placeholder = EchoServer::start(0).await.unwrap();
    let address = placeholder.address();
    drop(placeholder);
    let channel = croupier_tokio::builder(format!("ipv4:{address}"))
        .backoff(fast_backoff())
        .build()
        .unwrap();
    let waiting = {
        let channel = channel.clone();
        tokio::spawn(async move {
            call(
                &channel,
                PickOptions::new().wait_for_ready(true).timeout(PATIENCE),
            )
            .await
        })
    };
    bounded("TRANSIENT_FAILURE", async {
        while channel.state() != ConnectivityState::TransientFailure {
            channel.state_changed(channel.state()).await;
        }
    })
    .await;
    let server = bounded("rebinding", async {
        loop {
            match EchoServer::start_on(address).await {
                Ok(server) => return server,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    let reply = bounded("the waiting call", waiting).await.unwrap().unwrap();
    assert_eq!(reply, from(&server));
}

#[tokio::test]
async fn a_call_with_a_deadline_fails_at_the_deadline_quoting_the_last_failure() {
    let placeholder = EchoServer::start(0).await.unwrap();
    let address = placeholder.address();
    drop(placeholder);
    let channel = croupier_tokio::builder(format!("ipv4:{address}"))
        .build()
        .unwrap();
    let started = Instant::now();
    let options = PickOptions::new()
        .wait_for_ready(true)
        .timeout(Duration::from_millis(300));
    let error = bounded("the call", call(&channel, options))
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

/// A resolver whose answers the test sets.
#[derive(Clone, Default)]
struct Controlled {
    contexts: Arc<Mutex<Vec<ResolverContext>>>,
    current: Arc<Mutex<Option<ResolverUpdate>>>,
}

impl Controlled {
    fn set(&self, update: ResolverUpdate) {
        *self.current.lock().unwrap() = Some(update.clone());
        for context in self.contexts.lock().unwrap().iter() {
            context.update(update.clone());
        }
    }
}

impl croupier_tokio::Resolver for Controlled {
    fn resolve(
        &self,
        _: &Target,
        context: ResolverContext,
    ) -> croupier_tokio::BoxFuture<'static, ()> {
        if let Some(update) = self.current.lock().unwrap().clone() {
            context.update(update);
        }
        self.contexts.lock().unwrap().push(context);
        Box::pin(async {})
    }
}

fn endpoints(servers: &[&EchoServer]) -> ResolverUpdate {
    ResolverUpdate::new(servers.iter().map(|s| Endpoint::new(s.address())))
}

#[tokio::test]
async fn a_custom_scheme_resolves_and_an_updated_list_moves_traffic() {
    let old = EchoServer::start(0).await.unwrap();
    let new = EchoServer::start(0).await.unwrap();
    let resolver = Controlled::default();
    resolver.set(endpoints(&[&old]));
    let channel = croupier_tokio::builder("example:///lb.example.grpc.io")
        .resolver("example", resolver.clone())
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    assert_eq!(
        bounded("call", call(&channel, quick())).await.unwrap(),
        from(&old)
    );
    resolver.set(endpoints(&[&new]));
    eventually("the old server's connection to close", || {
        old.stats().open() == 0
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            bounded("call", call(&channel, quick())).await.unwrap(),
            from(&new)
        );
    }
}

#[tokio::test]
async fn dns_resolves_localhost() {
    let server = EchoServer::start(0).await.unwrap();
    let channel = croupier_tokio::builder(format!("dns:///localhost:{}", server.port()))
        .build()
        .unwrap();
    let reply = bounded("call", call(&channel, quick())).await;
    // localhost may resolve to ::1 first, where nothing listens: pick_first moves on to 127.0.0.1.
    assert_eq!(reply.unwrap(), from(&server));
}

#[tokio::test]
async fn a_target_without_scheme_defaults_to_dns_with_the_default_port() {
    let server = EchoServer::start(0).await.unwrap();
    let channel = croupier_tokio::builder("127.0.0.1")
        .default_port(server.port())
        .build()
        .unwrap();
    assert_eq!(channel.target().scheme(), "dns");
    assert_eq!(
        bounded("call", call(&channel, quick())).await.unwrap(),
        from(&server)
    );
}

#[tokio::test]
async fn unknown_schemes_and_malformed_targets_are_errors_at_build_time() {
    let error = croupier_tokio::builder("nosuch:///x").build().unwrap_err();
    assert!(matches!(error, BuildError::Target(_)));
    assert!(error.to_string().contains("nosuch"), "{error}");
    let error = croupier_tokio::builder("ipv4:1.2.3:80")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("1.2.3"), "{error}");
    let error = croupier_tokio::builder("").build().unwrap_err();
    assert!(!error.to_string().is_empty());
}

#[tokio::test]
async fn a_resolver_that_reports_no_endpoints_fails_calls_saying_so() {
    let resolver = Controlled::default();
    resolver.set(ResolverUpdate::new([]));
    let channel = croupier_tokio::builder("example:///empty")
        .resolver("example", resolver)
        .build()
        .unwrap();
    let error = bounded("call", call(&channel, quick())).await.unwrap_err();
    assert!(
        !error.contains("DEADLINE"),
        "fails at once, not at the deadline: {error}"
    );
    assert!(
        error.contains("no addresses") || error.contains("no endpoints"),
        "{error}"
    );
}

#[tokio::test]
async fn dropping_the_channel_closes_every_connection() {
    let servers = [
        EchoServer::start(0).await.unwrap(),
        EchoServer::start(0).await.unwrap(),
    ];
    let channel = croupier_tokio::builder(ipv4_target(&[&servers[0], &servers[1]]))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    bounded("call", call(&channel, quick())).await.unwrap();
    eventually("both connected", || {
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
    eventually("every connection to close", || {
        servers.iter().all(|s| s.stats().open() == 0)
    })
    .await;
}

#[tokio::test]
async fn subchannels_report_address_state_and_last_error() {
    let up = EchoServer::start(0).await.unwrap();
    let down: SocketAddr = {
        let server = EchoServer::start(0).await.unwrap();
        server.address()
    };
    let channel = croupier_tokio::builder(format!("ipv4:{},{down}", up.address()))
        .policy(PolicyConfig::round_robin())
        .backoff(BackoffConfig::default().initial_delay(Duration::from_secs(30)))
        .build()
        .unwrap();
    let snapshot = bounded("snapshot", async {
        loop {
            let all = channel.subchannels().await;
            if all
                .iter()
                .any(|s| s.state == ConnectivityState::TransientFailure)
                && all.iter().any(|s| s.state == ConnectivityState::Ready)
            {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let failed = snapshot
        .iter()
        .find(|s| s.state == ConnectivityState::TransientFailure)
        .unwrap();
    assert_eq!(failed.address, croupier::Address::Socket(down));
    assert!(failed.last_error.is_some());
}
