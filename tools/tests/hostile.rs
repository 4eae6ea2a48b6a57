//! Hostile datagrams: malformed, truncated, oversized and spoofed datagrams sent to weftd's port,
//! from the peer's underlay address and from an address that is no peer, are dropped and
//! counted under the right reason (the control socket's `stats`), never reach the pod, and
//! traffic between the nodes keeps flowing.
//!
//! Every hostile inner packet is a UDP datagram to a sink socket in node a's pod, with valid
//! checksums, so a packet that slipped through would be seen there. The expected reason of a
//! malformed datagram is what `encap`'s own decapsulation says about it.

mod common;

use engine::config::DriverArg;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use encap::backend::{udp_decap, VxlanDecap, VxlanEncap};
use engine::model::{Backend, MAX_UDP_PAYLOAD_V4};
use weft_testkit::packet;
use weft_testkit::require_root;
use weftctl::control;
use weftctl::testbed::{traffic, Overlay, Testbed, UNDERLAY_DEV, VNI};

/// What the one legitimate datagram to the sink carries.
const LEGIT: &[u8] = b"legitimate datagram through the overlay";
/// The sink's port in node a's pod.
const SINK_PORT: u16 = 9999;
/// An address on node b's underlay that is no peer.
const STRANGER: Ipv4Addr = Ipv4Addr::new(192, 168, 250, 99);
/// How long a drop may take to show in the counters.
const COUNT_WAIT: Duration = Duration::from_secs(3);

/// The payload of `len` bytes the hostile packets carry.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// An IPv4/UDP packet to the sink with `payload_len` bytes and valid checksums.
fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> Vec<u8> {
    packet::ipv4_udp(src, dst, 40000, SINK_PORT, &payload(payload_len))
}

/// An IPv6/UDP packet to the sink with `payload_len` bytes and a valid checksum.
fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize) -> Vec<u8> {
    packet::ipv6_udp(src, dst, 40000, SINK_PORT, &payload(payload_len))
}

/// One hostile datagram and what weftd must make of it.
struct Case {
    name: &'static str,
    from: Ipv4Addr,
    datagram: Vec<u8>,
    /// The drop reason that must rise; `None`: any receive-side reason will do.
    reason: Option<&'static str>,
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => panic!("IPv4 expected"),
    }
}

fn cases(bed: &Testbed, backend: Backend) -> Vec<Case> {
    let (a, b) = (bed.node(0), bed.node(1));
    let peer = b.underlay();
    let a_pod = v4(a.pod_ip());
    let b_pod = v4(b.pod_ip());
    let IpAddr::V6(a_pod6) = a.pod_ip6() else {
        panic!("IPv6 expected")
    };
    let good = ipv4_udp(b_pod, a_pod, 100);
    let spoofed = ipv4_udp(Ipv4Addr::new(10, 244, 9, 9), a_pod, 100);
    let spoofed_own = ipv4_udp(Ipv4Addr::new(10, 244, 1, 50), a_pod, 100);
    let spoofed6 = ipv6_udp("fd00:10:244:9::1".parse().expect("v6"), a_pod6, 100);
    let oversized = ipv4_udp(b_pod, a_pod, 3000);
    // The largest inner packet one datagram can carry.
    let wrapping = match backend {
        Backend::Udp => 0,
        Backend::HostGw => unreachable!("host-gw has no weftd port"),
        Backend::Vxlan => encap::backend::VXLAN_HEADER_LEN,
    };
    let huge = ipv4_udp(b_pod, a_pod, MAX_UDP_PAYLOAD_V4 - wrapping - 28);
    let mut long_claim = good.clone();
    long_claim[2..4].copy_from_slice(&1400u16.to_be_bytes());
    let mut bad_version = good.clone();
    bad_version[0] = 0x55;

    let encap = VxlanEncap {
        vni: VNI,
        local_mac: b.vtep_mac(),
        peer_mac: a.vtep_mac(),
    };
    let wrap = |inner: &[u8]| -> Vec<u8> {
        match backend {
            Backend::Udp => inner.to_vec(),
            Backend::HostGw => unreachable!("host-gw has no weftd port"),
            Backend::Vxlan => {
                let mut d = encap.header(inner.first().map_or(4, |b| b >> 4)).to_vec();
                d.extend_from_slice(inner);
                d
            }
        }
    };
    // The reason encap itself gives a malformed datagram.
    let decap_reason = |d: &[u8]| -> Option<&'static str> {
        let r = match backend {
            Backend::Udp => udp_decap(d).err(),
            Backend::HostGw => unreachable!("host-gw has no weftd port"),
            Backend::Vxlan => VxlanDecap {
                vni: VNI,
                local_mac: a.vtep_mac(),
            }
            .decap(d)
            .err(),
        };
        Some(r.expect("a malformed case that encap accepts").reason())
    };
    let malformed = |name, datagram: Vec<u8>| Case {
        name,
        from: peer,
        reason: decap_reason(&datagram),
        datagram,
    };

    let mut cases = vec![
        malformed("empty", Vec::new()),
        malformed("three bytes", vec![0x45, 0, 0]),
        malformed("truncated ip header", wrap(&good[..12])),
        malformed("ip length past the datagram", wrap(&long_claim)),
        malformed("ip version 5", wrap(&bad_version)),
        Case {
            name: "spoofed source outside the peer's subnet",
            from: peer,
            datagram: wrap(&spoofed),
            reason: Some("spoofed"),
        },
        Case {
            name: "spoofed source in our own subnet",
            from: peer,
            datagram: wrap(&spoofed_own),
            reason: Some("spoofed"),
        },
        Case {
            name: "spoofed IPv6 source",
            from: peer,
            datagram: wrap(&spoofed6),
            reason: Some("spoofed"),
        },
        Case {
            name: "valid packet from an address that is no peer",
            from: STRANGER,
            datagram: wrap(&good),
            reason: Some("unknown_peer"),
        },
        Case {
            name: "garbage from an address that is no peer",
            from: STRANGER,
            datagram: vec![0xde; 40],
            reason: Some("unknown_peer"),
        },
        Case {
            name: "inner packet larger than the MTU (3028 bytes)",
            from: peer,
            datagram: wrap(&oversized),
            reason: None,
        },
        Case {
            name: "inner packet filling a 65507-byte datagram",
            from: peer,
            datagram: wrap(&huge),
            reason: None,
        },
    ];
    if backend == Backend::Vxlan {
        let mut flags = wrap(&good);
        flags[0] = 0x0c;
        let mut vni = wrap(&good);
        vni[6] ^= 0x01;
        let mut reserved = wrap(&good);
        reserved[7] = 0x01;
        let mut dst_mac = wrap(&good);
        dst_mac[8 + 5] ^= 0x01;
        let mut own_mac = wrap(&good);
        own_mac[8 + 6..8 + 12].copy_from_slice(&a.vtep_mac());
        let mut arp = wrap(&good);
        arp[8 + 12..8 + 14].copy_from_slice(&0x0806u16.to_be_bytes());
        let mut v6_as_v4 = wrap(&spoofed6);
        v6_as_v4[8 + 12..8 + 14].copy_from_slice(&0x0800u16.to_be_bytes());
        cases.extend([
            malformed("vxlan header only", wrap(&good)[..8].to_vec()),
            malformed("vxlan reserved flag", flags),
            malformed("vxlan wrong VNI", vni),
            malformed("vxlan reserved bits", reserved),
            malformed("inner destination MAC not ours", dst_mac),
            malformed("inner source MAC is ours", own_mac),
            malformed("inner ethertype ARP", arp),
            malformed("ethertype IPv4 on an IPv6 packet", v6_as_v4),
        ]);
    }
    cases
}

/// The sum of the receive-side drop counters. The transmit side's (TUN -> UDP) are left out:
/// background traffic from the nodes' own stacks (IPv6 router solicitations, MLD) raises
/// them, so they prove nothing here.
fn rx_drops(stats: &serde_json::Value) -> u64 {
    control::total_drops(stats) - control::transmit_drops(stats)
}

/// The pump and drop counters that differ between two `stats` replies, as `name: a -> b`.
fn moved(before: &serde_json::Value, after: &serde_json::Value) -> String {
    let mut out = Vec::new();
    for group in ["pump", "drops"] {
        let (Some(b), Some(a)) = (
            before.get(group).and_then(|g| g.as_object()),
            after.get(group).and_then(|g| g.as_object()),
        ) else {
            continue;
        };
        for (name, value) in a {
            if b.get(name) != Some(value) {
                out.push(format!(
                    "{name}: {} -> {value}",
                    b.get(name).cloned().unwrap_or_default()
                ));
            }
        }
    }
    if out.is_empty() {
        "none".to_owned()
    } else {
        out.join(", ")
    }
}

/// Sends `datagram` from `from` (an address in node b) to weftd on node a.
fn send_from_b(bed: &Testbed, from: Ipv4Addr, to: SocketAddr, datagram: Vec<u8>) {
    bed.node(1)
        .ns()
        .spawn_inside(move || {
            let s = UdpSocket::bind((from, 0))?;
            s.send_to(&datagram, to)?;
            Ok(())
        })
        .join()
        .expect("sender thread")
        .unwrap_or_else(|e| panic!("sending from {from}: {e:#}"));
}

fn hostile(backend: Backend) {
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let overlay = Overlay::Weftd {
        backend,
        driver: DriverArg::Auto,
    };
    bed.start(&[overlay, overlay]).expect("weftd on both nodes");
    bed.node(1)
        .ip(&[
            "addr",
            "add",
            &format!("{STRANGER}/24"),
            "dev",
            UNDERLAY_DEV,
        ])
        .expect("a second, non-peer address on b");
    traffic::ping(bed.node(0).pod(), bed.node(1).pod_ip(), 2, None)
        .unwrap_or_else(|e| panic!("before: {e:#}"));

    // The sink in a's pod counts whatever reaches it.
    let stop = Arc::new(AtomicBool::new(false));
    let sink_stop = Arc::clone(&stop);
    let pod_a = bed.node(0).pod_ip();
    let pod6_a = bed.node(0).pod_ip6();
    let sink = bed.node(0).ns().spawn_inside(move || {
        let v4 = UdpSocket::bind((pod_a, SINK_PORT))?;
        let v6 = UdpSocket::bind((pod6_a, SINK_PORT))?;
        for s in [&v4, &v6] {
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        // (legitimate datagrams, sizes of anything else)
        let mut got = (0usize, Vec::new());
        let mut buf = vec![0u8; 65536];
        while !sink_stop.load(Ordering::Relaxed) {
            for s in [&v4, &v6] {
                match s.recv(&mut buf) {
                    Ok(n) if buf[..n] == *LEGIT => got.0 += 1,
                    Ok(n) => got.1.push(n),
                    Err(_) => {}
                }
            }
        }
        Ok(got)
    });
    traffic::wait_for_port(bed.node(0).ns(), true, SINK_PORT, Duration::from_secs(5))
        .expect("sink listening");
    // Prove the sink sees what the overlay delivers: one legitimate datagram from b's pod.
    let pod_b = bed.node(1).pod_ip();
    bed.node(1)
        .ns()
        .spawn_inside(move || {
            let s = UdpSocket::bind((pod_b, 0))?;
            s.send_to(LEGIT, (pod_a, SINK_PORT))?;
            Ok(())
        })
        .join()
        .expect("sender thread")
        .unwrap_or_else(|e| panic!("legitimate datagram: {e:#}"));

    let to = SocketAddr::new(bed.node(0).underlay().into(), backend.default_port());
    let mut failures = Vec::new();
    for case in cases(&bed, backend) {
        let before = bed.control(0, "stats").expect("stats");
        send_from_b(&bed, case.from, to, case.datagram.clone());
        let deadline = Instant::now() + COUNT_WAIT;
        let counted = loop {
            let after = bed.control(0, "stats").expect("stats");
            let rose = match case.reason {
                Some(r) => control::drops(&after, r) > control::drops(&before, r),
                None => rx_drops(&after) > rx_drops(&before),
            };
            if rose || Instant::now() >= deadline {
                break rose.then_some(()).ok_or(after);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Err(after) = counted {
            failures.push(format!(
                "{} ({} bytes from {}): no drop counted as {:?}; counters that moved: {}",
                case.name,
                case.datagram.len(),
                case.from,
                case.reason.unwrap_or("any receive-side reason"),
                moved(&before, &after),
            ));
        }
    }
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
    // Traffic still flows both ways.
    let (a, b) = (bed.node(0), bed.node(1));
    traffic::ping(a.pod(), b.pod_ip(), 3, None).unwrap_or_else(|e| panic!("after: {e:#}"));
    traffic::ping(b.pod6(), a.pod_ip6(), 3, None).unwrap_or_else(|e| panic!("after: {e:#}"));
    common::stream(b.pod(), a.pod(), 64 << 20);
    stop.store(true, Ordering::Relaxed);
    let (legit, reached) = sink
        .join()
        .expect("sink thread")
        .unwrap_or_else(|e| panic!("sink: {e:#}"));
    if !reached.is_empty() {
        failures.push(format!(
            "hostile packets reached the pod, UDP payload sizes {reached:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "hostile datagrams not dropped and counted:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        legit, 1,
        "the sink missed the legitimate datagram: the check is blind"
    );
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn hostile_datagrams_udp_backend() {
    require_root!();
    hostile(Backend::Udp);
}

#[test]
fn hostile_datagrams_vxlan_backend() {
    require_root!();
    hostile(Backend::Vxlan);
}
