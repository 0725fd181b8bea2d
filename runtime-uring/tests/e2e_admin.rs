//! Issue 20, the operator surface, against the real binary: the admin API (every route:
//! 401 without a key, 403 for a viewer), accounts then `mosquitto_pub -u/-P`, kick,
//! subscribe and publish on a client's behalf, banned clients, Prometheus text parsed by
//! the reference parser (pip prometheus-client), `$SYS` read with `mosquitto_sub`, and
//! webhooks received by local HTTP receivers (one failing at first, one dead).

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/http.rs"]
mod http;

use common::*;
use http::{Api, Receiver};
use runtime_uring::admin::api::ROUTES;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::Command;

const ADMIN: (&str, &str) = ("admin", "s3cret");
const VIEWER: (&str, &str) = ("ro", "look");

fn setup(dir: &std::path::Path, extra: &str) -> (Petrel, Api) {
    std::fs::write(dir.join("keys"), "admin:s3cret\nro:look:viewer\n").unwrap();
    // An existing user, so that the file starts in Mosquitto's format.
    let mut c = Command::new(PETREL);
    c.args(["passwd", "-c", "-b"])
        .arg(dir.join("pw"))
        .args(["carol", "cpw"]);
    run("petrel passwd", c, T).assert_ok("petrel passwd");
    let b = Petrel::start(
        dir,
        &format!(
            "allow_anonymous = false\npassword_file = \"{{dir}}/pw\"\nsys_interval = 1\nthreads = 2\n{extra}\n\
             [admin]\nbind = \"127.0.0.1:{{port2}}\"\napi_key_file = \"{{dir}}/keys\"\n\
             [[listener]]\nbind = \"127.0.0.1:{{port}}\"\n"
        ),
    );
    let api = Api::new(b.ports[1]);
    (b, api)
}

fn path_with_params(p: &str) -> String {
    p.split('/')
        .map(|s| if s.starts_with('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

fn prometheus(api: &Api) -> HashMap<String, f64> {
    let r = api.call("GET", "/metrics", Some(ADMIN), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    let mut c = Command::new("python3");
    c.arg(py_dir().join("prom_parse.py"));
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(r.body.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the text: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.body
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sum(m: &HashMap<String, f64>, name: &str, label: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(label))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn every_route_needs_a_key_and_viewers_only_read() {
    let d = tempdir();
    let (mut b, api) = setup(d.path(), "");
    for (method, pattern, _) in ROUTES {
        let path = path_with_params(pattern);
        let public = matches!(*pattern, "/" | "/api-docs/swagger.json" | "/api/v5/status");
        let body = (*method != "GET").then_some("{}");
        let r = api.call(method, &path, None, body);
        if public {
            assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
            continue;
        }
        assert_eq!(r.status, 401, "{method} {path} without a key: {}", r.body);
        assert_eq!(r.json()["code"], "BAD_API_KEY_OR_SECRET");
        let r = api.call(method, &path, Some(("admin", "wrong")), body);
        assert_eq!(r.status, 401, "{method} {path} with a wrong secret");
        let r = api.call(method, &path, Some(VIEWER), body);
        if *method == "GET" {
            assert!(
                r.status != 401 && r.status != 403,
                "viewer GET {path}: {} {}",
                r.status,
                r.body
            );
        } else {
            assert_eq!(r.status, 403, "viewer {method} {path}: {}", r.body);
            assert_eq!(r.json()["code"], "FORBIDDEN");
        }
    }
    // A write whose body is not declared JSON (a cross-site form) is refused.
    let r = api.call_raw(
        "POST",
        "/api/v5/publish",
        Some(ADMIN),
        "text/plain",
        r#"{"topic":"t"}"#,
    );
    assert_eq!(r.status, 415, "{}", r.body);
    // The OpenAPI document is served and names the routes.
    let doc = api.call("GET", "/api-docs/swagger.json", None, None).json();
    assert!(doc["paths"]["/api/v5/clients/{clientid}"]["delete"].is_object());
    let page = api.call("GET", "/", None, None);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains("name=\"key\"") && page.body.contains("name=\"secret\""));
    b.assert_healthy();
}

#[test]
fn accounts_are_written_and_take_effect_at_once() {
    let d = tempdir();
    let (mut b, api) = setup(d.path(), "");
    let port = b.port();
    let can_pub = |u: &str, p: &str| {
        mosq_pub(
            port,
            &["-u", u, "-P", p, "-t", "acc/t", "-m", "x", "-q", "1"],
        )
        .ok()
    };
    assert!(!can_pub("alice", "apw"), "alice before she exists");
    const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";
    let r = api.call(
        "POST",
        USERS,
        Some(ADMIN),
        Some(r#"{"user_id":"alice","password":"apw"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["user_id"], "alice");
    let r = api.call(
        "POST",
        USERS,
        Some(ADMIN),
        Some(r#"{"user_id":"alice","password":"x"}"#),
    );
    assert_eq!(r.status, 409);
    assert!(can_pub("alice", "apw"), "alice after POST");
    assert!(!can_pub("alice", "nope"));
    // Mosquitto's format, $7$, and the other user kept.
    let text = std::fs::read_to_string(d.path().join("pw")).unwrap();
    assert!(text.lines().any(|l| l.starts_with("alice:$7$")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("carol:$7$")), "{text}");
    let list = api.call("GET", USERS, Some(VIEWER), None).json();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["carol", "alice"]);
    let r = api.call(
        "PUT",
        &format!("{USERS}/alice"),
        Some(ADMIN),
        Some(r#"{"password":"new"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!can_pub("alice", "apw") && can_pub("alice", "new"));
    assert_eq!(
        api.call("GET", &format!("{USERS}/alice"), Some(ADMIN), None)
            .status,
        200
    );
    assert_eq!(
        api.call("DELETE", &format!("{USERS}/alice"), Some(ADMIN), None)
            .status,
        204
    );
    assert!(!can_pub("alice", "new"), "alice after DELETE");
    assert_eq!(
        api.call("GET", &format!("{USERS}/alice"), Some(ADMIN), None)
            .status,
        404
    );
    assert_eq!(
        api.call("DELETE", &format!("{USERS}/alice"), Some(ADMIN), None)
            .status,
        404
    );
    // Gmqtt's accounts API, same file.
    let r = api.call(
        "POST",
        "/v1/accounts/bob",
        Some(ADMIN),
        Some(r#"{"password":"bpw"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(can_pub("bob", "bpw"));
    let all = api.call("GET", "/v1/accounts", Some(ADMIN), None).json();
    assert_eq!(all["total_count"], 2);
    assert!(all["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["password"] == ""));
    assert_eq!(
        api.call("GET", "/v1/accounts/bob", Some(ADMIN), None)
            .json()["account"]["username"],
        "bob"
    );
    assert_eq!(
        api.call("DELETE", "/v1/accounts/bob", Some(ADMIN), None)
            .status,
        200
    );
    assert!(!can_pub("bob", "bpw"), "bob after DELETE");
    assert_eq!(
        api.call("GET", "/v1/accounts/bob", Some(ADMIN), None)
            .status,
        404
    );
    // Bad input is a 400 naming the problem, and the file is unchanged.
    let r = api.call(
        "POST",
        USERS,
        Some(ADMIN),
        Some(r#"{"user_id":"a:b","password":"x"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.call("POST", USERS, Some(ADMIN), Some("not json"));
    assert_eq!(r.status, 400);
    b.assert_healthy();
}

#[test]
fn clients_subscriptions_publish_kick_and_ban() {
    let d = tempdir();
    let (mut b, api) = setup(d.path(), "");
    let port = b.port();
    let s = mosq_sub(
        port,
        &[
            "-i", "sub1", "-u", "carol", "-P", "cpw", "-t", "a/#", "-q", "1", "-v",
        ],
    );
    let clients = api
        .call("GET", "/api/v5/clients", Some(VIEWER), None)
        .json();
    assert_eq!(clients["meta"]["count"], 1, "{clients}");
    let c = &clients["data"][0];
    assert_eq!(c["clientid"], "sub1");
    assert_eq!(c["username"], "carol");
    assert_eq!(c["connected"], true);
    assert_eq!(c["proto_ver"], 4);
    assert_eq!(c["subscriptions_cnt"], 1);
    assert_eq!(c["ip_address"], "127.0.0.1");
    for (q, n) in [
        ("clientid=sub1", 1),
        ("like_clientid=ub", 1),
        ("conn_state=disconnected", 0),
        ("username=carol", 1),
        ("username=dave", 0),
    ] {
        let r = api
            .call("GET", &format!("/api/v5/clients?{q}"), Some(ADMIN), None)
            .json();
        assert_eq!(r["meta"]["count"], n, "{q}: {r}");
    }
    let r = api.call("GET", "/api/v5/clients/nobody", Some(ADMIN), None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "CLIENTID_NOT_FOUND");
    assert_eq!(
        api.call("GET", "/api/v5/clients/sub1", Some(ADMIN), None)
            .json()["clientid"],
        "sub1"
    );
    let subs = api
        .call(
            "GET",
            "/api/v5/clients/sub1/subscriptions",
            Some(ADMIN),
            None,
        )
        .json();
    assert_eq!(
        subs,
        json!([{"clientid":"sub1","topic":"a/#","qos":1,"nl":0,"rap":0,"rh":0,"node":subs[0]["node"]}])
    );

    // Subscribe on its behalf, publish to it from the API (plain and base64).
    let r = api.call(
        "POST",
        "/api/v5/clients/sub1/subscribe",
        Some(ADMIN),
        Some(r#"{"topic":"b/+","qos":1}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["qos"], 1);
    let r = api.call(
        "POST",
        "/api/v5/publish",
        Some(ADMIN),
        Some(r#"{"topic":"b/x","payload":"hello-admin","qos":1}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["id"].as_str().is_some_and(|id| !id.is_empty()));
    let r = api.call(
        "POST",
        "/api/v5/publish",
        Some(ADMIN),
        Some(r#"{"topic":"a/y","payload":"aGVsbG8tYjY0","payload_encoding":"base64","qos":0}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        s.wait_out(T, |l| l == "b/x hello-admin").is_some(),
        "{}",
        s.dump()
    );
    assert!(
        s.wait_out(T, |l| l == "a/y hello-b64").is_some(),
        "{}",
        s.dump()
    );
    let r = api.call(
        "POST",
        "/api/v5/publish",
        Some(ADMIN),
        Some(r#"{"topic":"nobody/here","payload":"x"}"#),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["reason_code"], 16);
    for bad in [
        r#"{"topic":"bad/#","payload":"x"}"#,
        r#"{"payload":"x"}"#,
        r#"{"topic":"t","qos":3}"#,
        r#"{"topic":"t","payload":"%%%","payload_encoding":"base64"}"#,
        "nope",
    ] {
        let r = api.call("POST", "/api/v5/publish", Some(ADMIN), Some(bad));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = api.call(
        "POST",
        "/api/v5/publish/bulk",
        Some(ADMIN),
        Some(r#"[{"topic":"a/1","payload":"bulk1"},{"topic":"a/2","payload":"bulk2","qos":1}]"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert!(
        s.wait_out(T, |l| l == "a/2 bulk2").is_some(),
        "{}",
        s.dump()
    );
    // Listings.
    let all = api
        .call("GET", "/api/v5/subscriptions", Some(ADMIN), None)
        .json();
    assert_eq!(all["meta"]["count"], 2, "{all}");
    let m = api
        .call(
            "GET",
            "/api/v5/subscriptions?match_topic=b/q",
            Some(ADMIN),
            None,
        )
        .json();
    assert_eq!(m["data"][0]["topic"], "b/+", "{m}");
    assert_eq!(m["meta"]["count"], 1);
    let t = api.call("GET", "/api/v5/topics", Some(ADMIN), None).json();
    let topics: HashSet<&str> = t["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, HashSet::from(["a/#", "b/+"]));
    let r = api.call(
        "POST",
        "/api/v5/clients/sub1/unsubscribe",
        Some(ADMIN),
        Some(r#"{"topic":"b/+"}"#),
    );
    assert_eq!(r.status, 204);
    let subs = api
        .call(
            "GET",
            "/api/v5/clients/sub1/subscriptions",
            Some(ADMIN),
            None,
        )
        .json();
    assert_eq!(subs.as_array().unwrap().len(), 1);
    let r = api.call(
        "POST",
        "/api/v5/clients/nobody/subscribe",
        Some(ADMIN),
        Some(r#"{"topic":"x","qos":0}"#),
    );
    assert_eq!(r.status, 404);
    // Stats, metrics, nodes, status.
    let st = api
        .call("GET", "/api/v5/stats?aggregate=true", Some(ADMIN), None)
        .json();
    assert_eq!(st["live_connections.count"], 1, "{st}");
    assert_eq!(st["subscriptions.count"], 1, "{st}");
    let per_node = api.call("GET", "/api/v5/stats", Some(ADMIN), None).json();
    assert!(per_node[0]["node"]
        .as_str()
        .is_some_and(|n| n.starts_with("petrel@")));
    let me = api
        .call("GET", "/api/v5/metrics?aggregate=true", Some(ADMIN), None)
        .json();
    assert!(me["messages.sent"].as_u64().unwrap() >= 4, "{me}");
    assert!(
        me["packets.subscribe.received"].as_u64().unwrap() >= 1,
        "{me}"
    );
    let nodes = api.call("GET", "/api/v5/nodes", Some(ADMIN), None).json();
    assert_eq!(nodes[0]["node_status"], "running");
    let status = api.call("GET", "/api/v5/status", Some(VIEWER), None);
    assert!(status.body.contains("is running"), "{}", status.body);

    // Kick: MQTT 5 sees DISCONNECT 0x98 and the session is gone.
    let s5 = mosq_sub(
        port,
        &[
            "-i", "kick5", "-V", "5", "-u", "carol", "-P", "cpw", "-t", "k/#",
        ],
    );
    assert_eq!(
        api.call("DELETE", "/api/v5/clients/kick5", Some(ADMIN), None)
            .status,
        204
    );
    assert!(
        s5.wait_out(T, |l| l.contains("DISCONNECT (152)")).is_some(),
        "{}",
        s5.dump()
    );
    assert_eq!(
        api.call("GET", "/api/v5/clients/kick5", Some(ADMIN), None)
            .status,
        404
    );
    assert_eq!(
        api.call("DELETE", "/api/v5/clients/kick5", Some(ADMIN), None)
            .status,
        404
    );
    let r = api.call(
        "POST",
        "/api/v5/clients/kickout/bulk",
        Some(ADMIN),
        Some(r#"["nobody"]"#),
    );
    assert_eq!(r.status, 204);

    // Ban: the connected client is disconnected and refused from then on.
    let r = api.call(
        "POST",
        "/api/v5/banned",
        Some(ADMIN),
        Some(r#"{"as":"clientid","who":"sub1","reason":"test"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let list = api.call("GET", "/api/v5/banned", Some(ADMIN), None).json();
    assert_eq!(list["data"][0]["who"], "sub1", "{list}");
    let refused = mosq_pub(
        port,
        &[
            "-i", "sub1", "-u", "carol", "-P", "cpw", "-t", "x", "-m", "x", "-V", "5",
        ],
    );
    assert!(!refused.ok(), "a banned client id connected");
    let other = mosq_pub(
        port,
        &[
            "-i", "other", "-u", "carol", "-P", "cpw", "-t", "x", "-m", "x",
        ],
    );
    assert!(other.ok(), "an unbanned client was refused");
    assert_eq!(
        api.call("DELETE", "/api/v5/banned/clientid/sub1", Some(ADMIN), None)
            .status,
        204
    );
    assert_eq!(
        api.call("DELETE", "/api/v5/banned/clientid/sub1", Some(ADMIN), None)
            .status,
        404
    );
    assert!(mosq_pub(
        port,
        &["-i", "sub1", "-u", "carol", "-P", "cpw", "-t", "x", "-m", "x"]
    )
    .ok());
    let r = api.call(
        "POST",
        "/api/v5/banned",
        Some(ADMIN),
        Some(r#"{"as":"nothing","who":"x"}"#),
    );
    assert_eq!(r.status, 400);
    drop(s);
    b.assert_healthy();
}

#[test]
fn prometheus_and_sys_count_traffic() {
    let d = tempdir();
    let (mut b, api) = setup(d.path(), "");
    let port = b.port();
    let before = prometheus(&api);
    assert!(before.contains_key("petrel_connections{}"), "{before:?}");
    let s = mosq_sub(port, &["-u", "carol", "-P", "cpw", "-t", "m/#", "-q", "1"]);
    for i in 0..5 {
        mosq_pub(
            port,
            &[
                "-u",
                "carol",
                "-P",
                "cpw",
                "-t",
                "m/x",
                "-m",
                &format!("{i}"),
                "-q",
                "1",
            ],
        )
        .assert_ok("pub");
    }
    payloads(&s, 5, T);
    // The publishers' DISCONNECTs may still be on their way.
    let end = std::time::Instant::now() + T;
    let after = loop {
        let m = prometheus(&api);
        let settled = m.get("petrel_connections{}") == Some(&1.0)
            && sum(&m, "petrel_client_disconnected_total", "reason=normal") >= 5.0;
        if settled || std::time::Instant::now() > end {
            break m;
        }
        std::thread::sleep(secs(0.2));
    };
    let rx = |m: &HashMap<String, f64>| sum(m, "petrel_messages_received_total", "qos=1");
    assert_eq!(rx(&after) - rx(&before), 5.0, "{after:?}");
    let tx = |m: &HashMap<String, f64>| sum(m, "petrel_messages_delivered_total", "qos=1");
    assert!(tx(&after) - tx(&before) >= 5.0);
    assert_eq!(after["petrel_connections{}"], 1.0);
    assert!(sum(&after, "petrel_packets_received_total", "type=connect") >= 6.0);
    assert!(sum(&after, "petrel_client_disconnected_total", "reason=normal") >= 5.0);
    assert!(
        after.keys().any(|k| k.contains("shard=1")),
        "no per-shard series"
    );
    assert!(
        sum(&after, "petrel_bytes_received_total", "")
            > sum(&before, "petrel_bytes_received_total", "")
    );
    // Same text at EMQX's path; without a key, 401.
    let r = api.call("GET", "/api/v5/prometheus/stats", Some(ADMIN), None);
    assert!(r
        .body
        .contains("# TYPE petrel_messages_received_total counter"));
    assert_eq!(api.call("GET", "/metrics", None, None).status, 401);

    // $SYS, Mosquitto's names, retained, refreshed every sys_interval.
    let sub_sys = |topic: &str, args: &[&str], timeout| {
        let mut c = Command::new("mosquitto_sub");
        c.args([
            "-p",
            &port.to_string(),
            "-u",
            "carol",
            "-P",
            "cpw",
            "-t",
            topic,
        ])
        .args(args);
        run("mosquitto_sub", c, timeout)
    };
    let sys = |topic: &str| -> String {
        let r = sub_sys(topic, &["-C", "1", "-W", "5"], T);
        r.assert_ok(topic);
        r.stdout.trim().to_string()
    };
    // The retained value may be from the round before the traffic: read until a fresh one.
    let sys_until = |topic: &str, ok: &dyn Fn(&str) -> bool| -> String {
        let end = std::time::Instant::now() + secs(8.0);
        loop {
            let v = sys(topic);
            if ok(&v) || std::time::Instant::now() > end {
                return v;
            }
            std::thread::sleep(secs(0.3));
        }
    };
    assert!(sys("$SYS/broker/version").starts_with("petrel version"));
    assert!(sys("$SYS/broker/uptime").ends_with(" seconds"));
    let n = sys_until("$SYS/broker/publish/messages/received", &|v| {
        v.parse::<u64>().is_ok_and(|n| n >= 5)
    });
    assert_eq!(n, "5", "publish/messages/received");
    let connected = sys_until("$SYS/broker/clients/connected", &|v| v != "0");
    assert!(
        ["1", "2"].contains(&connected.as_str()),
        "clients/connected {connected}"
    );
    // The reader's own subscription counts while it is connected.
    let subs = sys_until("$SYS/broker/subscriptions/count", &|v| v == "1" || v == "2");
    assert!(subs == "1" || subs == "2", "subscriptions/count {subs}");
    assert!(
        sys("$SYS/broker/retained messages/count")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let load: f64 = sys("$SYS/broker/load/publish/received/1min")
        .parse()
        .unwrap();
    assert!(load >= 0.0);
    // A wildcard subscription sees the whole tree.
    let all = sub_sys("$SYS/#", &["-v", "-W", "3"], secs(8.0));
    for name in [
        "clients/total",
        "bytes/sent",
        "messages/received",
        "heap/current",
        "load/bytes/received/15min",
    ] {
        assert!(
            all.stdout.contains(&format!("$SYS/broker/{name} ")),
            "{name} missing:\n{}",
            all.stdout
        );
    }
    drop(s);
    b.assert_healthy();
}

#[test]
fn sys_interval_zero_publishes_nothing() {
    let d = tempdir();
    let mut b = Petrel::start(
        d.path(),
        "allow_anonymous = true\nsys_interval = 0\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n",
    );
    let mut c = Command::new("mosquitto_sub");
    c.args(["-p", &b.port().to_string(), "-t", "$SYS/#", "-v", "-W", "2"]);
    let r = run("mosquitto_sub", c, secs(6.0));
    assert!(r.stdout.trim().is_empty(), "{}", r.stdout);
    b.assert_healthy();
}

#[test]
fn webhooks_arrive_at_least_once_despite_failures_and_a_dead_endpoint() {
    let d = tempdir();
    let good = Receiver::start(0);
    let flaky = Receiver::start(3);
    // Nothing listens there.
    let dead = free_port();
    let events = r#"["client.connected", "client.disconnected", "session.subscribed", "session.unsubscribed", "message.publish", "message.dropped"]"#;
    let extra = format!(
        "[[webhook]]\nurl = \"http://127.0.0.1:{}/events\"\nevents = {events}\ntopics = [\"t/#\"]\n\
         [[webhook]]\nurl = \"http://127.0.0.1:{}/events\"\nevents = {events}\ntopics = [\"t/#\"]\n\
         [[webhook]]\nurl = \"http://127.0.0.1:{dead}/events\"\nevents = {events}\nqueue_size = 5\n",
        good.port, flaky.port
    );
    let (mut b, api) = setup(d.path(), &extra);
    let port = b.port();
    // SMQ's agent mode: CONNECT user properties appear in client.connected.
    let s = mosq_sub(
        port,
        &[
            "-i",
            "agent1",
            "-V",
            "5",
            "-u",
            "carol",
            "-P",
            "cpw",
            "-t",
            "t/#",
            "-q",
            "1",
            "-D",
            "connect",
            "user-property",
            "host_name",
            "gw-7",
            "-D",
            "connect",
            "user-property",
            "platform",
            "linux",
        ],
    );
    for i in 0..3 {
        mosq_pub(
            port,
            &[
                "-i",
                &format!("pub{i}"),
                "-u",
                "carol",
                "-P",
                "cpw",
                "-t",
                "t/x",
                "-m",
                &format!("m{i}"),
                "-q",
                "1",
            ],
        )
        .assert_ok("pub");
    }
    // Not in the endpoints' topics.
    mosq_pub(
        port,
        &[
            "-i", "pubz", "-u", "carol", "-P", "cpw", "-t", "other/x", "-m", "z",
        ],
    )
    .assert_ok("pub");
    payloads(&s, 3, T);
    drop(s);
    let enough = |h: &[http::Hit]| {
        h.iter().filter(|x| x.event == "message.publish").count() >= 3
            && h.iter()
                .any(|x| x.event == "client.disconnected" && x.body["clientid"] == "agent1")
    };
    let g = good.wait(secs(10.0), enough);
    assert!(enough(&g), "good endpoint got {g:#?}");
    // The flaky one refused the first three requests; back-off retries them (0.5 s, 1 s, 2 s).
    let f = flaky.wait(secs(20.0), |h| h.len() >= g.len());
    assert!(
        flaky
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.status == 500)
            .count()
            == 3,
        "the flaky endpoint was not retried"
    );
    // Ids: unique per event, the same event has the same id at both endpoints, and the
    // flaky endpoint accepted each event once (at least once, no duplicate after a 2xx).
    let ids = |h: &[http::Hit]| h.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
    let gi = ids(&g);
    assert_eq!(
        gi.iter().collect::<HashSet<_>>().len(),
        gi.len(),
        "duplicate ids: {gi:?}"
    );
    let fi = ids(&f);
    assert_eq!(
        fi.iter().collect::<HashSet<_>>().len(),
        fi.len(),
        "duplicates at the flaky endpoint"
    );
    let gs: HashSet<_> = gi.iter().collect();
    assert!(
        fi.iter().all(|i| gs.contains(i)),
        "ids differ between endpoints"
    );
    assert!(
        gi.iter().all(|i| fi.contains(i)),
        "the flaky endpoint lost events: {gi:?} vs {fi:?}"
    );
    // The bodies: EMQX v5's event maps.
    let connected = g
        .iter()
        .find(|x| x.event == "client.connected" && x.body["clientid"] == "agent1")
        .unwrap();
    let c = &connected.body;
    assert_eq!(c["event"], "client.connected");
    assert_eq!(c["username"], "carol");
    assert_eq!(c["proto_ver"], 5);
    assert_eq!(c["clean_start"], true);
    assert!(c["peername"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(c["connected_at"].as_u64().is_some() && c["timestamp"].as_u64().is_some());
    assert!(c["node"].as_str().unwrap().starts_with("petrel@"));
    assert_eq!(
        c["conn_props"]["user_properties"],
        json!({"host_name": "gw-7", "platform": "linux"})
    );
    let sub = g.iter().find(|x| x.event == "session.subscribed").unwrap();
    assert_eq!(
        (&sub.body["topic"], &sub.body["qos"]),
        (&json!("t/#"), &json!(1))
    );
    let pubs: Vec<&Value> = g
        .iter()
        .filter(|x| x.event == "message.publish")
        .map(|x| &x.body)
        .collect();
    assert_eq!(pubs.len(), 3, "topics filter: {pubs:?}");
    assert!(pubs.iter().all(|p| p["topic"] == "t/x" && p["qos"] == 1));
    let payloads: HashSet<&str> = pubs
        .iter()
        .map(|p| p["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, HashSet::from(["m0", "m1", "m2"]));
    let disc = g
        .iter()
        .find(|x| x.event == "client.disconnected" && x.body["clientid"] == "agent1")
        .unwrap();
    assert_eq!(disc.body["reason"], "tcp_closed", "{}", disc.body);
    // The dead endpoint: the broker kept serving, its queue dropped the oldest events.
    let m = prometheus(&api);
    let label = format!("url=http://127.0.0.1:{dead}/events");
    assert!(
        sum(&m, "petrel_webhook_dropped_total", &label) > 0.0,
        "{m:?}"
    );
    assert!(sum(&m, "petrel_webhook_failures_total", &label) > 0.0);
    assert!(sum(&m, "petrel_webhook_queue_depth", &label) <= 5.0);
    assert_eq!(
        sum(
            &m,
            "petrel_webhook_dropped_total",
            &format!("url=http://127.0.0.1:{}/events", good.port)
        ),
        0.0
    );
    b.assert_healthy();
}

#[test]
fn bad_admin_configuration_is_refused_clearly() {
    let d = tempdir();
    std::fs::write(d.path().join("keys"), "").unwrap();
    for (toml, needle) in [
        (
            "[admin]\nbind = \"127.0.0.1:1\"\n",
            "needs \"bind\" and \"api_key_file\"",
        ),
        (
            "[admin]\nbind = \"127.0.0.1:1\"\napi_key_file = \"{dir}/keys\"\n",
            "no API key",
        ),
        (
            "[[webhook]]\nurl = \"ftp://x/\"\nevents = [\"client.connected\"]\n",
            "http:// URL",
        ),
        (
            "[[webhook]]\nurl = \"http://127.0.0.1:1/\"\nevents = [\"client.sneezed\"]\n",
            "unknown event",
        ),
        ("sys_interval = -1\n", "out of range"),
    ] {
        let cfg = d.path().join("bad.toml");
        std::fs::write(
            &cfg,
            format!(
                "allow_anonymous = true\n{}",
                toml.replace("{dir}", &d.path().display().to_string())
            ),
        )
        .unwrap();
        let mut c = Command::new(PETREL);
        c.args(["broker", "-c"]).arg(&cfg);
        let r = run("petrel broker", c, T);
        assert!(!r.ok(), "{toml} was accepted");
        assert!(r.stderr.contains(needle), "{toml}: {}", r.stderr);
    }
}

/// The dashboard in Debian's headless Chromium (playwright-core from npm, pinned in
/// tests/js): log in with an API key, see a client `mosquitto_sub` connected, kick it,
/// save a screenshot. No browser is a failure, not a skip.
#[test]
fn dashboard_in_headless_chromium_logs_in_lists_and_kicks() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/setup.sh (npm ci in runtime-uring/tests/js)"
    );
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|c| {
            let out = Command::new("which").arg(c).output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .expect("no chromium: run scripts/setup.sh (apt chromium)");
    let d = tempdir();
    let (mut b, api) = setup(d.path(), "");
    // MQTT 5: a kicked mosquitto_sub gets DISCONNECT 0x98 and does not reconnect.
    let s = mosq_sub(
        b.port(),
        &[
            "-i",
            "dash-client",
            "-V",
            "5",
            "-u",
            "carol",
            "-P",
            "cpw",
            "-t",
            "d/#",
        ],
    );
    // Some traffic for the chart.
    for i in 0..3 {
        mosq_pub(
            b.port(),
            &[
                "-u",
                "carol",
                "-P",
                "cpw",
                "-t",
                "d/x",
                "-m",
                &format!("{i}"),
            ],
        )
        .assert_ok("pub");
    }
    // Kept after the run for a look (target/tmp/dashboard.png).
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut c = Command::new("node");
    c.current_dir(&js)
        .arg("dashboard.mjs")
        .env("ADMIN_URL", &api.base)
        .env("API_KEY", ADMIN.0)
        .env("API_SECRET", ADMIN.1)
        .env("CLIENT_ID", "dash-client")
        .env("SCREENSHOT", &shot)
        .env("CHROMIUM", &chromium);
    // Its own process group: a timeout kills Chromium too.
    let mut p = Proc::spawn_group("node dashboard.mjs", c);
    let Some(status) = p.wait_exit(secs(90.0)) else {
        p.kill();
        panic!("the dashboard test did not finish\n{}", p.dump());
    };
    let r = Run {
        status,
        stdout: p.stdout().join("\n"),
        stderr: p.stderr().join("\n"),
    };
    assert!(r.ok(), "dashboard test failed:\n{}\n{}", r.stdout, r.stderr);
    for step in [
        "LOGIN_REFUSED",
        "LOGGED_IN",
        "CLIENT_SEEN",
        "STATS_SHOWN",
        "KICKED",
        "DONE",
    ] {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(step)),
            "{step} missing:\n{}",
            r.stdout
        );
    }
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
    // The kick went through the API: the client saw 0x98 and is gone.
    assert!(
        s.wait_out(T, |l| l.contains("DISCONNECT (152)")).is_some(),
        "{}",
        s.dump()
    );
    assert_eq!(
        api.call("GET", "/api/v5/clients/dash-client", Some(ADMIN), None)
            .status,
        404
    );
    b.assert_healthy();
}
