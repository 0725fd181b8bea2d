//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (3.8 to 3.11). Their payload lists are
//! validated once at decode and then read lazily from the input, so nothing is allocated.

use super::Sizes;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{
    PacketId, PacketType, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions,
};
use crate::wire::{check_utf8, put_binary, str_len, varint_len, Reader, Sink};
use core::fmt;

/// One SUBSCRIBE entry. The filter is valid UTF-8 but its topic syntax is not checked by the
/// codec: a server answers a bad filter with a per-filter reason code (0x8F), not by closing
/// the connection, so [`crate::topic::Filter::parse`] is the caller's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscription<'a> {
    /// Topic filter.
    pub filter: &'a str,
    /// Subscription options.
    pub options: SubscriptionOptions,
}

fn parse_options(b: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    // [MQTT-3-8.3-4] (3.1.1) only the QoS bits; [MQTT-3.8.3-5] (5.0) bits 6 and 7 reserved.
    let reserved = if v.is_v5() { 0xC0 } else { 0xFC };
    if b & reserved != 0 {
        return Err(DecodeError::InvalidSubscriptionOptions);
    }
    Ok(SubscriptionOptions {
        qos: QoS::from_u8(b & 0x03).ok_or(DecodeError::InvalidQoS)?,
        no_local: b & 0x04 != 0,
        retain_as_published: b & 0x08 != 0,
        retain_handling: match (b >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            // 3.8.3.1: Retain Handling 3 is a Protocol Error.
            _ => return Err(DecodeError::InvalidRetainHandling),
        },
    })
}

/// A length-prefixed field as it is on the wire (prefix included), unchecked.
fn raw_field<'a>(r: &mut Reader<'a>) -> Option<&'a [u8]> {
    let before = r.as_slice();
    let f = r.binary().ok()?;
    before.get(..2 + f.len())
}

/// The entries of a SUBSCRIBE payload as (filter field with its length prefix, options
/// byte), unchecked; stops at a truncated entry.
fn raw_subscriptions(b: &[u8]) -> impl Iterator<Item = (&[u8], u8)> {
    let mut r = Reader::new(b, PacketType::Subscribe);
    core::iter::from_fn(move || {
        let field = raw_field(&mut r)?;
        Some((field, r.u8().ok()?))
    })
}

/// The filter fields of an UNSUBSCRIBE payload, length prefix included, unchecked.
fn raw_filters(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut r = Reader::new(b, PacketType::Unsubscribe);
    core::iter::from_fn(move || raw_field(&mut r))
}

/// The entries of a SUBSCRIBE.
#[derive(Clone, Copy)]
pub enum Subscriptions<'a> {
    /// The validated payload from the wire.
    Wire(&'a [u8]),
    /// Entries to encode.
    List(&'a [Subscription<'a>]),
}

impl<'a> Subscriptions<'a> {
    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = Subscription<'a>> + 'a {
        let (mut wire, list) = match *self {
            Self::Wire(b) => (Reader::new(b, PacketType::Subscribe), [].iter()),
            Self::List(l) => (Reader::new(&[], PacketType::Subscribe), l.iter()),
        };
        core::iter::from_fn(move || {
            if wire.is_empty() {
                return None;
            }
            let filter = wire.utf8().ok()?;
            let options = parse_options(wire.u8().ok()?, ProtocolVersion::V5).ok()?;
            Some(Subscription { filter, options })
        })
        .chain(list.copied())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Topic filters of an UNSUBSCRIBE.
#[derive(Clone, Copy)]
pub enum TopicFilters<'a> {
    /// The validated payload from the wire.
    Wire(&'a [u8]),
    /// Filters to encode.
    List(&'a [&'a str]),
}

impl<'a> TopicFilters<'a> {
    /// The filters in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let (mut wire, list) = match *self {
            Self::Wire(b) => (Reader::new(b, PacketType::Unsubscribe), [].iter()),
            Self::List(l) => (Reader::new(&[], PacketType::Unsubscribe), l.iter()),
        };
        core::iter::from_fn(move || {
            if wire.is_empty() {
                None
            } else {
                wire.utf8().ok()
            }
        })
        .chain(list.copied())
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// Reason codes of a SUBACK or UNSUBACK.
#[derive(Clone, Copy)]
pub enum ReasonCodes<'a> {
    /// Validated bytes from the wire (3.1.1 SUBACK codes 0, 1, 2, 0x80 have the same values
    /// as their MQTT 5 counterparts).
    Wire(&'a [u8]),
    /// Codes to encode.
    List(&'a [ReasonCode]),
}

impl<'a> ReasonCodes<'a> {
    /// The codes in order.
    pub fn iter(&self) -> impl Iterator<Item = ReasonCode> + 'a {
        let (wire, list): (&'a [u8], &'a [ReasonCode]) = match *self {
            Self::Wire(b) => (b, &[]),
            Self::List(l) => (&[], l),
        };
        wire.iter()
            .filter_map(|&b| ReasonCode::from_u8(b))
            .chain(list.iter().copied())
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        match *self {
            Self::Wire(b) => b.len(),
            Self::List(l) => l.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

macro_rules! list_impls {
    ($t:ident) => {
        impl PartialEq for $t<'_> {
            fn eq(&self, other: &Self) -> bool {
                self.iter().eq(other.iter())
            }
        }
        impl Eq for $t<'_> {}
        impl fmt::Debug for $t<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.iter()).finish()
            }
        }
        #[cfg(feature = "defmt")]
        impl defmt::Format for $t<'_> {
            fn format(&self, f: defmt::Formatter<'_>) {
                defmt::write!(f, "[{} entries]", self.iter().count())
            }
        }
    };
}
list_impls!(Subscriptions);
list_impls!(TopicFilters);
list_impls!(ReasonCodes);

fn read_props<'a>(
    r: &mut Reader<'a>,
    v: ProtocolVersion,
    ctx: PropertyContext,
) -> Result<Properties<'a>, DecodeError> {
    if v.is_v5() {
        Properties::read(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

fn props_sizes(
    props: &Properties<'_>,
    v: ProtocolVersion,
    ctx: PropertyContext,
) -> Result<Sizes, EncodeError> {
    let mut s = Sizes {
        body: 2,
        ..Sizes::default()
    };
    if v.is_v5() {
        s.props = props.block_len(ctx)?;
        s.body += varint_len(s.props) + s.props;
    }
    Ok(s)
}

/// SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Subscribe<'a> {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5): a Subscription Identifier and user properties.
    pub properties: Properties<'a>,
    /// At least one entry ([MQTT-3.8.3-2] v5, [MQTT-3.8.3-3] v3.1.1).
    pub subscriptions: Subscriptions<'a>,
}

impl<'a> Subscribe<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = super::read_packet_id(r)?;
        let properties = read_props(r, v, PropertyContext::Subscribe)?;
        let payload = r.rest();
        let mut p = Reader::new(payload, PacketType::Subscribe);
        let mut count = 0usize;
        while !p.is_empty() {
            p.utf8()?;
            parse_options(p.u8()?, v)?;
            count += 1;
        }
        // [MQTT-3.8.3-2] v5, [MQTT-3.8.3-3] v3.1.1: at least one topic filter.
        if count == 0 {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions: Subscriptions::Wire(payload),
        })
    }

    pub(crate) fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut s = props_sizes(&self.properties, v, PropertyContext::Subscribe)?;
        let mut count = 0;
        let mut check = |options: SubscriptionOptions| {
            if !v.is_v5() && options.to_byte(ProtocolVersion::V5) != options.qos as u8 {
                return Err(EncodeError::InvalidField(
                    "subscription options beyond QoS need MQTT 5",
                ));
            }
            count += 1;
            Ok(())
        };
        match self.subscriptions {
            // A decoded payload is measured as it is: one check per filter, no copy.
            Subscriptions::Wire(b) => {
                for (field, options) in raw_subscriptions(b) {
                    let options = parse_options(options, ProtocolVersion::V5)
                        .map_err(|_| EncodeError::InvalidField("invalid subscription options"))?;
                    check(options)?;
                    check_utf8(field.get(2..).unwrap_or_default()).map_err(|_| {
                        EncodeError::InvalidField("topic filter is not a valid UTF-8 string")
                    })?;
                    s.body += field.len() + 1;
                }
            }
            Subscriptions::List(l) => {
                for sub in l {
                    check(sub.options)?;
                    s.body += str_len(sub.filter)? + 1;
                }
            }
        }
        if count == 0 {
            return Err(EncodeError::InvalidField(
                "SUBSCRIBE needs at least one topic filter",
            ));
        }
        Ok(s)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, v: ProtocolVersion, s: &mut S, sizes: &Sizes) {
        s.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.emit(s, sizes.props);
        }
        match self.subscriptions {
            Subscriptions::Wire(b) => {
                for (field, options) in raw_subscriptions(b) {
                    // `sizes` has checked every options byte.
                    let o = parse_options(options, ProtocolVersion::V5)
                        .map_or(options & 0x03, |o| o.to_byte(v));
                    s.put_slice(field);
                    s.put_u8(o);
                }
            }
            Subscriptions::List(l) => {
                for sub in l {
                    put_binary(s, sub.filter.as_bytes());
                    s.put_u8(sub.options.to_byte(v));
                }
            }
        }
    }
}

/// SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SubAck<'a> {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
    /// One code per SUBSCRIBE entry, in order ([MQTT-3.9.3-1]).
    pub reason_codes: ReasonCodes<'a>,
}

impl<'a> SubAck<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = super::read_packet_id(r)?;
        let properties = read_props(r, v, PropertyContext::SubAck)?;
        let codes = r.rest();
        if codes.is_empty() {
            return Err(DecodeError::NoReasonCodes);
        }
        for &code in codes {
            let ok = if v.is_v5() {
                ReasonCode::from_u8(code).is_some_and(|c| c.valid_in(PacketType::SubAck))
            } else {
                // [MQTT-3.9.3-2] 3.1.1 return codes are 0x00, 0x01, 0x02 and 0x80.
                matches!(code, 0 | 1 | 2 | 0x80)
            };
            if !ok {
                return Err(DecodeError::InvalidReasonCode {
                    packet: PacketType::SubAck,
                    code,
                });
            }
        }
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes: ReasonCodes::Wire(codes),
        })
    }

    pub(crate) fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut s = props_sizes(&self.properties, v, PropertyContext::SubAck)?;
        for c in self.reason_codes.iter() {
            super::check_reason(c, PacketType::SubAck)?;
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::InvalidField(
                "SUBACK needs at least one reason code",
            ));
        }
        s.body += self.reason_codes.len();
        Ok(s)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, v: ProtocolVersion, s: &mut S, sizes: &Sizes) {
        s.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.emit(s, sizes.props);
        }
        for c in self.reason_codes.iter() {
            s.put_u8(if v.is_v5() { c as u8 } else { c.to_v3_suback() });
        }
    }
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Unsubscribe<'a> {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5): user properties only.
    pub properties: Properties<'a>,
    /// At least one filter ([MQTT-3.10.3-2]).
    pub filters: TopicFilters<'a>,
}

impl<'a> Unsubscribe<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = super::read_packet_id(r)?;
        let properties = read_props(r, v, PropertyContext::Unsubscribe)?;
        let payload = r.rest();
        let mut p = Reader::new(payload, PacketType::Unsubscribe);
        let mut count = 0usize;
        while !p.is_empty() {
            p.utf8()?;
            count += 1;
        }
        // [MQTT-3.10.3-2] at least one topic filter.
        if count == 0 {
            return Err(DecodeError::NoTopicFilters);
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters: TopicFilters::Wire(payload),
        })
    }

    pub(crate) fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut s = props_sizes(&self.properties, v, PropertyContext::Unsubscribe)?;
        let mut count = 0;
        match self.filters {
            TopicFilters::Wire(b) => {
                for field in raw_filters(b) {
                    check_utf8(field.get(2..).unwrap_or_default()).map_err(|_| {
                        EncodeError::InvalidField("topic filter is not a valid UTF-8 string")
                    })?;
                    s.body += field.len();
                    count += 1;
                }
            }
            TopicFilters::List(l) => {
                for f in l {
                    s.body += str_len(f)?;
                    count += 1;
                }
            }
        }
        if count == 0 {
            return Err(EncodeError::InvalidField(
                "UNSUBSCRIBE needs at least one topic filter",
            ));
        }
        Ok(s)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, v: ProtocolVersion, s: &mut S, sizes: &Sizes) {
        s.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.emit(s, sizes.props);
        }
        match self.filters {
            TopicFilters::Wire(b) => raw_filters(b).for_each(|field| s.put_slice(field)),
            TopicFilters::List(l) => l.iter().for_each(|f| put_binary(s, f.as_bytes())),
        }
    }
}

/// UNSUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnsubAck<'a> {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
    /// MQTT 5: one code per filter. 3.1.1 has none.
    pub reason_codes: ReasonCodes<'a>,
}

impl<'a> UnsubAck<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = super::read_packet_id(r)?;
        if !v.is_v5() {
            return Ok(UnsubAck {
                packet_id,
                properties: Properties::default(),
                reason_codes: ReasonCodes::List(&[]),
            });
        }
        let properties = Properties::read(r, PropertyContext::UnsubAck)?;
        let codes = r.rest();
        if codes.is_empty() {
            return Err(DecodeError::NoReasonCodes);
        }
        for &code in codes {
            if !ReasonCode::from_u8(code).is_some_and(|c| c.valid_in(PacketType::UnsubAck)) {
                return Err(DecodeError::InvalidReasonCode {
                    packet: PacketType::UnsubAck,
                    code,
                });
            }
        }
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes: ReasonCodes::Wire(codes),
        })
    }

    pub(crate) fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        if !v.is_v5() {
            return Ok(Sizes {
                body: 2,
                ..Sizes::default()
            });
        }
        let mut s = props_sizes(&self.properties, v, PropertyContext::UnsubAck)?;
        for c in self.reason_codes.iter() {
            super::check_reason(c, PacketType::UnsubAck)?;
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::InvalidField(
                "UNSUBACK needs at least one reason code",
            ));
        }
        s.body += self.reason_codes.len();
        Ok(s)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, v: ProtocolVersion, s: &mut S, sizes: &Sizes) {
        s.put_u16(self.packet_id.get());
        if v.is_v5() {
            self.properties.emit(s, sizes.props);
            for c in self.reason_codes.iter() {
                s.put_u8(c as u8);
            }
        }
    }
}
