//! The resolver over TLS to a real three-member etcd cluster that serves its clients with a
//! certificate from a private certificate authority: trusted, it reads and watches; not, every
//! member is refused with the reason.

mod support;

use std::time::Duration;

use croupier_echo_grpc::EchoClient;
use croupier_etcd::{Certificate, TlsOptions};
use support::{
    addresses_of, call, channel, endpoint_value, register, resolver, run, servers, until_addresses,
    Cluster, Events,
};

#[test]
fn over_tls_the_resolver_trusts_the_members_ca_and_refuses_the_unknown() {
    run(Duration::from_secs(60), async {
        let (cluster, ca) = Cluster::start_tls(3).await;
        let fleet = servers(2).await;
        register(&cluster, "services/echo", &fleet[..1]).await;
        let target = cluster.target("services/echo");

        let trusting = TlsOptions::new().ca_certificate(Certificate::from_pem(&ca));
        let trusted = channel_with(&target, trusting);
        until_addresses(&trusted, &addresses_of(&fleet[..1])).await;
        cluster
            .put("services/echo/1", &endpoint_value(fleet[1].address()))
            .await;
        until_addresses(&trusted, &addresses_of(&fleet)).await;
        call(&mut EchoClient::new(trusted)).await.unwrap();

        // Trusting no authority: each member's certificate is refused, and calls say so.
        let unknown = channel_with(&target, TlsOptions::new());
        let error = call(&mut EchoClient::new(unknown)).await.unwrap_err();
        assert!(
            error.contains("no etcd member could list")
                && error.contains(&cluster.member(0))
                && error.contains("invalid peer certificate: UnknownIssuer"),
            "{error}"
        );
        // Plain HTTP/2 to a member that speaks TLS is refused too.
        let plain = channel(&target, resolver(&Events::default()));
        let error = call(&mut EchoClient::new(plain)).await.unwrap_err();
        assert!(error.contains("no etcd member could list"), "{error}");
    });
}

/// A channel whose resolver dials the members with `tls`.
fn channel_with(target: &str, tls: TlsOptions) -> support::GrpcChannel {
    channel(target, resolver(&Events::default()).tls(tls))
}
