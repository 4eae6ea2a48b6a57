//! The io_uring driver's ring: which operation is a TUN read, a receive or a send, on top of
//! [`sys::uring::Ring`](crate::sys::uring::Ring), in safe Rust.
//!
//! Contract: a [`PumpRing`] is built over three borrowed fds (a TUN queue, a UDP socket, a
//! wake-up eventfd) that outlive it, and keeps three pools of slots allocated once:
//!
//! - **TUN read slots**: the ring's fixed buffers (registered when the kernel allows), read
//!   with [`PumpRing::read_tun`]; after an [`Event::TunRead`] the bytes are borrowed with
//!   [`PumpRing::tx_buffers`] until the slot is re-armed.
//! - **receive slots**: `RECVMSG` into a buffer the caller gives ([`PumpRing::recv`]); after
//!   an [`Event::Recv`] the caller takes it back ([`PumpRing::take_recv`]) and gives it
//!   again to re-arm.
//! - **send slots**: one buffer each. The caller claims a free slot
//!   ([`PumpRing::claim_send`]), fills its buffer, and either sends it as up to
//!   [`MAX_CHUNKS`] `SENDMSG`s with a UDP_SEGMENT cmsg each ([`PumpRing::send`]) or gives it
//!   back unsent ([`PumpRing::release_send`]); a sent slot is free again when every chunk
//!   completed ([`Event::Sent`] per chunk). While claimed, its bytes can be read
//!   ([`PumpRing::send_buf`]) and copied into another claimed slot ([`PumpRing::copy_send`]).
//!
//! TUN writes borrow the caller's bytes ([`PumpRing::write_tun_all`], complete on return).
//! Memory safety is the ring's: a buffer the kernel holds is owned by the
//! [`Ring`] and unreachable here until its completion gives it back.
//! What this module keeps is bookkeeping: which slot is armed, claimed or free, and the
//! buffers between their turns in the kernel.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::BorrowedFd;

use crate::sys::msg::RecvMeta;
use crate::sys::uring::{Completion, Ring, RingConfig};

pub use crate::sys::uring::{probe, MAX_CHUNKS};

/// Sizes of the pump ring's pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumpRingConfig {
    /// TUN reads kept in flight.
    pub tun_slots: usize,
    /// Bytes per TUN read.
    pub tun_slot_len: usize,
    /// UDP receives kept in flight.
    pub recv_slots: usize,
    /// Send slots (super-packets being sent).
    pub send_slots: usize,
    /// Bytes per send slot.
    pub send_slot_len: usize,
    /// The most TUN writes queued at once by [`PumpRing::write_tun_all`] before it submits.
    pub write_batch: usize,
}

/// A completion, with the slot it concerns.
#[derive(Debug)]
pub enum Event {
    /// A TUN read into `slot` finished.
    TunRead {
        /// The slot.
        slot: usize,
        /// Bytes read, or the error.
        result: io::Result<usize>,
    },
    /// A receive into `slot` finished; its buffer waits in [`PumpRing::take_recv`].
    Recv {
        /// The slot.
        slot: usize,
        /// What was received, or the error.
        result: io::Result<RecvMeta>,
    },
    /// Chunk `chunk` of send slot `slot` finished.
    Sent {
        /// The slot.
        slot: usize,
        /// The chunk.
        chunk: usize,
        /// Bytes sent, or the error.
        result: io::Result<usize>,
    },
    /// The wake-up eventfd became readable.
    Wake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Free,
    /// The caller's, to fill (the buffer is in the slot).
    Claimed,
    /// The ring's, until its last chunk completes.
    InFlight,
}

/// A pump thread's io_uring; see the module documentation.
#[derive(Debug)]
pub struct PumpRing<'fd> {
    ring: Ring<'fd>,
    tun: BorrowedFd<'fd>,
    udp: BorrowedFd<'fd>,
    wake: BorrowedFd<'fd>,
    /// Receive buffers back from the kernel, until taken.
    recv_done: Vec<Option<Box<[u8]>>>,
    /// Send buffers while not in flight.
    send_bufs: Vec<Option<Box<[u8]>>>,
    send_state: Vec<SendState>,
    free_send: Vec<usize>,
}

/// The wake-up poll's token.
const WAKE_TOKEN: u64 = 0;

impl<'fd> PumpRing<'fd> {
    /// Sets the ring and its pools up (see [`Ring::new`] on blocking fds).
    pub fn new(
        tun: BorrowedFd<'fd>,
        udp: BorrowedFd<'fd>,
        wake: BorrowedFd<'fd>,
        config: &PumpRingConfig,
    ) -> io::Result<PumpRing<'fd>> {
        let msg_slots = config.recv_slots + config.send_slots * MAX_CHUNKS;
        let ops = config.tun_slots + msg_slots + config.write_batch + 4;
        let ring = Ring::new(&RingConfig {
            entries: u32::try_from(ops).unwrap_or(4096),
            fixed_buffers: config.tun_slots,
            fixed_buffer_len: config.tun_slot_len,
            msg_slots,
            write_batch: config.write_batch,
        })?;
        Ok(PumpRing {
            ring,
            tun,
            udp,
            wake,
            recv_done: (0..config.recv_slots).map(|_| None).collect(),
            send_bufs: (0..config.send_slots)
                .map(|_| Some(vec![0u8; config.send_slot_len].into_boxed_slice()))
                .collect(),
            send_state: vec![SendState::Free; config.send_slots],
            free_send: (0..config.send_slots).rev().collect(),
        })
    }

    /// Whether the TUN read buffers are registered (reads use READ_FIXED).
    pub fn registered_buffers(&self) -> bool {
        self.ring.registered_buffers()
    }

    /// Arms a TUN read into `slot` (idle or new).
    pub fn read_tun(&mut self, slot: usize) -> io::Result<()> {
        self.ring.read_fixed(self.tun, slot)
    }

    /// Arms a receive into `slot` with `buf` (the buffer taken from it, or a new one).
    pub fn recv(&mut self, slot: usize, buf: Box<[u8]>) -> io::Result<()> {
        if slot >= self.recv_done.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "receive slot out of range",
            ));
        }
        self.ring
            .recvmsg(self.udp, slot as u64, buf)
            .map_err(|(e, _)| e)
    }

    /// Takes the buffer of a completed receive slot (its first `meta.len` bytes are the data).
    pub fn take_recv(&mut self, slot: usize) -> Option<Box<[u8]>> {
        self.recv_done.get_mut(slot)?.take()
    }

    /// Cancels every armed TUN read and receive and leaves sends and writes alone, so a pump
    /// can stop at a batch boundary without losing a packet (see [`Ring::cancel_inputs`]).
    /// Reap until [`PumpRing::in_flight`] is 0.
    pub fn cancel_reads(&mut self) -> io::Result<()> {
        self.ring.cancel_inputs()
    }

    /// Operations submitted whose completion was not reaped yet (cancellations included).
    pub fn in_flight(&self) -> usize {
        self.ring.in_flight()
    }

    /// Whether reaped events wait for [`PumpRing::next_event`].
    pub fn has_events(&self) -> bool {
        self.ring.has_completions()
    }

    /// Arms a one-shot poll on the wake-up eventfd.
    pub fn watch_wake(&mut self) -> io::Result<()> {
        self.ring.poll_add(self.wake, WAKE_TOKEN)
    }

    /// Claims a free send slot, or `None` when all are in flight.
    pub fn claim_send(&mut self) -> Option<usize> {
        let slot = self.free_send.pop()?;
        self.send_state[slot] = SendState::Claimed;
        Some(slot)
    }

    /// Gives a claimed slot back unsent.
    pub fn release_send(&mut self, slot: usize) {
        if self.send_state.get(slot) == Some(&SendState::Claimed) {
            self.send_state[slot] = SendState::Free;
            self.free_send.push(slot);
        }
    }

    /// Whether any send slot is free.
    pub fn has_free_send(&self) -> bool {
        !self.free_send.is_empty()
    }

    /// The bytes of completed TUN read `tun_slot` and the buffer of claimed send slot
    /// `send_slot`, together (the pump splits one into the other).
    pub fn tx_buffers(&mut self, tun_slot: usize, send_slot: usize) -> Option<(&[u8], &mut [u8])> {
        if self.send_state.get(send_slot) != Some(&SendState::Claimed) {
            return None;
        }
        let frame = self.ring.fixed(tun_slot)?;
        let out = self.send_bufs.get_mut(send_slot)?.as_deref_mut()?;
        Some((frame, out))
    }

    /// The buffer of claimed send slot `slot` (to send from synchronously).
    pub fn send_buf(&self, slot: usize) -> Option<&[u8]> {
        if self.send_state.get(slot) != Some(&SendState::Claimed) {
            return None;
        }
        self.send_bufs.get(slot)?.as_deref()
    }

    /// Copies the first `len` bytes of claimed send slot `from` to offset `at` of claimed send
    /// slot `to` (a datagram appended to a batch). False, with nothing copied, when either
    /// slot is not claimed, they are the same, or the bytes do not fit.
    pub fn copy_send(&mut self, from: usize, len: usize, to: usize, at: usize) -> bool {
        let claimed = |slot: usize| self.send_state.get(slot) == Some(&SendState::Claimed);
        if from == to || !claimed(from) || !claimed(to) {
            return false;
        }
        // Taken out for the copy (a pointer move) so that both buffers can be borrowed.
        let Some(src) = self.send_bufs[from].take() else {
            return false;
        };
        let dst = at
            .checked_add(len)
            .and_then(|end| self.send_bufs[to].as_deref_mut()?.get_mut(at..end));
        let copied = match (src.get(..len), dst) {
            (Some(src), Some(dst)) => {
                dst.copy_from_slice(src);
                true
            }
            _ => false,
        };
        self.send_bufs[from] = Some(src);
        copied
    }

    /// Sends chunks of claimed slot `slot` to `dst`: each `(range, segment_size)` is one
    /// `SENDMSG` of `buf[range]`, with UDP_SEGMENT when `segment_size` is given. At most
    /// [`MAX_CHUNKS`]. The slot is freed when the last chunk completes; on an error nothing
    /// was sent and the slot stays claimed.
    pub fn send(
        &mut self,
        slot: usize,
        dst: SocketAddr,
        chunks: &[(Range<usize>, Option<u16>)],
    ) -> io::Result<()> {
        let buf = match (self.send_state.get(slot), self.send_bufs.get_mut(slot)) {
            (Some(SendState::Claimed), Some(buf)) => buf.take(),
            _ => None,
        };
        let Some(buf) = buf else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "send slot not claimed",
            ));
        };
        match self.ring.sendmsg(self.udp, slot as u64, dst, buf, chunks) {
            Ok(()) => {
                self.send_state[slot] = SendState::InFlight;
                Ok(())
            }
            Err((e, buf)) => {
                self.send_bufs[slot] = Some(buf);
                Err(e)
            }
        }
    }

    /// Writes each of `bufs` into the TUN (one `WRITE` each, submitted in batches with
    /// whatever else is queued) and returns only when all of them completed, calling
    /// `done(index, result)` for each.
    pub fn write_tun_all<'b>(
        &mut self,
        bufs: impl IntoIterator<Item = &'b [u8]>,
        done: impl FnMut(usize, io::Result<usize>),
    ) {
        self.ring.write_all(self.tun, bufs, done);
    }

    /// Submits what is queued and waits until at least one completion is there (none when
    /// `wait` is false).
    pub fn submit_and_wait(&mut self, wait: bool) -> io::Result<()> {
        self.ring.submit_and_wait(wait)
    }

    /// The next completion, if any was reaped, with its buffer put back in its slot.
    pub fn next_event(&mut self) -> Option<Event> {
        let event = match self.ring.next_completion()? {
            Completion::Read { index, result } => Event::TunRead {
                slot: index,
                result,
            },
            Completion::Recv { token, buf, result } => {
                let slot = token as usize;
                if let Some(done) = self.recv_done.get_mut(slot) {
                    *done = Some(buf);
                }
                Event::Recv { slot, result }
            }
            Completion::Sent {
                token,
                chunk,
                result,
                buf,
            } => {
                let slot = token as usize;
                if let (Some(buf), Some(kept)) = (buf, self.send_bufs.get_mut(slot)) {
                    *kept = Some(buf);
                    self.send_state[slot] = SendState::Free;
                    self.free_send.push(slot);
                }
                Event::Sent {
                    slot,
                    chunk,
                    result,
                }
            }
            Completion::Poll { .. } => Event::Wake,
        };
        Some(event)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::time::Duration;

    fn config() -> PumpRingConfig {
        PumpRingConfig {
            tun_slots: 2,
            tun_slot_len: 2048,
            recv_slots: 2,
            send_slots: 2,
            send_slot_len: 4096,
            write_batch: 8,
        }
    }

    /// Claimed send slots can be read and copied into each other (a datagram appended to a
    /// batch); nothing else can.
    #[test]
    fn copy_between_claimed_send_slots() {
        if let Err(e) = probe() {
            eprintln!("skipping: io_uring unavailable: {e}");
            return;
        }
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (t1, _t2) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let wake = crate::sys::poll::EventFd::new().unwrap();
        let mut ring = PumpRing::new(t1.as_fd(), a.as_fd(), wake.as_fd(), &config()).unwrap();
        let (batch, next) = (ring.claim_send().unwrap(), ring.claim_send().unwrap());
        ring.send_buf(next).unwrap();
        ring.tx_buffers(0, next).unwrap().1[..3].copy_from_slice(b"abc");
        ring.tx_buffers(0, batch).unwrap().1[..3].copy_from_slice(b"xyz");
        assert!(ring.copy_send(next, 3, batch, 3));
        assert_eq!(&ring.send_buf(batch).unwrap()[..6], b"xyzabc");
        assert_eq!(
            &ring.send_buf(next).unwrap()[..3],
            b"abc",
            "the source is kept"
        );
        assert!(!ring.copy_send(next, 3, next, 0), "the same slot");
        assert!(!ring.copy_send(next, 3, batch, 4094), "past the end");
        assert!(
            !ring.copy_send(next, 4097, batch, 0),
            "more than the slot holds"
        );
        assert!(!ring.copy_send(next, 3, batch, usize::MAX), "overflow");
        assert_eq!(&ring.send_buf(batch).unwrap()[..6], b"xyzabc", "untouched");
        ring.release_send(next);
        assert!(ring.send_buf(next).is_none(), "not claimed");
        assert!(!ring.copy_send(next, 3, batch, 0), "from a free slot");
        assert!(!ring.copy_send(batch, 3, next, 0), "into a free slot");
        ring.release_send(batch);
    }

    /// Loopback UDP through the ring: send (with and without GSO), receive, wake, and
    /// "TUN" reads and writes on a pipe-like socket pair.
    #[test]
    fn loopback_send_recv_read_write() {
        if let Err(e) = probe() {
            eprintln!("skipping: io_uring unavailable: {e}");
            return;
        }
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (t1, t2) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let wake = crate::sys::poll::EventFd::new().unwrap();
        let mut ring = PumpRing::new(t1.as_fd(), a.as_fd(), wake.as_fd(), &config()).unwrap();
        // A receive on `a` and a read on the "TUN".
        ring.recv(0, vec![0u8; 2048].into_boxed_slice()).unwrap();
        ring.read_tun(0).unwrap();
        ring.watch_wake().unwrap();
        // Send 3 segments of 100 bytes to b with GSO, and one plain datagram.
        let slot = ring.claim_send().unwrap();
        assert!(ring.tx_buffers(0, slot).is_none(), "TUN read in flight");
        ring.release_send(slot);
        let slot = ring.claim_send().unwrap();
        {
            let (_, buf) = ring.tx_buffers(1, slot).unwrap();
            buf[..300].copy_from_slice(&[5u8; 300]);
            buf[300..310].copy_from_slice(&[6u8; 10]);
        }
        let dst = b.local_addr().unwrap();
        ring.send(slot, dst, &[(0..300, Some(100)), (300..310, None)])
            .unwrap();
        assert!(ring.tx_buffers(1, slot).is_none(), "in flight");
        let mut sent = 0;
        while sent < 2 {
            ring.submit_and_wait(true).unwrap();
            while let Some(e) = ring.next_event() {
                if let Event::Sent {
                    slot: s, result, ..
                } = e
                {
                    assert_eq!(s, slot);
                    assert!(result.unwrap() > 0);
                    sent += 1;
                }
            }
        }
        assert!(ring.has_free_send());
        let mut got = [0u8; 200];
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for want in [100, 100, 100, 10] {
            assert_eq!(b.recv(&mut got).unwrap(), want);
        }
        // b -> a arrives through the ring's receive.
        b.send_to(b"hello", a.local_addr().unwrap()).unwrap();
        // "TUN" read.
        t2.send(b"packet").unwrap();
        let (mut recv_ok, mut read_ok) = (false, false);
        while !(recv_ok && read_ok) {
            ring.submit_and_wait(true).unwrap();
            while let Some(e) = ring.next_event() {
                match e {
                    Event::Recv { slot, result } => {
                        let meta = result.unwrap();
                        assert_eq!(meta.src, Some(b.local_addr().unwrap()));
                        let buf = ring.take_recv(slot).unwrap();
                        assert_eq!(&buf[..meta.len], b"hello");
                        assert!(ring.take_recv(slot).is_none(), "taken");
                        recv_ok = true;
                    }
                    Event::TunRead { slot, result } => {
                        let n = result.unwrap();
                        let s2 = ring.claim_send().unwrap();
                        assert_eq!(&ring.tx_buffers(slot, s2).unwrap().0[..n], b"packet");
                        ring.release_send(s2);
                        read_ok = true;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        // "TUN" writes, synchronously completed.
        let mut results = Vec::new();
        ring.write_tun_all([&b"one"[..], &b"two"[..]], |i, r| {
            results.push((i, r.unwrap()))
        });
        results.sort_unstable();
        assert_eq!(results, [(0, 3), (1, 3)]);
        let mut r = [0u8; 8];
        assert_eq!(t2.recv(&mut r).unwrap(), 3);
        assert_eq!(t2.recv(&mut r).unwrap(), 3);
        // Wake.
        wake.signal().unwrap();
        let mut woke = false;
        while !woke {
            ring.submit_and_wait(true).unwrap();
            while let Some(e) = ring.next_event() {
                woke |= matches!(e, Event::Wake);
            }
        }
        // Stopping: cancelled reads come back, nothing is left in flight.
        ring.read_tun(0).unwrap();
        ring.recv(1, vec![0u8; 2048].into_boxed_slice()).unwrap();
        ring.cancel_reads().unwrap();
        while ring.in_flight() > 0 || ring.has_events() {
            ring.submit_and_wait(true).unwrap();
            while let Some(e) = ring.next_event() {
                assert!(
                    matches!(e, Event::TunRead { .. } | Event::Recv { .. }),
                    "{e:?}"
                );
            }
        }
        assert!(
            ring.take_recv(1).is_some(),
            "the cancelled receive's buffer is back"
        );
        // Dropping with a read in flight cancels it.
        ring.read_tun(0).unwrap();
        drop(ring);
    }
}
