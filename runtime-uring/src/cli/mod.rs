//! Command-line front ends of the subcommands: `petrel broker` here, `pub` / `sub` in
//! [`client`], `passwd` in [`passwd`].

pub mod client;
pub mod passwd;

use crate::auth::SharedAuth;
use crate::broker::{self, Driver, ListenerSpec, Placement, RunSettings};
use crate::config::{BrokerConfig, ListenerConfig, ListenerProtocol};
use crate::net::tls::{server_config, TlsFiles};
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
    /// Shards (threads); default: the configuration's `threads`, else the available cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Log level: error, warn, info, debug, trace (or a tracing filter); default: the
    /// configuration's log_level, else info.
    #[arg(long)]
    pub log_level: Option<String>,
    /// I/O driver.
    #[arg(long, value_enum, default_value_t = Driver::Auto)]
    pub driver: Driver,
    /// Where a connection is served when its client id belongs to another shard than the
    /// one that accepted it: hand the socket over (default), or keep it and relay bytes.
    #[arg(long, value_enum, default_value_t = Placement::Handoff)]
    pub placement: Placement,
    /// Pin each shard thread to its own CPU (for dedicated machines).
    #[arg(long)]
    pub pin_cores: bool,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

fn tls_configs(cfg: &BrokerConfig) -> anyhow::Result<Vec<Option<Arc<rustls::ServerConfig>>>> {
    cfg.listeners
        .iter()
        .map(|l| match (&l.certfile, &l.keyfile) {
            (Some(cert), Some(key)) => {
                let files = TlsFiles {
                    certfile: cert,
                    keyfile: key,
                    cafile: l.cafile.as_deref(),
                    require_certificate: l.require_certificate,
                };
                server_config(&files)
                    .with_context(|| format!("TLS listener {}", l.bind))
                    .map(Some)
            }
            _ => Ok(None),
        })
        .collect()
}

fn persistence(
    cfg: &BrokerConfig,
    file: Option<&std::path::Path>,
) -> Option<crate::store::StoreSettings> {
    // A cluster node always has a store (its sessions' records go from there to the
    // cluster's shared copy), named by its node_id.
    let node = cfg.cluster.as_ref().map(|c| c.node_id.as_str());
    if !cfg.persistence && node.is_none() {
        return None;
    }
    if cfg.autosave_interval != crate::config::DEFAULT_AUTOSAVE_INTERVAL {
        tracing::warn!(
            "autosave_interval is ignored: every change is written to the store before it is acknowledged"
        );
    }
    // Mosquitto's defaults: the location is the config file's directory (or the working
    // directory), the file name petrel.db.
    let dir = cfg
        .persistence_location
        .clone()
        .or_else(|| {
            file.and_then(|f| f.parent())
                .map(std::path::Path::to_path_buf)
        })
        .unwrap_or_else(|| ".".into());
    let name = cfg
        .persistence_file
        .clone()
        .unwrap_or_else(|| "petrel.db".into());
    // petrel.db → petrel-n1.db
    let name = match node {
        Some(n) => {
            let p = std::path::Path::new(&name);
            let mut with = p.file_stem().unwrap_or(p.as_os_str()).to_owned();
            with.push(format!("-{n}"));
            if let Some(ext) = p.extension() {
                with.push(".");
                with.push(ext);
            }
            std::path::PathBuf::from(with)
        }
        None => name,
    };
    Some(crate::store::StoreSettings {
        path: dir.join(name),
        durability: cfg.durability,
        queued_in_memory: cfg.queued_messages_in_memory,
    })
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<BrokerConfig> {
    match path {
        Some(p) => BrokerConfig::from_file(p).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(BrokerConfig::embedded_default()),
    }
}

/// `petrel broker`.
pub fn broker(a: BrokerArgs) -> anyhow::Result<()> {
    if a.print_default_config {
        print!("{}", BrokerConfig::DEFAULT_TOML);
        return Ok(());
    }
    let mut cfg = load_config(a.config.as_deref())?;
    let level = a
        .log_level
        .clone()
        .or_else(|| cfg.log_level.clone())
        .unwrap_or_else(|| "info".into());
    crate::logging::init(&level);
    if !a.bind.is_empty() {
        cfg.listeners = a.bind.iter().map(|b| ListenerConfig::plain(*b)).collect();
    }
    let threads = a
        .threads
        .or(cfg.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let auth = SharedAuth::load(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = tls_configs(&cfg)?;
    let listeners = cfg
        .listeners
        .iter()
        .zip(tls)
        .map(|(l, tls)| ListenerSpec {
            addr: l.bind,
            tls,
            proxy_protocol: l.proxy_protocol,
            websockets: l.protocol == ListenerProtocol::Websockets,
        })
        .collect();
    let policy_auth = auth.clone();
    let reload_path = a.config.clone();
    let reload_binds = a.bind.clone();
    let load = move || -> anyhow::Result<BrokerConfig> {
        let mut cfg = load_config(reload_path.as_deref())?;
        if !reload_binds.is_empty() {
            cfg.listeners = reload_binds
                .iter()
                .map(|b| ListenerConfig::plain(*b))
                .collect();
        }
        Ok(cfg)
    };
    let node = match &cfg.cluster {
        Some(c) => format!("petrel@{}", c.node_id),
        None => crate::admin::node_name(cfg.admin.as_ref().map(|a| a.bind)),
    };
    let webhooks = crate::admin::webhook::Webhooks::start(&cfg.webhooks, &node)?;
    let banned = crate::admin::banned::Banned::default();
    let (policy_hooks, policy_banned) = (webhooks.clone(), banned.clone());
    let with_kafka = !cfg.kafka.is_empty();
    let reload_load = load.clone();
    let reload_auth = auth.clone();
    let settings = RunSettings {
        core: cfg.core_config_for_shard(0, threads as u16),
        listeners,
        threads,
        pin_cores: a.pin_cores,
        driver: a.driver,
        placement: a.placement,
        policy: Arc::new(move |shard| {
            let log = crate::broker::report::LogHooks::default();
            let hooks: Box<dyn broker_core::policy::Hooks + Send> =
                if policy_hooks.endpoints.is_empty() {
                    Box::new(log)
                } else {
                    Box::new(crate::broker::hooks::Both(
                        log,
                        policy_hooks.hooks(shard as u16),
                    ))
                };
            let authorizer: Box<dyn broker_core::policy::Authorizer + Send> = if with_kafka {
                Box::new(crate::kafka::QueueGuard(policy_auth.authorizer()))
            } else {
                Box::new(policy_auth.authorizer())
            };
            broker_core::Policy {
                authenticator: Box::new(policy_banned.guard(policy_auth.authenticator())),
                authorizer,
                hooks,
            }
        }),
        // SIGHUP: re-read the configuration, the password and ACL files and the
        // certificates; live connections keep going.
        reload: Arc::new(move || {
            let cfg = reload_load()?;
            reload_auth
                .reload(&cfg)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tls_configs(&cfg)
        }),
        on_ready: None,
        persistence: persistence(&cfg, a.config.as_deref()),
        memory_limit: cfg.memory_limit,
        cluster: cfg.cluster.clone(),
        kafka: cfg.kafka.clone(),
    };
    let reload = settings.reload.clone();
    // A bad key file stops the start-up before anything listens.
    let keys = cfg
        .admin
        .as_ref()
        .map(|ac| crate::admin::keys::ApiKeys::load(&ac.api_key_file))
        .transpose()?;
    let running = broker::start(settings)?;
    let bridges = match crate::bridge::Bridges::start(&cfg.bridges, running.handle.clone()) {
        Ok(b) => b,
        Err(e) => {
            let _ = running.stop();
            return Err(e);
        }
    };
    let maxima = Arc::new(crate::admin::stats::Maxima::default());
    let stop_sys = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if cfg.sys_interval > 0 {
        crate::admin::sys::spawn(
            running.handle.clone(),
            std::time::Duration::from_secs(u64::from(cfg.sys_interval)),
            maxima.clone(),
            stop_sys.clone(),
        )?;
    }
    if let (Some(ac), Some(keys)) = (&cfg.admin, keys) {
        // Accounts rewrite the password file and reload only the authentication files.
        let accounts = cfg.password_file.clone().map(|path| {
            let (load, auth) = (load.clone(), auth.clone());
            crate::admin::accounts::Accounts::new(
                path,
                Arc::new(move || {
                    let cfg = load()?;
                    auth.reload(&cfg).map_err(|e| anyhow::anyhow!("{e}"))
                }),
            )
        });
        let admin = crate::admin::Admin {
            handle: running.handle.clone(),
            keys,
            prometheus_auth: ac.prometheus_auth,
            accounts,
            banned,
            webhooks: webhooks.clone(),
            maxima,
            node,
            cluster: running.cluster.clone(),
            bridges: bridges.status.clone(),
            kafka: running.kafka.clone(),
        };
        match crate::admin::serve(ac.bind, Arc::new(admin)) {
            Ok(addr) => tracing::info!("admin API and dashboard (http): listening on {addr}"),
            Err(e) => {
                let _ = running.stop();
                return Err(e);
            }
        }
    }
    let result = running.wait_for_signals(reload);
    bridges.stop();
    stop_sys.store(true, std::sync::atomic::Ordering::Relaxed);
    webhooks.stop();
    result
}
