//! Decode and encode errors. Each decode error says what is wrong and maps to the MQTT 5
//! reason code a server answers with.

use crate::reason::ReasonCode;
use crate::types::PacketType;
use core::fmt;

/// Why a byte sequence is not a valid MQTT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet type nibble is reserved (0), or AUTH (15) outside MQTT 5.
    InvalidPacketType(u8),
    /// The fixed header flags are not the ones the packet type requires ([MQTT-2.1.3-1]).
    InvalidHeaderFlags {
        /// The packet type.
        packet: PacketType,
        /// The flags received.
        flags: u8,
    },
    /// A Variable Byte Integer longer than four bytes ([MQTT-1.5.5-1] range).
    VarIntTooLong,
    /// A Variable Byte Integer not encoded in the minimum number of bytes ([MQTT-1.5.5-1]).
    NonMinimalVarInt,
    /// The packet is larger than the maximum packet size the receiver allows.
    PacketTooLarge {
        /// Total packet size announced by the fixed header.
        size: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// The packet ends before a field it must carry.
    UnexpectedEnd {
        /// The packet being decoded.
        packet: PacketType,
    },
    /// The remaining length is longer than the packet's fields.
    TrailingBytes {
        /// The packet being decoded.
        packet: PacketType,
    },
    /// A string is not well-formed UTF-8 ([MQTT-1.5.4-1]).
    InvalidUtf8,
    /// A string contains U+0000 ([MQTT-1.5.4-2]).
    NullCharacter,
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp` ([MQTT-3.1.2-1]).
    InvalidProtocolName,
    /// The CONNECT protocol level is not 3, 4 or 5, or does not go with the name
    /// ([MQTT-3.1.2-2]).
    UnsupportedProtocolLevel(u8),
    /// The reserved CONNECT flag is set ([MQTT-3.1.2-3]).
    ReservedConnectFlag,
    /// Will QoS or Will Retain set without the Will Flag, or Will QoS 3
    /// ([MQTT-3.1.2-11], [MQTT-3.1.2-12], [MQTT-3.1.2-13]).
    InvalidWillFlags,
    /// 3.1.1: the Password Flag is set without the User Name Flag ([MQTT-3.1.2-22]).
    PasswordWithoutUsername,
    /// Reserved CONNACK acknowledge flags are set ([MQTT-3.2.2-1]).
    InvalidConnAckFlags,
    /// A QoS of 3 ([MQTT-3.3.1-4]).
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH ([MQTT-3.3.1-2]).
    DupWithQoS0,
    /// A packet identifier of zero ([MQTT-2.2.1-3]).
    ZeroPacketId,
    /// A topic name with wildcards ([MQTT-3.3.2-2]) or otherwise invalid.
    InvalidTopicName,
    /// An empty topic name without a Topic Alias ([MQTT-4.7.3-1]).
    EmptyTopicName,
    /// A reason code that is unknown or not allowed in this packet.
    InvalidReasonCode {
        /// The packet being decoded.
        packet: PacketType,
        /// The code received.
        code: u8,
    },
    /// A property identifier that does not exist (2.2.2.2).
    InvalidPropertyId(u8),
    /// A property that may not appear in this packet (2.2.2.2).
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet being decoded.
        packet: PacketType,
    },
    /// A property that may appear only once appears twice.
    DuplicateProperty(u8),
    /// A property with a value the specification forbids (for example Receive Maximum 0).
    InvalidPropertyValue(u8),
    /// The property length does not match the properties it holds.
    PropertyLengthMismatch,
    /// Reserved subscription option bits are set ([MQTT-3.8.3-5], [MQTT-3-8.3-4]).
    InvalidSubscriptionOptions,
    /// Retain Handling of 3 ([MQTT-3.8.3-6]... Protocol Error).
    InvalidRetainHandling,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter ([MQTT-3.8.3-2] v5 and
    /// [MQTT-3.8.3-3] v3.1.1; [MQTT-3.10.3-2] in both).
    NoTopicFilters,
    /// SUBACK or UNSUBACK without any reason code.
    NoReasonCodes,
}

impl DecodeError {
    /// The MQTT 5 reason code a server sends (in CONNACK or DISCONNECT) for this error.
    pub const fn reason_code(self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            InvalidProtocolName | UnsupportedProtocolLevel(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            InvalidTopicName => ReasonCode::TopicNameInvalid,
            DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | InvalidRetainHandling
            | ZeroPacketId
            | EmptyTopicName
            | NoTopicFilters
            | NoReasonCodes => ReasonCode::ProtocolError,
            InvalidPacketType(_)
            | InvalidHeaderFlags { .. }
            | VarIntTooLong
            | NonMinimalVarInt
            | UnexpectedEnd { .. }
            | TrailingBytes { .. }
            | InvalidUtf8
            | NullCharacter
            | ReservedConnectFlag
            | InvalidWillFlags
            | PasswordWithoutUsername
            | InvalidConnAckFlags
            | InvalidQoS
            | DupWithQoS0
            | InvalidReasonCode { .. }
            | InvalidPropertyId(_)
            | PropertyNotAllowed { .. }
            | PropertyLengthMismatch
            | InvalidSubscriptionOptions => ReasonCode::MalformedPacket,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        match *self {
            InvalidPacketType(t) => write!(f, "invalid packet type {t}"),
            InvalidHeaderFlags { packet, flags } => {
                write!(f, "{packet}: invalid fixed header flags 0x{flags:X}")
            }
            VarIntTooLong => f.write_str("variable byte integer longer than 4 bytes"),
            NonMinimalVarInt => f.write_str("variable byte integer not minimally encoded"),
            PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            UnexpectedEnd { packet } => write!(f, "{packet}: packet ends before its fields"),
            TrailingBytes { packet } => write!(f, "{packet}: bytes left after its fields"),
            InvalidUtf8 => f.write_str("string is not well-formed UTF-8"),
            NullCharacter => f.write_str("string contains U+0000"),
            InvalidProtocolName => f.write_str("CONNECT: protocol name is not MQTT or MQIsdp"),
            UnsupportedProtocolLevel(l) => write!(f, "CONNECT: unsupported protocol level {l}"),
            ReservedConnectFlag => f.write_str("CONNECT: reserved flag is set"),
            InvalidWillFlags => f.write_str("CONNECT: inconsistent will flags"),
            PasswordWithoutUsername => f.write_str("CONNECT: password flag without user name"),
            InvalidConnAckFlags => f.write_str("CONNACK: reserved flags are set"),
            InvalidQoS => f.write_str("QoS 3 is not a valid QoS"),
            DupWithQoS0 => f.write_str("PUBLISH: DUP set on a QoS 0 message"),
            ZeroPacketId => f.write_str("packet identifier is zero"),
            InvalidTopicName => f.write_str("topic name contains wildcards or is invalid"),
            EmptyTopicName => f.write_str("PUBLISH: empty topic name without a topic alias"),
            InvalidReasonCode { packet, code } => {
                write!(f, "{packet}: reason code 0x{code:02X} is not allowed")
            }
            InvalidPropertyId(id) => write!(f, "unknown property identifier 0x{id:02X}"),
            PropertyNotAllowed { id, packet } => {
                write!(f, "{packet}: property 0x{id:02X} is not allowed")
            }
            DuplicateProperty(id) => write!(f, "property 0x{id:02X} appears more than once"),
            InvalidPropertyValue(id) => write!(f, "property 0x{id:02X} has an invalid value"),
            PropertyLengthMismatch => f.write_str("property length does not match its contents"),
            InvalidSubscriptionOptions => f.write_str("SUBSCRIBE: reserved option bits set"),
            InvalidRetainHandling => f.write_str("SUBSCRIBE: retain handling 3"),
            NoTopicFilters => f.write_str("no topic filter in the packet"),
            NoReasonCodes => f.write_str("no reason code in the packet"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small; `needed` bytes are required in all.
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
    },
    /// The packet would exceed the 268,435,455 byte remaining length limit.
    PacketTooLarge,
    /// A string or binary field is longer than 65,535 bytes.
    FieldTooLong,
    /// A string or topic violates the rules the decoder enforces (what would not decode).
    InvalidField(&'static str),
    /// The packet does not exist in this protocol version (AUTH before 5.0).
    NotInVersion(PacketType),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            Self::PacketTooLarge => f.write_str("packet exceeds the maximum remaining length"),
            Self::FieldTooLong => f.write_str("field longer than 65535 bytes"),
            Self::InvalidField(what) => write!(f, "invalid field: {what}"),
            Self::NotInVersion(p) => write!(f, "{p} does not exist in this protocol version"),
        }
    }
}

impl core::error::Error for EncodeError {}
