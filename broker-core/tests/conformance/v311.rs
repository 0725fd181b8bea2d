//! MQTT 3.1.1 (OASIS Standard, 29 October 2014): the server-side normative statements,
//! by their 3.1.1 numbers (which differ from 5.0's).

use crate::common::*;
use broker_core::sim::{Client, Sim};
use broker_core::Config;
use mqtt_proto::*;

fn c3(id: &str) -> Connect<'_> {
    conn(id, V3)
}

fn persistent(s: &mut Sim, id: &str) -> (Client, bool) {
    let mut c = c3(id);
    c.clean_start = false;
    let (cl, ack) = connect_ok(s, &c);
    (cl, ack.session_present)
}

/// The raw CONNACK bytes a 3.1.1 client receives first.
fn connack_bytes(s: &mut Sim, c: Client) -> Vec<u8> {
    s.recv(c)
        .first()
        .map(|f| f.bytes.clone())
        .unwrap_or_default()
}

fn will<'a>(topic: &'a str, payload: &'a [u8], qos: QoS, retain: bool) -> Option<Will<'a>> {
    Some(Will {
        qos,
        retain,
        properties: Properties::default(),
        topic,
        payload,
    })
}

fn raw_publish3(flags: u8, topic: &[u8], pid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if let Some(id) = pid {
        body.extend(id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

// ---- 1.5.3 UTF-8 ---------------------------------------------------------------------

#[test]
fn mqtt_1_5_3_1_and_2_ill_formed_utf8_or_null_closes() {
    for topic in [&[b'a', 0xED, 0xA0, 0x80][..], b"a\0b", &[0xC0, 0x80]] {
        let mut s = sim();
        let sub = connect(&mut s, "sub", true, V3);
        subscribe(&mut s, sub, "#", Q0);
        let c = connect(&mut s, "c", true, V3);
        s.send_bytes(c, &raw_publish3(0, topic, None, b"x"));
        // [MQTT-1.5.3-1] [MQTT-1.5.3-2] closed; 3.1.1 has no DISCONNECT from the server.
        assert_closed_silently(&mut s, c);
        assert!(recv(&mut s, sub).is_empty());
    }
}

#[test]
fn mqtt_1_5_3_3_bom_not_stripped() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "\u{FEFF}x", Q0);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "x", b"no", Q0, false, 0);
    publish(&mut s, p, "\u{FEFF}x", b"yes", Q0, false, 0);
    // [MQTT-1.5.3-3]
    assert_eq!(payloads(&recv(&mut s, sub)), ["yes"]);
}

// ---- 2.2.2 Flags, 2.3.1 Packet Identifier -----------------------------------------------

#[test]
fn mqtt_2_2_2_1_and_2_invalid_flags_close() {
    // PINGREQ with flags, PUBREL with 0001, SUBSCRIBE with 0001.
    for bytes in [
        vec![0xC4, 0x00],
        frame(0x61, &[0, 1]),
        frame(0x81, &[0, 1, 0, 1, b'a', 0]),
    ] {
        let mut s = sim();
        let c = connect(&mut s, "c", true, V3);
        s.send_bytes(c, &bytes);
        // [MQTT-2.2.2-1] [MQTT-2.2.2-2]
        assert_closed_silently(&mut s, c);
    }
}

#[test]
fn mqtt_2_3_1_1_packet_identifier_must_be_non_zero() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    s.send_bytes(c, &raw_publish3(0x02, b"t", Some(0), b"x"));
    // [MQTT-2.3.1-1]
    assert_closed_silently(&mut s, c);
    let c = connect(&mut s, "c2", true, V3);
    s.send_bytes(c, &frame(0x82, &[0, 0, 0, 1, b'a', 0]));
    assert_closed_silently(&mut s, c);
}

#[test]
fn mqtt_2_3_1_4_server_packet_identifiers_unused_and_kept_on_resend() {
    let mut s = sim();
    let (sub, _) = persistent(&mut s, "sub");
    subscribe(&mut s, sub, "t", Q2);
    let p = connect(&mut s, "p", true, V3);
    for i in 0..20u16 {
        publish(
            &mut s,
            p,
            "t",
            b"x",
            if i % 2 == 0 { Q1 } else { Q2 },
            false,
            i + 1,
        );
    }
    let first = pubs(&recv(&mut s, sub));
    let ids: std::collections::HashSet<_> = first.iter().map(|x| x.pid.unwrap()).collect();
    // [MQTT-2.3.1-4] unused (distinct, non-zero) identifiers...
    assert_eq!(ids.len(), 20);
    assert!(!ids.contains(&0));
    s.drop_connection(sub);
    let (sub2, present) = persistent(&mut s, "sub");
    assert!(present);
    let again = pubs(&recv(&mut s, sub2));
    // ... the same ones when resending.
    assert_eq!(
        again.iter().map(|x| x.pid).collect::<Vec<_>>(),
        first.iter().map(|x| x.pid).collect::<Vec<_>>()
    );
}

#[test]
fn mqtt_2_3_1_5_qos0_without_identifier() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "t", Q0);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"x", Q2, false, 1);
    // [MQTT-2.3.1-5]
    assert_eq!(pubs(&recv(&mut s, sub))[0].pid, None);
}

#[test]
fn mqtt_2_3_1_6_and_7_acknowledgements_carry_identifiers() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    assert_eq!(
        subscribe_many(&mut s, c, 513, &[("t", SubscriptionOptions::qos(Q2))], None),
        [ReasonCode::GrantedQoS2]
    );
    publish(&mut s, c, "t", b"1", Q1, false, 300);
    publish(&mut s, c, "t", b"2", Q2, false, 301);
    send_ack(&mut s, c, PacketType::PubRel, 301);
    let got = recv(&mut s, c);
    // [MQTT-2.3.1-6]
    assert!(got.contains(&P::PubAck {
        pid: 300,
        code: ReasonCode::Success
    }));
    assert!(got.contains(&P::PubRec {
        pid: 301,
        code: ReasonCode::Success
    }));
    assert!(got.contains(&P::PubComp {
        pid: 301,
        code: ReasonCode::Success
    }));
    let delivered = pubs(&got);
    send_ack(&mut s, c, PacketType::PubRec, delivered[1].pid.unwrap());
    assert_eq!(
        recv(&mut s, c),
        [P::PubRel {
            pid: delivered[1].pid.unwrap(),
            code: ReasonCode::Success
        }]
    );
    // [MQTT-2.3.1-7] (SUBACK identifier checked by the helper)
    assert!(matches!(
        unsubscribe(&mut s, c, 514, &["t"]),
        P::UnsubAck { pid: 514, .. }
    ));
}

// ---- 3.1 CONNECT -------------------------------------------------------------------

#[test]
fn mqtt_3_1_0_1_first_packet_must_be_connect() {
    let mut s = sim();
    let c = s.open(0, V3).unwrap();
    s.send_bytes(c, &raw_publish3(0, b"t", None, b"x"));
    // [MQTT-3.1.0-1]
    assert_closed_silently(&mut s, c);
}

#[test]
fn mqtt_3_1_0_2_second_connect_disconnects() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    s.send(c, &Packet::Connect(c3("c")));
    // [MQTT-3.1.0-2]
    assert_closed_silently(&mut s, c);
}

#[test]
fn mqtt_3_1_2_1_wrong_protocol_name() {
    let mut s = sim();
    let c = open_raw(
        &mut s,
        V3,
        &raw_connect(b"MQTT-ish", 4, 0x02, 0, &[], &field(b"x")),
    );
    let got = recv(&mut s, c);
    // [MQTT-3.1.2-1] the server MAY disconnect; it does not go on with 3.1.1: at most a
    // refusing CONNACK, never a session.
    assert!(
        got.iter()
            .all(|p| matches!(p, P::ConnAck(a) if a.code.is_error())),
        "{got:?}"
    );
    assert!(s.is_closed(c));
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn mqtt_3_1_2_2_unsupported_level_connack_0x01() {
    let mut s = sim();
    for level in [1u8, 2, 6, 0x85] {
        let c = open_raw(
            &mut s,
            V3,
            &raw_connect(b"MQTT", level, 0x02, 0, &[], &field(b"x")),
        );
        // [MQTT-3.1.2-2] return code 0x01, then disconnect.
        assert_eq!(
            connack_bytes(&mut s, c),
            [0x20, 0x02, 0x00, 0x01],
            "level {level}"
        );
        assert!(s.is_closed(c));
    }
}

#[test]
fn mqtt_3_1_2_3_reserved_flag_disconnects() {
    let mut s = sim();
    let c = open_raw(
        &mut s,
        V3,
        &raw_connect(b"MQTT", 4, 0x03, 0, &[], &field(b"x")),
    );
    // [MQTT-3.1.2-3] (and [MQTT-3.1.4-1]: no CONNACK for a malformed CONNECT)
    assert_closed_silently(&mut s, c);
}

#[test]
fn mqtt_3_1_2_4_and_5_clean_session_0_resumes_and_stores_qos1_qos2() {
    let mut s = sim();
    let (c, present) = persistent(&mut s, "p");
    // [MQTT-3.1.2-4] no session: a new one.
    assert!(!present);
    subscribe(&mut s, c, "t", Q2);
    s.drop_connection(c);
    let p = connect(&mut s, "pub", true, V3);
    publish(&mut s, p, "t", b"q0", Q0, false, 0);
    publish(&mut s, p, "t", b"q1", Q1, false, 1);
    publish(&mut s, p, "t", b"q2", Q2, false, 2);
    // [MQTT-3.1.2-5] QoS 1 and 2 stored while disconnected.
    assert_eq!(s.brokers[0].session_queue_len("p"), Some(2));
    let (c2, present) = persistent(&mut s, "p");
    // [MQTT-3.1.2-4] resumed; [MQTT-3.2.2-2]
    assert!(present);
    assert_eq!(payloads(&recv_acking(&mut s, c2)), ["q1", "q2"]);
    publish(&mut s, p, "t", b"live", Q1, false, 3);
    assert_eq!(payloads(&recv(&mut s, c2)), ["live"]);
}

#[test]
fn mqtt_3_1_2_6_clean_session_1_discards_and_does_not_reuse() {
    let mut s = sim();
    let (c, _) = persistent(&mut s, "cs");
    subscribe(&mut s, c, "t", Q1);
    s.drop_connection(c);
    let c2 = connect(&mut s, "cs", true, V3);
    let p = connect(&mut s, "pub", true, V3);
    publish(&mut s, p, "t", b"x", Q1, false, 1);
    // [MQTT-3.1.2-6] the old subscription is gone.
    assert!(recv(&mut s, c2).is_empty());
    s.drop_connection(c2);
    // The clean session lasted as long as the connection: nothing to resume.
    let (_c3, present) = persistent(&mut s, "cs");
    assert!(!present);
}

#[test]
fn mqtt_3_1_2_7_retained_messages_survive_session_end() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "r", b"kept", Q1, true, 1);
    s.drop_connection(p);
    // [MQTT-3.1.2-7]
    assert_eq!(s.brokers[0].session_count(), 0);
    assert_eq!(s.brokers[0].retained_count(), 1);
}

#[test]
fn mqtt_3_1_2_8_10_12_will_lifecycle() {
    let mut s = sim();
    let w = connect(&mut s, "w", true, V3);
    subscribe(&mut s, w, "will/#", Q1);
    let mut cp = c3("d");
    cp.will = will("will/d", b"bye", Q1, false);
    let (d, _) = connect_ok(&mut s, &cp);
    assert!(recv(&mut s, w).is_empty());
    s.drop_connection(d);
    // [MQTT-3.1.2-8] published when the connection closes without DISCONNECT.
    assert_eq!(payloads(&recv(&mut s, w)), ["bye"]);
    // [MQTT-3.1.2-10] removed once published: a resumed session has no will.
    let mut cp2 = cp;
    cp2.clean_start = false;
    let (d2, _) = connect_ok(&mut s, &cp2);
    cp2.will = None;
    s.drop_connection(d2);
    let (d3, _) = connect_ok(&mut s, &cp2);
    s.drop_connection(d3);
    // [MQTT-3.1.2-12] no will flag, no will.
    assert_eq!(payloads(&recv(&mut s, w)), ["bye"]);
    // [MQTT-3.1.2-10] [MQTT-3.14.4-3] DISCONNECT discards it.
    let (d4, _) = connect_ok(&mut s, &cp);
    disconnect(&mut s, d4, ReasonCode::Success);
    assert!(recv(&mut s, w).is_empty());
}

#[test]
fn mqtt_3_1_2_9_11_13_14_15_will_flag_consistency() {
    let mut will_payload = field(b"x");
    will_payload.extend(field(b"will/t"));
    let cases: Vec<(u8, Vec<u8>)> = vec![
        // [MQTT-3.1.2-9] Will Flag set, no Will Topic / Message.
        (0x06, field(b"x")),
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13] Will QoS without Will Flag.
        (0x0A, field(b"x")),
        // [MQTT-3.1.2-14] Will QoS 3.
        (0x1E, {
            let mut v = will_payload.clone();
            v.extend(field(b"m"));
            v
        }),
        // [MQTT-3.1.2-11] [MQTT-3.1.2-15] Will Retain without Will Flag.
        (0x22, field(b"x")),
    ];
    for (flags, payload) in cases {
        let mut s = sim();
        let c = open_raw(
            &mut s,
            V3,
            &raw_connect(b"MQTT", 4, flags, 0, &[], &payload),
        );
        assert_closed_silently(&mut s, c);
    }
}

#[test]
fn mqtt_3_1_2_16_and_17_will_retain() {
    for retain in [false, true] {
        let mut s = sim();
        let mut cp = c3("d");
        cp.will = will("will/r", b"w", Q0, retain);
        let (d, _) = connect_ok(&mut s, &cp);
        s.drop_connection(d);
        // [MQTT-3.1.2-16] non-retained / [MQTT-3.1.2-17] retained.
        assert_eq!(s.brokers[0].retained_count(), usize::from(retain));
    }
}

#[test]
fn mqtt_3_1_2_18_to_22_user_name_and_password_flags() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    // [MQTT-3.1.2-19] [MQTT-3.1.2-21] present when flagged (user "bad" is refused, rc 4).
    let mut cp = c3("u");
    cp.username = Some("bad");
    cp.password = Some(b"x");
    let (c, _) = try_connect(&mut s, 0, &cp);
    assert_eq!(s.recv(c).len(), 0, "the CONNACK was read by try_connect");
    assert!(s.is_closed(c));
    let cases: Vec<(u8, Vec<u8>)> = vec![
        // [MQTT-3.1.2-18] no User Name Flag, but a user name follows.
        (0x02, [field(b"u"), field(b"name")].concat()),
        // [MQTT-3.1.2-19] User Name Flag, nothing follows.
        (0x82, field(b"u")),
        // [MQTT-3.1.2-20] no Password Flag, but a password follows.
        (0x82, [field(b"u"), field(b"name"), field(b"pw")].concat()),
        // [MQTT-3.1.2-21] Password Flag, no password.
        (0xC2, [field(b"u"), field(b"name")].concat()),
        // [MQTT-3.1.2-22] Password Flag without User Name Flag.
        (0x42, [field(b"u"), field(b"pw")].concat()),
    ];
    for (flags, payload) in cases {
        let c = open_raw(
            &mut s,
            V3,
            &raw_connect(b"MQTT", 4, flags, 0, &[], &payload),
        );
        assert_closed_silently(&mut s, c);
    }
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn mqtt_3_1_2_24_keep_alive_one_and_a_half_times() {
    let mut s = sim();
    let mut cp = c3("ka");
    cp.keep_alive = 4;
    let (c, _) = connect_ok(&mut s, &cp);
    s.advance(5_999);
    assert!(!s.is_closed(c));
    s.advance(1);
    // [MQTT-3.1.2-24] closed as if the network had failed: no packet.
    assert_closed_silently(&mut s, c);
}

#[test]
fn keep_alive_above_max_keepalive_refused() {
    let mut s = sim_cfg(Config {
        max_keepalive: 60,
        ..Config::default()
    });
    let mut cp = c3("ka");
    cp.keep_alive = 61;
    let (c, p) = try_connect(&mut s, 0, &cp);
    // 3.1.1 cannot tell the client another keep alive: refused (rc 2, as Mosquitto).
    assert!(matches!(p, P::ConnAck(ref a) if a.code.is_error()), "{p:?}");
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_1_3_1_to_4_payload_fields() {
    let mut s = sim();
    // [MQTT-3.1.3-1] order Client Identifier, Will Topic, Will Message, User Name, Password.
    let payload = [
        field(b"id"),
        field(b"will/t"),
        field(b"msg"),
        field(b"user"),
        field(b"pw"),
    ]
    .concat();
    let c = open_raw(&mut s, V3, &raw_connect(b"MQTT", 4, 0xC6, 0, &[], &payload));
    assert_eq!(connack_bytes(&mut s, c), [0x20, 2, 0, 0]);
    // [MQTT-3.1.3-2] [MQTT-3.1.3-3] the Client Identifier names the session.
    assert_eq!(s.brokers[0].session_queue_len("id"), Some(0));
    // [MQTT-3.1.3-3] missing Client Identifier; [MQTT-3.1.3-4] ill-formed UTF-8.
    for payload in [Vec::new(), field(&[0xFF, 0xFF])] {
        let c = open_raw(&mut s, V3, &raw_connect(b"MQTT", 4, 0x02, 0, &[], &payload));
        assert_closed_silently(&mut s, c);
    }
}

#[test]
fn mqtt_3_1_3_5_identifiers_of_1_to_23_alphanumerics_allowed() {
    let mut s = sim();
    for id in [
        "1",
        "abcdefghijklmnopqrstuvw",
        "ABCDEFGHIJKLMNOPQRSTUVW",
        "xyzXYZ0123456789",
    ] {
        let (_c, ack) = connect_ok(&mut s, &c3(id));
        // [MQTT-3.1.3-5]
        assert_eq!(ack.code, ReasonCode::Success, "{id}");
    }
}

#[test]
fn mqtt_3_1_3_6_zero_length_identifier_assigned() {
    let mut s = sim();
    let (a, _) = connect_ok(&mut s, &c3(""));
    let (b, _) = connect_ok(&mut s, &c3(""));
    // [MQTT-3.1.3-6] two sessions with unique identifiers, processed as usual.
    assert_eq!(s.brokers[0].session_count(), 2);
    subscribe(&mut s, a, "t", Q0);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"x", Q0, false, 0);
    assert_eq!(payloads(&recv(&mut s, a)), ["x"]);
    assert!(recv(&mut s, b).is_empty());
}

#[test]
fn mqtt_3_1_3_8_and_9_rejected_identifier_connack_0x02() {
    let mut s = sim_cfg(Config {
        max_client_id_len: 10,
        ..Config::default()
    });
    // [MQTT-3.1.3-8] zero-length with CleanSession 0.
    let mut cp = c3("");
    cp.clean_start = false;
    let c = s.open(0, V3).unwrap();
    s.send(c, &Packet::Connect(cp));
    assert_eq!(connack_bytes(&mut s, c), [0x20, 2, 0, 0x02]);
    assert!(s.is_closed(c));
    // [MQTT-3.1.3-9] an identifier the server rejects.
    let c = s.open(0, V3).unwrap();
    s.send(c, &Packet::Connect(c3("longer-than-ten")));
    assert_eq!(connack_bytes(&mut s, c), [0x20, 2, 0, 0x02]);
    assert!(s.is_closed(c));
    let mut s = sim_cfg(Config {
        allow_zero_length_clientid: false,
        ..Config::default()
    });
    let c = s.open(0, V3).unwrap();
    s.send(c, &Packet::Connect(c3("")));
    assert_eq!(connack_bytes(&mut s, c), [0x20, 2, 0, 0x02]);
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_1_3_10_and_11_will_topic_and_user_name_utf8() {
    for (flags, payload) in [
        (0x06u8, [field(b"x"), field(&[0xFF]), field(b"m")].concat()),
        (0x82, [field(b"x"), field(&[b'u', 0])].concat()),
    ] {
        let mut s = sim();
        let c = open_raw(
            &mut s,
            V3,
            &raw_connect(b"MQTT", 4, flags, 0, &[], &payload),
        );
        // [MQTT-3.1.3-10] [MQTT-3.1.3-11]
        assert_closed_silently(&mut s, c);
    }
}

#[test]
fn mqtt_3_1_4_1_invalid_connect_closed_without_connack() {
    let mut s = sim();
    let mut body = field(b"MQTT");
    body.extend([4, 0x02, 0]); // keep alive cut short
    let c = open_raw(&mut s, V3, &frame(0x10, &body));
    // [MQTT-3.1.4-1] [MQTT-3.2.2-6]
    assert_closed_silently(&mut s, c);
}

#[test]
fn mqtt_3_1_4_2_existing_client_disconnected() {
    let mut s = sim();
    let (old, _) = persistent(&mut s, "dup");
    subscribe(&mut s, old, "t", Q1);
    let (new, present) = persistent(&mut s, "dup");
    // [MQTT-3.1.4-2] the existing client is disconnected (no DISCONNECT in 3.1.1).
    assert_closed_silently(&mut s, old);
    assert!(present);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"new", Q1, false, 1);
    assert_eq!(payloads(&recv(&mut s, new)), ["new"]);
}

#[test]
fn mqtt_3_1_4_3_and_4_clean_session_processing_and_connack_0() {
    let mut s = sim();
    let (c, _) = persistent(&mut s, "x");
    s.drop_connection(c);
    let c = s.open(0, V3).unwrap();
    s.send(c, &Packet::Connect(c3("x")));
    // [MQTT-3.1.4-3] CleanSession 1 discarded the session; [MQTT-3.1.4-4] return code 0.
    assert_eq!(connack_bytes(&mut s, c), [0x20, 2, 0, 0]);
}

#[test]
fn mqtt_3_1_4_5_nothing_processed_after_rejection() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "#", Q0);
    let mut cp = c3("r");
    cp.username = Some("banned");
    let mut bytes = bytes_of(&Packet::Connect(cp), V3);
    bytes.extend(raw_publish3(1, b"t", None, b"smuggled"));
    let c = open_raw(&mut s, V3, &bytes);
    assert_eq!(connack_bytes(&mut s, c), [0x20, 2, 0, 0x05]);
    // [MQTT-3.1.4-5]
    assert!(recv(&mut s, sub).is_empty());
    assert_eq!(s.brokers[0].retained_count(), 0);
}

// ---- 3.2 CONNACK ---------------------------------------------------------------------

#[test]
fn mqtt_3_2_0_1_connack_first() {
    let mut s = sim();
    let (c, _) = persistent(&mut s, "f");
    subscribe(&mut s, c, "t", Q1);
    s.drop_connection(c);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"x", Q1, false, 1);
    let c = s.open(0, V3).unwrap();
    let mut cp = c3("f");
    cp.clean_start = false;
    s.send(c, &Packet::Connect(cp));
    let got = recv(&mut s, c);
    // [MQTT-3.2.0-1]
    assert!(matches!(got[0], P::ConnAck(_)), "{got:?}");
    assert_eq!(pubs(&got).len(), 1);
}

#[test]
fn mqtt_3_2_2_1_to_3_session_present() {
    let mut s = sim();
    let (c, _) = persistent(&mut s, "sp");
    s.drop_connection(c);
    for (clean, flags) in [(false, 1u8), (true, 0), (false, 0)] {
        let c = s.open(0, V3).unwrap();
        let mut cp = c3("sp");
        cp.clean_start = clean;
        s.send(c, &Packet::Connect(cp));
        // [MQTT-3.2.2-1] CleanSession 1: 0; [MQTT-3.2.2-2] stored session: 1;
        // [MQTT-3.2.2-3] none stored (the clean session discarded it): 0.
        assert_eq!(
            connack_bytes(&mut s, c),
            [0x20, 2, flags, 0],
            "clean {clean}"
        );
        s.drop_connection(c);
    }
}

#[test]
fn mqtt_3_2_2_4_and_5_refusal_has_session_present_0_and_closes() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let (c, _) = persistent(&mut s, "r");
    s.drop_connection(c);
    let c = s.open(0, V3).unwrap();
    let mut cp = c3("r");
    cp.clean_start = false;
    cp.username = Some("bad");
    s.send(c, &Packet::Connect(cp));
    // [MQTT-3.2.2-4] Session Present 0 with a non-zero return code; [MQTT-3.2.2-5] closed.
    assert_eq!(connack_bytes(&mut s, c), [0x20, 2, 0, 0x04]);
    assert!(s.is_closed(c));
}

// ---- 3.3 PUBLISH -------------------------------------------------------------------

#[test]
fn mqtt_3_3_1_1_dup_on_redelivery() {
    let mut s = sim();
    let (c, _) = persistent(&mut s, "d");
    subscribe(&mut s, c, "t", Q1);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"x", Q1, false, 1);
    assert!(!pubs(&recv(&mut s, c))[0].dup);
    s.drop_connection(c);
    let (c2, _) = persistent(&mut s, "d");
    // [MQTT-3.3.1-1]
    assert!(pubs(&recv(&mut s, c2))[0].dup);
}

#[test]
fn mqtt_3_3_1_2_dup_0_for_qos0() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "t", Q0);
    let c = connect(&mut s, "c", true, V3);
    publish(&mut s, c, "t", b"x", Q1, false, 1);
    assert!(!pubs(&recv(&mut s, sub))[0].dup);
    // [MQTT-3.3.1-2] DUP on QoS 0 from a client: malformed.
    s.send_bytes(c, &raw_publish3(0x08, b"t", None, b"x"));
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_3_1_3_outgoing_dup_independent() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "p", true, V3);
    s.send_bytes(p, &raw_publish3(0x0A, b"t", Some(1), b"dup in"));
    // [MQTT-3.3.1-3]
    assert!(!pubs(&recv(&mut s, sub))[0].dup);
}

#[test]
fn mqtt_3_3_1_4_qos_3_closes() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    s.send_bytes(c, &raw_publish3(0x06, b"t", Some(1), b"x"));
    // [MQTT-3.3.1-4]
    assert_closed_silently(&mut s, c);
}

#[test]
fn mqtt_3_3_1_5_to_8_retained_messages() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "r", b"first", Q2, true, 1);
    send_ack(&mut s, p, PacketType::PubRel, 1);
    publish(&mut s, p, "r", b"second", Q1, true, 2);
    // [MQTT-3.3.1-5] stored with its QoS; [MQTT-3.3.1-6] sent to a new subscription;
    // [MQTT-3.3.1-8] with RETAIN 1.
    let c = connect(&mut s, "c", true, V3);
    subscribe(&mut s, c, "r", Q2);
    let got = pubs(&recv_acking(&mut s, c));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (&got[0].payload[..], got[0].qos, got[0].retain),
        (&b"second"[..], Q1, true)
    );
    // [MQTT-3.3.1-7] QoS 0 with RETAIN replaces it.
    publish(&mut s, p, "r", b"zero", Q0, true, 0);
    // [MQTT-3.3.1-9] established subscription: RETAIN 0.
    let live = pubs(&recv(&mut s, c));
    assert_eq!(
        (&live[0].payload[..], live[0].retain),
        (&b"zero"[..], false)
    );
    let c2 = connect(&mut s, "c2", true, V3);
    subscribe(&mut s, c2, "r", Q2);
    assert_eq!(payloads(&recv(&mut s, c2)), ["zero"]);
}

#[test]
fn mqtt_3_3_1_10_to_12_empty_retained_and_retain_0() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "r", Q1);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "r", b"v", Q1, true, 1);
    publish(&mut s, p, "r", b"plain", Q1, false, 2);
    // [MQTT-3.3.1-12] RETAIN 0 does not replace.
    assert_eq!(s.brokers[0].retained_count(), 1);
    publish(&mut s, p, "r", b"", Q1, true, 3);
    // [MQTT-3.3.1-10] processed as normal (sent to subscribers) and removes the retained
    // message; [MQTT-3.3.1-11] nothing empty is stored.
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 3);
    assert!(got[2].payload.is_empty());
    assert_eq!(s.brokers[0].retained_count(), 0);
    let c = connect(&mut s, "c", true, V3);
    subscribe(&mut s, c, "r", Q1);
    assert!(recv(&mut s, c).is_empty());
}

#[test]
fn mqtt_3_3_2_1_to_3_topic_name() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "a/+", Q0);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "a/b", b"1", Q0, false, 0);
    publish(&mut s, p, "b/b", b"2", Q0, false, 0);
    // [MQTT-3.3.2-3] matches the filter.
    assert!(pubs(&recv(&mut s, sub)).iter().all(|x| x.topic == "a/b"));
    // [MQTT-3.3.2-2] wildcards in a topic name; [MQTT-3.3.2-1] UTF-8.
    for topic in [&b"a/+"[..], b"a/#", &[0xFF]] {
        let c = connect(&mut s, "bad", true, V3);
        s.send_bytes(c, &raw_publish3(0, topic, None, b"x"));
        assert_closed_silently(&mut s, c);
    }
    assert!(recv(&mut s, sub).is_empty());
}

#[test]
fn mqtt_3_3_4_1_response_by_qos() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    publish(&mut s, c, "t", b"0", Q0, false, 0);
    publish(&mut s, c, "t", b"1", Q1, false, 1);
    publish(&mut s, c, "t", b"2", Q2, false, 2);
    // [MQTT-3.3.4-1]
    assert_eq!(
        recv(&mut s, c),
        [
            P::PubAck {
                pid: 1,
                code: ReasonCode::Success
            },
            P::PubRec {
                pid: 2,
                code: ReasonCode::Success
            }
        ]
    );
}

#[test]
fn mqtt_3_3_5_1_overlapping_subscriptions_max_qos() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    subscribe(&mut s, c, "a/#", Q0);
    subscribe(&mut s, c, "a/+", Q2);
    subscribe(&mut s, c, "a/b", Q1);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "a/b", b"x", Q2, false, 1);
    let got = pubs(&recv(&mut s, c));
    // [MQTT-3.3.5-1] delivered respecting the maximum QoS of the matching subscriptions.
    assert!(!got.is_empty());
    assert!(got.iter().any(|x| x.qos == Q2));
}

#[test]
fn mqtt_3_3_5_2_unauthorized_publish_positive_ack() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "#", Q1);
    let c = connect(&mut s, "c", true, V3);
    publish(&mut s, c, "forbidden/x", b"x", Q1, false, 1);
    publish(&mut s, c, "forbidden/x", b"x", Q2, false, 2);
    // [MQTT-3.3.5-2] a positive acknowledgement (3.1.1 cannot say more), nothing delivered.
    assert_eq!(
        recv(&mut s, c),
        [
            P::PubAck {
                pid: 1,
                code: ReasonCode::Success
            },
            P::PubRec {
                pid: 2,
                code: ReasonCode::Success
            }
        ]
    );
    assert!(recv(&mut s, sub).is_empty());
    assert!(!s.is_closed(c));
}

#[test]
fn mqtt_3_6_1_1_pubrel_flags() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    publish(&mut s, c, "t", b"x", Q2, false, 1);
    recv(&mut s, c);
    s.send_bytes(c, &frame(0x60, &[0, 1]));
    // [MQTT-3.6.1-1]
    assert_closed_silently(&mut s, c);
}

// ---- 3.8 to 3.11 ---------------------------------------------------------------------

fn sub3(filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend(field(filter));
    body.push(options);
    frame(0x82, &body)
}

#[test]
fn mqtt_3_8_1_1_3_8_3_1_3_8_3_3_and_3_8_3_4_malformed_subscribe() {
    for bytes in [
        // [MQTT-3.8.1-1] flags.
        {
            let mut v = sub3(b"a", 0);
            v[0] = 0x80;
            v
        },
        // [MQTT-3.8.3-1] UTF-8.
        sub3(&[0xFF], 0),
        // [MQTT-3.8.3-3] v3.1.1: no Topic Filter.
        frame(0x82, &[0, 1]),
        // [MQTT-3-8.3-4] reserved bits in the options byte, QoS 3.
        sub3(b"a", 0x04),
        sub3(b"a", 0x03),
    ] {
        let mut s = sim();
        let c = connect(&mut s, "c", true, V3);
        s.send_bytes(c, &bytes);
        assert_closed_silently(&mut s, c);
    }
}

#[test]
fn mqtt_3_8_3_2_wildcards_unsupported_rejected() {
    let mut s = sim_cfg(Config {
        wildcard_subscriptions: false,
        ..Config::default()
    });
    let c = connect(&mut s, "c", true, V3);
    // [MQTT-3.8.3-2] refused (0x80), the plain one granted.
    assert_eq!(
        subscribe_many(
            &mut s,
            c,
            1,
            &[
                ("a/+", SubscriptionOptions::qos(Q1)),
                ("a/b", SubscriptionOptions::qos(Q1))
            ],
            None
        ),
        [ReasonCode::UnspecifiedError, ReasonCode::GrantedQoS1]
    );
}

#[test]
fn mqtt_3_8_4_1_to_6_and_3_9_3_1_2_suback() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let c = connect(&mut s, "c", true, V3);
    s.send(
        c,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(4242),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&[
                Subscription {
                    filter: "a",
                    options: SubscriptionOptions::qos(Q2),
                },
                Subscription {
                    filter: "secret/x",
                    options: SubscriptionOptions::qos(Q1),
                },
                Subscription {
                    filter: "b/#/c",
                    options: SubscriptionOptions::qos(Q1),
                },
                Subscription {
                    filter: "c/+",
                    options: SubscriptionOptions::qos(Q1),
                },
            ]),
        }),
    );
    let frames = s.recv(c);
    // [MQTT-3.8.4-1] one SUBACK; [MQTT-3.8.4-2] same identifier; [MQTT-3.8.4-4] one
    // response for several filters; [MQTT-3.8.4-5] a code each, granted QoS or failure;
    // [MQTT-3.9.3-1] in order; [MQTT-3.9.3-2] only 0x00, 0x01, 0x02 and 0x80.
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].bytes, [0x90, 6, 0x10, 0x92, 2, 0x80, 0x80, 1]);
    // [MQTT-3.8.4-3] an identical filter replaces the subscription (new QoS), one copy.
    assert_eq!(subscribe(&mut s, c, "a", Q0), [ReasonCode::Success]);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "a", b"x", Q2, false, 1);
    let got = pubs(&recv(&mut s, c));
    // [MQTT-3.8.4-6] minimum of published and granted QoS.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, Q0);
}

#[test]
fn mqtt_3_8_4_3_replacing_resends_retained_without_interrupting_flow() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "r", b"ret", Q1, true, 1);
    let c = connect(&mut s, "c", true, V3);
    subscribe(&mut s, c, "r", Q1);
    assert_eq!(payloads(&recv_acking(&mut s, c)), ["ret"]);
    publish(&mut s, p, "r", b"live", Q1, false, 2);
    subscribe(&mut s, c, "r", Q1);
    let got = payloads(&recv_acking(&mut s, c));
    // [MQTT-3.8.4-3] the retained message again, the live one not lost.
    assert!(
        got.contains(&"ret".to_string()) && got.contains(&"live".to_string()),
        "{got:?}"
    );
}

#[test]
fn mqtt_3_10_1_1_and_3_10_3_1_2_malformed_unsubscribe() {
    for bytes in [
        frame(0xA0, &[0, 1, 0, 1, b'a']),
        frame(0xA2, &[0, 1, 0, 1, 0xFF]),
        frame(0xA2, &[0, 1]),
    ] {
        let mut s = sim();
        let c = connect(&mut s, "c", true, V3);
        s.send_bytes(c, &bytes);
        // [MQTT-3.10.1-1] [MQTT-3.10.3-1] [MQTT-3.10.3-2]
        assert_closed_silently(&mut s, c);
    }
}

#[test]
fn mqtt_3_10_4_1_to_6_unsubscribe() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    subscribe(&mut s, c, "a/+", Q2);
    subscribe(&mut s, c, "b", Q2);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "a/x", b"inflight", Q2, false, 1);
    let started = pubs(&recv(&mut s, c));
    s.send(
        c,
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(77),
            properties: Properties::default(),
            filters: TopicFilters::List(&["a/x", "a/+", "zzz", "b"]),
        }),
    );
    // [MQTT-3.10.4-4] UNSUBACK with the identifier; [MQTT-3.10.4-5] even for filters
    // that matched nothing; [MQTT-3.10.4-6] one for all.
    let frames = s.recv(c);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].bytes, [0xB0, 2, 0, 77]);
    publish(&mut s, p, "a/x", b"new", Q1, false, 2);
    publish(&mut s, p, "b", b"new", Q1, false, 3);
    // [MQTT-3.10.4-1] "a/x" is not "a/+", but "a/+" itself was deleted;
    // [MQTT-3.10.4-2] no new messages.
    assert!(pubs(&recv(&mut s, c)).is_empty());
    // [MQTT-3.10.4-3] the QoS 2 delivery already started completes.
    send_ack(&mut s, c, PacketType::PubRec, started[0].pid.unwrap());
    assert!(matches!(&recv(&mut s, c)[..], [P::PubRel { .. }]));
}

#[test]
fn mqtt_3_12_4_1_pingresp() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    s.send(c, &Packet::PingReq);
    // [MQTT-3.12.4-1]
    assert_eq!(recv(&mut s, c), [P::PingResp]);
}

#[test]
fn mqtt_3_14_1_1_and_3_14_4_3_disconnect() {
    let mut s = sim();
    let w = connect(&mut s, "w", true, V3);
    subscribe(&mut s, w, "will", Q0);
    let mut cp = c3("d");
    cp.will = will("will", b"w", Q0, false);
    let (d, _) = connect_ok(&mut s, &cp);
    s.send_bytes(d, &[0xE1, 0x00]);
    // [MQTT-3.14.1-1] reserved bits: disconnected (and so the will is published).
    assert_closed_silently(&mut s, d);
    assert_eq!(payloads(&recv(&mut s, w)), ["w"]);
    let (d, _) = connect_ok(&mut s, &cp);
    s.send_bytes(d, &[0xE0, 0x00]);
    // [MQTT-3.14.4-3] discarded without publishing.
    assert!(s.is_closed(d));
    assert!(recv(&mut s, w).is_empty());
}

// ---- 4 Operational behavior ---------------------------------------------------------

#[test]
fn mqtt_4_1_0_1_and_2_session_state_for_the_whole_session() {
    let mut s = sim();
    let (c, _) = connect_ok(&mut s, &c3("c"));
    subscribe(&mut s, c, "t", Q1);
    s.advance(24 * 3600 * 1000);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"x", Q1, false, 1);
    // [MQTT-4.1.0-1] [MQTT-4.1.0-2]
    assert_eq!(payloads(&recv(&mut s, c)), ["x"]);
}

#[test]
fn mqtt_4_3_1_1_to_4_3_3_2_qos_flows() {
    let mut s = sim();
    let (c, _) = persistent(&mut s, "c");
    subscribe(&mut s, c, "t", Q2);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"0", Q0, false, 0);
    publish(&mut s, p, "t", b"1", Q1, false, 1);
    publish(&mut s, p, "t", b"2", Q2, false, 2);
    // Receiver side: [MQTT-4.3.2-2] PUBACK; [MQTT-4.3.3-2] PUBREC, duplicates acknowledged
    // without redelivery, PUBCOMP for PUBREL.
    s.send_bytes(p, &raw_publish3(0x0C, b"t", Some(2), b"2"));
    send_ack(&mut s, p, PacketType::PubRel, 2);
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
    let got = pubs(&recv(&mut s, c));
    // Sender side: [MQTT-4.3.1-1] QoS 0 DUP 0; [MQTT-4.3.2-1] [MQTT-4.3.3-1] QoS 1 and 2,
    // DUP 0, new identifiers.
    assert_eq!(
        got.iter().map(|x| (x.qos, x.dup)).collect::<Vec<_>>(),
        [(Q0, false), (Q1, false), (Q2, false)]
    );
    send_ack(&mut s, c, PacketType::PubRec, got[2].pid.unwrap());
    assert_eq!(
        recv(&mut s, c),
        [P::PubRel {
            pid: got[2].pid.unwrap(),
            code: ReasonCode::Success
        }]
    );
    s.drop_connection(c);
    let (c2, _) = persistent(&mut s, "c");
    // [MQTT-4.3.2-1] the unacknowledged QoS 1 PUBLISH; [MQTT-4.3.3-1] the PUBREL, not the
    // PUBLISH; [MQTT-4.4.0-1] original identifiers.
    let again = recv(&mut s, c2);
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(matches!(&again[0], P::Publish(x) if x.pid == got[1].pid && x.dup));
    assert_eq!(
        again[1],
        P::PubRel {
            pid: got[2].pid.unwrap(),
            code: ReasonCode::Success
        }
    );
}

#[test]
fn mqtt_4_3_2_2_puback_then_same_identifier_is_new() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "t", b"a", Q1, false, 5);
    s.send_bytes(p, &raw_publish3(0x0A, b"t", Some(5), b"b"));
    // [MQTT-4.3.2-2]
    assert_eq!(payloads(&recv(&mut s, sub)), ["a", "b"]);
}

#[test]
fn mqtt_4_5_0_1_added_to_matching_sessions() {
    let mut s = sim();
    let (c, _) = persistent(&mut s, "off");
    subscribe(&mut s, c, "x/#", Q1);
    s.drop_connection(c);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "x/y", b"m", Q1, false, 1);
    // [MQTT-4.5.0-1]
    assert_eq!(s.brokers[0].session_queue_len("off"), Some(1));
}

#[test]
fn mqtt_4_6_0_5_and_6_ordered_topic() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    subscribe(&mut s, c, "o", Q2);
    let p = connect(&mut s, "p", true, V3);
    for i in 0..30u16 {
        let q = [Q1, Q2][usize::from(i % 2)];
        publish(&mut s, p, "o", format!("{i}").as_bytes(), q, false, i + 1);
    }
    let got = payloads(&recv_acking(&mut s, c));
    let expect: Vec<String> = (0..30).map(|i: u16| i.to_string()).collect();
    // [MQTT-4.6.0-5] [MQTT-4.6.0-6]
    assert_eq!(got, expect);
}

#[test]
fn mqtt_4_7_1_1_to_3_and_4_7_2_1_topic_wildcards() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V3);
    let filters = [
        "sport/tennis/#",
        "sport/+",
        "+",
        "#",
        "$dev/#",
        "sport/+/player1",
    ];
    let subs: Vec<Client> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let c = connect(&mut s, &format!("c{i}"), true, V3);
            // [MQTT-4.7.1-2] [MQTT-4.7.1-3] valid placements are granted.
            assert_eq!(subscribe(&mut s, c, f, Q0), [ReasonCode::Success], "{f}");
            c
        })
        .collect();
    for t in ["sport/tennis", "sport/tennis/player1", "sport", "$dev/x"] {
        publish(&mut s, p, t, t.as_bytes(), Q0, false, 0);
    }
    let got: Vec<Vec<String>> = subs.iter().map(|c| payloads(&recv(&mut s, *c))).collect();
    assert_eq!(got[0], ["sport/tennis", "sport/tennis/player1"]);
    assert_eq!(got[1], ["sport/tennis"]);
    assert_eq!(got[2], ["sport"]);
    // [MQTT-4.7.2-1] "#" does not match "$dev/x".
    assert_eq!(got[3], ["sport/tennis", "sport/tennis/player1", "sport"]);
    assert_eq!(got[4], ["$dev/x"]);
    assert_eq!(got[5], ["sport/tennis/player1"]);
    // [MQTT-4.7.1-2] [MQTT-4.7.1-3] misplaced wildcards: refused (0x80).
    let c = connect(&mut s, "bad", true, V3);
    for f in ["sport/tennis#", "sport/#/x", "sport+", "+x/y"] {
        assert_eq!(
            subscribe(&mut s, c, f, Q0),
            [ReasonCode::UnspecifiedError],
            "{f}"
        );
    }
    // [MQTT-4.7.1-1] not in topic names: closed.
    s.send_bytes(p, &raw_publish3(0, b"sport/+", None, b"x"));
    assert!(s.is_closed(p));
}

#[test]
fn mqtt_4_7_3_1_to_4_topic_rules() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V3);
    // [MQTT-4.7.3-1] at least one character.
    assert_eq!(subscribe(&mut s, c, "", Q0), [ReasonCode::UnspecifiedError]);
    // [MQTT-4.7.3-3] the longest topic works.
    let long = "t".repeat(65_535);
    assert_eq!(subscribe(&mut s, c, &long, Q0), [ReasonCode::Success]);
    // [MQTT-4.7.3-4] no normalization.
    subscribe(&mut s, c, "caf\u{e9}", Q0);
    let p = connect(&mut s, "p", true, V3);
    publish(&mut s, p, "cafe\u{301}", b"decomposed", Q0, false, 0);
    publish(&mut s, p, &long, b"long", Q0, false, 0);
    assert_eq!(payloads(&recv(&mut s, c)), ["long"]);
    // Empty topic name: closed; [MQTT-4.7.3-2] U+0000: closed.
    s.send_bytes(p, &raw_publish3(0, b"", None, b"x"));
    assert!(s.is_closed(p));
    let p = connect(&mut s, "p2", true, V3);
    s.send_bytes(p, &sub3(b"a\0", 0));
    assert!(s.is_closed(p));
}

#[test]
fn mqtt_4_8_0_1_protocol_violation_closes() {
    let mut s = sim();
    let other = connect(&mut s, "other", true, V3);
    let c = connect(&mut s, "c", true, V3);
    // AUTH does not exist in 3.1.1.
    s.send_bytes(c, &frame(0xF0, &[]));
    // [MQTT-4.8.0-1]
    assert_closed_silently(&mut s, c);
    assert!(!s.is_closed(other));
    // A packet only a server sends.
    let c = connect(&mut s, "c", true, V3);
    s.send_bytes(c, &[0xD0, 0x00]);
    assert_closed_silently(&mut s, c);
}

#[test]
fn backpressure_is_not_an_error() {
    // Too many acknowledgements waiting to be written: the core stops reading
    // (backpressure) instead of failing the connection.
    let mut s = sim_cfg(Config {
        max_pending_control: 2,
        ..Config::default()
    });
    let c = connect(&mut s, "c", true, V3);
    for i in 0..10u16 {
        publish(&mut s, c, "t", b"x", Q1, false, i + 1);
    }
    assert_eq!(recv(&mut s, c).len(), 10);
    assert!(!s.is_closed(c));
}
