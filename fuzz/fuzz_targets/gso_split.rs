//! A TUN read: a virtio_net_hdr and the packet behind it, both from the kernel (trusted only
//! as far as checked). Input layout: 2 bytes max inner length, 1 byte encap choice, 10 bytes
//! virtio header, the packet.
//!
//! Invariants: no panic; `required_len` and `split` agree; every segment carries the encap
//! header, fits the path, has consistent IP lengths and verifying checksums (GSO segments:
//! IPv4 header and L4; NEEDS_CSUM without GSO: L4); the payload is conserved byte for byte; and
//! coalescing the segments again conserves the payload too.
#![no_main]

use encap::checksum::{pseudo_header_v4, pseudo_header_v6, verifies, Sum};
use encap::gro::{Coalescer, Config};
use encap::gso::{required_len, split};
use encap::wire::virtio::{GsoType, VirtioNetHdr, VirtioNetRepr, HEADER_LEN as VH};
use libfuzzer_sys::fuzz_target;

const ENCAP: [u8; 22] = [0x5a; 22];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 + VH {
        return;
    }
    let max_inner = 68 + usize::from(u16::from_le_bytes([data[0], data[1]])) % 9000;
    let encap = if data[2] & 1 == 0 {
        &ENCAP[..0]
    } else {
        &ENCAP[..]
    };
    let Ok(vnet) = VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&data[3..3 + VH])) else {
        return;
    };
    let packet = &data[3 + VH..];

    let needed = required_len(&vnet, packet, encap.len(), max_inner);
    let mut out = vec![0u8; *needed.as_ref().unwrap_or(&0)];
    let result = split(&vnet, packet, encap, max_inner, &mut out);
    let segs = match (needed, result) {
        (Ok(n), Ok(segs)) => {
            assert_eq!(segs.len, n, "required_len and split disagree");
            segs
        }
        (Err(e1), Err(e2)) => {
            assert_eq!(e1, e2);
            return;
        }
        (a, b) => panic!("required_len {a:?} but split {b:?}"),
    };
    assert!(segs.count >= 1);
    assert_eq!(
        segs.len,
        (segs.count - 1) * segs.stride + segs.segment(segs.count - 1).len()
    );

    let mut payload = Vec::new();
    let mut gro = Coalescer::new(Config {
        udp: true,
        ..Config::default()
    });
    let mut pushed_payload = 0usize;
    for i in 0..segs.count {
        let seg = &out[segs.segment(i)];
        assert_eq!(&seg[..encap.len()], encap);
        let inner = &seg[encap.len()..];
        assert!(inner.len() <= max_inner, "segment exceeds the path");
        let (l4, ip_len) = ip_layout(inner);
        assert_eq!(
            ip_len,
            inner.len(),
            "IP length field disagrees with the segment"
        );
        if vnet.gso != GsoType::None {
            if inner[0] >> 4 == 4 {
                assert!(
                    verifies(Sum::ZERO.bytes(&inner[..l4])),
                    "IPv4 header checksum"
                );
            }
            assert!(l4_verifies(inner, l4), "L4 checksum of segment {i}");
            let hdr = vnet
                .derive_hdr_len(packet)
                .expect("split accepted the packet");
            let seg_hdr = l4 + (hdr - usize::from(vnet.csum_start));
            payload.extend_from_slice(&inner[seg_hdr..]);
        } else {
            assert_eq!(segs.count, 1);
            if vnet.needs_csum {
                // The field held a partial sum f (the pseudo-header, from the kernel); the
                // completed checksum makes the region plus f sum to ones'-complement zero, and
                // nothing else changed.
                let start = usize::from(vnet.csum_start);
                let at = start + usize::from(vnet.csum_offset);
                let f = u16::from_be_bytes([packet[at], packet[at + 1]]);
                assert!(
                    verifies(Sum::ZERO.bytes(&inner[start..]).word(f)),
                    "completed checksum"
                );
                assert_eq!(inner[..at], packet[..at]);
                assert_eq!(inner[at + 2..], packet[at + 2..inner.len()]);
            } else {
                // Copied byte for byte, cut to the IP length.
                assert_eq!(inner, &packet[..inner.len()]);
            }
        }
        if gro.push(inner).is_ok() {
            pushed_payload += l4_payload_len(inner);
        }
    }
    if vnet.gso != GsoType::None {
        let hdr = vnet
            .derive_hdr_len(packet)
            .expect("split accepted the packet");
        let (_, ip_len) = ip_layout(packet);
        assert_eq!(payload, &packet[hdr..ip_len], "payload not conserved");
    }
    gro.finish();
    let coalesced: usize = gro.packets().map(|p| l4_payload_len(&p[VH..])).sum();
    assert_eq!(
        coalesced, pushed_payload,
        "coalescing lost or invented payload"
    );
});

/// (L4 offset, IP length) of a packet whose IP header the splitter accepted.
fn ip_layout(p: &[u8]) -> (usize, usize) {
    if p[0] >> 4 == 6 {
        (40, 40 + usize::from(u16::from_be_bytes([p[4], p[5]])))
    } else {
        (
            usize::from(p[0] & 0x0f) * 4,
            usize::from(u16::from_be_bytes([p[2], p[3]])),
        )
    }
}

fn l4_verifies(p: &[u8], l4: usize) -> bool {
    let len = (p.len() - l4) as u32;
    let pseudo = if p[0] >> 4 == 6 {
        let src: [u8; 16] = p[8..24].try_into().expect("16 bytes");
        let dst: [u8; 16] = p[24..40].try_into().expect("16 bytes");
        pseudo_header_v6(&src, &dst, p[6], len)
    } else {
        let src: [u8; 4] = p[12..16].try_into().expect("4 bytes");
        let dst: [u8; 4] = p[16..20].try_into().expect("4 bytes");
        pseudo_header_v4(src, dst, p[9], len)
    };
    verifies(pseudo.bytes(&p[l4..]))
}

/// The TCP or UDP payload length of a packet that came out of the splitter (or of anything
/// else, 0 when it has no such payload).
fn l4_payload_len(p: &[u8]) -> usize {
    if p.len() < 20 {
        return 0;
    }
    let (l4, ip_len, protocol) = if p[0] >> 4 == 6 {
        (40, 40 + usize::from(u16::from_be_bytes([p[4], p[5]])), p[6])
    } else {
        (
            usize::from(p[0] & 0x0f) * 4,
            usize::from(u16::from_be_bytes([p[2], p[3]])),
            p[9],
        )
    };
    let ip_len = ip_len.min(p.len());
    let hdr = match protocol {
        6 if ip_len >= l4 + 20 => l4 + usize::from(p[l4 + 12] >> 4) * 4,
        17 => l4 + 8,
        _ => return 0,
    };
    ip_len.saturating_sub(hdr)
}
