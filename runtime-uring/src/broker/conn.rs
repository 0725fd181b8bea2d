//! A connection served by its owner shard: a reader task feeding the core and a writer
//! task, started when the core has output, draining it with vectored writes. The socket is
//! either ours or kept by the shard that accepted it (placement "forward", see `relay`).
//!
//! Our own socket is read and written without waiting (`net::sock`) and waited on for
//! readiness through the runtime (an io_uring poll, or epoll), so an idle connection holds
//! no read buffer and no read in flight: reads go into the shard's one buffer.

use super::shard::{Phase, Shard};
use crate::net::iovec::TxIoVecs;
use crate::net::notify::LocalNotify;
use crate::net::sock;
use crate::net::transport::Transport;
use broker_core::{ConnId, PeerInfo};
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

/// Where a connection's output goes.
pub(super) enum Sink {
    /// Our own socket (read by the reader task, written by the writer task).
    Socket(TcpStream),
    /// Our own socket on the shard's data ring (plain TCP on io_uring, see `ring_conn`).
    Ring(super::ring_conn::RingSock),
    /// The shard that accepted the connection and keeps its socket.
    Remote(async_channel::Sender<Vec<u8>>),
}

/// The I/O side of one connection, shared by its reader and writer tasks.
pub struct ConnIo {
    pub id: ConnId,
    pub(super) sink: Sink,
    transport: RefCell<Transport>,
    writer_active: Cell<bool>,
    /// The writer waits for a full socket to take more (the client does not read).
    write_blocked: Cell<bool>,
    /// The core closed the connection: flush, then shut the socket down.
    pub closing: Cell<bool>,
    /// The writer made progress (the reader waits on it when the core pauses input).
    pub(super) drained: LocalNotify,
}

pub(super) fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor this connection owns (still open: its stream
    // holds it); it only changes socket state and fails harmlessly if already shut.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// How long a connection the broker closed (after its final DISCONNECT) is still read and
/// what arrives discarded: a client still writing would otherwise get a reset, which can
/// destroy the DISCONNECT and its reason code before the client reads them.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

impl ConnIo {
    /// The last write found the socket full (see [`close`]).
    pub(super) fn set_write_blocked(&self, blocked: bool) {
        self.write_blocked.set(blocked);
    }

    /// The final output is written: the write side is shut down (the client sees EOF after
    /// the last frame), and the socket is still read, the bytes discarded by the core,
    /// until the client closes or [`CLOSE_LINGER`] ends. At shutdown, or for a relayed
    /// connection, the output is closed at once.
    pub(super) fn finish_output(self: &Rc<Self>, shard: &Rc<Shard>) {
        if shard.phase.get() == Phase::Closing {
            return self.close_output(shard);
        }
        match &self.sink {
            Sink::Socket(stream) => {
                // SAFETY: shutdown(2) on the descriptor this connection owns (open: its
                // stream holds it); it only changes socket state.
                unsafe {
                    libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
                }
            }
            Sink::Ring(_) => {
                if let Some(rs) = &shard.ring {
                    super::ring_conn::shutdown(rs, self, libc::SHUT_WR);
                }
            }
            Sink::Remote(_) => return self.close_output(shard),
        }
        let weak = Rc::downgrade(self);
        let shard_weak = Rc::downgrade(shard);
        monoio::spawn(async move {
            monoio::time::sleep(CLOSE_LINGER).await;
            // Still open (the client did not close): end the reader's wait now.
            if let (Some(io), Some(shard)) = (weak.upgrade(), shard_weak.upgrade()) {
                io.close_output(&shard);
            }
        });
    }

    /// No more output: the socket is shut down (its reader then sees EOF), or the relay
    /// channel closed (the accepting shard then shuts the socket down).
    fn close_output(&self, shard: &Shard) {
        match &self.sink {
            Sink::Socket(stream) => shutdown(stream.as_raw_fd()),
            Sink::Ring(_) => {
                if let Some(rs) = &shard.ring {
                    super::ring_conn::shutdown(rs, self, libc::SHUT_RDWR);
                }
            }
            Sink::Remote(tx) => {
                tx.close();
            }
        }
    }
}

/// The core closed the connection: its remaining output is flushed, then the socket is shut
/// down. A client that stopped reading would keep the flush waiting forever, so its socket
/// is shut down at once (what could not be written is lost either way).
pub fn close(shard: &Rc<Shard>, io: &Rc<ConnIo>) {
    io.closing.set(true);
    if io.write_blocked.get() {
        io.close_output(shard);
    }
    wake_writer(shard, io);
}

/// The core has output for a connection. A plain socket of ours is written at once, from
/// the shard's transmit buffer, while it takes everything; what it does not take, and every
/// other case (TLS, WebSocket, a relayed connection, closing), goes to the writer task. So
/// most output costs one system call and no task.
pub fn output(shard: &Rc<Shard>, io: &Rc<ConnIo>) {
    if io.writer_active.get() || shard.hold_output(io.id) {
        return;
    }
    if let (Sink::Ring(_), Some(rs)) = (&io.sink, &shard.ring) {
        return super::ring_conn::output(shard, rs, io);
    }
    let Sink::Socket(stream) = &io.sink else {
        return wake_writer(shard, io);
    };
    if io.closing.get() || !io.transport.borrow().is_plain() {
        return wake_writer(shard, io);
    }
    let mut v = shard.take_tx();
    match write_now(shard, io, stream, &mut v) {
        Now::Done => shard.put_tx(v),
        Now::Failed => {
            v.tx.clear();
            shard.put_tx(v);
            io.drained.notify();
            io.close_output(shard);
        }
        Now::Full | Now::Yield => {
            // The rest (already taken from the core) goes with the writer task.
            io.writer_active.set(true);
            monoio::spawn(writer(shard.clone(), io.clone(), v));
        }
    }
}

/// How far an immediate write got.
enum Now {
    /// The core has nothing more for this connection.
    Done,
    /// The socket is full: `v` holds the rest.
    Full,
    /// The round limit was reached: `v` may hold the rest.
    Yield,
    Failed,
}

/// Writes the core's output without waiting, for at most a few rounds (a client that
/// reads as fast as we write must not hold the shard).
fn write_now(shard: &Shard, io: &ConnIo, stream: &TcpStream, v: &mut TxIoVecs) -> Now {
    for _ in 0..4 {
        if v.tx.is_empty() && !transmit(shard, io, v, shard.write_budget) {
            return Now::Done;
        }
        if v.tx.is_empty() {
            // Nothing encoded this round, but the core has more (it dropped or admitted
            // messages): ask again.
            continue;
        }
        match sock::send_tx(stream.as_raw_fd(), v) {
            Ok(n) if n > 0 => {
                v.tx.advance(n);
                io.drained.notify();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Now::Full,
            _ => return Now::Failed,
        }
    }
    Now::Yield
}

/// Takes the core's next output into `v.tx`; true when there may be more (the core's
/// `more`, or bytes taken): call again once they are written.
pub(super) fn transmit(shard: &Shard, io: &ConnIo, v: &mut TxIoVecs, budget: usize) -> bool {
    let now = shard.now();
    let mut b = shard.broker.borrow_mut();
    let before = v.tx.len();
    let t = b.poll_transmit(io.id, now, &mut v.tx, budget);
    let added = v.tx.len().saturating_sub(before) as u64;
    shard.bytes_sent.set(shard.bytes_sent.get() + added);
    shard
        .packets_sent
        .set(shard.packets_sent.get() + t.frames as u64);
    // Store records or events of this call (a stored QoS 2 delivery's packet identifier,
    // a queue to read back from disk) wait for the next `pump`.
    if b.has_pending_work() {
        shard.request_pump();
    }
    t.more || !v.tx.is_empty()
}

/// Waits for a full socket to take more; false when the connection is closing (a client
/// that stopped reading would hold the final flush forever; `close` shuts the socket down
/// when it finds the writer waiting here) or the wait failed.
async fn wait_writable(io: &ConnIo, stream: &TcpStream) -> bool {
    if io.closing.get() {
        return false;
    }
    io.write_blocked.set(true);
    let ready = stream.writable(false).await;
    io.write_blocked.set(false);
    ready.is_ok()
}

/// Starts the writer task unless it is running.
pub fn wake_writer(shard: &Rc<Shard>, io: &Rc<ConnIo>) {
    if let (Sink::Ring(_), Some(rs)) = (&io.sink, &shard.ring) {
        if !shard.hold_output(io.id) {
            super::ring_conn::output(shard, rs, io);
        }
        return;
    }
    if io.writer_active.replace(true) {
        return;
    }
    monoio::spawn(writer(shard.clone(), io.clone(), TxIoVecs::default()));
}

/// Drains the core's output for a connection, starting with `v` (output already taken).
async fn writer(shard: Rc<Shard>, io: Rc<ConnIo>, mut v: TxIoVecs) {
    tracing::trace!(conn = io.id.as_u64(), "writer start");
    let failed = match &io.sink {
        Sink::Socket(stream) => write_socket(&shard, &io, stream, &mut v).await,
        Sink::Remote(tx) => write_remote(&shard, &io, tx, &mut v).await,
        // Written by its send completions, never by a task.
        Sink::Ring(_) => false,
    };
    io.drained.notify();
    if failed {
        io.close_output(&shard);
    } else if io.closing.get() {
        io.finish_output(&shard);
    }
    io.writer_active.set(false);
    tracing::trace!(conn = io.id.as_u64(), failed, "writer stop");
}

/// Copies the core's output into the relay channel to the accepting shard (a full channel
/// holds this writer, and the core's queues then fill as with a slow socket).
async fn write_remote(
    shard: &Shard,
    io: &ConnIo,
    tx: &async_channel::Sender<Vec<u8>>,
    v: &mut TxIoVecs,
) -> bool {
    loop {
        shard.wait_released().await;
        if !transmit(shard, io, v, super::relay::RELAY_BUDGET) {
            return false;
        }
        if v.tx.is_empty() {
            crate::net::notify::yield_now().await;
            continue;
        }
        let mut out = Vec::with_capacity(v.tx.chunks().map(<[u8]>::len).sum());
        for c in v.tx.chunks() {
            out.extend_from_slice(c);
        }
        v.tx.clear();
        // A full channel (the accepting shard's client does not read) could hold this
        // send forever: `close` closes the channel when it finds the writer here.
        io.write_blocked.set(true);
        let sent = super::wake::woken_here(shard.own_inbox(), tx.send(out)).await;
        io.write_blocked.set(false);
        if sent.is_err() {
            return true;
        }
        io.drained.notify();
    }
}

/// Writes the core's output to our socket; true when the socket failed.
async fn write_socket(shard: &Shard, io: &ConnIo, stream: &TcpStream, v: &mut TxIoVecs) -> bool {
    if !io.transport.borrow().is_plain() {
        return write_layered(shard, io, stream, v).await;
    }
    loop {
        shard.wait_released().await;
        match write_now(shard, io, stream, v) {
            Now::Done => return false,
            Now::Failed => return true,
            // The other tasks run before the next rounds.
            Now::Yield => crate::net::notify::yield_now().await,
            // A slow reader: wait until the socket takes more.
            Now::Full => {
                if !wait_writable(io, stream).await {
                    return true;
                }
            }
        }
    }
}

/// [`write_socket`] through TLS and/or WebSocket: the output is encoded, then written
/// whole. Encoded even when the core has nothing: the layer may have records of its own
/// (handshake, alert, pong).
async fn write_layered(shard: &Shard, io: &ConnIo, stream: &TcpStream, v: &mut TxIoVecs) -> bool {
    let fd = stream.as_raw_fd();
    let mut wire: Vec<u8> = Vec::new();
    loop {
        shard.wait_released().await;
        let more = !v.tx.is_empty() || transmit(shard, io, v, shard.write_budget);
        wire.clear();
        let encoded = io.transport.borrow_mut().encode(v.tx.chunks(), &mut wire);
        v.tx.clear();
        if encoded.is_err() {
            return true;
        }
        if wire.is_empty() {
            if !more {
                return false;
            }
            // The core has more but encoded nothing this round: ask again after the
            // other tasks ran.
            crate::net::notify::yield_now().await;
            continue;
        }
        let mut rest = wire.as_slice();
        while !rest.is_empty() {
            match sock::send(fd, rest) {
                Ok(n) if n > 0 => rest = rest.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if !wait_writable(io, stream).await {
                        return true;
                    }
                }
                _ => return true,
            }
        }
        io.drained.notify();
    }
}

/// Starts serving a connection: registers it with the core, then spawns its reader task.
/// The set-up is done here, outside the task, so the task's future holds only what an
/// idle connection needs while it waits for bytes (an async fn would keep its arguments,
/// the peer and the socket metadata, for the connection's whole life).
fn serve_ready(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: PeerInfo,
    transport: Transport,
    initial: Vec<u8>,
) {
    let now = shard.now();
    let accepted = shard.broker.borrow_mut().handle_accept(now, peer);
    let Ok(id) = accepted else {
        tracing::debug!("connection refused: {:?}", accepted.err());
        return;
    };
    let io = register(&shard, id, Sink::Socket(stream), transport);
    monoio::spawn(read_loop(shard, io, initial));
}

/// Serves a plain connection on the shard's data ring when it has one; else, or when the
/// ring has no room, as [`serve_ready`].
pub fn serve(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: PeerInfo,
    transport: Transport,
    initial: Vec<u8>,
) {
    let Some(rs) = shard.ring.clone().filter(|_| transport.is_plain()) else {
        return serve_ready(shard, stream, peer, transport, initial);
    };
    let Some(fd) = crate::net::ring::into_owned(stream) else {
        return;
    };
    if let Err((fd, peer, initial)) = super::ring_conn::serve(&shard, &rs, fd, peer, initial) {
        match TcpStream::from_std(std::net::TcpStream::from(fd)) {
            Ok(stream) => serve_ready(shard, stream, peer, transport, initial),
            Err(e) => tracing::warn!("cannot serve a connection: {e}"),
        }
    }
}

/// Serves a connection only to refuse its CONNECT with `code` (a cluster node that cannot
/// own its client identifier: 0x88 Server unavailable); the core answers and closes.
pub fn serve_denied(
    shard: Rc<Shard>,
    stream: TcpStream,
    peer: PeerInfo,
    transport: Transport,
    initial: Vec<u8>,
    code: broker_core::mqtt_proto::ReasonCode,
) {
    let now = shard.now();
    let accepted = shard.broker.borrow_mut().handle_accept(now, peer);
    let Ok(id) = accepted else {
        return;
    };
    shard.broker.borrow_mut().deny_connect(id, code);
    let io = register(&shard, id, Sink::Socket(stream), transport);
    monoio::spawn(read_loop(shard, io, initial));
}

/// Starts serving a connection whose socket another shard keeps (placement "forward"):
/// MQTT bytes arrive on `from_client`, output goes to `to_client`.
pub fn serve_remote(shard: Rc<Shard>, remote: super::relay::Remote) {
    let super::relay::Remote {
        peer,
        initial,
        from_client,
        to_client,
    } = remote;
    let now = shard.now();
    let internal = peer.listener == super::INTERNAL_LISTENER;
    let accepted = shard.broker.borrow_mut().handle_accept(now, peer);
    let Ok(id) = accepted else {
        tracing::debug!("connection refused: {:?}", accepted.err());
        to_client.close();
        from_client.close();
        return;
    };
    if internal {
        // A `[[bridge]]`'s local side.
        shard.broker.borrow_mut().mark_bridge(id);
    }
    let io = register(&shard, id, Sink::Remote(to_client), Transport::default());
    monoio::spawn(relay_loop(shard, from_client, io, initial));
}

pub(super) fn register(
    shard: &Rc<Shard>,
    id: ConnId,
    sink: Sink,
    transport: Transport,
) -> Rc<ConnIo> {
    let io = Rc::new(ConnIo {
        id,
        sink,
        transport: RefCell::new(transport),
        writer_active: Cell::new(false),
        write_blocked: Cell::new(false),
        closing: Cell::new(false),
        drained: LocalNotify::default(),
    });
    shard.conns.borrow_mut().insert(id, io.clone());
    shard.pump();
    io
}

/// Feeds the core what the accepting shard relays, until that shard closes the channel.
async fn relay_loop(
    shard: Rc<Shard>,
    from_client: async_channel::Receiver<Vec<u8>>,
    io: Rc<ConnIo>,
    mut pending: Vec<u8>,
) {
    loop {
        if !pending.is_empty() {
            feed(&shard, &io, &mut pending).await;
        }
        shard.wait_unblocked().await;
        match super::wake::woken_here(shard.own_inbox(), from_client.recv()).await {
            Ok(bytes) if pending.is_empty() => pending = bytes,
            Ok(bytes) => pending.extend_from_slice(&bytes),
            Err(_) => break,
        }
    }
    closed(&shard, &io);
}

/// The connection's input ended: the core learns it, then its output is closed.
pub(super) fn closed(shard: &Rc<Shard>, io: &Rc<ConnIo>) {
    let now = shard.now();
    shard.broker.borrow_mut().handle_closed(io.id, now);
    shard.pump();
    shard.conns.borrow_mut().remove(&io.id);
    io.close_output(shard);
}

/// Reads the connection until it closes, feeding the core.
async fn read_loop(shard: Rc<Shard>, io: Rc<ConnIo>, mut pending: Vec<u8>) {
    let Sink::Socket(stream) = &io.sink else {
        return;
    };
    // Every read waits for readiness through the runtime first, even when the last read
    // filled the buffer: on io_uring the poll completes only when the runtime next reaps
    // its ring, after the other ready tasks ran, so a socket that always has data (a
    // flooding publisher) cannot keep the shard from its writers and other sockets. The
    // epoll driver answers at once while data is there: there the yield after each read
    // does it. (Bytes sent right after the CONNECT make the first poll complete at once.)
    loop {
        if !pending.is_empty() {
            // Boxed: its state exists only while feeding, not in every idle connection.
            Box::pin(feed(&shard, &io, &mut pending)).await;
        }
        if pending.is_empty() {
            // Keep no buffer while waiting.
            pending = Vec::new();
        }
        // A peer shard is behind: do not take more work from this socket yet.
        shard.wait_unblocked().await;
        if stream.readable(false).await.is_err() {
            break;
        }
        match read_once(&shard, &io, stream, &mut pending) {
            Read::Data => crate::net::notify::yield_now().await,
            Read::Nothing => {}
            Read::End => break,
        }
    }
    closed(&shard, &io);
}

/// One read into the shard's buffer. A plain connection's bytes go to the core straight
/// from it; only what the core did not take (a partial packet, the rest of a long batch)
/// is kept in `pending`. TLS and WebSocket bytes are decoded into `pending`.
fn read_once(
    shard: &Rc<Shard>,
    io: &Rc<ConnIo>,
    stream: &TcpStream,
    pending: &mut Vec<u8>,
) -> Read {
    let mut buf = shard.take_rx_buf();
    let got = match sock::recv(stream.as_raw_fd(), &mut buf) {
        Ok(0) => Read::End,
        Ok(n) if deliver(shard, io, stream, buf.get(..n).unwrap_or_default(), pending) => {
            Read::Data
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Read::Nothing,
        _ => Read::End,
    };
    shard.put_rx_buf(buf);
    got
}

/// What one read gave.
enum Read {
    Data,
    /// A spurious readiness: nothing there.
    Nothing,
    /// End of input, a socket error or a transport error.
    End,
}

/// Hands bytes read from the socket to the core (or to the transport); false when the
/// transport failed.
fn deliver(
    shard: &Rc<Shard>,
    io: &Rc<ConnIo>,
    stream: &TcpStream,
    data: &[u8],
    pending: &mut Vec<u8>,
) -> bool {
    if pending.is_empty() && !shard.blocked.get() && io.transport.borrow().is_plain() {
        shard.take_from_peers();
        let now = shard.now();
        let used = shard.broker.borrow_mut().handle_bytes(io.id, now, data);
        shard.pump();
        pending.extend_from_slice(data.get(used..).unwrap_or_default());
        return true;
    }
    let decoded = io.transport.borrow_mut().decode(data, pending);
    if let Err(e) = decoded {
        tracing::warn!("connection from {:?}: {e}", stream.peer_addr().ok());
        return false;
    }
    if io.transport.borrow().wants_write() {
        wake_writer(shard, io);
    }
    true
}

/// The core released a held publisher: it processes the input it set aside now, and the
/// reader, if it waits with bytes the core did not take, tries again.
pub fn resume_input(shard: &Rc<Shard>, io: &Rc<ConnIo>) {
    let now = shard.now();
    let used = shard.broker.borrow_mut().handle_bytes(io.id, now, &[]);
    debug_assert_eq!(used, 0);
    io.drained.notify();
    if let (Sink::Ring(_), Some(rs)) = (&io.sink, &shard.ring) {
        super::ring_conn::resume(shard, rs, io);
    }
}

/// Hands buffered bytes to the core until it has taken every complete packet. When the
/// core pauses input (too many acknowledgements waiting to be written, or a held publisher
/// whose set-aside input is full), waits for the writer to make progress or the core to
/// resume input first.
async fn feed(shard: &Rc<Shard>, io: &Rc<ConnIo>, pending: &mut Vec<u8>) {
    loop {
        shard.wait_unblocked().await;
        shard.take_from_peers();
        let now = shard.now();
        let taken = shard.broker.borrow_mut().handle_input(io.id, now, pending);
        shard.pump();
        pending.drain(..taken.consumed);
        if taken.consumed > 0 {
            if !pending.is_empty() {
                // A full batch: let writers (ours and other connections') run first.
                crate::net::notify::yield_now().await;
            }
            continue;
        }
        if !taken.paused || io.closing.get() {
            return;
        }
        io.drained.notified().await;
    }
}
