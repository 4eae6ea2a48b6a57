//! TCP throughput (iperf3, 1 or more parallel streams) and the CPU it costs; the iperf3
//! runner shared with [`super::udp_rate`].
//!
//! Contract: [`iperf`] runs `iperf3 -s -1` in node b's pod and `iperf3 -c ... -J` from node
//! a's pod for `seconds`, and returns iperf3's JSON report (an error when iperf3 reports one,
//! prints no JSON, or an overlay process died meanwhile). [`tcp`] measures the receiver's rate;
//! with `cpu` it also takes [`super::cpu::Snapshot`]s around the client (whole machine and the
//! overlay processes) and reports CPU seconds per GB received.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::cpu;
use crate::testbed::{traffic, Testbed};

/// iperf3's default port.
const IPERF_PORT: u16 = 5201;
/// Extra time iperf3 gets beyond the test duration before it is killed.
const IPERF_SLACK: Duration = Duration::from_secs(20);

/// What one TCP run measured.
#[derive(Debug, Clone, Copy)]
pub struct Tcp {
    /// Receiver's rate, Gbit/s.
    pub gbit_s: f64,
    /// TCP retransmissions (sender).
    pub retransmits: u64,
    /// Whole-machine busy CPU seconds per GB received, when asked for.
    pub machine_s_per_gb: Option<f64>,
    /// The overlay processes' CPU seconds per GB received (none for kernel VXLAN).
    pub daemon_s_per_gb: Option<f64>,
    /// How busy the whole machine was meanwhile, % of all its cores.
    pub machine_busy_pct: Option<f64>,
}

/// `streams` parallel TCP streams for `seconds`; with `cpu`, the CPU cost too (`pids`: the
/// overlay processes).
pub fn tcp(
    bed: &mut Testbed,
    streams: u32,
    seconds: u32,
    cpu: bool,
    pids: &[u32],
) -> anyhow::Result<Tcp> {
    let label = format!("tcp{streams}");
    let server = start_server(bed, &label)?;
    let before = if cpu {
        Some(cpu::Snapshot::take(pids)?)
    } else {
        None
    };
    let report = client(bed, &label, server, seconds, &["-P", &streams.to_string()])?;
    let delta = match before {
        Some(b) => Some(cpu::Snapshot::take(pids)?.since(&b)),
        None => None,
    };
    let end = &report["end"];
    let received = &end["sum_received"];
    let gbit_s = received_gbit_s(&report)?;
    let bytes = received["bytes"]
        .as_f64()
        .context("no end.sum_received.bytes in iperf3's report")?;
    let gb = (bytes / 1e9).max(1e-9);
    Ok(Tcp {
        gbit_s,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        machine_s_per_gb: delta.map(|d| d.machine_busy_s / gb),
        daemon_s_per_gb: delta.filter(|_| !pids.is_empty()).map(|d| d.process_s / gb),
        machine_busy_pct: delta.map(|d| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            d.machine_busy_s / d.wall.as_secs_f64().max(1e-9) / cores * 100.0
        }),
    })
}

/// The receiver's rate in a TCP report, Gbit/s.
pub fn received_gbit_s(report: &serde_json::Value) -> anyhow::Result<f64> {
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in iperf3's report")?;
    Ok(bps / 1e9)
}

/// One iperf3 test with `args` added to the client's; returns the client's JSON report.
pub fn iperf(
    bed: &mut Testbed,
    label: &str,
    seconds: u32,
    args: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let server = start_server(bed, label)?;
    client(bed, label, server, seconds, args)
}

/// Starts `iperf3 -s -1` in node b's pod and waits until it listens.
fn start_server(bed: &mut Testbed, label: &str) -> anyhow::Result<usize> {
    let server_ip = bed.node(1).pod_ip().to_string();
    let server = bed.spawn(
        1,
        &format!("iperf3-server-{label}"),
        &PathBuf::from("iperf3"),
        &["-s", "-1", "-B", &server_ip].map(str::to_owned),
    )?;
    traffic::wait_for_port(bed.node(1).ns(), false, IPERF_PORT, Duration::from_secs(5))?;
    Ok(server)
}

/// Runs the client against `server` and parses its report.
fn client(
    bed: &mut Testbed,
    label: &str,
    server: usize,
    seconds: u32,
    args: &[&str],
) -> anyhow::Result<serde_json::Value> {
    let server_ip = bed.node(1).pod_ip().to_string();
    let client_ip = bed.node(0).pod_ip().to_string();
    let seconds_s = seconds.to_string();
    let mut all = vec![
        "-c",
        &server_ip,
        "-B",
        &client_ip,
        "-t",
        &seconds_s,
        "-J",
        "--connect-timeout",
        "5000",
    ];
    all.extend_from_slice(args);
    let all: Vec<String> = all.into_iter().map(str::to_owned).collect();
    let client = bed.spawn(
        0,
        &format!("iperf3-client-{label}"),
        &PathBuf::from("iperf3"),
        &all,
    )?;
    let status = bed
        .process(client)
        .wait(Duration::from_secs(seconds.into()) + IPERF_SLACK)?;
    let out = bed.process(client).log();
    bed.check_alive()?;
    if bed.process(server).wait(Duration::from_secs(2)).is_err() {
        bed.process(server).stop();
    }
    let json_start = out
        .find('{')
        .with_context(|| format!("iperf3 printed no JSON ({status}):\n{out}"))?;
    let report: serde_json::Value = serde_json::from_str(&out[json_start..])
        .with_context(|| format!("iperf3's output is not JSON ({status}):\n{out}"))?;
    if let Some(err) = report.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    Ok(report)
}
