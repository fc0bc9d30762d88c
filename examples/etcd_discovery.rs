//! Discovery from etcd: a round_robin channel to `etcd://<members>/services/echo` calls whatever
//! Echo servers are registered under `services/echo/`, and follows the registry as keys come
//! and go. It starts no etcd: it connects to the members given.
//!
//! ```text
//! etcd                                                             # a local member on :2379
//! cargo run --example etcd_discovery --features etcd -- --serve 2 # two servers, registered
//! etcdctl put services/echo/other '{"Op":0,"Addr":"127.0.0.1:50051","Metadata":null}'
//! etcdctl del services/echo/other
//! ```
//!
//! Flags: `--etcd HOST:PORT,HOST:PORT` (or `ETCD_ENDPOINTS`; default `127.0.0.1:2379`),
//! `--prefix services/echo`, `--serve N` (start N Echo servers on loopback and register each
//! under the prefix with a 10 s lease kept alive, so their keys go within 10 s of its end),
//! `--calls N` (stop after N calls; by default it calls once a second until stopped).
//! `ETCD_USER` and `ETCD_PASSWORD` authenticate, if set.

use std::process::ExitCode;
use std::time::Duration;

use croupier::PolicyConfig;
use croupier_echo_grpc::{EchoClient, EchoRequest, GrpcEchoServer, ServerOptions};
use croupier_etcd::{EtcdEvent, EtcdResolver};
use croupier_tokio::grpc::Http2Channel;

/// What the command line asks for.
struct Options {
    members: String,
    prefix: String,
    serve: usize,
    calls: Option<usize>,
}

const USAGE: &str =
    "usage: etcd_discovery [--etcd HOST:PORT,...] [--prefix PREFIX] [--serve N] [--calls N]";

fn options() -> Result<Options, String> {
    let mut options = Options {
        members: std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into()),
        prefix: "services/echo".into(),
        serve: 0,
        calls: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let count = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag} takes a number, not {value:?}\n{USAGE}"))
        };
        match flag.as_str() {
            "--etcd" => options.members = value.clone(),
            "--prefix" => options.prefix = value.trim_matches('/').to_owned(),
            "--serve" => options.serve = count()?,
            "--calls" => options.calls = Some(count()?),
            _ => return Err(format!("unexpected argument {flag:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// The resolver, authenticated if the environment says so, printing what it does.
fn resolver() -> EtcdResolver {
    let mut resolver = EtcdResolver::new().on_event(|event| match event {
        EtcdEvent::Resolved {
            member,
            revision,
            endpoints,
            full_read,
            ..
        } => {
            let how = if *full_read { "read" } else { "watched" };
            eprintln!("etcd: {endpoints} endpoints ({how} on {member}, revision {revision})");
        }
        EtcdEvent::Error(error) => eprintln!("etcd: {error}"),
        _ => {}
    });
    if let (Ok(user), Ok(password)) = (std::env::var("ETCD_USER"), std::env::var("ETCD_PASSWORD")) {
        resolver = resolver.user(user, password);
    }
    resolver
}

/// Starts `count` Echo servers and registers them under `prefix/` in etcd, on a lease kept
/// alive in the background: the servers, which stop when dropped.
async fn serve(options: &Options) -> Result<Vec<GrpcEchoServer>, String> {
    let mut servers = Vec::new();
    if options.serve == 0 {
        return Ok(servers);
    }
    let members: Vec<&str> = options.members.split(',').collect();
    let mut connect = etcd_client::ConnectOptions::new();
    if let (Ok(user), Ok(password)) = (std::env::var("ETCD_USER"), std::env::var("ETCD_PASSWORD")) {
        connect = connect.with_user(user, password);
    }
    let connecting = etcd_client::Client::connect(&members, Some(connect));
    let mut client = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| format!("etcd at {} did not answer within 5 s", options.members))?
        .map_err(|error| format!("etcd at {}: {error}", options.members))?;
    let grant = tokio::time::timeout(Duration::from_secs(5), client.lease_grant(10, None))
        .await
        .map_err(|_| format!("etcd at {} did not answer within 5 s", options.members))?
        .map_err(|error| format!("etcd at {}: {error}", options.members))?;
    for _ in 0..options.serve {
        let server = GrpcEchoServer::start(0, ServerOptions::new())
            .await
            .map_err(|error| format!("no free port on loopback: {error}"))?;
        let key = format!("{}/{}", options.prefix, server.address());
        let value = format!(
            r#"{{"Op":0,"Addr":"{}","Metadata":null}}"#,
            server.address()
        );
        let put = etcd_client::PutOptions::new().with_lease(grant.id());
        client
            .put(key.clone(), value, Some(put))
            .await
            .map_err(|error| format!("registering {key}: {error}"))?;
        eprintln!("serving on {}, registered as {key}", server.address());
        servers.push(server);
    }
    let lease = grant.id();
    tokio::spawn(async move {
        let Ok((mut keeper, mut replies)) = client.lease_keep_alive(lease).await else {
            return;
        };
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if keeper.keep_alive().await.is_err() || replies.message().await.is_err() {
                eprintln!("etcd: the registration's lease could not be kept alive");
                return;
            }
        }
    });
    Ok(servers)
}

async fn run() -> Result<(), String> {
    let options = options()?;
    let _servers = serve(&options).await?;
    let target = format!("etcd://{}/{}", options.members, options.prefix);
    let channel: Http2Channel<tonic::body::Body> = croupier_tokio::grpc::builder(&target)
        .resolver("etcd", resolver())
        .policy(PolicyConfig::round_robin())
        .build()
        .map_err(|error| error.to_string())?;
    eprintln!("calling whatever is registered under {target}");
    let mut client = EchoClient::new(channel);
    let mut made = 0;
    while options.calls.is_none_or(|calls| made < calls) {
        let mut request = tonic::Request::new(EchoRequest {
            message: "this is examples/etcd_discovery".into(),
        });
        request.set_timeout(Duration::from_secs(5));
        match client.unary_echo(request).await {
            Ok(reply) => println!("{}", reply.into_inner().message),
            Err(status) => println!("the call failed: {status}"),
        }
        made += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
