//! Per-thread pump counters and the drop reasons.
//!
//! Contract: each pump thread owns one [`PumpCounters`] and is its only writer; a counter's
//! [`Counter::add`] is a relaxed load + store (no locked instruction on the hot path), which is
//! exact because there is one writer. The control plane reads any thread's counters at any
//! time and sums them ([`Totals`]); each value is exact, the set is not one snapshot. Drops are
//! counted by [`DropReason`], whose names are the snake_case labels of the control socket.
//! Batch sizes (segments per GSO send, datagrams per GRO receive) go into [`BatchSizes`]
//! histograms with power-of-two buckets, the same single-writer way.

use std::sync::atomic::{AtomicU64, Ordering};

use encap::backend::DecapError;

/// A counter with a single writer (its pump thread) and any number of readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread may call this (a load + store, not an atomic add).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The upper bounds of the [`BatchSizes`] buckets; a last bucket takes everything above.
pub const BATCH_BOUNDS: [u64; 7] = [1, 2, 4, 8, 16, 32, 64];

/// A histogram of batch sizes with buckets `<= 1, <= 2, <= 4, ... <= 64, > 64` (not
/// cumulative) and their sum; single writer, like [`Counter`].
#[derive(Debug, Default)]
pub struct BatchSizes {
    buckets: [Counter; BATCH_BOUNDS.len() + 1],
    sum: Counter,
}

impl BatchSizes {
    /// Records one batch of `n` items.
    #[inline]
    pub fn record(&self, n: u64) {
        let bucket = if n <= 1 {
            0
        } else {
            // The smallest i with n <= 2^i, capped at the overflow bucket.
            ((u64::BITS - (n - 1).leading_zeros()) as usize).min(BATCH_BOUNDS.len())
        };
        self.buckets[bucket].add(1);
        self.sum.add(n);
    }

    /// Adds this histogram's buckets and sum into `into`.
    pub fn add_to(&self, into: &mut BatchTotals) {
        for (t, b) in into.buckets.iter_mut().zip(&self.buckets) {
            *t += b.get();
        }
        into.sum += self.sum.get();
    }
}

/// [`BatchSizes`] summed over threads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchTotals {
    /// Batches per bucket, as in [`BatchSizes`] (not cumulative).
    pub buckets: [u64; BATCH_BOUNDS.len() + 1],
    /// The sum of all batch sizes.
    pub sum: u64,
}

impl BatchTotals {
    /// The number of batches.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// Why a packet or datagram was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in a fixed order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The snake_case label (the key in the control socket's `drops`).
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    UnknownPeer => "unknown_peer": "A datagram from an underlay address that is no peer.",
    Spoofed => "spoofed": "An inner source outside the sending peer's subnets.",
    Relay => "relay": "An inner destination in a peer's subnet (the sender's own or a third node's): delivering it would make this node relay traffic between peers.",
    Truncated => "truncated": "A datagram shorter than the headers (DecapError::Truncated).",
    ReservedFlags => "reserved_flags": "VXLAN flags other than I.",
    ReservedBits => "reserved_bits": "VXLAN reserved bits set.",
    WrongVni => "wrong_vni": "A VNI that is not ours.",
    WrongDstMac => "wrong_dst_mac": "An inner destination MAC that is not our VtepMAC.",
    Loop => "loop": "An inner source MAC equal to our VtepMAC.",
    NotIp => "not_ip": "An inner ethertype that is not IPv4 or IPv6.",
    BadInner => "bad_inner": "A malformed inner IP packet.",
    Oversized => "oversized": "A decapsulated inner packet longer than the TUN MTU: no peer sends one, the path cannot carry it (except a same-host sender's TCP super-packet with a partial checksum, which is delivered as GSO).",
    NoRoute => "no_route": "A TUN packet whose destination no peer owns (ICMP net unreachable sent).",
    TooBig => "too_big": "A TUN packet larger than the MTU (ICMP frag needed / packet too big sent when due).",
    BadTunPacket => "bad_tun_packet": "A TUN read that is not a valid IP packet or super-packet.",
    TunReadError => "tun_read_error": "A TUN read failed.",
    TunWriteError => "tun_write_error": "A TUN write failed.",
    UdpSendError => "udp_send_error": "A UDP send failed.",
    UdpRecvError => "udp_recv_error": "A UDP receive failed or was truncated.",
}

impl DropReason {
    /// The number of reasons.
    pub const COUNT: usize = DropReason::ALL.len();

    /// Whether it drops a received datagram before the TUN (so that datagrams received =
    /// delivered into the TUN + these + TUN write errors).
    pub fn on_receive(&self) -> bool {
        use DropReason::*;
        match self {
            UnknownPeer | Spoofed | Relay | Truncated | ReservedFlags | ReservedBits | WrongVni
            | WrongDstMac | Loop | NotIp | BadInner | Oversized | UdpRecvError => true,
            NoRoute | TooBig | BadTunPacket | TunReadError | TunWriteError | UdpSendError => false,
        }
    }

    /// Whether it drops a packet read from the TUN on its way to a peer (TUN -> UDP). Every
    /// other reason drops a received datagram (UDP -> TUN), before the TUN or, for
    /// `tun_write_error`, at it.
    pub fn on_transmit(&self) -> bool {
        use DropReason::*;
        match self {
            NoRoute | TooBig | BadTunPacket | TunReadError | UdpSendError => true,
            UnknownPeer | Spoofed | Relay | Truncated | ReservedFlags | ReservedBits | WrongVni
            | WrongDstMac | Loop | NotIp | BadInner | Oversized | UdpRecvError | TunWriteError => {
                false
            }
        }
    }
}

impl From<DecapError> for DropReason {
    fn from(e: DecapError) -> DropReason {
        match e {
            DecapError::Truncated => DropReason::Truncated,
            DecapError::ReservedFlags => DropReason::ReservedFlags,
            DecapError::ReservedBits => DropReason::ReservedBits,
            DecapError::WrongVni => DropReason::WrongVni,
            DecapError::WrongDstMac => DropReason::WrongDstMac,
            DecapError::Loop => DropReason::Loop,
            DecapError::NotIp => DropReason::NotIp,
            DecapError::BadInner(_) => DropReason::BadInner,
        }
    }
}

macro_rules! pump_counters {
    ($($field:ident: $doc:literal,)*) => {
        /// One pump thread's counters; see the module documentation.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct PumpCounters {
            $(#[doc = $doc] pub $field: Counter,)*
            /// Drops, indexed by `DropReason as usize`.
            drops: [Counter; DropReason::COUNT],
            /// Segments per UDP send (1 without GSO).
            pub gso_batch: BatchSizes,
            /// Datagrams per UDP receive (more than 1 with GRO).
            pub gro_batch: BatchSizes,
        }

        /// The sum of every thread's counters.
        #[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
        pub struct Totals {
            $(#[doc = $doc] pub $field: u64,)*
        }

        impl Totals {
            fn add(&mut self, c: &PumpCounters) {
                $(self.$field += c.$field.get();)*
            }
        }
    };
}

pump_counters! {
    tun_rx_packets: "Reads from the TUN (packets or super-packets).",
    tun_rx_bytes: "Bytes read from the TUN (IP bytes, without the virtio header).",
    udp_tx_datagrams: "Datagrams sent (each GSO segment counts).",
    udp_tx_bytes: "UDP payload bytes sent.",
    udp_rx_datagrams: "Datagrams received (each GRO segment counts).",
    udp_rx_bytes: "UDP payload bytes received.",
    tun_tx_packets: "Writes into the TUN (packets or super-packets).",
    tun_tx_bytes: "IP bytes written into the TUN.",
    gso_sends: "Sends carrying more than one segment (UDP_SEGMENT).",
    gso_fallback_sends: "Multi-segment sends done one datagram per segment (GSO refused).",
    gro_merged: "Inner packets merged into a previous one before a TUN write.",
    rx_csum_partial: "Inner TCP/UDP packets received with a partial checksum (a same-host sender's CHECKSUM_PARTIAL across a veth), handed to the TUN for the kernel to complete (NEEDS_CSUM) or completed in software. A full checksum that happens to equal the partial form (about 1 in 65536) counts too; it is completed to itself.",
    icmp_sent: "ICMP errors written into the TUN.",
}

impl PumpCounters {
    /// Counts one drop.
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].add(1);
    }

    /// Counts `n` drops.
    #[inline]
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    /// Drops so far for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }
}

/// Sums the batch-size histograms of every thread: (GSO sends, GRO receives).
pub fn sum_batches<'a>(
    threads: impl IntoIterator<Item = &'a PumpCounters>,
) -> (BatchTotals, BatchTotals) {
    let (mut gso, mut gro) = (BatchTotals::default(), BatchTotals::default());
    for c in threads {
        c.gso_batch.add_to(&mut gso);
        c.gro_batch.add_to(&mut gro);
    }
    (gso, gro)
}

/// Sums the counters of every thread: the totals and the drops by reason (every reason, in
/// [`DropReason::ALL`] order, zero included).
pub fn sum<'a>(
    threads: impl IntoIterator<Item = &'a PumpCounters>,
) -> (Totals, Vec<(DropReason, u64)>) {
    let mut totals = Totals::default();
    let mut drops = [0u64; DropReason::COUNT];
    for c in threads {
        totals.add(c);
        for (d, reason) in drops.iter_mut().zip(DropReason::ALL) {
            *d += c.dropped(*reason);
        }
    }
    let drops = DropReason::ALL.iter().copied().zip(drops).collect();
    (totals, drops)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_land_in_power_of_two_buckets() {
        let h = BatchSizes::default();
        for n in [0, 1, 2, 3, 4, 5, 8, 9, 33, 64, 65, 1000] {
            h.record(n);
        }
        let mut t = BatchTotals::default();
        h.add_to(&mut t);
        // <=1: 0, 1; <=2: 2; <=4: 3, 4; <=8: 5, 8; <=16: 9; <=32: -; <=64: 33, 64; >64: 65, 1000.
        assert_eq!(t.buckets, [2, 1, 2, 2, 1, 0, 2, 2]);
        assert_eq!(t.count(), 12);
        assert_eq!(t.sum, 1 + 2 + 3 + 4 + 5 + 8 + 9 + 33 + 64 + 65 + 1000);
    }

    #[test]
    fn reasons_cover_every_decap_error() {
        for e in [
            DecapError::Truncated,
            DecapError::ReservedFlags,
            DecapError::ReservedBits,
            DecapError::WrongVni,
            DecapError::WrongDstMac,
            DecapError::Loop,
            DecapError::NotIp,
            DecapError::BadInner("x"),
        ] {
            assert_eq!(DropReason::from(e).as_str(), e.reason());
        }
        let names: std::collections::HashSet<&str> =
            DropReason::ALL.iter().map(DropReason::as_str).collect();
        assert_eq!(names.len(), DropReason::COUNT);
        for r in DropReason::ALL {
            assert!(
                !(r.on_receive() && r.on_transmit()),
                "{} is on both sides",
                r.as_str()
            );
            assert_eq!(
                r.on_receive() || r.on_transmit(),
                *r != DropReason::TunWriteError,
                "{}",
                r.as_str()
            );
        }
        for required in [
            "unknown_peer",
            "spoofed",
            "no_route",
            "too_big",
            "tun_write_error",
            "udp_send_error",
        ] {
            assert!(names.contains(required), "{required}");
        }
    }

    #[test]
    fn sums_threads() {
        let a = PumpCounters::default();
        let b = PumpCounters::default();
        a.tun_rx_packets.add(2);
        b.tun_rx_packets.add(3);
        a.count_drop(DropReason::Spoofed);
        b.count_drops(DropReason::Spoofed, 4);
        let (t, d) = sum([&a, &b]);
        assert_eq!(t.tun_rx_packets, 5);
        assert_eq!(
            d.iter().find(|(r, _)| *r == DropReason::Spoofed).unwrap().1,
            5
        );
        assert_eq!(d.len(), DropReason::COUNT);
    }
}
