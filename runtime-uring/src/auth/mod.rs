//! Authentication and authorization from Mosquitto-style password and ACL files.
//!
//! What it does: [`FileAuth`] (a `broker_core` [`Authenticator`]) checks user names and
//! passwords against `password_file`, applies `allow_anonymous`, and takes the verified
//! certificate's CN as the user name on listeners with `use_identity_as_username`.
//! [`FileAcl`] (an [`Authorizer`]) applies `acl_file`. Both read one shared, immutable
//! snapshot of the files ([`SharedAuth`]): the broker's N shards parse nothing twice, and a
//! reload (SIGHUP) swaps the snapshot for all of them at once.
//!
//! What it deliberately does not do: plugins, MQTT 5 enhanced authentication, per-listener
//! password or ACL files (Mosquitto's `per_listener_settings`), or disconnecting clients
//! that a reload no longer admits (the shell decides that).
//!
//! Differences from Mosquitto 2.0, all on the strict side:
//! - A wrong password or unknown user gets `BadUserNameOrPassword` (0x86; 3.1.1: return
//!   code 4); Mosquitto 2.0 answers "not authorized" for both.
//! - Without a `password_file`, a client that sends a user name is still anonymous as far
//!   as `allow_anonymous` goes; Mosquitto 2.0 lets any user name in then.
//! - See [`acl`] for the ACL differences.

pub mod acl;
pub mod passwd;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use broker_core::policy::{Authenticator, Authorizer, ClientInfo, ConnectRequest};
use mqtt_proto::{QoS, ReasonCode};

use crate::config::BrokerConfig;
use acl::AclFile;
use passwd::PasswordFile;

/// A password or ACL file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFileError {
    /// The file, as configured.
    pub path: String,
    /// The offending line (1-based), when the problem is on one line.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl AuthFileError {
    pub(crate) fn new(path: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            line,
            message: message.into(),
        }
    }
}

/// `path:line: message`, like a compiler.
impl fmt::Display for AuthFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path, line, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for AuthFileError {}

/// Everything authentication and authorization need, loaded once.
#[derive(Debug)]
struct AuthState {
    passwords: Option<PasswordFile>,
    acl: Option<AclFile>,
    allow_anonymous: bool,
    /// `use_identity_as_username`, by listener index.
    identity_listeners: Box<[bool]>,
}

impl AuthState {
    fn load(cfg: &BrokerConfig) -> Result<Self, AuthFileError> {
        let passwords = cfg
            .password_file
            .as_deref()
            .map(PasswordFile::load)
            .transpose()?;
        let acl = cfg.acl_file.as_deref().map(AclFile::load).transpose()?;
        Ok(Self {
            passwords,
            acl,
            allow_anonymous: cfg.allow_anonymous,
            identity_listeners: cfg
                .listeners
                .iter()
                .map(|l| l.use_identity_as_username)
                .collect(),
        })
    }
}

#[derive(Debug)]
struct Shared {
    /// Bumped on every reload; readers compare it with the one they hold (one atomic load
    /// per check) and take the lock only when it moved.
    generation: AtomicU64,
    current: Mutex<Arc<AuthState>>,
}

/// The loaded password and ACL files, shared by every shard's [`FileAuth`] and
/// [`FileAcl`]. Cloning is cheap (an `Arc`).
///
/// ```no_run
/// # use runtime_uring::{auth::SharedAuth, config::BrokerConfig};
/// # type Error = Box<dyn std::error::Error>;
/// # fn demo(cfg: &BrokerConfig, new_cfg: &BrokerConfig) -> Result<(), Error> {
/// let auth = SharedAuth::load(cfg)?; // parses the files once
/// let (authenticator, authorizer) = (auth.authenticator(), auth.authorizer()); // per shard
/// // On SIGHUP: every FileAuth / FileAcl made from `auth` sees the new files at its next check;
/// // on error nothing changes.
/// auth.reload(new_cfg)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SharedAuth {
    inner: Arc<Shared>,
}

impl SharedAuth {
    /// Loads `password_file` and `acl_file` as `cfg` names them.
    pub fn load(cfg: &BrokerConfig) -> Result<Self, AuthFileError> {
        let state = AuthState::load(cfg)?;
        Ok(Self {
            inner: Arc::new(Shared {
                generation: AtomicU64::new(0),
                current: Mutex::new(Arc::new(state)),
            }),
        })
    }

    /// Reloads the files (and `allow_anonymous`, `use_identity_as_username`) from `cfg`.
    /// On error the previous snapshot stays in force.
    pub fn reload(&self, cfg: &BrokerConfig) -> Result<(), AuthFileError> {
        let state = Arc::new(AuthState::load(cfg)?);
        let mut current = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = state;
        self.inner.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// An authenticator for one shard.
    pub fn authenticator(&self) -> FileAuth {
        FileAuth {
            view: View::new(self.clone()),
        }
    }

    /// An authorizer for one shard.
    pub fn authorizer(&self) -> FileAcl {
        FileAcl {
            view: View::new(self.clone()),
        }
    }

    fn snapshot(&self) -> (u64, Arc<AuthState>) {
        let current = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: reload bumps it under the same lock.
        (
            self.inner.generation.load(Ordering::Acquire),
            current.clone(),
        )
    }
}

/// One holder's copy of the current snapshot.
#[derive(Debug)]
struct View {
    shared: SharedAuth,
    generation: u64,
    state: Arc<AuthState>,
}

impl View {
    fn new(shared: SharedAuth) -> Self {
        let (generation, state) = shared.snapshot();
        Self {
            shared,
            generation,
            state,
        }
    }

    fn refresh(&mut self) -> &AuthState {
        if self.shared.inner.generation.load(Ordering::Acquire) != self.generation {
            (self.generation, self.state) = self.shared.snapshot();
        }
        &self.state
    }

    fn stale(&self) -> bool {
        self.shared.inner.generation.load(Ordering::Relaxed) != self.generation
    }
}

/// Password file, `allow_anonymous` and `use_identity_as_username` as an
/// [`Authenticator`].
#[derive(Debug)]
pub struct FileAuth {
    view: View,
}

impl FileAuth {
    /// Loads the files `cfg` names into a fresh [`SharedAuth`]. With several shards, load
    /// one [`SharedAuth`] and call [`SharedAuth::authenticator`] per shard instead.
    pub fn new(cfg: &BrokerConfig) -> Result<Self, AuthFileError> {
        Ok(SharedAuth::load(cfg)?.authenticator())
    }

    /// Reloads from `cfg`: every [`FileAuth`] and [`FileAcl`] sharing this one's
    /// [`SharedAuth`] sees the new files. On error nothing changes.
    pub fn reload(&mut self, cfg: &BrokerConfig) -> Result<(), AuthFileError> {
        self.view.shared.reload(cfg)?;
        self.view.refresh();
        Ok(())
    }

    /// The snapshot this authenticator reads.
    pub fn shared(&self) -> &SharedAuth {
        &self.view.shared
    }
}

impl Authenticator for FileAuth {
    fn authenticate(&mut self, req: &ConnectRequest<'_>) -> Result<Option<Box<str>>, ReasonCode> {
        let state = self.view.refresh();
        if req.peer.listener == crate::broker::INTERNAL_LISTENER {
            // A bridge's local side, opened by the broker itself.
            return Ok(None);
        }
        let listener = usize::from(req.peer.listener);
        if state
            .identity_listeners
            .get(listener)
            .copied()
            .unwrap_or(false)
        {
            // use_identity_as_username: the certificate's CN is the user name and the
            // password file is not consulted (Mosquitto). TLS verified the certificate;
            // no CN (or an empty one) is refused, as Mosquitto does.
            return match &req.peer.cert_identity {
                Some(cn) if !cn.is_empty() => Ok(Some(cn.clone())),
                _ => Err(ReasonCode::NotAuthorized),
            };
        }
        match (req.username, &state.passwords) {
            (Some(user), Some(passwords)) => {
                let password = req.password.ok_or(ReasonCode::BadUserNameOrPassword)?;
                if passwords.verify(user, password) {
                    Ok(None)
                } else {
                    Err(ReasonCode::BadUserNameOrPassword)
                }
            }
            // Anonymous, or a user name with nothing to check it against.
            _ if state.allow_anonymous => Ok(None),
            _ => Err(ReasonCode::NotAuthorized),
        }
    }
}

/// A bridge's local side: what it forwards was chosen by the operator's `topic` rules.
fn internal(client: &ClientInfo<'_>) -> bool {
    client
        .peer
        .is_some_and(|p| p.listener == crate::broker::INTERNAL_LISTENER)
}

/// `acl_file` as an [`Authorizer`]; allows everything when no ACL file is configured.
#[derive(Debug)]
pub struct FileAcl {
    view: View,
}

impl FileAcl {
    /// Loads the files `cfg` names into a fresh [`SharedAuth`]. With several shards, load
    /// one [`SharedAuth`] and call [`SharedAuth::authorizer`] per shard instead.
    pub fn new(cfg: &BrokerConfig) -> Result<Self, AuthFileError> {
        Ok(SharedAuth::load(cfg)?.authorizer())
    }

    /// Reloads from `cfg`: every [`FileAuth`] and [`FileAcl`] sharing this one's
    /// [`SharedAuth`] sees the new files. On error nothing changes.
    pub fn reload(&mut self, cfg: &BrokerConfig) -> Result<(), AuthFileError> {
        self.view.shared.reload(cfg)?;
        self.view.refresh();
        Ok(())
    }

    /// The snapshot this authorizer reads.
    pub fn shared(&self) -> &SharedAuth {
        &self.view.shared
    }
}

impl Authorizer for FileAcl {
    fn can_publish(
        &mut self,
        client: &ClientInfo<'_>,
        topic: &str,
        _qos: QoS,
        _retain: bool,
    ) -> bool {
        if internal(client) {
            return true;
        }
        match &self.view.refresh().acl {
            None => true,
            Some(acl) => acl.check_publish(client.client_id, client.username, topic),
        }
    }

    fn can_subscribe(&mut self, client: &ClientInfo<'_>, filter: &str, _qos: QoS) -> bool {
        if internal(client) {
            return true;
        }
        match &self.view.refresh().acl {
            None => true,
            Some(acl) => acl.check_subscribe(client.client_id, client.username, filter),
        }
    }

    fn can_receive(&mut self, client: &ClientInfo<'_>, topic: &str) -> bool {
        if internal(client) {
            return true;
        }
        match &self.view.refresh().acl {
            None => true,
            Some(acl) => acl.check_receive(client.client_id, client.username, topic),
        }
    }

    fn checks_receive(&self) -> bool {
        // A pending reload may bring an ACL: say yes until `can_receive` has refreshed.
        self.view.state.acl.is_some() || self.view.stale()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerConfig, ListenerConfig};
    use broker_core::policy::PeerInfo;
    use mqtt_proto::ProtocolVersion;
    use std::path::PathBuf;

    const ALICE: &str = "alice:$7$101$//UjD25wiJuUvVea$Pw4wOmqYt7/LTU1+sjMu10sSTsVn22DpqEk+mDYDq093cF9/HECwZqaOJtyrbAWZ0/ffYAhAzz78M9CatmD8Fw==\n";

    struct Dir(tempfile::TempDir);
    impl Dir {
        fn new() -> Self {
            Self(tempfile::tempdir().expect("tempdir"))
        }
        fn file(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        }
    }

    fn config(
        password_file: Option<PathBuf>,
        acl_file: Option<PathBuf>,
        anon: bool,
    ) -> BrokerConfig {
        let mut cfg = BrokerConfig::embedded_default();
        cfg.password_file = password_file;
        cfg.acl_file = acl_file;
        cfg.allow_anonymous = anon;
        cfg
    }

    fn connect(
        auth: &mut FileAuth,
        peer: &PeerInfo,
        user: Option<&str>,
        pw: Option<&[u8]>,
    ) -> Result<Option<Box<str>>, ReasonCode> {
        let req = ConnectRequest {
            conn: conn_id(),
            client_id: "c1",
            username: user,
            password: pw,
            peer,
            protocol: ProtocolVersion::V5,
        };
        auth.authenticate(&req)
    }

    /// `ConnId` has no public constructor: take one from a throwaway core broker.
    fn conn_id() -> broker_core::ConnId {
        let mut b = broker_core::Broker::new(Default::default(), Default::default());
        b.handle_accept(broker_core::Instant::default(), PeerInfo::default())
            .expect("accepts")
    }

    fn client<'a>(id: &'a str, user: Option<&'a str>) -> ClientInfo<'a> {
        ClientInfo {
            client_id: id,
            username: user,
            peer: None,
            protocol: ProtocolVersion::V3_1_1,
        }
    }

    #[test]
    fn right_password_is_accepted_and_keeps_the_user_name() {
        let d = Dir::new();
        let cfg = config(Some(d.file("pw", ALICE)), None, false);
        let mut a = FileAuth::new(&cfg).expect("loads");
        let peer = PeerInfo::default();
        assert_eq!(
            connect(&mut a, &peer, Some("alice"), Some(b"secret")),
            Ok(None)
        );
    }

    #[test]
    fn wrong_password_unknown_user_or_missing_password_is_bad_user_name_or_password() {
        let d = Dir::new();
        let cfg = config(Some(d.file("pw", ALICE)), None, true);
        let mut a = FileAuth::new(&cfg).expect("loads");
        let peer = PeerInfo::default();
        let bad = Err(ReasonCode::BadUserNameOrPassword);
        assert_eq!(connect(&mut a, &peer, Some("alice"), Some(b"nope")), bad);
        assert_eq!(connect(&mut a, &peer, Some("bob"), Some(b"secret")), bad);
        assert_eq!(connect(&mut a, &peer, Some("alice"), None), bad);
    }

    #[test]
    fn anonymous_follows_allow_anonymous() {
        let d = Dir::new();
        let pw = d.file("pw", ALICE);
        let peer = PeerInfo::default();
        let mut closed = FileAuth::new(&config(Some(pw.clone()), None, false)).expect("loads");
        assert_eq!(
            connect(&mut closed, &peer, None, None),
            Err(ReasonCode::NotAuthorized)
        );
        let mut open = FileAuth::new(&config(Some(pw), None, true)).expect("loads");
        assert_eq!(connect(&mut open, &peer, None, None), Ok(None));
    }

    #[test]
    fn user_name_without_password_file_is_treated_as_anonymous() {
        let peer = PeerInfo::default();
        let mut closed = FileAuth::new(&config(None, None, false)).expect("loads");
        assert_eq!(
            connect(&mut closed, &peer, Some("anyone"), Some(b"x")),
            Err(ReasonCode::NotAuthorized)
        );
        let mut open = FileAuth::new(&config(None, None, true)).expect("loads");
        assert_eq!(connect(&mut open, &peer, Some("anyone"), None), Ok(None));
    }

    #[test]
    fn identity_listener_uses_certificate_cn_without_password_check() {
        let d = Dir::new();
        let mut cfg = config(Some(d.file("pw", ALICE)), None, false);
        let mut tls = ListenerConfig::plain("127.0.0.1:8883".parse().expect("addr"));
        tls.use_identity_as_username = true;
        cfg.listeners.push(tls);
        let idx = u16::try_from(cfg.listeners.len() - 1).expect("few listeners");
        let mut a = FileAuth::new(&cfg).expect("loads");
        let with_cn = PeerInfo {
            addr: None,
            cert_identity: Some("device-7".into()),
            listener: idx,
        };
        assert_eq!(
            connect(&mut a, &with_cn, Some("alice"), Some(b"wrong")),
            Ok(Some("device-7".into()))
        );
        let without_cn = PeerInfo {
            cert_identity: None,
            ..with_cn.clone()
        };
        assert_eq!(
            connect(&mut a, &without_cn, None, None),
            Err(ReasonCode::NotAuthorized)
        );
        // The same CN on a listener without use_identity_as_username changes nothing.
        let plain = PeerInfo {
            listener: 0,
            ..with_cn
        };
        assert_eq!(
            connect(&mut a, &plain, Some("alice"), Some(b"wrong")),
            Err(ReasonCode::BadUserNameOrPassword)
        );
    }

    #[test]
    fn no_acl_file_allows_everything_and_skips_receive_checks() {
        let mut acl = FileAcl::new(&config(None, None, true)).expect("loads");
        let c = client("c", None);
        assert!(acl.can_publish(&c, "a/b", QoS::AtMostOnce, false));
        assert!(acl.can_subscribe(&c, "#", QoS::AtMostOnce));
        assert!(acl.can_receive(&c, "a/b"));
        assert!(!acl.checks_receive());
    }

    #[test]
    fn acl_file_is_applied_to_publish_subscribe_and_receive() {
        let d = Dir::new();
        let acl_path = d.file("acl", "user alice\ntopic readwrite a/#\ntopic read r/#\n");
        let mut acl = FileAcl::new(&config(None, Some(acl_path), true)).expect("loads");
        assert!(acl.checks_receive());
        let alice = client("c", Some("alice"));
        assert!(acl.can_publish(&alice, "a/1", QoS::AtLeastOnce, false));
        assert!(!acl.can_publish(&alice, "r/1", QoS::AtLeastOnce, false));
        assert!(acl.can_subscribe(&alice, "r/+", QoS::AtLeastOnce));
        assert!(!acl.can_subscribe(&alice, "#", QoS::AtLeastOnce));
        assert!(acl.can_receive(&alice, "r/1"));
        assert!(!acl.can_receive(&client("c", None), "r/1"));
    }

    #[test]
    fn reload_is_seen_by_every_holder_of_the_shared_snapshot() {
        let d = Dir::new();
        let acl_path = d.file("acl", "topic readwrite old/#\n");
        let cfg = config(None, Some(acl_path.clone()), true);
        let shared = SharedAuth::load(&cfg).expect("loads");
        let mut shard1 = shared.authorizer();
        let mut shard2 = shared.authorizer();
        let c = client("c", None);
        assert!(shard1.can_publish(&c, "old/x", QoS::AtMostOnce, false));
        std::fs::write(&acl_path, "topic readwrite new/#\n").expect("write");
        shard1.reload(&cfg).expect("reloads");
        assert!(!shard2.can_publish(&c, "old/x", QoS::AtMostOnce, false));
        assert!(shard2.can_publish(&c, "new/x", QoS::AtMostOnce, false));
        assert!(!shard1.can_publish(&c, "old/x", QoS::AtMostOnce, false));
    }

    #[test]
    fn failed_reload_keeps_the_previous_files() {
        let d = Dir::new();
        let pw = d.file("pw", ALICE);
        let cfg = config(Some(pw.clone()), None, false);
        let mut a = FileAuth::new(&cfg).expect("loads");
        std::fs::write(&pw, "alice\n").expect("write");
        let e = a.reload(&cfg).expect_err("line 1 is malformed");
        assert_eq!(e.line, Some(1));
        let peer = PeerInfo::default();
        assert_eq!(
            connect(&mut a, &peer, Some("alice"), Some(b"secret")),
            Ok(None)
        );
    }

    #[test]
    fn reload_that_adds_an_acl_turns_receive_checks_on() {
        let d = Dir::new();
        let cfg = config(None, None, true);
        let shared = SharedAuth::load(&cfg).expect("loads");
        let mut acl = shared.authorizer();
        assert!(!acl.checks_receive());
        let with_acl = config(None, Some(d.file("acl", "topic read a\n")), true);
        shared.reload(&with_acl).expect("reloads");
        assert!(acl.checks_receive(), "pending reload");
        assert!(!acl.can_receive(&client("c", None), "b"));
        assert!(acl.checks_receive());
    }

    #[test]
    fn file_auth_and_file_acl_are_send() {
        fn is_send<T: Send + 'static>() {}
        is_send::<FileAuth>();
        is_send::<FileAcl>();
        is_send::<SharedAuth>();
        let _: Box<dyn Authenticator + Send> =
            Box::new(FileAuth::new(&config(None, None, true)).expect("loads"));
    }

    #[test]
    fn missing_files_are_reported_with_their_path() {
        let cfg = config(Some(PathBuf::from("/nonexistent/petrel/pw")), None, false);
        let e = SharedAuth::load(&cfg).expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("/nonexistent/petrel/pw: cannot read"),
            "{e}"
        );
    }
}
