//! The embedding API (Gmqtt's `Server` interface): a running broker and a handle to it
//! that publishes, subscribes on a client's behalf, lists clients and kicks. The admin
//! API is a thin layer over the same handle.
//!
//! Each call sends a closure to the shards over their control channels and waits for the
//! answers; the shards run it between two turns of their event loop. The handle never
//! touches a shard's state from another thread.

use super::shard::{Inbox, Shard};
use super::ReloadFn;
use broker_core::mqtt_proto::{Properties, QoS, ReasonCode, SubscriptionOptions};
use broker_core::{ClientSummary, Metrics, SubscriptionSummary};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A closure a shard runs for a handle (between two turns of its event loop). What it
/// returns answers the caller once the shard has acted on the core's events (sent what
/// other shards must know: a new subscription's interest), so that the caller's next call
/// sees the effects of this one.
pub type Call = Box<dyn FnOnce(&Shard) -> Answer + Send>;
/// Sends a call's result back (run after the shard's `pump`).
pub type Answer = Box<dyn FnOnce() + Send>;

thread_local! {
    /// Set on shard threads: a handle called from a hook would wait for its own shard.
    static ON_SHARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the current thread as a shard's.
pub(crate) fn mark_shard_thread() {
    ON_SHARD.with(|c| c.set(true));
}

fn refuse_on_shard() -> Result<(), HandleError> {
    if ON_SHARD.with(|c| c.get()) {
        return Err(HandleError::OnShardThread);
    }
    Ok(())
}

/// An in-process connection: bytes to the core, and the core's output.
pub type InternalLink = (
    async_channel::Sender<Vec<u8>>,
    async_channel::Receiver<Vec<u8>>,
);

/// The listener index of in-process connections (bridges): trusted, as Mosquitto trusts
/// its bridges' local side.
pub const INTERNAL_LISTENER: u16 = u16::MAX;

/// How long a handle waits for a shard's answer (a shard stopping, or stopped, is late).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// One shard's counters and gauges, as a handle reads them.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    /// The shard's number.
    pub shard: u16,
    /// The core's counters.
    pub metrics: Metrics,
    /// Open network connections (MQTT or not yet).
    pub connections: usize,
    /// Sessions, connected or not.
    pub sessions: usize,
    /// Connected sessions.
    pub live_connections: usize,
    /// Subscriptions of its sessions: all, and shared ones.
    pub subscriptions: usize,
    pub shared_subscriptions: usize,
    /// Distinct filters its index routes to.
    pub topics: usize,
    /// Retained messages (every shard holds the whole retained set).
    pub retained: usize,
    /// Bytes and MQTT packets handed to sockets.
    pub bytes_sent: u64,
    pub packets_sent: u64,
}

/// A message to publish as the broker.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties to send with it.
    pub payload_format_indicator: Option<bool>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: Vec<(String, String)>,
}

impl PublishRequest {
    /// A message with no properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>, qos: QoS) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain: false,
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }
    }
}

/// Why a handle call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleError {
    /// A shard did not answer in time (stopping or stopped). What was asked may still be
    /// carried out later.
    Unavailable,
    /// Called on a shard's own thread (from a hook): it would wait for itself. Hooks act
    /// through their return values, or hand the work to a thread of their own.
    OnShardThread,
    /// The core refused the request with this reason code.
    Refused(ReasonCode),
}

impl std::fmt::Display for HandleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable => f.write_str("the broker is not running"),
            Self::OnShardThread => f.write_str("a broker handle cannot be used on a shard thread"),
            Self::Refused(rc) => write!(f, "refused: {rc:?}"),
        }
    }
}

impl std::error::Error for HandleError {}

/// A handle to a running broker: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct BrokerHandle {
    shards: Arc<Vec<async_channel::Sender<Inbox>>>,
    /// The wall clock when the core's clock read 0.
    started: SystemTime,
    epoch: std::time::Instant,
}

impl BrokerHandle {
    pub(crate) fn new(
        shards: Vec<async_channel::Sender<Inbox>>,
        epoch: std::time::Instant,
    ) -> Self {
        let started = SystemTime::now()
            .checked_sub(epoch.elapsed())
            .unwrap_or_else(SystemTime::now);
        Self {
            shards: Arc::new(shards),
            started,
            epoch,
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Wall-clock time of a core instant.
    pub fn wall_clock(&self, at: broker_core::Instant) -> SystemTime {
        self.started + Duration::from_millis(at.as_millis())
    }

    /// How long the broker has run.
    pub fn uptime(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Opens an in-process MQTT connection to the shard that owns `client_id` (a bridge's
    /// local side): bytes sent on the first channel reach the core as a client's would,
    /// and its output arrives on the second, which closes when the connection ends. The
    /// connection comes from [`INTERNAL_LISTENER`]: no password or ACL applies to it.
    pub fn connect_internal(&self, client_id: &str) -> Result<InternalLink, HandleError> {
        let owner = broker_core::shard::owner_of_client(client_id, self.shards.len() as u16);
        let tx = self
            .shards
            .get(usize::from(owner))
            .ok_or(HandleError::Unavailable)?;
        // Unbounded towards the shard: the bridge must never wait to send while the shard
        // waits for it to read (the MQTT windows bound what is in there). Bounded back.
        let (up_tx, up_rx) = async_channel::unbounded();
        let (down_tx, down_rx) = async_channel::bounded(8);
        let remote = super::relay::Remote {
            peer: broker_core::PeerInfo {
                addr: None,
                cert_identity: None,
                listener: INTERNAL_LISTENER,
            },
            initial: Vec::new(),
            from_client: up_rx,
            to_client: down_tx,
        };
        tx.try_send(Inbox::Remote(Box::new(remote)))
            .map_err(|_| HandleError::Unavailable)?;
        Ok((up_tx, down_rx))
    }

    /// Runs `f` on every shard and collects the answers (in shard order).
    fn on_all<T: Send + 'static>(
        &self,
        f: impl Fn(&Shard) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, HandleError> {
        refuse_on_shard()?;
        let f = Arc::new(f);
        let mut waits = Vec::with_capacity(self.shards.len());
        for tx in self.shards.iter() {
            let (reply, wait) = mpsc::sync_channel(1);
            let f = f.clone();
            let call: Call = Box::new(move |shard: &Shard| {
                let v = f(shard);
                Box::new(move || {
                    let _ = reply.send(v);
                })
            });
            tx.try_send(Inbox::Call(call))
                .map_err(|_| HandleError::Unavailable)?;
            waits.push(wait);
        }
        waits
            .into_iter()
            .map(|w| {
                w.recv_timeout(ANSWER_TIMEOUT)
                    .map_err(|_| HandleError::Unavailable)
            })
            .collect()
    }

    /// Runs `f` on one shard.
    fn on_one<T: Send + 'static>(
        &self,
        shard: usize,
        f: impl FnOnce(&Shard) -> T + Send + 'static,
    ) -> Result<T, HandleError> {
        refuse_on_shard()?;
        let tx = self.shards.get(shard).ok_or(HandleError::Unavailable)?;
        let (reply, wait) = mpsc::sync_channel(1);
        let call: Call = Box::new(move |s: &Shard| {
            let v = f(s);
            Box::new(move || {
                let _ = reply.send(v);
            })
        });
        tx.try_send(Inbox::Call(call))
            .map_err(|_| HandleError::Unavailable)?;
        wait.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| HandleError::Unavailable)
    }

    /// Every session (connected or not), sorted by client identifier.
    pub fn clients(&self) -> Result<Vec<ClientSummary>, HandleError> {
        let mut all: Vec<ClientSummary> = self
            .on_all(|s| s.broker.borrow().clients())?
            .into_iter()
            .flatten()
            .collect();
        all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(all)
    }

    /// One client's session.
    pub fn client(&self, client_id: &str) -> Result<Option<ClientSummary>, HandleError> {
        let id: Box<str> = client_id.into();
        Ok(self
            .on_all(move |s| s.broker.borrow().client(&id))?
            .into_iter()
            .flatten()
            .next())
    }

    /// Disconnects a client (MQTT 5: DISCONNECT 0x98) and discards its session; false if
    /// there is no such session.
    pub fn kick(&self, client_id: &str) -> Result<bool, HandleError> {
        let id: Box<str> = client_id.into();
        Ok(self
            .on_all(move |s| {
                let now = s.now();
                s.broker.borrow_mut().kick(now, &id)
            })?
            .into_iter()
            .any(|k| k))
    }

    /// Disconnects a client whose session another node of the cluster takes over (MQTT 5:
    /// DISCONNECT 0x8E) and discards its session here.
    pub fn kick_taken_over(&self, client_id: &str) -> Result<bool, HandleError> {
        let id: Box<str> = client_id.into();
        Ok(self
            .on_all(move |s| {
                let now = s.now();
                s.broker
                    .borrow_mut()
                    .kick_for(now, &id, ReasonCode::SessionTakenOver)
            })?
            .into_iter()
            .any(|k| k))
    }

    /// Another node of the cluster takes this client's session over: its connection here
    /// closes (MQTT 5: DISCONNECT 0x8E) and the session leaves this node, its records
    /// kept in the cluster's shared copy. Whether a session was here.
    pub fn move_out(&self, client_id: &str) -> Result<bool, HandleError> {
        let id: Box<str> = client_id.into();
        Ok(self
            .on_all(move |s| {
                let now = s.now();
                s.broker.borrow_mut().move_out(now, &id)
            })?
            .into_iter()
            .any(|k| k))
    }

    /// [`BrokerHandle::move_out`], leaving a shadow of the session that queues what
    /// still comes here for it (`Broker::move_out_shadowed`); `move_out` ends it.
    /// The shadow's filters, if the session was here.
    pub fn move_out_shadowed(&self, client_id: &str) -> Result<Option<Vec<Box<str>>>, HandleError> {
        let id: Box<str> = client_id.into();
        Ok(self
            .on_all(move |s| {
                let now = s.now();
                s.broker.borrow_mut().move_out_shadowed(now, &id)
            })?
            .into_iter()
            .flatten()
            .next())
    }

    /// Closes every connection (MQTT 5: DISCONNECT `reason`), keeping their sessions.
    pub fn disconnect_all(&self, reason: ReasonCode) -> Result<usize, HandleError> {
        Ok(self
            .on_all(move |s| {
                let now = s.now();
                s.broker.borrow_mut().disconnect_all(now, reason)
            })?
            .into_iter()
            .sum())
    }

    /// Subscribes a client's session as if it had sent SUBSCRIBE: the SUBACK reason
    /// code (a granted QoS or a refusal), `None` if there is no such session.
    pub fn subscribe(
        &self,
        client_id: &str,
        filter: &str,
        options: SubscriptionOptions,
    ) -> Result<Option<ReasonCode>, HandleError> {
        let (id, f): (Box<str>, Box<str>) = (client_id.into(), filter.into());
        Ok(self
            .on_all(move |s| {
                let now = s.now();
                s.broker
                    .borrow_mut()
                    .subscribe_client(now, &id, &f, options)
            })?
            .into_iter()
            .flatten()
            .next())
    }

    /// Removes a client's subscription: `Some(false)` if it had none with this filter,
    /// `None` if there is no such session.
    pub fn unsubscribe(&self, client_id: &str, filter: &str) -> Result<Option<bool>, HandleError> {
        let (id, f): (Box<str>, Box<str>) = (client_id.into(), filter.into());
        Ok(self
            .on_all(move |s| s.broker.borrow_mut().unsubscribe_client(&id, &f))?
            .into_iter()
            .flatten()
            .next())
    }

    /// Subscriptions: one client's, or everyone's.
    pub fn subscriptions(
        &self,
        client_id: Option<&str>,
    ) -> Result<Vec<SubscriptionSummary>, HandleError> {
        let id: Option<Box<str>> = client_id.map(Into::into);
        let mut all: Vec<SubscriptionSummary> = self
            .on_all(move |s| s.broker.borrow().subscriptions(id.as_deref()))?
            .into_iter()
            .flatten()
            .collect();
        all.sort_by(|a, b| (&a.client_id, &a.filter).cmp(&(&b.client_id, &b.filter)));
        Ok(all)
    }

    /// The topic filters subscribed to anywhere, sorted, each once.
    pub fn topics(&self) -> Result<Vec<Box<str>>, HandleError> {
        let mut all: Vec<Box<str>> = self
            .on_all(|s| s.broker.borrow().topic_filters())?
            .into_iter()
            .flatten()
            .collect();
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// Publishes as the broker; `Ok(false)` when nobody was subscribed.
    pub fn publish(&self, req: PublishRequest) -> Result<bool, HandleError> {
        // Any shard can route it; the topic picks one, spreading the work.
        let shard = (broker_core::index::stable_hash(&[req.topic.as_bytes()]) as usize)
            % self.shards.len().max(1);
        self.on_one(shard, move |s| {
            let now = s.now();
            let user: Vec<(&str, &str)> = req
                .user_properties
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let props = Properties {
                payload_format_indicator: req.payload_format_indicator,
                message_expiry_interval: req.message_expiry_interval,
                content_type: req.content_type.as_deref(),
                response_topic: req.response_topic.as_deref(),
                correlation_data: req.correlation_data.as_deref(),
                user_properties: broker_core::mqtt_proto::UserProperties::List(&user),
                ..Properties::default()
            };
            s.broker.borrow_mut().publish_as_broker(
                now,
                &req.topic,
                &props,
                &req.payload,
                req.qos,
                req.retain,
            )
        })?
        .map_err(HandleError::Refused)
    }

    /// Every shard's counters and gauges.
    pub fn stats(&self) -> Result<Vec<ShardStats>, HandleError> {
        self.on_all(|s| {
            let b = s.broker.borrow();
            let (subscriptions, shared_subscriptions) = b.subscription_counts();
            ShardStats {
                shard: s.id,
                metrics: b.metrics().clone(),
                connections: b.connection_count(),
                sessions: b.session_count(),
                live_connections: b.connected_count(),
                subscriptions,
                shared_subscriptions,
                topics: b.subscription_filter_count(),
                retained: b.retained_count(),
                bytes_sent: s.bytes_sent.get(),
                packets_sent: s.packets_sent.get(),
            }
        })
    }

    /// Asks every shard to stop (MQTT 5 clients get DISCONNECT 0x8B).
    pub fn shutdown(&self) {
        for s in self.shards.iter() {
            let _ = s.try_send(Inbox::Shutdown);
        }
    }

    pub(crate) fn senders(&self) -> &[async_channel::Sender<Inbox>] {
        &self.shards
    }
}

/// A started broker: its handle, its listeners' addresses and its threads.
pub struct Running {
    pub handle: BrokerHandle,
    /// The bound listener addresses (a port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    pub(super) threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
    pub(super) memory: Option<super::memory::Watch>,
    pub(super) writer: Option<crate::store::Writer>,
    /// The cluster's view (members, counters) when the broker is a node of one.
    pub cluster: Option<Arc<crate::cluster::Shared>>,
    pub(super) cluster_link: Option<crate::cluster::Link>,
    /// The Kafka thread's side, when `[[kafka]]` is configured.
    pub kafka: Option<crate::kafka::Link>,
}

impl Running {
    /// Stops the broker and waits for it (every shard flushed, the store written).
    pub fn stop(self) -> anyhow::Result<()> {
        self.handle.shutdown();
        self.wait()
    }

    /// Waits until every shard has stopped (after `BrokerHandle::shutdown`).
    pub fn wait(self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for h in self.threads {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(anyhow::anyhow!("a shard thread panicked")),
            }
        }
        if let Some(m) = self.memory {
            m.stop();
        }
        // Every shard has stopped: what they sent is written (and, in a cluster, in the
        // shared stream, which needs the cluster thread) before the process exits.
        if let Some(w) = self.writer {
            w.finish();
        }
        // Then the node leaves the cluster at once (its lease revoked) rather than when
        // the lease would have run out.
        if let Some(l) = self.cluster_link {
            l.leave();
        }
        result
    }

    /// Serves until SIGINT or SIGTERM; SIGHUP calls `reload` and hands the shards their
    /// new TLS configurations.
    pub fn wait_for_signals(self, reload: Arc<ReloadFn>) -> anyhow::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ])?;
        let handle = self.handle.clone();
        let sig_handle = signals.handle();
        let sig_thread = std::thread::spawn(move || {
            for sig in signals.forever() {
                if sig == signal_hook::consts::SIGHUP {
                    match reload() {
                        Ok(tls) => {
                            tracing::info!("SIGHUP: configuration reloaded");
                            for s in handle.senders() {
                                let _ = s.try_send(Inbox::ReloadTls(tls.clone()));
                            }
                        }
                        Err(e) => tracing::error!(
                            "SIGHUP: reload failed, keeping the old configuration: {e:#}"
                        ),
                    }
                    continue;
                }
                tracing::info!("signal {sig}: shutting down");
                handle.shutdown();
                break;
            }
        });
        let result = self.wait();
        sig_handle.close();
        let _ = sig_thread.join();
        result
    }
}
