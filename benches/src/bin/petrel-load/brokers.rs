//! The processes the tool starts and measures: the brokers (Petrel, Mosquitto), `petrel
//! proxy` and nginx in front of a broker, and their memory and CPU time.

use crate::cli::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct BrokerProc {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) _dir: Option<PathBuf>,
}

impl Drop for BrokerProc {
    /// SIGTERM first (a broker may report what it did at exit), SIGKILL after 5 s.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped (we hold the Child).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(28_883)
}

pub(crate) fn wait_listening(addr: SocketAddr) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts `kind`; `durable`: with persistence on (Mosquitto's snapshot store, Petrel's
/// write-ahead store with `--durability`).
pub(crate) fn start_broker(kind: &str, a: &Args, durable: bool) -> anyhow::Result<BrokerProc> {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let dir = std::env::temp_dir().join(format!("petrel-load-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(&a.cpus);
    match kind {
        "mosquitto" => {
            let conf = dir.join("mosquitto.conf");
            let persistence = if durable {
                format!(
                    "persistence true\npersistence_location {}/\n",
                    dir.display()
                )
            } else {
                "persistence false\n".to_owned()
            };
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\nmax_inflight_messages 100\nmax_connections -1\n{persistence}log_dest none\n"
                ),
            )?;
            cmd.arg("mosquitto").arg("-c").arg(&conf);
        }
        "petrel" | "petrel-epoll" | "petrel-forward" | "petrel-readiness" => {
            cmd.arg(&a.petrel)
                .arg("broker")
                .arg("--bind")
                .arg(addr.to_string())
                .arg("--threads")
                .arg(a.threads.to_string())
                .arg("--log-level")
                // The store's figures (commits, fsyncs per second) are printed at exit.
                .arg(if durable {
                    "warn,runtime_uring::store=info"
                } else {
                    "warn"
                });
            if kind == "petrel-epoll" {
                cmd.arg("--driver").arg("epoll");
            }
            if kind == "petrel-readiness" {
                // io_uring as readiness only (a system call per read and write): the
                // data path before the completion-based one, for the A/B table.
                cmd.env("PETREL_URING_READINESS", "1");
            }
            if kind == "petrel-forward" {
                cmd.arg("--placement").arg("forward");
            }
            if durable {
                let conf = dir.join("petrel.toml");
                std::fs::write(
                    &conf,
                    format!(
                        "allow_anonymous = true\npersistence = true\npersistence_location = \"{}\"\ndurability = \"{}\"\n",
                        dir.display(),
                        a.durability
                    ),
                )?;
                cmd.arg("-c").arg(&conf);
            }
        }
        other => anyhow::bail!("unknown broker {other}"),
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {kind}: {e}"))?;
    let p = BrokerProc {
        child,
        addr,
        _dir: Some(dir),
    };
    if !wait_listening(addr) {
        anyhow::bail!("{kind} did not start listening on {addr}");
    }
    Ok(p)
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user + system) of a process and its children so far, in seconds, at the
/// kernel's nanosecond accounting (`/proc/PID/stat` counts 10 ms ticks, too coarse for a
/// few seconds of a mostly idle proxy).
pub(crate) fn cpu_secs(pid: u32) -> Option<f64> {
    let mut total = process_cpu(pid)?;
    // nginx's work is done by its worker processes (children of the master).
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if parent_of(child) == Some(pid) {
                total += process_cpu(child).unwrap_or(0.0);
            }
        }
    }
    Some(total)
}

pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state ppid ...
    let rest = s.get(s.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// All threads of one process, from its CPU-time clock.
pub(crate) fn process_cpu(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: writes the clock id into `clock`, a live local.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the time into `ts`, a live local.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// `petrel proxy` in front of `upstream`, on the brokers' CPUs.
pub(crate) fn start_petrel_proxy(a: &Args, upstream: SocketAddr) -> anyhow::Result<BrokerProc> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let child = Command::new("taskset")
        .arg("-c")
        .arg(&a.cpus)
        .arg(&a.petrel)
        .args(["proxy", "--bind", &addr.to_string()])
        .args(["--upstream", &upstream.to_string()])
        .args(["--threads", &a.threads.to_string(), "--log-level", "warn"])
        .args(a.proxy_args.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start petrel proxy: {e}"))?;
    let p = BrokerProc {
        child,
        addr,
        _dir: None,
    };
    if !wait_listening(addr) {
        anyhow::bail!("petrel proxy did not start listening on {addr}");
    }
    Ok(p)
}

/// A running nginx: stopped with SIGTERM, so that the master stops its workers (after a
/// SIGKILL of the master they would run on).
pub(crate) struct Nginx(pub(crate) BrokerProc);

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped (we hold the Child).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if matches!(self.0.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// nginx's stream proxy in front of `upstream` (as many workers as petrel proxy has
/// threads), or None when nginx or its stream module is not installed.
pub(crate) fn start_nginx(a: &Args, upstream: SocketAddr) -> anyhow::Result<Option<Nginx>> {
    let module = ["/usr/lib/nginx/modules/ngx_stream_module.so"]
        .into_iter()
        .find(|m| std::path::Path::new(m).exists());
    let builtin = Command::new("nginx")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).contains("--with-stream "))
        .ok();
    let load = match (builtin, module) {
        (None, _) => return Ok(None), // no nginx
        (Some(true), _) => String::new(),
        (Some(false), Some(m)) => format!("load_module {m};\n"),
        (Some(false), None) => return Ok(None), // no stream module
    };
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let dir = std::env::temp_dir().join(format!("petrel-load-nginx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "{load}daemon off;\nmaster_process on;\nworker_processes {threads};\n\
             worker_rlimit_nofile 1000000;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events {{ worker_connections 100000; multi_accept on; }}\n\
             stream {{\n  server {{\n    listen {addr} reuseport;\n    proxy_pass {upstream};\n    \
             tcp_nodelay on;\n    proxy_timeout 600s;\n  }}\n}}\n",
            threads = a.threads,
            dir = dir.display(),
        ),
    )?;
    let child = Command::new("taskset")
        .arg("-c")
        .arg(&a.cpus)
        .arg("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start nginx: {e}"))?;
    let p = Nginx(BrokerProc {
        child,
        addr,
        _dir: Some(dir),
    });
    if !wait_listening(addr) {
        anyhow::bail!("nginx did not start listening on {addr}");
    }
    Ok(Some(p))
}
