//! Reading the TOML file: the walker over its keys and values, the diagnostics it reports
//! (`file:line:column: message`, all of them, in file order) and the "did you mean"
//! suggestions for unknown keys.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::listener::RawListener;
use super::mosquitto::{normalize_log_level, parse_duration, UNSUPPORTED};
use super::schema::{
    BrokerConfig, ListenerConfig, DEFAULT_AUTOSAVE_INTERVAL, DEFAULT_MAX_INFLIGHT_MESSAGES,
    DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_PERSISTENCE_FILE, DEFAULT_PORT, DEFAULT_STALL_TIMEOUT,
    LISTENER_KEYS, MQTT_MAX_PACKET_SIZE, TOP_KEYS,
};
use crate::auth::acl::AclFile;
use crate::auth::passwd::PasswordFile;

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or the name given to [`BrokerConfig::from_str`]).
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column (characters), when known.
    pub column: Option<usize>,
    /// The key concerned, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{}:{}: {}", self.origin, l, c, self.message),
            (Some(l), None) => write!(f, "{}:{}: {}", self.origin, l, self.message),
            _ => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// Why a configuration was refused: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems (at least one).
    pub diagnostics: Vec<Diagnostic>,
}

/// One diagnostic per line.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl BrokerConfig {
    /// Reads `path`. Relative paths in it are relative to its directory.
    pub fn from_file(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            diagnostics: vec![Diagnostic {
                origin: origin.clone(),
                line: None,
                column: None,
                key: None,
                message: format!("cannot read the configuration file: {e}"),
            }],
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        Self::from_str_in(&text, &origin, base)
    }

    /// Parses `text`; `origin` names it in diagnostics. Relative paths stay relative to
    /// the working directory.
    #[allow(clippy::should_implement_trait)] // two arguments; not `FromStr`
    pub fn from_str(text: &str, origin: &str) -> Result<BrokerConfig, ConfigError> {
        Self::from_str_in(text, origin, None)
    }

    /// Parses `text`, resolving relative paths against `base` when given.
    pub fn from_str_in(
        text: &str,
        origin: &str,
        base: Option<&Path>,
    ) -> Result<BrokerConfig, ConfigError> {
        let mut p = Parser {
            origin,
            text,
            base,
            diags: Vec::new(),
        };
        let cfg = p.document();
        let mut diagnostics = p.diags;
        if diagnostics.is_empty() {
            return Ok(cfg);
        }
        diagnostics.sort_by_key(|d| (d.origin != origin, d.line, d.column));
        Err(ConfigError { diagnostics })
    }
}

pub(super) type Span = Range<usize>;

/// Where a key and its value were written.
#[derive(Debug, Clone)]
pub(super) struct At {
    pub(super) key: Span,
    pub(super) val: Span,
}

/// The walker over one file: its text, and the diagnostics found so far.
pub(super) struct Parser<'a> {
    origin: &'a str,
    text: &'a str,
    base: Option<&'a Path>,
    diags: Vec<Diagnostic>,
}

impl<'a> Parser<'a> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[start..].chars().count() + 1)
    }

    pub(super) fn error(&mut self, span: &Span, key: Option<&str>, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        self.diags.push(Diagnostic {
            origin: self.origin.to_owned(),
            line: Some(line),
            column: Some(column),
            key: key.map(str::to_owned),
            message: message.into(),
        });
    }

    fn location(&self, span: &Span) -> String {
        let (l, c) = self.position(span.start);
        format!("{}:{l}:{c}", self.origin)
    }

    fn document(&mut self) -> BrokerConfig {
        let mut cfg = BrokerConfig {
            listeners: Vec::new(),
            allow_anonymous: false,
            password_file: None,
            acl_file: None,
            max_keepalive: u16::MAX,
            max_packet_size: broker_core::Config::default().max_packet_size,
            max_inflight_messages: DEFAULT_MAX_INFLIGHT_MESSAGES,
            max_queued_messages: DEFAULT_MAX_QUEUED_MESSAGES,
            max_queued_bytes: 0,
            queue_full: broker_core::QueueFull::Hold,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            retain_available: true,
            persistent_client_expiration: None,
            persistence: false,
            persistence_location: None,
            persistence_file: None,
            autosave_interval: DEFAULT_AUTOSAVE_INTERVAL,
            durability: crate::store::Durability::Process,
            memory_limit: 0,
            queued_messages_in_memory: 1000,
            allow_zero_length_clientid: true,
            queue_qos0_messages: false,
            max_connections: None,
            threads: None,
            log_level: None,
            admin: None,
            sys_interval: super::ops::DEFAULT_SYS_INTERVAL,
            webhooks: Vec::new(),
            cluster: None,
            bridges: Vec::new(),
            kafka: Vec::new(),
        };
        let table = match DeTable::parse(self.text) {
            Ok(t) => t,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                self.error(&span, None, format!("TOML syntax error: {}", e.message()));
                return cfg;
            }
        };
        let mut set: Vec<(&'static str, At)> = Vec::new();
        let mut listeners: Option<(At, Vec<RawListener>)> = None;
        let mut persistence_name: Option<PathBuf> = None;
        let mut log_type: Option<String> = None;

        for (k, v) in table.get_ref().iter() {
            let name: &str = k.get_ref();
            let at = At {
                key: k.span(),
                val: v.span(),
            };
            let Some(key) = TOP_KEYS.iter().copied().find(|x| *x == name) else {
                self.unknown_key(&at.key, name, false);
                continue;
            };
            match key {
                "allow_anonymous" => {
                    if let Some(b) = self.boolean(key, v) {
                        cfg.allow_anonymous = b;
                    }
                }
                "retain_available" => {
                    if let Some(b) = self.boolean(key, v) {
                        cfg.retain_available = b;
                    }
                }
                "persistence" => {
                    if let Some(b) = self.boolean(key, v) {
                        cfg.persistence = b;
                    }
                }
                "allow_zero_length_clientid" => {
                    if let Some(b) = self.boolean(key, v) {
                        cfg.allow_zero_length_clientid = b;
                    }
                }
                "queue_qos0_messages" => {
                    if let Some(b) = self.boolean(key, v) {
                        cfg.queue_qos0_messages = b;
                    }
                }
                "password_file" => cfg.password_file = self.path(key, v),
                "acl_file" => cfg.acl_file = self.path(key, v),
                "persistence_location" => cfg.persistence_location = self.path(key, v),
                "persistence_file" => {
                    // A file name, joined to persistence_location below.
                    persistence_name = self.string(key, v).map(PathBuf::from);
                }
                "max_keepalive" => {
                    let why = "Mosquitto refuses less than 10 seconds; 65535 is the MQTT maximum";
                    if let Some(n) = self.integer(key, v, 10, i64::from(u16::MAX), why) {
                        cfg.max_keepalive = u16::try_from(n).unwrap_or(u16::MAX);
                    }
                }
                "max_packet_size" => {
                    let why =
                        "from 20 bytes (Mosquitto's minimum) to 268435460 (MQTT's largest packet)";
                    if let Some(n) = self.integer(key, v, 20, i64::from(MQTT_MAX_PACKET_SIZE), why)
                    {
                        cfg.max_packet_size = u32::try_from(n).unwrap_or(MQTT_MAX_PACKET_SIZE);
                    }
                }
                "max_inflight_messages" => {
                    let why = "0 (no limit) to 65535";
                    if let Some(n) = self.integer(key, v, 0, i64::from(u16::MAX), why) {
                        cfg.max_inflight_messages = u16::try_from(n).unwrap_or(u16::MAX);
                    }
                }
                "max_queued_messages" => {
                    let why = "use 0 for no limit";
                    if let Some(n) = self.integer(key, v, 0, i64::MAX, why) {
                        cfg.max_queued_messages = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "max_queued_bytes" => {
                    let why = "use 0 for no limit";
                    if let Some(n) = self.integer(key, v, 0, i64::MAX, why) {
                        cfg.max_queued_bytes = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "queue_full" => match v.get_ref() {
                    DeValue::String(s) if &**s == "hold" => {
                        cfg.queue_full = broker_core::QueueFull::Hold
                    }
                    DeValue::String(s) if &**s == "drop" => {
                        cfg.queue_full = broker_core::QueueFull::Drop
                    }
                    _ => self.wrong_type(key, v, "\"hold\" or \"drop\""),
                },
                "stall_timeout" => {
                    if let Some(n) = self.duration(key, v) {
                        cfg.stall_timeout = n;
                    }
                }
                "autosave_interval" => {
                    let why = "seconds (ignored: the store is written ahead)";
                    if let Some(n) = self.integer(key, v, 0, i64::from(u32::MAX), why) {
                        cfg.autosave_interval = u32::try_from(n).unwrap_or(u32::MAX);
                    }
                }
                "durability" => match v.get_ref() {
                    DeValue::String(s) if &**s == "process" => {
                        cfg.durability = crate::store::Durability::Process
                    }
                    DeValue::String(s) if &**s == "power" => {
                        cfg.durability = crate::store::Durability::Power
                    }
                    _ => self.wrong_type(key, v, "\"process\" or \"power\""),
                },
                "queued_messages_in_memory" => {
                    let why = "at least 1";
                    if let Some(n) = self.integer(key, v, 1, i64::MAX, why) {
                        cfg.queued_messages_in_memory = usize::try_from(n).unwrap_or(usize::MAX);
                    }
                }
                "memory_limit" => {
                    let why = "bytes; 0 means no limit";
                    if let Some(n) = self.integer(key, v, 0, i64::MAX, why) {
                        cfg.memory_limit = u64::try_from(n).unwrap_or(u64::MAX);
                    }
                }
                "max_connections" => {
                    let why = "use -1 (or leave it out) for no limit; 0 would refuse every client";
                    if let Some(n) = self.integer(key, v, -1, i64::MAX, why) {
                        if n == 0 {
                            self.error(
                                &at.val,
                                Some(key),
                                format!("\"{key}\" = 0 is out of range: {why}"),
                            );
                        } else {
                            cfg.max_connections = usize::try_from(n).ok();
                        }
                    }
                }
                "threads" => {
                    let why = "at least 1; leave it out for one per CPU";
                    if let Some(n) = self.integer(key, v, 1, i64::from(u16::MAX), why) {
                        cfg.threads = usize::try_from(n).ok();
                    }
                }
                "persistent_client_expiration" => {
                    cfg.persistent_client_expiration = self.duration(key, v);
                }
                "log_level" => {
                    if let Some(s) = self.string(key, v) {
                        match normalize_log_level(&s) {
                            Ok(l) => cfg.log_level = Some(l),
                            Err(m) => {
                                self.error(&at.val, Some(key), format!("invalid \"{key}\": {m}"))
                            }
                        }
                    }
                }
                "log_type" => log_type = self.log_type(key, v),
                "listener" => listeners = Some((at.clone(), self.listeners(v))),
                "admin" => cfg.admin = self.admin(v, &at),
                "webhook" => cfg.webhooks = self.webhooks(v),
                "cluster" => cfg.cluster = self.cluster(v, &at),
                "bridge" => cfg.bridges = self.bridges(v),
                "kafka" => cfg.kafka = self.kafkas(v),
                "sys_interval" => {
                    let why = "seconds, 0 (no $SYS tree) to 86400";
                    if let Some(n) = self.integer(key, v, 0, 86_400, why) {
                        cfg.sys_interval = u32::try_from(n).unwrap_or(0);
                    }
                }
                _ => {}
            }
            set.push((key, at));
        }
        let at = |key: &str| set.iter().find(|(k, _)| *k == key).map(|(_, a)| a.clone());

        // log_type is Mosquitto's; log_level is ours. One of them.
        if let Some(lt) = log_type {
            if let (Some(a), true) = (at("log_type"), at("log_level").is_some()) {
                self.error(
                    &a.key,
                    Some("log_type"),
                    "set either \"log_level\" or \"log_type\", not both",
                );
            } else {
                cfg.log_level = Some(lt);
            }
        }

        // Listeners, and Mosquitto's rule for allow_anonymous.
        let mut first_listener: Option<Span> = None;
        match listeners {
            None => {
                cfg.listeners = vec![
                    ListenerConfig::plain(SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                        DEFAULT_PORT,
                    )),
                    ListenerConfig::plain(SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::LOCALHOST),
                        DEFAULT_PORT,
                    )),
                ];
                if at("allow_anonymous").is_none() {
                    cfg.allow_anonymous = true;
                }
            }
            Some((lat, raws)) => {
                if raws.is_empty() {
                    self.error(
                        &lat.key,
                        Some("listener"),
                        "\"listener\" is empty: give at least one [[listener]], \
                         or none for the local-only default",
                    );
                }
                self.check_duplicate_binds(&raws);
                first_listener = raws.first().map(|r| r.table.clone());
                cfg.listeners = raws.into_iter().map(|r| r.cfg).collect();
            }
        }

        // A broker nobody can connect to is a mistake worth stopping for.
        let any_identity = cfg.listeners.iter().any(|l| l.use_identity_as_username);
        let already = self
            .diags
            .iter()
            .any(|d| d.key.as_deref() == Some("allow_anonymous"));
        if !cfg.allow_anonymous && cfg.password_file.is_none() && !any_identity && !already {
            let place = match (at("allow_anonymous"), first_listener) {
                (Some(a), _) => Some((a.key, "allow_anonymous is false")),
                (None, Some(t)) => Some((
                    t,
                    "allow_anonymous defaults to false once a [[listener]] is \
                     configured (as in Mosquitto 2.0)",
                )),
                (None, None) => None,
            };
            if let Some((span, why)) = place {
                self.error(
                    &span,
                    Some("allow_anonymous"),
                    format!(
                        "{why}, but nothing could authenticate a client: set password_file, \
                         use_identity_as_username on a TLS listener, or allow_anonymous = true"
                    ),
                );
            }
        }

        // Files that must exist and parse.
        if let (Some(path), Some(a)) = (&cfg.password_file, at("password_file")) {
            if let Err(e) = PasswordFile::load(path) {
                self.auth_file_error("password_file", &a, &e);
            }
        }
        if let (Some(path), Some(a)) = (&cfg.acl_file, at("acl_file")) {
            if let Err(e) = AclFile::load(path) {
                self.auth_file_error("acl_file", &a, &e);
            }
        }

        // Persistence database path.
        if cfg.persistence {
            if let (Some(dir), Some(a)) = (&cfg.persistence_location, at("persistence_location")) {
                if !dir.is_dir() {
                    self.error(
                        &a.val,
                        Some("persistence_location"),
                        format!(
                            "persistence_location \"{}\" is not a directory",
                            dir.display()
                        ),
                    );
                }
            }
            let name = persistence_name.unwrap_or_else(|| PathBuf::from(DEFAULT_PERSISTENCE_FILE));
            let dir = cfg
                .persistence_location
                .clone()
                .or_else(|| self.base.map(Path::to_path_buf));
            cfg.persistence_file = Some(match dir {
                Some(d) => d.join(name),
                None => name,
            });
        }
        cfg
    }

    fn auth_file_error(&mut self, key: &str, at: &At, e: &crate::auth::AuthFileError) {
        match e.line {
            // A problem inside the file: point there, and say who asked for the file.
            Some(line) => {
                let here = self.location(&at.val);
                self.diags.push(Diagnostic {
                    origin: e.path.clone(),
                    line: Some(line),
                    column: None,
                    key: Some(key.to_owned()),
                    message: format!("{} ({key} set at {here})", e.message),
                });
            }
            None => self.error(
                &at.val,
                Some(key),
                format!("{key} \"{}\": {}", e.path, e.message),
            ),
        }
    }

    pub(super) fn unknown_key(&mut self, span: &Span, name: &str, in_listener: bool) {
        let (own, other): (&[&str], &[&str]) = if in_listener {
            (LISTENER_KEYS, TOP_KEYS)
        } else {
            (TOP_KEYS, LISTENER_KEYS)
        };
        let message = if let Some((_, hint)) = UNSUPPORTED.iter().find(|(k, _)| *k == name) {
            if hint.is_empty() {
                format!("\"{name}\" is a Mosquitto option that Petrel does not support")
            } else {
                format!("\"{name}\" is a Mosquitto option that Petrel does not support ({hint})")
            }
        } else if name.starts_with("auth_opt_") || name.starts_with("plugin_opt_") {
            format!("\"{name}\" is a Mosquitto plugin option; plugins are not supported")
        } else if name.starts_with("bridge_") {
            format!("\"{name}\" is a Mosquitto bridge option; bridges are not supported")
        } else if other.contains(&name) && name != "listener" {
            if in_listener {
                format!(
                    "\"{name}\" is a global setting, not a listener setting: put it before \
                     the first [[listener]] (in TOML, keys after a [[listener]] header belong \
                     to that listener)"
                )
            } else {
                format!("\"{name}\" belongs in a [[listener]] table")
            }
        } else {
            let scope = if in_listener { " in [[listener]]" } else { "" };
            match suggest(name, own) {
                Some(s) => format!("unknown key \"{name}\"{scope} (did you mean \"{s}\"?)"),
                None => format!("unknown key \"{name}\"{scope}"),
            }
        };
        self.error(span, Some(name), message);
    }

    fn found(v: &DeValue<'_>) -> String {
        match v {
            DeValue::String(s) => format!("string \"{s}\""),
            DeValue::Integer(i) => format!("integer {}", i.as_str()),
            DeValue::Float(f) => format!("float {}", f.as_str()),
            DeValue::Boolean(b) => format!("boolean {b}"),
            DeValue::Datetime(_) => "a date-time".into(),
            DeValue::Array(_) => "an array".into(),
            DeValue::Table(_) => "a table".into(),
        }
    }

    pub(super) fn wrong_type(&mut self, key: &str, v: &Spanned<DeValue<'_>>, expected: &str) {
        let found = Self::found(v.get_ref());
        self.error(
            &v.span(),
            Some(key),
            format!("\"{key}\" must be {expected}, found {found}"),
        );
    }

    pub(super) fn boolean(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, v, "true or false");
                None
            }
        }
    }

    pub(super) fn integer(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        min: i64,
        max: i64,
        why: &str,
    ) -> Option<i64> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(key, v, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    &v.span(),
                    Some(key),
                    format!("\"{key}\" = {} is out of range: {why}", i.as_str()),
                );
                None
            }
        }
    }

    pub(super) fn string(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) if s.is_empty() => {
                self.error(&v.span(), Some(key), format!("\"{key}\" is empty"));
                None
            }
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(key, v, "a string");
                None
            }
        }
    }

    /// An address with a port (`bind`); `example` shows one in the error.
    pub(super) fn socket_addr(
        &mut self,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        example: &str,
    ) -> Option<std::net::SocketAddr> {
        let s = self.string(key, v)?;
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    &v.span(),
                    Some(key),
                    format!("\"{key}\" = \"{s}\" is not an address with a port, like {example}"),
                );
                None
            }
        }
    }

    pub(super) fn path(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<PathBuf> {
        let p = PathBuf::from(self.string(key, v)?);
        Some(match self.base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        })
    }

    fn duration(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<u32> {
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .filter(|n| *n >= 0)
                .map_or_else(
                    || Err(format!("{} is not a number of seconds", i.as_str())),
                    |n| parse_duration(&n.to_string()),
                ),
            DeValue::String(s) => parse_duration(s),
            _ => {
                self.wrong_type(
                    key,
                    v,
                    "a duration such as \"2h\", \"14d\", \"1m\" (a month) or a number of seconds",
                );
                return None;
            }
        };
        match parsed {
            Ok(secs) => Some(secs),
            Err(m) => {
                self.error(&v.span(), Some(key), format!("invalid \"{key}\": {m}"));
                None
            }
        }
    }
}

/// The known key closest to `name`: one it is a prefix of (`max_inflight` →
/// `max_inflight_messages`), else one within a small edit distance.
pub(super) fn suggest<'k>(name: &str, keys: &[&'k str]) -> Option<&'k str> {
    if name.len() >= 4 {
        if let Some(k) = keys
            .iter()
            .filter(|k| k.starts_with(name) || name.starts_with(**k))
            .min_by_key(|k| k.len().abs_diff(name.len()))
        {
            return Some(k);
        }
    }
    let limit = (name.chars().count() / 3).max(1);
    keys.iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
