//! CONNECT, enhanced authentication (AUTH), takeover, session attach and detach, and
//! closing connections (3.1, 3.2, 3.14, 3.15, 4.1, 4.12, 4.13).

use super::{Broker, Event, Timer};
use crate::conn::{ConnState, ConnectParams, Ctrl, WillSpec};
use crate::message::MessageParts;
use crate::policy::{AuthStep, ConnId, ConnectRequest, DropReason, SessionEnd};
use crate::session::{PendingWill, Session, SubRecord};
use crate::shard::owner_of_client;
use crate::slab::Key;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::vec::Vec;
use mqtt_proto::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
};

/// Encodes a packet the broker sends into a fresh vector (for infrequent packets).
pub(crate) fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(n) = p.encoded_len(v) {
        out.reserve_exact(n);
        if p.emit_buf(v, &mut out).is_err() {
            out.clear();
        }
    }
    out
}

/// The properties of a PUBLISH (or will) that travel with the message to subscribers.
pub(crate) fn forwarded<'a>(p: &Properties<'a>) -> Properties<'a> {
    Properties {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        ..Properties::default()
    }
}

impl Broker {
    fn assign_client_id(&mut self) -> Box<str> {
        loop {
            self.auto_id = self.auto_id.wrapping_add(1);
            let id = alloc::format!(
                "{}{}-{}",
                self.cfg.auto_id_prefix,
                self.cfg.shard,
                self.auto_id
            );
            // The id must belong to this shard so the session lives here.
            if owner_of_client(&id, self.cfg.shards) == self.cfg.shard
                && !self.by_id.contains(&self.sessions, &id)
            {
                return id.into_boxed_str();
            }
        }
    }

    pub(crate) fn handle_connect(&mut self, conn: ConnId, now: Instant, c: &Connect<'_>) {
        let v = c.protocol;
        if let Some(cn) = self.conns.get_mut(conn) {
            cn.version = v;
        }
        let refuse = |b: &mut Self, code| b.refuse_connect(conn, now, v, code);
        #[cfg(feature = "cluster")]
        if let Some(code) = self
            .conns
            .get(conn)
            .and_then(|c| c.rare.as_deref())
            .and_then(|r| r.denied)
        {
            return refuse(self, code);
        }
        let mut assigned = false;
        let client_id: Box<str> = if c.client_id.is_empty() {
            // [MQTT-3.1.3-8] 3.1.1: a zero-length id needs Clean Session; 3.1 ids are 1 to 23
            // characters; 5.0 assigns one ([MQTT-3.1.3-6]).
            if v == ProtocolVersion::V3_1
                || (v == ProtocolVersion::V3_1_1 && !c.clean_start)
                || !self.cfg.allow_zero_length_clientid
            {
                return refuse(self, ReasonCode::ClientIdentifierNotValid);
            }
            assigned = true;
            self.assign_client_id()
        } else {
            let too_long = c.client_id.len() > self.cfg.max_client_id_len
                || (v == ProtocolVersion::V3_1 && c.client_id.chars().count() > 23);
            if too_long {
                return refuse(self, ReasonCode::ClientIdentifierNotValid);
            }
            c.client_id.into()
        };

        // Checked before authentication (cheap to refuse). A session created by a pending
        // enhanced-authentication exchange can take the place meanwhile and exceed the
        // limit by the number of such exchanges; no shell sets both today.
        if self.sessions.len() >= self.cfg.max_sessions
            && !self.by_id.contains(&self.sessions, &client_id)
        {
            return refuse(self, ReasonCode::QuotaExceeded);
        }

        // Keep alive: MQTT 5 clients are told the server's value ([MQTT-3.2.2-21]); older
        // clients asking for more than the maximum are refused, as Mosquitto does.
        let max_ka = self.cfg.max_keepalive;
        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        if max_ka < u16::MAX && (keep_alive == 0 || keep_alive > max_ka) {
            if v.is_v5() {
                keep_alive = max_ka;
                server_keep_alive = Some(max_ka);
            } else if keep_alive > max_ka {
                return refuse(self, ReasonCode::ClientIdentifierNotValid);
            }
        }

        let will = match &c.will {
            None => None,
            Some(w) => {
                // [MQTT-3.2.2-12] [MQTT-3.2.2-13]: a will beyond what the server supports.
                if w.qos > self.cfg.maximum_qos {
                    return refuse(self, ReasonCode::QoSNotSupported);
                }
                if w.retain && !self.cfg.retain_available {
                    return refuse(self, ReasonCode::RetainNotSupported);
                }
                let Some(msg) = self.arena.store_parts(MessageParts {
                    topic: w.topic,
                    props: &forwarded(&w.properties),
                    payload: w.payload,
                    qos: w.qos,
                    retain: w.retain,
                    expires_at: None,
                    origin: 0,
                }) else {
                    return refuse(self, ReasonCode::TopicNameInvalid);
                };
                Some(WillSpec {
                    msg: msg.detached(),
                    delay: w.properties.will_delay_interval.unwrap_or(0),
                    expiry: w.properties.message_expiry_interval,
                })
            }
        };

        let p = &c.properties;
        let requested_expiry = if v.is_v5() {
            p.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            self.cfg.persistent_client_expiration.unwrap_or(u32::MAX)
        };
        let session_expiry = requested_expiry.min(self.cfg.max_session_expiry);
        // A stored session's records are keyed by its identifier, with room for a topic
        // filter behind it (see `store`): a longer one cannot be kept.
        #[cfg(feature = "store")]
        if self.store.is_some()
            && session_expiry > 0
            && client_id.len() > crate::store::MAX_STORED_CLIENT_ID
        {
            return refuse(self, ReasonCode::ClientIdentifierNotValid);
        }
        let mut params = ConnectParams {
            client_id,
            assigned,
            clean_start: c.clean_start,
            keep_alive,
            session_expiry,
            receive_maximum: p.receive_maximum.unwrap_or(u16::MAX),
            max_packet_size: p.maximum_packet_size.unwrap_or(u32::MAX),
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            request_problem_info: p.request_problem_information.unwrap_or(true),
            username: c.username.map(Into::into),
            will,
            auth_method: p.authentication_method.map(Into::into),
            server_keep_alive,
            session_expiry_capped: v.is_v5() && session_expiry != requested_expiry,
            bridge: c.bridge,
            #[cfg(feature = "ops")]
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (Box::from(k), Box::from(v)))
                .collect(),
        };

        let Some(cn) = self.conns.get(conn) else {
            return;
        };
        let req = ConnectRequest {
            conn,
            client_id: &params.client_id,
            username: c.username,
            password: c.password,
            peer: &cn.peer,
            protocol: v,
        };
        if let Some(method) = p.authentication_method {
            let step =
                self.policy
                    .authenticator
                    .auth_start(&req, method, p.authentication_data, false);
            self.policy.hooks.on_enhanced_auth(&req, method, &step);
            match step {
                AuthStep::Success(data) => self.finish_connect(conn, now, params, data),
                AuthStep::Continue(data) => {
                    let frame = auth_frame(ReasonCode::ContinueAuthentication, method, &data);
                    if let Some(cn) = self.conns.get_mut(conn) {
                        cn.state = ConnState::Authenticating;
                        cn.pending = Some(Box::new(params));
                    }
                    self.push_ctrl(conn, Ctrl::Raw(frame));
                }
                AuthStep::Fail(code) => refuse(self, code),
            }
        } else {
            let result = self.policy.authenticator.authenticate(&req);
            self.policy
                .hooks
                .on_basic_auth(&req, result.as_ref().map(|_| ()).map_err(|e| *e));
            match result {
                Ok(name) => {
                    if name.is_some() {
                        params.username = name;
                    }
                    self.finish_connect(conn, now, params, None)
                }
                Err(code) => refuse(self, code),
            }
        }
    }

    pub(crate) fn handle_auth(&mut self, conn: ConnId, now: Instant, a: &Auth<'_>) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let expected = c
            .pending
            .as_ref()
            .and_then(|p| p.auth_method.clone())
            .or_else(|| c.rare.as_ref().and_then(|r| r.auth_method.clone()));
        let method = a.properties.authentication_method;
        // [MQTT-4.12.0-5] v5: AUTH must carry the method of the exchange in progress, and
        // only a client that used enhanced authentication may send AUTH at all.
        let Some(expected) = expected.filter(|m| Some(&**m) == method) else {
            return self.protocol_error(conn, now, ReasonCode::ProtocolError);
        };
        let data = a.properties.authentication_data;
        match (c.state, a.reason_code) {
            (ConnState::Authenticating, ReasonCode::ContinueAuthentication) => {
                let step = self
                    .policy
                    .authenticator
                    .auth_continue(conn, &expected, data);
                match step {
                    AuthStep::Success(d) => {
                        let Some(params) = self.conns.get_mut(conn).and_then(|c| c.pending.take())
                        else {
                            return;
                        };
                        self.finish_connect(conn, now, *params, d);
                    }
                    AuthStep::Continue(d) => {
                        let frame = auth_frame(ReasonCode::ContinueAuthentication, &expected, &d);
                        self.push_ctrl(conn, Ctrl::Raw(frame));
                    }
                    AuthStep::Fail(code) => {
                        let v = c.version;
                        self.refuse_connect(conn, now, v, code)
                    }
                }
            }
            (ConnState::Connected, ReasonCode::ReAuthenticate)
            | (ConnState::Connected, ReasonCode::ContinueAuthentication) => {
                let reauth_start = a.reason_code == ReasonCode::ReAuthenticate;
                if !reauth_start && !c.reauthenticating {
                    return self.protocol_error(conn, now, ReasonCode::ProtocolError);
                }
                let step = if reauth_start {
                    let Some(s) = c.session.and_then(|k| self.sessions.get(k)) else {
                        return;
                    };
                    let req = ConnectRequest {
                        conn,
                        client_id: &s.client_id,
                        username: s.username.as_deref(),
                        password: None,
                        peer: &c.peer,
                        protocol: c.version,
                    };
                    self.policy
                        .authenticator
                        .auth_start(&req, &expected, data, true)
                } else {
                    self.policy
                        .authenticator
                        .auth_continue(conn, &expected, data)
                };
                if let Some(s) = c.session.and_then(|k| self.sessions.get(k)) {
                    let info = Self::client_info(s, Some(&c.peer));
                    self.policy.hooks.on_reauth(&info, &expected, &step);
                }
                match step {
                    AuthStep::Success(d) => {
                        if let Some(c) = self.conns.get_mut(conn) {
                            c.reauthenticating = false;
                        }
                        let frame =
                            auth_frame(ReasonCode::Success, &expected, &d.unwrap_or_default());
                        self.push_ctrl(conn, Ctrl::Raw(frame));
                    }
                    AuthStep::Continue(d) => {
                        if let Some(c) = self.conns.get_mut(conn) {
                            c.reauthenticating = true;
                        }
                        let frame = auth_frame(ReasonCode::ContinueAuthentication, &expected, &d);
                        self.push_ctrl(conn, Ctrl::Raw(frame));
                    }
                    // [MQTT-4.12.1-2] a failed re-authentication closes the connection.
                    AuthStep::Fail(code) => self.close(conn, now, Some(code)),
                }
            }
            _ => self.protocol_error(conn, now, ReasonCode::ProtocolError),
        }
    }

    /// CONNACK with a failure code, then close ([MQTT-3.2.2-5]); Session Present is 0
    /// ([MQTT-3.2.2-4], [MQTT-3.2.2-6]).
    pub(crate) fn refuse_connect(
        &mut self,
        conn: ConnId,
        now: Instant,
        v: ProtocolVersion,
        code: ReasonCode,
    ) {
        self.metrics.connects_refused += 1;
        let code = crate::admission::refusal_code(code);
        let frame = crate::admission::refusal(v, code);
        if let Some(c) = self.conns.get_mut(conn) {
            c.version = v;
            c.clear_will();
        }
        self.push_ctrl(conn, Ctrl::Raw(frame));
        self.close_with(conn, now, None, Some(code));
    }

    fn finish_connect(
        &mut self,
        conn: ConnId,
        now: Instant,
        params: ConnectParams,
        auth_data: Option<Vec<u8>>,
    ) {
        let Some(v) = self.conns.get(conn).map(|c| c.version) else {
            return;
        };
        let mark = self.store_mark();
        // Takeover ([MQTT-3.1.4-3]): the existing connection is closed with 0x8E.
        if let Some(sk) = self.by_id.get(&self.sessions, &params.client_id) {
            if let Some(old) = self.sessions.get(sk).and_then(|s| s.conn) {
                if old != conn {
                    #[cfg(feature = "ops")]
                    {
                        self.metrics.ops.session_takenover += 1;
                    }
                    self.close(old, now, Some(ReasonCode::SessionTakenOver));
                }
            }
        }
        let existing = self.by_id.get(&self.sessions, &params.client_id);
        let (sk, present) = match existing {
            // [MQTT-3.2.2-3] resume: Session Present 1.
            Some(sk) if !params.clean_start => (sk, true),
            // [MQTT-3.1.2-4] Clean Start discards the existing session. A will waiting
            // for its delay is not published: a new Network Connection for the ClientID
            // was opened before the delay passed ([MQTT-3.1.2-8], [MQTT-3.1.3-9]).
            Some(sk) => {
                if let Some(s) = self.sessions.get_mut(sk) {
                    s.pending_will = None;
                }
                self.end_session(sk, now, SessionEnd::TakenOver);
                (self.new_session(&params.client_id), false)
            }
            None => (self.new_session(&params.client_id), false),
        };
        let peer = self.conns.get(conn).map(|c| c.peer.clone());
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        s.conn = Some(conn);
        #[cfg(feature = "ops")]
        {
            s.connected_at = now;
            s.clean_start = params.clean_start;
        }
        s.username = params.username.clone();
        s.protocol = v;
        s.expiry_interval = params.session_expiry;
        s.expire_at = None;
        // [MQTT-3.1.3-9]: reconnecting before the will delay passes cancels the will.
        s.pending_will = None;
        // [MQTT-4.4.0-1] unacknowledged messages are resent on the new connection.
        for f in s.inflight.iter_mut() {
            f.needs_send = true;
        }
        s.resend_pending = !s.inflight.is_empty();
        // A bridge the shell opened takes as many as it announced: it forwards, and
        // `max_inflight_messages` is about clients.
        #[cfg(feature = "bridge")]
        let own = self.conns.get(conn).is_some_and(|c| c.own_bridge);
        #[cfg(not(feature = "bridge"))]
        let own = false;
        let bridge = params.bridge || own;
        let cap = if own {
            u16::MAX
        } else {
            self.cfg.max_inflight_messages
        };
        let window = params.receive_maximum.min(cap).max(1);
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.state = ConnState::Connected;
        c.session = Some(sk);
        c.bridge = bridge;
        c.keep_alive_ms = u32::from(params.keep_alive) * 1500;
        c.window = window;
        c.max_packet_out = params.max_packet_size;
        c.alias_out_max = params.topic_alias_maximum;
        c.rare = None;
        // The box exists only when something needs it; an outgoing alias table must
        // exist whenever aliases are allowed (the transmit path does not allocate it).
        if params.will.is_some() || params.auth_method.is_some() || c.alias_out_max > 0 {
            let r = c.rare(self.cfg.hash_seed);
            r.will = params.will.clone();
            r.auth_method = params.auth_method.clone();
        }
        c.problem_info = params.request_problem_info;

        let cfg = &self.cfg;
        let props = if v.is_v5() {
            Properties {
                session_expiry_interval: params
                    .session_expiry_capped
                    .then_some(params.session_expiry),
                receive_maximum: (cfg.receive_maximum != u16::MAX).then_some(cfg.receive_maximum),
                maximum_qos: (cfg.maximum_qos != QoS::ExactlyOnce).then_some(cfg.maximum_qos),
                retain_available: (!cfg.retain_available).then_some(false),
                maximum_packet_size: Some(cfg.max_packet_size),
                assigned_client_identifier: params.assigned.then_some(&*params.client_id),
                topic_alias_maximum: (cfg.topic_alias_maximum > 0)
                    .then_some(cfg.topic_alias_maximum),
                wildcard_subscription_available: (!cfg.wildcard_subscriptions).then_some(false),
                subscription_identifier_available: (!cfg.subscription_identifiers).then_some(false),
                shared_subscription_available: (!cfg.shared_subscriptions).then_some(false),
                server_keep_alive: params.server_keep_alive,
                authentication_method: params.auth_method.as_deref(),
                authentication_data: auth_data.as_deref(),
                ..Properties::default()
            }
        } else {
            Properties::default()
        };
        let frame = encode(
            &Packet::ConnAck(ConnAck {
                // MQTT 3.1 has no Session Present flag: the byte is reserved (zero).
                session_present: present && v != ProtocolVersion::V3_1,
                reason_code: ReasonCode::Success,
                properties: props,
            }),
            v,
        );
        self.push_ctrl(conn, Ctrl::Raw(frame));
        if params.keep_alive > 0 {
            let ka = u64::from(params.keep_alive) * 1500;
            // Otherwise the connect-timeout entry (set at accept, so due before `now +
            // ka`) makes the first keep-alive check: one timer entry per connection.
            if self.cfg.connect_timeout_ms > ka {
                self.schedule(now.plus_millis(ka), Timer::KeepAlive(conn));
            }
        }
        if let Some(s) = self.sessions.get(sk) {
            let info = Self::client_info(s, peer.as_ref());
            if present {
                self.policy.hooks.on_session_resumed(&info);
            } else {
                self.policy.hooks.on_session_created(&info);
            }
            self.policy.hooks.on_connected(&info);
            #[cfg(feature = "ops")]
            {
                self.metrics.ops.client_connected += 1;
                if present {
                    self.metrics.ops.session_resumed += 1;
                } else {
                    self.metrics.ops.session_created += 1;
                }
                self.policy.hooks.on_client_connected(
                    &info,
                    &crate::policy::ConnectDetails {
                        clean_start: params.clean_start,
                        keep_alive: params.keep_alive,
                        expiry_interval: s.expiry_interval,
                        session_present: present,
                        user_properties: &params.user_properties,
                    },
                );
            }
        }
        // The CONNACK (and everything after it) waits for the session's record.
        self.store_session(sk, Some(conn));
        self.store_will(sk, params.will.as_ref());
        self.store_gate_since(mark, conn);
        self.wake(conn);
    }

    pub(super) fn new_session(&mut self, client_id: &str) -> Key {
        self.next_origin += 1;
        let origin = (u64::from(self.cfg.shard) + 1) << 48 | self.next_origin;
        let hash = crate::index::stable_hash(&[client_id.as_bytes()]);
        let key = self
            .sessions
            .insert_with(|_| Session::new(client_id.into(), hash, origin));
        self.by_id.insert(&self.sessions, key);
        key
    }

    /// Ends a session: its pending will is published, its subscriptions removed, shared
    /// subscription messages handed back to the group. A session that goes on at another
    /// node of a cluster (`moving`, set by `move_out`) keeps its will, queue and records:
    /// nothing is published, handed back or deleted but this node's copy.
    pub(crate) fn end_session(&mut self, sk: Key, now: Instant, why: SessionEnd) {
        #[cfg(feature = "cluster")]
        let moved = self.moving;
        #[cfg(not(feature = "cluster"))]
        let moved = false;
        // Messages held by flow control: their publishers get their acknowledgements; the
        // messages are handled like the rest of the queue below.
        let parked: Vec<crate::broker::flow::Parked> = self
            .sessions
            .get_mut(sk)
            .map(|s| Vec::from(s.overflow.take()))
            .unwrap_or_default();
        let mut parked_items = Vec::with_capacity(parked.len());
        for p in parked {
            if let Some(k) = p.ack {
                self.release_ack(k);
            }
            parked_items.push(p.item);
        }
        let Some(mut s) = self.sessions.remove(sk) else {
            return;
        };
        self.by_id.remove(&s.client_id, sk);
        if let Some(pw) = s.pending_will.take() {
            if !moved {
                self.publish_will(now, &s.client_id, pw.will);
            }
        }
        let subs: Vec<(Box<str>, SubRecord)> = s.subs.take_all().collect();
        for (f, rec) in &subs {
            self.remove_subscription(sk, f, rec);
        }
        // A QoS 2 message whose PUBLISH was sent is not given to another member of a
        // shared subscription ([MQTT-4.8.2-5]); QoS 1 and unsent messages are (4.8.2).
        let leftovers = s
            .inflight
            .take()
            .into_iter()
            .filter(|f| f.state != crate::session::InflightState::AwaitComp)
            .map(|f| (f.state == crate::session::InflightState::AwaitRec, f.item))
            .chain(s.queue.take().into_iter().map(|q| (false, q)))
            .chain(s.backlog.take().into_iter().map(|q| (false, q)))
            .chain(parked_items.into_iter().map(|q| (false, q)));
        for (qos2_started, item) in leftovers {
            if moved {
                // They go on with the session at the other node.
                break;
            }
            match item.group {
                Some(g) if !qos2_started => self.return_to_group(now, g, item.msg),
                _ => self.policy.hooks.on_dropped(
                    &s.client_id,
                    &item.msg,
                    crate::policy::DropReason::SessionEnded,
                ),
            }
        }
        self.policy.hooks.on_session_terminated(&s.client_id, why);
        #[cfg(feature = "ops")]
        {
            self.metrics.ops.session_terminated += 1;
        }
        if why == SessionEnd::Expired {
            self.metrics.sessions_expired += 1;
            self.policy.hooks.on_session_expired(&s.client_id);
        }
        #[cfg(feature = "store")]
        if moved {
            self.store_session_moved(&s.client_id, s.stored);
        } else {
            self.store_session_end(&s.client_id, s.stored);
        }
        self.forget_spill(sk);
    }

    /// Publishes a will now (Message Expiry starts at publication, 3.1.3.2.4).
    pub(crate) fn publish_will(&mut self, now: Instant, client_id: &str, will: WillSpec) {
        let mut msg = will.msg;
        msg.expires_at = will.expiry.map(|s| now.plus_secs(u64::from(s)));
        if !self.policy.hooks.on_will_publish(client_id, &msg) {
            return;
        }
        self.metrics.wills_published += 1;
        let hash = crate::index::stable_hash(&[client_id.as_bytes()]);
        self.publish_message(now, &msg, hash);
        self.policy.hooks.on_will_published(client_id, &msg);
    }

    /// Separates a connection from its session (for any reason): the will is scheduled or
    /// published, and a session with expiry 0 ends ([MQTT-3.1.2-8], 3.1.2.11.2).
    pub(crate) fn detach(&mut self, conn: ConnId, now: Instant, reason: Option<ReasonCode>) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        let will = c.rare.as_deref_mut().and_then(|r| r.will.take());
        let sk = c.session.take();
        let Some(sk) = sk else {
            self.policy.hooks.on_closed(None, reason);
            return;
        };
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        if s.conn == Some(conn) {
            s.conn = None;
        }
        self.policy.hooks.on_closed(Some(&s.client_id), reason);
        #[cfg(feature = "ops")]
        {
            let i = crate::broker::ops::DisconnectReason::of(reason) as usize;
            if let Some(n) = self.metrics.ops.client_disconnected.get_mut(i) {
                *n += 1;
            }
        }
        if will
            .as_ref()
            .is_none_or(|w| w.delay.min(s.expiry_interval) == 0)
        {
            // Published now or never: a restart must not publish it again.
            self.store_will(sk, None);
        }
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        if let Some(w) = will {
            let delay = w.delay.min(s.expiry_interval);
            if delay == 0 {
                let id = s.client_id.clone();
                self.publish_will(now, &id, w);
            } else {
                let at = now.plus_secs(u64::from(delay));
                s.pending_will = Some(Box::new(PendingWill { will: w, at }));
                self.schedule(at, Timer::Will(sk));
            }
        }
        let Some(s) = self.sessions.get_mut(sk) else {
            return;
        };
        match s.expiry_interval {
            0 => self.end_session(sk, now, SessionEnd::Discarded),
            secs => {
                // Held messages join the offline queue as far as its limits allow (the
                // configured bound holds offline too); the rest are dropped and reported.
                // Every publisher is released.
                self.admit_parked(now, sk);
                self.drop_parked(sk, DropReason::QueueFull);
                let Some(s) = self.sessions.get_mut(sk) else {
                    return;
                };
                // Offline messages get their own allocations so they do not pin arena chunks.
                for q in s.queue.iter_mut() {
                    q.msg = q.msg.detached();
                }
                let at = (secs != u32::MAX).then(|| now.plus_secs(u64::from(secs)));
                s.expire_at = at;
                if let Some(at) = at {
                    self.schedule(at, Timer::SessionExpiry(sk));
                }
            }
        }
    }

    /// Closes a connection; MQTT 5 connected clients get DISCONNECT `reason` first. A
    /// client still authenticating gets a refusing CONNACK instead: no DISCONNECT before
    /// a successful CONNACK ([MQTT-3.14.0-1]).
    pub(crate) fn close(&mut self, conn: ConnId, now: Instant, reason: Option<ReasonCode>) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        match (c.state, reason) {
            (ConnState::Authenticating, Some(code)) => {
                let v = c.version;
                self.refuse_connect(conn, now, v, code);
            }
            (ConnState::Connected, _) if c.version.is_v5() => {
                self.close_with(conn, now, reason, reason)
            }
            _ => self.close_with(conn, now, None, reason),
        }
    }

    pub(crate) fn close_with(
        &mut self,
        conn: ConnId,
        now: Instant,
        send: Option<ReasonCode>,
        reason: Option<ReasonCode>,
    ) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.state == ConnState::Closing {
            return;
        }
        if let Some(code) = send {
            let code = if code.valid_in(mqtt_proto::PacketType::Disconnect) {
                code
            } else {
                ReasonCode::UnspecifiedError
            };
            self.push_ctrl(conn, Ctrl::Disconnect(code));
        }
        // Closing before the session is detached: acknowledgements that detaching
        // releases (flow control) must not follow the DISCONNECT on this connection.
        if let Some(c) = self.conns.get_mut(conn) {
            c.state = ConnState::Closing;
            c.close_reason = reason;
        }
        self.detach(conn, now, reason);
        self.events.push_back(Event::Close(conn));
    }

    pub(crate) fn handle_disconnect(&mut self, conn: ConnId, now: Instant, d: &Disconnect<'_>) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if c.version.is_v5() {
            if let Some(exp) = d.properties.session_expiry_interval {
                let sk = c.session;
                let cur = sk
                    .and_then(|k| self.sessions.get(k))
                    .map(|s| s.expiry_interval);
                // 3.14.2.2.2: zero at CONNECT cannot become non-zero at DISCONNECT (a
                // Protocol Error; the statement has no number of its own).
                if cur == Some(0) && exp != 0 {
                    return self.protocol_error(conn, now, ReasonCode::ProtocolError);
                }
                if let Some(s) = sk.and_then(|k| self.sessions.get_mut(k)) {
                    s.expiry_interval = exp.min(self.cfg.max_session_expiry);
                }
                if let Some(sk) = sk {
                    self.store_session(sk, None);
                }
            }
        }
        // [MQTT-3.1.2-10] only a normal DISCONNECT (0x00) deletes the will; 0x04 and the
        // error codes keep it ([MQTT-3.1.2-8], 3.14.2.1).
        if d.reason_code == ReasonCode::NORMAL_DISCONNECTION {
            if let Some(c) = self.conns.get_mut(conn) {
                c.clear_will();
            }
        }
        self.close_with(conn, now, None, Some(d.reason_code));
    }
}

fn auth_frame(code: ReasonCode, method: &str, data: &[u8]) -> Vec<u8> {
    encode(
        &Packet::Auth(Auth {
            reason_code: code,
            properties: Properties {
                authentication_method: Some(method),
                authentication_data: (!data.is_empty()).then_some(data),
                ..Properties::default()
            },
        }),
        ProtocolVersion::V5,
    )
}
