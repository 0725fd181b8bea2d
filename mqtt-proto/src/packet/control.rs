//! DISCONNECT (3.14) and AUTH (3.15): a reason code and properties, both omitted when the
//! reason is Success and there are no properties.

use super::Sizes;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::types::ProtocolVersion;
use crate::wire::{varint_len, Reader, Sink};

fn read_reason_props<'a>(
    r: &mut Reader<'a>,
    ctx: PropertyContext,
) -> Result<(ReasonCode, Properties<'a>), DecodeError> {
    // 3.14.2.1 / 3.15.2.1: Remaining Length 0 means Success and no properties; 1 means no
    // properties.
    if r.is_empty() {
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let code = super::read_reason(r)?;
    let props = if r.is_empty() {
        Properties::default()
    } else {
        Properties::read(r, ctx)?
    };
    Ok((code, props))
}

fn sizes_reason_props(
    code: ReasonCode,
    props: &Properties<'_>,
    ctx: PropertyContext,
) -> Result<Sizes, EncodeError> {
    super::check_reason(code, ctx.packet_type())?;
    let mut s = Sizes {
        props: props.block_len(ctx)?,
        ..Sizes::default()
    };
    if s.props > 0 {
        s.body = 1 + varint_len(s.props) + s.props;
    } else if code != ReasonCode::Success {
        s.body = 1;
    }
    Ok(s)
}

fn emit_reason_props<S: Sink + ?Sized>(
    code: ReasonCode,
    props: &Properties<'_>,
    s: &mut S,
    sizes: &Sizes,
) {
    if sizes.body > 0 {
        s.put_u8(code as u8);
        if sizes.body > 1 {
            props.emit(s, sizes.props);
        }
    }
}

/// DISCONNECT. In 3.1 and 3.1.1 it carries nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Disconnect<'a> {
    /// Reason code (MQTT 5); Normal disconnection otherwise.
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5).
    pub properties: Properties<'a>,
}

impl<'a> Disconnect<'a> {
    /// A DISCONNECT with a reason and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: Properties::default(),
        }
    }

    pub(crate) fn read(r: &mut Reader<'a>, v: ProtocolVersion) -> Result<Self, DecodeError> {
        if !v.is_v5() {
            return Ok(Self::new(ReasonCode::Success));
        }
        let (reason_code, properties) = read_reason_props(r, PropertyContext::Disconnect)?;
        Ok(Self {
            reason_code,
            properties,
        })
    }

    pub(crate) fn sizes(&self, v: ProtocolVersion) -> Result<Sizes, EncodeError> {
        if !v.is_v5() {
            return Ok(Sizes::default());
        }
        sizes_reason_props(
            self.reason_code,
            &self.properties,
            PropertyContext::Disconnect,
        )
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, v: ProtocolVersion, s: &mut S, sizes: &Sizes) {
        if v.is_v5() {
            emit_reason_props(self.reason_code, &self.properties, s, sizes);
        }
    }
}

/// AUTH (MQTT 5 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Auth<'a> {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties<'a>,
}

impl<'a> Auth<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let (reason_code, properties) = read_reason_props(r, PropertyContext::Auth)?;
        Ok(Self {
            reason_code,
            properties,
        })
    }

    pub(crate) fn sizes(&self) -> Result<Sizes, EncodeError> {
        sizes_reason_props(self.reason_code, &self.properties, PropertyContext::Auth)
    }

    pub(crate) fn emit_body<S: Sink + ?Sized>(&self, s: &mut S, sizes: &Sizes) {
        emit_reason_props(self.reason_code, &self.properties, s, sizes);
    }
}
