//! The same rules with three shards: publishers, subscribers and shared-group members on
//! different shards, takeover, retained messages. Connections are handed to the shard
//! that owns their client identifier, as the shell does.

use crate::common::*;
use broker_core::policy::DropReason;
use broker_core::shard::owner_of_client;
use broker_core::sim::{Client, Sim};
use broker_core::{Config, SharedStrategy};
use mqtt_proto::*;

const N: u16 = 3;

fn sim3() -> Sim {
    Sim::new(Config::default(), usize::from(N))
}

/// Connects a v5 client whose identifier is owned by `shard`, through shard `via`.
fn on(s: &mut Sim, prefix: &str, shard: u16, via: usize, expiry: u32) -> (Client, String) {
    let id = id_on(prefix, shard, N);
    let mut c = conn(&id, V5);
    c.properties.session_expiry_interval = (expiry > 0).then_some(expiry);
    let (cl, _) = connect_ok_on(s, via, &c);
    assert_eq!(
        s.conn_id(cl).unwrap().0,
        usize::from(shard),
        "handed to the owner"
    );
    (cl, id)
}

#[test]
fn connections_are_handed_to_the_owner_shard() {
    let mut s = sim3();
    for via in 0..3 {
        for owner in 0..N {
            let (c, id) = on(&mut s, &format!("h{via}-"), owner, via, 0);
            assert_eq!(owner_of_client(&id, N), owner);
            s.send(c, &Packet::PingReq);
            assert_eq!(recv(&mut s, c), [P::PingResp]);
        }
    }
    let total: usize = s.brokers.iter().map(|b| b.connection_count()).sum();
    assert_eq!(total, 9);
}

#[test]
fn assigned_identifiers_stay_on_the_accepting_shard() {
    let mut s = sim3();
    for shard in 0..3 {
        let (c, ack) = connect_ok_on(&mut s, shard, &conn("", V5));
        let id = ack.props.assigned_client_identifier.unwrap();
        assert_eq!(s.conn_id(c).unwrap().0, shard);
        assert_eq!(usize::from(owner_of_client(&id, N)), shard);
    }
}

#[test]
fn publish_and_subscribe_across_shards() {
    let mut s = sim3();
    let (sub, _) = on(&mut s, "sub", 2, 0, 0);
    subscribe_opts(&mut s, sub, "x/+", SubscriptionOptions::qos(Q2), Some(4));
    subscribe_opts(&mut s, sub, "x/#", SubscriptionOptions::qos(Q1), Some(5));
    let (p, _) = on(&mut s, "pub", 0, 1, 0);
    for (q, id) in [(Q0, 0u16), (Q1, 1), (Q2, 2)] {
        publish(
            &mut s,
            p,
            "x/y",
            format!("{}", q as u8).as_bytes(),
            q,
            false,
            id,
        );
    }
    send_ack(&mut s, p, PacketType::PubRel, 2);
    let got = pubs(&recv_acking(&mut s, sub));
    // One copy each, at the maximum granted QoS, with both identifiers [MQTT-3.3.4-2]
    // [MQTT-3.3.4-3] [MQTT-3.3.4-4].
    assert_eq!(got.iter().map(|x| x.qos).collect::<Vec<_>>(), [Q0, Q1, Q2]);
    for x in &got {
        let mut ids = x.props.subscription_identifiers.clone();
        ids.sort();
        assert_eq!(ids, [4, 5]);
    }
    // The publisher's acknowledgements say someone received it.
    assert_eq!(
        recv(&mut s, p),
        [
            P::PubAck {
                pid: 1,
                code: ReasonCode::Success
            },
            P::PubRec {
                pid: 2,
                code: ReasonCode::Success
            },
            P::PubComp {
                pid: 2,
                code: ReasonCode::Success
            },
        ]
    );
    // Unsubscribing withdraws the interest from the other shards.
    unsubscribe(&mut s, sub, 9, &["x/+", "x/#"]);
    publish(&mut s, p, "x/y", b"nobody", Q1, false, 3);
    assert_eq!(
        recv(&mut s, p),
        [P::PubAck {
            pid: 3,
            code: ReasonCode::NoMatchingSubscribers
        }]
    );
}

#[test]
fn ordering_per_publisher_and_topic_across_shards() {
    let mut s = sim3();
    let mut subs = Vec::new();
    for shard in 0..N {
        let (c, _) = on(&mut s, "sub", shard, 0, 0);
        subscribe(&mut s, c, "o/#", Q2);
        subs.push(c);
    }
    let pubs_: Vec<Client> = (0..N).map(|sh| on(&mut s, "pub", sh, 2, 0).0).collect();
    for i in 0..30u16 {
        for (k, p) in pubs_.iter().enumerate() {
            let q = [Q0, Q1, Q2][usize::from(i % 3)];
            publish(
                &mut s,
                *p,
                "o/t",
                format!("{k}:{i}").as_bytes(),
                q,
                false,
                i + 1,
            );
            if q == Q2 {
                send_ack(&mut s, *p, PacketType::PubRel, i + 1);
            }
        }
    }
    for c in subs {
        let got = payloads(&recv_acking(&mut s, c));
        assert_eq!(got.len(), 90);
        for k in 0..3 {
            let mine: Vec<u16> = got
                .iter()
                .filter(|x| x.starts_with(&format!("{k}:")))
                .map(|x| x[2..].parse().unwrap())
                .collect();
            // [MQTT-4.6.0-5]
            assert_eq!(mine, (0..30).collect::<Vec<_>>());
        }
    }
}

#[test]
fn takeover_across_shards() {
    let mut s = sim3();
    let id = id_on("dup", 1, N);
    let mut cp = conn(&id, V5);
    cp.properties.session_expiry_interval = Some(600);
    let (first, _) = connect_ok_on(&mut s, 0, &cp);
    subscribe(&mut s, first, "t", Q1);
    cp.clean_start = false;
    let (second, ack) = connect_ok_on(&mut s, 2, &cp);
    // [MQTT-3.1.4-3] wherever the second connection arrived.
    assert_disconnected(&mut s, first, ReasonCode::SessionTakenOver);
    assert!(ack.session_present);
    let total: usize = s.brokers.iter().map(|b| b.session_count()).sum();
    assert_eq!(total, 1);
    let (p, _) = on(&mut s, "pub", 2, 2, 0);
    publish(&mut s, p, "t", b"to the new one", Q1, false, 1);
    assert_eq!(payloads(&recv(&mut s, second)), ["to the new one"]);
}

#[test]
fn retained_messages_consistent_on_every_shard() {
    let mut s = sim3();
    let publishers: Vec<Client> = (0..N).map(|sh| on(&mut s, "p", sh, 0, 0).0).collect();
    publish(&mut s, publishers[0], "r/a", b"v1", Q1, true, 1);
    publish(&mut s, publishers[1], "r/a", b"v2", Q1, true, 1);
    publish(&mut s, publishers[2], "r/b", b"b", Q0, true, 0);
    for b in &s.brokers {
        assert_eq!(b.retained_count(), 2);
    }
    for shard in 0..N {
        let (c, _) = on(&mut s, "reader", shard, 0, 0);
        subscribe(&mut s, c, "r/#", Q1);
        let mut got = payloads(&recv(&mut s, c));
        got.sort();
        // [MQTT-3.3.1-5] the latest value, whatever the shard.
        assert_eq!(got, ["b", "v2"], "shard {shard}");
    }
    publish(&mut s, publishers[2], "r/a", b"", Q1, true, 2);
    for b in &s.brokers {
        // [MQTT-3.3.1-6] deleted everywhere.
        assert_eq!(b.retained_count(), 1);
    }
}

#[test]
fn wills_and_no_local_across_shards() {
    let mut s = sim3();
    let (w, _) = on(&mut s, "watch", 0, 0, 0);
    subscribe(&mut s, w, "will/#", Q1);
    let id = id_on("dying", 2, N);
    let mut cp = conn(&id, V5);
    cp.will = Some(Will {
        qos: Q1,
        retain: true,
        properties: Properties::default(),
        topic: "will/x",
        payload: b"bye",
    });
    let (d, _) = connect_ok_on(&mut s, 1, &cp);
    s.drop_connection(d);
    assert_eq!(payloads(&recv(&mut s, w)), ["bye"]);
    assert!(s.brokers.iter().all(|b| b.retained_count() == 1));
    // No Local holds for a publisher whose subscription lives on its own shard, while
    // another subscriber elsewhere gets it.
    let (me, _) = on(&mut s, "me", 1, 0, 0);
    subscribe_opts(
        &mut s,
        me,
        "chat",
        SubscriptionOptions {
            no_local: true,
            ..SubscriptionOptions::qos(Q1)
        },
        None,
    );
    publish(&mut s, me, "chat", b"mine", Q1, false, 1);
    let (other, _) = on(&mut s, "other", 2, 0, 0);
    subscribe(&mut s, other, "chat", Q1);
    publish(&mut s, me, "chat", b"mine again", Q1, false, 2);
    assert!(pubs(&recv(&mut s, me)).is_empty());
    assert_eq!(payloads(&recv(&mut s, other)), ["mine again"]);
}

fn shared_members(s: &mut Sim, strategy_note: &str, expiry: u32) -> Vec<(Client, String)> {
    (0..N)
        .map(|sh| {
            let (c, id) = on(s, &format!("m{strategy_note}"), sh, 0, expiry);
            subscribe(s, c, "$share/g/job/#", Q1);
            (c, id)
        })
        .collect()
}

#[test]
fn shared_round_robin_across_shards() {
    let mut s = sim3();
    let members = shared_members(&mut s, "rr", 0);
    let (p, _) = on(&mut s, "pub", 1, 0, 0);
    for i in 0..30u16 {
        publish(
            &mut s,
            p,
            "job/x",
            format!("{i}").as_bytes(),
            Q1,
            false,
            i + 1,
        );
    }
    let mut all = Vec::new();
    for (c, _) in &members {
        let got = payloads(&recv_acking(&mut s, *c));
        assert_eq!(got.len(), 10, "each member gets its turn");
        all.extend(got);
    }
    all.sort_by_key(|x| x.parse::<u32>().unwrap());
    assert_eq!(
        all,
        (0..30).map(|i: u32| i.to_string()).collect::<Vec<_>>(),
        "each exactly once"
    );
}

#[test]
fn shared_hash_by_client_id_across_shards() {
    let mut s = Sim::new(
        Config {
            shared_strategy: SharedStrategy::HashClientId,
            ..Config::default()
        },
        3,
    );
    let members = shared_members(&mut s, "h", 0);
    let pubs_: Vec<Client> = (0..6)
        .map(|i| on(&mut s, &format!("pub{i}-"), (i % 3) as u16, 0, 0).0)
        .collect();
    for round in 0..3 {
        for (i, p) in pubs_.iter().enumerate() {
            publish(
                &mut s,
                *p,
                "job/x",
                format!("{i}-{round}").as_bytes(),
                Q1,
                false,
                round + 1,
            );
        }
    }
    let mut owner = std::collections::HashMap::new();
    let mut total = 0;
    for (m, (c, _)) in members.iter().enumerate() {
        for x in payloads(&recv_acking(&mut s, *c)) {
            total += 1;
            let publisher = x.split('-').next().unwrap().to_string();
            assert_eq!(*owner.entry(publisher).or_insert(m), m, "{x}");
        }
    }
    assert_eq!(total, 18);
}

#[test]
fn shared_messages_of_an_ended_member_go_to_another_shard() {
    let (mut s, log) = sim_logged(Config::default(), 3);
    let mut members = Vec::new();
    for sh in 0..N {
        let id = id_on("m", sh, N);
        let mut cp = conn(&id, V5);
        cp.properties.session_expiry_interval = Some(5);
        cp.properties.receive_maximum = Some(1);
        let (c, _) = connect_ok_on(&mut s, 0, &cp);
        subscribe(&mut s, c, "$share/g/w", Q2);
        members.push((c, id));
    }
    let (p, _) = on(&mut s, "pub", 0, 0, 0);
    // Round robin: m0 gets "a" (QoS 1) and "d" (queued), m1 "b" (QoS 2), m2 "c".
    publish(&mut s, p, "w", b"a", Q1, false, 1);
    publish(&mut s, p, "w", b"b", Q2, false, 2);
    publish(&mut s, p, "w", b"c", Q1, false, 3);
    publish(&mut s, p, "w", b"d", Q1, false, 4);
    send_ack(&mut s, p, PacketType::PubRel, 2);
    assert_eq!(payloads(&recv(&mut s, members[0].0)), ["a"]);
    assert_eq!(payloads(&recv(&mut s, members[1].0)), ["b"]);
    assert_eq!(payloads(&recv_acking(&mut s, members[2].0)), ["c"]);
    s.drop_connection(members[0].0);
    s.drop_connection(members[1].0);
    s.advance(5_000);
    // m0's unacknowledged QoS 1 "a" and unsent "d" go to the remaining member (4.8.2);
    // m1's started QoS 2 "b" does not [MQTT-4.8.2-5].
    let mut got = payloads(&recv_acking(&mut s, members[2].0));
    got.sort();
    assert_eq!(got, ["a", "d"]);
    assert!(log
        .drops()
        .contains(&(members[1].1.clone(), "b".into(), DropReason::SessionEnded)));
}

#[test]
fn session_expiry_and_offline_queue_across_shards() {
    let mut s = sim3();
    let (c, id) = on(&mut s, "off", 2, 0, 10);
    subscribe(&mut s, c, "q", Q1);
    s.drop_connection(c);
    let (p, _) = on(&mut s, "pub", 0, 0, 0);
    publish(&mut s, p, "q", b"kept", Q1, false, 1);
    assert_eq!(s.brokers[2].session_queue_len(&id), Some(1));
    let mut cp = conn(&id, V5);
    cp.clean_start = false;
    cp.properties.session_expiry_interval = Some(10);
    let (c2, ack) = connect_ok_on(&mut s, 1, &cp);
    assert!(ack.session_present);
    assert_eq!(payloads(&recv(&mut s, c2)), ["kept"]);
    s.drop_connection(c2);
    s.advance(10_000);
    assert_eq!(s.brokers[2].session_queue_len(&id), None);
    // The interest of the expired session is gone from the publisher's shard too.
    publish(&mut s, p, "q", b"x", Q1, false, 2);
    assert_eq!(
        recv(&mut s, p).last(),
        Some(&P::PubAck {
            pid: 2,
            code: ReasonCode::NoMatchingSubscribers
        })
    );
}
