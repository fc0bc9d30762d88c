//! The registry itself failing over: members of a real three-member etcd cluster killed,
//! restarted, frozen, and all of them down at once, while endpoints are written and calls go
//! through a croupier channel over echo servers registered in etcd.

mod support;

use std::time::{Duration, Instant};

use croupier_etcd::{EtcdError, EtcdEvent};
use support::{
    addresses_of, channel, endpoint_value, register, resolver, run, servers, until_addresses,
    Calls, Cluster, Events, Setup,
};

/// Whether `event` is a failure of `member`.
fn failed(event: &EtcdEvent, member: &str) -> bool {
    match event {
        EtcdEvent::Error(EtcdError::Member { member: m, .. })
        | EtcdEvent::Error(EtcdError::Timeout { member: m, .. }) => m == member,
        _ => false,
    }
}

#[test]
fn a_member_killed_and_restarted_during_writes_loses_no_endpoint() {
    run(Duration::from_secs(60), async {
        let Setup {
            mut cluster,
            fleet,
            events,
            channel,
        } = Setup::start(5, 2).await;
        let calls = Calls::start(&channel);

        // The resolver is on the first member: kill it while a write is under way.
        let first = cluster.member(0);
        let value = endpoint_value(fleet[2].address());
        let write = tokio::spawn(cluster.etcdctl_on(&[1, 2], &["put", "services/echo/2", &value]));
        cluster.kill(0);
        write.await.expect("the write ends");
        until_addresses(&channel, &addresses_of(&fleet[..3])).await;
        events.until(|event| failed(event, &first)).await;
        cluster
            .put("services/echo/3", &endpoint_value(fleet[3].address()))
            .await;
        until_addresses(&channel, &addresses_of(&fleet[..4])).await;

        // Back, and then the member the resolver moved to goes.
        cluster.restart(0).await;
        cluster.del("services/echo/0").await;
        until_addresses(&channel, &addresses_of(&fleet[1..4])).await;
        let second = match events.lists().last() {
            Some((member, _, _)) => member.clone(),
            None => unreachable!("lists were sent"),
        };
        assert_ne!(second, first, "the resolver moved off the killed member");
        let serving = [0, 1, 2]
            .into_iter()
            .find(|&i| cluster.member(i) == second)
            .unwrap();
        cluster.kill(serving);
        cluster
            .put("services/echo/4", &endpoint_value(fleet[4].address()))
            .await;
        until_addresses(&channel, &addresses_of(&fleet[1..])).await;
        events.until(|event| failed(event, &second)).await;
        cluster.restart(serving).await;

        // No list lost an endpoint on the way: after the first, each held at least the two
        // that were never deleted, and each failover resumed the watch instead of reading all.
        let lists = events.lists();
        assert!(
            lists.iter().all(|(_, endpoints, _)| *endpoints >= 2),
            "{lists:?}"
        );
        let full_reads = lists.iter().filter(|(_, _, full)| *full).count();
        assert_eq!(full_reads, 1, "{lists:?}");
        calls.stop_all_succeeded().await;
    });
}

#[test]
fn with_every_member_down_the_last_list_serves_and_the_resolver_recovers() {
    run(Duration::from_secs(60), async {
        let Setup {
            mut cluster,
            fleet,
            events,
            channel,
        } = Setup::start(3, 2).await;
        let calls = Calls::start(&channel);

        for i in 0..3 {
            cluster.kill(i);
        }
        let all_failed = events.until_all_members_failed().await;
        for i in 0..3 {
            assert!(all_failed.contains(&cluster.member(i)), "{all_failed}");
        }
        // Five seconds without a registry: the channel serves its last list all along.
        tokio::time::sleep(Duration::from_secs(5)).await;
        until_addresses(&channel, &addresses_of(&fleet[..2])).await;

        let restarted = Instant::now();
        for i in 0..3 {
            cluster.start_again(i);
        }
        for i in 0..3 {
            cluster.until_healthy(i).await;
        }
        cluster
            .put("services/echo/2", &endpoint_value(fleet[2].address()))
            .await;
        until_addresses(&channel, &addresses_of(&fleet)).await;
        println!(
            "all members down 5 s; restarted -> a new endpoint in the channel: {:?}",
            restarted.elapsed()
        );
        calls.stop_all_succeeded().await;
    });
}

#[test]
fn a_frozen_member_is_left_by_keepalive_and_a_compacted_history_is_read_in_full() {
    run(Duration::from_secs(60), async {
        let mut cluster = Cluster::start(3).await;
        let fleet = servers(3).await;
        register(&cluster, "services/echo", &fleet[..1]).await;
        // The resolver starts on a follower, so that the writes below need no election.
        let leader = cluster.leader().await;
        let follower = (leader + 1) % 3;
        let order = [follower, leader, (leader + 2) % 3];
        let target = format!("etcd://{}/services/echo", cluster.members_in(&order));
        let events = Events::default();
        // Keepalive finds the frozen member in 2 to 4 s, long after the writes and the
        // compaction below are made.
        let resolver = resolver(&events).keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        let channel = channel(&target, resolver);
        until_addresses(&channel, &addresses_of(&fleet[..1])).await;
        let calls = Calls::start(&channel);

        // The member the resolver watches hangs, its connections open; meanwhile the others
        // take writes and forget the history of them.
        let frozen = cluster.member(follower);
        cluster.freeze(follower);
        let written = Instant::now();
        register(&cluster, "services/echo", &fleet).await;
        cluster.compact(leader).await;
        let compacted = written.elapsed();
        until_addresses(&channel, &addresses_of(&fleet)).await;
        let left = written.elapsed();
        events.until(|event| failed(event, &frozen)).await;
        assert!(
            compacted < left,
            "compacted after {compacted:?}, left after {left:?}"
        );
        // The watch could not resume past the compaction on the next member: it read in full.
        let lists = events.lists();
        let (member, endpoints, full_read) = lists.last().unwrap().clone();
        assert!(full_read && endpoints == 3 && member != frozen, "{lists:?}");
        cluster.thaw(follower);
        calls.stop_all_succeeded().await;
    });
}

#[test]
fn a_member_left_without_quorum_is_not_trusted_and_the_list_serves_until_quorum_returns() {
    run(Duration::from_secs(60), async {
        let Setup {
            mut cluster,
            fleet,
            events,
            channel,
        } = Setup::start(2, 1).await;
        let calls = Calls::start(&channel);

        // The last member runs, but without a leader: its watch is refused, not left hanging.
        cluster.kill(0);
        cluster.kill(1);
        let survivor = cluster.member(2);
        let all_failed = events.until_all_members_failed().await;
        assert!(
            all_failed.contains(&format!("etcd member {survivor}"))
                && all_failed.contains("leader"),
            "{all_failed}"
        );

        cluster.restart(1).await;
        cluster
            .put("services/echo/1", &endpoint_value(fleet[1].address()))
            .await;
        until_addresses(&channel, &addresses_of(&fleet)).await;
        calls.stop_all_succeeded().await;
    });
}
