//! Builders of test packets with correct checksums, shared by the unit tests of every module
//! (`#[cfg(test)]` only): raw IPv4 / IPv6 headers around a payload ([`ipv4`], [`ipv6`]) and
//! whole TCP/UDP packets and TSO super-packets from a [`Spec`] ([`packet`], [`super_packet`]).

use crate::checksum::{self, Sum};
use crate::wire::proto;
use crate::wire::virtio::{GsoType, VirtioNetRepr};

pub(crate) const SRC4: [u8; 4] = [10, 244, 1, 5];
pub(crate) const DST4: [u8; 4] = [10, 244, 2, 7];
pub(crate) const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5];
pub(crate) const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7];

/// The fields of an IPv4 header that tests choose; [`ipv4`] fills in the rest.
#[derive(Clone, Copy, Debug)]
pub(crate) struct V4 {
    pub(crate) tos: u8,
    pub(crate) id: u16,
    /// The flags + fragment offset word.
    pub(crate) frag: u16,
    pub(crate) ttl: u8,
    pub(crate) protocol: u8,
    pub(crate) src: [u8; 4],
    pub(crate) dst: [u8; 4],
}

/// An IPv4 packet: the header `h` with `options` (a multiple of 4 bytes), the IHL, total length
/// and header checksum filled in, then `payload`.
pub(crate) fn ipv4(h: &V4, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    let total = (ihl + payload.len()) as u16;
    let mut p = Vec::with_capacity(ihl + payload.len());
    p.extend_from_slice(&[0x40 | (ihl / 4) as u8, h.tos]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&h.id.to_be_bytes());
    p.extend_from_slice(&h.frag.to_be_bytes());
    p.extend_from_slice(&[h.ttl, h.protocol, 0, 0]);
    p.extend_from_slice(&h.src);
    p.extend_from_slice(&h.dst);
    p.extend_from_slice(options);
    let c = checksum::checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet: `first_word` (version, traffic class, flow label), the payload length of
/// `payload`, `next`, `hop_limit`, the addresses, then `payload`.
pub(crate) fn ipv6(
    first_word: u32,
    next: u8,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&first_word.to_be_bytes());
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, hop_limit]);
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    p.extend_from_slice(payload);
    p
}

/// Shape of a test packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec<'a> {
    pub(crate) v6: bool,
    pub(crate) tcp: bool,
    pub(crate) id: u16,
    pub(crate) seq: u32,
    pub(crate) flags: u8,
    pub(crate) tcp_options: &'a [u8],
    pub(crate) ip_options: &'a [u8],
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            v6: false,
            tcp: true,
            id: 0x1000,
            seq: 0x0100_0000,
            flags: 0x10,
            tcp_options: &[],
            ip_options: &[],
        }
    }
}

/// A packet with full, correct checksums.
pub(crate) fn packet(s: &Spec<'_>, payload: &[u8]) -> Vec<u8> {
    let mut p = build(s, payload);
    let l4 = l4_off(&p);
    let sum = pseudo(&p, l4).combine(Sum::ZERO.bytes(&p[l4..])).finish();
    let at = l4 + if s.tcp { 16 } else { 6 };
    p[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    p
}

/// A super-packet as a TUN delivers it (partial checksum) and its virtio header.
pub(crate) fn super_packet(
    s: &Spec<'_>,
    payload: &[u8],
    gso_size: u16,
) -> (VirtioNetRepr, Vec<u8>) {
    let mut p = build(s, payload);
    let l4 = l4_off(&p);
    let at = l4 + if s.tcp { 16 } else { 6 };
    let partial = pseudo(&p, l4).fold();
    p[at..at + 2].copy_from_slice(&partial.to_be_bytes());
    let gso = match (s.tcp, s.v6) {
        (true, false) => GsoType::TcpV4,
        (true, true) => GsoType::TcpV6,
        (false, _) => GsoType::UdpL4,
    };
    let hdr_len = l4 + if s.tcp { 20 + s.tcp_options.len() } else { 8 };
    let vnet = VirtioNetRepr {
        needs_csum: true,
        data_valid: false,
        gso,
        ecn: false,
        hdr_len: hdr_len as u16,
        gso_size,
        csum_start: l4 as u16,
        csum_offset: if s.tcp { 16 } else { 6 },
    };
    (vnet, p)
}

pub(crate) fn l4_off(p: &[u8]) -> usize {
    if p[0] >> 4 == 6 {
        40
    } else {
        usize::from(p[0] & 0xf) * 4
    }
}

pub(crate) fn pseudo(p: &[u8], l4: usize) -> Sum {
    let len = (p.len() - l4) as u32;
    if p[0] >> 4 == 6 {
        let mut src = [0; 16];
        let mut dst = [0; 16];
        src.copy_from_slice(&p[8..24]);
        dst.copy_from_slice(&p[24..40]);
        checksum::pseudo_header_v6(&src, &dst, p[6], len)
    } else {
        let src = [p[12], p[13], p[14], p[15]];
        let dst = [p[16], p[17], p[18], p[19]];
        checksum::pseudo_header_v4(src, dst, p[9], len)
    }
}

/// Whether the IPv4 header checksum (if any) and the L4 checksum verify.
pub(crate) fn checksums_verify(p: &[u8]) -> bool {
    let l4 = l4_off(p);
    let ip_ok = p[0] >> 4 == 6 || checksum::verifies(Sum::ZERO.bytes(&p[..l4]));
    ip_ok && checksum::verifies(pseudo(p, l4).combine(Sum::ZERO.bytes(&p[l4..])))
}

fn build(s: &Spec<'_>, payload: &[u8]) -> Vec<u8> {
    let l4_hdr = if s.tcp { 20 + s.tcp_options.len() } else { 8 };
    let protocol = if s.tcp { proto::TCP } else { proto::UDP };
    let mut p = Vec::with_capacity(l4_hdr + payload.len());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&5201u16.to_be_bytes());
    if s.tcp {
        p.extend_from_slice(&s.seq.to_be_bytes());
        p.extend_from_slice(&0xa0b0_c0d0u32.to_be_bytes());
        p.push((((20 + s.tcp_options.len()) / 4) as u8) << 4);
        p.push(s.flags);
        p.extend_from_slice(&[0x01, 0xf6, 0, 0, 0, 0]);
        p.extend_from_slice(s.tcp_options);
    } else {
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
    }
    p.extend_from_slice(payload);
    if s.v6 {
        ipv6(0x6012_3456, protocol, 64, &SRC6, &DST6, &p)
    } else {
        let h = V4 {
            tos: 0x28,
            id: s.id,
            frag: 0x4000,
            ttl: 64,
            protocol,
            src: SRC4,
            dst: DST4,
        };
        ipv4(&h, s.ip_options, &p)
    }
}

/// Deterministic test payload bytes.
pub(crate) fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}
