//! MQTT 5.0: flow control (3.3.4 Receive Maximum, 4.9) and Maximum Packet Size
//! (3.1.2.11.4, 3.2.2.3.6) in both directions.

use crate::common::*;
use broker_core::policy::DropReason;
use broker_core::sim::{Client, Sim};
use broker_core::Config;
use mqtt_proto::*;

fn with_receive_maximum(s: &mut Sim, id: &str, rm: u16, expiry: u32) -> Client {
    let mut c = conn(id, V5);
    c.properties.receive_maximum = Some(rm);
    c.properties.session_expiry_interval = (expiry > 0).then_some(expiry);
    connect_ok(s, &c).0
}

#[test]
fn mqtt_3_3_4_9_and_4_9_0_2_server_respects_client_receive_maximum() {
    let mut s = sim();
    let c = with_receive_maximum(&mut s, "c", 3, 0);
    subscribe(&mut s, c, "t", Q2);
    let p = connect(&mut s, "p", true, V5);
    for i in 0..10u16 {
        publish(
            &mut s,
            p,
            "t",
            format!("{i}").as_bytes(),
            if i % 2 == 0 { Q1 } else { Q2 },
            false,
            i + 1,
        );
    }
    let mut unacked: Vec<Pub> = pubs(&recv(&mut s, c));
    // [MQTT-3.3.4-9] [MQTT-4.9.0-2] three unacknowledged at most.
    assert_eq!(unacked.len(), 3);
    let mut received = unacked
        .iter()
        .map(|x| x.payload.clone())
        .collect::<Vec<_>>();
    while let Some(x) = unacked.first().cloned() {
        unacked.remove(0);
        let id = x.pid.unwrap();
        if x.qos == Q1 {
            send_ack(&mut s, c, PacketType::PubAck, id);
        } else {
            send_ack(&mut s, c, PacketType::PubRec, id);
            // Still counted until PUBCOMP: nothing new after PUBREC.
            let rel = recv(&mut s, c);
            assert_eq!(
                rel,
                [P::PubRel {
                    pid: id,
                    code: ReasonCode::Success
                }]
            );
            send_ack(&mut s, c, PacketType::PubComp, id);
        }
        let more = pubs(&recv(&mut s, c));
        received.extend(more.iter().map(|x| x.payload.clone()));
        unacked.extend(more);
        assert!(unacked.len() <= 3, "{} in flight", unacked.len());
    }
    let expect: Vec<Vec<u8>> = (0..10).map(|i: u16| format!("{i}").into_bytes()).collect();
    assert_eq!(received, expect);
}

#[test]
fn mqtt_4_9_0_2_error_pubrec_frees_the_quota() {
    let mut s = sim();
    let c = with_receive_maximum(&mut s, "c", 1, 0);
    subscribe(&mut s, c, "t", Q2);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", b"a", Q2, false, 1);
    publish(&mut s, p, "t", b"b", Q2, false, 2);
    let got = pubs(&recv(&mut s, c));
    assert_eq!(got.len(), 1);
    s.send(
        c,
        &Packet::PubRec(Ack {
            packet_id: pid(got[0].pid.unwrap()),
            reason_code: ReasonCode::QuotaExceeded,
            properties: Properties::default(),
        }),
    );
    // [MQTT-4.9.0-2] the quota is incremented by an error PUBREC.
    // The flow ended with the error PUBREC: the next message goes out.
    assert_eq!(payloads(&recv(&mut s, c)), ["b"]);
}

#[test]
fn mqtt_3_3_4_10_and_4_9_0_3_other_packets_not_delayed_by_quota() {
    let mut s = sim();
    let c = with_receive_maximum(&mut s, "c", 1, 0);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", b"1", Q1, false, 1);
    publish(&mut s, p, "t", b"2", Q1, false, 2);
    assert_eq!(pubs(&recv(&mut s, c)).len(), 1);
    // [MQTT-3.3.4-10] [MQTT-4.9.0-3]
    // Quota zero: PINGRESP, SUBACK, UNSUBACK, PUBACK and PUBREC still flow.
    s.send(c, &Packet::PingReq);
    publish(&mut s, c, "elsewhere", b"x", Q1, false, 10);
    publish(&mut s, c, "elsewhere", b"y", Q2, false, 11);
    let got = recv(&mut s, c);
    assert_eq!(
        got,
        [
            P::PingResp,
            P::PubAck {
                pid: 10,
                code: ReasonCode::NoMatchingSubscribers
            },
            P::PubRec {
                pid: 11,
                code: ReasonCode::NoMatchingSubscribers
            },
        ]
    );
    assert_eq!(subscribe(&mut s, c, "u", Q0), [ReasonCode::Success]);
    assert!(matches!(
        unsubscribe(&mut s, c, 3, &["u"]),
        P::UnsubAck { .. }
    ));
}

#[test]
fn mqtt_4_9_0_1_quota_reset_to_receive_maximum_on_new_connection() {
    let mut s = sim();
    let c = with_receive_maximum(&mut s, "c", 5, 600);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    for i in 0..8u16 {
        publish(&mut s, p, "t", format!("{i}").as_bytes(), Q1, false, i + 1);
    }
    assert_eq!(pubs(&recv(&mut s, c)).len(), 5);
    s.drop_connection(c);
    // The new connection allows only 2: the five unacknowledged messages are resent
    // within that limit [MQTT-3.3.4-9] [MQTT-4.9.0-1].
    let mut cp = conn("c", V5);
    cp.clean_start = false;
    cp.properties.receive_maximum = Some(2);
    cp.properties.session_expiry_interval = Some(600);
    let (c2, _) = connect_ok(&mut s, &cp);
    let mut outstanding = pubs(&recv(&mut s, c2));
    assert_eq!(outstanding.len(), 2, "{outstanding:?}");
    assert!(outstanding.iter().all(|x| x.dup));
    let mut all = Vec::new();
    while !outstanding.is_empty() {
        let x = outstanding.remove(0);
        all.push((String::from_utf8(x.payload.clone()).unwrap(), x.dup));
        send_ack(&mut s, c2, PacketType::PubAck, x.pid.unwrap());
        outstanding.extend(pubs(&recv(&mut s, c2)));
        assert!(outstanding.len() <= 2);
    }
    let expect: Vec<(String, bool)> = (0..8).map(|i| (format!("{i}"), i < 5)).collect();
    assert_eq!(all, expect, "resent in order, then the rest");
}

#[test]
fn client_exceeding_server_receive_maximum_gets_0x93() {
    let mut s = sim_cfg(Config {
        receive_maximum: 3,
        ..Config::default()
    });
    let sub = connect(&mut s, "sub", true, V5);
    subscribe(&mut s, sub, "t", Q2);
    let (p, ack) = connect_ok(&mut s, &conn("p", V5));
    assert_eq!(ack.props.receive_maximum, Some(3));
    for i in 1..=3u16 {
        publish(&mut s, p, "t", b"x", Q2, false, i);
    }
    assert_eq!(recv(&mut s, p).len(), 3);
    // Releasing one makes room for one more.
    send_ack(&mut s, p, PacketType::PubRel, 1);
    publish(&mut s, p, "t", b"x", Q2, false, 4);
    assert_eq!(recv(&mut s, p).len(), 2);
    assert!(!s.is_closed(p));
    // A fourth unacknowledged one: Receive Maximum exceeded (3.3.4, 0x93).
    publish(&mut s, p, "t", b"x", Q2, false, 5);
    assert_disconnected(&mut s, p, ReasonCode::ReceiveMaximumExceeded);
}

/// QoS 1 PUBACKs held back by flow control count against the server's Receive Maximum;
/// one acknowledged at once in between must not take a held one off the count (it did
/// before the acknowledgement of an unheld message stopped going through the hold slab).
#[test]
fn held_qos1_acks_count_against_receive_maximum_across_immediate_ones() {
    let mut s = sim_cfg(Config {
        receive_maximum: 2,
        max_queued_messages: 2,
        ..Config::default()
    });
    let mut cs = conn("sub", V5);
    cs.properties.receive_maximum = Some(1);
    let (sub, _) = connect_ok(&mut s, &cs);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    let acks = |s: &mut Sim, p| pubacks(&recv(s, p));
    // One in flight to the subscriber, two queued: acknowledged at once.
    for i in 1..=3u16 {
        publish(&mut s, p, "t", b"q", Q1, false, i);
    }
    assert_eq!(acks(&mut s, p), 3);
    // The queue is full: held (1 unacknowledged). The overflow is short: the publisher
    // goes on.
    publish(&mut s, p, "t", b"4", Q1, false, 4);
    // Nobody subscribed: acknowledged at once (0x10), the held one still counts.
    publish(&mut s, p, "other", b"5", Q1, false, 5);
    assert_eq!(acks(&mut s, p), 1);
    // Held too: 2 unacknowledged, the server's Receive Maximum.
    publish(&mut s, p, "t", b"6", Q1, false, 6);
    assert_eq!(acks(&mut s, p), 0);
    assert!(!s.is_closed(p));
    // A third unacknowledged QoS 1 PUBLISH exceeds it (3.3.4, 0x93).
    publish(&mut s, p, "other", b"7", Q1, false, 7);
    assert_disconnected(&mut s, p, ReasonCode::ReceiveMaximumExceeded);
}

/// Once the overflow is a queue long, the publisher itself is held: what it sends next is
/// set aside, unacknowledged, and still counts against the Receive Maximum.
#[test]
fn set_aside_publishes_count_against_receive_maximum() {
    let mut s = sim_cfg(Config {
        receive_maximum: 3,
        max_queued_messages: 1,
        ..Config::default()
    });
    let mut cs = conn("sub", V5);
    cs.properties.receive_maximum = Some(1);
    let (sub, _) = connect_ok(&mut s, &cs);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    let acks = |s: &mut Sim, p| pubacks(&recv(s, p));
    // One in flight, one queued: acknowledged. The third waits in the overflow.
    for i in 1..=3u16 {
        publish(&mut s, p, "t", b"q", Q1, false, i);
    }
    assert_eq!(acks(&mut s, p), 2);
    // The overflow holds one (a queue's worth): this one waits too, and holds the
    // publisher.
    publish(&mut s, p, "t", b"4", Q1, false, 4);
    assert!(s.brokers[0].metrics().publishers_held > 0);
    // Set aside: 3 unacknowledged, the server's Receive Maximum.
    publish(&mut s, p, "other", b"5", Q1, false, 5);
    assert_eq!(acks(&mut s, p), 0);
    assert!(!s.is_closed(p));
    // A fourth exceeds it (3.3.4, 0x93), held or not.
    publish(&mut s, p, "other", b"6", Q1, false, 6);
    assert_disconnected(&mut s, p, ReasonCode::ReceiveMaximumExceeded);
}

/// Without holds (`queue_full` drop), an acknowledgement that nobody holds goes at once.
#[test]
fn immediate_acks_do_not_count_against_receive_maximum() {
    let mut s = sim_cfg(Config {
        receive_maximum: 2,
        max_queued_messages: 1,
        ..Config::default()
    });
    let p = connect(&mut s, "p", true, V5);
    for i in 1..=5u16 {
        publish(&mut s, p, "nobody", b"x", Q1, false, i);
    }
    let acks = pubacks(&recv(&mut s, p));
    assert_eq!(acks, 5);
    assert!(!s.is_closed(p));
}

#[test]
fn large_retained_set_paced_by_receive_maximum() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    for i in 0..50u16 {
        publish(
            &mut s,
            p,
            &format!("r/{i}"),
            format!("{i}").as_bytes(),
            Q1,
            true,
            i + 1,
        );
    }
    assert_eq!(s.brokers[0].retained_count(), 50);
    let c = with_receive_maximum(&mut s, "c", 5, 0);
    subscribe(&mut s, c, "r/#", Q1);
    let mut outstanding = pubs(&recv(&mut s, c));
    // Not dumped: five at a time.
    assert_eq!(outstanding.len(), 5);
    let mut seen = std::collections::HashSet::new();
    while let Some(x) = outstanding.pop() {
        assert!(x.retain);
        assert!(seen.insert(x.payload.clone()));
        send_ack(&mut s, c, PacketType::PubAck, x.pid.unwrap());
        outstanding.extend(pubs(&recv(&mut s, c)));
        assert!(outstanding.len() <= 5);
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn retained_messages_of_a_new_subscription_come_before_newer_live_ones() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    for i in 0..5u16 {
        publish(&mut s, p, &format!("r/{i}"), b"old", Q1, true, i + 1);
    }
    let c = with_receive_maximum(&mut s, "c", 1, 0);
    subscribe(&mut s, c, "r/#", Q1);
    // While the retained messages trickle out, newer values are published.
    for i in 0..5u16 {
        publish(&mut s, p, &format!("r/{i}"), b"new", Q1, true, 10 + i);
    }
    let got = pubs(&recv_acking(&mut s, c));
    assert_eq!(got.len(), 10);
    // For each topic, the value a client ends with is the newest one [MQTT-4.6.0-5]:
    // the retained "old" must not arrive after the live "new".
    for i in 0..5 {
        let t = format!("r/{i}");
        let order: Vec<&[u8]> = got
            .iter()
            .filter(|x| x.topic == t)
            .map(|x| &x.payload[..])
            .collect();
        assert_eq!(order, [&b"old"[..], b"new"], "{t}");
    }
}

// ---- Maximum Packet Size --------------------------------------------------------------

#[test]
fn packet_over_server_maximum_packet_size_gets_0x95() {
    let mut s = sim_cfg(Config {
        max_packet_size: 200,
        ..Config::default()
    });
    let sub = connect(&mut s, "sub", true, V5);
    subscribe(&mut s, sub, "t", Q0);
    let (p, ack) = connect_ok(&mut s, &conn("p", V5));
    assert_eq!(ack.props.maximum_packet_size, Some(200));
    publish(&mut s, p, "t", &[0; 150], Q0, false, 0);
    assert_eq!(pubs(&recv(&mut s, sub)).len(), 1);
    // Only the fixed header has arrived: the size is known, the packet refused
    // (3.1.2.11.4, DISCONNECT 0x95).
    s.send_bytes(p, &[0x30, 0xE8, 0x07]);
    assert_disconnected(&mut s, p, ReasonCode::PacketTooLarge);
    assert!(recv(&mut s, sub).is_empty());
}

#[test]
fn connect_over_server_maximum_packet_size_refused() {
    let mut s = sim_cfg(Config {
        max_packet_size: 64,
        ..Config::default()
    });
    let mut c = conn("big", V5);
    let pw = [b'p'; 100];
    c.username = Some("u");
    c.password = Some(&pw);
    let (cl, p) = try_connect(&mut s, 0, &c);
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::PacketTooLarge),
        "{p:?}"
    );
    assert!(s.is_closed(cl));
}

#[test]
fn mqtt_3_1_2_24_and_25_too_large_for_client_dropped_for_that_client_only() {
    let (mut s, log) = sim_logged(Config::default(), 1);
    let mut cp = conn("small", V5);
    cp.properties.maximum_packet_size = Some(100);
    cp.properties.receive_maximum = Some(1);
    let (small, _) = connect_ok(&mut s, &cp);
    subscribe(&mut s, small, "t", Q1);
    let big = connect(&mut s, "big", true, V5);
    subscribe(&mut s, big, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", &[b'L'; 200], Q1, false, 1);
    publish(&mut s, p, "t", b"fits", Q1, false, 2);
    let got = s.recv(small);
    // [MQTT-3.1.2-24] nothing above the client's Maximum Packet Size is sent; the large
    // one is discarded as if sent [MQTT-3.1.2-25]: it takes no Receive Maximum slot.
    assert!(got.iter().all(|f| f.bytes.len() <= 100));
    assert_eq!(payloads(&owned_all(&got)), ["fits"]);
    assert_eq!(pubs(&recv(&mut s, big)).len(), 2);
    assert_eq!(
        log.drops(),
        [("small".to_string(), "L".repeat(200), DropReason::TooLarge)]
    );
}

#[test]
fn too_large_for_the_new_connection_is_discarded_on_resend() {
    let (mut s, log) = sim_logged(Config::default(), 1);
    let (c, _) = connect5(&mut s, "c", true, 600);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", &[b'L'; 300], Q1, false, 1);
    publish(&mut s, p, "t", b"small", Q1, false, 2);
    assert_eq!(pubs(&recv(&mut s, c)).len(), 2);
    s.drop_connection(c);
    let mut cp = conn("c", V5);
    cp.clean_start = false;
    cp.properties.session_expiry_interval = Some(600);
    cp.properties.maximum_packet_size = Some(100);
    cp.properties.receive_maximum = Some(1);
    let (c2, _) = connect_ok(&mut s, &cp);
    // The large one cannot be resent: discarded [MQTT-3.1.2-25], and it does not hold
    // the only Receive Maximum slot.
    let got = pubs(&recv_acking(&mut s, c2));
    assert_eq!(
        got.iter().map(|x| &x.payload[..]).collect::<Vec<_>>(),
        [&b"small"[..]]
    );
    assert!(log.drops().iter().any(|d| d.2 == DropReason::TooLarge));
    publish(&mut s, p, "t", b"next", Q1, false, 3);
    assert_eq!(payloads(&recv(&mut s, c2)), ["next"]);
}
