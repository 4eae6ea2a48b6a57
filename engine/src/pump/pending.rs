//! Batching single datagrams from successive TUN reads into one GSO send, for both drivers.
//!
//! Contract: a [`Pending`] describes datagrams for one peer laid out back to back in a driver's
//! send buffer, all `stride` bytes long but the last, which may be shorter and closes the
//! batch; at most [`UDP_MAX_SEGMENTS`] of them and one UDP payload in all. That is the layout
//! of one `sendmsg` with UDP_SEGMENT = `stride` (linux/udp.h; the kernel cuts the payload
//! into `stride`-byte datagrams, the last one shorter), and it is a [`Segments`].
//! [`Pending::place`] says where the next TUN read's output goes: onto the batch, into a new
//! batch after the current one is sent, or alone after the current one is sent; so what leaves
//! for the network leaves in the order it was read. When a batch is sent is the driver's rule
//! (the poll driver at the end of every drain of the TUN, the io_uring driver at the end of
//! every turn): never later than that, so a datagram never waits for more traffic. Nothing
//! here does I/O or touches the bytes.

use std::net::SocketAddr;

use encap::gso::Segments;

use crate::underlay::UDP_MAX_SEGMENTS;

/// Single datagrams for one peer waiting in a send buffer for one GSO send; see the module
/// documentation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    dst: Option<SocketAddr>,
    /// Bytes held.
    len: usize,
    stride: usize,
    count: usize,
    /// A shorter datagram came last: nothing more may follow it.
    closed: bool,
}

/// Where the output of one TUN read goes, given the [`Pending`] batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// Onto the batch, after what it holds ([`Pending::push`]); an empty batch starts with it.
    Join,
    /// The batch is sent first; then this datagram starts a new one.
    Restart,
    /// The batch is sent first; then this output (several datagrams, or one larger than a UDP
    /// payload) is sent on its own.
    Alone,
}

impl Pending {
    /// Where `segments` (one TUN read's output, to `dst`, at most `max_payload` bytes per
    /// send) go: only a single, non-empty datagram may join a batch.
    pub(super) fn place(&self, dst: SocketAddr, segments: &Segments, max_payload: usize) -> Place {
        if segments.count != 1 || segments.len == 0 || segments.len > max_payload {
            return Place::Alone;
        }
        if self.accepts(dst, segments.len, max_payload) {
            Place::Join
        } else {
            Place::Restart
        }
    }

    /// Whether a datagram of `len` bytes to `dst` may join (an empty batch takes anything that
    /// fits `max_payload`).
    pub(super) fn accepts(&self, dst: SocketAddr, len: usize, max_payload: usize) -> bool {
        if self.count == 0 {
            return len <= max_payload;
        }
        self.dst == Some(dst)
            && !self.closed
            && len <= self.stride
            && self.len + len <= max_payload
            && self.count < UDP_MAX_SEGMENTS
    }

    /// Adds a datagram of `len` bytes to `dst` (which [`Pending::accepts`]).
    pub(super) fn push(&mut self, dst: SocketAddr, len: usize) {
        if self.count == 0 {
            *self = Pending {
                dst: Some(dst),
                stride: len,
                ..Pending::default()
            };
        }
        self.closed = len < self.stride;
        self.len += len;
        self.count += 1;
    }

    /// Bytes held: where the next datagram goes in the send buffer.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether no datagram waits.
    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Empties the batch and gives what it held: the peer and the datagrams, at the start of
    /// the send buffer. They go in one send of all `len` bytes with UDP_SEGMENT = `stride`
    /// (not in [`Segments::chunks`], which cuts at whole strides and may make two sends of a
    /// batch whose shorter last datagram fits the payload limit). `None` when empty.
    pub(super) fn take(&mut self) -> Option<(SocketAddr, Segments)> {
        let dst = self.dst.filter(|_| self.count > 0)?;
        let segments = Segments {
            count: self.count,
            stride: self.stride,
            len: self.len,
        };
        *self = Pending::default();
        Some((dst, segments))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn a() -> SocketAddr {
        "192.0.2.1:8285".parse().unwrap()
    }

    fn b() -> SocketAddr {
        "192.0.2.2:8285".parse().unwrap()
    }

    fn single(len: usize) -> Segments {
        Segments {
            count: 1,
            stride: len,
            len,
        }
    }

    const MAX: usize = encap::gso::MAX_UDP_PAYLOAD_V4;

    #[test]
    fn batches_equal_datagrams_to_one_peer_and_closes_on_a_shorter_one() {
        let (a, b) = (a(), b());
        let mut p = Pending::default();
        assert!(p.accepts(a, 1428, MAX));
        assert!(
            !p.accepts(a, MAX + 1, MAX),
            "nothing larger than one UDP payload"
        );
        p.push(a, 1428);
        assert!(p.accepts(a, 1428, MAX));
        assert!(!p.accepts(b, 1428, MAX), "another peer");
        assert!(!p.accepts(a, 1429, MAX), "longer than the stride");
        p.push(a, 1428);
        p.push(a, 100);
        assert_eq!((p.len, p.count, p.stride), (2956, 3, 1428));
        assert!(!p.accepts(a, 100, MAX), "a shorter datagram ends the batch");

        // A batch stops at 64 datagrams and at one UDP payload.
        let mut p = Pending::default();
        for _ in 0..UDP_MAX_SEGMENTS {
            assert!(p.accepts(a, 64, MAX));
            p.push(a, 64);
        }
        assert!(!p.accepts(a, 64, MAX));
        let mut p = Pending::default();
        while p.accepts(a, 1400, MAX) {
            p.push(a, 1400);
        }
        assert_eq!(p.count, MAX / 1400);
        assert!(p.len <= MAX);
    }

    #[test]
    fn place_joins_single_datagrams_and_sends_the_batch_before_anything_else() {
        let (a, b) = (a(), b());
        let mut p = Pending::default();
        assert_eq!(
            p.place(a, &single(1400), MAX),
            Place::Join,
            "an empty batch"
        );
        p.push(a, 1400);
        assert_eq!(p.place(a, &single(1400), MAX), Place::Join);
        assert_eq!(p.place(a, &single(64), MAX), Place::Join, "shorter: joins");
        assert_eq!(p.place(b, &single(1400), MAX), Place::Restart, "peer");
        assert_eq!(p.place(a, &single(1401), MAX), Place::Restart, "longer");
        let split = Segments {
            count: 3,
            stride: 1400,
            len: 4000,
        };
        assert_eq!(
            p.place(a, &split, MAX),
            Place::Alone,
            "a split super-packet"
        );
        assert_eq!(
            Pending::default().place(a, &split, MAX),
            Place::Alone,
            "never batched, even alone"
        );
        assert_eq!(
            Pending::default().place(a, &single(MAX + 1), MAX),
            Place::Alone,
            "over one UDP payload: sent alone (and refused by the kernel, counted)"
        );
        p.push(a, 64);
        assert_eq!(p.place(a, &single(64), MAX), Place::Restart, "closed");
        assert_eq!(p.place(a, &single(0), MAX), Place::Alone, "no zero stride");
    }

    #[test]
    fn take_gives_one_send_and_empties() {
        let a = a();
        let mut p = Pending::default();
        assert!(p.is_empty());
        assert_eq!(p.take(), None);
        for len in [1400, 1400, 1400, 700] {
            p.push(a, len);
        }
        assert_eq!(p.len(), 4900);
        let (dst, segments) = p.take().unwrap();
        assert_eq!(dst, a);
        assert_eq!(
            segments,
            Segments {
                count: 4,
                stride: 1400,
                len: 4900
            }
        );
        assert!(p.is_empty());
        assert_eq!(p, Pending::default());
        assert_eq!(p.take(), None);

        // 46 full datagrams of 1400 and a shorter one fill 65400 of the 65507 bytes: one send
        // of 47, where cutting at whole strides would make two.
        for _ in 0..46 {
            p.push(a, 1400);
        }
        assert_eq!(p.place(a, &single(1000), MAX), Place::Join);
        p.push(a, 1000);
        let (_, segments) = p.take().unwrap();
        assert_eq!((segments.count, segments.len), (47, 65_400));
        assert_eq!(segments.chunks(UDP_MAX_SEGMENTS, MAX).count(), 2);
    }

    /// Any sequence of outputs placed as the drivers do: every batch is one chunk of at most
    /// 64 equal datagrams (the last may be shorter) to one peer, and the datagrams come out
    /// in the order they went in.
    #[test]
    fn batches_are_valid_gso_sends_in_order() {
        let peers = [a(), b()];
        // A fixed pseudo-random walk over peers and lengths (some repeated, some shorter).
        let mut x = 0x2545_f491u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut p = Pending::default();
        let (mut sent, mut input) = (Vec::new(), Vec::new());
        let flush = |p: &mut Pending, sent: &mut Vec<(SocketAddr, usize)>| {
            if let Some((dst, s)) = p.take() {
                // One valid UDP_SEGMENT send: at most 64 datagrams in one UDP payload, all
                // `stride` long but the last, which is not longer.
                assert!(s.count <= UDP_MAX_SEGMENTS && s.len <= MAX, "{s:?}");
                assert!(s.len > (s.count - 1) * s.stride && s.len <= s.count * s.stride);
                for i in 0..s.count {
                    sent.push((dst, s.segment(i).len()));
                }
            }
        };
        for _ in 0..2_000 {
            let r = next();
            let dst = peers[usize::from(r % 7 == 0)];
            let len = match r % 5 {
                0 => 64,
                1 => 700 + (r as usize >> 8) % 700,
                _ => 1400,
            };
            let segments = if r % 31 == 0 {
                Segments {
                    count: 2,
                    stride: len,
                    len: 2 * len,
                }
            } else {
                single(len)
            };
            // Runs of one kind, long enough to fill batches (64 datagrams, one payload).
            for _ in 0..=(r >> 20) % 100 {
                input.push((dst, segments));
                match p.place(dst, &segments, MAX) {
                    Place::Join => p.push(dst, len),
                    Place::Restart => {
                        flush(&mut p, &mut sent);
                        p.push(dst, len);
                    }
                    Place::Alone => {
                        flush(&mut p, &mut sent);
                        for i in 0..segments.count {
                            sent.push((dst, segments.segment(i).len()));
                        }
                    }
                }
            }
        }
        flush(&mut p, &mut sent);
        let want: Vec<_> = input
            .iter()
            .flat_map(|(d, s)| (0..s.count).map(move |i| (*d, s.segment(i).len())))
            .collect();
        assert_eq!(sent, want);
    }
}
