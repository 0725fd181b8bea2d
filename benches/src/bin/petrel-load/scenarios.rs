//! The throughput, latency and connection scenarios against one broker address.

use crate::brokers::{cpu_secs, process_cpu, rss_kib};
use crate::cli::Args;
use crate::client::{open, run_publisher, run_subscriber, subscribe, Counters, PubSpec};
use mqtt_proto::QoS;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Workload {
    pub(crate) publishers: Vec<String>,  // topic each publisher uses
    pub(crate) subscribers: Vec<String>, // filter each subscriber uses
    /// Deliveries each publish should cause (to count losses).
    pub(crate) fan: u64,
    /// Subscribers with persistent sessions (Clean Session 0), brokers with persistence.
    pub(crate) durable: bool,
}

pub(crate) struct Outcome {
    pub(crate) delivered_per_sec: f64,
    pub(crate) published: u64,
    pub(crate) acked: u64,
    pub(crate) delivered: u64,
    pub(crate) lost: u64,
    pub(crate) latency: Option<(f64, f64, f64)>,
    /// The broker's system calls per message delivered while measuring (`perf stat`).
    pub(crate) syscalls_per_msg: Option<f64>,
}

pub(crate) fn percentile(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_workload(
    addr: SocketAddr,
    pid: Option<u32>,
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
    let (start_count, elapsed, calls) = rt.block_on(async {
        let mut subs = Vec::new();
        let sub_addr = a.sub_target.unwrap_or(addr);
        for (i, f) in w.subscribers.iter().enumerate() {
            let id = format!("{}-sub-{i}", a.client_prefix);
            let mut s = crate::client::open_session(sub_addr, &id, !w.durable).await?;
            subscribe(&mut s, f, qos).await?;
            subs.push(s);
        }
        if sub_addr != addr {
            // The subscriptions' routes reach the publishers' node (etcd, then its watch).
            monoio::time::sleep(std::time::Duration::from_millis(500)).await;
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
        let perf = pid.and_then(crate::syscalls::start);
        let t0 = Instant::now();
        monoio::time::sleep(Duration::from_secs(secs)).await;
        let got = counters.received.load(Ordering::Relaxed) - start_count;
        let elapsed = t0.elapsed();
        let calls = perf.and_then(crate::syscalls::Count::finish);
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
        if w.durable {
            // The persistent sessions go (a clean start ends each): left behind, they would
            // queue what later runs publish to the same topics, and a run that reused their
            // identifiers would find their queues before its SUBACK.
            for i in 0..w.subscribers.len() {
                let id = format!("{}-sub-{i}", a.client_prefix);
                if let Ok(Ok(s)) = monoio::time::timeout(
                    Duration::from_secs(5),
                    crate::client::open_session(sub_addr, &id, true),
                )
                .await
                {
                    drop(s);
                }
            }
        }
        anyhow::Ok((got, elapsed, calls))
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
        syscalls_per_msg: calls
            .filter(|_| start_count > 0)
            .map(|c| c as f64 / start_count as f64),
    })
}

pub(crate) fn workload(name: &str) -> Option<Workload> {
    Some(match name {
        "pairs" | "durable" => Workload {
            publishers: (0..100).map(|i| format!("load/pair/{i}")).collect(),
            subscribers: (0..100).map(|i| format!("load/pair/{i}")).collect(),
            fan: 1,
            durable: name == "durable",
        },
        "fanin" => Workload {
            publishers: (0..8).map(|i| format!("load/fanin/{i}")).collect(),
            subscribers: vec!["load/fanin/#".into()],
            fan: 1,
            durable: false,
        },
        "fanout" => Workload {
            publishers: vec!["load/fanout".into()],
            subscribers: (0..100).map(|_| "load/fanout".to_owned()).collect(),
            fan: 100,
            durable: false,
        },
        "latency" => Workload {
            publishers: vec!["load/latency".into()],
            subscribers: vec!["load/latency".into()],
            fan: 1,
            durable: false,
        },
        _ => return None,
    })
}

/// What opening `n` idle connections measured.
pub(crate) struct ConnsOutcome {
    pub(crate) per_sec: f64,
    /// RSS added per connection, bytes.
    pub(crate) rss_per_conn: Option<f64>,
    /// The broker's CPU time (user + system) per connect, µs.
    pub(crate) cpu_per_conn: Option<f64>,
    /// The load tool's own CPU time per connect, µs: the client side of the handshakes
    /// (on loopback the kernel does much of the broker's side in the client's context).
    pub(crate) client_cpu_per_conn: Option<f64>,
    /// Time per batch of `window` connects, µs: median and slowest. A slow batch far above
    /// the median is a stall (the broker stopped, or the machine did), not a slow path.
    pub(crate) batch_p50: f64,
    pub(crate) batch_max: f64,
}

/// Opens `n` idle connections in batches of `window`.
pub(crate) fn run_conns(
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
