//! `runtime-uring`: Petrel's Linux shell around `broker-core`.
//!
//! What it does: sockets (TCP, TLS), threads (one monoio io_uring runtime and one broker
//! shard per core), clocks and timers, signals, configuration files, logs, and the `petrel`
//! command line (broker, passwd; proxy and pub/sub build on the same pieces).
//!
//! What it deliberately does not do: any MQTT protocol logic. That lives in `broker-core`
//! and `mqtt-proto`; this crate moves bytes, time and events in and out of them.

#![allow(missing_debug_implementations)] // runtime handles (sockets, tasks) print nothing useful

pub mod admin;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod kafka;
pub mod logging;
pub mod net;
pub mod proxy;
pub mod store;
