//! `petrel-load`: the end-to-end load tool. Starts Mosquitto and Petrel on loopback (same
//! cores, same run), drives the same workloads against each, and prints a ratio table.
//!
//! Scenarios (64 B payloads, QoS 0 and 1): `pairs` (100 publisher/subscriber pairs),
//! `fanin` (8 publishers to 1 wildcard subscriber), `fanout` (1 publisher to 100
//! subscribers), `latency` (1 to 1 at a fixed rate: p50/p99/p99.9), `conns` (idle
//! connections: connect rate and broker RSS per connection), `proxy` (the same workload
//! direct and through `petrel proxy`). Publishers write as fast as the broker accepts,
//! in batches; every loop is bounded in time and count; undelivered messages are counted.

use clap::Parser;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use mqtt_proto::{
    Connect, FixedHeader, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, Status,
    Subscribe, Subscription, SubscriptionOptions, Subscriptions,
};
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(about = "End-to-end MQTT load generator: Petrel versus Mosquitto in the same run")]
struct Args {
    /// Scenarios to run (comma separated): pairs,fanin,fanout,latency,conns,proxy.
    #[arg(long, default_value = "pairs,fanin,fanout,latency,conns")]
    scenarios: String,
    /// QoS levels (comma separated) for throughput scenarios.
    #[arg(long, default_value = "0,1")]
    qos: String,
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Brokers to test (comma separated): petrel,mosquitto,petrel-epoll,petrel-forward.
    #[arg(long, default_value = "petrel,mosquitto")]
    brokers: String,
    /// The petrel binary.
    #[arg(long, default_value = "target/release/petrel")]
    petrel: PathBuf,
    /// Petrel shards.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// CPUs the brokers are pinned to (taskset list), the same for every broker.
    #[arg(long, default_value = "0-1")]
    cpus: String,
    /// Idle connections for `conns`.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Connects started together in `conns` (and the proxy's connect phase), each batch
    /// waiting for all its CONNACKs.
    #[arg(long, default_value_t = 64)]
    conns_in_flight: usize,
    /// Rate for `latency`, messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Load generator threads.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// QoS 1/2 PUBLISH packets each publisher keeps unacknowledged (comma separated for
    /// several runs of each throughput scenario: "10,100,1000"). A large window is a
    /// publisher that hardly waits for its acknowledgements.
    #[arg(long, default_value = "64")]
    window: String,
    /// Connect to an already running broker at this address instead of starting them.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// The process id of the --target broker (to read its RSS).
    #[arg(long)]
    target_pid: Option<u32>,
    /// Prefix of the client identifiers the tool uses.
    #[arg(long, default_value = "load")]
    client_prefix: String,
    /// Extra arguments of `petrel proxy` in the `proxy` scenario (space separated, e.g.
    /// "--driver epoll" or "--forward splice").
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    proxy_args: String,
    /// Rounds of the `proxy` scenario (its figures are the medians).
    #[arg(long, default_value_t = 3)]
    proxy_rounds: usize,
    /// Write the results as Markdown to this file too.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

// ---------------------------------------------------------------- brokers

struct BrokerProc {
    child: Child,
    addr: SocketAddr,
    _dir: Option<PathBuf>,
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(28_883)
}

fn wait_listening(addr: SocketAddr) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn start_broker(kind: &str, a: &Args) -> anyhow::Result<BrokerProc> {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let dir = std::env::temp_dir().join(format!("petrel-load-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(&a.cpus);
    match kind {
        "mosquitto" => {
            let conf = dir.join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\nmax_inflight_messages 100\nmax_connections -1\npersistence false\nlog_dest none\n"
                ),
            )?;
            cmd.arg("mosquitto").arg("-c").arg(&conf);
        }
        "petrel" | "petrel-epoll" | "petrel-forward" => {
            cmd.arg(&a.petrel)
                .arg("broker")
                .arg("--bind")
                .arg(addr.to_string())
                .arg("--threads")
                .arg(a.threads.to_string())
                .arg("--log-level")
                .arg("warn");
            if kind == "petrel-epoll" {
                cmd.arg("--driver").arg("epoll");
            }
            if kind == "petrel-forward" {
                cmd.arg("--placement").arg("forward");
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

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------- MQTT bits

fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.encoded_len(ProtocolVersion::V3_1_1).unwrap_or(0)];
    let _ = p.emit(ProtocolVersion::V3_1_1, &mut v);
    v
}

fn connect_bytes(id: &str) -> Vec<u8> {
    encode(&Packet::Connect(Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 600,
        properties: Properties::default(),
        client_id: id,
        will: None,
        username: None,
        password: None,
    }))
}

fn subscribe_bytes(filter: &str, qos: QoS) -> Vec<u8> {
    let subs = [Subscription {
        filter,
        options: SubscriptionOptions::qos(qos),
    }];
    encode(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::MIN,
        properties: Properties::default(),
        subscriptions: Subscriptions::List(&subs),
    }))
}

fn publish_into(out: &mut Vec<u8>, topic: &str, payload: &[u8], qos: QoS, pid: u16) {
    let p = Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            PacketId::new(pid)
        },
        properties: Properties::default(),
        payload,
    });
    let _ = p.emit_buf(ProtocolVersion::V3_1_1, out);
}

/// Splits `buf` into whole packets, calling `f(first_byte, body)`; returns bytes consumed.
fn for_each_packet(buf: &[u8], mut f: impl FnMut(u8, &[u8])) -> usize {
    let mut pos = 0;
    while let Ok(Status::Complete(h)) = FixedHeader::parse(&buf[pos..], usize::MAX) {
        let end = pos + h.packet_len();
        if end > buf.len() {
            break;
        }
        f(buf[pos], &buf[pos + h.header_len..end]);
        pos = end;
    }
    pos
}

async fn open(addr: SocketAddr, id: &str) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect_addr(addr).await?;
    s.set_nodelay(true)?;
    let (r, _) = s.write_all(connect_bytes(id)).await;
    r?;
    // CONNACK is 4 bytes.
    let mut got = Vec::new();
    while got.len() < 4 {
        let (r, b) = s.read(Vec::with_capacity(64)).await;
        let n = r?;
        if n == 0 {
            anyhow::bail!("closed before CONNACK");
        }
        got.extend_from_slice(&b[..n]);
    }
    if got[0] != 0x20 || got[3] != 0 {
        anyhow::bail!("CONNACK refused: {got:02x?}");
    }
    Ok(s)
}

async fn subscribe(s: &mut TcpStream, filter: &str, qos: QoS) -> anyhow::Result<()> {
    let (r, _) = s.write_all(subscribe_bytes(filter, qos)).await;
    r?;
    let mut got = Vec::new();
    loop {
        let (r, b) = s.read(Vec::with_capacity(64)).await;
        let n = r?;
        if n == 0 {
            anyhow::bail!("closed before SUBACK");
        }
        got.extend_from_slice(&b[..n]);
        if got.len() >= 5 && got[0] == 0x90 {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------- workloads

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
}

struct Workload {
    publishers: Vec<String>,  // topic each publisher uses
    subscribers: Vec<String>, // filter each subscriber uses
    /// Deliveries each publish should cause (to count losses).
    fan: u64,
}

/// A subscriber: counts PUBLISH packets; acknowledges QoS 1 in batches.
async fn run_subscriber(
    mut s: TcpStream,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
    latency: Option<Rc<std::cell::RefCell<Vec<u64>>>>,
    epoch: Instant,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut acks: Vec<u8> = Vec::new();
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        let read = monoio::time::timeout(Duration::from_millis(200), s.read(buf)).await;
        let (r, b) = match read {
            Ok(x) => x,
            Err(_) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                buf = Vec::with_capacity(256 * 1024);
                continue;
            }
        };
        buf = b;
        let n = match r {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        buf.clear();
        let mut count = 0u64;
        let used = for_each_packet(&pending, |first, body| {
            if first >> 4 != 3 {
                return;
            }
            count += 1;
            let qos = (first >> 1) & 3;
            if body.len() < 2 {
                return;
            }
            let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut off = 2 + tlen;
            if qos > 0 && body.len() >= off + 2 {
                acks.extend_from_slice(&[0x40, 2, body[off], body[off + 1]]);
                off += 2;
            }
            if let Some(lat) = &latency {
                if let Some(ts) = body.get(off..off + 8) {
                    let sent = u64::from_be_bytes(ts.try_into().unwrap_or([0; 8]));
                    let now = epoch.elapsed().as_nanos() as u64;
                    lat.borrow_mut().push(now.saturating_sub(sent));
                }
            }
        });
        pending.drain(..used);
        c.received.fetch_add(count, Ordering::Relaxed);
        if !acks.is_empty() {
            let (r, back) = s.write_all(std::mem::take(&mut acks)).await;
            acks = back;
            acks.clear();
            if r.is_err() {
                return;
            }
        }
    }
}

/// A publisher: writes batches of PUBLISH as fast as the socket takes them. At QoS 1 it
/// keeps at most `window` unacknowledged (reading PUBACKs on a separate task).
/// What one publisher does.
struct PubSpec {
    topic: String,
    qos: QoS,
    payload: usize,
    rate: Option<u64>,
    /// Unacknowledged QoS 1/2 messages allowed.
    window: u64,
}

/// Acknowledgements counted by a publisher's reader, and the publisher waiting for room in
/// its window: woken by the next acknowledgement, not by a timer (whose granularity would
/// throttle small windows).
#[derive(Default)]
struct Acks {
    count: Cell<u64>,
    waiter: Cell<Option<Waker>>,
}

impl Acks {
    fn add(&self, n: u64) {
        self.count.set(self.count.get() + n);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    /// Completes once the count differs from `seen`.
    fn changed(&self, seen: u64) -> AcksChanged<'_> {
        AcksChanged(self, seen)
    }
}

struct AcksChanged<'a>(&'a Acks, u64);

impl Future for AcksChanged<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.count.get() != self.1 {
            Poll::Ready(())
        } else {
            self.0.waiter.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

async fn run_publisher(
    s: TcpStream,
    spec: PubSpec,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
) {
    let PubSpec {
        topic,
        qos,
        payload,
        rate,
        window,
    } = spec;
    let (mut r, mut w) = s.into_split();
    let acked = Rc::new(Acks::default());
    let acked2 = acked.clone();
    let c2 = c.clone();
    let stop2 = stop.clone();
    if qos != QoS::AtMostOnce {
        monoio::spawn(async move {
            let mut pending = Vec::new();
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                let res = monoio::time::timeout(Duration::from_millis(200), r.read(buf)).await;
                let (res, b) = match res {
                    Ok(x) => x,
                    Err(_) => {
                        if stop2.load(Ordering::Relaxed) {
                            return;
                        }
                        buf = Vec::with_capacity(64 * 1024);
                        continue;
                    }
                };
                buf = b;
                let n = match res {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                buf.clear();
                let mut k = 0;
                let used = for_each_packet(&pending, |first, _| {
                    if first >> 4 == 4 {
                        k += 1;
                    }
                });
                pending.drain(..used);
                acked2.add(k);
                c2.acked.fetch_add(k, Ordering::Relaxed);
            }
        });
    }
    let mut body = vec![0xA5u8; payload.max(8)];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut sent = 0u64;
    let mut pid: u16 = 0;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        out.clear();
        let batch = match rate {
            Some(per_sec) => {
                // Paced: send what is due now.
                let due = (start.elapsed().as_secs_f64() * per_sec as f64) as u64;
                if due <= sent {
                    monoio::time::sleep(Duration::from_micros(100)).await;
                    continue;
                }
                (due - sent).min(64)
            }
            None => 256,
        };
        let before = sent;
        for _ in 0..batch {
            if qos != QoS::AtMostOnce && sent - acked.count.get() >= window {
                break;
            }
            pid = if pid == u16::MAX { 1 } else { pid + 1 };
            let ts = epoch.elapsed().as_nanos() as u64;
            body[..8].copy_from_slice(&ts.to_be_bytes());
            publish_into(&mut out, &topic, &body, qos, pid);
            sent += 1;
        }
        if out.is_empty() {
            // Window full: wait for acknowledgements (bounded, to see `stop`).
            let seen = acked.count.get();
            let _ = monoio::time::timeout(Duration::from_millis(20), acked.changed(seen)).await;
            continue;
        }
        let (res, back) = w.write_all(std::mem::take(&mut out)).await;
        out = back;
        if res.is_err() {
            break;
        }
        c.sent.fetch_add(sent - before, Ordering::Relaxed);
    }
}

struct Outcome {
    delivered_per_sec: f64,
    published: u64,
    acked: u64,
    delivered: u64,
    lost: u64,
    latency: Option<(f64, f64, f64)>,
}

fn percentile(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

fn run_workload(
    addr: SocketAddr,
    w: &Workload,
    qos: QoS,
    a: &Args,
    rate: Option<u64>,
    window: u64,
) -> anyhow::Result<Outcome> {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let lat = Rc::new(std::cell::RefCell::new(Vec::new()));
    let want_latency = rate.is_some();
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let secs = a.seconds;
    let payload = a.payload;
    let (start_count, elapsed) = rt.block_on(async {
        let mut subs = Vec::new();
        for (i, f) in w.subscribers.iter().enumerate() {
            let mut s = open(addr, &format!("{}-sub-{i}", a.client_prefix)).await?;
            subscribe(&mut s, f, qos).await?;
            subs.push(s);
        }
        for s in subs {
            let l = want_latency.then(|| lat.clone());
            monoio::spawn(run_subscriber(s, counters.clone(), stop.clone(), l, epoch));
        }
        let mut pubs = Vec::new();
        for (i, t) in w.publishers.iter().enumerate() {
            pubs.push((
                open(addr, &format!("{}-pub-{i}", a.client_prefix)).await?,
                t.clone(),
            ));
        }
        // Warm up, then measure for `secs`.
        for (s, t) in pubs {
            let spec = PubSpec {
                topic: t,
                qos,
                payload,
                rate,
                window,
            };
            monoio::spawn(run_publisher(
                s,
                spec,
                counters.clone(),
                stop.clone(),
                epoch,
            ));
        }
        monoio::time::sleep(Duration::from_millis(500)).await;
        let start_count = counters.received.load(Ordering::Relaxed);
        lat.borrow_mut().clear();
        let t0 = Instant::now();
        monoio::time::sleep(Duration::from_secs(secs)).await;
        let got = counters.received.load(Ordering::Relaxed) - start_count;
        let elapsed = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        // Let in-flight messages arrive (bounded).
        let mut last = counters.received.load(Ordering::Relaxed);
        for _ in 0..20 {
            monoio::time::sleep(Duration::from_millis(250)).await;
            let now = counters.received.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        anyhow::Ok((got, elapsed))
    })?;
    let published = counters.sent.load(Ordering::Relaxed);
    let delivered = counters.received.load(Ordering::Relaxed);
    // QoS 1/2: what the broker acknowledged must arrive (a publisher that stops may leave
    // some unacknowledged, which the broker never promised); QoS 0: everything sent.
    let expected = if qos == QoS::AtMostOnce {
        published * w.fan
    } else {
        counters.acked.load(Ordering::Relaxed) * w.fan
    };
    let mut l = lat.borrow_mut();
    let latency = want_latency.then(|| {
        (
            percentile(&mut l, 0.5),
            percentile(&mut l, 0.99),
            percentile(&mut l, 0.999),
        )
    });
    Ok(Outcome {
        delivered_per_sec: start_count as f64 / elapsed.as_secs_f64(),
        published,
        acked: counters.acked.load(Ordering::Relaxed),
        delivered,
        lost: expected.saturating_sub(delivered),
        latency,
    })
}

fn workload(name: &str) -> Option<Workload> {
    Some(match name {
        "pairs" => Workload {
            publishers: (0..100).map(|i| format!("load/pair/{i}")).collect(),
            subscribers: (0..100).map(|i| format!("load/pair/{i}")).collect(),
            fan: 1,
        },
        "fanin" => Workload {
            publishers: (0..8).map(|i| format!("load/fanin/{i}")).collect(),
            subscribers: vec!["load/fanin/#".into()],
            fan: 1,
        },
        "fanout" => Workload {
            publishers: vec!["load/fanout".into()],
            subscribers: (0..100).map(|_| "load/fanout".to_owned()).collect(),
            fan: 100,
        },
        "latency" => Workload {
            publishers: vec!["load/latency".into()],
            subscribers: vec!["load/latency".into()],
            fan: 1,
        },
        _ => return None,
    })
}

/// What opening `n` idle connections measured.
struct ConnsOutcome {
    per_sec: f64,
    /// RSS added per connection, bytes.
    rss_per_conn: Option<f64>,
    /// The broker's CPU time (user + system) per connect, µs.
    cpu_per_conn: Option<f64>,
    /// The load tool's own CPU time per connect, µs: the client side of the handshakes
    /// (on loopback the kernel does much of the broker's side in the client's context).
    client_cpu_per_conn: Option<f64>,
    /// Time per batch of `window` connects, µs: median and slowest. A slow batch far above
    /// the median is a stall (the broker stopped, or the machine did), not a slow path.
    batch_p50: f64,
    batch_max: f64,
}

/// Opens `n` idle connections in batches of `window`.
fn run_conns(
    addr: SocketAddr,
    pid: Option<u32>,
    n: usize,
    window: usize,
) -> anyhow::Result<ConnsOutcome> {
    let before = pid.and_then(rss_kib);
    let cpu0 = pid.and_then(cpu_secs);
    let own0 = process_cpu(std::process::id());
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let (rate, cpu1, own1, mut batches, held) = rt.block_on(async move {
        let t0 = Instant::now();
        let mut held = Vec::with_capacity(n);
        let mut batches = Vec::with_capacity(n / window.max(1) + 1);
        // A bounded number of connects in flight at once.
        let mut i = 0;
        while i < n {
            let b0 = Instant::now();
            let mut batch = Vec::new();
            for _ in 0..window.max(1).min(n - i) {
                let id = format!("idle-{i}");
                batch.push(monoio::spawn(async move { open(addr, &id).await }));
                i += 1;
            }
            for h in batch {
                held.push(h.await?);
            }
            batches.push(u64::try_from(b0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        let rate = n as f64 / t0.elapsed().as_secs_f64();
        let cpu1 = pid.and_then(cpu_secs);
        let own1 = process_cpu(std::process::id());
        monoio::time::sleep(Duration::from_millis(500)).await;
        anyhow::Ok((rate, cpu1, own1, batches, held))
    })?;
    let after = pid.and_then(rss_kib);
    drop(held);
    let rss_per_conn = match (before, after) {
        (Some(b), Some(a)) => Some((a.saturating_sub(b)) as f64 * 1024.0 / n as f64),
        _ => None,
    };
    let per_conn = |a: Option<f64>, b: Option<f64>| Some((b? - a?) * 1e6 / n as f64);
    Ok(ConnsOutcome {
        per_sec: rate,
        rss_per_conn,
        cpu_per_conn: per_conn(cpu0, cpu1),
        client_cpu_per_conn: per_conn(own0, own1),
        batch_p50: percentile(&mut batches, 0.5),
        batch_max: batches.iter().copied().max().unwrap_or(0) as f64 / 1000.0,
    })
}

// ---------------------------------------------------------------- proxy

/// CPU time (user + system) of a process and its children so far, in seconds, at the
/// kernel's nanosecond accounting (`/proc/PID/stat` counts 10 ms ticks, too coarse for a
/// few seconds of a mostly idle proxy).
fn cpu_secs(pid: u32) -> Option<f64> {
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

fn parent_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state ppid ...
    let rest = s.get(s.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// All threads of one process, from its CPU-time clock.
fn process_cpu(pid: u32) -> Option<f64> {
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
fn start_petrel_proxy(a: &Args, upstream: SocketAddr) -> anyhow::Result<BrokerProc> {
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
struct Nginx(BrokerProc);

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
fn start_nginx(a: &Args, upstream: SocketAddr) -> anyhow::Result<Option<Nginx>> {
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

/// CPU µs of `pid` (and children) per message since `before`.
fn cpu_per_msg(pid: Option<u32>, before: Option<f64>, msgs: u64) -> Option<f64> {
    let used = cpu_secs(pid?)? - before?;
    (msgs > 0).then(|| used * 1e6 / msgs as f64)
}

/// One path to the broker measured by the `proxy` scenario.
#[derive(Default)]
struct ProxyRow {
    name: String,
    conn_rate: f64,
    p50: f64,
    p99: f64,
    /// Proxy CPU µs per message at the fixed rate, and at full speed (None: direct).
    cpu_rate: Option<f64>,
    cpu_full: Option<f64>,
    full_rate: f64,
    lost: u64,
}

/// The `proxy` scenario: the same workloads direct to one Petrel broker, through
/// `petrel proxy`, and through nginx's stream proxy when installed; returns Markdown.
fn run_proxy_scenario(a: &Args) -> anyhow::Result<String> {
    let broker = start_broker("petrel", a)?;
    let proxy = start_petrel_proxy(a, broker.addr)?;
    let nginx = start_nginx(a, broker.addr)?;
    if nginx.is_none() {
        eprintln!("proxy: nginx (with its stream module) not installed, skipped");
    }
    let mut paths: Vec<(String, SocketAddr, Option<u32>)> = vec![
        ("direct".into(), broker.addr, None),
        ("petrel proxy".into(), proxy.addr, Some(proxy.child.id())),
    ];
    if let Some(n) = &nginx {
        paths.push(("nginx stream".into(), n.0.addr, Some(n.0.child.id())));
    }
    let latency = workload("latency").ok_or_else(|| anyhow::anyhow!("no latency workload"))?;
    let pairs = workload("pairs").ok_or_else(|| anyhow::anyhow!("no pairs workload"))?;
    // Rounds of (every phase, every path in turn), and the median of the rounds: on a
    // shared machine a burst of other work then hits one sample, not one path.
    let mut samples: Vec<Vec<ProxyRow>> = Vec::new();
    for round in 0..a.proxy_rounds.max(1) {
        let mut rows: Vec<ProxyRow> = paths
            .iter()
            .map(|(name, _, _)| ProxyRow {
                name: name.clone(),
                ..ProxyRow::default()
            })
            .collect();
        let settle = || std::thread::sleep(Duration::from_millis(500));
        for ((name, addr, _), row) in paths.iter().zip(&mut rows) {
            settle();
            row.conn_rate = run_conns(*addr, None, a.conns, a.conns_in_flight)?.per_sec;
            eprintln!("proxy round {round} {name}: {:.0} conn/s", row.conn_rate);
        }
        for ((name, addr, pid), row) in paths.iter().zip(&mut rows) {
            settle();
            let before = pid.and_then(cpu_secs);
            let o = run_workload(*addr, &latency, QoS::AtMostOnce, a, Some(a.rate), 64)?;
            row.cpu_rate = cpu_per_msg(*pid, before, o.delivered);
            (row.p50, row.p99, _) = o.latency.unwrap_or_default();
            row.lost += o.lost;
            eprintln!(
                "proxy round {round} {name}: latency p50 {:.0} µs p99 {:.0} µs, CPU {:?} µs/msg",
                row.p50, row.p99, row.cpu_rate
            );
        }
        for ((name, addr, pid), row) in paths.iter().zip(&mut rows) {
            settle();
            let before = pid.and_then(cpu_secs);
            let o = run_workload(*addr, &pairs, QoS::AtMostOnce, a, None, 64)?;
            row.cpu_full = cpu_per_msg(*pid, before, o.delivered);
            row.full_rate = o.delivered_per_sec;
            row.lost += o.lost;
            eprintln!(
                "proxy round {round} {name}: pairs {:.0} msg/s, CPU {:?} µs/msg",
                row.full_rate, row.cpu_full
            );
        }
        samples.push(rows);
    }
    let median = |v: Vec<f64>| -> f64 {
        let mut v = v;
        v.sort_by(|x, y| x.total_cmp(y));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let median_opt = |v: Vec<Option<f64>>| -> Option<f64> {
        let v: Vec<f64> = v.into_iter().flatten().collect();
        (!v.is_empty()).then(|| median(v))
    };
    let rows: Vec<ProxyRow> = (0..paths.len())
        .map(|i| {
            let col = |f: &dyn Fn(&ProxyRow) -> f64| {
                median(samples.iter().filter_map(|r| r.get(i)).map(f).collect())
            };
            let col_opt = |f: &dyn Fn(&ProxyRow) -> Option<f64>| {
                median_opt(samples.iter().filter_map(|r| r.get(i)).map(f).collect())
            };
            ProxyRow {
                name: paths.get(i).map(|p| p.0.clone()).unwrap_or_default(),
                conn_rate: col(&|r| r.conn_rate),
                p50: col(&|r| r.p50),
                p99: col(&|r| r.p99),
                cpu_rate: col_opt(&|r| r.cpu_rate),
                cpu_full: col_opt(&|r| r.cpu_full),
                full_rate: col(&|r| r.full_rate),
                lost: samples
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|r| r.lost)
                    .sum(),
            }
        })
        .collect();
    drop(nginx);
    drop(proxy);
    drop(broker);
    let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let mut md = format!(
        "| path (median of {} rounds) | connects/s (x direct) | latency p50 / p99 µs (added p50) | proxy CPU µs/msg at {} msg/s | pairs QoS 0 msg/s | proxy CPU µs/msg in pairs | lost |\n|---|---|---|---|---|---|---|\n",
        a.proxy_rounds.max(1),
        a.rate
    );
    let direct_rate = rows.first().map_or(0.0, |r| r.conn_rate);
    let direct_p50 = rows.first().map_or(0.0, |r| r.p50);
    for r in &rows {
        md.push_str(&format!(
            "| {} | {:.0} ({:.2}x) | {:.0} / {:.0} ({:+.0}) | {} | {:.0} | {} | {} |\n",
            r.name,
            r.conn_rate,
            if direct_rate > 0.0 {
                r.conn_rate / direct_rate
            } else {
                0.0
            },
            r.p50,
            r.p99,
            r.p50 - direct_p50,
            us(r.cpu_rate),
            r.full_rate,
            us(r.cpu_full),
            r.lost,
        ));
    }
    Ok(md)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    // Many idle connections need file descriptors.
    // SAFETY: setrlimit with a valid, fully initialised struct.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let brokers: Vec<String> = a.brokers.split(',').map(str::to_owned).collect();
    let qos_list: Vec<QoS> = a
        .qos
        .split(',')
        .filter_map(|q| match q {
            "0" => Some(QoS::AtMostOnce),
            "1" => Some(QoS::AtLeastOnce),
            "2" => Some(QoS::ExactlyOnce),
            _ => None,
        })
        .collect();
    // (scenario, QoS, per broker: (name, headline value, details))
    type Row = (String, String, Vec<(String, f64, String)>);
    let mut rows: Vec<Row> = Vec::new();
    let mut proxy_md = None;
    for sc in a.scenarios.split(',') {
        if sc == "proxy" {
            proxy_md = Some(run_proxy_scenario(&a)?);
            continue;
        }
        let qs: Vec<QoS> = match sc {
            "latency" | "conns" => vec![QoS::AtMostOnce],
            _ => qos_list.clone(),
        };
        let windows: Vec<u64> = a
            .window
            .split(',')
            .map(|w| w.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--window: {e}"))?;
        let runs: Vec<(QoS, u64)> = qs
            .iter()
            .flat_map(|&q| {
                // The window matters only to QoS 1/2 throughput.
                let ws = if q == QoS::AtMostOnce || sc == "latency" || sc == "conns" {
                    &windows[..windows.len().min(1)]
                } else {
                    &windows[..]
                };
                ws.iter().map(move |&w| (q, w))
            })
            .collect();
        for (q, window) in runs {
            let label = if q != QoS::AtMostOnce && windows.len() > 1 {
                format!("{} (window {window})", q as u8)
            } else {
                format!("{}", q as u8)
            };
            let mut cells = Vec::new();
            for b in &brokers {
                let proc_ = match a.target {
                    Some(_) => None,
                    None => Some(start_broker(b, &a)?),
                };
                let addr = a
                    .target
                    .or(proc_.as_ref().map(|p| p.addr))
                    .ok_or_else(|| anyhow::anyhow!("no broker"))?;
                let pid = proc_.as_ref().map(|p| p.child.id()).or(a.target_pid);
                let (value, detail) = match sc {
                    "conns" => {
                        let o = run_conns(addr, pid, a.conns, a.conns_in_flight)?;
                        (
                            o.per_sec,
                            format!(
                                "{:.0} conn/s, {} B RSS/conn, {} µs broker CPU/conn, {} µs client CPU/conn, batch of {} p50 {:.0} µs max {:.0} µs",
                                o.per_sec,
                                o.rss_per_conn.map_or("?".into(), |r| format!("{r:.0}")),
                                o.cpu_per_conn.map_or("?".into(), |c| format!("{c:.1}")),
                                o.client_cpu_per_conn
                                    .map_or("?".into(), |c| format!("{c:.1}")),
                                a.conns_in_flight,
                                o.batch_p50,
                                o.batch_max
                            ),
                        )
                    }
                    "latency" => {
                        let w = workload(sc).ok_or_else(|| anyhow::anyhow!("?"))?;
                        let o = run_workload(addr, &w, q, &a, Some(a.rate), window)?;
                        let (p50, p99, p999) = o.latency.unwrap_or_default();
                        (
                            p99,
                            format!("p50 {p50:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs"),
                        )
                    }
                    _ => {
                        let w =
                            workload(sc).ok_or_else(|| anyhow::anyhow!("unknown scenario {sc}"))?;
                        let o = run_workload(addr, &w, q, &a, None, window)?;
                        (
                            o.delivered_per_sec,
                            format!(
                                "{:.0} msg/s delivered; published {}, acknowledged {}, delivered {}, lost {}",
                                o.delivered_per_sec, o.published, o.acked, o.delivered, o.lost
                            ),
                        )
                    }
                };
                eprintln!("{sc} qos{label} {b}: {detail}");
                cells.push((b.clone(), value, detail));
                drop(proc_);
            }
            rows.push((sc.to_owned(), label, cells));
        }
    }
    let mut md = String::new();
    md.push_str("| scenario | QoS | ");
    md.push_str(&brokers.join(" | "));
    md.push_str(" | ratio (first / second) |\n|---|---|");
    for _ in &brokers {
        md.push_str("---|");
    }
    md.push_str("---|\n");
    for (sc, q, cells) in &rows {
        md.push_str(&format!("| {sc} | {q} | "));
        for (_, _, d) in cells {
            md.push_str(d);
            md.push_str(" | ");
        }
        let ratio = match (cells.first(), cells.get(1)) {
            (Some(x), Some(y)) if y.1 > 0.0 => format!("{:.2}x", x.1 / y.1),
            _ => "-".into(),
        };
        md.push_str(&ratio);
        md.push_str(" |\n");
    }
    if let Some(p) = proxy_md {
        // The proxy scenario compares paths to one broker, not brokers: a table of its own.
        if rows.is_empty() {
            md.clear();
        } else {
            md.push('\n');
        }
        md.push_str(&p);
    }
    println!("{md}");
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md)?;
    }
    Ok(())
}
