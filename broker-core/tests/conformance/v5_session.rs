//! MQTT 5.0: session state (4.1), Session Expiry Interval (3.1.2.11.2, 3.14.2.2.2) and the
//! offline queue: bounded in messages and bytes, QoS 0 dropped first, drops reported.

use crate::common::*;
use broker_core::policy::{DropReason, SessionEnd};
use broker_core::Config;
use mqtt_proto::*;

#[test]
fn mqtt_4_1_0_1_session_state_kept_while_connected() {
    let mut s = sim();
    // Session Expiry 1 s: irrelevant while the connection is open.
    let (c, _) = connect5(&mut s, "c", true, 1);
    subscribe(&mut s, c, "t", Q1);
    s.advance(3600 * 1000);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", b"still subscribed", Q1, false, 1);
    // [MQTT-4.1.0-1]
    assert_eq!(payloads(&recv(&mut s, c)), ["still subscribed"]);
}

#[test]
fn mqtt_4_1_0_2_session_discarded_after_expiry() {
    let (mut s, log) = sim_logged(Config::default(), 1);
    let (c, _) = connect5(&mut s, "e", true, 10);
    subscribe(&mut s, c, "t", Q1);
    s.drop_connection(c);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", b"queued", Q1, false, 1);
    s.advance(9_999);
    assert_eq!(s.brokers[0].session_queue_len("e"), Some(1));
    s.advance(1);
    // [MQTT-4.1.0-2] the session and its queue are gone.
    assert_eq!(s.brokers[0].session_queue_len("e"), None);
    assert!(log.snapshot().contains(&Seen::Expired("e".into())));
    assert!(log
        .drops()
        .contains(&("e".into(), "queued".into(), DropReason::SessionEnded)));
    let (c2, ack) = connect5(&mut s, "e", false, 10);
    assert!(!ack.session_present);
    publish(&mut s, p, "t", b"after", Q1, false, 2);
    assert!(
        recv(&mut s, c2).is_empty(),
        "the subscription went with the session"
    );
}

#[test]
fn session_expiry_0_ends_with_the_connection() {
    let (mut s, log) = sim_logged(Config::default(), 1);
    let (c, _) = connect5(&mut s, "zero", false, 0);
    subscribe(&mut s, c, "t", Q1);
    s.drop_connection(c);
    assert_eq!(s.brokers[0].session_count(), 0);
    assert!(log.snapshot().contains(&Seen::Terminated {
        client: "zero".into(),
        why: SessionEnd::Discarded
    }));
}

#[test]
fn session_expiry_max_never_expires() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "forever", true, u32::MAX);
    s.drop_connection(c);
    s.advance(u64::from(u32::MAX - 1) * 1000);
    let (_c, ack) = connect5(&mut s, "forever", false, u32::MAX);
    assert!(ack.session_present);
}

#[test]
fn session_expiry_changed_at_disconnect() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "d", true, 10);
    s.send(
        c,
        &Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::Success,
            properties: Properties {
                session_expiry_interval: Some(100),
                ..Properties::default()
            },
        }),
    );
    assert!(s.is_closed(c));
    s.advance(50_000);
    let (c2, ack) = connect5(&mut s, "d", false, 10);
    assert!(
        ack.session_present,
        "the DISCONNECT's 100 s applies, not the CONNECT's 10 s"
    );
    // Shortening to 0 at DISCONNECT ends the session at once.
    s.send(
        c2,
        &Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::Success,
            properties: Properties {
                session_expiry_interval: Some(0),
                ..Properties::default()
            },
        }),
    );
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn session_expiry_at_disconnect_is_capped_by_the_server() {
    let mut s = sim_cfg(Config {
        max_session_expiry: 20,
        ..Config::default()
    });
    let (c, ack) = connect5(&mut s, "cap", true, 10);
    assert_eq!(
        ack.props.session_expiry_interval, None,
        "10 s is granted as asked"
    );
    s.send(
        c,
        &Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::Success,
            properties: Properties {
                session_expiry_interval: Some(1000),
                ..Properties::default()
            },
        }),
    );
    s.advance(20_000);
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn zero_session_expiry_at_connect_cannot_become_non_zero_at_disconnect() {
    let mut s = sim();
    let w = connect(&mut s, "w", true, V5);
    subscribe(&mut s, w, "will", Q0);
    let mut cp = conn("z", V5);
    cp.will = Some(Will {
        qos: Q0,
        retain: false,
        properties: Properties::default(),
        topic: "will",
        payload: b"w",
    });
    let (c, _) = connect_ok(&mut s, &cp);
    s.send(
        c,
        &Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::Success,
            properties: Properties {
                session_expiry_interval: Some(60),
                ..Properties::default()
            },
        }),
    );
    // 3.14.2.2.2: a Protocol Error (DISCONNECT 0x82), so the will is published and the
    // session, created with expiry 0, ends.
    assert_disconnected(&mut s, c, ReasonCode::ProtocolError);
    assert_eq!(payloads(&recv(&mut s, w)), ["w"]);
    assert_eq!(s.brokers[0].session_queue_len("z"), None);
}

fn offline_sub(s: &mut broker_core::sim::Sim, id: &str) {
    let (c, _) = connect5(s, id, true, 3600);
    subscribe(s, c, "q/#", Q2);
    s.drop_connection(c);
}

#[test]
fn offline_queue_bounded_in_messages_and_drops_reported() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_messages: 3,
            ..Config::default()
        },
        1,
    );
    offline_sub(&mut s, "off");
    let p = connect(&mut s, "p", true, V5);
    for i in 0..6u16 {
        publish(
            &mut s,
            p,
            "q/x",
            format!("m{i}").as_bytes(),
            Q1,
            false,
            i + 1,
        );
    }
    assert_eq!(s.brokers[0].session_queue_len("off"), Some(3));
    let drops = log.drops();
    assert_eq!(
        drops,
        ["m3", "m4", "m5"].map(|m| ("off".to_string(), m.to_string(), DropReason::QueueFull))
    );
    let (c, _) = connect5(&mut s, "off", false, 3600);
    assert_eq!(payloads(&recv_acking(&mut s, c)), ["m0", "m1", "m2"]);
}

#[test]
fn offline_queue_bounded_in_bytes() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_bytes: 100,
            ..Config::default()
        },
        1,
    );
    offline_sub(&mut s, "off");
    let p = connect(&mut s, "p", true, V5);
    let big = [b'x'; 40];
    for i in 0..4u16 {
        publish(&mut s, p, "q/x", &big, Q1, false, i + 1);
    }
    // 40 bytes of payload plus the topic each: two fit in 100 bytes.
    assert_eq!(s.brokers[0].session_queue_len("off"), Some(2));
    assert_eq!(log.drops().len(), 2);
    assert!(log.drops().iter().all(|d| d.2 == DropReason::QueueFull));
}

#[test]
fn offline_qos0_dropped_unless_configured() {
    for keep in [false, true] {
        let (mut s, log) = sim_logged(
            Config {
                queue_qos0_messages: keep,
                ..Config::default()
            },
            1,
        );
        offline_sub(&mut s, "off");
        let p = connect(&mut s, "p", true, V5);
        publish(&mut s, p, "q/0", b"zero", Q0, false, 0);
        publish(&mut s, p, "q/1", b"one", Q1, false, 1);
        let (c, _) = connect5(&mut s, "off", false, 3600);
        let got = payloads(&recv_acking(&mut s, c));
        if keep {
            assert_eq!(got, ["zero", "one"]);
            assert!(log.drops().is_empty());
        } else {
            assert_eq!(got, ["one"]);
            assert_eq!(
                log.drops(),
                [("off".to_string(), "zero".to_string(), DropReason::Offline)]
            );
        }
    }
}

#[test]
fn full_queue_drops_qos0_first() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_messages: 4,
            queue_qos0_messages: true,
            ..Config::default()
        },
        1,
    );
    offline_sub(&mut s, "off");
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "q/a", b"0a", Q0, false, 0);
    publish(&mut s, p, "q/a", b"1a", Q1, false, 1);
    publish(&mut s, p, "q/a", b"0b", Q0, false, 0);
    publish(&mut s, p, "q/a", b"2a", Q2, false, 2);
    // Full: each QoS 1/2 message pushes out the oldest QoS 0 one...
    publish(&mut s, p, "q/a", b"1b", Q1, false, 3);
    publish(&mut s, p, "q/a", b"1c", Q1, false, 4);
    // ... and once none is left, new messages are dropped (QoS 0 first of all).
    publish(&mut s, p, "q/a", b"0c", Q0, false, 0);
    publish(&mut s, p, "q/a", b"1d", Q1, false, 5);
    let dropped: Vec<String> = log.drops().into_iter().map(|d| d.1).collect();
    assert_eq!(dropped, ["0a", "0b", "0c", "1d"]);
    let (c, _) = connect5(&mut s, "off", false, 3600);
    assert_eq!(payloads(&recv_acking(&mut s, c)), ["1a", "2a", "1b", "1c"]);
}

#[test]
fn byte_limit_evicts_as_many_qos0_messages_as_needed() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_bytes: 120,
            queue_qos0_messages: true,
            ..Config::default()
        },
        1,
    );
    offline_sub(&mut s, "off");
    let p = connect(&mut s, "p", true, V5);
    for i in 0..4 {
        publish(
            &mut s,
            p,
            "q/a",
            format!("small-{i}").as_bytes(),
            Q0,
            false,
            0,
        );
    }
    publish(&mut s, p, "q/a", &[b'B'; 90], Q1, false, 1);
    // The QoS 1 message needs the room of several QoS 0 ones: they make way for it.
    let (c, _) = connect5(&mut s, "off", false, 3600);
    let got = pubs(&recv_acking(&mut s, c));
    assert!(
        got.iter().any(|x| x.qos == Q1),
        "the QoS 1 message was dropped: {:?}",
        log.drops()
    );
    assert!(log.drops().iter().all(|d| d.1.starts_with("small-")));
}

#[test]
fn online_queue_is_bounded_by_holding_the_publisher() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_messages: 5,
            ..Config::default()
        },
        1,
    );
    let mut cp = conn("slow", V5);
    cp.properties.receive_maximum = Some(1);
    let (c, _) = connect_ok(&mut s, &cp);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", false, V3);
    for i in 0..20u16 {
        publish(&mut s, p, "t", &[i as u8], Q1, false, i + 1);
    }
    // One in flight, five queued, one held by flow control with its publisher: the rest
    // of the publisher's input is set aside, unprocessed and unacknowledged. Memory stays
    // bounded and nothing is dropped.
    assert_eq!(s.brokers[0].session_queue_len("slow"), Some(6));
    assert!(log.drops().is_empty(), "{:?}", log.drops());
    assert_eq!(s.brokers[0].metrics().publishers_held, 1);
    assert_eq!(pubacks(&recv(&mut s, p)), 6);
    // The subscriber catches up: everything is delivered, in order, and acknowledged.
    let got: Vec<u8> = pubs(&recv_acking(&mut s, c))
        .iter()
        .map(|x| x.payload[0])
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<u8>>());
    assert_eq!(pubacks(&recv(&mut s, p)), 14);
    assert!(log.drops().is_empty());
}

#[test]
fn flow_control_holds_puback_until_a_live_subscriber_has_room() {
    let mut s = sim_cfg(Config {
        max_queued_messages: 2,
        ..Config::default()
    });
    let mut cp = conn("sub", V5);
    cp.properties.receive_maximum = Some(1);
    let (c, _) = connect_ok(&mut s, &cp);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", true, V3);
    for i in 0..5u16 {
        publish(&mut s, p, "t", &[i as u8], Q1, false, i + 1);
    }
    // 1 in flight + 2 queued: the 4th and 5th wait, and so do their PUBACKs.
    let acked: Vec<u16> = recv(&mut s, p)
        .iter()
        .filter_map(|x| match x {
            P::PubAck { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![1, 2, 3]);
    let got = pubs(&recv_acking(&mut s, c));
    let order: Vec<u8> = got.iter().map(|x| x.payload[0]).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4], "nothing lost, order kept");
    let acked_later = pubacks(&recv(&mut s, p));
    assert_eq!(acked_later, 2);
}

#[test]
fn flow_control_disconnects_a_stalled_subscriber_and_releases_its_publishers() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_messages: 2,
            stall_timeout_ms: 1_000,
            ..Config::default()
        },
        1,
    );
    let mut cp = conn("stuck", V5);
    cp.properties.receive_maximum = Some(1);
    let (c, _) = connect_ok(&mut s, &cp);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    for i in 0..5u16 {
        publish(&mut s, p, "t", b"x", Q1, false, i + 1);
    }
    assert_eq!(pubacks(&recv(&mut s, p)), 3);
    // The subscriber never acknowledges: after the stall timeout it is disconnected
    // (0x97), its clean session ends (what it held is dropped and reported), and the
    // publisher gets its two held acknowledgements.
    s.advance(999);
    assert_eq!(pubacks(&recv(&mut s, p)), 0);
    assert!(!s.is_closed(c));
    s.advance(2);
    assert_disconnected(&mut s, c, ReasonCode::QuotaExceeded);
    assert_eq!(pubacks(&recv(&mut s, p)), 2);
    assert_eq!(log.drops().len(), 5, "1 in flight, 2 queued, 2 held");
    assert_eq!(s.brokers[0].metrics().subscribers_stalled, 1);
    assert!(!s.is_closed(p));
}

/// A persistent subscriber that stalls is disconnected; its session keeps what fits its
/// queue (offline), and the publisher is released.
#[test]
fn a_stalled_persistent_subscriber_keeps_its_queue_offline() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_messages: 2,
            stall_timeout_ms: 1_000,
            ..Config::default()
        },
        1,
    );
    let c = connect(&mut s, "stuck", false, V3);
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", true, V3);
    // max_inflight_messages (100) in flight, 2 queued, the rest held with the publisher.
    for i in 0..110u16 {
        publish(&mut s, p, "t", &[i as u8], Q1, false, i + 1);
    }
    assert_eq!(pubacks(&recv(&mut s, p)), 102);
    // Read, never acknowledged.
    assert_eq!(recv(&mut s, c).len(), 100);
    s.advance(1_001);
    assert_closed_silently(&mut s, c);
    // The held message joins the offline queue only as far as its limit allows.
    assert_eq!(pubacks(&recv(&mut s, p)), 8);
    let dropped = log.drops().len();
    assert!(dropped >= 1, "the one over the limit is reported");
    // Reconnecting, the session resumes with everything in flight and queued.
    let c = connect(&mut s, "stuck", false, V3);
    let got = pubs(&recv_acking(&mut s, c));
    assert_eq!(
        got.len() + dropped,
        110,
        "each message delivered or reported"
    );
}

#[test]
fn flow_control_across_shards_holds_and_releases_the_ack() {
    let mut s = broker_core::sim::Sim::new(
        Config {
            max_queued_messages: 2,
            ..Config::default()
        },
        2,
    );
    // Find ids owned by different shards.
    let ids: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let owner = |id: &str| broker_core::shard::owner_of_client(id, 2);
    let sub_id = ids.iter().find(|i| owner(i) == 0).unwrap().clone();
    let pub_id = ids.iter().find(|i| owner(i) == 1).unwrap().clone();
    let mut cp = conn(&sub_id, V5);
    cp.properties.receive_maximum = Some(1);
    let (c, _) = connect_ok_on(&mut s, 0, &cp);
    subscribe(&mut s, c, "t", Q1);
    let pc = conn(&pub_id, V5);
    let (p, _) = connect_ok_on(&mut s, 1, &pc);
    for i in 0..5u16 {
        publish(&mut s, p, "t", &[i as u8], Q1, false, i + 1);
    }
    // 1 in flight + 2 queued on the other shard; 2 held there, and their PUBACKs here.
    assert_eq!(pubacks(&recv(&mut s, p)), 3);
    let got: Vec<u8> = pubs(&recv_acking(&mut s, c))
        .iter()
        .map(|x| x.payload[0])
        .collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    assert_eq!(pubacks(&recv(&mut s, p)), 2);
}

#[test]
fn v311_persistent_session_expiration() {
    let mut s = sim_cfg(Config {
        persistent_client_expiration: Some(60),
        ..Config::default()
    });
    let c = connect(&mut s, "old", false, V3);
    s.drop_connection(c);
    s.advance(59_000);
    let c = connect(&mut s, "old", false, V3);
    s.drop_connection(c);
    s.advance(60_000);
    assert_eq!(s.brokers[0].session_count(), 0);
}
