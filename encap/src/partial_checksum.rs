//! Inner TCP and UDP checksums that a sender on the same host left partial (the kernel's
//! `CHECKSUM_PARTIAL`).
//!
//! A Linux sender with transmit checksum offload writes into the TCP or UDP checksum field only
//! the folded sum of the pseudo-header, not complemented, and leaves the rest to the device. A
//! veth has that offload on by default and never computes the checksum (the packet stays
//! `CHECKSUM_PARTIAL` across the pair), and a kernel VXLAN device encapsulates such a packet as
//! it is. So on one host joined by veths (kind, k3d, DinD, namespaces), a userspace VTEP reads
//! from its UDP socket inner packets whose checksum field holds exactly that partial value. The
//! kernel accepted the datagram without checking the outer UDP checksum (the skb is still
//! partial), and written into a TUN as it is, the inner packet fails the receiving stack's
//! checksum and is dropped: TCP from such a peer stalls. (Across a real NIC the device completes
//! the inner checksum, and the outer one, computed with local checksum offload, only verifies
//! once it has: a partial inner packet that crossed a wire is dropped by the kernel's UDP
//! checksum unless the outer checksum is zero.)
//!
//! Contract: [`find`] recognises such a packet from its bytes alone: IPv4 (IP total length =
//! packet length, not a fragment, any header length) or IPv6 (payload length = packet length -
//! 40, next header TCP or UDP directly) carrying TCP (at least its 20-byte header) or UDP (UDP
//! length = L4 length), whose checksum field equals the folded pseudo-header sum over the L4
//! length, exactly as Linux writes it (`__tcp_v4_send_check`, `udp4_hwcsum`, and their IPv6
//! twins: `~csum_*_magic(.., 0)`). It returns where the checksum lies ([`Partial`]); the caller
//! then hands the packet on as the kernel hands a partial packet between its own devices, behind
//! a virtio header with `VIRTIO_NET_HDR_F_NEEDS_CSUM` ([`Partial::virtio`]), or completes it in
//! software ([`Partial::complete`]) for a TUN without a virtio header. Anything else is not
//! partial, and a full verification treats it as before: a checksum that is neither valid nor
//! exactly this value is never accepted. (A partial checksum carries no integrity of its own:
//! like the kernel trusting a `CHECKSUM_PARTIAL` skb from a veth, the receiver trusts the
//! payload; a valid checksum that happens to equal the partial value is completed to itself.)

use crate::checksum::{self, Sum};
use crate::wire::proto;
use crate::wire::virtio::{GsoType, VirtioNetRepr, TCP_CSUM_OFFSET, UDP_CSUM_OFFSET};

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

/// Where a partial checksum lies in an IP packet: `csum_start` and `csum_offset` as a virtio
/// header names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partial {
    /// The offset of the TCP or UDP header in the packet (the IP header length).
    pub csum_start: u16,
    /// The offset of the checksum field in that header: [`TCP_CSUM_OFFSET`] (16) or
    /// [`UDP_CSUM_OFFSET`] (6).
    pub csum_offset: u16,
}

impl Partial {
    /// Whether the checksum is TCP's (else UDP's).
    pub fn is_tcp(&self) -> bool {
        self.csum_offset == TCP_CSUM_OFFSET
    }

    /// The virtio header that hands the packet to a TUN as it is, asking the kernel to complete
    /// the checksum: `NEEDS_CSUM`, no GSO, `csum_start` / `csum_offset`, and `hdr_len` up to the
    /// end of the checksum field (what the TUN driver raises a smaller one to).
    pub fn virtio(&self) -> VirtioNetRepr {
        VirtioNetRepr {
            needs_csum: true,
            data_valid: false,
            gso: GsoType::None,
            ecn: false,
            hdr_len: self.csum_start + self.csum_offset + 2,
            gso_size: 0,
            csum_start: self.csum_start,
            csum_offset: self.csum_offset,
        }
    }

    /// The virtio header that describes `packet` (the packet [`find`] was given, longer than one
    /// segment: a same-host sender's TSO / UDP GSO super-packet that crossed a veth whole) as
    /// a GSO packet of `gso_size` payload bytes per segment, for [`crate::gso::split`] or a TUN
    /// write: `NEEDS_CSUM`, `TCPV4` / `TCPV6` (by the IP version) or `UDP_L4`, and `hdr_len`
    /// up to the end of the TCP or UDP header. `None` when `gso_size` is 0 or over 65535, or
    /// the TCP header does not fit.
    pub fn gso(&self, packet: &[u8], gso_size: usize) -> Option<VirtioNetRepr> {
        let start = usize::from(self.csum_start);
        let (gso, l4_hdr) = if self.is_tcp() {
            let doff = usize::from(packet.get(start + 12)? >> 4) * 4;
            if doff < TCP_MIN_HEADER_LEN || start + doff > packet.len() {
                return None;
            }
            let v6 = packet.first()? >> 4 == 6;
            (if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 }, doff)
        } else {
            (GsoType::UdpL4, UDP_HEADER_LEN)
        };
        let gso_size = u16::try_from(gso_size).ok().filter(|g| *g > 0)?;
        Some(VirtioNetRepr {
            needs_csum: true,
            data_valid: false,
            gso,
            ecn: false,
            // At most 60 + 60 bytes.
            hdr_len: (start + l4_hdr) as u16,
            gso_size,
            csum_start: self.csum_start,
            csum_offset: self.csum_offset,
        })
    }

    /// Completes the checksum in `packet` (the packet [`find`] was given) as the device would:
    /// the complement of the sum from `csum_start` to the end, the partial value included. A
    /// UDP result of zero is written as `0xffff` (RFC 768: zero means "no checksum").
    ///
    /// # Panics
    /// If `packet` is shorter than `csum_start + csum_offset + 2` (not the packet `find`
    /// returned this for).
    pub fn complete(&self, packet: &mut [u8]) {
        let start = usize::from(self.csum_start);
        let at = start + usize::from(self.csum_offset);
        let mut c = Sum::ZERO.bytes(&packet[start..]).finish();
        if c == 0 && !self.is_tcp() {
            //= https://www.rfc-editor.org/rfc/rfc768
            //# If the computed  checksum  is zero,  it is transmitted  as all ones
            c = 0xffff;
        }
        packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// The partial checksum of `packet` (an IP packet), if its TCP or UDP checksum field holds
/// exactly the folded pseudo-header sum; see the module documentation. Reads the IP and L4
/// headers only, never the payload.
pub fn find(packet: &[u8]) -> Option<Partial> {
    let (v6, l4, protocol) = match packet.first()? >> 4 {
        4 => {
            if packet.len() < IPV4_MIN_HEADER_LEN {
                return None;
            }
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            //= https://www.rfc-editor.org/rfc/rfc791#section-3.1
            //# Fragment Offset:  13 bits
            // A fragment (MF or an offset) is never partial: the kernel completes the checksum
            // before it fragments.
            if ihl < IPV4_MIN_HEADER_LEN
                || usize::from(be16(packet, 2)) != packet.len()
                || be16(packet, 6) & 0x3fff != 0
            {
                return None;
            }
            (false, ihl, packet[9])
        }
        6 => {
            if packet.len() < IPV6_HEADER_LEN
                || IPV6_HEADER_LEN + usize::from(be16(packet, 4)) != packet.len()
            {
                return None;
            }
            (true, IPV6_HEADER_LEN, packet[6])
        }
        _ => return None,
    };
    at(packet, v6, l4, protocol)
}

/// [`find`] for a packet whose IP header was already read: `l4` is the L4 offset (the packet's
/// IP length checked against its length by the caller, and not a fragment), `protocol` the L4
/// protocol.
pub(crate) fn at(packet: &[u8], v6: bool, l4: usize, protocol: u8) -> Option<Partial> {
    let l4_len = packet.len().checked_sub(l4)?;
    let csum_offset = match protocol {
        proto::TCP if l4_len >= TCP_MIN_HEADER_LEN => TCP_CSUM_OFFSET,
        proto::UDP if l4_len >= UDP_HEADER_LEN && usize::from(be16(packet, l4 + 4)) == l4_len => {
            UDP_CSUM_OFFSET
        }
        _ => return None,
    };
    let field = be16(packet, l4 + usize::from(csum_offset));
    if field != pseudo_header(packet, v6, protocol, l4_len).fold() {
        return None;
    }
    Some(Partial {
        // The casts are exact: an IP header is at most 60 bytes (IPv4) or 40 (IPv6).
        csum_start: l4 as u16,
        csum_offset,
    })
}

/// The pseudo-header sum of `p` for an L4 length.
pub(crate) fn pseudo_header(p: &[u8], v6: bool, protocol: u8, l4_len: usize) -> Sum {
    if v6 {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&p[8..24]);
        dst.copy_from_slice(&p[24..40]);
        checksum::pseudo_header_v6(&src, &dst, protocol, l4_len as u32)
    } else {
        let src = [p[12], p[13], p[14], p[15]];
        let dst = [p[16], p[17], p[18], p[19]];
        checksum::pseudo_header_v4(src, dst, protocol, l4_len as u32)
    }
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_packets::*;

    /// Packets Linux sent over a veth with its default offloads, captured with an `AF_PACKET`
    /// socket on the receiving end (10.244.2.1 / fd00:10:244:2::1 -> 10.244.1.1 /
    /// fd00:10:244:1::1, nothing listening), and whether the checksum was left partial: a TCP
    /// SYN over IPv4 (checksum 0x1918 = 0x0af4 + 0x0201 + 0x0af4 + 0x0101 + 6 + 40), the RST
    /// answering it (built with a full checksum), the IPv6 SYN and RST, and one UDP datagram
    /// over each family.
    const CAPTURED: [(&str, bool); 6] = [
        (
            "4500003c5d7840004006c45a0af402010af401019218145191dc034d00000000a002faf0191800000204\
          05b40402080ae60c7b2c000000000103030a",
            true,
        ),
        (
            "4500002800004000400621e70af401010af40201145192180000000091dc034e501400005b530000",
            false,
        ),
        (
            "600bd61500280640fd000010024400020000000000000001fd000010024400010000000000000001c65c\
          1451cf73050c00000000a002fd20fedc0000020405a00402080acca828e6000000000103030a",
            true,
        ),
        (
            "600b0eb500140640fd000010024400010000000000000001fd0000100244000200000000000000011451\
          c65c00000000cf73050d50140000fec80000",
            true,
        ),
        (
            "6000405600181140fd000010024400020000000000000001fd000010024400010000000000000001c17c\
          205d0018fed77061727469616c20636865636b73756d",
            true,
        ),
        (
            "4500002331b640004011f02a0af402010af40101ddbb205d000f190a7061727469616c",
            true,
        ),
    ];

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn field_at(p: &[u8], part: Partial) -> u16 {
        be16(p, usize::from(part.csum_start + part.csum_offset))
    }

    #[test]
    fn captured_kernel_packets() {
        for (hex, partial) in CAPTURED {
            let p = unhex(hex);
            let l4 = l4_off(&p);
            let tcp = p[if p[0] >> 4 == 6 { 6 } else { 9 }] == proto::TCP;
            if p[0] >> 4 == 4 {
                assert!(checksum::verifies(Sum::ZERO.bytes(&p[..l4])), "{hex}");
            }
            assert_eq!(checksums_verify(&p), !partial, "{hex}");
            let Some(part) = find(&p) else {
                assert!(!partial, "{hex}");
                continue;
            };
            assert!(partial, "{hex}");
            assert_eq!(part.csum_start as usize, l4);
            assert_eq!(part.csum_offset, if tcp { 16 } else { 6 });
            assert_eq!(part.is_tcp(), tcp);
            assert_eq!(field_at(&p, part), pseudo(&p, l4).fold());
            let mut done = p.clone();
            part.complete(&mut done);
            assert!(checksums_verify(&done), "{hex}");
            let at = l4 + usize::from(part.csum_offset);
            assert_eq!(done[..at], p[..at]);
            assert_eq!(done[at + 2..], p[at + 2..]);
            // A completed checksum is valid, so no longer partial.
            assert_eq!(find(&done), None);
            assert_eq!(
                part.virtio(),
                VirtioNetRepr {
                    needs_csum: true,
                    data_valid: false,
                    gso: GsoType::None,
                    ecn: false,
                    hdr_len: part.csum_start + part.csum_offset + 2,
                    gso_size: 0,
                    csum_start: l4 as u16,
                    csum_offset: part.csum_offset,
                }
            );
        }
    }

    /// The packet of `spec` with its checksum replaced by the partial value.
    fn partial_packet(spec: &Spec<'_>, data: &[u8]) -> Vec<u8> {
        let mut p = packet(spec, data);
        let l4 = l4_off(&p);
        let at = l4 + if spec.tcp { 16 } else { 6 };
        let v = pseudo(&p, l4).fold();
        p[at..at + 2].copy_from_slice(&v.to_be_bytes());
        p
    }

    #[test]
    fn tcp_and_udp_over_both_families_with_and_without_options() {
        let data = payload(333, 4);
        for v6 in [false, true] {
            for tcp in [false, true] {
                for ip_options in [&[][..], &[1, 1, 1, 0][..]] {
                    if v6 && !ip_options.is_empty() {
                        continue;
                    }
                    let spec = Spec {
                        v6,
                        tcp,
                        ip_options,
                        tcp_options: if tcp { &[1, 1, 4, 2] } else { &[] },
                        ..Spec::default()
                    };
                    let full = packet(&spec, &data);
                    assert_eq!(find(&full), None, "{spec:?}");
                    let p = partial_packet(&spec, &data);
                    let part = find(&p).unwrap_or_else(|| panic!("{spec:?}"));
                    let l4 = l4_off(&p) as u16;
                    assert_eq!(part.csum_start, l4);
                    assert_eq!(part.csum_offset, if tcp { 16 } else { 6 });
                    assert_eq!(part.virtio().hdr_len, l4 + part.csum_offset + 2);
                    let mut done = p.clone();
                    part.complete(&mut done);
                    assert_eq!(done, full, "{spec:?}");
                    assert_eq!(field_at(&p, part), pseudo(&p, l4.into()).fold());
                }
            }
        }
    }

    #[test]
    fn a_udp_super_packet_splits_into_its_datagrams() {
        // 10 datagrams of 1000 bytes sent with UDP_SEGMENT, as a kernel VXLAN peer across a
        // veth hands them over: one UDP packet of 10000 payload bytes, checksum partial.
        let data = payload(10_000, 8);
        for v6 in [false, true] {
            let spec = Spec {
                v6,
                tcp: false,
                ..Spec::default()
            };
            let p = partial_packet(&spec, &data);
            let part = find(&p).unwrap();
            let l4 = l4_off(&p);
            let vnet = part.gso(&p, 1000).unwrap();
            assert_eq!(
                (
                    vnet.gso,
                    vnet.gso_size,
                    vnet.hdr_len as usize,
                    vnet.needs_csum
                ),
                (GsoType::UdpL4, 1000, l4 + 8, true)
            );
            let mut out = vec![0u8; crate::gso::required_len(&vnet, &p, 0, 1500).unwrap()];
            let segs = crate::gso::split(&vnet, &p, &[], 1500, &mut out).unwrap();
            assert_eq!(segs.count, 10);
            for i in 0..10 {
                let d = &out[segs.segment(i)];
                assert!(checksums_verify(d));
                assert_eq!(&d[l4 + 8..], &data[i * 1000..(i + 1) * 1000]);
            }
            // Datagrams over the MTU cannot leave.
            assert_eq!(
                crate::gso::split(&vnet, &p, &[], 1000, &mut out),
                Err(crate::gso::TOO_BIG)
            );
            assert_eq!(part.gso(&p, 0), None);
            assert_eq!(part.gso(&p, 65_536), None);
        }
        // TCP: the header length from the data offset.
        let spec = Spec {
            tcp_options: &[1, 1, 4, 2],
            ..Spec::default()
        };
        let p = partial_packet(&spec, &data);
        let vnet = find(&p).unwrap().gso(&p, 1400).unwrap();
        assert_eq!((vnet.gso, vnet.hdr_len), (GsoType::TcpV4, 44));
        assert_eq!(find(&p).unwrap().gso(&p[..43], 1400), None);
    }

    #[test]
    fn a_udp_checksum_that_completes_to_zero_is_sent_as_all_ones() {
        // Choose two payload bytes so that the UDP sum over everything is 0xffff.
        let spec = Spec {
            tcp: false,
            ..Spec::default()
        };
        let mut data = payload(20, 9);
        data[18..20].fill(0);
        let p = partial_packet(&spec, &data);
        let l4 = l4_off(&p);
        let s = Sum::ZERO.bytes(&p[l4..]).fold();
        let fix = !s;
        let mut data2 = data.clone();
        data2[18..20].copy_from_slice(&fix.to_be_bytes());
        let mut p = partial_packet(&spec, &data2);
        assert_eq!(Sum::ZERO.bytes(&p[l4..]).finish(), 0);
        let part = find(&p).unwrap();
        part.complete(&mut p);
        assert_eq!(be16(&p, l4 + 6), 0xffff);
        assert!(checksums_verify(&p));
    }

    #[test]
    fn anything_else_is_not_partial() {
        let data = payload(100, 1);
        let spec = Spec::default();
        let p = partial_packet(&spec, &data);
        assert!(find(&p).is_some());
        // The complement of the partial value, a value one off, zero.
        let at = 36;
        for v in [!be16(&p, at), be16(&p, at).wrapping_add(1), 0] {
            let mut q = p.clone();
            q[at..at + 2].copy_from_slice(&v.to_be_bytes());
            assert_eq!(find(&q), None, "{v:#x}");
        }
        // A pseudo-header field changed after the sender wrote the partial sum.
        for at in [12, 19] {
            let mut q = p.clone();
            q[at] ^= 1;
            assert_eq!(find(&q), None, "byte {at}");
        }
        // Payload corruption is invisible to a partial checksum (it carries no integrity).
        let mut q = p.clone();
        q[70] ^= 0xff;
        assert!(find(&q).is_some());
        // Fragments (MF, an offset), length mismatches, truncation, other protocols.
        let mut frag = p.clone();
        frag[6] |= 0x20;
        let mut offset = p.clone();
        offset[7] = 1;
        let mut padded = p.clone();
        padded.push(0);
        let mut icmp = p.clone();
        icmp[9] = proto::ICMP;
        let udp_bad_len = {
            let udp = Spec { tcp: false, ..spec };
            let mut u = partial_packet(&udp, &data);
            u[25] ^= 1;
            u
        };
        let v6 = partial_packet(&Spec { v6: true, ..spec }, &data);
        let mut v6_short = v6.clone();
        v6_short.truncate(v6.len() - 1);
        let mut v6_ext = v6.clone();
        v6_ext[6] = 0; // hop-by-hop options first: not read
        for (name, q) in [
            ("fragment", frag),
            ("offset", offset),
            ("padded", padded),
            ("icmp", icmp),
            ("udp length", udp_bad_len),
            ("v6 truncated", v6_short),
            ("v6 extension header", v6_ext),
            ("tcp header cut", p[..39].to_vec()),
            ("empty", vec![]),
            ("v4 stub", vec![0x45; 19]),
            ("v6 stub", vec![0x60; 39]),
            ("version 5", vec![0x55; 60]),
            ("ihl 4", {
                let mut q = p.clone();
                q[0] = 0x44;
                q
            }),
        ] {
            assert_eq!(find(&q), None, "{name}");
        }
        assert!(find(&v6).is_some());
    }
}
