//! `roundtrip`: structured fuzzing. The input drives `arbitrary` to build a VALID packet of
//! some version (strings, topics, properties allowed in that packet by Table 2-4, values the
//! spec allows; 3.x packets carry only what 3.x has), then:
//! `encoded_len` succeeds, `emit` writes exactly that many bytes, `parse` gives back an equal
//! packet consuming all of them, every strict prefix is `Incomplete` (exact `needed` once the
//! fixed header is complete), the `BufMut` encoding and `emit_header` + payload agree.
//!
//! Strings and payloads borrow from the fuzz input; the lists a packet refers to (user
//! properties, subscriptions, reason codes, ...) live in a per-input bump arena.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use mqtt_proto::*;

fn version(u: &mut Unstructured<'_>) -> Result<ProtocolVersion> {
    Ok(*u.choose(&[
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ])?)
}

/// A UTF-8 string without U+0000 ([MQTT-1.5.4-2]), borrowed from the input.
fn string<'a>(u: &mut Unstructured<'a>) -> Result<&'a str> {
    let s = <&'a str>::arbitrary(u)?;
    // At most ~300 bytes, cut at a char boundary.
    let end = (0..=s.len().min(300))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    let s = &s[..end];
    // Cut at the first NUL (the cut is at a char boundary: NUL is one byte).
    Ok(s.split('\0').next().unwrap_or(""))
}

/// A topic name: non-empty, no wildcards, no U+0000 (4.7).
fn topic_name<'a>(u: &mut Unstructured<'a>) -> Result<&'a str> {
    let s = string(u)?;
    let s = s.split(['+', '#']).next().unwrap_or("");
    Ok(if s.is_empty() { "t" } else { s })
}

fn binary<'a>(u: &mut Unstructured<'a>) -> Result<&'a [u8]> {
    let b = <&'a [u8]>::arbitrary(u)?;
    Ok(&b[..b.len().min(1000)])
}

fn qos(u: &mut Unstructured<'_>) -> Result<QoS> {
    Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])?)
}

fn packet_id(u: &mut Unstructured<'_>) -> Result<PacketId> {
    Ok(PacketId::new(u.int_in_range(1..=u16::MAX)?).unwrap_or(PacketId::MIN))
}

fn reason(u: &mut Unstructured<'_>, t: PacketType) -> Result<ReasonCode> {
    let valid: Vec<ReasonCode> = (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.valid_in(t))
        .collect();
    Ok(*u.choose(&valid)?)
}

use PropertyContext as C;

/// MQTT 5.0 Table 2-4.
fn allowed(ctx: PropertyContext) -> &'static [u8] {
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

fn properties<'a>(
    u: &mut Unstructured<'a>,
    bump: &'a Bump,
    v: ProtocolVersion,
    ctx: PropertyContext,
) -> Result<Properties<'a>> {
    let mut p = Properties::default();
    if !v.is_v5() {
        return Ok(p);
    }
    for &id in allowed(ctx) {
        if !u.arbitrary::<bool>()? {
            continue;
        }
        match id {
            0x01 => p.payload_format_indicator = Some(u.arbitrary()?),
            0x02 => p.message_expiry_interval = Some(u.arbitrary()?),
            0x03 => p.content_type = Some(string(u)?),
            0x08 => p.response_topic = Some(topic_name(u)?),
            0x09 => p.correlation_data = Some(binary(u)?),
            0x0B => {
                // Several only in PUBLISH ([MQTT-3.3.4-3]); each 1..=268,435,455.
                let n = if ctx == C::Publish {
                    u.int_in_range(1..=4)?
                } else {
                    1
                };
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(u.int_in_range(1..=268_435_455u32)?);
                }
                p.subscription_identifiers = SubscriptionIds::List(bump.alloc_slice_copy(&ids));
            }
            0x11 => p.session_expiry_interval = Some(u.arbitrary()?),
            0x12 => p.assigned_client_identifier = Some(string(u)?),
            0x13 => p.server_keep_alive = Some(u.arbitrary()?),
            0x15 => p.authentication_method = Some(string(u)?),
            0x16 => p.authentication_data = Some(binary(u)?),
            0x17 => p.request_problem_information = Some(u.arbitrary()?),
            0x18 => p.will_delay_interval = Some(u.arbitrary()?),
            0x19 => p.request_response_information = Some(u.arbitrary()?),
            0x1A => p.response_information = Some(string(u)?),
            0x1C => p.server_reference = Some(string(u)?),
            0x1F => p.reason_string = Some(string(u)?),
            0x21 => p.receive_maximum = Some(u.int_in_range(1..=u16::MAX)?),
            0x22 => p.topic_alias_maximum = Some(u.arbitrary()?),
            0x23 => p.topic_alias = Some(u.int_in_range(1..=u16::MAX)?),
            0x24 => p.maximum_qos = Some(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce])?),
            0x25 => p.retain_available = Some(u.arbitrary()?),
            0x26 => {
                let n = u.int_in_range(1..=4)?;
                let mut up = Vec::with_capacity(n);
                for _ in 0..n {
                    up.push((string(u)?, string(u)?));
                }
                p.user_properties = UserProperties::List(bump.alloc_slice_copy(&up));
            }
            0x27 => p.maximum_packet_size = Some(u.int_in_range(1..=u32::MAX)?),
            0x28 => p.wildcard_subscription_available = Some(u.arbitrary()?),
            0x29 => p.subscription_identifier_available = Some(u.arbitrary()?),
            0x2A => p.shared_subscription_available = Some(u.arbitrary()?),
            _ => unreachable!("not in Table 2-4"),
        }
    }
    Ok(p)
}

fn code_or_success(
    u: &mut Unstructured<'_>,
    v: ProtocolVersion,
    t: PacketType,
) -> Result<ReasonCode> {
    if v.is_v5() {
        reason(u, t)
    } else {
        Ok(ReasonCode::Success)
    }
}

fn packet<'a>(u: &mut Unstructured<'a>, bump: &'a Bump, v: ProtocolVersion) -> Result<Packet<'a>> {
    let kinds: &[u8] = if v.is_v5() {
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    } else {
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    };
    Ok(match *u.choose(kinds)? {
        1 => {
            let will = if u.arbitrary()? {
                Some(Will {
                    qos: qos(u)?,
                    retain: u.arbitrary()?,
                    properties: properties(u, bump, v, C::Will)?,
                    topic: topic_name(u)?,
                    payload: binary(u)?,
                })
            } else {
                None
            };
            let username = if u.arbitrary()? {
                Some(string(u)?)
            } else {
                None
            };
            // [MQTT-3.1.2-22]: before 5.0, a password needs a user name.
            let password = if u.arbitrary()? && (v.is_v5() || username.is_some()) {
                Some(binary(u)?)
            } else {
                None
            };
            Packet::Connect(Connect {
                protocol: v,
                clean_start: u.arbitrary()?,
                // The bridge bit exists in 3.1 and 3.1.1 only.
                bridge: !v.is_v5() && u.arbitrary()?,
                keep_alive: u.arbitrary()?,
                properties: properties(u, bump, v, C::Connect)?,
                client_id: string(u)?,
                will,
                username,
                password,
            })
        }
        2 => Packet::ConnAck(ConnAck {
            session_present: u.arbitrary()?,
            reason_code: if v.is_v5() {
                reason(u, PacketType::ConnAck)?
            } else {
                ReasonCode::from_v3_connack(u.int_in_range(0..=5)?).unwrap_or(ReasonCode::Success)
            },
            properties: properties(u, bump, v, C::ConnAck)?,
        }),
        3 => {
            let q = qos(u)?;
            let properties = properties(u, bump, v, C::Publish)?;
            // 3.3.2.3.4: an empty topic only with a Topic Alias (5.0).
            let topic = if properties.topic_alias.is_some() && u.arbitrary()? {
                ""
            } else {
                topic_name(u)?
            };
            Packet::Publish(Publish {
                dup: q != QoS::AtMostOnce && u.arbitrary()?,
                qos: q,
                retain: u.arbitrary()?,
                topic,
                packet_id: if q == QoS::AtMostOnce {
                    None
                } else {
                    Some(packet_id(u)?)
                },
                properties,
                payload: binary(u)?,
            })
        }
        k @ 4..=7 => {
            let (t, ctx) = match k {
                4 => (PacketType::PubAck, C::PubAck),
                5 => (PacketType::PubRec, C::PubRec),
                6 => (PacketType::PubRel, C::PubRel),
                _ => (PacketType::PubComp, C::PubComp),
            };
            let a = Ack {
                packet_id: packet_id(u)?,
                reason_code: code_or_success(u, v, t)?,
                properties: properties(u, bump, v, ctx)?,
            };
            match k {
                4 => Packet::PubAck(a),
                5 => Packet::PubRec(a),
                6 => Packet::PubRel(a),
                _ => Packet::PubComp(a),
            }
        }
        8 => {
            let n = u.int_in_range(1..=8)?;
            let mut subs = Vec::with_capacity(n);
            for _ in 0..n {
                let options = if v.is_v5() {
                    SubscriptionOptions {
                        qos: qos(u)?,
                        no_local: u.arbitrary()?,
                        retain_as_published: u.arbitrary()?,
                        retain_handling: *u.choose(&[
                            RetainHandling::SendAtSubscribe,
                            RetainHandling::SendIfNew,
                            RetainHandling::DoNotSend,
                        ])?,
                    }
                } else {
                    SubscriptionOptions::qos(qos(u)?)
                };
                subs.push(Subscription {
                    filter: string(u)?,
                    options,
                });
            }
            Packet::Subscribe(Subscribe {
                packet_id: packet_id(u)?,
                properties: properties(u, bump, v, C::Subscribe)?,
                subscriptions: Subscriptions::List(bump.alloc_slice_copy(&subs)),
            })
        }
        9 => {
            let n = u.int_in_range(1..=8)?;
            let mut codes = Vec::with_capacity(n);
            for _ in 0..n {
                codes.push(if v.is_v5() {
                    reason(u, PacketType::SubAck)?
                } else {
                    *u.choose(&[
                        ReasonCode::Success,
                        ReasonCode::GrantedQoS1,
                        ReasonCode::GrantedQoS2,
                        ReasonCode::UnspecifiedError,
                    ])?
                });
            }
            Packet::SubAck(SubAck {
                packet_id: packet_id(u)?,
                properties: properties(u, bump, v, C::SubAck)?,
                reason_codes: ReasonCodes::List(bump.alloc_slice_copy(&codes)),
            })
        }
        10 => {
            let n = u.int_in_range(1..=8)?;
            let mut filters = Vec::with_capacity(n);
            for _ in 0..n {
                filters.push(string(u)?);
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(u)?,
                properties: properties(u, bump, v, C::Unsubscribe)?,
                filters: TopicFilters::List(bump.alloc_slice_copy(&filters)),
            })
        }
        11 => {
            // 3.1.1 UNSUBACK has no payload.
            let n = if v.is_v5() { u.int_in_range(1..=8)? } else { 0 };
            let mut codes = Vec::with_capacity(n);
            for _ in 0..n {
                codes.push(reason(u, PacketType::UnsubAck)?);
            }
            Packet::UnsubAck(UnsubAck {
                packet_id: packet_id(u)?,
                properties: properties(u, bump, v, C::UnsubAck)?,
                reason_codes: ReasonCodes::List(bump.alloc_slice_copy(&codes)),
            })
        }
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(Disconnect {
            reason_code: code_or_success(u, v, PacketType::Disconnect)?,
            properties: properties(u, bump, v, C::Disconnect)?,
        }),
        _ => Packet::Auth(Auth {
            reason_code: reason(u, PacketType::Auth)?,
            properties: properties(u, bump, v, C::Auth)?,
        }),
    })
}

fn check(p: &Packet<'_>, v: ProtocolVersion) {
    let len = match p.encoded_len(v) {
        Ok(n) => n,
        Err(e) => panic!("valid packet refused by the encoder ({e}): {p:?}"),
    };
    let mut out = vec![0u8; len];
    assert_eq!(p.emit(v, &mut out), Ok(len));
    match Packet::parse(&out, v, len) {
        Ok(Status::Complete((q, n))) => {
            assert_eq!(n, len);
            assert_eq!(&q, p);
        }
        other => panic!("{p:?} encoded as {out:02x?} decodes as {other:?}"),
    }
    let Ok(Status::Complete(h)) = FixedHeader::parse(&out, len) else {
        panic!("fixed header")
    };
    for cut in 0..len {
        match Packet::parse(&out[..cut], v, len) {
            Ok(Status::Incomplete { needed }) => {
                assert!(needed >= 1 && cut + needed <= len);
                if cut >= h.header_len {
                    assert_eq!(cut + needed, len);
                }
            }
            other => panic!("prefix {cut}/{len} of {p:?}: {other:?}"),
        }
    }
    let mut bm = bytes::BytesMut::new();
    assert_eq!(p.emit_buf(v, &mut bm), Ok(len));
    assert_eq!(&bm[..], &out[..]);
    if let Packet::Publish(pb) = p {
        let hl = pb.header_len(v).expect("header_len");
        let mut hdr = vec![0u8; hl];
        assert_eq!(pb.emit_header(v, &mut hdr), Ok(hl));
        hdr.extend_from_slice(pb.payload);
        assert_eq!(hdr, out);
    }
}

fuzz_target!(|data: &[u8]| {
    let bump = Bump::new();
    let mut u = Unstructured::new(data);
    let Ok(v) = version(&mut u) else { return };
    // Several packets per input, so one input covers more of the generator.
    for _ in 0..4 {
        match packet(&mut u, &bump, v) {
            Ok(p) => check(&p, v),
            Err(_) => return,
        }
    }
});
