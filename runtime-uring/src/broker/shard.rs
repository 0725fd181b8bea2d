//! One shard: a broker-core `Broker` on one thread with its own io_uring ring, the
//! connections it serves, and its channels to the other shards.

use super::conn::ConnIo;
use crate::net::iovec::TxIoVecs;
use crate::net::notify::LocalNotify;
use broker_core::{Broker, ConnId, Event, Instant, ShardMsg};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Capacity, in batches, of each shard's data channel: a shard that fills a peer's channel
/// stops reading its own sockets until the peer catches up, so a fast shard cannot bury a
/// slower one under an unbounded backlog.
pub const DATA_CHANNEL_BATCHES: usize = 64;

/// The capacity of each shard's data channel: [`DATA_CHANNEL_BATCHES`], or for tests
/// `PETREL_TEST_DATA_CHANNEL_BATCHES` (a small channel makes cross-shard back-pressure,
/// and so the ordering rules under it, happen with little traffic).
pub fn data_channel_batches() -> usize {
    std::env::var("PETREL_TEST_DATA_CHANNEL_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DATA_CHANNEL_BATCHES)
}

/// Messages between shards, one batch per `pump` and destination (bounded channel).
pub type DataBatch = Vec<ShardMsg>;

/// What other threads send to a shard on its control channel (unbounded, rare).
pub enum Inbox {
    /// A connection whose CONNECT names a client this shard owns.
    Handoff(Box<super::accept::Handoff>),
    /// The same, its socket kept by the accepting shard (placement "forward").
    Remote(Box<super::relay::Remote>),
    /// Stop: disconnect everyone (0x8B), flush, exit.
    Shutdown,
    /// New TLS configurations (one per listener, `None` for plain ones) after SIGHUP.
    ReloadTls(Vec<Option<Arc<rustls::ServerConfig>>>),
    /// Wake this shard's task (see `wake`).
    Wake(std::task::Waker),
    /// The store thread's answer: batches written, or messages read back.
    Store(crate::store::Reply),
    /// The broker's memory limit is reached (true) or no longer (false).
    MemoryPressure(bool),
    /// Run `pump` (sent to itself by a shard whose writer task left work for it).
    Pump,
    /// Run this for a `BrokerHandle` (the embedding and admin API).
    Call(super::handle::Call),
    /// From the cluster thread: another node's message, retained update or interest, or
    /// the confirmation of a message forwarded to one.
    Cluster(crate::cluster::ClusterIn),
}

/// A shard's ends of the channels between threads.
pub struct Channels {
    /// Control channels of every shard (ours included).
    pub peers: Vec<async_channel::Sender<Inbox>>,
    /// Our control channel.
    pub inbox: async_channel::Receiver<Inbox>,
    /// Data channels of every shard.
    pub data_out: Vec<async_channel::Sender<DataBatch>>,
    /// Our data channel.
    pub data_in: async_channel::Receiver<DataBatch>,
}

/// A listener as a shard sees it.
#[derive(Debug)]
pub struct ListenerState {
    /// Current TLS configuration (swapped on reload; live connections keep theirs).
    pub tls: RefCell<Option<Arc<rustls::ServerConfig>>>,
    /// Expect a PROXY protocol v2 header first.
    pub proxy_protocol: bool,
    /// MQTT over WebSocket.
    pub websockets: bool,
}

/// A shard's life, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving connections.
    Serving,
    /// Shutdown was requested (possibly seen by `pump`, not yet by the inbox loop).
    StopRequested,
    /// Closing every connection (MQTT 5: DISCONNECT 0x8B): no accepts, no lingering.
    Closing,
}

/// Size of a shard's read buffer: one read takes at most this much from a socket.
const RX_BUF: usize = 64 * 1024;

/// Control messages (connections handed over, messages from other nodes, calls) one
/// event-loop turn takes at most.
const INBOX_TURN: usize = 1024;

/// Per-thread state shared by the shard's tasks (single-threaded: `Rc` + `RefCell`, and no
/// borrow is ever held across an `.await`).
pub struct Shard {
    pub id: u16,
    pub shards: u16,
    pub broker: RefCell<Broker>,
    pub conns: RefCell<HashMap<ConnId, Rc<ConnIo>>>,
    pub peers: Vec<async_channel::Sender<Inbox>>,
    inbox: async_channel::Receiver<Inbox>,
    /// The sending side of `inbox`.
    own_inbox: async_channel::Sender<Inbox>,
    /// Data channels: to every shard, and ours.
    pub data_out: Vec<async_channel::Sender<DataBatch>>,
    data_in: async_channel::Receiver<DataBatch>,
    /// A peer's data channel is full: readers wait for `unblocked`.
    pub blocked: Cell<bool>,
    pub unblocked: crate::net::notify::LocalEvent,
    flusher: Cell<bool>,
    draining: Cell<bool>,
    /// Where the shard is in its life (see [`Phase`]).
    pub phase: Cell<Phase>,
    /// Wakes the inbox loop when shutdown is requested.
    pub stop_signal: LocalNotify,
    outbox: RefCell<Vec<Vec<ShardMsg>>>,
    /// The outbox holds a message that must reach its peer before the next output is
    /// written (see `ShardMsg::orders_output`).
    urgent: Cell<bool>,
    /// Such a message waits for room in a full peer channel: no output is written until
    /// it is sent (the connections that had some wait in `held`; writers in
    /// [`Shard::wait_released`]).
    holding: Cell<bool>,
    held: RefCell<Vec<ConnId>>,
    /// Outputs and closes of one `pump` round (reused).
    events: Cell<Vec<Event>>,
    pub timer: LocalNotify,
    armed: Cell<Option<Instant>>,
    epoch: std::time::Instant,
    pub listeners: Vec<ListenerState>,
    pub max_packet_size: usize,
    pub connect_timeout: Duration,
    pub write_budget: usize,
    pub placement: super::Placement,
    /// Connections whose sockets we keep for another shard (placement "forward").
    pub relayed: Cell<usize>,
    last_stats: Cell<u64>,
    /// The one read buffer of the shard's connections (each reads, then hands the bytes on
    /// before the next read starts).
    rx_buf: Cell<Vec<u8>>,
    /// The transmit buffer of immediate writes (see `conn::output`), reused.
    tx: Cell<TxIoVecs>,
    /// The store thread's channel (`persistence = true`).
    store: Option<async_channel::Sender<crate::store::Request>>,
    /// Emptied record buffers the store thread handed back.
    store_bufs: RefCell<Vec<Vec<u8>>>,
    /// The cluster thread, when this broker is a node of a cluster.
    pub cluster: Option<crate::cluster::Link>,
    /// The Kafka thread, when `[[kafka]]` is configured.
    pub kafka: Option<crate::kafka::Link>,
    /// The data ring of plain connections (io_uring driver).
    pub ring: Option<Rc<super::ring_conn::RingShard>>,
    /// An `Inbox::Pump` is on its way, or `pump` is running (and acts on it anyway).
    pump_requested: Cell<bool>,
    /// Bytes and MQTT packets taken from the core for sockets (operators' counters).
    pub bytes_sent: Cell<u64>,
    pub packets_sent: Cell<u64>,
    /// Answers to handle calls, sent at the end of the next `pump`.
    answers: RefCell<Vec<super::handle::Answer>>,
}

impl Shard {
    pub fn new(
        id: u16,
        broker: Broker,
        channels: Channels,
        listeners: Vec<ListenerState>,
        epoch: std::time::Instant,
        placement: super::Placement,
        store: Option<async_channel::Sender<crate::store::Request>>,
    ) -> Self {
        let Channels {
            peers,
            inbox,
            data_out,
            data_in,
        } = channels;
        let cfg = broker.config();
        let shards = cfg.shards;
        let max_packet_size = cfg.max_packet_size as usize;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        Self {
            id,
            shards,
            broker: RefCell::new(broker),
            conns: RefCell::new(HashMap::new()),
            outbox: RefCell::new((0..peers.len()).map(|_| Vec::new()).collect()),
            urgent: Cell::new(false),
            holding: Cell::new(false),
            held: RefCell::new(Vec::new()),
            events: Cell::new(Vec::new()),
            own_inbox: peers
                .get(usize::from(id))
                .cloned()
                .unwrap_or_else(|| async_channel::unbounded().0),
            inbox,
            data_out,
            data_in,
            blocked: Cell::new(false),
            unblocked: crate::net::notify::LocalEvent::default(),
            flusher: Cell::new(false),
            draining: Cell::new(false),
            phase: Cell::new(Phase::Serving),
            stop_signal: LocalNotify::default(),
            peers,
            timer: LocalNotify::default(),
            armed: Cell::new(None),
            epoch,
            listeners,
            max_packet_size,
            connect_timeout,
            write_budget: 256 * 1024,
            placement,
            relayed: Cell::new(0),
            last_stats: Cell::new(0),
            rx_buf: Cell::new(Vec::new()),
            tx: Cell::new(TxIoVecs::default()),
            store,
            store_bufs: RefCell::new(Vec::new()),
            cluster: None,
            kafka: None,
            ring: None,
            pump_requested: Cell::new(false),
            bytes_sent: Cell::new(0),
            packets_sent: Cell::new(0),
            answers: RefCell::new(Vec::new()),
        }
    }

    /// The shard's read buffer, lent to one read (a fresh one if it is lent already).
    pub fn take_rx_buf(&self) -> Vec<u8> {
        let buf = self.rx_buf.take();
        if buf.len() == RX_BUF {
            buf
        } else {
            vec![0; RX_BUF]
        }
    }

    /// Gives the read buffer back.
    pub fn put_rx_buf(&self, buf: Vec<u8>) {
        self.rx_buf.set(buf);
    }

    /// The shard's transmit buffer, lent to one immediate write.
    pub fn take_tx(&self) -> TxIoVecs {
        self.tx.take()
    }

    /// Gives the transmit buffer back (empty).
    pub fn put_tx(&self, v: TxIoVecs) {
        self.tx.set(v);
    }

    /// The core's clock: milliseconds since the process started (shared by all shards).
    pub fn now(&self) -> Instant {
        Instant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    /// Handles a batch of messages from another shard.
    pub fn handle_data(&self, msgs: DataBatch) {
        let now = self.now();
        let mut b = self.broker.borrow_mut();
        for m in msgs {
            b.handle_shard_msg(now, m);
        }
    }

    /// Handles one control message from another thread.
    pub fn handle_inbox(self: &Rc<Self>, msg: Inbox) {
        match msg {
            Inbox::Handoff(h) => super::accept::adopt(self, *h),
            Inbox::Remote(r) => super::conn::serve_remote(self.clone(), *r),
            Inbox::ReloadTls(tls) => {
                for (l, t) in self.listeners.iter().zip(tls) {
                    *l.tls.borrow_mut() = t;
                }
            }
            Inbox::Wake(w) => w.wake(),
            Inbox::Cluster(m) => self.cluster_in(m),
            Inbox::MemoryPressure(on) => self.broker.borrow_mut().set_memory_pressure(on),
            // The caller pumps after every control message.
            Inbox::Pump => {}
            Inbox::Call(f) => {
                // What peers sent before the caller's previous answer (a subscription's
                // interest) is applied before this call runs.
                for _ in 0..DATA_CHANNEL_BATCHES {
                    match self.data_in.try_recv() {
                        Ok(m) => self.handle_data(m),
                        Err(_) => break,
                    }
                }
                let answer = f(self);
                self.answers.borrow_mut().push(answer);
            }
            Inbox::Store(crate::store::Reply::Committed(batch, buf)) => {
                self.broker.borrow_mut().handle_store_committed(batch);
                let mut bufs = self.store_bufs.borrow_mut();
                if bufs.len() < 4 {
                    bufs.push(buf);
                }
            }
            Inbox::Store(crate::store::Reply::Loaded(client, after, msgs)) => {
                self.broker
                    .borrow_mut()
                    .handle_store_loaded(&client, after, msgs);
            }
            Inbox::Shutdown => {
                if self.phase.get() == Phase::Serving {
                    self.phase.set(Phase::StopRequested);
                }
                self.stop_signal.notify();
            }
        }
    }

    /// Takes everything other threads have sent so far. Called before the core sees new
    /// bytes from a socket too: a peer's message sent before those bytes were (a
    /// subscription whose SUBACK the publisher has seen) must be applied before them.
    pub fn take_from_peers(self: &Rc<Self>) {
        // What is there now, not what senders add meanwhile, and a turn's worth at most:
        // a busy cluster thread must not keep this shard from its sockets (the rest is
        // taken next turn; what orders socket input comes on `data_in`).
        for _ in 0..self.inbox.len().min(INBOX_TURN) {
            match self.inbox.try_recv() {
                Ok(m) => self.handle_inbox(m),
                Err(_) => break,
            }
        }
        // At most what the channel holds: senders may refill it meanwhile.
        for _ in 0..DATA_CHANNEL_BATCHES {
            match self.data_in.try_recv() {
                Ok(m) => self.handle_data(m),
                Err(_) => break,
            }
        }
    }

    /// Acts on everything the core asked for since the last call: wakes writers, starts
    /// closes, sends shard messages (one batch per destination) and re-arms the timer.
    ///
    /// It also takes what other shards sent and fires due core timers itself: monoio looks
    /// at wake-ups from other threads and at its timers only when it parks, and a busy
    /// shard (always some task ready) never parks.
    pub fn pump(self: &Rc<Self>) {
        // Until the end of this call, writers need not ask for another.
        self.pump_requested.set(true);
        if !self.draining.replace(true) {
            self.take_from_peers();
            let now = self.now();
            let due = self
                .broker
                .borrow()
                .poll_timeout()
                .is_some_and(|t| t <= now);
            if due {
                self.broker.borrow_mut().handle_timeout(now);
            }
            self.draining.set(false);
            if now.as_millis() >= self.last_stats.get() + 1000
                && tracing::enabled!(tracing::Level::DEBUG)
            {
                self.last_stats.set(now.as_millis());
                let b = self.broker.borrow();
                let m = b.metrics();
                tracing::debug!(
                    shard = self.id,
                    conns = b.connection_count(),
                    inbox = self.data_in.len(),
                    blocked = self.blocked.get(),
                    received = m.publish_received,
                    sent = m.publish_sent,
                    dropped_full = m.dropped_queue_full,
                    held = m.publishers_held,
                    stalled = m.subscribers_stalled,
                    "stats"
                );
            }
        }
        // Forwards first, outputs after: what an output answers (a SUBACK) may depend on
        // a peer knowing first (the new subscription), and the core may list the output
        // before the forward. Published messages need no such order.
        let mut events = self.events.take();
        loop {
            loop {
                let ev = self.broker.borrow_mut().poll_event();
                let Some(ev) = ev else { break };
                match ev {
                    Event::ToShard { to, msg } if to >= self.shards => {
                        if let Some(k) = self.kafka.as_ref().filter(|k| k.shard == to) {
                            let publisher = match &msg {
                                ShardMsg::Publish { msg, .. } => {
                                    crate::kafka::publisher(msg.origin)
                                }
                                _ => None,
                            };
                            k.send(msg, publisher);
                            continue;
                        }
                        // The cluster link or a remote node.
                        if let Some(l) = &self.cluster {
                            l.send(crate::cluster::FromShard::Msg { to, msg });
                        }
                    }
                    Event::ToShard { to, msg } => {
                        if msg.orders_output() {
                            self.urgent.set(true);
                        }
                        if let Some(q) = self.outbox.borrow_mut().get_mut(usize::from(to)) {
                            q.push(msg);
                        }
                    }
                    ev => events.push(ev),
                }
            }
            // Even with no event this round: a connection whose writer is already active
            // raises none for its SUBACK, and that writer must be held too.
            if self.urgent.replace(false) {
                self.flush_outbox();
                // At shutdown nothing waits for peers (they may have stopped reading):
                // the final DISCONNECTs go out.
                if self.flusher.get() && self.phase.get() != Phase::Closing {
                    self.holding.set(true);
                }
            }
            if events.is_empty() {
                break;
            }
            for ev in events.drain(..) {
                match ev {
                    Event::Output(c) => {
                        let io = self.conns.borrow().get(&c).cloned();
                        if let Some(io) = io {
                            super::conn::output(self, &io);
                        }
                    }
                    Event::Close(c) => {
                        let io = self.conns.borrow().get(&c).cloned();
                        match io {
                            Some(io) => super::conn::close(self, &io),
                            // Not served by a task (yet): nothing to flush.
                            None => {
                                let now = self.now();
                                self.broker.borrow_mut().handle_closed(c, now);
                            }
                        }
                    }
                    Event::ResumeInput(c) => {
                        let io = self.conns.borrow().get(&c).cloned();
                        if let Some(io) = io {
                            super::conn::resume_input(self, &io);
                        }
                    }
                    // Already queued in the outbox above.
                    Event::ToShard { .. } => {}
                    Event::ClusterAck { token } => {
                        if let Some(l) = &self.cluster {
                            l.send(crate::cluster::FromShard::Ack { token });
                        }
                    }
                    Event::StoreLoad { client, after, max } => {
                        // After this turn's records, so the read sees them.
                        self.submit_store_batch();
                        if let Some(tx) = &self.store {
                            let load = crate::store::Load {
                                shard: self.id,
                                client,
                                after,
                                max,
                            };
                            let _ = tx.try_send(crate::store::Request::Load(load));
                        }
                    }
                }
            }
        }
        // Do not keep a burst's worth of room for good.
        if events.capacity() > 1024 {
            events = Vec::new();
        }
        self.events.set(events);
        self.flush_outbox();
        self.submit_store_batch();
        self.pump_requested.set(false);
        let answers = std::mem::take(&mut *self.answers.borrow_mut());
        for a in answers {
            a();
        }
        let next = self.broker.borrow().poll_timeout();
        let armed = self.armed.get();
        if next.is_some() && (armed.is_none() || next < armed) {
            self.timer.notify();
        }
    }

    fn cluster_in(&self, m: crate::cluster::ClusterIn) {
        use crate::cluster::ClusterIn;
        let now = self.now();
        let mut b = self.broker.borrow_mut();
        match m {
            ClusterIn::Publish {
                frame,
                publisher_hash,
                token,
            } => {
                if !b.handle_cluster_publish(now, &frame, publisher_hash, token) {
                    tracing::warn!("cluster: an invalid message from another node was dropped");
                    // Nothing will deliver it: its sender must not wait.
                    if let (Some(token), Some(l)) = (token, &self.cluster) {
                        l.send(crate::cluster::FromShard::Ack { token });
                    }
                }
            }
            ClusterIn::Retain { frame } => {
                if !b.handle_cluster_retain(now, &frame) {
                    tracing::warn!("cluster: an invalid retained update was dropped");
                }
            }
            ClusterIn::Shared {
                frame,
                share,
                token,
            } => {
                if !b.handle_cluster_shared(now, &frame, &share, token) {
                    tracing::warn!("cluster: an invalid shared delivery was dropped");
                    if let (Some(token), Some(l)) = (token, &self.cluster) {
                        l.send(crate::cluster::FromShard::Ack { token });
                    }
                }
            }
            ClusterIn::Group { slot, share, add } => {
                if !b.handle_cluster_group(slot, &share, add) {
                    tracing::warn!("cluster: an invalid group name \"{share}\" was ignored");
                }
            }
            ClusterIn::Shard(msg) => b.handle_shard_msg(now, msg),
            ClusterIn::Restore {
                session,
                frames,
                done,
            } => {
                let id = session.client_id.clone();
                b.restore_stored(now, session);
                let queued = frames
                    .iter()
                    .filter(|f| b.queue_for_session(now, &id, f))
                    .count();
                if queued > 0 {
                    tracing::info!(
                        "cluster: {queued} message(s) kept for \"{id}\" while its node was gone are queued"
                    );
                }
                let _ = done.try_send(());
            }
            ClusterIn::Queue { client_id, frame } => {
                b.queue_for_session(now, &client_id, &frame);
            }
        }
    }

    /// A writer task's `poll_transmit` left events or store records (which only `pump`
    /// acts on): the shard's loop pumps soon.
    pub fn request_pump(&self) {
        if !self.pump_requested.replace(true) {
            let _ = self.own_inbox.try_send(Inbox::Pump);
        }
    }

    /// Hands this turn's store records to the store thread (one batch per turn: the group
    /// commit); what waits for them is released when it reports them written.
    fn submit_store_batch(&self) {
        let Some(tx) = &self.store else {
            return;
        };
        let mut buf = self.store_bufs.borrow_mut().pop().unwrap_or_default();
        match self.broker.borrow_mut().take_store_batch(&mut buf) {
            Some(batch) => {
                let job = crate::store::Job {
                    shard: self.id,
                    batch,
                    records: buf,
                };
                if tx.try_send(crate::store::Request::Write(job)).is_err() {
                    tracing::error!("the store thread is gone: acknowledgements stay held");
                }
            }
            None => self.store_bufs.borrow_mut().push(buf),
        }
    }

    /// Sends each destination's batch; a full channel keeps it and blocks reading.
    fn flush_outbox(self: &Rc<Self>) {
        if self.flusher.get() {
            // The flusher sends everything queued, in order; a batch sent from here could
            // overtake the one it is waiting to send.
            return;
        }
        if self.try_send_outbox(false).0 {
            self.blocked.set(true);
            if !self.flusher.replace(true) {
                monoio::spawn(self.clone().flush_blocked());
            }
        }
    }

    /// Sends every destination's batch that its channel has room for; a batch that does
    /// not fit stays queued. Returns whether one did not fit and, when `take_full`, the
    /// first of those taken out of the outbox for the caller to wait on.
    fn try_send_outbox(&self, take_full: bool) -> (bool, Option<(usize, DataBatch)>) {
        let mut full = false;
        let mut taken = None;
        let mut outbox = self.outbox.borrow_mut();
        for (to, q) in outbox.iter_mut().enumerate() {
            if q.is_empty() {
                continue;
            }
            let Some(tx) = self.data_out.get(to) else {
                continue;
            };
            match tx.try_send(std::mem::take(q)) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(batch)) => {
                    full = true;
                    if take_full && taken.is_none() {
                        taken = Some((to, batch));
                    } else {
                        *q = batch;
                    }
                }
                Err(async_channel::TrySendError::Closed(_)) => {}
            }
        }
        (full, taken)
    }

    /// Waits until every peer took its batch, then lets the readers go again. Peers with
    /// room get theirs at once each round; the wait is for one that has none.
    async fn flush_blocked(self: Rc<Self>) {
        while let (_, Some((to, batch))) = self.try_send_outbox(true) {
            if let Some(tx) = self.data_out.get(to) {
                // Waits for room; the peer keeps draining whatever it is doing.
                let _ = super::wake::woken_here(self.own_inbox(), tx.send(batch)).await;
            }
        }
        self.flusher.set(false);
        self.blocked.set(false);
        self.release_outputs();
        self.pump();
    }

    /// Ends a hold: writers go on and the held outputs are written.
    pub fn release_outputs(self: &Rc<Self>) {
        self.holding.set(false);
        self.unblocked.notify_all();
        let held = std::mem::take(&mut *self.held.borrow_mut());
        for c in held {
            let io = self.conns.borrow().get(&c).cloned();
            if let Some(io) = io {
                super::conn::output(self, &io);
            }
        }
    }

    /// True while outputs are held back (see `holding`): `output` then notes the
    /// connection, to be written once the peers have their messages.
    pub fn hold_output(&self, c: ConnId) -> bool {
        if self.holding.get() {
            self.held.borrow_mut().push(c);
        }
        self.holding.get()
    }

    /// This shard's own inbox (for [`super::wake::woken_here`]).
    pub fn own_inbox(&self) -> &async_channel::Sender<Inbox> {
        &self.own_inbox
    }

    /// Waits while outputs are held back (writer tasks, before taking more output).
    pub async fn wait_released(&self) {
        while self.holding.get() {
            self.unblocked.wait().await;
        }
    }

    /// Waits while a peer's channel is full (called by readers before reading more).
    pub async fn wait_unblocked(&self) {
        while self.blocked.get() {
            self.unblocked.wait().await;
        }
    }

    /// Sleeps until the core's next deadline (or an earlier one appears), then fires it.
    pub async fn run_timer(self: Rc<Self>) {
        loop {
            let next = self.broker.borrow().poll_timeout();
            self.armed.set(next);
            let now = self.now();
            let wait = next.map_or(Duration::from_secs(3600), |t| t.saturating_since(now));
            if !wait.is_zero() {
                monoio::select! {
                    _ = monoio::time::sleep(wait) => {},
                    _ = self.timer.notified() => {},
                }
            }
            let now = self.now();
            self.broker.borrow_mut().handle_timeout(now);
            self.pump();
        }
    }
}
