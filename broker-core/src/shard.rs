//! Messages between shards of one broker. A shell only moves them between threads; their
//! meaning is defined here and handled by `Broker::handle_shard_msg`.

use crate::index::stable_hash;
use crate::message::Message;
use crate::session::GroupName;
use crate::slab::Key;
use alloc::boxed::Box;
use alloc::sync::Arc;
use mqtt_proto::{QoS, SubscriptionOptions};

/// A shard number.
pub type ShardId = u16;

/// The shard that owns a client identifier's session.
pub fn owner_of_client(client_id: &str, shards: u16) -> ShardId {
    if shards <= 1 {
        return 0;
    }
    (stable_hash(&[client_id.as_bytes()]) % u64::from(shards)) as ShardId
}

/// The shard that orders retained updates for a topic.
pub fn owner_of_topic(topic: &str, shards: u16) -> ShardId {
    if shards <= 1 {
        return 0;
    }
    (stable_hash(&[b"topic", topic.as_bytes()]) % u64::from(shards)) as ShardId
}

/// The shard that keeps a shared subscription group's member list.
pub fn owner_of_group(group: &str, filter: &str, shards: u16) -> ShardId {
    if shards <= 1 {
        return 0;
    }
    (stable_hash(&[group.as_bytes(), filter.as_bytes()]) % u64::from(shards)) as ShardId
}

/// A member of a shared subscription group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's shard.
    pub shard: ShardId,
    /// Its session on that shard.
    pub session: Key,
    /// Hash of its client identifier (stable member identity across reconnects).
    pub client_hash: u64,
    /// Subscription options.
    pub options: SubscriptionOptions,
    /// Subscription identifier.
    pub id: Option<u32>,
}

/// What one shard tells another.
#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// The sender gained (`add`) or lost its last local subscriber to `filter` (or, as a
    /// group's owner, created or removed the group).
    Interest {
        /// Sender.
        from: ShardId,
        /// Filter (not shared).
        filter: Box<str>,
        /// Gained or lost.
        add: bool,
    },
    /// A published message: deliver to local subscribers and to groups this shard owns.
    Publish {
        /// The message.
        msg: Message,
        /// Publisher's client identifier hash (for hash-based shared subscriptions).
        publisher_hash: u64,
        /// The publisher's held acknowledgement: release it once routed here (later, if a
        /// subscriber here has no room yet).
        ack: Option<crate::broker::AckRef>,
    },
    /// Releases a hold on an acknowledgement this shard keeps.
    AckRelease {
        /// Its key.
        key: Key,
    },
    /// An acknowledgement this shard keeps waits for a full queue on the sender: hold its
    /// publisher (until the acknowledgement is released).
    #[cfg(feature = "backpressure")]
    AckParked {
        /// Its key.
        key: Key,
    },
    /// To the topic's owner: a retained update to order and replicate.
    RetainRequest {
        /// The message (empty payload deletes).
        msg: Message,
    },
    /// From the topic's owner to every shard: apply this retained update.
    RetainApply {
        /// The message (empty payload deletes).
        msg: Message,
    },
    /// To a group's owner: add or replace a member.
    SharedJoin {
        /// The group.
        group: Arc<GroupName>,
        /// The member.
        member: Member,
    },
    /// To a group's owner: remove a member.
    SharedLeave {
        /// The group.
        group: Arc<GroupName>,
        /// Member's shard.
        shard: ShardId,
        /// Member's session.
        session: Key,
    },
    /// From a group's owner to a member's shard: deliver to this session.
    SharedDeliver {
        /// The member's session.
        session: Key,
        /// The message.
        msg: Message,
        /// Delivery QoS.
        qos: QoS,
        /// RETAIN flag to send.
        retain: bool,
        /// Subscription identifier.
        id: Option<u32>,
        /// The group (so unacknowledged messages can be returned).
        group: Arc<GroupName>,
        /// The publisher's held acknowledgement, as for `Publish`.
        ack: Option<crate::broker::AckRef>,
    },
    /// To a group's owner: a member left with this message unfinished; give it to another.
    SharedReturn {
        /// The group.
        group: Arc<GroupName>,
        /// The message.
        msg: Message,
        /// The publisher's held acknowledgement, while it is still being routed.
        ack: Option<crate::broker::AckRef>,
    },
}

impl ShardMsg {
    /// Whether this message must reach its peer before the sending shard writes its next
    /// output: changes of subscriptions, retained messages and shared-group membership,
    /// which a client may act on as soon as it has the answer (a SUBACK, then a PUBLISH it
    /// expects to be routed). Not the per-message traffic, which may lag.
    pub fn orders_output(&self) -> bool {
        matches!(
            self,
            Self::Interest { .. }
                | Self::RetainRequest { .. }
                | Self::RetainApply { .. }
                | Self::SharedJoin { .. }
                | Self::SharedLeave { .. }
        )
    }
}
