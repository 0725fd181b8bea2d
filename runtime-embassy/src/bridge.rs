//! The uplink bridge: a client of the upstream broker, joined to the local broker through a
//! session of its own inside the local broker.
//!
//! How the bridge sees local messages: it is a client of the local broker like any other,
//! over an in-memory connection (`handle_bytes`/`poll_transmit` without a socket) driven by
//! a second `broker_core::client::Client`. That session subscribes to `up/#` (No Local,
//! Retain As Published, QoS 1) and acknowledges a message only once the upstream broker has
//! acknowledged its copy, so:
//! - while the uplink is down, QoS 1 messages wait in the bridge's session queue inside the
//!   local broker, bounded by `max_queued_messages` / `max_queued_bytes`, plus at most
//!   `window` held here; what does not fit is counted (`on_dropped` → `up_overflow`);
//! - after a reconnection (exponential back-off) they flow again; messages in flight when
//!   the link went down are resent by the upstream client (DUP, or again if the upstream
//!   lost the session), so none is lost;
//! - messages coming down are published into the local broker through the same session and
//!   acknowledged upstream only once the local broker took them.
//!
//! Hooks would have seen messages too, but only as they arrive: the session gives the
//! bounded queue, flow control, retained handling and drop accounting of the core for free.

use crate::config::{
    BACKOFF_MAX_MS, BACKOFF_MIN_MS, BRIDGE_CLIENT_ID, BRIDGE_LOCAL_BUF, DOWN_LOCAL, DOWN_REMOTE,
    LISTENER_BRIDGE, MAX_FRAME_OUT, UPLINK_ADDRESS, UPLINK_CLIENT_ID, UPLINK_KEEP_ALIVE,
    UPLINK_MAX_PACKET_SIZE, UPLINK_PORT, UPLINK_PROTOCOL, UPLINK_SESSION_EXPIRY, UPLINK_SOCKET_RX,
    UPLINK_SOCKET_TX, UPLINK_WINDOW, UP_LOCAL, UP_REMOTE,
};
use crate::guard::{bump, COUNTERS};
use crate::log::log;
use crate::shell::{now, to_embassy, Shell, BRIDGE_SLOT};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use broker_core::client::{
    refusal_is_final, Backoff, Client, ClientEvent, ClientOptions, Received,
};
use broker_core::{ConnId, PeerInfo};
use embassy_futures::select::{select, select3, Either, Either3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_time::{with_timeout, Duration, Timer};
use mqtt_proto::{ProtocolVersion, QoS, SubscriptionOptions};

/// How long a TCP connect to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upstream socket idle timeout (the MQTT keep alive pings well within it).
const UPLINK_IDLE: Duration = Duration::from_secs(UPLINK_KEEP_ALIVE as u64 * 2 + 10);

/// Memory of the bridge: the upstream socket's buffers and the linear buffers both clients
/// parse packets from.
#[derive(Debug)]
pub struct BridgeBuffers {
    rx: [u8; UPLINK_SOCKET_RX],
    tx: [u8; UPLINK_SOCKET_TX],
    up_packet: [u8; UPLINK_MAX_PACKET_SIZE],
    local_packet: [u8; BRIDGE_LOCAL_BUF],
}

impl BridgeBuffers {
    /// Zeroed buffers (for a `static`).
    pub const fn new() -> Self {
        Self {
            rx: [0; UPLINK_SOCKET_RX],
            tx: [0; UPLINK_SOCKET_TX],
            up_packet: [0; UPLINK_MAX_PACKET_SIZE],
            local_packet: [0; BRIDGE_LOCAL_BUF],
        }
    }
}

impl Default for BridgeBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// `topic` under `from` (the root itself or `from/...`) rewritten under `to`.
pub fn map_topic(topic: &str, from: &str, to: &str) -> Option<String> {
    let rest = mqtt_proto::topic::below(topic, from)?;
    let mut out = String::with_capacity(to.len() + rest.len());
    out.push_str(to);
    out.push_str(rest);
    Some(out)
}

/// `root/#`.
fn filter(root: &str) -> String {
    let mut f = String::with_capacity(root.len() + 2);
    f.push_str(root);
    f.push_str("/#");
    f
}

fn version() -> ProtocolVersion {
    if UPLINK_PROTOCOL == 5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    }
}

/// The bridge's state (lives in its task).
struct Bridge {
    shell: &'static Shell,
    /// Client of the local broker, over the in-memory connection `local_conn`.
    local: Client,
    local_conn: Option<ConnId>,
    /// Bytes from the local client not yet taken by the broker.
    local_out: Vec<u8>,
    /// Bytes from the broker not yet taken by the local client.
    local_in: &'static mut [u8; BRIDGE_LOCAL_BUF],
    local_fill: usize,
    /// Client of the upstream broker.
    up: Client,
    up_out: Vec<u8>,
    /// Local QoS 1 messages waiting for room in the upstream window (or for the uplink).
    held: VecDeque<Received>,
    /// Upstream publish token → local packet id to acknowledge when it completes.
    up_acks: heapless::Vec<(u64, u16), UPLINK_WINDOW>,
    /// Local publish token → upstream packet id to acknowledge when it completes.
    down_acks: heapless::Vec<(u64, u16), UPLINK_WINDOW>,
}

impl Bridge {
    fn new(shell: &'static Shell, local_in: &'static mut [u8; BRIDGE_LOCAL_BUF]) -> Self {
        let window = u16::try_from(UPLINK_WINDOW).unwrap_or(u16::MAX);
        let local = Client::new(ClientOptions {
            client_id: BRIDGE_CLIENT_ID.into(),
            version: ProtocolVersion::V5,
            keep_alive: 0,
            clean_start: true,
            // Kept when its connection closes, so that the reconnect (Clean Start, which
            // discards it) replaces it instead of needing a new place under `max_sessions`.
            session_expiry: u32::MAX,
            // The broker sends at most `window` unacknowledged messages; the rest wait in
            // the bridge's session queue.
            receive_maximum: window,
            maximum_packet_size: Some(MAX_FRAME_OUT as u32),
            max_queued: UPLINK_WINDOW + 1,
            manual_ack: true,
            ..ClientOptions::default()
        });
        let up = Client::new(ClientOptions {
            client_id: UPLINK_CLIENT_ID.into(),
            version: version(),
            keep_alive: UPLINK_KEEP_ALIVE,
            clean_start: false,
            session_expiry: UPLINK_SESSION_EXPIRY,
            receive_maximum: window,
            maximum_packet_size: Some(UPLINK_MAX_PACKET_SIZE as u32),
            max_queued: UPLINK_WINDOW + 1,
            manual_ack: true,
            ..ClientOptions::default()
        });
        let mut b = Self {
            shell,
            local,
            local_conn: None,
            local_out: Vec::new(),
            local_in,
            local_fill: 0,
            up,
            up_out: Vec::new(),
            held: VecDeque::new(),
            up_acks: heapless::Vec::new(),
            down_acks: heapless::Vec::new(),
        };
        let up_filter = [(
            filter(UP_LOCAL),
            SubscriptionOptions {
                no_local: true,
                retain_as_published: true,
                ..SubscriptionOptions::qos(QoS::AtLeastOnce)
            },
        )];
        // Recorded now, sent after each CONNACK without a session.
        let _ = b.local.subscribe(&up_filter);
        let down_filter = [(
            filter(DOWN_REMOTE),
            SubscriptionOptions::qos(QoS::AtLeastOnce),
        )];
        let _ = b.up.subscribe(&down_filter);
        b
    }

    /// Opens (or reopens) the in-memory connection to the local broker.
    fn open_local(&mut self) {
        let slot = &self.shell.slots[BRIDGE_SLOT];
        if let Some(old) = self.local_conn.take() {
            slot.detach();
            self.shell.closed(old);
        }
        let peer = PeerInfo {
            addr: None,
            cert_identity: None,
            listener: LISTENER_BRIDGE,
        };
        match self.shell.accept(peer) {
            Some(conn) => {
                slot.attach(conn);
                self.local_conn = Some(conn);
                self.local_out.clear();
                self.local_fill = 0;
                self.local.handle_disconnected(now());
                self.local.handle_connected(now());
                // Messages held for the old session are resent by the broker to the new one
                // only if it kept the session; it did not (clean start): forget them.
                self.held.clear();
                self.up_acks.clear();
            }
            None => log!("bridge: the local broker refused the bridge's connection"),
        }
    }

    /// Moves bytes between the local client and the broker until neither side has more,
    /// and acts on what the local client reports.
    fn pump_local(&mut self) {
        let Some(conn) = self.local_conn else {
            return;
        };
        let slot = &self.shell.slots[BRIDGE_SLOT];
        for _ in 0..64 {
            let mut progress = false;
            self.local.poll_transmit(now(), &mut self.local_out);
            if !self.local_out.is_empty() {
                let out = &self.local_out;
                let used = self.shell.input(conn, out);
                self.local_out.drain(..used.min(self.local_out.len()));
                progress |= used > 0;
            }
            let free = self.local_in.len() - self.local_fill;
            if slot.output.get() && free > MAX_FRAME_OUT {
                slot.output.set(false);
                let buf = &mut *self.local_in;
                let mut fill = self.local_fill;
                let more = self
                    .shell
                    .transmit(conn, free - MAX_FRAME_OUT, &mut |chunk| {
                        let dst = buf.get_mut(fill..fill + chunk.len()).ok_or(())?;
                        dst.copy_from_slice(chunk);
                        fill += chunk.len();
                        Ok(())
                    });
                progress |= fill > self.local_fill;
                self.local_fill = fill;
                if !matches!(more, Ok(false)) {
                    slot.output.set(true);
                }
            }
            if self.local_fill > 0 {
                let used = self
                    .local
                    .handle_bytes(now(), &self.local_in[..self.local_fill]);
                let used = used.min(self.local_fill);
                self.local_in.copy_within(used..self.local_fill, 0);
                self.local_fill -= used;
                progress |= used > 0;
            }
            while let Some(ev) = self.local.poll_event() {
                progress = true;
                self.on_local_event(ev);
            }
            if slot.close.get() {
                log!("bridge: local session closed by the broker; reopening");
                self.open_local();
                return;
            }
            if !progress {
                break;
            }
        }
    }

    fn on_local_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Message(m) => self.forward_up(m),
            ClientEvent::Published { token, reason } => {
                if let Some(i) = self.down_acks.iter().position(|(t, _)| *t == token) {
                    let (_, up_pid) = self.down_acks.swap_remove(i);
                    self.up.ack(up_pid);
                }
                if reason.is_error() {
                    bump(&COUNTERS.down_dropped);
                } else {
                    bump(&COUNTERS.down_forwarded);
                }
            }
            ClientEvent::Subscribed { codes, .. } if codes.iter().any(|c| c.is_error()) => {
                log!("bridge: local subscription refused");
            }
            ClientEvent::ConnectRefused(code) => {
                log!("bridge: local CONNECT refused: 0x{:02x}", code as u8)
            }
            ClientEvent::CloseConnection | ClientEvent::ServerDisconnect(_) => {
                // Handled through the broker's Close event on the slot.
            }
            _ => {}
        }
    }

    /// A local message on `up/...`: upstream now if the window allows, else held (QoS 1)
    /// or dropped and counted (QoS 0, uplink down).
    fn forward_up(&mut self, m: Received) {
        if m.qos == QoS::AtMostOnce {
            if self.up.is_connected() {
                self.send_up(m);
            } else {
                bump(&COUNTERS.up_dropped_qos0);
            }
            return;
        }
        if self.held.is_empty() && self.up_window_open() {
            self.send_up(m);
        } else if self.held.len() < UPLINK_WINDOW {
            self.held.push_back(m);
        } else {
            // Cannot happen while the local session's Receive Maximum is the window; if it
            // does, the message is counted and acknowledged rather than blocking the queue.
            bump(&COUNTERS.up_overflow);
            if let Some(pid) = m.packet_id {
                self.local.ack(pid);
            }
        }
    }

    fn up_window_open(&self) -> bool {
        self.up.is_connected() && self.up.pending() < UPLINK_WINDOW && !self.up_acks.is_full()
    }

    fn send_up(&mut self, m: Received) {
        let local_pid = m.packet_id;
        let Some(topic) = map_topic(&m.topic, UP_LOCAL, UP_REMOTE) else {
            if let Some(pid) = local_pid {
                self.local.ack(pid);
            }
            return;
        };
        let qos = m.qos.min(QoS::AtLeastOnce);
        match self
            .up
            .publish(now(), &topic, &m.payload, qos, m.retain, &m.user_properties)
        {
            Ok(token) => {
                if let Some(pid) = local_pid {
                    if self.up_acks.push((token, pid)).is_err() {
                        // `up_window_open` checked the room.
                        self.local.ack(pid);
                    }
                }
            }
            Err(e) => {
                let _ = e;
                log!("bridge: cannot forward {}", m.topic);
                bump(&COUNTERS.up_rejected);
                if let Some(pid) = local_pid {
                    self.local.ack(pid);
                }
            }
        }
    }

    fn release_held(&mut self) {
        while self.up_window_open() {
            let Some(m) = self.held.pop_front() else {
                break;
            };
            self.send_up(m);
        }
    }

    /// Acts on the upstream client's events; returns false when the connection must close.
    fn drain_up_events(&mut self, backoff: &mut Backoff) -> bool {
        let mut open = true;
        while let Some(ev) = self.up.poll_event() {
            match ev {
                ClientEvent::Connected {
                    session_present, ..
                } => {
                    bump(&COUNTERS.uplink_connects);
                    backoff.reset();
                    log!(
                        "bridge: uplink connected (session present: {})",
                        session_present
                    );
                }
                ClientEvent::ConnectRefused(code) => {
                    log!("bridge: uplink refused: 0x{:02x}", code as u8);
                    // Unattended, it goes on trying, but slowly: retrying cannot fix this.
                    if refusal_is_final(code) {
                        backoff.give_up_hurrying();
                    }
                }
                ClientEvent::Published { token, reason } => {
                    if let Some(i) = self.up_acks.iter().position(|(t, _)| *t == token) {
                        let (_, pid) = self.up_acks.swap_remove(i);
                        self.local.ack(pid);
                    }
                    if reason.is_error() {
                        bump(&COUNTERS.up_rejected);
                    } else {
                        bump(&COUNTERS.up_forwarded);
                    }
                }
                ClientEvent::Message(m) => self.forward_down(m),
                ClientEvent::Subscribed { codes, .. } if codes.iter().any(|c| c.is_error()) => {
                    log!("bridge: upstream subscription refused");
                }
                ClientEvent::ServerDisconnect(code) => {
                    log!("bridge: upstream disconnected us: 0x{:02x}", code as u8);
                }
                ClientEvent::CloseConnection => open = false,
                _ => {}
            }
        }
        self.release_held();
        open
    }

    /// An upstream message under `down_remote`: published locally under `down_local`.
    fn forward_down(&mut self, m: Received) {
        let up_pid = m.packet_id;
        let topic = map_topic(&m.topic, DOWN_REMOTE, DOWN_LOCAL);
        let result = match &topic {
            Some(t) => self
                .local
                .publish(now(), t, &m.payload, m.qos, m.retain, &m.user_properties)
                .ok(),
            None => None,
        };
        match (result, up_pid) {
            (Some(token), Some(pid)) => {
                if self.down_acks.push((token, pid)).is_err() {
                    self.up.ack(pid);
                }
            }
            (Some(_), None) => {}
            (None, pid) => {
                bump(&COUNTERS.down_dropped);
                if let Some(pid) = pid {
                    self.up.ack(pid);
                }
            }
        }
    }
}

/// Runs the bridge for ever: the local session first, then the uplink with exponential
/// back-off between attempts.
#[embassy_executor::task]
pub async fn bridge_task(
    shell: &'static Shell,
    stack: Stack<'static>,
    bufs: &'static mut BridgeBuffers,
) -> ! {
    let BridgeBuffers {
        rx,
        tx,
        up_packet,
        local_packet,
    } = bufs;
    let mut bridge = Bridge::new(shell, local_packet);
    bridge.open_local();
    bridge.pump_local();
    let [a, b, c, d] = UPLINK_ADDRESS;
    let remote = IpEndpoint::new(Ipv4Address::new(a, b, c, d).into(), UPLINK_PORT);
    // Constants from gateway.toml (u64 there); delays of over 49 days are not meant.
    const _: () = assert!(
        BACKOFF_MAX_MS <= u32::MAX as u64,
        "uplink.backoff_max_ms too large"
    );
    let mut backoff = Backoff::new(BACKOFF_MIN_MS as u32, BACKOFF_MAX_MS as u32);
    loop {
        {
            let mut sock = TcpSocket::new(stack, &mut rx[..], &mut tx[..]);
            sock.set_timeout(Some(UPLINK_IDLE));
            let connected = {
                let connect = with_timeout(CONNECT_TIMEOUT, sock.connect(remote));
                matches!(bridge.pumping(connect).await, Ok(Ok(())))
            };
            if connected {
                bridge
                    .session(&mut sock, &mut up_packet[..], &mut backoff)
                    .await;
            } else {
                bump(&COUNTERS.uplink_failures);
            }
            sock.abort();
            let _ = with_timeout(Duration::from_secs(1), sock.flush()).await;
        }
        let delay = backoff.next_delay();
        log!("bridge: uplink down, retrying in {} ms", delay);
        bridge.pumping(Timer::after_millis(u64::from(delay))).await;
    }
}

impl Bridge {
    /// Awaits `fut` while keeping the local side moving.
    async fn pumping<F: core::future::Future>(&mut self, fut: F) -> F::Output {
        let mut fut = core::pin::pin!(fut);
        let shell: &'static Shell = self.shell;
        loop {
            let wake = &shell.slots[BRIDGE_SLOT].wake;
            match select(fut.as_mut(), wake.wait()).await {
                Either::First(out) => return out,
                Either::Second(()) => self.pump_local(),
            }
        }
    }

    /// One upstream MQTT connection, until it fails.
    async fn session(
        &mut self,
        sock: &mut TcpSocket<'_>,
        packet: &mut [u8],
        backoff: &mut Backoff,
    ) {
        self.up.handle_connected(now());
        let mut fill = 0usize;
        loop {
            self.pump_local();
            if !self.drain_up_events(backoff) {
                break;
            }
            // Messages coming down were handed to the local client: push them into the
            // broker now, not at the next wake-up.
            self.pump_local();
            self.up.poll_transmit(now(), &mut self.up_out);
            if !self.up_out.is_empty() {
                let ok = write_all(sock, &self.up_out).await;
                self.up_out.clear();
                if self.up_out.capacity() > 2 * UPLINK_MAX_PACKET_SIZE {
                    self.up_out = Vec::new();
                }
                if !ok {
                    break;
                }
                continue;
            }
            let deadline = self.up.poll_timeout();
            let room = fill < packet.len();
            let read = async {
                if room {
                    sock.read(&mut packet[fill..]).await
                } else {
                    core::future::pending().await
                }
            };
            let timer = async {
                match deadline {
                    Some(at) => Timer::at(to_embassy(at)).await,
                    None => core::future::pending().await,
                }
            };
            let shell: &'static Shell = self.shell;
            let wake = &shell.slots[BRIDGE_SLOT].wake;
            match select3(read, wake.wait(), timer).await {
                Either3::First(Ok(0)) | Either3::First(Err(_)) => break,
                Either3::First(Ok(n)) => {
                    fill += n;
                    let used = self.up.handle_bytes(now(), &packet[..fill]).min(fill);
                    packet.copy_within(used..fill, 0);
                    fill -= used;
                }
                Either3::Second(()) => {}
                Either3::Third(()) => self.up.handle_timeout(now()),
            }
        }
        self.up.handle_disconnected(now());
        // Held messages stay held; those in flight stay in the client and are resent.
        let _ = self.drain_up_events(backoff);
    }
}

async fn write_all(sock: &mut TcpSocket<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match sock.write(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::map_topic;

    #[test]
    fn topics_map_under_their_root_only() {
        assert_eq!(
            map_topic("up/a/b", "up", "gw/up").as_deref(),
            Some("gw/up/a/b")
        );
        assert_eq!(map_topic("up", "up", "gw/up").as_deref(), Some("gw/up"));
        assert_eq!(map_topic("upx/a", "up", "gw/up"), None);
        assert_eq!(map_topic("down/a", "up", "gw/up"), None);
    }
}
