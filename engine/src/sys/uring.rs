//! One io_uring per pump thread, owning every buffer the kernel reads or writes through it.
//!
//! Contract: a [`PumpRing`] is built over three borrowed fds (a TUN queue, a UDP socket, a
//! wake-up eventfd) that outlive it, and owns three pools of slots allocated once:
//!
//! - **TUN read slots**, one registered region (`IORING_REGISTER_BUFFERS`) read with
//!   `READ_FIXED`; after a [`Event::TunRead`] the bytes are borrowed with
//!   [`PumpRing::tx_buffers`] until the slot is re-armed with [`PumpRing::read_tun`];
//! - **receive slots** for `RECVMSG` (buffer, source address, control area for UDP_GRO); after
//!   an [`Event::Recv`] the caller takes the buffer ([`PumpRing::take_recv`]) and gives it
//!   back to re-arm ([`PumpRing::recv`]);
//! - **send slots** of `SENDMSG` chunks with a UDP_SEGMENT cmsg each: the caller claims a free
//!   slot ([`PumpRing::claim_send`]), fills its buffer, submits its chunks
//!   ([`PumpRing::send`]); the slot is free again when every chunk completed
//!   ([`Event::Sent`] per chunk).
//!
//! TUN writes borrow the caller's bytes: [`PumpRing::write_tun_all`] queues one `WRITE` per
//! buffer and does not return before every one of them completed, so no borrowed byte is used
//! by the kernel after the call. A slot's memory is only handed to the kernel while no Rust
//! reference to it exists (the slot state says who owns it), and a slot in flight is never
//! reachable through the safe API. Completions of other operations met while waiting are
//! queued and returned by [`PumpRing::next_event`].
//!
//! Dropping the ring cancels everything in flight and waits (bounded) for the cancellations;
//! if the kernel does not finish in time, the buffers and the ring are leaked rather than
//! freed under it. If the kernel refuses to run submitted writes to completion (an
//! `io_uring_enter` error other than EINTR / EAGAIN / EBUSY while borrowed bytes are in flight),
//! the process aborts: returning would hand memory the kernel may still read back to the
//! caller.

use std::collections::VecDeque;
use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::SockAddr;

use super::cmsg::{CmsgBuf, Decoder, RECV_CONTROL_LEN, SEND_CONTROL_LEN};
use super::msg::{socket_addr, RecvMeta};

/// The most `SENDMSG` chunks one send slot holds (64 KiB cut into 64-segment or 64 KiB
/// chunks of at least 128-byte segments: 8).
pub const MAX_CHUNKS: usize = 8;

/// How long dropping the ring waits for cancelled operations.
const DROP_WAIT: Duration = Duration::from_secs(2);

/// Operation kinds, in the top byte of `user_data`.
mod kind {
    pub(super) const TUN_READ: u64 = 1;
    pub(super) const RECV: u64 = 2;
    pub(super) const SEND: u64 = 3;
    pub(super) const WRITE: u64 = 4;
    pub(super) const WAKE: u64 = 5;
    pub(super) const CANCEL: u64 = 6;
}

fn user_data(kind: u64, slot: usize, chunk: usize) -> u64 {
    kind << 56 | (slot as u64 & 0xffff_ffff) << 8 | (chunk as u64 & 0xff)
}

fn split_user_data(ud: u64) -> (u64, usize, usize) {
    (
        ud >> 56,
        ((ud >> 8) & 0xffff_ffff) as usize,
        (ud & 0xff) as usize,
    )
}

/// Sizes of the ring and its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// TUN reads kept in flight.
    pub tun_slots: usize,
    /// Bytes per TUN read.
    pub tun_slot_len: usize,
    /// UDP receives kept in flight.
    pub recv_slots: usize,
    /// Bytes per receive.
    pub recv_slot_len: usize,
    /// Send slots (super-packets being sent).
    pub send_slots: usize,
    /// Bytes per send slot.
    pub send_slot_len: usize,
    /// The most TUN writes queued at once by [`PumpRing::write_tun_all`] before it submits.
    pub write_batch: usize,
}

/// A completion, with what it concerns.
#[derive(Debug)]
pub enum Event {
    /// A TUN read into `slot` finished.
    TunRead {
        /// The slot.
        slot: usize,
        /// Bytes read, or the error.
        result: io::Result<usize>,
    },
    /// A receive into `slot` finished.
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
enum SlotState {
    /// Owned by the caller (armed never, or completed).
    Idle,
    /// Owned by the kernel.
    InFlight,
}

struct RecvSlot {
    buf: Option<Box<[u8]>>,
    name: libc::sockaddr_storage,
    iov: libc::iovec,
    hdr: libc::msghdr,
    control: CmsgBuf<RECV_CONTROL_LEN>,
    state: SlotState,
}

struct Chunk {
    iov: libc::iovec,
    hdr: libc::msghdr,
    control: CmsgBuf<SEND_CONTROL_LEN>,
}

struct SendSlot {
    buf: Box<[u8]>,
    name: libc::sockaddr_storage,
    chunks: [Chunk; MAX_CHUNKS],
    /// Chunks in flight.
    pending: usize,
    claimed: bool,
}

fn zeroed<T>() -> T {
    // SAFETY: only used for the plain-data C structs above (msghdr, iovec, sockaddr_storage),
    // for which all-zero is a valid value (null pointers, zero lengths, AF_UNSPEC).
    unsafe { std::mem::zeroed() }
}

/// A pump thread's io_uring; see the module documentation.
pub struct PumpRing<'fd> {
    ring: ManuallyDrop<IoUring>,
    tun: BorrowedFd<'fd>,
    udp: BorrowedFd<'fd>,
    wake: BorrowedFd<'fd>,
    tun_region: ManuallyDrop<Box<[u8]>>,
    tun_slot_len: usize,
    tun_state: Vec<SlotState>,
    recv: ManuallyDrop<Box<[RecvSlot]>>,
    send: ManuallyDrop<Box<[SendSlot]>>,
    free_send: Vec<usize>,
    events: VecDeque<Event>,
    in_flight: usize,
    write_batch: usize,
    registered: bool,
}

impl std::fmt::Debug for PumpRing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PumpRing")
            .field("in_flight", &self.in_flight)
            .field("tun_slots", &self.tun_state.len())
            .field("recv_slots", &self.recv.len())
            .field("send_slots", &self.send.len())
            .field("free_send", &self.free_send.len())
            .field("registered_buffers", &self.registered)
            .finish()
    }
}

/// Whether io_uring can run the pump here: a ring can be set up and supports every opcode the
/// pump uses.
pub fn probe() -> io::Result<()> {
    let ring = IoUring::new(8)?;
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::ReadFixed::CODE, "READ_FIXED"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::SendMsg::CODE, "SENDMSG"),
        (opcode::RecvMsg::CODE, "RECVMSG"),
        (opcode::PollAdd::CODE, "POLL_ADD"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring has no {name}"),
            ));
        }
    }
    Ok(())
}

fn ring_entries(config: &RingConfig) -> u32 {
    let ops = config.tun_slots
        + config.recv_slots
        + config.send_slots * MAX_CHUNKS
        + config.write_batch
        + 4;
    u32::try_from(ops.next_power_of_two())
        .unwrap_or(4096)
        .min(4096)
}

fn build_ring(entries: u32) -> io::Result<IoUring> {
    // DEFER_TASKRUN (6.1+) runs completions only when this thread enters the ring: no
    // interrupting task work, and this thread is the only submitter.
    let deferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(entries * 2)
        .build(entries);
    match deferred {
        Ok(ring) => Ok(ring),
        Err(_) => IoUring::builder().setup_cqsize(entries * 2).build(entries),
    }
}

impl<'fd> PumpRing<'fd> {
    /// Sets the ring and its pools up. The fds are blocking or not: the ring waits for
    /// readiness itself (a non-blocking fd makes reads complete with EAGAIN instead, so the
    /// pump makes them blocking).
    pub fn new(
        tun: BorrowedFd<'fd>,
        udp: BorrowedFd<'fd>,
        wake: BorrowedFd<'fd>,
        config: &RingConfig,
    ) -> io::Result<PumpRing<'fd>> {
        let entries = ring_entries(config);
        let ring = build_ring(entries)?;
        let mut tun_region = vec![0u8; config.tun_slots * config.tun_slot_len].into_boxed_slice();
        let iovecs: Vec<libc::iovec> = tun_region
            .chunks_mut(config.tun_slot_len.max(1))
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: the iovecs cover `tun_region`, which this ring owns and frees only after the
        // ring is closed (or never, when it is leaked); READ_FIXED is only issued into it.
        let registered = unsafe { ring.submitter().register_buffers(&iovecs) }.is_ok();
        let recv: Box<[RecvSlot]> = (0..config.recv_slots)
            .map(|_| RecvSlot {
                buf: Some(vec![0u8; config.recv_slot_len].into_boxed_slice()),
                name: zeroed(),
                iov: zeroed(),
                hdr: zeroed(),
                control: CmsgBuf::new(),
                state: SlotState::Idle,
            })
            .collect();
        let send: Box<[SendSlot]> = (0..config.send_slots)
            .map(|_| SendSlot {
                buf: vec![0u8; config.send_slot_len].into_boxed_slice(),
                name: zeroed(),
                chunks: std::array::from_fn(|_| Chunk {
                    iov: zeroed(),
                    hdr: zeroed(),
                    control: CmsgBuf::new(),
                }),
                pending: 0,
                claimed: false,
            })
            .collect();
        Ok(PumpRing {
            ring: ManuallyDrop::new(ring),
            tun,
            udp,
            wake,
            tun_region: ManuallyDrop::new(tun_region),
            tun_slot_len: config.tun_slot_len,
            tun_state: vec![SlotState::Idle; config.tun_slots],
            recv: ManuallyDrop::new(recv),
            free_send: (0..config.send_slots).rev().collect(),
            send: ManuallyDrop::new(send),
            events: VecDeque::with_capacity(entries as usize * 2),
            in_flight: 0,
            write_batch: config.write_batch.max(1),
            registered,
        })
    }

    /// Whether the TUN read buffers are registered (reads use READ_FIXED).
    pub fn registered_buffers(&self) -> bool {
        self.registered
    }

    /// Pushes one SQE, submitting first when the queue is full.
    ///
    /// # Safety
    ///
    /// Every buffer the entry points at must stay valid and untouched by Rust until its
    /// completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from the caller.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.submit_retrying()?;
        }
    }

    /// Submits, retrying EINTR / EAGAIN / EBUSY after reaping what completed.
    fn submit_retrying(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if is_transient(&e) => self.reap(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Arms a TUN read into `slot` (idle or new).
    pub fn read_tun(&mut self, slot: usize) -> io::Result<()> {
        let len = self.tun_slot_len;
        match self.tun_state.get(slot) {
            Some(SlotState::Idle) => {}
            _ => return Err(invalid("TUN slot busy or out of range")),
        }
        let ptr = self.tun_region[slot * len..(slot + 1) * len].as_mut_ptr();
        let fd = types::Fd(self.tun.as_raw_fd());
        let len32 = u32::try_from(len).map_err(|_| invalid("TUN slot too large"))?;
        let entry = if self.registered {
            let index = u16::try_from(slot).map_err(|_| invalid("too many TUN slots"))?;
            opcode::ReadFixed::new(fd, ptr, len32, index).build()
        } else {
            opcode::Read::new(fd, ptr, len32).build()
        }
        .user_data(user_data(kind::TUN_READ, slot, 0));
        // SAFETY: the slot's bytes are owned by `tun_region` and marked in flight below, so no
        // Rust reference to them is made until the completion is reaped.
        unsafe { self.push(&entry) }?;
        self.tun_state[slot] = SlotState::InFlight;
        Ok(())
    }

    /// Arms a receive into `slot` with `buf` (the buffer taken from it, or a new one).
    pub fn recv(&mut self, slot: usize, mut buf: Box<[u8]>) -> io::Result<()> {
        let fd = types::Fd(self.udp.as_raw_fd());
        let s = self
            .recv
            .get_mut(slot)
            .filter(|s| s.state == SlotState::Idle)
            .ok_or_else(|| invalid("receive slot busy or out of range"))?;
        s.iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        s.buf = Some(buf);
        s.hdr = zeroed();
        s.hdr.msg_name = std::ptr::from_mut(&mut s.name).cast();
        s.hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        s.hdr.msg_iov = &mut s.iov;
        s.hdr.msg_iovlen = 1;
        let control = s.control.as_mut_bytes();
        s.hdr.msg_control = control.as_mut_ptr().cast();
        s.hdr.msg_controllen = control.len() as _;
        let entry = opcode::RecvMsg::new(fd, &mut s.hdr)
            .build()
            .user_data(user_data(kind::RECV, slot, 0));
        s.state = SlotState::InFlight;
        // SAFETY: the msghdr, address, iovec, control area and buffer live in the boxed slot
        // (heap memory that never moves) and the slot is in flight: nothing touches them
        // until the completion is reaped.
        let pushed = unsafe { self.push(&entry) };
        if pushed.is_err() {
            self.recv[slot].state = SlotState::Idle;
        }
        pushed
    }

    /// Takes the buffer of a completed receive slot (its first `meta.len` bytes are the data).
    pub fn take_recv(&mut self, slot: usize) -> Option<Box<[u8]>> {
        let s = self.recv.get_mut(slot)?;
        if s.state != SlotState::Idle {
            return None;
        }
        s.buf.take()
    }

    /// Cancels every armed TUN read and receive (one `ASYNC_CANCEL` each, by user data) and
    /// leaves sends and writes alone, so a pump can stop at a batch boundary without losing
    /// a packet: a read the kernel completed before the cancellation arrives still comes back
    /// as an event with its data, the others come back as `ECANCELED` and leave their packet
    /// queued in the TUN queue or the socket. Reap until [`PumpRing::in_flight`] is 0.
    pub fn cancel_reads(&mut self) -> io::Result<()> {
        let mut targets = Vec::new();
        for (slot, state) in self.tun_state.iter().enumerate() {
            if *state == SlotState::InFlight {
                targets.push(user_data(kind::TUN_READ, slot, 0));
            }
        }
        for (slot, s) in self.recv.iter().enumerate() {
            if s.state == SlotState::InFlight {
                targets.push(user_data(kind::RECV, slot, 0));
            }
        }
        for target in targets {
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(kind::CANCEL, 0, 0));
            // SAFETY: a cancellation references no memory.
            unsafe { self.push(&cancel) }?;
        }
        Ok(())
    }

    /// Operations submitted whose completion was not reaped yet (cancellations included).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether reaped events wait in the queue for [`PumpRing::next_event`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Arms a one-shot poll on the wake-up eventfd.
    pub fn watch_wake(&mut self) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(self.wake.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(user_data(kind::WAKE, 0, 0));
        // SAFETY: a poll references no memory.
        unsafe { self.push(&entry) }
    }

    /// Claims a free send slot, or `None` when all are in flight.
    pub fn claim_send(&mut self) -> Option<usize> {
        let slot = self.free_send.pop()?;
        self.send[slot].claimed = true;
        Some(slot)
    }

    /// Gives a claimed slot back unsent.
    pub fn release_send(&mut self, slot: usize) {
        if let Some(s) = self.send.get_mut(slot) {
            if s.claimed && s.pending == 0 {
                s.claimed = false;
                self.free_send.push(slot);
            }
        }
    }

    /// Whether any send slot is free.
    pub fn has_free_send(&self) -> bool {
        !self.free_send.is_empty()
    }

    /// The bytes of completed TUN read `tun_slot` and the buffer of claimed send slot
    /// `send_slot`, together (the pump splits one into the other).
    pub fn tx_buffers(&mut self, tun_slot: usize, send_slot: usize) -> Option<(&[u8], &mut [u8])> {
        let len = self.tun_slot_len;
        if self.tun_state.get(tun_slot) != Some(&SlotState::Idle) {
            return None;
        }
        let s = self.send.get_mut(send_slot)?;
        if !s.claimed || s.pending != 0 {
            return None;
        }
        Some((
            &self.tun_region[tun_slot * len..(tun_slot + 1) * len],
            &mut s.buf[..],
        ))
    }

    /// Sends chunks of claimed slot `slot` to `dst`: each `(range, segment_size)` is one
    /// `SENDMSG` of `buf[range]`, with UDP_SEGMENT when `segment_size` is given. At most
    /// [`MAX_CHUNKS`]. The slot is freed when the last chunk completes.
    pub fn send(
        &mut self,
        slot: usize,
        dst: SocketAddr,
        chunks: &[(std::ops::Range<usize>, Option<u16>)],
    ) -> io::Result<()> {
        if chunks.is_empty() || chunks.len() > MAX_CHUNKS {
            return Err(invalid("send chunk count out of range"));
        }
        let fd = types::Fd(self.udp.as_raw_fd());
        let addr = SockAddr::from(dst);
        let s = self
            .send
            .get_mut(slot)
            .filter(|s| s.claimed && s.pending == 0)
            .ok_or_else(|| invalid("send slot not claimed or busy"))?;
        if chunks
            .iter()
            .any(|(r, _)| r.start > r.end || r.end > s.buf.len())
        {
            return Err(invalid("send chunk outside the slot"));
        }
        let name_len = addr.len();
        // SAFETY: `addr` holds `name_len` initialised bytes of a sockaddr, which fit a
        // sockaddr_storage; the copy does not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                std::ptr::from_mut(&mut s.name).cast::<u8>(),
                name_len as usize,
            );
        }
        let mut entries = [const { None }; MAX_CHUNKS];
        for (i, (range, segment)) in chunks.iter().enumerate() {
            let c = &mut s.chunks[i];
            c.iov = libc::iovec {
                iov_base: s.buf[range.clone()].as_mut_ptr().cast(),
                iov_len: range.len(),
            };
            c.hdr = zeroed();
            c.hdr.msg_name = std::ptr::from_mut(&mut s.name).cast();
            c.hdr.msg_namelen = name_len;
            c.hdr.msg_iov = &mut c.iov;
            c.hdr.msg_iovlen = 1;
            let mut encoder = c.control.encoder();
            if let Some(size) = segment {
                encoder.push_udp_segment(*size)?;
            }
            encoder.finish_into(&mut c.hdr);
            entries[i] = Some(
                opcode::SendMsg::new(fd, &c.hdr)
                    .build()
                    .user_data(user_data(kind::SEND, slot, i)),
            );
        }
        for entry in entries.iter().flatten() {
            self.send[slot].pending += 1;
            // SAFETY: the msghdr, address, iovec, control area and bytes live in the boxed
            // slot (heap memory that never moves); the slot stays claimed with `pending` > 0
            // until every chunk's completion is reaped, so nothing touches them before.
            if let Err(e) = unsafe { self.push(entry) } {
                self.send[slot].pending -= 1;
                if self.send[slot].pending == 0 {
                    self.release_send(slot);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes each of `bufs` into the TUN (one `WRITE` each, submitted in batches with
    /// whatever else is queued) and returns only when all of them completed, calling
    /// `done(index, result)` for each.
    pub fn write_tun_all<'b>(
        &mut self,
        bufs: impl IntoIterator<Item = &'b [u8]>,
        mut done: impl FnMut(usize, io::Result<usize>),
    ) {
        let fd = types::Fd(self.tun.as_raw_fd());
        let mut pending = 0usize;
        for (i, buf) in bufs.into_iter().enumerate() {
            let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            let entry = opcode::Write::new(fd, buf.as_ptr(), len)
                .build()
                .user_data(user_data(kind::WRITE, i, 0));
            if self.ring.submission().is_full() || pending >= self.write_batch {
                self.enter_or_abort(0, &mut pending, &mut done);
            }
            // SAFETY: `buf` is borrowed for this whole call, and the call does not return
            // before the completion of this write is reaped (below), or aborts.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                done(i, Err(io::Error::from_raw_os_error(libc::EBUSY)));
                continue;
            }
            self.in_flight += 1;
            pending += 1;
        }
        while pending > 0 {
            self.enter_or_abort(1, &mut pending, &mut done);
        }
    }

    /// Submits and waits for `want` completions, reaping writes into `done` and the rest into
    /// the event queue; aborts on a persistent error while writes are pending.
    fn enter_or_abort(
        &mut self,
        want: usize,
        pending: &mut usize,
        done: &mut impl FnMut(usize, io::Result<usize>),
    ) {
        let mut failures = 0;
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => break,
                Err(e) if is_transient(&e) => {
                    self.reap_writes(pending, done);
                    if want == 0 || *pending == 0 {
                        break;
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures > 100 {
                        eprintln!("weftd: io_uring_enter keeps failing with TUN writes in flight ({e}); aborting");
                        std::process::abort();
                    }
                }
            }
        }
        self.reap_writes(pending, done);
    }

    fn reap_writes(
        &mut self,
        pending: &mut usize,
        done: &mut impl FnMut(usize, io::Result<usize>),
    ) {
        let mut cq = self.ring.completion();
        cq.sync();
        let mut writes: [(usize, i32); 64] = [(0, 0); 64];
        let mut n = 0;
        let mut others: [Option<cqueue::Entry>; 64] = [const { None }; 64];
        let mut m = 0;
        for cqe in &mut cq {
            self.in_flight -= 1;
            let (k, slot, _) = split_user_data(cqe.user_data());
            if k == kind::WRITE {
                writes[n] = (slot, cqe.result());
                n += 1;
            } else {
                others[m] = Some(cqe);
                m += 1;
            }
            if n == writes.len() || m == others.len() {
                break;
            }
        }
        drop(cq);
        for &(slot, res) in &writes[..n] {
            *pending -= 1;
            done(slot, result(res).map(|v| v as usize));
        }
        for cqe in others.iter_mut().take(m) {
            if let Some(cqe) = cqe.take() {
                self.record(&cqe);
            }
        }
        if n == writes.len() || m == others.len() {
            self.reap_writes(pending, done);
        }
    }

    /// Submits what is queued and waits until at least one completion is there (none when
    /// `wait` is false).
    pub fn submit_and_wait(&mut self, wait: bool) -> io::Result<()> {
        if wait && !self.events.is_empty() {
            return self.submit_retrying();
        }
        loop {
            match self.ring.submit_and_wait(usize::from(wait)) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    self.reap();
                    if !self.events.is_empty() {
                        break;
                    }
                }
                Err(e) if is_transient(&e) => self.reap(),
                Err(e) => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    /// The next completion, if any was reaped.
    pub fn next_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.reap();
        }
        self.events.pop_front()
    }

    fn reap(&mut self) {
        loop {
            let mut batch: [Option<cqueue::Entry>; 64] = [const { None }; 64];
            let mut n = 0;
            {
                let mut cq = self.ring.completion();
                cq.sync();
                for cqe in &mut cq {
                    batch[n] = Some(cqe);
                    n += 1;
                    if n == batch.len() {
                        break;
                    }
                }
            }
            for cqe in batch.iter_mut().take(n) {
                if let Some(cqe) = cqe.take() {
                    self.in_flight -= 1;
                    self.record(&cqe);
                }
            }
            if n < 64 {
                return;
            }
        }
    }

    /// Turns one completion (already counted out of `in_flight`) into an event and frees
    /// its slot.
    fn record(&mut self, cqe: &cqueue::Entry) {
        let (k, slot, chunk) = split_user_data(cqe.user_data());
        let res = cqe.result();
        match k {
            kind::TUN_READ => {
                if let Some(state) = self.tun_state.get_mut(slot) {
                    *state = SlotState::Idle;
                }
                self.events.push_back(Event::TunRead {
                    slot,
                    result: result(res).map(|n| n as usize),
                });
            }
            kind::RECV => {
                let Some(s) = self.recv.get_mut(slot) else {
                    return;
                };
                s.state = SlotState::Idle;
                let meta = result(res).map(|n| recv_meta(s, n as usize));
                self.events.push_back(Event::Recv { slot, result: meta });
            }
            kind::SEND => {
                if let Some(s) = self.send.get_mut(slot) {
                    s.pending = s.pending.saturating_sub(1);
                    if s.pending == 0 && s.claimed {
                        s.claimed = false;
                        self.free_send.push(slot);
                    }
                }
                self.events.push_back(Event::Sent {
                    slot,
                    chunk,
                    result: result(res).map(|n| n as usize),
                });
            }
            kind::WAKE => self.events.push_back(Event::Wake),
            // A write reaped outside write_tun_all cannot happen (it waits for all of its
            // own); cancellations carry nothing.
            _ => {}
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

fn result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as u32)
    }
}

/// What the kernel wrote into a receive slot's msghdr, as a [`RecvMeta`].
fn recv_meta(s: &RecvSlot, len: usize) -> RecvMeta {
    #[allow(
        clippy::unnecessary_cast,
        reason = "msg_controllen's type differs between libcs"
    )]
    let control_len = s.hdr.msg_controllen as usize;
    let flags = s.hdr.msg_flags;
    let (gro_segment_size, control_truncated) =
        match Decoder::new(s.control.filled(control_len), flags) {
            Ok(d) => (d.udp_gro_segment_size(), false),
            Err(_) => (None, true),
        };
    RecvMeta {
        len,
        src: socket_addr(&s.name, s.hdr.msg_namelen),
        gro_segment_size,
        truncated: flags & libc::MSG_TRUNC != 0,
        control_truncated,
    }
}

impl Drop for PumpRing<'_> {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(user_data(kind::CANCEL, 0, 0));
            // SAFETY: a cancellation references no memory.
            if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
                self.in_flight += 1;
            }
            let deadline = Instant::now() + DROP_WAIT;
            let ts = types::Timespec::new().nsec(50_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            while self.in_flight > 0 && Instant::now() < deadline {
                let _ = self.ring.submitter().submit_with_args(1, &args);
                self.reap();
            }
        }
        if self.in_flight > 0 {
            // The kernel may still write into the buffers: leak them and the ring.
            return;
        }
        // SAFETY: nothing is in flight, so the kernel holds no pointer into the buffers; each
        // field is dropped exactly once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.tun_region);
            ManuallyDrop::drop(&mut self.recv);
            ManuallyDrop::drop(&mut self.send);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn config() -> RingConfig {
        RingConfig {
            tun_slots: 2,
            tun_slot_len: 2048,
            recv_slots: 2,
            recv_slot_len: 2048,
            send_slots: 2,
            send_slot_len: 4096,
            write_batch: 8,
        }
    }

    #[test]
    fn user_data_round_trip() {
        assert_eq!(
            split_user_data(user_data(kind::SEND, 12345, 7)),
            (kind::SEND, 12345, 7)
        );
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
        let wake = super::super::poll::EventFd::new().unwrap();
        let mut ring = PumpRing::new(t1.as_fd(), a.as_fd(), wake.as_fd(), &config()).unwrap();
        // A receive on `a` and a read on the "TUN".
        ring.recv(0, vec![0u8; 2048].into_boxed_slice()).unwrap();
        ring.read_tun(0).unwrap();
        ring.watch_wake().unwrap();
        // Send 3 segments of 100 bytes to b with GSO, and one plain datagram.
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
        // Dropping with a read in flight cancels it.
        ring.read_tun(0).unwrap();
        drop(ring);
    }
}
