//! CI smoke test of `weftctl bench`: the real binary, `--quick --reps 1` with 1-second runs
//! and a 2-second idle, over every configuration and the default workloads (`sizes` and
//! `nodrop` run in the second test, on the forwarder). The JSON must parse and every
//! configuration must have, for every metric, a figure or a reason. No threshold on any
//! figure: a benchmark is never a timed test. Also: a missing weftd is reported, not fatal.

mod common;

use std::process::Command;

use weft_testkit::privileges;
use weft_testkit::require_root;
use weftctl::bench::{self, METRICS};
use weftctl::testbed::{Binaries, Options};

#[test]
fn bench_quick_runs_every_configuration_and_workload() {
    require_root!();
    if !privileges::on_path("iperf3") {
        privileges::skip(
            "bench_quick_runs_every_configuration_and_workload",
            "iperf3 is not installed",
        );
        return;
    }
    let binaries = common::binaries();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json_path = dir.path().join("bench.json");
    let mut cmd = Command::new(&binaries.weftctl);
    cmd.args(["bench", "--quick", "--reps", "1", "--seconds", "1"])
        .args(["--idle-seconds", "2", "--json"])
        .arg(&json_path);
    if let Some(weftd) = &binaries.weftd {
        cmd.arg("--weftd").arg(weftd);
    }
    let out = cmd.output().expect("running weftctl bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weftctl bench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json_path).expect("the JSON file was written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("the JSON parses");
    let rows = report["rows"].as_array().expect("rows");
    let labels: Vec<String> = bench::all_setups().iter().map(|s| s.label()).collect();
    assert_eq!(
        rows.iter()
            .map(|r| r["path"].as_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>(),
        labels,
        "{stdout}"
    );
    for row in rows {
        let path = row["path"].as_str().unwrap_or("?");
        let figures = row["figures"].as_array().expect("figures");
        let default_metrics = METRICS.iter().filter(|m| m.workload.by_default()).count();
        assert_eq!(figures.len(), default_metrics, "{path}");
        for f in figures {
            let has_figure = f["median"].as_f64().is_some_and(f64::is_finite);
            let has_reason = f["reason"].as_str().is_some_and(|r| !r.is_empty());
            assert!(
                has_figure || has_reason,
                "{path}: {} has neither a figure nor a reason\n{stdout}\n{stderr}",
                f["metric"]
            );
        }
    }
    // The kernel's own figures are always there (it needs nothing of ours).
    let kernel = &rows[0]["figures"];
    for key in [
        "tcp1_gbit_s",
        "tcp4_gbit_s",
        "udp1400_rx_kpps",
        "rr_median_us",
    ] {
        let f = kernel
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["metric"] == key))
            .unwrap_or_else(|| panic!("kernel-vxlan has no {key}"));
        assert!(
            f["median"].as_f64().is_some_and(|m| m > 0.0),
            "kernel-vxlan {key}: {f}\n{stderr}"
        );
    }
    for part in [
        "TCP 1 stream, Gbit/s",
        "ping, p99 us",
        "x kernel",
        "weft-vxlan-poll-2t",
    ] {
        assert!(stdout.contains(part), "the table lacks {part:?}:\n{stdout}");
    }
}

#[test]
fn bench_reports_a_missing_weftd_and_measures_the_rest() {
    require_root!();
    if !privileges::on_path("iperf3") {
        privileges::skip(
            "bench_reports_a_missing_weftd_and_measures_the_rest",
            "iperf3 is not installed",
        );
        return;
    }
    let config = bench::Config {
        quick: true,
        seconds: Some(1),
        idle_seconds: Some(1),
        reps: 1,
        json: None,
        only: vec!["forwarder".to_owned(), "weft-udp-poll-1t".to_owned()],
        workloads: vec![
            bench::Workload::Idle,
            bench::Workload::Tcp1,
            bench::Workload::Sizes,
            bench::Workload::NoDrop,
        ],
        binaries: Binaries {
            weftd: Some("/nonexistent/weftd".into()),
            ..common::binaries()
        },
        options: Options::default(),
    };
    let rows = bench::run(&config).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(rows.len(), 2);
    assert!(rows[0].errors.is_empty(), "{:?}", rows[0].errors);
    for key in [
        "tcp1_gbit_s",
        "cpu_daemon_s_per_gb",
        "idle_pct_core",
        "tcp_mss88_gbit_s",
        "udp1024_rx_kpps",
        "nodrop1400_kpps",
    ] {
        assert!(rows[0].median(key).is_some(), "forwarder: no {key}");
    }
    assert!(
        rows[1].errors.contains_key(bench::SETUP),
        "a missing weftd was not reported: {:?}",
        rows[1].errors
    );
    assert!(rows[1].samples.is_empty());
}
