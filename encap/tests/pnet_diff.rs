//! Differential tests of `encap::wire` against `pnet_packet` 0.35, an independent parser.
//!
//! Three directions:
//! - captured packets (fixed vectors): every field we parse, pnet parses to the same value;
//! - arbitrary bytes shaped to pass our `check_len`: the same field-by-field comparison, and our
//!   `verify_checksum` agrees with pnet's checksum functions;
//! - arbitrary `Repr`s and payloads emitted by us: pnet reads back the fields we wrote and its
//!   checksum functions compute the checksums we wrote.
//!
//! Known differences, asserted as such: pnet's UDP checksum function does not turn a computed 0
//! into 0xffff (RFC 768), and pnet's IPv6 fragment offset keeps the reserved bit 2 (its mask is
//! `!0x3`, RFC 8200 says the low three bits are Res, Res, M).

use std::net::{Ipv4Addr, Ipv6Addr};

use encap::checksum::{pseudo_header_v4, pseudo_header_v6};
use encap::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use encap::wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use encap::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use encap::wire::ipv6::{ext, Ipv6Packet, Ipv6Repr};
use encap::wire::tcp::{TcpOptions, TcpPacket, TcpRepr};
use encap::wire::udp::{UdpPacket, UdpRepr};
use encap::wire::{destination, proto, source};
use encap::ChecksumCaps;
use pnet_packet::Packet;
use proptest::prelude::*;

// ------------------------------------------------------------------------------------------
// Comparators: our view vs pnet's, field by field.

/// Two checksum values that are the same ones'-complement number (0 and 0xffff are both zero).
fn same_checksum(a: u16, b: u16) -> bool {
    a == b || (a ^ b == 0xffff && (a == 0 || b == 0))
}

fn cmp_ipv4(buf: &[u8]) -> Ipv4Packet<&[u8]> {
    let ours = Ipv4Packet::new_checked(buf).expect("our check_len");
    let theirs = pnet_packet::ipv4::Ipv4Packet::new(buf).expect("pnet parses");
    assert_eq!(ours.version(), theirs.get_version());
    assert_eq!(
        ours.header_len(),
        usize::from(theirs.get_header_length()) * 4
    );
    assert_eq!(ours.dscp(), theirs.get_dscp());
    assert_eq!(ours.ecn(), theirs.get_ecn());
    assert_eq!(ours.total_len(), theirs.get_total_length());
    assert_eq!(ours.ident(), theirs.get_identification());
    let flags = theirs.get_flags();
    assert_eq!(
        ours.dont_frag(),
        flags & pnet_packet::ipv4::Ipv4Flags::DontFragment != 0
    );
    assert_eq!(
        ours.more_frags(),
        flags & pnet_packet::ipv4::Ipv4Flags::MoreFragments != 0
    );
    assert_eq!(ours.frag_offset(), theirs.get_fragment_offset() * 8);
    assert_eq!(ours.ttl(), theirs.get_ttl());
    assert_eq!(ours.protocol(), theirs.get_next_level_protocol().0);
    assert_eq!(ours.checksum(), theirs.get_checksum());
    assert_eq!(ours.src_addr(), theirs.get_source());
    assert_eq!(ours.dst_addr(), theirs.get_destination());
    assert_eq!(ours.options(), theirs.get_options_raw());
    assert_eq!(ours.payload(), theirs.payload());
    let computed = pnet_packet::ipv4::checksum(&theirs);
    assert_eq!(
        ours.verify_checksum(),
        same_checksum(computed, theirs.get_checksum()),
        "ipv4 checksum verdicts differ (pnet computes {computed:#06x})"
    );
    assert_eq!(destination(buf), Some(ours.dst_addr().into()));
    assert_eq!(source(buf), Some(ours.src_addr().into()));
    ours
}

fn cmp_ipv6(buf: &[u8]) -> Ipv6Packet<&[u8]> {
    let ours = Ipv6Packet::new_checked(buf).expect("our check_len");
    let theirs = pnet_packet::ipv6::Ipv6Packet::new(buf).expect("pnet parses");
    assert_eq!(ours.version(), theirs.get_version());
    assert_eq!(ours.traffic_class(), theirs.get_traffic_class());
    assert_eq!(ours.flow_label(), theirs.get_flow_label());
    assert_eq!(ours.payload_len(), theirs.get_payload_length());
    assert_eq!(ours.next_header(), theirs.get_next_header().0);
    assert_eq!(ours.hop_limit(), theirs.get_hop_limit());
    assert_eq!(ours.src_addr(), theirs.get_source());
    assert_eq!(ours.dst_addr(), theirs.get_destination());
    assert_eq!(ours.payload(), theirs.payload());
    assert_eq!(destination(buf), Some(ours.dst_addr().into()));
    assert_eq!(source(buf), Some(ours.src_addr().into()));
    assert_eq!(ours.upper_layer().ok(), reference_walk(buf));
    ours
}

/// The extension-header walk done with pnet's `ExtensionPacket` / `FragmentPacket` reads.
fn reference_walk(buf: &[u8]) -> Option<encap::wire::ipv6::UpperLayer> {
    use pnet_packet::ipv6::{ExtensionPacket, FragmentPacket};
    let ip = pnet_packet::ipv6::Ipv6Packet::new(buf)?;
    let end = 40 + usize::from(ip.get_payload_length());
    let mut next = ip.get_next_header().0;
    let mut at = 40;
    let mut fragment = None;
    for walked in 0..=encap::wire::ipv6::MAX_EXT_HEADERS {
        let rest = buf.get(at..end)?;
        let len = match next {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DST_OPTIONS => {
                let e = ExtensionPacket::new(rest)?;
                usize::from(e.get_hdr_ext_len()) * 8 + 8
            }
            ext::AH => (usize::from(*rest.get(1)?) + 2) * 4,
            ext::FRAGMENT => 8,
            _ => {
                return Some(encap::wire::ipv6::UpperLayer {
                    protocol: next,
                    offset: at,
                    fragment,
                })
            }
        };
        if at + len > end || walked == encap::wire::ipv6::MAX_EXT_HEADERS {
            return None;
        }
        if next == ext::FRAGMENT {
            let f = FragmentPacket::new(rest)?;
            let frag = encap::wire::ipv6::Fragment {
                // pnet's mask keeps reserved bit 2; RFC 8200 puts the offset in the top 13.
                offset: f.get_fragment_offset() & 0xfff8,
                more: !f.is_last_fragment(),
                ident: f.get_id(),
            };
            fragment = Some(frag);
            if frag.offset != 0 {
                return Some(encap::wire::ipv6::UpperLayer {
                    protocol: f.get_next_header().0,
                    offset: at + 8,
                    fragment,
                });
            }
            next = f.get_next_header().0;
        } else {
            next = *rest.first()?;
        }
        at += len;
    }
    None
}

/// Where the L4 header is checksummed from: IPv4 or IPv6 addresses.
#[derive(Clone, Copy, Debug)]
enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Addrs {
    fn pseudo(self, protocol: u8, len: usize) -> encap::checksum::Sum {
        match self {
            Addrs::V4(s, d) => pseudo_header_v4(s.octets(), d.octets(), protocol, len as u32),
            Addrs::V6(s, d) => pseudo_header_v6(&s.octets(), &d.octets(), protocol, len as u32),
        }
    }
}

fn cmp_udp(seg: &[u8], addrs: Addrs) {
    let ours = UdpPacket::new_checked(seg).expect("our check_len");
    // pnet's UDP payload is the rest of the buffer: give it exactly the datagram.
    let dgram = &seg[..usize::from(ours.len())];
    let theirs = pnet_packet::udp::UdpPacket::new(dgram).expect("pnet parses");
    assert_eq!(ours.src_port(), theirs.get_source());
    assert_eq!(ours.dst_port(), theirs.get_destination());
    assert_eq!(ours.len(), theirs.get_length());
    assert_eq!(ours.checksum(), theirs.get_checksum());
    assert_eq!(ours.payload(), theirs.payload());
    let computed = match addrs {
        Addrs::V4(s, d) => pnet_packet::udp::ipv4_checksum(&theirs, &s, &d),
        Addrs::V6(s, d) => pnet_packet::udp::ipv6_checksum(&theirs, &s, &d),
    };
    let pseudo = addrs.pseudo(proto::UDP, dgram.len());
    assert_eq!(
        ours.verify_checksum(pseudo),
        same_checksum(computed, ours.checksum()),
        "udp checksum verdicts differ (pnet computes {computed:#06x})"
    );
}

fn cmp_tcp(seg: &[u8], addrs: Addrs) {
    let ours = TcpPacket::new_checked(seg).expect("our check_len");
    let theirs = pnet_packet::tcp::TcpPacket::new(seg).expect("pnet parses");
    assert_eq!(ours.src_port(), theirs.get_source());
    assert_eq!(ours.dst_port(), theirs.get_destination());
    assert_eq!(ours.seq(), theirs.get_sequence());
    assert_eq!(ours.ack_num(), theirs.get_acknowledgement());
    assert_eq!(ours.header_len(), usize::from(theirs.get_data_offset()) * 4);
    assert_eq!(ours.flags(), theirs.get_flags());
    assert_eq!(ours.window(), theirs.get_window());
    assert_eq!(ours.checksum(), theirs.get_checksum());
    assert_eq!(ours.urgent(), theirs.get_urgent_ptr());
    assert_eq!(ours.options(), theirs.get_options_raw());
    assert_eq!(ours.payload(), theirs.payload());
    use pnet_packet::tcp::TcpFlags as F;
    assert_eq!(
        [
            ours.fin(),
            ours.syn(),
            ours.rst(),
            ours.psh(),
            ours.ack(),
            ours.urg(),
            ours.ece(),
            ours.cwr()
        ],
        [
            F::FIN,
            F::SYN,
            F::RST,
            F::PSH,
            F::ACK,
            F::URG,
            F::ECE,
            F::CWR
        ]
        .map(|f| theirs.get_flags() & f != 0)
    );
    let computed = match addrs {
        Addrs::V4(s, d) => pnet_packet::tcp::ipv4_checksum(&theirs, &s, &d),
        Addrs::V6(s, d) => pnet_packet::tcp::ipv6_checksum(&theirs, &s, &d),
    };
    let pseudo = addrs.pseudo(proto::TCP, seg.len());
    assert_eq!(
        ours.verify_checksum(pseudo),
        same_checksum(computed, ours.checksum()),
        "tcp checksum verdicts differ (pnet computes {computed:#06x})"
    );
}

fn cmp_icmpv4(msg: &[u8]) {
    let ours = Icmpv4Packet::new_checked(msg).expect("our check_len");
    let theirs = pnet_packet::icmp::IcmpPacket::new(msg).expect("pnet parses");
    assert_eq!(ours.msg_type(), theirs.get_icmp_type().0);
    assert_eq!(ours.msg_code(), theirs.get_icmp_code().0);
    assert_eq!(ours.checksum(), theirs.get_checksum());
    // pnet counts the rest-of-header as payload.
    assert_eq!(ours.rest_of_header(), theirs.payload()[..4]);
    assert_eq!(ours.payload(), &theirs.payload()[4..]);
    let echo = pnet_packet::icmp::echo_request::EchoRequestPacket::new(msg).expect("echo view");
    assert_eq!(ours.echo_ident(), echo.get_identifier());
    assert_eq!(ours.echo_seq_no(), echo.get_sequence_number());
    let unreach =
        pnet_packet::icmp::destination_unreachable::DestinationUnreachablePacket::new(msg)
            .expect("unreachable view");
    assert_eq!(ours.next_hop_mtu(), unreach.get_next_hop_mtu());
    let computed = pnet_packet::icmp::checksum(&theirs);
    assert_eq!(
        ours.verify_checksum(),
        same_checksum(computed, ours.checksum()),
        "icmpv4 checksum verdicts differ (pnet computes {computed:#06x})"
    );
}

fn cmp_icmpv6(msg: &[u8], src: Ipv6Addr, dst: Ipv6Addr) {
    let ours = Icmpv6Packet::new_checked(msg).expect("our check_len");
    let theirs = pnet_packet::icmpv6::Icmpv6Packet::new(msg).expect("pnet parses");
    assert_eq!(ours.msg_type(), theirs.get_icmpv6_type().0);
    assert_eq!(ours.msg_code(), theirs.get_icmpv6_code().0);
    assert_eq!(ours.checksum(), theirs.get_checksum());
    assert_eq!(ours.rest_of_header(), theirs.payload()[..4]);
    assert_eq!(ours.payload(), &theirs.payload()[4..]);
    let echo = pnet_packet::icmpv6::echo_request::EchoRequestPacket::new(msg).expect("echo view");
    assert_eq!(ours.echo_ident(), echo.get_identifier());
    assert_eq!(ours.echo_seq_no(), echo.get_sequence_number());
    let computed = pnet_packet::icmpv6::checksum(&theirs, &src, &dst);
    assert_eq!(
        ours.verify_checksum(&src.octets(), &dst.octets()),
        same_checksum(computed, ours.checksum()),
        "icmpv6 checksum verdicts differ (pnet computes {computed:#06x})"
    );
}

/// Compares a whole IP packet: the IP header, then the upper layer if this is a first (or no)
/// fragment and the upper layer is one we know.
fn cmp_packet(buf: &[u8]) {
    match buf.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = cmp_ipv4(buf);
            if ip.is_fragment() {
                return;
            }
            let addrs = Addrs::V4(ip.src_addr(), ip.dst_addr());
            match ip.protocol() {
                proto::UDP => cmp_udp(ip.payload(), addrs),
                proto::TCP => cmp_tcp(ip.payload(), addrs),
                proto::ICMP => cmp_icmpv4(ip.payload()),
                _ => {}
            }
        }
        Some(6) => {
            let ip = cmp_ipv6(buf);
            let ul = ip.upper_layer().expect("walk");
            if ul.fragment.is_some() {
                return;
            }
            let l4 = &buf[ul.offset..ip.total_len()];
            let addrs = Addrs::V6(ip.src_addr(), ip.dst_addr());
            match ul.protocol {
                proto::UDP => cmp_udp(l4, addrs),
                proto::TCP => cmp_tcp(l4, addrs),
                proto::ICMPV6 => cmp_icmpv6(l4, ip.src_addr(), ip.dst_addr()),
                _ => {}
            }
        }
        _ => panic!("not IP"),
    }
}

// ------------------------------------------------------------------------------------------
// Captured packets (tcpdump in two network namespaces; see the unit tests for each).

const CAPTURES: &[&[u8]] = &[
    // ICMP echo request, 10.77.0.1 -> 10.77.0.2.
    &[
        0x45, 0x00, 0x00, 0x2c, 0x25, 0x22, 0x40, 0x00, 0x40, 0x01, 0x01, 0x13, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x08, 0x00, 0xff, 0x9b, 0x1e, 0x97, 0x00, 0x01, 0x7d, 0xa7,
        0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x4e, 0xb9, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00,
    ],
    // UDP "hello weft" to port 9999.
    &[
        0x45, 0x00, 0x00, 0x26, 0x61, 0x0b, 0x40, 0x00, 0x40, 0x11, 0xc5, 0x1f, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0xeb, 0x63, 0x27, 0x0f, 0x00, 0x12, 0xb6, 0xee, 0x68, 0x65,
        0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x65, 0x66, 0x74,
    ],
    // TCP SYN with MSS, SACK permitted, timestamps, window scale.
    &[
        0x45, 0x00, 0x00, 0x3c, 0x9c, 0x76, 0x40, 0x00, 0x40, 0x06, 0x89, 0xa9, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x81, 0xd2, 0x1f, 0x90, 0x26, 0x67, 0x71, 0xe0, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x36, 0xc4, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0xda, 0xb1, 0xed, 0x4f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ],
    // TCP PSH|ACK "ping".
    &[
        0x45, 0x00, 0x00, 0x38, 0x9c, 0x78, 0x40, 0x00, 0x40, 0x06, 0x89, 0xab, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x81, 0xd2, 0x1f, 0x90, 0x26, 0x67, 0x71, 0xe1, 0x9a, 0xf2,
        0xb4, 0x4b, 0x80, 0x18, 0x00, 0x3f, 0x23, 0x2f, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0xda,
        0xb1, 0xed, 0x4f, 0xef, 0x43, 0x1f, 0xa7, 0x70, 0x69, 0x6e, 0x67,
    ],
    // ICMP net unreachable from the router 10.77.0.2, quoting the echo request.
    &[
        0x45, 0xc0, 0x00, 0x70, 0x1e, 0xf0, 0x00, 0x00, 0x40, 0x01, 0x46, 0x41, 0x0a, 0x4d, 0x00,
        0x02, 0x0a, 0x4d, 0x00, 0x01, 0x03, 0x00, 0xfc, 0xff, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00,
        0x00, 0x54, 0x5f, 0x3c, 0x40, 0x00, 0x40, 0x01, 0xc6, 0xe7, 0x0a, 0x4d, 0x00, 0x01, 0x0a,
        0x37, 0x00, 0x01, 0x08, 0x00, 0x7f, 0x49, 0x1e, 0xc8, 0x00, 0x01, 0x7e, 0xa7, 0x01, 0x6b,
        0x00, 0x00, 0x00, 0x00, 0x1b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12,
        0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21,
        0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30,
        0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ],
    // The last IPv4 fragment of a 1608-byte ping: offset 1480.
    &[
        0x45, 0x00, 0x00, 0x94, 0x25, 0x41, 0x00, 0xb9, 0x40, 0x01, 0x3f, 0xd3, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9,
        0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
        0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
        0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
        0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14,
        0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23,
        0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32,
        0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    ],
    // ICMPv6 echo request, fd00:77::1 -> fd00:77::2.
    &[
        0x60, 0x0d, 0x7c, 0xbc, 0x00, 0x18, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0xa4, 0x42, 0x1e,
        0x98, 0x00, 0x01, 0x7d, 0xa7, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x36, 0xcc, 0x0c, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ],
    // UDP over IPv6 "hello weft6".
    &[
        0x60, 0x07, 0x66, 0xe0, 0x00, 0x13, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xd6, 0x58, 0x27, 0x0f, 0x00,
        0x13, 0xaf, 0xa1, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x65, 0x66, 0x74, 0x36,
    ],
    // MLDv2 report: Hop-by-Hop (Router Alert) then ICMPv6.
    &[
        0x60, 0x00, 0x00, 0x00, 0x00, 0x38, 0x00, 0x01, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x70, 0x83, 0x83, 0xff, 0xfe, 0x6e, 0x2f, 0x2b, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0x3a, 0x00, 0x05, 0x02, 0x00,
        0x00, 0x01, 0x00, 0x8f, 0x00, 0x1d, 0x38, 0x00, 0x00, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00,
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x6e, 0x2f,
        0x2b, 0x04, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0xff, 0x00, 0x00, 0x01,
    ],
];

#[test]
fn captures_parse_the_same() {
    for (i, cap) in CAPTURES.iter().enumerate() {
        eprintln!("capture {i}");
        cmp_packet(cap);
    }
}

#[test]
fn captured_mld_walk_matches_pnet_extension_packet() {
    use pnet_packet::PacketSize;
    let mld = CAPTURES[8];
    let ip = Ipv6Packet::new_checked(mld).expect("valid");
    let ul = ip.upper_layer().expect("walk");
    let hbh = pnet_packet::ipv6::ExtensionPacket::new(&mld[40..]).expect("pnet ext");
    assert_eq!(hbh.get_next_header().0, ul.protocol);
    assert_eq!(40 + hbh.packet_size(), ul.offset);
    // The captured checksum verifies with both.
    cmp_icmpv6(&mld[ul.offset..], ip.src_addr(), ip.dst_addr());
    let icmp = Icmpv6Packet::new_checked(&mld[ul.offset..]).expect("icmp");
    assert!(icmp.verify_checksum(&ip.src(), &ip.dst()));
}

// ------------------------------------------------------------------------------------------
// Arbitrary bytes that pass our check_len.

/// An IPv4 packet of random bytes with version 4, an IHL that fits and a total length between
/// the header and the buffer.
fn arb_ipv4_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), 20..160),
        any::<u8>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(mut b, ihl_seed, len_seed, fix_checksum)| {
            let max_ihl = (b.len() / 4).min(15);
            let ihl = 5 + usize::from(ihl_seed) % (max_ihl - 4);
            b[0] = 0x40 | ihl as u8;
            let header_len = ihl * 4;
            let total = header_len + usize::from(len_seed) % (b.len() - header_len + 1);
            b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            if fix_checksum {
                Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
            }
            b
        })
}

/// An IPv6 packet of random bytes with version 6 and a payload length that fits; the next
/// header is drawn from the extension headers and common protocols so the walk gets exercised.
fn arb_ipv6_bytes() -> impl Strategy<Value = Vec<u8>> {
    let nh = prop::sample::select(vec![
        ext::HOP_BY_HOP,
        ext::ROUTING,
        ext::FRAGMENT,
        ext::DST_OPTIONS,
        ext::AH,
        ext::ESP,
        ext::NO_NEXT_HEADER,
        proto::TCP,
        proto::UDP,
        proto::ICMPV6,
    ]);
    (
        prop::collection::vec(any::<u8>(), 40..200),
        any::<u16>(),
        prop::collection::vec(nh, 4),
    )
        .prop_map(|(mut b, len_seed, nhs)| {
            b[0] = 0x60 | (b[0] & 0x0f);
            let plen = usize::from(len_seed) % (b.len() - 40 + 1);
            b[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
            b[6] = nhs[0];
            // Seed the next-header bytes of likely extension headers at 40 and 48.
            for (at, nh) in [(40, nhs[1]), (48, nhs[2]), (56, nhs[3])] {
                if let Some(x) = b.get_mut(at) {
                    *x = nh;
                }
            }
            if let Some(x) = b.get_mut(41) {
                *x %= 3;
            }
            b
        })
}

/// A TCP segment of random bytes with a data offset that fits.
fn arb_tcp_bytes() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(any::<u8>(), 20..120), any::<u8>()).prop_map(|(mut b, off_seed)| {
        let max_off = (b.len() / 4).min(15);
        let off = 5 + usize::from(off_seed) % (max_off - 4);
        b[12] = ((off as u8) << 4) | (b[12] & 0x0f);
        b
    })
}

/// A UDP datagram of random bytes with a length field that fits.
fn arb_udp_bytes() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(any::<u8>(), 8..120), any::<u16>()).prop_map(|(mut b, len_seed)| {
        let len = 8 + usize::from(len_seed) % (b.len() - 8 + 1);
        b[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        b
    })
}

fn arb_v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn arb_v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn arb_addrs() -> impl Strategy<Value = Addrs> {
    prop_oneof![
        (arb_v4(), arb_v4()).prop_map(|(s, d)| Addrs::V4(s, d)),
        (arb_v6(), arb_v6()).prop_map(|(s, d)| Addrs::V6(s, d)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_ipv4_headers_parse_the_same(b in arb_ipv4_bytes()) {
        cmp_ipv4(&b);
    }

    #[test]
    fn random_ipv6_headers_parse_the_same(b in arb_ipv6_bytes()) {
        cmp_ipv6(&b);
    }

    #[test]
    fn random_tcp_headers_parse_the_same(b in arb_tcp_bytes(), addrs in arb_addrs()) {
        cmp_tcp(&b, addrs);
    }

    #[test]
    fn random_udp_headers_parse_the_same(b in arb_udp_bytes(), addrs in arb_addrs()) {
        cmp_udp(&b, addrs);
    }

    #[test]
    fn random_icmp_messages_parse_the_same(
        b in prop::collection::vec(any::<u8>(), 8..100),
        src in arb_v6(),
        dst in arb_v6(),
    ) {
        cmp_icmpv4(&b);
        cmp_icmpv6(&b, src, dst);
    }

    /// Nothing panics on arbitrary bytes, whatever `check_len` says.
    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = destination(&b);
        let _ = source(&b);
        if let Ok(p) = Ipv4Packet::new_checked(&b[..]) {
            let _ = (p.payload(), p.options(), p.verify_checksum(), p.pseudo_header());
            let _ = Ipv4Repr::parse(&p, ChecksumCaps::Complete);
        }
        if let Ok(p) = Ipv6Packet::new_checked(&b[..]) {
            let _ = (p.payload(), p.upper_layer());
        }
        let pseudo = pseudo_header_v4([1, 2, 3, 4], [5, 6, 7, 8], 6, b.len() as u32);
        if let Ok(p) = TcpPacket::new_checked(&b[..]) {
            let _ = (p.payload(), p.options(), TcpRepr::parse(&p, pseudo, ChecksumCaps::Complete));
        }
        if let Ok(p) = UdpPacket::new_checked(&b[..]) {
            let _ = (p.payload(), UdpRepr::parse(&p, pseudo, ChecksumCaps::Complete));
        }
        if let Ok(p) = Icmpv4Packet::new_checked(&b[..]) {
            let _ = (p.payload(), Icmpv4Repr::parse(&p, ChecksumCaps::Complete));
        }
        if let Ok(p) = Icmpv6Packet::new_checked(&b[..]) {
            let _ = (p.payload(), Icmpv6Repr::parse(&p, &[0; 16], &[1; 16], ChecksumCaps::Complete));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Emitted by us, accepted by pnet.

fn arb_ipv4_repr(protocol: u8, payload_len: usize) -> impl Strategy<Value = Ipv4Repr> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(move |(src, dst, ttl, tos, ident, dont_frag)| Ipv4Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl,
            tos,
            ident,
            dont_frag,
        })
}

fn arb_ipv6_repr(next_header: u8, payload_len: usize) -> impl Strategy<Value = Ipv6Repr> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
    )
        .prop_map(
            move |(src, dst, hop_limit, traffic_class, flow_label)| Ipv6Repr {
                src,
                dst,
                next_header,
                payload_len,
                hop_limit,
                traffic_class,
                flow_label,
            },
        )
}

fn arb_tcp_repr() -> impl Strategy<Value = TcpRepr> {
    (
        (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>()),
        (any::<u8>(), any::<u16>(), any::<u16>()),
        prop::collection::vec(any::<u8>(), 0..=40),
    )
        .prop_map(
            |((src_port, dst_port, seq, ack), (flags, window, urgent), opts)| TcpRepr {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
                urgent,
                options: TcpOptions::new(&opts).expect("<= 40 bytes"),
            },
        )
}

fn arb_icmpv4_repr() -> impl Strategy<Value = Icmpv4Repr> {
    prop_oneof![
        (any::<u16>(), any::<u16>())
            .prop_map(|(ident, seq_no)| Icmpv4Repr::EchoRequest { ident, seq_no }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(ident, seq_no)| Icmpv4Repr::EchoReply { ident, seq_no }),
        (any::<u8>(), any::<u16>())
            .prop_map(|(code, next_hop_mtu)| Icmpv4Repr::DstUnreachable { code, next_hop_mtu }),
        any::<u8>().prop_map(|code| Icmpv4Repr::TimeExceeded { code }),
        (any::<u8>(), any::<u8>(), any::<[u8; 4]>()).prop_map(|(msg_type, code, rest)| {
            Icmpv4Repr::Other {
                msg_type,
                code,
                rest,
            }
        }),
    ]
}

fn arb_icmpv6_repr() -> impl Strategy<Value = Icmpv6Repr> {
    prop_oneof![
        any::<u8>().prop_map(|code| Icmpv6Repr::DstUnreachable { code }),
        any::<u32>().prop_map(|mtu| Icmpv6Repr::PacketTooBig { mtu }),
        any::<u8>().prop_map(|code| Icmpv6Repr::TimeExceeded { code }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(ident, seq_no)| Icmpv6Repr::EchoRequest { ident, seq_no }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(ident, seq_no)| Icmpv6Repr::EchoReply { ident, seq_no }),
        (any::<u8>(), any::<u8>(), any::<[u8; 4]>()).prop_map(|(msg_type, code, rest)| {
            Icmpv6Repr::Other {
                msg_type,
                code,
                rest,
            }
        }),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

/// Emits `ip` then the L4 bytes made by `l4` into a fresh buffer.
fn emit_v4(ip: &Ipv4Repr, l4: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut buf = vec![0xa5u8; ip.buffer_len()];
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut p, ChecksumCaps::Complete);
    l4(p.payload_mut());
    buf
}

fn emit_v6(ip: &Ipv6Repr, l4: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut buf = vec![0x5au8; ip.buffer_len()];
    let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut p);
    l4(p.payload_mut());
    buf
}

/// pnet computes the checksum we wrote (UDP: modulo RFC 768's 0 -> 0xffff).
fn assert_pnet_checksums(buf: &[u8]) {
    match buf[0] >> 4 {
        4 => {
            let ip = pnet_packet::ipv4::Ipv4Packet::new(buf).expect("pnet ipv4");
            assert_eq!(pnet_packet::ipv4::checksum(&ip), ip.get_checksum());
            let (s, d) = (ip.get_source(), ip.get_destination());
            let l4 = ip.payload();
            match ip.get_next_level_protocol().0 {
                proto::UDP => {
                    let u = pnet_packet::udp::UdpPacket::new(l4).expect("pnet udp");
                    let c = pnet_packet::udp::ipv4_checksum(&u, &s, &d);
                    assert_eq!(if c == 0 { 0xffff } else { c }, u.get_checksum());
                }
                proto::TCP => {
                    let t = pnet_packet::tcp::TcpPacket::new(l4).expect("pnet tcp");
                    assert_eq!(
                        pnet_packet::tcp::ipv4_checksum(&t, &s, &d),
                        t.get_checksum()
                    );
                }
                proto::ICMP => {
                    let i = pnet_packet::icmp::IcmpPacket::new(l4).expect("pnet icmp");
                    assert_eq!(pnet_packet::icmp::checksum(&i), i.get_checksum());
                }
                other => panic!("protocol {other}"),
            }
        }
        _ => {
            let ip = pnet_packet::ipv6::Ipv6Packet::new(buf).expect("pnet ipv6");
            let (s, d) = (ip.get_source(), ip.get_destination());
            let l4 = ip.payload();
            match ip.get_next_header().0 {
                proto::UDP => {
                    let u = pnet_packet::udp::UdpPacket::new(l4).expect("pnet udp");
                    let c = pnet_packet::udp::ipv6_checksum(&u, &s, &d);
                    assert_eq!(if c == 0 { 0xffff } else { c }, u.get_checksum());
                }
                proto::TCP => {
                    let t = pnet_packet::tcp::TcpPacket::new(l4).expect("pnet tcp");
                    assert_eq!(
                        pnet_packet::tcp::ipv6_checksum(&t, &s, &d),
                        t.get_checksum()
                    );
                }
                proto::ICMPV6 => {
                    let i = pnet_packet::icmpv6::Icmpv6Packet::new(l4).expect("pnet icmpv6");
                    assert_eq!(pnet_packet::icmpv6::checksum(&i, &s, &d), i.get_checksum());
                }
                other => panic!("next header {other}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn emitted_udp_is_accepted(
        ports in any::<(u16, u16)>(),
        data in payload(),
        v4 in arb_ipv4_repr(proto::UDP, 0),
        v6 in arb_ipv6_repr(proto::UDP, 0),
    ) {
        let udp = UdpRepr { src_port: ports.0, dst_port: ports.1 };
        let l4_len = udp.buffer_len(data.len());
        let v4 = Ipv4Repr { payload_len: l4_len, ..v4 };
        let v6 = Ipv6Repr { payload_len: l4_len, ..v6 };
        let bufs = [
            emit_v4(&v4, |b| {
                udp.emit(&mut UdpPacket::new_unchecked(b), v4.pseudo_header(), data.len(),
                    |p| p.copy_from_slice(&data), ChecksumCaps::Complete);
            }),
            emit_v6(&v6, |b| {
                udp.emit(&mut UdpPacket::new_unchecked(b), v6.pseudo_header(), data.len(),
                    |p| p.copy_from_slice(&data), ChecksumCaps::Complete);
            }),
        ];
        for buf in &bufs {
            assert_pnet_checksums(buf);
            cmp_packet(buf);
            let (src_port, dst_port) = {
                let p = pnet_packet::udp::UdpPacket::new(&buf[buf.len() - l4_len..]).expect("udp");
                prop_assert_eq!(p.payload(), &data[..]);
                (p.get_source(), p.get_destination())
            };
            prop_assert_eq!((src_port, dst_port), ports);
        }
        let ip = Ipv4Packet::new_checked(&bufs[0][..]).expect("v4");
        prop_assert_eq!(Ipv4Repr::parse(&ip, ChecksumCaps::Complete), Ok(v4));
        let p = UdpPacket::new_checked(ip.payload()).expect("udp");
        prop_assert_eq!(UdpRepr::parse(&p, ip.pseudo_header(), ChecksumCaps::Complete), Ok(udp));
        let ip6 = Ipv6Packet::new_checked(&bufs[1][..]).expect("v6");
        prop_assert_eq!(Ipv6Repr::parse(&ip6), Ok(v6));
    }

    #[test]
    fn emitted_tcp_is_accepted(
        tcp in arb_tcp_repr(),
        data in payload(),
        v4 in arb_ipv4_repr(proto::TCP, 0),
        v6 in arb_ipv6_repr(proto::TCP, 0),
    ) {
        let l4_len = tcp.buffer_len(data.len());
        let v4 = Ipv4Repr { payload_len: l4_len, ..v4 };
        let v6 = Ipv6Repr { payload_len: l4_len, ..v6 };
        let bufs = [
            emit_v4(&v4, |b| {
                tcp.emit(&mut TcpPacket::new_unchecked(b), v4.pseudo_header(), data.len(),
                    |p| p.copy_from_slice(&data), ChecksumCaps::Complete);
            }),
            emit_v6(&v6, |b| {
                tcp.emit(&mut TcpPacket::new_unchecked(b), v6.pseudo_header(), data.len(),
                    |p| p.copy_from_slice(&data), ChecksumCaps::Complete);
            }),
        ];
        for buf in &bufs {
            assert_pnet_checksums(buf);
            cmp_packet(buf);
            let p = pnet_packet::tcp::TcpPacket::new(&buf[buf.len() - l4_len..]).expect("tcp");
            prop_assert_eq!(p.get_source(), tcp.src_port);
            prop_assert_eq!(p.get_destination(), tcp.dst_port);
            prop_assert_eq!(p.get_sequence(), tcp.seq);
            prop_assert_eq!(p.get_acknowledgement(), tcp.ack);
            prop_assert_eq!(p.get_flags(), tcp.flags);
            prop_assert_eq!(p.get_window(), tcp.window);
            prop_assert_eq!(p.get_urgent_ptr(), tcp.urgent);
            prop_assert_eq!(p.get_options_raw(), tcp.options.as_slice());
            prop_assert_eq!(p.payload(), &data[..]);
            let seg = TcpPacket::new_checked(&buf[buf.len() - l4_len..]).expect("ours");
            let pseudo = if buf[0] >> 4 == 4 { v4.pseudo_header() } else { v6.pseudo_header() };
            prop_assert_eq!(TcpRepr::parse(&seg, pseudo, ChecksumCaps::Complete), Ok(tcp));
        }
    }

    #[test]
    fn emitted_icmpv4_is_accepted(
        icmp in arb_icmpv4_repr(),
        data in payload(),
        v4 in arb_ipv4_repr(proto::ICMP, 0),
    ) {
        let l4_len = icmp.buffer_len(data.len());
        let v4 = Ipv4Repr { payload_len: l4_len, ..v4 };
        let buf = emit_v4(&v4, |b| {
            icmp.emit(&mut Icmpv4Packet::new_unchecked(b), data.len(),
                |p| p.copy_from_slice(&data), ChecksumCaps::Complete);
        });
        assert_pnet_checksums(&buf);
        cmp_packet(&buf);
        let p = pnet_packet::icmp::IcmpPacket::new(&buf[20..]).expect("icmp");
        let (msg_type, code, rest) = icmp.header_fields();
        prop_assert_eq!(p.get_icmp_type().0, msg_type);
        prop_assert_eq!(p.get_icmp_code().0, code);
        prop_assert_eq!(&p.payload()[..4], &rest[..]);
        prop_assert_eq!(&p.payload()[4..], &data[..]);
        let ours = Icmpv4Packet::new_checked(&buf[20..]).expect("ours");
        // Parse of what we emit may pick a more specific variant for an Other, never other bytes.
        let back = Icmpv4Repr::parse(&ours, ChecksumCaps::Complete).expect("parse");
        prop_assert_eq!(back.header_fields(), icmp.header_fields());
        if !matches!(icmp, Icmpv4Repr::Other { .. }) {
            prop_assert_eq!(back, icmp);
        }
    }

    #[test]
    fn emitted_icmpv6_is_accepted(
        icmp in arb_icmpv6_repr(),
        data in payload(),
        v6 in arb_ipv6_repr(proto::ICMPV6, 0),
    ) {
        let l4_len = icmp.buffer_len(data.len());
        let v6 = Ipv6Repr { payload_len: l4_len, ..v6 };
        let buf = emit_v6(&v6, |b| {
            icmp.emit(&mut Icmpv6Packet::new_unchecked(b), &v6.src, &v6.dst, data.len(),
                |p| p.copy_from_slice(&data), ChecksumCaps::Complete);
        });
        assert_pnet_checksums(&buf);
        cmp_packet(&buf);
        let p = pnet_packet::icmpv6::Icmpv6Packet::new(&buf[40..]).expect("icmpv6");
        let (msg_type, code, rest) = icmp.header_fields();
        prop_assert_eq!(p.get_icmpv6_type().0, msg_type);
        prop_assert_eq!(p.get_icmpv6_code().0, code);
        prop_assert_eq!(&p.payload()[..4], &rest[..]);
        let ours = Icmpv6Packet::new_checked(&buf[40..]).expect("ours");
        let back = Icmpv6Repr::parse(&ours, &v6.src, &v6.dst, ChecksumCaps::Complete).expect("parse");
        prop_assert_eq!(back.header_fields(), icmp.header_fields());
        if !matches!(icmp, Icmpv6Repr::Other { .. }) {
            prop_assert_eq!(back, icmp);
        }
    }
}

/// RFC 768: a computed UDP checksum of 0 goes on the wire as 0xffff. pnet returns the raw 0;
/// both are the same ones'-complement value and both verify.
#[test]
fn udp_zero_checksum_is_all_ones_where_pnet_says_zero() {
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let udp = UdpRepr {
        src_port: 1,
        dst_port: 2,
    };
    let pseudo = pseudo_header_v4(src.octets(), dst.octets(), proto::UDP, 10);
    let mut buf = [0u8; 10];
    udp.emit_header(&mut UdpPacket::new_unchecked(&mut buf[..]), 2);
    // A payload word that makes the whole sum 0xffff, so the checksum computes to 0.
    let partial = pseudo.bytes(&buf).fold();
    buf[8..10].copy_from_slice(&(!partial).to_be_bytes());
    let mut ours = UdpPacket::new_unchecked(&mut buf[..]);
    ours.fill_checksum(pseudo);
    assert_eq!(ours.checksum(), 0xffff);
    let theirs = pnet_packet::udp::UdpPacket::new(&buf[..]).expect("pnet udp");
    assert_eq!(pnet_packet::udp::ipv4_checksum(&theirs, &src, &dst), 0);
    cmp_udp(&buf, Addrs::V4(src, dst));
}
