#![allow(clippy::unwrap_used)]

use mqtt_proto::*;

#[test]
fn publish_roundtrip_v5() {
    let up = [("a", "1"), ("b", "2")];
    let ids = [5u32, 300];
    let p = Packet::Publish(Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/b",
        packet_id: PacketId::new(7),
        properties: Properties {
            message_expiry_interval: Some(10),
            user_properties: UserProperties::List(&up),
            subscription_identifiers: SubscriptionIds::List(&ids),
            ..Default::default()
        },
        payload: b"hello",
    });
    let mut buf = [0u8; 128];
    let n = p.emit(ProtocolVersion::V5, &mut buf).unwrap();
    assert_eq!(n, p.encoded_len(ProtocolVersion::V5).unwrap());
    let Status::Complete((q, len)) = Packet::parse(&buf[..n], ProtocolVersion::V5, 1000).unwrap()
    else {
        panic!()
    };
    assert_eq!(len, n);
    assert_eq!(p, q);
    for cut in 0..n {
        match Packet::parse(&buf[..cut], ProtocolVersion::V5, 1000).unwrap() {
            Status::Incomplete { needed } => assert!(needed >= 1 && cut + needed <= n),
            _ => panic!("complete at {cut}"),
        }
    }
}

/// `Publish::parse_body_forwardable` decodes like `Packet::parse` and returns the block as
/// received only when it holds forwarded properties alone.
#[test]
fn publish_forwardable_block() {
    let up = [("k", "v")];
    let forwardable = Properties {
        payload_format_indicator: Some(true),
        content_type: Some("text/plain"),
        user_properties: UserProperties::List(&up),
        ..Default::default()
    };
    let per_delivery = [
        Properties {
            topic_alias: Some(3),
            ..forwardable
        },
        Properties {
            message_expiry_interval: Some(9),
            ..forwardable
        },
    ];
    let body_of = |props: Properties<'_>, v: ProtocolVersion| {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b",
            packet_id: PacketId::new(7),
            properties: props,
            payload: b"x",
        });
        let mut buf = vec![0u8; p.encoded_len(v).unwrap()];
        let n = p.emit(v, &mut buf).unwrap();
        buf.truncate(n);
        buf
    };
    let decode = |buf: &[u8], v: ProtocolVersion| {
        let Status::Complete(h) = FixedHeader::parse(buf, 1000).unwrap() else {
            panic!()
        };
        let body = buf.get(h.header_len..h.packet_len()).unwrap().to_vec();
        let (p, block) = Publish::parse_body_forwardable(&h, &body, v).unwrap();
        let Status::Complete((Packet::Publish(q), _)) = Packet::parse(buf, v, 1000).unwrap() else {
            panic!()
        };
        assert_eq!(p, q);
        (block.map(<[u8]>::to_vec), forwardable_len(&q))
    };
    fn forwardable_len(p: &Publish<'_>) -> usize {
        let mut b = [0u8; 64];
        p.properties
            .emit_forwarded_block_to(&mut SliceSink::new(&mut b))
            .unwrap()
    }
    let buf = body_of(forwardable, ProtocolVersion::V5);
    let (block, len) = decode(&buf, ProtocolVersion::V5);
    let block = block.unwrap();
    assert_eq!(block.len(), len);
    let mut b = [0u8; 64];
    let n = forwardable
        .emit_forwarded_block_to(&mut SliceSink::new(&mut b))
        .unwrap();
    assert_eq!(block, &b[..n]);
    for props in per_delivery {
        let buf = body_of(props, ProtocolVersion::V5);
        assert_eq!(decode(&buf, ProtocolVersion::V5).0, None);
    }
    let buf = body_of(Properties::default(), ProtocolVersion::V3_1_1);
    assert_eq!(decode(&buf, ProtocolVersion::V3_1_1).0, Some(Vec::new()));
    // Errors are the decoder's: a duplicate Content Type, another packet type.
    let mut bad = body_of(forwardable, ProtocolVersion::V5);
    let Status::Complete(h) = FixedHeader::parse(&bad, 1000).unwrap() else {
        panic!()
    };
    let body = bad.split_off(h.header_len);
    let dup = [&body[..7], &[body[7] + 13], &body[10..23], &body[8..]].concat();
    let h2 = FixedHeader {
        remaining_length: dup.len(),
        ..h
    };
    assert_eq!(
        Publish::parse_body_forwardable(&h2, &dup, ProtocolVersion::V5).unwrap_err(),
        DecodeError::DuplicateProperty(PropertyId::ContentType as u8)
    );
    let ack = FixedHeader {
        packet_type: PacketType::PubAck,
        ..h
    };
    assert!(Publish::parse_body_forwardable(&ack, &body, ProtocolVersion::V5).is_err());
}
