//! Bugs the `broker` fuzz target found (fuzz/fuzz_targets/broker.rs), each as the smallest
//! script that showed it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use broker_core::Config;
use common::*;

/// A client that subscribes again and again without reading (its Receive Maximum full of
/// unacknowledged QoS 1 messages) had the retained messages of every SUBSCRIBE queued
/// behind the previous ones: its session grew without limit. The retained backlog is now
/// bounded by the retained store's size, oldest copies dropped first.
#[test]
fn repeated_subscribe_without_reading_keeps_the_retained_backlog_bounded() {
    let cfg = Config {
        max_retained_messages: 4,
        max_inflight_messages: 1,
        max_queued_messages: 6,
        ..Config::default()
    };
    let mut s = sim_cfg(cfg.clone());
    let p = connect(&mut s, "pub", true, V5);
    for (i, t) in ["r/1", "r/2", "r/3", "r/4"].iter().enumerate() {
        publish(&mut s, p, t, b"kept", Q1, true, i as u16 + 1);
    }
    let c = connect(&mut s, "sub", true, V5);
    for _ in 0..100 {
        // Never acknowledged: one message in flight, the rest waits.
        subscribe(&mut s, c, "r/#", Q1);
    }
    let waiting = s.brokers[0].session_queue_len("sub").unwrap();
    let bound = cfg.max_queued_messages
        + usize::from(cfg.max_inflight_messages)
        + cfg.max_retained_messages;
    assert!(
        waiting <= bound,
        "{waiting} messages waiting (bound {bound})"
    );
    // Acknowledging everything still delivers the retained set.
    let got = recv_acking(&mut s, c);
    let topics: std::collections::BTreeSet<String> =
        pubs(&got).into_iter().map(|p| p.topic).collect();
    assert_eq!(topics.len(), 4, "{topics:?}");
}

/// A persistent subscriber whose queue was full had the messages held for it by flow
/// control (parked, up to `max_queued_messages` more) moved into its offline queue when its
/// socket dropped, so the offline queue grew to twice its configured bound. Now only what
/// fits joins the queue; the rest is dropped (reported), and every publisher still gets
/// its acknowledgement.
#[test]
fn parked_messages_respect_the_offline_queue_bound() {
    let cfg = Config {
        max_queued_messages: 3,
        max_inflight_messages: 1,
        ..Config::default()
    };
    let (mut s, log) = sim_logged(cfg.clone(), 1);
    let mut cp = conn("sub", V5);
    cp.properties.receive_maximum = Some(1);
    cp.properties.session_expiry_interval = Some(100);
    let (c, _) = connect_ok(&mut s, &cp);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "pub", true, V5);
    // 1 in flight, 3 queued, 3 held (their PUBACKs too).
    for i in 0..7u16 {
        publish(&mut s, p, "t", &[i as u8], Q1, false, i + 1);
    }
    let acks = |ps: &[P]| ps.iter().filter(|p| matches!(p, P::PubAck { .. })).count();
    assert_eq!(acks(&recv(&mut s, p)), 4);
    s.drop_connection(c);
    let waiting = s.brokers[0].session_queue_len("sub").unwrap();
    assert!(
        waiting <= cfg.max_queued_messages + usize::from(cfg.max_inflight_messages),
        "{waiting} messages waiting offline"
    );
    // The held publishers are released; what did not fit is reported as dropped.
    assert_eq!(acks(&recv(&mut s, p)), 3);
    assert_eq!(log.drops().len(), 3);
}

/// A malformed PUBLISH as the first packet whose body, read as a CONNECT's, had a 5 where
/// the protocol level would be: the broker answered with an MQTT 5 CONNACK (0x81) to a
/// client whose version it could not know, an invalid packet for a 3.1.1 client. A first
/// packet that is not CONNECT now closes the connection with nothing sent, malformed or not.
#[test]
fn a_malformed_first_publish_is_not_answered_with_a_connack() {
    let mut s = sim();
    let c = s.open(0, V3).unwrap();
    // PUBLISH, remaining length 7: topic length 0x0003 ("abc" needs 3, the level offset
    // of a CONNECT with that name length lands on the 5), then a truncated body.
    let mut bytes = vec![0x30, 0x07, 0x00, 0x03, b'a', b'b', b'c', 0x05, 0x00];
    // Make it malformed in any version: a QoS 3 PUBLISH ([MQTT-3.3.1-4]).
    bytes[0] = 0x36;
    s.send_bytes(c, &bytes);
    // [MQTT-3.1.0-1]: not a CONNECT, so closed without a CONNACK.
    assert_closed_silently(&mut s, c);
}
