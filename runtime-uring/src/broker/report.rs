//! What the core reports as lost or forced, in the log: messages it did not deliver
//! (summed per reason, at most one line a second per shard, so that a flood cannot flood
//! the log) and subscribers it disconnected for making no progress.

use broker_core::policy::{DropReason, Hooks};
use broker_core::{mqtt_proto::ReasonCode, Message};
use std::time::Duration;

/// How often a shard writes its drop summary at most.
const EVERY: Duration = Duration::from_secs(1);

/// The `petrel broker` hooks: logging only.
#[derive(Debug, Default)]
pub struct LogHooks {
    /// Drops not logged yet, per reason (in `REASONS` order), and QoS 1/2 among them.
    pending: [u64; REASONS.len()],
    acknowledged: u64,
    example: Option<Box<str>>,
    last: Option<Duration>,
}

const REASONS: [(DropReason, &str); 7] = [
    (DropReason::QueueFull, "queue full"),
    (DropReason::Expired, "expired"),
    (DropReason::TooLarge, "too large for the client"),
    (DropReason::Offline, "QoS 0 for an offline session"),
    (DropReason::NotAuthorized, "not authorized"),
    (DropReason::SessionEnded, "session ended"),
    (DropReason::Hook, "refused by a hook"),
];

impl LogHooks {
    /// Writes the summary if a second passed since the last one (drops that came after it
    /// are told at the next drop, delivery, acknowledgement or close, whichever is first).
    fn maybe_flush(&mut self) {
        let now = coarse_now();
        if self.last.is_none_or(|t| now.saturating_sub(t) >= EVERY) {
            self.flush(now);
        }
    }

    fn flush(&mut self, now: Duration) {
        let total: u64 = self.pending.iter().sum();
        if total == 0 {
            return;
        }
        let why: Vec<String> = REASONS
            .iter()
            .zip(self.pending)
            .filter(|(_, n)| *n > 0)
            .map(|((_, name), n)| format!("{n} {name}"))
            .collect();
        tracing::warn!(
            "{total} message(s) not delivered ({}; {} of them QoS 1/2), e.g. to client {:?}",
            why.join(", "),
            self.acknowledged,
            self.example.as_deref().unwrap_or("?"),
        );
        self.pending = [0; REASONS.len()];
        self.acknowledged = 0;
        self.example = None;
        self.last = Some(now);
    }
}

/// The monotonic clock at the kernel tick's resolution: this is read for every delivery
/// while drops wait to be told, and the precise clock costs a quarter of a shard's time
/// under a QoS 0 flood on a virtual machine (perf, fan-out); a second's throttle needs no
/// more than ticks.
fn coarse_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass and reads nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

impl Hooks for LogHooks {
    fn on_dropped(&mut self, client_id: &str, msg: &Message, why: DropReason) {
        if let Some(i) = REASONS.iter().position(|(r, _)| *r == why) {
            if let Some(n) = self.pending.get_mut(i) {
                *n += 1;
            }
        }
        if msg.acknowledged() {
            self.acknowledged += 1;
        }
        if self.example.is_none() {
            self.example = Some(client_id.into());
        }
        self.maybe_flush();
    }

    fn on_deliver(&mut self, _client_id: &str, _msg: &Message) {
        // One comparison per delivery while nothing waits to be told.
        if self.example.is_some() {
            self.maybe_flush();
        }
    }

    fn on_acked(&mut self, _client_id: &str, _msg: &Message) {
        if self.example.is_some() {
            self.maybe_flush();
        }
    }

    fn on_closed(&mut self, _client_id: Option<&str>, _reason: Option<ReasonCode>) {
        if self.example.is_some() {
            self.maybe_flush();
        }
    }

    fn on_stalled(&mut self, client_id: &str) {
        tracing::warn!(
            "client {client_id:?} disconnected: it made no progress for stall_timeout while \
             publishers waited for room in its queue; its session is offline from now on"
        );
    }
}
