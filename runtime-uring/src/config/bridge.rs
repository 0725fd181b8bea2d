//! `[[bridge]]`: connections to other brokers, with Mosquitto's bridge keys and meanings
//! (`connection` is `name` here).

use std::path::PathBuf;

use broker_core::bridge::TopicRule;
use broker_core::mqtt_proto::ProtocolVersion;
use toml::de::DeValue;
use toml::Spanned;

use super::parse::Parser;

pub(super) const BRIDGE_KEYS: &[&str] = &[
    "name",
    "address",
    "topic",
    "remote_clientid",
    "local_clientid",
    "remote_username",
    "remote_password",
    "cleansession",
    "bridge_protocol_version",
    "try_private",
    "restart_timeout",
    "keepalive_interval",
    "bridge_cafile",
    "bridge_certfile",
    "bridge_keyfile",
    "bridge_max_queued",
];

/// One `[[bridge]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Mosquitto's `connection`: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// `host:port` (port 1883, or 8883 with TLS, when absent), tried in order.
    pub addresses: Vec<String>,
    pub topics: Vec<TopicRule>,
    /// Default `<name>` (Mosquitto: `<connection>.<hostname>`).
    pub remote_clientid: String,
    /// The bridge's session on this broker (default `local.<remote_clientid>`).
    pub local_clientid: String,
    pub remote_username: Option<String>,
    pub remote_password: Option<String>,
    /// Clean session on the remote broker (default false, as in Mosquitto).
    pub cleansession: bool,
    pub protocol: ProtocolVersion,
    /// 3.1.1: set the bridge bit (default true).
    pub try_private: bool,
    /// Reconnection delay: base and cap of the back-off, seconds (equal: a constant).
    pub restart_timeout: (u32, u32),
    pub keepalive: u16,
    /// TLS to the remote broker when set (the CA that signed its certificate).
    pub cafile: Option<PathBuf>,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// QoS 0 messages held for the remote broker while it is away (QoS 1/2 wait in the
    /// bridge's session here instead).
    pub max_queued: usize,
}

/// Mosquitto's default `restart_timeout` (base 5 s, cap 30 s).
pub const DEFAULT_RESTART_TIMEOUT: (u32, u32) = (5, 30);

fn valid_bridge_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Parser<'_> {
    pub(super) fn bridges(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<BridgeConfig> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type("bridge", v, "[[bridge]] tables");
            return Vec::new();
        };
        let mut out: Vec<BridgeConfig> = Vec::new();
        for item in items.iter() {
            let Some(b) = self.bridge(item) else {
                continue;
            };
            if out.iter().any(|o| o.name == b.name) {
                self.error(
                    &item.span(),
                    Some("bridge"),
                    format!("two bridges are named \"{}\"", b.name),
                );
                continue;
            }
            if out.iter().any(|o| o.local_clientid == b.local_clientid) {
                // They would take each other's session over, again and again.
                self.error(
                    &item.span(),
                    Some("bridge"),
                    format!(
                        "two bridges use local_clientid \"{}\" (set remote_clientid or local_clientid)",
                        b.local_clientid
                    ),
                );
                continue;
            }
            out.push(b);
        }
        out
    }

    fn bridge(&mut self, item: &Spanned<DeValue<'_>>) -> Option<BridgeConfig> {
        let t = self.table("bridge", item)?;
        let mut b = BridgeConfig {
            name: String::new(),
            addresses: Vec::new(),
            topics: Vec::new(),
            remote_clientid: String::new(),
            local_clientid: String::new(),
            remote_username: None,
            remote_password: None,
            cleansession: false,
            protocol: ProtocolVersion::V3_1_1,
            try_private: true,
            restart_timeout: DEFAULT_RESTART_TIMEOUT,
            keepalive: 60,
            cafile: None,
            certfile: None,
            keyfile: None,
            max_queued: 10_000,
        };
        for (k, v) in t.iter() {
            let Some(key) = self.known(BRIDGE_KEYS, k, "[bridge]") else {
                continue;
            };
            match key {
                "name" => {
                    if let Some(s) = self.string(key, v) {
                        if valid_bridge_name(&s) {
                            b.name = s;
                        } else {
                            self.error(
                                &v.span(),
                                Some(key),
                                format!("\"name\" = \"{s}\": use 1 to 64 letters, digits, '-', '_' or '.'"),
                            );
                        }
                    }
                }
                "address" | "topic" => {
                    let list = match v.get_ref() {
                        DeValue::String(_) => self.string(key, v).into_iter().collect(),
                        DeValue::Array(a) => a.iter().filter_map(|s| self.string(key, s)).collect(),
                        _ => {
                            self.wrong_type(key, v, "a string or a list of strings");
                            Vec::new()
                        }
                    };
                    if key == "address" {
                        for a in &list {
                            if split_address(a, 1883).is_none() {
                                self.error(
                                    &v.span(),
                                    Some(key),
                                    format!("\"{a}\" is not \"host\" or \"host:port\""),
                                );
                            }
                        }
                        b.addresses = list;
                    } else {
                        for line in &list {
                            match TopicRule::parse(line) {
                                Ok(r) => b.topics.push(r),
                                Err(e) => self.error(
                                    &v.span(),
                                    Some(key),
                                    format!("topic \"{line}\": {e} (Mosquitto's form: pattern [[[out|in|both] qos] local-prefix remote-prefix])"),
                                ),
                            }
                        }
                    }
                }
                "remote_clientid" | "local_clientid" | "remote_username" | "remote_password" => {
                    let Some(s) = self.string(key, v) else {
                        continue;
                    };
                    match key {
                        "remote_clientid" => b.remote_clientid = s,
                        "local_clientid" => b.local_clientid = s,
                        "remote_username" => b.remote_username = Some(s),
                        _ => b.remote_password = Some(s),
                    }
                }
                "cleansession" | "try_private" => {
                    if let Some(x) = self.boolean(key, v) {
                        if key == "cleansession" {
                            b.cleansession = x;
                        } else {
                            b.try_private = x;
                        }
                    }
                }
                "bridge_protocol_version" => {
                    let Some(s) = self.string(key, v) else {
                        continue;
                    };
                    b.protocol = match s.as_str() {
                        "mqttv31" => ProtocolVersion::V3_1,
                        "mqttv311" => ProtocolVersion::V3_1_1,
                        "mqttv50" => ProtocolVersion::V5,
                        _ => {
                            self.error(
                                &v.span(),
                                Some(key),
                                format!("\"{s}\": use mqttv31, mqttv311 or mqttv50"),
                            );
                            continue;
                        }
                    };
                }
                "restart_timeout" => {
                    let why = "from 1 to 3600 seconds";
                    match v.get_ref() {
                        DeValue::Array(a) if a.len() == 2 => {
                            let base = a.first().and_then(|x| self.integer(key, x, 1, 3600, why));
                            let cap = a.get(1).and_then(|x| self.integer(key, x, 1, 3600, why));
                            if let (Some(base), Some(cap)) = (base, cap) {
                                b.restart_timeout = (base as u32, cap.max(base) as u32);
                            }
                        }
                        DeValue::Integer(_) => {
                            if let Some(n) = self.integer(key, v, 1, 3600, why) {
                                b.restart_timeout = (n as u32, n as u32);
                            }
                        }
                        _ => self.wrong_type(key, v, "seconds, or [base, cap] of the back-off"),
                    }
                }
                "keepalive_interval" => {
                    if let Some(n) = self.integer(key, v, 5, 65535, "from 5 to 65535 seconds") {
                        b.keepalive = n as u16;
                    }
                }
                "bridge_max_queued" => {
                    if let Some(n) = self.integer(key, v, 1, 100_000_000, "from 1 to 100000000") {
                        b.max_queued = n as usize;
                    }
                }
                _ => {
                    let Some(p) = self.path(key, v) else {
                        continue;
                    };
                    match key {
                        "bridge_cafile" => b.cafile = Some(p),
                        "bridge_certfile" => b.certfile = Some(p),
                        _ => b.keyfile = Some(p),
                    }
                }
            }
        }
        if b.name.is_empty() || b.addresses.is_empty() || b.topics.is_empty() {
            self.error(
                &item.span(),
                Some("bridge"),
                "a [[bridge]] needs \"name\", \"address\" and at least one \"topic\"",
            );
            return None;
        }
        if b.certfile.is_some() != b.keyfile.is_some() {
            self.error(
                &item.span(),
                Some("bridge"),
                "\"bridge_certfile\" and \"bridge_keyfile\" go together",
            );
            return None;
        }
        if b.certfile.is_some() && b.cafile.is_none() {
            self.error(
                &item.span(),
                Some("bridge"),
                "a client certificate needs TLS: set \"bridge_cafile\" too",
            );
            return None;
        }
        if b.remote_clientid.is_empty() {
            b.remote_clientid = b.name.clone();
        }
        if b.local_clientid.is_empty() {
            b.local_clientid = format!("local.{}", b.remote_clientid);
        }
        Some(b)
    }
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address, with `default_port`.
pub fn split_address(a: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = a.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => default_port,
            None => return None,
        };
        return (!host.is_empty()).then(|| (host.to_owned(), port));
    }
    match a.rsplit_once(':') {
        // More than one colon: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Some((a.to_owned(), default_port)),
        Some((host, port)) => {
            Some((host.to_owned(), port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
        }
        None => (!a.is_empty()).then(|| (a.to_owned(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::split_address;

    #[test]
    fn addresses_split_like_mosquittos() {
        assert_eq!(split_address("h:1884", 1883), Some(("h".into(), 1884)));
        assert_eq!(split_address("h", 8883), Some(("h".into(), 8883)));
        assert_eq!(split_address("[::1]:2", 1), Some(("::1".into(), 2)));
        assert_eq!(split_address("::1", 1883), Some(("::1".into(), 1883)));
        assert_eq!(split_address("h:x", 1), None);
        assert_eq!(split_address(":5", 1), None);
    }
}
