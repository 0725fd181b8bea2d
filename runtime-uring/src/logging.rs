//! Logging for every subcommand (broker, proxy, pub/sub): `tracing` to stderr.

/// Installs the `tracing` subscriber at `level` (an `EnvFilter` directive; "info" if it
/// does not parse). A second call does nothing.
pub fn init(level: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The store engine narrates every recovery step at info, the Kafka client every
    // connection: their warnings are what an operator needs (a filter naming these crates
    // overrides this).
    for quiet in ["fjall=warn", "lsm_tree=warn", "rskafka=warn"] {
        let named = quiet.split('=').next().is_some_and(|c| level.contains(c));
        if let (false, Ok(d)) = (named, quiet.parse()) {
            filter = filter.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
