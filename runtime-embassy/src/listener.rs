//! The MQTT port: one task per client socket feeding the broker, and one small socket that
//! answers a client beyond the last slot with a refusing CONNACK.

use crate::config::{
    CLIENTS, IDLE_TIMEOUT_SECS, LISTENER_TCP, MAX_PACKET_SIZE, PORT, SOCKET_RX, SOCKET_TX,
    TX_HEADROOM,
};
use crate::guard::{self, bump, COUNTERS};
use crate::log::log;
use crate::shell::{Shell, Slot};
use broker_core::admission::{self, Level};
use broker_core::{ConnId, PeerInfo};
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::task::Poll;
use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, Stack};
use embassy_time::{with_timeout, Duration, Timer};
use mqtt_proto::ReasonCode;

/// TCP keep-alive probes, so that live but quiet peers survive the idle timeout and
/// vanished ones (half-open connections) are reset.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How long a closing socket may take to get its last bytes and FIN out.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Buffers of the socket that turns away a client beyond the last slot.
const REFUSE_BUF: usize = 128;
/// How long that socket waits for the start of the CONNECT.
const REFUSE_WAIT: Duration = Duration::from_secs(3);

/// Memory of one client slot: the TCP ring buffers and the linear buffer complete MQTT
/// packets are parsed from (a packet may wrap around the TCP ring).
#[derive(Debug)]
pub struct SlotBuffers {
    rx: [u8; SOCKET_RX],
    tx: [u8; SOCKET_TX],
    packet: [u8; MAX_PACKET_SIZE],
}

impl SlotBuffers {
    /// Zeroed buffers (for a `static`).
    pub const fn new() -> Self {
        Self {
            rx: [0; SOCKET_RX],
            tx: [0; SOCKET_TX],
            packet: [0; MAX_PACKET_SIZE],
        }
    }
}

impl Default for SlotBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves MQTT clients on one socket, one after the other, for ever.
#[embassy_executor::task(pool_size = CLIENTS)]
pub async fn client_task(
    shell: &'static Shell,
    stack: Stack<'static>,
    index: usize,
    bufs: &'static mut SlotBuffers,
) -> ! {
    let Some(slot) = shell.slots.get(index) else {
        panic!("client slot {index} out of range");
    };
    let SlotBuffers { rx, tx, packet } = bufs;
    loop {
        let mut sock = TcpSocket::new(stack, rx, tx);
        sock.set_timeout(Some(Duration::from_secs(IDLE_TIMEOUT_SECS)));
        sock.set_keep_alive(Some(KEEP_ALIVE));
        if sock.accept(PORT).await.is_err() {
            continue;
        }
        shell.busy.set(shell.busy.get() + 1);
        let peer = sock.remote_endpoint().map(|ep| {
            let ip = match ep.addr {
                IpAddress::Ipv4(a) => IpAddr::V4(Ipv4Addr::from(a.octets())),
            };
            SocketAddr::new(ip, ep.port)
        });
        if guard::may_accept() {
            serve(shell, slot, &mut sock, packet, peer).await;
        } else {
            // Not even the connection state fits: close before reading anything.
            bump(&COUNTERS.accept_refused_heap);
            log!(
                "refused a connection: heap free {} B, needs {} B",
                guard::free_heap(),
                guard::accept_reserve_now()
            );
            sock.abort();
        }
        close_socket(&mut sock).await;
        drop(sock);
        shell.busy.set(shell.busy.get().saturating_sub(1));
        shell.slot_freed.signal(());
    }
}

/// Closes gracefully within `CLOSE_GRACE`, else resets.
async fn close_socket(sock: &mut TcpSocket<'_>) {
    sock.close();
    if with_timeout(CLOSE_GRACE, sock.flush()).await.is_err() {
        sock.abort();
        let _ = with_timeout(CLOSE_GRACE, sock.flush()).await;
    }
}

/// One MQTT connection, from accept to close.
async fn serve(
    shell: &Shell,
    slot: &Slot,
    sock: &mut TcpSocket<'_>,
    packet: &mut [u8],
    addr: Option<SocketAddr>,
) {
    let peer = PeerInfo {
        addr,
        cert_identity: None,
        listener: LISTENER_TCP,
    };
    let Some(conn) = shell.accept(peer) else {
        log!("refused a connection: the broker did not accept it");
        sock.abort();
        return;
    };
    slot.attach(conn);
    let mut fill = 0usize;
    let mut retry_input = false;
    loop {
        // Output first: acknowledgements free the client's window, and a full control
        // queue pauses the broker's reading.
        if slot.output.get() {
            if write_output(shell, slot, conn, sock).await.is_err() {
                break;
            }
            // Also with nothing buffered: the broker may have input of its own to resume.
            retry_input = true;
        }
        if slot.close.get() && !slot.output.get() {
            break;
        }
        if retry_input {
            retry_input = false;
            let used = shell.input(conn, &packet[..fill]);
            fill = consume(packet, fill, used);
            continue;
        }
        let room = fill < packet.len();
        let read = async {
            if room {
                sock.read(&mut packet[fill..]).await
            } else {
                // A full buffer is a whole packet the broker has not taken yet: it waits
                // for output to drain first.
                core::future::pending().await
            }
        };
        match select(read, slot.wake.wait()).await {
            Either::First(Ok(0)) | Either::First(Err(_)) => break,
            Either::First(Ok(n)) => {
                fill += n;
                let used = shell.input(conn, &packet[..fill]);
                fill = consume(packet, fill, used);
            }
            Either::Second(()) => {}
        }
    }
    slot.detach();
    shell.closed(conn);
}

/// Drops the first `used` bytes of `buf[..fill]`; returns the new fill.
fn consume(buf: &mut [u8], fill: usize, used: usize) -> usize {
    let used = used.min(fill);
    buf.copy_within(used..fill, 0);
    fill - used
}

/// Writes what the broker has for `conn`, as long as the socket has room for whole frames.
async fn write_output(
    shell: &Shell,
    slot: &Slot,
    conn: ConnId,
    sock: &mut TcpSocket<'_>,
) -> Result<(), ()> {
    while slot.output.get() {
        let free = sock.send_capacity().saturating_sub(sock.send_queue());
        if free <= TX_HEADROOM {
            // Wait until the peer has acknowledged what is queued (bounded by the socket's
            // timeout; a peer that never reads is reset).
            sock.flush().await.map_err(|_| ())?;
            continue;
        }
        slot.output.set(false);
        let more = shell.transmit(conn, free - TX_HEADROOM, &mut |chunk| {
            write_now(sock, chunk)
        })?;
        if more {
            slot.output.set(true);
        }
    }
    Ok(())
}

/// Copies `chunk` into the socket's transmit buffer. The caller made sure it fits, so the
/// write completes without waiting; anything else means the connection is gone.
fn write_now(sock: &mut TcpSocket<'_>, chunk: &[u8]) -> Result<(), ()> {
    match embassy_futures::poll_once(sock.write(chunk)) {
        Poll::Ready(Ok(n)) if n == chunk.len() => Ok(()),
        _ => Err(()),
    }
}

/// Answers connections beyond the last client slot with CONNACK "server busy" (3.1.1:
/// "server unavailable") and closes them. It listens only while every slot is taken, so it
/// does not take connections a free slot could serve.
#[embassy_executor::task]
pub async fn refuse_task(shell: &'static Shell, stack: Stack<'static>) -> ! {
    let mut rx = [0u8; REFUSE_BUF];
    let mut tx = [0u8; REFUSE_BUF];
    loop {
        while shell.busy.get() < CLIENTS {
            Timer::after(Duration::from_millis(50)).await;
        }
        let mut sock = TcpSocket::new(stack, &mut rx, &mut tx);
        sock.set_timeout(Some(REFUSE_WAIT));
        shell.slot_freed.reset();
        match select(sock.accept(PORT), shell.slot_freed.wait()).await {
            Either::First(Ok(())) => {
                bump(&COUNTERS.connect_refused_busy);
                refuse(&mut sock).await;
                close_socket(&mut sock).await;
            }
            Either::First(Err(_)) => {}
            // A slot is free again: stop listening here.
            Either::Second(()) => sock.abort(),
        }
    }
}

/// Reads the start of a CONNECT (up to the protocol level) and answers with a refusal in
/// the client's protocol version.
async fn refuse(sock: &mut TcpSocket<'_>) {
    let mut head = [0u8; 16];
    let mut fill = 0;
    let level = loop {
        match admission::connect_level(&head[..fill]) {
            Level::Of(level) => break level,
            Level::NotConnect => return,
            Level::Incomplete if fill == head.len() => return,
            Level::Incomplete => {}
        }
        match with_timeout(REFUSE_WAIT, sock.read(&mut head[fill..])).await {
            Ok(Ok(n)) if n > 0 => fill += n,
            _ => return,
        }
    };
    let ack = admission::refusal(admission::version_of_level(level), ReasonCode::ServerBusy);
    let _ = with_timeout(REFUSE_WAIT, sock.write(&ack)).await;
    log!("refused a client: all {} slots busy", CLIENTS);
}
