//! What the client is configured with and what it reports.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use mqtt_proto::{ProtocolVersion, QoS, ReasonCode};

/// A will for the client's CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientWill {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS.
    pub qos: QoS,
    /// Retain.
    pub retain: bool,
    /// Will Delay Interval (MQTT 5).
    pub delay: u32,
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Client identifier (may be empty with clean start: the broker assigns one).
    pub client_id: String,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Keep alive, seconds (0: none).
    pub keep_alive: u16,
    /// Clean Start / Clean Session.
    pub clean_start: bool,
    /// Session Expiry Interval (MQTT 5); ignored for 3.1.1 (persistence follows clean).
    pub session_expiry: u32,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Vec<u8>>,
    /// Will.
    pub will: Option<ClientWill>,
    /// Receive Maximum announced to the broker.
    pub receive_maximum: u16,
    /// Maximum Packet Size announced to the broker.
    pub maximum_packet_size: Option<u32>,
    /// Topic Alias Maximum announced to the broker (aliases it may use towards us).
    pub topic_alias_maximum: u16,
    /// Messages kept for sending while disconnected or while the window is full.
    pub max_queued: usize,
    /// MQTT 5 enhanced authentication method and initial data.
    pub auth: Option<(String, Vec<u8>)>,
    /// Let the application acknowledge QoS 1/2 messages (`ack`), instead of on receipt.
    pub manual_ack: bool,
    /// MQTT 3.1/3.1.1: set the bridge bit (0x80) in the protocol level, so that a broker that
    /// knows it (Mosquitto's `try_private`) treats the subscriptions as no-local.
    #[cfg(feature = "bridge")]
    pub bridge: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            version: ProtocolVersion::V3_1_1,
            keep_alive: 60,
            clean_start: true,
            session_expiry: 0,
            username: None,
            password: None,
            will: None,
            receive_maximum: 65535,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            max_queued: 10_000,
            auth: None,
            manual_ack: false,
            #[cfg(feature = "bridge")]
            bridge: false,
        }
    }
}

/// A message received from the broker (owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Topic (resolved from a topic alias if one was used).
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// DUP flag.
    pub dup: bool,
    /// Packet identifier to pass to `ack` with `manual_ack` (QoS > 0).
    pub packet_id: Option<u16>,
    /// User properties in order.
    pub user_properties: Vec<(String, String)>,
    /// Content Type.
    pub content_type: Option<String>,
    /// Response Topic.
    pub response_topic: Option<String>,
    /// Correlation Data.
    pub correlation_data: Option<Vec<u8>>,
    /// Payload Format Indicator.
    pub payload_format_utf8: Option<bool>,
    /// Subscription identifiers.
    pub subscription_ids: Vec<u32>,
    /// Remaining Message Expiry Interval.
    pub message_expiry: Option<u32>,
}

/// Why a request was refused by the client itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The offline/window queue is full (`max_queued`).
    QueueFull,
    /// QoS above the broker's Maximum QoS, retain where unsupported, or a bad topic.
    NotSupported(&'static str),
    /// The packet could not be encoded (too large, invalid topic).
    Invalid(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull => f.write_str("message queue full while disconnected"),
            Self::NotSupported(w) => write!(f, "not supported by the broker: {w}"),
            Self::Invalid(w) => write!(f, "invalid request: {w}"),
        }
    }
}

impl core::error::Error for ClientError {}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// CONNACK with success.
    Connected {
        /// Session Present.
        session_present: bool,
        /// Client identifier the broker assigned, if any.
        assigned_client_id: Option<String>,
    },
    /// CONNACK refused the connection.
    ConnectRefused(ReasonCode),
    /// A message arrived.
    Message(Received),
    /// A QoS 1/2 publish was acknowledged (PUBACK / PUBCOMP), or a QoS 0 one written.
    Published {
        /// The token `publish` returned.
        token: u64,
        /// Reason code (MQTT 5; Success in 3.1.1).
        reason: ReasonCode,
    },
    /// SUBACK: one code per filter.
    Subscribed {
        /// The token `subscribe` returned.
        token: u64,
        /// Codes.
        codes: Vec<ReasonCode>,
    },
    /// UNSUBACK.
    Unsubscribed {
        /// The token `unsubscribe` returned.
        token: u64,
    },
    /// The broker sent DISCONNECT (MQTT 5) with this reason.
    ServerDisconnect(ReasonCode),
    /// Enhanced authentication: the broker sent AUTH; answer with `auth_continue`.
    AuthChallenge {
        /// Method.
        method: String,
        /// Data.
        data: Vec<u8>,
    },
    /// The connection must be closed by the shell: keep alive expired, protocol error
    /// from the broker, or after our DISCONNECT.
    CloseConnection,
}
