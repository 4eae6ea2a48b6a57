//! Coalescing of received inner packets into super-packets for one TUN write each.
//!
//! This module owns the receive half of the offload story: after a UDP_GRO receive and the
//! decapsulation, the inner packets of one TCP flow (or UDP flow, when the TUN accepted USO)
//! are merged back into super-packets of up to 64 KiB, each written with a `virtio_net_hdr`
//! that asks the kernel to treat it as a GSO packet. One TUN write then carries what would have
//! been up to [`MAX_SEGMENTS`] writes.
//!
//! Contract:
//! - All memory is allocated by [`Coalescer::new`]: one arena and a table of runs. [`push`]
//!   copies a packet in and never allocates; when there is no room it returns [`Full`] and the
//!   caller flushes ([`finish`], write [`packets`], [`clear`]) and pushes again.
//! - A packet merges into the latest run of its flow (same addresses, protocol and ports) when
//!   every header byte the segmentation would repeat is equal and the sequence is contiguous;
//!   see [`Coalescer::push`] for the exact rules. A flow's packets never overtake each other:
//!   a packet of the flow that cannot merge starts a new run, and later packets merge into that
//!   one or start yet another.
//! - A packet that merges with nothing (a run of one) comes out byte for byte as it went in,
//!   behind an all-zero virtio header; when its TCP or UDP checksum is partial (see
//!   [`crate::partial_checksum`]: a same-host sender left it to the device), behind the virtio
//!   header of [`Partial::virtio`] instead (`NEEDS_CSUM`, no GSO), so that the kernel completes
//!   it rather than dropping the packet. (A full checksum that happens to equal the partial
//!   value is partial from its bytes too, about once in 65536 packets: nothing else tells them
//!   apart here, and completing it sums what its sender summed, so it is completed to itself.)
//!   A merged run comes out as one IP packet with final IP lengths, a valid IPv4 header
//!   checksum, the L4 checksum field holding the folded pseudo-header sum over the L4 length (a
//!   partial checksum, as wireguard-go writes it), and a virtio header `NEEDS_CSUM`,
//!   `TCPV4`/`TCPV6`/`UDP_L4`, `gso_size`, `hdr_len`, `csum_start` = IP header length,
//!   `csum_offset` 16 (TCP) or 6 (UDP). Re-split by [`crate::gso::split`], such a
//!   super-packet gives back the segments (with IPv4 IDs counted up from the first one).
//! - With [`ChecksumCaps::Complete`] every candidate's L4 checksum (and IPv4 header checksum) is
//!   verified before it may merge; a bad one passes through unchanged so the kernel drops it.
//!   A partial L4 checksum (exactly the folded pseudo-header sum) is not verified but may merge:
//!   the merged output is partial anyway. With [`ChecksumCaps::Offloaded`] they are trusted
//!   (the outer UDP checksum was verified).
//! - A TCP packet longer than [`Config::mtu`] whose checksum is partial was never segmented: a
//!   same-host Linux sender's TSO super-packet that crossed a veth as one (the kernel's UDP
//!   tunnel GSO keeps it whole up to the receiving UDP socket, which hands it over as one
//!   datagram without its segment size). It merges with nothing and comes out as it came,
//!   behind a GSO virtio header as a merged run has (`gso_size` = MTU - its IP and TCP headers,
//!   `GSO_ECN` when it carries CWR), so that the kernel segments it. (A UDP super-packet cannot
//!   be treated so: its datagram boundaries are lost.)
//! - [`Coalescer::partial_packets`] counts the packets with a partial checksum pushed since the
//!   last [`clear`] or [`Coalescer::take_partial_packets`].
//!
//! [`push`]: Coalescer::push
//! [`finish`]: Coalescer::finish
//! [`packets`]: Coalescer::packets
//! [`clear`]: Coalescer::clear

use core::fmt;

use crate::checksum::{self, Sum};
use crate::gso::UDP_MAX_SEGMENTS;
use crate::partial_checksum::{self, pseudo_header, Partial};
use crate::wire::proto;
use crate::wire::virtio::{self, GsoType, VirtioNetRepr, TCP_CSUM_OFFSET, UDP_CSUM_OFFSET};
use crate::ChecksumCaps;

/// The largest IP packet a run may grow to (the IPv4 total length field; also used for IPv6).
pub const MAX_IP_LEN: usize = 65_535;

/// The most segments in one merged super-packet: [`UDP_MAX_SEGMENTS`] (linux/udp.h), so that
/// the kernel, or a peer re-splitting it for one UDP GSO send, never needs more than one send.
/// (A same-host sender's own TSO super-packet goes out with as many segments as the MTU cuts
/// it into: the kernel, which built it, takes it back.)
pub const MAX_SEGMENTS: usize = UDP_MAX_SEGMENTS;

/// The most bytes one output packet occupies: virtio header + [`MAX_IP_LEN`].
pub const MAX_OUTPUT_LEN: usize = virtio::HEADER_LEN + MAX_IP_LEN;

const VH: usize = virtio::HEADER_LEN;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// How a [`Coalescer`] is sized and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The most output packets (runs) between two [`Coalescer::clear`] calls.
    pub max_packets: usize,
    /// The arena size in bytes; at least [`MAX_OUTPUT_LEN`] is allocated. A run takes its
    /// packets' bytes plus a 10-byte header; runs of interleaved flows reserve room to grow
    /// (doubling, up to [`MAX_OUTPUT_LEN`]), so allow about twice the bytes of one batch.
    pub arena_len: usize,
    /// Whether UDP may be coalesced (`UDP_L4`): only when the TUN accepted USO
    /// (`TUN_F_USO4 | TUN_F_USO6`), else the kernel rejects the write.
    pub udp: bool,
    /// Whether inner L4 checksums are verified before merging.
    pub checksum: ChecksumCaps,
    /// The TUN MTU: the longest packet its stack expects as one segment. A longer TCP packet
    /// whose checksum is partial is a same-host sender's TSO super-packet (see the module
    /// documentation) and goes out as a GSO packet cut at this size.
    pub mtu: usize,
}

impl Default for Config {
    /// 512 packets, a 2 MiB arena, TCP only, checksums verified, no MTU (no packet is a
    /// super-packet).
    fn default() -> Self {
        Config {
            max_packets: 512,
            arena_len: 2 << 20,
            udp: false,
            checksum: ChecksumCaps::Complete,
            mtu: MAX_IP_LEN,
        }
    }
}

/// [`Coalescer::push`] found no room: flush and push the packet again. An empty coalescer
/// accepts any packet of up to [`MAX_IP_LEN`] bytes, so `Full` from an empty one means the
/// packet is longer than that and the arena: drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("coalescer full")
    }
}

impl std::error::Error for Full {}

/// One output packet: a single packet or a merged run of segments of one flow.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Arena offset of the virtio header.
    start: usize,
    /// IP packet length so far.
    len: usize,
    /// Bytes reserved from `start`, virtio header included.
    cap: usize,
    /// Flow hash; meaningful when `flow`.
    key: u64,
    /// The packet is TCP or UDP with readable ports, so it belongs to a flow.
    flow: bool,
    /// Later segments may still be appended.
    open: bool,
    tcp: bool,
    v6: bool,
    /// IP header length = offset of the L4 header.
    l4: usize,
    /// IP + L4 header length.
    hdr_len: usize,
    /// Payload of the first segment; every segment but the last has exactly this.
    gso_size: usize,
    segs: usize,
    next_seq: u32,
    /// The first packet's L4 checksum is partial: a run of one needs `NEEDS_CSUM`.
    partial: Option<Partial>,
    /// `GSO_ECN`: a TCP super-packet that carries CWR (the kernel clears it after the first
    /// segment).
    ecn: bool,
}

/// What [`Coalescer::push`] learned about a packet.
#[derive(Debug, Clone, Copy, Default)]
struct Parsed {
    key: Option<u64>,
    tcp: bool,
    v6: bool,
    l4: usize,
    /// May join or start a run (all the per-packet conditions hold).
    mergeable: bool,
    hdr_len: usize,
    payload: usize,
    seq: u32,
    psh: bool,
    /// The L4 checksum is partial.
    partial: Option<Partial>,
    /// A same-host sender's TSO super-packet, to be cut at this `gso_size`.
    super_gso: Option<usize>,
    /// The TCP flags carry CWR.
    cwr: bool,
}

/// Merges received inner packets into super-packets; see the module documentation.
pub struct Coalescer {
    arena: Box<[u8]>,
    tail: usize,
    runs: Vec<Run>,
    max_runs: usize,
    udp: bool,
    caps: ChecksumCaps,
    mtu: usize,
    partial_packets: u64,
}

impl fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer")
            .field("packets", &self.runs.len())
            .field("arena_used", &self.tail)
            .field("arena_len", &self.arena.len())
            .field("max_packets", &self.max_runs)
            .field("udp", &self.udp)
            .field("checksum", &self.caps)
            .field("mtu", &self.mtu)
            .field("partial_packets", &self.partial_packets)
            .finish()
    }
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn ne64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

impl Coalescer {
    /// Allocates everything the coalescer will use.
    pub fn new(config: Config) -> Coalescer {
        let max_runs = config.max_packets.max(1);
        Coalescer {
            arena: vec![0u8; config.arena_len.max(MAX_OUTPUT_LEN)].into_boxed_slice(),
            tail: 0,
            runs: Vec::with_capacity(max_runs),
            max_runs,
            udp: config.udp,
            caps: config.checksum,
            mtu: config.mtu,
            partial_packets: 0,
        }
    }

    /// The number of output packets.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether there is no packet.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Forgets every packet, keeping the memory.
    pub fn clear(&mut self) {
        self.runs.clear();
        self.tail = 0;
        self.partial_packets = 0;
    }

    /// How many of the packets pushed since the last [`clear`](Coalescer::clear) (or
    /// [`take_partial_packets`](Coalescer::take_partial_packets)) had a partial TCP or UDP
    /// checksum, which the kernel completes after the TUN write.
    pub fn partial_packets(&self) -> u64 {
        self.partial_packets
    }

    /// [`partial_packets`](Coalescer::partial_packets), and starts counting again from zero.
    pub fn take_partial_packets(&mut self) -> u64 {
        std::mem::take(&mut self.partial_packets)
    }

    /// Copies `packet` (an inner IP packet) in, merging it into the latest run of its flow
    /// when allowed, else as a new output packet. On [`Full`] nothing changed.
    ///
    /// A TCP segment merges when: IPv4 without options and not a fragment, or IPv6 with TCP
    /// as next header; the IP length matches the packet; the flags are ACK, or ACK + PSH (which
    /// ends the run); the payload is non-empty and at most the run's first payload (a shorter
    /// one ends the run); the sequence number follows the run's last; and IPv4 TOS, DF, TTL
    /// (IPv6 traffic class, flow label, hop limit), the TCP acknowledgement, data offset,
    /// window, urgent pointer and options bytes equal the run's first segment's. A UDP datagram
    /// merges (when [`Config::udp`]) under the same IP rules with a consistent UDP length and a
    /// payload as for TCP. A run stays within [`MAX_IP_LEN`] bytes and [`MAX_SEGMENTS`]
    /// segments. Under [`ChecksumCaps::Complete`] the checksums must verify too, or the L4
    /// checksum be partial.
    pub fn push(&mut self, packet: &[u8]) -> Result<(), Full> {
        let parsed = self.parse(packet);
        if let Some(key) = parsed.key {
            if let Some(idx) = self.latest_run_of_flow(key, packet, &parsed) {
                if self.try_merge(idx, packet, &parsed) {
                    self.partial_packets += u64::from(parsed.partial.is_some());
                    return Ok(());
                }
            }
        }
        self.open(packet, &parsed)?;
        self.partial_packets += u64::from(parsed.partial.is_some());
        Ok(())
    }

    /// Writes the final headers of every merged run: IP length, IPv4 header checksum, UDP
    /// length, the partial L4 checksum and the virtio header; and the `NEEDS_CSUM` virtio
    /// header of a single packet whose checksum is partial. Call it before [`packets`] (again
    /// after more pushes).
    ///
    /// [`packets`]: Coalescer::packets
    pub fn finish(&mut self) {
        for run in &self.runs {
            if run.segs < 2 {
                if let Some(partial) = run.partial {
                    let vh = &mut self.arena[run.start..run.start + VH];
                    vh.copy_from_slice(&partial.virtio().to_bytes());
                }
                continue;
            }
            let (vh, p) = self.arena[run.start..run.start + VH + run.len].split_at_mut(VH);
            let l4 = run.l4;
            let l4_len = run.len - l4;
            // The casts are exact: `run.len <= MAX_IP_LEN`.
            if run.v6 {
                p[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            } else {
                p[2..4].copy_from_slice(&(run.len as u16).to_be_bytes());
                p[10..12].fill(0);
                let c = checksum::checksum(&p[..l4]);
                p[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let (protocol, csum_offset, gso) = if run.tcp {
                let gso = if run.v6 {
                    GsoType::TcpV6
                } else {
                    GsoType::TcpV4
                };
                (proto::TCP, TCP_CSUM_OFFSET, gso)
            } else {
                p[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                (proto::UDP, UDP_CSUM_OFFSET, GsoType::UdpL4)
            };
            let partial = pseudo_header(p, run.v6, protocol, l4_len).fold();
            let at = l4 + usize::from(csum_offset);
            p[at..at + 2].copy_from_slice(&partial.to_be_bytes());
            let repr = VirtioNetRepr {
                needs_csum: true,
                data_valid: false,
                gso,
                ecn: run.ecn,
                hdr_len: run.hdr_len as u16,
                gso_size: run.gso_size as u16,
                csum_start: l4 as u16,
                csum_offset,
            };
            vh.copy_from_slice(&repr.to_bytes());
        }
    }

    /// The output packets in the arrival order of their first segment, each a 10-byte virtio
    /// header followed by the IP packet.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.runs
            .iter()
            .map(move |r| &self.arena[r.start..r.start + VH + r.len])
    }

    fn parse(&self, p: &[u8]) -> Parsed {
        let mut r = Parsed::default();
        let Some(&b0) = p.first() else {
            return r;
        };
        let (v6, l4, protocol, len_ok) = match b0 >> 4 {
            4 => {
                if p.len() < 20 {
                    return r;
                }
                let ihl = usize::from(b0 & 0x0f) * 4;
                //= https://www.rfc-editor.org/rfc/rfc791#section-3.1
                //# Fragment Offset:  13 bits
                // A fragment (MF or an offset) has no complete datagram: never part of a flow.
                if ihl < 20 || p.len() < ihl || be16(p, 6) & 0x3fff != 0 {
                    return r;
                }
                (false, ihl, p[9], usize::from(be16(p, 2)) == p.len())
            }
            6 => {
                if p.len() < 40 {
                    return r;
                }
                (true, 40, p[6], 40 + usize::from(be16(p, 4)) == p.len())
            }
            _ => return r,
        };
        let (tcp, l4_min) = match protocol {
            proto::TCP => (true, 20),
            proto::UDP => (false, 8),
            _ => return r,
        };
        if p.len() < l4 + l4_min {
            return r;
        }
        r.key = Some(flow_key(p, v6, l4, protocol));
        r.tcp = tcp;
        r.v6 = v6;
        r.l4 = l4;
        if !len_ok {
            return r;
        }
        // Cheap (the IP addresses and two L4 words): checked for every packet, mergeable or
        // not, so that a partial SYN or a packet with IP options gets its NEEDS_CSUM too.
        r.partial = partial_checksum::at(p, v6, l4, protocol);
        if tcp && r.partial.is_some() && p.len() > self.mtu {
            self.parse_super_packet(p, &mut r);
            return r;
        }
        if l4 != 20 && !v6 {
            // IPv4 options: never merged.
            return r;
        }
        if tcp {
            let thl = usize::from(p[l4 + 12] >> 4) * 4;
            let flags = p[l4 + 13];
            if thl < 20 || p.len() <= l4 + thl || flags & !TCP_PSH != TCP_ACK {
                return r;
            }
            r.hdr_len = l4 + thl;
            r.seq = be32(p, l4 + 4);
            r.psh = flags & TCP_PSH != 0;
        } else {
            if !self.udp || p.len() <= l4 + 8 || usize::from(be16(p, l4 + 4)) != p.len() - l4 {
                return r;
            }
            r.hdr_len = l4 + 8;
        }
        r.payload = p.len() - r.hdr_len;
        if self.caps == ChecksumCaps::Complete {
            let verified = if r.partial.is_some() {
                // Nothing to verify in a partial L4 checksum; the IPv4 header still must.
                v6 || checksum::verifies(Sum::ZERO.bytes(&p[..l4]))
            } else {
                checksums_verify(p, v6, l4, protocol)
            };
            if !verified {
                return r;
            }
        }
        r.mergeable = true;
        r
    }

    /// Fills in a TCP super-packet (`r` parsed up to its partial checksum): its headers must
    /// fit the MTU with room for one payload byte, and under [`ChecksumCaps::Complete`] its
    /// IPv4 header checksum must verify; else it passes through like any odd packet.
    fn parse_super_packet(&self, p: &[u8], r: &mut Parsed) {
        let l4 = r.l4;
        let thl = usize::from(p[l4 + 12] >> 4) * 4;
        if thl < 20 || l4 + thl >= self.mtu || p.len() < l4 + thl {
            return;
        }
        if self.caps == ChecksumCaps::Complete
            && !r.v6
            && !checksum::verifies(Sum::ZERO.bytes(&p[..l4]))
        {
            return;
        }
        r.hdr_len = l4 + thl;
        r.payload = p.len() - r.hdr_len;
        r.seq = be32(p, l4 + 4);
        r.super_gso = Some(self.mtu - r.hdr_len);
        r.cwr = p[l4 + 13] & TCP_CWR != 0;
    }

    /// The newest run of the packet's flow, open or not.
    fn latest_run_of_flow(&self, key: u64, p: &[u8], c: &Parsed) -> Option<usize> {
        let idx = self.runs.iter().rposition(|r| {
            if !r.flow || r.key != key || r.tcp != c.tcp || r.v6 != c.v6 {
                return false;
            }
            let head = &self.arena[r.start + VH..r.start + VH + r.len];
            let addrs = if c.v6 { 8..40 } else { 12..20 };
            head[addrs.clone()] == p[addrs] && head[r.l4..r.l4 + 4] == p[c.l4..c.l4 + 4]
        });
        idx
    }

    /// Appends the packet's payload to run `idx` if every rule allows it.
    fn try_merge(&mut self, idx: usize, p: &[u8], c: &Parsed) -> bool {
        let mut run = self.runs[idx];
        if !run.open
            || !c.mergeable
            || c.hdr_len != run.hdr_len
            || c.payload > run.gso_size
            || run.len + c.payload > MAX_IP_LEN
            || run.segs >= MAX_SEGMENTS
        {
            return false;
        }
        let head = &self.arena[run.start + VH..run.start + VH + run.hdr_len];
        let h = &p[..run.hdr_len];
        let ip_same = if run.v6 {
            // Version, traffic class, flow label; hop limit.
            head[..4] == h[..4] && head[7] == h[7]
        } else {
            // Version/IHL, TOS; flags (DF) and fragment offset, TTL.
            head[..2] == h[..2] && head[6..9] == h[6..9]
        };
        if !ip_same {
            return false;
        }
        if run.tcp {
            let l4 = run.l4;
            if c.seq != run.next_seq
                // Acknowledgement number and data offset.
                || head[l4 + 8..l4 + 13] != h[l4 + 8..l4 + 13]
                // Window.
                || head[l4 + 14..l4 + 16] != h[l4 + 14..l4 + 16]
                // Urgent pointer and options.
                || head[l4 + 18..] != h[l4 + 18..]
            {
                return false;
            }
        }

        let need = VH + run.len + c.payload;
        if need > run.cap {
            let room = self.arena.len() - self.tail;
            if run.start + run.cap == self.tail && need - run.cap <= room {
                // The newest reservation grows in place.
                self.tail = run.start + need;
                run.cap = need;
            } else {
                // Move the run to the tail with room to double.
                let cap = (2 * need).min(MAX_OUTPUT_LEN).min(room);
                if cap < need {
                    return false;
                }
                let to = self.tail;
                self.arena
                    .copy_within(run.start..run.start + VH + run.len, to);
                run.start = to;
                run.cap = cap;
                self.tail = to + cap;
            }
        }
        let at = run.start + VH + run.len;
        self.arena[at..at + c.payload].copy_from_slice(&p[c.hdr_len..]);
        run.len += c.payload;
        run.segs += 1;
        if c.payload < run.gso_size {
            run.open = false;
        }
        if run.tcp {
            run.next_seq = c.seq.wrapping_add(c.payload as u32);
            if c.psh {
                // The super-packet carries PSH; a re-split puts it on the last segment only.
                self.arena[run.start + VH + run.l4 + 13] |= TCP_PSH;
                run.open = false;
            }
        }
        self.runs[idx] = run;
        true
    }

    /// Adds the packet as a new output packet.
    fn open(&mut self, p: &[u8], c: &Parsed) -> Result<(), Full> {
        let need = VH + p.len();
        if self.runs.len() >= self.max_runs || self.arena.len() - self.tail < need {
            return Err(Full);
        }
        let start = self.tail;
        self.arena[start..start + VH].fill(0);
        self.arena[start + VH..start + need].copy_from_slice(p);
        self.tail += need;
        let (gso_size, segs) = match c.super_gso {
            Some(gso) => (gso, c.payload.div_ceil(gso)),
            None => (c.payload, 1),
        };
        self.runs.push(Run {
            start,
            len: p.len(),
            cap: need,
            key: c.key.unwrap_or(0),
            flow: c.key.is_some(),
            open: c.mergeable && !c.psh && p.len() < MAX_IP_LEN,
            tcp: c.tcp,
            v6: c.v6,
            l4: c.l4,
            hdr_len: c.hdr_len,
            gso_size,
            segs,
            next_seq: c.seq.wrapping_add(c.payload as u32),
            partial: c.partial,
            ecn: c.cwr,
        });
        Ok(())
    }
}

/// A hash of (version, protocol, addresses, ports); equal flows hash equal, and a match is
/// confirmed by comparing the bytes.
fn flow_key(p: &[u8], v6: bool, l4: usize, protocol: u8) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = u64::from(be32(p, l4)) ^ (u64::from(protocol) << 32) ^ (u64::from(v6) << 40);
    if v6 {
        for at in [8, 16, 24, 32] {
            h = (h ^ ne64(p, at)).wrapping_mul(K).rotate_left(23);
        }
    } else {
        h = (h ^ ne64(p, 12)).wrapping_mul(K).rotate_left(23);
    }
    h ^ (h >> 29)
}

/// Whether the IPv4 header checksum and the L4 checksum of a whole packet verify. A zero UDP
/// checksum over IPv4 means "none" and passes.
fn checksums_verify(p: &[u8], v6: bool, l4: usize, protocol: u8) -> bool {
    if !v6 && !checksum::verifies(Sum::ZERO.bytes(&p[..l4])) {
        return false;
    }
    if !v6 && protocol == proto::UDP && p[l4 + 6..l4 + 8] == [0, 0] {
        return true;
    }
    let sum = pseudo_header(p, v6, protocol, p.len() - l4).combine(Sum::ZERO.bytes(&p[l4..]));
    checksum::verifies(sum)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::gso;
    use crate::test_packets::*;
    use crate::wire::virtio::VirtioNetHdr;

    fn seg(spec: &Spec<'_>, i: usize, gso: usize, payload: &[u8]) -> Vec<u8> {
        packet(
            &Spec {
                id: spec.id.wrapping_add(i as u16),
                seq: spec.seq.wrapping_add((i * gso) as u32),
                ..*spec
            },
            payload,
        )
    }

    /// The segments of a stream of `n` full segments of `gso` bytes plus a `last`-byte one.
    fn stream(spec: &Spec<'_>, gso: usize, n: usize, last: usize) -> Vec<Vec<u8>> {
        let data = payload(gso * n + last, 11);
        let mut v: Vec<Vec<u8>> = data
            .chunks(gso)
            .enumerate()
            .map(|(i, c)| seg(spec, i, gso, c))
            .collect();
        if spec.flags & TCP_PSH != 0 {
            let k = v.len();
            for p in &mut v[..k - 1] {
                let l4 = l4_off(p);
                p[l4 + 13] &= !TCP_PSH;
                checksum_fix(p);
            }
        }
        v
    }

    /// Recomputes the L4 checksum after a header edit.
    fn checksum_fix(p: &mut [u8]) -> u16 {
        let l4 = l4_off(p);
        let at = l4
            + if p[if p[0] >> 4 == 6 { 6 } else { 9 }] == proto::TCP {
                16
            } else {
                6
            };
        p[at..at + 2].fill(0);
        let c = pseudo(p, l4).combine(Sum::ZERO.bytes(&p[l4..])).finish();
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        c
    }

    fn coalesce(cfg: Config, pkts: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut c = Coalescer::new(cfg);
        for p in pkts {
            c.push(p).unwrap();
        }
        c.finish();
        assert_eq!(c.len(), c.packets().count());
        c.packets().map(<[u8]>::to_vec).collect()
    }

    fn resplit(out: &[u8]) -> Vec<Vec<u8>> {
        let vnet = VirtioNetRepr::parse(&VirtioNetHdr::new_checked(out).unwrap()).unwrap();
        let p = &out[VH..];
        let n = gso::required_len(&vnet, p, 0, MAX_IP_LEN).unwrap();
        let mut buf = vec![0; n];
        let segs = gso::split(&vnet, p, &[], MAX_IP_LEN, &mut buf).unwrap();
        (0..segs.count)
            .map(|i| buf[segs.segment(i)].to_vec())
            .collect()
    }

    fn vnet_of(out: &[u8]) -> VirtioNetRepr {
        VirtioNetRepr::parse(&VirtioNetHdr::new_checked(out).unwrap()).unwrap()
    }

    #[test]
    fn tcp4_run_merges_and_resplits_exactly() {
        let spec = Spec {
            flags: 0x18,
            tcp_options: &[1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0],
            ..Spec::default()
        };
        let segs = stream(&spec, 1000, 4, 500);
        let out = coalesce(Config::default(), &segs);
        assert_eq!(out.len(), 1);
        let o = &out[0];
        assert_eq!(
            vnet_of(o),
            VirtioNetRepr {
                needs_csum: true,
                data_valid: false,
                gso: GsoType::TcpV4,
                ecn: false,
                hdr_len: 52,
                gso_size: 1000,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        let p = &o[VH..];
        assert_eq!(p.len(), 52 + 4500);
        assert_eq!(usize::from(be16(p, 2)), p.len());
        assert!(checksum::verifies(Sum::ZERO.bytes(&p[..20])));
        assert_eq!(be16(p, 4), spec.id, "first ID kept");
        assert_eq!(p[33], 0x18, "PSH carried");
        assert_eq!(
            be16(p, 36),
            pseudo_header(p, false, proto::TCP, p.len() - 20).fold()
        );
        let mut data = Vec::new();
        for s in &segs {
            data.extend_from_slice(&s[52..]);
        }
        assert_eq!(&p[52..], &data[..]);
        assert_eq!(resplit(o), segs);
    }

    #[test]
    fn tcp6_run_merges() {
        let spec = Spec {
            v6: true,
            ..Spec::default()
        };
        let segs = stream(&spec, 1200, 3, 0);
        let out = coalesce(Config::default(), &segs);
        assert_eq!(out.len(), 1);
        let v = vnet_of(&out[0]);
        assert_eq!(
            (v.gso, v.gso_size, v.hdr_len, v.csum_start),
            (GsoType::TcpV6, 1200, 60, 40)
        );
        assert_eq!(usize::from(be16(&out[0][VH..], 4)), 3 * 1200 + 20);
        assert_eq!(resplit(&out[0]), segs);
    }

    #[test]
    fn interleaved_flows_keep_their_order_and_relocate() {
        let a = Spec::default();
        let b = Spec {
            v6: true,
            seq: 77,
            ..Spec::default()
        };
        let sa = stream(&a, 1000, 5, 0);
        let sb = stream(&b, 700, 5, 0);
        let mut mixed = Vec::new();
        for i in 0..5 {
            mixed.push(sa[i].clone());
            mixed.push(sb[i].clone());
        }
        let out = coalesce(Config::default(), &mixed);
        assert_eq!(out.len(), 2);
        assert_eq!(resplit(&out[0]), sa);
        assert_eq!(resplit(&out[1]), sb);
    }

    #[test]
    fn run_enders() {
        let spec = Spec::default();
        let full = stream(&spec, 1000, 3, 0);
        let cfg = Config::default();
        // PSH on the second segment ends the run there.
        let mut psh = full.clone();
        psh[1][33] |= TCP_PSH;
        checksum_fix(&mut psh[1]);
        let out = coalesce(cfg, &psh);
        assert_eq!(out.len(), 2);
        assert_eq!(resplit(&out[0]), psh[..2]);
        assert_eq!(&out[1][..VH], &[0; VH]);
        assert_eq!(&out[1][VH..], &psh[2][..]);
        // A short segment ends the run; the next one starts a new run (of one).
        let data = payload(2500, 1);
        let short = vec![
            seg(&spec, 0, 1000, &data[..1000]),
            seg(&spec, 1, 1000, &data[1000..1500]),
            packet(
                &Spec {
                    seq: spec.seq + 1500,
                    id: spec.id + 2,
                    ..spec
                },
                &data[1500..2500],
            ),
        ];
        let out = coalesce(cfg, &short);
        assert_eq!(out.len(), 2);
        assert_eq!(resplit(&out[0]), short[..2]);
        assert_eq!(&out[1][VH..], &short[2][..]);
        // A longer segment cannot join a run of smaller ones.
        let out = coalesce(cfg, &[short[1].clone(), short[2].clone()]);
        assert_eq!(out.len(), 2);
        // A sequence gap.
        let out = coalesce(cfg, &[full[0].clone(), full[2].clone()]);
        assert_eq!(out.len(), 2);
        // A pure ACK of the same flow in between: nothing overtakes it.
        let ack = packet(&spec, &[]);
        let out = coalesce(cfg, &[full[0].clone(), ack.clone(), full[1].clone()]);
        assert_eq!(out.len(), 3);
        assert_eq!(&out[1][VH..], &ack[..]);
        assert_eq!(&out[2][VH..], &full[1][..]);
    }

    #[test]
    fn header_differences_prevent_merging() {
        let spec = Spec::default();
        let full = stream(&spec, 1000, 2, 0);
        let cfg = Config {
            checksum: ChecksumCaps::Offloaded,
            ..Config::default()
        };
        // (byte offset, xor) pairs: TOS, DF, TTL, ACK number, window, urgent pointer.
        for (at, x) in [
            (1, 4),
            (6, 0x40),
            (8, 1),
            (20 + 9, 1),
            (20 + 15, 1),
            (20 + 19, 1),
        ] {
            let mut b = full[1].clone();
            b[at] ^= x;
            let out = coalesce(cfg, &[full[0].clone(), b.clone()]);
            assert_eq!(out.len(), 2, "byte {at}");
            assert_eq!(&out[1][VH..], &b[..]);
        }
        // Different ports or addresses: another flow, both pass through.
        let mut other = full[1].clone();
        other[19] ^= 1;
        assert_eq!(coalesce(cfg, &[full[0].clone(), other]).len(), 2);
        // Flags other than ACK/PSH never merge.
        for f in [0x11, 0x12, 0x14, 0x30, 0x50, 0x90, 0x02, 0x00] {
            let mut b = full[1].clone();
            b[33] = f;
            let out = coalesce(cfg, &[full[0].clone(), b.clone()]);
            assert_eq!(out.len(), 2, "flags {f:#x}");
        }
    }

    #[test]
    fn odd_packets_pass_through_unchanged() {
        let spec = Spec::default();
        let data = payload(1000, 2);
        let opts = packet(
            &Spec {
                ip_options: &[1, 1, 1, 0],
                ..spec
            },
            &data,
        );
        let mut frag = packet(&spec, &data);
        frag[6] |= 0x20;
        let mut padded = packet(&spec, &data);
        padded.extend_from_slice(&[0; 6]);
        let syn = packet(
            &Spec {
                flags: 0x02,
                ..spec
            },
            &[],
        );
        let udp = packet(&Spec { tcp: false, ..spec }, &data);
        let mut icmp = packet(&spec, &data);
        icmp[9] = proto::ICMP;
        let odd: Vec<Vec<u8>> = vec![
            opts.clone(),
            opts,
            frag.clone(),
            frag,
            padded.clone(),
            padded,
            syn,
            udp.clone(),
            udp, // UDP not allowed by default
            icmp.clone(),
            icmp,
            vec![],
            vec![0x45],
            vec![0x60; 39],
            vec![0x45, 0, 0, 20],
            vec![0x99; 100],
        ];
        let out = coalesce(Config::default(), &odd);
        assert_eq!(out.len(), odd.len());
        for (o, p) in out.iter().zip(&odd) {
            assert_eq!(&o[..VH], &[0; VH]);
            assert_eq!(&o[VH..], &p[..]);
        }
    }

    #[test]
    fn bad_checksums_pass_through_under_complete_only() {
        let spec = Spec::default();
        let mut segs = stream(&spec, 1000, 3, 0);
        segs[1][100] ^= 0xff;
        let out = coalesce(Config::default(), &segs);
        assert_eq!(out.len(), 3);
        for (o, p) in out.iter().zip(&segs) {
            assert_eq!(&o[VH..], &p[..]);
        }
        // A bad IPv4 header checksum too.
        let mut segs = stream(&spec, 1000, 2, 0);
        segs[1][10] ^= 1;
        assert_eq!(coalesce(Config::default(), &segs).len(), 2);
        let offloaded = Config {
            checksum: ChecksumCaps::Offloaded,
            ..Config::default()
        };
        assert_eq!(coalesce(offloaded, &segs).len(), 1);
    }

    /// `p` with its L4 checksum replaced by the partial value (the folded pseudo-header sum), as
    /// a Linux sender with tx checksum offload leaves it across a veth.
    fn make_partial(p: &mut [u8]) {
        let l4 = l4_off(p);
        let v6 = p[0] >> 4 == 6;
        let protocol = p[if v6 { 6 } else { 9 }];
        let at = l4 + if protocol == proto::TCP { 16 } else { 6 };
        let v = pseudo_header(p, v6, protocol, p.len() - l4).fold();
        p[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// The packet a kernel makes of a TUN write: the partial checksum completed.
    fn completed(out: &[u8]) -> Vec<u8> {
        let vnet = vnet_of(out);
        assert!(vnet.needs_csum);
        let mut p = out[VH..].to_vec();
        let start = usize::from(vnet.csum_start);
        let at = start + usize::from(vnet.csum_offset);
        let c = Sum::ZERO.bytes(&p[start..]).finish();
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn partial_segments_merge_under_complete() {
        for v6 in [false, true] {
            let spec = Spec {
                v6,
                ..Spec::default()
            };
            let segs = stream(&spec, 1000, 3, 200);
            let mut partial = segs.clone();
            for p in &mut partial {
                make_partial(p);
            }
            // The first one full, the rest partial: a mixed run merges too.
            let mut mixed = partial.clone();
            mixed[0] = segs[0].clone();
            for input in [&partial, &mixed] {
                let mut c = Coalescer::new(Config::default());
                for p in input {
                    c.push(p).unwrap();
                }
                assert_eq!(c.partial_packets(), if input == &partial { 4 } else { 3 });
                c.finish();
                let out: Vec<Vec<u8>> = c.packets().map(<[u8]>::to_vec).collect();
                assert_eq!(out.len(), 1, "v6 {v6}");
                // Re-split (full checksums, as a peer's TUN would see them): the original segments.
                assert_eq!(resplit(&out[0]), segs);
                assert_eq!(
                    c.take_partial_packets(),
                    if input == &partial { 4 } else { 3 }
                );
                assert_eq!(c.partial_packets(), 0);
                c.clear();
            }
        }
    }

    #[test]
    fn a_single_partial_packet_gets_needs_csum() {
        let data = payload(300, 3);
        let syn = Spec {
            flags: 0x02,
            tcp_options: &[2, 4, 5, 0xb4],
            ..Spec::default()
        };
        let cases = [
            (syn, 20u16, 16u16),
            (Spec { v6: true, ..syn }, 40, 16),
            (
                Spec {
                    ip_options: &[1, 1, 1, 0],
                    ..Spec::default()
                },
                24,
                16,
            ),
            (
                Spec {
                    tcp: false,
                    ..Spec::default()
                },
                20,
                6,
            ),
            (
                Spec {
                    tcp: false,
                    v6: true,
                    ..Spec::default()
                },
                40,
                6,
            ),
        ];
        for (spec, start, offset) in cases {
            let body = if spec.flags == 0x02 {
                &[][..]
            } else {
                &data[..]
            };
            let full = packet(&spec, body);
            let mut p = full.clone();
            make_partial(&mut p);
            for cfg in [
                Config::default(),
                Config {
                    checksum: ChecksumCaps::Offloaded,
                    ..Config::default()
                },
            ] {
                let mut c = Coalescer::new(cfg);
                c.push(&p).unwrap();
                c.push(&full).unwrap();
                assert_eq!(c.partial_packets(), 1);
                c.finish();
                let out: Vec<&[u8]> = c.packets().collect();
                assert_eq!(out.len(), 2, "{spec:?}");
                assert_eq!(&out[0][VH..], &p[..], "the bytes are not touched");
                assert_eq!(
                    vnet_of(out[0]),
                    VirtioNetRepr {
                        needs_csum: true,
                        data_valid: false,
                        gso: GsoType::None,
                        ecn: false,
                        hdr_len: start + offset + 2,
                        gso_size: 0,
                        csum_start: start,
                        csum_offset: offset,
                    },
                    "{spec:?}"
                );
                assert_eq!(completed(out[0]), full);
                // A full checksum: the plain pass-through, unchanged.
                assert_eq!(&out[1][..VH], &[0; VH]);
                assert_eq!(&out[1][VH..], &full[..]);
            }
        }
    }

    #[test]
    fn neither_valid_nor_partial_still_passes_through_unmerged() {
        let spec = Spec::default();
        let segs = stream(&spec, 1000, 3, 0);
        let mut partial = segs.clone();
        for p in &mut partial {
            make_partial(p);
        }
        // One off the partial value, the complement of it, zero: corrupt, not partial.
        let at = 20 + 16;
        for v in [
            be16(&partial[1], at).wrapping_add(1),
            !be16(&partial[1], at),
            0,
        ] {
            let mut input = partial.clone();
            input[1][at..at + 2].copy_from_slice(&v.to_be_bytes());
            let out = coalesce(Config::default(), &input);
            assert_eq!(out.len(), 3, "{v:#x}");
            assert_eq!(&out[1][..VH], &[0; VH], "no NEEDS_CSUM for {v:#x}");
            assert_eq!(&out[1][VH..], &input[1][..]);
            assert!(vnet_of(&out[0]).needs_csum);
            assert!(vnet_of(&out[2]).needs_csum);
        }
        // A partial L4 checksum does not excuse a bad IPv4 header checksum.
        let mut input = partial.clone();
        input[1][10] ^= 1;
        assert_eq!(coalesce(Config::default(), &input).len(), 3);
    }

    /// Rewrites two payload bytes of `p` (a packet with a full checksum and at least two
    /// payload bytes) and its checksum so that the checksum stays valid and equals the folded
    /// pseudo-header sum: a full checksum that looks exactly like a partial one (about 1 in
    /// 65536 of real packets).
    fn make_colliding(p: &mut [u8]) {
        let l4 = l4_off(p);
        let v6 = p[0] >> 4 == 6;
        let protocol = p[if v6 { 6 } else { 9 }];
        let at = l4 + if protocol == proto::TCP { 16 } else { 6 };
        // Two bytes at an even offset of the L4 part, in the payload.
        let q = p.len() - 2 - (p.len() - l4) % 2;
        p[q..q + 2].fill(0);
        p[at..at + 2].fill(0);
        let ph = pseudo_header(p, v6, protocol, p.len() - l4).fold();
        let rest = Sum::ZERO.bytes(&p[l4..]).fold();
        // ph + rest + x + ph = 0 (ones' complement): x = ~ph + ~ph + ~rest.
        let x = Sum::ZERO.word(!ph).word(!ph).word(!rest).fold();
        p[q..q + 2].copy_from_slice(&x.to_be_bytes());
        p[at..at + 2].copy_from_slice(&ph.to_be_bytes());
        assert!(
            crate::test_packets::checksums_verify(p),
            "still a valid checksum"
        );
        assert_eq!(be16(p, at), ph, "equal to the partial value");
    }

    #[test]
    fn a_full_checksum_equal_to_the_partial_value_is_completed_to_itself() {
        // No flag tells a full checksum from a partial one here (the inner packet came out of a
        // UDP socket): a valid checksum equal to the folded pseudo-header sum is taken for a
        // partial one. That is harmless: completing it (the kernel after NEEDS_CSUM, or
        // `Partial::complete`) sums the same words the sender summed and writes the same value,
        // and in a merged run the field is rewritten anyway.
        for (v6, tcp) in [(false, true), (true, true), (false, false), (true, false)] {
            let spec = Spec {
                v6,
                tcp,
                ..Spec::default()
            };
            let mut single = packet(&spec, &payload(301, 7));
            make_colliding(&mut single);
            let part = partial_checksum::find(&single).unwrap();
            let mut done = single.clone();
            part.complete(&mut done);
            assert_eq!(done, single, "v6 {v6} tcp {tcp}: completed to itself");

            // A stream whose middle segment collides.
            let mut segs = stream(&spec, 1000, 3, 200);
            make_colliding(&mut segs[1]);
            for checksum in [ChecksumCaps::Complete, ChecksumCaps::Offloaded] {
                let cfg = Config {
                    udp: true,
                    checksum,
                    ..Config::default()
                };
                // Alone: behind NEEDS_CSUM, the bytes untouched; the kernel's completion gives
                // back the packet as the sender made it.
                let mut c = Coalescer::new(cfg);
                c.push(&single).unwrap();
                assert_eq!(c.partial_packets(), 1);
                c.finish();
                let out = c.packets().next().unwrap();
                assert_eq!(vnet_of(out), part.virtio());
                assert_eq!(&out[VH..], &single[..]);
                assert_eq!(completed(out), single);

                // In a run: merged exactly like the full segments around it.
                let mut c = Coalescer::new(cfg);
                for p in &segs {
                    c.push(p).unwrap();
                }
                assert_eq!(c.partial_packets(), 1);
                c.finish();
                let out: Vec<Vec<u8>> = c.packets().map(<[u8]>::to_vec).collect();
                assert_eq!(out.len(), 1, "v6 {v6} tcp {tcp} {checksum:?}");
                assert_eq!(resplit(&out[0]), segs);
            }
        }
    }

    #[test]
    fn a_partial_tcp_super_packet_goes_out_as_gso() {
        let mtu = 1450;
        let cfg = Config {
            mtu,
            ..Config::default()
        };
        let ts = [1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0];
        for (v6, flags) in [(false, 0x18), (true, 0x10), (false, 0x90)] {
            let spec = Spec {
                v6,
                flags,
                tcp_options: &ts,
                ..Spec::default()
            };
            let data = payload(10_000, 5);
            // As a same-host kernel's TSO skb reaches us: one packet, the checksum partial.
            let (_, sp) = super_packet(&spec, &data, 0);
            assert!(sp.len() > mtu);
            let l4 = if v6 { 40 } else { 20 };
            let hdr_len = l4 + 32;
            let next = seg(
                &Spec {
                    seq: spec.seq.wrapping_add(10_000),
                    flags: 0x10,
                    ..spec
                },
                0,
                0,
                &data[..1000],
            );
            let mut c = Coalescer::new(cfg);
            c.push(&sp).unwrap();
            c.push(&next).unwrap();
            assert_eq!(c.partial_packets(), 1);
            c.finish();
            let out: Vec<Vec<u8>> = c.packets().map(<[u8]>::to_vec).collect();
            assert_eq!(
                out.len(),
                2,
                "the next segment does not join a super-packet"
            );
            assert_eq!(&out[0][VH..], &sp[..], "the bytes go out as they came");
            assert_eq!(
                vnet_of(&out[0]),
                VirtioNetRepr {
                    needs_csum: true,
                    data_valid: false,
                    gso: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
                    ecn: flags & TCP_CWR != 0,
                    hdr_len: hdr_len as u16,
                    gso_size: (mtu - hdr_len) as u16,
                    csum_start: l4 as u16,
                    csum_offset: 16,
                }
            );
            // What the kernel makes of it: MTU-sized segments with valid checksums carrying
            // the stream.
            let segs = resplit(&out[0]);
            assert_eq!(segs.len(), 10_000usize.div_ceil(mtu - hdr_len));
            let mut got = Vec::new();
            for s in &segs {
                assert!(s.len() <= mtu);
                assert!(crate::test_packets::checksums_verify(s));
                got.extend_from_slice(&s[hdr_len..]);
            }
            assert_eq!(got, data);
            assert_eq!(&out[1][VH..], &next[..]);
        }
    }

    #[test]
    fn what_is_not_a_partial_tcp_super_packet_passes_through() {
        let cfg = Config {
            mtu: 1450,
            ..Config::default()
        };
        let data = payload(5000, 6);
        // A full checksum (a peer never sends one over the MTU: the pump drops it first).
        let full = packet(&Spec::default(), &data);
        // Headers that leave no room for payload in the MTU.
        let (_, no_room) = super_packet(&Spec::default(), &data, 0);
        let (_, mut bad_ip) = super_packet(&Spec::default(), &data, 0);
        bad_ip[10] ^= 1;
        let mut small = Coalescer::new(Config { mtu: 40, ..cfg });
        small.push(&no_room).unwrap();
        small.finish();
        assert_eq!(vnet_of(small.packets().next().unwrap()).gso, GsoType::None);
        let out = coalesce(cfg, &[full.clone(), bad_ip.clone()]);
        assert_eq!(&out[0][..VH], &[0; VH]);
        assert_eq!(&out[0][VH..], &full[..]);
        // A bad IPv4 header: the kernel drops it; it is no super-packet (a partial single).
        assert_eq!(vnet_of(&out[1]).gso, GsoType::None);
        assert_eq!(&out[1][VH..], &bad_ip[..]);
        // UDP: the datagram boundaries are lost, so it is never cut.
        let (_, udp) = super_packet(
            &Spec {
                tcp: false,
                ..Spec::default()
            },
            &data,
            1000,
        );
        let out = coalesce(Config { udp: true, ..cfg }, std::slice::from_ref(&udp));
        assert_eq!(vnet_of(&out[0]).gso, GsoType::None);
        assert_eq!(&out[0][VH..], &udp[..]);
    }

    #[test]
    fn udp_merges_only_when_allowed() {
        for v6 in [false, true] {
            let spec = Spec {
                v6,
                tcp: false,
                ..Spec::default()
            };
            let segs = stream(&spec, 1300, 3, 17);
            assert_eq!(coalesce(Config::default(), &segs).len(), 4);
            let cfg = Config {
                udp: true,
                ..Config::default()
            };
            let out = coalesce(cfg, &segs);
            assert_eq!(out.len(), 1);
            let v = vnet_of(&out[0]);
            let l4 = if v6 { 40 } else { 20 };
            assert_eq!(
                (v.gso, v.gso_size, v.hdr_len, v.csum_start, v.csum_offset),
                (GsoType::UdpL4, 1300, l4 as u16 + 8, l4 as u16, 6)
            );
            let p = &out[0][VH..];
            assert_eq!(usize::from(be16(p, l4 + 4)), 3 * 1300 + 17 + 8);
            assert_eq!(resplit(&out[0]), segs);
        }
    }

    #[test]
    fn limits_of_a_run() {
        let spec = Spec::default();
        // 70 segments of 100 bytes: 64 + 6.
        let segs = stream(&spec, 100, 70, 0);
        let out = coalesce(Config::default(), &segs);
        assert_eq!(out.len(), 2);
        assert_eq!(resplit(&out[0]), segs[..64]);
        assert_eq!(resplit(&out[1]), segs[64..]);
        // 50 segments of 1400 bytes: 46 fit in 65535 - 40 bytes.
        let segs = stream(&spec, 1400, 50, 0);
        let out = coalesce(Config::default(), &segs);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), VH + 40 + 46 * 1400);
        assert_eq!(resplit(&out[1]), segs[46..]);
    }

    #[test]
    fn full_and_clear() {
        let spec = Spec::default();
        let cfg = Config {
            max_packets: 2,
            arena_len: 0,
            ..Config::default()
        };
        let mut c = Coalescer::new(cfg);
        let ack = packet(&spec, &[]);
        c.push(&ack).unwrap();
        c.push(&ack).unwrap();
        assert_eq!(c.push(&ack), Err(Full));
        assert_eq!(c.len(), 2);
        c.clear();
        assert!(c.is_empty());
        // The arena is at least one maximal packet: a 64 KiB run fits, then no more.
        let segs = stream(&spec, 1400, 46, 0);
        for s in &segs {
            c.push(s).unwrap();
        }
        assert_eq!(c.len(), 1);
        assert_eq!(c.push(&segs[0]), Err(Full));
        c.finish();
        assert_eq!(resplit(c.packets().next().unwrap()), segs);
        let huge = vec![0x45; MAX_OUTPUT_LEN];
        c.clear();
        assert_eq!(c.push(&huge), Err(Full));
        assert!(c.is_empty());
    }

    #[test]
    fn finish_is_repeatable_and_push_after_finish_works() {
        let spec = Spec::default();
        let segs = stream(&spec, 1000, 4, 0);
        let mut c = Coalescer::new(Config::default());
        c.push(&segs[0]).unwrap();
        c.push(&segs[1]).unwrap();
        c.finish();
        c.push(&segs[2]).unwrap();
        c.push(&segs[3]).unwrap();
        c.finish();
        c.finish();
        assert_eq!(c.len(), 1);
        assert_eq!(resplit(c.packets().next().unwrap()), segs);
    }
}
