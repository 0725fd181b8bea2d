//! The gateway's build-time configuration: the constants `build.rs` generates from
//! `gateway.toml`, the sizes derived from them, and the `broker_core::Config` they give.

use broker_core::Config;
use mqtt_proto::QoS;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/gateway_config.rs"));
}
pub use generated::*;

/// Client id of the bridge's own session inside the local broker. Local clients may not use
/// it (the authenticator refuses it), so nobody can take the bridge's session over.
pub const BRIDGE_CLIENT_ID: &str = "$petrel-bridge";

/// `PeerInfo::listener` of connections accepted on the MQTT port.
pub const LISTENER_TCP: u16 = 0;
/// `PeerInfo::listener` of the bridge's in-memory connection.
pub const LISTENER_BRIDGE: u16 = 1;

/// The largest frame the broker writes to one client: a stored message is at most
/// `MAX_PACKET_SIZE` as received; per delivery it gains at most a Message Expiry Interval
/// (5 bytes), a Subscription Identifier per matching subscription (5 bytes each), a Topic
/// Alias (3 bytes) and longer length fields (3 + 3 bytes).
pub const MAX_FRAME_OUT: usize = MAX_PACKET_SIZE + 32 + 5 * MAX_SUBSCRIPTIONS;

/// Linear buffer the bridge's local client reads broker frames from.
pub const BRIDGE_LOCAL_BUF: usize = 2 * MAX_FRAME_OUT;

/// A connection's output is only produced when this much room is free in its TCP transmit
/// buffer, so that every frame `poll_transmit` hands out fits at once (no partial frame ever
/// waits in a shared buffer).
pub const TX_HEADROOM: usize = MAX_FRAME_OUT;

// Build-time checks of the configuration.
const _: () = assert!(CLIENTS >= 1, "broker.clients must be at least 1");
const _: () = assert!(
    SOCKET_TX > TX_HEADROOM + 64,
    "broker.socket_tx must exceed max_packet_size + 32 + 5 * max_subscriptions + 64"
);
const _: () = assert!(SOCKET_RX >= 64, "broker.socket_rx too small");
const _: () = assert!(MAX_PACKET_SIZE >= 128, "broker.max_packet_size below 128");
const _: () = assert!(
    MAX_SESSIONS > CLIENTS,
    "broker.max_sessions must leave room for the bridge's session"
);
const _: () = assert!(UPLINK_WINDOW >= 1 && UPLINK_WINDOW <= 64);
const _: () = assert!(UPLINK_PROTOCOL == 4 || UPLINK_PROTOCOL == 5);
const _: () = assert!(
    UPLINK_SOCKET_TX > UPLINK_MAX_PACKET_SIZE,
    "uplink.socket_tx must hold a whole packet"
);
const _: () = assert!(
    UPLINK_MAX_PACKET_SIZE >= 128 && UPLINK_MAX_PACKET_SIZE <= MAX_PACKET_SIZE,
    "uplink.max_packet_size must be 128..=broker.max_packet_size (downlink messages are \
     republished locally)"
);
const _: () = assert!(BACKOFF_MIN_MS >= 1 && BACKOFF_MIN_MS <= BACKOFF_MAX_MS);

/// The broker shard's configuration: every memory bound of `broker_core` set from
/// `gateway.toml`, so that the worst case is bounded (see `guard` for the heap gates that
/// keep it inside the arena).
pub fn broker_config(hash_seed: u64) -> Config {
    Config {
        shard: 0,
        shards: 1,
        hash_seed,
        max_packet_size: MAX_PACKET_SIZE as u32,
        receive_maximum: MAX_INFLIGHT,
        max_inflight_messages: MAX_INFLIGHT,
        max_queued_messages: MAX_QUEUED_MESSAGES,
        max_queued_bytes: MAX_QUEUED_BYTES,
        queue_qos0_messages: false,
        max_keepalive: u16::MAX,
        // Alias tables cost memory per connection; small devices rarely use them.
        topic_alias_maximum: 0,
        retain_available: true,
        maximum_qos: QoS::ExactlyOnce,
        wildcard_subscriptions: true,
        shared_subscriptions: true,
        subscription_identifiers: true,
        shared_strategy: broker_core::SharedStrategy::RoundRobin,
        persistent_client_expiration: Some(MAX_SESSION_EXPIRY),
        max_session_expiry: MAX_SESSION_EXPIRY,
        connect_timeout_ms: 5_000,
        allow_zero_length_clientid: true,
        auto_id_prefix: "gw-",
        max_client_id_len: MAX_CLIENT_ID_LEN,
        max_subscriptions_per_session: MAX_SUBSCRIPTIONS,
        max_retained_messages: MAX_RETAINED,
        // Everything is copied into the socket's ring anyway: small inline copies keep the
        // shared transmit buffer's header area small.
        inline_payload_max: 64,
        // Messages are cut from small chunks, so one long-lived message never pins much
        // more than itself.
        arena_chunk: 64,
        max_packets_per_read: 8,
        max_pending_control: 16,
        // The clients plus the bridge's in-memory connection.
        max_connections: CLIENTS + 1,
        // The bridge's session counts: it is created first, at start.
        max_sessions: MAX_SESSIONS,
        // Anything added to the core later keeps its default until it is sized here.
        ..Config::default()
    }
}
