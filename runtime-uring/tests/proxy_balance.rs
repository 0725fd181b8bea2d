//! Issue 6, `petrel proxy` balancing with real brokers behind it (Petrel and Mosquitto on
//! loopback): consistent hashing by client id (sticky over reconnects and protocol
//! versions, spread over the nodes, only the expected clients moving when a node is
//! removed or added through the admin API), by source IP for empty client ids, round
//! robin, dead nodes skipped and brought back by the health check, routes by protocol
//! level, refusals in the client's version, and route changes that leave established
//! connections alone.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;
#[path = "proxy/support.rs"]
mod support;

use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;
use support::*;

const N: usize = 300;

#[test]
fn chash_is_sticky_across_reconnects_and_versions_and_spreads_over_three_brokers() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let b = Backend::petrel(&dir, "B");
    let c = Backend::mosquitto(&dir, "C");
    let up: Vec<String> = [&a, &b, &c].iter().map(|x| x.node()).collect();
    let mut args = vec!["--balance", "chash"];
    for u in &up {
        args.extend(["--upstream", u]);
    }
    let mut proxy = Proxy::start(&args);
    let ids = ids("sticky", N);
    let first = proxy.map(V::V311, &ids);
    let v5 = proxy.map(V::V5, &ids);
    let again = proxy.map(V::V311, &ids);
    assert_eq!(
        first, v5,
        "3.1.1 and 5.0 clients with the same id must reach the same broker"
    );
    assert_eq!(
        first, again,
        "a reconnecting client must reach the same broker"
    );
    for n in ["A", "B", "C"] {
        let share = count(&first, n) as f64 / N as f64;
        // Expected 1/3; 160 points per node keep it within a few percent.
        assert!(
            (0.2..0.47).contains(&share),
            "broker {n} got {share:.2} of the clients: {first:?}"
        );
    }
    // 3.1 (MQIsdp) clients hash the same way.
    for (id, want) in ids.iter().zip(&first).take(20) {
        assert_eq!(&whoami(proxy.port, V::V31, id, None).unwrap(), want);
    }
    proxy.assert_healthy();
}

#[test]
fn removing_and_adding_a_node_through_the_admin_api_moves_only_the_expected_clients() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let b = Backend::mosquitto(&dir, "B");
    let c = Backend::petrel(&dir, "C");
    let d = Backend::mosquitto(&dir, "D");
    let mut proxy = Proxy::start(&[]);
    let route = |nodes: serde_json::Value| {
        json!({
            "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": [4, 5]}},
            "upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes}
        })
    };
    let ids = ids("move", N);
    proxy.put_route("1", route(nodes(&[&a, &b, &c])));
    let three = proxy.map(V::V311, &ids);

    // Remove C: C's clients (and only they) move, to A or B.
    proxy.put_route("1", route(nodes(&[&a, &b])));
    let two = proxy.map(V::V5, &ids);
    let mut moved = 0;
    for ((id, before), after) in ids.iter().zip(&three).zip(&two) {
        if before == "C" {
            assert!(after == "A" || after == "B", "{id}: C -> {after}");
            moved += 1;
        } else {
            assert_eq!(
                before, after,
                "{id} moved from {before} to {after} though its node stayed"
            );
        }
    }
    assert_eq!(moved, count(&three, "C"));

    // Back to A, B, C: everyone is where they were.
    proxy.put_route("1", route(nodes(&[&c, &a, &b])));
    assert_eq!(proxy.map(V::V311, &ids), three);

    // Add D: about 1/4 of the clients move, all of them to D.
    proxy.put_route("1", route(nodes(&[&a, &b, &c, &d])));
    let four = proxy.map(V::V311, &ids);
    let mut moved = 0;
    for ((id, before), after) in ids.iter().zip(&three).zip(&four) {
        if before != after {
            assert_eq!(
                after, "D",
                "{id} moved from {before} to {after}, not to the new node"
            );
            moved += 1;
        }
    }
    let frac = moved as f64 / N as f64;
    eprintln!("adding a 4th node moved {moved}/{N} = {frac:.3} of the clients (ideal 0.25)");
    assert!(
        (0.12..0.40).contains(&frac),
        "adding a 4th node moved {frac:.3} of the clients"
    );
    proxy.assert_healthy();
}

#[test]
fn empty_client_ids_stick_by_source_address() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let b = Backend::mosquitto(&dir, "B");
    let c = Backend::petrel(&dir, "C");
    let mut proxy = Proxy::start(&[]);
    proxy.put_route(
        "ip",
        json!({"upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes(&[&a, &b, &c])}}),
    );
    let mut seen = std::collections::BTreeSet::new();
    for last in 2..=16u8 {
        let ip = IpAddr::from([127, 0, 0, last]);
        let first = whoami(proxy.port, V::V311, "", Some(ip)).unwrap();
        for v in [V::V5, V::V311, V::V5] {
            assert_eq!(
                whoami(proxy.port, v, "", Some(ip)).unwrap(),
                first,
                "{ip} ({v:?}) moved"
            );
        }
        seen.insert(first);
    }
    assert!(
        seen.len() >= 2,
        "15 source addresses all hashed to {seen:?}"
    );
    proxy.assert_healthy();
}

#[test]
fn a_dead_node_is_skipped_and_the_health_check_brings_it_back() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let b = Backend::mosquitto(&dir, "B");
    let mut c = Backend::petrel_at(&dir, "C", "127.0.0.66");
    // Down for 60 s after a failure: only the active check can bring C back in time.
    let mut proxy = Proxy::start(&["--down-time", "60", "--health-check-interval", "0.3"]);
    proxy.put_route(
        "1",
        json!({"upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes(&[&a, &b, &c])}}),
    );
    let ids = ids("dead", 120);
    let before = proxy.map(V::V311, &ids);
    assert!(count(&before, "C") > 0);

    let c_addr: std::net::SocketAddr = c.node().parse().unwrap();
    let common::Broker::Petrel(p) = &mut c.broker else {
        unreachable!()
    };
    p.stop_gracefully();
    // An io_uring process's listening socket can outlive the process briefly (the ring
    // is torn down after exit, holding the pending accept): connections are taken and
    // dropped meanwhile. The node is dead, in the sense of this test, once it refuses.
    assert!(
        eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&c_addr, Duration::from_secs(1)).is_err()
        }),
        "{c_addr} still accepts connections after its broker exited"
    );
    // Every client still gets in; C's go to the next nodes, the others stay.
    let during: Vec<String> = ids
        .iter()
        .map(|id| {
            whoami(proxy.port, V::V5, id, None).unwrap_or_else(|e| {
                panic!(
                    "client {id}: {e}\n{}{}{}{}",
                    proxy.proc.dump(),
                    a.broker.proc().dump(),
                    b.broker.proc().dump(),
                    p.proc.dump()
                )
            })
        })
        .collect();
    for ((id, x), y) in ids.iter().zip(&before).zip(&during) {
        if x == "C" {
            assert_ne!(y, "C");
        } else {
            assert_eq!(x, y, "{id} moved though its node is up");
        }
    }

    p.restart();
    c.tag();
    let back = ids
        .iter()
        .zip(&before)
        .find(|(_, n)| *n == "C")
        .unwrap()
        .0
        .clone();
    assert!(
        eventually(Duration::from_secs(10), || whoami(
            proxy.port,
            V::V311,
            &back,
            None
        )
        .as_deref()
            == Ok("C")),
        "C did not come back\n{}",
        proxy.proc.dump()
    );
    assert_eq!(proxy.map(V::V311, &ids), before);
    proxy.assert_healthy();
}

#[test]
fn no_route_or_no_healthy_node_gets_server_unavailable_in_the_clients_version() {
    let (_d, dir) = scratch();
    let a = Backend::mosquitto(&dir, "A");
    let mut proxy = Proxy::start(&[]);
    // No route at all.
    assert_eq!(mqtt_connect(proxy.port, V::V311, "x", None).err(), Some(3));
    assert_eq!(mqtt_connect(proxy.port, V::V31, "x", None).err(), Some(3));
    assert_eq!(mqtt_connect(proxy.port, V::V5, "x", None).err(), Some(0x88));
    // A route for 5.0 only.
    proxy.put_route(
        "v5",
        json!({"plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 5}},
               "upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes(&[&a])}}),
    );
    assert_eq!(whoami(proxy.port, V::V5, "x", None).unwrap(), "A");
    assert_eq!(mqtt_connect(proxy.port, V::V311, "x", None).err(), Some(3));
    // Nodes that refuse connections (an address nothing listens on: a free port of
    // 127.0.0.1 could be taken by another test meanwhile).
    proxy.put_route(
        "v5",
        json!({"plugins": {"mqtt-proxy": {"protocol_level": 5}},
               "upstream": {"type": "roundrobin", "nodes": {"127.0.0.67:1884": 1, "127.0.0.67:1885": 1}}}),
    );
    assert_eq!(mqtt_connect(proxy.port, V::V5, "x", None).err(), Some(0x88));
    assert_eq!(mqtt_connect(proxy.port, V::V5, "y", None).err(), Some(0x88));
    proxy.assert_healthy();
}

#[test]
fn routes_by_protocol_level_serve_311_and_5_side_by_side() {
    let (_d, dir) = scratch();
    let old = Backend::mosquitto(&dir, "OLD");
    let new = Backend::petrel(&dir, "NEW");
    let mut proxy = Proxy::start(&[]);
    proxy.put_route(
        "mqtt4",
        json!({"plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}},
               "upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes(&[&old])}}),
    );
    proxy.put_route(
        "mqtt5",
        json!({"plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 5}},
               "upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes(&[&new])}}),
    );
    for i in 0..10 {
        let id = format!("lvl-{i}");
        assert_eq!(whoami(proxy.port, V::V311, &id, None).unwrap(), "OLD");
        assert_eq!(whoami(proxy.port, V::V31, &id, None).unwrap(), "OLD");
        assert_eq!(whoami(proxy.port, V::V5, &id, None).unwrap(), "NEW");
    }
    proxy.assert_healthy();
}

#[test]
fn roundrobin_spreads_evenly() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let b = Backend::mosquitto(&dir, "B");
    let c = Backend::petrel(&dir, "C");
    let mut proxy = Proxy::start(&[
        "--balance",
        "roundrobin",
        "--upstream",
        &a.node(),
        "--upstream",
        &b.node(),
        "--upstream",
        &c.node(),
    ]);
    let got = proxy.map(V::V311, &ids("rr", 30));
    for n in ["A", "B", "C"] {
        assert_eq!(count(&got, n), 10, "{got:?}");
    }
    proxy.assert_healthy();
}

#[test]
fn route_changes_apply_to_new_connections_and_leave_established_ones_alone() {
    let (_d, dir) = scratch();
    let a = Backend::mosquitto(&dir, "A");
    let b = Backend::petrel(&dir, "B");
    let mut proxy = Proxy::start(&[]);
    proxy.put_route(
        "1",
        json!({"upstream": {"type": "chash", "nodes": nodes(&[&a])}}),
    );
    let mut old = mqtt_connect(proxy.port, V::V311, "long-lived", None).unwrap();
    assert_eq!(ask_name(&mut old, false).unwrap(), "A");
    // Point the route elsewhere, then delete it.
    proxy.put_route(
        "1",
        json!({"upstream": {"type": "chash", "nodes": nodes(&[&b])}}),
    );
    assert_eq!(whoami(proxy.port, V::V311, "new", None).unwrap(), "B");
    let (st, _) = proxy.api("DELETE", "/apisix/admin/stream_routes/1", None);
    assert_eq!(st, 200);
    assert_eq!(
        mqtt_connect(proxy.port, V::V311, "new", None).err(),
        Some(3)
    );
    // The established connection still talks to A: a round trip through it.
    old.send(&common::subscribe_packet(false, 2, "rc/t", 0));
    old.send(&common::publish_packet(false, "rc/t", b"still here", 0, 0));
    let mut got = None;
    for _ in 0..5 {
        match old.read(common::T) {
            Ok(p) if p.kind() == 3 => {
                got = Some(publish_parts(false, &p.body).1);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("established connection broken: {e}"),
        }
    }
    assert_eq!(got.as_deref(), Some(&b"still here"[..]));
    proxy.assert_healthy();
}
