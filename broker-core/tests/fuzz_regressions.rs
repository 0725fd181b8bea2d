//! Bugs the `broker` fuzz target found (fuzz/fuzz_targets/broker.rs), each as the smallest
//! script that showed it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use broker_core::Config;
use common::*;

/// A client that subscribes again and again without reading (its Receive Maximum full of
/// unacknowledged QoS 1 messages) had the retained messages of every SUBSCRIBE queued
/// behind the previous ones: its session grew without limit. The retained backlog is now
/// bounded by the retained store's size, oldest copies dropped first.
#[test]
fn repeated_subscribe_without_reading_keeps_the_retained_backlog_bounded() {
    let cfg = Config {
        max_retained_messages: 4,
        max_inflight_messages: 1,
        max_queued_messages: 6,
        ..Config::default()
    };
    let mut s = sim_cfg(cfg.clone());
    let p = connect(&mut s, "pub", true, V5);
    for (i, t) in ["r/1", "r/2", "r/3", "r/4"].iter().enumerate() {
        publish(&mut s, p, t, b"kept", Q1, true, i as u16 + 1);
    }
    let c = connect(&mut s, "sub", true, V5);
    for _ in 0..100 {
        // Never acknowledged: one message in flight, the rest waits.
        subscribe(&mut s, c, "r/#", Q1);
    }
    let waiting = s.brokers[0].session_queue_len("sub").unwrap();
    let bound = cfg.max_queued_messages
        + usize::from(cfg.max_inflight_messages)
        + cfg.max_retained_messages;
    assert!(
        waiting <= bound,
        "{waiting} messages waiting (bound {bound})"
    );
    // Acknowledging everything still delivers the retained set.
    let got = recv_acking(&mut s, c);
    let topics: std::collections::BTreeSet<String> =
        pubs(&got).into_iter().map(|p| p.topic).collect();
    assert_eq!(topics.len(), 4, "{topics:?}");
}
