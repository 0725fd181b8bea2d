//! MQTT 5.0: CONNECT (3.1), CONNACK (3.2), keep alive, takeover, client identifiers.

use crate::common::*;
use broker_core::Config;
use mqtt_proto::*;

// ---- 3.1.0 -------------------------------------------------------------------------

#[test]
fn mqtt_3_1_0_1_first_packet_must_be_connect() {
    for first in [
        Packet::PingReq,
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&[Subscription {
                filter: "a",
                options: SubscriptionOptions::qos(Q0),
            }]),
        }),
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    ] {
        let mut s = sim();
        let c = s.open(0, V5).unwrap();
        s.send(c, &first);
        // [MQTT-3.1.0-1] anything but CONNECT first closes the connection; there was no
        // CONNACK, so no DISCONNECT either [MQTT-3.14.0-1].
        assert_closed_silently(&mut s, c);
        assert_eq!(s.brokers[0].connection_count(), 0);
    }
}

#[test]
fn mqtt_3_1_0_2_second_connect_is_a_protocol_error() {
    let mut s = sim();
    let w = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, w, "will/#", Q0);
    let mut c = conn("twice", V5);
    c.will = Some(Will {
        qos: Q0,
        retain: false,
        properties: Properties::default(),
        topic: "will/twice",
        payload: b"gone",
    });
    let (cl, _) = connect_ok(&mut s, &c);
    s.send(cl, &Packet::Connect(c));
    // [MQTT-3.1.0-2] a second CONNECT is a Protocol Error: DISCONNECT 0x82, close.
    assert_disconnected(&mut s, cl, ReasonCode::ProtocolError);
    // Not a normal disconnection, so the will is published.
    assert_eq!(payloads(&recv(&mut s, w)), ["gone"]);
}

// ---- 3.1.2 Variable header -----------------------------------------------------------

#[test]
fn mqtt_3_1_2_1_wrong_protocol_name_connack_0x84_and_close() {
    let mut s = sim();
    let bytes = raw_connect(b"MQTX", 5, 0x02, 0, &[], &field(b"x"));
    let c = open_raw(&mut s, V5, &bytes);
    let got = recv(&mut s, c);
    // [MQTT-3.1.2-1] MAY send CONNACK 0x84, then MUST close.
    assert!(
        matches!(&got[..], [P::ConnAck(a)] if a.code == ReasonCode::UnsupportedProtocolVersion && !a.session_present),
        "{got:?}"
    );
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_version_connack_and_close() {
    for level in [0u8, 2, 6, 7, 255] {
        let mut s = sim();
        let bytes = raw_connect(b"MQTT", level, 0x02, 0, &[], &field(b"x"));
        // The client does not speak 5: answer in 3.1.1 form, which every version reads.
        let c = open_raw(&mut s, V3, &bytes);
        let got = recv(&mut s, c);
        // [MQTT-3.1.2-2] CONNACK 0x84 (3.1.1 return code 1), then close.
        assert!(
            matches!(&got[..], [P::ConnAck(a)] if a.code == ReasonCode::UnsupportedProtocolVersion),
            "level {level}: {got:?}"
        );
        assert!(s.is_closed(c), "level {level}");
    }
}

#[test]
fn mqtt_3_1_2_3_reserved_connect_flag_is_malformed() {
    let mut s = sim();
    let bytes = raw_connect(b"MQTT", 5, 0x03, 0, &[], &field(b"x"));
    let c = open_raw(&mut s, V5, &bytes);
    let got = recv(&mut s, c);
    // [MQTT-3.1.2-3] reserved flag set: Malformed Packet; a CONNACK 0x81 MAY precede the
    // close (4.13), nothing else may.
    assert!(
        got.is_empty()
            || matches!(&got[..], [P::ConnAck(a)] if a.code == ReasonCode::MalformedPacket),
        "{got:?}"
    );
    assert!(s.is_closed(c));
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn mqtt_3_1_2_4_clean_start_discards_session() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "cs", true, 3600);
    subscribe(&mut s, c, "t", Q1);
    disconnect(&mut s, c, ReasonCode::Success);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "t", b"queued", Q1, false, 1);
    assert_eq!(s.brokers[0].session_queue_len("cs"), Some(1));
    // [MQTT-3.1.2-4] Clean Start 1: the existing Session is discarded, a new one starts.
    let (c2, ack) = connect5(&mut s, "cs", true, 3600);
    assert!(!ack.session_present); // [MQTT-3.2.2-2]
    assert!(
        recv(&mut s, c2).is_empty(),
        "queued message of the old session"
    );
    publish(&mut s, p, "t", b"after", Q1, false, 2);
    assert!(
        pubs(&recv(&mut s, c2)).is_empty(),
        "subscription of the old session"
    );
}

#[test]
fn mqtt_3_1_2_5_clean_start_0_resumes_existing_session() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "rs", true, 3600);
    subscribe(&mut s, c, "t/#", Q1);
    s.drop_connection(c);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "t/1", b"while away", Q1, false, 1);
    // [MQTT-3.1.2-5] resume from the existing session state.
    let (c2, ack) = connect5(&mut s, "rs", false, 3600);
    assert!(ack.session_present); // [MQTT-3.2.2-3]
    assert_eq!(payloads(&recv_acking(&mut s, c2)), ["while away"]);
    publish(&mut s, p, "t/2", b"live", Q1, false, 2);
    assert_eq!(payloads(&recv(&mut s, c2)), ["live"]);
}

#[test]
fn mqtt_3_1_2_6_clean_start_0_without_session_creates_one() {
    let mut s = sim();
    // [MQTT-3.1.2-6] no session: a new one, Session Present 0 [MQTT-3.2.2-3].
    let (c, ack) = connect5(&mut s, "new", false, 3600);
    assert!(!ack.session_present);
    assert_eq!(s.brokers[0].session_count(), 1);
    subscribe(&mut s, c, "x", Q1);
    disconnect(&mut s, c, ReasonCode::Success);
    let (_c2, ack) = connect5(&mut s, "new", false, 3600);
    assert!(ack.session_present, "the created session was kept");
}

fn will<'a>(topic: &'a str, payload: &'a [u8], qos: QoS, retain: bool) -> Will<'a> {
    Will {
        qos,
        retain,
        properties: Properties::default(),
        topic,
        payload,
    }
}

#[test]
fn mqtt_3_1_2_7_and_8_will_published_after_abnormal_close() {
    let mut s = sim();
    let w = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, w, "will/#", Q2);
    let mut c = conn("dying", V5);
    c.will = Some(will("will/dying", b"bye", Q1, false));
    let (d, _) = connect_ok(&mut s, &c);
    // [MQTT-3.1.2-7] the will is stored, not published while connected.
    assert!(recv(&mut s, w).is_empty());
    s.drop_connection(d);
    // [MQTT-3.1.2-8] published once the connection closes (no Will Delay Interval).
    let got = pubs(&recv(&mut s, w));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].topic.as_str(), &got[0].payload[..]),
        ("will/dying", &b"bye"[..])
    );
    assert_eq!(got[0].qos, Q1, "published at the Will QoS");
}

#[test]
fn mqtt_3_1_2_8_will_after_delay_or_session_end_whichever_first() {
    let mut s = sim();
    let w = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, w, "will/#", Q0);
    // Will Delay 10 s, Session Expiry 100 s: published after 10 s.
    let mut c = conn("delayed", V5);
    c.properties.session_expiry_interval = Some(100);
    let mut wl = will("will/delayed", b"late", Q0, false);
    wl.properties.will_delay_interval = Some(10);
    c.will = Some(wl);
    let (d, _) = connect_ok(&mut s, &c);
    s.drop_connection(d);
    s.advance(9_999);
    assert!(recv(&mut s, w).is_empty(), "before the Will Delay Interval");
    s.advance(1);
    // [MQTT-3.1.2-8] once the Will Delay Interval has passed...
    assert_eq!(payloads(&recv(&mut s, w)), ["late"]);
    // Will Delay 100 s, Session Expiry 5 s: published when the session ends, at 5 s.
    let mut c = conn("expiring", V5);
    c.properties.session_expiry_interval = Some(5);
    let mut wl = will("will/expiring", b"ended", Q0, false);
    wl.properties.will_delay_interval = Some(100);
    c.will = Some(wl);
    let (d, _) = connect_ok(&mut s, &c);
    s.drop_connection(d);
    s.advance(4_999);
    assert!(recv(&mut s, w).is_empty());
    s.advance(1);
    // [MQTT-3.1.2-8] ... or when the session ends, whichever is first.
    assert_eq!(payloads(&recv(&mut s, w)), ["ended"]);
    assert_eq!(s.brokers[0].session_queue_len("expiring"), None);
}

#[test]
fn mqtt_3_1_2_8_new_connection_before_will_delay_cancels_will() {
    for clean in [false, true] {
        let mut s = sim();
        let w = connect(&mut s, "watcher", true, V5);
        subscribe(&mut s, w, "will/#", Q0);
        let mut c = conn("flaky", V5);
        c.properties.session_expiry_interval = Some(300);
        let mut wl = will("will/flaky", b"gone", Q0, false);
        wl.properties.will_delay_interval = Some(30);
        c.will = Some(wl);
        let (d, _) = connect_ok(&mut s, &c);
        s.drop_connection(d);
        s.advance(10_000);
        // [MQTT-3.1.2-8] [MQTT-3.1.3-9] a new Network Connection for the ClientID before
        // the delay passes: the will is not sent (whether or not the session is resumed).
        let (d2, _) = connect5(&mut s, "flaky", clean, 300);
        s.advance(60_000);
        assert!(
            pubs(&recv(&mut s, w)).is_empty(),
            "clean start {clean}: the will must not be published"
        );
        assert!(!s.is_closed(d2));
    }
}

#[test]
fn mqtt_3_1_2_9_will_flag_requires_will_fields() {
    let mut s = sim();
    // Will Flag set but the payload stops after the Client Identifier.
    let bytes = raw_connect(b"MQTT", 5, 0x06, 0, &[], &field(b"w"));
    let c = open_raw(&mut s, V5, &bytes);
    let got = recv(&mut s, c);
    // [MQTT-3.1.2-9] the will fields MUST be present: Malformed Packet.
    assert!(
        got.iter()
            .all(|p| matches!(p, P::ConnAck(a) if a.code == ReasonCode::MalformedPacket)),
        "{got:?}"
    );
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_1_2_10_will_removed_once_published_or_on_normal_disconnect() {
    let mut s = sim();
    let w = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, w, "will/#", Q0);
    let mut c = conn("once", V5);
    c.properties.session_expiry_interval = Some(300);
    c.will = Some(will("will/once", b"w", Q0, false));
    let (d, _) = connect_ok(&mut s, &c);
    s.drop_connection(d);
    assert_eq!(payloads(&recv(&mut s, w)), ["w"]);
    // The session resumes without a will: a second crash publishes nothing
    // [MQTT-3.1.2-10].
    let (d2, ack) = connect5(&mut s, "once", false, 300);
    assert!(ack.session_present);
    s.drop_connection(d2);
    assert!(recv(&mut s, w).is_empty(), "will published twice");
    // Normal disconnection (0x00) removes the will [MQTT-3.1.2-10] [MQTT-3.14.4-3].
    let (d3, _) = connect_ok(&mut s, &c);
    disconnect(&mut s, d3, ReasonCode::Success);
    assert!(s.is_closed(d3));
    s.advance(1000);
    assert!(recv(&mut s, w).is_empty());
}

#[test]
fn mqtt_3_1_2_11_and_13_will_qos_and_retain_need_will_flag() {
    // Will QoS 1 without the Will Flag; Will Retain without the Will Flag.
    for flags in [0x02 | 0x08, 0x02 | 0x20] {
        let mut s = sim();
        let c = open_raw(
            &mut s,
            V5,
            &raw_connect(b"MQTT", 5, flags, 0, &[], &field(b"x")),
        );
        let got = recv(&mut s, c);
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13]: Malformed Packet, connection closed.
        assert!(
            got.iter()
                .all(|p| matches!(p, P::ConnAck(a) if a.code.is_error())),
            "flags {flags:#x}: {got:?}"
        );
        assert!(s.is_closed(c), "flags {flags:#x}");
    }
}

#[test]
fn mqtt_3_1_2_12_will_qos_0_1_2_accepted_3_refused() {
    for q in [Q0, Q1, Q2] {
        let mut s = sim();
        let w = connect(&mut s, "watcher", true, V5);
        subscribe(&mut s, w, "will/#", Q2);
        let mut c = conn("q", V5);
        c.will = Some(will("will/q", b"w", q, false));
        let (d, _) = connect_ok(&mut s, &c);
        s.drop_connection(d);
        let got = pubs(&recv(&mut s, w));
        assert_eq!(got.len(), 1);
        // [MQTT-3.1.2-12] Will QoS 0, 1 and 2 are accepted and used.
        assert_eq!(got[0].qos, q);
    }
    // [MQTT-3.1.2-12] and not 3:
    // Will QoS 3 (both bits): Malformed.
    let mut s = sim();
    let mut payload = field(b"x");
    payload.extend(varint(0)); // will properties
    payload.extend(field(b"will/x"));
    payload.extend(field(b"w"));
    let c = open_raw(
        &mut s,
        V5,
        &raw_connect(b"MQTT", 5, 0x02 | 0x04 | 0x18, 0, &[], &payload),
    );
    let got = recv(&mut s, c);
    assert!(
        got.iter()
            .all(|p| matches!(p, P::ConnAck(a) if a.code == ReasonCode::MalformedPacket)),
        "{got:?}"
    );
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_1_2_14_and_15_will_retain_decides_retained() {
    for retain in [false, true] {
        let mut s = sim();
        let w = connect(&mut s, "watcher", true, V5);
        subscribe_opts(
            &mut s,
            w,
            "will/#",
            SubscriptionOptions {
                retain_as_published: true,
                ..SubscriptionOptions::qos(Q0)
            },
            None,
        );
        let mut c = conn("r", V5);
        c.will = Some(will("will/r", b"w", Q0, retain));
        let (d, _) = connect_ok(&mut s, &c);
        s.drop_connection(d);
        let live = pubs(&recv(&mut s, w));
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].retain, retain, "Retain As Published shows the flag");
        // [MQTT-3.1.2-14] not retained / [MQTT-3.1.2-15] retained: a later subscriber.
        let late = connect(&mut s, "late", true, V5);
        subscribe(&mut s, late, "will/#", Q0);
        let got = pubs(&recv(&mut s, late));
        assert_eq!(got.len(), usize::from(retain), "retain {retain}");
        assert_eq!(s.brokers[0].retained_count(), usize::from(retain));
    }
}

#[test]
fn mqtt_3_1_2_16_to_19_user_name_and_password_presence() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    // [MQTT-3.1.2-17] [MQTT-3.1.2-19] present when flagged: the authenticator sees the
    // user name (`bad` is refused).
    let mut c = conn("u", V5);
    c.username = Some("bad");
    c.password = Some(b"pw");
    let (cl, p) = try_connect(&mut s, 0, &c);
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::BadUserNameOrPassword),
        "{p:?}"
    );
    assert!(s.is_closed(cl));
    // [MQTT-3.1.2-16] [MQTT-3.1.2-18] absent when not flagged: extra bytes after the
    // Client Identifier are not a user name; the packet is malformed.
    let mut payload = field(b"u2");
    payload.extend(field(b"bad"));
    let c = open_raw(&mut s, V5, &raw_connect(b"MQTT", 5, 0x02, 0, &[], &payload));
    let got = recv(&mut s, c);
    assert!(
        got.iter()
            .all(|p| matches!(p, P::ConnAck(a) if a.code == ReasonCode::MalformedPacket)),
        "{got:?}"
    );
    assert!(s.is_closed(c));
    // User Name Flag set, no user name in the payload: malformed.
    let c = open_raw(
        &mut s,
        V5,
        &raw_connect(b"MQTT", 5, 0x82, 0, &[], &field(b"u3")),
    );
    assert!(recv(&mut s, c)
        .iter()
        .all(|p| matches!(p, P::ConnAck(a) if a.code.is_error())));
    assert!(s.is_closed(c));
    // Password Flag set, no password: malformed.
    let c = open_raw(
        &mut s,
        V5,
        &raw_connect(b"MQTT", 5, 0x42, 0, &[], &field(b"u4")),
    );
    assert!(recv(&mut s, c)
        .iter()
        .all(|p| matches!(p, P::ConnAck(a) if a.code.is_error())));
    assert!(s.is_closed(c));
    // MQTT 5 allows a password without a user name (3.1.2.9).
    let mut payload = field(b"u5");
    payload.extend(field(b"secret"));
    let c = open_raw(&mut s, V5, &raw_connect(b"MQTT", 5, 0x42, 0, &[], &payload));
    assert!(matches!(&recv(&mut s, c)[..], [P::ConnAck(a)] if a.code == ReasonCode::Success));
}

#[test]
fn mqtt_3_1_2_22_keep_alive_one_and_a_half_times() {
    let mut s = sim();
    let mut c = conn("ka", V5);
    c.keep_alive = 10;
    let (cl, ack) = connect_ok(&mut s, &c);
    // [MQTT-3.2.2-22] no Server Keep Alive sent: the client's value is used.
    assert_eq!(ack.props.server_keep_alive, None);
    s.advance(10_000);
    s.send(cl, &Packet::PingReq);
    assert_eq!(recv(&mut s, cl), [P::PingResp]); // [MQTT-3.12.4-1]
                                                 // 1.5 x 10 s after the PINGREQ, not after the CONNECT.
    s.advance(14_999);
    assert!(
        !s.is_closed(cl),
        "closed before one and a half times the keep alive"
    );
    s.advance(1);
    // [MQTT-3.1.2-22] closed; DISCONNECT 0x8D (Keep Alive timeout).
    assert_disconnected(&mut s, cl, ReasonCode::KeepAliveTimeout);
}

#[test]
fn mqtt_3_1_2_22_any_packet_resets_keep_alive_and_zero_disables_it() {
    let mut s = sim();
    let mut c = conn("ka", V5);
    c.keep_alive = 2;
    let (cl, _) = connect_ok(&mut s, &c);
    for i in 0..10u16 {
        s.advance(2_500);
        publish(&mut s, cl, "t", b"x", Q0, false, i + 1);
    }
    // [MQTT-3.1.2-22] any Control Packet counts, not only PINGREQ.
    assert!(!s.is_closed(cl));
    let (idle, _) = connect_ok(&mut s, &conn("idle", V5));
    s.advance(24 * 3600 * 1000);
    assert!(!s.is_closed(idle), "Keep Alive 0 never times out");
    assert!(s.is_closed(cl));
}

#[test]
fn mqtt_3_2_2_22_server_keep_alive_from_max_keepalive() {
    let mut s = sim_cfg(Config {
        max_keepalive: 30,
        ..Config::default()
    });
    for (asked, expect) in [(100u16, Some(30u16)), (0, Some(30)), (20, None)] {
        let mut c = conn("ka", V5);
        c.keep_alive = asked;
        let (cl, ack) = connect_ok(&mut s, &c);
        assert_eq!(ack.props.server_keep_alive, expect, "asked {asked}");
        let used = u64::from(expect.unwrap_or(asked));
        // The server applies the value it announced, or, without one, the client's
        // [MQTT-3.2.2-22].
        s.advance(used * 1500 - 1);
        assert!(!s.is_closed(cl), "asked {asked}");
        s.advance(1);
        assert_disconnected(&mut s, cl, ReasonCode::KeepAliveTimeout);
    }
}

#[test]
fn mqtt_3_1_2_23_session_state_kept_after_close_when_expiry_positive() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "keep", true, 10);
    subscribe(&mut s, c, "k", Q1);
    s.drop_connection(c);
    // [MQTT-3.1.2-23] stored after the Network Connection closes.
    assert_eq!(s.brokers[0].session_count(), 1);
    let (_c, ack) = connect5(&mut s, "keep", false, 10);
    assert!(ack.session_present);
    // Expiry 0 (absent): nothing is kept.
    let (c, _) = connect5(&mut s, "gone", true, 0);
    s.drop_connection(c);
    let (_c, ack) = connect5(&mut s, "gone", false, 0);
    assert!(!ack.session_present);
}

#[test]
fn mqtt_3_1_2_28_no_response_information_unless_requested() {
    let mut s = sim();
    for req in [None, Some(false), Some(true)] {
        let mut c = conn("ri", V5);
        c.properties.request_response_information = req;
        let (_c, ack) = connect_ok(&mut s, &c);
        if req != Some(true) {
            // [MQTT-3.1.2-28]
            assert_eq!(ack.props.response_information, None);
        }
    }
}

#[test]
fn mqtt_3_1_2_29_request_problem_information_0_no_reason_string_elsewhere() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let mut c = conn("rpi", V5);
    c.properties.request_problem_information = Some(false);
    let (cl, _) = connect_ok(&mut s, &c);
    let subs = [
        Subscription {
            filter: "secret/x",
            options: SubscriptionOptions::qos(Q1),
        },
        Subscription {
            filter: "a/#",
            options: SubscriptionOptions::qos(Q2),
        },
        Subscription {
            filter: "bad/#/x",
            options: SubscriptionOptions::qos(Q0),
        },
    ];
    s.send(
        cl,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(2),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&subs),
        }),
    );
    publish(&mut s, cl, "forbidden/x", b"x", Q1, false, 3);
    publish(&mut s, cl, "forbidden/y", b"y", Q2, false, 4);
    publish(&mut s, cl, "nobody", b"z", Q2, false, 5);
    send_ack(&mut s, cl, PacketType::PubRel, 5);
    send_ack(&mut s, cl, PacketType::PubRel, 77);
    send_ack(&mut s, cl, PacketType::PubRec, 78);
    s.send(
        cl,
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(6),
            properties: Properties::default(),
            filters: TopicFilters::List(&["a/#", "none"]),
        }),
    );
    let frames = s.recv(cl);
    let got = owned_all(&frames);
    // SUBACK, PUBACK 0x87, PUBREC 0x87, PUBREC 0x10, PUBCOMP, PUBCOMP 0x92, PUBREL 0x92,
    // UNSUBACK.
    assert_eq!(got.len(), 8, "{got:?}");
    // [MQTT-3.1.2-29] no Reason String or User Property outside PUBLISH, CONNACK and
    // DISCONNECT.
    for (f, p) in frames.iter().zip(&got) {
        match p {
            P::SubAck { props, .. } | P::UnsubAck { props, .. } | P::Auth { props, .. } => {
                assert!(props.no_problem_info(), "{p:?}")
            }
            // An acknowledgement with properties is longer than header, id and code.
            P::PubAck { .. } | P::PubRec { .. } | P::PubRel { .. } | P::PubComp { .. } => {
                assert!(f.bytes.len() <= 5, "{p:?} has properties: {:02x?}", f.bytes)
            }
            p => panic!("unexpected {p:?}"),
        }
    }
}

// ---- 3.1.3 Payload -------------------------------------------------------------------

#[test]
fn mqtt_3_1_3_1_and_3_payload_fields_in_order() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    // Client Identifier, Will Properties, Will Topic, Will Payload, User Name, Password.
    let mut payload = field(b"ordered");
    payload.extend(varint(0));
    payload.extend(field(b"will/t"));
    payload.extend(field(b"will payload"));
    payload.extend(field(b"bad"));
    payload.extend(field(b"pw"));
    let c = open_raw(&mut s, V5, &raw_connect(b"MQTT", 5, 0xC6, 0, &[], &payload));
    // [MQTT-3.1.3-1] each field read in its place: the user name reached the
    // authenticator (`bad` is refused with 0x86).
    assert!(
        matches!(&recv(&mut s, c)[..], [P::ConnAck(a)] if a.code == ReasonCode::BadUserNameOrPassword)
    );
    let mut payload = field(b"ordered");
    payload.extend(field(b"good"));
    payload.extend(field(b"pw"));
    let c = open_raw(&mut s, V5, &raw_connect(b"MQTT", 5, 0xC2, 0, &[], &payload));
    assert!(matches!(&recv(&mut s, c)[..], [P::ConnAck(a)] if a.code == ReasonCode::Success));
    // [MQTT-3.1.3-3] the Client Identifier is the first field and names the session.
    assert_eq!(s.brokers[0].session_queue_len("ordered"), Some(0));
    // Without a Client Identifier the packet is malformed.
    let c = open_raw(&mut s, V5, &raw_connect(b"MQTT", 5, 0x02, 0, &[], &[]));
    assert!(recv(&mut s, c)
        .iter()
        .all(|p| matches!(p, P::ConnAck(a) if a.code == ReasonCode::MalformedPacket)));
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_1_3_4_client_identifier_must_be_utf8() {
    let mut s = sim();
    let c = open_raw(
        &mut s,
        V5,
        &raw_connect(b"MQTT", 5, 0x02, 0, &[], &field(&[0xC0, 0xAF])),
    );
    let got = recv(&mut s, c);
    // [MQTT-3.1.3-4] [MQTT-1.5.4-1] ill-formed UTF-8: Malformed Packet, closed.
    assert!(
        got.iter()
            .all(|p| matches!(p, P::ConnAck(a) if a.code == ReasonCode::MalformedPacket)),
        "{got:?}"
    );
    assert!(s.is_closed(c));
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn mqtt_3_1_3_5_server_allows_1_to_23_alphanumeric_identifiers() {
    let ids = [
        "0",
        "a",
        "Z",
        "0123456789abcdefghijklm",
        "nopqrstuvwxyzABCDEFGHIJ",
        "KLMNOPQRSTUVWXYZ0123456",
    ];
    for v in [V31, V3, V5] {
        let mut s = sim();
        for id in ids {
            // [MQTT-3.1.3-5]
            let (c, ack) = connect_ok(&mut s, &conn(id, v));
            assert!(!ack.session_present);
            assert!(!s.is_closed(c), "{v} {id}");
        }
        assert_eq!(s.brokers[0].session_count(), ids.len(), "{v}");
    }
}

#[test]
fn mqtt_3_1_3_6_and_7_zero_length_identifier_gets_an_assigned_one() {
    let mut s = sim();
    let (a, ack_a) = connect5(&mut s, "", false, 600);
    let (_b, ack_b) = connect5(&mut s, "", true, 0);
    // [MQTT-3.1.3-7] [MQTT-3.2.2-16] CONNACK carries a new, unique identifier.
    let ida = ack_a.props.assigned_client_identifier.clone().unwrap();
    let idb = ack_b.props.assigned_client_identifier.clone().unwrap();
    assert!(!ida.is_empty() && !idb.is_empty());
    assert_ne!(ida, idb);
    // [MQTT-3.1.3-6] processed as if the client had sent that identifier: the session
    // is known by it.
    // [MQTT-3.1.3-2] the identifier names the session state.
    assert_eq!(s.brokers[0].session_queue_len(&ida), Some(0));
    subscribe(&mut s, a, "assigned", Q1);
    s.drop_connection(a);
    let (a2, ack) = connect5(&mut s, &ida, false, 600);
    assert!(ack.session_present, "resumed under the assigned identifier");
    assert_eq!(ack.props.assigned_client_identifier, None);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "assigned", b"hi", Q1, false, 1);
    assert_eq!(payloads(&recv(&mut s, a2)), ["hi"]);
}

#[test]
fn mqtt_3_2_2_16_assigned_identifier_not_used_by_any_session() {
    let mut s = sim_cfg(Config {
        auto_id_prefix: "auto-",
        ..Config::default()
    });
    // Sessions that squat on the identifiers the broker would assign next.
    for i in 1..=5 {
        connect5(&mut s, &format!("auto-0-{i}"), true, 600);
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        let (_c, ack) = connect5(&mut s, "", true, 0);
        let id = ack.props.assigned_client_identifier.unwrap();
        assert!(
            // [MQTT-3.2.2-16] not used by any other session.
            !(1..=5).any(|i| id == format!("auto-0-{i}")),
            "{id} is in use"
        );
        assert!(seen.insert(id));
    }
    assert_eq!(s.brokers[0].session_count(), 10);
}

#[test]
fn mqtt_3_1_3_8_rejected_identifier_connack_0x85_and_close() {
    let mut s = sim_cfg(Config {
        allow_zero_length_clientid: false,
        max_client_id_len: 8,
        ..Config::default()
    });
    for id in ["", "much-too-long-id"] {
        let (c, p) = try_connect(&mut s, 0, &conn(id, V5));
        // [MQTT-3.1.3-8] CONNACK 0x85, then close.
        assert!(
            matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::ClientIdentifierNotValid && !a.session_present),
            "{id:?}: {p:?}"
        );
        assert!(s.is_closed(c));
    }
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn mqtt_3_1_3_9_reconnect_before_will_delay_suppresses_will() {
    let mut s = sim();
    let w = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, w, "will/#", Q0);
    let mut c = conn("wd", V5);
    c.properties.session_expiry_interval = Some(60);
    let mut wl = will("will/wd", b"w", Q0, false);
    wl.properties.will_delay_interval = Some(5);
    c.will = Some(wl);
    let (d, _) = connect_ok(&mut s, &c);
    s.drop_connection(d);
    s.advance(4_000);
    // [MQTT-3.1.3-9] reconnected before the Will Delay Interval: no will.
    let (_d2, ack) = connect5(&mut s, "wd", false, 60);
    assert!(ack.session_present);
    s.advance(10_000);
    assert!(recv(&mut s, w).is_empty());
}

#[test]
fn mqtt_3_1_3_10_will_user_properties_keep_their_order() {
    let mut s = sim();
    let w = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, w, "will/#", Q0);
    let ups = [("z", "1"), ("a", "2"), ("z", "3"), ("m", "")];
    let mut c = conn("up", V5);
    let mut wl = will("will/up", b"w", Q0, false);
    wl.properties.user_properties = UserProperties::List(&ups);
    wl.properties.content_type = Some("text/plain");
    wl.properties.payload_format_indicator = Some(true);
    wl.properties.response_topic = Some("reply/here");
    wl.properties.correlation_data = Some(b"corr");
    c.will = Some(wl);
    let (d, _) = connect_ok(&mut s, &c);
    s.drop_connection(d);
    let got = pubs(&recv(&mut s, w));
    assert_eq!(got.len(), 1);
    let expect: Vec<(String, String)> = ups
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // [MQTT-3.1.3-10] same pairs, same order.
    assert_eq!(got[0].props.user_properties, expect);
    assert_eq!(got[0].props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got[0].props.payload_format_indicator, Some(true));
    assert_eq!(got[0].props.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(got[0].props.correlation_data.as_deref(), Some(&b"corr"[..]));
}

#[test]
fn will_message_expiry_starts_when_the_will_is_published() {
    let mut s = sim();
    let mut c = conn("we", V5);
    c.properties.session_expiry_interval = Some(100);
    let mut wl = will("will/we", b"w", Q1, true);
    wl.properties.will_delay_interval = Some(50);
    wl.properties.message_expiry_interval = Some(20);
    c.will = Some(wl);
    let (d, _) = connect_ok(&mut s, &c);
    s.drop_connection(d);
    s.advance(60_000); // published at 50 s, 10 s ago
    let late = connect(&mut s, "late", true, V5);
    subscribe(&mut s, late, "will/#", Q1);
    let got = pubs(&recv(&mut s, late));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].props.message_expiry_interval, Some(10));
    s.advance(10_000);
    let later = connect(&mut s, "later", true, V5);
    subscribe(&mut s, later, "will/#", Q1);
    assert!(recv(&mut s, later).is_empty(), "expired retained will");
}

#[test]
fn mqtt_3_1_3_11_and_12_will_topic_and_user_name_must_be_utf8() {
    // Will topic with ill-formed UTF-8.
    let mut payload = field(b"x");
    payload.extend(varint(0));
    payload.extend(field(&[b'a', 0xFF]));
    payload.extend(field(b"w"));
    let bad_will = raw_connect(b"MQTT", 5, 0x06, 0, &[], &payload);
    // User name with ill-formed UTF-8.
    let mut payload = field(b"y");
    payload.extend(field(&[0xED, 0xA0, 0x80])); // a UTF-16 surrogate
    let bad_user = raw_connect(b"MQTT", 5, 0x82, 0, &[], &payload);
    for bytes in [bad_will, bad_user] {
        let mut s = sim();
        let c = open_raw(&mut s, V5, &bytes);
        let got = recv(&mut s, c);
        assert!(
            // [MQTT-3.1.3-11] [MQTT-3.1.3-12] [MQTT-1.5.4-1]
            got.iter()
                .all(|p| matches!(p, P::ConnAck(a) if a.code == ReasonCode::MalformedPacket)),
            "{got:?}"
        );
        assert!(s.is_closed(c));
    }
}

// ---- 3.1.4 CONNECT actions -----------------------------------------------------------

#[test]
fn mqtt_3_1_4_1_malformed_connect_closes() {
    let mut s = sim();
    // Property length pointing past the end of the packet.
    let mut body = field(b"MQTT");
    body.extend([5, 0x02, 0, 0, 0x7F]);
    let c = open_raw(&mut s, V5, &frame(0x10, &body));
    let got = recv(&mut s, c);
    // [MQTT-3.1.4-1] closed; a CONNACK of 0x80 or above MAY come first.
    assert!(
        got.iter()
            .all(|p| matches!(p, P::ConnAck(a) if a.code.is_error())),
        "{got:?}"
    );
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_1_4_2_failed_authentication_closes() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    for (user, code) in [
        ("bad", ReasonCode::BadUserNameOrPassword),
        ("banned", ReasonCode::NotAuthorized),
    ] {
        let mut c = conn("a", V5);
        c.username = Some(user);
        let (cl, p) = try_connect(&mut s, 0, &c);
        // [MQTT-3.1.4-2] [MQTT-3.2.2-7]
        assert!(matches!(p, P::ConnAck(ref a) if a.code == code), "{p:?}");
        assert!(s.is_closed(cl));
    }
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn mqtt_3_1_4_3_takeover_disconnects_existing_client_with_0x8e() {
    let mut s = sim();
    let (old, _) = connect5(&mut s, "dup", true, 600);
    subscribe(&mut s, old, "d", Q1);
    let (new, ack) = connect5(&mut s, "dup", false, 600);
    // [MQTT-3.1.4-3] DISCONNECT 0x8E to the existing client, its connection closed.
    assert_disconnected(&mut s, old, ReasonCode::SessionTakenOver);
    assert!(
        ack.session_present,
        "the session continues on the new connection"
    );
    assert!(!s.is_closed(new));
    assert_eq!(s.brokers[0].connection_count(), 1);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "d", b"to new", Q1, false, 1);
    assert_eq!(payloads(&recv(&mut s, new)), ["to new"]);
}

#[test]
fn mqtt_3_1_4_4_and_5_clean_start_processing_then_connack_success() {
    let mut s = sim();
    let (c, ack) = connect5(&mut s, "ok", true, 0);
    // [MQTT-3.1.4-5] CONNACK 0x00; [MQTT-3.1.4-4] Clean Start processed: no session
    // present.
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(!ack.session_present);
    assert!(!s.is_closed(c));
}

#[test]
fn mqtt_3_1_4_6_nothing_processed_after_rejected_connect() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let sub = connect(&mut s, "sub", true, V5);
    subscribe(&mut s, sub, "r/#", Q1);
    let mut c = conn("rej", V5);
    c.username = Some("bad");
    let mut bytes = bytes_of(&Packet::Connect(c), V5);
    bytes.extend(bytes_of(
        &Packet::Publish(Publish {
            dup: false,
            qos: Q1,
            retain: true,
            topic: "r/x",
            packet_id: Some(pid(1)),
            properties: Properties::default(),
            payload: b"smuggled",
        }),
        V5,
    ));
    bytes.extend(bytes_of(&Packet::PingReq, V5));
    let cl = open_raw(&mut s, V5, &bytes);
    let got = recv(&mut s, cl);
    // [MQTT-3.1.4-6] only the refusing CONNACK, the PUBLISH and PINGREQ are ignored.
    assert!(
        matches!(&got[..], [P::ConnAck(a)] if a.code == ReasonCode::BadUserNameOrPassword),
        "{got:?}"
    );
    assert!(recv(&mut s, sub).is_empty());
    assert_eq!(s.brokers[0].retained_count(), 0);
}

#[test]
fn packets_right_after_connect_are_processed_after_connack() {
    let mut s = sim();
    let mut bytes = bytes_of(&Packet::Connect(conn("eager", V5)), V5);
    bytes.extend(bytes_of(&Packet::PingReq, V5));
    let cl = open_raw(&mut s, V5, &bytes);
    let got = recv(&mut s, cl);
    assert!(
        matches!(&got[..], [P::ConnAck(a), P::PingResp] if a.code == ReasonCode::Success),
        "{got:?}"
    );
}

// ---- 3.2 CONNACK ---------------------------------------------------------------------

#[test]
fn mqtt_3_2_0_1_connack_before_anything_else() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "first", true, 600);
    subscribe(&mut s, c, "f", Q1);
    s.drop_connection(c);
    let p = connect(&mut s, "p", true, V5);
    for i in 0..5u16 {
        publish(&mut s, p, "f", b"m", Q1, false, i + 1);
    }
    let cl = s.open(0, V5).unwrap();
    let mut cp = conn("first", V5);
    cp.clean_start = false;
    cp.properties.session_expiry_interval = Some(600);
    s.send(cl, &Packet::Connect(cp));
    let got = recv(&mut s, cl);
    // [MQTT-3.2.0-1] CONNACK first, then the queued messages.
    assert!(
        matches!(got.first(), Some(P::ConnAck(a)) if a.session_present),
        "{got:?}"
    );
    assert_eq!(pubs(&got).len(), 5);
}

#[test]
fn mqtt_3_2_0_2_only_one_connack() {
    let mut s = sim();
    let (c, _) = connect_ok(&mut s, &conn("one", V5));
    s.send(c, &Packet::Connect(conn("one", V5)));
    let got = recv(&mut s, c);
    // [MQTT-3.2.0-2]
    assert!(!got.iter().any(|p| matches!(p, P::ConnAck(_))), "{got:?}");
}

#[test]
fn mqtt_3_2_2_1_connack_reserved_flags_are_zero() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "flags", true, 600);
    s.drop_connection(c);
    for clean in [true, false] {
        let cl = s.open(0, V5).unwrap();
        let mut cp = conn("flags", V5);
        cp.clean_start = clean;
        cp.properties.session_expiry_interval = Some(600);
        s.send(cl, &Packet::Connect(cp));
        let f = s.recv(cl).remove(0);
        // Byte 3 is the Connect Acknowledge Flags: bits 7-1 reserved [MQTT-3.2.2-1].
        assert_eq!(f.bytes[0], 0x20);
        assert_eq!(f.bytes[2] & 0xFE, 0, "{:02x?}", f.bytes);
        assert_eq!(f.bytes[2] & 1, u8::from(!clean));
    }
}

#[test]
fn mqtt_3_2_2_2_clean_start_1_session_present_0() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "sp", true, 600);
    s.drop_connection(c);
    let (_c, ack) = connect5(&mut s, "sp", true, 600);
    // [MQTT-3.2.2-2] even though a session existed.
    assert!(!ack.session_present);
    assert_eq!(ack.code, ReasonCode::Success);
}

#[test]
fn mqtt_3_2_2_3_clean_start_0_session_present_reflects_state() {
    let mut s = sim();
    let (_c, ack) = connect5(&mut s, "sp3", false, 600);
    assert!(!ack.session_present, "no state yet");
    let (_c, ack) = connect5(&mut s, "sp3", false, 600);
    // [MQTT-3.2.2-3] (the first connection is taken over, its session kept).
    assert!(ack.session_present);
    assert_eq!(ack.code, ReasonCode::Success);
}

#[test]
fn mqtt_3_2_2_6_refused_connack_has_session_present_0() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let (c, _) = connect5(&mut s, "sess", true, 600);
    s.drop_connection(c);
    let mut cp = conn("sess", V5);
    cp.clean_start = false;
    cp.username = Some("banned");
    let (cl, p) = try_connect(&mut s, 0, &cp);
    // [MQTT-3.2.2-6] a session exists, but the CONNACK is a refusal.
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::NotAuthorized && !a.session_present),
        "{p:?}"
    );
    // [MQTT-3.2.2-7]
    assert!(s.is_closed(cl));
    // The refused connection did not touch the session.
    let (_c, ack) = connect5(&mut s, "sess", false, 600);
    assert!(ack.session_present);
}

#[test]
fn mqtt_3_2_2_8_connack_uses_connack_reason_codes() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let mut c = conn("w", V5);
    c.username = Some("weird");
    let (cl, p) = try_connect(&mut s, 0, &c);
    // The authenticator answered with a code CONNACK cannot carry; the broker sends a
    // CONNACK code instead [MQTT-3.2.2-8] (the frame decodes, so the code is valid).
    match p {
        P::ConnAck(a) => {
            assert!(
                a.code.valid_in(PacketType::ConnAck) && a.code.is_error(),
                "{a:?}"
            );
            assert_eq!(a.code, ReasonCode::UnspecifiedError);
        }
        p => panic!("{p:?}"),
    }
    assert!(s.is_closed(cl));
}

#[test]
fn mqtt_3_2_2_9_and_10_maximum_qos_announced_and_subscribe_still_accepted() {
    let mut s = sim_cfg(Config {
        maximum_qos: Q1,
        ..Config::default()
    });
    let (c, ack) = connect_ok(&mut s, &conn("mq", V5));
    // [MQTT-3.2.2-9]
    assert_eq!(ack.props.maximum_qos, Some(Q1));
    // [MQTT-3.2.2-10] SUBSCRIBE at QoS 2 is accepted (granted at the maximum).
    assert_eq!(subscribe(&mut s, c, "m", Q2), [ReasonCode::GrantedQoS1]);
    assert_eq!(subscribe(&mut s, c, "n", Q0), [ReasonCode::Success]);
    // A QoS 2 PUBLISH beyond Maximum QoS: DISCONNECT 0x9B (3.2.2.3.4).
    publish(&mut s, c, "m", b"x", Q2, false, 1);
    assert_disconnected(&mut s, c, ReasonCode::QoSNotSupported);
    // With the default (QoS 2 supported) nothing is announced.
    let mut s = sim();
    let (_c, ack) = connect_ok(&mut s, &conn("mq", V5));
    assert_eq!(ack.props.maximum_qos, None);
}

#[test]
fn mqtt_3_2_2_12_will_qos_beyond_maximum_refused() {
    let mut s = sim_cfg(Config {
        maximum_qos: Q0,
        ..Config::default()
    });
    let mut c = conn("wq", V5);
    c.will = Some(will("w", b"x", Q1, false));
    let (cl, p) = try_connect(&mut s, 0, &c);
    // [MQTT-3.2.2-12] 0x9B, then close.
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::QoSNotSupported),
        "{p:?}"
    );
    assert!(s.is_closed(cl));
}

#[test]
fn mqtt_3_2_2_13_will_retain_without_retain_support_refused() {
    let mut s = sim_cfg(Config {
        retain_available: false,
        ..Config::default()
    });
    let mut c = conn("wr", V5);
    c.will = Some(will("w", b"x", Q0, true));
    let (cl, p) = try_connect(&mut s, 0, &c);
    // [MQTT-3.2.2-13] 0x9A, then close.
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::RetainNotSupported),
        "{p:?}"
    );
    assert!(s.is_closed(cl));
    // Retain Available 0 is announced, and a retained PUBLISH is refused (3.2.2.3.5).
    let (cl, ack) = connect_ok(&mut s, &conn("r", V5));
    assert_eq!(ack.props.retain_available, Some(false));
    publish(&mut s, cl, "t", b"x", Q0, true, 0);
    assert_disconnected(&mut s, cl, ReasonCode::RetainNotSupported);
}

#[test]
fn mqtt_3_2_2_19_and_20_connack_has_no_reason_string_or_user_property() {
    let mut s = sim();
    let mut c = conn("small", V5);
    c.properties.maximum_packet_size = Some(64);
    let (cl, ack) = connect_ok(&mut s, &c);
    // [MQTT-3.2.2-19] [MQTT-3.2.2-20]
    assert!(ack.props.no_problem_info());
    let (mut s2, _) = sim_policy(Config::default(), 1);
    let mut c = conn("small", V5);
    c.properties.maximum_packet_size = Some(16);
    c.username = Some("bad");
    let (_c, p) = try_connect(&mut s2, 0, &c);
    assert!(matches!(p, P::ConnAck(ref a) if a.props.no_problem_info()));
    assert!(!s.is_closed(cl));
}

#[test]
fn connack_announces_the_server_limits() {
    let mut s = sim_cfg(Config {
        receive_maximum: 7,
        max_packet_size: 4096,
        topic_alias_maximum: 3,
        wildcard_subscriptions: false,
        shared_subscriptions: false,
        subscription_identifiers: false,
        max_session_expiry: 60,
        ..Config::default()
    });
    let mut c = conn("lim", V5);
    c.properties.session_expiry_interval = Some(3600);
    let (_c, ack) = connect_ok(&mut s, &c);
    let p = &ack.props;
    assert_eq!(p.receive_maximum, Some(7));
    assert_eq!(p.maximum_packet_size, Some(4096));
    assert_eq!(p.topic_alias_maximum, Some(3));
    assert_eq!(p.wildcard_subscription_available, Some(false));
    assert_eq!(p.shared_subscription_available, Some(false));
    assert_eq!(p.subscription_identifier_available, Some(false));
    // The Session Expiry Interval granted differs from the one asked: it is sent.
    assert_eq!(p.session_expiry_interval, Some(60));
    assert_eq!(p.authentication_method, None); // [MQTT-4.12.0-6]
}

#[test]
fn connect_timeout_closes_silently() {
    let mut s = sim_cfg(Config {
        connect_timeout_ms: 5_000,
        ..Config::default()
    });
    let silent = s.open(0, V5).unwrap();
    let partial = s.open(0, V5).unwrap();
    let bytes = bytes_of(&Packet::Connect(conn("slow", V5)), V5);
    s.send_bytes(partial, &bytes[..bytes.len() - 1]);
    s.advance(4_999);
    assert!(!s.is_closed(silent) && !s.is_closed(partial));
    s.advance(1);
    // No CONNACK was sent, so no DISCONNECT either [MQTT-3.14.0-1].
    assert_closed_silently(&mut s, silent);
    assert_closed_silently(&mut s, partial);
    assert_eq!(s.brokers[0].connection_count(), 0);
    // A connected client is not affected by the connect timeout.
    let (c, _) = connect_ok(&mut s, &conn("fast", V5));
    s.advance(60_000);
    assert!(!s.is_closed(c));
}
