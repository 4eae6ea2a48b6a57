//! Packets for the criterion benches in `benches/benches/`: built once, outside the timed loops.
//!
//! The shapes are what a TUN hands weft on this kind of machine: a TCP stream with timestamps
//! (32-byte TCP header) read as TSO super-packets of up to 64 KiB, segmented for an inner MTU of
//! 1450 (vxlan) or 1472 (udp).

use encap::checksum::{pseudo_header_v4, pseudo_header_v6, Sum};
use encap::gso::{self, Segments};
use encap::wire::virtio::{GsoType, VirtioNetRepr};

/// The inner MTU under VXLAN on a 1500-byte underlay.
pub const VXLAN_INNER_MTU: usize = 1500 - encap::backend::VXLAN_OVERHEAD;
/// The inner MTU under flannel udp on a 1500-byte underlay.
pub const UDP_INNER_MTU: usize = 1500 - encap::backend::UDP_OVERHEAD;
/// TCP header with the timestamp option, as Linux sends it on an established connection.
pub const TCP_HEADER_LEN: usize = 32;

/// A TCP super-packet as a TUN delivers it: IPv4 or IPv6, `segments` segments of `mss` bytes,
/// the TCP checksum field holding the pseudo-header sum (NEEDS_CSUM), and its virtio header.
pub fn tcp_super_packet(v6: bool, mss: usize, segments: usize) -> (VirtioNetRepr, Vec<u8>) {
    let ip_len = if v6 { 40 } else { 20 };
    let payload_len = mss * segments;
    let l4_len = TCP_HEADER_LEN + payload_len;
    let mut p = vec![0u8; ip_len + l4_len];
    let src4 = [10, 244, 1, 5];
    let dst4 = [10, 244, 2, 7];
    let src6 = [0xfd, 0, 0, 0x10, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5];
    let dst6 = [0xfd, 0, 0, 0x10, 2, 0x44, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7];
    let pseudo = if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8..24].copy_from_slice(&src6);
        p[24..40].copy_from_slice(&dst6);
        pseudo_header_v6(&src6, &dst6, 6, l4_len as u32)
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((ip_len + l4_len) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&src4);
        p[16..20].copy_from_slice(&dst4);
        let c = Sum::ZERO.bytes(&p[..20]).finish();
        p[10..12].copy_from_slice(&c.to_be_bytes());
        pseudo_header_v4(src4, dst4, 6, l4_len as u32)
    };
    let t = ip_len;
    p[t..t + 2].copy_from_slice(&40000u16.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&5201u16.to_be_bytes());
    p[t + 4..t + 8].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    p[t + 8..t + 12].copy_from_slice(&0x0200_0000u32.to_be_bytes());
    p[t + 12] = ((TCP_HEADER_LEN / 4) as u8) << 4;
    p[t + 13] = 0x18; // ACK | PSH
    p[t + 14..t + 16].copy_from_slice(&502u16.to_be_bytes());
    // Timestamps: NOP NOP TS(10) len 10.
    p[t + 20..t + 24].copy_from_slice(&[1, 1, 8, 10]);
    for (i, b) in p[t + TCP_HEADER_LEN..].iter_mut().enumerate() {
        *b = (i * 131 + 7) as u8;
    }
    p[t + 16..t + 18].copy_from_slice(&pseudo.fold().to_be_bytes());
    let vnet = VirtioNetRepr {
        needs_csum: true,
        data_valid: false,
        gso: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
        ecn: false,
        hdr_len: (ip_len + TCP_HEADER_LEN) as u16,
        gso_size: mss as u16,
        csum_start: ip_len as u16,
        csum_offset: 16,
    };
    (vnet, p)
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
