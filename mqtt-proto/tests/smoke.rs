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
