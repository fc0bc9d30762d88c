//! The resolver against a real three-member etcd cluster on loopback: endpoints written and
//! deleted with `etcdctl` reach a croupier channel over tonic echo servers at once, one
//! transaction's changes as one update, and calls through the channel keep succeeding.

mod support;

use std::time::{Duration, Instant};

use croupier_echo_grpc::EchoClient;
use croupier_etcd::{EtcdError, EtcdEvent};
use support::{
    addresses_of, call, channel, channel_to, endpoint_value, register, resolver, run, servers,
    until_addresses, Calls, Cluster, Events, Setup, PATIENCE,
};

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn endpoints_put_and_deleted_with_etcdctl_reach_the_channel_at_once() {
    run(Duration::from_secs(60), async {
        let Setup {
            cluster,
            fleet,
            events,
            channel,
        } = Setup::start(2, 1).await;
        let calls = Calls::start(&channel);
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            // Timed from the moment etcdctl is started: its own start-up counts.
            let started = Instant::now();
            cluster
                .put("services/echo/1", &endpoint_value(fleet[1].address()))
                .await;
            until_addresses(&channel, &addresses_of(&fleet)).await;
            added.push(started.elapsed());
            let started = Instant::now();
            cluster.del("services/echo/1").await;
            until_addresses(&channel, &addresses_of(&fleet[..1])).await;
            removed.push(started.elapsed());
        }
        let (added, removed) = (median(added), median(removed));
        println!(
            "etcdctl put -> endpoint in the channel: median {added:?} of 20; \
             etcdctl del -> endpoint gone: median {removed:?} of 20 (each from etcdctl's start)"
        );
        // The figure is printed; the bound asserted is generous, for a busy machine.
        assert!(added < Duration::from_secs(1) && removed < Duration::from_secs(1));
        // Every put and every delete reached the channel from the watch, not a re-read.
        let watched = events
            .all()
            .iter()
            .filter(|event| {
                matches!(
                    event,
                    EtcdEvent::Resolved {
                        full_read: false,
                        ..
                    }
                )
            })
            .count();
        assert!(watched >= 40, "{watched} updates from the watch");
        calls.stop_all_succeeded().await;
    });
}

/// The lists the resolver sent, as (endpoints, whether from a full read).
fn lists(events: &Events) -> Vec<(usize, bool)> {
    events
        .lists()
        .into_iter()
        .map(|(_, endpoints, full_read)| (endpoints, full_read))
        .collect()
}

#[test]
fn ten_thousand_keys_written_in_one_transaction_arrive_as_one_update() {
    run(Duration::from_secs(90), async {
        let cluster = Cluster::start(3).await;
        let fleet = servers(1).await;
        cluster
            .put("services/bulk/server", &endpoint_value(fleet[0].address()))
            .await;
        let events = Events::default();
        let watching = channel(&cluster.target("services/bulk"), resolver(&events));
        until_addresses(&watching, &addresses_of(&fleet)).await;
        let calls = Calls::start(&watching);

        // 10,000 more, none of which answers (loopback addresses with nothing on port 9):
        // round_robin keeps calling the one that does.
        let bulk = (0..10_000u32).map(|i| {
            let address = format!("127.1.{}.{}:9", i / 250, 1 + i % 250);
            (format!("services/bulk/{i:05}"), endpoint_value(address))
        });
        let written = Instant::now();
        cluster.put_all(0, bulk).await;
        let all = tokio::time::timeout(PATIENCE, async {
            loop {
                let count = watching.subchannels().await.len();
                if count == 10_001 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            all.is_ok(),
            "{} subchannels",
            watching.subchannels().await.len()
        );
        let watched = written.elapsed();
        assert_eq!(lists(&events), [(1, true), (10_001, false)]);

        // A channel that starts now reads them in pages, and takes them as one update too.
        let reading = Events::default();
        let started = Instant::now();
        let _fresh = channel(&cluster.target("services/bulk"), resolver(&reading));
        reading
            .until(|event| matches!(event, EtcdEvent::Resolved { .. }))
            .await;
        println!(
            "10,000 keys in one transaction -> 10,001 subchannels: {watched:?} (from the \
             transaction's start); a full read of 10,001 keys in pages: {:?}",
            started.elapsed()
        );
        assert_eq!(lists(&reading), [(10_001, true)]);

        // A channel whose limit is lower refuses the list, saying so.
        let refused = Events::default();
        let limited = croupier_tokio::grpc::builder(cluster.target("services/bulk"))
            .resolver("etcd", resolver(&refused))
            .max_endpoints(10_000)
            .build()
            .unwrap();
        refused
            .until(|event| matches!(event, EtcdEvent::Resolved { .. }))
            .await;
        let error = call(&mut EchoClient::new(limited)).await.unwrap_err();
        assert!(
            error.contains("10001 endpoints") && error.contains("limit of 10000"),
            "{error}"
        );
        calls.stop_all_succeeded().await;
    });
}

#[test]
fn a_malformed_value_is_skipped_with_an_error_naming_its_key_and_an_empty_prefix_says_so() {
    run(Duration::from_secs(60), async {
        let Setup {
            cluster,
            fleet,
            events,
            channel,
        } = Setup::start(3, 2).await;
        let calls = Calls::start(&channel);
        // Written while the channel watches: the rest stays.
        cluster.put("services/echo/bad", "{\"Addr\":").await;
        let skipped = events
            .until(|event| matches!(event, EtcdEvent::Error(EtcdError::MalformedValue { .. })))
            .await;
        let EtcdEvent::Error(EtcdError::MalformedValue { key, reason }) = skipped else {
            unreachable!("a malformed value was awaited")
        };
        assert_eq!(key, "services/echo/bad");
        assert!(reason.contains("not JSON"), "{reason}");

        // Fixed, it joins the rest.
        cluster
            .put("services/echo/bad", &endpoint_value(fleet[2].address()))
            .await;
        until_addresses(&channel, &addresses_of(&fleet)).await;
        calls.stop_all_succeeded().await;

        // A prefix whose only key is malformed fails calls with the key's name.
        cluster
            .put("services/broken/0", r#"{"Op":0,"Addr":""}"#)
            .await;
        let broken = channel_to(&cluster.target("services/broken"));
        let error = call(&mut EchoClient::new(broken)).await.unwrap_err();
        assert!(
            error.contains("services/broken/0") && error.contains("Addr is empty"),
            "{error}"
        );

        // A prefix with no key at all says so, and takes the first one registered.
        let empty = channel_to(&cluster.target("services/nothing"));
        let error = call(&mut EchoClient::new(empty.clone())).await.unwrap_err();
        assert!(
            error.contains("no endpoint is registered under etcd prefix")
                && error.contains("services/nothing/"),
            "{error}"
        );
        cluster
            .put("services/nothing/0", &endpoint_value(fleet[0].address()))
            .await;
        until_addresses(&empty, &addresses_of(&fleet[..1])).await;
        call(&mut EchoClient::new(empty)).await.unwrap();
    });
}

#[test]
fn metadata_reaches_the_channel_as_weight_labels_and_server_name() {
    run(Duration::from_secs(60), async {
        let cluster = Cluster::start(3).await;
        let fleet = servers(1).await;
        let value = format!(
            r#"{{"Op":0,"Addr":"{}","Metadata":{{"weight":3,"zone":"eu-1a","server_name":"echo.internal"}}}}"#,
            fleet[0].address()
        );
        cluster.put("services/echo/0", &value).await;
        let channel = channel_to(&cluster.target("services/echo"));
        call(&mut EchoClient::new(channel)).await.unwrap();
        let seen = fleet[0].seen();
        let last = seen.last().expect("the server saw the call");
        assert_eq!(last.authority.as_deref(), Some("echo.internal"));
    });
}

#[test]
fn a_lost_backend_makes_the_channel_ask_and_the_resolver_read_in_full() {
    run(Duration::from_secs(60), async {
        let Setup {
            cluster: _cluster,
            mut fleet,
            events,
            channel,
        } = Setup::start(2, 2).await;
        assert_eq!(lists(&events), [(2, true)]);
        // The channel asks for re-resolution when a connection is lost.
        let lost = fleet.pop().unwrap();
        let mut client = EchoClient::new(channel.clone());
        for _ in 0..4 {
            let _ = call(&mut client).await;
        }
        lost.kill().await;
        events
            .until(|_| lists(&events).iter().filter(|(_, full)| *full).count() >= 2)
            .await;
    });
}

#[test]
fn with_etcds_auth_on_the_resolver_reads_as_its_user_and_never_shows_the_password() {
    run(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(3).await;
        let fleet = servers(2).await;
        register(&cluster, "services/echo", &fleet[..1]).await;
        cluster
            .enable_auth("croupier", "s3cret-pw", "services/echo/")
            .await;

        // Without credentials, every member refuses: calls fail saying so, for each member.
        let refused = Events::default();
        let anonymous = channel(&cluster.target("services/echo"), resolver(&refused));
        let error = call(&mut EchoClient::new(anonymous)).await.unwrap_err();
        assert!(
            error.contains("no etcd member could list") && error.contains(&cluster.member(2)),
            "{error}"
        );

        // With a wrong password, the same, and the password appears nowhere.
        let wrong = Events::default();
        let resolver_with_wrong = resolver(&wrong).user("croupier", "not-the-pw");
        assert!(!format!("{resolver_with_wrong:?}").contains("not-the-pw"));
        let mistaken = channel(&cluster.target("services/echo"), resolver_with_wrong);
        let error = call(&mut EchoClient::new(mistaken)).await.unwrap_err();
        assert!(error.contains("no etcd member could list"), "{error}");
        assert!(!error.contains("not-the-pw"), "{error}");
        assert!(!format!("{:?}", wrong.all()).contains("not-the-pw"));

        // As the user, it reads and watches.
        let events = Events::default();
        let authenticated = resolver(&events).user("croupier", "s3cret-pw");
        let channel = channel(&cluster.target("services/echo"), authenticated);
        until_addresses(&channel, &addresses_of(&fleet[..1])).await;
        cluster
            .put("services/echo/1", &endpoint_value(fleet[1].address()))
            .await;
        until_addresses(&channel, &addresses_of(&fleet)).await;
        call(&mut EchoClient::new(channel)).await.unwrap();
        assert!(!format!("{:?}", events.all()).contains("s3cret-pw"));
    });
}
