//! Non-blocking reads and writes on a connected socket, for connections that wait for
//! readiness (an io_uring or epoll poll) instead of keeping a read in flight: an idle
//! connection then holds no buffer and no pending read of its own, and a busy one reads
//! into its shard's single buffer.

use super::iovec::TxIoVecs;
use std::io;
use std::os::fd::RawFd;

fn result(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Reads what the socket has into `buf` without waiting: `Ok(0)` is end of input,
/// `WouldBlock` means nothing is there yet.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the whole call.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        match result(n) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Writes as much of `v`'s unwritten bytes as the socket takes without waiting (the iovec
/// array is rebuilt first, so it describes exactly those bytes); `WouldBlock` when it
/// takes nothing. The caller advances `v.tx` by the count.
pub fn send_tx(fd: RawFd, v: &mut TxIoVecs) -> io::Result<usize> {
    v.prepare();
    send_vectored(fd, v.iovecs())
}

/// Writes as much of `bytes` as the socket takes without waiting.
pub fn send(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let iov = [libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    }];
    send_vectored(fd, &iov)
}

/// Writes `bytes` until the socket refuses more; the count written (all of them, or what
/// fitted before the socket was full).
pub fn send_until_full(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while let Some(rest) = bytes.get(sent..).filter(|r| !r.is_empty()) {
        match send(fd, rest) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// sendmsg without waiting and without SIGPIPE on a closed peer.
fn send_vectored(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    let mut msg = zeroed_msghdr();
    msg.msg_iov = iov.as_ptr().cast_mut();
    msg.msg_iovlen = iov.len() as _;
    loop {
        // SAFETY: `msg` points at `iov`, whose entries describe live buffers: `send` builds
        // it from a borrowed slice, `send_tx` from `v.tx` right before, and both hold the
        // borrow for the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        match result(n) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid value (null
    // pointers, zero lengths); the private padding fields on some targets rule out a literal.
    unsafe { std::mem::zeroed() }
}
