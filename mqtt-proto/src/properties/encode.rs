//! Encoding a property block: the checks and length, and writing the entries.

use super::{bit, Properties, PropertyContext, PropertyId, UserProperties};
use crate::error::EncodeError;
use crate::types::QoS;
use crate::wire::{binary_len, put_binary, put_varint, str_len, varint_len, Sink};

impl<'a> Properties<'a> {
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
