//! MQTT 5.0: DISCONNECT (3.14) in both directions, handling errors (4.13), malformed
//! packets the codec refuses (1.5, 2.1, 2.2), PINGREQ (3.12), server shutdown.

use crate::common::*;
use broker_core::sim::{Client, Sim};
use broker_core::Config;
use mqtt_proto::*;

fn with_will(s: &mut Sim, id: &str) -> Client {
    let mut c = conn(id, V5);
    c.will = Some(Will {
        qos: Q0,
        retain: false,
        properties: Properties::default(),
        topic: "will",
        payload: b"w",
    });
    connect_ok(s, &c).0
}

fn watcher(s: &mut Sim) -> Client {
    let w = connect(s, "watcher", true, V5);
    subscribe(s, w, "will", Q0);
    w
}

#[test]
fn mqtt_3_12_4_1_pingresp() {
    for v in [V31, V3, V5] {
        let mut s = sim();
        let c = connect(&mut s, "c", true, v);
        for _ in 0..3 {
            s.send(c, &Packet::PingReq);
        }
        // [MQTT-3.12.4-1]
        assert_eq!(
            recv(&mut s, c),
            [P::PingResp, P::PingResp, P::PingResp],
            "{v}"
        );
    }
}

#[test]
fn mqtt_3_14_1_1_disconnect_reserved_bits() {
    let mut s = sim();
    let w = watcher(&mut s);
    let c = with_will(&mut s, "c");
    s.send_bytes(c, &frame(0xE2, &[]));
    // [MQTT-3.14.1-1] Malformed Packet, 0x81; not a normal disconnection, so the will goes.
    assert_disconnected(&mut s, c, ReasonCode::MalformedPacket);
    assert_eq!(payloads(&recv(&mut s, w)), ["w"]);
}

#[test]
fn mqtt_3_14_4_3_normal_disconnect_discards_will() {
    let mut s = sim();
    let w = watcher(&mut s);
    let c = with_will(&mut s, "c");
    // Remaining Length 0 means 0x00 (3.14.2.1).
    s.send_bytes(c, &frame(0xE0, &[]));
    assert!(s.is_closed(c));
    // [MQTT-3.14.4-3]
    assert!(recv(&mut s, w).is_empty());
    // Nothing is sent back to a client that disconnects.
    assert!(recv(&mut s, c).is_empty());
}

#[test]
fn disconnect_with_will_message_publishes_it() {
    let mut s = sim();
    let w = watcher(&mut s);
    let c = with_will(&mut s, "c");
    disconnect(&mut s, c, ReasonCode::DisconnectWithWillMessage);
    assert!(s.is_closed(c));
    // 3.14.2.1 reason 0x04: the will is published.
    assert_eq!(payloads(&recv(&mut s, w)), ["w"]);
}

#[test]
fn disconnect_with_an_error_code_publishes_the_will() {
    for code in [
        ReasonCode::UnspecifiedError,
        ReasonCode::MalformedPacket,
        ReasonCode::QuotaExceeded,
    ] {
        let mut s = sim();
        let w = watcher(&mut s);
        let c = with_will(&mut s, "c");
        disconnect(&mut s, c, code);
        assert!(s.is_closed(c));
        // Only 0x00 deletes the will [MQTT-3.1.2-10].
        assert_eq!(payloads(&recv(&mut s, w)), ["w"], "{code}");
    }
}

#[test]
fn mqtt_3_14_0_1_no_disconnect_before_connack() {
    // Closed before CONNACK for several reasons: none sends DISCONNECT.
    let mut s = sim_cfg(Config {
        connect_timeout_ms: 100,
        ..Config::default()
    });
    let a = s.open(0, V5).unwrap();
    s.send(a, &Packet::PingReq);
    let b = s.open(0, V5).unwrap();
    s.send_bytes(b, &[0x10, 0x03, 0x00, 0x04, b'M']);
    s.advance(100);
    let c = s.open(0, V5).unwrap();
    s.send_bytes(c, &[0x00, 0x00]);
    for x in [a, b, c] {
        let got = recv(&mut s, x);
        // [MQTT-3.14.0-1]
        assert!(
            !got.iter().any(|p| matches!(p, P::Disconnect { .. })),
            "{got:?}"
        );
        assert!(s.is_closed(x));
    }
}

#[test]
fn mqtt_3_14_2_1_to_4_server_disconnect_codes_and_properties() {
    // DISCONNECTs the server sends for various reasons.
    let mut s = sim_cfg(Config {
        max_packet_size: 100,
        ..Config::default()
    });
    let mut cp = conn("ka", V5);
    cp.keep_alive = 1;
    cp.properties.session_expiry_interval = Some(30);
    cp.properties.maximum_packet_size = Some(20);
    let (ka, _) = connect_ok(&mut s, &cp);
    let (taken, _) = connect5(&mut s, "taken", true, 30);
    let (big, _) = connect5(&mut s, "big", true, 30);
    let (twice, _) = connect5(&mut s, "twice", true, 30);
    connect5(&mut s, "taken", false, 30);
    publish(&mut s, big, "t", &[0; 200], Q0, false, 0);
    s.send(twice, &Packet::Connect(conn("twice", V5)));
    s.advance(1_500);
    for (c, code) in [
        (ka, ReasonCode::KeepAliveTimeout),
        (taken, ReasonCode::SessionTakenOver),
        (big, ReasonCode::PacketTooLarge),
        (twice, ReasonCode::ProtocolError),
    ] {
        let frames = s.recv(c);
        let got = owned_all(&frames);
        // [MQTT-3.14.2-1] a DISCONNECT reason code (the frame decodes), then nothing
        // more [MQTT-3.14.4-1] and the connection closed [MQTT-3.14.4-2].
        assert_eq!(got.len(), 1, "{got:?}");
        let P::Disconnect {
            code: got_code,
            props,
        } = &got[0]
        else {
            panic!("{got:?}")
        };
        assert_eq!(*got_code, code);
        // [MQTT-3.14.2-2] no Session Expiry Interval from the server; [MQTT-3.14.2-3]
        // [MQTT-3.14.2-4] no Reason String or User Property (which would not fit the
        // 20-byte Maximum Packet Size of "ka").
        assert_eq!(props.session_expiry_interval, None);
        assert!(props.no_problem_info());
        assert!(frames[0].bytes.len() <= 4, "{:02x?}", frames[0].bytes);
        assert!(s.is_closed(c));
    }
}

#[test]
fn shutdown_sends_0x8b_publishes_wills_and_refuses_new_connections() {
    let mut s = sim();
    let w = connect(&mut s, "w3", true, V3);
    subscribe(&mut s, w, "will", Q0);
    let c5 = with_will(&mut s, "c5");
    let mut c3 = conn("c3", V3);
    c3.will = Some(Will {
        qos: Q0,
        retain: false,
        properties: Properties::default(),
        topic: "will",
        payload: b"w3",
    });
    let (c3, _) = connect_ok(&mut s, &c3);
    let pending = s.open(0, V5).unwrap();
    let now = s.now;
    s.brokers[0].shutdown(now);
    s.pump();
    // MQTT 5: DISCONNECT 0x8B; 3.1.1: closed; not yet connected: closed silently.
    assert_disconnected(&mut s, c5, ReasonCode::ServerShuttingDown);
    assert!(s.is_closed(c3));
    assert_closed_silently(&mut s, pending);
    assert!(s.is_closed(w));
    assert_eq!(s.brokers[0].connection_count(), 0);
    assert!(s.open(0, V5).is_none(), "no accepts after shutdown");
}

#[test]
fn mqtt_4_13_1_1_malformed_packets_close_with_a_reason_code() {
    // (bytes after CONNACK, expected reason)
    let cases: Vec<(Vec<u8>, ReasonCode)> = vec![
        // Reserved packet type 0 [MQTT-2.1.3-1].
        (vec![0x00, 0x00], ReasonCode::MalformedPacket),
        // PINGREQ with flags [MQTT-2.1.3-1].
        (vec![0xC1, 0x00], ReasonCode::MalformedPacket),
        // Remaining Length of five bytes.
        (
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ReasonCode::MalformedPacket,
        ),
        // Non-minimal Variable Byte Integer [MQTT-1.5.5-1].
        (vec![0xC0, 0x80, 0x00], ReasonCode::MalformedPacket),
        // PUBACK with trailing bytes after its properties.
        (frame(0x40, &[0, 1, 0, 0, 9]), ReasonCode::MalformedPacket),
        // PUBLISH with a property PUBLISH cannot carry (Session Expiry 0x11).
        (
            frame(0x30, &[0, 1, b't', 5, 0x11, 0, 0, 0, 1]),
            ReasonCode::MalformedPacket,
        ),
        // PUBLISH with Message Expiry twice.
        (
            frame(0x30, &[0, 1, b't', 10, 2, 0, 0, 0, 1, 2, 0, 0, 0, 1]),
            ReasonCode::ProtocolError,
        ),
        // PUBLISH QoS 1 with Packet Identifier 0.
        (
            frame(0x32, &[0, 1, b't', 0, 0, 0]),
            ReasonCode::ProtocolError,
        ),
        // UTF-8 user property with an invalid string [MQTT-1.5.7-1].
        (
            frame(0x30, &[0, 1, b't', 6, 0x26, 0, 1, 0xFF, 0, 0]),
            ReasonCode::MalformedPacket,
        ),
        // CONNACK from a client.
        (frame(0x20, &[0, 0, 0]), ReasonCode::ProtocolError),
        // SUBACK from a client.
        (frame(0x90, &[0, 1, 0, 0]), ReasonCode::ProtocolError),
        // PINGRESP from a client.
        (vec![0xD0, 0x00], ReasonCode::ProtocolError),
    ];
    for (bytes, code) in cases {
        let mut s = sim();
        let other = connect(&mut s, "other", true, V5);
        subscribe(&mut s, other, "#", Q0);
        let c = connect(&mut s, "c", true, V5);
        s.send_bytes(c, &bytes);
        // [MQTT-4.13.1-1] closed, with DISCONNECT and the reason code; [MQTT-4.13.2-1].
        let got = recv(&mut s, c);
        assert_eq!(disconnect_code(&got), Some(code), "{bytes:02x?}: {got:?}");
        assert!(s.is_closed(c), "{bytes:02x?}");
        // Nothing reaches anyone else; the other session is unharmed.
        assert!(recv(&mut s, other).is_empty());
        let p = connect(&mut s, "p", true, V5);
        publish(&mut s, p, "still", b"works", Q0, false, 0);
        assert_eq!(payloads(&recv(&mut s, other)), ["works"]);
    }
}

#[test]
fn mqtt_4_13_2_1_error_codes_close_the_connection() {
    let mut s = sim();
    let (c, _) = connect5(&mut s, "c", true, 0);
    s.send(c, &Packet::Connect(conn("c", V5)));
    let got = recv(&mut s, c);
    // [MQTT-4.13.2-1] a DISCONNECT of 0x80 or above: the connection is closed.
    assert!(matches!(disconnect_code(&got), Some(code) if code.is_error()));
    assert!(s.is_closed(c));
    let ps = owned_all(&s.recv(c));
    assert!(ps.is_empty());
    // And the broker forgot the connection.
    assert_eq!(s.brokers[0].connection_count(), 0);
}

#[test]
fn mqtt_2_2_2_1_empty_property_length_accepted() {
    let mut s = sim();
    let (sub, _) = connect5(&mut s, "sub", true, 0);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "p", true, V5);
    // PUBLISH QoS 1 with a Property Length of zero.
    s.send_bytes(p, &frame(0x32, &[0, 1, b't', 0, 7, 0, b'x']));
    assert_eq!(
        recv(&mut s, p),
        [P::PubAck {
            pid: 7,
            code: ReasonCode::Success
        }]
    );
    let frames = s.recv(sub);
    // [MQTT-2.2.2-1] what the server sends has a zero Property Length when it has none:
    // topic (3) + id (2) + property length (1) + payload (1).
    assert_eq!(frames[0].bytes[1], 7, "{:02x?}", frames[0].bytes);
    assert_eq!(frames[0].bytes[7], 0);
}
