//! The static peers file (`--peers-file`, JSON lines), reloaded on SIGHUP: `route::parse_peers`,
//! then `RouteTable::build` on the entries it accepts, for three nodes (vxlan and udp on an
//! IPv4 underlay, vxlan on an IPv6 underlay).
//!
//! Invariants: no panic; every error names a line that exists and is neither blank nor a
//! comment, and no line is both an entry and an error; accepted entries are in line order, with
//! MACs made of hex digits and colons only; every accepted entry is either skipped as this
//! node's own (its subnet or public IP), or reported by `build` on its line, or routed: the
//! table has its subnet with its peer (underlay address and port, backend, VtepMAC), the peer
//! owns the subnet and is found by its underlay address, and the longest-prefix lookup of the
//! subnet's first and last address agrees with a brute-force search of the table's routes.
#![no_main]

use std::collections::BTreeSet;
use std::net::IpAddr;

use engine::model::{Backend, Cidr};
use engine::route::{parse_peers, Local, Origin, PeerEntry, RouteTable};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const OWN_MAC: [u8; 6] = [0x0e, 0, 0, 0, 0, 1];

fn locals() -> [Local; 4] {
    let own = |public_ip: &str, subnet: &str, backend| Local {
        backend,
        port: backend.default_port(),
        vni: 1,
        vtep_mac: OWN_MAC,
        public_ip: public_ip.parse().expect("ip"),
        public_ip6: None,
        subnets: vec![subnet.parse().expect("subnet")],
    };
    // A dual-stack underlay: peers of either family.
    let dual = Local {
        public_ip6: Some("fd00:250::1".parse().expect("ip")),
        ..own("192.168.250.1", "10.244.1.0/24", Backend::Vxlan)
    };
    [
        own("192.168.250.1", "10.244.1.0/24", Backend::Vxlan),
        own("192.168.250.1", "10.244.1.0/24", Backend::Udp),
        own("fd00:250::1", "fd00:10:244:1::/64", Backend::Vxlan),
        dual,
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let (entries, errors) = parse_peers(text, "peers");
    let mut entry_lines = BTreeSet::new();
    let mut last = 0;
    for e in &entries {
        let n = line(&e.origin);
        assert!(n > last, "entries out of order");
        last = n;
        entry_lines.insert(n);
        let raw = lines[n - 1];
        if let Some(mac) = e.vtep_mac {
            let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(raw.trim()) else {
                panic!("accepted line {n} is not a JSON object");
            };
            let given = obj["vtep_mac"].as_str().expect("a string");
            // Go's net.ParseMAC form only: two hex digits per byte, all ':' or all '-'.
            assert_eq!(
                engine::model::format_mac(&mac),
                given.to_ascii_lowercase().replace('-', ":"),
                "MAC {given:?} accepted as {mac:02x?}"
            );
        }
    }
    for err in &errors {
        let n = line(&err.origin);
        assert!(n >= 1 && n <= lines.len(), "{err}");
        let raw = lines[n - 1].trim();
        assert!(!raw.is_empty() && !raw.starts_with('#'), "{err}");
        assert!(!entry_lines.contains(&n), "{err}");
        assert_eq!(err.source_name, "peers");
    }

    for local in locals() {
        let (table, build_errors) = RouteTable::build(&local, &entries, None, "peers");
        let reported: BTreeSet<usize> = build_errors.iter().map(|e| line(&e.origin)).collect();
        for err in &build_errors {
            assert!(
                entry_lines.contains(&line(&err.origin)),
                "{err} names no entry"
            );
        }
        let mut routed = 0;
        for e in &entries {
            let n = line(&e.origin);
            if local.subnets.contains(&e.subnet) || local.is_own(e.public_ip) {
                assert!(!reported.contains(&n), "own entry {e:?} reported");
                continue;
            }
            if reported.contains(&n) {
                continue;
            }
            routed += 1;
            check_routed(&table, &local, e);
        }
        assert_eq!(table.len(), routed, "every route is an accepted entry");
        for r in table.routes() {
            assert!(table
                .peers()
                .iter()
                .any(|p| std::sync::Arc::ptr_eq(p, &r.peer)));
        }
    }
});

/// The peers-file line an entry or error names (every one names a line).
fn line(origin: &Origin) -> usize {
    origin.line().expect("a peers-file origin is a line")
}

fn check_routed(table: &RouteTable, local: &Local, e: &PeerEntry) {
    let route = table
        .routes()
        .iter()
        .find(|r| r.subnet == e.subnet)
        .unwrap_or_else(|| panic!("{e:?} neither routed nor reported"));
    let peer = &route.peer;
    assert_eq!(peer.underlay().ip(), e.public_ip);
    assert_eq!(peer.underlay().port(), e.port.unwrap_or(local.port));
    match local.backend {
        Backend::Vxlan => {
            assert_eq!(peer.vtep_mac(), e.vtep_mac);
            assert_ne!(peer.vtep_mac(), Some(local.vtep_mac));
            assert_eq!(peer.encap_header(4).len(), 22);
        }
        Backend::Udp | Backend::HostGw => assert!(peer.encap_header(4).is_empty()),
    }
    assert!(peer.subnets().contains(&e.subnet));
    assert!(peer.owns(e.subnet.addr()));
    let by_underlay = table.peer_by_underlay(e.public_ip).expect("known underlay");
    assert!(std::sync::Arc::ptr_eq(by_underlay, peer));
    for dst in [e.subnet.addr(), last_addr(&e.subnet)] {
        let expected = table
            .routes()
            .iter()
            .filter(|r| r.subnet.contains(dst))
            .max_by_key(|r| r.subnet.prefix_len())
            .map(|r| r.subnet);
        let found = table.lookup(dst).expect("a routed subnet is found");
        let longest = expected.expect("dst is in its own subnet");
        assert!(
            found.subnets().contains(&longest),
            "lookup({dst}) gave a peer without {longest}"
        );
    }
}

fn last_addr(c: &Cidr) -> IpAddr {
    match c.addr() {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(c.prefix_len())).unwrap_or(0);
            IpAddr::V4((u32::from(a) | host).into())
        }
        IpAddr::V6(a) => {
            let host = u128::MAX
                .checked_shr(u32::from(c.prefix_len()))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) | host).into())
        }
    }
}
