//! The operator's view of a shard and what an operator may do (feature `ops`): list
//! clients, their subscriptions and the topic filters in use; kick a client; subscribe or
//! unsubscribe on a client's behalf; publish as the broker. The shell's admin API and its
//! embedding handle are thin layers over these, so that every rule stays here.

use super::Broker;
use crate::session::SubRecord;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddr;
use mqtt_proto::{Properties, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

/// Counters only operators read (per shard; a shell sums them when asked).
#[derive(Debug, Default, Clone)]
pub struct OpsCounters {
    /// Packets received, by MQTT control packet type (the first byte's high nibble).
    pub packets_received: [u64; 16],
    /// Application messages accepted from clients, by QoS.
    pub messages_received: [u64; 3],
    /// Application messages written to clients, by delivery QoS.
    pub messages_sent: [u64; 3],
    /// Successful CONNACKs.
    pub client_connected: u64,
    /// Connections of a session that ended, by [`DisconnectReason`] (in `ALL` order).
    pub client_disconnected: [u64; DisconnectReason::ALL.len()],
    /// Sessions created by a CONNECT.
    pub session_created: u64,
    /// Sessions resumed by a CONNECT.
    pub session_resumed: u64,
    /// Connections closed because a new one took their client identifier over.
    pub session_takenover: u64,
    /// Sessions that ended (discarded, expired or taken over by a clean start).
    pub session_terminated: u64,
    /// Messages published by an operator (or the broker's `$SYS` tree).
    pub messages_published_by_broker: u64,
}

impl OpsCounters {
    #[inline]
    pub(crate) fn count_packet(&mut self, first_byte: u8) {
        if let Some(n) = self.packets_received.get_mut(usize::from(first_byte >> 4)) {
            *n += 1;
        }
    }
}

/// Why a client's connection ended, as operators group it (EMQX's reason names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT 0x00 or 0x04.
    Normal,
    /// An operator kicked it (DISCONNECT 0x98).
    Kicked,
    /// Another connection took its client identifier (0x8E).
    TakenOver,
    /// Nothing arrived within 1.5 times the keep alive (0x8D).
    KeepaliveTimeout,
    /// The broker shut down (0x8B).
    Shutdown,
    /// It read nothing while publishers waited for room in its queue (0x97).
    Stalled,
    /// The network connection closed without a DISCONNECT.
    Closed,
    /// A protocol error or another reason code.
    Error,
}

impl DisconnectReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 8] = [
        Self::Normal,
        Self::Kicked,
        Self::TakenOver,
        Self::KeepaliveTimeout,
        Self::Shutdown,
        Self::Stalled,
        Self::Closed,
        Self::Error,
    ];

    /// The reason for a close with this DISCONNECT reason code (`None`: no DISCONNECT).
    pub fn of(code: Option<ReasonCode>) -> Self {
        match code {
            None => Self::Closed,
            Some(ReasonCode::Success | ReasonCode::DisconnectWithWillMessage) => Self::Normal,
            Some(ReasonCode::AdministrativeAction) => Self::Kicked,
            Some(ReasonCode::SessionTakenOver) => Self::TakenOver,
            Some(ReasonCode::KeepAliveTimeout) => Self::KeepaliveTimeout,
            Some(ReasonCode::ServerShuttingDown) => Self::Shutdown,
            Some(ReasonCode::QuotaExceeded) => Self::Stalled,
            Some(_) => Self::Error,
        }
    }

    /// EMQX's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Kicked => "kicked",
            Self::TakenOver => "takenover",
            Self::KeepaliveTimeout => "keepalive_timeout",
            Self::Shutdown => "server_shutdown",
            Self::Stalled => "stalled",
            Self::Closed => "tcp_closed",
            Self::Error => "protocol_error",
        }
    }
}

/// One session as an operator sees it.
#[derive(Debug, Clone)]
pub struct ClientSummary {
    /// Client identifier.
    pub client_id: Box<str>,
    /// User name of the current or last connection.
    pub username: Option<Box<str>>,
    /// Connected now.
    pub connected: bool,
    /// Remote address of the connection.
    pub peer: Option<SocketAddr>,
    /// Listener index of the connection.
    pub listener: u16,
    /// Protocol version of the current or last connection.
    pub protocol: ProtocolVersion,
    /// Keep Alive in force, seconds (connected only; the server's when it set one).
    pub keep_alive: u16,
    /// Clean Start of the current or last connection.
    pub clean_start: bool,
    /// Session Expiry Interval, seconds.
    pub expiry_interval: u32,
    /// When the current or last connection's CONNECT succeeded.
    pub connected_at: Option<Instant>,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Messages waiting (in memory and on disk), not yet in flight.
    pub queued: usize,
    /// Messages in flight.
    pub inflight: usize,
}

/// One subscription as an operator sees it.
#[derive(Debug, Clone)]
pub struct SubscriptionSummary {
    /// Client identifier.
    pub client_id: Box<str>,
    /// The filter as the client sent it (with `$share/{group}/` for a shared one).
    pub filter: Box<str>,
    /// The shared subscription group, if any.
    pub share_group: Option<Box<str>>,
    /// Its options (the granted QoS among them).
    pub options: SubscriptionOptions,
}

impl Broker {
    /// Every session on this shard, connected or not.
    pub fn clients(&self) -> Vec<ClientSummary> {
        self.sessions
            .iter()
            .filter_map(|(sk, _)| self.summary(sk))
            .collect()
    }

    /// Sessions with a connection now.
    pub fn connected_count(&self) -> usize {
        self.sessions
            .iter()
            .filter(|(_, s)| s.conn.is_some())
            .count()
    }

    /// One client's session.
    pub fn client(&self, client_id: &str) -> Option<ClientSummary> {
        self.summary(self.by_id.get(&self.sessions, client_id)?)
    }

    fn summary(&self, sk: crate::slab::Key) -> Option<ClientSummary> {
        let s = self.sessions.get(sk)?;
        let c = s.conn.and_then(|k| self.conns.get(k));
        Some(ClientSummary {
            client_id: s.client_id.clone(),
            username: s.username.clone(),
            connected: c.is_some(),
            peer: c.and_then(|c| c.peer.addr),
            listener: c.map_or(0, |c| c.peer.listener),
            protocol: s.protocol,
            // Conn keeps 1.5 times the keep alive, in milliseconds.
            keep_alive: c.map_or(0, |c| {
                u16::try_from(c.keep_alive_ms / 1500).unwrap_or(u16::MAX)
            }),
            clean_start: s.clean_start,
            expiry_interval: s.expiry_interval,
            // Zero: restored from the store, not connected since the start.
            connected_at: (c.is_some() || s.connected_at.as_millis() > 0).then_some(s.connected_at),
            subscriptions: s.subs.len(),
            queued: s.queue.len() + s.backlog.len() + s.overflow.len() + self.spilled(sk),
            inflight: s.inflight.len(),
        })
    }

    /// Subscriptions on this shard: one client's (`Some`), or everyone's.
    pub fn subscriptions(&self, client_id: Option<&str>) -> Vec<SubscriptionSummary> {
        let mut out = Vec::new();
        let one = client_id.map(|id| self.by_id.get(&self.sessions, id));
        for (sk, s) in self.sessions.iter() {
            if one.is_some_and(|k| k != Some(sk)) {
                continue;
            }
            for (filter, rec) in s.subs.iter() {
                out.push(SubscriptionSummary {
                    client_id: s.client_id.clone(),
                    filter: filter.into(),
                    share_group: rec.group.as_ref().map(|g| g.group.clone()),
                    options: rec.options,
                });
            }
        }
        out
    }

    /// The topic filters this shard routes to (its local subscribers and shared groups).
    pub fn topic_filters(&self) -> Vec<Box<str>> {
        let mut out = Vec::new();
        self.index.for_each_filter(|f, _| out.push(f.into()));
        out
    }

    /// Subscriptions of this shard's sessions: (all, shared ones).
    pub fn subscription_counts(&self) -> (usize, usize) {
        let mut all = 0;
        let mut shared = 0;
        for (_, s) in self.sessions.iter() {
            all += s.subs.len();
            shared += s.subs.iter().filter(|(_, r)| r.group.is_some()).count();
        }
        (all, shared)
    }

    /// Disconnects a client (MQTT 5: DISCONNECT 0x98 Administrative action) and discards
    /// its session, as EMQX's kick does. Its will is published as for any close that is
    /// not a normal DISCONNECT ([MQTT-3.1.2-8] v5). False if there is no such session.
    pub fn kick(&mut self, now: Instant, client_id: &str) -> bool {
        self.kick_for(now, client_id, ReasonCode::AdministrativeAction)
    }

    /// [`Broker::kick`] with another reason: 0x8E Session taken over when a client
    /// connected to another node of a cluster.
    pub fn kick_for(&mut self, now: Instant, client_id: &str, reason: ReasonCode) -> bool {
        let Some(sk) = self.by_id.get(&self.sessions, client_id) else {
            return false;
        };
        if let Some(conn) = self.sessions.get(sk).and_then(|s| s.conn) {
            self.close(conn, now, Some(reason));
        }
        // Detaching may have ended it already (Session Expiry Interval 0).
        if self.sessions.get(sk).is_some() {
            self.end_session(sk, now, crate::policy::SessionEnd::Discarded);
        }
        true
    }

    /// Closes every connection (MQTT 5: DISCONNECT `reason`); sessions stay as after any
    /// close. A cluster node that lost its membership lease does this (0x8B). Returns how
    /// many were closed.
    pub fn disconnect_all(&mut self, now: Instant, reason: ReasonCode) -> usize {
        let conns: Vec<crate::policy::ConnId> = self.conns.keys().collect();
        for &c in &conns {
            self.close(c, now, Some(reason));
        }
        conns.len()
    }

    /// Subscribes a client's session (connected or not) as if it had sent SUBSCRIBE with
    /// this one filter: the same authorization, hooks, limits and retained messages.
    /// Returns the SUBACK reason code (a granted QoS or a refusal); `None` if there is no
    /// such session.
    pub fn subscribe_client(
        &mut self,
        now: Instant,
        client_id: &str,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Option<ReasonCode> {
        let sk = self.by_id.get(&self.sessions, client_id)?;
        let conn = self.sessions.get(sk)?.conn;
        let mut retained = Vec::new();
        let code = match self.subscribe_one(now, sk, conn, filter, options, None, &mut retained) {
            Ok(code) => code,
            // What would close a client's connection is refused alone here.
            Err(super::subscribe::Fatal(code)) => code,
        };
        if code.is_error() {
            return Some(code);
        }
        if self.session_stored(sk) {
            let rec: Option<SubRecord> = self
                .sessions
                .get(sk)
                .and_then(|s| s.subs.get(filter))
                .cloned();
            self.store_sub(sk, None, filter, rec.as_ref());
        }
        self.take_backlog(sk, retained);
        if let Some(conn) = conn {
            self.wake(conn);
        }
        Some(code)
    }

    /// Removes one subscription of a client's session. `Some(false)`: it had no such
    /// subscription; `None`: no such session.
    pub fn unsubscribe_client(&mut self, client_id: &str, filter: &str) -> Option<bool> {
        let sk = self.by_id.get(&self.sessions, client_id)?;
        let Self {
            sessions,
            conns,
            policy,
            ..
        } = self;
        let s = sessions.get_mut(sk)?;
        let peer = s.conn.and_then(|k| conns.get(k)).map(|c| &c.peer);
        policy
            .hooks
            .on_unsubscribe(&Self::client_info(s, peer), filter);
        let Some((text, rec)) = s.subs.remove_entry(filter) else {
            return Some(false);
        };
        policy
            .hooks
            .on_unsubscribed(&Self::client_info(s, peer), filter);
        self.remove_subscription(sk, &text, &rec);
        self.store_sub(sk, None, &text, None);
        Some(true)
    }

    /// Publishes a message as the broker (origin 0: no session's No Local excludes it),
    /// to every shard's subscribers, retained if asked. The topic must be a valid topic
    /// name and `props` valid in a PUBLISH; its Message Expiry Interval starts now.
    /// Returns whether anyone was subscribed (here, or any other shard with interest), or
    /// `Err` for an invalid topic or properties.
    pub fn publish_as_broker(
        &mut self,
        now: Instant,
        topic: &str,
        props: &Properties<'_>,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<bool, ReasonCode> {
        if mqtt_proto::topic::validate_name(topic).is_err() || topic.is_empty() {
            return Err(ReasonCode::TopicNameInvalid);
        }
        let expires_at = props
            .message_expiry_interval
            .map(|s| now.plus_secs(u64::from(s)));
        let msg = self
            .arena
            .store_parts(crate::message::MessageParts {
                topic,
                props,
                payload,
                qos: qos.min(self.cfg.maximum_qos),
                retain: retain && self.cfg.retain_available,
                expires_at,
                origin: 0,
            })
            .ok_or(ReasonCode::MalformedPacket)?;
        self.metrics.ops.messages_published_by_broker += 1;
        Ok(self.publish_message(now, &msg, 0))
    }
}
