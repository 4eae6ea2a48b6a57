//! A packet from the TUN that weft answers with an ICMP error (no route, or too big for the
//! path). Invariants: no panic; every error built is a well-formed IP packet of the length
//! returned, with verifying checksums, addressed back to the offending packet's source; and no
//! ICMP error is ever sent in reply to an ICMP error (our own output is never answered).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use encap::checksum::{pseudo_header_v6, verifies, Sum};
use encap::icmp::{frag_needed, net_unreachable, packet_too_big, MAX_ERROR_LEN};
use libfuzzer_sys::fuzz_target;

const TUN_V4: [u8; 4] = [10, 244, 0, 1];
const TUN_V6: [u8; 16] = [0xfd, 0, 0, 0x10, 0x2, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fuzz_target!(|packet: &[u8]| {
    let mut out = [0u8; MAX_ERROR_LEN];
    let v4 = IpAddr::V4(Ipv4Addr::from(TUN_V4));
    let v6 = IpAddr::V6(Ipv6Addr::from(TUN_V6));
    for built in [
        net_unreachable(packet, v4, &mut out).map(|n| out[..n].to_vec()),
        net_unreachable(packet, v6, &mut out).map(|n| out[..n].to_vec()),
        frag_needed(packet, TUN_V4, 1400, &mut out).map(|n| out[..n].to_vec()),
        packet_too_big(packet, TUN_V6, 1400, &mut out).map(|n| out[..n].to_vec()),
    ]
    .into_iter()
    .flatten()
    {
        check_error(packet, &built);
        let mut again = [0u8; MAX_ERROR_LEN];
        assert_eq!(
            net_unreachable(&built, v4, &mut again),
            None,
            "answered an ICMP error"
        );
        assert_eq!(
            net_unreachable(&built, v6, &mut again),
            None,
            "answered an ICMP error"
        );
    }
});

fn check_error(offending: &[u8], e: &[u8]) {
    match e[0] >> 4 {
        4 => {
            let ihl = usize::from(e[0] & 0x0f) * 4;
            assert_eq!(ihl, 20);
            assert_eq!(usize::from(u16::from_be_bytes([e[2], e[3]])), e.len());
            assert!(verifies(Sum::ZERO.bytes(&e[..20])), "IPv4 header checksum");
            assert_eq!(e[9], 1, "protocol ICMP");
            assert!(verifies(Sum::ZERO.bytes(&e[20..])), "ICMP checksum");
            assert_eq!(&e[16..20], &offending[12..16], "sent back to the source");
        }
        6 => {
            assert_eq!(usize::from(u16::from_be_bytes([e[4], e[5]])) + 40, e.len());
            assert_eq!(e[6], 58, "next header ICMPv6");
            let src: [u8; 16] = e[8..24].try_into().expect("16 bytes");
            let dst: [u8; 16] = e[24..40].try_into().expect("16 bytes");
            let pseudo = pseudo_header_v6(&src, &dst, 58, (e.len() - 40) as u32);
            assert!(verifies(pseudo.bytes(&e[40..])), "ICMPv6 checksum");
            assert_eq!(&e[24..40], &offending[8..24], "sent back to the source");
            assert!(e.len() <= 1280, "RFC 4443: an error fits the minimum MTU");
        }
        v => panic!("built an error with IP version {v}"),
    }
}
