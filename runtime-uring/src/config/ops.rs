//! The operator's sections: `[admin]` (the HTTP API, Prometheus and the dashboard),
//! `sys_interval` (the `$SYS` tree) and `[[webhook]]` tables.

use std::net::SocketAddr;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::parse::{At, Parser};

pub(super) const ADMIN_KEYS: &[&str] = &["bind", "api_key_file", "prometheus_auth"];
pub(super) const WEBHOOK_KEYS: &[&str] = &["url", "events", "topics", "queue_size"];

/// The events a webhook may ask for (EMQX v5's names).
pub const WEBHOOK_EVENTS: &[&str] = &[
    "client.connected",
    "client.disconnected",
    "session.subscribed",
    "session.unsubscribed",
    "message.publish",
    "message.dropped",
];

/// `[admin]`: the admin HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// Lines `key:secret[:role]` (EMQX's bootstrap file).
    pub api_key_file: PathBuf,
    /// `/metrics` and `/api/v5/prometheus/stats` need an API key too.
    pub prometheus_auth: bool,
}

/// One `[[webhook]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://host:port/path`.
    pub url: String,
    pub events: Vec<String>,
    /// Topic filters for `message.publish` (default `["#"]`).
    pub topics: Vec<String>,
    /// Events held for the endpoint at most (then the oldest is dropped).
    pub queue_size: usize,
}

pub const DEFAULT_SYS_INTERVAL: u32 = 10;
pub const DEFAULT_WEBHOOK_QUEUE: usize = 10_000;

impl Parser<'_> {
    pub(super) fn table<'t>(
        &mut self,
        key: &str,
        v: &'t Spanned<DeValue<'_>>,
    ) -> Option<&'t DeTable<'t>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(key, v, "a table");
                None
            }
        }
    }

    pub(super) fn known<'k>(
        &mut self,
        keys: &'k [&'k str],
        k: &Spanned<std::borrow::Cow<'_, str>>,
        section: &str,
    ) -> Option<&'k str> {
        let name: &str = k.get_ref();
        let found = keys.iter().copied().find(|x| *x == name);
        if found.is_none() {
            self.error(
                &k.span(),
                Some(name),
                format!(
                    "unknown key \"{name}\" in [{section}]; known: {}",
                    keys.join(", ")
                ),
            );
        }
        found
    }

    pub(super) fn admin(&mut self, v: &Spanned<DeValue<'_>>, at: &At) -> Option<AdminConfig> {
        let t = self.table("admin", v)?;
        let mut bind = None;
        let mut keys = None;
        let mut prometheus_auth = true;
        for (k, v) in t.iter() {
            let Some(key) = self.known(ADMIN_KEYS, k, "admin") else {
                continue;
            };
            match key {
                "bind" => bind = self.socket_addr(key, v, "\"127.0.0.1:18083\""),
                "api_key_file" => keys = self.path(key, v),
                _ => {
                    if let Some(b) = self.boolean(key, v) {
                        prometheus_auth = b;
                    }
                }
            }
        }
        let (Some(bind), Some(api_key_file)) = (bind, keys) else {
            self.error(
                &at.key,
                Some("admin"),
                "[admin] needs \"bind\" and \"api_key_file\" (there is no unauthenticated mode)",
            );
            return None;
        };
        Some(AdminConfig {
            bind,
            api_key_file,
            prometheus_auth,
        })
    }

    pub(super) fn webhooks(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<WebhookConfig> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type("webhook", v, "[[webhook]] tables");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            let Some(t) = self.table("webhook", item) else {
                continue;
            };
            let mut w = WebhookConfig {
                url: String::new(),
                events: Vec::new(),
                topics: vec!["#".into()],
                queue_size: DEFAULT_WEBHOOK_QUEUE,
            };
            for (k, v) in t.iter() {
                let Some(key) = self.known(WEBHOOK_KEYS, k, "[webhook]") else {
                    continue;
                };
                match key {
                    "url" => {
                        if let Some(s) = self.string(key, v) {
                            match url::Url::parse(&s) {
                                Ok(u) if u.scheme() == "http" && u.host().is_some() => w.url = s,
                                _ => self.error(
                                    &v.span(),
                                    Some(key),
                                    format!("\"url\" = \"{s}\" must be an http:// URL with a host"),
                                ),
                            }
                        }
                    }
                    "events" | "topics" => {
                        let list = self.strings(key, v);
                        if key == "topics" {
                            for f in &list {
                                if broker_core::mqtt_proto::topic::Filter::parse(f).is_err() {
                                    self.error(
                                        &v.span(),
                                        Some(key),
                                        format!("\"{f}\" is not a valid topic filter"),
                                    );
                                }
                            }
                            w.topics = list;
                        } else {
                            for e in &list {
                                if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                                    self.error(
                                        &v.span(),
                                        Some(key),
                                        format!(
                                            "unknown event \"{e}\"; known: {}",
                                            WEBHOOK_EVENTS.join(", ")
                                        ),
                                    );
                                }
                            }
                            w.events = list;
                        }
                    }
                    _ => {
                        if let Some(n) =
                            self.integer(key, v, 1, 10_000_000, "from 1 to 10000000 events")
                        {
                            w.queue_size = usize::try_from(n).unwrap_or(DEFAULT_WEBHOOK_QUEUE);
                        }
                    }
                }
            }
            if w.url.is_empty() || w.events.is_empty() {
                self.error(
                    &item.span(),
                    Some("webhook"),
                    "a [[webhook]] needs \"url\" and a non-empty \"events\" list",
                );
                continue;
            }
            out.push(w);
        }
        out
    }

    fn strings(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Vec<String> {
        let DeValue::Array(a) = v.get_ref() else {
            self.wrong_type(key, v, "a list of strings");
            return Vec::new();
        };
        a.iter().filter_map(|s| self.string(key, s)).collect()
    }
}
