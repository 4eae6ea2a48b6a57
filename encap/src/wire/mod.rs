//! Zero-copy views over packet headers, each with a `Repr`.
//!
//! The contract follows smoltcp's `wire`: a view `Foo<T: AsRef<[u8]>>` has `new_unchecked`,
//! `check_len` and `new_checked` (both), and `into_inner`. Once `check_len` has passed, no
//! accessor panics. Field offsets are `Range<usize>` constants in a private `mod field` beside a
//! public `HEADER_LEN`. Getters need `AsRef`, setters (`set_*`) need `AsMut`. Beside each view a
//! small `Copy` `Repr` has `parse`, `buffer_len` and `emit`; `emit` never panics on a buffer of
//! exactly `buffer_len()` bytes and never calls `new_checked` (a reused buffer holds stale
//! lengths).

pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod virtio;
pub mod vxlan;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// Ethernet II ethertypes (IEEE 802 numbers).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

// ---------------------------------------------------------------------------------------------
// Fixed-offset fast path (route lookup) and big-endian field helpers shared by the views.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IP version nibble of `packet` (4 or 6 for IP; anything else is not IP), or `None` for an
/// empty buffer. No other validation: this is the hot-path dispatch.
#[inline]
pub fn ip_version(packet: &[u8]) -> Option<u8> {
    packet.first().map(|b| b >> 4)
}

/// Whether an IPv4 packet's header checksum verifies, as the kernel's `ip_rcv` checks it (a
/// failure is InHdrErrors there). `true` for anything that is not IPv4 (IPv6 has no header
/// checksum); `false` for an IPv4 header (IHL words) that does not fit in `packet`.
#[inline]
pub fn ipv4_header_verifies(packet: &[u8]) -> bool {
    let Some(&first) = packet.first() else {
        return true;
    };
    if first >> 4 != 4 {
        return true;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    match packet.get(..header_len) {
        Some(header) if header_len >= ipv4::HEADER_LEN => {
            crate::checksum::verifies(crate::checksum::Sum::ZERO.bytes(header))
        }
        _ => false,
    }
}

/// The destination address of an IPv4 (bytes 16..20) or IPv6 (bytes 24..40) packet, after one
/// length check. `None` if the version is neither 4 nor 6 or the fixed header is cut short.
/// Nothing else is validated: full checks are [`ipv4::Ipv4Packet::new_checked`] and
/// [`ipv6::Ipv6Packet::new_checked`].
#[inline]
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    address_at(packet, 16, 24)
}

/// The source address of an IPv4 (bytes 12..16) or IPv6 (bytes 8..24) packet; see
/// [`destination`].
#[inline]
pub fn source(packet: &[u8]) -> Option<IpAddr> {
    address_at(packet, 12, 8)
}

#[inline]
fn address_at(packet: &[u8], v4_at: usize, v6_at: usize) -> Option<IpAddr> {
    match ip_version(packet)? {
        4 => {
            let b: [u8; 4] = packet.get(v4_at..v4_at + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(v6_at..v6_at + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The big-endian `u16` at `at`. Views call it only inside a length they have checked.
#[inline]
pub(crate) fn get_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// The big-endian `u32` at `at`. Views call it only inside a length they have checked.
#[inline]
pub(crate) fn get_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Writes `v` big-endian at `at`.
#[inline]
pub(crate) fn put_u16(data: &mut [u8], at: usize, v: u16) {
    data[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` big-endian at `at`.
#[inline]
pub(crate) fn put_u32(data: &mut [u8], at: usize, v: u32) {
    data[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// `n` as a 16-bit length field. Callers document that lengths fit; an oversized value
/// saturates instead of wrapping, so a bug shows as a too-long field rather than a tiny one.
#[inline]
pub(crate) fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn v4_and_v6_addresses_at_fixed_offsets() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[10, 0, 0, 1]);
        v4[16..20].copy_from_slice(&[10, 244, 3, 7]);
        assert_eq!(ip_version(&v4), Some(4));
        assert_eq!(
            destination(&v4),
            Some(IpAddr::V4(Ipv4Addr::new(10, 244, 3, 7)))
        );
        assert_eq!(source(&v4), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(destination(&v4[..19]), None);

        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[8] = 0xfd;
        v6[23] = 1;
        v6[24] = 0xfe;
        v6[25] = 0x80;
        v6[39] = 2;
        assert_eq!(ip_version(&v6), Some(6));
        assert_eq!(destination(&v6), Some("fe80::2".parse().expect("addr")));
        assert_eq!(source(&v6), Some("fd00::1".parse().expect("addr")));
        assert_eq!(destination(&v6[..39]), None);
        assert_eq!(source(&v6[..24]), Some("fd00::1".parse().expect("addr")));
    }

    #[test]
    fn not_ip() {
        assert_eq!(ip_version(&[]), None);
        assert_eq!(destination(&[]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        assert_eq!(source(&[0x00; 40]), None);
    }

    #[test]
    fn ipv4_header_checksum_as_the_kernel_checks_it() {
        // 10.0.0.1 -> 10.244.3.7, TCP, total length 20; checksum written by the oracle below.
        let mut v4 = [
            0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 244, 3, 7,
        ];
        let sum = crate::checksum::checksum(&v4);
        v4[10..12].copy_from_slice(&sum.to_be_bytes());
        assert!(ipv4_header_verifies(&v4));
        let mut bad = v4;
        bad[8] = 63; // TTL changed, checksum not
        assert!(!ipv4_header_verifies(&bad));
        assert!(!ipv4_header_verifies(&v4[..19]), "header cut short");
        let mut long_ihl = v4;
        long_ihl[0] = 0x46; // 24-byte header in a 20-byte buffer
        assert!(!ipv4_header_verifies(&long_ihl));
        let mut short_ihl = v4;
        short_ihl[0] = 0x44; // IHL below 5
        assert!(!ipv4_header_verifies(&short_ihl));
        assert!(ipv4_header_verifies(&[]), "not IPv4");
        assert!(
            ipv4_header_verifies(&[0x60; 40]),
            "IPv6 has no header checksum"
        );
    }
}
