//! The durable store, end to end with real processes: `kill -9` of the broker at random
//! moments of QoS 1 and QoS 2 floods (publishers that never wait: a window of 100), for
//! offline persistent sessions and for online ones holding unacknowledged messages. Every
//! message whose PUBACK or PUBCOMP the publisher received must be delivered after the
//! restart (QoS 2: exactly once), messages in flight come back with DUP and their packet
//! identifiers, and subscriptions and retained messages survive. Also: a corrupt store is
//! moved aside (the broker starts and serves), and the old snapshot format is migrated.
//!
//! The clients here are hand-written byte-level MQTT 3.1.1 (not Petrel's codec), and the
//! issue's own scenario runs with mosquitto_pub/mosquitto_sub.

#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONF: &str = "allow_anonymous = true\npersistence = true\npersistence_location = \"{dir}\"\n\
                    max_queued_messages = 1000000\nmax_queued_bytes = 0\n\
                    [[listener]]\nbind = \"127.0.0.1:{port}\"\n";

/// MQTT 3.1.1 CONNECT; `clean`: Clean Session.
fn connect(id: &str, clean: bool) -> Vec<u8> {
    let mut b = Vec::new();
    string(b"MQTT", &mut b);
    b.push(4);
    b.push(if clean { 0x02 } else { 0x00 });
    b.extend_from_slice(&60u16.to_be_bytes());
    string(id.as_bytes(), &mut b);
    frame(0x10, &b)
}

fn ack(kind: u8, pid: u16) -> Vec<u8> {
    let first = if kind == 6 { 0x62 } else { kind << 4 };
    vec![first, 2, (pid >> 8) as u8, pid as u8]
}

/// Connects; returns the connection and Session Present.
fn session(port: u16, id: &str, clean: bool) -> (Raw, bool) {
    let mut r = Raw::connect(port);
    r.send(&connect(id, clean));
    let p = r.read(T).expect("CONNACK");
    assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
    assert_eq!(p.body.get(1), Some(&0), "CONNACK refused: {p:?}");
    (r, p.body.first() == Some(&1))
}

fn subscribe(r: &mut Raw, filter: &str, qos: u8) {
    r.send(&subscribe_packet(false, 1, filter, qos));
    loop {
        let p = r.read(T).expect("SUBACK");
        if p.kind() == 9 {
            assert_eq!(p.body.get(2), Some(&qos), "SUBACK {p:?}");
            return;
        }
    }
}

/// A PUBLISH's topic, packet identifier, DUP flag and payload.
fn parse_publish(p: &Packet) -> (String, u16, bool, String) {
    let tl = usize::from(u16::from_be_bytes([p.body[0], p.body[1]]));
    let topic = String::from_utf8_lossy(&p.body[2..2 + tl]).into_owned();
    let qos = (p.first >> 1) & 3;
    let (pid, rest) = if qos > 0 {
        (
            u16::from_be_bytes([p.body[2 + tl], p.body[3 + tl]]),
            &p.body[4 + tl..],
        )
    } else {
        (0, &p.body[2 + tl..])
    };
    (
        topic,
        pid,
        p.first & 0x08 != 0,
        String::from_utf8_lossy(rest).into_owned(),
    )
}

/// Publishes `prefix-1`, `prefix-2`... to `topic` at `qos` with up to 100 unacknowledged,
/// never waiting otherwise, until `max` or the connection dies. Returns the payloads whose
/// PUBACK (QoS 1) or PUBCOMP (QoS 2) arrived.
fn flood(port: u16, qos: u8, topic: &str, prefix: &str, max: u32) -> Vec<String> {
    let mut r = Raw::connect(port);
    r.send(&connect(&format!("pub-{prefix}"), true));
    match r.read(T) {
        Ok(p) if p.kind() == 2 => {}
        other => panic!("publisher CONNACK: {other:?}"),
    }
    let mut acked = Vec::new();
    let mut inflight: HashMap<u16, u32> = HashMap::new();
    let mut next = 1u32;
    let mut pid = 0u16;
    loop {
        while inflight.len() < 100 && next <= max {
            pid = if pid == u16::MAX { 1 } else { pid + 1 };
            let payload = format!("{prefix}-{next}");
            if !r.send(&publish_packet(false, topic, payload.as_bytes(), qos, pid)) {
                return acked;
            }
            inflight.insert(pid, next);
            next += 1;
        }
        match r.read(Duration::from_millis(20)) {
            Ok(p) => {
                let id = u16::from_be_bytes([p.body[0], p.body[1]]);
                match p.kind() {
                    4 | 7 => {
                        if let Some(n) = inflight.remove(&id) {
                            acked.push(format!("{prefix}-{n}"));
                        }
                    }
                    5 => {
                        r.send(&ack(6, id));
                    }
                    _ => {}
                }
            }
            Err(ReadErr::Closed) => return acked,
            Err(ReadErr::Timeout) if next > max && inflight.is_empty() => return acked,
            Err(ReadErr::Timeout) => {}
        }
    }
}

/// A subscriber's side of the flows, kept across its connections (as a client keeps its
/// session): QoS 2 identifiers received and not yet released (a PUBLISH with one of them
/// is not delivered again), what was delivered, and each payload's packet identifier.
#[derive(Default)]
struct Receiver {
    awaiting_rel: HashSet<u16>,
    delivered: Vec<String>,
    first_seen: HashMap<String, (u16, Instant)>,
    /// Payloads received again after the restart: (payload, pid, dup).
    resent: Vec<(String, u16, bool)>,
}

impl Receiver {
    /// Handles one packet; `withhold` decides which deliveries get no acknowledgement.
    fn handle(&mut self, r: &mut Raw, p: &Packet, withhold: &dyn Fn(&str) -> bool) {
        match p.kind() {
            3 => {
                let qos = (p.first >> 1) & 3;
                let (_, pid, dup, payload) = parse_publish(p);
                if self.first_seen.contains_key(&payload) {
                    self.resent.push((payload.clone(), pid, dup));
                } else {
                    self.first_seen
                        .insert(payload.clone(), (pid, Instant::now()));
                }
                let new = qos < 2 || self.awaiting_rel.insert(pid);
                if new {
                    self.delivered.push(payload.clone());
                }
                if withhold(&payload) {
                    return;
                }
                match qos {
                    1 => {
                        r.send(&ack(4, pid));
                    }
                    2 => {
                        r.send(&ack(5, pid));
                    }
                    _ => {}
                }
            }
            6 => {
                let id = u16::from_be_bytes([p.body[0], p.body[1]]);
                self.awaiting_rel.remove(&id);
                r.send(&ack(7, id));
            }
            _ => {}
        }
    }

    /// Reads and acknowledges everything until `quiet` passes without a packet.
    fn drain(&mut self, r: &mut Raw, quiet: Duration) {
        loop {
            match r.read(quiet) {
                Ok(p) => self.handle(r, &p, &|_| false),
                Err(_) => return,
            }
        }
    }
}

fn count(v: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for s in v {
        *m.entry(s.as_str()).or_insert(0) += 1;
    }
    m
}

/// Checks one round: every acknowledged payload delivered (QoS 2: nothing twice).
fn check(round: &str, qos: u8, acked: &[String], delivered: &[String], b: &Petrel) {
    let got = count(delivered);
    let lost: Vec<&String> = acked
        .iter()
        .filter(|a| !got.contains_key(a.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{round}: {} of {} acknowledged messages lost, first {:?}\n{}",
        lost.len(),
        acked.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        b.proc.dump()
    );
    if qos == 2 {
        let twice: Vec<_> = got.iter().filter(|(_, &n)| n > 1).collect();
        assert!(
            twice.is_empty(),
            "{round}: QoS 2 delivered twice: {twice:?}"
        );
    }
}

fn rng_delay(rng: &mut u64) -> Duration {
    // xorshift: a fixed seed keeps failures reproducible.
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    Duration::from_millis(100 + *rng % 300)
}

/// Offline persistent subscriber: rounds of flood, kill -9 at a random moment, restart,
/// drain. Returns the acknowledged messages checked.
fn offline_rounds(qos: u8, rounds: usize, seed: u64) -> usize {
    let d = tempdir();
    let mut b = Petrel::start(d.path(), CONF);
    let port = b.port();
    let (mut s, _) = session(port, "sub", false);
    subscribe(&mut s, "d/#", qos);
    let (mut k, _) = session(port, "keeper", true);
    let mut retained = publish_packet(false, "r/keep", b"kept", 1, 1);
    retained[0] |= 0x01;
    k.send(&retained);
    let p = k.read(T).expect("PUBACK");
    assert_eq!(p.kind(), 4);
    drop(k);
    s.send(&[0xe0, 0]);
    drop(s);
    let mut rng = seed;
    let mut total = 0;
    let mut rx = Receiver::default();
    for round in 0..rounds {
        let prefix = format!("q{qos}o{round}");
        let pre = prefix.clone();
        let h = std::thread::spawn(move || flood(port, qos, "d/x", &pre, 200_000));
        std::thread::sleep(rng_delay(&mut rng));
        b.kill9_restart();
        let acked = h.join().unwrap();
        let (mut s, present) = session(port, "sub", false);
        assert!(present, "{prefix}: the session did not survive");
        rx.drain(&mut s, Duration::from_millis(1500));
        s.send(&[0xe0, 0]);
        check(&prefix, qos, &acked, &rx.delivered, &b);
        eprintln!("{prefix}: {} acknowledged, all delivered", acked.len());
        total += acked.len();
    }
    // The retained message survived every restart.
    let (mut c, _) = session(port, "late", true);
    subscribe(&mut c, "r/#", 1);
    let p = c.read(T).expect("retained");
    assert_eq!(parse_publish(&p).3, "kept");
    b.assert_healthy();
    total
}

/// Online subscriber that never acknowledges every third message: those stay in flight
/// when the broker is killed and must come back with DUP and their packet identifiers.
fn online_rounds(qos: u8, rounds: usize, seed: u64) -> usize {
    let d = tempdir();
    let mut b = Petrel::start(d.path(), CONF);
    let port = b.port();
    {
        let (mut s, _) = session(port, "osub", false);
        subscribe(&mut s, "d/#", qos);
        s.send(&[0xe0, 0]);
    }
    let mut rng = seed;
    let mut total = 0;
    let rx = Arc::new(Mutex::new(Receiver::default()));
    for round in 0..rounds {
        let prefix = format!("q{qos}n{round}");
        // Connected before the flood, reading, withholding acknowledgements.
        let (mut s, present) = session(port, "osub", false);
        assert!(present);
        let rx2 = rx.clone();
        let reader = std::thread::spawn(move || loop {
            match s.read(Duration::from_millis(50)) {
                Ok(p) => rx2.lock().unwrap().handle(&mut s, &p, &|pl: &str| {
                    pl.rsplit('-')
                        .next()
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n % 3 == 0)
                }),
                Err(ReadErr::Closed) => return,
                Err(ReadErr::Timeout) => {}
            }
        });
        let pre = prefix.clone();
        let h = std::thread::spawn(move || flood(port, qos, "d/x", &pre, 200_000));
        std::thread::sleep(rng_delay(&mut rng));
        let killed_at = Instant::now();
        b.kill9_restart();
        let acked = h.join().unwrap();
        reader.join().unwrap();
        let (mut s, present) = session(port, "osub", false);
        assert!(present, "{prefix}: the session did not survive");
        let mut rx = rx.lock().unwrap();
        rx.resent.clear();
        rx.drain(&mut s, Duration::from_millis(1500));
        s.send(&[0xe0, 0]);
        check(&prefix, qos, &acked, &rx.delivered, &b);
        // Withheld well before the kill: their in-flight record was surely written.
        let mut checked = 0;
        for (payload, pid, dup) in &rx.resent {
            let Some((first_pid, at)) = rx.first_seen.get(payload) else {
                continue;
            };
            if killed_at.duration_since(*at) > Duration::from_millis(50) {
                assert!(*dup, "{prefix}: {payload} resent without DUP");
                assert_eq!(
                    pid, first_pid,
                    "{prefix}: {payload} resent under another id"
                );
                checked += 1;
            }
        }
        eprintln!(
            "{prefix}: {} acknowledged, all delivered; {checked} resent with DUP and the same id",
            acked.len()
        );
        assert!(
            checked > 0 || rx.first_seen.len() < 3,
            "{prefix}: nothing withheld was resent (saw {})",
            rx.first_seen.len()
        );
        total += acked.len();
    }
    b.assert_healthy();
    total
}

#[test]
fn kill9_during_qos1_flood_to_offline_session_loses_nothing_acknowledged() {
    let n = offline_rounds(1, 6, 0x9e37_79b9);
    assert!(n > 0, "no message was acknowledged in any round");
}

#[test]
fn kill9_during_qos2_flood_to_offline_session_is_exactly_once() {
    let n = offline_rounds(2, 6, 0x1234_5678);
    assert!(n > 0, "no message was acknowledged in any round");
}

#[test]
fn kill9_with_qos1_in_flight_resends_with_dup_and_same_ids() {
    let n = online_rounds(1, 5, 0xdead_beef);
    assert!(n > 0, "no message was acknowledged in any round");
}

#[test]
fn kill9_with_qos2_in_flight_is_exactly_once() {
    let n = online_rounds(2, 5, 0x0bad_cafe);
    assert!(n > 0, "no message was acknowledged in any round");
}

/// The issue's scenario with Mosquitto's own clients: 500 QoS 1 messages to an offline
/// persistent subscriber and a retained message, all acknowledged, then kill -9.
#[test]
fn mosquitto_clients_see_everything_after_kill9() {
    let d = tempdir();
    let mut b = Petrel::start(d.path(), CONF);
    let port = b.port();
    let sub = mosq_sub(port, &["-c", "-i", "msub", "-q", "1", "-t", "d/#"]);
    std::thread::sleep(Duration::from_millis(300));
    drop(sub);
    let lines: String = (1..=500).map(|i| format!("m{i}\n")).collect();
    let f = d.path().join("lines");
    std::fs::write(&f, lines).unwrap();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "mosquitto_pub -h 127.0.0.1 -p {port} -q 1 -t d/x -l < '{}'",
        f.display()
    ));
    run("mosquitto_pub -l", cmd, T).assert_ok("mosquitto_pub -l");
    mosq_pub(port, &["-q", "1", "-t", "d/ret", "-r", "-m", "kept"]).assert_ok("retained");
    b.kill9_restart();
    let sub = mosq_sub(port, &["-c", "-i", "msub", "-q", "1", "-t", "d/#"]);
    let got = payloads(&sub, 501, secs(10.0));
    let set: HashSet<&str> = got.iter().map(String::as_str).collect();
    for i in 1..=500 {
        assert!(set.contains(format!("m{i}").as_str()), "m{i} lost: {got:?}");
    }
    assert!(set.contains("kept"), "retained message lost");
}

fn corrupt_case(damage: impl Fn(&Path)) {
    let d = tempdir();
    let mut b = Petrel::start(d.path(), CONF);
    let port = b.port();
    {
        let (mut s, _) = session(port, "sub", false);
        subscribe(&mut s, "d/#", 1);
        s.send(&[0xe0, 0]);
    }
    b.stop_gracefully();
    let store = d.path().join("petrel.db");
    damage(&store);
    b.restart();
    let err = b.proc.stderr().join("\n");
    let line = err
        .lines()
        .find(|l| l.contains("corrupt"))
        .unwrap_or_else(|| panic!("no log line about a corrupt store:\n{err}"));
    assert!(line.contains(&store.display().to_string()), "{line}");
    let moved: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("petrel.db.corrupt-"))
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "the bad copy is not beside the store: {moved:?}"
    );
    assert!(line.contains(&moved[0].display().to_string()), "{line}");
    // Serving: a round trip through the fresh store.
    let (mut s, present) = session(port, "sub2", false);
    assert!(!present);
    subscribe(&mut s, "x/#", 1);
    mosq_pub(port, &["-q", "1", "-t", "x/y", "-m", "hello"]).assert_ok("publish");
    let p = s.read(T).expect("delivery");
    assert_eq!(parse_publish(&p).3, "hello");
    b.assert_healthy();
}

/// Every file of the store overwritten with random bytes (same sizes).
#[test]
fn store_of_random_bytes_is_moved_aside_and_the_broker_serves() {
    corrupt_case(|store| {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for e in walk(store) {
            let n = std::fs::metadata(&e).unwrap().len() as usize;
            let bytes: Vec<u8> = (0..n.max(64))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            std::fs::write(&e, bytes).unwrap();
        }
    });
}

/// The store's metadata file cut in the middle.
#[test]
fn store_truncated_mid_file_is_moved_aside_and_the_broker_serves() {
    corrupt_case(|store| {
        let f = store.join("version");
        let n = std::fs::metadata(&f).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        file.set_len(n / 2).unwrap();
    });
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.file_name().is_some_and(|n| n != "lock") {
            out.push(path);
        }
    }
    out
}

/// A snapshot written by an earlier Petrel is migrated once: its session (with its
/// queue) and retained message are served, and the file is renamed.
#[test]
fn old_snapshot_format_is_migrated() {
    use broker_core::persist::{encode_message, encode_session, FORMAT};
    use broker_core::policy::{SessionSnapshot, StoredSubscription};
    use broker_core::{Instant as CoreInstant, Message};
    use mqtt_proto::{ProtocolVersion, QoS, SubscriptionOptions};
    let d = tempdir();
    let now = CoreInstant::ZERO;
    let m =
        Message::from_stored("d/x", &[], b"from-snapshot", QoS::AtLeastOnce, false, None).unwrap();
    let r =
        Message::from_stored("r/old", &[], b"old-retained", QoS::AtLeastOnce, true, None).unwrap();
    let s = SessionSnapshot {
        client_id: "legacy".into(),
        username: None,
        protocol: ProtocolVersion::V3_1_1,
        expiry_interval: u32::MAX,
        subscriptions: vec![StoredSubscription {
            filter: "d/#".into(),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            id: None,
        }],
        messages: vec![(m, QoS::AtLeastOnce, false)],
    };
    let mut buf = FORMAT.to_vec();
    buf.extend_from_slice(&1u32.to_be_bytes());
    encode_session(now, &s, &mut buf);
    buf.extend_from_slice(&1u32.to_be_bytes());
    encode_message(now, &r, &mut buf);
    std::fs::write(d.path().join("petrel.db.shard0"), buf).unwrap();
    let b = Petrel::start(d.path(), CONF);
    let port = b.port();
    let (mut c, present) = session(port, "legacy", false);
    assert!(present, "{}", b.proc.dump());
    let p = c.read(T).expect("queued message");
    assert_eq!(parse_publish(&p).3, "from-snapshot");
    let (mut l, _) = session(port, "late", true);
    subscribe(&mut l, "r/#", 1);
    assert_eq!(
        parse_publish(&l.read(T).expect("retained")).3,
        "old-retained"
    );
    assert!(d.path().join("petrel.db.shard0.migrated").exists());
    assert!(!d.path().join("petrel.db.shard0").exists());
}

/// `durability = "power"`: the broker's store is copied right after each fsync, before
/// the acknowledgements that waited for it go out (a test hook). After kill -9 the store
/// is replaced by the last copy: the state a power cut leaves when everything written
/// since the last fsync is lost. Every acknowledged message must still be there.
#[test]
fn power_durability_survives_losing_everything_after_the_last_fsync() {
    let d = tempdir();
    let snap = d.path().join("as-of-last-fsync");
    let conf = CONF.replace(
        "persistence = true\n",
        "persistence = true\ndurability = \"power\"\n",
    );
    let snap_s = snap.to_string_lossy().into_owned();
    let mut b = Petrel::start_env(
        d.path(),
        &conf,
        &[],
        &[("PETREL_TEST_POWER_SNAPSHOT", snap_s.as_str())],
    );
    let port = b.port();
    let (mut s, _) = session(port, "sub", false);
    subscribe(&mut s, "d/#", 1);
    s.send(&[0xe0, 0]);
    drop(s);
    let mut rx = Receiver::default();
    let mut rng = 0x5eed_u64;
    let mut total = 0;
    for round in 0..3 {
        let prefix = format!("power{round}");
        let pre = prefix.clone();
        let h = std::thread::spawn(move || flood(port, 1, "d/x", &pre, 200_000));
        std::thread::sleep(rng_delay(&mut rng));
        // Power cut: only what the last fsync covered survives.
        let store = d.path().join("petrel.db");
        b.kill9_restart_after(|| {
            std::fs::remove_dir_all(&store).unwrap();
            // Killed between its two renames, the last copy is `<snap>.old`.
            let last = if snap.exists() {
                snap.clone()
            } else {
                snap.with_extension("old")
            };
            std::fs::rename(&last, &store).expect("a snapshot was taken at an fsync");
        });
        let acked = h.join().unwrap();
        let (mut s, present) = session(port, "sub", false);
        assert!(
            present,
            "{prefix}: the session did not survive\n{}",
            b.proc.dump()
        );
        rx.drain(&mut s, Duration::from_millis(1500));
        s.send(&[0xe0, 0]);
        check(&prefix, 1, &acked, &rx.delivered, &b);
        eprintln!(
            "{prefix}: {} acknowledged, all delivered after the power cut",
            acked.len()
        );
        total += acked.len();
    }
    assert!(total > 0, "nothing was acknowledged");
    b.assert_healthy();
}

fn rss_of(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// `memory_limit`: 20 offline sessions queue every 32 KiB QoS 1 message of a publisher
/// that never waits (each session keeps its own copy). The broker's RSS must stay under
/// the cap + 32 MiB while the publisher is held; QoS 0 is dropped meanwhile; once the
/// sessions are gone the publisher is served again.
#[test]
fn memory_limit_holds_publishers_and_bounds_rss() {
    const LIMIT: u64 = 96 << 20;
    let d = tempdir();
    let conf = format!(
        "allow_anonymous = true\nmax_queued_messages = 0\nmax_queued_bytes = 0\n\
         memory_limit = {LIMIT}\n[[listener]]\nbind = \"127.0.0.1:{{port}}\"\n"
    );
    let b = Petrel::start(d.path(), &conf);
    let port = b.port();
    for i in 0..20 {
        let (mut s, _) = session(port, &format!("slow{i}"), false);
        subscribe(&mut s, "big/#", 1);
        s.send(&[0xe0, 0]);
    }
    let (mut q0, _) = session(port, "q0", true);
    subscribe(&mut q0, "q0/#", 0);
    let acked = Arc::new(Mutex::new(0u64));
    let a2 = acked.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::spawn(move || {
        let (mut r, _) = session(port, "bigpub", true);
        let payload = vec![b'x'; 32 * 1024];
        let mut pid = 0u16;
        let mut inflight = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            while inflight < 100 {
                pid = if pid == u16::MAX { 1 } else { pid + 1 };
                r.send(&publish_packet(false, "big/x", &payload, 1, pid));
                inflight += 1;
            }
            if let Ok(p) = r.read(Duration::from_millis(20)) {
                if p.kind() == 4 {
                    inflight -= 1;
                    *a2.lock().unwrap() += 1;
                }
            }
        }
    });
    let pid = b.proc.pid();
    let mut max_rss = 0;
    let start = Instant::now();
    let mut held_since_acks = 0;
    let mut last = 0;
    while start.elapsed() < Duration::from_secs(4) {
        max_rss = max_rss.max(rss_of(pid));
        std::thread::sleep(Duration::from_millis(20));
        let now = *acked.lock().unwrap();
        held_since_acks = if now == last { held_since_acks + 1 } else { 0 };
        last = now;
    }
    assert!(
        max_rss <= LIMIT + (32 << 20),
        "RSS reached {} MiB (limit {} MiB)\n{}",
        max_rss >> 20,
        LIMIT >> 20,
        b.proc.dump()
    );
    assert!(
        held_since_acks > 25,
        "the publisher was not held (acks kept coming)"
    );
    assert!(
        b.proc
            .wait_err(T, |l| l.contains("memory_limit reached"))
            .is_some(),
        "{}",
        b.proc.dump()
    );
    // QoS 0 is dropped at the limit.
    mosq_pub(port, &["-q", "0", "-t", "q0/x", "-m", "dropped"]).assert_ok("qos0");
    assert!(
        q0.read(Duration::from_millis(500)).is_err(),
        "QoS 0 delivered at the limit"
    );
    // The queues go (clean sessions replace them): the publisher is served again.
    for i in 0..20 {
        let _ = session(port, &format!("slow{i}"), true);
    }
    let before = *acked.lock().unwrap();
    let t = Instant::now();
    while *acked.lock().unwrap() == before && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
    assert!(
        *acked.lock().unwrap() > before,
        "the publisher was not released\n{}",
        b.proc.dump()
    );
    eprintln!(
        "memory_limit {} MiB: max RSS {} MiB, {} messages acknowledged",
        LIMIT >> 20,
        max_rss >> 20,
        before
    );
}

/// A persistent session keeps 50 queued messages in memory; 5,000 arrive while it is
/// offline. They are all delivered, in order, read back from disk as the queue drains,
/// before and after a kill -9.
#[test]
fn queue_beyond_memory_continues_on_disk_in_order() {
    let d = tempdir();
    let conf = CONF.replace(
        "persistence = true\n",
        "persistence = true\nqueued_messages_in_memory = 50\n",
    );
    let mut b = Petrel::start_with(
        d.path(),
        &conf,
        &["--log-level", "info,runtime_uring::store=debug"],
    );
    let port = b.port();
    for id in ["disk1", "disk2"] {
        let (mut s, _) = session(port, id, false);
        subscribe(&mut s, "q/#", 1);
        s.send(&[0xe0, 0]);
    }
    let acked = flood(port, 1, "q/x", "disk", 5000);
    assert_eq!(acked.len(), 5000);
    let want: Vec<String> = (1..=5000).map(|i| format!("disk-{i}")).collect();
    // disk1 drains now; disk2 after a kill -9.
    let mut rx = Receiver::default();
    let (mut s, _) = session(port, "disk1", false);
    rx.drain(&mut s, Duration::from_millis(1500));
    assert_eq!(rx.delivered, want, "disk1: not everything, or out of order");
    let reads = b
        .proc
        .stderr()
        .iter()
        .filter(|l| l.contains("read back") && l.contains("disk1"))
        .count();
    assert!(
        reads >= 5000 / 50 / 2,
        "the queue was not read back from disk ({reads} reads)"
    );
    b.kill9_restart();
    let mut rx = Receiver::default();
    let (mut s, present) = session(port, "disk2", false);
    assert!(present);
    rx.drain(&mut s, Duration::from_millis(1500));
    assert_eq!(rx.delivered.len(), 5000, "disk2 after kill -9");
    assert_eq!(rx.delivered, want, "disk2: out of order after kill -9");
    b.assert_healthy();
}
