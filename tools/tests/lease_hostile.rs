//! The lease store under hostile input: two weftd nodes in lease mode on a real etcd.
//!
//! - An invalid config at start is reported once (with the key and the reason) while weftd
//!   waits; once fixed, the nodes come up.
//! - Bad keys under `<prefix>/subnets/` while running: invalid JSON, a subnet overlapping ours,
//!   a subnet outside the Network, a PublicIP that is not an address, odd key names. Each is
//!   reported once with its key and the reason (also when written again), none becomes a
//!   route, a good lease written after them still becomes a route, and the nodes keep pinging.
//! - The config turned invalid, then changed to another Network, while running: each reported
//!   once; the nodes keep running with their config and keep forwarding.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine --bins`).

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use weft_testkit::etcd::{Etcd, PREFIX};
use weft_testkit::{require_programs, require_root};
use weftctl::testbed::leased::{vxlan_lease, LeasedNode, CONFIG_VXLAN};
use weftctl::testbed::traffic::{self, End};
use weftctl::testbed::Testbed;

fn ping(bed: &Testbed, from: usize, src: Ipv4Addr, to: Ipv4Addr) {
    traffic::ping(
        End {
            ns: bed.node(from).ns(),
            ip: src.into(),
        },
        to.into(),
        3,
        None,
    )
    .expect("ping over the overlay");
}

/// How many lines of `log` contain every one of `needles`.
fn count(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[test]
fn hostile_lease_store() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let etcd = Etcd::start(bed.node(0).ns(), bed.node(0).underlay(), bed.dir()).expect("etcd");
    let store = etcd.store_args();

    // 1. An invalid config at start: reported once while weftd waits, then fixed.
    etcd.put(
        "config",
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan""#,
    )
    .expect("put");
    let mut nodes: Vec<LeasedNode> = (0..2)
        .map(|i| LeasedNode::spawn_only(&mut bed, &weftd, i, &store, &[]).expect("spawn"))
        .collect();
    std::thread::sleep(Duration::from_millis(3500));
    for n in &nodes {
        let log = n.log(&mut bed);
        let lines = count(&log, &[&format!("{PREFIX}/config"), "ERROR"]);
        assert_eq!(
            lines, 1,
            "the invalid config should be reported once with its key:\n{log}"
        );
    }
    etcd.put("config", CONFIG_VXLAN).expect("put");
    for n in &nodes {
        n.wait_ready(&mut bed)
            .expect("ready once the config is fixed");
    }
    let a_subnet = nodes[0].subnet().expect("a's subnet");
    let a_ip = nodes[0].tun_ip().expect("a");
    let b_ip = nodes[1].tun_ip().expect("b");
    ping(&bed, 0, a_ip, b_ip);

    // 2. Bad leases while running.
    let o = a_ip.octets();
    let overlap = format!("{}.{}.{}.128-25", o[0], o[1], o[2]);
    let good_value = |ip: &str, tail: u16| vxlan_lease(ip.parse().expect("ip"), tail);
    let bad: Vec<(String, String, &str)> = vec![
        (
            "10.244.240.0-24".into(),
            r#"{"PublicIP": "192.168.250.40", "BackendType": "vxl"#.into(),
            "",
        ),
        (overlap.clone(), good_value("192.168.250.41", 41), "overlaps our subnet"),
        ("10.99.0.0-24".into(), good_value("192.168.250.42", 42), "outside the Network"),
        (
            "10.244.241.0-24".into(),
            r#"{"PublicIP":"not-an-address","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:43"}}"#.into(),
            "",
        ),
        ("garbage".into(), good_value("192.168.250.44", 44), ""),
        ("10.244.242.0-33".into(), good_value("192.168.250.45", 45), ""),
        ("10.244.243.7-24".into(), good_value("192.168.250.46", 46), ""),
        ("10.244.244.0-24/extra".into(), good_value("192.168.250.47", 47), ""),
        ("ünïcode\u{1}-24".into(), good_value("192.168.250.48", 48), ""),
    ];
    for _ in 0..2 {
        for (name, value, _) in &bad {
            etcd.put(&format!("subnets/{name}"), value).expect("put");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // A good lease after them becomes a route: the watch goes on.
    etcd.put("subnets/10.244.250.0-24", &good_value("192.168.250.9", 9))
        .expect("put");
    for n in &nodes {
        n.wait_route("10.244.250.0/24", true, Duration::from_secs(2))
            .expect("a good lease after bad ones");
    }
    // A fresh listing (a restarted watch sees them all again): still reported once.
    std::thread::sleep(Duration::from_millis(500));
    for (i, n) in nodes.iter().enumerate() {
        let log = n.log(&mut bed);
        let routes = n.routes().expect("routes");
        for (name, _, reason) in &bad {
            let key = format!("{PREFIX}/subnets/{name}");
            // Keys that parse name the subnet (10.244.0.128/25), others the etcd key.
            let subnet_key = name.replacen('-', "/", 1);
            let shown = if reason.is_empty() { &key } else { &subnet_key };
            if i == 1 && *reason == "overlaps our subnet" {
                // Not node a's subnet: an ordinary peer lease for node b... unless it overlaps
                // b's, which it cannot (a and b hold distinct /24s).
                continue;
            }
            let lines = count(&log, &[shown.as_str(), reason]);
            assert_eq!(
                lines,
                1,
                "node {i}: {key} should be reported once ({reason:?}):\n{}",
                log.lines()
                    .filter(|l| l.contains(shown.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        assert!(
            !routes.contains("10.99.0.0"),
            "node {i}: a lease outside the Network became a route: {routes}"
        );
        assert!(
            !routes.contains("10.244.240.0") && !routes.contains("10.244.241.0"),
            "node {i}: an invalid lease became a route: {routes}"
        );
    }
    let a_routes = nodes[0].routes().expect("routes");
    assert!(
        !a_routes.contains(&overlap.replace('-', "/")),
        "a lease overlapping our subnet {a_subnet} became a route: {a_routes}"
    );
    ping(&bed, 0, a_ip, b_ip);
    ping(&bed, 1, b_ip, a_ip);

    // 3. The config becomes invalid, then names another Network: reported once each.
    etcd.put("config", "{not json").expect("put");
    std::thread::sleep(Duration::from_millis(4500));
    etcd.put(
        "config",
        r#"{"Network": "10.50.0.0/16", "Backend": {"Type": "vxlan"}}"#,
    )
    .expect("put");
    std::thread::sleep(Duration::from_millis(4500));
    ping(&bed, 0, a_ip, b_ip);
    for n in &nodes {
        let log = n.log(&mut bed);
        assert_eq!(
            count(&log, &[&format!("{PREFIX}/config"), "is now invalid"]),
            1,
            "the invalid config should be reported once:\n{log}"
        );
        assert_eq!(
            count(
                &log,
                &[&format!("{PREFIX}/config"), "10.50.0.0/16", "changed"]
            ),
            1,
            "the changed Network should be reported once:\n{log}"
        );
    }
    etcd.put("config", CONFIG_VXLAN).expect("put");
    // Still serving, still watching.
    etcd.put("subnets/10.244.251.0-24", &good_value("192.168.250.10", 10))
        .expect("put");
    for n in &nodes {
        n.wait_route("10.244.251.0/24", true, Duration::from_secs(2))
            .expect("watching goes on");
        assert!(!n.log(&mut bed).contains("panicked"));
    }
    bed.process(nodes[0].handle).stop();
    nodes.clear();
    drop(bed);
    drop(etcd);
}
