//! Session state (4.1): what outlives a network connection.

use crate::index::Hasher64;
use crate::message::Message;
use crate::policy::ConnId;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use hashbrown::HashMap;
use mqtt_proto::{ProtocolVersion, QoS, SubscriptionOptions};

/// A `VecDeque` behind a box allocated on the first push and then kept for the life of
/// the session (an empty queue costs one pointer in the session slot; reusing the box
/// keeps steady-state queueing free of allocations).
// Deliberate: the box is what makes the empty case one pointer wide.
#[allow(clippy::box_collection)]
pub(crate) struct LazyDeque<T>(Option<Box<VecDeque<T>>>);

impl<T> LazyDeque<T> {
    pub(crate) const fn new() -> Self {
        Self(None)
    }

    #[inline]
    fn deque(&mut self) -> &mut VecDeque<T> {
        self.0.get_or_insert_with(|| Box::new(VecDeque::new()))
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |d| d.len())
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|d| d.is_empty())
    }

    #[inline]
    pub(crate) fn front(&self) -> Option<&T> {
        self.0.as_ref()?.front()
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.0.as_ref()?.get(i)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.0.as_mut()?.get_mut(i)
    }

    #[inline]
    pub(crate) fn iter(&self) -> alloc::collections::vec_deque::Iter<'_, T> {
        self.0.as_ref().map(|d| d.iter()).unwrap_or_default()
    }

    #[inline]
    pub(crate) fn iter_mut(&mut self) -> alloc::collections::vec_deque::IterMut<'_, T> {
        self.0.as_mut().map(|d| d.iter_mut()).unwrap_or_default()
    }

    #[inline]
    pub(crate) fn push_back(&mut self, v: T) {
        self.deque().push_back(v);
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    #[inline]
    pub(crate) fn remove(&mut self, i: usize) -> Option<T> {
        let d = self.0.as_mut()?;
        // Acknowledgements come in order: the front, without the general shifting code.
        if i == 0 {
            d.pop_front()
        } else {
            d.remove(i)
        }
    }

    pub(crate) fn extend<I: IntoIterator<Item = T>>(&mut self, it: I) {
        self.deque().extend(it);
    }

    /// Takes the contents, keeping the box.
    pub(crate) fn take(&mut self) -> VecDeque<T> {
        self.0
            .as_mut()
            .map(|d| core::mem::take(&mut **d))
            .unwrap_or_default()
    }
}

/// A `Vec` behind a box allocated on the first push and then kept (like [`LazyDeque`]).
#[allow(clippy::box_collection)]
pub(crate) struct LazyVec<T>(Option<Box<Vec<T>>>);

impl<T> LazyVec<T> {
    pub(crate) const fn new() -> Self {
        Self(None)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    #[inline]
    pub(crate) fn iter(&self) -> core::slice::Iter<'_, T> {
        self.0.as_deref().map_or(&[][..], |v| v.as_slice()).iter()
    }

    #[inline]
    pub(crate) fn contains(&self, x: &T) -> bool
    where
        T: PartialEq,
    {
        self.iter().any(|y| y == x)
    }

    #[inline]
    pub(crate) fn push(&mut self, v: T) {
        self.0.get_or_insert_with(|| Box::new(Vec::new())).push(v);
    }

    #[inline]
    pub(crate) fn swap_remove(&mut self, i: usize) -> Option<T> {
        self.0.as_mut().map(|v| v.swap_remove(i))
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for LazyVec<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for LazyDeque<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A shared subscription group's identity: `$share/{group}/{filter}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GroupName {
    /// Share name.
    pub group: Box<str>,
    /// Filter.
    pub filter: Box<str>,
}

/// Subscription identifiers to send with one delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum SubIds {
    #[default]
    None,
    One(u32),
    /// Two or three (overlapping subscriptions): no allocation per delivery.
    Few([u32; 3], u8),
    Many(Box<[u32]>),
}

impl SubIds {
    pub(crate) fn from_opt(id: Option<u32>) -> Self {
        id.map_or(SubIds::None, SubIds::One)
    }

    pub(crate) fn as_slice(&self) -> &[u32] {
        match self {
            SubIds::None => &[],
            SubIds::One(x) => core::slice::from_ref(x),
            SubIds::Few(v, n) => v.get(..usize::from(*n)).unwrap_or_default(),
            SubIds::Many(v) => v,
        }
    }

    pub(crate) fn push(&mut self, id: u32) {
        *self = match core::mem::take(self) {
            SubIds::None => SubIds::One(id),
            SubIds::One(a) => SubIds::Few([a, id, 0], 2),
            SubIds::Few(mut v, n) if usize::from(n) < v.len() => {
                if let Some(slot) = v.get_mut(usize::from(n)) {
                    *slot = id;
                }
                SubIds::Few(v, n + 1)
            }
            SubIds::Few(v, n) => {
                let mut v = v.get(..usize::from(n)).unwrap_or_default().to_vec();
                v.push(id);
                SubIds::Many(v.into_boxed_slice())
            }
            SubIds::Many(v) => {
                let mut v = v.into_vec();
                v.push(id);
                SubIds::Many(v.into_boxed_slice())
            }
        };
    }
}

/// A session's subscriptions, boxed on the first one: a client that only publishes (most
/// sensors) pays one pointer in its session slot.
#[derive(Debug, Default)]
pub(crate) struct Subs(Option<Box<HashMap<Box<str>, SubRecord, Hasher64>>>);

impl Subs {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    pub(crate) fn contains_key(&self, filter: &str) -> bool {
        self.0.as_ref().is_some_and(|m| m.contains_key(filter))
    }

    /// Adds or replaces; `seed` keys the table's hasher when it is created.
    pub(crate) fn insert(
        &mut self,
        seed: u64,
        filter: Box<str>,
        rec: SubRecord,
    ) -> Option<SubRecord> {
        self.0
            .get_or_insert_with(|| Box::new(HashMap::with_hasher(Hasher64::with_seed(seed))))
            .insert(filter, rec)
    }

    pub(crate) fn get(&self, filter: &str) -> Option<&SubRecord> {
        self.0.as_ref()?.get(filter)
    }

    pub(crate) fn remove_entry(&mut self, filter: &str) -> Option<(Box<str>, SubRecord)> {
        self.0.as_mut()?.remove_entry(filter)
    }

    /// Every subscription (the operator's listings, a cluster's queue of a moved session).
    #[cfg(any(feature = "ops", feature = "cluster"))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &SubRecord)> {
        self.0.iter().flat_map(|m| m.iter().map(|(f, r)| (&**f, r)))
    }

    /// Takes every subscription out.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = (Box<str>, SubRecord)> {
        self.0.take().into_iter().flat_map(|m| m.into_iter())
    }
}

/// A message waiting for, or in, delivery to one session.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub msg: Message,
    /// Delivery QoS: min(published, granted).
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    pub ids: SubIds,
    /// Set when delivered through a shared subscription.
    pub group: Option<Arc<GroupName>>,
    /// Its record's number in a durable store (0: not stored).
    #[cfg(feature = "store")]
    pub seq: u64,
}

impl Queued {
    pub(crate) fn new(
        msg: Message,
        qos: QoS,
        retain: bool,
        ids: SubIds,
        group: Option<Arc<GroupName>>,
    ) -> Self {
        Self {
            msg,
            qos,
            retain,
            ids,
            group,
            #[cfg(feature = "store")]
            seq: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum InflightState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitComp,
}

#[derive(Debug, Clone)]
pub(crate) struct Inflight {
    pub pid: u16,
    pub item: Queued,
    pub state: InflightState,
    /// Must be (re)sent on the current connection.
    pub needs_send: bool,
    /// Was sent at least once (a resend carries DUP, [MQTT-3.3.1-1]).
    pub sent_once: bool,
}

#[derive(Debug, Clone)]
// The options and identifier are what a durable store records.
#[cfg_attr(not(feature = "store"), allow(dead_code))]
pub(crate) struct SubRecord {
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
    pub group: Option<Arc<GroupName>>,
}

#[derive(Debug)]
pub(crate) struct PendingWill {
    pub will: crate::conn::WillSpec,
    pub at: Instant,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: Box<str>,
    pub client_hash: u64,
    pub username: Option<Box<str>>,
    pub protocol: ProtocolVersion,
    pub conn: Option<ConnId>,
    /// Seconds; `u32::MAX` never expires.
    pub expiry_interval: u32,
    pub expire_at: Option<Instant>,
    pub subs: Subs,
    pub queue: LazyDeque<Queued>,
    pub queued_bytes: usize,
    /// Retained messages found at subscribe time, sent (within the client's flow control)
    /// before the queue.
    pub backlog: LazyDeque<Queued>,
    pub inflight: LazyDeque<Inflight>,
    pub next_pid: u16,
    /// Some entry of `inflight` has `needs_send` (set at resumption, cleared by the
    /// `poll_transmit` that finds none left): spares it a walk of the window otherwise.
    pub resend_pending: bool,
    /// `alloc_pid` skipped an identifier still in flight since `inflight` was last empty:
    /// its pids may no longer be in circular order (see `alloc_pid`).
    pub pid_lapped: bool,
    /// QoS 2 packet identifiers received and PUBREC'd, awaiting PUBREL.
    pub rx_qos2: LazyVec<u16>,
    /// Boxed: most sessions never have one.
    pub pending_will: Option<Box<PendingWill>>,
    pub stamp: u64,
    pub slot: u32,
    pub origin: u64,
    /// Messages waiting for room in the queue (flow control), with the holds they keep.
    pub overflow: LazyDeque<crate::broker::flow::Parked>,
    /// Since when the overflow has made no progress.
    pub overflow_since: Option<Instant>,
    /// No progress for the stall timeout: dropped for instead of parked.
    pub stalled: bool,
    /// Its records are in the durable store (a persistent session, store enabled).
    #[cfg(feature = "store")]
    pub stored: bool,
    /// When its last connection's CONNECT succeeded, and whether with Clean Start (the
    /// operator's listings).
    #[cfg(feature = "ops")]
    pub connected_at: Instant,
    #[cfg(feature = "ops")]
    pub clean_start: bool,
}

impl Session {
    pub(crate) fn new(client_id: Box<str>, client_hash: u64, origin: u64) -> Self {
        Self {
            client_id,
            client_hash,
            username: None,
            protocol: ProtocolVersion::V3_1_1,
            conn: None,
            expiry_interval: 0,
            expire_at: None,
            subs: Subs::default(),
            queue: LazyDeque::new(),
            queued_bytes: 0,
            backlog: LazyDeque::new(),
            inflight: LazyDeque::new(),
            next_pid: 1,
            resend_pending: false,
            pid_lapped: false,
            rx_qos2: LazyVec::new(),
            pending_will: None,
            stamp: 0,
            slot: 0,
            origin,
            overflow: LazyDeque::new(),
            overflow_since: None,
            stalled: false,
            #[cfg(feature = "store")]
            stored: false,
            #[cfg(feature = "ops")]
            connected_at: Instant::from_millis(0),
            #[cfg(feature = "ops")]
            clean_start: false,
        }
    }

    /// A packet identifier not used by any message in flight ([MQTT-2.2.1-3]).
    ///
    /// Identifiers are handed out in circular order and `inflight` only grows at its back
    /// with the identifier just allocated, so its pids are the allocation order. Until an
    /// allocation goes a whole lap round (65,535 of them while the front entry waits) they
    /// all lie between the front's pid and the last one allocated, and the next candidate
    /// can only collide with the front's: one comparison instead of a walk of the window on
    /// every delivery. After a lap (a skip), the walk until the window is empty again.
    pub(crate) fn alloc_pid(&mut self) -> u16 {
        if self.inflight.is_empty() {
            self.pid_lapped = false;
        }
        if !self.pid_lapped {
            let next = self.next_pid;
            if self.inflight.front().is_none_or(|f| f.pid != next) {
                return self.take_pid();
            }
            self.pid_lapped = true;
        }
        loop {
            let pid = self.take_pid();
            if !self.inflight.iter().any(|f| f.pid == pid) {
                return pid;
            }
        }
    }

    /// The next identifier in circular order (1..=65535), advancing past it.
    fn take_pid(&mut self) -> u16 {
        let pid = self.next_pid;
        self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
        pid
    }

    pub(crate) fn inflight_pos(&self, pid: u16) -> Option<usize> {
        // Acknowledgements usually come in order: the front is the likely hit.
        self.inflight.iter().position(|f| f.pid == pid)
    }
}
