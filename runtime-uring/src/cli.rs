//! Command-line front ends of the subcommands.

use crate::broker::{self, Driver, ListenerSpec, RunSettings};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// `petrel broker` options.
#[derive(clap::Args, Debug)]
pub struct BrokerArgs {
    /// Listen on this address (repeatable); replaces the configured listeners.
    #[arg(long = "bind", value_name = "ADDR")]
    pub bind: Vec<SocketAddr>,
    /// Read this TOML configuration file instead of the embedded default.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Shards (threads); default: the available cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// I/O driver.
    #[arg(long, value_enum, default_value_t = Driver::Auto)]
    pub driver: Driver,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

/// Installs the `tracing` subscriber at `level`.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `petrel broker`.
pub fn broker(a: BrokerArgs) -> anyhow::Result<()> {
    init_logging(&a.log_level);
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let binds = if a.bind.is_empty() {
        vec!["127.0.0.1:1883".parse().context("address")?, "[::1]:1883".parse().context("address")?]
    } else {
        a.bind
    };
    let settings = RunSettings {
        core: broker_core::Config::default(),
        listeners: binds
            .into_iter()
            .map(|addr| ListenerSpec {
                addr,
                tls: None,
                proxy_protocol: false,
            })
            .collect(),
        threads,
        driver: a.driver,
        policy: Arc::new(|_| broker_core::Policy::default()),
        reload: Arc::new(|| Ok(Vec::new())),
        on_ready: None,
    };
    broker::run(settings)
}
