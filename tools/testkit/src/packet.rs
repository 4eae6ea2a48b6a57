//! Builders of test packets: IPv4 and IPv6 headers around UDP and TCP with correct checksums,
//! IPv4 options and IPv6 extension header chains, and TUN super-packets with their virtio
//! header.
//!
//! Contract: every builder returns a packet a Linux stack would accept (IPv4 header checksum,
//! UDP / TCP checksum over the pseudo header, lengths consistent), so a packet that must reach
//! a socket does and one that must not is caught for the reason under test; callers mangle
//! them afterwards. [`Ip`] holds the header fields tests choose (addresses decide the family);
//! [`udp`] and [`tcp`] build whole packets; the `ipv4_*` / `ipv6_*` functions are the common
//! shapes with [`Ip::new`]'s defaults (TTL / hop limit 64, DF, IPv4 id 1). [`super_packet`]
//! turns a whole TCP or UDP packet into what a TUN with offloads delivers: the L4 checksum
//! left partial (the pseudo-header sum) and a virtio header asking for segmentation at
//! `gso_size`; [`VnetHdr`] reads the raw virtio header the kernel wrote. The builders panic only on a caller's bug (mixed address families, a packet
//! over 64 KiB).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use encap::checksum::{self, pseudo_header_v4, pseudo_header_v6, Sum};
use encap::wire::virtio::{GsoType, VirtioNetRepr};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IPv6 next-header values of the extension headers the chains use (RFC 8200 section 4).
pub const NH_HOP_BY_HOP: u8 = 0;
/// Routing header.
pub const NH_ROUTING: u8 = 43;
/// Fragment header.
pub const NH_FRAGMENT: u8 = 44;
/// Destination options header.
pub const NH_DEST_OPTS: u8 = 60;
/// No next header.
pub const NH_NONE: u8 = 59;
/// TCP flag bits.
pub const TCP_SYN: u8 = 0x02;
/// TCP ACK.
pub const TCP_ACK: u8 = 0x10;
/// TCP PSH.
pub const TCP_PSH: u8 = 0x08;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM` (include/uapi/linux/virtio_net.h).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`.
pub const GSO_UDP_L4: u8 = 5;

/// `struct virtio_net_hdr` as the kernel wrote it, field by field (native endian, the TUN
/// default without TUNSETVNETLE/BE), for tests that assert the raw bits; encap's
/// `VirtioNetRepr::parse` is the checked reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    /// `flags`.
    pub flags: u8,
    /// `gso_type`.
    pub gso_type: u8,
    /// `hdr_len`.
    pub hdr_len: u16,
    /// `gso_size`.
    pub gso_size: u16,
    /// `csum_start`.
    pub csum_start: u16,
    /// `csum_offset`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the first 10 bytes of `b` (panics on a shorter buffer: a test's bug).
    pub fn parse(b: &[u8]) -> VnetHdr {
        let word = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: word(2),
            gso_size: word(4),
            csum_start: word(6),
            csum_offset: word(8),
        }
    }
}

/// The IP header fields a test chooses; the builders fill in the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip {
    /// Source address (its family is the packet's).
    pub src: IpAddr,
    /// Destination address, of the same family.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// IPv4 identification.
    pub id: u16,
    /// IPv4 don't-fragment.
    pub df: bool,
    /// IPv6 flow label (20 bits).
    pub flow_label: u32,
}

impl Ip {
    /// `src` -> `dst` with TTL 64, TOS 0, DF, id 1, flow label 0.
    pub fn new(src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Ip {
        Ip {
            src: src.into(),
            dst: dst.into(),
            ttl: 64,
            tos: 0,
            id: 1,
            df: true,
            flow_label: 0,
        }
    }

    /// The pseudo-header sum for `l4_len` bytes of `protocol`.
    fn pseudo(&self, protocol: u8, l4_len: usize) -> Sum {
        let len = u32::try_from(l4_len).expect("an L4 length fits 32 bits");
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo_header_v4(s.octets(), d.octets(), protocol, len)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                pseudo_header_v6(&s.octets(), &d.octets(), protocol, len)
            }
            _ => panic!("mixed address families: {} -> {}", self.src, self.dst),
        }
    }

    /// The IP header for `payload_len` bytes of `protocol`. IPv4: with `options` padded to 4
    /// bytes with EOL (at most 40); IPv6: `options` are extension headers placed as given
    /// (their first next-header is `protocol`'s predecessor, which the caller chains).
    pub fn header(&self, protocol: u8, options: &[u8], payload_len: usize) -> Vec<u8> {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let opt_len = options.len().div_ceil(4) * 4;
                assert!(opt_len <= 40, "IPv4 options of {} bytes", options.len());
                let header_len = 20 + opt_len;
                let total = u16::try_from(header_len + payload_len).expect("fits an IPv4 packet");
                let mut h = vec![0x40 | (header_len / 4) as u8, self.tos];
                h.extend_from_slice(&total.to_be_bytes());
                h.extend_from_slice(&self.id.to_be_bytes());
                h.extend_from_slice(&[if self.df { 0x40 } else { 0 }, 0, self.ttl, protocol, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(options);
                h.resize(header_len, 0);
                let c = checksum::checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let first = 0x6000_0000 | u32::from(self.tos) << 20 | (self.flow_label & 0xf_ffff);
                let len = u16::try_from(options.len() + payload_len).expect("fits an IPv6 packet");
                let next = if options.is_empty() {
                    protocol
                } else {
                    options[0]
                };
                let mut h = first.to_be_bytes().to_vec();
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[next, self.ttl]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h
            }
            _ => panic!("mixed address families: {} -> {}", self.src, self.dst),
        }
    }
}

/// A UDP datagram (header and `payload`) with its checksum over `pseudo`.
fn udp_datagram(sport: u16, dport: u16, payload: &[u8], pseudo: Sum) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("fits a UDP datagram");
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = pseudo.bytes(&u).finish();
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

/// A whole IP/UDP packet from `ip`, with IPv4 `options` (may be empty; none for IPv6).
pub fn udp(ip: &Ip, sport: u16, dport: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let u = udp_datagram(
        sport,
        dport,
        payload,
        ip.pseudo(PROTO_UDP, 8 + payload.len()),
    );
    let mut p = ip.header(PROTO_UDP, options, u.len());
    p.extend_from_slice(&u);
    p
}

/// TCP header fields for [`tcp`] and [`ipv4_tcp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag bits ([`TCP_SYN`], [`TCP_ACK`], ...).
    pub flags: u8,
    /// Window.
    pub window: u16,
}

/// A whole IP/TCP packet from `ip`, with TCP `options` (a multiple of 4 bytes).
pub fn tcp(ip: &Ip, t: &Tcp, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(options.len() % 4 == 0 && options.len() <= 40, "TCP options");
    let hlen = 20 + options.len();
    let l4_len = hlen + payload.len();
    let mut s = Vec::with_capacity(l4_len);
    s.extend_from_slice(&t.sport.to_be_bytes());
    s.extend_from_slice(&t.dport.to_be_bytes());
    s.extend_from_slice(&t.seq.to_be_bytes());
    s.extend_from_slice(&t.ack.to_be_bytes());
    s.push(((hlen / 4) as u8) << 4);
    s.push(t.flags);
    s.extend_from_slice(&t.window.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(options);
    s.extend_from_slice(payload);
    let c = ip.pseudo(PROTO_TCP, l4_len).bytes(&s).finish();
    s[16..18].copy_from_slice(&c.to_be_bytes());
    let mut p = ip.header(PROTO_TCP, &[], l4_len);
    p.extend_from_slice(&s);
    p
}

/// An IPv4 header (no options) for `payload_len` bytes of protocol `proto`.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Vec<u8> {
    Ip::new(src, dst).header(proto, &[], payload_len)
}

/// An IPv4/UDP packet carrying `payload`.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp(&Ip::new(src, dst), sport, dport, &[], payload)
}

/// An IPv4/UDP packet carrying `payload`, with IPv4 `options` (padded to 4 bytes with EOL).
pub fn ipv4_udp_with_options(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    udp(&Ip::new(src, dst), sport, dport, options, payload)
}

/// An IPv6/UDP packet carrying `payload`.
pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp(&Ip::new(src, dst), sport, dport, &[], payload)
}

/// An IPv4/TCP segment with `options` (a multiple of 4 bytes).
pub fn ipv4_tcp(src: Ipv4Addr, dst: Ipv4Addr, t: Tcp, options: &[u8], payload: &[u8]) -> Vec<u8> {
    tcp(&Ip::new(src, dst), &t, options, payload)
}

/// An IPv6/UDP packet carrying `payload` behind the extension headers `chain` (each a next
/// header value; every header gets 8 bytes: a PadN option for hop-by-hop and destination
/// options, a routing header of type 253 with segments left 0, an atomic fragment header).
pub fn ipv6_udp_with_chain(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    chain: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let ip = Ip::new(src, dst);
    let u = udp_datagram(
        sport,
        dport,
        payload,
        ip.pseudo(PROTO_UDP, 8 + payload.len()),
    );
    let mut ext = Vec::with_capacity(chain.len() * 8);
    for (i, &kind) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(PROTO_UDP);
        match kind {
            NH_FRAGMENT => ext.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0x12, 0x34]),
            // Type 253 (experimental), segments left 0.
            NH_ROUTING => ext.extend_from_slice(&[next, 0, 253, 0, 0, 0, 0, 0]),
            // Hop-by-hop / destination options: PadN of 4 bytes.
            _ => ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
        }
    }
    let mut p = ip.header(
        chain.first().copied().unwrap_or(PROTO_UDP),
        &[],
        ext.len() + u.len(),
    );
    p.extend_from_slice(&ext);
    p.extend_from_slice(&u);
    p
}

/// Where the L4 header of `packet` starts (IPv6: right after the fixed header).
pub fn l4_offset(packet: &[u8]) -> usize {
    if packet[0] >> 4 == 6 {
        40
    } else {
        usize::from(packet[0] & 0xf) * 4
    }
}

/// The pseudo-header sum of `packet`'s L4 part (IPv6: the fixed header's next header).
pub fn pseudo_header_sum(packet: &[u8]) -> Sum {
    let l4 = l4_offset(packet);
    let len = (packet.len() - l4) as u32;
    if packet[0] >> 4 == 6 {
        let mut src = [0; 16];
        let mut dst = [0; 16];
        src.copy_from_slice(&packet[8..24]);
        dst.copy_from_slice(&packet[24..40]);
        pseudo_header_v6(&src, &dst, packet[6], len)
    } else {
        let src = [packet[12], packet[13], packet[14], packet[15]];
        let dst = [packet[16], packet[17], packet[18], packet[19]];
        pseudo_header_v4(src, dst, packet[9], len)
    }
}

/// Whether the IPv4 header checksum (IPv4) and the L4 checksum of `packet` verify.
pub fn checksums_verify(packet: &[u8]) -> bool {
    let l4 = l4_offset(packet);
    let ip_ok = packet[0] >> 4 == 6 || checksum::verifies(Sum::ZERO.bytes(&packet[..l4]));
    ip_ok && checksum::verifies(pseudo_header_sum(packet).combine(Sum::ZERO.bytes(&packet[l4..])))
}

/// The super-packet a TUN with offloads delivers for the whole TCP or UDP `packet` (from
/// [`tcp`] or [`udp`], no extension headers): its L4 checksum replaced by the folded
/// pseudo-header sum, and a virtio header with `NEEDS_CSUM` asking for segments of
/// `gso_size` payload bytes (TSO for TCP, USO for UDP).
pub fn super_packet(mut packet: Vec<u8>, gso_size: u16) -> (VirtioNetRepr, Vec<u8>) {
    let l4 = l4_offset(&packet);
    let v6 = packet[0] >> 4 == 6;
    let protocol = if v6 { packet[6] } else { packet[9] };
    let (csum_offset, l4_hdr, gso) = match (protocol, v6) {
        (PROTO_TCP, false) => (16, usize::from(packet[l4 + 12] >> 4) * 4, GsoType::TcpV4),
        (PROTO_TCP, true) => (16, usize::from(packet[l4 + 12] >> 4) * 4, GsoType::TcpV6),
        (PROTO_UDP, _) => (6, 8, GsoType::UdpL4),
        _ => panic!("a super-packet of protocol {protocol}"),
    };
    let partial = pseudo_header_sum(&packet).fold();
    packet[l4 + csum_offset..l4 + csum_offset + 2].copy_from_slice(&partial.to_be_bytes());
    let vnet = VirtioNetRepr {
        needs_csum: true,
        data_valid: false,
        gso,
        ecn: false,
        hdr_len: (l4 + l4_hdr) as u16,
        gso_size,
        csum_start: l4 as u16,
        csum_offset: csum_offset as u16,
    };
    (vnet, packet)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_with_options_is_valid() {
        let (s, d) = (Ipv4Addr::new(10, 244, 3, 7), Ipv4Addr::new(10, 244, 2, 1));
        for opts in [
            &[][..],
            &[1, 1, 1, 1][..],
            &[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            let p = ipv4_udp_with_options(s, d, 1, 9999, opts, b"hello");
            let ihl = l4_offset(&p);
            assert_eq!(ihl, 20 + opts.len().div_ceil(4) * 4);
            assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
            assert!(checksums_verify(&p));
            assert_eq!(&p[ihl + 8..], b"hello");
        }
    }

    #[test]
    fn ipv6_chain_is_valid() {
        let s: Ipv6Addr = "fd00:10:244:3::7".parse().unwrap();
        let d: Ipv6Addr = "fd00:10:244:2::1".parse().unwrap();
        let p = ipv6_udp_with_chain(
            s,
            d,
            1,
            9999,
            &[NH_HOP_BY_HOP, NH_DEST_OPTS, NH_ROUTING, NH_FRAGMENT],
            b"hi",
        );
        assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])) + 40, p.len());
        assert_eq!(p[6], NH_HOP_BY_HOP);
        let ext = &p[40..];
        assert_eq!(ext[0], NH_DEST_OPTS);
        assert_eq!(ext[8], NH_ROUTING);
        assert_eq!(ext[16], NH_FRAGMENT);
        assert_eq!(ext[24], PROTO_UDP);
        let u = &p[40 + 32..];
        let pseudo = pseudo_header_v6(&s.octets(), &d.octets(), PROTO_UDP, u.len() as u32);
        assert!(checksum::verifies(pseudo.bytes(u)));
        let plain = ipv6_udp(s, d, 1, 2, b"x");
        assert_eq!(plain[6], PROTO_UDP);
        assert!(checksums_verify(&plain));
    }

    #[test]
    fn tcp_over_both_families_verifies() {
        let t = Tcp {
            sport: 40000,
            dport: 5201,
            seq: 7,
            ack: 9,
            flags: TCP_ACK | TCP_PSH,
            window: 502,
        };
        let v4 = Ip::new(Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 7));
        let mut v6 = Ip::new(
            "fd00:10:244:1::5".parse::<Ipv6Addr>().unwrap(),
            "fd00:10:244:2::7".parse::<Ipv6Addr>().unwrap(),
        );
        v6.tos = 0xa;
        v6.flow_label = 0xbcde;
        for ip in [v4, v6] {
            let p = tcp(
                &ip,
                &t,
                &[1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0],
                &[0x5a; 100],
            );
            assert!(checksums_verify(&p), "{ip:?}");
            assert_eq!(p.len(), l4_offset(&p) + 32 + 100);
        }
        assert_eq!(&tcp(&v6, &t, &[], &[])[..4], &[0x60, 0xa0, 0xbc, 0xde]);
    }

    #[test]
    fn a_super_packet_holds_the_pseudo_header_sum() {
        let ip = Ip::new(Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 7));
        let whole = udp(&ip, 1, 2, &[], &[3; 3000]);
        let (vnet, sp) = super_packet(whole.clone(), 1000);
        assert_eq!(vnet.gso, GsoType::UdpL4);
        assert_eq!(
            (vnet.csum_start, vnet.csum_offset, vnet.hdr_len),
            (20, 6, 28)
        );
        assert_eq!(sp.len(), whole.len());
        assert!(!checksums_verify(&sp));
        let partial = u16::from_be_bytes([sp[26], sp[27]]);
        assert_eq!(partial, pseudo_header_sum(&whole).fold());
    }
}
