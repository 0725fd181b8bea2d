//! `--out DIR`: the results as JSON (`results.json`) and as SVG charts (`throughput.svg`:
//! messages per second per scenario and broker on a log scale; `latency.svg`: p50, p99 and
//! p99.9 per broker), so that brokers are compared by looking.
//!
//! The SVG is written here rather than with plotters: a chart of bars and labels is a few
//! dozen elements, and plotters lays text out through a font stack (font-kit and
//! fontconfig, or a bundled TrueType font) that a headless CI machine does not need.

use crate::report::Row;
use std::fmt::Write as _;
use std::path::Path;

const PALETTE: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// Writes `results.json`, `throughput.svg` and (with a latency row) `latency.svg`.
pub(crate) fn write(dir: &Path, brokers: &[String], rows: &[Row]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.json"), json(brokers, rows))?;
    let bars: Vec<(String, Vec<f64>)> = rows
        .iter()
        .filter(|r| r.0 != "latency" && r.0 != "conns" && r.0 != "forwarder")
        .map(|(sc, q, cells)| (format!("{sc} qos{q}"), cells.iter().map(|c| c.1).collect()))
        .collect();
    if !bars.is_empty() {
        let svg = grouped_bars(
            "Throughput (msg/s delivered, log scale)",
            brokers,
            &bars,
            true,
        );
        std::fs::write(dir.join("throughput.svg"), svg)?;
    }
    let lat: Vec<(String, Vec<f64>)> = rows
        .iter()
        .filter(|r| r.0 == "latency")
        .flat_map(|(_, _, cells)| {
            ["p50", "p99", "p99.9"]
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let v = cells
                        .iter()
                        .map(|c| c.3.get(i).copied().unwrap_or(0.0))
                        .collect();
                    ((*name).to_owned(), v)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if !lat.is_empty() {
        let svg = grouped_bars("Latency (µs, log scale)", brokers, &lat, true);
        std::fs::write(dir.join("latency.svg"), svg)?;
    }
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JSON by hand as well: strings are escaped, numbers finite.
pub(crate) fn json(brokers: &[String], rows: &[Row]) -> String {
    let q = |s: &str| {
        let mut o = String::from("\"");
        for ch in s.chars() {
            match ch {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(o, "\\u{:04x}", c as u32);
                }
                c => o.push(c),
            }
        }
        o.push('"');
        o
    };
    let num = |v: f64| {
        if v.is_finite() {
            format!("{v}")
        } else {
            "null".into()
        }
    };
    let mut out = String::from("{\"brokers\":[");
    out.push_str(&brokers.iter().map(|b| q(b)).collect::<Vec<_>>().join(","));
    out.push_str("],\"rows\":[");
    let rows_json: Vec<String> = rows
        .iter()
        .map(|(sc, qos, cells)| {
            let cells_json: Vec<String> = cells
                .iter()
                .map(|(b, v, d, extra)| {
                    format!(
                        "{{\"broker\":{},\"value\":{},\"detail\":{},\"latency_us\":[{}]}}",
                        q(b),
                        num(*v),
                        q(d),
                        extra.iter().map(|x| num(*x)).collect::<Vec<_>>().join(",")
                    )
                })
                .collect();
            format!(
                "{{\"scenario\":{},\"qos\":{},\"results\":[{}]}}",
                q(sc),
                q(qos),
                cells_json.join(",")
            )
        })
        .collect();
    out.push_str(&rows_json.join(","));
    out.push_str("]}\n");
    out
}

/// Groups of bars (one group per label, one bar per broker), on a log scale when `log`.
fn grouped_bars(
    title: &str,
    brokers: &[String],
    groups: &[(String, Vec<f64>)],
    log: bool,
) -> String {
    let (left, top, bottom, right) = (70.0, 40.0, 90.0, 20.0);
    let group_w = 30.0 * brokers.len().max(1) as f64 + 30.0;
    // Wide enough for the title and the legend, whatever the number of groups.
    let width = (left + right + group_w * groups.len().max(1) as f64).max(380.0);
    let height = 360.0;
    let plot_h = height - top - bottom;
    let max = groups
        .iter()
        .flat_map(|g| g.1.iter().copied())
        .fold(1.0_f64, f64::max);
    let scale = |v: f64| -> f64 {
        if v <= 0.0 {
            return 0.0;
        }
        if log {
            (v.max(1.0).log10() / max.log10().ceil().max(1.0)) * plot_h
        } else {
            v / max * plot_h
        }
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{:.0}\" y=\"22\" font-size=\"14\">{}</text>",
        left,
        escape(title)
    );
    // Axis with decades (log) or quarters (linear).
    let ticks: Vec<f64> = if log {
        (0..=(max.log10().ceil() as i32))
            .map(|e| 10f64.powi(e))
            .collect()
    } else {
        (0..=4).map(|i| max * f64::from(i) / 4.0).collect()
    };
    for t in ticks {
        let y = top + plot_h - scale(t);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.0}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            width - right,
            left - 4.0,
            y + 4.0,
            human(t)
        );
    }
    for (gi, (label, values)) in groups.iter().enumerate() {
        let x0 = left + gi as f64 * group_w + 15.0;
        for (bi, v) in values.iter().enumerate() {
            let h = scale(*v);
            let x = x0 + bi as f64 * 30.0;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"26\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {}</title></rect>",
                top + plot_h - h,
                PALETTE[bi % PALETTE.len()],
                escape(brokers.get(bi).map_or("", String::as_str)),
                human(*v)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + 15.0 * values.len() as f64,
            top + plot_h + 16.0,
            escape(label)
        );
    }
    for (bi, b) in brokers.iter().enumerate() {
        let y = height - bottom + 40.0 + 14.0 * bi as f64;
        let _ = write!(
            s,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\">{}</text>",
            y - 9.0,
            PALETTE[bi % PALETTE.len()],
            left + 14.0,
            y,
            escape(b)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_svg_hold_every_result() {
        let brokers = vec!["petrel".to_owned(), "mosquitto".to_owned()];
        let rows: Vec<Row> = vec![
            (
                "pairs".into(),
                "0".into(),
                vec![
                    ("petrel".into(), 2.5e6, "2.5M \"msg\"/s".into(), vec![]),
                    ("mosquitto".into(), 1.7e5, "170k".into(), vec![]),
                ],
            ),
            (
                "latency".into(),
                "0".into(),
                vec![
                    (
                        "petrel".into(),
                        90.0,
                        "p99 90".into(),
                        vec![40.0, 90.0, 200.0],
                    ),
                    (
                        "mosquitto".into(),
                        300.0,
                        "p99 300".into(),
                        vec![100.0, 300.0, 900.0],
                    ),
                ],
            ),
        ];
        let j = json(&brokers, &rows);
        assert!(
            j.contains("\"value\":2500000") && j.contains("2.5M \\\"msg\\\"/s"),
            "{j}"
        );
        assert!(j.contains("\"latency_us\":[40,90,200]"), "{j}");
        let d = tempfile_dir();
        write(&d, &brokers, &rows).unwrap();
        let t = std::fs::read_to_string(d.join("throughput.svg")).unwrap();
        assert_eq!(
            t.matches("<rect x=").count(),
            2 + 2,
            "two bars, two legend boxes: {t}"
        );
        assert!(t.contains("pairs qos0") && t.contains("2.5M"));
        let l = std::fs::read_to_string(d.join("latency.svg")).unwrap();
        assert!(l.contains("p99.9") && l.contains("900"));
        let _ = std::fs::remove_dir_all(&d);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("petrel-load-charts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
