//! The write-ahead records (feature `store`) against an in-memory model of the store:
//! what waits for a batch to be written, and what a restart restores from the written
//! records only (a "crash" drops every batch not reported written).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use broker_core::sim::{Client, Sim};
use broker_core::store::{records, Loader, Op, Space};
use broker_core::Config;
use common::*;
use mqtt_proto::*;
use std::collections::BTreeMap;

/// The store: one ordered map per space, written only by `commit`.
#[derive(Default, Clone)]
struct Disk {
    spaces: BTreeMap<u8, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Records written (puts and deletes that reached the maps).
    writes: usize,
}

impl Disk {
    fn apply(&mut self, buf: &[u8]) {
        for r in records(buf) {
            let space = self.spaces.entry(r.space as u8).or_default();
            self.writes += 1;
            match r.op {
                Op::Put | Op::Insert => {
                    space.insert(r.key.to_vec(), r.value.to_vec());
                }
                Op::Delete => {
                    space.remove(r.key);
                }
                Op::DeleteClient | Op::Forget => {
                    for s in Space::ALL {
                        if s == Space::Retained {
                            continue;
                        }
                        if let Some(m) = self.spaces.get_mut(&(s as u8)) {
                            m.retain(|k, _| !k.starts_with(r.key));
                        }
                    }
                }
            }
        }
    }

    /// Writes every shard's pending batch and reports it written; returns how many
    /// batches there were.
    fn commit(&mut self, s: &mut Sim) -> usize {
        let mut n = 0;
        for i in 0..s.brokers.len() {
            let mut buf = Vec::new();
            if let Some(id) = s.brokers[i].take_store_batch(&mut buf) {
                self.apply(&buf);
                s.brokers[i].handle_store_committed(id);
                n += 1;
            }
        }
        s.pump();
        n
    }

    /// Commits until nothing waits.
    fn settle(&mut self, s: &mut Sim) {
        for _ in 0..20 {
            if self.commit(s) == 0 {
                return;
            }
        }
        panic!("batches keep coming");
    }

    /// A broker restarted from what was written (`shards` shards, store enabled).
    fn restart(&self, shards: usize) -> Sim {
        let mut loader = Loader::new(0);
        for space in Space::ALL {
            if let Some(m) = self.spaces.get(&(space as u8)) {
                for (k, v) in m {
                    loader.add(space, k, v).expect("readable");
                }
            }
        }
        let (sessions, retained) = loader.finish();
        let mut s = Sim::new(Config::default(), shards);
        for b in &mut s.brokers {
            b.enable_store(0, 1000);
            for r in &sessions {
                b.restore_stored(s.now, r.clone());
            }
            for m in &retained {
                b.restore_retained(m.clone());
            }
        }
        s.pump();
        s
    }
}

fn store_sim(shards: usize) -> Sim {
    let mut s = Sim::new(Config::default(), shards);
    for b in &mut s.brokers {
        b.enable_store(0, 1000);
    }
    s
}

/// Connects (the CONNACK of a persistent session waits for its record: committed here).
/// What follows the CONNACK stays unread.
fn connect_stored(s: &mut Sim, d: &mut Disk, id: &str, clean: bool) -> (Client, bool) {
    let c = s.open(0, V3).expect("accepted");
    s.send(c, &Packet::Connect(connect_packet(id, clean, V3)));
    let mut got = s.recv(c);
    if got.is_empty() {
        d.settle(s);
        got = s.recv(c);
    }
    let present = match got.first().map(owned) {
        Some(P::ConnAck(a)) => {
            assert_eq!(a.code, ReasonCode::Success);
            a.session_present
        }
        other => panic!("no CONNACK: {other:?}"),
    };
    s.unread(c, &got[1..]);
    (c, present)
}

#[test]
fn puback_waits_for_the_store_and_a_restart_restores_queue_subscription_retained() {
    let mut d = Disk::default();
    let mut s = store_sim(1);
    let (sub, present) = connect_stored(&mut s, &mut d, "sub", false);
    assert!(!present);
    send_subscribe(&mut s, sub, "d/#", Q1);
    assert!(recv(&mut s, sub).is_empty(), "SUBACK before its record");
    d.commit(&mut s);
    assert!(matches!(recv(&mut s, sub).as_slice(), [P::SubAck { .. }]));
    disconnect(&mut s, sub, ReasonCode::Success);
    s.pump();

    let (p, _) = connect_stored(&mut s, &mut d, "pub", true);
    for i in 1..=5u16 {
        publish(&mut s, p, "d/x", format!("m{i}").as_bytes(), Q1, false, i);
    }
    publish(&mut s, p, "d/ret", b"kept", Q1, true, 6);
    assert_eq!(pubacks(&recv(&mut s, p)), 0, "PUBACK before the records");
    d.commit(&mut s);
    assert_eq!(pubacks(&recv(&mut s, p)), 6);

    // A crash: nothing but what was written survives.
    let mut s = d.restart(1);
    let (sub, present) = connect_stored(&mut s, &mut d, "sub", false);
    assert!(present, "the session survived");
    let got = recv_acking(&mut s, sub);
    assert_eq!(payloads(&got), ["m1", "m2", "m3", "m4", "m5", "kept"]);
    // The subscription survived: a new message reaches the session.
    let (p, _) = connect_stored(&mut s, &mut d, "pub", true);
    publish(&mut s, p, "d/y", b"after", Q1, false, 1);
    d.settle(&mut s);
    assert_eq!(payloads(&recv_acking(&mut s, sub)), ["after"]);
    // The retained message survived.
    let (c, _) = connect_stored(&mut s, &mut d, "late", true);
    subscribe(&mut s, c, "d/ret", Q1);
    assert_eq!(payloads(&recv(&mut s, c)), ["kept"]);
}

#[test]
fn a_batch_never_written_was_never_acknowledged() {
    let mut d = Disk::default();
    let mut s = store_sim(1);
    let (sub, _) = connect_stored(&mut s, &mut d, "sub", false);
    subscribe_committed(&mut s, &mut d, sub, "d/#", Q1);
    disconnect(&mut s, sub, ReasonCode::Success);
    let (p, _) = connect_stored(&mut s, &mut d, "pub", true);
    publish(&mut s, p, "d/x", b"lost", Q1, false, 1);
    // Crash before the batch is written: no PUBACK went out, and nothing is restored.
    assert_eq!(pubacks(&recv(&mut s, p)), 0);
    let mut s = d.restart(1);
    let (sub, present) = connect_stored(&mut s, &mut d, "sub", false);
    assert!(present);
    assert!(recv(&mut s, sub).is_empty());
}

/// The client sends a QoS 2 PUBLISH to `d/x` again (DUP), as after a reconnection.
fn resend_qos2(s: &mut Sim, c: Client, payload: &[u8], id: u16) {
    s.send(
        c,
        &Packet::Publish(Publish {
            dup: true,
            qos: Q2,
            retain: false,
            topic: "d/x",
            packet_id: Some(pid(id)),
            properties: Properties::default(),
            payload,
        }),
    );
}

fn send_subscribe(s: &mut Sim, c: Client, filter: &str, q: QoS) {
    let subs = [Subscription {
        filter,
        options: SubscriptionOptions::qos(q),
    }];
    s.send(
        c,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&subs),
        }),
    );
}

fn subscribe_committed(s: &mut Sim, d: &mut Disk, c: Client, f: &str, q: QoS) {
    send_subscribe(s, c, f, q);
    d.settle(s);
    assert!(matches!(recv(s, c).as_slice(), [P::SubAck { .. }]));
}

#[test]
fn messages_in_flight_are_resent_with_dup_and_their_packet_ids() {
    let mut d = Disk::default();
    let mut s = store_sim(2);
    let (sub, _) = connect_stored(&mut s, &mut d, "sub", false);
    subscribe_committed(&mut s, &mut d, sub, "d/#", Q1);
    let (p, _) = connect_stored(&mut s, &mut d, "pub", true);
    for i in 1..=3u16 {
        publish(&mut s, p, "d/x", format!("m{i}").as_bytes(), Q1, false, i);
    }
    d.settle(&mut s);
    // Received, never acknowledged.
    let first = pubs(&recv(&mut s, sub));
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|p| !p.dup));
    d.settle(&mut s);
    let mut s = d.restart(2);
    let (sub, present) = connect_stored(&mut s, &mut d, "sub", false);
    assert!(present);
    let again = pubs(&recv(&mut s, sub));
    assert_eq!(again.len(), 3, "{again:?}");
    for (a, b) in first.iter().zip(&again) {
        assert_eq!((a.payload.as_slice(), a.pid), (b.payload.as_slice(), b.pid));
        assert!(b.dup, "[MQTT-3.3.1-1] a resend carries DUP");
    }
    // Acknowledged now: gone from the store.
    for p in &again {
        send_ack(&mut s, sub, PacketType::PubAck, p.pid.unwrap());
    }
    d.settle(&mut s);
    let msgs = d.spaces.get(&(Space::Msg as u8)).map_or(0, |m| m.len());
    assert_eq!(msgs, 0, "acknowledged messages left records");
}

#[test]
fn qos2_is_exactly_once_across_a_restart() {
    let mut d = Disk::default();
    let mut s = store_sim(1);
    let (sub, _) = connect_stored(&mut s, &mut d, "sub", false);
    subscribe_committed(&mut s, &mut d, sub, "d/#", Q2);
    let (p, _) = connect_stored(&mut s, &mut d, "pub", false);
    publish(&mut s, p, "d/x", b"once", Q2, false, 7);
    // The delivery waits for its identifier's record; PUBREC for the received id's.
    assert!(pubs(&recv(&mut s, sub)).is_empty());
    assert!(recv(&mut s, p).is_empty());
    d.settle(&mut s);
    assert!(matches!(
        recv(&mut s, p).as_slice(),
        [P::PubRec { pid: 7, .. }]
    ));
    let got = pubs(&recv(&mut s, sub));
    assert_eq!(got.len(), 1);
    let spid = got[0].pid.unwrap();
    // The subscriber answers PUBREC; PUBREL waits for that state's record.
    send_ack(&mut s, sub, PacketType::PubRec, spid);
    assert!(recv(&mut s, sub).is_empty());
    d.settle(&mut s);
    assert!(matches!(recv(&mut s, sub).as_slice(), [P::PubRel { .. }]));

    let mut s = d.restart(1);
    // The publisher never saw... it did see PUBREC; say it resends anyway (DUP): no second
    // delivery, PUBREC again.
    let (p, present) = connect_stored(&mut s, &mut d, "pub", false);
    assert!(present);
    let (sub, _) = connect_stored(&mut s, &mut d, "sub", false);
    // The subscriber gets PUBREL again (not the message).
    let rel = recv(&mut s, sub);
    assert!(
        matches!(rel.as_slice(), [P::PubRel { pid, .. }] if *pid == spid),
        "{rel:?}"
    );
    resend_qos2(&mut s, p, b"once", 7);
    d.settle(&mut s);
    assert!(matches!(
        recv(&mut s, p).as_slice(),
        [P::PubRec { pid: 7, .. }]
    ));
    assert!(pubs(&recv(&mut s, sub)).is_empty(), "delivered twice");
    send_ack(&mut s, p, PacketType::PubRel, 7);
    assert!(
        recv(&mut s, p).is_empty(),
        "PUBCOMP before the id's release is written"
    );
    d.settle(&mut s);
    assert!(matches!(
        recv(&mut s, p).as_slice(),
        [P::PubComp { pid: 7, .. }]
    ));
    send_ack(&mut s, sub, PacketType::PubComp, spid);
    d.settle(&mut s);
    for space in [Space::Msg, Space::Inflight, Space::Qos2In] {
        let n = d.spaces.get(&(space as u8)).map_or(0, |m| m.len());
        assert_eq!(n, 0, "{} left records", space.name());
    }
}

#[test]
fn clean_sessions_never_wait_for_the_store() {
    let mut s = store_sim(1);
    let sub = connect(&mut s, "sub", true, V3);
    subscribe(&mut s, sub, "d/#", Q1);
    let p = connect(&mut s, "pub", true, V3);
    publish(&mut s, p, "d/x", b"x", Q1, false, 1);
    assert_eq!(pubacks(&recv(&mut s, p)), 1);
    let mut buf = Vec::new();
    assert_eq!(s.brokers[0].take_store_batch(&mut buf), None);
}

#[test]
fn a_session_that_ends_leaves_no_record() {
    let mut d = Disk::default();
    let mut s = store_sim(1);
    let (sub, _) = connect_stored(&mut s, &mut d, "sub", false);
    subscribe_committed(&mut s, &mut d, sub, "d/#", Q1);
    disconnect(&mut s, sub, ReasonCode::Success);
    let (p, _) = connect_stored(&mut s, &mut d, "pub", true);
    publish(&mut s, p, "d/x", b"x", Q1, false, 1);
    d.settle(&mut s);
    // Clean session: the stored one is discarded.
    let (_sub, present) = connect_stored(&mut s, &mut d, "sub", true);
    assert!(!present);
    d.settle(&mut s);
    for space in [Space::Session, Space::Sub, Space::Msg] {
        let n = d.spaces.get(&(space as u8)).map_or(0, |m| m.len());
        assert_eq!(n, 0, "{} left records", space.name());
    }
}

/// Serves the shards' `Event::StoreLoad` requests from what was written.
fn serve_loads(s: &mut Sim, d: &Disk) -> usize {
    let loads = std::mem::take(&mut s.store_loads);
    let n = loads.len();
    for (shard, client, after, max) in loads {
        let mut prefix = Vec::new();
        broker_core::store::client_prefix(&client, &mut prefix);
        let msgs: Vec<_> = d
            .spaces
            .get(&(Space::Msg as u8))
            .into_iter()
            .flat_map(|m| m.range(prefix.clone()..))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| {
                broker_core::store::decode_message_record(&k[prefix.len()..], v, 0)
            })
            .filter(|m| m.seq > after)
            .take(max)
            .collect();
        s.brokers[shard].handle_store_loaded(&client, after, msgs);
    }
    s.pump();
    n
}

#[test]
fn a_queue_beyond_its_memory_share_continues_on_disk_in_order() {
    let mut d = Disk::default();
    let mut s = Sim::new(Config::default(), 1);
    s.brokers[0].enable_store(0, 3);
    let (sub, _) = connect_stored(&mut s, &mut d, "sub", false);
    subscribe_committed(&mut s, &mut d, sub, "d/#", Q1);
    disconnect(&mut s, sub, ReasonCode::Success);
    let (p, _) = connect_stored(&mut s, &mut d, "pub", true);
    for i in 1..=10u16 {
        publish(&mut s, p, "d/x", format!("m{i}").as_bytes(), Q1, false, i);
    }
    d.settle(&mut s);
    assert_eq!(pubacks(&recv(&mut s, p)), 10);
    assert_eq!(s.brokers[0].session_memory_len("sub"), Some(3), "in memory");
    assert_eq!(s.brokers[0].session_queue_len("sub"), Some(10), "in all");
    let (sub, _) = connect_stored(&mut s, &mut d, "sub", false);
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(payloads(&recv_acking(&mut s, sub)));
        d.settle(&mut s);
        if serve_loads(&mut s, &d) == 0 && got.len() >= 10 {
            break;
        }
    }
    let want: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    d.settle(&mut s);
    let left = d.spaces.get(&(Space::Msg as u8)).map_or(0, |m| m.len());
    assert_eq!(left, 0, "delivered messages left records");
}

#[test]
fn a_will_of_a_connection_the_crash_ended_is_published_after_restart() {
    let mut d = Disk::default();
    let mut s = store_sim(1);
    let mut c = connect_packet("dying", false, V3);
    c.will = Some(Will {
        qos: Q1,
        retain: false,
        properties: Properties::default(),
        topic: "will/x",
        payload: b"bye",
    });
    let cl = s.open(0, V3).expect("accepted");
    s.send(cl, &Packet::Connect(c));
    d.settle(&mut s);
    assert!(matches!(recv(&mut s, cl).first(), Some(P::ConnAck(_))));
    // A clean DISCONNECT elsewhere removes a will: here the broker just dies.
    let mut s = d.restart(1);
    let w = connect(&mut s, "watcher", true, V3);
    subscribe(&mut s, w, "will/#", Q1);
    s.advance(1);
    assert_eq!(payloads(&recv(&mut s, w)), ["bye"]);
    // Published once: not again after another restart.
    d.settle(&mut s);
    let mut s = d.restart(1);
    let w = connect(&mut s, "watcher", true, V3);
    subscribe(&mut s, w, "will/#", Q1);
    s.advance(1);
    assert!(recv(&mut s, w).is_empty(), "the will was published twice");
}

#[test]
fn a_cleared_retained_message_stays_cleared_after_restart() {
    let mut d = Disk::default();
    let mut s = store_sim(2);
    let p = connect(&mut s, "pub", true, V3);
    publish(&mut s, p, "r/t", b"keep", Q1, true, 1);
    publish(&mut s, p, "r/u", b"also", Q1, true, 2);
    d.settle(&mut s);
    publish(&mut s, p, "r/t", b"", Q1, true, 3);
    d.settle(&mut s);
    let mut s = d.restart(2);
    let c = connect(&mut s, "c", true, V3);
    subscribe(&mut s, c, "r/#", Q1);
    assert_eq!(payloads(&recv(&mut s, c)), ["also"]);
}

/// A QoS 2 message whose records are on another shard: the received identifier is only
/// recorded once they are written. A restart between the two shards' commits must not
/// turn the client's resend into a "duplicate" nobody delivers.
#[test]
fn qos2_received_id_is_not_written_before_the_message_records_on_other_shards() {
    let mut d = Disk::default();
    let mut s = store_sim(2);
    let sub_id = id_on("sub", 1, 2);
    let pub_id = id_on("pub", 0, 2);
    let (sub, _) = connect_stored(&mut s, &mut d, &sub_id, false);
    subscribe_committed(&mut s, &mut d, sub, "d/#", Q2);
    disconnect(&mut s, sub, ReasonCode::Success);
    let (p, _) = connect_stored(&mut s, &mut d, &pub_id, false);
    publish(&mut s, p, "d/x", b"precious", Q2, false, 9);
    // Only the publisher's shard writes its batch before the crash.
    let mut buf = Vec::new();
    if let Some(id) = s.brokers[0].take_store_batch(&mut buf) {
        d.apply(&buf);
        s.brokers[0].handle_store_committed(id);
    }
    s.pump();
    assert!(
        recv(&mut s, p).is_empty(),
        "PUBREC before the message was written"
    );
    let mut s = d.restart(2);
    let (p, _) = connect_stored(&mut s, &mut d, &pub_id, false);
    resend_qos2(&mut s, p, b"precious", 9);
    d.settle(&mut s);
    assert!(matches!(
        recv(&mut s, p).as_slice(),
        [P::PubRec { pid: 9, .. }]
    ));
    let (sub, _) = connect_stored(&mut s, &mut d, &sub_id, false);
    assert_eq!(payloads(&recv_acking(&mut s, sub)), ["precious"]);
}
