//! `[[kafka]]`: MQTT messages to Kafka, at least once. The Kafka thread stands for one
//! more "remote node" of the core (a shard number after the cluster's): the routes'
//! filters are its interest, so every shard forwards it a matching message as it would to
//! another node, holding the publisher's PUBACK/PUBREC until the Kafka thread releases it,
//! which it does once Kafka acknowledged the produce with `acks=all`. While Kafka is away
//! the acknowledgements wait: a publisher's window fills, and beyond `max_pending`
//! messages in all, publishers are held (the core's flow control); QoS 0 beyond that is
//! dropped and counted.
//!
//! SMQ's convention too: a PUBLISH to `$queue/<name>` goes to the topic `<name>` of the
//! first `[[kafka]]` block, and to no MQTT subscriber (subscriptions to `$queue/` are
//! refused while Kafka is configured).

mod murmur2;
mod produce;

use crate::broker::shard::Inbox;
use crate::cluster::ClusterIn;
use crate::config::{KafkaConfig, KafkaRoute};
use broker_core::{AckRef, Message, ShardId, ShardMsg};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// SMQ's queue topics.
pub const QUEUE_PREFIX: &str = "$queue/";

/// One message for Kafka, from a shard.
pub struct Job {
    pub msg: Message,
    pub ack: Option<AckRef>,
    /// The publisher, when the shard knew it.
    pub client_id: Option<Arc<str>>,
}

/// What the Kafka thread reports (admin API, metrics).
#[derive(Debug, Default)]
pub struct KafkaStatus {
    pub name: String,
    /// The bootstrap brokers answered and the last produce (if any) succeeded.
    pub connected: AtomicBool,
    pub produced: AtomicU64,
    /// Records Kafka refused for good (too large) and dropped.
    pub refused: AtomicU64,
    /// Records produced again after a failed attempt.
    pub retried: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// The routes in use (changed through the admin API).
    pub routes: Mutex<Vec<KafkaRoute>>,
}

impl KafkaStatus {
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }
    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
    pub fn routes(&self) -> Vec<KafkaRoute> {
        self.routes.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// State shared by the shards, the Kafka thread and the admin API.
#[derive(Debug, Default)]
pub struct Shared {
    pub blocks: Vec<Arc<KafkaStatus>>,
    /// Messages handed to the Kafka thread and not yet produced.
    pub pending: AtomicU64,
    /// QoS 0 messages dropped because `pending` was at its limit.
    pub dropped: AtomicU64,
    /// Publishers held because `pending` was at its limit.
    pub held: AtomicU64,
    /// Messages that matched no route any more (removed meanwhile) or were invalid.
    pub unrouted: AtomicU64,
    pub max_pending: u64,
}

/// The shards' side: sends jobs, never waits.
#[derive(Clone)]
pub struct Link {
    tx: async_channel::Sender<Control>,
    pub shared: Arc<Shared>,
    /// The core's shard number standing for Kafka.
    pub shard: ShardId,
}

enum Control {
    Job(Job),
    /// The admin API changed the routes (in `Shared::blocks`): the thread reads them
    /// again and tells the shards which filters it gained or lost.
    RoutesChanged,
}

impl Link {
    /// A core message for Kafka (a `ShardMsg::Publish`).
    pub fn send(&self, msg: ShardMsg, client_id: Option<Arc<str>>) {
        let ShardMsg::Publish { msg, ack, .. } = msg else {
            return;
        };
        let pending = self.shared.pending.load(Ordering::Relaxed);
        if msg.qos == broker_core::mqtt_proto::QoS::AtMostOnce && pending >= self.shared.max_pending
        {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.try_send(Control::Job(Job {
            msg,
            ack,
            client_id,
        }));
        if sent.is_err() {
            // The Kafka thread is gone (it logged why): nothing will acknowledge this.
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds or replaces (by name) a route of block `block`; false when there is no such
    /// block. Applied in order with the messages that follow.
    pub fn add_route(&self, block: &str, route: KafkaRoute) -> bool {
        let Some(i) = self.shared.blocks.iter().position(|b| b.name == block) else {
            return false;
        };
        // Visible at once to readers of the status; the thread updates the interest.
        if let Some(b) = self.shared.blocks.get(i) {
            if let Ok(mut r) = b.routes.lock() {
                r.retain(|x| x.name != route.name);
                r.push(route);
            }
        }
        self.tx.try_send(Control::RoutesChanged).is_ok()
    }

    /// Removes the route named `name`; false when there is none.
    pub fn remove_route(&self, name: &str) -> bool {
        let mut found = false;
        for b in &self.shared.blocks {
            if let Ok(mut r) = b.routes.lock() {
                let before = r.len();
                r.retain(|x| x.name != name);
                found |= r.len() != before;
            }
        }
        found && self.tx.try_send(Control::RoutesChanged).is_ok()
    }

    /// Every route's name, with its block.
    pub fn route_names(&self) -> Vec<(String, String)> {
        self.shared
            .blocks
            .iter()
            .flat_map(|b| {
                b.routes()
                    .into_iter()
                    .map(|r| (b.name.clone(), r.name))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The client identifiers of this shard's recent publishers by message origin: the core's
/// `on_message_arrived` hook fills it, the shard reads it when it hands a message to
/// Kafka (header `mqtt_clientid`). Bounded: cleared when it grows past `PUBLISHERS_MAX`.
pub struct Publishers(std::cell::RefCell<HashMap<u64, Arc<str>>>);

const PUBLISHERS_MAX: usize = 65_536;

thread_local! {
    static PUBLISHERS: Publishers = Publishers(std::cell::RefCell::new(HashMap::new()));
}

/// The publisher of a message with this origin, if this shard saw it publish.
pub fn publisher(origin: u64) -> Option<Arc<str>> {
    PUBLISHERS.with(|p| p.0.borrow().get(&origin).cloned())
}

/// Remembers who publishes (the `on_message_arrived` hook of a shard with Kafka).
pub struct KafkaHooks;

impl broker_core::policy::Hooks for KafkaHooks {
    fn on_message_arrived(
        &mut self,
        client: &broker_core::policy::ClientInfo<'_>,
        msg: &Message,
    ) -> Result<(), broker_core::mqtt_proto::ReasonCode> {
        PUBLISHERS.with(|p| {
            let mut m = p.0.borrow_mut();
            if m.get(&msg.origin).is_none_or(|c| &**c != client.client_id) {
                if m.len() >= PUBLISHERS_MAX {
                    m.clear();
                }
                m.insert(msg.origin, Arc::from(client.client_id));
            }
        });
        Ok(())
    }
}

/// Whether a subscription filter would receive `$queue/` messages (refused with Kafka).
pub fn is_queue_filter(filter: &str) -> bool {
    let f = broker_core::mqtt_proto::topic::Filter::parse(filter)
        .map(|f| f.filter)
        .unwrap_or(filter);
    f.starts_with(QUEUE_PREFIX)
}

/// Starts the Kafka thread: `slot` is the core's remote-node slot it stands for; it tells
/// every shard (`inboxes`) its interest.
pub fn start(
    cfgs: &[KafkaConfig],
    shards: u16,
    slot: u16,
    inboxes: Vec<async_channel::Sender<Inbox>>,
) -> anyhow::Result<Link> {
    let max_pending = cfgs.iter().map(|c| c.max_pending).max().unwrap_or(10_000) as u64;
    let blocks: Vec<Arc<KafkaStatus>> = cfgs
        .iter()
        .map(|c| {
            Arc::new(KafkaStatus {
                name: c.name.clone(),
                routes: Mutex::new(c.routes.clone()),
                ..KafkaStatus::default()
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        blocks,
        max_pending,
        ..Shared::default()
    });
    let shard = broker_core::cluster::node_shard(shards, slot);
    let (tx, rx) = async_channel::unbounded();
    let link = Link {
        tx,
        shared: shared.clone(),
        shard,
    };
    let interest = Interest {
        inboxes,
        from: shard,
        shards,
    };
    // Interest first (queued before any shard runs): no message of a route is missed.
    let mut filters: Vec<String> = cfgs
        .iter()
        .flat_map(|c| c.routes.iter().map(|r| r.filter.clone()))
        .collect();
    if !cfgs.is_empty() {
        filters.push(format!("{QUEUE_PREFIX}#"));
    }
    filters.sort();
    filters.dedup();
    for f in &filters {
        interest.set(f, true);
    }
    let cfgs = cfgs.to_vec();
    // Built here, so that a failure stops the start-up.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("petrel-kafka".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, produce::main(cfgs, rx, shared, interest));
        })?;
    Ok(link)
}

/// Tells every shard what Kafka wants.
#[derive(Clone)]
pub(crate) struct Interest {
    inboxes: Vec<async_channel::Sender<Inbox>>,
    from: ShardId,
    shards: u16,
}

impl Interest {
    fn set(&self, filter: &str, add: bool) {
        for tx in self.inboxes.iter().take(usize::from(self.shards)) {
            let msg = ShardMsg::Interest {
                from: self.from,
                filter: filter.into(),
                add,
            };
            let _ = tx.try_send(Inbox::Cluster(ClusterIn::Shard(msg)));
        }
    }

    fn release(&self, r: AckRef) {
        if let Some(tx) = self.inboxes.get(usize::from(r.shard)) {
            let msg = ShardMsg::AckRelease { key: r.key };
            let _ = tx.try_send(Inbox::Cluster(ClusterIn::Shard(msg)));
        }
    }

    fn park(&self, r: AckRef) {
        if let Some(tx) = self.inboxes.get(usize::from(r.shard)) {
            let msg = ShardMsg::AckParked { key: r.key };
            let _ = tx.try_send(Inbox::Cluster(ClusterIn::Shard(msg)));
        }
    }
}

/// An authorizer that refuses subscriptions to `$queue/` (those messages are Kafka's only)
/// and asks `inner` about everything else.
pub struct QueueGuard<A>(pub A);

impl<A: broker_core::policy::Authorizer> broker_core::policy::Authorizer for QueueGuard<A> {
    fn can_publish(
        &mut self,
        client: &broker_core::policy::ClientInfo<'_>,
        topic: &str,
        qos: broker_core::mqtt_proto::QoS,
        retain: bool,
    ) -> bool {
        self.0.can_publish(client, topic, qos, retain)
    }

    fn can_subscribe(
        &mut self,
        client: &broker_core::policy::ClientInfo<'_>,
        filter: &str,
        qos: broker_core::mqtt_proto::QoS,
    ) -> bool {
        !is_queue_filter(filter) && self.0.can_subscribe(client, filter, qos)
    }

    fn can_receive(&mut self, client: &broker_core::policy::ClientInfo<'_>, topic: &str) -> bool {
        self.0.can_receive(client, topic)
    }

    fn checks_receive(&self) -> bool {
        self.0.checks_receive()
    }
}
