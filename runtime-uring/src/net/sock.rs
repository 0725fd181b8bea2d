//! Non-blocking reads and writes on a connected socket, for connections that wait for
//! readiness (an io_uring or epoll poll) instead of keeping a read in flight: an idle
//! connection then holds no buffer and no pending read of its own, and a busy one reads
//! into its shard's single buffer.

use monoio::net::TcpStream;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

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

/// Writes as much of `iov` as the socket takes without waiting (no SIGPIPE on a closed
/// peer); `WouldBlock` when it takes nothing.
pub fn send_vectored(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    let mut msg: libc::msghdr = zeroed_msghdr();
    msg.msg_iov = iov.as_ptr().cast_mut();
    msg.msg_iovlen = iov.len() as _;
    loop {
        // SAFETY: `msg` points at `iov`, whose entries describe live buffers the caller
        // keeps for the call; sendmsg only reads them.
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

/// Writes all of `bytes`, waiting for the socket to take more when it is full.
pub async fn send_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let iov = [libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        }];
        match send_vectored(stream.as_raw_fd(), &iov) {
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable(false).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
