//! Unit tests of the configuration file: parsing, diagnostics, Mosquitto compatibility and
//! the mapping onto `broker_core::Config`.

use super::ops::{ADMIN_KEYS, WEBHOOK_KEYS};
use super::parse::{levenshtein, suggest};
use super::schema::{LISTENER_KEYS, TOP_KEYS};
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
    let sections = ADMIN_KEYS
        .iter()
        .chain(WEBHOOK_KEYS)
        .chain(super::cluster::CLUSTER_KEYS)
        .chain(super::bridge::BRIDGE_KEYS)
        .chain(super::kafka::KAFKA_KEYS);
    for key in TOP_KEYS.iter().chain(LISTENER_KEYS).chain(sections) {
        assert!(
            BrokerConfig::DEFAULT_TOML.contains(&format!("{key} ="))
                || BrokerConfig::DEFAULT_TOML.contains(&format!("[[{key}]]"))
                || BrokerConfig::DEFAULT_TOML.contains(&format!("[{key}]")),
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
    let e =
        errors("allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"ws\"\n");
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

#[test]
fn admin_webhook_and_sys_sections_are_read() {
    let c = parse(
        "allow_anonymous = true\nsys_interval = 0\n\
         [admin]\nbind = \"127.0.0.1:18083\"\napi_key_file = \"/dev/null\"\nprometheus_auth = false\n\
         [[webhook]]\nurl = \"http://127.0.0.1:9000/e\"\nevents = [\"client.connected\"]\nqueue_size = 7\n",
    );
    assert_eq!(c.sys_interval, 0);
    let a = c.admin.expect("admin");
    assert_eq!(a.bind.port(), 18083);
    assert!(!a.prometheus_auth);
    assert_eq!(c.webhooks.len(), 1);
    assert_eq!(c.webhooks[0].topics, ["#"]);
    assert_eq!(c.webhooks[0].queue_size, 7);
}

#[test]
fn cluster_section_parses_and_refuses_what_cannot_work() {
    let c = parse(
        "[cluster]\nnode_id = \"n-1\"\netcd = [\"http://127.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n\
         nats = [\"nats://127.0.0.1:4222\"]\nlease_ttl = 9\njetstream_replicas = 3\n",
    );
    let cl = c.cluster.unwrap();
    assert_eq!(cl.node_id, "n-1");
    assert_eq!(cl.etcd.len(), 2);
    assert_eq!(cl.name, "petrel");
    assert_eq!((cl.lease_ttl, cl.jetstream_replicas), (9, 3));
    assert!(parse("").cluster.is_none());
    let e = errors("[cluster]\nnode_id = \"n1\"\n");
    assert!(
        e.contains("needs \"node_id\", \"etcd\" and \"nats\""),
        "{e}"
    );
    let e =
        errors("[cluster]\nnode_id = \"a.b\"\netcd = [\"http://h:1\"]\nnats = [\"nats://h:2\"]\n");
    assert!(e.contains("letters, digits"), "{e}");
    let e = errors("[cluster]\nnode_id = \"a\"\netcd = [\"h:1\"]\nnats = [\"http://h:2\"]\n");
    assert!(
        e.contains("must be a http:// URL") && e.contains("must be a nats:// URL"),
        "{e}"
    );
    let e = errors(
        "[cluster]\nnode_id = \"a\"\netcd = [\"http://h:1\"]\nnats = [\"nats://h:2\"]\nlease = 3\n",
    );
    assert!(e.contains("unknown key \"lease\" in [cluster]"), "{e}");
    let e = errors("[cluster]\nnode_id = \"a\"\netcd = [\"http://h:1\"]\nnats = [\"nats://h:2\"]\nlease_ttl = 1\n");
    assert!(e.contains("from 2 to 600 seconds"), "{e}");
}

#[test]
fn bridges_read_mosquittos_keys_with_its_defaults() {
    let c = parse(
        "[[bridge]]\nname = \"cloud\"\naddress = \"h:8883\"\ntopic = [\"a/# both 2 l/ r/\", \"b/#\"]\n\
         restart_timeout = 3\n",
    );
    let b = &c.bridges[0];
    assert_eq!(
        (b.remote_clientid.as_str(), b.local_clientid.as_str()),
        ("cloud", "local.cloud")
    );
    assert_eq!(b.addresses, ["h:8883"]);
    assert_eq!(b.topics.len(), 2);
    assert_eq!(b.restart_timeout, (3, 3));
    assert!(b.try_private && !b.cleansession);
    assert_eq!(b.protocol, broker_core::mqtt_proto::ProtocolVersion::V3_1_1);
    let d = parse("[[bridge]]\nname = \"x\"\naddress = [\"a\", \"b:1\"]\ntopic = \"t\"\n");
    assert_eq!(d.bridges[0].restart_timeout, DEFAULT_RESTART_TIMEOUT);
}

#[test]
fn bad_bridges_and_kafka_blocks_say_what_is_wrong() {
    let e = errors("[[bridge]]\nname = \"x\"\naddress = \"h\"\ntopic = \"a/# sideways\"\n");
    assert!(
        e.contains("petrel.toml:4:") && e.contains("out, in or both"),
        "{e}"
    );
    let e = errors("[[bridge]]\nname = \"x\"\ntopic = \"a\"\n");
    assert!(e.contains("needs \"name\", \"address\""), "{e}");
    let e = errors("[[bridge]]\nname = \"x\"\naddress = \"h\"\ntopic = \"a\"\nbridge_certfile = \"c\"\nbridge_keyfile = \"k\"\n");
    assert!(e.contains("bridge_cafile"), "{e}");
    let e =
        errors("[[bridge]]\nname = \"x\"\naddress = \"h\"\ntopic = \"a\"\nconnection = \"y\"\n");
    assert!(e.contains("unknown key \"connection\""), "{e}");
    let e = errors(
        "[[kafka]]\nname = \"k\"\nbootstrap = [\"h:9092\"]\nroutes = [ { filter = \"a/#/b\", topic = \"t\" }, { filter = \"a\", topic = \"bad topic\" } ]\n",
    );
    assert!(
        e.contains("not a valid topic filter") && e.contains("not a Kafka topic name"),
        "{e}"
    );
    let k = parse("[[kafka]]\nname = \"k\"\nbootstrap = [\"h:9092\"]\nroutes = [ { filter = \"a/#\", topic = \"t\" } ]\n");
    assert_eq!(k.kafka[0].routes[0].name, "k.1");
}
