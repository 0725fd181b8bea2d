//! Messages from other nodes of a cluster (feature `cluster`; the format is `crate::cluster`).

use super::flow::AckTarget;
use super::{Broker, Event};
use crate::message::{Message, MessageParts};
use crate::shard::ShardMsg;
use crate::time::Instant;
use mqtt_proto::{Publish, QoS};

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
            // A remote publisher is no session of this node (No Local concerns its own).
            origin: 0,
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
