//! Drives `broker_core::client::Client` over a monoio TCP (or TLS) connection: a reader task
//! passes received bytes over a channel, the owner task feeds them to the state machine,
//! writes what it produces, keeps the keep-alive timer, and reconnects with exponential
//! back-off and jitter when the connection is lost.
//!
//! Layers, outermost first: TCP, TLS (`ssl://`, `wss://`), WebSocket (`ws://`, `wss://`;
//! MQTT 5.0 section 6: binary frames, subprotocol `mqtt`), MQTT.

use super::ClientConfig;
use crate::net::tls::{client_config, TlsLayer};
use crate::net::ws::{self, WsLayer};
use broker_core::client::{
    describe_refusal, refusal_hint, refusal_is_final, Backoff, Client, ClientError, ClientEvent,
    ClientOptions,
};
use broker_core::Instant;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use mqtt_proto::{QoS, ReasonCode, SubscriptionOptions};
use std::collections::VecDeque;
use std::fmt;
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why the client could not (or can no longer) talk to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFailure {
    /// Bad configuration (certificates, URL).
    Config(String),
    /// TCP connection failed.
    Connect(String),
    /// TLS failed; the message names the certificate problem.
    Tls(String),
    /// The broker refused the connection (CONNACK).
    Refused(ReasonCode),
    /// Nothing happened in time.
    Timeout(&'static str),
    /// The connection ended and reconnection is off.
    Closed(String),
}

impl fmt::Display for ClientFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(m) => write!(f, "configuration error: {m}"),
            Self::Connect(m) => write!(f, "cannot connect: {m}"),
            Self::Tls(m) => write!(f, "TLS failure: {m}"),
            Self::Refused(c) => {
                write!(
                    f,
                    "connection refused by the broker: {} (0x{:02X})",
                    describe_refusal(*c),
                    *c as u8
                )?;
                if let Some(hint) = refusal_hint(*c) {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            Self::Timeout(what) => write!(f, "timed out {what}"),
            Self::Closed(m) => write!(f, "connection lost: {m}"),
        }
    }
}

impl std::error::Error for ClientFailure {}

pub(crate) struct Link {
    w: OwnedWriteHalf<TcpStream>,
    rx: async_channel::Receiver<Result<Vec<u8>, String>>,
    tls: Option<TlsLayer>,
    /// WebSocket framing, once the HTTP upgrade is done.
    ws: Option<WsLayer>,
    fd: RawFd,
    /// Received plaintext not yet a whole packet.
    partial: Vec<u8>,
}

/// Largest WebSocket message accepted (the largest MQTT packet, 256 MiB).
const WS_MAX_MESSAGE: usize = 268_435_455 + 5;

impl Link {
    /// Connects to `u` (TCP, then TLS with `tls`, then the WebSocket upgrade for ws URLs).
    pub(crate) async fn open(
        u: &super::BrokerUrl,
        tls_cfg: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, ClientFailure> {
        let target = format!("{}:{}", u.host, u.port);
        let addrs: Vec<_> = (u.host.as_str(), u.port)
            .to_socket_addrs()
            .map_err(|e| ClientFailure::Connect(format!("{target}: {e}")))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_addr(a).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            ClientFailure::Connect(format!(
                "{target}: {}",
                last.map_or_else(|| "no address".to_owned(), |e| e.to_string())
            ))
        })?;
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let (r, w) = stream.into_split();
        let (tx, rx) = async_channel::bounded(64);
        monoio::spawn(read_task(r, tx));
        let tls = match &tls_cfg {
            Some(cfg) => Some(
                TlsLayer::client(cfg.clone(), &u.host)
                    .map_err(|e| ClientFailure::Tls(format!("{e:#}")))?,
            ),
            None => None,
        };
        let mut link = Link {
            w,
            rx,
            tls,
            ws: None,
            fd,
            partial: Vec::new(),
        };
        // TLS handshake.
        while let Some(t) = link.tls.as_mut() {
            let mut buf = Vec::new();
            t.pending(&mut buf)
                .map_err(|e| ClientFailure::Tls(e.to_string()))?;
            if !buf.is_empty() {
                let (res, _) = link.w.write_all(buf).await;
                res.map_err(|e| ClientFailure::Tls(format!("during the handshake: {e}")))?;
            }
            if !t.is_handshaking() {
                break;
            }
            let bytes = match link.rx.recv().await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(ClientFailure::Tls(format!("the broker closed the connection during the handshake ({e}); it may have refused our certificate"))),
                Err(_) => return Err(ClientFailure::Tls("handshake interrupted".into())),
            };
            let mut plain = Vec::new();
            if let Err(e) = t.feed(&bytes, &mut plain) {
                // Let the peer know why (the alert) before giving up.
                let mut alert = Vec::new();
                let _ = t.pending(&mut alert);
                if !alert.is_empty() {
                    let _ = link.w.write_all(alert).await;
                }
                return Err(ClientFailure::Tls(tls_message(&e)));
            }
        }
        if u.scheme.is_ws() {
            link.ws_upgrade(u).await?;
        }
        Ok(link)
    }

    /// The WebSocket opening handshake (RFC 6455 section 4.1) over the TCP or TLS link.
    async fn ws_upgrade(&mut self, u: &super::BrokerUrl) -> Result<(), ClientFailure> {
        let host = if u.host.contains(':') {
            format!("[{}]:{}", u.host, u.port)
        } else {
            format!("{}:{}", u.host, u.port)
        };
        let (req, key) = ws::client_request(&host, &u.path);
        let link = self;
        let data = link.tls_wrap(req)?;
        let (res, _) = link.w.write_all(data).await;
        res.map_err(|e| ClientFailure::Connect(format!("WebSocket upgrade request: {e}")))?;
        let mut buf = Vec::new();
        loop {
            match ws::client_response(&buf, &key) {
                Ok(Some(n)) => {
                    let rest = buf.split_off(n.min(buf.len()));
                    let mut layer = WsLayer::client(WS_MAX_MESSAGE);
                    layer
                        .feed(&rest, &mut link.partial)
                        .map_err(ClientFailure::Closed)?;
                    link.ws = Some(layer);
                    return Ok(());
                }
                Ok(None) if buf.len() > 16 * 1024 => {
                    return Err(ClientFailure::Connect(
                        "WebSocket upgrade: response headers too long".into(),
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(ClientFailure::Connect(format!("{}: {e}", u.path))),
            }
            match link.rx.recv().await {
                Ok(Ok(bytes)) => link.untls(&bytes, &mut buf)?,
                Ok(Err(e)) => {
                    return Err(ClientFailure::Connect(format!(
                        "the broker closed the connection during the WebSocket upgrade ({e}); \
                         is this a WebSocket listener?"
                    )))
                }
                Err(_) => return Err(ClientFailure::Closed("during the WebSocket upgrade".into())),
            }
        }
    }

    /// Bytes from the socket: their MQTT content is appended to `partial`.
    pub(crate) fn plaintext(&mut self, bytes: &[u8]) -> Result<(), ClientFailure> {
        if self.ws.is_some() {
            let mut plain = Vec::new();
            self.untls(bytes, &mut plain)?;
            if let Some(w) = self.ws.as_mut() {
                w.feed(&plain, &mut self.partial)
                    .map_err(ClientFailure::Closed)?;
            }
            Ok(())
        } else {
            let mut partial = std::mem::take(&mut self.partial);
            let r = self.untls(bytes, &mut partial);
            self.partial = partial;
            r
        }
    }

    /// Received MQTT bytes not yet consumed.
    pub(crate) fn partial_mut(&mut self) -> &mut Vec<u8> {
        &mut self.partial
    }

    /// What the reader task receives (`Err` once the connection ended).
    pub(crate) fn incoming(&self) -> async_channel::Receiver<Result<Vec<u8>, String>> {
        self.rx.clone()
    }

    /// Writes MQTT bytes (framed and encrypted as the link needs); false when it failed.
    pub(crate) async fn send(&mut self, mqtt: Vec<u8>) -> Result<bool, ClientFailure> {
        let data = self.wrap(mqtt)?;
        if data.is_empty() {
            return Ok(true);
        }
        let (res, _) = self.w.write_all(data).await;
        Ok(res.is_ok())
    }

    /// Bytes from the socket with TLS removed, appended to `out`.
    fn untls(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ClientFailure> {
        match self.tls.as_mut() {
            Some(t) => t
                .feed(bytes, out)
                .map_err(|e| ClientFailure::Tls(tls_message(&e))),
            None => {
                out.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Bytes for the socket: `data` under TLS when there is TLS.
    fn tls_wrap(&mut self, data: Vec<u8>) -> Result<Vec<u8>, ClientFailure> {
        match self.tls.as_mut() {
            Some(t) => {
                let mut enc = Vec::new();
                t.encrypt(std::iter::once(data.as_slice()), &mut enc)
                    .map_err(|e| ClientFailure::Tls(e.to_string()))?;
                Ok(enc)
            }
            None => Ok(data),
        }
    }

    /// MQTT bytes (possibly none) framed for the wire, plus any WebSocket control
    /// frames (pong, close) waiting.
    fn wrap(&mut self, mqtt: Vec<u8>) -> Result<Vec<u8>, ClientFailure> {
        let framed = match self.ws.as_mut() {
            Some(w) => {
                let mut f = Vec::new();
                w.encode(std::iter::once(mqtt.as_slice()), &mut f)
                    .map_err(|e| ClientFailure::Closed(format!("WebSocket: {e}")))?;
                f
            }
            None => mqtt,
        };
        if framed.is_empty() {
            return Ok(framed);
        }
        self.tls_wrap(framed)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // SAFETY: shutdown(2) on the descriptor the (still open) halves own; it wakes the
        // reader task blocked in read so it can exit.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }
}

async fn read_task(
    mut r: OwnedReadHalf<TcpStream>,
    tx: async_channel::Sender<Result<Vec<u8>, String>>,
) {
    loop {
        let (res, mut buf) = r.read(Vec::with_capacity(16 * 1024)).await;
        let msg = match res {
            Ok(0) => Err("closed by the broker".to_owned()),
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => Err(e.to_string()),
        };
        let end = msg.is_err();
        if tx.send(msg).await.is_err() || end {
            return;
        }
    }
}

fn tls_message(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => format!("certificate problem: {c:?}"),
        rustls::Error::AlertReceived(a) => {
            format!("the peer sent TLS alert {a:?} (often: it refused our certificate)")
        }
        other => other.to_string(),
    }
}

/// An MQTT client connection that reconnects by itself.
pub struct MqttClient {
    cfg: ClientConfig,
    sm: Client,
    epoch: std::time::Instant,
    tls_cfg: Option<Arc<rustls::ClientConfig>>,
    link: Option<Link>,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    backoff: Backoff,
}

impl MqttClient {
    /// Connects (TCP, TLS, CONNACK); every failure of this first attempt is returned.
    pub async fn connect(cfg: ClientConfig) -> Result<Self, ClientFailure> {
        let tls_cfg = if cfg.url.scheme.is_tls() {
            let ca = cfg.ca_cert.as_deref().map(Path::new);
            let pair = match (&cfg.client_cert, &cfg.client_key) {
                (Some(c), Some(k)) => Some((Path::new(c.as_str()), Path::new(k.as_str()))),
                (None, None) => None,
                _ => {
                    return Err(ClientFailure::Config(
                        "a client certificate needs its key (and the key its certificate)".into(),
                    ))
                }
            };
            Some(client_config(ca, pair).map_err(|e| ClientFailure::Config(format!("{e:#}")))?)
        } else {
            None
        };
        let opts = ClientOptions {
            client_id: cfg.client_id.clone(),
            version: cfg.protocol,
            keep_alive: cfg.keep_alive,
            clean_start: cfg.clean_session,
            session_expiry: if cfg.clean_session {
                0
            } else {
                cfg.session_expiry
            },
            username: cfg.url.username.clone(),
            password: cfg.url.password.clone().map(String::into_bytes),
            max_queued: cfg.max_queued,
            manual_ack: cfg.manual_ack,
            ..ClientOptions::default()
        };
        let mut c = Self {
            sm: Client::new(opts),
            cfg,
            epoch: std::time::Instant::now(),
            tls_cfg,
            link: None,
            out: Vec::new(),
            events: VecDeque::new(),
            backoff: Backoff::new(100, 30_000),
        };
        c.open().await?;
        Ok(c)
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The state machine (for options and counters).
    pub fn state(&self) -> &Client {
        &self.sm
    }

    async fn open(&mut self) -> Result<(), ClientFailure> {
        let timeout = self.cfg.connect_timeout;
        match monoio::time::timeout(timeout, self.open_inner()).await {
            Ok(r) => r,
            Err(_) => {
                self.link = None;
                Err(ClientFailure::Timeout("connecting to the broker"))
            }
        }
    }

    async fn open_inner(&mut self) -> Result<(), ClientFailure> {
        self.link = None;
        self.link = Some(Link::open(&self.cfg.url, self.tls_cfg.clone()).await?);
        let now = self.now();
        self.sm.handle_connected(now);
        self.flush().await?;
        // Wait for CONNACK.
        loop {
            while let Some(e) = self.sm.poll_event() {
                match e {
                    ClientEvent::Connected { .. } => {
                        self.events.push_back(e);
                        return Ok(());
                    }
                    ClientEvent::ConnectRefused(code) => {
                        self.link = None;
                        return Err(ClientFailure::Refused(code));
                    }
                    ClientEvent::CloseConnection => {
                        self.link = None;
                        return Err(ClientFailure::Closed("before CONNACK".into()));
                    }
                    other => self.events.push_back(other),
                }
            }
            let Some(link) = self.link.as_mut() else {
                return Err(ClientFailure::Closed("before CONNACK".into()));
            };
            match link.rx.recv().await {
                Ok(Ok(bytes)) => self.feed(&bytes)?,
                Ok(Err(e)) => {
                    let tls = self.tls_cfg.is_some();
                    self.link = None;
                    return Err(if tls {
                        ClientFailure::Tls(format!("the broker closed the connection before CONNACK ({e}); it may have refused our certificate"))
                    } else {
                        ClientFailure::Closed(format!("{e} before CONNACK"))
                    });
                }
                Err(_) => return Err(ClientFailure::Closed("before CONNACK".into())),
            }
            self.flush().await?;
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), ClientFailure> {
        let now = self.now();
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        link.plaintext(bytes)?;
        // The state machine takes whole packets; a partial one waits for more bytes.
        let n = self.sm.handle_bytes(now, &link.partial);
        link.partial.drain(..n.min(link.partial.len()));
        Ok(())
    }

    /// Writes whatever the state machine has queued.
    pub async fn flush(&mut self) -> Result<(), ClientFailure> {
        let now = self.now();
        self.sm.poll_transmit(now, &mut self.out);
        let ws_pending = self
            .link
            .as_ref()
            .and_then(|l| l.ws.as_ref())
            .is_some_and(WsLayer::wants_write);
        if self.out.is_empty() && !ws_pending {
            return Ok(());
        }
        let Some(link) = self.link.as_mut() else {
            self.out.clear();
            return Ok(());
        };
        let data = link.wrap(std::mem::take(&mut self.out))?;
        if data.is_empty() {
            return Ok(());
        }
        let (res, mut back) = link.w.write_all(data).await;
        back.clear();
        if self.out.capacity() == 0 {
            self.out = back;
        }
        if res.is_err() {
            self.lost_link();
        }
        Ok(())
    }

    fn lost_link(&mut self) {
        self.link = None;
        let now = self.now();
        self.sm.handle_disconnected(now);
    }

    /// Waits out the back-off, then reconnects until it works (or fails for good).
    async fn reconnect(&mut self) -> Result<(), ClientFailure> {
        loop {
            let delay = Backoff::jittered(self.backoff.next_delay(), fastrand::u32(..));
            tracing::info!(
                "reconnecting in {delay} ms (attempt {})",
                self.backoff.attempts()
            );
            monoio::time::sleep(Duration::from_millis(u64::from(delay))).await;
            match self.open().await {
                Ok(()) => {
                    self.backoff.reset();
                    return Ok(());
                }
                Err(ClientFailure::Refused(c)) if refusal_is_final(c) => {
                    return Err(ClientFailure::Refused(c))
                }
                Err(e) => {
                    self.link = None;
                    tracing::warn!("{e}");
                }
            }
        }
    }

    /// The next event. Drives reading, writing, keep alive and reconnection.
    pub async fn next(&mut self) -> Result<ClientEvent, ClientFailure> {
        loop {
            while let Some(e) = self.sm.poll_event() {
                self.events.push_back(e);
            }
            if !self.events.is_empty() {
                // Write what the state machine queued before handing out events: a QoS 0
                // `Published` is emitted when the PUBLISH is queued, and a caller that
                // then waits on another client would otherwise leave it unsent.
                self.flush().await?;
            }
            while let Some(e) = self.events.pop_front() {
                match e {
                    ClientEvent::CloseConnection => {
                        self.flush().await?;
                        self.lost_link();
                        if !self.cfg.reconnect {
                            return Err(ClientFailure::Closed("closed".into()));
                        }
                    }
                    ClientEvent::ServerDisconnect(code) => {
                        tracing::warn!("the broker disconnected us: {code}");
                        return Ok(ClientEvent::ServerDisconnect(code));
                    }
                    other => return Ok(other),
                }
            }
            self.flush().await?;
            if self.link.is_none() {
                if !self.cfg.reconnect {
                    return Err(ClientFailure::Closed("connection lost".into()));
                }
                self.reconnect().await?;
                continue;
            }
            let deadline = self.sm.poll_timeout();
            let now = self.now();
            let wait = deadline.map_or(Duration::from_secs(3600), |d| d.saturating_since(now));
            let Some(link) = self.link.as_mut() else {
                continue;
            };
            let rx = link.rx.clone();
            monoio::select! {
                r = rx.recv() => match r {
                    Ok(Ok(bytes)) => {
                        if let Err(e) = self.feed(&bytes) {
                            tracing::warn!("{e}");
                            self.lost_link();
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!("connection lost: {e}");
                        self.lost_link();
                        if !self.cfg.reconnect {
                            return Err(ClientFailure::Closed(e));
                        }
                    }
                    Err(_) => self.lost_link(),
                },
                _ = monoio::time::sleep(wait) => {
                    let now = self.now();
                    self.sm.handle_timeout(now);
                }
            }
        }
    }

    /// Queues a publication (sent by `next`/`flush`).
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<u64, ClientError> {
        let now = self.now();
        self.sm.publish(now, topic, payload, qos, retain, &[])
    }

    /// Subscribes to filters at one QoS.
    pub fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<u64, ClientError> {
        let subs: Vec<(String, SubscriptionOptions)> = filters
            .iter()
            .map(|f| (f.clone(), SubscriptionOptions::qos(qos)))
            .collect();
        self.sm.subscribe(&subs)
    }

    /// With `manual_ack`: acknowledge a received message.
    pub fn ack(&mut self, packet_id: u16) {
        self.sm.ack(packet_id);
    }

    /// Sends DISCONNECT and closes.
    pub async fn disconnect(mut self) {
        self.sm.disconnect(ReasonCode::Success);
        let _ = self.flush().await;
        self.link = None;
    }
}
