//! The Kafka thread: maps each message to its Kafka topics, batches records per topic
//! (`linger_ms`), produces them with `acks=all` (rskafka), retries until Kafka takes
//! them, and then releases the publishers' acknowledgements.

use super::{Control, Interest, Job, KafkaStatus, Shared, QUEUE_PREFIX};
use crate::config::{valid_kafka_topic, KafkaConfig, KafkaRoute};
use broker_core::AckRef;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Records per produce request and topic, and their bytes (under Kafka's default
/// `message.max.bytes` of 1 MiB for one partition's batch).
const MAX_BATCH: usize = 2000;
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// A topic's worker ends after this long without records.
const IDLE_WORKER: Duration = Duration::from_secs(60);
/// Workers kept before the ended ones are forgotten.
const IDLE_PRUNE_AT: usize = 1024;
/// How long rskafka retries one request before we hear of the failure (and retry it).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A message's acknowledgement, released once every record made of it is produced.
struct Done {
    ack: Option<AckRef>,
    remaining: Cell<usize>,
    interest: Interest,
    shared: Arc<Shared>,
}

impl Done {
    fn finish(&self) {
        let before = self.remaining.get();
        let left = before.saturating_sub(1);
        self.remaining.set(left);
        if before == 1 {
            if let Some(a) = self.ack {
                self.interest.release(a);
            }
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

struct Rec {
    record: Record,
    done: Rc<Done>,
    /// From `$queue/<name>`: a client chose the topic, so a topic that does not exist
    /// drops it (a configured route's waits for the operator to create it).
    queue: bool,
}

/// One `[[kafka]]` block: its client (built once Kafka answers) and topic metadata.
struct Block {
    cfg: KafkaConfig,
    status: Arc<KafkaStatus>,
    client: RefCell<Option<Arc<Client>>>,
    /// Partition count per topic.
    partitions: RefCell<HashMap<String, i32>>,
}

impl Block {
    fn failed(&self, e: String) {
        if self.status.connected.swap(false, Ordering::Relaxed)
            || self.status.last_error().as_deref() != Some(e.as_str())
        {
            tracing::warn!("kafka \"{}\": {e}", self.cfg.name);
        }
        self.status.set_error(Some(e));
    }

    async fn client(&self) -> Result<Arc<Client>, String> {
        if let Some(c) = self.client.borrow().clone() {
            return Ok(c);
        }
        let backoff = rskafka::BackoffConfig {
            deadline: Some(REQUEST_DEADLINE),
            ..rskafka::BackoffConfig::default()
        };
        let c = ClientBuilder::new(self.cfg.bootstrap.clone())
            .client_id("petrel")
            .backoff_config(backoff)
            .build()
            .await
            .map_err(|e| format!("cannot reach {:?}: {e}", self.cfg.bootstrap))?;
        let c = Arc::new(c);
        *self.client.borrow_mut() = Some(c.clone());
        Ok(c)
    }

    async fn partition_count(&self, client: &Client, topic: &str) -> Result<i32, String> {
        if let Some(n) = self.partitions.borrow().get(topic) {
            return Ok(*n);
        }
        let topics = client
            .list_topics()
            .await
            .map_err(|e| format!("metadata: {e}"))?;
        let mut found = None;
        let mut known = self.partitions.borrow_mut();
        for t in topics {
            let n = t.partitions.len() as i32;
            if t.name == topic {
                found = Some(n);
            }
            if n > 0 {
                known.insert(t.name, n);
            }
        }
        match found {
            Some(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "the Kafka topic \"{topic}\" does not exist (create it)"
            )),
        }
    }
}

pub(super) async fn main(
    cfgs: Vec<KafkaConfig>,
    rx: async_channel::Receiver<Control>,
    shared: Arc<Shared>,
    interest: Interest,
) {
    let blocks: Vec<Rc<Block>> = cfgs
        .into_iter()
        .zip(shared.blocks.iter())
        .map(|(cfg, status)| {
            Rc::new(Block {
                cfg,
                status: status.clone(),
                client: RefCell::new(None),
                partitions: RefCell::new(HashMap::new()),
            })
        })
        .collect();
    // Connect early, so that the status says whether Kafka is there before any message.
    for b in &blocks {
        let b = b.clone();
        tokio::task::spawn_local(async move {
            match b.client().await {
                Ok(_) => {
                    b.status.connected.store(true, Ordering::Relaxed);
                    tracing::info!(
                        "kafka \"{}\": connected to {:?}",
                        b.cfg.name,
                        b.cfg.bootstrap
                    );
                }
                Err(e) => b.failed(e),
            }
        });
    }
    let mut workers: HashMap<(usize, String), mpsc::UnboundedSender<Rec>> = HashMap::new();
    // The thread's copy of the routes (the admin API changes the shared one, then tells
    // the thread), and the filters the shards were told about.
    let mut routes: Vec<Vec<KafkaRoute>> = blocks.iter().map(|b| b.status.routes()).collect();
    let mut announced = all_filters(&routes);
    while let Ok(c) = rx.recv().await {
        match c {
            Control::Job(job) => {
                dispatch(job, &blocks, &routes, &mut workers, &shared, &interest);
            }
            Control::RoutesChanged => {
                routes = blocks.iter().map(|b| b.status.routes()).collect();
                let now = all_filters(&routes);
                for f in now.iter().filter(|f| !announced.contains(f)) {
                    interest.set(f, true);
                }
                for f in announced.iter().filter(|f| !now.contains(f)) {
                    interest.set(f, false);
                }
                announced = now;
            }
        }
    }
}

fn all_filters(routes: &[Vec<KafkaRoute>]) -> Vec<String> {
    let mut f: Vec<String> = routes.iter().flatten().map(|r| r.filter.clone()).collect();
    f.push(format!("{QUEUE_PREFIX}#"));
    f.sort();
    f.dedup();
    f
}

/// The (block, Kafka topic) pairs a message goes to.
fn targets(topic: &str, routes: &[Vec<KafkaRoute>]) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    if let Some(name) = topic.strip_prefix(QUEUE_PREFIX) {
        if !routes.is_empty() && valid_kafka_topic(name) {
            out.push((0, name.to_owned()));
        }
        return out;
    }
    for (i, block) in routes.iter().enumerate() {
        for r in block {
            if broker_core::mqtt_proto::topic::matches(&r.filter, topic) {
                let t = (i, r.topic.clone());
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
    }
    out
}

fn record(job: &Job) -> Record {
    let msg = &job.msg;
    let mut headers = BTreeMap::new();
    for (k, v) in msg.properties().user_properties.iter() {
        // Kafka headers may repeat a name, rskafka's map may not: the last value wins.
        headers.insert(k.to_owned(), v.as_bytes().to_vec());
    }
    // Ours last: a publisher's user property cannot pass for them.
    headers.insert(
        "mqtt_qos".to_owned(),
        (msg.qos as u8).to_string().into_bytes(),
    );
    match &job.client_id {
        Some(c) => headers.insert("mqtt_clientid".to_owned(), c.as_bytes().to_vec()),
        None => headers.remove("mqtt_clientid"),
    };
    Record {
        key: Some(msg.topic_bytes().to_vec()),
        value: Some(msg.payload().to_vec()),
        headers,
        timestamp: chrono::Utc::now(),
    }
}

fn dispatch(
    job: Job,
    blocks: &[Rc<Block>],
    routes: &[Vec<KafkaRoute>],
    workers: &mut HashMap<(usize, String), mpsc::UnboundedSender<Rec>>,
    shared: &Arc<Shared>,
    interest: &Interest,
) {
    let targets = targets(job.msg.topic(), routes);
    let done = Rc::new(Done {
        ack: job.ack,
        remaining: Cell::new(targets.len().max(1)),
        interest: interest.clone(),
        shared: shared.clone(),
    });
    if targets.is_empty() {
        // A route removed meanwhile, or `$queue/` with an invalid name.
        shared.unrouted.fetch_add(1, Ordering::Relaxed);
        done.finish();
        return;
    }
    if let Some(a) = job.ack {
        if shared.pending.load(Ordering::Relaxed) > shared.max_pending {
            // Too much waits for Kafka: hold this publisher until its message is in.
            shared.held.fetch_add(1, Ordering::Relaxed);
            interest.park(a);
        }
    }
    let rec = record(&job);
    let queue = job.msg.topic().starts_with(QUEUE_PREFIX);
    if workers.len() > IDLE_PRUNE_AT {
        // Workers of topics gone quiet have ended (`$queue/<name>` names are the clients').
        workers.retain(|_, tx| !tx.is_closed());
    }
    for t in targets {
        let mut r = Rec {
            record: rec.clone(),
            done: done.clone(),
            queue,
        };
        // A worker idle for IDLE_WORKER ended: a new one takes over.
        for _ in 0..2 {
            let tx = workers.entry(t.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                if let Some(block) = blocks.get(t.0) {
                    tokio::task::spawn_local(topic_worker(block.clone(), t.1.clone(), rx));
                }
                tx
            });
            match tx.send(r) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => {
                    workers.remove(&t);
                    r = back;
                }
            }
        }
    }
}

/// Produces one Kafka topic's records, a batch at a time (order kept per partition).
async fn topic_worker(block: Rc<Block>, topic: String, mut rx: mpsc::UnboundedReceiver<Rec>) {
    let linger = Duration::from_millis(u64::from(block.cfg.linger_ms));
    let mut clients: HashMap<i32, Arc<PartitionClient>> = HashMap::new();
    loop {
        let first = match tokio::time::timeout(IDLE_WORKER, rx.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(_) => {
                // Idle: end (the dispatcher starts another when records come).
                rx.close();
                match rx.try_recv() {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        };
        let mut bytes = first.record.approximate_size();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let next = match rx.try_recv() {
                Ok(r) => Some(r),
                Err(_) if linger.is_zero() => None,
                Err(_) => tokio::select! {
                    r = rx.recv() => r,
                    _ = tokio::time::sleep_until(deadline) => None,
                },
            };
            let Some(r) = next else { break };
            bytes += r.record.approximate_size();
            batch.push(r);
        }
        let mut wait = RETRY_MIN;
        let mut first_try = true;
        // Records per partition and request: all, or one at a time once Kafka said a
        // request was too large.
        let mut per_request = usize::MAX;
        while !batch.is_empty() {
            if !first_try {
                block
                    .status
                    .retried
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
            first_try = false;
            match produce(&block, &topic, &mut clients, &mut batch, per_request).await {
                Ok(()) => {
                    block.status.connected.store(true, Ordering::Relaxed);
                    block.status.set_error(None);
                    first_try = true;
                }
                Err(Failure::NoTopic(e)) if batch.iter().all(|r| r.queue) => {
                    // `$queue/<name>` for a topic Kafka does not have: not retried.
                    block.failed(e);
                    for r in batch.drain(..) {
                        r.done.shared.unrouted.fetch_add(1, Ordering::Relaxed);
                        r.done.finish();
                    }
                }
                Err(Failure::TooLarge(e)) => {
                    block.failed(e);
                    per_request = 1;
                    first_try = true;
                }
                Err(Failure::NoTopic(e) | Failure::Other(e)) => block.failed(e),
            }
        }
    }
}

/// Produces `batch` (grouped by partition, partitions in parallel, at most `per_request`
/// records of each); what Kafka took is finished and removed from `batch`, the rest stays
/// for the next attempt, in order.
async fn produce(
    block: &Block,
    topic: &str,
    clients: &mut HashMap<i32, Arc<PartitionClient>>,
    batch: &mut Vec<Rec>,
    per_request: usize,
) -> Result<(), Failure> {
    let client = block.client().await.map_err(Failure::Other)?;
    let n = block
        .partition_count(&client, topic)
        .await
        .map_err(Failure::NoTopic)?;
    let mut by_partition: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for r in batch.drain(..) {
        let key = r.record.key.as_deref().unwrap_or_default();
        by_partition
            .entry(super::murmur2::partition(key, n))
            .or_default()
            .push(r);
    }
    let mut set = tokio::task::JoinSet::new();
    // Per partition: the records sent now, and those for a later request.
    let mut waiting: BTreeMap<i32, (Vec<Rec>, Vec<Rec>)> = BTreeMap::new();
    for (p, mut recs) in by_partition {
        let later = recs.split_off(recs.len().min(per_request));
        let pc = match clients.get(&p) {
            Some(pc) => pc.clone(),
            None => match client
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await
            {
                Ok(pc) => {
                    let pc = Arc::new(pc);
                    clients.insert(p, pc.clone());
                    pc
                }
                Err(e) => {
                    batch.extend(recs);
                    batch.extend(later);
                    for (_, (sent, later)) in std::mem::take(&mut waiting) {
                        batch.extend(sent);
                        batch.extend(later);
                    }
                    return Err(Failure::Other(format!("{topic}[{p}]: {e}")));
                }
            },
        };
        let records: Vec<Record> = recs.iter().map(|r| r.record.clone()).collect();
        waiting.insert(p, (recs, later));
        set.spawn_local(async move { (p, pc.produce(records, Compression::NoCompression).await) });
    }
    let mut error = None;
    while let Some(joined) = set.join_next().await {
        let Ok((p, result)) = joined else {
            continue;
        };
        let (recs, later) = waiting.remove(&p).unwrap_or_default();
        match result {
            Ok(_) => {
                block
                    .status
                    .produced
                    .fetch_add(recs.len() as u64, Ordering::Relaxed);
                for r in recs {
                    r.done.finish();
                }
            }
            Err(e) if too_large(&e) && recs.len() == 1 => {
                // One record Kafka will never take (message.max.bytes): retrying would
                // block the topic for good. Counted, and its publisher released.
                tracing::warn!("kafka: a record for {topic}[{p}] is too large for Kafka: dropped");
                block.status.refused.fetch_add(1, Ordering::Relaxed);
                for r in recs {
                    r.done.finish();
                }
            }
            Err(e) if too_large(&e) => {
                error.get_or_insert(Failure::TooLarge(format!("{topic}[{p}]: {e}")));
                batch.extend(recs);
            }
            Err(e) => {
                clients.remove(&p);
                error = Some(Failure::Other(format!("producing to {topic}[{p}]: {e}")));
                batch.extend(recs);
            }
        }
        batch.extend(later);
    }
    // A task that panicked leaves its records here: they are tried again.
    for (_, (recs, later)) in waiting {
        batch.extend(recs);
        batch.extend(later);
    }
    // Records the per-request limit left in `batch` go in the next call, at once.
    error.map_or(Ok(()), Err)
}

/// Why a produce attempt did not take everything.
enum Failure {
    /// The topic is not in Kafka's metadata.
    NoTopic(String),
    /// Kafka refused a request as too large (`message.max.bytes`).
    TooLarge(String),
    Other(String),
}

fn too_large(e: &rskafka::client::error::Error) -> bool {
    use rskafka::client::error::{Error, ProtocolError};
    matches!(
        e,
        Error::ServerError {
            protocol_error: ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge,
            ..
        }
    )
}
