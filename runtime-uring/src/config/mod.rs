//! The broker configuration file: TOML with Mosquitto's key names.
//!
//! What it does: reads `petrel.toml` into a [`BrokerConfig`], rejecting unknown keys, bad
//! values and contradictory settings with `file:line:column: message` diagnostics (all of
//! them at once, in file order), checks that the files it names exist (and that
//! `password_file` / `acl_file` parse), and maps the limits onto
//! [`broker_core::Config`]. `default.toml` (in `src/`, next to this directory) is the embedded
//! default (what `petrel broker` runs without a file) and the reference for every key.
//!
//! What it deliberately does not do: Mosquitto's own `mosquitto.conf` syntax, per-listener
//! security (`per_listener_settings`), bridges, plugins, or watching files (the shell
//! reloads on SIGHUP).
//!
//! Where the values mean something other than in Mosquitto 2.0, it says so on the field.
//! Relative paths are resolved against the directory of the configuration file (Mosquitto
//! uses the working directory).
//!
//! Layout: `schema` (the structs, their defaults and the key names), `parse` (the TOML
//! walker, its diagnostics and "did you mean" suggestions), `listener` (`[[listener]]`
//! tables), `mosquitto` (Mosquitto compatibility: unsupported options, durations, log
//! levels), `core_config` (the mapping onto `broker_core::Config`) and `tests`.

mod bridge;
mod cluster;
mod core_config;
mod kafka;
mod listener;
mod mosquitto;
mod ops;
mod parse;
mod schema;
#[cfg(test)]
mod tests;

pub use bridge::{split_address, BridgeConfig, DEFAULT_RESTART_TIMEOUT};
pub use cluster::{valid_name, ClusterConfig};
pub use kafka::{valid_kafka_topic, KafkaConfig, KafkaRoute};
pub use mosquitto::parse_duration;
pub use ops::{AdminConfig, WebhookConfig, DEFAULT_SYS_INTERVAL, WEBHOOK_EVENTS};
pub use parse::{ConfigError, Diagnostic};
pub use schema::{
    BrokerConfig, ListenerConfig, ListenerProtocol, DEFAULT_AUTOSAVE_INTERVAL,
    DEFAULT_MAX_INFLIGHT_MESSAGES, DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_PERSISTENCE_FILE,
    DEFAULT_PORT, DEFAULT_STALL_TIMEOUT, MQTT_MAX_PACKET_SIZE,
};
