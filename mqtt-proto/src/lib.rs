//! `mqtt-proto`: the MQTT 3.1, 3.1.1 and 5.0 wire codec used by every part of Petrel.
//!
//! What it does:
//! - frames packets ([`FixedHeader::parse`]) and checks the remaining length against a
//!   caller-given maximum packet size before the body is buffered;
//! - decodes all 15 control packets into borrowed, validated forms ([`Packet::parse`]):
//!   topics, strings and payloads are slices of the input, nothing is copied or allocated;
//! - encodes them into caller memory ([`Packet::emit`], or any `bytes::BufMut` with the
//!   `bytes` feature) after computing the exact length ([`Packet::encoded_len`]); a PUBLISH
//!   can be encoded as a header separate from its payload for vectored writes;
//! - validates and matches topic names and filters ([`topic`]).
//!
//! What it deliberately does not do: sessions, time, sockets, or any allocation. Malformed
//! input is always a [`DecodeError`] that maps to the MQTT 5 reason code a server sends
//! ([`DecodeError::reason_code`]); no input can make it panic.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod error;
mod header;
mod packet;
mod properties;
mod reason;
pub mod topic;
mod types;
mod wire;

pub use error::{DecodeError, EncodeError};
pub use header::{FixedHeader, Status};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Publish, PublishHeader, ReasonCodes, SubAck,
    Subscribe, Subscription, Subscriptions, TopicFilters, UnsubAck, Unsubscribe, Will,
};
pub use properties::{
    Properties, PropertyContext, PropertyId, SubscriptionIds, UserProperties, UserPropertyIter,
};
pub use reason::ReasonCode;
pub use types::{PacketId, PacketType, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
pub use wire::{varint_len, Sink, SliceSink, MAX_REMAINING_LENGTH};

#[cfg(feature = "bytes")]
pub use wire::BufMutSink;
