//! Command-line arguments.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(about = "End-to-end MQTT load generator: Petrel versus Mosquitto in the same run")]
pub(crate) struct Args {
    /// Scenarios to run (comma separated): pairs,fanin,fanout,latency,conns,proxy,durable
    /// (pairs with persistent subscribers, brokers with persistence on),forwarder (a plain
    /// TCP relay moving the same frames as pairs at QoS 0: the loopback reference).
    #[arg(long, default_value = "pairs,fanin,fanout,latency,conns")]
    pub(crate) scenarios: String,
    /// QoS levels (comma separated) for throughput scenarios.
    #[arg(long, default_value = "0,1")]
    pub(crate) qos: String,
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub(crate) payload: usize,
    /// Brokers to test (comma separated): petrel,mosquitto,petrel-epoll,petrel-forward,
    /// petrel-readiness (io_uring used for readiness only, the data path before issue 23).
    #[arg(long, default_value = "petrel,mosquitto")]
    pub(crate) brokers: String,
    /// The petrel binary.
    #[arg(long, default_value = "target/release/petrel")]
    pub(crate) petrel: PathBuf,
    /// Petrel shards.
    #[arg(long, default_value_t = 2)]
    pub(crate) threads: usize,
    /// CPUs the brokers are pinned to (taskset list), the same for every broker.
    #[arg(long, default_value = "0-1")]
    pub(crate) cpus: String,
    /// Idle connections for `conns`.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) conns: usize,
    /// Connects started together in `conns` (and the proxy's connect phase), each batch
    /// waiting for all its CONNACKs.
    #[arg(long, default_value_t = 64)]
    pub(crate) conns_in_flight: usize,
    /// Rate for `latency`, messages per second.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) rate: u64,
    /// Load generator threads.
    #[arg(long, default_value_t = 1)]
    pub(crate) load_threads: usize,
    /// QoS 1/2 PUBLISH packets each publisher keeps unacknowledged (comma separated for
    /// several runs of each throughput scenario: "10,100,1000"). A large window is a
    /// publisher that hardly waits for its acknowledgements.
    #[arg(long, default_value = "64")]
    pub(crate) window: String,
    /// Connect to an already running broker at this address instead of starting them.
    #[arg(long)]
    pub(crate) target: Option<SocketAddr>,
    /// Subscribers connect here instead of --target (another node of a cluster: the
    /// messages cross from the publishers' node to this one).
    #[arg(long)]
    pub(crate) sub_target: Option<SocketAddr>,
    /// The process id of the --target broker (to read its RSS).
    #[arg(long)]
    pub(crate) target_pid: Option<u32>,
    /// Prefix of the client identifiers the tool uses.
    #[arg(long, default_value = "load")]
    pub(crate) client_prefix: String,
    /// Extra arguments of `petrel proxy` in the `proxy` scenario (space separated, e.g.
    /// "--driver epoll" or "--forward splice").
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    pub(crate) proxy_args: String,
    /// Rounds of the `proxy` scenario (its figures are the medians).
    #[arg(long, default_value_t = 3)]
    pub(crate) proxy_rounds: usize,
    /// Petrel's `durability` in the `durable` scenario: process or power.
    #[arg(long, default_value = "process")]
    pub(crate) durability: String,
    /// Write the results as Markdown to this file too.
    #[arg(long)]
    pub(crate) markdown: Option<PathBuf>,
    /// Write the results to this directory as JSON (results.json) and charts
    /// (throughput.svg, latency.svg).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}
