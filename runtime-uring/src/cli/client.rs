//! `petrel pub` and `petrel sub`: command-line clients in the spirit of `mosquitto_pub` /
//! `mosquitto_sub`, configured with a broker URL like Dapr's MQTT component.

use crate::client::{expand_client_id, parse_url, ClientConfig, MqttClient};
use anyhow::{anyhow, bail, Context as _};
use broker_core::client::{describe_subscribe_refusal, ClientEvent};
use mqtt_proto::{ProtocolVersion, QoS};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

fn parse_qos(s: &str) -> Result<QoS, String> {
    match s {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        "2" => Ok(QoS::ExactlyOnce),
        _ => Err(format!("invalid QoS {s:?}: must be 0, 1 or 2")),
    }
}

fn parse_protocol(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "3.1.1" | "311" | "mqttv311" | "4" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" | "mqttv5" => Ok(ProtocolVersion::V5),
        _ => Err(format!("invalid protocol {s:?}: use 3.1.1 or 5")),
    }
}

/// Options shared by `pub` and `sub`.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Broker URL: tcp://[user:password@]host:port, ssl://... (TLS), ws://host:port/path or
    /// wss://... (MQTT over WebSocket, path /mqtt by default); percent-encode special
    /// characters of the user name and password.
    #[arg(long, short = 'L', default_value = "tcp://127.0.0.1:1883")]
    pub url: String,
    /// Quality of service: 0, 1 or 2.
    #[arg(long, short = 'q', default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Client identifier; `{uuid}` is replaced by a fresh UUID.
    #[arg(long = "client-id", short = 'i', default_value = "petrel-{uuid}")]
    pub client_id: String,
    /// MQTT protocol version: 3.1.1 or 5.
    #[arg(long, short = 'V', default_value = "3.1.1", value_parser = parse_protocol)]
    pub protocol: ProtocolVersion,
    /// Keep alive in seconds.
    #[arg(long, short = 'k', default_value_t = 60)]
    pub keep_alive: u16,
    /// CA certificate (PEM file or inline PEM) to verify the broker (ssl://).
    #[arg(long = "ca", alias = "cafile")]
    pub ca: Option<String>,
    /// Client certificate for mutual TLS (PEM file or inline PEM).
    #[arg(long = "cert")]
    pub cert: Option<String>,
    /// Client private key for mutual TLS (PEM file or inline PEM).
    #[arg(long = "key")]
    pub key: Option<String>,
    /// Seconds allowed to connect.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Log level for diagnostics on stderr.
    #[arg(long, default_value = "warn")]
    pub log_level: String,
}

impl Common {
    fn config(&self) -> anyhow::Result<ClientConfig> {
        let url = parse_url(&self.url)?;
        let mut c = ClientConfig::new(url);
        c.qos = self.qos;
        c.client_id = expand_client_id(&self.client_id);
        c.protocol = self.protocol;
        c.keep_alive = self.keep_alive;
        c.ca_cert = self.ca.clone();
        c.client_cert = self.cert.clone();
        c.client_key = self.key.clone();
        c.connect_timeout = Duration::from_secs(self.connect_timeout.max(1));
        Ok(c)
    }
}

/// `petrel pub` options.
#[derive(clap::Args, Debug)]
pub struct PubArgs {
    #[command(flatten)]
    pub common: Common,
    /// Topic to publish to.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Retain the message.
    #[arg(long, short = 'r')]
    pub retain: bool,
    /// Message payload.
    #[arg(long, short = 'm', group = "source")]
    pub message: Option<String>,
    /// Send the contents of a file as the payload.
    #[arg(long, short = 'f', group = "source")]
    pub file: Option<PathBuf>,
    /// Send each line of standard input as a message.
    #[arg(long = "stdin-lines", short = 'l', group = "source")]
    pub stdin_lines: bool,
    /// Send an empty payload (deletes a retained message with --retain).
    #[arg(long = "null-message", short = 'n', group = "source")]
    pub null_message: bool,
}

/// `petrel sub` options.
#[derive(clap::Args, Debug)]
pub struct SubArgs {
    #[command(flatten)]
    pub common: Common,
    /// Topic filter to subscribe to (repeatable).
    #[arg(long, short = 't', required = true)]
    pub topic: Vec<String>,
    /// Exit after this many messages.
    #[arg(long, short = 'C')]
    pub count: Option<u64>,
    /// Clean session (false keeps the session on the broker while offline).
    #[arg(long = "clean-session", short = 'c', default_value = "true", action = clap::ArgAction::Set)]
    pub clean_session: bool,
    /// Print the topic before each payload.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Run this shell command for each message, with the payload on its standard input
    /// (and MQTT_TOPIC in its environment).
    #[arg(long)]
    pub exec: Option<String>,
    /// Retries of a failing --exec command, with exponential back-off (-1: forever).
    #[arg(
        long = "back-off-max-retries",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub back_off_max_retries: i64,
}

fn runtime() -> anyhow::Result<monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>> {
    // A client is one connection: epoll is plenty and also works under qemu-user.
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .context("cannot start the runtime")
}

/// `petrel pub`.
pub fn publish(a: PubArgs) -> anyhow::Result<()> {
    crate::logging::init(&a.common.log_level);
    let mut cfg = a.common.config()?;
    cfg.reconnect = false;
    let payloads: Box<dyn Iterator<Item = anyhow::Result<Vec<u8>>>> = if let Some(m) = &a.message {
        Box::new(std::iter::once(Ok(m.clone().into_bytes())))
    } else if let Some(f) = &a.file {
        let data = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        Box::new(std::iter::once(Ok(data)))
    } else if a.stdin_lines {
        Box::new(
            std::io::stdin()
                .lock()
                .lines()
                .map(|l| l.map(String::into_bytes).map_err(Into::into)),
        )
    } else if a.null_message {
        Box::new(std::iter::once(Ok(Vec::new())))
    } else {
        bail!("nothing to publish: give --message, --file, --stdin-lines or --null-message");
    };
    let topic = a.topic.clone();
    let retain = a.retain;
    runtime()?.block_on(async move {
        let qos = cfg.qos;
        let mut c = MqttClient::connect(cfg).await?;
        let mut outstanding = 0usize;
        for p in payloads {
            let p = p?;
            c.publish(&topic, &p, qos, retain)
                .map_err(|e| anyhow!("{e}"))?;
            outstanding += 1;
            // Drain acknowledgements as we go so memory stays flat for long streams.
            while outstanding > 1000 {
                outstanding -= wait_published(&mut c).await?;
            }
        }
        while outstanding > 0 {
            outstanding -= wait_published(&mut c).await?;
        }
        c.disconnect().await;
        Ok(())
    })
}

/// Waits for one Published event; errors on a refusal.
async fn wait_published(c: &mut MqttClient) -> anyhow::Result<usize> {
    loop {
        match c.next().await? {
            ClientEvent::Published { reason, .. } => {
                if reason.is_error() {
                    bail!("publish refused by the broker: {reason}");
                }
                return Ok(1);
            }
            ClientEvent::ServerDisconnect(code) => bail!("disconnected by the broker: {code}"),
            _ => {}
        }
    }
}

/// `petrel sub`.
pub fn subscribe(a: SubArgs) -> anyhow::Result<()> {
    crate::logging::init(&a.common.log_level);
    let mut cfg = a.common.config()?;
    cfg.clean_session = a.clean_session;
    cfg.back_off_max_retries = a.back_off_max_retries;
    cfg.manual_ack = a.exec.is_some();
    runtime()?.block_on(async move {
        let qos = cfg.qos;
        let retries = cfg.back_off_max_retries;
        let mut c = MqttClient::connect(cfg).await?;
        let token = c.subscribe(&a.topic, qos).map_err(|e| anyhow!("{e}"))?;
        let mut received = 0u64;
        let stdout = std::io::stdout();
        loop {
            match c.next().await? {
                ClientEvent::Subscribed { token: t, codes } if t == token => {
                    for (f, code) in a.topic.iter().zip(&codes) {
                        if code.is_error() {
                            let why = describe_subscribe_refusal(*code);
                            bail!(
                                "subscription to {f:?} refused by the broker: {why} (0x{:02X})",
                                *code as u8
                            );
                        }
                    }
                    tracing::info!("subscribed to {:?}", a.topic);
                }
                ClientEvent::Message(m) => {
                    if let Some(cmd) = &a.exec {
                        run_handler(cmd, &m.topic, &m.payload, retries).await;
                        if let Some(pid) = m.packet_id {
                            c.ack(pid);
                        }
                    } else {
                        let mut out = stdout.lock();
                        if a.verbose {
                            out.write_all(m.topic.as_bytes())?;
                            out.write_all(b" ")?;
                        }
                        out.write_all(&m.payload)?;
                        out.write_all(b"\n")?;
                        out.flush()?;
                    }
                    received += 1;
                    if a.count.is_some_and(|n| received >= n) {
                        c.flush().await?;
                        c.disconnect().await;
                        return Ok(());
                    }
                }
                ClientEvent::ServerDisconnect(code) => {
                    tracing::warn!("disconnected by the broker: {code}; reconnecting");
                }
                _ => {}
            }
        }
    })
}

/// Runs the handler command, retrying with exponential back-off; after the last retry the
/// message is given up (logged), as Dapr's backOffMaxRetries does.
async fn run_handler(cmd: &str, topic: &str, payload: &[u8], max_retries: i64) {
    let mut attempt: i64 = 0;
    loop {
        let cmd2 = cmd.to_owned();
        let topic2 = topic.to_owned();
        let payload2 = payload.to_vec();
        let (tx, rx) = async_channel::bounded(1);
        std::thread::spawn(move || {
            let ok = (|| -> std::io::Result<bool> {
                let mut child = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&cmd2)
                    .env("MQTT_TOPIC", &topic2)
                    .stdin(std::process::Stdio::piped())
                    .spawn()?;
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(&payload2);
                }
                Ok(child.wait()?.success())
            })()
            .unwrap_or(false);
            let _ = tx.send_blocking(ok);
        });
        let ok = rx.recv().await.unwrap_or(false);
        if ok {
            return;
        }
        if max_retries >= 0 && attempt >= max_retries {
            eprintln!("petrel: handler failed for a message on {topic:?} after {} attempt(s); giving it up", attempt + 1);
            return;
        }
        let delay = 100u64.saturating_mul(1 << attempt.clamp(0, 8)).min(10_000);
        monoio::time::sleep(Duration::from_millis(delay)).await;
        attempt += 1;
    }
}
