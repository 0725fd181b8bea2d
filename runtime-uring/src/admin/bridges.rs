//! `/api/v5/bridges`: the MQTT bridges (from the configuration) and the Kafka mappings
//! (from the configuration, added and removed at run time), and their metrics.

use super::api::Reply;
use super::stats::Family;
use super::Admin;
use crate::config::{valid_kafka_topic, KafkaRoute};
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;

/// `GET /api/v5/bridges`: every MQTT bridge and every Kafka mapping.
pub fn list(admin: &Admin) -> Value {
    let mut out: Vec<Value> = admin
        .bridges
        .iter()
        .map(|b| {
            json!({
                "type": "mqtt",
                "name": b.name,
                "status": if b.connected.load(Relaxed) { "connected" } else { "disconnected" },
                "server": b.address(),
                "local_status": if b.local_connected.load(Relaxed) { "connected" } else { "disconnected" },
                "queued": b.queued.load(Relaxed),
                "inflight": b.inflight.load(Relaxed),
                "forwarded_out": b.forwarded_out.load(Relaxed),
                "forwarded_in": b.forwarded_in.load(Relaxed),
                "dropped": b.dropped.load(Relaxed),
                "refused": b.refused.load(Relaxed),
                "connect_failures": b.failures.load(Relaxed),
                "last_error": b.last_error(),
            })
        })
        .collect();
    if let Some(k) = &admin.kafka {
        for block in &k.shared.blocks {
            for r in block.routes() {
                out.push(json!({
                    "type": "kafka",
                    "name": r.name,
                    "kafka": block.name,
                    "filter": r.filter,
                    "topic": r.topic,
                    "status": if block.connected.load(Relaxed) { "connected" } else { "disconnected" },
                    "last_error": block.last_error(),
                }));
            }
        }
    }
    Value::Array(out)
}

/// `POST /api/v5/bridges` with `{"name", "filter", "topic"[, "kafka"]}`: adds (or
/// replaces) a Kafka mapping; `kafka` names the `[[kafka]]` block (default: the first).
pub fn add(admin: &Admin, body: &Value) -> Reply {
    let Some(k) = &admin.kafka else {
        return super::api::bad(
            "no [[kafka]] is configured (MQTT bridges come from the configuration)",
        );
    };
    let field = |f: &str| body.get(f).and_then(Value::as_str).map(str::to_owned);
    let (Some(name), Some(filter), Some(topic)) = (field("name"), field("filter"), field("topic"))
    else {
        return super::api::bad("\"name\", \"filter\" and \"topic\" are required");
    };
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return super::api::bad("\"name\": 1 to 128 letters, digits, '-', '_' or '.'");
    }
    if broker_core::mqtt_proto::topic::validate_filter(&filter).is_err() {
        return super::api::bad(format!(
            "\"filter\" = {filter:?} is not a valid topic filter"
        ));
    }
    if !valid_kafka_topic(&topic) {
        return super::api::bad(format!(
            "\"topic\" = {topic:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
        ));
    }
    if admin.bridges.iter().any(|b| b.name == name) {
        return super::api::bad(format!("{name:?} names an MQTT bridge"));
    }
    let block = match field("kafka") {
        Some(b) => b,
        None => match k.shared.blocks.first() {
            Some(b) => b.name.clone(),
            None => return super::api::bad("no [[kafka]] block"),
        },
    };
    if !k.shared.blocks.iter().any(|b| b.name == block) {
        return super::api::error(404, "NOT_FOUND", format!("no [[kafka]] named {block:?}"));
    }
    // A name moves between blocks rather than appearing twice.
    k.remove_route(&name);
    let route = KafkaRoute {
        name: name.clone(),
        filter: filter.clone(),
        topic: topic.clone(),
    };
    if !k.add_route(&block, route) {
        return super::api::error(
            503,
            "SERVICE_UNAVAILABLE",
            "the Kafka thread is not running",
        );
    }
    super::api::reply(
        201,
        json!({"type": "kafka", "name": name, "kafka": block, "filter": filter, "topic": topic}),
    )
}

/// `DELETE /api/v5/bridges/{name}`: removes a Kafka mapping.
pub fn remove(admin: &Admin, name: &str) -> Reply {
    if admin.bridges.iter().any(|b| b.name == name) {
        return super::api::bad(format!(
            "{name:?} is an MQTT bridge: remove it from the configuration"
        ));
    }
    match &admin.kafka {
        Some(k) if k.remove_route(name) => super::api::no_content(),
        _ => super::api::error(404, "NOT_FOUND", format!("no bridge named {name:?}")),
    }
}

/// The bridges' metric families.
pub fn families(admin: &Admin) -> Vec<Family> {
    let per = |f: fn(&crate::bridge::BridgeStatus) -> u64| {
        admin
            .bridges
            .iter()
            .map(|b| (vec![("bridge", b.name.clone())], f(b)))
            .collect::<Vec<_>>()
    };
    let fam = |name: &str, kind, help: &str, samples| Family {
        name: name.into(),
        kind,
        help: help.into(),
        samples,
    };
    let mut out = Vec::new();
    if !admin.bridges.is_empty() {
        out.extend([
            fam(
                "petrel_bridge_connected",
                "gauge",
                "1 while the bridge is connected to its remote broker.",
                per(|b| u64::from(b.connected.load(Relaxed))),
            ),
            fam(
                "petrel_bridge_queued",
                "gauge",
                "Messages queued for the remote broker or in flight to it.",
                per(|b| b.queued.load(Relaxed)),
            ),
            fam(
                "petrel_bridge_inflight",
                "gauge",
                "Local QoS 1/2 messages forwarded and waiting for the remote acknowledgement.",
                per(|b| b.inflight.load(Relaxed)),
            ),
            fam(
                "petrel_bridge_forwarded_total",
                "counter",
                "Messages forwarded (direction out: to the remote broker; in: from it).",
                admin
                    .bridges
                    .iter()
                    .flat_map(|b| {
                        [
                            (
                                vec![("bridge", b.name.clone()), ("direction", "out".into())],
                                b.forwarded_out.load(Relaxed),
                            ),
                            (
                                vec![("bridge", b.name.clone()), ("direction", "in".into())],
                                b.forwarded_in.load(Relaxed),
                            ),
                        ]
                    })
                    .collect(),
            ),
            fam(
                "petrel_bridge_dropped_total",
                "counter",
                "QoS 0 messages dropped because a bridge queue was full.",
                per(|b| b.dropped.load(Relaxed)),
            ),
            fam(
                "petrel_bridge_refused_total",
                "counter",
                "Messages the receiving broker refused with an error reason code.",
                per(|b| b.refused.load(Relaxed)),
            ),
            fam(
                "petrel_bridge_connect_failures_total",
                "counter",
                "Connection attempts to the remote broker that failed or connections lost.",
                per(|b| b.failures.load(Relaxed)),
            ),
        ]);
    }
    if let Some(k) = &admin.kafka {
        let s = &k.shared;
        let per_block = |f: fn(&crate::kafka::KafkaStatus) -> u64| {
            s.blocks
                .iter()
                .map(|b| (vec![("kafka", b.name.clone())], f(b)))
                .collect::<Vec<_>>()
        };
        let one = |v: u64| vec![(Vec::new(), v)];
        out.extend([
            fam(
                "petrel_kafka_connected",
                "gauge",
                "1 while Kafka answers (the last produce or connection attempt succeeded).",
                per_block(|b| u64::from(b.connected.load(Relaxed))),
            ),
            fam(
                "petrel_kafka_produced_total",
                "counter",
                "Records Kafka acknowledged (acks=all).",
                per_block(|b| b.produced.load(Relaxed)),
            ),
            fam(
                "petrel_kafka_refused_total",
                "counter",
                "Records Kafka refused for good (too large) and dropped.",
                per_block(|b| b.refused.load(Relaxed)),
            ),
            fam(
                "petrel_kafka_retried_total",
                "counter",
                "Records produced again after a failed attempt.",
                per_block(|b| b.retried.load(Relaxed)),
            ),
            fam(
                "petrel_kafka_pending",
                "gauge",
                "Messages waiting for Kafka (their QoS 1/2 publishers wait for PUBACK/PUBREC).",
                one(s.pending.load(Relaxed)),
            ),
            fam(
                "petrel_kafka_dropped_total",
                "counter",
                "QoS 0 messages dropped because max_pending messages were waiting for Kafka.",
                one(s.dropped.load(Relaxed)),
            ),
            fam(
                "petrel_kafka_held_total",
                "counter",
                "Publishers held because max_pending messages were waiting for Kafka.",
                one(s.held.load(Relaxed)),
            ),
            fam(
                "petrel_kafka_unrouted_total",
                "counter",
                "Messages that matched no mapping any more when they reached the Kafka thread.",
                one(s.unrouted.load(Relaxed)),
            ),
        ]);
    }
    out
}
