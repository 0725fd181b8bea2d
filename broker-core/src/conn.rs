//! Per-connection state: what lives only as long as one network connection.

use crate::index::Hasher64;
use crate::message::Message;
use crate::policy::PeerInfo;
use crate::slab::Key;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;
use mqtt_proto::{PacketId, PacketType, ProtocolVersion, ReasonCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Waiting for CONNECT.
    AwaitConnect,
    /// CONNECT received, enhanced authentication exchange in progress.
    Authenticating,
    /// CONNACK sent.
    Connected,
    /// Closing: only the final frames remain to be written.
    Closing,
}

/// A control packet waiting to be written.
#[derive(Debug)]
pub(crate) enum Ctrl {
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    Ack {
        kind: PacketType,
        pid: PacketId,
        code: ReasonCode,
    },
    PingResp,
    /// A packet encoded when it was queued (CONNACK, SUBACK, UNSUBACK, AUTH).
    Raw(Vec<u8>),
    /// The last packet of the connection (MQTT 5).
    Disconnect(ReasonCode),
}

/// The CONNECT parameters kept while authentication completes.
#[derive(Debug)]
pub(crate) struct ConnectParams {
    pub client_id: Box<str>,
    pub assigned: bool,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub session_expiry: u32,
    pub receive_maximum: u16,
    pub max_packet_size: u32,
    pub topic_alias_maximum: u16,
    pub request_problem_info: bool,
    pub username: Option<Box<str>>,
    pub will: Option<WillSpec>,
    pub auth_method: Option<Box<str>>,
    pub server_keep_alive: Option<u16>,
    pub session_expiry_capped: bool,
    /// Another broker's bridge (`Connect::bridge`).
    pub bridge: bool,
    /// MQTT 5 CONNECT user properties (for operators' hooks).
    #[cfg(feature = "ops")]
    pub user_properties: Vec<(Box<str>, Box<str>)>,
}

/// A will as CONNECT gave it: the message (with its own allocation), the Will Delay
/// Interval and the Message Expiry Interval that starts when it is published.
#[derive(Debug, Clone)]
pub(crate) struct WillSpec {
    pub msg: Message,
    pub delay: u32,
    pub expiry: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub state: ConnState,
    pub version: ProtocolVersion,
    pub peer: PeerInfo,
    pub session: Option<Key>,
    /// 1.5 times the keep alive (at most 98,302,500 ms: a u32 keeps `Conn` small).
    pub keep_alive_ms: u32,
    pub last_rx: Instant,
    /// The client's Maximum Packet Size.
    pub max_packet_out: u32,
    /// Outgoing QoS 1/2 window: min(client Receive Maximum, max_inflight_messages).
    pub window: u16,
    pub alias_out_max: u16,
    /// Will, authentication method and topic alias tables: allocated only for a
    /// connection that has one of them (an idle plain connection stays small).
    pub rare: Option<Box<ConnRare>>,
    pub ctrl: crate::session::LazyDeque<Ctrl>,
    pub output_flagged: bool,
    /// CONNECT waiting for enhanced authentication to finish.
    pub pending: Option<Box<ConnectParams>>,
    pub reauthenticating: bool,
    pub problem_info: bool,
    /// Another broker's bridge: its subscriptions are no-local and retain as published.
    pub bridge: bool,
    /// A bridge the shell opened itself (`Broker::mark_bridge`), trusted: no stall
    /// timeout, the window it announces. Never from a CONNECT, which any client could send.
    #[cfg(feature = "bridge")]
    pub own_bridge: bool,
    /// QoS 1 acknowledgements held back by flow control (they count towards the Receive
    /// Maximum, [MQTT-3.3.4-7]).
    pub delayed_acks: u16,
    /// Acknowledgements of this connection's messages that wait for room in a full queue
    /// (here or on another shard). While any does, its PUBLISH packets are set aside.
    #[cfg(feature = "backpressure")]
    pub held: u16,
    /// Set once DISCONNECT (either way) or a refusal decided the reason.
    pub close_reason: Option<ReasonCode>,
}

/// The rarely used parts of a [`Conn`], boxed together.
#[derive(Debug)]
pub(crate) struct ConnRare {
    /// Will message, until the connection ends.
    pub will: Option<WillSpec>,
    pub auth_method: Option<Box<str>>,
    pub alias_in: Vec<String>,
    pub alias_out: HashMap<Box<str>, u16, Hasher64>,
    /// Input set aside while the connection is held (whole packets, in order).
    #[cfg(feature = "backpressure")]
    pub held_input: Vec<u8>,
    /// QoS 1/2 PUBLISH packets in `held_input`: they count against Receive Maximum.
    #[cfg(feature = "backpressure")]
    pub held_qos: u16,
    /// The shell refuses this connection's CONNECT with this code (`Broker::deny_connect`).
    #[cfg(feature = "cluster")]
    pub denied: Option<mqtt_proto::ReasonCode>,
}

impl ConnRare {
    pub(crate) fn new(seed: u64) -> Box<Self> {
        Box::new(Self {
            will: None,
            auth_method: None,
            alias_in: Vec::new(),
            alias_out: HashMap::with_hasher(Hasher64::with_seed(seed)),
            #[cfg(feature = "backpressure")]
            held_input: Vec::new(),
            #[cfg(feature = "backpressure")]
            held_qos: 0,
            #[cfg(feature = "cluster")]
            denied: None,
        })
    }
}

impl Conn {
    /// The rarely used parts, allocated on first use.
    pub(crate) fn rare(&mut self, seed: u64) -> &mut ConnRare {
        self.rare.get_or_insert_with(|| ConnRare::new(seed))
    }

    /// Whether input was set aside while the connection was held.
    #[cfg(feature = "backpressure")]
    pub(crate) fn has_held_input(&self) -> bool {
        self.rare
            .as_deref()
            .is_some_and(|r| !r.held_input.is_empty())
    }

    /// Drops the will (kept in the box, if any).
    pub(crate) fn clear_will(&mut self) {
        if let Some(r) = self.rare.as_deref_mut() {
            r.will = None;
        }
    }

    pub(crate) fn new(now: Instant, peer: PeerInfo) -> Self {
        Self {
            state: ConnState::AwaitConnect,
            version: ProtocolVersion::V3_1_1,
            peer,
            session: None,
            keep_alive_ms: 0,
            last_rx: now,
            max_packet_out: u32::MAX,
            window: 1,
            alias_out_max: 0,
            rare: None,
            ctrl: crate::session::LazyDeque::new(),
            output_flagged: false,
            pending: None,
            reauthenticating: false,
            problem_info: true,
            bridge: false,
            #[cfg(feature = "bridge")]
            own_bridge: false,
            close_reason: None,
            delayed_acks: 0,
            #[cfg(feature = "backpressure")]
            held: 0,
        }
    }
}
