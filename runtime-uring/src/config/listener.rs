//! `[[listener]]` tables: reading each one, the checks between its keys, and addresses
//! that two listeners cannot both bind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::parse::{At, Parser, Span};
use super::schema::{ListenerConfig, ListenerProtocol, LISTENER_KEYS};

/// A `[[listener]]` being read: the settings and where each was written.
pub(super) struct RawListener {
    pub(super) cfg: ListenerConfig,
    pub(super) table: Span,
    set: Vec<(&'static str, At)>,
    bind_ok: bool,
}

impl RawListener {
    fn at(&self, key: &str) -> Option<&At> {
        self.set.iter().find(|(k, _)| *k == key).map(|(_, a)| a)
    }
}

impl Parser<'_> {
    pub(super) fn listeners(&mut self, v: &Spanned<DeValue<'_>>) -> Vec<RawListener> {
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

    pub(super) fn listener(&mut self, t: &DeTable<'_>, table: Span) -> RawListener {
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
                    if let Some(a) = self.socket_addr(
                        key,
                        v,
                        "\"0.0.0.0:1883\", \"127.0.0.1:1883\" or \"[::1]:1883\"",
                    ) {
                        bind = Some(a);
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
    pub(super) fn check_duplicate_binds(&mut self, raws: &[RawListener]) {
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
