//! The cluster thread's loop: membership (lease, keep-alive, fencing), routes (this
//! node's interest to etcd, other nodes' from etcd to the shards), and the data plane
//! (messages to and from other nodes over NATS, and their confirmations).

use super::owner::{self, Claim, Owners};
use super::writes::{retained_store, subject_key, write_retained, write_routes};
use super::{ClusterConfig, ClusterIn, FromShard, Shared, MAX_NODES};
use crate::broker::shard::Inbox;
use broker_core::cluster as wire;
use broker_core::shard::owner_of_topic;
use broker_core::{AckRef, ShardId, ShardMsg};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod failover;
mod held;
mod watch;
use failover::{RESENT, ROUTE_REMOVAL_DELAY};

/// Everything the thread starts with.
pub struct Setup {
    pub cfg: ClusterConfig,
    pub shards: u16,
    pub inboxes: Vec<async_channel::Sender<Inbox>>,
    pub handle: crate::broker::BrokerHandle,
    pub shared: Arc<Shared>,
    pub rx: async_channel::Receiver<FromShard>,
    pub claims: async_channel::Receiver<Claim>,
    pub epoch: std::time::Instant,
}

/// What a message to another node carries: a PUBLISH for its subscribers, or one for a
/// shared group there.
const KIND_PUBLISH: u8 = 0;
const KIND_SHARED: u8 = 1;

/// Beyond this many messages waiting in a shard's inbox, QoS 0 messages from other nodes
/// are dropped: a shard that works through a long backlog before it writes to its sockets
/// would mostly fill its subscribers' queues with what they then drop.
const SHARD_QOS0_BACKLOG: usize = 8192;

/// A message forwarded to another node whose confirmation releases a publisher.
struct Pending {
    ack: AckRef,
    slot: u16,
    at: Instant,
    /// When it was last sent.
    sent: Instant,
    /// What was sent: kept for the node's sessions if it dies before confirming.
    payload: Bytes,
}

/// A confirmation that never comes (a live node confirms once its subscribers have
/// room; a dead one is noticed when its lease ends) does not hold a publisher past this.
const CONFIRM_LIMIT: Duration = Duration::from_secs(60);

pub(super) struct Node {
    me: String,
    /// `<name>/` and `<name>.`.
    keys: String,
    subjects: String,
    shards: u16,
    inboxes: Vec<async_channel::Sender<Inbox>>,
    shared: Arc<Shared>,
    etcd: etcd_client::Client,
    nats: async_nats::Client,
    owners: Arc<Owners>,
    /// This node's filters: how many of its shards have subscribers to each.
    interest: HashMap<Box<str>, u32>,
    /// Other nodes by slot (their shard number is `wire::node_shard(shards, slot)`).
    slots: HashMap<String, u16>,
    names: Vec<String>,
    /// Their routes as the shards know them.
    routes: HashSet<(u16, Box<str>)>,
    members: HashSet<String>,
    pending: HashMap<u64, Pending>,
    replies: HashMap<u64, async_nats::Subject>,
    next_token: u64,
    inbox: String,
    epoch: std::time::Instant,
    buf: Vec<u8>,
    /// This node's route changes (key, put or delete), written in this order by a task of
    /// their own, so that a slow etcd never holds the data plane up.
    route_ops: tokio::sync::mpsc::UnboundedSender<(String, bool)>,
    /// Retained updates this node ordered, for the bucket (written in this order).
    retain_puts: tokio::sync::mpsc::UnboundedSender<(String, Bytes)>,
    /// Per slot.
    peers: Vec<super::PeerCounters>,
    /// Route removals not applied yet: when, slot, filter.
    removals: Vec<(Instant, u16, Box<str>)>,
    /// Each member's life (the lease of its `nodes/` key).
    lives: HashMap<String, i64>,
    /// Held routes by node and life (`held.rs`); those of an ended life are routed to
    /// `keep_slot`, counted in `kept` (by how many ended lives hold each filter).
    held: HashMap<(String, i64), HashSet<Box<str>>>,
    kept: HashMap<Box<str>, u32>,
    keep_slot: u16,
    cluster: String,
    /// Messages from other nodes that asked for a confirmation (their reply subject's
    /// hash): whether it was given. Oldest first in `seen_order`.
    seen: HashMap<u64, bool>,
    seen_order: std::collections::VecDeque<(Instant, u64)>,
    /// Per slot, the subjects of messages to that node (QoS 1/2, QoS 0).
    to: Vec<(async_nats::Subject, async_nats::Subject)>,
    /// NATS's max_payload (read again each tick: a reconnect may change it).
    max_payload: usize,
}

pub(super) async fn run(setup: Setup, ready: std::sync::mpsc::Sender<anyhow::Result<()>>) {
    let (mut node, streams) = match Node::connect(setup).await {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    node.serve(streams).await;
}

/// The streams the loop waits on.
pub(super) struct Streams {
    rx: async_channel::Receiver<FromShard>,
    forwards: async_nats::Subscriber,
    /// QoS 0 messages: a subscription of their own, so that a flood of them NATS cannot
    /// deliver is dropped without touching the ones publishers wait for.
    forwards0: async_nats::Subscriber,
    confirmations: async_nats::Subscriber,
    retained: async_nats::Subscriber,
    control: async_nats::Subscriber,
    /// Sessions that left a shadow here are at their new node.
    moved: async_nats::Subscriber,
    routes: etcd_client::WatchStream,
    nodes: etcd_client::WatchStream,
    held: etcd_client::WatchStream,
}

impl Node {
    async fn connect(setup: Setup) -> anyhow::Result<(Node, Streams)> {
        let Setup {
            cfg,
            shards,
            inboxes,
            handle,
            shared,
            rx,
            claims,
            epoch,
        } = setup;
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(3));
        let etcd = etcd_client::Client::connect(&cfg.etcd, Some(opts))
            .await
            .map_err(|e| anyhow::anyhow!("cluster: cannot reach etcd at {:?}: {e}", cfg.etcd))?;
        // The client connects lazily: a first request tells whether etcd answers.
        etcd.clone()
            .status()
            .await
            .map_err(|e| anyhow::anyhow!("cluster: cannot reach etcd at {:?}: {e}", cfg.etcd))?;
        let nats = async_nats::ConnectOptions::new()
            .name(format!("petrel-{}", cfg.node_id))
            .connection_timeout(Duration::from_secs(3))
            .retry_on_initial_connect()
            .connect(cfg.nats.join(","))
            .await
            .map_err(|e| anyhow::anyhow!("cluster: cannot reach NATS at {:?}: {e}", cfg.nats))?;
        let keys = format!("{}/", cfg.name);
        let subjects = format!("{}.", cfg.name);
        let me = cfg.node_id.clone();
        super::sessions::ensure(&nats, &cfg).await?;
        let _ = shared.journal.set(super::Journal::new(
            nats.clone(),
            etcd.clone(),
            tokio::runtime::Handle::current(),
            &cfg,
            shared.life.clone(),
        ));
        let owners = Owners::start(owner::Context {
            me: me.clone(),
            cluster: cfg.name.clone(),
            inboxes: inboxes.clone(),
            keys: keys.clone(),
            subjects: subjects.clone(),
            ttl: Duration::from_secs(u64::from(cfg.lease_ttl)),
            etcd: etcd.clone(),
            nats: nats.clone(),
            handle,
            shared: shared.clone(),
            epoch,
        })
        .await?;
        let node_key = format!("{keys}nodes/{me}");
        // A node of this name already a member: two processes would share its routes.
        // A registration left by this node's previous process (killed) ends with its
        // lease; one that outlives it belongs to another live process.
        let mut e = etcd.clone();
        let deadline =
            std::time::Instant::now() + Duration::from_secs(u64::from(cfg.lease_ttl) + 1);
        loop {
            let taken = e
                .get(node_key.as_str(), None)
                .await
                .map_err(|e| anyhow::anyhow!("cluster: etcd: {e}"))?;
            if taken.kvs().is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "cluster: node_id \"{me}\" is already a member (another process uses it)"
                );
            }
            tracing::info!("cluster: waiting for the previous registration of \"{me}\" to end");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        owners.register(&node_key).await?;
        let forwards = subscribe(&nats, format!("{subjects}node.{me}")).await?;
        let forwards0 = subscribe(&nats, format!("{subjects}node0.{me}")).await?;
        let inbox = format!("{}.{me}", nats.new_inbox());
        let confirmations = subscribe(&nats, format!("{inbox}.*")).await?;
        let (mut retained, current) = retained_store(&nats, &cfg).await?;
        let control = subscribe(&nats, format!("{subjects}ctl.{me}")).await?;
        let moved = subscribe(&nats, format!("{subjects}moved.{me}")).await?;
        // Subscriptions are in place before anyone can route here.
        nats.flush()
            .await
            .map_err(|e| anyhow::anyhow!("cluster: NATS: {e}"))?;
        let retain_puts = write_retained(nats.clone(), subjects.clone(), shared.clone());
        let route_ops = write_routes(etcd.clone(), owners.clone());
        let mut node = Node {
            me,
            keys,
            subjects,
            shards,
            inboxes,
            shared,
            etcd,
            nats,
            owners,
            interest: HashMap::new(),
            slots: HashMap::new(),
            names: Vec::new(),
            routes: HashSet::new(),
            members: HashSet::new(),
            pending: HashMap::new(),
            replies: HashMap::new(),
            next_token: 0,
            inbox,
            epoch,
            buf: Vec::new(),
            retain_puts,
            route_ops,
            peers: Vec::new(),
            removals: Vec::new(),
            lives: HashMap::new(),
            held: HashMap::new(),
            kept: HashMap::new(),
            keep_slot: 0,
            cluster: cfg.name.clone(),
            seen: HashMap::new(),
            seen_order: std::collections::VecDeque::new(),
            to: Vec::new(),
            max_payload: 0,
        };
        node.max_payload = node.nats.server_info().max_payload;
        node.keep_slot = node
            .slot(super::held::KEEP)
            .ok_or_else(|| anyhow::anyhow!("cluster: no slot for held routes"))?;
        let nodes = node.snapshot_and_watch("nodes/").await?;
        let routes = node.snapshot_and_watch("routes/").await?;
        let held = node.snapshot_and_watch("held/").await?;
        // The cluster's retained messages before this node serves anyone.
        if current > 0 {
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut got = 0;
            while let Ok(Some(m)) = tokio::time::timeout_at(until, retained.next()).await {
                node.retained(m.payload);
                got += 1;
                if got >= current {
                    break;
                }
            }
        }
        owner::serve_claims(node.owners.clone(), claims);
        Ok((
            node,
            Streams {
                rx,
                forwards,
                forwards0,
                confirmations,
                retained,
                control,
                moved,
                routes,
                nodes,
                held,
            },
        ))
    }

    async fn serve(&mut self, mut s: Streams) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                m = s.rx.recv() => match m {
                    Ok(m) => self.shard_said(m).await,
                    Err(_) => break,
                },
                Some(m) = s.forwards.next() => self.forwarded(m),
                Some(m) = s.forwards0.next() => self.forwarded(m),
                // A status (NATS's "no responders": the node is not there) confirms
                // nothing; the message is kept for the node's sessions when it leaves.
                Some(m) = s.confirmations.next() => if m.status.is_none() {
                    self.confirmed(&m.subject)
                },
                Some(m) = s.retained.next() => self.retained(m.payload),
                Some(m) = s.control.next() => self.owners.takeover_request(m),
                Some(m) = s.moved.next() => self.owners.shadow_ready(m),
                w = s.routes.message() => match w {
                    Ok(Some(w)) => self.watched(&w),
                    _ => s.routes = self.rewatch("routes/").await,
                },
                w = s.nodes.message() => match w {
                    Ok(Some(w)) => self.watched(&w),
                    _ => s.nodes = self.rewatch("nodes/").await,
                },
                w = s.held.message() => match w {
                    Ok(Some(w)) => self.watched(&w),
                    _ => s.held = self.rewatch("held/").await,
                },
                _ = tick.tick() => self.tick().await,
            }
        }
        self.owners.leave().await;
    }

    /// Another node's route `filter` came or went: the shards learn it.
    fn route_changed(&mut self, slot: u16, filter: &str, put: bool) {
        {
            let entry = (slot, Box::<str>::from(filter));
            if slot != self.keep_slot {
                if let Some(name) = self.names.get(usize::from(slot)) {
                    self.owners.route_seen(name, filter, put);
                }
            }
            let changed = if put {
                // A route that came back cancels its pending removal.
                self.removals
                    .retain(|(_, s, f)| !(*s == slot && &**f == filter));
                self.routes.insert(entry)
            } else {
                self.routes.remove(&entry)
            };
            if changed && wire::is_share(filter) {
                // Another node's members of a group: one member of the group here.
                let msg = ClusterIn::Group {
                    slot,
                    share: filter.into(),
                    add: put,
                };
                if let Some(tx) = self.inboxes.first() {
                    let _ = tx.try_send(Inbox::Cluster(msg));
                }
            } else if changed {
                let from = wire::node_shard(self.shards, slot);
                for tx in &self.inboxes {
                    let msg = ShardMsg::Interest {
                        from,
                        filter: filter.into(),
                        add: put,
                    };
                    let _ = tx.try_send(Inbox::Cluster(ClusterIn::Shard(msg)));
                }
            }
        }
    }

    fn membership(&mut self, node: &str, present: bool) {
        if present {
            self.members.insert(node.to_owned());
        } else {
            self.members.remove(node);
            // Nothing waits on a dead node: what it did not confirm is kept for its
            // sessions, and then released.
            if let Some(&slot) = self.slots.get(node) {
                let gone: Vec<u64> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| p.slot == slot)
                    .map(|(&t, _)| t)
                    .collect();
                for t in gone {
                    if let Some(p) = self.pending.remove(&t) {
                        self.keep_for(node, p.payload, Some(p.ack));
                    }
                }
                // Its routes go at once (its keys went with its lease; their removals may
                // not have arrived yet): its persistent sessions' held routes take over,
                // and a message never goes both ways.
                let routes: Vec<Box<str>> = self
                    .routes
                    .iter()
                    .filter(|(s, _)| *s == slot)
                    .map(|(_, f)| f.clone())
                    .collect();
                for f in routes {
                    self.route_changed(slot, &f, false);
                }
                self.removals.retain(|r| r.1 != slot);
            }
        }
        let mut list: Vec<String> = self.members.iter().cloned().collect();
        list.sort();
        if let Ok(mut m) = self.shared.members.lock() {
            *m = list;
        }
    }

    fn slot(&mut self, node: &str) -> Option<u16> {
        if let Some(&s) = self.slots.get(node) {
            return Some(s);
        }
        let s = u16::try_from(self.names.len())
            .ok()
            .filter(|&s| s < MAX_NODES);
        let Some(s) = s else {
            tracing::error!(
                "cluster: more than {MAX_NODES} nodes seen; \"{node}\" is not routed to"
            );
            return None;
        };
        self.slots.insert(node.to_owned(), s);
        self.names.push(node.to_owned());
        self.to.push((
            format!("{}node.{node}", self.subjects).into(),
            format!("{}node0.{node}", self.subjects).into(),
        ));
        self.peers.push(super::PeerCounters::default());
        Some(s)
    }

    async fn shard_said(&mut self, m: FromShard) {
        match m {
            FromShard::Msg { to, msg } => {
                self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
                self.core_msg(to, msg).await
            }
            FromShard::Ack { token } => {
                if let Some(reply) = self.replies.remove(&token) {
                    self.confirming(&reply);
                    let _ = self.nats.publish(reply, Bytes::new()).await;
                }
            }
            FromShard::Closed { client_id } => self.owners.closed(&client_id),
            FromShard::Ended { client_id } => self.owners.ended(client_id),
            FromShard::Leave(done) => {
                self.owners.leave().await;
                let _ = done.send(());
            }
        }
    }

    async fn core_msg(&mut self, to: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Interest { filter, add, .. } => self.local_interest(filter, add).await,
            ShardMsg::RetainApply { msg } => {
                self.buf.clear();
                if wire::encode(&msg, self.now(), &mut self.buf) {
                    let value = Bytes::copy_from_slice(&self.buf);
                    let _ = self.retain_puts.send((subject_key(msg.topic()), value));
                }
            }
            ShardMsg::Publish {
                msg,
                publisher_hash,
                ack,
            } => self.forward(to, &msg, publisher_hash, ack, None).await,
            // The group's choice is this other node (its members): to them only.
            ShardMsg::SharedDeliver {
                msg, group, ack, ..
            } => {
                let share = wire::share_name(&group);
                self.forward(to, &msg, 0, ack, Some(&share)).await;
            }
            // This node's members of a group, counted like interest (one key per group
            // and node).
            ShardMsg::SharedJoin { group, .. } => {
                let share = wire::share_name(&group);
                self.local_interest(share.into(), true).await;
            }
            ShardMsg::SharedLeave { group, .. } => {
                let share = wire::share_name(&group);
                self.local_interest(share.into(), false).await;
            }
            other => tracing::debug!("cluster: unexpected core message {other:?}"),
        }
    }

    /// One message to the node `to` stands for: `kind | publisher hash | [share name] |
    /// frame`, with a reply subject when its publisher waits for the confirmation.
    async fn forward(
        &mut self,
        to: ShardId,
        msg: &broker_core::Message,
        publisher_hash: u64,
        ack: Option<AckRef>,
        share: Option<&str>,
    ) {
        let slot = wire::node_slot(self.shards, to);
        let qos0 = msg.qos == broker_core::mqtt_proto::QoS::AtMostOnce;
        let Some((slot, name, subject)) = slot.and_then(|s| {
            let to = self.to.get(usize::from(s))?;
            let subject = if qos0 { to.1.clone() } else { to.0.clone() };
            Some((s, self.names.get(usize::from(s))?.clone(), subject))
        }) else {
            if let Some(r) = ack {
                self.release_ack(r);
            }
            return;
        };
        self.buf.clear();
        match share {
            None => self.buf.push(KIND_PUBLISH),
            Some(s) => {
                self.buf.push(KIND_SHARED);
                self.buf
                    .extend_from_slice(&(s.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
                self.buf.extend_from_slice(s.as_bytes());
            }
        }
        self.buf.extend_from_slice(&publisher_hash.to_be_bytes());
        let now = self.now();
        if !wire::encode(msg, now, &mut self.buf) {
            if let Some(r) = ack {
                self.release_ack(r);
            }
            return;
        }
        let max = self.max_payload;
        if max > 0 && self.buf.len() > max {
            // NATS refuses it (its max_payload, 1 MiB by default, bounds what crosses).
            tracing::error!(
                "cluster: a {} byte message cannot go to node {name}: NATS max_payload is {max}",
                self.buf.len()
            );
            if let Some(r) = ack {
                self.shared
                    .counters
                    .unconfirmed
                    .fetch_add(1, Ordering::Relaxed);
                self.release_ack(r);
            }
            return;
        }
        let payload = Bytes::copy_from_slice(&self.buf);
        if !self.members.contains(&name) {
            // Gone, its routes kept a while: the message is kept for its sessions (QoS 0
            // is not worth a stream write per message and node: at most once).
            if qos0 && ack.is_none() {
                self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                self.keep_for(&name, payload, ack);
            }
            return;
        }
        self.shared
            .counters
            .forwarded
            .fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.peers.get_mut(usize::from(slot)) {
            p.forwarded += 1;
        }
        let sent = match ack {
            None => self.nats.publish(subject, payload).await.is_ok(),
            Some(r) => {
                let token = self.next_token;
                self.next_token += 1;
                self.pending.insert(
                    token,
                    Pending {
                        ack: r,
                        slot,
                        at: Instant::now(),
                        sent: Instant::now(),
                        payload: payload.clone(),
                    },
                );
                let reply = format!("{}.{token}", self.inbox);
                let ok = self
                    .nats
                    .publish_with_reply(subject, reply, payload)
                    .await
                    .is_ok();
                if !ok {
                    self.release(token, false);
                }
                ok
            }
        };
        if !sent {
            tracing::warn!("cluster: could not forward a message to node {name}");
        }
    }

    /// This node gained its first subscriber to `filter` (on any shard) or lost its last:
    /// one etcd key per filter and node, bound to the node's lease.
    async fn local_interest(&mut self, filter: Box<str>, add: bool) {
        let n = self.interest.entry(filter.clone()).or_insert(0);
        let key = format!("{}routes/{}/{filter}", self.keys, self.me);
        if add {
            *n += 1;
            if *n == 1 {
                let _ = self.route_ops.send((key, true));
            }
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.interest.remove(&filter);
                let _ = self.route_ops.send((key, false));
            }
        }
    }

    /// A message from another node: to a shard chosen by its publisher (which keeps each
    /// publisher's order), with a token when the sender waits for a confirmation.
    fn forwarded(&mut self, m: async_nats::Message) {
        let Some((share, publisher_hash, frame)) = parse_forwarded(&m.payload) else {
            return;
        };
        if let Some(r) = &m.reply {
            if self.already_here(r) {
                return;
            }
        }
        let token = m.reply.map(|r| {
            let t = self.next_token;
            self.next_token += 1;
            self.replies.insert(t, r);
            t
        });
        self.shared
            .counters
            .received
            .fetch_add(1, Ordering::Relaxed);
        let (shard, msg) = match share {
            // A publisher's messages through one shard: their order is kept.
            None => (
                (publisher_hash % u64::from(self.shards.max(1))) as usize,
                ClusterIn::Publish {
                    frame,
                    publisher_hash,
                    token,
                },
            ),
            // At the group's owner shard.
            Some(share) => (
                usize::from(wire::group_owner(&share, self.shards)),
                ClusterIn::Shared {
                    frame,
                    share,
                    token,
                },
            ),
        };
        if let Some(tx) = self.inboxes.get(shard) {
            // A shard that cannot keep up sheds QoS 0 (at most once) before it piles up;
            // what a publisher waits for is bounded by its window.
            if token.is_none() && tx.len() > SHARD_QOS0_BACKLOG {
                self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let _ = tx.try_send(Inbox::Cluster(msg));
        }
    }

    /// Another node confirmed a message: its publisher's hold is released.
    fn confirmed(&mut self, subject: &str) {
        let token = subject
            .rsplit_once('.')
            .and_then(|(_, t)| t.parse::<u64>().ok());
        if let Some(t) = token {
            self.release(t, true);
        }
    }

    fn release(&mut self, token: u64, confirmed: bool) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        let c = &self.shared.counters;
        let peer = self.peers.get_mut(usize::from(p.slot));
        if confirmed {
            c.confirmed.fetch_add(1, Ordering::Relaxed);
            if let Some(peer) = peer {
                peer.confirmed += 1;
            }
        } else {
            c.unconfirmed.fetch_add(1, Ordering::Relaxed);
            if let Some(peer) = peer {
                peer.unconfirmed += 1;
            }
        }
        self.release_ack(p.ack);
    }

    fn release_ack(&self, r: AckRef) {
        if let Some(tx) = self.inboxes.get(usize::from(r.shard)) {
            let msg = ShardMsg::AckRelease { key: r.key };
            let _ = tx.try_send(Inbox::Cluster(ClusterIn::Shard(msg)));
        }
    }

    /// A retained update (of any node, this one too: every node applies them in the
    /// bucket's order, so all end with the same): to the topic's owner shard here.
    fn retained(&mut self, payload: Bytes) {
        let Some(topic) = wire::topic(&payload) else {
            return;
        };
        let shard = owner_of_topic(topic, self.shards);
        self.shared
            .counters
            .retained_in
            .fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = self.inboxes.get(usize::from(shard)) {
            let _ = tx.try_send(Inbox::Cluster(ClusterIn::Retain { frame: payload }));
        }
    }

    async fn tick(&mut self) {
        if self.owners.renew().await {
            // A new lease: every route of this node again (after what is queued).
            for f in self.interest.keys() {
                let key = format!("{}routes/{}/{f}", self.keys, self.me);
                let _ = self.route_ops.send((key, true));
            }
        }
        self.removals_due();
        self.max_payload = self.nats.server_info().max_payload;
        let now = Instant::now();
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.at) > CONFIRM_LIMIT)
            .map(|(&t, _)| t)
            .collect();
        for t in late {
            self.release(t, false);
        }
        self.resend_late(now).await;
        if let Ok(mut p) = self.shared.peers.lock() {
            p.clear();
            let keep = usize::from(self.keep_slot);
            let peers = self.names.iter().cloned().zip(self.peers.iter().copied());
            p.extend(
                peers
                    .enumerate()
                    .filter(|(i, _)| *i != keep)
                    .map(|(_, x)| x),
            );
        }
    }

    fn now(&self) -> broker_core::Instant {
        broker_core::Instant::from_millis(self.epoch.elapsed().as_millis() as u64)
    }
}

/// A forwarded message's parts: the shared group it is for (if any), its publisher's
/// hash, its frame.
fn parse_forwarded(p: &Bytes) -> Option<(Option<String>, u64, Bytes)> {
    let (share, at) = match p.first().map(|k| k & !RESENT) {
        Some(KIND_PUBLISH) => (None, 1),
        Some(KIND_SHARED) if p.len() >= 3 => {
            let n = usize::from(u16::from_be_bytes([p[1], p[2]]));
            match p.get(3..3 + n).map(std::str::from_utf8) {
                Some(Ok(s)) => (Some(s.to_owned()), 3 + n),
                _ => return None,
            }
        }
        _ => return None,
    };
    let hash = p.get(at..at + 8)?;
    let mut h = [0u8; 8];
    h.copy_from_slice(hash);
    Some((share, u64::from_be_bytes(h), p.slice(at + 8..)))
}

/// The frame of a forwarded message for subscribers (not one a shared group chose: that
/// choice was the dead node's, and its group's other members had their chance).
pub(super) fn forwarded_frame(p: &Bytes) -> Option<Bytes> {
    match parse_forwarded(p)? {
        (None, _, frame) => Some(frame),
        _ => None,
    }
}

async fn subscribe(
    nats: &async_nats::Client,
    subject: String,
) -> anyhow::Result<async_nats::Subscriber> {
    nats.subscribe(subject)
        .await
        .map_err(|e| anyhow::anyhow!("cluster: NATS subscribe: {e}"))
}
