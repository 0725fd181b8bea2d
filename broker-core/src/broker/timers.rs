//! Timers: the core keeps deadlines in a heap; the shell arms one timer from
//! `poll_timeout` and calls `handle_timeout`. Entries are checked when they fire, so a
//! stale one (connection gone, deadline moved) does nothing.

use super::Broker;
use crate::conn::ConnState;
use crate::policy::{ConnId, SessionEnd};
use crate::slab::Key;
use crate::time::Instant;
use alloc::boxed::Box;
use core::cmp::Reverse;
use mqtt_proto::ReasonCode;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    ConnectTimeout(ConnId),
    KeepAlive(ConnId),
    SessionExpiry(Key),
    Will(Key),
    RetainedExpiry(Box<str>),
    Stall(Key),
}

impl Broker {
    pub(crate) fn schedule(&mut self, at: Instant, t: Timer) {
        self.timers.push(Reverse((at, t)));
    }

    /// The earliest deadline the shell must wake up for (then call `handle_timeout`).
    /// Changes after any `handle_*` call.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Processes every deadline up to `now`. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, t))) = self.timers.pop() else {
                break;
            };
            self.fire(now, t);
        }
    }

    fn fire(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::ConnectTimeout(c) => {
                let Some(conn) = self.conns.get(c) else {
                    return;
                };
                match conn.state {
                    ConnState::AwaitConnect | ConnState::Authenticating => {
                        self.close(c, now, None);
                    }
                    // CONNECT left the first keep-alive check to this entry.
                    ConnState::Connected
                        if conn.keep_alive_ms > 0
                            && self.cfg.connect_timeout_ms <= u64::from(conn.keep_alive_ms) =>
                    {
                        self.fire(now, Timer::KeepAlive(c));
                    }
                    _ => {}
                }
            }
            Timer::KeepAlive(c) => {
                let Some(conn) = self.conns.get(c) else {
                    return;
                };
                if conn.state != ConnState::Connected || conn.keep_alive_ms == 0 {
                    return;
                }
                // A held publisher is not read: its silence is ours.
                #[cfg(feature = "backpressure")]
                if conn.held > 0 || conn.has_held_input() {
                    let at = now.plus_millis(u64::from(conn.keep_alive_ms));
                    if let Some(c) = self.conns.get_mut(c) {
                        c.last_rx = now;
                    }
                    self.schedule(at, Timer::KeepAlive(c));
                    return;
                }
                let deadline = conn.last_rx.plus_millis(u64::from(conn.keep_alive_ms));
                if now >= deadline {
                    // [MQTT-3.1.2-24] nothing for 1.5 times the keep alive: close (0x8D).
                    self.close(c, now, Some(ReasonCode::KeepAliveTimeout));
                } else {
                    self.schedule(deadline, Timer::KeepAlive(c));
                }
            }
            Timer::SessionExpiry(sk) => {
                let due = self
                    .sessions
                    .get(sk)
                    .is_some_and(|s| s.conn.is_none() && s.expire_at.is_some_and(|at| at <= now));
                if due {
                    self.end_session(sk, now, SessionEnd::Expired);
                }
            }
            Timer::Will(sk) => {
                let Some(s) = self.sessions.get_mut(sk) else {
                    return;
                };
                if s.conn.is_some() || s.pending_will.as_ref().is_none_or(|w| w.at > now) {
                    return;
                }
                if let Some(pw) = s.pending_will.take() {
                    let id = s.client_id.clone();
                    self.store_will(sk, None);
                    self.publish_will(now, &id, pw.will);
                }
            }
            Timer::Stall(sk) => self.check_stall(now, sk),
            Timer::RetainedExpiry(topic) => {
                if self.retained.get(&topic).is_some_and(|m| m.is_expired(now)) {
                    self.retained.remove(&topic);
                    // Every shard expires its copy; the topic's owner removes the record.
                    if crate::shard::owner_of_topic(&topic, self.cfg.shards) == self.cfg.shard {
                        self.store_retained_gone(&topic);
                    }
                }
            }
        }
    }
}
