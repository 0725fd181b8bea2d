//! A stable byte encoding of sessions and messages for durable stores. Times are stored
//! relative to the moment of saving, so they survive a restart with a new clock epoch.
//! Decoding is defensive: a truncated or corrupt record is `None`, never a panic.

use crate::message::Message;
use crate::policy::{SessionSnapshot, StoredSubscription};
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::vec::Vec;
use bytes::Bytes;
use mqtt_proto::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};

/// Version tag written at the start of a store file.
pub const FORMAT: &[u8; 8] = b"PETREL01";

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

/// Reads big-endian fields off a record; every read is length-checked (`None` past the end).
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A string with a u16 length.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn str16(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u16()?);
        core::str::from_utf8(self.take(n)?).ok()
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Some(hi << 32 | lo)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        core::str::from_utf8(self.bytes()?).ok()
    }
}

/// Appends a message.
pub fn encode_message(now: Instant, m: &Message, out: &mut Vec<u8>) {
    let flags = (m.qos as u8) | (u8::from(m.retain) << 2) | (u8::from(m.expires_at.is_some()) << 3);
    out.push(flags);
    let left = m
        .expires_at
        .map_or(0, |t| t.as_millis().saturating_sub(now.as_millis()));
    put_u32(out, (left >> 32) as u32);
    put_u32(out, left as u32);
    put_bytes(out, m.topic().as_bytes());
    put_bytes(out, m.props_block());
    put_bytes(out, m.payload());
}

fn decode_message_from(now: Instant, c: &mut Cursor<'_>) -> Option<Message> {
    let flags = c.u8()?;
    let left = c.u64()?;
    let topic = c.str()?;
    mqtt_proto::topic::validate_name(topic).ok()?;
    let props = c.bytes()?;
    let payload = c.bytes()?;
    let qos = QoS::from_u8(flags & 3)?;
    let expires_at = (flags & 8 != 0).then(|| now.plus_millis(left));
    Message::from_stored(topic, props, payload, qos, flags & 4 != 0, expires_at)
}

/// Reads a message written by [`encode_message`]; returns it and the bytes used.
pub fn decode_message(now: Instant, buf: &[u8]) -> Option<(Message, usize)> {
    let mut c = Cursor(buf);
    let m = decode_message_from(now, &mut c)?;
    Some((m, buf.len() - c.0.len()))
}

/// Appends a session.
pub fn encode_session(now: Instant, s: &SessionSnapshot, out: &mut Vec<u8>) {
    put_bytes(out, s.client_id.as_bytes());
    match &s.username {
        Some(u) => {
            out.push(1);
            put_bytes(out, u.as_bytes());
        }
        None => out.push(0),
    }
    out.push(s.protocol.level());
    put_u32(out, s.expiry_interval);
    put_u32(out, s.subscriptions.len() as u32);
    for sub in &s.subscriptions {
        put_bytes(out, sub.filter.as_bytes());
        out.push(sub.options.to_byte(ProtocolVersion::V5));
        match sub.id {
            Some(id) => {
                out.push(1);
                put_u32(out, id);
            }
            None => out.push(0),
        }
    }
    put_u32(out, s.messages.len() as u32);
    for (m, qos, sent) in &s.messages {
        out.push((*qos as u8) | (u8::from(*sent) << 2));
        encode_message(now, m, out);
    }
}

pub(crate) fn options(b: u8) -> Option<SubscriptionOptions> {
    Some(SubscriptionOptions {
        qos: QoS::from_u8(b & 3)?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: match (b >> 4) & 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return None,
        },
    })
}

/// Reads a session written by [`encode_session`]; returns it and the bytes used.
pub fn decode_session(now: Instant, buf: &[u8]) -> Option<(SessionSnapshot, usize)> {
    let mut c = Cursor(buf);
    let client_id: Box<str> = c.str()?.into();
    let username = match c.u8()? {
        0 => None,
        _ => Some(c.str()?.into()),
    };
    let protocol = ProtocolVersion::from_level(c.u8()?)?;
    let expiry_interval = c.u32()?;
    let n = c.u32()? as usize;
    let mut subscriptions = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let filter: Box<str> = c.str()?.into();
        let options = options(c.u8()?)?;
        let id = match c.u8()? {
            0 => None,
            _ => Some(c.u32()?),
        };
        subscriptions.push(StoredSubscription {
            filter,
            options,
            id,
        });
    }
    let n = c.u32()? as usize;
    let mut messages = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let f = c.u8()?;
        let m = decode_message_from(now, &mut c)?;
        messages.push((m, QoS::from_u8(f & 3)?, f & 4 != 0));
    }
    let used = buf.len() - c.0.len();
    Some((
        SessionSnapshot {
            client_id,
            username,
            protocol,
            expiry_interval,
            subscriptions,
            messages,
        },
        used,
    ))
}

impl Message {
    /// A message from stored parts, in its own allocation.
    pub fn from_stored(
        topic: &str,
        props_block: &[u8],
        payload: &[u8],
        qos: QoS,
        retain: bool,
        expires_at: Option<Instant>,
    ) -> Option<Message> {
        // Validate the property block as a PUBLISH block before trusting it.
        mqtt_proto::Properties::parse_block(props_block, mqtt_proto::PropertyContext::Publish)
            .ok()?;
        let mut v = Vec::with_capacity(topic.len() + props_block.len() + payload.len());
        v.extend_from_slice(topic.as_bytes());
        v.extend_from_slice(props_block);
        v.extend_from_slice(payload);
        Some(Message::from_parts(
            Bytes::from(v),
            u16::try_from(topic.len()).ok()?,
            u32::try_from(props_block.len()).ok()?,
            qos,
            retain,
            expires_at,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::StoredSubscription;

    #[test]
    fn sessions_round_trip_and_corruption_is_rejected() {
        let now = Instant::from_millis(5_000);
        let m = Message::from_stored(
            "a/b",
            &[],
            b"payload",
            QoS::AtLeastOnce,
            true,
            Some(now.plus_secs(10)),
        )
        .unwrap();
        let s = SessionSnapshot {
            client_id: "c1".into(),
            username: Some("u".into()),
            protocol: ProtocolVersion::V5,
            expiry_interval: 3600,
            subscriptions: alloc::vec![StoredSubscription {
                filter: "x/#".into(),
                options: SubscriptionOptions::qos(QoS::ExactlyOnce),
                id: Some(7),
            }],
            messages: alloc::vec![(m, QoS::AtLeastOnce, true)],
        };
        let mut buf = Vec::new();
        encode_session(now, &s, &mut buf);
        // Restored in a process whose clock starts elsewhere: the 10 s left stay 10 s.
        let later = Instant::from_millis(100);
        let (back, used) = decode_session(later, &buf).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(back.client_id, s.client_id);
        assert_eq!(back.subscriptions, s.subscriptions);
        let (bm, q, sent) = &back.messages[0];
        assert_eq!(
            (bm.topic(), bm.payload(), *q, *sent),
            ("a/b", &b"payload"[..], QoS::AtLeastOnce, true)
        );
        assert_eq!(bm.expires_at, Some(later.plus_secs(10)));
        for cut in 0..buf.len() {
            assert!(decode_session(later, &buf[..cut]).is_none(), "cut {cut}");
        }
    }
}
