//! Listening sockets: one `SO_REUSEPORT` listener per thread on each address (the kernel
//! spreads connections over the threads), after checking that no other process listens
//! there. Shared by `petrel broker` and `petrel proxy`.

use anyhow::Context;
use std::net::SocketAddr;

/// Raises the soft limit on open files to the hard limit (every connection is a descriptor,
/// and a proxied one two; the usual soft limit of 1,024 would refuse clients long before
/// memory runs short), and grows the descriptor table to match: call it before starting
/// threads. Returns the limit now in force.
pub fn raise_open_files_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the current limits into `lim`, a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads `raised`; raising the soft limit up to the hard
        // one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    reserve_descriptor_table(lim.rlim_cur);
    Some(lim.rlim_cur)
}

/// Descriptor slots the table is grown to at start-up.
const RESERVED_DESCRIPTORS: libc::rlim_t = 1 << 16;

/// Grows the process's descriptor table while it is still single-threaded. The kernel
/// doubles the table as descriptors are allocated, and in a process whose threads share it
/// each doubling waits for an RCU grace period (`expand_fdtable`) while every other thread
/// that allocates a descriptor waits too: 10-40 ms with all shards stopped, at 256, 512,
/// ... connections (a fifth of a 10,000-connect burst's time, `benches/RESULTS.md`). A
/// single-threaded server such as Mosquitto never waits there. The table never shrinks, so
/// growing it once up front (to the open files limit, at most 65,536 slots: about 0.5 MiB
/// of kernel memory) removes those stalls.
fn reserve_descriptor_table(limit: libc::rlim_t) {
    let Ok(top) = libc::c_int::try_from(limit.min(RESERVED_DESCRIPTORS).saturating_sub(1)) else {
        return;
    };
    // SAFETY: eventfd creates a descriptor we own; F_DUPFD_CLOEXEC copies it to the lowest
    // free number at or above `top` (never replacing an open one), which makes the kernel
    // grow the table to cover it; both are closed at once.
    unsafe {
        let src = libc::eventfd(0, libc::EFD_CLOEXEC);
        if src < 0 {
            return;
        }
        let high = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, top);
        if high >= 0 {
            libc::close(high);
        }
        libc::close(src);
    }
}

/// Refuses a port another process already listens on: our own sockets use
/// `SO_REUSEPORT`, which would otherwise let two brokers share a port silently.
pub fn probe_free(addr: SocketAddr) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    // SO_REUSEADDR (TIME_WAIT after a restart is fine) but not SO_REUSEPORT: binding fails
    // only if another socket is listening there. Bind only, never listen: a client
    // connecting during start-up would land in the probe's queue, and the connection left
    // behind when the probe closes (without SO_REUSEPORT) made the real bind fail.
    let s = tcp_socket(addr)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))
}

fn bind_reuseport(addr: SocketAddr, deferred: bool) -> anyhow::Result<std::net::TcpListener> {
    let s = tcp_socket(addr)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    s.listen(4096)?;
    if deferred {
        defer_accept(&s);
    }
    Ok(s.into())
}

/// Connections a listener takes straight from its backlog after one arrived through the
/// runtime, before it lets the thread's other tasks run.
const ACCEPT_BURST: u32 = 64;

/// Accepts a listener's connections. The first of a burst comes through the runtime (an
/// io_uring accept, or epoll readiness); the rest are taken straight from the backlog,
/// one `accept4` each instead of a trip through the ring each, as an epoll server does.
/// A burst of connects is then accepted, read and answered in one pass.
pub struct Acceptor {
    listener: monoio::net::TcpListener,
    /// The same listening socket (a duplicate descriptor), non-blocking.
    backlog: socket2::Socket,
    /// `accept4` flags of the connections taken from the backlog.
    flags: libc::c_int,
    burst: u32,
    /// A whole burst was taken: yield before accepting more. The epoll driver's accept
    /// does not wait while the listener stays ready, so under a connect flood only this
    /// lets the thread's established connections and timers run.
    yield_first: bool,
}

impl Acceptor {
    /// `uring`: the thread runs the io_uring driver. Its reads and splices need a blocking
    /// socket, as its own accept gives (on an `O_NONBLOCK` one they fail with EAGAIN
    /// instead of waiting); the epoll driver needs a non-blocking one.
    pub fn new(l: std::net::TcpListener, uring: bool) -> std::io::Result<Self> {
        let backlog = socket2::Socket::from(l.try_clone()?);
        backlog.set_nonblocking(true)?;
        let flags = match uring {
            true => libc::SOCK_CLOEXEC,
            false => libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        };
        Ok(Self {
            listener: monoio::net::TcpListener::from_std(l)?,
            backlog,
            flags,
            burst: 0,
            yield_first: false,
        })
    }

    pub async fn accept(&mut self) -> std::io::Result<(monoio::net::TcpStream, SocketAddr)> {
        while self.burst > 0 {
            self.burst -= 1;
            match self.backlog.accept4(self.flags) {
                Ok((s, addr)) => {
                    self.yield_first = self.burst == 0;
                    // A TCP listener's peers always have an IP address.
                    let Some(addr) = addr.as_socket() else {
                        continue;
                    };
                    let s = monoio::net::TcpStream::from_std(s.into())?;
                    return Ok((s, addr));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.burst = 0,
                // That connection's own trouble: try the next one.
                Err(e) if one_connections_error(&e) => {}
                Err(e) => {
                    self.burst = 0;
                    return Err(e);
                }
            }
        }
        if std::mem::take(&mut self.yield_first) {
            crate::net::notify::yield_now().await;
        }
        loop {
            match self.listener.accept().await {
                Ok(got) => {
                    self.burst = ACCEPT_BURST;
                    return Ok(got);
                }
                Err(e) if one_connections_error(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Errors of `accept` that concern the one connection it took (aborted, or a network
/// error already pending on it, as accept(2) lists them): the listener is fine.
fn one_connections_error(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ENETDOWN
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// `TCP_DEFER_ACCEPT`: MQTT clients speak first (CONNECT, a TLS ClientHello), so a
/// connection is queued for `accept` only once its first bytes are in. The thread is then
/// woken once per connection, not twice (accept, then data), and the first read finds
/// the bytes already there. A client that connects and stays silent is accepted when the
/// kernel gives up waiting (after about a second), then meets the CONNECT timeout.
fn defer_accept(s: &socket2::Socket) {
    use std::os::fd::AsRawFd;
    let secs: libc::c_int = 1;
    // SAFETY: setsockopt reads `secs`, a live local of the size passed, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("TCP_DEFER_ACCEPT: {}", std::io::Error::last_os_error());
    }
}

pub type Bound = (Vec<Vec<std::net::TcpListener>>, Vec<SocketAddr>);

/// Binds each address once per thread. "Address in use" is retried for up to a second:
/// right after a previous broker on the same port exits while clients keep connecting,
/// the kernel briefly refuses the bind (seen in about 1 start in 5 under a connect flood);
/// a port that another process really listens on still fails, just a second later.
/// `deferred`: accept a connection only once it has sent something (`TCP_DEFER_ACCEPT`).
pub fn bind_all(addrs: &[SocketAddr], threads: usize, deferred: bool) -> anyhow::Result<Bound> {
    let mut attempt = 0;
    loop {
        match try_bind_all(addrs, threads, deferred) {
            Ok(b) => return Ok(b),
            Err(e) if attempt < 10 && is_addr_in_use(&e) => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_addr_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    })
}

fn try_bind_all(addrs: &[SocketAddr], threads: usize, deferred: bool) -> anyhow::Result<Bound> {
    let mut per_thread: Vec<Vec<std::net::TcpListener>> =
        (0..threads).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for &addr in addrs {
        probe_free(addr)?;
        let first = bind_reuseport(addr, deferred)?;
        let actual = first.local_addr()?;
        bound.push(actual);
        per_thread[0].push(first);
        for t in per_thread.iter_mut().skip(1) {
            t.push(bind_reuseport(actual, deferred)?);
        }
    }
    Ok((per_thread, bound))
}

/// A TCP socket for `addr`'s family with SO_REUSEADDR (IPv6 sockets IPv6 only, so that
/// `[::]` and `0.0.0.0` can both be listeners).
fn tcp_socket(addr: SocketAddr) -> anyhow::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let s = Socket::new(domain, Type::STREAM, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    Ok(s)
}
