//! MQTT 5 properties (2.2.2): every property with its type, the packets it may appear in,
//! and the duplicate rules. Decoding validates the whole block once and keeps the typed
//! values; the properties that may repeat (User Property, Subscription Identifier) stay
//! in the borrowed block and are read by lazy iterators, so nothing is allocated.

mod decode;
mod encode;
mod lists;
mod raw;

pub use lists::{SubscriptionIds, UserProperties, UserPropertyIter};

use crate::types::{PacketType, QoS};

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
