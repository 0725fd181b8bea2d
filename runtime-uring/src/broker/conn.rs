//! A connection served by its owner shard: a reader task feeding the core and a writer
//! task, started when the core has output, draining it with vectored writes.

use super::shard::Shard;
use crate::net::iovec::TxIoVecs;
use crate::net::notify::LocalNotify;
use crate::net::transport::Transport;
use broker_core::{ConnId, PeerInfo};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

/// Read buffer sizes: tiny while idle (an idle connection's pending read holds it; a
/// PINGREQ fits), large as soon as a read fills it.
const SMALL_READ: usize = 32;
const LARGE_READ: usize = 64 * 1024;

/// The I/O side of one connection, shared by its reader and writer tasks.
pub struct ConnIo {
    pub id: ConnId,
    fd: RawFd,
    write: RefCell<Option<OwnedWriteHalf<TcpStream>>>,
    transport: RefCell<Transport>,
    writer_active: Cell<bool>,
    /// The core closed the connection: flush, then shut the socket down.
    pub closing: Cell<bool>,
    /// The writer made progress (the reader waits on it when the core pauses input).
    drained: LocalNotify,
}

fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor this connection owns (still open: the stream
    // halves hold it); it only changes socket state and fails harmlessly if already shut.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Starts the writer task unless it is running.
pub fn wake_writer(shard: &Rc<Shard>, io: &Rc<ConnIo>) {
    if io.writer_active.replace(true) {
        return;
    }
    monoio::spawn(writer(shard.clone(), io.clone()));
}

async fn writer(shard: Rc<Shard>, io: Rc<ConnIo>) {
    let taken = io.write.borrow_mut().take();
    let Some(mut w) = taken else {
        io.writer_active.set(false);
        return;
    };
    let mut v = TxIoVecs::default();
    let mut wire: Vec<u8> = Vec::new();
    let mut failed = false;
    let plain = io.transport.borrow().is_plain();
    tracing::trace!(conn = io.id.as_u64(), "writer start");
    loop {
        if v.tx.is_empty() {
            let now = shard.now();
            let _ =
                shard
                    .broker
                    .borrow_mut()
                    .poll_transmit(io.id, now, &mut v.tx, shard.write_budget);
        }
        if plain {
            if v.tx.is_empty() {
                break;
            }
            v.prepare();
            let (res, back) = w.writev(v).await;
            v = back;
            tracing::trace!(conn = io.id.as_u64(), ?res, "writev");
            match res {
                Ok(n) if n > 0 => v.tx.advance(n),
                _ => {
                    failed = true;
                    break;
                }
            }
        } else {
            wire.clear();
            if io
                .transport
                .borrow_mut()
                .encode(v.tx.chunks(), &mut wire)
                .is_err()
            {
                failed = true;
            }
            v.tx.clear();
            if wire.is_empty() || failed {
                break;
            }
            let (res, buf) = w.write_all(std::mem::take(&mut wire)).await;
            wire = buf;
            if res.is_err() {
                failed = true;
                break;
            }
        }
        io.drained.notify();
    }
    io.drained.notify();
    if failed || io.closing.get() {
        // The reader sees EOF and reports the close to the core.
        shutdown(io.fd);
    }
    *io.write.borrow_mut() = Some(w);
    io.writer_active.set(false);
    tracing::trace!(conn = io.id.as_u64(), failed, "writer stop");
}

/// Starts serving a connection: registers it with the core, then spawns its reader task.
/// The set-up is done here, outside the task, so the task's future holds only what an
/// idle connection needs while it waits for bytes (an async fn would keep its arguments,
/// the peer and the socket metadata, for the connection's whole life).
pub fn serve(
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
    let fd = stream.as_raw_fd();
    let (r, w) = stream.into_split();
    let io = Rc::new(ConnIo {
        id,
        fd,
        write: RefCell::new(Some(w)),
        transport: RefCell::new(transport),
        writer_active: Cell::new(false),
        closing: Cell::new(false),
        drained: LocalNotify::default(),
    });
    shard.conns.borrow_mut().insert(id, io.clone());
    shard.pump();
    monoio::spawn(read_loop(shard, r, io, initial));
}

/// Reads the connection until it closes, feeding the core.
async fn read_loop(
    shard: Rc<Shard>,
    mut r: OwnedReadHalf<TcpStream>,
    io: Rc<ConnIo>,
    mut pending: Vec<u8>,
) {
    let id = io.id;
    let mut buf: Vec<u8> = Vec::with_capacity(SMALL_READ);
    loop {
        if !pending.is_empty() {
            // Boxed: its state exists only while feeding, not in every idle connection.
            Box::pin(feed(&shard, &io, &mut pending)).await;
        }
        // A peer shard is behind: do not take more work from this socket yet.
        shard.wait_unblocked().await;
        buf.clear();
        let (res, b) = r.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = buf.get(..n).unwrap_or_default();
        let decoded = io.transport.borrow_mut().decode(data, &mut pending);
        if let Err(e) = decoded {
            tracing::warn!("connection from {:?}: {e}", r.peer_addr().ok());
            break;
        }
        if io.transport.borrow().wants_write() {
            wake_writer(&shard, &io);
        }
        // Adapt the read buffer: grow when reads fill it, shrink back when idle.
        if n == buf.capacity() && buf.capacity() < LARGE_READ {
            buf = Vec::with_capacity(LARGE_READ);
        } else if n < SMALL_READ && buf.capacity() > SMALL_READ && pending.is_empty() {
            buf = Vec::with_capacity(SMALL_READ);
        }
    }
    let now = shard.now();
    shard.broker.borrow_mut().handle_closed(id, now);
    shard.pump();
    shard.conns.borrow_mut().remove(&id);
    shutdown(io.fd);
}

/// Hands buffered bytes to the core until it has taken every complete packet. When the
/// core pauses input (too many acknowledgements waiting to be written), waits for the
/// writer to make progress first.
async fn feed(shard: &Rc<Shard>, io: &Rc<ConnIo>, pending: &mut Vec<u8>) {
    loop {
        shard.wait_unblocked().await;
        let now = shard.now();
        let n = shard.broker.borrow_mut().handle_bytes(io.id, now, pending);
        shard.pump();
        pending.drain(..n.min(pending.len()));
        if n > 0 {
            if !pending.is_empty() {
                // A full batch: let writers (ours and other connections') run first.
                crate::net::notify::yield_now().await;
            }
            continue;
        }
        let complete = matches!(
            mqtt_proto::FixedHeader::parse(pending, usize::MAX),
            Ok(mqtt_proto::Status::Complete(h)) if pending.len() >= h.packet_len()
        );
        if !complete || io.closing.get() {
            return;
        }
        io.drained.notified().await;
    }
}
