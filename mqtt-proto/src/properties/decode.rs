//! Decoding a property block: one validating pass that reads each value into its field.

use super::raw::read_id;
use super::{
    bit, Properties, PropertyContext, PropertyId, SubscriptionIds, UserProperties, FORWARDED,
};
use crate::error::DecodeError;
use crate::types::QoS;
use crate::wire::Reader;

fn flag(id: PropertyId, b: u8) -> Result<bool, DecodeError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id as u8)),
    }
}

impl<'a> Properties<'a> {
    /// Reads the property length and block from `r` and validates it for `ctx`.
    pub(crate) fn read(r: &mut Reader<'a>, ctx: PropertyContext) -> Result<Self, DecodeError> {
        let len = r.varint()? as usize;
        if len > r.remaining() {
            return Err(DecodeError::PropertyLengthMismatch);
        }
        let block = r.take(len)?;
        Self::parse_block(block, ctx)
    }

    /// [`Properties::read`] for a PUBLISH that a server forwards, into `p` (which must be
    /// empty): also returns the block as received (without its length prefix) when every
    /// property in it is one a server forwards unaltered (see
    /// [`Properties::emit_forwarded_block_to`]), so that it can be stored and copied as it is
    /// instead of re-encoded. The decoded value is written in place instead of being
    /// returned and copied (248 bytes on 64-bit targets).
    #[inline]
    pub(crate) fn read_forwardable_into(
        p: &mut Self,
        r: &mut Reader<'a>,
        ctx: PropertyContext,
    ) -> Result<Option<&'a [u8]>, DecodeError> {
        let len = r.varint()? as usize;
        if len > r.remaining() {
            return Err(DecodeError::PropertyLengthMismatch);
        }
        let block = r.take(len)?;
        let seen = p.parse_block_into(block, ctx)?;
        Ok((seen & !FORWARDED == 0).then_some(block))
    }

    /// Validates a property block (without its length prefix) for `ctx`.
    pub fn parse_block(block: &'a [u8], ctx: PropertyContext) -> Result<Self, DecodeError> {
        Self::parse_block_seen(block, ctx).map(|(p, _)| p)
    }

    /// [`Properties::parse_block`], also returning the set of identifiers present.
    #[inline]
    fn parse_block_seen(block: &'a [u8], ctx: PropertyContext) -> Result<(Self, u64), DecodeError> {
        let mut p = Properties::default();
        let seen = p.parse_block_into(block, ctx)?;
        Ok((p, seen))
    }

    /// Decodes `block` into `self` (empty), returning the set of identifiers present.
    #[inline]
    fn parse_block_into(
        &mut self,
        block: &'a [u8],
        ctx: PropertyContext,
    ) -> Result<u64, DecodeError> {
        let packet = ctx.packet_type();
        let allowed = ctx.allowed();
        let repeatable = ctx.repeatable();
        let mut seen: u64 = 0;
        let p = self;
        let mut r = Reader::new(block, packet);
        // One pass that reads each value straight into its field (this is on the path of
        // every MQTT 5 packet; going through `RawIter` and a `Value` cost a third of a
        // PUBLISH decode).
        while !r.is_empty() {
            let id = read_id(&mut r)?;
            let b = bit(id);
            if allowed & b == 0 {
                return Err(DecodeError::PropertyNotAllowed {
                    id: id as u8,
                    packet,
                });
            }
            if seen & b != 0 && repeatable & b == 0 {
                return Err(DecodeError::DuplicateProperty(id as u8));
            }
            seen |= b;
            p.read_value(&mut r, id, block).map_err(|e| match e {
                // A value that runs past the block: the property length is wrong.
                DecodeError::UnexpectedEnd { .. } => DecodeError::PropertyLengthMismatch,
                e => e,
            })?;
        }
        Ok(seen)
    }

    /// Reads the value of property `id` into its field, checking the values the
    /// specification forbids.
    #[inline(always)]
    fn read_value(
        &mut self,
        r: &mut Reader<'a>,
        id: PropertyId,
        block: &'a [u8],
    ) -> Result<(), DecodeError> {
        use PropertyId::*;
        let bad = DecodeError::InvalidPropertyValue(id as u8);
        let p = self;
        match id {
            PayloadFormatIndicator => p.payload_format_indicator = Some(flag(id, r.u8()?)?),
            MessageExpiryInterval => p.message_expiry_interval = Some(r.u32()?),
            ContentType => p.content_type = Some(r.utf8()?),
            ResponseTopic => {
                // [MQTT-3.3.2-14] the Response Topic is a Topic Name: no wildcards.
                let t = r.topic_name().map_err(|e| match e {
                    DecodeError::InvalidTopicName => bad,
                    e => e,
                })?;
                if t.is_empty() {
                    return Err(bad);
                }
                p.response_topic = Some(t)
            }
            CorrelationData => p.correlation_data = Some(r.binary()?),
            SubscriptionIdentifier => {
                // 3.3.2.3.8 / 3.8.2.1.2: a Subscription Identifier of 0 is a Protocol Error.
                if r.varint()? == 0 {
                    return Err(bad);
                }
                p.subscription_identifiers = SubscriptionIds::Wire(block);
            }
            SessionExpiryInterval => p.session_expiry_interval = Some(r.u32()?),
            AssignedClientIdentifier => p.assigned_client_identifier = Some(r.utf8()?),
            ServerKeepAlive => p.server_keep_alive = Some(r.u16()?),
            AuthenticationMethod => p.authentication_method = Some(r.utf8()?),
            AuthenticationData => p.authentication_data = Some(r.binary()?),
            RequestProblemInformation => p.request_problem_information = Some(flag(id, r.u8()?)?),
            WillDelayInterval => p.will_delay_interval = Some(r.u32()?),
            RequestResponseInformation => p.request_response_information = Some(flag(id, r.u8()?)?),
            ResponseInformation => p.response_information = Some(r.utf8()?),
            ServerReference => p.server_reference = Some(r.utf8()?),
            ReasonString => p.reason_string = Some(r.utf8()?),
            ReceiveMaximum => {
                // 3.1.2.11.3: a Receive Maximum of 0 is a Protocol Error.
                let x = r.u16()?;
                if x == 0 {
                    return Err(bad);
                }
                p.receive_maximum = Some(x)
            }
            TopicAliasMaximum => p.topic_alias_maximum = Some(r.u16()?),
            TopicAlias => {
                // [MQTT-3.3.2-8] a Topic Alias of 0 is not permitted.
                let x = r.u16()?;
                if x == 0 {
                    return Err(bad);
                }
                p.topic_alias = Some(x)
            }
            MaximumQoS => {
                p.maximum_qos = Some(match r.u8()? {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(bad),
                })
            }
            RetainAvailable => p.retain_available = Some(flag(id, r.u8()?)?),
            UserProperty => {
                r.utf8()?;
                r.utf8()?;
                p.user_properties = UserProperties::Wire(block)
            }
            MaximumPacketSize => {
                // 3.1.2.11.4: a Maximum Packet Size of 0 is a Protocol Error.
                let x = r.u32()?;
                if x == 0 {
                    return Err(bad);
                }
                p.maximum_packet_size = Some(x)
            }
            WildcardSubscriptionAvailable => {
                p.wildcard_subscription_available = Some(flag(id, r.u8()?)?)
            }
            SubscriptionIdentifierAvailable => {
                p.subscription_identifier_available = Some(flag(id, r.u8()?)?)
            }
            SharedSubscriptionAvailable => {
                p.shared_subscription_available = Some(flag(id, r.u8()?)?)
            }
        }
        Ok(())
    }
}
