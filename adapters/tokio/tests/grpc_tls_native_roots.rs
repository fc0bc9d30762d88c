//! `tls::native_roots` reads the platform's trusted authorities, honouring `SSL_CERT_FILE`: a
//! bundle that holds only a private authority's certificate is all the channel then trusts.

mod support;

use croupier_echo_grpc::tls::{server_config, Authority};
use croupier_echo_grpc::{EchoClient, GrpcEchoServer, ServerOptions};
use croupier_tokio::grpc::tls::{client_config, native_roots};
use support::call;

#[test]
fn the_platforms_roots_come_from_ssl_cert_file_when_it_is_set() {
    let ca = Authority::new("croupier test CA").unwrap();
    let bundle = std::env::temp_dir().join(format!("croupier-roots-{}.pem", std::process::id()));
    std::fs::write(&bundle, ca.certificate_pem()).unwrap();
    // Before any other thread runs: this test is its process's only one.
    std::env::set_var("SSL_CERT_FILE", &bundle);
    std::env::remove_var("SSL_CERT_DIR");
    let roots = native_roots();
    let _ = std::fs::remove_file(&bundle);
    let roots = roots.expect("the bundle's authority is found");
    assert_eq!(roots.len(), 1, "only the bundle's authority");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let identity = ca.issue(&["localhost"]).unwrap();
        let config = server_config(&identity, &[b"h2"], None).unwrap();
        let server = GrpcEchoServer::start(0, ServerOptions::new().tls(config))
            .await
            .unwrap();
        let port = server.address().port();
        let channel = croupier_tokio::grpc::builder(format!("dns:///localhost:{port}"))
            .tls(client_config(roots).unwrap())
            .build()
            .unwrap();
        let mut client = EchoClient::new(channel);
        let reply = call(&mut client, "hi").await.unwrap();
        assert_eq!(reply, format!("hi (from :{port})"));
    });
}
