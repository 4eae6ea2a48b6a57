#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use encap::backend::{VxlanEncap, VXLAN_HEADER_LEN};
use encap::ChecksumCaps;

use super::dataplane::{Dataplane, TxVerdict, REPLY_LEN, SPLIT_OUT_LEN};
use super::*;
use crate::route::{parse_peers, Local, RouteTable};
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
    }
}

fn table(backend: Backend) -> RouteTable {
    let local = Local {
        backend,
        port: 8472,
        vni: 1,
        vtep_mac: OUR_MAC,
        public_ip: "192.168.250.1".parse().unwrap(),
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

#[test]
fn stop_wakes_and_is_sticky() {
    let stop = Stop::new().unwrap();
    assert!(!stop.requested());
    stop.request();
    assert!(stop.requested());
    assert!(stop.event().is_signalled().unwrap());
    assert!(stop.event().is_signalled().unwrap());
}
