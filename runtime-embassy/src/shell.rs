//! The state every task shares: the broker shard, its transmit buffer and one wake-up slot
//! per connection. Everything runs on one executor, so a `RefCell` is enough; a borrow is
//! never held across an `.await`.

use crate::config::CLIENTS;
use broker_core::{Broker, ConnId, Event, Instant, PeerInfo, TxBuf};
use core::cell::{Cell, RefCell};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::signal::Signal;

/// Index of the bridge's slot in [`Shell::slots`].
pub const BRIDGE_SLOT: usize = CLIENTS;

/// What the broker asked of one connection, and the task that serves it.
pub struct Slot {
    /// The broker connection this slot's task serves now.
    pub conn: Cell<Option<ConnId>>,
    /// `Event::Output` arrived: call `poll_transmit`.
    pub output: Cell<bool>,
    /// `Event::Close` arrived: write what is left, then close.
    pub close: Cell<bool>,
    /// Wakes the slot's task.
    pub wake: Signal<NoopRawMutex, ()>,
}

impl Slot {
    const fn new() -> Self {
        Self {
            conn: Cell::new(None),
            output: Cell::new(false),
            close: Cell::new(false),
            wake: Signal::new(),
        }
    }

    /// Starts serving `conn`.
    pub fn attach(&self, conn: ConnId) {
        self.conn.set(Some(conn));
        self.output.set(false);
        self.close.set(false);
        self.wake.reset();
    }

    /// Stops serving any connection.
    pub fn detach(&self) {
        self.conn.set(None);
        self.output.set(false);
        self.close.set(false);
    }
}

/// The shared state.
pub struct Shell {
    broker: RefCell<Broker>,
    tx: RefCell<TxBuf>,
    /// One per client task, then the bridge's.
    pub slots: [Slot; CLIENTS + 1],
    /// Wakes the timer task (the next deadline may have moved).
    pub timer: Signal<NoopRawMutex, ()>,
    /// Client slots serving a connection now.
    pub busy: Cell<usize>,
    /// Signalled when a client slot frees up.
    pub slot_freed: Signal<NoopRawMutex, ()>,
}

impl core::fmt::Debug for Slot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Slot")
            .field("conn", &self.conn.get())
            .field("output", &self.output.get())
            .field("close", &self.close.get())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for Shell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shell")
            .field("slots", &self.slots)
            .field("busy", &self.busy.get())
            .finish_non_exhaustive()
    }
}

/// The current time as broker-core sees it.
pub fn now() -> Instant {
    Instant::from_millis(embassy_time::Instant::now().as_millis())
}

/// A broker deadline as an embassy-time instant.
pub fn to_embassy(at: Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_millis(at.as_millis())
}

impl Shell {
    /// The shared state around a broker shard.
    pub fn new(broker: Broker) -> Self {
        Self {
            broker: RefCell::new(broker),
            tx: RefCell::new(TxBuf::new()),
            slots: [const { Slot::new() }; CLIENTS + 1],
            timer: Signal::new(),
            busy: Cell::new(0),
            slot_freed: Signal::new(),
        }
    }

    /// A new client connection (`handle_accept`).
    #[inline(never)]
    pub fn accept(&self, peer: PeerInfo) -> Option<ConnId> {
        self.with_broker(|b, now| b.handle_accept(now, peer)).ok()
    }

    /// Bytes from `conn` (`handle_bytes`); returns how many were consumed.
    #[inline(never)]
    pub fn input(&self, conn: ConnId, bytes: &[u8]) -> usize {
        self.with_broker(|b, now| b.handle_bytes(conn, now, bytes))
    }

    /// `conn`'s socket is closed (`handle_closed`).
    #[inline(never)]
    pub fn closed(&self, conn: ConnId) {
        self.with_broker(|b, now| b.handle_closed(conn, now));
    }

    /// Runs `f` on the broker, then hands every event it raised to the slot concerned and
    /// wakes the timer task.
    pub fn with_broker<R>(&self, f: impl FnOnce(&mut Broker, Instant) -> R) -> R {
        let r = {
            let mut b = self.broker.borrow_mut();
            let r = f(&mut b, now());
            while let Some(ev) = b.poll_event() {
                self.route(ev);
            }
            r
        };
        self.timer.signal(());
        r
    }

    /// Read-only access (metrics, deadlines).
    pub fn peek<R>(&self, f: impl FnOnce(&Broker) -> R) -> R {
        f(&self.broker.borrow())
    }

    fn route(&self, ev: Event) {
        let (conn, close) = match ev {
            // Resumed input (broker-core's `backpressure`, off in the firmware) is fed again
            // after the output it comes with.
            Event::Output(c) | Event::ResumeInput(c) => (c, false),
            Event::Close(c) => (c, true),
            // One shard: nothing is ever forwarded; no store, no cluster (events of the
            // core's features a workspace build may enable are never raised here).
            _ => return,
        };
        if let Some(slot) = self.slots.iter().find(|s| s.conn.get() == Some(conn)) {
            slot.output.set(true);
            if close {
                slot.close.set(true);
            }
            slot.wake.signal(());
        }
    }

    /// Runs `poll_transmit` for `conn` with `budget` bytes and hands every chunk to `sink`
    /// (synchronously; the shared buffer is empty again afterwards). Returns whether the
    /// broker has more for this connection, or `Err` if `sink` failed (the only failure:
    /// the connection is gone, nothing to describe).
    #[inline(never)]
    #[allow(clippy::result_unit_err)]
    pub fn transmit(
        &self,
        conn: ConnId,
        budget: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), ()>,
    ) -> Result<bool, ()> {
        let mut tx = self.tx.borrow_mut();
        tx.clear();
        let t = self.with_broker(|b, now| b.poll_transmit(conn, now, &mut tx, budget));
        let mut result = Ok(t.more);
        for chunk in tx.chunks() {
            if sink(chunk).is_err() {
                result = Err(());
                break;
            }
        }
        tx.clear();
        result
    }
}
