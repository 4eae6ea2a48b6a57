//! The poll driver: non-blocking fds, `poll(2)` when idle, `read` / `sendmsg` (GSO) /
//! `recvmmsg` (GRO) / `write` when busy.
//!
//! Contract: the loop drains the TUN queue (up to [`TUN_BATCH`] reads) and the UDP socket (up
//! to [`RX_BATCHES`] `recvmmsg` calls of [`RX_SLOTS`] datagrams) in turn, flushing the
//! coalescer into the TUN once per drain of the socket (so segments of several `recvmmsg`s
//! merge) and whenever it is full. Only when both
//! return `EAGAIN` does it block in `poll` on the TUN queue, the socket and the stop eventfd,
//! with no timeout: an idle pump thread sleeps in the kernel and costs nothing. A send that
//! finds the socket buffer full waits for `POLLOUT` (backpressure to the TUN) rather than
//! dropping. The stop flag is checked once per loop; the eventfd wakes a sleeping thread.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use encap::gro::{self, Coalescer};

use super::dataplane::{Dataplane, RxQueue, TxVerdict, REPLY_LEN, SPLIT_OUT_LEN, TUN_READ_LEN};
use super::{DropReason, Stop};
use crate::route::Routes;
use crate::sys::msg::RecvBatch;
use crate::sys::poll::{poll, PollFd, POLLIN, POLLOUT};
use crate::tun::TunQueue;
use crate::udp::{UdpError, UdpSocket, UDP_MAX_SEGMENTS};

/// The most TUN reads per turn of the loop.
pub const TUN_BATCH: usize = 64;
/// Datagrams (or GRO batches) per `recvmmsg`.
pub const RX_SLOTS: usize = 8;
/// The most `recvmmsg` calls per turn of the loop.
pub const RX_BATCHES: usize = 8;
/// Bytes per receive slot: the largest GRO batch (64 KiB).
pub const RX_SLOT_LEN: usize = 65_536;
/// The coalescer holds this many full GRO batches before it must flush.
const COALESCE_SLOTS: usize = 16;
/// Consecutive failed reads or receives (a deleted device, a broken socket) after which the
/// thread gives up instead of spinning.
const MAX_CONSECUTIVE_ERRORS: u32 = 1000;
/// How long a send waits for socket buffer room before checking the stop flag again.
const SEND_WAIT_MS: i32 = 100;

/// The coalescer configuration: room for 16 GRO batches of 64 segments between flushes.
pub fn coalescer_config(udp: bool, checksum: encap::ChecksumCaps) -> gro::Config {
    gro::Config {
        max_packets: COALESCE_SLOTS * UDP_MAX_SEGMENTS,
        arena_len: 2 * COALESCE_SLOTS * RX_SLOT_LEN,
        udp,
        checksum,
    }
}

/// Runs one pump thread until `stop` is requested.
pub fn run(
    mut dp: Dataplane,
    tun: &TunQueue,
    udp: &UdpSocket,
    routes: &Arc<Routes>,
    stop: &Stop,
) -> io::Result<()> {
    let mut cache = arc_swap::Cache::new(Arc::clone(routes));
    let mut tun_buf = vec![0u8; TUN_READ_LEN];
    let mut out = vec![0u8; SPLIT_OUT_LEN];
    let mut reply = vec![0u8; REPLY_LEN];
    let mut batch = RecvBatch::new(RX_SLOTS, RX_SLOT_LEN);
    let cfg = *dp.config();
    let mut rxq = RxQueue::new(
        Coalescer::new(coalescer_config(cfg.offloads.uso, cfg.checksum)),
        cfg.offloads.vnet_hdr,
    );
    let counters = Arc::clone(dp.counters());
    let (mut read_errors, mut recv_errors) = (0u32, 0u32);
    while !stop.requested() {
        let mut busy = false;

        // TUN -> UDP.
        let mut reads = 0;
        while reads < TUN_BATCH {
            let n = match tun.read(&mut tun_buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    counters.count_drop(DropReason::TunReadError);
                    read_errors += 1;
                    if read_errors > MAX_CONSECUTIVE_ERRORS {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("the TUN queue keeps failing reads: {e}"),
                        ));
                    }
                    break;
                }
            };
            read_errors = 0;
            reads += 1;
            let table = cache.load();
            match dp.tx(table, &tun_buf[..n], &mut out, &mut reply) {
                TxVerdict::Send {
                    dst,
                    segments,
                    max_payload,
                } => {
                    for chunk in segments.chunks(UDP_MAX_SEGMENTS, max_payload) {
                        let bytes = &out[chunk];
                        let count = bytes.len().div_ceil(segments.stride);
                        match send_waiting(udp, dst, bytes, segments.stride, stop) {
                            Ok(sent) => dp.sent(count, sent, udp.gso_enabled()),
                            Err(_) => dp.send_failed(count),
                        }
                    }
                }
                TxVerdict::Reply { len } => dp.replied(tun.write(&reply[..len]).is_ok()),
                TxVerdict::Drop => {}
            }
        }
        busy |= reads == TUN_BATCH;

        // UDP -> TUN.
        let mut batches = 0;
        while batches < RX_BATCHES {
            let n = match udp.recv_gro_batch(&mut batch) {
                Ok(n) => n,
                Err(e) if e.is_would_block() => break,
                Err(e) => {
                    counters.count_drop(DropReason::UdpRecvError);
                    recv_errors += 1;
                    if recv_errors > MAX_CONSECUTIVE_ERRORS {
                        return Err(io::Error::other(format!(
                            "the UDP socket keeps failing receives: {e}"
                        )));
                    }
                    break;
                }
            };
            recv_errors = 0;
            batches += 1;
            let table = cache.load();
            for i in 0..n {
                match udp.batch_datagram(&batch, i) {
                    Some(Ok((bytes, d))) => {
                        let mut sink = |inner: &[u8]| deliver(&mut rxq, tun, &counters, inner);
                        dp.rx(table, bytes, d.segment_size, d.src, &mut sink);
                    }
                    Some(Err(_)) => counters.count_drop(DropReason::UdpRecvError),
                    None => {}
                }
            }
            if n < batch.capacity() {
                break;
            }
        }
        // One flush per drain of the socket: without kernel GRO each datagram is one
        // segment, and a larger batch lets more of a flow's segments merge.
        rxq.flush(&counters, |p| tun.write(p).is_ok());
        busy |= batches == RX_BATCHES;

        if !busy {
            let mut fds = [
                PollFd::new(tun.as_fd(), POLLIN),
                PollFd::new(udp.as_fd(), POLLIN),
                PollFd::new(stop.event().as_fd(), POLLIN),
            ];
            poll(&mut fds, -1)?;
        }
    }
    Ok(())
}

/// Hands one valid inner packet to the TUN: into the coalescer (flushing it when full), or
/// straight into the TUN when it has no virtio header.
#[inline]
fn deliver(rxq: &mut RxQueue, tun: &TunQueue, counters: &super::PumpCounters, inner: &[u8]) {
    if !rxq.coalescing() {
        super::dataplane::count_tun_write(counters, inner.len(), tun.write(inner).is_ok());
        return;
    }
    if rxq.push(inner).is_ok() {
        return;
    }
    rxq.flush(counters, |p| tun.write(p).is_ok());
    if rxq.push(inner).is_err() {
        // An empty coalescer takes any packet up to 64 KiB; a UDP payload is never longer.
        counters.count_drop(DropReason::BadInner);
    }
}

/// `send_gso`, waiting for room in the socket buffer (POLLOUT) instead of failing with EAGAIN,
/// until `stop` is requested.
fn send_waiting(
    udp: &UdpSocket,
    dst: std::net::SocketAddr,
    bytes: &[u8],
    stride: usize,
    stop: &Stop,
) -> Result<usize, UdpError> {
    loop {
        match udp.send_gso(dst, bytes, stride) {
            Err(e) if e.is_would_block() && !stop.requested() => {
                let mut fds = [
                    PollFd::new(udp.as_fd(), POLLOUT),
                    PollFd::new(stop.event().as_fd(), POLLIN),
                ];
                // A poll error here shows again as a send error on the next try.
                let _ = poll(&mut fds, SEND_WAIT_MS);
            }
            result => return result,
        }
    }
}
