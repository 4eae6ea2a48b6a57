//! IPv6 underlays in lease mode, on testbeds whose `veth0` holds
//! `fd99::<i+1>/64` ([`Underlay`]).
//!
//! - Dual stack (flannel's way: `EnableIPv6`, `--public-ipv6`), vxlan on a lease directory, on
//!   etcd and through the router namespace of `Options::router` (proxy NDP), udp on a lease
//!   directory: each lease carries `PublicIPv6` (and vxlan's
//!   `BackendV6Data`); the subnet file has the IPv6 figure for the MTU; `weftctl routes` sends
//!   the peer's IPv4 subnet to its PublicIP and its IPv6 subnet to its PublicIPv6 (with the
//!   VtepMAC of `BackendV6Data`); ping (default size and full MTU) and a verified TCP stream
//!   work on both families both ways, and each stream left on the underlay of its own family,
//!   to the peer's address of that family: by the kernel's count of underlay datagrams
//!   (iptables / ip6tables) and by weftd's per-peer counters on both ends.
//! - IPv6-only underlay, udp and vxlan on a lease directory, vxlan on an etcd reached over
//!   IPv6 (`http://[fd99::1]:2379`) (`--public-ip fd99::<i+1>`, no IPv4 on `veth0`): the lease
//!   says `"PublicIP":"0.0.0.0"` and the PublicIPv6; the TUN MTU is 1500 - 28 (udp) or 50
//!   (vxlan) - 20; IPv4 and IPv6 pod traffic both cross the IPv6 underlay. A node restarted
//!   without its subnet file gets its lease (and VtepMAC) back, found by its PublicIPv6. Also
//!   an IPv4-only network (no `EnableIPv6`) on an IPv6-only underlay.
//! - Dual stack from one address or none: `--iface veth0`, `--public-ip <IPv4>` alone and
//!   `--public-ipv6` alone each find the other address on the interface (never the link-local
//!   one).
//! - Mixed nodes: a dual-stack node and an IPv6-only one talk over IPv6 for both families; a
//!   dual-stack node and one without an IPv6 underlay address (no PublicIPv6) over IPv4.
//! - An upgrade (`--upgrade`) of a dual-stack node keeps both families on their underlays.
//! - DirectRouting on a dual-stack underlay, three nodes, c behind a router: a <-> b route
//!   both subnets in the kernel (`via 192.168.250.x`, `via fd99::x`) and the pumps carry none
//!   of it; a, b <-> c use the overlay, c's IPv6 subnet over the routed IPv6 underlay. On an
//!   IPv6-only underlay only the IPv6 subnets are routed in the kernel; IPv4 stays on the
//!   overlay. host-gw on a dual-stack underlay routes both families, CNI-bridge addresses
//!   reach each other.
//! - The testbed itself: every node reaches the others' IPv6 underlay addresses, through
//!   either router.
//!
//! The networks set `IPv6SubnetMin` as they set `SubnetMin`: the leased subnets then stay clear
//! of the testbed pods' own (`fd00:10:244:<i+1>::/64`). Traffic runs between the TUN
//! addresses (the subnets' first addresses).
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`).

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::store::Store;
use engine::model::Backend;
use serde_json::Value;
use weft_testkit::{require_programs, require_root};
use weftctl::testbed::leased::{LeasedNode, Publish};
use weftctl::testbed::traffic::{self, End};
use weftctl::testbed::{Options, Testbed, Underlay, READY_TIMEOUT, UNDERLAY_MTU, WEFTD_READY};

/// What an IPv6 outer header costs beyond an IPv4 one.
const IPV6_EXTRA: u32 = 20;
/// How long a peer's lease may take to reach the routes.
const ROUTE_DEADLINE: Duration = Duration::from_secs(10);
/// Bytes in each verified TCP stream.
const STREAM: u64 = 16 << 20;

/// A network config on `backend` with an IPv6 network, `DirectRouting` as `direct` says.
fn dual_stack_config(backend: Backend, direct: bool) -> String {
    format!(
        r#"{{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "EnableIPv6": true,
        "IPv6Network": "fd00:10:244::/48", "IPv6SubnetMin": "fd00:10:244:100::",
        "Backend": {{"Type": "{}", "DirectRouting": {direct}}}}}"#,
        backend.as_str()
    )
}

/// The TUN MTU on an IPv6 underlay (dual stack too: the larger header counts).
fn mtu6(backend: Backend) -> u32 {
    UNDERLAY_MTU - backend.overhead() as u32 - IPV6_EXTRA
}

/// An address family: of the pods' traffic, or of the underlay carrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// One leased weftd per entry of `publish` (node i told its address as `publish[i]` says),
/// each ready.
fn start_nodes(bed: &mut Testbed, store: &Store, publish: &[Publish]) -> Vec<LeasedNode> {
    let store = store.args();
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    publish
        .iter()
        .enumerate()
        .map(|(i, p)| {
            LeasedNode::start_publishing(bed, &weftd, i, *p, &store, &[])
                .unwrap_or_else(|e| panic!("weftd on node {i}: {e:#}"))
        })
        .collect()
}

/// The node's subnet of `family` (`10.244.105.0/24`, `fd00:10:244:1a3::/64`).
fn subnet(node: &LeasedNode, family: Family) -> String {
    match family {
        Family::V4 => node.subnet().expect("subnet"),
        Family::V6 => node
            .subnet6()
            .expect("subnet file")
            .expect("an IPv6 subnet in the subnet file")
            .to_string(),
    }
}

/// The node's TUN address of `family`.
fn tun(node: &LeasedNode, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(node.tun_ip().expect("tun ip")),
        Family::V6 => IpAddr::V6(node.tun_ip6().expect("tun ip6")),
    }
}

/// Node `i`'s underlay address of `family`.
fn underlay(bed: &Testbed, i: usize, family: Family) -> String {
    match family {
        Family::V4 => bed.node(i).underlay().to_string(),
        Family::V6 => bed
            .node(i)
            .underlay6()
            .expect("an IPv6 underlay")
            .to_string(),
    }
}

/// `node`'s route to `subnet` (`weftctl routes`), once it is there.
fn route(node: &LeasedNode, subnet: &str) -> Value {
    node.wait_route(&format!("\"{subnet}\""), true, ROUTE_DEADLINE)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let routes: Value = serde_json::from_str(&node.routes().expect("routes")).expect("json");
    routes
        .as_array()
        .and_then(|r| r.iter().find(|r| r["subnet"] == subnet))
        .unwrap_or_else(|| panic!("no route to {subnet}: {routes}"))
        .clone()
}

/// `node`'s peer whose underlay address is `public_ip` (`weftctl stats`), with its counters.
fn peer(node: &LeasedNode, public_ip: &str) -> Value {
    let stats = node.stats().expect("stats");
    stats["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["public_ip"] == public_ip))
        .unwrap_or_else(|| panic!("no peer {public_ip} in {stats}"))
        .clone()
}

/// A counter of `peer` (`tx_bytes`, `rx_bytes`).
fn counter(peer: &Value, name: &str) -> u64 {
    peer[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {peer}"))
}

/// `iptables` or `ip6tables`.
fn iptables(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

/// The kernel's count of the underlay datagrams every node sends to the backend's port, per
/// family: an OUTPUT rule without a target in iptables and in ip6tables.
struct UnderlayMeter {
    port: u16,
}

impl UnderlayMeter {
    /// Adds the counting rules to every node for `backend`'s port.
    fn install(bed: &Testbed, backend: Backend) -> UnderlayMeter {
        let port = backend.default_port();
        for node in bed.nodes() {
            for family in [Family::V4, Family::V6] {
                node.ns()
                    .exec_checked(
                        iptables(family),
                        &[
                            "-w",
                            "-A",
                            "OUTPUT",
                            "-p",
                            "udp",
                            "--dport",
                            &port.to_string(),
                        ],
                    )
                    .unwrap_or_else(|e| panic!("{e:#}"));
            }
        }
        UnderlayMeter { port }
    }

    /// Bytes node `i` has sent to the port over `family`.
    fn out_bytes(&self, bed: &Testbed, i: usize, family: Family) -> u64 {
        let listing = bed
            .node(i)
            .ns()
            .exec_checked(iptables(family), &["-w", "-nvxL", "OUTPUT"])
            .unwrap_or_else(|e| panic!("{e:#}"));
        let needle = format!("udp dpt:{}", self.port);
        let line = listing
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no rule counting {needle} in {listing}"));
        // pkts bytes target prot ...
        line.split_whitespace()
            .nth(1)
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("no byte count in {line:?}"))
    }
}

/// Which underlay a stream should take.
#[derive(Debug, Clone, Copy)]
struct Path {
    /// The family of the pods' traffic.
    inner: Family,
    /// The family of the underlay carrying it.
    outer: Family,
}

/// A verified TCP stream from node `from`'s TUN address to node `to`'s over `path.inner`,
/// checked to have left `from` on the `path.outer` underlay (the kernel's count of outgoing
/// underlay datagrams; the other family carried at most 1 % of it), sent to `to`'s peer
/// entry for its `path.outer` address and received by `to` from `from`'s (weftd's per-peer
/// counters).
fn stream_over(
    bed: &Testbed,
    meter: &UnderlayMeter,
    nodes: &[LeasedNode],
    (from, to): (usize, usize),
    path: Path,
) {
    let (to_ip, from_ip) = (
        underlay(bed, to, path.outer),
        underlay(bed, from, path.outer),
    );
    let out = |family| meter.out_bytes(bed, from, family);
    let before = (
        out(path.outer),
        out(path.outer.other()),
        counter(&peer(&nodes[from], &to_ip), "tx_bytes"),
        counter(&peer(&nodes[to], &from_ip), "rx_bytes"),
    );
    let end = |i: usize| End {
        ns: bed.node(i).ns(),
        ip: tun(&nodes[i], path.inner),
    };
    common::stream(end(from), end(to), STREAM);
    let after = (
        out(path.outer),
        out(path.outer.other()),
        counter(&peer(&nodes[from], &to_ip), "tx_bytes"),
        counter(&peer(&nodes[to], &from_ip), "rx_bytes"),
    );
    let what = format!(
        "{:?} stream {from} -> {to} over {:?}",
        path.inner, path.outer
    );
    assert!(
        after.0 - before.0 >= STREAM,
        "{what}: the {:?} underlay carried {} bytes",
        path.outer,
        after.0 - before.0
    );
    assert!(
        after.1 - before.1 < STREAM / 100,
        "{what}: the {:?} underlay carried {} bytes",
        path.outer.other(),
        after.1 - before.1
    );
    assert!(
        after.2 - before.2 >= STREAM,
        "{what}: the sender's peer {to_ip} sent {} bytes",
        after.2 - before.2
    );
    assert!(
        after.3 - before.3 >= STREAM,
        "{what}: the receiver's peer {from_ip} received {} bytes",
        after.3 - before.3
    );
}

/// Ping between the TUN addresses of nodes `i` and `j` both ways on both families, at the
/// default size and filling `mtu`.
fn ping_both_families(bed: &Testbed, nodes: &[LeasedNode], i: usize, j: usize, mtu: u32) {
    for family in [Family::V4, Family::V6] {
        for (from, to) in [(i, j), (j, i)] {
            let end = End {
                ns: bed.node(from).ns(),
                ip: tun(&nodes[from], family),
            };
            common::ping_both_sizes(end, tun(&nodes[to], family), mtu);
        }
    }
}

/// Fails if a node's weftd has exited.
fn assert_running(bed: &mut Testbed, nodes: &[LeasedNode]) {
    for node in nodes {
        let p = bed.process(node.handle);
        assert!(
            p.try_status().is_none(),
            "{} exited:\n{}",
            p.label(),
            p.tail()
        );
    }
}

/// The subnet file's `FLANNEL_MTU`.
fn subnet_env_mtu(node: &LeasedNode) -> u32 {
    let env = std::fs::read_to_string(&node.subnet_file).expect("subnet.env");
    env.lines()
        .find_map(|l| l.strip_prefix("FLANNEL_MTU="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no FLANNEL_MTU in {env}"))
}

/// A testbed of `n` nodes on an underlay of `families`.
fn testbed(n: usize, families: Underlay) -> Testbed {
    let options = Options {
        underlay: families,
        ..Options::default()
    };
    Testbed::with_options(n, common::binaries_with_weftd(), options).expect("testbed")
}

/// Removes node `i`'s underlay address of `family` from `veth0`.
fn remove_underlay(bed: &Testbed, i: usize, family: Family) {
    let (flag, len) = match family {
        Family::V4 => ("-4", 24),
        Family::V6 => ("-6", 64),
    };
    let addr = format!("{}/{len}", underlay(bed, i, family));
    bed.node(i)
        .ip(&[flag, "addr", "del", &addr, "dev", "veth0"])
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The testbed itself: every node reaches every other's IPv6 underlay address, node c
/// through the router of `third_behind_router`, all of them through the router of
/// `Options::router`; and an IPv6-only underlay has no IPv4 address.
#[test]
fn the_testbeds_ipv6_underlay_reaches_every_node() {
    require_root!();
    for options in [
        Options {
            third_behind_router: true,
            underlay: Underlay::DualStack,
            ..Options::default()
        },
        Options {
            router: true,
            underlay: Underlay::DualStack,
            ..Options::default()
        },
    ] {
        let bed = Testbed::with_options(3, common::binaries(), options).expect("testbed");
        for (i, j) in [(0, 1), (0, 2), (2, 1)] {
            let from = End {
                ns: bed.node(i).ns(),
                ip: underlay(&bed, i, Family::V6).parse().expect("ip"),
            };
            let to = underlay(&bed, j, Family::V6).parse().expect("ip");
            traffic::ping(from, to, 1, None)
                .unwrap_or_else(|e| panic!("{options:?}: {i} -> {j}: {e:#}"));
        }
    }
    let bed = testbed(2, Underlay::Ipv6);
    for node in bed.nodes() {
        let v4 = node
            .ip(&["-4", "-o", "addr", "show", "dev", "veth0"])
            .expect("ip addr");
        assert!(v4.trim().is_empty(), "veth0 has IPv4: {v4}");
        assert!(node.underlay6().is_some());
    }
}

#[test]
fn dual_stack_underlay_vxlan_on_a_lease_directory() {
    require_root!();
    let mut bed = testbed(2, Underlay::DualStack);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, false));
    dual_stack(&mut bed, &store, Backend::Vxlan);
}

#[test]
fn dual_stack_underlay_vxlan_on_etcd() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = testbed(2, Underlay::DualStack);
    let store = Store::etcd(&bed, &dual_stack_config(Backend::Vxlan, false));
    dual_stack(&mut bed, &store, Backend::Vxlan);
}

/// The same through the router namespace of `Options::router` (where `impair` degrades the
/// underlay): proxy NDP as well as proxy ARP.
#[test]
fn dual_stack_underlay_vxlan_through_a_router() {
    require_root!();
    let options = Options {
        router: true,
        underlay: Underlay::DualStack,
        ..Options::default()
    };
    let mut bed =
        Testbed::with_options(2, common::binaries_with_weftd(), options).expect("testbed");
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, false));
    dual_stack(&mut bed, &store, Backend::Vxlan);
}

#[test]
fn dual_stack_underlay_udp_on_a_lease_directory() {
    require_root!();
    let mut bed = testbed(2, Underlay::DualStack);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Udp, false));
    dual_stack(&mut bed, &store, Backend::Udp);
}

/// Two nodes on a dual-stack underlay (see the module documentation).
fn dual_stack(bed: &mut Testbed, store: &Store, backend: Backend) {
    let nodes = start_nodes(bed, store, &[Publish::DualStack, Publish::DualStack]);

    // flannel's dual-stack lease, and the IPv6 figure in the subnet file.
    let mut v6_macs = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let lease = store.lease_json(node);
        assert_eq!(lease["PublicIP"], underlay(bed, i, Family::V4), "{lease}");
        assert_eq!(lease["PublicIPv6"], underlay(bed, i, Family::V6), "{lease}");
        if backend == Backend::Vxlan {
            assert_eq!(lease["BackendType"], "vxlan", "{lease}");
            assert_eq!(lease["BackendData"]["VNI"], 1, "{lease}");
            assert_eq!(lease["BackendV6Data"]["VNI"], 1, "{lease}");
            let mac = lease["BackendV6Data"]["VtepMAC"]
                .as_str()
                .unwrap_or_else(|| panic!("no BackendV6Data.VtepMAC in {lease}"));
            assert_eq!(mac.len(), 17, "{lease}");
            v6_macs.push(Value::from(mac));
        } else {
            assert!(lease.get("BackendV6Data").is_none(), "{lease}");
            v6_macs.push(Value::Null);
        }
        assert_eq!(subnet_env_mtu(node), mtu6(backend));
    }

    // Each family's subnet to the peer's address of that family.
    for (i, j) in [(0, 1), (1, 0)] {
        for family in [Family::V4, Family::V6] {
            let r = route(&nodes[i], &subnet(&nodes[j], family));
            assert_eq!(r["public_ip"], underlay(bed, j, family), "{i} -> {j}: {r}");
            assert_eq!(r["path"], "overlay", "{r}");
        }
        let r = route(&nodes[i], &subnet(&nodes[j], Family::V6));
        assert_eq!(r["vtep_mac"], v6_macs[j], "{r}");
    }

    ping_both_families(bed, &nodes, 0, 1, mtu6(backend));
    let meter = UnderlayMeter::install(bed, backend);
    for family in [Family::V4, Family::V6] {
        let path = Path {
            inner: family,
            outer: family,
        };
        stream_over(bed, &meter, &nodes, (0, 1), path);
        stream_over(bed, &meter, &nodes, (1, 0), path);
    }
    assert_running(bed, &nodes);
    for node in &nodes {
        let (status, _) = bed.process(node.handle).stop().expect("stopped");
        assert!(status.success(), "weftd exited {status}");
    }
}

#[test]
fn ipv6_only_underlay_udp_on_a_lease_directory() {
    require_root!();
    let mut bed = testbed(2, Underlay::Ipv6);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Udp, false));
    ipv6_only(&mut bed, &store, Backend::Udp);
}

#[test]
fn ipv6_only_underlay_vxlan_on_a_lease_directory() {
    require_root!();
    let mut bed = testbed(2, Underlay::Ipv6);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, false));
    ipv6_only(&mut bed, &store, Backend::Vxlan);
}

/// The same on etcd, reached over the IPv6 underlay (`--etcd-endpoints http://[fd99::1]:2379`).
#[test]
fn ipv6_only_underlay_vxlan_on_etcd_over_ipv6() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = testbed(2, Underlay::Ipv6);
    let store = Store::etcd(&bed, &dual_stack_config(Backend::Vxlan, false));
    assert!(
        store.args().concat().contains("[fd99::1]"),
        "{:?}",
        store.args()
    );
    ipv6_only(&mut bed, &store, Backend::Vxlan);
}

/// Two nodes on an IPv6-only underlay: both families of pod traffic cross it. Then b restarts
/// without its subnet file and finds its lease by its PublicIPv6 (its PublicIP, 0.0.0.0,
/// names no node), with its VtepMAC.
fn ipv6_only(bed: &mut Testbed, store: &Store, backend: Backend) {
    let mut nodes = start_nodes(bed, store, &[Publish::Ipv6, Publish::Ipv6]);
    let mtu = mtu6(backend);

    for (i, node) in nodes.iter().enumerate() {
        let lease = store.lease_json(node);
        assert_eq!(lease["PublicIP"], "0.0.0.0", "{lease}");
        assert_eq!(lease["PublicIPv6"], underlay(bed, i, Family::V6), "{lease}");
        assert_eq!(subnet_env_mtu(node), mtu);
    }
    for (i, j) in [(0, 1), (1, 0)] {
        for family in [Family::V4, Family::V6] {
            let r = route(&nodes[i], &subnet(&nodes[j], family));
            assert_eq!(
                r["public_ip"],
                underlay(bed, j, Family::V6),
                "{i} -> {j}: {r}"
            );
        }
    }

    ping_both_families(bed, &nodes, 0, 1, mtu);
    let meter = UnderlayMeter::install(bed, backend);
    for inner in [Family::V4, Family::V6] {
        let path = Path {
            inner,
            outer: Family::V6,
        };
        stream_over(bed, &meter, &nodes, (0, 1), path);
        stream_over(bed, &meter, &nodes, (1, 0), path);
    }
    assert_running(bed, &nodes);

    let key = nodes[1].lease_key().expect("lease key");
    let lease = store.lease_json(&nodes[1]);
    let (status, _) = bed.process(nodes[1].handle).stop().expect("b stopped");
    assert!(status.success(), "weftd b exited {status}");
    std::fs::remove_file(&nodes[1].subnet_file).expect("rm subnet.env");
    nodes[1].respawn(bed).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(nodes[1].lease_key().expect("lease key"), key);
    let again = store.lease_json(&nodes[1]);
    assert_eq!(
        again["BackendData"], lease["BackendData"],
        "{lease} -> {again}"
    );
    ping_both_families(bed, &nodes, 0, 1, mtu);
    assert_running(bed, &nodes);
}

/// Dual stack from one address or none: a gets `--iface veth0`, b `--public-ip <IPv4>`, c
/// `--public-ipv6 <IPv6>`; each finds the other address on veth0 by itself (never the
/// link-local one).
#[test]
fn dual_stack_underlay_found_on_the_interface() {
    require_root!();
    let mut bed = testbed(3, Underlay::DualStack);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, false));
    let publish = [Publish::Iface, Publish::Ipv4, Publish::Ipv6Flag];
    let nodes = start_nodes(&mut bed, &store, &publish);
    for (i, node) in nodes.iter().enumerate() {
        let lease = store.lease_json(node);
        assert_eq!(lease["PublicIP"], underlay(&bed, i, Family::V4), "{lease}");
        assert_eq!(
            lease["PublicIPv6"],
            underlay(&bed, i, Family::V6),
            "{lease}"
        );
        assert_eq!(subnet_env_mtu(node), mtu6(Backend::Vxlan));
        let other = (i + 1) % 3;
        for family in [Family::V4, Family::V6] {
            let r = route(&nodes[other], &subnet(node, family));
            assert_eq!(r["public_ip"], underlay(&bed, i, family), "{r}");
        }
    }
    let meter = UnderlayMeter::install(&bed, Backend::Vxlan);
    for (i, j) in [(0, 1), (1, 2), (2, 0)] {
        ping_both_families(&bed, &nodes, i, j, mtu6(Backend::Vxlan));
        let path = Path {
            inner: Family::V6,
            outer: Family::V6,
        };
        stream_over(&bed, &meter, &nodes, (i, j), path);
    }
    assert_running(&mut bed, &nodes);
}

/// Two vxlan nodes whose pods of both families travel over the `outer` underlay: each node
/// routes both of the other's subnets to its `outer` address, ping works both ways at the
/// IPv6 underlay's MTU, and a verified stream of each family crosses `outer` both ways.
fn both_families_over(bed: &mut Testbed, nodes: &[LeasedNode], outer: Family) {
    for (i, j) in [(0, 1), (1, 0)] {
        for family in [Family::V4, Family::V6] {
            let r = route(&nodes[i], &subnet(&nodes[j], family));
            assert_eq!(r["public_ip"], underlay(bed, j, outer), "{i} -> {j}: {r}");
        }
    }
    ping_both_families(bed, nodes, 0, 1, mtu6(Backend::Vxlan));
    let meter = UnderlayMeter::install(bed, Backend::Vxlan);
    for inner in [Family::V4, Family::V6] {
        let path = Path { inner, outer };
        stream_over(bed, &meter, nodes, (0, 1), path);
        stream_over(bed, &meter, nodes, (1, 0), path);
    }
    assert_running(bed, nodes);
}

/// A dual-stack node and an IPv6-only one: each reaches the other's subnets of both families
/// over IPv6 (the IPv6-only node's PublicIP, 0.0.0.0, is no address).
#[test]
fn a_dual_stack_node_and_an_ipv6_only_node() {
    require_root!();
    let mut bed = testbed(2, Underlay::DualStack);
    remove_underlay(&bed, 1, Family::V4);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, false));
    let nodes = start_nodes(&mut bed, &store, &[Publish::DualStack, Publish::Ipv6]);
    assert_eq!(store.lease_json(&nodes[1])["PublicIP"], "0.0.0.0");
    both_families_over(&mut bed, &nodes, Family::V6);
}

/// A dual-stack network where b's underlay has no IPv6 address: b's lease has no PublicIPv6,
/// the subnet file the IPv4 MTU, and IPv6 pods travel between a and b over IPv4 (weft's own
/// dual stack), both ways.
#[test]
fn a_dual_stack_node_and_an_ipv4_only_node() {
    require_root!();
    let mut bed = testbed(2, Underlay::DualStack);
    remove_underlay(&bed, 1, Family::V6);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, false));
    let nodes = start_nodes(&mut bed, &store, &[Publish::DualStack, Publish::Ipv4]);
    let lease = store.lease_json(&nodes[1]);
    assert_eq!(lease["PublicIPv6"], Value::Null, "{lease}");
    assert_eq!(
        subnet_env_mtu(&nodes[1]),
        UNDERLAY_MTU - Backend::Vxlan.overhead() as u32
    );
    both_families_over(&mut bed, &nodes, Family::V4);
}

/// An IPv6-only underlay under an IPv4-only network (no EnableIPv6), vxlan: the lease still
/// says `"PublicIP":"0.0.0.0"` and the PublicIPv6, and the IPv4 pods cross IPv6.
#[test]
fn an_ipv4_network_on_an_ipv6_only_underlay() {
    require_root!();
    let mut bed = testbed(2, Underlay::Ipv6);
    let config = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0",
        "Backend": {"Type": "vxlan"}}"#;
    let store = Store::dir(&bed, config);
    let nodes = start_nodes(&mut bed, &store, &[Publish::Ipv6, Publish::Ipv6]);
    for (i, node) in nodes.iter().enumerate() {
        let lease = store.lease_json(node);
        assert_eq!(lease["PublicIP"], "0.0.0.0", "{lease}");
        assert_eq!(
            lease["PublicIPv6"],
            underlay(&bed, i, Family::V6),
            "{lease}"
        );
        assert_eq!(subnet_env_mtu(node), mtu6(Backend::Vxlan));
        assert!(node.subnet6().expect("subnet file").is_none());
        let r = route(&nodes[1 - i], &subnet(node, Family::V4));
        assert_eq!(r["public_ip"], underlay(&bed, i, Family::V6), "{r}");
    }
    let meter = UnderlayMeter::install(&bed, Backend::Vxlan);
    for (from, to) in [(0, 1), (1, 0)] {
        let end = End {
            ns: bed.node(from).ns(),
            ip: tun(&nodes[from], Family::V4),
        };
        common::ping_both_sizes(end, tun(&nodes[to], Family::V4), mtu6(Backend::Vxlan));
        let path = Path {
            inner: Family::V4,
            outer: Family::V6,
        };
        stream_over(&bed, &meter, &nodes, (from, to), path);
    }
    assert_running(&mut bed, &nodes);
}

/// `ip [-6] route show <subnet>` in node `i`'s namespace.
fn kernel_route(bed: &Testbed, i: usize, subnet: &str) -> String {
    let family = if subnet.contains(':') { "-6" } else { "-4" };
    bed.node(i)
        .ip(&[family, "route", "show", subnet])
        .expect("ip route show")
}

/// Waits until node `i` routes `subnet` via `gateway` in the kernel.
fn wait_kernel_route(bed: &Testbed, i: usize, subnet: &str, gateway: &str) {
    let want = format!("via {gateway} ");
    let start = std::time::Instant::now();
    loop {
        let shown = kernel_route(bed, i, subnet);
        if shown.contains(&want) {
            return;
        }
        assert!(
            start.elapsed() < ROUTE_DEADLINE,
            "node {i}: no route {subnet} {want:?} in {ROUTE_DEADLINE:?}: {shown:?}"
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

/// DirectRouting on a dual-stack underlay, c behind a router (see the module documentation).
#[test]
fn direct_routing_on_a_dual_stack_underlay() {
    require_root!();
    let options = Options {
        third_behind_router: true,
        underlay: Underlay::DualStack,
        ..Options::default()
    };
    let mut bed =
        Testbed::with_options(3, common::binaries_with_weftd(), options).expect("testbed");
    assert_eq!(underlay(&bed, 2, Family::V6), "fd99:0:0:1::3");
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, true));
    let nodes = start_nodes(&mut bed, &store, &[Publish::DualStack; 3]);

    // a <-> b: both families in the kernel, via the peer's address of that family.
    for (i, j) in [(0, 1), (1, 0)] {
        for family in [Family::V4, Family::V6] {
            let s = subnet(&nodes[j], family);
            let r = route(&nodes[i], &s);
            assert_eq!(r["path"], "direct", "{i} -> {j}: {r}");
            assert_eq!(r["public_ip"], underlay(&bed, j, family), "{r}");
            wait_kernel_route(&bed, i, &s, &underlay(&bed, j, family));
        }
    }
    // a, b <-> c: the overlay, no kernel route.
    for (i, j) in [(0, 2), (2, 0), (1, 2), (2, 1)] {
        for family in [Family::V4, Family::V6] {
            let s = subnet(&nodes[j], family);
            let r = route(&nodes[i], &s);
            assert_eq!(r["path"], "overlay", "{i} -> {j}: {r}");
            assert_eq!(r["public_ip"], underlay(&bed, j, family), "{r}");
            let shown = kernel_route(&bed, i, &s);
            assert!(!shown.contains(" via "), "{i} -> {j}: {shown:?}");
        }
    }

    // The direct pair: the pumps carry none of it.
    let before: Vec<(u64, u64)> = nodes[..2].iter().map(pump_datagrams).collect();
    ping_both_families(&bed, &nodes, 0, 1, mtu6(Backend::Vxlan));
    for family in [Family::V4, Family::V6] {
        let end = |i: usize| End {
            ns: bed.node(i).ns(),
            ip: tun(&nodes[i], family),
        };
        common::stream(end(0), end(1), STREAM);
    }
    let after: Vec<(u64, u64)> = nodes[..2].iter().map(pump_datagrams).collect();
    assert_eq!(before, after, "the pumps carried a <-> b traffic");

    // The overlay pairs, c's IPv6 subnet over the routed IPv6 underlay.
    ping_both_families(&bed, &nodes, 0, 2, mtu6(Backend::Vxlan));
    ping_both_families(&bed, &nodes, 1, 2, mtu6(Backend::Vxlan));
    let meter = UnderlayMeter::install(&bed, Backend::Vxlan);
    for family in [Family::V4, Family::V6] {
        let path = Path {
            inner: family,
            outer: family,
        };
        stream_over(&bed, &meter, &nodes, (0, 2), path);
        stream_over(&bed, &meter, &nodes, (2, 1), path);
    }
    // An IPv6 ping a -> b still takes the kernel route after all that.
    let before = pump_datagrams(&nodes[0]);
    let a = End {
        ns: bed.node(0).ns(),
        ip: tun(&nodes[0], Family::V6),
    };
    traffic::ping(a, tun(&nodes[1], Family::V6), 2, None).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(pump_datagrams(&nodes[0]), before, "a -> b took the overlay");
    assert_running(&mut bed, &nodes);
}

/// An upgrade (`--upgrade`) of a dual-stack node: the successor takes over the sockets bound
/// for both families, and both keep working over their own underlays, both ways.
#[test]
fn an_upgrade_on_a_dual_stack_underlay_keeps_both_families() {
    require_root!();
    let mut bed = testbed(2, Underlay::DualStack);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, false));
    let nodes = start_nodes(&mut bed, &store, &[Publish::DualStack, Publish::DualStack]);
    for (i, j) in [(0, 1), (1, 0)] {
        for family in [Family::V4, Family::V6] {
            route(&nodes[i], &subnet(&nodes[j], family));
        }
    }
    let key = nodes[0].lease_key().expect("lease key");
    let mut args = nodes[0].args.clone();
    args.push("--upgrade".to_owned());
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    let new = bed
        .spawn(0, "leased-a-upgraded", &weftd, &args)
        .expect("spawn");
    bed.process(new)
        .wait_for_line(WEFTD_READY, READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let log = bed.process(new).log();
    assert!(log.contains("took over TUN"), "{log}");
    let old = bed.process(nodes[0].handle);
    let status = old
        .wait(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("the old weftd did not go: {e:#}"));
    assert!(status.success(), "old weftd: {status}\n{}", old.log());
    assert_eq!(nodes[0].lease_key().expect("lease key"), key);

    let meter = UnderlayMeter::install(&bed, Backend::Vxlan);
    for family in [Family::V4, Family::V6] {
        let path = Path {
            inner: family,
            outer: family,
        };
        stream_over(&bed, &meter, &nodes, (0, 1), path);
        stream_over(&bed, &meter, &nodes, (1, 0), path);
    }
    ping_both_families(&bed, &nodes, 0, 1, mtu6(Backend::Vxlan));
    let p = bed.process(new);
    assert!(
        p.try_status().is_none(),
        "the successor exited:\n{}",
        p.tail()
    );
}

/// host-gw on a dual-stack underlay: the lease has the PublicIPv6, the subnet file the
/// underlay's MTU, and each node routes the other's IPv4 subnet via its PublicIP and its IPv6
/// subnet via its PublicIPv6 in the kernel; CNI-bridge addresses of both families reach each
/// other.
#[test]
fn host_gw_on_a_dual_stack_underlay() {
    require_root!();
    let mut bed = testbed(2, Underlay::DualStack);
    let config = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "EnableIPv6": true,
        "IPv6Network": "fd00:10:244::/48", "IPv6SubnetMin": "fd00:10:244:100::",
        "Backend": {"Type": "host-gw"}}"#;
    let store = Store::dir(&bed, config);
    let nodes = start_nodes(&mut bed, &store, &[Publish::DualStack, Publish::DualStack]);
    for (i, node) in nodes.iter().enumerate() {
        let lease = store.lease_json(node);
        assert_eq!(lease["BackendType"], "host-gw", "{lease}");
        assert_eq!(
            lease["PublicIPv6"],
            underlay(&bed, i, Family::V6),
            "{lease}"
        );
        assert_eq!(subnet_env_mtu(node), UNDERLAY_MTU);
    }
    for (i, j) in [(0, 1), (1, 0)] {
        for family in [Family::V4, Family::V6] {
            let s = subnet(&nodes[j], family);
            let r = route(&nodes[i], &s);
            assert_eq!(r["path"], "direct", "{i} -> {j}: {r}");
            wait_kernel_route(&bed, i, &s, &underlay(&bed, j, family));
        }
    }
    // A CNI bridge with each subnet's first host, as the bridge plugin sets it up.
    let pods: Vec<[IpAddr; 2]> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let v4 = node.tun_ip().expect("subnet");
            let v4 = IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) + 1));
            let v6 = node.tun_ip6().expect("subnet6");
            let v6 = IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) + 1));
            let ns = bed.node(i).ns();
            for args in [
                &["link", "add", "cni0", "type", "bridge"][..],
                &["addr", "add", &format!("{v4}/24"), "dev", "cni0"],
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    "cni0",
                    "nodad",
                ],
                &["link", "set", "cni0", "up"],
            ] {
                ns.exec_checked("ip", args).expect("cni0");
            }
            [v4, v6]
        })
        .collect();
    let at = |i: usize, k: usize| End {
        ns: bed.node(i).ns(),
        ip: pods[i][k],
    };
    for k in [0, 1] {
        traffic::ping(at(0, k), pods[1][k], 2, None).unwrap_or_else(|e| panic!("a -> b: {e:#}"));
        traffic::ping(at(1, k), pods[0][k], 2, None).unwrap_or_else(|e| panic!("b -> a: {e:#}"));
        common::stream(at(0, k), at(1, k), STREAM);
    }
    assert_running(&mut bed, &nodes);
}

/// DirectRouting on an IPv6-only underlay: the IPv6 subnets are routed in the kernel via the
/// peer's PublicIPv6; an IPv4 subnet has no underlay address of its family and stays on the
/// overlay (over IPv6), and the pumps carry only that.
#[test]
fn direct_routing_on_an_ipv6_only_underlay() {
    require_root!();
    let mut bed = testbed(2, Underlay::Ipv6);
    let store = Store::dir(&bed, &dual_stack_config(Backend::Vxlan, true));
    let nodes = start_nodes(&mut bed, &store, &[Publish::Ipv6, Publish::Ipv6]);
    for (i, j) in [(0, 1), (1, 0)] {
        let s6 = subnet(&nodes[j], Family::V6);
        let r = route(&nodes[i], &s6);
        assert_eq!(r["path"], "direct", "{i} -> {j}: {r}");
        wait_kernel_route(&bed, i, &s6, &underlay(&bed, j, Family::V6));
        let s4 = subnet(&nodes[j], Family::V4);
        let r = route(&nodes[i], &s4);
        assert_eq!(r["path"], "overlay", "{i} -> {j}: {r}");
        assert_eq!(r["public_ip"], underlay(&bed, j, Family::V6), "{r}");
        let shown = kernel_route(&bed, i, &s4);
        assert!(!shown.contains(" via "), "{i} -> {j}: {shown:?}");
    }
    let end = |i: usize, family| End {
        ns: bed.node(i).ns(),
        ip: tun(&nodes[i], family),
    };
    // IPv6: the kernel route, not a datagram from the pumps.
    let before: Vec<(u64, u64)> = nodes.iter().map(pump_datagrams).collect();
    for (i, j) in [(0, 1), (1, 0)] {
        traffic::ping(end(i, Family::V6), tun(&nodes[j], Family::V6), 2, None)
            .unwrap_or_else(|e| panic!("{i} -> {j}: {e:#}"));
    }
    common::stream(end(0, Family::V6), end(1, Family::V6), STREAM);
    let after: Vec<(u64, u64)> = nodes.iter().map(pump_datagrams).collect();
    assert_eq!(before, after, "the pumps carried IPv6 pod traffic");
    // IPv4: the overlay over IPv6.
    let meter = UnderlayMeter::install(&bed, Backend::Vxlan);
    for (i, j) in [(0, 1), (1, 0)] {
        common::ping_both_sizes(
            end(i, Family::V4),
            tun(&nodes[j], Family::V4),
            mtu6(Backend::Vxlan),
        );
        let path = Path {
            inner: Family::V4,
            outer: Family::V6,
        };
        stream_over(&bed, &meter, &nodes, (i, j), path);
    }
    assert_running(&mut bed, &nodes);
}

/// DirectRouting's kernel routes of both families follow the leases: SIGTERM takes a node's
/// own (IPv4 and IPv6) away, a lease removed from the store takes its routes away on the
/// other node. vxlan and host-gw.
#[test]
fn direct_routes_of_both_families_follow_the_leases() {
    require_root!();
    let host_gw = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "EnableIPv6": true,
        "IPv6Network": "fd00:10:244::/48", "IPv6SubnetMin": "fd00:10:244:100::",
        "Backend": {"Type": "host-gw"}}"#;
    for config in [dual_stack_config(Backend::Vxlan, true), host_gw.to_owned()] {
        let mut bed = testbed(2, Underlay::DualStack);
        let store = Store::dir(&bed, &config);
        let nodes = start_nodes(&mut bed, &store, &[Publish::DualStack, Publish::DualStack]);
        let subnets: Vec<[String; 2]> = nodes
            .iter()
            .map(|n| [subnet(n, Family::V4), subnet(n, Family::V6)])
            .collect();
        for (i, j) in [(0, 1), (1, 0)] {
            for (k, family) in [Family::V4, Family::V6].into_iter().enumerate() {
                wait_kernel_route(&bed, i, &subnets[j][k], &underlay(&bed, j, family));
            }
        }
        let (status, _) = bed.process(nodes[1].handle).stop().expect("b stopped");
        assert!(status.success(), "weftd b exited {status}");
        for s in &subnets[0] {
            let shown = kernel_route(&bed, 1, s);
            assert!(!shown.contains(" via "), "b left {shown:?} after SIGTERM");
        }
        let Store::Dir(dir) = &store else {
            unreachable!("a lease directory")
        };
        let key = nodes[1].lease_key().expect("lease key");
        std::fs::remove_file(dir.join("subnets").join(&key)).expect("rm lease");
        let start = std::time::Instant::now();
        for s in &subnets[1] {
            while kernel_route(&bed, 0, s).contains(" via ") {
                assert!(
                    start.elapsed() < ROUTE_DEADLINE,
                    "a kept its route to {s} after the lease {key} went: {config}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let (status, _) = bed.process(nodes[0].handle).stop().expect("a stopped");
        assert!(status.success(), "weftd a exited {status}");
    }
}
