//! MQTT 5 properties (2.2.2): every property with its type, the packets it may appear in,
//! and the duplicate rules. Decoding validates the whole block once and keeps the typed
//! values; the properties that may repeat (User Property, Subscription Identifier) stay
//! in the borrowed block and are read by lazy iterators, so nothing is allocated.

use crate::error::{DecodeError, EncodeError};
use crate::types::{PacketType, QoS};
use crate::wire::{binary_len, put_binary, put_varint, str_len, varint_len, Reader, Sink};
use core::fmt;

macro_rules! property_ids {
    ($($name:ident = $val:literal,)*) => {
        /// A property identifier (Table 2-4).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u8)]
        #[allow(missing_docs)]
        pub enum PropertyId { $($name = $val,)* }

        impl PropertyId {
            /// The identifier for a byte, if it names a property.
            pub const fn from_u8(v: u8) -> Option<Self> {
                match v { $($val => Some(Self::$name),)* _ => None }
            }
        }
    };
}

property_ids! {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

/// Where a property block sits: each packet type, and the will properties of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum PropertyContext {
    Connect,
    ConnAck,
    Publish,
    Will,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

const fn bit(id: PropertyId) -> u64 {
    1u64 << (id as u8)
}

/// The properties a server forwards unaltered with an application message ([MQTT-3.3.2-4],
/// [MQTT-3.3.2-15], [MQTT-3.3.2-16], [MQTT-3.3.2-17]).
const FORWARDED: u64 = bit(PropertyId::PayloadFormatIndicator)
    | bit(PropertyId::ContentType)
    | bit(PropertyId::ResponseTopic)
    | bit(PropertyId::CorrelationData)
    | bit(PropertyId::UserProperty);

impl PropertyContext {
    /// The packet type errors are reported against.
    pub const fn packet_type(self) -> PacketType {
        match self {
            Self::Connect | Self::Will => PacketType::Connect,
            Self::ConnAck => PacketType::ConnAck,
            Self::Publish => PacketType::Publish,
            Self::PubAck => PacketType::PubAck,
            Self::PubRec => PacketType::PubRec,
            Self::PubRel => PacketType::PubRel,
            Self::PubComp => PacketType::PubComp,
            Self::Subscribe => PacketType::Subscribe,
            Self::SubAck => PacketType::SubAck,
            Self::Unsubscribe => PacketType::Unsubscribe,
            Self::UnsubAck => PacketType::UnsubAck,
            Self::Disconnect => PacketType::Disconnect,
            Self::Auth => PacketType::Auth,
        }
    }

    /// The set of property identifiers allowed here, as a bit mask (Table 2-4).
    pub const fn allowed(self) -> u64 {
        use PropertyId::*;
        let user = bit(UserProperty);
        let reason = bit(ReasonString) | user;
        match self {
            Self::Connect => {
                bit(SessionExpiryInterval)
                    | bit(AuthenticationMethod)
                    | bit(AuthenticationData)
                    | bit(RequestProblemInformation)
                    | bit(RequestResponseInformation)
                    | bit(ReceiveMaximum)
                    | bit(TopicAliasMaximum)
                    | bit(MaximumPacketSize)
                    | user
            }
            Self::ConnAck => {
                bit(SessionExpiryInterval)
                    | bit(AssignedClientIdentifier)
                    | bit(ServerKeepAlive)
                    | bit(AuthenticationMethod)
                    | bit(AuthenticationData)
                    | bit(ResponseInformation)
                    | bit(ServerReference)
                    | bit(ReceiveMaximum)
                    | bit(TopicAliasMaximum)
                    | bit(MaximumQoS)
                    | bit(RetainAvailable)
                    | bit(MaximumPacketSize)
                    | bit(WildcardSubscriptionAvailable)
                    | bit(SubscriptionIdentifierAvailable)
                    | bit(SharedSubscriptionAvailable)
                    | reason
            }
            Self::Publish => {
                bit(PayloadFormatIndicator)
                    | bit(MessageExpiryInterval)
                    | bit(ContentType)
                    | bit(ResponseTopic)
                    | bit(CorrelationData)
                    | bit(SubscriptionIdentifier)
                    | bit(TopicAlias)
                    | user
            }
            Self::Will => {
                bit(PayloadFormatIndicator)
                    | bit(MessageExpiryInterval)
                    | bit(ContentType)
                    | bit(ResponseTopic)
                    | bit(CorrelationData)
                    | bit(WillDelayInterval)
                    | user
            }
            Self::PubAck
            | Self::PubRec
            | Self::PubRel
            | Self::PubComp
            | Self::SubAck
            | Self::UnsubAck => reason,
            Self::Subscribe => bit(SubscriptionIdentifier) | user,
            Self::Unsubscribe => user,
            Self::Disconnect => bit(SessionExpiryInterval) | bit(ServerReference) | reason,
            Self::Auth => bit(AuthenticationMethod) | bit(AuthenticationData) | reason,
        }
    }

    /// Properties that may appear more than once here.
    const fn repeatable(self) -> u64 {
        match self {
            // [MQTT-3.3.4-3]: a PUBLISH may carry several Subscription Identifiers.
            Self::Publish => {
                bit(PropertyId::UserProperty) | bit(PropertyId::SubscriptionIdentifier)
            }
            _ => bit(PropertyId::UserProperty),
        }
    }
}

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
fn read_id(r: &mut Reader<'_>) -> Result<PropertyId, DecodeError> {
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
struct RawIter<'a> {
    r: Reader<'a>,
}

impl<'a> RawIter<'a> {
    fn new(block: &'a [u8]) -> Self {
        Self {
            r: Reader::new(block, PacketType::Publish),
        }
    }

    /// The raw values of the properties `want`, in order.
    fn only(block: &'a [u8], want: PropertyId) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
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
fn pair(raw: &[u8]) -> Option<(&str, &str)> {
    let mut r = Reader::new(raw, PacketType::Publish);
    let k = r.utf8().ok()?;
    let v = r.utf8().ok()?;
    Some((k, v))
}

/// User properties in their original order: either the decoded property block (read lazily)
/// or a list supplied for encoding.
#[derive(Clone, Copy)]
pub enum UserProperties<'a> {
    /// A validated property block from the wire; only its User Property entries are used.
    Wire(&'a [u8]),
    /// Name/value pairs to encode.
    List(&'a [(&'a str, &'a str)]),
}

impl Default for UserProperties<'_> {
    fn default() -> Self {
        Self::List(&[])
    }
}

impl<'a> UserProperties<'a> {
    /// The name/value pairs, in order.
    pub fn iter(&self) -> UserPropertyIter<'a> {
        match *self {
            Self::Wire(b) => UserPropertyIter(IterInner::Wire(RawIter::new(b))),
            Self::List(l) => UserPropertyIter(IterInner::List(l.iter())),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        match *self {
            // No string needs validating to answer this.
            Self::Wire(b) => RawIter::only(b, PropertyId::UserProperty).next().is_none(),
            Self::List(l) => l.is_empty(),
        }
    }

    /// (number of pairs, encoded length of all of them with their identifiers), checking
    /// that each would decode.
    fn measure(&self) -> Result<(usize, usize), EncodeError> {
        let mut count = 0;
        let mut n = 0;
        match *self {
            Self::Wire(b) => {
                for raw in RawIter::only(b, PropertyId::UserProperty) {
                    if pair(raw).is_none() {
                        return Err(EncodeError::InvalidField(
                            "user property is not a valid UTF-8 string pair",
                        ));
                    }
                    count += 1;
                    n += 1 + raw.len();
                }
            }
            Self::List(l) => {
                for (k, v) in l {
                    count += 1;
                    n += 1 + str_len(k)? + str_len(v)?;
                }
            }
        }
        Ok((count, n))
    }

    /// Writes each pair with its identifier; a decoded block is copied as it came.
    fn emit<S: Sink + ?Sized>(&self, s: &mut S) {
        let id = PropertyId::UserProperty as u8;
        match *self {
            Self::Wire(b) => {
                for raw in RawIter::only(b, PropertyId::UserProperty) {
                    s.put_u8(id);
                    s.put_slice(raw);
                }
            }
            Self::List(l) => {
                for (k, v) in l {
                    s.put_u8(id);
                    put_binary(s, k.as_bytes());
                    put_binary(s, v.as_bytes());
                }
            }
        }
    }
}

/// Iterator over user properties.
#[derive(Debug, Clone)]
pub struct UserPropertyIter<'a>(IterInner<'a>);

#[derive(Debug, Clone)]
enum IterInner<'a> {
    Wire(RawIter<'a>),
    List(core::slice::Iter<'a, (&'a str, &'a str)>),
}

impl<'a> Iterator for UserPropertyIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterInner::Wire(raw) => loop {
                let (id, v) = raw.next()?;
                if id == PropertyId::UserProperty {
                    return pair(v);
                }
            },
            IterInner::List(l) => l.next().copied(),
        }
    }
}

impl PartialEq for UserProperties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for UserProperties<'_> {}

impl fmt::Debug for UserProperties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for UserProperties<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[{} user properties]", self.iter().count())
    }
}

/// Subscription Identifiers: one in SUBSCRIBE, any number in PUBLISH ([MQTT-3.3.4-3]).
#[derive(Clone, Copy)]
pub enum SubscriptionIds<'a> {
    /// A validated property block from the wire.
    Wire(&'a [u8]),
    /// Identifiers to encode (each 1..=268,435,455).
    List(&'a [u32]),
}

impl Default for SubscriptionIds<'_> {
    fn default() -> Self {
        Self::List(&[])
    }
}

impl<'a> SubscriptionIds<'a> {
    /// The identifiers, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let (wire, list): (&'a [u8], &'a [u32]) = match *self {
            Self::Wire(b) => (b, &[]),
            Self::List(l) => (&[], l),
        };
        RawIter::only(wire, PropertyId::SubscriptionIdentifier)
            .filter_map(|raw| Reader::new(raw, PacketType::Publish).varint().ok())
            .chain(list.iter().copied())
    }

    /// The first identifier (the only one a SUBSCRIBE may carry).
    pub fn first(&self) -> Option<u32> {
        self.iter().next()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        match *self {
            Self::Wire(b) => RawIter::only(b, PropertyId::SubscriptionIdentifier)
                .next()
                .is_none(),
            Self::List(l) => l.is_empty(),
        }
    }

    /// (number of identifiers, encoded length with their property identifiers), checking
    /// each is in 1..=268,435,455.
    fn measure(&self) -> Result<(usize, usize), EncodeError> {
        let mut count = 0;
        let mut n = 0;
        for id in self.iter() {
            if id == 0 || id as usize > crate::wire::MAX_REMAINING_LENGTH {
                return Err(EncodeError::InvalidField(
                    "subscription identifier out of range",
                ));
            }
            count += 1;
            n += 1 + varint_len(id as usize);
        }
        Ok((count, n))
    }

    fn emit<S: Sink + ?Sized>(&self, s: &mut S) {
        for id in self.iter() {
            s.put_u8(PropertyId::SubscriptionIdentifier as u8);
            put_varint(s, id as usize);
        }
    }
}

impl PartialEq for SubscriptionIds<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for SubscriptionIds<'_> {}

impl fmt::Debug for SubscriptionIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SubscriptionIds<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[{} subscription ids]", self.iter().count())
    }
}

/// The properties of one packet (or of a will). Fields a packet may not carry stay `None`;
/// decoding rejects them ([`DecodeError::PropertyNotAllowed`]) and so does encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub struct Properties<'a> {
    /// `true`: the payload is UTF-8 (3.3.2.3.2).
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<&'a str>,
    pub response_topic: Option<&'a str>,
    pub correlation_data: Option<&'a [u8]>,
    pub subscription_identifiers: SubscriptionIds<'a>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<&'a str>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<&'a str>,
    pub authentication_data: Option<&'a [u8]>,
    pub request_problem_information: Option<bool>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<bool>,
    pub response_information: Option<&'a str>,
    pub server_reference: Option<&'a str>,
    pub reason_string: Option<&'a str>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    /// Only QoS 0 or 1 may be sent (3.2.2.3.4).
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub user_properties: UserProperties<'a>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

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

    /// The set of properties present, as a bit mask of identifiers.
    fn present(&self) -> u64 {
        let mut m = self.present_scalars();
        if !self.subscription_identifiers.is_empty() {
            m |= bit(PropertyId::SubscriptionIdentifier);
        }
        if !self.user_properties.is_empty() {
            m |= bit(PropertyId::UserProperty);
        }
        m
    }

    /// [`Self::present`] without the two lists.
    fn present_scalars(&self) -> u64 {
        use PropertyId::*;
        let mut m = 0;
        let mut add = |on: bool, id: PropertyId| {
            if on {
                m |= bit(id)
            }
        };
        add(
            self.payload_format_indicator.is_some(),
            PayloadFormatIndicator,
        );
        add(
            self.message_expiry_interval.is_some(),
            MessageExpiryInterval,
        );
        add(self.content_type.is_some(), ContentType);
        add(self.response_topic.is_some(), ResponseTopic);
        add(self.correlation_data.is_some(), CorrelationData);
        add(
            self.session_expiry_interval.is_some(),
            SessionExpiryInterval,
        );
        add(
            self.assigned_client_identifier.is_some(),
            AssignedClientIdentifier,
        );
        add(self.server_keep_alive.is_some(), ServerKeepAlive);
        add(self.authentication_method.is_some(), AuthenticationMethod);
        add(self.authentication_data.is_some(), AuthenticationData);
        add(
            self.request_problem_information.is_some(),
            RequestProblemInformation,
        );
        add(self.will_delay_interval.is_some(), WillDelayInterval);
        add(
            self.request_response_information.is_some(),
            RequestResponseInformation,
        );
        add(self.response_information.is_some(), ResponseInformation);
        add(self.server_reference.is_some(), ServerReference);
        add(self.reason_string.is_some(), ReasonString);
        add(self.receive_maximum.is_some(), ReceiveMaximum);
        add(self.topic_alias_maximum.is_some(), TopicAliasMaximum);
        add(self.topic_alias.is_some(), TopicAlias);
        add(self.maximum_qos.is_some(), MaximumQoS);
        add(self.retain_available.is_some(), RetainAvailable);
        add(self.maximum_packet_size.is_some(), MaximumPacketSize);
        add(
            self.wildcard_subscription_available.is_some(),
            WildcardSubscriptionAvailable,
        );
        add(
            self.subscription_identifier_available.is_some(),
            SubscriptionIdentifierAvailable,
        );
        add(
            self.shared_subscription_available.is_some(),
            SharedSubscriptionAvailable,
        );
        m
    }

    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.present() == 0
    }

    /// Length of the property block without its length prefix, after checking that every
    /// property is allowed in `ctx` and has a value the decoder accepts.
    pub fn block_len(&self, ctx: PropertyContext) -> Result<usize, EncodeError> {
        // The two lists are walked once each here (a decoded block is not re-validated
        // string by string on every pass).
        let (sub_ids, sub_ids_len) = self.subscription_identifiers.measure()?;
        let (users, users_len) = self.user_properties.measure()?;
        let mut present = self.present_scalars();
        if sub_ids > 0 {
            present |= bit(PropertyId::SubscriptionIdentifier);
        }
        if users > 0 {
            present |= bit(PropertyId::UserProperty);
        }
        if present & !ctx.allowed() != 0 {
            return Err(EncodeError::InvalidField(
                "property not allowed in this packet",
            ));
        }
        if ctx != PropertyContext::Publish && sub_ids > 1 {
            return Err(EncodeError::InvalidField(
                "only one subscription identifier allowed",
            ));
        }
        let zero = |v: Option<u16>| v == Some(0);
        if zero(self.receive_maximum)
            || zero(self.topic_alias)
            || self.maximum_packet_size == Some(0)
        {
            return Err(EncodeError::InvalidField(
                "property value of 0 is not allowed",
            ));
        }
        if self.maximum_qos == Some(QoS::ExactlyOnce) {
            return Err(EncodeError::InvalidField("maximum QoS must be 0 or 1"));
        }
        if let Some(t) = self.response_topic {
            crate::topic::validate_name(t)
                .map_err(|_| EncodeError::InvalidField("response topic is not a topic name"))?;
        }
        let mut n = 0;
        let s = |o: Option<&str>| o.map_or(Ok(0), |s| str_len(s).map(|l| l + 1));
        let b = |o: Option<&[u8]>| o.map_or(Ok(0), |s| binary_len(s).map(|l| l + 1));
        let fixed = |on: bool, len: usize| if on { 1 + len } else { 0 };
        n += fixed(self.payload_format_indicator.is_some(), 1);
        n += fixed(self.message_expiry_interval.is_some(), 4);
        n += s(self.content_type)?;
        n += s(self.response_topic)?;
        n += b(self.correlation_data)?;
        n += sub_ids_len;
        n += fixed(self.session_expiry_interval.is_some(), 4);
        n += s(self.assigned_client_identifier)?;
        n += fixed(self.server_keep_alive.is_some(), 2);
        n += s(self.authentication_method)?;
        n += b(self.authentication_data)?;
        n += fixed(self.request_problem_information.is_some(), 1);
        n += fixed(self.will_delay_interval.is_some(), 4);
        n += fixed(self.request_response_information.is_some(), 1);
        n += s(self.response_information)?;
        n += s(self.server_reference)?;
        n += s(self.reason_string)?;
        n += fixed(self.receive_maximum.is_some(), 2);
        n += fixed(self.topic_alias_maximum.is_some(), 2);
        n += fixed(self.topic_alias.is_some(), 2);
        n += fixed(self.maximum_qos.is_some(), 1);
        n += fixed(self.retain_available.is_some(), 1);
        n += users_len;
        n += fixed(self.maximum_packet_size.is_some(), 4);
        n += fixed(self.wildcard_subscription_available.is_some(), 1);
        n += fixed(self.subscription_identifier_available.is_some(), 1);
        n += fixed(self.shared_subscription_available.is_some(), 1);
        if n > crate::wire::MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge);
        }
        Ok(n)
    }

    /// Length with the Variable Byte Integer prefix.
    pub fn encoded_len(&self, ctx: PropertyContext) -> Result<usize, EncodeError> {
        let n = self.block_len(ctx)?;
        Ok(varint_len(n) + n)
    }

    /// Writes the length prefix and the block; `block_len` is the value `block_len` returned.
    pub(crate) fn emit<S: Sink + ?Sized>(&self, s: &mut S, block_len: usize) {
        put_varint(s, block_len);
        self.emit_entries(s);
    }

    /// Writes the property block for `ctx` without its length prefix (to store a block
    /// and forward it later); returns its length.
    pub fn emit_block_to<S: Sink + ?Sized>(
        &self,
        ctx: PropertyContext,
        s: &mut S,
    ) -> Result<usize, EncodeError> {
        let n = self.block_len(ctx)?;
        if s.remaining_capacity() < n {
            return Err(EncodeError::BufferTooSmall { needed: n });
        }
        self.emit_entries(s);
        Ok(n)
    }

    /// Writes the properties a server forwards unaltered with an application message
    /// (Payload Format Indicator, Content Type, Response Topic, Correlation Data and User
    /// Properties, [MQTT-3.3.2-4], [MQTT-3.3.2-15], [MQTT-3.3.2-16], [MQTT-3.3.2-17]) as a
    /// block without its length prefix, and returns its length (0 when there are none).
    /// The other properties are left out: a server sets Message Expiry Interval, Topic
    /// Alias and Subscription Identifiers per delivery (see [`crate::PublishHeader`]).
    ///
    /// Checked like [`Properties::emit_block_to`] (the block decodes as a PUBLISH block),
    /// but only these five are looked at, which makes it the cheap way for a broker to
    /// store what it will forward. Nothing is written on error.
    pub fn emit_forwarded_block_to<S: Sink + ?Sized>(
        &self,
        s: &mut S,
    ) -> Result<usize, EncodeError> {
        let text = |o: Option<&str>| o.map_or(Ok(0), |v| str_len(v).map(|l| l + 1));
        let mut n = 0;
        if self.payload_format_indicator.is_some() {
            n += 2;
        }
        n += text(self.content_type)?;
        if let Some(t) = self.response_topic {
            crate::topic::validate_name(t)
                .map_err(|_| EncodeError::InvalidField("response topic is not a topic name"))?;
            n += 1 + binary_len(t.as_bytes())?;
        }
        if let Some(d) = self.correlation_data {
            n += 1 + binary_len(d)?;
        }
        let users = match self.user_properties {
            UserProperties::List([]) => 0,
            u => u.measure()?.1,
        };
        n += users;
        if n == 0 {
            return Ok(0);
        }
        if n > crate::wire::MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge);
        }
        if s.remaining_capacity() < n {
            return Err(EncodeError::BufferTooSmall { needed: n });
        }
        if let Some(b) = self.payload_format_indicator {
            s.put_slice(&[PropertyId::PayloadFormatIndicator as u8, u8::from(b)]);
        }
        let field = |s: &mut S, id: PropertyId, v: Option<&[u8]>| {
            if let Some(v) = v {
                s.put_u8(id as u8);
                put_binary(s, v);
            }
        };
        field(
            s,
            PropertyId::ContentType,
            self.content_type.map(str::as_bytes),
        );
        field(
            s,
            PropertyId::ResponseTopic,
            self.response_topic.map(str::as_bytes),
        );
        field(s, PropertyId::CorrelationData, self.correlation_data);
        if users > 0 {
            self.user_properties.emit(s);
        }
        Ok(n)
    }

    fn emit_entries<S: Sink + ?Sized>(&self, s: &mut S) {
        use PropertyId::*;
        let byte = |s: &mut S, id: PropertyId, v: Option<u8>| {
            if let Some(v) = v {
                s.put_u8(id as u8);
                s.put_u8(v);
            }
        };
        let two = |s: &mut S, id: PropertyId, v: Option<u16>| {
            if let Some(v) = v {
                s.put_u8(id as u8);
                s.put_u16(v);
            }
        };
        let four = |s: &mut S, id: PropertyId, v: Option<u32>| {
            if let Some(v) = v {
                s.put_u8(id as u8);
                s.put_u32(v);
            }
        };
        let bin = |s: &mut S, id: PropertyId, v: Option<&[u8]>| {
            if let Some(v) = v {
                s.put_u8(id as u8);
                put_binary(s, v);
            }
        };
        let st = |s: &mut S, id: PropertyId, v: Option<&str>| bin(s, id, v.map(str::as_bytes));
        let b = |v: Option<bool>| v.map(u8::from);
        byte(s, PayloadFormatIndicator, b(self.payload_format_indicator));
        four(s, MessageExpiryInterval, self.message_expiry_interval);
        st(s, ContentType, self.content_type);
        st(s, ResponseTopic, self.response_topic);
        bin(s, CorrelationData, self.correlation_data);
        self.subscription_identifiers.emit(s);
        four(s, SessionExpiryInterval, self.session_expiry_interval);
        st(s, AssignedClientIdentifier, self.assigned_client_identifier);
        two(s, ServerKeepAlive, self.server_keep_alive);
        st(s, AuthenticationMethod, self.authentication_method);
        bin(s, AuthenticationData, self.authentication_data);
        byte(
            s,
            RequestProblemInformation,
            b(self.request_problem_information),
        );
        four(s, WillDelayInterval, self.will_delay_interval);
        byte(
            s,
            RequestResponseInformation,
            b(self.request_response_information),
        );
        st(s, ResponseInformation, self.response_information);
        st(s, ServerReference, self.server_reference);
        st(s, ReasonString, self.reason_string);
        two(s, ReceiveMaximum, self.receive_maximum);
        two(s, TopicAliasMaximum, self.topic_alias_maximum);
        two(s, TopicAlias, self.topic_alias);
        byte(s, MaximumQoS, self.maximum_qos.map(|q| q as u8));
        byte(s, RetainAvailable, b(self.retain_available));
        self.user_properties.emit(s);
        four(s, MaximumPacketSize, self.maximum_packet_size);
        byte(
            s,
            WildcardSubscriptionAvailable,
            b(self.wildcard_subscription_available),
        );
        byte(
            s,
            SubscriptionIdentifierAvailable,
            b(self.subscription_identifier_available),
        );
        byte(
            s,
            SharedSubscriptionAvailable,
            b(self.shared_subscription_available),
        );
    }
}
