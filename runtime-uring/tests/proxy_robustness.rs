//! Issue 6, `petrel proxy` under bad input: garbage instead of CONNECT, a CONNECT over the
//! size limit, clients that stall in the middle of their CONNECT, an unsupported protocol
//! level; idle and half-closed connections. Everyone else keeps being served throughout.

#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;
#[path = "proxy/support.rs"]
mod support;

use std::net::Shutdown;
use std::time::{Duration, Instant};
use support::*;

/// A small deterministic PRNG (xorshift) for the garbage.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn bad_clients_are_dropped_and_everyone_else_is_served() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let mut proxy = Proxy::start(&[
        "--upstream",
        &a.node(),
        "--connect-timeout",
        "3",
        "--max-connect-size",
        "1024",
    ]);
    let mut long = mqtt_connect(proxy.port, V::V5, "long-lived", None).unwrap();
    assert_eq!(ask_name(&mut long, true).unwrap(), "A");

    // Garbage instead of CONNECT: an HTTP request, random bytes, a TLS record with no
    // certificate configured, a PUBLISH first.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5],
        common::publish_packet(false, "t", b"x", 0, 0),
    ];
    for _ in 0..20 {
        garbage.push((0..64).map(|_| rng.next() as u8).collect());
    }
    for g in &garbage {
        let mut c = raw_tcp(proxy.port);
        c.send(g);
        assert!(
            c.closed_within(Duration::from_secs(6)),
            "not closed after {g:02x?}"
        );
    }

    // A CONNECT announcing 1 MB: closed at once, before the body (and before the timeout).
    let mut big = raw_tcp(proxy.port);
    let t0 = Instant::now();
    big.send(&[0x10, 0xC0, 0x84, 0x3D, 0x00, 0x04, b'M', b'Q']);
    assert!(big.closed_within(Duration::from_secs(2)));
    assert!(t0.elapsed() < Duration::from_millis(2500));

    // An unsupported protocol level: CONNACK 1, as a broker answers it.
    let mut odd = raw_tcp(proxy.port);
    odd.send(&[
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x07, 0x02, 0x00, 0x3C, 0x00, 0x00,
    ]);
    let p = odd.read(common::T).unwrap();
    assert_eq!((p.kind(), p.body.clone()), (2, vec![0, 1]));

    // 100 clients stalling mid-CONNECT: the others are served meanwhile, and the stalled
    // ones are closed after the connect timeout (3 s), not before.
    let whole = common::connect_packet(false, "stalled", 60);
    let t0 = Instant::now();
    let mut stalled: Vec<Conn> = (0..100)
        .map(|_| {
            let mut c = raw_tcp(proxy.port);
            c.send(&whole[..whole.len() / 2]);
            c
        })
        .collect();
    for i in 0..20 {
        let t = Instant::now();
        assert_eq!(
            whoami(proxy.port, V::V311, &format!("ok-{i}"), None).unwrap(),
            "A"
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a good client waited {:?}",
            t.elapsed()
        );
    }
    for c in &mut stalled {
        assert!(
            c.closed_within(Duration::from_secs(10)),
            "a stalled client was never closed"
        );
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "stalled clients closed after {took:?}, before the timeout"
    );

    // The long-lived connection never noticed.
    long.send(&[0xC0, 0x00]);
    assert_eq!(long.read(common::T).unwrap().kind(), 13);
    assert_eq!(whoami(proxy.port, V::V5, "after", None).unwrap(), "A");
    proxy.assert_healthy();
}

#[test]
fn idle_connections_time_out_and_half_close_is_forwarded() {
    let (_d, dir) = scratch();
    let a = Backend::mosquitto(&dir, "A");
    let mut proxy = Proxy::start(&["--upstream", &a.node(), "--idle-timeout", "1"]);
    // Keep alive 0: only the proxy's idle timeout can close it.
    let mut quiet = raw_tcp(proxy.port);
    quiet.send(&common::connect_packet(false, "quiet", 0));
    assert_eq!(quiet.read(common::T).unwrap().kind(), 2);
    let t0 = Instant::now();
    // A client that pings every 300 ms stays.
    let mut busy = mqtt_connect(proxy.port, V::V311, "busy", None).unwrap();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        busy.send(&[0xC0, 0x00]);
        assert_eq!(
            busy.read(common::T).unwrap().kind(),
            13,
            "the busy client was cut"
        );
    }
    assert!(
        quiet.closed_within(Duration::from_secs(5)),
        "the idle connection was kept"
    );
    assert!(t0.elapsed() >= Duration::from_millis(900));

    // Half-close: the client stops sending; the broker sees the end of stream (through
    // the proxy) and closes, which the client sees in turn.
    let mut half = mqtt_connect(proxy.port, V::V311, "half", None).unwrap();
    half.s.shutdown(Shutdown::Write).unwrap();
    assert!(
        half.closed_within(Duration::from_secs(3)),
        "end of stream was not forwarded"
    );
    proxy.assert_healthy();
}

#[test]
fn splice_forwarding_works_too() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let mut proxy = Proxy::start(&["--upstream", &a.node(), "--forward", "splice"]);
    for i in 0..20 {
        assert_eq!(
            whoami(proxy.port, V::V5, &format!("s{i}"), None).unwrap(),
            "A"
        );
    }
    // A 200 KB message through the spliced path, both ways.
    let mut c = mqtt_connect(proxy.port, V::V311, "big", None).unwrap();
    c.send(&common::subscribe_packet(false, 1, "big/t", 0));
    let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    c.send(&common::publish_packet(false, "big/t", &payload, 0, 0));
    let mut got = None;
    for _ in 0..4 {
        let p = c.read(common::T).unwrap();
        if p.kind() == 3 {
            got = Some(publish_parts(false, &p.body).1);
            break;
        }
    }
    assert!(
        got == Some(payload),
        "the large message did not come back intact"
    );
    proxy.assert_healthy();
}
