//! What the node knows from etcd: a snapshot of a directory (`nodes/`, `routes/`, `held/`)
//! and a watch from the next revision on, taken again when the watch breaks; each key
//! applied as it comes.

use super::{Node, ROUTE_REMOVAL_DELAY};
use etcd_client::{EventType, GetOptions, WatchOptions};
use std::collections::HashSet;
use std::time::{Duration, Instant};

impl Node {
    /// Reads what is under `<name>/<dir>` now, applies it, and watches for changes from
    /// the next revision (nothing is missed in between).
    pub(super) async fn snapshot_and_watch(
        &mut self,
        dir: &str,
    ) -> anyhow::Result<etcd_client::WatchStream> {
        let prefix = format!("{}{dir}", self.keys);
        let now = self
            .etcd
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| anyhow::anyhow!("cluster: etcd: {e}"))?;
        let rev = now.header().map_or(0, |h| h.revision());
        for kv in now.kvs() {
            self.apply_key(kv.key(), true, kv.lease());
        }
        self.watch_from(&prefix, rev + 1)
            .await
            .map_err(|e| anyhow::anyhow!("cluster: etcd watch: {e}"))
    }

    /// A watch broke (etcd restarted or unreachable): start again from a fresh snapshot,
    /// retrying until etcd answers; routes that vanished meanwhile are removed.
    pub(super) async fn rewatch(&mut self, dir: &str) -> etcd_client::WatchStream {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = self.keys_under(dir);
            let prefix = format!("{}{dir}", self.keys);
            let Ok(now) = self
                .etcd
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                .await
            else {
                continue;
            };
            let present: HashSet<Vec<u8>> = now.kvs().iter().map(|kv| kv.key().to_vec()).collect();
            for key in before {
                if !present.contains(key.as_bytes()) {
                    self.apply_key(key.as_bytes(), false, 0);
                }
            }
            for kv in now.kvs() {
                self.apply_key(kv.key(), true, kv.lease());
            }
            let rev = now.header().map_or(0, |h| h.revision());
            if let Ok(w) = self.watch_from(&prefix, rev + 1).await {
                return w;
            }
        }
    }

    /// Watches every key under `prefix` from revision `rev` on.
    async fn watch_from(
        &mut self,
        prefix: &str,
        rev: i64,
    ) -> Result<etcd_client::WatchStream, etcd_client::Error> {
        let opts = WatchOptions::new().with_prefix().with_start_revision(rev);
        self.etcd.watch(prefix, Some(opts)).await
    }

    pub(super) fn watched(&mut self, w: &etcd_client::WatchResponse) {
        for ev in w.events() {
            if let Some(kv) = ev.kv() {
                self.apply_key(kv.key(), ev.event_type() == EventType::Put, kv.lease());
            }
        }
    }

    /// The keys under `<name>/<dir>` this node applied (`routes/` and `held/`; members
    /// that vanish are noticed as such).
    fn keys_under(&self, dir: &str) -> Vec<String> {
        match dir {
            "routes/" => self
                .routes
                .iter()
                .filter(|(slot, _)| *slot != self.keep_slot)
                .filter_map(|(slot, f)| {
                    let name = self.names.get(usize::from(*slot))?;
                    Some(format!("{}routes/{name}/{f}", self.keys))
                })
                .collect(),
            "held/" => self
                .held
                .iter()
                .flat_map(|((node, life), fs)| {
                    let p = crate::cluster::held::prefix(&self.keys, node, *life);
                    fs.iter().map(move |f| format!("{p}{f}"))
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A key under `nodes/`, `routes/` or `held/` appeared (`put`, bound to `lease`) or
    /// vanished.
    fn apply_key(&mut self, key: &[u8], put: bool, lease: i64) {
        let Some(rest) = key.strip_prefix(self.keys.as_bytes()) else {
            return;
        };
        let Ok(rest) = std::str::from_utf8(rest) else {
            return;
        };
        if let Some(node) = rest.strip_prefix("nodes/") {
            // Held routes of a life that ended are in place before its own routes go
            // (a duplicate at QoS 1 is allowed in between, a loss is not).
            if put {
                self.membership(node, true);
                self.life_changed(node, Some(lease));
            } else {
                self.life_changed(node, None);
                self.membership(node, false);
            }
        } else if let Some(held) = rest.strip_prefix("held/") {
            self.held_changed(held, put);
        } else if let Some(route) = rest.strip_prefix("routes/") {
            // The node's name has no '/' (checked), the filter may.
            let Some((node, filter)) = route.split_once('/') else {
                return;
            };
            if node == self.me {
                return;
            }
            let Some(slot) = self.slot(node) else {
                return;
            };
            if !put {
                let at = Instant::now() + ROUTE_REMOVAL_DELAY;
                self.removals.push((at, slot, filter.into()));
                return;
            }
            self.route_changed(slot, filter, true);
        }
    }
}
