//! Shared helpers of the end-to-end tests (`tests/e2e_*.rs`): real processes on loopback.
//!
//! - [`Proc`]: a child process whose stdout/stderr lines are collected as they come, so a
//!   test can wait (bounded) for a line; killed by PID when dropped.
//! - [`Petrel`] / [`Mosquitto`]: a broker started from a generated configuration on free
//!   ports, ready once its ports accept connections.
//! - [`Raw`]: a hand-written MQTT client over a std socket, for bytes no library sends.
//! - [`Pki`]: a CA and certificates made by `openssl` (v3, with SANs).
//! - helpers to run `mosquitto_pub`/`mosquitto_sub`, paho-mqtt scripts and `petrel pub`/`sub`.
//!
//! Every wait has a deadline; nothing here sleeps where it can check instead.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const PETREL: &str = env!("CARGO_BIN_EXE_petrel");
pub const T: Duration = Duration::from_secs(10);

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The directory of the paho scripts.
pub fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("petrel-e2e-")
        .tempdir()
        .expect("temp dir")
}

// ---------------------------------------------------------------------------------------
// Ports

static NEXT: AtomicU16 = AtomicU16::new(0);

/// A port that is free right now, outside the kernel's ephemeral range (so outgoing
/// connections of other tests do not take it between this check and the bind).
pub fn free_port() -> u16 {
    if NEXT.load(Ordering::Relaxed) == 0 {
        // Different test binaries (nextest runs them in parallel) start at different places.
        let seed = (std::process::id() as u64)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos() as u64),
            );
        let _ = NEXT.compare_exchange(
            0,
            20_000 + (seed % 12_000) as u16,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    for _ in 0..1000 {
        let mut p = NEXT.fetch_add(1, Ordering::Relaxed);
        if !(20_000..32_000).contains(&p) {
            NEXT.store(20_001, Ordering::Relaxed);
            p = 20_000;
        }
        if p == 1883 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port found");
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------------------------------
// Processes

#[derive(Default)]
struct Lines {
    out: Vec<String>,
    err: Vec<String>,
    out_done: bool,
    err_done: bool,
}

/// A child process with its output collected line by line.
pub struct Proc {
    pub name: String,
    /// Started as the leader of its own process group (killed as a group).
    group: bool,
    child: Child,
    lines: Arc<(Mutex<Lines>, Condvar)>,
    status: Option<ExitStatus>,
}

fn pump(r: impl Read + Send + 'static, lines: Arc<(Mutex<Lines>, Condvar)>, is_err: bool) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_owned();
                    let (m, cv) = &*lines;
                    let mut l = m.lock().unwrap();
                    if is_err {
                        l.err.push(s);
                    } else {
                        l.out.push(s);
                    }
                    cv.notify_all();
                }
            }
        }
        let (m, cv) = &*lines;
        let mut l = m.lock().unwrap();
        if is_err {
            l.err_done = true;
        } else {
            l.out_done = true;
        }
        cv.notify_all();
    });
}

impl Proc {
    /// Starts `cmd` in a new process group; dropping the `Proc` kills the whole group
    /// (for programs such as Chromium that start helper processes).
    pub fn spawn_group(name: &str, mut cmd: Command) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let mut p = Self::spawn(name, cmd);
        p.group = true;
        p
    }

    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let lines = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        pump(child.stdout.take().unwrap(), lines.clone(), false);
        pump(child.stderr.take().unwrap(), lines.clone(), true);
        Proc {
            name: name.to_owned(),
            group: false,
            child,
            lines,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID (not yet reaped: we hold the Child).
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().out.clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().err.clone()
    }

    /// Everything printed so far, for failure messages.
    pub fn dump(&self) -> String {
        let l = self.lines.0.lock().unwrap();
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}\n",
            self.name,
            l.out.join("\n"),
            self.name,
            l.err.join("\n")
        )
    }

    /// Waits for a line (stdout or stderr, by `from_err`) matching `pred`, counting
    /// from line `skip`; returns its index and text.
    pub fn wait_line_from(
        &self,
        from_err: bool,
        skip: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut l = m.lock().unwrap();
        loop {
            let (v, done) = if from_err {
                (&l.err, l.err_done)
            } else {
                (&l.out, l.out_done)
            };
            if let Some((i, s)) = v.iter().enumerate().skip(skip).find(|(_, s)| pred(s)) {
                return Some((i, s.clone()));
            }
            let now = Instant::now();
            if done || now >= deadline {
                return None;
            }
            l = cv.wait_timeout(l, deadline - now).unwrap().0;
        }
    }

    pub fn wait_out(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_line_from(false, 0, timeout, pred).map(|x| x.1)
    }

    pub fn wait_err(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_line_from(true, 0, timeout, pred).map(|x| x.1)
    }

    /// Waits until stdout has `n` lines matching `pred`; returns them.
    pub fn wait_out_count(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.lines;
        let mut l = m.lock().unwrap();
        loop {
            let got: Vec<String> = l.out.iter().filter(|s| pred(s)).cloned().collect();
            let now = Instant::now();
            if got.len() >= n || l.out_done || now >= deadline {
                return got;
            }
            l = cv.wait_timeout(l, deadline - now).unwrap().0;
        }
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.status {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                // Let the output threads take the last lines.
                let (m, cv) = &*self.lines;
                let mut l = m.lock().unwrap();
                let d2 = Instant::now() + Duration::from_secs(2);
                while !(l.out_done && l.err_done) && Instant::now() < d2 {
                    l = cv.wait_timeout(l, Duration::from_millis(50)).unwrap().0;
                }
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.status.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    pub fn kill(&mut self) {
        if self.group {
            // SAFETY: kill(2) of the process group this Proc started (its PGID is the
            // child's PID, which we have not reaped yet if status is None).
            unsafe {
                libc::kill(-self.pid(), libc::SIGKILL);
            }
            self.group = false;
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.ok(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a command to its end, killing it after `timeout` (then panics).
pub fn run(name: &str, cmd: Command, timeout: Duration) -> Run {
    let mut p = Proc::spawn(name, cmd);
    let Some(status) = p.wait_exit(timeout) else {
        p.kill();
        panic!("{name} did not finish within {timeout:?}\n{}", p.dump());
    };
    Run {
        status,
        stdout: p.stdout().join("\n"),
        stderr: p.stderr().join("\n"),
    }
}

// ---------------------------------------------------------------------------------------
// Brokers

/// Replaces `{port}`, `{port2}`, ... with the given ports and `{dir}` with `dir`.
fn fill(template: &str, ports: &[u16], dir: &Path) -> String {
    let mut s = template.replace("{dir}", &dir.display().to_string());
    for (i, p) in ports.iter().enumerate().rev() {
        let key = if i == 0 {
            "{port}".to_owned()
        } else {
            format!("{{port{}}}", i + 1)
        };
        s = s.replace(&key, &p.to_string());
    }
    s
}

fn ports_in(template: &str) -> usize {
    (2..10)
        .take_while(|i| template.contains(&format!("{{port{i}}}")))
        .count()
        + 1
}

/// A running `petrel broker`.
pub struct Petrel {
    pub proc: Proc,
    /// The ports of `{port}`, `{port2}`, ... in listener order.
    pub ports: Vec<u16>,
    pub config: PathBuf,
    pub extra_args: Vec<String>,
    /// Environment variables set for the broker (kept for restarts).
    pub env: Vec<(String, String)>,
}

impl Petrel {
    /// Starts `petrel broker -c <dir>/petrel-N.toml` from `toml`, where `{port}`,
    /// `{port2}`... become free ports and `{dir}` the directory. Ready when every port
    /// accepts connections.
    pub fn start(dir: &Path, toml: &str) -> Petrel {
        Self::start_with(dir, toml, &[])
    }

    pub fn start_with(dir: &Path, toml: &str, args: &[&str]) -> Petrel {
        Self::start_env(dir, toml, args, &[])
    }

    /// [`Petrel::start_with`], with environment variables for the broker.
    pub fn start_env(dir: &Path, toml: &str, args: &[&str], env: &[(&str, &str)]) -> Petrel {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        static N: AtomicU16 = AtomicU16::new(0);
        let n = ports_in(toml);
        let mut last = String::new();
        for _attempt in 0..3 {
            let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let config = dir.join(format!("petrel-{}.toml", N.fetch_add(1, Ordering::Relaxed)));
            std::fs::write(&config, fill(toml, &ports, dir)).unwrap();
            let mut p = Petrel {
                proc: spawn_petrel(&config, args, &env),
                ports,
                config,
                extra_args: args.iter().map(|s| s.to_string()).collect(),
                env: env.clone(),
            };
            match p.wait_ready() {
                Ok(()) => return p,
                Err(e) => last = e,
            }
        }
        panic!("petrel broker did not start:\n{last}");
    }

    /// Ready when the broker logged "listening on" for every port (it logs them once
    /// every listener is bound; a TCP probe could reach a socket of the start-up checks).
    fn wait_ready(&mut self) -> Result<(), String> {
        for &port in &self.ports {
            let needle = format!(":{port}");
            let found = self.proc.wait_err(T, |l| {
                l.contains("listening on") && l.trim_end().ends_with(&needle)
            });
            if found.is_none() {
                self.proc.kill();
                return Err(self.proc.dump());
            }
        }
        if !self.proc.is_running() {
            return Err(self.proc.dump());
        }
        Ok(())
    }

    /// Asserts that the broker (run with `--placement forward --log-level debug`)
    /// relayed at least one connection between its shards.
    pub fn assert_relayed(&self) {
        let relayed = self
            .proc
            .stderr()
            .iter()
            .filter(|l| l.contains("relayed from shard"))
            .count();
        assert!(
            relayed > 0,
            "no connection was relayed:\n{}",
            self.proc.dump()
        );
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// SIGTERM, wait for exit (must be 0), start again with the same configuration. A
    /// subscriber that reconnects during the restart is fine: the broker's port probe
    /// binds without listening, and "address in use" is retried (`net/listen.rs`).
    pub fn restart(&mut self) {
        self.stop_gracefully();
        let owned = self.extra_args.clone();
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        self.proc = spawn_petrel(&self.config, &args, &self.env);
        if let Err(e) = self.wait_ready() {
            panic!("petrel broker did not restart:\n{e}");
        }
    }

    /// SIGKILL (no chance to flush anything), wait, start again with the same
    /// configuration.
    pub fn kill9_restart(&mut self) {
        self.kill9_restart_after(|| {});
    }

    /// [`Petrel::kill9_restart`], running `between` while the broker is down.
    pub fn kill9_restart_after(&mut self, between: impl FnOnce()) {
        self.proc.signal(libc::SIGKILL);
        if self.proc.wait_exit(T).is_none() {
            panic!("petrel survived SIGKILL\n{}", self.proc.dump());
        }
        between();
        let owned = self.extra_args.clone();
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        self.proc = spawn_petrel(&self.config, &args, &self.env);
        if let Err(e) = self.wait_ready() {
            panic!("petrel broker did not restart:\n{e}");
        }
    }

    /// SIGTERM and wait; panics unless it exits 0 within 10 s.
    pub fn stop_gracefully(&mut self) -> ExitStatus {
        self.proc.signal(libc::SIGTERM);
        let Some(st) = self.proc.wait_exit(T) else {
            panic!("petrel did not exit after SIGTERM\n{}", self.proc.dump());
        };
        assert!(
            st.success(),
            "petrel exited with {st} after SIGTERM\n{}",
            self.proc.dump()
        );
        st
    }

    /// The broker is still running and never panicked.
    pub fn assert_healthy(&mut self) {
        assert!(
            self.proc.is_running(),
            "petrel exited\n{}",
            self.proc.dump()
        );
        let err = self.proc.stderr().join("\n");
        assert!(!err.contains("panicked"), "petrel panicked:\n{err}");
    }
}

fn spawn_petrel(config: &Path, args: &[&str], env: &[(String, String)]) -> Proc {
    let mut cmd = Command::new(PETREL);
    cmd.arg("broker").arg("-c").arg(config).args(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if !args.contains(&"--log-level") {
        cmd.args(["--log-level", "info"]);
    }
    // `PETREL_TEST_DRIVER=epoll` runs a suite on the epoll driver (scripts/test.sh does, so
    // that both data paths are tested end to end).
    if !args.contains(&"--driver") {
        if let Ok(d) = std::env::var("PETREL_TEST_DRIVER") {
            cmd.args(["--driver", &d]);
        }
    }
    Proc::spawn("petrel broker", cmd)
}

/// A running `mosquitto -c conf` (never the system service, never port 1883).
pub struct Mosquitto {
    pub proc: Proc,
    pub ports: Vec<u16>,
    pub conf: PathBuf,
}

impl Mosquitto {
    /// `conf` is a mosquitto.conf with `{port}`... placeholders; it must declare its
    /// listeners. [`Mosquitto::plain`] gives the usual one.
    pub fn start(dir: &Path, conf: &str) -> Mosquitto {
        static N: AtomicU16 = AtomicU16::new(0);
        let n = ports_in(conf);
        let mut last = String::new();
        for _ in 0..3 {
            let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let path = dir.join(format!(
                "mosquitto-{}.conf",
                N.fetch_add(1, Ordering::Relaxed)
            ));
            // As root, Mosquitto 2.0 would switch to user "mosquitto", who cannot read the
            // test's private directory (certificates, password file, persistence).
            let text = format!("user root\n{}", fill(conf, &ports, dir));
            std::fs::write(&path, text).unwrap();
            let mut m = Mosquitto {
                proc: spawn_mosquitto(&path),
                ports,
                conf: path,
            };
            match m.wait_ready() {
                Ok(()) => return m,
                Err(e) => last = e,
            }
        }
        panic!("mosquitto did not start:\n{last}");
    }

    /// Anonymous clients on one plain listener, plus `extra` lines.
    pub fn plain(dir: &Path, extra: &str) -> Mosquitto {
        Self::start(
            dir,
            &format!("listener {{port}} 127.0.0.1\nallow_anonymous true\nlog_type all\n{extra}\n"),
        )
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        for &port in &self.ports {
            let deadline = Instant::now() + T;
            loop {
                if wait_port(port, Duration::from_millis(100)) {
                    break;
                }
                if !self.proc.is_running() || Instant::now() > deadline {
                    self.proc.kill();
                    return Err(self.proc.dump());
                }
            }
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    pub fn restart(&mut self) {
        self.proc.signal(libc::SIGTERM);
        if self.proc.wait_exit(T).is_none() {
            panic!("mosquitto did not stop\n{}", self.proc.dump());
        }
        self.proc = spawn_mosquitto(&self.conf);
        if let Err(e) = self.wait_ready() {
            panic!("mosquitto did not restart:\n{e}");
        }
    }
}

fn spawn_mosquitto(conf: &Path) -> Proc {
    let mut cmd = Command::new("mosquitto");
    cmd.arg("-c").arg(conf);
    Proc::spawn("mosquitto", cmd)
}

/// Either broker, for tests that run against both.
pub enum Broker {
    Petrel(Petrel),
    Mosquitto(Mosquitto),
}

impl Broker {
    pub fn port(&self) -> u16 {
        match self {
            Broker::Petrel(p) => p.port(),
            Broker::Mosquitto(m) => m.port(),
        }
    }
    pub fn ports(&self) -> &[u16] {
        match self {
            Broker::Petrel(p) => &p.ports,
            Broker::Mosquitto(m) => &m.ports,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Broker::Petrel(_) => "petrel",
            Broker::Mosquitto(_) => "mosquitto",
        }
    }
    pub fn restart(&mut self) {
        match self {
            Broker::Petrel(p) => p.restart(),
            Broker::Mosquitto(m) => m.restart(),
        }
    }
    pub fn proc(&self) -> &Proc {
        match self {
            Broker::Petrel(p) => &p.proc,
            Broker::Mosquitto(m) => &m.proc,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients

/// `mosquitto_pub -h 127.0.0.1 -p PORT args...`, bounded.
pub fn mosq_pub(port: u16, args: &[&str]) -> Run {
    mosq_pub_at("127.0.0.1", port, args)
}

/// `mosquitto_pub` to a broker on another loopback address.
pub fn mosq_pub_at(host: &str, port: u16, args: &[&str]) -> Run {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", host, "-p", &port.to_string()]).args(args);
    run("mosquitto_pub", cmd, T)
}

/// A running `mosquitto_sub -d ...`, returned once its SUBACK arrived. Message lines are
/// the stdout lines that are not `-d` debug lines (see [`payloads`]).
pub fn mosq_sub(port: u16, args: &[&str]) -> Proc {
    // Line-buffered: its debug lines (stdio) would otherwise wait in a pipe buffer.
    let mut cmd = Command::new("stdbuf");
    cmd.args([
        "-oL",
        "mosquitto_sub",
        "-d",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ])
    .args(args);
    let p = Proc::spawn("mosquitto_sub", cmd);
    if p.wait_out(T, |l| l.contains("received SUBACK")).is_none() {
        panic!("mosquitto_sub got no SUBACK\n{}", p.dump());
    }
    p
}

/// Whether a mosquitto_sub `-d` stdout line is a message (not a debug line).
pub fn is_payload(l: &str) -> bool {
    !(l.starts_with("Client ") || l.starts_with("Subscribed (") || l.is_empty())
}

/// Waits for `n` messages on a `mosquitto_sub -d` and returns them.
pub fn payloads(p: &Proc, n: usize, timeout: Duration) -> Vec<String> {
    let got = p.wait_out_count(n, timeout, is_payload);
    assert!(
        got.len() >= n,
        "expected {n} message(s), got {got:?}\n{}",
        p.dump()
    );
    got
}

/// Runs a paho scenario; returns its output (panics with it on failure).
pub fn paho(scenario: &str, port: u16, args: &[&str]) -> Run {
    let mut cmd = Command::new("python3");
    cmd.arg(py_dir().join("paho_e2e.py"))
        .arg(scenario)
        .args(["--port", &port.to_string()])
        .args(args);
    let r = run(&format!("paho {scenario}"), cmd, Duration::from_secs(60));
    assert!(
        r.ok(),
        "paho scenario {scenario} {args:?} on port {port} failed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    r
}

/// Starts a paho scenario that keeps running (`hold`, `shutdown`).
pub fn paho_spawn(scenario: &str, port: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(py_dir().join("paho_e2e.py"))
        .arg(scenario)
        .args(["--port", &port.to_string()])
        .args(args);
    Proc::spawn(&format!("paho {scenario}"), cmd)
}

/// `petrel <args>` to its end.
pub fn petrel(args: &[&str]) -> Run {
    let mut cmd = Command::new(PETREL);
    cmd.args(args);
    run(&format!("petrel {}", args.first().unwrap_or(&"")), cmd, T)
}

/// A running `petrel sub --log-level info ...`, returned once it is subscribed.
pub fn petrel_sub(args: &[&str]) -> Proc {
    let p = petrel_sub_spawn(args);
    if p.wait_err(T, |l| l.contains("subscribed")).is_none() {
        panic!("petrel sub did not subscribe\n{}", p.dump());
    }
    p
}

pub fn petrel_sub_spawn(args: &[&str]) -> Proc {
    let mut cmd = Command::new(PETREL);
    cmd.arg("sub").args(args);
    if !args.contains(&"--log-level") {
        cmd.args(["--log-level", "info"]);
    }
    Proc::spawn("petrel sub", cmd)
}

// ---------------------------------------------------------------------------------------
// A raw MQTT client

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

pub fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// CONNECT with clean start, the given keep alive, no will, no credentials.
pub fn connect_packet(v5: bool, client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut b = Vec::new();
    string(b"MQTT", &mut b);
    b.push(if v5 { 5 } else { 4 });
    b.push(0x02);
    b.extend_from_slice(&keep_alive.to_be_bytes());
    if v5 {
        b.push(0);
    }
    string(client_id.as_bytes(), &mut b);
    frame(0x10, &b)
}

pub fn publish_packet(v5: bool, topic: &str, payload: &[u8], qos: u8, pid: u16) -> Vec<u8> {
    let mut b = Vec::new();
    string(topic.as_bytes(), &mut b);
    if qos > 0 {
        b.extend_from_slice(&pid.to_be_bytes());
    }
    if v5 {
        b.push(0);
    }
    b.extend_from_slice(payload);
    frame(0x30 | (qos << 1), &b)
}

pub fn subscribe_packet(v5: bool, pid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut b = pid.to_be_bytes().to_vec();
    if v5 {
        b.push(0);
    }
    string(filter.as_bytes(), &mut b);
    b.push(qos);
    frame(0x82, &b)
}

/// One received packet: the first byte and the body.
#[derive(Debug, Clone)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadErr {
    Timeout,
    Closed,
}

/// A raw MQTT connection.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).ok();
        Raw { s, buf: Vec::new() }
    }

    /// TCP connect, CONNECT, CONNACK (must be success).
    pub fn mqtt(port: u16, v5: bool, client_id: &str) -> Raw {
        let mut r = Raw::connect(port);
        r.send(&connect_packet(v5, client_id, 60));
        let p = r.read(T).expect("CONNACK");
        assert_eq!(p.kind(), 2, "expected CONNACK, got {p:?}");
        assert_eq!(p.body.get(1), Some(&0), "CONNACK refused: {p:?}");
        r
    }

    pub fn send(&mut self, b: &[u8]) -> bool {
        self.s.write_all(b).is_ok()
    }

    /// Next whole packet.
    pub fn read(&mut self, timeout: Duration) -> Result<Packet, ReadErr> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((p, n)) = parse(&self.buf) {
                self.buf.drain(..n);
                return Ok(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadErr::Timeout);
            }
            self.s.set_read_timeout(Some(left)).ok();
            let mut b = [0u8; 65536];
            match self.s.read(&mut b) {
                Ok(0) => return Err(ReadErr::Closed),
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(ReadErr::Timeout)
                }
                Err(_) => return Err(ReadErr::Closed),
            }
        }
    }

    /// Waits until the broker closes the connection and asserts that it sent DISCONNECT
    /// with `code` first (MQTT 5).
    pub fn assert_disconnected_with(&mut self, code: u8, what: &str) {
        let pkts = self.wait_closed(T).expect("closed");
        assert!(
            pkts.iter()
                .any(|p| p.kind() == 14 && p.body.first() == Some(&code)),
            "{what}: no DISCONNECT {code:#04x}: {pkts:?}"
        );
    }

    /// Waits until the broker closes the connection, skipping packets; returns them.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<Packet>, ReadErr> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left) {
                Ok(p) => got.push(p),
                Err(ReadErr::Closed) => return Ok(got),
                Err(ReadErr::Timeout) => return Err(ReadErr::Timeout),
            }
        }
    }
}

fn parse(b: &[u8]) -> Option<(Packet, usize)> {
    let first = *b.first()?;
    let mut len = 0usize;
    let mut mult = 1usize;
    let mut i = 1;
    loop {
        let byte = *b.get(i)?;
        len += usize::from(byte & 0x7f) * mult;
        mult *= 128;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return None;
        }
    }
    let body = b.get(i..i + len)?.to_vec();
    Some((Packet { first, body }, i + len))
}

/// Raises the soft RLIMIT_NOFILE of this process (and so of the children it starts) to
/// at least `n` (and the hard limit with it when allowed, as root); returns the new soft
/// limit.
pub fn raise_nofile(n: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < n {
            // Root (CI) may raise the hard limit too; otherwise stop at the hard limit.
            let raised = r.rlim_max < n && {
                let nr = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &nr) == 0
            };
            if !raised {
                let nr = libc::rlimit {
                    rlim_cur: n.min(r.rlim_max),
                    rlim_max: r.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &nr);
            }
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
        r.rlim_cur
    }
}

// ---------------------------------------------------------------------------------------
// Certificates

/// A CA and certificates signed by it, made with `openssl` in `dir`.
pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    let r = run("openssl", cmd, Duration::from_secs(30));
    r.assert_ok(&format!("openssl {args:?}"));
}

impl Pki {
    /// A new CA `<name>.crt` / `<name>.key` in `dir`.
    pub fn ca(dir: &Path, name: &str) -> Pki {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=Petrel test CA {name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// A leaf certificate `<name>.crt`/`.key` signed by CA `ca`, with subject CN `cn`;
    /// `server` gives it serverAuth and SANs 127.0.0.1 and localhost, otherwise clientAuth.
    pub fn leaf(&self, ca: &str, name: &str, cn: &str, server: bool) -> (PathBuf, PathBuf) {
        let ext = if server {
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        } else {
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n"
        };
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
        (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        )
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn p(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }
}

/// Publishes 200 QoS 0 messages of 60 kB on `topic` (12 MB: more than the socket buffers
/// between the broker and a subscriber that does not read); the publisher stays connected
/// while the returned value lives.
pub fn flood(port: u16, topic: &str) -> Raw {
    let mut r = Raw::mqtt(port, false, "flooder");
    let big = vec![7u8; 60_000];
    for _ in 0..200 {
        assert!(r.send(&publish_packet(false, topic, &big, 0, 0)), "flood");
    }
    r
}

/// Remote ports and TCP states of the IPv4 sockets bound to local port `port` (a broker's
/// side of its connections), as `/proc/net/tcp` shows them: hex, 01 ESTABLISHED, 04
/// FIN_WAIT1, 07 CLOSE, ... (listening sockets have remote port 0).
pub fn tcp_peers(port: u16) -> Vec<(u16, String)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port_of = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = port_of(f.get(1)?)?;
            let remote = port_of(f.get(2)?)?;
            let state = (*f.get(3)?).to_owned();
            (local == port && remote != 0).then_some((remote, state))
        })
        .collect()
}

/// SHA-256 fingerprint of the certificate a TLS server presents on `port`.
pub fn served_cert_fingerprint(port: u16) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256"
    ));
    let r = run("openssl s_client", cmd, Duration::from_secs(15));
    r.stdout.trim().to_owned()
}

/// SHA-256 fingerprint of a PEM certificate file.
pub fn file_fingerprint(path: &Path) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path);
    run("openssl x509", cmd, Duration::from_secs(15))
        .assert_ok("fingerprint")
        .stdout
        .trim()
        .to_owned()
}

/// Writes a Mosquitto password file with `mosquitto_passwd -b` (`user`, `password`) pairs.
pub fn passwd_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("passwd");
    std::fs::write(&path, "").unwrap();
    for (u, p) in users {
        let mut cmd = Command::new("mosquitto_passwd");
        cmd.arg("-b").arg(&path).arg(u).arg(p);
        run("mosquitto_passwd", cmd, T).assert_ok("mosquitto_passwd");
    }
    path
}
