//! What the cluster thread does about nodes that are slow or gone: a message whose
//! confirmation is late goes again (and a node recognises one it already has), and
//! messages a node that is gone did not confirm are kept for its sessions (what is
//! published later for them follows their held routes: `held.rs`).

use super::{ClusterIn, Inbox, Node};
use broker_core::{AckRef, ShardMsg};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The kind byte of a message sent again (its confirmation was late).
pub(super) const RESENT: u8 = 0x80;

/// A confirmation this late has the message sent again (NATS drops what a slow node
/// cannot take in; a node that has it confirms again or lets its first copy confirm).
const RESEND_AFTER: Duration = Duration::from_secs(5);

/// How long a node remembers a forwarded message (by reply subject) to recognise it when
/// it comes again (it may, `RESEND_AFTER` after each sending), and how many at most (about
/// 24 bytes each).
const REMEMBER_FOR: Duration = Duration::from_secs(20);
const REMEMBERED_MAX: usize = 8 << 20;

/// A route removal from etcd is applied this late (a node that is gone loses every route
/// at once when its membership ends: see `membership`).
pub(super) const ROUTE_REMOVAL_DELAY: Duration = Duration::from_secs(1);

fn hash_of(reply: &async_nats::Subject) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // One fixed key per process: the hashes stay within it.
    static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = KEY.get_or_init(Default::default).build_hasher();
    h.write(reply.as_bytes());
    h.finish()
}

impl Node {
    /// Keeps a message for the sessions of `node` (gone) in the cluster's stream; its
    /// publisher (if it waits) is released once the stream has it.
    pub(super) fn keep_for(&self, node: &str, payload: Bytes, ack: Option<AckRef>) {
        let nats = self.nats.clone();
        let cluster = self.cluster.clone();
        let node = node.to_owned();
        let inbox = ack.and_then(|r| Some((r, self.inboxes.get(usize::from(r.shard))?.clone())));
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(100);
            // Retried while JetStream refuses: the publisher stays held meanwhile.
            while let Err(e) =
                crate::cluster::sessions::keep_orphan(&nats, &cluster, &node, payload.clone()).await
            {
                tracing::warn!("cluster: a message for node {node} (gone) is not kept yet: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            shared.counters.kept.fetch_add(1, Ordering::Relaxed);
            if let Some((r, tx)) = inbox {
                let msg = ShardMsg::AckRelease { key: r.key };
                let _ = tx.try_send(Inbox::Cluster(ClusterIn::Shard(msg)));
            }
        });
    }

    /// Route removals whose time came.
    pub(super) fn removals_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.removals.len() {
            if self.removals[i].0 > now {
                i += 1;
                continue;
            }
            let (_, slot, filter) = self.removals.swap_remove(i);
            due.push((slot, filter));
        }
        for (slot, filter) in due {
            self.route_changed(slot, &filter, false);
        }
    }

    /// Sends again the messages whose confirmation is late, to nodes that are members.
    pub(super) async fn resend_late(&mut self, now: Instant) {
        let mut again = Vec::new();
        for (&t, p) in self.pending.iter_mut() {
            if now.duration_since(p.sent) < RESEND_AFTER {
                continue;
            }
            let Some(name) = self.names.get(usize::from(p.slot)) else {
                continue;
            };
            if !self.members.contains(name) {
                continue;
            }
            p.sent = now;
            let mut b = p.payload.to_vec();
            if let Some(k) = b.first_mut() {
                *k |= RESENT;
            }
            again.push((t, format!("{}node.{name}", self.subjects), Bytes::from(b)));
        }
        for (t, subject, payload) in again {
            self.shared.counters.resent.fetch_add(1, Ordering::Relaxed);
            let reply = format!("{}.{t}", self.inbox);
            let _ = self.nats.publish_with_reply(subject, reply, payload).await;
        }
    }

    /// A message from another node that asks for a confirmation: true when it was here
    /// already (sent again): it is confirmed again if it was, else its first copy
    /// confirms once it is in the queues.
    pub(super) fn already_here(&mut self, reply: &async_nats::Subject) -> bool {
        let h = hash_of(reply);
        if let Some(&given) = self.seen.get(&h) {
            if given {
                let nats = self.nats.clone();
                let r = reply.clone();
                tokio::spawn(async move {
                    let _ = nats.publish(r, Bytes::new()).await;
                });
            }
            return true;
        }
        self.seen.insert(h, false);
        let now = Instant::now();
        self.seen_order.push_back((now, h));
        while let Some(&(at, old)) = self.seen_order.front() {
            if now.duration_since(at) < REMEMBER_FOR && self.seen_order.len() <= REMEMBERED_MAX {
                break;
            }
            self.seen_order.pop_front();
            self.seen.remove(&old);
        }
        false
    }

    /// The confirmation of a message from another node goes out now.
    pub(super) fn confirming(&mut self, reply: &async_nats::Subject) {
        if let Some(given) = self.seen.get_mut(&hash_of(reply)) {
            *given = true;
        }
    }
}
