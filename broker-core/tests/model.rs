//! Model-based test: random sequences of connects (clean or resuming, MQTT 3.1.1 or 5.0,
//! takeovers included), normal and abrupt disconnects, subscribes, unsubscribes,
//! publishes at QoS 0/1/2 (some retained), clients that stop acknowledging, and clock
//! jumps, on one and on three shards, checked against a small reference model:
//!
//! - nothing is delivered to a session that was not subscribed when the message was
//!   published (retained messages: to a session that subscribed to a matching filter),
//!   and a live delivery has the QoS the model expects (published QoS capped by the
//!   highest matching subscription);
//! - QoS 1 messages are delivered at least once and QoS 2 exactly once to every session
//!   that was subscribed, unless the session ended or the broker reported a drop;
//! - per publisher, topic and QoS, messages arrive in the order they were published;
//! - Session Present in CONNACK is what the model expects;
//! - session queues stay within their bounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use broker_core::sim::{Client, Sim};
use broker_core::Config;
use common::*;
use mqtt_proto::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

const CLIENTS: usize = 4;
const TOPICS: [&str; 3] = ["t/a", "t/b", "u"];
const FILTERS: [&str; 5] = ["t/a", "t/+", "#", "u", "t/#"];
const EXPIRIES: [u32; 3] = [0, 5, 3600];
const MAX_QUEUED: usize = 6;
const MAX_INFLIGHT: u16 = 3;

#[derive(Debug, Clone)]
enum Op {
    Connect {
        c: usize,
        clean: bool,
        expiry: usize,
        v5: bool,
        via: usize,
    },
    Disconnect {
        c: usize,
    },
    Crash {
        c: usize,
    },
    Subscribe {
        c: usize,
        f: usize,
        qos: u8,
    },
    Unsubscribe {
        c: usize,
        f: usize,
    },
    Publish {
        c: usize,
        t: usize,
        qos: u8,
        retain: bool,
    },
    SetAck {
        c: usize,
        on: bool,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS;
    prop_oneof![
        3 => (c.clone(), any::<bool>(), 0..EXPIRIES.len(), any::<bool>(), 0..3usize)
            .prop_map(|(c, clean, expiry, v5, via)| Op::Connect { c, clean, expiry, v5, via }),
        1 => c.clone().prop_map(|c| Op::Disconnect { c }),
        1 => c.clone().prop_map(|c| Op::Crash { c }),
        3 => (c.clone(), 0..FILTERS.len(), 0..3u8).prop_map(|(c, f, qos)| Op::Subscribe { c, f, qos }),
        1 => (c.clone(), 0..FILTERS.len()).prop_map(|(c, f)| Op::Unsubscribe { c, f }),
        8 => (c.clone(), 0..TOPICS.len(), 0..3u8, prop::bool::weighted(0.15))
            .prop_map(|(c, t, qos, retain)| Op::Publish { c, t, qos, retain }),
        1 => (c.clone(), prop::bool::weighted(0.6)).prop_map(|(c, on)| Op::SetAck { c, on }),
        1 => prop::sample::select(vec![0u64, 1_000, 4_000, 6_000, 30_000]).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn qos(n: u8) -> QoS {
    QoS::from_u8(n).unwrap()
}

/// The model's view of one session.
#[derive(Debug, Clone)]
struct MSession {
    epoch: u64,
    subs: BTreeMap<&'static str, QoS>,
    ever: HashSet<&'static str>,
    /// Seconds; `u32::MAX` never.
    expiry: u32,
    /// When the connection closed, if it did.
    offline_since: Option<u64>,
}

#[derive(Debug)]
struct Msg {
    publisher: usize,
    seq: u64,
    topic: &'static str,
    retain: bool,
    /// (client, epoch) -> QoS of the delivery.
    eligible: HashMap<(usize, u64), QoS>,
    /// The publisher got its PUBACK or PUBREC: from then on the broker owns the message.
    /// (A publisher the broker holds back may close before; those were never promised.)
    acked: bool,
}

#[derive(Debug, Default)]
struct TestClient {
    handle: Option<Client>,
    v5: bool,
    ack: bool,
    /// Acknowledgements not sent while `ack` is off: (kind, packet id).
    owed: Vec<(PacketType, u16)>,
    /// QoS 2 packet identifiers received and not yet released (client session state).
    pending2: HashSet<u16>,
    next_pid: u16,
    seq: u64,
    /// Its QoS 1/2 PUBLISH packets not yet acknowledged: packet id -> message.
    unacked: HashMap<u16, usize>,
}

struct World {
    sim: Sim,
    log: Log,
    shards: usize,
    clients: Vec<TestClient>,
    sessions: Vec<Option<MSession>>,
    next_epoch: u64,
    msgs: Vec<Msg>,
    /// (client, epoch, message) -> application deliveries (live, not retained).
    delivered: HashMap<(usize, u64, usize), u32>,
    /// (client, epoch, publisher, topic, qos) -> sequence numbers of first deliveries.
    order: HashMap<(usize, u64, usize, &'static str, u8), Vec<u64>>,
    /// (client id string, payload) the broker reported as dropped.
    drops: HashSet<(String, String)>,
}

fn id(c: usize) -> String {
    format!("client-{c}")
}

impl World {
    fn new(shards: usize) -> Self {
        let cfg = Config {
            max_queued_messages: MAX_QUEUED,
            max_inflight_messages: MAX_INFLIGHT,
            ..Config::default()
        };
        let (sim, log) = sim_logged(cfg, shards);
        World {
            sim,
            log,
            shards,
            clients: (0..CLIENTS)
                .map(|_| TestClient {
                    ack: true,
                    next_pid: 1,
                    ..TestClient::default()
                })
                .collect(),
            sessions: vec![None; CLIENTS],
            next_epoch: 1,
            msgs: Vec::new(),
            delivered: HashMap::new(),
            order: HashMap::new(),
            drops: HashSet::new(),
        }
    }

    fn now(&self) -> u64 {
        self.sim.now.as_millis()
    }

    /// The connection of client `c` closed (for any reason): the session ends when its
    /// expiry is 0.
    fn model_closed(&mut self, c: usize) {
        let now = self.now();
        if let Some(s) = self.sessions[c].as_mut() {
            if s.expiry == 0 {
                self.sessions[c] = None;
            } else {
                s.offline_since = Some(now);
            }
        }
        let tc = &mut self.clients[c];
        tc.handle = None;
        tc.owed.clear();
        tc.unacked.clear();
    }

    fn expire(&mut self) {
        let now = self.now();
        for s in self.sessions.iter_mut() {
            let ended = s.as_ref().is_some_and(|s| {
                s.expiry != u32::MAX
                    && s.offline_since
                        .is_some_and(|t| t + u64::from(s.expiry) * 1000 <= now)
            });
            if ended {
                *s = None;
            }
        }
    }

    /// Whether the broker holds the client's input back (see `Broker::input_held`).
    fn held(&self, h: Client) -> bool {
        self.sim
            .conn_id(h)
            .is_some_and(|(shard, conn)| self.sim.brokers[shard].input_held(conn))
    }

    fn pid(&mut self, c: usize) -> u16 {
        let tc = &mut self.clients[c];
        let p = tc.next_pid;
        tc.next_pid = if p >= 60_000 { 1 } else { p + 1 };
        p
    }

    fn send_ack(&mut self, c: usize, kind: PacketType, pid: u16) {
        let tc = &mut self.clients[c];
        let Some(h) = tc.handle else { return };
        if tc.ack {
            common::send_ack(&mut self.sim, h, kind, pid);
        } else {
            tc.owed.push((kind, pid));
        }
    }

    /// Reads what every connected client received, acknowledging as configured, until
    /// nothing moves.
    fn drain(&mut self) {
        for _ in 0..1000 {
            let mut any = false;
            for c in 0..CLIENTS {
                any |= self.read(c);
            }
            if !any {
                break;
            }
        }
        for (client, payload, _) in self.log.drops() {
            self.drops.insert((client, payload));
        }
        self.check_bounds();
    }

    fn read(&mut self, c: usize) -> bool {
        let Some(h) = self.clients[c].handle else {
            return false;
        };
        let frames = self.sim.recv(h);
        // A client that stopped acknowledging while publishers waited for it is
        // disconnected after the stall timeout (MQTT 5: 0x97).
        let stalled = |frames: &[broker_core::sim::Frame]| {
            frames.iter().all(|f| {
                matches!(
                    owned(f),
                    P::Publish(_)
                        | P::PubRel { .. }
                        | P::Disconnect {
                            code: ReasonCode::QuotaExceeded,
                            ..
                        }
                )
            })
        };
        if self.sim.is_closed(h) && !self.clients[c].ack && stalled(&frames) {
            for f in &frames {
                if let P::Publish(x) = owned(f) {
                    self.on_publish(c, x);
                }
            }
            self.model_closed(c);
            return true;
        }
        if frames.is_empty() {
            assert!(!self.sim.is_closed(h), "client {c} closed unexpectedly");
            return false;
        }
        for f in &frames {
            match owned(f) {
                P::Publish(x) => self.on_publish(c, x),
                P::PubRel { pid, .. } => {
                    self.clients[c].pending2.remove(&pid);
                    self.send_ack(c, PacketType::PubComp, pid);
                }
                P::PubAck { pid, .. } | P::PubRec { pid, .. } => {
                    if let Some(m) = self.clients[c].unacked.remove(&pid) {
                        self.msgs[m].acked = true;
                    }
                    // The publisher's side of QoS 2: PUBREL once PUBREC came.
                    if matches!(owned(f), P::PubRec { .. }) {
                        common::send_ack(&mut self.sim, h, PacketType::PubRel, pid);
                    }
                }
                P::Disconnect { code, .. } => panic!("client {c} got DISCONNECT {code}"),
                _ => {}
            }
        }
        assert!(!self.sim.is_closed(h), "client {c} closed unexpectedly");
        true
    }

    fn on_publish(&mut self, c: usize, x: Pub) {
        let epoch = self.sessions[c]
            .as_ref()
            .expect("a delivery without a session")
            .epoch;
        let m: usize = std::str::from_utf8(&x.payload).unwrap()[1..]
            .parse()
            .unwrap();
        assert_eq!(self.msgs[m].topic, x.topic, "topic of m{m}");
        let app = match (x.qos, x.pid) {
            (QoS::AtMostOnce, _) => true,
            (QoS::AtLeastOnce, Some(pid)) => {
                self.send_ack(c, PacketType::PubAck, pid);
                true
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                let first = self.clients[c].pending2.insert(pid);
                self.send_ack(c, PacketType::PubRec, pid);
                first
            }
            _ => panic!("QoS > 0 without a packet identifier"),
        };
        let msg = &self.msgs[m];
        if x.retain {
            // Sent because of a subscription: a retained message on a topic the session
            // subscribed to.
            assert!(msg.retain, "m{m} was not retained");
            let s = self.sessions[c].as_ref().unwrap();
            assert!(
                s.ever.iter().any(|f| topic::matches(f, msg.topic)),
                "retained m{m} to {c} without subscription"
            );
            return;
        }
        // Nothing to a session that was not subscribed at publication, and at the QoS the
        // subscriptions give.
        let expect = msg.eligible.get(&(c, epoch)).copied();
        assert_eq!(
            expect.map(|q| q as u8),
            Some(x.qos as u8),
            "m{m} to client {c} epoch {epoch}: {msg:?}"
        );
        if app {
            let n = self.delivered.entry((c, epoch, m)).or_default();
            *n += 1;
            if x.qos == QoS::ExactlyOnce {
                assert_eq!(*n, 1, "QoS 2 m{m} delivered twice to client {c}");
            }
        }
        if !x.dup {
            let (publisher, topic, seq) = (msg.publisher, msg.topic, msg.seq);
            let v = self
                .order
                .entry((c, epoch, publisher, topic, x.qos as u8))
                .or_default();
            if let Some(&last) = v.last() {
                assert!(
                    last < seq,
                    "order: client {c} got seq {seq} after {last} from {publisher} on {topic}"
                );
            }
            v.push(seq);
        }
    }

    fn check_bounds(&self) {
        for b in &self.sim.brokers {
            for c in 0..CLIENTS {
                if let Some(n) = b.session_queue_len(&id(c)) {
                    assert!(
                        n <= MAX_QUEUED + usize::from(MAX_INFLIGHT) + TOPICS.len() * 8,
                        "queue of {c}: {n}"
                    );
                }
            }
        }
    }

    fn connect(&mut self, c: usize, clean: bool, expiry: u32, v5: bool, via: usize) {
        // A connection already open is taken over: the broker closes it first.
        if self.clients[c].handle.is_some() {
            self.read(c);
            self.model_closed(c);
        }
        let expiry = if v5 {
            expiry
        } else if clean {
            0
        } else {
            u32::MAX
        };
        let ident = id(c);
        let mut cp = conn(&ident, if v5 { V5 } else { V3 });
        cp.clean_start = clean;
        cp.properties.session_expiry_interval = (v5 && expiry > 0).then_some(expiry);
        let (h, p) = try_connect(&mut self.sim, via % self.shards, &cp);
        let P::ConnAck(ack) = p else { panic!("{p:?}") };
        assert_eq!(ack.code, ReasonCode::Success);
        let present = match self.sessions[c].as_mut() {
            Some(s) if !clean => {
                s.expiry = expiry;
                s.offline_since = None;
                true
            }
            _ => {
                let epoch = self.next_epoch;
                self.next_epoch += 1;
                self.sessions[c] = Some(MSession {
                    epoch,
                    subs: BTreeMap::new(),
                    ever: HashSet::new(),
                    expiry,
                    offline_since: None,
                });
                false
            }
        };
        assert_eq!(
            ack.session_present, present,
            "Session Present for client {c}"
        );
        let tc = &mut self.clients[c];
        if !present {
            tc.pending2.clear();
        }
        tc.handle = Some(h);
        tc.v5 = v5;
        tc.owed.clear();
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Connect {
                c,
                clean,
                expiry,
                v5,
                via,
            } => {
                let old = self.clients[c].handle;
                self.connect(c, clean, EXPIRIES[expiry], v5, via);
                if let Some(old) = old {
                    let got = recv(&mut self.sim, old);
                    assert!(
                        self.sim.is_closed(old),
                        "the taken over connection is closed"
                    );
                    assert!(
                        got.iter().all(|p| matches!(
                            p,
                            P::Disconnect {
                                code: ReasonCode::SessionTakenOver,
                                ..
                            }
                        )),
                        "{got:?}"
                    );
                }
            }
            Op::Disconnect { c } | Op::Crash { c } => {
                let Some(h) = self.clients[c].handle else {
                    return;
                };
                if matches!(op, Op::Disconnect { .. }) {
                    disconnect(&mut self.sim, h, ReasonCode::Success);
                } else {
                    self.sim.drop_connection(h);
                }
                assert!(self.sim.is_closed(h));
                self.model_closed(c);
            }
            Op::Subscribe { c, f, qos: q } => {
                let Some(h) = self.clients[c].handle else {
                    return;
                };
                if self.held(h) {
                    // A client that waits for its acknowledgements before going on.
                    return;
                }
                let codes = subscribe(&mut self.sim, h, FILTERS[f], qos(q));
                assert_eq!(codes, [ReasonCode::granted(qos(q))]);
                let s = self.sessions[c].as_mut().unwrap();
                s.subs.insert(FILTERS[f], qos(q));
                s.ever.insert(FILTERS[f]);
            }
            Op::Unsubscribe { c, f } => {
                let Some(h) = self.clients[c].handle else {
                    return;
                };
                if self.held(h) {
                    return;
                }
                unsubscribe(&mut self.sim, h, 2, &[FILTERS[f]]);
                self.sessions[c].as_mut().unwrap().subs.remove(FILTERS[f]);
            }
            Op::Publish {
                c,
                t,
                qos: q,
                retain,
            } => {
                let Some(h) = self.clients[c].handle else {
                    return;
                };
                let topic = TOPICS[t];
                let pq = qos(q);
                let mut eligible = HashMap::new();
                for (k, s) in self.sessions.iter().enumerate() {
                    let Some(s) = s else { continue };
                    let max = s
                        .subs
                        .iter()
                        .filter(|(f, _)| topic::matches(f, topic))
                        .map(|(_, q)| *q)
                        .max();
                    if let Some(g) = max {
                        eligible.insert((k, s.epoch), pq.min(g));
                    }
                }
                let m = self.msgs.len();
                self.clients[c].seq += 1;
                self.msgs.push(Msg {
                    publisher: c,
                    seq: self.clients[c].seq,
                    topic,
                    retain,
                    eligible,
                    acked: false,
                });
                let pid = self.pid(c);
                if pq != QoS::AtMostOnce {
                    self.clients[c].unacked.insert(pid, m);
                }
                publish(
                    &mut self.sim,
                    h,
                    topic,
                    format!("m{m}").as_bytes(),
                    pq,
                    retain,
                    pid,
                );
            }
            Op::SetAck { c, on } => {
                self.clients[c].ack = on;
                if on {
                    let owed = std::mem::take(&mut self.clients[c].owed);
                    if let Some(h) = self.clients[c].handle {
                        for (kind, pid) in owed {
                            common::send_ack(&mut self.sim, h, kind, pid);
                        }
                    }
                }
            }
            Op::Advance { ms } => {
                self.sim.advance(ms);
                self.expire();
            }
        }
        self.drain();
    }

    /// Everyone back, acknowledging; then every guarantee is checked.
    fn finish(&mut self) {
        for c in 0..CLIENTS {
            self.clients[c].ack = true;
            if let Some(h) = self.clients[c].handle {
                for (kind, pid) in std::mem::take(&mut self.clients[c].owed) {
                    common::send_ack(&mut self.sim, h, kind, pid);
                }
            } else if let Some(s) = self.sessions[c].clone() {
                // An offline session has a non-zero expiry: 3.1.1 sessions never expire.
                let v5 = s.expiry != u32::MAX;
                self.connect(c, false, s.expiry, v5, c);
            }
        }
        self.drain();
        for (m, msg) in self.msgs.iter().enumerate() {
            for (&(c, epoch), &q) in &msg.eligible {
                if q == QoS::AtMostOnce || !msg.acked {
                    continue;
                }
                let alive = self.sessions[c].as_ref().is_some_and(|s| s.epoch == epoch);
                if !alive || self.drops.contains(&(id(c), format!("m{m}"))) {
                    continue;
                }
                let n = self.delivered.get(&(c, epoch, m)).copied().unwrap_or(0);
                match q {
                    QoS::AtLeastOnce => {
                        assert!(n >= 1, "QoS 1 m{m} never reached client {c}: {msg:?}")
                    }
                    _ => assert_eq!(n, 1, "QoS 2 m{m} to client {c}: {msg:?}"),
                }
            }
        }
    }
}

fn run(shards: usize, ops: &[Op]) {
    let mut w = World::new(shards);
    for op in ops {
        w.apply(op);
    }
    w.finish();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn one_shard(ops in proptest::collection::vec(op(), 1..80)) {
        run(1, &ops);
    }

    #[test]
    fn three_shards(ops in proptest::collection::vec(op(), 1..80)) {
        run(3, &ops);
    }
}

#[test]
fn a_fixed_scenario() {
    use Op::*;
    run(
        3,
        &[
            Connect {
                c: 0,
                clean: true,
                expiry: 2,
                v5: true,
                via: 1,
            },
            Subscribe { c: 0, f: 2, qos: 2 },
            Connect {
                c: 1,
                clean: true,
                expiry: 0,
                v5: false,
                via: 2,
            },
            SetAck { c: 0, on: false },
            Publish {
                c: 1,
                t: 0,
                qos: 1,
                retain: false,
            },
            Publish {
                c: 1,
                t: 0,
                qos: 2,
                retain: true,
            },
            Crash { c: 0 },
            Publish {
                c: 1,
                t: 1,
                qos: 2,
                retain: false,
            },
            Connect {
                c: 0,
                clean: false,
                expiry: 2,
                v5: true,
                via: 0,
            },
            Connect {
                c: 0,
                clean: false,
                expiry: 2,
                v5: true,
                via: 2,
            },
            Advance { ms: 30_000 },
        ],
    );
}
