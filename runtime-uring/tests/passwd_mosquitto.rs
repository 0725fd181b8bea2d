//! Password files against the real Mosquitto tools: files written by `mosquitto_passwd`
//! verify with Petrel, and files written by `petrel passwd` let clients into a real
//! `mosquitto` broker (and keep wrong passwords out).
//!
//! Tests that need `mosquitto`, `mosquitto_passwd` or `mosquitto_pub` say so and pass
//! when they are not installed; the committed fixture (written by mosquitto_passwd 2.0.11)
//! is checked everywhere.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runtime_uring::auth::passwd::{HashKind, PasswordFile};
use runtime_uring::cli::passwd as passwd_cli;

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("{tool} is not installed: skipping the part of this test that needs it");
    }
    found
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mosquitto_passwd_2.0.txt")
}

fn petrel_passwd(args: &[&str]) {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    if let Err(e) = passwd_cli::run(&args) {
        panic!("petrel passwd {args:?}: {e}");
    }
}

fn mosquitto_passwd(args: &[&str]) {
    let status = Command::new("mosquitto_passwd")
        .args(args)
        .status()
        .expect("mosquitto_passwd runs");
    assert!(status.success(), "mosquitto_passwd {args:?}: {status}");
}

/// A `mosquitto` broker on a free 127.0.0.1 port, killed on drop.
struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mosquitto {
    fn start(dir: &Path, extra_conf: &str) -> Self {
        let port = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        // `user root`: when the tests run as root, do not drop to the `mosquitto` user,
        // who could not read the 0600 files in our temporary directory.
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nuser root\n{extra_conf}\n"),
        )
        .expect("write conf");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("mosquitto starts");
        let mut m = Self { child, port, log };
        m.wait_ready();
        m
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mosquitto exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Publishes once with MQTT 3.1.1 as `user`; true when the broker let the client in.
    fn connect(&self, user: &str, password: &str) -> bool {
        let out = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-V",
                "mqttv311",
                "-q",
                "1",
                "-t",
                "petrel/test",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-u",
                user,
                "-P",
                password,
                "-m",
                "x",
            ])
            .output()
            .expect("mosquitto_pub runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            assert!(
                stderr.contains("not authorised")
                    || stderr.contains("Not authorized")
                    || stderr.contains("bad user name or password"),
                "unexpected mosquitto_pub failure: {stderr}"
            );
        }
        out.status.success()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn committed_mosquitto_passwd_fixture_verifies() {
    let f = PasswordFile::load(&fixture()).expect("fixture parses");
    assert_eq!(f.len(), 4);
    assert!(f.verify("alice", b"secret"));
    assert!(f.verify("bob", b"hunter2"));
    assert!(f.verify("carol", "çà €".as_bytes()));
    assert!(f.verify("dave smith", b"pass word"));
    assert!(!f.verify("alice", b"hunter2"));
    assert!(!f.verify("bob", b"secret"));
    assert_eq!(f.get("bob").map(|h| h.kind()), Some(HashKind::Sha512));
    assert_eq!(f.get("carol").map(|h| h.iterations()), Some(5000));
}

#[test]
fn files_written_by_mosquitto_passwd_verify_with_petrel() {
    if !have("mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    let p = pw.to_str().expect("utf8");
    mosquitto_passwd(&["-c", "-b", p, "alice", "s3cret!"]);
    mosquitto_passwd(&["-H", "sha512", "-b", p, "bob", "hunter2"]);
    mosquitto_passwd(&[
        "-H",
        "sha512-pbkdf2",
        "-I",
        "2000",
        "-b",
        p,
        "carol",
        "p:ss w$rd",
    ]);
    let f = PasswordFile::load(&pw).expect("parses");
    assert!(f.verify("alice", b"s3cret!"));
    assert!(f.verify("bob", b"hunter2"));
    assert!(f.verify("carol", b"p:ss w$rd"));
    assert!(!f.verify("alice", b"s3cret"));
    assert!(!f.verify("carol", b"p:ss"));
    assert!(!f.verify("nobody", b"s3cret!"));
    assert_eq!(
        f.get("alice").map(|h| (h.kind(), h.iterations())),
        Some((HashKind::Sha512Pbkdf2, 101))
    );
    assert_eq!(f.get("carol").map(|h| h.iterations()), Some(2000));
}

#[test]
fn mosquitto_passwd_and_petrel_passwd_edit_each_others_files() {
    if !have("mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    let p = pw.to_str().expect("utf8");
    petrel_passwd(&["-c", "-b", p, "alice", "one"]);
    mosquitto_passwd(&["-b", p, "bob", "two"]);
    petrel_passwd(&["-H", "sha512", "-b", p, "carol", "three"]);
    mosquitto_passwd(&["-D", p, "alice"]);
    petrel_passwd(&["-b", p, "bob", "four"]);
    let f = PasswordFile::load(&pw).expect("parses");
    assert!(!f.contains("alice"));
    assert!(f.verify("bob", b"four"));
    assert!(f.verify("carol", b"three"));
}

#[test]
fn files_written_by_petrel_passwd_are_accepted_by_real_mosquitto() {
    if !have("mosquitto") || !have("mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    let p = pw.to_str().expect("utf8");
    petrel_passwd(&["-c", "-b", p, "alice", "s3cret"]);
    petrel_passwd(&["-H", "sha512", "-b", p, "bob", "hunter2"]);
    petrel_passwd(&["-I", "1000", "-b", p, "carol", "p:ss w$rd"]);
    let broker = Mosquitto::start(
        dir.path(),
        &format!("allow_anonymous false\npassword_file {}\n", pw.display()),
    );
    assert!(
        broker.connect("alice", "s3cret"),
        "log:\n{}",
        broker.log_text()
    );
    assert!(
        broker.connect("bob", "hunter2"),
        "log:\n{}",
        broker.log_text()
    );
    assert!(
        broker.connect("carol", "p:ss w$rd"),
        "log:\n{}",
        broker.log_text()
    );
    assert!(!broker.connect("alice", "s3cret "));
    assert!(!broker.connect("bob", "s3cret"));
    assert!(!broker.connect("mallory", "s3cret"));
}

#[test]
fn petrel_passwd_delete_is_seen_by_real_mosquitto() {
    if !have("mosquitto") || !have("mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    let p = pw.to_str().expect("utf8");
    petrel_passwd(&["-c", "-b", p, "alice", "a"]);
    petrel_passwd(&["-b", p, "bob", "b"]);
    petrel_passwd(&["-D", p, "alice"]);
    let broker = Mosquitto::start(
        dir.path(),
        &format!("allow_anonymous false\npassword_file {}\n", pw.display()),
    );
    assert!(!broker.connect("alice", "a"));
    assert!(broker.connect("bob", "b"), "log:\n{}", broker.log_text());
}
