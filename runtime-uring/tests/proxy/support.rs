//! Helpers of the `petrel proxy` tests (`tests/proxy_*.rs`), on top of `e2e/common.rs`:
//! a running proxy, its admin API, backends that say who they are, and a raw client that
//! finds out which backend it reached.
//!
//! Which broker a client landed on: every backend holds a retained message on
//! [`WHOAMI`] naming it (published directly to it, not through the proxy); a client
//! subscribes to it through the proxy and reads the name.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const KEY: &str = "test-admin-key";
pub const WHOAMI: &str = "petrel-test/whoami";
pub const PETREL_TOML: &str = "allow_anonymous = true\n[[listener]]\nbind = \"127.0.0.1:{port}\"\n";

/// A running `petrel proxy` with an admin API.
pub struct Proxy {
    pub proc: Proc,
    pub port: u16,
    pub admin: u16,
    pub args: Vec<String>,
}

impl Proxy {
    /// Starts `petrel proxy --bind 127.0.0.1:P --admin 127.0.0.1:A --admin-key KEY args`.
    pub fn start(args: &[&str]) -> Proxy {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let admin = free_port();
            let mut p = Proxy {
                proc: spawn_proxy(port, admin, args),
                port,
                admin,
                args: args.iter().map(|s| s.to_string()).collect(),
            };
            match p.wait_ready() {
                Ok(()) => return p,
                Err(e) => last = e,
            }
        }
        panic!("petrel proxy did not start:\n{last}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        for port in [self.port, self.admin] {
            let deadline = Instant::now() + T;
            while !wait_port(port, Duration::from_millis(100)) {
                if !self.proc.is_running() || Instant::now() > deadline {
                    self.proc.kill();
                    return Err(self.proc.dump());
                }
            }
        }
        Ok(())
    }

    /// Stops it (SIGTERM, exit 0) and starts it again on the same ports and arguments.
    pub fn restart(&mut self) {
        self.proc.signal(libc::SIGTERM);
        let st = self.proc.wait_exit(T).expect("proxy did not stop");
        assert!(st.success(), "proxy exited with {st}\n{}", self.proc.dump());
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.proc = spawn_proxy(self.port, self.admin, &args);
        if let Err(e) = self.wait_ready() {
            panic!("proxy did not restart:\n{e}");
        }
    }

    /// An admin request with the right key.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let b = body.map(|v| v.to_string());
        http(self.admin, method, path, Some(KEY), b.as_deref())
    }

    /// PUT a stream route; panics unless 200/201.
    pub fn put_route(&self, id: &str, route: Value) {
        let (st, v) = self.api(
            "PUT",
            &format!("/apisix/admin/stream_routes/{id}"),
            Some(&route),
        );
        assert!(
            st == 200 || st == 201,
            "PUT route {id}: {st} {v}\n{}",
            self.proc.dump()
        );
    }

    /// Which backend each client id reaches through this proxy (the proxy's log in the
    /// panic message if one cannot connect).
    pub fn map(&self, v: V, ids: &[String]) -> Vec<String> {
        ids.iter()
            .map(|id| {
                whoami(self.port, v, id, None)
                    .unwrap_or_else(|e| panic!("client {id} ({v:?}): {e}\n{}", self.proc.dump()))
            })
            .collect()
    }

    /// Alive, and never panicked.
    pub fn assert_healthy(&mut self) {
        assert!(self.proc.is_running(), "proxy exited\n{}", self.proc.dump());
        let err = self.proc.stderr().join("\n");
        assert!(!err.contains("panicked"), "proxy panicked:\n{err}");
    }
}

fn spawn_proxy(port: u16, admin: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new(PETREL);
    cmd.arg("proxy")
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--admin-key", KEY, "--threads", "2"])
        .args(args);
    if !args.contains(&"--log-level") {
        cmd.args(["--log-level", "info"]);
    }
    Proc::spawn("petrel proxy", cmd)
}

/// A minimal HTTP/1.1 client (Connection: close): status and JSON body (Null if none).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("admin connect");
    s.set_read_timeout(Some(T)).unwrap();
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = key {
        req.push_str(&format!("X-API-KEY: {k}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    let v = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    (status, v)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A backend broker that answers [`WHOAMI`] with its name.
pub struct Backend {
    pub name: String,
    pub broker: Broker,
    /// The loopback address it listens on.
    pub host: &'static str,
}

impl Backend {
    pub fn petrel(dir: &Path, name: &str) -> Backend {
        Self::petrel_with(dir, name, PETREL_TOML)
    }

    pub fn petrel_with(dir: &Path, name: &str, toml: &str) -> Backend {
        Self::petrel_args(dir, name, toml, &[])
    }

    pub fn petrel_args(dir: &Path, name: &str, toml: &str, args: &[&str]) -> Backend {
        let mut all = vec!["--threads", "1"];
        all.extend_from_slice(args);
        let b = Backend {
            name: name.to_owned(),
            broker: Broker::Petrel(Petrel::start_with(dir, toml, &all)),
            host: "127.0.0.1",
        };
        b.tag();
        b
    }

    pub fn mosquitto(dir: &Path, name: &str) -> Backend {
        let b = Backend {
            name: name.to_owned(),
            broker: Broker::Mosquitto(Mosquitto::plain(dir, "")),
            host: "127.0.0.1",
        };
        b.tag();
        b
    }

    /// A Petrel broker on `host` (a loopback address of its own): stopped and restarted
    /// on the same port, which the other test binaries, all on 127.0.0.1, cannot take
    /// meanwhile.
    pub fn petrel_at(dir: &Path, name: &str, host: &'static str) -> Backend {
        let toml = format!("allow_anonymous = true\n[[listener]]\nbind = \"{host}:{{port}}\"\n");
        let b = Backend {
            name: name.to_owned(),
            broker: Broker::Petrel(Petrel::start_with(dir, &toml, &["--threads", "1"])),
            host,
        };
        b.tag();
        b
    }

    /// Publishes the retained name (again, after a restart without persistence).
    pub fn tag(&self) {
        mosq_pub_at(
            self.host,
            self.port(),
            &["-t", WHOAMI, "-m", &self.name, "-r", "-q", "1"],
        )
        .assert_ok("tag backend");
    }

    pub fn port(&self) -> u16 {
        self.broker.port()
    }

    pub fn node(&self) -> String {
        format!("{}:{}", self.host, self.port())
    }
}

/// The JSON node list of some backends: `[{host, port, weight: 1}]`.
pub fn nodes(backends: &[&Backend]) -> Value {
    Value::Array(
        backends
            .iter()
            .map(|b| serde_json::json!({"host": b.host, "port": b.port(), "weight": 1}))
            .collect(),
    )
}

/// CONNECT for MQTT 3.1 (`MQIsdp`, level 3).
pub fn connect_packet_v31(client_id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&6u16.to_be_bytes());
    b.extend_from_slice(b"MQIsdp");
    b.push(3);
    b.push(0x02);
    b.extend_from_slice(&60u16.to_be_bytes());
    b.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    b.extend_from_slice(client_id.as_bytes());
    let mut out = vec![0x10, b.len() as u8];
    out.extend_from_slice(&b);
    out
}

/// A raw MQTT connection (like `common::Raw`, from any source address).
pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

/// One received packet: first byte and body.
#[derive(Debug, Clone)]
pub struct Pkt {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Pkt {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

pub fn parse_pkt(b: &[u8]) -> Option<(Pkt, usize)> {
    let first = *b.first()?;
    let (mut len, mut mult, mut i) = (0usize, 1usize, 1usize);
    loop {
        let byte = *b.get(i)?;
        len += usize::from(byte & 0x7f) * mult;
        mult *= 128;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let body = b.get(i..i + len)?.to_vec();
    Some((Pkt { first, body }, i + len))
}

impl Conn {
    pub fn send(&mut self, b: &[u8]) -> bool {
        self.s.write_all(b).is_ok()
    }

    /// The next packet; `Err("closed")` or `Err("timeout")`.
    pub fn read(&mut self, timeout: Duration) -> Result<Pkt, &'static str> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((p, n)) = parse_pkt(&self.buf) {
                self.buf.drain(..n);
                return Ok(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timeout");
            }
            self.s.set_read_timeout(Some(left)).ok();
            let mut b = [0u8; 16384];
            match self.s.read(&mut b) {
                Ok(0) => return Err("closed"),
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err("timeout")
                }
                Err(_) => return Err("closed"),
            }
        }
    }

    /// Waits for the other end to close (skipping packets); false on timeout.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.read(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => {}
                Err("closed") => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Plain TCP to the proxy (for bytes no client sends).
pub fn raw_tcp(port: u16) -> Conn {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).ok();
    Conn { s, buf: Vec::new() }
}

/// Protocol versions of the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V {
    V31,
    V311,
    V5,
}

/// Connects through `port` (from `src` if given); `Ok(raw)` after a successful CONNACK,
/// `Err(code)` with the CONNACK's return/reason code, or `Err(-1)` if closed without one
/// (-2: no answer within `T`; -100 - type: another packet first).
pub fn mqtt_connect(port: u16, v: V, client_id: &str, src: Option<IpAddr>) -> Result<Conn, i32> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let s = match src {
        None => TcpStream::connect_timeout(&addr, T).expect("connect"),
        Some(ip) => {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::new(ip, 0).into())
                .expect("bind source address");
            sock.connect_timeout(&addr.into(), T).expect("connect");
            sock.into()
        }
    };
    s.set_nodelay(true).ok();
    let mut r = Conn { s, buf: Vec::new() };
    let pkt = match v {
        V::V31 => connect_packet_v31(client_id),
        V::V311 => connect_packet(false, client_id, 60),
        V::V5 => connect_packet(true, client_id, 60),
    };
    r.send(&pkt);
    match r.read(T) {
        Ok(p) if p.kind() == 2 => match p.body.get(1) {
            Some(0) => Ok(r),
            Some(&c) => Err(i32::from(c)),
            None => Err(-1),
        },
        // Another packet first: -100 - its type.
        Ok(p) => Err(-100 - i32::from(p.kind())),
        Err("timeout") => Err(-2),
        Err(_) => Err(-1),
    }
}

/// The topic and payload of a QoS 0 PUBLISH body.
pub fn publish_parts(v5: bool, body: &[u8]) -> (String, Vec<u8>) {
    let tl = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8_lossy(&body[2..2 + tl]).into_owned();
    let mut i = 2 + tl;
    if v5 {
        // Property length (varint) and properties.
        let mut len = 0usize;
        let mut mult = 1usize;
        loop {
            let b = body[i];
            i += 1;
            len += usize::from(b & 0x7f) * mult;
            mult *= 128;
            if b & 0x80 == 0 {
                break;
            }
        }
        i += len;
    }
    (topic, body[i..].to_vec())
}

/// Subscribes to [`WHOAMI`] on an open connection and returns the backend's name.
pub fn ask_name(r: &mut Conn, v5: bool) -> Result<String, String> {
    r.send(&subscribe_packet(v5, 1, WHOAMI, 0));
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        match r.read(deadline - Instant::now()) {
            Ok(p) if p.kind() == 3 => {
                let (topic, payload) = publish_parts(v5, &p.body);
                if topic == WHOAMI {
                    return Ok(String::from_utf8_lossy(&payload).into_owned());
                }
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_owned()),
        }
    }
    Err("no retained whoami".into())
}

/// Which backend `client_id` reaches through the proxy (`Err` with the CONNACK code).
pub fn whoami(port: u16, v: V, client_id: &str, src: Option<IpAddr>) -> Result<String, String> {
    let mut r = mqtt_connect(port, v, client_id, src).map_err(|c| format!("CONNACK {c}"))?;
    let name = ask_name(&mut r, v == V::V5);
    r.send(&[0xE0, 0x00]);
    name
}

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// How many of `map` are `name`.
pub fn count(map: &[String], name: &str) -> usize {
    map.iter().filter(|m| *m == name).count()
}

/// Runs `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A test's scratch directory.
pub fn scratch() -> (tempfile::TempDir, PathBuf) {
    let d = tempdir();
    let p = d.path().to_path_buf();
    (d, p)
}
