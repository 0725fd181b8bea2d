//! A bridge between this broker and another, as a sans-IO state machine: two clients (one
//! to the local broker, one to the remote), Mosquitto's `topic` rules between them, and
//! at-least-once forwarding: a QoS 1/2 message is acknowledged to the side it came from
//! only once the other side has acknowledged it. Until then it stays in the sending
//! broker's session (the local one's store, when persistence is on), so a lost connection
//! on either side, or a restart, sends it again rather than losing it.
//!
//! The shell owns the sockets: it calls `handle_*` with bytes and connection changes for
//! each [`Side`], takes bytes with [`Bridge::poll_transmit`], and connection-level events
//! (CONNACK, refusals, closes) with [`Bridge::poll_event`].

use crate::client::{Client, ClientError, ClientEvent, ClientOptions, Received};
use crate::time::Instant;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use mqtt_proto::{QoS, RetainHandling, SubscriptionOptions};

/// Which way a rule forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local to remote.
    Out,
    /// Remote to local.
    In,
    /// Both.
    Both,
}

impl Direction {
    fn out(self) -> bool {
        matches!(self, Self::Out | Self::Both)
    }
    fn inward(self) -> bool {
        matches!(self, Self::In | Self::Both)
    }
}

/// One `topic pattern [[[ out | in | both ] qos] local-prefix remote-prefix]` line, as
/// Mosquitto reads it: the local filter is local-prefix + pattern, the remote one
/// remote-prefix + pattern, and a forwarded topic swaps one prefix for the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRule {
    /// The pattern (may be empty when a prefix names the whole topic).
    pub pattern: String,
    /// Direction (default `out`).
    pub direction: Direction,
    /// Maximum QoS of the subscriptions (default 0).
    pub qos: QoS,
    /// Prefix on this broker.
    pub local_prefix: String,
    /// Prefix on the remote broker.
    pub remote_prefix: String,
}

/// A `topic` line that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub &'static str);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl core::error::Error for RuleError {}

fn token(t: &str) -> &str {
    // Mosquitto writes an empty pattern or prefix as "".
    if t == "\"\"" {
        ""
    } else {
        t
    }
}

impl TopicRule {
    /// Parses the part after `topic`.
    pub fn parse(line: &str) -> Result<Self, RuleError> {
        let words: Vec<&str> = line.split_ascii_whitespace().map(token).collect();
        let (pattern, rest) = words.split_first().ok_or(RuleError("no topic pattern"))?;
        let direction = match rest.first().copied() {
            None | Some("out") => Direction::Out,
            Some("in") => Direction::In,
            Some("both") => Direction::Both,
            Some(_) => return Err(RuleError("the direction must be out, in or both")),
        };
        let qos = match rest.get(1).copied() {
            None | Some("0") => QoS::AtMostOnce,
            Some("1") => QoS::AtLeastOnce,
            Some("2") => QoS::ExactlyOnce,
            Some(_) => return Err(RuleError("the QoS must be 0, 1 or 2")),
        };
        let (local_prefix, remote_prefix) = match (rest.get(2), rest.get(3)) {
            (None, _) => ("", ""),
            (Some(l), Some(r)) => (*l, *r),
            (Some(_), None) => {
                return Err(RuleError(
                    "give both prefixes (local and remote; \"\" for none)",
                ))
            }
        };
        if rest.len() > 4 {
            return Err(RuleError("too many words after the pattern"));
        }
        for p in [local_prefix, remote_prefix] {
            if p.contains(['+', '#']) {
                return Err(RuleError("a prefix cannot contain wildcards"));
            }
        }
        if pattern.is_empty() && (local_prefix.is_empty() || remote_prefix.is_empty()) {
            return Err(RuleError(
                "an empty pattern needs both prefixes (they are then the whole topics)",
            ));
        }
        let rule = Self {
            pattern: (*pattern).into(),
            direction,
            qos,
            local_prefix: local_prefix.into(),
            remote_prefix: remote_prefix.into(),
        };
        for f in [rule.local_filter(), rule.remote_filter()] {
            mqtt_proto::topic::validate_filter(&f)
                .map_err(|_| RuleError("prefix + pattern is not a valid topic filter"))?;
        }
        Ok(rule)
    }

    /// The filter on this broker.
    pub fn local_filter(&self) -> String {
        let mut s = self.local_prefix.clone();
        s.push_str(&self.pattern);
        s
    }

    /// The filter on the remote broker.
    pub fn remote_filter(&self) -> String {
        let mut s = self.remote_prefix.clone();
        s.push_str(&self.pattern);
        s
    }

    fn swap(topic: &str, filter: &str, from: &str, to: &str) -> Option<String> {
        // `a/#` matches `a`, which does not start with the prefix `a/`: not this rule's.
        let rest = topic.strip_prefix(from)?;
        if !mqtt_proto::topic::matches(filter, topic) {
            return None;
        }
        let mut s = String::with_capacity(to.len() + rest.len());
        s.push_str(to);
        s.push_str(rest);
        Some(s)
    }

    /// The remote topic for a local one this rule sends out.
    pub fn to_remote(&self, local_topic: &str) -> Option<String> {
        if !self.direction.out() {
            return None;
        }
        Self::swap(
            local_topic,
            &self.local_filter(),
            &self.local_prefix,
            &self.remote_prefix,
        )
    }

    /// The local topic for a remote one this rule brings in.
    pub fn to_local(&self, remote_topic: &str) -> Option<String> {
        if !self.direction.inward() {
            return None;
        }
        Self::swap(
            remote_topic,
            &self.remote_filter(),
            &self.remote_prefix,
            &self.local_prefix,
        )
    }
}

/// One of the bridge's two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// To this broker.
    Local,
    /// To the remote broker.
    Remote,
}

/// A connection-level event for the shell (forwarding is the bridge's own business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeEvent {
    /// Which connection.
    pub side: Side,
    /// What happened: `Connected`, `ConnectRefused`, `Subscribed`, `ServerDisconnect` or
    /// `CloseConnection`.
    pub event: ClientEvent,
}

/// Counts since the bridge was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeCounters {
    /// Messages sent to the remote broker (QoS 1/2 once it acknowledged them).
    pub forwarded_out: u64,
    /// Messages published here from the remote broker (QoS 1/2 once acknowledged here).
    pub forwarded_in: u64,
    /// QoS 0 messages dropped because the other side's queue was full.
    pub dropped: u64,
    /// Messages the receiving broker refused (an error reason code; not sent again).
    pub refused: u64,
}

/// A message waiting for the other side's acknowledgement: the connection it came on (its
/// packet identifier means nothing on a later one) and that identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Source {
    epoch: u32,
    packet_id: u16,
}

/// Acknowledgements one side waits for from the other.
#[derive(Debug, Default)]
struct Waiting {
    /// The other side's publish token to the message it forwards.
    by_token: BTreeMap<u64, Source>,
    /// Forwards still unacknowledged per message (one message can match several rules).
    open: BTreeMap<Source, u16>,
    /// The current connection of the side the messages come from.
    epoch: u32,
}

impl Waiting {
    /// The message `token` forwarded is acknowledged: the source to acknowledge, once all
    /// its forwards are.
    fn done(&mut self, token: u64) -> Option<Source> {
        let src = self.by_token.remove(&token)?;
        let left = self.open.get_mut(&src)?;
        *left = left.saturating_sub(1);
        if *left > 0 {
            return None;
        }
        self.open.remove(&src);
        (src.epoch == self.epoch).then_some(src)
    }

    fn source_lost(&mut self) {
        // Its packet identifiers are void; the source sends those messages again.
        self.epoch = self.epoch.wrapping_add(1);
        self.open.clear();
    }
}

/// The bridge: both clients and what each waits for.
#[derive(Debug)]
pub struct Bridge {
    local: Client,
    remote: Client,
    rules: Vec<TopicRule>,
    /// Local messages waiting for the remote broker's acknowledgement.
    outgoing: Waiting,
    /// Remote messages waiting for this broker's acknowledgement.
    incoming: Waiting,
    events: VecDeque<BridgeEvent>,
    counters: BridgeCounters,
    /// QoS 0 messages each client may hold for its broker (beyond: dropped and counted).
    qos0_limit: usize,
}

impl Bridge {
    /// A bridge with these rules. `local` and `remote` are the two connections' options;
    /// both get manual acknowledgements, and their subscriptions come from the rules (the
    /// local ones no-local, so what the bridge publishes here never goes back out; the
    /// remote ones no-local too in MQTT 5, or through the bridge bit in 3.1.1).
    /// QoS 1/2 messages are never refused for lack of room (the other side's window
    /// bounds them); QoS 0 ones beyond `max_queued` (the smaller of the two options) are
    /// dropped and counted.
    pub fn new(rules: Vec<TopicRule>, mut local: ClientOptions, mut remote: ClientOptions) -> Self {
        local.manual_ack = true;
        remote.manual_ack = true;
        let qos0_limit = local.max_queued.min(remote.max_queued);
        local.max_queued = usize::MAX;
        remote.max_queued = usize::MAX;
        let mut b = Self {
            local: Client::new(local),
            remote: Client::new(remote),
            rules,
            outgoing: Waiting::default(),
            incoming: Waiting::default(),
            events: VecDeque::new(),
            counters: BridgeCounters::default(),
            qos0_limit,
        };
        b.subscribe(Side::Local);
        b.subscribe(Side::Remote);
        b
    }

    fn subscriptions(&self, side: Side) -> Vec<(String, SubscriptionOptions)> {
        let v5 = self.client(side).options().version.is_v5();
        let mut subs: Vec<(String, SubscriptionOptions)> = Vec::new();
        for r in &self.rules {
            let (wanted, filter) = match side {
                Side::Local => (r.direction.out(), r.local_filter()),
                Side::Remote => (r.direction.inward(), r.remote_filter()),
            };
            if !wanted {
                continue;
            }
            let mut o = SubscriptionOptions::qos(r.qos);
            if v5 {
                o.no_local = true;
                o.retain_as_published = true;
                o.retain_handling = RetainHandling::SendIfNew;
            }
            match subs.iter_mut().find(|(f, _)| *f == filter) {
                Some(e) => e.1.qos = e.1.qos.max(r.qos),
                None => subs.push((filter, o)),
            }
        }
        subs
    }

    fn subscribe(&mut self, side: Side) {
        let subs = self.subscriptions(side);
        if !subs.is_empty() {
            // Filters were validated with the rules.
            let _ = self.client_mut(side).subscribe(&subs);
        }
    }

    fn client_mut(&mut self, side: Side) -> &mut Client {
        match side {
            Side::Local => &mut self.local,
            Side::Remote => &mut self.remote,
        }
    }

    /// One side's client (state, options, pending messages).
    pub fn client(&self, side: Side) -> &Client {
        match side {
            Side::Local => &self.local,
            Side::Remote => &self.remote,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[TopicRule] {
        &self.rules
    }

    /// Counts so far.
    pub fn counters(&self) -> BridgeCounters {
        self.counters
    }

    /// Messages received on `side` and not yet acknowledged to it (forwarded, waiting for
    /// the other side).
    pub fn unacknowledged(&self, side: Side) -> usize {
        match side {
            Side::Local => self.outgoing.open.len(),
            Side::Remote => self.incoming.open.len(),
        }
    }

    /// A network connection on `side` is up: CONNECT goes out.
    pub fn handle_connected(&mut self, side: Side, now: Instant) {
        self.client_mut(side).handle_connected(now);
    }

    /// The connection on `side` is gone.
    pub fn handle_disconnected(&mut self, side: Side, now: Instant) {
        self.client_mut(side).handle_disconnected(now);
        match side {
            Side::Local => self.outgoing.source_lost(),
            Side::Remote => self.incoming.source_lost(),
        }
    }

    /// Bytes from `side`; returns how many were consumed (whole packets).
    pub fn handle_bytes(&mut self, side: Side, now: Instant, input: &[u8]) -> usize {
        let n = self.client_mut(side).handle_bytes(now, input);
        self.process(now);
        n
    }

    /// Keep alive on both sides.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.local.handle_timeout(now);
        self.remote.handle_timeout(now);
        self.process(now);
    }

    /// When `handle_timeout` is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.local.poll_timeout(), self.remote.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Bytes for `side`.
    pub fn poll_transmit(&mut self, side: Side, now: Instant, out: &mut Vec<u8>) {
        self.client_mut(side).poll_transmit(now, out);
    }

    /// Ends the connection on `side` normally (DISCONNECT, then the shell closes it).
    pub fn disconnect(&mut self, side: Side) {
        self.client_mut(side)
            .disconnect(mqtt_proto::ReasonCode::Success);
    }

    /// The next connection-level event.
    pub fn poll_event(&mut self) -> Option<BridgeEvent> {
        self.events.pop_front()
    }

    /// Forwards what each client received, and acknowledges what the other side confirmed,
    /// until nothing moves.
    fn process(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(e) = self.local.poll_event() {
                moved = true;
                self.on_event(Side::Local, e, now);
            }
            while let Some(e) = self.remote.poll_event() {
                moved = true;
                self.on_event(Side::Remote, e, now);
            }
            if !moved {
                return;
            }
        }
    }

    fn on_event(&mut self, side: Side, e: ClientEvent, now: Instant) {
        match e {
            ClientEvent::Message(m) => self.forward(side, m, now),
            ClientEvent::Published { token, reason } => {
                // `side` acknowledged a message the other side sent us.
                let (waiting, from) = match side {
                    Side::Remote => (&mut self.outgoing, Side::Local),
                    Side::Local => (&mut self.incoming, Side::Remote),
                };
                let Some(src) = waiting.done(token) else {
                    return;
                };
                if reason.is_error() {
                    self.counters.refused += 1;
                } else if side == Side::Remote {
                    self.counters.forwarded_out += 1;
                } else {
                    self.counters.forwarded_in += 1;
                }
                self.client_mut(from).ack(src.packet_id);
            }
            ClientEvent::Connected {
                session_present, ..
            } => {
                // A kept session has the subscriptions of the last configuration: send
                // today's (without a session the client resubscribes by itself).
                if session_present {
                    self.subscribe(side);
                }
                self.events.push_back(BridgeEvent {
                    side,
                    event: ClientEvent::Connected {
                        session_present,
                        assigned_client_id: None,
                    },
                });
            }
            ClientEvent::Unsubscribed { .. } => {}
            event => self.events.push_back(BridgeEvent { side, event }),
        }
    }

    /// A message received on `from` goes to the other side, under every rule it matches.
    fn forward(&mut self, from: Side, m: Received, now: Instant) {
        let mut topics: Vec<String> = Vec::new();
        for r in &self.rules {
            let t = match from {
                Side::Local => r.to_remote(&m.topic),
                Side::Remote => r.to_local(&m.topic),
            };
            if let Some(t) = t {
                if !topics.contains(&t) {
                    topics.push(t);
                }
            }
        }
        let (to, waiting) = match from {
            Side::Local => (Side::Remote, &mut self.outgoing),
            Side::Remote => (Side::Local, &mut self.incoming),
        };
        let src = m.packet_id.map(|packet_id| Source {
            epoch: waiting.epoch,
            packet_id,
        });
        let mut open = 0u16;
        let client = match to {
            Side::Local => &mut self.local,
            Side::Remote => &mut self.remote,
        };
        for t in &topics {
            if m.qos == QoS::AtMostOnce && client.pending() >= self.qos0_limit {
                self.counters.dropped += 1;
                continue;
            }
            let mut sent = client.publish(now, t, &m.payload, m.qos, m.retain, &m.user_properties);
            if let Err(ClientError::NotSupported(_)) = sent {
                // The receiving broker's maximum QoS or retain support: as Mosquitto does,
                // send what it takes.
                let qos = m.qos.min(QoS::AtLeastOnce);
                sent = client.publish(now, t, &m.payload, qos, false, &m.user_properties);
                if let Err(ClientError::NotSupported(_)) = sent {
                    sent = client.publish(
                        now,
                        t,
                        &m.payload,
                        QoS::AtMostOnce,
                        false,
                        &m.user_properties,
                    );
                }
            }
            match (sent, src) {
                (Ok(token), Some(src)) => {
                    waiting.by_token.insert(token, src);
                    open += 1;
                }
                (Ok(_), None) => match to {
                    Side::Remote => self.counters.forwarded_out += 1,
                    Side::Local => self.counters.forwarded_in += 1,
                },
                (Err(_), _) => self.counters.dropped += 1,
            }
        }
        let Some(src) = src else { return };
        if open == 0 {
            // Matched no rule (a subscription of an earlier configuration) or could not be
            // queued at all: nothing will acknowledge it later.
            self.client_mut(from).ack(src.packet_id);
        } else {
            waiting.open.insert(src, open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_lines_parse_as_mosquitto_reads_them() {
        let r = TopicRule::parse("sensors/# out 1 site1/ fleet/site1/").unwrap();
        assert_eq!(r.direction, Direction::Out);
        assert_eq!(r.qos, QoS::AtLeastOnce);
        assert_eq!(r.local_filter(), "site1/sensors/#");
        assert_eq!(r.remote_filter(), "fleet/site1/sensors/#");
        let r = TopicRule::parse("cmd/#").unwrap();
        assert_eq!((r.direction, r.qos), (Direction::Out, QoS::AtMostOnce));
        let r = TopicRule::parse("\"\" in 2 local/status remote/status").unwrap();
        assert_eq!(r.local_filter(), "local/status");
        assert_eq!(r.to_local("remote/status").as_deref(), Some("local/status"));
        for bad in [
            "",
            "a/# sideways",
            "a/# out 3",
            "a/# out 1 pre/",
            "a/# out 1 p+/ r/",
            "\"\" both 1 \"\" r/",
            "a/#/b out",
            "a out 1 x y z",
        ] {
            assert!(TopicRule::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn prefixes_swap_both_ways_and_only_for_the_rules_direction() {
        let r = TopicRule::parse("s/# both 1 l/ r/").unwrap();
        assert_eq!(r.to_remote("l/s/a/b").as_deref(), Some("r/s/a/b"));
        assert_eq!(r.to_local("r/s/x").as_deref(), Some("l/s/x"));
        assert_eq!(r.to_remote("r/s/x"), None);
        assert_eq!(r.to_remote("l/t/x"), None);
        let out = TopicRule::parse("s/# out 1 l/ r/").unwrap();
        assert_eq!(out.to_local("r/s/x"), None);
        // `l/#` matches `l`, which lacks the prefix `l/`.
        let all = TopicRule::parse("# out 0 l/ r/").unwrap();
        assert_eq!(all.to_remote("l"), None);
        assert_eq!(all.to_remote("l/x").as_deref(), Some("r/x"));
        // `#` does not match `$SYS/...` ([MQTT-4.7.2-1]).
        let plain = TopicRule::parse("# out").unwrap();
        assert_eq!(plain.to_remote("$SYS/broker/uptime"), None);
    }
}
