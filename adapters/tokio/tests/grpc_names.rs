//! The names gRPC calls carry, as real tonic servers on loopback see them: `:authority` (the
//! target's, a resolver's per-endpoint server name, or the channel's own), `:scheme` and
//! `user-agent`.

mod support;

use croupier::{Endpoint, PolicyConfig};
use croupier_echo_grpc::{EchoClient, GrpcEchoServer, SeenRequest, ServerOptions};
use http::uri::Authority;
use support::{call, call_each, echo, example_target, send, Fixed, SCHEME, SERVICE};

const UNARY_ECHO: &str = "/grpc.examples.echo.Echo/UnaryEcho";

fn library_user_agent() -> String {
    format!("croupier/{}", env!("CARGO_PKG_VERSION"))
}

async fn server() -> GrpcEchoServer {
    GrpcEchoServer::start(0, ServerOptions::new())
        .await
        .expect("a free port on loopback")
}

/// The last `UnaryEcho` request `server` saw.
fn last_call(server: &GrpcEchoServer) -> SeenRequest {
    server
        .seen()
        .into_iter()
        .rev()
        .find(|seen| seen.path == UNARY_ECHO)
        .expect("the server saw a call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_targets_endpoint_as_authority_and_the_librarys_user_agent() {
    let server = server().await;
    let channel = croupier_tokio::grpc::builder(example_target())
        .resolver(SCHEME, Fixed(vec![Endpoint::new(server.address())]))
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    call(&mut client, "hi").await.unwrap();
    let seen = last_call(&server);
    assert_eq!(
        seen.authority.as_deref(),
        Some(SERVICE),
        "not the dialled address"
    );
    assert_eq!(seen.scheme.as_deref(), Some("http"));
    assert_eq!(seen.user_agent, Some(library_user_agent()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_target_sends_its_host_and_port() {
    let server = server().await;
    let port = server.address().port();
    let channel = croupier_tokio::grpc::builder(format!("dns:///localhost:{port}"))
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    call(&mut client, "hi").await.unwrap();
    assert_eq!(
        last_call(&server).authority,
        Some(format!("localhost:{port}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_list_which_http_cannot_carry_sends_the_address_connected_to() {
    let (a, b) = (server().await, server().await);
    let channel = croupier_tokio::grpc::builder(format!("ipv4:{},{}", a.address(), b.address()))
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    call_each(channel, 2).await;
    for server in [&a, &b] {
        assert_eq!(
            last_call(server).authority,
            Some(server.address().to_string())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_server_name_is_the_authority_of_its_calls_alone() {
    let (named, plain) = (server().await, server().await);
    let channel = croupier_tokio::grpc::builder(example_target())
        .resolver(
            SCHEME,
            Fixed(vec![
                Endpoint::new(named.address()).server_name("a.backend.internal"),
                Endpoint::new(plain.address()),
            ]),
        )
        .policy(PolicyConfig::round_robin())
        .build()
        .unwrap();
    call_each(channel, 2).await;
    assert_eq!(
        last_call(&named).authority.as_deref(),
        Some("a.backend.internal")
    );
    assert_eq!(last_call(&plain).authority.as_deref(), Some(SERVICE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channels_authority_wins_over_every_server_name() {
    let server = server().await;
    let channel = croupier_tokio::grpc::builder(example_target())
        .resolver(
            SCHEME,
            Fixed(vec![
                Endpoint::new(server.address()).server_name("a.backend.internal")
            ]),
        )
        .authority(Authority::from_static("chosen.example:8443"))
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    call(&mut client, "hi").await.unwrap();
    assert_eq!(
        last_call(&server).authority.as_deref(),
        Some("chosen.example:8443")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_user_agent_comes_first_and_a_calls_own_gives_way() {
    let server = server().await;
    let channel = croupier_tokio::grpc::builder(example_target())
        .resolver(SCHEME, Fixed(vec![Endpoint::new(server.address())]))
        .user_agent("myapp/1.2")
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    let mut request = echo("hi");
    request
        .metadata_mut()
        .insert("user-agent", "per-call/9".parse().unwrap());
    send(&mut client, request).await.unwrap();
    assert_eq!(
        last_call(&server).user_agent,
        Some(format!("myapp/1.2 {}", library_user_agent()))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_user_agent_that_is_no_header_value_fails_the_build_naming_it() {
    let built = croupier_tokio::grpc::builder::<tonic::body::Body>(example_target())
        .user_agent("my\napp")
        .build();
    let error = built
        .expect_err("a newline cannot go in a header")
        .to_string();
    assert!(error.contains("user_agent"), "{error}");
    assert!(error.contains("\"my\\napp\""), "{error}");
}
