//! MQTT 3.1 (IBM, protocol name "MQIsdp", level 3): what differs from 3.1.1. The 3.1
//! specification has no numbered statements; its rules are cited by section.

use crate::common::*;
use broker_core::sim::Sim;
use broker_core::Config;
use mqtt_proto::*;

fn c31(id: &str) -> Connect<'_> {
    conn(id, V31)
}

fn connack(s: &mut Sim, c: &Connect<'_>) -> (broker_core::sim::Client, Vec<u8>) {
    let cl = s.open(0, V31).unwrap();
    s.send(cl, &Packet::Connect(*c));
    let b = s
        .recv(cl)
        .first()
        .map(|f| f.bytes.clone())
        .unwrap_or_default();
    (cl, b)
}

#[test]
fn v31_connect_with_mqisdp_level_3() {
    let mut s = sim();
    let bytes = raw_connect(b"MQIsdp", 3, 0x02, 0, &[], &field(b"old-client"));
    let c = open_raw(&mut s, V31, &bytes);
    // 3.2 CONNACK: reserved byte, return code 0.
    assert_eq!(s.recv(c)[0].bytes, [0x20, 2, 0, 0]);
    assert_eq!(s.brokers[0].session_queue_len("old-client"), Some(0));
}

#[test]
fn v31_connack_has_no_session_present_flag() {
    let mut s = sim();
    let mut cp = c31("p");
    cp.clean_start = false;
    let (c, b) = connack(&mut s, &cp);
    assert_eq!(b, [0x20, 2, 0, 0]);
    subscribe(&mut s, c, "t", Q1);
    s.drop_connection(c);
    // The session is resumed, but 3.1's first CONNACK byte is reserved: it stays 0.
    let (c, b) = connack(&mut s, &cp);
    assert_eq!(b, [0x20, 2, 0, 0]);
    let p = connect(&mut s, "pub", true, V31);
    publish(&mut s, p, "t", b"resumed", Q1, false, 1);
    assert_eq!(payloads(&recv(&mut s, c)), ["resumed"]);
}

#[test]
fn v31_client_identifier_1_to_23_characters() {
    let mut s = sim();
    for (id, rc) in [
        ("", 2u8),
        ("a", 0),
        ("abcdefghijklmnopqrstuvw", 0),
        ("abcdefghijklmnopqrstuvwx", 2),
    ] {
        let (c, b) = connack(&mut s, &c31(id));
        // 3.1 section 3.1: 1 to 23 characters; otherwise return code 2 (identifier
        // rejected) and the connection is closed.
        assert_eq!(b, [0x20, 2, 0, rc], "{id:?}");
        assert_eq!(s.is_closed(c), rc != 0);
    }
}

#[test]
fn v31_unacceptable_protocol_version() {
    let mut s = sim();
    let c = open_raw(
        &mut s,
        V31,
        &raw_connect(b"MQIsdp", 4, 0x02, 0, &[], &field(b"x")),
    );
    assert_eq!(s.recv(c)[0].bytes, [0x20, 2, 0, 1]);
    assert!(s.is_closed(c));
}

#[test]
fn v31_refusals_and_keep_alive() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    for (user, rc) in [("bad", 4u8), ("banned", 5)] {
        let mut cp = c31("u");
        cp.username = Some(user);
        cp.password = Some(b"pw");
        let (c, b) = connack(&mut s, &cp);
        assert_eq!(b, [0x20, 2, 0, rc]);
        assert!(s.is_closed(c));
    }
    let mut cp = c31("ka");
    cp.keep_alive = 2;
    let (c, _) = connack(&mut s, &cp);
    s.advance(2_999);
    assert!(!s.is_closed(c));
    s.advance(1);
    assert_closed_silently(&mut s, c);
}

#[test]
fn v31_publish_subscribe_all_qos_retained_and_will() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V31);
    assert_eq!(subscribe(&mut s, sub, "a/#", Q2), [ReasonCode::GrantedQoS2]);
    let p5 = connect(&mut s, "p5", true, V5);
    for (q, id) in [(Q0, 0u16), (Q1, 1), (Q2, 2)] {
        publish(
            &mut s,
            p5,
            "a/b",
            format!("q{}", q as u8).as_bytes(),
            q,
            true,
            id,
        );
    }
    send_ack(&mut s, p5, PacketType::PubRel, 2);
    let got = pubs(&recv_acking(&mut s, sub));
    assert_eq!(
        got.iter().map(|x| (x.qos, x.retain)).collect::<Vec<_>>(),
        [(Q0, false), (Q1, false), (Q2, false)]
    );
    let late = connect(&mut s, "late", true, V31);
    subscribe(&mut s, late, "a/b", Q2);
    let got = pubs(&recv(&mut s, late));
    assert_eq!((got.len(), got[0].retain, got[0].qos), (1, true, Q2));
    let mut cp = c31("dying");
    cp.will = Some(Will {
        qos: Q1,
        retain: false,
        properties: Properties::default(),
        topic: "a/will",
        payload: b"bye",
    });
    let (d, _) = connack(&mut s, &cp);
    s.drop_connection(d);
    assert_eq!(payloads(&recv(&mut s, sub)), ["bye"]);
    // A 3.1 client's messages reach a 5.0 subscriber.
    let s5 = connect(&mut s, "s5", true, V5);
    subscribe(&mut s, s5, "from31", Q1);
    publish(&mut s, sub, "from31", b"hi", Q1, false, 9);
    assert_eq!(payloads(&recv(&mut s, s5)), ["hi"]);
}
