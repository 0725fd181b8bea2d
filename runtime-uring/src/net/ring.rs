//! A shard's own io_uring for connection data (the completion-based data path).
//!
//! monoio's driver keys exactly one completion to each submission, so the operations that
//! make io_uring pay here, a multishot receive (one submission, a completion per arrival)
//! into a provided-buffer ring, do not fit it. This ring sits beside monoio's: monoio still
//! runs the tasks, timers, accepts and cross-thread wake-ups; this one carries the bytes of
//! plain connections:
//! - every connection's socket is a registered (fixed) file, and our own descriptor is
//!   closed once it is registered: the slot is the connection's socket;
//! - reads are multishot receives into one buffer ring per shard, so an idle connection
//!   holds no buffer, and no submission per read;
//! - writes of all connections made ready in a turn are queued here and go to the kernel
//!   with one `io_uring_enter` ([`DataRing::submit`]).
//!
//! Completions posted while the thread sleeps in monoio's ring signal an eventfd
//! registered here, which a monoio read waits on (see `broker::ring_conn`).

use io_uring::{cqueue, squeue, types::BufRingEntry, IoUring};
use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicU16, Ordering};

/// Size of one provided receive buffer: what one completion carries at most.
pub const BUF_SIZE: usize = 8 * 1024;
/// Provided buffers per shard (a power of two). Their pages become resident only once the
/// kernel fills them; a busy shard touches them all (2 MiB).
const BUF_COUNT: u16 = 64;
/// The buffer group of the shard's receive buffers.
pub const BUF_GROUP: u16 = 0;
/// Submission queue size; completions get four times as many entries (a multishot
/// receive posts many per submission).
const SQ_ENTRIES: u32 = 4096;
/// Registered file slots at most per shard (a socket beyond them is served the readiness
/// way); the kernel's table costs 8 bytes per slot.
const MAX_SLOTS: u32 = 1 << 18;

/// What a submission was: the low byte of its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Recv = 1,
    Send = 2,
    Cancel = 3,
    Shutdown = 4,
    Close = 5,
}

/// One completion, decoded.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub op: Option<Op>,
    pub slot: u32,
    pub generation: u32,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// The provided buffer this completion filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// More completions follow for the same submission (a multishot still armed).
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

/// The user data naming `op` on the connection in `slot`, `generation`.
pub fn user_data(op: Op, slot: u32, generation: u32) -> u64 {
    u64::from(op as u8) | (u64::from(slot) << 8) | (u64::from(generation) << 32)
}

fn decode(ud: u64, result: i32, flags: u32) -> Completion {
    let op = match ud & 0xff {
        1 => Some(Op::Recv),
        2 => Some(Op::Send),
        3 => Some(Op::Cancel),
        4 => Some(Op::Shutdown),
        5 => Some(Op::Close),
        _ => None,
    };
    Completion {
        op,
        slot: ((ud >> 8) & 0xff_ffff) as u32,
        generation: (ud >> 32) as u32,
        result,
        flags,
    }
}

/// The provided-buffer ring: `BUF_COUNT` entries the kernel takes buffers from, and the
/// buffers themselves.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    data: Box<[u8]>,
    /// Our copy of the ring's tail (the kernel reads the shared one).
    tail: Cell<u16>,
}

impl BufRing {
    fn new() -> io::Result<Self> {
        let size = usize::from(BUF_COUNT) * std::mem::size_of::<BufRingEntry>();
        let layout = Layout::from_size_align(size, 4096).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size; the memory is zeroed, a valid value for
        // the plain C entries, and freed with the same layout in `drop`.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let ring = Self {
            entries,
            layout,
            // Zeroed through calloc: untouched pages cost no memory until the kernel
            // writes into them.
            data: vec![0u8; usize::from(BUF_COUNT) * BUF_SIZE].into_boxed_slice(),
            tail: Cell::new(0),
        };
        for bid in 0..BUF_COUNT {
            ring.give(bid);
        }
        Ok(ring)
    }

    /// Hands buffer `bid` (back) to the kernel.
    fn give(&self, bid: u16) {
        let tail = self.tail.get();
        let idx = usize::from(tail & (BUF_COUNT - 1));
        let addr = self.data.as_ptr() as u64 + u64::from(bid) * BUF_SIZE as u64;
        // SAFETY: `idx` < BUF_COUNT, inside the allocation; the entry is beyond the tail
        // the kernel sees, so only we touch it. The setters leave `resv` alone: in entry 0
        // it is the ring's tail.
        unsafe {
            let e = &mut *self.entries.add(idx);
            e.set_addr(addr);
            e.set_len(BUF_SIZE as u32);
            e.set_bid(bid);
        }
        let next = tail.wrapping_add(1);
        self.tail.set(next);
        // SAFETY: the tail field lies in entry 0 of our live, aligned allocation; the
        // kernel reads it concurrently, hence the atomic release store (the entry written
        // above is visible before the new tail).
        unsafe {
            let t = BufRingEntry::tail(self.entries).cast_mut();
            AtomicU16::from_ptr(t).store(next, Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid` (the kernel filled them and handed the
    /// buffer to us: it does not write there until we give it back).
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * BUF_SIZE;
        self.data
            .get(start..start + len.min(BUF_SIZE))
            .unwrap_or_default()
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that used it is gone
        // (DataRing drops its IoUring first).
        unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) };
    }
}

/// A shard's data ring (see the module documentation).
pub struct DataRing {
    // Declared first: dropped (the kernel ring torn down) before the buffers it uses.
    ring: RefCell<IoUring>,
    bufs: BufRing,
    /// Slots freed by closed connections, then never used ones from `next_slot`.
    free_slots: RefCell<Vec<u32>>,
    next_slot: Cell<u32>,
    slots: u32,
    /// Submissions that did not fit a full queue even after a submit.
    backlog: RefCell<Vec<squeue::Entry>>,
    /// Completions are decoded here before they are handled (handling submits more).
    reaped: RefCell<Vec<Completion>>,
}

impl DataRing {
    /// A ring with a sparse file table and a buffer ring; the eventfd it signals for
    /// completions that arrive outside our own submissions is returned with it.
    pub fn new() -> io::Result<(Self, OwnedFd)> {
        // Multishot receive came with Linux 6.0; an older kernel that has the rest
        // (buffer rings: 5.19) would fail every receive, so it is not used at all.
        if !kernel_at_least(6, 0) {
            return Err(io::Error::other(
                "multishot receive needs Linux 6.0 or later",
            ));
        }
        let build = |coop: bool| {
            let mut b = IoUring::builder();
            b.setup_cqsize(SQ_ENTRIES * 4);
            if coop {
                // See `runtime::setup_flags`.
                b.setup_coop_taskrun();
            }
            b.build(SQ_ENTRIES)
        };
        let ring = build(true).or_else(|_| build(false))?;
        let slots = nofile_limit().clamp(1, MAX_SLOTS);
        ring.submitter().register_files_sparse(slots)?;
        let bufs = BufRing::new()?;
        // SAFETY: the entries stay allocated until `bufs` drops, after the ring (field
        // order of DataRing).
        unsafe {
            ring.submitter()
                .register_buf_ring(bufs.entries as u64, BUF_COUNT, BUF_GROUP)?;
        }
        // SAFETY: eventfd(2) with valid flags; a non-negative result is a new descriptor
        // we own.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` was just created and is owned by nothing else.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        // Every completion signals it: `eventfd_async` would signal only those of io-wq
        // workers, not the receives and sends our own thread completes in task work.
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        let ring = Self {
            ring: RefCell::new(ring),
            bufs,
            free_slots: RefCell::new(Vec::new()),
            next_slot: Cell::new(0),
            slots,
            backlog: RefCell::new(Vec::new()),
            reaped: RefCell::new(Vec::new()),
        };
        Ok((ring, efd))
    }

    /// Registers `fd` as a fixed file and closes our descriptor: the slot is the socket
    /// from now on. The descriptor comes back when no slot is free.
    pub fn register(&self, fd: OwnedFd) -> Result<u32, OwnedFd> {
        let fresh = || {
            let n = self.next_slot.get();
            (n < self.slots).then(|| {
                self.next_slot.set(n + 1);
                n
            })
        };
        let Some(slot) = self.free_slots.borrow_mut().pop().or_else(fresh) else {
            return Err(fd);
        };
        let ring = self.ring.borrow();
        match ring
            .submitter()
            .register_files_update(slot, &[fd.as_raw_fd()])
        {
            Ok(_) => Ok(slot),
            Err(e) => {
                tracing::debug!("cannot register a socket with the data ring: {e}");
                self.free_slots.borrow_mut().push(slot);
                Err(fd)
            }
        }
    }

    /// A slot whose file was closed (its `Close` completed) can be used again.
    pub fn free_slot(&self, slot: u32) {
        self.free_slots.borrow_mut().push(slot);
    }

    /// Queues a submission; a full queue is submitted first.
    pub fn push(&self, entry: squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        if !self.backlog.borrow().is_empty() {
            self.backlog.borrow_mut().push(entry);
            return;
        }
        // SAFETY: every entry we build points only at memory that lives until its
        // completion: fixed slots, the shard's buffer ring, and send states that the
        // connection keeps until the send completes.
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            return;
        }
        if let Err(e) = ring.submit() {
            tracing::debug!("data ring submit: {e}");
        }
        // SAFETY: as above.
        if unsafe { ring.submission().push(&entry) }.is_err() {
            self.backlog.borrow_mut().push(entry);
        }
    }

    /// Hands the queued submissions to the kernel (one `io_uring_enter`), if any.
    pub fn submit(&self) {
        let mut ring = self.ring.borrow_mut();
        loop {
            let queued = !ring.submission().is_empty();
            let overflow = ring.submission().cq_overflow();
            if !queued && !overflow {
                return;
            }
            match ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return,
                Err(e) => {
                    tracing::debug!("data ring submit: {e}");
                    return;
                }
            }
            let mut backlog = self.backlog.borrow_mut();
            if backlog.is_empty() {
                return;
            }
            let mut sq = ring.submission();
            let mut moved = 0;
            for e in backlog.iter() {
                // SAFETY: as in `push`.
                if unsafe { sq.push(e) }.is_err() {
                    break;
                }
                moved += 1;
            }
            backlog.drain(..moved);
        }
    }

    /// Takes the completions posted so far (at most `max`).
    pub fn reap(&self, max: usize) -> Vec<Completion> {
        let mut out = self.reaped.take();
        out.clear();
        let mut ring = self.ring.borrow_mut();
        for cqe in ring.completion().take(max) {
            out.push(decode(cqe.user_data(), cqe.result(), cqe.flags()));
        }
        out
    }

    /// Returns the vector [`reap`](Self::reap) gave (its capacity is reused).
    pub fn reaped_done(&self, v: Vec<Completion>) {
        self.reaped.replace(v);
    }

    /// The bytes a receive completion put in buffer `bid`.
    pub fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        self.bufs.bytes(bid, len)
    }

    /// Hands a provided buffer back once its bytes are used.
    pub fn give_back(&self, bid: u16) {
        if bid < BUF_COUNT {
            self.bufs.give(bid);
        }
    }
}

/// Whether the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: utsname is plain bytes, all-zero valid; uname fills the struct we pass.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release: String = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    release_at_least(&release, major, minor)
}

/// `release` ("6.1.0-18-amd64") is at least `major.minor`.
fn release_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// The soft limit of open files: a socket uses a slot instead of a descriptor, and the
/// kernel bounds the table by it.
fn nofile_limit() -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    u32::try_from(lim.rlim_cur).unwrap_or(MAX_SLOTS)
}

/// Takes a monoio socket's descriptor (for [`DataRing::register`]).
pub fn into_owned(stream: monoio::net::TcpStream) -> Option<OwnedFd> {
    let fd = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of this descriptor; nothing else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::release_at_least;

    #[test]
    fn kernel_releases_compare_by_major_then_minor() {
        assert!(release_at_least("6.0.0", 6, 0));
        assert!(release_at_least("6.18.3-arch1", 6, 0));
        assert!(release_at_least("6.1.0-18-amd64", 6, 0));
        assert!(!release_at_least("5.19.17", 6, 0));
        assert!(!release_at_least("5.15.0-91-generic", 6, 0));
        assert!(release_at_least("10.2", 6, 0));
        assert!(!release_at_least("garbage", 6, 0));
    }
}
