//! The admin API, compatible with APISIX's for stream routes and certificates:
//!
//! | request | answer |
//! |---|---|
//! | `PUT /apisix/admin/stream_routes/{id}` | 201 (new) or 200 `{"key", "value"}` with the stored route |
//! | `POST /apisix/admin/stream_routes` | 201, with a generated id |
//! | `GET /apisix/admin/stream_routes/{id}` | 200 `{"key", "value"}`, or 404 |
//! | `GET /apisix/admin/stream_routes` | 200 `{"total", "list": [{"key", "value"}]}` |
//! | `DELETE /apisix/admin/stream_routes/{id}` | 200 `{"deleted", "key"}`, or 404 |
//! | the same under `/apisix/admin/ssls` | private keys are never sent back |
//!
//! Every request needs the `X-API-KEY` header (401 otherwise); a body that is not JSON or
//! has a wrong field gets 400 with `{"error_msg": "...field: why"}`.
//!
//! It is a small blocking HTTP/1.1 server (`tiny_http`) on its own thread: requests are
//! rare, and it keeps HTTP parsing (keep-alive, chunked bodies, `Expect: 100-continue`,
//! which curl sends for bodies over 1 KiB such as certificates) out of the proxy threads.

use super::store::{Kind, Store, StoreError};
use serde_json::{json, Value};
use std::io::Read as _;
use std::net::SocketAddr;
use subtle::ConstantTimeEq as _;

/// Largest request body accepted (certificates and keys fit many times over).
pub const MAX_BODY: u64 = 1 << 20;

/// An answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

fn bad(msg: impl std::fmt::Display) -> Reply {
    reply(
        400,
        json!({ "error_msg": format!("invalid configuration: {msg}") }),
    )
}

fn not_found() -> Reply {
    reply(404, json!({"message": "Key not found"}))
}

fn key_of(kind: Kind, id: &str) -> String {
    format!("/apisix/{}/{id}", kind.name())
}

/// What is sent back of a stored object (an ssl's private key stays in the proxy).
fn public(kind: Kind, mut v: Value) -> Value {
    if kind == Kind::Ssls {
        if let Some(m) = v.as_object_mut() {
            m.remove("key");
        }
    }
    v
}

/// A generated id: the time in nanoseconds, zero-padded as APISIX's are.
fn new_id(store: &Store, kind: Kind) -> String {
    loop {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("{n:020}");
        let id = id
            .get(id.len().saturating_sub(20)..)
            .unwrap_or(&id)
            .to_owned();
        if store.get(kind, &id).is_none() {
            return id;
        }
    }
}

fn put(store: &mut Store, kind: Kind, id: &str, body: &[u8]) -> Reply {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body: invalid JSON: {e}")),
    };
    match store.put(kind, id, v) {
        Ok((value, created)) => reply(
            if created { 201 } else { 200 },
            json!({"key": key_of(kind, id), "value": public(kind, value)}),
        ),
        Err(StoreError::Invalid(e)) => bad(e),
        Err(StoreError::Io(e)) => reply(500, json!({ "error_msg": e })),
    }
}

/// Answers one request (no I/O: the HTTP layer is the caller's).
pub fn handle(
    store: &mut Store,
    api_key: &str,
    method: &str,
    url: &str,
    key_header: Option<&[u8]>,
    body: &[u8],
) -> Reply {
    let authorized = key_header.is_some_and(|k| bool::from(k.ct_eq(api_key.as_bytes())));
    if !authorized {
        return reply(401, json!({"message": "failed to check token"}));
    }
    let path = url.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some(rest) = path.strip_prefix("/apisix/admin/") else {
        return reply(404, json!({"error_msg": "404 Route Not Found"}));
    };
    let (kind, id) = match rest.split_once('/') {
        Some(("stream_routes", id)) => (Kind::StreamRoutes, Some(id)),
        Some(("ssls", id)) => (Kind::Ssls, Some(id)),
        None if rest == "stream_routes" => (Kind::StreamRoutes, None),
        None if rest == "ssls" => (Kind::Ssls, None),
        _ => return reply(404, json!({"error_msg": "404 Route Not Found"})),
    };
    match (method, id) {
        ("GET", None) => {
            let list: Vec<Value> = store
                .list(kind)
                .into_iter()
                .map(|(id, v)| json!({"key": key_of(kind, &id), "value": public(kind, v)}))
                .collect();
            reply(200, json!({"total": list.len(), "list": list}))
        }
        ("GET", Some(id)) => match store.get(kind, id) {
            Some(v) => reply(
                200,
                json!({"key": key_of(kind, id), "value": public(kind, v)}),
            ),
            None => not_found(),
        },
        ("PUT", Some(id)) => put(store, kind, id, body),
        ("PUT", None) => {
            // APISIX takes the id from the body when the path has none.
            match serde_json::from_slice::<Value>(body) {
                Ok(v) => match super::routes::body_id(&v) {
                    Ok(Some(id)) => put(store, kind, &id, body),
                    Ok(None) => bad("id: required (in the path or the body)"),
                    Err(e) => bad(e),
                },
                Err(e) => bad(format!("body: invalid JSON: {e}")),
            }
        }
        ("POST", None) => {
            let id = new_id(store, kind);
            put(store, kind, &id, body)
        }
        ("DELETE", Some(id)) => match store.delete(kind, id) {
            Ok(true) => reply(200, json!({"deleted": "1", "key": key_of(kind, id)})),
            Ok(false) => not_found(),
            Err(StoreError::Invalid(e)) => bad(e),
            Err(StoreError::Io(e)) => reply(500, json!({ "error_msg": e })),
        },
        _ => reply(
            405,
            json!({"error_msg": format!("method {method} not allowed here")}),
        ),
    }
}

/// Starts the admin server on its own thread; returns the bound address.
pub fn spawn(addr: SocketAddr, api_key: String, mut store: Store) -> anyhow::Result<SocketAddr> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("admin API: cannot listen on {addr}: {e}"))?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    std::thread::Builder::new()
        .name("petrel-proxy-admin".into())
        .spawn(move || {
            for mut req in server.incoming_requests() {
                let key = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("X-API-KEY"))
                    .map(|h| h.value.as_str().as_bytes().to_vec());
                let mut body = Vec::new();
                let too_big = req
                    .as_reader()
                    .take(MAX_BODY + 1)
                    .read_to_end(&mut body)
                    .map_or(true, |n| n as u64 > MAX_BODY);
                let method = req.method().as_str().to_owned();
                let r = if too_big {
                    reply(413, json!({"error_msg": "body too large or unreadable"}))
                } else {
                    handle(
                        &mut store,
                        &api_key,
                        &method,
                        req.url(),
                        key.as_deref(),
                        &body,
                    )
                };
                tracing::info!("admin {} {} -> {}", method, req.url(), r.status);
                let text = r.body.to_string();
                let mut resp = tiny_http::Response::from_string(text).with_status_code(r.status);
                if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
                    resp.add_header(h);
                }
                let _ = req.respond(resp);
            }
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::health::HealthRegistry;
    use crate::proxy::store::StoreSettings;
    use crate::proxy::table::RouteTable;
    use arc_swap::ArcSwap;
    use std::sync::Arc;
    use std::time::Duration;

    fn store() -> (Store, Arc<ArcSwap<RouteTable>>) {
        let table = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
        let s = Store::open(
            table.clone(),
            Arc::new(HealthRegistry::default()),
            StoreSettings {
                state: None,
                upstream_ca: None,
                connect_timeout: Duration::from_secs(1),
                default_route: None,
                static_ssls: Vec::new(),
            },
        )
        .unwrap();
        (s, table)
    }

    const K: &str = "secret";

    #[test]
    fn key_is_required() {
        let (mut s, _) = store();
        assert_eq!(
            handle(&mut s, K, "GET", "/apisix/admin/stream_routes", None, b"").status,
            401
        );
        assert_eq!(
            handle(
                &mut s,
                K,
                "GET",
                "/apisix/admin/stream_routes",
                Some(b"secreT"),
                b""
            )
            .status,
            401
        );
        assert_eq!(
            handle(
                &mut s,
                K,
                "GET",
                "/apisix/admin/stream_routes",
                Some(b"secret"),
                b""
            )
            .status,
            200
        );
    }

    #[test]
    fn crud() {
        let (mut s, table) = store();
        let k = Some(K.as_bytes());
        let body = br#"{"plugins":{"mqtt-proxy":{"protocol_name":"MQTT","protocol_level":4}},
            "upstream":{"type":"chash","key":"mqtt_client_id","nodes":[{"host":"127.0.0.1","port":1995,"weight":1}]}}"#;
        let r = handle(&mut s, K, "PUT", "/apisix/admin/stream_routes/1", k, body);
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["key"], "/apisix/stream_routes/1");
        assert_eq!(r.body["value"]["upstream"]["nodes"][0]["port"], 1995);
        assert_eq!(table.load().nodes().len(), 1);
        let r = handle(&mut s, K, "PUT", "/apisix/admin/stream_routes/1", k, body);
        assert_eq!(r.status, 200);
        let r = handle(&mut s, K, "GET", "/apisix/admin/stream_routes", k, b"");
        assert_eq!(r.body["total"], 1);
        let r = handle(&mut s, K, "POST", "/apisix/admin/stream_routes", k, body);
        assert_eq!(r.status, 201);
        let r = handle(&mut s, K, "GET", "/apisix/admin/stream_routes/1", k, b"");
        assert_eq!(r.body["value"]["id"], "1");
        let r = handle(&mut s, K, "DELETE", "/apisix/admin/stream_routes/1", k, b"");
        assert_eq!(r.status, 200);
        assert_eq!(
            handle(&mut s, K, "GET", "/apisix/admin/stream_routes/1", k, b"").status,
            404
        );
        assert_eq!(
            handle(&mut s, K, "DELETE", "/apisix/admin/stream_routes/1", k, b"").status,
            404
        );
        assert_eq!(
            handle(&mut s, K, "PATCH", "/apisix/admin/stream_routes/1", k, b"").status,
            405
        );
        assert_eq!(
            handle(&mut s, K, "GET", "/apisix/admin/routes", k, b"").status,
            404
        );
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        let (mut s, _) = store();
        let k = Some(K.as_bytes());
        let r = handle(
            &mut s,
            K,
            "PUT",
            "/apisix/admin/stream_routes/1",
            k,
            b"{not json",
        );
        assert_eq!(r.status, 400);
        assert!(r.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"));
        let r = handle(
            &mut s,
            K,
            "PUT",
            "/apisix/admin/stream_routes/1",
            k,
            br#"{"upstream":{"nodes":[{"host":"127.0.0.1","port":0}]}}"#,
        );
        assert_eq!(r.status, 400);
        assert!(r.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("upstream.nodes[0].port"));
        let r = handle(
            &mut s,
            K,
            "PUT",
            "/apisix/admin/ssls/1",
            k,
            br#"{"cert":"x","key":"y","snis":["a"]}"#,
        );
        assert_eq!(r.status, 400);
        assert!(r.body["error_msg"].as_str().unwrap().contains("cert"));
    }
}
