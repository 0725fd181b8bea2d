//! Property tests: arbitrary valid packets of each version survive `emit` then `parse`,
//! whole and split at every offset; arbitrary and mutated bytes never make the decoder
//! panic, and whatever decodes re-encodes to an equal packet; the `BufMut` encoder and the
//! split header/payload encoder agree with `emit`.
//!
//! The strategies build valid packets from the rules of the specification, not from the
//! codec: which properties each packet may carry is Table 2-4 (`SPEC_ALLOWED` below, checked
//! against `PropertyContext::allowed` by `property_table_matches_spec`), and 3.x packets carry
//! only what 3.x has (no properties, Success codes, QoS-only subscription options).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mqtt_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// Any UTF-8 string without U+0000 ([MQTT-1.5.4-2]); short, to keep packets small.
fn any_string() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        "[a-z/]{0,8}".prop_map(leak_str),
        "[^\u{0}]{0,10}".prop_map(leak_str),
    ]
}

/// A topic name: non-empty, no wildcards, no U+0000 (4.7.3, [MQTT-3.3.2-2]).
fn topic_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        "[a-z$]{1,3}(/[a-z]{0,3}){0,3}".prop_map(leak_str),
        "[^\u{0}+#]{1,12}".prop_map(leak_str),
    ]
}

fn binary(max: usize) -> impl Strategy<Value = &'static [u8]> {
    vec(any::<u8>(), 0..max).prop_map(leak)
}

fn versions() -> impl Strategy<Value = ProtocolVersion> {
    select(vec![
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ])
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..=u16::MAX).prop_map(pid)
}

// ---------------------------------------------------------------------------------------
// Properties

use PropertyContext as C;

/// MQTT 5.0 Table 2-4, by packet (the "Will Properties" column is `Will`).
fn spec_allowed(ctx: PropertyContext) -> &'static [u8] {
    match ctx {
        C::Connect => &[0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27],
        C::ConnAck => &[
            0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27,
            0x28, 0x29, 0x2A,
        ],
        C::Publish => &[0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26],
        C::Will => &[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26],
        C::PubAck | C::PubRec | C::PubRel | C::PubComp | C::SubAck | C::UnsubAck => &[0x1F, 0x26],
        C::Subscribe => &[0x0B, 0x26],
        C::Unsubscribe => &[0x26],
        C::Disconnect => &[0x11, 0x1C, 0x1F, 0x26],
        C::Auth => &[0x15, 0x16, 0x1F, 0x26],
    }
}

const ALL_CONTEXTS: [PropertyContext; 14] = [
    C::Connect,
    C::ConnAck,
    C::Publish,
    C::Will,
    C::PubAck,
    C::PubRec,
    C::PubRel,
    C::PubComp,
    C::Subscribe,
    C::SubAck,
    C::Unsubscribe,
    C::UnsubAck,
    C::Disconnect,
    C::Auth,
];

#[test]
fn property_table_matches_spec() {
    for ctx in ALL_CONTEXTS {
        let mask = spec_allowed(ctx).iter().fold(0u64, |m, &id| m | (1 << id));
        assert_eq!(ctx.allowed(), mask, "{ctx:?}");
    }
}

/// MQTT 5.0 Table 2-6: the packets each reason code may appear in.
#[test]
fn reason_code_table_matches_spec() {
    use PacketType::*;
    let table: &[(u8, &[PacketType])] = &[
        (
            0x00,
            &[
                ConnAck, PubAck, PubRec, PubRel, PubComp, UnsubAck, Auth, Disconnect, SubAck,
            ],
        ),
        (0x01, &[SubAck]),
        (0x02, &[SubAck]),
        (0x04, &[Disconnect]),
        (0x10, &[PubAck, PubRec]),
        (0x11, &[UnsubAck]),
        (0x18, &[Auth]),
        (0x19, &[Auth]),
        (
            0x80,
            &[ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect],
        ),
        (0x81, &[ConnAck, Disconnect]),
        (0x82, &[ConnAck, Disconnect]),
        (
            0x83,
            &[ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect],
        ),
        (0x84, &[ConnAck]),
        (0x85, &[ConnAck]),
        (0x86, &[ConnAck]),
        (
            0x87,
            &[ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect],
        ),
        (0x88, &[ConnAck]),
        (0x89, &[ConnAck, Disconnect]),
        (0x8A, &[ConnAck]),
        (0x8B, &[Disconnect]),
        (0x8C, &[ConnAck, Disconnect]),
        (0x8D, &[Disconnect]),
        (0x8E, &[Disconnect]),
        (0x8F, &[SubAck, UnsubAck, Disconnect]),
        (0x90, &[ConnAck, PubAck, PubRec, Disconnect]),
        (0x91, &[PubAck, PubRec, SubAck, UnsubAck]),
        (0x92, &[PubRel, PubComp]),
        (0x93, &[Disconnect]),
        (0x94, &[Disconnect]),
        (0x95, &[ConnAck, Disconnect]),
        (0x96, &[Disconnect]),
        (0x97, &[ConnAck, PubAck, PubRec, SubAck, Disconnect]),
        (0x98, &[Disconnect]),
        (0x99, &[ConnAck, PubAck, PubRec, Disconnect]),
        (0x9A, &[ConnAck, Disconnect]),
        (0x9B, &[ConnAck, Disconnect]),
        (0x9C, &[ConnAck, Disconnect]),
        (0x9D, &[ConnAck, Disconnect]),
        (0x9E, &[SubAck, Disconnect]),
        (0x9F, &[ConnAck, Disconnect]),
        (0xA0, &[Disconnect]),
        (0xA1, &[SubAck, Disconnect]),
        (0xA2, &[SubAck, Disconnect]),
    ];
    let all = [
        Connect,
        ConnAck,
        Publish,
        PubAck,
        PubRec,
        PubRel,
        PubComp,
        Subscribe,
        SubAck,
        Unsubscribe,
        UnsubAck,
        PingReq,
        PingResp,
        Disconnect,
        Auth,
    ];
    for b in 0..=255u8 {
        let entry = table.iter().find(|(c, _)| *c == b);
        match (ReasonCode::from_u8(b), entry) {
            (None, None) => {}
            (Some(rc), Some((_, packets))) => {
                assert_eq!(rc as u8, b);
                for t in all {
                    assert_eq!(rc.valid_in(t), packets.contains(&t), "{rc:?} in {t}");
                }
            }
            (rc, e) => panic!("code {b:#04x}: codec {rc:?}, spec {e:?}"),
        }
    }
}

fn codes_valid_in(t: PacketType) -> Vec<ReasonCode> {
    (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.valid_in(t))
        .collect()
}

fn reason(t: PacketType) -> impl Strategy<Value = ReasonCode> {
    select(codes_valid_in(t))
}

type Group1 = (
    Option<bool>,
    Option<u32>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static [u8]>,
    Vec<u32>,
    Option<u32>,
    Option<&'static str>,
    Option<u16>,
);
type Group2 = (
    Option<&'static str>,
    Option<&'static [u8]>,
    Option<bool>,
    Option<u32>,
    Option<bool>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<u16>,
);
type Group3 = (
    Option<u16>,
    Option<u16>,
    Option<QoS>,
    Option<bool>,
    Vec<(&'static str, &'static str)>,
    Option<u32>,
    Option<bool>,
    Option<bool>,
    Option<bool>,
);

/// Properties valid in `ctx`: only what Table 2-4 allows there, with values the spec allows
/// (non-zero Receive Maximum, Topic Alias, Maximum Packet Size and Subscription Identifier;
/// Maximum QoS 0 or 1; a Response Topic that is a topic name; one Subscription Identifier
/// outside PUBLISH).
fn properties(ctx: PropertyContext) -> BoxedStrategy<Properties<'static>> {
    use proptest::option::of;
    let g1 = (
        of(any::<bool>()),
        of(any::<u32>()),
        of(any_string()),
        of(topic_name()),
        of(binary(8)),
        vec(1u32..=268_435_455, 0..3),
        of(any::<u32>()),
        of(any_string()),
        of(any::<u16>()),
    );
    let g2 = (
        of(any_string()),
        of(binary(8)),
        of(any::<bool>()),
        of(any::<u32>()),
        of(any::<bool>()),
        of(any_string()),
        of(any_string()),
        of(any_string()),
        of(1u16..),
    );
    let g3 = (
        of(any::<u16>()),
        of(1u16..),
        of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
        of(any::<bool>()),
        vec((any_string(), any_string()), 0..3),
        of(1u32..),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
    );
    let allowed = spec_allowed(ctx);
    // Most properties absent most of the time, so that packets with few properties (and
    // the short forms of acknowledgements) are common too.
    (any::<u8>(), g1, g2, g3)
        .prop_map(move |(density, g1, g2, g3): (u8, Group1, Group2, Group3)| {
            let on = |id: u8| allowed.contains(&id) && (density % 4 != 0 || id == 0x26);
            let o = |id: u8| on(id);
            let mut sub_ids = g1.5;
            if ctx != C::Publish {
                sub_ids.truncate(1);
            }
            Properties {
                payload_format_indicator: g1.0.filter(|_| o(0x01)),
                message_expiry_interval: g1.1.filter(|_| o(0x02)),
                content_type: g1.2.filter(|_| o(0x03)),
                response_topic: g1.3.filter(|_| o(0x08)),
                correlation_data: g1.4.filter(|_| o(0x09)),
                subscription_identifiers: SubscriptionIds::List(if o(0x0B) {
                    leak(sub_ids)
                } else {
                    &[]
                }),
                session_expiry_interval: g1.6.filter(|_| o(0x11)),
                assigned_client_identifier: g1.7.filter(|_| o(0x12)),
                server_keep_alive: g1.8.filter(|_| o(0x13)),
                authentication_method: g2.0.filter(|_| o(0x15)),
                authentication_data: g2.1.filter(|_| o(0x16)),
                request_problem_information: g2.2.filter(|_| o(0x17)),
                will_delay_interval: g2.3.filter(|_| o(0x18)),
                request_response_information: g2.4.filter(|_| o(0x19)),
                response_information: g2.5.filter(|_| o(0x1A)),
                server_reference: g2.6.filter(|_| o(0x1C)),
                reason_string: g2.7.filter(|_| o(0x1F)),
                receive_maximum: g2.8.filter(|_| o(0x21)),
                topic_alias_maximum: g3.0.filter(|_| o(0x22)),
                topic_alias: g3.1.filter(|_| o(0x23)),
                maximum_qos: g3.2.filter(|_| o(0x24)),
                retain_available: g3.3.filter(|_| o(0x25)),
                user_properties: UserProperties::List(if o(0x26) { leak(g3.4) } else { &[] }),
                maximum_packet_size: g3.5.filter(|_| o(0x27)),
                wildcard_subscription_available: g3.6.filter(|_| o(0x28)),
                subscription_identifier_available: g3.7.filter(|_| o(0x29)),
                shared_subscription_available: g3.8.filter(|_| o(0x2A)),
            }
        })
        .boxed()
}

/// Properties in 5.0, none before.
fn props_for(v: ProtocolVersion, ctx: PropertyContext) -> BoxedStrategy<Properties<'static>> {
    if v.is_v5() {
        properties(ctx)
    } else {
        Just(Properties::default()).boxed()
    }
}

// ---------------------------------------------------------------------------------------
// Packets

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    let will = proptest::option::of((
        qos(),
        any::<bool>(),
        props_for(v, C::Will),
        topic_name(),
        binary(16),
    ));
    (
        any::<bool>(),
        any::<u16>(),
        props_for(v, C::Connect),
        any_string(),
        will,
        proptest::option::of(any_string()),
        proptest::option::of(binary(8)),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // [MQTT-3.1.2-22]: before 5.0 a password needs a user name.
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Connect {
                    protocol: v,
                    clean_start,
                    bridge: false,
                    keep_alive,
                    properties,
                    client_id,
                    will: will.map(|(qos, retain, properties, topic, payload)| Will {
                        qos,
                        retain,
                        properties,
                        topic,
                        payload,
                    }),
                    username,
                    password,
                })
            },
        )
}

fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet<'static>> {
    let code = if v.is_v5() {
        reason(PacketType::ConnAck).boxed()
    } else {
        (0u8..=5)
            .prop_map(|c| ReasonCode::from_v3_connack(c).unwrap())
            .boxed()
    };
    (any::<bool>(), code, props_for(v, C::ConnAck))
        .prop_map(|(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        props_for(v, C::Publish),
        binary(64),
    )
        .prop_map(
            |(qos, dup, retain, topic, empty_topic, id, properties, payload)| {
                let q0 = qos == QoS::AtMostOnce;
                // 3.3.2.3.4: an empty topic only with a Topic Alias (so only in 5.0).
                let topic = if empty_topic && properties.topic_alias.is_some() {
                    ""
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !q0,
                    qos,
                    retain,
                    topic,
                    packet_id: if q0 { None } else { Some(id) },
                    properties,
                    payload,
                })
            },
        )
}

fn ack(v: ProtocolVersion, t: PacketType) -> BoxedStrategy<Packet<'static>> {
    let ctx = match t {
        PacketType::PubAck => C::PubAck,
        PacketType::PubRec => C::PubRec,
        PacketType::PubRel => C::PubRel,
        _ => C::PubComp,
    };
    let code = if v.is_v5() {
        reason(t).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (packet_id(), code, props_for(v, ctx))
        .prop_map(move |(packet_id, reason_code, properties)| {
            let a = Ack {
                packet_id,
                reason_code,
                properties,
            };
            match t {
                PacketType::PubAck => Packet::PubAck(a),
                PacketType::PubRec => Packet::PubRec(a),
                PacketType::PubRel => Packet::PubRel(a),
                _ => Packet::PubComp(a),
            }
        })
        .boxed()
}

fn subscription_options(v: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if v.is_v5() {
        (
            qos(),
            any::<bool>(),
            any::<bool>(),
            select(vec![
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ]),
        )
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed()
    } else {
        qos().prop_map(SubscriptionOptions::qos).boxed()
    }
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    let entry = (any_string(), subscription_options(v))
        .prop_map(|(filter, options)| Subscription { filter, options });
    (packet_id(), props_for(v, C::Subscribe), vec(entry, 1..5)).prop_map(
        |(packet_id, properties, subs)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions: Subscriptions::List(leak(subs)),
            })
        },
    )
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    let code = if v.is_v5() {
        reason(PacketType::SubAck).boxed()
    } else {
        // 3.9.3: 0x00, 0x01, 0x02 and 0x80.
        select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    (packet_id(), props_for(v, C::SubAck), vec(code, 1..5)).prop_map(
        |(packet_id, properties, codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes: ReasonCodes::List(leak(codes)),
            })
        },
    )
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    (
        packet_id(),
        props_for(v, C::Unsubscribe),
        vec(any_string(), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters: TopicFilters::List(leak(filters)),
            })
        })
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet<'static>> {
    // 3.1.1 UNSUBACK has no payload (3.11.3).
    let n = if v.is_v5() { 1..5 } else { 0..1 };
    (
        packet_id(),
        props_for(v, C::UnsubAck),
        vec(reason(PacketType::UnsubAck), n),
    )
        .prop_map(|(packet_id, properties, codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes: ReasonCodes::List(leak(codes)),
            })
        })
}

fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet<'static>> {
    let code = if v.is_v5() {
        reason(PacketType::Disconnect).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (code, props_for(v, C::Disconnect))
        .prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet<'static>> {
    (reason(PacketType::Auth), properties(C::Auth)).prop_map(|(reason_code, properties)| {
        Packet::Auth(Auth {
            reason_code,
            properties,
        })
    })
}

/// Any valid packet of version `v`.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet<'static>> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        publish(v),
        ack(v, PacketType::PubAck),
        ack(v, PacketType::PubRec),
        ack(v, PacketType::PubRel),
        ack(v, PacketType::PubComp),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet<'static>)> {
    versions().prop_flat_map(|v| packet(v).prop_map(move |p| (v, p)))
}

/// The invariant the fuzzer also checks: whatever decodes re-encodes, and the re-encoding
/// decodes to the same packet and is no longer than the input.
fn check_reencodes(bytes: &[u8], v: ProtocolVersion, max: usize) -> Result<(), TestCaseError> {
    if let Ok(Status::Complete((p, n))) = Packet::parse(bytes, v, max) {
        prop_assert!(n <= bytes.len());
        // Walk every lazy iterator of the decoded packet.
        let _ = format!("{p:?}");
        let out = encode(&p, v).map_err(|e| TestCaseError::fail(format!("{p:?}: {e}")))?;
        prop_assert!(
            out.len() <= n,
            "re-encoding is longer: {} > {}",
            out.len(),
            n
        );
        let v2 = match p {
            Packet::Connect(c) => c.protocol,
            _ => v,
        };
        let back = decode(&out, v2);
        prop_assert_eq!(back, p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// emit then parse gives the same packet and consumes exactly encoded_len bytes.
    #[test]
    fn emit_then_parse_is_identity((v, p) in versioned_packet()) {
        let n = p.encoded_len(v).unwrap();
        let mut buf = vec![0u8; n + 7];
        prop_assert_eq!(p.emit(v, &mut buf).unwrap(), n);
        match Packet::parse(&buf, v, n) {
            Ok(Status::Complete((q, len))) => {
                prop_assert_eq!(len, n);
                prop_assert_eq!(q, p);
            }
            other => prop_assert!(false, "{:?}", other),
        }
        // One byte less of buffer: BufferTooSmall with the exact size.
        prop_assert_eq!(p.emit(v, &mut buf[..n - 1]), Err(EncodeError::BufferTooSmall { needed: n }));
        // One byte less of maximum packet size: refused from the header.
        let too_large = matches!(
            Packet::parse(&buf[..n], v, n - 1),
            Err(DecodeError::PacketTooLarge { size, .. }) if size == n
        );
        prop_assert!(too_large);
    }

    /// Every strict prefix is Incomplete, with a `needed` that never overshoots the packet
    /// and is exact once the fixed header is complete.
    #[test]
    fn every_prefix_is_incomplete((v, p) in versioned_packet()) {
        let buf = encode(&p, v).unwrap();
        let header_len = buf.len() - FixedHeader::parse(&buf, MAX)
            .map(|s| match s { Status::Complete(h) => h.remaining_length, _ => unreachable!() })
            .unwrap();
        for cut in 0..buf.len() {
            match Packet::parse(&buf[..cut], v, MAX) {
                Ok(Status::Incomplete { needed }) => {
                    prop_assert!(needed >= 1 && cut + needed <= buf.len());
                    if cut >= header_len {
                        prop_assert_eq!(cut + needed, buf.len());
                    }
                }
                other => prop_assert!(false, "cut {}: {:?}", cut, other),
            }
        }
    }

    /// Several packets in one buffer, fed in two arbitrary pieces as a reader would: each
    /// packet comes out once, in order, and the leftover is never consumed early.
    #[test]
    fn stream_split_at_any_offset(
        (v, ps) in versions().prop_flat_map(|v| (Just(v), vec(packet(v), 1..5))),
        split in any::<prop::sample::Index>(),
    ) {
        let encoded: Vec<Vec<u8>> = ps.iter().map(|p| encode(p, v).unwrap()).collect();
        let stream = encoded.concat();
        let cut = split.index(stream.len() + 1);
        let mut buf: Vec<u8> = stream[..cut].to_vec();
        let mut fed = cut;
        let mut out = Vec::new();
        loop {
            match Packet::parse(&buf, v, MAX).unwrap() {
                Status::Complete((p, n)) => {
                    out.push(p.encoded_len(v).unwrap());
                    prop_assert_eq!(&p, &ps[out.len() - 1]);
                    buf.drain(..n);
                }
                Status::Incomplete { needed } => {
                    if fed == stream.len() {
                        prop_assert!(buf.is_empty(), "{} bytes left, {} needed", buf.len(), needed);
                        break;
                    }
                    buf.extend_from_slice(&stream[fed..]);
                    fed = stream.len();
                }
            }
        }
        prop_assert_eq!(out, encoded.iter().map(Vec::len).collect::<Vec<_>>());
    }

    /// PUBLISH: the header from emit_header followed by the payload is the full encoding.
    #[test]
    fn publish_header_plus_payload_is_emit(v in versions(), p in versions().prop_flat_map(publish)) {
        let Packet::Publish(pb) = p else { unreachable!() };
        // A PUBLISH generated for 5.0 may not be encodable in 3.x (empty topic + alias).
        if let Ok(full) = encode(&p, v) {
            let h = pb.header_len(v).unwrap();
            let mut hdr = vec![0u8; h];
            prop_assert_eq!(pb.emit_header(v, &mut hdr).unwrap(), h);
            hdr.extend_from_slice(pb.payload);
            prop_assert_eq!(hdr, full);
        } else {
            prop_assert!(!v.is_v5());
            prop_assert!(pb.header_len(v).is_err());
        }
    }

    /// Arbitrary bytes, in every version and with any maximum size: no panic, and whatever
    /// decodes re-encodes.
    #[test]
    fn parse_arbitrary_bytes_never_panics(v in versions(), bytes in vec(any::<u8>(), 0..300), max in 0usize..400) {
        let _ = FixedHeader::parse(&bytes, max);
        check_reencodes(&bytes, v, max)?;
    }

    /// Valid packets with one to three bytes overwritten (most random byte strings fail at
    /// the first byte; these get deep into the decoders).
    #[test]
    fn parse_mutated_packets_never_panics(
        (v, p) in versioned_packet(),
        muts in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        trunc in any::<prop::sample::Index>(),
    ) {
        let mut b = encode(&p, v).unwrap();
        for (i, x) in muts {
            let i = i.index(b.len());
            b[i] = x;
        }
        check_reencodes(&b, v, MAX)?;
        let t = trunc.index(b.len() + 1);
        check_reencodes(&b[..t], v, MAX)?;
        // Decoding in the other versions must not panic either.
        for other in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            check_reencodes(&b, other, MAX)?;
        }
    }
}

#[cfg(feature = "bytes")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// emit_buf into a bytes::BufMut (BytesMut and Vec<u8>) writes what emit writes.
    #[test]
    fn bufmut_encoding_equals_slice_encoding((v, p) in versioned_packet()) {
        let slice = encode(&p, v).unwrap();
        let mut bm = bytes::BytesMut::new();
        prop_assert_eq!(p.emit_buf(v, &mut bm).unwrap(), slice.len());
        prop_assert_eq!(&bm[..], &slice[..]);
        let mut vec = vec![0xEE];
        prop_assert_eq!(p.emit_buf(v, &mut vec).unwrap(), slice.len());
        prop_assert_eq!(&vec[1..], &slice[..]);
        if let Packet::Publish(pb) = p {
            let mut h = bytes::BytesMut::new();
            let n = pb.emit_header_to(v, &mut BufMutSink(&mut h)).unwrap();
            prop_assert_eq!(&h[..], &slice[..n]);
        }
    }
}

#[cfg(not(feature = "bytes"))]
#[test]
#[ignore = "needs the `bytes` feature: cargo test -p mqtt-proto --all-features"]
fn bufmut_encoding_equals_slice_encoding() {}
