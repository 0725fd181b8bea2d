//! Admission: what a shell must know about a connection before a broker shard has it
//! (is the first packet complete, which version does it speak, which shard owns it) and the
//! CONNACK that refuses it. Shells call these instead of reading MQTT bytes themselves, so
//! the broker, the proxy and the gateway refuse a client in the same words.

use crate::broker::encode;
use crate::shard::{owner_of_client, ShardId};
use alloc::vec::Vec;
use mqtt_proto::{
    ConnAck, DecodeError, FixedHeader, Packet, PacketType, Properties, ProtocolVersion, ReasonCode,
    Status,
};

/// How far the first packet of a connection has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPacket {
    /// More bytes are needed.
    Incomplete,
    /// A whole CONNECT of this many bytes is there.
    Connect(usize),
    /// The first packet is not a CONNECT ([MQTT-3.1.0-1], v3.1.1 and v5).
    NotConnect,
    /// Its length is over the limit (the size it announces).
    TooLarge(usize),
    /// The fixed header is malformed.
    Malformed,
}

/// How many more bytes complete the packet that buffered `input` starts with: 0 when it is
/// complete or its fixed header is invalid (the broker then says what to do with it), at
/// least 1 while the header itself is incomplete. A shell that receives into fixed buffers
/// completes a packet split across two of them with this, and hands the rest of the second
/// to the broker straight from the buffer.
pub fn bytes_missing(input: &[u8], max_packet_size: usize) -> usize {
    match FixedHeader::parse(input, max_packet_size) {
        Ok(Status::Complete(h)) => h.packet_len().saturating_sub(input.len()),
        Ok(Status::Incomplete { needed }) => needed.max(1),
        Err(_) => 0,
    }
}

/// Classifies the start of a connection's input (at most `max_packet_size` per packet).
pub fn first_packet(input: &[u8], max_packet_size: usize) -> FirstPacket {
    match FixedHeader::parse(input, max_packet_size) {
        Ok(Status::Complete(h)) if h.packet_type != PacketType::Connect => FirstPacket::NotConnect,
        Ok(Status::Complete(h)) if input.len() >= h.packet_len() => {
            FirstPacket::Connect(h.packet_len())
        }
        Ok(_) => FirstPacket::Incomplete,
        Err(DecodeError::PacketTooLarge { size, .. }) => FirstPacket::TooLarge(size),
        Err(_) => FirstPacket::Malformed,
    }
}

/// The protocol level a CONNECT announces, from as few bytes as carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// More bytes are needed to see it.
    Incomplete,
    /// The level byte (4 for 3.1.1, 5 for 5.0, 3 for 3.1; anything else is unsupported).
    Of(u8),
    /// Not a CONNECT: nothing at that offset says which version the client speaks.
    NotConnect,
}

/// Reads the protocol level of a possibly partial or malformed CONNECT.
pub fn connect_level(input: &[u8]) -> Level {
    let header = match FixedHeader::parse(input, usize::MAX) {
        Ok(Status::Complete(h)) if h.packet_type == PacketType::Connect => h,
        Ok(Status::Complete(_)) | Err(_) => return Level::NotConnect,
        Ok(Status::Incomplete { .. }) => return Level::Incomplete,
    };
    let body = input.get(header.header_len..).unwrap_or_default();
    let (Some(&hi), Some(&lo)) = (body.first(), body.get(1)) else {
        return Level::Incomplete;
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    // "MQTT" or "MQIsdp": a longer name is no MQTT CONNECT at all.
    if name_len > 6 {
        return Level::NotConnect;
    }
    body.get(2 + name_len)
        .map_or(Level::Incomplete, |&l| Level::Of(l))
}

/// The CONNACK format a client announcing `level` reads: 5.0's for level 5, otherwise
/// 3.1.1's (3.1 uses the same; an unknown level is answered in 3.1.1's, [MQTT-3.1.2-2]).
pub fn version_of_level(level: u8) -> ProtocolVersion {
    if level == 5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    }
}

/// What a complete CONNECT says about where the connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek<'a> {
    /// A well-formed CONNECT.
    Connect {
        /// The client's protocol version.
        version: ProtocolVersion,
        /// Its client identifier (empty: the broker assigns one).
        client_id: &'a str,
    },
    /// A CONNECT to refuse with this CONNACK (an unsupported protocol level, [MQTT-3.1.2-2]
    /// v3.1.1, 0x84 in v5).
    Refuse(ProtocolVersion, ReasonCode),
    /// Malformed or not a CONNECT: close without an answer (the broker's core answers it
    /// itself when it parses the same bytes).
    Malformed,
}

/// Reads the first packet of a connection (complete, see [`first_packet`]).
pub fn peek_connect(input: &[u8], max_packet_size: usize) -> Peek<'_> {
    match Packet::parse(input, ProtocolVersion::V5, max_packet_size) {
        Ok(Status::Complete((Packet::Connect(c), _))) => Peek::Connect {
            version: c.protocol,
            client_id: c.client_id,
        },
        Err(DecodeError::UnsupportedProtocolLevel(l)) => {
            Peek::Refuse(version_of_level(l), ReasonCode::UnsupportedProtocolVersion)
        }
        _ => Peek::Malformed,
    }
}

/// The shard that should serve a connection whose first packet is `input`: the owner of its
/// client identifier, so that its session is local. A CONNECT without a client id (the id
/// is assigned where it lands) or one that does not parse stays on the accepting shard.
pub fn owner_shard(
    input: &[u8],
    max_packet_size: usize,
    accepting: ShardId,
    shards: u16,
) -> ShardId {
    match peek_connect(input, max_packet_size) {
        Peek::Connect { client_id, .. } if !client_id.is_empty() => {
            owner_of_client(client_id, shards)
        }
        _ => accepting,
    }
}

/// The CONNACK refusing a connection with `code` in version `v`, Session Present 0
/// ([MQTT-3.2.2-4], [MQTT-3.2.2-6] v3.1.1). A code that a CONNACK cannot carry becomes
/// 0x80 "Unspecified error"; 3.1.1 and 3.1 get the closest return code (3.2.2.3).
pub fn refusal(v: ProtocolVersion, code: ReasonCode) -> Vec<u8> {
    encode(
        &Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: refusal_code(code),
            properties: Properties::default(),
        }),
        v,
    )
}

/// The code a refusing CONNACK carries for `code`.
pub fn refusal_code(code: ReasonCode) -> ReasonCode {
    if code.valid_in(PacketType::ConnAck) && code.is_error() {
        code
    } else {
        ReasonCode::UnspecifiedError
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_proto::Connect;

    #[test]
    fn bytes_missing_completes_a_split_packet() {
        let c = connect(ProtocolVersion::V5, "split");
        // Nothing yet, then each prefix: the header first, then exactly the rest.
        assert_eq!(bytes_missing(&[], 1024), 2);
        assert_eq!(bytes_missing(&c[..1], 1024), 1);
        for cut in 2..c.len() {
            assert_eq!(
                bytes_missing(&c[..cut], 1024),
                c.len() - cut,
                "cut at {cut}"
            );
        }
        assert_eq!(bytes_missing(&c, 1024), 0);
        // A remaining length over the limit or malformed: nothing more is waited for.
        assert_eq!(bytes_missing(&c[..2], 4), 0);
        assert_eq!(bytes_missing(&[0x30, 0xff, 0xff, 0xff, 0xff], 1 << 30), 0);
    }

    fn connect(v: ProtocolVersion, id: &str) -> Vec<u8> {
        encode(
            &Packet::Connect(Connect {
                protocol: v,
                clean_start: true,
                bridge: false,
                keep_alive: 30,
                properties: Properties::default(),
                client_id: id,
                will: None,
                username: None,
                password: None,
            }),
            v,
        )
    }

    #[test]
    fn the_level_is_read_from_any_prefix() {
        for v in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            let b = connect(v, "c");
            let at = 2 + 2 + v.protocol_name().len();
            for n in 0..at {
                assert_eq!(
                    connect_level(&b[..n]),
                    Level::Incomplete,
                    "{v:?} prefix {n}"
                );
            }
            assert_eq!(connect_level(&b[..=at]), Level::Of(v.level()));
        }
        let sub = encode(&Packet::PingReq, ProtocolVersion::V3_1_1);
        assert_eq!(connect_level(&sub), Level::NotConnect);
    }

    #[test]
    fn first_packet_waits_for_the_whole_connect() {
        let b = connect(ProtocolVersion::V5, "client");
        assert_eq!(
            first_packet(&b[..b.len() - 1], 1024),
            FirstPacket::Incomplete
        );
        assert_eq!(first_packet(&b, 1024), FirstPacket::Connect(b.len()));
        assert_eq!(first_packet(&b, 4), FirstPacket::TooLarge(b.len()));
        let ping = encode(&Packet::PingReq, ProtocolVersion::V5);
        assert_eq!(first_packet(&ping, 1024), FirstPacket::NotConnect);
    }

    #[test]
    fn owner_is_the_client_ids_shard_and_an_empty_id_stays() {
        let b = connect(ProtocolVersion::V3_1_1, "sensor-7");
        assert_eq!(owner_shard(&b, 1024, 0, 4), owner_of_client("sensor-7", 4));
        let anon = connect(ProtocolVersion::V3_1_1, "");
        assert_eq!(owner_shard(&anon, 1024, 3, 4), 3);
        assert_eq!(owner_shard(b"\x10\x01", 1024, 2, 4), 2);
    }

    #[test]
    fn an_unsupported_level_is_refused_in_3_1_1_format() {
        let mut b = connect(ProtocolVersion::V3_1_1, "c");
        b[8] = 9; // the level byte of "\x10 len 0 4 MQTT level"
        assert_eq!(
            peek_connect(&b, 1024),
            Peek::Refuse(
                ProtocolVersion::V3_1_1,
                ReasonCode::UnsupportedProtocolVersion
            )
        );
    }

    #[test]
    fn refusals_decode_in_the_clients_version() {
        for v in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            for (code, expect) in [
                (ReasonCode::ServerUnavailable, ReasonCode::ServerUnavailable),
                (ReasonCode::QuotaExceeded, ReasonCode::QuotaExceeded),
                // Not a CONNACK code at all.
                (
                    ReasonCode::NoSubscriptionExisted,
                    ReasonCode::UnspecifiedError,
                ),
            ] {
                let bytes = refusal(v, code);
                let Ok(Status::Complete((Packet::ConnAck(a), n))) = Packet::parse(&bytes, v, 64)
                else {
                    panic!("{v:?} {code:?}: {bytes:?}");
                };
                assert_eq!(n, bytes.len());
                assert!(!a.session_present);
                let want = if v.is_v5() {
                    expect
                } else {
                    ReasonCode::from_v3_connack(expect.to_v3_connack()).unwrap_or(expect)
                };
                assert_eq!(a.reason_code, want, "{v:?} {code:?}");
            }
        }
    }
}
