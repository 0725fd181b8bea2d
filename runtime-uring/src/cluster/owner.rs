//! Membership and ownership: the node's lease (kept alive, fenced when it cannot be, granted
//! again when it was lost), and one owner per client identifier cluster-wide (an etcd
//! transaction bound to the lease; a takeover asks the owner to let go over NATS).

use super::Shared;
use broker_core::mqtt_proto::ReasonCode;
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a takeover waits for the store (JetStream down: the CONNECT is refused, the
/// client tries again) or a shard.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// How a claim of an identifier nobody owned came about.
struct Fresh {
    /// Its previous owner let go of it (rather than its lease ending).
    handed: bool,
}

/// A CONNECT waiting for ownership of its client identifier.
pub struct Claim {
    pub client_id: Box<str>,
    pub reply: async_channel::Sender<bool>,
}

pub(super) struct Context {
    pub me: String,
    /// The cluster's name (streams and subjects).
    pub cluster: String,
    /// The shards' control channels.
    pub inboxes: Vec<async_channel::Sender<crate::broker::shard::Inbox>>,
    pub keys: String,
    pub subjects: String,
    pub ttl: Duration,
    pub etcd: etcd_client::Client,
    pub nats: async_nats::Client,
    pub handle: crate::broker::BrokerHandle,
    pub shared: Arc<Shared>,
    /// The broker's time 0.
    pub epoch: std::time::Instant,
}

/// A session that moved to another node leaves a shadow here: what other nodes still
/// route here is queued in it, and its new node takes that from the shared copy. The
/// shadow ends once the new node has the session and its routes are seen here (every
/// node sees them about as soon: one etcd watch), `SHADOW_MARGIN` later; at the latest
/// `SHADOW_FOR` after the takeover.
const SHADOW_FOR: Duration = Duration::from_secs(5);
const SHADOW_MARGIN: Duration = Duration::from_millis(250);

/// How long the new node takes what the shadow queued (it has ended, its last records in
/// the shared copy, by then).
const FOLLOW_SHADOW: Duration = Duration::from_secs(8);

/// A client identifier this node owns: its connections here, and the value of its key
/// (`<node>:<claim number>`, so that releasing an old claim never deletes a newer one).
struct Owned {
    connections: u32,
    value: String,
    /// When the last claim was granted (its connection may still be on its way to a
    /// shard).
    at: Instant,
}

pub(super) struct Owners {
    ctx: Context,
    lease: AtomicI64,
    owned: Mutex<HashMap<Box<str>, Owned>>,
    /// Sessions that moved away and left a shadow here, with its filters.
    shadows: Mutex<HashMap<Box<str>, Vec<Box<str>>>>,
    /// Other nodes' routes as this node has seen them (node, filter).
    routes_seen: Mutex<std::collections::HashSet<(String, Box<str>)>>,
    claims: AtomicU64,
    /// Routes must be put again (a new lease, or a put that failed).
    resync: AtomicBool,
    /// The node left the cluster (graceful stop): no more keep-alives or new leases.
    left: AtomicBool,
    /// When the last successful keep-alive was sent, ms since `epoch`.
    renewed_at: AtomicU64,
    epoch: Instant,
}

impl Owners {
    /// Grants the lease and starts keeping it alive.
    pub(super) async fn start(ctx: Context) -> anyhow::Result<Arc<Owners>> {
        let mut etcd = ctx.etcd.clone();
        // Before the grant: the lease's time runs from no later than this.
        let epoch = Instant::now();
        let ttl = i64::try_from(ctx.ttl.as_secs()).unwrap_or(5);
        let lease = etcd
            .lease_grant(ttl, None)
            .await
            .map_err(|e| anyhow::anyhow!("cluster: etcd lease: {e}"))?
            .id();
        let owners = Arc::new(Owners {
            ctx,
            lease: AtomicI64::new(lease),
            owned: Mutex::new(HashMap::new()),
            shadows: Mutex::new(HashMap::new()),
            routes_seen: Mutex::new(Default::default()),
            claims: AtomicU64::new(0),
            resync: AtomicBool::new(false),
            renewed_at: AtomicU64::new(0),
            left: AtomicBool::new(false),
            epoch,
        });
        owners.ctx.shared.life.store(lease, Ordering::Release);
        tokio::spawn(keep_alive(owners.clone()));
        tokio::spawn(fence_watch(owners.clone()));
        Ok(owners)
    }

    pub(super) fn lease(&self) -> i64 {
        self.lease.load(Ordering::Acquire)
    }

    /// Registers the node (its membership key, bound to the lease).
    pub(super) async fn register(&self, node_key: &str) -> anyhow::Result<()> {
        let mut etcd = self.ctx.etcd.clone();
        let opts = PutOptions::new().with_lease(self.lease());
        etcd.put(node_key, "", Some(opts))
            .await
            .map_err(|e| anyhow::anyhow!("cluster: etcd: {e}"))?;
        Ok(())
    }

    pub(super) fn routes_lost(&self) {
        self.resync.store(true, Ordering::Release);
    }

    /// Whether the routes must be put again now (called from the loop's tick).
    pub(super) async fn renew(&self) -> bool {
        self.resync.swap(false, Ordering::AcqRel)
    }

    /// Leaves the cluster at a graceful stop: the lease is revoked, so every key of this
    /// node (membership, routes, owned clients) goes at once.
    pub(super) async fn leave(&self) {
        self.left.store(true, Ordering::Release);
        let mut etcd = self.ctx.etcd.clone();
        let _ = etcd.lease_revoke(self.lease()).await;
    }

    fn key(&self, client_id: &str) -> String {
        format!("{}clients/{client_id}", self.ctx.keys)
    }

    /// Takes ownership of `client_id` for a CONNECT here.
    async fn claim(self: Arc<Self>, client_id: Box<str>) -> bool {
        let key = self.key(&client_id);
        // The other owner lets go at once when it answers; when it cannot (dead, or cut off
        // from NATS), its lease ends within the TTL and its key with it.
        let deadline = Instant::now() + self.ctx.ttl + Duration::from_secs(2);
        let mut etcd = self.ctx.etcd.clone();
        // The owner let go (its session's last records are in the stream); otherwise its
        // lease ended (dead, or gone) and others may still be keeping messages for it.
        let mut handed = false;
        loop {
            if self.ctx.shared.fenced.load(Ordering::Acquire) || Instant::now() > deadline {
                self.ctx
                    .shared
                    .counters
                    .claims_refused
                    .fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let n = self.claims.fetch_add(1, Ordering::Relaxed);
            let value = format!("{}:{n}", self.ctx.me);
            let put = TxnOp::put(
                key.as_str(),
                value.as_str(),
                Some(PutOptions::new().with_lease(self.lease())),
            );
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![put.clone()])
                .or_else(vec![TxnOp::get(key.as_str(), None)]);
            let current = match etcd.txn(txn).await {
                Ok(r) if r.succeeded() => {
                    let fresh = Fresh { handed };
                    return self.granted(client_id, value, Some(fresh)).await;
                }
                Ok(r) => r.op_responses().into_iter().find_map(|op| match op {
                    TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                    _ => None,
                }),
                Err(e) => {
                    // No quorum: this side cannot own the id (retried until the deadline).
                    tracing::debug!("cluster: claim of \"{client_id}\": {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Some(current) = current else {
                continue;
            };
            let current = String::from_utf8_lossy(&current).into_owned();
            let owner = current.split_once(':').map_or(current.as_str(), |(n, _)| n);
            if owner == self.ctx.me {
                // Ours already (a takeover on this node): a newer claim value.
                let txn = Txn::new()
                    .when(vec![Compare::value(
                        key.as_str(),
                        CompareOp::Equal,
                        current.as_str(),
                    )])
                    .and_then(vec![put]);
                if let Ok(r) = etcd.txn(txn).await {
                    if r.succeeded() {
                        return self.granted(client_id, value, None).await;
                    }
                }
                continue;
            }
            let subject = format!("{}ctl.{owner}", self.ctx.subjects);
            let payload = bytes::Bytes::copy_from_slice(client_id.as_bytes());
            let asked = tokio::time::timeout(
                Duration::from_secs(2),
                self.ctx.nats.request(subject, payload),
            )
            .await;
            match asked {
                Ok(Ok(m)) if &m.payload[..] == b"ok" => {
                    handed = true;
                    self.ctx
                        .shared
                        .counters
                        .takeovers
                        .fetch_add(1, Ordering::Relaxed);
                }
                // Refused (a newer connection there), late, or nobody answers (dead: its
                // lease ends within the TTL): ask again shortly.
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The transaction made this node the owner; but a node fenced meanwhile (etcd answered
    /// late) serves nobody: the key goes again. `fresh` (nobody owned it): a session
    /// another node kept (it let go, or died) comes here first, from the shared stream.
    async fn granted(&self, client_id: Box<str>, value: String, fresh: Option<Fresh>) -> bool {
        if self.ctx.shared.fenced.load(Ordering::Acquire) {
            self.delete_if(&client_id, &value).await;
            return false;
        }
        let Some(fresh) = fresh else {
            return self.owned(client_id, value);
        };
        if let Err(e) = self.adopt(&client_id, !fresh.handed).await {
            tracing::error!("cluster: cannot take \"{client_id}\"'s session over: {e}");
            self.delete_if(&client_id, &value).await;
            return false;
        }
        self.owned(client_id, value)
    }

    /// Reads a client's session from the shared stream (if it has one), writes it to this
    /// node's store and gives it to its owner shard with the messages kept for it since
    /// its last node wrote it (that node died or was gone meanwhile).
    async fn adopt(&self, client_id: &str, follow: bool) -> anyhow::Result<()> {
        // Back before its shadow here ended: the shadow goes first (what it queued is in
        // the shared copy).
        if !self.end_shadow(client_id).await {
            anyhow::bail!("its shadow here did not end");
        }
        let Some(stored) =
            super::sessions::read(&self.ctx.nats, &self.ctx.cluster, client_id).await?
        else {
            return Ok(());
        };
        let store = self
            .ctx
            .shared
            .store
            .get()
            .ok_or_else(|| anyhow::anyhow!("no store"))?;
        let (tx, rx) = async_channel::bounded(1);
        store
            .try_send(crate::store::Request::Seed {
                client: client_id.into(),
                records: stored.records,
                appends: stored.appends,
                reply: tx,
            })
            .map_err(|_| anyhow::anyhow!("the store is gone"))?;
        let seeded = tokio::time::timeout(STORE_WAIT, rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the store did not write the session in time"))?;
        let Some(session) = seeded? else {
            // An ended session (nothing left).
            return Ok(());
        };
        // Messages kept for its last node since it last wrote the session: those it did
        // not confirm before it died, and, when it did not hand the session over (its
        // life ended), those its held routes kept; later ones too, for a while.
        let me = self.ctx.shared.life.load(Ordering::Acquire);
        let ended = follow && !(stored.node == self.ctx.me && stored.life == me);
        let mut orphans = Vec::new();
        if !stored.node.is_empty() {
            let (cluster, nats) = (&self.ctx.cluster, &self.ctx.nats);
            let at = stored.at_ms;
            orphans.push(
                super::sessions::orphans_since(nats, cluster, &stored.node, at, ended).await?,
            );
            if ended {
                let held = super::held::KEEP;
                orphans.push(super::sessions::orphans_since(nats, cluster, held, at, true).await?);
            }
        }
        let frames: Vec<Bytes> = orphans
            .iter_mut()
            .flat_map(|o| std::mem::take(&mut o.now))
            .filter_map(|p| super::node::forwarded_frame(&p))
            .collect();
        let filters: Vec<Box<str>> = session
            .subscriptions
            .iter()
            .map(|s| s.filter.clone())
            .collect();
        let messages = session.messages.len();
        let shard = broker_core::shard::owner_of_client(client_id, self.ctx.inboxes.len() as u16);
        let inbox = self
            .ctx
            .inboxes
            .get(usize::from(shard))
            .ok_or_else(|| anyhow::anyhow!("no shard"))?;
        let (tx, rx) = async_channel::bounded(1);
        let kept = frames.len();
        inbox
            .try_send(crate::broker::shard::Inbox::Cluster(
                super::ClusterIn::Restore {
                    session,
                    frames,
                    done: tx,
                },
            ))
            .map_err(|_| anyhow::anyhow!("the shard is gone"))?;
        tokio::time::timeout(STORE_WAIT, rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the shard did not take the session in time"))??;
        self.ctx
            .shared
            .counters
            .adopted
            .fetch_add(1, Ordering::Relaxed);
        let mine = stored.node == self.ctx.me && stored.life == me;
        if !follow && !mine && !stored.node.is_empty() && stored.last_seq > 0 {
            // Handed over by a live node: what its shadow still queues.
            let sub = super::sessions::follow_session(
                &self.ctx.nats,
                &self.ctx.cluster,
                client_id,
                stored.last_seq,
            )
            .await?;
            let (node, life) = (stored.node.clone(), stored.life);
            let epoch = self.ctx.epoch;
            let (store, inbox, client) =
                (store.clone(), inbox.clone(), Box::<str>::from(client_id));
            tokio::spawn(async move {
                follow_shadow(sub, &client, inbox, node, life, epoch).await;
                // The shadow's records (its node's sequence numbers) leave the subject.
                let _ = store.try_send(crate::store::Request::RollUp(client));
            });
            // The session is here: its shadow there may end once this node's routes are
            // seen.
            let subject = format!("{}moved.{}", self.ctx.subjects, stored.node);
            let payload = Bytes::from(format!("{}\n{client_id}", self.ctx.me));
            let _ = self.ctx.nats.publish(subject, payload).await;
        }
        let follows: Vec<_> = orphans
            .into_iter()
            .filter(|o| o.later.is_some())
            .map(|o| follow_orphans(o, client_id.into(), inbox.clone()))
            .collect();
        if ended && stored.life != 0 {
            // Its share of the ended life's held routes goes once the messages they kept
            // have been followed (its own routes are out by then).
            let (etcd, keys) = (self.ctx.etcd.clone(), self.ctx.keys.clone());
            let (node, life) = (stored.node.clone(), stored.life);
            tokio::spawn(async move {
                futures_util::future::join_all(follows).await;
                super::held::release(etcd, &keys, &node, life, &filters).await;
            });
        } else if !follows.is_empty() {
            tokio::spawn(futures_util::future::join_all(follows));
        }
        tracing::info!(
            "cluster: session of \"{client_id}\" taken over from node {} ({messages} queued or in flight, {kept} kept while it was gone)",
            stored.node
        );
        Ok(())
    }

    fn owned(&self, client_id: Box<str>, value: String) -> bool {
        if let Ok(mut m) = self.owned.lock() {
            let o = m.entry(client_id).or_insert(Owned {
                connections: 0,
                value: String::new(),
                at: Instant::now(),
            });
            o.connections += 1;
            o.value = value;
            o.at = Instant::now();
        }
        true
    }

    /// A connection of `client_id` closed here. The key stays: its session may persist
    /// (it ends with `ended`).
    pub(super) fn closed(&self, client_id: &str) {
        if let Ok(mut m) = self.owned.lock() {
            if let Some(o) = m.get_mut(client_id) {
                o.connections = o.connections.saturating_sub(1);
            }
        }
    }

    /// The session of `client_id` ended here: unless a connection of it is here again (a
    /// new claim), the key goes (unless a newer claim replaced it).
    pub(super) fn ended(self: &Arc<Self>, client_id: Box<str>) {
        let value = {
            let Ok(mut m) = self.owned.lock() else {
                return;
            };
            let Some(o) = m.get(&client_id) else {
                return;
            };
            if o.connections > 0 {
                return;
            }
            m.remove(&client_id).map(|o| o.value)
        };
        if let Some(v) = value {
            let me = self.clone();
            tokio::spawn(async move {
                // The session's last record (its deletion) reaches the shared stream first,
                // or another node could take the ended session up: its shard writes the
                // record in the same turn it told us (a turn is well under this), then the
                // store confirms what it has.
                tokio::time::sleep(Duration::from_millis(100)).await;
                me.store_barrier().await;
                // A release that fails is tried again (a key left behind would make another
                // node wait for a takeover nobody can give).
                for _ in 0..10 {
                    if me.delete_if(&client_id, &v).await {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
    }

    /// Waits until the store has written (here and in the shared stream) what was sent to
    /// it before; false when it does not say so in time.
    async fn store_barrier(&self) -> bool {
        let Some(store) = self.ctx.shared.store.get() else {
            return true;
        };
        let (tx, rx) = async_channel::bounded(1);
        if store.try_send(crate::store::Request::Barrier(tx)).is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(STORE_WAIT, rx.recv()).await,
            Ok(Ok(()))
        )
    }

    /// Deletes the key if it still has `value`; true when it is gone (or was another's).
    async fn delete_if(&self, client_id: &str, value: &str) -> bool {
        let key = self.key(client_id);
        let txn = Txn::new()
            .when(vec![Compare::value(key.as_str(), CompareOp::Equal, value)])
            .and_then(vec![TxnOp::delete(key.as_str(), None)]);
        let mut etcd = self.ctx.etcd.clone();
        etcd.txn(txn).await.is_ok()
    }

    /// Another node takes over a client connected here: it is disconnected (MQTT 5: 0x8E),
    /// its key released, and the asking node told.
    pub(super) fn takeover_request(self: &Arc<Self>, m: async_nats::Message) {
        let Some(reply) = m.reply else {
            return;
        };
        let Ok(client_id) = std::str::from_utf8(&m.payload) else {
            return;
        };
        let client_id: Box<str> = client_id.into();
        let me = self.clone();
        tokio::spawn(async move {
            let ok = me.let_go(&client_id).await;
            let answer: &'static [u8] = if ok { b"ok" } else { b"busy" };
            let _ = me
                .ctx
                .nats
                .publish(reply, bytes::Bytes::from_static(answer))
                .await;
        });
    }

    /// Moves the session of `client_id` out of the shards; false when they did not answer.
    async fn move_out(&self, client_id: &str) -> bool {
        let handle = self.ctx.handle.clone();
        let id: Box<str> = client_id.into();
        let moved = tokio::task::spawn_blocking(move || handle.move_out(&id)).await;
        matches!(moved, Ok(Ok(_)))
    }

    /// `move_out`, leaving a shadow: its filters (none without a session).
    async fn move_out_shadowed(&self, client_id: &str) -> Option<Vec<Box<str>>> {
        let handle = self.ctx.handle.clone();
        let id: Box<str> = client_id.into();
        match tokio::task::spawn_blocking(move || handle.move_out_shadowed(&id)).await {
            Ok(Ok(filters)) => Some(filters.unwrap_or_default()),
            _ => None,
        }
    }

    /// Ends the shadow of `client_id` if there is one here, its last records in the
    /// shared copy; false when the shards or the store did not confirm it.
    async fn end_shadow(&self, client_id: &str) -> bool {
        let shadow = self
            .shadows
            .lock()
            .is_ok_and(|mut s| s.remove(client_id).is_some());
        let ended = !shadow || (self.move_out(client_id).await && self.store_barrier().await);
        if !ended {
            tracing::warn!("cluster: the shadow of \"{client_id}\" did not end cleanly");
        }
        ended
    }

    /// Another node has a session that left a shadow here (`<node>\n<client id>`): the
    /// shadow ends once that node's routes for its filters are seen here.
    pub(super) fn shadow_ready(self: &Arc<Self>, m: async_nats::Message) {
        let Some((node, client_id)) = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(|p| p.split_once('\n'))
        else {
            return;
        };
        let (node, client_id) = (node.to_owned(), Box::<str>::from(client_id));
        let me = self.clone();
        tokio::spawn(async move {
            let until = Instant::now() + SHADOW_FOR;
            while Instant::now() < until {
                let filters = me
                    .shadows
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&client_id).cloned());
                let Some(filters) = filters else {
                    return;
                };
                let seen = me.routes_seen.lock().is_ok_and(|r| {
                    filters
                        .iter()
                        .all(|f| r.contains(&(node.clone(), f.clone())))
                });
                if seen {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(SHADOW_MARGIN).await;
            let _ = me.end_shadow(&client_id).await;
        });
    }

    /// Another node's route came or went (as the shards learn it).
    pub(super) fn route_seen(&self, node: &str, filter: &str, put: bool) {
        if let Ok(mut r) = self.routes_seen.lock() {
            let key = (node.to_owned(), Box::<str>::from(filter));
            if put {
                r.insert(key);
            } else {
                r.remove(&key);
            }
        }
    }

    /// Disconnects `client_id` here and releases its key. False (the asking node tries
    /// again) when a newer connection claimed it here meanwhile.
    async fn let_go(self: &Arc<Self>, client_id: &str) -> bool {
        let claim = |s: &Self| {
            s.owned
                .lock()
                .ok()
                .and_then(|m| m.get(client_id).map(|o| (o.value.clone(), o.at)))
        };
        // A claim granted a moment ago may have a connection still on its way to its
        // shard, where the kick would miss it: it gets there first.
        if let Some((_, at)) = claim(self) {
            let settle = Duration::from_millis(300);
            if at.elapsed() < settle {
                tokio::time::sleep(settle - at.elapsed()).await;
            }
        }
        let before = claim(self);
        let Some(filters) = self.move_out_shadowed(client_id).await else {
            tracing::warn!("cluster: could not disconnect \"{client_id}\" for a takeover");
            return false;
        };
        if !filters.is_empty() {
            if let Ok(mut s) = self.shadows.lock() {
                s.insert(client_id.into(), filters);
            }
            let me = self.clone();
            let id: Box<str> = client_id.into();
            tokio::spawn(async move {
                tokio::time::sleep(SHADOW_FOR).await;
                let _ = me.end_shadow(&id).await;
            });
        }
        // The session's last records reach the shared stream before the other node reads
        // it back.
        if !self.store_barrier().await {
            tracing::warn!("cluster: the store did not confirm \"{client_id}\"'s last records");
            return false;
        }
        let after = claim(self);
        if after.as_ref().map(|c| &c.0) != before.as_ref().map(|c| &c.0) {
            return false;
        }
        if let Ok(mut m) = self.owned.lock() {
            m.remove(client_id);
        }
        // The key's value as etcd has it: ours (counted here or left by a release that
        // failed) goes.
        let mut etcd = self.ctx.etcd.clone();
        let key = self.key(client_id);
        let Ok(r) = etcd.get(key.as_str(), None).await else {
            return false;
        };
        match r.kvs().first() {
            None => true,
            Some(kv) => {
                let v = String::from_utf8_lossy(kv.value()).into_owned();
                let ours = v.split_once(':').is_some_and(|(n, _)| n == self.ctx.me);
                ours && self.delete_if(client_id, &v).await
            }
        }
    }
}

/// Other nodes keep messages for a life of a node that ended while its held routes last
/// (`held.rs`); a session taken over from it gets them only until its own routes here
/// have reached them (an etcd write and watch: milliseconds, seconds for thousands of
/// routes after a node with many sessions died): after that they come here directly, and
/// the kept copies are duplicates (QoS 1 allows them; a loss it does not).
const FOLLOW_ORPHANS: Duration = Duration::from_secs(10);

/// Queues for a session handed over by a live node what that node's shadow of it queued
/// meanwhile (records `node` wrote in its life `life` after the session was read back).
async fn follow_shadow(
    mut sub: async_nats::Subscriber,
    client_id: &str,
    inbox: async_channel::Sender<crate::broker::shard::Inbox>,
    node: String,
    life: i64,
    epoch: std::time::Instant,
) {
    use broker_core::store::{client_of, decode_message_record, records, Op, Space};
    use futures_util::StreamExt as _;
    let until = tokio::time::Instant::now() + FOLLOW_SHADOW;
    let mut frame = Vec::new();
    let mut queued = 0u32;
    while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
        if !super::sessions::written_by(&m, &node, life) {
            continue;
        }
        let since = epoch.elapsed();
        let now = broker_core::Instant::from_millis(since.as_millis() as u64);
        let clock = super::sessions::unix_ms().saturating_sub(since.as_millis() as u64);
        for r in records(&m.payload) {
            if !matches!(r.op, Op::Put | Op::Insert) || r.space != Space::Msg {
                continue;
            }
            let Some((_, at)) = client_of(r.key) else {
                continue;
            };
            let Some(stored) = r
                .key
                .get(at..)
                .and_then(|suffix| decode_message_record(suffix, r.value, clock))
            else {
                continue;
            };
            frame.clear();
            if !broker_core::cluster::encode(&stored.msg, now, &mut frame) {
                continue;
            }
            let q = super::ClusterIn::Queue {
                client_id: client_id.into(),
                frame: Bytes::copy_from_slice(&frame),
            };
            if inbox
                .try_send(crate::broker::shard::Inbox::Cluster(q))
                .is_err()
            {
                break;
            }
            queued += 1;
        }
    }
    let _ = sub.unsubscribe().await;
    if queued > 0 {
        tracing::info!("cluster: {queued} message(s) the previous node of \"{client_id}\" queued while it moved");
    }
}

/// Queues for a session taken over from a node that is gone the messages other nodes
/// keep for that node meanwhile (`FOLLOW_ORPHANS`).
async fn follow_orphans(
    mut o: super::sessions::Orphans,
    client_id: Box<str>,
    inbox: async_channel::Sender<crate::broker::shard::Inbox>,
) {
    use futures_util::StreamExt as _;
    let Some(mut sub) = o.later.take() else {
        return;
    };
    let until = tokio::time::Instant::now() + FOLLOW_ORPHANS;
    while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
        if !o.wanted(&m) {
            continue;
        }
        if let Some(frame) = super::node::forwarded_frame(&m.payload) {
            let q = super::ClusterIn::Queue {
                client_id: client_id.clone(),
                frame,
            };
            if inbox
                .try_send(crate::broker::shard::Inbox::Cluster(q))
                .is_err()
            {
                break;
            }
        }
    }
    let _ = sub.unsubscribe().await;
}

/// Serves the CONNECTs waiting for ownership, each as a task of its own.
pub(super) fn serve_claims(owners: Arc<Owners>, rx: async_channel::Receiver<Claim>) {
    tokio::spawn(async move {
        while let Ok(c) = rx.recv().await {
            let o = owners.clone();
            tokio::spawn(async move {
                let ok = o.claim(c.client_id).await;
                let _ = c.reply.try_send(ok);
            });
        }
    });
}

/// Keeps the lease alive: a keep-alive every third of the TTL. Once etcd answers again
/// after an outage it renews the lease, or, if the lease ended meanwhile (or must be
/// presumed to have), is granted a new one and registers again with every route.
async fn keep_alive(o: Arc<Owners>) {
    let ttl = o.ctx.ttl;
    let period = ttl / 3;
    let node_key = format!("{}nodes/{}", o.ctx.keys, o.ctx.me);
    let mut etcd = o.ctx.etcd.clone();
    let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    let mut registered = true;
    loop {
        if o.left.load(Ordering::Acquire) {
            return;
        }
        let sent = Instant::now();
        let mut ok = false;
        let mut lost = false;
        if stream.is_none() {
            stream = tokio::time::timeout(period, etcd.lease_keep_alive(o.lease()))
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some((keeper, responses)) = stream.as_mut() {
            if keeper.keep_alive().await.is_ok() {
                match tokio::time::timeout(period, responses.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => ok = true,
                    Ok(Ok(Some(_))) => lost = true,
                    _ => {}
                }
            }
        }
        if ok {
            o.renewed(sent);
        } else {
            stream = None;
        }
        if lost {
            o.fence("the lease ended");
        }
        if lost || (!ok && o.since_renewal() >= ttl) {
            // The lease is gone (or must be presumed so): a new one, if etcd answers. Its
            // time runs from before the request.
            let asked = Instant::now();
            let lease_ttl = i64::try_from(ttl.as_secs()).unwrap_or(5);
            if let Ok(Ok(g)) = tokio::time::timeout(period, etcd.lease_grant(lease_ttl, None)).await
            {
                o.lease.store(g.id(), Ordering::Release);
                o.ctx.shared.life.store(g.id(), Ordering::Release);
                o.renewed(asked);
                stream = None;
                registered = false;
                if let Ok(m) = o.owned.lock().as_mut() {
                    m.clear();
                }
            }
        }
        if !registered {
            // Membership and routes under the (new) lease before serving again.
            let opts = PutOptions::new().with_lease(o.lease());
            if etcd.put(node_key.as_str(), "", Some(opts)).await.is_ok() {
                registered = true;
                o.routes_lost();
                tracing::warn!("cluster: joined again with a new lease");
            } else {
                ok = false;
            }
        }
        if ok && o.ctx.shared.fenced.load(Ordering::Acquire) {
            tracing::warn!("cluster: lease renewed: serving clients again");
            o.ctx.shared.fenced.store(false, Ordering::Release);
        }
        tokio::time::sleep_until((sent + period).into()).await;
    }
}

/// Fences the node when it has not renewed its lease for the TTL minus a margin, counted
/// from when the last successful keep-alive was sent (before etcd could have counted it):
/// it disconnects its clients and refuses CONNECTs, so that it never serves a client that
/// another node may own once etcd has let the lease go.
async fn fence_watch(o: Arc<Owners>) {
    let ttl = o.ctx.ttl;
    let margin = (ttl / 4).max(Duration::from_millis(1000)).min(ttl / 2);
    while !o.left.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let since = o.since_renewal();
        if since + margin >= ttl {
            o.fence(&format!("lease not renewed for {since:?}"));
        }
    }
}

impl Owners {
    fn renewed(&self, sent: Instant) {
        let ms = sent.duration_since(self.epoch).as_millis() as u64;
        self.renewed_at.fetch_max(ms, Ordering::AcqRel);
    }

    fn since_renewal(&self) -> Duration {
        let at = self.epoch + Duration::from_millis(self.renewed_at.load(Ordering::Acquire));
        at.elapsed()
    }

    fn fence(&self, why: &str) {
        if self.ctx.shared.fenced.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!("cluster: {why}: fenced (clients disconnected, CONNECTs refused)");
        let handle = self.ctx.handle.clone();
        // Not awaited: the thread must go on renewing.
        tokio::task::spawn_blocking(move || handle.disconnect_all(ReasonCode::UseAnotherServer));
    }
}
