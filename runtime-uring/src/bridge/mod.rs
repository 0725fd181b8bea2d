//! `[[bridge]]`: connections from this broker to others, Mosquitto's bridges. All run on
//! one thread of their own (a service beside the shards): each drives
//! `broker_core::bridge::Bridge` between an in-process connection to the shard that owns
//! its local client identifier and a TCP (or TLS) connection to the remote broker.
//!
//! At least once: the bridge's local session is persistent (MQTT 5, no-local), so what
//! the remote broker has not acknowledged stays queued here (in the store when
//! persistence is on), and the local broker's flow control holds publishers back once
//! that queue is full, as for any subscriber.

mod run;

use crate::broker::BrokerHandle;
use crate::config::BridgeConfig;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a bridge is doing, for the admin API and metrics (written by the bridge thread).
#[derive(Debug, Default)]
pub struct BridgeStatus {
    pub name: String,
    /// The remote address in use, or tried last.
    pub address: Mutex<String>,
    /// Connected to the remote broker (CONNACK received).
    pub connected: AtomicBool,
    /// Connected to this broker's shard.
    pub local_connected: AtomicBool,
    /// Messages queued for the remote broker or in flight to it.
    pub queued: AtomicU64,
    /// Local QoS 1/2 messages forwarded and waiting for the remote acknowledgement.
    pub inflight: AtomicU64,
    pub forwarded_out: AtomicU64,
    pub forwarded_in: AtomicU64,
    /// QoS 0 messages dropped because a queue was full.
    pub dropped: AtomicU64,
    /// Messages the receiving broker refused with an error reason code.
    pub refused: AtomicU64,
    /// Connection attempts to the remote broker that failed.
    pub failures: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl BridgeStatus {
    fn set_error(&self, e: String) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e);
        }
    }

    /// The last connection error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// The remote address in use.
    pub fn address(&self) -> String {
        self.address.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// The running bridges.
pub struct Bridges {
    pub status: Vec<Arc<BridgeStatus>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bridges {
    /// No bridges.
    pub fn none() -> Self {
        Self {
            status: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// Starts every configured bridge on one thread. Certificates are loaded first: a bad
    /// file stops the start-up.
    pub fn start(cfgs: &[BridgeConfig], handle: BrokerHandle) -> anyhow::Result<Self> {
        if cfgs.is_empty() {
            return Ok(Self::none());
        }
        let mut tasks = Vec::new();
        let mut status = Vec::new();
        for c in cfgs {
            let tls = match &c.cafile {
                Some(ca) => {
                    let pair = c.certfile.as_deref().zip(c.keyfile.as_deref());
                    Some(
                        crate::net::tls::client_config(Some(ca), pair)
                            .map_err(|e| anyhow::anyhow!("bridge \"{}\": {e:#}", c.name))?,
                    )
                }
                None => None,
            };
            let st = Arc::new(BridgeStatus {
                name: c.name.clone(),
                ..BridgeStatus::default()
            });
            status.push(st.clone());
            tasks.push((c.clone(), tls, st));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("petrel-bridges".into())
            .spawn(move || {
                let body = async move {
                    let mut joins = Vec::new();
                    for (cfg, tls, st) in tasks {
                        joins.push(monoio::spawn(run::run(
                            cfg,
                            tls,
                            handle.clone(),
                            st,
                            thread_stop.clone(),
                        )));
                    }
                    for j in joins {
                        j.await;
                    }
                };
                if let Err(e) = crate::net::runtime::block_on(false, body) {
                    tracing::error!("bridges: {e:#}");
                }
            })?;
        Ok(Self {
            status,
            stop,
            thread: Some(thread),
        })
    }

    /// Disconnects from the remote brokers and stops the thread (waits at most 2 s).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
