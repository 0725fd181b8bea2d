//! MQTT 5.0: SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (3.8 to 3.11), subscription options
//! (3.3.1 Retain Handling and Retain As Published, 3.8.3 No Local), overlapping
//! subscriptions and Subscription Identifiers (3.3.4), topic names and filters (4.7),
//! shared subscriptions (4.8.2).

use crate::common::*;
use broker_core::policy::DropReason;
use broker_core::sim::{Client, Sim};
use broker_core::{Config, SharedStrategy};
use mqtt_proto::*;

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::qos(qos)
}

fn raw_subscribe(first: u8, pid: u16, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend(varint(props.len()));
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(first, &body)
}

fn entry(filter: &[u8], options: u8) -> Vec<u8> {
    let mut v = field(filter);
    v.push(options);
    v
}

// ---- 3.8 SUBSCRIBE -----------------------------------------------------------------

#[test]
fn mqtt_3_8_1_1_subscribe_reserved_flags() {
    for first in [0x80u8, 0x83, 0x8A] {
        let mut s = sim();
        let c = connect(&mut s, "c", true, V5);
        s.send_bytes(c, &raw_subscribe(first, 1, &[], &entry(b"a", 0)));
        // [MQTT-3.8.1-1] malformed: DISCONNECT 0x81 and close.
        assert_disconnected(&mut s, c, ReasonCode::MalformedPacket);
        assert_eq!(s.brokers[0].subscription_filter_count(), 0);
    }
}

#[test]
fn mqtt_3_8_3_1_topic_filter_must_be_utf8() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    s.send_bytes(c, &raw_subscribe(0x82, 1, &[], &entry(&[b'a', 0x80], 0)));
    // [MQTT-3.8.3-1]
    assert_disconnected(&mut s, c, ReasonCode::MalformedPacket);
}

#[test]
fn mqtt_3_8_3_2_at_least_one_topic_filter() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    s.send_bytes(c, &raw_subscribe(0x82, 1, &[], &[]));
    // [MQTT-3.8.3-2] a Protocol Error.
    let got = recv(&mut s, c);
    assert!(
        matches!(disconnect_code(&got), Some(c) if c.is_error()),
        "{got:?}"
    );
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_8_3_3_no_local() {
    let mut s = sim();
    let me = connect(&mut s, "me", true, V5);
    subscribe_opts(
        &mut s,
        me,
        "chat/#",
        SubscriptionOptions {
            no_local: true,
            ..opts(Q1)
        },
        None,
    );
    let other = connect(&mut s, "other", true, V5);
    subscribe(&mut s, other, "chat/#", Q1);
    publish(&mut s, me, "chat/room", b"from me", Q1, false, 1);
    publish(&mut s, other, "chat/room", b"from other", Q1, false, 1);
    // [MQTT-3.8.3-3] v5: not forwarded to the publishing ClientID.
    assert_eq!(payloads(&recv(&mut s, me)), ["from other"]);
    assert_eq!(payloads(&recv(&mut s, other)), ["from me", "from other"]);
    // Still true across a reconnection of the same session.
    let (p, _) = connect5(&mut s, "nl", true, 600);
    subscribe_opts(
        &mut s,
        p,
        "nl",
        SubscriptionOptions {
            no_local: true,
            ..opts(Q1)
        },
        None,
    );
    s.drop_connection(p);
    let (p2, _) = connect5(&mut s, "nl", false, 600);
    publish(&mut s, p2, "nl", b"self", Q1, false, 2);
    assert!(pubs(&recv(&mut s, p2)).is_empty());
}

#[test]
fn mqtt_3_8_3_4_no_local_on_shared_subscription_is_a_protocol_error() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    let subs = [Subscription {
        filter: "$share/g/t",
        options: SubscriptionOptions {
            no_local: true,
            ..opts(Q1)
        },
    }];
    s.send(
        c,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&subs),
        }),
    );
    // [MQTT-3.8.3-4]
    assert_disconnected(&mut s, c, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_3_8_3_5_reserved_option_bits_are_malformed() {
    for options in [0x40u8, 0x80, 0x03, 0x30] {
        let mut s = sim();
        let c = connect(&mut s, "c", true, V5);
        s.send_bytes(c, &raw_subscribe(0x82, 1, &[], &entry(b"a", options)));
        // [MQTT-3.8.3-5] reserved bits (QoS 3 and Retain Handling 3 are errors too).
        let got = recv(&mut s, c);
        assert!(
            matches!(disconnect_code(&got), Some(c) if c.is_error()),
            "{options:#x}: {got:?}"
        );
        assert!(s.is_closed(c));
    }
}

#[test]
fn mqtt_3_8_4_1_2_5_6_7_one_suback_one_code_per_filter_in_order() {
    let (mut s, _) = sim_policy(
        Config {
            maximum_qos: Q1,
            ..Config::default()
        },
        1,
    );
    let c = connect(&mut s, "c", true, V5);
    let codes = subscribe_many(
        &mut s,
        c,
        77,
        &[
            ("a/b", opts(Q0)),
            ("secret/x", opts(Q1)),
            ("a/#", opts(Q2)),
            ("a/#/b", opts(Q1)),
            ("$share/g/a", opts(Q1)),
            ("", opts(Q1)),
            ("c/+", opts(Q1)),
        ],
        None,
    );
    // [MQTT-3.8.4-1] [MQTT-3.8.4-2] one SUBACK with the identifier (checked by the
    // helper); [MQTT-3.8.4-5] [MQTT-3.8.4-6] a code per filter; [MQTT-3.9.3-1] in order;
    // [MQTT-3.8.4-7] the granted QoS or a failure; [MQTT-3.9.3-2] SUBACK codes.
    assert_eq!(
        codes,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::GrantedQoS1,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::GrantedQoS1,
        ]
    );
    assert!(recv(&mut s, c).is_empty(), "exactly one SUBACK");
    // The successful ones work as if subscribed one by one.
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "c/d", b"1", Q1, false, 1);
    publish(&mut s, p, "a/b", b"2", Q1, false, 2);
    publish(&mut s, p, "secret/x", b"3", Q1, false, 3);
    let got = pubs(&recv(&mut s, c));
    assert_eq!(
        got.iter()
            .map(|x| (x.payload.clone(), x.qos))
            .collect::<Vec<_>>(),
        [(b"1".to_vec(), Q1), (b"2".to_vec(), Q1)]
    );
}

#[test]
fn mqtt_3_8_4_3_identical_filter_replaces_subscription() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    assert_eq!(subscribe(&mut s, c, "r", Q0), [ReasonCode::Success]);
    assert_eq!(subscribe(&mut s, c, "r", Q2), [ReasonCode::GrantedQoS2]);
    assert_eq!(s.brokers[0].subscription_filter_count(), 1);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "r", b"x", Q2, false, 1);
    let got = pubs(&recv(&mut s, c));
    // [MQTT-3.8.4-3] one subscription, with the new QoS.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].qos, Q2);
}

#[test]
fn mqtt_3_8_4_4_resubscribe_resends_retained_without_losing_messages() {
    let mut s = sim();
    let mut cp = conn("c", V5);
    cp.properties.receive_maximum = Some(1);
    let (c, _) = connect_ok(&mut s, &cp);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "r", b"retained", Q1, true, 1);
    subscribe(&mut s, c, "r", Q1);
    let first = pubs(&recv(&mut s, c));
    assert_eq!(first.len(), 1);
    assert!(first[0].retain);
    // A message in flight (unacknowledged) and one waiting.
    publish(&mut s, p, "r", b"live1", Q1, false, 2);
    send_ack(&mut s, c, PacketType::PubAck, first[0].pid.unwrap());
    publish(&mut s, p, "r", b"live2", Q1, false, 3);
    // Replace the subscription (Retain Handling 0).
    subscribe(&mut s, c, "r", Q1);
    let got = recv_acking(&mut s, c);
    let ps = pubs(&got);
    // [MQTT-3.8.4-4] the retained message again, and no live message lost.
    assert!(
        ps.iter().any(|x| x.retain && x.payload == b"retained"),
        "{ps:?}"
    );
    for m in ["live1", "live2"] {
        assert!(
            ps.iter().any(|x| x.payload == m.as_bytes()),
            "{m} lost: {ps:?}"
        );
    }
}

#[test]
fn mqtt_3_9_2_1_and_2_suback_unsuback_without_reason_string_or_user_property() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let mut cp = conn("c", V5);
    cp.properties.maximum_packet_size = Some(32);
    let (c, _) = connect_ok(&mut s, &cp);
    s.send(
        c,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&[Subscription {
                filter: "secret/a",
                options: opts(Q0),
            }]),
        }),
    );
    s.send(
        c,
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(2),
            properties: Properties::default(),
            filters: TopicFilters::List(&["x"]),
        }),
    );
    let got = recv(&mut s, c);
    assert_eq!(got.len(), 2);
    for p in got {
        match p {
            // [MQTT-3.9.2-1] [MQTT-3.9.2-2] [MQTT-3.11.2-1] [MQTT-3.11.2-2]
            P::SubAck { props, .. } | P::UnsubAck { props, .. } => assert!(props.no_problem_info()),
            p => panic!("{p:?}"),
        }
    }
}

#[test]
fn mqtt_3_9_3_2_suback_failure_codes() {
    let mut s = sim_cfg(Config {
        wildcard_subscriptions: false,
        shared_subscriptions: false,
        max_subscriptions_per_session: 2,
        ..Config::default()
    });
    let c = connect(&mut s, "c", true, V5);
    let codes = subscribe_many(
        &mut s,
        c,
        1,
        &[
            ("a/+", opts(Q0)),
            ("#", opts(Q0)),
            ("$share/g/a", opts(Q0)),
            ("ok/1", opts(Q0)),
            ("ok/2", opts(Q1)),
            ("ok/3", opts(Q2)),
            ("ok/1", opts(Q2)),
        ],
        None,
    );
    // [MQTT-3.9.3-2] refusals carry their own SUBACK reason codes.
    assert_eq!(
        codes,
        [
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::QuotaExceeded,
            ReasonCode::GrantedQoS2,
        ]
    );
}

#[test]
fn refused_subscription_not_authorized_0x87() {
    let (mut s, _) = sim_policy(Config::default(), 1);
    let c = connect(&mut s, "c", true, V5);
    assert_eq!(
        subscribe(&mut s, c, "secret/#", Q1),
        [ReasonCode::NotAuthorized]
    );
    assert_eq!(
        subscribe(&mut s, c, "$share/g/secret/x", Q1),
        [ReasonCode::NotAuthorized]
    );
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "secret/x", b"x", Q1, false, 1);
    assert!(pubs(&recv(&mut s, c)).is_empty());
    assert_eq!(s.brokers[0].subscription_filter_count(), 0);
}

#[test]
fn delivery_refused_by_authorization_is_dropped_and_reported() {
    let (mut s, log) = sim_policy(Config::default(), 1);
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "#", Q1);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "hidden/x", b"h", Q1, false, 1);
    publish(&mut s, p, "shown/x", b"s", Q1, false, 2);
    assert_eq!(payloads(&recv(&mut s, c)), ["s"]);
    assert!(log
        .drops()
        .contains(&("c".into(), "h".into(), DropReason::NotAuthorized)));
}

// ---- 3.10 / 3.11 UNSUBSCRIBE ---------------------------------------------------------

#[test]
fn mqtt_3_10_1_1_unsubscribe_reserved_flags() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "a", Q0);
    let mut body = 1u16.to_be_bytes().to_vec();
    body.push(0);
    body.extend(field(b"a"));
    s.send_bytes(c, &frame(0xA0, &body));
    // [MQTT-3.10.1-1]
    assert_disconnected(&mut s, c, ReasonCode::MalformedPacket);
}

#[test]
fn mqtt_3_10_3_1_and_2_unsubscribe_filters_utf8_and_present() {
    for payload in [field(&[0xFE]), Vec::new()] {
        let mut s = sim();
        let c = connect(&mut s, "c", true, V5);
        let mut body = 1u16.to_be_bytes().to_vec();
        body.push(0);
        body.extend(&payload);
        s.send_bytes(c, &frame(0xA2, &body));
        // [MQTT-3.10.3-1] [MQTT-3.10.3-2]
        let got = recv(&mut s, c);
        assert!(
            matches!(disconnect_code(&got), Some(c) if c.is_error()),
            "{got:?}"
        );
        assert!(s.is_closed(c));
    }
}

#[test]
fn mqtt_3_10_4_1_filters_compared_character_by_character() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "a/+", Q0);
    subscribe(&mut s, c, "a/b", Q0);
    let u = unsubscribe(&mut s, c, 1, &["a/#", "a/B", "a/b/"]);
    assert_eq!(
        u,
        P::UnsubAck {
            pid: 1,
            codes: vec![ReasonCode::NoSubscriptionExisted; 3],
            props: Props::default()
        }
    );
    // [MQTT-3.10.4-1] only the exact filter is removed.
    let u = unsubscribe(&mut s, c, 2, &["a/+"]);
    assert!(matches!(u, P::UnsubAck { ref codes, .. } if codes == &[ReasonCode::Success]));
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "a/b", b"b", Q0, false, 0);
    publish(&mut s, p, "a/c", b"c", Q0, false, 0);
    assert_eq!(payloads(&recv(&mut s, c)), ["b"]);
}

#[test]
fn mqtt_3_10_4_2_and_3_unsubscribe_stops_new_completes_started() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "u", Q2);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "u", b"q1", Q1, false, 1);
    publish(&mut s, p, "u", b"q2", Q2, false, 2);
    let started = pubs(&recv(&mut s, c));
    assert_eq!(started.len(), 2);
    unsubscribe(&mut s, c, 3, &["u"]);
    publish(&mut s, p, "u", b"after", Q1, false, 4);
    // [MQTT-3.10.4-2] nothing new.
    assert!(pubs(&recv(&mut s, c)).is_empty());
    // [MQTT-3.10.4-3] the started QoS 1 and 2 deliveries complete.
    send_ack(&mut s, c, PacketType::PubAck, started[0].pid.unwrap());
    send_ack(&mut s, c, PacketType::PubRec, started[1].pid.unwrap());
    assert_eq!(
        recv(&mut s, c),
        [P::PubRel {
            pid: started[1].pid.unwrap(),
            code: ReasonCode::Success
        }]
    );
    send_ack(&mut s, c, PacketType::PubComp, started[1].pid.unwrap());
    assert!(recv(&mut s, c).is_empty());
}

#[test]
fn mqtt_3_10_4_4_5_6_and_3_11_3_1_2_unsuback() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "x", Q0);
    subscribe(&mut s, c, "z/#", Q0);
    // [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK with the identifier, even when nothing
    // was deleted; [MQTT-3.10.4-6] several filters, one UNSUBACK; [MQTT-3.11.3-1] codes
    // in order; [MQTT-3.11.3-2] 0x00 and 0x11.
    let u = unsubscribe(&mut s, c, 9, &["y", "z/#", "x", "x"]);
    assert_eq!(
        u,
        P::UnsubAck {
            pid: 9,
            codes: vec![
                ReasonCode::NoSubscriptionExisted,
                ReasonCode::Success,
                ReasonCode::Success,
                ReasonCode::NoSubscriptionExisted
            ],
            props: Props::default()
        }
    );
    assert!(recv(&mut s, c).is_empty());
    assert_eq!(s.brokers[0].subscription_filter_count(), 0);
}

// ---- 3.3.1 Retain Handling and Retain As Published ---------------------------------------

fn retained_setup() -> (Sim, Client) {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "r/a", b"A", Q1, true, 1);
    publish(&mut s, p, "r/b", b"B", Q1, true, 2);
    (s, p)
}

fn rh(h: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        retain_handling: h,
        ..opts(Q1)
    }
}

#[test]
fn mqtt_3_3_1_9_retain_handling_0_sends_retained_at_every_subscribe() {
    let (mut s, _p) = retained_setup();
    let c = connect(&mut s, "c", true, V5);
    for _ in 0..2 {
        subscribe_opts(&mut s, c, "r/#", rh(RetainHandling::SendAtSubscribe), None);
        let got = pubs(&recv_acking(&mut s, c));
        // [MQTT-3.3.1-9]; sent because of the subscription: RETAIN 1.
        let mut p: Vec<_> = got.iter().map(|x| (x.payload.clone(), x.retain)).collect();
        p.sort();
        assert_eq!(p, [(b"A".to_vec(), true), (b"B".to_vec(), true)]);
    }
}

#[test]
fn mqtt_3_3_1_10_retain_handling_1_only_for_new_subscription() {
    let (mut s, _p) = retained_setup();
    let c = connect(&mut s, "c", true, V5);
    subscribe_opts(&mut s, c, "r/#", rh(RetainHandling::SendIfNew), None);
    assert_eq!(pubs(&recv_acking(&mut s, c)).len(), 2);
    subscribe_opts(&mut s, c, "r/#", rh(RetainHandling::SendIfNew), None);
    // [MQTT-3.3.1-10] the subscription existed: nothing.
    assert!(recv(&mut s, c).is_empty());
    // Another filter is a new subscription.
    subscribe_opts(&mut s, c, "r/a", rh(RetainHandling::SendIfNew), None);
    assert_eq!(payloads(&recv(&mut s, c)), ["A"]);
}

#[test]
fn mqtt_3_3_1_11_retain_handling_2_never_sends_retained() {
    let (mut s, p) = retained_setup();
    let c = connect(&mut s, "c", true, V5);
    subscribe_opts(&mut s, c, "r/#", rh(RetainHandling::DoNotSend), None);
    // [MQTT-3.3.1-11]
    assert!(recv(&mut s, c).is_empty());
    publish(&mut s, p, "r/a", b"live", Q1, true, 3);
    assert_eq!(payloads(&recv(&mut s, c)), ["live"]);
}

#[test]
fn mqtt_3_3_1_12_and_13_retain_as_published() {
    let mut s = sim();
    let plain = connect(&mut s, "plain", true, V5);
    subscribe(&mut s, plain, "t", Q1);
    let rap = connect(&mut s, "rap", true, V5);
    subscribe_opts(
        &mut s,
        rap,
        "t",
        SubscriptionOptions {
            retain_as_published: true,
            ..opts(Q1)
        },
        None,
    );
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", b"retained", Q1, true, 1);
    publish(&mut s, p, "t", b"plain", Q1, false, 2);
    let mut flags = |c| {
        pubs(&recv(&mut s, c))
            .iter()
            .map(|x| x.retain)
            .collect::<Vec<_>>()
    };
    // [MQTT-3.3.1-12] RETAIN 0 whatever was published.
    assert_eq!(flags(plain), [false, false]);
    // [MQTT-3.3.1-13] RETAIN as published.
    assert_eq!(flags(rap), [true, false]);
}

// ---- 3.3.4 Overlapping subscriptions and Subscription Identifiers -----------------------

#[test]
fn mqtt_3_3_4_2_3_4_overlapping_subscriptions_one_copy_max_qos_all_ids() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    subscribe_opts(&mut s, c, "a/+", opts(Q0), Some(1));
    subscribe_opts(&mut s, c, "a/#", opts(Q2), Some(22));
    subscribe_opts(&mut s, c, "a/b", opts(Q1), None);
    subscribe_opts(&mut s, c, "+/b", opts(Q1), Some(333));
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "a/b", b"x", Q2, false, 1);
    send_ack(&mut s, p, PacketType::PubRel, 1);
    let got = pubs(&recv(&mut s, c));
    // One copy at the maximum QoS of the matching subscriptions [MQTT-3.3.4-2] with the
    // identifiers of all those that have one, in any order [MQTT-3.3.4-3] [MQTT-3.3.4-4].
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].qos, Q2);
    let mut ids = got[0].props.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [1, 22, 333]);
    // Fewer matches, fewer identifiers.
    publish(&mut s, p, "a/c", b"y", Q1, false, 2);
    let got = pubs(&recv(&mut s, c));
    let mut ids = got[0].props.subscription_identifiers.clone();
    ids.sort();
    assert_eq!((got[0].qos, ids), (Q1, vec![1, 22]));
}

#[test]
fn mqtt_3_3_4_5_separate_sessions_each_get_their_identifier() {
    let mut s = sim();
    let c1 = connect(&mut s, "c1", true, V5);
    subscribe_opts(&mut s, c1, "t/#", opts(Q1), Some(7));
    let c2 = connect(&mut s, "c2", true, V5);
    subscribe_opts(&mut s, c2, "t/+", opts(Q1), Some(8));
    let c3 = connect(&mut s, "c3", true, V5);
    subscribe_opts(&mut s, c3, "t/x", opts(Q1), None);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t/x", b"x", Q1, false, 1);
    // [MQTT-3.3.4-5] each PUBLISH carries the identifier of its subscription.
    assert_eq!(
        pubs(&recv(&mut s, c1))[0].props.subscription_identifiers,
        [7]
    );
    assert_eq!(
        pubs(&recv(&mut s, c2))[0].props.subscription_identifiers,
        [8]
    );
    assert!(pubs(&recv(&mut s, c3))[0]
        .props
        .subscription_identifiers
        .is_empty());
}

#[test]
fn subscription_identifier_on_retained_and_replaced_subscriptions() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "r", b"kept", Q1, true, 1);
    let c = connect(&mut s, "c", true, V5);
    subscribe_opts(&mut s, c, "r", opts(Q1), Some(5));
    assert_eq!(
        pubs(&recv_acking(&mut s, c))[0]
            .props
            .subscription_identifiers,
        [5]
    );
    // Replacing the subscription replaces its identifier; without one, none is sent.
    subscribe_opts(&mut s, c, "r", rh(RetainHandling::DoNotSend), Some(6));
    publish(&mut s, p, "r", b"new", Q1, false, 2);
    assert_eq!(
        pubs(&recv_acking(&mut s, c))[0]
            .props
            .subscription_identifiers,
        [6]
    );
    subscribe_opts(&mut s, c, "r", rh(RetainHandling::DoNotSend), None);
    publish(&mut s, p, "r", b"newer", Q1, false, 3);
    assert!(pubs(&recv_acking(&mut s, c))[0]
        .props
        .subscription_identifiers
        .is_empty());
}

#[test]
fn subscription_identifiers_unsupported_is_a_protocol_error() {
    let mut s = sim_cfg(Config {
        subscription_identifiers: false,
        ..Config::default()
    });
    let c = connect(&mut s, "c", true, V5);
    let subs = [Subscription {
        filter: "a",
        options: opts(Q0),
    }];
    s.send(
        c,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties {
                subscription_identifiers: SubscriptionIds::List(&[3]),
                ..Properties::default()
            },
            subscriptions: Subscriptions::List(&subs),
        }),
    );
    // 3.8.2.1.2 / 3.2.2.3.12: 0xA1.
    assert_disconnected(&mut s, c, ReasonCode::SubscriptionIdentifiersNotSupported);
}

// ---- 4.7 Topic names and filters ---------------------------------------------------------

fn matching(filters: &[&str], topics: &[&str]) -> Vec<Vec<String>> {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    let mut subs = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let c = connect(&mut s, &format!("c{i}"), true, V5);
        assert_eq!(subscribe(&mut s, c, f, Q0), [ReasonCode::Success], "{f}");
        subs.push(c);
    }
    for t in topics {
        publish(&mut s, p, t, t.as_bytes(), Q0, false, 0);
    }
    subs.into_iter()
        .map(|c| payloads(&recv(&mut s, c)))
        .collect()
}

#[test]
fn mqtt_4_7_1_1_and_2_wildcards() {
    let topics = [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "/finance",
        "finance",
        "a/b/c",
    ];
    let got = matching(
        &[
            "sport/#",
            "#",
            "sport/tennis/#",
            "sport/+",
            "+/+",
            "/+",
            "+",
            "+/tennis/#",
            "a/+/c",
            "sport/+/player1",
        ],
        &topics,
    );
    let want: [&[&str]; 10] = [
        // '#' matches the parent level and any number of children [MQTT-4.7.1-1].
        &[
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ],
        &topics,
        &[
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ],
        // '+' matches exactly one level [MQTT-4.7.1-2], an empty one included.
        &["sport/", "sport/tennis"],
        &["sport/", "sport/tennis", "/finance"],
        &["/finance"],
        &["sport", "finance"],
        &[
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
        ],
        &["a/b/c"],
        &["sport/tennis/player1"],
    ];
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, &w.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    }
}

#[test]
fn mqtt_4_7_1_1_and_2_misplaced_wildcards_are_invalid_filters() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    for f in [
        "sport/tennis#",
        "sport/#/ranking",
        "#/a",
        "sport+",
        "sport/+tennis",
        "a/++",
        "a#",
    ] {
        // [MQTT-4.7.1-1] [MQTT-4.7.1-2]: 0x8F for that filter only.
        assert_eq!(
            subscribe(&mut s, c, f, Q0),
            [ReasonCode::TopicFilterInvalid],
            "{f}"
        );
    }
    assert!(!s.is_closed(c));
    assert_eq!(s.brokers[0].subscription_filter_count(), 0);
}

#[test]
fn mqtt_4_7_2_1_wildcards_do_not_match_dollar_topics() {
    let got = matching(
        &[
            "#",
            "+/monitor/Clients",
            "$dev/#",
            "$dev/monitor/+",
            "+/+/+",
            "$other/x",
        ],
        &["$dev/monitor/Clients", "$other", "x/monitor/Clients"],
    );
    // [MQTT-4.7.2-1]
    assert_eq!(got[0], ["x/monitor/Clients"]);
    assert_eq!(got[1], ["x/monitor/Clients"]);
    assert_eq!(got[2], ["$dev/monitor/Clients"]);
    assert_eq!(got[3], ["$dev/monitor/Clients"]);
    assert_eq!(got[4], ["x/monitor/Clients"]);
    assert!(got[5].is_empty());
    // Retained messages follow the same rule.
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "$dev/x", b"sys", Q0, true, 0);
    publish(&mut s, p, "x", b"x", Q0, true, 0);
    let c = connect(&mut s, "c", true, V5);
    subscribe(&mut s, c, "#", Q0);
    assert_eq!(payloads(&recv(&mut s, c)), ["x"]);
    subscribe(&mut s, c, "+/x", Q0);
    assert!(recv(&mut s, c).is_empty());
    subscribe(&mut s, c, "$dev/+", Q0);
    assert_eq!(payloads(&recv(&mut s, c)), ["sys"]);
}

#[test]
fn mqtt_4_7_3_1_topics_and_filters_at_least_one_character() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    assert_eq!(
        subscribe(&mut s, c, "", Q0),
        [ReasonCode::TopicFilterInvalid]
    );
    // An empty topic name without a Topic Alias [MQTT-4.7.3-1]: Protocol Error.
    s.send_bytes(c, &frame(0x30, &[0, 0, 0, b'x']));
    let got = recv(&mut s, c);
    assert!(
        matches!(disconnect_code(&got), Some(c) if c.is_error()),
        "{got:?}"
    );
}

#[test]
fn mqtt_4_7_3_2_no_null_character() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    s.send_bytes(c, &raw_subscribe(0x82, 1, &[], &entry(b"a\0", 0)));
    // [MQTT-4.7.3-2] [MQTT-1.5.4-2]
    assert_disconnected(&mut s, c, ReasonCode::MalformedPacket);
}

#[test]
fn mqtt_4_7_3_3_longest_topic_works() {
    let mut s = sim();
    let long = "x".repeat(65_535);
    let c = connect(&mut s, "c", true, V5);
    assert_eq!(subscribe(&mut s, c, &long, Q1), [ReasonCode::GrantedQoS1]);
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, &long, b"long", Q1, true, 1);
    let got = pubs(&recv(&mut s, c));
    // [MQTT-4.7.3-3] 65,535 bytes is the limit, and it is handled.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic.len(), 65_535);
    assert_eq!(s.brokers[0].retained_count(), 1);
}

#[test]
fn mqtt_4_7_3_4_no_normalization() {
    // "é" precomposed and decomposed, a full-width slash, case.
    let got = matching(
        &["caf\u{e9}", "cafe\u{301}", "a\u{ff0f}b", "A/b", "a/+"],
        &["caf\u{e9}", "cafe\u{301}", "a\u{ff0f}b", "a/b", "A/b"],
    );
    // [MQTT-4.7.3-4]
    assert_eq!(got[0], ["caf\u{e9}"]);
    assert_eq!(got[1], ["cafe\u{301}"]);
    assert_eq!(got[2], ["a\u{ff0f}b"]);
    assert_eq!(got[3], ["A/b"]);
    assert_eq!(got[4], ["a/b"]);
}

// ---- 4.8.2 Shared subscriptions ------------------------------------------------------------

fn shared_opts(q: QoS) -> SubscriptionOptions {
    opts(q)
}

#[test]
fn mqtt_4_8_2_1_and_2_shared_filter_syntax() {
    let mut s = sim();
    let c = connect(&mut s, "c", true, V5);
    // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
    for f in [
        "$share//t",
        "$share/g",
        "$share/g/",
        "$share/g+/t",
        "$share/#/t",
        "$share/g/a/#/b",
    ] {
        assert_eq!(
            subscribe(&mut s, c, f, Q0),
            [ReasonCode::TopicFilterInvalid],
            "{f}"
        );
    }
    assert_eq!(
        subscribe(&mut s, c, "$share/g/+/x/#", Q0),
        [ReasonCode::Success]
    );
}

#[test]
fn shared_subscription_round_robin_one_member_each() {
    let mut s = sim();
    let members: Vec<Client> = (0..3)
        .map(|i| {
            let c = connect(&mut s, &format!("m{i}"), true, V5);
            subscribe_opts(&mut s, c, "$share/g/job/#", shared_opts(Q1), None);
            c
        })
        .collect();
    let normal = connect(&mut s, "normal", true, V5);
    subscribe(&mut s, normal, "job/#", Q1);
    let p = connect(&mut s, "p", true, V5);
    for i in 0..9u16 {
        publish(
            &mut s,
            p,
            "job/x",
            format!("{i}").as_bytes(),
            Q1,
            false,
            i + 1,
        );
    }
    let counts: Vec<usize> = members
        .iter()
        .map(|c| pubs(&recv_acking(&mut s, *c)).len())
        .collect();
    // Each message to exactly one member, in turn.
    assert_eq!(counts, [3, 3, 3]);
    // A non-shared subscription to the same filter gets them all.
    assert_eq!(pubs(&recv(&mut s, normal)).len(), 9);
}

#[test]
fn shared_subscription_hash_by_client_id() {
    let mut s = sim_cfg(Config {
        shared_strategy: SharedStrategy::HashClientId,
        ..Config::default()
    });
    let members: Vec<Client> = (0..3)
        .map(|i| {
            let c = connect(&mut s, &format!("m{i}"), true, V5);
            subscribe_opts(&mut s, c, "$share/g/h", shared_opts(Q0), None);
            c
        })
        .collect();
    let pubs_: Vec<Client> = (0..6)
        .map(|i| connect(&mut s, &format!("pub{i}"), true, V5))
        .collect();
    for round in 0..4 {
        for (i, p) in pubs_.iter().enumerate() {
            publish(
                &mut s,
                *p,
                "h",
                format!("{i}-{round}").as_bytes(),
                Q0,
                false,
                0,
            );
        }
    }
    let mut owner = std::collections::HashMap::new();
    let mut total = 0;
    for (m, c) in members.iter().enumerate() {
        for x in payloads(&recv(&mut s, *c)) {
            total += 1;
            let publisher = x.split('-').next().unwrap().to_string();
            // One publisher, one member.
            assert_eq!(*owner.entry(publisher).or_insert(m), m, "{x}");
        }
    }
    assert_eq!(total, 24);
}

#[test]
fn mqtt_4_8_2_3_shared_delivery_respects_granted_qos() {
    let mut s = sim();
    let m0 = connect(&mut s, "m0", true, V5);
    subscribe_opts(&mut s, m0, "$share/g/q", shared_opts(Q0), None);
    let m1 = connect(&mut s, "m1", true, V5);
    subscribe_opts(&mut s, m1, "$share/g/q", shared_opts(Q1), None);
    let p = connect(&mut s, "p", true, V5);
    for i in 0..4u16 {
        publish(&mut s, p, "q", b"x", Q2, false, i + 1);
        send_ack(&mut s, p, PacketType::PubRel, i + 1);
    }
    // [MQTT-4.8.2-3]
    let a = pubs(&recv(&mut s, m0));
    let b = pubs(&recv(&mut s, m1));
    assert_eq!(a.len() + b.len(), 4);
    assert!(a.iter().all(|x| x.qos == Q0) && b.iter().all(|x| x.qos == Q1));
}

#[test]
fn shared_subscriptions_get_no_retained_messages() {
    let mut s = sim();
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "r", b"retained", Q1, true, 1);
    let c = connect(&mut s, "c", true, V5);
    subscribe_opts(&mut s, c, "$share/g/r", shared_opts(Q1), None);
    assert!(recv(&mut s, c).is_empty());
}

fn group_of_two(s: &mut Sim) -> (Client, Client, Client) {
    let (a, _) = connect5(s, "a", true, 600);
    subscribe_opts(s, a, "$share/g/w", shared_opts(Q2), None);
    let (b, _) = connect5(s, "b", true, 600);
    subscribe_opts(s, b, "$share/g/w", shared_opts(Q2), None);
    let p = connect(s, "p", true, V5);
    (a, b, p)
}

#[test]
fn mqtt_4_8_2_4_qos2_completed_with_the_same_member_on_reconnection() {
    let mut s = sim();
    let (a, b, p) = group_of_two(&mut s);
    publish(&mut s, p, "w", b"exactly-once", Q2, false, 1);
    send_ack(&mut s, p, PacketType::PubRel, 1);
    let got = pubs(&recv(&mut s, a));
    assert_eq!(got.len(), 1, "round robin starts with the first member");
    s.drop_connection(a);
    assert!(recv(&mut s, b).is_empty());
    let (a2, _) = connect5(&mut s, "a", false, 600);
    // [MQTT-4.8.2-4] the delivery completes with the member that started it.
    let again = pubs(&recv(&mut s, a2));
    assert_eq!(again.len(), 1);
    assert!(again[0].dup);
    assert!(recv(&mut s, b).is_empty());
}

#[test]
fn mqtt_4_8_2_5_started_qos2_not_sent_to_another_member_when_session_ends() {
    let (mut s, log) = sim_logged(Config::default(), 1);
    let (a, b, p) = group_of_two(&mut s);
    publish(&mut s, p, "w", b"exactly-once", Q2, false, 1);
    send_ack(&mut s, p, PacketType::PubRel, 1);
    assert_eq!(pubs(&recv(&mut s, a)).len(), 1);
    // The member's session ends (Clean Start on reconnection).
    s.drop_connection(a);
    let (_a2, _) = connect5(&mut s, "a", true, 0);
    // [MQTT-4.8.2-5]
    assert!(recv(&mut s, b).is_empty(), "QoS 2 delivery started with a");
    assert!(log
        .drops()
        .iter()
        .any(|(c, m, w)| c == "a" && m == "exactly-once" && *w == DropReason::SessionEnded));
}

#[test]
fn shared_qos1_and_unsent_messages_go_to_another_member_when_session_ends() {
    let mut s = sim();
    let mut cp = conn("a", V5);
    cp.properties.receive_maximum = Some(1);
    cp.properties.session_expiry_interval = Some(5);
    let (a, _) = connect_ok(&mut s, &cp);
    subscribe_opts(&mut s, a, "$share/g/w", shared_opts(Q2), None);
    let b = connect(&mut s, "b", true, V5);
    subscribe_opts(&mut s, b, "$share/g/w", shared_opts(Q2), None);
    let p = connect(&mut s, "p", true, V5);
    // To a: "q1-a" (sent, unacknowledged), "q2-unsent" (waits for a's Receive Maximum).
    publish(&mut s, p, "w", b"q1-a", Q1, false, 1);
    publish(&mut s, p, "w", b"q1-b", Q1, false, 2);
    publish(&mut s, p, "w", b"q2-unsent", Q2, false, 3);
    send_ack(&mut s, p, PacketType::PubRel, 3);
    assert_eq!(payloads(&recv(&mut s, a)), ["q1-a"]);
    assert_eq!(payloads(&recv_acking(&mut s, b)), ["q1-b"]);
    s.drop_connection(a);
    assert!(recv(&mut s, b).is_empty(), "a's session lives on");
    s.advance(5_000);
    // The session ended: a QoS 1 message and one never sent go to the other member
    // (4.8.2, "SHOULD send the Application Message to another Client").
    let mut got = payloads(&recv_acking(&mut s, b));
    got.sort();
    assert_eq!(got, ["q1-a", "q2-unsent"]);
}

#[test]
fn mqtt_4_8_2_6_error_ack_discards_shared_message() {
    let mut s = sim();
    let (a, b, p) = group_of_two(&mut s);
    publish(&mut s, p, "w", b"refused", Q1, false, 1);
    let got = pubs(&recv(&mut s, a));
    s.send(
        a,
        &Packet::PubAck(Ack {
            packet_id: pid(got[0].pid.unwrap()),
            reason_code: ReasonCode::UnspecifiedError,
            properties: Properties::default(),
        }),
    );
    s.drop_connection(a);
    let (_a2, _) = connect5(&mut s, "a", true, 0);
    // [MQTT-4.8.2-6] discarded: not sent to any other subscriber.
    assert!(recv(&mut s, b).is_empty());
}

#[test]
fn unsubscribing_from_a_shared_subscription() {
    let mut s = sim();
    let (a, b, p) = group_of_two(&mut s);
    unsubscribe(&mut s, a, 5, &["$share/g/w"]);
    for i in 0..4u16 {
        publish(&mut s, p, "w", b"x", Q1, false, i + 1);
    }
    assert!(pubs(&recv(&mut s, a)).is_empty());
    assert_eq!(pubs(&recv(&mut s, b)).len(), 4);
    assert_eq!(recv(&mut s, p).len(), 4);
    unsubscribe(&mut s, b, 6, &["$share/g/w"]);
    publish(&mut s, p, "w", b"x", Q1, false, 9);
    assert!(pubs(&recv(&mut s, b)).is_empty());
    assert_eq!(
        recv(&mut s, p),
        [P::PubAck {
            pid: 9,
            code: ReasonCode::NoMatchingSubscribers
        }]
    );
}

#[test]
fn shared_group_prefers_connected_members() {
    let mut s = sim();
    let (a, b, p) = group_of_two(&mut s);
    s.drop_connection(a);
    for i in 0..4u16 {
        publish(&mut s, p, "w", b"x", Q1, false, i + 1);
    }
    assert_eq!(pubs(&recv(&mut s, b)).len(), 4);
    let _ = a;
}
