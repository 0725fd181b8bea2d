//! Back-pressure on publishers: a publisher whose QoS 1/2 message waits for room in a full
//! subscriber queue (here or on another shard, see `flow`) is held. Its acknowledgement
//! waits, and its further PUBLISH, SUBSCRIBE and UNSUBSCRIBE packets are set aside instead
//! of processed, up to `max_held_input` bytes; beyond that the core consumes nothing more,
//! so the shell stops reading the socket and TCP's window holds the rest. Its
//! acknowledgements, PINGREQ and DISCONNECT are still served, so a client that both
//! publishes and subscribes cannot deadlock itself. When every held acknowledgement has
//! gone out, `Event::ResumeInput` asks the shell to feed the connection again, and what was
//! set aside is processed first, in order.
//!
//! Memory stays bounded without dropping anything acknowledged: each held publisher adds at
//! most the messages it sent before the hold took effect to a subscriber's overflow, and
//! `max_held_input` bytes of its own.

use super::flow::AckTarget;
use super::{Broker, Event};
use crate::conn::ConnState;
use crate::policy::ConnId;
use crate::shard::ShardMsg;
use crate::slab::Key;
use crate::time::Instant;
use mqtt_proto::{DecodeError, FixedHeader, PacketType, Status};

/// What to do with the next packet of a held connection.
pub(crate) enum Aside {
    /// Set aside: this many bytes consumed.
    Taken(usize),
    /// Process it now (an acknowledgement, PINGREQ or DISCONNECT).
    Serve,
    /// Incomplete, or no room to set it aside: consume nothing more for now.
    Wait,
    /// A malformed fixed header.
    Invalid(DecodeError),
    /// A QoS 1/2 PUBLISH beyond the server's Receive Maximum ([MQTT-3.3.4-7] v5).
    TooMany,
}

/// What the memory limit does with the next packet.
pub(crate) enum MemGate {
    /// Not a PUBLISH (or incomplete): as usual.
    Pass,
    /// A QoS 0 PUBLISH of this many bytes, dropped.
    Dropped(usize),
    /// A QoS 1/2 PUBLISH: not read until the memory limit is no longer reached.
    Wait,
}

/// The QoS of a PUBLISH from its fixed header flags.
fn publish_qos(h: &FixedHeader) -> u8 {
    (h.flags >> 1) & 3
}

/// QoS 1/2 PUBLISH packets among the whole packets of `input`.
fn count_qos_publishes(mut input: &[u8]) -> u16 {
    let mut n: u16 = 0;
    while let Ok(Status::Complete(h)) = FixedHeader::parse(input, usize::MAX) {
        if h.packet_type == PacketType::Publish && publish_qos(&h) > 0 {
            n = n.saturating_add(1);
        }
        input = input.get(h.packet_len()..).unwrap_or_default();
    }
    n
}

impl Broker {
    /// The shell's view of the broker's memory: at its limit (`on`), QoS 0 messages are
    /// dropped and QoS 1/2 publishers are no longer read (their other packets neither,
    /// behind their PUBLISH); below it again, they resume (`Event::ResumeInput`).
    pub fn set_memory_pressure(&mut self, on: bool) {
        if self.mem_pressure == on {
            return;
        }
        self.mem_pressure = on;
        if !on {
            for c in core::mem::take(&mut self.mem_paused) {
                self.events.push_back(Event::ResumeInput(c));
            }
        }
    }

    /// Sorts the next packet of a connection while the memory limit is reached.
    pub(crate) fn memory_gate(&mut self, conn: ConnId, rest: &[u8]) -> MemGate {
        let Ok(Status::Complete(h)) = FixedHeader::parse(rest, usize::MAX) else {
            return MemGate::Pass;
        };
        if h.packet_type != PacketType::Publish || rest.len() < h.packet_len() {
            return MemGate::Pass;
        }
        if publish_qos(&h) == 0 {
            self.metrics.dropped_memory += 1;
            return MemGate::Dropped(h.packet_len());
        }
        if !self.mem_paused.contains(&conn) {
            self.mem_paused.push(conn);
        }
        MemGate::Wait
    }

    /// Whether the connection's input is held back: a held publisher, or input set aside
    /// and not yet processed (its SUBSCRIBE, say, is not answered yet).
    pub fn input_held(&self, conn: ConnId) -> bool {
        self.conns
            .get(conn)
            .is_some_and(|c| c.held > 0 || c.has_held_input())
    }

    /// Sorts the next packet of a held connection (see [`Aside`]).
    pub(crate) fn set_aside(&mut self, conn: ConnId, now: Instant, rest: &[u8]) -> Aside {
        let h = match FixedHeader::parse(rest, self.cfg.max_packet_size as usize) {
            Ok(Status::Complete(h)) => h,
            Ok(Status::Incomplete { .. }) => return Aside::Wait,
            Err(e) => return Aside::Invalid(e),
        };
        if matches!(
            h.packet_type,
            PacketType::PubAck
                | PacketType::PubRec
                | PacketType::PubRel
                | PacketType::PubComp
                | PacketType::PingReq
                | PacketType::Disconnect
        ) {
            return Aside::Serve;
        }
        let len = h.packet_len();
        let Some(frame) = rest.get(..len) else {
            return Aside::Wait;
        };
        let cap = self.cfg.max_held_input;
        let seed = self.cfg.hash_seed;
        let receive_maximum = usize::from(self.cfg.receive_maximum);
        let unacknowledged = self
            .conns
            .get(conn)
            .and_then(|c| c.session)
            .and_then(|sk| self.sessions.get(sk))
            .map_or(0, |s| s.rx_qos2.len());
        let Some(c) = self.conns.get_mut(conn) else {
            return Aside::Wait;
        };
        c.last_rx = now;
        let v5 = c.version.is_v5();
        let delayed = usize::from(c.delayed_acks);
        let r = c.rare(seed);
        // One packet is always taken, whatever its size (within the maximum packet size),
        // so that the acknowledgements behind it are served.
        if !r.held_input.is_empty() && r.held_input.len() + len > cap {
            return Aside::Wait;
        }
        if h.packet_type == PacketType::Publish && publish_qos(&h) > 0 {
            // Set aside, it is still unacknowledged: the client's count includes it.
            if v5 && delayed + unacknowledged + usize::from(r.held_qos) >= receive_maximum {
                return Aside::TooMany;
            }
            r.held_qos = r.held_qos.saturating_add(1);
        }
        r.held_input.extend_from_slice(frame);
        Aside::Taken(len)
    }

    /// Processes input set aside while the connection was held, if it no longer is.
    /// Returns false when the packet budget ran out with some left (the core then raises
    /// `ResumeInput` to be called again). Otherwise what is left (held again, or waiting
    /// for room among the control packets or in the QoS 2 window, after which
    /// `poll_transmit` or a PUBREL raises `ResumeInput`) stays set aside, and new input
    /// goes behind it.
    pub(crate) fn resume_held_input(
        &mut self,
        conn: ConnId,
        now: Instant,
        packets: &mut usize,
    ) -> bool {
        let Some(c) = self.conns.get_mut(conn) else {
            return true;
        };
        if c.held > 0 {
            return true;
        }
        let Some(r) = c.rare.as_deref_mut() else {
            return true;
        };
        if r.held_input.is_empty() {
            return true;
        }
        let mut input = core::mem::take(&mut r.held_input);
        r.held_qos = 0;
        let used = self.process_input(conn, now, &input, packets, false);
        input.drain(..used.min(input.len()));
        let Some(c) = self.conns.get_mut(conn) else {
            return true;
        };
        if input.is_empty() || c.state == ConnState::Closing {
            return true;
        }
        let held = c.held > 0;
        if let Some(r) = c.rare.as_deref_mut() {
            r.held_qos = count_qos_publishes(&input);
            r.held_input = input;
        }
        if !held && *packets >= self.cfg.max_packets_per_read {
            self.events.push_back(Event::ResumeInput(conn));
            return false;
        }
        // Held again, or waiting: new input is served as for a held connection (its
        // acknowledgements, which may be what it waits for, go first).
        true
    }

    /// Whether `rest` starts with a 3.1/3.1.1 QoS 2 PUBLISH while the client's QoS 2
    /// messages awaiting PUBREL fill the window the server keeps for it: it waits until a
    /// PUBREL frees a place (3.1.1 has no Receive Maximum to exceed: the client is held,
    /// not disconnected; an MQTT 5 client exceeding it is refused with 0x93).
    pub(crate) fn qos2_window_full(&self, c: &crate::conn::Conn, rest: &[u8]) -> bool {
        rest.first()
            .is_some_and(|&b| b >> 4 == 3 && (b >> 1) & 3 == 2)
            && !c.version.is_v5()
            && c.session
                .and_then(|sk| self.sessions.get(sk))
                .is_some_and(|s| s.rx_qos2.len() >= usize::from(self.cfg.receive_maximum))
    }

    /// A PUBREL freed a place in the QoS 2 window: input set aside for it resumes.
    pub(crate) fn qos2_window_opened(&mut self, conn: ConnId) {
        if self
            .conns
            .get(conn)
            .is_some_and(|c| c.held == 0 && c.has_held_input())
        {
            self.events.push_back(Event::ResumeInput(conn));
        }
    }

    /// The acknowledgement `key` waits for a full queue: its publisher is held (once per
    /// acknowledgement, wherever it came from).
    pub(crate) fn mark_parked(&mut self, key: Key) {
        let Some(a) = self.acks.get_mut(key) else {
            return;
        };
        if a.parked {
            return;
        }
        a.parked = true;
        match a.target {
            AckTarget::Conn { conn, .. } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    if c.held == 0 {
                        self.metrics.publishers_held += 1;
                    }
                    c.held = c.held.saturating_add(1);
                }
            }
            AckTarget::Remote(r) if r.shard == self.cfg.shard => self.mark_parked(r.key),
            AckTarget::Remote(r) => self.events.push_back(Event::ToShard {
                to: r.shard,
                msg: ShardMsg::AckParked { key: r.key },
            }),
            // The publisher on the other node waits for its acknowledgement, which bounds
            // what it sends (its window); it is not held beyond that.
            #[cfg(feature = "cluster")]
            AckTarget::Cluster(_) => {}
        }
    }

    /// A held acknowledgement of `conn` went out (or its connection is closing): the
    /// publisher resumes once none is left.
    pub(crate) fn unhold(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.held = c.held.saturating_sub(1);
        if c.held == 0 && c.state == ConnState::Connected {
            self.events.push_back(Event::ResumeInput(conn));
        }
    }

    /// The stall timer found a subscriber without progress: it is disconnected (MQTT 5:
    /// 0x97 Quota exceeded) and its session treated as offline from then on, which releases
    /// the publishers waiting for it.
    pub(crate) fn disconnect_stalled(&mut self, now: Instant, sk: Key) {
        let Some(s) = self.sessions.get(sk) else {
            return;
        };
        let Some(conn) = s.conn else {
            return;
        };
        self.policy.hooks.on_stalled(&s.client_id);
        self.metrics.subscribers_stalled += 1;
        self.close(conn, now, Some(mqtt_proto::ReasonCode::QuotaExceeded));
    }
}
