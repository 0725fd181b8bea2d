//! PUBLISH (3.3) and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (3.4 to 3.7).

use super::Sizes;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{PacketId, PacketType, ProtocolVersion, QoS};
use crate::wire::{binary_len, put_binary, put_varint, varint_len, Reader, Sink, SliceSink};

/// PUBLISH: an application message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Publish<'a> {
    /// DUP: a re-delivery.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic name; empty only when a Topic Alias stands for it (MQTT 5).
    pub topic: &'a str,
    /// Present exactly when QoS > 0.
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (MQTT 5).
    pub properties: Properties<'a>,
    /// Application payload.
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    pub(crate) fn read(
        flags: u8,
        r: &mut Reader<'a>,
        v: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        Self::read_forwardable(flags, r, v).map(|(p, _)| p)
    }

    /// Decodes the body of a PUBLISH whose fixed header was parsed, exactly as
    /// [`crate::Packet::parse_body`] does (same checks, same errors), and also returns the
    /// property block as it was received (without its length prefix) when a server may
    /// forward it byte for byte: when it holds only Payload Format Indicator, Content Type,
    /// Response Topic, Correlation Data and User Properties ([MQTT-3.3.2-4],
    /// [MQTT-3.3.2-15] to [MQTT-3.3.2-17]). `None` when it holds a property a server sets
    /// per delivery (Topic Alias, Message Expiry Interval, Subscription Identifier); an
    /// empty block in 3.x. A broker stores that block and copies it into every
    /// [`PublishHeader`] instead of re-encoding the decoded properties.
    ///
    /// A header of another packet type is refused with
    /// [`DecodeError::InvalidPacketType`].
    pub fn parse_body_forwardable(
        header: &crate::FixedHeader,
        body: &'a [u8],
        v: ProtocolVersion,
    ) -> Result<(Self, Option<&'a [u8]>), DecodeError> {
        if header.packet_type != PacketType::Publish {
            return Err(DecodeError::InvalidPacketType(header.packet_type as u8));
        }
        // The payload takes what is left: there is never anything after it to refuse (and
        // the result goes straight to the caller, not through another copy).
        Self::read_forwardable(header.flags, &mut Reader::new(body, PacketType::Publish), v)
    }

    #[inline(always)]
    fn read_forwardable(
        flags: u8,
        r: &mut Reader<'a>,
        v: ProtocolVersion,
    ) -> Result<(Self, Option<&'a [u8]>), DecodeError> {
        let dup = flags & 0x08 != 0;
        // [MQTT-3.3.1-4] QoS 3 is malformed.
        let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
        // [MQTT-3.3.1-2] DUP must be 0 for QoS 0.
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        // [MQTT-3.3.2-2] no wildcards in a topic name (checked in the same pass as UTF-8).
        let topic = r.topic_name()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(super::read_packet_id(r)?)
        };
        let mut p = Publish {
            dup,
            retain: flags & 0x01 != 0,
            qos,
            topic,
            packet_id,
            properties: Properties::default(),
            payload: &[],
        };
        let forwarded = if v.is_v5() {
            Properties::read_forwardable_into(&mut p.properties, r, PropertyContext::Publish)?
        } else {
            Some(&[][..])
        };
        // 3.3.2.3.4: a zero-length topic is allowed only with a Topic Alias.
        if topic.is_empty() && p.properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicName);
        }
        p.payload = r.rest();
        Ok((p, forwarded))
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::InvalidField(
                "packet id must be present exactly when QoS > 0",
            ));
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::InvalidField("DUP set on QoS 0"));
        }
        if self.topic.is_empty() {
            // Only MQTT 5 carries the Topic Alias that stands for an empty topic; 3.x would
            // encode a packet the decoder refuses (EmptyTopicName).
            if !v.is_v5() || self.properties.topic_alias.is_none() {
                return Err(EncodeError::InvalidField("empty topic without topic alias"));
            }
        } else {
            crate::topic::validate_name(self.topic)
                .map_err(|_| EncodeError::InvalidField("topic is not a topic name"))?;
        }
        Ok(())
    }

    pub(crate) fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        self.check(v)?;
        let mut s = Sizes::default();
        // check() has ruled out U+0000 in the topic.
        let mut n = binary_len(self.topic.as_bytes())?;
        if self.packet_id.is_some() {
            n += 2;
        }
        if v.is_v5() {
            s.props = self.properties.block_len(PropertyContext::Publish)?;
            n += varint_len(s.props) + s.props;
        }
        s.body = n + self.payload.len();
        if s.body > crate::MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge);
        }
        Ok(s)
    }

    pub(crate) fn emit_variable_header<S: Sink + ?Sized>(
        &self,
        v: ProtocolVersion,
        s: &mut S,
        sizes: &Sizes,
    ) {
        put_binary(s, self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            s.put_u16(id.get());
        }
        if v.is_v5() {
            self.properties.emit(s, sizes.props);
        }
    }

    /// Length of everything before the payload: what [`Publish::emit_header`] writes.
    pub fn header_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        let s = self.sizes(v)?;
        Ok(1 + varint_len(s.body) + s.body - self.payload.len())
    }

    /// Writes the fixed header (whose remaining length counts the payload), the variable
    /// header and the properties, but not the payload, so one shared payload can follow
    /// many per-subscriber headers in a vectored write. Returns the header length.
    pub fn emit_header(&self, v: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.emit_header_to(v, &mut SliceSink::new(buf))
    }

    /// [`Publish::emit_header`] into any [`Sink`].
    pub fn emit_header_to<S: Sink + ?Sized>(
        &self,
        v: ProtocolVersion,
        sink: &mut S,
    ) -> Result<usize, EncodeError> {
        let s = self.sizes(v)?;
        let len = 1 + varint_len(s.body) + s.body - self.payload.len();
        if sink.remaining_capacity() < len {
            return Err(EncodeError::BufferTooSmall { needed: len });
        }
        sink.put_u8(((PacketType::Publish as u8) << 4) | self.flags());
        put_varint(sink, s.body);
        self.emit_variable_header(v, sink, &s);
        Ok(len)
    }
}

/// The header of a PUBLISH that a server forwards (everything before the payload), built
/// from parts that were validated once, when the message was received: the fast path for a
/// broker's per-subscriber headers. [`Publish::emit_header`] validates the topic and every
/// property on each call; this copies them.
///
/// Trusted, not checked again (debug builds assert them):
/// - `topic` holds the bytes of a valid Topic Name (UTF-8 without U+0000 or wildcards,
///   [MQTT-3.3.2-2]), for example a decoded [`Publish::topic`] or a name that
///   [`crate::topic::validate_name`] accepted. It may be empty only with a `topic_alias`
///   (MQTT 5).
/// - `properties` is a PUBLISH property block (entries without the length prefix) that
///   [`Properties::parse_block`] accepts for [`PropertyContext::Publish`] and that holds no
///   Topic Alias, Message Expiry Interval or Subscription Identifier: those are the
///   per-delivery fields below. For example what [`Properties::emit_block_to`] wrote for the
///   forwarded properties of a decoded PUBLISH. Ignored in 3.x.
///
/// Wrong trusted input yields a packet a peer refuses, never a panic. Still checked: the
/// packet identifier against the QoS, DUP with QoS 0, an empty topic without a Topic Alias,
/// Topic Alias 0, Subscription Identifier ranges, field and packet lengths.
///
/// The per-delivery properties are written first (Message Expiry Interval, Topic Alias,
/// Subscription Identifiers), then the forwarded block as it is (User Properties keep
/// their order, [MQTT-3.3.2-17]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishHeader<'a> {
    /// DUP.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// A valid Topic Name's bytes (trusted), empty when a Topic Alias stands for it.
    pub topic: &'a [u8],
    /// Present exactly when QoS > 0.
    pub packet_id: Option<PacketId>,
    /// Forwarded PUBLISH properties as a validated block (trusted; MQTT 5 only).
    pub properties: &'a [u8],
    /// Message Expiry Interval to send (MQTT 5).
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias to send (MQTT 5).
    pub topic_alias: Option<u16>,
    /// Subscription Identifiers to send (MQTT 5), each 1..=268,435,455.
    pub subscription_identifiers: &'a [u32],
    /// Length of the payload that follows the header.
    pub payload_len: usize,
}

/// Remaining length, property block length (MQTT 5) and header length of a
/// [`PublishHeader`].
#[derive(Debug, Clone, Copy)]
struct HeaderSizes {
    body: usize,
    props: usize,
    header: usize,
}

impl PublishHeader<'_> {
    fn sizes(&self, v: ProtocolVersion) -> Result<HeaderSizes, EncodeError> {
        debug_assert!(
            self.topic.is_empty()
                || core::str::from_utf8(self.topic)
                    .is_ok_and(|t| crate::topic::validate_name(t).is_ok()),
            "PublishHeader: topic is not a valid topic name"
        );
        debug_assert!(
            !v.is_v5()
                || Properties::parse_block(self.properties, PropertyContext::Publish).is_ok_and(
                    |p| p.topic_alias.is_none()
                        && p.message_expiry_interval.is_none()
                        && p.subscription_identifiers.is_empty()
                ),
            "PublishHeader: properties are not a forwardable PUBLISH block"
        );
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::InvalidField(
                "packet id must be present exactly when QoS > 0",
            ));
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::InvalidField("DUP set on QoS 0"));
        }
        if self.topic.is_empty() && !(v.is_v5() && self.topic_alias.is_some()) {
            return Err(EncodeError::InvalidField("empty topic without topic alias"));
        }
        let mut body = binary_len(self.topic)?;
        if self.packet_id.is_some() {
            body += 2;
        }
        let mut props = 0;
        if v.is_v5() {
            if self.message_expiry_interval.is_some() {
                props += 5;
            }
            match self.topic_alias {
                Some(0) => {
                    return Err(EncodeError::InvalidField(
                        "property value of 0 is not allowed",
                    ))
                }
                Some(_) => props += 3,
                None => {}
            }
            for &id in self.subscription_identifiers {
                if id == 0 || id as usize > crate::MAX_REMAINING_LENGTH {
                    return Err(EncodeError::InvalidField(
                        "subscription identifier out of range",
                    ));
                }
                props += 1 + varint_len(id as usize);
            }
            props += self.properties.len();
            body += varint_len(props) + props;
        }
        let header_body = body;
        body = body
            .checked_add(self.payload_len)
            .filter(|&b| b <= crate::MAX_REMAINING_LENGTH)
            .ok_or(EncodeError::PacketTooLarge)?;
        Ok(HeaderSizes {
            body,
            props,
            header: 1 + varint_len(body) + header_body,
        })
    }

    /// Length of the header (the payload not included).
    pub fn header_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        self.sizes(v).map(|s| s.header)
    }

    /// Writes the header into `buf`; returns its length.
    pub fn emit(&self, v: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.emit_to(v, &mut SliceSink::new(buf))
    }

    /// Writes the header into any [`Sink`]; returns its length. Nothing is written on error.
    pub fn emit_to<S: Sink + ?Sized>(
        &self,
        v: ProtocolVersion,
        sink: &mut S,
    ) -> Result<usize, EncodeError> {
        let s = self.sizes(v)?;
        if sink.remaining_capacity() < s.header {
            return Err(EncodeError::BufferTooSmall { needed: s.header });
        }
        // Few, larger writes: the fixed header and the topic length in one, the topic,
        // then the packet identifier and the per-delivery properties in one.
        let flags = (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain);
        let mut head = Stack::<7>::default();
        head.push(((PacketType::Publish as u8) << 4) | flags);
        head.varint(s.body);
        head.extend(&(self.topic.len() as u16).to_be_bytes());
        sink.put_slice(head.as_slice());
        sink.put_slice(self.topic);
        let mut mid = Stack::<16>::default();
        if let Some(id) = self.packet_id {
            mid.extend(&id.get().to_be_bytes());
        }
        if v.is_v5() {
            mid.varint(s.props);
            if let Some(e) = self.message_expiry_interval {
                mid.push(crate::PropertyId::MessageExpiryInterval as u8);
                mid.extend(&e.to_be_bytes());
            }
            if let Some(a) = self.topic_alias {
                mid.push(crate::PropertyId::TopicAlias as u8);
                mid.extend(&a.to_be_bytes());
            }
        }
        sink.put_slice(mid.as_slice());
        if v.is_v5() {
            for &id in self.subscription_identifiers {
                let mut b = Stack::<5>::default();
                b.push(crate::PropertyId::SubscriptionIdentifier as u8);
                b.varint(id as usize);
                sink.put_slice(b.as_slice());
            }
            sink.put_slice(self.properties);
        }
        Ok(s.header)
    }
}

/// A few bytes assembled on the stack before one `put_slice`.
#[derive(Debug)]
struct Stack<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Stack<N> {
    fn default() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Stack<N> {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        if let Some(d) = self.buf.get_mut(self.len) {
            *d = b;
            self.len += 1;
        }
    }

    #[inline(always)]
    fn extend(&mut self, b: &[u8]) {
        for &x in b {
            self.push(x);
        }
    }

    /// A Variable Byte Integer (the caller checked the range).
    #[inline(always)]
    fn varint(&mut self, mut v: usize) {
        loop {
            let b = (v % 128) as u8;
            v /= 128;
            if v == 0 {
                self.push(b);
                return;
            }
            self.push(b | 0x80);
        }
    }

    #[inline(always)]
    fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape: a packet identifier, and in MQTT 5
/// a reason code and properties, both omitted on the wire when empty (3.4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack<'a> {
    /// The identifier of the PUBLISH (or PUBREL) being acknowledged.
    pub packet_id: PacketId,
    /// Reason code; always Success in 3.1.1.
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
}

impl<'a> Ack<'a> {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: Properties::default(),
        }
    }

    fn context(t: PacketType) -> PropertyContext {
        match t {
            PacketType::PubRec => PropertyContext::PubRec,
            PacketType::PubRel => PropertyContext::PubRel,
            PacketType::PubComp => PropertyContext::PubComp,
            _ => PropertyContext::PubAck,
        }
    }

    pub(crate) fn read(r: &mut Reader<'a>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = super::read_packet_id(r)?;
        let mut ack = Ack::new(packet_id);
        if v.is_v5() && !r.is_empty() {
            ack.reason_code = super::read_reason(r)?;
            // 3.4.2.2.1: a Remaining Length under 4 means no Property Length.
            if !r.is_empty() {
                ack.properties = Properties::read(r, Self::context(r.packet()))?;
            }
        }
        Ok(ack)
    }

    pub(crate) fn sizes(
        &self,
        v: ProtocolVersion,
        ctx: PropertyContext,
    ) -> Result<Sizes, EncodeError> {
        let mut s = Sizes {
            body: 2,
            ..Sizes::default()
        };
        if v.is_v5() {
            super::check_reason(self.reason_code, ctx.packet_type())?;
            s.props = self.properties.block_len(ctx)?;
            if s.props > 0 {
                s.body = 3 + varint_len(s.props) + s.props;
            } else if self.reason_code != ReasonCode::Success {
                s.body = 3;
            }
        }
        Ok(s)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, v: ProtocolVersion, s: &mut S, sizes: &Sizes) {
        s.put_u16(self.packet_id.get());
        if v.is_v5() && sizes.body > 2 {
            s.put_u8(self.reason_code as u8);
            if sizes.body > 3 {
                self.properties.emit(s, sizes.props);
            }
        }
    }
}
