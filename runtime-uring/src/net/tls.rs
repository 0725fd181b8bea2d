//! TLS with rustls as a byte transform between the socket and the MQTT core: ciphertext
//! in, plaintext out, and back. Certificates are loaded from PEM files; a new
//! configuration replaces the old one for new handshakes only (SIGHUP reload).

use anyhow::{anyhow, bail, Context as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{Connection, RootCertStore};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// What a TLS listener (or client) is configured with.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// Certificate chain (PEM).
    pub certfile: &'a Path,
    /// Private key (PEM).
    pub keyfile: &'a Path,
    /// CA for client certificates (PEM).
    pub cafile: Option<&'a Path>,
    /// Refuse clients without a valid certificate.
    pub require_certificate: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file (or inline PEM text).
pub fn load_certs(pem: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let data = read_pem(pem)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: invalid PEM certificate", pem.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate found", pem.display());
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (or inline PEM text).
pub fn load_key(pem: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let data = read_pem(pem)?;
    rustls_pemfile::private_key(&mut &data[..])
        .with_context(|| format!("{}: invalid PEM private key", pem.display()))?
        .ok_or_else(|| anyhow!("{}: no private key found", pem.display()))
}

/// A file's bytes, or the text itself when it already is PEM (inline PEM in configs).
fn read_pem(pem: &Path) -> anyhow::Result<Vec<u8>> {
    let s = pem.to_string_lossy();
    if s.trim_start().starts_with("-----BEGIN") {
        return Ok(s.as_bytes().to_vec());
    }
    std::fs::read(pem).with_context(|| format!("cannot read {}", pem.display()))
}

/// Root store from a CA file.
pub fn load_roots(cafile: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(cafile)? {
        roots
            .add(c)
            .with_context(|| format!("{}: CA certificate rejected", cafile.display()))?;
    }
    Ok(roots)
}

/// Builds a server configuration; every problem is an error naming the file.
pub fn server_config(f: &TlsFiles<'_>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = load_certs(f.certfile)?;
    let key = load_key(f.keyfile)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match f.cafile {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let v = if f.require_certificate {
                v.build()
            } else {
                v.allow_unauthenticated().build()
            };
            builder.with_client_cert_verifier(v.context("client certificate verifier")?)
        }
        None if f.require_certificate => bail!("require_certificate needs a cafile"),
        None => builder.with_no_client_auth(),
    };
    let cfg = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "{} does not match {}",
            f.certfile.display(),
            f.keyfile.display()
        )
    })?;
    Ok(Arc::new(cfg))
}

/// Builds a client configuration: trust `cafile` (or nothing else), optional client cert.
pub fn client_config(
    cafile: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let roots = match cafile {
        Some(ca) => load_roots(ca)?,
        None => RootCertStore::empty(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let cfg = match cert_key {
        Some((c, k)) => builder
            .with_client_auth_cert(load_certs(c)?, load_key(k)?)
            .context("client certificate or key rejected")?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The subject Common Name of the peer's certificate (after verification).
pub fn peer_identity(conn: &Connection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// A TLS connection as a byte transform.
#[derive(Debug)]
pub struct TlsLayer {
    pub conn: Connection,
}

impl TlsLayer {
    /// Server side.
    pub fn server(cfg: Arc<rustls::ServerConfig>) -> anyhow::Result<Self> {
        Ok(Self {
            conn: Connection::Server(rustls::ServerConnection::new(cfg)?),
        })
    }

    /// Client side.
    pub fn client(cfg: Arc<rustls::ClientConfig>, server_name: &str) -> anyhow::Result<Self> {
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .with_context(|| format!("invalid TLS server name {server_name:?}"))?;
        Ok(Self {
            conn: Connection::Client(rustls::ClientConnection::new(cfg, name)?),
        })
    }

    /// Ciphertext from the socket; decrypted application bytes are appended to `plain`.
    pub fn feed(&mut self, mut input: &[u8], plain: &mut Vec<u8>) -> Result<(), rustls::Error> {
        while !input.is_empty() {
            match self.conn.read_tls(&mut input) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(rustls::Error::General(e.to_string())),
            }
            self.conn.process_new_packets()?;
            self.drain_plain(plain);
        }
        Ok(())
    }

    fn drain_plain(&mut self, plain: &mut Vec<u8>) {
        let mut buf = [0u8; 8192];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => plain.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(_) => break,
            }
        }
    }

    /// Encrypts `chunks` and appends the records (plus any handshake bytes) to `out`.
    pub fn encrypt<'a>(
        &mut self,
        chunks: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        for mut c in chunks {
            while !c.is_empty() {
                // rustls buffers at most 64 KiB of records: move them out when it is full
                // (a burst of output is larger).
                let n = self.conn.writer().write(c)?;
                if n == 0 {
                    if !self.conn.wants_write() {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    self.pending(out)?;
                }
                c = c.get(n..).unwrap_or_default();
            }
        }
        self.pending(out)
    }

    /// TLS bytes rustls wants to send (handshake, alerts, records).
    pub fn pending(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        Ok(())
    }

    /// Still handshaking.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }
}
