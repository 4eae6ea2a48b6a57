//! flannel's routing modes beside the overlay: `Backend.DirectRouting`.
//!
//! - Two weftd nodes in lease mode (lease directory, vxlan, `"DirectRouting": true`) on one L2
//!   segment (the testbed's bridge): each routes the other's subnet in the kernel via the
//!   peer's PublicIP (`ip route`), `weftctl routes` says `"path": "direct"`, ping and a
//!   verified TCP stream between the TUN addresses work, and weft's pumps carry none of it.
//!   A lease removed from the store removes its kernel route; SIGTERM removes them all.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use weftctl::require_root;
use weftctl::testbed::leased::LeasedNode;
use weftctl::testbed::traffic::{self, End};
use weftctl::testbed::Testbed;

const CONFIG_DIRECT: &str = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0",
    "Backend": {"Type": "vxlan", "DirectRouting": true}}"#;

/// How long a lease change may take to reach the kernel's routes.
const ROUTE_DEADLINE: Duration = Duration::from_secs(2);

/// `ip route show <subnet>` in node `i`'s namespace.
fn kernel_route(bed: &Testbed, i: usize, subnet: &str) -> String {
    bed.node(i)
        .ns()
        .exec_checked("ip", &["route", "show", subnet])
        .expect("ip route show")
}

/// Waits until node `i`'s kernel route to `subnet` does (or does not) go via `gateway`.
fn wait_kernel_route(bed: &Testbed, i: usize, subnet: &str, gateway: &str, present: bool) {
    let want = format!("{subnet} via {gateway} ");
    let start = Instant::now();
    loop {
        let shown = kernel_route(bed, i, subnet);
        if shown.contains(&want) == present {
            return;
        }
        assert!(
            start.elapsed() < ROUTE_DEADLINE,
            "node {i}: route {want:?} present={present} not reached in {ROUTE_DEADLINE:?}: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Datagrams node's pumps sent and received.
fn pump_datagrams(node: &LeasedNode) -> (u64, u64) {
    let s = node.stats().expect("stats");
    let get = |k: &str| {
        s["pump"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {s}"))
    };
    (get("udp_tx_datagrams"), get("udp_rx_datagrams"))
}

#[test]
fn direct_routing_on_one_segment_bypasses_the_overlay() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let dir = bed.dir().join("leases");
    std::fs::create_dir_all(&dir).expect("lease dir");
    std::fs::write(dir.join("config"), CONFIG_DIRECT).expect("config");
    let store = vec!["--lease-dir".to_owned(), dir.display().to_string()];
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    let nodes: Vec<LeasedNode> = (0..2)
        .map(|i| {
            let node = LeasedNode::spawn_with_env(&mut bed, &weftd, i, &store, &[], &[])
                .unwrap_or_else(|e| panic!("weftd on node {i}: {e:#}"));
            node.wait_ready(&mut bed)
                .unwrap_or_else(|e| panic!("{e:#}"));
            node
        })
        .collect();
    let subnets: Vec<String> = nodes.iter().map(|n| n.subnet().expect("subnet")).collect();
    let underlay: Vec<String> = (0..2).map(|i| bed.node(i).underlay().to_string()).collect();

    // Each node routes the other's subnet via its PublicIP, and says so.
    for (i, j) in [(0, 1), (1, 0)] {
        wait_kernel_route(&bed, i, &subnets[j], &underlay[j], true);
        let routes: serde_json::Value =
            serde_json::from_str(&nodes[i].routes().expect("routes")).expect("json");
        let route = routes
            .as_array()
            .and_then(|r| r.iter().find(|r| r["subnet"] == subnets[j].as_str()))
            .unwrap_or_else(|| panic!("node {i} has no route to {}: {routes}", subnets[j]));
        assert_eq!(route["path"], "direct", "{route}");
    }

    // Traffic between the TUN addresses goes straight over the segment: weft carries none.
    let before: Vec<(u64, u64)> = nodes.iter().map(pump_datagrams).collect();
    let tun: Vec<IpAddr> = nodes
        .iter()
        .map(|n| IpAddr::V4(n.tun_ip().expect("tun ip")))
        .collect();
    let end = |i: usize| End {
        ns: bed.node(i).ns(),
        ip: tun[i],
    };
    traffic::ping(end(0), tun[1], 3, None).unwrap_or_else(|e| panic!("ping a -> b: {e:#}"));
    traffic::ping(end(1), tun[0], 3, None).unwrap_or_else(|e| panic!("ping b -> a: {e:#}"));
    let gbit = common::stream(end(0), end(1), 16 << 20);
    assert!(gbit > 0.0);
    let after: Vec<(u64, u64)> = nodes.iter().map(pump_datagrams).collect();
    assert_eq!(before, after, "the pumps carried direct traffic");

    // A lease gone from the store: its kernel route goes too.
    let (status, _) = bed.process(nodes[1].handle).stop().expect("b stopped");
    assert!(status.success(), "weftd b exited {status}");
    // b's own routes went with SIGTERM; its lease stays (flannel's behaviour), so a keeps its
    // route until the lease is removed.
    assert!(
        !kernel_route(&bed, 1, &subnets[0]).contains(" via "),
        "b left its direct route after SIGTERM"
    );
    wait_kernel_route(&bed, 0, &subnets[1], &underlay[1], true);
    std::fs::remove_file(dir.join("subnets").join(subnets[1].replace('/', "-")))
        .expect("remove b's lease");
    wait_kernel_route(&bed, 0, &subnets[1], &underlay[1], false);

    let (status, _) = bed.process(nodes[0].handle).stop().expect("a stopped");
    assert!(status.success(), "weftd a exited {status}");
}
