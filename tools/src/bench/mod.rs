//! `weftctl bench`: single-stream TCP throughput of each data path on the same testbed.
//!
//! Contract: for each repetition, every selected data path in turn (so slow drifts of the
//! machine spread over all of them) gets a fresh two-node testbed with that overlay on both
//! nodes, an `iperf3 -s` in node b's pod and `iperf3 -c` from node a's pod for the duration
//! (10 s, 3 s with `--quick`). The result is the receiver's rate. The table gives, per data
//! path, the median with (min..max) and the ratio of the median to kernel VXLAN's median in
//! the same run. A data path that cannot run (no weftd, weftd fails to start) is reported
//! with the reason and skipped for the remaining repetitions; the other rows still run.
//! Testbeds are removed on every exit; the binary installs a SIGINT / SIGTERM handler that
//! calls [`crate::testbed::netns::cleanup_all`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::peers::Backend;
use crate::testbed::{traffic, Binaries, IoDriver, Options, Overlay, Testbed};

/// iperf3's default port.
const IPERF_PORT: u16 = 5201;
/// Test duration, full run.
const FULL_SECONDS: u32 = 10;
/// Test duration with `--quick`.
const QUICK_SECONDS: u32 = 3;
/// The widest reason shown in the table (the JSON has the whole error).
const REASON_WIDTH: usize = 160;
/// Extra time iperf3 gets beyond the test duration before it is killed.
const IPERF_SLACK: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// 3 s per measurement instead of 10 s.
    pub quick: bool,
    /// Measurements per data path.
    pub reps: usize,
    /// Where to write the results as JSON.
    pub json: Option<PathBuf>,
    /// Only these data paths (labels as in the table); all when empty.
    pub only: Vec<String>,
    /// The programs to run.
    pub binaries: Binaries,
    /// How the testbed's veths are set up.
    pub options: Options,
}

/// The data paths measured, in table order.
pub fn all_overlays() -> Vec<Overlay> {
    let mut v = vec![Overlay::KernelVxlan, Overlay::Forwarder];
    for backend in [Backend::Udp, Backend::Vxlan] {
        for driver in [IoDriver::Uring, IoDriver::Poll] {
            v.push(Overlay::Weftd { backend, driver });
        }
    }
    v
}

/// One row of results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The data path (`kernel-vxlan`, `forwarder`, `weft-udp-uring`, ...).
    pub path: String,
    /// Every measurement, Gbit/s, in the order taken.
    pub samples_gbit_s: Vec<f64>,
    /// TCP retransmissions of each measurement.
    pub retransmits: Vec<u64>,
    /// Why the data path could not be measured (or stopped being measured).
    pub error: Option<String>,
}

impl Row {
    /// The median of the samples.
    pub fn median(&self) -> Option<f64> {
        let mut s = self.samples_gbit_s.clone();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        Some(if s.len() % 2 == 1 {
            s[mid]
        } else {
            (s[mid - 1] + s[mid]) / 2.0
        })
    }

    fn min_max(&self) -> Option<(f64, f64)> {
        let min = self.samples_gbit_s.iter().copied().reduce(f64::min)?;
        let max = self.samples_gbit_s.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }
}

/// The JSON file's shape.
#[derive(Debug, Serialize)]
struct Report<'a> {
    command: String,
    date: String,
    kernel: String,
    seconds_per_sample: u32,
    reps: usize,
    underlay: String,
    rows: Vec<JsonRow<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    row: &'a Row,
    median_gbit_s: Option<f64>,
    ratio_to_kernel_vxlan: Option<f64>,
}

/// Runs the benchmark, prints the table and returns the rows.
pub fn run(config: &Config) -> anyhow::Result<Vec<Row>> {
    if config.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if let Some(reason) = crate::privileges::missing() {
        bail!("cannot build a testbed: {reason}");
    }
    if !crate::privileges::on_path("iperf3") {
        bail!("iperf3 is not installed (apt-get install iperf3)");
    }
    let overlays: Vec<Overlay> = all_overlays()
        .into_iter()
        .filter(|o| config.only.is_empty() || config.only.contains(&o.label()))
        .collect();
    if overlays.is_empty() {
        bail!(
            "--only matches no data path; choose from: {}",
            all_overlays()
                .iter()
                .map(Overlay::label)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let seconds = if config.quick {
        QUICK_SECONDS
    } else {
        FULL_SECONDS
    };
    let mut rows: Vec<Row> = overlays
        .iter()
        .map(|o| Row {
            path: o.label(),
            samples_gbit_s: Vec::new(),
            retransmits: Vec::new(),
            error: None,
        })
        .collect();
    for rep in 1..=config.reps {
        for (overlay, row) in overlays.iter().zip(rows.iter_mut()) {
            if row.error.is_some() {
                continue;
            }
            eprint!("bench: rep {rep}/{}: {:<18} ", config.reps, row.path);
            match measure(&config.binaries, config.options, *overlay, seconds) {
                Ok((gbit, retransmits)) => {
                    eprintln!("{gbit:7.2} Gbit/s ({retransmits} retransmits)");
                    row.samples_gbit_s.push(gbit);
                    row.retransmits.push(retransmits);
                }
                Err(e) => {
                    eprintln!("failed: {e:#}");
                    row.error = Some(format!("{e:#}"));
                }
            }
        }
    }
    println!("{}", table(&rows, seconds, config.reps, config.options));
    if let Some(path) = &config.json {
        write_json(path, &rows, seconds, config.reps, config.options)?;
        eprintln!("bench: results written to {}", path.display());
    }
    Ok(rows)
}

/// One iperf3 run on a fresh testbed: (Gbit/s at the receiver, retransmits).
fn measure(
    binaries: &Binaries,
    options: Options,
    overlay: Overlay,
    seconds: u32,
) -> anyhow::Result<(f64, u64)> {
    let mut bed = Testbed::with_options(2, binaries.clone(), options)?;
    bed.start(&[overlay, overlay])?;
    let iperf = PathBuf::from("iperf3");
    let server_ip = bed.node(1).pod_ip().to_string();
    let client_ip = bed.node(0).pod_ip().to_string();
    let server = bed.spawn(
        1,
        "iperf3-server",
        &iperf,
        &["-s", "-1", "-B", &server_ip].map(str::to_owned),
    )?;
    traffic::wait_for_port(bed.node(1).ns(), false, IPERF_PORT, Duration::from_secs(5))?;
    // Make sure the path works (and neighbours are resolved) before timing it.
    traffic::ping(bed.node(0).pod(), bed.node(1).pod_ip(), 2, None)?;
    let client = bed.spawn(
        0,
        "iperf3-client",
        &iperf,
        &[
            "-c",
            &server_ip,
            "-B",
            &client_ip,
            "-t",
            &seconds.to_string(),
            "-J",
            "--connect-timeout",
            "5000",
        ]
        .map(str::to_owned),
    )?;
    let status = bed
        .process(client)
        .wait(Duration::from_secs(seconds.into()) + IPERF_SLACK)?;
    let out = bed.process(client).log();
    bed.check_alive()?;
    let _ = bed.process(server).wait(Duration::from_secs(2));
    let json_start = out
        .find('{')
        .with_context(|| format!("iperf3 printed no JSON ({status}):\n{out}"))?;
    let report: serde_json::Value = serde_json::from_str(&out[json_start..])
        .with_context(|| format!("iperf3's output is not JSON ({status}):\n{out}"))?;
    if let Some(err) = report.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    let end = &report["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| {
            format!("no end.sum_received.bits_per_second in iperf3's report ({status})")
        })?;
    let retransmits = end["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    Ok((bps / 1e9, retransmits))
}

/// The results table.
pub fn table(rows: &[Row], seconds: u32, reps: usize, options: Options) -> String {
    let kernel = rows
        .iter()
        .find(|r| r.path == Overlay::KernelVxlan.label())
        .and_then(Row::median);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "TCP single stream, pod a -> pod b, iperf3 {seconds} s x {reps}; Gbit/s median (min..max)"
    );
    let _ = writeln!(t, "underlay: veth MTU 1500, {}", describe(options));
    let _ = writeln!(
        t,
        "{:<18} {:>8}  {:<17} {:>10}",
        "data path", "median", "(min..max)", "x kernel"
    );
    for row in rows {
        match (row.median(), row.min_max()) {
            (Some(median), Some((min, max))) => {
                let ratio = kernel.map_or("-".to_owned(), |k| format!("{:.2}", median / k));
                let range = format!("({min:.2}..{max:.2})");
                let _ = writeln!(t, "{:<18} {median:>8.2}  {range:<17} {ratio:>10}", row.path);
            }
            _ => {
                let why = one_line(row.error.as_deref().unwrap_or("no sample"));
                let _ = writeln!(t, "{:<18} {:>8}  n/a: {why}", row.path, "-");
            }
        }
        if let (Some(e), false) = (&row.error, row.samples_gbit_s.is_empty()) {
            let _ = writeln!(t, "{:<18} (stopped: {})", "", one_line(e));
        }
    }
    t
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

fn write_json(
    path: &PathBuf,
    rows: &[Row],
    seconds: u32,
    reps: usize,
    options: Options,
) -> anyhow::Result<()> {
    let kernel = rows
        .iter()
        .find(|r| r.path == Overlay::KernelVxlan.label())
        .and_then(Row::median);
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        kernel: command_output("uname", &["-r"]),
        seconds_per_sample: seconds,
        reps,
        underlay: describe(options),
        rows: rows
            .iter()
            .map(|row| JsonRow {
                row,
                median_gbit_s: row.median(),
                ratio_to_kernel_vxlan: row.median().zip(kernel).map(|(m, k)| m / k),
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
    use super::*;

    fn row(path: &str, samples: &[f64]) -> Row {
        Row {
            path: path.to_owned(),
            samples_gbit_s: samples.to_vec(),
            retransmits: vec![0; samples.len()],
            error: None,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(row("x", &[3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(row("x", &[4.0, 1.0, 2.0, 3.0]).median(), Some(2.5));
        assert_eq!(row("x", &[]).median(), None);
    }

    #[test]
    fn table_shows_ratios_and_errors() {
        let mut failed = row("weft-udp-uring", &[]);
        failed.error = Some(format!("no weftd binary\n  more: {}", "x".repeat(300)));
        let t = table(
            &[
                row("kernel-vxlan", &[10.0, 12.0, 14.0]),
                row("forwarder", &[1.0, 1.2, 0.8]),
                failed,
            ],
            3,
            3,
            Options::default(),
        );
        assert!(
            t.contains("kernel-vxlan          12.00  (10.00..14.00)          1.00"),
            "{t}"
        );
        assert!(t.contains("0.08"), "{t}");
        assert!(t.contains("n/a: no weftd binary / more: xxx"), "{t}");
        assert!(t.lines().all(|l| l.len() < 200), "{t}");
    }
}
