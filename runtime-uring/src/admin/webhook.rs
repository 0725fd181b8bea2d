//! Webhooks: EMQX v5 event bodies POSTed one per request to each configured endpoint.
//!
//! The shards' hooks render an event and put it on the endpoint's bounded queue (a short
//! lock, never a wait); one thread per endpoint sends them in order. A non-2xx answer or
//! a connection error is retried with exponential back-off (0.5 s doubling to 5 s) until
//! it is accepted or overflow evicts it: at least once, from a queue that drops the
//! oldest event when full (counted). A slow or dead endpoint only fills its own queue.

use crate::config::WebhookConfig;
use broker_core::mqtt_proto::{ProtocolVersion, QoS, ReasonCode};
use broker_core::policy::{ClientInfo, ConnectDetails, DropReason, Hooks};
use broker_core::{DisconnectReason, Message};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An event's identity: the shard that raised it and its number there (with the run's
/// boot nonce, the `X-Petrel-Event-Id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventId {
    shard: u16,
    seq: u64,
}

/// An event's body: rendered on the shard (connections and subscriptions, rare), or a
/// message's event that the endpoint's thread renders: `message.publish` can come once per
/// message, and JSON is not made on a shard at that rate.
#[derive(Debug, Clone)]
enum Body {
    Json(Arc<str>),
    Message(Arc<MessageEvent>),
}

#[derive(Debug)]
struct MessageEvent {
    msg: Message,
    client_id: Box<str>,
    username: Option<Box<str>>,
    peer: Option<SocketAddr>,
    at: u64,
    /// `message.dropped`: why.
    reason: Option<&'static str>,
}

impl MessageEvent {
    fn render(&self, event: &str, id: &str, node: &str) -> String {
        let msg = &self.msg;
        let mut body = json!({
            "event": event,
            "clientid": &*self.client_id,
            "topic": msg.topic(),
            "qos": msg.qos as u8,
            "flags": {"retain": msg.retain, "dup": false},
            "payload": String::from_utf8_lossy(msg.payload()),
            "timestamp": self.at,
            "node": node,
        });
        if let Some(o) = body.as_object_mut() {
            match self.reason {
                Some(r) => {
                    o.insert("reason".into(), json!(r));
                }
                None => {
                    // The event id doubles as the message's id.
                    o.insert("id".into(), json!(id));
                    o.insert("username".into(), json!(self.username.as_deref()));
                    o.insert(
                        "peerhost".into(),
                        json!(self.peer.map(|a| a.ip().to_string())),
                    );
                    o.insert("peername".into(), peername(self.peer));
                    o.insert("publish_received_at".into(), json!(self.at));
                    o.insert("pub_props".into(), json!({}));
                }
            }
        }
        body.to_string()
    }
}

/// One event waiting for its endpoint.
#[derive(Debug, Clone)]
struct Pending {
    id: EventId,
    event: &'static str,
    body: Body,
}

/// One endpoint: its queue, its counters and what it asked for.
#[derive(Debug)]
pub struct Endpoint {
    pub url: String,
    node: Arc<str>,
    boot: u64,
    events: Vec<String>,
    topics: Vec<String>,
    capacity: usize,
    queue: Mutex<VecDeque<Pending>>,
    ready: Condvar,
    stop: AtomicBool,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub failures: AtomicU64,
}

impl Endpoint {
    fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    fn push(&self, p: Pending) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // The sender waits for an event only when the queue is empty (in back-off it
        // waits for time): one wake-up per burst, not a futex call per event.
        let was_empty = q.is_empty();
        q.push_back(p);
        drop(q);
        if was_empty {
            self.ready.notify_one();
        }
    }

    pub fn depth(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.len())
    }

    /// Sends events in order until stopped.
    fn run(&self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut backoff = BACKOFF_FIRST;
        loop {
            let next = {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                while q.is_empty() && !self.stop.load(Ordering::Relaxed) {
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                q.front().cloned()
            };
            let Some(p) = next else { continue };
            let id = format!("{:016x}-{}-{}", self.boot, p.id.shard, p.id.seq);
            let body = match &p.body {
                Body::Json(text) => text.to_string(),
                Body::Message(m) => m.render(p.event, &id, &self.node),
            };
            let ok = agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .header("X-Petrel-Event", p.event)
                .header("X-Petrel-Event-Id", &id)
                .send(body.as_bytes())
                .is_ok_and(|r| r.status().is_success());
            if ok {
                backoff = BACKOFF_FIRST;
                self.sent.fetch_add(1, Ordering::Relaxed);
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                // Overflow may have evicted it meanwhile.
                if q.front().is_some_and(|f| f.id == p.id) {
                    q.pop_front();
                }
            } else {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let _ = self
                    .ready
                    .wait_timeout_while(q, backoff, |_| !self.stop.load(Ordering::Relaxed));
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Every configured endpoint, with their sender threads.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    pub endpoints: Arc<Vec<Arc<Endpoint>>>,
    node: Arc<str>,
}

impl Webhooks {
    /// Starts one sender thread per endpoint.
    pub fn start(cfgs: &[WebhookConfig], node: &str) -> anyhow::Result<Self> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let boot = u64::from_le_bytes(b);
        let node: Arc<str> = node.into();
        let mut endpoints = Vec::new();
        for (i, c) in cfgs.iter().enumerate() {
            let e = Arc::new(Endpoint {
                url: c.url.clone(),
                node: node.clone(),
                boot,
                events: c.events.clone(),
                topics: c.topics.clone(),
                capacity: c.queue_size.max(1),
                queue: Mutex::new(VecDeque::new()),
                ready: Condvar::new(),
                stop: AtomicBool::new(false),
                sent: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            });
            let run = e.clone();
            std::thread::Builder::new()
                .name(format!("petrel-webhook-{i}"))
                .spawn(move || run.run())?;
            endpoints.push(e);
        }
        Ok(Self {
            endpoints: Arc::new(endpoints),
            node,
        })
    }

    /// Stops the sender threads (what is queued is not sent).
    pub fn stop(&self) {
        for e in self.endpoints.iter() {
            // Under the queue's lock: a sender between its check and its wait would miss it.
            let _q = e.queue.lock().unwrap_or_else(|e| e.into_inner());
            e.stop.store(true, Ordering::Relaxed);
            e.ready.notify_all();
        }
    }

    /// Hooks for shard `shard` that feed the endpoints.
    pub fn hooks(&self, shard: u16) -> WebhookHooks {
        WebhookHooks {
            hooks: self.clone(),
            shard,
            seq: 0,
            clients: HashMap::new(),
        }
    }

    /// Prometheus families: queue depth, sent, dropped and failed attempts per endpoint.
    pub fn families(&self) -> Vec<super::stats::Family> {
        // Labelled by position and by the URL without credentials or query (tokens).
        let per = |f: &dyn Fn(&Endpoint) -> u64| -> Vec<(Vec<(&'static str, String)>, u64)> {
            self.endpoints
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let labels = vec![("endpoint", i.to_string()), ("url", redacted(&e.url))];
                    (labels, f(e))
                })
                .collect()
        };
        let fam = |name: &str, kind, help: &str, samples| super::stats::Family {
            name: name.into(),
            kind,
            help: help.into(),
            samples,
        };
        vec![
            fam(
                "petrel_webhook_queue_depth",
                "gauge",
                "Events waiting for a webhook endpoint.",
                per(&|e| e.depth() as u64),
            ),
            fam(
                "petrel_webhook_sent_total",
                "counter",
                "Events a webhook endpoint accepted (2xx).",
                per(&|e| e.sent.load(Ordering::Relaxed)),
            ),
            fam(
                "petrel_webhook_dropped_total",
                "counter",
                "Events dropped because a webhook queue was full.",
                per(&|e| e.dropped.load(Ordering::Relaxed)),
            ),
            fam(
                "petrel_webhook_failures_total",
                "counter",
                "Webhook attempts that failed (to be retried).",
                per(&|e| e.failures.load(Ordering::Relaxed)),
            ),
        ]
    }
}

/// A URL without user name, password, query or fragment.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

/// What `client.disconnected` repeats of `client.connected`.
#[derive(Debug)]
struct Seen {
    username: Option<Box<str>>,
    peer: Option<SocketAddr>,
    proto_ver: u8,
    connected_at: u64,
}

/// One shard's webhook hooks.
#[derive(Debug)]
pub struct WebhookHooks {
    hooks: Webhooks,
    shard: u16,
    seq: u64,
    clients: HashMap<Box<str>, Seen>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn proto_ver(v: ProtocolVersion) -> u8 {
    match v {
        ProtocolVersion::V3_1 => 3,
        ProtocolVersion::V3_1_1 => 4,
        ProtocolVersion::V5 => 5,
    }
}

/// What `session.subscribed` and `session.unsubscribed` have in common.
fn subscription_body(c: &ClientInfo<'_>, filter: &str) -> Value {
    let peer = c.peer.and_then(|p| p.addr);
    json!({
        "clientid": c.client_id,
        "username": c.username,
        "peerhost": peer.map(|a| a.ip().to_string()),
        "peername": peername(peer),
        "topic": filter,
    })
}

fn peername(p: Option<SocketAddr>) -> Value {
    p.map_or(Value::Null, |a| json!(a.to_string()))
}

impl WebhookHooks {
    fn wanted(&self, event: &str) -> bool {
        self.hooks.endpoints.iter().any(|e| e.wants(event))
    }

    /// Sends `body` (with `event`, `timestamp`, `node` added) to every endpoint that wants
    /// it (and, for `message.publish`, whose topics match `topic`).
    /// Queues `body` (with `event`, `timestamp` and `node` added) at every endpoint that
    /// wants it.
    fn emit(&mut self, event: &'static str, mut body: Value) {
        if let Some(o) = body.as_object_mut() {
            o.insert("event".into(), json!(event));
            o.insert("timestamp".into(), json!(now_ms()));
            o.insert("node".into(), json!(&*self.hooks.node));
        }
        self.queue(event, None, Body::Json(body.to_string().into()));
    }

    /// Puts an event on the queues of the endpoints that want it (and, with a topic, whose
    /// topics match it).
    fn queue(&mut self, event: &'static str, topic: Option<&str>, body: Body) {
        self.seq += 1;
        let id = EventId {
            shard: self.shard,
            seq: self.seq,
        };
        for e in self.hooks.endpoints.iter() {
            if !e.wants(event) {
                continue;
            }
            if let Some(t) = topic {
                if !e
                    .topics
                    .iter()
                    .any(|f| broker_core::mqtt_proto::topic::matches(f, t))
                {
                    continue;
                }
            }
            e.push(Pending {
                id,
                event,
                body: body.clone(),
            });
        }
    }
}

impl Hooks for WebhookHooks {
    fn on_client_connected(&mut self, c: &ClientInfo<'_>, d: &ConnectDetails<'_>) {
        let peer = c.peer.and_then(|p| p.addr);
        let at = now_ms();
        self.clients.insert(
            c.client_id.into(),
            Seen {
                username: c.username.map(Into::into),
                peer,
                proto_ver: proto_ver(c.protocol),
                connected_at: at,
            },
        );
        if !self.wanted("client.connected") {
            return;
        }
        let user: serde_json::Map<String, Value> = d
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), json!(&**v)))
            .collect();
        let body = json!({
            "clientid": c.client_id,
            "username": c.username,
            "mountpoint": null,
            "peername": peername(peer),
            "sockname": null,
            "proto_name": "MQTT",
            "proto_ver": proto_ver(c.protocol),
            "keepalive": d.keep_alive,
            "clean_start": d.clean_start,
            "expiry_interval": d.expiry_interval,
            "is_bridge": false,
            "conn_props": {"User-Property": user.clone(), "user_properties": user},
            "connected_at": at,
            "client_attrs": {},
        });
        self.emit("client.connected", body);
    }

    fn on_closed(&mut self, client_id: Option<&str>, reason: Option<ReasonCode>) {
        let Some(id) = client_id else { return };
        let seen = self.clients.remove(id);
        if !self.wanted("client.disconnected") {
            return;
        }
        let body = json!({
            "clientid": id,
            "username": seen.as_ref().and_then(|s| s.username.as_deref()),
            "peername": peername(seen.as_ref().and_then(|s| s.peer)),
            "sockname": null,
            "proto_name": "MQTT",
            "proto_ver": seen.as_ref().map(|s| s.proto_ver),
            "reason": DisconnectReason::of(reason).name(),
            "disconn_props": {},
            "connected_at": seen.as_ref().map(|s| s.connected_at),
            "disconnected_at": now_ms(),
        });
        self.emit("client.disconnected", body);
    }

    fn on_subscribed(&mut self, c: &ClientInfo<'_>, filter: &str, granted: QoS) {
        if self.wanted("session.subscribed") {
            let mut body = subscription_body(c, filter);
            if let Some(o) = body.as_object_mut() {
                o.insert("qos".into(), json!(granted as u8));
                o.insert("sub_props".into(), json!({}));
            }
            self.emit("session.subscribed", body);
        }
    }

    fn on_unsubscribed(&mut self, c: &ClientInfo<'_>, filter: &str) {
        if self.wanted("session.unsubscribed") {
            let mut body = subscription_body(c, filter);
            if let Some(o) = body.as_object_mut() {
                o.insert("unsub_props".into(), json!({}));
            }
            self.emit("session.unsubscribed", body);
        }
    }

    fn on_message_arrived(&mut self, c: &ClientInfo<'_>, msg: &Message) -> Result<(), ReasonCode> {
        if self.wanted("message.publish") {
            let ev = MessageEvent {
                // Its own allocation: a queued event must not pin a whole arena chunk.
                msg: msg.detached(),
                client_id: c.client_id.into(),
                username: c.username.map(Into::into),
                peer: c.peer.and_then(|p| p.addr),
                at: now_ms(),
                reason: None,
            };
            self.queue(
                "message.publish",
                Some(msg.topic()),
                Body::Message(Arc::new(ev)),
            );
        }
        Ok(())
    }

    fn on_dropped(&mut self, client_id: &str, msg: &Message, why: DropReason) {
        if !self.wanted("message.dropped") {
            return;
        }
        let reason = match why {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::TooLarge => "too_large",
            DropReason::Offline => "offline_qos0",
            DropReason::NotAuthorized => "not_authorized",
            DropReason::SessionEnded => "session_ended",
            DropReason::Hook => "refused_by_hook",
        };
        let ev = MessageEvent {
            // Its own allocation: a queued event must not pin a whole arena chunk.
            msg: msg.detached(),
            client_id: client_id.into(),
            username: None,
            peer: None,
            at: now_ms(),
            reason: Some(reason),
        };
        self.queue("message.dropped", None, Body::Message(Arc::new(ev)));
    }
}
