//! Issue 5, security end to end: ACL refusals, wrong passwords, TLS and mutual TLS with
//! certificates made by `openssl`, `use_identity_as_username`, and the SIGHUP reload of
//! certificates and CA without dropping live connections.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;

use common::*;
use std::path::Path;

const ACL: &str = "user alice\ntopic readwrite acl/alice/#\ntopic read acl/public/#\n\
                   topic deny acl/public/secret\n\nuser bob\ntopic readwrite acl/#\n";

fn auth_broker(dir: &Path) -> Petrel {
    passwd_file(dir, &[("alice", "secret"), ("bob", "secret")]);
    std::fs::write(dir.join("acl"), ACL).unwrap();
    Petrel::start(
        dir,
        "allow_anonymous = false\npassword_file = \"{dir}/passwd\"\nacl_file = \"{dir}/acl\"\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\n",
    )
}

/// ACL refusals: SUBACK failure codes ([MQTT-3.9.3-2]), refused PUBLISH, read filtering.
#[test]
fn acl_refusals_and_read_filtering() {
    let d = tempdir();
    let mut b = auth_broker(d.path());
    // SUBSCRIBE refused with 0x80 (3.1.1) / 0x87 (5.0), PUBLISH refused (PUBACK 0x87 in
    // 5.0, dropped in 3.1.1), delivery filtered by read access.
    paho("acl", b.port(), &["--version", "3"]);
    paho("acl", b.port(), &["--version", "5"]);
    // mosquitto_sub sees the refusal too.
    for v in ["311", "5"] {
        let mut cmd = std::process::Command::new("mosquitto_sub");
        cmd.args([
            "-p",
            &b.port().to_string(),
            "-V",
            v,
            "-u",
            "alice",
            "-P",
            "secret",
        ])
        .args(["-t", "acl/bob/#", "-C", "1", "-W", "3"]);
        let r = run("mosquitto_sub", cmd, T);
        // mosquitto_sub 2.0 says so on stderr (and exits 0).
        assert!(r.stderr.contains("denied"), "mosquitto_sub -V {v}: {r:?}");
    }
    b.assert_healthy();
}

#[test]
fn wrong_passwords_are_refused() {
    let d = tempdir();
    let mut b = auth_broker(d.path());
    let port = b.port();
    // paho 2 reports a 3.1.1 return code as the MQTT 5 reason code (4 -> 0x86).
    paho(
        "bad_password",
        port,
        &["--version", "3", "--expect-code", "0x86"],
    );
    paho(
        "bad_password",
        port,
        &["--version", "5", "--expect-code", "0x86"],
    );
    for v in ["311", "5"] {
        for (u, p) in [("alice", "wrong"), ("nobody", "secret")] {
            let r = mosq_pub(port, &["-V", v, "-u", u, "-P", p, "-t", "x", "-m", "x"]);
            assert!(!r.ok(), "{u}/{p} accepted: {r:?}");
            assert!(
                r.stderr
                    .to_lowercase()
                    .contains("bad user name or password"),
                "-V {v} {u}: {r:?}"
            );
        }
        // No credentials at all: not authorized.
        let r = mosq_pub(port, &["-V", v, "-t", "x", "-m", "x"]);
        assert!(!r.ok(), "anonymous accepted: {r:?}");
        mosq_pub(
            port,
            &[
                "-V", v, "-u", "bob", "-P", "secret", "-t", "acl/x", "-m", "x",
            ],
        )
        .assert_ok("right password");
    }
    b.assert_healthy();
}

fn tls_setup(dir: &Path) -> Pki {
    let pki = Pki::ca(dir, "ca");
    pki.leaf("ca", "server", "localhost", true);
    pki.leaf("ca", "alice", "alice", false);
    pki.leaf("ca", "bob", "bob", false);
    Pki::ca(dir, "rogue");
    pki.leaf("rogue", "mallory", "alice", false);
    pki
}

/// A TLS subscriber that stops reading (mosquitto_sub stopped with SIGSTOP) while a flood
/// fills its socket is still let go at 1.5 x its keep alive ([MQTT-3.1.2-22]): the
/// broker's side of the connection leaves ESTABLISHED instead of waiting forever to flush
/// TLS records the client will not read.
#[test]
fn a_tls_client_that_stops_reading_is_still_closed_at_keep_alive() {
    let d = tempdir();
    let pki = tls_setup(d.path());
    let mut b = Petrel::start(
        d.path(),
        "allow_anonymous = true\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n\
         [[listener]]\nbind = \"127.0.0.1:{port2}\"\n",
    );
    let (tls, plain) = (b.ports[0], b.ports[1]);
    // First a burst larger than rustls's 64 KiB record buffer reaches a TLS subscriber.
    let big = mosq_sub(
        tls,
        &["--cafile", &pki.p("ca.crt"), "-t", "big", "-C", "3", "-N"],
    );
    let payload = "x".repeat(150_000);
    let file = d.path().join("big.txt");
    std::fs::write(&file, &payload).unwrap();
    for _ in 0..3 {
        mosq_pub(plain, &["-t", "big", "-f", file.to_str().unwrap()]).assert_ok("big pub");
    }
    let t0 = std::time::Instant::now();
    while big.stdout().concat().matches(&payload).count() < 3 && t0.elapsed() < T {
        std::thread::sleep(secs(0.1));
    }
    assert_eq!(
        big.stdout().concat().matches(&payload).count(),
        3,
        "a TLS subscriber did not get three 150 kB messages"
    );
    let sub = mosq_sub(
        tls,
        &["--cafile", &pki.p("ca.crt"), "-t", "flood/#", "-k", "5"],
    );
    sub.signal(libc::SIGSTOP);
    let established = || tcp_peers(tls).iter().filter(|(_, s)| s == "01").count();
    assert_eq!(established(), 1, "{:?}", tcp_peers(tls));
    let _flood = flood(plain, "flood/x");
    // Keep alive 5 s: closed by 7.5 s after the SUBSCRIBE.
    let t0 = std::time::Instant::now();
    while established() > 0 && t0.elapsed() < secs(12.0) {
        std::thread::sleep(secs(0.1));
    }
    sub.signal(libc::SIGCONT);
    assert_eq!(
        established(),
        0,
        "the broker still holds the TLS connection of a client that stopped reading: {:?}",
        tcp_peers(tls)
    );
    b.assert_healthy();
}

#[test]
fn tls_and_mutual_tls() {
    let d = tempdir();
    let pki = tls_setup(d.path());
    let mut b = Petrel::start(
        d.path(),
        "allow_anonymous = true\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n\
         [[listener]]\nbind = \"127.0.0.1:{port2}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n\
         cafile = \"{dir}/ca.crt\"\nrequire_certificate = true\n",
    );
    let (tls, mtls) = (b.ports[0], b.ports[1]);
    let ca = pki.p("ca.crt");
    // TLS: paho and mosquitto clients with the CA.
    for v in ["3", "5"] {
        paho("roundtrip", tls, &["--version", v, "--ca", &ca]);
    }
    let s = mosq_sub(tls, &["--cafile", &ca, "-t", "tls/#", "-v"]);
    mosq_pub(tls, &["--cafile", &ca, "-t", "tls/a", "-m", "over-tls"]).assert_ok("tls pub");
    assert_eq!(payloads(&s, 1, T), ["tls/a over-tls"]);
    // Without the right CA the client refuses the server.
    let r = mosq_pub(
        tls,
        &["--cafile", &pki.p("rogue.crt"), "-t", "x", "-m", "x"],
    );
    assert!(!r.ok(), "{r:?}");
    // mTLS: a certificate from the CA is needed.
    let (acrt, akey) = (pki.p("alice.crt"), pki.p("alice.key"));
    for v in ["3", "5"] {
        paho(
            "roundtrip",
            mtls,
            &["--version", v, "--ca", &ca, "--cert", &acrt, "--key", &akey],
        );
    }
    mosq_pub(
        mtls,
        &[
            "--cafile", &ca, "--cert", &acrt, "--key", &akey, "-t", "m", "-m", "x",
        ],
    )
    .assert_ok("mtls pub");
    let r = mosq_pub(mtls, &["--cafile", &ca, "-t", "m", "-m", "x"]);
    assert!(
        !r.ok(),
        "mTLS listener accepted a client without certificate: {r:?}"
    );
    let r = mosq_pub(
        mtls,
        &[
            "--cafile",
            &ca,
            "--cert",
            &pki.p("mallory.crt"),
            "--key",
            &pki.p("mallory.key"),
            "-t",
            "m",
            "-m",
            "x",
        ],
    );
    assert!(
        !r.ok(),
        "mTLS listener accepted a certificate of another CA: {r:?}"
    );
    // The refusal is logged with the reason.
    assert!(
        b.proc
            .wait_err(T, |l| l.contains("TLS handshake") && l.contains("failed"))
            .is_some(),
        "no log line for the refused certificate\n{}",
        b.proc.dump()
    );
    b.assert_healthy();
}

#[test]
fn use_identity_as_username_applies_the_acl_to_the_certificate_cn() {
    let d = tempdir();
    let pki = tls_setup(d.path());
    std::fs::write(d.path().join("acl"), ACL).unwrap();
    let mut b = Petrel::start(
        d.path(),
        "acl_file = \"{dir}/acl\"\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n\
         cafile = \"{dir}/ca.crt\"\nrequire_certificate = true\nuse_identity_as_username = true\n",
    );
    let port = b.port();
    let ca = pki.p("ca.crt");
    let cert = |who: &str| [pki.p(&format!("{who}.crt")), pki.p(&format!("{who}.key"))];
    let [bc, bk] = cert("bob");
    let s = mosq_sub(
        port,
        &[
            "--cafile", &ca, "--cert", &bc, "--key", &bk, "-t", "acl/#", "-v", "-q", "1",
        ],
    );
    let [ac, ak] = cert("alice");
    for t in ["acl/bob/x", "acl/alice/x"] {
        mosq_pub(
            port,
            &[
                "--cafile",
                &ca,
                "--cert",
                &ac,
                "--key",
                &ak,
                "-t",
                t,
                "-m",
                "from-alice",
                "-q",
                "1",
            ],
        )
        .assert_ok("pub as alice");
    }
    // alice (the CN) may write acl/alice/# only.
    assert_eq!(payloads(&s, 1, T), ["acl/alice/x from-alice"]);
    std::thread::sleep(secs(0.3));
    assert_eq!(s.stdout().iter().filter(|l| is_payload(l)).count(), 1);
    // The user name the client sends does not matter: the certificate does.
    mosq_pub(
        port,
        &[
            "--cafile",
            &ca,
            "--cert",
            &ac,
            "--key",
            &ak,
            "-u",
            "bob",
            "-t",
            "acl/bob/y",
            "-m",
            "spoof",
            "-q",
            "1",
        ],
    );
    std::thread::sleep(secs(0.3));
    assert_eq!(
        s.stdout().iter().filter(|l| is_payload(l)).count(),
        1,
        "a user name overrode the certificate\n{}",
        s.dump()
    );
    b.assert_healthy();
}

#[test]
fn sighup_reloads_certificate_and_ca_without_dropping_connections() {
    let d = tempdir();
    let dir = d.path();
    let pki1 = Pki::ca(dir, "ca1");
    pki1.leaf("ca1", "server1", "localhost", true);
    pki1.leaf("ca1", "client1", "old-client", false);
    Pki::ca(dir, "ca2");
    pki1.leaf("ca2", "server2", "localhost", true);
    pki1.leaf("ca2", "client2", "new-client", false);
    let cp = |from: &str, to: &str| std::fs::copy(dir.join(from), dir.join(to)).unwrap();
    cp("server1.crt", "server.crt");
    cp("server1.key", "server.key");
    cp("ca1.crt", "clients-ca.crt");
    let mut b = Petrel::start(
        dir,
        "allow_anonymous = true\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n\
         cafile = \"{dir}/clients-ca.crt\"\nrequire_certificate = true\n",
    );
    let port = b.port();
    let p = |f: &str| dir.join(f).display().to_string();
    assert_eq!(
        served_cert_fingerprint(port),
        file_fingerprint(&dir.join("server1.crt"))
    );
    // A live connection made with the old certificates.
    let old_tls = [
        "--ca",
        &p("ca1.crt"),
        "--cert",
        &p("client1.crt"),
        "--key",
        &p("client1.key"),
    ];
    let mut hold_args = vec!["--version", "5", "--topic", "reload/t", "--count", "2"];
    hold_args.extend_from_slice(&old_tls);
    let mut hold = paho_spawn("hold", port, &hold_args);
    assert!(
        hold.wait_out(T, |l| l == "SUBSCRIBED").is_some(),
        "{}",
        hold.dump()
    );
    let old_pub = [
        "--cafile",
        &p("ca1.crt"),
        "--cert",
        &p("client1.crt"),
        "--key",
        &p("client1.key"),
    ];
    let mut args = old_pub.to_vec();
    args.extend(["-t", "reload/t", "-m", "before", "-q", "1"]);
    mosq_pub(port, &args).assert_ok("pub before reload");
    assert!(
        hold.wait_out(T, |l| l == "MSG before").is_some(),
        "{}",
        hold.dump()
    );

    // Replace the certificate, its key and the client CA; SIGHUP.
    cp("server2.crt", "server.crt");
    cp("server2.key", "server.key");
    cp("ca2.crt", "clients-ca.crt");
    let mark = b.proc.stderr().len();
    b.proc.signal(libc::SIGHUP);
    assert!(
        b.proc
            .wait_line_from(true, mark, T, |l| l.contains("reloaded"))
            .is_some(),
        "no reload\n{}",
        b.proc.dump()
    );
    // New handshakes see the new certificate and the new CA.
    assert_eq!(
        served_cert_fingerprint(port),
        file_fingerprint(&dir.join("server2.crt"))
    );
    let new_pub = [
        "--cafile",
        &p("ca2.crt"),
        "--cert",
        &p("client2.crt"),
        "--key",
        &p("client2.key"),
    ];
    let mut args = new_pub.to_vec();
    args.extend(["-t", "reload/other", "-m", "x", "-q", "1"]);
    mosq_pub(port, &args).assert_ok("pub with the new CA and client certificate");
    let mut args = old_pub.to_vec();
    args.extend(["-t", "reload/other", "-m", "x", "-q", "1"]);
    assert!(
        !mosq_pub(port, &args).ok(),
        "the old CA still works for new connections"
    );
    // The old connection kept working all along.
    let mut args = new_pub.to_vec();
    args.extend(["-t", "reload/t", "-m", "after", "-q", "1"]);
    mosq_pub(port, &args).assert_ok("pub after reload");
    assert!(
        hold.wait_out(T, |l| l == "MSG after").is_some(),
        "{}",
        hold.dump()
    );
    let st = hold.wait_exit(T).expect("hold exits");
    assert!(st.success(), "{}", hold.dump());
    // A broken file on SIGHUP keeps the old configuration.
    std::fs::write(dir.join("server.crt"), "not a certificate").unwrap();
    let mark = b.proc.stderr().len();
    b.proc.signal(libc::SIGHUP);
    assert!(
        b.proc
            .wait_line_from(true, mark, T, |l| l.contains("reload failed"))
            .is_some(),
        "{}",
        b.proc.dump()
    );
    assert_eq!(
        served_cert_fingerprint(port),
        file_fingerprint(&dir.join("server2.crt"))
    );
    b.assert_healthy();
}

/// `--placement forward` keeps TLS on the accepting shard: the relay carries plaintext MQTT
/// between shards, the client sees one TLS session (paho and mosquitto clients, both
/// versions; ids spread over both shards so that some are relayed).
#[test]
fn tls_through_the_forward_placement() {
    let d = tempdir();
    let pki = tls_setup(d.path());
    let mut b = Petrel::start_with(
        d.path(),
        "allow_anonymous = true\n\
         [[listener]]\nbind = \"127.0.0.1:{port}\"\ncertfile = \"{dir}/server.crt\"\nkeyfile = \"{dir}/server.key\"\n",
        &["--threads", "2", "--placement", "forward", "--log-level", "debug"],
    );
    let tls = b.port();
    let ca = pki.p("ca.crt");
    for v in ["3", "5"] {
        paho("roundtrip", tls, &["--version", v, "--ca", &ca]);
    }
    let subs: Vec<Proc> = (0..8)
        .map(|i| {
            mosq_sub(
                tls,
                &[
                    "--cafile",
                    &ca,
                    "-i",
                    &format!("fwd-tls-{i}"),
                    "-t",
                    "fwdtls/#",
                    "-v",
                ],
            )
        })
        .collect();
    mosq_pub(tls, &["--cafile", &ca, "-t", "fwdtls/a", "-m", "relayed"]).assert_ok("pub");
    for s in &subs {
        assert_eq!(payloads(s, 1, T), ["fwdtls/a relayed"]);
    }
    b.assert_relayed();
    b.assert_healthy();
}
