//! Persistent sessions shared by the cluster. Every record a node's store writes for a
//! session (subscriptions, queue, in-flight state, will) is appended to a JetStream stream
//! (`<NAME>_SESSIONS`, one subject per client) before the acknowledgements that depend on
//! it go out; a node that takes a session over reads it back from there. A subject is
//! rolled up (JetStream's `Nats-Rollup`) to the session's current records now and then,
//! so reading it back stays short.
//!
//! Messages forwarded to a node that died before confirming them, and messages for a
//! node that is gone, are kept in a second stream (`<NAME>_ORPHANS`, one subject per
//! node) and queued for that node's sessions wherever they go on.

use super::held::{Held, HeldWriter};
use super::jetstream;
use super::writes::subject_key;
use bytes::Bytes;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A session's subject is rolled up after this many appends.
pub const ROLLUP_EVERY: u32 = 64;

/// How long messages for a node that is gone are kept for its sessions.
const ORPHAN_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Headers: the node that wrote, and when (Unix milliseconds).
const NODE: &str = "Petrel-Node";
const TIME: &str = "Petrel-Time";
/// The writer's life (its lease, hex): the held routes its sessions count in.
const LIFE: &str = "Petrel-Life";

/// A margin for clocks: orphans are queued for a session from this long before its last
/// record (a duplicate at QoS 1 is allowed, a loss is not).
const CLOCK_MARGIN_MS: u64 = 2_000;

fn sessions_stream(cluster: &str) -> String {
    format!("{}_SESSIONS", cluster.to_uppercase())
}

fn orphans_stream(cluster: &str) -> String {
    format!("{}_ORPHANS", cluster.to_uppercase())
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Creates both streams unless they exist (file storage, the configured replicas).
pub(super) async fn ensure(
    nats: &async_nats::Client,
    cfg: &super::ClusterConfig,
) -> anyhow::Result<()> {
    let subject = format!("{}.session.>", cfg.name);
    jetstream::ensure_stream(
        nats,
        &sessions_stream(&cfg.name),
        &[subject],
        cfg.jetstream_replicas,
        -1,
        serde_json::json!({ "allow_rollup_hdrs": true }),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cluster: sessions' stream: {e}"))?;
    let subject = format!("{}.orphan.>", cfg.name);
    jetstream::ensure_stream(
        nats,
        &orphans_stream(&cfg.name),
        &[subject],
        cfg.jetstream_replicas,
        -1,
        serde_json::json!({ "max_age": ORPHAN_MAX_AGE.as_nanos() as u64 }),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cluster: orphans' stream: {e}"))
}

/// One client's records of one store commit.
pub struct Append {
    pub client: String,
    pub records: Vec<u8>,
    /// These records are the whole session (or none: it ended): what came before goes.
    pub rollup: bool,
}

/// The store thread's way to the sessions' stream.
#[derive(Clone)]
pub struct Journal {
    nats: async_nats::Client,
    rt: tokio::runtime::Handle,
    subjects: String,
    me: String,
    life: Arc<AtomicI64>,
    held: HeldWriter,
}

impl Journal {
    pub(super) fn new(
        nats: async_nats::Client,
        etcd: etcd_client::Client,
        rt: tokio::runtime::Handle,
        cfg: &super::ClusterConfig,
        life: Arc<AtomicI64>,
    ) -> Journal {
        let held = HeldWriter::new(
            etcd,
            format!("{}/", cfg.name),
            cfg.node_id.clone(),
            life.clone(),
        );
        Journal {
            nats,
            rt,
            subjects: format!("{}.", cfg.name),
            me: cfg.node_id.clone(),
            life,
            held,
        }
    }

    /// Writes this node's held routes that changed (before the commit is reported).
    pub fn hold(&self, held: &mut Held) -> anyhow::Result<()> {
        self.held.write(held, &self.rt)
    }

    /// Appends each client's records and waits until JetStream has stored them all (the
    /// store thread calls this after its own commit; nothing it holds is released before).
    pub fn append(&self, items: &[Append]) -> anyhow::Result<()> {
        let max = self.nats.server_info().max_payload.max(4096) - 1024;
        let mut sends = Vec::new();
        let now = unix_ms().to_string();
        let life = format!("{:x}", self.life.load(Ordering::Acquire));
        for a in items {
            let subject = format!("{}session.{}", self.subjects, subject_key(&a.client));
            let mut first = true;
            for chunk in chunks(&a.records, max) {
                if chunk.len() > max + 1024 {
                    // One record larger than NATS takes (a message near max_packet_size):
                    // retrying would hold every acknowledgement of the node for good.
                    tracing::error!(
                        "cluster: a {} byte record of \"{}\"'s session cannot go to the shared stream (NATS max_payload {}): it stays in this node's store only",
                        chunk.len(),
                        a.client,
                        max + 1024
                    );
                    continue;
                }
                let mut h = async_nats::HeaderMap::new();
                h.insert(NODE, self.me.as_str());
                h.insert(TIME, now.as_str());
                h.insert(LIFE, life.as_str());
                if first && a.rollup {
                    h.insert("Nats-Rollup", "sub");
                }
                first = false;
                let payload = Bytes::copy_from_slice(chunk);
                sends.push(jetstream::publish_with_headers(
                    &self.nats,
                    subject.clone(),
                    h,
                    payload,
                ));
            }
        }
        // Sent together, acknowledged in any order; JetStream keeps each subject's order
        // (one connection, published in order).
        self.rt
            .block_on(futures_util::future::try_join_all(sends))
            .map(|_| ())
    }
}

/// Splits records into pieces of at most `max` bytes at record boundaries (a record
/// larger than that goes alone). An empty batch is one empty piece (a rollup to nothing).
fn chunks(records: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for r in broker_core::store::records(records) {
        let len = 2 + 2 + r.key.len() + 4 + r.value.len();
        if at > start && at + len - start > max {
            out.push(&records[start..at]);
            start = at;
        }
        at += len;
    }
    if at > start || out.is_empty() {
        out.push(&records[start..at.min(records.len())]);
    }
    out
}

/// A session as the shared stream has it.
pub struct Stored {
    pub records: Vec<u8>,
    pub appends: u32,
    /// The node that wrote last, and when (Unix milliseconds).
    pub node: String,
    pub at_ms: u64,
    /// The writer's life (0: not said).
    pub life: i64,
    /// The stream's number of its last message.
    pub last_seq: u64,
}

/// Reads a client's session back from the shared stream (None: nothing stored).
pub(super) async fn read(
    nats: &async_nats::Client,
    cluster: &str,
    client_id: &str,
) -> anyhow::Result<Option<Stored>> {
    let stream = sessions_stream(cluster);
    let subject = format!("{cluster}.session.{}", subject_key(client_id));
    if !jetstream::has_messages(nats, &stream, &subject).await? {
        return Ok(None);
    }
    let msgs = jetstream::read_subject(nats, &stream, &subject).await?;
    let mut s = Stored {
        records: Vec::new(),
        appends: 0,
        node: String::new(),
        at_ms: 0,
        life: 0,
        last_seq: 0,
    };
    for m in &msgs {
        s.records.extend_from_slice(&m.payload);
        s.appends += 1;
        if let Some(seq) = m.reply.as_deref().and_then(jetstream::stream_seq_of) {
            s.last_seq = seq;
        }
        if let Some(h) = &m.headers {
            if let Some(n) = h.get(NODE) {
                s.node = n.as_str().to_owned();
            }
            if let Some(t) = h.get(TIME).and_then(|t| t.as_str().parse().ok()) {
                s.at_ms = t;
            }
            if let Some(l) = h
                .get(LIFE)
                .and_then(|l| i64::from_str_radix(l.as_str(), 16).ok())
            {
                s.life = l;
            }
        }
    }
    Ok(Some(s))
}

/// What is appended to a client's session after the stream's message `after_seq`, as it
/// comes (the records a node that let the session go still writes for it).
pub(super) async fn follow_session(
    nats: &async_nats::Client,
    cluster: &str,
    client_id: &str,
    after_seq: u64,
) -> anyhow::Result<async_nats::Subscriber> {
    let stream = sessions_stream(cluster);
    let subject = format!("{cluster}.session.{}", subject_key(client_id));
    jetstream::follow_subject_after(nats, &stream, &subject, after_seq + 1).await
}

/// Whether a message of the sessions' stream was written by `node` in its life `life`.
pub(super) fn written_by(m: &async_nats::Message, node: &str, life: i64) -> bool {
    let Some(h) = &m.headers else {
        return false;
    };
    let life_of = h
        .get(LIFE)
        .and_then(|l| i64::from_str_radix(l.as_str(), 16).ok());
    h.get(NODE).is_some_and(|n| n.as_str() == node) && life_of == Some(life)
}

/// Keeps a message that was for `node` (gone, or dead before confirming it) for its
/// sessions; returns once JetStream has stored it.
pub(super) async fn keep_orphan(
    nats: &async_nats::Client,
    cluster: &str,
    node: &str,
    payload: Bytes,
) -> anyhow::Result<()> {
    let subject = format!("{cluster}.orphan.{node}");
    let mut h = async_nats::HeaderMap::new();
    h.insert(TIME, unix_ms().to_string().as_str());
    jetstream::publish_with_headers(nats, subject, h, payload)
        .await
        .map(|_| ())
}

/// Messages kept for `node` from a little before `since_ms` on (their forwarded form):
/// those there now, and a subscription that delivers the ones kept later (`None` when
/// there is nothing to follow).
pub(super) struct Orphans {
    pub now: Vec<Bytes>,
    pub later: Option<async_nats::Subscriber>,
    from_ms: u64,
}

impl Orphans {
    /// Whether a message kept later is recent enough for the session.
    pub fn wanted(&self, m: &async_nats::Message) -> bool {
        recent(m, self.from_ms)
    }
}

fn recent(m: &async_nats::Message, from_ms: u64) -> bool {
    let at = m
        .headers
        .as_ref()
        .and_then(|h| h.get(TIME))
        .and_then(|t| t.as_str().parse::<u64>().ok());
    at.is_none_or(|t| t >= from_ms)
}

/// The messages kept for `node` since `since_ms`; `follow`: and a subscription to those
/// kept later (the node is gone and others may still be keeping messages for it).
pub(super) async fn orphans_since(
    nats: &async_nats::Client,
    cluster: &str,
    node: &str,
    since_ms: u64,
    follow: bool,
) -> anyhow::Result<Orphans> {
    let stream = orphans_stream(cluster);
    let subject = format!("{cluster}.orphan.{node}");
    let from_ms = since_ms.saturating_sub(CLOCK_MARGIN_MS);
    if !follow && !jetstream::has_messages(nats, &stream, &subject).await? {
        return Ok(Orphans {
            now: Vec::new(),
            later: None,
            from_ms,
        });
    }
    let (mut sub, n) = jetstream::follow_subject_from(nats, &stream, &subject, from_ms).await?;
    let mut now = Vec::new();
    use futures_util::StreamExt as _;
    for got in 0..n {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(m)) if recent(&m, from_ms) => now.push(m.payload),
            Ok(Some(_)) => {}
            _ => anyhow::bail!("{stream}: {subject} delivered {got} of {n} messages"),
        }
    }
    let later = if follow {
        Some(sub)
    } else {
        let _ = sub.unsubscribe().await;
        None
    };
    Ok(Orphans {
        now,
        later,
        from_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_core::store::{put_record, Op, Space};

    #[test]
    fn chunks_split_at_record_boundaries() {
        let mut b = Vec::new();
        for i in 0..10u8 {
            put_record(&mut b, Op::Put, Space::Msg, &[i; 10], &[i; 100]);
        }
        let one = 2 + 2 + 10 + 4 + 100;
        let parts = chunks(&b, one * 3 + 5);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.concat(), b);
        assert!(parts.iter().all(|p| p.len() <= one * 3));
        let empty: &[u8] = &[];
        assert_eq!(chunks(empty, 100), vec![empty]);
        // A record larger than the limit goes alone.
        assert_eq!(chunks(&b, 10).len(), 10);
    }
}
