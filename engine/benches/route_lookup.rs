//! RouteTable scaling: lookups at 1, 100, 10 000 and 100 000 routes,
//! IPv4 and IPv6, hits and misses, the underlay ("known peer") lookup; and building plus
//! swapping in a table of 10 000 routes, as the control plane does for each batch of lease
//! events.
//!
//! Each lookup bench iteration does 1024 lookups (`Throughput::Elements(1024)`): the time of
//! one lookup is the iteration time / 1024, or 1 / the reported element rate. Destinations go
//! through `*black_box(&addr)`, not `black_box(addr)`: the latter stores the 17-byte `IpAddr`
//! and reloads it misaligned, a store-forwarding stall that costs more than an IPv6 lookup.
//! `cargo bench -p engine --bench route_lookup`.
#![allow(missing_docs, clippy::unwrap_used)]

mod routes;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::route::{RouteTable, Routes};

const SIZES: [u32; 4] = [1, 100, 10_000, 100_000];

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    g.throughput(Throughput::Elements(1024));
    for v6 in [false, true] {
        let family = if v6 { "v6_hit" } else { "v4_hit" };
        for n in SIZES {
            let t = routes::table(n, v6);
            let dsts = routes::hits(n, v6);
            g.bench_with_input(BenchmarkId::new(family, n), &dsts, |b, dsts| {
                b.iter(|| {
                    for d in dsts {
                        black_box(t.lookup(*black_box(d)));
                    }
                })
            });
        }
    }
    let t = routes::table(10_000, false);
    let misses: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0xac10_0000 | i << 8)))
        .collect();
    g.bench_function(BenchmarkId::new("v4_miss", 10_000), |b| {
        b.iter(|| {
            for d in &misses {
                black_box(t.lookup(*black_box(d)));
            }
        })
    });
    let underlays: Vec<IpAddr> = (0..1024u32)
        .map(|i| routes::underlay(i * 9 % 10_000))
        .collect();
    g.bench_function(BenchmarkId::new("underlay_hit", 10_000), |b| {
        b.iter(|| {
            for u in &underlays {
                black_box(t.peer_by_underlay(*black_box(u)));
            }
        })
    });
    g.finish();
}

/// Build a 10 000-route table from parsed entries (reusing the previous table's counters, as
/// weftd does) and swap it in; the old table is dropped inside the iteration, as it is when
/// the control plane holds the last reference.
fn build_and_swap(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_build_swap");
    g.sample_size(30);
    let local = routes::local();
    for n in [10_000u32, 100_000] {
        let entries = routes::entries(n, false);
        let current = Routes::from_pointee(routes::table(n, false));
        g.bench_function(BenchmarkId::new("v4", n), |b| {
            b.iter(|| {
                let previous = current.load();
                let (t, errors) = RouteTable::build(&local, &entries, Some(&previous), "bench");
                drop(previous);
                debug_assert!(errors.is_empty());
                current.store(Arc::new(t));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookups, build_and_swap);
criterion_main!(benches);
