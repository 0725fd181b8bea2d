//! The write-ahead records of persistent sessions and retained messages (feature `store`,
//! see `crate::store`), and the acknowledgements that wait for them.
//!
//! What waits for which batch: the acknowledgement of a routed message that wrote records
//! (PUBACK or PUBREC: a hold on it, released at commit), PUBCOMP after a QoS 2 identifier
//! is released, and every output of a connection whose CONNECT, SUBSCRIBE or UNSUBSCRIBE
//! wrote records (so CONNACK, SUBACK and UNSUBACK follow their records, and nothing goes
//! before a CONNACK).
//!
//! Without the feature every hook here is an empty inline function.

use super::Broker;
#[cfg(feature = "store")]
use crate::conn::WillSpec;
use crate::policy::ConnId;
use crate::session::{Queued, SubRecord};
use crate::slab::Key;
#[cfg(feature = "store")]
use crate::store::{BatchWriter, Space};
#[cfg(feature = "store")]
use alloc::collections::VecDeque;
#[cfg(feature = "store")]
use alloc::vec::Vec;
use mqtt_proto::{PacketId, PacketType, ReasonCode};

/// A batch handed to the shell and not yet reported written.
#[cfg(feature = "store")]
#[derive(Debug)]
struct Waiting {
    id: u64,
    acks: Vec<Key>,
    conns: Vec<ConnId>,
}

/// The batch being filled and the batches being written.
#[cfg(feature = "store")]
#[derive(Debug, Default)]
pub(crate) struct StoreLog {
    pub(crate) w: BatchWriter,
    /// Acknowledgements (keys in `acks`) released when this batch is written.
    acks: Vec<Key>,
    /// Connections whose output waits for this batch.
    conns: Vec<ConnId>,
    /// Identifier of the batch being filled.
    next: u64,
    waiting: VecDeque<Waiting>,
    /// Emptied vectors of written batches, for reuse.
    spare: Vec<(Vec<Key>, Vec<ConnId>)>,
    /// Length of the batch when the message being routed started.
    route_mark: usize,
    /// The last record number given to a queued message (one counter per shard: numbers
    /// only have to grow within each session).
    pub(crate) seq: u64,
    /// Queued messages a stored session keeps in memory; the rest stay on disk only.
    pub(crate) in_memory: usize,
    /// Sessions whose queue continues on disk.
    spills: hashbrown::HashMap<Key, Spill, crate::index::Hasher64>,
}

/// The part of a session's queue that is on disk only: messages with record numbers above
/// `after`, `count` of them.
#[cfg(feature = "store")]
#[derive(Debug, Default)]
struct Spill {
    count: usize,
    after: u64,
    loading: bool,
}

#[cfg(feature = "store")]
impl StoreLog {
    /// Records, acknowledgements or gated connections wait for the next batch.
    pub(crate) fn pending(&self) -> bool {
        !self.w.buf.is_empty() || !self.acks.is_empty() || !self.conns.is_empty()
    }

    pub(crate) fn blocks(&self, conn: ConnId) -> bool {
        self.conns.contains(&conn) || self.waiting.iter().any(|w| w.conns.contains(&conn))
    }

    /// `conn`'s output waits for the batch being filled.
    pub(crate) fn gate(&mut self, conn: ConnId) {
        if !self.conns.contains(&conn) {
            self.conns.push(conn);
        }
    }

    pub(crate) fn msg_done(&mut self, client: &str, seq: u64) {
        if seq != 0 {
            self.w.delete(Space::Msg, client, &seq.to_be_bytes());
            self.w.delete(Space::Inflight, client, &seq.to_be_bytes());
        }
    }

    pub(crate) fn msg_inflight(
        &mut self,
        client: &str,
        seq: u64,
        pid: u16,
        state: u8,
        first: bool,
    ) {
        if seq != 0 {
            self.w.inflight(client, seq, pid, state, first);
        }
    }
}

/// The in-flight state as stored (1 PUBACK, 2 PUBREC, 3 PUBCOMP awaited).
pub(crate) fn state_code(s: crate::session::InflightState) -> u8 {
    match s {
        crate::session::InflightState::AwaitAck => 1,
        crate::session::InflightState::AwaitRec => 2,
        crate::session::InflightState::AwaitComp => 3,
    }
}

/// The record sequence of a queued message (0: not stored).
#[inline]
pub(crate) fn seq_of(q: &Queued) -> u64 {
    #[cfg(feature = "store")]
    return q.seq;
    #[cfg(not(feature = "store"))]
    {
        let _ = q;
        0
    }
}

impl Broker {
    /// Turns on the write-ahead records (call before restoring and serving). `clock`:
    /// the wall clock in Unix milliseconds at this process's `Instant` 0 (expiry times are
    /// stored on it).
    /// `in_memory`: queued messages a persistent session keeps in memory; beyond them its
    /// queue continues on disk (read back with `Event::StoreLoad`).
    #[cfg(feature = "store")]
    pub fn enable_store(&mut self, clock: u64, in_memory: usize) {
        let mut log = StoreLog {
            next: 1,
            in_memory: in_memory.max(1),
            ..StoreLog::default()
        };
        log.w.clock = clock;
        self.store = Some(alloc::boxed::Box::new(log));
    }

    /// Moves the records written since the last call into `out` (which should be empty; its
    /// allocation is kept for the next batch) and returns the batch's identifier, or `None`
    /// when nothing waits. Write the records, in order, then call
    /// [`Broker::handle_store_committed`] with the identifier. Batches must be written in
    /// the order they were taken.
    #[cfg(feature = "store")]
    pub fn take_store_batch(&mut self, out: &mut Vec<u8>) -> Option<u64> {
        let st = self.store.as_deref_mut()?;
        if st.w.buf.is_empty() && st.acks.is_empty() && st.conns.is_empty() {
            return None;
        }
        out.clear();
        core::mem::swap(out, &mut st.w.buf);
        let (acks, conns) = st.spare.pop().unwrap_or_default();
        let acks = core::mem::replace(&mut st.acks, acks);
        let conns = core::mem::replace(&mut st.conns, conns);
        let id = st.next;
        st.next += 1;
        st.route_mark = 0;
        st.waiting.push_back(Waiting { id, acks, conns });
        Some(id)
    }

    /// Every batch up to `id` is written: what waited for it goes out.
    #[cfg(feature = "store")]
    pub fn handle_store_committed(&mut self, id: u64) {
        loop {
            let Some(st) = self.store.as_deref_mut() else {
                return;
            };
            if st.waiting.front().is_none_or(|w| w.id > id) {
                return;
            }
            let Some(mut w) = st.waiting.pop_front() else {
                return;
            };
            for k in w.acks.drain(..) {
                self.release_ack(k);
            }
            for c in w.conns.drain(..) {
                self.wake(c);
            }
            if let Some(st) = self.store.as_deref_mut() {
                st.spare.push((w.acks, w.conns));
            }
        }
    }

    /// How much the batch being filled holds (for [`Broker::store_gate_since`]).
    #[inline]
    pub(crate) fn store_mark(&self) -> usize {
        #[cfg(feature = "store")]
        return self.store.as_deref().map_or(0, |st| st.w.buf.len());
        #[cfg(not(feature = "store"))]
        0
    }

    /// `conn`'s output waits for the batch if records were written since `mark` (a
    /// CONNECT that ended a stored session: its CONNACK says the session is gone).
    #[inline]
    pub(crate) fn store_gate_since(&mut self, mark: usize, conn: ConnId) {
        #[cfg(feature = "store")]
        if self.store_mark() > mark {
            self.gate(Some(conn));
        }
        #[cfg(not(feature = "store"))]
        let _ = (mark, conn);
    }

    /// The output of `conn` waits for the batch being filled.
    #[cfg(feature = "store")]
    fn gate(&mut self, conn: Option<ConnId>) {
        if let (Some(st), Some(c)) = (self.store.as_deref_mut(), conn) {
            st.gate(c);
        }
    }

    /// Routing of a message with an acknowledgement starts (see `end_ack`).
    #[inline]
    pub(crate) fn store_route_begin(&mut self) {
        #[cfg(feature = "store")]
        if let Some(st) = self.store.as_deref_mut() {
            st.route_mark = st.w.buf.len();
        }
    }

    /// Routing ends: if it wrote records, the acknowledgement waits for their batch.
    #[inline]
    pub(crate) fn store_route_end(&mut self) {
        #[cfg(feature = "store")]
        if self
            .store
            .as_deref()
            .is_some_and(|st| st.w.buf.len() > st.route_mark)
        {
            if let Some(k) = self.hold_current() {
                if let Some(st) = self.store.as_deref_mut() {
                    st.acks.push(k);
                }
            }
        }
    }

    /// An acknowledgement goes out once the batch being filled is written (at once
    /// without a store).
    pub(crate) fn ack_after_store(
        &mut self,
        conn: ConnId,
        kind: PacketType,
        pid: PacketId,
        code: ReasonCode,
    ) {
        #[cfg(feature = "store")]
        if self.store.is_some() {
            let k = self.acks.insert_with(|_| super::flow::PendingAck {
                target: super::flow::AckTarget::Conn {
                    conn,
                    pid,
                    kind,
                    code,
                },
                holds: 1,
                #[cfg(feature = "backpressure")]
                parked: false,
                rx_record: false,
            });
            if let Some(st) = self.store.as_deref_mut() {
                st.acks.push(k);
            }
            return;
        }
        self.push_ctrl(conn, crate::conn::Ctrl::Ack { kind, pid, code });
    }

    /// A QoS 2 message from `sk` was routed (before `end_ack`): its received identifier
    /// is recorded in the same batch as the message's records when they are all here, so
    /// that a restart finds both or neither. When other shards (or a full queue) hold
    /// records of it, the identifier is recorded once they are all written, and PUBREC
    /// waits for that: a restart in between may deliver it twice if the client sends it
    /// again, but never loses it.
    pub(crate) fn store_qos2_received(&mut self, sk: Key, pid: u16) {
        #[cfg(feature = "store")]
        {
            if !self.session_stored(sk) {
                return;
            }
            let key = self.current_ack.as_ref().and_then(|c| c.key);
            match key.and_then(|k| self.acks.get_mut(k)) {
                // Holds beyond the routing one: other shards or a full queue.
                Some(a) if a.holds > 1 => a.rx_record = true,
                _ => self.store_qos2_in(sk, pid, true),
            }
        }
        #[cfg(not(feature = "store"))]
        let _ = (sk, pid);
    }

    /// Every record of a QoS 2 message is written: its received identifier now, and
    /// PUBREC once that is.
    #[cfg(feature = "store")]
    pub(crate) fn qos2_received_late(&mut self, conn: ConnId, pid: PacketId, code: ReasonCode) {
        let Some(sk) = self.conns.get(conn).and_then(|c| c.session) else {
            return;
        };
        self.store_qos2_in(sk, pid.get(), true);
        if self
            .conns
            .get(conn)
            .is_some_and(|c| c.state != crate::conn::ConnState::Closing)
        {
            self.ack_after_store(conn, PacketType::PubRec, pid, code);
        }
    }

    /// A released hold that must wait for the batch being filled (a parked message just
    /// written to its queue).
    #[inline]
    pub(crate) fn release_after_store(&mut self, key: Key, stored: bool) {
        #[cfg(feature = "store")]
        if stored {
            if let Some(st) = self.store.as_deref_mut() {
                st.acks.push(key);
                return;
            }
        }
        let _ = stored;
        self.release_ack(key);
    }

    /// The session's existence (created, resumed, its expiry changed) is recorded if it is
    /// persistent, or its records removed if it no longer is; `conn` (CONNECT, DISCONNECT)
    /// waits for the batch.
    #[inline]
    pub(crate) fn store_session(&mut self, sk: Key, conn: Option<ConnId>) {
        #[cfg(feature = "store")]
        {
            let Some(st) = self.store.as_deref_mut() else {
                return;
            };
            let Some(s) = self.sessions.get_mut(sk) else {
                return;
            };
            if s.expiry_interval == 0 && !s.stored {
                return;
            }
            // A stored session whose expiry became 0 keeps its records (its queue may be
            // partly on disk) until it ends; a restart finds expiry 0 and drops it.
            st.w.session(
                &s.client_id,
                s.username.as_deref(),
                s.protocol,
                s.expiry_interval,
            );
            s.stored = true;
            self.gate(conn);
        }
        #[cfg(not(feature = "store"))]
        let _ = (sk, conn);
    }

    /// A session ends: every record of it goes.
    #[cfg(feature = "store")]
    pub(crate) fn store_session_end(&mut self, client_id: &str, stored: bool) {
        if let (Some(st), true) = (self.store.as_deref_mut(), stored) {
            st.w.delete_client(client_id);
        }
    }

    #[cfg(feature = "store")]
    /// A stored session went on to another node: this node's copy of its records goes, the
    /// shared copy stays.
    pub(crate) fn store_session_moved(&mut self, client_id: &str, stored: bool) {
        if let (Some(st), true) = (self.store.as_deref_mut(), stored) {
            st.w.forget_client(client_id);
        }
    }

    /// A subscription of a persistent session was added (`rec`) or removed; `conn`'s
    /// SUBACK or UNSUBACK waits for the batch.
    #[inline]
    pub(crate) fn store_sub(
        &mut self,
        sk: Key,
        conn: Option<ConnId>,
        filter: &str,
        rec: Option<&SubRecord>,
    ) {
        #[cfg(feature = "store")]
        {
            let Some(st) = self.store.as_deref_mut() else {
                return;
            };
            let Some(s) = self.sessions.get(sk).filter(|s| s.stored) else {
                return;
            };
            match rec {
                Some(r) => st.w.sub(&s.client_id, filter, r.options, r.id),
                None => st.w.delete(Space::Sub, &s.client_id, filter.as_bytes()),
            }
            self.gate(conn);
        }
        #[cfg(not(feature = "store"))]
        let _ = (sk, conn, filter, rec);
    }

    /// A QoS 1/2 message enters a persistent session's queue: it gets a record (and a
    /// sequence number naming it). Returns whether it was written.
    #[inline]
    pub(crate) fn store_queued(&mut self, sk: Key, item: &mut Queued) -> bool {
        #[cfg(feature = "store")]
        {
            let Some(st) = self.store.as_deref_mut() else {
                return false;
            };
            let Some(s) = self.sessions.get(sk).filter(|s| s.stored) else {
                return false;
            };
            if item.qos == mqtt_proto::QoS::AtMostOnce {
                return false;
            }
            st.seq += 1;
            item.seq = st.seq;
            st.w.msg(&s.client_id, item.seq, item.qos, item.retain, &item.msg);
            true
        }
        #[cfg(not(feature = "store"))]
        {
            let _ = (sk, item);
            false
        }
    }

    /// A stored message left its session without completing (dropped, expired).
    #[inline]
    pub(crate) fn store_msg_done(&mut self, sk: Key, seq: u64) {
        #[cfg(feature = "store")]
        if let (Some(st), Some(s)) = (self.store.as_deref_mut(), self.sessions.get(sk)) {
            st.msg_done(&s.client_id, seq);
        }
        #[cfg(not(feature = "store"))]
        let _ = (sk, seq);
    }

    /// The state of a stored message in flight changed (PUBREC received).
    #[inline]
    pub(crate) fn store_inflight(&mut self, sk: Key, seq: u64, pid: u16, state: u8) {
        #[cfg(feature = "store")]
        if let (Some(st), Some(s)) = (self.store.as_deref_mut(), self.sessions.get(sk)) {
            st.msg_inflight(&s.client_id, seq, pid, state, false);
        }
        #[cfg(not(feature = "store"))]
        let _ = (sk, seq, pid, state);
    }

    /// A QoS 2 packet identifier of a persistent session was received (`add`) or released.
    #[inline]
    pub(crate) fn store_qos2_in(&mut self, sk: Key, pid: u16, add: bool) {
        #[cfg(feature = "store")]
        {
            let Some(st) = self.store.as_deref_mut() else {
                return;
            };
            let Some(s) = self.sessions.get(sk).filter(|s| s.stored) else {
                return;
            };
            st.w.qos2_in(&s.client_id, pid, add);
        }
        #[cfg(not(feature = "store"))]
        let _ = (sk, pid, add);
    }

    /// Whether the session's records are kept.
    #[inline]
    pub(crate) fn session_stored(&self, sk: Key) -> bool {
        #[cfg(feature = "store")]
        return self.store.is_some() && self.sessions.get(sk).is_some_and(|s| s.stored);
        #[cfg(not(feature = "store"))]
        {
            let _ = sk;
            false
        }
    }

    /// A retained message was set (or cleared by an empty payload) by a publisher here.
    #[inline]
    pub(crate) fn store_retained(&mut self, msg: &crate::message::Message) {
        #[cfg(feature = "store")]
        if let Some(st) = self.store.as_deref_mut() {
            st.w.retained(msg);
        }
        #[cfg(not(feature = "store"))]
        let _ = msg;
    }

    /// Messages of the session on disk only.
    #[inline]
    pub(crate) fn spilled(&self, sk: Key) -> usize {
        #[cfg(feature = "store")]
        return self
            .store
            .as_deref()
            .and_then(|st| st.spills.get(&sk))
            .map_or(0, |sp| sp.count);
        #[cfg(not(feature = "store"))]
        {
            let _ = sk;
            0
        }
    }

    /// Whether a message just recorded for `sk` stays on disk only: the session's memory
    /// share is full, or earlier messages are on disk (order is kept).
    #[inline]
    pub(crate) fn spill(&mut self, sk: Key, item: &Queued, memory_len: usize) -> bool {
        #[cfg(feature = "store")]
        {
            let seq = seq_of(item);
            let Some(st) = self.store.as_deref_mut() else {
                return false;
            };
            if seq == 0 {
                return false;
            }
            let sp = st.spills.get(&sk).map_or(0, |sp| sp.count);
            if sp == 0 && memory_len < st.in_memory {
                return false;
            }
            let sp = st.spills.entry(sk).or_default();
            if sp.count == 0 {
                sp.after = seq - 1;
            }
            sp.count += 1;
            true
        }
        #[cfg(not(feature = "store"))]
        {
            let _ = (sk, item, memory_len);
            false
        }
    }

    /// The session's queue ran low: ask for what is on disk (once at a time).
    #[inline]
    pub(crate) fn load_spilled(&mut self, sk: Key) {
        #[cfg(feature = "store")]
        {
            // Called after every poll_transmit: nothing to look up without spills.
            let Some(st) = self.store.as_deref_mut().filter(|st| !st.spills.is_empty()) else {
                return;
            };
            let Some(sp) = st.spills.get_mut(&sk) else {
                return;
            };
            let Some(s) = self.sessions.get(sk) else {
                return;
            };
            let room = st.in_memory.saturating_sub(s.queue.len());
            if sp.loading || sp.count == 0 || s.queue.len() > st.in_memory / 2 || room == 0 {
                return;
            }
            sp.loading = true;
            let (after, client) = (sp.after, s.client_id.clone());
            self.events.push_back(super::Event::StoreLoad {
                client,
                after,
                max: room,
            });
        }
        #[cfg(not(feature = "store"))]
        let _ = sk;
    }

    /// Messages of `client`'s queue read back from the store (`Event::StoreLoad`), in order.
    #[cfg(feature = "store")]
    /// `after`: as the request said (a reply to an earlier session of the same client, or
    /// to an earlier request, is ignored).
    pub fn handle_store_loaded(
        &mut self,
        client: &str,
        after: u64,
        msgs: Vec<crate::store::StoredMessage>,
    ) {
        let Some(sk) = self.by_id.get(&self.sessions, client) else {
            return;
        };
        let Some(sp) = self
            .store
            .as_deref_mut()
            .and_then(|st| st.spills.get_mut(&sk))
        else {
            return;
        };
        if !sp.loading || sp.after != after {
            return;
        }
        sp.loading = false;
        let from = sp.after;
        let mut n = 0;
        for m in msgs.iter().filter(|m| m.seq > from) {
            sp.after = sp.after.max(m.seq);
            n += 1;
        }
        // Nothing more there (records gone): the count was stale.
        sp.count = if n == 0 {
            0
        } else {
            sp.count.saturating_sub(n)
        };
        if sp.count == 0 {
            if let Some(st) = self.store.as_deref_mut() {
                st.spills.remove(&sk);
            }
        }
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        for m in msgs {
            if m.seq <= from {
                continue;
            }
            let mut item = Queued::new(m.msg, m.qos, m.retain, crate::session::SubIds::None, None);
            item.seq = m.seq;
            // Its bytes were counted when it was queued.
            s.queue.push_back(item);
        }
        if let Some(c) = s.conn {
            self.wake(c);
        }
    }

    /// The session ends: nothing of it is on disk any more.
    #[inline]
    pub(crate) fn forget_spill(&mut self, sk: Key) {
        #[cfg(feature = "store")]
        if let Some(st) = self.store.as_deref_mut() {
            st.spills.remove(&sk);
        }
        #[cfg(not(feature = "store"))]
        let _ = sk;
    }

    /// A retained message expired: its record goes.
    #[inline]
    pub(crate) fn store_retained_gone(&mut self, topic: &str) {
        #[cfg(feature = "store")]
        if let Some(st) = self.store.as_deref_mut() {
            let at =
                st.w.begin_plain(crate::store::Op::Delete, Space::Retained, topic.as_bytes());
            st.w.end(at);
        }
        #[cfg(not(feature = "store"))]
        let _ = topic;
    }

    /// The will of a persistent session's connection is recorded (`Some`) or gone.
    #[cfg(feature = "store")]
    pub(crate) fn store_will(&mut self, sk: Key, will: Option<&WillSpec>) {
        let Some(st) = self.store.as_deref_mut() else {
            return;
        };
        let Some(s) = self.sessions.get(sk).filter(|s| s.stored) else {
            return;
        };
        match will {
            Some(w) => st.w.will(&s.client_id, &w.msg, w.delay, w.expiry),
            None => st.w.delete(Space::Will, &s.client_id, &[]),
        }
    }

    /// [`Broker::store_will`] without the feature: nothing.
    #[cfg(not(feature = "store"))]
    #[inline]
    pub(crate) fn store_will(&mut self, sk: Key, will: Option<&crate::conn::WillSpec>) {
        let _ = (sk, will);
    }
}
