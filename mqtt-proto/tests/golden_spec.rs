//! Golden vectors from the specifications' own examples and tables, tested in both
//! directions. Sources:
//! - MQTT 3.1.1 (OASIS Standard, 29 October 2014): Table 2.4 (Remaining Length sizes),
//!   Figure 1.1 (UTF-8 string U+2A6D4), Figure 3.6 (CONNECT variable header), Figure 3.11
//!   (PUBLISH variable header), Figure 3.21 (SUBSCRIBE payload), Figure 3.26 (SUBACK
//!   payload), Figure 3.30 (UNSUBSCRIBE payload), and the fixed headers of 3.2, 3.12-3.14.
//! - MQTT 5.0 (OASIS Standard, 7 March 2019): Table 1-1 (Variable Byte Integer sizes),
//!   Figure 1-1 (UTF-8 string), Figure 3-6 (CONNECT variable header with Session Expiry
//!   Interval 10), the PUBLISH variable header example (topic `a/b`, packet id 10, no
//!   properties), and the SUBSCRIBE / UNSUBSCRIBE payload examples.
//! - MQTT 3.1 (IBM/Eurotech, 2010): protocol name `MQIsdp` and version 3 (3.1 "CONNECT").
//!
//! The spec figures show parts of packets (a variable header, a payload). Each test builds the
//! whole packet around the figure's bytes, from the rules of the section that contains it,
//! and says which bytes are the figure's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Match::Exact;
use common::*;
use mqtt_proto::*;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// 3.1.1 Table 2.4 / 5.0 Table 1-1: the smallest and largest value of each encoded size.
const VBI_TABLE: [(usize, &[u8]); 8] = [
    (0, &[0x00]),
    (127, &[0x7F]),
    (128, &[0x80, 0x01]),
    (16_383, &[0xFF, 0x7F]),
    (16_384, &[0x80, 0x80, 0x01]),
    (2_097_151, &[0xFF, 0xFF, 0x7F]),
    (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
];

#[test]
fn vbi_table_decodes() {
    for (value, enc) in VBI_TABLE {
        let mut buf = vec![0x30];
        buf.extend_from_slice(enc);
        let Status::Complete(h) = FixedHeader::parse(&buf, usize::MAX).unwrap() else {
            panic!("complete header expected for {value}")
        };
        assert_eq!(h.remaining_length, value);
        assert_eq!(h.header_len, 1 + enc.len());
        assert_eq!(varint_len(value), enc.len());
        // One byte short of the header: more input needed, nothing decided yet.
        assert!(matches!(
            FixedHeader::parse(&buf[..buf.len() - 1], usize::MAX).unwrap(),
            Status::Incomplete { .. }
        ));
    }
    assert_eq!(MAX_REMAINING_LENGTH, 268_435_455);
}

#[test]
fn vbi_table_encodes() {
    // A QoS 0 PUBLISH to topic "a" (3 bytes of variable header) whose payload makes the
    // remaining length equal to the table's value. emit_header never reads the payload, so
    // even the 256 MiB case is cheap (the zeroed allocation is never touched).
    for (value, enc) in VBI_TABLE {
        let mut expected = vec![0x30];
        expected.extend_from_slice(enc);
        if value < 3 {
            // Remaining length 0: PINGREQ (3.1.1 Figure 3.33: C0 00).
            if value == 0 {
                let out = encode(&Packet::PingReq, V311).unwrap();
                assert_eq!(out, [0xC0, 0x00]);
            }
            continue;
        }
        let payload = vec![0u8; value - 3];
        let p = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "a",
            packet_id: None,
            properties: Properties::default(),
            payload: &payload,
        };
        let mut buf = [0u8; 16];
        let n = p.emit_header(V311, &mut buf).unwrap();
        assert_eq!(
            &buf[..1 + enc.len()],
            &expected[..],
            "remaining length {value}"
        );
        assert_eq!(&buf[1 + enc.len()..n], &[0x00, 0x01, b'a']);
        assert_eq!(
            Packet::Publish(p).encoded_len(V311).unwrap(),
            1 + enc.len() + value
        );
    }
}

/// 3.1.1 Figure 1.1 / 5.0 Figure 1-1: "A" U+2A6D4 is 00 05 41 F0 AA 9B 94.
#[test]
fn utf8_string_example_u_2a6d4() {
    let s = "A\u{2A6D4}";
    let figure = [0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94];
    for v in [V31, V311, V5] {
        // As a PUBLISH topic name (QoS 0, empty payload).
        let mut bytes = vec![0x30, figure.len() as u8 + u8::from(v == V5)];
        bytes.extend_from_slice(&figure);
        if v == V5 {
            bytes.push(0x00); // property length
        }
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: s,
            packet_id: None,
            properties: Properties::default(),
            payload: b"",
        });
        check_both_ways(&bytes, v, &p, Exact);
    }
}

/// The CONNECT payload that goes with flags 0xCE (user name, password, will QoS 1, will
/// flag, clean session) in the order of 3.1.3: client id "c", will topic "w", will message
/// "m", user name "u", password "p".
fn connect_ce(v: ProtocolVersion, properties: Properties<'static>) -> Packet<'static> {
    Packet::Connect(Connect {
        protocol: v,
        clean_start: true,
        bridge: false,
        keep_alive: 10,
        properties,
        client_id: "c",
        will: Some(Will {
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
            topic: "w",
            payload: b"m",
        }),
        username: Some("u"),
        password: Some(b"p"),
    })
}

const CE_PAYLOAD: [u8; 15] = [
    0x00, 0x01, b'c', 0x00, 0x01, b'w', 0x00, 0x01, b'm', 0x00, 0x01, b'u', 0x00, 0x01, b'p',
];

/// 3.1.1 Figure 3.6: 00 04 'M' 'Q' 'T' 'T' 04 CE 00 0A.
#[test]
fn connect_variable_header_v311_figure_3_6() {
    let figure = hex("00 04 4D 51 54 54 04 CE 00 0A");
    let mut bytes = vec![0x10, (figure.len() + CE_PAYLOAD.len()) as u8];
    bytes.extend_from_slice(&figure);
    bytes.extend_from_slice(&CE_PAYLOAD);
    check_both_ways(
        &bytes,
        V311,
        &connect_ce(V311, Properties::default()),
        Exact,
    );
}

/// 5.0 Figure 3-6: 00 04 'M' 'Q' 'T' 'T' 05 CE 00 0A, properties: length 5, Session Expiry
/// Interval (0x11) = 10.
#[test]
fn connect_variable_header_v5_figure_3_6() {
    let figure = hex("00 04 4D 51 54 54 05 CE 00 0A 05 11 00 00 00 0A");
    let mut payload = CE_PAYLOAD.to_vec();
    payload.insert(3, 0x00); // 3.1.3.2: the will properties (empty) precede the will topic
    let mut bytes = vec![0x10, (figure.len() + payload.len()) as u8];
    bytes.extend_from_slice(&figure);
    bytes.extend_from_slice(&payload);
    let props = Properties {
        session_expiry_interval: Some(10),
        ..Properties::default()
    };
    check_both_ways(&bytes, V5, &connect_ce(V5, props), Exact);
}

/// MQTT 3.1: protocol name "MQIsdp" (00 06 'M' 'Q' 'I' 's' 'd' 'p') and version 3, with the
/// same flags and keep alive as above.
#[test]
fn connect_variable_header_v31() {
    let header = hex("00 06 4D 51 49 73 64 70 03 CE 00 0A");
    let mut bytes = vec![0x10, (header.len() + CE_PAYLOAD.len()) as u8];
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&CE_PAYLOAD);
    check_both_ways(&bytes, V31, &connect_ce(V31, Properties::default()), Exact);
}

fn publish_ab_10() -> Packet<'static> {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "a/b",
        packet_id: Some(pid(10)),
        properties: Properties::default(),
        payload: b"",
    })
}

/// 3.1.1 Figure 3.11: topic "a/b", packet identifier 10: 00 03 61 2F 62 00 0A.
#[test]
fn publish_variable_header_v311_figure_3_11() {
    for v in [V31, V311] {
        check_both_ways(
            &hex("32 07 00 03 61 2F 62 00 0A"),
            v,
            &publish_ab_10(),
            Exact,
        );
    }
}

/// 5.0 3.3.2 example: topic "a/b", packet identifier 10, property length 0.
#[test]
fn publish_variable_header_v5_example() {
    check_both_ways(
        &hex("32 08 00 03 61 2F 62 00 0A 00"),
        V5,
        &publish_ab_10(),
        Exact,
    );
}

const AB_CD: [Subscription<'static>; 2] = [
    Subscription {
        filter: "a/b",
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    },
    Subscription {
        filter: "c/d",
        options: SubscriptionOptions::qos(QoS::ExactlyOnce),
    },
];

/// 3.1.1 Figure 3.21 / 5.0 3.8.3 example: "a/b" QoS 1, "c/d" QoS 2, after packet identifier
/// 10 (3.1.1 Figure 3.19) and, in 5.0, an empty property block.
#[test]
fn subscribe_payload_example() {
    let figure = "00 03 61 2F 62 01 00 03 63 2F 64 02";
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        properties: Properties::default(),
        subscriptions: Subscriptions::List(&AB_CD),
    });
    for v in [V31, V311] {
        check_both_ways(&hex(&format!("82 0E 00 0A {figure}")), v, &p, Exact);
    }
    check_both_ways(&hex(&format!("82 0F 00 0A 00 {figure}")), V5, &p, Exact);
}

/// 3.1.1 Figure 3.26: "Success - Maximum QoS 0" 00, "Success - Maximum QoS 2" 02,
/// "Failure" 80.
#[test]
fn suback_payload_v311_figure_3_26() {
    let codes = [
        ReasonCode::GRANTED_QOS_0,
        ReasonCode::GrantedQoS2,
        ReasonCode::UnspecifiedError,
    ];
    let p = Packet::SubAck(SubAck {
        packet_id: pid(10),
        properties: Properties::default(),
        reason_codes: ReasonCodes::List(&codes),
    });
    check_both_ways(&hex("90 05 00 0A 00 02 80"), V311, &p, Exact);
    // 5.0: the same codes (0x80 Unspecified error) after an empty property block.
    check_both_ways(&hex("90 06 00 0A 00 00 02 80"), V5, &p, Exact);
    // 3.1.1 has one failure code: every MQTT 5 failure is sent as 0x80 (3.9.3).
    let denied = [ReasonCode::NotAuthorized];
    let p = Packet::SubAck(SubAck {
        packet_id: pid(10),
        properties: Properties::default(),
        reason_codes: ReasonCodes::List(&denied),
    });
    assert_eq!(encode(&p, V311).unwrap(), hex("90 03 00 0A 80"));
    assert_eq!(encode(&p, V5).unwrap(), hex("90 04 00 0A 00 87"));
}

/// 3.1.1 Figure 3.30 / 5.0 3.10.3 example: "a/b", "c/d".
#[test]
fn unsubscribe_payload_example() {
    let figure = "00 03 61 2F 62 00 03 63 2F 64";
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(10),
        properties: Properties::default(),
        filters: TopicFilters::List(&["a/b", "c/d"]),
    });
    for v in [V31, V311] {
        check_both_ways(&hex(&format!("A2 0C 00 0A {figure}")), v, &p, Exact);
    }
    check_both_ways(&hex(&format!("A2 0D 00 0A 00 {figure}")), V5, &p, Exact);
}

/// Packets whose every byte the spec fixes: PINGREQ C0 00, PINGRESP D0 00, DISCONNECT E0 00
/// (3.1.1 3.12-3.14; in 5.0 a DISCONNECT of Remaining Length 0 means 0x00 Normal
/// disconnection, 3.14.2.1), CONNACK accepted 20 02 00 00 (3.2), and AUTH F0 00 (5.0
/// 3.15.2.1: Remaining Length 0 means Success with no properties).
#[test]
fn fixed_packets() {
    for v in [V31, V311, V5] {
        check_both_ways(&[0xC0, 0x00], v, &Packet::PingReq, Exact);
        check_both_ways(&[0xD0, 0x00], v, &Packet::PingResp, Exact);
        check_both_ways(
            &[0xE0, 0x00],
            v,
            &Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
            Exact,
        );
    }
    for v in [V31, V311] {
        check_both_ways(
            &[0x20, 0x02, 0x00, 0x00],
            v,
            &Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: Properties::default(),
            }),
            Exact,
        );
    }
    check_both_ways(
        &[0xF0, 0x00],
        V5,
        &Packet::Auth(Auth {
            reason_code: ReasonCode::Success,
            properties: Properties::default(),
        }),
        Exact,
    );
    // 5.0 3.4.2.1: a PUBACK with Remaining Length 2 is Success without properties, and one
    // that spells out 0x00 and an empty property block means the same.
    let ack = Packet::PubAck(Ack::new(pid(10)));
    check_both_ways(&[0x40, 0x02, 0x00, 0x0A], V5, &ack, Exact);
    assert_eq!(decode(&[0x40, 0x04, 0x00, 0x0A, 0x00, 0x00], V5), ack);
    assert_eq!(decode(&[0x40, 0x03, 0x00, 0x0A, 0x00], V5), ack);
}
