//! The `proxy` scenario: one Petrel broker reached directly, through `petrel proxy`, and
//! through nginx.

use crate::brokers::{cpu_secs, start_broker, start_nginx, start_petrel_proxy};
use crate::cli::Args;
use crate::scenarios::{run_conns, run_workload, workload};
use mqtt_proto::QoS;
use std::net::SocketAddr;
use std::time::Duration;

/// CPU µs of `pid` (and children) per message since `before`.
pub(crate) fn cpu_per_msg(pid: Option<u32>, before: Option<f64>, msgs: u64) -> Option<f64> {
    let used = cpu_secs(pid?)? - before?;
    (msgs > 0).then(|| used * 1e6 / msgs as f64)
}

/// One path to the broker measured by the `proxy` scenario.
#[derive(Default)]
pub(crate) struct ProxyRow {
    pub(crate) name: String,
    pub(crate) conn_rate: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    /// Proxy CPU µs per message at the fixed rate, and at full speed (None: direct).
    pub(crate) cpu_rate: Option<f64>,
    pub(crate) cpu_full: Option<f64>,
    pub(crate) full_rate: f64,
    pub(crate) lost: u64,
}

/// The `proxy` scenario: the same workloads direct to one Petrel broker, through
/// `petrel proxy`, and through nginx's stream proxy when installed; returns Markdown.
pub(crate) fn run_proxy_scenario(a: &Args) -> anyhow::Result<String> {
    let broker = start_broker("petrel", a, false)?;
    let proxy = start_petrel_proxy(a, broker.addr)?;
    let nginx = start_nginx(a, broker.addr)?;
    if nginx.is_none() {
        eprintln!("proxy: nginx (with its stream module) not installed, skipped");
    }
    let mut paths: Vec<(String, SocketAddr, Option<u32>)> = vec![
        ("direct".into(), broker.addr, None),
        ("petrel proxy".into(), proxy.addr, Some(proxy.child.id())),
    ];
    if let Some(n) = &nginx {
        paths.push(("nginx stream".into(), n.0.addr, Some(n.0.child.id())));
    }
    let latency = workload("latency").ok_or_else(|| anyhow::anyhow!("no latency workload"))?;
    let pairs = workload("pairs").ok_or_else(|| anyhow::anyhow!("no pairs workload"))?;
    // Rounds of (every phase, every path in turn), and the median of the rounds: on a
    // shared machine a burst of other work then hits one sample, not one path.
    let mut samples: Vec<Vec<ProxyRow>> = Vec::new();
    for round in 0..a.proxy_rounds.max(1) {
        let mut rows: Vec<ProxyRow> = paths
            .iter()
            .map(|(name, _, _)| ProxyRow {
                name: name.clone(),
                ..ProxyRow::default()
            })
            .collect();
        let settle = || std::thread::sleep(Duration::from_millis(500));
        for ((name, addr, _), row) in paths.iter().zip(&mut rows) {
            settle();
            row.conn_rate = run_conns(*addr, None, a.conns, a.conns_in_flight)?.per_sec;
            eprintln!("proxy round {round} {name}: {:.0} conn/s", row.conn_rate);
        }
        for ((name, addr, pid), row) in paths.iter().zip(&mut rows) {
            settle();
            let before = pid.and_then(cpu_secs);
            let o = run_workload(*addr, None, &latency, QoS::AtMostOnce, a, Some(a.rate), 64)?;
            row.cpu_rate = cpu_per_msg(*pid, before, o.delivered);
            (row.p50, row.p99, _) = o.latency.unwrap_or_default();
            row.lost += o.lost;
            eprintln!(
                "proxy round {round} {name}: latency p50 {:.0} µs p99 {:.0} µs, CPU {:?} µs/msg",
                row.p50, row.p99, row.cpu_rate
            );
        }
        for ((name, addr, pid), row) in paths.iter().zip(&mut rows) {
            settle();
            let before = pid.and_then(cpu_secs);
            let o = run_workload(*addr, None, &pairs, QoS::AtMostOnce, a, None, 64)?;
            row.cpu_full = cpu_per_msg(*pid, before, o.delivered);
            row.full_rate = o.delivered_per_sec;
            row.lost += o.lost;
            eprintln!(
                "proxy round {round} {name}: pairs {:.0} msg/s, CPU {:?} µs/msg",
                row.full_rate, row.cpu_full
            );
        }
        samples.push(rows);
    }
    let median = |v: Vec<f64>| -> f64 {
        let mut v = v;
        v.sort_by(|x, y| x.total_cmp(y));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let median_opt = |v: Vec<Option<f64>>| -> Option<f64> {
        let v: Vec<f64> = v.into_iter().flatten().collect();
        (!v.is_empty()).then(|| median(v))
    };
    let rows: Vec<ProxyRow> = (0..paths.len())
        .map(|i| {
            let col = |f: &dyn Fn(&ProxyRow) -> f64| {
                median(samples.iter().filter_map(|r| r.get(i)).map(f).collect())
            };
            let col_opt = |f: &dyn Fn(&ProxyRow) -> Option<f64>| {
                median_opt(samples.iter().filter_map(|r| r.get(i)).map(f).collect())
            };
            ProxyRow {
                name: paths.get(i).map(|p| p.0.clone()).unwrap_or_default(),
                conn_rate: col(&|r| r.conn_rate),
                p50: col(&|r| r.p50),
                p99: col(&|r| r.p99),
                cpu_rate: col_opt(&|r| r.cpu_rate),
                cpu_full: col_opt(&|r| r.cpu_full),
                full_rate: col(&|r| r.full_rate),
                lost: samples
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|r| r.lost)
                    .sum(),
            }
        })
        .collect();
    drop(nginx);
    drop(proxy);
    drop(broker);
    let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let mut md = format!(
        "| path (median of {} rounds) | connects/s (x direct) | latency p50 / p99 µs (added p50) | proxy CPU µs/msg at {} msg/s | pairs QoS 0 msg/s | proxy CPU µs/msg in pairs | lost |\n|---|---|---|---|---|---|---|\n",
        a.proxy_rounds.max(1),
        a.rate
    );
    let direct_rate = rows.first().map_or(0.0, |r| r.conn_rate);
    let direct_p50 = rows.first().map_or(0.0, |r| r.p50);
    for r in &rows {
        md.push_str(&format!(
            "| {} | {:.0} ({:.2}x) | {:.0} / {:.0} ({:+.0}) | {} | {:.0} | {} | {} |\n",
            r.name,
            r.conn_rate,
            if direct_rate > 0.0 {
                r.conn_rate / direct_rate
            } else {
                0.0
            },
            r.p50,
            r.p99,
            r.p50 - direct_p50,
            us(r.cpu_rate),
            r.full_rate,
            us(r.cpu_full),
            r.lost,
        ));
    }
    Ok(md)
}
