//! MQTT 5.0: PUBLISH and its acknowledgements (3.3 to 3.7), QoS flows (4.3), message
//! delivery retry (4.4), receipt (4.5), ordering (4.6), packet identifiers (2.2.1).

use crate::common::*;
use broker_core::Config;
use mqtt_proto::*;

fn pair(
    s: &mut broker_core::sim::Sim,
    filter: &str,
    qos: QoS,
) -> (broker_core::sim::Client, broker_core::sim::Client) {
    let sub = connect(s, "sub", true, V5);
    subscribe(s, sub, filter, qos);
    let p = connect(s, "pub", true, V5);
    (sub, p)
}

fn raw_publish(flags: u8, topic: &[u8], pid: Option<u16>, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    if let Some(id) = pid {
        body.extend(id.to_be_bytes());
    }
    body.extend(varint(props.len()));
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

// ---- 2.2.1 Packet Identifier ---------------------------------------------------------

#[test]
fn mqtt_2_2_1_2_qos0_publish_has_no_packet_identifier() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q2);
    publish(&mut s, p, "t", b"zero", Q0, false, 0);
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 1);
    // [MQTT-2.2.1-2] and [MQTT-4.3.1-1]: QoS 0, DUP 0, no identifier.
    assert_eq!((got[0].qos, got[0].dup, got[0].pid), (Q0, false, None));
}

#[test]
fn mqtt_2_2_1_4_server_packet_identifiers_non_zero_and_unused() {
    let mut s = sim();
    let mut c = conn("sub", V5);
    c.properties.receive_maximum = Some(20);
    let (sub, _) = connect_ok(&mut s, &c);
    subscribe(&mut s, sub, "t", Q2);
    let p = connect(&mut s, "pub", true, V5);
    let mut in_use = std::collections::HashSet::new();
    // Many rounds: keep 10 unacknowledged, acknowledge the oldest, publish again; the
    // identifiers wrap around 65535 without ever reusing one still in flight.
    let mut outstanding: std::collections::VecDeque<(u16, QoS)> = Default::default();
    for round in 0..70_000u32 {
        let q = if round % 2 == 0 { Q1 } else { Q2 };
        publish(&mut s, p, "t", b"m", q, false, 1 + (round % 60_000) as u16);
        if q == Q2 {
            send_ack(&mut s, p, PacketType::PubRel, 1 + (round % 60_000) as u16);
        }
        recv(&mut s, p);
        for x in pubs(&recv(&mut s, sub)) {
            let id = x.pid.expect("QoS > 0 has an identifier");
            // [MQTT-2.2.1-4] non-zero and not in use.
            assert_ne!(id, 0);
            assert!(in_use.insert(id), "identifier {id} reused while in flight");
            outstanding.push_back((id, x.qos));
        }
        if outstanding.len() >= 10 {
            let (id, q) = outstanding.pop_front().unwrap();
            if q == Q1 {
                send_ack(&mut s, sub, PacketType::PubAck, id);
            } else {
                send_ack(&mut s, sub, PacketType::PubRec, id);
                let rel = recv(&mut s, sub);
                // [MQTT-2.2.1-5] [MQTT-4.3.3-4] PUBREL carries the PUBLISH's identifier.
                assert!(
                    rel.contains(&P::PubRel {
                        pid: id,
                        code: ReasonCode::Success
                    }),
                    "{rel:?}"
                );
                send_ack(&mut s, sub, PacketType::PubComp, id);
                // Deliveries released by the acknowledgement come with the next round.
                for x in pubs(&rel) {
                    assert!(in_use.insert(x.pid.unwrap()));
                    outstanding.push_back((x.pid.unwrap(), x.qos));
                }
            }
            in_use.remove(&id);
        }
    }
}

/// [MQTT-2.2.1-4] with two messages never acknowledged while identifiers go round twice, and
/// the others acknowledged in random order: the allocator's one-comparison path (pids in
/// circular order) must give way to the full check once the lap reaches the first held
/// one, and keep to it past the second.
#[test]
fn mqtt_2_2_1_4_identifiers_held_across_laps_are_never_reused() {
    let mut s = sim();
    let mut c = conn("sub", V5);
    c.properties.receive_maximum = Some(8);
    let (sub, _) = connect_ok(&mut s, &c);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "pub", true, V5);
    let mut seed: u32 = 0x9E37_79B9;
    let mut next = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        seed >> 8
    };
    let mut held: Vec<u16> = Vec::new();
    let mut outstanding: Vec<u16> = Vec::new();
    for round in 0..140_000u32 {
        publish(&mut s, p, "t", b"m", Q1, false, 1 + (round % 60_000) as u16);
        recv(&mut s, p);
        for x in pubs(&recv(&mut s, sub)) {
            let id = x.pid.expect("QoS 1 has an identifier");
            assert_ne!(id, 0);
            assert!(
                !held.contains(&id),
                "held identifier {id} reused in round {round}"
            );
            assert!(
                !outstanding.contains(&id),
                "identifier {id} reused while in flight"
            );
            // The first and the fourth delivered stay unacknowledged.
            if round == 0 || round == 3 {
                held.push(id);
            } else {
                outstanding.push(id);
            }
        }
        if outstanding.len() >= 5 {
            let id = outstanding.swap_remove(next() as usize % outstanding.len());
            send_ack(&mut s, sub, PacketType::PubAck, id);
        }
    }
    assert_eq!(held.len(), 2);
}

#[test]
fn mqtt_2_2_1_5_acknowledgements_carry_the_publish_identifier() {
    let mut s = sim();
    let (_sub, p) = pair(&mut s, "t", Q2);
    publish(&mut s, p, "t", b"1", Q1, false, 4711);
    publish(&mut s, p, "t", b"2", Q2, false, 999);
    send_ack(&mut s, p, PacketType::PubRel, 999);
    let got = recv(&mut s, p);
    // [MQTT-2.2.1-5] [MQTT-4.3.2-4] [MQTT-4.3.3-8] [MQTT-4.3.3-11]
    assert_eq!(
        got,
        [
            P::PubAck {
                pid: 4711,
                code: ReasonCode::Success
            },
            P::PubRec {
                pid: 999,
                code: ReasonCode::Success
            },
            P::PubComp {
                pid: 999,
                code: ReasonCode::Success
            },
        ]
    );
}

#[test]
fn mqtt_2_2_1_6_suback_and_unsuback_carry_the_request_identifier() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    // subscribe_many checks the SUBACK identifier.
    subscribe_many(
        &mut s,
        c,
        65535,
        &[("a", SubscriptionOptions::qos(Q0))],
        None,
    );
    subscribe_many(&mut s, c, 1, &[("b", SubscriptionOptions::qos(Q0))], None);
    // [MQTT-2.2.1-6]
    assert!(matches!(
        unsubscribe(&mut s, c, 321, &["a"]),
        P::UnsubAck { pid: 321, .. }
    ));
}

// ---- 3.3.1 Fixed header flags ------------------------------------------------------

#[test]
fn mqtt_3_3_1_1_dup_set_on_redelivery() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 600);
    subscribe(&mut s, sub, "t", Q2);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "t", b"one", Q1, false, 1);
    publish(&mut s, p, "t", b"two", Q2, false, 2);
    let first = pubs(&recv(&mut s, sub));
    assert!(
        first.iter().all(|x| !x.dup),
        "first delivery has DUP 0 [MQTT-4.3.2-2] [MQTT-4.3.3-2]"
    );
    s.drop_connection(sub);
    let (sub2, ack) = connect5(&mut s, "sub", false, 600);
    assert!(ack.session_present);
    let again = pubs(&recv(&mut s, sub2));
    // [MQTT-3.3.1-1] re-delivery: DUP 1, same identifiers [MQTT-4.4.0-1].
    assert_eq!(again.len(), 2);
    for (a, b) in first.iter().zip(&again) {
        assert!(b.dup);
        assert_eq!((&a.payload, a.pid, a.qos), (&b.payload, b.pid, b.qos));
    }
}

#[test]
fn mqtt_3_3_1_2_dup_is_0_for_qos0_and_refused_from_clients() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q0);
    publish(&mut s, p, "t", b"a", Q2, false, 1);
    assert!(pubs(&recv(&mut s, sub))
        .iter()
        .all(|x| x.qos == Q0 && !x.dup));
    // A QoS 0 PUBLISH with DUP 1 is malformed [MQTT-3.3.1-2].
    s.send_bytes(p, &raw_publish(0x08, b"t", None, &[], b"x"));
    assert_disconnected(&mut s, p, ReasonCode::MalformedPacket);
}

#[test]
fn mqtt_3_3_1_3_outgoing_dup_independent_of_incoming() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q2);
    for (q, id) in [(Q1, 1u16), (Q2, 2)] {
        s.send(
            p,
            &Packet::Publish(Publish {
                dup: true,
                qos: q,
                retain: false,
                topic: "t",
                packet_id: Some(pid(id)),
                properties: Properties::default(),
                payload: b"resent by publisher",
            }),
        );
    }
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 2);
    // [MQTT-3.3.1-3] a first transmission to the subscriber: DUP 0.
    assert!(got.iter().all(|x| !x.dup), "{got:?}");
}

#[test]
fn mqtt_3_3_1_4_qos_3_is_malformed() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q2);
    s.send_bytes(p, &raw_publish(0x06, b"t", Some(1), &[], b"x"));
    // [MQTT-3.3.1-4]
    assert_disconnected(&mut s, p, ReasonCode::MalformedPacket);
    assert!(recv(&mut s, sub).is_empty());
}

#[test]
fn mqtt_3_3_1_5_retained_message_stored_and_replaced() {
    let mut s = sim();
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "r", b"v1", Q1, true, 1);
    publish(&mut s, p, "r", b"v2", Q2, true, 2);
    send_ack(&mut s, p, PacketType::PubRel, 2);
    // [MQTT-3.3.1-5] the new message replaces the old one, with its QoS.
    assert_eq!(s.brokers[0].retained_count(), 1);
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "r", Q2);
    let got = pubs(&recv(&mut s, c));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (&got[0].payload[..], got[0].qos, got[0].retain),
        (&b"v2"[..], Q2, true)
    );
    // QoS 0 retained replaces as well.
    publish(&mut s, p, "r", b"v3", Q0, true, 0);
    let c2 = connect(&mut s, "c2", true, V5);
    subscribe(&mut s, c2, "r", Q2);
    let got = pubs(&recv(&mut s, c2));
    assert_eq!((&got[0].payload[..], got[0].qos), (&b"v3"[..], Q0));
}

#[test]
fn mqtt_3_3_1_6_and_7_empty_retained_payload_deletes_and_is_not_stored() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "r/#", Q1);
    publish(&mut s, p, "r/x", b"kept", Q1, true, 1);
    publish(&mut s, p, "r/x", b"", Q1, true, 2);
    publish(&mut s, p, "r/y", b"", Q0, true, 0);
    // [MQTT-3.3.1-6] processed normally: current subscribers get the empty message.
    let live = pubs(&recv(&mut s, sub));
    assert_eq!(live.len(), 3);
    assert!(live[1].payload.is_empty() && live[2].payload.is_empty());
    // ... but the retained message is gone and nothing empty is stored [MQTT-3.3.1-7].
    assert_eq!(s.brokers[0].retained_count(), 0);
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "r/#", Q1);
    assert!(recv(&mut s, c).is_empty());
}

#[test]
fn mqtt_3_3_1_8_retain_0_neither_stores_nor_replaces() {
    let mut s = sim();
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "r", b"retained", Q1, true, 1);
    publish(&mut s, p, "r", b"plain", Q1, false, 2);
    publish(&mut s, p, "r", b"", Q1, false, 3);
    publish(&mut s, p, "other", b"plain", Q1, false, 4);
    // [MQTT-3.3.1-8]
    assert_eq!(s.brokers[0].retained_count(), 1);
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "#", Q1);
    assert_eq!(payloads(&recv(&mut s, c)), ["retained"]);
}

// ---- 3.3.2 Variable header -------------------------------------------------------

#[test]
fn mqtt_3_3_2_1_topic_name_must_be_utf8() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "#", Q0);
    s.send_bytes(p, &raw_publish(0, &[b'a', 0xC3], None, &[], b"x"));
    // [MQTT-3.3.2-1] [MQTT-1.5.4-1]
    assert_disconnected(&mut s, p, ReasonCode::MalformedPacket);
    assert!(recv(&mut s, sub).is_empty());
    // U+0000 is not allowed either [MQTT-1.5.4-2].
    let p2 = connect(&mut s, "pub2", true, V5);
    s.send_bytes(p2, &raw_publish(0, b"a\0b", None, &[], b"x"));
    assert_disconnected(&mut s, p2, ReasonCode::MalformedPacket);
}

#[test]
fn mqtt_3_3_2_2_topic_name_without_wildcards() {
    for topic in [&b"a/+"[..], b"#", b"a/#", b"+"] {
        let mut s = sim();
        let (sub, p) = pair(&mut s, "#", Q0);
        s.send_bytes(p, &raw_publish(0, topic, None, &[], b"x"));
        // [MQTT-3.3.2-2] [MQTT-4.7.0-1]: 0x90 Topic Name invalid.
        assert_disconnected(&mut s, p, ReasonCode::TopicNameInvalid);
        assert!(recv(&mut s, sub).is_empty());
    }
}

#[test]
fn mqtt_1_5_4_3_bom_is_not_stripped() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "\u{FEFF}t", Q0);
    publish(&mut s, p, "\u{FEFF}t", b"bom", Q0, false, 0);
    publish(&mut s, p, "t", b"plain", Q0, false, 0);
    let got = pubs(&recv(&mut s, sub));
    // [MQTT-1.5.4-3] the U+FEFF is part of the topic.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, "\u{FEFF}t");
}

#[test]
fn mqtt_3_3_2_3_topic_name_sent_matches_the_filter() {
    let mut s = sim();
    let mut c = conn("sub", V5);
    c.properties.topic_alias_maximum = Some(5);
    let (sub, _) = connect_ok(&mut s, &c);
    subscribe(&mut s, sub, "a/+/c", Q1);
    let p = connect(&mut s, "pub", true, V5);
    for t in ["a/b/c", "a/x/c", "a/b/c", "a/b", "b/b/c", "a/b/c/d"] {
        publish(&mut s, p, t, t.as_bytes(), Q1, false, 1);
    }
    let mut aliases = std::collections::HashMap::new();
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 3);
    for x in got {
        // Resolve aliases as a client does.
        let topic = match (x.topic.is_empty(), x.props.topic_alias) {
            (false, Some(a)) => {
                aliases.insert(a, x.topic.clone());
                x.topic.clone()
            }
            (true, Some(a)) => aliases[&a].clone(),
            (false, None) => x.topic.clone(),
            (true, None) => panic!("empty topic without alias"),
        };
        // [MQTT-3.3.2-3]
        assert!(topic::matches("a/+/c", &topic), "{topic}");
        assert_eq!(topic.as_bytes(), &x.payload[..]);
    }
}

#[test]
fn mqtt_3_3_2_4_15_16_17_18_20_properties_forwarded_unaltered() {
    let mut s = sim();
    let sub5 = connect(&mut s, "sub5", true, V5);
    subscribe(&mut s, sub5, "props", Q2);
    let sub3 = connect(&mut s, "sub3", true, V3);
    subscribe(&mut s, sub3, "props", Q2);
    let p = connect(&mut s, "pub", true, V5);
    let ups = [("k", "v1"), ("a", "x"), ("k", "v2"), ("k", "v1")];
    let props = Properties {
        payload_format_indicator: Some(true),
        content_type: Some("application/json; charset=utf-8"),
        response_topic: Some("reply/to/me"),
        correlation_data: Some(&[0, 1, 2, 255]),
        user_properties: UserProperties::List(&ups),
        ..Properties::default()
    };
    publish_props(&mut s, p, "props", b"{}", Q1, false, 1, props);
    let got = pubs(&recv(&mut s, sub5));
    assert_eq!(got.len(), 1);
    let g = &got[0].props;
    assert_eq!(g.payload_format_indicator, Some(true)); // [MQTT-3.3.2-4]
    assert_eq!(g.response_topic.as_deref(), Some("reply/to/me")); // [MQTT-3.3.2-15]
    assert_eq!(g.correlation_data.as_deref(), Some(&[0u8, 1, 2, 255][..])); // [MQTT-3.3.2-16]
    let expect: Vec<(String, String)> = ups
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // [MQTT-3.3.2-17] all, unaltered; [MQTT-3.3.2-18] in order.
    assert_eq!(g.user_properties, expect);
    assert_eq!(
        g.content_type.as_deref(),
        Some("application/json; charset=utf-8")
    ); // [MQTT-3.3.2-20]
       // A 3.1.1 subscriber gets the message without properties.
    assert_eq!(payloads(&recv(&mut s, sub3)), ["{}"]);
    // Payload Format Indicator 0 is forwarded as well.
    let props = Properties {
        payload_format_indicator: Some(false),
        ..Properties::default()
    };
    publish_props(&mut s, p, "props", &[0xFF, 0xFE], Q0, false, 0, props);
    let got = pubs(&recv(&mut s, sub5));
    assert_eq!(got[0].props.payload_format_indicator, Some(false));
}

#[test]
fn mqtt_3_3_2_5_expired_message_not_delivered() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 3600);
    subscribe(&mut s, sub, "e", Q1);
    s.drop_connection(sub);
    let p = connect(&mut s, "pub", true, V5);
    let exp = |secs| Properties {
        message_expiry_interval: Some(secs),
        ..Properties::default()
    };
    publish_props(&mut s, p, "e", b"short", Q1, false, 1, exp(5));
    publish_props(&mut s, p, "e", b"long", Q1, false, 2, exp(50));
    publish(&mut s, p, "e", b"forever", Q1, false, 3);
    s.advance(10_000);
    let (sub2, _) = connect5(&mut s, "sub", false, 3600);
    // [MQTT-3.3.2-5] the expired copy is deleted, the others are sent.
    assert_eq!(payloads(&recv(&mut s, sub2)), ["long", "forever"]);
}

#[test]
fn mqtt_3_3_2_5_expired_message_dropped_while_waiting_for_receive_maximum() {
    let (mut s, log) = sim_logged(Config::default(), 1);
    let mut c = conn("slow", V5);
    c.properties.receive_maximum = Some(1);
    let (sub, _) = connect_ok(&mut s, &c);
    subscribe(&mut s, sub, "e", Q1);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "e", b"first", Q1, false, 1);
    let props = Properties {
        message_expiry_interval: Some(2),
        ..Properties::default()
    };
    publish_props(&mut s, p, "e", b"expiring", Q1, false, 2, props);
    publish(&mut s, p, "e", b"third", Q1, false, 3);
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 1, "Receive Maximum 1");
    s.advance(3_000);
    send_ack(&mut s, sub, PacketType::PubAck, got[0].pid.unwrap());
    // [MQTT-3.3.2-5]
    assert_eq!(payloads(&recv(&mut s, sub)), ["third"]);
    assert!(log.drops().contains(&(
        "slow".into(),
        "expiring".into(),
        broker_core::policy::DropReason::Expired
    )));
}

#[test]
fn mqtt_3_3_2_6_remaining_expiry_forwarded() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 3600);
    subscribe(&mut s, sub, "e", Q1);
    let p = connect(&mut s, "pub", true, V5);
    let props = Properties {
        message_expiry_interval: Some(100),
        ..Properties::default()
    };
    publish_props(&mut s, p, "e", b"now", Q1, false, 1, props);
    let got = pubs(&recv_acking(&mut s, sub));
    assert_eq!(got[0].props.message_expiry_interval, Some(100));
    s.drop_connection(sub);
    publish_props(&mut s, p, "e", b"later", Q1, true, 2, props);
    s.advance(30_000);
    let (sub2, _) = connect5(&mut s, "sub", false, 3600);
    let got = pubs(&recv_acking(&mut s, sub2));
    // [MQTT-3.3.2-6] received value minus the time waited in the server.
    assert_eq!(got[0].props.message_expiry_interval, Some(70));
    // Same for a retained message sent to a new subscriber.
    s.advance(20_000);
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "e", Q1);
    let got = pubs(&recv(&mut s, c));
    assert_eq!(got[0].props.message_expiry_interval, Some(50));
    // Without an interval none is sent.
    publish(&mut s, p, "e", b"no expiry", Q1, false, 3);
    let got = pubs(&recv(&mut s, c));
    assert_eq!(got[0].props.message_expiry_interval, None);
}

#[test]
fn mqtt_3_3_2_7_topic_aliases_do_not_survive_the_connection() {
    let mut s = sim();
    let mut c = conn("sub", V5);
    c.properties.topic_alias_maximum = Some(4);
    c.properties.session_expiry_interval = Some(600);
    let (sub, _) = connect_ok(&mut s, &c);
    subscribe(&mut s, sub, "long/topic/name", Q1);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "long/topic/name", b"1", Q1, false, 1);
    publish(&mut s, p, "long/topic/name", b"2", Q1, false, 2);
    let got = pubs(&recv_acking(&mut s, sub));
    assert_eq!(got[0].topic, "long/topic/name");
    assert_eq!(got[1].topic, "", "second one uses the alias");
    let alias = got[0].props.topic_alias.unwrap();
    assert_eq!(got[1].props.topic_alias, Some(alias));
    s.drop_connection(sub);
    c.clean_start = false;
    let (sub2, _) = connect_ok(&mut s, &c);
    publish(&mut s, p, "long/topic/name", b"3", Q1, false, 3);
    let got = pubs(&recv(&mut s, sub2));
    // [MQTT-3.3.2-7] the server starts again with the full topic name.
    assert_eq!(got[0].topic, "long/topic/name");
    // And the server forgets the client's aliases: an alias set on the previous
    // connection is unknown on this one.
    let (pc, _) = connect5(&mut s, "pubc", true, 600);
    let alias1 = Properties {
        topic_alias: Some(1),
        ..Properties::default()
    };
    publish_props(&mut s, pc, "long/topic/name", b"4", Q0, false, 0, alias1);
    s.drop_connection(pc);
    let (pc2, _) = connect5(&mut s, "pubc", false, 600);
    publish_props(&mut s, pc2, "", b"5", Q0, false, 0, alias1);
    assert_disconnected(&mut s, pc2, ReasonCode::ProtocolError);
    assert_eq!(payloads(&recv(&mut s, sub2)), ["4"]);
}

#[test]
fn mqtt_3_3_2_8_topic_alias_0_is_refused() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q0);
    // Property 0x23 (Topic Alias) = 0.
    s.send_bytes(p, &raw_publish(0, b"t", None, &[0x23, 0, 0], b"x"));
    // [MQTT-3.3.2-8]: a receiver treats it as an error and closes.
    let got = recv(&mut s, p);
    assert!(
        matches!(disconnect_code(&got), Some(c) if c.is_error()),
        "{got:?}"
    );
    assert!(s.is_closed(p));
    assert!(recv(&mut s, sub).is_empty());
}

#[test]
fn mqtt_3_3_2_11_server_aliases_within_client_maximum() {
    for tam in [None, Some(0u16), Some(1), Some(3)] {
        let mut s = sim();
        let mut c = conn("sub", V5);
        c.properties.topic_alias_maximum = tam;
        let (sub, _) = connect_ok(&mut s, &c);
        subscribe(&mut s, sub, "#", Q0);
        let p = connect(&mut s, "pub", true, V5);
        for round in 0..3 {
            for t in ["a", "b", "c", "d", "e"] {
                publish(&mut s, p, t, format!("{t}{round}").as_bytes(), Q0, false, 0);
            }
        }
        let got = pubs(&recv(&mut s, sub));
        assert_eq!(got.len(), 15);
        let max = tam.unwrap_or(0);
        let mut map = std::collections::HashMap::new();
        for x in &got {
            match x.props.topic_alias {
                // [MQTT-3.1.2-26] [MQTT-3.3.2-11] never above the client's maximum;
                // [MQTT-3.1.2-27] none at all when it is absent or 0; [MQTT-3.3.2-8]
                // never 0.
                Some(a) => {
                    assert!(a >= 1 && a <= max, "alias {a} with maximum {tam:?}");
                    if !x.topic.is_empty() {
                        map.insert(a, x.topic.clone());
                    }
                    let t = &map[&a];
                    assert_eq!(x.payload[0], t.as_bytes()[0]);
                }
                None => assert!(!x.topic.is_empty()),
            }
        }
        if max > 0 {
            assert!(got.iter().any(|x| x.topic.is_empty()), "aliases are used");
        }
    }
}

#[test]
fn mqtt_3_3_2_12_server_accepts_every_alias_up_to_its_maximum() {
    let mut s = sim_cfg(Config {
        topic_alias_maximum: 5,
        ..Config::default()
    });
    let (sub, p) = pair(&mut s, "#", Q0);
    let alias = |a| Properties {
        topic_alias: Some(a),
        ..Properties::default()
    };
    for a in 1..=5u16 {
        let t = format!("topic/{a}");
        publish_props(&mut s, p, &t, b"set", Q0, false, 0, alias(a));
    }
    for a in (1..=5u16).rev() {
        publish_props(
            &mut s,
            p,
            "",
            format!("{a}").as_bytes(),
            Q0,
            false,
            0,
            alias(a),
        );
    }
    // Re-mapping an alias to another topic.
    publish_props(&mut s, p, "re/mapped", b"re", Q0, false, 0, alias(2));
    publish_props(&mut s, p, "", b"again", Q0, false, 0, alias(2));
    let got = pubs(&recv(&mut s, sub));
    // [MQTT-3.3.2-12]
    let topics: Vec<&str> = got.iter().map(|x| x.topic.as_str()).collect();
    assert_eq!(
        &topics[5..],
        [
            "topic/5",
            "topic/4",
            "topic/3",
            "topic/2",
            "topic/1",
            "re/mapped",
            "re/mapped"
        ]
    );
    assert!(!s.is_closed(p));
    // Above the maximum: 0x94 Topic Alias invalid.
    publish_props(&mut s, p, "x", b"x", Q0, false, 0, alias(6));
    assert_disconnected(&mut s, p, ReasonCode::TopicAliasInvalid);
}

#[test]
fn unknown_topic_alias_is_a_protocol_error() {
    let mut s = sim();
    let (_sub, p) = pair(&mut s, "#", Q0);
    let alias = Properties {
        topic_alias: Some(3),
        ..Properties::default()
    };
    publish_props(&mut s, p, "", b"x", Q0, false, 0, alias);
    assert_disconnected(&mut s, p, ReasonCode::ProtocolError);
}

#[test]
fn topic_alias_from_a_server_without_aliases_is_invalid() {
    let mut s = sim_cfg(Config {
        topic_alias_maximum: 0,
        ..Config::default()
    });
    let (c, ack) = connect_ok(&mut s, &conn("c", V5));
    assert_eq!(ack.props.topic_alias_maximum, None);
    let alias = Properties {
        topic_alias: Some(1),
        ..Properties::default()
    };
    publish_props(&mut s, c, "t", b"x", Q0, false, 0, alias);
    assert_disconnected(&mut s, c, ReasonCode::TopicAliasInvalid);
}

#[test]
fn mqtt_3_3_2_13_and_14_response_topic_is_a_topic_name() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "#", Q0);
    // Response Topic (0x08) "a/#".
    let mut props = vec![0x08];
    props.extend(field(b"a/#"));
    s.send_bytes(p, &raw_publish(0, b"t", None, &props, b"x"));
    // [MQTT-3.3.2-14]: not a valid PUBLISH, closed with an error.
    let got = recv(&mut s, p);
    assert!(
        matches!(disconnect_code(&got), Some(c) if c.is_error()),
        "{got:?}"
    );
    assert!(recv(&mut s, sub).is_empty());
    // [MQTT-3.3.2-13] ill-formed UTF-8.
    let p2 = connect(&mut s, "p2", true, V5);
    let mut props = vec![0x08];
    props.extend(field(&[0xFF]));
    s.send_bytes(p2, &raw_publish(0, b"t", None, &props, b"x"));
    assert_disconnected(&mut s, p2, ReasonCode::MalformedPacket);
}

#[test]
fn mqtt_3_3_2_19_content_type_must_be_utf8() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "#", Q0);
    // Content Type (0x03) with ill-formed UTF-8.
    let mut props = vec![0x03];
    props.extend(field(&[b'a', 0xC0]));
    s.send_bytes(p, &raw_publish(0, b"t", None, &props, b"x"));
    // [MQTT-3.3.2-19]
    assert_disconnected(&mut s, p, ReasonCode::MalformedPacket);
    assert!(recv(&mut s, sub).is_empty());
}

// ---- 3.3.4 PUBLISH actions --------------------------------------------------------

#[test]
fn mqtt_3_3_4_1_response_according_to_qos() {
    let mut s = sim();
    let (_sub, p) = pair(&mut s, "t", Q2);
    publish(&mut s, p, "t", b"0", Q0, false, 0);
    // [MQTT-3.3.4-1] QoS 0: no response, QoS 1: PUBACK, QoS 2: PUBREC.
    assert!(recv(&mut s, p).is_empty(), "QoS 0: no response");
    publish(&mut s, p, "t", b"1", Q1, false, 10);
    assert_eq!(
        recv(&mut s, p),
        [P::PubAck {
            pid: 10,
            code: ReasonCode::Success
        }]
    );
    publish(&mut s, p, "t", b"2", Q2, false, 11);
    assert_eq!(
        recv(&mut s, p),
        [P::PubRec {
            pid: 11,
            code: ReasonCode::Success
        }]
    );
}

// ---- 3.4 to 3.7 acknowledgement reason codes ---------------------------------------

#[test]
fn mqtt_3_4_2_1_and_3_5_2_1_puback_pubrec_reason_codes() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "nobody/listens", b"x", Q1, false, 1);
    publish(&mut s, p, "nobody/listens", b"x", Q2, false, 2);
    publish(&mut s, p, "forbidden/x", b"x", Q1, false, 3);
    publish(&mut s, p, "forbidden/x", b"x", Q2, false, 4);
    // [MQTT-3.4.2-1] [MQTT-3.5.2-1] codes from the PUBACK / PUBREC tables (the frames
    // decode), without Reason String or User Property [MQTT-3.4.2-2] [MQTT-3.4.2-3]
    // [MQTT-3.5.2-2] [MQTT-3.5.2-3].
    let frames = s.recv(p);
    assert_eq!(
        owned_all(&frames),
        [
            P::PubAck {
                pid: 1,
                code: ReasonCode::NoMatchingSubscribers
            },
            P::PubRec {
                pid: 2,
                code: ReasonCode::NoMatchingSubscribers
            },
            P::PubAck {
                pid: 3,
                code: ReasonCode::NotAuthorized
            },
            P::PubRec {
                pid: 4,
                code: ReasonCode::NotAuthorized
            },
        ]
    );
    assert!(frames.iter().all(|f| f.bytes.len() == 5), "no properties");
    // A 3.1.1 publisher gets plain acknowledgements.
    let p3 = connect(&mut s, "pub3", true, V3);
    publish(&mut s, p3, "forbidden/x", b"x", Q1, false, 5);
    assert_eq!(
        recv(&mut s, p3),
        [P::PubAck {
            pid: 5,
            code: ReasonCode::Success
        }]
    );
}

#[test]
fn mqtt_3_6_1_1_pubrel_reserved_flags() {
    let mut s = sim();
    let (_sub, p) = pair(&mut s, "t", Q2);
    publish(&mut s, p, "t", b"x", Q2, false, 1);
    recv(&mut s, p);
    // PUBREL with flags 0000 instead of 0010.
    s.send_bytes(p, &frame(0x60, &[0, 1]));
    // [MQTT-3.6.1-1] malformed: closed.
    assert_disconnected(&mut s, p, ReasonCode::MalformedPacket);
}

#[test]
fn mqtt_3_6_2_1_and_3_7_2_1_pubrel_pubcomp_reason_codes() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q2);
    // PUBREL for an unknown identifier: PUBCOMP 0x92.
    send_ack(&mut s, p, PacketType::PubRel, 42);
    // [MQTT-3.7.2-1] [MQTT-3.7.2-2] [MQTT-3.7.2-3]
    let frames = s.recv(p);
    assert_eq!(
        owned_all(&frames),
        [P::PubComp {
            pid: 42,
            code: ReasonCode::PacketIdentifierNotFound
        }]
    );
    assert_eq!(frames[0].bytes.len(), 5);
    // PUBREC for an identifier the server never used: PUBREL 0x92.
    send_ack(&mut s, sub, PacketType::PubRec, 43);
    let frames = s.recv(sub);
    // [MQTT-3.6.2-1] [MQTT-3.6.2-2] [MQTT-3.6.2-3]
    assert_eq!(
        owned_all(&frames),
        [P::PubRel {
            pid: 43,
            code: ReasonCode::PacketIdentifierNotFound
        }]
    );
    assert_eq!(frames[0].bytes.len(), 5);
    // The normal flow uses Success.
    publish(&mut s, p, "t", b"x", Q2, false, 7);
    let got = pubs(&recv(&mut s, sub));
    send_ack(&mut s, sub, PacketType::PubRec, got[0].pid.unwrap());
    assert_eq!(
        recv(&mut s, sub),
        [P::PubRel {
            pid: got[0].pid.unwrap(),
            code: ReasonCode::Success
        }]
    );
}

// ---- 4.3 QoS flows -------------------------------------------------------------------

#[test]
fn mqtt_4_3_1_1_qos0_sent_with_dup_0() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q0);
    for q in [Q0, Q1, Q2] {
        publish(&mut s, p, "t", b"x", q, false, 1);
        if q == Q2 {
            send_ack(&mut s, p, PacketType::PubRel, 1);
        }
    }
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 3);
    // [MQTT-4.3.1-1]
    assert!(got.iter().all(|x| x.qos == Q0 && !x.dup && x.pid.is_none()));
}

#[test]
fn mqtt_4_3_2_1_to_3_qos1_sender_unacknowledged_until_puback() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 600);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "t", b"a", Q1, false, 1);
    publish(&mut s, p, "t", b"b", Q1, false, 2);
    let got = pubs(&recv(&mut s, sub));
    // [MQTT-4.3.2-1] distinct identifiers; [MQTT-4.3.2-2] QoS 1, DUP 0.
    assert_ne!(got[0].pid, got[1].pid);
    assert!(got.iter().all(|x| x.qos == Q1 && !x.dup));
    send_ack(&mut s, sub, PacketType::PubAck, got[0].pid.unwrap());
    s.drop_connection(sub);
    let (sub2, _) = connect5(&mut s, "sub", false, 600);
    // [MQTT-4.3.2-3] only the unacknowledged one comes again.
    let again = pubs(&recv(&mut s, sub2));
    assert_eq!(again.len(), 1);
    assert_eq!(
        (&again[0].payload[..], again[0].pid, again[0].dup),
        (&b"b"[..], got[1].pid, true)
    );
}

#[test]
fn mqtt_4_3_2_5_after_puback_same_identifier_is_new() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q1);
    for payload in [&b"first"[..], b"second"] {
        s.send(
            p,
            &Packet::Publish(Publish {
                dup: true,
                qos: Q1,
                retain: false,
                topic: "t",
                packet_id: Some(pid(9)),
                properties: Properties::default(),
                payload,
            }),
        );
    }
    // [MQTT-4.3.2-5] both are new Application Messages, whatever the DUP flag.
    assert_eq!(payloads(&recv(&mut s, sub)), ["first", "second"]);
    assert_eq!(recv(&mut s, p).len(), 2);
}

#[test]
fn mqtt_4_3_3_1_to_6_qos2_sender_flow() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 600);
    subscribe(&mut s, sub, "t", Q2);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "t", b"a", Q2, false, 1);
    publish(&mut s, p, "t", b"b", Q2, false, 2);
    let got = pubs(&recv(&mut s, sub));
    // [MQTT-4.3.3-1] unused identifiers; [MQTT-4.3.3-2] QoS 2, DUP 0.
    assert_ne!(got[0].pid, got[1].pid);
    assert!(got.iter().all(|x| x.qos == Q2 && !x.dup));
    let (a, b) = (got[0].pid.unwrap(), got[1].pid.unwrap());
    send_ack(&mut s, sub, PacketType::PubRec, a);
    // [MQTT-4.3.3-4] PUBREL with the same identifier.
    assert_eq!(
        recv(&mut s, sub),
        [P::PubRel {
            pid: a,
            code: ReasonCode::Success
        }]
    );
    s.drop_connection(sub);
    let (sub2, _) = connect5(&mut s, "sub", false, 600);
    let again = recv(&mut s, sub2);
    // [MQTT-4.3.3-5] the PUBREL is still unacknowledged: resent; [MQTT-4.3.3-6] the
    // PUBLISH it released is not; [MQTT-4.3.3-3] the other PUBLISH (no PUBREC) is, with
    // DUP. Original order [MQTT-4.4.0-1].
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(
        again[0],
        P::PubRel {
            pid: a,
            code: ReasonCode::Success
        }
    );
    match &again[1] {
        P::Publish(x) => assert_eq!((x.pid, x.dup, &x.payload[..]), (Some(b), true, &b"b"[..])),
        p => panic!("{p:?}"),
    }
    send_ack(&mut s, sub2, PacketType::PubComp, a);
    send_ack(&mut s, sub2, PacketType::PubRec, b);
    assert_eq!(
        recv(&mut s, sub2),
        [P::PubRel {
            pid: b,
            code: ReasonCode::Success
        }]
    );
    send_ack(&mut s, sub2, PacketType::PubComp, b);
    s.drop_connection(sub2);
    let (sub3, _) = connect5(&mut s, "sub", false, 600);
    assert!(recv(&mut s, sub3).is_empty(), "everything was acknowledged");
}

#[test]
fn mqtt_4_3_3_7_sender_does_not_expire_a_sent_qos2_message() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 600);
    subscribe(&mut s, sub, "t", Q2);
    let p = connect(&mut s, "pub", true, V5);
    let props = Properties {
        message_expiry_interval: Some(1),
        ..Properties::default()
    };
    publish_props(&mut s, p, "t", b"x", Q2, false, 1, props);
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 1);
    s.drop_connection(sub);
    s.advance(5_000);
    let (sub2, _) = connect5(&mut s, "sub", false, 600);
    // [MQTT-4.3.3-7] expired, but already sent: the flow continues.
    let again = pubs(&recv(&mut s, sub2));
    assert_eq!(again.len(), 1);
    assert!(again[0].dup);
    send_ack(&mut s, sub2, PacketType::PubRec, again[0].pid.unwrap());
    assert!(matches!(
        &recv(&mut s, sub2)[..],
        [P::PubRel {
            code: ReasonCode::Success,
            ..
        }]
    ));
}

#[test]
fn mqtt_4_3_3_9_after_error_pubrec_same_identifier_is_new() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let sub = connect(&mut s, "sub", true, V5);
    subscribe(&mut s, sub, "#", Q2);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "forbidden/x", b"refused", Q2, false, 5);
    assert_eq!(
        recv(&mut s, p),
        [P::PubRec {
            pid: 5,
            code: ReasonCode::NotAuthorized
        }]
    );
    // [MQTT-4.3.3-9] the identifier is free again: a new message, delivered.
    publish(&mut s, p, "ok/x", b"accepted", Q2, false, 5);
    assert_eq!(
        recv(&mut s, p),
        [P::PubRec {
            pid: 5,
            code: ReasonCode::Success
        }]
    );
    assert_eq!(payloads(&recv(&mut s, sub)), ["accepted"]);
}

#[test]
fn mqtt_4_3_3_10_duplicate_before_pubrel_acknowledged_not_redelivered() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q2);
    publish(&mut s, p, "t", b"once", Q2, false, 3);
    for _ in 0..3 {
        s.send(
            p,
            &Packet::Publish(Publish {
                dup: true,
                qos: Q2,
                retain: false,
                topic: "t",
                packet_id: Some(pid(3)),
                properties: Properties::default(),
                payload: b"once",
            }),
        );
    }
    // [MQTT-4.3.3-10] each is acknowledged with PUBREC, none delivered again.
    assert_eq!(
        recv(&mut s, p),
        vec![
            P::PubRec {
                pid: 3,
                code: ReasonCode::Success
            };
            4
        ]
    );
    assert_eq!(payloads(&recv(&mut s, sub)), ["once"]);
    send_ack(&mut s, p, PacketType::PubRel, 3);
    // [MQTT-4.3.3-11]
    assert_eq!(
        recv(&mut s, p),
        [P::PubComp {
            pid: 3,
            code: ReasonCode::Success
        }]
    );
    // [MQTT-4.3.3-12] after PUBCOMP the identifier starts a new message.
    publish(&mut s, p, "t", b"again", Q2, false, 3);
    assert_eq!(payloads(&recv(&mut s, sub)), ["again"]);
}

#[test]
fn qos2_receiver_state_survives_reconnection() {
    let mut s = sim();
    let sub = connect(&mut s, "sub", true, V5);
    subscribe(&mut s, sub, "t", Q2);
    let (p, _) = connect5(&mut s, "pub", true, 600);
    publish(&mut s, p, "t", b"x", Q2, false, 8);
    recv(&mut s, p);
    s.drop_connection(p);
    let (p2, ack) = connect5(&mut s, "pub", false, 600);
    assert!(ack.session_present);
    // The publisher resends (DUP) before PUBREL: not delivered twice [MQTT-4.3.3-10].
    s.send(
        p2,
        &Packet::Publish(Publish {
            dup: true,
            qos: Q2,
            retain: false,
            topic: "t",
            packet_id: Some(pid(8)),
            properties: Properties::default(),
            payload: b"x",
        }),
    );
    send_ack(&mut s, p2, PacketType::PubRel, 8);
    assert_eq!(
        recv(&mut s, p2),
        [
            P::PubRec {
                pid: 8,
                code: ReasonCode::Success
            },
            P::PubComp {
                pid: 8,
                code: ReasonCode::Success
            }
        ]
    );
    assert_eq!(payloads(&recv(&mut s, sub)), ["x"]);
}

#[test]
fn mqtt_4_3_3_13_receiver_completes_qos2_even_if_expired() {
    let mut s = sim();
    let (sub, p) = pair(&mut s, "t", Q2);
    let props = Properties {
        message_expiry_interval: Some(1),
        ..Properties::default()
    };
    publish_props(&mut s, p, "t", b"x", Q2, false, 4, props);
    s.advance(10_000);
    send_ack(&mut s, p, PacketType::PubRel, 4);
    // [MQTT-4.3.3-13]
    assert_eq!(
        recv(&mut s, p),
        [
            P::PubRec {
                pid: 4,
                code: ReasonCode::Success
            },
            P::PubComp {
                pid: 4,
                code: ReasonCode::Success
            }
        ]
    );
    assert_eq!(payloads(&recv(&mut s, sub)), ["x"]);
}

// ---- 4.4 Message delivery retry ---------------------------------------------------------

#[test]
fn mqtt_4_4_0_1_resend_only_on_reconnection_with_session() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 600);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "t", b"x", Q1, false, 1);
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 1);
    // [MQTT-4.4.0-1] no resend while the connection stays up, however long.
    s.advance(3600 * 1000);
    s.send(sub, &Packet::PingReq);
    assert_eq!(recv(&mut s, sub), [P::PingResp]);
    s.drop_connection(sub);
    let (sub2, _) = connect5(&mut s, "sub", false, 600);
    let again = pubs(&recv(&mut s, sub2));
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].pid, again[0].dup), (got[0].pid, true));
    // A new session (Clean Start) does not get it.
    s.drop_connection(sub2);
    let (sub3, _) = connect5(&mut s, "sub", true, 600);
    assert!(recv(&mut s, sub3).is_empty());
}

#[test]
fn mqtt_4_4_0_2_error_ack_counts_as_acknowledged() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 600);
    subscribe(&mut s, sub, "t", Q2);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "t", b"q1", Q1, false, 1);
    publish(&mut s, p, "t", b"q2", Q2, false, 2);
    let got = pubs(&recv(&mut s, sub));
    for (x, kind) in got.iter().zip([PacketType::PubAck, PacketType::PubRec]) {
        let ack = Ack {
            packet_id: pid(x.pid.unwrap()),
            reason_code: ReasonCode::ImplementationSpecificError,
            properties: Properties::default(),
        };
        s.send(
            sub,
            &if kind == PacketType::PubAck {
                Packet::PubAck(ack)
            } else {
                Packet::PubRec(ack)
            },
        );
    }
    // No PUBREL after an error PUBREC.
    assert!(recv(&mut s, sub).is_empty());
    s.drop_connection(sub);
    let (sub2, _) = connect5(&mut s, "sub", false, 600);
    // [MQTT-4.4.0-2] not retransmitted.
    assert!(recv(&mut s, sub2).is_empty());
}

// ---- 4.5 and 4.6 -------------------------------------------------------------------------

#[test]
fn mqtt_4_5_0_1_message_added_to_every_matching_session() {
    let mut s = sim();
    let (off, _) = connect5(&mut s, "offline", true, 600);
    subscribe(&mut s, off, "m/#", Q1);
    s.drop_connection(off);
    let on = connect(&mut s, "online", true, V5);
    subscribe(&mut s, on, "m/+", Q1);
    let none = connect(&mut s, "none", true, V5);
    subscribe(&mut s, none, "other", Q1);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "m/x", b"x", Q1, false, 1);
    // [MQTT-4.5.0-1]
    assert_eq!(payloads(&recv(&mut s, on)), ["x"]);
    assert!(recv(&mut s, none).is_empty());
    assert_eq!(s.brokers[0].session_queue_len("offline"), Some(1));
}

#[test]
fn mqtt_4_6_0_5_and_6_ordered_topics() {
    let mut s = sim();
    let mut c = conn("sub", V5);
    c.properties.receive_maximum = Some(3);
    c.properties.session_expiry_interval = Some(600);
    let (sub, _) = connect_ok(&mut s, &c);
    subscribe(&mut s, sub, "o/#", Q2);
    let p1 = connect(&mut s, "p1", true, V5);
    let p2 = connect(&mut s, "p2", true, V5);
    let mut expect: std::collections::HashMap<(String, u8), Vec<String>> = Default::default();
    for i in 0..40u16 {
        let q = [Q0, Q1, Q2][usize::from(i % 3)];
        let (p, who) = if i % 2 == 0 { (p1, "p1") } else { (p2, "p2") };
        let t = if i % 5 == 0 { "o/a" } else { "o/b" };
        let payload = format!("{who}-{t}-{i}");
        publish(&mut s, p, t, payload.as_bytes(), q, false, i + 1);
        if q == Q2 {
            send_ack(&mut s, p, PacketType::PubRel, i + 1);
        }
        expect
            .entry((format!("{who}{t}"), q as u8))
            .or_default()
            .push(payload);
        if i == 20 {
            // A reconnection in the middle, with messages in flight.
            recv(&mut s, sub);
            s.drop_connection(sub);
        }
    }
    c.clean_start = false;
    let (sub2, _) = connect_ok(&mut s, &c);
    let got = pubs(&recv_acking(&mut s, sub2));
    // [MQTT-4.6.0-5] [MQTT-4.6.0-6] for each publisher, topic and QoS, the order in which
    // they were received (re-deliveries of the previous connection first).
    let mut seen: std::collections::HashMap<(String, u8), Vec<String>> = Default::default();
    for x in got.iter() {
        let payload = String::from_utf8(x.payload.clone()).unwrap();
        let mut parts = payload.splitn(3, '-');
        let key = format!("{}{}", parts.next().unwrap(), parts.next().unwrap());
        let v = seen.entry((key, x.qos as u8)).or_default();
        if !v.contains(&payload) {
            v.push(payload);
        }
    }
    for (k, v) in &seen {
        let e = &expect[k];
        let positions: Vec<usize> = v
            .iter()
            .map(|p| e.iter().position(|x| x == p).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{k:?}: {v:?}");
    }
    assert!(!seen.is_empty());
}

#[test]
fn qos_downgraded_to_the_granted_qos() {
    let mut s = sim();
    let p = connect(&mut s, "pub", true, V5);
    let mut subs = Vec::new();
    for (i, g) in [Q0, Q1, Q2].into_iter().enumerate() {
        let c = connect(&mut s, &format!("s{i}"), true, V5);
        subscribe(&mut s, c, "d", g);
        subs.push((c, g));
    }
    for q in [Q0, Q1, Q2] {
        publish(&mut s, p, "d", b"x", q, false, 1);
        if q == Q2 {
            send_ack(&mut s, p, PacketType::PubRel, 1);
        }
        for (c, g) in &subs {
            let got = pubs(&recv_acking(&mut s, *c));
            // [MQTT-3.8.4-8] minimum of published and granted QoS.
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].qos, q.min(*g));
        }
    }
}

// ---- topics reserved for the server, whatever the authorizer ----------------------

#[test]
fn publishing_into_sys_or_share_is_refused_with_the_default_policy() {
    // `sim()` uses `Policy::default()`, which allows everything: the rule is the core's.
    let mut s = sim();
    let watcher = connect(&mut s, "watcher", true, V5);
    subscribe(&mut s, watcher, "$SYS/#", Q1);
    subscribe(&mut s, watcher, "$other/#", Q1);
    let p = connect(&mut s, "pub", true, V5);
    publish(&mut s, p, "$SYS/broker/uptime", b"x", Q1, false, 1);
    publish(&mut s, p, "$share/g/t", b"x", Q1, false, 2);
    publish(
        &mut s,
        p,
        "$SYS/broker/connection/br1/state",
        b"1",
        Q1,
        true,
        3,
    );
    publish(&mut s, p, "$other/t", b"y", Q1, false, 4);
    let acks = recv(&mut s, p);
    let codes: Vec<_> = acks
        .iter()
        .map(|a| match a {
            P::PubAck { code, .. } => *code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
            ReasonCode::Success,
            ReasonCode::Success
        ]
    );
    let got = payloads(&recv_acking(&mut s, watcher));
    assert_eq!(
        got,
        ["1", "y"],
        "only the bridge state and $other reach subscribers"
    );
}

#[test]
fn max_sessions_refuses_a_new_session_but_not_a_resumed_one() {
    let cfg = Config {
        max_sessions: 2,
        ..Config::default()
    };
    let mut s = sim_cfg(cfg);
    let (a, _) = connect5(&mut s, "a", true, 3600);
    let _b = connect(&mut s, "b", true, V5);
    // A third session: 0x97 in v5, return code 3 in 3.1.1, Session Present 0.
    let (_, refused) = try_connect(&mut s, 0, &conn("c", V5));
    assert!(
        matches!(refused, P::ConnAck(ref c) if c.code == ReasonCode::QuotaExceeded && !c.session_present),
        "{refused:?}"
    );
    let (_, refused3) = try_connect(&mut s, 0, &connect_packet("c", true, V3));
    assert!(
        matches!(refused3, P::ConnAck(ref c) if c.code == ReasonCode::ServerUnavailable),
        "{refused3:?}"
    );
    // "a" resumes its own session (taking over its connection): not a new session.
    disconnect(&mut s, a, ReasonCode::Success);
    let (_, again) = connect5(&mut s, "a", false, 3600);
    assert!(again.session_present);
}
