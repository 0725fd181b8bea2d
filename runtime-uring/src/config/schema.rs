//! The configuration's schema: [`BrokerConfig`] and [`ListenerConfig`], their defaults and
//! the key names the file may use.

use std::net::SocketAddr;
use std::path::PathBuf;

/// MQTT's registered port.
pub const DEFAULT_PORT: u16 = 1883;
/// The largest packet MQTT can express: fixed header byte, 4-byte Remaining Length and
/// 268,435,455 bytes.
pub const MQTT_MAX_PACKET_SIZE: u32 = 268_435_460;
/// Mosquitto's default `max_inflight_messages`.
pub const DEFAULT_MAX_INFLIGHT_MESSAGES: u16 = 20;
/// Mosquitto's default `max_queued_messages`.
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1000;
/// Mosquitto's default `autosave_interval`, seconds.
pub const DEFAULT_AUTOSAVE_INTERVAL: u32 = 1800;
/// Default `stall_timeout`, seconds: how long publishers may wait for a subscriber that
/// makes no progress at all before it is disconnected.
pub const DEFAULT_STALL_TIMEOUT: u32 = 30;
/// Name of the persistence database when `persistence_file` is not set. Not
/// `mosquitto.db`: the format is Petrel's own.
pub const DEFAULT_PERSISTENCE_FILE: &str = "petrel.db";

/// The top-level keys.
pub(super) const TOP_KEYS: &[&str] = &[
    "allow_anonymous",
    "password_file",
    "acl_file",
    "max_keepalive",
    "max_packet_size",
    "max_inflight_messages",
    "max_queued_messages",
    "max_queued_bytes",
    "queue_full",
    "stall_timeout",
    "retain_available",
    "persistent_client_expiration",
    "persistence",
    "persistence_location",
    "persistence_file",
    "autosave_interval",
    "durability",
    "memory_limit",
    "queued_messages_in_memory",
    "allow_zero_length_clientid",
    "queue_qos0_messages",
    "max_connections",
    "threads",
    "log_level",
    "log_type",
    "listener",
    "admin",
    "sys_interval",
    "webhook",
    "cluster",
    "bridge",
    "kafka",
];

/// The keys of a `[[listener]]` table.
pub(super) const LISTENER_KEYS: &[&str] = &[
    "bind",
    "port",
    "bind_address",
    "certfile",
    "keyfile",
    "cafile",
    "require_certificate",
    "use_identity_as_username",
    "proxy_protocol",
    "protocol",
];

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerProtocol {
    /// MQTT over TCP (or TLS).
    #[default]
    Mqtt,
    /// MQTT over WebSockets (or secure WebSockets).
    Websockets,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address and port to listen on (`bind`, or `port` with `bind_address`). Port 0
    /// asks the kernel for a free port.
    pub bind: SocketAddr,
    /// Server certificate chain, PEM. Set (with `keyfile`) for TLS.
    pub certfile: Option<PathBuf>,
    /// Server private key, PEM.
    pub keyfile: Option<PathBuf>,
    /// CA certificates that sign client certificates, PEM.
    pub cafile: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by `cafile`.
    pub require_certificate: bool,
    /// The client certificate's subject CN becomes the user name; no password check.
    pub use_identity_as_username: bool,
    /// Connections start with a PROXY protocol (v1 or v2) header giving the real client.
    pub proxy_protocol: bool,
    /// MQTT or WebSockets.
    pub protocol: ListenerProtocol,
}

impl ListenerConfig {
    /// A plain MQTT listener on `bind`.
    pub fn plain(bind: SocketAddr) -> Self {
        Self {
            bind,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            use_identity_as_username: false,
            proxy_protocol: false,
            protocol: ListenerProtocol::Mqtt,
        }
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.certfile.is_some() && self.keyfile.is_some()
    }
}

/// The broker configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Listeners; `PeerInfo::listener` is an index into this list. Without any
    /// `[[listener]]` in the file: `127.0.0.1:1883` and `[::1]:1883` (Mosquitto 2.0's
    /// local-only mode).
    pub listeners: Vec<ListenerConfig>,
    /// Let clients in without a user name. Default: false once the file has a
    /// `[[listener]]`, true in local-only mode (Mosquitto 2.0). Without `password_file`,
    /// a user name alone does not count as authenticated.
    pub allow_anonymous: bool,
    /// Mosquitto password file (`petrel passwd` / `mosquitto_passwd`).
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
    /// Largest keep alive accepted, seconds (10..=65535; default 65535).
    pub max_keepalive: u16,
    /// Largest packet accepted, bytes (20..=268435460). Default: 1 MiB, the core's
    /// default. Mosquitto's default is no limit; a bound is what keeps one client from
    /// making the broker buffer 256 MB.
    pub max_packet_size: u32,
    /// Outgoing QoS 1/2 messages in flight per client; 0 means no limit beyond the
    /// client's Receive Maximum. Default 20 (Mosquitto).
    pub max_inflight_messages: u16,
    /// Messages queued per client beyond those in flight; 0 means no limit. Default 1000.
    pub max_queued_messages: usize,
    /// Bytes queued per client; 0 means no limit (the default).
    pub max_queued_bytes: usize,
    /// QoS 1/2 messages for a connected subscriber whose queue is full: hold the publisher
    /// (the default) or drop them (Mosquitto's behaviour).
    pub queue_full: broker_core::QueueFull,
    /// A subscriber that makes no progress this long, seconds, while publishers wait for
    /// room in its queue is disconnected (default 30).
    pub stall_timeout: u32,
    /// Retained messages supported (default true).
    pub retain_available: bool,
    /// Expiry of disconnected persistent 3.1/3.1.1 sessions, seconds; `None`: never (the
    /// default).
    pub persistent_client_expiration: Option<u32>,
    /// Save sessions and retained messages to disk (default false).
    pub persistence: bool,
    /// Directory of the persistence database, as configured.
    pub persistence_location: Option<PathBuf>,
    /// The persistence database (`persistence_location` joined with `persistence_file`,
    /// default `petrel.db`); `Some` exactly when `persistence` is on.
    pub persistence_file: Option<PathBuf>,
    /// Accepted for Mosquitto files and ignored: the store is written ahead, not saved
    /// (a warning says so when it is set).
    pub autosave_interval: u32,
    /// What an acknowledgement survives with persistence on (default `Process`).
    pub durability: crate::store::Durability,
    /// Broker-wide cap on message memory, bytes; 0: none (Mosquitto's `memory_limit`).
    pub memory_limit: u64,
    /// With persistence: queued messages a persistent session keeps in memory, the rest of
    /// its queue (within `max_queued_messages`) on disk (default 1000).
    pub queued_messages_in_memory: usize,
    /// Accept an empty client identifier and assign one (default true).
    pub allow_zero_length_clientid: bool,
    /// Queue QoS 0 messages for disconnected persistent sessions (default false).
    pub queue_qos0_messages: bool,
    /// Connections allowed in all; `None` (or `-1` in the file): unlimited.
    pub max_connections: Option<usize>,
    /// Broker threads (shards); `None`: one per CPU.
    pub threads: Option<usize>,
    /// Log filter for `tracing` ("off", "error", "warn", "info", "debug", "trace", or
    /// directives like "info,runtime_uring=debug"); `None`: the shell's default.
    pub log_level: Option<String>,
    /// `[admin]`: the HTTP API, Prometheus and the dashboard.
    pub admin: Option<super::ops::AdminConfig>,
    /// Seconds between `$SYS` updates (Mosquitto's key); 0: none.
    pub sys_interval: u32,
    pub webhooks: Vec<super::ops::WebhookConfig>,
    /// `[cluster]`: this node's etcd and NATS.
    pub cluster: Option<super::cluster::ClusterConfig>,
    /// `[[bridge]]`: connections to other brokers.
    pub bridges: Vec<super::bridge::BridgeConfig>,
    /// `[[kafka]]`: MQTT messages to Kafka.
    pub kafka: Vec<super::kafka::KafkaConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::embedded_default()
    }
}

impl BrokerConfig {
    /// The embedded default configuration's text (`petrel broker --print-default-config`).
    pub const DEFAULT_TOML: &'static str = include_str!("../default.toml");

    /// The embedded default: Mosquitto's local-only mode (`127.0.0.1:1883` and `[::1]:1883`,
    /// anonymous clients allowed).
    pub fn embedded_default() -> BrokerConfig {
        match Self::from_str(Self::DEFAULT_TOML, "<embedded default.toml>") {
            Ok(cfg) => cfg,
            // A unit test parses it; reaching this is a build defect, not bad input.
            Err(e) => panic!("the embedded default configuration is invalid:\n{e}"),
        }
    }

    /// The listener a connection came in on (`PeerInfo::listener`).
    pub fn listener(&self, index: u16) -> Option<&ListenerConfig> {
        self.listeners.get(usize::from(index))
    }
}
