//! The mapping of a [`BrokerConfig`] onto `broker_core::Config`, per shard.

use super::schema::BrokerConfig;

impl BrokerConfig {
    /// The core configuration for a single-shard broker: these limits on top of
    /// `broker_core::Config::default()`.
    pub fn core_config(&self) -> broker_core::Config {
        self.core_config_for_shard(0, 1)
    }

    /// The core configuration for shard `shard` of `shards`: `max_connections` is split
    /// evenly (rounded up) between shards, since each shard counts its own.
    pub fn core_config_for_shard(&self, shard: u16, shards: u16) -> broker_core::Config {
        let mut c = broker_core::Config {
            shard,
            shards: shards.max(1),
            ..Default::default()
        };
        c.max_keepalive = self.max_keepalive;
        c.max_packet_size = self.max_packet_size;
        c.max_inflight_messages = match self.max_inflight_messages {
            0 => u16::MAX,
            n => n,
        };
        c.max_queued_messages = match self.max_queued_messages {
            0 => usize::MAX,
            n => n,
        };
        c.max_queued_bytes = self.max_queued_bytes;
        c.queue_full = self.queue_full;
        c.stall_timeout_ms = u64::from(self.stall_timeout) * 1000;
        c.retain_available = self.retain_available;
        c.persistent_client_expiration = self.persistent_client_expiration;
        c.allow_zero_length_clientid = self.allow_zero_length_clientid;
        c.queue_qos0_messages = self.queue_qos0_messages;
        if let Some(total) = self.max_connections {
            c.max_connections = total.div_ceil(usize::from(c.shards));
        }
        c
    }
}
