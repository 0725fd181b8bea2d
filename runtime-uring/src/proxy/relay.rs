//! Forwarding after the CONNECT: bytes both ways, never parsed, with bounded memory.
//!
//! Each direction is one loop: read from one socket, (decrypt, encrypt,) write to the
//! other, then read again. Back-pressure is TCP's own: a direction whose write cannot
//! complete stops reading.
//!
//! - Plain TCP on both sides (the common case) waits for readiness (an io_uring or epoll
//!   poll) and then reads without waiting into the thread's one read buffer and writes
//!   straight from it: an idle connection holds no buffer and no read in flight, and a
//!   message costs one `recv` and one `sendmsg`. Only what a full socket does not take is
//!   copied out and kept until it can be written: at most one read (64 KiB) per direction.
//! - With TLS on either side, a direction holds at most one read buffer of [`LARGE_READ`]
//!   bytes (plus rustls's own bounded buffers), and while idle only [`SMALL_READ`] bytes
//!   (the pending read owns its buffer).
//!
//! - Half-close: end of stream on one side becomes `shutdown(SHUT_WR)` on the other (after
//!   a TLS close_notify where the other side is TLS); the other direction goes on until
//!   its own end of stream.
//! - Idle timeout: when neither side has sent anything for the timeout, both sockets are
//!   shut down, which ends the pending reads (one sweeper task per thread checks them).
//! - An error on either side shuts both down.
//!
//! `splice(2)` (kernel-side copy through a pipe) is available for plain TCP on both
//! sides, but not the default: on io_uring a splice is always handed to a kernel worker
//! thread, so each idle connection would park a thread in the kernel (`--forward splice`
//! for a few busy connections).

use super::health::now_ms;
use crate::net::notify::{yield_now, LocalNotify};
use crate::net::sock;
use crate::net::tls::TlsLayer;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};
use std::time::Duration;

/// Read buffer while idle (an idle connection's pending read owns it).
pub const SMALL_READ: usize = 512;
/// Read buffer once reads fill the small one.
pub const LARGE_READ: usize = 16 * 1024;
/// The thread's read buffer for plain connections (shared by all of them).
const READY_READ: usize = 64 * 1024;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READY_READ].into_boxed_slice());
}

/// One side of a forwarded connection: the socket and its TLS session, if any.
pub struct Side {
    pub stream: TcpStream,
    pub tls: Option<Box<TlsLayer>>,
}

/// How plain-to-plain connections are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// Read into a user buffer, write it out (the default).
    #[default]
    Copy,
    /// splice(2) through a pipe per direction.
    Splice,
}

struct Half {
    fd: RawFd,
    write: RefCell<Option<OwnedWriteHalf<TcpStream>>>,
    /// The write half came back (a waiting direction may take it).
    free: LocalNotify,
    tls: Option<RefCell<TlsLayer>>,
}

impl Half {
    async fn take_writer(&self) -> OwnedWriteHalf<TcpStream> {
        // Two users at most (this side's data writer, and the other direction flushing
        // this side's TLS messages); a holder always gives the writer back after one
        // write, so the wait is short.
        loop {
            if let Some(w) = self.write.borrow_mut().take() {
                return w;
            }
            self.free.notified().await;
        }
    }

    fn put_writer(&self, w: OwnedWriteHalf<TcpStream>) {
        *self.write.borrow_mut() = Some(w);
        self.free.notify();
    }
}

struct State {
    fds: [RawFd; 2],
    /// When either side last sent something (ms, [`now_ms`]).
    last: Cell<u64>,
}

fn shutdown(fd: RawFd, how: libc::c_int) {
    // SAFETY: shutdown(2) on a descriptor of a live connection: a `State` is reached only
    // by its pumps and by the sweeper's upgrade of a Weak on this same thread, and the
    // `run_*` frame that owns it closes the sockets only when it is dropped, never across
    // an await. It changes socket state only and fails harmlessly if already shut.
    unsafe {
        libc::shutdown(fd, how);
    }
}

impl State {
    fn touch(&self) {
        self.last.set(now_ms());
    }

    fn abort(&self) {
        for fd in self.fds {
            shutdown(fd, libc::SHUT_RDWR);
        }
    }
}

/// Writes what `dst`'s TLS session wants to send (alerts, key updates, close_notify).
async fn flush_tls(dst: &Half, w: &mut OwnedWriteHalf<TcpStream>, wire: &mut Vec<u8>) -> bool {
    let Some(tls) = &dst.tls else { return true };
    loop {
        wire.clear();
        if tls.borrow_mut().pending(wire).is_err() {
            return false;
        }
        if wire.is_empty() {
            return true;
        }
        let (res, back) = w.write_all(std::mem::take(wire)).await;
        *wire = back;
        if res.is_err() {
            return false;
        }
    }
}

/// Sends `data` (plaintext) to `dst`, encrypting it if `dst` is TLS. Returns the buffer
/// for reuse and whether the write succeeded.
async fn send(dst: &Half, data: Vec<u8>, wire: &mut Vec<u8>) -> (bool, Vec<u8>) {
    let mut w = dst.take_writer().await;
    // TLS records are produced while holding the writer, so they leave in order.
    let (ok, data) = match &dst.tls {
        None => {
            let (res, data) = w.write_all(data).await;
            (res.is_ok(), data)
        }
        Some(tls) => {
            wire.clear();
            let enc = tls
                .borrow_mut()
                .encrypt(std::iter::once(data.as_slice()), wire);
            if enc.is_err() {
                (false, data)
            } else {
                let (res, back) = w.write_all(std::mem::take(wire)).await;
                *wire = back;
                let ok = res.is_ok() && flush_tls(dst, &mut w, wire).await;
                (ok, data)
            }
        }
    };
    dst.put_writer(w);
    (ok, data)
}

/// End of stream from the other side: close_notify (TLS), then SHUT_WR.
async fn half_close(dst: &Half, wire: &mut Vec<u8>) {
    if let Some(tls) = &dst.tls {
        tls.borrow_mut().conn.send_close_notify();
        let mut w = dst.take_writer().await;
        let _ = flush_tls(dst, &mut w, wire).await;
        dst.put_writer(w);
    }
    shutdown(dst.fd, libc::SHUT_WR);
}

/// One direction, `src` to `dst`, by copying.
async fn pump(mut r: OwnedReadHalf<TcpStream>, src: &Half, dst: &Half, st: &State) {
    let mut buf: Vec<u8> = Vec::with_capacity(SMALL_READ);
    let mut plain: Vec<u8> = Vec::new();
    let mut wire: Vec<u8> = Vec::new();
    let clean = loop {
        let (res, b) = r.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) => break true,
            Ok(n) => n,
            Err(_) => break false,
        };
        st.touch();
        let full = n == buf.capacity();
        let ok = match &src.tls {
            None => {
                let (ok, b) = send(dst, buf, &mut wire).await;
                buf = b;
                ok
            }
            Some(tls) => {
                plain.clear();
                let fed = tls
                    .borrow_mut()
                    .feed(buf.get(..n).unwrap_or_default(), &mut plain);
                if fed.is_err() {
                    // Tell the peer why (the alert rustls queued) if the writer is free.
                    let w = src.write.borrow_mut().take();
                    if let Some(mut w) = w {
                        let _ = flush_tls(src, &mut w, &mut wire).await;
                        src.put_writer(w);
                    }
                    break false;
                }
                // Messages of its own the TLS session must answer (key updates): sent
                // now if the other direction is not writing, else it sends them after
                // its current write.
                if tls.borrow().conn.wants_write() {
                    let w = src.write.borrow_mut().take();
                    if let Some(mut w) = w {
                        let ok = flush_tls(src, &mut w, &mut wire).await;
                        src.put_writer(w);
                        if !ok {
                            break false;
                        }
                    }
                }
                if plain.is_empty() {
                    true
                } else {
                    let (ok, p) = send(dst, std::mem::take(&mut plain), &mut wire).await;
                    plain = p;
                    // Do not keep a large decrypted buffer around while idle.
                    if plain.capacity() > LARGE_READ * 2 {
                        plain = Vec::new();
                    }
                    ok
                }
            }
        };
        if !ok {
            break false;
        }
        st.touch();
        // Grow when reads fill the buffer, shrink back when traffic is light.
        if full && buf.capacity() < LARGE_READ {
            buf = Vec::with_capacity(LARGE_READ);
        } else if n < SMALL_READ && buf.capacity() > SMALL_READ {
            buf = Vec::with_capacity(SMALL_READ);
        }
    };
    if clean {
        half_close(dst, &mut wire).await;
    } else {
        st.abort();
    }
}

/// What one read of a plain direction did.
enum Step {
    /// Read and written in full; true when the read filled the buffer (more may wait).
    Sent(bool),
    /// Read; `dst` took only part: the rest, to write once it is writable.
    Rest(Vec<u8>),
    /// A spurious readiness: nothing to read.
    Nothing,
    /// End of stream from `src`.
    End,
    /// An error on either socket.
    Failed,
}

/// Reads what the socket has without waiting, through the thread's buffer, and appends it
/// to `into`: `Ok(0)` at end of stream, `WouldBlock` when there is nothing yet.
pub fn recv_into(fd: RawFd, into: &mut Vec<u8>) -> std::io::Result<usize> {
    READ_BUF.with_borrow_mut(|buf| {
        let n = sock::recv(fd, buf)?;
        into.extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(n)
    })
}

/// Reads what `src` has into the thread's buffer and writes it to `dst` without waiting.
fn step(src: RawFd, dst: RawFd) -> Step {
    READ_BUF.with_borrow_mut(|buf| match sock::recv(src, buf) {
        Ok(0) => Step::End,
        Ok(n) => {
            let data = buf.get(..n).unwrap_or_default();
            match sock::send(dst, data) {
                Ok(m) if m >= n => Step::Sent(n == buf.len()),
                Ok(m) => Step::Rest(data.get(m..).unwrap_or_default().to_vec()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Step::Rest(data.to_vec()),
                Err(_) => Step::Failed,
            }
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Step::Nothing,
        Err(_) => Step::Failed,
    })
}

/// Writes all of `rest` to `dst`, waiting for room as needed.
async fn send_rest(dst: &TcpStream, mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        if dst.writable(false).await.is_err() {
            return false;
        }
        match sock::send(dst.as_raw_fd(), rest) {
            Ok(m) => rest = rest.get(m..).unwrap_or_default(),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    true
}

/// One direction between plain sockets, by readiness (see the module's comment).
async fn pump_ready(src: &TcpStream, dst: &TcpStream, st: &State) {
    let clean = loop {
        if src.readable(false).await.is_err() {
            break false;
        }
        match step(src.as_raw_fd(), dst.as_raw_fd()) {
            Step::Sent(full) => {
                st.touch();
                // A full buffer: more is waiting. Let the thread's other connections run
                // first, so a busy one cannot hold it (epoll reports it ready at once).
                if full {
                    yield_now().await;
                }
            }
            Step::Rest(rest) => {
                st.touch();
                if !send_rest(dst, &rest).await {
                    break false;
                }
                st.touch();
            }
            Step::Nothing => {}
            Step::End => break true,
            Step::Failed => break false,
        }
    };
    if clean {
        shutdown(dst.as_raw_fd(), libc::SHUT_WR);
    } else {
        st.abort();
    }
}

/// One direction by splice(2) (plain TCP on both sides).
async fn pump_splice(mut r: OwnedReadHalf<TcpStream>, dst: &Half, st: &State) {
    use monoio::io::splice::{SpliceDestination, SpliceSource};
    let clean = 'run: {
        let Ok((mut pr, mut pw)) = monoio::net::unix::new_pipe() else {
            break 'run false;
        };
        let mut w = dst.take_writer().await;
        let res = loop {
            let mut n = match r.splice_to_pipe(&mut pw, LARGE_READ as u32 * 4).await {
                Ok(0) => break true,
                Ok(n) => n,
                Err(_) => break false,
            };
            st.touch();
            while n > 0 {
                match w.splice_from_pipe(&mut pr, n).await {
                    Ok(0) | Err(_) => break,
                    Ok(m) => n -= m.min(n),
                }
            }
            if n > 0 {
                break false;
            }
        };
        dst.put_writer(w);
        res
    };
    if clean {
        shutdown(dst.fd, libc::SHUT_WR);
    } else {
        st.abort();
    }
}

/// This thread's forwarded connections, for the idle timeout: one sweeper task checks
/// them all (a timer per connection would take more memory than the rest of an idle
/// connection). Entries of finished connections are dropped at the next sweep.
struct Idle {
    conns: Vec<Weak<State>>,
    sweeping: bool,
}

thread_local! {
    static IDLE: RefCell<Idle> = const {
        RefCell::new(Idle {
            conns: Vec::new(),
            sweeping: false,
        })
    };
}

/// Puts a connection under the idle timeout (0 = none).
fn watch(st: &Rc<State>, idle: Duration) {
    if idle.is_zero() {
        return;
    }
    let start = IDLE.with_borrow_mut(|w| {
        w.conns.push(Rc::downgrade(st));
        !std::mem::replace(&mut w.sweeping, true)
    });
    if start {
        monoio::spawn(sweep(idle));
    }
}

/// Shuts down connections quiet for `idle` (closed between 1x and 1.25x of it), until
/// the thread has none left to watch.
async fn sweep(idle: Duration) {
    let idle_ms = idle.as_millis() as u64;
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        monoio::time::sleep(every).await;
        let now = now_ms();
        let done = IDLE.with_borrow_mut(|w| {
            w.conns.retain(|c| {
                let Some(st) = c.upgrade() else { return false };
                if now.saturating_sub(st.last.get()) < idle_ms {
                    return true;
                }
                tracing::debug!("idle for {idle:?}: closing");
                st.abort();
                false
            });
            w.sweeping = !w.conns.is_empty();
            !w.sweeping
        });
        if done {
            return;
        }
    }
}

/// Forwards between `client` and `upstream` until both directions end (or the idle
/// timeout, 0 = none).
pub async fn run(client: Side, upstream: Side, idle: Duration, mode: CopyMode) {
    if client.tls.is_none() && upstream.tls.is_none() && mode == CopyMode::Copy {
        run_ready(client.stream, upstream.stream, idle).await;
    } else {
        // Boxed: the TLS and splice states are large and the common case needs none.
        Box::pin(run_halves(client, upstream, idle, mode)).await;
    }
}

fn state(fds: [RawFd; 2], idle: Duration) -> Rc<State> {
    let st = Rc::new(State {
        fds,
        last: Cell::new(now_ms()),
    });
    watch(&st, idle);
    st
}

/// Plain TCP both ways, by readiness.
async fn run_ready(a: TcpStream, b: TcpStream, idle: Duration) {
    let st = state([a.as_raw_fd(), b.as_raw_fd()], idle);
    monoio::join!(pump_ready(&a, &b, &st), pump_ready(&b, &a, &st));
}

/// TLS on either side, or splice: each direction with its own read half.
async fn run_halves(client: Side, upstream: Side, idle: Duration, mode: CopyMode) {
    let plain = client.tls.is_none() && upstream.tls.is_none();
    let (afd, bfd) = (client.stream.as_raw_fd(), upstream.stream.as_raw_fd());
    let st = state([afd, bfd], idle);
    let (ar, aw) = client.stream.into_split();
    let (br, bw) = upstream.stream.into_split();
    let a = Half {
        fd: afd,
        write: RefCell::new(Some(aw)),
        free: LocalNotify::default(),
        tls: client.tls.map(|t| RefCell::new(*t)),
    };
    let b = Half {
        fd: bfd,
        write: RefCell::new(Some(bw)),
        free: LocalNotify::default(),
        tls: upstream.tls.map(|t| RefCell::new(*t)),
    };
    if plain && mode == CopyMode::Splice {
        monoio::join!(pump_splice(ar, &b, &st), pump_splice(br, &a, &st));
    } else {
        monoio::join!(pump(ar, &a, &b, &st), pump(br, &b, &a, &st));
    }
    // Dropping the halves closes both sockets.
}
