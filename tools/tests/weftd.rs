//! The data path end to end: two weftd nodes, udp and vxlan backends, each with the io_uring
//! and the poll driver, pass the full check (ping both ways at default size and full MTU,
//! UDP datagrams of assorted sizes up to the MTU, a verified 1 GiB TCP stream each way; IPv4
//! and IPv6 inner traffic), and weftd's counters agree with what was sent.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`;
//! `tools/test.sh` does).

mod common;

use engine::config::DriverArg;
use engine::model::Backend;
use weftctl::control;
use weftctl::require_root;
use weftctl::testbed::{Overlay, Testbed};

fn two_weftd_nodes(backend: Backend, driver: DriverArg) {
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let overlay = Overlay::Weftd { backend, driver };
    bed.start(&[overlay, overlay]).expect("weftd on both nodes");
    common::full_check(&mut bed);
    for node in 0..2 {
        let stats = bed
            .control(node, "stats")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            stats.get("driver").and_then(|d| d.as_str()),
            Some(driver.as_str()),
            "node {node} runs another I/O driver than asked: {stats}"
        );
        let stream = common::stream_bytes();
        for name in [
            "tun_rx_bytes",
            "udp_tx_bytes",
            "udp_rx_bytes",
            "tun_tx_bytes",
        ] {
            let n = control::counter(&stats, name);
            assert!(
                n >= stream,
                "node {node}: {name} = {n}, less than one stream of {stream}: {stats}"
            );
        }
        let peers = stats
            .get("peers")
            .and_then(|p| p.as_array())
            .cloned()
            .unwrap_or_default();
        assert_eq!(peers.len(), 1, "node {node}: one peer expected: {stats}");
        let tx = peers[0]
            .get("tx_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let rx = peers[0]
            .get("rx_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        assert!(
            tx >= stream && rx >= stream,
            "node {node}: peer counters too small: {stats}"
        );
    }
}

#[test]
fn udp_backend_uring() {
    require_root!();
    two_weftd_nodes(Backend::Udp, DriverArg::Uring);
}

#[test]
fn udp_backend_poll() {
    require_root!();
    two_weftd_nodes(Backend::Udp, DriverArg::Poll);
}

#[test]
fn vxlan_backend_uring() {
    require_root!();
    two_weftd_nodes(Backend::Vxlan, DriverArg::Uring);
}

#[test]
fn vxlan_backend_poll() {
    require_root!();
    two_weftd_nodes(Backend::Vxlan, DriverArg::Poll);
}

#[test]
fn routes_lists_the_peer() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let overlay = Overlay::Weftd {
        backend: Backend::Vxlan,
        driver: DriverArg::Auto,
    };
    bed.start(&[overlay, overlay]).expect("weftd on both nodes");
    let routes = bed.control(0, "routes").unwrap_or_else(|e| panic!("{e:#}"));
    let text = routes.to_string();
    let b = bed.node(1);
    for want in [
        b.subnet().to_string(),
        b.subnet6().to_string(),
        b.underlay().to_string(),
        engine::model::format_mac(&b.vtep_mac()),
    ] {
        assert!(text.contains(&want), "routes lacks {want}: {text}");
    }
}
