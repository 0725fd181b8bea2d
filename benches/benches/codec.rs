//! mqtt-proto against mqttbytes 0.6 (rumqtt's codec: its `v4` module for 3.1.1, `v5` for
//! 5.0), decoding and encoding the same bytes.
//!
//! Run: `cargo bench -p benches --bench codec` (ids `decode/<case>/petrel`,
//! `decode/<case>/mqttbytes`, `encode/<case>/...`).
//!
//! Fairness:
//! - The input bytes of every case are produced once by mqtt-proto's encoder and checked to
//!   decode with both libraries (and mqttbytes' own encoding of what it decoded is checked to
//!   have the same length), so both decode the same packet.
//! - Both decode fully: mqtt-proto to its `Packet` (every field validated: UTF-8, topic
//!   rules, properties, options), mqttbytes with `v4::read` / `v5::read` to its `Packet`
//!   (owned `String`s and `Vec`s, payload as `Bytes`).
//! - mqttbytes' `read` consumes its `&mut BytesMut` (`split_to`), so every decode needs a
//!   fresh buffer. Both sides therefore use `iter_batched_ref`: the setup copies the input
//!   into a fresh buffer (a `BytesMut` for mqttbytes, a `Vec<u8>` for mqtt-proto) outside
//!   the timed region, and the timed routine decodes from it. Each decoded packet is
//!   dropped inside the routine, so mqttbytes pays for freeing what it allocated, as a real
//!   reader would.
//! - Encoding: both encode their own decoded packet into a buffer allocated once and reused
//!   (`emit` into `&mut [u8]`; `write` into a pre-reserved `BytesMut` that is cleared).
//! - Throughput is the encoded size in bytes.
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mqtt_proto::{
    Connect, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, RetainHandling, Status,
    Subscribe, Subscription, SubscriptionIds, SubscriptionOptions, Subscriptions, UserProperties,
    Will,
};
use std::hint::black_box;

const MAX: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Codec {
    V4,
    V5,
}

struct Case {
    name: &'static str,
    version: ProtocolVersion,
    codec: Codec,
    /// One or more whole packets back to back.
    bytes: Vec<u8>,
    packets: usize,
}

fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; p.encoded_len(v).expect("encodable")];
    p.emit(v, &mut buf).expect("emit");
    buf
}

fn pid(n: u16) -> Option<PacketId> {
    PacketId::new(n)
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();

    // 1. The common small message: 3.1.1, QoS 0, 64-byte payload.
    let payload64 = [0xA5u8; 64];
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "plant/line-3/press-7/temperature",
        packet_id: None,
        properties: Properties::default(),
        payload: &payload64,
    });
    out.push(Case {
        name: "publish_v311_qos0_64b",
        version: ProtocolVersion::V3_1_1,
        codec: Codec::V4,
        bytes: encode(&p, ProtocolVersion::V3_1_1),
        packets: 1,
    });

    // 2. 5.0, QoS 1, 1 KiB payload, a realistic property set.
    let payload1k = vec![0x5Au8; 1024];
    let up = [
        ("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("tenant", "acme"),
        ("schema", "v3"),
    ];
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "plant/line-3/press-7/telemetry",
        packet_id: pid(4242),
        properties: Properties {
            payload_format_indicator: Some(false),
            message_expiry_interval: Some(3600),
            content_type: Some("application/cbor"),
            response_topic: Some("plant/line-3/press-7/reply"),
            correlation_data: Some(b"corr-0001-abcdef"),
            user_properties: UserProperties::List(&up),
            ..Properties::default()
        },
        payload: &payload1k,
    });
    out.push(Case {
        name: "publish_v5_qos1_props_1k",
        version: ProtocolVersion::V5,
        codec: Codec::V5,
        bytes: encode(&p, ProtocolVersion::V5),
        packets: 1,
    });

    // 3. 5.0 CONNECT with properties, a will with properties, user name and password.
    let cup = [("client", "petrel-bench"), ("region", "eu-west")];
    let wup = [("reason", "offline")];
    let p = Packet::Connect(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        bridge: false,
        keep_alive: 60,
        properties: Properties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(100),
            maximum_packet_size: Some(1 << 20),
            topic_alias_maximum: Some(16),
            request_response_information: Some(true),
            user_properties: UserProperties::List(&cup),
            ..Properties::default()
        },
        client_id: "press-7-controller-0001",
        will: Some(Will {
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                message_expiry_interval: Some(600),
                content_type: Some("text/plain"),
                user_properties: UserProperties::List(&wup),
                ..Properties::default()
            },
            topic: "plant/line-3/press-7/status",
            payload: b"offline",
        }),
        username: Some("press-7"),
        password: Some(b"s3cr3t-t0k3n-0123456789"),
    });
    out.push(Case {
        name: "connect_v5_props_will",
        version: ProtocolVersion::V5,
        codec: Codec::V5,
        bytes: encode(&p, ProtocolVersion::V5),
        packets: 1,
    });

    // 4. 5.0 SUBSCRIBE with 10 filters (mixed options) and a Subscription Identifier.
    let filters: Vec<String> = (0..10)
        .map(|i| match i % 3 {
            0 => format!("plant/line-{i}/+/temperature"),
            1 => format!("plant/line-{i}/press-7/#"),
            _ => format!("plant/line-{i}/press-7/alarms"),
        })
        .collect();
    let subs: Vec<Subscription<'_>> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| Subscription {
            filter: f,
            options: SubscriptionOptions {
                qos: [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i % 3],
                no_local: i % 2 == 0,
                retain_as_published: i % 4 == 0,
                retain_handling: [RetainHandling::SendAtSubscribe, RetainHandling::SendIfNew]
                    [i % 2],
            },
        })
        .collect();
    let ids = [7u32];
    let p = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(17).expect("non-zero"),
        properties: Properties {
            subscription_identifiers: SubscriptionIds::List(&ids),
            ..Properties::default()
        },
        subscriptions: Subscriptions::List(&subs),
    });
    out.push(Case {
        name: "subscribe_10_filters",
        version: ProtocolVersion::V5,
        codec: Codec::V5,
        bytes: encode(&p, ProtocolVersion::V5),
        packets: 1,
    });

    // 5. A read buffer holding 1,000 small 3.1.1 QoS 0 PUBLISH packets.
    let mut stream = Vec::new();
    let payload16 = [0x42u8; 16];
    for i in 0..1000 {
        let topic = format!("sensors/{}/temp", i % 97);
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: &topic,
            packet_id: None,
            properties: Properties::default(),
            payload: &payload16,
        });
        stream.extend(encode(&p, ProtocolVersion::V3_1_1));
    }
    out.push(Case {
        name: "stream_1000_publish",
        version: ProtocolVersion::V3_1_1,
        codec: Codec::V4,
        bytes: stream,
        packets: 1000,
    });
    out
}

/// mqtt-proto: decode every packet of `buf`.
fn petrel_decode_all(buf: &[u8], v: ProtocolVersion) -> usize {
    let mut off = 0;
    let mut n = 0;
    while off < buf.len() {
        match Packet::parse(&buf[off..], v, MAX) {
            Ok(Status::Complete((p, len))) => {
                black_box(&p);
                off += len;
                n += 1;
            }
            other => panic!("petrel: {other:?}"),
        }
    }
    n
}

// Boxing would add an allocation to the mqttbytes side of the measurement.
#[allow(clippy::large_enum_variant)]
enum Mb {
    V4(mqttbytes::v4::Packet),
    V5(mqttbytes::v5::Packet),
}

fn mb_read(buf: &mut BytesMut, c: Codec) -> Mb {
    match c {
        Codec::V4 => Mb::V4(mqttbytes::v4::read(buf, MAX).expect("mqttbytes v4")),
        Codec::V5 => Mb::V5(mqttbytes::v5::read(buf, MAX).expect("mqttbytes v5")),
    }
}

/// mqttbytes: decode every packet of `buf` (consuming it).
fn mqttbytes_decode_all(buf: &mut BytesMut, c: Codec) -> usize {
    let mut n = 0;
    while !buf.is_empty() {
        let p = mb_read(buf, c);
        black_box(&p);
        drop(p);
        n += 1;
    }
    n
}

fn mb_write(p: &Mb, out: &mut BytesMut) -> usize {
    use mqttbytes::{v4, v5};
    let r = match p {
        Mb::V4(v4::Packet::Publish(x)) => x.write(out),
        Mb::V4(v4::Packet::Connect(x)) => x.write(out),
        Mb::V4(v4::Packet::Subscribe(x)) => x.write(out),
        Mb::V5(v5::Packet::Publish(x)) => x.write(out),
        Mb::V5(v5::Packet::Connect(x)) => x.write(out),
        Mb::V5(v5::Packet::Subscribe(x)) => x.write(out),
        _ => panic!("packet type not in the benchmark"),
    };
    r.expect("mqttbytes write")
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for case in cases() {
        // Both libraries must accept the input, and agree on the number of packets.
        assert_eq!(petrel_decode_all(&case.bytes, case.version), case.packets);
        let mut check = BytesMut::from(&case.bytes[..]);
        assert_eq!(mqttbytes_decode_all(&mut check, case.codec), case.packets);

        g.throughput(Throughput::Bytes(case.bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new(case.name, "petrel"), &case, |b, case| {
            b.iter_batched_ref(
                || case.bytes.clone(),
                |buf| petrel_decode_all(buf, case.version),
                BatchSize::SmallInput,
            )
        });
        g.bench_with_input(
            BenchmarkId::new(case.name, "mqttbytes"),
            &case,
            |b, case| {
                b.iter_batched_ref(
                    || BytesMut::from(&case.bytes[..]),
                    |buf| mqttbytes_decode_all(buf, case.codec),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

fn encode_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for case in cases() {
        // Each side encodes its own decoding of the case's bytes.
        let mut petrel_packets = Vec::new();
        let mut off = 0;
        while off < case.bytes.len() {
            let Ok(Status::Complete((p, n))) = Packet::parse(&case.bytes[off..], case.version, MAX)
            else {
                panic!("petrel decode")
            };
            petrel_packets.push(p);
            off += n;
        }
        let mut src = BytesMut::from(&case.bytes[..]);
        let mut mb_packets = Vec::new();
        while !src.is_empty() {
            mb_packets.push(mb_read(&mut src, case.codec));
        }
        let mut out = BytesMut::with_capacity(case.bytes.len() * 2);
        for p in &mb_packets {
            mb_write(p, &mut out);
        }
        // (Compare what was written: mqttbytes 0.6's v5 `Connect::write` returns 3 less than
        // the 212 bytes it writes for connect_v5_props_will.)
        assert_eq!(
            out.len(),
            case.bytes.len(),
            "{}: same encoded size",
            case.name
        );
        // mqtt-proto reads mqttbytes' encoding back as the same packets.
        let mut off = 0;
        for p in &petrel_packets {
            match Packet::parse(&out[off..], case.version, MAX) {
                Ok(Status::Complete((q, n))) => {
                    assert_eq!(&q, p, "{}", case.name);
                    off += n;
                }
                other => panic!("{}: {other:?}", case.name),
            }
        }
        let mut buf = vec![0u8; case.bytes.len()];

        g.throughput(Throughput::Bytes(case.bytes.len() as u64));
        g.bench_function(BenchmarkId::new(case.name, "petrel"), |b| {
            b.iter(|| {
                let mut off = 0;
                for p in &petrel_packets {
                    off += p.emit(case.version, &mut buf[off..]).expect("emit");
                }
                black_box(&buf);
                off
            })
        });
        g.bench_function(BenchmarkId::new(case.name, "mqttbytes"), |b| {
            b.iter(|| {
                out.clear();
                let n: usize = mb_packets.iter().map(|p| mb_write(p, &mut out)).sum();
                black_box(&out);
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode_group);
criterion_main!(benches);
