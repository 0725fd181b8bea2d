//! Configuration files as users write them: the committed example (with the password and
//! ACL fixtures next to it), a TLS setup with real certificates, the printed default, and
//! the full error report for a hand-translated mosquitto.conf.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use runtime_uring::auth::SharedAuth;
use runtime_uring::config::{BrokerConfig, ListenerProtocol};

use broker_core::policy::{Authorizer, ClientInfo};
use mqtt_proto::{ProtocolVersion, QoS};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load(path: &Path) -> BrokerConfig {
    match BrokerConfig::from_file(path) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

#[test]
fn committed_example_loads_with_mosquitto_semantics() {
    let c = load(&data("example.toml"));
    assert!(c.allow_anonymous);
    assert_eq!(c.password_file, Some(data("mosquitto_passwd_2.0.txt")));
    assert_eq!(c.acl_file, Some(data("example.acl")));
    assert_eq!(c.max_inflight_messages, 10);
    assert_eq!(c.max_queued_messages, 5000);
    assert_eq!(c.max_queued_bytes, 10 * 1024 * 1024);
    assert_eq!(c.persistent_client_expiration, Some(14 * 86_400));
    assert_eq!(c.max_keepalive, 300);
    assert_eq!(c.log_level.as_deref(), Some("info"));
    let binds: Vec<SocketAddr> = c.listeners.iter().map(|l| l.bind).collect();
    assert_eq!(
        binds,
        [
            addr("0.0.0.0:1883"),
            addr("[::]:1883"),
            addr("127.0.0.1:9001")
        ]
    );
    assert_eq!(c.listeners[2].protocol, ListenerProtocol::Websockets);
    assert!(c.listeners[2].proxy_protocol);
    let core = c.core_config();
    assert_eq!(core.max_inflight_messages, 10);
    assert_eq!(core.persistent_client_expiration, Some(14 * 86_400));
}

#[test]
fn committed_example_drives_authentication_and_acl() {
    let c = load(&data("example.toml"));
    let auth = SharedAuth::load(&c).expect("files load");
    let mut acl = auth.authorizer();
    let who = |id: &'static str, user: Option<&'static str>| ClientInfo {
        client_id: id,
        username: user,
        peer: None,
        protocol: ProtocolVersion::V5,
    };
    let q = QoS::AtLeastOnce;
    assert!(acl.can_subscribe(&who("x", None), "public/#", q));
    assert!(!acl.can_publish(&who("x", None), "public/a", q, false));
    assert!(acl.can_publish(&who("x", Some("alice")), "alice/a", q, false));
    assert!(!acl.can_publish(&who("x", Some("alice")), "alice/secret", q, false));
    assert!(acl.can_subscribe(&who("x", Some("dave smith")), "$SYS/broker/#", q));
    assert!(acl.can_publish(&who("pump-7", None), "devices/pump-7/telemetry/t", q, false));
    assert!(!acl.can_publish(&who("pump-7", None), "devices/pump-8/telemetry/t", q, false));
    assert!(acl.can_subscribe(&who("pump-7", None), "devices/pump-7/commands/+", q));
    assert!(!acl.can_subscribe(&who("pump-7", None), "devices/+/commands/#", q));
}

#[test]
fn tls_listener_with_client_certificates_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = rcgen::generate_simple_self_signed(vec!["Petrel test CA".to_owned()]).expect("ca");
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    std::fs::write(dir.path().join("ca.crt"), ca.cert.pem()).expect("write");
    std::fs::write(dir.path().join("server.crt"), server.cert.pem()).expect("write");
    std::fs::write(
        dir.path().join("server.key"),
        server.signing_key.serialize_pem(),
    )
    .expect("write");
    let conf = dir.path().join("petrel.toml");
    std::fs::write(
        &conf,
        "allow_anonymous = false\n\
         [[listener]]\nbind = \"127.0.0.1:8883\"\ncertfile = \"server.crt\"\nkeyfile = \"server.key\"\n\
         cafile = \"ca.crt\"\nrequire_certificate = true\nuse_identity_as_username = true\n",
    )
    .expect("write");
    let c = load(&conf);
    let l = &c.listeners[0];
    assert!(l.is_tls());
    assert_eq!(
        l.certfile.as_deref(),
        Some(dir.path().join("server.crt").as_path())
    );
    assert_eq!(
        l.keyfile.as_deref(),
        Some(dir.path().join("server.key").as_path())
    );
    assert_eq!(
        l.cafile.as_deref(),
        Some(dir.path().join("ca.crt").as_path())
    );
    assert!(l.require_certificate && l.use_identity_as_username);
    // Nothing but certificates authenticates here, and that is enough.
    assert!(!c.allow_anonymous && c.password_file.is_none());
}

#[test]
fn printed_default_config_loads_from_a_file_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("petrel.toml");
    std::fs::write(&conf, BrokerConfig::DEFAULT_TOML).expect("write");
    assert_eq!(load(&conf), BrokerConfig::embedded_default());
}

#[test]
fn hand_translated_mosquitto_conf_gets_every_mistake_reported() {
    let path = data("migrated_with_mistakes.toml");
    let e = BrokerConfig::from_file(&path).expect_err("has mistakes");
    let f = path.display();
    let crt = data("server.crt");
    let expected = format!(
        "{f}:2:19: \"allow_anonymous\" must be true or false, found string \"false\"\n\
         {f}:3:1: unknown key \"max_inflight\" (did you mean \"max_inflight_messages\"?)\n\
         {f}:4:32: invalid \"persistent_client_expiration\": \"14days\" is not a duration (a number followed by s, h, d, w, m (months) or y)\n\
         {f}:5:1: \"per_listener_settings\" is a Mosquitto option that Petrel does not support (password_file, acl_file and allow_anonymous apply to all listeners)\n\
         {f}:9:1: \"max_connections\" is a global setting, not a listener setting: put it before the first [[listener]] (in TOML, keys after a [[listener]] header belong to that listener)\n\
         {f}:12:1: listener address 0.0.0.0:1883 is already used by the listener at line 7 (0.0.0.0:1883)\n\
         {f}:13:1: \"certfile\" is set but \"keyfile\" is not: TLS needs both\n\
         {f}:13:12: cannot read certfile \"{}\": No such file or directory (os error 2)",
        crt.display()
    );
    assert_eq!(e.to_string(), expected);
    assert_eq!(e.diagnostics.len(), 8);
    assert_eq!(e.diagnostics[1].key.as_deref(), Some("max_inflight"));
    assert_eq!(e.diagnostics[1].line, Some(3));
}

#[test]
fn missing_config_file_is_reported_with_its_name() {
    let e = BrokerConfig::from_file(Path::new("/nonexistent/petrel.toml")).expect_err("missing");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/petrel.toml: cannot read the configuration file"),
        "{e}"
    );
}
