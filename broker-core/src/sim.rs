//! A deterministic simulation of a broker: one or more shards in one thread, many clients
//! speaking real MQTT bytes, and a virtual clock. Tests, fuzz targets and benchmarks drive
//! the core through it exactly as a shell would, without sockets or sleeps.

use crate::broker::{Broker, Event};
use crate::config::Config;
use crate::policy::{ConnId, PeerInfo, Policy};
use crate::time::Instant;
use crate::tx::TxBuf;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use mqtt_proto::{Packet, ProtocolVersion, Status};

/// A simulated client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(pub usize);

#[derive(Debug)]
struct SimConn {
    shard: usize,
    conn: ConnId,
    version: ProtocolVersion,
    /// Bytes from the broker not yet read by the test.
    inbox: Vec<u8>,
    /// Bytes to the broker not yet consumed.
    outbox: Vec<u8>,
    /// The broker asked to close (Event::Close) or the socket was dropped.
    closed: bool,
    /// The peer, kept for a hand-off to another shard.
    peer: PeerInfo,
    /// The first packet has been looked at (and the connection moved to the shard that
    /// owns its client identifier if needed).
    routed: bool,
}

/// A frame the broker sent, kept as bytes and decoded on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The encoded packet.
    pub bytes: Vec<u8>,
    /// The connection's protocol version.
    pub version: ProtocolVersion,
}

impl Frame {
    /// The decoded packet (every frame the broker sends must decode).
    pub fn packet(&self) -> Packet<'_> {
        match Packet::parse(&self.bytes, self.version, usize::MAX) {
            Ok(Status::Complete((p, _))) => p,
            other => panic!(
                "broker sent an undecodable frame {:02x?}: {other:?}",
                self.bytes
            ),
        }
    }
}

/// The simulated world.
#[derive(Debug)]
pub struct Sim {
    /// The shards.
    pub brokers: Vec<Broker>,
    /// Virtual time.
    pub now: Instant,
    conns: Vec<SimConn>,
    tx: TxBuf,
    /// Transmit budget per `poll_transmit` call.
    pub budget: usize,
    /// Messages between shards waiting to be delivered (they are delivered by `pump`).
    pending: VecDeque<(usize, crate::shard::ShardMsg)>,
    /// Whether a connection whose CONNECT names a client identifier owned by another
    /// shard is handed to that shard (as the shell does, see `architecture.md`).
    pub handoff: bool,
    /// `Event::StoreLoad` requests (shard, client, after, max) for a test to serve.
    pub store_loads: Vec<(usize, alloc::boxed::Box<str>, u64, usize)>,
    /// Messages for the cluster link or remote nodes (shard numbers beyond the brokers),
    /// and `Event::ClusterAck` tokens, for a test to carry to another `Sim`.
    #[cfg(feature = "cluster")]
    pub cluster_out: Vec<(crate::shard::ShardId, crate::shard::ShardMsg)>,
    /// `Event::ClusterAck` tokens.
    #[cfg(feature = "cluster")]
    pub cluster_acks: Vec<u64>,
}

impl Sim {
    /// `shards` shards with `cfg` (its `shard`/`shards` fields are set per shard) and the
    /// default policy.
    pub fn new(cfg: Config, shards: usize) -> Self {
        Self::with_policies(cfg, shards, |_| Policy::default())
    }

    /// As `new`, with a policy per shard.
    pub fn with_policies(
        cfg: Config,
        shards: usize,
        mut policy: impl FnMut(usize) -> Policy,
    ) -> Self {
        let brokers = (0..shards)
            .map(|i| {
                let mut c = cfg.clone();
                c.shard = i as u16;
                c.shards = shards as u16;
                Broker::new(c, policy(i))
            })
            .collect();
        Self {
            brokers,
            now: Instant::from_millis(1_000_000),
            conns: Vec::new(),
            tx: TxBuf::new(),
            budget: 64 * 1024,
            pending: VecDeque::new(),
            handoff: true,
            store_loads: Vec::new(),
            #[cfg(feature = "cluster")]
            cluster_out: Vec::new(),
            #[cfg(feature = "cluster")]
            cluster_acks: Vec::new(),
        }
    }

    /// Opens a connection to `shard`. The version only tells how to decode what the
    /// broker sends; the CONNECT decides what the broker thinks.
    pub fn open(&mut self, shard: usize, version: ProtocolVersion) -> Option<Client> {
        self.open_with(shard, version, PeerInfo::default())
    }

    /// Opens a connection with peer information (address, certificate identity).
    pub fn open_with(
        &mut self,
        shard: usize,
        version: ProtocolVersion,
        peer: PeerInfo,
    ) -> Option<Client> {
        let now = self.now;
        let conn = self
            .brokers
            .get_mut(shard)?
            .handle_accept(now, peer.clone())
            .ok()?;
        self.conns.push(SimConn {
            shard,
            conn,
            version,
            inbox: Vec::new(),
            outbox: Vec::new(),
            closed: false,
            peer,
            routed: false,
        });
        self.pump();
        Some(Client(self.conns.len() - 1))
    }

    /// Sends raw bytes from a client.
    pub fn send_bytes(&mut self, c: Client, bytes: &[u8]) {
        if let Some(sc) = self.conns.get_mut(c.0) {
            if !sc.closed {
                sc.outbox.extend_from_slice(bytes);
            }
        }
        self.pump();
    }

    /// Encodes and sends a packet in the client's version.
    pub fn send(&mut self, c: Client, p: &Packet<'_>) {
        let Some(v) = self.conns.get(c.0).map(|s| s.version) else {
            return;
        };
        let mut buf = alloc::vec![0u8; p.encoded_len(v).expect("encodable test packet")];
        let n = p.emit(v, &mut buf).expect("encodable test packet");
        buf.truncate(n);
        self.send_bytes(c, &buf);
    }

    /// Changes how frames to this client are decoded (after a CONNECT of another version).
    pub fn set_version(&mut self, c: Client, v: ProtocolVersion) {
        if let Some(sc) = self.conns.get_mut(c.0) {
            sc.version = v;
        }
    }

    /// Every complete frame the broker sent to the client since the last call.
    pub fn recv(&mut self, c: Client) -> Vec<Frame> {
        let mut out = Vec::new();
        let Some(sc) = self.conns.get_mut(c.0) else {
            return out;
        };
        let mut pos = 0;
        loop {
            let rest = sc.inbox.get(pos..).unwrap_or_default();
            match mqtt_proto::FixedHeader::parse(rest, usize::MAX) {
                Ok(Status::Complete(h)) if rest.len() >= h.packet_len() => {
                    out.push(Frame {
                        bytes: rest.get(..h.packet_len()).unwrap_or_default().to_vec(),
                        version: sc.version,
                    });
                    pos += h.packet_len();
                }
                _ => break,
            }
        }
        sc.inbox.drain(..pos);
        out
    }

    /// Puts frames back in front of the client's unread bytes (for helpers that look for
    /// one packet and leave the rest to the test).
    pub fn unread(&mut self, c: Client, frames: &[Frame]) {
        if let Some(sc) = self.conns.get_mut(c.0) {
            let mut v: Vec<u8> = frames
                .iter()
                .flat_map(|f| f.bytes.iter().copied())
                .collect();
            v.extend_from_slice(&sc.inbox);
            sc.inbox = v;
        }
    }

    /// Whether the broker closed (or asked to close) the connection.
    pub fn is_closed(&self, c: Client) -> bool {
        self.conns.get(c.0).is_none_or(|s| s.closed)
    }

    /// The client's socket drops without DISCONNECT.
    pub fn drop_connection(&mut self, c: Client) {
        let now = self.now;
        if let Some(sc) = self.conns.get_mut(c.0) {
            if !sc.closed {
                sc.closed = true;
                if let Some(b) = self.brokers.get_mut(sc.shard) {
                    b.handle_closed(sc.conn, now);
                }
            }
        }
        self.pump();
    }

    /// Moves a connection whose first packet is a CONNECT for a client identifier owned by
    /// another shard to that shard, with the bytes read so far, as a shell does. An empty
    /// client identifier stays where it was accepted (its assigned identifier is owned by
    /// the accepting shard).
    fn route(&mut self, i: usize) {
        let now = self.now;
        let shards = self.brokers.len();
        let Some(sc) = self.conns.get_mut(i) else {
            return;
        };
        if sc.routed || sc.closed || sc.outbox.is_empty() {
            return;
        }
        let owner = match Packet::parse(&sc.outbox, sc.version, usize::MAX) {
            Ok(Status::Incomplete { .. }) => return,
            Ok(Status::Complete((Packet::Connect(c), _))) if !c.client_id.is_empty() => {
                usize::from(crate::shard::owner_of_client(c.client_id, shards as u16))
            }
            _ => sc.shard,
        };
        sc.routed = true;
        if !self.handoff || owner == sc.shard || shards <= 1 {
            return;
        }
        let Some(new_conn) = self
            .brokers
            .get_mut(owner)
            .and_then(|b| b.handle_accept(now, sc.peer.clone()).ok())
        else {
            return;
        };
        if let Some(b) = self.brokers.get_mut(sc.shard) {
            b.handle_closed(sc.conn, now);
        }
        sc.shard = owner;
        sc.conn = new_conn;
    }

    /// The connection handle inside the broker.
    pub fn conn_id(&self, c: Client) -> Option<(usize, ConnId)> {
        self.conns.get(c.0).map(|s| (s.shard, s.conn))
    }

    /// Moves virtual time forward by `ms`, firing every deadline on the way in order.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.plus_millis(ms);
        loop {
            let next = self
                .brokers
                .iter()
                .filter_map(|b| b.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            let now = self.now;
            for b in &mut self.brokers {
                b.handle_timeout(now);
            }
            self.pump();
        }
        self.now = end;
        let now = self.now;
        for b in &mut self.brokers {
            b.handle_timeout(now);
        }
        self.pump();
    }

    /// Runs until nothing moves: bytes to brokers, events, frames to clients, shard
    /// messages.
    pub fn pump(&mut self) {
        let now = self.now;
        for _round in 0..10_000 {
            let mut progress = false;
            for i in 0..self.conns.len() {
                self.route(i);
                let Some(sc) = self.conns.get_mut(i) else {
                    continue;
                };
                if sc.closed || sc.outbox.is_empty() {
                    continue;
                }
                let Some(b) = self.brokers.get_mut(sc.shard) else {
                    continue;
                };
                let n = b.handle_bytes(sc.conn, now, &sc.outbox);
                if n > 0 {
                    sc.outbox.drain(..n.min(sc.outbox.len()));
                    progress = true;
                }
            }
            for shard in 0..self.brokers.len() {
                while let Some(ev) = self.brokers.get_mut(shard).and_then(|b| b.poll_event()) {
                    progress = true;
                    match ev {
                        Event::Output(conn) => self.flush(shard, conn),
                        Event::Close(conn) => {
                            self.flush(shard, conn);
                            if let Some(sc) = self
                                .conns
                                .iter_mut()
                                .find(|s| s.shard == shard && s.conn == conn)
                            {
                                sc.closed = true;
                            }
                            if let Some(b) = self.brokers.get_mut(shard) {
                                b.handle_closed(conn, now);
                            }
                        }
                        #[cfg(feature = "cluster")]
                        Event::ToShard { to, msg } if usize::from(to) >= self.brokers.len() => {
                            self.cluster_out.push((to, msg))
                        }
                        Event::ToShard { to, msg } => {
                            self.pending.push_back((usize::from(to), msg))
                        }
                        #[cfg(feature = "cluster")]
                        Event::ClusterAck { token } => self.cluster_acks.push(token),
                        Event::StoreLoad { client, after, max } => {
                            self.store_loads.push((shard, client, after, max))
                        }
                        Event::ResumeInput(conn) => {
                            if let Some(sc) = self
                                .conns
                                .iter_mut()
                                .find(|s| s.shard == shard && s.conn == conn && !s.closed)
                            {
                                if let Some(b) = self.brokers.get_mut(shard) {
                                    let n = b.handle_bytes(conn, now, &sc.outbox);
                                    sc.outbox.drain(..n.min(sc.outbox.len()));
                                }
                            }
                        }
                    }
                }
            }
            while let Some((to, msg)) = self.pending.pop_front() {
                progress = true;
                if let Some(b) = self.brokers.get_mut(to) {
                    b.handle_shard_msg(now, msg);
                }
            }
            // Connections whose reading paused for backpressure: flush them.
            for i in 0..self.conns.len() {
                let (shard, conn, has) = match self.conns.get(i) {
                    Some(s) => (s.shard, s.conn, !s.closed && !s.outbox.is_empty()),
                    None => continue,
                };
                if has {
                    self.flush(shard, conn);
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn flush(&mut self, shard: usize, conn: ConnId) {
        let now = self.now;
        let Some(b) = self.brokers.get_mut(shard) else {
            return;
        };
        let Some(sc) = self
            .conns
            .iter_mut()
            .find(|s| s.shard == shard && s.conn == conn)
        else {
            // Nobody reads: still drain so the broker's state advances.
            loop {
                self.tx.clear();
                if !b.poll_transmit(conn, now, &mut self.tx, self.budget).more {
                    break;
                }
            }
            self.tx.clear();
            return;
        };
        loop {
            self.tx.clear();
            let t = b.poll_transmit(conn, now, &mut self.tx, self.budget);
            if !sc.closed {
                for chunk in self.tx.chunks() {
                    sc.inbox.extend_from_slice(chunk);
                }
            }
            if !t.more {
                break;
            }
        }
        self.tx.clear();
    }
}
