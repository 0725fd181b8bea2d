//! What the cluster thread writes and reads beside its loop, each in order on a task of
//! its own: this node's routes to etcd, the retained updates it orders to JetStream, and
//! the stream of every node's retained updates it follows.

use super::owner::Owners;
use super::{ClusterConfig, Shared};
use bytes::Bytes;
use etcd_client::PutOptions;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The retained messages of the whole cluster: a JetStream stream (file storage, the
/// configured replicas) with one subject per topic that keeps its last update as a frame.
/// Each node watches it from the start (the current values, then every update). Returns
/// the watch and how many current values it delivers first.
pub(super) async fn retained_store(
    nats: &async_nats::Client,
    cfg: &ClusterConfig,
) -> anyhow::Result<(async_nats::Subscriber, u64)> {
    let stream = retained_stream(&cfg.name);
    let filter = format!("{}.retained.>", cfg.name);
    super::jetstream::ensure_stream(
        nats,
        &stream,
        std::slice::from_ref(&filter),
        cfg.jetstream_replicas,
        1,
        serde_json::json!({}),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cluster: retained messages' stream: {e}"))?;
    super::jetstream::watch_last_per_subject(nats, &stream, &filter)
        .await
        .map_err(|e| anyhow::anyhow!("cluster: retained messages' stream: {e}"))
}

fn retained_stream(cluster: &str) -> String {
    format!("{}_RETAINED", cluster.to_uppercase())
}

/// The subject token for a topic or client identifier: URL-safe base64 of it, or a
/// digest for a long one.
pub(super) fn subject_key(topic: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic);
    if b.len() <= 200 {
        return b;
    }
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(topic.as_bytes());
    format!(
        "h_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
    )
}

/// Writes this node's retained updates to the stream, one after the other (their order
/// is the topic owner's).
pub(super) fn write_retained(
    nats: async_nats::Client,
    subjects: String,
    shared: Arc<Shared>,
) -> tokio::sync::mpsc::UnboundedSender<(String, Bytes)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Bytes)>();
    tokio::spawn(async move {
        while let Some((key, value)) = rx.recv().await {
            let subject = format!("{subjects}retained.{key}");
            match super::jetstream::publish(&nats, subject, value).await {
                Ok(_) => {
                    shared.counters.retained_out.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("cluster: a retained update was not stored: {e}"),
            }
        }
    });
    tx
}

/// Writes this node's route changes to etcd in order, each retried until etcd takes it (a
/// route that failed to go would keep other nodes sending here, one that failed to come
/// would starve this node's subscribers). Puts are bound to the current lease.
pub(super) fn write_routes(
    etcd: etcd_client::Client,
    owners: Arc<Owners>,
) -> tokio::sync::mpsc::UnboundedSender<(String, bool)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, bool)>();
    tokio::spawn(async move {
        let mut etcd = etcd;
        while let Some((key, put)) = rx.recv().await {
            let mut wait = Duration::from_millis(100);
            loop {
                let done = if put {
                    let opts = PutOptions::new().with_lease(owners.lease());
                    etcd.put(key.as_str(), "", Some(opts)).await.map(|_| ())
                } else {
                    etcd.delete(key.as_str(), None).await.map(|_| ())
                };
                match done {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!("cluster: route {key} not written yet: {e}");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    });
    tx
}
