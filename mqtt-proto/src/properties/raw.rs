//! Walking a validated property block without decoding it: one property's raw value, the
//! property identifier, and an iterator of (id, raw value) pairs.

use super::PropertyId;
use crate::error::DecodeError;
use crate::types::PacketType;
use crate::wire::Reader;

/// Reads one value of property `id` and returns its bytes as they are on the wire (with
/// any length prefixes), without validating them: this walks blocks that
/// `Properties::parse_block` has validated.
fn raw_value<'a>(r: &mut Reader<'a>, id: PropertyId) -> Result<&'a [u8], DecodeError> {
    use PropertyId::*;
    let before = r.as_slice();
    match id {
        PayloadFormatIndicator
        | RequestProblemInformation
        | RequestResponseInformation
        | MaximumQoS
        | RetainAvailable
        | WildcardSubscriptionAvailable
        | SubscriptionIdentifierAvailable
        | SharedSubscriptionAvailable => {
            r.take(1)?;
        }
        ServerKeepAlive | ReceiveMaximum | TopicAliasMaximum | TopicAlias => {
            r.take(2)?;
        }
        MessageExpiryInterval | SessionExpiryInterval | WillDelayInterval | MaximumPacketSize => {
            r.take(4)?;
        }
        SubscriptionIdentifier => {
            r.varint()?;
        }
        ContentType
        | ResponseTopic
        | AssignedClientIdentifier
        | AuthenticationMethod
        | ResponseInformation
        | ServerReference
        | ReasonString
        | CorrelationData
        | AuthenticationData => {
            r.binary()?;
        }
        UserProperty => {
            r.binary()?;
            r.binary()?;
        }
    }
    let used = before.len() - r.remaining();
    Ok(before.get(..used).unwrap_or_default())
}

/// Reads a property identifier. 2.2.2.2: it is a Variable Byte Integer, and every defined
/// one is below 128, so one byte decides the common case.
#[inline(always)]
pub(super) fn read_id(r: &mut Reader<'_>) -> Result<PropertyId, DecodeError> {
    let raw = match r.peek() {
        Some(b) if b < 0x80 => u32::from(r.u8()?),
        _ => r.varint()?,
    };
    u8::try_from(raw)
        .ok()
        .and_then(PropertyId::from_u8)
        .ok_or(DecodeError::InvalidPropertyId(raw.min(255) as u8))
}

/// Iterates (id, raw value) over a property block. Stops at the first malformed property,
/// which `Properties::parse_block` has already ruled out for blocks it accepted (a `Wire`
/// block built by hand from unchecked bytes just ends early).
#[derive(Debug, Clone)]
pub(super) struct RawIter<'a> {
    r: Reader<'a>,
}

impl<'a> RawIter<'a> {
    pub(super) fn new(block: &'a [u8]) -> Self {
        Self {
            r: Reader::new(block, PacketType::Publish),
        }
    }

    /// The raw values of the properties `want`, in order.
    pub(super) fn only(
        block: &'a [u8],
        want: PropertyId,
    ) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
        Self::new(block).filter_map(move |(id, v)| (id == want).then_some(v))
    }
}

impl<'a> Iterator for RawIter<'a> {
    type Item = (PropertyId, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        let id = read_id(&mut self.r).ok()?;
        let v = raw_value(&mut self.r, id).ok()?;
        Some((id, v))
    }
}

/// A User Property's raw value (two length-prefixed strings) as strings, checked.
pub(super) fn pair(raw: &[u8]) -> Option<(&str, &str)> {
    let mut r = Reader::new(raw, PacketType::Publish);
    let k = r.utf8().ok()?;
    let v = r.utf8().ok()?;
    Some((k, v))
}
