//! API keys: EMQX's bootstrap file format, lines `key:secret[:role]` with the role
//! `administrator` (the default) or `viewer`. Secrets are kept as SHA-256 digests and
//! compared in constant time; every key is compared, so the time does not tell which
//! key exists either.

use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq as _;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Administrator,
    /// GET only.
    Viewer,
}

#[derive(Debug, Clone)]
struct Key {
    name: [u8; 32],
    secret: [u8; 32],
    role: Role,
}

/// The loaded key file.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Key>,
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl ApiKeys {
    /// Reads `path`; an error names the line.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("api_key_file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("api_key_file {}: {e}", path.display()))
    }

    /// Parses the file's text (blank lines and `#` comments are skipped).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, ':');
            let (Some(key), Some(secret)) = (parts.next(), parts.next()) else {
                return Err(format!("line {}: expected key:secret[:role]", n + 1));
            };
            if key.is_empty() || secret.is_empty() {
                return Err(format!("line {}: empty key or secret", n + 1));
            }
            let role = match parts.next() {
                None | Some("administrator") => Role::Administrator,
                Some("viewer") => Role::Viewer,
                Some(r) => {
                    return Err(format!(
                        "line {}: unknown role {r:?} (administrator or viewer)",
                        n + 1
                    ))
                }
            };
            keys.push(Key {
                name: digest(key.as_bytes()),
                secret: digest(secret.as_bytes()),
                role,
            });
        }
        if keys.is_empty() {
            return Err("no API key in it (there is no unauthenticated mode)".into());
        }
        Ok(Self { keys })
    }

    /// The role of `key:secret`, if they match a line.
    pub fn check(&self, key: &[u8], secret: &[u8]) -> Option<Role> {
        let (k, s) = (digest(key), digest(secret));
        let mut found = None;
        for entry in &self.keys {
            let ok = entry.name.ct_eq(&k) & entry.secret.ct_eq(&s);
            if bool::from(ok) && found.is_none() {
                found = Some(entry.role);
            }
        }
        found
    }

    /// The role of an `Authorization: Basic ...` header value.
    pub fn check_basic(&self, header: Option<&str>) -> Option<Role> {
        use base64::Engine as _;
        let b64 = header?.trim().strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        let colon = raw.iter().position(|&b| b == b':')?;
        let (key, secret) = (raw.get(..colon)?, raw.get(colon + 1..)?);
        self.check(key, secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_refusals() {
        let k = ApiKeys::parse("# keys\nadmin:s3cret\nro:view:viewer\n").unwrap();
        assert_eq!(k.check(b"admin", b"s3cret"), Some(Role::Administrator));
        assert_eq!(k.check(b"ro", b"view"), Some(Role::Viewer));
        assert_eq!(k.check(b"admin", b"view"), None);
        assert_eq!(k.check(b"nobody", b"s3cret"), None);
        // base64("admin:s3cret")
        assert_eq!(
            k.check_basic(Some("Basic YWRtaW46czNjcmV0")),
            Some(Role::Administrator)
        );
        assert_eq!(k.check_basic(Some("Bearer x")), None);
        assert_eq!(k.check_basic(None), None);
        assert!(ApiKeys::parse("").is_err());
        assert!(ApiKeys::parse("a:b:root").is_err());
        assert!(ApiKeys::parse("justakey").is_err());
    }
}
