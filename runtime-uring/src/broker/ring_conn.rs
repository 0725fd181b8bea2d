//! Connections on the shard's data ring (`net::ring`): plain TCP on io_uring.
//!
//! Input arrives as completions of one multishot receive per connection, into the shard's
//! provided buffers, and is handed to the core at once (what it does not take waits in the
//! connection's `pending`). Output is one `SendMsg` in flight per connection at most, from a
//! send state lent by the shard for as long as it is in flight; all sends queued in a turn
//! reach the kernel with one submit. An idle connection holds no buffer, no task and no
//! send state.
//!
//! Back-pressure is the readiness path's: input the core pauses (a held publisher, too
//! many acknowledgements unwritten) or a full peer shard's channel waits in `pending`;
//! past [`INPUT_LIMIT`] the receive is cancelled, so the socket is not read and TCP holds
//! the client back, and it is armed again once the core took the input.

use super::conn::{self, ConnIo, Sink};
use super::shard::Shard;
use crate::net::iovec::TxIoVecs;
use crate::net::notify::LocalNotify;
use crate::net::ring::{self, Completion, DataRing, Op};
use broker_core::PeerInfo;
use io_uring::{opcode, types::Fixed};
use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::rc::Rc;

/// Input waiting for the core beyond which the connection's receive is cancelled.
const INPUT_LIMIT: usize = 64 * 1024;
/// Completions handled per round before the other tasks run.
const ROUND: usize = 1024;
/// Input bytes handled between two submits: the output they caused leaves before more
/// input is taken, as the readiness path did with one 64 KiB read per turn. Measured with
/// fan-out and pairs at QoS 0 (RESULTS.md): 8 KiB per turn costs a system call per
/// buffer, 128 KiB and more let subscribers' queues overflow before their sends go.
const TURN_BYTES: usize = 64 * 1024;
/// Send states kept for reuse.
const SEND_POOL: usize = 64;

/// The I/O state of a connection on the data ring.
pub struct RingSock {
    slot: u32,
    generation: u32,
    /// The multishot receive is armed (until a completion without `more`).
    recv_armed: Cell<bool>,
    /// Its cancellation was asked for.
    recv_cancelled: Cell<bool>,
    /// The send in flight and what it writes.
    send: RefCell<Option<Box<SendState>>>,
    /// Input the core has not taken yet.
    pending: RefCell<Vec<u8>>,
    /// A task offers `pending` to the core (waiting for it to take more).
    feeding: Cell<bool>,
    /// The client's input ended (EOF or an error): the core knows.
    input_ended: Cell<bool>,
    /// The slot's close was submitted.
    released: Cell<bool>,
    /// Shut down for writing already (no second final flush).
    write_shut: Cell<bool>,
    /// Shutdowns and cancellations in flight: the slot is closed only after them. A
    /// shutdown runs on an io-uring worker and finds its file by slot when it runs, so
    /// it must not outlive the slot's socket (it would shut down the next connection's).
    controls: Cell<u8>,
}

/// A send in flight: the bytes and the `msghdr` the kernel reads them through, at a fixed
/// address until the send completes.
struct SendState {
    v: TxIoVecs,
    msg: libc::msghdr,
    /// Bytes the submitted iovecs describe (a send covers at most `MAX_IOV` chunks, so
    /// bytes may remain after a send the socket took whole).
    submitted: usize,
}

impl Default for SendState {
    fn default() -> Self {
        Self {
            v: TxIoVecs::default(),
            // SAFETY: msghdr is a plain C struct for which all-zero bytes are valid (null
            // pointers, zero lengths).
            msg: unsafe { std::mem::zeroed() },
            submitted: 0,
        }
    }
}

/// The shard's data ring and the connections on it, by slot.
pub struct RingShard {
    pub ring: DataRing,
    table: RefCell<Vec<Option<Rc<ConnIo>>>>,
    generations: RefCell<Vec<u32>>,
    // Boxed: a state moves between this pool and connections, and the kernel reads it
    // at its address while a send is in flight.
    #[allow(clippy::vec_box)]
    sends: RefCell<Vec<Box<SendState>>>,
    /// Work was queued for the ring task (submissions, or completions to reap).
    kick: LocalNotify,
    /// Receive completions not handled yet, in order (see [`run`]).
    receives: RefCell<std::collections::VecDeque<Completion>>,
    /// Connections whose receive ended for want of buffers.
    starved: RefCell<Vec<Rc<ConnIo>>>,
}

impl RingShard {
    /// The shard's ring and the eventfd it signals.
    pub fn new() -> std::io::Result<(Self, OwnedFd)> {
        let (ring, efd) = DataRing::new()?;
        let shard = Self {
            ring,
            table: RefCell::new(Vec::new()),
            generations: RefCell::new(Vec::new()),
            sends: RefCell::new(Vec::new()),
            kick: LocalNotify::default(),
            receives: RefCell::new(std::collections::VecDeque::new()),
            starved: RefCell::new(Vec::new()),
        };
        Ok((shard, efd))
    }

    fn push(&self, entry: io_uring::squeue::Entry) {
        self.ring.push(entry);
        self.kick.notify();
    }

    fn lookup(&self, c: &Completion) -> Option<Rc<ConnIo>> {
        let table = self.table.borrow();
        let io = table.get(c.slot as usize)?.as_ref()?;
        match &io.sink {
            Sink::Ring(s) if s.generation == c.generation => Some(io.clone()),
            _ => None,
        }
    }
}

/// Serves a plain connection on the ring; the socket comes back when no slot is free.
pub fn serve(
    shard: &Rc<Shard>,
    rs: &Rc<RingShard>,
    fd: OwnedFd,
    peer: PeerInfo,
    initial: Vec<u8>,
) -> Result<(), (OwnedFd, PeerInfo, Vec<u8>)> {
    let slot = match rs.ring.register(fd) {
        Ok(slot) => slot,
        Err(fd) => return Err((fd, peer, initial)),
    };
    let now = shard.now();
    let accepted = shard.broker.borrow_mut().handle_accept(now, peer);
    let id = match accepted {
        Ok(id) => id,
        Err(e) => {
            tracing::debug!("connection refused: {e:?}");
            rs.push(
                opcode::Close::new(Fixed(slot))
                    .build()
                    .user_data(ring::user_data(Op::Close, slot, u32::MAX)),
            );
            return Ok(());
        }
    };
    let generation = {
        let mut gens = rs.generations.borrow_mut();
        let i = slot as usize;
        if gens.len() <= i {
            gens.resize(i + 1, 0);
        }
        let g = gens.get_mut(i).map_or(0, |g| {
            *g = g.wrapping_add(1) & 0x7fff_ffff;
            *g
        });
        g
    };
    let sock = RingSock {
        slot,
        generation,
        recv_armed: Cell::new(false),
        recv_cancelled: Cell::new(false),
        send: RefCell::new(None),
        pending: RefCell::new(Vec::new()),
        feeding: Cell::new(false),
        input_ended: Cell::new(false),
        released: Cell::new(false),
        write_shut: Cell::new(false),
        controls: Cell::new(0),
    };
    let io = conn::register(shard, id, Sink::Ring(sock), Default::default());
    {
        let mut table = rs.table.borrow_mut();
        let i = slot as usize;
        if table.len() <= i {
            table.resize(i + 1, None);
        }
        if let Some(e) = table.get_mut(i) {
            *e = Some(io.clone());
        }
    }
    if !initial.is_empty() {
        input(shard, rs, &io, &initial);
        shard.pump();
    }
    arm(rs, &io);
    Ok(())
}

fn sock(io: &ConnIo) -> Option<&RingSock> {
    match &io.sink {
        Sink::Ring(s) => Some(s),
        _ => None,
    }
}

/// Arms the connection's multishot receive, unless it is armed or its input ended.
fn arm(rs: &RingShard, io: &ConnIo) {
    let Some(s) = sock(io) else { return };
    if s.recv_armed.get() || s.input_ended.get() || s.released.get() {
        return;
    }
    s.recv_armed.set(true);
    s.recv_cancelled.set(false);
    let e = opcode::RecvMulti::new(Fixed(s.slot), ring::BUF_GROUP)
        .build()
        .user_data(ring::user_data(Op::Recv, s.slot, s.generation));
    rs.push(e);
}

/// Stops reading the connection (its input waits for the core).
fn cancel_recv(rs: &RingShard, s: &RingSock) {
    if !s.recv_armed.get() || s.recv_cancelled.replace(true) {
        return;
    }
    let target = ring::user_data(Op::Recv, s.slot, s.generation);
    s.controls.set(s.controls.get().saturating_add(1));
    rs.push(
        opcode::AsyncCancel::new(target)
            .build()
            .user_data(ring::user_data(Op::Cancel, s.slot, s.generation)),
    );
}

/// Bytes from the client: to the core now, straight from the receive buffer, unless
/// input waits before them. A buffer is taken whole (at most `BUF_SIZE` bytes, a bounded
/// turn); only a partial packet at its end, or what the core paused on, is copied out.
fn input(shard: &Rc<Shard>, rs: &Rc<RingShard>, io: &Rc<ConnIo>, mut data: &[u8]) {
    let Some(s) = sock(io) else { return };
    if s.feeding.get() || shard.blocked.get() {
        s.pending.borrow_mut().extend_from_slice(data);
        return behind(shard, rs, io, s);
    }
    shard.take_from_peers();
    // First the packet a previous buffer ended in the middle of: completed from the
    // front of this one.
    while !s.pending.borrow().is_empty() && !data.is_empty() {
        let missing =
            broker_core::admission::bytes_missing(&s.pending.borrow(), shard.max_packet_size);
        let (head, rest) = data.split_at(missing.min(data.len()));
        s.pending.borrow_mut().extend_from_slice(head);
        data = rest;
        let pending = std::mem::take(&mut *s.pending.borrow_mut());
        let (used, paused) = offer(shard, io, &pending);
        let left = pending.get(used..).unwrap_or_default();
        if paused || (!left.is_empty() && missing == 0) {
            // Paused (or a packet the core will refuse): everything waits.
            let mut p = s.pending.borrow_mut();
            p.extend_from_slice(left);
            p.extend_from_slice(data);
            drop(p);
            return behind(shard, rs, io, s);
        }
        let mut pending = pending;
        pending.drain(..used.min(pending.len()));
        *s.pending.borrow_mut() = pending;
    }
    let (used, paused) = offer(shard, io, data);
    let rest = data.get(used..).unwrap_or_default();
    if !rest.is_empty() {
        s.pending.borrow_mut().extend_from_slice(rest);
    }
    if paused {
        behind(shard, rs, io, s);
    }
}

/// Offers `data` to the core until it takes no more: the bytes taken, and whether it
/// paused on a complete packet (else what is left is a partial packet).
fn offer(shard: &Shard, io: &ConnIo, data: &[u8]) -> (usize, bool) {
    let now = shard.now();
    let mut used = 0;
    let mut b = shard.broker.borrow_mut();
    loop {
        let rest = data.get(used..).unwrap_or_default();
        if rest.is_empty() {
            return (used, false);
        }
        let taken = b.handle_input(io.id, now, rest);
        if taken.consumed == 0 {
            return (used, taken.paused);
        }
        used += taken.consumed;
    }
}

/// Input waits in `pending`: a task offers it to the core, and past the limit the socket
/// is not read meanwhile.
fn behind(shard: &Rc<Shard>, rs: &Rc<RingShard>, io: &Rc<ConnIo>, s: &RingSock) {
    if s.pending.borrow().len() >= INPUT_LIMIT {
        cancel_recv(rs, s);
    }
    if !s.feeding.replace(true) {
        monoio::spawn(feed(shard.clone(), rs.clone(), io.clone()));
    }
}

/// Offers the waiting input to the core until it took every complete packet, waiting for
/// the core (or a full peer) between tries; then reads the socket again.
async fn feed(shard: Rc<Shard>, rs: Rc<RingShard>, io: Rc<ConnIo>) {
    let Some(s) = sock(&io) else { return };
    loop {
        shard.wait_unblocked().await;
        shard.take_from_peers();
        let mut pending = std::mem::take(&mut *s.pending.borrow_mut());
        if pending.is_empty() {
            break;
        }
        // All of it at once (bounded by the receive limit), then one drain: draining
        // after every batch of packets would move the rest each time.
        let (used, paused) = offer(&shard, &io, &pending);
        shard.pump();
        pending.drain(..used.min(pending.len()));
        {
            let mut p = s.pending.borrow_mut();
            pending.extend_from_slice(&p);
            *p = pending;
        }
        if !paused || io.closing.get() || s.input_ended.get() {
            break;
        }
        io.drained.notified().await;
    }
    s.feeding.set(false);
    if s.input_ended.get() {
        // The end of input was seen while feeding: the core learns it now.
        input_closed(&shard, &rs, &io);
        return;
    }
    if s.pending.borrow().capacity() > INPUT_LIMIT && s.pending.borrow().is_empty() {
        *s.pending.borrow_mut() = Vec::new();
    }
    arm(&rs, &io);
}

/// The client's input ended: the core learns it, the socket is shut down, and the slot
/// is closed once nothing is in flight.
fn input_closed(shard: &Rc<Shard>, rs: &RingShard, io: &Rc<ConnIo>) {
    let Some(s) = sock(io) else { return };
    s.input_ended.set(true);
    if s.feeding.get() {
        return;
    }
    *s.pending.borrow_mut() = Vec::new();
    if shard.conns.borrow().contains_key(&io.id) {
        conn::closed(shard, io);
    }
    release(rs, io);
}

/// Closes the slot once neither a receive nor a send is in flight on it.
fn release(rs: &RingShard, io: &ConnIo) {
    let Some(s) = sock(io) else { return };
    if !s.input_ended.get()
        || s.recv_armed.get()
        || s.send.borrow().is_some()
        || s.controls.get() > 0
        || s.released.replace(true)
    {
        return;
    }
    rs.push(
        opcode::Close::new(Fixed(s.slot))
            .build()
            .user_data(ring::user_data(Op::Close, s.slot, s.generation)),
    );
}

/// Shuts the socket down (`how` as for shutdown(2)); its receive then ends.
pub fn shutdown(rs: &RingShard, io: &ConnIo, how: i32) {
    let Some(s) = sock(io) else { return };
    if s.released.get() {
        return;
    }
    if how == libc::SHUT_WR && s.write_shut.replace(true) {
        return;
    }
    s.controls.set(s.controls.get().saturating_add(1));
    rs.push(
        opcode::Shutdown::new(Fixed(s.slot), how)
            .build()
            .user_data(ring::user_data(Op::Shutdown, s.slot, s.generation)),
    );
}

/// The core has output for the connection: a send is queued unless one is in flight (its
/// completion takes the next output).
pub fn output(shard: &Rc<Shard>, rs: &RingShard, io: &Rc<ConnIo>) {
    let Some(s) = sock(io) else { return };
    if s.send.borrow().is_some() || s.released.get() {
        return;
    }
    let mut st = rs.sends.borrow_mut().pop().unwrap_or_default();
    send_next(shard, io, st.as_mut());
    if st.v.tx.is_empty() {
        put_send(rs, st);
        if io.closing.get() {
            io.finish_output(shard);
        }
        return;
    }
    submit_send(rs, s, st);
}

/// Takes the core's next output into `st` unless it already holds some; false when there
/// is none.
fn send_next(shard: &Shard, io: &ConnIo, st: &mut SendState) -> bool {
    // A few tries: the core may encode nothing in a round (it dropped or admitted
    // messages) and still have more.
    for _ in 0..4 {
        if !st.v.tx.is_empty() {
            return true;
        }
        if !conn::transmit(shard, io, &mut st.v, shard.write_budget) {
            return false;
        }
    }
    !st.v.tx.is_empty()
}

fn put_send(rs: &RingShard, mut st: Box<SendState>) {
    st.v.tx.clear();
    let mut pool = rs.sends.borrow_mut();
    if pool.len() < SEND_POOL {
        pool.push(st);
    }
}

fn submit_send(rs: &RingShard, s: &RingSock, mut st: Box<SendState>) {
    st.v.prepare();
    let iov = st.v.iovecs();
    st.submitted = iov.iter().map(|v| v.iov_len).sum();
    st.msg.msg_iov = iov.as_ptr().cast_mut();
    st.msg.msg_iovlen = iov.len() as _;
    let e = opcode::SendMsg::new(Fixed(s.slot), &st.msg)
        .flags(libc::MSG_NOSIGNAL as u32)
        .build()
        .user_data(ring::user_data(Op::Send, s.slot, s.generation));
    // The state moves into the connection before the entry can reach the kernel; the box
    // keeps its address.
    *s.send.borrow_mut() = Some(st);
    rs.push(e);
}

/// A send completed: the rest, or the core's next output, goes next.
fn sent(shard: &Rc<Shard>, rs: &RingShard, io: &Rc<ConnIo>, result: i32) {
    let Some(s) = sock(io) else { return };
    let Some(mut st) = s.send.borrow_mut().take() else {
        return;
    };
    let Ok(n) = usize::try_from(result) else {
        // The client is gone (or reset): no more output.
        put_send(rs, st);
        io.drained.notify();
        shutdown(rs, io, libc::SHUT_RDWR);
        return release(rs, io);
    };
    st.v.tx.advance(n);
    io.drained.notify();
    // A short send means the socket was full: a closing connection's client that does not
    // read is cut off now (see `conn::close`). Bytes beyond the iovecs of this send are
    // not a sign of it.
    let full = n < st.submitted;
    io.set_write_blocked(full);
    if full && io.closing.get() {
        put_send(rs, st);
        shutdown(rs, io, libc::SHUT_RDWR);
        return release(rs, io);
    }
    if s.input_ended.get() && !io.closing.get() {
        put_send(rs, st);
        return release(rs, io);
    }
    if st.v.tx.is_empty() && shard.hold_output(io.id) {
        // Held until the peers have their messages (see `Shard::release_outputs`).
        put_send(rs, st);
        return;
    }
    if send_next(shard, io, st.as_mut()) {
        return submit_send(rs, s, st);
    }
    put_send(rs, st);
    if io.closing.get() {
        io.finish_output(shard);
    }
    release(rs, io);
}

/// Handles one completion of the shard's ring.
fn complete(shard: &Rc<Shard>, rs: &Rc<RingShard>, c: Completion) {
    let io = rs.lookup(&c);
    match c.op {
        Some(Op::Recv) => {
            if let Some(bid) = c.buffer() {
                if let (Some(io), Ok(n)) = (&io, usize::try_from(c.result)) {
                    let data = rs.ring.bytes(bid, n);
                    // Copied out only when the core cannot take it now.
                    input(shard, rs, io, data);
                }
                rs.ring.give_back(bid);
            }
            let Some(io) = io else { return };
            let Some(s) = sock(&io) else { return };
            if c.more() {
                return;
            }
            s.recv_armed.set(false);
            match c.result {
                // Out of buffers (they come back as this round is handled), or a
                // multishot the kernel ended: armed again unless the input waits.
                r if r == -libc::ENOBUFS => {
                    // Armed again once the queued receives gave their buffers back.
                    rs.starved.borrow_mut().push(io.clone());
                }
                r if r > 0 => {
                    if !s.feeding.get() {
                        arm(rs, &io);
                    }
                }
                // Cancelled to hold the client back: `feed` arms it again.
                r if r == -libc::ECANCELED && !s.input_ended.get() => {
                    if !s.feeding.get() {
                        arm(rs, &io);
                    }
                }
                // End of input, or an error.
                _ => input_closed(shard, rs, &io),
            }
        }
        Some(Op::Send) => {
            if let Some(io) = io {
                sent(shard, rs, &io, c.result);
            }
        }
        Some(Op::Close) if c.generation == u32::MAX || io.is_some() => {
            if let Some(e) = rs.table.borrow_mut().get_mut(c.slot as usize) {
                *e = None;
            }
            rs.ring.free_slot(c.slot);
        }
        Some(Op::Cancel | Op::Shutdown) => {
            if let Some(io) = io {
                if let Some(s) = sock(&io) {
                    s.controls.set(s.controls.get().saturating_sub(1));
                }
                release(rs, &io);
            }
        }
        Some(Op::Close) | None => {}
    }
}

/// The ring's task: submits what the shard queued and handles what completed, in rounds
/// between the other tasks, and sleeps when neither is there.
///
/// Completions come in one queue, and a busy shard always has receives waiting: a send's
/// completion, the turn of its connection's next send, would wait behind them, and
/// subscribers' queues would fill while input is taken. So everything but receives is
/// handled as soon as it is reaped, and receives a batch at a time, each batch followed by
/// the output it caused and a submit. Receives hold their buffers while they wait, so the
/// kernel reads no further ahead than the buffer ring (it ends a receive that finds none;
/// that connection is armed again after the batch).
pub async fn run(shard: Rc<Shard>, rs: Rc<RingShard>) {
    loop {
        rs.kick.notified().await;
        let mut handled = 0;
        loop {
            rs.ring.submit();
            let done = rs.ring.reap(usize::MAX);
            let mut n = 0;
            for &c in &done {
                if c.op == Some(Op::Recv) {
                    rs.receives.borrow_mut().push_back(c);
                } else {
                    complete(&shard, &rs, c);
                    n += 1;
                }
            }
            rs.ring.reaped_done(done);
            let mut bytes = 0;
            while bytes < TURN_BYTES {
                let next = rs.receives.borrow_mut().pop_front();
                let Some(c) = next else { break };
                bytes += usize::try_from(c.result).unwrap_or(0).max(1);
                complete(&shard, &rs, c);
                n += 1;
            }
            if n == 0 {
                rs.ring.submit();
                break;
            }
            // The output and messages to other shards of the whole batch go out together.
            shard.pump();
            let starved = std::mem::take(&mut *rs.starved.borrow_mut());
            for io in starved {
                if sock(&io).is_some_and(|s| !s.feeding.get()) {
                    arm(&rs, &io);
                }
            }
            handled += n;
            if handled >= ROUND {
                handled = 0;
                crate::net::notify::yield_now().await;
            }
        }
    }
}

/// Wakes the ring's task when completions arrive while the thread sleeps in monoio's
/// ring (the eventfd the data ring signals for them).
pub async fn watch(rs: Rc<RingShard>, efd: OwnedFd) {
    let file = match monoio::fs::File::from_std(std::fs::File::from(efd)) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("data ring: cannot watch its eventfd: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 8];
    loop {
        let (res, b) = file.read_at(buf, u64::MAX).await;
        buf = b;
        if let Err(e) = res {
            // Without this wake-up an idle shard would not see its connections' input:
            // try again (after a pause, should the error repeat).
            tracing::error!("data ring: reading its eventfd failed: {e}");
            monoio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        rs.kick.notify();
    }
}

/// The core released a held publisher: its waiting input is offered again.
pub fn resume(shard: &Rc<Shard>, rs: &Rc<RingShard>, io: &Rc<ConnIo>) {
    let Some(s) = sock(io) else { return };
    if !s.pending.borrow().is_empty() && !s.feeding.get() {
        behind(shard, rs, io, s);
    }
}
