//! Placement "forward": the shard that accepted a connection keeps its socket (and its TLS
//! and WebSocket layers) and relays MQTT bytes to and from the shard that owns the client
//! id, which runs the session. The alternative to handing the socket over; both are
//! measured in `benches/RESULTS.md`.
//!
//! The relay channels wake tasks across threads, which monoio runs only when a shard
//! parks, and a flooded shard never parks: every wait on them goes through
//! [`super::wake::woken_here`]. Known cost, one reason handoff is the default: a relayed
//! connection's bytes wait for a turn of the accepting shard, so a subscriber whose socket
//! sits on a flooded shard gets a fraction of what it would get there directly (fan-in:
//! 0.65-0.84 M msg/s against 3-3.6 M, `benches/RESULTS.md`); handoff has no
//! per-connection cross-thread traffic.

use super::shard::{Inbox, Shard};
use super::wake::woken_here;
use crate::net::transport::Transport;
use broker_core::PeerInfo;
use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

/// A full relay channel stops the side that feeds it (the client's reads, or the owner's
/// writer), as a full socket would.
/// Chunks are at most one read (client to owner) or one `RELAY_BUDGET` of output (owner to
/// client): together at most ~128 KiB in flight each way, about what a socket buffers.
const RELAY_CHUNKS: usize = 8;
/// Output the owner's writer moves per chunk.
pub const RELAY_BUDGET: usize = 16 * 1024;
/// Read buffer sizes, as for a served connection: small while idle, large once reads fill it.
const SMALL_READ: usize = 64;
const LARGE_READ: usize = 16 * 1024;

/// A connection the owner shard serves without holding its socket.
pub struct Remote {
    pub peer: PeerInfo,
    /// The bytes read so far (the CONNECT packet).
    pub initial: Vec<u8>,
    /// MQTT bytes from the client.
    pub from_client: async_channel::Receiver<Vec<u8>>,
    /// MQTT bytes to the client; the owner closes it when the connection ends.
    pub to_client: async_channel::Sender<Vec<u8>>,
}

/// Registers the connection with its owner shard and starts relaying.
pub fn start(
    shard: &Rc<Shard>,
    stream: TcpStream,
    peer: PeerInfo,
    transport: Transport,
    initial: Vec<u8>,
    owner: u16,
) {
    let Some(owner_tx) = shard.peers.get(usize::from(owner)) else {
        return;
    };
    let (up_tx, up_rx) = async_channel::bounded(RELAY_CHUNKS);
    let (down_tx, down_rx) = async_channel::bounded(RELAY_CHUNKS);
    let remote = Remote {
        peer,
        initial,
        from_client: up_rx,
        to_client: down_tx.clone(),
    };
    if owner_tx.try_send(Inbox::Remote(Box::new(remote))).is_err() {
        return;
    }
    shard.relayed.set(shard.relayed.get() + 1);
    tracing::debug!(
        "{:?}: relayed from shard {} to shard {owner}",
        stream.peer_addr().ok(),
        shard.id
    );
    let fd = stream.as_raw_fd();
    let (r, w) = stream.into_split();
    let transport = Rc::new(RefCell::new(transport));
    monoio::spawn(relay_up(
        shard.clone(),
        r,
        fd,
        transport.clone(),
        up_tx,
        down_tx,
    ));
    monoio::spawn(relay_down(shard.clone(), w, fd, transport, down_rx));
}

/// Client to owner. `flush` is a sender of the down channel, used to make the writer send
/// what the TLS or WebSocket layer itself has to say (handshake, tickets, pongs).
async fn relay_up(
    shard: Rc<Shard>,
    mut r: OwnedReadHalf<TcpStream>,
    fd: RawFd,
    transport: Rc<RefCell<Transport>>,
    up: async_channel::Sender<Vec<u8>>,
    flush: async_channel::Sender<Vec<u8>>,
) {
    let mut buf = Vec::with_capacity(SMALL_READ);
    loop {
        buf.clear();
        let (res, b) = r.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut mqtt = Vec::new();
        let decoded = transport
            .borrow_mut()
            .decode(buf.get(..n).unwrap_or_default(), &mut mqtt);
        if let Err(e) = decoded {
            tracing::warn!("connection from {:?}: {e}", r.peer_addr().ok());
            break;
        }
        if transport.borrow().wants_write() {
            let _ = flush.try_send(Vec::new());
        }
        if !mqtt.is_empty() && woken_here(shard.own_inbox(), up.send(mqtt)).await.is_err() {
            break;
        }
        // A shard whose every connection is relayed runs no core work that would take
        // its inbox (the pipes' wake-ups among it) while a client floods it.
        shard.pump();
        if n == buf.capacity() && n < LARGE_READ {
            buf = Vec::with_capacity(LARGE_READ);
        } else if n < SMALL_READ && buf.capacity() > SMALL_READ {
            buf = Vec::with_capacity(SMALL_READ);
        }
    }
    // The owner sees the end of input and reports the close to its core; the socket is
    // shut down now, as a served connection's is, so that a write blocked on a client
    // that stopped reading fails instead of waiting for it.
    up.close();
    super::conn::shutdown(fd);
}

/// Owner to client, until the owner closes the channel; then the socket is shut down.
async fn relay_down(
    shard: Rc<Shard>,
    mut w: OwnedWriteHalf<TcpStream>,
    fd: RawFd,
    transport: Rc<RefCell<Transport>>,
    down: async_channel::Receiver<Vec<u8>>,
) {
    let plain = transport.borrow().is_plain();
    let mut wire = Vec::new();
    while let Ok(bytes) = woken_here(shard.own_inbox(), down.recv()).await {
        let out = if plain {
            bytes
        } else {
            wire.clear();
            let encoded = transport
                .borrow_mut()
                .encode(std::iter::once(bytes.as_slice()), &mut wire);
            if encoded.is_err() {
                break;
            }
            std::mem::take(&mut wire)
        };
        if out.is_empty() {
            continue;
        }
        // Written at once while the socket takes it: waiting for an io_uring write to
        // complete costs a round of the (maybe busy) shard per chunk.
        let Ok(sent) = crate::net::sock::send_until_full(fd, &out) else {
            break;
        };
        let back = if sent < out.len() {
            let (res, back) = w.write_all(out.slice(sent..)).await;
            if res.is_err() {
                break;
            }
            back.into_inner()
        } else {
            out
        };
        if !plain {
            wire = back;
        }
    }
    down.close();
    super::conn::shutdown(fd);
    shard.relayed.set(shard.relayed.get().saturating_sub(1));
}
