//! `make bench`: Gradebook's benchmark suite. Starts real processes of the
//! release binary on loopback and prints one table of figures.
//!
//! Usage: bench [SECTION...]   sections: registry, fleet, log, grading, portal, original (default: all)

mod fleet;
mod grading;
mod load;
mod log;
mod original;
mod portal;
mod registry;

use std::time::Duration;

/// p50/p99/max of a sample, in milliseconds.
pub fn percentiles(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})", ms(at(0.5)), ms(at(0.99)), ms(at(1.0)), samples.len())
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Resident set size of a process in MB, from /proc.
pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub struct Row {
    pub what: String,
    pub figure: String,
}

pub fn row(what: impl Into<String>, figure: impl Into<String>) -> Row {
    let row = Row { what: what.into(), figure: figure.into() };
    eprintln!("  {}: {}", row.what, row.figure);
    row
}

/// Runs one part of the benchmark and returns its rows.
type Section = fn() -> futures::future::BoxFuture<'static, Vec<Row>>;

#[tokio::main]
async fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let all = wanted.is_empty();
    let sections: [(&str, Section); 6] = [
        ("registry", || Box::pin(registry::run())),
        ("fleet", || Box::pin(fleet::run())),
        ("log", || Box::pin(log::run())),
        ("grading", || Box::pin(grading::run())),
        ("portal", || Box::pin(portal::run())),
        ("original", || Box::pin(original::run())),
    ];
    let mut rows = vec![];
    for (name, run) in sections {
        if all || wanted.iter().any(|w| w == name) {
            eprintln!("{name} …");
            rows.extend(run().await);
        }
    }
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    println!("\n| {:width$} | figure |\n|{}|--------|", "measure", "-".repeat(width + 2));
    for r in rows {
        println!("| {:width$} | {} |", r.what, r.figure);
    }
}
