//! Admission control: the broker's `Policy` (authenticator and hooks) for the gateway.
//!
//! broker-core allocates when a connection starts, a subscription is added or a message is
//! stored, and `alloc` aborts when the arena is exhausted. Config limits (`config`) bound
//! what one client can hold; these gates bound the rest by refusing new work while the free
//! heap is below what the work could need, each with a reason the client sees:
//!
//! | gate | where | refusal |
//! |---|---|---|
//! | accept | `Hooks::on_accept` | TCP connection closed before CONNECT |
//! | connect | `Authenticator::authenticate` | CONNACK 0x88 server unavailable (3.1.1: 3) |
//! | sessions | the core's `Config::max_sessions` | CONNACK 0x97 quota exceeded (3.1.1: 3) |
//! | subscribe | `Hooks::on_subscribe` | SUBACK 0x97 (3.1.1: 0x80) |
//! | publish | `Hooks::on_message_arrived` | PUBACK/PUBREC 0x97 (3.1.1: dropped, counted) |
//!
//! The reserves are ordered so that new connections are refused first and existing clients
//! keep publishing and subscribing longest. Each reserve covers the largest amount the gated
//! operation can allocate before the next gate is consulted (see the constants).

use crate::config::{
    BRIDGE_CLIENT_ID, LISTENER_TCP, MAX_PACKET_SIZE, MAX_QUEUED_MESSAGES, MAX_SUBSCRIPTIONS,
};
use crate::heap::HeapMeter;
use alloc::boxed::Box;
use broker_core::policy::{
    Authenticator, ClientInfo, ConnectRequest, DropReason, Hooks, SessionEnd,
};
use broker_core::{ConnId, Message, PeerInfo, Policy};
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};
use critical_section::Mutex;
use mqtt_proto::{ReasonCode, SubscriptionOptions};

/// Heap one queued delivery takes in a session's queue (a `Message` handle plus the
/// delivery fields), used to bound how much one PUBLISH can make the queues grow.
pub const QUEUE_SLOT: usize = core::mem::size_of::<Message>() + 4 * core::mem::size_of::<usize>();

/// Heap a PUBLISH may need once it is admitted: its own storage (the arena chunk and a
/// retained copy) and, for every session it may reach, the growth of that session's queue
/// (a `VecDeque` doubles: at most `MAX_QUEUED_MESSAGES` slots allocated anew), plus slack for
/// the allocator's headers and fragmentation.
pub const fn publish_reserve(sessions: usize) -> usize {
    2 * MAX_PACKET_SIZE + 512 + sessions * MAX_QUEUED_MESSAGES.next_power_of_two() * QUEUE_SLOT
}

/// Heap a SUBSCRIBE may need: index nodes and the session's map entries for up to
/// `MAX_SUBSCRIPTIONS` filters, the retained backlog it pulls in, and the SUBACK.
pub const SUBSCRIBE_RESERVE_EXTRA: usize = MAX_SUBSCRIPTIONS * 160 + MAX_PACKET_SIZE;

/// Heap a CONNECT may need after authentication: the session, its map entries, the CONNACK
/// and the timers (1 KiB); plus 512 B so that, with the new session's queue counted too, the
/// connect gate stays above the subscribe gate of the clients already there (they keep
/// subscribing after new connections are refused; the first SUBSCRIBE of the new client is
/// gated by the subscribe gate itself). Checked below.
pub const CONNECT_RESERVE_EXTRA: usize = 1024 + 512;

// New connections are refused before existing clients' subscriptions: connect(s) > subscribe(s).
const _: () = assert!(
    publish_reserve(2) + CONNECT_RESERVE_EXTRA > publish_reserve(1) + SUBSCRIBE_RESERVE_EXTRA
);

/// Heap an accepted connection may need before it is authenticated: the connection state,
/// the client id and a will message (the CONNECT carrying it is at most one packet; it is
/// parsed from the slot's static buffer, so the heap holds one copy).
pub const ACCEPT_RESERVE_EXTRA: usize = 512 + MAX_PACKET_SIZE;

/// Counters of everything the gateway refused or dropped; nothing is lost without a count.
#[derive(Debug)]
#[allow(missing_docs)]
pub struct Counters {
    pub accept_refused_heap: AtomicU32,
    pub connect_refused_heap: AtomicU32,
    pub connect_refused_busy: AtomicU32,
    pub subscribe_refused_heap: AtomicU32,
    pub publish_refused_heap: AtomicU32,
    /// Deliveries to local clients dropped by the broker (queue full, expired, too large...).
    pub delivery_dropped: AtomicU32,
    /// Messages for the uplink that did not fit the bridge's queue while the uplink was
    /// down or slow.
    pub up_overflow: AtomicU32,
    /// QoS 0 messages for the uplink dropped because it was down.
    pub up_dropped_qos0: AtomicU32,
    /// Messages the upstream broker acknowledged.
    pub up_forwarded: AtomicU32,
    /// Messages the upstream broker refused (error reason code) or could not be encoded.
    pub up_rejected: AtomicU32,
    /// Messages from the upstream delivered into the local broker.
    pub down_forwarded: AtomicU32,
    /// Messages from the upstream the local broker did not take.
    pub down_dropped: AtomicU32,
    pub uplink_connects: AtomicU32,
    pub uplink_failures: AtomicU32,
}

/// The gateway's counters.
pub static COUNTERS: Counters = Counters {
    accept_refused_heap: AtomicU32::new(0),
    connect_refused_heap: AtomicU32::new(0),
    connect_refused_busy: AtomicU32::new(0),
    subscribe_refused_heap: AtomicU32::new(0),
    publish_refused_heap: AtomicU32::new(0),
    delivery_dropped: AtomicU32::new(0),
    up_overflow: AtomicU32::new(0),
    up_dropped_qos0: AtomicU32::new(0),
    up_forwarded: AtomicU32::new(0),
    up_rejected: AtomicU32::new(0),
    down_forwarded: AtomicU32::new(0),
    down_dropped: AtomicU32::new(0),
    uplink_connects: AtomicU32::new(0),
    uplink_failures: AtomicU32::new(0),
};

/// Adds one to a counter.
pub fn bump(c: &AtomicU32) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU32) -> u32 {
    c.load(Ordering::Relaxed)
}

/// Sessions the broker holds, counted by the hooks: the heap reserves grow with it. (The
/// limit on sessions itself is the core's `Config::max_sessions`.)
static SESSIONS: AtomicU32 = AtomicU32::new(0);

static METER: Mutex<Cell<Option<&'static dyn HeapMeter>>> = Mutex::new(Cell::new(None));

/// Installs the heap meter the gates read. Before this, every gate refuses.
pub fn set_meter(meter: &'static dyn HeapMeter) {
    critical_section::with(|cs| METER.borrow(cs).set(Some(meter)));
}

/// The heap meter, once installed.
pub fn meter() -> Option<&'static dyn HeapMeter> {
    critical_section::with(|cs| METER.borrow(cs).get())
}

/// Free heap now (0 before a meter is installed).
pub fn free_heap() -> usize {
    meter().map_or(0, |m| m.free())
}

/// Sessions the broker holds now.
pub fn session_count() -> usize {
    get(&SESSIONS) as usize
}

/// Free heap needed for a PUBLISH to be admitted now.
pub fn publish_reserve_now() -> usize {
    publish_reserve(session_count().max(1))
}

fn subscribe_reserve_now() -> usize {
    publish_reserve_now() + SUBSCRIBE_RESERVE_EXTRA
}

fn connect_reserve_now() -> usize {
    // One more session than now: the one this CONNECT may create.
    publish_reserve(session_count() + 1) + CONNECT_RESERVE_EXTRA
}

/// Free heap needed to accept a connection now.
pub fn accept_reserve_now() -> usize {
    connect_reserve_now() + ACCEPT_RESERVE_EXTRA
}

/// The gateway's authenticator and hooks (a zero-sized handle; the state is in statics).
#[derive(Debug, Default, Clone, Copy)]
pub struct Gate;

/// The broker policy with the gates installed.
pub fn policy() -> Policy {
    Policy {
        authenticator: Box::new(Gate),
        hooks: Box::new(Gate),
        ..Policy::default()
    }
}

/// Whether a new client connection may be accepted at all (called by the shell before it
/// hands the socket to the broker, and by the broker's `on_accept` hook).
pub fn may_accept() -> bool {
    free_heap() >= accept_reserve_now()
}

impl Authenticator for Gate {
    fn authenticate(&mut self, req: &ConnectRequest<'_>) -> Result<Option<Box<str>>, ReasonCode> {
        if req.peer.listener == LISTENER_TCP && req.client_id == BRIDGE_CLIENT_ID {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        if req.peer.listener != LISTENER_TCP {
            // The bridge's own session is created at start, before any client.
            return Ok(None);
        }
        if free_heap() < connect_reserve_now() {
            bump(&COUNTERS.connect_refused_heap);
            return Err(ReasonCode::ServerUnavailable);
        }
        Ok(None)
    }
}

impl Hooks for Gate {
    fn on_accept(&mut self, _conn: ConnId, peer: &PeerInfo) -> bool {
        if peer.listener != LISTENER_TCP {
            return true;
        }
        let ok = may_accept();
        if !ok {
            bump(&COUNTERS.accept_refused_heap);
        }
        ok
    }

    fn on_session_created(&mut self, _client: &ClientInfo<'_>) {
        bump(&SESSIONS);
    }

    fn on_session_terminated(&mut self, _client_id: &str, _why: SessionEnd) {
        // Saturating: a session restored without `on_session_created` may end too.
        // (One executor: a load and a store cannot interleave with another update.)
        SESSIONS.store(get(&SESSIONS).saturating_sub(1), Ordering::Relaxed);
    }

    fn on_subscribe(
        &mut self,
        client: &ClientInfo<'_>,
        _filter: &str,
        _options: &mut SubscriptionOptions,
    ) -> Result<(), ReasonCode> {
        if client.client_id != BRIDGE_CLIENT_ID && free_heap() < subscribe_reserve_now() {
            bump(&COUNTERS.subscribe_refused_heap);
            return Err(ReasonCode::QuotaExceeded);
        }
        Ok(())
    }

    fn on_message_arrived(
        &mut self,
        _client: &ClientInfo<'_>,
        _msg: &Message,
    ) -> Result<(), ReasonCode> {
        if free_heap() < publish_reserve_now() {
            bump(&COUNTERS.publish_refused_heap);
            return Err(ReasonCode::QuotaExceeded);
        }
        Ok(())
    }

    fn on_dropped(&mut self, client_id: &str, _msg: &Message, why: DropReason) {
        if client_id == BRIDGE_CLIENT_ID {
            if why != DropReason::SessionEnded {
                bump(&COUNTERS.up_overflow);
            }
        } else {
            bump(&COUNTERS.delivery_dropped);
        }
    }
}
