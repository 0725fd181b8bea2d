//! The admin API's routes and handlers: EMQX v5 paths and JSON shapes (the
//! `{"data", "meta"}` envelope, its query parameters, `{"code", "message"}` errors), Gmqtt's
//! `/v1/accounts`, Prometheus text and the dashboard. Every handler is a thin layer over a
//! [`BrokerHandle`] (or the password file, or the banned list).

use super::banned::{Ban, BanKind};
use super::keys::Role;
use super::Admin;
use crate::broker::handle::{HandleError, PublishRequest};
use broker_core::mqtt_proto::{QoS, RetainHandling, SubscriptionOptions};
use broker_core::{ClientSummary, SubscriptionSummary};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Status,
    Stats,
    Metrics,
    Nodes,
    Clients,
    Client,
    Kick,
    KickBulk,
    ClientSubscriptions,
    Subscribe,
    Unsubscribe,
    Subscriptions,
    Topics,
    Publish,
    PublishBulk,
    BannedList,
    BannedAdd,
    BannedDelete,
    Prometheus,
    Users,
    UserAdd,
    User,
    UserUpdate,
    UserDelete,
    Accounts,
    Account,
    AccountSet,
    AccountDelete,
    Swagger,
    Dashboard,
    Bridges,
    BridgeAdd,
    BridgeDelete,
}

/// The path parameters routes use.
const ROUTE_PARAMS: [&str; 6] = ["clientid", "as", "who", "user_id", "username", "name"];

const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";

/// Every route: method, path (`{name}` is one segment) and what it does. Literal routes
/// come before the patterns they could also match. The OpenAPI document lists exactly
/// these (a test checks both ways).
pub const ROUTES: &[(&str, &str, Op)] = &[
    ("GET", "/api/v5/status", Op::Status),
    ("GET", "/api/v5/stats", Op::Stats),
    ("GET", "/api/v5/metrics", Op::Metrics),
    ("GET", "/api/v5/nodes", Op::Nodes),
    ("GET", "/api/v5/clients", Op::Clients),
    ("POST", "/api/v5/clients/kickout/bulk", Op::KickBulk),
    ("GET", "/api/v5/clients/{clientid}", Op::Client),
    ("DELETE", "/api/v5/clients/{clientid}", Op::Kick),
    (
        "GET",
        "/api/v5/clients/{clientid}/subscriptions",
        Op::ClientSubscriptions,
    ),
    (
        "POST",
        "/api/v5/clients/{clientid}/subscribe",
        Op::Subscribe,
    ),
    (
        "POST",
        "/api/v5/clients/{clientid}/unsubscribe",
        Op::Unsubscribe,
    ),
    ("GET", "/api/v5/subscriptions", Op::Subscriptions),
    ("GET", "/api/v5/topics", Op::Topics),
    ("POST", "/api/v5/publish", Op::Publish),
    ("POST", "/api/v5/publish/bulk", Op::PublishBulk),
    ("GET", "/api/v5/banned", Op::BannedList),
    ("POST", "/api/v5/banned", Op::BannedAdd),
    ("DELETE", "/api/v5/banned/{as}/{who}", Op::BannedDelete),
    ("GET", "/api/v5/bridges", Op::Bridges),
    ("POST", "/api/v5/bridges", Op::BridgeAdd),
    ("DELETE", "/api/v5/bridges/{name}", Op::BridgeDelete),
    ("GET", "/api/v5/prometheus/stats", Op::Prometheus),
    ("GET", USERS, Op::Users),
    ("POST", USERS, Op::UserAdd),
    (
        "GET",
        "/api/v5/authentication/password_based:built_in_database/users/{user_id}",
        Op::User,
    ),
    (
        "PUT",
        "/api/v5/authentication/password_based:built_in_database/users/{user_id}",
        Op::UserUpdate,
    ),
    (
        "DELETE",
        "/api/v5/authentication/password_based:built_in_database/users/{user_id}",
        Op::UserDelete,
    ),
    ("GET", "/v1/accounts", Op::Accounts),
    ("GET", "/v1/accounts/{username}", Op::Account),
    ("POST", "/v1/accounts/{username}", Op::AccountSet),
    ("DELETE", "/v1/accounts/{username}", Op::AccountDelete),
    ("GET", "/metrics", Op::Prometheus),
    ("GET", "/api-docs/swagger.json", Op::Swagger),
    ("GET", "/", Op::Dashboard),
];

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

pub(super) fn reply(status: u16, v: Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: v.to_string().into_bytes(),
    }
}

fn text(status: u16, content_type: &'static str, s: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        content_type,
        body: s.into(),
    }
}

pub(super) fn no_content() -> Reply {
    text(204, "application/json", Vec::new())
}

pub(super) fn error(status: u16, code: &str, message: impl std::fmt::Display) -> Reply {
    reply(
        status,
        json!({"code": code, "message": message.to_string()}),
    )
}

pub(super) fn bad(message: impl std::fmt::Display) -> Reply {
    error(400, "BAD_REQUEST", message)
}

fn unavailable(e: HandleError) -> Reply {
    error(503, "SERVICE_UNAVAILABLE", e)
}

/// A URL path's segments, as the URL parser cuts them (still percent-encoded).
fn segments(path: &str) -> Vec<String> {
    url::Url::parse(&format!("http://admin{path}"))
        .ok()
        .and_then(|u| u.path_segments().map(|s| s.map(String::from).collect()))
        .unwrap_or_default()
}

/// The route for `path`: its op and path parameters, or whether some other method has it.
fn route(method: &str, path: &str) -> Result<(Op, HashMap<&'static str, String>), bool> {
    let segs = segments(path);
    let mut path_known = false;
    for (m, pattern, op) in ROUTES {
        // The parser escapes the braces of `{name}`.
        let pat: Vec<String> = segments(pattern)
            .iter()
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        if pat.len() != segs.len() {
            continue;
        }
        let mut params = HashMap::new();
        let ok = pat.iter().zip(&segs).all(|(p, s)| {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    let v = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
                    let name = ROUTE_PARAMS
                        .iter()
                        .find(|n| **n == name)
                        .copied()
                        .unwrap_or("?");
                    params.insert(name, v.into_owned());
                    !s.is_empty()
                }
                None => p == s,
            }
        });
        if ok {
            if *m == method {
                return Ok((*op, params));
            }
            path_known = true;
        }
    }
    Err(path_known)
}

/// What is refused before the body is read: an unknown path or method, missing or wrong
/// credentials (401), a viewer's write (403), and a POST or PUT whose body is not declared
/// JSON (415: a cross-site form cannot send `application/json` without a CORS preflight,
/// which this server never grants). `auth` and `content_type` are the request's headers.
pub fn refuse_early(
    admin: &Admin,
    method: &str,
    url: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
) -> Option<Reply> {
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    let op = match route(method, path) {
        Ok((op, _)) => op,
        Err(true) => {
            return Some(error(
                405,
                "METHOD_NOT_ALLOWED",
                format!("{method} is not allowed on {path}"),
            ))
        }
        Err(false) => return Some(error(404, "NOT_FOUND", format!("no such path: {path}"))),
    };
    // Health checks (EMQX's /status), the OpenAPI document and the dashboard page are
    // open; the page asks for a key before it calls anything else.
    let public = matches!(op, Op::Status | Op::Swagger | Op::Dashboard)
        || (op == Op::Prometheus && !admin.prometheus_auth);
    if !public {
        match admin.keys.check_basic(auth) {
            None => {
                return Some(error(
                    401,
                    "BAD_API_KEY_OR_SECRET",
                    "an API key and secret are needed (HTTP Basic)",
                ))
            }
            Some(Role::Viewer) if method != "GET" => {
                return Some(error(
                    403,
                    "FORBIDDEN",
                    "this API key may only read (viewer)",
                ))
            }
            Some(_) => {}
        }
    }
    let json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if matches!(method, "POST" | "PUT") && !json {
        return Some(error(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be sent as Content-Type: application/json",
        ));
    }
    None
}

/// Handles one request that `refuse_early` let through.
pub fn handle(admin: &Admin, method: &str, url: &str, body: &[u8]) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let Ok((op, params)) = route(method, path) else {
        return error(404, "NOT_FOUND", format!("no such path: {path}"));
    };
    let p = |name: &str| params.get(name).cloned().unwrap_or_default();
    let json_body = || serde_json::from_slice::<Value>(body);
    match op {
        Op::Status => text(
            200,
            "text/plain; charset=utf-8",
            format!("Node {} is started\npetrel is running", admin.node),
        ),
        Op::Stats | Op::Metrics => match admin.totals() {
            Ok(t) => {
                let mut v = if op == Op::Stats {
                    t.stats_json()
                } else {
                    t.metrics_json()
                };
                if q.get("aggregate").is_some_and(|a| a == "true") {
                    reply(200, v)
                } else {
                    if let Some(o) = v.as_object_mut() {
                        o.insert("node".into(), json!(admin.node));
                    }
                    reply(200, json!([v]))
                }
            }
            Err(e) => unavailable(e),
        },
        Op::Nodes => match admin.totals() {
            Ok(t) => reply(200, admin.nodes_json(&t)),
            Err(e) => unavailable(e),
        },
        Op::Clients => match admin.handle.clients() {
            Ok(all) => {
                let items = all
                    .iter()
                    .filter(|c| client_matches(c, &q))
                    .map(|c| admin.client_json(c))
                    .collect();
                page(items, &q)
            }
            Err(e) => unavailable(e),
        },
        Op::Client => match admin.handle.client(&p("clientid")) {
            Ok(Some(c)) => reply(200, admin.client_json(&c)),
            Ok(None) => client_not_found(),
            Err(e) => unavailable(e),
        },
        Op::Kick => match admin.handle.kick(&p("clientid")) {
            Ok(true) => no_content(),
            Ok(false) => client_not_found(),
            Err(e) => unavailable(e),
        },
        Op::KickBulk => match serde_json::from_slice::<Vec<String>>(body) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = admin.handle.kick(&id) {
                        return unavailable(e);
                    }
                }
                no_content()
            }
            Err(e) => bad(format!("expected a JSON array of client identifiers: {e}")),
        },
        Op::ClientSubscriptions => {
            let id = p("clientid");
            match admin.handle.client(&id) {
                Ok(None) => return client_not_found(),
                Err(e) => return unavailable(e),
                Ok(Some(_)) => {}
            }
            match admin.handle.subscriptions(Some(&id)) {
                Ok(s) => reply(
                    200,
                    Value::Array(s.iter().map(|s| admin.sub_json(s)).collect()),
                ),
                Err(e) => unavailable(e),
            }
        }
        Op::Subscribe => {
            let Ok(b) = json_body() else {
                return bad("the body must be JSON");
            };
            let Some(topic) = b["topic"].as_str() else {
                return bad("\"topic\" is required");
            };
            let Some(qos) = qos_of(&b["qos"]) else {
                return bad("\"qos\" must be 0, 1 or 2");
            };
            let rh = match b["rh"].as_u64().unwrap_or(0) {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => return bad("\"rh\" must be 0, 1 or 2"),
            };
            let opts = SubscriptionOptions {
                qos,
                no_local: flag(&b["nl"]),
                retain_as_published: flag(&b["rap"]),
                retain_handling: rh,
            };
            let id = p("clientid");
            match admin.handle.subscribe(&id, topic, opts) {
                Ok(Some(code)) if !code.is_error() => {
                    let granted = code as u8;
                    reply(
                        200,
                        json!({"clientid": id, "topic": topic, "qos": granted, "nl": u8::from(opts.no_local),
                        "rap": u8::from(opts.retain_as_published), "rh": rh as u8, "node": admin.node}),
                    )
                }
                Ok(Some(code)) => error(
                    400,
                    "INVALID_PARAMETER",
                    format!("subscription refused: {code:?}"),
                ),
                Ok(None) => client_not_found(),
                Err(e) => unavailable(e),
            }
        }
        Op::Unsubscribe => {
            let Ok(b) = json_body() else {
                return bad("the body must be JSON");
            };
            let Some(topic) = b["topic"].as_str() else {
                return bad("\"topic\" is required");
            };
            match admin.handle.unsubscribe(&p("clientid"), topic) {
                Ok(Some(_)) => no_content(),
                Ok(None) => client_not_found(),
                Err(e) => unavailable(e),
            }
        }
        Op::Subscriptions => match admin
            .handle
            .subscriptions(q.get("clientid").map(String::as_str))
        {
            Ok(all) => {
                let items = all
                    .iter()
                    .filter(|s| sub_matches(s, &q))
                    .map(|s| admin.sub_json(s))
                    .collect();
                page(items, &q)
            }
            Err(e) => unavailable(e),
        },
        Op::Topics => match admin.handle.topics() {
            Ok(all) => {
                let items = all
                    .iter()
                    .filter(|t| q.get("topic").is_none_or(|x| x.as_str() == &***t))
                    .map(|t| json!({"topic": &**t, "node": admin.node}))
                    .collect();
                page(items, &q)
            }
            Err(e) => unavailable(e),
        },
        Op::Publish => {
            let Ok(b) = json_body() else {
                return bad("the body must be JSON");
            };
            match publish_request(&b) {
                Ok(req) => {
                    let (status, v) = admin.publish(req);
                    reply(status, v)
                }
                Err(m) => bad(m),
            }
        }
        Op::PublishBulk => {
            let Ok(Value::Array(items)) = json_body() else {
                return bad("the body must be a JSON array of messages");
            };
            let mut reqs = Vec::new();
            for (i, b) in items.iter().enumerate() {
                match publish_request(b) {
                    Ok(r) => reqs.push(r),
                    Err(m) => return bad(format!("message {i}: {m}")),
                }
            }
            // EMQX: 200 when every message reached a subscriber, else 202 with each result.
            let mut out = Vec::new();
            let mut all = true;
            for r in reqs {
                let (status, v) = admin.publish(r);
                if status == 503 {
                    return reply(503, v);
                }
                all &= status == 200;
                out.push(v);
            }
            reply(if all { 200 } else { 202 }, Value::Array(out))
        }
        Op::BannedList => {
            let items = admin.banned.list().iter().map(ban_json).collect();
            page(items, &q)
        }
        Op::BannedAdd => {
            let Ok(b) = json_body() else {
                return bad("the body must be JSON");
            };
            let Some(kind) = b["as"].as_str().and_then(BanKind::parse) else {
                return bad("\"as\" must be clientid, username or peerhost");
            };
            let Some(who) = b["who"].as_str().filter(|w| !w.is_empty()) else {
                return bad("\"who\" is required");
            };
            let who = match kind {
                BanKind::PeerHost => match super::banned::canonical_host(who) {
                    Some(h) => h,
                    None => return bad(format!("\"who\" = {who:?} is not an IP address")),
                },
                _ => who.to_string(),
            };
            let until = match b.get("until").and_then(Value::as_str) {
                None => None,
                Some(s) => match humantime::parse_rfc3339_weak(s) {
                    Ok(t) => Some(t),
                    Err(e) => return bad(format!("\"until\": {e}")),
                },
            };
            let ban = Ban {
                kind,
                who,
                by: b["by"].as_str().unwrap_or("admin").into(),
                reason: b["reason"].as_str().unwrap_or("").into(),
                at: SystemTime::now(),
                until,
            };
            admin.banned.add(ban.clone());
            admin.kick_banned(&ban);
            reply(200, ban_json(&ban))
        }
        Op::BannedDelete => match BanKind::parse(&p("as")) {
            Some(kind)
                if admin.banned.remove(
                    kind,
                    &match kind {
                        BanKind::PeerHost => {
                            super::banned::canonical_host(&p("who")).unwrap_or_default()
                        }
                        _ => p("who"),
                    },
                ) =>
            {
                no_content()
            }
            Some(_) => error(404, "NOT_FOUND", "no such ban"),
            None => bad("\"as\" must be clientid, username or peerhost"),
        },
        Op::Prometheus => match admin.prometheus() {
            Ok(s) => text(200, "text/plain; version=0.0.4; charset=utf-8", s),
            Err(e) => unavailable(e),
        },
        Op::Users | Op::UserAdd | Op::User | Op::UserUpdate | Op::UserDelete => {
            super::users::users(admin, op, &p("user_id"), &q, body)
        }
        Op::Accounts | Op::Account | Op::AccountSet | Op::AccountDelete => {
            super::users::accounts(admin, op, &p("username"), body)
        }
        Op::Bridges => reply(200, super::bridges::list(admin)),
        Op::BridgeAdd => match json_body() {
            Ok(b) => super::bridges::add(admin, &b),
            Err(_) => bad("the body must be JSON"),
        },
        Op::BridgeDelete => super::bridges::remove(admin, &p("name")),
        Op::Swagger => text(200, "application/json", super::OPENAPI),
        Op::Dashboard => text(200, "text/html; charset=utf-8", super::DASHBOARD),
    }
}

fn client_not_found() -> Reply {
    error(404, "CLIENTID_NOT_FOUND", "Client ID not found")
}

fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or_else(|| v.as_u64() == Some(1))
}

fn qos_of(v: &Value) -> Option<QoS> {
    match v.as_u64() {
        None if v.is_null() => Some(QoS::AtMostOnce),
        Some(0) => Some(QoS::AtMostOnce),
        Some(1) => Some(QoS::AtLeastOnce),
        Some(2) => Some(QoS::ExactlyOnce),
        _ => None,
    }
}

/// EMQX's paging: `_page` (from 1) and `_limit` (default 100, at most 10000).
fn page(items: Vec<Value>, q: &HashMap<String, String>) -> Reply {
    let num = |k: &str, d: usize| q.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(d);
    let page_no = num("_page", 1).max(1);
    let limit = num("_limit", 100).clamp(1, 10_000);
    let count = items.len();
    let start = (page_no - 1).saturating_mul(limit);
    let data: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let hasnext = start.saturating_add(limit) < count;
    reply(
        200,
        json!({"data": data, "meta": {"page": page_no, "limit": limit, "count": count, "hasnext": hasnext}}),
    )
}

fn client_matches(c: &ClientSummary, q: &HashMap<String, String>) -> bool {
    let has = |k: &str| q.get(k).map(String::as_str);
    has("clientid").is_none_or(|v| *c.client_id == *v)
        && has("username").is_none_or(|v| c.username.as_deref() == Some(v))
        && has("like_clientid").is_none_or(|v| c.client_id.contains(v))
        && has("like_username").is_none_or(|v| c.username.as_deref().is_some_and(|u| u.contains(v)))
        && has("conn_state").is_none_or(|v| (v == "connected") == c.connected)
        && has("ip_address").is_none_or(|v| c.peer.is_some_and(|a| a.ip().to_string() == v))
        && has("proto_ver").is_none_or(|v| super::webhook::proto_ver(c.protocol).to_string() == v)
        && has("clean_start").is_none_or(|v| (v == "true") == c.clean_start)
}

fn sub_matches(s: &SubscriptionSummary, q: &HashMap<String, String>) -> bool {
    let has = |k: &str| q.get(k).map(String::as_str);
    has("topic").is_none_or(|v| *s.filter == *v)
        && has("qos").is_none_or(|v| (s.options.qos as u8).to_string() == v)
        && has("share_group").is_none_or(|v| s.share_group.as_deref() == Some(v))
        && has("match_topic").is_none_or(|t| {
            // The filter without `$share/{group}/` decides what it matches.
            broker_core::mqtt_proto::topic::Filter::parse(&s.filter)
                .is_ok_and(|f| broker_core::mqtt_proto::topic::matches(f.filter, t))
        })
}

/// EMQX's `/publish` body.
fn publish_request(b: &Value) -> Result<PublishRequest, String> {
    let topic = b["topic"].as_str().ok_or("\"topic\" is required")?;
    let payload = b["payload"].as_str().unwrap_or("");
    let payload = match b["payload_encoding"].as_str().unwrap_or("plain") {
        "plain" => payload.as_bytes().to_vec(),
        "base64" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|e| format!("\"payload\" is not base64: {e}"))?
        }
        other => return Err(format!("\"payload_encoding\" {other:?}: plain or base64")),
    };
    let qos = qos_of(&b["qos"]).ok_or("\"qos\" must be 0, 1 or 2")?;
    let mut r = PublishRequest::new(topic, payload, qos);
    r.retain = b["retain"].as_bool().unwrap_or(false);
    let p = &b["properties"];
    if !p.is_null() && !p.is_object() {
        return Err("\"properties\" must be an object".into());
    }
    r.payload_format_indicator = p["payload_format_indicator"].as_u64().map(|v| v == 1);
    r.message_expiry_interval = match p["message_expiry_interval"].as_u64() {
        Some(v) => Some(u32::try_from(v).map_err(|_| "\"message_expiry_interval\" is too large")?),
        None => None,
    };
    r.content_type = p["content_type"].as_str().map(Into::into);
    r.response_topic = p["response_topic"].as_str().map(Into::into);
    r.correlation_data = p["correlation_data"]
        .as_str()
        .map(|s| s.as_bytes().to_vec());
    if let Some(u) = p["user_properties"].as_object() {
        for (k, v) in u {
            let v = v
                .as_str()
                .ok_or("\"user_properties\" values must be strings")?;
            r.user_properties.push((k.clone(), v.into()));
        }
    }
    Ok(r)
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn ban_json(b: &Ban) -> Value {
    json!({
        "as": b.kind.name(),
        "who": b.who,
        "by": b.by,
        "reason": b.reason,
        "at": rfc3339(b.at),
        "until": b.until.map(rfc3339),
    })
}

/// `d` as whole milliseconds.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The OpenAPI document and the router list the same operations, both ways.
    #[test]
    fn openapi_matches_the_router() {
        let doc: Value = serde_json::from_str(super::super::OPENAPI).expect("valid JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for m in ["get", "post", "put", "delete", "patch"] {
                if item.get(m).is_some() {
                    documented.insert((m.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "openapi.json paths with no route: {unrouted:?}"
        );
    }

    #[test]
    fn routes_resolve_literals_before_patterns() {
        let (op, _) = route("POST", "/api/v5/clients/kickout/bulk").unwrap();
        assert_eq!(op, Op::KickBulk);
        let (op, p) = route("GET", "/api/v5/clients/a%2Fb/subscriptions").unwrap();
        assert_eq!(op, Op::ClientSubscriptions);
        assert_eq!(p["clientid"], "a/b");
        assert_eq!(route("PATCH", "/api/v5/clients/x"), Err(true));
        assert_eq!(route("GET", "/api/v5/nothing"), Err(false));
    }

    #[test]
    fn pages_follow_emqx() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let q: HashMap<String, String> =
            [("_page".into(), "2".into()), ("_limit".into(), "2".into())].into();
        let r = page(items, &q);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["data"], json!([2, 3]));
        assert_eq!(
            v["meta"],
            json!({"page": 2, "limit": 2, "count": 5, "hasnext": true})
        );
    }
}
