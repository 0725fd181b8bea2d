//! Messages from other nodes of a cluster (feature `cluster`; the format is `crate::cluster`).

use super::flow::AckTarget;
use super::{Broker, Event};
use crate::message::{Message, MessageParts};
use crate::session::GroupName;
use crate::shard::owner_of_group;
use crate::shard::ShardMsg;
use crate::time::Instant;
use mqtt_proto::{Publish, QoS};

/// `$share/<group>/<filter>` as a group.
fn group_of(share: &str) -> Option<GroupName> {
    let f = mqtt_proto::topic::Filter::parse(share).ok()?;
    Some(GroupName {
        group: f.share_name?.into(),
        filter: f.filter.into(),
    })
}

impl Broker {
    /// A message another node forwarded to this one, entering at this shard: delivered to
    /// this shard's subscribers and sent on to this node's other shards with interest, never
    /// to other nodes (the publishing node sent one to each). With `token`, the sending node
    /// waits for it: `Event::ClusterAck { token }` follows once every queue here took the
    /// message (later, if a subscriber here has no room yet). A retained message is not
    /// stored by this path (see [`Broker::handle_cluster_retain`]). Returns false, and does
    /// nothing else, when the frame is not a valid one.
    pub fn handle_cluster_publish(
        &mut self,
        now: Instant,
        frame: &[u8],
        publisher_hash: u64,
        token: Option<u64>,
    ) -> bool {
        let Some(msg) = self.frame_message(now, frame) else {
            return false;
        };
        self.from_cluster = true;
        match token.filter(|_| msg.qos != QoS::AtMostOnce) {
            Some(t) => {
                self.begin_ack(AckTarget::Cluster(t));
                self.route_local(now, &msg, publisher_hash);
                self.forward_to_interested(&msg, publisher_hash);
                match self.end_ack() {
                    Some(key) => self.release_ack(key),
                    None => self.events.push_back(Event::ClusterAck { token: t }),
                }
            }
            None => {
                self.route_local(now, &msg, publisher_hash);
                self.forward_to_interested(&msg, publisher_hash);
                if let Some(t) = token {
                    self.events.push_back(Event::ClusterAck { token: t });
                }
            }
        }
        self.from_cluster = false;
        true
    }

    /// A retained update another node ordered, at the topic's owner shard here (see
    /// [`crate::cluster::topic`]): stored, applied and replicated to this node's shards in
    /// this order, as for a local one. Returns false for an invalid frame.
    pub fn handle_cluster_retain(&mut self, now: Instant, frame: &[u8]) -> bool {
        let Some(msg) = self.frame_message(now, frame) else {
            return false;
        };
        if !self.cfg.retain_available {
            return true;
        }
        self.store_retained(&msg);
        self.apply_retained(&msg);
        self.broadcast(|| ShardMsg::RetainApply { msg: msg.clone() });
        true
    }

    /// Another node chose this node's members of a shared group (`$share/<group>/<filter>`)
    /// for a message: one of them gets it (never another node: the choice among nodes was
    /// made), with a confirmation as for `handle_cluster_publish`. At the group's owner
    /// shard. Returns false for an invalid frame or name.
    pub fn handle_cluster_shared(
        &mut self,
        now: Instant,
        frame: &[u8],
        share: &str,
        token: Option<u64>,
    ) -> bool {
        let Some(g) = group_of(share) else {
            return false;
        };
        let Some(msg) = self.frame_message(now, frame) else {
            return false;
        };
        // The group as this shard keeps it (gone: nobody here any more, the message too).
        let g = self.groups.get_key_value(&g).map(|(k, _)| k.clone());
        self.from_cluster = true;
        let qos1 = msg.qos != QoS::AtMostOnce;
        match token {
            Some(t) if qos1 => {
                self.begin_ack(AckTarget::Cluster(t));
                if let Some(g) = g {
                    self.deliver_group(now, g, &msg, 0);
                }
                match self.end_ack() {
                    Some(key) => self.release_ack(key),
                    None => self.events.push_back(Event::ClusterAck { token: t }),
                }
            }
            _ => {
                if let Some(g) = g {
                    self.deliver_group(now, g, &msg, 0);
                }
                if let Some(t) = token {
                    self.events.push_back(Event::ClusterAck { token: t });
                }
            }
        }
        self.from_cluster = false;
        true
    }

    /// Remote node `slot` has (`add`) or no longer has members of the shared group `share`:
    /// it becomes one member of this node's group (the group's choice among members is a
    /// choice among nodes too). Any shard may be given it. Returns false for an invalid name.
    pub fn handle_cluster_group(&mut self, slot: u16, share: &str, add: bool) -> bool {
        let Some(g) = group_of(share) else {
            return false;
        };
        let shard = crate::cluster::node_shard(self.cfg.shards, slot);
        let g = alloc::sync::Arc::new(g);
        let session = crate::slab::Key::REMOTE;
        let owner = owner_of_group(&g.group, &g.filter, self.cfg.shards);
        let msg = if add {
            let member = crate::shard::Member {
                shard,
                session,
                client_hash: u64::from(slot),
                options: mqtt_proto::SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..Default::default()
                },
                id: None,
            };
            ShardMsg::SharedJoin { group: g, member }
        } else {
            ShardMsg::SharedLeave {
                group: g,
                shard,
                session,
            }
        };
        if owner == self.cfg.shard {
            let now = Instant::ZERO;
            self.handle_shard_msg(now, msg);
        } else {
            self.events.push_back(Event::ToShard { to: owner, msg });
        }
        true
    }

    /// Whether the CONNECT at the start of `first` would pass authentication: a node of a
    /// cluster takes the client identifier over from another node only for a client that
    /// can connect (an unauthenticated one must not disconnect the owner elsewhere). An
    /// enhanced-authentication CONNECT cannot be judged before its exchange: `Ok`. The
    /// refusal's code otherwise: the shell denies the CONNECT with it (`deny_connect`), so
    /// that a second opinion of the authenticator never serves a client that owns nothing.
    pub fn connect_authenticates(
        &mut self,
        peer: &crate::policy::PeerInfo,
        first: &[u8],
    ) -> Result<(), mqtt_proto::ReasonCode> {
        use mqtt_proto::{Packet, ProtocolVersion, Status};
        let max = self.cfg.max_packet_size as usize;
        let Ok(Status::Complete((Packet::Connect(c), _))) =
            Packet::parse(first, ProtocolVersion::V5, max)
        else {
            return Err(mqtt_proto::ReasonCode::MalformedPacket);
        };
        if c.properties.authentication_method.is_some() {
            return Ok(());
        }
        let req = crate::policy::ConnectRequest {
            conn: crate::slab::Key::REMOTE,
            client_id: c.client_id,
            username: c.username,
            password: c.password,
            peer,
            protocol: c.protocol,
        };
        self.policy.authenticator.authenticate(&req).map(|_| ())
    }

    /// Another node of the cluster takes this client's session over: its connection here
    /// is closed (MQTT 5: DISCONNECT 0x8E Session taken over, [MQTT-3.1.4-3] v5; the will
    /// as at any close) and the session leaves this broker without ending: its pending
    /// will, queue and in-flight messages go on from the shared store on the other node,
    /// so nothing is published, handed back to a shared group or deleted but this
    /// broker's copy of its records. False when no session of that client is here.
    pub fn move_out(&mut self, now: Instant, client_id: &str) -> bool {
        let Some(sk) = self.by_id.get(&self.sessions, client_id) else {
            return false;
        };
        if let Some(conn) = self.sessions.get(sk).and_then(|s| s.conn) {
            self.close(conn, now, Some(mqtt_proto::ReasonCode::SessionTakenOver));
        }
        // Detaching may have ended it already (Session Expiry Interval 0).
        if self.sessions.get(sk).is_some() {
            self.moving = true;
            self.end_session(sk, now, crate::policy::SessionEnd::TakenOver);
            self.moving = false;
        }
        true
    }

    /// [`Broker::move_out`], leaving a shadow behind: a session of the same identifier and
    /// (unshared) subscriptions, with no connection, will or queue, that queues (and
    /// stores) what other nodes still route here while they learn the session's new home.
    /// Its shell ends it with `move_out` once they have (the session's new node takes
    /// what it queued from the cluster's shared copy). The shadow's filters, if a
    /// session was here.
    #[cfg(feature = "store")]
    pub fn move_out_shadowed(
        &mut self,
        now: Instant,
        client_id: &str,
    ) -> Option<alloc::vec::Vec<alloc::boxed::Box<str>>> {
        let shadow = self
            .by_id
            .get(&self.sessions, client_id)
            .and_then(|sk| self.sessions.get(sk))
            .filter(|s| s.expiry_interval > 0)
            .map(|s| crate::store::RestoredSession {
                client_id: client_id.into(),
                username: s.username.clone(),
                protocol: s.protocol,
                expiry_interval: s.expiry_interval,
                subscriptions: s
                    .subs
                    .iter()
                    .filter(|(_, rec)| rec.group.is_none())
                    .map(|(filter, rec)| crate::policy::StoredSubscription {
                        filter: filter.into(),
                        options: rec.options,
                        id: rec.id,
                    })
                    .collect(),
                messages: alloc::vec::Vec::new(),
                qos2_in: alloc::vec::Vec::new(),
                will: None,
            });
        if !self.move_out(now, client_id) {
            return None;
        }
        let Some(r) = shadow else {
            return Some(alloc::vec::Vec::new());
        };
        let filters = r.subscriptions.iter().map(|s| s.filter.clone()).collect();
        self.restore_stored(now, r);
        Some(filters)
    }

    /// A message forwarded to a node that then died without confirming it, kept by the
    /// cluster until that node's sessions go on elsewhere: queued for this one session
    /// (which came here from the dead node) if one of its subscriptions matches, as
    /// routing would have (shared subscriptions excepted: their groups chose a member
    /// already). True when queued.
    pub fn queue_for_session(&mut self, now: Instant, client_id: &str, frame: &[u8]) -> bool {
        let Some(sk) = self.by_id.get(&self.sessions, client_id) else {
            return false;
        };
        let Some(msg) = self.frame_message(now, frame) else {
            return false;
        };
        let Some(s) = self.sessions.get(sk) else {
            return false;
        };
        let mut hit: Option<(QoS, bool, crate::session::SubIds)> = None;
        for (filter, rec) in s.subs.iter() {
            if rec.group.is_some() || !mqtt_proto::topic::matches(filter, msg.topic()) {
                continue;
            }
            // As `route_local`: the highest QoS and every identifier of the matches.
            let qos = rec.options.qos.min(msg.qos);
            let retain = rec.options.retain_as_published && msg.retain;
            let h = hit.get_or_insert((qos, retain, crate::session::SubIds::None));
            h.0 = h.0.max(qos);
            h.1 |= retain;
            if let Some(i) = rec.id {
                h.2.push(i);
            }
        }
        let Some((qos, retain, ids)) = hit else {
            return false;
        };
        let item = crate::session::Queued::new(msg, qos, retain, ids, None);
        self.enqueue(now, sk, item)
    }

    /// The shell refuses this connection's CONNECT with `code` (a cluster node that cannot
    /// own its client identifier: 0x88 Server unavailable, 3.1.1 return code 3). Call
    /// before its input.
    pub fn deny_connect(&mut self, conn: crate::policy::ConnId, code: mqtt_proto::ReasonCode) {
        let seed = self.cfg.hash_seed;
        if let Some(c) = self.conns.get_mut(conn) {
            c.rare(seed).denied = Some(code);
        }
    }

    fn frame_message(&mut self, now: Instant, frame: &[u8]) -> Option<Message> {
        let (p, block): (Publish<'_>, _) = crate::cluster::decode(frame)?;
        let parts = MessageParts {
            topic: p.topic,
            props: &p.properties,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            expires_at: p
                .properties
                .message_expiry_interval
                .map(|secs| now.plus_secs(u64::from(secs))),
            origin: crate::cluster::FROM_NODE,
        };
        match block {
            Some(b) => self.arena.store_forwarded(parts, b),
            None => {
                let props = super::connect::forwarded(&p.properties);
                self.arena.store_parts(MessageParts {
                    props: &props,
                    ..parts
                })
            }
        }
    }
}
