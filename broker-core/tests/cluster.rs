//! Two nodes of a cluster as two simulations, with the test as the shell's cluster thread:
//! interest reaches the link once per filter and node, one message per (publish, remote
//! node) whatever the number of subscribers there, the publisher's PUBACK waits for the
//! remote node's confirmation, retained updates go to the link from the topic's owner
//! shard, `$SYS` stays on its node, and a message from another node goes to no other node.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use broker_core::cluster;
use broker_core::sim::Sim;
use broker_core::{Config, ShardMsg};
use common::*;
use mqtt_proto::*;

fn node(shards: usize) -> Sim {
    let cfg = Config {
        cluster_nodes: 4,
        ..Config::default()
    };
    Sim::new(cfg, shards)
}

/// Carries node `from`'s interest to `to`, where `from` is remote node `slot`.
fn carry_interest(from: &mut Sim, to: &mut Sim, slot: u16) -> Vec<(Box<str>, bool)> {
    let shards = to.brokers.len() as u16;
    let mut seen = Vec::new();
    for (dest, msg) in std::mem::take(&mut from.cluster_out) {
        assert_eq!(dest, cluster::link(from.brokers.len() as u16), "{msg:?}");
        if let ShardMsg::Interest { filter, add, .. } = msg {
            seen.push((filter.clone(), add));
            for b in &mut to.brokers {
                let m = ShardMsg::Interest {
                    from: cluster::node_shard(shards, slot),
                    filter: filter.clone(),
                    add,
                };
                b.handle_shard_msg(to.now, m);
            }
        }
    }
    seen
}

#[test]
fn one_message_per_remote_node_and_puback_after_its_confirmation() {
    let mut a = node(2);
    let mut b = node(2);
    // Three subscribers on node B (two shards), one filter: one route.
    let mut subs = Vec::new();
    for (i, shard) in [(0, 0), (1, 1), (2, 1)] {
        let (c, _) = connect_with(&mut b, shard, &connect_packet(&format!("s{i}"), true, V5));
        subscribe(&mut b, c, "t/#", QoS::AtLeastOnce);
        subs.push(c);
    }
    let interest = carry_interest(&mut b, &mut a, 0);
    // One announcement per shard with subscribers; the link counts them per node.
    assert_eq!(interest.len(), 2, "{interest:?}");
    assert!(interest.iter().all(|(f, add)| &**f == "t/#" && *add));

    let (p, _) = connect_with(&mut a, 0, &connect_packet("pub", true, V5));
    publish(&mut a, p, "t/x", b"hello", QoS::AtLeastOnce, false, 1);
    // Held: node B has not confirmed yet.
    assert!(types(&a.recv(p)).is_empty());
    let out = std::mem::take(&mut a.cluster_out);
    assert_eq!(out.len(), 1, "one message for node B: {out:?}");
    let (to, msg) = out.into_iter().next().unwrap();
    assert_eq!(to, cluster::node_shard(2, 0));
    let ShardMsg::Publish {
        msg,
        publisher_hash,
        ack,
    } = msg
    else {
        panic!("{msg:?}")
    };
    let ack = ack.expect("a QoS 1 message waits for its confirmation");
    let mut frame = Vec::new();
    assert!(cluster::encode(&msg, a.now, &mut frame));
    assert_eq!(cluster::topic(&frame), Some("t/x"));
    // Node B: enters at one shard, reaches the subscribers of both, confirms once.
    assert!(b.brokers[1].handle_cluster_publish(b.now, &frame, publisher_hash, Some(42)));
    b.pump();
    for &s in &subs {
        let got = publishes(&b.recv(s));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].1, b"hello");
        assert_eq!(got[0].2, QoS::AtLeastOnce);
    }
    assert_eq!(b.cluster_acks, vec![42]);
    // A message from another node goes to no node.
    assert!(b.cluster_out.is_empty(), "{:?}", b.cluster_out);
    // The confirmation releases the publisher's PUBACK.
    a.brokers[usize::from(ack.shard)]
        .handle_shard_msg(a.now, ShardMsg::AckRelease { key: ack.key });
    a.pump();
    assert_eq!(types(&a.recv(p)), vec![PacketType::PubAck]);

    // Unsubscribing everywhere withdraws the route (one removal per shard).
    for &s in &subs {
        unsubscribe(&mut b, s, 9, &["t/#"]);
    }
    let gone = carry_interest(&mut b, &mut a, 0);
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(gone.iter().all(|(_, add)| !add));
    publish(&mut a, p, "t/x", b"nobody", QoS::AtLeastOnce, false, 2);
    assert!(a.cluster_out.is_empty());
    assert_eq!(types(&a.recv(p)), vec![PacketType::PubAck]);
}

#[test]
fn retained_updates_go_to_the_link_and_sys_stays_local() {
    let mut a = node(3);
    let (p, _) = connect_with(&mut a, 0, &connect_packet("pub", true, V5));
    publish(&mut a, p, "r/1", b"keep", QoS::AtLeastOnce, true, 1);
    let out = std::mem::take(&mut a.cluster_out);
    let retained: Vec<_> = out
        .iter()
        .filter_map(|(to, m)| match m {
            ShardMsg::RetainApply { msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        retained.len(),
        1,
        "once, from the topic's owner shard: {out:?}"
    );
    assert_eq!(retained[0].0, cluster::link(3));
    // Another node applies it at its owner shard, which replicates it to its shards.
    let mut b = node(2);
    let mut frame = Vec::new();
    assert!(cluster::encode(&retained[0].1, a.now, &mut frame));
    let owner = broker_core::shard::owner_of_topic("r/1", 2);
    assert!(b.brokers[usize::from(owner)].handle_cluster_retain(b.now, &frame));
    b.pump();
    for br in &b.brokers {
        assert_eq!(br.retained_count(), 1);
    }
    assert!(
        b.cluster_out.is_empty(),
        "not sent on again: {:?}",
        b.cluster_out
    );
    // Garbage is refused.
    assert!(!b.brokers[0].handle_cluster_retain(b.now, b"\x30\x05junk"));
    assert!(!b.brokers[0].handle_cluster_publish(b.now, b"", 0, Some(1)));

    // A node subscribed to everything gets no `$SYS` message of this node.
    for br in &mut a.brokers {
        let m = ShardMsg::Interest {
            from: cluster::node_shard(3, 1),
            filter: "$SYS/#".into(),
            add: true,
        };
        br.handle_shard_msg(a.now, m);
    }
    let props = broker_core::mqtt_proto::Properties::default();
    a.brokers[0]
        .publish_as_broker(
            a.now,
            "$SYS/broker/uptime",
            &props,
            b"1",
            QoS::AtMostOnce,
            true,
        )
        .unwrap();
    a.pump();
    assert!(a.cluster_out.is_empty(), "{:?}", a.cluster_out);
}

#[test]
fn a_denied_connect_is_refused_with_server_unavailable() {
    let mut a = node(1);
    let c = a.open(0, V5).unwrap();
    let (shard, conn) = a.conn_id(c).unwrap();
    a.brokers[shard].deny_connect(conn, ReasonCode::ServerUnavailable);
    a.send(c, &Packet::Connect(connect_packet("x", true, V5)));
    let got = recv(&mut a, c);
    let Some(P::ConnAck(ack)) = got.first() else {
        panic!("{got:?}")
    };
    assert_eq!(ack.code, ReasonCode::ServerUnavailable);
    assert!(a.is_closed(c));
}
