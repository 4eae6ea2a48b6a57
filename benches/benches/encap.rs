//! Criterion benches of encap's hot paths, one core, bytes of inner packet per second.
//!
//! Groups are named by configuration: `gso_split/vxlan_v4_46seg` is a 64 KiB TCPv4
//! super-packet split into 46 segments with the 22-byte VXLAN + Ethernet header.
//! Run: `cargo bench -p benches --bench encap`.

use std::hint::black_box;

use benches::{tcp_segments, tcp_super_packet, TCP_HEADER_LEN, UDP_INNER_MTU, VXLAN_INNER_MTU};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use encap::backend::{udp_decap, VxlanDecap, VxlanEncap};
use encap::checksum::checksum;
use encap::gro::{Coalescer, Config};
use encap::gso;
use encap::ChecksumCaps;

const LOCAL_MAC: [u8; 6] = [0x0e, 0x7f, 0x1a, 0, 0, 0x0a];
const PEER_MAC: [u8; 6] = [0x0e, 0x7f, 0x1a, 0, 0, 0x0b];

fn bench_checksum(c: &mut Criterion) {
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("64KiB", |b| b.iter(|| checksum(black_box(&data))));
    g.finish();
}

fn bench_split(c: &mut Criterion) {
    let mut g = c.benchmark_group("gso_split");
    let vxlan = VxlanEncap {
        vni: 1,
        local_mac: LOCAL_MAC,
        peer_mac: PEER_MAC,
    };
    for (name, v6, inner_mtu, encap_hdr) in [
        ("vxlan_v4", false, VXLAN_INNER_MTU, vxlan.header(4).to_vec()),
        ("vxlan_v6", true, VXLAN_INNER_MTU, vxlan.header(6).to_vec()),
        ("udp_v4", false, UDP_INNER_MTU, Vec::new()),
    ] {
        let mss = inner_mtu - TCP_HEADER_LEN - if v6 { 40 } else { 20 };
        // As many segments as fit a 64 KiB super-packet.
        let segments = (65535 - 100) / mss;
        let (vnet, sp) = tcp_super_packet(v6, mss, segments);
        let mut out = vec![0u8; gso::max_len(sp.len(), encap_hdr.len(), segments)];
        g.throughput(Throughput::Bytes(sp.len() as u64));
        g.bench_function(format!("{name}_{segments}seg"), |b| {
            b.iter(|| {
                gso::split(&vnet, black_box(&sp), &encap_hdr, inner_mtu, &mut out).expect("splits")
            })
        });
    }
    g.finish();
}

fn bench_coalesce(c: &mut Criterion) {
    let mut g = c.benchmark_group("gro_coalesce");
    // 44 segments of 1448 bytes: what one UDP_GRO receive of a 1500-MTU stream carries.
    let segments = tcp_segments(false, 1448, 44);
    let bytes: usize = segments.iter().map(Vec::len).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    for (name, caps) in [
        ("tcp_v4_44seg_verified", ChecksumCaps::Complete),
        ("tcp_v4_44seg_trusted", ChecksumCaps::Offloaded),
    ] {
        let mut gro = Coalescer::new(Config {
            checksum: caps,
            ..Config::default()
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                gro.clear();
                for s in &segments {
                    gro.push(black_box(s)).expect("room for 44 segments");
                }
                gro.finish();
                assert_eq!(gro.len(), 1);
            })
        });
    }
    g.finish();
}

fn bench_decap(c: &mut Criterion) {
    let mut g = c.benchmark_group("decap");
    let inner = &tcp_segments(false, VXLAN_INNER_MTU - 20 - TCP_HEADER_LEN, 1)[0];
    let encap = VxlanEncap {
        vni: 1,
        local_mac: PEER_MAC,
        peer_mac: LOCAL_MAC,
    };
    let mut datagram = vec![0u8; inner.len() + 22];
    encap.encap(inner, &mut datagram).expect("encapsulates");
    let decap = VxlanDecap {
        vni: 1,
        local_mac: LOCAL_MAC,
    };
    g.throughput(Throughput::Bytes(datagram.len() as u64));
    g.bench_function("vxlan_1450", |b| {
        b.iter(|| {
            decap
                .decap(black_box(&datagram))
                .expect("decapsulates")
                .inner
                .len()
        })
    });
    g.bench_function("udp_1450", |b| {
        b.iter(|| udp_decap(black_box(inner)).expect("decapsulates").len())
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_checksum,
    bench_split,
    bench_coalesce,
    bench_decap
);
criterion_main!(benches);
