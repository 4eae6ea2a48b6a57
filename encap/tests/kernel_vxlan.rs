//! Byte-for-byte compatibility with the Linux kernel's VXLAN device as flanneld sets it up.
//!
//! The fixture `tests/fixtures/kernel_vxlan.txt` holds the UDP payloads of every datagram two
//! kernel `flannel.1` devices (VNI 1, port 8472, in network namespaces `wfb-a` and `wfb-b`)
//! exchanged during IPv4 pings, IPv6 pings and a short HTTP exchange over TCP; see
//! `tests/fixtures/README.md` and `capture.sh`. Every captured frame must decapsulate to an inner
//! packet whose checksums verify, and re-encapsulating that inner packet must give back the
//! kernel's bytes exactly. Each kind of rejection is checked on a mutated captured frame.

#![allow(clippy::unwrap_used)]

use encap::backend::{source_port, DecapError, Mac, VxlanDecap, VxlanEncap};
use encap::backend::{SOURCE_PORT_MAX, SOURCE_PORT_MIN, VXLAN_HEADER_LEN};
use encap::checksum::{pseudo_header_v4, pseudo_header_v6, verifies, Sum};

const FIXTURE: &str = include_str!("fixtures/kernel_vxlan.txt");
const MAC_A: Mac = [0x0e, 0x7f, 0x1a, 0x00, 0x00, 0x0a];
const MAC_B: Mac = [0x0e, 0x7f, 0x1a, 0x00, 0x00, 0x0b];
const VNI: u32 = 1;

struct Captured {
    /// The sender's and the receiver's VtepMAC.
    from: Mac,
    to: Mac,
    /// The outer UDP source port the kernel chose.
    sport: u16,
    /// The UDP payload: the VXLAN frame.
    frame: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn captured() -> Vec<Captured> {
    let frames: Vec<Captured> = FIXTURE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let (from, to) = match it.next().unwrap() {
                "a2b" => (MAC_A, MAC_B),
                "b2a" => (MAC_B, MAC_A),
                other => panic!("direction {other}"),
            };
            let sport = it.next().unwrap().parse().unwrap();
            let frame = unhex(it.next().unwrap());
            Captured {
                from,
                to,
                sport,
                frame,
            }
        })
        .collect();
    assert!(frames.len() >= 20, "fixture holds {} frames", frames.len());
    frames
}

/// Checks the inner packet's checksums: the IPv4 header always; ICMP and ICMPv6 always (the
/// kernel computes them in software); TCP is left out (it may be a partial, offloaded checksum
/// on a veth). Returns the transport protocol.
fn verify_inner(inner: &[u8]) -> u8 {
    match inner[0] >> 4 {
        4 => {
            let ihl = usize::from(inner[0] & 15) * 4;
            assert!(
                verifies(Sum::ZERO.bytes(&inner[..ihl])),
                "ipv4 header checksum"
            );
            let protocol = inner[9];
            let l4 = &inner[ihl..];
            if protocol == 1 {
                assert!(verifies(Sum::ZERO.bytes(l4)), "icmp checksum");
            }
            if protocol == 6 {
                let src: [u8; 4] = inner[12..16].try_into().unwrap();
                let dst: [u8; 4] = inner[16..20].try_into().unwrap();
                // Full or partial: either the whole sum verifies, or the field holds the
                // folded pseudo-header sum (CHECKSUM_PARTIAL).
                let ph = pseudo_header_v4(src, dst, 6, l4.len() as u32);
                let field = u16::from_be_bytes([l4[16], l4[17]]);
                assert!(
                    verifies(ph.bytes(l4)) || field == ph.fold(),
                    "tcp checksum neither full nor partial"
                );
            }
            protocol
        }
        6 => {
            let next = inner[6];
            let src: [u8; 16] = inner[8..24].try_into().unwrap();
            let dst: [u8; 16] = inner[24..40].try_into().unwrap();
            let l4 = &inner[40..];
            if next == 58 {
                let ph = pseudo_header_v6(&src, &dst, 58, l4.len() as u32);
                assert!(verifies(ph.bytes(l4)), "icmpv6 checksum");
            }
            next
        }
        v => panic!("inner version {v}"),
    }
}

#[test]
fn decap_then_encap_gives_the_kernel_bytes() {
    let mut kinds = std::collections::BTreeSet::new();
    for (i, c) in captured().iter().enumerate() {
        let decap = VxlanDecap {
            vni: VNI,
            local_mac: c.to,
        };
        let d = decap
            .decap(&c.frame)
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(d.src_mac, c.from, "frame {i}");
        // Kernel frames over veth are not padded: the inner packet is the whole rest.
        assert_eq!(d.inner, &c.frame[VXLAN_HEADER_LEN..], "frame {i}");
        let proto = verify_inner(d.inner);
        kinds.insert((d.inner[0] >> 4, proto));

        let encap = VxlanEncap {
            vni: VNI,
            local_mac: c.from,
            peer_mac: c.to,
        };
        let mut out = vec![0u8; 2048];
        let n = encap.encap(d.inner, &mut out).unwrap();
        assert_eq!(&out[..n], &c.frame[..], "frame {i}: re-encap differs");
        assert_eq!(encap.header(d.inner[0] >> 4), c.frame[..VXLAN_HEADER_LEN]);

        // The kernel's port and ours are both in the default local port range.
        assert!((SOURCE_PORT_MIN..=SOURCE_PORT_MAX).contains(&c.sport));
        assert!((SOURCE_PORT_MIN..=SOURCE_PORT_MAX).contains(&source_port(d.inner)));
    }
    // IPv4 ICMP, IPv4 TCP, IPv6 ICMPv6.
    let want: std::collections::BTreeSet<_> = [(4, 1), (4, 6), (6, 58)].into_iter().collect();
    assert_eq!(kinds, want);
}

#[test]
fn padded_kernel_frame_is_trimmed() {
    let c = &captured()[0];
    let mut padded = c.frame.clone();
    padded.extend_from_slice(&[0u8; 17]);
    let d = VxlanDecap {
        vni: VNI,
        local_mac: c.to,
    }
    .decap(&padded)
    .unwrap();
    assert_eq!(d.inner, &c.frame[VXLAN_HEADER_LEN..]);
}

#[test]
fn kernel_frame_for_the_other_node_is_rejected() {
    // A frame addressed to B, received by A: A's MAC is the source, so this is our own frame
    // looped back.
    let c = captured().into_iter().find(|c| c.to == MAC_B).unwrap();
    let at_a = VxlanDecap {
        vni: VNI,
        local_mac: MAC_A,
    };
    assert_eq!(at_a.decap(&c.frame), Err(DecapError::Loop));
    // A third node receiving it: not its MAC.
    let at_c = VxlanDecap {
        vni: VNI,
        local_mac: [0x0e, 0x7f, 0x1a, 0, 0, 0x0c],
    };
    assert_eq!(at_c.decap(&c.frame), Err(DecapError::WrongDstMac));
}

#[test]
fn mutated_kernel_frames_are_rejected() {
    let all = captured();
    let v4 = all
        .iter()
        .find(|c| c.frame[20..22] == [0x08, 0x00])
        .unwrap();
    let v6 = all
        .iter()
        .find(|c| c.frame[20..22] == [0x86, 0xdd])
        .unwrap();
    type Case<'a> = (&'a Captured, fn(&mut Vec<u8>), DecapError);
    let cases: &[Case] = &[
        (v4, |f| f.truncate(7), DecapError::Truncated),
        (v4, |f| f.truncate(21), DecapError::Truncated),
        (v4, |f| f.truncate(22 + 19), DecapError::Truncated),
        (v6, |f| f.truncate(22 + 39), DecapError::Truncated),
        (v4, |f| f[0] = 0x00, DecapError::ReservedFlags),
        (v4, |f| f[0] = 0x88, DecapError::ReservedFlags),
        (v4, |f| f[0] = 0x0c, DecapError::ReservedFlags), // VXLAN-GPE's P bit
        (v4, |f| f[1] = 0x80, DecapError::ReservedBits),  // GBP's D bit position
        (v4, |f| f[3] = 0x01, DecapError::ReservedBits),
        (v4, |f| f[7] = 0x01, DecapError::ReservedBits),
        (v4, |f| f[6] = 0x02, DecapError::WrongVni),
        (v4, |f| f[4] = 0x01, DecapError::WrongVni),
        (v4, |f| f[13] ^= 0x01, DecapError::WrongDstMac),
        (
            v4,
            |f| f[8..14].copy_from_slice(&[0xff; 6]),
            DecapError::WrongDstMac,
        ),
        (
            v4,
            |f| f[8..14].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]),
            DecapError::WrongDstMac,
        ),
        (v4, |f| f.copy_within(8..14, 14), DecapError::Loop),
        (
            v4,
            |f| f[20..22].copy_from_slice(&[0x08, 0x06]),
            DecapError::NotIp,
        ),
        (
            v4,
            |f| f[20..22].copy_from_slice(&[0x81, 0x00]),
            DecapError::NotIp,
        ),
        (
            v4,
            |f| f[20..22].copy_from_slice(&[0x86, 0xdd]),
            DecapError::BadInner("ip version does not match ethertype"),
        ),
        (
            v6,
            |f| f[20..22].copy_from_slice(&[0x08, 0x00]),
            DecapError::BadInner("ip version does not match ethertype"),
        ),
        (
            v4,
            |f| f[22] = 0x44,
            DecapError::BadInner("ipv4 header length below 20"),
        ),
        (
            v4,
            |f| {
                let n = f.len() - 1;
                f.truncate(n)
            },
            DecapError::BadInner("ipv4 total length beyond datagram"),
        ),
        (
            v6,
            |f| {
                let n = f.len() - 1;
                f.truncate(n)
            },
            DecapError::BadInner("ipv6 payload length beyond datagram"),
        ),
    ];
    for (i, (c, mutate, want)) in cases.iter().enumerate() {
        let mut f = c.frame.clone();
        mutate(&mut f);
        let got = VxlanDecap {
            vni: VNI,
            local_mac: c.to,
        }
        .decap(&f);
        assert_eq!(got.err(), Some(*want), "case {i}");
    }
}
