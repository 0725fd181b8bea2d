//! Application messages as the broker stores them: one shared allocation holding the topic,
//! the forwarded properties and the payload, cloned by reference count into every queue.

use crate::time::Instant;
use bytes::{Bytes, BytesMut};
use mqtt_proto::{Properties, PropertyContext, QoS};

/// Who published a message, for No Local ([MQTT-3.8.3-3] v5). Zero means the broker itself
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
    /// A message from `topic | property block | payload` whose topic and block the caller
    /// has validated (a PUBLISH block). Per-delivery properties in the block (Topic Alias,
    /// Message Expiry Interval, Subscription Identifiers) are removed, so that
    /// [`Message::props_block`] can be forwarded as it is.
    pub(crate) fn from_parts(
        data: Bytes,
        topic_len: u16,
        props_len: u32,
        qos: QoS,
        retain: bool,
        expires_at: Option<Instant>,
    ) -> Message {
        let mut m = Message {
            data,
            topic_len,
            props_len,
            qos,
            retain,
            expires_at,
            origin: 0,
        };
        let p = m.properties();
        if p.topic_alias.is_some()
            || p.message_expiry_interval.is_some()
            || !p.subscription_identifiers.is_empty()
        {
            let mut arena = MessageArena::new(m.size());
            if let Some(clean) = arena.store_parts(MessageParts {
                topic: m.topic(),
                props: &p,
                payload: m.payload(),
                qos,
                retain,
                expires_at,
                origin: 0,
            }) {
                m = clean;
            }
        }
        m
    }

    /// The topic name's bytes (a valid topic name, checked when the message was stored;
    /// the per-delivery encoder copies them without checking them again).
    pub fn topic_bytes(&self) -> &[u8] {
        self.data
            .get(..usize::from(self.topic_len))
            .unwrap_or_default()
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        let b = self
            .data
            .get(..usize::from(self.topic_len))
            .unwrap_or_default();
        core::str::from_utf8(b).unwrap_or_default()
    }

    /// The forwarded MQTT 5 properties as a validated block (empty for 3.x publishers):
    /// Payload Format Indicator, Content Type, Response Topic, Correlation Data and User
    /// Properties, never Topic Alias, Message Expiry Interval or Subscription Identifiers
    /// (those are set per delivery), so it can be copied into every outgoing PUBLISH as is
    /// (`mqtt_proto::PublishHeader`).
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

    /// QoS 1 or 2: its publisher was (or will be) sent an acknowledgement for it, so
    /// losing it breaks a promise.
    pub fn acknowledged(&self) -> bool {
        self.qos != QoS::AtMostOnce
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

/// Bytes reserved for a message's property block before it is measured.
const PROPS_SLACK: usize = 256;

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

    /// Stores a message. Fails if the topic is not a valid topic name or the properties
    /// cannot be stored (too long, or not valid in a PUBLISH). Of the properties, only
    /// those forwarded as they are (see [`Message::props_block`]) are kept.
    pub fn store_parts(&mut self, p: MessageParts<'_>) -> Option<Message> {
        let topic_len = u16::try_from(p.topic.len()).ok()?;
        // Checked once here, so that encoding the message for each subscriber need not.
        // (Decoded PUBLISH and will topics were checked by the decoder already; this is a
        // single pass over a few bytes.)
        mqtt_proto::topic::validate_name(p.topic).ok()?;
        // The block is measured (and validated) once, written in place between the topic
        // and the payload; room for a typical block is reserved up front and a larger one
        // grows the chunk.
        let len = p.topic.len() + p.payload.len() + PROPS_SLACK;
        if self.buf.capacity() < len {
            // Reuses the current chunk if nothing cut from it is alive any more.
            self.buf.reserve(len.max(self.chunk));
        }
        self.buf.extend_from_slice(p.topic.as_bytes());
        let mut sink = mqtt_proto::BufMutSink(&mut self.buf);
        let Ok(props_len) = p.props.emit_forwarded_block_to(&mut sink) else {
            self.buf.clear();
            return None;
        };
        self.buf.extend_from_slice(p.payload);
        self.finish(topic_len, props_len, &p)
    }

    /// Stores a message received in a PUBLISH: its topic and `block`, the property block
    /// as [`mqtt_proto::Publish::parse_body_forwardable`] returned it (only properties that
    /// are forwarded unaltered, validated by the decoder), are copied as they are, with no
    /// validation or re-encoding. `p.props` is not used.
    pub(crate) fn store_forwarded(&mut self, p: MessageParts<'_>, block: &[u8]) -> Option<Message> {
        debug_assert!(mqtt_proto::topic::validate_name(p.topic).is_ok());
        debug_assert!(
            Properties::parse_block(block, PropertyContext::Publish).is_ok_and(|q| q
                .topic_alias
                .is_none()
                && q.message_expiry_interval.is_none()
                && q.subscription_identifiers.is_empty())
        );
        let topic_len = u16::try_from(p.topic.len()).ok()?;
        let len = p.topic.len() + block.len() + p.payload.len();
        if self.buf.capacity() < len {
            self.buf.reserve(len.max(self.chunk));
        }
        self.buf.extend_from_slice(p.topic.as_bytes());
        self.buf.extend_from_slice(block);
        self.buf.extend_from_slice(p.payload);
        self.finish(topic_len, block.len(), &p)
    }

    /// The message just written at the start of the chunk.
    #[inline]
    fn finish(
        &mut self,
        topic_len: u16,
        props_len: usize,
        p: &MessageParts<'_>,
    ) -> Option<Message> {
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
