//! `[[kafka]]`: MQTT messages to Kafka topics (routes by topic filter, and SMQ's
//! `$queue/<name>` to the first block's topic `<name>`).

use toml::de::DeValue;
use toml::Spanned;

use super::parse::Parser;

pub(super) const KAFKA_KEYS: &[&str] = &["name", "bootstrap", "routes", "linger_ms", "max_pending"];

/// One MQTT filter to one Kafka topic (SMQ's mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRoute {
    /// Unique among all blocks' routes (default `<block>.<n>`, n from 1): what the admin
    /// API's `DELETE /api/v5/bridges/{name}` removes.
    pub name: String,
    pub filter: String,
    pub topic: String,
}

/// One `[[kafka]]`: a Kafka cluster and what goes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub name: String,
    /// `host:port` of brokers to learn the cluster from.
    pub bootstrap: Vec<String>,
    pub routes: Vec<KafkaRoute>,
    /// How long records wait to be batched with others (default 5 ms).
    pub linger_ms: u32,
    /// QoS 1/2 messages waiting for Kafka beyond which their publishers are held back,
    /// and QoS 0 messages beyond which they are dropped (default 10000).
    pub max_pending: usize,
}

/// Whether `s` may name a Kafka topic (Kafka's rule: 1 to 249 of `[a-zA-Z0-9._-]`).
pub fn valid_kafka_topic(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Parser<'_> {
    pub(super) fn kafkas(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<KafkaConfig> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type("kafka", v, "[[kafka]] tables");
            return Vec::new();
        };
        let mut out: Vec<KafkaConfig> = Vec::new();
        for item in items.iter() {
            let Some(k) = self.kafka(item) else {
                continue;
            };
            if out.iter().any(|o| o.name == k.name) {
                self.error(
                    &item.span(),
                    Some("kafka"),
                    format!("two [[kafka]] blocks are named \"{}\"", k.name),
                );
                continue;
            }
            out.push(k);
        }
        out
    }

    fn kafka(&mut self, item: &Spanned<DeValue<'_>>) -> Option<KafkaConfig> {
        let t = self.table("kafka", item)?;
        let mut k = KafkaConfig {
            name: String::new(),
            bootstrap: Vec::new(),
            routes: Vec::new(),
            linger_ms: 5,
            max_pending: 10_000,
        };
        for (key, v) in t.iter() {
            let Some(known) = self.known(KAFKA_KEYS, key, "[kafka]") else {
                continue;
            };
            match known {
                "name" => {
                    if let Some(s) = self.string(known, v) {
                        if super::valid_name(&s) {
                            k.name = s;
                        } else {
                            self.error(
                                &v.span(),
                                Some(known),
                                format!(
                                    "\"name\" = \"{s}\": use 1 to 64 letters, digits, '-' or '_'"
                                ),
                            );
                        }
                    }
                }
                "bootstrap" => {
                    let DeValue::Array(a) = v.get_ref() else {
                        self.wrong_type(known, v, "a list of \"host:port\"");
                        continue;
                    };
                    for item in a.iter() {
                        let Some(s) = self.string(known, item) else {
                            continue;
                        };
                        if super::split_address(&s, 9092).is_none() {
                            self.error(
                                &item.span(),
                                Some(known),
                                format!("\"{s}\" is not \"host:port\""),
                            );
                        } else {
                            k.bootstrap.push(s);
                        }
                    }
                }
                "routes" => self.kafka_routes(v, &mut k.routes),
                "linger_ms" => {
                    if let Some(n) = self.integer(known, v, 0, 10_000, "from 0 to 10000 ms") {
                        k.linger_ms = n as u32;
                    }
                }
                _ => {
                    if let Some(n) = self.integer(known, v, 1, 10_000_000, "from 1 to 10000000") {
                        k.max_pending = n as usize;
                    }
                }
            }
        }
        for (i, r) in k.routes.iter_mut().enumerate() {
            if r.name.is_empty() {
                r.name = format!("{}.{}", k.name, i + 1);
            }
        }
        if k.name.is_empty() || k.bootstrap.is_empty() {
            self.error(
                &item.span(),
                Some("kafka"),
                "a [[kafka]] needs \"name\" and \"bootstrap\"",
            );
            return None;
        }
        Some(k)
    }

    fn kafka_routes(&mut self, v: &Spanned<DeValue<'_>>, out: &mut Vec<KafkaRoute>) {
        let DeValue::Array(a) = v.get_ref() else {
            self.wrong_type(
                "routes",
                v,
                "a list of { filter = \"...\", topic = \"...\" }",
            );
            return;
        };
        for item in a.iter() {
            let DeValue::Table(t) = item.get_ref() else {
                self.wrong_type("routes", item, "{ filter = \"...\", topic = \"...\" }");
                continue;
            };
            let (mut filter, mut topic, mut name) = (None, None, None);
            for (key, v) in t.iter() {
                match key.get_ref().as_ref() {
                    "filter" => filter = self.string("filter", v),
                    "topic" => topic = self.string("topic", v),
                    "name" => name = self.string("name", v),
                    other => self.error(
                        &key.span(),
                        Some(other),
                        format!(
                            "unknown key \"{other}\" in a Kafka route; known: name, filter, topic"
                        ),
                    ),
                }
            }
            let (Some(filter), Some(topic)) = (filter, topic) else {
                self.error(
                    &item.span(),
                    Some("routes"),
                    "a route needs \"filter\" and \"topic\"",
                );
                continue;
            };
            if broker_core::mqtt_proto::topic::validate_filter(&filter).is_err() {
                self.error(
                    &item.span(),
                    Some("filter"),
                    format!("\"{filter}\" is not a valid topic filter"),
                );
                continue;
            }
            if !valid_kafka_topic(&topic) {
                self.error(
                    &item.span(),
                    Some("topic"),
                    format!(
                        "\"{topic}\" is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
                    ),
                );
                continue;
            }
            out.push(KafkaRoute {
                name: name.unwrap_or_default(),
                filter,
                topic,
            });
        }
    }
}
