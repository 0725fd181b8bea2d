//! Helpers for spec tests: a scripted MQTT client on top of the simulation harness.
//!
//! Frames the broker sends are decoded into owned values ([`P`]) so tests can match on
//! them without borrowing the simulation, and the test policies (a recording hook, a toy
//! challenge-response authenticator, an authorizer that refuses some topics) live here.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use broker_core::policy::{
    AuthStep, Authenticator, Authorizer, ClientInfo, ConnId, ConnectRequest, DropReason, Hooks,
    SessionEnd,
};
use broker_core::sim::{Client, Frame, Sim};
use broker_core::{Config, Message, Policy};
use mqtt_proto::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const V31: ProtocolVersion = ProtocolVersion::V3_1;
pub const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

pub const Q0: QoS = QoS::AtMostOnce;
pub const Q1: QoS = QoS::AtLeastOnce;
pub const Q2: QoS = QoS::ExactlyOnce;

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

pub fn sim() -> Sim {
    Sim::new(Config::default(), 1)
}

pub fn sim_cfg(cfg: Config) -> Sim {
    Sim::new(cfg, 1)
}

pub fn connect_packet<'a>(id: &'a str, clean: bool, v: ProtocolVersion) -> Connect<'a> {
    Connect {
        protocol: v,
        clean_start: clean,
        bridge: false,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: id,
        will: None,
        username: None,
        password: None,
    }
}

/// A CONNECT without keep alive (so that moving the virtual clock never closes it).
pub fn conn<'a>(id: &'a str, v: ProtocolVersion) -> Connect<'a> {
    Connect {
        keep_alive: 0,
        ..connect_packet(id, true, v)
    }
}

/// Opens a connection, sends CONNECT and returns the client with the CONNACK frame.
pub fn connect_with(sim: &mut Sim, shard: usize, c: &Connect<'_>) -> (Client, Frame) {
    let cl = sim.open(shard, c.protocol).expect("accepted");
    sim.send(cl, &Packet::Connect(*c));
    let frames = sim.recv(cl);
    let mut it = frames.into_iter();
    let first = it.next().expect("a CONNACK");
    let rest: Vec<Frame> = it.collect();
    sim.unread(cl, &rest);
    (cl, first)
}

/// Connects and asserts success; returns the client.
pub fn connect(sim: &mut Sim, id: &str, clean: bool, v: ProtocolVersion) -> Client {
    let (cl, f) = connect_with(sim, 0, &connect_packet(id, clean, v));
    match f.packet() {
        Packet::ConnAck(a) => assert_eq!(a.reason_code, ReasonCode::Success, "CONNACK {a:?}"),
        p => panic!("expected CONNACK, got {p:?}"),
    }
    cl
}

/// Sends `c` on a new connection to `shard`; returns the client and the decoded CONNACK
/// (or whatever came first), asserting nothing.
pub fn try_connect(sim: &mut Sim, shard: usize, c: &Connect<'_>) -> (Client, P) {
    let (cl, f) = connect_with(sim, shard, c);
    (cl, owned(&f))
}

/// Connects with `c` to shard 0 and asserts a successful CONNACK, which is returned.
pub fn connect_ok(sim: &mut Sim, c: &Connect<'_>) -> (Client, ConnAckInfo) {
    connect_ok_on(sim, 0, c)
}

pub fn connect_ok_on(sim: &mut Sim, shard: usize, c: &Connect<'_>) -> (Client, ConnAckInfo) {
    let (cl, p) = try_connect(sim, shard, c);
    match p {
        P::ConnAck(a) => {
            assert_eq!(a.code, ReasonCode::Success, "CONNACK {a:?}");
            (cl, a)
        }
        p => panic!("expected CONNACK, got {p:?}"),
    }
}

/// A v5 client with no keep alive, Clean Start and the given Session Expiry Interval.
pub fn connect5(sim: &mut Sim, id: &str, clean: bool, expiry: u32) -> (Client, ConnAckInfo) {
    let mut c = conn(id, V5);
    c.clean_start = clean;
    c.properties.session_expiry_interval = (expiry > 0).then_some(expiry);
    connect_ok(sim, &c)
}

pub fn subscribe(sim: &mut Sim, c: Client, filter: &str, qos: QoS) -> Vec<ReasonCode> {
    subscribe_opts(sim, c, filter, SubscriptionOptions::qos(qos), None)
}

pub fn subscribe_opts(
    sim: &mut Sim,
    c: Client,
    filter: &str,
    options: SubscriptionOptions,
    id: Option<u32>,
) -> Vec<ReasonCode> {
    subscribe_many(sim, c, 1, &[(filter, options)], id)
}

/// One SUBSCRIBE with several entries; returns the SUBACK codes (after checking the
/// packet identifier) and leaves any other frame unread.
pub fn subscribe_many(
    sim: &mut Sim,
    c: Client,
    packet_id: u16,
    entries: &[(&str, SubscriptionOptions)],
    id: Option<u32>,
) -> Vec<ReasonCode> {
    let subs: Vec<Subscription<'_>> = entries
        .iter()
        .map(|(filter, options)| Subscription {
            filter,
            options: *options,
        })
        .collect();
    let ids: Vec<u32> = id.into_iter().collect();
    sim.send(
        c,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(packet_id),
            properties: Properties {
                subscription_identifiers: SubscriptionIds::List(&ids),
                ..Default::default()
            },
            subscriptions: Subscriptions::List(&subs),
        }),
    );
    let frames = sim.recv(c);
    let i = frames
        .iter()
        .position(|f| matches!(f.packet(), Packet::SubAck(_)))
        .unwrap_or_else(|| panic!("no SUBACK in {:?}", owned_all(&frames)));
    let codes = match frames[i].packet() {
        Packet::SubAck(s) => {
            assert_eq!(s.packet_id.get(), packet_id, "SUBACK packet id");
            s.reason_codes.iter().collect()
        }
        _ => unreachable!(),
    };
    let mut rest: Vec<_> = frames[..i].to_vec();
    rest.extend_from_slice(&frames[i + 1..]);
    sim.unread(c, &rest);
    codes
}

pub fn unsubscribe(sim: &mut Sim, c: Client, packet_id: u16, filters: &[&str]) -> P {
    sim.send(
        c,
        &Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(packet_id),
            properties: Properties::default(),
            filters: TopicFilters::List(filters),
        }),
    );
    let frames = recv(sim, c);
    let i = frames
        .iter()
        .position(|p| matches!(p, P::UnsubAck { .. }))
        .unwrap_or_else(|| panic!("no UNSUBACK in {frames:?}"));
    frames[i].clone()
}

pub fn publish(
    sim: &mut Sim,
    c: Client,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    id: u16,
) {
    publish_props(
        sim,
        c,
        topic,
        payload,
        qos,
        retain,
        id,
        Properties::default(),
    );
}

#[allow(clippy::too_many_arguments)]
pub fn publish_props(
    sim: &mut Sim,
    c: Client,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    id: u16,
    properties: Properties<'_>,
) {
    sim.send(
        c,
        &Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: if qos == QoS::AtMostOnce {
                None
            } else {
                Some(pid(id))
            },
            properties,
            payload,
        }),
    );
}

pub fn send_ack(sim: &mut Sim, c: Client, kind: PacketType, id: u16) {
    let a = Ack::new(pid(id));
    let p = match kind {
        PacketType::PubAck => Packet::PubAck(a),
        PacketType::PubRec => Packet::PubRec(a),
        PacketType::PubRel => Packet::PubRel(a),
        _ => Packet::PubComp(a),
    };
    sim.send(c, &p);
}

pub fn disconnect(sim: &mut Sim, c: Client, code: ReasonCode) {
    sim.send(c, &Packet::Disconnect(Disconnect::new(code)));
}

/// (topic, payload, qos, retain, dup) of each PUBLISH in `frames`.
pub fn publishes(frames: &[Frame]) -> Vec<(String, Vec<u8>, QoS, bool, bool)> {
    frames
        .iter()
        .filter_map(|f| match f.packet() {
            Packet::Publish(p) => Some((
                p.topic.to_string(),
                p.payload.to_vec(),
                p.qos,
                p.retain,
                p.dup,
            )),
            _ => None,
        })
        .collect()
}

pub fn types(frames: &[Frame]) -> Vec<PacketType> {
    frames.iter().map(|f| f.packet().packet_type()).collect()
}

// ---------------------------------------------------------------------------------------
// Owned packets.

/// The properties a test looks at, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Vec<u8>>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

impl Props {
    pub fn from(p: &Properties<'_>) -> Self {
        Props {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.map(Into::into),
            response_topic: p.response_topic.map(Into::into),
            correlation_data: p.correlation_data.map(Into::into),
            subscription_identifiers: p.subscription_identifiers.iter().collect(),
            session_expiry_interval: p.session_expiry_interval,
            assigned_client_identifier: p.assigned_client_identifier.map(Into::into),
            server_keep_alive: p.server_keep_alive,
            authentication_method: p.authentication_method.map(Into::into),
            authentication_data: p.authentication_data.map(Into::into),
            response_information: p.response_information.map(Into::into),
            server_reference: p.server_reference.map(Into::into),
            reason_string: p.reason_string.map(Into::into),
            receive_maximum: p.receive_maximum,
            topic_alias_maximum: p.topic_alias_maximum,
            topic_alias: p.topic_alias,
            maximum_qos: p.maximum_qos,
            retain_available: p.retain_available,
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            maximum_packet_size: p.maximum_packet_size,
            wildcard_subscription_available: p.wildcard_subscription_available,
            subscription_identifier_available: p.subscription_identifier_available,
            shared_subscription_available: p.shared_subscription_available,
        }
    }

    /// Nothing a problem report would carry (Reason String, User Properties).
    pub fn no_problem_info(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAckInfo {
    pub session_present: bool,
    pub code: ReasonCode,
    pub props: Props,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pub {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    pub pid: Option<u16>,
    pub props: Props,
}

/// A decoded frame from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P {
    ConnAck(ConnAckInfo),
    Publish(Pub),
    PubAck {
        pid: u16,
        code: ReasonCode,
    },
    PubRec {
        pid: u16,
        code: ReasonCode,
    },
    PubRel {
        pid: u16,
        code: ReasonCode,
    },
    PubComp {
        pid: u16,
        code: ReasonCode,
    },
    SubAck {
        pid: u16,
        codes: Vec<ReasonCode>,
        props: Props,
    },
    UnsubAck {
        pid: u16,
        codes: Vec<ReasonCode>,
        props: Props,
    },
    PingResp,
    Disconnect {
        code: ReasonCode,
        props: Props,
    },
    Auth {
        code: ReasonCode,
        props: Props,
    },
    /// A packet only a client sends (the broker must never send one).
    ClientOnly(PacketType),
}

impl P {
    pub fn packet_type(&self) -> PacketType {
        match self {
            P::ConnAck(_) => PacketType::ConnAck,
            P::Publish(_) => PacketType::Publish,
            P::PubAck { .. } => PacketType::PubAck,
            P::PubRec { .. } => PacketType::PubRec,
            P::PubRel { .. } => PacketType::PubRel,
            P::PubComp { .. } => PacketType::PubComp,
            P::SubAck { .. } => PacketType::SubAck,
            P::UnsubAck { .. } => PacketType::UnsubAck,
            P::PingResp => PacketType::PingResp,
            P::Disconnect { .. } => PacketType::Disconnect,
            P::Auth { .. } => PacketType::Auth,
            P::ClientOnly(t) => *t,
        }
    }
}

pub fn owned(f: &Frame) -> P {
    match f.packet() {
        Packet::ConnAck(a) => P::ConnAck(ConnAckInfo {
            session_present: a.session_present,
            code: a.reason_code,
            props: Props::from(&a.properties),
        }),
        Packet::Publish(p) => P::Publish(Pub {
            topic: p.topic.into(),
            payload: p.payload.into(),
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            pid: p.packet_id.map(|x| x.get()),
            props: Props::from(&p.properties),
        }),
        Packet::PubAck(a) => P::PubAck {
            pid: a.packet_id.get(),
            code: a.reason_code,
        },
        Packet::PubRec(a) => P::PubRec {
            pid: a.packet_id.get(),
            code: a.reason_code,
        },
        Packet::PubRel(a) => P::PubRel {
            pid: a.packet_id.get(),
            code: a.reason_code,
        },
        Packet::PubComp(a) => P::PubComp {
            pid: a.packet_id.get(),
            code: a.reason_code,
        },
        Packet::SubAck(s) => P::SubAck {
            pid: s.packet_id.get(),
            codes: s.reason_codes.iter().collect(),
            props: Props::from(&s.properties),
        },
        Packet::UnsubAck(s) => P::UnsubAck {
            pid: s.packet_id.get(),
            codes: s.reason_codes.iter().collect(),
            props: Props::from(&s.properties),
        },
        Packet::PingResp => P::PingResp,
        Packet::Disconnect(d) => P::Disconnect {
            code: d.reason_code,
            props: Props::from(&d.properties),
        },
        Packet::Auth(a) => P::Auth {
            code: a.reason_code,
            props: Props::from(&a.properties),
        },
        other => P::ClientOnly(other.packet_type()),
    }
}

pub fn owned_all(frames: &[Frame]) -> Vec<P> {
    frames.iter().map(owned).collect()
}

/// Every frame the broker sent to `c` since the last call, decoded.
pub fn recv(sim: &mut Sim, c: Client) -> Vec<P> {
    let frames = sim.recv(c);
    owned_all(&frames)
}

/// The PUBLISH packets among `ps`.
pub fn pubs(ps: &[P]) -> Vec<Pub> {
    ps.iter()
        .filter_map(|p| match p {
            P::Publish(x) => Some(x.clone()),
            _ => None,
        })
        .collect()
}

/// Payloads of the PUBLISH packets among `ps`, as strings.
pub fn payloads(ps: &[P]) -> Vec<String> {
    pubs(ps)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// Receives, and acknowledges every QoS 1/2 PUBLISH and PUBREL (completing QoS 2 flows)
/// until nothing more arrives; returns everything received.
pub fn recv_acking(sim: &mut Sim, c: Client) -> Vec<P> {
    let mut all = Vec::new();
    loop {
        let got = recv(sim, c);
        if got.is_empty() {
            return all;
        }
        for p in &got {
            match p {
                P::Publish(x) => match (x.qos, x.pid) {
                    (QoS::AtLeastOnce, Some(id)) => send_ack(sim, c, PacketType::PubAck, id),
                    (QoS::ExactlyOnce, Some(id)) => send_ack(sim, c, PacketType::PubRec, id),
                    _ => {}
                },
                P::PubRel { pid, .. } => send_ack(sim, c, PacketType::PubComp, *pid),
                _ => {}
            }
        }
        all.extend(got);
    }
}

/// How many PUBACK packets are among `ps`.
pub fn pubacks(ps: &[P]) -> usize {
    ps.iter().filter(|p| matches!(p, P::PubAck { .. })).count()
}

/// The DISCONNECT reason among `ps`, if the broker sent one.
pub fn disconnect_code(ps: &[P]) -> Option<ReasonCode> {
    ps.iter().find_map(|p| match p {
        P::Disconnect { code, .. } => Some(*code),
        _ => None,
    })
}

/// Asserts the broker closed `c` after sending DISCONNECT with `code` (MQTT 5).
#[track_caller]
pub fn assert_disconnected(sim: &mut Sim, c: Client, code: ReasonCode) {
    let got = recv(sim, c);
    assert_eq!(
        disconnect_code(&got),
        Some(code),
        "expected DISCONNECT {code}, got {got:?}"
    );
    assert!(
        matches!(got.last(), Some(P::Disconnect { .. })),
        "DISCONNECT must be the last packet: {got:?}"
    );
    assert!(sim.is_closed(c), "connection must be closed");
}

/// Asserts the broker closed `c` without sending anything more.
#[track_caller]
pub fn assert_closed_silently(sim: &mut Sim, c: Client) {
    let got = recv(sim, c);
    assert!(
        got.is_empty(),
        "expected nothing before the close, got {got:?}"
    );
    assert!(sim.is_closed(c), "connection must be closed");
}

/// A client identifier, starting with `prefix`, that the given shard owns.
pub fn id_on(prefix: &str, shard: u16, shards: u16) -> String {
    (0..10_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| broker_core::shard::owner_of_client(id, shards) == shard)
        .expect("an id for every shard")
}

// ---------------------------------------------------------------------------------------
// Test policies.

/// What the recording hook saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Dropped {
        client: String,
        topic: String,
        payload: Vec<u8>,
        why: DropReason,
    },
    WillPublished {
        client: String,
        topic: String,
    },
    Terminated {
        client: String,
        why: SessionEnd,
    },
    Expired(String),
    Acked {
        client: String,
        payload: Vec<u8>,
    },
}

/// A shared log of hook calls.
#[derive(Debug, Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    pub fn snapshot(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    pub fn drops(&self) -> Vec<(String, String, DropReason)> {
        self.snapshot()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Dropped {
                    client,
                    payload,
                    why,
                    ..
                } => Some((client, String::from_utf8_lossy(&payload).into_owned(), why)),
                _ => None,
            })
            .collect()
    }
}

/// Hooks that record into a [`Log`].
#[derive(Debug, Clone, Default)]
pub struct Recorder(pub Log);

impl Hooks for Recorder {
    fn on_dropped(&mut self, client_id: &str, msg: &Message, why: DropReason) {
        self.0 .0.lock().unwrap().push(Seen::Dropped {
            client: client_id.into(),
            topic: msg.topic().into(),
            payload: msg.payload().into(),
            why,
        });
    }
    fn on_will_published(&mut self, client_id: &str, msg: &Message) {
        self.0 .0.lock().unwrap().push(Seen::WillPublished {
            client: client_id.into(),
            topic: msg.topic().into(),
        });
    }
    fn on_session_terminated(&mut self, client_id: &str, why: SessionEnd) {
        self.0 .0.lock().unwrap().push(Seen::Terminated {
            client: client_id.into(),
            why,
        });
    }
    fn on_session_expired(&mut self, client_id: &str) {
        self.0
             .0
            .lock()
            .unwrap()
            .push(Seen::Expired(client_id.into()));
    }
    fn on_acked(&mut self, client_id: &str, msg: &Message) {
        self.0 .0.lock().unwrap().push(Seen::Acked {
            client: client_id.into(),
            payload: msg.payload().into(),
        });
    }
}

/// A simulation whose shards record their hook calls into one log.
pub fn sim_logged(cfg: Config, shards: usize) -> (Sim, Log) {
    let log = Log::default();
    let l = log.clone();
    let s = Sim::with_policies(cfg, shards, move |_| Policy {
        hooks: Box::new(Recorder(l.clone())),
        ..Policy::default()
    });
    (s, log)
}

/// A toy authenticator.
///
/// User name / password: user `bad` is refused with 0x86 (Bad User Name or Password),
/// user `banned` with 0x87 (Not authorized), user `weird` with a code CONNACK cannot
/// carry; everyone else is let in.
///
/// Enhanced authentication, method `TOY` (challenge-response): the client's first data
/// is `hello` (or `quick` to be let in at once, `fail` to be refused); the server answers
/// with a challenge `nonce-N`, and the client must send the challenge reversed.
#[derive(Debug, Default)]
pub struct ToyAuth {
    pending: HashMap<ConnId, Vec<u8>>,
    next: u32,
    /// Steps seen: (reauth, method, data).
    pub starts: Arc<Mutex<Vec<(bool, String)>>>,
}

pub const TOY: &str = "TOY";

pub fn reversed(b: &[u8]) -> Vec<u8> {
    b.iter().rev().copied().collect()
}

impl Authenticator for ToyAuth {
    fn authenticate(&mut self, req: &ConnectRequest<'_>) -> Result<Option<Box<str>>, ReasonCode> {
        match req.username {
            Some("bad") => Err(ReasonCode::BadUserNameOrPassword),
            Some("banned") => Err(ReasonCode::NotAuthorized),
            // A code that does not exist in CONNACK: the broker must not send it.
            Some("weird") => Err(ReasonCode::KeepAliveTimeout),
            _ => Ok(None),
        }
    }

    fn auth_start(
        &mut self,
        req: &ConnectRequest<'_>,
        method: &str,
        data: Option<&[u8]>,
        reauth: bool,
    ) -> AuthStep {
        self.starts
            .lock()
            .unwrap()
            .push((reauth, method.to_string()));
        if method != TOY {
            return AuthStep::Fail(ReasonCode::BadAuthenticationMethod);
        }
        match data {
            Some(b"quick") => AuthStep::Success(Some(b"welcome".to_vec())),
            Some(b"hello") => {
                self.next += 1;
                let nonce = format!("nonce-{}", self.next).into_bytes();
                self.pending.insert(req.conn, reversed(&nonce));
                AuthStep::Continue(nonce)
            }
            _ => AuthStep::Fail(ReasonCode::NotAuthorized),
        }
    }

    fn auth_continue(&mut self, conn: ConnId, method: &str, data: Option<&[u8]>) -> AuthStep {
        if method != TOY {
            return AuthStep::Fail(ReasonCode::BadAuthenticationMethod);
        }
        match self.pending.remove(&conn) {
            Some(expected) if data == Some(&expected[..]) => {
                AuthStep::Success(Some(b"ok".to_vec()))
            }
            _ => AuthStep::Fail(ReasonCode::NotAuthorized),
        }
    }

    fn auth_abort(&mut self, conn: ConnId) {
        self.pending.remove(&conn);
    }
}

/// Refuses subscriptions to `secret/...`, publications to `forbidden/...` and delivery
/// of `hidden/...` to anyone.
#[derive(Debug, Default, Clone, Copy)]
pub struct Refuser;

impl Authorizer for Refuser {
    fn can_publish(&mut self, _c: &ClientInfo<'_>, topic: &str, _q: QoS, _r: bool) -> bool {
        !topic.starts_with("forbidden/")
    }
    fn can_subscribe(&mut self, _c: &ClientInfo<'_>, filter: &str, _q: QoS) -> bool {
        !filter.starts_with("secret/")
    }
    fn can_receive(&mut self, _c: &ClientInfo<'_>, topic: &str) -> bool {
        !topic.starts_with("hidden/")
    }
    fn checks_receive(&self) -> bool {
        true
    }
}

/// A simulation with the toy authenticator, the refusing authorizer and the recorder.
pub fn sim_policy(cfg: Config, shards: usize) -> (Sim, Log) {
    let log = Log::default();
    let l = log.clone();
    let s = Sim::with_policies(cfg, shards, move |_| Policy {
        authenticator: Box::new(ToyAuth::default()),
        authorizer: Box::new(Refuser),
        hooks: Box::new(Recorder(l.clone())),
    });
    (s, log)
}

/// Encodes a packet in a version (for byte-level tests).
pub fn bytes_of(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0u8; p.encoded_len(v).expect("encodable")];
    let n = p.emit(v, &mut buf).expect("encodable");
    buf.truncate(n);
    buf
}

// ---------------------------------------------------------------------------------------
// Raw bytes, for what the codec would refuse to encode.

/// A Variable Byte Integer.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A length-prefixed string or binary field.
pub fn field(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// A packet from its first byte and body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    v.extend(varint(body.len()));
    v.extend_from_slice(body);
    v
}

/// A CONNECT from its parts; `props` is the raw MQTT 5 property block (without its
/// length), written only for level 5; `payload` is the raw payload.
pub fn raw_connect(
    name: &[u8],
    level: u8,
    flags: u8,
    keep_alive: u16,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = field(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.extend(varint(props.len()));
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// Opens a raw connection (frames decoded as `v`) and sends `bytes`.
pub fn open_raw(sim: &mut Sim, v: ProtocolVersion, bytes: &[u8]) -> Client {
    let c = sim.open(0, v).expect("accepted");
    sim.send_bytes(c, bytes);
    c
}
