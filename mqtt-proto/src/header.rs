//! The fixed header (2.1) and framing.

use crate::error::DecodeError;
use crate::types::PacketType;
use crate::wire::parse_varint;

/// Whether a parse completed or needs more input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status<T> {
    /// A complete value.
    Complete(T),
    /// The input ends too early. At least `needed` more bytes are required; the number is
    /// exact once the fixed header is complete. Nothing was consumed.
    Incomplete {
        /// Minimum number of additional bytes.
        needed: usize,
    },
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FixedHeader {
    /// The control packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// The remaining length: bytes after the fixed header.
    pub remaining_length: usize,
    /// Length of the fixed header itself (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// Parses a fixed header from the start of `buf`.
    ///
    /// The whole packet size is checked against `max_packet_size` as soon as the remaining
    /// length is known, before any of the body is needed, so a receiver never buffers an
    /// oversized packet. Type and flags are checked here too ([MQTT-2.1.3-1]); AUTH is
    /// accepted here and refused by [`crate::Packet::parse`] outside MQTT 5.
    pub fn parse(buf: &[u8], max_packet_size: usize) -> Result<Status<Self>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(Status::Incomplete { needed: 2 });
        };
        let type_nibble = first >> 4;
        let flags = first & 0x0F;
        let packet_type =
            PacketType::from_u8(type_nibble).ok_or(DecodeError::InvalidPacketType(type_nibble))?;
        if let Some(required) = packet_type.required_flags() {
            if flags != required {
                return Err(DecodeError::InvalidHeaderFlags {
                    packet: packet_type,
                    flags,
                });
            }
        }
        let rest = buf.get(1..).unwrap_or_default();
        let Some((remaining, n)) = parse_varint(rest)? else {
            return Ok(Status::Incomplete { needed: 1 });
        };
        let remaining_length = remaining as usize;
        let header_len = 1 + n;
        let size = header_len + remaining_length;
        if size > max_packet_size {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: max_packet_size,
            });
        }
        Ok(Status::Complete(Self {
            packet_type,
            flags,
            remaining_length,
            header_len,
        }))
    }

    /// Total packet length: fixed header plus remaining length.
    pub const fn packet_len(&self) -> usize {
        self.header_len + self.remaining_length
    }
}
