//! Issue 21, the cluster, against real processes: etcd and `nats-server -js` started here
//! (temporary directories, free ports), three Petrel nodes, and paho-mqtt / mosquitto
//! clients. Cross-node delivery at QoS 0/1/2 in 3.1.1 and 5.0 (each message exactly once,
//! in order), retained messages across nodes, takeover across nodes, the forwarding cost
//! as NATS's own monitoring counts it, and a node cut off from etcd (fenced before its
//! lease ends: no client identifier is ever served by two nodes).

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// etcd and NATS for one test.
struct Services {
    _etcd: Proc,
    _nats: Proc,
    etcd_port: u16,
    nats_port: u16,
    monitor_port: u16,
}

impl Services {
    fn start(dir: &Path) -> Services {
        let (etcd_port, peer_port) = (free_port(), free_port());
        let mut etcd = Command::new("etcd");
        etcd.arg("--data-dir").arg(dir.join("etcd")).args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{etcd_port}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer_port}"),
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer_port}"),
            "--log-level",
            "error",
        ]);
        let etcd = Proc::spawn("etcd", etcd);
        let (nats_port, monitor_port) = (free_port(), free_port());
        let mut nats = Command::new("nats-server");
        nats.args(["-js", "-a", "127.0.0.1"])
            .args([
                "-p",
                &nats_port.to_string(),
                "-m",
                &monitor_port.to_string(),
            ])
            .arg("-sd")
            .arg(dir.join("jetstream"));
        let nats = Proc::spawn("nats-server", nats);
        for (what, port) in [("etcd", etcd_port), ("nats-server", nats_port)] {
            assert!(wait_port(port, T), "{what} did not start");
        }
        Services {
            _etcd: etcd,
            _nats: nats,
            etcd_port,
            nats_port,
            monitor_port,
        }
    }

    /// A node's configuration; `etcd_port` lets a test put a relay in between.
    fn node_toml(&self, id: &str, etcd_port: u16, threads: usize) -> String {
        format!(
            "threads = {threads}\nallow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:{{port}}\"\n\
             [cluster]\nnode_id = \"{id}\"\netcd = [\"http://127.0.0.1:{etcd_port}\"]\n\
             nats = [\"nats://127.0.0.1:{}\"]\nlease_ttl = 3\n",
            self.nats_port
        )
    }

    fn node(&self, dir: &Path, id: &str, threads: usize) -> Petrel {
        Petrel::start(dir, &self.node_toml(id, self.etcd_port, threads))
    }

    /// NATS's own count of messages it received (`/varz` `in_msgs`).
    fn nats_in_msgs(&self) -> u64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.monitor_port)).unwrap();
        s.write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        let json = body.split_once("\r\n\r\n").unwrap().1;
        let v: Value = serde_json::from_str(json).unwrap();
        v["in_msgs"].as_u64().unwrap()
    }
}

fn fanout(pub_port: u16, sub_ports: &[u16], args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(py_dir().join("cluster_fanout.py"))
        .args(["--pub-port", &pub_port.to_string()])
        .arg("--sub-ports")
        .arg(
            sub_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .args(args);
    let r = run("cluster_fanout.py", cmd, Duration::from_secs(90));
    assert!(
        r.ok(),
        "cluster_fanout.py {args:?}:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    serde_json::from_str(r.stdout.trim()).unwrap()
}

/// Every subscriber got every message exactly once and in order; every QoS 1/2 message
/// was acknowledged.
fn assert_exact(r: &Value, count: u64, what: &str) {
    assert_eq!(r["acknowledged"].as_u64(), Some(count), "{what}: {r}");
    assert_eq!(r["min"].as_u64(), Some(count), "{what}: {r}");
    assert_eq!(r["max"].as_u64(), Some(count), "{what}: {r}");
    assert_eq!(r["duplicates"].as_u64(), Some(0), "{what}: {r}");
    assert_eq!(r["in_order"].as_bool(), Some(true), "{what}: {r}");
}

#[test]
fn cross_node_delivery_at_every_qos_in_both_versions() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    // Two shards on the publishing node: a message from another node enters at one shard
    // and reaches subscribers on the other too.
    let n1 = svc.node(dir.path(), "n1", 2);
    let n2 = svc.node(dir.path(), "n2", 1);
    let n3 = svc.node(dir.path(), "n3", 2);
    for qos in ["0", "1", "2"] {
        for v5 in [false, true] {
            let prefix = format!("x{qos}{}", if v5 { "v5" } else { "v3" });
            let mut args = vec!["--qos", qos, "--count", "300", "--subs", "2"];
            args.extend(["--prefix", prefix.as_str()]);
            if v5 {
                args.push("--v5");
            }
            // Subscribers on the publishing node too: local and remote delivery at once.
            let r = fanout(n1.port(), &[n1.port(), n2.port(), n3.port()], &args);
            assert_eq!(r["subscribers"].as_u64(), Some(6), "{r}");
            assert_exact(&r, 300, &prefix);
        }
    }
    // A node with no subscriber gets nothing: a 3.1.1 subscriber on n3 to another topic
    // sees only its own.
    let s = mosq_sub(n3.port(), &["-t", "only/mine", "-q", "1"]);
    mosq_pub(n1.port(), &["-t", "not/yours", "-m", "no", "-q", "1"]).assert_ok("publish");
    mosq_pub(n2.port(), &["-t", "only/mine", "-m", "yes", "-q", "1"]).assert_ok("publish");
    assert_eq!(payloads(&s, 1, T), vec!["yes".to_string()]);
}

#[test]
fn a_shared_group_spans_nodes_each_message_exactly_once_in_total() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let n1 = svc.node(dir.path(), "n1", 2);
    let n2 = svc.node(dir.path(), "n2", 1);
    let n3 = svc.node(dir.path(), "n3", 2);
    let ports = [n1.port(), n2.port(), n3.port()];
    for (qos, v5, publisher) in [
        ("0", false, 0),
        ("1", true, 1),
        ("2", false, 2),
        ("1", false, 0),
    ] {
        let prefix = format!("sh{qos}{publisher}{v5}");
        let mut args = vec![
            "--qos", qos, "--count", "600", "--subs", "2", "--share", "g",
        ];
        args.extend(["--prefix", prefix.as_str()]);
        if v5 {
            args.push("--v5");
        }
        let r = fanout(ports[publisher], &ports, &args);
        assert_eq!(r["acknowledged"].as_u64(), Some(600), "{r}");
        // Exactly once in total (QoS 0 on loopback loses nothing either).
        assert_eq!(r["distinct_total"].as_u64(), Some(600), "{prefix}: {r}");
        assert_eq!(r["received"].as_u64(), Some(600), "{prefix}: {r}");
        // Members on every node took part.
        assert_eq!(r["members_used"].as_u64(), Some(6), "{prefix}: {r}");
    }
}

#[test]
fn retained_messages_are_seen_from_every_node() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let n1 = svc.node(dir.path(), "n1", 1);
    let n2 = svc.node(dir.path(), "n2", 2);
    let n3 = svc.node(dir.path(), "n3", 1);
    mosq_pub(
        n1.port(),
        &["-t", "ret/a", "-m", "from-n1", "-r", "-q", "1"],
    )
    .assert_ok("retain");
    let read = |port: u16, topic: &str| -> Vec<String> {
        let mut c = Command::new("mosquitto_sub");
        c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
            .args(["-W", "1", "-v"]);
        let r = run("mosquitto_sub", c, T);
        r.stdout.lines().map(str::to_owned).collect()
    };
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen = [n2.port(), n3.port()]
            .iter()
            .flat_map(|&p| read(p, "ret/#"))
            .collect();
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, vec!["ret/a from-n1", "ret/a from-n1"]);
    // A node that joins later has them from its first client on (JetStream's bucket).
    let n4 = svc.node(dir.path(), "n4", 1);
    assert_eq!(read(n4.port(), "ret/#"), vec!["ret/a from-n1"]);
    // Replaced on n2, cleared on n3: every node follows.
    mosq_pub(
        n2.port(),
        &["-t", "ret/a", "-m", "from-n2", "-r", "-q", "1"],
    )
    .assert_ok("retain");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(n1.port(), "ret/#"), vec!["ret/a from-n2"]);
    assert_eq!(read(n3.port(), "ret/#"), vec!["ret/a from-n2"]);
    mosq_pub(n3.port(), &["-t", "ret/a", "-n", "-r", "-q", "1"]).assert_ok("clear");
    std::thread::sleep(Duration::from_millis(300));
    for p in [n1.port(), n2.port(), n3.port(), n4.port()] {
        assert!(
            read(p, "ret/#").is_empty(),
            "a cleared retained message on {p}"
        );
    }
    // And a node that joins after the clear has none.
    let n5 = svc.node(dir.path(), "n5", 1);
    assert!(read(n5.port(), "ret/#").is_empty());
}

#[test]
fn a_client_connecting_to_another_node_takes_its_session_over() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let n1 = svc.node(dir.path(), "n1", 1);
    let n2 = svc.node(dir.path(), "n2", 1);
    let old = mosq_sub(n1.port(), &["-t", "t/1", "-i", "roamer", "-V", "mqttv5"]);
    let new = mosq_sub(n2.port(), &["-t", "t/1", "-i", "roamer", "-V", "mqttv5"]);
    // MQTT 5: DISCONNECT 0x8E Session taken over on the old node.
    assert!(
        old.wait_out(T, |l| l.contains("Received DISCONNECT (142)"))
            .is_some(),
        "{}",
        old.dump()
    );
    // The new connection is the only one: it gets what is published anywhere.
    std::thread::sleep(Duration::from_millis(300));
    mosq_pub(n1.port(), &["-t", "t/1", "-m", "here", "-q", "1"]).assert_ok("publish");
    assert_eq!(payloads(&new, 1, T), vec!["here".to_string()]);
    // Back to n1: n2's connection is taken over in turn (3.1.1 this time: closed).
    let back = mosq_sub(n1.port(), &["-t", "t/1", "-i", "roamer"]);
    assert!(
        new.wait_out(T, |l| l.contains("DISCONNECT (142)"))
            .is_some(),
        "{}",
        new.dump()
    );
    drop(back);
}

fn session(mode: &str, pub_port: u16, sub_port: u16, resume_port: u16, args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(py_dir().join("cluster_session.py"))
        .arg(mode)
        .args(["--pub-port", &pub_port.to_string()])
        .args(["--sub-port", &sub_port.to_string()])
        .args(["--resume-port", &resume_port.to_string()])
        .args(args);
    let r = run("cluster_session.py", cmd, Duration::from_secs(90));
    assert!(
        r.ok(),
        "cluster_session.py {mode} {args:?}:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    serde_json::from_str(r.stdout.trim()).unwrap()
}

/// Every acknowledged message arrived, and the session was found where the client came
/// back.
fn assert_resumed(r: &Value, what: &str) {
    assert_eq!(r["session_present"].as_bool(), Some(true), "{what}: {r}");
    assert_eq!(r["missing_count"].as_u64(), Some(0), "{what}: {r}");
    assert!(r["acknowledged"].as_u64().unwrap() > 0, "{what}: {r}");
}

#[test]
fn a_persistent_session_goes_on_at_another_node() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let n1 = svc.node(dir.path(), "n1", 2);
    let n2 = svc.node(dir.path(), "n2", 1);
    let n3 = svc.node(dir.path(), "n3", 1);
    let (p1, p2, p3) = (n1.port(), n2.port(), n3.port());
    // Offline on n1, messages published on n2, back on n3: all there (MQTT 5, QoS 1).
    let r = session(
        "offline",
        p2,
        p1,
        p3,
        &["--v5", "--prefix", "o5", "--count", "300"],
    );
    assert_resumed(&r, "offline, v5, QoS 1");
    assert_eq!(r["acknowledged"].as_u64(), Some(300), "{r}");
    assert_eq!(r["first_present"].as_bool(), Some(false), "{r}");
    // The same in 3.1.1 at QoS 2: exactly once.
    let r = session(
        "offline",
        p2,
        p1,
        p3,
        &["--qos", "2", "--prefix", "o3", "--count", "200"],
    );
    assert_resumed(&r, "offline, 3.1.1, QoS 2");
    assert_eq!(r["duplicates"].as_u64(), Some(0), "{r}");
    // Taken over while connected: the session goes along (session present).
    let r = session(
        "offline",
        p1,
        p3,
        p2,
        &["--v5", "--live", "--prefix", "l5", "--count", "200"],
    );
    assert_resumed(&r, "live takeover, v5");
    // The session that moved to n3 first is back at n1 with nothing pending.
    let r = session(
        "offline",
        p2,
        p3,
        p1,
        &["--v5", "--prefix", "o5", "--count", "50"],
    );
    assert_eq!(r["first_present"].as_bool(), Some(true), "{r}");
    assert_resumed(&r, "offline again, v5");
}

#[test]
fn kill_9_of_the_node_of_a_persistent_subscriber_loses_nothing_acknowledged() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let n1 = svc.node(dir.path(), "n1", 1);
    let n2 = svc.node(dir.path(), "n2", 2);
    let n3 = svc.node(dir.path(), "n3", 1);
    let pid = n1.proc.pid().to_string();
    let r = session(
        "kill",
        n2.port(),
        n1.port(),
        n3.port(),
        &[
            "--v5",
            "--count",
            "1500",
            "--kill-after",
            "400",
            "--kill-pid",
            &pid,
        ],
    );
    assert_resumed(&r, "kill -9, v5, QoS 1");
    assert_eq!(r["acknowledged"].as_u64(), Some(1500), "{r}");
    drop(n1);
}

#[test]
fn a_session_moving_between_live_nodes_under_load_loses_nothing_acknowledged() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let n1 = svc.node(dir.path(), "n1", 1);
    let n2 = svc.node(dir.path(), "n2", 1);
    let n3 = svc.node(dir.path(), "n3", 2);
    // Published on n3 without waiting for acknowledgements; the subscriber moves from n1
    // to n2 while they keep coming.
    let r = session(
        "move",
        n3.port(),
        n1.port(),
        n2.port(),
        &[
            "--v5",
            "--count",
            "5000",
            "--kill-after",
            "1500",
            "--gap",
            "0.0002",
        ],
    );
    eprintln!("{r}");
    for (n, p) in [("n1", &n1), ("n2", &n2), ("n3", &n3)] {
        for l in p.proc.stderr().iter().chain(p.proc.stdout().iter()) {
            if l.contains("cluster") {
                eprintln!("{n}: {l}");
            }
        }
    }
    assert_resumed(&r, "moved under load, v5, QoS 1");
    assert_eq!(r["acknowledged"].as_u64(), Some(5000), "{r}");
    // Once the new node has taken what the shadow queued (8 s), the session's shared copy
    // is its own again: the next move brings nothing old along.
    std::thread::sleep(Duration::from_secs(9));
    let r = session(
        "offline",
        n3.port(),
        n2.port(),
        n1.port(),
        &["--v5", "--count", "100"],
    );
    assert_resumed(&r, "moved again, v5, QoS 1");
    assert_eq!(r["received"].as_u64(), Some(100), "nothing old: {r}");
}

/// The keys under `prefix` in etcd (its JSON gateway, `/v3/kv/range`).
fn etcd_keys(port: u16, prefix: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let body = serde_json::json!({
        "key": b64.encode(prefix),
        "range_end": b64.encode(&end),
        "keys_only": true,
    })
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v3/kv/range HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let json = reply.split_once("\r\n\r\n").unwrap().1;
    let v: Value = serde_json::from_str(json).unwrap();
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    kvs.iter()
        .map(|kv| String::from_utf8(b64.decode(kv["key"].as_str().unwrap()).unwrap()).unwrap())
        .collect()
}

#[test]
fn a_dead_nodes_sessions_get_what_was_published_until_their_clients_return() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let mut n1 = svc.node(dir.path(), "n1", 1);
    let n2 = svc.node(dir.path(), "n2", 1);
    let p2 = n2.port();
    let sub_args = ["-v", "-c", "-i", "held-sub", "-q", "1", "-t", "held/#"];
    // A persistent subscriber of n1 goes offline; its filter is held for n1's life.
    let mut s = mosq_sub(n1.port(), &sub_args);
    s.kill();
    let life = etcd_keys(svc.etcd_port, "petrel/held/n1/");
    assert_eq!(life.len(), 1, "{life:?}");
    // n1 dies; long after its lease ended (more than any grace), messages are published
    // on n2 and acknowledged; then n1 starts again (a new life), and more are published.
    n1.kill9_restart_after(|| {
        std::thread::sleep(Duration::from_secs(8));
        publish_lines(p2, "held/a", 100, "1");
    });
    publish_lines(p2, "held/b", 100, "1");
    // The client comes back (to n1's new life): every message, once each, in order.
    let s = mosq_sub(n1.port(), &sub_args);
    assert_all_received(std::slice::from_ref(&s), "held/a", 100);
    assert_all_received(std::slice::from_ref(&s), "held/b", 100);
    // The old life's held route goes once its session was taken over (after following
    // what was kept for it, 10 s); the new life holds the filter.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = etcd_keys(svc.etcd_port, "petrel/held/n1/");
        if now.len() == 1 && now != life {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "held routes: {now:?} (old {life:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Published now: straight to the session, not kept.
    publish_lines(p2, "held/c", 50, "1");
    assert_all_received(std::slice::from_ref(&s), "held/c", 50);
}

/// `subs` mosquitto_sub on each port (C clients: 100,000 deliveries are cheap to count),
/// subscribed to `<prefix>/#` at `qos`.
fn subscribers(ports: &[u16], subs: usize, prefix: &str, qos: &str) -> Vec<Proc> {
    let filter = format!("{prefix}/#");
    ports
        .iter()
        .flat_map(|&p| (0..subs).map(move |_| p))
        .map(|p| mosq_sub(p, &["-t", &filter, "-q", qos, "-v"]))
        .collect()
}

/// Publishes probes on `port` until every subscriber got one (the routes reached the
/// publishing node); returns how many were sent.
fn probe(port: u16, subs: &[Proc], prefix: &str) -> u64 {
    let topic = format!("{prefix}/probe");
    let needle = format!("{topic} p");
    let deadline = Instant::now() + T;
    let mut sent = 0;
    loop {
        mosq_pub(port, &["-t", &topic, "-m", "p"]).assert_ok("probe");
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
        if subs.iter().all(|s| s.stdout().contains(&needle)) {
            return sent;
        }
        assert!(Instant::now() < deadline, "the routes did not arrive");
    }
}

/// `mosquitto_pub -l`: messages "0".."count-1", one connection, at `qos`.
fn publish_lines(port: u16, topic: &str, count: usize, qos: &str) {
    let mut c = Command::new("mosquitto_pub");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        topic,
        "-q",
        qos,
        "-l",
    ])
    .stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let lines: String = (0..count).map(|n| format!("{n}\n")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Every subscriber got "0".."count-1" on `topic`, once each and in order.
fn assert_all_received(subs: &[Proc], topic: &str, count: usize) {
    let prefix = format!("{topic} ");
    for s in subs {
        let got = s.wait_out_count(count, Duration::from_secs(30), |l| l.starts_with(&prefix));
        let want: Vec<String> = (0..count).map(|n| format!("{prefix}{n}")).collect();
        assert_eq!(got, want, "{}", s.name);
    }
    std::thread::sleep(Duration::from_millis(200));
    for s in subs {
        let n = s.stdout().iter().filter(|l| l.starts_with(&prefix)).count();
        assert_eq!(n, count, "duplicates");
    }
}

#[test]
fn a_client_that_cannot_authenticate_takes_nothing_over() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let pw = dir.path().join("pw");
    let mut c = Command::new(PETREL);
    c.args(["passwd", "-c", "-b"])
        .arg(&pw)
        .args(["owner", "right"]);
    run("petrel passwd", c, T).assert_ok("passwd");
    let toml = |id: &str| {
        svc.node_toml(id, svc.etcd_port, 1).replace(
            "allow_anonymous = true\n",
            &format!("password_file = \"{}\"\n", pw.display()),
        )
    };
    let n1 = Petrel::start(dir.path(), &toml("n1"));
    let n2 = Petrel::start(dir.path(), &toml("n2"));
    let auth = ["-u", "owner", "-P", "right", "-i", "owned", "-V", "mqttv5"];
    let first = mosq_sub(n1.port(), &[&["-t", "a/1"][..], &auth].concat());
    // A wrong password on n2: refused there (0x86), and the owner on n1 stays.
    let mut bad = Command::new("mosquitto_sub");
    bad.args(["-h", "127.0.0.1", "-p", &n2.port().to_string(), "-t", "a/1"])
        .args([
            "-u", "owner", "-P", "wrong", "-i", "owned", "-V", "mqttv5", "-W", "3",
        ]);
    let r = run("mosquitto_sub", bad, T);
    assert!(
        !r.ok() && r.stderr.contains("Bad User Name or Password"),
        "{}",
        r.stderr
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !first.stdout().iter().any(|l| l.contains("DISCONNECT")),
        "an unauthenticated client disconnected the owner: {}",
        first.dump()
    );
    mosq_pub(
        n2.port(),
        &[
            "-u", "owner", "-P", "right", "-t", "a/1", "-m", "still", "-q", "1",
        ],
    )
    .assert_ok("publish");
    assert_eq!(payloads(&first, 1, T), vec!["still".to_string()]);
    // The right password takes it over.
    let _second = mosq_sub(n2.port(), &[&["-t", "a/1"][..], &auth].concat());
    assert!(
        first
            .wait_out(T, |l| l.contains("DISCONNECT (142)"))
            .is_some(),
        "{}",
        first.dump()
    );
}

#[test]
fn forwarding_costs_one_nats_message_per_publish_and_remote_node() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    // n1 with the admin API: the nodes and the per-node counters.
    std::fs::write(dir.path().join("keys"), "admin:s3cret\n").unwrap();
    let admin = format!(
        "[admin]\nbind = \"127.0.0.1:{{port2}}\"\napi_key_file = \"{}\"\nprometheus_auth = false\n",
        dir.path().join("keys").display()
    );
    let n1 = Petrel::start(
        dir.path(),
        &(svc.node_toml("n1", svc.etcd_port, 1) + &admin),
    );
    let n2 = svc.node(dir.path(), "n2", 1);
    let n3 = svc.node(dir.path(), "n3", 1);
    // 1,000 messages to a topic with 50 subscribers on each of 2 remote nodes: 100,000
    // deliveries, one NATS message per (publish, node): about 2,000.
    for (qos, per_message) in [("0", 1), ("1", 2)] {
        let prefix = format!("cost{qos}");
        let subs = subscribers(&[n2.port(), n3.port()], 50, &prefix, qos);
        let probes = probe(n1.port(), &subs, &prefix);
        let before = svc.nats_in_msgs();
        let topic = format!("{prefix}/data");
        publish_lines(n1.port(), &topic, 1000, qos);
        assert_all_received(&subs, &topic, 1000);
        // QoS 1: each of those is confirmed by one reply. Probes sent after the count
        // began are not counted out (at most a few).
        let nats = svc.nats_in_msgs() - before;
        let want = 2000 * per_message;
        assert!(
            (want..want + 20).contains(&nats),
            "QoS {qos}: NATS received {nats} messages ({probes} probes before)"
        );
    }
    // The admin API lists the three nodes; Prometheus counts per node.
    let get = |path: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", n1.ports[1])).unwrap();
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Basic YWRtaW46czNjcmV0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.split_once("\r\n\r\n").unwrap().1.to_owned()
    };
    // The counters are published every quarter of a second.
    std::thread::sleep(Duration::from_millis(400));
    let nodes: Value = serde_json::from_str(&get("/api/v5/nodes")).unwrap();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["petrel@n1", "petrel@n2", "petrel@n3"],
        "{nodes}"
    );
    assert!(nodes[1]["forwarded"].as_u64().unwrap() >= 2000, "{nodes}");
    assert_eq!(nodes[1]["confirmed"].as_u64(), Some(1000), "{nodes}");
    let metrics = get("/metrics");
    assert!(metrics.contains("petrel_cluster_nodes 3\n"), "{metrics}");
    assert!(
        metrics.contains("petrel_cluster_confirmed_total{peer=\"n3\"} 1000\n"),
        "{metrics}"
    );
}

/// A TCP relay a test can cut (bytes are dropped both ways, as in a partition, and new
/// connections are left hanging) and mend (every connection is closed, so that clients
/// reconnect).
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, s) = (cut.clone(), streams.clone());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    s.lock().unwrap().push(conn);
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to) in [(&conn, &up), (&up, &conn)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    let c = c.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            if !c.load(Ordering::SeqCst) && to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                s.lock().unwrap().extend([conn, up]);
            }
        });
        Relay { port, cut, streams }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_node_cut_off_from_etcd_fences_itself_before_another_node_may_own_its_clients() {
    let dir = tempdir();
    let svc = Services::start(dir.path());
    let relay = Relay::start(svc.etcd_port);
    let n1 = Petrel::start(dir.path(), &svc.node_toml("n1", relay.port, 1));
    let n2 = svc.node(dir.path(), "n2", 1);
    let first = mosq_sub(n1.port(), &["-t", "p/1", "-i", "solo", "-V", "mqttv5"]);
    relay.cut();
    let cut_at = Instant::now();
    // n1 cannot renew its lease (TTL 3 s): it disconnects its clients before the lease can
    // end (MQTT 5: 0x9C Use another server) ...
    assert!(
        first
            .wait_out(Duration::from_secs(5), |l| l
                .contains("Received DISCONNECT (156)"))
            .is_some(),
        "{}\n{}",
        first.dump(),
        n1.proc.dump()
    );
    let fenced_after = cut_at.elapsed();
    assert!(
        fenced_after < Duration::from_secs(3),
        "fenced after {fenced_after:?}"
    );
    // ... and refuses CONNECTs (3.1.1: return code 3, server unavailable).
    let refused = mosq_pub(n1.port(), &["-t", "p/1", "-m", "x", "-i", "other"]);
    assert!(
        !refused.ok() && refused.stderr.contains("unavailable"),
        "{}",
        refused.stderr
    );
    // The same client on n2 gets the identifier only once n1's lease has ended.
    let connect_at = Instant::now();
    let second = mosq_sub(n2.port(), &["-t", "p/1", "-i", "solo", "-V", "mqttv5"]);
    let owned_after = cut_at.elapsed();
    assert!(
        owned_after >= Duration::from_millis(2900),
        "n2 owned the id {owned_after:?} after the cut (lease TTL 3 s)"
    );
    assert!(connect_at.elapsed() < Duration::from_secs(8));
    mosq_pub(n2.port(), &["-t", "p/1", "-m", "to-n2", "-q", "1"]).assert_ok("publish");
    assert_eq!(payloads(&second, 1, T), vec!["to-n2".to_string()]);
    // Mended: n1 serves again (with a new lease), and takes the client back on request.
    relay.mend();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !mosq_pub(n1.port(), &["-t", "p/2", "-m", "x", "-i", "probe"]).ok() {
        assert!(
            Instant::now() < deadline,
            "n1 did not serve again\n{}",
            n1.proc.dump()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let third = mosq_sub(n1.port(), &["-t", "p/1", "-i", "solo", "-V", "mqttv5"]);
    assert!(second
        .wait_out(T, |l| l.contains("DISCONNECT (142)"))
        .is_some());
    drop(third);
}

#[test]
fn bad_cluster_configuration_and_unreachable_servers_stop_the_start() {
    let dir = tempdir();
    let toml = "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n[cluster]\n\
                etcd = [\"http://127.0.0.1:1\"]\nnats = [\"nats://127.0.0.1:1\"]\n";
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml.replace("{port}", &free_port().to_string())).unwrap();
    let mut c = Command::new(PETREL);
    c.args(["broker", "-c"]).arg(&path);
    let r = run("petrel", c, T);
    assert!(
        !r.ok() && r.stderr.contains("needs \"node_id\""),
        "{}",
        r.stderr
    );
    std::fs::write(
        &path,
        toml.replace("{port}", &free_port().to_string())
            .replace("[cluster]\n", "[cluster]\nnode_id = \"a/b\"\n"),
    )
    .unwrap();
    let mut c = Command::new(PETREL);
    c.args(["broker", "-c"]).arg(&path);
    let r = run("petrel", c, T);
    assert!(!r.ok() && r.stderr.contains("node_id"), "{}", r.stderr);
    // Nothing listens on port 1: a clear error within seconds, not a hang.
    std::fs::write(
        &path,
        toml.replace("{port}", &free_port().to_string())
            .replace("[cluster]\n", "[cluster]\nnode_id = \"n1\"\n"),
    )
    .unwrap();
    let mut c = Command::new(PETREL);
    c.args(["broker", "-c"]).arg(&path);
    let started = Instant::now();
    let r = run("petrel", c, Duration::from_secs(20));
    assert!(
        !r.ok() && r.stderr.contains("cannot reach etcd"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}
