//! Route tables of any size in flannel's shape, shared by the route benches: one /24 (IPv4)
//! and one /64 (IPv6) per peer, each peer with its own underlay address.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use engine::model::{Backend, Cidr};
use engine::route::{Local, Origin, PeerEntry, RouteTable};

/// This node: udp backend, 192.168.0.1, owns nothing the peers have.
pub fn local() -> Local {
    Local {
        backend: Backend::Udp,
        port: 8285,
        vni: 1,
        vtep_mac: [2, 0, 0, 0, 0, 1],
        public_ip: "192.168.0.1".parse().unwrap(),
        public_ip6: None,
        subnets: vec![],
    }
}

/// Peer `i`'s IPv4 subnet: `10.0.0.0 + i * 256` /24 (past 10.255.255.0 it goes on into 11/8).
pub fn net_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + (i << 8))
}

/// Peer `i`'s IPv6 subnet: `fd00:0:0:<i>::/64`.
pub fn net_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(0xfd00u128 << 112 | u128::from(i) << 64)
}

/// Peer `i`'s underlay address (100.64.0.0/10 and up).
pub fn underlay(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x6440_0001 + i))
}

/// `n` IPv4 routes (`v6 = false`) or `n` IPv6 routes (`v6 = true`), one peer each.
pub fn entries(n: u32, v6: bool) -> Vec<PeerEntry> {
    (0..n)
        .map(|i| PeerEntry {
            origin: Origin::Line(i as usize + 1),
            subnet: if v6 {
                Cidr::new(IpAddr::V6(net_v6(i)), 64).unwrap()
            } else {
                Cidr::new(IpAddr::V4(net_v4(i)), 24).unwrap()
            },
            public_ip: underlay(i),
            backend: Backend::Udp,
            vtep_mac: None,
            port: None,
            direct: false,
        })
        .collect()
}

/// The table of `entries(n, v6)`.
pub fn table(n: u32, v6: bool) -> RouteTable {
    let (t, errors) = RouteTable::build(&local(), &entries(n, v6), None, "bench");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(t.len(), n as usize);
    t
}

/// 1024 destinations inside the table's routes (a host in every 9th peer's subnet, wrapping).
pub fn hits(n: u32, v6: bool) -> Vec<IpAddr> {
    (0..1024u32)
        .map(|k| {
            let i = k.wrapping_mul(9) % n;
            if v6 {
                IpAddr::V6(Ipv6Addr::from(u128::from(net_v6(i)) | 7))
            } else {
                IpAddr::V4(Ipv4Addr::from(u32::from(net_v4(i)) | 7))
            }
        })
        .collect()
}
