//! Packets for the criterion benches in `benches/benches/`: built once, outside the timed loops.
//!
//! The shapes are what a TUN hands weft on this kind of machine: a TCP stream with timestamps
//! (32-byte TCP header) read as TSO super-packets of up to 64 KiB, segmented for an inner MTU of
//! 1450 (vxlan) or 1472 (udp).

use std::net::{Ipv4Addr, Ipv6Addr};

use encap::gso::{self, Segments};
use encap::wire::virtio::VirtioNetRepr;
use weft_testkit::packet::{self, Ip, Tcp};

/// The inner MTU under VXLAN on a 1500-byte underlay.
pub const VXLAN_INNER_MTU: usize = 1500 - encap::backend::VXLAN_OVERHEAD;
/// The inner MTU under flannel udp on a 1500-byte underlay.
pub const UDP_INNER_MTU: usize = 1500 - encap::backend::UDP_OVERHEAD;
/// TCP header with the timestamp option, as Linux sends it on an established connection.
pub const TCP_HEADER_LEN: usize = 32;

/// A TCP super-packet as a TUN delivers it: IPv4 or IPv6, `segments` segments of `mss` bytes,
/// the TCP checksum field holding the pseudo-header sum (NEEDS_CSUM), and its virtio header
/// (built by the test kit's [`packet::super_packet`]).
pub fn tcp_super_packet(v6: bool, mss: usize, segments: usize) -> (VirtioNetRepr, Vec<u8>) {
    let mut ip = if v6 {
        Ip::new(
            Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 5),
            Ipv6Addr::new(0xfd00, 0x10, 0x244, 2, 0, 0, 0, 7),
        )
    } else {
        Ip::new(Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 7))
    };
    ip.id = 0x1234;
    let tcp = Tcp {
        sport: 40000,
        dport: 5201,
        seq: 0x0100_0000,
        ack: 0x0200_0000,
        flags: packet::TCP_ACK | packet::TCP_PSH,
        window: 502,
    };
    // Timestamps: NOP NOP TS(8) len 10, the values zero.
    let mut timestamps = [0u8; TCP_HEADER_LEN - 20];
    timestamps[..4].copy_from_slice(&[1, 1, 8, 10]);
    let payload: Vec<u8> = (0..mss * segments).map(|i| (i * 131 + 7) as u8).collect();
    let whole = packet::tcp(&ip, &tcp, &timestamps, &payload);
    packet::super_packet(whole, mss as u16)
}

/// The segments of `tcp_super_packet(v6, mss, segments)` as a receiver decapsulates them:
/// separate inner packets with complete checksums.
pub fn tcp_segments(v6: bool, mss: usize, segments: usize) -> Vec<Vec<u8>> {
    let (vnet, sp) = tcp_super_packet(v6, mss, segments);
    let inner_mtu = mss + TCP_HEADER_LEN + if v6 { 40 } else { 20 };
    let mut out = vec![0u8; gso::max_len(sp.len(), 0, segments)];
    let segs: Segments =
        gso::split(&vnet, &sp, &[], inner_mtu, &mut out).expect("a well-formed super-packet");
    (0..segs.count)
        .map(|i| out[segs.segment(i)].to_vec())
        .collect()
}
