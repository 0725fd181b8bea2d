//! One bridge's task: connects both sides (the local one in-process, the remote one over
//! TCP or TLS, addresses in order, with back-off), moves bytes between them and the
//! state machine, and reports its state.

use super::BridgeStatus;
use crate::broker::handle::PublishRequest;
use crate::broker::BrokerHandle;
use crate::client::driver::Link;
use crate::client::{BrokerUrl, Scheme};
use crate::config::{split_address, BridgeConfig};
use broker_core::bridge::{Bridge, BridgeEvent, Side};
use broker_core::client::{describe_refusal, Backoff, ClientEvent, ClientOptions};
use broker_core::mqtt_proto::{ProtocolVersion, QoS};
use broker_core::Instant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a remote connection may take (TCP, TLS); CONNACK is then up to keep alive.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon the in-process connection is opened again (a shard restarting, a takeover).
const LOCAL_RETRY_MS: u64 = 500;
/// The longest the loop sleeps before looking at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// Local QoS 1/2 messages the bridge takes before acknowledging any (MQTT 5 Receive
/// Maximum; the broker may allow fewer: `max_inflight_messages`).
const LOCAL_WINDOW: u16 = 1000;

/// The in-process connection to the owner shard.
struct Local {
    tx: async_channel::Sender<Vec<u8>>,
    rx: async_channel::Receiver<Vec<u8>>,
    partial: Vec<u8>,
}

struct Task {
    cfg: BridgeConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    handle: BrokerHandle,
    st: Arc<BridgeStatus>,
    epoch: std::time::Instant,
    bridge: Bridge,
    local: Option<Local>,
    remote: Option<Link>,
    /// When to open each side again (while it is down).
    local_due: u64,
    remote_due: u64,
    /// When the remote connection was opened (CONNACK must follow within keep alive).
    remote_since: u64,
    backoff: Backoff,
    next_address: usize,
}

fn options(cfg: &BridgeConfig) -> (ClientOptions, ClientOptions) {
    let local = ClientOptions {
        client_id: cfg.local_clientid.clone(),
        version: ProtocolVersion::V5,
        keep_alive: 0,
        clean_start: false,
        session_expiry: u32::MAX,
        receive_maximum: LOCAL_WINDOW,
        max_queued: 100_000,
        ..ClientOptions::default()
    };
    let remote = ClientOptions {
        client_id: cfg.remote_clientid.clone(),
        version: cfg.protocol,
        keep_alive: cfg.keepalive,
        clean_start: cfg.cleansession,
        session_expiry: if cfg.cleansession { 0 } else { u32::MAX },
        username: cfg.remote_username.clone(),
        password: cfg.remote_password.clone().map(String::into_bytes),
        max_queued: cfg.max_queued,
        bridge: cfg.try_private,
        ..ClientOptions::default()
    };
    (local, remote)
}

pub(super) async fn run(
    cfg: BridgeConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    handle: BrokerHandle,
    st: Arc<BridgeStatus>,
    stop: Arc<AtomicBool>,
) {
    let (local, remote) = options(&cfg);
    let (base, cap) = cfg.restart_timeout;
    let mut t = Task {
        bridge: Bridge::new(cfg.topics.clone(), local, remote),
        backoff: Backoff::new(base.saturating_mul(1000), cap.saturating_mul(1000)),
        cfg,
        tls,
        handle,
        st,
        epoch: std::time::Instant::now(),
        local: None,
        remote: None,
        local_due: 0,
        remote_due: 0,
        remote_since: 0,
        next_address: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        t.turn().await;
    }
    t.bridge
        .client(Side::Remote)
        .is_connected()
        .then(|| tracing::info!("bridge \"{}\": disconnecting", t.cfg.name));
    if let Some(mut link) = t.remote.take() {
        // DISCONNECT (normal) so the remote broker does not publish a will or wait.
        t.bridge.disconnect(Side::Remote);
        let mut out = Vec::new();
        let now = t.now();
        t.bridge.poll_transmit(Side::Remote, now, &mut out);
        if !out.is_empty() {
            let _ = monoio::time::timeout(Duration::from_secs(1), link.send(out)).await;
        }
    }
}

impl Task {
    fn now(&self) -> Instant {
        Instant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    fn ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn turn(&mut self) {
        self.open_sides().await;
        // A remote that accepted the connection but does not answer CONNECT (the client's
        // keep alive starts with CONNACK).
        let connack_wait = u64::from(self.cfg.keepalive) * 1000;
        if self.remote.is_some()
            && !self.bridge.client(Side::Remote).is_connected()
            && self.ms() > self.remote_since + connack_wait
        {
            let why = format!("no CONNACK within {} s", self.cfg.keepalive);
            self.lost(Side::Remote, &why);
        }
        self.on_events();
        self.flush().await;
        self.on_events();
        self.report();
        self.wait().await;
    }

    async fn open_sides(&mut self) {
        if self.local.is_none() && self.ms() >= self.local_due {
            match self.handle.connect_internal(&self.cfg.local_clientid) {
                Ok((tx, rx)) => {
                    self.local = Some(Local {
                        tx,
                        rx,
                        partial: Vec::new(),
                    });
                    let now = self.now();
                    self.bridge.handle_connected(Side::Local, now);
                }
                Err(_) => self.local_due = self.ms() + LOCAL_RETRY_MS,
            }
        }
        if self.remote.is_none() && self.ms() >= self.remote_due {
            let n = self.cfg.addresses.len().max(1);
            let address = self
                .cfg
                .addresses
                .get(self.next_address % n)
                .cloned()
                .unwrap_or_default();
            if let Ok(mut a) = self.st.address.lock() {
                a.clone_from(&address);
            }
            let tls = self.tls.is_some();
            let default_port = if tls { 8883 } else { 1883 };
            let opened = match split_address(&address, default_port) {
                Some((host, port)) => {
                    let url = BrokerUrl {
                        scheme: if tls { Scheme::Ssl } else { Scheme::Tcp },
                        host,
                        port,
                        username: None,
                        password: None,
                        path: String::new(),
                    };
                    match monoio::time::timeout(CONNECT_TIMEOUT, Link::open(&url, self.tls.clone()))
                        .await
                    {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err("timed out connecting".into()),
                    }
                }
                None => Err("not host:port".into()),
            };
            match opened {
                Ok(link) => {
                    self.remote = Some(link);
                    self.remote_since = self.ms();
                    let now = self.now();
                    self.bridge.handle_connected(Side::Remote, now);
                }
                Err(e) => self.remote_failed(&format!("{address}: {e}")),
            }
        }
    }

    /// A connection attempt failed or the connection was lost: the next address, after the
    /// back-off.
    fn remote_failed(&mut self, why: &str) {
        self.next_address = self.next_address.wrapping_add(1);
        let delay = Backoff::jittered(self.backoff.next_delay(), fastrand::u32(..));
        self.remote_due = self.ms() + u64::from(delay);
        self.st.failures.fetch_add(1, Ordering::Relaxed);
        self.st.set_error(why.to_owned());
        tracing::warn!(
            "bridge \"{}\": {why}; trying again in {delay} ms",
            self.cfg.name
        );
    }

    fn lost(&mut self, side: Side, why: &str) {
        let now = self.now();
        match side {
            Side::Local => {
                if self.local.take().is_none() {
                    return;
                }
                self.st.local_connected.store(false, Ordering::Relaxed);
                self.local_due = self.ms() + LOCAL_RETRY_MS;
                tracing::debug!(
                    "bridge \"{}\": local connection closed ({why})",
                    self.cfg.name
                );
            }
            Side::Remote => {
                if self.remote.take().is_none() {
                    return;
                }
                let was = self.st.connected.swap(false, Ordering::Relaxed);
                if was {
                    self.notify(false);
                    // Reconnect at the base delay after a connection that worked.
                    self.backoff.reset();
                }
                self.remote_failed(&format!("connection lost: {why}"));
            }
        }
        self.bridge.handle_disconnected(side, now);
    }

    fn on_events(&mut self) {
        while let Some(BridgeEvent { side, event }) = self.bridge.poll_event() {
            match event {
                ClientEvent::Connected { .. } if side == Side::Remote => {
                    self.backoff.reset();
                    self.st.connected.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "bridge \"{}\": connected to {}",
                        self.cfg.name,
                        self.st.address()
                    );
                    self.notify(true);
                }
                ClientEvent::Connected { .. } => {
                    self.st.local_connected.store(true, Ordering::Relaxed);
                }
                ClientEvent::ConnectRefused(code) => {
                    let why = format!("refused: {} (0x{:02X})", describe_refusal(code), code as u8);
                    if side == Side::Remote {
                        self.st.set_error(why.clone());
                    }
                    tracing::warn!("bridge \"{}\": {side:?} connection {why}", self.cfg.name);
                }
                ClientEvent::Subscribed { codes, .. } if codes.iter().any(|c| c.is_error()) => {
                    tracing::warn!(
                        "bridge \"{}\": the {side:?} broker refused a subscription: {codes:?}",
                        self.cfg.name
                    );
                }
                ClientEvent::ServerDisconnect(code) => tracing::warn!(
                    "bridge \"{}\": the {side:?} broker disconnected it: {code:?}",
                    self.cfg.name
                ),
                ClientEvent::CloseConnection => self.lost(side, "closed"),
                _ => {}
            }
        }
    }

    /// Mosquitto's `notifications`: `$SYS/broker/connection/<name>/state`, retained, 1
    /// while connected to the remote broker and 0 otherwise.
    fn notify(&self, up: bool) {
        let mut req = PublishRequest::new(
            format!("$SYS/broker/connection/{}/state", self.cfg.name),
            if up { "1" } else { "0" },
            QoS::AtMostOnce,
        );
        req.retain = true;
        let _ = self.handle.publish(req);
    }

    async fn flush(&mut self) {
        let now = self.now();
        if self.local.is_some() {
            let mut out = Vec::new();
            self.bridge.poll_transmit(Side::Local, now, &mut out);
            let sent = match (&self.local, out.is_empty()) {
                (Some(l), false) => l.tx.send(out).await.is_ok(),
                _ => true,
            };
            if !sent {
                self.lost(Side::Local, "the shard closed it");
            }
        }
        if self.remote.is_some() {
            let mut out = Vec::new();
            self.bridge.poll_transmit(Side::Remote, now, &mut out);
            if !out.is_empty() {
                // A remote that stops reading (a partition without a reset) must not hold
                // this task, and the local side with it, until TCP gives up.
                let limit = Duration::from_secs(u64::from(self.cfg.keepalive));
                let sent = match self.remote.as_mut() {
                    Some(link) => monoio::time::timeout(limit, link.send(out)).await,
                    None => Ok(Ok(true)),
                };
                match sent {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => self.lost(Side::Remote, "write failed"),
                    Ok(Err(e)) => self.lost(Side::Remote, &e.to_string()),
                    Err(_) => self.lost(Side::Remote, "the remote broker stopped reading"),
                }
            }
        }
    }

    fn report(&self) {
        let c = self.bridge.counters();
        let st = &self.st;
        st.forwarded_out.store(c.forwarded_out, Ordering::Relaxed);
        st.forwarded_in.store(c.forwarded_in, Ordering::Relaxed);
        st.dropped.store(c.dropped, Ordering::Relaxed);
        st.refused.store(c.refused, Ordering::Relaxed);
        st.queued.store(
            self.bridge.client(Side::Remote).pending() as u64,
            Ordering::Relaxed,
        );
        st.inflight.store(
            self.bridge.unacknowledged(Side::Local) as u64,
            Ordering::Relaxed,
        );
    }

    /// Waits for bytes from either side, a keep-alive deadline, a reconnection time or the
    /// stop poll, and hands what came to the state machine.
    async fn wait(&mut self) {
        let ms = self.ms();
        let mut wait = STOP_POLL;
        if let Some(d) = self.bridge.poll_timeout() {
            wait = wait.min(Duration::from_millis(d.as_millis().saturating_sub(ms)));
        }
        for (down, due) in [
            (self.local.is_none(), self.local_due),
            (self.remote.is_none(), self.remote_due),
        ] {
            if down {
                wait = wait.min(Duration::from_millis(due.saturating_sub(ms)));
            }
        }
        let local_rx = self.local.as_ref().map(|l| l.rx.clone());
        let remote_rx = self.remote.as_ref().map(Link::incoming);
        let from_local = async {
            match &local_rx {
                Some(rx) => rx.recv().await.ok(),
                None => std::future::pending().await,
            }
        };
        let from_remote = async {
            match &remote_rx {
                Some(rx) => rx.recv().await.unwrap_or_else(|_| Err("closed".into())),
                None => std::future::pending().await,
            }
        };
        monoio::select! {
            r = from_local => match r {
                Some(bytes) => self.local_bytes(&bytes),
                None => self.lost(Side::Local, "closed by the broker"),
            },
            r = from_remote => match r {
                Ok(bytes) => self.remote_bytes(&bytes),
                Err(e) => self.lost(Side::Remote, &e),
            },
            _ = monoio::time::sleep(wait) => {
                let now = self.now();
                self.bridge.handle_timeout(now);
            }
        }
    }

    fn local_bytes(&mut self, bytes: &[u8]) {
        let now = self.now();
        let Some(l) = self.local.as_mut() else {
            return;
        };
        l.partial.extend_from_slice(bytes);
        let n = self.bridge.handle_bytes(Side::Local, now, &l.partial);
        l.partial.drain(..n.min(l.partial.len()));
    }

    fn remote_bytes(&mut self, bytes: &[u8]) {
        let now = self.now();
        let Some(link) = self.remote.as_mut() else {
            return;
        };
        if let Err(e) = link.plaintext(bytes) {
            self.lost(Side::Remote, &e.to_string());
            return;
        }
        let partial = link.partial_mut();
        let n = self.bridge.handle_bytes(Side::Remote, now, partial);
        partial.drain(..n.min(partial.len()));
    }
}
