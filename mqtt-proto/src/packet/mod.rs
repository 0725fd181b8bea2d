//! The control packets (3.1 to 3.15) as borrowed, validated values, and the framing that
//! ties them to the fixed header.

mod connect;
mod control;
mod publish;
mod subscribe;

pub use connect::{ConnAck, Connect, Will};
pub use control::{Auth, Disconnect};
pub use publish::{Ack, Publish, PublishHeader};
pub use subscribe::{
    ReasonCodes, SubAck, Subscribe, Subscription, Subscriptions, TopicFilters, UnsubAck,
    Unsubscribe,
};

use crate::error::{DecodeError, EncodeError};
use crate::header::{FixedHeader, Status};
use crate::types::{PacketType, ProtocolVersion};
use crate::wire::{put_varint, varint_len, Reader, Sink, SliceSink, MAX_REMAINING_LENGTH};

/// Encoded sizes computed once and reused by `emit_body`: the remaining length and the
/// lengths of up to two property blocks (the packet's and, in CONNECT, the will's).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sizes {
    pub body: usize,
    pub props: usize,
    pub will_props: usize,
}

/// Any MQTT control packet, borrowing its strings and payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
// Without an allocator there is nothing to box CONNECT with; it is one packet per connection.
#[allow(clippy::large_enum_variant)]
pub enum Packet<'a> {
    Connect(Connect<'a>),
    ConnAck(ConnAck<'a>),
    Publish(Publish<'a>),
    PubAck(Ack<'a>),
    PubRec(Ack<'a>),
    PubRel(Ack<'a>),
    PubComp(Ack<'a>),
    Subscribe(Subscribe<'a>),
    SubAck(SubAck<'a>),
    Unsubscribe(Unsubscribe<'a>),
    UnsubAck(UnsubAck<'a>),
    PingReq,
    PingResp,
    Disconnect(Disconnect<'a>),
    Auth(Auth<'a>),
}

impl<'a> Packet<'a> {
    /// Decodes one packet from the start of `buf`.
    ///
    /// `version` is the connection's protocol version; a CONNECT carries its own and ignores
    /// it. The packet's total size is checked against `max_packet_size` from the fixed
    /// header alone, so an oversized packet is refused before its body arrives. On
    /// `Complete((packet, len))` the caller discards `len` bytes; on `Incomplete` nothing is
    /// consumed.
    pub fn parse(
        buf: &'a [u8],
        version: ProtocolVersion,
        max_packet_size: usize,
    ) -> Result<Status<(Packet<'a>, usize)>, DecodeError> {
        let header = match FixedHeader::parse(buf, max_packet_size)? {
            Status::Complete(h) => h,
            Status::Incomplete { needed } => return Ok(Status::Incomplete { needed }),
        };
        let total = header.packet_len();
        let Some(body) = buf.get(header.header_len..total) else {
            return Ok(Status::Incomplete {
                needed: total - buf.len(),
            });
        };
        Self::parse_frame(&header, body, version, total)
    }

    /// Decodes a packet body whose fixed header was already parsed.
    pub fn parse_body(
        header: &FixedHeader,
        body: &'a [u8],
        version: ProtocolVersion,
    ) -> Result<Packet<'a>, DecodeError> {
        match Self::parse_frame(header, body, version, header.packet_len())? {
            Status::Complete((p, _)) => Ok(p),
            // parse_frame never answers Incomplete: the body is complete.
            Status::Incomplete { .. } => Err(DecodeError::UnexpectedEnd {
                packet: header.packet_type,
            }),
        }
    }

    /// Decodes a complete body into the value `parse` returns. Each arm builds its result in
    /// place: a `Packet` is large (a CONNECT holds two property blocks) and decoding a small
    /// PUBLISH was dominated by copying it from one return slot to the next.
    fn parse_frame(
        header: &FixedHeader,
        body: &'a [u8],
        version: ProtocolVersion,
        total: usize,
    ) -> Result<Status<(Packet<'a>, usize)>, DecodeError> {
        let t = header.packet_type;
        let mut r = Reader::new(body, t);
        macro_rules! done {
            ($variant:ident, $read:expr) => {{
                let p = $read;
                r.finish()?;
                Ok(Status::Complete((Packet::$variant(p), total)))
            }};
        }
        match t {
            PacketType::Connect => done!(Connect, Connect::read(&mut r)?),
            PacketType::ConnAck => done!(ConnAck, ConnAck::read(&mut r, version)?),
            PacketType::Publish => done!(Publish, Publish::read(header.flags, &mut r, version)?),
            PacketType::PubAck => done!(PubAck, Ack::read(&mut r, version)?),
            PacketType::PubRec => done!(PubRec, Ack::read(&mut r, version)?),
            PacketType::PubRel => done!(PubRel, Ack::read(&mut r, version)?),
            PacketType::PubComp => done!(PubComp, Ack::read(&mut r, version)?),
            PacketType::Subscribe => done!(Subscribe, Subscribe::read(&mut r, version)?),
            PacketType::SubAck => done!(SubAck, SubAck::read(&mut r, version)?),
            PacketType::Unsubscribe => done!(Unsubscribe, Unsubscribe::read(&mut r, version)?),
            PacketType::UnsubAck => done!(UnsubAck, UnsubAck::read(&mut r, version)?),
            PacketType::PingReq => {
                r.finish()?;
                Ok(Status::Complete((Packet::PingReq, total)))
            }
            PacketType::PingResp => {
                r.finish()?;
                Ok(Status::Complete((Packet::PingResp, total)))
            }
            PacketType::Disconnect => done!(Disconnect, Disconnect::read(&mut r, version)?),
            PacketType::Auth => {
                // AUTH exists only in MQTT 5; type 15 is reserved before it.
                if !version.is_v5() {
                    return Err(DecodeError::InvalidPacketType(15));
                }
                done!(Auth, Auth::read(&mut r)?)
            }
        }
    }

    /// The control packet type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    fn first_byte(&self) -> u8 {
        let t = self.packet_type();
        let flags = match self {
            Packet::Publish(p) => p.flags(),
            _ => t.required_flags().unwrap_or(0),
        };
        ((t as u8) << 4) | flags
    }

    fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        use crate::properties::PropertyContext as C;
        let s = match self {
            Packet::Connect(p) => p.sizes()?,
            Packet::ConnAck(p) => p.sizes(v)?,
            Packet::Publish(p) => p.sizes(v)?,
            Packet::PubAck(p) => p.sizes(v, C::PubAck)?,
            Packet::PubRec(p) => p.sizes(v, C::PubRec)?,
            Packet::PubRel(p) => p.sizes(v, C::PubRel)?,
            Packet::PubComp(p) => p.sizes(v, C::PubComp)?,
            Packet::Subscribe(p) => p.sizes(v)?,
            Packet::SubAck(p) => p.sizes(v)?,
            Packet::Unsubscribe(p) => p.sizes(v)?,
            Packet::UnsubAck(p) => p.sizes(v)?,
            Packet::PingReq | Packet::PingResp => Sizes::default(),
            Packet::Disconnect(p) => p.sizes(v)?,
            Packet::Auth(p) => {
                if !v.is_v5() {
                    return Err(EncodeError::NotInVersion(PacketType::Auth));
                }
                p.sizes()?
            }
        };
        if s.body > MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge);
        }
        Ok(s)
    }

    /// The exact number of bytes [`Packet::emit`] writes.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let s = self.sizes(version)?;
        Ok(1 + varint_len(s.body) + s.body)
    }

    /// Encodes into `buf`, returning the bytes written. Fails with `BufferTooSmall` (and
    /// writes nothing) when `buf` is shorter than [`Packet::encoded_len`].
    pub fn emit(&self, version: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.emit_to(version, &mut SliceSink::new(buf))
    }

    /// Encodes into any [`Sink`].
    pub fn emit_to<S: Sink + ?Sized>(
        &self,
        version: ProtocolVersion,
        sink: &mut S,
    ) -> Result<usize, EncodeError> {
        let s = self.sizes(version)?;
        let total = 1 + varint_len(s.body) + s.body;
        if sink.remaining_capacity() < total {
            return Err(EncodeError::BufferTooSmall { needed: total });
        }
        sink.put_u8(self.first_byte());
        put_varint(sink, s.body);
        match self {
            Packet::Connect(p) => p.emit_body(sink, &s),
            Packet::ConnAck(p) => p.emit_body(version, sink, &s),
            Packet::Publish(p) => {
                p.emit_variable_header(version, sink, &s);
                sink.put_slice(p.payload);
            }
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.emit_body(version, sink, &s)
            }
            Packet::Subscribe(p) => p.emit_body(version, sink, &s),
            Packet::SubAck(p) => p.emit_body(version, sink, &s),
            Packet::Unsubscribe(p) => p.emit_body(version, sink, &s),
            Packet::UnsubAck(p) => p.emit_body(version, sink, &s),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.emit_body(version, sink, &s),
            Packet::Auth(p) => p.emit_body(sink, &s),
        }
        Ok(total)
    }

    /// Encodes into any `bytes::BufMut`.
    #[cfg(feature = "bytes")]
    pub fn emit_buf<B: bytes::BufMut>(
        &self,
        version: ProtocolVersion,
        buf: &mut B,
    ) -> Result<usize, EncodeError> {
        self.emit_to(version, &mut crate::wire::BufMutSink(buf))
    }
}

/// Reads a non-zero packet identifier ([MQTT-2.2.1-3]).
pub(crate) fn read_packet_id(r: &mut Reader<'_>) -> Result<crate::PacketId, DecodeError> {
    crate::PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)
}

/// Reads a reason code and checks it is allowed in this packet type.
pub(crate) fn read_reason(r: &mut Reader<'_>) -> Result<crate::ReasonCode, DecodeError> {
    let packet = r.packet();
    let code = r.u8()?;
    crate::ReasonCode::from_u8(code)
        .filter(|c| c.valid_in(packet))
        .ok_or(DecodeError::InvalidReasonCode { packet, code })
}

/// Checks an encoder-supplied reason code the same way the decoder will.
pub(crate) fn check_reason(code: crate::ReasonCode, packet: PacketType) -> Result<(), EncodeError> {
    if code.valid_in(packet) {
        Ok(())
    } else {
        Err(EncodeError::InvalidField(
            "reason code not allowed in this packet",
        ))
    }
}
