//! Issue 22, bridges, against real processes: a Mosquitto 2.0 `connection` into Petrel with
//! Mosquitto's default `try_private true` (protocol level 0x84: 3.1.1 with the bridge bit),
//! carrying messages both ways without loops, retained flags as published.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;

use common::*;
use std::time::{Duration, Instant};

const ANON: &str = "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n";

/// Publishes `topic` on `from` until `sub` has it (the bridge connects and subscribes on
/// its own time).
fn probe(from: u16, topic: &str, sub: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        mosq_pub(from, &["-t", topic, "-m", "probe"]).assert_ok("probe");
        let line = format!("{topic} probe");
        if sub
            .wait_out(Duration::from_millis(300), |l| l == line)
            .is_some()
        {
            return;
        }
        assert!(Instant::now() < deadline, "no bridge\n{}", sub.dump());
    }
}

fn count(p: &Proc, prefix: &str) -> usize {
    p.stdout().iter().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn a_mosquitto_bridge_connects_with_its_default_try_private_and_carries_both_ways() {
    let d = tempdir();
    let petrel = Petrel::start(d.path(), ANON);
    let bridge = format!(
        "connection petrel\naddress 127.0.0.1:{}\ntopic br/# both 1\n",
        petrel.port()
    );
    let m = Mosquitto::plain(d.path(), &bridge);
    let on_petrel = mosq_sub(petrel.port(), &["-v", "-q", "1", "-t", "br/#"]);
    let on_mosquitto = mosq_sub(m.port(), &["-v", "-q", "1", "-t", "br/#"]);
    probe(m.port(), "br/probe-in", &on_petrel);
    probe(petrel.port(), "br/probe-out", &on_mosquitto);
    for i in 0..20 {
        let n = i.to_string();
        mosq_pub(m.port(), &["-q", "1", "-t", "br/in", "-m", &n]).assert_ok("in");
        mosq_pub(petrel.port(), &["-q", "1", "-t", "br/out", "-m", &n]).assert_ok("out");
    }
    for (p, what) in [(&on_petrel, "Petrel"), (&on_mosquitto, "Mosquitto")] {
        for t in ["br/in ", "br/out "] {
            let got = p.wait_out_count(20, Duration::from_secs(10), |l| l.starts_with(t));
            assert_eq!(got.len(), 20, "{what} {t}\n{}", p.dump());
        }
    }
    // A loop would bring each message around again (and again).
    std::thread::sleep(Duration::from_millis(500));
    for (p, what) in [(&on_petrel, "Petrel"), (&on_mosquitto, "Mosquitto")] {
        assert_eq!(count(p, "br/in "), 20, "{what}: no loop");
        assert_eq!(count(p, "br/out "), 20, "{what}: no loop");
    }
    // Retained on Petrel while the bridge is subscribed: it reaches Mosquitto with its
    // RETAIN flag (as published), so Mosquitto keeps it for a later subscriber.
    mosq_pub(
        petrel.port(),
        &["-q", "1", "-r", "-t", "br/kept", "-m", "k"],
    )
    .assert_ok("kept");
    on_mosquitto
        .wait_out(Duration::from_secs(10), |l| l == "br/kept k")
        .unwrap();
    let late = mosq_sub(m.port(), &["-v", "-t", "br/kept"]);
    let got = late.wait_out(Duration::from_secs(5), |l| l == "br/kept k");
    assert!(got.is_some(), "retained at Mosquitto\n{}", late.dump());
    drop(m);
}
