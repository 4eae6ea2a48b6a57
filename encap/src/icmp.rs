//! The ICMP errors weft writes back into the TUN, built into a caller buffer.
//!
//! * [`net_unreachable`]: a destination no route covers. flannel's udp proxy
//!   (pkg/backend/udp/proxy_amd64.c, `send_net_unreachable`) does this for IPv4: source = the
//!   TUN address, destination = the offending packet's source, TTL 8, type 3 code 0 quoting the
//!   offending IP header + 8 bytes. weft does the same, and for IPv6 sends type 1 code 0.
//! * [`frag_needed`] (IPv4, RFC 1191) and [`packet_too_big`] (IPv6, RFC 4443 §3.2): a packet
//!   larger than the tunnel's path MTU, so that path MTU discovery works through the tunnel.
//!   [`exceeds_path`] tells the caller which of the two is due.
//!
//! Contract: every function returns the length written (`Some(n)`, `n <=` [`MAX_ERROR_LEN`]),
//! or `None` when no error is due: the offending packet is itself an ICMP error (ICMPv4 types
//! 3, 4, 5, 11, 12; ICMPv6 types < 128 and redirects), a non-first fragment, has a source that
//! is not a single host (unspecified, loopback, multicast, broadcast, class E), goes to a
//! multicast or broadcast destination (except ICMPv6 Packet Too Big, RFC 4443 §2.4 (e.3)), is
//! truncated or malformed, has the other IP version than the given TUN address, or `out` is too
//! small. Every IP and ICMP checksum is filled in. No allocation, no panics on any input. The
//! offending packet is read through the [`crate::wire`] views (lengths checked by their
//! `check_len`, IPv6 extension headers walked by [`Ipv6Packet::upper_layer`]).
//!
//! The source address: flannel uses the TUN's own address, but Linux drops a received packet
//! whose source is one of its own addresses as a martian (`fib_validate_source`, unless
//! `accept_local=1`), so flannel's net unreachable never reaches the sender
//! (tests/kernel_icmp.rs shows both). Callers should pass an address in the overlay that the
//! host does not own (for example the first address of the Network). The functions take the
//! source as given.
//!
//! Unlike flannel, which never answers any ICMP packet, weft answers ICMP queries (an echo
//! request to an unknown subnet gets a net unreachable) and suppresses only ICMP errors, as RFC
//! 1122 asks.

//= https://www.rfc-editor.org/rfc/rfc1122#section-3.2.2
//# An ICMP error message MUST NOT be sent as the result of
//# receiving:
//#
//# *    an ICMP error message, or
//#
//# *    a datagram destined to an IP broadcast or IP multicast
//#      address, or
//#
//# *    a datagram sent as a link-layer broadcast, or
//#
//# *    a non-initial fragment, or
//#
//# *    a datagram whose source address does not define a single
//#      host -- e.g., a zero address, a loopback address, a
//#      broadcast address, a multicast address, or a Class E
//#      address.

use crate::checksum::{checksum, pseudo_header_v6, Sum};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{icmpv4, icmpv6, proto};
use core::net::IpAddr;

/// The TTL / hop limit of the errors weft generates: 8, as flannel's udp proxy uses.
pub const ERROR_TTL: u8 = 8;

/// The largest IPv4 error: IPv4 header (20) + ICMP header (8) + the offending header (at most
/// 60) + 8 bytes of its payload.
pub const MAX_ERROR_LEN_V4: usize = 20 + 8 + 60 + 8;

/// The largest error any function here writes: an ICMPv6 error is cut to the IPv6 minimum MTU,
/// 1280 bytes (RFC 4443 §2.4 (c)). A buffer of this size always suffices.
pub const MAX_ERROR_LEN: usize = IPV6_MIN_MTU;

/// The IPv6 minimum link MTU (RFC 8200 §5).
const IPV6_MIN_MTU: usize = 1280;

const IPV4_HEADER: usize = ipv4::HEADER_LEN;
const IPV6_HEADER: usize = ipv6::HEADER_LEN;
const ICMP_HEADER: usize = icmpv4::HEADER_LEN;

/// The error a packet too large for the path calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// IPv4 with DF set: send [`frag_needed`] with this next-hop MTU.
    FragNeeded {
        /// The MTU to report.
        mtu: u16,
    },
    /// IPv6: send [`packet_too_big`] with this MTU.
    PacketTooBig {
        /// The MTU to report.
        mtu: u32,
    },
}

/// Whether `packet` (one IP packet as read from the TUN, not a GSO super-packet: those are
/// split to the MTU) exceeds `mtu`, judged by its own IP length field, and which error is due.
///
/// IPv4 with DF over the MTU gives [`PathError::FragNeeded`]; IPv6 over the MTU gives
/// [`PathError::PacketTooBig`]; IPv4 without DF gives `None` (the caller fragments or drops),
/// as does a packet that fits or one too malformed to judge.
pub fn exceeds_path(packet: &[u8], mtu: usize) -> Option<PathError> {
    match packet.first()? >> 4 {
        4 => {
            let h = Ipv4Packet::new_unchecked(packet.get(..IPV4_HEADER)?);
            let total = usize::from(h.total_len());
            (h.dont_frag() && total > mtu).then(|| PathError::FragNeeded {
                mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
            })
        }
        6 => {
            let total = Ipv6Packet::new_unchecked(packet.get(..IPV6_HEADER)?).total_len();
            (total > mtu).then(|| PathError::PacketTooBig {
                mtu: u32::try_from(mtu).unwrap_or(u32::MAX),
            })
        }
        _ => None,
    }
}

/// Writes a destination unreachable, "net unreachable" (ICMPv4 type 3 code 0, or ICMPv6 type 1
/// code 0 "no route to destination") for `offending`, from `tun_addr` to the offending
/// packet's source. `tun_addr` must have the offending packet's IP version.
///
/// Needs `out.len() >=` [`MAX_ERROR_LEN_V4`] for IPv4 (less works when the quote is shorter);
/// for IPv6 the quote is cut to fit both `out` and [`MAX_ERROR_LEN`].
pub fn net_unreachable(offending: &[u8], tun_addr: IpAddr, out: &mut [u8]) -> Option<usize> {
    match (offending.first()? >> 4, tun_addr) {
        (4, IpAddr::V4(src)) => {
            let o = V4Offending::check(offending)?;
            //= https://www.rfc-editor.org/rfc/rfc792#page-4
            //# Internet Header + 64 bits of Data Datagram
            //#
            //#    The internet header plus the first 64 bits of the original
            //#    datagram's data.
            write_v4(
                out,
                src.octets(),
                o.src,
                [
                    icmpv4::msg_type::DST_UNREACHABLE,
                    icmpv4::dst_unreachable::NET_UNREACHABLE,
                ],
                [0; 4],
                o.quote(offending),
            )
        }
        (6, IpAddr::V6(src)) => {
            let o = V6Offending::check(offending, false)?;
            write_v6(
                out,
                &src.octets(),
                &o.src,
                [
                    icmpv6::msg_type::DST_UNREACHABLE,
                    icmpv6::dst_unreachable::NO_ROUTE,
                ],
                [0; 4],
                &offending[..o.len],
            )
        }
        _ => None,
    }
}

/// Writes an ICMPv4 "fragmentation needed and DF set" (type 3 code 4) for `offending`, from
/// `tun_addr_v4`, carrying `next_hop_mtu`. `None` also when `offending` is not IPv4 or does not
/// have DF set (then fragmentation, not an error, is due).
pub fn frag_needed(
    offending: &[u8],
    tun_addr_v4: [u8; 4],
    next_hop_mtu: u16,
    out: &mut [u8],
) -> Option<usize> {
    if offending.first()? >> 4 != 4 {
        return None;
    }
    let o = V4Offending::check(offending)?;
    if !o.df {
        return None;
    }
    //= https://www.rfc-editor.org/rfc/rfc1191#section-4
    //# the router MUST include the MTU of that next-hop network in the
    //# low-order 16 bits of the ICMP header field that is labelled
    //# "unused" in the ICMP specification [7].  The high-order 16 bits
    //# of the field remain unused, and MUST be set to zero.
    let mtu = next_hop_mtu.to_be_bytes();
    write_v4(
        out,
        tun_addr_v4,
        o.src,
        [
            icmpv4::msg_type::DST_UNREACHABLE,
            icmpv4::dst_unreachable::FRAG_NEEDED,
        ],
        [0, 0, mtu[0], mtu[1]],
        o.quote(offending),
    )
}

/// Writes an ICMPv6 Packet Too Big (type 2 code 0) for `offending`, from `tun_addr_v6`,
/// carrying `mtu`. Sent also for a multicast destination (RFC 4443 §2.4 (e.3) exception).
pub fn packet_too_big(
    offending: &[u8],
    tun_addr_v6: [u8; 16],
    mtu: u32,
    out: &mut [u8],
) -> Option<usize> {
    if offending.first()? >> 4 != 6 {
        return None;
    }
    let o = V6Offending::check(offending, true)?;
    //= https://www.rfc-editor.org/rfc/rfc4443#section-3.2
    //# MTU            The Maximum Transmission Unit of the next-hop link.
    write_v6(
        out,
        &tun_addr_v6,
        &o.src,
        [icmpv6::msg_type::PACKET_TOO_BIG, 0],
        mtu.to_be_bytes(),
        &offending[..o.len],
    )
}

/// An IPv4 packet that may be answered with an ICMP error.
struct V4Offending {
    ihl: usize,
    total: usize,
    src: [u8; 4],
    df: bool,
}

impl V4Offending {
    fn check(p: &[u8]) -> Option<V4Offending> {
        // Version 4, 20 <= header length <= total length <= buffer.
        let ip = Ipv4Packet::new_checked(p).ok()?;
        if !ip.is_first_fragment() {
            return None;
        }
        let src = ip.src();
        let dst = ip.dst();
        // Not a single host: 0/8, 127/8, 224/4 multicast, 240/4 class E, 255.255.255.255.
        if src[0] == 0 || src[0] == 127 || src[0] >= 224 {
            return None;
        }
        // Multicast, class E or limited broadcast destination.
        if dst[0] >= 224 {
            return None;
        }
        if ip.protocol() == proto::ICMP {
            let icmp_type = *ip.payload().first()?;
            if icmpv4::msg_type::is_error(icmp_type) {
                return None;
            }
        }
        Some(V4Offending {
            ihl: ip.header_len(),
            total: usize::from(ip.total_len()),
            src,
            df: ip.dont_frag(),
        })
    }

    /// The offending IP header plus up to 8 bytes of its payload.
    fn quote<'a>(&self, p: &'a [u8]) -> &'a [u8] {
        &p[..self.total.min(self.ihl + 8)]
    }
}

/// An IPv6 packet that may be answered with an ICMPv6 error.
struct V6Offending {
    /// The packet's length from its header (<= the buffer).
    len: usize,
    src: [u8; 16],
}

impl V6Offending {
    fn check(p: &[u8], allow_multicast_dst: bool) -> Option<V6Offending> {
        // Version 6, 40 + payload length <= buffer.
        let ip = Ipv6Packet::new_checked(p).ok()?;
        let len = ip.total_len();
        let src = ip.src();
        //= https://www.rfc-editor.org/rfc/rfc4443#section-2.4
        //# (e.6) A packet whose source address does not uniquely identify a
        //#       single node -- e.g., the IPv6 Unspecified Address, an IPv6
        //#       multicast address, or an address known by the ICMP message
        //#       originator to be an IPv6 anycast address.
        let unspecified = src == [0; 16];
        let loopback = src == core::net::Ipv6Addr::LOCALHOST.octets();
        if unspecified || loopback || src[0] == 0xff {
            return None;
        }
        //= https://www.rfc-editor.org/rfc/rfc4443#section-2.4
        //# (e.3) A packet destined to an IPv6 multicast address.  (There are
        //#       two exceptions to this rule: (1) the Packet Too Big Message
        //#       (Section 3.2) to allow Path MTU discovery to work for IPv6
        //#       multicast, and (2) the Parameter Problem Message, Code 2
        if ip.dst()[0] == 0xff && !allow_multicast_dst {
            return None;
        }
        // The walk gives up (no error sent) on a truncated extension header and after
        // ipv6::MAX_EXT_HEADERS (16) of them; RFC 8200 §4.1 allows each header once (Destination
        // Options twice), so no legitimate chain comes near.
        let upper = ip.upper_layer().ok()?;
        if upper.fragment.is_some_and(|f| f.offset != 0) {
            return None; // non-initial fragment
        }
        if upper.protocol == proto::ICMPV6 {
            //= https://www.rfc-editor.org/rfc/rfc4443#section-2.4
            //# (e.1) An ICMPv6 error message.
            //#
            //# (e.2) An ICMPv6 redirect message [IPv6-DISC].
            let t = *p[..len].get(upper.offset)?;
            if icmpv6::msg_type::is_error(t) || t == icmpv6::msg_type::REDIRECT {
                return None;
            }
        }
        Some(V6Offending { len, src })
    }
}

/// Writes IPv4 + ICMPv4 with `type_code`, the 4 bytes after the checksum, and `quote`.
fn write_v4(
    out: &mut [u8],
    src: [u8; 4],
    dst: [u8; 4],
    type_code: [u8; 2],
    rest: [u8; 4],
    quote: &[u8],
) -> Option<usize> {
    let len = IPV4_HEADER + ICMP_HEADER + quote.len();
    let out = out.get_mut(..len)?;
    let (ip, icmp) = out.split_at_mut(IPV4_HEADER);
    let total = u16::try_from(len).ok()?.to_be_bytes();
    ip.copy_from_slice(&[
        0x45,
        0,
        total[0],
        total[1],
        0,
        0,
        0,
        0,
        ERROR_TTL,
        proto::ICMP,
        0,
        0,
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    ]);
    let c = checksum(ip).to_be_bytes();
    ip[10..12].copy_from_slice(&c);
    let (head, body) = icmp.split_at_mut(ICMP_HEADER);
    head.copy_from_slice(&[
        type_code[0],
        type_code[1],
        0,
        0,
        rest[0],
        rest[1],
        rest[2],
        rest[3],
    ]);
    body.copy_from_slice(quote);
    let c = checksum(icmp).to_be_bytes();
    icmp[2..4].copy_from_slice(&c);
    Some(len)
}

/// Writes IPv6 + ICMPv6 with `type_code`, the 4 bytes after the checksum, and as much of
/// `quote` as fits in `out` and in [`MAX_ERROR_LEN`].
fn write_v6(
    out: &mut [u8],
    src: &[u8; 16],
    dst: &[u8; 16],
    type_code: [u8; 2],
    rest: [u8; 4],
    quote: &[u8],
) -> Option<usize> {
    //= https://www.rfc-editor.org/rfc/rfc4443#section-2.4
    //# (c) Every ICMPv6 error message (type < 128) MUST include as much of
    //#     the IPv6 offending (invoking) packet (the packet that caused the
    //#     error) as possible without making the error message packet exceed
    //#     the minimum IPv6 MTU [IPv6].
    let limit = out.len().min(MAX_ERROR_LEN);
    let room = limit.checked_sub(IPV6_HEADER + ICMP_HEADER)?;
    let quote = &quote[..quote.len().min(room)];
    let icmp_len = ICMP_HEADER + quote.len();
    let len = IPV6_HEADER + icmp_len;
    let out = out.get_mut(..len)?;
    let (ip, icmp) = out.split_at_mut(IPV6_HEADER);
    let payload_len = u16::try_from(icmp_len).ok()?.to_be_bytes();
    ip[..8].copy_from_slice(&[
        0x60,
        0,
        0,
        0,
        payload_len[0],
        payload_len[1],
        proto::ICMPV6,
        ERROR_TTL,
    ]);
    ip[8..24].copy_from_slice(src);
    ip[24..40].copy_from_slice(dst);
    let (head, body) = icmp.split_at_mut(ICMP_HEADER);
    head.copy_from_slice(&[
        type_code[0],
        type_code[1],
        0,
        0,
        rest[0],
        rest[1],
        rest[2],
        rest[3],
    ]);
    body.copy_from_slice(quote);
    let sum: Sum = pseudo_header_v6(src, dst, proto::ICMPV6, icmp_len as u32).bytes(icmp);
    icmp[2..4].copy_from_slice(&sum.finish().to_be_bytes());
    Some(len)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checksum::{pseudo_header_v6, verifies};
    use crate::test_packets;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const TUN4: [u8; 4] = [10, 244, 1, 0];
    const TUN6: [u8; 16] = [0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    const POD6: [u8; 16] = [0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5];
    const FAR6: [u8; 16] = [0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 9, 0, 0, 0, 0, 0, 0, 0, 7];

    fn tun4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(TUN4))
    }
    fn tun6() -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(TUN6))
    }

    /// IPv4 10.244.1.5 -> 10.244.9.7 with `payload`; `frag` is the flags/offset word.
    fn ipv4(protocol: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
        let h = test_packets::V4 {
            tos: 0,
            id: 0xabcd,
            frag,
            ttl: 63,
            protocol,
            src: [10, 244, 1, 5],
            dst: [10, 244, 9, 7],
        };
        test_packets::ipv4(&h, &[], payload)
    }

    fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
        test_packets::ipv6(0x6000_0000, next, 64, &POD6, &FAR6, payload)
    }

    fn udp_payload(n: usize) -> Vec<u8> {
        let mut u = vec![0x9c, 0x40, 0x00, 0x35];
        u.extend_from_slice(&((n + 8) as u16).to_be_bytes());
        u.extend_from_slice(&[0x12, 0x34]);
        u.extend((0..n).map(|i| i as u8));
        u
    }

    /// Checks an IPv4 error field by field and returns (type, code, rest, quote).
    fn parse_v4_error(b: &[u8]) -> (u8, u8, [u8; 4], &[u8]) {
        assert_eq!(b[0], 0x45);
        assert_eq!(b[1], 0);
        assert_eq!(usize::from(u16::from_be_bytes([b[2], b[3]])), b.len());
        assert_eq!(&b[4..8], &[0, 0, 0, 0]);
        assert_eq!(b[8], 8, "ttl");
        assert_eq!(b[9], 1, "protocol");
        assert!(verifies(Sum::ZERO.bytes(&b[..20])), "ip checksum");
        assert_eq!(&b[12..16], &TUN4, "source = tun address");
        assert_eq!(
            &b[16..20],
            &[10, 244, 1, 5],
            "destination = offender's source"
        );
        assert!(verifies(Sum::ZERO.bytes(&b[20..])), "icmp checksum");
        (b[20], b[21], [b[24], b[25], b[26], b[27]], &b[28..])
    }

    fn parse_v6_error(b: &[u8]) -> (u8, u8, [u8; 4], &[u8]) {
        assert_eq!(&b[..4], &[0x60, 0, 0, 0]);
        assert_eq!(usize::from(u16::from_be_bytes([b[4], b[5]])), b.len() - 40);
        assert_eq!(b[6], 58);
        assert_eq!(b[7], 8, "hop limit");
        assert_eq!(&b[8..24], &TUN6);
        assert_eq!(&b[24..40], &POD6);
        let ph = pseudo_header_v6(&TUN6, &POD6, 58, (b.len() - 40) as u32);
        assert!(verifies(ph.bytes(&b[40..])), "icmpv6 checksum");
        (b[40], b[41], [b[44], b[45], b[46], b[47]], &b[48..])
    }

    #[test]
    fn net_unreachable_v4_quotes_header_and_8_bytes() {
        let off = ipv4(proto::UDP, 0x4000, &udp_payload(100));
        let mut out = [0u8; MAX_ERROR_LEN_V4];
        let n = net_unreachable(&off, tun4(), &mut out).unwrap();
        assert_eq!(n, 20 + 8 + 20 + 8);
        let (t, c, rest, quote) = parse_v4_error(&out[..n]);
        assert_eq!((t, c, rest), (3, 0, [0; 4]));
        assert_eq!(quote, &off[..28]);
    }

    #[test]
    fn net_unreachable_v4_with_options_and_short_payload() {
        // IHL 6 (4 bytes of options), 3 bytes of payload: quote the 27 bytes there are.
        let mut off = vec![
            0x46,
            0,
            0,
            27,
            0,
            1,
            0,
            0,
            64,
            proto::TCP,
            0,
            0,
            10,
            244,
            1,
            5,
            10,
            244,
            9,
            7,
            1,
            1,
            1,
            0,
            0xaa,
            0xbb,
            0xcc,
        ];
        let c = checksum(&off[..24]);
        off[10..12].copy_from_slice(&c.to_be_bytes());
        let mut out = [0u8; 200];
        let n = net_unreachable(&off, tun4(), &mut out).unwrap();
        let (_, _, _, quote) = parse_v4_error(&out[..n]);
        assert_eq!(quote, &off[..]);
        assert_eq!(n, 28 + 27);
        // Odd length: the checksum still verifies (checked in parse_v4_error).
        assert_eq!(n % 2, 1);
    }

    #[test]
    fn net_unreachable_answers_echo_requests() {
        let off = ipv4(proto::ICMP, 0, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0, 1, 2, 3]);
        let mut out = [0u8; 128];
        let n = net_unreachable(&off, tun4(), &mut out).unwrap();
        assert_eq!(parse_v4_error(&out[..n]).3, &off[..28]);
    }

    #[test]
    fn net_unreachable_v4_suppressed() {
        let mut out = [0u8; 256];
        let mut none = |p: &[u8], why: &str| {
            assert_eq!(net_unreachable(p, tun4(), &mut out), None, "{why}");
        };
        for t in [3u8, 4, 5, 11, 12] {
            none(
                &ipv4(proto::ICMP, 0, &[t, 0, 0, 0, 0, 0, 0, 0]),
                "icmp error",
            );
        }
        none(&ipv4(proto::ICMP, 0, &[]), "icmp without a type");
        none(
            &ipv4(proto::UDP, 0x0001, &udp_payload(8)),
            "non-first fragment",
        );
        none(
            &ipv4(proto::UDP, 0x2010, &udp_payload(8)),
            "non-first fragment, MF",
        );
        let base = ipv4(proto::UDP, 0, &udp_payload(8));
        for (at, v, why) in [
            (12, 0, "source 0/8"),
            (12, 127, "source loopback"),
            (12, 224, "source multicast"),
            (12, 240, "source class E"),
            (12, 255, "source broadcast"),
            (16, 224, "destination multicast"),
            (16, 255, "destination broadcast"),
        ] {
            let mut p = base.clone();
            p[at] = v;
            none(&p, why);
        }
        none(
            &base[..base.len() - 1],
            "truncated: total length beyond buffer",
        );
        none(&base[..19], "truncated header");
        none(&[], "empty");
        let mut p = base.clone();
        p[0] = 0x44;
        none(&p, "ihl below 5");
        // Wrong TUN address family.
        assert_eq!(net_unreachable(&base, tun6(), &mut out), None);
        // Buffer too small.
        assert_eq!(net_unreachable(&base, tun4(), &mut out[..55]), None);
        assert!(net_unreachable(&base, tun4(), &mut out[..56]).is_some());
    }

    #[test]
    fn net_unreachable_v4_first_fragment_is_answered() {
        let off = ipv4(proto::UDP, 0x2000, &udp_payload(40)); // MF, offset 0
        let mut out = [0u8; 128];
        assert!(net_unreachable(&off, tun4(), &mut out).is_some());
    }

    #[test]
    fn net_unreachable_v6() {
        let off = ipv6(proto::UDP, &udp_payload(100));
        let mut out = [0u8; MAX_ERROR_LEN];
        let n = net_unreachable(&off, tun6(), &mut out).unwrap();
        let (t, c, rest, quote) = parse_v6_error(&out[..n]);
        assert_eq!((t, c, rest), (1, 0, [0; 4]));
        assert_eq!(quote, &off[..], "whole packet quoted when it fits");
        assert_eq!(n, 48 + off.len());
    }

    #[test]
    fn v6_quote_is_cut_to_1280() {
        let off = ipv6(proto::UDP, &udp_payload(3000));
        let mut out = [0u8; 4000];
        let n = net_unreachable(&off, tun6(), &mut out).unwrap();
        assert_eq!(n, 1280);
        let (_, _, _, quote) = parse_v6_error(&out[..n]);
        assert_eq!(quote, &off[..1232]);
        // A smaller buffer cuts the quote further.
        let n = net_unreachable(&off, tun6(), &mut out[..100]).unwrap();
        assert_eq!(n, 100);
        assert_eq!(parse_v6_error(&out[..n]).3, &off[..52]);
        assert_eq!(net_unreachable(&off, tun6(), &mut out[..47]), None);
    }

    #[test]
    fn net_unreachable_v6_suppressed() {
        let mut out = [0u8; MAX_ERROR_LEN];
        let mut none = |p: &[u8], why: &str| {
            assert_eq!(net_unreachable(p, tun6(), &mut out), None, "{why}");
        };
        for t in [1u8, 2, 3, 4, 127, 137] {
            none(
                &ipv6(proto::ICMPV6, &[t, 0, 0, 0, 0, 0, 0, 0]),
                "icmpv6 error",
            );
        }
        let base = ipv6(proto::UDP, &udp_payload(8));
        let mut p = base.clone();
        p[8..24].fill(0);
        none(&p, "unspecified source");
        let mut p = base.clone();
        p[8] = 0xff;
        none(&p, "multicast source");
        let mut p = base.clone();
        p[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        none(&p, "loopback source");
        let mut p = base.clone();
        p[24] = 0xff;
        none(&p, "multicast destination");
        none(&base[..base.len() - 1], "truncated");
        none(&base[..39], "truncated header");
        // Non-first fragment behind a hop-by-hop header.
        let mut frag = vec![44, 0, 1, 0, 0, 0, 0, 0]; // HBH, next = fragment, PadN
        frag.extend_from_slice(&[proto::UDP, 0, 0x00, 0x08, 0, 0, 0, 1]); // offset 1
        frag.extend_from_slice(&udp_payload(8));
        none(&ipv6(0, &frag), "non-first fragment");
        // Fragment header running past the packet.
        none(&ipv6(44, &[proto::UDP, 0, 0]), "truncated extension header");
        // The ICMPv6 error is found behind a destination options header.
        let mut behind = vec![proto::ICMPV6, 0, 1, 4, 0, 0, 0, 0];
        behind.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        none(&ipv6(60, &behind), "icmpv6 error behind ext header");
        assert_eq!(net_unreachable(&base, tun4(), &mut out), None);
        // Echo request and a first fragment are answered.
        let echo = ipv6(proto::ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]);
        assert!(net_unreachable(&echo, tun6(), &mut out).is_some());
        let mut first = vec![proto::UDP, 0, 0x00, 0x01, 0, 0, 0, 1]; // offset 0, M
        first.extend_from_slice(&udp_payload(8));
        assert!(net_unreachable(&ipv6(44, &first), tun6(), &mut out).is_some());
    }

    #[test]
    fn v6_extension_chain_limit() {
        // n empty Destination Options headers, then UDP: answered up to
        // ipv6::MAX_EXT_HEADERS, suppressed beyond (the walk gives up).
        let chain = |n: usize| {
            let mut b = Vec::new();
            for i in 0..n {
                let next = if i + 1 == n { proto::UDP } else { 60 };
                b.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            b.extend_from_slice(&udp_payload(8));
            ipv6(60, &b)
        };
        let mut out = [0u8; MAX_ERROR_LEN];
        assert_eq!(ipv6::MAX_EXT_HEADERS, 16);
        for n in [1, 8, 9, 16] {
            assert!(
                net_unreachable(&chain(n), tun6(), &mut out).is_some(),
                "{n} headers"
            );
        }
        assert_eq!(net_unreachable(&chain(17), tun6(), &mut out), None);
    }

    #[test]
    fn v6_extension_header_past_the_packet_is_suppressed() {
        // A Destination Options header claiming 16 bytes in a 12-byte payload.
        let mut b = vec![proto::UDP, 1, 1, 4, 0, 0, 0, 0];
        b.extend_from_slice(&[0; 4]);
        let mut out = [0u8; MAX_ERROR_LEN];
        assert_eq!(net_unreachable(&ipv6(60, &b), tun6(), &mut out), None);
    }

    #[test]
    fn frag_needed_v4() {
        let off = ipv4(proto::TCP, 0x4000, &[0x11; 1460]);
        let mut out = [0u8; MAX_ERROR_LEN_V4];
        let n = frag_needed(&off, TUN4, 1450, &mut out).unwrap();
        let (t, c, rest, quote) = parse_v4_error(&out[..n]);
        assert_eq!((t, c), (3, 4));
        assert_eq!(rest, [0, 0, 0x05, 0xaa]);
        assert_eq!(quote, &off[..28]);
        // Without DF: no error.
        let no_df = ipv4(proto::TCP, 0, &[0x11; 1460]);
        assert_eq!(frag_needed(&no_df, TUN4, 1450, &mut out), None);
        // Not IPv4.
        let v6 = ipv6(proto::TCP, &[0; 20]);
        assert_eq!(frag_needed(&v6, TUN4, 1450, &mut out), None);
        // About an ICMP error: none.
        let err = ipv4(proto::ICMP, 0x4000, &[3, 4, 0, 0, 0, 0, 5, 0xaa]);
        assert_eq!(frag_needed(&err, TUN4, 1450, &mut out), None);
    }

    #[test]
    fn packet_too_big_v6() {
        let off = ipv6(proto::TCP, &[0x22; 1500]);
        let mut out = [0u8; MAX_ERROR_LEN];
        let n = packet_too_big(&off, TUN6, 1430, &mut out).unwrap();
        assert_eq!(n, 1280);
        let (t, c, rest, quote) = parse_v6_error(&out[..n]);
        assert_eq!((t, c), (2, 0));
        assert_eq!(u32::from_be_bytes(rest), 1430);
        assert_eq!(quote, &off[..1232]);
        // Multicast destination: still sent (RFC 4443 §2.4 (e.3)).
        let mut mc = off.clone();
        mc[24] = 0xff;
        assert!(packet_too_big(&mc, TUN6, 1430, &mut out).is_some());
        // But not about an ICMPv6 error, nor for IPv4.
        let err = ipv6(proto::ICMPV6, &[2, 0, 0, 0, 0, 0, 5, 0]);
        assert_eq!(packet_too_big(&err, TUN6, 1430, &mut out), None);
        let v4 = ipv4(proto::TCP, 0x4000, &[0; 20]);
        assert_eq!(packet_too_big(&v4, TUN6, 1430, &mut out), None);
    }

    #[test]
    fn exceeds_path_decides() {
        let big_df = ipv4(proto::TCP, 0x4000, &[0; 1481]); // 1501 bytes
        let big = ipv4(proto::TCP, 0, &[0; 1481]);
        let fits = ipv4(proto::TCP, 0x4000, &[0; 1480]); // 1500
        assert_eq!(
            exceeds_path(&big_df, 1500),
            Some(PathError::FragNeeded { mtu: 1500 })
        );
        assert_eq!(exceeds_path(&big, 1500), None);
        assert_eq!(exceeds_path(&fits, 1500), None);
        assert_eq!(
            exceeds_path(&big_df, 100_000),
            None,
            "a huge MTU is never exceeded"
        );
        let v6 = ipv6(proto::UDP, &[0; 1411]); // 1451
        assert_eq!(
            exceeds_path(&v6, 1450),
            Some(PathError::PacketTooBig { mtu: 1450 })
        );
        assert_eq!(exceeds_path(&v6, 1451), None);
        assert_eq!(exceeds_path(&[], 1500), None);
        assert_eq!(exceeds_path(&[0x45; 10], 1), None);
        assert_eq!(exceeds_path(&[0x70; 60], 1), None);
    }

    #[test]
    fn max_lengths() {
        assert_eq!(MAX_ERROR_LEN_V4, 96);
        const { assert!(MAX_ERROR_LEN >= MAX_ERROR_LEN_V4) };
        // The largest IPv4 quote: 60-byte header + 8 bytes.
        let mut off = vec![0x4f, 0, 0, 0, 0, 1, 0x40, 0, 64, proto::UDP, 0, 0];
        off.extend_from_slice(&[10, 244, 1, 5, 10, 244, 9, 7]);
        off.extend_from_slice(&[1; 40]); // NOP options
        off.extend_from_slice(&udp_payload(100));
        let total = off.len() as u16;
        off[2..4].copy_from_slice(&total.to_be_bytes());
        let mut out = [0u8; MAX_ERROR_LEN_V4];
        let n = net_unreachable(&off, tun4(), &mut out).unwrap();
        assert_eq!(n, MAX_ERROR_LEN_V4);
        assert_eq!(parse_v4_error(&out[..n]).3, &off[..68]);
    }

    #[test]
    fn no_panic_on_garbage() {
        let mut out = [0u8; MAX_ERROR_LEN];
        for len in 0..120 {
            for fill in [0x00u8, 0x45, 0x4f, 0x60, 0xff, 0x2c] {
                let mut p = vec![fill; len];
                if let Some(b) = p.first_mut() {
                    *b = (*b & 0x0f) | if fill & 1 == 0 { 0x60 } else { 0x40 };
                }
                let _ = net_unreachable(&p, tun4(), &mut out);
                let _ = net_unreachable(&p, tun6(), &mut out);
                let _ = frag_needed(&p, TUN4, 1400, &mut out);
                let _ = packet_too_big(&p, TUN6, 1400, &mut out);
                let _ = exceeds_path(&p, 40);
            }
        }
    }
}
