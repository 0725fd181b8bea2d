//! What one node of a cluster sends another (feature `cluster`): a shell moves these bytes
//! over its transport (NATS); their format and meaning live here.
//!
//! Shard numbers beyond a broker's own shards stand for the cluster. [`link`] is the
//! shell's cluster thread: it hears every shard's interest changes (`ShardMsg::Interest`,
//! which it counts per node) and the retained updates each topic's owner shard orders
//! (`ShardMsg::RetainApply`). [`node_shard`] is a remote node: its interest arrives as
//! `ShardMsg::Interest` from that number, and a message it should receive leaves as one
//! `ShardMsg::Publish` to that number, whatever the number of its subscribers.

use crate::message::Message;
use crate::shard::ShardId;
use crate::time::Instant;
use alloc::vec::Vec;
use mqtt_proto::{
    BufMutSink, FixedHeader, PacketId, PacketType, ProtocolVersion, Publish, PublishHeader, QoS,
    Status,
};

/// The origin of a message from another node: no session of this node (No Local concerns
/// the publisher's own node), and a mark that keeps it from shared groups here, which
/// receive such messages only as the cluster-wide choice of their group (`SharedDeliver`
/// to this node, `Broker::handle_cluster_shared`).
pub const FROM_NODE: crate::message::Origin = u64::MAX;

/// A shared group's name as a filter (`$share/<group>/<filter>`): how the link names it to
/// other nodes, which give it back to `Broker::handle_cluster_group` / `_shared`.
pub fn share_name(g: &crate::session::GroupName) -> alloc::string::String {
    alloc::format!("$share/{}/{}", g.group, g.filter)
}

/// Whether a route names a shared group (`$share/<group>/<filter>`) rather than a filter.
pub fn is_share(filter: &str) -> bool {
    mqtt_proto::topic::Filter::parse(filter).is_ok_and(|f| f.share_name.is_some())
}

/// The shard that owns the shared group `$share/<group>/<filter>` (shard 0 for another
/// name).
pub fn group_owner(share: &str, shards: u16) -> ShardId {
    match mqtt_proto::topic::Filter::parse(share) {
        Ok(mqtt_proto::topic::Filter {
            share_name: Some(g),
            filter,
        }) => crate::shard::owner_of_group(g, filter, shards),
        _ => 0,
    }
}

/// Largest frame accepted from another node (the MQTT maximum packet size).
pub const MAX_FRAME: usize = 268_435_460;

/// The shard number of the shell's cluster thread.
pub fn link(shards: u16) -> ShardId {
    shards
}

/// The shard number standing for remote node `slot`.
pub fn node_shard(shards: u16, slot: u16) -> ShardId {
    shards.saturating_add(1).saturating_add(slot)
}

/// The remote node slot a shard number stands for, if it stands for one.
pub fn node_slot(shards: u16, to: ShardId) -> Option<u16> {
    to.checked_sub(shards.saturating_add(1))
}

/// Encodes a message for another node as an MQTT 5 PUBLISH: QoS and RETAIN as published,
/// the forwarded properties, the remaining expiry ([MQTT-3.3.2-6] v5). A packet identifier
/// is required by the format for QoS > 0 and means nothing here. Returns false when the
/// message cannot be encoded (it was valid when stored, so never in practice).
pub fn encode(msg: &Message, now: Instant, out: &mut Vec<u8>) -> bool {
    let payload = msg.payload();
    let header = PublishHeader {
        dup: false,
        qos: msg.qos,
        retain: msg.retain,
        topic: msg.topic_bytes(),
        packet_id: if msg.qos == QoS::AtMostOnce {
            None
        } else {
            PacketId::new(1)
        },
        properties: msg.props_block(),
        message_expiry_interval: msg.remaining_expiry_secs(now),
        topic_alias: None,
        subscription_identifiers: &[],
        payload_len: payload.len(),
    };
    let from = out.len();
    if header
        .emit_to(ProtocolVersion::V5, &mut BufMutSink(out))
        .is_err()
    {
        out.truncate(from);
        return false;
    }
    out.extend_from_slice(payload);
    true
}

/// A frame from another node, decoded: the PUBLISH and its property block when it can be
/// stored as it is (see `Publish::parse_body_forwardable`). `None` for anything else than
/// one complete, valid MQTT 5 PUBLISH.
pub fn decode(frame: &[u8]) -> Option<(Publish<'_>, Option<&[u8]>)> {
    let header = match FixedHeader::parse(frame, MAX_FRAME) {
        Ok(Status::Complete(h)) => h,
        _ => return None,
    };
    if header.packet_type != PacketType::Publish || header.packet_len() != frame.len() {
        return None;
    }
    let body = frame.get(header.header_len..)?;
    Publish::parse_body_forwardable(&header, body, ProtocolVersion::V5).ok()
}

/// The topic of a frame (its retained update is ordered by the topic's owner shard).
pub fn topic(frame: &[u8]) -> Option<&str> {
    decode(frame).map(|(p, _)| p.topic)
}
