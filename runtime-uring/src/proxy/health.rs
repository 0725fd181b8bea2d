//! Node health: a node that refuses connections is marked down for a while (passive
//! check, by the proxy threads), and an optional active TCP check (its own thread) probes
//! every node and brings recovered ones back before their time is up.
//!
//! The state of a node is one atomic, shared by every route that names the same
//! `host:port` and kept across route changes (a registry hands the same `Arc` to each
//! compiled table), so the data path reads it without a lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Milliseconds since the proxy started (the clock of the `down_until` marks).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// The health of one node.
#[derive(Debug, Default)]
pub struct NodeHealth {
    /// Down until this instant (`now_ms`); 0 = up.
    down_until: AtomicU64,
}

impl NodeHealth {
    /// Usable now.
    pub fn is_up(&self) -> bool {
        let until = self.down_until.load(Ordering::Relaxed);
        until == 0 || until <= now_ms()
    }

    /// Marks the node down for `d`.
    pub fn mark_down(&self, d: Duration) {
        let until = now_ms() + d.as_millis() as u64;
        self.down_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Marks the node up (a connection or a probe succeeded).
    pub fn mark_up(&self) {
        if self.down_until.load(Ordering::Relaxed) != 0 {
            self.down_until.store(0, Ordering::Relaxed);
        }
    }
}

/// Hands out one `NodeHealth` per node name, for the life of the process.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    nodes: Mutex<HashMap<String, Arc<NodeHealth>>>,
}

impl HealthRegistry {
    /// The health of `name` (created up).
    pub fn get(&self, name: &str) -> Arc<NodeHealth> {
        let mut m = match self.nodes.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(name.to_owned()).or_default().clone()
    }
}

/// Settings of the active check.
#[derive(Debug, Clone, Copy)]
pub struct ActiveCheck {
    pub interval: Duration,
    pub timeout: Duration,
    /// How long a failed probe keeps a node down (until the next successful probe).
    pub down_time: Duration,
}

/// Probes every node of the current table each `interval` with a TCP connect; runs on
/// its own thread for the life of the process.
pub fn spawn_active_check(
    check: ActiveCheck,
    nodes: impl Fn() -> Vec<(SocketAddr, Arc<NodeHealth>)> + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("petrel-proxy-health".into())
        .spawn(move || loop {
            std::thread::sleep(check.interval);
            for (addr, h) in nodes() {
                match std::net::TcpStream::connect_timeout(&addr, check.timeout) {
                    Ok(_) => {
                        if !h.is_up() {
                            tracing::info!("node {addr} is up again (active check)");
                        }
                        h.mark_up();
                    }
                    Err(e) => {
                        if h.is_up() {
                            tracing::warn!("node {addr} is down (active check: {e})");
                        }
                        // Down until a probe succeeds (the next one is one interval away).
                        h.mark_down(check.down_time.max(check.interval * 2));
                    }
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_then_up() {
        let h = NodeHealth::default();
        assert!(h.is_up());
        h.mark_down(Duration::from_secs(60));
        assert!(!h.is_up());
        h.mark_up();
        assert!(h.is_up());
        h.mark_down(Duration::ZERO);
        assert!(h.is_up());
    }

    #[test]
    fn registry_shares_by_name() {
        let r = HealthRegistry::default();
        let a = r.get("a:1");
        a.mark_down(Duration::from_secs(60));
        assert!(!r.get("a:1").is_up());
        assert!(r.get("b:1").is_up());
    }
}
