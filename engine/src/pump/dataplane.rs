//! The per-packet work of a pump thread, independent of how the I/O is driven.
//!
//! Contract: [`Dataplane::tx`] turns one TUN read into a verdict: segments laid out for UDP
//! sends to a peer, an ICMP error to write back into the TUN, or a counted drop.
//! [`Dataplane::rx`] checks and decapsulates one received datagram or GRO batch and hands each
//! valid inner packet to a sink (the driver's coalescer). Neither does I/O, allocates, logs or
//! panics; every drop is counted by reason in the thread's [`PumpCounters`]. The drivers
//! own the buffers and the syscalls and count their outcome with [`Dataplane::sent`],
//! [`Dataplane::send_failed`], [`Dataplane::replied`], [`RxQueue::flush`] and
//! [`count_tun_write`].
//!
//! Inner packets whose TCP/UDP checksum a same-host sender left partial
//! ([`encap::partial_checksum`]) reach the TUN behind a `NEEDS_CSUM` virtio header (the
//! coalescer writes it, for single packets as for merged runs), or, on a TUN without a virtio
//! header, completed in software ([`RxQueue::write_one`]); each is counted in
//! `rx_csum_partial`. Such a sender's GSO packets cross the veth whole, and the kernel's UDP
//! tunnel GSO keeps them whole up to our socket, which returns one as a single datagram: a TCP
//! super-packet is the one inner packet allowed over the MTU (the coalescer writes it as a GSO
//! packet for the kernel to cut), a UDP one is cut into its datagrams here (the kernel reports
//! their size as the UDP_GRO segment size).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use encap::backend::{udp_decap, VxlanDecap, VXLAN_HEADER_LEN};
use encap::gro::{Coalescer, Full};
use encap::gso::{self, Segments};
use encap::icmp::{self, PathError};
use encap::partial_checksum::{self, Partial};
use encap::wire::{self, virtio};

use super::counters::{DropReason, PumpCounters};
use super::PumpConfig;
use crate::model::Backend;
use crate::route::{Peer, RouteTable};

/// The most bytes one TUN read delivers: the virtio header and a 64 KiB super-packet.
pub const TUN_READ_LEN: usize = virtio::HEADER_LEN + 65_535;

/// The most segments one super-packet is split into: 64 KiB of payload in segments of at
/// least 128 bytes. A super-packet with a smaller `gso_size` is dropped as `bad_tun_packet`.
pub const MAX_SPLIT_SEGMENTS: usize = 512;

/// The size of the split output buffer: a 64 KiB packet in [`MAX_SPLIT_SEGMENTS`] segments,
/// each with a VXLAN header and repeated IP + TCP headers.
pub const SPLIT_OUT_LEN: usize =
    gso::max_len(65_535, encap::backend::VXLAN_HEADER_LEN, MAX_SPLIT_SEGMENTS);

/// The size of the buffer a same-host sender's UDP GSO packet is cut in: 64 KiB in up to
/// [`MAX_SPLIT_SEGMENTS`] datagrams, each with its own IP and UDP header.
const UDP_SPLIT_LEN: usize = gso::max_len(65_535, 0, MAX_SPLIT_SEGMENTS);

/// The size of the ICMP reply buffer: a virtio header and the largest ICMP error.
pub const REPLY_LEN: usize = virtio::HEADER_LEN + icmp::MAX_ERROR_LEN;

/// What to do with one TUN read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxVerdict {
    /// Send `segments` of the output buffer to `dst`, in [`Segments::chunks`] of at most
    /// `max_payload` bytes (the underlay's UDP payload limit).
    Send {
        /// The peer's underlay address.
        dst: SocketAddr,
        /// Where the segments are in the output buffer.
        segments: Segments,
        /// The most UDP payload per send.
        max_payload: usize,
    },
    /// Write the first `len` bytes of the reply buffer into the TUN (an ICMP error, behind a
    /// virtio header when the TUN has one).
    Reply {
        /// Bytes to write.
        len: usize,
    },
    /// Dropped (counted).
    Drop,
}

/// One pump thread's packet logic and counters.
#[derive(Debug)]
pub struct Dataplane {
    config: Arc<PumpConfig>,
    counters: Arc<PumpCounters>,
    vxlan: VxlanDecap,
    vnet_len: usize,
    /// Where a same-host sender's UDP GSO packet is cut into its datagrams.
    split: Box<[u8]>,
}

impl Dataplane {
    /// The logic for one thread, counting into `counters`.
    pub fn new(config: Arc<PumpConfig>, counters: Arc<PumpCounters>) -> Dataplane {
        Dataplane {
            vxlan: VxlanDecap {
                vni: config.vni,
                local_mac: config.vtep_mac,
            },
            vnet_len: config.offloads.header_len(),
            split: vec![0u8; UDP_SPLIT_LEN].into_boxed_slice(),
            config,
            counters,
        }
    }

    /// The thread's counters.
    pub fn counters(&self) -> &Arc<PumpCounters> {
        &self.counters
    }

    /// The configuration.
    pub fn config(&self) -> &PumpConfig {
        &self.config
    }

    /// Handles one TUN read `frame` (virtio header, when the TUN has one, then the packet):
    /// looks the destination up in `table`, splits into `out` or writes an ICMP error into
    /// `reply`.
    #[inline]
    pub fn tx(
        &mut self,
        table: &RouteTable,
        frame: &[u8],
        out: &mut [u8],
        reply: &mut [u8],
    ) -> TxVerdict {
        let c = &*self.counters;
        let (vnet, packet) = if self.vnet_len > 0 {
            let Some((hdr, packet)) = frame.split_at_checked(self.vnet_len) else {
                c.count_drop(DropReason::BadTunPacket);
                return TxVerdict::Drop;
            };
            match virtio::VirtioNetRepr::parse(&virtio::VirtioNetHdr::new_unchecked(hdr)) {
                Ok(v) => (v, packet),
                Err(_) => {
                    c.count_drop(DropReason::BadTunPacket);
                    return TxVerdict::Drop;
                }
            }
        } else {
            (virtio::VirtioNetRepr::default(), frame)
        };
        c.tun_rx_packets.add(1);
        c.tun_rx_bytes.add(packet.len() as u64);
        let Some(dst) = wire::destination(packet) else {
            c.count_drop(DropReason::BadTunPacket);
            return TxVerdict::Drop;
        };
        let Some(peer) = table.lookup(dst) else {
            c.count_drop(DropReason::NoRoute);
            return self.net_unreachable(packet, dst, reply);
        };
        let version = if dst.is_ipv4() { 4 } else { 6 };
        let encap_hdr = peer.encap_header(version);
        match gso::split(&vnet, packet, encap_hdr, self.config.mtu, out) {
            Ok(segments) => {
                let inner = segments.len - segments.count * encap_hdr.len();
                peer.counters().add_tx(segments.count as u64, inner as u64);
                let dst = peer.underlay();
                let max_payload = if dst.is_ipv4() {
                    gso::MAX_UDP_PAYLOAD_V4
                } else {
                    gso::MAX_UDP_PAYLOAD_V6
                };
                TxVerdict::Send {
                    dst,
                    segments,
                    max_payload,
                }
            }
            Err(e) if e == gso::TOO_BIG => {
                c.count_drop(DropReason::TooBig);
                self.too_big(packet, reply)
            }
            Err(_) => {
                c.count_drop(DropReason::BadTunPacket);
                TxVerdict::Drop
            }
        }
    }

    /// The ICMP source for an error about a packet to `dst`'s family.
    fn icmp_source(&self, v4: bool) -> Option<IpAddr> {
        if v4 {
            self.config.icmp_source_v4.map(IpAddr::V4)
        } else {
            self.config.icmp_source_v6.map(IpAddr::V6)
        }
    }

    fn net_unreachable(&self, packet: &[u8], dst: IpAddr, reply: &mut [u8]) -> TxVerdict {
        let Some(src) = self.icmp_source(dst.is_ipv4()) else {
            return TxVerdict::Drop;
        };
        let (hdr, body) = reply.split_at_mut(self.vnet_len);
        hdr.fill(0);
        match icmp::net_unreachable(packet, src, body) {
            Some(n) => TxVerdict::Reply {
                len: self.vnet_len + n,
            },
            None => TxVerdict::Drop,
        }
    }

    fn too_big(&self, packet: &[u8], reply: &mut [u8]) -> TxVerdict {
        let (hdr, body) = reply.split_at_mut(self.vnet_len);
        hdr.fill(0);
        let written = match icmp::exceeds_path(packet, self.config.mtu) {
            Some(PathError::FragNeeded { mtu }) => match self.config.icmp_source_v4 {
                Some(src) => icmp::frag_needed(packet, src.octets(), mtu, body),
                None => None,
            },
            Some(PathError::PacketTooBig { mtu }) => match self.config.icmp_source_v6 {
                Some(src) => icmp::packet_too_big(packet, src.octets(), mtu, body),
                None => None,
            },
            None => None,
        };
        match written {
            Some(n) => TxVerdict::Reply {
                len: self.vnet_len + n,
            },
            None => TxVerdict::Drop,
        }
    }

    /// Counts a send of `bytes` UDP payload bytes in `segments` datagrams; `gso_on` is whether
    /// the socket still used UDP_SEGMENT.
    #[inline]
    pub fn sent(&self, segments: usize, bytes: usize, gso_on: bool) {
        let c = &*self.counters;
        c.udp_tx_datagrams.add(segments as u64);
        c.udp_tx_bytes.add(bytes as u64);
        c.gso_batch.record(segments as u64);
        if segments > 1 {
            if gso_on {
                c.gso_sends.add(1);
            } else {
                c.gso_fallback_sends.add(1);
            }
        }
    }

    /// Counts a failed send of `segments` datagrams.
    #[inline]
    pub fn send_failed(&self, segments: usize) {
        self.counters
            .count_drops(DropReason::UdpSendError, segments as u64);
    }

    /// Counts an ICMP error written into the TUN (or a failed write).
    #[inline]
    pub fn replied(&self, ok: bool) {
        if ok {
            self.counters.icmp_sent.add(1);
        } else {
            self.counters.count_drop(DropReason::TunWriteError);
        }
    }

    /// Handles one received datagram or GRO batch of `len` bytes from `src`, cut in segments of
    /// `segment_size`: checks the sender, decapsulates, checks each inner source against the
    /// peer's subnets (unless the config allows foreign sources) and each inner destination
    /// against the table (one a peer owns is a relay, dropped), and hands each valid inner
    /// packet to `sink`.
    ///
    /// One case is no batch: a same-host sender's GSO packet that a veth and the kernel's UDP
    /// tunnel GSO kept whole up to our socket (one encapsulated frame filling `bytes`, its
    /// inner TCP or UDP checksum partial). Its TCP form arrives without a segment size and
    /// goes on whole (the coalescer writes it as a GSO packet); for its UDP form the kernel
    /// reports the size of the inner datagrams, and it is cut into them here.
    #[inline]
    pub fn rx(
        &mut self,
        table: &RouteTable,
        bytes: &[u8],
        segment_size: usize,
        src: SocketAddr,
        sink: &mut impl FnMut(&[u8]),
    ) {
        let c = &*self.counters;
        let mut segment_size = if segment_size == 0 {
            bytes.len().max(1)
        } else {
            segment_size
        };
        let whole = if segment_size < bytes.len() {
            self.whole_super_packet(bytes)
        } else {
            None
        };
        let count = match whole {
            Some((_, part)) if part.is_tcp() => {
                segment_size = bytes.len();
                1
            }
            // Each of its datagrams counts, as a GRO batch's do.
            Some((inner, part)) => {
                let payload = inner.len() - usize::from(part.csum_start) - 8;
                payload.div_ceil(segment_size).max(1) as u64
            }
            None => bytes.len().div_ceil(segment_size).max(1) as u64,
        };
        c.udp_rx_datagrams.add(count);
        c.gro_batch.record(count);
        c.udp_rx_bytes.add(bytes.len() as u64);
        let Some(peer) = table.peer_by_underlay(src.ip()) else {
            c.count_drops(DropReason::UnknownPeer, count);
            return;
        };
        if bytes.is_empty() {
            c.count_drop(DropReason::Truncated);
            return;
        }
        let check = Check::new(&self.config, c, self.vnet_len, table, peer);
        let mut delivered = Delivered::default();
        if let Some((inner, part)) = whole.filter(|(_, part)| !part.is_tcp()) {
            c.rx_csum_partial.add(1);
            let split = part
                .gso(inner, segment_size)
                .ok_or(gso::TOO_BIG)
                .and_then(|vnet| gso::split(&vnet, inner, &[], self.config.mtu, &mut self.split));
            match split {
                Ok(segments) => {
                    for i in 0..segments.count {
                        let inner = &self.split[segments.segment(i)];
                        if check.passes(inner) {
                            delivered.add(inner);
                            sink(inner);
                        }
                    }
                }
                // Datagrams over the MTU, or too many to cut.
                Err(_) => c.count_drops(DropReason::Oversized, count),
            }
        } else {
            for segment in bytes.chunks(segment_size) {
                // (host-gw has no pumps: Pumps::start refuses it. Its packets would be bare
                // IP, as udp's.)
                let inner = match self.config.backend {
                    Backend::Udp | Backend::HostGw => udp_decap(segment),
                    Backend::Vxlan => self.vxlan.decap(segment).map(|d| d.inner),
                };
                let inner = match inner {
                    Ok(inner) => inner,
                    Err(e) => {
                        c.count_drop(DropReason::from(e));
                        continue;
                    }
                };
                if check.passes(inner) {
                    delivered.add(inner);
                    sink(inner);
                }
            }
        }
        if delivered.packets > 0 {
            peer.counters().add_rx(delivered.packets, delivered.bytes);
        }
    }

    /// `bytes` as one encapsulated frame (not a batch) whose inner packet has a partial TCP or
    /// UDP checksum: a same-host sender's GSO packet (see [`Dataplane::rx`]).
    fn whole_super_packet<'a>(&self, bytes: &'a [u8]) -> Option<(&'a [u8], Partial)> {
        let (inner, header_len) = match self.config.backend {
            Backend::Udp | Backend::HostGw => (udp_decap(bytes).ok()?, 0),
            Backend::Vxlan => (self.vxlan.decap(bytes).ok()?.inner, VXLAN_HEADER_LEN),
        };
        if header_len + inner.len() != bytes.len() {
            return None;
        }
        // Its IPv4 header must verify as it came (the cut recomputes the segments' ones).
        if !wire::ipv4_header_verifies(inner) {
            return None;
        }
        Some((inner, partial_checksum::find(inner)?))
    }
}

/// Packets and bytes handed to the sink.
#[derive(Debug, Default)]
struct Delivered {
    packets: u64,
    bytes: u64,
}

impl Delivered {
    fn add(&mut self, inner: &[u8]) {
        self.packets += 1;
        self.bytes += inner.len() as u64;
    }
}

/// The checks of one decapsulated inner packet before the TUN; each failure is counted.
struct Check<'a> {
    config: &'a PumpConfig,
    counters: &'a PumpCounters,
    vnet_len: usize,
    table: &'a RouteTable,
    peer: &'a Peer,
}

impl<'a> Check<'a> {
    fn new(
        config: &'a PumpConfig,
        counters: &'a PumpCounters,
        vnet_len: usize,
        table: &'a RouteTable,
        peer: &'a Peer,
    ) -> Check<'a> {
        Check {
            config,
            counters,
            vnet_len,
            table,
            peer,
        }
    }

    /// Whether `inner` may go into the TUN.
    #[inline]
    fn passes(&self, inner: &[u8]) -> bool {
        let c = self.counters;
        // The kernel drops an IPv4 header whose checksum fails (InHdrErrors): so do we, so that
        // nothing goes into the TUN that the stack behind it rejects.
        if !wire::ipv4_header_verifies(inner) {
            c.count_drop(DropReason::BadInner);
            return false;
        }
        if inner.len() > self.config.mtu && !self.is_same_host_super_packet(inner) {
            c.count_drop(DropReason::Oversized);
            return false;
        }
        match wire::source(inner) {
            Some(s) if self.config.allow_foreign_inner_source || self.peer.owns(s) => {}
            _ => {
                c.count_drop(DropReason::Spoofed);
                return false;
            }
        }
        // Only what is for us goes into the TUN: a destination that a peer owns would be
        // routed back out by our kernel (a relay, and with forwarding off a silent drop).
        match wire::destination(inner) {
            Some(d) if self.table.lookup(d).is_none() => true,
            _ => {
                c.count_drop(DropReason::Relay);
                false
            }
        }
    }

    /// Whether an inner packet over the MTU is a same-host Linux sender's TCP super-packet: TCP
    /// with a partial checksum (TSO and checksum offload go together), which a veth and the
    /// kernel's UDP tunnel GSO carry whole up to our socket. The coalescer hands it to the TUN
    /// as a GSO packet cut at the MTU. Only with a virtio header: without one there is no way
    /// to ask the kernel to cut it.
    fn is_same_host_super_packet(&self, inner: &[u8]) -> bool {
        self.vnet_len > 0 && partial_checksum::find(inner).is_some_and(|p| p.is_tcp())
    }
}

/// A coalescer and how to use it for the TUN: whether the TUN takes a virtio header at all.
#[derive(Debug)]
pub struct RxQueue {
    coalescer: Coalescer,
    vnet: bool,
    pushed: u64,
    /// Where [`RxQueue::write_one`] completes a partial checksum (empty with a virtio header).
    scratch: Box<[u8]>,
}

impl RxQueue {
    /// A queue for a TUN with (`vnet`) or without a virtio header.
    pub fn new(coalescer: Coalescer, vnet: bool) -> RxQueue {
        let scratch_len = if vnet { 0 } else { encap::gro::MAX_IP_LEN };
        RxQueue {
            coalescer,
            vnet,
            pushed: 0,
            scratch: vec![0u8; scratch_len].into_boxed_slice(),
        }
    }

    /// Whether packets are coalesced (the TUN has a virtio header), or written one by one
    /// with [`RxQueue::write_one`].
    pub fn coalescing(&self) -> bool {
        self.vnet
    }

    /// Writes one inner packet into a TUN without a virtio header (when not
    /// [`RxQueue::coalescing`]) with `write`, which returns whether the TUN took it, and counts
    /// it. A partial checksum is completed first, in a copy: without the header the kernel
    /// cannot be asked to, and would drop the packet.
    pub fn write_one(
        &mut self,
        inner: &[u8],
        counters: &PumpCounters,
        write: impl FnOnce(&[u8]) -> bool,
    ) {
        let packet = match partial_checksum::find(inner) {
            Some(partial) if inner.len() <= self.scratch.len() => {
                counters.rx_csum_partial.add(1);
                let copy = &mut self.scratch[..inner.len()];
                copy.copy_from_slice(inner);
                partial.complete(copy);
                &*copy
            }
            _ => inner,
        };
        count_tun_write(counters, packet.len(), write(packet));
    }

    /// Hands one received inner packet towards the TUN: written at once with `write` when not
    /// [`RxQueue::coalescing`]; else queued, and when the queue is full, `flush` (the driver's
    /// way of writing the queue out) runs first. A packet that an empty queue does not take is
    /// impossible (it takes anything up to 64 KiB, longer than any UDP payload) and counted as
    /// [`DropReason::BadInner`].
    #[inline]
    pub fn deliver(
        &mut self,
        inner: &[u8],
        counters: &PumpCounters,
        write: impl FnOnce(&[u8]) -> bool,
        flush: impl FnOnce(&mut RxQueue),
    ) {
        if !self.coalescing() {
            self.write_one(inner, counters, write);
            return;
        }
        if self.push(inner).is_ok() {
            return;
        }
        flush(self);
        if self.push(inner).is_err() {
            counters.count_drop(DropReason::BadInner);
        }
    }

    /// Adds an inner packet; `Err(Full)` when the caller must flush first.
    #[inline]
    pub fn push(&mut self, packet: &[u8]) -> Result<(), Full> {
        self.coalescer.push(packet)?;
        self.pushed += 1;
        Ok(())
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.coalescer.is_empty()
    }

    /// Finishes the queued packets and calls `write` with each (virtio header included), then
    /// counts and clears. `write` returns whether the TUN took the packet.
    pub fn flush(&mut self, counters: &PumpCounters, mut write: impl FnMut(&[u8]) -> bool) {
        if self.coalescer.is_empty() {
            return;
        }
        self.coalescer.finish();
        let mut written = 0u64;
        for p in self.coalescer.packets() {
            if write(p) {
                counters.tun_tx_packets.add(1);
                counters
                    .tun_tx_bytes
                    .add((p.len() - virtio::HEADER_LEN) as u64);
            } else {
                counters.count_drop(DropReason::TunWriteError);
            }
            written += 1;
        }
        counters.gro_merged.add(self.pushed.saturating_sub(written));
        counters
            .rx_csum_partial
            .add(self.coalescer.take_partial_packets());
        self.pushed = 0;
        self.coalescer.clear();
    }

    /// Borrows the finished packets without clearing (for drivers that write asynchronously):
    /// call [`RxQueue::finish`] first, and [`RxQueue::clear`] once every write completed.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.coalescer.packets()
    }

    /// Writes the final headers of the queued packets (see [`Coalescer::finish`]) and counts
    /// the merges and partial checksums; returns the number of output packets.
    pub fn finish(&mut self, counters: &PumpCounters) -> usize {
        self.coalescer.finish();
        let n = self.coalescer.len();
        counters
            .gro_merged
            .add(self.pushed.saturating_sub(n as u64));
        counters
            .rx_csum_partial
            .add(self.coalescer.take_partial_packets());
        self.pushed = 0;
        n
    }

    /// Forgets the queued packets.
    pub fn clear(&mut self) {
        self.coalescer.clear();
        self.pushed = 0;
    }
}

/// Counts one TUN write of an IP packet of `ip_len` bytes.
#[inline]
pub fn count_tun_write(counters: &PumpCounters, ip_len: usize, ok: bool) {
    if ok {
        counters.tun_tx_packets.add(1);
        counters.tun_tx_bytes.add(ip_len as u64);
    } else {
        counters.count_drop(DropReason::TunWriteError);
    }
}
