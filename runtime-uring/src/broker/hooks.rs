//! Two sets of hooks as one: the broker's log hooks with the webhooks, or an embedder's
//! hooks with ours. Observations go to both; a decision is the stricter of the two.

use broker_core::mqtt_proto::{QoS, ReasonCode, SubscriptionOptions};
use broker_core::policy::{
    AuthStep, ClientInfo, ConnectDetails, ConnectRequest, DropReason, Hooks, PeerInfo, SessionEnd,
};
use broker_core::{ConnId, Message};

/// `A` then `B`.
pub struct Both<A, B>(pub A, pub B);

impl<A: Hooks, B: Hooks> Hooks for Both<A, B> {
    fn on_accept(&mut self, conn: ConnId, peer: &PeerInfo) -> bool {
        self.0.on_accept(conn, peer) && self.1.on_accept(conn, peer)
    }
    fn on_basic_auth(&mut self, req: &ConnectRequest<'_>, result: Result<(), ReasonCode>) {
        self.0.on_basic_auth(req, result);
        self.1.on_basic_auth(req, result);
    }
    fn on_enhanced_auth(&mut self, req: &ConnectRequest<'_>, method: &str, step: &AuthStep) {
        self.0.on_enhanced_auth(req, method, step);
        self.1.on_enhanced_auth(req, method, step);
    }
    fn on_reauth(&mut self, client: &ClientInfo<'_>, method: &str, step: &AuthStep) {
        self.0.on_reauth(client, method, step);
        self.1.on_reauth(client, method, step);
    }
    fn on_connected(&mut self, client: &ClientInfo<'_>) {
        self.0.on_connected(client);
        self.1.on_connected(client);
    }
    fn on_client_connected(&mut self, client: &ClientInfo<'_>, details: &ConnectDetails<'_>) {
        self.0.on_client_connected(client, details);
        self.1.on_client_connected(client, details);
    }
    fn on_session_created(&mut self, client: &ClientInfo<'_>) {
        self.0.on_session_created(client);
        self.1.on_session_created(client);
    }
    fn on_session_resumed(&mut self, client: &ClientInfo<'_>) {
        self.0.on_session_resumed(client);
        self.1.on_session_resumed(client);
    }
    fn on_session_terminated(&mut self, client_id: &str, why: SessionEnd) {
        self.0.on_session_terminated(client_id, why);
        self.1.on_session_terminated(client_id, why);
    }
    fn on_session_expired(&mut self, client_id: &str) {
        self.0.on_session_expired(client_id);
        self.1.on_session_expired(client_id);
    }
    fn on_subscribe(
        &mut self,
        client: &ClientInfo<'_>,
        filter: &str,
        options: &mut SubscriptionOptions,
    ) -> Result<(), ReasonCode> {
        self.0.on_subscribe(client, filter, options)?;
        self.1.on_subscribe(client, filter, options)
    }
    fn on_subscribed(&mut self, client: &ClientInfo<'_>, filter: &str, granted: QoS) {
        self.0.on_subscribed(client, filter, granted);
        self.1.on_subscribed(client, filter, granted);
    }
    fn on_unsubscribe(&mut self, client: &ClientInfo<'_>, filter: &str) {
        self.0.on_unsubscribe(client, filter);
        self.1.on_unsubscribe(client, filter);
    }
    fn on_unsubscribed(&mut self, client: &ClientInfo<'_>, filter: &str) {
        self.0.on_unsubscribed(client, filter);
        self.1.on_unsubscribed(client, filter);
    }
    fn on_message_arrived(
        &mut self,
        client: &ClientInfo<'_>,
        msg: &Message,
    ) -> Result<(), ReasonCode> {
        self.0.on_message_arrived(client, msg)?;
        self.1.on_message_arrived(client, msg)
    }
    fn on_deliver(&mut self, client_id: &str, msg: &Message) {
        self.0.on_deliver(client_id, msg);
        self.1.on_deliver(client_id, msg);
    }
    fn on_acked(&mut self, client_id: &str, msg: &Message) {
        self.0.on_acked(client_id, msg);
        self.1.on_acked(client_id, msg);
    }
    fn on_dropped(&mut self, client_id: &str, msg: &Message, why: DropReason) {
        self.0.on_dropped(client_id, msg, why);
        self.1.on_dropped(client_id, msg, why);
    }
    fn on_will_publish(&mut self, client_id: &str, msg: &Message) -> bool {
        self.0.on_will_publish(client_id, msg) && self.1.on_will_publish(client_id, msg)
    }
    fn on_will_published(&mut self, client_id: &str, msg: &Message) {
        self.0.on_will_published(client_id, msg);
        self.1.on_will_published(client_id, msg);
    }
    fn on_closed(&mut self, client_id: Option<&str>, reason: Option<ReasonCode>) {
        self.0.on_closed(client_id, reason);
        self.1.on_closed(client_id, reason);
    }
    fn on_stalled(&mut self, client_id: &str) {
        self.0.on_stalled(client_id);
        self.1.on_stalled(client_id);
    }
}
