//! Encapsulation and decapsulation for flannel's two backends, into caller-owned buffers.
//!
//! * **udp** (flannel `"Type": "udp"`): the UDP payload is the inner IP packet and nothing else.
//!   Encapsulation is the identity; [`udp_decap`] validates and trims what arrives.
//! * **vxlan** (flannel `"Type": "vxlan"`): the UDP payload is an 8-byte VXLAN header (flags
//!   0x08, the VNI), an inner Ethernet header (destination = the receiving node's VtepMAC,
//!   source = ours, ethertype by IP version) and the inner IP packet. [`VxlanEncap`] writes it
//!   byte for byte as a kernel `flannel.1` does; [`VxlanDecap`] accepts exactly what a kernel
//!   VTEP accepts, and names every rejection with a [`DecapError`] so that drops can be counted
//!   by reason.
//!
//! Contract: no allocation, no panics on any input; the inner packet returned by a decap is a
//! sub-slice of the datagram, trimmed to the inner IP length (kernel frames may be padded).
//! [`source_port`] gives the outer UDP source port for an inner packet.

use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{ethernet, ethertype, proto, vxlan};
use crate::{Error, Result};
use core::fmt;

/// flannel's default UDP port for the udp backend (`Backend.Port`).
pub const FLANNEL_UDP_PORT: u16 = 8285;
/// flannel's default VXLAN port: the Linux kernel's default for a vxlan device whose
/// `dstport` is 0 (`IANA_VXLAN_UDP_PORT` is 4789; Linux keeps the pre-IANA 8472).
pub const VXLAN_PORT: u16 = 8472;
/// The MTU cut of the udp backend: outer IPv4 header (20) + UDP header (8).
pub const UDP_OVERHEAD: usize = 20 + 8;
/// The MTU cut of the vxlan backend: [`UDP_OVERHEAD`] + VXLAN header (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: usize = UDP_OVERHEAD + VXLAN_HEADER_LEN;
/// Bytes in front of the inner IP packet in a VXLAN datagram payload: VXLAN + inner Ethernet.
pub const VXLAN_HEADER_LEN: usize = vxlan::HEADER_LEN + ethernet::HEADER_LEN;

/// A MAC address (a VtepMAC).
pub type Mac = [u8; 6];

/// The first port of the kernel's default local port range (`net.ipv4.ip_local_port_range`,
/// `inet_init_net` in net/ipv4/af_inet.c).
pub const SOURCE_PORT_MIN: u16 = 32768;
/// The last port of the kernel's default local port range.
pub const SOURCE_PORT_MAX: u16 = 60999;

/// Why a received datagram was dropped. Each variant is a drop the Linux kernel's VXLAN
/// receive path (or, for udp, flannel's proxy plus the IP layer behind the TUN) also makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecapError {
    /// Shorter than the VXLAN and inner Ethernet headers, or than an IP header.
    Truncated,
    /// The VXLAN flags byte is not exactly the I flag (I missing, or any R bit set).
    ReservedFlags,
    /// A reserved VXLAN field (the 24 bits after the flags, the 8 bits after the VNI) is
    /// non-zero. RFC 7348 says to ignore them; Linux `vxlan_rcv` drops, and so do we.
    ReservedBits,
    /// The VNI is not ours.
    WrongVni,
    /// The inner destination MAC is not our VtepMAC. Broadcast and multicast are rejected too:
    /// a kernel VTEP would pass them up, but flannel peers only ever address each other by
    /// VtepMAC, and nothing in the overlay is broadcast (no ARP: neighbours are static).
    WrongDstMac,
    /// The inner source MAC is our own VtepMAC: a loop (`vxlan_set_mac` drops it).
    Loop,
    /// The inner ethertype is neither IPv4 nor IPv6 (ARP, VLAN tags, ...).
    NotIp,
    /// The inner IP packet is malformed; the string names what.
    BadInner(&'static str),
}

impl DecapError {
    /// A short, fixed, snake_case reason, usable as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            DecapError::Truncated => "truncated",
            DecapError::ReservedFlags => "reserved_flags",
            DecapError::ReservedBits => "reserved_bits",
            DecapError::WrongVni => "wrong_vni",
            DecapError::WrongDstMac => "wrong_dst_mac",
            DecapError::Loop => "loop",
            DecapError::NotIp => "not_ip",
            DecapError::BadInner(_) => "bad_inner",
        }
    }
}

impl fmt::Display for DecapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecapError::Truncated => f.write_str("datagram truncated"),
            DecapError::ReservedFlags => f.write_str("vxlan flags other than the I flag"),
            DecapError::ReservedBits => f.write_str("vxlan reserved bits set"),
            DecapError::WrongVni => f.write_str("vxlan VNI is not ours"),
            DecapError::WrongDstMac => f.write_str("inner destination MAC is not our VtepMAC"),
            DecapError::Loop => f.write_str("inner source MAC is our own VtepMAC"),
            DecapError::NotIp => f.write_str("inner ethertype is not IPv4 or IPv6"),
            DecapError::BadInner(what) => write!(f, "bad inner IP packet: {what}"),
        }
    }
}

impl std::error::Error for DecapError {}

/// The length of the IP packet at the start of `packet`, from its own header, after checking
/// the version (4 or 6), the header length and that the packet fits in the buffer.
///
/// IPv6 jumbograms (payload length 0 with a jumbo option) are not supported: a payload length
/// of 0 means a bare 40-byte header.
pub fn ip_packet_len(packet: &[u8]) -> core::result::Result<usize, DecapError> {
    let Some(&first) = packet.first() else {
        return Err(DecapError::Truncated);
    };
    match first >> 4 {
        4 => {
            if packet.len() < ipv4::HEADER_LEN {
                return Err(DecapError::Truncated);
            }
            let ip = Ipv4Packet::new_unchecked(packet);
            let ihl = ip.header_len();
            let total = usize::from(ip.total_len());
            if ihl < ipv4::HEADER_LEN {
                return Err(DecapError::BadInner("ipv4 header length below 20"));
            }
            if total < ihl {
                return Err(DecapError::BadInner(
                    "ipv4 total length below header length",
                ));
            }
            if total > packet.len() {
                return Err(DecapError::BadInner("ipv4 total length beyond datagram"));
            }
            Ok(total)
        }
        6 => {
            if packet.len() < ipv6::HEADER_LEN {
                return Err(DecapError::Truncated);
            }
            let total = Ipv6Packet::new_unchecked(packet).total_len();
            if total > packet.len() {
                return Err(DecapError::BadInner("ipv6 payload length beyond datagram"));
            }
            Ok(total)
        }
        _ => Err(DecapError::BadInner("ip version not 4 or 6")),
    }
}

/// Decapsulates a flannel udp-backend datagram: the payload is the inner IP packet. Checks the
/// version, header length and total length, and trims any bytes after the IP length.
pub fn udp_decap(datagram: &[u8]) -> core::result::Result<&[u8], DecapError> {
    let len = ip_packet_len(datagram)?;
    Ok(&datagram[..len])
}

/// How we encapsulate towards one VXLAN peer: our VNI, our VtepMAC and the peer's VtepMAC
/// (from its lease's `BackendData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanEncap {
    /// The VNI (24 bits; flannel's default is 1).
    pub vni: u32,
    /// Our own VtepMAC: the inner source MAC.
    pub local_mac: Mac,
    /// The peer's VtepMAC: the inner destination MAC.
    pub peer_mac: Mac,
}

impl VxlanEncap {
    /// The 22 bytes that precede an inner IP packet of version `ip_version`: the VXLAN header
    /// (flags 0x08, the VNI, reserved bits zero) and the inner Ethernet header (peer VtepMAC,
    /// our VtepMAC, ethertype 0x86DD for `ip_version == 6`, 0x0800 otherwise). This is the
    /// template the GSO splitter puts in front of each segment.
    #[inline]
    pub fn header(&self, ip_version: u8) -> [u8; VXLAN_HEADER_LEN] {
        let ethertype = if ip_version == 6 {
            ethertype::IPV6
        } else {
            ethertype::IPV4
        };
        let mut h = [0u8; VXLAN_HEADER_LEN];
        let (vx, eth) = h.split_at_mut(vxlan::HEADER_LEN);
        vxlan::Repr { vni: self.vni }.emit(&mut vxlan::Packet::new_unchecked(vx));
        ethernet::Repr {
            dst_addr: self.peer_mac,
            src_addr: self.local_mac,
            ethertype,
        }
        .emit(&mut ethernet::Frame::new_unchecked(eth));
        h
    }

    /// Writes the UDP payload for `inner` (an IPv4 or IPv6 packet) into `out` and returns its
    /// length, `VXLAN_HEADER_LEN + inner.len()`.
    pub fn encap(&self, inner: &[u8], out: &mut [u8]) -> Result<usize> {
        let version = match inner.first().map(|b| b >> 4) {
            Some(v @ (4 | 6)) => v,
            Some(_) => return Err(Error::Unsupported("ip version not 4 or 6")),
            None => return Err(Error::Truncated { needed: 1 }),
        };
        let len = VXLAN_HEADER_LEN + inner.len();
        let Some(out) = out.get_mut(..len) else {
            return Err(Error::Truncated { needed: len });
        };
        let (head, body) = out.split_at_mut(VXLAN_HEADER_LEN);
        head.copy_from_slice(&self.header(version));
        body.copy_from_slice(inner);
        Ok(len)
    }
}

/// How we accept VXLAN datagrams: our VNI and our own VtepMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanDecap {
    /// The VNI we accept.
    pub vni: u32,
    /// Our own VtepMAC: the only inner destination we accept, and a source we never accept.
    pub local_mac: Mac,
}

/// A decapsulated VXLAN datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapped<'a> {
    /// The inner IP packet, trimmed to its IP length.
    pub inner: &'a [u8],
    /// The inner source MAC: the sender's VtepMAC.
    pub src_mac: Mac,
}

impl VxlanDecap {
    /// Validates a VXLAN UDP payload and returns the inner IP packet and the sender's VtepMAC.
    ///
    /// Checks, in the order Linux `vxlan_rcv` makes them: length; the flags byte is exactly
    /// 0x08 ([`DecapError::ReservedFlags`]); the VNI is ours; the reserved bits are zero; then
    /// the inner Ethernet header (`vxlan_set_mac`: source MAC not ours; then the destination is
    /// our VtepMAC, where the kernel would mark the frame PACKET_OTHERHOST and drop it in
    /// `ip_rcv`); the ethertype is IPv4 or IPv6 and matches the IP version; the IP lengths fit.
    /// The inner IPv4 header checksum is not verified here: the kernel's `ip_rcv` behind the
    /// TUN does that.
    pub fn decap<'a>(&self, datagram: &'a [u8]) -> core::result::Result<Decapped<'a>, DecapError> {
        if datagram.len() < VXLAN_HEADER_LEN {
            return Err(DecapError::Truncated);
        }
        let vx = vxlan::Packet::new_unchecked(datagram);
        if vx.flags() != vxlan::FLAG_I {
            return Err(DecapError::ReservedFlags);
        }
        if vx.vni() != self.vni {
            return Err(DecapError::WrongVni);
        }
        if vx.reserved0() != 0 || vx.reserved1() != 0 {
            return Err(DecapError::ReservedBits);
        }
        let eth = ethernet::Frame::new_unchecked(vx.payload());
        let src_mac = eth.src_addr();
        if src_mac == self.local_mac {
            return Err(DecapError::Loop);
        }
        if eth.dst_addr() != self.local_mac {
            return Err(DecapError::WrongDstMac);
        }
        let want_version = match eth.ethertype() {
            ethertype::IPV4 => 4,
            ethertype::IPV6 => 6,
            _ => return Err(DecapError::NotIp),
        };
        let packet = eth.payload();
        match packet.first() {
            None => return Err(DecapError::Truncated),
            Some(b) if b >> 4 != want_version => {
                return Err(DecapError::BadInner("ip version does not match ethertype"))
            }
            Some(_) => {}
        }
        let len = ip_packet_len(packet)?;
        Ok(Decapped {
            inner: &packet[..len],
            src_mac,
        })
    }
}

/// The outer UDP source port for `inner`: a stable hash of the inner flow mapped into
/// [`SOURCE_PORT_MIN`]..[`SOURCE_PORT_MAX`] as the kernel's `udp_flow_src_port`
/// (include/net/udp.h) maps `skb_get_hash`: `(((u64) hash * (max - min)) >> 32) + min`.
///
/// The flow is the 5-tuple (source, destination, protocol, TCP/UDP ports) or, for other
/// protocols, IPv6 packets with extension headers, IPv4 fragments and truncated transport
/// headers, the 3-tuple, so that every fragment of a datagram takes the same path. The hash
/// has no random seed: the same flow gets the same port on every node and every run (the
/// kernel seeds its hash per boot, so ports differ from a kernel VTEP's; receivers accept any).
/// Unparseable input gets a fixed port.
#[inline]
pub fn source_port(inner: &[u8]) -> u16 {
    let hash = flow_hash(inner);
    let range = u64::from(SOURCE_PORT_MAX - SOURCE_PORT_MIN);
    // At most min + (range * (2^32 - 1)) >> 32 < max: always in range.
    SOURCE_PORT_MIN + ((u64::from(hash) * range) >> 32) as u16
}

/// A 32-bit hash of the inner flow (see [`source_port`]).
#[inline]
fn flow_hash(p: &[u8]) -> u32 {
    let mut h = Mixer::new();
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= ipv4::HEADER_LEN => {
            // Fixed-offset reads after the one length check above (no check_len: the header
            // length is only used through `ports`, which bounds-checks).
            let ip = Ipv4Packet::new_unchecked(p);
            let protocol = ip.protocol();
            // More-fragments flag or a fragment offset: not every fragment has the ports.
            let fragment = ip.is_fragment();
            h.add(
                u64::from(u32::from_be_bytes(ip.src())) << 32
                    | u64::from(u32::from_be_bytes(ip.dst())),
            );
            h.add(u64::from(protocol) << 32 | ports(p, ip.header_len(), protocol, fragment));
        }
        Some(6) if p.len() >= ipv6::HEADER_LEN => {
            let next = Ipv6Packet::new_unchecked(p).next_header();
            for w in p[8..40].chunks_exact(8) {
                h.add(u64::from_be_bytes([
                    w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
                ]));
            }
            h.add(u64::from(next) << 32 | ports(p, ipv6::HEADER_LEN, next, false));
        }
        _ => {}
    }
    h.finish()
}

/// The TCP/UDP source and destination ports at `off` as one 32-bit value, or 0.
#[inline]
fn ports(p: &[u8], off: usize, protocol: u8, fragment: bool) -> u64 {
    if fragment || (protocol != proto::TCP && protocol != proto::UDP) {
        return 0;
    }
    match p.get(off..off + 4) {
        Some(b) => u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => 0,
    }
}

/// A small multiply-rotate hash over 64-bit words with a murmur3 finaliser: a few ns per
/// packet, no seed, good spread in the high bits (which the port mapping uses).
struct Mixer(u64);

impl Mixer {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    #[inline]
    fn new() -> Mixer {
        Mixer(0x243f_6a88_85a3_08d3)
    }

    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(Self::K).rotate_left(31);
    }

    #[inline]
    fn finish(self) -> u32 {
        // MurmurHash3 fmix64.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        (x >> 32) as u32
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checksum::{verifies, Sum};
    use crate::test_packets;

    const MAC_A: Mac = [0x0e, 0x7f, 0x1a, 0, 0, 0x0a];
    const MAC_B: Mac = [0x0e, 0x7f, 0x1a, 0, 0, 0x0b];

    /// An IPv4 packet 10.244.1.2 -> 10.244.2.3 with `payload` after a 20-byte header.
    fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let h = test_packets::V4 {
            tos: 0,
            id: 0x1234,
            frag: 0x4000,
            ttl: 64,
            protocol,
            src: [10, 244, 1, 2],
            dst: [10, 244, 2, 3],
        };
        test_packets::ipv4(&h, &[], payload)
    }

    fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
        let src = [0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1];
        test_packets::ipv6(0x6000_0000, next, 64, &src, &dst, payload)
    }

    fn tcp_ports(sport: u16, dport: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 0x50;
        t
    }

    #[test]
    fn constants() {
        assert_eq!(FLANNEL_UDP_PORT, 8285);
        assert_eq!(VXLAN_PORT, 8472);
        assert_eq!(UDP_OVERHEAD, 28);
        assert_eq!(VXLAN_OVERHEAD, 50);
        assert_eq!(VXLAN_HEADER_LEN, 22);
    }

    #[test]
    fn header_template() {
        let e = VxlanEncap {
            vni: 0x010203,
            local_mac: MAC_A,
            peer_mac: MAC_B,
        };
        let h = e.header(4);
        assert_eq!(
            h,
            [
                0x08, 0, 0, 0, 0x01, 0x02, 0x03, 0, // VXLAN
                0x0e, 0x7f, 0x1a, 0, 0, 0x0b, // dst = peer
                0x0e, 0x7f, 0x1a, 0, 0, 0x0a, // src = us
                0x08, 0x00,
            ]
        );
        assert_eq!(e.header(6)[20..], [0x86, 0xdd]);
        assert_eq!(e.header(6)[..20], h[..20]);
    }

    #[test]
    fn encap_decap_round_trip() {
        let e = VxlanEncap {
            vni: 1,
            local_mac: MAC_A,
            peer_mac: MAC_B,
        };
        let d = VxlanDecap {
            vni: 1,
            local_mac: MAC_B,
        };
        for inner in [
            ipv4(proto::UDP, &[1, 2, 3, 4, 0, 12, 0, 0, 9]),
            ipv6(59, &[7; 13]),
        ] {
            let mut out = [0u8; 200];
            let n = e.encap(&inner, &mut out).unwrap();
            assert_eq!(n, 22 + inner.len());
            assert_eq!(out[..22], e.header(inner[0] >> 4));
            let got = d.decap(&out[..n]).unwrap();
            assert_eq!(got.inner, &inner[..]);
            assert_eq!(got.src_mac, MAC_A);
            // Padding after the IP packet is trimmed off.
            let got = d.decap(&out[..n + 10]).unwrap();
            assert_eq!(got.inner, &inner[..]);
        }
    }

    #[test]
    fn encap_errors() {
        let e = VxlanEncap {
            vni: 1,
            local_mac: MAC_A,
            peer_mac: MAC_B,
        };
        let inner = ipv4(proto::ICMP, &[8, 0, 0, 0]);
        let mut out = [0u8; 45];
        assert_eq!(
            e.encap(&inner, &mut out),
            Err(Error::Truncated { needed: 46 })
        );
        assert_eq!(
            e.encap(&[0x50, 0], &mut out),
            Err(Error::Unsupported("ip version not 4 or 6"))
        );
        assert_eq!(e.encap(&[], &mut out), Err(Error::Truncated { needed: 1 }));
    }

    fn frame(inner: &[u8]) -> Vec<u8> {
        let e = VxlanEncap {
            vni: 1,
            local_mac: MAC_A,
            peer_mac: MAC_B,
        };
        let mut out = vec![0u8; 22 + inner.len()];
        e.encap(inner, &mut out).unwrap();
        out
    }

    #[test]
    fn decap_rejections() {
        let d = VxlanDecap {
            vni: 1,
            local_mac: MAC_B,
        };
        let good = frame(&ipv4(proto::ICMP, &[8, 0, 0, 0, 0, 0, 0, 0]));
        let reject = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            d.decap(&b).err()
        };
        assert_eq!(reject(&|_| {}), None);
        assert_eq!(reject(&|b| b.truncate(21)), Some(DecapError::Truncated));
        assert_eq!(reject(&|b| b.truncate(22)), Some(DecapError::Truncated));
        assert_eq!(reject(&|b| b.truncate(30)), Some(DecapError::Truncated));
        assert_eq!(reject(&|b| b[0] = 0), Some(DecapError::ReservedFlags));
        assert_eq!(reject(&|b| b[0] = 0x0c), Some(DecapError::ReservedFlags));
        assert_eq!(reject(&|b| b[2] = 1), Some(DecapError::ReservedBits));
        assert_eq!(reject(&|b| b[7] = 1), Some(DecapError::ReservedBits));
        assert_eq!(reject(&|b| b[6] = 2), Some(DecapError::WrongVni));
        assert_eq!(reject(&|b| b[8 + 5] = 0x0c), Some(DecapError::WrongDstMac));
        assert_eq!(
            reject(&|b| b[8..14].copy_from_slice(&[0xff; 6])),
            Some(DecapError::WrongDstMac)
        );
        assert_eq!(
            reject(&|b| b[8..14].copy_from_slice(&[0x01, 0, 0x5e, 0, 0, 1])),
            Some(DecapError::WrongDstMac)
        );
        assert_eq!(
            reject(&|b| b[14..20].copy_from_slice(&MAC_B)),
            Some(DecapError::Loop)
        );
        assert_eq!(
            reject(&|b| b[20..22].copy_from_slice(&[0x08, 0x06])),
            Some(DecapError::NotIp)
        );
        assert_eq!(
            reject(&|b| b[20..22].copy_from_slice(&[0x86, 0xdd])),
            Some(DecapError::BadInner("ip version does not match ethertype"))
        );
        assert_eq!(
            reject(&|b| b[22] = 0x44),
            Some(DecapError::BadInner("ipv4 header length below 20"))
        );
        assert_eq!(
            reject(&|b| b[25] = 200),
            Some(DecapError::BadInner("ipv4 total length beyond datagram"))
        );
        assert_eq!(
            reject(&|b| b[25] = 19),
            Some(DecapError::BadInner(
                "ipv4 total length below header length"
            ))
        );
    }

    #[test]
    fn decap_ipv6_lengths() {
        let d = VxlanDecap {
            vni: 1,
            local_mac: MAC_B,
        };
        let mut f = frame(&ipv6(59, &[1, 2, 3]));
        assert_eq!(d.decap(&f).unwrap().inner.len(), 43);
        f[22 + 5] = 4;
        assert_eq!(
            d.decap(&f).err(),
            Some(DecapError::BadInner("ipv6 payload length beyond datagram"))
        );
        assert_eq!(d.decap(&f[..22 + 39]).err(), Some(DecapError::Truncated));
    }

    #[test]
    fn udp_backend() {
        let p = ipv4(proto::UDP, &[0, 1, 0, 2, 0, 9, 0, 0, 0x61]);
        assert_eq!(udp_decap(&p), Ok(&p[..]));
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 5]);
        assert_eq!(udp_decap(&padded), Ok(&p[..]));
        assert_eq!(
            udp_decap(&p[..28]).err().map(|e| e.reason()),
            Some("bad_inner")
        );
        assert_eq!(udp_decap(&p[..19]), Err(DecapError::Truncated));
        assert_eq!(udp_decap(&[]), Err(DecapError::Truncated));
        assert_eq!(
            udp_decap(&[0x20; 40]),
            Err(DecapError::BadInner("ip version not 4 or 6"))
        );
        let v6 = ipv6(59, &[]);
        assert_eq!(udp_decap(&v6), Ok(&v6[..]));
        // The inner packet's checksum is untouched.
        assert!(verifies(Sum::ZERO.bytes(&udp_decap(&p).unwrap()[..20])));
    }

    #[test]
    fn reasons_and_display() {
        let all = [
            DecapError::Truncated,
            DecapError::ReservedFlags,
            DecapError::ReservedBits,
            DecapError::WrongVni,
            DecapError::WrongDstMac,
            DecapError::Loop,
            DecapError::NotIp,
            DecapError::BadInner("x"),
        ];
        let reasons: Vec<_> = all.iter().map(|e| e.reason()).collect();
        assert_eq!(
            reasons,
            [
                "truncated",
                "reserved_flags",
                "reserved_bits",
                "wrong_vni",
                "wrong_dst_mac",
                "loop",
                "not_ip",
                "bad_inner"
            ]
        );
        assert_eq!(
            DecapError::BadInner("ipv4 header length below 20").to_string(),
            "bad inner IP packet: ipv4 header length below 20"
        );
        let e: Box<dyn std::error::Error> = Box::new(DecapError::Loop);
        assert_eq!(e.to_string(), "inner source MAC is our own VtepMAC");
    }

    fn port_of(sport: u16, dport: u16) -> u16 {
        source_port(&ipv4(proto::TCP, &tcp_ports(sport, dport)))
    }

    #[test]
    fn source_port_is_stable() {
        // Fixed values: the hash has no seed, so these never change between runs or builds.
        // If the hash function is changed on purpose, update them (peers do not care).
        let a = port_of(40000, 80);
        assert_eq!(a, port_of(40000, 80));
        assert_eq!(a, 50883);
        assert_eq!(source_port(&[]), 46310);
    }

    #[test]
    fn source_port_range() {
        let mut min = u16::MAX;
        let mut max = 0;
        for sport in 0..20000u16 {
            let p = port_of(sport, 443);
            assert!((SOURCE_PORT_MIN..=SOURCE_PORT_MAX).contains(&p), "{p}");
            min = min.min(p);
            max = max.max(p);
        }
        // Spread over nearly the whole range.
        assert!(min < SOURCE_PORT_MIN + 100, "{min}");
        assert!(max > SOURCE_PORT_MAX - 100, "{max}");
        for garbage in [&[0xffu8; 3][..], &[0x45; 19], &[0x60; 39], &[0x45; 64]] {
            assert!((SOURCE_PORT_MIN..=SOURCE_PORT_MAX).contains(&source_port(garbage)));
        }
    }

    #[test]
    fn source_port_spreads_flows() {
        // 1000 flows that differ only in the client port land in many distinct ports.
        let mut seen = std::collections::HashSet::new();
        for sport in 50000..51000u16 {
            seen.insert(port_of(sport, 8080));
        }
        assert!(seen.len() > 950, "{}", seen.len());
    }

    #[test]
    fn source_port_flow_sensitivity() {
        let base = ipv4(proto::UDP, &[0x9c, 0x40, 0x00, 0x35, 0, 8, 0, 0]);
        let p = source_port(&base);
        // Each element of the 5-tuple changes the port.
        for (i, v) in [(15, 9u8), (19, 9), (20, 0x9d), (23, 0x36)] {
            let mut q = base.clone();
            q[i] = v;
            assert_ne!(source_port(&q), p, "byte {i}");
        }
        let mut q = base.clone();
        q[9] = proto::TCP;
        assert_ne!(source_port(&q), p, "protocol");
        // Fields outside the flow do not.
        let mut q = base.clone();
        q[8] = 3; // TTL
        q[4] = 0x99; // ID
        q[26] = 0xaa; // UDP checksum
        assert_eq!(source_port(&q), p);
    }

    #[test]
    fn source_port_fragments_use_the_3_tuple() {
        let first = ipv4(proto::UDP, &[0x9c, 0x40, 0x00, 0x35, 5, 0xdc, 0, 0]);
        let mut first_frag = first.clone();
        first_frag[6] = 0x20; // MF
        let mut later = ipv4(proto::UDP, &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
        later[6] = 0x00;
        later[7] = 0xb9; // offset 185 * 8
        assert_eq!(source_port(&first_frag), source_port(&later));
        assert_ne!(source_port(&first), source_port(&first_frag));
        // ICMP: 3-tuple, the payload does not matter.
        let a = source_port(&ipv4(proto::ICMP, &[8, 0, 1, 2, 3, 4, 5, 6]));
        let b = source_port(&ipv4(proto::ICMP, &[8, 0, 9, 9, 9, 9, 9, 9]));
        assert_eq!(a, b);
    }

    #[test]
    fn source_port_ipv6() {
        let a = source_port(&ipv6(proto::TCP, &tcp_ports(1000, 22)));
        let b = source_port(&ipv6(proto::TCP, &tcp_ports(1001, 22)));
        assert_ne!(a, b);
        assert!((SOURCE_PORT_MIN..=SOURCE_PORT_MAX).contains(&a));
        let mut other_dst = ipv6(proto::TCP, &tcp_ports(1000, 22));
        other_dst[39] = 2;
        assert_ne!(source_port(&other_dst), a);
        // Truncated transport header: 3-tuple, no panic.
        let short = ipv6(proto::TCP, &[0x03]);
        assert_eq!(source_port(&short), source_port(&ipv6(proto::TCP, &[0x04])));
    }
}
