//! The results of `weftctl bench` as a table and as JSON.
//!
//! Contract: one block per [`super::METRICS`] entry, one line per configuration: the median
//! of its repetitions, (min..max), and the median's ratio to kernel VXLAN's median (`-` when
//! kernel VXLAN has no figure or its figure is 0). A configuration without a figure shows
//! `n/a:` and the reason on one line of at most [`REASON_WIDTH`] characters; one with figures
//! whose workload also failed in some repetition gets a `(failed once: ...)` line. The JSON
//! holds the same per metric (samples, median, min, max, ratio) plus the whole errors.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::{median, Config, Metric, Row, METRICS};
use crate::testbed::Options;

/// The widest reason shown in the table (the JSON has the whole error).
const REASON_WIDTH: usize = 150;
/// Width of the configuration column.
const LABEL_WIDTH: usize = 20;

/// The kernel VXLAN row's label.
const KERNEL: &str = "kernel-vxlan";

/// The whole table, with a heading that says how it was measured.
pub fn table(rows: &[Row], config: &Config) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "weftctl bench: pod a -> pod b on a two-node testbed, {} s per throughput run, idle {} s, \
         {} repetition(s); median (min..max), x kernel = median / kernel VXLAN's median",
        config.seconds(),
        config.idle_seconds(),
        config.reps
    );
    let _ = writeln!(
        t,
        "underlay: veth MTU 1500, {}; machine: {}",
        describe(config.options),
        machine()
    );
    for metric in &METRICS {
        if !config.selected(metric.workload) {
            continue;
        }
        t.push('\n');
        t.push_str(&block(rows, metric));
    }
    t
}

/// One metric's block.
pub fn block(rows: &[Row], metric: &Metric) -> String {
    let kernel = kernel_median(rows, metric);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} ({} is better)",
        metric.title,
        if metric.higher_is_better {
            "higher"
        } else {
            "lower"
        }
    );
    let _ = writeln!(
        t,
        "  {:<LABEL_WIDTH$} {:>10}  {:<23} {:>8}",
        "configuration", "median", "(min..max)", "x kernel"
    );
    for row in rows {
        let values = row.values(metric.key);
        match (median(values), min_max(values)) {
            (Some(m), Some((min, max))) => {
                let ratio = ratio(m, kernel).map_or("-".to_owned(), |r| format!("{r:.2}"));
                let range = format!("({}..{})", number(min), number(max));
                let _ = writeln!(
                    t,
                    "  {:<LABEL_WIDTH$} {:>10}  {range:<23} {ratio:>8}",
                    row.path,
                    number(m)
                );
                if let Some(why) = row.reason(metric) {
                    let _ = writeln!(t, "  {:<LABEL_WIDTH$} (failed once: {})", "", one_line(why));
                }
            }
            _ => {
                let why = one_line(row.reason(metric).unwrap_or("not measured"));
                let _ = writeln!(t, "  {:<LABEL_WIDTH$} {:>10}  n/a: {why}", row.path, "-");
            }
        }
    }
    t
}

/// A figure with as many decimals as its size deserves.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 || a == 0.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.5}")
    }
}

fn kernel_median(rows: &[Row], metric: &Metric) -> Option<f64> {
    rows.iter()
        .find(|r| r.path == KERNEL)
        .and_then(|r| r.median(metric.key))
}

fn ratio(value: f64, kernel: Option<f64>) -> Option<f64> {
    kernel.filter(|k| *k > 0.0).map(|k| value / k)
}

fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// A multi-line error as one table line of at most [`REASON_WIDTH`] characters.
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    if joined.chars().count() <= REASON_WIDTH {
        joined
    } else {
        let cut: String = joined.chars().take(REASON_WIDTH - 3).collect();
        format!("{cut}...")
    }
}

/// The veth set-up in words.
pub fn describe(options: Options) -> String {
    format!(
        "tx checksum offload {}, GRO {}",
        if options.veth_tx_offload { "on" } else { "off" },
        if options.veth_gro { "on" } else { "off" }
    )
}

/// Cores, CPU model and kernel.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "{cores} cores, {model}, Linux {}",
        command_output("uname", &["-r"])
    )
}

/// The JSON file's shape.
#[derive(Debug, Serialize)]
struct Report<'a> {
    command: String,
    date: String,
    machine: String,
    seconds_per_run: u32,
    idle_seconds: u32,
    reps: usize,
    underlay: String,
    rows: Vec<JsonRow<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    path: &'a str,
    figures: Vec<JsonFigure<'a>>,
    errors: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct JsonFigure<'a> {
    metric: &'static str,
    workload: &'static str,
    samples: &'a [f64],
    median: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    ratio_to_kernel_vxlan: Option<f64>,
    higher_is_better: bool,
    /// Why the figure is missing, or why a repetition failed.
    reason: Option<&'a str>,
}

/// Writes the results as JSON to `path`.
pub fn write_json(path: &Path, rows: &[Row], config: &Config) -> anyhow::Result<()> {
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        machine: machine(),
        seconds_per_run: config.seconds(),
        idle_seconds: config.idle_seconds(),
        reps: config.reps,
        underlay: describe(config.options),
        rows: rows
            .iter()
            .map(|row| JsonRow {
                path: &row.path,
                figures: METRICS
                    .iter()
                    .filter(|m| config.selected(m.workload))
                    .map(|m| {
                        let values = row.values(m.key);
                        let med = median(values);
                        JsonFigure {
                            metric: m.key,
                            workload: m.workload.name(),
                            samples: values,
                            median: med,
                            min: min_max(values).map(|x| x.0),
                            max: min_max(values).map(|x| x.1),
                            ratio_to_kernel_vxlan: med
                                .and_then(|v| ratio(v, kernel_median(rows, m))),
                            higher_is_better: m.higher_is_better,
                            reason: row.reason(m),
                        }
                    })
                    .collect(),
                errors: &row.errors,
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&report).context("serialising the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::{Workload, SETUP};
    use super::*;

    fn row(path: &str, key: &str, samples: &[f64]) -> Row {
        let mut r = Row::new(path.to_owned());
        for &s in samples {
            r.push(key, s);
        }
        r
    }

    #[test]
    fn blocks_show_ratios_and_reasons() {
        let metric = METRICS[0];
        assert_eq!(metric.key, "tcp1_gbit_s");
        let mut failed = row("weft-udp-uring-1t", "x", &[]);
        failed.errors.insert(
            SETUP.to_owned(),
            format!("no weftd binary\n  more: {}", "x".repeat(300)),
        );
        let mut flaky = row("weft-udp-poll-1t", "tcp1_gbit_s", &[5.0]);
        flaky.errors.insert(
            Workload::Tcp1.name().to_owned(),
            "iperf3: timeout".to_owned(),
        );
        let t = block(
            &[
                row("kernel-vxlan", "tcp1_gbit_s", &[10.0, 12.0, 14.0]),
                row("forwarder", "tcp1_gbit_s", &[1.0, 1.2, 0.8]),
                failed,
                flaky,
            ],
            &metric,
        );
        assert!(t.contains("Gbit/s (higher is better)"), "{t}");
        assert!(
            t.contains("  kernel-vxlan              12.00  (10.00..14.00)              1.00\n"),
            "{t}"
        );
        assert!(t.contains("(0.800..1.20)"), "{t}");
        assert!(t.contains("0.08\n"), "{t}");
        assert!(t.contains("n/a: no weftd binary / more: xxx"), "{t}");
        assert!(t.contains("(failed once: iperf3: timeout)"), "{t}");
        assert!(t.lines().all(|l| l.len() < 200), "{t}");
    }

    #[test]
    fn no_ratio_against_a_zero_or_missing_kernel_figure() {
        assert_eq!(ratio(1.0, Some(0.0)), None);
        assert_eq!(ratio(1.0, None), None);
        assert_eq!(ratio(1.0, Some(4.0)), Some(0.25));
        assert_eq!(number(12345.6), "12346");
        assert_eq!(number(0.0), "0.00");
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(0.000_42), "0.00042");
    }
}
