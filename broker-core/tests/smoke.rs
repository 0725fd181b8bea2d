#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::*;
use mqtt_proto::*;

#[test]
fn qos0_1_2_publish_subscribe_v311_and_v5() {
    for v in [V3, V5] {
        let mut s = sim();
        let sub = connect(&mut s, "sub", true, v);
        assert_eq!(
            subscribe(&mut s, sub, "a/+", QoS::ExactlyOnce),
            vec![ReasonCode::GrantedQoS2]
        );
        let publ = connect(&mut s, "pub", true, v);
        publish(&mut s, publ, "a/b", b"zero", QoS::AtMostOnce, false, 0);
        publish(&mut s, publ, "a/b", b"one", QoS::AtLeastOnce, false, 1);
        publish(&mut s, publ, "a/b", b"two", QoS::ExactlyOnce, false, 2);
        let got = s.recv(sub);
        let p = publishes(&got);
        assert_eq!(p.len(), 3, "{v}: {got:?}");
        assert_eq!(p[0].1, b"zero");
        assert_eq!(p[1].2, QoS::AtLeastOnce);
        assert_eq!(p[2].2, QoS::ExactlyOnce);
        let acks = types(&s.recv(publ));
        assert_eq!(acks, vec![PacketType::PubAck, PacketType::PubRec], "{v}");
    }
}

#[test]
fn retained_message_delivered_on_subscribe_with_retain_flag() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "r/t", b"keep", QoS::AtLeastOnce, true, 1);
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "r/#", QoS::AtLeastOnce);
    let got = publishes(&s.recv(c));
    assert_eq!(
        got,
        vec![(
            "r/t".into(),
            b"keep".to_vec(),
            QoS::AtLeastOnce,
            true,
            false
        )]
    );
}

#[test]
fn multi_shard_routing_and_retained_replication() {
    let mut s = broker_core::sim::Sim::new(broker_core::Config::default(), 3);
    let (sub, _) = connect_with(&mut s, 2, &connect_packet("sub", true, V5));
    subscribe(&mut s, sub, "x/#", QoS::AtLeastOnce);
    let (publ, _) = connect_with(&mut s, 0, &connect_packet("pub", true, V5));
    publish(&mut s, publ, "x/y", b"hi", QoS::AtLeastOnce, true, 7);
    let got = publishes(&s.recv(sub));
    assert_eq!(got.len(), 1);
    for b in &s.brokers {
        assert_eq!(b.retained_count(), 1);
    }
}

#[test]
fn will_published_on_abnormal_close_only() {
    let mut s = sim();
    let w = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, w, "will/#", QoS::AtMostOnce);
    let mut c = connect_packet("dying", true, V5);
    c.will = Some(Will {
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
        topic: "will/x",
        payload: b"bye",
    });
    let (d, _) = connect_with(&mut s, 0, &c);
    s.drop_connection(d);
    assert_eq!(publishes(&s.recv(w)).len(), 1);
    let (d2, _) = connect_with(&mut s, 0, &c);
    s.send(
        d2,
        &Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    assert!(s.is_closed(d2));
    assert_eq!(publishes(&s.recv(w)).len(), 0);
}

#[test]
fn keep_alive_timeout_closes_with_0x8d() {
    let mut s = sim();
    let mut c = connect_packet("ka", true, V5);
    c.keep_alive = 10;
    let (cl, _) = connect_with(&mut s, 0, &c);
    s.advance(14_000);
    assert!(!s.is_closed(cl));
    s.advance(2_000);
    assert!(s.is_closed(cl));
    let f = s.recv(cl);
    assert!(
        matches!(f[0].packet(), Packet::Disconnect(d) if d.reason_code == ReasonCode::KeepAliveTimeout)
    );
}

/// A bridge of another broker (3.1.1 with the protocol level's bit 0x80, Mosquitto's
/// `try_private`): what it publishes does not come back to it, and what it gets keeps the
/// publisher's RETAIN flag; an ordinary 3.1.1 subscriber gets RETAIN 0 ([MQTT-3.3.1-9]).
#[test]
fn a_bridge_gets_nothing_it_published_and_retain_flags_as_published() {
    let mut s = sim();
    let mut c = connect_packet("bridge", true, V3);
    c.bridge = true;
    let (b, _) = connect_with(&mut s, 0, &c);
    subscribe(&mut s, b, "x/#", QoS::AtLeastOnce);
    let plain = connect(&mut s, "plain", true, V3);
    subscribe(&mut s, plain, "x/#", QoS::AtLeastOnce);
    publish(&mut s, b, "x/from-bridge", b"1", QoS::AtLeastOnce, true, 1);
    let other = connect(&mut s, "other", true, V3);
    publish(
        &mut s,
        other,
        "x/from-other",
        b"2",
        QoS::AtLeastOnce,
        true,
        1,
    );
    let to_bridge = publishes(&s.recv(b));
    let topics: Vec<&str> = to_bridge.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(topics, vec!["x/from-other"], "{to_bridge:?}");
    assert!(to_bridge[0].3, "RETAIN as published");
    let to_plain = publishes(&s.recv(plain));
    assert_eq!(to_plain.len(), 2, "{to_plain:?}");
    assert!(to_plain.iter().all(|p| !p.3), "RETAIN 0 for a live message");
}
