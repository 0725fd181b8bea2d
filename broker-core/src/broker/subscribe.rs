//! SUBSCRIBE and UNSUBSCRIBE (3.8 to 3.11): the local index, interest shared with other
//! shards, shared subscription groups (4.8.2) and retained messages at subscribe time.

use super::{Broker, Event, LocalSub, SharedGroup};
use crate::conn::Ctrl;
use crate::policy::{ConnId, DropReason};
use crate::session::{GroupName, Queued, SubIds, SubRecord};
use crate::shard::{owner_of_group, Member, ShardId, ShardMsg};
use crate::slab::Key;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use mqtt_proto::topic::{has_wildcards, Filter};
use mqtt_proto::{
    Packet, Properties, ReasonCode, ReasonCodes, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

/// A SUBSCRIBE entry that must close the connection instead of being refused alone.
pub(super) struct Fatal(pub(super) ReasonCode);

impl Broker {
    pub(crate) fn handle_subscribe(&mut self, conn: ConnId, now: Instant, sub: &Subscribe<'_>) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let v = c.version;
        let bridge = c.bridge;
        let Some(sk) = c.session else { return };
        let sub_id = sub.properties.subscription_identifiers.first();
        // 3.8.2.1.2: identifiers sent to a server that said it has none: Protocol Error.
        if sub_id.is_some() && !self.cfg.subscription_identifiers {
            return self.protocol_error(conn, now, ReasonCode::SubscriptionIdentifiersNotSupported);
        }
        let mut codes = Vec::with_capacity(sub.subscriptions.len());
        let mut retained = Vec::new();
        for entry in sub.subscriptions.iter() {
            let mut options = entry.options;
            // A bridge (Mosquitto's `try_private`) gets back neither what it published nor
            // retain flags cleared: what it forwards must not loop or lose its retained
            // state. Not on a shared subscription, where No Local is an error.
            if cfg!(feature = "bridge") && bridge && !entry.filter.starts_with("$share/") {
                options.no_local = true;
                options.retain_as_published = true;
            }
            match self.subscribe_one(
                now,
                sk,
                Some(conn),
                entry.filter,
                options,
                sub_id,
                &mut retained,
            ) {
                Ok(code) => codes.push(code),
                Err(Fatal(code)) => return self.protocol_error(conn, now, code),
            }
        }
        if self.session_stored(sk) {
            // The SUBACK waits for the records of what it grants.
            for (entry, code) in sub.subscriptions.iter().zip(&codes) {
                let rec = self
                    .sessions
                    .get(sk)
                    .and_then(|s| s.subs.get(entry.filter))
                    .cloned();
                if let (false, Some(rec)) = (code.is_error(), rec) {
                    self.store_sub(sk, Some(conn), entry.filter, Some(&rec));
                }
            }
        }
        // [MQTT-3.8.4-1] SUBACK with [MQTT-3.8.4-6] one code per filter, in order.
        let frame = super::connect::encode(
            &Packet::SubAck(SubAck {
                packet_id: sub.packet_id,
                properties: Properties::default(),
                reason_codes: ReasonCodes::List(&codes),
            }),
            v,
        );
        self.push_ctrl(conn, Ctrl::Raw(frame));
        self.take_backlog(sk, retained);
        self.wake(conn);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe_one(
        &mut self,
        now: Instant,
        sk: Key,
        conn: Option<ConnId>,
        text: &str,
        options: SubscriptionOptions,
        sub_id: Option<u32>,
        retained: &mut Vec<Queued>,
    ) -> Result<ReasonCode, Fatal> {
        // An invalid filter is refused alone, as if sent in a SUBSCRIBE of its own (0x8F;
        // 0x80 in 3.1.1): [MQTT-3.8.4-5] v5, [MQTT-3.8.4-4] v3.1.1.
        let Ok(filter) = Filter::parse(text) else {
            return Ok(ReasonCode::TopicFilterInvalid);
        };
        if filter.is_shared() {
            if !self.cfg.shared_subscriptions {
                return Ok(ReasonCode::SharedSubscriptionsNotSupported);
            }
            // [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error.
            if options.no_local {
                return Err(Fatal(ReasonCode::ProtocolError));
            }
        }
        if has_wildcards(filter.filter) && !self.cfg.wildcard_subscriptions {
            return Ok(ReasonCode::WildcardSubscriptionsNotSupported);
        }
        // Too long to be a key of the session's store records.
        #[cfg(feature = "store")]
        if self.session_stored(sk)
            && self
                .sessions
                .get(sk)
                .is_some_and(|s| !crate::store::filter_fits(&s.client_id, text))
        {
            return Ok(ReasonCode::TopicFilterInvalid);
        }
        let Self {
            sessions,
            conns,
            policy,
            cfg,
            ..
        } = self;
        let Some(s) = sessions.get_mut(sk) else {
            return Ok(ReasonCode::UnspecifiedError);
        };
        let peer = conn.and_then(|k| conns.get(k)).map(|c| &c.peer);
        let info = Self::client_info(s, peer);
        let mut opts = options;
        // [MQTT-3.2.2-9]-style downgrade: never grant more than the server's maximum QoS.
        opts.qos = opts.qos.min(cfg.maximum_qos);
        if !policy
            .authorizer
            .can_subscribe(&info, filter.filter, opts.qos)
        {
            return Ok(ReasonCode::NotAuthorized);
        }
        if let Err(code) = policy.hooks.on_subscribe(&info, text, &mut opts) {
            return Ok(code);
        }
        let existed = s.subs.contains_key(text);
        if !existed && s.subs.len() >= cfg.max_subscriptions_per_session {
            return Ok(ReasonCode::QuotaExceeded);
        }
        let group = filter.share_name.map(|name| {
            Arc::new(GroupName {
                group: name.into(),
                filter: filter.filter.into(),
            })
        });
        let origin = s.origin;
        let client_hash = s.client_hash;
        // [MQTT-3.8.4-3] a subscription with the same filter replaces the existing one.
        s.subs.insert(
            cfg.hash_seed,
            text.into(),
            SubRecord {
                options: opts,
                id: sub_id,
                group: group.clone(),
            },
        );
        policy
            .hooks
            .on_subscribed(&Self::client_info(s, peer), text, opts.qos);
        match group {
            Some(g) => {
                let member = Member {
                    shard: self.cfg.shard,
                    session: sk,
                    client_hash,
                    options: opts,
                    id: sub_id,
                };
                self.join_group(g, member);
            }
            None => {
                if existed {
                    if let Some(entries) = self.index.get_mut(filter.filter) {
                        for e in entries.iter_mut() {
                            if let LocalSub::Session {
                                session,
                                options,
                                id,
                            } = e
                            {
                                if *session == sk {
                                    *options = opts;
                                    *id = sub_id;
                                }
                            }
                        }
                    }
                } else {
                    self.add_local(filter.filter, sk, opts, sub_id);
                }
                // [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] Retain Handling; shared
                // subscriptions get no retained messages (4.8.2).
                let send = match opts.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
                if send && self.cfg.retain_available {
                    let _ = origin;
                    self.retained.for_each_match(filter.filter, now, |m| {
                        // [MQTT-3.3.1-8] sent because of a new subscription: RETAIN 1.
                        retained.push(Queued::new(
                            m.clone(),
                            opts.qos.min(m.qos),
                            true,
                            SubIds::from_opt(sub_id),
                            None,
                        ))
                    });
                }
            }
        }
        Ok(ReasonCode::granted(opts.qos))
    }

    /// Retained messages found at subscribe time join the session's backlog: paced by the
    /// client's flow control, ahead of messages queued from now on. Bounded by the
    /// retained store's size: a client repeating SUBSCRIBE without reading would otherwise
    /// grow it without limit. What goes first is the oldest: copies from earlier
    /// SUBSCRIBEs, which the newest ones repeat.
    pub(super) fn take_backlog(&mut self, sk: crate::slab::Key, retained: Vec<Queued>) {
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        s.backlog.extend(retained);
        while s.backlog.len() > self.cfg.max_retained_messages {
            if let Some(old) = s.backlog.pop_front() {
                self.metrics.dropped_queue_full += 1;
                self.policy
                    .hooks
                    .on_dropped(&s.client_id, &old.msg, DropReason::QueueFull);
            }
        }
    }

    fn local_session_subs(&self, filter: &str) -> usize {
        self.index
            .get(filter)
            .iter()
            .filter(|e| matches!(e, LocalSub::Session { .. }))
            .count()
    }

    pub(super) fn add_local(
        &mut self,
        filter: &str,
        sk: Key,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) {
        let first = self.local_session_subs(filter) == 0;
        self.index.insert(
            filter,
            LocalSub::Session {
                session: sk,
                options,
                id,
            },
        );
        if first {
            self.announce(filter, true);
        }
    }

    /// Tells the other shards this one gained or lost interest in `filter`.
    /// A shared group's owner tells only this node's shards: other nodes learn of its
    /// members through the link (`SharedJoin`), not as plain interest.
    fn announce_local(&mut self, filter: &str, add: bool) {
        if self.cfg.shards > 1 {
            let from = self.cfg.shard;
            self.broadcast(|| ShardMsg::Interest {
                from,
                filter: filter.into(),
                add,
            });
        }
    }

    fn announce(&mut self, filter: &str, add: bool) {
        self.announce_local(filter, add);
        // The cluster link counts this node's interest (one route per filter and node).
        #[cfg(feature = "cluster")]
        if self.in_cluster() {
            let from = self.cfg.shard;
            self.events.push_back(Event::ToShard {
                to: crate::cluster::link(self.cfg.shards),
                msg: ShardMsg::Interest {
                    from,
                    filter: filter.into(),
                    add,
                },
            });
        }
    }

    pub(crate) fn apply_interest(&mut self, from: ShardId, filter: &str, add: bool) {
        if add {
            self.interest.insert(filter, from);
        } else {
            let mut done = false;
            self.interest.remove_where(filter, |&s| {
                let hit = !done && s == from;
                done |= hit;
                hit
            });
        }
    }

    /// Removes one subscription of a session from the index (or its group).
    pub(crate) fn remove_subscription(&mut self, sk: Key, text: &str, rec: &SubRecord) {
        match &rec.group {
            Some(g) => self.leave_group(g.clone(), sk),
            None => {
                self.index.remove_where(
                    text,
                    |e| matches!(e, LocalSub::Session { session, .. } if *session == sk),
                );
                if self.local_session_subs(text) == 0 {
                    self.announce(text, false);
                }
            }
        }
    }

    pub(super) fn join_group(&mut self, g: Arc<GroupName>, member: Member) {
        let owner = owner_of_group(&g.group, &g.filter, self.cfg.shards);
        if owner == self.cfg.shard {
            self.apply_join(g, member);
        } else {
            self.events.push_back(Event::ToShard {
                to: owner,
                msg: ShardMsg::SharedJoin { group: g, member },
            });
        }
    }

    fn leave_group(&mut self, g: Arc<GroupName>, sk: Key) {
        let owner = owner_of_group(&g.group, &g.filter, self.cfg.shards);
        let shard = self.cfg.shard;
        if owner == shard {
            self.apply_leave(&g, shard, sk);
        } else {
            self.events.push_back(Event::ToShard {
                to: owner,
                msg: ShardMsg::SharedLeave {
                    group: g,
                    shard,
                    session: sk,
                },
            });
        }
    }

    pub(crate) fn apply_join(&mut self, g: Arc<GroupName>, member: Member) {
        let is_new = !self.groups.contains_key(&g);
        if is_new {
            self.groups.insert(
                g.clone(),
                SharedGroup {
                    members: Vec::new(),
                    next: 0,
                },
            );
            self.index.insert(&g.filter, LocalSub::Group(g.clone()));
            self.announce_local(&g.filter, true);
        }
        #[cfg(feature = "cluster")]
        self.tell_link_member(&g, &member, true);
        if let Some(grp) = self.groups.get_mut(&g) {
            match grp
                .members
                .iter_mut()
                .find(|m| m.shard == member.shard && m.session == member.session)
            {
                Some(m) => *m = member,
                None => grp.members.push(member),
            }
        }
    }

    /// The cluster link counts this node's members of each group: it hears of a local
    /// member that joins (`add`, not yet a member) or leaves (a member).
    #[cfg(feature = "cluster")]
    fn tell_link_member(&mut self, g: &Arc<GroupName>, member: &Member, add: bool) {
        if !self.in_cluster() || member.shard >= self.cfg.shards {
            return;
        }
        let present = self.groups.get(g).is_some_and(|grp| {
            grp.members
                .iter()
                .any(|m| m.shard == member.shard && m.session == member.session)
        });
        if present == add {
            return;
        }
        let msg = if add {
            ShardMsg::SharedJoin {
                group: g.clone(),
                member: member.clone(),
            }
        } else {
            ShardMsg::SharedLeave {
                group: g.clone(),
                shard: member.shard,
                session: member.session,
            }
        };
        self.events.push_back(Event::ToShard {
            to: crate::cluster::link(self.cfg.shards),
            msg,
        });
    }

    pub(crate) fn apply_leave(&mut self, g: &Arc<GroupName>, shard: ShardId, session: Key) {
        #[cfg(feature = "cluster")]
        {
            let member = Member {
                shard,
                session,
                client_hash: 0,
                options: mqtt_proto::SubscriptionOptions::default(),
                id: None,
            };
            self.tell_link_member(g, &member, false);
        }
        let Some(grp) = self.groups.get_mut(g) else {
            return;
        };
        grp.members
            .retain(|m| !(m.shard == shard && m.session == session));
        if grp.members.is_empty() {
            self.groups.remove(g);
            self.index
                .remove_where(&g.filter, |e| matches!(e, LocalSub::Group(x) if x == g));
            self.announce_local(&g.filter, false);
        }
    }

    pub(crate) fn handle_unsubscribe(&mut self, conn: ConnId, _now: Instant, u: &Unsubscribe<'_>) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let v = c.version;
        let Some(sk) = c.session else { return };
        let mut codes = Vec::with_capacity(u.filters.len());
        for f in u.filters.iter() {
            let Some(s) = self.sessions.get_mut(sk) else {
                return;
            };
            let peer = self.conns.get(conn).map(|c| &c.peer);
            self.policy
                .hooks
                .on_unsubscribe(&Self::client_info(s, peer), f);
            let removed: Option<(Box<str>, SubRecord)> = s.subs.remove_entry(f);
            if removed.is_some() {
                self.policy
                    .hooks
                    .on_unsubscribed(&Self::client_info(s, peer), f);
            }
            codes.push(match removed {
                Some((text, rec)) => {
                    self.remove_subscription(sk, &text, &rec);
                    self.store_sub(sk, Some(conn), &text, None);
                    ReasonCode::Success
                }
                // 3.11.3: 0x11 No subscription existed.
                None => ReasonCode::NoSubscriptionExisted,
            });
        }
        // [MQTT-3.10.4-4] UNSUBACK, [MQTT-3.11.3-1] one code per filter.
        let frame = super::connect::encode(
            &Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::default(),
                reason_codes: ReasonCodes::List(&codes),
            }),
            v,
        );
        self.push_ctrl(conn, Ctrl::Raw(frame));
    }
}
