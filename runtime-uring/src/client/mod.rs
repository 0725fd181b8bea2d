//! The MQTT client library: configured like Dapr's `pubsub.mqtt` component (a broker URL,
//! qos, retain, cleanSession, consumerID with `{uuid}`, CA / client certificate / key,
//! backOffMaxRetries), driven on monoio around `broker_core::client::Client`.

pub(crate) mod driver;

pub use driver::{ClientFailure, MqttClient};

use mqtt_proto::{ProtocolVersion, QoS};
use std::fmt;
use std::time::Duration;

/// Transport named by the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `tcp://`, `mqtt://`
    Tcp,
    /// `ssl://`, `tls://`, `mqtts://`
    Ssl,
    /// `ws://`
    Ws,
    /// `wss://`
    Wss,
}

impl Scheme {
    /// TLS underneath.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::Wss)
    }
    /// WebSocket framing.
    pub fn is_ws(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Transport.
    pub scheme: Scheme,
    /// Host name or address (without brackets for IPv6).
    pub host: String,
    /// Port (the scheme's default when absent).
    pub port: u16,
    /// User name (percent-decoded).
    pub username: Option<String>,
    /// Password (percent-decoded).
    pub password: Option<String>,
    /// Path for WebSocket (default `/mqtt`).
    pub path: String,
}

/// A URL that is not a broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

fn decode(s: &str) -> Result<String, UrlError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| UrlError(format!("{s:?} is not valid percent-encoded UTF-8")))
}

/// Parses `tcp://[user[:password]@]host[:port]`, `ssl://...`, `ws://.../path`, `wss://...`.
pub fn parse_url(s: &str) -> Result<BrokerUrl, UrlError> {
    let u = url::Url::parse(s).map_err(|e| UrlError(format!("invalid broker URL {s:?}: {e}")))?;
    let (scheme, default_port) = match u.scheme() {
        "tcp" | "mqtt" => (Scheme::Tcp, 1883),
        "ssl" | "tls" | "mqtts" => (Scheme::Ssl, 8883),
        "ws" => (Scheme::Ws, 80),
        "wss" => (Scheme::Wss, 443),
        other => {
            return Err(UrlError(format!(
                "unsupported scheme {other:?} in {s:?} (use tcp://, ssl://, ws:// or wss://)"
            )))
        }
    };
    let host = match u.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err(UrlError(format!("no host in broker URL {s:?}"))),
    };
    if host.is_empty() {
        return Err(UrlError(format!("no host in broker URL {s:?}")));
    }
    let username = match u.username() {
        "" => None,
        n => Some(decode(n)?),
    };
    let password = u.password().map(decode).transpose()?;
    let path = match u.path() {
        "" | "/" if scheme.is_ws() => "/mqtt".to_owned(),
        p => p.to_owned(),
    };
    Ok(BrokerUrl {
        scheme,
        port: u.port().unwrap_or(default_port),
        host,
        username,
        password,
        path,
    })
}

/// Replaces every `{uuid}` in a client identifier with a fresh UUID (v4).
pub fn expand_client_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    let mut rest = id;
    while let Some(i) = rest.find("{uuid}") {
        out.push_str(&rest[..i]);
        out.push_str(&uuid::Uuid::new_v4().to_string());
        rest = &rest[i + "{uuid}".len()..];
    }
    out.push_str(rest);
    out
}

/// Client configuration (the Dapr component's fields and the usual MQTT knobs).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Broker URL.
    pub url: BrokerUrl,
    /// Default QoS for publish and subscribe.
    pub qos: QoS,
    /// Publish retained.
    pub retain: bool,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_session: bool,
    /// Client identifier, already expanded (see [`expand_client_id`]).
    pub client_id: String,
    /// Protocol version.
    pub protocol: ProtocolVersion,
    /// Keep alive, seconds.
    pub keep_alive: u16,
    /// CA certificate: a PEM file path or inline PEM.
    pub ca_cert: Option<String>,
    /// Client certificate (mutual TLS): file or inline PEM.
    pub client_cert: Option<String>,
    /// Client key: file or inline PEM.
    pub client_key: Option<String>,
    /// Retries of a failed message handler (-1: forever, 0: none).
    pub back_off_max_retries: i64,
    /// Session Expiry Interval for MQTT 5 when not clean (seconds).
    pub session_expiry: u32,
    /// Messages kept while disconnected before `publish` refuses.
    pub max_queued: usize,
    /// Time allowed to connect (TCP, TLS and CONNACK).
    pub connect_timeout: Duration,
    /// Reconnect after losing the connection (with exponential back-off and jitter).
    pub reconnect: bool,
    /// Let the application acknowledge messages (`MqttClient::ack`).
    pub manual_ack: bool,
}

impl ClientConfig {
    /// Defaults for a URL.
    pub fn new(url: BrokerUrl) -> Self {
        Self {
            url,
            qos: QoS::AtMostOnce,
            retain: false,
            clean_session: true,
            client_id: expand_client_id("petrel-{uuid}"),
            protocol: ProtocolVersion::V3_1_1,
            keep_alive: 60,
            ca_cert: None,
            client_cert: None,
            client_key: None,
            back_off_max_retries: 0,
            session_expiry: 3600,
            max_queued: 10_000,
            connect_timeout: Duration::from_secs(10),
            reconnect: true,
            manual_ack: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_the_field_parse() {
        let u = parse_url("tcp://user:p%40ss@localhost:1884").unwrap();
        assert_eq!(u.scheme, Scheme::Tcp);
        assert_eq!((u.host.as_str(), u.port), ("localhost", 1884));
        assert_eq!(u.username.as_deref(), Some("user"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        let u = parse_url("ssl://[::1]").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Ssl, "::1", 8883)
        );
        let u = parse_url("ws://h:8080").unwrap();
        assert_eq!((u.scheme, u.path.as_str()), (Scheme::Ws, "/mqtt"));
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(parse_url("http://x")
            .unwrap_err()
            .0
            .contains("unsupported scheme"));
        assert!(parse_url("localhost:1883").is_err());
        assert!(parse_url("tcp://").is_err());
    }

    #[test]
    fn uuid_placeholders_expand() {
        let a = expand_client_id("dapr-{uuid}");
        let b = expand_client_id("dapr-{uuid}");
        assert!(a.starts_with("dapr-") && a.len() == 5 + 36);
        assert_ne!(a, b);
        assert_eq!(expand_client_id("plain"), "plain");
    }
}
