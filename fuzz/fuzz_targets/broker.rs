//! `broker`: the whole sans-IO broker under arbitrary client behaviour.
//!
//! Two shards in one `broker_core::sim::Sim` (connections handed to the shard owning their
//! client identifier, shard messages moved between them by the harness), small limits, and
//! up to eight clients, 3.1, 3.1.1 or 5.0. The input is a script (`arbitrary`): open a
//! connection, send raw bytes, or send a VALID packet built from the input (CONNECT with
//! wills and MQTT 5 limits, SUBSCRIBE with wildcards, shared groups and options,
//! UNSUBSCRIBE, PUBLISH at any QoS with retain, properties and topic aliases, the four
//! acknowledgements, PINGREQ, DISCONNECT, AUTH), move the clock (keep alive, will delay,
//! session and message expiry), drop a socket.
//!
//! Checks, after every step:
//! - no panic (in the broker and in the harness);
//! - every frame the broker sends decodes with `mqtt-proto` in the connection's version
//!   (the version of the client's CONNECT as the broker reads it), whole, and no frame is
//!   larger than the Maximum Packet Size the client announced; a Topic Alias it sends is
//!   within the client's Topic Alias Maximum;
//! - memory stays bounded: connections, sessions, retained messages, subscription filters
//!   and each session's queue stay under the `Config` limits and what the script created.
#![no_main]

use arbitrary::{Result, Unstructured};
use broker_core::sim::{Client, Sim};
use broker_core::{Config, Instant};
use libfuzzer_sys::fuzz_target;
use mqtt_proto::*;

const CLIENT_IDS: [&str; 5] = ["a", "b", "c", "dd", ""];
const TOPICS: [&str; 8] = ["a", "a/b", "a/b/c", "b", "$SYS/x", "a//b", "/", "ü/€"];
const FILTERS: [&str; 12] = [
    "#",
    "+",
    "a/#",
    "a/+",
    "a/b",
    "+/b/#",
    "$share/g/a/#",
    "$share/g/#",
    "$share/h/+",
    "$SYS/#",
    "a/b/c",
    "+/+",
];
const MAX_CLIENTS: usize = 8;

/// `BROKER_FUZZ_TRACE=1` prints the script as it runs (to read a crash).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("BROKER_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($t:tt)*) => {
        if tracing() {
            eprintln!($($t)*);
        }
    };
}

fn config() -> Config {
    Config {
        max_packet_size: 2048,
        receive_maximum: 4,
        max_inflight_messages: 3,
        max_queued_messages: 6,
        max_queued_bytes: 4096,
        queue_qos0_messages: true,
        topic_alias_maximum: 3,
        max_subscriptions_per_session: 5,
        max_retained_messages: 6,
        inline_payload_max: 16,
        arena_chunk: 256,
        max_packets_per_read: 4,
        max_pending_control: 8,
        max_connections: 12,
        connect_timeout_ms: 5_000,
        persistent_client_expiration: Some(100),
        // Small enough that held publishers fill what they may set aside.
        max_held_input: 512,
        stall_timeout_ms: 2_000,
        ..Config::default()
    }
}

/// What the harness knows of one client.
struct Peer {
    client: Client,
    /// The first bytes sent (to know the protocol level the broker reads).
    head: Vec<u8>,
    /// Maximum Packet Size and Topic Alias Maximum of the client's first CONNECT, if it was
    /// sent as a valid packet.
    max_packet: Option<u32>,
    alias_max: u16,
    version: ProtocolVersion,
}

/// The protocol level of the first packet in `bytes`, as the broker reads it.
fn level(bytes: &[u8]) -> Option<u8> {
    let Ok(Status::Complete(h)) = FixedHeader::parse(bytes, usize::MAX) else {
        return None;
    };
    let body = bytes.get(h.header_len..)?;
    let n = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    body.get(2 + n).copied()
}

fn pick<'a, T: Copy>(u: &mut Unstructured<'a>, xs: &[T]) -> Result<T> {
    u.choose(xs).copied()
}

fn qos(u: &mut Unstructured<'_>) -> Result<QoS> {
    pick(u, &[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn pid(u: &mut Unstructured<'_>) -> Result<PacketId> {
    Ok(PacketId::new(u.int_in_range(1..=6)?).unwrap_or(PacketId::MIN))
}

fn version(u: &mut Unstructured<'_>) -> Result<ProtocolVersion> {
    pick(
        u,
        &[
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
            ProtocolVersion::V5,
        ],
    )
}

fn payload<'a>(u: &mut Unstructured<'a>) -> Result<&'a [u8]> {
    let n = u.int_in_range(0..=40)?;
    u.bytes(n.min(u.len()))
}

fn reason(u: &mut Unstructured<'_>, t: PacketType) -> Result<ReasonCode> {
    let codes: Vec<ReasonCode> = (0..=255u8)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.valid_in(t))
        .collect();
    if codes.is_empty() {
        return Ok(ReasonCode::Success);
    }
    pick(u, &codes)
}

struct World {
    sim: Sim,
    peers: Vec<Peer>,
}

impl World {
    fn send(&mut self, i: usize, bytes: &[u8]) {
        let Some(p) = self.peers.get_mut(i) else { return };
        trace!("  client {i} sends {bytes:02x?}");
        if p.head.len() < 64 {
            let n = (64 - p.head.len()).min(bytes.len());
            p.head.extend_from_slice(&bytes[..n]);
        }
        let c = p.client;
        self.sim.send_bytes(c, bytes);
    }

    fn send_packet(&mut self, i: usize, packet: &Packet<'_>) {
        let Some(p) = self.peers.get(i) else { return };
        let v = p.version;
        let Ok(n) = packet.encoded_len(v) else { return };
        trace!("client {i} ({v}): {packet:?}");
        let mut buf = vec![0u8; n];
        if packet.emit(v, &mut buf).is_ok() {
            self.send(i, &buf);
        }
    }

    /// Reads and checks everything the broker sent.
    fn check_frames(&mut self) {
        for p in &mut self.peers {
            let v = match level(&p.head) {
                Some(5) => ProtocolVersion::V5,
                Some(3) => ProtocolVersion::V3_1,
                _ => ProtocolVersion::V3_1_1,
            };
            for f in self.sim.recv(p.client) {
                trace!("  to client {:?}: {:02x?}", p.client, f.bytes);
                let packet = match Packet::parse(&f.bytes, v, usize::MAX) {
                    Ok(Status::Complete((packet, n))) => {
                        assert_eq!(n, f.bytes.len(), "frame length");
                        packet
                    }
                    other => panic!("undecodable frame {:02x?} ({v}): {other:?}", f.bytes),
                };
                if let Some(max) = p.max_packet {
                    assert!(
                        f.bytes.len() <= max as usize,
                        "frame of {} bytes above the client's maximum {max}: {packet:?}",
                        f.bytes.len()
                    );
                }
                if let Packet::Publish(pb) = packet {
                    if let Some(a) = pb.properties.topic_alias {
                        assert!(a <= p.alias_max, "topic alias {a} above {}", p.alias_max);
                    }
                }
            }
        }
    }

    fn check_bounds(&self) {
        let cfg = config();
        for b in &self.sim.brokers {
            assert!(b.connection_count() <= cfg.max_connections);
            // Sessions: one per client identifier used, plus assigned identifiers (at most one
            // per connection opened).
            assert!(b.session_count() <= CLIENT_IDS.len() + MAX_CLIENTS);
            assert!(b.retained_count() <= cfg.max_retained_messages);
            assert!(
                b.subscription_filter_count() <= FILTERS.len() + 8,
                "filters: {}",
                b.subscription_filter_count()
            );
            for id in CLIENT_IDS.iter().filter(|s| !s.is_empty()) {
                if let Some(n) = b.session_queue_len(id) {
                    // Queue + in flight + the retained backlog of its subscriptions.
                    let bound = cfg.max_queued_messages
                        + usize::from(cfg.max_inflight_messages)
                        + cfg.max_retained_messages;
                    assert!(n <= bound, "session {id}: {n} messages waiting");
                }
            }
        }
    }
}

fn step(w: &mut World, u: &mut Unstructured<'_>) -> Result<()> {
    let op = u.int_in_range(0..=15u8)?;
    let n = w.peers.len();
    let who = if n == 0 { 0 } else { u.int_in_range(0..=n - 1)? };
    match op {
        0 if n < MAX_CLIENTS => {
            let shard = u.int_in_range(0..=1)?;
            let v = version(u)?;
            trace!("open client {n} on shard {shard} ({v})");
            if let Some(client) = w.sim.open(shard, v) {
                w.peers.push(Peer {
                    client,
                    head: Vec::new(),
                    max_packet: None,
                    alias_max: 0,
                    version: v,
                });
            }
        }
        1 => {
            let len = u.int_in_range(0..=64)?;
            let bytes = u.bytes(len.min(u.len()))?;
            w.send(who, bytes);
        }
        2 | 3 => {
            let Some(v) = w.peers.get(who).map(|p| p.version) else {
                return Ok(());
            };
            let mut c = Connect {
                protocol: v,
                clean_start: u.arbitrary()?,
                // The bridge bit exists in 3.1 and 3.1.1 only.
                bridge: !v.is_v5() && u.arbitrary()?,
                keep_alive: pick(u, &[0, 0, 1, 5, 60])?,
                properties: Properties::default(),
                client_id: pick(u, &CLIENT_IDS)?,
                will: None,
                username: None,
                password: None,
            };
            if v.is_v5() {
                c.properties.session_expiry_interval = pick(u, &[None, Some(0), Some(3), Some(u32::MAX)])?;
                c.properties.receive_maximum = pick(u, &[None, Some(1), Some(2)])?;
                c.properties.maximum_packet_size = pick(u, &[None, Some(30), Some(60), Some(200)])?;
                c.properties.topic_alias_maximum = pick(u, &[None, Some(1), Some(2)])?;
                c.properties.request_problem_information = pick(u, &[None, Some(false)])?;
            }
            let will_payload = payload(u)?;
            if u.arbitrary::<bool>()? {
                let mut properties = Properties::default();
                if v.is_v5() {
                    properties.will_delay_interval = pick(u, &[None, Some(0), Some(2)])?;
                    properties.message_expiry_interval = pick(u, &[None, Some(1), Some(10)])?;
                    properties.content_type = pick(u, &[None, Some("text/plain")])?;
                }
                c.will = Some(Will {
                    qos: qos(u)?,
                    retain: u.arbitrary()?,
                    properties,
                    topic: pick(u, &TOPICS)?,
                    payload: will_payload,
                });
            }
            if let Some(p) = w.peers.get_mut(who) {
                if p.head.is_empty() {
                    p.max_packet = c.properties.maximum_packet_size;
                    p.alias_max = c.properties.topic_alias_maximum.unwrap_or(0);
                }
            }
            w.send_packet(who, &Packet::Connect(c));
        }
        4 | 5 => {
            let k = u.int_in_range(1..=3)?;
            let mut subs = Vec::new();
            for _ in 0..k {
                let mut options = SubscriptionOptions::qos(qos(u)?);
                options.no_local = u.arbitrary()?;
                options.retain_as_published = u.arbitrary()?;
                options.retain_handling = pick(
                    u,
                    &[
                        RetainHandling::SendAtSubscribe,
                        RetainHandling::SendIfNew,
                        RetainHandling::DoNotSend,
                    ],
                )?;
                subs.push(Subscription {
                    filter: pick(u, &FILTERS)?,
                    options,
                });
            }
            let ids = [u.int_in_range(1..=3u32)?];
            let mut properties = Properties::default();
            if u.arbitrary::<bool>()? {
                properties.subscription_identifiers = SubscriptionIds::List(&ids);
            }
            w.send_packet(
                who,
                &Packet::Subscribe(Subscribe {
                    packet_id: pid(u)?,
                    properties,
                    subscriptions: Subscriptions::List(&subs),
                }),
            );
        }
        6 => {
            let filters = [pick(u, &FILTERS)?];
            w.send_packet(
                who,
                &Packet::Unsubscribe(Unsubscribe {
                    packet_id: pid(u)?,
                    properties: Properties::default(),
                    filters: TopicFilters::List(&filters),
                }),
            );
        }
        7..=9 => {
            let q = qos(u)?;
            let mut properties = Properties::default();
            let mut topic = pick(u, &TOPICS)?;
            if u.arbitrary::<bool>()? {
                properties.topic_alias = Some(u.int_in_range(1..=4)?);
                if u.arbitrary::<bool>()? {
                    topic = "";
                }
            }
            properties.message_expiry_interval = pick(u, &[None, Some(1), Some(100)])?;
            properties.payload_format_indicator = pick(u, &[None, Some(true)])?;
            properties.response_topic = pick(u, &[None, Some("r/t")])?;
            properties.correlation_data = pick(u, &[None, Some(&b"id"[..])])?;
            let users = [("k", "v"), ("k", "w")];
            if u.arbitrary::<bool>()? {
                properties.user_properties = UserProperties::List(&users);
            }
            let dup = q != QoS::AtMostOnce && u.arbitrary()?;
            let p = Publish {
                dup,
                qos: q,
                retain: u.arbitrary()?,
                topic,
                packet_id: if q == QoS::AtMostOnce { None } else { Some(pid(u)?) },
                properties,
                payload: payload(u)?,
            };
            w.send_packet(who, &Packet::Publish(p));
        }
        10 => {
            let kind = pick(
                u,
                &[
                    PacketType::PubAck,
                    PacketType::PubRec,
                    PacketType::PubRel,
                    PacketType::PubComp,
                ],
            )?;
            let ack = Ack {
                packet_id: pid(u)?,
                reason_code: reason(u, kind)?,
                properties: Properties::default(),
            };
            let p = match kind {
                PacketType::PubAck => Packet::PubAck(ack),
                PacketType::PubRec => Packet::PubRec(ack),
                PacketType::PubRel => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            };
            w.send_packet(who, &p);
        }
        11 => w.send_packet(who, &Packet::PingReq),
        12 => {
            let mut d = Disconnect::new(reason(u, PacketType::Disconnect)?);
            d.properties.session_expiry_interval = pick(u, &[None, Some(0), Some(5)])?;
            w.send_packet(who, &Packet::Disconnect(d));
        }
        13 => {
            let mut a = Auth {
                reason_code: reason(u, PacketType::Auth)?,
                properties: Properties::default(),
            };
            a.properties.authentication_method = Some("none");
            w.send_packet(who, &Packet::Auth(a));
        }
        14 => {
            let ms = pick(u, &[1, 500, 1_000, 3_000, 10_000, 100_000])?;
            trace!("advance {ms} ms");
            w.sim.advance(ms);
        }
        15 => {
            if let Some(p) = w.peers.get(who) {
                let c = p.client;
                trace!("client {who}: socket dropped");
                w.sim.drop_connection(c);
            }
        }
        _ => {}
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut w = World {
        sim: Sim::new(config(), 2),
        peers: Vec::new(),
    };
    w.sim.now = Instant::from_millis(1_000_000);
    for _ in 0..200 {
        if u.is_empty() || step(&mut w, &mut u).is_err() {
            break;
        }
        w.check_frames();
        w.check_bounds();
    }
    // Everything left: time passes, every socket drops, every session expires.
    w.sim.advance(1_000_000);
    for p in &w.peers {
        let c = p.client;
        w.sim.drop_connection(c);
    }
    w.sim.advance(10_000_000);
    w.check_frames();
    w.check_bounds();
});
