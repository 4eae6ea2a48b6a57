//! RouteTable lookups: 10 000 /24 routes (flannel's shape: one prefix length), IPv4 and IPv6,
//! hits and misses, and the underlay ("known peer") lookup.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::route::{parse_peers, Backend, Local, RouteTable};

const ROUTES: u32 = 10_000;

fn table() -> RouteTable {
    let mut text = String::new();
    for i in 0..ROUTES {
        let net = Ipv4Addr::from(0x0a00_0000 | (i << 8));
        let net6 =
            Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0000_0000u128 | (u128::from(i) << 64));
        let host = Ipv4Addr::from(0xc0a8_0000 | (i + 2));
        text.push_str(&format!(
            "{{\"subnet\": \"{net}/24\", \"public_ip\": \"{host}\", \"backend\": \"udp\"}}\n\
             {{\"subnet\": \"{net6}/64\", \"public_ip\": \"{host}\", \"backend\": \"udp\"}}\n"
        ));
    }
    let local = Local {
        backend: Backend::Udp,
        port: 8285,
        vni: 1,
        vtep_mac: [2, 0, 0, 0, 0, 1],
        public_ip: "192.168.0.1".parse().unwrap(),
        subnets: vec![],
    };
    let (entries, errors) = parse_peers(&text, "bench");
    assert!(errors.is_empty());
    RouteTable::build(&local, &entries, None, "bench").0
}

fn lookups(c: &mut Criterion) {
    let t = table();
    let dsts_v4: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | ((i * 9 % ROUTES) << 8) | 7)))
        .collect();
    let dsts_v6: Vec<IpAddr> = (0..1024u32)
        .map(|i| {
            IpAddr::V6(Ipv6Addr::from(
                0xfd00u128 << 112 | u128::from(i * 9 % ROUTES) << 64 | 7,
            ))
        })
        .collect();
    let misses: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 | i << 8)))
        .collect();
    let underlays: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | (i * 9 % ROUTES + 2))))
        .collect();
    let mut g = c.benchmark_group("route_lookup_10k");
    g.throughput(Throughput::Elements(1024));
    for (name, dsts) in [
        ("v4_hit", &dsts_v4),
        ("v6_hit", &dsts_v6),
        ("v4_miss", &misses),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for d in dsts {
                    black_box(t.lookup(black_box(*d)));
                }
            })
        });
    }
    g.bench_function("underlay_hit", |b| {
        b.iter(|| {
            for u in &underlays {
                black_box(t.peer_by_underlay(black_box(*u)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
