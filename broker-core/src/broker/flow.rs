//! Flow control for QoS 1 and 2: the PUBACK (or PUBREC) of a message is held back while a
//! connected subscriber's queue has no room for it, so publishers that wait for their
//! acknowledgements go at the pace of the subscribers and nothing is lost. With the
//! `backpressure` feature the publisher itself is held too (see `hold`): it sends nothing
//! more until there is room, so the messages waiting here stay few. A subscriber that
//! makes no progress for `stall_timeout_ms` is disconnected (`backpressure`) or declared
//! stalled (what waited for it is dropped, reported), and the publishers are released, so
//! a stalled subscriber holds publishers back for at most that long. QoS 0 is never held:
//! it is dropped first.
//!
//! An acknowledgement waits for a count of holds: one while the message is routed, one per
//! subscriber queue it waits for, one per other shard it was forwarded to (that shard
//! keeps its own count and releases ours when it reaches zero).

use super::{Broker, Event, Timer};
use crate::conn::{ConnState, Ctrl};
use crate::policy::{ConnId, DropReason};
use crate::session::Queued;
use crate::shard::{ShardId, ShardMsg};
use crate::slab::Key;
use crate::time::Instant;
use mqtt_proto::{PacketId, PacketType, QoS, ReasonCode};

/// An acknowledgement held on some shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRef {
    /// The shard holding it.
    pub shard: ShardId,
    /// Its key there.
    pub key: Key,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum AckTarget {
    /// Send this acknowledgement to the publisher.
    Conn {
        conn: ConnId,
        pid: PacketId,
        kind: PacketType,
        code: ReasonCode,
    },
    /// Release a hold on another shard.
    Remote(AckRef),
    /// Confirm a message to the node that forwarded it (`Event::ClusterAck`).
    #[cfg(feature = "cluster")]
    Cluster(u64),
}

#[derive(Debug)]
pub(crate) struct PendingAck {
    pub target: AckTarget,
    pub holds: u32,
    /// A full queue holds it (its publisher is held until it goes).
    #[cfg(feature = "backpressure")]
    pub parked: bool,
    /// A QoS 2 PUBREC whose received-identifier record is written only once every record
    /// of the message is (they were written on other shards, or later): PUBREC then waits
    /// for that record too.
    #[cfg(feature = "store")]
    pub rx_record: bool,
}

/// The acknowledgement of the message being routed. It enters the `acks` slab (with the
/// routing hold) only when something holds it: most messages find room everywhere, and
/// their acknowledgement then goes out without a slab entry.
#[derive(Debug)]
pub(crate) struct CurrentAck {
    pub target: AckTarget,
    pub key: Option<Key>,
}

/// A message waiting for room in a subscriber's queue.
#[derive(Debug)]
pub(crate) struct Parked {
    pub item: Queued,
    pub ack: Option<Key>,
}

impl Broker {
    /// Routing of a message whose acknowledgement may be held starts.
    pub(crate) fn begin_ack(&mut self, target: AckTarget) {
        self.current_ack = Some(CurrentAck { target, key: None });
        self.store_route_begin();
    }

    /// Routing ends: the key of the acknowledgement if something held it (the routing hold
    /// is still on it; records written meanwhile hold it too); `None` tells the caller to
    /// acknowledge at once.
    pub(crate) fn end_ack(&mut self) -> Option<Key> {
        self.store_route_end();
        self.current_ack.take()?.key
    }

    /// One more hold on the acknowledgement being routed, which enters the slab now if it
    /// is not there yet. `None` when no acknowledgement may be held.
    pub(crate) fn hold_current(&mut self) -> Option<Key> {
        let c = self.current_ack.as_mut()?;
        if let Some(k) = c.key {
            self.add_hold(k);
            return Some(k);
        }
        let target = c.target;
        let k = self.acks.insert_with(|_| PendingAck {
            target,
            holds: 2,
            #[cfg(feature = "backpressure")]
            parked: false,
            #[cfg(feature = "store")]
            rx_record: false,
        });
        c.key = Some(k);
        Some(k)
    }

    /// One more reason to wait.
    pub(crate) fn add_hold(&mut self, key: Key) {
        if let Some(a) = self.acks.get_mut(key) {
            a.holds += 1;
        }
    }

    /// One reason less; at zero the acknowledgement goes out.
    pub(crate) fn release_ack(&mut self, key: Key) {
        let done = match self.acks.get_mut(key) {
            Some(a) => {
                a.holds = a.holds.saturating_sub(1);
                a.holds == 0
            }
            None => false,
        };
        if !done {
            return;
        }
        let Some(a) = self.acks.remove(key) else {
            return;
        };
        match a.target {
            AckTarget::Conn {
                conn,
                pid,
                kind,
                code,
            } => {
                #[cfg(feature = "backpressure")]
                if a.parked {
                    self.unhold(conn);
                }
                #[cfg(feature = "store")]
                if a.rx_record {
                    return self.qos2_received_late(conn, pid, code);
                }
                let Some(c) = self.conns.get_mut(conn) else {
                    return;
                };
                if kind == PacketType::PubAck {
                    c.delayed_acks = c.delayed_acks.saturating_sub(1);
                }
                // Nothing follows the close of a connection (taken over, DISCONNECT, error):
                // the client sends the PUBLISH again on its next connection.
                if c.state != ConnState::Closing {
                    self.push_ctrl(conn, Ctrl::Ack { kind, pid, code });
                }
            }
            AckTarget::Remote(r) => self.release_remote(r),
            #[cfg(feature = "cluster")]
            AckTarget::Cluster(token) => self.events.push_back(Event::ClusterAck { token }),
        }
    }

    /// Releases our hold on an acknowledgement kept by a shard (maybe this one).
    pub(crate) fn release_remote(&mut self, r: AckRef) {
        if r.shard == self.cfg.shard {
            self.release_ack(r.key);
        } else {
            self.events.push_back(Event::ToShard {
                to: r.shard,
                msg: ShardMsg::AckRelease { key: r.key },
            });
        }
    }

    /// Whether a subscriber whose queue is full may hold this message back (rather than
    /// have it dropped).
    pub(crate) fn may_park(&self, sk: Key, qos: QoS) -> bool {
        // Held publishers bound the overflow; without them it has a bound of its own.
        #[cfg(feature = "backpressure")]
        let room =
            |_: &crate::session::Session| self.cfg.queue_full == crate::config::QueueFull::Hold;
        #[cfg(not(feature = "backpressure"))]
        let room = |s: &crate::session::Session| s.overflow.len() < self.cfg.max_queued_messages;
        qos != QoS::AtMostOnce
            && self.current_ack.is_some()
            && self
                .sessions
                .get(sk)
                .is_some_and(|s| s.conn.is_some() && !s.stalled && room(s))
    }

    /// Parks a message for a full queue, holding the current acknowledgement.
    pub(crate) fn park(&mut self, now: Instant, sk: Key, item: Queued) {
        let ack = self.hold_current();
        let stall = self.cfg.stall_timeout_ms;
        // Up to a queue's worth of waiting messages, publishers go on (their windows bound
        // what they add, and stopping them costs a round trip per message); beyond it they
        // are held, which bounds the overflow whatever their windows.
        #[cfg(feature = "backpressure")]
        if let Some(k) = ack.filter(|_| {
            self.sessions
                .get(sk)
                .is_some_and(|s| s.overflow.len() >= self.cfg.max_queued_messages)
        }) {
            self.mark_parked(k);
        }
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        let first = s.overflow.is_empty();
        s.overflow.push_back(Parked { item, ack });
        if first {
            s.overflow_since = Some(now);
            self.schedule(now.plus_millis(stall), Timer::Stall(sk));
        }
    }

    /// Moves parked messages into the queue as far as it has room, releasing their holds.
    /// Returns whether anything moved.
    pub(crate) fn admit_parked(&mut self, now: Instant, sk: Key) -> bool {
        let max = self.cfg.max_queued_messages;
        let max_bytes = self.cfg.max_queued_bytes;
        let mut released = core::mem::take(&mut self.released);
        let mut moved = false;
        let stored = self.session_stored(sk);
        loop {
            // Messages on disk only count towards the limit too.
            let on_disk = self.spilled(sk);
            let Some(s) = self.sessions.get_mut(sk) else {
                break;
            };
            let Some(p) = s.overflow.front() else {
                break;
            };
            let size = p.item.msg.size();
            let room = s.queue.len() + on_disk < max
                && (max_bytes == 0 || s.queued_bytes + size <= max_bytes);
            if !room {
                break;
            }
            let Some(mut p) = s.overflow.pop_front() else {
                break;
            };
            s.queued_bytes += size;
            // Written now that it is queued: its publisher's hold waits for the record.
            if stored {
                self.store_queued(sk, &mut p.item);
            }
            released.extend(p.ack);
            moved = true;
            // Behind messages on disk, it joins them there.
            let memory_len = self.sessions.get(sk).map_or(0, |s| s.queue.len());
            if self.spill(sk, &p.item, memory_len) {
                continue;
            }
            let Some(s) = self.sessions.get_mut(sk) else {
                break;
            };
            s.queue.push_back(p.item);
        }
        if let Some(s) = self.sessions.get_mut(sk) {
            if s.overflow.is_empty() {
                s.overflow_since = None;
            } else if moved {
                // Progress: the stall clock starts again.
                s.overflow_since = Some(now);
            }
            if s.queue.len() <= max / 2 {
                s.stalled = false;
            }
        }
        for k in released.drain(..) {
            self.release_after_store(k, stored);
        }
        self.released = released;
        moved
    }

    /// Drops what waited for a session and releases the publishers (stalled subscriber,
    /// ended session).
    pub(crate) fn drop_parked(&mut self, sk: Key, why: DropReason) {
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        let parked = s.overflow.take();
        s.overflow_since = None;
        for p in parked {
            self.metrics.dropped_queue_full += u64::from(why == DropReason::QueueFull);
            if let Some(s) = self.sessions.get(sk) {
                self.policy.hooks.on_dropped(&s.client_id, &p.item.msg, why);
            }
            if let Some(k) = p.ack {
                self.release_ack(k);
            }
        }
    }

    /// The stall timer of a session with parked messages.
    pub(crate) fn check_stall(&mut self, now: Instant, sk: Key) {
        let stall = self.cfg.stall_timeout_ms;
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        let Some(since) = s.overflow_since else {
            return;
        };
        let due = since.plus_millis(stall);
        // A bridge's queue holds its messages until the remote broker acknowledges them,
        // however long it is away: its publishers stay held rather than see it dropped.
        #[cfg(feature = "bridge")]
        let due = match s.conn.and_then(|c| self.conns.get(c)) {
            Some(c) if c.own_bridge => now.plus_millis(stall),
            _ => due,
        };
        if now < due {
            self.schedule(due, Timer::Stall(sk));
            return;
        }
        #[cfg(feature = "backpressure")]
        self.disconnect_stalled(now, sk);
        #[cfg(not(feature = "backpressure"))]
        {
            s.stalled = true;
            self.drop_parked(sk, DropReason::QueueFull);
        }
    }
}
