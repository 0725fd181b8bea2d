//! Issue 5, MQTT over WebSocket: paho-mqtt with `transport="websockets"` (plain and over
//! TLS), bridged to TCP clients, and MQTT.js in headless Chromium (page and library served
//! from loopback by the test).

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "e2e/common.rs"]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

const WS: &str = "allow_anonymous = true\n\
                  [[listener]]\nbind = \"127.0.0.1:{port}\"\n\
                  [[listener]]\nbind = \"127.0.0.1:{port2}\"\nprotocol = \"websockets\"\n";

#[test]
fn paho_over_websockets_and_tls_websockets() {
    let d = tempdir();
    let pki = Pki::ca(d.path(), "ca");
    pki.leaf("ca", "server", "localhost", true);
    let mut b = Petrel::start(
        d.path(),
        &format!(
            "{WS}[[listener]]\nbind = \"127.0.0.1:{{port3}}\"\nprotocol = \"websockets\"\n\
             certfile = \"{{dir}}/server.crt\"\nkeyfile = \"{{dir}}/server.key\"\n"
        ),
    );
    let (tcp, ws, wss) = (b.ports[0], b.ports[1], b.ports[2]);
    let ca = pki.p("ca.crt");
    for v in ["3", "5"] {
        paho("roundtrip", ws, &["--version", v, "--ws"]);
        paho("qos2", ws, &["--version", v, "--ws"]);
        paho("roundtrip", wss, &["--version", v, "--ws", "--ca", &ca]);
    }
    paho(
        "alias_out",
        ws,
        &["--version", "5", "--ws", "--require-alias-out"],
    );
    // WebSocket and TCP clients see each other.
    let s = mosq_sub(tcp, &["-t", "bridge/#", "-v", "-q", "1"]);
    let mut hold = paho_spawn(
        "hold",
        ws,
        &[
            "--version",
            "5",
            "--ws",
            "--topic",
            "bridge/to-ws",
            "--count",
            "1",
        ],
    );
    assert!(
        hold.wait_out(T, |l| l == "SUBSCRIBED").is_some(),
        "{}",
        hold.dump()
    );
    mosq_pub(tcp, &["-t", "bridge/to-ws", "-m", "from-tcp", "-q", "1"]).assert_ok("pub");
    assert!(
        hold.wait_out(T, |l| l == "MSG from-tcp").is_some(),
        "{}",
        hold.dump()
    );
    assert!(
        hold.wait_exit(T).is_some_and(|s| s.success()),
        "{}",
        hold.dump()
    );
    assert_eq!(payloads(&s, 1, T), ["bridge/to-ws from-tcp"]);
    // Not a WebSocket upgrade: refused with an HTTP error, the broker carries on.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", ws)).unwrap();
    raw.set_read_timeout(Some(T)).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = raw.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 4"), "{resp:?}");
    b.assert_healthy();
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn find_chromium() -> Option<String> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        let ok = std::process::Command::new(c)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(c.to_owned());
        }
    }
    None
}

/// Serves `index.html` and `mqtt.min.js` on a loopback port, from a thread.
fn serve_page() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let page = std::fs::read(js_dir().join("index.html")).unwrap();
    let lib = std::fs::read(js_dir().join("node_modules/mqtt/dist/mqtt.min.js")).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            s.set_read_timeout(Some(T)).ok();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let (status, ctype, body): (&str, &str, &[u8]) = if path.starts_with("/mqtt.min.js") {
                ("200 OK", "text/javascript", &lib)
            } else if path == "/" || path.starts_with("/?") {
                ("200 OK", "text/html", &page)
            } else {
                ("404 Not Found", "text/plain", b"not found")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    port
}

#[test]
fn mqtt_js_in_headless_chromium() {
    // No browser is a failure, not a skip: CI must run this test (scripts/setup.sh
    // installs apt chromium).
    let Some(chromium) = find_chromium() else {
        panic!("no runnable chromium: run scripts/setup.sh (apt chromium)");
    };
    let lib = js_dir().join("node_modules/mqtt/dist/mqtt.min.js");
    assert!(
        lib.exists(),
        "{} is missing: run scripts/setup.sh (npm install in runtime-uring/tests/js)",
        lib.display()
    );
    let d = tempdir();
    let mut b = Petrel::start(d.path(), WS);
    let (tcp, ws) = (b.ports[0], b.ports[1]);
    let http = serve_page();
    let s = mosq_sub(tcp, &["-t", "browser/#", "-v", "-q", "1"]);
    for v in ["5", "4"] {
        let profile = tempdir();
        let mut cmd = std::process::Command::new(&chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{http}/?port={ws}&v={v}"));
        let browser = Proc::spawn_group("chromium", cmd);
        let ready = format!("browser/ready ready v{v}");
        if s.wait_out(secs(30.0), |l| l == ready).is_none() {
            panic!(
                "the page did not connect over WebSocket\n{}{}",
                browser.dump(),
                s.dump()
            );
        }
        let msg = format!("hello-from-tcp-v{v}");
        mosq_pub(tcp, &["-t", "browser/in", "-m", &msg, "-q", "1"]).assert_ok("pub");
        let echo = format!("browser/echo echo:{msg}");
        assert!(
            s.wait_out(T, |l| l == echo).is_some(),
            "no echo from the browser\n{}{}",
            browser.dump(),
            s.dump()
        );
        // QoS 0 both ways: delivered to the browser at QoS 0, echoed at QoS 0.
        let msg0 = format!("qos0-from-tcp-v{v}");
        mosq_pub(tcp, &["-t", "browser/in0", "-m", &msg0, "-q", "0"]).assert_ok("pub");
        let echo0 = format!("browser/echo0 echo0:{msg0}:q0");
        assert!(
            s.wait_out(T, |l| l == echo0).is_some(),
            "no QoS 0 echo from the browser\n{}{}",
            browser.dump(),
            s.dump()
        );
        drop(browser);
    }
    b.assert_healthy();
}

/// Issue 7: the client speaks MQTT over WebSocket: `petrel pub` / `petrel sub` with
/// `ws://` and `wss://` URLs against `petrel broker`'s WebSocket listeners, bridged to
/// TCP clients; the WebSocket subprotocol is "mqtt" and MQTT packets ride in binary
/// frames ([MQTT-6.0.0-1], [MQTT-6.0.0-2], [MQTT-6.0.0-4]: the broker refuses anything
/// else, so a delivered message proves the framing).
#[test]
fn petrel_pub_and_sub_with_ws_and_wss_urls() {
    let d = tempdir();
    let pki = Pki::ca(d.path(), "ca");
    pki.leaf("ca", "server", "localhost", true);
    let b = Petrel::start(
        d.path(),
        &format!(
            "{WS}[[listener]]\nbind = \"127.0.0.1:{{port3}}\"\nprotocol = \"websockets\"\n\
             certfile = \"{{dir}}/server.crt\"\nkeyfile = \"{{dir}}/server.key\"\n"
        ),
    );
    let (tcp, ws, wss) = (b.ports[0], b.ports[1], b.ports[2]);
    let ca = pki.p("ca.crt");
    let ws_url = format!("ws://127.0.0.1:{ws}/mqtt");
    let wss_url = format!("wss://localhost:{wss}");
    let tcp_url = format!("tcp://127.0.0.1:{tcp}");
    for proto in ["3.1.1", "5"] {
        for q in ["0", "1", "2"] {
            for (name, url, tls) in [("ws", &ws_url, false), ("wss", &wss_url, true)] {
                let t = format!("wscli/{name}/{proto}/{q}");
                let mut tls_args: Vec<&str> = Vec::new();
                if tls {
                    tls_args.extend(["--ca", &ca]);
                }
                // WebSocket subscriber, TCP publisher.
                let mut sa = vec!["--url", url.as_str(), "-V", proto, "-t", &t, "-q", q];
                sa.extend(["-C", "2", "-v"]);
                sa.extend(&tls_args);
                let mut ps = petrel_sub(&sa);
                mosq_pub(
                    tcp,
                    &[
                        "-t",
                        &t,
                        "-q",
                        q,
                        "-m",
                        "from-tcp",
                        "-V",
                        if proto == "5" { "5" } else { "311" },
                    ],
                )
                .assert_ok("mosquitto_pub");
                // WebSocket publisher (to the WebSocket subscriber).
                let mut pa = vec!["pub", "--url", url.as_str(), "-V", proto, "-t", &t, "-q", q];
                pa.extend(["-m", "from-ws"]);
                pa.extend(&tls_args);
                petrel(&pa).assert_ok(&format!("petrel {pa:?}"));
                let st = ps.wait_exit(T).expect("petrel sub --count 2 exits");
                assert!(st.success(), "{}", ps.dump());
                assert_eq!(
                    ps.stdout(),
                    [format!("{t} from-tcp"), format!("{t} from-ws")],
                    "{}",
                    ps.dump()
                );
            }
        }
    }
    // WebSocket publisher to a TCP subscriber.
    let mut ps = petrel_sub(&[
        "--url",
        &tcp_url,
        "-t",
        "wscli/to-tcp",
        "-q",
        "1",
        "-C",
        "1",
    ]);
    petrel(&[
        "pub",
        "--url",
        &ws_url,
        "-t",
        "wscli/to-tcp",
        "-q",
        "1",
        "-m",
        "over-ws",
    ])
    .assert_ok("petrel pub ws://");
    assert!(
        ps.wait_exit(T).is_some_and(|s| s.success()),
        "{}",
        ps.dump()
    );
    assert_eq!(ps.stdout(), ["over-ws"]);
    // wss:// without the CA: refused, one line that names the certificate problem.
    let r = petrel(&["pub", "--url", &wss_url, "-t", "wscli/x", "-m", "x"]);
    assert!(!r.ok(), "wss:// without the CA must fail: {r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.contains("TLS") && r.stderr.contains("ertificate"),
        "{r:?}"
    );
    // ws:// to a plain MQTT listener: the upgrade fails with a clear one-line error.
    let r = petrel(&[
        "pub",
        "--url",
        &format!("ws://127.0.0.1:{tcp}"),
        "-t",
        "x",
        "-m",
        "x",
    ]);
    assert!(!r.ok(), "ws:// to an MQTT port must fail: {r:?}");
    assert_eq!(r.stderr.trim().lines().count(), 1, "{r:?}");
    assert!(r.stderr.contains("WebSocket"), "{r:?}");
    let mut b = b;
    b.assert_healthy();
}
