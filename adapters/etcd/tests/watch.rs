//! The resolver against a real three-member etcd cluster on loopback: endpoints written and
//! deleted with `etcdctl` reach a croupier channel over tonic echo servers at once, one
//! transaction's changes as one update, and calls through the channel keep succeeding.

mod support;

use std::time::{Duration, Instant};

use croupier_etcd::EtcdEvent;
use support::{
    addresses_of, channel, endpoint_value, register, resolver, run, servers, until_addresses,
    Calls, Cluster, Events,
};

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn endpoints_put_and_deleted_with_etcdctl_reach_the_channel_at_once() {
    run(Duration::from_secs(60), async {
        let cluster = Cluster::start(3).await;
        let fleet = servers(2).await;
        register(&cluster, "services/echo", &fleet[..1]).await;
        let events = Events::default();
        let channel = channel(&cluster.target("services/echo"), resolver(&events));
        until_addresses(&channel, &addresses_of(&fleet[..1])).await;
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
