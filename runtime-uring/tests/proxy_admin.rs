//! Issue 6, the `petrel proxy` admin API as an APISIX client uses it: the key, JSON
//! bodies in both node notations, answers with the stored route, listing and deletion,
//! 400s that name the field, and routes and certificates that survive a restart (the
//! `--state` file).

#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;
#[path = "proxy/support.rs"]
mod support;

use serde_json::json;
use support::*;

#[test]
fn admin_api_checks_the_key_and_names_bad_fields() {
    let mut proxy = Proxy::start(&[]);
    let p = proxy.admin;
    let path = "/apisix/admin/stream_routes/1";
    let body = json!({
        "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}},
        "upstream": {"type": "chash", "key": "mqtt_client_id",
                     "nodes": [{"host": "127.0.0.1", "port": 1995, "weight": 1},
                               {"host": "127.0.0.2", "port": 1995, "weight": 1}]}
    })
    .to_string();
    // No key, a wrong key: 401, nothing stored.
    assert_eq!(http(p, "PUT", path, None, Some(&body)).0, 401);
    assert_eq!(http(p, "PUT", path, Some("wrong"), Some(&body)).0, 401);
    assert_eq!(
        http(p, "GET", "/apisix/admin/stream_routes", None, None).0,
        401
    );
    assert_eq!(proxy.api("GET", path, None).0, 404);

    // Created (201), then replaced (200); the answer is the stored route.
    let (st, v) = http(p, "PUT", path, Some(KEY), Some(&body));
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["key"], "/apisix/stream_routes/1");
    assert_eq!(v["value"]["id"], "1");
    assert_eq!(v["value"]["upstream"]["nodes"][1]["host"], "127.0.0.2");
    assert_eq!(v["value"]["plugins"]["mqtt-proxy"]["protocol_level"], 4);
    let (st, _) = http(p, "PUT", path, Some(KEY), Some(&body));
    assert_eq!(st, 200);
    // Nodes as an object, sni, roundrobin.
    let (st, v) = proxy.api(
        "PUT",
        "/apisix/admin/stream_routes/2",
        Some(&json!({"sni": "mqtt.example.com",
                     "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 5}},
                     "upstream": {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["value"]["upstream"]["nodes"]["127.0.0.1:1980"], 1);
    let (st, v) = proxy.api("GET", "/apisix/admin/stream_routes", None);
    assert_eq!(st, 200);
    assert_eq!(v["total"], 2, "{v}");
    assert_eq!(v["list"][0]["value"]["id"], "1");
    let (st, v) = proxy.api("GET", "/apisix/admin/stream_routes/2", None);
    assert_eq!(st, 200);
    assert_eq!(v["value"]["sni"], "mqtt.example.com");

    // Bad input: 400 with the field named; nothing changes.
    let bad = |body: &str| -> String {
        let (st, v) = http(
            p,
            "PUT",
            "/apisix/admin/stream_routes/3",
            Some(KEY),
            Some(body),
        );
        assert_eq!(st, 400, "{body} -> {st} {v}");
        v["error_msg"].as_str().unwrap().to_owned()
    };
    assert!(bad("{\"upstream\": ").contains("invalid JSON"));
    assert!(bad("[1, 2]").contains("body"));
    assert!(
        bad(r#"{"upstream": {"nodes": [{"host": "127.0.0.1", "port": 99999}]}}"#)
            .contains("upstream.nodes[0].port")
    );
    assert!(bad(r#"{"upstream": {"type": "least_conn", "nodes": []}}"#).contains("upstream.type"));
    assert!(
        bad(r#"{"upstream": {"type": "chash", "key": "uri", "nodes": []}}"#)
            .contains("upstream.key")
    );
    assert!(bad(
        r#"{"plugins": {"mqtt-proxy": {"protocol_level": 6}}, "upstream": {"nodes": []}}"#
    )
    .contains("plugins.mqtt-proxy.protocol_level"));
    assert!(bad(
        r#"{"plugins": {"mqtt-proxy": {"protocol_name": "HTTP"}}, "upstream": {"nodes": []}}"#
    )
    .contains("plugins.mqtt-proxy.protocol_name"));
    assert!(bad(r#"{"upstream": {"nodes": []}, "uri": "/x"}"#).contains("uri"));
    assert!(bad(r#"{"plugins": {"mqtt-proxy": {}}}"#).contains("upstream"));
    assert!(bad(r#"{"id": "4", "upstream": {"nodes": []}}"#).contains("id"));
    let (st, v) = http(
        p,
        "PUT",
        "/apisix/admin/ssls/1",
        Some(KEY),
        Some(r#"{"cert": "x", "key": "y", "snis": ["a"]}"#),
    );
    assert_eq!(st, 400);
    assert!(v["error_msg"].as_str().unwrap().contains("cert"), "{v}");
    assert_eq!(
        proxy.api("GET", "/apisix/admin/stream_routes/3", None).0,
        404
    );

    // Delete.
    let (st, v) = proxy.api("DELETE", "/apisix/admin/stream_routes/2", None);
    assert_eq!(st, 200);
    assert_eq!(v["key"], "/apisix/stream_routes/2");
    assert_eq!(
        proxy.api("DELETE", "/apisix/admin/stream_routes/2", None).0,
        404
    );
    assert_eq!(
        proxy.api("GET", "/apisix/admin/stream_routes", None).1["total"],
        1
    );
    // Garbage on the admin port does not stop it.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap();
        let _ = s.write_all(b"\x00\x01garbage\r\n\r\n");
    }
    assert_eq!(proxy.api("GET", "/apisix/admin/stream_routes", None).0, 200);
    proxy.assert_healthy();
}

#[test]
fn routes_and_certificates_survive_a_restart() {
    let (_d, dir) = scratch();
    let a = Backend::mosquitto(&dir, "A");
    let state = dir.join("proxy-state.json");
    let state_arg = state.display().to_string();
    let mut proxy = Proxy::start(&["--state", &state_arg]);
    proxy.put_route(
        "kept",
        json!({"plugins": {"mqtt-proxy": {"protocol_name": "MQTT"}},
               "upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes(&[&a])}}),
    );
    let kp = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["kept.example".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let (st, v) = proxy.api(
        "PUT",
        "/apisix/admin/ssls/s1",
        Some(&json!({"cert": cert.pem(), "key": kp.serialize_pem(), "snis": ["kept.example"]})),
    );
    assert_eq!(st, 201, "{v}");
    assert!(
        v["value"].get("key").is_none(),
        "the private key must not be sent back: {v}"
    );
    assert_eq!(whoami(proxy.port, V::V5, "persist", None).unwrap(), "A");

    proxy.restart();
    let (st, v) = proxy.api("GET", "/apisix/admin/stream_routes/kept", None);
    assert_eq!(st, 200, "{v}\n{}", proxy.proc.dump());
    assert_eq!(v["value"]["upstream"]["nodes"][0]["port"], a.port());
    assert_eq!(proxy.api("GET", "/apisix/admin/ssls/s1", None).0, 200);
    assert_eq!(whoami(proxy.port, V::V311, "persist", None).unwrap(), "A");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file holds private keys");
    proxy.assert_healthy();
}
