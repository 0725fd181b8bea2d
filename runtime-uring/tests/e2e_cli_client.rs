//! Issue 7: `petrel pub` / `petrel sub` against Mosquitto and against `petrel broker`:
//! QoS 0/1/2 both ways, `user:password@` URLs with a `mosquitto_passwd` file, wrong
//! passwords, `ssl://` with an openssl-made CA (and without it), mutual TLS, `{uuid}`
//! client ids, a broker restarted in the middle of a subscription (with and without
//! persistence), `--exec` retries, `--count`, `--help`, bad URLs.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;

use common::*;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Petrel,
    Mosquitto,
}

fn plain(kind: Kind, dir: &Path) -> Broker {
    match kind {
        Kind::Petrel => Broker::Petrel(Petrel::start(
            dir,
            "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n",
        )),
        Kind::Mosquitto => Broker::Mosquitto(Mosquitto::plain(dir, "")),
    }
}

fn url(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// `petrel pub`, must succeed.
fn ppub(args: &[&str]) {
    let mut a = vec!["pub"];
    a.extend_from_slice(args);
    petrel(&a).assert_ok(&format!("petrel {a:?}"));
}

fn qos_both_ways(kind: Kind) {
    let d = tempdir();
    let b = plain(kind, d.path());
    let port = b.port();
    let u = url(port);
    for proto in ["3.1.1", "5"] {
        let mv = if proto == "5" { "5" } else { "311" };
        for q in ["0", "1", "2"] {
            let t = format!("cli/{proto}/{q}");
            // petrel pub -> mosquitto_sub: delivered at the QoS asked for.
            let s = mosq_sub(port, &["-V", mv, "-t", &t, "-q", q, "-F", "%q %p"]);
            ppub(&["--url", &u, "-V", proto, "-t", &t, "-q", q, "-m", "to-mosq"]);
            assert_eq!(payloads(&s, 1, T), [format!("{q} to-mosq")]);
            // mosquitto_pub -> petrel sub (--count 1 ends it).
            let mut ps = petrel_sub(&["--url", &u, "-V", proto, "-t", &t, "-q", q, "-C", "1"]);
            mosq_pub(port, &["-V", mv, "-t", &t, "-q", q, "-m", "to-petrel"]).assert_ok("pub");
            let st = ps.wait_exit(T).expect("petrel sub --count 1 exits");
            assert!(st.success(), "{}", ps.dump());
            assert_eq!(ps.stdout(), ["to-petrel"]);
            // petrel pub -> petrel sub, several messages from stdin lines, -v.
            let mut ps =
                petrel_sub(&["--url", &u, "-V", proto, "-t", &t, "-q", q, "-C", "3", "-v"]);
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(format!(
                "printf 'l1\\nl2\\nl3\\n' | {PETREL} pub --url {u} -V {proto} -t {t} -q {q} -l"
            ));
            run("petrel pub -l", cmd, T).assert_ok("petrel pub -l");
            let st = ps.wait_exit(T).expect("petrel sub exits");
            assert!(st.success(), "{}", ps.dump());
            assert_eq!(
                ps.stdout(),
                [format!("{t} l1"), format!("{t} l2"), format!("{t} l3")]
            );
        }
    }
    // Retained, and a payload from a file.
    let f = d.path().join("payload.bin");
    std::fs::write(&f, "from a file").unwrap();
    ppub(&[
        "--url",
        &u,
        "-t",
        "cli/retained",
        "-r",
        "-q",
        "1",
        "-f",
        &f.display().to_string(),
    ]);
    let mut ps = petrel_sub_spawn(&["--url", &u, "-t", "cli/retained", "-C", "1"]);
    assert!(
        ps.wait_exit(T).is_some_and(|s| s.success()),
        "{}",
        ps.dump()
    );
    assert_eq!(ps.stdout(), ["from a file"]);
}

#[test]
fn qos_both_ways_with_mosquitto() {
    qos_both_ways(Kind::Mosquitto);
}

#[test]
fn qos_both_ways_with_petrel() {
    qos_both_ways(Kind::Petrel);
}

fn credentials(kind: Kind) {
    let d = tempdir();
    // A password with characters that must be percent-encoded in the URL.
    passwd_file(d.path(), &[("alice", "p@ss:w/rd"), ("bob", "bobpw")]);
    let b = match kind {
        Kind::Petrel => Broker::Petrel(Petrel::start(
            d.path(),
            "allow_anonymous = false\npassword_file = \"{dir}/passwd\"\n\
             [[listener]]\nbind = \"127.0.0.1:{port}\"\n",
        )),
        Kind::Mosquitto => Broker::Mosquitto(Mosquitto::start(
            d.path(),
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {dir}/passwd\n",
        )),
    };
    let port = b.port();
    let good = format!("tcp://alice:p%40ss%3Aw%2Frd@127.0.0.1:{port}");
    for proto in ["3.1.1", "5"] {
        let mut ps = petrel_sub(&[
            "--url", &good, "-V", proto, "-t", "cred", "-C", "1", "-q", "1",
        ]);
        ppub(&[
            "--url",
            &format!("tcp://bob:bobpw@127.0.0.1:{port}"),
            "-V",
            proto,
            "-t",
            "cred",
            "-m",
            "authenticated",
            "-q",
            "1",
        ]);
        assert!(
            ps.wait_exit(T).is_some_and(|s| s.success()),
            "{}",
            ps.dump()
        );
        assert_eq!(ps.stdout(), ["authenticated"]);
        for bad in [
            format!("tcp://alice:wrong@127.0.0.1:{port}"),
            format!("tcp://nobody:x@127.0.0.1:{port}"),
        ] {
            for sub in [false, true] {
                let args: Vec<&str> = if sub {
                    vec!["sub", "--url", &bad, "-V", proto, "-t", "x"]
                } else {
                    vec!["pub", "--url", &bad, "-V", proto, "-t", "x", "-m", "x"]
                };
                let r = petrel(&args);
                assert!(!r.ok(), "{args:?} succeeded");
                let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.is_empty()).collect();
                assert_eq!(lines.len(), 1, "not one line: {:?}", r.stderr);
                let l = lines[0].to_lowercase();
                assert!(
                    l.contains("user name") && l.contains("password"),
                    "{kind:?} {args:?}: {l}"
                );
            }
        }
    }
}

#[test]
fn user_password_urls_with_mosquitto() {
    credentials(Kind::Mosquitto);
}

#[test]
fn user_password_urls_with_petrel() {
    credentials(Kind::Petrel);
}

fn tls(kind: Kind) {
    let d = tempdir();
    let pki = Pki::ca(d.path(), "ca");
    pki.leaf("ca", "server", "localhost", true);
    pki.leaf("ca", "client", "cli-client", false);
    Pki::ca(d.path(), "other");
    let b = match kind {
        Kind::Petrel => Broker::Petrel(Petrel::start(
            d.path(),
            "allow_anonymous = true\n\
             [[listener]]\nbind = \"127.0.0.1:{port}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n\
             [[listener]]\nbind = \"127.0.0.1:{port2}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n\
             cafile = \"{dir}/ca.crt\"\nrequire_certificate = true\n",
        )),
        Kind::Mosquitto => Broker::Mosquitto(Mosquitto::start(
            d.path(),
            "allow_anonymous true\n\
             listener {port} 127.0.0.1\ncertfile {dir}/server.crt\nkeyfile {dir}/server.key\n\
             listener {port2} 127.0.0.1\ncertfile {dir}/server.crt\nkeyfile {dir}/server.key\n\
             cafile {dir}/ca.crt\nrequire_certificate true\n",
        )),
    };
    let (tls, mtls) = (b.ports()[0], b.ports()[1]);
    let ca = pki.p("ca.crt");
    let (cert, key) = (pki.p("client.crt"), pki.p("client.key"));
    for (host, port, extra) in [
        ("127.0.0.1", tls, vec![]),
        ("localhost", tls, vec![]),
        (
            "127.0.0.1",
            mtls,
            vec!["--cert", cert.as_str(), "--key", key.as_str()],
        ),
    ] {
        let u = format!("ssl://{host}:{port}");
        let mut sa = vec![
            "--url",
            u.as_str(),
            "--ca",
            ca.as_str(),
            "-t",
            "tls/t",
            "-C",
            "1",
            "-q",
            "1",
        ];
        sa.extend(extra.iter().copied());
        let mut ps = petrel_sub(&sa);
        let mut pa = vec![
            "pub",
            "--url",
            u.as_str(),
            "--ca",
            ca.as_str(),
            "-t",
            "tls/t",
            "-m",
            "secure",
            "-q",
            "2",
        ];
        pa.extend(extra.iter().copied());
        petrel(&pa).assert_ok("petrel pub over TLS");
        assert!(
            ps.wait_exit(T).is_some_and(|s| s.success()),
            "{}",
            ps.dump()
        );
        assert_eq!(ps.stdout(), ["secure"]);
    }
    // Refusals say what went wrong with the certificate.
    let u = format!("ssl://127.0.0.1:{tls}");
    for (args, why) in [
        (vec!["pub", "--url", &u, "-t", "x", "-m", "x"], "no CA"),
        (
            vec![
                "pub",
                "--url",
                &u,
                "--ca",
                &pki.p("other.crt"),
                "-t",
                "x",
                "-m",
                "x",
            ],
            "another CA",
        ),
    ] {
        let r = petrel(&args);
        assert!(!r.ok(), "{why}: succeeded");
        let l = r.stderr.trim();
        assert_eq!(l.lines().count(), 1, "{l}");
        assert!(
            l.contains("certificate") && (l.contains("UnknownIssuer") || l.contains("issuer")),
            "{kind:?} {why}: {l}"
        );
    }
    // mTLS without a client certificate.
    let u = format!("ssl://127.0.0.1:{mtls}");
    let r = petrel(&[
        "pub", "--url", &u, "--ca", &ca, "-t", "x", "-m", "x", "-q", "1",
    ]);
    assert!(!r.ok(), "mTLS without a certificate succeeded");
    assert!(r.stderr.contains("certificate"), "{}", r.stderr);
}

#[test]
fn ssl_urls_and_mutual_tls_with_mosquitto() {
    tls(Kind::Mosquitto);
}

#[test]
fn ssl_urls_and_mutual_tls_with_petrel() {
    tls(Kind::Petrel);
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn uuid_ids(kind: Kind) {
    let d = tempdir();
    let b = plain(kind, d.path());
    let u = url(b.port());
    // Two subscribers with the same template: if the ids were equal, the second would
    // take the session of the first and the first would be disconnected.
    let mut a = petrel_sub(&[
        "--url",
        &u,
        "-i",
        "cli-{uuid}",
        "-t",
        "uuid/t",
        "-C",
        "2",
        "-q",
        "1",
    ]);
    let mut c = petrel_sub(&[
        "--url",
        &u,
        "-i",
        "cli-{uuid}",
        "-t",
        "uuid/t",
        "-C",
        "2",
        "-q",
        "1",
    ]);
    ppub(&["--url", &u, "-t", "uuid/t", "-m", "one", "-q", "1"]);
    ppub(&["--url", &u, "-t", "uuid/t", "-m", "two", "-q", "1"]);
    for p in [&mut a, &mut c] {
        assert!(p.wait_exit(T).is_some_and(|s| s.success()), "{}", p.dump());
        assert_eq!(p.stdout(), ["one", "two"]);
        assert!(
            !p.stderr().iter().any(|l| l.contains("disconnected")),
            "a subscriber was disconnected: ids collided\n{}",
            p.dump()
        );
    }
    if let Broker::Mosquitto(m) = &b {
        // Mosquitto logs every client id.
        let ids: Vec<String> = m
            .proc
            .stderr()
            .iter()
            .filter_map(|l| l.split(" as cli-").nth(1))
            .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
            .collect();
        assert_eq!(ids.len(), 2, "{}", m.proc.dump());
        assert!(ids.iter().all(|i| is_uuid(i)), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
    }
}

#[test]
fn uuid_client_ids_with_mosquitto() {
    uuid_ids(Kind::Mosquitto);
}

#[test]
fn uuid_client_ids_with_petrel() {
    uuid_ids(Kind::Petrel);
}

/// The subscriber keeps receiving after the broker restarts. With persistence the
/// session (and its subscription) survives: a message published right after the restart
/// is queued for it; without, the client subscribes again by itself.
fn restart(kind: Kind, persistence: bool) {
    let d = tempdir();
    let mut b = match (kind, persistence) {
        (Kind::Petrel, false) => plain(kind, d.path()),
        (Kind::Petrel, true) => Broker::Petrel(Petrel::start(
            d.path(),
            "allow_anonymous = true\npersistence = true\npersistence_location = \"{dir}\"\n\
             persistence_file = \"petrel.db\"\nautosave_interval = 1800\n\
             [[listener]]\nbind = \"127.0.0.1:{port}\"\n",
        )),
        (Kind::Mosquitto, false) => plain(kind, d.path()),
        (Kind::Mosquitto, true) => Broker::Mosquitto(Mosquitto::plain(
            d.path(),
            "persistence true\npersistence_location {dir}/\nautosave_interval 1800\n",
        )),
    };
    let u = url(b.port());
    let mut args = vec!["--url", u.as_str(), "-t", "restart/#", "-q", "1", "-v"];
    if persistence {
        args.extend(["-i", "restart-sub", "--clean-session", "false"]);
    }
    let sub = petrel_sub(&args);
    ppub(&["--url", &u, "-t", "restart/a", "-m", "before", "-q", "1"]);
    assert!(
        sub.wait_out(T, |l| l == "restart/a before").is_some(),
        "{}",
        sub.dump()
    );
    b.restart();
    if persistence {
        let r = petrel(&[
            "pub",
            "--url",
            &u,
            "-t",
            "restart/a",
            "-m",
            "queued",
            "-q",
            "1",
        ]);
        assert!(r.ok(), "{r:?}\n{}", b.proc().dump());
        assert!(
            sub.wait_out(secs(20.0), |l| l == "restart/a queued").is_some(),
            "the message published right after the restart was lost (session not restored?)\n{}\n{}",
            sub.dump(),
            b.proc().dump()
        );
        if let Broker::Petrel(p) = &b {
            assert!(
                p.proc
                    .wait_err(T, |l| l.contains(": 1 session(s)"))
                    .is_some(),
                "{}",
                p.proc.dump()
            );
        }
    } else {
        // Publish until the subscriber is back (it reconnects with back-off).
        let deadline = Instant::now() + secs(20.0);
        let mut i = 0;
        loop {
            ppub(&[
                "--url",
                &u,
                "-t",
                "restart/b",
                "-m",
                &format!("after{i}"),
                "-q",
                "1",
            ]);
            if sub
                .wait_out(secs(0.3), |l| l.starts_with("restart/b after"))
                .is_some()
            {
                break;
            }
            i += 1;
            assert!(
                Instant::now() < deadline,
                "the subscriber did not come back\n{}",
                sub.dump()
            );
        }
    }
    ppub(&["--url", &u, "-t", "restart/c", "-m", "steady", "-q", "1"]);
    assert!(
        sub.wait_out(T, |l| l == "restart/c steady").is_some(),
        "{}",
        sub.dump()
    );
}

#[test]
fn broker_restart_mid_subscription_mosquitto() {
    restart(Kind::Mosquitto, false);
}

#[test]
fn broker_restart_mid_subscription_mosquitto_persistent() {
    restart(Kind::Mosquitto, true);
}

#[test]
fn broker_restart_mid_subscription_petrel() {
    restart(Kind::Petrel, false);
}

#[test]
fn broker_restart_mid_subscription_petrel_persistent() {
    restart(Kind::Petrel, true);
}

/// A handler that fails `fails` times, then succeeds; counts its runs in `dir/count`.
fn handler(dir: &Path, fails: u32) -> String {
    let script = dir.join("handler.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd='{}'\nn=$(cat \"$d/count\" 2>/dev/null || echo 0)\nn=$((n+1))\n\
             echo $n > \"$d/count\"\ncat > \"$d/payload-$n\"\necho \"$MQTT_TOPIC\" > \"$d/topic-$n\"\n\
             [ $n -gt {fails} ]\n",
            dir.display()
        ),
    )
    .unwrap();
    format!("sh {}", script.display())
}

fn count(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("count"))
        .map(|s| s.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

fn exec_retries(kind: Kind) {
    let d = tempdir();
    let b = plain(kind, d.path());
    let u = url(b.port());
    for (fails, retries, runs, gives_up) in [
        (2, "3", 3, false),
        (5, "1", 2, true),
        (3, "-1", 4, false),
        (1, "0", 1, true),
    ] {
        let hd = tempdir();
        let cmd = handler(hd.path(), fails);
        let mut ps = petrel_sub(&[
            "--url",
            &u,
            "-t",
            "exec/t",
            "-q",
            "1",
            "-C",
            "1",
            "--exec",
            &cmd,
            "--back-off-max-retries",
            retries,
        ]);
        ppub(&["--url", &u, "-t", "exec/t", "-m", "job", "-q", "1"]);
        let st = ps.wait_exit(T).expect("sub exits after its one message");
        assert!(st.success(), "{}", ps.dump());
        assert_eq!(
            count(hd.path()),
            runs,
            "fails {fails}, retries {retries}\n{}",
            ps.dump()
        );
        for n in 1..=runs {
            assert_eq!(
                std::fs::read_to_string(hd.path().join(format!("payload-{n}"))).unwrap(),
                "job"
            );
            assert_eq!(
                std::fs::read_to_string(hd.path().join(format!("topic-{n}")))
                    .unwrap()
                    .trim(),
                "exec/t"
            );
        }
        let gave_up = ps.stderr().iter().any(|l| l.contains("giving it up"));
        assert_eq!(gave_up, gives_up, "{}", ps.dump());
    }
}

#[test]
fn exec_retries_with_back_off_with_mosquitto() {
    exec_retries(Kind::Mosquitto);
}

#[test]
fn exec_retries_with_back_off_with_petrel() {
    exec_retries(Kind::Petrel);
}

#[test]
fn count_stops_after_n_messages() {
    let d = tempdir();
    let b = plain(Kind::Petrel, d.path());
    let u = url(b.port());
    let mut ps = petrel_sub(&[
        "--url", &u, "-t", "count/#", "-t", "other", "-C", "3", "-q", "1",
    ]);
    for m in ["a", "b", "c", "d", "e"] {
        ppub(&["--url", &u, "-t", "count/x", "-m", m, "-q", "1"]);
    }
    let st = ps.wait_exit(T).expect("exits after 3");
    assert!(st.success(), "{}", ps.dump());
    assert_eq!(ps.stdout(), ["a", "b", "c"]);
}

#[test]
fn help_reads_like_the_mosquitto_tools() {
    let r = petrel(&["pub", "--help"]);
    r.assert_ok("pub --help");
    for opt in [
        "--url",
        "--topic",
        "--qos",
        "--retain",
        "--message",
        "--file",
        "--stdin-lines",
        "--client-id",
        "--ca",
        "--cert",
        "--key",
        "--protocol",
    ] {
        assert!(
            r.stdout.contains(opt),
            "pub --help lacks {opt}:\n{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("tcp://") && r.stdout.contains("{uuid}"));
    let r = petrel(&["sub", "--help"]);
    r.assert_ok("sub --help");
    for opt in [
        "--url",
        "--topic",
        "--qos",
        "--count",
        "--clean-session",
        "--verbose",
        "--exec",
        "--back-off-max-retries",
    ] {
        assert!(
            r.stdout.contains(opt),
            "sub --help lacks {opt}:\n{}",
            r.stdout
        );
    }
    let r = petrel(&["--help"]);
    r.assert_ok("--help");
    for cmd in ["broker", "pub", "sub", "passwd"] {
        assert!(r.stdout.contains(cmd), "{}", r.stdout);
    }
    // A missing required option is a usage error, not a crash.
    let r = petrel(&["pub", "--url", "tcp://127.0.0.1:1"]);
    assert!(!r.ok() && r.stderr.contains("--topic"), "{r:?}");
}

#[test]
fn bad_urls_fail_with_a_clear_message() {
    let port = free_port();
    for (u, want) in [
        ("http://127.0.0.1:1883".to_owned(), "unsupported scheme"),
        ("tcp://".to_owned(), "no host"),
        ("127.0.0.1:1883".to_owned(), "URL"),
        ("tcp://127.0.0.1:99999".to_owned(), "port"),
        ("tcp://u:%ff@127.0.0.1:1".to_owned(), "percent-encoded"),
        (format!("tcp://127.0.0.1:{port}"), "cannot connect"),
    ] {
        for cmd in ["pub", "sub"] {
            let mut args = vec![cmd, "--url", u.as_str(), "-t", "x"];
            if cmd == "pub" {
                args.extend(["-m", "x"]);
            }
            let r = petrel(&args);
            assert!(!r.ok(), "{args:?} succeeded");
            let l = r.stderr.trim();
            assert_eq!(l.lines().count(), 1, "{args:?}: {l}");
            assert!(l.contains(want), "{args:?}: {l}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The library under the command line: `runtime_uring::client::MqttClient`.

mod lib {
    use super::*;
    use broker_core::client::{ClientEvent, Received};
    use mqtt_proto::{ProtocolVersion, QoS, ReasonCode};
    use runtime_uring::client::{parse_url, ClientConfig, ClientFailure, MqttClient};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn config(url: &str, proto: ProtocolVersion, id: &str) -> ClientConfig {
        let mut c = ClientConfig::new(parse_url(url).expect("url"));
        c.protocol = proto;
        c.client_id = id.to_owned();
        c.reconnect = false;
        c
    }

    /// The next event that `pick` accepts, within `T`.
    async fn wait_for<R>(
        c: &mut MqttClient,
        what: &str,
        mut pick: impl FnMut(ClientEvent) -> Option<R>,
    ) -> R {
        let fut = async {
            loop {
                let e = c.next().await.unwrap_or_else(|e| panic!("{what}: {e}"));
                if let Some(r) = pick(e) {
                    return r;
                }
            }
        };
        match monoio::time::timeout(T, fut).await {
            Ok(r) => r,
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    async fn round_trips(url: &str, tag: &str) {
        for proto in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let topic = format!("lib/{tag}/{proto:?}/{qos:?}");
                let mut sub = MqttClient::connect(config(url, proto, &format!("{tag}-sub")))
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                let tok = sub.subscribe(std::slice::from_ref(&topic), qos).unwrap();
                let codes = wait_for(&mut sub, "SUBACK", |e| match e {
                    ClientEvent::Subscribed { token, codes } if token == tok => Some(codes),
                    _ => None,
                })
                .await;
                assert_eq!(codes, [ReasonCode::granted(qos)], "{url} {topic}");
                let mut p = MqttClient::connect(config(url, proto, &format!("{tag}-pub")))
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                let tok = p.publish(&topic, b"from-the-library", qos, false).unwrap();
                let reason = wait_for(&mut p, "the publication", |e| match e {
                    ClientEvent::Published { token, reason } if token == tok => Some(reason),
                    _ => None,
                })
                .await;
                assert!(!reason.is_error(), "{url} {topic}: {reason:?}");
                let m: Received = wait_for(&mut sub, "the message", |e| match e {
                    ClientEvent::Message(m) => Some(m),
                    _ => None,
                })
                .await;
                assert_eq!(
                    (m.topic.as_str(), m.payload.as_slice(), m.qos),
                    (topic.as_str(), &b"from-the-library"[..], qos),
                    "{url}"
                );
                p.disconnect().await;
                sub.disconnect().await;
            }
        }
    }

    /// QoS 0/1/2 and both protocol versions through the library, over TCP to Mosquitto
    /// and over TCP and WebSocket to Petrel; refusals and connection failures come back
    /// as typed errors (a refusing CONNACK ends the connection: [MQTT-3.2.2-5] in 3.1.1,
    /// [MQTT-3.2.2-7] in 5.0).
    #[test]
    fn library_client_round_trips_and_typed_errors() {
        let d = tempdir();
        passwd_file(d.path(), &[("carol", "right")]);
        let p = Petrel::start(
            d.path(),
            "allow_anonymous = true\n\
             [[listener]]\nbind = \"127.0.0.1:{port}\"\n\
             [[listener]]\nbind = \"127.0.0.1:{port2}\"\nprotocol = \"websockets\"\n",
        );
        let auth = Petrel::start(
            d.path(),
            "allow_anonymous = false\npassword_file = \"{dir}/passwd\"\n\
             [[listener]]\nbind = \"127.0.0.1:{port}\"\n",
        );
        let m = Mosquitto::plain(d.path(), "");
        let closed = free_port();
        block_on(async {
            round_trips(&format!("tcp://127.0.0.1:{}", m.port()), "lib-mosq").await;
            round_trips(&format!("tcp://127.0.0.1:{}", p.ports[0]), "lib-petrel").await;
            round_trips(&format!("ws://127.0.0.1:{}/mqtt", p.ports[1]), "lib-ws").await;
            for proto in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                let u = format!("tcp://carol:wrong@127.0.0.1:{}", auth.port());
                match MqttClient::connect(config(&u, proto, "lib-bad")).await {
                    Err(ClientFailure::Refused(ReasonCode::BadUserNameOrPassword)) => {}
                    Err(e) => panic!("{proto:?}: wrong password gave {e}"),
                    Ok(_) => panic!("{proto:?}: wrong password accepted"),
                }
                let u = format!("tcp://carol:right@127.0.0.1:{}", auth.port());
                let c = MqttClient::connect(config(&u, proto, "lib-good"))
                    .await
                    .unwrap_or_else(|e| panic!("{proto:?}: right password: {e}"));
                c.disconnect().await;
            }
            let u = format!("tcp://127.0.0.1:{closed}");
            match MqttClient::connect(config(&u, ProtocolVersion::V5, "lib-x")).await {
                Err(ClientFailure::Connect(msg)) => assert!(msg.contains("refused"), "{msg}"),
                Err(e) => panic!("closed port gave {e}"),
                Ok(_) => panic!("connected to a closed port"),
            }
        });
    }
}
