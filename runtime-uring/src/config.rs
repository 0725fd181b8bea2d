//! The broker configuration file: TOML with Mosquitto's key names.
//!
//! What it does: reads `petrel.toml` into a [`BrokerConfig`], rejecting unknown keys, bad
//! values and contradictory settings with `file:line:column: message` diagnostics (all of
//! them at once, in file order), checks that the files it names exist (and that
//! `password_file` / `acl_file` parse), and maps the limits onto
//! [`broker_core::Config`]. `default.toml` next to this file is the embedded default (what
//! `petrel broker` runs without a file) and the reference for every key.
//!
//! What it deliberately does not do: Mosquitto's own `mosquitto.conf` syntax, per-listener
//! security (`per_listener_settings`), bridges, plugins, or watching files (the shell
//! reloads on SIGHUP).
//!
//! Where the values mean something other than in Mosquitto 2.0, it says so on the field.
//! Relative paths are resolved against the directory of the configuration file (Mosquitto
//! uses the working directory).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::auth::acl::AclFile;
use crate::auth::passwd::PasswordFile;

/// MQTT's registered port.
pub const DEFAULT_PORT: u16 = 1883;
/// The largest packet MQTT can express: fixed header byte, 4-byte Remaining Length and
/// 268,435,455 bytes.
pub const MQTT_MAX_PACKET_SIZE: u32 = 268_435_460;
/// Mosquitto's default `max_inflight_messages`.
pub const DEFAULT_MAX_INFLIGHT_MESSAGES: u16 = 20;
/// Mosquitto's default `max_queued_messages`.
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1000;
/// Mosquitto's default `autosave_interval`, seconds.
pub const DEFAULT_AUTOSAVE_INTERVAL: u32 = 1800;
/// Default `stall_timeout`, seconds: how long publishers may wait for a subscriber that
/// makes no progress at all before it is disconnected.
pub const DEFAULT_STALL_TIMEOUT: u32 = 30;
/// Name of the persistence database when `persistence_file` is not set. Not
/// `mosquitto.db`: the format is Petrel's own.
pub const DEFAULT_PERSISTENCE_FILE: &str = "petrel.db";

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerProtocol {
    /// MQTT over TCP (or TLS).
    #[default]
    Mqtt,
    /// MQTT over WebSockets (or secure WebSockets).
    Websockets,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address and port to listen on (`bind`, or `port` with `bind_address`). Port 0
    /// asks the kernel for a free port.
    pub bind: SocketAddr,
    /// Server certificate chain, PEM. Set (with `keyfile`) for TLS.
    pub certfile: Option<PathBuf>,
    /// Server private key, PEM.
    pub keyfile: Option<PathBuf>,
    /// CA certificates that sign client certificates, PEM.
    pub cafile: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by `cafile`.
    pub require_certificate: bool,
    /// The client certificate's subject CN becomes the user name; no password check.
    pub use_identity_as_username: bool,
    /// Connections start with a PROXY protocol (v1 or v2) header giving the real client.
    pub proxy_protocol: bool,
    /// MQTT or WebSockets.
    pub protocol: ListenerProtocol,
}

impl ListenerConfig {
    /// A plain MQTT listener on `bind`.
    pub fn plain(bind: SocketAddr) -> Self {
        Self {
            bind,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            use_identity_as_username: false,
            proxy_protocol: false,
            protocol: ListenerProtocol::Mqtt,
        }
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.certfile.is_some() && self.keyfile.is_some()
    }
}

/// The broker configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Listeners; `PeerInfo::listener` is an index into this list. Without any
    /// `[[listener]]` in the file: `127.0.0.1:1883` and `[::1]:1883` (Mosquitto 2.0's
    /// local-only mode).
    pub listeners: Vec<ListenerConfig>,
    /// Let clients in without a user name. Default: false once the file has a
    /// `[[listener]]`, true in local-only mode (Mosquitto 2.0). Without `password_file`,
    /// a user name alone does not count as authenticated.
    pub allow_anonymous: bool,
    /// Mosquitto password file (`petrel passwd` / `mosquitto_passwd`).
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file.
    pub acl_file: Option<PathBuf>,
    /// Largest keep alive accepted, seconds (10..=65535; default 65535).
    pub max_keepalive: u16,
    /// Largest packet accepted, bytes (20..=268435460). Default: 1 MiB, the core's
    /// default. Mosquitto's default is no limit; a bound is what keeps one client from
    /// making the broker buffer 256 MB.
    pub max_packet_size: u32,
    /// Outgoing QoS 1/2 messages in flight per client; 0 means no limit beyond the
    /// client's Receive Maximum. Default 20 (Mosquitto).
    pub max_inflight_messages: u16,
    /// Messages queued per client beyond those in flight; 0 means no limit. Default 1000.
    pub max_queued_messages: usize,
    /// Bytes queued per client; 0 means no limit (the default).
    pub max_queued_bytes: usize,
    /// QoS 1/2 messages for a connected subscriber whose queue is full: hold the publisher
    /// (the default) or drop them (Mosquitto's behaviour).
    pub queue_full: broker_core::QueueFull,
    /// A subscriber that makes no progress this long, seconds, while publishers wait for
    /// room in its queue is disconnected (default 30).
    pub stall_timeout: u32,
    /// Retained messages supported (default true).
    pub retain_available: bool,
    /// Expiry of disconnected persistent 3.1/3.1.1 sessions, seconds; `None`: never (the
    /// default).
    pub persistent_client_expiration: Option<u32>,
    /// Save sessions and retained messages to disk (default false).
    pub persistence: bool,
    /// Directory of the persistence database, as configured.
    pub persistence_location: Option<PathBuf>,
    /// The persistence database (`persistence_location` joined with `persistence_file`,
    /// default `petrel.db`); `Some` exactly when `persistence` is on.
    pub persistence_file: Option<PathBuf>,
    /// Seconds between saves of the persistence database; 0: only at exit (default 1800).
    pub autosave_interval: u32,
    /// Accept an empty client identifier and assign one (default true).
    pub allow_zero_length_clientid: bool,
    /// Queue QoS 0 messages for disconnected persistent sessions (default false).
    pub queue_qos0_messages: bool,
    /// Connections allowed in all; `None` (or `-1` in the file): unlimited.
    pub max_connections: Option<usize>,
    /// Broker threads (shards); `None`: one per CPU.
    pub threads: Option<usize>,
    /// Log filter for `tracing` ("off", "error", "warn", "info", "debug", "trace", or
    /// directives like "info,runtime_uring=debug"); `None`: the shell's default.
    pub log_level: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self::embedded_default()
    }
}

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
    /// The embedded default configuration's text (`petrel broker --print-default-config`).
    pub const DEFAULT_TOML: &'static str = include_str!("default.toml");

    /// The embedded default: Mosquitto's local-only mode (`127.0.0.1:1883` and `[::1]:1883`,
    /// anonymous clients allowed).
    pub fn embedded_default() -> BrokerConfig {
        match Self::from_str(Self::DEFAULT_TOML, "<embedded default.toml>") {
            Ok(cfg) => cfg,
            // A unit test parses it; reaching this is a build defect, not bad input.
            Err(e) => panic!("the embedded default configuration is invalid:\n{e}"),
        }
    }

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

    /// The listener a connection came in on (`PeerInfo::listener`).
    pub fn listener(&self, index: u16) -> Option<&ListenerConfig> {
        self.listeners.get(usize::from(index))
    }

    /// The core configuration for a single-shard broker: these limits on top of
    /// `broker_core::Config::default()`.
    pub fn core_config(&self) -> broker_core::Config {
        self.core_config_for_shard(0, 1)
    }

    /// The core configuration for shard `shard` of `shards`: `max_connections` is split
    /// evenly (rounded up) between shards, since each shard counts its own.
    pub fn core_config_for_shard(&self, shard: u16, shards: u16) -> broker_core::Config {
        let mut c = broker_core::Config {
            shard,
            shards: shards.max(1),
            ..Default::default()
        };
        c.max_keepalive = self.max_keepalive;
        c.max_packet_size = self.max_packet_size;
        c.max_inflight_messages = match self.max_inflight_messages {
            0 => u16::MAX,
            n => n,
        };
        c.max_queued_messages = match self.max_queued_messages {
            0 => usize::MAX,
            n => n,
        };
        c.max_queued_bytes = self.max_queued_bytes;
        c.queue_full = self.queue_full;
        c.stall_timeout_ms = u64::from(self.stall_timeout) * 1000;
        c.retain_available = self.retain_available;
        c.persistent_client_expiration = self.persistent_client_expiration;
        c.allow_zero_length_clientid = self.allow_zero_length_clientid;
        c.queue_qos0_messages = self.queue_qos0_messages;
        if let Some(total) = self.max_connections {
            c.max_connections = total.div_ceil(usize::from(c.shards));
        }
        c
    }
}

/// Parses Mosquitto's duration syntax: a positive integer followed by `h`, `d`, `w`, `m`
/// (months of 30 days) or `y` (365 days); Petrel also takes `s` and a bare number of
/// seconds. Returns seconds.
pub fn parse_duration(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (digits, mult): (&str, u64) = match s.as_bytes().last() {
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'h') => (&s[..s.len() - 1], 3600),
        Some(b'd') => (&s[..s.len() - 1], 86_400),
        Some(b'w') => (&s[..s.len() - 1], 7 * 86_400),
        Some(b'm') => (&s[..s.len() - 1], 30 * 86_400),
        Some(b'y') => (&s[..s.len() - 1], 365 * 86_400),
        Some(b'0'..=b'9') => (s, 1),
        _ => {
            return Err(format!(
                "\"{s}\" is not a duration (a number followed by s, h, d, w, m (months) or y)"
            ))
        }
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "\"{s}\" is not a duration (a number followed by s, h, d, w, m (months) or y)"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{s}\" is too long a duration"))?;
    if n == 0 {
        return Err(
            "a zero duration would expire sessions at once; leave the key out to never expire"
                .into(),
        );
    }
    n.checked_mul(mult)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            format!(
                "\"{s}\" is too long a duration (at most {} seconds, about 136 years)",
                u32::MAX
            )
        })
}

// ---------------------------------------------------------------------------------------
// Parsing

type Span = Range<usize>;

/// Where a key and its value were written.
#[derive(Debug, Clone)]
struct At {
    key: Span,
    val: Span,
}

const TOP_KEYS: &[&str] = &[
    "allow_anonymous",
    "password_file",
    "acl_file",
    "max_keepalive",
    "max_packet_size",
    "max_inflight_messages",
    "max_queued_messages",
    "max_queued_bytes",
    "queue_full",
    "stall_timeout",
    "retain_available",
    "persistent_client_expiration",
    "persistence",
    "persistence_location",
    "persistence_file",
    "autosave_interval",
    "allow_zero_length_clientid",
    "queue_qos0_messages",
    "max_connections",
    "threads",
    "log_level",
    "log_type",
    "listener",
];

const LISTENER_KEYS: &[&str] = &[
    "bind",
    "port",
    "bind_address",
    "certfile",
    "keyfile",
    "cafile",
    "require_certificate",
    "use_identity_as_username",
    "proxy_protocol",
    "protocol",
];

/// Mosquitto options Petrel does not have, with a hint where there is one to give.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "per_listener_settings",
        "password_file, acl_file and allow_anonymous apply to all listeners",
    ),
    ("auth_plugin", "plugins are not supported"),
    ("plugin", "plugins are not supported"),
    ("global_plugin", "plugins are not supported"),
    ("psk_file", "TLS-PSK is not supported"),
    ("psk_hint", "TLS-PSK is not supported"),
    ("user", "start petrel as the user it should run as"),
    ("pid_file", "your service manager tracks the process"),
    ("log_dest", "logs go to stderr"),
    ("log_facility", "logs go to stderr"),
    ("log_timestamp", "logs go to stderr with timestamps"),
    ("log_timestamp_format", "logs go to stderr with timestamps"),
    (
        "connection_messages",
        "connections are logged at log_level = \"info\"",
    ),
    ("sys_interval", ""),
    ("include_dir", "put everything in one file"),
    (
        "memory_limit",
        "memory is bounded by the queue and packet limits",
    ),
    ("message_size_limit", "use max_packet_size"),
    ("max_inflight_bytes", "use max_inflight_messages"),
    ("upgrade_outgoing_qos", ""),
    ("set_tcp_nodelay", ""),
    ("check_retain_source", ""),
    ("autosave_on_changes", "use autosave_interval"),
    ("auto_id_prefix", ""),
    ("clientid_prefixes", ""),
    ("retry_interval", ""),
    ("store_clean_interval", ""),
    ("websockets_log_level", ""),
    ("websockets_headers_size", ""),
    ("connection", "bridges are not supported"),
    ("address", "bridges are not supported"),
    ("addresses", "bridges are not supported"),
    ("capath", "use cafile"),
    ("crlfile", ""),
    ("ciphers", "rustls chooses safe cipher suites"),
    ("ciphers_tls1.3", "rustls chooses safe cipher suites"),
    ("tls_version", "TLS 1.2 and 1.3 are accepted"),
    ("dhparamfile", "rustls uses ECDHE"),
    ("tls_engine", ""),
    ("tls_keyform", ""),
    ("tls_engine_kpass_sha1", ""),
    (
        "use_subject_as_username",
        "use use_identity_as_username (the CN)",
    ),
    ("socket_domain", "bind to an IPv4 or IPv6 address"),
    ("http_dir", ""),
    ("mount_point", ""),
    ("max_qos", ""),
    ("max_topic_alias", ""),
    ("bind_interface", "bind to the interface's address"),
    ("enable_proxy_protocol", "use proxy_protocol = true"),
];

struct Parser<'a> {
    origin: &'a str,
    text: &'a str,
    base: Option<&'a Path>,
    diags: Vec<Diagnostic>,
}

/// A `[[listener]]` being read: the settings and where each was written.
struct RawListener {
    cfg: ListenerConfig,
    table: Span,
    set: Vec<(&'static str, At)>,
    bind_ok: bool,
}

impl RawListener {
    fn at(&self, key: &str) -> Option<&At> {
        self.set.iter().find(|(k, _)| *k == key).map(|(_, a)| a)
    }
}

impl<'a> Parser<'a> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[start..].chars().count() + 1)
    }

    fn error(&mut self, span: &Span, key: Option<&str>, message: impl Into<String>) {
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
            allow_zero_length_clientid: true,
            queue_qos0_messages: false,
            max_connections: None,
            threads: None,
            log_level: None,
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
                    let why = "seconds; 0 saves only at exit";
                    if let Some(n) = self.integer(key, v, 0, i64::from(u32::MAX), why) {
                        cfg.autosave_interval = u32::try_from(n).unwrap_or(u32::MAX);
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

    fn unknown_key(&mut self, span: &Span, name: &str, in_listener: bool) {
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

    fn wrong_type(&mut self, key: &str, v: &Spanned<DeValue<'_>>, expected: &str) {
        let found = Self::found(v.get_ref());
        self.error(
            &v.span(),
            Some(key),
            format!("\"{key}\" must be {expected}, found {found}"),
        );
    }

    fn boolean(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, v, "true or false");
                None
            }
        }
    }

    fn integer(
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

    fn string(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<String> {
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

    fn path(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<PathBuf> {
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

    /// Mosquitto's `log_type` (a type or a list of types), as the most verbose level.
    fn log_type(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<String> {
        let items: Vec<&Spanned<DeValue<'_>>> = match v.get_ref() {
            DeValue::String(_) => vec![v],
            DeValue::Array(a) => a.iter().collect(),
            _ => {
                self.wrong_type(key, v, "a Mosquitto log type or a list of them");
                return None;
            }
        };
        let mut rank = 0;
        for item in items {
            let DeValue::String(s) = item.get_ref() else {
                self.wrong_type(key, item, "a string");
                return None;
            };
            let r = match &**s {
                "none" => 0,
                "error" => 1,
                "warning" => 2,
                "notice" | "information" => 3,
                "debug" | "subscribe" | "unsubscribe" | "websockets" | "all" => 4,
                other => {
                    self.error(
                        &item.span(),
                        Some(key),
                        format!(
                            "unknown log type \"{other}\" (Mosquitto's types: debug, error, \
                             warning, notice, information, subscribe, unsubscribe, websockets, \
                             none, all)"
                        ),
                    );
                    return None;
                }
            };
            rank = rank.max(r);
        }
        Some(["off", "error", "warn", "info", "debug"][rank].to_owned())
    }

    fn listeners(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<RawListener> {
        let items = match v.get_ref() {
            DeValue::Array(a) => a,
            DeValue::Table(_) => {
                self.error(
                    &v.span(),
                    Some("listener"),
                    "write [[listener]] (an array of tables), not [listener]",
                );
                return Vec::new();
            }
            _ => {
                self.wrong_type(
                    "listener",
                    v,
                    "[[listener]] tables, e.g.\n    [[listener]]\n    bind = \"0.0.0.0:1883\"",
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items.iter() {
            let DeValue::Table(t) = item.get_ref() else {
                self.wrong_type("listener", item, "a table");
                continue;
            };
            out.push(self.listener(t, item.span()));
        }
        out
    }

    fn listener(&mut self, t: &DeTable<'_>, table: Span) -> RawListener {
        let mut r = RawListener {
            cfg: ListenerConfig::plain(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
            table,
            set: Vec::new(),
            bind_ok: false,
        };
        let mut bind: Option<SocketAddr> = None;
        let mut port: Option<u16> = None;
        let mut bind_address: Option<IpAddr> = None;
        for (k, v) in t.iter() {
            let name: &str = k.get_ref();
            let at = At {
                key: k.span(),
                val: v.span(),
            };
            let Some(key) = LISTENER_KEYS.iter().copied().find(|x| *x == name) else {
                self.unknown_key(&at.key, name, true);
                continue;
            };
            match key {
                "bind" => {
                    if let Some(s) = self.string(key, v) {
                        match s.parse::<SocketAddr>() {
                            Ok(a) => bind = Some(a),
                            Err(_) => self.error(
                                &at.val,
                                Some(key),
                                format!(
                                    "\"bind\" = \"{s}\" is not an address with a port, like \
                                     \"0.0.0.0:1883\", \"127.0.0.1:1883\" or \"[::1]:1883\""
                                ),
                            ),
                        }
                    }
                }
                "port" => {
                    if let Some(n) = self.integer(
                        key,
                        v,
                        0,
                        i64::from(u16::MAX),
                        "0 to 65535 (0: any free port)",
                    ) {
                        port = u16::try_from(n).ok();
                    }
                }
                "bind_address" => {
                    if let Some(s) = self.string(key, v) {
                        match s.parse::<IpAddr>() {
                            Ok(a) => bind_address = Some(a),
                            Err(_) => self.error(
                                &at.val,
                                Some(key),
                                format!(
                                    "\"bind_address\" = \"{s}\" is not an IP address (host names \
                                     are not resolved; use e.g. \"127.0.0.1\" or \"::1\")"
                                ),
                            ),
                        }
                    }
                }
                "certfile" => r.cfg.certfile = self.path(key, v),
                "keyfile" => r.cfg.keyfile = self.path(key, v),
                "cafile" => r.cfg.cafile = self.path(key, v),
                "require_certificate" => {
                    r.cfg.require_certificate = self.boolean(key, v).unwrap_or(false)
                }
                "use_identity_as_username" => {
                    r.cfg.use_identity_as_username = self.boolean(key, v).unwrap_or(false)
                }
                "proxy_protocol" => r.cfg.proxy_protocol = self.boolean(key, v).unwrap_or(false),
                "protocol" => {
                    if let Some(s) = self.string(key, v) {
                        match s.as_str() {
                            "mqtt" => r.cfg.protocol = ListenerProtocol::Mqtt,
                            "websockets" => r.cfg.protocol = ListenerProtocol::Websockets,
                            other => {
                                let m = format!(
                                    "\"protocol\" = \"{other}\": \
                                     expected \"mqtt\" or \"websockets\""
                                );
                                self.error(&at.val, Some(key), m)
                            }
                        }
                    }
                }
                _ => {}
            }
            r.set.push((key, at));
        }

        // Address: `bind`, or Mosquitto's `listener <port> [address]` as port/bind_address.
        let set = r.set.clone();
        let at = |k: &str| set.iter().find(|(x, _)| *x == k).map(|(_, a)| a.clone());
        match (at("bind"), at("port"), at("bind_address")) {
            (Some(_), Some(p), _) => self.error(
                &p.key,
                Some("port"),
                "use either \"bind\" or \"port\" (with \"bind_address\"), not both",
            ),
            (Some(_), None, Some(b)) => self.error(
                &b.key,
                Some("bind_address"),
                "\"bind_address\" goes with \"port\"; \"bind\" already has the address",
            ),
            (None, None, Some(b)) => self.error(
                &b.key,
                Some("bind_address"),
                "\"bind_address\" needs \"port\"",
            ),
            (None, None, None) => self.error(
                &r.table,
                Some("listener"),
                "[[listener]] needs \"bind\" (e.g. bind = \"0.0.0.0:1883\") or \"port\"",
            ),
            _ => {}
        }
        if let Some(a) = bind {
            if port.is_none() {
                r.cfg.bind = a;
                r.bind_ok = true;
            }
        } else if let Some(p) = port {
            if at("bind").is_none() {
                // Mosquitto's `listener 1883` binds every interface; here 0.0.0.0 (add a
                // listener on [::] for IPv6).
                let ip = bind_address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                r.cfg.bind = SocketAddr::new(ip, p);
                r.bind_ok = at("bind_address").is_none() || bind_address.is_some();
            }
        }

        // TLS settings that need each other.
        let c = r.cfg.clone();
        if let (Some(a), None) = (at("certfile"), &c.keyfile) {
            self.error(
                &a.key,
                Some("certfile"),
                "\"certfile\" is set but \"keyfile\" is not: TLS needs both",
            );
        }
        if let (Some(a), None) = (at("keyfile"), &c.certfile) {
            self.error(
                &a.key,
                Some("keyfile"),
                "\"keyfile\" is set but \"certfile\" is not: TLS needs both",
            );
        }
        if let (Some(a), None) = (at("cafile"), &c.certfile) {
            self.error(
                &a.key,
                Some("cafile"),
                "\"cafile\" only applies to TLS listeners: set \"certfile\" and \"keyfile\" too",
            );
        }
        if c.require_certificate && c.cafile.is_none() {
            if let Some(a) = at("require_certificate") {
                self.error(
                    &a.key,
                    Some("require_certificate"),
                    "require_certificate = true needs \"cafile\" \
                     (the CA that signs client certificates)",
                );
            }
        }
        if c.use_identity_as_username && !c.require_certificate {
            if let Some(a) = at("use_identity_as_username") {
                self.error(
                    &a.key,
                    Some("use_identity_as_username"),
                    "use_identity_as_username = true needs require_certificate = true \
                     (the identity comes from the client certificate)",
                );
            }
        }
        for (key, path) in [
            ("certfile", &c.certfile),
            ("keyfile", &c.keyfile),
            ("cafile", &c.cafile),
        ] {
            if let (Some(p), Some(a)) = (path, at(key)) {
                if let Err(e) = std::fs::File::open(p).and_then(|f| f.metadata()) {
                    self.error(
                        &a.val,
                        Some(key),
                        format!("cannot read {key} \"{}\": {e}", p.display()),
                    );
                } else if p.is_dir() {
                    self.error(
                        &a.val,
                        Some(key),
                        format!("{key} \"{}\" is a directory", p.display()),
                    );
                }
            }
        }
        r
    }

    /// Two listeners on one address (or one on the wildcard address and one on a specific
    /// address of the same family and port) cannot both bind.
    fn check_duplicate_binds(&mut self, raws: &[RawListener]) {
        for (j, b) in raws.iter().enumerate() {
            if !b.bind_ok || b.cfg.bind.port() == 0 {
                continue;
            }
            let clash = raws[..j].iter().find(|a| {
                a.bind_ok
                    && a.cfg.bind.port() == b.cfg.bind.port()
                    && a.cfg.bind.is_ipv4() == b.cfg.bind.is_ipv4()
                    && (a.cfg.bind.ip() == b.cfg.bind.ip()
                        || a.cfg.bind.ip().is_unspecified()
                        || b.cfg.bind.ip().is_unspecified())
            });
            if let Some(a) = clash {
                let span = b
                    .at("bind")
                    .or_else(|| b.at("port"))
                    .map_or(b.table.clone(), |x| x.key.clone());
                let (line, _) = self.position(a.table.start);
                let what = if a.cfg.bind == b.cfg.bind {
                    "is already used by"
                } else {
                    "overlaps"
                };
                self.error(
                    &span,
                    Some("bind"),
                    format!(
                        "listener address {} {what} the listener at line {line} ({})",
                        b.cfg.bind, a.cfg.bind
                    ),
                );
            }
        }
    }
}

/// Normalizes a `log_level`: a level name (Mosquitto's names too) or `tracing` directives.
fn normalize_log_level(s: &str) -> Result<String, String> {
    let level = match s.trim().to_ascii_lowercase().as_str() {
        "off" | "none" => "off",
        "error" => "error",
        "warn" | "warning" => "warn",
        "info" | "information" | "notice" => "info",
        "debug" => "debug",
        "trace" | "all" => "trace",
        _ if s.contains('=') || s.contains(',') => {
            return tracing_subscriber::EnvFilter::try_new(s)
                .map(|_| s.to_owned())
                .map_err(|e| format!("\"{s}\" is not a valid filter: {e}"));
        }
        _ => {
            return Err(format!(
                "\"{s}\": expected off, error, warn, info, debug or trace, \
                 or directives like \"info,runtime_uring=debug\""
            ))
        }
    };
    Ok(level.to_owned())
}

/// The known key closest to `name`: one it is a prefix of (`max_inflight` →
/// `max_inflight_messages`), else one within a small edit distance.
fn suggest<'k>(name: &str, keys: &[&'k str]) -> Option<&'k str> {
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

fn levenshtein(a: &str, b: &str) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BrokerConfig {
        match BrokerConfig::from_str(text, "petrel.toml") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(text: &str) -> String {
        match BrokerConfig::from_str(text, "petrel.toml") {
            Ok(c) => panic!("expected errors, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn embedded_default_parses_to_mosquitto_local_only_mode() {
        let c = BrokerConfig::embedded_default();
        let binds: Vec<String> = c.listeners.iter().map(|l| l.bind.to_string()).collect();
        assert_eq!(binds, ["127.0.0.1:1883", "[::1]:1883"]);
        assert!(c.allow_anonymous);
        assert!(c.password_file.is_none() && c.acl_file.is_none());
        assert_eq!(c.max_inflight_messages, 20);
        assert_eq!(c.max_queued_messages, 1000);
        assert_eq!(c.max_keepalive, 65535);
        assert!(c.retain_available);
        assert!(!c.persistence);
    }

    #[test]
    fn embedded_default_equals_an_empty_file() {
        // The default file only writes down the defaults; it must not change them.
        assert_eq!(BrokerConfig::embedded_default(), parse(""));
    }

    #[test]
    fn embedded_default_documents_every_key() {
        for key in TOP_KEYS.iter().chain(LISTENER_KEYS) {
            assert!(
                BrokerConfig::DEFAULT_TOML.contains(&format!("{key} ="))
                    || BrokerConfig::DEFAULT_TOML.contains(&format!("[[{key}]]")),
                "default.toml does not mention {key}"
            );
        }
    }

    #[test]
    fn listeners_make_allow_anonymous_default_to_false() {
        let c = parse("password_file = \"/dev/null\"\n[[listener]]\nbind = \"0.0.0.0:1883\"\n");
        assert!(!c.allow_anonymous);
        assert_eq!(c.listeners.len(), 1);
    }

    #[test]
    fn listener_accepts_bind_or_port_with_bind_address() {
        let c = parse(
            "allow_anonymous = true\n\
             [[listener]]\nbind = \"[::1]:1884\"\n\
             [[listener]]\nport = 1885\n\
             [[listener]]\nport = 1886\nbind_address = \"127.0.0.1\"\n",
        );
        let binds: Vec<String> = c.listeners.iter().map(|l| l.bind.to_string()).collect();
        assert_eq!(binds, ["[::1]:1884", "0.0.0.0:1885", "127.0.0.1:1886"]);
    }

    #[test]
    fn all_top_level_keys_are_read() {
        let c = parse(
            "allow_anonymous = true\nmax_keepalive = 60\nmax_packet_size = 20\n\
             max_inflight_messages = 0\nmax_queued_messages = 5\nmax_queued_bytes = 1000\n\
             retain_available = false\npersistent_client_expiration = \"2h\"\n\
             allow_zero_length_clientid = false\nqueue_qos0_messages = true\n\
             max_connections = 100\nthreads = 2\nlog_level = \"debug\"\nautosave_interval = 0\n",
        );
        assert_eq!(c.max_keepalive, 60);
        assert_eq!(c.max_packet_size, 20);
        assert_eq!(c.max_inflight_messages, 0);
        assert_eq!(c.max_queued_messages, 5);
        assert_eq!(c.max_queued_bytes, 1000);
        assert!(!c.retain_available);
        assert_eq!(c.persistent_client_expiration, Some(7200));
        assert!(!c.allow_zero_length_clientid);
        assert!(c.queue_qos0_messages);
        assert_eq!(c.max_connections, Some(100));
        assert_eq!(c.threads, Some(2));
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        assert_eq!(c.autosave_interval, 0);
    }

    #[test]
    fn unknown_key_is_reported_with_line_column_and_suggestion() {
        let e = errors("allow_anonymous = true\n\n\n\n\n\nmax_inflight = 5\n");
        assert_eq!(
            e,
            "petrel.toml:7:1: unknown key \"max_inflight\" (did you mean \"max_inflight_messages\"?)"
        );
        let e = errors("alow_anonymous = true\n");
        assert!(e.contains("did you mean \"allow_anonymous\""), "{e}");
    }

    #[test]
    fn mosquitto_only_options_are_named_as_unsupported() {
        let e = errors("per_listener_settings = true\n");
        assert!(
            e.contains("Mosquitto option that Petrel does not support"),
            "{e}"
        );
        let e = errors("auth_opt_backend = \"x\"\n");
        assert!(e.contains("plugin option"), "{e}");
    }

    #[test]
    fn listener_key_at_top_level_and_global_key_in_listener_are_explained() {
        let e = errors("certfile = \"x\"\n");
        assert!(e.contains("belongs in a [[listener]] table"), "{e}");
        let e = errors("[[listener]]\nbind = \"127.0.0.1:1883\"\nallow_anonymous = true\n");
        assert!(
            e.contains("petrel.toml:3:1: \"allow_anonymous\" is a global setting"),
            "{e}"
        );
        let e = errors("allow_anonymous = true\n[[listener]]\nbnd = \"127.0.0.1:1883\"\n");
        assert!(
            e.contains("unknown key \"bnd\" in [[listener]] (did you mean \"bind\"?)"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_reported_at_the_value() {
        let e = errors("max_keepalive = 5\n");
        assert!(
            e.starts_with("petrel.toml:1:17: \"max_keepalive\" = 5 is out of range"),
            "{e}"
        );
        let e = errors("allow_anonymous = \"yes\"\n");
        assert!(
            e.contains("\"allow_anonymous\" must be true or false, found string \"yes\""),
            "{e}"
        );
        let e = errors("max_packet_size = 10\n");
        assert!(e.contains("out of range"), "{e}");
        let e = errors("max_inflight_messages = 70000\n");
        assert!(e.contains("out of range"), "{e}");
        let e = errors("max_queued_messages = -1\n");
        assert!(e.contains("use 0 for no limit"), "{e}");
        let e = errors("log_level = \"verbose\"\n");
        assert!(e.contains("expected off, error"), "{e}");
    }

    #[test]
    fn zero_where_zero_is_meaningless_is_refused() {
        for (text, needle) in [
            ("threads = 0\n", "\"threads\" = 0 is out of range"),
            (
                "max_connections = 0\n",
                "\"max_connections\" = 0 is out of range",
            ),
            (
                "max_keepalive = 0\n",
                "\"max_keepalive\" = 0 is out of range",
            ),
            (
                "max_packet_size = 0\n",
                "\"max_packet_size\" = 0 is out of range",
            ),
            ("persistent_client_expiration = 0\n", "zero duration"),
            ("persistent_client_expiration = \"0d\"\n", "zero duration"),
        ] {
            let e = errors(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn max_connections_minus_one_means_unlimited() {
        assert_eq!(parse("max_connections = -1\n").max_connections, None);
    }

    #[test]
    fn every_error_is_reported_in_file_order() {
        let e = errors("threads = 0\nbogus = 1\nmax_keepalive = 1\n");
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].starts_with("petrel.toml:1:"), "{e}");
        assert!(lines[1].starts_with("petrel.toml:2:"), "{e}");
        assert!(lines[2].starts_with("petrel.toml:3:"), "{e}");
    }

    #[test]
    fn toml_syntax_errors_have_positions() {
        let e = errors("allow_anonymous = true\nmax_keepalive = = 3\n");
        assert!(e.starts_with("petrel.toml:2:"), "{e}");
        assert!(e.contains("TOML syntax error"), "{e}");
    }

    #[test]
    fn queue_full_and_stall_timeout() {
        let c = parse("");
        assert_eq!(
            c.queue_full,
            broker_core::QueueFull::Hold,
            "hold by default"
        );
        assert_eq!(c.core_config().stall_timeout_ms, 30_000);
        let c = parse("queue_full = \"drop\"\nstall_timeout = \"5s\"\n");
        assert_eq!(c.queue_full, broker_core::QueueFull::Drop);
        assert_eq!(c.core_config().queue_full, broker_core::QueueFull::Drop);
        assert_eq!(c.core_config().stall_timeout_ms, 5_000);
        let e = errors("queue_full = \"discard\"\n");
        assert!(e.contains("\"hold\" or \"drop\""), "{e}");
    }

    #[test]
    fn durations_follow_mosquitto_syntax_plus_seconds() {
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert_eq!(parse_duration("1w"), Ok(604_800));
        assert_eq!(
            parse_duration("1m"),
            Ok(2_592_000),
            "m is months, as in Mosquitto"
        );
        assert_eq!(parse_duration("1y"), Ok(31_536_000));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("200y").is_err(), "overflows u32 seconds");
        assert_eq!(
            parse("persistent_client_expiration = 3600\n").persistent_client_expiration,
            Some(3600)
        );
        assert_eq!(
            parse("persistent_client_expiration = \"14d\"\n").persistent_client_expiration,
            Some(14 * 86_400)
        );
    }

    #[test]
    fn tls_settings_that_need_each_other_are_checked() {
        let l = |body: &str| {
            format!("allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:8883\"\n{body}")
        };
        let e = errors(&l("certfile = \"/dev/null\"\n"));
        assert!(
            e.contains("petrel.toml:4:1: \"certfile\" is set but \"keyfile\" is not"),
            "{e}"
        );
        let e = errors(&l("keyfile = \"/dev/null\"\n"));
        assert!(
            e.contains("\"keyfile\" is set but \"certfile\" is not"),
            "{e}"
        );
        let e = errors(&l(
            "certfile = \"/dev/null\"\nkeyfile = \"/dev/null\"\nrequire_certificate = true\n",
        ));
        assert!(
            e.contains("require_certificate = true needs \"cafile\""),
            "{e}"
        );
        let e = errors(&l(
            "certfile = \"/dev/null\"\nkeyfile = \"/dev/null\"\nuse_identity_as_username = true\n",
        ));
        assert!(e.contains("needs require_certificate = true"), "{e}");
        let e = errors(&l("cafile = \"/dev/null\"\n"));
        assert!(e.contains("only applies to TLS listeners"), "{e}");
        let e = errors(&l(
            "certfile = \"/nonexistent/c.pem\"\nkeyfile = \"/dev/null\"\n",
        ));
        assert!(
            e.contains("cannot read certfile \"/nonexistent/c.pem\""),
            "{e}"
        );
        let ok = parse(&l("certfile = \"/dev/null\"\nkeyfile = \"/dev/null\"\ncafile = \"/dev/null\"\nrequire_certificate = true\nuse_identity_as_username = true\n"));
        assert!(ok.listeners[0].is_tls() && ok.listeners[0].use_identity_as_username);
    }

    #[test]
    fn listener_address_problems_are_reported() {
        let e = errors("allow_anonymous = true\n[[listener]]\nbind = \"localhost:1883\"\n");
        assert!(e.contains("is not an address with a port"), "{e}");
        let e = errors("allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1\"\n");
        assert!(e.contains("is not an address with a port"), "{e}");
        let e = errors("allow_anonymous = true\n[[listener]]\nprotocol = \"mqtt\"\n");
        assert!(e.contains("needs \"bind\""), "{e}");
        let e = errors("allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:1\"\nport = 2\n");
        assert!(e.contains("not both"), "{e}");
        let e = errors("allow_anonymous = true\n[[listener]]\nbind_address = \"127.0.0.1\"\n");
        assert!(e.contains("needs \"port\""), "{e}");
        let e = errors(
            "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"ws\"\n",
        );
        assert!(e.contains("expected \"mqtt\" or \"websockets\""), "{e}");
        let e = errors("allow_anonymous = true\n[listener]\nbind = \"127.0.0.1:1\"\n");
        assert!(e.contains("write [[listener]]"), "{e}");
        let e = errors("listener = 1883\n");
        assert!(e.contains("[[listener]] tables"), "{e}");
    }

    #[test]
    fn duplicate_and_overlapping_listener_addresses_are_refused() {
        let e = errors("allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:1883\"\n[[listener]]\nbind = \"127.0.0.1:1883\"\n");
        assert!(e.contains("petrel.toml:5:1: listener address 127.0.0.1:1883 is already used by the listener at line 2"), "{e}");
        let e = errors("allow_anonymous = true\n[[listener]]\nport = 1883\n[[listener]]\nbind = \"127.0.0.1:1883\"\n");
        assert!(e.contains("overlaps"), "{e}");
        // Same port, other family; or port 0: fine.
        parse("allow_anonymous = true\n[[listener]]\nbind = \"0.0.0.0:1883\"\n[[listener]]\nbind = \"[::]:1883\"\n");
        parse("allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:0\"\n[[listener]]\nbind = \"127.0.0.1:0\"\n");
    }

    #[test]
    fn closed_broker_without_any_way_to_authenticate_is_refused() {
        let e = errors("[[listener]]\nbind = \"0.0.0.0:1883\"\n");
        assert!(e.contains("allow_anonymous defaults to false"), "{e}");
        let e = errors("allow_anonymous = false\n");
        assert!(
            e.starts_with("petrel.toml:1:1: allow_anonymous is false"),
            "{e}"
        );
    }

    #[test]
    fn password_and_acl_files_must_exist_and_parse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = errors("password_file = \"/nonexistent/pw\"\n");
        assert!(
            e.starts_with("petrel.toml:1:17: password_file \"/nonexistent/pw\": cannot read"),
            "{e}"
        );
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "topic a\nbogus line\n").expect("write");
        let e = errors(&format!("acl_file = \"{}\"\n", acl.display()));
        assert!(
            e.starts_with(&format!("{}:2: unknown keyword \"bogus\"", acl.display())),
            "{e}"
        );
        assert!(e.contains("(acl_file set at petrel.toml:1:12)"), "{e}");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "alice\n").expect("write");
        let e = errors(&format!("password_file = \"{}\"\n", pw.display()));
        assert!(e.starts_with(&format!("{}:1: ", pw.display())), "{e}");
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("acl"), "topic a\n").expect("write");
        let conf = dir.path().join("petrel.toml");
        std::fs::write(&conf, "acl_file = \"acl\"\npersistence = true\n").expect("write");
        let c = BrokerConfig::from_file(&conf).expect("parses");
        assert_eq!(c.acl_file, Some(dir.path().join("acl")));
        assert_eq!(c.persistence_file, Some(dir.path().join("petrel.db")));
    }

    #[test]
    fn persistence_file_is_joined_to_persistence_location() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = parse(&format!(
            "persistence = true\npersistence_location = \"{}\"\npersistence_file = \"m.db\"\n",
            dir.path().display()
        ));
        assert_eq!(c.persistence_file, Some(dir.path().join("m.db")));
        assert_eq!(
            parse("persistence_file = \"m.db\"\n").persistence_file,
            None,
            "persistence off"
        );
        let e = errors("persistence = true\npersistence_location = \"/nonexistent/dir\"\n");
        assert!(e.contains("is not a directory"), "{e}");
    }

    #[test]
    fn log_type_maps_to_the_most_verbose_level() {
        assert_eq!(
            parse("log_type = \"error\"\n").log_level.as_deref(),
            Some("error")
        );
        assert_eq!(
            parse("log_type = [\"error\", \"warning\", \"information\"]\n")
                .log_level
                .as_deref(),
            Some("info")
        );
        assert_eq!(
            parse("log_type = \"all\"\n").log_level.as_deref(),
            Some("debug")
        );
        assert_eq!(
            parse("log_level = \"info,runtime_uring=debug\"\n")
                .log_level
                .as_deref(),
            Some("info,runtime_uring=debug")
        );
        assert_eq!(
            parse("log_level = \"warning\"\n").log_level.as_deref(),
            Some("warn")
        );
        let e = errors("log_type = \"verbose\"\n");
        assert!(e.contains("unknown log type"), "{e}");
        let e = errors("log_type = \"all\"\nlog_level = \"info\"\n");
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn core_config_maps_limits_and_keeps_core_defaults() {
        let c = parse("max_inflight_messages = 0\nmax_queued_messages = 0\nmax_keepalive = 30\nmax_connections = 10\n");
        let core = c.core_config();
        let d = broker_core::Config::default();
        assert_eq!(core.max_inflight_messages, u16::MAX, "0: no limit");
        assert_eq!(core.max_queued_messages, usize::MAX, "0: no limit");
        assert_eq!(core.max_keepalive, 30);
        assert_eq!(core.max_connections, 10);
        assert_eq!(core.receive_maximum, d.receive_maximum);
        assert_eq!(core.topic_alias_maximum, d.topic_alias_maximum);
        let dflt = BrokerConfig::embedded_default().core_config();
        assert_eq!(dflt.max_inflight_messages, 20);
        assert_eq!(dflt.max_queued_messages, 1000);
        assert_eq!(dflt.max_packet_size, d.max_packet_size);
        assert_eq!(dflt.max_connections, d.max_connections);
        let shard = c.core_config_for_shard(2, 4);
        assert_eq!(
            (shard.shard, shard.shards, shard.max_connections),
            (2, 4, 3)
        );
    }

    #[test]
    fn suggestions_prefer_prefixes_then_small_edits() {
        assert_eq!(
            suggest("max_inflight", TOP_KEYS),
            Some("max_inflight_messages")
        );
        assert_eq!(suggest("acl_fil", TOP_KEYS), Some("acl_file"));
        assert_eq!(suggest("keepalive", TOP_KEYS), None);
        assert_eq!(suggest("cerfile", LISTENER_KEYS), Some("certfile"));
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
