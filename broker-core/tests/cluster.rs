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

#[test]
fn a_shared_group_chooses_among_nodes_and_a_node_among_its_members() {
    let mut a = node(2);
    let (m1, _) = connect_with(&mut a, 1, &connect_packet("m1", true, V5));
    subscribe(&mut a, m1, "$share/g/s/#", QoS::AtLeastOnce);
    // The link hears of the group's first local member (not of plain interest in "s/#").
    let out = std::mem::take(&mut a.cluster_out);
    assert!(
        out.iter().any(|(to, m)| *to == cluster::link(2)
            && matches!(m, ShardMsg::SharedJoin { group, .. } if cluster::share_name(group) == "$share/g/s/#")),
        "{out:?}"
    );
    assert!(
        !out.iter()
            .any(|(_, m)| matches!(m, ShardMsg::Interest { .. })),
        "{out:?}"
    );
    // Node B (slot 0) has members too: one more member of the group here.
    assert!(a.brokers[0].handle_cluster_group(0, "$share/g/s/#", true));
    a.pump();
    let (p, _) = connect_with(&mut a, 0, &connect_packet("pub", true, V5));
    for i in 1..=4u16 {
        publish(
            &mut a,
            p,
            "s/x",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i,
        );
    }
    let local = publishes(&a.recv(m1));
    let remote: Vec<_> = std::mem::take(&mut a.cluster_out)
        .into_iter()
        .filter_map(|(to, m)| match m {
            ShardMsg::SharedDeliver {
                msg, group, ack, ..
            } => Some((to, msg, group, ack)),
            _ => None,
        })
        .collect();
    // Round robin between the local member and node B: each message once.
    assert_eq!(local.len(), 2, "{local:?}");
    assert_eq!(remote.len(), 2);
    assert!(remote
        .iter()
        .all(|(to, ..)| *to == cluster::node_shard(2, 0)));
    // The PUBACKs of the two that went to node B wait for it.
    assert_eq!(types(&a.recv(p)).len(), 2);

    // Node B: the chosen message goes to one of its members, never on to another node.
    let mut b = node(1);
    let (b1, _) = connect_with(&mut b, 0, &connect_packet("b1", true, V5));
    subscribe(&mut b, b1, "$share/g/s/#", QoS::AtLeastOnce);
    assert!(b.brokers[0].handle_cluster_group(0, "$share/g/s/#", true));
    b.pump();
    b.cluster_out.clear();
    let (_, msg, group, _) = &remote[0];
    let mut frame = Vec::new();
    assert!(cluster::encode(msg, a.now, &mut frame));
    let share = cluster::share_name(group);
    assert!(b.brokers[0].handle_cluster_shared(b.now, &frame, &share, Some(5)));
    b.pump();
    assert_eq!(publishes(&b.recv(b1)).len(), 1);
    assert_eq!(b.cluster_acks, vec![5]);
    assert!(b.cluster_out.is_empty(), "{:?}", b.cluster_out);
    // A plain forward of the same topic does not reach the group (its choice was made).
    assert!(b.brokers[0].handle_cluster_publish(b.now, &frame, 1, Some(6)));
    b.pump();
    assert!(publishes(&b.recv(b1)).is_empty());
    assert_eq!(b.cluster_acks, vec![5, 6]);
}

/// A frame of a message published on node `a` (its remote interest on `filter`).
fn frame_of(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut a = node(1);
    let m = ShardMsg::Interest {
        from: cluster::node_shard(1, 0),
        filter: "#".into(),
        add: true,
    };
    let now = a.now;
    a.brokers[0].handle_shard_msg(now, m);
    let (p, _) = connect_with(&mut a, 0, &connect_packet("framer", true, V5));
    publish(&mut a, p, topic, payload, QoS::AtLeastOnce, false, 1);
    let out = std::mem::take(&mut a.cluster_out);
    let Some((_, ShardMsg::Publish { msg, .. })) = out.into_iter().next() else {
        panic!("nothing forwarded")
    };
    let mut frame = Vec::new();
    assert!(cluster::encode(&msg, a.now, &mut frame));
    frame
}

#[test]
fn a_session_moved_out_leaves_without_its_will_and_kept_messages_reach_only_it() {
    let mut a = node(1);
    // A watcher of wills, and a persistent session with a delayed will, offline.
    let (w, _) = connect_with(&mut a, 0, &conn("watcher", V5));
    subscribe(&mut a, w, "will/#", QoS::AtLeastOnce);
    let mut c = connect_packet("mover", false, V5);
    c.properties.session_expiry_interval = Some(3600);
    let will_props = Properties {
        will_delay_interval: Some(5),
        ..Default::default()
    };
    c.will = Some(Will {
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: will_props,
        topic: "will/mover",
        payload: b"bye",
    });
    let (m, _) = connect_with(&mut a, 0, &c);
    subscribe(&mut a, m, "kept/#", QoS::AtLeastOnce);
    let now = a.now;
    // Moved while connected: DISCONNECT 0x8E, the session leaves.
    assert!(a.brokers[0].move_out(now, "mover"));
    a.pump();
    let got = recv(&mut a, m);
    assert_eq!(
        disconnect_code(&got),
        Some(ReasonCode::SessionTakenOver),
        "{got:?}"
    );
    assert!(!a.brokers[0].move_out(now, "mover"), "the session is gone");
    // Its will goes with it: not published here, even after its delay.
    a.advance(10_000);
    a.pump();
    assert!(publishes(&a.recv(w)).is_empty());

    // Messages kept for a session that came here: only to it, only where its
    // subscriptions match.
    let (k, _) = {
        let mut c = connect_packet("keeper", false, V5);
        c.properties.session_expiry_interval = Some(3600);
        connect_with(&mut a, 0, &c)
    };
    subscribe(&mut a, k, "kept/#", QoS::AtLeastOnce);
    let (other, _) = connect_with(&mut a, 0, &conn("other", V5));
    subscribe(&mut a, other, "kept/#", QoS::AtLeastOnce);
    a.drop_connection(k);
    a.pump();
    let now = a.now;
    assert!(a.brokers[0].queue_for_session(now, "keeper", &frame_of("kept/1", b"one")));
    assert!(!a.brokers[0].queue_for_session(now, "keeper", &frame_of("elsewhere", b"no")));
    assert!(!a.brokers[0].queue_for_session(now, "nobody", &frame_of("kept/2", b"no")));
    a.pump();
    assert!(
        publishes(&a.recv(other)).is_empty(),
        "not to other sessions"
    );
    let mut c = connect_packet("keeper", false, V5);
    c.properties.session_expiry_interval = Some(3600);
    let (k2, ack) = connect_with(&mut a, 0, &c);
    let P::ConnAck(ack) = owned(&ack) else {
        panic!("{ack:?}")
    };
    assert!(ack.session_present);
    let got = publishes(&a.recv(k2));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].0.as_str(), &got[0].1[..]), ("kept/1", &b"one"[..]));
}

#[test]
fn a_session_moved_out_with_a_shadow_queues_what_other_nodes_still_send_here() {
    let mut a = node(1);
    let mut c = connect_packet("mover", false, V5);
    c.properties.session_expiry_interval = Some(3600);
    let (m, _) = connect_with(&mut a, 0, &c);
    subscribe(&mut a, m, "kept/#", QoS::AtLeastOnce);
    subscribe(&mut a, m, "$share/g/kept/#", QoS::AtLeastOnce);
    let now = a.now;
    let filters = a.brokers[0].move_out_shadowed(now, "mover");
    assert_eq!(
        filters,
        Some(vec!["kept/#".into()]),
        "shared ones stay with the group"
    );
    a.pump();
    let got = recv(&mut a, m);
    assert_eq!(
        disconnect_code(&got),
        Some(ReasonCode::SessionTakenOver),
        "{got:?}"
    );
    // Another node still routes here: the shadow queues it (its records reach the
    // session's new node through the cluster's shared copy).
    let now = a.now;
    assert!(a.brokers[0].handle_cluster_publish(now, &frame_of("kept/1", b"late"), 1, Some(9)));
    a.pump();
    assert_eq!(a.cluster_acks, vec![9], "confirmed once queued");
    let (back, _) = connect_with(&mut a, 0, &c);
    let got = publishes(&a.recv(back));
    assert_eq!(got.len(), 1, "{got:?}");
    // Without a session there is no shadow.
    let now = a.now;
    assert_eq!(a.brokers[0].move_out_shadowed(now, "nobody"), None);
}
