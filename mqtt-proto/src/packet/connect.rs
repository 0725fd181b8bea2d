//! CONNECT (3.1) and CONNACK (3.2).

use super::Sizes;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::{PacketType, ProtocolVersion, QoS};
use crate::wire::{binary_len, put_binary, str_len, Reader, Sink};

/// The will message carried by CONNECT (3.1.2.5, 3.1.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Will<'a> {
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (MQTT 5).
    pub properties: Properties<'a>,
    /// Will topic: a topic name.
    pub topic: &'a str,
    /// Will payload.
    pub payload: &'a [u8],
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connect<'a> {
    /// Protocol version from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Session (3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// A bridge of another broker (3.1 and 3.1.1: the protocol level's bit 0x80, as
    /// Mosquitto's `try_private` sends it): its subscriptions are no-local and keep the
    /// retain flags as published.
    pub bridge: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// CONNECT properties (MQTT 5).
    pub properties: Properties<'a>,
    /// Client identifier; may be empty.
    pub client_id: &'a str,
    /// The will, when the Will Flag is set.
    pub will: Option<Will<'a>>,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
}

impl<'a> Connect<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        // Not for 5.0, whose No Local and Retain As Published say the same per subscription.
        let bridge = cfg!(feature = "bridge") && level & 0x80 != 0 && level & 0x7F < 5;
        let protocol = match (name, level & if bridge { 0x7F } else { 0xFF }) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", l) => return Err(DecodeError::UnsupportedProtocolLevel(l)),
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = r.u8()?;
        // [MQTT-3.1.2-3] the reserved flag must be zero.
        if flags & 0x01 != 0 {
            return Err(DecodeError::ReservedConnectFlag);
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13]: no will QoS / retain without a will;
        // [MQTT-3.1.2-12]: will QoS 3 is invalid.
        if (!will_flag && (will_qos != 0 || will_retain)) || will_qos == 3 {
            return Err(DecodeError::InvalidWillFlags);
        }
        // [MQTT-3.1.2-22] 3.1.1 forbids a password without a user name; 5.0 allows it.
        if password_flag && !username_flag && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            Properties::read(r, PropertyContext::Connect)?
        } else {
            Properties::default()
        };
        let client_id = r.utf8()?;
        let will = if will_flag {
            let properties = if protocol.is_v5() {
                Properties::read(r, PropertyContext::Will)?
            } else {
                Properties::default()
            };
            // [MQTT-3.1.3-11] the will topic is a topic name.
            let topic = r.topic_name()?;
            if topic.is_empty() {
                return Err(DecodeError::InvalidTopicName);
            }
            let payload = r.binary()?;
            Some(Will {
                qos: QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillFlags)?,
                retain: will_retain,
                properties,
                topic,
                payload,
            })
        } else {
            None
        };
        let username = if username_flag { Some(r.utf8()?) } else { None };
        let password = if password_flag {
            Some(r.binary()?)
        } else {
            None
        };
        Ok(Connect {
            protocol,
            clean_start,
            bridge,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    pub(crate) fn sizes(&self) -> Result<Sizes, EncodeError> {
        let v = self.protocol;
        let mut s = Sizes::default();
        let mut n = 2 + v.protocol_name().len() + 1 + 1 + 2;
        if v.is_v5() {
            s.props = self.properties.block_len(PropertyContext::Connect)?;
            n += crate::varint_len(s.props) + s.props;
        }
        n += str_len(self.client_id)?;
        if let Some(w) = &self.will {
            if v.is_v5() {
                s.will_props = w.properties.block_len(PropertyContext::Will)?;
                n += crate::varint_len(s.will_props) + s.will_props;
            }
            crate::topic::validate_name(w.topic)
                .map_err(|_| EncodeError::InvalidField("will topic is not a topic name"))?;
            // validate_name has ruled out U+0000.
            n += binary_len(w.topic.as_bytes())? + binary_len(w.payload)?;
        }
        if self.password.is_some() && self.username.is_none() && !v.is_v5() {
            return Err(EncodeError::InvalidField("password without user name"));
        }
        if let Some(u) = self.username {
            n += str_len(u)?;
        }
        if let Some(p) = self.password {
            n += binary_len(p)?;
        }
        s.body = n;
        Ok(s)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, s: &mut S, sizes: &Sizes) {
        let v = self.protocol;
        put_binary(s, v.protocol_name().as_bytes());
        let bridge = if self.bridge && !v.is_v5() { 0x80 } else { 0 };
        s.put_u8(v.level() | bridge);
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | ((w.qos as u8) << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        s.put_u8(flags);
        s.put_u16(self.keep_alive);
        if v.is_v5() {
            self.properties.emit(s, sizes.props);
        }
        put_binary(s, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if v.is_v5() {
                w.properties.emit(s, sizes.will_props);
            }
            put_binary(s, w.topic.as_bytes());
            put_binary(s, w.payload);
        }
        if let Some(u) = self.username {
            put_binary(s, u.as_bytes());
        }
        if let Some(p) = self.password {
            put_binary(s, p);
        }
    }
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnAck<'a> {
    /// Session Present.
    pub session_present: bool,
    /// The result; 3.1.1 return codes are mapped (see [`ReasonCode::from_v3_connack`]).
    pub reason_code: ReasonCode,
    /// CONNACK properties (MQTT 5).
    pub properties: Properties<'a>,
}

impl<'a> ConnAck<'a> {
    pub(crate) fn read(r: &mut Reader<'a>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        // [MQTT-3.2.2-1] bits 7-1 are reserved.
        if flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAckFlags);
        }
        let (reason_code, properties) = if v.is_v5() {
            let code = super::read_reason(r)?;
            (code, Properties::read(r, PropertyContext::ConnAck)?)
        } else {
            let code = r.u8()?;
            let rc = ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode {
                packet: PacketType::ConnAck,
                code,
            })?;
            (rc, Properties::default())
        };
        Ok(ConnAck {
            session_present: flags & 0x01 != 0,
            reason_code,
            properties,
        })
    }

    pub(crate) fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        let mut s = Sizes::default();
        if v.is_v5() {
            super::check_reason(self.reason_code, PacketType::ConnAck)?;
            s.props = self.properties.block_len(PropertyContext::ConnAck)?;
            s.body = 2 + crate::varint_len(s.props) + s.props;
        } else {
            s.body = 2;
        }
        Ok(s)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, v: ProtocolVersion, s: &mut S, sizes: &Sizes) {
        s.put_u8(u8::from(self.session_present));
        if v.is_v5() {
            s.put_u8(self.reason_code as u8);
            self.properties.emit(s, sizes.props);
        } else {
            s.put_u8(self.reason_code.to_v3_connack());
        }
    }
}
