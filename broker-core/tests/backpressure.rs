//! Back-pressure under a flood: eight publishers that never wait for their acknowledgements
//! (3.1.1: every message at once; 5.0: as many as the server's Receive Maximum allows)
//! into one slow subscriber, at QoS 1 and QoS 2, on one shard and across shards. Every
//! message a publisher got its PUBACK (QoS 1) or PUBREC (QoS 2) for must reach the
//! subscriber: at least once for QoS 1, exactly once for QoS 2, in each publisher's order.
//! The publishers must be held while the subscriber's queue is full, and resume.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use broker_core::sim::{Client, Sim};
use broker_core::Config;
use common::*;
use mqtt_proto::{PacketType, ProtocolVersion, QoS};
use std::collections::{BTreeMap, BTreeSet};

const PUBLISHERS: usize = 8;
const MESSAGES: u16 = 150;
/// Acknowledgements the slow subscriber sends per round.
const SUBSCRIBER_PACE: usize = 3;

struct Publisher {
    client: Client,
    next: u16,
    /// Packet ids sent and not yet acknowledged (PUBACK, or PUBREC for QoS 2).
    unacked: BTreeSet<u16>,
    /// Sequence numbers acknowledged.
    acked: BTreeSet<u16>,
    /// QoS 2: PUBREL sent, PUBCOMP awaited.
    releasing: BTreeSet<u16>,
}

fn flood(v: ProtocolVersion, qos: QoS, shards: usize) {
    let cfg = Config {
        max_queued_messages: 10,
        max_inflight_messages: 4,
        ..Config::default()
    };
    // 3.1.1 has no Receive Maximum: the publishers send everything without waiting.
    // A 5.0 client keeps to the server's.
    let window = if v.is_v5() {
        usize::from(cfg.receive_maximum)
    } else {
        usize::MAX
    };
    let mut s = Sim::new(cfg, shards);
    let sub = connect(&mut s, &id_on("sub", 0, shards as u16), true, v);
    subscribe(&mut s, sub, "flood/#", qos);
    let mut pubs: Vec<Publisher> = (0..PUBLISHERS)
        .map(|k| {
            let id = id_on(&format!("p{k}-"), (k % shards) as u16, shards as u16);
            Publisher {
                client: connect(&mut s, &id, true, v),
                next: 0,
                unacked: BTreeSet::new(),
                acked: BTreeSet::new(),
                releasing: BTreeSet::new(),
            }
        })
        .collect();

    // (publisher, sequence) in the order the subscriber got them.
    let mut delivered: Vec<(usize, u16)> = Vec::new();
    // Acknowledgements the subscriber still owes: (kind, packet id).
    let mut owed: Vec<(PacketType, u16)> = Vec::new();
    let mut held_seen = false;
    for _round in 0..50_000 {
        // Publishers write as much as their window allows, without reading first.
        for (k, p) in pubs.iter_mut().enumerate() {
            while p.next < MESSAGES && p.unacked.len() + p.releasing.len() < window {
                let seq = p.next;
                let pid = seq + 1;
                let payload = [k as u8, (seq >> 8) as u8, seq as u8];
                publish(
                    &mut s,
                    p.client,
                    &format!("flood/{k}"),
                    &payload,
                    qos,
                    false,
                    pid,
                );
                p.unacked.insert(pid);
                p.next += 1;
            }
        }
        held_seen |= s.brokers.iter().any(|b| b.metrics().publishers_held > 0);
        // The subscriber reads everything but acknowledges slowly.
        for f in recv(&mut s, sub) {
            match f {
                P::Publish(x) => {
                    let k = usize::from(x.payload[0]);
                    let seq = u16::from_be_bytes([x.payload[1], x.payload[2]]);
                    delivered.push((k, seq));
                    let kind = if x.qos == QoS::ExactlyOnce {
                        PacketType::PubRec
                    } else {
                        PacketType::PubAck
                    };
                    owed.push((kind, x.pid.expect("QoS 1/2 has a packet id")));
                }
                P::PubRel { pid, .. } => owed.push((PacketType::PubComp, pid)),
                other => panic!("subscriber got {other:?}"),
            }
        }
        let n = owed.len().min(SUBSCRIBER_PACE);
        for (kind, pid) in owed.drain(..n) {
            send_ack(&mut s, sub, kind, pid);
        }
        // Publishers read their acknowledgements.
        for p in pubs.iter_mut() {
            for f in recv(&mut s, p.client) {
                match f {
                    P::PubAck { pid, code } | P::PubRec { pid, code } => {
                        assert!(!code.is_error(), "refused: {code:?}");
                        assert!(p.unacked.remove(&pid), "unexpected ack {pid}");
                        p.acked.insert(pid - 1);
                        if qos == QoS::ExactlyOnce {
                            send_ack(&mut s, p.client, PacketType::PubRel, pid);
                            p.releasing.insert(pid);
                        }
                    }
                    P::PubComp { pid, .. } => {
                        assert!(p.releasing.remove(&pid));
                    }
                    other => panic!("publisher got {other:?}"),
                }
            }
        }
        let done = pubs
            .iter()
            .all(|p| p.acked.len() == usize::from(MESSAGES) && p.releasing.is_empty());
        if done && owed.is_empty() {
            break;
        }
    }
    let label = format!("{v:?} QoS {qos:?} on {shards} shard(s)");
    assert!(held_seen, "{label}: the publishers were never held");
    for (k, p) in pubs.iter().enumerate() {
        assert!(!s.is_closed(p.client), "{label}: publisher {k} was closed");
        assert_eq!(
            p.acked.len(),
            usize::from(MESSAGES),
            "{label}: publisher {k} did not resume to the end"
        );
    }
    assert!(!s.is_closed(sub), "{label}: the subscriber was closed");
    let mut copies: BTreeMap<(usize, u16), usize> = BTreeMap::new();
    for d in &delivered {
        *copies.entry(*d).or_default() += 1;
    }
    for (k, p) in pubs.iter().enumerate() {
        for seq in &p.acked {
            let n = copies.get(&(k, *seq)).copied().unwrap_or(0);
            assert!(n >= 1, "{label}: acknowledged ({k}, {seq}) never delivered");
            if qos == QoS::ExactlyOnce {
                assert_eq!(n, 1, "{label}: ({k}, {seq}) delivered {n} times");
            }
        }
    }
    // Each publisher's messages arrive in the order it sent them ([MQTT-4.6.0-6] v5).
    for k in 0..PUBLISHERS {
        let seqs: Vec<u16> = delivered
            .iter()
            .filter(|(p, _)| *p == k)
            .map(|(_, s)| *s)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{label}: publisher {k} out of order: {seqs:?}"
        );
    }
    let dropped: u64 = s
        .brokers
        .iter()
        .map(|b| b.metrics().dropped_queue_full)
        .sum();
    assert_eq!(dropped, 0, "{label}: messages dropped");
}

#[test]
fn qos1_v311_one_shard() {
    flood(V3, Q1, 1);
}

#[test]
fn qos2_v311_one_shard() {
    flood(V3, Q2, 1);
}

#[test]
fn qos1_v5_one_shard() {
    flood(V5, Q1, 1);
}

#[test]
fn qos2_v5_one_shard() {
    flood(V5, Q2, 1);
}

#[test]
fn qos1_v311_across_shards() {
    flood(V3, Q1, 3);
}

#[test]
fn qos2_v311_across_shards() {
    flood(V3, Q2, 3);
}

#[test]
fn qos1_v5_across_shards() {
    flood(V5, Q1, 3);
}

#[test]
fn qos2_v5_across_shards() {
    flood(V5, Q2, 3);
}

/// A client that publishes to a topic it subscribes to, never waiting, while its own
/// queue is full: its acknowledgements are still served while it is held, so it cannot
/// deadlock itself.
#[test]
fn a_held_publisher_that_subscribes_to_itself_does_not_deadlock() {
    for v in [V3, V5] {
        let mut s = sim_cfg(Config {
            max_queued_messages: 5,
            max_inflight_messages: 2,
            ..Config::default()
        });
        let c = connect(&mut s, "echo", true, v);
        subscribe(&mut s, c, "echo", Q1);
        let n: u16 = if v.is_v5() { 90 } else { 300 };
        for i in 0..n {
            publish(&mut s, c, "echo", &i.to_be_bytes(), Q1, false, i + 1);
        }
        let mut got = Vec::new();
        let mut acked = 0;
        for _ in 0..10_000 {
            let frames = recv(&mut s, c);
            if frames.is_empty() {
                break;
            }
            for f in frames {
                match f {
                    P::Publish(x) => {
                        got.push(u16::from_be_bytes([x.payload[0], x.payload[1]]));
                        send_ack(&mut s, c, PacketType::PubAck, x.pid.unwrap());
                    }
                    P::PubAck { .. } => acked += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(acked, n, "{v:?}: every PUBLISH acknowledged");
        assert_eq!(
            got,
            (0..n).collect::<Vec<_>>(),
            "{v:?}: all delivered, in order"
        );
        assert!(s.brokers[0].metrics().publishers_held > 0);
    }
}

/// `queue_full = drop`: Mosquitto's behaviour, every drop counted.
#[test]
fn queue_full_drop_acknowledges_and_counts_the_drop() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_messages: 2,
            max_inflight_messages: 1,
            queue_full: broker_core::QueueFull::Drop,
            ..Config::default()
        },
        1,
    );
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "t", Q1);
    let p = connect(&mut s, "p", true, V3);
    for i in 0..10u16 {
        publish(&mut s, p, "t", b"x", Q1, false, i + 1);
    }
    let acks = pubacks(&recv(&mut s, p));
    assert_eq!(acks, 10, "acknowledged at once");
    assert_eq!(
        log.drops().len(),
        7,
        "1 in flight, 2 queued, 7 dropped and reported"
    );
    assert_eq!(s.brokers[0].metrics().dropped_queue_full, 7);
    assert_eq!(s.brokers[0].metrics().publishers_held, 0);
}

/// A held publisher's keep alive does not expire while the broker is not reading it, and
/// PINGREQ is answered while it is held.
#[test]
fn a_held_publisher_is_kept_alive_and_answered() {
    let mut s = sim_cfg(Config {
        max_queued_messages: 1,
        max_inflight_messages: 1,
        stall_timeout_ms: 600_000,
        ..Config::default()
    });
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "t", Q1);
    let mut cp = connect_packet("p", true, V3);
    cp.keep_alive = 10;
    let (p, _) = connect_with(&mut s, 0, &cp);
    for i in 0..5u16 {
        publish(&mut s, p, "t", b"x", Q1, false, i + 1);
    }
    assert_eq!(
        recv(&mut s, p).len(),
        2,
        "1 in flight, 1 queued: acknowledged"
    );
    s.send(p, &mqtt_proto::Packet::PingReq);
    assert_eq!(recv(&mut s, p), vec![P::PingResp], "served while held");
    // Far past 1.5 times the keep alive without a byte processed from it.
    s.advance(60_000);
    assert!(!s.is_closed(p), "a held publisher is not timed out");
    let _ = recv_acking(&mut s, sub);
    let acks = pubacks(&recv(&mut s, p));
    assert_eq!(acks, 3, "released: the rest acknowledged");
}

/// Publishers with small windows into a subscriber slower than them: the queue fills and
/// their acknowledgements wait, but their few waiting messages stay within a queue's worth
/// of overflow, so the publishers themselves are not stopped (which would cost a round
/// trip per message).
#[test]
fn small_publisher_windows_are_not_held() {
    let mut s = Sim::new(
        Config {
            max_inflight_messages: 20,
            ..Config::default()
        },
        2,
    );
    let sub = connect(&mut s, &id_on("sub", 1, 2), true, V3);
    subscribe(&mut s, sub, "f/#", Q1);
    let ps: Vec<Client> = (0..8)
        .map(|k| {
            connect(
                &mut s,
                &id_on(&format!("p{k}-"), (k % 2) as u16, 2),
                true,
                V3,
            )
        })
        .collect();
    let mut out = [0u16; 8];
    let mut pid = [0u16; 8];
    for _round in 0..2000 {
        for (k, p) in ps.iter().enumerate() {
            while out[k] < 10 {
                pid[k] = pid[k] % 60000 + 1;
                publish(&mut s, *p, "f/x", b"x", Q1, false, pid[k]);
                out[k] += 1;
            }
        }
        for f in recv(&mut s, sub) {
            if let P::Publish(x) = f {
                send_ack(&mut s, sub, PacketType::PubAck, x.pid.unwrap());
            }
        }
        for (k, p) in ps.iter().enumerate() {
            for f in recv(&mut s, *p) {
                if let P::PubAck { .. } = f {
                    out[k] -= 1;
                }
            }
        }
        let held: u64 = s.brokers.iter().map(|b| b.metrics().publishers_held).sum();
        assert_eq!(
            held,
            0,
            "round {_round} queue {:?}",
            s.brokers[1].session_queue_len(&id_on("sub", 1, 2))
        );
    }
}

/// A held publisher delays nobody else: another publisher on the same shard, to a
/// subscriber with room, is acknowledged and delivered at once.
#[test]
fn a_held_publisher_does_not_delay_others() {
    let mut s = sim_cfg(Config {
        max_queued_messages: 2,
        max_inflight_messages: 1,
        ..Config::default()
    });
    let slow = connect(&mut s, "slow", true, V3);
    subscribe(&mut s, slow, "slow", Q1);
    let fast = connect(&mut s, "fast", true, V3);
    subscribe(&mut s, fast, "fast", Q1);
    let a = connect(&mut s, "a", true, V3);
    let b = connect(&mut s, "b", true, V3);
    for i in 0..20u16 {
        publish(&mut s, a, "slow", b"a", Q1, false, i + 1);
    }
    assert!(s.brokers[0].metrics().publishers_held > 0, "a is held");
    for i in 0..50u16 {
        publish(&mut s, b, "fast", b"b", Q1, false, i + 1);
        let got = pubs(&recv_acking(&mut s, fast));
        assert_eq!(got.len(), 1, "delivered at once");
        let acks = recv(&mut s, b);
        assert!(matches!(acks.as_slice(), [P::PubAck { .. }]), "{acks:?}");
    }
    let a_acks = pubacks(&recv(&mut s, a));
    assert!(a_acks < 20, "a is still held: {a_acks}");
    // The slow subscriber catches up: a is released and completes.
    assert_eq!(pubs(&recv_acking(&mut s, slow)).len(), 20);
    let later = pubacks(&recv(&mut s, a));
    assert_eq!(a_acks + later, 20);
}

/// An offline persistent session never holds publishers: beyond its queue its new
/// messages are dropped and counted, and the publisher is acknowledged at once.
#[test]
fn an_offline_session_never_holds_publishers() {
    let (mut s, log) = sim_logged(
        Config {
            max_queued_messages: 3,
            ..Config::default()
        },
        1,
    );
    let c = connect(&mut s, "away", false, V3);
    subscribe(&mut s, c, "t", Q1);
    s.drop_connection(c);
    let p = connect(&mut s, "p", true, V3);
    for i in 0..10u16 {
        publish(&mut s, p, "t", b"x", Q1, false, i + 1);
    }
    let acks = pubacks(&recv(&mut s, p));
    assert_eq!(acks, 10);
    assert_eq!(s.brokers[0].metrics().publishers_held, 0);
    assert_eq!(log.drops().len(), 7);
    assert_eq!(s.brokers[0].metrics().dropped_queue_full, 7);
}

/// At the broker's memory limit (reported by the shell), QoS 0 is dropped and a QoS 1
/// publisher is not read until the limit is no longer reached; then it resumes, in order.
#[test]
fn memory_limit_drops_qos0_and_holds_qos1_publishers() {
    let mut s = common::sim();
    let sub = common::connect(&mut s, "sub", true, common::V3);
    common::subscribe(&mut s, sub, "m/#", common::Q1);
    let p = common::connect(&mut s, "pub", true, common::V3);
    s.brokers[0].set_memory_pressure(true);
    common::publish(&mut s, p, "m/a", b"zero", common::Q0, false, 0);
    common::publish(&mut s, p, "m/a", b"one", common::Q1, false, 1);
    common::publish(&mut s, p, "m/a", b"two", common::Q1, false, 2);
    assert!(
        common::recv(&mut s, sub).is_empty(),
        "delivered at the limit"
    );
    assert_eq!(
        common::pubacks(&common::recv(&mut s, p)),
        0,
        "read at the limit"
    );
    assert_eq!(s.brokers[0].metrics().dropped_memory, 1);
    s.brokers[0].set_memory_pressure(false);
    s.pump();
    assert_eq!(common::pubacks(&common::recv(&mut s, p)), 2);
    assert_eq!(common::payloads(&common::recv(&mut s, sub)), ["one", "two"]);
}
