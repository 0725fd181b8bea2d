//! The results as Markdown.

/// One row of the brokers table: (scenario, QoS, per broker: (name, headline value,
/// details, latency p50/p99/p99.9 in µs for a latency row)).
pub(crate) type Row = (String, String, Vec<(String, f64, String, Vec<f64>)>);

/// The brokers table, then the `proxy` scenario's table (`proxy_md`) when it ran.
pub(crate) fn markdown(brokers: &[String], rows: &[Row], proxy_md: Option<String>) -> String {
    let mut md = String::new();
    md.push_str("| scenario | QoS | ");
    md.push_str(&brokers.join(" | "));
    md.push_str(" | ratio (first / second) |\n|---|---|");
    for _ in brokers {
        md.push_str("---|");
    }
    md.push_str("---|\n");
    for (sc, q, cells) in rows {
        md.push_str(&format!("| {sc} | {q} | "));
        for (_, _, d, _) in cells {
            md.push_str(d);
            md.push_str(" | ");
        }
        let ratio = match (cells.first(), cells.get(1)) {
            (Some(x), Some(y)) if y.1 > 0.0 => format!("{:.2}x", x.1 / y.1),
            _ => "-".into(),
        };
        md.push_str(&ratio);
        md.push_str(" |\n");
    }
    if let Some(p) = proxy_md {
        // The proxy scenario compares paths to one broker, not brokers: a table of its own.
        if rows.is_empty() {
            md.clear();
        } else {
            md.push('\n');
        }
        md.push_str(&p);
    }
    md
}
