//! The client state machine against a broker shard, bytes moved by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use broker_core::client::{Client, ClientEvent, ClientOptions};
use broker_core::{Broker, Config, ConnId, Event, Instant, PeerInfo, Policy, TxBuf};
use mqtt_proto::{ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

struct Link {
    broker: Broker,
    now: Instant,
}

struct Peer {
    client: Client,
    conn: Option<ConnId>,
    events: Vec<ClientEvent>,
}

impl Link {
    fn new() -> Self {
        Self {
            broker: Broker::new(Config::default(), Policy::default()),
            now: Instant::from_millis(1000),
        }
    }
    fn connect(&mut self, p: &mut Peer) {
        p.conn = Some(
            self.broker
                .handle_accept(self.now, PeerInfo::default())
                .unwrap(),
        );
        p.client.handle_connected(self.now);
    }
    fn drop_link(&mut self, p: &mut Peer) {
        if let Some(c) = p.conn.take() {
            self.broker.handle_closed(c, self.now);
        }
        p.client.handle_disconnected(self.now);
    }
    /// Moves bytes both ways until quiet.
    fn run(&mut self, peers: &mut [&mut Peer]) {
        for _ in 0..100 {
            let mut moved = false;
            for p in peers.iter_mut() {
                let mut out = Vec::new();
                p.client.poll_transmit(self.now, &mut out);
                if let (Some(c), false) = (p.conn, out.is_empty()) {
                    let n = self.broker.handle_bytes(c, self.now, &out);
                    assert_eq!(n, out.len());
                    moved = true;
                }
            }
            while let Some(ev) = self.broker.poll_event() {
                moved = true;
                if let Event::Output(c) | Event::Close(c) = ev {
                    let mut tx = TxBuf::new();
                    while self
                        .broker
                        .poll_transmit(c, self.now, &mut tx, 1 << 20)
                        .more
                    {}
                    let bytes = tx.to_vec();
                    for p in peers.iter_mut() {
                        if p.conn == Some(c) {
                            let n = p.client.handle_bytes(self.now, &bytes);
                            assert_eq!(n, bytes.len());
                        }
                    }
                    if matches!(ev, Event::Close(_)) {
                        self.broker.handle_closed(c, self.now);
                    }
                }
            }
            for p in peers.iter_mut() {
                while let Some(e) = p.client.poll_event() {
                    p.events.push(e);
                }
            }
            if !moved {
                return;
            }
        }
    }
}

fn peer(id: &str, v: ProtocolVersion, clean: bool) -> Peer {
    Peer {
        client: Client::new(ClientOptions {
            client_id: id.into(),
            version: v,
            clean_start: clean,
            session_expiry: if clean { 0 } else { 3600 },
            ..ClientOptions::default()
        }),
        conn: None,
        events: Vec::new(),
    }
}

fn messages(p: &Peer) -> Vec<(String, Vec<u8>, QoS)> {
    p.events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some((m.topic.clone(), m.payload.clone(), m.qos)),
            _ => None,
        })
        .collect()
}

#[test]
fn publish_subscribe_all_qos_both_versions() {
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut l = Link::new();
        let mut s = peer("s", v, true);
        let mut p = peer("p", v, true);
        l.connect(&mut s);
        l.connect(&mut p);
        s.client
            .subscribe(&[("t/#".into(), SubscriptionOptions::qos(QoS::ExactlyOnce))])
            .unwrap();
        l.run(&mut [&mut s, &mut p]);
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            p.client
                .publish(l.now, "t/x", &[q as u8], q, false, &[])
                .unwrap();
        }
        l.run(&mut [&mut s, &mut p]);
        assert_eq!(messages(&s).len(), 3, "{v}: {:?}", s.events);
        let acked = p
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Published { .. }))
            .count();
        assert_eq!(acked, 3);
    }
}

#[test]
fn messages_published_while_offline_are_sent_after_reconnect() {
    let mut l = Link::new();
    let mut s = peer("s", ProtocolVersion::V5, false);
    let mut p = peer("p", ProtocolVersion::V5, false);
    l.connect(&mut s);
    l.connect(&mut p);
    s.client
        .subscribe(&[("t".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))])
        .unwrap();
    l.run(&mut [&mut s, &mut p]);
    l.drop_link(&mut p);
    for i in 0..5u8 {
        p.client
            .publish(l.now, "t", &[i], QoS::AtLeastOnce, false, &[])
            .unwrap();
    }
    l.connect(&mut p);
    l.run(&mut [&mut s, &mut p]);
    let got: Vec<u8> = messages(&s).iter().map(|m| m.1[0]).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

#[test]
fn subscriber_resumes_session_and_gets_queued_messages() {
    let mut l = Link::new();
    let mut s = peer("s", ProtocolVersion::V3_1_1, false);
    let mut p = peer("p", ProtocolVersion::V3_1_1, true);
    l.connect(&mut s);
    l.connect(&mut p);
    s.client
        .subscribe(&[("t".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))])
        .unwrap();
    l.run(&mut [&mut s, &mut p]);
    l.drop_link(&mut s);
    p.client
        .publish(l.now, "t", b"while away", QoS::AtLeastOnce, false, &[])
        .unwrap();
    l.run(&mut [&mut s, &mut p]);
    l.connect(&mut s);
    l.run(&mut [&mut s, &mut p]);
    assert!(s.events.iter().any(|e| matches!(
        e,
        ClientEvent::Connected {
            session_present: true,
            ..
        }
    )));
    assert_eq!(
        messages(&s),
        vec![("t".into(), b"while away".to_vec(), QoS::AtLeastOnce)]
    );
}

#[test]
fn offline_queue_bound_is_an_error_not_a_silent_loss() {
    let mut c = Client::new(ClientOptions {
        max_queued: 2,
        ..ClientOptions::default()
    });
    let now = Instant::from_millis(0);
    assert!(c
        .publish(now, "t", b"1", QoS::AtLeastOnce, false, &[])
        .is_ok());
    assert!(c
        .publish(now, "t", b"2", QoS::AtLeastOnce, false, &[])
        .is_ok());
    assert_eq!(
        c.publish(now, "t", b"3", QoS::AtLeastOnce, false, &[]),
        Err(broker_core::client::ClientError::QueueFull)
    );
}

#[test]
fn refused_connect_reports_reason() {
    struct Deny;
    impl broker_core::policy::Authenticator for Deny {
        fn authenticate(
            &mut self,
            _: &broker_core::policy::ConnectRequest<'_>,
        ) -> Result<Option<Box<str>>, ReasonCode> {
            Err(ReasonCode::BadUserNameOrPassword)
        }
    }
    let mut l = Link::new();
    l.broker = Broker::new(
        Config::default(),
        Policy {
            authenticator: Box::new(Deny),
            ..Policy::default()
        },
    );
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut c = peer("c", v, true);
        l.connect(&mut c);
        l.run(&mut [&mut c]);
        assert!(
            c.events.contains(&ClientEvent::ConnectRefused(
                ReasonCode::BadUserNameOrPassword
            )),
            "{v}: {:?}",
            c.events
        );
    }
}

#[test]
fn a_qos2_message_past_pubrec_is_reported_done_when_the_session_is_gone() {
    let mut l = Link::new();
    let mut p = peer("p", ProtocolVersion::V5, true);
    l.connect(&mut p);
    l.run(&mut [&mut p]);
    let token = p
        .client
        .publish(l.now, "t/x", b"x", QoS::ExactlyOnce, false, &[])
        .unwrap();
    // PUBLISH in, PUBREC back; the PUBREL never reaches the broker.
    let mut out = Vec::new();
    p.client.poll_transmit(l.now, &mut out);
    let conn = p.conn.unwrap();
    l.broker.handle_bytes(conn, l.now, &out);
    let mut tx = TxBuf::new();
    while l.broker.poll_transmit(conn, l.now, &mut tx, 1 << 20).more {}
    p.client.handle_bytes(l.now, &tx.to_vec());
    l.drop_link(&mut p);
    // Clean start: the broker has no session, the message was delivered at PUBREC.
    l.connect(&mut p);
    l.run(&mut [&mut p]);
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Published { token: t, .. } if *t == token)),
        "{:?}",
        p.events
    );
    assert_eq!(p.client.pending(), 0);
}
