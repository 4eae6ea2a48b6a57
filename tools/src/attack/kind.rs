//! The kinds of hostile datagram `weftctl attack` sends, how each is made, and which drop
//! reason of weftd's `stats` each must raise.
//!
//! Contract: [`Kind::ALL`] lists every kind; [`Kind::applies`] says whether it makes sense for
//! a backend (the VXLAN header kinds do not for udp); [`Kind::build`] makes one datagram
//! (the UDP payload weftd receives) from the [`Target`] description and a random source;
//! [`Kind::reasons`] are the drop reasons weftd may count for it when it comes from a known
//! peer (from a stranger every kind is `unknown_peer`). An empty list means weftd accepts the
//! datagram: the inner packet is well-formed and its source lies in the sending peer's subnet,
//! so a real peer could send it. Every inner packet that parses as UDP is addressed to
//! [`Target::sink_port`], so one that slipped through is seen by a socket there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use encap::backend::{VxlanEncap, VXLAN_HEADER_LEN};

use super::Rng;
use engine::model::{Backend, Cidr, Mac, MAX_UDP_PAYLOAD_V4};
use weft_testkit::packet::{self, NH_DEST_OPTS, NH_FRAGMENT, NH_HOP_BY_HOP, NH_NONE, NH_ROUTING};

/// What the attacker knows about the node it attacks and the peer it poses as.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target's backend.
    pub backend: Backend,
    /// The target's VNI (vxlan).
    pub vni: u32,
    /// The target's VtepMAC (vxlan): the inner destination MAC it accepts.
    pub target_mac: Mac,
    /// The VtepMAC of the peer we pose as (vxlan): the inner source MAC.
    pub own_mac: Mac,
    /// The target's IPv4 subnet (inner destinations).
    pub target_subnet: Cidr,
    /// The target's IPv6 subnet.
    pub target_subnet6: Option<Cidr>,
    /// The subnet of the peer we pose as (legitimate inner sources from that peer).
    pub own_subnet: Cidr,
    /// Its IPv6 subnet.
    pub own_subnet6: Option<Cidr>,
    /// A third node's subnet (spoofed inner sources).
    pub spoof_subnet: Cidr,
    /// Its IPv6 subnet.
    pub spoof_subnet6: Option<Cidr>,
    /// The inner UDP destination port (a sink in the target's pod).
    pub sink_port: u16,
    /// The target's TUN MTU: inner packets longer than this are `oversized`.
    pub mtu: usize,
}

macro_rules! kinds {
    ($($variant:ident => $name:literal, vxlan_only: $vx:literal, reasons: [$($r:literal),*], $doc:literal;)*) => {
        /// One kind of hostile datagram.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $(#[doc = $doc] $variant,)*
        }

        impl Kind {
            /// Every kind, in a fixed order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The kind's name in reports.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// Whether the kind is about the VXLAN header (sent to vxlan targets only).
            pub fn vxlan_only(&self) -> bool {
                match self {
                    $(Kind::$variant => $vx,)*
                }
            }

            /// The drop reasons weftd may count for this kind from a known peer; empty: the
            /// datagram is one a peer may send and weftd delivers it.
            pub fn reasons(&self) -> &'static [&'static str] {
                match self {
                    $(Kind::$variant => &[$($r),*],)*
                }
            }
        }
    };
}

kinds! {
    Empty => "empty", vxlan_only: false, reasons: ["truncated"],
        "A zero-length datagram.";
    Short => "short", vxlan_only: false, reasons: ["truncated"],
        "1 to 7 bytes: less than any header.";
    TruncatedVxlan => "truncated_vxlan", vxlan_only: true, reasons: ["truncated"],
        "The VXLAN header and part of the inner Ethernet header (8 to 21 bytes).";
    TruncatedIp => "truncated_ip", vxlan_only: false, reasons: ["truncated"],
        "A valid encapsulation and 1 to 19 bytes of an IPv4 header.";
    WrongVni => "wrong_vni", vxlan_only: true, reasons: ["wrong_vni"],
        "A valid packet under another VNI.";
    ReservedFlags => "reserved_flags", vxlan_only: true, reasons: ["reserved_flags"],
        "VXLAN flags other than I (0x08).";
    ReservedBits => "reserved_bits", vxlan_only: true, reasons: ["reserved_bits"],
        "VXLAN reserved bits set.";
    WrongDstMac => "wrong_dst_mac", vxlan_only: true, reasons: ["wrong_dst_mac"],
        "An inner destination MAC that is not the target's VtepMAC.";
    OwnSrcMac => "own_src_mac", vxlan_only: true, reasons: ["loop"],
        "An inner source MAC equal to the target's VtepMAC.";
    NotIp => "not_ip", vxlan_only: true, reasons: ["not_ip"],
        "An inner ethertype other than IPv4 / IPv6 (ARP, random).";
    BadVersion => "bad_version", vxlan_only: false, reasons: ["bad_inner"],
        "An IP version other than 4 and 6.";
    BadIhl => "bad_ihl", vxlan_only: false, reasons: ["bad_inner"],
        "An IPv4 header length below 20 bytes.";
    LengthBeyond => "length_beyond", vxlan_only: false, reasons: ["bad_inner"],
        "An IPv4 total length past the end of the datagram.";
    LengthBelowHeader => "length_below_header", vxlan_only: false, reasons: ["bad_inner"],
        "An IPv4 total length below its header length.";
    Ipv6LengthBeyond => "ipv6_length_beyond", vxlan_only: false, reasons: ["bad_inner"],
        "An IPv6 payload length past the end of the datagram.";
    Ipv4Options => "ipv4_options", vxlan_only: false, reasons: [],
        "A valid IPv4/UDP packet with IPv4 options, from the peer's subnet (a peer may send it).";
    Ipv6ExtChain => "ipv6_ext_chain", vxlan_only: false, reasons: [],
        "A valid IPv6/UDP packet behind hop-by-hop, destination options, routing and fragment headers, from the peer's subnet.";
    Ipv6NoNext => "ipv6_no_next", vxlan_only: false, reasons: [],
        "An IPv6 packet whose extension chain ends in No Next Header (59), from the peer's subnet.";
    Oversized => "oversized", vxlan_only: false, reasons: ["oversized"],
        "A valid inner packet longer than the TUN MTU (about 3000 bytes).";
    MaxDatagram => "max_datagram", vxlan_only: false, reasons: ["oversized"],
        "A valid inner packet filling a 65 507-byte datagram.";
    ToSenderSubnet => "to_sender_subnet", vxlan_only: false, reasons: ["relay"],
        "From the peer's subnet to the peer's own subnet: the target would route it back (a relay).";
    ToThirdSubnet => "to_third_subnet", vxlan_only: false, reasons: ["relay"],
        "From the peer's subnet to a third node's subnet: the target would relay it there.";
    SpoofedThird => "spoofed_third", vxlan_only: false, reasons: ["spoofed"],
        "An inner source in a third node's subnet.";
    SpoofedTarget => "spoofed_target", vxlan_only: false, reasons: ["spoofed"],
        "An inner source in the target's own subnet.";
    SpoofedOutside => "spoofed_outside", vxlan_only: false, reasons: ["spoofed"],
        "An inner source outside the overlay (198.51.100.0/24, TEST-NET-2).";
    SpoofedV6 => "spoofed_v6", vxlan_only: false, reasons: ["spoofed"],
        "An IPv6 inner source in a third node's subnet.";
    Mutated => "mutated", vxlan_only: false, reasons: ["*"],
        "A valid packet from the peer's subnet with 1 to 4 random bytes changed, or cut short, or extended.";
}

/// Marks the payload of every inner packet the attack makes.
pub const PAYLOAD_MAGIC: &[u8; 8] = b"wATTACK!";

impl Kind {
    /// Whether the kind is sent to a target of `backend`.
    pub fn applies(&self, backend: Backend) -> bool {
        backend == Backend::Vxlan || !self.vxlan_only()
    }

    /// Makes one datagram of this kind for `t`, numbered `seq`.
    pub fn build(&self, t: &Target, rng: &mut Rng, seq: u64) -> Vec<u8> {
        let payload = |extra: usize| -> Vec<u8> {
            let mut p = Vec::with_capacity(16 + extra);
            p.extend_from_slice(PAYLOAD_MAGIC);
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend((0..extra).map(|i| (i % 251) as u8));
            p
        };
        let own4 = v4(pick(t.own_subnet, rng));
        let dst4 = v4(t.target_subnet.host(1));
        let (sport, dport) = (40_000 + (seq % 1000) as u16, t.sink_port);
        let valid = |rng: &mut Rng| {
            packet::ipv4_udp(
                v4(pick(t.own_subnet, rng)),
                dst4,
                sport,
                dport,
                &payload(32),
            )
        };
        match self {
            Kind::Empty => Vec::new(),
            Kind::Short => {
                let n = 1 + rng.below(7) as usize;
                let mut d = rng.bytes(n);
                d[0] = if t.backend == Backend::Vxlan {
                    0x08
                } else {
                    0x45
                };
                d
            }
            Kind::TruncatedVxlan => {
                let mut d = wrap(t, &valid(rng), None);
                d.truncate(8 + rng.below(14) as usize);
                d
            }
            Kind::TruncatedIp => {
                let p = valid(rng);
                let cut = 1 + rng.below(19) as usize;
                wrap(t, &p[..cut], Some(4))
            }
            Kind::WrongVni => {
                let mut d = wrap(t, &valid(rng), None);
                let vni = (t.vni + 1 + rng.below(1000) as u32) & 0x00ff_ffff;
                d[4..7].copy_from_slice(&vni.to_be_bytes()[1..]);
                d
            }
            Kind::ReservedFlags => {
                let mut d = wrap(t, &valid(rng), None);
                d[0] = 0x08 | [0x01, 0x02, 0x04, 0x10, 0x20, 0x40, 0x80][rng.below(7) as usize];
                d
            }
            Kind::ReservedBits => {
                let mut d = wrap(t, &valid(rng), None);
                let at = [1usize, 2, 3, 7][rng.below(4) as usize];
                d[at] = 1 + rng.below(255) as u8;
                d
            }
            Kind::WrongDstMac => {
                let mut d = wrap(t, &valid(rng), None);
                d[8 + 5] ^= 1 + rng.below(255) as u8;
                d
            }
            Kind::OwnSrcMac => {
                let mut d = wrap(t, &valid(rng), None);
                d[8 + 6..8 + 12].copy_from_slice(&t.target_mac);
                d
            }
            Kind::NotIp => {
                let mut d = wrap(t, &valid(rng), None);
                let ethertype = match rng.below(3) {
                    0 => 0x0806,
                    1 => 0x8100,
                    _ => loop {
                        let e = rng.below(0x1_0000) as u16;
                        if e != 0x0800 && e != 0x86dd {
                            break e;
                        }
                    },
                };
                d[8 + 12..8 + 14].copy_from_slice(&ethertype.to_be_bytes());
                d
            }
            Kind::BadVersion => {
                let mut p = valid(rng);
                let version = [0u8, 1, 2, 3, 5, 7, 9, 15][rng.below(8) as usize];
                p[0] = (version << 4) | (p[0] & 0x0f);
                wrap(t, &p, Some(4))
            }
            Kind::BadIhl => {
                let mut p = valid(rng);
                p[0] = 0x40 | rng.below(5) as u8;
                wrap(t, &p, Some(4))
            }
            Kind::LengthBeyond => {
                let mut p = valid(rng);
                let claim = p.len() as u16 + 1 + rng.below(1400) as u16;
                p[2..4].copy_from_slice(&claim.to_be_bytes());
                wrap(t, &p, Some(4))
            }
            Kind::LengthBelowHeader => {
                let mut p = valid(rng);
                p[2..4].copy_from_slice(&(rng.below(20) as u16).to_be_bytes());
                wrap(t, &p, Some(4))
            }
            Kind::Ipv6LengthBeyond => {
                let mut p = v6_packet(t, rng, V6Src::Own, &[], &payload(16));
                let claim = (p.len() - 40) as u16 + 1 + rng.below(1400) as u16;
                p[4..6].copy_from_slice(&claim.to_be_bytes());
                wrap(t, &p, Some(6))
            }
            Kind::Ipv4Options => {
                // NOP, NOP, Record Route (7) with room for `slots` addresses, EOL.
                let slots = 1 + rng.below(8) as u8;
                let mut opts = vec![1, 1, 7, 3 + 4 * slots, 4];
                opts.extend(std::iter::repeat_n(0, 4 * usize::from(slots)));
                let p =
                    packet::ipv4_udp_with_options(own4, dst4, sport, dport, &opts, &payload(32));
                wrap(t, &p, Some(4))
            }
            Kind::Ipv6ExtChain => {
                let mut chain = vec![NH_HOP_BY_HOP];
                for _ in 0..rng.below(6) {
                    chain.push([NH_DEST_OPTS, NH_ROUTING, NH_FRAGMENT][rng.below(3) as usize]);
                }
                let p = v6_packet(t, rng, V6Src::Own, &chain, &payload(32));
                wrap(t, &p, Some(6))
            }
            Kind::Ipv6NoNext => {
                let mut p = v6_packet(t, rng, V6Src::Own, &[NH_DEST_OPTS], &payload(8));
                // The destination options header says nothing follows.
                p[40] = NH_NONE;
                wrap(t, &p, Some(6))
            }
            Kind::Oversized => {
                let extra = t.mtu + 1 + rng.below(2000) as usize;
                let p = packet::ipv4_udp(own4, dst4, sport, dport, &payload(extra));
                wrap(t, &p, Some(4))
            }
            Kind::MaxDatagram => {
                let wrapping = if t.backend == Backend::Vxlan {
                    VXLAN_HEADER_LEN
                } else {
                    0
                };
                let inner_payload = MAX_UDP_PAYLOAD_V4 - wrapping - 28;
                let mut body = payload(0);
                body.resize(inner_payload, 0xa5);
                let p = packet::ipv4_udp(own4, dst4, sport, dport, &body);
                wrap(t, &p, Some(4))
            }
            Kind::ToSenderSubnet => {
                let p =
                    packet::ipv4_udp(own4, v4(t.own_subnet.host(1)), sport, dport, &payload(32));
                wrap(t, &p, Some(4))
            }
            Kind::ToThirdSubnet => {
                let dst = v4(pick(t.spoof_subnet, rng));
                wrap(
                    t,
                    &packet::ipv4_udp(own4, dst, sport, dport, &payload(32)),
                    Some(4),
                )
            }
            Kind::SpoofedThird => {
                let src = v4(pick(t.spoof_subnet, rng));
                wrap(
                    t,
                    &packet::ipv4_udp(src, dst4, sport, dport, &payload(32)),
                    Some(4),
                )
            }
            Kind::SpoofedTarget => {
                let src = v4(pick(t.target_subnet, rng));
                wrap(
                    t,
                    &packet::ipv4_udp(src, dst4, sport, dport, &payload(32)),
                    Some(4),
                )
            }
            Kind::SpoofedOutside => {
                let src = Ipv4Addr::new(198, 51, 100, 1 + rng.below(254) as u8);
                wrap(
                    t,
                    &packet::ipv4_udp(src, dst4, sport, dport, &payload(32)),
                    Some(4),
                )
            }
            Kind::SpoofedV6 => {
                let p = v6_packet(t, rng, V6Src::Spoofed, &[], &payload(32));
                wrap(t, &p, Some(6))
            }
            Kind::Mutated => {
                let p = if rng.below(2) == 0 {
                    valid(rng)
                } else {
                    v6_packet(t, rng, V6Src::Own, &[], &payload(32))
                };
                let mut d = wrap(t, &p, None);
                match rng.below(4) {
                    0 => d.truncate(rng.below(d.len() as u64) as usize),
                    1 => {
                        let n = 1 + rng.below(64) as usize;
                        d.extend(rng.bytes(n));
                    }
                    _ => {
                        for _ in 0..1 + rng.below(4) {
                            let at = rng.below(d.len() as u64) as usize;
                            d[at] ^= 1 + rng.below(255) as u8;
                        }
                    }
                }
                d
            }
        }
    }
}

#[derive(Clone, Copy)]
enum V6Src {
    Own,
    Spoofed,
}

/// An IPv6/UDP packet to the target (a v4-mapped-free fallback prefix when the target has
/// no IPv6 subnet: the packet is then still well-formed and must still be dropped).
fn v6_packet(t: &Target, rng: &mut Rng, src: V6Src, chain: &[u8], payload: &[u8]) -> Vec<u8> {
    let fallback = |n: u16| -> Cidr {
        Cidr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0xdead, n, 0, 0, 0, 0, 0)),
            64,
        )
        .unwrap_or(t.target_subnet)
    };
    let dst = v6(t.target_subnet6.unwrap_or_else(|| fallback(1)).host(1));
    let src_net = match src {
        V6Src::Own => t.own_subnet6.unwrap_or_else(|| fallback(2)),
        V6Src::Spoofed => t.spoof_subnet6.unwrap_or_else(|| fallback(3)),
    };
    let src = v6(pick(src_net, rng));
    packet::ipv6_udp_with_chain(src, dst, 40_000, t.sink_port, chain, payload)
}

/// `inner` behind the target's encapsulation: nothing for udp; for vxlan a VXLAN header and
/// an Ethernet header from us to the target with the ethertype of `version` (4 or 6), or of
/// the packet's own first nibble when `None`.
fn wrap(t: &Target, inner: &[u8], version: Option<u8>) -> Vec<u8> {
    match t.backend {
        // host-gw has no encapsulation (and no weftd port to attack).
        Backend::Udp | Backend::HostGw => inner.to_vec(),
        Backend::Vxlan => {
            let version = version.unwrap_or_else(|| inner.first().map_or(4, |b| b >> 4));
            let encap = VxlanEncap {
                vni: t.vni,
                local_mac: t.own_mac,
                peer_mac: t.target_mac,
            };
            let mut d = Vec::with_capacity(VXLAN_HEADER_LEN + inner.len());
            d.extend_from_slice(&encap.header(version));
            d.extend_from_slice(inner);
            d
        }
    }
}

/// A random host address in `net` (never the network address itself).
fn pick(net: Cidr, rng: &mut Rng) -> IpAddr {
    let host_bits = match net.addr() {
        IpAddr::V4(_) => 32 - u32::from(net.prefix_len()),
        IpAddr::V6(_) => 128 - u32::from(net.prefix_len()),
    }
    .min(16);
    let hosts = (1u64 << host_bits).saturating_sub(2).max(1);
    net.host(1 + rng.below(hosts) as u32)
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use encap::backend::{udp_decap, VxlanDecap};

    fn target(backend: Backend) -> Target {
        Target {
            backend,
            vni: 1,
            target_mac: [0x0e, 0x77, 0x65, 0x66, 0x74, 2],
            own_mac: [0x0e, 0x77, 0x65, 0x66, 0x74, 3],
            target_subnet: Cidr::parse_masked("10.244.2.0/24").unwrap(),
            target_subnet6: Some(Cidr::parse_masked("fd00:10:244:2::/64").unwrap()),
            own_subnet: Cidr::parse_masked("10.244.3.0/24").unwrap(),
            own_subnet6: Some(Cidr::parse_masked("fd00:10:244:3::/64").unwrap()),
            spoof_subnet: Cidr::parse_masked("10.244.1.0/24").unwrap(),
            spoof_subnet6: Some(Cidr::parse_masked("fd00:10:244:1::/64").unwrap()),
            sink_port: 9999,
            mtu: 1450,
        }
    }

    /// What weftd's receive path decides for `d` from the peer owning `own_subnet`: the drop
    /// reason, or `None` when it delivers (the same checks as engine's `Dataplane::rx`).
    fn verdict(t: &Target, d: &[u8]) -> Option<&'static str> {
        let inner = match t.backend {
            Backend::Udp | Backend::HostGw => udp_decap(d),
            Backend::Vxlan => VxlanDecap {
                vni: t.vni,
                local_mac: t.target_mac,
            }
            .decap(d)
            .map(|x| x.inner),
        };
        let inner = match inner {
            Ok(i) => i,
            Err(e) => return Some(e.reason()),
        };
        if inner.len() > t.mtu {
            return Some("oversized");
        }
        let src = encap::wire::source(inner)?;
        let owns = t.own_subnet.contains(src) || t.own_subnet6.is_some_and(|n| n.contains(src));
        if !owns {
            return Some("spoofed");
        }
        let dst = encap::wire::destination(inner)?;
        let peer_owned = [
            Some(t.own_subnet),
            t.own_subnet6,
            Some(t.spoof_subnet),
            t.spoof_subnet6,
        ]
        .into_iter()
        .flatten()
        .any(|n| n.contains(dst));
        peer_owned.then_some("relay")
    }

    #[test]
    fn each_kind_gets_its_reason() {
        for backend in [Backend::Udp, Backend::Vxlan] {
            let t = target(backend);
            let mut rng = Rng::new(7);
            for kind in Kind::ALL.iter().filter(|k| k.applies(backend)) {
                for seq in 0..200 {
                    let d = kind.build(&t, &mut rng, seq);
                    assert!(d.len() <= MAX_UDP_PAYLOAD_V4, "{kind:?}");
                    let got = verdict(&t, &d);
                    match kind.reasons() {
                        ["*"] => {}
                        [] => assert_eq!(got, None, "{backend:?} {kind:?} {d:02x?}"),
                        reasons => assert!(
                            got.is_some_and(|r| reasons.contains(&r)),
                            "{backend:?} {kind:?}: {got:?} not in {reasons:?}: {d:02x?}"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn deterministic() {
        let t = target(Backend::Vxlan);
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for kind in Kind::ALL {
            assert_eq!(kind.build(&t, &mut a, 1), kind.build(&t, &mut b, 1));
        }
    }
}
