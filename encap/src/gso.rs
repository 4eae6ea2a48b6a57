//! Segmentation of a TUN super-packet into MTU-sized inner packets, laid out for one
//! `UDP_SEGMENT` send.
//!
//! This module owns the transmit half of the offload story: a TUN with `IFF_VNET_HDR` and
//! TSO/USO hands us up to 64 KiB of TCP or UDP with a `virtio_net_hdr`; [`split`] cuts it into
//! segments that fit `max_inner_len` (the TUN MTU), puts a caller-given encapsulation header in
//! front of each (0 bytes for flannel's udp backend, VXLAN + Ethernet for vxlan), and lays them
//! out at one fixed stride in one caller-owned buffer. [`Segments::chunks`] then cuts that buffer
//! into ranges that each make one `sendmsg` with `UDP_SEGMENT = stride`.
//!
//! Contract:
//! - Everything from the kernel is validated (IP version against the GSO type, lengths,
//!   `csum_start`/`csum_offset`, the transport header); a bad super-packet is an [`Error`],
//!   never a panic. Nothing is allocated.
//! - Every segment leaves with complete checksums computed in software: IPv4 header checksum and
//!   the full TCP/UDP checksum (pseudo-header + header + payload). Per segment: IPv4 total length
//!   and ID + i; IPv6 payload length; TCP sequence + i * segment payload, FIN and PSH only on
//!   the last segment, CWR only on the first; UDP length.
//! - TCP segments carry `min(gso_size, max_inner_len - hdr_len)` payload bytes; UDP_L4 datagrams
//!   keep `gso_size` (they are the application's datagrams) and fail with [`TOO_BIG`] when they do
//!   not fit `max_inner_len`.
//! - A packet without GSO is copied as one segment (its partial checksum completed when
//!   `NEEDS_CSUM` is set). If it is longer than `max_inner_len` the result is [`TOO_BIG`]: the
//!   caller answers with an ICMP "fragmentation needed" / "packet too big" instead.
//! - IPv4 options are carried in every segment; IPv6 extension headers are `Unsupported`
//!   (the kernel does not build TSO packets with them for a TUN in practice).

use core::ops::Range;

use crate::checksum::{self, Sum};
use crate::error::need;
use crate::wire::proto;
use crate::wire::virtio::{GsoType, VirtioNetRepr, TCP_CSUM_OFFSET, UDP_CSUM_OFFSET};
use crate::{Error, Result};

/// The most segments one `UDP_SEGMENT` send may carry (`UDP_MAX_SEGMENTS`, linux/udp.h; 64 in
/// every kernel with UDP GSO, raised to 128 only in recent ones).
pub const UDP_MAX_SEGMENTS: usize = 64;

/// The largest UDP payload of one IPv4 datagram, so of one UDP GSO send over IPv4:
/// 65535 - 20 (IPv4 header) - 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;

/// The largest UDP payload of one IPv6 datagram without a jumbogram: 65535 - 8.
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;

/// The largest transport + network header a segment repeats: 60 bytes of IPv4 header with
/// options + 60 bytes of TCP header with options. Used by [`max_len`].
pub const MAX_HDR_LEN: usize = 120;

/// The error [`split`] returns when a packet cannot leave in segments of `max_inner_len`: a
/// non-GSO packet longer than `max_inner_len`, a UDP_L4 datagram (`gso_size` + headers) longer
/// than it, or headers that alone do not fit. Compare with `==`.
pub const TOO_BIG: Error = Error::Unsupported("packet longer than max_inner_len");

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// Where [`split`] put the segments in the output buffer.
///
/// Segment `i` starts at `out[i * stride]`; every segment is `stride` bytes long except the last,
/// which may be shorter; `len` bytes were written in all. Each segment is the encapsulation
/// header followed by one inner IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// The number of segments (at least 1).
    pub count: usize,
    /// The distance between segment starts: the `UDP_SEGMENT` size for a GSO send.
    pub stride: usize,
    /// The total bytes written.
    pub len: usize,
}

impl Segments {
    /// Stride-aligned ranges of the output buffer for successive sends, each at most
    /// `max_segments` segments (pass [`UDP_MAX_SEGMENTS`]) and `max_bytes` bytes of UDP payload
    /// (pass [`MAX_UDP_PAYLOAD_V4`] or [`MAX_UDP_PAYLOAD_V6`]). Every range but the last holds
    /// whole strides. A segment larger than `max_bytes` still gets a range of its own (the send
    /// fails and is counted; nothing better can be done with it).
    pub fn chunks(&self, max_segments: usize, max_bytes: usize) -> Chunks {
        let per = max_bytes
            .checked_div(self.stride)
            .map_or(1, |n| n.min(max_segments).max(1));
        Chunks {
            step: per * self.stride,
            pos: 0,
            len: self.len,
        }
    }

    /// The byte range of segment `i` in the output buffer (empty when `i >= count`).
    pub fn segment(&self, i: usize) -> Range<usize> {
        if i >= self.count {
            return self.len..self.len;
        }
        let start = i * self.stride;
        start..(start + self.stride).min(self.len)
    }
}

/// The iterator of [`Segments::chunks`].
#[derive(Debug, Clone)]
pub struct Chunks {
    step: usize,
    pos: usize,
    len: usize,
}

impl Iterator for Chunks {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.pos >= self.len || self.step == 0 {
            return None;
        }
        let start = self.pos;
        let end = (start + self.step).min(self.len);
        self.pos = end;
        Some(start..end)
    }
}

/// An upper bound of the output length for a packet of `packet_len` bytes cut into at most
/// `segments` segments with an `encap_len`-byte header each: every segment repeats at most
/// [`MAX_HDR_LEN`] header bytes. Size `out` once with it (for example 64 KiB packets, and
/// `segments` = 64 KiB / the smallest segment payload you accept); [`split`] reports
/// `Truncated { needed }` when `out` is too short anyway, and [`required_len`] gives the exact
/// figure for one packet.
pub const fn max_len(packet_len: usize, encap_len: usize, segments: usize) -> usize {
    packet_len + segments * (encap_len + MAX_HDR_LEN)
}

/// The exact number of bytes [`split`] writes for this packet, or the error it would return.
pub fn required_len(
    vnet: &VirtioNetRepr,
    packet: &[u8],
    encap_len: usize,
    max_inner_len: usize,
) -> Result<usize> {
    if vnet.gso == GsoType::None {
        return Ok(encap_len + check_none(vnet, packet, max_inner_len)?.len());
    }
    Ok(Plan::new(vnet, packet, encap_len, max_inner_len)?
        .segments
        .len)
}

/// Splits `packet` (the bytes after the virtio header) into segments of at most `max_inner_len`
/// bytes each preceded by a copy of `encap_hdr`, written at one stride into `out`.
///
/// Errors: `Truncated`/`Malformed`/`Unsupported` for a packet that does not match its virtio
/// header, [`TOO_BIG`] when it cannot be cut to `max_inner_len`, and
/// `Truncated { needed }` when `out` is shorter than the output. `out` is unspecified on error.
pub fn split(
    vnet: &VirtioNetRepr,
    packet: &[u8],
    encap_hdr: &[u8],
    max_inner_len: usize,
    out: &mut [u8],
) -> Result<Segments> {
    if vnet.gso == GsoType::None {
        return split_none(vnet, packet, encap_hdr, max_inner_len, out);
    }
    let plan = Plan::new(vnet, packet, encap_hdr.len(), max_inner_len)?;
    need(out, plan.segments.len)?;
    plan.emit(&packet[..plan.ip_len], encap_hdr, out);
    Ok(plan.segments)
}

fn split_none(
    vnet: &VirtioNetRepr,
    packet: &[u8],
    encap_hdr: &[u8],
    max_inner_len: usize,
    out: &mut [u8],
) -> Result<Segments> {
    let packet = check_none(vnet, packet, max_inner_len)?;
    let e = encap_hdr.len();
    let len = e + packet.len();
    need(out, len)?;
    out[..e].copy_from_slice(encap_hdr);
    let pkt = &mut out[e..len];
    pkt.copy_from_slice(packet);
    if vnet.needs_csum {
        // The field holds the pseudo-header sum; the sum of the region from csum_start, field
        // included, completes it (what the kernel's skb_checksum_help does).
        let start = usize::from(vnet.csum_start);
        let at = start + usize::from(vnet.csum_offset);
        let c = Sum::ZERO.bytes(&pkt[start..]).finish();
        // A computed 0 is sent as 0xffff (CSUM_MANGLED_0): 0 means "no checksum" for UDP.
        let c = if c == 0 { 0xffff } else { c };
        pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    Ok(Segments {
        count: 1,
        stride: len,
        len,
    })
}

/// Validates a packet without GSO and returns it cut to its IP length: a whole IP packet that
/// fits `max_inner_len`, and with NEEDS_CSUM a checksum field inside its transport header.
fn check_none<'p>(
    vnet: &VirtioNetRepr,
    packet: &'p [u8],
    max_inner_len: usize,
) -> Result<&'p [u8]> {
    let packet = whole_ip_packet(packet)?;
    if packet.len() > max_inner_len {
        return Err(TOO_BIG);
    }
    if vnet.needs_csum {
        let start = usize::from(vnet.csum_start);
        let at = start + usize::from(vnet.csum_offset);
        if at + 2 > packet.len() {
            return Err(Error::Malformed(
                "csum_start + csum_offset outside the packet",
            ));
        }
        // The checksummed region is the transport layer: it never starts inside the IP header.
        let ip_hdr_len = if packet[0] >> 4 == 6 {
            40
        } else {
            usize::from(packet[0] & 0x0f) * 4
        };
        if start < ip_hdr_len {
            return Err(Error::Malformed("csum_start inside the IP header"));
        }
        // Every Internet checksum field sits at an even offset of the summed region; at an odd
        // one the completed sum would be meaningless.
        if vnet.csum_offset % 2 != 0 {
            return Err(Error::Malformed("odd csum_offset"));
        }
    }
    Ok(packet)
}

/// `packet` cut to its IP length (bytes after it are not part of the packet and are not sent),
/// or an error if it is no whole IPv4 / IPv6 packet.
fn whole_ip_packet(packet: &[u8]) -> Result<&[u8]> {
    match crate::backend::ip_packet_len(packet) {
        Ok(len) => Ok(&packet[..len]),
        Err(crate::backend::DecapError::Truncated) => Err(Error::Truncated { needed: 20 }),
        Err(_) => Err(Error::Malformed("not a whole IPv4 or IPv6 packet")),
    }
}

/// A validated GSO super-packet and its layout.
#[derive(Debug, Clone, Copy)]
struct Plan {
    v6: bool,
    tcp: bool,
    /// The packet length according to its IP header (trailing bytes are ignored).
    ip_len: usize,
    ip_hdr_len: usize,
    /// IP + transport header length.
    hdr_len: usize,
    /// Payload bytes per segment (all but the last).
    seg_payload: usize,
    encap_len: usize,
    segments: Segments,
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Plan {
    fn new(
        vnet: &VirtioNetRepr,
        packet: &[u8],
        encap_len: usize,
        max_inner_len: usize,
    ) -> Result<Plan> {
        need(packet, 1)?;
        let version = packet[0] >> 4;
        let (v6, ip_hdr_len, ip_len, protocol) = match version {
            4 => {
                need(packet, IPV4_MIN_HEADER_LEN)?;
                let ihl = usize::from(packet[0] & 0x0f) * 4;
                if ihl < IPV4_MIN_HEADER_LEN {
                    return Err(Error::Malformed("IPv4 header length"));
                }
                need(packet, ihl)?;
                let total = usize::from(be16(packet, 2));
                if total < ihl {
                    return Err(Error::Malformed("IPv4 total length"));
                }
                need(packet, total)?;
                //= https://www.rfc-editor.org/rfc/rfc791#section-3.1
                //# Fragment Offset:  13 bits
                if be16(packet, 6) & 0x3fff != 0 {
                    return Err(Error::Malformed("IPv4 fragment with GSO"));
                }
                (false, ihl, total, packet[9])
            }
            6 => {
                need(packet, IPV6_HEADER_LEN)?;
                let total = IPV6_HEADER_LEN + usize::from(be16(packet, 4));
                need(packet, total)?;
                (true, IPV6_HEADER_LEN, total, packet[6])
            }
            _ => return Err(Error::Unsupported("IP version")),
        };
        let packet = &packet[..ip_len];
        let tcp = match (vnet.gso, v6) {
            (GsoType::TcpV4, false) | (GsoType::TcpV6, true) => true,
            (GsoType::UdpL4, _) => false,
            (GsoType::TcpV4, true) | (GsoType::TcpV6, false) => {
                return Err(Error::Malformed("IP version does not match gso_type"))
            }
            (GsoType::None, _) => return Err(Error::Unsupported("no GSO")),
        };
        let (want_proto, want_offset) = if tcp {
            (proto::TCP, TCP_CSUM_OFFSET)
        } else {
            (proto::UDP, UDP_CSUM_OFFSET)
        };
        if protocol != want_proto {
            // An IPv6 extension header lands here too.
            return Err(Error::Unsupported(
                "transport protocol does not match gso_type",
            ));
        }
        if !vnet.needs_csum {
            return Err(Error::Malformed("GSO packet without NEEDS_CSUM"));
        }
        if usize::from(vnet.csum_start) != ip_hdr_len || vnet.csum_offset != want_offset {
            return Err(Error::Malformed("csum_start/csum_offset"));
        }
        let hdr_len = vnet.derive_hdr_len(packet)?;
        if !tcp && usize::from(be16(packet, ip_hdr_len + 4)) != ip_len - ip_hdr_len {
            return Err(Error::Malformed("UDP length"));
        }
        let gso_size = usize::from(vnet.gso_size);
        if gso_size == 0 {
            return Err(Error::Malformed("gso_size 0"));
        }
        if max_inner_len <= hdr_len {
            return Err(TOO_BIG);
        }
        let seg_payload = if tcp {
            gso_size.min(max_inner_len - hdr_len)
        } else if hdr_len + gso_size > max_inner_len {
            return Err(TOO_BIG);
        } else {
            gso_size
        };
        let payload = ip_len - hdr_len;
        let count = payload.div_ceil(seg_payload).max(1);
        let last = payload - (count - 1) * seg_payload;
        let stride = encap_len + hdr_len + if count > 1 { seg_payload } else { last };
        let len = (count - 1) * stride + encap_len + hdr_len + last;
        Ok(Plan {
            v6,
            tcp,
            ip_len,
            ip_hdr_len,
            hdr_len,
            seg_payload,
            encap_len,
            segments: Segments { count, stride, len },
        })
    }

    /// Writes the segments. `packet` is trimmed to `ip_len`, `out` holds `segments.len` bytes.
    fn emit(&self, packet: &[u8], encap_hdr: &[u8], out: &mut [u8]) {
        let Plan {
            v6,
            tcp,
            ip_hdr_len: l4,
            hdr_len,
            seg_payload,
            encap_len: e,
            segments: Segments { count, stride, .. },
            ..
        } = *self;
        let hdr = &packet[..hdr_len];
        let payload = &packet[hdr_len..];

        // Header sums without the fields that change per segment.
        let mut scratch = [0u8; MAX_HDR_LEN];
        let ip_base = if v6 {
            Sum::ZERO
        } else {
            let h = &mut scratch[..l4];
            h.copy_from_slice(&hdr[..l4]);
            h[2..6].fill(0); // total length, identification
            h[10..12].fill(0); // header checksum
            Sum::ZERO.bytes(h)
        };
        let (pseudo, id0) = if v6 {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&hdr[8..24]);
            dst.copy_from_slice(&hdr[24..40]);
            let nh = if tcp { proto::TCP } else { proto::UDP };
            (checksum::pseudo_header_v6(&src, &dst, nh, 0), 0)
        } else {
            let src = [hdr[12], hdr[13], hdr[14], hdr[15]];
            let dst = [hdr[16], hdr[17], hdr[18], hdr[19]];
            let p = if tcp { proto::TCP } else { proto::UDP };
            (checksum::pseudo_header_v4(src, dst, p, 0), be16(hdr, 4))
        };
        let th = &mut scratch[..hdr_len - l4];
        th.copy_from_slice(&hdr[l4..]);
        let (seq0, flags0) = if tcp {
            let seq0 = be32(th, 4);
            let flags0 = th[13];
            th[4..8].fill(0); // sequence number
            th[13] = 0; // flags (the data offset byte stays)
            th[16..18].fill(0); // checksum
            (seq0, flags0)
        } else {
            th[4..8].fill(0); // length, checksum
            (0, 0)
        };
        let l4_base = pseudo.combine(Sum::ZERO.bytes(th));

        for i in 0..count {
            let first = i * seg_payload;
            let chunk = &payload[first..(first + seg_payload).min(payload.len())];
            let ip_len = hdr_len + chunk.len();
            let seg = &mut out[i * stride..i * stride + e + ip_len];
            seg[..e].copy_from_slice(encap_hdr);
            let (h, p) = seg[e..].split_at_mut(hdr_len);
            h.copy_from_slice(hdr);
            p.copy_from_slice(chunk);

            // The casts are exact: a segment is no longer than the packet, whose length came
            // from a 16-bit field.
            if v6 {
                h[4..6].copy_from_slice(&((ip_len - IPV6_HEADER_LEN) as u16).to_be_bytes());
            } else {
                let id = id0.wrapping_add(i as u16);
                h[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                let c = ip_base.word(ip_len as u16).word(id).finish();
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let l4_len = (ip_len - l4) as u32;
            let data = Sum::ZERO.bytes(chunk);
            let th = &mut h[l4..];
            if tcp {
                let seq = seq0.wrapping_add(first as u32);
                let mut flags = flags0;
                if i + 1 < count {
                    flags &= !(TCP_FIN | TCP_PSH);
                }
                if i > 0 {
                    flags &= !TCP_CWR;
                }
                th[4..8].copy_from_slice(&seq.to_be_bytes());
                th[13] = flags;
                let c = l4_base
                    .dword(l4_len)
                    .dword(seq)
                    .word(u16::from(flags))
                    .combine(data)
                    .finish();
                th[16..18].copy_from_slice(&c.to_be_bytes());
            } else {
                th[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                let c = l4_base
                    .dword(l4_len)
                    .word(l4_len as u16)
                    .combine(data)
                    .finish();
                //= https://www.rfc-editor.org/rfc/rfc768
                //# If the computed  checksum  is zero,  it is transmitted  as all ones (the
                //# equivalent  in one's complement  arithmetic).
                let c = if c == 0 { 0xffff } else { c };
                th[6..8].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_packets::*;

    const VXLAN_ETH: [u8; 22] = [
        0x08, 0, 0, 0, 0, 0, 1, 0, // VXLAN, VNI 1
        0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08,
        0x00, // Ethernet
    ];

    fn split_vec(
        vnet: &VirtioNetRepr,
        p: &[u8],
        encap: &[u8],
        mtu: usize,
    ) -> Result<(Segments, Vec<u8>)> {
        let n = required_len(vnet, p, encap.len(), mtu)?;
        let mut out = vec![0xeeu8; n + 7];
        let segs = split(vnet, p, encap, mtu, &mut out)?;
        assert_eq!(segs.len, n);
        assert!(out[n..].iter().all(|&b| b == 0xee), "wrote past len");
        out.truncate(n);
        Ok((segs, out))
    }

    fn seq_of(p: &[u8]) -> u32 {
        let l4 = l4_off(p);
        u32::from_be_bytes([p[l4 + 4], p[l4 + 5], p[l4 + 6], p[l4 + 7]])
    }

    #[test]
    fn tcp4_every_field_of_every_segment() {
        let data = payload(4000, 3);
        let spec = Spec {
            flags: 0x10 | TCP_PSH | TCP_FIN | TCP_CWR,
            tcp_options: &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            seq: 0xffff_fc00, // wraps during the stream
            id: 0xfffe,       // wraps too
            ..Spec::default()
        };
        let (mut vnet, sp) = super_packet(&spec, &data, 1448);
        vnet.ecn = true;
        vnet.hdr_len = 0; // must not be trusted
        let hdr_len = 20 + 32;
        // MTU 1400: segments carry 1348 bytes, less than gso_size.
        let (segs, out) = split_vec(&vnet, &sp, &VXLAN_ETH, 1400).unwrap();
        assert_eq!(segs.count, 3);
        assert_eq!(segs.stride, 22 + 1400);
        assert_eq!(segs.len, 2 * 1422 + 22 + hdr_len + 4000 - 2 * 1348);
        let mut got = Vec::new();
        for i in 0..3 {
            let s = &out[segs.segment(i)];
            assert_eq!(&s[..22], &VXLAN_ETH);
            let p = &s[22..];
            let plen = if i < 2 { 1348 } else { 4000 - 2 * 1348 };
            assert_eq!(p.len(), hdr_len + plen);
            assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
            assert_eq!(
                u16::from_be_bytes([p[4], p[5]]),
                0xfffeu16.wrapping_add(i as u16)
            );
            assert_eq!(seq_of(p), 0xffff_fc00u32.wrapping_add(1348 * i as u32));
            let flags = p[20 + 13];
            assert_eq!(flags & 0x10, 0x10, "ACK kept");
            assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR first only");
            assert_eq!(
                flags & (TCP_FIN | TCP_PSH) != 0,
                i == 2,
                "FIN/PSH last only"
            );
            assert_eq!(flags & (TCP_FIN | TCP_PSH), if i == 2 { 0x09 } else { 0 });
            // Everything else in the headers is the super-packet's.
            assert_eq!(p[..2], sp[..2]);
            assert_eq!(p[6..10], sp[6..10]);
            assert_eq!(p[12..20 + 4], sp[12..20 + 4]);
            assert_eq!(p[20 + 8..20 + 13], sp[20 + 8..20 + 13]);
            assert_eq!(p[20 + 14..20 + 16], sp[20 + 14..20 + 16]);
            assert_eq!(p[20 + 18..hdr_len], sp[20 + 18..hdr_len]);
            assert!(checksums_verify(p), "segment {i}");
            got.extend_from_slice(&p[hdr_len..]);
        }
        assert_eq!(got, data);
    }

    #[test]
    fn tcp6_segments_match_independently_built_packets() {
        let data = payload(3000, 9);
        let spec = Spec {
            v6: true,
            flags: 0x18,
            ..Spec::default()
        };
        let (vnet, sp) = super_packet(&spec, &data, 1000);
        let (segs, out) = split_vec(&vnet, &sp, &[], 1500).unwrap();
        assert_eq!((segs.count, segs.stride), (3, 1060));
        for i in 0..3 {
            let want = packet(
                &Spec {
                    seq: spec.seq + 1000 * i as u32,
                    flags: if i == 2 { 0x18 } else { 0x10 },
                    ..spec
                },
                &data[1000 * i..1000 * (i + 1)],
            );
            assert_eq!(&out[segs.segment(i)], &want[..], "segment {i}");
        }
    }

    #[test]
    fn udp_l4_v4_and_v6() {
        for v6 in [false, true] {
            let data = payload(2500, 1);
            let spec = Spec {
                v6,
                tcp: false,
                ..Spec::default()
            };
            let (vnet, sp) = super_packet(&spec, &data, 1200);
            // Datagrams keep gso_size even when the MTU would allow more.
            let (segs, out) = split_vec(&vnet, &sp, &VXLAN_ETH[..8], 9000).unwrap();
            let hdr = if v6 { 48 } else { 28 };
            assert_eq!((segs.count, segs.stride), (3, 8 + hdr + 1200));
            for i in 0..3 {
                let end = (1200 * (i + 1)).min(2500);
                let want = packet(
                    &Spec {
                        id: spec.id + i as u16,
                        ..spec
                    },
                    &data[1200 * i..end],
                );
                let s = &out[segs.segment(i)];
                assert_eq!(&s[..8], &VXLAN_ETH[..8]);
                assert_eq!(&s[8..], &want[..], "v6 {v6} segment {i}");
                assert!(checksums_verify(&s[8..]));
            }
            // A datagram that does not fit the MTU is TOO_BIG, not re-cut.
            assert_eq!(split_vec(&vnet, &sp, &[], hdr + 1199).err(), Some(TOO_BIG));
        }
    }

    #[test]
    fn ipv4_options_are_repeated() {
        let data = payload(100, 5);
        let spec = Spec {
            ip_options: &[1, 1, 1, 0], // NOP NOP NOP EOL
            ..Spec::default()
        };
        let (vnet, sp) = super_packet(&spec, &data, 60);
        let (segs, out) = split_vec(&vnet, &sp, &[], 1500).unwrap();
        assert_eq!(segs.count, 2);
        for i in 0..2 {
            let p = &out[segs.segment(i)];
            assert_eq!(p[0], 0x46);
            assert_eq!(p[20..24], [1, 1, 1, 0]);
            assert!(checksums_verify(p));
        }
    }

    #[test]
    fn gso_none_copies_and_completes_checksum() {
        let spec = Spec::default();
        let (mut vnet, sp) = super_packet(&spec, &payload(333, 2), 0);
        vnet.gso = GsoType::None;
        let (segs, out) = split_vec(&vnet, &sp, &VXLAN_ETH, 1500).unwrap();
        assert_eq!((segs.count, segs.stride, segs.len), (1, 22 + 373, 22 + 373));
        assert_eq!(&out[22..], &packet(&spec, &payload(333, 2))[..]);
        // Without NEEDS_CSUM: copied byte for byte.
        vnet.needs_csum = false;
        let (_, out) = split_vec(&vnet, &sp, &[], 1500).unwrap();
        assert_eq!(out, sp);
        // Too long for the MTU.
        assert_eq!(split_vec(&vnet, &sp, &[], 372).err(), Some(TOO_BIG));
        // A checksum field outside the packet.
        vnet.needs_csum = true;
        vnet.csum_offset = 400;
        assert!(matches!(
            split_vec(&vnet, &sp, &[], 1500),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn gso_none_sends_only_the_ip_packet() {
        let spec = Spec::default();
        let (mut vnet, mut sp) = super_packet(&spec, &payload(100, 3), 0);
        vnet.gso = GsoType::None;
        vnet.needs_csum = false;
        let ip = sp.clone();
        sp.extend_from_slice(&[0xee; 7]);
        let (segs, out) = split_vec(&vnet, &sp, &[], 1500).unwrap();
        assert_eq!(segs.len, ip.len());
        assert_eq!(out, ip);
        assert_eq!(required_len(&vnet, &sp, 0, 1500), Ok(ip.len()));
        // Trailing bytes do not count against the path MTU either.
        assert!(split_vec(&vnet, &sp, &[], ip.len()).is_ok());
        // Not an IP packet, or shorter than its IP length: refused.
        assert!(matches!(
            split_vec(&vnet, &[0x10; 40], &[], 1500),
            Err(Error::Malformed(_))
        ));
        assert!(split_vec(&vnet, &ip[..ip.len() - 1], &[], 1500).is_err());
        assert!(split_vec(&vnet, &ip[..10], &[], 1500).is_err());
        // A checksum to complete that would land in the IP header: refused.
        vnet.needs_csum = true;
        vnet.csum_start = 0;
        vnet.csum_offset = 10;
        assert!(matches!(
            split_vec(&vnet, &ip, &[], 1500),
            Err(Error::Malformed(_))
        ));
        // ... or at an odd offset of the transport header.
        vnet.csum_start = 20;
        vnet.csum_offset = 17;
        assert!(matches!(
            split_vec(&vnet, &ip, &[], 1500),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn one_segment_and_empty_payload() {
        let spec = Spec::default();
        let (vnet, sp) = super_packet(&spec, &payload(500, 0), 1448);
        let (segs, out) = split_vec(&vnet, &sp, &[], 1500).unwrap();
        assert_eq!((segs.count, segs.stride, segs.len), (1, 540, 540));
        assert_eq!(out, packet(&spec, &payload(500, 0)));
        let (vnet, sp) = super_packet(&spec, &[], 1448);
        let (segs, out) = split_vec(&vnet, &sp, &[], 1500).unwrap();
        assert_eq!(segs.count, 1);
        assert_eq!(out, packet(&spec, &[]));
    }

    #[test]
    fn rejects_inconsistent_kernel_input() {
        let spec = Spec::default();
        let (vnet, sp) = super_packet(&spec, &payload(3000, 0), 1000);
        let mut out = vec![0; 8192];
        let mut bad = vnet;
        bad.gso = GsoType::TcpV6;
        assert!(split(&bad, &sp, &[], 1500, &mut out).is_err());
        bad = vnet;
        bad.gso = GsoType::UdpL4;
        assert!(split(&bad, &sp, &[], 1500, &mut out).is_err());
        bad = vnet;
        bad.csum_start = 24;
        assert!(split(&bad, &sp, &[], 1500, &mut out).is_err());
        bad = vnet;
        bad.csum_offset = 6;
        assert!(split(&bad, &sp, &[], 1500, &mut out).is_err());
        bad = vnet;
        bad.needs_csum = false;
        assert!(split(&bad, &sp, &[], 1500, &mut out).is_err());
        bad = vnet;
        bad.gso_size = 0;
        assert!(split(&bad, &sp, &[], 1500, &mut out).is_err());
        // Header alone does not fit.
        assert_eq!(split(&vnet, &sp, &[], 40, &mut out), Err(TOO_BIG));
        // IPv4 total length beyond the buffer.
        assert!(matches!(
            split(&vnet, &sp[..2000], &[], 1500, &mut out),
            Err(Error::Truncated { .. })
        ));
        // A fragment.
        let mut frag = sp.clone();
        frag[6] |= 0x20;
        assert!(split(&vnet, &frag, &[], 1500, &mut out).is_err());
        // Data offset < 5.
        let mut doff = sp.clone();
        doff[32] = 0x40;
        assert!(split(&vnet, &doff, &[], 1500, &mut out).is_err());
        // Output too short.
        assert_eq!(
            split(&vnet, &sp, &[], 1500, &mut out[..100]),
            Err(Error::Truncated { needed: 3120 })
        );
        // Trailing bytes after the IP packet are ignored.
        let mut long = sp.clone();
        long.extend_from_slice(&[1, 2, 3]);
        let (segs, a) = split_vec(&vnet, &long, &[], 1500).unwrap();
        let (_, b) = split_vec(&vnet, &sp, &[], 1500).unwrap();
        assert_eq!(segs.count, 3);
        assert_eq!(a, b);
        // Every prefix of the packet fails cleanly (no panic).
        for n in 0..sp.len() {
            let _ = split(&vnet, &sp[..n], &[], 1500, &mut out);
        }
    }

    #[test]
    fn chunks_respect_segment_and_byte_limits() {
        let segs = Segments {
            count: 100,
            stride: 1000,
            len: 99 * 1000 + 10,
        };
        let c: Vec<_> = segs.chunks(UDP_MAX_SEGMENTS, MAX_UDP_PAYLOAD_V4).collect();
        assert_eq!(c, vec![0..64_000, 64_000..99_010]);
        let c: Vec<_> = segs.chunks(64, 30_500).collect();
        assert_eq!(c[0], 0..30_000);
        assert_eq!(c.len(), 4);
        assert_eq!(c[3], 90_000..99_010);
        // A stride above the byte limit still gets one segment per range.
        let c: Vec<_> = segs.chunks(64, 10).collect();
        assert_eq!(c.len(), 100);
        assert_eq!(segs.segment(99), 99_000..99_010);
        assert_eq!(segs.segment(100), 99_010..99_010);
    }

    #[test]
    fn a_64k_super_packet_fits_the_udp_limits() {
        let data = payload(65535 - 40, 7);
        let (vnet, sp) = super_packet(&Spec::default(), &data, 1410);
        let (segs, out) = split_vec(&vnet, &sp, &VXLAN_ETH, 1450).unwrap();
        assert_eq!(segs.count, 47);
        assert!(segs.len <= max_len(sp.len(), 22, 47));
        let mut total = 0;
        let mut n = 0;
        for r in segs.chunks(UDP_MAX_SEGMENTS, MAX_UDP_PAYLOAD_V4) {
            assert!(r.len() <= MAX_UDP_PAYLOAD_V4);
            assert_eq!(r.start % segs.stride, 0);
            total += r.len();
            n += 1;
        }
        assert_eq!((total, n), (segs.len, 2));
        for i in 0..segs.count {
            assert!(checksums_verify(&out[segs.segment(i)][22..]));
        }
    }
}
