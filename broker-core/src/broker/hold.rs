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
}

impl Broker {
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
        let Some(c) = self.conns.get_mut(conn) else {
            return Aside::Wait;
        };
        c.last_rx = now;
        let held = &mut c.rare(seed).held_input;
        // One packet is always taken, whatever its size (within the maximum packet size),
        // so that the acknowledgements behind it are served.
        if !held.is_empty() && held.len() + len > cap {
            return Aside::Wait;
        }
        held.extend_from_slice(frame);
        Aside::Taken(len)
    }

    /// Processes input set aside while the connection was held, if it no longer is.
    /// Returns false when some is still left because the packet budget ran out (the core
    /// then raises `ResumeInput` to be called again); when the connection is held again,
    /// the rest stays set aside and new input goes behind it.
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
            r.held_input = input;
        }
        if !held {
            self.events.push_back(Event::ResumeInput(conn));
        }
        held
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
            AckTarget::Remote(r) => self.events.push_back(Event::Forward {
                to: r.shard,
                msg: ShardMsg::AckParked { key: r.key },
            }),
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
        let Some(conn) = self.sessions.get(sk).and_then(|s| s.conn) else {
            return;
        };
        self.metrics.subscribers_stalled += 1;
        self.close(conn, now, Some(mqtt_proto::ReasonCode::QuotaExceeded));
    }
}
