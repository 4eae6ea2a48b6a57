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

use engine::model::Backend;
use engine::underlay::{UdpConfig, UdpSocket};
use weft_testkit::require_root;
use weftctl::testbed::{traffic, Options, Overlay, Testbed};

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
