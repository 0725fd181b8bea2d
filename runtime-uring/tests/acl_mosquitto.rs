//! ACL decisions against the real Mosquitto 2.0 broker: the same ACL file, the same
//! clients, the same PUBLISH; Petrel's [`AclFile`] must decide as `mosquitto` does.
//! Cases where Petrel differs on purpose (see `runtime_uring::auth::acl`) are checked
//! here too, against Petrel's expectation, and their Mosquitto behaviour is recorded.
//!
//! Needs `mosquitto`, `mosquitto_pub` (MQTT 5: the PUBACK reason code shows a refusal);
//! the comparison is skipped when they are not installed, the expectations are not.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use runtime_uring::auth::acl::AclFile;
use runtime_uring::cli::passwd as passwd_cli;

const ACL: &str = "\
# anonymous clients
topic read anon/#
topic write anon/w

user alice
topic readwrite a/#
topic deny a/secret
topic read $SYS/#

user bob
topic write b/+/x

pattern write p/%c/#
pattern write u/%u/#
pattern deny p/%c/locked
pattern deny a/%c/private
";

/// (user, client id, topic, allowed) for PUBLISH, where Mosquitto 2.0 and Petrel agree.
const SAME: &[(Option<&str>, &str, &str, bool)] = &[
    (Some("alice"), "c1", "a/1", true),
    (Some("alice"), "c1", "a", true),
    (Some("alice"), "c1", "a/secret", false),
    (Some("alice"), "c1", "a/secret/x", true),
    (Some("alice"), "c1", "b/1/x", false),
    (Some("alice"), "c1", "$SYS/x", false),
    (Some("bob"), "c1", "b/1/x", true),
    (Some("bob"), "c1", "b//x", true),
    (Some("bob"), "c1", "b/1/2/x", false),
    (Some("bob"), "c1", "b/x", false),
    (Some("bob"), "c1", "a/1", false),
    (None, "c1", "anon/w", true),
    (None, "c1", "anon/r", false),
    (None, "c1", "a/1", false),
    (Some("alice"), "dev1", "p/dev1/t", true),
    (Some("alice"), "dev1", "p/dev1", true),
    (Some("alice"), "dev1", "p/dev2/t", false),
    (None, "dev1", "p/dev1/t", true),
    (Some("alice"), "dev1", "u/alice/t", true),
    (Some("bob"), "dev1", "u/alice/t", false),
    (None, "dev1", "u//t", false),
    (Some("bob"), "dev1", "p/dev1/locked", false),
    (Some("carol"), "dev1", "p/dev1/t", true),
    (Some("carol"), "dev1", "a/1", false),
];

/// Where Petrel is stricter on purpose: (user, client id, topic, Petrel's answer,
/// Mosquitto 2.0.11's answer).
const DIFFERENT: &[(Option<&str>, &str, &str, bool, bool)] = &[
    // A pattern deny beats a user's topic grant (Mosquitto: the user's grant wins).
    (Some("alice"), "c9", "a/c9/private", false, true),
    // A client id with '/' cannot reach into another client's pattern tree.
    (Some("carol"), "dev1/x", "p/dev1/x/t", false, true),
];

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("{tool} is not installed: skipping the comparison with Mosquitto");
    }
    found
}

fn petrel() -> AclFile {
    match AclFile::parse(ACL, "acl") {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

/// One Mosquitto at a time in this file: the "free" port found by binding port 0 can be
/// handed to both tests before either Mosquitto listens, and the second test then talks to
/// the first one's broker until that one is killed (seen once in CI as "Connection
/// refused" in the middle of a test).
static ONE_MOSQUITTO: Mutex<()> = Mutex::new(());

struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
    // Released after `drop` has killed the child.
    _one: MutexGuard<'static, ()>,
}

impl Mosquitto {
    fn start(dir: &Path) -> Self {
        let one = ONE_MOSQUITTO.lock().unwrap_or_else(|e| e.into_inner());
        let pw = dir.join("pw");
        for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
            let mut args: Vec<OsString> = Vec::new();
            if i == 0 {
                args.push("-c".into());
            }
            args.extend(["-b".into(), pw.clone().into(), (*user).into(), "pw".into()]);
            passwd_cli::run(&args).expect("petrel passwd");
        }
        let acl = dir.join("acl");
        std::fs::write(&acl, ACL).expect("write acl");
        let port = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nuser root\nallow_anonymous true\n\
                 password_file {}\nacl_file {}\n",
                pw.display(),
                acl.display()
            ),
        )
        .expect("write conf");
        let log = dir.join("mosquitto.log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("mosquitto starts");
        let mut m = Self {
            child,
            port,
            log,
            _one: one,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, m.port)).is_err() {
            if let Ok(Some(s)) = m.child.try_wait() {
                panic!("mosquitto exited ({s}):\n{}", m.log_text());
            }
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Does Mosquitto accept this PUBLISH (MQTT 5, QoS 1: PUBACK carries the verdict)?
    fn allows_publish(&mut self, user: Option<&str>, client_id: &str, topic: &str) -> bool {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-V",
            "5",
            "-q",
            "1",
        ])
        .args(["-i", client_id, "-t", topic, "-m", "x"]);
        if let Some(u) = user {
            cmd.args(["-u", u, "-P", "pw"]);
        }
        let out = cmd.output().expect("mosquitto_pub runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "mosquitto_pub failed: {stderr}\nmosquitto: {:?}\n{}",
            self.child.try_wait(),
            self.log_text()
        );
        !stderr.contains("Not authorized")
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn publish_decisions_match_mosquitto() {
    let acl = petrel();
    for &(user, id, topic, allowed) in SAME {
        assert_eq!(
            acl.check_publish(id, user, topic),
            allowed,
            "petrel: {user:?}/{id} publish {topic}"
        );
    }
    if !have("mosquitto") || !have("mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Mosquitto::start(dir.path());
    for &(user, id, topic, allowed) in SAME {
        assert_eq!(
            broker.allows_publish(user, id, topic),
            allowed,
            "mosquitto: {user:?}/{id} publish {topic}\n{}",
            broker.log_text()
        );
    }
}

#[test]
fn deliberate_differences_from_mosquitto_are_as_documented() {
    let acl = petrel();
    for &(user, id, topic, ours, _) in DIFFERENT {
        assert_eq!(
            acl.check_publish(id, user, topic),
            ours,
            "petrel: {user:?}/{id} {topic}"
        );
    }
    if !have("mosquitto") || !have("mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Mosquitto::start(dir.path());
    for &(user, id, topic, _, theirs) in DIFFERENT {
        assert_eq!(
            broker.allows_publish(user, id, topic),
            theirs,
            "mosquitto: {user:?}/{id} publish {topic}"
        );
    }
}
