//! broker-core's hot path with no I/O: one publisher, N subscribers, one `Broker` shard
//! driven exactly as a shell drives it.
//!
//! Run: `cargo bench -p benches --bench core` (ids `core/<case>`; throughput is in
//! deliveries, so criterion's "elem/s" is deliveries per second).
//!
//! What one iteration does (all of it is timed):
//! - the publisher's socket "reads" a batch of [`BATCH`] pre-encoded PUBLISH packets:
//!   `handle_bytes` until the batch is consumed (the broker parses, stores each message once
//!   in its arena, matches it in the topic index and queues it for every subscriber);
//! - after each `handle_bytes` the shell drains `poll_event`; for every `Output(conn)` it
//!   calls `poll_transmit` into the shard's one transmit buffer and "writes" it (`clear`),
//!   as `runtime-uring` does for a socket that takes everything (`conn::output`: the shard's
//!   `TxBuf`, taken and put back). `CORE_TX_PER_CONN=1` gives every connection its own
//!   64 KiB buffer instead (the bench before 2026-11-24, for comparison: with 1,300
//!   subscribers their buffers are 83 MB of cold memory);
//! - with QoS 1, each subscriber answers every PUBLISH it got with a PUBACK (`handle_bytes`
//!   on the subscriber's connection, from a reused buffer), and the publisher's PUBACKs are
//!   transmitted too.
//!
//! Cases:
//! - `fanout/<proto>_<qos>/<n>`: every publish to one topic that `n` subscribers (1, 10,
//!   1,000) subscribed to with the exact filter;
//! - `topics10k/<proto>_qos0`: 10,000 distinct topics `t/{a}/x/{b}` (a, b in 0..100) published
//!   in turn; 1,300 subscribers hold 10,000 exact filters (10 each), 100 `t/{a}/x/#`, 100
//!   `t/+/x/{b}` and 100 non-matching `t/{a}/y/+`: every publish matches 3 sessions.
//!
//! `v311` is 3.1.1 everywhere; `v5` is 5.0 everywhere, the publisher sending a Content Type
//! and a User Property that are forwarded. Payloads are 64 bytes (copied next to their
//! header, below `inline_payload_max`).
use broker_core::{Broker, Config, ConnId, Event, Instant, PeerInfo, Policy, TxBuf};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mqtt_proto::{
    Connect, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, Subscribe, Subscription,
    SubscriptionOptions, Subscriptions, UserProperties,
};
use std::time::Duration;

/// PUBLISH packets per publisher read.
const BATCH: usize = 50;
/// `poll_transmit` budget (bytes per call), as a shell's pooled buffer.
const BUDGET: usize = 64 * 1024;
const PAYLOAD: [u8; 64] = [0x5A; 64];
const USER: [(&str, &str); 1] = [("source", "bench")];

fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; p.encoded_len(v).expect("encodable")];
    let n = p.emit(v, &mut buf).expect("emit");
    buf.truncate(n);
    buf
}

fn publish_bytes(topic: &str, qos: QoS, pid: u16, v: ProtocolVersion) -> Vec<u8> {
    let mut properties = Properties::default();
    if v.is_v5() {
        properties.content_type = Some("application/octet-stream");
        properties.user_properties = UserProperties::List(&USER);
    }
    encode(
        &Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(pid).expect("pid")),
            properties,
            payload: &PAYLOAD,
        }),
        v,
    )
}

struct Peer {
    conn: ConnId,
    /// This connection's own buffer, with `CORE_TX_PER_CONN` (else unused).
    tx: TxBuf,
    /// Next packet identifier the broker will use towards this subscriber (it allocates
    /// them in order and every PUBLISH is acknowledged in order).
    next_pid: u16,
    /// PUBACKs to send, reused.
    acks: Vec<u8>,
}

fn connect(broker: &mut Broker, now: Instant, v: ProtocolVersion, id: &str) -> ConnId {
    let conn = broker
        .handle_accept(now, PeerInfo::default())
        .expect("accept");
    let c = Connect {
        protocol: v,
        clean_start: true,
        bridge: false,
        keep_alive: 0,
        properties: Properties::default(),
        client_id: id,
        will: None,
        username: None,
        password: None,
    };
    let bytes = encode(&Packet::Connect(c), v);
    assert_eq!(broker.handle_bytes(conn, now, &bytes), bytes.len());
    drain_setup(broker, now);
    conn
}

/// Setup traffic (CONNACK, SUBACK): transmitted and dropped.
fn drain_setup(broker: &mut Broker, now: Instant) {
    let mut tx = TxBuf::new();
    while let Some(ev) = broker.poll_event() {
        if let Event::Output(c) | Event::Close(c) = ev {
            while broker.poll_transmit(c, now, &mut tx, BUDGET).more {
                tx.clear();
            }
            tx.clear();
        }
    }
}

/// One broker shard and its clients, driven like a shell.
struct World {
    broker: Broker,
    now: Instant,
    v: ProtocolVersion,
    qos: QoS,
    publisher: Peer,
    subs: Vec<Peer>,
    /// Connection slot index to subscriber index.
    slot: Vec<usize>,
    /// The shard's transmit buffer.
    tx: TxBuf,
    per_conn_tx: bool,
    deliveries: u64,
}

const PUBLISHER: usize = usize::MAX;
const NOBODY: usize = usize::MAX - 1;

impl World {
    fn new(v: ProtocolVersion, qos: QoS) -> Self {
        let mut broker = Broker::new(Config::default(), Policy::default());
        let now = Instant::from_millis(1_000);
        let conn = connect(&mut broker, now, v, "publisher");
        let mut w = World {
            broker,
            now,
            v,
            qos,
            publisher: Peer {
                conn,
                tx: TxBuf::with_capacity(BUDGET),
                next_pid: 1,
                acks: Vec::new(),
            },
            subs: Vec::new(),
            slot: Vec::new(),
            tx: TxBuf::with_capacity(BUDGET),
            per_conn_tx: std::env::var_os("CORE_TX_PER_CONN").is_some(),
            deliveries: 0,
        };
        w.set_slot(conn, PUBLISHER);
        w
    }

    fn set_slot(&mut self, c: ConnId, who: usize) {
        let i = c.index() as usize;
        if self.slot.len() <= i {
            self.slot.resize(i + 1, NOBODY);
        }
        self.slot[i] = who;
    }

    fn subscriber(&mut self, filters: &[String]) {
        let id = format!("sub-{}", self.subs.len());
        let conn = connect(&mut self.broker, self.now, self.v, &id);
        let list: Vec<Subscription<'_>> = filters
            .iter()
            .map(|f| Subscription {
                filter: f,
                options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            })
            .collect();
        let bytes = encode(
            &Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(1).expect("pid"),
                properties: Properties::default(),
                subscriptions: Subscriptions::List(&list),
            }),
            self.v,
        );
        assert_eq!(
            self.broker.handle_bytes(conn, self.now, &bytes),
            bytes.len()
        );
        self.drain_setup();
        self.set_slot(conn, self.subs.len());
        self.subs.push(Peer {
            conn,
            tx: if self.per_conn_tx {
                TxBuf::with_capacity(BUDGET)
            } else {
                TxBuf::new()
            },
            next_pid: 1,
            acks: Vec::with_capacity(4 * BATCH * 8),
        });
    }

    fn drain_setup(&mut self) {
        drain_setup(&mut self.broker, self.now);
    }

    /// Feeds a batch of encoded packets from the publisher and runs the shell loop until
    /// everything is delivered (and acknowledged).
    fn publish(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self
                .broker
                .handle_bytes(self.publisher.conn, self.now, bytes);
            bytes = &bytes[n..];
            self.drain();
        }
    }

    fn drain(&mut self) {
        while let Some(ev) = self.broker.poll_event() {
            let Event::Output(c) = ev else { continue };
            let who = self.slot.get(c.index() as usize).copied().unwrap_or(NOBODY);
            let peer = match who {
                PUBLISHER => &mut self.publisher,
                NOBODY => continue,
                i => &mut self.subs[i],
            };
            let mut frames = 0;
            loop {
                let tx = if self.per_conn_tx {
                    &mut peer.tx
                } else {
                    &mut self.tx
                };
                let t = self.broker.poll_transmit(c, self.now, tx, BUDGET);
                frames += t.frames;
                // "Written".
                tx.clear();
                if !t.more {
                    break;
                }
            }
            if who == PUBLISHER {
                continue;
            }
            self.deliveries += frames as u64;
            if self.qos != QoS::AtMostOnce && frames > 0 {
                peer.acks.clear();
                for _ in 0..frames {
                    let pid = PacketId::new(peer.next_pid).expect("pid");
                    peer.next_pid = peer.next_pid.checked_add(1).unwrap_or(1);
                    // PUBACK: 0x40, remaining length 2, packet id.
                    peer.acks.extend_from_slice(&[0x40, 2]);
                    peer.acks.extend_from_slice(&pid.get().to_be_bytes());
                }
                let mut rest = &peer.acks[..];
                while !rest.is_empty() {
                    let n = self.broker.handle_bytes(c, self.now, rest);
                    rest = &rest[n..];
                }
            }
        }
    }
}

/// A case: its world and the publisher's batches (each `BATCH` packets).
struct Case {
    name: String,
    world: World,
    batches: Vec<Vec<u8>>,
    deliveries_per_batch: u64,
}

fn proto_name(v: ProtocolVersion) -> &'static str {
    if v.is_v5() {
        "v5"
    } else {
        "v311"
    }
}

fn qos_name(q: QoS) -> &'static str {
    match q {
        QoS::AtMostOnce => "qos0",
        QoS::AtLeastOnce => "qos1",
        QoS::ExactlyOnce => "qos2",
    }
}

fn fanout(v: ProtocolVersion, qos: QoS, n: usize) -> Case {
    let topic = "plant/line-3/press-7/temperature";
    let mut world = World::new(v, qos);
    for _ in 0..n {
        world.subscriber(&[topic.to_string()]);
    }
    let mut batch = Vec::new();
    for i in 0..BATCH {
        batch.extend(publish_bytes(topic, qos, i as u16 + 1, v));
    }
    Case {
        name: format!("fanout/{}_{}/{n}", proto_name(v), qos_name(qos)),
        world,
        batches: vec![batch],
        deliveries_per_batch: (BATCH * n) as u64,
    }
}

fn topics10k(v: ProtocolVersion) -> Case {
    let mut world = World::new(v, QoS::AtMostOnce);
    for a in 0..100 {
        world.subscriber(&[format!("t/{a}/x/#")]);
    }
    for b in 0..100 {
        world.subscriber(&[format!("t/+/x/{b}")]);
    }
    for a in 0..100 {
        world.subscriber(&[format!("t/{a}/y/+")]);
    }
    for s in 0..1000 {
        let filters: Vec<String> = (0..10)
            .map(|k| {
                let i = s * 10 + k;
                format!("t/{}/x/{}", i / 100, i % 100)
            })
            .collect();
        world.subscriber(&filters);
    }
    // Topics in an order that spreads consecutive publishes over the index.
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    for i in 0..10_000usize {
        let j = (i * 7919) % 10_000;
        batch.extend(publish_bytes(
            &format!("t/{}/x/{}", j / 100, j % 100),
            QoS::AtMostOnce,
            1,
            v,
        ));
        if (i + 1) % BATCH == 0 {
            batches.push(std::mem::take(&mut batch));
        }
    }
    Case {
        name: format!("topics10k/{}_qos0", proto_name(v)),
        world,
        batches,
        deliveries_per_batch: (BATCH * 3) as u64,
    }
}

fn cases() -> Vec<Case> {
    let (v3, v5) = (ProtocolVersion::V3_1_1, ProtocolVersion::V5);
    let mut out = Vec::new();
    for v in [v3, v5] {
        for n in [1, 10, 1000] {
            out.push(fanout(v, QoS::AtMostOnce, n));
        }
    }
    for v in [v3, v5] {
        for n in [1, 10, 1000] {
            out.push(fanout(v, QoS::AtLeastOnce, n));
        }
    }
    out.push(topics10k(v3));
    out.push(topics10k(v5));
    out
}

/// `CORE_ITERS=n`: instead of criterion, runs `n` iterations of each selected case after
/// the warm-up and prints instructions-friendly totals (for `valgrind --tool=callgrind`,
/// whose instruction counts are repeatable on a noisy machine).
fn fixed_iterations(filter: Option<&str>, iters: usize) {
    for mut case in cases() {
        // Exact names here (`core/fanout/v311_qos0/1` is not `.../10`).
        if filter.is_some_and(|f| format!("core/{}", case.name) != f) {
            continue;
        }
        for _ in 0..2 {
            for b in &case.batches {
                case.world.publish(b);
            }
        }
        let before = case.world.deliveries;
        let start = std::time::Instant::now();
        let cpu = thread_cpu_secs();
        for i in 0..iters {
            let b = &case.batches[i % case.batches.len()];
            case.world.publish(b);
        }
        let n = case.world.deliveries - before;
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_secs() - cpu;
        println!(
            "core/{}: {n} deliveries in {secs:.3} s wall ({:.2} M/s), {cpu:.3} s CPU ({:.2} M/s)",
            case.name,
            n as f64 / secs / 1e6,
            n as f64 / cpu / 1e6
        );
    }
}

/// This thread's CPU time (less disturbed than wall time on a shared machine).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The positional name filter among criterion's arguments (cases are expensive to set up,
/// so unselected ones are skipped). The values of options such as `--measurement-time 3`
/// are not filters.
fn name_filter(args: impl Iterator<Item = String>) -> Option<String> {
    const WITH_VALUE: [&str; 14] = [
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--output-format",
        "--color",
        "--profile-time",
    ];
    let mut skip_next = false;
    for a in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if a.starts_with('-') {
            skip_next = WITH_VALUE.contains(&a.as_str()) || a == "--plotting-backend";
            continue;
        }
        return Some(a);
    }
    None
}

fn bench(c: &mut Criterion) {
    let filter = name_filter(std::env::args().skip(1));
    if let Some(n) = std::env::var("CORE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return fixed_iterations(filter.as_deref(), n);
    }
    let mut g = c.benchmark_group("core");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    for mut case in cases() {
        if filter
            .as_deref()
            .is_some_and(|f| !format!("core/{}", case.name).contains(f))
        {
            continue;
        }
        // Warm up (and check the deliveries) outside the timed region.
        let before = case.world.deliveries;
        for _ in 0..20 {
            for b in &case.batches {
                case.world.publish(b);
            }
        }
        let expected = 20 * case.batches.len() as u64 * case.deliveries_per_batch;
        assert_eq!(case.world.deliveries - before, expected, "{}", case.name);
        g.throughput(Throughput::Elements(case.deliveries_per_batch));
        let mut i = 0;
        g.bench_function(&case.name, |b| {
            b.iter(|| {
                let batch = &case.batches[i];
                i = (i + 1) % case.batches.len();
                case.world.publish(batch);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
