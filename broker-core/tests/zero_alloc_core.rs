//! In steady state, a PUBLISH through the broker allocates nothing: receiving it, storing
//! it, matching it, queueing it for every subscriber, encoding each subscriber's PUBLISH,
//! the acknowledgements in both directions (QoS 1 and 2) and the events.
//!
//! This binary installs a counting global allocator (one per test binary, hence its own
//! file) that counts the current thread's allocations. Each case drives one `Broker` as a
//! shell does (`handle_bytes`, drain `poll_event`, `poll_transmit` into one reused `TxBuf`
//! per connection, the subscribers' acknowledgements fed back with `handle_bytes` from
//! reused buffers), warms up (connect, subscribe, a few thousand publishes), then counts the
//! allocations of `N` more publishes: there must be none.
//!
//! Covered, for 3.1.1 and 5.0 and for QoS 0, 1 and 2: a publisher and four subscribers,
//! one on the exact topic, one on `+` levels, one on `#`, and one on two overlapping filters
//! (one copy, deduplicated, at the highest QoS). In 5.0 the publisher sends a Content Type,
//! a User Property and a Message Expiry Interval; the subscribers have Subscription
//! Identifiers, and one allows topic aliases (the alias is chosen once, then reused).
//! And the shape of the `core` bench's `topics10k` case, smaller: 1,000 topics, 31
//! subscribers with exact, `+` and `#` filters, QoS 1 and 2, every message acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker_core::{Broker, Config, ConnId, Event, Instant, PeerInfo, Policy, TxBuf};
use mqtt_proto::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // `const` initialisation: touching these never allocates (nor registers a destructor).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the only
// addition is a thread-local counter update, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

const TOPIC: &str = "plant/line-3/press-7/temperature";
const PAYLOAD: [u8; 100] = [7; 100];
const USER: [(&str, &str); 1] = [("source", "test")];
/// Room in the per-connection buffers: never grown during the measurement.
const BUF: usize = 256 * 1024;

fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; p.encoded_len(v).unwrap()];
    let n = p.emit(v, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

struct Peer {
    conn: ConnId,
    tx: TxBuf,
    /// What the peer "read" (the TxBuf's chunks, copied), to parse.
    read: Vec<u8>,
    /// Acknowledgements to send back.
    acks: Vec<u8>,
    publishes: usize,
}

struct World {
    broker: Broker,
    now: Instant,
    v: ProtocolVersion,
    peers: Vec<Peer>,
}

impl World {
    fn peer_of(&self, c: ConnId) -> Option<usize> {
        self.peers.iter().position(|p| p.conn == c)
    }

    fn connect(&mut self, id: &str, alias_max: Option<u16>) -> usize {
        let conn = self
            .broker
            .handle_accept(self.now, PeerInfo::default())
            .unwrap();
        let mut properties = Properties::default();
        if self.v.is_v5() {
            properties.topic_alias_maximum = alias_max;
        }
        let bytes = encode(
            &Packet::Connect(Connect {
                protocol: self.v,
                clean_start: true,
                bridge: false,
                keep_alive: 0,
                properties,
                client_id: id,
                will: None,
                username: None,
                password: None,
            }),
            self.v,
        );
        assert_eq!(
            self.broker.handle_bytes(conn, self.now, &bytes),
            bytes.len()
        );
        self.peers.push(Peer {
            conn,
            tx: TxBuf::with_capacity(BUF),
            read: Vec::with_capacity(BUF),
            acks: Vec::with_capacity(BUF),
            publishes: 0,
        });
        self.drain();
        self.peers.len() - 1
    }

    fn subscribe(&mut self, peer: usize, filters: &[(&str, QoS)], id: u32) {
        let list: Vec<Subscription<'_>> = filters
            .iter()
            .map(|&(filter, qos)| Subscription {
                filter,
                options: SubscriptionOptions::qos(qos),
            })
            .collect();
        let mut properties = Properties::default();
        let ids = [id];
        if self.v.is_v5() {
            properties.subscription_identifiers = SubscriptionIds::List(&ids);
        }
        let bytes = encode(
            &Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(1).unwrap(),
                properties,
                subscriptions: Subscriptions::List(&list),
            }),
            self.v,
        );
        let conn = self.peers[peer].conn;
        assert_eq!(
            self.broker.handle_bytes(conn, self.now, &bytes),
            bytes.len()
        );
        self.drain();
    }

    /// The shell loop: events, transmit, and each peer's answers, until quiet.
    fn drain(&mut self) {
        while let Some(ev) = self.broker.poll_event() {
            let (Event::Output(c) | Event::Close(c)) = ev else {
                continue;
            };
            let Some(i) = self.peer_of(c) else { continue };
            let v = self.v;
            let p = &mut self.peers[i];
            p.read.clear();
            loop {
                let t = self.broker.poll_transmit(c, self.now, &mut p.tx, BUF);
                for chunk in p.tx.chunks() {
                    p.read.extend_from_slice(chunk);
                }
                p.tx.clear();
                if !t.more {
                    break;
                }
            }
            // The peer answers what it read, as a client does.
            p.acks.clear();
            let mut rest = &p.read[..];
            while !rest.is_empty() {
                let Ok(Status::Complete((packet, n))) = Packet::parse(rest, v, usize::MAX) else {
                    panic!("undecodable frame from the broker");
                };
                rest = &rest[n..];
                let (kind, id) = match packet {
                    Packet::Publish(pb) => {
                        p.publishes += 1;
                        match (pb.qos, pb.packet_id) {
                            (QoS::AtLeastOnce, Some(id)) => (0x40, id),
                            (QoS::ExactlyOnce, Some(id)) => (0x50, id),
                            _ => continue,
                        }
                    }
                    // PUBREL: answer PUBCOMP.
                    Packet::PubRel(a) => (0x70, a.packet_id),
                    // PUBREC to the publisher: answer PUBREL.
                    Packet::PubRec(a) => (0x62, a.packet_id),
                    _ => continue,
                };
                p.acks.extend_from_slice(&[kind, 2]);
                p.acks.extend_from_slice(&id.get().to_be_bytes());
            }
            let mut rest = &p.acks[..];
            while !rest.is_empty() {
                let n = self.broker.handle_bytes(c, self.now, rest);
                rest = &rest[n..];
            }
        }
    }
}

/// A world with a publisher (peer 0) and four subscribers; returns it with the publisher's
/// PUBLISH packets (one per packet identifier slot, reused in turn).
fn world(v: ProtocolVersion, qos: QoS) -> (World, Vec<Vec<u8>>) {
    let mut w = World {
        broker: Broker::new(Config::default(), Policy::default()),
        now: Instant::from_millis(1_000_000),
        v,
        peers: Vec::new(),
    };
    w.connect("publisher", None);
    let exact = w.connect("exact", None);
    w.subscribe(exact, &[(TOPIC, QoS::ExactlyOnce)], 1);
    let plus = w.connect("plus", Some(10));
    w.subscribe(plus, &[("plant/+/+/temperature", QoS::AtLeastOnce)], 2);
    let hash = w.connect("hash", None);
    w.subscribe(hash, &[("plant/#", QoS::ExactlyOnce)], 3);
    let both = w.connect("both", None);
    w.subscribe(
        both,
        &[
            ("plant/line-3/#", QoS::AtMostOnce),
            (TOPIC, QoS::ExactlyOnce),
        ],
        4,
    );
    let mut properties = Properties::default();
    if v.is_v5() {
        properties.content_type = Some("text/plain");
        properties.user_properties = UserProperties::List(&USER);
        properties.message_expiry_interval = Some(3600);
    }
    // Packet identifiers 1..=50, reused once acknowledged.
    let packets = (1..=50u16)
        .map(|id| {
            encode(
                &Packet::Publish(Publish {
                    dup: false,
                    qos,
                    retain: false,
                    topic: TOPIC,
                    packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap()),
                    properties,
                    payload: &PAYLOAD,
                }),
                v,
            )
        })
        .collect();
    (w, packets)
}

fn publish(w: &mut World, packet: &[u8]) {
    let conn = w.peers[0].conn;
    let mut rest = packet;
    while !rest.is_empty() {
        let n = w.broker.handle_bytes(conn, w.now, rest);
        rest = &rest[n..];
        w.drain();
    }
}

fn steady_state_allocations(v: ProtocolVersion, qos: QoS) -> usize {
    let (mut w, packets) = world(v, qos);
    // Warm-up: every buffer, queue and map reaches its working size.
    for i in 0..5_000 {
        publish(&mut w, &packets[i % packets.len()]);
    }
    let delivered: usize = w.peers.iter().map(|p| p.publishes).sum();
    assert_eq!(
        delivered,
        4 * 5_000,
        "{v} {qos:?}: every subscriber gets every message"
    );
    const N: usize = 2_000;
    let n = allocations(|| {
        for i in 0..N {
            publish(&mut w, &packets[i % packets.len()]);
        }
    });
    let delivered: usize = w.peers.iter().map(|p| p.publishes).sum();
    assert_eq!(delivered, 4 * (5_000 + N), "{v} {qos:?}");
    for name in ["exact", "plus", "hash", "both"] {
        assert_eq!(
            w.broker.session_queue_len(name),
            Some(0),
            "{name}: all acknowledged"
        );
    }
    n
}

/// The shape of the `topics10k` bench, smaller: 1,000 distinct topics `t/{a}/x/{b}`
/// published in a scattered order at QoS 1; ten subscribers hold 100 exact filters each,
/// ten hold `t/{a}/x/#`, ten `t/+/x/{b % 10}` and one `t/+/+/+` (overlapping the others).
/// Every publish reaches 4 sessions, each acknowledging. Covers the topic index walk, the
/// per-publish hit list and many sessions' queues and in-flight windows.
fn many_topics_allocations(v: ProtocolVersion) -> usize {
    let mut w = World {
        broker: Broker::new(Config::default(), Policy::default()),
        now: Instant::from_millis(1_000_000),
        v,
        peers: Vec::new(),
    };
    w.connect("publisher", None);
    let topic = |i: usize| format!("t/{}/x/{}", i / 100, i % 100);
    for s in 0..10 {
        let p = w.connect(&format!("exact-{s}"), None);
        let filters: Vec<String> = (s * 100..(s + 1) * 100).map(topic).collect();
        let list: Vec<(&str, QoS)> = filters.iter().map(|f| (&**f, QoS::AtLeastOnce)).collect();
        w.subscribe(p, &list, 1);
    }
    for a in 0..10 {
        let p = w.connect(&format!("hash-{a}"), None);
        w.subscribe(p, &[(&format!("t/{a}/x/#"), QoS::AtLeastOnce)], 2);
    }
    for b in 0..10 {
        let p = w.connect(&format!("plus-{b}"), Some(5));
        let filters: Vec<String> = (0..10).map(|k| format!("t/+/x/{}", b + 10 * k)).collect();
        let list: Vec<(&str, QoS)> = filters.iter().map(|f| (&**f, QoS::AtLeastOnce)).collect();
        w.subscribe(p, &list, 3);
    }
    let all = w.connect("all", None);
    w.subscribe(all, &[("t/+/+/+", QoS::ExactlyOnce)], 4);
    let packets: Vec<Vec<u8>> = (0..1000)
        .map(|i| {
            // Scattered order; packet identifiers 1..=50 reused once acknowledged.
            let t = topic((i * 7919) % 1000);
            encode(
                &Packet::Publish(Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: &t,
                    packet_id: PacketId::new((i % 50) as u16 + 1),
                    properties: Properties::default(),
                    payload: &PAYLOAD,
                }),
                v,
            )
        })
        .collect();
    // Warm-up: every topic three times.
    for i in 0..3_000 {
        publish(&mut w, &packets[i % packets.len()]);
    }
    let delivered = |w: &World| w.peers.iter().map(|p| p.publishes).sum::<usize>();
    assert_eq!(delivered(&w), 4 * 3_000, "{v}: four sessions per publish");
    const N: usize = 2_000;
    let n = allocations(|| {
        for i in 0..N {
            publish(&mut w, &packets[i % packets.len()]);
        }
    });
    assert_eq!(delivered(&w), 4 * (3_000 + N), "{v}");
    n
}

#[test]
fn many_topics_and_wildcards_v311() {
    assert_eq!(many_topics_allocations(ProtocolVersion::V3_1_1), 0);
}

#[test]
fn many_topics_and_wildcards_v5() {
    assert_eq!(many_topics_allocations(ProtocolVersion::V5), 0);
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations(|| {
        std::hint::black_box(vec![1u8; 16]);
    });
    assert!(n >= 1);
}

#[test]
fn qos0_v311() {
    assert_eq!(
        steady_state_allocations(ProtocolVersion::V3_1_1, QoS::AtMostOnce),
        0
    );
}

#[test]
fn qos0_v5() {
    assert_eq!(
        steady_state_allocations(ProtocolVersion::V5, QoS::AtMostOnce),
        0
    );
}

#[test]
fn qos1_v311() {
    assert_eq!(
        steady_state_allocations(ProtocolVersion::V3_1_1, QoS::AtLeastOnce),
        0
    );
}

#[test]
fn qos1_v5() {
    assert_eq!(
        steady_state_allocations(ProtocolVersion::V5, QoS::AtLeastOnce),
        0
    );
}

#[test]
fn qos2_v311() {
    assert_eq!(
        steady_state_allocations(ProtocolVersion::V3_1_1, QoS::ExactlyOnce),
        0
    );
}

#[test]
fn qos2_v5() {
    assert_eq!(
        steady_state_allocations(ProtocolVersion::V5, QoS::ExactlyOnce),
        0
    );
}
