//! Reads `gateway.toml` (or `$PETREL_GATEWAY_TOML`) and writes the gateway's build-time
//! configuration as Rust constants to `$OUT_DIR/gateway_config.rs`.
//!
//! The format is the small subset of TOML the file uses: `[section]` headers, `key = value`
//! lines, `#` comments, quoted strings, integers and booleans. Unknown keys are errors, so a
//! typo does not silently fall back to a default.
use std::collections::BTreeMap;
use std::{env, fs, path::PathBuf};

/// (section.key, Rust constant, type) for every setting.
const KEYS: &[(&str, &str, Kind)] = &[
    ("network.address", "ADDRESS", Kind::Ipv4),
    ("network.prefix_len", "PREFIX_LEN", Kind::U8),
    ("network.gateway", "GATEWAY", Kind::Ipv4),
    ("network.mac", "MAC", Kind::Mac),
    ("broker.port", "PORT", Kind::U16),
    ("broker.clients", "CLIENTS", Kind::Usize),
    ("broker.max_packet_size", "MAX_PACKET_SIZE", Kind::Usize),
    ("broker.socket_rx", "SOCKET_RX", Kind::Usize),
    ("broker.socket_tx", "SOCKET_TX", Kind::Usize),
    ("broker.max_inflight", "MAX_INFLIGHT", Kind::U16),
    (
        "broker.max_queued_messages",
        "MAX_QUEUED_MESSAGES",
        Kind::Usize,
    ),
    ("broker.max_queued_bytes", "MAX_QUEUED_BYTES", Kind::Usize),
    ("broker.max_retained", "MAX_RETAINED", Kind::Usize),
    ("broker.max_subscriptions", "MAX_SUBSCRIPTIONS", Kind::Usize),
    ("broker.max_sessions", "MAX_SESSIONS", Kind::Usize),
    ("broker.max_client_id_len", "MAX_CLIENT_ID_LEN", Kind::Usize),
    ("broker.max_session_expiry", "MAX_SESSION_EXPIRY", Kind::U32),
    ("broker.idle_timeout", "IDLE_TIMEOUT_SECS", Kind::U64),
    ("uplink.enabled", "UPLINK_ENABLED", Kind::Bool),
    ("uplink.address", "UPLINK_ADDRESS", Kind::Ipv4),
    ("uplink.port", "UPLINK_PORT", Kind::U16),
    ("uplink.client_id", "UPLINK_CLIENT_ID", Kind::Str),
    ("uplink.protocol", "UPLINK_PROTOCOL", Kind::U8),
    ("uplink.keep_alive", "UPLINK_KEEP_ALIVE", Kind::U16),
    ("uplink.session_expiry", "UPLINK_SESSION_EXPIRY", Kind::U32),
    ("uplink.up_local", "UP_LOCAL", Kind::Str),
    ("uplink.up_remote", "UP_REMOTE", Kind::Str),
    ("uplink.down_remote", "DOWN_REMOTE", Kind::Str),
    ("uplink.down_local", "DOWN_LOCAL", Kind::Str),
    ("uplink.window", "UPLINK_WINDOW", Kind::Usize),
    ("uplink.backoff_min_ms", "BACKOFF_MIN_MS", Kind::U64),
    ("uplink.backoff_max_ms", "BACKOFF_MAX_MS", Kind::U64),
    (
        "uplink.max_packet_size",
        "UPLINK_MAX_PACKET_SIZE",
        Kind::Usize,
    ),
    ("uplink.socket_rx", "UPLINK_SOCKET_RX", Kind::Usize),
    ("uplink.socket_tx", "UPLINK_SOCKET_TX", Kind::Usize),
    ("memory.heap", "HEAP_SIZE", Kind::Usize),
];

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    U8,
    U16,
    U32,
    U64,
    Usize,
    Str,
    Ipv4,
    Mac,
}

fn fail(msg: &str) -> ! {
    panic!("gateway configuration: {msg}");
}

fn parse(text: &str) -> BTreeMap<String, String> {
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim().to_string();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            fail(&format!("line {}: expected `key = value`", n + 1));
        };
        let key = format!("{section}.{}", k.trim());
        if out.insert(key.clone(), v.trim().to_string()).is_some() {
            fail(&format!("line {}: `{key}` set twice", n + 1));
        }
    }
    out
}

/// Removes a `#` comment that is not inside a quoted string.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(key: &str, v: &str) -> String {
    let Some(s) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        fail(&format!("`{key}` must be a quoted string, got {v}"));
    };
    if s.contains(['\\', '"']) {
        fail(&format!("`{key}`: escapes are not supported"));
    }
    s.to_string()
}

fn int<T: std::str::FromStr>(key: &str, v: &str) -> T {
    v.replace('_', "")
        .parse()
        .unwrap_or_else(|_| fail(&format!("`{key}`: not a valid integer for its type: {v}")))
}

fn rust_value(key: &str, kind: Kind, v: &str) -> (&'static str, String) {
    match kind {
        Kind::Bool => match v {
            "true" | "false" => ("bool", v.to_string()),
            _ => fail(&format!("`{key}` must be true or false")),
        },
        Kind::U8 => ("u8", int::<u8>(key, v).to_string()),
        Kind::U16 => ("u16", int::<u16>(key, v).to_string()),
        Kind::U32 => ("u32", int::<u32>(key, v).to_string()),
        Kind::U64 => ("u64", int::<u64>(key, v).to_string()),
        Kind::Usize => ("usize", int::<u32>(key, v).to_string()),
        Kind::Str => ("&str", format!("{:?}", unquote(key, v))),
        Kind::Ipv4 => {
            let s = unquote(key, v);
            let ip: std::net::Ipv4Addr = s
                .parse()
                .unwrap_or_else(|_| fail(&format!("`{key}`: not an IPv4 address: {s}")));
            ("[u8; 4]", format!("{:?}", ip.octets()))
        }
        Kind::Mac => {
            let s = unquote(key, v);
            let bytes: Vec<u8> = s
                .split(':')
                .map(|b| {
                    u8::from_str_radix(b, 16)
                        .unwrap_or_else(|_| fail(&format!("`{key}`: bad MAC {s}")))
                })
                .collect();
            if bytes.len() != 6 {
                fail(&format!("`{key}`: a MAC has 6 bytes: {s}"));
            }
            ("[u8; 6]", format!("{bytes:?}"))
        }
    }
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let path = env::var_os("PETREL_GATEWAY_TOML")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("gateway.toml"));
    println!("cargo:rerun-if-env-changed=PETREL_GATEWAY_TOML");
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rerun-if-changed=build.rs");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", path.display())));
    let mut values = parse(&text);

    let mut rs = format!(
        "// Generated by build.rs from {}. Do not edit.\n",
        path.display()
    );
    for (key, name, kind) in KEYS {
        let Some(v) = values.remove(*key) else {
            fail(&format!("`{key}` is missing from {}", path.display()));
        };
        let (ty, value) = rust_value(key, *kind, &v);
        rs.push_str(&format!("pub const {name}: {ty} = {value};\n"));
    }
    if let Some(k) = values.keys().next() {
        fail(&format!("unknown key `{k}` in {}", path.display()));
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("gateway_config.rs"), rs).expect("OUT_DIR is writable");
}
