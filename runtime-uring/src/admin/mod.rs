//! The operator surface beside the hot path: the admin HTTP API (EMQX v5 shapes, with
//! accounts, banned clients, Prometheus, the OpenAPI document and the dashboard), the
//! `$SYS` tree and webhooks. Each runs on threads of its own and reaches the shards
//! only through a [`BrokerHandle`] (closures over their control channels); a shard never
//! waits for any of it.
//!
//! Layout: `api` (routes and handlers), `users` (accounts over HTTP), `accounts` (the
//! password file), `keys` (API keys), `banned`, `stats` (EMQX JSON and Prometheus text),
//! `sys` (`$SYS`), `webhook`.

pub mod accounts;
pub mod api;
pub mod banned;
pub mod bridges;
pub mod keys;
pub mod stats;
pub mod sys;
mod users;
pub mod webhook;

use crate::broker::handle::{BrokerHandle, HandleError, PublishRequest};
use broker_core::{ClientSummary, SubscriptionSummary};
use serde_json::{json, Value};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// The OpenAPI 3 document of the admin API (checked against `api::ROUTES` by a test).
pub const OPENAPI: &str = include_str!("openapi.json");
/// The dashboard: one page, no build step, nothing fetched from elsewhere.
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// Largest request body accepted.
const MAX_BODY: u64 = 4 << 20;
/// Threads serving requests (a slow request does not hold the others).
const WORKERS: usize = 4;

/// What the admin API works with.
pub struct Admin {
    pub handle: BrokerHandle,
    pub keys: keys::ApiKeys,
    pub prometheus_auth: bool,
    pub accounts: Option<accounts::Accounts>,
    pub banned: banned::Banned,
    pub webhooks: webhook::Webhooks,
    pub maxima: Arc<stats::Maxima>,
    /// EMQX's node name, `petrel@<host>` (`petrel@<node_id>` in a cluster).
    pub node: String,
    /// The cluster's members and per-node counters, when this broker is a node of one.
    pub cluster: Option<Arc<crate::cluster::Shared>>,
    /// `[[bridge]]`s.
    pub bridges: Vec<Arc<crate::bridge::BridgeStatus>>,
    /// `[[kafka]]`, when configured.
    pub kafka: Option<crate::kafka::Link>,
}

/// EMQX's node name for an admin listener address.
pub fn node_name(addr: Option<SocketAddr>) -> String {
    format!(
        "petrel@{}",
        addr.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string())
    )
}

impl Admin {
    pub fn totals(&self) -> Result<stats::Totals, HandleError> {
        let topics = self.handle.topics()?.len();
        Ok(stats::Totals::of(
            self.handle.stats()?,
            Some(topics),
            &self.maxima,
        ))
    }

    pub fn prometheus(&self) -> Result<String, HandleError> {
        let t = self.totals()?;
        let mut extra = self.webhooks.families();
        if let Some(c) = &self.cluster {
            extra.extend(stats::cluster_families(c));
        }
        extra.extend(bridges::families(self));
        Ok(t.prometheus(self.handle.uptime().as_secs(), &extra))
    }

    pub fn client_json(&self, c: &ClientSummary) -> Value {
        let at = c
            .connected_at
            .map(|t| api::rfc3339(self.handle.wall_clock(t)));
        json!({
            "clientid": &*c.client_id,
            "username": c.username.as_deref(),
            "ip_address": c.peer.map(|a| a.ip().to_string()),
            "port": c.peer.map(|a| a.port()),
            "proto_name": "MQTT",
            "proto_ver": webhook::proto_ver(c.protocol),
            "keepalive": c.keep_alive,
            "clean_start": c.clean_start,
            "expiry_interval": c.expiry_interval,
            "connected": c.connected,
            "connected_at": at,
            "created_at": at,
            "subscriptions_cnt": c.subscriptions,
            "mqueue_len": c.queued,
            "inflight_cnt": c.inflight,
            "listener": c.listener,
            "node": self.node,
        })
    }

    pub fn sub_json(&self, s: &SubscriptionSummary) -> Value {
        let mut v = json!({
            "clientid": &*s.client_id,
            "topic": &*s.filter,
            "qos": s.options.qos as u8,
            "nl": u8::from(s.options.no_local),
            "rap": u8::from(s.options.retain_as_published),
            "rh": s.options.retain_handling as u8,
            "node": self.node,
        });
        if let (Some(g), Some(o)) = (&s.share_group, v.as_object_mut()) {
            o.insert("share_group".into(), json!(&**g));
        }
        v
    }

    pub fn node_json(&self, t: &stats::Totals) -> Value {
        let (load1, load5, load15) = loadavg();
        let rss = crate::broker::memory::rss_bytes().unwrap_or(0);
        json!({
            "node": self.node,
            "node_status": "running",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": api::millis(self.handle.uptime()),
            "connections": t.sessions,
            "live_connections": t.live,
            "max_fds": open_files_limit(),
            "memory_total": memory_total(),
            "memory_used": rss,
            "process_available": 0,
            "process_used": 0,
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "otp_release": "n/a",
            "sys_path": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            "role": "core",
        })
    }

    /// `GET /api/v5/nodes`: this node in full; in a cluster, every other member too (its
    /// name and status, and what this node forwarded to it).
    pub fn nodes_json(&self, t: &stats::Totals) -> Value {
        let mut all = vec![self.node_json(t)];
        let Some(c) = &self.cluster else {
            return Value::Array(all);
        };
        let members = c.members.lock().map(|m| m.clone()).unwrap_or_default();
        let peers = c.peers.lock().map(|p| p.clone()).unwrap_or_default();
        for m in members.iter().filter(|m| **m != c.node_id) {
            let p = peers
                .iter()
                .find(|(n, _)| n == m)
                .map(|(_, p)| *p)
                .unwrap_or_default();
            all.push(json!({
                "node": format!("petrel@{m}"),
                "node_status": "running",
                "forwarded": p.forwarded,
                "confirmed": p.confirmed,
                "unconfirmed": p.unconfirmed,
            }));
        }
        Value::Array(all)
    }

    /// Publishes as the broker: EMQX's status and body (200 `{id}`, 202 when nobody is
    /// subscribed, 400 for a refused message, 503 when the broker does not answer).
    pub fn publish(&self, req: PublishRequest) -> (u16, Value) {
        let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        match self.handle.publish(req) {
            Ok(true) => (200, json!({"id": id})),
            Ok(false) => (
                202,
                json!({"id": id, "reason_code": 16, "message": "no_matching_subscribers"}),
            ),
            Err(HandleError::Refused(rc)) => (
                400,
                json!({"code": "BAD_REQUEST", "message": format!("refused: {rc:?}")}),
            ),
            Err(e) => (
                503,
                json!({"code": "SERVICE_UNAVAILABLE", "message": e.to_string()}),
            ),
        }
    }

    /// Disconnects the connected clients a new ban matches.
    pub fn kick_banned(&self, ban: &banned::Ban) {
        let Ok(clients) = self.handle.clients() else {
            return;
        };
        for c in clients.iter().filter(|c| c.connected) {
            if ban.matches(&c.client_id, c.username.as_deref(), c.peer.map(|a| a.ip())) {
                let _ = self.handle.kick(&c.client_id);
            }
        }
    }
}

fn loadavg() -> (f64, f64, f64) {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(0.0));
    (
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    )
}

fn memory_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn open_files_limit() -> libc::rlim_t {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    if ok {
        r.rlim_cur
    } else {
        0
    }
}

/// Starts the admin HTTP server on its own threads; returns the bound address.
pub fn serve(bind: SocketAddr, admin: Arc<Admin>) -> anyhow::Result<SocketAddr> {
    let server = Arc::new(
        tiny_http::Server::http(bind)
            .map_err(|e| anyhow::anyhow!("admin API: cannot listen on {bind}: {e}"))?,
    );
    let bound = server.server_addr().to_ip().unwrap_or(bind);
    for i in 0..WORKERS {
        let (server, admin) = (server.clone(), admin.clone());
        std::thread::Builder::new()
            .name(format!("petrel-admin-{i}"))
            .spawn(move || {
                for mut req in server.incoming_requests() {
                    let auth = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.as_str().to_owned());
                    let content_type = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Content-Type"))
                        .map(|h| h.value.as_str().to_owned());
                    // Credentials are checked before a body is read: without them, nobody
                    // can hold a worker with a slow body.
                    let early = api::refuse_early(
                        &admin,
                        req.method().as_str(),
                        req.url(),
                        auth.as_deref(),
                        content_type.as_deref(),
                    );
                    let mut body = Vec::new();
                    let too_big = early.is_none() && req
                        .as_reader()
                        .take(MAX_BODY + 1)
                        .read_to_end(&mut body)
                        .map_or(true, |n| n as u64 > MAX_BODY);
                    let method = req.method().as_str().to_owned();
                    let r = if let Some(refused) = early {
                        refused
                    } else if too_big {
                        api::Reply {
                            status: 413,
                            content_type: "application/json",
                            body: br#"{"code":"BAD_REQUEST","message":"body too large or unreadable"}"#.to_vec(),
                        }
                    } else {
                        api::handle(&admin, &method, req.url(), &body)
                    };
                    tracing::debug!("admin {} {} -> {}", method, req.url(), r.status);
                    let mut resp = tiny_http::Response::from_data(r.body).with_status_code(r.status);
                    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", r.content_type) {
                        resp.add_header(h);
                    }
                    // The challenge only to a request without credentials: a browser
                    // answers it with a login prompt, which the dashboard's own form
                    // replaces (a headless one would wait on it forever).
                    if r.status == 401 && auth.is_none() {
                        if let Ok(h) = tiny_http::Header::from_bytes(
                            "WWW-Authenticate",
                            "Basic realm=\"petrel\"",
                        ) {
                            resp.add_header(h);
                        }
                    }
                    let _ = req.respond(resp);
                }
            })?;
    }
    Ok(bound)
}
