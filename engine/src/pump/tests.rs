#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use encap::backend::{VxlanEncap, VXLAN_HEADER_LEN};
use encap::ChecksumCaps;

use super::dataplane::{Dataplane, TxVerdict, REPLY_LEN, SPLIT_OUT_LEN};
use super::*;
use crate::route::{parse_peers, Local, RouteTable, Routes};
use crate::test_support::packet::{ipv4_header, ipv4_udp};

const OUR_MAC: Mac = [0x0e, 0, 0, 0, 0, 1];
const PEER_MAC: Mac = [0x0e, 0, 0, 0, 0, 2];

fn config(backend: Backend, offloads: crate::tun::Offloads) -> PumpConfig {
    PumpConfig {
        backend,
        vni: 1,
        vtep_mac: OUR_MAC,
        mtu: 1450,
        offloads,
        icmp_source_v4: Some(Ipv4Addr::new(10, 244, 0, 0)),
        icmp_source_v6: None,
        checksum: ChecksumCaps::Complete,
        allow_foreign_inner_source: false,
        busy_poll: std::time::Duration::ZERO,
    }
}

fn table(backend: Backend) -> RouteTable {
    let local = Local {
        backend,
        port: 8472,
        vni: 1,
        vtep_mac: OUR_MAC,
        public_ip: "192.168.250.1".parse().unwrap(),
        public_ip6: None,
        subnets: vec!["10.244.1.0/24".parse().unwrap()],
    };
    let text = format!(
        "{{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"{backend}\", \"vtep_mac\": \"0e:00:00:00:00:02\"}}"
    );
    let (entries, errors) = parse_peers(&text, "t");
    assert!(errors.is_empty());
    RouteTable::build(&local, &entries, None, "t").0
}

fn dataplane(backend: Backend, offloads: crate::tun::Offloads) -> Dataplane {
    Dataplane::new(
        Arc::new(config(backend, offloads)),
        Arc::new(PumpCounters::default()),
    )
}

fn a() -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, 5)
}

fn b() -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 2, 5)
}

fn peer() -> SocketAddr {
    "192.168.250.2:8472".parse().unwrap()
}

/// A TUN frame: a zero virtio header and the packet.
fn frame(packet: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 10];
    f.extend_from_slice(packet);
    f
}

#[test]
fn tx_to_a_peer_is_one_segment_with_the_encap_header() {
    for backend in [Backend::Udp, Backend::Vxlan] {
        let mut dp = dataplane(backend, crate::tun::Offloads::ALL);
        let t = table(backend);
        let packet = ipv4_udp(a(), b(), 1000, 2000, &[7; 100]);
        let (mut out, mut reply) = (vec![0; SPLIT_OUT_LEN], vec![0; REPLY_LEN]);
        let v = dp.tx(&t, &frame(&packet), &mut out, &mut reply);
        let TxVerdict::Send { dst, segments, .. } = v else {
            panic!("{v:?}");
        };
        assert_eq!(dst, peer());
        assert_eq!(segments.count, 1);
        let hdr = if backend == Backend::Vxlan {
            VxlanEncap {
                vni: 1,
                local_mac: OUR_MAC,
                peer_mac: PEER_MAC,
            }
            .header(4)
            .to_vec()
        } else {
            Vec::new()
        };
        assert_eq!(&out[..hdr.len()], &hdr[..]);
        assert_eq!(&out[hdr.len()..segments.len], &packet[..]);
        assert_eq!(dp.counters().tun_rx_packets.get(), 1);
        assert_eq!(t.peers()[0].counters().get().0, 1);
    }
}

#[test]
fn tx_without_a_virtio_header() {
    let mut dp = dataplane(Backend::Udp, crate::tun::Offloads::NONE);
    let t = table(Backend::Udp);
    let packet = ipv4_udp(a(), b(), 1000, 2000, &[7; 100]);
    let (mut out, mut reply) = (vec![0; SPLIT_OUT_LEN], vec![0; REPLY_LEN]);
    let v = dp.tx(&t, &packet, &mut out, &mut reply);
    assert!(matches!(v, TxVerdict::Send { .. }), "{v:?}");
}

#[test]
fn tx_no_route_answers_net_unreachable_from_the_network_base() {
    let mut dp = dataplane(Backend::Udp, crate::tun::Offloads::ALL);
    let t = table(Backend::Udp);
    let packet = ipv4_udp(a(), Ipv4Addr::new(10, 244, 9, 9), 1000, 2000, &[7; 10]);
    let (mut out, mut reply) = (vec![0; SPLIT_OUT_LEN], vec![0; REPLY_LEN]);
    let TxVerdict::Reply { len } = dp.tx(&t, &frame(&packet), &mut out, &mut reply) else {
        panic!("no reply");
    };
    let icmp = &reply[10..len];
    assert_eq!(&reply[..10], &[0; 10]);
    assert_eq!(&icmp[12..16], &[10, 244, 0, 0], "source");
    assert_eq!(&icmp[16..20], &a().octets(), "destination");
    assert_eq!((icmp[20], icmp[21]), (3, 0), "net unreachable");
    assert_eq!(dp.counters().dropped(DropReason::NoRoute), 1);
}

#[test]
fn tx_too_big_with_df_answers_frag_needed_and_without_df_drops() {
    let mut dp = dataplane(Backend::Udp, crate::tun::Offloads::ALL);
    let t = table(Backend::Udp);
    let (mut out, mut reply) = (vec![0; SPLIT_OUT_LEN], vec![0; REPLY_LEN]);
    let mut big = ipv4_header(a(), b(), 17, 1500);
    big.resize(1520, 0);
    // ipv4_header sets DF (0x40 in byte 6).
    let v = dp.tx(&t, &frame(&big), &mut out, &mut reply);
    let TxVerdict::Reply { len } = v else {
        panic!("{v:?}");
    };
    assert_eq!((reply[10 + 20], reply[10 + 21]), (3, 4), "frag needed");
    assert_eq!(u16::from_be_bytes([reply[10 + 26], reply[10 + 27]]), 1450);
    assert!(len > 10 + 28);
    big[6] = 0;
    assert_eq!(
        dp.tx(&t, &frame(&big), &mut out, &mut reply),
        TxVerdict::Drop
    );
    assert_eq!(dp.counters().dropped(DropReason::TooBig), 2);
}

#[test]
fn tx_garbage_from_the_tun_is_counted() {
    let mut dp = dataplane(Backend::Udp, crate::tun::Offloads::ALL);
    let t = table(Backend::Udp);
    let (mut out, mut reply) = (vec![0; SPLIT_OUT_LEN], vec![0; REPLY_LEN]);
    for f in [&[][..], &[0u8; 5][..], &[0u8; 30][..], &[0xffu8; 40][..]] {
        assert_eq!(dp.tx(&t, f, &mut out, &mut reply), TxVerdict::Drop);
    }
    assert_eq!(dp.counters().dropped(DropReason::BadTunPacket), 4);
}

fn rx_all(
    dp: &mut Dataplane,
    t: &RouteTable,
    bytes: &[u8],
    seg: usize,
    src: SocketAddr,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    dp.rx(t, bytes, seg, src, &mut |p: &[u8]| got.push(p.to_vec()));
    got
}

#[test]
fn rx_checks_sender_source_and_decap() {
    let mut dp = dataplane(Backend::Udp, crate::tun::Offloads::ALL);
    let t = table(Backend::Udp);
    let good = ipv4_udp(b(), a(), 1, 2, &[1; 50]);
    let from_peer: SocketAddr = "192.168.250.2:8285".parse().unwrap();
    let stranger: SocketAddr = "192.168.250.9:8285".parse().unwrap();
    assert_eq!(
        rx_all(&mut dp, &t, &good, good.len(), from_peer),
        vec![good.clone()]
    );
    assert!(rx_all(&mut dp, &t, &good, good.len(), stranger).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::UnknownPeer), 1);
    let spoofed = ipv4_udp(Ipv4Addr::new(10, 244, 3, 1), a(), 1, 2, &[1; 50]);
    assert!(rx_all(&mut dp, &t, &spoofed, spoofed.len(), from_peer).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::Spoofed), 1);
    assert!(rx_all(&mut dp, &t, &[0x45, 0, 0], 3, from_peer).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::Truncated), 1);
    // A GRO batch of three: good, spoofed, good (the last shorter).
    let mut batch = good.clone();
    batch.extend_from_slice(&spoofed);
    let short = ipv4_udp(b(), a(), 1, 2, &[2; 20]);
    batch.extend_from_slice(&short);
    let got = rx_all(&mut dp, &t, &batch, good.len(), from_peer);
    assert_eq!(got, vec![good.clone(), short]);
    assert_eq!(dp.counters().dropped(DropReason::Spoofed), 2);
    assert_eq!(dp.counters().udp_rx_datagrams.get(), 7);
    assert_eq!(t.peers()[0].counters().get().2, 3);
    // An empty datagram is truncated; an inner packet longer than the TUN MTU (1450 here) is
    // oversized; one of exactly the MTU passes.
    assert!(rx_all(&mut dp, &t, &[], 0, from_peer).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::Truncated), 2);
    let oversized = ipv4_udp(b(), a(), 1, 2, &[3; 1451 - 28]);
    assert!(rx_all(&mut dp, &t, &oversized, oversized.len(), from_peer).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::Oversized), 1);
    let full = ipv4_udp(b(), a(), 1, 2, &[3; 1450 - 28]);
    assert_eq!(
        rx_all(&mut dp, &t, &full, full.len(), from_peer),
        vec![full.clone()]
    );
}

#[test]
fn rx_allow_foreign_inner_source_skips_only_the_source_check() {
    let mut config = config(Backend::Udp, crate::tun::Offloads::ALL);
    config.allow_foreign_inner_source = true;
    let mut dp = Dataplane::new(Arc::new(config), Arc::new(PumpCounters::default()));
    let t = table(Backend::Udp);
    let from_peer: SocketAddr = "192.168.250.2:8285".parse().unwrap();
    let stranger: SocketAddr = "192.168.250.9:8285".parse().unwrap();
    // Sources in a third node's subnet and outside the overlay are delivered.
    for src in [Ipv4Addr::new(10, 244, 3, 1), Ipv4Addr::new(198, 51, 100, 7)] {
        let foreign = ipv4_udp(src, a(), 1, 2, &[1; 50]);
        assert_eq!(
            rx_all(&mut dp, &t, &foreign, foreign.len(), from_peer),
            vec![foreign.clone()]
        );
        // The sender must still be a peer, and the packet well-formed.
        assert!(rx_all(&mut dp, &t, &foreign, foreign.len(), stranger).is_empty());
        let mut bad = foreign.clone();
        bad[0] = 0x35;
        assert!(rx_all(&mut dp, &t, &bad, bad.len(), from_peer).is_empty());
    }
    let c = dp.counters();
    assert_eq!(c.dropped(DropReason::Spoofed), 0);
    assert_eq!(c.dropped(DropReason::UnknownPeer), 2);
    assert_eq!(c.dropped(DropReason::BadInner), 2);
    assert_eq!(t.peers()[0].counters().get().2, 2);
}

#[test]
fn rx_drops_a_bad_ipv4_header_checksum() {
    let mut dp = dataplane(Backend::Udp, crate::tun::Offloads::ALL);
    let t = table(Backend::Udp);
    let from_peer: SocketAddr = "192.168.250.2:8285".parse().unwrap();
    let mut p = ipv4_udp(b(), a(), 1, 2, &[1; 50]);
    p[10] ^= 0x40;
    assert!(rx_all(&mut dp, &t, &p, p.len(), from_peer).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::BadInner), 1);
}

#[test]
fn rx_drops_inner_destinations_a_peer_owns() {
    let mut dp = dataplane(Backend::Udp, crate::tun::Offloads::ALL);
    let t = table(Backend::Udp);
    let from_peer: SocketAddr = "192.168.250.2:8285".parse().unwrap();
    // From the peer's subnet back to the peer's subnet: a relay.
    let back = ipv4_udp(b(), Ipv4Addr::new(10, 244, 2, 9), 1, 2, &[1; 50]);
    assert!(rx_all(&mut dp, &t, &back, back.len(), from_peer).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::Relay), 1);
    // To our subnet, to the TUN address and to addresses no peer owns: delivered.
    for dst in [
        a(),
        Ipv4Addr::new(10, 244, 1, 0),
        Ipv4Addr::new(10, 244, 7, 1),
    ] {
        let p = ipv4_udp(b(), dst, 1, 2, &[1; 50]);
        assert_eq!(rx_all(&mut dp, &t, &p, p.len(), from_peer), vec![p.clone()]);
    }
    assert_eq!(dp.counters().dropped(DropReason::Relay), 1);
    assert_eq!(dp.counters().dropped(DropReason::Spoofed), 0);
}

#[test]
fn rx_vxlan_checks_vni_and_macs() {
    let mut dp = dataplane(Backend::Vxlan, crate::tun::Offloads::ALL);
    let t = table(Backend::Vxlan);
    let inner = ipv4_udp(b(), a(), 1, 2, &[1; 50]);
    // From the peer's point of view: its MAC is local, ours the peer's.
    let encap = |vni: u32, local_mac: Mac, peer_mac: Mac| {
        let mut d = vec![0u8; VXLAN_HEADER_LEN + inner.len()];
        VxlanEncap {
            vni,
            local_mac,
            peer_mac,
        }
        .encap(&inner, &mut d)
        .unwrap();
        d
    };
    let src: SocketAddr = "192.168.250.2:40000".parse().unwrap();
    let good = encap(1, PEER_MAC, OUR_MAC);
    assert_eq!(
        rx_all(&mut dp, &t, &good, good.len(), src),
        vec![inner.clone()]
    );
    let wrong_vni = encap(2, PEER_MAC, OUR_MAC);
    assert!(rx_all(&mut dp, &t, &wrong_vni, wrong_vni.len(), src).is_empty());
    let wrong_mac = encap(1, PEER_MAC, [0x0e, 9, 9, 9, 9, 9]);
    assert!(rx_all(&mut dp, &t, &wrong_mac, wrong_mac.len(), src).is_empty());
    let looped = encap(1, OUR_MAC, OUR_MAC);
    assert!(rx_all(&mut dp, &t, &looped, looped.len(), src).is_empty());
    let c = dp.counters();
    assert_eq!(c.dropped(DropReason::WrongVni), 1);
    assert_eq!(c.dropped(DropReason::WrongDstMac), 1);
    assert_eq!(c.dropped(DropReason::Loop), 1);
    let src_v6 = SocketAddr::new(IpAddr::V6("fd00::2".parse().unwrap()), 8472);
    assert!(rx_all(&mut dp, &t, &good, good.len(), src_v6).is_empty());
    assert_eq!(dp.counters().dropped(DropReason::UnknownPeer), 1);
}

/// An IPv4/UDP packet whose checksum a same-host Linux sender left partial (the folded
/// pseudo-header sum), as it arrives from a kernel VXLAN peer across a veth.
fn partial_udp4(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = ipv4_udp(src, dst, 4000, 5000, payload);
    let l4_len = (p.len() - 20) as u32;
    let v = encap::checksum::pseudo_header_v4(src.octets(), dst.octets(), 17, l4_len).fold();
    p[26..28].copy_from_slice(&v.to_be_bytes());
    p
}

/// Receives `datagram` from the peer and hands what passes to an [`RxQueue`] as the drivers do;
/// returns what would be written into the TUN.
fn rx_into_tun(dp: &mut Dataplane, t: &RouteTable, datagram: &[u8], vnet: bool) -> Vec<Vec<u8>> {
    rx_gro_into_tun(dp, t, datagram, 0, vnet)
}

/// [`rx_into_tun`] with the UDP_GRO segment size the kernel reported.
fn rx_gro_into_tun(
    dp: &mut Dataplane,
    t: &RouteTable,
    datagram: &[u8],
    segment_size: usize,
    vnet: bool,
) -> Vec<Vec<u8>> {
    use super::dataplane::RxQueue;
    use encap::gro::Coalescer;
    let src: SocketAddr = match dp.config().backend {
        Backend::Udp => "192.168.250.2:8285".parse().unwrap(),
        Backend::Vxlan => "192.168.250.2:40000".parse().unwrap(),
        Backend::HostGw => unreachable!("host-gw has no pumps"),
    };
    let cfg = poll_driver::coalescer_config(dp.config());
    let mut rxq = RxQueue::new(Coalescer::new(cfg), vnet);
    let counters = Arc::clone(dp.counters());
    let mut written = Vec::new();
    dp.rx(t, datagram, segment_size, src, &mut |p: &[u8]| {
        if rxq.coalescing() {
            rxq.push(p).unwrap();
        } else {
            rxq.write_one(p, &counters, |w| {
                written.push(w.to_vec());
                true
            });
        }
    });
    rxq.flush(&counters, |w| {
        written.push(w.to_vec());
        true
    });
    written
}

#[test]
fn rx_partial_checksums_get_needs_csum_or_are_completed_on_both_backends() {
    let partial = partial_udp4(b(), a(), &[1; 50]);
    let full = ipv4_udp(b(), a(), 4000, 5000, &[1; 50]);
    assert_ne!(partial, full);
    for backend in [Backend::Udp, Backend::Vxlan] {
        let datagram = |inner: &[u8]| match backend {
            Backend::Udp => inner.to_vec(),
            Backend::HostGw => unreachable!("host-gw has no pumps"),
            Backend::Vxlan => {
                let mut d = vec![0u8; VXLAN_HEADER_LEN + inner.len()];
                VxlanEncap {
                    vni: 1,
                    local_mac: PEER_MAC,
                    peer_mac: OUR_MAC,
                }
                .encap(inner, &mut d)
                .unwrap();
                d
            }
        };
        for (offloads, vnet) in [
            (crate::tun::Offloads::ALL, true),
            (crate::tun::Offloads::NONE, false),
        ] {
            let mut dp = dataplane(backend, offloads);
            let t = table(backend);
            let out = rx_into_tun(&mut dp, &t, &datagram(&partial), vnet);
            assert_eq!(out.len(), 1, "{backend:?} vnet {vnet}");
            if vnet {
                // As it came, behind NEEDS_CSUM: csum_start 20, csum_offset 6, no GSO.
                let hdr = encap::partial_checksum::find(&partial).unwrap().virtio();
                assert_eq!(&out[0][..10], &hdr.to_bytes()[..]);
                assert_eq!(&out[0][10..], &partial[..]);
            } else {
                // No virtio header to ask with: completed here.
                assert_eq!(out[0], full);
            }
            let c = dp.counters();
            assert_eq!(c.rx_csum_partial.get(), 1, "{backend:?} vnet {vnet}");
            assert_eq!(c.tun_tx_packets.get(), 1);
            // A full checksum is left alone and not counted; a corrupt one is not "partial".
            let mut corrupt = partial.clone();
            corrupt[27] ^= 1;
            for p in [&full, &corrupt] {
                let out = rx_into_tun(&mut dp, &t, &datagram(p), vnet);
                let ip = if vnet { &out[0][10..] } else { &out[0][..] };
                assert_eq!(ip, &p[..]);
                if vnet {
                    assert_eq!(&out[0][..10], &[0; 10]);
                }
            }
            assert_eq!(dp.counters().rx_csum_partial.get(), 1);
        }
    }
}

/// The kernel side of the fix: a partial UDP checksum written into a TUN as it came is dropped
/// by the stack (a TCP stall from kernel peers on veths with their default offloads); behind
/// the RxQueue's NEEDS_CSUM header, or completed for a TUN without a virtio header, it
/// reaches the socket.
#[test]
fn partial_checksums_reach_a_socket_through_the_tun() {
    require_root!();
    crate::test_support::in_netns(|| {
        use super::dataplane::RxQueue;
        use crate::tun::{Offloads, Tun};
        use encap::gro::Coalescer;
        use std::time::Duration;

        let open = |name: &str, wanted: Offloads, addr: Ipv4Addr| {
            let tun = Tun::open_with(name, 1, wanted).expect("open TUN");
            tun.set_mtu(1500).expect("MTU");
            tun.set_ipv4_addr(addr, 24).expect("address");
            tun.set_up().expect("up");
            tun
        };
        for (name, wanted, net) in [
            ("wfe-pcsum", Offloads::ALL, 93u8),
            ("wfe-pcsum0", Offloads::NONE, 92),
        ] {
            let local = Ipv4Addr::new(10, net, 0, 1);
            let remote = Ipv4Addr::new(10, net, 0, 2);
            let tun = open(name, wanted, local);
            let vnet = tun.offloads().vnet_hdr;
            let sock = std::net::UdpSocket::bind((local, 5000)).expect("bind");
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("timeout");
            let partial = partial_udp4(remote, local, b"partial from a veth peer");
            let mut buf = [0u8; 64];
            // As it came: the kernel finds the checksum wrong and drops the datagram.
            let mut raw = vec![0u8; tun.offloads().header_len()];
            raw.extend_from_slice(&partial);
            tun.queues()[0].write(&raw).expect("TUN write");
            assert!(
                sock.recv_from(&mut buf).is_err(),
                "{name}: the kernel took a partial checksum without NEEDS_CSUM"
            );
            // Through the RxQueue, as the pump writes it.
            let counters = PumpCounters::default();
            let cfg = poll_driver::coalescer_config(&config(Backend::Vxlan, wanted));
            let mut rxq = RxQueue::new(Coalescer::new(cfg), vnet);
            let q = &tun.queues()[0];
            if rxq.coalescing() {
                rxq.push(&partial).expect("push");
                rxq.flush(&counters, |p| q.write(p).is_ok());
            } else {
                rxq.write_one(&partial, &counters, |p| q.write(p).is_ok());
            }
            let (n, from) = sock.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!("{name}: the partial datagram did not reach the socket: {e}")
            });
            assert_eq!(&buf[..n], b"partial from a veth peer");
            assert_eq!(from, SocketAddr::from((remote, 4000)));
            assert_eq!(counters.rx_csum_partial.get(), 1);
            assert_eq!(counters.tun_tx_packets.get(), 1);
        }
    });
}

#[test]
fn rx_a_same_host_tcp_super_packet_over_the_mtu_goes_to_the_tun_as_gso() {
    use crate::test_support::packet::{ipv4_tcp, Tcp, TCP_ACK};
    let tcp = Tcp {
        sport: 5201,
        dport: 40000,
        seq: 7,
        ack: 9,
        flags: TCP_ACK,
        window: 500,
    };
    let data: Vec<u8> = (0..8000u32).map(|i| (i % 253) as u8).collect();
    let full = ipv4_tcp(b(), a(), tcp, &[], &data);
    let mut partial = full.clone();
    let l4_len = (full.len() - 20) as u32;
    let v = encap::checksum::pseudo_header_v4(b().octets(), a().octets(), 6, l4_len).fold();
    partial[36..38].copy_from_slice(&v.to_be_bytes());
    let partial_udp = partial_udp4(b(), a(), &data);
    for backend in [Backend::Udp, Backend::Vxlan] {
        let datagram = |inner: &[u8]| match backend {
            Backend::Udp => inner.to_vec(),
            Backend::HostGw => unreachable!("host-gw has no pumps"),
            Backend::Vxlan => {
                let mut d = vec![0u8; VXLAN_HEADER_LEN + inner.len()];
                VxlanEncap {
                    vni: 1,
                    local_mac: PEER_MAC,
                    peer_mac: OUR_MAC,
                }
                .encap(inner, &mut d)
                .unwrap();
                d
            }
        };
        let mut dp = dataplane(backend, crate::tun::Offloads::ALL);
        let t = table(backend);
        let out = rx_into_tun(&mut dp, &t, &datagram(&partial), true);
        assert_eq!(out.len(), 1, "{backend:?}");
        let hdr = crate::test_support::packet::VnetHdr::parse(&out[0]);
        assert_eq!(hdr.flags, crate::test_support::packet::F_NEEDS_CSUM);
        assert_eq!(hdr.gso_type, crate::test_support::packet::GSO_TCPV4);
        // The TUN MTU here is 1450: 1410 payload bytes per segment after 40 bytes of headers.
        assert_eq!(
            (hdr.gso_size, hdr.csum_start, hdr.csum_offset),
            (1410, 20, 16)
        );
        assert_eq!(&out[0][10..], &partial[..]);
        assert_eq!(dp.counters().rx_csum_partial.get(), 1);
        assert_eq!(dp.counters().dropped(DropReason::Oversized), 0);
        // Over the MTU and not a partial TCP super-packet: dropped, as before.
        for p in [&full, &partial_udp] {
            assert!(rx_into_tun(&mut dp, &t, &datagram(p), true).is_empty());
        }
        assert_eq!(dp.counters().dropped(DropReason::Oversized), 2);
        // Without a virtio header the kernel cannot be asked to cut it: dropped.
        let mut plain = dataplane(backend, crate::tun::Offloads::NONE);
        assert!(rx_into_tun(&mut plain, &t, &datagram(&partial), false).is_empty());
        assert_eq!(plain.counters().dropped(DropReason::Oversized), 1);
    }
}

#[test]
fn rx_a_same_host_udp_gso_packet_is_cut_into_its_datagrams() {
    // 10 datagrams of 1000 bytes sent with UDP_SEGMENT by the kernel node: one VXLAN frame (or
    // one udp-backend datagram) with a 10000-byte UDP payload, checksum partial, and the
    // UDP_GRO segment size 1000.
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let partial = partial_udp4(b(), a(), &data);
    for backend in [Backend::Udp, Backend::Vxlan] {
        let datagram = match backend {
            Backend::Udp => partial.clone(),
            Backend::HostGw => unreachable!("host-gw has no pumps"),
            Backend::Vxlan => {
                let mut d = vec![0u8; VXLAN_HEADER_LEN + partial.len()];
                VxlanEncap {
                    vni: 1,
                    local_mac: PEER_MAC,
                    peer_mac: OUR_MAC,
                }
                .encap(&partial, &mut d)
                .unwrap();
                d
            }
        };
        for (offloads, vnet) in [
            (crate::tun::Offloads::NONE, false),
            (crate::tun::Offloads::TSO, true),
            (crate::tun::Offloads::ALL, true),
        ] {
            let mut dp = dataplane(backend, offloads);
            let t = table(backend);
            let out = rx_gro_into_tun(&mut dp, &t, &datagram, 1000, vnet);
            let c = dp.counters();
            assert_eq!(c.udp_rx_datagrams.get(), 10, "{backend:?} {offloads:?}");
            assert_eq!(c.rx_csum_partial.get(), 1);
            assert_eq!(t.peers()[0].counters().get().2, 10);
            let vh = if vnet { 10 } else { 0 };
            // The datagrams, full checksums, payloads in order: one USO packet when the TUN
            // took USO, else one write each.
            let datagrams: Vec<Vec<u8>> = if offloads.uso {
                assert_eq!(out.len(), 1);
                let hdr = crate::test_support::packet::VnetHdr::parse(&out[0]);
                assert_eq!((hdr.gso_type, hdr.gso_size), (packet_gso_udp_l4(), 1000));
                out[0][vh + 28..]
                    .chunks(1000)
                    .map(|d| ipv4_udp(b(), a(), 4000, 5000, d))
                    .collect()
            } else {
                assert_eq!(out.len(), 10);
                out.iter().map(|o| o[vh..].to_vec()).collect()
            };
            for (i, d) in datagrams.iter().enumerate() {
                // Equal but for the IPv4 ID (counted up, as the kernel's segmentation does) and
                // so the header checksum, which must verify.
                let want = ipv4_udp(b(), a(), 4000, 5000, &data[i * 1000..][..1000]);
                assert_eq!(
                    (&d[..4], &d[6..10], &d[12..]),
                    (&want[..4], &want[6..10], &want[12..])
                );
                assert_eq!(encap::checksum::checksum(&d[..20]), 0);
            }
        }
        // A bad IPv4 header: no super-packet (cut as a batch, and dropped).
        let mut bad = datagram.clone();
        let ip = if backend == Backend::Vxlan {
            VXLAN_HEADER_LEN
        } else {
            0
        };
        bad[ip + 10] ^= 1;
        let mut dp = dataplane(backend, crate::tun::Offloads::ALL);
        let t = table(backend);
        assert!(rx_gro_into_tun(&mut dp, &t, &bad, 1000, true).is_empty());
        assert_eq!(dp.counters().rx_csum_partial.get(), 0);
        // Datagrams too long for the MTU: all dropped as oversized.
        let mut dp = dataplane(backend, crate::tun::Offloads::ALL);
        let t = table(backend);
        assert!(rx_gro_into_tun(&mut dp, &t, &datagram, 2000, true).is_empty());
        assert_eq!(dp.counters().dropped(DropReason::Oversized), 5);
    }
}

fn packet_gso_udp_l4() -> u8 {
    crate::test_support::packet::GSO_UDP_L4
}

/// The port of the underlay in [`burst_through_the_pumps`] (its own network namespace).
const BURST_PORT: u16 = 8285;

/// What [`burst_through_the_pumps`] writes into the TUN, in order: (peer, UDP payload bytes).
/// Peer 0 owns 10.244.2.0/24, peer 1 10.244.3.0/24, `None` is a destination no peer owns (an
/// ICMP error back into the TUN). Runs of equal datagrams, shorter ones that close a batch, a
/// run longer than one UDP payload holds, and alternating peers.
fn burst() -> Vec<(Option<usize>, usize)> {
    let mut b = Vec::new();
    b.extend([(Some(0), 1372); 40]); // 1400-byte IP packets
    b.push((Some(0), 600));
    b.extend([(Some(0), 36); 30]); // 64-byte IP packets
    b.extend([(Some(1), 1372); 10]);
    for _ in 0..5 {
        b.extend([(Some(0), 1372), (Some(1), 1372)]);
    }
    b.extend([(Some(1), 36); 3]);
    b.push((None, 100));
    b.extend([(Some(1), 36); 3]);
    b.extend([(Some(0), 1372); 100]);
    b
}

/// Queues [`burst`] in a TUN before a pump thread with `driver` starts on it (so that its
/// first reads find many packets at once), lets the thread send it to two peer sockets on
/// `lo` with the udp backend, and checks that every datagram arrived intact and in order, and
/// the counters: with GSO, in fewer sends than datagrams; without (GSO refused), batches went
/// one datagram per segment.
fn burst_through_the_pumps(driver: IoDriver, gso: bool) {
    use crate::sys::io::wait_readable;
    use crate::tun::{Offloads, Tun};
    use crate::underlay::{UdpConfig, UdpSocket};
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    let tun = Tun::open_with("wfe-burst", 1, Offloads::ALL).expect("open TUN");
    tun.set_mtu(1450).expect("MTU");
    tun.set_txqueuelen(1000).expect("txqueuelen");
    tun.set_ipv4_addr(Ipv4Addr::new(10, 244, 1, 0), 16)
        .expect("address");
    tun.set_up().expect("up");
    tun.set_nonblocking(true).expect("non-blocking");
    let udp_config = UdpConfig {
        nonblocking: true,
        ..UdpConfig::default()
    };
    let underlay = |host: u8| SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), BURST_PORT));
    let sock = UdpSocket::bind(underlay(1), &udp_config).expect("bind the pump's socket");
    if !gso {
        sock.disable_gso();
    }
    let peers: Vec<UdpSocket> = [2, 3]
        .map(|host| {
            let config = UdpConfig {
                gro: false,
                ..udp_config
            };
            UdpSocket::bind(underlay(host), &config).expect("bind a peer")
        })
        .into();

    let local = Local {
        backend: Backend::Udp,
        port: BURST_PORT,
        vni: 1,
        vtep_mac: OUR_MAC,
        public_ip: underlay(1).ip(),
        public_ip6: None,
        subnets: vec!["10.244.1.0/24".parse().unwrap()],
    };
    let text = (2..=3)
        .map(|i| {
            format!("{{\"subnet\": \"10.244.{i}.0/24\", \"public_ip\": \"127.0.0.{i}\", \"backend\": \"udp\"}}\n")
        })
        .collect::<String>();
    let (entries, errors) = parse_peers(&text, "t");
    assert!(errors.is_empty(), "{errors:?}");
    let routes = Arc::new(Routes::from_pointee(
        RouteTable::build(&local, &entries, None, "t").0,
    ));

    // Queued in the TUN before any read.
    let app = std::net::UdpSocket::bind((Ipv4Addr::new(10, 244, 1, 0), 7000)).expect("app");
    let mut want: [Vec<Vec<u8>>; 2] = Default::default();
    for (seq, &(peer, len)) in burst().iter().enumerate() {
        let mut payload: Vec<u8> = (0..len).map(|i| (seq * 31 + i) as u8).collect();
        payload[..4].copy_from_slice(&(seq as u32).to_be_bytes());
        let to = match peer {
            Some(p) => Ipv4Addr::new(10, 244, 2 + p as u8, 5),
            None => Ipv4Addr::new(10, 244, 9, 9),
        };
        app.send_to(&payload, (to, 9000))
            .expect("send into the TUN");
        if let Some(p) = peer {
            want[p].push(payload);
        }
    }

    let mut config = config(Backend::Udp, tun.offloads());
    config.icmp_source_v4 = Some(Ipv4Addr::new(10, 244, 0, 0));
    let pumps = Pumps::start(config, driver, tun.into_queues(), vec![sock], routes, || {})
        .expect("start the pump");
    let counters = Arc::clone(&pumps.counters()[0]);

    // Each peer gets its datagrams: the inner IP packets (udp backend), payloads in order.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65_536];
    for (peer, want) in peers.iter().zip(&want) {
        let mut got = Vec::new();
        while got.len() < want.len() && Instant::now() < deadline {
            if !wait_readable(peer.as_fd(), 100).expect("poll") {
                continue;
            }
            match peer.recv_gro(&mut buf) {
                Ok(d) => {
                    assert_eq!(d.src, underlay(1));
                    let packet = &buf[..d.len];
                    assert_eq!(
                        usize::from(u16::from_be_bytes([packet[2], packet[3]])),
                        d.len
                    );
                    got.push(packet[28..].to_vec());
                }
                Err(e) if e.is_would_block() => {}
                Err(e) => panic!("{e}"),
            }
        }
        let seqs = |v: &[Vec<u8>]| -> Vec<u32> {
            v.iter()
                .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
                .collect()
        };
        assert_eq!(seqs(&got), seqs(want), "{driver} gso {gso}: order");
        assert!(got == *want, "{driver} gso {gso}: payloads");
    }
    pumps.stop();

    let datagrams = (want[0].len() + want[1].len()) as u64;
    let bytes: u64 = want.iter().flatten().map(|p| 28 + p.len() as u64).sum();
    let c = &*counters;
    let what = format!("{driver} gso {gso}: {c:?}");
    assert_eq!(c.udp_tx_datagrams.get(), datagrams, "{what}");
    assert_eq!(c.udp_tx_bytes.get(), bytes, "{what}");
    // Ours, and whatever IPv6 the kernel sent on the new link (router solicitations: no
    // route, and no ICMPv6 source to answer from).
    assert!(c.dropped(DropReason::NoRoute) >= 1, "{what}");
    assert_eq!(c.icmp_sent.get(), 1, "{what}");
    assert_eq!(c.dropped(DropReason::UdpSendError), 0, "{what}");
    let (sends, _) = counters::sum_batches([c]);
    assert_eq!(sends.sum, datagrams, "{what}");
    // Batches formed: fewer sends than datagrams.
    assert!(sends.count() < datagrams, "{what}");
    if gso {
        assert!(c.gso_sends.get() > 0, "{what}");
        assert_eq!(c.gso_fallback_sends.get(), 0, "{what}");
    } else {
        assert_eq!(c.gso_sends.get(), 0, "{what}");
        assert!(c.gso_fallback_sends.get() > 0, "{what}");
    }
}

/// Single datagrams read from the TUN in a burst leave in GSO batches (fewer sends than
/// datagrams) and arrive intact and in order at each peer, with either driver, and still do
/// one datagram per segment when the socket refuses GSO.
#[test]
fn single_datagrams_from_the_tun_leave_in_batches_with_either_driver() {
    require_root!();
    for driver in [IoDriver::Poll, IoDriver::Uring] {
        if driver == IoDriver::Uring {
            if let Err(e) = uring_driver::probe() {
                eprintln!("skipping the uring driver: io_uring unavailable: {e}");
                continue;
            }
        }
        for gso in [true, false] {
            crate::test_support::in_netns(|| burst_through_the_pumps(driver, gso));
        }
    }
}
