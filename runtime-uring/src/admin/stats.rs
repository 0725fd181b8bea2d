//! The broker's numbers, read from every shard on demand (the shards count in plain
//! per-shard integers; nothing is shared on the hot path) and shown three ways: EMQX's
//! `/stats` and `/metrics` JSON, Prometheus text, and the `$SYS` tree.

use crate::broker::handle::ShardStats;
use broker_core::{DisconnectReason, Metrics};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// MQTT control packet type names, by type number (0 and 15 are not client packets).
pub const PACKET_NAMES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// Highest values seen of the gauges (EMQX's `.max`), across reads.
#[derive(Debug, Default)]
pub struct Maxima {
    connections: AtomicU64,
    live: AtomicU64,
    sessions: AtomicU64,
    subscriptions: AtomicU64,
    shared: AtomicU64,
    topics: AtomicU64,
    retained: AtomicU64,
}

/// Every shard's numbers, summed.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub shards: Vec<ShardStats>,
    pub m: Metrics,
    pub connections: u64,
    pub live: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    pub shared: u64,
    pub topics: u64,
    pub retained: u64,
    pub bytes_sent: u64,
    pub packets_sent: u64,
    pub max: [u64; 7],
}

fn add(a: &mut Metrics, b: &Metrics) {
    a.connections_accepted += b.connections_accepted;
    a.connects_refused += b.connects_refused;
    a.publish_received += b.publish_received;
    a.publish_sent += b.publish_sent;
    a.bytes_received += b.bytes_received;
    a.dropped_queue_full += b.dropped_queue_full;
    a.dropped_expired += b.dropped_expired;
    a.dropped_too_large += b.dropped_too_large;
    a.dropped_offline += b.dropped_offline;
    a.dropped_not_authorized += b.dropped_not_authorized;
    a.protocol_errors += b.protocol_errors;
    a.wills_published += b.wills_published;
    a.sessions_expired += b.sessions_expired;
    a.publishers_held += b.publishers_held;
    a.subscribers_stalled += b.subscribers_stalled;
    a.dropped_memory += b.dropped_memory;
    let (o, p) = (&mut a.ops, &b.ops);
    for (x, y) in o.packets_received.iter_mut().zip(p.packets_received) {
        *x += y;
    }
    for (x, y) in o.messages_received.iter_mut().zip(p.messages_received) {
        *x += y;
    }
    for (x, y) in o.messages_sent.iter_mut().zip(p.messages_sent) {
        *x += y;
    }
    for (x, y) in o.client_disconnected.iter_mut().zip(p.client_disconnected) {
        *x += y;
    }
    o.client_connected += p.client_connected;
    o.session_created += p.session_created;
    o.session_resumed += p.session_resumed;
    o.session_takenover += p.session_takenover;
    o.session_terminated += p.session_terminated;
    o.messages_published_by_broker += p.messages_published_by_broker;
}

/// Messages dropped, by reason (Prometheus label and `$SYS`/EMQX totals).
pub fn dropped(m: &Metrics) -> [(&'static str, u64); 6] {
    [
        ("queue_full", m.dropped_queue_full),
        ("expired", m.dropped_expired),
        ("too_large", m.dropped_too_large),
        ("offline_qos0", m.dropped_offline),
        ("not_authorized", m.dropped_not_authorized),
        ("memory_limit", m.dropped_memory),
    ]
}

impl Totals {
    /// Sums the shards' numbers and updates the maxima. `topics` is the number of
    /// distinct filters across shards when known (each shard counts its own; a filter
    /// subscribed on two shards is one topic).
    pub fn of(shards: Vec<ShardStats>, topics: Option<usize>, maxima: &Maxima) -> Self {
        let mut t = Totals::default();
        for s in &shards {
            add(&mut t.m, &s.metrics);
            t.connections += s.sessions as u64;
            t.live += s.live_connections as u64;
            t.sessions += s.sessions as u64;
            t.subscriptions += s.subscriptions as u64;
            t.shared += s.shared_subscriptions as u64;
            t.topics += s.topics as u64;
            // Every shard holds the whole retained set.
            t.retained = t.retained.max(s.retained as u64);
            t.bytes_sent += s.bytes_sent;
            t.packets_sent += s.packets_sent;
        }
        t.shards = shards;
        if let Some(n) = topics {
            t.topics = n as u64;
        }
        let pairs = [
            (&maxima.connections, t.connections),
            (&maxima.live, t.live),
            (&maxima.sessions, t.sessions),
            (&maxima.subscriptions, t.subscriptions),
            (&maxima.shared, t.shared),
            (&maxima.topics, t.topics),
            (&maxima.retained, t.retained),
        ];
        for (i, (cell, v)) in pairs.into_iter().enumerate() {
            let max = cell.fetch_max(v, Ordering::Relaxed).max(v);
            if let Some(slot) = t.max.get_mut(i) {
                *slot = max;
            }
        }
        t
    }

    pub fn dropped_total(&self) -> u64 {
        dropped(&self.m).iter().map(|(_, n)| n).sum()
    }

    pub fn messages_received(&self) -> u64 {
        self.m.ops.messages_received.iter().sum()
    }

    pub fn messages_sent(&self) -> u64 {
        self.m.ops.messages_sent.iter().sum()
    }

    pub fn packets_received(&self) -> u64 {
        self.m.ops.packets_received.iter().sum()
    }

    /// EMQX's `GET /stats` object (`aggregate=true`).
    pub fn stats_json(&self) -> Value {
        let names = [
            "connections",
            "live_connections",
            "sessions",
            "subscriptions",
            "subscriptions.shared",
            "topics",
            "retained",
        ];
        let values = [
            self.connections,
            self.live,
            self.sessions,
            self.subscriptions,
            self.shared,
            self.topics,
            self.retained,
        ];
        let mut o = Map::new();
        for ((name, v), max) in names.iter().zip(values).zip(self.max) {
            o.insert(format!("{name}.count"), json!(v));
            o.insert(format!("{name}.max"), json!(max));
        }
        Value::Object(o)
    }

    /// EMQX's `GET /metrics` object (`aggregate=true`): dotted counter names.
    pub fn metrics_json(&self) -> Value {
        let m = &self.m;
        let o = &m.ops;
        let mut v = Map::new();
        let mut put = |k: &str, n: u64| {
            v.insert(k.to_string(), json!(n));
        };
        put("bytes.received", m.bytes_received);
        put("bytes.sent", self.bytes_sent);
        put("packets.received", self.packets_received());
        put("packets.sent", self.packets_sent);
        for (i, name) in PACKET_NAMES.iter().enumerate() {
            if let (Some(n), true) = (o.packets_received.get(i), client_sends(i)) {
                put(&format!("packets.{name}.received"), *n);
            }
        }
        put("messages.received", self.messages_received());
        put("messages.sent", self.messages_sent());
        put("messages.delivered", self.messages_sent());
        put(
            "messages.publish",
            m.publish_received + o.messages_published_by_broker,
        );
        for q in 0..3 {
            put(
                &format!("messages.qos{q}.received"),
                o.messages_received.get(q).copied().unwrap_or(0),
            );
            put(
                &format!("messages.qos{q}.sent"),
                o.messages_sent.get(q).copied().unwrap_or(0),
            );
        }
        put("messages.dropped", self.dropped_total());
        put("delivery.dropped", self.dropped_total());
        put("delivery.dropped.queue_full", m.dropped_queue_full);
        put("delivery.dropped.expired", m.dropped_expired);
        put("delivery.dropped.too_large", m.dropped_too_large);
        put("delivery.dropped.qos0_msg", m.dropped_offline);
        put("messages.dropped.no_subscribers", 0);
        put(
            "client.connect",
            o.packets_received.get(1).copied().unwrap_or(0),
        );
        put("client.connected", o.client_connected);
        put("client.disconnected", o.client_disconnected.iter().sum());
        put("client.auth.failure", m.connects_refused);
        put("session.created", o.session_created);
        put("session.resumed", o.session_resumed);
        put("session.takenover", o.session_takenover);
        put("session.terminated", o.session_terminated);
        put("session.expired", m.sessions_expired);
        Value::Object(v)
    }

    /// Prometheus text format 0.0.4: totals as gauges, counters per shard.
    pub fn prometheus(&self, uptime_secs: u64, extra: &[Family]) -> String {
        let mut p = Prom::default();
        let gauges = [
            ("petrel_connections", "Connected clients.", self.live),
            (
                "petrel_sessions",
                "Sessions, connected or not.",
                self.sessions,
            ),
            (
                "petrel_subscriptions",
                "Subscriptions of all sessions.",
                self.subscriptions,
            ),
            (
                "petrel_subscriptions_shared",
                "Shared subscriptions.",
                self.shared,
            ),
            (
                "petrel_topics",
                "Distinct subscribed topic filters.",
                self.topics,
            ),
            (
                "petrel_retained_messages",
                "Retained messages.",
                self.retained,
            ),
            (
                "petrel_uptime_seconds",
                "Seconds since the broker started.",
                uptime_secs,
            ),
        ];
        for (name, help, v) in gauges {
            p.family(name, "gauge", help);
            p.sample(name, &[], v);
        }
        p.family(
            "petrel_shard_connections",
            "gauge",
            "Open network connections per shard.",
        );
        for s in &self.shards {
            p.sample(
                "petrel_shard_connections",
                &[("shard", &s.shard.to_string())],
                s.connections as u64,
            );
        }
        type Pick = fn(&ShardStats) -> Vec<(Vec<(&'static str, String)>, u64)>;
        let counters: [(&str, &str, Pick); 20] = [
            (
                "petrel_messages_received_total",
                "Application messages accepted from clients.",
                |s| by_qos(&s.metrics.ops.messages_received),
            ),
            (
                "petrel_messages_delivered_total",
                "Application messages written to clients.",
                |s| by_qos(&s.metrics.ops.messages_sent),
            ),
            (
                "petrel_messages_dropped_total",
                "Messages not delivered to a subscriber.",
                |s| {
                    dropped(&s.metrics)
                        .into_iter()
                        .map(|(r, n)| (vec![("reason", r.to_string())], n))
                        .collect()
                },
            ),
            (
                "petrel_messages_published_by_broker_total",
                "Messages published by the admin API, the embedding API or $SYS.",
                |s| one(s.metrics.ops.messages_published_by_broker),
            ),
            (
                "petrel_packets_received_total",
                "MQTT packets received, by type.",
                |s| {
                    s.metrics
                        .ops
                        .packets_received
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| client_sends(*i))
                        .map(|(i, n)| {
                            (
                                vec![(
                                    "type",
                                    PACKET_NAMES.get(i).copied().unwrap_or("?").to_string(),
                                )],
                                *n,
                            )
                        })
                        .collect()
                },
            ),
            ("petrel_packets_sent_total", "MQTT packets written.", |s| {
                one(s.packets_sent)
            }),
            (
                "petrel_bytes_received_total",
                "Bytes received from clients.",
                |s| one(s.metrics.bytes_received),
            ),
            (
                "petrel_bytes_sent_total",
                "Bytes written to clients.",
                |s| one(s.bytes_sent),
            ),
            (
                "petrel_connections_accepted_total",
                "Network connections accepted.",
                |s| one(s.metrics.connections_accepted),
            ),
            (
                "petrel_connections_refused_total",
                "CONNECTs refused.",
                |s| one(s.metrics.connects_refused),
            ),
            (
                "petrel_client_connected_total",
                "Successful CONNECTs.",
                |s| one(s.metrics.ops.client_connected),
            ),
            (
                "petrel_client_disconnected_total",
                "Connections of a session that ended, by reason.",
                |s| {
                    DisconnectReason::ALL
                        .iter()
                        .zip(s.metrics.ops.client_disconnected)
                        .map(|(r, n)| (vec![("reason", r.name().to_string())], n))
                        .collect()
                },
            ),
            ("petrel_session_created_total", "Sessions created.", |s| {
                one(s.metrics.ops.session_created)
            }),
            ("petrel_session_resumed_total", "Sessions resumed.", |s| {
                one(s.metrics.ops.session_resumed)
            }),
            (
                "petrel_session_takenover_total",
                "Connections taken over by a new one with the same client identifier.",
                |s| one(s.metrics.ops.session_takenover),
            ),
            (
                "petrel_session_terminated_total",
                "Sessions that ended.",
                |s| one(s.metrics.ops.session_terminated),
            ),
            (
                "petrel_session_expired_total",
                "Sessions whose expiry interval ran out.",
                |s| one(s.metrics.sessions_expired),
            ),
            (
                "petrel_wills_published_total",
                "Will messages published.",
                |s| one(s.metrics.wills_published),
            ),
            (
                "petrel_publishers_held_total",
                "Times a publisher was held back for a full subscriber queue.",
                |s| one(s.metrics.publishers_held),
            ),
            (
                "petrel_subscribers_stalled_total",
                "Subscribers disconnected for making no progress.",
                |s| one(s.metrics.subscribers_stalled),
            ),
        ];
        for (name, help, pick) in counters {
            p.family(name, "counter", help);
            for s in &self.shards {
                let shard = s.shard.to_string();
                for (mut labels, v) in pick(s) {
                    labels.push(("shard", shard.clone()));
                    let l: Vec<(&str, &str)> =
                        labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    p.sample(name, &l, v);
                }
            }
        }
        let store = [
            (
                "petrel_store_commits_total",
                "Store batches committed.",
                crate::store::COMMITS.load(Ordering::Relaxed),
            ),
            (
                "petrel_store_fsyncs_total",
                "Store fsyncs (durability = \"power\").",
                crate::store::FSYNCS.load(Ordering::Relaxed),
            ),
            (
                "petrel_store_corrupt_total",
                "Corrupt stores moved aside at start.",
                crate::store::CORRUPT_STORES.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in store {
            p.family(name, "counter", help);
            p.sample(name, &[], v);
        }
        for f in extra {
            p.family(&f.name, f.kind, &f.help);
            for (labels, v) in &f.samples {
                let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                p.sample(&f.name, &l, *v);
            }
        }
        p.out
    }
}

/// A metric family from outside the shards (webhooks).
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: &'static str,
    pub help: String,
    pub samples: Vec<(Vec<(&'static str, String)>, u64)>,
}

/// The cluster's families: members, fencing, and per other node what was forwarded to it
/// and what became of the confirmations.
pub fn cluster_families(c: &crate::cluster::Shared) -> Vec<Family> {
    use std::sync::atomic::Ordering::Relaxed;
    let k = &c.counters;
    let members = c.members.lock().map(|m| m.len()).unwrap_or(0) as u64;
    let peers = c.peers.lock().map(|p| p.clone()).unwrap_or_default();
    let per_peer = |f: fn(&crate::cluster::PeerCounters) -> u64| {
        peers
            .iter()
            .map(|(n, p)| (vec![("peer", n.clone())], f(p)))
            .collect()
    };
    let fam = |name: &str, kind, help: &str, samples| Family {
        name: name.into(),
        kind,
        help: help.into(),
        samples,
    };
    vec![
        fam(
            "petrel_cluster_nodes",
            "gauge",
            "Members of the cluster, this node included.",
            one(members),
        ),
        fam(
            "petrel_cluster_fenced",
            "gauge",
            "1 while this node cannot renew its lease (it serves no client).",
            one(u64::from(c.fenced.load(Relaxed))),
        ),
        fam(
            "petrel_cluster_forwarded_total",
            "counter",
            "Messages forwarded to another node (one per publish and node).",
            per_peer(|p| p.forwarded),
        ),
        fam(
            "petrel_cluster_confirmed_total",
            "counter",
            "QoS 1/2 messages another node confirmed.",
            per_peer(|p| p.confirmed),
        ),
        fam(
            "petrel_cluster_unconfirmed_total",
            "counter",
            "QoS 1/2 messages whose publisher was released without a confirmation (node gone).",
            per_peer(|p| p.unconfirmed),
        ),
        fam(
            "petrel_cluster_received_total",
            "counter",
            "Messages other nodes forwarded to this one.",
            one(k.received.load(Relaxed)),
        ),
        fam(
            "petrel_cluster_retained_sent_total",
            "counter",
            "Retained updates sent to the other nodes.",
            one(k.retained_out.load(Relaxed)),
        ),
        fam(
            "petrel_cluster_retained_received_total",
            "counter",
            "Retained updates received from other nodes.",
            one(k.retained_in.load(Relaxed)),
        ),
        fam(
            "petrel_cluster_takeovers_total",
            "counter",
            "Clients taken over from another node.",
            one(k.takeovers.load(Relaxed)),
        ),
        fam(
            "petrel_cluster_sessions_adopted_total",
            "counter",
            "Persistent sessions read back from the cluster's stream (their node let go or died).",
            one(k.adopted.load(Relaxed)),
        ),
        fam(
            "petrel_cluster_kept_total",
            "counter",
            "Messages for a node that is gone (or died before confirming them), kept in the cluster's stream for its sessions.",
            one(k.kept.load(Relaxed)),
        ),
        fam(
            "petrel_cluster_claims_refused_total",
            "counter",
            "CONNECTs refused because this node could not own the client identifier.",
            one(k.claims_refused.load(Relaxed)),
        ),
    ]
}

fn client_sends(packet_type: usize) -> bool {
    matches!(packet_type, 1 | 3..=8 | 10 | 12 | 14 | 15)
}

fn one(v: u64) -> Vec<(Vec<(&'static str, String)>, u64)> {
    vec![(Vec::new(), v)]
}

fn by_qos(v: &[u64; 3]) -> Vec<(Vec<(&'static str, String)>, u64)> {
    v.iter()
        .enumerate()
        .map(|(q, n)| (vec![("qos", q.to_string())], *n))
        .collect()
}

/// Prometheus text format 0.0.4: HELP and TYPE lines, then samples.
#[derive(Debug, Default)]
struct Prom {
    out: String,
}

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let esc = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{esc}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_families_and_escapes_labels() {
        let mut s = ShardStats::default();
        s.metrics.ops.messages_received = [1, 2, 3];
        s.sessions = 4;
        s.live_connections = 3;
        let t = Totals::of(
            vec![s.clone(), ShardStats { shard: 1, ..s }],
            None,
            &Maxima::default(),
        );
        let fam = Family {
            name: "petrel_webhook_dropped_total".into(),
            kind: "counter",
            help: "x".into(),
            samples: vec![(vec![("url", "http://a/\"b\"".into())], 7)],
        };
        let text = t.prometheus(5, &[fam]);
        assert!(text.contains("# TYPE petrel_connections gauge\npetrel_connections 6\n"));
        assert!(text.contains("petrel_messages_received_total{qos=\"2\",shard=\"1\"} 3\n"));
        assert!(text.contains("petrel_webhook_dropped_total{url=\"http://a/\\\"b\\\"\"} 7\n"));
        assert_eq!(t.stats_json()["sessions.count"], 8);
        assert_eq!(t.metrics_json()["messages.received"], 12);
    }
}
