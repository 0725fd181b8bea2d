//! `broker-core`: Petrel's MQTT broker (and client) logic as sans-IO state machines.
//!
//! What it does: every server-side rule of MQTT 3.1, 3.1.1 and 5.0 (sessions, QoS flows,
//! subscriptions and the topic index, retained messages, wills, expiry, flow control,
//! topic aliases, enhanced authentication, shared subscriptions) for one shard of a
//! broker, plus the messages shards exchange to act as one broker.
//!
//! What it deliberately does not do: I/O, clocks, threads, randomness or logging. A shell
//! feeds bytes, `now` and timer expiries in (`handle_*`) and takes frames, events and the
//! next deadline out (`poll_*`). Memory is bounded by [`Config`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod admission;
#[cfg(feature = "bridge")]
pub mod bridge;
mod broker;
pub mod client;
#[cfg(feature = "cluster")]
pub mod cluster;
mod config;
mod conn;
mod ids;
pub mod index;
mod message;
pub mod persist;
pub mod policy;
mod retained;
mod session;
pub mod shard;
#[cfg(feature = "sim")]
pub mod sim;
mod slab;
#[cfg(feature = "store")]
pub mod store;
mod time;
mod tx;

pub use broker::{AcceptError, AckRef, Broker, Event, Intake, Metrics, Transmit};
#[cfg(feature = "ops")]
pub use broker::{ClientSummary, DisconnectReason, OpsCounters, SubscriptionSummary};
#[cfg(feature = "backpressure")]
pub use config::QueueFull;
pub use config::{Config, SharedStrategy};
pub use message::{Message, MessageArena, MessageParts, Origin};
pub use policy::{ConnId, PeerInfo, Policy};
pub use retained::RetainedStore;
pub use session::GroupName;
pub use shard::{ShardId, ShardMsg};
pub use slab::Key;
pub use time::Instant;
pub use tx::TxBuf;

pub use mqtt_proto;

/// Per-connection memory: a `Conn` and a `Session` slot for every client, so an idle
/// connection must stay small (rarely used parts are boxed on first use).
#[cfg(all(test, target_pointer_width = "64"))]
mod slot_size {
    #[test]
    fn idle_connection_slots_stay_small() {
        use core::mem::size_of;
        assert!(
            size_of::<crate::conn::Conn>() <= 120,
            "Conn grew to {}",
            size_of::<crate::conn::Conn>()
        );
        // Feature `ops` adds the last CONNECT's time and Clean Start to a session.
        let session_max = if cfg!(feature = "ops") { 168 } else { 160 };
        assert!(
            size_of::<crate::session::Session>() <= session_max,
            "Session grew to {}",
            size_of::<crate::session::Session>()
        );
    }
}
