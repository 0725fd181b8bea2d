//! Sessions and retained messages handed back by a durable store at start-up.

use super::Broker;
#[cfg(feature = "store")]
use super::Timer;
use crate::message::Message;
#[cfg(feature = "store")]
use crate::{
    policy::StoredSubscription,
    session::{GroupName, Queued, SubIds, SubRecord},
    shard::Member,
    slab::Key,
    time::Instant,
};
#[cfg(feature = "store")]
use alloc::{sync::Arc, vec::Vec};
#[cfg(feature = "store")]
use mqtt_proto::topic::Filter;

impl Broker {
    /// Indexes a restored session's subscriptions.
    #[cfg(feature = "store")]
    fn restore_subscriptions(&mut self, sk: Key, subs: Vec<StoredSubscription>) {
        let Some(client_hash) = self.sessions.get(sk).map(|s| s.client_hash) else {
            return;
        };
        for sub in subs {
            let Ok(filter) = Filter::parse(&sub.filter) else {
                continue;
            };
            let group = filter.share_name.map(|name| {
                Arc::new(GroupName {
                    group: name.into(),
                    filter: filter.filter.into(),
                })
            });
            let rec = SubRecord {
                options: sub.options,
                id: sub.id,
                group: group.clone(),
            };
            let Some(s) = self.sessions.get_mut(sk) else {
                return;
            };
            if s.subs
                .insert(self.cfg.hash_seed, sub.filter.clone(), rec.clone())
                .is_some()
            {
                continue;
            }
            match group {
                Some(g) => {
                    let member = Member {
                        shard: self.cfg.shard,
                        session: sk,
                        client_hash,
                        options: sub.options,
                        id: sub.id,
                    };
                    self.join_group(g, member);
                }
                None => self.add_local(filter.filter, sk, sub.options, sub.id),
            }
        }
    }

    /// Restores a retained message saved before a restart (every shard keeps them all).
    pub fn restore_retained(&mut self, msg: Message) {
        self.apply_retained(&msg);
    }

    /// Recreates a session read back from the durable store (call before serving
    /// connections, on every shard: only the owner takes it). Messages in flight are resent
    /// first, with DUP and their packet identifiers ([MQTT-4.4.0-1]); QoS 2 identifiers
    /// received before keep their exactly-once protection; subscriptions route new
    /// messages to the session at once; a will of the connection the restart ended is
    /// published after its delay unless the client is back by then.
    #[cfg(feature = "store")]
    pub fn restore_stored(&mut self, now: Instant, r: crate::store::RestoredSession) {
        use crate::session::{Inflight, InflightState};
        let owner = crate::shard::owner_of_client(&r.client_id, self.cfg.shards);
        if owner != self.cfg.shard || self.by_id.contains(&self.sessions, &r.client_id) {
            return;
        }
        if r.expiry_interval == 0 {
            // Its client made it non-persistent before the restart.
            self.store_session_end(&r.client_id, true);
            return;
        }
        let sk = self.new_session(&r.client_id);
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        s.username = r.username;
        s.protocol = r.protocol;
        s.expiry_interval = r.expiry_interval;
        s.stored = true;
        let top = r.messages.iter().map(|m| m.seq).max().unwrap_or(0);
        if let Some(st) = self.store.as_deref_mut() {
            st.seq = st.seq.max(top);
        }
        let mut last_pid = 0;
        for m in r.messages {
            let Some(s) = self.sessions.get_mut(sk) else {
                return;
            };
            let mut item = Queued::new(m.msg, m.qos, m.retain, SubIds::None, None);
            item.seq = m.seq;
            let state = match m.inflight {
                Some((_, 1)) => Some(InflightState::AwaitAck),
                Some((_, 2)) => Some(InflightState::AwaitRec),
                Some((_, 3)) => Some(InflightState::AwaitComp),
                _ => None,
            };
            // In flight, it finishes its flow whatever its expiry (the client may hold its
            // packet identifier); queued and expired, it goes.
            if state.is_none() && item.msg.is_expired(now) {
                self.store_msg_done(sk, item.seq);
                continue;
            }
            match (m.inflight, state) {
                (Some((pid, _)), Some(state)) => {
                    last_pid = pid;
                    s.inflight.push_back(Inflight {
                        pid,
                        item,
                        state,
                        needs_send: true,
                        sent_once: true,
                    });
                }
                _ => {
                    s.queued_bytes += item.msg.size();
                    // Beyond the session's memory share the queue stays on disk.
                    let memory_len = s.queue.len();
                    if !self.spill(sk, &item, memory_len) {
                        if let Some(s) = self.sessions.get_mut(sk) {
                            s.queue.push_back(item);
                        }
                    }
                }
            }
        }
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        s.resend_pending = !s.inflight.is_empty();
        // Restored identifiers may be in any order: allocation walks the window.
        s.pid_lapped = true;
        s.next_pid = if last_pid == u16::MAX {
            1
        } else {
            last_pid + 1
        };
        for pid in r.qos2_in {
            if !s.rx_qos2.contains(&pid) {
                s.rx_qos2.push(pid);
            }
        }
        if let Some(w) = r.will {
            let at = now.plus_secs(u64::from(w.delay.min(r.expiry_interval)));
            let will = crate::conn::WillSpec {
                msg: w.msg,
                delay: w.delay,
                expiry: w.expiry,
            };
            if let Some(s) = self.sessions.get_mut(sk) {
                s.pending_will = Some(alloc::boxed::Box::new(crate::session::PendingWill {
                    will,
                    at,
                }));
            }
            self.schedule(at, Timer::Will(sk));
        }
        if r.expiry_interval != u32::MAX {
            let at = now.plus_secs(u64::from(r.expiry_interval));
            if let Some(s) = self.sessions.get_mut(sk) {
                s.expire_at = Some(at);
            }
            self.schedule(at, Timer::SessionExpiry(sk));
        }
        self.restore_subscriptions(sk, r.subscriptions);
    }
}
