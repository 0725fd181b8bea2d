//! Bad input: random bytes, truncated and corrupted packets, split reads. Whatever a client
//! sends, the broker answers with a reason code (MQTT 5) and closes that client only: no
//! panic, every frame it sends decodes, other sessions carry on.

use crate::common::*;
use broker_core::sim::{Client, Sim};
use mqtt_proto::*;
use proptest::prelude::*;

fn valid_stream(v: ProtocolVersion) -> Vec<u8> {
    let mut out = Vec::new();
    let mut c = conn("victim", v);
    c.will = Some(Will {
        qos: Q1,
        retain: false,
        properties: Properties::default(),
        topic: "will/victim",
        payload: b"w",
    });
    out.extend(bytes_of(&Packet::Connect(c), v));
    let subs = [Subscription {
        filter: "a/+",
        options: SubscriptionOptions::qos(Q2),
    }];
    out.extend(bytes_of(
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&subs),
        }),
        v,
    ));
    for (q, id) in [(Q0, None), (Q1, Some(pid(2))), (Q2, Some(pid(3)))] {
        out.extend(bytes_of(
            &Packet::Publish(Publish {
                dup: false,
                qos: q,
                retain: q == Q1,
                topic: "a/b",
                packet_id: id,
                properties: Properties::default(),
                payload: b"payload",
            }),
            v,
        ));
    }
    out.extend(bytes_of(&Packet::PubRel(Ack::new(pid(3))), v));
    out.extend(bytes_of(&Packet::PingReq, v));
    out.extend(bytes_of(
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(4),
            properties: Properties::default(),
            filters: TopicFilters::List(&["a/+"]),
        }),
        v,
    ));
    out
}

/// A world with a bystander subscribed to everything.
fn world() -> (Sim, Client) {
    let mut s = sim();
    let b = connect(&mut s, "bystander", true, V5);
    subscribe(&mut s, b, "#", Q1);
    (s, b)
}

/// Everything the broker sent to `c` decodes (`owned` panics otherwise); a DISCONNECT,
/// if any, is the last frame and carries an error code; the bystander still works.
fn check_after(s: &mut Sim, b: Client, c: Client) -> Vec<P> {
    let got: Vec<P> = s.recv(c).iter().map(decode_any).collect();
    let disconnects: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, P::Disconnect { .. }))
        .map(|(i, _)| i)
        .collect();
    assert!(disconnects.len() <= 1, "{got:?}");
    if let Some(&i) = disconnects.first() {
        assert_eq!(i, got.len() - 1, "DISCONNECT must be last: {got:?}");
        assert!(
            matches!(got[i], P::Disconnect { code, .. } if code.is_error()),
            "{got:?}"
        );
        assert!(s.is_closed(c));
    }
    bystander_ok(s, b);
    got
}

/// Decodes a frame in the client's version or, for the CONNACK answering a CONNECT whose
/// protocol level was garbled, in the version the broker answered in.
fn decode_any(f: &broker_core::sim::Frame) -> P {
    for v in [f.version, V3, V5] {
        if let Ok(Status::Complete(_)) = Packet::parse(&f.bytes, v, usize::MAX) {
            let mut g = f.clone();
            g.version = v;
            return owned(&g);
        }
    }
    panic!("undecodable frame {:02x?}", f.bytes)
}

fn bystander_ok(s: &mut Sim, b: Client) {
    recv_acking(s, b);
    let p = connect(s, "prober", true, V5);
    publish(s, p, "probe", b"still here", Q1, false, 1);
    assert_eq!(payloads(&recv_acking(s, b)), ["still here"]);
    s.drop_connection(p);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_before_connect(bytes in proptest::collection::vec(any::<u8>(), 0..300), v5 in any::<bool>()) {
        let (mut s, b) = world();
        let v = if v5 { V5 } else { V3 };
        let c = s.open(0, v).unwrap();
        s.send_bytes(c, &bytes);
        s.advance(20_000);
        check_after(&mut s, b, c);
        // The connect timeout (10 s) leaves no connection without a session behind.
        prop_assert!(s.is_closed(c) || s.brokers[0].session_count() >= 2);
    }

    #[test]
    fn random_bytes_after_connect(bytes in proptest::collection::vec(any::<u8>(), 1..300), v5 in any::<bool>()) {
        let (mut s, b) = world();
        let v = if v5 { V5 } else { V3 };
        let c = connect(&mut s, "victim", true, v);
        s.send_bytes(c, &bytes);
        check_after(&mut s, b, c);
    }

    #[test]
    fn corrupted_valid_stream(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), v5 in any::<bool>()) {
        let v = if v5 { V5 } else { V3 };
        let mut bytes = valid_stream(v);
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        let (mut s, b) = world();
        let c = s.open(0, v).unwrap();
        s.send_bytes(c, &bytes);
        s.drop_connection(c);
        check_after(&mut s, b, c);
        prop_assert_eq!(s.brokers[0].connection_count(), 1);
    }

    #[test]
    fn truncated_stream_then_close(cut in any::<prop::sample::Index>(), v5 in any::<bool>()) {
        let v = if v5 { V5 } else { V3 };
        let bytes = valid_stream(v);
        let cut = cut.index(bytes.len());
        let (mut s, b) = world();
        let c = s.open(0, v).unwrap();
        s.send_bytes(c, &bytes[..cut]);
        s.drop_connection(c);
        check_after(&mut s, b, c);
        // A truncated packet is never processed: the session, if any, was not persistent.
        prop_assert_eq!(s.brokers[0].session_count(), 1);
    }

    #[test]
    fn split_reads_give_the_same_result(cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8), v5 in any::<bool>()) {
        // Acknowledgements and deliveries are two independent streams: each keeps its
        // order whatever the reads look like (how they interleave may differ).
        let v = if v5 { V5 } else { V3 };
        let bytes = valid_stream(v);
        let streams = |frames: Vec<broker_core::sim::Frame>| {
            let (p, c): (Vec<_>, Vec<_>) = frames.into_iter().map(|f| f.bytes).partition(|b| b[0] >> 4 == 3);
            (c, p)
        };
        let whole = {
            let (mut s, _b) = world();
            let c = s.open(0, v).unwrap();
            s.send_bytes(c, &bytes);
            streams(s.recv(c))
        };
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len())).collect();
        points.sort();
        let (mut s, _b) = world();
        let c = s.open(0, v).unwrap();
        let mut from = 0;
        for p in points.into_iter().chain(std::iter::once(bytes.len())) {
            s.send_bytes(c, &bytes[from..p]);
            from = p;
        }
        prop_assert_eq!(whole, streams(s.recv(c)));
    }
}

#[test]
fn every_prefix_of_a_valid_stream_is_harmless() {
    for v in [V3, V5] {
        let bytes = valid_stream(v);
        for cut in 0..=bytes.len() {
            let (mut s, b) = world();
            let c = s.open(0, v).unwrap();
            s.send_bytes(c, &bytes[..cut]);
            assert!(!s.is_closed(c), "{v} cut {cut}: a prefix is not an error");
            s.drop_connection(c);
            check_after(&mut s, b, c);
        }
    }
}

#[test]
fn a_flood_of_garbage_from_many_clients() {
    let (mut s, b) = world();
    let mut seed = 0x1234_5678_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..200 {
        let v = if i % 2 == 0 { V5 } else { V3 };
        let c = if i % 3 == 0 {
            s.open(0, v).unwrap()
        } else {
            connect(&mut s, &format!("g{i}"), true, v)
        };
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        s.send_bytes(c, &bytes);
        recv(&mut s, c);
    }
    s.advance(30_000);
    bystander_ok(&mut s, b);
    // No connection is left half-open: each open one has its (clean) session.
    assert_eq!(
        s.brokers[0].connection_count(),
        s.brokers[0].session_count()
    );
}
