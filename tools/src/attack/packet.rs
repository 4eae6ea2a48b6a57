//! Builders of well-formed inner packets (IPv4 / IPv6 + UDP with valid checksums, IPv4
//! options, IPv6 extension header chains) that the attack and the tests mangle.
//!
//! Contract: every builder returns a packet a Linux stack would accept (header checksum, UDP
//! checksum, lengths consistent), so that a packet reaching a pod is seen by a socket there and
//! a packet that must not reach it is caught. The builders never panic for payloads that fit
//! one IP packet (at most 65 535 - headers bytes); callers stay within that.

use std::net::{Ipv4Addr, Ipv6Addr};

use encap::checksum::{checksum, pseudo_header_v4, pseudo_header_v6};

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

/// A UDP header and `payload`, with the checksum over `pseudo` (a partial sum of the pseudo
/// header) filled in.
fn udp(src_port: u16, dst_port: u16, payload: &[u8], pseudo: encap::checksum::Sum) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = pseudo.bytes(&u).finish();
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

/// An IPv4 header of `20 + options.len()` bytes (options padded to 4 bytes with EOL) for a
/// payload of `payload_len` bytes, with a valid header checksum.
pub fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    options: &[u8],
    payload_len: usize,
) -> Vec<u8> {
    let opt_len = options.len().div_ceil(4) * 4;
    let ihl = u8::try_from((20 + opt_len) / 4).unwrap_or(15).min(15);
    let header_len = usize::from(ihl) * 4;
    let total = u16::try_from(header_len + payload_len).unwrap_or(u16::MAX);
    let mut p = vec![0x40 | ihl, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, protocol, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&options[..options.len().min(header_len - 20)]);
    p.resize(header_len, 0);
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// An IPv4/UDP packet carrying `payload`, with IPv4 `options` (may be empty).
pub fn ipv4_udp_with_options(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let pseudo = pseudo_header_v4(
        src.octets(),
        dst.octets(),
        PROTO_UDP,
        (8 + payload.len()) as u32,
    );
    let u = udp(ports.0, ports.1, payload, pseudo);
    let mut p = ipv4_header(src, dst, PROTO_UDP, options, u.len());
    p.extend_from_slice(&u);
    p
}

/// An IPv4/UDP packet carrying `payload`.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    ipv4_udp_with_options(src, dst, ports, &[], payload)
}

/// An IPv6/UDP packet carrying `payload`, behind the extension headers `chain` (each a next
/// header value; every header gets 8 bytes: a PadN option for hop-by-hop and destination
/// options, an empty type-0-free routing header with segments left 0, an atomic fragment
/// header).
pub fn ipv6_udp_with_chain(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ports: (u16, u16),
    chain: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let pseudo = pseudo_header_v6(
        &src.octets(),
        &dst.octets(),
        PROTO_UDP,
        (8 + payload.len()) as u32,
    );
    let u = udp(ports.0, ports.1, payload, pseudo);
    let mut ext = Vec::with_capacity(chain.len() * 8);
    for (i, &kind) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(PROTO_UDP);
        match kind {
            NH_FRAGMENT => ext.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0x12, 0x34]),
            // Routing type 4 (segment routing is larger); type 253 (experimental), 0 left.
            NH_ROUTING => ext.extend_from_slice(&[next, 0, 253, 0, 0, 0, 0, 0]),
            // Hop-by-hop / destination options: PadN of 4 bytes.
            _ => ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
        }
    }
    let first = chain.first().copied().unwrap_or(PROTO_UDP);
    let payload_len = u16::try_from(ext.len() + u.len()).unwrap_or(u16::MAX);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&payload_len.to_be_bytes());
    p.extend_from_slice(&[first, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&ext);
    p.extend_from_slice(&u);
    p
}

/// An IPv6/UDP packet carrying `payload`.
pub fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    ipv6_udp_with_chain(src, dst, ports, &[], payload)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Whether the UDP checksum of `udp` verifies over `pseudo`.
    fn udp_ok(pseudo: encap::checksum::Sum, udp: &[u8]) -> bool {
        pseudo.bytes(udp).finish() == 0
    }

    #[test]
    fn ipv4_with_options_is_valid() {
        let (s, d) = (Ipv4Addr::new(10, 244, 3, 7), Ipv4Addr::new(10, 244, 2, 1));
        for opts in [
            &[][..],
            &[1, 1, 1, 1][..],
            &[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            let p = ipv4_udp_with_options(s, d, (1, 9999), opts, b"hello");
            let ihl = usize::from(p[0] & 0x0f) * 4;
            assert_eq!(ihl, 20 + opts.len().div_ceil(4) * 4);
            assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
            assert_eq!(checksum(&p[..ihl]), 0, "header checksum");
            let u = &p[ihl..];
            let pseudo = pseudo_header_v4(s.octets(), d.octets(), PROTO_UDP, u.len() as u32);
            assert!(udp_ok(pseudo, u));
            assert_eq!(&u[8..], b"hello");
        }
    }

    #[test]
    fn ipv6_chain_is_valid() {
        let s: Ipv6Addr = "fd00:10:244:3::7".parse().unwrap();
        let d: Ipv6Addr = "fd00:10:244:2::1".parse().unwrap();
        let p = ipv6_udp_with_chain(
            s,
            d,
            (1, 9999),
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
        assert!(udp_ok(pseudo, u));
        let plain = ipv6_udp(s, d, (1, 2), b"x");
        assert_eq!(plain[6], PROTO_UDP);
    }
}
