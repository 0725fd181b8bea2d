//! The few JetStream calls the cluster makes, as JetStream's JSON API over the NATS core
//! client (`$JS.API.*` requests). async-nats' typed JetStream client rejects the answers
//! of Debian's nats-server 2.9 (fields it expects from newer servers), and these calls are
//! all we need: a stream, a publish that waits for the stream's acknowledgement, and a
//! push consumer that delivers the last message of each subject, then every new one.

use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;

/// How long a JetStream request may take.
const API_TIMEOUT: Duration = Duration::from_secs(5);

async fn api(nats: &async_nats::Client, subject: String, body: Value) -> anyhow::Result<Value> {
    let payload = Bytes::from(serde_json::to_vec(&body)?);
    let reply = tokio::time::timeout(API_TIMEOUT, nats.request(subject.clone(), payload))
        .await
        .map_err(|_| anyhow::anyhow!("{subject}: no answer (is JetStream on? nats-server -js)"))?
        .map_err(|e| anyhow::anyhow!("{subject}: {e} (is JetStream on? nats-server -js)"))?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    if let Some(err) = v.get("error") {
        anyhow::bail!(
            "{subject}: {}",
            err["description"].as_str().unwrap_or("error")
        );
    }
    Ok(v)
}

/// Creates the stream (file storage) unless it exists.
pub async fn ensure_stream(
    nats: &async_nats::Client,
    name: &str,
    subjects: &[String],
    replicas: u8,
    max_msgs_per_subject: i64,
    extra: Value,
) -> anyhow::Result<()> {
    let mut config = json!({
        "name": name,
        "subjects": subjects,
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": max_msgs_per_subject,
        "max_msg_size": -1,
        "discard": "old",
        "storage": "file",
        "num_replicas": replicas,
        "duplicate_window": 120_000_000_000u64,
    });
    if let (Some(c), Value::Object(more)) = (config.as_object_mut(), extra) {
        c.extend(more);
    }
    let created = api(nats, format!("$JS.API.STREAM.CREATE.{name}"), config).await;
    if let Err(e) = created {
        // Made by another node meanwhile (or with other settings by an operator): use it.
        api(nats, format!("$JS.API.STREAM.INFO.{name}"), json!({}))
            .await
            .map_err(|_| e)?;
    }
    Ok(())
}

/// Publishes to a stream's subject and waits until the stream has stored it; returns the
/// message's sequence number.
pub async fn publish(
    nats: &async_nats::Client,
    subject: String,
    payload: Bytes,
) -> anyhow::Result<u64> {
    publish_with_headers(nats, subject, async_nats::HeaderMap::new(), payload).await
}

/// `publish` with headers (JetStream's own, such as `Nats-Rollup`, and ours).
pub async fn publish_with_headers(
    nats: &async_nats::Client,
    subject: String,
    headers: async_nats::HeaderMap,
    payload: Bytes,
) -> anyhow::Result<u64> {
    let asked = nats.request_with_headers(subject.clone(), headers, payload);
    let reply = tokio::time::timeout(API_TIMEOUT, asked)
        .await
        .map_err(|_| anyhow::anyhow!("{subject}: JetStream did not acknowledge"))?
        .map_err(|e| anyhow::anyhow!("{subject}: {e}"))?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    if let Some(err) = v.get("error") {
        anyhow::bail!(
            "{subject}: {}",
            err["description"].as_str().unwrap_or("error")
        );
    }
    v["seq"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{subject}: not a JetStream acknowledgement"))
}

/// An ephemeral push consumer of `stream` for `filter`: the last message of each subject,
/// then every new one, on a subscription of its own. Returns it and how many messages
/// make the current state (delivered first).
pub async fn watch_last_per_subject(
    nats: &async_nats::Client,
    stream: &str,
    filter: &str,
) -> anyhow::Result<(async_nats::Subscriber, u64)> {
    consumer(
        nats,
        stream,
        filter,
        json!({ "deliver_policy": "last_per_subject" }),
    )
    .await
}

/// An ephemeral push consumer (no acknowledgements, in memory) delivering `policy` of
/// `filter` on a subscription of its own, and how many messages it has now.
async fn consumer(
    nats: &async_nats::Client,
    stream: &str,
    filter: &str,
    policy: Value,
) -> anyhow::Result<(async_nats::Subscriber, u64)> {
    let deliver = nats.new_inbox();
    // Subscribed first: the consumer delivers as soon as it exists.
    let sub = nats
        .subscribe(deliver.clone())
        .await
        .map_err(|e| anyhow::anyhow!("NATS subscribe: {e}"))?;
    let mut config = json!({
        "deliver_subject": deliver,
        "ack_policy": "none",
        "filter_subject": filter,
        "replay_policy": "instant",
        "mem_storage": true,
        "num_replicas": 1,
    });
    if let (Some(c), Value::Object(p)) = (config.as_object_mut(), policy) {
        c.extend(p);
    }
    let body = json!({ "stream_name": stream, "config": config });
    let v = api(nats, format!("$JS.API.CONSUMER.CREATE.{stream}"), body).await?;
    Ok((sub, v["num_pending"].as_u64().unwrap_or(0)))
}

/// Whether `subject` holds a message in `stream` (one request: the common case, a client
/// with nothing stored, costs no consumer).
pub async fn has_messages(
    nats: &async_nats::Client,
    stream: &str,
    subject: &str,
) -> anyhow::Result<bool> {
    let payload = Bytes::from(serde_json::to_vec(&json!({ "last_by_subj": subject }))?);
    let api_subject = format!("$JS.API.STREAM.MSG.GET.{stream}");
    let reply = tokio::time::timeout(API_TIMEOUT, nats.request(api_subject, payload))
        .await
        .map_err(|_| anyhow::anyhow!("{stream}: no answer from JetStream"))?
        .map_err(|e| anyhow::anyhow!("{stream}: {e}"))?;
    let v: Value = serde_json::from_slice(&reply.payload)?;
    match v.get("error") {
        None => Ok(true),
        // 10037: no message found.
        Some(e) if e["err_code"].as_u64() == Some(10037) || e["code"].as_u64() == Some(404) => {
            Ok(false)
        }
        Some(e) => anyhow::bail!("{stream}: {}", e["description"].as_str().unwrap_or("error")),
    }
}

/// Every message of `stream` on `subject` now, in order (an ephemeral consumer that
/// delivers them all and is dropped).
pub async fn read_subject(
    nats: &async_nats::Client,
    stream: &str,
    subject: &str,
) -> anyhow::Result<Vec<async_nats::Message>> {
    let (mut sub, n) = follow_subject(nats, stream, subject).await?;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << 16));
    use futures_util::StreamExt as _;
    // The consumer's first count may fall short (a replicated stream answers before it
    // counts): each delivery says how many are still pending (the last token of its
    // `$JS.ACK` reply subject), and the read ends when none are.
    let mut pending = n.max(1);
    while pending > 0 || (out.len() as u64) < n {
        match tokio::time::timeout(API_TIMEOUT, sub.next()).await {
            Ok(Some(m)) => {
                pending = m
                    .reply
                    .as_deref()
                    .and_then(pending_of)
                    .unwrap_or_else(|| n.saturating_sub(out.len() as u64 + 1));
                out.push(m);
            }
            _ => anyhow::bail!(
                "{stream}: {subject} delivered {} of {n} messages",
                out.len()
            ),
        }
    }
    let _ = sub.unsubscribe().await;
    Ok(out)
}

/// An ephemeral push consumer of every message of `stream` on `subject`, then every new
/// one; and how many there are now (delivered first).
pub async fn follow_subject(
    nats: &async_nats::Client,
    stream: &str,
    subject: &str,
) -> anyhow::Result<(async_nats::Subscriber, u64)> {
    consumer(nats, stream, subject, json!({ "deliver_policy": "all" })).await
}

/// [`follow_subject`] from the message numbered `seq` in the stream on.
pub async fn follow_subject_after(
    nats: &async_nats::Client,
    stream: &str,
    subject: &str,
    seq: u64,
) -> anyhow::Result<async_nats::Subscriber> {
    let policy = json!({ "deliver_policy": "by_start_sequence", "opt_start_seq": seq.max(1) });
    Ok(consumer(nats, stream, subject, policy).await?.0)
}

/// [`follow_subject`] from the messages stored at `start_ms` (Unix milliseconds) on: the
/// stream's index finds them (a long subject is not read from its start).
pub async fn follow_subject_from(
    nats: &async_nats::Client,
    stream: &str,
    subject: &str,
    start_ms: u64,
) -> anyhow::Result<(async_nats::Subscriber, u64)> {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(start_ms);
    let policy = json!({
        "deliver_policy": "by_start_time",
        "opt_start_time": humantime::format_rfc3339_millis(at).to_string(),
    });
    consumer(nats, stream, subject, policy).await
}

/// The messages still pending after this one, from a JetStream delivery's reply subject:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`,
/// or the newer form with domain and account before the stream and a token after.
fn pending_of(reply: &str) -> Option<u64> {
    ack_token(reply, 8)
}

/// A delivered message's sequence number in its stream (see `pending_of`).
pub fn stream_seq_of(reply: &str) -> Option<u64> {
    ack_token(reply, 5)
}

/// Token `at` of the older reply form (the newer one has two more before it).
fn ack_token(reply: &str, at: usize) -> Option<u64> {
    let tokens: Vec<&str> = reply.split('.').collect();
    let at = match tokens.len() {
        9 => at,
        12 => at + 2,
        _ => return None,
    };
    if tokens.first() != Some(&"$JS") || tokens.get(1) != Some(&"ACK") {
        return None;
    }
    tokens.get(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::pending_of;

    #[test]
    fn pending_counts_come_from_both_reply_forms() {
        assert_eq!(
            pending_of("$JS.ACK.S.C.1.42.1.1700000000000000000.7"),
            Some(7)
        );
        assert_eq!(
            pending_of("$JS.ACK.hub.ACC.S.C.1.42.1.1700000000000000000.3.xyz"),
            Some(3)
        );
        assert_eq!(pending_of("_INBOX.abc.1"), None);
        assert_eq!(
            super::stream_seq_of("$JS.ACK.S.C.1.42.1.1700000000000000000.7"),
            Some(42)
        );
        assert_eq!(
            super::stream_seq_of("$JS.ACK.hub.ACC.S.C.1.43.1.1700000000000000000.3.xyz"),
            Some(43)
        );
        assert_eq!(pending_of("$JS.ACK.S.C.1.42.1.x.y"), None);
    }
}
