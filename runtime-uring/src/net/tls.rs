//! TLS with rustls as a byte transform between the socket and the MQTT core: ciphertext
//! in, plaintext out, and back. This module is the one place rustls configurations are
//! built (broker listeners, the CLI client, the proxy's `ssl` objects and upstream TLS):
//! PEM is parsed from bytes, and callers that start from files go through thin loaders
//! that name the file in their errors. A new configuration replaces the old one for new
//! handshakes only (SIGHUP reload).

use anyhow::{anyhow, Context as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{ClientConfig, Connection, RootCertStore, ServerConfig};
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

/// Why PEM text was refused. Kept structured so that each caller words it in its own
/// terms (a file name for the broker, a JSON field for the proxy's admin API).
#[derive(Debug)]
pub enum PemError {
    /// Not parsable as PEM.
    Invalid(std::io::Error),
    /// Parsable, but without an item of the wanted kind.
    Missing,
    /// A CA certificate the root store refused.
    Rejected(rustls::Error),
}

impl std::fmt::Display for PemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(e) => write!(f, "invalid PEM: {e}"),
            Self::Missing => f.write_str("nothing found in the PEM text"),
            Self::Rejected(e) => write!(f, "CA certificate rejected: {e}"),
        }
    }
}

impl std::error::Error for PemError {}

/// Why a configuration could not be built (structured for the same reason as [`PemError`]).
#[derive(Debug)]
pub enum BuildError {
    /// The provider supports none of the default protocol versions.
    Versions(rustls::Error),
    /// The client-certificate verifier refused the CA roots.
    Verifier(VerifierBuilderError),
    /// A client certificate is required but no CA to check it against was given.
    CaRequired,
    /// The private key does not fit the certificate (or is unusable).
    CertKey(rustls::Error),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Versions(e) => write!(f, "TLS protocol versions: {e}"),
            Self::Verifier(e) => write!(f, "client certificate verifier: {e}"),
            Self::CaRequired => f.write_str("a required client certificate needs a CA"),
            Self::CertKey(e) => write!(f, "certificate or key rejected: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// The one crypto provider of every configuration (ring, rustls' default cipher suites).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM text; none at all is an error.
pub fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(PemError::Invalid)?;
    if certs.is_empty() {
        return Err(PemError::Missing);
    }
    Ok(certs)
}

/// The first private key of a PEM text.
pub fn pem_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(PemError::Invalid)?
        .ok_or(PemError::Missing)
}

/// A root store of every certificate of a PEM text.
pub fn pem_roots(pem: &[u8]) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for c in pem_certs(pem)? {
        roots.add(c).map_err(PemError::Rejected)?;
    }
    Ok(roots)
}

/// Builds a server configuration. With `client_ca`, clients may present a certificate
/// signed by it, and must when `require_client_cert`; requiring one without a CA is an
/// error rather than a silently open listener.
pub fn build_server(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<RootCertStore>,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, BuildError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(BuildError::Versions)?;
    let builder = match client_ca {
        Some(roots) => {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let v = if require_client_cert {
                v.build()
            } else {
                v.allow_unauthenticated().build()
            };
            builder.with_client_cert_verifier(v.map_err(BuildError::Verifier)?)
        }
        None if require_client_cert => return Err(BuildError::CaRequired),
        None => builder.with_no_client_auth(),
    };
    let cfg = builder
        .with_single_cert(certs, key)
        .map_err(BuildError::CertKey)?;
    Ok(Arc::new(cfg))
}

/// Builds a client configuration that trusts `roots` only (never the system store), with
/// an optional client certificate and key.
pub fn build_client(
    roots: RootCertStore,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, BuildError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(BuildError::Versions)?
        .with_root_certificates(roots);
    let cfg = match client_cert {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(BuildError::CertKey)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// A file's bytes, or the text itself when it already is PEM (inline PEM in configs).
fn read_pem(pem: &Path) -> anyhow::Result<Vec<u8>> {
    let s = pem.to_string_lossy();
    if s.trim_start().starts_with("-----BEGIN") {
        return Ok(s.as_bytes().to_vec());
    }
    std::fs::read(pem).with_context(|| format!("cannot read {}", pem.display()))
}

/// Reads a PEM file into text (for the proxy, whose `ssl` objects hold PEM text).
pub fn read_pem_file(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

/// A [`PemError`] worded with the file it came from; `what` is the item sought.
fn file_error(p: &Path, what: &str, e: PemError) -> anyhow::Error {
    let p = p.display();
    match e {
        PemError::Invalid(e) => anyhow::Error::new(e).context(format!("{p}: invalid PEM {what}")),
        PemError::Missing => anyhow!("{p}: no {what} found"),
        PemError::Rejected(e) => {
            anyhow::Error::new(e).context(format!("{p}: CA certificate rejected"))
        }
    }
}

/// Reads every certificate in a PEM file (or inline PEM text).
pub fn load_certs(pem: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    pem_certs(&read_pem(pem)?).map_err(|e| file_error(pem, "certificate", e))
}

/// Reads the first private key of a PEM file (or inline PEM text).
pub fn load_key(pem: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    pem_key(&read_pem(pem)?).map_err(|e| file_error(pem, "private key", e))
}

/// Root store from a CA file.
pub fn load_roots(cafile: &Path) -> anyhow::Result<RootCertStore> {
    pem_roots(&read_pem(cafile)?).map_err(|e| file_error(cafile, "certificate", e))
}

/// [`BuildError`] worded for the files' user; `cert_key` says what a key mismatch means.
fn build_error(e: BuildError, cert_key: impl FnOnce() -> String) -> anyhow::Error {
    match e {
        BuildError::Versions(e) => anyhow::Error::new(e).context("TLS protocol versions"),
        BuildError::Verifier(e) => anyhow::Error::new(e).context("client certificate verifier"),
        BuildError::CaRequired => anyhow!("require_certificate needs a cafile"),
        BuildError::CertKey(e) => anyhow::Error::new(e).context(cert_key()),
    }
}

/// Builds a listener's server configuration; every problem is an error naming the file.
pub fn server_config(f: &TlsFiles<'_>) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = load_certs(f.certfile)?;
    let key = load_key(f.keyfile)?;
    let roots = f.cafile.map(load_roots).transpose()?;
    build_server(certs, key, roots, f.require_certificate).map_err(|e| {
        build_error(e, || {
            format!(
                "{} does not match {}",
                f.certfile.display(),
                f.keyfile.display()
            )
        })
    })
}

/// Builds a client configuration: trust `cafile` (or nothing else), optional client cert.
pub fn client_config(
    cafile: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let roots = match cafile {
        Some(ca) => load_roots(ca)?,
        None => RootCertStore::empty(),
    };
    let pair = match cert_key {
        Some((c, k)) => Some((load_certs(c)?, load_key(k)?)),
        None => None,
    };
    build_client(roots, pair)
        .map_err(|e| build_error(e, || "client certificate or key rejected".to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let kp = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        (params.self_signed(&kp).unwrap().pem(), kp.serialize_pem())
    }

    #[test]
    fn pem_problems_are_told_apart() {
        assert!(matches!(pem_certs(b"not pem"), Err(PemError::Missing)));
        assert!(matches!(pem_key(b"not pem"), Err(PemError::Missing)));
        let (cert, key) = self_signed();
        assert_eq!(pem_certs(cert.as_bytes()).unwrap().len(), 1);
        assert!(pem_key(key.as_bytes()).is_ok());
        assert!(pem_roots(cert.as_bytes()).is_ok());
    }

    #[test]
    fn builders() {
        let (cert, key) = self_signed();
        let certs = || pem_certs(cert.as_bytes()).unwrap();
        let key = || pem_key(key.as_bytes()).unwrap();
        let roots = || Some(pem_roots(cert.as_bytes()).unwrap());
        assert!(build_server(certs(), key(), None, false).is_ok());
        assert!(build_server(certs(), key(), roots(), false).is_ok());
        assert!(build_server(certs(), key(), roots(), true).is_ok());
        assert!(matches!(
            build_server(certs(), key(), None, true),
            Err(BuildError::CaRequired)
        ));
        let (_, other_key) = self_signed();
        let other = pem_key(other_key.as_bytes()).unwrap();
        assert!(matches!(
            build_server(certs(), other, None, false),
            Err(BuildError::CertKey(_))
        ));
        assert!(build_client(RootCertStore::empty(), None).is_ok());
        assert!(build_client(RootCertStore::empty(), Some((certs(), key()))).is_ok());
    }

    #[test]
    fn file_errors_name_the_file() {
        let e = load_certs(Path::new("/nonexistent/c.pem")).unwrap_err();
        assert_eq!(e.to_string(), "cannot read /nonexistent/c.pem");
        let (cert, key) = self_signed();
        // Inline PEM without a key: worded as before the builders moved here.
        let e = load_key(Path::new(&cert)).unwrap_err();
        assert!(e.to_string().ends_with(": no private key found"), "{e}");
        let e = server_config(&TlsFiles {
            certfile: Path::new(&cert),
            keyfile: Path::new(&key),
            cafile: None,
            require_certificate: true,
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "require_certificate needs a cafile");
    }
}
