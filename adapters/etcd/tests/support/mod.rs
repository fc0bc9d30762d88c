//! What the etcd tests share: the cluster harness, echo servers registered as endpoints, a
//! channel over them with the resolver's events recorded, bounded waits on what the channel
//! knows, and calls kept going in the background.

#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use croupier::{Address, PolicyConfig};
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_etcd::{EtcdError, EtcdEvent, EtcdResolver};
use croupier_tokio::grpc::Http2Channel;

pub use cluster::Cluster;

/// A bound on every wait, so that a broken test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The channel a tonic client uses.
pub type GrpcChannel = Http2Channel<tonic::body::Body>;

/// Runs `test` on a runtime of its own, bounded by `limit`, one test at a time: each starts a
/// three-member cluster, and the machine may have few cores.
pub fn run(limit: Duration, test: impl Future<Output = ()>) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime
        .block_on(async { tokio::time::timeout(limit, test).await })
        .unwrap_or_else(|_| panic!("the test did not end within {limit:?}"));
}

/// `address` as etcd's Go `naming/endpoints` package stores it.
pub fn endpoint_value(address: impl std::fmt::Display) -> String {
    format!(r#"{{"Op":0,"Addr":"{address}","Metadata":null}}"#)
}

/// Echo servers on loopback.
pub async fn servers(n: usize) -> Vec<GrpcEchoServer> {
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(
            GrpcEchoServer::start(0, ServerOptions::new())
                .await
                .expect("a free port on loopback"),
        );
    }
    servers
}

/// Registers each of `servers` under `prefix` (`prefix/<i>`), one `etcdctl put` each.
pub async fn register(cluster: &Cluster, prefix: &str, servers: &[GrpcEchoServer]) {
    for (i, server) in servers.iter().enumerate() {
        cluster
            .put(&format!("{prefix}/{i}"), &endpoint_value(server.address()))
            .await;
    }
}

/// What the resolver told its observer.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<EtcdEvent>>>);

impl Events {
    /// `resolver`, telling these events.
    pub fn observe(&self, resolver: EtcdResolver) -> EtcdResolver {
        let events = Arc::clone(&self.0);
        resolver.on_event(move |event| events.lock().unwrap().push(event.clone()))
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<EtcdEvent> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until an event satisfies `wanted`, and returns it.
    pub async fn until(&self, wanted: impl Fn(&EtcdEvent) -> bool) -> EtcdEvent {
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(event) = self.all().into_iter().find(|event| wanted(event)) {
                    return event;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no such event in time; events: {:#?}", self.all()))
    }

    /// The lists the resolver sent, as (member, endpoints, whether from a full read).
    pub fn lists(&self) -> Vec<(String, usize, bool)> {
        self.all()
            .into_iter()
            .filter_map(|event| match event {
                EtcdEvent::Resolved {
                    member,
                    endpoints,
                    full_read,
                    ..
                } => Some((member, endpoints, full_read)),
                _ => None,
            })
            .collect()
    }

    /// Waits until every member has failed in turn: that error's message.
    pub async fn until_all_members_failed(&self) -> String {
        let failed = self
            .until(|event| matches!(event, EtcdEvent::Error(EtcdError::AllMembersFailed { .. })))
            .await;
        match failed {
            EtcdEvent::Error(error) => error.to_string(),
            _ => unreachable!("an error was awaited"),
        }
    }
}

/// A three-member cluster with echo servers, the first of them registered under
/// `services/echo/`, and a round_robin channel over them that knows them all.
pub struct Setup {
    pub cluster: Cluster,
    pub fleet: Vec<GrpcEchoServer>,
    pub events: Events,
    pub channel: GrpcChannel,
}

impl Setup {
    /// `servers` echo servers, of which the first `registered` are registered.
    pub async fn start(servers_: usize, registered: usize) -> Setup {
        let cluster = Cluster::start(3).await;
        let fleet = servers(servers_).await;
        register(&cluster, "services/echo", &fleet[..registered]).await;
        let events = Events::default();
        let channel = channel(&cluster.target("services/echo"), resolver(&events));
        until_addresses(&channel, &addresses_of(&fleet[..registered])).await;
        Setup {
            cluster,
            fleet,
            events,
            channel,
        }
    }
}

/// A resolver quick to give up on a member, as tests want, telling `events`.
pub fn resolver(events: &Events) -> EtcdResolver {
    events.observe(
        EtcdResolver::new()
            .connect_timeout(Duration::from_secs(1))
            .request_timeout(Duration::from_secs(2))
            .retry_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    )
}

/// A round_robin gRPC channel to `target` with `resolver` for `etcd`.
pub fn channel(target: &str, resolver: EtcdResolver) -> GrpcChannel {
    croupier_tokio::grpc::builder(target)
        .resolver("etcd", resolver)
        .policy(PolicyConfig::round_robin())
        .build()
        .expect("an etcd target the channel takes")
}

/// A round_robin gRPC channel to `target` with a resolver whose events nobody reads.
pub fn channel_to(target: &str) -> GrpcChannel {
    channel(target, resolver(&Events::default()))
}

/// The addresses of the channel's subchannels.
pub async fn addresses(channel: &GrpcChannel) -> BTreeSet<Address> {
    channel
        .subchannels()
        .await
        .into_iter()
        .map(|subchannel| subchannel.address)
        .collect()
}

/// Waits (looking every millisecond) until the channel's subchannels are at exactly
/// `expected`.
pub async fn until_addresses(channel: &GrpcChannel, expected: &BTreeSet<Address>) {
    let reached = tokio::time::timeout(PATIENCE, async {
        loop {
            if &addresses(channel).await == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    if reached.is_err() {
        panic!(
            "the channel's subchannels are {:?}, not {expected:?}",
            addresses(channel).await
        );
    }
}

/// The addresses of `servers`.
pub fn addresses_of<'a>(
    servers: impl IntoIterator<Item = &'a GrpcEchoServer>,
) -> BTreeSet<Address> {
    servers
        .into_iter()
        .map(|server| Address::Socket(server.address()))
        .collect()
}

/// One `UnaryEcho` call, bounded in time.
pub async fn call(client: &mut EchoClient<GrpcChannel>) -> Result<(), String> {
    let mut request = tonic::Request::new(EchoRequest {
        message: "hi".into(),
    });
    request.set_timeout(Duration::from_secs(2));
    match tokio::time::timeout(Duration::from_secs(3), client.unary_echo(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

/// Calls made one after another in the background until [`Calls::stop`].
pub struct Calls {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Calls {
    /// Starts calling through `channel`.
    pub fn start(channel: &GrpcChannel) -> Calls {
        let stop = Arc::new(AtomicBool::new(false));
        let mut client = EchoClient::new(channel.clone());
        let stopping = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let (mut succeeded, mut failed) = (0, Vec::new());
            while !stopping.load(Ordering::Relaxed) {
                match call(&mut client).await {
                    Ok(()) => succeeded += 1,
                    Err(error) => failed.push(error),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (succeeded, failed)
        });
        Calls { stop, task }
    }

    /// Stops, and asserts that every call succeeded (and that there were some): how many.
    pub async fn stop_all_succeeded(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let (succeeded, failed) = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the calls stop")
            .expect("the calling task does not panic");
        assert!(
            failed.is_empty(),
            "{} of {} calls failed: {:?}",
            failed.len(),
            succeeded + failed.len(),
            &failed[..failed.len().min(5)]
        );
        assert!(succeeded > 0, "no call was made");
        succeeded
    }
}
