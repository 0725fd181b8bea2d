//! MQTT 5.0: enhanced authentication and re-authentication (4.12, 3.15 AUTH), with the toy
//! challenge-response authenticator of `common` (method `TOY`).

use crate::common::*;
use broker_core::sim::{Client, Sim};
use broker_core::Config;
use mqtt_proto::*;

fn toy() -> Sim {
    sim_policy(Config::default(), 1).0
}

fn auth_connect<'a>(id: &'a str, method: &'a str, data: &'a [u8]) -> Connect<'a> {
    let mut c = conn(id, V5);
    c.properties.authentication_method = Some(method);
    c.properties.authentication_data = Some(data);
    c
}

fn send_auth(s: &mut Sim, c: Client, code: ReasonCode, method: Option<&str>, data: Option<&[u8]>) {
    s.send(
        c,
        &Packet::Auth(Auth {
            reason_code: code,
            properties: Properties {
                authentication_method: method,
                authentication_data: data,
                ..Properties::default()
            },
        }),
    );
}

/// Connects through the whole challenge-response; returns the client and the CONNACK.
fn authenticated(s: &mut Sim, id: &str) -> (Client, ConnAckInfo) {
    let (c, first) = try_connect(s, 0, &auth_connect(id, TOY, b"hello"));
    let P::Auth { code, props } = first else {
        panic!("{first:?}")
    };
    assert_eq!(code, ReasonCode::ContinueAuthentication);
    let answer = reversed(&props.authentication_data.unwrap());
    send_auth(
        s,
        c,
        ReasonCode::ContinueAuthentication,
        Some(TOY),
        Some(&answer),
    );
    match recv(s, c).remove(0) {
        P::ConnAck(a) => (c, a),
        p => panic!("{p:?}"),
    }
}

#[test]
fn mqtt_4_12_0_1_unsupported_method_refused() {
    let mut s = toy();
    let (c, p) = try_connect(&mut s, 0, &auth_connect("x", "SCRAM-SHA-1", b"n,,n=user"));
    // [MQTT-4.12.0-1] 0x8C (or 0x87), then close; no AUTH.
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::BadAuthenticationMethod),
        "{p:?}"
    );
    assert!(recv(&mut s, c).is_empty());
    assert!(s.is_closed(c));
    // The default policy supports no method at all.
    let mut s = sim();
    let (c, p) = try_connect(&mut s, 0, &auth_connect("x", TOY, b"hello"));
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::BadAuthenticationMethod),
        "{p:?}"
    );
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_4_12_0_2_and_5_challenge_response_then_connack() {
    let mut s = toy();
    let (c, first) = try_connect(&mut s, 0, &auth_connect("cr", TOY, b"hello"));
    // [MQTT-4.12.0-2] AUTH 0x18 with the challenge; [MQTT-4.12.0-5] the same method.
    let P::Auth { code, props } = first else {
        panic!("{first:?}")
    };
    assert_eq!(code, ReasonCode::ContinueAuthentication);
    assert_eq!(props.authentication_method.as_deref(), Some(TOY));
    let challenge = props.authentication_data.clone().unwrap();
    assert!(challenge.starts_with(b"nonce-"));
    // [MQTT-3.15.2-1] [MQTT-3.15.2-2] [MQTT-3.15.2-3]
    assert!(props.no_problem_info());
    assert_eq!(
        s.brokers[0].session_count(),
        0,
        "no session before authentication ends"
    );
    send_auth(
        &mut s,
        c,
        ReasonCode::ContinueAuthentication,
        Some(TOY),
        Some(&reversed(&challenge)),
    );
    let got = recv(&mut s, c);
    match &got[..] {
        [P::ConnAck(a)] => {
            assert_eq!(a.code, ReasonCode::Success);
            // [MQTT-4.12.0-5] the successful CONNACK carries the method too.
            assert_eq!(a.props.authentication_method.as_deref(), Some(TOY));
            assert_eq!(a.props.authentication_data.as_deref(), Some(&b"ok"[..]));
        }
        p => panic!("{p:?}"),
    }
    s.send(c, &Packet::PingReq);
    assert_eq!(recv(&mut s, c), [P::PingResp]);
}

#[test]
fn one_step_authentication_success() {
    let mut s = toy();
    let (_c, p) = try_connect(&mut s, 0, &auth_connect("q", TOY, b"quick"));
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::Success
            && a.props.authentication_method.as_deref() == Some(TOY)
            && a.props.authentication_data.as_deref() == Some(&b"welcome"[..])),
        "{p:?}"
    );
}

#[test]
fn mqtt_4_12_0_4_server_rejects_during_exchange() {
    let mut s = toy();
    let (c, _) = try_connect(&mut s, 0, &auth_connect("rej", TOY, b"hello"));
    send_auth(
        &mut s,
        c,
        ReasonCode::ContinueAuthentication,
        Some(TOY),
        Some(b"wrong"),
    );
    let got = recv(&mut s, c);
    // [MQTT-4.12.0-4] CONNACK 0x80 or above, then close; not a DISCONNECT
    // [MQTT-3.14.0-1].
    assert!(
        matches!(&got[..], [P::ConnAck(a)] if a.code == ReasonCode::NotAuthorized && !a.session_present),
        "{got:?}"
    );
    assert!(s.is_closed(c));
    assert_eq!(s.brokers[0].session_count(), 0);
    // Refused at the first step.
    let (c, p) = try_connect(&mut s, 0, &auth_connect("rej", TOY, b"fail"));
    assert!(
        matches!(p, P::ConnAck(ref a) if a.code == ReasonCode::NotAuthorized),
        "{p:?}"
    );
    assert!(s.is_closed(c));
}

#[test]
fn mqtt_3_14_0_1_errors_during_authentication_get_connack_not_disconnect() {
    // A PUBLISH before the CONNACK ([MQTT-3.1.2-30] forbids it), an AUTH with another
    // method, an AUTH 0x19 (not allowed before CONNACK), a second CONNECT.
    type Step = fn(&mut Sim, Client);
    let steps: [(Step, &str); 4] = [
        (|s, c| publish(s, c, "t", b"early", Q0, false, 0), "publish"),
        (
            |s, c| {
                send_auth(
                    s,
                    c,
                    ReasonCode::ContinueAuthentication,
                    Some("OTHER"),
                    Some(b"x"),
                )
            },
            "method",
        ),
        (
            |s, c| send_auth(s, c, ReasonCode::ReAuthenticate, Some(TOY), Some(b"x")),
            "reauth",
        ),
        (
            |s, c| s.send(c, &Packet::Connect(conn("again", V5))),
            "connect",
        ),
    ];
    for (step, what) in steps {
        let mut s = toy();
        let (c, _) = try_connect(&mut s, 0, &auth_connect("e", TOY, b"hello"));
        step(&mut s, c);
        let got = recv(&mut s, c);
        // [MQTT-3.14.0-1] no DISCONNECT before a successful CONNACK: a refusing CONNACK.
        assert!(
            matches!(&got[..], [P::ConnAck(a)] if a.code == ReasonCode::ProtocolError),
            "{what}: {got:?}"
        );
        assert!(s.is_closed(c), "{what}");
    }
}

#[test]
fn mqtt_4_12_0_6_no_method_no_auth() {
    let mut s = toy();
    let (c, ack) = connect_ok(&mut s, &conn("plain", V5));
    // [MQTT-4.12.0-6] no Authentication Method in CONNACK...
    assert_eq!(ack.props.authentication_method, None);
    assert_eq!(ack.props.authentication_data, None);
    // ... and an AUTH from such a client is a Protocol Error (answered, never with AUTH).
    send_auth(
        &mut s,
        c,
        ReasonCode::ReAuthenticate,
        Some(TOY),
        Some(b"hello"),
    );
    assert_disconnected(&mut s, c, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_4_12_1_1_reauthentication() {
    let mut s = toy();
    let (c, _) = authenticated(&mut s, "re");
    subscribe(&mut s, c, "t", Q1);
    send_auth(
        &mut s,
        c,
        ReasonCode::ReAuthenticate,
        Some(TOY),
        Some(b"hello"),
    );
    let got = recv(&mut s, c);
    // [MQTT-4.12.1-1] AUTH 0x19 with the method of the connection starts it.
    let [P::Auth { code, props }] = &got[..] else {
        panic!("{got:?}")
    };
    // [MQTT-4.12.0-2] [MQTT-4.12.0-5]
    assert_eq!(*code, ReasonCode::ContinueAuthentication);
    assert_eq!(props.authentication_method.as_deref(), Some(TOY));
    let challenge = props.authentication_data.clone().unwrap();
    // Other traffic keeps flowing during re-authentication.
    let p = connect(&mut s, "p", true, V5);
    publish(&mut s, p, "t", b"during", Q1, false, 1);
    assert_eq!(payloads(&recv(&mut s, c)), ["during"]);
    send_auth(
        &mut s,
        c,
        ReasonCode::ContinueAuthentication,
        Some(TOY),
        Some(&reversed(&challenge)),
    );
    let got = recv(&mut s, c);
    assert!(
        matches!(&got[..], [P::Auth { code: ReasonCode::Success, props }] if props.authentication_method.as_deref() == Some(TOY)),
        "{got:?}"
    );
    assert!(!s.is_closed(c));
}

#[test]
fn mqtt_4_12_1_1_reauthentication_must_use_the_same_method() {
    let mut s = toy();
    let (c, _) = authenticated(&mut s, "re");
    send_auth(
        &mut s,
        c,
        ReasonCode::ReAuthenticate,
        Some("OTHER"),
        Some(b"hello"),
    );
    // [MQTT-4.12.1-1] another method: a Protocol Error.
    assert_disconnected(&mut s, c, ReasonCode::ProtocolError);
    // Continue without a re-authentication in progress: Protocol Error too.
    let (c, _) = authenticated(&mut s, "re2");
    send_auth(
        &mut s,
        c,
        ReasonCode::ContinueAuthentication,
        Some(TOY),
        Some(b"x"),
    );
    assert_disconnected(&mut s, c, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_4_12_1_2_failed_reauthentication_disconnects() {
    let mut s = toy();
    let w = connect(&mut s, "w", true, V5);
    subscribe(&mut s, w, "will", Q0);
    let mut cp = auth_connect("re", TOY, b"quick");
    cp.will = Some(Will {
        qos: Q0,
        retain: false,
        properties: Properties::default(),
        topic: "will",
        payload: b"reauth failed",
    });
    let (c, _) = connect_ok(&mut s, &cp);
    send_auth(
        &mut s,
        c,
        ReasonCode::ReAuthenticate,
        Some(TOY),
        Some(b"hello"),
    );
    recv(&mut s, c);
    send_auth(
        &mut s,
        c,
        ReasonCode::ContinueAuthentication,
        Some(TOY),
        Some(b"wrong"),
    );
    // [MQTT-4.12.1-2] DISCONNECT with a reason code, then close.
    assert_disconnected(&mut s, c, ReasonCode::NotAuthorized);
    assert_eq!(payloads(&recv(&mut s, w)), ["reauth failed"]);
}

#[test]
fn mqtt_3_15_1_1_auth_reserved_flags() {
    let mut s = toy();
    let (c, _) = authenticated(&mut s, "f");
    s.send_bytes(c, &frame(0xF1, &[0x19, 0]));
    // [MQTT-3.15.1-1]
    assert_disconnected(&mut s, c, ReasonCode::MalformedPacket);
}

#[test]
fn enhanced_authentication_resumes_sessions() {
    let mut s = toy();
    let mut cp = auth_connect("sess", TOY, b"quick");
    cp.properties.session_expiry_interval = Some(60);
    let (c, _) = connect_ok(&mut s, &cp);
    subscribe(&mut s, c, "t", Q1);
    s.drop_connection(c);
    let mut cp = auth_connect("sess", TOY, b"hello");
    cp.clean_start = false;
    cp.properties.session_expiry_interval = Some(60);
    let (c, first) = try_connect(&mut s, 0, &cp);
    let P::Auth { props, .. } = first else {
        panic!("{first:?}")
    };
    send_auth(
        &mut s,
        c,
        ReasonCode::ContinueAuthentication,
        Some(TOY),
        Some(&reversed(&props.authentication_data.unwrap())),
    );
    assert!(matches!(&recv(&mut s, c)[..], [P::ConnAck(a)] if a.session_present));
}

#[test]
fn connection_lost_or_slow_during_authentication() {
    let mut s = sim_policy(
        Config {
            connect_timeout_ms: 1000,
            ..Config::default()
        },
        1,
    )
    .0;
    let (c, _) = try_connect(&mut s, 0, &auth_connect("lost", TOY, b"hello"));
    s.drop_connection(c);
    assert_eq!(s.brokers[0].connection_count(), 0);
    let (slow, _) = try_connect(&mut s, 0, &auth_connect("slow", TOY, b"hello"));
    s.advance(1000);
    // The CONNECT must complete within the connect timeout; nothing is sent (no CONNACK
    // was sent yet, so no DISCONNECT [MQTT-3.14.0-1]).
    assert_closed_silently(&mut s, slow);
    assert_eq!(s.brokers[0].session_count(), 0);
}

#[test]
fn failed_basic_authentication_codes_per_version() {
    let mut s = toy();
    for (v, user, code) in [
        (V5, "bad", ReasonCode::BadUserNameOrPassword),
        (V5, "banned", ReasonCode::NotAuthorized),
        (V3, "bad", ReasonCode::BadUserNameOrPassword),
        (V3, "banned", ReasonCode::NotAuthorized),
        (V31, "bad", ReasonCode::BadUserNameOrPassword),
        (V31, "banned", ReasonCode::NotAuthorized),
    ] {
        let mut c = conn("u", v);
        c.username = Some(user);
        c.password = Some(b"pw");
        let (cl, f) = connect_with(&mut s, 0, &c);
        // 3.x return codes 4 and 5; 5.0 reason codes 0x86 and 0x87.
        let expect = if v.is_v5() {
            code as u8
        } else {
            code.to_v3_connack()
        };
        assert_eq!(f.bytes[3], expect, "{v} {user}: {:02x?}", f.bytes);
        assert!(matches!(owned(&f), P::ConnAck(ref a) if a.code == code));
        assert!(s.is_closed(cl));
    }
}
