//! Issue 6, TLS in `petrel proxy`: termination with the certificate chosen by SNI (APISIX
//! `ssl` objects from the admin API), routes by SNI, mutual TLS with a client CA per
//! name, plain MQTT on the same port, TLS towards a node (Mosquitto with a TLS listener),
//! and PROXY protocol v2 towards a Petrel broker that requires it.

#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;
#[path = "proxy/support.rs"]
mod support;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// A CA made in memory.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("Petrel proxy test CA {name}"),
        );
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, key PEM) for `names` (DNS names or IP addresses).
    fn leaf(&self, names: &[&str], cn: &str) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let k = KeyPair::generate().unwrap();
        let c = p.signed_by(&k, &self.issuer).unwrap();
        (c.pem(), k.serialize_pem())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Through TLS with server name `sni`, trusting `ca`: which backend answers.
fn tls_whoami(
    port: u16,
    sni: &str,
    ca: &str,
    client: Option<&(String, String)>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                rustls_pemfile::certs(&mut c.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                rustls_pemfile::private_key(&mut k.as_bytes())
                    .unwrap()
                    .unwrap(),
            )
            .unwrap(),
    };
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut out = common::connect_packet(false, &format!("tls-{sni}"), 30);
    out.extend(common::subscribe_packet(false, 1, WHOAMI, 0));
    s.write_all(&out).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        while let Some((p, n)) = parse_pkt(&buf) {
            buf.drain(..n);
            if p.kind() == 2 && p.body.get(1) != Some(&0) {
                return Err(format!("CONNACK {:?}", p.body));
            }
            if p.kind() == 3 {
                return Ok(String::from_utf8_lossy(&publish_parts(false, &p.body).1).into_owned());
            }
        }
        let mut b = [0u8; 4096];
        match s.read(&mut b) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => buf.extend_from_slice(&b[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Err("timeout".into())
}

#[test]
fn tls_termination_by_sni_with_mutual_tls_and_plain_clients_alongside() {
    let (_d, dir) = scratch();
    let a = Backend::petrel(&dir, "A");
    let b = Backend::mosquitto(&dir, "B");
    let c = Backend::petrel(&dir, "C");
    let mut proxy = Proxy::start(&["--upstream", &c.node()]);
    let ca_a = Ca::new("a");
    let ca_b = Ca::new("b");
    let ca_m = Ca::new("server of m");
    let clients = Ca::new("clients");
    let strangers = Ca::new("strangers");
    let (ca_cert, ca_key) = ca_a.leaf(&["a.example"], "a.example");
    let (cb_cert, cb_key) = ca_b.leaf(&["*.b.example"], "b.example");
    let (cm_cert, cm_key) = ca_m.leaf(&["m.example"], "m.example");
    for (id, cert, key, snis, client_ca) in [
        ("a", &ca_cert, &ca_key, json!(["a.example"]), None),
        ("b", &cb_cert, &cb_key, json!(["*.b.example"]), None),
        (
            "m",
            &cm_cert,
            &cm_key,
            json!(["m.example"]),
            Some(clients.pem()),
        ),
    ] {
        let mut body = json!({"cert": cert, "key": key, "snis": snis});
        if let Some(ca) = client_ca {
            body["client"] = json!({"ca": ca, "depth": 2});
        }
        let (st, v) = proxy.api("PUT", &format!("/apisix/admin/ssls/{id}"), Some(&body));
        assert_eq!(st, 201, "{v}");
    }
    let route = |sni: &str, to: &Backend| {
        json!({"sni": sni, "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}},
               "upstream": {"type": "chash", "key": "mqtt_client_id", "nodes": nodes(&[to])}})
    };
    proxy.put_route("to-a", route("a.example", &a));
    proxy.put_route("to-b", route("*.b.example", &b));
    proxy.put_route("to-m", route("m.example", &a));

    // The certificate follows the name, and so does the route.
    assert_eq!(
        tls_whoami(proxy.port, "a.example", &ca_a.pem(), None).unwrap(),
        "A"
    );
    assert_eq!(
        tls_whoami(proxy.port, "x.b.example", &ca_b.pem(), None).unwrap(),
        "B"
    );
    // a.example's certificate is not signed by B's CA: the client refuses it.
    assert!(tls_whoami(proxy.port, "a.example", &ca_b.pem(), None).is_err());
    // A name with no certificate: no handshake.
    assert!(tls_whoami(proxy.port, "nobody.example", &ca_a.pem(), None).is_err());

    // Mutual TLS on m.example: a certificate from the client CA is required.
    let good = clients.leaf(&["device-1"], "device-1");
    let bad = strangers.leaf(&["device-2"], "device-2");
    assert_eq!(
        tls_whoami(proxy.port, "m.example", &ca_m.pem(), Some(&good)).unwrap(),
        "A"
    );
    assert!(tls_whoami(proxy.port, "m.example", &ca_m.pem(), None).is_err());
    assert!(tls_whoami(proxy.port, "m.example", &ca_m.pem(), Some(&bad)).is_err());

    // Plain MQTT on the same port goes to the default route.
    assert_eq!(whoami(proxy.port, V::V311, "plain", None).unwrap(), "C");

    // Deleting the ssl object takes effect at once.
    assert_eq!(proxy.api("DELETE", "/apisix/admin/ssls/b", None).0, 200);
    assert!(tls_whoami(proxy.port, "x.b.example", &ca_b.pem(), None).is_err());
    proxy.assert_healthy();
}

#[test]
fn tls_to_the_node_and_proxy_protocol_v2() {
    let (_d, dir) = scratch();
    let ca = Ca::new("nodes");
    let (cert, key) = ca.leaf(&["127.0.0.1"], "node");
    std::fs::write(dir.join("node.crt"), &cert).unwrap();
    std::fs::write(dir.join("node.key"), &key).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    // Mosquitto: {port} plain (to tag it), {port2} TLS.
    let m = common::Mosquitto::start(
        &dir,
        "allow_anonymous true\nlistener {port} 127.0.0.1\nlistener {port2} 127.0.0.1\n\
         certfile {dir}/node.crt\nkeyfile {dir}/node.key\n",
    );
    let tls_node = Backend {
        name: "TLS".into(),
        broker: common::Broker::Mosquitto(m),
        host: "127.0.0.1",
    };
    tls_node.tag();
    // Petrel: {port} plain, {port2} expecting a PROXY protocol header.
    let pp = Backend::petrel_args(
        &dir,
        "PP",
        "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n\
         [[listener]]\nbind = \"127.0.0.1:{port2}\"\nproxy_protocol = true\n",
        &["--log-level", "debug"],
    );
    let ca_path = dir.join("ca.crt").display().to_string();
    let mut proxy = Proxy::start(&["--upstream-ca", &ca_path]);
    let tls_port = tls_node.broker.ports()[1];
    let pp_port = pp.broker.ports()[1];
    proxy.put_route(
        "tls",
        json!({"plugins": {"mqtt-proxy": {"protocol_level": 4}},
               "upstream": {"scheme": "tls", "type": "chash", "nodes": {format!("127.0.0.1:{tls_port}"): 1}}}),
    );
    for i in 0..5 {
        assert_eq!(
            whoami(proxy.port, V::V311, &format!("t{i}"), None).unwrap(),
            "TLS"
        );
    }
    // Without the PROXY header the broker's listener refuses the connection ...
    proxy.put_route(
        "pp",
        json!({"plugins": {"mqtt-proxy": {"protocol_level": 5}},
               "upstream": {"type": "chash", "nodes": {format!("127.0.0.1:{pp_port}"): 1}}}),
    );
    assert!(whoami(proxy.port, V::V5, "p0", None).is_err());
    // ... with it, the client gets through.
    proxy.put_route(
        "pp",
        json!({"plugins": {"mqtt-proxy": {"protocol_level": 5}},
               "upstream": {"type": "chash", "proxy_protocol": true,
                            "nodes": {format!("127.0.0.1:{pp_port}"): 1}}}),
    );
    for i in 0..5 {
        assert_eq!(
            whoami(proxy.port, V::V5, &format!("p{i}"), None).unwrap(),
            "PP"
        );
    }
    // The broker sees the client's own address, not the proxy's (a client from
    // 127.0.0.9, in the broker's debug log).
    let src: std::net::IpAddr = [127, 0, 0, 9].into();
    let c = mqtt_connect(proxy.port, V::V5, "pp-src", Some(src)).unwrap();
    let want = format!("speaks for Some({})", c.s.local_addr().unwrap());
    assert!(
        pp.broker
            .proc()
            .wait_err(common::T, |l| l.contains(&want))
            .is_some(),
        "the broker did not log {want}\n{}",
        pp.broker.proc().dump()
    );
    proxy.assert_healthy();
}
