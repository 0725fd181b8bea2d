//! Application messages as the broker stores them: one shared allocation holding the topic,
//! the forwarded properties and the payload, cloned by reference count into every queue.

use crate::time::Instant;
use bytes::{Bytes, BytesMut};
use mqtt_proto::{Properties, PropertyContext, QoS};

/// Who published a message, for No Local ([MQTT-3.8.3-3]). Zero means the broker itself
/// (wills, $SYS) and never equals a session.
pub type Origin = u64;

/// A stored application message. Cloning is cheap: the bytes are shared.
#[derive(Clone, Debug)]
pub struct Message {
    /// topic | MQTT 5 property block as received | payload
    data: Bytes,
    topic_len: u16,
    props_len: u32,
    /// QoS the message was published with.
    pub qos: QoS,
    /// RETAIN flag as published.
    pub retain: bool,
    /// When the Message Expiry Interval runs out, if it was set.
    pub expires_at: Option<Instant>,
    /// The publishing session.
    pub origin: Origin,
}

impl Message {
    pub(crate) fn from_parts(
        data: Bytes,
        topic_len: u16,
        props_len: u32,
        qos: QoS,
        retain: bool,
        expires_at: Option<Instant>,
    ) -> Message {
        Message {
            data,
            topic_len,
            props_len,
            qos,
            retain,
            expires_at,
            origin: 0,
        }
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        let b = self
            .data
            .get(..usize::from(self.topic_len))
            .unwrap_or_default();
        core::str::from_utf8(b).unwrap_or_default()
    }

    /// The MQTT 5 property block as received (empty for 3.x publishers). Topic Alias,
    /// Message Expiry and Subscription Identifiers in it are replaced per delivery.
    pub fn props_block(&self) -> &[u8] {
        let start = usize::from(self.topic_len);
        self.data
            .get(start..start + self.props_len as usize)
            .unwrap_or_default()
    }

    /// The forwarded properties, borrowed from the stored block.
    pub fn properties(&self) -> Properties<'_> {
        Properties::parse_block(self.props_block(), PropertyContext::Publish).unwrap_or_default()
    }

    fn payload_start(&self) -> usize {
        usize::from(self.topic_len) + self.props_len as usize
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        self.data.get(self.payload_start()..).unwrap_or_default()
    }

    /// The payload as a shared handle (for vectored writes without copying).
    pub fn payload_bytes(&self) -> Bytes {
        self.data.slice(self.payload_start()..)
    }

    /// Bytes this message accounts for in queue limits.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// True once the Message Expiry Interval has passed ([MQTT-3.3.2-5]).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Seconds left of the Message Expiry Interval, rounded up, to forward ([MQTT-3.3.2-6]).
    pub fn remaining_expiry_secs(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let ms = t.as_millis().saturating_sub(now.as_millis());
            ms.div_ceil(1000).min(u64::from(u32::MAX)) as u32
        })
    }

    /// The same message with its own exact-size allocation, so it does not keep a whole
    /// arena chunk alive while it waits (offline queues, retained store).
    pub fn detached(&self) -> Message {
        Message {
            data: Bytes::copy_from_slice(&self.data),
            ..self.clone()
        }
    }
}

/// The fields of a message to store.
#[derive(Debug, Clone, Copy)]
pub struct MessageParts<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// MQTT 5 properties to forward (see `forwarded`); empty for 3.x.
    pub props: &'a Properties<'a>,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Expiry deadline.
    pub expires_at: Option<Instant>,
    /// Publisher.
    pub origin: Origin,
}

/// Copies messages into large shared chunks. A chunk is reused in place once every message
/// cut from it has been dropped, so in steady state storing a message allocates nothing.
#[derive(Debug)]
pub struct MessageArena {
    buf: BytesMut,
    chunk: usize,
}

impl MessageArena {
    /// An arena whose chunks hold `chunk` bytes (messages larger than a chunk get their own).
    pub fn new(chunk: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            chunk: chunk.max(64),
        }
    }

    /// Stores a message. Fails if the topic or properties cannot be stored (too long, or
    /// properties not valid in a PUBLISH).
    pub fn store_parts(&mut self, p: MessageParts<'_>) -> Option<Message> {
        let topic_len = u16::try_from(p.topic.len()).ok()?;
        let props_len = p.props.block_len(PropertyContext::Publish).ok()?;
        let len = p.topic.len() + props_len + p.payload.len();
        if self.buf.capacity() < len {
            // Reuses the current chunk if nothing cut from it is alive any more.
            self.buf.reserve(len.max(self.chunk));
        }
        self.buf.extend_from_slice(p.topic.as_bytes());
        if props_len > 0 {
            let mut sink = mqtt_proto::BufMutSink(&mut self.buf);
            if p.props
                .emit_block_to(PropertyContext::Publish, &mut sink)
                .is_err()
            {
                self.buf.clear();
                return None;
            }
        }
        self.buf.extend_from_slice(p.payload);
        Some(Message {
            data: self.buf.split().freeze(),
            topic_len,
            props_len: u32::try_from(props_len).ok()?,
            qos: p.qos,
            retain: p.retain,
            expires_at: p.expires_at,
            origin: p.origin,
        })
    }
}
