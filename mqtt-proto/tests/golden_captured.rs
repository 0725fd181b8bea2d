//! Golden vectors from real peers: traffic between mosquitto 2.0.11, mosquitto_pub /
//! mosquitto_sub, paho-mqtt 2.2.0 and (for AUTH) hand-built client packets, recorded on
//! loopback by `tests/data/capture.py` (see each file's `#` header for tool, version and
//! command line).
//!
//! Every packet is checked both ways: the peer's bytes decode to the packet the command line
//! asked for, and encoding that packet reproduces the peer's bytes. The expected packets are
//! written from the command lines (topics, payloads, QoS, properties given to the tools) and
//! from the broker's documented defaults (mosquitto: `max_topic_alias` 10,
//! `max_inflight_messages` 20), never from the decoder's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Dir::{C2S, S2C};
use common::Match::{Exact, PropertyOrder};
use common::*;
use mqtt_proto::*;
use std::collections::BTreeSet;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn none() -> Properties<'static> {
    Properties::default()
}

fn connect(
    protocol: ProtocolVersion,
    clean_start: bool,
    keep_alive: u16,
    client_id: &'static str,
) -> Connect<'static> {
    Connect {
        protocol,
        clean_start,
        bridge: false,
        keep_alive,
        properties: none(),
        client_id,
        will: None,
        username: None,
        password: None,
    }
}

fn connack<'a>(session_present: bool, reason_code: ReasonCode, p: Properties<'a>) -> Packet<'a> {
    Packet::ConnAck(ConnAck {
        session_present,
        reason_code,
        properties: p,
    })
}

/// What mosquitto 2.0.11 puts in every MQTT 5 CONNACK with its default configuration:
/// Topic Alias Maximum = max_topic_alias (10), Receive Maximum = max_inflight_messages (20).
fn mosquitto_connack_props() -> Properties<'static> {
    Properties {
        topic_alias_maximum: Some(10),
        receive_maximum: Some(20),
        ..none()
    }
}

fn publish<'a>(
    topic: &'a str,
    qos: QoS,
    packet_id: Option<u16>,
    retain: bool,
    payload: &'a [u8],
    properties: Properties<'a>,
) -> Packet<'a> {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic,
        packet_id: packet_id.map(pid),
        properties,
        payload,
    })
}

fn ack(n: u16) -> Ack<'static> {
    Ack::new(pid(n))
}

fn ack_rc(n: u16, rc: ReasonCode) -> Ack<'static> {
    Ack {
        reason_code: rc,
        ..ack(n)
    }
}

fn disconnect() -> Packet<'static> {
    Packet::Disconnect(Disconnect::new(ReasonCode::Success))
}

// ---------------------------------------------------------------------------------------
// mosquitto_pub

/// `mosquitto_pub -V <v> -i petrel-pub-<v> -t petrel/test -m hello -q 0`
#[test]
fn mosquitto_pub_qos0_all_versions() {
    for (name, v, id) in [
        ("pub_v31_qos0", V31, "petrel-pub-v31"),
        ("pub_v311_qos0", V311, "petrel-pub-v311"),
        ("pub_v5_qos0", V5, "petrel-pub-v5"),
    ] {
        let cap = Capture::load(name);
        assert_eq!(cap.version(), v);
        let mut c = connect(v, true, 60, id);
        if v == V5 {
            // mosquitto_pub always announces its Receive Maximum (20, = its -M default).
            c.properties.receive_maximum = Some(20);
        }
        let ca = if v == V5 {
            mosquitto_connack_props()
        } else {
            none()
        };
        let m = if v == V5 { PropertyOrder } else { Exact };
        cap.expect(&[
            (C2S, Packet::Connect(c), Exact),
            (S2C, connack(false, ReasonCode::Success, ca), m),
            (
                C2S,
                publish(
                    "petrel/test",
                    QoS::AtMostOnce,
                    None,
                    false,
                    b"hello",
                    none(),
                ),
                Exact,
            ),
            (C2S, disconnect(), Exact),
        ]);
    }
}

/// `mosquitto_pub -V <v> -i petrel-pub-<v> -t petrel/test -m "hello qos1" -q 1`
#[test]
fn mosquitto_pub_qos1_all_versions() {
    for (name, v, id) in [
        ("pub_v31_qos1", V31, "petrel-pub-v31"),
        ("pub_v311_qos1", V311, "petrel-pub-v311"),
        ("pub_v5_qos1", V5, "petrel-pub-v5"),
    ] {
        let cap = Capture::load(name);
        let mut c = connect(v, true, 60, id);
        if v == V5 {
            c.properties.receive_maximum = Some(20);
        }
        let ca = if v == V5 {
            mosquitto_connack_props()
        } else {
            none()
        };
        let m = if v == V5 { PropertyOrder } else { Exact };
        cap.expect(&[
            (C2S, Packet::Connect(c), Exact),
            (S2C, connack(false, ReasonCode::Success, ca), m),
            (
                C2S,
                publish(
                    "petrel/test",
                    QoS::AtLeastOnce,
                    Some(1),
                    false,
                    b"hello qos1",
                    none(),
                ),
                Exact,
            ),
            // MQTT 5: no subscriber, yet mosquitto 2.0.11 answers Success in the short form
            // (3.4.2.1: reason code and properties omitted).
            (S2C, Packet::PubAck(ack(1)), Exact),
            (C2S, disconnect(), Exact),
        ]);
    }
}

/// `mosquitto_pub -V <v> -i petrel-pub-<v> -t petrel/retained -m "hello qos2" -q 2 -r`
#[test]
fn mosquitto_pub_qos2_retain_all_versions() {
    for (name, v, id) in [
        ("pub_v31_qos2_retain", V31, "petrel-pub-v31"),
        ("pub_v311_qos2_retain", V311, "petrel-pub-v311"),
        ("pub_v5_qos2_retain", V5, "petrel-pub-v5"),
    ] {
        let cap = Capture::load(name);
        let mut c = connect(v, true, 60, id);
        if v == V5 {
            c.properties.receive_maximum = Some(20);
        }
        let ca = if v == V5 {
            mosquitto_connack_props()
        } else {
            none()
        };
        let m = if v == V5 { PropertyOrder } else { Exact };
        cap.expect(&[
            (C2S, Packet::Connect(c), Exact),
            (S2C, connack(false, ReasonCode::Success, ca), m),
            (
                C2S,
                publish(
                    "petrel/retained",
                    QoS::ExactlyOnce,
                    Some(1),
                    true,
                    b"hello qos2",
                    none(),
                ),
                Exact,
            ),
            (S2C, Packet::PubRec(ack(1)), Exact),
            (C2S, Packet::PubRel(ack(1)), Exact),
            (S2C, Packet::PubComp(ack(1)), Exact),
            (C2S, disconnect(), Exact),
        ]);
    }
}

/// `mosquitto_pub -V <v> -i petrel-will-<v> -u petrel-user -P secret -c -k 30
///  --will-topic petrel/will --will-payload offline --will-qos 1 --will-retain
///  -t petrel/empty -n -q 1`
#[test]
fn mosquitto_pub_will_and_login_all_versions() {
    for (name, v, id) in [
        ("pub_v31_will_login", V31, "petrel-will-v31"),
        ("pub_v311_will_login", V311, "petrel-will-v311"),
        ("pub_v5_will_login", V5, "petrel-will-v5"),
    ] {
        let cap = Capture::load(name);
        let mut c = Connect {
            will: Some(Will {
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: none(),
                topic: "petrel/will",
                payload: b"offline",
            }),
            username: Some("petrel-user"),
            password: Some(b"secret"),
            // -c: a persistent session.
            ..connect(v, false, 30, id)
        };
        if v == V5 {
            // -c in MQTT 5 means a session that never expires (3.1.2.11.2: 0xFFFFFFFF).
            c.properties.session_expiry_interval = Some(u32::MAX);
            c.properties.receive_maximum = Some(20);
        }
        let ca = if v == V5 {
            mosquitto_connack_props()
        } else {
            none()
        };
        let m = if v == V5 { PropertyOrder } else { Exact };
        cap.expect(&[
            (C2S, Packet::Connect(c), Exact),
            (S2C, connack(false, ReasonCode::Success, ca), m),
            // -n: a zero-length payload.
            (
                C2S,
                publish(
                    "petrel/empty",
                    QoS::AtLeastOnce,
                    Some(1),
                    false,
                    b"",
                    none(),
                ),
                Exact,
            ),
            (S2C, Packet::PubAck(ack(1)), Exact),
            (C2S, disconnect(), Exact),
        ]);
    }
}

/// mosquitto_pub with every CONNECT, will and PUBLISH property it can set (see the file).
#[test]
fn mosquitto_pub_v5_properties() {
    let cap = Capture::load("pub_v5_props");
    let connect_up = [("client", "petrel")];
    let will_up = [("why", "gone")];
    let pub_up = [("unit", "celsius"), ("unit", "kelvin")];
    let c = Connect {
        properties: Properties {
            session_expiry_interval: Some(60),
            request_problem_information: Some(false),
            request_response_information: Some(true),
            receive_maximum: Some(20),
            topic_alias_maximum: Some(5),
            user_properties: UserProperties::List(&connect_up),
            maximum_packet_size: Some(10000),
            ..none()
        },
        will: Some(Will {
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(120),
                content_type: Some("text/plain"),
                will_delay_interval: Some(5),
                user_properties: UserProperties::List(&will_up),
                ..none()
            },
            topic: "petrel/will",
            payload: b"offline",
        }),
        ..connect(V5, true, 60, "petrel-props")
    };
    let p = publish(
        "petrel/props",
        QoS::AtLeastOnce,
        Some(1),
        false,
        br#"{"t":21.5}"#,
        Properties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(30),
            content_type: Some("application/json"),
            response_topic: Some("petrel/reply"),
            correlation_data: Some(b"req-42"),
            topic_alias: Some(1),
            user_properties: UserProperties::List(&pub_up),
            ..none()
        },
    );
    cap.expect(&[
        (C2S, Packet::Connect(c), Exact),
        (
            S2C,
            connack(false, ReasonCode::Success, mosquitto_connack_props()),
            PropertyOrder,
        ),
        (C2S, p, Exact),
        (S2C, Packet::PubAck(ack(1)), Exact),
        (C2S, disconnect(), Exact),
    ]);
}

/// Publishing outside the ACL (`pattern readwrite petrel/#`): mosquitto answers PUBACK and
/// PUBREC with 0x87 Not authorized.
#[test]
fn mosquitto_v5_puback_pubrec_not_authorized() {
    let cap = Capture::load("pub_v5_denied");
    let mut c = connect(V5, true, 60, "petrel-denied");
    c.properties.receive_maximum = Some(20);
    cap.expect(&[
        (C2S, Packet::Connect(c), Exact),
        (
            S2C,
            connack(false, ReasonCode::Success, mosquitto_connack_props()),
            PropertyOrder,
        ),
        (
            C2S,
            publish("denied/q1", QoS::AtLeastOnce, Some(1), false, b"x", none()),
            Exact,
        ),
        (
            S2C,
            Packet::PubAck(ack_rc(1, ReasonCode::NotAuthorized)),
            Exact,
        ),
        (C2S, disconnect(), Exact),
        (C2S, Packet::Connect(c), Exact),
        (
            S2C,
            connack(false, ReasonCode::Success, mosquitto_connack_props()),
            PropertyOrder,
        ),
        (
            C2S,
            publish("denied/q2", QoS::ExactlyOnce, Some(1), false, b"x", none()),
            Exact,
        ),
        (
            S2C,
            Packet::PubRec(ack_rc(1, ReasonCode::NotAuthorized)),
            Exact,
        ),
        (C2S, disconnect(), Exact),
    ]);
}

// ---------------------------------------------------------------------------------------
// mosquitto_sub

/// A retained QoS 1 message published beforehand, then
/// `mosquitto_sub -V <v> -i petrel-sub-<v> -q 1 -t petrel/retained/a -C 1`.
#[test]
fn mosquitto_sub_retained_all_versions() {
    for (name, v, id) in [
        ("sub_v31_retained", V31, "petrel-sub-v31"),
        ("sub_v311_retained", V311, "petrel-sub-v311"),
        ("sub_v5_retained", V5, "petrel-sub-v5"),
    ] {
        let cap = Capture::load(name);
        let mut c = connect(v, true, 60, id);
        if v == V5 {
            // mosquitto_sub announces Receive Maximum 1 with -C 1.
            c.properties.receive_maximum = Some(1);
        }
        let subs = [Subscription {
            filter: "petrel/retained/a",
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        }];
        let codes = [ReasonCode::GrantedQoS1];
        let ca = if v == V5 {
            mosquitto_connack_props()
        } else {
            none()
        };
        let m = if v == V5 { PropertyOrder } else { Exact };
        cap.expect(&[
            (C2S, Packet::Connect(c), Exact),
            (S2C, connack(false, ReasonCode::Success, ca), m),
            (
                C2S,
                Packet::Subscribe(Subscribe {
                    packet_id: pid(1),
                    properties: none(),
                    subscriptions: Subscriptions::List(&subs),
                }),
                Exact,
            ),
            (
                S2C,
                Packet::SubAck(SubAck {
                    packet_id: pid(1),
                    properties: none(),
                    reason_codes: ReasonCodes::List(&codes),
                }),
                Exact,
            ),
            // The retained message: RETAIN set [MQTT-3.3.1-8], the broker's own packet id.
            (
                S2C,
                publish(
                    "petrel/retained/a",
                    QoS::AtLeastOnce,
                    Some(1),
                    true,
                    b"retained payload",
                    none(),
                ),
                Exact,
            ),
            (C2S, Packet::PubAck(ack(1)), Exact),
            (C2S, disconnect(), Exact),
        ]);
    }
}

/// `mosquitto_sub -V <v> -i petrel-sub2-<v> -c -q 2 -t petrel/a -t petrel/+/b -t petrel/#
///  -U petrel/old -U petrel/older/# -E`
#[test]
fn mosquitto_sub_filters_and_unsubscribe_all_versions() {
    for (name, v, id) in [
        ("sub_v31_filters", V31, "petrel-sub2-v31"),
        ("sub_v311_filters", V311, "petrel-sub2-v311"),
        ("sub_v5_filters", V5, "petrel-sub2-v5"),
    ] {
        let cap = Capture::load(name);
        let mut c = connect(v, false, 60, id);
        if v == V5 {
            c.properties.session_expiry_interval = Some(u32::MAX);
            c.properties.receive_maximum = Some(20);
        }
        let q2 = SubscriptionOptions::qos(QoS::ExactlyOnce);
        let subs = [
            Subscription {
                filter: "petrel/a",
                options: q2,
            },
            Subscription {
                filter: "petrel/+/b",
                options: q2,
            },
            Subscription {
                filter: "petrel/#",
                options: q2,
            },
        ];
        let granted = [ReasonCode::GrantedQoS2; 3];
        let unsub = |n: u16, f: &'static [&'static str]| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(n),
                properties: none(),
                filters: TopicFilters::List(f),
            })
        };
        // MQTT 5: 0x11 No subscription existed; 3.1.1 UNSUBACK has no payload.
        let no_sub = [ReasonCode::NoSubscriptionExisted];
        let unsuback = |n: u16| {
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(n),
                properties: none(),
                reason_codes: ReasonCodes::List(if v == V5 { &no_sub } else { &[] }),
            })
        };
        let ca = if v == V5 {
            mosquitto_connack_props()
        } else {
            none()
        };
        let m = if v == V5 { PropertyOrder } else { Exact };
        cap.expect(&[
            (C2S, Packet::Connect(c), Exact),
            (S2C, connack(false, ReasonCode::Success, ca), m),
            (
                C2S,
                Packet::Subscribe(Subscribe {
                    packet_id: pid(1),
                    properties: none(),
                    subscriptions: Subscriptions::List(&subs),
                }),
                Exact,
            ),
            (
                S2C,
                Packet::SubAck(SubAck {
                    packet_id: pid(1),
                    properties: none(),
                    reason_codes: ReasonCodes::List(&granted),
                }),
                Exact,
            ),
            (C2S, unsub(2, &["petrel/old"]), Exact),
            (C2S, unsub(3, &["petrel/older/#"]), Exact),
            (C2S, disconnect(), Exact),
            (S2C, unsuback(2), Exact),
            (S2C, unsuback(3), Exact),
        ]);
    }
}

/// mosquitto_sub with a Subscription Identifier and user property; the broker forwards a
/// retained message with the Subscription Identifier, the publisher's user property and the
/// remaining Message Expiry Interval.
#[test]
fn mosquitto_sub_v5_subscription_identifier() {
    let cap = Capture::load("sub_v5_props");
    let mut c = connect(V5, true, 60, "petrel-sub5");
    c.properties.session_expiry_interval = Some(0);
    c.properties.receive_maximum = Some(1);
    let sub_up = [("sub", "prop")];
    let subs = [Subscription {
        filter: "petrel/v5/retained",
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    }];
    let ids = [42];
    let fwd_up = [("origin", "direct")];
    cap.expect(&[
        (C2S, Packet::Connect(c), Exact),
        (
            S2C,
            connack(false, ReasonCode::Success, mosquitto_connack_props()),
            PropertyOrder,
        ),
        (
            C2S,
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties {
                    subscription_identifiers: SubscriptionIds::List(&ids),
                    user_properties: UserProperties::List(&sub_up),
                    ..none()
                },
                subscriptions: Subscriptions::List(&subs),
            }),
            Exact,
        ),
        (
            S2C,
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: none(),
                reason_codes: ReasonCodes::List(&[ReasonCode::GrantedQoS1]),
            }),
            Exact,
        ),
        (
            S2C,
            publish(
                "petrel/v5/retained",
                QoS::AtLeastOnce,
                Some(1),
                true,
                b"r",
                Properties {
                    subscription_identifiers: SubscriptionIds::List(&ids),
                    user_properties: UserProperties::List(&fwd_up),
                    message_expiry_interval: Some(3600),
                    ..none()
                },
            ),
            // mosquitto writes Subscription Identifier, User Property, Message Expiry.
            PropertyOrder,
        ),
        (C2S, Packet::PubAck(ack(1)), Exact),
        (C2S, disconnect(), Exact),
    ]);
}

// ---------------------------------------------------------------------------------------
// paho-mqtt: one session per version with every packet type but AUTH

fn paho_session_expected(v: ProtocolVersion) -> Vec<(common::Dir, Packet<'static>, common::Match)> {
    let v5 = v == V5;
    static CONNECT_UP: [(&str, &str); 2] = [("lib", "paho"), ("lib", "python")];
    static WILL_UP: [(&str, &str); 1] = [("k", "v")];
    static PUB_UP: [(&str, &str); 2] = [("a", "1"), ("b", "2")];
    static SUB_UP: [(&str, &str); 1] = [("s", "1")];
    static UNSUB_UP: [(&str, &str); 1] = [("u", "x")];
    static DISC_UP: [(&str, &str); 1] = [("bye", "now")];
    static SUB_ID: [u32; 1] = [42];
    static SUBS_V5: [Subscription<'static>; 3] = [
        Subscription {
            filter: "petrel/paho/in1",
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: true,
                retain_handling: RetainHandling::SendAtSubscribe,
            },
        },
        Subscription {
            filter: "petrel/paho/in2",
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: false,
                retain_handling: RetainHandling::SendIfNew,
            },
        },
        Subscription {
            filter: "petrel/paho/+/x",
            options: SubscriptionOptions {
                qos: QoS::AtMostOnce,
                no_local: false,
                retain_as_published: false,
                retain_handling: RetainHandling::DoNotSend,
            },
        },
    ];
    static SUBS_V3: [Subscription<'static>; 3] = [
        Subscription {
            filter: "petrel/paho/in1",
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
        },
        Subscription {
            filter: "petrel/paho/in2",
            options: SubscriptionOptions::qos(QoS::ExactlyOnce),
        },
        Subscription {
            filter: "petrel/paho/+/x",
            options: SubscriptionOptions::qos(QoS::AtMostOnce),
        },
    ];
    static GRANTED: [ReasonCode; 3] = [
        ReasonCode::GrantedQoS1,
        ReasonCode::GrantedQoS2,
        ReasonCode::Success,
    ];
    static UNSUB: [&str; 3] = ["petrel/paho/in1", "petrel/paho/in2", "petrel/paho/nope"];
    static UNSUBACK_V5: [ReasonCode; 3] = [
        ReasonCode::Success,
        ReasonCode::Success,
        ReasonCode::NoSubscriptionExisted,
    ];

    let p5 = |p: Properties<'static>| if v5 { p } else { none() };
    let connect = Packet::Connect(Connect {
        protocol: v,
        clean_start: true,
        bridge: false,
        keep_alive: 2,
        properties: p5(Properties {
            session_expiry_interval: Some(0),
            receive_maximum: Some(100),
            topic_alias_maximum: Some(0),
            user_properties: UserProperties::List(&CONNECT_UP),
            ..none()
        }),
        client_id: "petrel-paho",
        will: Some(Will {
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: p5(Properties {
                payload_format_indicator: Some(true),
                message_expiry_interval: Some(300),
                content_type: Some("text/plain"),
                response_topic: Some("petrel/will/reply"),
                correlation_data: Some(&[0x00, 0x01, 0xfe, 0xff]),
                will_delay_interval: Some(10),
                user_properties: UserProperties::List(&WILL_UP),
                ..none()
            }),
            topic: "petrel/will",
            payload: b"paho gone",
        }),
        username: Some("petrel-user"),
        password: Some(b"secret"),
    });
    let pub_props = p5(Properties {
        payload_format_indicator: Some(false),
        message_expiry_interval: Some(60),
        content_type: Some("application/octet-stream"),
        response_topic: Some("petrel/paho/reply"),
        correlation_data: Some(b"corr"),
        topic_alias: Some(3),
        user_properties: UserProperties::List(&PUB_UP),
        ..none()
    });
    let from_sub = p5(Properties {
        subscription_identifiers: SubscriptionIds::List(&SUB_ID),
        ..none()
    });
    // paho numbers every publish, QoS 0 included: SUBSCRIBE 1, PUBLISH 2, 3, 4 (v5: 5),
    // UNSUBSCRIBE next. The broker numbers its own publishes 1, 2.
    let unsub_id = if v5 { 6 } else { 5 };
    let mut e = vec![
        (C2S, connect, Exact),
        (
            S2C,
            connack(false, ReasonCode::Success, p5(mosquitto_connack_props())),
            if v5 { PropertyOrder } else { Exact },
        ),
        (
            C2S,
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: p5(Properties {
                    subscription_identifiers: SubscriptionIds::List(&SUB_ID),
                    user_properties: UserProperties::List(&SUB_UP),
                    ..none()
                }),
                subscriptions: Subscriptions::List(if v5 { &SUBS_V5 } else { &SUBS_V3 }),
            }),
            Exact,
        ),
        (
            S2C,
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: none(),
                reason_codes: ReasonCodes::List(&GRANTED),
            }),
            Exact,
        ),
        (
            C2S,
            publish(
                "petrel/paho/out",
                QoS::AtMostOnce,
                None,
                false,
                b"paho qos0",
                pub_props,
            ),
            Exact,
        ),
        (
            C2S,
            publish(
                "petrel/paho/out",
                QoS::AtLeastOnce,
                Some(3),
                false,
                b"paho qos1",
                pub_props,
            ),
            Exact,
        ),
        (S2C, Packet::PubAck(ack(3)), Exact),
        (
            C2S,
            publish(
                "petrel/paho/out",
                QoS::ExactlyOnce,
                Some(4),
                false,
                b"paho qos2",
                pub_props,
            ),
            Exact,
        ),
        (S2C, Packet::PubRec(ack(4)), Exact),
        (C2S, Packet::PubRel(ack(4)), Exact),
        (S2C, Packet::PubComp(ack(4)), Exact),
    ];
    if v5 {
        // 3.3.2.3.4: an empty Topic Name with the Topic Alias set by the previous PUBLISH.
        e.push((
            C2S,
            publish(
                "",
                QoS::AtLeastOnce,
                Some(5),
                false,
                b"via alias",
                Properties {
                    topic_alias: Some(3),
                    ..none()
                },
            ),
            Exact,
        ));
        e.push((S2C, Packet::PubAck(ack(5)), Exact));
    }
    e.extend([
        (
            S2C,
            publish(
                "petrel/paho/in1",
                QoS::AtLeastOnce,
                Some(1),
                false,
                b"to paho q1",
                from_sub,
            ),
            Exact,
        ),
        (C2S, Packet::PubAck(ack(1)), Exact),
        (
            S2C,
            publish(
                "petrel/paho/in2",
                QoS::ExactlyOnce,
                Some(2),
                false,
                b"to paho q2",
                from_sub,
            ),
            Exact,
        ),
        (C2S, Packet::PubRec(ack(2)), Exact),
        (S2C, Packet::PubRel(ack(2)), Exact),
        (C2S, Packet::PubComp(ack(2)), Exact),
        (C2S, Packet::PingReq, Exact),
        (S2C, Packet::PingResp, Exact),
        (
            C2S,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(unsub_id),
                properties: p5(Properties {
                    user_properties: UserProperties::List(&UNSUB_UP),
                    ..none()
                }),
                filters: TopicFilters::List(&UNSUB),
            }),
            Exact,
        ),
        (
            S2C,
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(unsub_id),
                properties: none(),
                reason_codes: ReasonCodes::List(if v5 { &UNSUBACK_V5 } else { &[] }),
            }),
            Exact,
        ),
    ]);
    if v5 {
        e.push((
            C2S,
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::DisconnectWithWillMessage,
                properties: Properties {
                    session_expiry_interval: Some(0),
                    reason_string: Some("done"),
                    user_properties: UserProperties::List(&DISC_UP),
                    ..none()
                },
            }),
            Exact,
        ));
    } else {
        e.push((C2S, disconnect(), Exact));
    }
    e
}

#[test]
fn paho_v31_session() {
    Capture::load("paho_v31_session").expect(&paho_session_expected(V31));
}

#[test]
fn paho_v311_session() {
    Capture::load("paho_v311_session").expect(&paho_session_expected(V311));
}

#[test]
fn paho_v5_session() {
    Capture::load("paho_v5_session").expect(&paho_session_expected(V5));
}

/// Empty client identifier in MQTT 5: mosquitto assigns one (3.2.2.3.7) and reports its
/// Server Keep Alive. The assigned identifier is random, so it is checked by shape.
#[test]
fn paho_v5_assigned_client_identifier() {
    let cap = Capture::load("paho_v5_assigned_id");
    let v = cap.version();
    let c = Connect {
        properties: Properties {
            request_response_information: Some(true),
            ..none()
        },
        ..connect(V5, true, 0, "")
    };
    check_both_ways(&cap.packets[0].bytes, v, &Packet::Connect(c), Exact);
    let Packet::ConnAck(ca) = decode(&cap.packets[1].bytes, v) else {
        panic!("CONNACK expected")
    };
    let id = ca
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    assert!(id.starts_with("auto-") && id.len() == 41, "{id}");
    let expected = connack(
        false,
        ReasonCode::Success,
        Properties {
            assigned_client_identifier: Some(id),
            // Keep Alive 0 from the client: mosquitto reports its max_keepalive (65535).
            server_keep_alive: Some(65535),
            ..mosquitto_connack_props()
        },
    );
    check_both_ways(&cap.packets[1].bytes, v, &expected, PropertyOrder);
    check_both_ways(&cap.packets[2].bytes, v, &disconnect(), Exact);
    assert_eq!(cap.packets.len(), 3);
}

/// An authentication method the broker does not know: CONNACK 0x8C, and a CONNACK with a
/// reason code and an empty property block.
#[test]
fn paho_v5_connack_bad_authentication_method() {
    let cap = Capture::load("paho_v5_bad_auth_method");
    let c = Connect {
        properties: Properties {
            authentication_method: Some("SCRAM-SHA-1"),
            authentication_data: Some(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"),
            ..none()
        },
        ..connect(V5, true, 60, "petrel-auth")
    };
    cap.expect(&[
        (C2S, Packet::Connect(c), Exact),
        (
            S2C,
            connack(false, ReasonCode::BadAuthenticationMethod, none()),
            Exact,
        ),
    ]);
}

// ---------------------------------------------------------------------------------------
// AUTH and refused connections (client packets hand-built from the spec by capture.py;
// the broker's packets are mosquitto's)

fn auth(rc: ReasonCode, data: Option<&'static [u8]>) -> Packet<'static> {
    Packet::Auth(Auth {
        reason_code: rc,
        properties: Properties {
            authentication_method: Some("petrel-challenge"),
            authentication_data: data,
            ..none()
        },
    })
}

/// Enhanced authentication (4.12) with mosquitto and tests/data/auth_plugin.c, then
/// re-authentication (4.12.1).
#[test]
fn mosquitto_v5_enhanced_authentication() {
    let cap = Capture::load("raw_v5_auth");
    let c = Connect {
        properties: Properties {
            authentication_method: Some("petrel-challenge"),
            authentication_data: Some(b"hello"),
            ..none()
        },
        ..connect(V5, true, 60, "petrel-auth")
    };
    let ca = connack(
        false,
        ReasonCode::Success,
        Properties {
            authentication_method: Some("petrel-challenge"),
            ..mosquitto_connack_props()
        },
    );
    cap.expect(&[
        (C2S, Packet::Connect(c), Exact),
        (
            S2C,
            auth(ReasonCode::ContinueAuthentication, Some(b"challenge")),
            Exact,
        ),
        (
            C2S,
            auth(ReasonCode::ContinueAuthentication, Some(b"response")),
            Exact,
        ),
        (S2C, ca, PropertyOrder),
        (C2S, auth(ReasonCode::ReAuthenticate, Some(b"again")), Exact),
        (
            S2C,
            auth(ReasonCode::ContinueAuthentication, Some(b"challenge")),
            Exact,
        ),
        (
            C2S,
            auth(ReasonCode::ContinueAuthentication, Some(b"response")),
            Exact,
        ),
        (S2C, auth(ReasonCode::Success, None), Exact),
        (C2S, disconnect(), Exact),
    ]);
}

/// An AUTH 0x18 outside an exchange: mosquitto sends DISCONNECT 0x82 Protocol Error.
#[test]
fn mosquitto_v5_server_disconnect_protocol_error() {
    let cap = Capture::load("raw_v5_auth_protocol_error");
    let c = Connect {
        properties: Properties {
            authentication_method: Some("petrel-challenge"),
            ..none()
        },
        ..connect(V5, true, 60, "petrel-auth2")
    };
    let ca = connack(
        false,
        ReasonCode::Success,
        Properties {
            authentication_method: Some("petrel-challenge"),
            ..mosquitto_connack_props()
        },
    );
    cap.expect(&[
        (C2S, Packet::Connect(c), Exact),
        (
            S2C,
            auth(ReasonCode::ContinueAuthentication, Some(b"challenge")),
            Exact,
        ),
        (
            C2S,
            auth(ReasonCode::ContinueAuthentication, Some(b"response")),
            Exact,
        ),
        (S2C, ca, PropertyOrder),
        (
            C2S,
            auth(ReasonCode::ContinueAuthentication, Some(b"response")),
            Exact,
        ),
        (
            S2C,
            Packet::Disconnect(Disconnect::new(ReasonCode::ProtocolError)),
            Exact,
        ),
    ]);
}

/// CONNACK refusals. (0) 3.1.1, Clean Session 0 with an empty client identifier:
/// [MQTT-3.1.3-8] return code 0x02. (1) protocol level 6: mosquitto answers 0x01
/// [MQTT-3.1.2-2]; the codec refuses that CONNECT with 0x84. (2) 3.1 with an empty client
/// identifier: 0x02.
#[test]
fn mosquitto_connack_refused() {
    let cap = Capture::load("raw_connack_refused");
    let p = &cap.packets;
    assert_eq!(p.len(), 6);
    check_both_ways(
        &p[0].bytes,
        V311,
        &Packet::Connect(connect(V311, false, 60, "")),
        Exact,
    );
    check_both_ways(
        &p[1].bytes,
        V311,
        &connack(false, ReasonCode::ClientIdentifierNotValid, none()),
        Exact,
    );
    let err = Packet::parse(&p[2].bytes, V311, MAX).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedProtocolLevel(6));
    assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
    assert_eq!(err.reason_code() as u8, 0x84);
    check_both_ways(
        &p[3].bytes,
        V311,
        &connack(false, ReasonCode::UnsupportedProtocolVersion, none()),
        Exact,
    );
    check_both_ways(
        &p[4].bytes,
        V31,
        &Packet::Connect(connect(V31, true, 60, "")),
        Exact,
    );
    check_both_ways(
        &p[5].bytes,
        V31,
        &connack(false, ReasonCode::ClientIdentifierNotValid, none()),
        Exact,
    );
}

/// [MQTT-2.1.3-1] / 2.1.2: packet type 15 is reserved in 3.1.1. mosquitto closed the
/// connection without answering; the codec refuses it as a malformed packet.
#[test]
fn mosquitto_v311_auth_is_reserved() {
    let cap = Capture::load("raw_v311_auth_rejected");
    let p = &cap.packets;
    check_both_ways(
        &p[0].bytes,
        V311,
        &Packet::Connect(connect(V311, true, 60, "petrel-311")),
        Exact,
    );
    check_both_ways(
        &p[1].bytes,
        V311,
        &connack(false, ReasonCode::Success, none()),
        Exact,
    );
    assert_eq!(p[2].bytes, [0xF0, 0x00]);
    let err = Packet::parse(&p[2].bytes, V311, MAX).unwrap_err();
    assert_eq!(err, DecodeError::InvalidPacketType(15));
    assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
    // The same bytes are a valid AUTH (Success, no properties) in 5.0 (3.15.2.1).
    assert_eq!(
        decode(&p[2].bytes, V5),
        Packet::Auth(Auth {
            reason_code: ReasonCode::Success,
            properties: none(),
        })
    );
    assert_eq!(p.len(), 3);
}

// ---------------------------------------------------------------------------------------
// Every capture, generically

/// Packets in the captures that the codec must refuse (checked by their own tests above).
fn expected_invalid(cap: &Capture, i: usize) -> bool {
    matches!(
        (cap.name.as_str(), i),
        ("raw_connack_refused", 2) | ("raw_v311_auth_rejected", 2)
    )
}

/// Each captured packet decodes in its connection's version, every prefix of it is
/// `Incomplete`, and re-encoding gives an equal packet of the same length.
#[test]
fn every_captured_packet_decodes_and_reencodes() {
    let caps = all_captures();
    assert!(caps.len() >= 25, "captures found: {}", caps.len());
    let mut count = 0;
    for cap in &caps {
        for (i, c) in cap.packets.iter().enumerate() {
            if expected_invalid(cap, i) {
                continue;
            }
            // raw_connack_refused mixes versions: the CONNECT tells.
            let v = if cap.name == "raw_connack_refused" && i >= 4 {
                V31
            } else {
                cap.version()
            };
            let p = decode(&c.bytes, v);
            assert_eq!(p.packet_type().name(), c.kind, "{} #{i}", cap.name);
            let out = encode(&p, v).unwrap();
            assert_eq!(out.len(), c.bytes.len(), "{} #{i}", cap.name);
            assert_eq!(decode(&out, v), p, "{} #{i}", cap.name);
            for cut in 0..c.bytes.len() {
                match Packet::parse(&c.bytes[..cut], v, MAX) {
                    Ok(Status::Incomplete { needed }) => {
                        assert!(needed >= 1 && cut + needed <= c.bytes.len())
                    }
                    other => panic!("{} #{i} cut {cut}: {other:?}", cap.name),
                }
            }
            count += 1;
        }
    }
    assert!(count > 150, "{count} packets");
}

/// The captures cover every packet type in every version it exists in, in both
/// directions where the protocol allows both (PUBLISH and its acknowledgements).
#[test]
fn captures_cover_every_packet_type_and_version() {
    let mut seen = BTreeSet::new();
    for cap in all_captures() {
        for (i, c) in cap.packets.iter().enumerate() {
            if !expected_invalid(&cap, i) {
                seen.insert((cap.level, c.kind.clone(), c.dir == C2S));
            }
        }
    }
    let client = [
        "CONNECT",
        "PUBLISH",
        "PUBACK",
        "PUBREC",
        "PUBREL",
        "PUBCOMP",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PINGREQ",
        "DISCONNECT",
    ];
    let server = [
        "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBACK", "UNSUBACK",
        "PINGRESP",
    ];
    for level in [3u8, 4, 5] {
        for k in client {
            assert!(
                seen.contains(&(level, k.to_string(), true)),
                "level {level} c2s {k}"
            );
        }
        for k in server {
            assert!(
                seen.contains(&(level, k.to_string(), false)),
                "level {level} s2c {k}"
            );
        }
    }
    assert!(seen.contains(&(5, "AUTH".to_string(), true)));
    assert!(seen.contains(&(5, "AUTH".to_string(), false)));
    assert!(seen.contains(&(5, "DISCONNECT".to_string(), false)));
}
