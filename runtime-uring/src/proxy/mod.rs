//! `petrel proxy`: an MQTT-aware TCP load balancer. It reads each client's CONNECT, picks
//! a route (protocol name and level, TLS server name, addresses) and a node (consistent
//! hashing of the client id, or round robin), hands the CONNECT to the node and then
//! forwards bytes both ways without parsing them. Routes and certificates are managed at
//! run time through an APISIX-compatible admin API and kept in a state file.
//!
//! Threads: one monoio runtime per core, each with its own `SO_REUSEPORT` listeners (as
//! the broker); the admin API and the active health check on threads of their own. The
//! route table is immutable and swapped atomically, so the proxy threads take no lock.
//!
//! | module | concern |
//! |---|---|
//! | [`ring`] | consistent-hashing ring and weighted round-robin schedule |
//! | [`routes`] | APISIX stream route JSON, validation, match rules |
//! | [`ssl`] | APISIX ssl objects, rustls configurations, SNI index |
//! | [`table`] | the compiled route table read by the proxy threads |
//! | [`health`] | node up/down marks and the active TCP check |
//! | [`store`] | admin objects, state file, publishing new tables |
//! | [`admin`] | the admin HTTP API |
//! | [`conn`] | one client: TLS, CONNECT, route, node, refusal |
//! | [`relay`] | byte forwarding, half-close, idle timeout |
//!
//! What it deliberately does not do: look at any packet after the CONNECT, or keep
//! sessions; the broker behind it does that.

pub mod admin;
pub mod conn;
pub mod health;
pub mod relay;
pub mod ring;
pub mod routes;
pub mod ssl;
pub mod store;
pub mod table;

use crate::net::runtime::Driver;
use anyhow::{bail, Context as _};
use arc_swap::ArcSwap;
use routes::{Balance, HashKey, Matcher, RouteSpec, UpstreamSpec, UpstreamTls};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use table::RouteTable;

/// How the command-line upstreams are balanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BalanceArg {
    /// Consistent hashing of the client id (client IP when the id is empty).
    #[default]
    Chash,
    /// Round robin (weighted).
    Roundrobin,
}

/// `petrel proxy` options (each also settable in the `--config` file; the command line
/// wins).
#[derive(clap::Args, Debug, Default)]
pub struct ProxyArgs {
    /// Listen for MQTT clients here (repeatable); TLS is accepted too when certificates
    /// are configured (a TLS ClientHello is told apart from a CONNECT by its first byte).
    #[arg(long = "bind", value_name = "ADDR")]
    pub bind: Vec<SocketAddr>,
    /// Listen for TLS-only clients here (repeatable).
    #[arg(long = "tls-bind", value_name = "ADDR")]
    pub tls_bind: Vec<SocketAddr>,
    /// A node of the default route: HOST:PORT[=WEIGHT] (repeatable).
    #[arg(long = "upstream", value_name = "HOST:PORT[=WEIGHT]")]
    pub upstream: Vec<String>,
    /// How the default route balances.
    #[arg(long, value_enum)]
    pub balance: Option<BalanceArg>,
    /// Serve the admin API here.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// The admin API key (X-API-KEY header).
    #[arg(
        long,
        value_name = "KEY",
        env = "PETREL_ADMIN_KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep the admin API's routes and certificates in this file (survives restarts).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Proxy threads (default: the available cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Log level or tracing filter (default info).
    #[arg(long)]
    pub log_level: Option<String>,
    /// I/O driver.
    #[arg(long, value_enum)]
    pub driver: Option<Driver>,
    /// Seconds a client has to complete the TLS handshake and send its CONNECT (default 10).
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<f64>,
    /// Largest CONNECT accepted, in bytes (default 65536).
    #[arg(long, value_name = "BYTES")]
    pub max_connect_size: Option<usize>,
    /// Close a forwarded connection after this many seconds without traffic either way
    /// (default 600; 0 = never).
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<f64>,
    /// Seconds to wait for a node to accept a connection (default 3).
    #[arg(long, value_name = "SECS")]
    pub upstream_connect_timeout: Option<f64>,
    /// Seconds a node that refused a connection is skipped (default 10).
    #[arg(long, value_name = "SECS")]
    pub down_time: Option<f64>,
    /// Probe every node with a TCP connect this often, in seconds (default 0 = off).
    #[arg(long, value_name = "SECS")]
    pub health_check_interval: Option<f64>,
    /// Send a PROXY protocol v2 header to the default route's nodes.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Speak TLS to the default route's nodes (needs --upstream-ca).
    #[arg(long)]
    pub upstream_tls: bool,
    /// CA (PEM) that signs the nodes' certificates, for upstreams with TLS.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// A server certificate (PEM) for every name (sni "*"), besides the admin API's.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM) with --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// How plain connections are copied: user-space buffers or splice(2).
    #[arg(long, value_enum)]
    pub forward: Option<relay::CopyMode>,
}

/// A certificate from the configuration file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSsl {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    snis: Vec<String>,
    client_ca: Option<PathBuf>,
}

/// The `--config` file: the same settings as the command line.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    bind: Vec<SocketAddr>,
    #[serde(default)]
    tls_bind: Vec<SocketAddr>,
    #[serde(default)]
    upstreams: Vec<String>,
    balance: Option<BalanceArg>,
    admin: Option<SocketAddr>,
    admin_key: Option<String>,
    state: Option<PathBuf>,
    threads: Option<usize>,
    log_level: Option<String>,
    connect_timeout: Option<f64>,
    max_connect_size: Option<usize>,
    idle_timeout: Option<f64>,
    upstream_connect_timeout: Option<f64>,
    down_time: Option<f64>,
    health_check_interval: Option<f64>,
    proxy_protocol: Option<bool>,
    upstream_tls: Option<bool>,
    upstream_ca: Option<PathBuf>,
    forward: Option<relay::CopyMode>,
    #[serde(default)]
    ssl: Vec<FileSsl>,
}

/// Limits and timeouts of the data path.
#[derive(Debug, Clone)]
pub struct Limits {
    pub connect_timeout: Duration,
    pub max_connect_size: usize,
    pub idle_timeout: Duration,
    pub down_time: Duration,
    pub copy: relay::CopyMode,
}

/// What every proxy thread shares.
#[derive(Debug)]
pub struct Shared {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub limits: Limits,
}

fn secs(v: Option<f64>, default: f64, what: &str) -> anyhow::Result<Duration> {
    let s = v.unwrap_or(default);
    if !(0.0..=1e9).contains(&s) {
        bail!("{what}: {s} is not a number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

async fn accept_loop(
    shared: Arc<Shared>,
    mut listener: crate::net::listen::Acceptor,
    mode: conn::TlsMode,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let local = match stream.local_addr() {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                monoio::spawn(conn::serve(shared.clone(), stream, peer, local, mode));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `petrel proxy`.
pub fn run(a: ProxyArgs) -> anyhow::Result<()> {
    let file: FileConfig = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let level = a
        .log_level
        .clone()
        .or(file.log_level.clone())
        .unwrap_or_else(|| "info".into());
    crate::logging::init(&level);

    let pick = |cli: Vec<SocketAddr>, f: Vec<SocketAddr>| if cli.is_empty() { f } else { cli };
    let binds = pick(a.bind.clone(), file.bind.clone());
    let tls_binds = pick(a.tls_bind.clone(), file.tls_bind.clone());
    if binds.is_empty() && tls_binds.is_empty() {
        bail!("nothing to listen on: give --bind ADDR (or bind in the configuration file)");
    }
    let upstreams = if a.upstream.is_empty() {
        file.upstreams.clone()
    } else {
        a.upstream.clone()
    };
    let balance = a.balance.or(file.balance).unwrap_or_default();
    let upstream_ca = match a.upstream_ca.clone().or(file.upstream_ca.clone()) {
        Some(p) => Some(ssl::read_pem_file(&p)?),
        None => None,
    };
    let upstream_tls = a.upstream_tls || file.upstream_tls.unwrap_or(false);
    if upstream_tls && upstream_ca.is_none() {
        bail!("--upstream-tls needs --upstream-ca FILE");
    }
    let default_route = if upstreams.is_empty() {
        None
    } else {
        let nodes = upstreams
            .iter()
            .map(|s| routes::parse_cli_node(s).map_err(|e| anyhow::anyhow!("--upstream {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some(RouteSpec {
            matcher: Matcher::default(),
            upstream: UpstreamSpec {
                nodes,
                balance: match balance {
                    BalanceArg::Chash => Balance::Chash(HashKey::ClientId),
                    BalanceArg::Roundrobin => Balance::RoundRobin,
                },
                tls: upstream_tls.then(UpstreamTls::default),
                proxy_protocol: a.proxy_protocol || file.proxy_protocol.unwrap_or(false),
                retries: None,
                connect_timeout: None,
            },
        })
    };
    let mut static_ssls = Vec::new();
    let mut file_ssls = file.ssl.clone();
    if let (Some(c), Some(k)) = (&a.tls_cert, &a.tls_key) {
        file_ssls.push(FileSsl {
            cert: c.clone(),
            key: k.clone(),
            snis: vec!["*".into()],
            client_ca: a.tls_client_ca.clone(),
        });
    }
    for s in file_ssls {
        static_ssls.push(ssl::SslSpec {
            cert: ssl::read_pem_file(&s.cert)?,
            key: ssl::read_pem_file(&s.key)?,
            snis: if s.snis.is_empty() {
                vec!["*".into()]
            } else {
                s.snis.iter().map(|n| n.to_ascii_lowercase()).collect()
            },
            client_ca: match &s.client_ca {
                Some(p) => Some(ssl::read_pem_file(p)?),
                None => None,
            },
            enabled: true,
        });
    }
    let limits = Limits {
        connect_timeout: secs(
            a.connect_timeout.or(file.connect_timeout),
            10.0,
            "connect timeout",
        )?,
        max_connect_size: a
            .max_connect_size
            .or(file.max_connect_size)
            .unwrap_or(65536)
            .max(16),
        idle_timeout: secs(a.idle_timeout.or(file.idle_timeout), 600.0, "idle timeout")?,
        down_time: secs(a.down_time.or(file.down_time), 10.0, "down time")?,
        copy: a.forward.or(file.forward).unwrap_or_default(),
    };
    let upstream_connect_timeout = secs(
        a.upstream_connect_timeout.or(file.upstream_connect_timeout),
        3.0,
        "upstream connect timeout",
    )?;
    let health_interval = secs(
        a.health_check_interval.or(file.health_check_interval),
        0.0,
        "health check interval",
    )?;

    let table = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
    let registry = Arc::new(health::HealthRegistry::default());
    let store = store::Store::open(
        table.clone(),
        registry,
        store::StoreSettings {
            state: a.state.clone().or(file.state.clone()),
            upstream_ca,
            connect_timeout: upstream_connect_timeout,
            default_route,
            static_ssls,
        },
    )?;
    let shared = Arc::new(Shared {
        table: table.clone(),
        limits,
    });

    // Listeners first: a port in use stops the start-up before anything runs.
    let threads = a
        .threads
        .or(file.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let specs: Vec<(SocketAddr, conn::TlsMode)> = binds
        .iter()
        .map(|b| (*b, conn::TlsMode::Auto))
        .chain(tls_binds.iter().map(|b| (*b, conn::TlsMode::Required)))
        .collect();
    let addrs: Vec<SocketAddr> = specs.iter().map(|(a, _)| *a).collect();
    let (bound_per_thread, bound) = crate::net::listen::bind_all(&addrs, threads, true)?;
    if let Some(n) = crate::net::listen::raise_open_files_limit() {
        tracing::info!("open files limit {n}");
    }
    for (actual, (_, mode)) in bound.iter().zip(&specs) {
        let tls = if *mode == conn::TlsMode::Required {
            " (TLS)"
        } else {
            ""
        };
        tracing::info!("proxy listening on {actual}{tls}");
    }
    let per_thread: Vec<Vec<(std::net::TcpListener, conn::TlsMode)>> = bound_per_thread
        .into_iter()
        .map(|ls| ls.into_iter().zip(specs.iter().map(|(_, m)| *m)).collect())
        .collect();

    match (
        a.admin.or(file.admin),
        a.admin_key.clone().or(file.admin_key.clone()),
    ) {
        (Some(addr), Some(key)) if !key.is_empty() => {
            let bound = admin::spawn(addr, key, store)?;
            tracing::info!("admin API on http://{bound}/apisix/admin/");
        }
        (Some(_), _) => bail!("--admin needs --admin-key KEY (or PETREL_ADMIN_KEY)"),
        (None, _) => drop(store),
    }
    if !health_interval.is_zero() {
        let t = table.clone();
        health::spawn_active_check(
            health::ActiveCheck {
                interval: health_interval,
                // Not shorter than a client's connect: a slow accept on a loaded
                // machine must not take a working node out for `down_time`.
                timeout: upstream_connect_timeout,
                down_time: shared.limits.down_time,
            },
            move || t.load().nodes(),
        )?;
    }

    let driver = a.driver.unwrap_or_default();
    let use_uring = driver.use_uring()?;
    tracing::info!(
        "{threads} proxy thread(s) on {}",
        if use_uring { "io_uring" } else { "epoll" }
    );
    let mut handles = Vec::new();
    for (i, listeners) in per_thread.into_iter().enumerate() {
        let shared = shared.clone();
        let h = std::thread::Builder::new()
            .name(format!("petrel-proxy-{i}"))
            .spawn(move || -> anyhow::Result<()> {
                let body = async move {
                    for (l, mode) in listeners {
                        let l = crate::net::listen::Acceptor::new(l, use_uring)?;
                        monoio::spawn(accept_loop(shared.clone(), l, mode));
                    }
                    // The accept loops run for the life of the process.
                    std::future::pending::<anyhow::Result<()>>().await
                };
                crate::net::runtime::block_on(use_uring, body)?
            })?;
        handles.push(h);
    }

    // SIGINT/SIGTERM: the state file is always up to date, so stopping is just exiting
    // (established connections are closed by the kernel with the process).
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!("signal {sig}: stopping");
                let _ = tx.send(Ok(()));
            }
        });
    }
    for h in handles {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = match h.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(anyhow::anyhow!("a proxy thread panicked")),
            };
            let _ = tx.send(r.and_then(|()| Err(anyhow::anyhow!("a proxy thread stopped"))));
        });
    }
    drop(tx);
    rx.recv().unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_keys() {
        let f: FileConfig = toml::from_str(
            r#"
            bind = ["127.0.0.1:1883"]
            tls_bind = ["127.0.0.1:8883"]
            upstreams = ["10.0.0.1:1883=2", "10.0.0.2:1883"]
            balance = "roundrobin"
            admin = "127.0.0.1:9180"
            admin_key = "k"
            state = "/var/lib/petrel/proxy.json"
            threads = 2
            connect_timeout = 5
            idle_timeout = 0.5
            max_connect_size = 4096
            down_time = 30
            health_check_interval = 2
            upstream_connect_timeout = 1.5
            proxy_protocol = true
            forward = "splice"
            [[ssl]]
            cert = "server.pem"
            key = "server.key"
            snis = ["mqtt.example.com"]
            client_ca = "clients.pem"
            "#,
        )
        .unwrap();
        assert_eq!(f.balance, Some(BalanceArg::Roundrobin));
        assert_eq!(f.forward, Some(relay::CopyMode::Splice));
        assert_eq!(f.ssl.len(), 1);
        assert_eq!(f.upstreams.len(), 2);
        assert!(toml::from_str::<FileConfig>("bnid = []").is_err());
    }
}
