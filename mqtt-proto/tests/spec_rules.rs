//! One test per rule the codec enforces, named after the normative statement it checks
//! (`mqtt_1_5_4_2_...` is [MQTT-1.5.4-2]); rules without an identifier name their section.
//! Where 3.1.1 and 5.0 number the same rule differently, the comment gives both. Each test
//! also checks the MQTT 5 reason code the error maps to (0x81 Malformed Packet, 0x82 Protocol
//! Error, 0x84 Unsupported Protocol Version, 0x90 Topic Name invalid, 0x95 Packet too large).
//!
//! The malformed inputs are hand-built here from the spec text, field by field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mqtt_proto::topic::{self, Filter, TopicError};
use mqtt_proto::*;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;
const ALL: [ProtocolVersion; 3] = [V31, V311, V5];

const MALFORMED: u8 = 0x81;
const PROTOCOL_ERROR: u8 = 0x82;
const UNSUPPORTED_VERSION: u8 = 0x84;
const TOPIC_NAME_INVALID: u8 = 0x90;
const PACKET_TOO_LARGE: u8 = 0x95;

/// A packet from its first byte and body; the remaining length is computed.
fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed field (1.5.4 / 1.5.6).
fn s(b: &[u8]) -> Vec<u8> {
    let mut out = (b.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The decode error for `bytes`, checking its reason code.
fn err(bytes: &[u8], v: ProtocolVersion, code: u8) -> DecodeError {
    let e = match Packet::parse(bytes, v, MAX) {
        Err(e) => e,
        Ok(r) => panic!("{} ({v}) decoded: {r:?}", to_hex(bytes)),
    };
    assert_eq!(e.reason_code() as u8, code, "{e:?} for {}", to_hex(bytes));
    // Every error has a message (and formatting it does not panic).
    assert!(!e.to_string().is_empty());
    e
}

fn ok(bytes: &[u8], v: ProtocolVersion) -> Packet<'_> {
    decode(bytes, v)
}

/// A PUBLISH QoS 0 with `topic` as raw bytes.
fn publish_topic(topic: &[u8], v: ProtocolVersion) -> Vec<u8> {
    let props: &[u8] = if v == V5 { &[0] } else { &[] };
    pkt(0x30, &cat(&[&s(topic), props, b"x"]))
}

/// A v5 CONNECT carrying `props` as its property block.
fn connect_v5_props(props: &[u8]) -> Vec<u8> {
    pkt(
        0x10,
        &cat(&[
            &s(b"MQTT"),
            &[5, 0x02, 0, 60],
            &prop_block(props),
            &s(b"id"),
        ]),
    )
}

fn prop_block(props: &[u8]) -> Vec<u8> {
    assert!(props.len() < 128);
    cat(&[&[props.len() as u8], props])
}

fn publish_v5_props(props: &[u8]) -> Vec<u8> {
    pkt(0x32, &cat(&[&s(b"t"), &[0, 1], &prop_block(props), b"x"]))
}

// ---------------------------------------------------------------------------------------
// 1.5 Data representation

/// [MQTT-1.5.5-1] (5.0; 3.1.1 2.2.3): the minimum number of bytes. 0x80 0x00 encodes 0 in
/// two bytes; 0xFF 0x00 encodes 127 in two.
#[test]
fn mqtt_1_5_5_1_non_minimal_variable_byte_integer_rejected() {
    for enc in [
        &[0x80, 0x00][..],
        &[0xFF, 0x00],
        &[0x80, 0x80, 0x00],
        &[0x80, 0x80, 0x80, 0x00],
    ] {
        let mut b = vec![0x30];
        b.extend_from_slice(enc);
        assert_eq!(
            FixedHeader::parse(&b, MAX),
            Err(DecodeError::NonMinimalVarInt)
        );
        for v in ALL {
            assert_eq!(err(&b, v, MALFORMED), DecodeError::NonMinimalVarInt);
        }
    }
    // Inside the packet too: the property length and a Subscription Identifier.
    let b = pkt(0x32, &cat(&[&s(b"t"), &[0, 1], &[0x80, 0x00], b"x"]));
    assert_eq!(err(&b, V5, MALFORMED), DecodeError::NonMinimalVarInt);
    let b = publish_v5_props(&[0x0B, 0x81, 0x00]);
    assert_eq!(err(&b, V5, MALFORMED), DecodeError::NonMinimalVarInt);
}

/// 1.5.5 / 2.2.3: a Variable Byte Integer has at most four bytes; the fifth continuation is
/// refused as soon as the fourth byte arrives.
#[test]
fn mqtt_1_5_5_variable_byte_integer_longer_than_4_bytes_rejected() {
    let b = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
    for v in ALL {
        assert_eq!(err(&b, v, MALFORMED), DecodeError::VarIntTooLong);
        assert_eq!(err(&b[..5], v, MALFORMED), DecodeError::VarIntTooLong);
    }
    // Three continuation bytes so far: still undecided.
    assert_eq!(
        FixedHeader::parse(&b[..4], MAX),
        Ok(Status::Incomplete { needed: 1 })
    );
}

/// [MQTT-1.5.4-1] (5.0; 3.1.1 [MQTT-1.5.3-1]): ill-formed UTF-8 is a Malformed Packet.
#[test]
fn mqtt_1_5_4_1_ill_formed_utf8_rejected() {
    let bad: [&[u8]; 6] = [
        b"\xC3\x28",         // invalid continuation
        b"\xC0\xAF",         // overlong '/'
        b"\xE2\x82",         // truncated 3-byte sequence
        b"\xFF",             // never valid
        b"\xF4\x90\x80\x80", // beyond U+10FFFF
        b"a\x80",            // lone continuation byte
    ];
    for t in bad {
        for v in ALL {
            assert_eq!(
                err(&publish_topic(t, v), v, MALFORMED),
                DecodeError::InvalidUtf8
            );
        }
    }
    // In a client identifier and a user property as well.
    let b = pkt(
        0x10,
        &cat(&[&s(b"MQTT"), &[4, 0x02, 0, 60], &s(b"\xC3\x28")]),
    );
    assert_eq!(err(&b, V311, MALFORMED), DecodeError::InvalidUtf8);
    let up = cat(&[&[0x26], &s(b"k"), &s(b"\xED\xA0\x80")]);
    assert_eq!(
        err(&publish_v5_props(&up), V5, MALFORMED),
        DecodeError::InvalidUtf8
    );
}

/// [MQTT-1.5.4-1] (5.0; 3.1.1 [MQTT-1.5.3-1]): the code points U+D800..U+DFFF must not
/// appear; encoded in UTF-8 they are ill-formed (ED A0 80 is U+D800, ED BF BF U+DFFF).
#[test]
fn mqtt_1_5_4_1_surrogates_rejected() {
    for t in [
        &b"\xED\xA0\x80"[..],
        b"a/\xED\xBF\xBF",
        b"\xED\xA0\xBD\xED\xB2\xA9",
    ] {
        for v in ALL {
            assert_eq!(
                err(&publish_topic(t, v), v, MALFORMED),
                DecodeError::InvalidUtf8
            );
        }
    }
}

/// [MQTT-1.5.4-2] (5.0; 3.1.1 [MQTT-1.5.3-2]): no U+0000, in any string.
#[test]
fn mqtt_1_5_4_2_null_character_rejected() {
    for v in ALL {
        assert_eq!(
            err(&publish_topic(b"a\0b", v), v, MALFORMED),
            DecodeError::NullCharacter
        );
    }
    let b = pkt(0x10, &cat(&[&s(b"MQTT"), &[4, 0x02, 0, 60], &s(b"id\0")]));
    assert_eq!(err(&b, V311, MALFORMED), DecodeError::NullCharacter);
    let b = pkt(0xA2, &cat(&[&[0, 1], &s(b"a/\0")]));
    assert_eq!(err(&b, V311, MALFORMED), DecodeError::NullCharacter);
    let ct = cat(&[&[0x03], &s(b"text\0")]);
    assert_eq!(
        err(&publish_v5_props(&ct), V5, MALFORMED),
        DecodeError::NullCharacter
    );
    // The encoder refuses to produce it.
    let p = Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::Success,
        properties: Properties {
            reason_string: Some("bad\0"),
            ..Properties::default()
        },
    });
    assert!(matches!(encode(&p, V5), Err(EncodeError::InvalidField(_))));
}

/// [MQTT-1.5.4-3] (5.0; 3.1.1 [MQTT-1.5.3-3]): a BOM (EF BB BF) is U+FEFF and must not be
/// skipped or stripped.
#[test]
fn mqtt_1_5_4_3_bom_kept() {
    for v in ALL {
        let b = publish_topic(b"\xEF\xBB\xBFa", v);
        let Packet::Publish(p) = ok(&b, v) else {
            panic!()
        };
        assert_eq!(p.topic, "\u{FEFF}a");
        assert_eq!(encode(&Packet::Publish(p), v).unwrap(), b);
    }
}

// ---------------------------------------------------------------------------------------
// 2.1 Fixed header

/// [MQTT-2.1.3-1] (3.1.1; 5.0 [MQTT-2.1.3-1] / Table 2-2): the reserved flags must be the
/// listed values (0010 for PUBREL, SUBSCRIBE, UNSUBSCRIBE; 0000 otherwise). Checked for every
/// type and every wrong value, in every version, from the first byte alone.
#[test]
fn mqtt_2_1_3_1_reserved_fixed_header_flags_for_each_type() {
    let types = [1u8, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    for t in types {
        let pt = PacketType::from_u8(t).unwrap();
        let required = pt.required_flags().unwrap();
        assert_eq!(required, if matches!(t, 6 | 8 | 10) { 2 } else { 0 });
        for flags in 0..16u8 {
            let first = (t << 4) | flags;
            let r = FixedHeader::parse(&[first], MAX);
            if flags == required {
                assert_eq!(r, Ok(Status::Incomplete { needed: 1 }), "{first:#04x}");
            } else {
                let e = DecodeError::InvalidHeaderFlags { packet: pt, flags };
                assert_eq!(r, Err(e), "{first:#04x}");
                for v in ALL {
                    assert_eq!(err(&[first, 0], v, MALFORMED), e);
                }
            }
        }
    }
}

/// 2.1.2 (Table 2.1 / 2-1): packet type 0 is reserved.
#[test]
fn mqtt_2_1_2_packet_type_0_reserved() {
    for v in ALL {
        for first in 0x00..=0x0F {
            assert_eq!(
                err(&[first, 0], v, MALFORMED),
                DecodeError::InvalidPacketType(0)
            );
        }
    }
}

/// 2.1.2 (3.1.1 Table 2.1): type 15 is reserved before 5.0, where it is AUTH (3.15).
#[test]
fn mqtt_2_1_2_auth_rejected_before_v5() {
    let auth = pkt(
        0xF0,
        &cat(&[&[0x18], &prop_block(&cat(&[&[0x15], &s(b"m")]))]),
    );
    for v in [V31, V311] {
        assert_eq!(
            err(&[0xF0, 0x00], v, MALFORMED),
            DecodeError::InvalidPacketType(15)
        );
        assert_eq!(err(&auth, v, MALFORMED), DecodeError::InvalidPacketType(15));
        let p = Packet::Auth(Auth {
            reason_code: ReasonCode::Success,
            properties: Properties::default(),
        });
        assert_eq!(
            encode(&p, v),
            Err(EncodeError::NotInVersion(PacketType::Auth))
        );
    }
    assert!(matches!(ok(&auth, V5), Packet::Auth(_)));
}

/// [MQTT-3.3.1-4]: a PUBLISH must not have both QoS bits set.
#[test]
fn mqtt_3_3_1_4_qos_3_rejected() {
    for v in ALL {
        for first in [0x36, 0x37, 0x3E, 0x3F] {
            let b = pkt(first, &cat(&[&s(b"t"), &[0, 1]]));
            assert_eq!(err(&b, v, MALFORMED), DecodeError::InvalidQoS);
        }
    }
    // And the will QoS, and a SUBSCRIBE's requested QoS.
    let will_qos3 = pkt(
        0x10,
        &cat(&[
            &s(b"MQTT"),
            &[4, 0x1E, 0, 60],
            &s(b"id"),
            &s(b"w"),
            &s(b"m"),
        ]),
    );
    assert_eq!(
        err(&will_qos3, V311, MALFORMED),
        DecodeError::InvalidWillFlags
    );
    let sub = pkt(0x82, &cat(&[&[0, 1], &s(b"a"), &[3]]));
    assert_eq!(err(&sub, V311, MALFORMED), DecodeError::InvalidQoS);
}

/// [MQTT-3.3.1-2]: DUP must be 0 on QoS 0 messages.
#[test]
fn mqtt_3_3_1_2_dup_with_qos_0_rejected() {
    for v in ALL {
        let b = publish_topic(b"t", v);
        let mut dup = b.clone();
        dup[0] |= 0x08;
        assert_eq!(err(&dup, v, MALFORMED), DecodeError::DupWithQoS0);
    }
    let p = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: None,
        properties: Properties::default(),
        payload: b"",
    });
    assert!(matches!(
        encode(&p, V311),
        Err(EncodeError::InvalidField(_))
    ));
}

// ---------------------------------------------------------------------------------------
// 2.2.1 Packet Identifier

/// [MQTT-2.2.1-3] (3.1.1 [MQTT-2.3.1-1]): SUBSCRIBE, UNSUBSCRIBE and PUBLISH with QoS > 0
/// carry a non-zero Packet Identifier, and so do their acknowledgements.
#[test]
fn mqtt_2_2_1_3_zero_packet_identifier_rejected() {
    for v in ALL {
        let props: &[u8] = if v == V5 { &[0] } else { &[] };
        let cases = [
            pkt(0x32, &cat(&[&s(b"t"), &[0, 0], props])),
            pkt(0x34, &cat(&[&s(b"t"), &[0, 0], props])),
            pkt(0x40, &[0, 0]),
            pkt(0x50, &[0, 0]),
            pkt(0x62, &[0, 0]),
            pkt(0x70, &[0, 0]),
            pkt(0x82, &cat(&[&[0, 0], props, &s(b"a"), &[0]])),
            pkt(0x90, &cat(&[&[0, 0], props, &[0]])),
            pkt(0xA2, &cat(&[&[0, 0], props, &s(b"a")])),
            pkt(0xB0, &[0, 0]),
        ];
        for b in cases {
            assert_eq!(err(&b, v, PROTOCOL_ERROR), DecodeError::ZeroPacketId, "{v}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3.1 CONNECT

fn connect_body(name: &[u8], level: u8, flags: u8, rest: &[&[u8]]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let n = s(name);
    let hdr = [level, flags, 0, 60];
    parts.push(&n);
    parts.push(&hdr);
    parts.extend_from_slice(rest);
    pkt(0x10, &parts.concat())
}

/// [MQTT-3.1.2-1]: the protocol name must be "MQTT" (or "MQIsdp" for 3.1).
#[test]
fn mqtt_3_1_2_1_protocol_name() {
    for name in [&b"MQTX"[..], b"mqtt", b"MQTT\0", b"", b"MQIsdP"] {
        let b = connect_body(name, 4, 0x02, &[&s(b"id")]);
        assert_eq!(
            err(&b, V311, UNSUPPORTED_VERSION),
            DecodeError::InvalidProtocolName
        );
    }
}

/// [MQTT-3.1.2-2]: an unsupported protocol level; "MQIsdp" only with 3, "MQTT" with 4 or 5.
#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level() {
    for (name, level) in [
        (&b"MQTT"[..], 6u8),
        (b"MQTT", 3),
        (b"MQTT", 0),
        (b"MQIsdp", 4),
        (b"MQIsdp", 5),
    ] {
        let b = connect_body(name, level, 0x02, &[&s(b"id")]);
        assert_eq!(
            err(&b, V311, UNSUPPORTED_VERSION),
            DecodeError::UnsupportedProtocolLevel(level)
        );
    }
    for (name, level, v) in [(&b"MQIsdp"[..], 3, V31), (b"MQTT", 4, V311)] {
        let b = connect_body(name, level, 0x02, &[&s(b"id")]);
        let Packet::Connect(c) = ok(&b, V5) else {
            panic!()
        };
        assert_eq!(c.protocol, v, "a CONNECT carries its own version");
    }
}

/// A bridge's CONNECT (Mosquitto's `try_private`): the level with bit 0x80, for 3.1 and
/// 3.1.1 only (5.0 has No Local per subscription); written back the same way.
#[test]
fn a_bridge_connect_has_the_level_bit_0x80() {
    for (name, level, v) in [(&b"MQIsdp"[..], 0x83u8, V31), (b"MQTT", 0x84, V311)] {
        let b = connect_body(name, level, 0x02, &[&s(b"id")]);
        let Packet::Connect(c) = ok(&b, V311) else {
            panic!()
        };
        assert_eq!((c.protocol, c.bridge), (v, true));
        let out = encode(&Packet::Connect(c), v).unwrap();
        assert_eq!(out, b, "encoded as it came");
    }
    let b = connect_body(b"MQTT", 4, 0x02, &[&s(b"id")]);
    let Packet::Connect(c) = ok(&b, V311) else {
        panic!()
    };
    assert!(!c.bridge);
    for (name, level) in [(&b"MQTT"[..], 0x85u8), (b"MQTT", 0x83), (b"MQIsdp", 0x84)] {
        let b = connect_body(name, level, 0x02, &[&s(b"id")]);
        let e = err(&b, V311, UNSUPPORTED_VERSION);
        assert!(
            matches!(e, DecodeError::UnsupportedProtocolLevel(_)),
            "{e:?}"
        );
    }
}

/// [MQTT-3.1.2-3]: the reserved CONNECT flag (bit 0) must be zero.
#[test]
fn mqtt_3_1_2_3_reserved_connect_flag() {
    for (name, level) in [(&b"MQIsdp"[..], 3u8), (b"MQTT", 4), (b"MQTT", 5)] {
        let props: &[u8] = if level == 5 { &[0] } else { &[] };
        let b = connect_body(name, level, 0x03, &[props, &s(b"id")]);
        assert_eq!(err(&b, V311, MALFORMED), DecodeError::ReservedConnectFlag);
    }
}

/// Will flag rules. 3.1.1 and 5.0 number them alike: [MQTT-3.1.2-11] Will QoS 0 without the
/// Will Flag, [MQTT-3.1.2-12] Will QoS 3 is invalid, [MQTT-3.1.2-13] Will Retain 0 without
/// the Will Flag; and with the flag, [MQTT-3.1.2-9] (5.0; 3.1.1 [MQTT-3.1.2-9]) the will
/// topic and payload must be present.
#[test]
fn mqtt_3_1_2_11_12_13_will_flags() {
    for (name, level) in [(&b"MQIsdp"[..], 3u8), (b"MQTT", 4), (b"MQTT", 5)] {
        let props: &[u8] = if level == 5 { &[0] } else { &[] };
        let id = s(b"id");
        let will: Vec<u8> = cat(&[props, &s(b"w"), &s(b"m")]);
        // [MQTT-3.1.2-11] will QoS 1 / 2 without the will flag.
        for flags in [0x0A, 0x12] {
            let b = connect_body(name, level, flags, &[props, &id]);
            assert_eq!(err(&b, V311, MALFORMED), DecodeError::InvalidWillFlags);
        }
        // [MQTT-3.1.2-13] will retain without the will flag.
        let b = connect_body(name, level, 0x22, &[props, &id]);
        assert_eq!(err(&b, V311, MALFORMED), DecodeError::InvalidWillFlags);
        // [MQTT-3.1.2-12] will QoS 3 with the will flag.
        let b = connect_body(name, level, 0x1E, &[props, &id, &will]);
        assert_eq!(err(&b, V311, MALFORMED), DecodeError::InvalidWillFlags);
        // [MQTT-3.1.2-9] the will flag promises a will topic and payload.
        let b = connect_body(name, level, 0x06, &[props, &id]);
        assert!(matches!(
            err(&b, V311, MALFORMED),
            DecodeError::UnexpectedEnd {
                packet: PacketType::Connect
            }
        ));
        // All fine: will QoS 2, retained.
        let b = connect_body(name, level, 0x36, &[props, &id, &will]);
        let Packet::Connect(c) = ok(&b, V311) else {
            panic!()
        };
        let w = c.will.unwrap();
        assert_eq!(
            (w.qos, w.retain, w.topic, w.payload),
            (QoS::ExactlyOnce, true, "w", &b"m"[..])
        );
    }
}

/// [MQTT-3.1.3-11] (3.1.1 [MQTT-3.1.3-10]): the will topic is a topic name: no wildcards.
#[test]
fn mqtt_3_1_3_11_will_topic_is_a_topic_name() {
    for t in [&b"w/+"[..], b"#", b""] {
        let b = connect_body(b"MQTT", 4, 0x06, &[&s(b"id"), &s(t), &s(b"m")]);
        assert_eq!(
            err(&b, V311, TOPIC_NAME_INVALID),
            DecodeError::InvalidTopicName
        );
    }
}

/// [MQTT-3.1.2-22] (3.1.1): a password requires a user name; 3.1 likewise. 5.0 3.1.2.9
/// lifts the rule, so there it decodes.
#[test]
fn mqtt_3_1_2_22_password_without_user_name() {
    let pw = s(b"secret");
    let id = s(b"id");
    for (name, level) in [(&b"MQIsdp"[..], 3u8), (b"MQTT", 4)] {
        let b = connect_body(name, level, 0x42, &[&id, &pw]);
        assert_eq!(
            err(&b, V311, MALFORMED),
            DecodeError::PasswordWithoutUsername
        );
    }
    let b = connect_body(b"MQTT", 5, 0x42, &[&[0], &id, &pw]);
    let Packet::Connect(c) = ok(&b, V5) else {
        panic!()
    };
    assert_eq!((c.username, c.password), (None, Some(&b"secret"[..])));
    assert_eq!(encode(&Packet::Connect(c), V5).unwrap(), b);
    let c3 = Connect {
        protocol: V311,
        ..c
    };
    assert!(matches!(
        encode(&Packet::Connect(c3), V311),
        Err(EncodeError::InvalidField(_))
    ));
}

// ---------------------------------------------------------------------------------------
// 3.2 CONNACK

/// [MQTT-3.2.2-1] (3.1.1; 5.0 3.2.2.1 "Reserved ... MUST be set to 0"): bits 7-1 of the
/// Connect Acknowledge Flags are reserved.
#[test]
fn mqtt_3_2_2_1_connack_reserved_bits() {
    for flags in [0x02u8, 0x80, 0xFE, 0x03] {
        assert_eq!(
            err(&[0x20, 2, flags, 0], V311, MALFORMED),
            DecodeError::InvalidConnAckFlags
        );
        assert_eq!(
            err(&[0x20, 3, flags, 0, 0], V5, MALFORMED),
            DecodeError::InvalidConnAckFlags
        );
    }
    assert!(matches!(ok(&[0x20, 2, 1, 0], V311), Packet::ConnAck(c) if c.session_present));
}

/// 3.1.1 3.2.2.3: return codes 6-255 are reserved; 5.0 3.2.2.2: only the CONNACK reason
/// codes of Table 3-1.
#[test]
fn mqtt_3_2_2_3_connack_return_codes() {
    for code in [6u8, 0x80, 0xFF] {
        assert!(matches!(
            err(&[0x20, 2, 0, code], V311, MALFORMED),
            DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                ..
            }
        ));
    }
    for code in [0x01u8, 0x04, 0x8E, 0x91] {
        assert!(matches!(
            err(&[0x20, 3, 0, code, 0], V5, MALFORMED),
            DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                ..
            }
        ));
    }
}

// ---------------------------------------------------------------------------------------
// 3.3 PUBLISH and topics

/// [MQTT-3.3.2-2] (5.0 and 3.1.1): the topic name in a PUBLISH must not contain wildcards.
#[test]
fn mqtt_3_3_2_2_wildcards_in_topic_name_rejected() {
    for t in [&b"a/+"[..], b"#", b"a/#", b"+", b"a+b", b"sport/tennis#"] {
        for v in ALL {
            assert_eq!(
                err(&publish_topic(t, v), v, TOPIC_NAME_INVALID),
                DecodeError::InvalidTopicName
            );
        }
    }
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a/+",
        packet_id: None,
        properties: Properties::default(),
        payload: b"",
    });
    assert!(matches!(encode(&p, V5), Err(EncodeError::InvalidField(_))));
}

/// [MQTT-4.7.3-1]: topic names are at least one character long; 5.0 3.3.2.3.4 allows an
/// empty one only with a Topic Alias (Protocol Error otherwise).
#[test]
fn mqtt_4_7_3_1_empty_topic_name() {
    for v in ALL {
        assert_eq!(
            err(&publish_topic(b"", v), v, PROTOCOL_ERROR),
            DecodeError::EmptyTopicName
        );
    }
    let b = pkt(0x30, &cat(&[&s(b""), &prop_block(&[0x23, 0, 1]), b"x"]));
    let Packet::Publish(p) = ok(&b, V5) else {
        panic!()
    };
    assert_eq!((p.topic, p.properties.topic_alias), ("", Some(1)));
    // Without a way to carry the alias, 3.x cannot send an empty topic.
    assert!(encode(&Packet::Publish(p), V311).is_err());
    assert_eq!(topic::validate_name(""), Err(TopicError::Empty));
    assert_eq!(topic::validate_filter(""), Err(TopicError::Empty));
}

/// [MQTT-3.3.2-14] (5.0): the Response Topic is a topic name, without wildcards.
#[test]
fn mqtt_3_3_2_14_response_topic_without_wildcards() {
    let rt = cat(&[&[0x08], &s(b"reply/#")]);
    assert!(matches!(
        err(&publish_v5_props(&rt), V5, PROTOCOL_ERROR),
        DecodeError::InvalidPropertyValue(0x08)
    ));
}

// ---------------------------------------------------------------------------------------
// 3.8 / 3.10 SUBSCRIBE and UNSUBSCRIBE

fn subscribe(v: ProtocolVersion, entries: &[u8]) -> Vec<u8> {
    let props: &[u8] = if v == V5 { &[0] } else { &[] };
    pkt(0x82, &cat(&[&[0, 1], props, entries]))
}

/// [MQTT-3-8.3-4] (3.1.1, sic): the upper six bits of the Requested QoS byte are reserved.
#[test]
fn mqtt_3_8_3_4_v311_subscribe_reserved_option_bits() {
    for opt in [0x04u8, 0x08, 0x10, 0x20, 0x30, 0x40, 0x80, 0xFC] {
        for v in [V31, V311] {
            let b = subscribe(v, &cat(&[&s(b"a"), &[opt]]));
            assert_eq!(
                err(&b, v, MALFORMED),
                DecodeError::InvalidSubscriptionOptions
            );
        }
    }
    // The encoder refuses options 3.x cannot carry.
    let subs = [Subscription {
        filter: "a",
        options: SubscriptionOptions {
            no_local: true,
            ..SubscriptionOptions::qos(QoS::AtMostOnce)
        },
    }];
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        subscriptions: Subscriptions::List(&subs),
    });
    assert!(matches!(
        encode(&p, V311),
        Err(EncodeError::InvalidField(_))
    ));
    assert!(encode(&p, V5).is_ok());
}

/// [MQTT-3.8.3-5] (5.0): bits 6 and 7 of the Subscription Options are reserved; the other
/// bits are options.
#[test]
fn mqtt_3_8_3_5_v5_subscribe_reserved_option_bits() {
    for opt in [0x40u8, 0x80, 0xC0, 0x6E] {
        let b = subscribe(V5, &cat(&[&s(b"a"), &[opt]]));
        assert_eq!(
            err(&b, V5, MALFORMED),
            DecodeError::InvalidSubscriptionOptions
        );
    }
    let b = subscribe(V5, &cat(&[&s(b"a"), &[0x2E]]));
    let Packet::Subscribe(p) = ok(&b, V5) else {
        panic!()
    };
    let o = p.subscriptions.iter().next().unwrap().options;
    assert_eq!(
        o,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        }
    );
}

/// 5.0 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3."
#[test]
fn mqtt_3_8_3_1_retain_handling_3_rejected() {
    let b = subscribe(V5, &cat(&[&s(b"a"), &[0x30]]));
    assert_eq!(
        err(&b, V5, PROTOCOL_ERROR),
        DecodeError::InvalidRetainHandling
    );
}

/// [MQTT-3.8.3-2] v5 and [MQTT-3.8.3-3] v3.1.1: a SUBSCRIBE has at least one topic filter /
/// option pair; [MQTT-3.10.3-2] (both): an UNSUBSCRIBE at least one topic filter.
#[test]
fn mqtt_3_8_3_3_and_3_10_3_2_empty_subscribe_unsubscribe() {
    for v in ALL {
        let props: &[u8] = if v == V5 { &[0] } else { &[] };
        let b = pkt(0x82, &cat(&[&[0, 1], props]));
        assert_eq!(err(&b, v, PROTOCOL_ERROR), DecodeError::NoTopicFilters);
        let b = pkt(0xA2, &cat(&[&[0, 1], props]));
        assert_eq!(err(&b, v, PROTOCOL_ERROR), DecodeError::NoTopicFilters);
        // A filter without its options byte is truncated, not empty.
        let b = pkt(0x82, &cat(&[&[0, 1], props, &s(b"a")]));
        assert!(matches!(
            err(&b, v, MALFORMED),
            DecodeError::UnexpectedEnd { .. }
        ));
    }
    let p = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        subscriptions: Subscriptions::List(&[]),
    });
    assert!(encode(&p, V311).is_err());
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        filters: TopicFilters::List(&[]),
    });
    assert!(encode(&p, V5).is_err());
}

/// [MQTT-3.9.3-2] (3.1.1): SUBACK return codes other than 0x00, 0x01, 0x02, 0x80 are
/// reserved; in 5.0 only the codes of Table 3-8. A SUBACK with no code at all is refused
/// ([MQTT-3.9.3-1]: one per topic filter, and a SUBSCRIBE has at least one).
#[test]
fn mqtt_3_9_3_2_suback_return_codes() {
    for code in [0x03u8, 0x81, 0x87] {
        let b = pkt(0x90, &[0, 1, code]);
        assert!(matches!(
            err(&b, V311, MALFORMED),
            DecodeError::InvalidReasonCode { .. }
        ));
    }
    for code in [0x03u8, 0x04, 0x81, 0x11] {
        let b = pkt(0x90, &[0, 1, 0, code]);
        assert!(matches!(
            err(&b, V5, MALFORMED),
            DecodeError::InvalidReasonCode { .. }
        ));
    }
    assert_eq!(
        err(&pkt(0x90, &[0, 1]), V311, PROTOCOL_ERROR),
        DecodeError::NoReasonCodes
    );
    assert_eq!(
        err(&pkt(0x90, &[0, 1, 0]), V5, PROTOCOL_ERROR),
        DecodeError::NoReasonCodes
    );
    assert_eq!(
        err(&pkt(0xB0, &[0, 1, 0]), V5, PROTOCOL_ERROR),
        DecodeError::NoReasonCodes
    );
}

// ---------------------------------------------------------------------------------------
// 2.2.2 Properties (5.0)

/// 2.2.2.2: "A Control Packet which contains an Identifier which is not valid for its packet
/// type ... is a Malformed Packet."
#[test]
fn mqtt_2_2_2_2_property_not_allowed_in_packet() {
    let cases: [(Vec<u8>, u8); 6] = [
        // Topic Alias in CONNECT
        (connect_v5_props(&[0x23, 0, 1]), 0x23),
        // Will Delay Interval in the CONNECT properties (it belongs to the will's)
        (connect_v5_props(&[0x18, 0, 0, 0, 1]), 0x18),
        // Session Expiry Interval in PUBLISH
        (publish_v5_props(&[0x11, 0, 0, 0, 1]), 0x11),
        // Subscription Identifier in UNSUBSCRIBE
        (
            pkt(0xA2, &cat(&[&[0, 1], &prop_block(&[0x0B, 1]), &s(b"a")])),
            0x0B,
        ),
        // Reason String in CONNECT
        (connect_v5_props(&cat(&[&[0x1F], &s(b"r")])), 0x1F),
        // Maximum QoS in DISCONNECT
        (pkt(0xE0, &cat(&[&[0], &prop_block(&[0x24, 0])])), 0x24),
    ];
    for (b, id) in cases {
        assert!(
            matches!(err(&b, V5, MALFORMED), DecodeError::PropertyNotAllowed { id: i, .. } if i == id),
            "{id:#x}"
        );
    }
    // An identifier that does not exist at all.
    assert_eq!(
        err(&publish_v5_props(&[0x04, 0]), V5, MALFORMED),
        DecodeError::InvalidPropertyId(0x04)
    );
    // The encoder refuses a property the packet cannot carry.
    let p = Packet::PubAck(Ack {
        properties: Properties {
            topic_alias: Some(1),
            ..Properties::default()
        },
        ..Ack::new(pid(1))
    });
    assert!(matches!(encode(&p, V5), Err(EncodeError::InvalidField(_))));
}

/// 3.1.2.11 / 3.3.2.3 / 3.8.2.1: "It is a Protocol Error to include the <property> more than
/// once"; User Property may repeat everywhere and Subscription Identifier in PUBLISH
/// ([MQTT-3.3.4-3] several may be forwarded).
#[test]
fn mqtt_2_2_2_2_duplicate_properties() {
    let dup = |b: Vec<u8>, id: u8| {
        assert_eq!(
            err(&b, V5, PROTOCOL_ERROR),
            DecodeError::DuplicateProperty(id)
        );
    };
    dup(
        connect_v5_props(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
        0x11,
    );
    dup(connect_v5_props(&[0x21, 0, 1, 0x21, 0, 1]), 0x21);
    let ct = cat(&[&[0x03], &s(b"a")]);
    dup(publish_v5_props(&cat(&[&ct, &ct])), 0x03);
    dup(publish_v5_props(&[0x23, 0, 1, 0x23, 0, 2]), 0x23);
    // One Subscription Identifier per SUBSCRIBE (3.8.2.1.2).
    let b = pkt(
        0x82,
        &cat(&[&[0, 1], &prop_block(&[0x0B, 1, 0x0B, 2]), &s(b"a"), &[0]]),
    );
    dup(b, 0x0B);
    // Allowed repeats.
    let up = cat(&[&[0x26], &s(b"k"), &s(b"v")]);
    let b = publish_v5_props(&cat(&[&up, &up, &[0x0B, 1, 0x0B, 2]]));
    let Packet::Publish(p) = ok(&b, V5) else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.iter().count(), 2);
    assert_eq!(
        p.properties
            .subscription_identifiers
            .iter()
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

/// The zero values the spec calls a Protocol Error: Receive Maximum 0 (3.1.2.11.3,
/// 3.2.2.3.3), Maximum Packet Size 0 (3.1.2.11.4, 3.2.2.3.6), Topic Alias 0 ([MQTT-3.3.2-8]),
/// Subscription Identifier 0 (3.3.2.3.8, 3.8.2.1.2). And the one-byte flags that may only be
/// 0 or 1, Maximum QoS only 0 or 1 (3.2.2.3.4).
#[test]
fn property_zero_and_out_of_range_values() {
    let bad = |b: Vec<u8>, id: u8| {
        assert_eq!(
            err(&b, V5, PROTOCOL_ERROR),
            DecodeError::InvalidPropertyValue(id)
        );
    };
    bad(connect_v5_props(&[0x21, 0, 0]), 0x21);
    bad(
        pkt(0x20, &cat(&[&[0, 0], &prop_block(&[0x21, 0, 0])])),
        0x21,
    );
    bad(connect_v5_props(&[0x27, 0, 0, 0, 0]), 0x27);
    bad(
        pkt(0x20, &cat(&[&[0, 0], &prop_block(&[0x27, 0, 0, 0, 0])])),
        0x27,
    );
    bad(publish_v5_props(&[0x23, 0, 0]), 0x23);
    bad(publish_v5_props(&[0x0B, 0]), 0x0B);
    bad(
        pkt(
            0x82,
            &cat(&[&[0, 1], &prop_block(&[0x0B, 0]), &s(b"a"), &[0]]),
        ),
        0x0B,
    );
    bad(publish_v5_props(&[0x01, 2]), 0x01);
    bad(connect_v5_props(&[0x17, 2]), 0x17);
    bad(connect_v5_props(&[0x19, 0xFF]), 0x19);
    bad(pkt(0x20, &cat(&[&[0, 0], &prop_block(&[0x24, 2])])), 0x24);
    bad(pkt(0x20, &cat(&[&[0, 0], &prop_block(&[0x25, 2])])), 0x25);
    // Topic Alias Maximum 0 is allowed: "no aliases" (3.1.2.11.5).
    assert!(matches!(
        ok(&connect_v5_props(&[0x22, 0, 0]), V5),
        Packet::Connect(_)
    ));
    // The encoder refuses the same zero values.
    for props in [
        Properties {
            receive_maximum: Some(0),
            ..Properties::default()
        },
        Properties {
            maximum_packet_size: Some(0),
            ..Properties::default()
        },
    ] {
        let p = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: props,
        });
        assert!(matches!(encode(&p, V5), Err(EncodeError::InvalidField(_))));
    }
    let ids = [0u32];
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t",
        packet_id: None,
        properties: Properties {
            subscription_identifiers: SubscriptionIds::List(&ids),
            ..Properties::default()
        },
        payload: b"",
    });
    assert!(matches!(encode(&p, V5), Err(EncodeError::InvalidField(_))));
}

/// 2.2.2.1: the Property Length must match the properties it holds.
#[test]
fn mqtt_2_2_2_1_property_length_mismatch() {
    // Property length larger than what is left of the packet.
    let b = pkt(0x32, &cat(&[&s(b"t"), &[0, 1], &[10, 0x23, 0, 1]]));
    assert_eq!(err(&b, V5, MALFORMED), DecodeError::PropertyLengthMismatch);
    // A property whose value runs past the block's end (Message Expiry needs 4 bytes).
    let b = pkt(
        0x32,
        &cat(&[&s(b"t"), &[0, 1], &[3, 0x02, 0, 0], b"payload"]),
    );
    assert_eq!(err(&b, V5, MALFORMED), DecodeError::PropertyLengthMismatch);
}

// ---------------------------------------------------------------------------------------
// Remaining length and framing

/// 5.0 3.1.2.11.4 / 3.2.2.3.6 ([MQTT-3.1.2-24], [MQTT-3.2.2-15]: no packet may exceed the
/// receiver's Maximum Packet Size; one that does is answered with 0x95): the size is known
/// from the fixed header alone, so it is refused before its body arrives.
#[test]
fn packet_too_large_detected_from_fixed_header() {
    // Remaining length 2,097,151 announced in 4 bytes; no body present at all.
    let b = [0x30, 0xFF, 0xFF, 0x7F];
    assert_eq!(
        FixedHeader::parse(&b, 1024),
        Err(DecodeError::PacketTooLarge {
            size: 2_097_155,
            max: 1024
        })
    );
    for v in ALL {
        assert_eq!(
            err(&b, v, PACKET_TOO_LARGE),
            DecodeError::PacketTooLarge {
                size: 2_097_155,
                max: MAX
            }
        );
    }
    // The size counts the fixed header: a 10-byte packet fits a maximum of 10, not 9.
    let p = publish_topic(b"topic", V311);
    assert_eq!(p.len(), 10);
    assert!(Packet::parse(&p, V311, 10).is_ok());
    assert_eq!(
        Packet::parse(&p, V311, 9),
        Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
    );
    assert_eq!(
        Packet::parse(&p[..2], V311, 9),
        Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
    );
    assert_eq!(
        DecodeError::PacketTooLarge { size: 10, max: 9 }.reason_code() as u8,
        PACKET_TOO_LARGE
    );
}

/// 2.1.4: the Remaining Length is the number of bytes after the fixed header; bytes the
/// packet's fields do not use make it a Malformed Packet.
#[test]
fn remaining_length_with_trailing_bytes() {
    let t = |b: Vec<u8>, v: ProtocolVersion, packet: PacketType| {
        assert_eq!(err(&b, v, MALFORMED), DecodeError::TrailingBytes { packet });
    };
    for v in ALL {
        t(pkt(0xC0, &[0]), v, PacketType::PingReq);
        t(pkt(0xD0, &[0]), v, PacketType::PingResp);
        t(pkt(0x62, &[0, 1, 0, 0, 0]), v, PacketType::PubRel);
        let extra = if v == V5 {
            &[0u8, 0, 0][..]
        } else {
            &[0u8][..]
        };
        t(pkt(0x40, &cat(&[&[0, 1], extra])), v, PacketType::PubAck);
        t(
            pkt(
                0x10,
                &cat(&[&connect_body(b"MQTT", 4, 0x02, &[&s(b"id")])[2..], &[0]]),
            ),
            v,
            PacketType::Connect,
        );
    }
    for v in [V31, V311] {
        t(pkt(0xE0, &[0]), v, PacketType::Disconnect);
        t(pkt(0x20, &[0, 0, 0]), v, PacketType::ConnAck);
        t(pkt(0xB0, &[0, 1, 0]), v, PacketType::UnsubAck);
    }
}

/// 2.1.4 / 1.5: a field longer than what the remaining length leaves is a Malformed Packet.
#[test]
fn remaining_length_with_truncated_fields() {
    let t = |b: Vec<u8>, v: ProtocolVersion| {
        assert!(
            matches!(err(&b, v, MALFORMED), DecodeError::UnexpectedEnd { .. }),
            "{}",
            to_hex(&b)
        );
    };
    for v in ALL {
        // A topic length of 5 with 2 bytes left.
        t(pkt(0x30, &[0, 5, b'a', b'b']), v);
        // A QoS 1 PUBLISH without its packet identifier.
        t(pkt(0x32, &s(b"t")), v);
        // A PUBACK of one byte.
        t(pkt(0x40, &[0]), v);
        // CONNECT cut inside the keep alive, and inside the client id.
        t(pkt(0x10, &cat(&[&s(b"MQTT"), &[4, 2, 0]])), v);
        t(
            pkt(0x10, &cat(&[&s(b"MQTT"), &[4, 2, 0, 60], &[0, 9], b"abc"])),
            v,
        );
        // User name flag without the user name.
        t(connect_body(b"MQTT", 4, 0x82, &[&s(b"id")]), v);
        // CONNACK of one byte.
        t(pkt(0x20, &[0]), v);
    }
}

/// A prefix of a packet is `Incomplete` and consumes nothing; `needed` is exact once the
/// fixed header is complete.
#[test]
fn incomplete_input_needs_more() {
    assert_eq!(
        Packet::parse(&[], V311, MAX),
        Ok(Status::Incomplete { needed: 2 })
    );
    assert_eq!(
        Packet::parse(&[0x30], V311, MAX),
        Ok(Status::Incomplete { needed: 1 })
    );
    let b = publish_topic(b"topic", V311);
    for cut in 2..b.len() {
        assert_eq!(
            Packet::parse(&b[..cut], V311, MAX),
            Ok(Status::Incomplete {
                needed: b.len() - cut
            })
        );
    }
}

// ---------------------------------------------------------------------------------------
// 4.7 Topic names and filters, 4.8.2 shared subscriptions

/// [MQTT-4.7.1-1] (5.0) = [MQTT-4.7.1-2] (3.1.1): '#' on its own or after '/', and last.
#[test]
fn mqtt_4_7_1_1_multi_level_wildcard_alone_and_last() {
    for f in ["#", "sport/tennis/#", "sport/#", "/#", "+/#"] {
        assert_eq!(topic::validate_filter(f), Ok(()), "{f}");
    }
    for f in [
        "sport/tennis#",
        "sport/tennis/#/ranking",
        "#/",
        "##",
        "sport/#/",
        "a#/b",
    ] {
        assert_eq!(
            topic::validate_filter(f),
            Err(TopicError::MisplacedWildcard),
            "{f}"
        );
    }
}

/// [MQTT-4.7.1-2] (5.0) = [MQTT-4.7.1-3] (3.1.1): '+' occupies a whole level, at any level.
#[test]
fn mqtt_4_7_1_3_single_level_wildcard_whole_level() {
    for f in ["+", "+/tennis/#", "sport/+/player1", "/+", "+/+", "sport/+"] {
        assert_eq!(topic::validate_filter(f), Ok(()), "{f}");
    }
    for f in ["sport+", "sport/+tennis", "++", "a/b+/c"] {
        assert_eq!(
            topic::validate_filter(f),
            Err(TopicError::MisplacedWildcard),
            "{f}"
        );
    }
}

/// [MQTT-4.7.0-1] (5.0) = [MQTT-4.7.1-1] (3.1.1): wildcards are for filters, never names.
#[test]
fn mqtt_4_7_1_1_v311_wildcards_not_in_topic_names() {
    for n in ["+", "#", "a/+/b", "a/#", "a+"] {
        assert_eq!(
            topic::validate_name(n),
            Err(TopicError::WildcardInName),
            "{n}"
        );
    }
    assert_eq!(topic::validate_name("a/b/c"), Ok(()));
    assert_eq!(topic::validate_name("/"), Ok(()));
}

/// The matching examples of 4.7.1.2 / 4.7.1.3 (non-normative, same in 3.1.1 and 5.0).
#[test]
fn mqtt_4_7_1_matching_examples() {
    let yes = [
        ("sport/tennis/player1/#", "sport/tennis/player1"),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
        ),
        ("sport/#", "sport"),
        ("sport/tennis/+", "sport/tennis/player1"),
        ("sport/tennis/+", "sport/tennis/player2"),
        ("sport/+", "sport/"),
        ("+/+", "/finance"),
        ("/+", "/finance"),
        ("#", "a/b/c"),
        ("+/tennis/#", "sport/tennis/x"),
    ];
    let no = [
        ("sport/tennis/+", "sport/tennis/player1/ranking"),
        ("sport/+", "sport"),
        ("+", "/finance"),
        ("sport/tennis", "sport/tennis/player1"),
        ("sport", "sport/"),
    ];
    for (f, t) in yes {
        assert!(topic::matches(f, t), "{f} should match {t}");
    }
    for (f, t) in no {
        assert!(!topic::matches(f, t), "{f} should not match {t}");
    }
}

/// [MQTT-4.7.2-1]: filters starting with a wildcard do not match names starting with '$'.
#[test]
fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
    assert!(!topic::matches("#", "$SYS/broker/uptime"));
    assert!(!topic::matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(!topic::matches("+", "$SYS"));
    assert!(topic::matches("$SYS/#", "$SYS/monitor/Clients"));
    assert!(topic::matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert!(
        topic::matches("a/+", "a/$b"),
        "only the first level is special"
    );
}

/// [MQTT-4.7.3-1] non-empty, [MQTT-4.7.3-2] no U+0000, [MQTT-4.7.3-3] at most 65,535 bytes.
#[test]
fn mqtt_4_7_3_1_2_3_topic_length_and_null() {
    assert_eq!(topic::validate_name(""), Err(TopicError::Empty));
    assert_eq!(topic::validate_filter(""), Err(TopicError::Empty));
    assert_eq!(topic::validate_name("a\0b"), Err(TopicError::NullCharacter));
    assert_eq!(
        topic::validate_filter("a/\0"),
        Err(TopicError::NullCharacter)
    );
    let long = "a".repeat(65_535);
    assert_eq!(topic::validate_name(&long), Ok(()));
    let longer = "a".repeat(65_536);
    assert_eq!(topic::validate_name(&longer), Err(TopicError::TooLong));
    assert_eq!(topic::validate_filter(&longer), Err(TopicError::TooLong));
    // Neither can a PUBLISH carry one: the encoder refuses the field.
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: &longer,
        packet_id: None,
        properties: Properties::default(),
        payload: b"",
    });
    assert!(encode(&p, V311).is_err());
}

/// [MQTT-4.7.3-4] (3.1.1; 5.0 4.7.3): no normalisation when matching: case and leading '/'
/// matter.
#[test]
fn mqtt_4_7_3_4_no_normalisation() {
    assert!(!topic::matches("ACCOUNTS", "Accounts"));
    assert!(!topic::matches("finance", "/finance"));
    assert!(!topic::matches("/finance", "finance"));
    assert!(!topic::matches("a//b", "a/b"));
    assert!(topic::matches("a/+/b", "a//b"));
}

/// [MQTT-4.8.2-1]: "$share/" then a ShareName of at least one character; [MQTT-4.8.2-2]: the
/// ShareName has no '/', '+' or '#' and is followed by '/' and a topic filter.
#[test]
fn mqtt_4_8_2_1_and_4_8_2_2_shared_subscriptions() {
    let f = Filter::parse("$share/consumer1/sport/tennis/+").unwrap();
    assert_eq!(f.share_name, Some("consumer1"));
    assert_eq!(f.filter, "sport/tennis/+");
    assert!(f.is_shared());
    assert_eq!(Filter::parse("$share/g/#").unwrap().filter, "#");
    assert_eq!(Filter::parse("$share/g//").unwrap().filter, "/");
    let plain = Filter::parse("$shared/a").unwrap();
    assert_eq!(
        plain.share_name, None,
        "only the exact prefix $share/ is special"
    );
    for (s, e) in [
        ("$share//a", TopicError::InvalidShareName),
        ("$share/g+/a", TopicError::InvalidShareName),
        ("$share/#/a", TopicError::InvalidShareName),
        ("$share/g", TopicError::MissingSharedFilter),
        ("$share/g/", TopicError::MissingSharedFilter),
        ("$share/", TopicError::MissingSharedFilter),
        ("$share", TopicError::MissingSharedFilter),
        ("$share/g/a#", TopicError::MisplacedWildcard),
        ("$share/g/a/+b", TopicError::MisplacedWildcard),
    ] {
        assert_eq!(Filter::parse(s), Err(e), "{s}");
    }
}

// ---------------------------------------------------------------------------------------
// Reason codes

/// Each error maps to the reason code a server sends for it (4.13, Table 2-6 and each
/// CONNACK/DISCONNECT code's description).
#[test]
fn decode_errors_map_to_reason_codes() {
    use DecodeError::*;
    let pt = PacketType::Publish;
    let table: [(DecodeError, u8); 30] = [
        (InvalidPacketType(0), MALFORMED),
        (
            InvalidHeaderFlags {
                packet: pt,
                flags: 1,
            },
            MALFORMED,
        ),
        (VarIntTooLong, MALFORMED),
        (NonMinimalVarInt, MALFORMED),
        (PacketTooLarge { size: 2, max: 1 }, PACKET_TOO_LARGE),
        (UnexpectedEnd { packet: pt }, MALFORMED),
        (TrailingBytes { packet: pt }, MALFORMED),
        (InvalidUtf8, MALFORMED),
        (NullCharacter, MALFORMED),
        (InvalidProtocolName, UNSUPPORTED_VERSION),
        (UnsupportedProtocolLevel(6), UNSUPPORTED_VERSION),
        (ReservedConnectFlag, MALFORMED),
        (InvalidWillFlags, MALFORMED),
        (PasswordWithoutUsername, MALFORMED),
        (InvalidConnAckFlags, MALFORMED),
        (InvalidQoS, MALFORMED),
        (DupWithQoS0, MALFORMED),
        (ZeroPacketId, PROTOCOL_ERROR),
        (InvalidTopicName, TOPIC_NAME_INVALID),
        (EmptyTopicName, PROTOCOL_ERROR),
        (
            InvalidReasonCode {
                packet: pt,
                code: 3,
            },
            MALFORMED,
        ),
        (InvalidPropertyId(4), MALFORMED),
        (
            PropertyNotAllowed {
                id: 0x11,
                packet: pt,
            },
            MALFORMED,
        ),
        (DuplicateProperty(3), PROTOCOL_ERROR),
        (InvalidPropertyValue(0x21), PROTOCOL_ERROR),
        (PropertyLengthMismatch, MALFORMED),
        (InvalidSubscriptionOptions, MALFORMED),
        (InvalidRetainHandling, PROTOCOL_ERROR),
        (NoTopicFilters, PROTOCOL_ERROR),
        (NoReasonCodes, PROTOCOL_ERROR),
    ];
    for (e, code) in table {
        let rc = e.reason_code();
        assert_eq!(rc as u8, code, "{e:?}");
        // The code can be sent where a server reports it: CONNACK or DISCONNECT.
        assert!(rc.valid_in(PacketType::ConnAck), "{e:?}");
        assert!(rc.is_error());
    }
}

/// A v3 CONNACK return code and a v5 reason code round trip through the mapping (3.2.2.3).
#[test]
fn v311_connack_return_codes_map_to_reason_codes() {
    for code in 0..=5u8 {
        let rc = ReasonCode::from_v3_connack(code).unwrap();
        assert_eq!(rc.to_v3_connack(), code);
        let b = [0x20, 2, 0, code];
        let p = decode(&b, V311);
        assert_eq!(encode(&p, V311).unwrap(), b);
    }
    assert_eq!(ReasonCode::from_v3_connack(6), None);
}

/// `emit` into a buffer one byte short fails with the exact size and writes nothing.
#[test]
fn emit_buffer_too_small() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t",
        packet_id: Some(pid(1)),
        properties: Properties::default(),
        payload: b"hello",
    });
    let n = p.encoded_len(V5).unwrap();
    let mut buf = vec![0xAAu8; n - 1];
    assert_eq!(
        p.emit(V5, &mut buf),
        Err(EncodeError::BufferTooSmall { needed: n })
    );
    assert!(buf.iter().all(|&b| b == 0xAA));
    let Packet::Publish(pp) = p else { panic!() };
    let h = pp.header_len(V5).unwrap();
    let mut small = vec![0xAAu8; h - 1];
    assert_eq!(
        pp.emit_header(V5, &mut small),
        Err(EncodeError::BufferTooSmall { needed: h })
    );
    assert!(small.iter().all(|&b| b == 0xAA));
}

/// [MQTT-1.5.4-2] and [MQTT-3.3.2-2] at every position of topics of every length from 0 to
/// 40 bytes: the decoder scans strings a word at a time, so each byte offset and each tail
/// length is its own case. Also with multi-byte characters around the byte.
#[test]
fn null_and_wildcards_found_at_every_offset_and_length() {
    for len in 1..=40usize {
        for pos in 0..len {
            for (bad, err) in [
                (0u8, DecodeError::NullCharacter),
                (b'+', DecodeError::InvalidTopicName),
                (b'#', DecodeError::InvalidTopicName),
            ] {
                let mut t = vec![b'a'; len];
                t[pos] = bad;
                for v in [V311, V5] {
                    let b = publish_topic(&t, v);
                    let e = Packet::parse(&b, v, MAX);
                    assert_eq!(e, Err(err), "len {len} pos {pos} byte {bad:#x}");
                }
                let s = std::str::from_utf8(&t).unwrap();
                assert!(topic::validate_name(s).is_err(), "len {len} pos {pos}");
                if bad == 0 {
                    // Any other string field: a client identifier.
                    let id = s_field(&t);
                    let b = connect_body(b"MQTT", 4, 0x02, &[&id]);
                    assert_eq!(
                        err_of(&b),
                        DecodeError::NullCharacter,
                        "len {len} pos {pos}"
                    );
                    assert!(topic::validate_filter(s).is_err());
                }
            }
            // Multi-byte characters (é = C3 A9) never look like the forbidden bytes.
            let mut t: Vec<u8> = "é".repeat(len).into_bytes();
            t.truncate(len + len % 2);
            let s = std::str::from_utf8(&t).unwrap();
            assert_eq!(topic::validate_name(s), Ok(()));
            let b = publish_topic(&t, V5);
            let Packet::Publish(p) = ok(&b, V5) else {
                panic!()
            };
            assert_eq!(p.topic, s);
        }
        let clean = vec![b'x'; len];
        let b = publish_topic(&clean, V311);
        assert!(matches!(ok(&b, V311), Packet::Publish(_)));
    }
}

fn s_field(b: &[u8]) -> Vec<u8> {
    s(b)
}

fn err_of(bytes: &[u8]) -> DecodeError {
    Packet::parse(bytes, V311, MAX).unwrap_err()
}

/// A `Wire` list built by hand from unchecked bytes is checked when encoded: what the
/// decoder would refuse is refused ([MQTT-1.5.4-1], [MQTT-1.5.4-2]), and structurally
/// broken tails are not copied.
#[test]
fn hand_built_wire_lists_are_checked_on_encode() {
    let publish = |props: Properties<'static>| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t",
            packet_id: None,
            properties: props,
            payload: b"",
        })
    };
    // A user property whose value is not UTF-8.
    let bad_utf8: &'static [u8] = &[0x26, 0, 1, b'k', 0, 1, 0xFF];
    let p = publish(Properties {
        user_properties: UserProperties::Wire(bad_utf8),
        ..Properties::default()
    });
    assert!(matches!(encode(&p, V5), Err(EncodeError::InvalidField(_))));
    // One holding U+0000.
    let nul: &'static [u8] = &[0x26, 0, 1, b'k', 0, 1, 0];
    let p = publish(Properties {
        user_properties: UserProperties::Wire(nul),
        ..Properties::default()
    });
    assert!(matches!(encode(&p, V5), Err(EncodeError::InvalidField(_))));
    // A good pair followed by a truncated one: only the good pair is encoded, and what is
    // encoded decodes.
    let truncated: &'static [u8] = &[0x26, 0, 1, b'k', 0, 1, b'v', 0x26, 0, 9];
    let p = publish(Properties {
        user_properties: UserProperties::Wire(truncated),
        ..Properties::default()
    });
    let b = encode(&p, V5).unwrap();
    let Packet::Publish(q) = decode(&b, V5) else {
        panic!()
    };
    assert_eq!(
        q.properties.user_properties.iter().collect::<Vec<_>>(),
        [("k", "v")]
    );
}

/// [MQTT-1.5.4-1] where the bytes around a field happen to complete it: the decoder may
/// validate a whole region as UTF-8 at once, so a string that ends inside a character
/// continued by the next field's bytes must still be refused on its own.
#[test]
fn mqtt_1_5_4_1_string_cut_inside_a_character() {
    // SUBSCRIBE payload: filter [C3] then the options byte A9: "é" across two fields.
    let b = pkt(0x82, &[0, 1, 0, 0, 1, 0xC3, 0xA9]);
    assert_eq!(err(&b, V5, MALFORMED), DecodeError::InvalidUtf8);
    // A user property name [E2 82] whose value's length prefix starts with AC: "€" across
    // the boundary; the block is valid UTF-8 as a whole, the name is not.
    let mut up = vec![0x26, 0, 2, 0xE2, 0x82];
    up.extend_from_slice(&[0xAC, 0x00]); // value length 0xAC00, then nothing: truncated too
    let b = publish_v5_props(&up);
    assert_eq!(err(&b, V5, MALFORMED), DecodeError::InvalidUtf8);
    // CONNECT payload: client id [F0 9F 98] followed by the will properties length 0x80?
    // Simpler: client id [C3] then a user name length prefix A9 xx with the user name flag.
    let b = connect_body(b"MQTT", 4, 0x82, &[&[0, 1, 0xC3], &[0xA9, 0x00]]);
    assert_eq!(err(&b, V311, MALFORMED), DecodeError::InvalidUtf8);
}
