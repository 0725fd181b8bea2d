//! `[cluster]`: this node's name and the etcd and NATS servers it joins.

use toml::de::DeValue;
use toml::Spanned;

use super::parse::{At, Parser};

pub(super) const CLUSTER_KEYS: &[&str] = &[
    "node_id",
    "etcd",
    "nats",
    "name",
    "lease_ttl",
    "jetstream_replicas",
];

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Unique per node: letters, digits, `-` and `_` (it names etcd keys, NATS subjects
    /// and node-local files).
    pub node_id: String,
    /// etcd endpoints (`http://host:port`).
    pub etcd: Vec<String>,
    /// NATS servers (`nats://host:port`).
    pub nats: Vec<String>,
    /// The cluster's name: the prefix of its etcd keys and NATS subjects (default
    /// `petrel`), so clusters can share servers.
    pub name: String,
    /// The membership lease's time to live, seconds (default 5).
    pub lease_ttl: u32,
    /// Replicas of the cluster's JetStream data (default 1; 3 in production, with a
    /// NATS cluster of at least three servers).
    pub jetstream_replicas: u8,
}

pub const DEFAULT_LEASE_TTL: u32 = 5;

/// Whether `s` may name a node or a cluster.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Parser<'_> {
    pub(super) fn cluster(&mut self, v: &Spanned<DeValue<'_>>, at: &At) -> Option<ClusterConfig> {
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type("cluster", v, "a table");
            return None;
        };
        let mut c = ClusterConfig {
            node_id: String::new(),
            etcd: Vec::new(),
            nats: Vec::new(),
            name: "petrel".into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            jetstream_replicas: 1,
        };
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let Some(key) = CLUSTER_KEYS.iter().copied().find(|x| *x == name) else {
                self.error(
                    &k.span(),
                    Some(name),
                    format!(
                        "unknown key \"{name}\" in [cluster]; known: {}",
                        CLUSTER_KEYS.join(", ")
                    ),
                );
                continue;
            };
            match key {
                "node_id" | "name" => {
                    let Some(s) = self.string(key, v) else {
                        continue;
                    };
                    if !valid_name(&s) {
                        self.error(
                            &v.span(),
                            Some(key),
                            format!("\"{key}\" = \"{s}\": use 1 to 64 letters, digits, '-' or '_'"),
                        );
                    } else if key == "node_id" {
                        c.node_id = s;
                    } else {
                        c.name = s;
                    }
                }
                "etcd" | "nats" => {
                    let scheme = if key == "etcd" { "http" } else { "nats" };
                    let mut list = Vec::new();
                    let DeValue::Array(items) = v.get_ref() else {
                        self.wrong_type(key, v, "a list of URLs");
                        continue;
                    };
                    for item in items.iter() {
                        let Some(s) = self.string(key, item) else {
                            continue;
                        };
                        match url::Url::parse(&s) {
                            Ok(u) if u.scheme() == scheme && u.host().is_some() => list.push(s),
                            _ => self.error(
                                &item.span(),
                                Some(key),
                                format!("\"{s}\" must be a {scheme}:// URL with a host and port"),
                            ),
                        }
                    }
                    if key == "etcd" {
                        c.etcd = list;
                    } else {
                        c.nats = list;
                    }
                }
                "jetstream_replicas" => {
                    if let Some(n) = self.integer(key, v, 1, 5, "from 1 to 5 (JetStream's limit)") {
                        c.jetstream_replicas = u8::try_from(n).unwrap_or(1);
                    }
                }
                _ => {
                    if let Some(n) = self.integer(key, v, 2, 600, "from 2 to 600 seconds") {
                        c.lease_ttl = u32::try_from(n).unwrap_or(DEFAULT_LEASE_TTL);
                    }
                }
            }
        }
        if c.node_id.is_empty() || c.etcd.is_empty() || c.nats.is_empty() {
            self.error(
                &at.key,
                Some("cluster"),
                "[cluster] needs \"node_id\", \"etcd\" and \"nats\"",
            );
            return None;
        }
        Some(c)
    }
}
