//! The dns resolver's service config from DNS TXT records (gRFC A2), against a DNS server the
//! test runs on 127.0.0.1: the choice the record gives this client is the channel's config.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use croupier_tokio::croupier::service_config::ClientCriteria;
use croupier_tokio::{
    BoxFuture, ChannelBuilder, DnsResolver, HickoryTxtLookup, Runtime, StreamConnector,
    TokioRuntime,
};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

/// A bound on every wait.
const PATIENCE: Duration = Duration::from_secs(10);

/// Answers TXT queries for `name` with `text` (in 255-byte strings), every other query with
/// NXDOMAIN, and records the names asked for.
async fn dns_server(
    name: &'static str,
    text: String,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        loop {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            let mut response = Message::new();
            response
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(query.op_code())
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true)
                .add_queries(query.queries().to_vec());
            for question in query.queries() {
                let asked_for = question.name().to_ascii();
                seen.lock().unwrap().push(asked_for.clone());
                if asked_for == name && question.query_type() == RecordType::TXT {
                    let strings = text
                        .as_bytes()
                        .chunks(255)
                        .map(|part| String::from_utf8(part.to_vec()).unwrap())
                        .collect();
                    let answer = RData::TXT(TXT::new(strings));
                    response.add_answer(Record::from_rdata(question.name().clone(), 60, answer));
                } else {
                    response.set_response_code(ResponseCode::NXDomain);
                }
            }
            let _ = socket.send_to(&response.to_bytes().unwrap(), peer).await;
        }
    });
    (address, asked)
}

/// Tokio, but `backend.test` resolves to 127.0.0.1 without DNS (hickory, rightly, never asks a
/// server about `localhost` names, so the test needs a name of its own).
#[derive(Debug)]
struct TestNames(TokioRuntime);

impl Runtime for TestNames {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        self.0.spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.0.sleep_until(deadline)
    }

    fn lookup_host(
        &self,
        host: String,
        port: u16,
    ) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        assert_eq!(host, "backend.test");
        Box::pin(async move { Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txt_records_service_config_is_the_channels() {
    let record = r#"grpc_config=[
        {"clientLanguage": ["go"], "serviceConfig": {}},
        {"percentage": 40, "serviceConfig": {"loadBalancingConfig": [{"ring_hash": {}}]}},
        {"serviceConfig": {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [{"name": [{"service": "grpc.examples.echo.Echo"}], "timeout": "0.3s"}]
        }}
    ]"#;
    let (dns, asked) = dns_server("_grpc_config.backend.test.", record.replace('\n', "")).await;
    let resolver = DnsResolver::new()
        .service_config_from(HickoryTxtLookup::with_name_servers(&[dns]))
        .txt_client(ClientCriteria::new(50));
    let channel = ChannelBuilder::new(
        "dns:///backend.test:50051",
        Arc::new(TestNames(TokioRuntime::current())),
        StreamConnector::new(),
    )
    .resolver("dns", resolver)
    .build()
    .unwrap();
    let path = "/grpc.examples.echo.Echo/UnaryEcho";
    tokio::time::timeout(PATIENCE, async {
        while channel.method_config(path).is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the record's config is applied");
    assert_eq!(
        channel.method_config(path).unwrap().timeout,
        Some(Duration::from_millis(300))
    );
    // The choice for Rust clients that drew 50: the last one, not the 40 % canary.
    let config = channel.service_config();
    assert_eq!(config.policy().unwrap().name(), "round_robin");
    assert_eq!(
        asked.lock().unwrap().as_slice(),
        ["_grpc_config.backend.test."]
    );
}
