//! A sequence of decapsulated inner packets from the network, coalesced for the TUN. Input
//! layout: 1 config byte (bit 0: UDP coalescing, bit 1: checksums offloaded, bit 2: a 1500-byte
//! MTU instead of none), then packets as [2-byte big-endian length][bytes]...
//!
//! Invariants: no panic; every packet pushed comes out exactly once: a pass-through packet byte
//! for byte behind an all-zero virtio header, or behind the `NEEDS_CSUM` header of its partial
//! checksum (`partial_checksum::find`); a partial TCP packet over the MTU byte for byte behind a
//! GSO header cutting it at the MTU; a merged one as a super-packet whose virtio header parses
//! and which `gso::split` cuts back into exactly the pushed segments (IPv4 IDs counted up from
//! the first, checksums recomputed: those fields are compared loosely); no merged super-packet
//! exceeds 65535 bytes or 64 segments.
#![no_main]

use encap::gro::{Coalescer, Config, MAX_IP_LEN, MAX_SEGMENTS};
use encap::gso::split;
use encap::partial_checksum;
use encap::wire::virtio::{GsoType, VirtioNetHdr, VirtioNetRepr, HEADER_LEN as VH};
use encap::ChecksumCaps;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&config, mut rest)) = data.split_first() else {
        return;
    };
    let offloaded = config & 2 != 0;
    let mtu = if config & 4 != 0 { 1500 } else { MAX_IP_LEN };
    let mut gro = Coalescer::new(Config {
        max_packets: 16,
        arena_len: 0, // the minimum: one 64 KiB super-packet, so Full is exercised
        udp: config & 1 != 0,
        checksum: if offloaded {
            ChecksumCaps::Offloaded
        } else {
            ChecksumCaps::Complete
        },
        mtu,
    });
    let mut pushed: Vec<&[u8]> = Vec::new();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let n = len.min(rest.len() - 2);
        let packet = &rest[2..2 + n];
        rest = &rest[2 + n..];
        if gro.push(packet).is_err() {
            drain(&mut gro, &mut pushed, offloaded, mtu);
            if gro.push(packet).is_err() {
                assert!(
                    packet.len() > MAX_IP_LEN,
                    "an empty coalescer refused a packet"
                );
                continue;
            }
        }
        pushed.push(packet);
    }
    drain(&mut gro, &mut pushed, offloaded, mtu);
});

/// Finishes, checks every output against the pushed packets, and clears.
fn drain(gro: &mut Coalescer, pushed: &mut Vec<&[u8]>, offloaded: bool, mtu: usize) {
    gro.finish();
    let mut remaining: Vec<Option<&[u8]>> = pushed.drain(..).map(Some).collect();
    let mut out = vec![0u8; 2 * (MAX_IP_LEN + VH) + 64 * 128];
    for p in gro.packets() {
        let vnet = VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&p[..VH]))
            .expect("our own virtio header parses");
        let ip = &p[VH..];
        let partial = partial_checksum::find(ip);
        if vnet.gso == GsoType::None {
            let want = partial.map_or([0u8; VH], |part| part.virtio().to_bytes());
            assert_eq!(
                p[..VH],
                want,
                "a pass-through packet has a zero header, or NEEDS_CSUM when partial"
            );
            take(&mut remaining, ip, |a, b| a == b);
            continue;
        }
        assert!(ip.len() <= MAX_IP_LEN);
        let as_pushed = remaining.iter().any(|r| *r == Some(ip));
        if ip.len() > mtu && as_pushed && partial.is_some_and(|p| p.is_tcp()) {
            // A same-host sender's TCP super-packet: as it came, cut at the MTU.
            let part = partial.expect("checked");
            assert!(part.is_tcp());
            let hdr_len = vnet.derive_hdr_len(ip).expect("its headers");
            assert_eq!(usize::from(vnet.gso_size), mtu - hdr_len);
            assert!(vnet.needs_csum && vnet.csum_start == part.csum_start);
            take(&mut remaining, ip, |a, b| a == b);
            continue;
        }
        let segs = split(&vnet, ip, &[], MAX_IP_LEN, &mut out)
            .expect("a super-packet we built splits again");
        assert!(
            segs.count >= 2 && segs.count <= MAX_SEGMENTS,
            "{} segments",
            segs.count
        );
        for i in 0..segs.count {
            let seg = &out[segs.segment(i)];
            take(&mut remaining, seg, |a, b| same_segment(a, b, offloaded));
        }
    }
    assert!(
        remaining.iter().all(Option::is_none),
        "a pushed packet did not come out"
    );
    gro.clear();
}

/// Marks the first remaining pushed packet equal to `got` as seen; panics if there is none.
fn take(remaining: &mut [Option<&[u8]>], got: &[u8], eq: impl Fn(&[u8], &[u8]) -> bool) {
    let slot = remaining
        .iter_mut()
        .find(|s| s.is_some_and(|p| eq(p, got)))
        .unwrap_or_else(|| panic!("output {got:02x?} matches no pushed packet"));
    *slot = None;
}

/// Whether a re-split segment is the pushed one: equal except the IPv4 ID and header checksum
/// (renumbered and recomputed) and the L4 checksum (recomputed; with offloaded checksums the
/// pushed one was never verified, and a partial one never holds the full value).
fn same_segment(pushed: &[u8], seg: &[u8], offloaded: bool) -> bool {
    if pushed.len() != seg.len() {
        return false;
    }
    let mut a = pushed.to_vec();
    let mut b = seg.to_vec();
    let l4 = if a[0] >> 4 == 4 {
        for x in [&mut a, &mut b] {
            x[4..6].fill(0);
            x[10..12].fill(0);
        }
        usize::from(a[0] & 0x0f) * 4
    } else {
        40
    };
    let protocol = if a[0] >> 4 == 4 { a[9] } else { a[6] };
    let at = l4 + if protocol == 6 { 16 } else { 6 };
    // A UDP datagram sent without a checksum (0) may merge; the kernel then computes one. A
    // partial checksum (a same-host sender's) may merge too; the re-split completes it.
    let no_udp_checksum = protocol == 17 && a[at..at + 2] == [0, 0];
    let partial = partial_checksum::find(pushed).is_some();
    for x in [&mut a, &mut b] {
        let c = u16::from_be_bytes([x[at], x[at + 1]]);
        // 0 and 0xffff are the same ones'-complement zero (and UDP's computed 0 is sent as
        // 0xffff); anything goes when checksums were not verified.
        if offloaded || no_udp_checksum || partial || c == 0xffff {
            x[at..at + 2].fill(0);
        }
    }
    a == b
}
