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

#[test]
fn a_slow_reader_gets_every_byte_through_the_default_copy_path() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let mut proxy = Proxy::start(&["--upstream", &a.node()]);
    let mut sub = mqtt_connect(proxy.port, V::V311, "slow-sub", None).unwrap();
    sub.send(&common::subscribe_packet(false, 1, "bulk/t", 0));
    assert_eq!(sub.read(common::T).unwrap().kind(), 9);
    // 8 x 600 KB: far more than the socket buffers on the way hold, so while the
    // subscriber does not read, the proxy's writes to it come back short and the rest
    // waits in the proxy (and the publisher's direction has to wait for room too).
    let mut publ = mqtt_connect(proxy.port, V::V311, "bulk-pub", None).unwrap();
    let payloads: Vec<Vec<u8>> = (0..8u32)
        .map(|m| (0..600_000u32).map(|i| (i * 7 + m) as u8).collect())
        .collect();
    let writer = std::thread::spawn(move || {
        for p in &payloads {
            assert!(publ.send(&common::publish_packet(false, "bulk/t", p, 0, 0)));
        }
        (publ, payloads)
    });
    std::thread::sleep(Duration::from_millis(800));
    let mut got = Vec::new();
    while got.len() < 8 {
        let p = sub.read(common::T).expect("a message was lost on the way");
        if p.kind() == 3 {
            got.push(publish_parts(false, &p.body).1);
        }
    }
    let (_publ, payloads) = writer.join().unwrap();
    assert!(
        got == payloads,
        "the messages did not come through intact and in order"
    );
    proxy.assert_healthy();
}

/// The open descriptor numbers of process `pid`, with what each one is.
fn open_fds(pid: i32) -> Vec<(u64, String)> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<(u64, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e.file_name().to_str()?.parse().ok()?;
            let what = std::fs::read_link(e.path()).ok()?;
            Some((n, what.display().to_string()))
        })
        .collect();
    fds.sort();
    fds
}

/// The smallest RLIMIT_NOFILE that leaves exactly one descriptor number free: new
/// descriptors must be below the limit (those already above it stay valid), and the
/// kernel hands out the lowest free number.
fn limit_with_one_free(open: &[(u64, String)]) -> u64 {
    let mut free = 0;
    let mut used = open.iter().map(|(n, _)| *n).peekable();
    for n in 0.. {
        if used.peek() == Some(&n) {
            used.next();
        } else {
            free += 1;
            if free == 1 {
                continue;
            }
            return n;
        }
    }
    unreachable!()
}

/// Sets the soft open-files limit of process `pid` (the hard one is left alone, so no
/// privilege is needed); returns the soft limit it had.
fn set_soft_nofile(pid: i32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new value only writes `old`, which outlives the call.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: prlimit on our own child (alive: the caller holds it); it only reads `new`.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

#[test]
fn running_out_of_descriptors_refuses_clients_without_marking_the_node_down() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let b = Backend::petrel(&dir, "B");
    let mut proxy = Proxy::start(&["--upstream", &a.node(), "--upstream", &b.node()]);
    // The node the last client belongs to.
    let home = whoami(proxy.port, V::V5, "fd10", None).unwrap();
    // Clients already through must stay up when the descriptors run out.
    let held: Vec<_> = (0..10)
        .map(|i| mqtt_connect(proxy.port, V::V311, &format!("fd{i}"), None).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Set on the running proxy, from the descriptors it has now: one free number, which
    // the next accepted socket takes, so the connection to the node is what fails.
    let open = open_fds(proxy.proc.pid());
    let l = limit_with_one_free(&open);
    let before = set_soft_nofile(proxy.proc.pid(), l);
    // CONNACK 3 (server unavailable) at once, not a silent hang.
    let refused = mqtt_connect(proxy.port, V::V311, "fd10", None).err();
    assert_eq!(
        refused,
        Some(3),
        "the client was not told (limit {l}, descriptors then {open:?}, now {:?})\n{}",
        open_fds(proxy.proc.pid()),
        proxy.proc.dump()
    );
    for mut c in held {
        assert!(c.send(&[0xC0, 0]), "a client already through was dropped");
        assert_eq!(
            c.read(common::T).map(|p| p.kind()),
            Ok(13),
            "a client already through was dropped"
        );
    }
    // Descriptors free again: the refused client goes to its own node at once (a node
    // marked down would send it to the other one, away from its session).
    set_soft_nofile(proxy.proc.pid(), before);
    assert_eq!(
        whoami(proxy.port, V::V5, "fd10", None).unwrap(),
        home,
        "the node was marked down for the proxy's own shortage"
    );
    // And the log blames the proxy, not the nodes.
    let log = proxy.proc.dump();
    assert!(
        log.contains("not marked down") && !log.contains("; marked down"),
        "{log}"
    );
    proxy.assert_healthy();
}
