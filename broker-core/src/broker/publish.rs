//! PUBLISH in both directions' bookkeeping: receiving, routing to subscribers (locally,
//! to other shards, to shared groups), bounded queues, retained updates, and the QoS 1/2
//! acknowledgement flows (3.3 to 3.7, 4.3, 4.6, 4.8.2, 4.9).

use super::{Broker, Event, Hit, LocalSub};
use crate::conn::Ctrl;
use crate::message::{Message, MessageParts};
use crate::policy::{ConnId, DropReason};
use crate::session::{GroupName, InflightState, Queued, SubIds};
use crate::shard::{owner_of_group, owner_of_topic, ShardMsg};
use crate::slab::Key;
use crate::time::Instant;
use alloc::sync::Arc;
use mqtt_proto::{Ack, PacketId, PacketType, Publish, QoS, ReasonCode};

impl Broker {
    /// `forwarded`: the property block as received when it can be stored as it is (see
    /// `Publish::parse_body_forwardable`).
    pub(crate) fn handle_publish(
        &mut self,
        conn: ConnId,
        now: Instant,
        p: &Publish<'_>,
        forwarded: Option<&[u8]>,
    ) {
        let max_alias = self.cfg.topic_alias_maximum;
        let Self {
            conns,
            sessions,
            arena,
            cfg,
            policy,
            ..
        } = self;
        let Some(c) = conns.get_mut(conn) else { return };
        let Some(sk) = c.session else { return };
        let Some(s) = sessions.get_mut(sk) else {
            return;
        };
        let v = c.version;

        let mut fail = None;
        let mut topic = p.topic;
        if let Some(alias) = p.properties.topic_alias {
            // The table exists only once a client uses aliases (idle connections stay small).
            let seed = cfg.hash_seed;
            let alias_in = &mut c
                .rare
                .get_or_insert_with(|| crate::conn::ConnRare::new(seed))
                .alias_in;
            if alias <= max_alias && alias_in.len() < usize::from(max_alias) {
                alias_in.resize(usize::from(max_alias), alloc::string::String::new());
            }
            // [MQTT-3.3.2-12] aliases 1 to the maximum are accepted; others are invalid
            // (0 is refused by the codec already, [MQTT-3.3.2-8]).
            match alias_in.get_mut(usize::from(alias).wrapping_sub(1)) {
                Some(slot) if alias <= max_alias => {
                    if p.topic.is_empty() {
                        if slot.is_empty() {
                            // An alias with no mapping yet is a Protocol Error (3.3.2.3.4).
                            fail = Some(ReasonCode::ProtocolError);
                        }
                        topic = slot.as_str();
                    } else {
                        slot.clear();
                        slot.push_str(p.topic);
                    }
                }
                _ => fail = Some(ReasonCode::TopicAliasInvalid),
            }
        }
        if fail.is_none() {
            // [MQTT-3.2.2-11] QoS above Maximum QoS; [MQTT-3.2.2-14] retain unsupported.
            if p.qos > cfg.maximum_qos {
                fail = Some(ReasonCode::QoSNotSupported);
            } else if p.retain && !cfg.retain_available {
                fail = Some(ReasonCode::RetainNotSupported);
            }
        }
        let pid = p.packet_id;
        if fail.is_none() && p.qos == QoS::ExactlyOnce {
            if let Some(id) = pid {
                if s.rx_qos2.contains(&id.get()) {
                    // [MQTT-4.3.3-10] v5 ([MQTT-4.3.3-2] v3.1.1) a duplicate before PUBREL: acknowledge, do not deliver
                    // again (exactly once).
                    if self.session_stored(sk) {
                        // Its record may still be on its way to the store.
                        self.ack_after_store(conn, PacketType::PubRec, id, ReasonCode::Success);
                    } else {
                        let ack = Ctrl::Ack {
                            kind: PacketType::PubRec,
                            pid: id,
                            code: ReasonCode::Success,
                        };
                        self.push_ctrl(conn, ack);
                    }
                    return;
                }
                // [MQTT-3.3.4-7] more unacknowledged QoS 2 than Receive Maximum.
                if s.rx_qos2.len() >= usize::from(cfg.receive_maximum) {
                    fail = Some(ReasonCode::ReceiveMaximumExceeded);
                }
            }
        }
        // [MQTT-3.3.4-7] QoS 1 acknowledgements held back by flow control count too (MQTT 5
        // only: 3.1.1 has no Receive Maximum to exceed).
        if fail.is_none()
            && v.is_v5()
            && p.qos == QoS::AtLeastOnce
            && usize::from(c.delayed_acks) + s.rx_qos2.len() >= usize::from(cfg.receive_maximum)
        {
            fail = Some(ReasonCode::ReceiveMaximumExceeded);
        }
        if let Some(code) = fail {
            return self.protocol_error(conn, now, code);
        }

        let info = Self::client_info(s, Some(&c.peer));
        let allowed =
            !server_reserved(topic) && policy.authorizer.can_publish(&info, topic, p.qos, p.retain);
        let parts = MessageParts {
            topic,
            props: &p.properties,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            expires_at: p
                .properties
                .message_expiry_interval
                .map(|secs| now.plus_secs(u64::from(secs))),
            origin: s.origin,
        };
        let msg = match forwarded {
            // The block holds only forwarded properties, validated by the decoder: copied.
            Some(block) if v.is_v5() => arena.store_forwarded(parts, block),
            Some(_) => arena.store_forwarded(parts, &[]),
            None => {
                let props = if v.is_v5() {
                    super::connect::forwarded(&p.properties)
                } else {
                    mqtt_proto::Properties::default()
                };
                arena.store_parts(MessageParts {
                    props: &props,
                    ..parts
                })
            }
        };
        let Some(msg) = msg else {
            return self.protocol_error(conn, now, ReasonCode::TopicNameInvalid);
        };
        // A refused message never arrived: hooks (webhooks among them) see only what
        // authorization let through.
        let publisher_hash = s.client_hash;
        let mut code = if !allowed {
            ReasonCode::NotAuthorized
        } else {
            match policy.hooks.on_message_arrived(&info, &msg) {
                Err(rc) => rc,
                Ok(()) => ReasonCode::Success,
            }
        };
        let kind = if p.qos == QoS::AtLeastOnce {
            PacketType::PubAck
        } else {
            PacketType::PubRec
        };
        let mut held = None;
        if code == ReasonCode::Success {
            self.metrics.publish_received += 1;
            #[cfg(feature = "ops")]
            if let Some(n) = self.metrics.ops.messages_received.get_mut(p.qos as usize) {
                *n += 1;
            }
            // Flow control may hold the acknowledgement while subscribers lack room.
            if let Some(id) = pid {
                self.begin_ack(super::flow::AckTarget::Conn {
                    conn,
                    pid: id,
                    kind,
                    code: ReasonCode::Success,
                });
            }
            let matched = self.publish_message(now, &msg, publisher_hash);
            if let (Some(id), PacketType::PubRec) = (pid, kind) {
                // Exactly once across a restart: PUBREC waits for the identifier's record.
                self.store_qos2_received(sk, id.get());
            }
            // A key only when something held the acknowledgement.
            held = self.end_ack();
            // 3.4.2.1: 0x10 tells a v5 publisher nobody received it.
            if !matched && v.is_v5() {
                code = ReasonCode::NoMatchingSubscribers;
            }
        }
        let Some(id) = pid else { return };
        let code = if code.valid_in(kind) {
            code
        } else {
            ReasonCode::UnspecifiedError
        };
        if kind == PacketType::PubRec && !code.is_error() {
            if let Some(s) = self.sessions.get_mut(sk) {
                s.rx_qos2.push(id.get());
            }
        }
        let Some(key) = held else {
            self.push_ctrl(
                conn,
                Ctrl::Ack {
                    kind,
                    pid: id,
                    code,
                },
            );
            return;
        };
        if let Some(a) = self.acks.get_mut(key) {
            if let super::flow::AckTarget::Conn { code: c, .. } = &mut a.target {
                *c = code;
            }
            if a.holds > 1 && kind == PacketType::PubAck {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.delayed_acks = c.delayed_acks.saturating_add(1);
                }
            }
        }
        // Drops the routing hold: the acknowledgement goes now unless something waits.
        self.release_ack(key);
    }

    /// Sends a message to everyone subscribed, on this shard and others; stores it if
    /// retained. Returns whether anyone (locally) or any other shard was interested.
    pub(crate) fn publish_message(
        &mut self,
        now: Instant,
        msg: &Message,
        publisher_hash: u64,
    ) -> bool {
        if msg.retain && self.cfg.retain_available {
            self.retain(msg);
        }
        let local = self.route_local(now, msg, publisher_hash);
        let remote = self.forwards() && self.forward_to_interested(msg, publisher_hash);
        local || remote
    }

    fn retain(&mut self, msg: &Message) {
        self.store_retained(msg);
        let owner = owner_of_topic(msg.topic(), self.cfg.shards);
        if owner == self.cfg.shard {
            self.apply_retained(msg);
            self.broadcast(|| ShardMsg::RetainApply { msg: msg.clone() });
            self.retain_to_cluster(msg);
        } else {
            self.events.push_back(Event::ToShard {
                to: owner,
                msg: ShardMsg::RetainRequest { msg: msg.clone() },
            });
        }
    }

    /// [MQTT-3.3.1-5] store, replacing any previous; [MQTT-3.3.1-6/7] empty payload deletes.
    pub(crate) fn apply_retained(&mut self, msg: &Message) {
        if !msg.payload().is_empty()
            && self.retained.len() >= self.cfg.max_retained_messages
            && self.retained.get(msg.topic()).is_none()
        {
            return;
        }
        if let Some(at) = msg.expires_at {
            self.schedule(at, super::Timer::RetainedExpiry(msg.topic().into()));
        }
        self.retained.set(msg.detached());
    }

    /// The topic's owner ordered a retained update published on this node: the cluster
    /// link sends it to every other node.
    pub(crate) fn retain_to_cluster(&mut self, msg: &Message) {
        if self.in_cluster() && !msg.topic_bytes().starts_with(b"$SYS") {
            #[cfg(feature = "cluster")]
            self.events.push_back(Event::ToShard {
                to: crate::cluster::link(self.cfg.shards),
                msg: ShardMsg::RetainApply { msg: msg.clone() },
            });
        }
        let _ = msg;
    }

    pub(crate) fn broadcast(&mut self, mut make: impl FnMut() -> ShardMsg) {
        for to in 0..self.cfg.shards {
            if to != self.cfg.shard {
                self.events.push_back(Event::ToShard { to, msg: make() });
            }
        }
    }

    /// One `ShardMsg::Publish` to each other shard, and each remote node, with interest
    /// (none to remote nodes for a message from one).
    pub(crate) fn forward_to_interested(&mut self, msg: &Message, publisher_hash: u64) -> bool {
        let Self {
            interest,
            shard_hits,
            ..
        } = self;
        shard_hits.iter_mut().for_each(|h| *h = false);
        interest.for_each_match_bytes(msg.topic_bytes(), |&sh| {
            if let Some(h) = shard_hits.get_mut(usize::from(sh)) {
                *h = true;
            }
        });
        let mut any = false;
        // `$SYS` is each node's own (its counters), never another node's.
        #[cfg(feature = "cluster")]
        let last = if self.from_cluster || msg.topic_bytes().starts_with(b"$SYS") {
            self.cfg.shards
        } else {
            self.shard_hits.len() as u16
        };
        #[cfg(not(feature = "cluster"))]
        let last = self.cfg.shards;
        for sh in 0..last {
            if sh != self.cfg.shard && self.shard_hits.get(usize::from(sh)) == Some(&true) {
                any = true;
                // The other shard holds the acknowledgement too while its subscribers
                // have no room (flow control).
                let ack = if msg.qos == QoS::AtMostOnce {
                    None
                } else {
                    let shard = self.cfg.shard;
                    self.hold_current().map(|key| super::AckRef { shard, key })
                };
                self.events.push_back(Event::ToShard {
                    to: sh,
                    msg: ShardMsg::Publish {
                        msg: msg.clone(),
                        publisher_hash,
                        ack,
                    },
                });
            }
        }
        any
    }

    /// Delivers to this shard's subscribers and to the shared groups it owns. Overlapping
    /// subscriptions of one session give one copy at the highest QoS with every
    /// subscription identifier ([MQTT-3.3.4-2], [MQTT-3.3.4-3]).
    pub(crate) fn route_local(&mut self, now: Instant, msg: &Message, publisher_hash: u64) -> bool {
        self.stamp += 1;
        let stamp = self.stamp;
        let mut hits = core::mem::take(&mut self.hits);
        let mut groups = core::mem::take(&mut self.group_hits);
        hits.clear();
        groups.clear();
        #[cfg(feature = "cluster")]
        let from_node = msg.origin == crate::cluster::FROM_NODE;
        #[cfg(not(feature = "cluster"))]
        let from_node = false;
        {
            let Self {
                index, sessions, ..
            } = self;
            index.for_each_match_bytes(msg.topic_bytes(), |e| match e {
                LocalSub::Session {
                    session,
                    options,
                    id,
                } => {
                    let Some(s) = sessions.get_mut(*session) else {
                        return;
                    };
                    // [MQTT-3.8.3-3] v5 No Local: not to the publishing session.
                    if options.no_local && s.origin == msg.origin {
                        return;
                    }
                    let qos = options.qos.min(msg.qos);
                    // [MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published, else RETAIN 0.
                    let retain = options.retain_as_published && msg.retain;
                    if s.stamp == stamp {
                        if let Some(h) = hits.get_mut(s.slot as usize) {
                            h.qos = h.qos.max(qos);
                            h.retain |= retain;
                            if let Some(i) = id {
                                h.ids.push(*i);
                            }
                        }
                    } else {
                        s.stamp = stamp;
                        s.slot = hits.len() as u32;
                        hits.push(Hit {
                            session: *session,
                            qos,
                            retain,
                            ids: SubIds::from_opt(*id),
                        });
                    }
                }
                // A message from another node reaches a group only as the group's
                // cluster-wide choice (`handle_cluster_shared`).
                LocalSub::Group(g) if !from_node => groups.push(g.clone()),
                LocalSub::Group(_) => {}
            });
        }
        let any = !hits.is_empty() || !groups.is_empty();
        for h in hits.drain(..) {
            let item = Queued::new(msg.clone(), h.qos, h.retain, h.ids, None);
            self.enqueue(now, h.session, item);
        }
        for g in groups.drain(..) {
            self.deliver_group(now, g, msg, publisher_hash);
        }
        self.hits = hits;
        self.group_hits = groups;
        any
    }

    /// Puts a message in a session's queue, within its limits: when full, QoS 0 goes first
    /// (the oldest queued QoS 0 message makes room for a QoS 1/2 one), otherwise the new
    /// message is dropped and reported.
    pub(crate) fn enqueue(&mut self, now: Instant, sk: Key, item: Queued) -> bool {
        // Flow control: a connected subscriber without room may hold this QoS 1/2 message
        // (and its publisher's acknowledgement) instead of losing it.
        let parkable = self.may_park(sk, item.qos);
        // Messages on disk only (a stored session's queue beyond its memory share) count
        // towards the limits too.
        let spilled = self.spilled(sk);
        let mut park_now = false;
        let Self {
            sessions,
            conns,
            cfg,
            policy,
            metrics,
            ..
        } = self;
        let Some(s) = sessions.get_mut(sk) else {
            return false;
        };
        let online = s.conn.is_some();
        let mut drop = |s: &crate::session::Session, msg: &Message, why: DropReason| {
            match why {
                DropReason::QueueFull => metrics.dropped_queue_full += 1,
                DropReason::Expired => metrics.dropped_expired += 1,
                DropReason::Offline => metrics.dropped_offline += 1,
                DropReason::NotAuthorized => metrics.dropped_not_authorized += 1,
                _ => {}
            }
            policy.hooks.on_dropped(&s.client_id, msg, why);
        };
        if !online && item.qos == QoS::AtMostOnce && !cfg.queue_qos0_messages {
            drop(s, &item.msg, DropReason::Offline);
            return false;
        }
        if item.msg.is_expired(now) {
            drop(s, &item.msg, DropReason::Expired);
            return false;
        }
        if policy.authorizer.checks_receive() {
            let peer = s.conn.and_then(|c| conns.get(c)).map(|c| &c.peer);
            let info = Self::client_info(s, peer);
            if !policy.authorizer.can_receive(&info, item.msg.topic()) {
                drop(s, &item.msg, DropReason::NotAuthorized);
                return false;
            }
        }
        let size = item.msg.size();
        let full = |s: &crate::session::Session| {
            s.queue.len() + spilled >= cfg.max_queued_messages
                || (cfg.max_queued_bytes > 0 && s.queued_bytes + size > cfg.max_queued_bytes)
        };
        if parkable && !s.overflow.is_empty() {
            // Behind messages already waiting: keep their order.
            park_now = true;
        } else if item.qos == QoS::AtMostOnce && full(s) {
            // Nothing makes way for QoS 0 (and no scan of the queue per dropped message:
            // under a flood this is the common case).
            drop(s, &item.msg, DropReason::QueueFull);
            return false;
        } else if full(s) {
            // QoS 0 messages make way for a QoS 1/2 one, oldest first, but only if
            // removing them makes enough room (messages and bytes).
            let (n0, b0) = s
                .queue
                .iter()
                .filter(|q| q.qos == QoS::AtMostOnce)
                .fold((0, 0), |(n, b), q| (n + 1, b + q.msg.size()));
            let fits = s.queue.len() + spilled - n0 < cfg.max_queued_messages
                && (cfg.max_queued_bytes == 0
                    || s.queued_bytes - b0 + size <= cfg.max_queued_bytes);
            if !fits && parkable {
                park_now = true;
            } else if !fits {
                drop(s, &item.msg, DropReason::QueueFull);
                return false;
            }
            while !park_now && full(s) {
                let Some(i) = s.queue.iter().position(|q| q.qos == QoS::AtMostOnce) else {
                    break;
                };
                if let Some(old) = s.queue.remove(i) {
                    s.queued_bytes -= old.msg.size();
                    drop(s, &old.msg, DropReason::QueueFull);
                }
            }
        }
        if park_now {
            self.park(now, sk, item);
            return true;
        }
        let mut item = item;
        if !online {
            // Offline: own allocation, so the arena chunk can be reused.
            item.msg = item.msg.detached();
        }
        self.store_queued(sk, &mut item);
        let Some(s) = self.sessions.get_mut(sk) else {
            return false;
        };
        s.queued_bytes += size;
        let memory_len = s.queue.len();
        if self.spill(sk, &item, memory_len) {
            // On disk only: read back when the queue runs low.
            return true;
        }
        let Some(s) = self.sessions.get_mut(sk) else {
            return false;
        };
        let conn = s.conn;
        s.queue.push_back(item);
        if let Some(c) = conn {
            self.wake(c);
        }
        true
    }

    /// The owner's choice of a group member (4.8.2), preferring connected local members.
    pub(crate) fn deliver_group(
        &mut self,
        now: Instant,
        g: Arc<GroupName>,
        msg: &Message,
        publisher_hash: u64,
    ) {
        let me = self.cfg.shard;
        let strategy = self.cfg.shared_strategy;
        let Some(group) = self.groups.get_mut(&g) else {
            return;
        };
        let len = group.members.len();
        if len == 0 {
            return;
        }
        let start = match strategy {
            crate::config::SharedStrategy::RoundRobin => {
                let i = group.next % len;
                group.next = group.next.wrapping_add(1);
                i
            }
            crate::config::SharedStrategy::HashClientId => (publisher_hash % len as u64) as usize,
        };
        let sessions = &self.sessions;
        #[allow(unused_mut)]
        let mut pick = (0..len)
            .map(|k| (start + k) % len)
            .find(|&i| {
                group.members.get(i).is_some_and(|m| {
                    m.shard != me || sessions.get(m.session).is_some_and(|s| s.conn.is_some())
                })
            })
            .unwrap_or(start);
        // Another node chose this node's members: one of them, never another node.
        #[cfg(feature = "cluster")]
        if self.from_cluster {
            let shards = self.cfg.shards;
            let local = |i: &usize| group.members.get(*i).is_some_and(|m| m.shard < shards);
            let mut order = (0..len).map(|k| (start + k) % len).filter(local);
            let Some(first) = order.next() else {
                return;
            };
            pick = core::iter::once(first)
                .chain(order)
                .find(|&i| {
                    group.members.get(i).is_some_and(|m| {
                        m.shard != me || sessions.get(m.session).is_some_and(|s| s.conn.is_some())
                    })
                })
                .unwrap_or(first);
        }
        let Some(m) = group.members.get(pick).cloned() else {
            return;
        };
        let qos = m.options.qos.min(msg.qos);
        let retain = m.options.retain_as_published && msg.retain;
        if m.shard == me {
            let item = Queued::new(msg.clone(), qos, retain, SubIds::from_opt(m.id), Some(g));
            self.enqueue(now, m.session, item);
        } else {
            // The member's shard holds the acknowledgement too while its queue is full.
            let ack = if qos == QoS::AtMostOnce {
                None
            } else {
                self.hold_current()
                    .map(|key| super::AckRef { shard: me, key })
            };
            self.events.push_back(Event::ToShard {
                to: m.shard,
                msg: ShardMsg::SharedDeliver {
                    session: m.session,
                    msg: msg.clone(),
                    qos,
                    retain,
                    id: m.id,
                    group: g,
                    ack,
                },
            });
        }
    }

    /// A message a leaving member had not finished goes to another member of its group.
    pub(crate) fn return_to_group(&mut self, now: Instant, g: Arc<GroupName>, msg: Message) {
        let owner = owner_of_group(&g.group, &g.filter, self.cfg.shards);
        if owner == self.cfg.shard {
            self.deliver_group(now, g, &msg, 0);
        } else {
            // Returned while its publisher's acknowledgement is routed: the other shard
            // holds it too (until the message is queued, and written).
            let ack = if msg.qos == QoS::AtMostOnce {
                None
            } else {
                let shard = self.cfg.shard;
                self.hold_current().map(|key| super::AckRef { shard, key })
            };
            self.events.push_back(Event::ToShard {
                to: owner,
                msg: ShardMsg::SharedReturn { group: g, msg, ack },
            });
        }
    }

    fn session_of(&self, conn: ConnId) -> Option<Key> {
        self.conns.get(conn).and_then(|c| c.session)
    }

    pub(crate) fn handle_puback(&mut self, conn: ConnId, _now: Instant, a: &Ack<'_>) {
        self.complete(conn, a.packet_id, InflightState::AwaitAck);
    }

    pub(crate) fn handle_pubcomp(&mut self, conn: ConnId, _now: Instant, a: &Ack<'_>) {
        self.complete(conn, a.packet_id, InflightState::AwaitComp);
    }

    /// The end of a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) flow frees its window slot.
    pub(crate) fn complete(&mut self, conn: ConnId, pid: PacketId, state: InflightState) {
        let Some(sk) = self.session_of(conn) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        let Some(pos) = s.inflight_pos(pid.get()) else {
            return;
        };
        if s.inflight.get(pos).map(|f| f.state) != Some(state) {
            return;
        }
        if let Some(f) = s.inflight.remove(pos) {
            self.policy.hooks.on_acked(&s.client_id, &f.item.msg);
            self.store_msg_done(sk, super::durable::seq_of(&f.item));
        }
        self.wake(conn);
    }

    pub(crate) fn handle_pubrec(&mut self, conn: ConnId, _now: Instant, a: &Ack<'_>) {
        self.pubrec(conn, a.packet_id, a.reason_code);
    }

    /// PUBREC `pid` with reason `code` (also the 4-byte fast path of `handle_bytes`).
    pub(crate) fn pubrec(&mut self, conn: ConnId, pid: PacketId, code: ReasonCode) {
        let Some(sk) = self.session_of(conn) else {
            return;
        };
        let v = self.conns.get(conn).map(|c| c.version);
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        let rec_code = code;
        let code = match s.inflight_pos(pid.get()) {
            Some(pos) => {
                if rec_code.is_error() {
                    // 4.3.3: a PUBREC with an error ends the flow; the slot is free.
                    if let Some(f) = s.inflight.remove(pos) {
                        self.policy.hooks.on_acked(&s.client_id, &f.item.msg);
                        self.store_msg_done(sk, super::durable::seq_of(&f.item));
                    }
                    self.wake(conn);
                    return;
                }
                let mut seq = 0;
                if let Some(f) = s.inflight.get_mut(pos) {
                    // [MQTT-4.3.3-6] v5 ([MQTT-4.3.3-1] v3.1.1) after PUBREC only PUBREL is sent for this id.
                    f.state = InflightState::AwaitComp;
                    f.needs_send = false;
                    seq = super::durable::seq_of(&f.item);
                }
                if seq != 0 {
                    // After a restart PUBREL is resent, not the message: PUBREL goes once
                    // that is in the store (else the client could complete the flow and
                    // then get the message again under the same, freed, identifier).
                    let state = super::durable::state_code(InflightState::AwaitComp);
                    self.store_inflight(sk, seq, pid.get(), state);
                    let code = ReasonCode::Success;
                    return self.ack_after_store(conn, PacketType::PubRel, pid, code);
                }
                ReasonCode::Success
            }
            None if v.is_some_and(|v| v.is_v5()) => ReasonCode::PacketIdentifierNotFound,
            None => ReasonCode::Success,
        };
        self.push_ctrl(
            conn,
            Ctrl::Ack {
                kind: PacketType::PubRel,
                pid,
                code,
            },
        );
    }

    pub(crate) fn handle_pubrel(&mut self, conn: ConnId, _now: Instant, a: &Ack<'_>) {
        self.pubrel(conn, a.packet_id);
    }

    /// PUBREL `pid` (also the 4-byte fast path of `handle_bytes`).
    pub(crate) fn pubrel(&mut self, conn: ConnId, pid: PacketId) {
        let Some(sk) = self.session_of(conn) else {
            return;
        };
        let v5 = self.conns.get(conn).is_some_and(|c| c.version.is_v5());
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        let found = match s.rx_qos2.iter().position(|&p| p == pid.get()) {
            Some(i) => {
                s.rx_qos2.swap_remove(i);
                true
            }
            None => false,
        };
        #[cfg(feature = "backpressure")]
        if found {
            self.qos2_window_opened(conn);
        }
        let code = if found || !v5 {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        };
        if found && self.session_stored(sk) {
            // The identifier may be reused once PUBCOMP is out: its record goes first, or a
            // restart would take the next message with it for a duplicate.
            self.store_qos2_in(sk, pid.get(), false);
            self.ack_after_store(conn, PacketType::PubComp, pid, code);
            return;
        }
        self.push_ctrl(
            conn,
            Ctrl::Ack {
                kind: PacketType::PubComp,
                pid,
                code,
            },
        );
    }
}

/// Topics no client may publish to, whatever the authorizer says (Mosquitto's rule, which
/// clients expect): `$SYS` belongs to the broker, except a bridge's connection state
/// (`$SYS/broker/connection/+/state`, then left to the authorizer); a topic starting with
/// `$share` could never be received, since such filters are shared subscriptions (4.8.2).
pub(crate) fn server_reserved(topic: &str) -> bool {
    if !topic.starts_with('$') {
        return false;
    }
    if topic.starts_with("$SYS") {
        !mqtt_proto::topic::matches("$SYS/broker/connection/+/state", topic)
    } else {
        topic.starts_with("$share")
    }
}
