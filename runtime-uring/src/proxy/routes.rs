//! Stream routes as APISIX's admin API accepts them (`/apisix/admin/stream_routes/{id}`),
//! validated into [`RouteSpec`]: which connections a route takes ([`Matcher`]) and where
//! it sends them ([`UpstreamSpec`]). Every refusal names the field, as a path
//! (`upstream.nodes[1].port`), so an administrator knows what to fix.
//!
//! Accepted (APISIX): `plugins."mqtt-proxy".protocol_name` / `protocol_level`, `sni`,
//! `server_addr`, `server_port`, `remote_addr` (IP or CIDR), `desc`, `name`, `labels`;
//! `upstream.nodes` as an array of `{host, port, weight}` or an object
//! `{"host:port": weight}`, `upstream.type` `chash` (key `mqtt_client_id` or
//! `remote_addr`) or `roundrobin`, `upstream.scheme` `tcp` or `tls`, `upstream.tls`
//! (`client_cert`, `client_key`), `upstream.retries`, `upstream.timeout.connect`.
//! Petrel's additions: `protocol_level` may be a list or absent (any level), and
//! `upstream.proxy_protocol` sends a PROXY protocol v2 header to the node.
//! Not supported (refused with a message, not silently ignored): `upstream_id`,
//! `service_id`, other plugins, other balancers, `upstream.checks`.

use mqtt_proto::ProtocolVersion;
use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A refused field: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub msg: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.msg)
    }
}

impl std::error::Error for FieldError {}

type Res<T> = Result<T, FieldError>;

/// What a consistent-hashing upstream hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKey {
    /// The CONNECT's client identifier; the client's IP address when it is empty.
    ClientId,
    /// Always the client's IP address.
    RemoteAddr,
}

/// How an upstream picks a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    Chash(HashKey),
    RoundRobin,
}

/// One node of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

impl NodeSpec {
    /// The node's name on the ring: `host:port` (`[v6]:port` for IPv6).
    pub fn name(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// TLS towards the nodes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTls {
    /// Client certificate and key (PEM) for nodes that require one.
    pub client_cert: Option<(String, String)>,
}

/// Where a route sends its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    pub nodes: Vec<NodeSpec>,
    pub balance: Balance,
    pub tls: Option<UpstreamTls>,
    pub proxy_protocol: bool,
    /// Most nodes tried for one connection (default: all of them).
    pub retries: Option<u32>,
    pub connect_timeout: Option<Duration>,
}

/// The protocol name a route asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolName {
    /// `MQTT`: any MQTT client (3.1's `MQIsdp` included, as level 4 covers 3.1).
    Mqtt,
    /// `MQIsdp`: MQTT 3.1 clients only.
    MqIsdp,
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// What a route matches on. Every field left `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matcher {
    /// Lower-case host name, or `*.suffix` for one label under `suffix`.
    pub sni: Option<String>,
    pub server_addr: Option<IpAddr>,
    pub server_port: Option<u16>,
    pub remote_addr: Option<Cidr>,
    pub protocol_name: Option<ProtocolName>,
    /// Bit `l` set: CONNECT protocol level `l` accepted (3 = 3.1, 4 = 3.1.1, 5 = 5.0).
    pub levels: Option<u8>,
}

/// What the proxy knows of a connection when it picks a route.
#[derive(Debug, Clone, Copy)]
pub struct ConnFacts<'a> {
    pub version: ProtocolVersion,
    pub sni: Option<&'a str>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Whether a server name matches a route's `sni` (exact, or `*.suffix` for one label).
pub fn sni_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

impl Matcher {
    /// How many constraints the route sets: the more specific route is tried first.
    pub fn specificity(&self) -> u32 {
        u32::from(self.sni.is_some())
            + u32::from(self.server_addr.is_some())
            + u32::from(self.server_port.is_some())
            + u32::from(self.remote_addr.is_some())
            + u32::from(self.protocol_name.is_some())
            + u32::from(self.levels.is_some())
    }

    pub fn matches(&self, c: &ConnFacts<'_>) -> bool {
        if let Some(p) = &self.sni {
            match c.sni {
                Some(name) if sni_matches(p, &name.to_ascii_lowercase()) => {}
                _ => return false,
            }
        }
        if self.server_addr.is_some_and(|a| a != c.local.ip()) {
            return false;
        }
        if self.server_port.is_some_and(|p| p != c.local.port()) {
            return false;
        }
        if self.remote_addr.is_some_and(|n| !n.contains(c.remote.ip())) {
            return false;
        }
        if self.protocol_name == Some(ProtocolName::MqIsdp) && c.version != ProtocolVersion::V3_1 {
            return false;
        }
        if let Some(mask) = self.levels {
            if mask & (1 << c.version.level()) == 0 {
                return false;
            }
        }
        true
    }
}

/// A validated stream route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub matcher: Matcher,
    pub upstream: UpstreamSpec,
}

/// Checks an id as APISIX does: 1 to 64 of `[a-zA-Z0-9-_.]`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The id in a body (`"id": "1"` or `"id": 1`), if any.
pub fn body_id(v: &Value) -> Res<Option<String>> {
    match v.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(FieldError::new("id", "must be a string or an integer")),
    }
}

pub(crate) fn object<'a>(v: &'a Value, field: &str) -> Res<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| FieldError::new(field, "must be an object"))
}

pub(crate) fn string<'a>(v: &'a Value, field: &str) -> Res<&'a str> {
    v.as_str()
        .ok_or_else(|| FieldError::new(field, "must be a string"))
}

fn uint(v: &Value, field: &str, min: u64, max: u64) -> Res<u64> {
    v.as_u64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| FieldError::new(field, format!("must be an integer {min}..{max}")))
}

fn boolean(v: &Value, field: &str) -> Res<bool> {
    v.as_bool()
        .ok_or_else(|| FieldError::new(field, "must be true or false"))
}

pub(crate) fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Refuses keys outside `allowed` (APISIX: "additional properties forbidden").
pub(crate) fn only(m: &Map<String, Value>, prefix: &str, allowed: &[&str]) -> Res<()> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(FieldError::new(
            path(prefix, k),
            format!("unknown field (allowed here: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn host(v: &Value, field: &str) -> Res<String> {
    let h = string(v, field)?;
    let bare = h.trim_start_matches('[').trim_end_matches(']');
    let ok = bare.parse::<IpAddr>().is_ok()
        || (!bare.is_empty()
            && bare.len() <= 253
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')));
    if !ok {
        return Err(FieldError::new(
            field,
            format!("{h:?} is not a host name or an IP address"),
        ));
    }
    Ok(bare.to_owned())
}

/// `host:port` or `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (h, p) = s.rsplit_once(':')?;
    let port = p.parse::<u16>().ok().filter(|&p| p > 0)?;
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    if h.is_empty() {
        return None;
    }
    Some((h, port))
}

fn nodes(v: &Value, field: &str) -> Res<Vec<NodeSpec>> {
    let mut out = Vec::new();
    match v {
        Value::Array(a) => {
            for (i, n) in a.iter().enumerate() {
                let f = format!("{field}[{i}]");
                let m = object(n, &f)?;
                only(m, &f, &["host", "port", "weight", "priority", "metadata"])?;
                let host = host(
                    m.get("host")
                        .ok_or_else(|| FieldError::new(path(&f, "host"), "required"))?,
                    &path(&f, "host"),
                )?;
                let port = uint(
                    m.get("port")
                        .ok_or_else(|| FieldError::new(path(&f, "port"), "required"))?,
                    &path(&f, "port"),
                    1,
                    65535,
                )? as u16;
                let weight = match m.get("weight") {
                    None => 1,
                    Some(w) => uint(w, &path(&f, "weight"), 0, 100_000)? as u32,
                };
                if let Some(p) = m.get("priority") {
                    if p.as_i64() != Some(0) {
                        return Err(FieldError::new(
                            path(&f, "priority"),
                            "node priorities are not supported (only 0)",
                        ));
                    }
                }
                out.push(NodeSpec { host, port, weight });
            }
        }
        Value::Object(m) => {
            for (k, w) in m {
                let f = format!("{field}.{k}");
                let (h, port) = split_host_port(k)
                    .ok_or_else(|| FieldError::new(&f, "key must be \"host:port\""))?;
                let host = host(&Value::String(h.to_owned()), &f)?;
                let weight = uint(w, &f, 0, 100_000)? as u32;
                out.push(NodeSpec { host, port, weight });
            }
        }
        _ => {
            return Err(FieldError::new(
                field,
                "must be an array of {host, port, weight} or an object {\"host:port\": weight}",
            ))
        }
    }
    let mut names: Vec<String> = out.iter().map(NodeSpec::name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(FieldError::new(
            field,
            format!("node {} is listed twice", w[0]),
        ));
    }
    Ok(out)
}

/// Parses `upstream`.
pub fn parse_upstream(v: &Value, field: &str) -> Res<UpstreamSpec> {
    let m = object(v, field)?;
    only(
        m,
        field,
        &[
            "nodes",
            "type",
            "key",
            "hash_on",
            "scheme",
            "tls",
            "retries",
            "timeout",
            "proxy_protocol",
            "name",
            "desc",
            "labels",
            "id",
            "checks",
        ],
    )?;
    if m.contains_key("checks") {
        return Err(FieldError::new(
            path(field, "checks"),
            "not supported: use petrel proxy --health-check-interval",
        ));
    }
    let nodes = nodes(
        m.get("nodes")
            .ok_or_else(|| FieldError::new(path(field, "nodes"), "required"))?,
        &path(field, "nodes"),
    )?;
    if let Some(h) = m.get("hash_on") {
        if string(h, &path(field, "hash_on"))? != "vars" {
            return Err(FieldError::new(
                path(field, "hash_on"),
                "only \"vars\" is supported",
            ));
        }
    }
    let ty = match m.get("type") {
        None => "roundrobin",
        Some(t) => string(t, &path(field, "type"))?,
    };
    let balance = match ty {
        "chash" => {
            let key = match m.get("key") {
                None => "mqtt_client_id",
                Some(k) => string(k, &path(field, "key"))?,
            };
            Balance::Chash(match key {
                "mqtt_client_id" => HashKey::ClientId,
                "remote_addr" => HashKey::RemoteAddr,
                _ => {
                    return Err(FieldError::new(
                        path(field, "key"),
                        "must be \"mqtt_client_id\" or \"remote_addr\"",
                    ))
                }
            })
        }
        "roundrobin" => Balance::RoundRobin,
        other => {
            return Err(FieldError::new(
                path(field, "type"),
                format!("{other:?} is not supported (chash or roundrobin)"),
            ))
        }
    };
    let scheme = match m.get("scheme") {
        None => "tcp",
        Some(s) => string(s, &path(field, "scheme"))?,
    };
    let tls = match scheme {
        "tcp" => {
            if m.contains_key("tls") {
                return Err(FieldError::new(
                    path(field, "tls"),
                    "needs \"scheme\": \"tls\"",
                ));
            }
            None
        }
        "tls" => {
            let mut t = UpstreamTls::default();
            if let Some(tv) = m.get("tls") {
                let f = path(field, "tls");
                let tm = object(tv, &f)?;
                only(tm, &f, &["client_cert", "client_key", "verify"])?;
                if let Some(v) = tm.get("verify") {
                    if !boolean(v, &path(&f, "verify"))? {
                        return Err(FieldError::new(
                            path(&f, "verify"),
                            "Petrel always verifies the nodes' certificates",
                        ));
                    }
                }
                match (tm.get("client_cert"), tm.get("client_key")) {
                    (None, None) => {}
                    (Some(c), Some(k)) => {
                        let c = string(c, &path(&f, "client_cert"))?.to_owned();
                        let k = string(k, &path(&f, "client_key"))?.to_owned();
                        t.client_cert = Some((c, k));
                    }
                    (Some(_), None) => {
                        return Err(FieldError::new(
                            path(&f, "client_key"),
                            "required with client_cert",
                        ))
                    }
                    (None, Some(_)) => {
                        return Err(FieldError::new(
                            path(&f, "client_cert"),
                            "required with client_key",
                        ))
                    }
                }
            }
            Some(t)
        }
        other => {
            return Err(FieldError::new(
                path(field, "scheme"),
                format!("{other:?} is not supported (tcp or tls)"),
            ))
        }
    };
    let proxy_protocol = match m.get("proxy_protocol") {
        None => false,
        Some(v) => boolean(v, &path(field, "proxy_protocol"))?,
    };
    let retries = match m.get("retries") {
        None => None,
        Some(v) => Some(uint(v, &path(field, "retries"), 0, 65535)? as u32),
    };
    let connect_timeout = match m.get("timeout") {
        None => None,
        Some(t) => {
            let f = path(field, "timeout");
            let tm = object(t, &f)?;
            only(tm, &f, &["connect", "send", "read"])?;
            match tm.get("connect") {
                None => None,
                Some(c) => {
                    let s = c
                        .as_f64()
                        .filter(|s| *s > 0.0 && *s <= 3600.0)
                        .ok_or_else(|| {
                            FieldError::new(path(&f, "connect"), "must be seconds, > 0 and <= 3600")
                        })?;
                    Some(Duration::from_secs_f64(s))
                }
            }
        }
    };
    Ok(UpstreamSpec {
        nodes,
        balance,
        tls,
        proxy_protocol,
        retries,
        connect_timeout,
    })
}

fn levels(v: &Value, field: &str) -> Res<u8> {
    let one = |v: &Value, f: &str| -> Res<u8> {
        match v.as_u64() {
            // 4 covers 3.1 and 3.1.1, as in APISIX.
            Some(3) => Ok(1 << 3),
            Some(4) => Ok((1 << 3) | (1 << 4)),
            Some(5) => Ok(1 << 5),
            _ => Err(FieldError::new(
                f,
                "must be 3, 4 (3.1 and 3.1.1) or 5 (5.0)",
            )),
        }
    };
    match v {
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .enumerate()
            .try_fold(0u8, |m, (i, l)| Ok(m | one(l, &format!("{field}[{i}]"))?)),
        Value::Array(_) => Err(FieldError::new(field, "must not be an empty list")),
        v => one(v, field),
    }
}

fn mqtt_plugin(v: &Value, field: &str, m: &mut Matcher) -> Res<()> {
    let p = object(v, field)?;
    only(p, field, &["protocol_name", "protocol_level", "_meta"])?;
    if let Some(n) = p.get("protocol_name") {
        let f = path(field, "protocol_name");
        m.protocol_name = Some(match string(n, &f)? {
            "MQTT" => ProtocolName::Mqtt,
            "MQIsdp" => ProtocolName::MqIsdp,
            other => {
                return Err(FieldError::new(
                    f,
                    format!("{other:?} is not an MQTT protocol name (MQTT or MQIsdp)"),
                ))
            }
        });
    }
    if let Some(l) = p.get("protocol_level") {
        if !l.is_null() {
            m.levels = Some(levels(l, &path(field, "protocol_level"))?);
        }
    }
    Ok(())
}

/// Parses a stream route body.
pub fn parse_route(v: &Value) -> Res<RouteSpec> {
    let m = object(v, "body")?;
    only(
        m,
        "",
        &[
            "id",
            "desc",
            "name",
            "labels",
            "plugins",
            "upstream",
            "sni",
            "server_addr",
            "server_port",
            "remote_addr",
            "upstream_id",
            "service_id",
            "create_time",
            "update_time",
        ],
    )?;
    for unsupported in ["upstream_id", "service_id"] {
        if m.contains_key(unsupported) {
            return Err(FieldError::new(
                unsupported,
                "not supported: give the upstream inline in \"upstream\"",
            ));
        }
    }
    if let Some(d) = m.get("desc") {
        string(d, "desc")?;
    }
    if let Some(d) = m.get("name") {
        string(d, "name")?;
    }
    if let Some(l) = m.get("labels") {
        object(l, "labels")?;
    }
    let mut matcher = Matcher::default();
    if let Some(p) = m.get("plugins") {
        let pm = object(p, "plugins")?;
        for (name, conf) in pm {
            match name.as_str() {
                "mqtt-proxy" => mqtt_plugin(conf, "plugins.mqtt-proxy", &mut matcher)?,
                other => {
                    return Err(FieldError::new(
                        format!("plugins.{other}"),
                        "unknown plugin (Petrel supports mqtt-proxy)",
                    ))
                }
            }
        }
    }
    if let Some(s) = m.get("sni") {
        let s = string(s, "sni")?.to_ascii_lowercase();
        let bare = s.strip_prefix("*.").unwrap_or(&s);
        if bare.is_empty()
            || !bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        {
            return Err(FieldError::new("sni", "must be a host name or *.domain"));
        }
        matcher.sni = Some(s);
    }
    if let Some(a) = m.get("server_addr") {
        matcher.server_addr = Some(
            string(a, "server_addr")?
                .parse()
                .map_err(|_| FieldError::new("server_addr", "must be an IP address"))?,
        );
    }
    if let Some(p) = m.get("server_port") {
        matcher.server_port = Some(uint(p, "server_port", 1, 65535)? as u16);
    }
    if let Some(r) = m.get("remote_addr") {
        matcher.remote_addr =
            Some(Cidr::parse(string(r, "remote_addr")?).ok_or_else(|| {
                FieldError::new("remote_addr", "must be an IP address or a CIDR")
            })?);
    }
    let upstream = parse_upstream(
        m.get("upstream")
            .ok_or_else(|| FieldError::new("upstream", "required"))?,
        "upstream",
    )?;
    Ok(RouteSpec { matcher, upstream })
}

/// Parses a command-line upstream: `HOST:PORT[=WEIGHT]`.
pub fn parse_cli_node(s: &str) -> Result<NodeSpec, String> {
    let (hp, w) = match s.rsplit_once('=') {
        Some((hp, w)) => (
            hp,
            w.parse::<u32>()
                .map_err(|_| format!("{s:?}: weight must be an integer"))?,
        ),
        None => (s, 1),
    };
    let (h, port) =
        split_host_port(hp).ok_or_else(|| format!("{s:?}: expected HOST:PORT[=WEIGHT]"))?;
    let host = host(&Value::String(h.to_owned()), "upstream").map_err(|e| e.msg)?;
    Ok(NodeSpec {
        host,
        port,
        weight: w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        parse_route(&v).unwrap_err().to_string()
    }

    #[test]
    fn apisix_examples_parse() {
        let r = parse_route(&json!({
            "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}},
            "upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": [
                {"host": "127.0.0.1", "port": 1995, "weight": 1},
                {"host": "127.0.0.2", "port": 1995, "weight": 1}]}
        }))
        .unwrap();
        assert_eq!(r.upstream.balance, Balance::Chash(HashKey::ClientId));
        assert_eq!(r.upstream.nodes.len(), 2);
        assert_eq!(r.matcher.levels, Some(0b11000));
        let r = parse_route(&json!({
            "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}},
            "sni": "Mqtt.Example.com",
            "upstream": {"nodes": {"127.0.0.1:1980": 1}, "type": "roundrobin"}
        }))
        .unwrap();
        assert_eq!(r.upstream.balance, Balance::RoundRobin);
        assert_eq!(r.upstream.nodes[0].name(), "127.0.0.1:1980");
        assert_eq!(r.matcher.sni.as_deref(), Some("mqtt.example.com"));
    }

    #[test]
    fn fields_are_named_in_errors() {
        assert!(err(json!([])).starts_with("body:"));
        assert!(err(json!({})).starts_with("upstream: required"));
        assert!(
            err(json!({"upstream": {"nodes": [{"host": "a", "port": 70000}]}}))
                .starts_with("upstream.nodes[0].port:")
        );
        assert!(err(json!({"upstream": {"nodes": [{"port": 1}]}}))
            .starts_with("upstream.nodes[0].host: required"));
        assert!(
            err(json!({"upstream": {"type": "ewma", "nodes": []}})).starts_with("upstream.type:")
        );
        assert!(err(json!({"upstream": {"nodes": {"nohost": 1}}}))
            .starts_with("upstream.nodes.nohost:"));
        assert!(err(json!({"upstream": {"nodes": [], "typo": 1}}))
            .starts_with("upstream.typo: unknown"));
        assert!(err(
            json!({"plugins": {"mqtt-proxy": {"protocol_level": 7}}, "upstream": {"nodes": []}})
        )
        .starts_with("plugins.mqtt-proxy.protocol_level:"));
        assert!(err(json!({"plugins": {"mqtt-proxy": {"protocol_level": [4, 9]}}, "upstream": {"nodes": []}}))
            .starts_with("plugins.mqtt-proxy.protocol_level[1]:"));
        assert!(
            err(json!({"plugins": {"limit-conn": {}}, "upstream": {"nodes": []}}))
                .starts_with("plugins.limit-conn:")
        );
        assert!(
            err(json!({"upstream": {"nodes": {"a:1": 1, "[::1]:1": "x"}}}))
                .starts_with("upstream.nodes.[::1]:1:")
        );
        assert!(err(
            json!({"upstream": {"nodes": [{"host": "a", "port": 1}, {"host": "a", "port": 1}]}})
        )
        .contains("listed twice"));
        assert!(err(json!({"upstream_id": "1"})).starts_with("upstream_id:"));
        assert!(
            err(json!({"remote_addr": "10.0.0.0/33", "upstream": {"nodes": []}}))
                .starts_with("remote_addr:")
        );
    }

    #[test]
    fn levels_and_names() {
        let facts = |v| ConnFacts {
            version: v,
            sni: None,
            local: "127.0.0.1:1883".parse().unwrap(),
            remote: "10.1.2.3:5000".parse().unwrap(),
        };
        let m = |l: Value| {
            parse_route(&json!({"plugins": {"mqtt-proxy": {"protocol_level": l}}, "upstream": {"nodes": []}}))
                .unwrap()
                .matcher
        };
        let v4 = m(json!(4));
        assert!(v4.matches(&facts(ProtocolVersion::V3_1)));
        assert!(v4.matches(&facts(ProtocolVersion::V3_1_1)));
        assert!(!v4.matches(&facts(ProtocolVersion::V5)));
        let both = m(json!([4, 5]));
        assert!(both.matches(&facts(ProtocolVersion::V5)));
        let any = m(Value::Null);
        assert!(any.matches(&facts(ProtocolVersion::V5)) && any.specificity() == 0);
        let isdp = parse_route(&json!({"plugins": {"mqtt-proxy": {"protocol_name": "MQIsdp"}}, "upstream": {"nodes": []}}))
            .unwrap()
            .matcher;
        assert!(isdp.matches(&facts(ProtocolVersion::V3_1)));
        assert!(!isdp.matches(&facts(ProtocolVersion::V3_1_1)));
    }

    #[test]
    fn sni_and_addresses() {
        assert!(sni_matches("*.example.com", "a.example.com"));
        assert!(!sni_matches("*.example.com", "a.b.example.com"));
        assert!(!sni_matches("*.example.com", "example.com"));
        assert!(sni_matches("mqtt.example.com", "MQTT.example.com"));
        let n = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.9.9.9".parse().unwrap()));
        assert!(n.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    }

    #[test]
    fn cli_nodes() {
        assert_eq!(
            parse_cli_node("127.0.0.1:1883=3").unwrap(),
            NodeSpec {
                host: "127.0.0.1".into(),
                port: 1883,
                weight: 3
            }
        );
        assert_eq!(parse_cli_node("[::1]:1883").unwrap().name(), "[::1]:1883");
        assert!(parse_cli_node("127.0.0.1").is_err());
        assert!(parse_cli_node("h:1=x").is_err());
    }

    #[test]
    fn ids() {
        assert!(valid_id("1") && valid_id("mqtt-route_1.a"));
        assert!(!valid_id("") && !valid_id("a/b") && !valid_id(&"x".repeat(65)));
    }
}
