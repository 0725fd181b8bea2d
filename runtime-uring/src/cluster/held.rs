//! Routes that outlive their node: `held/<node>/<life>/<filter>` (no lease), how many
//! persistent sessions of one life of a node (its lease, in hex) subscribe to `filter`.
//! A life writes its own counts while it lasts (the store thread, before the
//! acknowledgements that depend on them); once it has ended, every node routes what
//! matches its held filters to the cluster's stream (`~held`, see `node/held.rs`), and a
//! node that takes one of its sessions over takes that session's share off the counts.
//! Shared subscriptions are not held: a group's other members take its messages.

use broker_core::store::{client_of, records, Op, Space};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The name that stands for every ended life in routes and in the orphans' stream (not a
/// valid node id: ours are letters, digits, '-' and '_').
pub(super) const KEEP: &str = "~held";

/// etcd takes at most 128 operations per transaction by default.
const OPS_PER_TXN: usize = 100;

fn is_held(filter: &str) -> bool {
    !filter.starts_with("$share/")
}

/// `<keys>held/<node>/<life>/`.
pub(super) fn prefix(keys: &str, node: &str, life: i64) -> String {
    format!("{keys}held/{node}/{life:x}/")
}

/// `<node>/<life>/<filter>` (what follows `held/`): its parts.
pub(super) fn parse(rest: &str) -> Option<(&str, i64, &str)> {
    let (node, rest) = rest.split_once('/')?;
    let (life, filter) = rest.split_once('/')?;
    Some((node, i64::from_str_radix(life, 16).ok()?, filter))
}

/// The store thread's count of this node's persistent subscriptions, by filter.
#[derive(Default)]
pub struct Held {
    by_client: HashMap<String, HashSet<Box<str>>>,
    counts: HashMap<Box<str>, u32>,
    /// Filters whose count changed since they were last written.
    dirty: HashSet<Box<str>>,
    /// The life the counts were last written for (another: all are written again).
    written: i64,
}

impl Held {
    /// A record of a commit (or of a session taken over): subscriptions that came or went.
    pub fn record(&mut self, op: Op, space: Space, key: &[u8]) {
        let Some((client, at)) = client_of(key) else {
            return;
        };
        match (op, space) {
            (Op::Put, Space::Sub) => {
                if let Some(f) = key.get(at..).and_then(|f| std::str::from_utf8(f).ok()) {
                    if is_held(f)
                        && self
                            .by_client
                            .entry(client.into())
                            .or_default()
                            .insert(f.into())
                    {
                        self.count(f, true);
                    }
                }
            }
            (Op::Delete, Space::Sub) => {
                if let Some(f) = key.get(at..).and_then(|f| std::str::from_utf8(f).ok()) {
                    let gone = self.by_client.get_mut(client).is_some_and(|s| s.remove(f));
                    if gone {
                        self.count(f, false);
                    }
                }
            }
            (Op::DeleteClient | Op::Forget, _) => self.drop_client(client),
            _ => {}
        }
    }

    /// A session read back from the cluster's stream replaces what was here of it.
    pub fn seeded(&mut self, client: &str, batch: &[u8]) {
        self.drop_client(client);
        for r in records(batch) {
            self.record(r.op, r.space, r.key);
        }
    }

    fn drop_client(&mut self, client: &str) {
        for f in self.by_client.remove(client).unwrap_or_default() {
            self.count(&f, false);
        }
    }

    fn count(&mut self, filter: &str, add: bool) {
        let n = self.counts.entry(filter.into()).or_insert(0);
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(filter);
            }
        }
        self.dirty.insert(filter.into());
    }
}

/// Where the store thread writes the counts.
#[derive(Clone)]
pub struct HeldWriter {
    etcd: etcd_client::Client,
    keys: String,
    me: String,
    /// The node's lease (set by the ownership code; 0 before it has one).
    life: Arc<AtomicI64>,
}

impl HeldWriter {
    pub(super) fn new(
        etcd: etcd_client::Client,
        keys: String,
        me: String,
        life: Arc<AtomicI64>,
    ) -> Self {
        HeldWriter {
            etcd,
            keys,
            me,
            life,
        }
    }

    /// Writes the counts that changed (all of them for a new life); the store thread
    /// calls this before it reports the commit written.
    pub fn write(&self, held: &mut Held, rt: &tokio::runtime::Handle) -> anyhow::Result<()> {
        let life = self.life.load(Ordering::Acquire);
        if life == 0 {
            return Ok(());
        }
        let items: Vec<(Box<str>, u32)> = if held.written != life {
            held.counts.iter().map(|(f, n)| (f.clone(), *n)).collect()
        } else {
            held.dirty
                .iter()
                .map(|f| (f.clone(), held.counts.get(f).copied().unwrap_or(0)))
                .collect()
        };
        if !items.is_empty() {
            let prefix = prefix(&self.keys, &self.me, life);
            let mut etcd = self.etcd.clone();
            rt.block_on(async {
                for part in items.chunks(OPS_PER_TXN) {
                    let ops: Vec<TxnOp> = part
                        .iter()
                        .map(|(f, n)| {
                            let key = format!("{prefix}{f}");
                            if *n == 0 {
                                TxnOp::delete(key, None)
                            } else {
                                TxnOp::put(key, n.to_string(), None)
                            }
                        })
                        .collect();
                    etcd.txn(Txn::new().and_then(ops))
                        .await
                        .map_err(|e| anyhow::anyhow!("etcd: {e}"))?;
                }
                anyhow::Ok(())
            })?;
        }
        held.dirty.clear();
        held.written = life;
        Ok(())
    }
}

/// A session of `node`'s life `life` (ended) was taken over here: its filters come off
/// that life's counts (unless the life is live after all: then it counts for itself).
pub(super) async fn release(
    mut etcd: etcd_client::Client,
    keys: &str,
    node: &str,
    life: i64,
    filters: &[Box<str>],
) {
    let node_key = format!("{keys}nodes/{node}");
    let prefix = prefix(keys, node, life);
    for f in filters.iter().filter(|f| is_held(f)) {
        let key = format!("{prefix}{f}");
        // Other nodes take sessions of the same life over meanwhile: compare and retry.
        for _ in 0..16 {
            let Ok(got) = etcd.get(key.as_str(), None).await else {
                break;
            };
            let Some(kv) = got.kvs().first() else {
                break;
            };
            let n: u32 = kv
                .value_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let op = if n <= 1 {
                TxnOp::delete(key.as_str(), None)
            } else {
                TxnOp::put(key.as_str(), (n - 1).to_string(), None)
            };
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision()),
                    Compare::lease(node_key.as_str(), CompareOp::NotEqual, life),
                ])
                .and_then([op]);
            match etcd.txn(txn).await {
                Ok(r) if r.succeeded() => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("cluster: held route {key} not released: {e}");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_core::store::{client_prefix, put_record};

    fn sub_key(client: &str, filter: &str) -> Vec<u8> {
        let mut k = Vec::new();
        client_prefix(client, &mut k);
        k.extend_from_slice(filter.as_bytes());
        k
    }

    #[test]
    fn counts_follow_subscriptions_sessions_and_moves() {
        let mut h = Held::default();
        h.record(Op::Put, Space::Sub, &sub_key("a", "t/#"));
        h.record(Op::Put, Space::Sub, &sub_key("a", "t/#"));
        h.record(Op::Put, Space::Sub, &sub_key("b", "t/#"));
        h.record(Op::Put, Space::Sub, &sub_key("b", "$share/g/t/#"));
        assert_eq!(h.counts.get("t/#"), Some(&2));
        assert_eq!(h.counts.len(), 1, "shared subscriptions are not held");
        h.record(Op::Delete, Space::Sub, &sub_key("a", "t/#"));
        assert_eq!(h.counts.get("t/#"), Some(&1));
        let mut p = Vec::new();
        client_prefix("b", &mut p);
        h.record(Op::Forget, Space::Session, &p);
        assert!(h.counts.is_empty());
        let mut batch = Vec::new();
        put_record(&mut batch, Op::Put, Space::Sub, &sub_key("c", "x"), &[]);
        put_record(&mut batch, Op::Put, Space::Sub, &sub_key("c", "y"), &[]);
        h.seeded("c", &batch);
        h.seeded("c", &batch);
        assert_eq!(h.counts.get("x"), Some(&1));
        h.record(Op::DeleteClient, Space::Session, &sub_key("c", ""));
        assert!(h.counts.is_empty());
        assert!(h.dirty.contains("x") && h.dirty.contains("t/#"));
    }

    #[test]
    fn keys_name_node_life_and_filter() {
        let p = prefix("petrel/", "n1", 0x1f);
        assert_eq!(p, "petrel/held/n1/1f/");
        assert_eq!(parse("n1/1f/a/b/#"), Some(("n1", 0x1f, "a/b/#")));
        assert_eq!(parse("n1/zz/a"), None);
    }
}
