//! The bridge state machine between two broker shards, bytes moved by hand: prefixes both
//! ways, no loops, and nothing lost while the remote side is away.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use broker_core::bridge::{Bridge, Side, TopicRule};
use broker_core::client::{Client, ClientEvent, ClientOptions};
use broker_core::{Broker, Config, ConnId, Event, Instant, PeerInfo, Policy, TxBuf};
use mqtt_proto::{ProtocolVersion, QoS, SubscriptionOptions};

/// Who is at the other end of a broker connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// A plain client (index into `World::clients`).
    Plain(usize),
    /// The bridge's connection on this side.
    Bridge,
}

struct Node {
    broker: Broker,
    conns: Vec<(ConnId, End)>,
}

struct World {
    now: Instant,
    nodes: [Node; 2],
    bridge: Bridge,
    /// Plain clients: the node they use, and everything they got.
    clients: Vec<(usize, Client, Vec<ClientEvent>)>,
}

const LOCAL: usize = 0;
const REMOTE: usize = 1;

fn side_node(side: Side) -> usize {
    match side {
        Side::Local => LOCAL,
        Side::Remote => REMOTE,
    }
}

impl World {
    fn new(rules: &[&str], remote_version: ProtocolVersion) -> Self {
        let rules = rules.iter().map(|r| TopicRule::parse(r).unwrap()).collect();
        let local = ClientOptions {
            client_id: "local.bridge".into(),
            version: ProtocolVersion::V5,
            clean_start: false,
            session_expiry: u32::MAX,
            receive_maximum: 10,
            max_queued: 100_000,
            ..ClientOptions::default()
        };
        let remote = ClientOptions {
            client_id: "bridge".into(),
            version: remote_version,
            clean_start: false,
            session_expiry: u32::MAX,
            max_queued: 100_000,
            bridge: true,
            ..ClientOptions::default()
        };
        let node = || Node {
            broker: Broker::new(Config::default(), Policy::default()),
            conns: Vec::new(),
        };
        let mut w = Self {
            now: Instant::from_millis(1000),
            nodes: [node(), node()],
            bridge: Bridge::new(rules, local, remote),
            clients: Vec::new(),
        };
        w.connect_bridge(Side::Local);
        w.connect_bridge(Side::Remote);
        w.run();
        w
    }

    fn accept(&mut self, node: usize, end: End) {
        let n = &mut self.nodes[node];
        let c = n
            .broker
            .handle_accept(self.now, PeerInfo::default())
            .unwrap();
        n.conns.push((c, end));
    }

    fn connect_bridge(&mut self, side: Side) {
        self.accept(side_node(side), End::Bridge);
        self.bridge.handle_connected(side, self.now);
    }

    fn drop_bridge(&mut self, side: Side) {
        let n = &mut self.nodes[side_node(side)];
        if let Some(i) = n.conns.iter().position(|(_, e)| *e == End::Bridge) {
            let (c, _) = n.conns.remove(i);
            n.broker.handle_closed(c, self.now);
        }
        self.bridge.handle_disconnected(side, self.now);
    }

    fn client(&mut self, node: usize, id: &str) -> usize {
        let mut c = Client::new(ClientOptions {
            client_id: id.into(),
            version: ProtocolVersion::V5,
            max_queued: 100_000,
            ..ClientOptions::default()
        });
        c.handle_connected(self.now);
        self.clients.push((node, c, Vec::new()));
        let i = self.clients.len() - 1;
        self.accept(node, End::Plain(i));
        self.run();
        i
    }

    fn deliver(&mut self, node: usize, end: End, bytes: &[u8]) {
        let now = self.now;
        match end {
            End::Plain(i) => {
                let n = self.clients[i].1.handle_bytes(now, bytes);
                assert_eq!(n, bytes.len());
            }
            End::Bridge => {
                let side = if node == LOCAL {
                    Side::Local
                } else {
                    Side::Remote
                };
                let n = self.bridge.handle_bytes(side, now, bytes);
                assert_eq!(n, bytes.len());
            }
        }
    }

    /// Moves bytes until nothing moves.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let now = self.now;
            for node in [LOCAL, REMOTE] {
                // Into the broker.
                let conns = self.nodes[node].conns.clone();
                for (c, end) in conns {
                    let mut out = Vec::new();
                    match end {
                        End::Plain(i) => self.clients[i].1.poll_transmit(now, &mut out),
                        End::Bridge => {
                            let side = if node == LOCAL {
                                Side::Local
                            } else {
                                Side::Remote
                            };
                            self.bridge.poll_transmit(side, now, &mut out);
                        }
                    }
                    if !out.is_empty() {
                        moved = true;
                        let n = self.nodes[node].broker.handle_bytes(c, now, &out);
                        assert_eq!(n, out.len());
                    }
                }
                // Out of the broker.
                while let Some(ev) = self.nodes[node].broker.poll_event() {
                    moved = true;
                    if let Event::Output(c) | Event::Close(c) = ev {
                        let mut tx = TxBuf::new();
                        while self.nodes[node]
                            .broker
                            .poll_transmit(c, now, &mut tx, 1 << 20)
                            .more
                        {}
                        let bytes = tx.to_vec();
                        let end = self.nodes[node]
                            .conns
                            .iter()
                            .find(|(x, _)| *x == c)
                            .map(|(_, e)| *e);
                        if let Some(end) = end {
                            self.deliver(node, end, &bytes);
                        }
                    }
                }
            }
            for (_, c, evs) in &mut self.clients {
                while let Some(e) = c.poll_event() {
                    evs.push(e);
                }
            }
            while let Some(e) = self.bridge.poll_event() {
                assert!(
                    !matches!(
                        e.event,
                        ClientEvent::ConnectRefused(_) | ClientEvent::CloseConnection
                    ),
                    "{e:?}"
                );
            }
            if !moved {
                return;
            }
        }
        panic!("never quiet");
    }

    fn subscribe(&mut self, i: usize, filter: &str, qos: QoS) {
        self.clients[i]
            .1
            .subscribe(&[(filter.into(), SubscriptionOptions::qos(qos))])
            .unwrap();
        self.run();
    }

    fn publish(&mut self, i: usize, topic: &str, payload: &[u8], qos: QoS) {
        let now = self.now;
        self.clients[i]
            .1
            .publish(now, topic, payload, qos, false, &[])
            .unwrap();
        self.run();
    }

    /// (topic, payload) of every message client `i` got.
    fn got(&self, i: usize) -> Vec<(String, Vec<u8>)> {
        self.clients[i]
            .2
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message(m) => Some((m.topic.clone(), m.payload.clone())),
                _ => None,
            })
            .collect()
    }

    /// The numbers (big-endian u32 payloads) client `i` got, in arrival order.
    fn numbers(&self, i: usize) -> Vec<u32> {
        self.got(i)
            .iter()
            .map(|(_, p)| u32::from_be_bytes(p.as_slice().try_into().unwrap()))
            .collect()
    }

    /// The distinct numbers client `i` got, sorted.
    fn distinct(&self, i: usize) -> Vec<u32> {
        let mut v = self.numbers(i);
        v.sort_unstable();
        v.dedup();
        v
    }

    /// How many of client `i`'s publications are acknowledged.
    fn acked(&self, i: usize) -> usize {
        self.clients[i]
            .2
            .iter()
            .filter(|e| matches!(e, ClientEvent::Published { .. }))
            .count()
    }
}

#[test]
fn prefixes_apply_both_ways_and_nothing_loops() {
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut w = World::new(
            &[
                "sensors/# out 1 site1/ fleet/site1/",
                "cmd/# in 1 \"\" fleet/",
                "chat/# both 2",
            ],
            version,
        );
        let local_pub = w.client(LOCAL, "lp");
        let local_sub = w.client(LOCAL, "ls");
        let remote_pub = w.client(REMOTE, "rp");
        let remote_sub = w.client(REMOTE, "rs");
        w.subscribe(local_sub, "#", QoS::ExactlyOnce);
        w.subscribe(remote_sub, "#", QoS::ExactlyOnce);

        w.publish(local_pub, "site1/sensors/t1", b"21", QoS::AtLeastOnce);
        w.publish(local_pub, "other/x", b"stays", QoS::AtLeastOnce);
        w.publish(remote_pub, "fleet/cmd/reboot", b"now", QoS::AtLeastOnce);
        w.publish(local_pub, "chat/a", b"from local", QoS::ExactlyOnce);
        w.publish(remote_pub, "chat/b", b"from remote", QoS::ExactlyOnce);

        let remote_got = w.got(remote_sub);
        let local_got = w.got(local_sub);
        let has = |v: &[(String, Vec<u8>)], t: &str, p: &[u8]| {
            v.iter().filter(|(x, y)| x == t && y == p).count()
        };
        assert_eq!(
            has(&remote_got, "fleet/site1/sensors/t1", b"21"),
            1,
            "{version:?}"
        );
        assert_eq!(has(&local_got, "cmd/reboot", b"now"), 1, "{version:?}");
        assert_eq!(has(&remote_got, "chat/a", b"from local"), 1, "{version:?}");
        assert_eq!(has(&local_got, "chat/b", b"from remote"), 1, "{version:?}");
        // Not bridged, and no echo of what the bridge itself brought in: each side saw
        // its own chat message once, from its own publisher.
        assert_eq!(has(&remote_got, "other/x", b"stays"), 0);
        assert_eq!(has(&local_got, "chat/a", b"from local"), 1);
        assert_eq!(has(&remote_got, "chat/b", b"from remote"), 1);
        assert_eq!(remote_got.len(), 4, "{remote_got:?}");
        assert_eq!(local_got.len(), 5, "{local_got:?}");
        let c = w.bridge.counters();
        assert_eq!((c.forwarded_out, c.forwarded_in), (2, 2));
    }
}

#[test]
fn qos1_messages_wait_in_the_local_session_while_the_remote_is_away() {
    let mut w = World::new(&["data/# out 1"], ProtocolVersion::V3_1_1);
    let local_pub = w.client(LOCAL, "lp");
    let remote_sub = w.client(REMOTE, "rs");
    w.subscribe(remote_sub, "data/#", QoS::AtLeastOnce);
    w.drop_bridge(Side::Remote);
    for i in 0..200u32 {
        w.publish(local_pub, "data/x", &i.to_be_bytes(), QoS::AtLeastOnce);
    }
    // The local broker took every one (PUBACK), nothing reached the remote yet, and the
    // bridge holds no more than its receive maximum unacknowledged.
    assert_eq!(w.acked(local_pub), 200);
    assert!(w.got(remote_sub).is_empty());
    assert!(w.bridge.unacknowledged(Side::Local) <= 10);
    w.advance_and_reconnect(Side::Remote);
    let got = w.numbers(remote_sub);
    let uniq = w.distinct(remote_sub);
    assert_eq!(uniq, (0..200).collect::<Vec<_>>(), "lost some: {got:?}");
    assert_eq!(w.bridge.unacknowledged(Side::Local), 0);
    assert_eq!(w.bridge.counters().forwarded_out as usize, got.len());
}

#[test]
fn a_lost_local_connection_does_not_acknowledge_the_new_ones_messages() {
    let mut w = World::new(&["data/# out 1"], ProtocolVersion::V5);
    let local_pub = w.client(LOCAL, "lp");
    let remote_sub = w.client(REMOTE, "rs");
    w.subscribe(remote_sub, "data/#", QoS::AtLeastOnce);
    w.drop_bridge(Side::Remote);
    for i in 0..30u32 {
        w.publish(local_pub, "data/x", &i.to_be_bytes(), QoS::AtLeastOnce);
    }
    // The local connection drops with 10 forwarded and unacknowledged, and comes back:
    // the local broker sends them again (new packet identifiers may repeat old ones).
    w.drop_bridge(Side::Local);
    w.connect_bridge(Side::Local);
    w.run();
    w.advance_and_reconnect(Side::Remote);
    let got = w.distinct(remote_sub);
    assert_eq!(got, (0..30).collect::<Vec<_>>());
}

impl World {
    fn advance_and_reconnect(&mut self, side: Side) {
        self.now = self.now.plus_millis(1000);
        self.connect_bridge(side);
        self.run();
    }
}

#[test]
fn a_bridge_restarted_while_the_remote_is_away_loses_nothing() {
    let mut w = World::new(&["data/# out 1"], ProtocolVersion::V3_1_1);
    let local_pub = w.client(LOCAL, "lp");
    let remote_sub = w.client(REMOTE, "rs");
    w.subscribe(remote_sub, "data/#", QoS::AtLeastOnce);
    w.drop_bridge(Side::Remote);
    for i in 0..50u32 {
        w.publish(local_pub, "data/x", &i.to_be_bytes(), QoS::AtLeastOnce);
    }
    assert_eq!(w.acked(local_pub), 50);
    // The bridge process goes away with whatever it held in memory; a new one resumes the
    // local session.
    w.drop_bridge(Side::Local);
    let fresh = World::new(&["data/# out 1"], ProtocolVersion::V3_1_1).bridge;
    w.bridge = fresh;
    w.connect_bridge(Side::Local);
    w.run();
    w.advance_and_reconnect(Side::Remote);
    let got = w.distinct(remote_sub);
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn remote_messages_are_acknowledged_only_once_this_broker_took_them() {
    let mut w = World::new(&["cmd/# in 1"], ProtocolVersion::V3_1_1);
    let remote_pub = w.client(REMOTE, "rp");
    let local_sub = w.client(LOCAL, "ls");
    w.subscribe(local_sub, "cmd/#", QoS::AtLeastOnce);
    // This broker is unreachable: what comes in waits in the bridge, unacknowledged.
    w.drop_bridge(Side::Local);
    for i in 0..50u32 {
        w.publish(remote_pub, "cmd/x", &i.to_be_bytes(), QoS::AtLeastOnce);
    }
    assert_eq!(w.acked(remote_pub), 50);
    assert!(w.got(local_sub).is_empty());
    assert!(w.bridge.unacknowledged(Side::Remote) > 0);
    // The bridge goes away with what it held; the remote broker still has it all for the
    // bridge's session and sends it again to the next one.
    w.drop_bridge(Side::Remote);
    w.bridge = World::new(&["cmd/# in 1"], ProtocolVersion::V3_1_1).bridge;
    w.connect_bridge(Side::Local);
    w.run();
    w.advance_and_reconnect(Side::Remote);
    let got = w.distinct(local_sub);
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}
