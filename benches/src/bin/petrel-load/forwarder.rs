//! `forwarder`: the loopback reference for `pairs` at QoS 0 (issue 23). A plain TCP relay
//! in this process, on `--threads` threads like the broker's shards, copies each
//! publisher's bytes to its subscriber's socket without reading them; the publishers
//! write the same PUBLISH frames as in `pairs` (64 B payload by default), the subscribers
//! count whole frames. What it moves per second is the most any broker could forward
//! through the same sockets on this machine.

use crate::cli::Args;
use crate::client::publish_into;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use mqtt_proto::QoS;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAIRS: usize = 100;
/// Frames per publisher write (the load tool's publishers batch the same way).
const FRAMES_PER_WRITE: usize = 64;

/// Messages per second the relay delivered.
pub(crate) fn run_forwarder(a: &Args) -> anyhow::Result<(f64, String)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    // The relay: accept every socket (each says which pair and side it is), then hand the
    // pairs to the relay threads.
    let threads = a.threads.max(1);
    let relay_stop = stop.clone();
    let relay = std::thread::spawn(move || relay_main(listener, threads, relay_stop));
    let frame_len = {
        let mut f = Vec::new();
        publish_into(
            &mut f,
            "load/pair/00",
            &vec![0u8; a.payload],
            QoS::AtMostOnce,
            0,
        );
        f.len()
    };
    let received = Arc::new(AtomicU64::new(0));
    let secs = a.seconds;
    let payload = a.payload;
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()?;
    let (count, elapsed) = rt.block_on({
        let received = received.clone();
        let stop = stop.clone();
        async move {
            let mut tasks = Vec::new();
            for i in 0..PAIRS {
                let sub = hello(addr, i, 1).await?;
                let publ = hello(addr, i, 0).await?;
                tasks.push(monoio::spawn(subscriber(
                    sub,
                    frame_len,
                    received.clone(),
                    stop.clone(),
                )));
                let topic = format!("load/pair/{:02}", i % 100);
                tasks.push(monoio::spawn(publisher(publ, topic, payload, stop.clone())));
            }
            monoio::time::sleep(Duration::from_millis(500)).await;
            let start = received.load(Ordering::Relaxed);
            let t0 = Instant::now();
            monoio::time::sleep(Duration::from_secs(secs)).await;
            let count = received.load(Ordering::Relaxed) - start;
            let elapsed = t0.elapsed();
            stop.store(true, Ordering::Relaxed);
            anyhow::Ok((count, elapsed))
        }
    })?;
    stop.store(true, Ordering::Relaxed);
    let _ = relay.join();
    let rate = count as f64 / elapsed.as_secs_f64();
    Ok((
        rate,
        format!("{rate:.0} msg/s relayed ({frame_len} B frames, {PAIRS} pairs, {threads} relay threads)"),
    ))
}

/// Connects and says which pair and side (0 publisher, 1 subscriber) this socket is.
async fn hello(addr: SocketAddr, pair: usize, side: u8) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    let _ = s.set_nodelay(true);
    let id = u16::try_from(pair)?.to_be_bytes();
    let (r, _) = s.write_all(vec![id[0], id[1], side]).await;
    r?;
    Ok(s)
}

async fn publisher(mut s: TcpStream, topic: String, payload: usize, stop: Arc<AtomicBool>) {
    let mut batch = Vec::new();
    for _ in 0..FRAMES_PER_WRITE {
        publish_into(&mut batch, &topic, &vec![0u8; payload], QoS::AtMostOnce, 0);
    }
    let mut buf = batch.clone();
    while !stop.load(Ordering::Relaxed) {
        let (r, b) = s.write_all(buf).await;
        buf = b;
        if r.is_err() {
            return;
        }
    }
}

async fn subscriber(
    mut s: TcpStream,
    frame_len: usize,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut carry = 0usize;
    while !stop.load(Ordering::Relaxed) {
        buf.clear();
        let (r, b) = s.read(buf).await;
        buf = b;
        match r {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let total = carry + n;
                received.fetch_add((total / frame_len) as u64, Ordering::Relaxed);
                carry = total % frame_len;
            }
        }
    }
}

fn relay_main(listener: TcpListener, threads: usize, stop: Arc<AtomicBool>) {
    use std::io::Read;
    let mut halves: Vec<[Option<std::net::TcpStream>; 2]> =
        (0..PAIRS).map(|_| [None, None]).collect();
    let mut pairs: Vec<(std::net::TcpStream, std::net::TcpStream)> = Vec::new();
    let _ = listener.set_nonblocking(false);
    while pairs.len() < PAIRS {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut id = [0u8; 3];
        if s.read_exact(&mut id).is_err() {
            continue;
        }
        let pair = usize::from(u16::from_be_bytes([id[0], id[1]]));
        let Some(slot) = halves.get_mut(pair) else {
            continue;
        };
        slot[usize::from(id[2] & 1)] = Some(s);
        if let [Some(_), Some(_)] = slot {
            if let [Some(p), Some(sub)] = std::mem::take(slot) {
                pairs.push((p, sub));
            }
        }
    }
    let mut per_thread: Vec<Vec<(std::net::TcpStream, std::net::TcpStream)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (i, p) in pairs.into_iter().enumerate() {
        if let Some(v) = per_thread.get_mut(i % threads) {
            v.push(p);
        }
    }
    let workers: Vec<_> = per_thread
        .into_iter()
        .map(|mine| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build();
                let Ok(mut rt) = rt else { return };
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for (p, s) in mine {
                        let (Ok(p), Ok(s)) = (TcpStream::from_std(p), TcpStream::from_std(s))
                        else {
                            continue;
                        };
                        tasks.push(monoio::spawn(copy(p, s)));
                    }
                    while !stop.load(Ordering::Relaxed) {
                        monoio::time::sleep(Duration::from_millis(50)).await;
                    }
                    drop(tasks);
                });
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

/// Publisher to subscriber, as the bytes come.
async fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let (r, b) = from.read(buf).await;
        buf = b;
        match r {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let (r, b) = to.write_all(buf).await;
                buf = b;
                if r.is_err() {
                    return;
                }
            }
        }
    }
}
