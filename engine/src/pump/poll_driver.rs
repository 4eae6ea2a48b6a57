//! The poll driver: non-blocking fds, `poll(2)` when idle, `read` / `sendmsg` (GSO) /
//! `recvmmsg` (GRO) / `write` when busy.
//!
//! Contract: the loop drains the TUN queue (up to [`TUN_BATCH`] reads) and the UDP socket (up
//! to [`RX_BATCHES`] `recvmmsg` calls of [`RX_SLOTS`] datagrams) in turn, flushing the
//! coalescer into the TUN once per drain of the socket (so segments of several `recvmmsg`s
//! merge) and whenever it is full. When both return `EAGAIN` it keeps taking turns (with a
//! `sched_yield` between them) for [`PumpConfig::busy_poll`] after the last packet it moved
//! ([`BusyPoll`]), then blocks in `poll` on the TUN queue, the socket and the stop eventfd,
//! with no timeout: an idle pump thread sleeps in the kernel and costs nothing. A send that
//! finds the socket buffer full waits for `POLLOUT` (backpressure to the TUN) rather than
//! dropping. The stop flag is checked once per loop; the eventfd wakes a sleeping thread.
//!
//! Single datagrams from successive TUN reads (UDP, small TCP segments: what has no TSO
//! super-packet to split) to the same peer, of one size (the last may be shorter), wait in a
//! [`Pending`] batch and leave in one GSO send; the batch is sent before anything else goes
//! out and at the end of every drain of the TUN, so it never waits for more traffic.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use encap::gro::{self, Coalescer};

use super::busy_poll::{BusyPoll, Next, TurnOutcome};
use super::dataplane::{Dataplane, RxQueue, TxVerdict, REPLY_LEN, SPLIT_OUT_LEN, TUN_READ_LEN};
use super::pending::{Pending, Place};
use super::{DropReason, PumpConfig};
use crate::route::Routes;
use crate::sys::msg::RecvBatch;
use crate::sys::poll::{poll, PollFd, POLLIN, POLLOUT};
use crate::tun::TunQueue;
use crate::underlay::{UdpError, UdpSocket, UDP_MAX_SEGMENTS};
use crate::Stop;

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
/// Room in the output buffer for a [`Pending`] batch (at most one UDP payload).
const PENDING_LEN: usize = 65_536;

/// The coalescer configuration for a pump: room for 16 GRO batches of 64 segments between
/// flushes, UDP merged when the TUN took USO, the TUN MTU.
pub fn coalescer_config(config: &PumpConfig) -> gro::Config {
    gro::Config {
        max_packets: COALESCE_SLOTS * UDP_MAX_SEGMENTS,
        arena_len: 2 * COALESCE_SLOTS * RX_SLOT_LEN,
        udp: config.offloads.uso,
        checksum: config.checksum,
        mtu: config.mtu,
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
    let mut out = vec![0u8; PENDING_LEN + SPLIT_OUT_LEN];
    let mut pending = Pending::default();
    let mut reply = vec![0u8; REPLY_LEN];
    let mut batch = RecvBatch::new(RX_SLOTS, RX_SLOT_LEN);
    let cfg = *dp.config();
    let mut rxq = RxQueue::new(
        Coalescer::new(coalescer_config(&cfg)),
        cfg.offloads.vnet_hdr,
    );
    let counters = Arc::clone(dp.counters());
    let (mut read_errors, mut recv_errors) = (0u32, 0u32);
    let mut busy_poll = BusyPoll::new(cfg.busy_poll);
    while !stop.requested() {
        let mut full = false;

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
            // After the pending batch, so that a single datagram joins it where it lies.
            let start = pending.len();
            match dp.tx(table, &tun_buf[..n], &mut out[start..], &mut reply) {
                TxVerdict::Send {
                    dst,
                    segments,
                    max_payload,
                } => {
                    match pending.place(dst, &segments, max_payload) {
                        Place::Join => {
                            pending.push(dst, segments.len);
                            continue;
                        }
                        Place::Restart => {
                            send_pending(&dp, udp, &out, &mut pending, stop);
                            out.copy_within(start..start + segments.len, 0);
                            pending.push(dst, segments.len);
                            continue;
                        }
                        Place::Alone => send_pending(&dp, udp, &out, &mut pending, stop),
                    }
                    let out = &out[start..];
                    for chunk in segments.chunks(UDP_MAX_SEGMENTS, max_payload) {
                        let bytes = &out[chunk];
                        let count = bytes.len().div_ceil(segments.stride);
                        match send_waiting(udp, dst, bytes, segments.stride, stop) {
                            Ok(sent) => dp.sent(count, sent, udp.gso_enabled()),
                            Err(_) => dp.send_failed(count),
                        }
                    }
                }
                TxVerdict::Reply { len } => {
                    send_pending(&dp, udp, &out, &mut pending, stop);
                    dp.replied(tun.write(&reply[..len]).is_ok());
                }
                TxVerdict::Drop => {}
            }
        }
        send_pending(&dp, udp, &out, &mut pending, stop);
        full |= reads == TUN_BATCH;

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
                        let mut sink = |inner: &[u8]| {
                            rxq.deliver(
                                inner,
                                &counters,
                                |p| tun.write(p).is_ok(),
                                |q| q.flush(&counters, |p| tun.write(p).is_ok()),
                            )
                        };
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
        full |= batches == RX_BATCHES;

        let turn = TurnOutcome {
            moved: reads > 0 || batches > 0,
            full,
        };
        match busy_poll.after(turn, Instant::now) {
            Next::Turn => {}
            // Give the core to whoever else is runnable on it (the peer's pump, the
            // application) instead of spinning on it: on a small machine they are the ones
            // about to produce the next packet.
            Next::Spin => std::thread::yield_now(),
            Next::Block => {
                let mut fds = [
                    PollFd::new(tun.as_fd(), POLLIN),
                    PollFd::new(udp.as_fd(), POLLIN),
                    PollFd::new(stop.event().as_fd(), POLLIN),
                ];
                poll(&mut fds, -1)?;
            }
        }
    }
    Ok(())
}

/// Sends the [`Pending`] batch at the front of `out` (if any) in one GSO send and empties it.
fn send_pending(dp: &Dataplane, udp: &UdpSocket, out: &[u8], pending: &mut Pending, stop: &Stop) {
    let Some((dst, batch)) = pending.take() else {
        return;
    };
    match send_waiting(udp, dst, &out[..batch.len], batch.stride, stop) {
        Ok(sent) => dp.sent(batch.count, sent, udp.gso_enabled()),
        Err(_) => dp.send_failed(batch.count),
    }
}

/// `send_gso`, waiting for room in the socket buffer (POLLOUT) instead of failing with EAGAIN,
/// until `stop` is requested.
fn send_waiting(
    udp: &UdpSocket,
    dst: SocketAddr,
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
