//! Petrel as a library (Gmqtt's `Server` interface): start a broker from Rust with your
//! own authenticator, authorizer and hooks, then publish, subscribe on a client's behalf,
//! list clients and kick through its handle.
//!
//! `cargo run -p runtime-uring --example embedded` runs the whole story against itself
//! and exits; CI runs it as a test too.

use broker_core::mqtt_proto::{QoS, ReasonCode, SubscriptionOptions};
use broker_core::policy::{Authenticator, Authorizer, ClientInfo, ConnectRequest, Hooks};
use broker_core::{Message, Policy};
use runtime_uring::broker::handle::PublishRequest;
use runtime_uring::broker::RunSettings;
use runtime_uring::client::{parse_url, ClientConfig, MqttClient};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Lets in users whose password is their name backwards.
struct Backwards;

impl Authenticator for Backwards {
    fn authenticate(&mut self, req: &ConnectRequest<'_>) -> Result<Option<Box<str>>, ReasonCode> {
        let user = req.username.ok_or(ReasonCode::NotAuthorized)?;
        let reversed: String = user.chars().rev().collect();
        if req.password == Some(reversed.as_bytes()) {
            Ok(None)
        } else {
            Err(ReasonCode::BadUserNameOrPassword)
        }
    }
}

/// Clients may publish only under `users/<their name>/`.
struct OwnTopics;

impl Authorizer for OwnTopics {
    fn can_publish(&mut self, c: &ClientInfo<'_>, topic: &str, _: QoS, _: bool) -> bool {
        c.username
            .is_some_and(|u| topic.starts_with(&format!("users/{u}/")))
    }
}

/// Counts connections and messages, and tags every message a client publishes in the log.
struct Audit {
    connected: Arc<AtomicUsize>,
    published: Arc<AtomicUsize>,
}

impl Hooks for Audit {
    fn on_connected(&mut self, c: &ClientInfo<'_>) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        println!("hook: {} connected as {:?}", c.client_id, c.username);
    }
    fn on_message_arrived(&mut self, c: &ClientInfo<'_>, m: &Message) -> Result<(), ReasonCode> {
        self.published.fetch_add(1, Ordering::Relaxed);
        println!("hook: {} published on {}", c.client_id, m.topic());
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let connected = Arc::new(AtomicUsize::new(0));
    let published = Arc::new(AtomicUsize::new(0));
    let (c, p) = (connected.clone(), published.clone());
    let mut settings = RunSettings::new(&["127.0.0.1:0".parse()?], move |_shard| Policy {
        authenticator: Box::new(Backwards),
        authorizer: Box::new(OwnTopics),
        hooks: Box::new(Audit {
            connected: c.clone(),
            published: p.clone(),
        }),
    });
    settings.threads = 2;
    let running = runtime_uring::broker::start(settings)?;
    let handle = running.handle.clone();
    let addr = running.addrs[0];
    println!("broker listening on {addr}");

    // An MQTT client of our own (Petrel's client library, on its own thread).
    let url = parse_url(&format!("tcp://alice:ecila@{addr}"))?;
    let mut cfg = ClientConfig::new(url);
    cfg.client_id = "alice-1".into();
    cfg.reconnect = false;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let client = std::thread::spawn(move || {
        runtime_uring::net::runtime::block_on(false, async move {
            let mut c = MqttClient::connect(cfg).await?;
            c.publish("users/alice/hello", b"hi", QoS::AtLeastOnce, false)?;
            c.flush().await?;
            let _ = tx.send("connected".into());
            loop {
                match c.next().await {
                    Ok(broker_core::client::ClientEvent::Message(m)) => {
                        let _ = tx.send(format!(
                            "{} {}",
                            m.topic,
                            String::from_utf8_lossy(&m.payload)
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(format!("closed: {e}"));
                        return anyhow::Ok(());
                    }
                }
            }
        })?
    });
    let wait = |what: &str| -> anyhow::Result<String> {
        let got = rx.recv_timeout(std::time::Duration::from_secs(10))?;
        println!("client: {got}");
        anyhow::ensure!(got.starts_with(what), "expected {what:?}, got {got:?}");
        Ok(got)
    };
    wait("connected")?;

    // List clients, subscribe alice on her behalf, publish to her from the handle.
    let clients = handle.clients()?;
    println!(
        "clients: {:?}",
        clients.iter().map(|c| &c.client_id).collect::<Vec<_>>()
    );
    anyhow::ensure!(clients
        .iter()
        .any(|c| &*c.client_id == "alice-1" && c.connected));
    let granted = handle.subscribe(
        "alice-1",
        "news/#",
        SubscriptionOptions::qos(QoS::AtLeastOnce),
    )?;
    anyhow::ensure!(
        granted == Some(ReasonCode::GrantedQoS1),
        "granted {granted:?}"
    );
    let delivered = handle.publish(PublishRequest::new(
        "news/today",
        "from the handle",
        QoS::AtLeastOnce,
    ))?;
    anyhow::ensure!(delivered, "nobody was subscribed");
    wait("news/today from the handle")?;

    // Kick: the client's connection ends.
    anyhow::ensure!(handle.kick("alice-1")?, "no such client");
    wait("closed")?;
    let _ = client.join();
    anyhow::ensure!(handle.clients()?.is_empty());
    println!(
        "hooks saw {} connection(s) and {} message(s)",
        connected.load(Ordering::Relaxed),
        published.load(Ordering::Relaxed)
    );
    anyhow::ensure!(
        connected.load(Ordering::Relaxed) == 1 && published.load(Ordering::Relaxed) == 1
    );
    running.stop()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedding_story_runs() {
        super::main().unwrap();
    }
}
