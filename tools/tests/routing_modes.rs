//! flannel's routing modes beside the overlay: `Backend.DirectRouting` and host-gw.
//!
//! - Two weftd nodes in lease mode (lease directory, vxlan, `"DirectRouting": true`) on one L2
//!   segment (a veth pair): each routes the other's subnet in the kernel via the
//!   peer's PublicIP (`ip route`), `weftctl routes` says `"path": "direct"`, ping and a
//!   verified TCP stream between the TUN addresses work, and weft's pumps carry none of it.
//!   A lease removed from the store removes its kernel route; SIGTERM removes them all. On a
//!   lease directory and on etcd.
//! - Three nodes (udp backend, DirectRouting), c behind a router: a <-> b use a kernel route,
//!   a <-> c and b <-> c the overlay (no kernel route, `"path": "overlay"`, the pumps carry
//!   it), ping and TCP both ways.
//! - host-gw (a and b weftd, c behind the router with a lease written as flanneld's): flannel's
//!   lease JSON, the underlay's MTU in subnet.env, no TUN, a kernel route per neighbour, c
//!   reported once and left out, CNI-bridge addresses reach each other; then b turns into a
//!   flanneld-style node (route written by hand as flanneld does) and a still reaches it. On
//!   a lease directory and on etcd.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`).

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::store::Store;
use weft_testkit::{require_programs, require_root};
use weftctl::testbed::leased::LeasedNode;
use weftctl::testbed::traffic::{self, End};
use weftctl::testbed::{Options, Testbed};

const CONFIG_DIRECT: &str = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0",
    "Backend": {"Type": "vxlan", "DirectRouting": true}}"#;

const CONFIG_DIRECT_UDP: &str = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0",
    "Backend": {"Type": "udp", "DirectRouting": true}}"#;

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

/// `n` leased weftd nodes on `store`, ready.
fn start_nodes(bed: &mut Testbed, n: usize, store: &Store) -> Vec<LeasedNode> {
    let store = store.args();
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    (0..n)
        .map(|i| {
            let node = LeasedNode::spawn_with_env(bed, &weftd, i, &store, &[], &[])
                .unwrap_or_else(|e| panic!("weftd on node {i}: {e:#}"));
            node.wait_ready(bed).unwrap_or_else(|e| panic!("{e:#}"));
            node
        })
        .collect()
}

/// The `path` weftctl routes gives node's route to `subnet`.
fn route_path(node: &LeasedNode, subnet: &str) -> String {
    let routes: serde_json::Value =
        serde_json::from_str(&node.routes().expect("routes")).expect("json");
    let route = routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["subnet"] == subnet))
        .unwrap_or_else(|| panic!("no route to {subnet}: {routes}"));
    route["path"].as_str().expect("path").to_owned()
}

#[test]
fn direct_routing_on_one_segment_bypasses_the_overlay() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let store = Store::dir(&bed, CONFIG_DIRECT);
    one_segment(&mut bed, &store);
}

#[test]
fn direct_routing_on_one_segment_on_etcd() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let store = Store::etcd(&bed, CONFIG_DIRECT);
    one_segment(&mut bed, &store);
}

/// Two nodes on one segment with DirectRouting (see the module documentation).
fn one_segment(bed: &mut Testbed, store: &Store) {
    let nodes = start_nodes(bed, 2, store);
    let subnets: Vec<String> = nodes.iter().map(|n| n.subnet().expect("subnet")).collect();
    let underlay: Vec<String> = (0..2).map(|i| bed.node(i).underlay().to_string()).collect();

    // Each node routes the other's subnet via its PublicIP, and says so.
    for (i, j) in [(0, 1), (1, 0)] {
        wait_kernel_route(bed, i, &subnets[j], &underlay[j], true);
        assert_eq!(route_path(&nodes[i], &subnets[j]), "direct");
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
        !kernel_route(bed, 1, &subnets[0]).contains(" via "),
        "b left its direct route after SIGTERM"
    );
    wait_kernel_route(bed, 0, &subnets[1], &underlay[1], true);
    store.delete_lease(&subnets[1]);
    wait_kernel_route(bed, 0, &subnets[1], &underlay[1], false);

    let (status, _) = bed.process(nodes[0].handle).stop().expect("a stopped");
    assert!(status.success(), "weftd a exited {status}");
}

#[test]
fn direct_routing_keeps_a_peer_behind_a_router_on_the_overlay() {
    require_root!();
    let options = Options {
        third_behind_router: true,
        ..Options::default()
    };
    let mut bed =
        Testbed::with_options(3, common::binaries_with_weftd(), options).expect("testbed");
    let store = Store::dir(&bed, CONFIG_DIRECT_UDP);
    let nodes = start_nodes(&mut bed, 3, &store);
    let subnets: Vec<String> = nodes.iter().map(|n| n.subnet().expect("subnet")).collect();
    let underlay: Vec<String> = (0..3).map(|i| bed.node(i).underlay().to_string()).collect();
    assert!(underlay[2].starts_with("192.168.251."), "{underlay:?}");
    // a <-> b: a kernel route; a, b <-> c: the overlay, no kernel route.
    for (i, j) in [(0, 1), (1, 0)] {
        wait_kernel_route(&bed, i, &subnets[j], &underlay[j], true);
        assert_eq!(route_path(&nodes[i], &subnets[j]), "direct");
    }
    for (i, j) in [(0, 2), (2, 0), (1, 2), (2, 1)] {
        assert_eq!(route_path(&nodes[i], &subnets[j]), "overlay", "{i} -> {j}");
        let shown = kernel_route(&bed, i, &subnets[j]);
        assert!(!shown.contains(" via "), "{i} -> {j}: {shown:?}");
    }
    let tun: Vec<IpAddr> = nodes
        .iter()
        .map(|n| IpAddr::V4(n.tun_ip().expect("tun ip")))
        .collect();
    let end = |i: usize| End {
        ns: bed.node(i).ns(),
        ip: tun[i],
    };
    // The overlay pair: the pumps carry it, both ways.
    let before = pump_datagrams(&nodes[0]);
    for (i, j) in [(0, 2), (2, 0), (1, 2)] {
        traffic::ping(end(i), tun[j], 2, None).unwrap_or_else(|e| panic!("ping {i} -> {j}: {e:#}"));
    }
    common::stream(end(0), end(2), 8 << 20);
    common::stream(end(2), end(0), 8 << 20);
    let after = pump_datagrams(&nodes[0]);
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "a's pumps carried nothing to c: {before:?} -> {after:?}"
    );
    // The direct pair: not a datagram.
    let before = pump_datagrams(&nodes[0]);
    traffic::ping(end(0), tun[1], 2, None).unwrap_or_else(|e| panic!("ping a -> b: {e:#}"));
    common::stream(end(1), end(0), 8 << 20);
    assert_eq!(pump_datagrams(&nodes[0]), before, "a -> b took the overlay");
}

const CONFIG_HOST_GW: &str = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0",
    "Backend": {"Type": "host-gw"}}"#;

/// A CNI-style bridge `cni0` with the subnet's first host (`10.244.105.1/24`) in node `i`:
/// the pods' gateway, as the CNI bridge plugin sets it up. Returns the address.
fn cni_bridge(bed: &Testbed, i: usize, subnet: &str) -> IpAddr {
    let first = subnet.replacen(".0/", ".1/", 1);
    let ns = bed.node(i).ns();
    for args in [
        &["link", "add", "cni0", "type", "bridge"][..],
        &["addr", "add", &first, "dev", "cni0"],
        &["link", "set", "cni0", "up"],
    ] {
        ns.exec_checked("ip", args).expect("cni0");
    }
    first.split('/').next().expect("addr").parse().expect("ip")
}

/// Node `i` as a traffic end bound to `ip`.
fn at(bed: &Testbed, i: usize, ip: IpAddr) -> End<'_> {
    End {
        ns: bed.node(i).ns(),
        ip,
    }
}

/// host-gw: no TUN, no pumps, a kernel route per neighbour; a peer behind a router is
/// reported and left out; a weftd node and a node set up as flanneld's host-gw does (its lease
/// and its route written by hand) reach each other. On a lease directory.
#[test]
fn host_gw_routes_to_neighbours_as_flanneld_does() {
    require_root!();
    let mut bed = host_gw_testbed();
    let store = Store::dir(&bed, CONFIG_HOST_GW);
    host_gw(&mut bed, &store);
}

/// The same on etcd.
#[test]
fn host_gw_on_etcd() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = host_gw_testbed();
    let store = Store::etcd(&bed, CONFIG_HOST_GW);
    host_gw(&mut bed, &store);
}

/// Three nodes, c behind a router.
fn host_gw_testbed() -> Testbed {
    let options = Options {
        third_behind_router: true,
        ..Options::default()
    };
    Testbed::with_options(3, common::binaries_with_weftd(), options).expect("testbed")
}

fn host_gw(bed: &mut Testbed, store: &Store) {
    // c (behind the router) runs flanneld's host-gw: its lease as flannel writes it.
    let c_subnet = "10.244.200.0/24";
    let c_lease = r#"{"PublicIP":"192.168.251.3","PublicIPv6":null,"BackendType":"host-gw"}"#;
    store.put_lease(c_subnet, c_lease);
    let nodes = start_nodes(bed, 2, store);
    let subnets: Vec<String> = nodes.iter().map(|n| n.subnet().expect("subnet")).collect();
    let underlay: Vec<String> = (0..2).map(|i| bed.node(i).underlay().to_string()).collect();

    // flannel's lease, flannel's subnet.env (the underlay's MTU), no TUN.
    let lease = store.lease(&subnets[0]);
    let v: serde_json::Value = serde_json::from_str(&lease).expect("json");
    assert_eq!(v["BackendType"], "host-gw", "{lease}");
    assert_eq!(v["PublicIP"], underlay[0].as_str(), "{lease}");
    assert!(v.get("BackendData").is_none(), "{lease}");
    let env = std::fs::read_to_string(&nodes[0].subnet_file).expect("subnet.env");
    assert!(env.contains("FLANNEL_MTU=1500\n"), "{env}");
    let links = bed
        .node(0)
        .ns()
        .exec_checked("ip", &["-o", "link"])
        .expect("ip link");
    assert!(
        !links.contains("flannel") && !links.contains("tun"),
        "{links}"
    );

    // a <-> b: kernel routes; c is off the segment: reported once and left out.
    for (i, j) in [(0, 1), (1, 0)] {
        wait_kernel_route(bed, i, &subnets[j], &underlay[j], true);
        assert_eq!(route_path(&nodes[i], &subnets[j]), "direct");
        assert!(
            kernel_route(bed, i, c_subnet).is_empty(),
            "node {i} routes c"
        );
    }
    let log = nodes[0].log(bed);
    assert_eq!(
        log.matches("10.244.200.0-24: its PublicIP 192.168.251.3 is not on our network segment")
            .count(),
        1,
        "{log}"
    );
    let pods: Vec<IpAddr> = (0..2).map(|i| cni_bridge(bed, i, &subnets[i])).collect();

    traffic::ping(at(bed, 0, pods[0]), pods[1], 2, None)
        .unwrap_or_else(|e| panic!("ping a -> b: {e:#}"));
    traffic::ping(at(bed, 1, pods[1]), pods[0], 2, None)
        .unwrap_or_else(|e| panic!("ping b -> a: {e:#}"));
    common::stream(at(bed, 0, pods[0]), at(bed, 1, pods[1]), 8 << 20);

    // b becomes a flanneld host-gw node: weftd goes (its routes with it; its lease stays, as
    // flannel's), and b's route to a is written as flanneld writes it.
    let (status, _) = bed.process(nodes[1].handle).stop().expect("b stopped");
    assert!(status.success(), "weftd b exited {status}");
    assert!(kernel_route(bed, 1, &subnets[0]).is_empty());
    bed.node(1)
        .ns()
        .exec_checked(
            "ip",
            &[
                "route",
                "replace",
                &subnets[0],
                "via",
                &underlay[0],
                "dev",
                "veth0",
            ],
        )
        .expect("flanneld's route");
    // The route weftd wrote on a and the one written as flanneld does on b look alike.
    let weftd_route = kernel_route(bed, 0, &subnets[1]);
    let flanneld_route = kernel_route(bed, 1, &subnets[0]);
    assert_eq!(
        weftd_route
            .replace(&subnets[1], "S")
            .replace(&underlay[1], "G"),
        flanneld_route
            .replace(&subnets[0], "S")
            .replace(&underlay[0], "G"),
    );
    traffic::ping(at(bed, 0, pods[0]), pods[1], 2, None)
        .unwrap_or_else(|e| panic!("a -> flanneld b: {e:#}"));
    traffic::ping(at(bed, 1, pods[1]), pods[0], 2, None)
        .unwrap_or_else(|e| panic!("flanneld b -> a: {e:#}"));
    common::stream(at(bed, 1, pods[1]), at(bed, 0, pods[0]), 8 << 20);
    let (status, _) = bed.process(nodes[0].handle).stop().expect("a stopped");
    assert!(status.success(), "weftd a exited {status}");
    assert!(
        kernel_route(bed, 0, &subnets[1]).is_empty(),
        "a left its route"
    );
}
