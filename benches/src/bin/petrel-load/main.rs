//! `petrel-load`: the end-to-end load tool. Starts Mosquitto and Petrel on loopback (same
//! cores, same run), drives the same workloads against each, and prints a ratio table.
//!
//! Scenarios (64 B payloads, QoS 0 and 1): `pairs` (100 publisher/subscriber pairs),
//! `fanin` (8 publishers to 1 wildcard subscriber), `fanout` (1 publisher to 100
//! subscribers), `latency` (1 to 1 at a fixed rate: p50/p99/p99.9), `conns` (idle
//! connections: connect rate and broker RSS per connection), `proxy` (the same workload
//! direct and through `petrel proxy`), `durable` (pairs with persistent subscribers and
//! persistence on), `forwarder` (a plain TCP relay moving the same frames as `pairs` at
//! QoS 0: the loopback reference). With a broker pid, throughput rows add the broker's system calls per
//! delivered message (`perf stat`). Publishers write as fast as the broker accepts,
//! in batches; every loop is bounded in time and count; undelivered messages are counted.

mod brokers;
mod charts;
mod cli;
mod client;
mod forwarder;
mod proxy;
mod report;
mod scenarios;
mod syscalls;

use brokers::start_broker;
use clap::Parser;
use cli::Args;
use mqtt_proto::QoS;
use proxy::run_proxy_scenario;
use report::Row;
use scenarios::{run_conns, run_workload, workload};

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    // Many idle connections need file descriptors.
    // SAFETY: setrlimit with a valid, fully initialised struct.
    unsafe {
        let lim = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let brokers: Vec<String> = a.brokers.split(',').map(str::to_owned).collect();
    let qos_list: Vec<QoS> = a
        .qos
        .split(',')
        .filter_map(|q| match q {
            "0" => Some(QoS::AtMostOnce),
            "1" => Some(QoS::AtLeastOnce),
            "2" => Some(QoS::ExactlyOnce),
            _ => None,
        })
        .collect();
    // (scenario, QoS, per broker: (name, headline value, details))
    let mut rows: Vec<Row> = Vec::new();
    let mut proxy_md = None;
    for sc in a.scenarios.split(',') {
        if sc == "proxy" {
            proxy_md = Some(run_proxy_scenario(&a)?);
            continue;
        }
        if sc == "forwarder" {
            // One reference figure, in the first broker's column.
            let progress = progress("forwarder qos0 (plain TCP relay)");
            let (rate, detail) = forwarder::run_forwarder(&a)?;
            progress.finish_and_clear();
            eprintln!("forwarder qos0: {detail}");
            let mut cells = vec![("forwarder".to_owned(), rate, detail, Vec::new())];
            for _ in 1..brokers.len() {
                cells.push((String::new(), 0.0, "-".into(), Vec::new()));
            }
            rows.push((sc.to_owned(), "0".into(), cells));
            continue;
        }
        let qs: Vec<QoS> = match sc {
            "latency" | "conns" => vec![QoS::AtMostOnce],
            _ => qos_list.clone(),
        };
        let windows: Vec<u64> = a
            .window
            .split(',')
            .map(|w| w.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--window: {e}"))?;
        let runs: Vec<(QoS, u64)> = qs
            .iter()
            .flat_map(|&q| {
                // The window matters only to QoS 1/2 throughput.
                let ws = if q == QoS::AtMostOnce || sc == "latency" || sc == "conns" {
                    &windows[..windows.len().min(1)]
                } else {
                    &windows[..]
                };
                ws.iter().map(move |&w| (q, w))
            })
            .collect();
        for (q, window) in runs {
            let label = if q != QoS::AtMostOnce && windows.len() > 1 {
                format!("{} (window {window})", q as u8)
            } else {
                format!("{}", q as u8)
            };
            let mut cells = Vec::new();
            for b in &brokers {
                let progress = progress(&format!("{sc} qos{label} {b}"));
                let proc_ = match a.target {
                    Some(_) => None,
                    None => Some(start_broker(b, &a, sc == "durable")?),
                };
                let addr = a
                    .target
                    .or(proc_.as_ref().map(|p| p.addr))
                    .ok_or_else(|| anyhow::anyhow!("no broker"))?;
                let pid = proc_.as_ref().map(|p| p.child.id()).or(a.target_pid);
                let mut latency = Vec::new();
                let (value, detail) = match sc {
                    "conns" => {
                        let o = run_conns(addr, pid, a.conns, a.conns_in_flight)?;
                        (
                            o.per_sec,
                            format!(
                                "{:.0} conn/s, {} B RSS/conn, {} µs broker CPU/conn, {} µs client CPU/conn, batch of {} p50 {:.0} µs max {:.0} µs",
                                o.per_sec,
                                o.rss_per_conn.map_or("?".into(), |r| format!("{r:.0}")),
                                o.cpu_per_conn.map_or("?".into(), |c| format!("{c:.1}")),
                                o.client_cpu_per_conn
                                    .map_or("?".into(), |c| format!("{c:.1}")),
                                a.conns_in_flight,
                                o.batch_p50,
                                o.batch_max
                            ),
                        )
                    }
                    "latency" => {
                        let w = workload(sc).ok_or_else(|| anyhow::anyhow!("?"))?;
                        let o = run_workload(addr, pid, &w, q, &a, Some(a.rate), window)?;
                        let (p50, p99, p999) = o.latency.unwrap_or_default();
                        latency = vec![p50, p99, p999];
                        (
                            p99,
                            format!("p50 {p50:.0} µs, p99 {p99:.0} µs, p99.9 {p999:.0} µs"),
                        )
                    }
                    _ => {
                        let w =
                            workload(sc).ok_or_else(|| anyhow::anyhow!("unknown scenario {sc}"))?;
                        let o = run_workload(addr, pid, &w, q, &a, None, window)?;
                        (
                            o.delivered_per_sec,
                            format!(
                                "{:.0} msg/s delivered; published {}, acknowledged {}, delivered {}, lost {}{}",
                                o.delivered_per_sec,
                                o.published,
                                o.acked,
                                o.delivered,
                                o.lost,
                                o.syscalls_per_msg
                                    .map_or(String::new(), |s| format!("; {s:.3} broker syscalls/msg"))
                            ),
                        )
                    }
                };
                progress.finish_and_clear();
                eprintln!("{sc} qos{label} {b}: {detail}");
                cells.push((b.clone(), value, detail, latency));
                drop(proc_);
            }
            rows.push((sc.to_owned(), label, cells));
        }
    }
    let md = report::markdown(&brokers, &rows, proxy_md);
    println!("{md}");
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md)?;
    }
    if let Some(dir) = &a.out {
        charts::write(dir, &brokers, &rows)?;
        eprintln!("results and charts in {}", dir.display());
    }
    Ok(())
}

/// A spinner with the run's name and elapsed time while it runs (on a terminal only).
fn progress(what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        pb.set_style(style);
    }
    pb.set_message(what.to_owned());
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb
}
