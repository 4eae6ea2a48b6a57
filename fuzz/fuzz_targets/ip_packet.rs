//! An inner IP packet from the TUN or the network, parsed with every view. Invariants: no
//! panic; a packet that parses completely (IP header, then TCP / UDP / ICMP with verifying
//! checksums) is emitted again from its `Repr`s byte for byte (IPv4 without options or the
//! reserved flag, IPv6 without extension headers), and what the emitted bytes parse to equals
//! the first parse.
#![no_main]

use encap::checksum::Sum;
use encap::wire::icmpv4::{Icmpv4Packet, Icmpv4Repr};
use encap::wire::icmpv6::{Icmpv6Packet, Icmpv6Repr};
use encap::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use encap::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use encap::wire::tcp::{TcpPacket, TcpRepr};
use encap::wire::udp::{UdpPacket, UdpRepr};
use encap::wire::{destination, ip_version, proto, source};
use encap::ChecksumCaps;
use libfuzzer_sys::fuzz_target;

const C: ChecksumCaps = ChecksumCaps::Complete;
/// The reserved bit of the IPv4 flags byte.
const RESERVED_FLAG: u8 = 0x80;

fuzz_target!(|data: &[u8]| {
    // The fast-path helpers agree with the views wherever the views accept the packet.
    let version = ip_version(data);
    match version {
        Some(4) => {
            if let Ok(p) = Ipv4Packet::new_checked(data) {
                assert_eq!(destination(data), Some(p.dst_addr().into()));
                assert_eq!(source(data), Some(p.src_addr().into()));
                v4(data, &p);
            }
        }
        Some(6) => {
            if let Ok(p) = Ipv6Packet::new_checked(data) {
                assert_eq!(destination(data), Some(p.dst_addr().into()));
                assert_eq!(source(data), Some(p.src_addr().into()));
                v6(data, &p);
            }
        }
        _ => {}
    }
});

fn v4(data: &[u8], p: &Ipv4Packet<&[u8]>) {
    let Ok(ip) = Ipv4Repr::parse(p, C) else {
        return;
    };
    // The Repr carries neither options nor the reserved flag bit (RFC 791's bit 0): such a
    // packet parses, but is not emitted back byte for byte.
    if p.header_len() != 20 || data[6] & RESERVED_FLAG != 0 {
        return;
    }
    let l4 = p.payload();
    let pseudo = ip.pseudo_header();
    let mut out = vec![0u8; ip.buffer_len()];
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]), C);
    if !l4_roundtrip(ip.protocol, l4, pseudo, None, &mut out[20..]) {
        return;
    }
    let l4_check = l4_checksum_at(ip.protocol).map(|at| 20 + at);
    assert_eq!(
        normalized(&out, &[Some(10), l4_check]),
        normalized(&data[..ip.buffer_len()], &[Some(10), l4_check]),
        "ipv4 emit differs from the parsed packet"
    );
    let again = Ipv4Packet::new_checked(&out[..]).expect("emitted packet has valid lengths");
    assert_eq!(Ipv4Repr::parse(&again, C), Ok(ip));
}

fn v6(data: &[u8], p: &Ipv6Packet<&[u8]>) {
    let Ok(ip) = Ipv6Repr::parse(p) else { return };
    let Ok(upper) = p.upper_layer() else { return };
    assert!(upper.offset >= 40 && upper.offset <= 40 + usize::from(p.payload_len()));
    if upper.offset != 40 {
        return;
    }
    let src = p.src();
    let dst = p.dst();
    let l4 = &data[40..40 + usize::from(p.payload_len())];
    let pseudo = p.pseudo_header(ip.next_header, l4.len() as u32);
    let mut out = vec![0u8; ip.buffer_len()];
    ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
    if !l4_roundtrip(
        ip.next_header,
        l4,
        pseudo,
        Some((&src, &dst)),
        &mut out[40..],
    ) {
        return;
    }
    let l4_check = l4_checksum_at(ip.next_header).map(|at| 40 + at);
    assert_eq!(
        normalized(&out, &[l4_check]),
        normalized(&data[..ip.buffer_len()], &[l4_check]),
        "ipv6 emit differs from the parsed packet"
    );
    let again = Ipv6Packet::new_checked(&out[..]).expect("emitted packet has valid lengths");
    assert_eq!(Ipv6Repr::parse(&again), Ok(ip));
}

/// Where the L4 checksum field of `protocol` lies in its header.
fn l4_checksum_at(protocol: u8) -> Option<usize> {
    match protocol {
        proto::TCP => Some(16),
        proto::UDP => Some(6),
        proto::ICMP | proto::ICMPV6 => Some(2),
        _ => None,
    }
}

/// `packet` with the checksum fields at `fields` written as 0 where they hold 0xffff: both are
/// ones'-complement zero, and a received packet may carry either.
fn normalized(packet: &[u8], fields: &[Option<usize>]) -> Vec<u8> {
    let mut p = packet.to_vec();
    for at in fields.iter().flatten() {
        if p.get(*at..*at + 2) == Some(&[0xff, 0xff]) {
            p[*at..*at + 2].copy_from_slice(&[0, 0]);
        }
    }
    p
}

/// Parses `l4`; if it parses with a verifying checksum, emits it into `out` (exactly
/// `l4.len()` bytes) and returns true.
fn l4_roundtrip(
    protocol: u8,
    l4: &[u8],
    pseudo: Sum,
    v6: Option<(&[u8; 16], &[u8; 16])>,
    out: &mut [u8],
) -> bool {
    match protocol {
        proto::TCP => {
            let Ok(p) = TcpPacket::new_checked(l4) else {
                return false;
            };
            let Ok(r) = TcpRepr::parse(&p, pseudo, C) else {
                return false;
            };
            // The emitter writes reserved bits as zero.
            if l4[12] & 0x0f != 0 {
                return false;
            }
            let payload = p.payload();
            assert_eq!(r.buffer_len(payload.len()), l4.len());
            let mut o = TcpPacket::new_unchecked(&mut out[..]);
            r.emit(
                &mut o,
                pseudo,
                payload.len(),
                |b| b.copy_from_slice(payload),
                C,
            );
            let again = TcpPacket::new_checked(&out[..]).expect("emitted tcp has valid lengths");
            assert_eq!(TcpRepr::parse(&again, pseudo, C), Ok(r));
            true
        }
        proto::UDP => {
            let Ok(p) = UdpPacket::new_checked(l4) else {
                return false;
            };
            // A zero checksum ("none") is re-emitted as a computed one; skip those.
            if p.checksum() == 0 || usize::from(p.len()) != l4.len() {
                return false;
            }
            let Ok(r) = UdpRepr::parse(&p, pseudo, C) else {
                return false;
            };
            let payload = p.payload();
            let mut o = UdpPacket::new_unchecked(&mut out[..]);
            r.emit(
                &mut o,
                pseudo,
                payload.len(),
                |b| b.copy_from_slice(payload),
                C,
            );
            let again = UdpPacket::new_checked(&out[..]).expect("emitted udp has valid lengths");
            assert_eq!(UdpRepr::parse(&again, pseudo, C), Ok(r));
            true
        }
        proto::ICMP if v6.is_none() => {
            let Ok(p) = Icmpv4Packet::new_checked(l4) else {
                return false;
            };
            let Ok(r) = Icmpv4Repr::parse(&p, C) else {
                return false;
            };
            let payload = p.payload();
            let mut o = Icmpv4Packet::new_unchecked(&mut out[..]);
            r.emit(&mut o, payload.len(), |b| b.copy_from_slice(payload), C);
            let again = Icmpv4Packet::new_checked(&out[..]).expect("valid icmp lengths");
            assert_eq!(Icmpv4Repr::parse(&again, C), Ok(r));
            true
        }
        proto::ICMPV6 => {
            let Some((src, dst)) = v6 else { return false };
            let Ok(p) = Icmpv6Packet::new_checked(l4) else {
                return false;
            };
            let Ok(r) = Icmpv6Repr::parse(&p, src, dst, C) else {
                return false;
            };
            let payload = p.payload();
            let mut o = Icmpv6Packet::new_unchecked(&mut out[..]);
            r.emit(
                &mut o,
                src,
                dst,
                payload.len(),
                |b| b.copy_from_slice(payload),
                C,
            );
            let again = Icmpv6Packet::new_checked(&out[..]).expect("valid icmpv6 lengths");
            assert_eq!(Icmpv6Repr::parse(&again, src, dst, C), Ok(r));
            true
        }
        _ => false,
    }
}
