//! Mosquitto's `$SYS` tree, name for name: retained QoS 0 messages published by the
//! broker every `sys_interval` seconds, read from the same per-shard counters as the
//! metrics. Runs on its own thread and talks to the shards through a `BrokerHandle`.

use super::stats::{Maxima, Totals};
use crate::broker::handle::{BrokerHandle, PublishRequest};
use broker_core::mqtt_proto::QoS;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Mosquitto's load averages: exponentially damped per-minute rates over 1, 5 and 15
/// minutes.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    last: u64,
    avg: [f64; 3],
}

impl Load {
    fn update(&mut self, value: u64, interval: f64) {
        let per_min = value.saturating_sub(self.last) as f64 * 60.0 / interval;
        self.last = value;
        for (avg, window) in self.avg.iter_mut().zip([60.0, 300.0, 900.0]) {
            let k = (-interval / window).exp();
            *avg = per_min + k * (*avg - per_min);
        }
    }
}

/// The topics and values of one round (every topic is under `$SYS/broker/`).
fn tree(t: &Totals, uptime: u64, loads: &[(&str, Load)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, val: String| v.push((format!("$SYS/broker/{k}"), val));
    put(
        "version",
        format!("petrel version {}", env!("CARGO_PKG_VERSION")),
    );
    put("uptime", format!("{uptime} seconds"));
    let disconnected = t.sessions.saturating_sub(t.live);
    put("clients/total", t.sessions.to_string());
    put("clients/connected", t.live.to_string());
    put("clients/active", t.live.to_string());
    put("clients/disconnected", disconnected.to_string());
    put("clients/inactive", disconnected.to_string());
    put("clients/maximum", t.max[1].to_string());
    put("clients/expired", t.m.sessions_expired.to_string());
    put("messages/received", t.packets_received().to_string());
    put("messages/sent", t.packets_sent.to_string());
    put("messages/stored", t.retained.to_string());
    put("store/messages/count", t.retained.to_string());
    put(
        "publish/messages/received",
        t.messages_received().to_string(),
    );
    put("publish/messages/sent", t.messages_sent().to_string());
    put("publish/messages/dropped", t.dropped_total().to_string());
    put("bytes/received", t.m.bytes_received.to_string());
    put("bytes/sent", t.bytes_sent.to_string());
    put("packet/out/count", t.packets_sent.to_string());
    put("packet/out/bytes", t.bytes_sent.to_string());
    put("subscriptions/count", t.subscriptions.to_string());
    put("shared_subscriptions/count", t.shared.to_string());
    put("retained messages/count", t.retained.to_string());
    put(
        "connections/socket/count",
        t.shards
            .iter()
            .map(|s| s.connections)
            .sum::<usize>()
            .to_string(),
    );
    if let Some(rss) = crate::broker::memory::rss_bytes() {
        put("heap/current", rss.to_string());
    }
    for (name, load) in loads {
        for (window, avg) in ["1min", "5min", "15min"].iter().zip(load.avg) {
            put(&format!("load/{name}/{window}"), format!("{avg:.2}"));
        }
    }
    v
}

/// Publishes the tree every `interval` until stopped.
pub fn spawn(
    handle: BrokerHandle,
    interval: Duration,
    maxima: Arc<Maxima>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("petrel-sys".into())
        .spawn(move || {
            let secs = interval.as_secs_f64().max(1.0);
            let names = [
                "messages/received",
                "messages/sent",
                "publish/received",
                "publish/sent",
                "publish/dropped",
                "bytes/received",
                "bytes/sent",
                "connections",
                "sockets",
            ];
            let mut loads: Vec<(&str, Load)> =
                names.iter().map(|n| (*n, Load::default())).collect();
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                let Ok(stats) = handle.stats() else {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                };
                let t = Totals::of(stats, None, &maxima);
                let values = [
                    t.packets_received(),
                    t.packets_sent,
                    t.messages_received(),
                    t.messages_sent(),
                    t.dropped_total(),
                    t.m.bytes_received,
                    t.bytes_sent,
                    t.m.ops.client_connected,
                    t.m.connections_accepted,
                ];
                for ((_, load), v) in loads.iter_mut().zip(values) {
                    if first {
                        load.last = v;
                    } else {
                        load.update(v, secs);
                    }
                }
                first = false;
                for (topic, value) in tree(&t, handle.uptime().as_secs(), &loads) {
                    let mut req = PublishRequest::new(topic, value.into_bytes(), QoS::AtMostOnce);
                    req.retain = true;
                    if handle.publish(req).is_err() {
                        break;
                    }
                }
                // Sleep in short steps so that a stop is seen soon.
                let mut left = interval;
                while !left.is_zero() && !stop.load(Ordering::Relaxed) {
                    let step = left.min(Duration::from_millis(200));
                    std::thread::sleep(step);
                    left -= step;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_converges_to_the_per_minute_rate() {
        let mut l = Load::default();
        for i in 1..=200 {
            l.update(i * 10, 10.0); // 10 per 10 s = 60 per minute
        }
        assert!((l.avg[0] - 60.0).abs() < 0.5, "{:?}", l.avg);
        assert!(l.avg[2] > 50.0 && l.avg[2] <= 60.0, "{:?}", l.avg);
    }

    #[test]
    fn tree_has_mosquittos_names() {
        let t = Totals::default();
        let names: Vec<String> = tree(&t, 3, &[("bytes/sent", Load::default())])
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for n in [
            "$SYS/broker/version",
            "$SYS/broker/uptime",
            "$SYS/broker/clients/connected",
            "$SYS/broker/retained messages/count",
            "$SYS/broker/load/bytes/sent/15min",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing");
        }
    }
}
