//! The io_uring driver: one ring per pump thread with several TUN reads and UDP receives
//! always in flight, sends and TUN writes submitted in batches, one `io_uring_enter` per turn.
//!
//! Contract: the thread arms [`TUN_SLOTS`] TUN reads (`READ_FIXED` into registered buffers
//! when the kernel allows), [`RECV_SLOTS`] `RECVMSG`s (UDP_GRO) and a poll on the stop
//! eventfd, then loops: one `submit_and_wait` (which also submits everything queued in the
//! previous turn), then every completion: a TUN read is split straight into a free send slot
//! and leaves as `SENDMSG`s with UDP_SEGMENT (when every send slot is in flight the read
//! waits, which throttles the TUN); a receive is decapsulated into the coalescer and re-armed;
//! at the end of the turn (and whenever the coalescer is full) the coalesced packets go to the
//! TUN as one batch of `WRITE`s.
//!
//! TUN reads of the same turn that each give one datagram (UDP, small TCP segments) to the
//! same peer, of one size (the last may be shorter), are gathered in one send slot by the
//! rules of [`Pending`] and leave as one `SENDMSG` with UDP_SEGMENT: the first stays in the
//! slot it was split into, the others are copied behind it. Anything else that goes out (a
//! split super-packet, a datagram for another peer or longer, an ICMP error into the TUN)
//! sends the batch first, so the order of reads is the order of sends, and the turn queues it
//! at its end, before the next `submit_and_wait`: a datagram never waits for more traffic.
//! A batch is at most what one turn reads ([`TUN_SLOTS`]).
//!
//! The fds are made blocking: io_uring waits for readiness itself. When the socket stops
//! taking UDP_SEGMENT (EIO / EINVAL), sends (batches too) go through
//! [`UdpSocket::send_gso`]'s one-datagram-per-segment fallback synchronously. Nothing is
//! allocated per packet; an idle thread sleeps in `io_uring_enter`. For
//! [`PumpConfig::busy_poll`](super::PumpConfig::busy_poll) after a turn that handled a
//! completion, the turns submit and peek (`io_uring_enter` without waiting, a `sched_yield`
//! between) instead of sleeping ([`BusyPoll`]). The slots are
//! [`PumpRing`]'s (`ring.rs`), on the buffer-owning ring of `sys::uring`.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use encap::gro::Coalescer;

use super::busy_poll::{BusyPoll, Next, TurnOutcome};
use super::dataplane::{
    count_tun_write, Dataplane, RxQueue, TxVerdict, REPLY_LEN, SPLIT_OUT_LEN, TUN_READ_LEN,
};
use super::pending::{Pending, Place};
use super::poll_driver::{coalescer_config, RX_SLOT_LEN};
use super::ring::{Event, PumpRing, PumpRingConfig, MAX_CHUNKS};
use super::{DropReason, PumpCounters};
use crate::route::{RouteTable, Routes};
use crate::tun::TunQueue;
use crate::underlay::{UdpSocket, UDP_MAX_SEGMENTS};
use crate::Stop;

pub use super::ring::probe;

/// TUN reads kept in flight.
pub const TUN_SLOTS: usize = 8;
/// UDP receives kept in flight.
pub const RECV_SLOTS: usize = 16;
/// Super-packets being sent at once.
pub const SEND_SLOTS: usize = 16;
/// Consecutive failed reads or receives after which the thread gives up.
const MAX_CONSECUTIVE_ERRORS: u32 = 1000;

/// Segments and bytes of each chunk of each send slot, for counting completions.
type ChunkInfo = [(usize, usize); MAX_CHUNKS];

struct Turn<'a, 'fd> {
    dp: Dataplane,
    ring: PumpRing<'fd>,
    rxq: RxQueue,
    tun: &'a TunQueue,
    udp: &'a UdpSocket,
    counters: Arc<PumpCounters>,
    reply: Vec<u8>,
    chunk_info: Vec<ChunkInfo>,
    /// TUN slots read but waiting for a free send slot: (slot, bytes).
    waiting: Vec<(usize, usize)>,
    /// Single datagrams from this turn's TUN reads waiting for one GSO send.
    pending: Pending,
    /// The claimed send slot holding them (`Some` exactly when `pending` is not empty).
    batch: Option<usize>,
    read_errors: u32,
    recv_errors: u32,
    gso_warned: bool,
    /// Stopping: completions are handled but nothing is re-armed.
    draining: bool,
}

/// Runs one pump thread on an io_uring until `stop` is requested.
pub fn run(
    dp: Dataplane,
    tun: &TunQueue,
    udp: &UdpSocket,
    routes: &Arc<Routes>,
    stop: &Stop,
) -> io::Result<()> {
    tun.set_nonblocking(false).map_err(io::Error::other)?;
    udp.set_nonblocking(false).map_err(io::Error::other)?;
    let config = PumpRingConfig {
        tun_slots: TUN_SLOTS,
        tun_slot_len: TUN_READ_LEN,
        recv_slots: RECV_SLOTS,
        send_slots: SEND_SLOTS,
        send_slot_len: SPLIT_OUT_LEN,
        write_batch: RECV_SLOTS * UDP_MAX_SEGMENTS,
    };
    let ring = PumpRing::new(tun.as_fd(), udp.as_fd(), stop.event().as_fd(), &config)?;
    tracing::debug!(
        "pump ring: {TUN_SLOTS} TUN reads, {RECV_SLOTS} receives, {SEND_SLOTS} send slots, registered buffers {}",
        ring.registered_buffers()
    );
    let cfg = *dp.config();
    let mut t = Turn {
        counters: Arc::clone(dp.counters()),
        dp,
        ring,
        rxq: RxQueue::new(
            Coalescer::new(coalescer_config(&cfg)),
            cfg.offloads.vnet_hdr,
        ),
        tun,
        udp,
        reply: vec![0u8; REPLY_LEN],
        chunk_info: vec![[(0, 0); MAX_CHUNKS]; SEND_SLOTS],
        waiting: Vec::with_capacity(TUN_SLOTS),
        pending: Pending::default(),
        batch: None,
        read_errors: 0,
        recv_errors: 0,
        gso_warned: false,
        draining: false,
    };
    for slot in 0..TUN_SLOTS {
        t.ring.read_tun(slot)?;
    }
    for slot in 0..RECV_SLOTS {
        t.ring
            .recv(slot, vec![0u8; RX_SLOT_LEN].into_boxed_slice())?;
    }
    t.ring.watch_wake()?;
    let mut cache = arc_swap::Cache::new(Arc::clone(routes));
    let mut busy_poll = BusyPoll::new(cfg.busy_poll);
    let mut wait = true;
    while !stop.requested() {
        t.ring.submit_and_wait(wait)?;
        let table = cache.load();
        let mut moved = false;
        while let Some(event) = t.ring.next_event() {
            moved = true;
            t.handle(table, event)?;
        }
        t.finish_turn();
        // The ring has no batch limit: every completion there was is handled in the turn.
        let turn = TurnOutcome { moved, full: false };
        wait = match busy_poll.after(turn, Instant::now) {
            Next::Turn => false,
            Next::Spin => {
                std::thread::yield_now();
                false
            }
            Next::Block => true,
        };
    }
    t.drain(&mut cache)
}

impl Turn<'_, '_> {
    /// Stops at a batch boundary without losing a packet: cancels the armed TUN reads and
    /// receives, handles what completed before the cancellation (forwarded as usual, nothing
    /// re-armed), waits for every send and write, then flushes the coalescer. What was not
    /// read stays queued in the TUN queue and the socket for whoever reads them next (a
    /// successor weftd after a handover).
    fn drain(
        &mut self,
        cache: &mut arc_swap::Cache<Arc<Routes>, Arc<RouteTable>>,
    ) -> io::Result<()> {
        self.draining = true;
        self.ring.cancel_reads()?;
        while self.ring.in_flight() > 0 || self.ring.has_events() || !self.waiting.is_empty() {
            if !self.ring.has_events() {
                self.ring.submit_and_wait(true)?;
            }
            let table = cache.load();
            while let Some(event) = self.ring.next_event() {
                self.handle(table, event)?;
            }
            self.finish_turn();
            if self.ring.in_flight() == 0 && !self.waiting.is_empty() {
                // Every send slot is free again: what waited for one goes now.
                self.drain_waiting(table)?;
                self.finish_turn();
            }
        }
        Ok(())
    }

    fn handle(&mut self, table: &RouteTable, event: Event) -> io::Result<()> {
        match event {
            Event::TunRead { slot, result } => match result {
                Ok(n) => {
                    self.read_errors = 0;
                    if self.ring.has_free_send() && self.waiting.is_empty() {
                        self.tx(table, slot, n)?;
                    } else {
                        self.waiting.push((slot, n));
                    }
                }
                Err(_) if self.draining => {}
                Err(e) => {
                    self.counters.count_drop(DropReason::TunReadError);
                    self.read_errors += 1;
                    if self.read_errors > MAX_CONSECUTIVE_ERRORS {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("the TUN queue keeps failing reads: {e}"),
                        ));
                    }
                    self.ring.read_tun(slot)?;
                }
            },
            Event::Recv { slot, result } => {
                let Some(buf) = self.ring.take_recv(slot) else {
                    return Err(io::Error::other("receive slot without its buffer"));
                };
                match result {
                    Ok(meta) => {
                        self.recv_errors = 0;
                        match meta.src {
                            Some(src) if !meta.truncated && !meta.control_truncated => {
                                let seg = meta.gro_segment_size.map_or(meta.len, usize::from);
                                let data = &buf[..meta.len.min(buf.len())];
                                let (ring, rxq, tun, counters) =
                                    (&mut self.ring, &mut self.rxq, self.tun, &*self.counters);
                                self.dp.rx(table, data, seg, src, &mut |inner: &[u8]| {
                                    rxq.deliver(
                                        inner,
                                        counters,
                                        |p| tun.write(p).is_ok(),
                                        |q| flush(ring, q, counters),
                                    );
                                });
                            }
                            _ => self.counters.count_drop(DropReason::UdpRecvError),
                        }
                    }
                    Err(_) if self.draining => {}
                    Err(e) => {
                        self.counters.count_drop(DropReason::UdpRecvError);
                        self.recv_errors += 1;
                        if self.recv_errors > MAX_CONSECUTIVE_ERRORS {
                            return Err(io::Error::new(
                                e.kind(),
                                format!("the UDP socket keeps failing receives: {e}"),
                            ));
                        }
                    }
                }
                if !self.draining {
                    self.ring.recv(slot, buf)?;
                }
            }
            Event::Sent {
                slot,
                chunk,
                result,
            } => {
                let (count, bytes) = self
                    .chunk_info
                    .get(slot)
                    .and_then(|c| c.get(chunk))
                    .copied()
                    .unwrap_or((1, 0));
                match result {
                    Ok(_) => self.dp.sent(count, bytes, true),
                    Err(e) => {
                        if count > 1 && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) {
                            self.udp.disable_gso();
                            if !self.gso_warned {
                                self.gso_warned = true;
                                tracing::warn!("UDP GSO send refused ({e}); sending one datagram per segment from now on");
                            }
                        }
                        self.dp.send_failed(count);
                    }
                }
                self.drain_waiting(table)?;
            }
            Event::Wake => {}
        }
        Ok(())
    }

    /// Handles TUN reads that waited for a send slot, while slots are free.
    fn drain_waiting(&mut self, table: &RouteTable) -> io::Result<()> {
        while self.ring.has_free_send() {
            let Some(&(slot, n)) = self.waiting.first() else {
                break;
            };
            self.waiting.remove(0);
            self.tx(table, slot, n)?;
        }
        Ok(())
    }

    /// Splits TUN read `slot` (`n` bytes) into a send slot and queues its sends, or adds its
    /// single datagram to the batch; re-arms the read.
    fn tx(&mut self, table: &RouteTable, slot: usize, n: usize) -> io::Result<()> {
        let Some(send) = self.ring.claim_send() else {
            self.waiting.push((slot, n));
            return Ok(());
        };
        let Some((frame, out)) = self.ring.tx_buffers(slot, send) else {
            return Err(io::Error::other("TUN or send slot in an unexpected state"));
        };
        let verdict = self
            .dp
            .tx(table, &frame[..n.min(frame.len())], out, &mut self.reply);
        match verdict {
            TxVerdict::Send {
                dst,
                segments,
                max_payload,
            } => match self.pending.place(dst, &segments, max_payload) {
                Place::Join => self.join(send, dst, segments.len)?,
                Place::Restart => {
                    self.send_batch();
                    self.join(send, dst, segments.len)?;
                }
                Place::Alone => {
                    self.send_batch();
                    let chunks = segments.chunks(UDP_MAX_SEGMENTS, max_payload);
                    self.send(send, dst, segments.stride, chunks);
                }
            },
            TxVerdict::Reply { len } => {
                self.send_batch();
                self.dp.replied(self.tun.write(&self.reply[..len]).is_ok());
                self.ring.release_send(send);
            }
            TxVerdict::Drop => self.ring.release_send(send),
        }
        if self.draining {
            return Ok(());
        }
        self.ring.read_tun(slot)
    }

    /// Adds the single datagram of `len` bytes at the start of claimed send slot `send` to
    /// the batch (which [`Pending::place`] said it joins): an empty batch takes the slot
    /// itself; otherwise the datagram is copied behind the batch's and the slot given back.
    ///
    /// The copy (one datagram, at most one MTU in practice) is what it costs not to split
    /// into the batch's slot directly, as the poll driver does: a send slot has room for one
    /// split super-packet, not for a batch and one behind it, and the output of a read that
    /// turns out not to join would have to be copied out anyway (a whole split super-packet).
    fn join(&mut self, send: usize, dst: SocketAddr, len: usize) -> io::Result<()> {
        debug_assert_eq!(self.batch.is_none(), self.pending.is_empty());
        match self.batch {
            None => self.batch = Some(send),
            Some(batch) => {
                let copied = self.ring.copy_send(send, len, batch, self.pending.len());
                self.ring.release_send(send);
                if !copied {
                    return Err(io::Error::other("send slots in an unexpected state"));
                }
            }
        }
        self.pending.push(dst, len);
        Ok(())
    }

    /// Queues the batch (if any) as one `SENDMSG` with UDP_SEGMENT and empties it. Called
    /// before anything else is sent and at the end of every turn, before the next
    /// `submit_and_wait`, so no datagram waits for more traffic.
    fn send_batch(&mut self) {
        let Some(send) = self.batch.take() else {
            return;
        };
        let Some((dst, batch)) = self.pending.take() else {
            self.ring.release_send(send);
            return;
        };
        // One send, whatever `Segments::chunks` would cut: the batch is one UDP payload of at
        // most UDP_MAX_SEGMENTS datagrams by construction.
        self.send(send, dst, batch.stride, std::iter::once(0..batch.len));
    }

    /// Queues claimed send slot `send`'s `chunks` (ranges of datagrams of `stride` bytes, the
    /// last of each may be shorter) to `dst`, one `SENDMSG` each, counting each chunk's
    /// segments and bytes for its completion; or sends them synchronously ([`Turn::send_sync`])
    /// when GSO is refused or there are more than [`MAX_CHUNKS`]. The slot is the ring's or
    /// free again afterwards.
    fn send(
        &mut self,
        send: usize,
        dst: SocketAddr,
        stride: usize,
        chunks: impl Iterator<Item = Range<usize>> + Clone,
    ) {
        let mut queued: [(Range<usize>, Option<u16>); MAX_CHUNKS] =
            std::array::from_fn(|_| (0..0, None));
        let mut k = 0;
        let mut fits = self.udp.gso_enabled();
        for range in chunks.clone() {
            if k == MAX_CHUNKS {
                fits = false;
                break;
            }
            let count = range.len().div_ceil(stride);
            self.chunk_info[send][k] = (count, range.len());
            let size = (count > 1).then(|| u16::try_from(stride).unwrap_or(0));
            queued[k] = (range, size);
            k += 1;
        }
        if fits {
            let to = self.udp.wire_addr(dst);
            if self.ring.send(send, to, &queued[..k]).is_err() {
                for range in chunks {
                    self.dp.send_failed(range.len().div_ceil(stride));
                }
                self.ring.release_send(send);
            }
        } else {
            self.send_sync(send, dst, stride, chunks);
            self.ring.release_send(send);
        }
    }

    /// Sends `chunks` of claimed send slot `send` with plain `sendmsg`s (GSO refused, or too
    /// many chunks).
    fn send_sync(
        &mut self,
        send: usize,
        dst: SocketAddr,
        stride: usize,
        chunks: impl Iterator<Item = Range<usize>>,
    ) {
        let Some(out) = self.ring.send_buf(send) else {
            for range in chunks {
                self.dp.send_failed(range.len().div_ceil(stride));
            }
            return;
        };
        for range in chunks {
            let count = range.len().div_ceil(stride);
            match out.get(range) {
                Some(bytes) => match self.udp.send_gso(dst, bytes, stride) {
                    Ok(sent) => self.dp.sent(count, sent, self.udp.gso_enabled()),
                    Err(_) => self.dp.send_failed(count),
                },
                None => self.dp.send_failed(count),
            }
        }
    }

    /// Ends a turn: queues the batch, then writes what the coalescer holds into the TUN.
    fn finish_turn(&mut self) {
        self.send_batch();
        self.flush();
    }

    /// Writes what the coalescer holds into the TUN, as one batch.
    fn flush(&mut self) {
        flush(&mut self.ring, &mut self.rxq, &self.counters);
    }
}

fn flush(ring: &mut PumpRing<'_>, rxq: &mut RxQueue, counters: &PumpCounters) {
    if rxq.is_empty() {
        return;
    }
    rxq.finish(counters);
    ring.write_tun_all(rxq.packets(), |_, result| match result {
        Ok(n) => count_tun_write(
            counters,
            n.saturating_sub(encap::wire::virtio::HEADER_LEN),
            true,
        ),
        Err(_) => count_tun_write(counters, 0, false),
    });
    rxq.clear();
}
