//! MQTT 5 reason codes (2.4) and their mapping onto 3.1.1 return codes.

use crate::types::{PacketType, QoS};
use core::fmt;

macro_rules! reason_codes {
    ($($name:ident = $val:literal, $text:literal, [$($pt:ident),*];)*) => {
        /// An MQTT 5 reason code. 3.1 and 3.1.1 return codes are mapped onto these (CONNACK
        /// return codes 1..=5, SUBACK 0x80), so the rest of Petrel speaks one language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u8)]
        #[allow(missing_docs)]
        pub enum ReasonCode { $($name = $val,)* }

        impl ReasonCode {
            /// The reason code for a byte, if the byte is a reason code at all.
            pub const fn from_u8(v: u8) -> Option<Self> {
                match v { $($val => Some(Self::$name),)* _ => None }
            }

            /// The specification's name for the code.
            pub const fn description(self) -> &'static str {
                match self { $(Self::$name => $text,)* }
            }

            /// Whether the code may appear in a packet of this type (Table 2-6 and each
            /// packet's reason code table).
            pub const fn valid_in(self, packet: PacketType) -> bool {
                match self {
                    $(Self::$name => matches!(packet, $(PacketType::$pt)|*),)*
                }
            }
        }
    };
}

reason_codes! {
    Success = 0x00, "Success", [ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth];
    GrantedQoS1 = 0x01, "Granted QoS 1", [SubAck];
    GrantedQoS2 = 0x02, "Granted QoS 2", [SubAck];
    DisconnectWithWillMessage = 0x04, "Disconnect with Will Message", [Disconnect];
    NoMatchingSubscribers = 0x10, "No matching subscribers", [PubAck, PubRec];
    NoSubscriptionExisted = 0x11, "No subscription existed", [UnsubAck];
    ContinueAuthentication = 0x18, "Continue authentication", [Auth];
    ReAuthenticate = 0x19, "Re-authenticate", [Auth];
    UnspecifiedError = 0x80, "Unspecified error", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    MalformedPacket = 0x81, "Malformed Packet", [ConnAck, Disconnect];
    ProtocolError = 0x82, "Protocol Error", [ConnAck, Disconnect];
    ImplementationSpecificError = 0x83, "Implementation specific error", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    UnsupportedProtocolVersion = 0x84, "Unsupported Protocol Version", [ConnAck];
    ClientIdentifierNotValid = 0x85, "Client Identifier not valid", [ConnAck];
    BadUserNameOrPassword = 0x86, "Bad User Name or Password", [ConnAck];
    NotAuthorized = 0x87, "Not authorized", [ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect];
    ServerUnavailable = 0x88, "Server unavailable", [ConnAck];
    ServerBusy = 0x89, "Server busy", [ConnAck, Disconnect];
    Banned = 0x8A, "Banned", [ConnAck];
    ServerShuttingDown = 0x8B, "Server shutting down", [Disconnect];
    BadAuthenticationMethod = 0x8C, "Bad authentication method", [ConnAck, Disconnect];
    KeepAliveTimeout = 0x8D, "Keep Alive timeout", [Disconnect];
    SessionTakenOver = 0x8E, "Session taken over", [Disconnect];
    TopicFilterInvalid = 0x8F, "Topic Filter invalid", [SubAck, UnsubAck, Disconnect];
    TopicNameInvalid = 0x90, "Topic Name invalid", [ConnAck, PubAck, PubRec, Disconnect];
    PacketIdentifierInUse = 0x91, "Packet Identifier in use", [PubAck, PubRec, SubAck, UnsubAck];
    PacketIdentifierNotFound = 0x92, "Packet Identifier not found", [PubRel, PubComp];
    ReceiveMaximumExceeded = 0x93, "Receive Maximum exceeded", [Disconnect];
    TopicAliasInvalid = 0x94, "Topic Alias invalid", [Disconnect];
    PacketTooLarge = 0x95, "Packet too large", [ConnAck, Disconnect];
    MessageRateTooHigh = 0x96, "Message rate too high", [Disconnect];
    QuotaExceeded = 0x97, "Quota exceeded", [ConnAck, PubAck, PubRec, SubAck, Disconnect];
    AdministrativeAction = 0x98, "Administrative action", [Disconnect];
    PayloadFormatInvalid = 0x99, "Payload format invalid", [ConnAck, PubAck, PubRec, Disconnect];
    RetainNotSupported = 0x9A, "Retain not supported", [ConnAck, Disconnect];
    QoSNotSupported = 0x9B, "QoS not supported", [ConnAck, Disconnect];
    UseAnotherServer = 0x9C, "Use another server", [ConnAck, Disconnect];
    ServerMoved = 0x9D, "Server moved", [ConnAck, Disconnect];
    SharedSubscriptionsNotSupported = 0x9E, "Shared Subscriptions not supported", [SubAck, Disconnect];
    ConnectionRateExceeded = 0x9F, "Connection rate exceeded", [ConnAck, Disconnect];
    MaximumConnectTime = 0xA0, "Maximum connect time", [Disconnect];
    SubscriptionIdentifiersNotSupported = 0xA1, "Subscription Identifiers not supported", [SubAck, Disconnect];
    WildcardSubscriptionsNotSupported = 0xA2, "Wildcard Subscriptions not supported", [SubAck, Disconnect];
}

impl ReasonCode {
    /// 0x00 in DISCONNECT.
    pub const NORMAL_DISCONNECTION: Self = Self::Success;
    /// 0x00 in SUBACK.
    pub const GRANTED_QOS_0: Self = Self::Success;

    /// Codes of 0x80 and above report failure (2.4).
    pub const fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// The SUBACK code granting `qos`.
    pub const fn granted(qos: QoS) -> Self {
        match qos {
            QoS::AtMostOnce => Self::Success,
            QoS::AtLeastOnce => Self::GrantedQoS1,
            QoS::ExactlyOnce => Self::GrantedQoS2,
        }
    }

    /// The 3.1.1 CONNACK return code (3.2.2.3) closest to this reason.
    pub const fn to_v3_connack(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::UnsupportedProtocolVersion => 1,
            Self::ClientIdentifierNotValid => 2,
            Self::BadUserNameOrPassword | Self::BadAuthenticationMethod => 4,
            Self::NotAuthorized | Self::Banned => 5,
            _ => 3,
        }
    }

    /// The reason for a 3.1.1 CONNACK return code (0..=5).
    pub const fn from_v3_connack(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            1 => Self::UnsupportedProtocolVersion,
            2 => Self::ClientIdentifierNotValid,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The 3.1.1 SUBACK return code: the granted QoS, or 0x80 for any failure.
    pub const fn to_v3_suback(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::GrantedQoS1 => 1,
            Self::GrantedQoS2 => 2,
            _ => 0x80,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.description(), *self as u8)
    }
}
