//! The cluster (`[cluster]`): several brokers that behave as one, on etcd (the control
//! plane: membership leases, one owner per client identifier, subscription routes) and
//! NATS (the data plane: one message per publish and remote node, confirmations).
//!
//! One thread per process runs both clients on a small tokio runtime (`node.rs`); the
//! shards talk to it over channels and never wait for it. What a message, an interest or
//! a confirmation means is the core's (`broker_core::cluster`): remote nodes are shard
//! numbers after the broker's own, so routing to them is the core's routing to shards.
//!
//! etcd keys under `<name>/`: `nodes/<node>` (the node's lease), `routes/<node>/<filter>`
//! (one per filter with subscribers on that node, bound to its lease), `clients/<id>` (the
//! owning node, bound to its lease), `held/<node>/<life>/<filter>` (persistent sessions'
//! filters, not bound to a lease: `held.rs`). NATS subjects under `<name>.`: `node.<node>`
//! (forwarded messages; a reply subject asks for a confirmation), `retain.<node>` (the
//! retained updates a node ordered), `ctl.<node>` (takeover requests).

mod held;
mod jetstream;
mod node;
mod owner;
mod sessions;
mod writes;

pub use held::Held;
pub use sessions::{Append, Journal, ROLLUP_EVERY};

use broker_core::{ShardId, ShardMsg};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::ClusterConfig;

/// Remote nodes a node can route to (shard numbers reserved in the core).
pub const MAX_NODES: u16 = 64;

/// What a shard (or a hook on a shard) tells the cluster thread.
pub enum FromShard {
    /// A core message for the cluster link or a remote node (`Event::ToShard`).
    Msg { to: ShardId, msg: ShardMsg },
    /// A forwarded message is in every queue here (`Event::ClusterAck`).
    Ack { token: u64 },
    /// A connection of this client identifier closed (the `on_closed` hook).
    Closed { client_id: Box<str> },
    /// Its session ended (not moved or replaced): ownership ends with it when no
    /// connection of it is left.
    Ended { client_id: Box<str> },
    /// The broker stopped: revoke the lease, then say so.
    Leave(std::sync::mpsc::Sender<()>),
}

/// What the cluster thread gives a shard (`Inbox::Cluster`).
pub enum ClusterIn {
    /// A message another node forwarded: `handle_cluster_publish`.
    Publish {
        frame: Bytes,
        publisher_hash: u64,
        token: Option<u64>,
    },
    /// Another node chose this node's members of a shared group for a message, to the
    /// group's owner shard: `handle_cluster_shared`.
    Shared {
        frame: Bytes,
        share: String,
        token: Option<u64>,
    },
    /// Another node (`slot`) has members of a shared group, or no longer:
    /// `handle_cluster_group`.
    Group { slot: u16, share: String, add: bool },
    /// A retained update another node ordered, to the topic's owner shard:
    /// `handle_cluster_retain`.
    Retain { frame: Bytes },
    /// A core message: a remote node's interest, or the release of an acknowledgement a
    /// remote node confirmed.
    Shard(ShardMsg),
    /// A session taken over from another node (read back from the shared stream), to its
    /// owner shard before its CONNECT: `restore_stored`, then the messages kept for it
    /// while its node was gone (`queue_for_session`); `done` when applied.
    Restore {
        session: broker_core::store::RestoredSession,
        frames: Vec<Bytes>,
        done: async_channel::Sender<()>,
    },
    /// A message kept for a session's previous node (gone), for that session here, to its
    /// owner shard: `queue_for_session`.
    Queue { client_id: Box<str>, frame: Bytes },
}

/// Counters of the cluster thread (read by metrics and the admin API).
#[derive(Default)]
pub struct Counters {
    /// Messages forwarded to other nodes, and those of them confirmed, and those whose
    /// confirmation never came (node gone or late: the publisher was released anyway).
    pub forwarded: AtomicU64,
    pub confirmed: AtomicU64,
    pub unconfirmed: AtomicU64,
    /// Messages other nodes forwarded here.
    pub received: AtomicU64,
    /// Retained updates sent to and received from other nodes.
    pub retained_out: AtomicU64,
    pub retained_in: AtomicU64,
    /// Messages for a node that is gone (or died before confirming them), kept for its
    /// sessions in the cluster's stream.
    pub kept: AtomicU64,
    /// Persistent sessions read back from the cluster's stream.
    pub adopted: AtomicU64,
    /// QoS 0 messages not forwarded because the way to the other nodes was congested
    /// (at most once: dropped before they pile up).
    pub dropped: AtomicU64,
    /// Messages sent again because their confirmation was late (NATS drops what a slow
    /// node cannot take; the receiver recognises a message it already has).
    pub resent: AtomicU64,
    /// Takeovers of a client connected to another node.
    pub takeovers: AtomicU64,
    /// CONNECTs refused because this node could not own the client identifier.
    pub claims_refused: AtomicU64,
}

/// State shared between the cluster thread, the shards and the admin API.
pub struct Shared {
    pub node_id: String,
    /// The node cannot renew its lease: it serves no client until it can.
    pub fenced: AtomicBool,
    pub counters: Counters,
    /// Nodes currently members (their ids), with this one.
    pub members: std::sync::Mutex<Vec<String>>,
    /// Per other node, as of the cluster thread's last tick (a quarter of a second).
    pub peers: std::sync::Mutex<Vec<(String, PeerCounters)>>,
    /// The shared copy of sessions (set once connected).
    pub journal: std::sync::OnceLock<Journal>,
    /// The store thread (set once it runs): a session taken over is written there.
    pub store: std::sync::OnceLock<async_channel::Sender<crate::store::Request>>,
    /// Core messages on their way to the cluster thread.
    pub backlog: std::sync::atomic::AtomicUsize,
    /// The node's current lease (its "life": the held routes of its sessions are its).
    pub life: Arc<AtomicI64>,
}

/// Beyond this many core messages waiting for the cluster thread, QoS 0 messages for other
/// nodes are dropped (QoS 1/2 ones are bounded by their publishers' windows).
pub const QOS0_BACKLOG: usize = 16_384;

/// Messages this node forwarded to one other node, and what became of their
/// confirmations.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerCounters {
    pub forwarded: u64,
    pub confirmed: u64,
    pub unconfirmed: u64,
}

/// A shard's end of the cluster: where it sends, and whether it may serve.
#[derive(Clone)]
pub struct Link {
    pub tx: async_channel::Sender<FromShard>,
    pub claims: async_channel::Sender<owner::Claim>,
    pub shared: Arc<Shared>,
}

impl Link {
    /// Sends a core message for the cluster (never waits: the channel is unbounded, and
    /// QoS 1/2 publishers wait for their confirmations, which bounds them).
    pub fn send(&self, msg: FromShard) {
        if let FromShard::Msg { msg: m, .. } = &msg {
            let backlog = self.shared.backlog.load(Ordering::Relaxed);
            if backlog > QOS0_BACKLOG && at_most_once(m) {
                self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.shared.backlog.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.tx.try_send(msg);
    }

    /// Leaves the cluster (the lease revoked: every key of this node goes at once); waits
    /// for it a few seconds at most.
    pub fn leave(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.try_send(FromShard::Leave(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(3));
        }
    }

    /// Asks for ownership of `client_id` before its CONNECT is served: true when this
    /// node owns it (a connection on another node was taken over), false when it cannot
    /// (no etcd quorum, fenced, or the other owner did not let go in time).
    pub async fn claim(&self, client_id: &str) -> bool {
        if self.shared.fenced.load(Ordering::Acquire) {
            return false;
        }
        let (tx, rx) = async_channel::bounded(1);
        let c = owner::Claim {
            client_id: client_id.into(),
            reply: tx,
        };
        if self.claims.try_send(c).is_err() {
            return false;
        }
        rx.recv().await.unwrap_or(false)
    }
}

/// A QoS 0 message for another node (no one waits for it).
fn at_most_once(m: &ShardMsg) -> bool {
    match m {
        ShardMsg::Publish { msg, ack, .. } | ShardMsg::SharedDeliver { msg, ack, .. } => {
            ack.is_none() && msg.qos == broker_core::mqtt_proto::QoS::AtMostOnce
        }
        _ => false,
    }
}

/// Starts the cluster thread and waits until the node is a member (lease granted,
/// registered, NATS subscribed) or fails with why. `inboxes` are the shards' control
/// channels; `handle` kicks clients for takeovers and fencing.
pub fn start(
    cfg: &ClusterConfig,
    shards: u16,
    inboxes: Vec<async_channel::Sender<crate::broker::shard::Inbox>>,
    handle: crate::broker::BrokerHandle,
    epoch: std::time::Instant,
) -> anyhow::Result<Link> {
    let shared = Arc::new(Shared {
        node_id: cfg.node_id.clone(),
        fenced: AtomicBool::new(false),
        counters: Counters::default(),
        members: std::sync::Mutex::new(Vec::new()),
        peers: std::sync::Mutex::new(Vec::new()),
        journal: std::sync::OnceLock::new(),
        store: std::sync::OnceLock::new(),
        backlog: std::sync::atomic::AtomicUsize::new(0),
        life: Arc::new(AtomicI64::new(0)),
    });
    let (tx, rx) = async_channel::unbounded();
    let (claims_tx, claims_rx) = async_channel::unbounded();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let setup = node::Setup {
        cfg: cfg.clone(),
        shards,
        inboxes,
        handle,
        shared: shared.clone(),
        rx,
        claims: claims_rx,
        epoch,
    };
    std::thread::Builder::new()
        .name("petrel-cluster".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("cluster runtime: {e}")));
                    return;
                }
            };
            rt.block_on(node::run(setup, ready_tx));
        })?;
    // Connecting is bounded by the clients' own timeouts; this is the last resort.
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => anyhow::bail!("cluster: no answer from etcd and NATS within 30 s"),
    }
    Ok(Link {
        tx,
        claims: claims_tx,
        shared,
    })
}

/// Tells the cluster thread when a client's connection closes and when its session ends
/// (its ownership ends with both: a persistent session stays this node's while offline).
pub struct ClusterHooks(pub Link);

impl broker_core::policy::Hooks for ClusterHooks {
    fn on_session_terminated(&mut self, client_id: &str, why: broker_core::policy::SessionEnd) {
        // Taken over: it goes on (here with a new connection, or on another node, which
        // owns it already).
        if why != broker_core::policy::SessionEnd::TakenOver {
            self.0.send(FromShard::Ended {
                client_id: client_id.into(),
            });
        }
    }

    fn on_closed(
        &mut self,
        client_id: Option<&str>,
        _reason: Option<broker_core::mqtt_proto::ReasonCode>,
    ) {
        if let Some(id) = client_id {
            self.0.send(FromShard::Closed {
                client_id: id.into(),
            });
        }
    }
}
