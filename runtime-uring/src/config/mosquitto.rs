//! Mosquitto compatibility: the Mosquitto options Petrel does not have, Mosquitto's
//! duration syntax, its log level names and its `log_type`.

use toml::de::DeValue;
use toml::Spanned;

use super::parse::Parser;

/// Mosquitto options Petrel does not have, with a hint where there is one to give.
pub(super) const UNSUPPORTED: &[(&str, &str)] = &[
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

/// Normalizes a `log_level`: a level name (Mosquitto's names too) or `tracing` directives.
pub(super) fn normalize_log_level(s: &str) -> Result<String, String> {
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

impl Parser<'_> {
    /// Mosquitto's `log_type` (a type or a list of types), as the most verbose level.
    pub(super) fn log_type(&mut self, key: &str, v: &Spanned<DeValue<'_>>) -> Option<String> {
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
}
