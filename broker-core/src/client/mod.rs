//! The MQTT client as a sans-IO state machine: used by `petrel pub`/`petrel sub`, bridges
//! and the gateway uplink. Same shape as the broker: `handle_*` in with `now`, `poll_*` out.
//!
//! It keeps what must survive a lost connection (messages in flight, messages queued while
//! offline up to a bound, subscriptions) and, on reconnection, resumes the session when the
//! broker kept it (resending PUBLISH with DUP and PUBREL) or else resubscribes and
//! republishes what was not acknowledged. Nothing is dropped silently: a full queue is an
//! error to the caller.

mod reconnect;
mod types;

pub use reconnect::{
    describe_refusal, describe_subscribe_refusal, refusal_hint, refusal_is_final, Backoff,
};
pub use types::{ClientError, ClientEvent, ClientOptions, ClientWill, Received};

use crate::time::Instant;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use mqtt_proto::{
    Ack, Auth, Connect, Disconnect, Packet, PacketId, PacketType, Properties, Publish, QoS,
    ReasonCode, Status, SubscriptionOptions, Subscriptions, TopicFilters, UserProperties, Will,
};

#[derive(Debug, Clone)]
struct OutMsg {
    token: u64,
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
    user_properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
enum OutState {
    AwaitAck,
    AwaitRec,
    AwaitComp,
}

#[derive(Debug, Clone)]
struct Inflight {
    pid: u16,
    msg: OutMsg,
    state: OutState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Disconnected,
    Connecting,
    Connected,
}

/// The client state machine.
#[derive(Debug)]
pub struct Client {
    opts: ClientOptions,
    state: State,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    queue: VecDeque<OutMsg>,
    inflight: Vec<Inflight>,
    rx_qos2: Vec<u16>,
    subscriptions: Vec<(String, SubscriptionOptions)>,
    pending_subs: Vec<(u16, u64)>,
    pending_unsubs: Vec<(u16, u64)>,
    next_pid: u16,
    next_token: u64,
    last_tx: Instant,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    /// Broker limits from CONNACK.
    window: u16,
    server_max_packet: u32,
    server_max_qos: QoS,
    server_retain: bool,
    keep_alive: u16,
    alias_in: Vec<String>,
    /// QoS 1/2 messages delivered to the application and not yet acknowledged (manual).
    unacked_in: VecDeque<(u16, QoS, bool)>,
}

impl Client {
    /// A disconnected client.
    pub fn new(opts: ClientOptions) -> Self {
        Self {
            state: State::Disconnected,
            out: Vec::new(),
            events: VecDeque::new(),
            queue: VecDeque::new(),
            inflight: Vec::new(),
            rx_qos2: Vec::new(),
            subscriptions: Vec::new(),
            pending_subs: Vec::new(),
            pending_unsubs: Vec::new(),
            next_pid: 1,
            next_token: 1,
            last_tx: Instant::ZERO,
            last_rx: Instant::ZERO,
            ping_sent: None,
            window: 65535,
            server_max_packet: u32::MAX,
            server_max_qos: QoS::ExactlyOnce,
            server_retain: true,
            keep_alive: opts.keep_alive,
            alias_in: Vec::new(),
            unacked_in: VecDeque::new(),
            opts,
        }
    }

    /// The options (the client id is updated when the broker assigns one).
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// True after a successful CONNACK and until the connection is lost.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Messages waiting (queued plus in flight).
    pub fn pending(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    fn emit(&mut self, p: &Packet<'_>) -> bool {
        let v = self.opts.version;
        p.emit_buf(v, &mut self.out).is_ok()
    }

    /// A new network connection is up: sends CONNECT.
    pub fn handle_connected(&mut self, now: Instant) {
        self.out.clear();
        self.state = State::Connecting;
        self.last_tx = now;
        self.last_rx = now;
        self.ping_sent = None;
        let o = &self.opts;
        let will = o.will.as_ref().map(|w| Will {
            qos: w.qos,
            retain: w.retain,
            properties: Properties {
                will_delay_interval: (o.version.is_v5() && w.delay > 0).then_some(w.delay),
                ..Properties::default()
            },
            topic: &w.topic,
            payload: &w.payload,
        });
        let props = if o.version.is_v5() {
            Properties {
                session_expiry_interval: (o.session_expiry > 0).then_some(o.session_expiry),
                receive_maximum: (o.receive_maximum != 65535).then_some(o.receive_maximum),
                maximum_packet_size: o.maximum_packet_size,
                topic_alias_maximum: (o.topic_alias_maximum > 0).then_some(o.topic_alias_maximum),
                authentication_method: o.auth.as_ref().map(|(m, _)| m.as_str()),
                authentication_data: o
                    .auth
                    .as_ref()
                    .and_then(|(_, d)| (!d.is_empty()).then_some(d.as_slice())),
                ..Properties::default()
            }
        } else {
            Properties::default()
        };
        let c = Connect {
            protocol: o.version,
            clean_start: o.clean_start,
            #[cfg(feature = "bridge")]
            bridge: o.bridge && !o.version.is_v5(),
            #[cfg(not(feature = "bridge"))]
            bridge: false,
            keep_alive: o.keep_alive,
            properties: props,
            client_id: &o.client_id,
            will,
            username: o.username.as_deref(),
            password: o.password.as_deref(),
        };
        let mut out = core::mem::take(&mut self.out);
        let _ = Packet::Connect(c).emit_buf(o.version, &mut out);
        self.out = out;
    }

    /// The network connection is gone. In-flight and queued messages are kept.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        self.state = State::Disconnected;
        self.out.clear();
        self.ping_sent = None;
        self.alias_in.clear();
        self.pending_subs.clear();
        self.pending_unsubs.clear();
        self.unacked_in.clear();
    }

    /// Bytes from the broker; returns how many were consumed (whole packets).
    pub fn handle_bytes(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut pos = 0;
        let max = self
            .opts
            .maximum_packet_size
            .map_or(mqtt_proto::MAX_REMAINING_LENGTH + 5, |m| m as usize);
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            match Packet::parse(rest, self.opts.version, max) {
                Ok(Status::Complete((p, n))) => {
                    pos += n;
                    self.last_rx = now;
                    self.handle_packet(now, p);
                    if self.state == State::Disconnected {
                        return input.len();
                    }
                }
                Ok(Status::Incomplete { .. }) => return pos,
                Err(e) => {
                    self.protocol_error(e.reason_code());
                    return input.len();
                }
            }
        }
    }

    fn protocol_error(&mut self, code: ReasonCode) {
        if self.opts.version.is_v5() && self.state == State::Connected {
            let code = if code.valid_in(PacketType::Disconnect) {
                code
            } else {
                ReasonCode::ProtocolError
            };
            self.emit(&Packet::Disconnect(Disconnect::new(code)));
        }
        self.state = State::Disconnected;
        self.events.push_back(ClientEvent::CloseConnection);
    }

    fn handle_packet(&mut self, now: Instant, p: Packet<'_>) {
        match (self.state, p) {
            (State::Connecting, Packet::ConnAck(a)) => {
                if a.reason_code != ReasonCode::Success {
                    self.state = State::Disconnected;
                    self.events
                        .push_back(ClientEvent::ConnectRefused(a.reason_code));
                    self.events.push_back(ClientEvent::CloseConnection);
                    return;
                }
                let pr = &a.properties;
                self.window = pr.receive_maximum.unwrap_or(65535);
                self.server_max_packet = pr.maximum_packet_size.unwrap_or(u32::MAX);
                self.server_max_qos = pr.maximum_qos.unwrap_or(QoS::ExactlyOnce);
                self.server_retain = pr.retain_available.unwrap_or(true);
                if let Some(ka) = pr.server_keep_alive {
                    self.keep_alive = ka;
                }
                let assigned = pr.assigned_client_identifier.map(String::from);
                if let Some(id) = &assigned {
                    self.opts.client_id = id.clone();
                }
                self.alias_in =
                    alloc::vec![String::new(); usize::from(self.opts.topic_alias_maximum)];
                self.state = State::Connected;
                self.resume(a.session_present);
                self.events.push_back(ClientEvent::Connected {
                    session_present: a.session_present,
                    assigned_client_id: assigned,
                });
                self.flush_queue(now);
            }
            (State::Connecting, Packet::Auth(a)) => self.on_auth(&a),
            (State::Connected, Packet::Auth(a)) => self.on_auth(&a),
            (State::Connected, Packet::Publish(p)) => self.on_publish(&p),
            (State::Connected, Packet::PubAck(a)) => {
                self.finish(a.packet_id.get(), OutState::AwaitAck, a.reason_code, now)
            }
            (State::Connected, Packet::PubRec(a)) => self.on_pubrec(&a, now),
            (State::Connected, Packet::PubRel(a)) => {
                let pid = a.packet_id.get();
                let known = self.rx_qos2.iter().position(|&x| x == pid);
                if let Some(i) = known {
                    self.rx_qos2.swap_remove(i);
                }
                let code = if known.is_some() || !self.opts.version.is_v5() {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                let ack = Ack {
                    reason_code: code,
                    ..Ack::new(a.packet_id)
                };
                self.emit(&Packet::PubComp(ack));
            }
            (State::Connected, Packet::PubComp(a)) => {
                self.finish(a.packet_id.get(), OutState::AwaitComp, a.reason_code, now)
            }
            (State::Connected, Packet::SubAck(s)) => {
                let pid = s.packet_id.get();
                if let Some(i) = self.pending_subs.iter().position(|(p, _)| *p == pid) {
                    let (_, token) = self.pending_subs.swap_remove(i);
                    let codes = s.reason_codes.iter().collect();
                    self.events
                        .push_back(ClientEvent::Subscribed { token, codes });
                }
            }
            (State::Connected, Packet::UnsubAck(u)) => {
                let pid = u.packet_id.get();
                if let Some(i) = self.pending_unsubs.iter().position(|(p, _)| *p == pid) {
                    let (_, token) = self.pending_unsubs.swap_remove(i);
                    self.events.push_back(ClientEvent::Unsubscribed { token });
                }
            }
            (State::Connected, Packet::PingResp) => self.ping_sent = None,
            (_, Packet::Disconnect(d)) => {
                self.state = State::Disconnected;
                self.events
                    .push_back(ClientEvent::ServerDisconnect(d.reason_code));
                self.events.push_back(ClientEvent::CloseConnection);
            }
            _ => self.protocol_error(ReasonCode::ProtocolError),
        }
    }

    fn on_auth(&mut self, a: &Auth<'_>) {
        let method = a.properties.authentication_method.unwrap_or_default();
        let data = a.properties.authentication_data.unwrap_or_default();
        if a.reason_code == ReasonCode::ContinueAuthentication {
            self.events.push_back(ClientEvent::AuthChallenge {
                method: method.into(),
                data: data.to_vec(),
            });
        }
    }

    /// Answers an `AuthChallenge`.
    pub fn auth_continue(&mut self, method: &str, data: &[u8]) {
        self.emit(&Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: Properties {
                authentication_method: Some(method),
                authentication_data: Some(data),
                ..Properties::default()
            },
        }));
    }

    /// Starts MQTT 5 re-authentication.
    pub fn reauthenticate(&mut self, method: &str, data: &[u8]) {
        self.emit(&Packet::Auth(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: Properties {
                authentication_method: Some(method),
                authentication_data: Some(data),
                ..Properties::default()
            },
        }));
    }

    fn on_publish(&mut self, p: &Publish<'_>) {
        let mut topic = p.topic;
        if let Some(a) = p.properties.topic_alias {
            match self.alias_in.get_mut(usize::from(a).wrapping_sub(1)) {
                Some(slot) => {
                    if topic.is_empty() {
                        if slot.is_empty() {
                            return self.protocol_error(ReasonCode::ProtocolError);
                        }
                    } else {
                        slot.clear();
                        slot.push_str(topic);
                    }
                }
                None => return self.protocol_error(ReasonCode::TopicAliasInvalid),
            }
            if topic.is_empty() {
                topic = self
                    .alias_in
                    .get(usize::from(a) - 1)
                    .map_or("", |s| s.as_str());
            }
        }
        let pid = p.packet_id.map(|x| x.get());
        let dup_qos2 =
            p.qos == QoS::ExactlyOnce && pid.is_some_and(|id| self.rx_qos2.contains(&id));
        if !dup_qos2 {
            let pr = &p.properties;
            let msg = Received {
                topic: topic.into(),
                payload: p.payload.to_vec(),
                qos: p.qos,
                retain: p.retain,
                dup: p.dup,
                packet_id: pid,
                user_properties: pr
                    .user_properties
                    .iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
                content_type: pr.content_type.map(Into::into),
                response_topic: pr.response_topic.map(Into::into),
                correlation_data: pr.correlation_data.map(<[u8]>::to_vec),
                payload_format_utf8: pr.payload_format_indicator,
                subscription_ids: pr.subscription_identifiers.iter().collect(),
                message_expiry: pr.message_expiry_interval,
            };
            self.events.push_back(ClientEvent::Message(msg));
        }
        let Some(id) = pid else { return };
        if self.opts.manual_ack && !dup_qos2 {
            self.unacked_in.push_back((id, p.qos, false));
        } else {
            self.send_ack(id, p.qos);
        }
    }

    fn send_ack(&mut self, id: u16, qos: QoS) {
        let Some(pid) = PacketId::new(id) else { return };
        if qos == QoS::AtLeastOnce {
            self.emit(&Packet::PubAck(Ack::new(pid)));
        } else {
            if !self.rx_qos2.contains(&id) {
                self.rx_qos2.push(id);
            }
            self.emit(&Packet::PubRec(Ack::new(pid)));
        }
    }

    /// With `manual_ack`: the application is done with message `packet_id`. Acknowledgements
    /// go out in the order messages arrived ([MQTT-4.6.0-2]).
    pub fn ack(&mut self, packet_id: u16) {
        if let Some(e) = self
            .unacked_in
            .iter_mut()
            .find(|e| e.0 == packet_id && !e.2)
        {
            e.2 = true;
        }
        while let Some(&(id, qos, done)) = self.unacked_in.front() {
            if !done {
                break;
            }
            self.unacked_in.pop_front();
            self.send_ack(id, qos);
        }
    }

    fn on_pubrec(&mut self, a: &Ack<'_>, now: Instant) {
        let pid = a.packet_id.get();
        if a.reason_code.is_error() {
            return self.finish(pid, OutState::AwaitRec, a.reason_code, now);
        }
        if let Some(f) = self.inflight.iter_mut().find(|f| f.pid == pid) {
            f.state = OutState::AwaitComp;
        }
        self.emit(&Packet::PubRel(Ack::new(a.packet_id)));
    }

    fn finish(&mut self, pid: u16, expect: OutState, reason: ReasonCode, now: Instant) {
        let Some(i) = self.inflight.iter().position(|f| f.pid == pid) else {
            return;
        };
        let state = self.inflight.get(i).map(|f| f.state);
        if state != Some(expect) {
            return;
        }
        let f = self.inflight.remove(i);
        self.events.push_back(ClientEvent::Published {
            token: f.msg.token,
            reason,
        });
        self.flush_queue(now);
    }

    /// After CONNACK: resume (resend with DUP / PUBREL) or start over (resubscribe,
    /// republish what was not acknowledged).
    fn resume(&mut self, session_present: bool) {
        if session_present {
            let inflight = core::mem::take(&mut self.inflight);
            for f in &inflight {
                match f.state {
                    OutState::AwaitComp => {
                        if let Some(pid) = PacketId::new(f.pid) {
                            self.emit(&Packet::PubRel(Ack::new(pid)));
                        }
                    }
                    _ => {
                        self.emit_publish(&f.msg, Some(f.pid), true);
                    }
                }
            }
            self.inflight = inflight;
        } else {
            // The broker has no session: what it acknowledged with PUBREC is delivered (and
            // reported so); the rest goes out again as new messages, before anything queued
            // later.
            let mut redo: Vec<OutMsg> = Vec::new();
            for f in core::mem::take(&mut self.inflight) {
                if f.state == OutState::AwaitComp {
                    self.events.push_back(ClientEvent::Published {
                        token: f.msg.token,
                        reason: ReasonCode::Success,
                    });
                } else {
                    redo.push(f.msg);
                }
            }
            for m in redo.into_iter().rev() {
                self.queue.push_front(m);
            }
            self.rx_qos2.clear();
            let subs = self.subscriptions.clone();
            if !subs.is_empty() {
                self.send_subscribe(&subs, 0);
            }
        }
    }

    fn alloc_pid(&mut self) -> u16 {
        loop {
            let p = self.next_pid;
            self.next_pid = if p == u16::MAX { 1 } else { p + 1 };
            let used = self.inflight.iter().any(|f| f.pid == p)
                || self.pending_subs.iter().any(|(x, _)| *x == p)
                || self.pending_unsubs.iter().any(|(x, _)| *x == p);
            if !used {
                return p;
            }
        }
    }

    fn emit_publish(&mut self, m: &OutMsg, pid: Option<u16>, dup: bool) -> bool {
        let ups: Vec<(&str, &str)> = m
            .user_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let p = Publish {
            dup: dup && m.qos != QoS::AtMostOnce,
            qos: m.qos,
            retain: m.retain,
            topic: &m.topic,
            packet_id: pid.and_then(PacketId::new),
            properties: Properties {
                user_properties: UserProperties::List(&ups),
                ..Properties::default()
            },
            payload: &m.payload,
        };
        let v = self.opts.version;
        let packet = Packet::Publish(p);
        match packet.encoded_len(v) {
            Ok(n) if n <= self.server_max_packet as usize => {
                packet.emit_buf(v, &mut self.out).is_ok()
            }
            _ => false,
        }
    }

    /// Sends what the window allows from the queue.
    fn flush_queue(&mut self, now: Instant) {
        if self.state != State::Connected {
            return;
        }
        while let Some(m) = self.queue.front() {
            if m.qos != QoS::AtMostOnce && self.inflight.len() >= usize::from(self.window) {
                break;
            }
            let Some(mut m) = self.queue.pop_front() else {
                break;
            };
            // Queued before this CONNACK told the broker's limits: what it takes.
            m.qos = m.qos.min(self.server_max_qos);
            m.retain &= self.server_retain;
            if m.qos == QoS::AtMostOnce {
                let ok = self.emit_publish(&m, None, false);
                let reason = if ok {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketTooLarge
                };
                self.events.push_back(ClientEvent::Published {
                    token: m.token,
                    reason,
                });
            } else {
                let pid = self.alloc_pid();
                if !self.emit_publish(&m, Some(pid), false) {
                    self.events.push_back(ClientEvent::Published {
                        token: m.token,
                        reason: ReasonCode::PacketTooLarge,
                    });
                    continue;
                }
                let state = if m.qos == QoS::AtLeastOnce {
                    OutState::AwaitAck
                } else {
                    OutState::AwaitRec
                };
                self.inflight.push(Inflight { pid, msg: m, state });
            }
        }
        let _ = now;
    }

    /// Queues a message. QoS 0 is sent when connected (or dropped with an error while
    /// offline only if the queue is full); QoS 1/2 are kept until acknowledged. Returns a
    /// token reported in `ClientEvent::Published`.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        user_properties: &[(String, String)],
    ) -> Result<u64, ClientError> {
        mqtt_proto::topic::validate_name(topic).map_err(|_| ClientError::Invalid("topic name"))?;
        if self.state == State::Connected {
            if qos > self.server_max_qos {
                return Err(ClientError::NotSupported("QoS above the broker's maximum"));
            }
            if retain && !self.server_retain {
                return Err(ClientError::NotSupported("retained messages"));
            }
        }
        if self.queue.len() >= self.opts.max_queued {
            return Err(ClientError::QueueFull);
        }
        let token = self.next_token;
        self.next_token += 1;
        self.queue.push_back(OutMsg {
            token,
            topic: topic.into(),
            payload: payload.to_vec(),
            qos,
            retain,
            user_properties: user_properties.to_vec(),
        });
        self.flush_queue(now);
        Ok(token)
    }

    fn send_subscribe(&mut self, subs: &[(String, SubscriptionOptions)], token: u64) -> u16 {
        let pid = self.alloc_pid();
        let entries: Vec<mqtt_proto::Subscription<'_>> = subs
            .iter()
            .map(|(f, o)| mqtt_proto::Subscription {
                filter: f,
                options: *o,
            })
            .collect();
        let Some(packet_id) = PacketId::new(pid) else {
            return pid;
        };
        let p = Packet::Subscribe(mqtt_proto::Subscribe {
            packet_id,
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&entries),
        });
        let v = self.opts.version;
        let _ = p.emit_buf(v, &mut self.out);
        if token != 0 {
            self.pending_subs.push((pid, token));
        }
        pid
    }

    /// Subscribes (and remembers the subscriptions, to resubscribe after a reconnection
    /// without a session).
    pub fn subscribe(
        &mut self,
        subs: &[(String, SubscriptionOptions)],
    ) -> Result<u64, ClientError> {
        for (f, _) in subs {
            mqtt_proto::topic::validate_filter(f)
                .map_err(|_| ClientError::Invalid("topic filter"))?;
        }
        for (f, o) in subs {
            match self.subscriptions.iter_mut().find(|(x, _)| x == f) {
                Some(e) => e.1 = *o,
                None => self.subscriptions.push((f.clone(), *o)),
            }
        }
        let token = self.next_token;
        self.next_token += 1;
        if self.state == State::Connected {
            self.send_subscribe(subs, token);
        }
        Ok(token)
    }

    /// Unsubscribes.
    pub fn unsubscribe(&mut self, filters: &[String]) -> u64 {
        self.subscriptions.retain(|(f, _)| !filters.contains(f));
        let token = self.next_token;
        self.next_token += 1;
        if self.state == State::Connected {
            let pid = self.alloc_pid();
            let list: Vec<&str> = filters.iter().map(String::as_str).collect();
            if let Some(packet_id) = PacketId::new(pid) {
                self.emit(&Packet::Unsubscribe(mqtt_proto::Unsubscribe {
                    packet_id,
                    properties: Properties::default(),
                    filters: TopicFilters::List(&list),
                }));
                self.pending_unsubs.push((pid, token));
            }
        }
        token
    }

    /// Sends DISCONNECT (normal, or 0x04 to have the will published) and asks the shell to
    /// close.
    pub fn disconnect(&mut self, reason: ReasonCode) {
        if self.state == State::Connected {
            let d = Disconnect::new(reason);
            self.emit(&Packet::Disconnect(d));
        }
        self.state = State::Disconnected;
        self.events.push_back(ClientEvent::CloseConnection);
    }

    /// Bytes to write; the caller takes them all (the buffer is then empty).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) {
        if !self.out.is_empty() {
            self.last_tx = now;
            out.append(&mut self.out);
        }
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Disconnected || self.keep_alive == 0 {
            return None;
        }
        let ka = u64::from(self.keep_alive) * 1000;
        Some(match self.ping_sent {
            // The broker must answer within the keep alive; otherwise the link is dead.
            Some(t) => t.plus_millis(ka),
            None => self.last_tx.plus_millis(ka),
        })
    }

    /// Keep alive: PINGREQ when idle; a lost connection when PINGRESP does not come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Disconnected || self.keep_alive == 0 {
            return;
        }
        let ka = u64::from(self.keep_alive) * 1000;
        if let Some(t) = self.ping_sent {
            if now >= t.plus_millis(ka) {
                self.state = State::Disconnected;
                self.events.push_back(ClientEvent::CloseConnection);
            }
            return;
        }
        if self.state == State::Connected && now >= self.last_tx.plus_millis(ka) {
            self.emit(&Packet::PingReq);
            self.ping_sent = Some(now);
        }
    }
}
