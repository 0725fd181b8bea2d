//! TLS termination: APISIX `ssl` objects (`/apisix/admin/ssls/{id}`: `cert`, `key`,
//! `snis` or `sni`, `client.ca`) compiled into one rustls `ServerConfig` each, and the
//! index that picks one by the server name of a ClientHello. A `client.ca` makes the
//! configuration require a client certificate signed by that CA (mutual TLS), per name,
//! which one shared `ServerConfig` with a certificate resolver could not do: the
//! configuration is chosen after the ClientHello is read (rustls `Acceptor`).
//!
//! Petrel's addition: the name `*` serves connections whose server name matches no other
//! object, and clients that send none (connecting by IP address).

use super::routes::{object, only, path, string, FieldError};
use crate::net::tls::{self, BuildError, PemError};
use rustls::ServerConfig;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// File reading lives with the other TLS loading; re-exported for the proxy's callers.
pub use crate::net::tls::read_pem_file;

type Res<T> = Result<T, FieldError>;

/// A validated `ssl` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslSpec {
    pub cert: String,
    pub key: String,
    /// Lower-case names, `*.domain` wildcards, or `*`.
    pub snis: Vec<String>,
    pub client_ca: Option<String>,
    /// `status: 0` disables the object without deleting it.
    pub enabled: bool,
}

fn sni_name(v: &Value, field: &str) -> Res<String> {
    let s = string(v, field)?.to_ascii_lowercase();
    let bare = s.strip_prefix("*.").unwrap_or(&s);
    let ok = s == "*"
        || (!bare.is_empty()
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')));
    if !ok {
        return Err(FieldError::new(field, "must be a host name, *.domain or *"));
    }
    Ok(s)
}

/// Parses an `ssl` body.
pub fn parse_ssl(v: &Value) -> Res<SslSpec> {
    let m = object(v, "body")?;
    only(
        m,
        "",
        &[
            "id",
            "cert",
            "key",
            "snis",
            "sni",
            "client",
            "type",
            "status",
            "labels",
            "desc",
            "validity_start",
            "validity_end",
            "create_time",
            "update_time",
        ],
    )?;
    let cert = string(
        m.get("cert")
            .ok_or_else(|| FieldError::new("cert", "required"))?,
        "cert",
    )?
    .to_owned();
    let key = string(
        m.get("key")
            .ok_or_else(|| FieldError::new("key", "required"))?,
        "key",
    )?
    .to_owned();
    let mut snis = Vec::new();
    match (m.get("snis"), m.get("sni")) {
        (Some(Value::Array(a)), None) if !a.is_empty() => {
            for (i, s) in a.iter().enumerate() {
                snis.push(sni_name(s, &format!("snis[{i}]"))?);
            }
        }
        (Some(_), None) => {
            return Err(FieldError::new("snis", "must be a non-empty list of names"))
        }
        (None, Some(s)) => snis.push(sni_name(s, "sni")?),
        (Some(_), Some(_)) => return Err(FieldError::new("sni", "give either sni or snis")),
        (None, None) => return Err(FieldError::new("snis", "required")),
    }
    if let Some(t) = m.get("type") {
        if string(t, "type")? != "server" {
            return Err(FieldError::new("type", "only \"server\" is supported"));
        }
    }
    let enabled = match m.get("status") {
        None => true,
        Some(s) => match s.as_u64() {
            Some(1) => true,
            Some(0) => false,
            _ => return Err(FieldError::new("status", "must be 0 or 1")),
        },
    };
    let client_ca = match m.get("client") {
        None => None,
        Some(c) => {
            let cm = object(c, "client")?;
            only(cm, "client", &["ca", "depth", "skip_mtls_uri_regex"])?;
            if let Some(d) = cm.get("depth") {
                if d.as_u64().is_none() {
                    return Err(FieldError::new("client.depth", "must be an integer"));
                }
            }
            if cm.contains_key("skip_mtls_uri_regex") {
                return Err(FieldError::new(
                    "client.skip_mtls_uri_regex",
                    "not supported (HTTP only)",
                ));
            }
            let ca = cm
                .get("ca")
                .ok_or_else(|| FieldError::new(path("client", "ca"), "required"))?;
            Some(string(ca, "client.ca")?.to_owned())
        }
    };
    Ok(SslSpec {
        cert,
        key,
        snis,
        client_ca,
        enabled,
    })
}

/// A PEM problem worded for the admin API: the field, then what is wrong with it.
fn pem_error(field: &str, what: &str, e: PemError) -> FieldError {
    match e {
        PemError::Invalid(e) => FieldError::new(field, format!("invalid PEM {what}: {e}")),
        PemError::Missing => FieldError::new(field, format!("no PEM {what} found")),
        PemError::Rejected(e) => FieldError::new(field, format!("CA certificate rejected: {e}")),
    }
}

/// Builds the server configuration of an `ssl` object; a `client.ca` makes a client
/// certificate mandatory (APISIX's mutual TLS has no optional mode).
pub fn compile(s: &SslSpec) -> Res<Arc<ServerConfig>> {
    let certs =
        tls::pem_certs(s.cert.as_bytes()).map_err(|e| pem_error("cert", "certificate", e))?;
    let key = tls::pem_key(s.key.as_bytes()).map_err(|e| pem_error("key", "private key", e))?;
    let roots = match &s.client_ca {
        Some(ca) => Some(
            tls::pem_roots(ca.as_bytes()).map_err(|e| pem_error("client.ca", "certificate", e))?,
        ),
        None => None,
    };
    let require = roots.is_some();
    tls::build_server(certs, key, roots, require).map_err(|e| match e {
        BuildError::Versions(e) => FieldError::new("cert", e.to_string()),
        BuildError::CertKey(e) => FieldError::new("key", format!("does not match cert: {e}")),
        BuildError::Verifier(e) => FieldError::new("client.ca", e.to_string()),
        // Cannot happen: a certificate is required only when there are roots.
        e @ BuildError::CaRequired => FieldError::new("client.ca", e.to_string()),
    })
}

/// A client configuration for TLS towards the nodes: trust `ca_pem`, optional client
/// certificate.
pub fn client_config(
    ca_pem: &str,
    client_cert: Option<&(String, String)>,
) -> Res<Arc<rustls::ClientConfig>> {
    let roots = tls::pem_roots(ca_pem.as_bytes())
        .map_err(|e| pem_error("upstream CA", "certificate", e))?;
    let pair = match client_cert {
        Some((c, k)) => Some((
            tls::pem_certs(c.as_bytes())
                .map_err(|e| pem_error("upstream.tls.client_cert", "certificate", e))?,
            tls::pem_key(k.as_bytes())
                .map_err(|e| pem_error("upstream.tls.client_key", "private key", e))?,
        )),
        None => None,
    };
    tls::build_client(roots, pair).map_err(|e| match e {
        BuildError::Versions(e) => FieldError::new("upstream.tls", e.to_string()),
        BuildError::CertKey(e) => FieldError::new("upstream.tls.client_key", e.to_string()),
        // Only server configurations check client certificates.
        e => FieldError::new("upstream.tls", e.to_string()),
    })
}

/// Server configurations by server name.
#[derive(Debug, Default, Clone)]
pub struct SniIndex {
    exact: HashMap<String, Arc<ServerConfig>>,
    /// (`suffix` of `*.suffix`, configuration).
    wildcard: Vec<(String, Arc<ServerConfig>)>,
    fallback: Option<Arc<ServerConfig>>,
}

impl SniIndex {
    /// Adds an object's names (the first object to claim a name keeps it).
    pub fn add(&mut self, snis: &[String], cfg: &Arc<ServerConfig>) {
        for s in snis {
            if s == "*" {
                self.fallback.get_or_insert_with(|| cfg.clone());
            } else if let Some(suffix) = s.strip_prefix("*.") {
                if !self.wildcard.iter().any(|(w, _)| w == suffix) {
                    self.wildcard.push((suffix.to_owned(), cfg.clone()));
                }
            } else {
                self.exact.entry(s.clone()).or_insert_with(|| cfg.clone());
            }
        }
    }

    /// No certificate at all: TLS is off.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.fallback.is_none()
    }

    /// The configuration for a ClientHello's server name.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<ServerConfig>> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return Some(c.clone());
            }
            if let Some((label, rest)) = name.split_once('.') {
                if !label.is_empty() {
                    if let Some((_, c)) = self.wildcard.iter().find(|(w, _)| w == rest) {
                        return Some(c.clone());
                    }
                }
            }
        }
        self.fallback.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_errors_name_fields() {
        let e = |v: Value| parse_ssl(&v).unwrap_err().field;
        assert_eq!(e(json!({"key": "k", "snis": ["a"]})), "cert");
        assert_eq!(e(json!({"cert": "c", "snis": ["a"]})), "key");
        assert_eq!(e(json!({"cert": "c", "key": "k"})), "snis");
        assert_eq!(
            e(json!({"cert": "c", "key": "k", "snis": ["a b"]})),
            "snis[0]"
        );
        assert_eq!(
            e(json!({"cert": "c", "key": "k", "sni": "a", "client": {}})),
            "client.ca"
        );
        assert_eq!(
            e(json!({"cert": "c", "key": "k", "sni": "a", "type": "client"})),
            "type"
        );
        let s = parse_ssl(&json!({"cert": "c", "key": "k", "sni": "A.example"})).unwrap();
        assert_eq!(s.snis, ["a.example"]);
        // Not PEM: the compile step names the field.
        assert_eq!(compile(&s).unwrap_err().field, "cert");
    }

    #[test]
    fn sni_lookup() {
        let kp = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let spec = SslSpec {
            cert: cert.pem(),
            key: kp.serialize_pem(),
            snis: vec!["a.example".into()],
            client_ca: None,
            enabled: true,
        };
        let a = compile(&spec).unwrap();
        let b = compile(&spec).unwrap();
        let mut idx = SniIndex::default();
        assert!(idx.is_empty());
        idx.add(&["a.example".into()], &a);
        idx.add(&["*.b.example".into()], &b);
        assert!(Arc::ptr_eq(&idx.lookup(Some("A.example")).unwrap(), &a));
        assert!(Arc::ptr_eq(&idx.lookup(Some("x.b.example")).unwrap(), &b));
        assert!(idx.lookup(Some("y.x.b.example")).is_none());
        assert!(idx.lookup(None).is_none());
        idx.add(&["*".into()], &a);
        assert!(Arc::ptr_eq(&idx.lookup(None).unwrap(), &a));
    }
}
