//! The MQTT client side: encoding the few packets the tool sends, connecting and
//! subscribing, and the subscriber and publisher tasks.

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use mqtt_proto::{
    Connect, FixedHeader, Packet, PacketId, Properties, ProtocolVersion, Publish, QoS, Status,
    Subscribe, Subscription, SubscriptionOptions, Subscriptions,
};
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub(crate) fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut v = vec![0u8; p.encoded_len(ProtocolVersion::V3_1_1).unwrap_or(0)];
    let _ = p.emit(ProtocolVersion::V3_1_1, &mut v);
    v
}

pub(crate) fn connect_bytes(id: &str, clean: bool) -> Vec<u8> {
    encode(&Packet::Connect(Connect {
        protocol: ProtocolVersion::V3_1_1,
        clean_start: clean,
        bridge: false,
        keep_alive: 600,
        properties: Properties::default(),
        client_id: id,
        will: None,
        username: None,
        password: None,
    }))
}

pub(crate) fn subscribe_bytes(filter: &str, qos: QoS) -> Vec<u8> {
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

pub(crate) fn publish_into(out: &mut Vec<u8>, topic: &str, payload: &[u8], qos: QoS, pid: u16) {
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
pub(crate) fn for_each_packet(buf: &[u8], mut f: impl FnMut(u8, &[u8])) -> usize {
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

pub(crate) async fn open(addr: SocketAddr, id: &str) -> anyhow::Result<TcpStream> {
    open_session(addr, id, true).await
}

/// [`open`] with Clean Session `clean` (false: a persistent session).
pub(crate) async fn open_session(
    addr: SocketAddr,
    id: &str,
    clean: bool,
) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect_addr(addr).await?;
    s.set_nodelay(true)?;
    let (r, _) = s.write_all(connect_bytes(id, clean)).await;
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

pub(crate) async fn subscribe(s: &mut TcpStream, filter: &str, qos: QoS) -> anyhow::Result<()> {
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

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// A subscriber: counts PUBLISH packets; acknowledges QoS 1 in batches.
pub(crate) async fn run_subscriber(
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
pub(crate) struct PubSpec {
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) payload: usize,
    pub(crate) rate: Option<u64>,
    /// Unacknowledged QoS 1/2 messages allowed.
    pub(crate) window: u64,
}

/// Acknowledgements counted by a publisher's reader, and the publisher waiting for room in
/// its window: woken by the next acknowledgement, not by a timer (whose granularity would
/// throttle small windows).
#[derive(Default)]
pub(crate) struct Acks {
    pub(crate) count: Cell<u64>,
    pub(crate) waiter: Cell<Option<Waker>>,
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

pub(crate) struct AcksChanged<'a>(&'a Acks, u64);

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

pub(crate) async fn run_publisher(
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
