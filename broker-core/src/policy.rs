//! The broker's pluggable parts: authentication, authorization, hooks and session storage.
//! Each is a trait with a simple default, called synchronously from the state machine.

use crate::message::Message;
use crate::slab::Key;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddr;
use mqtt_proto::{ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

/// A connection handle.
pub type ConnId = Key;

/// What the shell knows about the peer of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Remote address, when the transport has one (after PROXY protocol, the real client).
    pub addr: Option<SocketAddr>,
    /// Identity from a verified client certificate (its subject CN), with mutual TLS.
    pub cert_identity: Option<Box<str>>,
    /// Which listener accepted it (index into the shell's listener list).
    pub listener: u16,
}

/// A CONNECT as offered to authentication.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    /// The connection.
    pub conn: ConnId,
    /// Client identifier (after assignment for an empty one).
    pub client_id: &'a str,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
    /// Peer.
    pub peer: &'a PeerInfo,
    /// Protocol version.
    pub protocol: ProtocolVersion,
}

/// An authenticated client, as shown to authorization and hooks.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    /// Client identifier.
    pub client_id: &'a str,
    /// User name (possibly set from the certificate identity by the authenticator).
    pub username: Option<&'a str>,
    /// Peer, when connected.
    pub peer: Option<&'a PeerInfo>,
    /// Protocol version of the current or last connection.
    pub protocol: ProtocolVersion,
}

/// What a successful CONNECT asked for, beyond [`ClientInfo`] (for operators' hooks).
#[cfg(feature = "ops")]
#[derive(Debug, Clone, Copy)]
pub struct ConnectDetails<'a> {
    /// Clean Start (Clean Session in 3.1.1).
    pub clean_start: bool,
    /// Keep Alive, seconds, as the client asked.
    pub keep_alive: u16,
    /// Session Expiry Interval granted, seconds.
    pub expiry_interval: u32,
    /// Session Present in the CONNACK.
    pub session_present: bool,
    /// MQTT 5 CONNECT user properties, in order.
    pub user_properties: &'a [(Box<str>, Box<str>)],
}

/// One step of MQTT 5 enhanced authentication (4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Authenticated; optional final data for the client.
    Success(Option<Vec<u8>>),
    /// Send this data to the client in AUTH 0x18 and wait for its answer.
    Continue(Vec<u8>),
    /// Refused with this reason code.
    Fail(ReasonCode),
}

/// Decides who may connect.
pub trait Authenticator {
    /// User name / password (or certificate identity) check. `Ok(Some(name))` replaces the
    /// user name the client sent (for example with the certificate identity).
    fn authenticate(&mut self, req: &ConnectRequest<'_>) -> Result<Option<Box<str>>, ReasonCode>;

    /// MQTT 5 enhanced authentication: the first step for `method` (also on
    /// re-authentication, with `reauth` set). The default supports no method.
    fn auth_start(
        &mut self,
        _req: &ConnectRequest<'_>,
        _method: &str,
        _data: Option<&[u8]>,
        _reauth: bool,
    ) -> AuthStep {
        AuthStep::Fail(ReasonCode::BadAuthenticationMethod)
    }

    /// A further step with the client's AUTH data.
    fn auth_continue(&mut self, _conn: ConnId, _method: &str, _data: Option<&[u8]>) -> AuthStep {
        AuthStep::Fail(ReasonCode::NotAuthorized)
    }

    /// The connection went away in the middle of an exchange.
    fn auth_abort(&mut self, _conn: ConnId) {}
}

/// Lets everyone in (Mosquitto's `allow_anonymous true` without a password file).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&mut self, _req: &ConnectRequest<'_>) -> Result<Option<Box<str>>, ReasonCode> {
        Ok(None)
    }
}

/// Decides what an authenticated client may do.
pub trait Authorizer {
    /// May `client` publish to `topic`?
    fn can_publish(
        &mut self,
        _client: &ClientInfo<'_>,
        _topic: &str,
        _qos: QoS,
        _retain: bool,
    ) -> bool {
        true
    }
    /// May `client` subscribe to `filter` (the filter without any `$share/{group}/`)?
    fn can_subscribe(&mut self, _client: &ClientInfo<'_>, _filter: &str, _qos: QoS) -> bool {
        true
    }
    /// May `client` receive a message on `topic` (checked at delivery)?
    fn can_receive(&mut self, _client: &ClientInfo<'_>, _topic: &str) -> bool {
        true
    }
    /// Whether `can_receive` can ever say no; when false the broker skips the call.
    fn checks_receive(&self) -> bool {
        false
    }
}

/// No restrictions.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAllTopics;
impl Authorizer for AllowAllTopics {}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SessionEnd {
    /// Clean start / clean session discarded it, or a non-persistent session disconnected.
    Discarded,
    /// Its Session Expiry Interval ran out.
    Expired,
    /// Another connection with clean start took the client identifier.
    TakenOver,
}

/// Why a message was not delivered to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DropReason {
    /// The session queue was full (messages or bytes).
    QueueFull,
    /// The Message Expiry Interval passed before delivery.
    Expired,
    /// Larger than the client's Maximum Packet Size ([MQTT-3.1.2-25]).
    TooLarge,
    /// QoS 0 for an offline session.
    Offline,
    /// Refused by authorization at delivery.
    NotAuthorized,
    /// The session ended with the message still queued.
    SessionEnded,
    /// A hook refused it.
    Hook,
}

/// Observation and interception points, as Gmqtt offers. Every method has a default that
/// does nothing (or allows).
#[allow(unused_variables)]
pub trait Hooks {
    /// A connection was accepted; `false` closes it.
    fn on_accept(&mut self, conn: ConnId, peer: &PeerInfo) -> bool {
        true
    }
    /// User name / password authentication finished with `result`.
    fn on_basic_auth(&mut self, req: &ConnectRequest<'_>, result: Result<(), ReasonCode>) {}
    /// An enhanced authentication step.
    fn on_enhanced_auth(&mut self, req: &ConnectRequest<'_>, method: &str, step: &AuthStep) {}
    /// A re-authentication step.
    fn on_reauth(&mut self, client: &ClientInfo<'_>, method: &str, step: &AuthStep) {}
    /// CONNACK with success was queued.
    fn on_connected(&mut self, client: &ClientInfo<'_>) {}
    /// The same moment as `on_connected`, with what the CONNECT asked for.
    #[cfg(feature = "ops")]
    fn on_client_connected(&mut self, client: &ClientInfo<'_>, details: &ConnectDetails<'_>) {}
    /// A new session was created.
    fn on_session_created(&mut self, client: &ClientInfo<'_>) {}
    /// An existing session was resumed.
    fn on_session_resumed(&mut self, client: &ClientInfo<'_>) {}
    /// A session ended.
    fn on_session_terminated(&mut self, client_id: &str, why: SessionEnd) {}
    /// A session's expiry interval ran out (also reported as terminated).
    fn on_session_expired(&mut self, client_id: &str) {}
    /// Before a subscription is made; may lower the QoS or refuse with a reason code.
    fn on_subscribe(
        &mut self,
        client: &ClientInfo<'_>,
        filter: &str,
        options: &mut SubscriptionOptions,
    ) -> Result<(), ReasonCode> {
        Ok(())
    }
    /// A subscription was made.
    fn on_subscribed(&mut self, client: &ClientInfo<'_>, filter: &str, granted: QoS) {}
    /// Before an unsubscription.
    fn on_unsubscribe(&mut self, client: &ClientInfo<'_>, filter: &str) {}
    /// A subscription was removed.
    fn on_unsubscribed(&mut self, client: &ClientInfo<'_>, filter: &str) {}
    /// A PUBLISH arrived from a client and authorization allowed it; an error refuses it
    /// with that reason code.
    fn on_message_arrived(
        &mut self,
        client: &ClientInfo<'_>,
        msg: &Message,
    ) -> Result<(), ReasonCode> {
        Ok(())
    }
    /// A message was written to a client.
    fn on_deliver(&mut self, client_id: &str, msg: &Message) {}
    /// A client acknowledged a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) message.
    fn on_acked(&mut self, client_id: &str, msg: &Message) {}
    /// A message was not delivered to a client.
    fn on_dropped(&mut self, client_id: &str, msg: &Message, why: DropReason) {}
    /// A will is about to be published; `false` cancels it.
    fn on_will_publish(&mut self, client_id: &str, msg: &Message) -> bool {
        true
    }
    /// A will was published.
    fn on_will_published(&mut self, client_id: &str, msg: &Message) {}
    /// A connection closed; `reason` is the DISCONNECT reason when one was exchanged.
    fn on_closed(&mut self, client_id: Option<&str>, reason: Option<ReasonCode>) {}
    /// A subscriber made no progress for `stall_timeout` while publishers waited for room
    /// in its queue: it is being disconnected (0x97) and its session is offline from now on.
    fn on_stalled(&mut self, client_id: &str) {}
}

/// Boxed hooks are hooks (a shell combines the hooks a policy holds with its own).
impl<H: Hooks + ?Sized> Hooks for alloc::boxed::Box<H> {
    fn on_accept(&mut self, conn: ConnId, peer: &PeerInfo) -> bool {
        (**self).on_accept(conn, peer)
    }
    fn on_basic_auth(&mut self, req: &ConnectRequest<'_>, result: Result<(), ReasonCode>) {
        (**self).on_basic_auth(req, result)
    }
    fn on_enhanced_auth(&mut self, req: &ConnectRequest<'_>, method: &str, step: &AuthStep) {
        (**self).on_enhanced_auth(req, method, step)
    }
    fn on_reauth(&mut self, client: &ClientInfo<'_>, method: &str, step: &AuthStep) {
        (**self).on_reauth(client, method, step)
    }
    fn on_connected(&mut self, client: &ClientInfo<'_>) {
        (**self).on_connected(client)
    }
    #[cfg(feature = "ops")]
    fn on_client_connected(&mut self, client: &ClientInfo<'_>, details: &ConnectDetails<'_>) {
        (**self).on_client_connected(client, details)
    }
    fn on_session_created(&mut self, client: &ClientInfo<'_>) {
        (**self).on_session_created(client)
    }
    fn on_session_resumed(&mut self, client: &ClientInfo<'_>) {
        (**self).on_session_resumed(client)
    }
    fn on_session_terminated(&mut self, client_id: &str, why: SessionEnd) {
        (**self).on_session_terminated(client_id, why)
    }
    fn on_session_expired(&mut self, client_id: &str) {
        (**self).on_session_expired(client_id)
    }
    fn on_subscribe(
        &mut self,
        client: &ClientInfo<'_>,
        filter: &str,
        options: &mut SubscriptionOptions,
    ) -> Result<(), ReasonCode> {
        (**self).on_subscribe(client, filter, options)
    }
    fn on_subscribed(&mut self, client: &ClientInfo<'_>, filter: &str, granted: QoS) {
        (**self).on_subscribed(client, filter, granted)
    }
    fn on_unsubscribe(&mut self, client: &ClientInfo<'_>, filter: &str) {
        (**self).on_unsubscribe(client, filter)
    }
    fn on_unsubscribed(&mut self, client: &ClientInfo<'_>, filter: &str) {
        (**self).on_unsubscribed(client, filter)
    }
    fn on_message_arrived(
        &mut self,
        client: &ClientInfo<'_>,
        msg: &Message,
    ) -> Result<(), ReasonCode> {
        (**self).on_message_arrived(client, msg)
    }
    fn on_deliver(&mut self, client_id: &str, msg: &Message) {
        (**self).on_deliver(client_id, msg)
    }
    fn on_acked(&mut self, client_id: &str, msg: &Message) {
        (**self).on_acked(client_id, msg)
    }
    fn on_dropped(&mut self, client_id: &str, msg: &Message, why: DropReason) {
        (**self).on_dropped(client_id, msg, why)
    }
    fn on_will_publish(&mut self, client_id: &str, msg: &Message) -> bool {
        (**self).on_will_publish(client_id, msg)
    }
    fn on_will_published(&mut self, client_id: &str, msg: &Message) {
        (**self).on_will_published(client_id, msg)
    }
    fn on_closed(&mut self, client_id: Option<&str>, reason: Option<ReasonCode>) {
        (**self).on_closed(client_id, reason)
    }
    fn on_stalled(&mut self, client_id: &str) {
        (**self).on_stalled(client_id)
    }
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;
impl Hooks for NoHooks {}

/// A subscription as stored with a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The filter as the client sent it (including `$share/{group}/`).
    pub filter: Box<str>,
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its Subscription Identifier.
    pub id: Option<u32>,
}

/// A session's durable state: what a durable store keeps so that a session survives a
/// broker restart.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// Client identifier.
    pub client_id: Box<str>,
    /// User name of the last connection.
    pub username: Option<Box<str>>,
    /// Protocol version of the last connection.
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval, seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// Subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Messages queued or in flight, oldest first, with the QoS they are delivered at and
    /// whether they were already sent once (then they are resent with DUP).
    pub messages: Vec<(Message, QoS, bool)>,
}

/// The pluggable parts a broker shard is built with.
pub struct Policy {
    /// Authentication.
    pub authenticator: Box<dyn Authenticator + Send>,
    /// Authorization.
    pub authorizer: Box<dyn Authorizer + Send>,
    /// Hooks.
    pub hooks: Box<dyn Hooks + Send>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            authenticator: Box::new(AllowAll),
            authorizer: Box::new(AllowAllTopics),
            hooks: Box::new(NoHooks),
        }
    }
}

impl core::fmt::Debug for Policy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Policy")
    }
}
