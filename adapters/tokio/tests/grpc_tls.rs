//! gRPC over TLS (feature `tls`) against real tonic servers on loopback that serve over rustls,
//! with a private certificate authority made at test time: each server is verified by the name
//! its endpoint carries, and a wrong name, an unknown authority, or a server without `h2` fails
//! the attempt with a message that names the address and the TLS reason.

mod support;

use croupier::{ConnectivityState, Endpoint, PolicyConfig, SubchannelInfo};
use croupier_echo_grpc::tls::{server_config, Authority, Identity};
use croupier_echo_grpc::{EchoClient, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::tls::{client_config, client_config_with_identity};
use support::{call, call_each, example_target, until, Fixed, GrpcChannel, SCHEME};

const H2: &[&[u8]] = &[b"h2"];

async fn tls_server(
    identity: &Identity,
    alpn: &[&[u8]],
    authority: Option<&Authority>,
) -> GrpcEchoServer {
    let config = server_config(identity, alpn, authority.map(Authority::roots)).unwrap();
    GrpcEchoServer::start(0, ServerOptions::new().tls(config))
        .await
        .expect("a free port on loopback")
}

/// A channel to `endpoints` that trusts `authority` alone.
fn channel(endpoints: Vec<Endpoint>, authority: &Authority) -> GrpcChannel {
    croupier_tokio::grpc::builder(example_target())
        .resolver(SCHEME, Fixed(endpoints))
        .policy(PolicyConfig::round_robin())
        .tls(client_config(authority.roots()).unwrap())
        .build()
        .unwrap()
}

/// A server for `a.backend.internal`, whose certificate `issuer` signed, selecting `alpn`; and
/// a channel to it that trusts `trusted` alone and knows the server by `name`.
async fn named_server(
    issuer: &Authority,
    alpn: &[&[u8]],
    name: &str,
    trusted: &Authority,
) -> (GrpcEchoServer, GrpcChannel) {
    let server = tls_server(&issuer.issue(&["a.backend.internal"]).unwrap(), alpn, None).await;
    let endpoint = Endpoint::new(server.address()).server_name(name);
    (server, channel(vec![endpoint], trusted))
}

/// Waits for the one subchannel's first failure and returns its message.
async fn first_failure(channel: &GrpcChannel) -> String {
    channel.connect();
    let failed = until(channel, |subchannels| {
        subchannels.iter().any(|s: &SubchannelInfo| {
            s.state == ConnectivityState::TransientFailure && s.last_error.is_some()
        })
    })
    .await;
    failed[0]
        .last_error
        .as_deref()
        .unwrap_or_default()
        .to_owned()
}

fn assert_names(message: &str, server: &GrpcEchoServer, reason: &str) {
    let expected = format!("TLS handshake with {} failed: ", server.address());
    assert!(
        message.contains(&expected),
        "{message:?} lacks {expected:?}"
    );
    assert!(message.contains(reason), "{message:?} lacks {reason:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_behind_one_target_are_each_verified_by_their_own_name() {
    let ca = Authority::new("croupier test CA").unwrap();
    let a = tls_server(&ca.issue(&["a.backend.internal"]).unwrap(), H2, None).await;
    let b = tls_server(&ca.issue(&["b.backend.internal"]).unwrap(), H2, None).await;
    let channel = channel(
        vec![
            Endpoint::new(a.address()).server_name("a.backend.internal"),
            Endpoint::new(b.address()).server_name("b.backend.internal"),
        ],
        &ca,
    );
    let mut replies = call_each(channel, 2).await;
    replies.sort();
    let mut expected = [a.address().port(), b.address().port()]
        .map(|port| format!("hi (from :{port})"))
        .to_vec();
    expected.sort();
    assert_eq!(replies, expected, "both servers answered");
    for (server, name) in [(&a, "a.backend.internal"), (&b, "b.backend.internal")] {
        let seen = server.seen().pop().expect("the server saw the call");
        assert_eq!(seen.scheme.as_deref(), Some("https"));
        assert_eq!(seen.authority.as_deref(), Some(name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_server_name_the_server_is_verified_by_the_targets_host() {
    let ca = Authority::new("croupier test CA").unwrap();
    let server = tls_server(&ca.issue(&["localhost"]).unwrap(), H2, None).await;
    let port = server.address().port();
    let channel = croupier_tokio::grpc::builder(format!("dns:///localhost:{port}"))
        .tls(client_config(ca.roots()).unwrap())
        .build()
        .unwrap();
    let mut client = EchoClient::new(channel);
    let reply = call(&mut client, "hi").await.unwrap();
    assert_eq!(reply, format!("hi (from :{port})"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_certificate_names_another_fails_the_attempt() {
    let ca = Authority::new("croupier test CA").unwrap();
    let (server, channel) = named_server(&ca, H2, "b.backend.internal", &ca).await;
    let message = first_failure(&channel).await;
    assert_names(
        &message,
        &server,
        "invalid peer certificate: certificate not valid for name \"b.backend.internal\"",
    );
    // A call fails fast with the same account of why.
    let mut client = EchoClient::new(channel);
    let status = call(&mut client, "hi").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_names(status.message(), &server, "not valid for name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_an_unknown_authority_fails_the_attempt() {
    let theirs = Authority::new("someone else's CA").unwrap();
    let ours = Authority::new("croupier test CA").unwrap();
    let (server, channel) = named_server(&theirs, H2, "a.backend.internal", &ours).await;
    let message = first_failure(&channel).await;
    assert_names(&message, &server, "invalid peer certificate: UnknownIssuer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_select_h2_by_alpn_fails_the_attempt() {
    let ca = Authority::new("croupier test CA").unwrap();
    let (server, channel) = named_server(&ca, &[], "a.backend.internal", &ca).await;
    let message = first_failure(&channel).await;
    assert_names(&message, &server, "the server did not agree on h2 by ALPN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_client_certificates_accepts_ours() {
    let ca = Authority::new("croupier test CA").unwrap();
    let server = tls_server(&ca.issue(&["a.backend.internal"]).unwrap(), H2, Some(&ca)).await;
    let endpoint = Endpoint::new(server.address()).server_name("a.backend.internal");
    let client_identity = ca.issue(&["client.internal"]).unwrap();
    let with_certificate = croupier_tokio::grpc::builder(example_target())
        .resolver(SCHEME, Fixed(vec![endpoint.clone()]))
        .tls(
            client_config_with_identity(ca.roots(), client_identity.chain, client_identity.key)
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut client = EchoClient::new(with_certificate);
    let reply = call(&mut client, "hi").await.unwrap();
    assert_eq!(reply, format!("hi (from :{})", server.address().port()));

    // The server does require one: without it, no call gets through.
    let mut client = EchoClient::new(channel(vec![endpoint], &ca));
    let refused = call(&mut client, "hi").await.unwrap_err();
    assert!(
        refused.message().contains("CertificateRequired"),
        "{refused:?}"
    );
}
