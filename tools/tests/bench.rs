//! The bench harness runs end to end: one quick kernel VXLAN and forwarder measurement each
//! yields a positive rate, and a data path that cannot run is reported, not fatal. No
//! threshold: a benchmark is never a timed test.

mod common;

use weftctl::bench;
use weftctl::privileges;
use weftctl::require_root;
use weftctl::testbed::{Binaries, Options};

#[test]
fn bench_measures_kernel_vxlan_and_the_forwarder() {
    require_root!();
    if !privileges::on_path("iperf3") {
        privileges::skip(
            "bench_measures_kernel_vxlan_and_the_forwarder",
            "iperf3 is not installed",
        );
        return;
    }
    let config = bench::Config {
        quick: true,
        reps: 1,
        json: None,
        only: vec![
            "kernel-vxlan".to_owned(),
            "forwarder".to_owned(),
            "weft-udp-poll".to_owned(),
        ],
        binaries: Binaries {
            weftd: Some("/nonexistent/weftd".into()),
            ..common::binaries()
        },
        options: Options::default(),
    };
    let rows = bench::run(&config).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(rows.len(), 3);
    for row in &rows[..2] {
        assert!(row.error.is_none(), "{}: {:?}", row.path, row.error);
        assert!(
            row.median().is_some_and(|m| m > 0.0),
            "{}: no rate",
            row.path
        );
    }
    assert!(rows[2].error.is_some(), "a missing weftd was not reported");
    assert!(rows[2].samples_gbit_s.is_empty());
}
