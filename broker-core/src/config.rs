//! The broker's limits and feature switches. Every bound on memory lives here.

use mqtt_proto::QoS;

/// How a shared subscription group picks the member that receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SharedStrategy {
    /// Each member in turn.
    #[default]
    RoundRobin,
    /// By a hash of the publisher's client identifier: one publisher, one member.
    HashClientId,
}

/// What happens to a QoS 1/2 message for a connected subscriber whose queue is full
/// (`queue_full`).
#[cfg(feature = "backpressure")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueFull {
    /// Hold the publisher: its acknowledgement waits and its further PUBLISH packets are
    /// not processed until the queue has room. Nothing acknowledged is lost.
    #[default]
    Hold,
    /// Drop the message (counted and reported), as Mosquitto does.
    Drop,
}

/// Broker configuration for one shard. Defaults follow Mosquitto where it has a setting.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// This shard's number, `0..shards`.
    pub shard: u16,
    /// Number of shards in the broker.
    pub shards: u16,
    /// Seed for hash maps (the shell supplies randomness).
    pub hash_seed: u64,
    /// Largest packet accepted from clients, in bytes (sent as Maximum Packet Size).
    pub max_packet_size: u32,
    /// Receive Maximum announced to clients: QoS 1/2 PUBLISH a client may have unacknowledged.
    pub receive_maximum: u16,
    /// Outgoing QoS 1/2 messages in flight per client (`max_inflight_messages`); the
    /// client's own Receive Maximum lowers it.
    pub max_inflight_messages: u16,
    /// Messages queued per session beyond those in flight (`max_queued_messages`).
    pub max_queued_messages: usize,
    /// Bytes queued per session (`max_queued_bytes`); 0 means no byte limit.
    pub max_queued_bytes: usize,
    /// Queue QoS 0 messages for disconnected persistent sessions.
    pub queue_qos0_messages: bool,
    /// Largest keep alive the broker accepts (`max_keepalive`), in seconds.
    pub max_keepalive: u16,
    /// Topic Alias Maximum announced to MQTT 5 clients.
    pub topic_alias_maximum: u16,
    /// Whether retained messages are supported (`retain_available`).
    pub retain_available: bool,
    /// Highest QoS supported.
    pub maximum_qos: QoS,
    /// Wildcard subscriptions supported.
    pub wildcard_subscriptions: bool,
    /// Shared subscriptions supported.
    pub shared_subscriptions: bool,
    /// Subscription identifiers supported.
    pub subscription_identifiers: bool,
    /// Shared subscription member choice.
    pub shared_strategy: SharedStrategy,
    /// Expiry for 3.1/3.1.1 persistent sessions, seconds (`persistent_client_expiration`);
    /// `None`: never.
    pub persistent_client_expiration: Option<u32>,
    /// Cap on the Session Expiry Interval a client may ask for, seconds.
    pub max_session_expiry: u32,
    /// Close a connection that has not completed CONNECT within this many ms.
    pub connect_timeout_ms: u64,
    /// Accept an empty client identifier (and assign one).
    pub allow_zero_length_clientid: bool,
    /// Prefix of assigned client identifiers.
    pub auto_id_prefix: &'static str,
    /// Longest client identifier accepted, bytes.
    pub max_client_id_len: usize,
    /// Subscriptions per session.
    pub max_subscriptions_per_session: usize,
    /// Retained messages held in all; new topics beyond it are not retained.
    pub max_retained_messages: usize,
    /// Payloads up to this size are copied next to their header in the transmit buffer
    /// (one contiguous write); larger ones are sent as shared segments.
    pub inline_payload_max: usize,
    /// Size of the message arena's chunks.
    pub arena_chunk: usize,
    /// Packets decoded per `handle_bytes` call before yielding to other connections.
    pub max_packets_per_read: usize,
    /// Control packets (acks) waiting to be sent before reading from a connection pauses.
    pub max_pending_control: usize,
    /// Connections allowed on this shard; further accepts are refused.
    pub max_connections: usize,
    /// Sessions (connected or not) allowed on this shard: a CONNECT that would create one
    /// more is refused with 0x97 "Quota exceeded" (3.1.1: 3 "server unavailable"); one
    /// that resumes or replaces a session is not.
    pub max_sessions: usize,
    /// A connected subscriber whose queue stays full without progress this long (ms) is
    /// stalled: with `backpressure` it is disconnected (MQTT 5: 0x97) and treated as
    /// offline from then on; without it, messages waiting for it are dropped. Either way
    /// their publishers are released.
    pub stall_timeout_ms: u64,
    /// QoS 1/2 messages for a connected subscriber whose queue is full: hold the
    /// publisher, or drop.
    #[cfg(feature = "backpressure")]
    pub queue_full: QueueFull,
    /// Input a held publisher may send beyond what is processed (its PUBLISH, SUBSCRIBE
    /// and UNSUBSCRIBE packets set aside, in bytes) while its acknowledgements and PINGREQ
    /// are still served. Beyond it, its input is not read.
    #[cfg(feature = "backpressure")]
    pub max_held_input: usize,
    /// Remote nodes this node may route to (0: not in a cluster). They are shard numbers
    /// after this broker's shards and the cluster link's (see `crate::cluster`).
    #[cfg(feature = "cluster")]
    pub cluster_nodes: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            shard: 0,
            shards: 1,
            hash_seed: 0x5EED_5EED_5EED_5EED,
            max_packet_size: 1024 * 1024,
            receive_maximum: 100,
            max_inflight_messages: 100,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            max_keepalive: 65535,
            topic_alias_maximum: 10,
            retain_available: true,
            maximum_qos: QoS::ExactlyOnce,
            wildcard_subscriptions: true,
            shared_subscriptions: true,
            subscription_identifiers: true,
            shared_strategy: SharedStrategy::RoundRobin,
            persistent_client_expiration: None,
            max_session_expiry: u32::MAX,
            connect_timeout_ms: 10_000,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-",
            max_client_id_len: 65535,
            max_subscriptions_per_session: 10_000,
            max_retained_messages: 1_000_000,
            inline_payload_max: 512,
            arena_chunk: 64 * 1024,
            max_packets_per_read: 64,
            max_pending_control: 256,
            max_connections: 1_000_000,
            max_sessions: usize::MAX,
            stall_timeout_ms: 1_000,
            #[cfg(feature = "backpressure")]
            queue_full: QueueFull::Hold,
            #[cfg(feature = "backpressure")]
            max_held_input: 64 * 1024,
            #[cfg(feature = "cluster")]
            cluster_nodes: 0,
        }
    }
}
