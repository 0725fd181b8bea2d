//! Sessions and retained messages handed back by a durable store at start-up.

use super::{Broker, Timer};
use crate::message::Message;
use crate::policy::SessionSnapshot;
use crate::session::{GroupName, Queued, SubIds, SubRecord};
use crate::shard::Member;
use crate::time::Instant;
use alloc::sync::Arc;
use mqtt_proto::topic::Filter;

impl Broker {
    /// Recreates a persistent session saved before a restart (call before serving
    /// connections). Its subscriptions are indexed and announced to the other shards, its
    /// messages queued (to be delivered when the client resumes, those already sent once
    /// first), and its expiry starts again from `now`. A session that already exists here,
    /// or that this shard does not own, is left alone.
    pub fn restore_session(&mut self, now: Instant, snap: SessionSnapshot) {
        let owner = crate::shard::owner_of_client(&snap.client_id, self.cfg.shards);
        if owner != self.cfg.shard
            || self.by_id.contains(&self.sessions, &snap.client_id)
            || snap.expiry_interval == 0
        {
            return;
        }
        let sk = self.new_session(&snap.client_id);
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        s.username = snap.username;
        s.protocol = snap.protocol;
        s.expiry_interval = snap.expiry_interval;
        let client_hash = s.client_hash;
        for (msg, qos, _sent) in snap.messages {
            if msg.is_expired(now) || s.queue.len() >= self.cfg.max_queued_messages {
                continue;
            }
            s.queued_bytes += msg.size();
            s.queue.push_back(Queued {
                msg,
                qos,
                retain: false,
                ids: SubIds::None,
                group: None,
            });
        }
        if snap.expiry_interval != u32::MAX {
            let at = now.plus_secs(u64::from(snap.expiry_interval));
            s.expire_at = Some(at);
            self.schedule(at, Timer::SessionExpiry(sk));
        }
        for sub in snap.subscriptions {
            let Ok(filter) = Filter::parse(&sub.filter) else {
                continue;
            };
            let group = filter.share_name.map(|name| {
                Arc::new(GroupName {
                    group: name.into(),
                    filter: filter.filter.into(),
                })
            });
            let record = SubRecord {
                options: sub.options,
                id: sub.id,
                group: group.clone(),
            };
            let Some(s) = self.sessions.get_mut(sk) else {
                return;
            };
            if s.subs
                .insert(self.cfg.hash_seed, sub.filter.clone(), record)
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
}
