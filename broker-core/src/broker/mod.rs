//! One broker shard: the sans-IO state machine a shell drives.
//!
//! Inputs (`handle_*`, each given `now`): accepted connections, received bytes, closed
//! sockets, timer expiries and messages from other shards. Outputs (`poll_*`): frames to
//! write per connection, events (output ready, close, forward to a shard) and the next
//! timer deadline.

#[cfg(feature = "cluster")]
mod cluster;
mod connect;
mod durable;
pub(crate) mod flow;
#[cfg(feature = "backpressure")]
mod hold;
#[cfg(feature = "ops")]
pub(crate) mod ops;
mod publish;
mod restore;
mod shards;
mod subscribe;
mod timers;
mod transmit;

use crate::config::Config;
use crate::conn::{Conn, ConnState, Ctrl};
use crate::index::{Hasher64, TopicIndex};
use crate::message::MessageArena;
use crate::policy::{ClientInfo, ConnId, PeerInfo, Policy};
use crate::retained::RetainedStore;
use crate::session::{GroupName, InflightState, Session, SubIds};
use crate::shard::{Member, ShardId, ShardMsg};
use crate::slab::{Key, Slab};
use crate::time::Instant;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cmp::Reverse;
use hashbrown::HashMap;
use mqtt_proto::{
    DecodeError, FixedHeader, Packet, PacketId, PacketType, Publish, QoS, ReasonCode, Status,
    SubscriptionOptions,
};

pub(crate) use connect::encode;
pub use flow::AckRef;
#[cfg(feature = "ops")]
pub use ops::{ClientSummary, DisconnectReason, OpsCounters, SubscriptionSummary};
pub(crate) use timers::Timer;
pub use transmit::Transmit;

/// Something the shell must act on.
#[derive(Debug)]
pub enum Event {
    /// The connection has frames for `poll_transmit`.
    Output(ConnId),
    /// Write what `poll_transmit` still returns for this connection, then close its socket
    /// and call `handle_closed`.
    Close(ConnId),
    /// Deliver `msg` to shard `to` (`handle_shard_msg` there).
    ToShard {
        /// Destination shard.
        to: ShardId,
        /// The message.
        msg: ShardMsg,
    },
    /// The connection's publisher is no longer held: call `handle_bytes` for it (with
    /// whatever the shell has buffered, possibly nothing), so the core processes the input
    /// it set aside and the shell may read the socket again. Raised only with the
    /// `backpressure` feature.
    ResumeInput(ConnId),
    /// Read back up to `max` of `client`'s queued messages with record numbers above
    /// `after` from the store (in order) and hand them to `handle_store_loaded`: the
    /// session's queue continues on disk beyond what is kept in memory. Raised only with
    /// the `store` feature, after every batch sent before it (read it after those).
    StoreLoad {
        /// The session's client identifier.
        client: alloc::boxed::Box<str>,
        /// Records above this number.
        after: u64,
        /// At most this many.
        max: usize,
    },
    /// A message another node forwarded with this token (`handle_cluster_publish`) is in
    /// every queue it goes to here: the shell confirms it to that node. Raised only with the
    /// `cluster` feature.
    #[cfg(feature = "cluster")]
    ClusterAck {
        /// The token it came with.
        token: u64,
    },
}

/// Why `handle_accept` refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// `max_connections` reached.
    TooManyConnections,
    /// The `on_accept` hook said no.
    Refused,
}

/// Counters a shell exports as metrics.
#[derive(Debug, Default, Clone)]
#[allow(missing_docs)]
pub struct Metrics {
    pub connections_accepted: u64,
    pub connects_refused: u64,
    pub publish_received: u64,
    pub publish_sent: u64,
    pub bytes_received: u64,
    pub dropped_queue_full: u64,
    pub dropped_expired: u64,
    pub dropped_too_large: u64,
    pub dropped_offline: u64,
    pub dropped_not_authorized: u64,
    pub protocol_errors: u64,
    pub wills_published: u64,
    pub sessions_expired: u64,
    /// Times a publisher was held back because a subscriber's queue was full.
    #[cfg(feature = "backpressure")]
    pub publishers_held: u64,
    /// Subscribers disconnected for making no progress while publishers waited for them.
    #[cfg(feature = "backpressure")]
    pub subscribers_stalled: u64,
    /// QoS 0 messages dropped because the broker's memory limit was reached.
    #[cfg(feature = "backpressure")]
    pub dropped_memory: u64,
    /// The operator's counters (feature `ops`).
    #[cfg(feature = "ops")]
    pub ops: ops::OpsCounters,
}

/// An entry of the local subscription index.
#[derive(Debug, Clone)]
pub(crate) enum LocalSub {
    Session {
        session: Key,
        options: SubscriptionOptions,
        id: Option<u32>,
    },
    /// A shared subscription group owned by this shard.
    Group(Arc<GroupName>),
}

/// One matched session while routing a message.
#[derive(Debug)]
pub(crate) struct Hit {
    session: Key,
    qos: QoS,
    retain: bool,
    ids: SubIds,
}

#[derive(Debug)]
pub(crate) struct SharedGroup {
    pub members: Vec<Member>,
    pub next: usize,
}

/// A broker shard.
#[derive(Debug)]
pub struct Broker {
    pub(crate) cfg: Config,
    pub(crate) policy: Policy,
    pub(crate) conns: Slab<Conn>,
    pub(crate) sessions: Slab<Session>,
    pub(crate) by_id: crate::ids::ClientIds,
    pub(crate) index: TopicIndex<LocalSub>,
    /// Filter to remote shards that have local subscribers to it (and group owners).
    pub(crate) interest: TopicIndex<ShardId>,
    pub(crate) groups: HashMap<Arc<GroupName>, SharedGroup, Hasher64>,
    pub(crate) retained: RetainedStore,
    pub(crate) arena: MessageArena,
    pub(crate) timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) hits: Vec<Hit>,
    pub(crate) group_hits: Vec<Arc<GroupName>>,
    pub(crate) shard_hits: Vec<bool>,
    pub(crate) stamp: u64,
    pub(crate) next_origin: u64,
    // u32: an id only has to be unused now (checked below), and 64-bit formatting costs
    // the gateway flash.
    pub(crate) auto_id: u32,
    pub(crate) metrics: Metrics,
    pub(crate) shutting_down: bool,
    /// Acknowledgements held back by flow control.
    pub(crate) acks: Slab<flow::PendingAck>,
    /// The acknowledgement of the message being routed, if it may be held.
    pub(crate) current_ack: Option<flow::CurrentAck>,
    pub(crate) released: Vec<Key>,
    /// The shell reported the broker's memory limit reached: QoS 0 PUBLISH packets are
    /// dropped, QoS 1/2 ones are not read (their connections wait in `mem_paused`).
    #[cfg(feature = "backpressure")]
    pub(crate) mem_pressure: bool,
    #[cfg(feature = "backpressure")]
    pub(crate) mem_paused: Vec<ConnId>,
    /// Write-ahead records for a durable store, when enabled.
    #[cfg(feature = "store")]
    pub(crate) store: Option<alloc::boxed::Box<durable::StoreLog>>,
    /// The message being routed came from another node (it goes to no other node).
    #[cfg(feature = "cluster")]
    pub(crate) from_cluster: bool,
    /// The session being ended goes on at another node (`move_out`).
    #[cfg(feature = "cluster")]
    pub(crate) moving: bool,
}

/// What [`Broker::handle_input`] did with a connection's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    /// Bytes consumed from the start of the input.
    pub consumed: usize,
    /// Nothing was consumed although a complete packet is there: input is paused.
    pub paused: bool,
}

impl Broker {
    /// A shard with this configuration and policy.
    pub fn new(cfg: Config, policy: Policy) -> Self {
        let seed = cfg.hash_seed;
        let shards = usize::from(cfg.shards.max(1));
        // Remote nodes are shard numbers after ours and the cluster link's.
        #[cfg(feature = "cluster")]
        let shards = shards + usize::from(cfg.cluster_nodes) + usize::from(cfg.cluster_nodes > 0);
        Self {
            arena: MessageArena::new(cfg.arena_chunk),
            conns: Slab::default(),
            sessions: Slab::default(),
            by_id: crate::ids::ClientIds::new(seed),
            index: TopicIndex::new(seed),
            interest: TopicIndex::new(seed ^ 1),
            groups: HashMap::with_hasher(Hasher64::with_seed(seed ^ 2)),
            retained: RetainedStore::new(seed ^ 3),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            hits: Vec::new(),
            group_hits: Vec::new(),
            shard_hits: alloc::vec![false; shards],
            stamp: 0,
            next_origin: 0,
            auto_id: 0,
            metrics: Metrics::default(),
            shutting_down: false,
            acks: Slab::default(),
            current_ack: None,
            released: Vec::new(),
            #[cfg(feature = "backpressure")]
            mem_pressure: false,
            #[cfg(feature = "backpressure")]
            mem_paused: Vec::new(),
            #[cfg(feature = "store")]
            store: None,
            #[cfg(feature = "cluster")]
            from_cluster: false,
            #[cfg(feature = "cluster")]
            moving: false,
            policy,
            cfg,
        }
    }

    /// Whether this shard sends messages to other shards or nodes at all.
    pub(crate) fn forwards(&self) -> bool {
        self.cfg.shards > 1 || self.in_cluster()
    }

    /// Whether this broker is a node of a cluster (feature `cluster`, `cluster_nodes > 0`).
    #[inline]
    pub(crate) fn in_cluster(&self) -> bool {
        #[cfg(feature = "cluster")]
        return self.cfg.cluster_nodes > 0;
        #[cfg(not(feature = "cluster"))]
        false
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Open connections on this shard.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Sessions (connected or not) on this shard.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Retained messages held by this shard.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Distinct subscription filters in this shard's index.
    pub fn subscription_filter_count(&self) -> usize {
        self.index.filter_count()
    }

    /// Messages waiting in a client's session (queued, backlog and in flight).
    pub fn session_queue_len(&self, client_id: &str) -> Option<usize> {
        let sk = self.by_id.get(&self.sessions, client_id)?;
        let s = self.sessions.get(sk)?;
        Some(s.queue.len() + s.backlog.len() + s.inflight.len() + self.spilled(sk))
    }

    /// Messages of a client's session held in memory (queued, backlog and in flight).
    pub fn session_memory_len(&self, client_id: &str) -> Option<usize> {
        let s = self
            .sessions
            .get(self.by_id.get(&self.sessions, client_id)?)?;
        Some(s.queue.len() + s.backlog.len() + s.inflight.len())
    }

    /// A new network connection. The CONNECT must follow within `connect_timeout_ms`.
    pub fn handle_accept(&mut self, now: Instant, peer: PeerInfo) -> Result<ConnId, AcceptError> {
        if self.conns.len() >= self.cfg.max_connections || self.shutting_down {
            return Err(AcceptError::TooManyConnections);
        }
        let id = self.conns.insert_with(|_| Conn::new(now, peer));
        let ok = match self.conns.get(id) {
            Some(c) => self.policy.hooks.on_accept(id, &c.peer),
            None => false,
        };
        if !ok {
            self.conns.remove(id);
            return Err(AcceptError::Refused);
        }
        self.metrics.connections_accepted += 1;
        self.schedule(
            now.plus_millis(self.cfg.connect_timeout_ms),
            Timer::ConnectTimeout(id),
        );
        Ok(id)
    }

    /// Marks an accepted connection as a bridge the shell opened itself (an outgoing
    /// bridge's local side): as with the bridge bit, it takes as many messages in flight
    /// as it announces, and its queue holds its publishers for as long as it stays
    /// connected, without the stall timeout.
    #[cfg(feature = "bridge")]
    pub fn mark_bridge(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.bridge = true;
            c.own_bridge = true;
        }
    }

    /// Bytes received on `conn`. Complete packets at the start of `input` are processed
    /// (at most `max_packets_per_read`, and none while too many acknowledgements wait to be
    /// written); returns how many bytes were consumed. The rest stays in the caller's
    /// buffer for the next call. After a protocol error everything is consumed and the
    /// connection is closing.
    ///
    /// While the connection's publisher is held (a subscriber's queue is full, feature
    /// `backpressure`), its acknowledgements, PINGREQ and DISCONNECT are still processed;
    /// its other packets are set aside (up to `max_held_input` bytes) and processed once
    /// it is released (`Event::ResumeInput`); beyond that nothing more is consumed.
    pub fn handle_bytes(&mut self, conn: ConnId, now: Instant, input: &[u8]) -> usize {
        let mut packets = 0;
        self.metrics.bytes_received += input.len() as u64;
        #[cfg(feature = "backpressure")]
        if !self.resume_held_input(conn, now, &mut packets) {
            // The budget ran out on what was set aside (`ResumeInput` follows).
            return 0;
        }
        self.process_input(conn, now, input, &mut packets, true)
    }

    /// [`Broker::handle_bytes`], also saying whether the core paused: a complete packet is
    /// left that it would not take now (too many acknowledgements wait to be written, or a
    /// held publisher's set-aside input is full). The shell then waits for its writer to
    /// make progress or for `Event::ResumeInput` before offering the rest again.
    pub fn handle_input(&mut self, conn: ConnId, now: Instant, input: &[u8]) -> Intake {
        let consumed = self.handle_bytes(conn, now, input).min(input.len());
        let rest = input.get(consumed..).unwrap_or_default();
        let paused = consumed == 0
            && matches!(
                FixedHeader::parse(rest, usize::MAX),
                Ok(Status::Complete(h)) if rest.len() >= h.packet_len()
            );
        Intake { consumed, paused }
    }

    /// Processes complete packets at the start of `input` (see `handle_bytes`); `set_aside`
    /// is false while processing input set aside earlier, which stops when the publisher
    /// is held again.
    pub(crate) fn process_input(
        &mut self,
        conn: ConnId,
        now: Instant,
        input: &[u8],
        packets: &mut usize,
        set_aside: bool,
    ) -> usize {
        let mut pos = 0;
        #[cfg(not(feature = "backpressure"))]
        let _ = set_aside;
        while *packets < self.cfg.max_packets_per_read {
            let Some(c) = self.conns.get(conn) else {
                return input.len();
            };
            if c.state == ConnState::Closing {
                return input.len();
            }
            if c.ctrl.len() >= self.cfg.max_pending_control {
                break;
            }
            let version = c.version;
            let state = c.state;
            let rest = input.get(pos..).unwrap_or_default();
            #[cfg(feature = "backpressure")]
            if state == ConnState::Connected
                && (c.held > 0 || c.has_held_input() || self.qos2_window_full(c, rest))
            {
                if !set_aside {
                    break;
                }
                match self.set_aside(conn, now, rest) {
                    hold::Aside::Taken(n) => {
                        pos += n;
                        *packets += 1;
                        continue;
                    }
                    hold::Aside::Wait => break,
                    hold::Aside::Invalid(e) => {
                        self.decode_error(conn, now, rest, e);
                        return input.len();
                    }
                    hold::Aside::TooMany => {
                        self.protocol_error(conn, now, ReasonCode::ReceiveMaximumExceeded);
                        return input.len();
                    }
                    hold::Aside::Serve => {}
                }
            }
            // The 4-byte acknowledgements (only a packet identifier: Success, no
            // properties) skip the general decoder, which builds a whole `Packet` for
            // each: a subscriber sends one per QoS 1/2 delivery. Anything else (other
            // flags, identifier 0, reason codes) takes the general path, as every
            // acknowledgement does on 32-bit targets (the gateway), where this copy of the
            // dispatch costs more flash than it saves time.
            let fast_acks = cfg!(target_pointer_width = "64");
            if let (true, ConnState::Connected, Some(&[first, 2, hi, lo])) =
                (fast_acks, state, rest.get(..4))
            {
                if let (Some(kind), Some(pid)) = (
                    match first {
                        0x40 => Some(PacketType::PubAck),
                        0x50 => Some(PacketType::PubRec),
                        0x62 => Some(PacketType::PubRel),
                        0x70 => Some(PacketType::PubComp),
                        _ => None,
                    },
                    PacketId::new(u16::from_be_bytes([hi, lo])),
                ) {
                    pos += 4;
                    *packets += 1;
                    #[cfg(feature = "ops")]
                    self.metrics.ops.count_packet(first);
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.last_rx = now;
                    }
                    match kind {
                        PacketType::PubAck => self.complete(conn, pid, InflightState::AwaitAck),
                        PacketType::PubRec => self.pubrec(conn, pid, ReasonCode::Success),
                        PacketType::PubRel => self.pubrel(conn, pid),
                        _ => self.complete(conn, pid, InflightState::AwaitComp),
                    }
                    continue;
                }
            }
            #[cfg(feature = "backpressure")]
            if self.mem_pressure && state == ConnState::Connected {
                match self.memory_gate(conn, rest) {
                    hold::MemGate::Pass => {}
                    hold::MemGate::Dropped(n) => {
                        pos += n;
                        *packets += 1;
                        continue;
                    }
                    hold::MemGate::Wait => break,
                }
            }
            // PUBLISH: decoded without building a `Packet`, keeping its property block as
            // received so that the stored message copies it instead of re-encoding it.
            if state == ConnState::Connected
                && rest
                    .first()
                    .is_some_and(|&b| b >> 4 == PacketType::Publish as u8)
            {
                let max = self.cfg.max_packet_size as usize;
                let h = match FixedHeader::parse(rest, max) {
                    Ok(Status::Complete(h)) => h,
                    Ok(Status::Incomplete { .. }) => break,
                    Err(e) => {
                        self.decode_error(conn, now, rest, e);
                        return input.len();
                    }
                };
                let Some(body) = rest.get(h.header_len..h.packet_len()) else {
                    break;
                };
                // Matched in place: the decoded PUBLISH is not moved again.
                match Publish::parse_body_forwardable(&h, body, version) {
                    Ok((p, forwarded)) => {
                        pos += h.packet_len();
                        *packets += 1;
                        #[cfg(feature = "ops")]
                        self.metrics
                            .ops
                            .count_packet((PacketType::Publish as u8) << 4);
                        if let Some(c) = self.conns.get_mut(conn) {
                            c.last_rx = now;
                        }
                        self.handle_publish(conn, now, &p, forwarded);
                        continue;
                    }
                    Err(e) => {
                        self.decode_error(conn, now, rest, e);
                        return input.len();
                    }
                }
            }
            match Packet::parse(rest, version, self.cfg.max_packet_size as usize) {
                Ok(Status::Complete((packet, len))) => {
                    pos += len;
                    *packets += 1;
                    #[cfg(feature = "ops")]
                    if let Some(&b) = rest.first() {
                        self.metrics.ops.count_packet(b);
                    }
                    if let Some(c) = self.conns.get_mut(conn) {
                        c.last_rx = now;
                    }
                    self.handle_packet(conn, now, packet);
                }
                Ok(Status::Incomplete { .. }) => break,
                Err(e) => {
                    self.decode_error(conn, now, rest, e);
                    return input.len();
                }
            }
        }
        pos
    }

    fn handle_packet(&mut self, conn: ConnId, now: Instant, packet: Packet<'_>) {
        let Some(state) = self.conns.get(conn).map(|c| c.state) else {
            return;
        };
        match (state, packet) {
            (ConnState::AwaitConnect, Packet::Connect(c)) => self.handle_connect(conn, now, &c),
            // [MQTT-3.1.0-1] the first packet must be CONNECT.
            (ConnState::AwaitConnect, _) => self.close(conn, now, None),
            (ConnState::Authenticating, Packet::Auth(a)) => self.handle_auth(conn, now, &a),
            (ConnState::Authenticating, Packet::Disconnect(d)) => {
                self.handle_disconnect(conn, now, &d)
            }
            (ConnState::Authenticating, _) => {
                self.protocol_error(conn, now, ReasonCode::ProtocolError)
            }
            // [MQTT-3.1.0-2] a second CONNECT is a Protocol Error.
            (ConnState::Connected, Packet::Connect(_)) => {
                self.protocol_error(conn, now, ReasonCode::ProtocolError)
            }
            (ConnState::Connected, Packet::Publish(p)) => self.handle_publish(conn, now, &p, None),
            (ConnState::Connected, Packet::PubAck(a)) => self.handle_puback(conn, now, &a),
            (ConnState::Connected, Packet::PubRec(a)) => self.handle_pubrec(conn, now, &a),
            (ConnState::Connected, Packet::PubRel(a)) => self.handle_pubrel(conn, now, &a),
            (ConnState::Connected, Packet::PubComp(a)) => self.handle_pubcomp(conn, now, &a),
            (ConnState::Connected, Packet::Subscribe(s)) => self.handle_subscribe(conn, now, &s),
            (ConnState::Connected, Packet::Unsubscribe(u)) => {
                self.handle_unsubscribe(conn, now, &u)
            }
            (ConnState::Connected, Packet::PingReq) => self.push_ctrl(conn, Ctrl::PingResp),
            (ConnState::Connected, Packet::Disconnect(d)) => self.handle_disconnect(conn, now, &d),
            (ConnState::Connected, Packet::Auth(a)) => self.handle_auth(conn, now, &a),
            // Packets only a server sends ([MQTT-4.8.0-1]... a Protocol Error from a client).
            (ConnState::Connected, _) => self.protocol_error(conn, now, ReasonCode::ProtocolError),
            (ConnState::Closing, _) => {}
        }
    }

    fn decode_error(&mut self, conn: ConnId, now: Instant, bytes: &[u8], e: DecodeError) {
        self.metrics.protocol_errors += 1;
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.state == ConnState::AwaitConnect {
            // CONNACK in the client's own version where it can be known ([MQTT-3.1.2-2]).
            let level = match crate::admission::connect_level(bytes) {
                crate::admission::Level::Of(l) => Some(l),
                _ => None,
            };
            let code = match e {
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName => {
                    Some(ReasonCode::UnsupportedProtocolVersion)
                }
                _ if level == Some(5) => Some(e.reason_code()),
                _ => None,
            };
            if let Some(code) = code {
                let v = crate::admission::version_of_level(level.unwrap_or(4));
                self.refuse_connect(conn, now, v, code);
            } else {
                self.close(conn, now, None);
            }
            return;
        }
        self.protocol_error(conn, now, e.reason_code());
    }

    /// Server-initiated close after a client error: DISCONNECT with `code` in MQTT 5.
    pub(crate) fn protocol_error(&mut self, conn: ConnId, now: Instant, code: ReasonCode) {
        self.metrics.protocol_errors += 1;
        self.close(conn, now, Some(code));
    }

    pub(crate) fn push_ctrl(&mut self, conn: ConnId, ctrl: Ctrl) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.ctrl.push_back(ctrl);
            if !c.output_flagged {
                c.output_flagged = true;
                self.events.push_back(Event::Output(conn));
            }
        }
    }

    /// Flags a connection as having output (once until `poll_transmit` drains it).
    pub(crate) fn wake(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn) {
            if !c.output_flagged && c.state == ConnState::Connected {
                c.output_flagged = true;
                self.events.push_back(Event::Output(conn));
            }
        }
    }

    /// The socket of `conn` closed (by the peer, an error, or after `Event::Close`).
    pub fn handle_closed(&mut self, conn: ConnId, now: Instant) {
        let Some(state) = self.conns.get(conn).map(|c| c.state) else {
            return;
        };
        if state != ConnState::Closing {
            // Not a DISCONNECT: the will is published ([MQTT-3.1.2-8]).
            self.detach(conn, now, None);
        }
        if let Some(c) = self.conns.remove(conn) {
            if c.state == ConnState::Authenticating || c.pending.is_some() {
                self.policy.authenticator.auth_abort(conn);
            }
        }
    }

    /// Whether events or store records wait to be taken (`poll_event`,
    /// `take_store_batch`): a shell that calls `poll_transmit` outside its event loop
    /// checks this afterwards.
    pub fn has_pending_work(&self) -> bool {
        #[cfg(feature = "store")]
        if self.store.as_deref().is_some_and(|st| st.pending()) {
            return true;
        }
        !self.events.is_empty()
    }

    /// The next event, if any. Changes after any `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Closes every connection for shutdown: MQTT 5 clients get DISCONNECT 0x8B
    /// (0x8B "Server shutting down", then nothing more and the connection closed:
    /// [MQTT-3.14.4-1], [MQTT-3.14.4-2] v5), wills are published as for any
    /// server-initiated close, and further accepts are refused.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let conns: Vec<ConnId> = self.conns.keys().collect();
        for c in conns {
            self.close(c, now, Some(ReasonCode::ServerShuttingDown));
        }
    }

    pub(crate) fn client_info<'a>(s: &'a Session, peer: Option<&'a PeerInfo>) -> ClientInfo<'a> {
        ClientInfo {
            client_id: &s.client_id,
            username: s.username.as_deref(),
            peer,
            protocol: s.protocol,
        }
    }

    /// Every retained message, for a durable store.
    pub fn retained_messages(&self) -> Vec<crate::message::Message> {
        self.retained.iter().cloned().collect()
    }
}
