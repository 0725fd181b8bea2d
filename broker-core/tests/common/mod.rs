//! Helpers for spec tests: a scripted MQTT client on top of the simulation harness.
#![allow(dead_code)]

use broker_core::sim::{Client, Frame, Sim};
use broker_core::Config;
use mqtt_proto::*;

pub const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

pub fn sim() -> Sim {
    Sim::new(Config::default(), 1)
}

pub fn connect_packet<'a>(id: &'a str, clean: bool, v: ProtocolVersion) -> Connect<'a> {
    Connect {
        protocol: v,
        clean_start: clean,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: id,
        will: None,
        username: None,
        password: None,
    }
}

/// Opens a connection, sends CONNECT and returns the client with the CONNACK frame.
pub fn connect_with(sim: &mut Sim, shard: usize, c: &Connect<'_>) -> (Client, Frame) {
    let cl = sim.open(shard, c.protocol).expect("accepted");
    sim.send(cl, &Packet::Connect(*c));
    let frames = sim.recv(cl);
    let first = frames.into_iter().next().expect("a CONNACK");
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
    let subs = [Subscription { filter, options }];
    let ids: Vec<u32> = id.into_iter().collect();
    sim.send(
        c,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
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
        .expect("SUBACK");
    let codes = match frames[i].packet() {
        Packet::SubAck(s) => s.reason_codes.iter().collect(),
        _ => unreachable!(),
    };
    let rest: Vec<_> = frames[i + 1..].to_vec();
    sim.unread(c, &rest);
    codes
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
            properties: Properties::default(),
            payload,
        }),
    );
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
