//! What a durable store keeps (feature `store`): the core writes one batch of records per
//! shell turn (`Broker::take_store_batch`), the shell writes the batch to its engine and
//! reports it written (`Broker::handle_store_committed`), and only then do the
//! acknowledgements that depend on it go out (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK,
//! CONNACK). At start the shell reads every record back through a [`Loader`].
//!
//! A batch is a sequence of records: `op u8, space u8, key (u16 length + bytes), value (u32
//! length + bytes)`. The shell needs no more than that to write them: it puts or deletes
//! keys in one keyspace per [`Space`]. Every client's key starts with its prefix (u16
//! length + client identifier), so one session's records are a key range.

use crate::message::Message;
use crate::persist::Cursor;
use crate::policy::StoredSubscription;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::vec::Vec;
use hashbrown::HashMap;
use mqtt_proto::{ProtocolVersion, QoS};

/// The keyspaces of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Space {
    /// Client prefix → session (user name, protocol, expiry interval).
    Session = 0,
    /// Client prefix ‖ filter → subscription options and identifier.
    Sub = 1,
    /// Client prefix ‖ seq (u64 BE) → a message queued or in flight for the session.
    Msg = 2,
    /// Client prefix ‖ seq → packet identifier and state of a message in flight.
    Inflight = 3,
    /// Client prefix ‖ packet identifier → a QoS 2 message received, awaiting PUBREL.
    Qos2In = 4,
    /// Topic → retained message.
    Retained = 5,
    /// Client prefix → will of the session's connection.
    Will = 6,
}

impl Space {
    /// Every space, in the order a loader reads them (sessions first).
    pub const ALL: [Space; 7] = [
        Space::Session,
        Space::Sub,
        Space::Msg,
        Space::Inflight,
        Space::Qos2In,
        Space::Retained,
        Space::Will,
    ];

    /// The keyspace's name in an engine.
    pub fn name(self) -> &'static str {
        match self {
            Space::Session => "sessions",
            Space::Sub => "subscriptions",
            Space::Msg => "messages",
            Space::Inflight => "inflight",
            Space::Qos2In => "qos2_in",
            Space::Retained => "retained",
            Space::Will => "wills",
        }
    }

    fn from_u8(b: u8) -> Option<Space> {
        Space::ALL.get(usize::from(b)).copied()
    }
}

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Set the key (it may exist).
    Put = 1,
    /// Set a key that did not exist before this batch: a `Delete` of it later in the same
    /// commit cancels both (a message acknowledged before it was written is never written).
    Insert = 2,
    /// Remove the key.
    Delete = 3,
    /// Remove every record of a client (the key is its prefix) in every space but
    /// `Retained`.
    DeleteClient = 4,
    /// The same on this node's store only: the session went on to another node of a
    /// cluster, whose shared copy of these records stays.
    Forget = 5,
}

/// One record of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// What to do.
    pub op: Op,
    /// Where.
    pub space: Space,
    /// The key.
    pub key: &'a [u8],
    /// The value (empty for deletes).
    pub value: &'a [u8],
}

/// The records of a batch, in order. A malformed tail (impossible for a batch the core
/// wrote) ends the iteration.
pub fn records(mut buf: &[u8]) -> impl Iterator<Item = Record<'_>> {
    core::iter::from_fn(move || {
        let (&op, rest) = buf.split_first()?;
        let (&space, rest) = rest.split_first()?;
        let (kl, rest) = rest.split_at_checked(2)?;
        let (key, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes([kl[0], kl[1]])))?;
        let (vl, rest) = rest.split_at_checked(4)?;
        let n = u32::from_be_bytes([vl[0], vl[1], vl[2], vl[3]]) as usize;
        let (value, rest) = rest.split_at_checked(n)?;
        buf = rest;
        let op = match op {
            1 => Op::Put,
            2 => Op::Insert,
            3 => Op::Delete,
            4 => Op::DeleteClient,
            5 => Op::Forget,
            _ => return None,
        };
        Some(Record {
            op,
            space: Space::from_u8(space)?,
            key,
            value,
        })
    })
}

/// The longest client identifier a stored session may have (a key is at most 65,535
/// bytes: the prefix, then up to a topic filter's worth).
pub const MAX_STORED_CLIENT_ID: usize = 16 * 1024;

/// Whether a subscription of a stored session with this filter fits a key.
pub fn filter_fits(client_id: &str, filter: &str) -> bool {
    2 + client_id.len() + filter.len() <= usize::from(u16::MAX)
}

/// A client's key prefix: u16 length ‖ identifier (so no identifier's prefix is another's).
pub fn client_prefix(client_id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(client_id.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(client_id.as_bytes());
}

/// Splits a client key into the identifier and the rest.
fn split_client(key: &[u8]) -> Option<(&str, &[u8])> {
    let (l, rest) = key.split_at_checked(2)?;
    let (id, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes([l[0], l[1]])))?;
    Some((core::str::from_utf8(id).ok()?, rest))
}

/// Appends one record to `out` (a batch of records a shell moves between stores: a
/// cluster's shared copy of a session and a node's own).
pub fn put_record(out: &mut Vec<u8>, op: Op, space: Space, key: &[u8], value: &[u8]) {
    let key = key.get(..usize::from(u16::MAX)).unwrap_or(key);
    out.push(op as u8);
    out.push(space as u8);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len().min(u32::MAX as usize) as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// The client whose key this is (every space but `Retained`), and its prefix's length.
pub fn client_of(key: &[u8]) -> Option<(&str, usize)> {
    let (id, rest) = split_client(key)?;
    Some((id, key.len() - rest.len()))
}

/// Appends records to a batch.
#[derive(Debug, Default)]
pub(crate) struct BatchWriter {
    pub buf: Vec<u8>,
    /// Added to `Instant`s written (expiry times): the wall clock, in Unix milliseconds,
    /// at this process's `Instant` 0, so that times survive a restart.
    pub clock: u64,
}

impl BatchWriter {
    fn put_str16(&mut self, s: &str) {
        let b = s
            .as_bytes()
            .get(..usize::from(u16::MAX))
            .unwrap_or_default();
        self.buf.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(b);
    }

    /// A message record's value: flags, absolute expiry (Unix milliseconds), topic,
    /// properties, payload.
    fn put_message(&mut self, m: &Message) {
        let out = &mut self.buf;
        let flags =
            (m.qos as u8) | (u8::from(m.retain) << 2) | (u8::from(m.expires_at.is_some()) << 3);
        out.push(flags);
        let at = m
            .expires_at
            .map_or(0, |t| t.as_millis().saturating_add(self.clock));
        out.extend_from_slice(&at.to_be_bytes());
        out.extend_from_slice(&(m.topic_bytes().len() as u16).to_be_bytes());
        out.extend_from_slice(m.topic_bytes());
        out.extend_from_slice(&(m.props_block().len() as u32).to_be_bytes());
        out.extend_from_slice(m.props_block());
        out.extend_from_slice(m.payload());
    }

    pub fn delete(&mut self, space: Space, client: &str, suffix: &[u8]) {
        let at = self.begin(Op::Delete, space, client, suffix);
        self.end(at);
    }

    pub fn session(
        &mut self,
        client: &str,
        username: Option<&str>,
        p: ProtocolVersion,
        expiry: u32,
    ) {
        let at = self.begin(Op::Put, Space::Session, client, &[]);
        match username {
            Some(u) => {
                self.buf.push(1);
                self.put_str16(u);
            }
            None => self.buf.push(0),
        }
        self.buf.push(p.level());
        self.buf.extend_from_slice(&expiry.to_be_bytes());
        self.end(at);
    }

    pub fn delete_client(&mut self, client: &str) {
        let at = self.begin(Op::DeleteClient, Space::Session, client, &[]);
        self.end(at);
    }

    pub fn forget_client(&mut self, client: &str) {
        let at = self.begin(Op::Forget, Space::Session, client, &[]);
        self.end(at);
    }

    pub fn sub(
        &mut self,
        client: &str,
        filter: &str,
        options: mqtt_proto::SubscriptionOptions,
        id: Option<u32>,
    ) {
        let at = self.begin(Op::Put, Space::Sub, client, filter.as_bytes());
        self.buf.push(options.to_byte(ProtocolVersion::V5));
        match id {
            Some(id) => {
                self.buf.push(1);
                self.buf.extend_from_slice(&id.to_be_bytes());
            }
            None => self.buf.push(0),
        }
        self.end(at);
    }

    pub fn msg(&mut self, client: &str, seq: u64, qos: QoS, retain: bool, m: &Message) {
        let at = self.begin(Op::Insert, Space::Msg, client, &seq.to_be_bytes());
        self.buf.push(qos as u8 | u8::from(retain) << 2);
        self.put_message(m);
        self.end(at);
    }

    pub fn inflight(&mut self, client: &str, seq: u64, pid: u16, state: u8, first: bool) {
        let op = if first { Op::Insert } else { Op::Put };
        let at = self.begin(op, Space::Inflight, client, &seq.to_be_bytes());
        self.buf.extend_from_slice(&pid.to_be_bytes());
        self.buf.push(state);
        self.end(at);
    }

    pub fn qos2_in(&mut self, client: &str, pid: u16, add: bool) {
        let op = if add { Op::Put } else { Op::Delete };
        let at = self.begin(op, Space::Qos2In, client, &pid.to_be_bytes());
        self.end(at);
    }

    pub fn retained(&mut self, m: &Message) {
        let op = if m.payload().is_empty() {
            Op::Delete
        } else {
            Op::Put
        };
        let at = self.begin_plain(op, Space::Retained, m.topic_bytes());
        if op == Op::Put {
            self.put_message(m);
        }
        self.end(at);
    }

    pub fn will(&mut self, client: &str, m: &Message, delay: u32, expiry: Option<u32>) {
        let at = self.begin(Op::Put, Space::Will, client, &[]);
        self.buf.extend_from_slice(&delay.to_be_bytes());
        match expiry {
            Some(e) => {
                self.buf.push(1);
                self.buf.extend_from_slice(&e.to_be_bytes());
            }
            None => self.buf.push(0),
        }
        self.put_message(m);
        self.end(at);
    }

    /// Starts a record whose key is `client`'s prefix followed by `suffix`; the value
    /// follows through `value` and `end`.
    pub fn begin(&mut self, op: Op, space: Space, client: &str, suffix: &[u8]) -> usize {
        // Refused before they get here (`MAX_STORED_CLIENT_ID`, `filter_fits`); cut, never
        // wrapped, should one arrive anyway.
        let max = usize::from(u16::MAX) - 2;
        let suffix = suffix.get(..max).unwrap_or(suffix);
        let id = client.as_bytes();
        let id = id.get(..max - suffix.len()).unwrap_or(id);
        self.buf.push(op as u8);
        self.buf.push(space as u8);
        let klen = (2 + id.len() + suffix.len()) as u16;
        self.buf.extend_from_slice(&klen.to_be_bytes());
        self.buf.extend_from_slice(&(id.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(id);
        self.buf.extend_from_slice(suffix);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        at
    }

    /// A record with a plain key (retained messages: the topic).
    pub fn begin_plain(&mut self, op: Op, space: Space, key: &[u8]) -> usize {
        let key = key.get(..usize::from(u16::MAX)).unwrap_or(key);
        self.buf.push(op as u8);
        self.buf.push(space as u8);
        self.buf
            .extend_from_slice(&(key.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(key);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        at
    }

    /// Ends the record started at `at`: its value is everything appended since.
    pub fn end(&mut self, at: usize) {
        let n = (self.buf.len() - at - 4) as u32;
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&n.to_be_bytes());
        }
    }
}

fn get_message(c: &mut Cursor<'_>, clock: u64) -> Option<Message> {
    let flags = c.u8()?;
    let at = c.u64()?;
    let topic = c.str16()?;
    mqtt_proto::topic::validate_name(topic).ok()?;
    let plen = c.u32()? as usize;
    let props = c.take(plen)?;
    let payload = c.0;
    let qos = QoS::from_u8(flags & 3)?;
    // Unix milliseconds back to this process's clock (already past: expired now).
    let expires_at = (flags & 8 != 0).then(|| Instant::from_millis(at.saturating_sub(clock)));
    Message::from_stored(topic, props, payload, qos, flags & 4 != 0, expires_at)
}

/// A message of a restored session.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its record's sequence number in the session (delivery order).
    pub seq: u64,
    /// The message.
    pub msg: Message,
    /// Delivery QoS.
    pub qos: QoS,
    /// RETAIN flag to send.
    pub retain: bool,
    /// In flight: packet identifier and state (1 PUBACK, 2 PUBREC, 3 PUBCOMP awaited).
    pub inflight: Option<(u16, u8)>,
}

/// A queued message's record read back (`Space::Msg`): `suffix` is its key after the
/// client prefix, `clock` as for [`Loader::new`]. `None` if it is not one.
pub fn decode_message_record(suffix: &[u8], value: &[u8], clock: u64) -> Option<StoredMessage> {
    let seq = u64::from_be_bytes(suffix.try_into().ok()?);
    let mut c = Cursor(value);
    let f = c.u8()?;
    let qos = QoS::from_u8(f & 3)?;
    let msg = get_message(&mut c, clock)?;
    Some(StoredMessage {
        seq,
        msg,
        qos,
        retain: f & 4 != 0,
        inflight: None,
    })
}

/// A will read back: the message, its delay and its expiry interval (seconds).
#[derive(Debug, Clone)]
pub struct StoredWill {
    /// The will message.
    pub msg: Message,
    /// Will Delay Interval.
    pub delay: u32,
    /// Message Expiry Interval once published.
    pub expiry: Option<u32>,
}

/// A session read back from a store.
#[derive(Debug, Clone)]
pub struct RestoredSession {
    /// Client identifier.
    pub client_id: Box<str>,
    /// User name of its last connection.
    pub username: Option<Box<str>>,
    /// Protocol of its last connection.
    pub protocol: ProtocolVersion,
    /// Session Expiry Interval, seconds.
    pub expiry_interval: u32,
    /// Subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Messages queued or in flight, by sequence number.
    pub messages: Vec<StoredMessage>,
    /// QoS 2 packet identifiers received and not yet released.
    pub qos2_in: Vec<u16>,
    /// The will of the connection the session had when the store was last written.
    pub will: Option<StoredWill>,
}

/// Why a store could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// The space of the bad record.
    pub space: &'static str,
}

/// Rebuilds sessions and retained messages from a store's records (every space, sessions
/// first). Records of a client without a session record are ignored: a session's end
/// deletes them all in one batch, so they cannot outlive it in a consistent store.
#[derive(Debug, Default)]
pub struct Loader {
    sessions: HashMap<Box<str>, RestoredSession, crate::index::Hasher64>,
    inflight: HashMap<(Box<str>, u64), (u16, u8), crate::index::Hasher64>,
    retained: Vec<Message>,
    clock: u64,
    /// Records read.
    pub records: u64,
}

impl Loader {
    /// A loader for this process, whose `Instant` 0 is `clock` in Unix milliseconds.
    pub fn new(clock: u64) -> Self {
        Self {
            clock,
            ..Self::default()
        }
    }

    /// One record of `space`.
    pub fn add(&mut self, space: Space, key: &[u8], value: &[u8]) -> Result<(), Corrupt> {
        self.records += 1;
        let bad = Corrupt {
            space: space.name(),
        };
        if space == Space::Retained {
            let m = get_message(&mut Cursor(value), self.clock).ok_or(bad)?;
            self.retained.push(m);
            return Ok(());
        }
        let (id, rest) = split_client(key).ok_or(bad.clone())?;
        let mut c = Cursor(value);
        if space == Space::Session {
            let username = match c.u8().ok_or(bad.clone())? {
                0 => None,
                _ => Some(c.str16().ok_or(bad.clone())?.into()),
            };
            let protocol = c
                .u8()
                .and_then(ProtocolVersion::from_level)
                .ok_or(bad.clone())?;
            let expiry_interval = c.u32().ok_or(bad)?;
            self.sessions.insert(
                id.into(),
                RestoredSession {
                    client_id: id.into(),
                    username,
                    protocol,
                    expiry_interval,
                    subscriptions: Vec::new(),
                    messages: Vec::new(),
                    qos2_in: Vec::new(),
                    will: None,
                },
            );
            return Ok(());
        }
        let seq_of = |rest: &[u8]| -> Option<u64> {
            let b: [u8; 8] = rest.try_into().ok()?;
            Some(u64::from_be_bytes(b))
        };
        if space == Space::Inflight {
            let seq = seq_of(rest).ok_or(bad.clone())?;
            let pid = c.u16().filter(|&p| p != 0).ok_or(bad.clone())?;
            let state = c.u8().filter(|s| (1..=3).contains(s)).ok_or(bad)?;
            self.inflight.insert((id.into(), seq), (pid, state));
            return Ok(());
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return Ok(());
        };
        match space {
            Space::Sub => {
                let filter = core::str::from_utf8(rest).map_err(|_| bad.clone())?;
                let b = c.u8().ok_or(bad.clone())?;
                let options = crate::persist::options(b).ok_or(bad.clone())?;
                let id = match c.u8().ok_or(bad.clone())? {
                    0 => None,
                    _ => Some(c.u32().ok_or(bad)?),
                };
                s.subscriptions.push(StoredSubscription {
                    filter: filter.into(),
                    options,
                    id,
                });
            }
            Space::Msg => {
                let m = decode_message_record(rest, value, self.clock).ok_or(bad)?;
                s.messages.push(m);
            }
            Space::Qos2In => {
                let b: [u8; 2] = rest.try_into().map_err(|_| bad)?;
                s.qos2_in.push(u16::from_be_bytes(b));
            }
            Space::Will => {
                let delay = c.u32().ok_or(bad.clone())?;
                let expiry = match c.u8().ok_or(bad.clone())? {
                    0 => None,
                    _ => Some(c.u32().ok_or(bad.clone())?),
                };
                let msg = get_message(&mut c, self.clock).ok_or(bad)?;
                s.will = Some(StoredWill { msg, delay, expiry });
            }
            Space::Session | Space::Inflight | Space::Retained => {}
        }
        Ok(())
    }

    /// The sessions (messages in order, in-flight state attached) and retained messages.
    pub fn finish(mut self) -> (Vec<RestoredSession>, Vec<Message>) {
        let mut out: Vec<RestoredSession> = self.sessions.drain().map(|(_, s)| s).collect();
        for s in &mut out {
            s.messages.sort_by_key(|m| m.seq);
            for m in &mut s.messages {
                // A key by value: the map is keyed by owned identifiers.
                m.inflight = self.inflight.remove(&(s.client_id.clone(), m.seq));
            }
        }
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        (out, self.retained)
    }
}

/// The records that recreate `sessions` and `retained` in an empty store (migrating from
/// the snapshot format): one batch. `clock` as for [`Loader::new`].
pub fn migration_records(
    sessions: &[RestoredSession],
    retained: &[Message],
    clock: u64,
) -> Vec<u8> {
    let mut w = BatchWriter {
        buf: Vec::new(),
        clock,
    };
    for s in sessions {
        w.session(
            &s.client_id,
            s.username.as_deref(),
            s.protocol,
            s.expiry_interval,
        );
        for sub in &s.subscriptions {
            w.sub(&s.client_id, &sub.filter, sub.options, sub.id);
        }
        for m in &s.messages {
            w.msg(&s.client_id, m.seq, m.qos, m.retain, &m.msg);
        }
    }
    for m in retained {
        w.retained(m);
    }
    w.buf
}
