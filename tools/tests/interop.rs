//! Interop: weftd talks to peers it did not write. Node a runs weftd; node b
//! runs the kernel's VXLAN device set up exactly as flanneld's vxlan backend sets up
//! `flannel.1`, or `weftctl forward-udp`, flannel's one-packet-per-syscall udp data
//! path. Ping (default size and full MTU) and a verified TCP stream both ways.
//!
//! The underlay veths keep their default offloads (as in kind / k3d / DinD), so the
//! kernel node hands weftd inner TCP segments whose checksum is only partial; weftd must
//! deliver them (its `rx_csum_partial` counter rises) and TCP kernel -> weftd must not stall.
//! The kernel's TSO and UDP GSO super-packets also cross the veth whole (weftd hands the TCP
//! ones to its TUN as GSO packets and cuts the UDP ones into their datagrams). Both I/O drivers run it; and it runs with the veths' tx offload off (the
//! kernel completes every checksum and segments before the veth, the counter stays near
//! zero), so both settings are covered.

mod common;

use engine::config::DriverArg;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use engine::model::{format_mac, Backend, Cidr};
use engine::underlay::{UdpConfig, UdpSocket};
use weft_testkit::require_root;
use weftctl::testbed::leased::LeasedNode;
use weftctl::testbed::{traffic, Options, Overlay, Testbed, UNDERLAY_DEV};

/// Bytes of each IPv6 stream (the IPv4 ones are `common::stream_bytes`).
const STREAM6_BYTES: u64 = 64 << 20;
/// Datagrams in one UDP GSO send, and their size.
const GSO_DATAGRAMS: usize = 20;
const GSO_SIZE: usize = 1000;

/// One UDP GSO send (`UDP_SEGMENT`) of [`GSO_DATAGRAMS`] numbered datagrams from the kernel
/// node's pod to the weftd node's pod: every datagram must arrive intact. (With the veth's
/// default offloads it reaches weftd as one VXLAN frame holding all of them.)
fn udp_gso_from_the_kernel_node(bed: &Testbed, from: IpAddr, to: IpAddr) {
    let to = SocketAddr::new(to, 7700);
    let (bound_tx, bound_rx) = mpsc::channel();
    let receiver = bed.node(0).ns().spawn_inside(move || {
        let sock = std::net::UdpSocket::bind(to)?;
        sock.set_read_timeout(Some(Duration::from_secs(3)))?;
        bound_tx.send(()).ok();
        let mut got = vec![false; GSO_DATAGRAMS];
        let mut buf = [0u8; 2 * GSO_SIZE];
        while !got.iter().all(|g| *g) {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => break,
            };
            let i = usize::from(buf[0]);
            let intact =
                n == GSO_SIZE && i < GSO_DATAGRAMS && buf[..n].iter().all(|b| *b == buf[0]);
            anyhow::ensure!(
                intact,
                "a datagram arrived damaged: {} bytes, {:?}...",
                n,
                &buf[..8]
            );
            got[i] = true;
        }
        Ok(got)
    });
    bound_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the receiver bound its socket");
    bed.node(1)
        .ns()
        .spawn_inside(move || {
            let config = UdpConfig {
                reuse_port: false,
                ..UdpConfig::default()
            };
            let sock = UdpSocket::bind(SocketAddr::new(from, 0), &config)?;
            let payload: Vec<u8> = (0..GSO_DATAGRAMS * GSO_SIZE)
                .map(|i| (i / GSO_SIZE) as u8)
                .collect();
            sock.send_gso(to, &payload, GSO_SIZE)?;
            Ok(())
        })
        .join()
        .expect("the sender thread")
        .unwrap_or_else(|e| panic!("UDP GSO send {from} -> {to}: {e:#}"));
    let got = receiver
        .join()
        .expect("the receiver thread")
        .unwrap_or_else(|e| panic!("UDP GSO {from} -> {to}: {e:#}"));
    let missing: Vec<usize> = (0..GSO_DATAGRAMS).filter(|i| !got[*i]).collect();
    assert!(
        missing.is_empty(),
        "UDP GSO {from} -> {to}: datagrams {missing:?} of {GSO_DATAGRAMS} did not arrive"
    );
}

fn start(weftd: Overlay, peer: Overlay, options: Options) -> Testbed {
    let mut bed =
        Testbed::with_options(2, common::binaries_with_weftd(), options).expect("testbed");
    bed.start(&[weftd, peer])
        .expect("weftd on a, the peer on b");
    bed
}

/// What weftd (node a) received: (inner packets that arrived with a partial checksum,
/// datagrams).
fn partial_checksums(bed: &Testbed) -> (u64, u64) {
    let stats = bed.control(0, "stats").unwrap_or_else(|e| panic!("{e:#}"));
    let pump = |key: &str| {
        stats["pump"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no pump.{key} in weftd's stats: {stats}"))
    };
    (pump("rx_csum_partial"), pump("udp_rx_datagrams"))
}

/// weftd vxlan on a, kernel flannel.1 on b: the interop check (IPv4 ping and TCP both ways),
/// plus UDP datagrams of every size and TCP both ways over IPv4 and IPv6, and a UDP GSO send
/// from the kernel node; returns weftd's (partial checksums, datagrams received).
fn weftd_and_kernel_flannel_1(driver: DriverArg, options: Options) -> (u64, u64) {
    let mut bed = start(
        Overlay::Weftd {
            backend: Backend::Vxlan,
            driver,
        },
        Overlay::KernelVxlan,
        options,
    );
    common::interop_check(&mut bed);
    let mtu = bed.overlay_mtu();
    let (a, b) = (bed.node(0), bed.node(1));
    // UDP datagrams of every size both ways (each echoed and compared): the kernel node's
    // leave partial too.
    for (from, to, v4) in [
        (b.pod(), a.pod(), true),
        (a.pod(), b.pod(), true),
        (b.pod6(), a.pod6(), false),
        (a.pod6(), b.pod6(), false),
    ] {
        traffic::udp_echo(from, to, &common::udp_sizes(mtu, v4))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    udp_gso_from_the_kernel_node(&bed, b.pod_ip(), a.pod_ip());
    udp_gso_from_the_kernel_node(&bed, b.pod_ip6(), a.pod_ip6());
    let (a, b) = (bed.node(0), bed.node(1));
    common::stream(b.pod6(), a.pod6(), STREAM6_BYTES);
    common::stream(a.pod6(), b.pod6(), STREAM6_BYTES);
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
    let (partial, datagrams) = partial_checksums(&bed);
    eprintln!(
        "weftd received {datagrams} datagrams, {partial} inner packets with a partial checksum \
         ({driver:?}, {options:?})"
    );
    (partial, datagrams)
}

/// With the veth's default offloads every TCP segment of the kernel node is partial, so most
/// of what weftd received was (pings are not TCP or UDP).
fn assert_mostly_partial((partial, datagrams): (u64, u64)) {
    assert!(
        partial > 0 && partial * 2 > datagrams,
        "with the veth's default tx offload the kernel node sends partial checksums, but weftd \
         counted {partial} of {datagrams} datagrams"
    );
}

#[test]
fn vxlan_weftd_and_kernel_flannel_1() {
    require_root!();
    assert!(
        Options::default().veth_tx_offload,
        "the default is the veth's own"
    );
    assert_mostly_partial(weftd_and_kernel_flannel_1(
        DriverArg::Poll,
        Options::default(),
    ));
}

#[test]
fn vxlan_weftd_uring_and_kernel_flannel_1() {
    require_root!();
    assert_mostly_partial(weftd_and_kernel_flannel_1(
        DriverArg::Uring,
        Options::default(),
    ));
}

#[test]
fn vxlan_weftd_and_kernel_flannel_1_without_veth_tx_offload() {
    require_root!();
    let (partial, datagrams) = weftd_and_kernel_flannel_1(
        DriverArg::Auto,
        Options {
            veth_tx_offload: false,
            ..Options::default()
        },
    );
    // The kernel completes every checksum before the veth; a full checksum equals the
    // partial form about once in 65536 packets (and is counted, harmlessly).
    assert!(
        partial * 1000 < datagrams,
        "with tx offload off weftd still counted {partial} of {datagrams} datagrams partial"
    );
}

#[test]
fn udp_weftd_and_flannel_udp_forwarder() {
    require_root!();
    let mut bed = start(
        Overlay::Weftd {
            backend: Backend::Udp,
            driver: DriverArg::Auto,
        },
        Overlay::Forwarder,
        Options::default(),
    );
    common::interop_check(&mut bed);
}

/// The IPv6 underlay address of testbed node `i`.
fn underlay6(i: usize) -> String {
    format!("fd99::{}", i + 1)
}

/// A dual-stack underlay, lease mode: weftd on a (lease directory, EnableIPv6, IPv4 and IPv6
/// on veth0) and, on b, the two kernel VXLAN devices flanneld's vxlan backend makes for dual
/// stack: `flannel.1` over IPv4 and `flannel-v6.1` over IPv6 with a MAC of its own, and b's
/// lease as flanneld writes it (PublicIPv6, BackendV6Data). weftd must publish its PublicIPv6
/// and send IPv6 pods to b's PublicIPv6 with BackendV6Data's MAC (flannel-v6.1 drops frames
/// for another MAC), IPv4 pods over IPv4: ping and TCP both ways over each.
#[test]
fn vxlan_weftd_and_kernel_flannel_v6_1_on_a_dual_stack_underlay() {
    require_root!();
    let binaries = common::binaries_with_weftd();
    let weftd = binaries.weftd.clone().expect("weftd");
    let mut bed = Testbed::new(2, binaries).expect("testbed");
    for i in 0..2 {
        let addr = format!("{}/64", underlay6(i));
        bed.node(i)
            .ip(&["-6", "addr", "add", &addr, "dev", UNDERLAY_DEV, "nodad"])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let leases = bed.dir().join("leases");
    std::fs::create_dir_all(leases.join("subnets")).expect("lease dir");
    std::fs::write(
        leases.join("config"),
        r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "EnableIPv6": true,
            "IPv6Network": "fd00:10:244::/48", "IPv6SubnetMin": "fd00:10:244:100::",
            "Backend": {"Type": "vxlan"}}"#,
    )
    .expect("config");
    // b, as flanneld: 10.244.2.0/24 and fd00:10:244:2::/64, two VtepMACs.
    let b = bed.node(1);
    let (b4, b6) = (b.subnet(), b.subnet6());
    let mac_b4 = format_mac(&b.vtep_mac());
    let mac_b6 = "0e:66:00:00:00:02";
    let b_key = format!(
        "{}&{}",
        b4.to_string().replace('/', "-"),
        b6.to_string().replace('/', "-")
    );
    std::fs::write(
        leases.join("subnets").join(&b_key),
        format!(
            r#"{{"PublicIP":"{}","PublicIPv6":"{}","BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac_b4}"}},"BackendV6Data":{{"VNI":1,"VtepMAC":"{mac_b6}"}}}}"#,
            b.underlay(),
            underlay6(1)
        ),
    )
    .expect("b's lease");

    let store = ["--lease-dir".to_owned(), leases.display().to_string()];
    let a = LeasedNode::start(&mut bed, &weftd, 0, &store, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    // a's lease as weftd wrote it.
    let (a_key, a_lease) = std::fs::read_dir(leases.join("subnets"))
        .expect("subnets")
        .map(|e| e.expect("entry"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| *name != b_key)
        .map(|name| {
            let text = std::fs::read_to_string(leases.join("subnets").join(&name)).expect("read");
            (
                name,
                serde_json::from_str::<serde_json::Value>(&text).expect("json"),
            )
        })
        .next()
        .expect("a's lease");
    assert_eq!(
        a_lease["PublicIP"],
        bed.node(0).underlay().to_string(),
        "{a_lease}"
    );
    assert_eq!(a_lease["PublicIPv6"], underlay6(0), "{a_lease}");
    let mac_a4 = a_lease["BackendData"]["VtepMAC"]
        .as_str()
        .expect("mac")
        .to_owned();
    let mac_a6 = a_lease["BackendV6Data"]["VtepMAC"]
        .as_str()
        .expect("BackendV6Data")
        .to_owned();
    let (a4, a6) = a_key.split_once('&').expect("a dual-stack key");
    let a4: Cidr = a4.replacen('-', "/", 1).parse().expect("a's subnet");
    let a6: Cidr = a6
        .replacen("::-", "::/", 1)
        .parse()
        .expect("a's IPv6 subnet");

    // b: flanneld's two devices, their addresses and the entries for a.
    let b = bed.node(1);
    let run = |args: &[&str]| b.ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e:#}"));
    for (dev, local, mac, addr) in [
        (
            "flannel.1",
            b.underlay().to_string(),
            mac_b4.as_str(),
            format!("{}/32", b4.addr()),
        ),
        (
            "flannel-v6.1",
            underlay6(1),
            mac_b6,
            format!("{}/128", b6.addr()),
        ),
    ] {
        run(&[
            "link",
            "add",
            dev,
            "type",
            "vxlan",
            "id",
            "1",
            "local",
            &local,
            "dev",
            UNDERLAY_DEV,
            "dstport",
            "8472",
            "nolearning",
        ]);
        run(&["link", "set", dev, "address", mac, "mtu", "1430", "up"]);
        run(&["addr", "add", &addr, "dev", dev, "nodad"]);
    }
    let (gw4, gw6) = (a4.addr().to_string(), a6.addr().to_string());
    run(&[
        "neigh",
        "replace",
        &gw4,
        "lladdr",
        &mac_a4,
        "dev",
        "flannel.1",
        "nud",
        "permanent",
    ]);
    run(&[
        "-6",
        "neigh",
        "replace",
        &gw6,
        "lladdr",
        &mac_a6,
        "dev",
        "flannel-v6.1",
        "nud",
        "permanent",
    ]);
    b.ns()
        .exec_checked(
            "bridge",
            &[
                "fdb",
                "append",
                &mac_a4,
                "dev",
                "flannel.1",
                "dst",
                &bed.node(0).underlay().to_string(),
            ],
        )
        .expect("fdb v4");
    b.ns()
        .exec_checked(
            "bridge",
            &[
                "fdb",
                "append",
                &mac_a6,
                "dev",
                "flannel-v6.1",
                "dst",
                &underlay6(0),
            ],
        )
        .expect("fdb v6");
    run(&[
        "route",
        "replace",
        &a4.to_string(),
        "via",
        &gw4,
        "dev",
        "flannel.1",
        "onlink",
    ]);
    run(&[
        "-6",
        "route",
        "replace",
        &a6.to_string(),
        "via",
        &gw6,
        "dev",
        "flannel-v6.1",
        "onlink",
    ]);

    a.wait_route(&underlay6(1), true, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let end = |i: usize, ip: IpAddr| traffic::End {
        ns: bed.node(i).ns(),
        ip,
    };
    let (a_ip4, a_ip6, b_ip4, b_ip6) = (a4.addr(), a6.addr(), b4.addr(), b6.addr());
    let mtu = 1430;
    common::ping_both_sizes(end(0, a_ip4), b_ip4, mtu);
    common::ping_both_sizes(end(1, b_ip4), a_ip4, mtu);
    common::ping_both_sizes(end(0, a_ip6), b_ip6, mtu);
    common::ping_both_sizes(end(1, b_ip6), a_ip6, mtu);
    common::stream(end(0, a_ip6), end(1, b_ip6), STREAM6_BYTES);
    common::stream(end(1, b_ip6), end(0, a_ip6), STREAM6_BYTES);
    common::stream(end(0, a_ip4), end(1, b_ip4), STREAM6_BYTES);

    // Each family went to its own underlay address of b.
    let stats = a.stats().expect("stats");
    let peer = |ip: &str| {
        stats["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["public_ip"] == ip))
            .unwrap_or_else(|| panic!("no peer {ip}: {stats}"))
            .clone()
    };
    // (The IPv6 streams went both ways, the IPv4 one from a: b sent its ACKs.)
    for (ip, subnet, rx_min) in [
        (b.underlay().to_string(), b4, 1),
        (underlay6(1), b6, STREAM6_BYTES / 2),
    ] {
        let p = peer(&ip);
        assert_eq!(p["subnets"], serde_json::json!([subnet.to_string()]), "{p}");
        let count = |key: &str| p[key].as_u64().unwrap_or_else(|| panic!("{key}: {p}"));
        assert!(count("tx_bytes") >= STREAM6_BYTES / 2, "{p}");
        assert!(count("rx_bytes") >= rx_min, "{p}");
    }
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}
