//! Service configs through croupier's gRPC channel, against real tonic servers on loopback: a
//! method's timeout and waitForReady reach its calls, a bad default config fails the build
//! naming its path, and a resolver's config that switches pick_first to round_robin does so
//! under load without failing a call.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use croupier_echo_grpc::{EchoClient, GrpcEchoServer, ServerOptions};
use croupier_tokio::croupier::service_config::ServiceConfigParser;
use croupier_tokio::{
    BoxFuture, BuildError, ConnectivityState, Endpoint, Resolver, ResolverContext, ResolverUpdate,
    Target,
};
use support::{echo, example_target, hold_connections, GrpcChannel, PATIENCE, SCHEME};

/// How late after its deadline a call may end: generous, for a loaded machine.
const MARGIN: Duration = Duration::from_millis(500);

/// Gives `first` when the channel starts resolving, and whatever the test pushes later.
#[derive(Clone)]
struct Pushed {
    first: ResolverUpdate,
    context: Arc<Mutex<Option<ResolverContext>>>,
}

impl Pushed {
    fn new(first: ResolverUpdate) -> Self {
        Pushed {
            first,
            context: Arc::default(),
        }
    }

    fn push(&self, update: ResolverUpdate) {
        let context = self.context.lock().unwrap();
        context
            .as_ref()
            .expect("the channel resolves")
            .update(update);
    }
}

impl Resolver for Pushed {
    fn resolve(&self, _: &Target, context: ResolverContext) -> BoxFuture<'static, ()> {
        context.update(self.first.clone());
        *self.context.lock().unwrap() = Some(context);
        Box::pin(async {})
    }
}

fn endpoints(servers: &[&GrpcEchoServer]) -> Vec<Endpoint> {
    servers.iter().map(|s| Endpoint::new(s.address())).collect()
}

/// A config for the echo service's unary method: `settings` (JSON fields).
fn unary_config(settings: &str) -> String {
    format!(
        r#"{{"methodConfig": [{{
            "name": [{{"service": "grpc.examples.echo.Echo", "method": "UnaryEcho"}}],
            {settings}
        }}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_configs_timeout_ends_a_stalled_call_with_deadline_exceeded() {
    let server = GrpcEchoServer::start(0, ServerOptions::new().stall_message("stall"))
        .await
        .unwrap();
    let channel: GrpcChannel = croupier_tokio::grpc::builder(format!("ipv4:{}", server.address()))
        .default_service_config(unary_config(r#""timeout": "0.3s""#).as_str())
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    // The call's own timeout is longer: the method's, the sooner, wins.
    let mut request = echo("stall");
    request.set_timeout(PATIENCE);
    let started = Instant::now();
    let status = tokio::time::timeout(PATIENCE, client.unary_echo(request))
        .await
        .expect("the method's timeout ended the call")
        .expect_err("the call fails");
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("within 300 ms"), "{status:?}");
    let deadline = Duration::from_millis(300);
    assert!(took >= deadline && took < deadline + MARGIN, "{took:?}");
    // The server was told the sooner deadline too.
    let told = server.last_grpc_timeout().expect("a grpc-timeout");
    let micros: u64 = told
        .strip_suffix('u')
        .and_then(|amount| amount.parse().ok())
        .unwrap_or_else(|| panic!("microseconds: {told}"));
    assert!(micros <= 300_000, "{told}");
    // Another method has no config: the call's own timeout stands, and it is served.
    let mut streaming = client
        .server_streaming_echo(echo("hi"))
        .await
        .expect("not bound by UnaryEcho's config")
        .into_inner();
    assert!(streaming.message().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_from_the_method_config_waits_through_transient_failure() {
    let refused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nowhere = Endpoint::new(refused.local_addr().unwrap());
    drop(refused);
    let resolver = Pushed::new(ResolverUpdate::new([nowhere]));
    let channel: GrpcChannel = croupier_tokio::grpc::builder(example_target())
        .resolver(SCHEME, resolver.clone())
        .default_service_config(unary_config(r#""waitForReady": true, "timeout": "10s""#).as_str())
        .build()
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while channel.state() != ConnectivityState::TransientFailure {
            channel.state_changed(channel.state()).await;
        }
    })
    .await
    .expect("the channel fails to connect");
    let mut client = EchoClient::new(channel);
    // A method without waitForReady fails fast.
    let status = tokio::time::timeout(PATIENCE, client.server_streaming_echo(echo("hi")))
        .await
        .expect("fails fast")
        .expect_err("no backend");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // UnaryEcho waits, and is served once a backend comes.
    let mut waiting = client.clone();
    let call = tokio::spawn(async move { waiting.unary_echo(echo("waited")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "the call waits through TRANSIENT_FAILURE"
    );
    let server = GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .unwrap();
    resolver.push(ResolverUpdate::new(endpoints(&[&server])));
    let reply = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("served in time")
        .unwrap()
        .expect("the call succeeds");
    assert!(reply.into_inner().message.starts_with("waited"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_default_service_config_fails_the_build_naming_its_path() {
    let result = croupier_tokio::grpc::builder::<tonic::body::Body>("ipv4:127.0.0.1:1")
        .default_service_config(unary_config(r#""timeout": "soon""#).as_str())
        .build();
    let error = result.expect_err("an invalid config");
    assert!(matches!(error, BuildError::ServiceConfig(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("default service config") && message.contains("methodConfig[0].timeout"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_succeeding_across_a_switch_from_pick_first_to_round_robin() {
    let a = GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .unwrap();
    let b = GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .unwrap();
    let json = r#"{"loadBalancingConfig": [{"pick_first": {}}]}"#;
    let pick_first = ResolverUpdate::new(endpoints(&[&a, &b]))
        .with_service_config(ServiceConfigParser::new().parse(json));
    let resolver = Pushed::new(pick_first);
    let channel: GrpcChannel = croupier_tokio::grpc::builder(example_target())
        .resolver(SCHEME, resolver.clone())
        .build()
        .unwrap();
    let client = EchoClient::new(channel);
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let (mut client, ok, failed, stop) =
            (client.clone(), ok.clone(), failed.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut request = echo(&format!("caller {caller}"));
                request.set_timeout(PATIENCE);
                match client.unary_echo(request).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(status) => {
                        failed.lock().unwrap().push(status);
                        0
                    }
                };
            }
        }));
    }
    let until_calls = |n: usize| {
        let ok = ok.clone();
        async move {
            tokio::time::timeout(PATIENCE, async {
                while ok.load(Ordering::Relaxed) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("calls go on");
        }
    };
    until_calls(200).await;
    let (a_before, b_before) = (a.calls(), b.calls());
    assert!(
        a_before == 0 || b_before == 0,
        "pick_first uses one backend: {a_before}, {b_before}"
    );
    // round_robin first over a backend that takes connections and never answers them: it
    // cannot become READY, and pick_first serves every call meanwhile.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_endpoint = Endpoint::new(silent.local_addr().unwrap());
    let _held = hold_connections(silent);
    let json = r#"{"loadBalancingConfig": [{"round_robin": {}}]}"#;
    let round_robin = || ServiceConfigParser::new().parse(json);
    resolver.push(ResolverUpdate::new([silent_endpoint]).with_service_config(round_robin()));
    until_calls(ok.load(Ordering::Relaxed) + 300).await;
    assert!(
        failed.lock().unwrap().is_empty(),
        "while round_robin connects"
    );
    // Then over both servers: it connects, takes over, and pick_first's connection goes.
    resolver.push(ResolverUpdate::new(endpoints(&[&a, &b])).with_service_config(round_robin()));
    until_calls(ok.load(Ordering::Relaxed) + 400).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} calls failed: {:?}",
        failed.len(),
        failed.first()
    );
    // round_robin serves now: both backends got calls since.
    let (a_new, b_new) = (a.calls() - a_before, b.calls() - b_before);
    assert!(a_new > 0 && b_new > 0, "{a_new}, {b_new}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_retry_policy_and_the_channels_retry_throttle_come_from_the_config() {
    let config = |max_tokens: u32, timeout: &str| {
        format!(
            r#"{{"retryThrottling": {{"maxTokens": {max_tokens}, "tokenRatio": 0.5}},
                "methodConfig": [{{
                    "name": [{{"service": "grpc.examples.echo.Echo"}}],
                    "timeout": "{timeout}",
                    "retryPolicy": {{"maxAttempts": 3, "initialBackoff": "0.1s",
                        "maxBackoff": "1s", "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"]}}
                }}]}}"#
        )
    };
    let update = |json: &str| {
        ResolverUpdate::new([]).with_service_config(ServiceConfigParser::new().parse(json))
    };
    let resolver = Pushed::new(update(&config(10, "1s")));
    let channel: GrpcChannel = croupier_tokio::grpc::builder(example_target())
        .resolver(SCHEME, resolver.clone())
        .build()
        .unwrap();
    let applied = |timeout: Duration| {
        let channel = channel.clone();
        async move {
            tokio::time::timeout(PATIENCE, async {
                let path = "/grpc.examples.echo.Echo/UnaryEcho";
                while channel.method_config(path).and_then(|m| m.timeout) != Some(timeout) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the resolver's config is applied");
        }
    };
    applied(Duration::from_secs(1)).await;
    let method = channel
        .method_config("/grpc.examples.echo.Echo/UnaryEcho")
        .unwrap();
    let croupier_tokio::croupier::retry::CallPolicy::Retry(retry) = &method.call_policy else {
        panic!("a retry policy: {:?}", method.call_policy);
    };
    assert_eq!(retry.max_attempts(), 3);
    let throttle = channel.retry_throttle().expect("retryThrottling is set");
    assert_eq!(throttle.max_tokens(), 10);
    throttle.record_failure();
    // The same throttling in a new config keeps the bucket, with its tokens.
    resolver.push(update(&config(10, "2s")));
    applied(Duration::from_secs(2)).await;
    let same = channel.retry_throttle().unwrap();
    assert!(Arc::ptr_eq(&throttle, &same));
    assert_eq!(same.tokens(), 9.0);
    // Other settings make a full bucket of their own.
    resolver.push(update(&config(20, "3s")));
    applied(Duration::from_secs(3)).await;
    let other = channel.retry_throttle().unwrap();
    assert_eq!((other.max_tokens(), other.tokens()), (20, 20.0));
}
