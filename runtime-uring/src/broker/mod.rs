//! `petrel broker`: one thread per core, each with its own io_uring ring (epoll where
//! io_uring is unavailable), its own `SO_REUSEPORT` listeners and its own broker shard.

pub mod accept;
pub mod conn;
pub mod handle;
pub mod hooks;
pub mod memory;
pub mod relay;
pub mod report;
pub mod ring_conn;
pub mod shard;
pub mod wake;

use anyhow::bail;
use broker_core::{Broker, Policy};
pub use handle::{BrokerHandle, Running, INTERNAL_LISTENER};
use shard::{Inbox, ListenerState, Phase, Shard};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use crate::net::runtime::Driver;

/// Where a connection is served once its CONNECT names a client another shard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Placement {
    /// The socket moves to the owner shard.
    #[default]
    Handoff,
    /// The accepting shard keeps the socket and relays bytes to and from the owner
    // (`relay.rs`; still "forward" on the command line, hence the explicit name).
    #[value(name = "forward")]
    Relay,
}

/// A listener to open.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub proxy_protocol: bool,
    pub websockets: bool,
}

/// Reloads files on SIGHUP and returns each listener's new TLS configuration.
pub type ReloadFn =
    dyn Fn() -> anyhow::Result<Vec<Option<Arc<rustls::ServerConfig>>>> + Send + Sync;
/// Told the bound addresses once every listener is open.
pub type ReadyFn = dyn FnOnce(&[SocketAddr]) + Send;

/// Everything `run` needs.
pub struct RunSettings {
    pub core: broker_core::Config,
    pub listeners: Vec<ListenerSpec>,
    pub threads: usize,
    /// Pin shard `i` to CPU `i` (best on a dedicated machine; on a shared one the kernel
    /// balances better without).
    pub pin_cores: bool,
    pub driver: Driver,
    pub placement: Placement,
    /// A fresh policy for shard `i`.
    pub policy: Arc<dyn Fn(usize) -> Policy + Send + Sync>,
    /// Called on SIGHUP: reloads files and returns the new TLS configurations.
    pub reload: Arc<ReloadFn>,
    /// Called with the bound addresses once every listener is open.
    pub on_ready: Option<Box<ReadyFn>>,
    /// The durable store of sessions and retained messages.
    pub persistence: Option<crate::store::StoreSettings>,
    /// Broker-wide memory cap (RSS), bytes; 0: none.
    pub memory_limit: u64,
    /// `[cluster]`: join these etcd and NATS servers as this node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// `[[kafka]]`: MQTT messages to Kafka.
    pub kafka: Vec<crate::config::KafkaConfig>,
}

impl RunSettings {
    /// Settings for an embedded broker: plain TCP listeners at `binds` (port 0 picks a
    /// free one, see `Running::addrs`), one shard per core, the core's default limits, no
    /// persistence, and `policy(shard)` for each shard's authenticator, authorizer and
    /// hooks. Change any field before `start`.
    pub fn new(
        binds: &[SocketAddr],
        policy: impl Fn(usize) -> Policy + Send + Sync + 'static,
    ) -> Self {
        Self {
            core: broker_core::Config::default(),
            listeners: binds
                .iter()
                .map(|&addr| ListenerSpec {
                    addr,
                    tls: None,
                    proxy_protocol: false,
                    websockets: false,
                })
                .collect(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin_cores: false,
            driver: Driver::Auto,
            placement: Placement::Handoff,
            policy: Arc::new(policy),
            reload: Arc::new(|| Ok(Vec::new())),
            on_ready: None,
            persistence: None,
            memory_limit: 0,
            cluster: None,
            kafka: Vec::new(),
        }
    }
}

fn pin_to_core(core: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity only reads it. Failure (for
    // example fewer cores than threads) leaves the thread unpinned, which is harmless.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Runs the broker until SIGINT or SIGTERM (SIGHUP calls `settings.reload`); returns
/// after every shard has flushed.
pub fn run(settings: RunSettings) -> anyhow::Result<()> {
    let reload = settings.reload.clone();
    let running = start(settings)?;
    running.wait_for_signals(reload)
}

/// Starts the broker's threads and returns once every listener is open: the handle
/// publishes, lists, kicks and stops (the embedding API; see `handle.rs`).
pub fn start(mut settings: RunSettings) -> anyhow::Result<Running> {
    let threads = settings.threads.max(1);
    if threads > usize::from(u16::MAX) {
        bail!("too many threads");
    }
    // The store is read back first: "listening on" means ready to serve.
    let epoch = std::time::Instant::now();
    let clock = crate::store::clock_at(epoch);
    let mut opened = match &settings.persistence {
        Some(p) => Some(crate::store::open(p, clock)?),
        None => None,
    };
    // Bind every listener for every thread before starting, so errors stop the start-up.
    let addrs: Vec<SocketAddr> = settings.listeners.iter().map(|l| l.addr).collect();
    let (per_thread, bound) = crate::net::listen::bind_all(&addrs, threads, false)?;
    if let Some(n) = crate::net::listen::raise_open_files_limit() {
        tracing::info!("open files limit {n}");
    }
    for a in &bound {
        tracing::info!("listening on {a}");
    }
    let use_uring = settings.driver.use_uring()?;
    if use_uring {
        tracing::info!("{threads} shard(s) on io_uring");
    } else if settings.driver == Driver::Auto {
        tracing::warn!("io_uring is unavailable here (old kernel, seccomp or emulation): falling back to epoll");
    } else {
        tracing::info!("{threads} shard(s) on epoll");
    }

    let (senders, receivers): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| async_channel::unbounded::<Inbox>())
        .unzip();
    let (data_senders, data_receivers): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| async_channel::bounded::<shard::DataBatch>(shard::data_channel_batches()))
        .unzip();
    let mut data_receivers = data_receivers.into_iter();
    // The cluster thread joins before anything listens: a node serves no client before
    // it is a member and can own client identifiers.
    let cluster = match &settings.cluster {
        Some(c) => {
            let handle = BrokerHandle::new(senders.clone(), epoch);
            let link = crate::cluster::start(c, threads as u16, senders.clone(), handle, epoch)?;
            tracing::info!("cluster: node \"{}\" joined", c.node_id);
            // Assigned client identifiers must differ between nodes too.
            let prefix = format!("{}{}-", settings.core.auto_id_prefix, c.node_id);
            settings.core.auto_id_prefix = Box::leak(prefix.into_boxed_str());
            settings.core.cluster_nodes = crate::cluster::MAX_NODES;
            Some(link)
        }
        None => None,
    };
    // Kafka stands for one more remote node of the core, after the cluster's.
    let kafka = if settings.kafka.is_empty() {
        None
    } else {
        let slot = settings.core.cluster_nodes;
        settings.core.cluster_nodes += 1;
        Some(crate::kafka::start(
            &settings.kafka,
            threads as u16,
            slot,
            senders.clone(),
        )?)
    };
    let pin = settings.pin_cores && threads > 1;
    let placement = settings.placement;
    // The store thread tells each shard (on its control channel) which of its record
    // batches are written.
    let mut writer = None;
    let restored = match (&settings.persistence, opened.take()) {
        (Some(p), Some(mut opened)) => {
            let restored = std::mem::take(&mut opened.restored);
            let notify = senders
                .iter()
                .map(|tx| {
                    let tx = tx.clone();
                    Box::new(move |r: crate::store::Reply| {
                        let _ = tx.try_send(Inbox::Store(r));
                    }) as crate::store::Notify
                })
                .collect();
            let journal = cluster
                .as_ref()
                .and_then(|l| l.shared.journal.get().cloned());
            let w = crate::store::Writer::spawn(opened, p.durability, clock, notify, journal)?;
            if let Some(l) = &cluster {
                let _ = l.shared.store.set(w.sender());
            }
            writer = Some(w);
            let mut restored = restored;
            if cluster.is_some() && !restored.sessions.is_empty() {
                // The cluster's shared copy is the one that counts: a session comes back
                // from it when its client connects (to any node).
                tracing::info!(
                    "cluster: {} session(s) in this node's store come back from the cluster's stream when their clients connect",
                    restored.sessions.len()
                );
                restored.sessions.clear();
            }
            Arc::new(restored)
        }
        _ => Arc::new(crate::store::Restored::default()),
    };
    let mut handles = Vec::new();
    for (i, (rx, listeners)) in receivers.into_iter().zip(per_thread).enumerate() {
        let mut core = settings.core.clone();
        core.shard = i as u16;
        core.shards = threads as u16;
        let mut policy = (settings.policy)(i);
        if let Some(link) = &cluster {
            let hooks =
                std::mem::replace(&mut policy.hooks, Box::new(broker_core::policy::NoHooks));
            policy.hooks = Box::new(hooks::Both(
                hooks,
                crate::cluster::ClusterHooks(link.clone()),
            ));
        }
        if kafka.is_some() {
            let hooks =
                std::mem::replace(&mut policy.hooks, Box::new(broker_core::policy::NoHooks));
            policy.hooks = Box::new(hooks::Both(hooks, crate::kafka::KafkaHooks));
        }
        let cluster = cluster.clone();
        let kafka = kafka.clone();
        let peers = senders.clone();
        let data_out = data_senders.clone();
        let data_in = data_receivers
            .next()
            .ok_or_else(|| anyhow::anyhow!("data channel"))?;
        let restored = restored.clone();
        let store = writer
            .as_ref()
            .zip(settings.persistence.as_ref())
            .map(|(w, p)| (w.sender(), clock, p.queued_in_memory));
        let specs: Vec<(Option<Arc<rustls::ServerConfig>>, bool, bool)> = settings
            .listeners
            .iter()
            .map(|l| (l.tls.clone(), l.proxy_protocol, l.websockets))
            .collect();
        let h = std::thread::Builder::new()
            .name(format!("petrel-shard-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                if pin {
                    pin_to_core(i);
                }
                let body = shard_main(ShardSetup {
                    id: i as u16,
                    core,
                    policy,
                    peers,
                    rx,
                    data_out,
                    data_in,
                    listeners,
                    specs,
                    epoch,
                    restored,
                    store,
                    placement,
                    uring: use_uring,
                    cluster,
                    kafka,
                });
                crate::net::runtime::block_on(use_uring, body)?
            })?;
        handles.push(h);
    }
    let memory = (settings.memory_limit > 0)
        .then(|| memory::Watch::spawn(settings.memory_limit, senders.clone()))
        .transpose()?;
    if let Some(f) = settings.on_ready.take() {
        f(&bound);
    }
    Ok(Running {
        cluster: cluster.as_ref().map(|l| l.shared.clone()),
        cluster_link: cluster.clone(),
        kafka: kafka.clone(),
        handle: BrokerHandle::new(senders, epoch),
        addrs: bound,
        threads: handles,
        memory,
        writer,
    })
}

struct ShardSetup {
    id: u16,
    core: broker_core::Config,
    policy: Policy,
    peers: Vec<async_channel::Sender<Inbox>>,
    rx: async_channel::Receiver<Inbox>,
    data_out: Vec<async_channel::Sender<shard::DataBatch>>,
    data_in: async_channel::Receiver<shard::DataBatch>,
    listeners: Vec<std::net::TcpListener>,
    specs: Vec<(Option<Arc<rustls::ServerConfig>>, bool, bool)>,
    epoch: std::time::Instant,
    restored: Arc<crate::store::Restored>,
    /// The store thread's channel, the wall clock at `epoch`, and how many queued messages
    /// a stored session keeps in memory.
    store: Option<(async_channel::Sender<crate::store::Request>, u64, usize)>,
    placement: Placement,
    uring: bool,
    cluster: Option<crate::cluster::Link>,
    kafka: Option<crate::kafka::Link>,
}

/// Whether plain connections use the data ring on io_uring (the default). Setting
/// `PETREL_URING_READINESS=1` serves them the older way, readiness polls and a system call
/// per read and write, for the A/B measurements in `benches/RESULTS.md`.
fn ring_wanted() -> bool {
    std::env::var_os("PETREL_URING_READINESS").is_none_or(|v| v != "1")
}

async fn shard_main(setup: ShardSetup) -> anyhow::Result<()> {
    let ShardSetup {
        id,
        core,
        policy,
        peers,
        rx,
        data_out,
        data_in,
        listeners,
        specs,
        epoch,
        restored,
        store,
        placement,
        uring,
        cluster,
        kafka,
    } = setup;
    handle::mark_shard_thread();
    let states = specs
        .into_iter()
        .map(|(tls, proxy_protocol, websockets)| ListenerState {
            tls: std::cell::RefCell::new(tls),
            proxy_protocol,
            websockets,
        })
        .collect();
    let channels = shard::Channels {
        peers,
        inbox: rx.clone(),
        data_out,
        data_in: data_in.clone(),
    };
    let mut broker = Broker::new(core, policy);
    if let Some((_, clock, in_memory)) = &store {
        // Enabled first: restoring writes what it drops (expired messages, sessions made
        // non-persistent). Sessions go to their owner shard (restore_stored skips others).
        broker.enable_store(*clock, *in_memory);
        let now = broker_core::Instant::from_millis(epoch.elapsed().as_millis() as u64);
        for s in &restored.sessions {
            broker.restore_stored(now, s.clone());
        }
        for m in &restored.retained {
            broker.restore_retained(m.clone());
        }
    }
    drop(restored);
    let mut shard = Shard::new(
        id,
        broker,
        channels,
        states,
        epoch,
        placement,
        store.map(|(tx, _, _)| tx),
    );
    shard.cluster = cluster;
    shard.kafka = kafka;
    let mut ring_efd = None;
    if uring && ring_wanted() {
        match ring_conn::RingShard::new() {
            Ok((rs, efd)) => {
                shard.ring = Some(Rc::new(rs));
                ring_efd = Some(efd);
            }
            Err(e) => tracing::warn!(
                "shard {id}: no data ring ({e}); connections are served by readiness"
            ),
        }
    }
    let shard = Rc::new(shard);
    if let (Some(rs), Some(efd)) = (&shard.ring, ring_efd) {
        monoio::spawn(ring_conn::run(shard.clone(), rs.clone()));
        monoio::spawn(ring_conn::watch(rs.clone(), efd));
    }
    shard.pump();

    for (i, l) in listeners.into_iter().enumerate() {
        let l = crate::net::listen::Acceptor::new(l, uring)?;
        monoio::spawn(accept::accept_loop(shard.clone(), l, i));
    }
    monoio::spawn(shard.clone().run_timer());
    while shard.phase.get() == Phase::Serving {
        monoio::select! {
            msg = rx.recv() => match msg {
                Ok(m) => {
                    shard.handle_inbox(m);
                    shard.pump();
                    if !rx.is_empty() {
                        // A busy sender (the cluster thread): the writers go first.
                        crate::net::notify::yield_now().await;
                    }
                }
                Err(_) => break,
            },
            batch = data_in.recv() => if let Ok(b) = batch {
                shard.handle_data(b);
                shard.pump();
                // Let the writers drain what this batch queued before taking the next.
                crate::net::notify::yield_now().await;
            },
            _ = shard.stop_signal.notified() => {},
        }
    }
    // Graceful stop: DISCONNECT 0x8B to MQTT 5 clients, wills as for any server close,
    // then give writers a moment to flush.
    shard.phase.set(Phase::Closing);
    // A peer that stopped reading must not hold the final DISCONNECTs back.
    shard.release_outputs();
    let now = shard.now();
    shard.broker.borrow_mut().shutdown(now);
    shard.pump();
    for _ in 0..100 {
        if shard.conns.borrow().is_empty() && shard.relayed.get() == 0 {
            break;
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
        // Messages other shards still send (wills to our subscribers) are delivered.
        while let Ok(batch) = data_in.try_recv() {
            shard.handle_data(batch);
        }
        shard.pump();
    }
    Ok(())
}
