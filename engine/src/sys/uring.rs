//! An io_uring that owns every byte the kernel reads or writes through it.
//!
//! Contract: a [`Ring`] submits reads, `RECVMSG`s, `SENDMSG`s, polls and `WRITE`s on fds that
//! outlive it (`BorrowedFd<'fd>`), and hands the kernel memory only the ring owns while the
//! operation is in flight. Its safe API cannot reach that memory before the completion is
//! reaped:
//!
//! - **fixed buffers**: one region allocated with the ring, cut into equal buffers and
//!   registered (`IORING_REGISTER_BUFFERS`) when the kernel allows. [`Ring::read_fixed`] reads
//!   into buffer `i` (`READ_FIXED`, or `READ` when unregistered); [`Ring::fixed`] gives its
//!   bytes only while no read into it is in flight.
//! - **owned buffers**: [`Ring::recvmsg`] and [`Ring::sendmsg`] take a `Box<[u8]>` by value and
//!   give it back in the [`Completion`] ([`Completion::Recv`]; a send cut into several
//!   `SENDMSG` chunks returns it with the completion of its last chunk,
//!   [`Completion::Sent::buf`]). The `msghdr`, `iovec`, address and control area of each
//!   message live in a pool of message slots allocated with the ring (heap memory that never
//!   moves); a slot is the kernel's from the push to the reaping of its completion. Nothing is
//!   allocated per operation.
//! - **borrowed bytes**: [`Ring::write_all`] queues one `WRITE` per borrowed buffer and does
//!   not return before every one of them completed. If the kernel refuses to run them to
//!   completion (an `io_uring_enter` error other than EINTR / EAGAIN / EBUSY, 100 times in a
//!   row), the process aborts: returning would hand memory the kernel may still read back to
//!   the caller.
//!
//! Completions of other operations reaped meanwhile (while waiting for writes, too) are queued
//! and returned in order by [`Ring::next_completion`]. [`Ring::cancel_inputs`] cancels every
//! read and receive in flight (sends and writes go on); their completions still arrive (data
//! the kernel had placed, or ECANCELED).
//!
//! Dropping the ring cancels everything in flight and waits (bounded, [`DROP_WAIT`]) for the
//! cancellations; if the kernel does not finish in time, the buffers, the message slots and the
//! ring are leaked rather than freed under it.
//!
//! What each operation is for (a TUN read, a receive, a send of a split super-packet) is the
//! caller's business: [`Ring::recvmsg`], [`Ring::sendmsg`] and [`Ring::poll_add`] carry a
//! caller's `token` back in their completion, a fixed read its buffer index.

use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use socket2::SockAddr;

use super::cmsg::{CmsgBuf, Decoder, RECV_CONTROL_LEN, SEND_CONTROL_LEN};
use super::msg::{socket_addr, RecvMeta};

/// The most `SENDMSG` chunks one [`Ring::sendmsg`] sends (64 KiB cut into 64-segment or 64 KiB
/// chunks of at least 128-byte segments: 8).
pub const MAX_CHUNKS: usize = 8;

/// How long dropping the ring waits for cancelled operations.
pub const DROP_WAIT: Duration = Duration::from_secs(2);

/// Room for the control messages of a receive (UDP_GRO) or of a send (UDP_SEGMENT).
const MSG_CONTROL_LEN: usize = if RECV_CONTROL_LEN > SEND_CONTROL_LEN {
    RECV_CONTROL_LEN
} else {
    SEND_CONTROL_LEN
};

/// Operation kinds, in the top byte of `user_data`; the rest is an index or a token.
mod kind {
    pub(super) const READ: u64 = 1;
    pub(super) const RECV: u64 = 2;
    pub(super) const SEND: u64 = 3;
    pub(super) const WRITE: u64 = 4;
    pub(super) const POLL: u64 = 5;
    pub(super) const CANCEL: u64 = 6;
}

/// The bits of `user_data` below the kind.
const ID_MASK: u64 = (1 << 56) - 1;

fn user_data(kind: u64, id: u64) -> u64 {
    kind << 56 | (id & ID_MASK)
}

fn split_user_data(ud: u64) -> (u64, u64) {
    (ud >> 56, ud & ID_MASK)
}

/// Sizes of the ring and its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries (rounded up to a power of two, at most 4096); the completion
    /// queue has twice as many.
    pub entries: u32,
    /// Fixed buffers ([`Ring::read_fixed`]).
    pub fixed_buffers: usize,
    /// Bytes per fixed buffer.
    pub fixed_buffer_len: usize,
    /// Messages in flight at once: every `RECVMSG`, and every chunk of every send.
    pub msg_slots: usize,
    /// The most `WRITE`s [`Ring::write_all`] queues before it submits.
    pub write_batch: usize,
}

/// A completion, with what it concerns.
#[derive(Debug)]
pub enum Completion {
    /// A read into fixed buffer `index` finished; its bytes are readable again
    /// ([`Ring::fixed`]).
    Read {
        /// The fixed buffer.
        index: usize,
        /// Bytes read, or the error.
        result: io::Result<usize>,
    },
    /// A receive finished.
    Recv {
        /// The caller's token.
        token: u64,
        /// The buffer given to [`Ring::recvmsg`], back (its first `meta.len` bytes are data).
        buf: Box<[u8]>,
        /// What was received, or the error.
        result: io::Result<RecvMeta>,
    },
    /// Chunk `chunk` of a send finished.
    Sent {
        /// The caller's token.
        token: u64,
        /// The chunk, in the order given.
        chunk: usize,
        /// Bytes sent, or the error.
        result: io::Result<usize>,
        /// The buffer given to [`Ring::sendmsg`], back with the last chunk to complete.
        buf: Option<Box<[u8]>>,
    },
    /// A poll finished.
    Poll {
        /// The caller's token.
        token: u64,
        /// The events, or the error.
        result: io::Result<u32>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgState {
    Free,
    Recv,
    /// A chunk of the send in `sends[group]`.
    Send {
        group: usize,
        chunk: usize,
    },
}

/// One message the kernel may hold: its header, iovec, address and control area.
struct MsgSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_storage,
    control: CmsgBuf<MSG_CONTROL_LEN>,
    state: MsgState,
    token: u64,
    /// A receive's buffer.
    buf: Option<Box<[u8]>>,
}

/// A send's buffer, shared by its chunks.
struct SendGroup {
    buf: Option<Box<[u8]>>,
    /// Chunks in flight.
    pending: usize,
}

fn zeroed<T>() -> T {
    // SAFETY: only used for the plain-data C structs above (msghdr, iovec, sockaddr_storage),
    // for which all-zero is a valid value (null pointers, zero lengths, AF_UNSPEC).
    unsafe { std::mem::zeroed() }
}

/// An io_uring over fds that outlive it; see the module documentation.
pub struct Ring<'fd> {
    ring: ManuallyDrop<IoUring>,
    fixed: ManuallyDrop<Box<[u8]>>,
    fixed_len: usize,
    /// Whether a read into each fixed buffer is in flight.
    fixed_busy: Vec<bool>,
    registered: bool,
    msgs: ManuallyDrop<Box<[MsgSlot]>>,
    free_msgs: Vec<usize>,
    sends: ManuallyDrop<Box<[SendGroup]>>,
    free_sends: Vec<usize>,
    completions: VecDeque<Completion>,
    in_flight: usize,
    write_batch: usize,
    _fds: PhantomData<BorrowedFd<'fd>>,
}

impl std::fmt::Debug for Ring<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.in_flight)
            .field("fixed_buffers", &self.fixed_busy.len())
            .field("registered_buffers", &self.registered)
            .field("msg_slots", &self.msgs.len())
            .field("free_msg_slots", &self.free_msgs.len())
            .field("completions", &self.completions.len())
            .finish()
    }
}

/// Whether io_uring can run here with every opcode [`Ring`] uses.
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

impl<'fd> Ring<'fd> {
    /// Sets the ring and its pools up. Reads and receives on a blocking fd wait in the kernel
    /// for data; on a non-blocking one they complete with EAGAIN instead.
    pub fn new(config: &RingConfig) -> io::Result<Ring<'fd>> {
        let entries = config.entries.clamp(1, 4096).next_power_of_two();
        let ring = build_ring(entries)?;
        let fixed_len = config.fixed_buffer_len;
        let mut fixed = vec![0u8; config.fixed_buffers * fixed_len].into_boxed_slice();
        let iovecs: Vec<libc::iovec> = fixed
            .chunks_mut(fixed_len.max(1))
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: the iovecs cover `fixed`, which this ring owns and frees only after the
        // ring is closed (or never, when it is leaked); READ_FIXED is only issued into it.
        let registered = unsafe { ring.submitter().register_buffers(&iovecs) }.is_ok();
        let msgs: Box<[MsgSlot]> = (0..config.msg_slots)
            .map(|_| MsgSlot {
                hdr: zeroed(),
                iov: zeroed(),
                name: zeroed(),
                control: CmsgBuf::new(),
                state: MsgState::Free,
                token: 0,
                buf: None,
            })
            .collect();
        let sends: Box<[SendGroup]> = (0..config.msg_slots)
            .map(|_| SendGroup {
                buf: None,
                pending: 0,
            })
            .collect();
        Ok(Ring {
            ring: ManuallyDrop::new(ring),
            fixed: ManuallyDrop::new(fixed),
            fixed_len,
            fixed_busy: vec![false; config.fixed_buffers],
            registered,
            msgs: ManuallyDrop::new(msgs),
            free_msgs: (0..config.msg_slots).rev().collect(),
            sends: ManuallyDrop::new(sends),
            free_sends: (0..config.msg_slots).rev().collect(),
            completions: VecDeque::with_capacity(entries as usize * 2),
            in_flight: 0,
            write_batch: config.write_batch.max(1),
            _fds: PhantomData,
        })
    }

    /// Whether the fixed buffers are registered (reads use READ_FIXED).
    pub fn registered_buffers(&self) -> bool {
        self.registered
    }

    /// Makes room for `n` entries in the submission queue, submitting what is queued.
    fn reserve(&mut self, n: usize) -> io::Result<()> {
        loop {
            let (capacity, len) = {
                let sq = self.ring.submission();
                (sq.capacity(), sq.len())
            };
            if capacity - len >= n {
                return Ok(());
            }
            if n > capacity {
                return Err(invalid("more entries than the submission queue holds"));
            }
            self.submit_retrying()?;
        }
    }

    /// Pushes one entry into room made by [`Ring::reserve`].
    ///
    /// # Safety
    ///
    /// Every buffer the entry points at must stay valid and untouched by Rust until its
    /// completion is reaped.
    unsafe fn push_reserved(&mut self, entry: &squeue::Entry) {
        // SAFETY: forwarded from the caller.
        let pushed = unsafe { self.ring.submission().push(entry) };
        debug_assert!(pushed.is_ok(), "room was reserved");
        if pushed.is_ok() {
            self.in_flight += 1;
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

    /// Reads from `fd` into fixed buffer `index` (which must not be in flight).
    pub fn read_fixed(&mut self, fd: BorrowedFd<'fd>, index: usize) -> io::Result<()> {
        let len = self.fixed_len;
        match self.fixed_busy.get(index) {
            Some(false) => {}
            _ => return Err(invalid("fixed buffer busy or out of range")),
        }
        let len32 = u32::try_from(len).map_err(|_| invalid("fixed buffer too large"))?;
        let ptr = self.fixed[index * len..(index + 1) * len].as_mut_ptr();
        let fd = types::Fd(fd.as_raw_fd());
        let entry = if self.registered {
            let i = u16::try_from(index).map_err(|_| invalid("too many fixed buffers"))?;
            opcode::ReadFixed::new(fd, ptr, len32, i).build()
        } else {
            opcode::Read::new(fd, ptr, len32).build()
        }
        .user_data(user_data(kind::READ, index as u64));
        self.reserve(1)?;
        // SAFETY: the buffer's bytes are owned by `fixed` and marked busy below, so no Rust
        // reference to them is made ([`Ring::fixed`]) until the completion is reaped.
        unsafe { self.push_reserved(&entry) };
        self.fixed_busy[index] = true;
        Ok(())
    }

    /// The bytes of fixed buffer `index`; `None` while a read into it is in flight (or out
    /// of range).
    pub fn fixed(&self, index: usize) -> Option<&[u8]> {
        if self.fixed_busy.get(index) != Some(&false) {
            return None;
        }
        let len = self.fixed_len;
        Some(&self.fixed[index * len..(index + 1) * len])
    }

    /// Receives one message (a datagram, or a UDP_GRO batch) from `fd` into `buf`; the
    /// completion carries `token` and gives `buf` back. Without a free message slot, or if
    /// the submission fails, the buffer comes back with the error.
    pub fn recvmsg(
        &mut self,
        fd: BorrowedFd<'fd>,
        token: u64,
        mut buf: Box<[u8]>,
    ) -> Result<(), (io::Error, Box<[u8]>)> {
        if let Err(e) = self.reserve(1) {
            return Err((e, buf));
        }
        let Some(id) = self.free_msgs.pop() else {
            return Err((invalid("no free message slot"), buf));
        };
        let s = &mut self.msgs[id];
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
        s.state = MsgState::Recv;
        s.token = token;
        let entry = opcode::RecvMsg::new(types::Fd(fd.as_raw_fd()), &mut s.hdr)
            .build()
            .user_data(user_data(kind::RECV, id as u64));
        // SAFETY: the msghdr, address, iovec, control area and buffer live in the boxed slot
        // (heap memory that never moves), which is off the free list until the completion is
        // reaped, and no method hands out a reference into a slot.
        unsafe { self.push_reserved(&entry) };
        Ok(())
    }

    /// Sends chunks of `buf` to `dst` through `fd`: each `(range, segment_size)` is one
    /// `SENDMSG` of `buf[range]`, with UDP_SEGMENT when `segment_size` is given; at most
    /// [`MAX_CHUNKS`]. Every chunk completes on its own ([`Completion::Sent`] with `token`
    /// and its position); the last one to complete gives `buf` back. Either every chunk is
    /// submitted or none is, and then the buffer comes back with the error.
    pub fn sendmsg(
        &mut self,
        fd: BorrowedFd<'fd>,
        token: u64,
        dst: SocketAddr,
        mut buf: Box<[u8]>,
        chunks: &[(Range<usize>, Option<u16>)],
    ) -> Result<(), (io::Error, Box<[u8]>)> {
        if chunks.is_empty() || chunks.len() > MAX_CHUNKS {
            return Err((invalid("send chunk count out of range"), buf));
        }
        if chunks
            .iter()
            .any(|(r, _)| r.start > r.end || r.end > buf.len())
        {
            return Err((invalid("send chunk outside the buffer"), buf));
        }
        if self.free_msgs.len() < chunks.len() {
            return Err((invalid("no free message slot"), buf));
        }
        if let Err(e) = self.reserve(chunks.len()) {
            return Err((e, buf));
        }
        let Some(group) = self.free_sends.pop() else {
            return Err((invalid("no free send group"), buf));
        };
        let addr = SockAddr::from(dst);
        let name_len = addr.len();
        let fd = types::Fd(fd.as_raw_fd());
        let mut entries = [const { None }; MAX_CHUNKS];
        for (chunk, (range, segment)) in chunks.iter().enumerate() {
            let Some(id) = self.free_msgs.pop() else {
                // Checked above: there are enough.
                return Err((invalid("no free message slot"), buf));
            };
            let s = &mut self.msgs[id];
            // SAFETY: `addr` holds `name_len` initialised bytes of a sockaddr, which fit a
            // sockaddr_storage; the copy does not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    addr.as_ptr().cast::<u8>(),
                    std::ptr::from_mut(&mut s.name).cast::<u8>(),
                    name_len as usize,
                );
            }
            s.iov = libc::iovec {
                iov_base: buf[range.clone()].as_mut_ptr().cast(),
                iov_len: range.len(),
            };
            s.hdr = zeroed();
            s.hdr.msg_name = std::ptr::from_mut(&mut s.name).cast();
            s.hdr.msg_namelen = name_len;
            s.hdr.msg_iov = &mut s.iov;
            s.hdr.msg_iovlen = 1;
            let mut encoder = s.control.encoder();
            if let Some(size) = segment {
                if let Err(e) = encoder.push_udp_segment(*size) {
                    // Nothing is pushed yet: give the slots taken so far back.
                    let taken = entries.iter().flatten().map(|(_, id)| *id);
                    for id in taken.chain([id]).collect::<Vec<_>>() {
                        self.msgs[id].state = MsgState::Free;
                        self.free_msgs.push(id);
                    }
                    self.free_sends.push(group);
                    return Err((e, buf));
                }
            }
            encoder.finish_into(&mut s.hdr);
            s.state = MsgState::Send { group, chunk };
            s.token = token;
            entries[chunk] = Some((
                opcode::SendMsg::new(fd, &s.hdr)
                    .build()
                    .user_data(user_data(kind::SEND, id as u64)),
                id,
            ));
        }
        self.sends[group] = SendGroup {
            buf: Some(buf),
            pending: chunks.len(),
        };
        for (entry, _) in entries.iter().flatten() {
            // SAFETY: each chunk's msghdr, address, iovec and control area live in its boxed
            // message slot, off the free list until its completion is reaped; the bytes live
            // in the buffer now held by send group `group` (heap memory that never moves),
            // which gives it back only once every chunk's completion is reaped. No method
            // hands out a reference into either.
            unsafe { self.push_reserved(entry) };
        }
        Ok(())
    }

    /// Polls `fd` once for POLLIN; the completion carries `token` (below 2^56).
    pub fn poll_add(&mut self, fd: BorrowedFd<'fd>, token: u64) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(user_data(kind::POLL, token));
        self.reserve(1)?;
        // SAFETY: a poll references no memory.
        unsafe { self.push_reserved(&entry) };
        Ok(())
    }

    /// Cancels every read and receive in flight (one `ASYNC_CANCEL` each, by user data) and
    /// leaves sends, writes and polls alone: a read the kernel completed before the
    /// cancellation arrives still completes with its data, the others complete with
    /// ECANCELED and leave their data queued in the kernel. Reap until
    /// [`Ring::in_flight`] is 0.
    pub fn cancel_inputs(&mut self) -> io::Result<()> {
        let reads = self
            .fixed_busy
            .iter()
            .enumerate()
            .filter(|(_, busy)| **busy)
            .map(|(i, _)| user_data(kind::READ, i as u64));
        let recvs = self
            .msgs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == MsgState::Recv)
            .map(|(i, _)| user_data(kind::RECV, i as u64));
        let targets: Vec<u64> = reads.chain(recvs).collect();
        for target in targets {
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(kind::CANCEL, 0));
            self.reserve(1)?;
            // SAFETY: a cancellation references no memory.
            unsafe { self.push_reserved(&cancel) };
        }
        Ok(())
    }

    /// Operations submitted whose completion was not reaped yet (cancellations included).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether reaped completions wait for [`Ring::next_completion`].
    pub fn has_completions(&self) -> bool {
        !self.completions.is_empty()
    }

    /// Writes each of `bufs` to `fd` (one `WRITE` each, submitted in batches with whatever
    /// else is queued) and returns only when all of them completed, calling
    /// `done(index, result)` for each.
    pub fn write_all<'b>(
        &mut self,
        fd: BorrowedFd<'fd>,
        bufs: impl IntoIterator<Item = &'b [u8]>,
        mut done: impl FnMut(usize, io::Result<usize>),
    ) {
        let fd = types::Fd(fd.as_raw_fd());
        let mut pending = 0usize;
        for (i, buf) in bufs.into_iter().enumerate() {
            let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            let entry = opcode::Write::new(fd, buf.as_ptr(), len)
                .build()
                .user_data(user_data(kind::WRITE, i as u64));
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
    /// the completion queue; aborts on a persistent error while writes are pending.
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
                        eprintln!("weftd: io_uring_enter keeps failing with writes of borrowed bytes in flight ({e}); aborting");
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
            let (k, id) = split_user_data(cqe.user_data());
            if k == kind::WRITE {
                writes[n] = (id as usize, cqe.result());
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
        for &(i, res) in &writes[..n] {
            *pending -= 1;
            done(i, result(res).map(|v| v as usize));
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
    /// `wait` is false, or when reaped completions are already queued). Without waiting it
    /// still asks for events (`IORING_ENTER_GETEVENTS` with no minimum): under DEFER_TASKRUN
    /// that is what runs the completions' task work, so a caller polling with `wait` false
    /// sees what completed (a plain submit would leave them pending until the next wait).
    pub fn submit_and_wait(&mut self, wait: bool) -> io::Result<()> {
        if wait && !self.completions.is_empty() {
            return self.submit_retrying();
        }
        loop {
            let entered = if wait {
                self.ring.submit_and_wait(1)
            } else {
                self.submit_and_peek()
            };
            match entered {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                    self.reap();
                    if !self.completions.is_empty() {
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

    /// `io_uring_enter(queued, min_complete 0, IORING_ENTER_GETEVENTS)`: submits and runs
    /// deferred completions without waiting for one.
    fn submit_and_peek(&mut self) -> io::Result<usize> {
        /// `IORING_ENTER_GETEVENTS` (include/uapi/linux/io_uring.h).
        const IORING_ENTER_GETEVENTS: u32 = 1;
        let queued = u32::try_from(self.ring.submission().len()).unwrap_or(u32::MAX);
        // SAFETY: no argument pointer is passed (`None`, size of an unused sigset type); the
        // queued entries were pushed through `push_reserved`, whose callers keep their
        // buffers alive until completion, as for every other submit.
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, IORING_ENTER_GETEVENTS, None)
        }
    }

    /// The next completion, if any was reaped.
    pub fn next_completion(&mut self) -> Option<Completion> {
        if self.completions.is_empty() {
            self.reap();
        }
        self.completions.pop_front()
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

    /// Turns one completion (already counted out of `in_flight`) into a [`Completion`] and
    /// gives its memory back: the fixed buffer to [`Ring::fixed`], the message slot to the
    /// free list, a buffer to the completion.
    fn record(&mut self, cqe: &cqueue::Entry) {
        let (k, id) = split_user_data(cqe.user_data());
        let res = cqe.result();
        let index = id as usize;
        match k {
            kind::READ => {
                if let Some(busy) = self.fixed_busy.get_mut(index) {
                    *busy = false;
                }
                self.completions.push_back(Completion::Read {
                    index,
                    result: result(res).map(|n| n as usize),
                });
            }
            kind::RECV => {
                let Some(s) = self.msgs.get_mut(index) else {
                    return;
                };
                let meta = result(res).map(|n| recv_meta(s, n as usize));
                s.state = MsgState::Free;
                let (token, buf) = (s.token, s.buf.take());
                self.free_msgs.push(index);
                if let Some(buf) = buf {
                    self.completions.push_back(Completion::Recv {
                        token,
                        buf,
                        result: meta,
                    });
                }
            }
            kind::SEND => {
                let Some(s) = self.msgs.get_mut(index) else {
                    return;
                };
                let MsgState::Send { group, chunk } = s.state else {
                    return;
                };
                s.state = MsgState::Free;
                let token = s.token;
                self.free_msgs.push(index);
                let mut buf = None;
                if let Some(g) = self.sends.get_mut(group) {
                    g.pending = g.pending.saturating_sub(1);
                    if g.pending == 0 {
                        buf = g.buf.take();
                        self.free_sends.push(group);
                    }
                }
                self.completions.push_back(Completion::Sent {
                    token,
                    chunk,
                    result: result(res).map(|n| n as usize),
                    buf,
                });
            }
            kind::POLL => self.completions.push_back(Completion::Poll {
                token: id,
                result: result(res),
            }),
            // A write reaped outside write_all cannot happen (it waits for all of its own);
            // cancellations carry nothing.
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

/// What the kernel wrote into a receive's msghdr, as a [`RecvMeta`].
fn recv_meta(s: &MsgSlot, len: usize) -> RecvMeta {
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

impl Drop for Ring<'_> {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(user_data(kind::CANCEL, 0));
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
            // The kernel may still use the buffers and message slots: leak them and the ring.
            return;
        }
        // SAFETY: nothing is in flight, so the kernel holds no pointer into the buffers or
        // the message slots; each field is dropped exactly once, here, and never used again.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.fixed);
            ManuallyDrop::drop(&mut self.msgs);
            ManuallyDrop::drop(&mut self.sends);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn user_data_round_trip() {
        assert_eq!(
            split_user_data(user_data(kind::SEND, 12345)),
            (kind::SEND, 12345)
        );
        assert_eq!(
            split_user_data(user_data(kind::POLL, ID_MASK)),
            (kind::POLL, ID_MASK)
        );
    }

    /// Owned buffers come back with their completions, a send's only with its last chunk;
    /// a refused send gives its buffer back at once.
    #[test]
    fn owned_buffers_come_back() {
        if let Err(e) = probe() {
            eprintln!("skipping: io_uring unavailable: {e}");
            return;
        }
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = RingConfig {
            entries: 16,
            fixed_buffers: 1,
            fixed_buffer_len: 64,
            msg_slots: 3,
            write_batch: 4,
        };
        let mut ring = Ring::new(&config).unwrap();
        let buf = vec![7u8; 300].into_boxed_slice();
        let chunks = [(0..100, None), (100..200, None), (200..300, Some(50))];
        let dst = b.local_addr().unwrap();
        // Three chunks fill the three message slots: nothing is left for a receive.
        ring.sendmsg(a.as_fd(), 9, dst, buf, &chunks).unwrap();
        let (e, back) = ring
            .recvmsg(a.as_fd(), 1, vec![0u8; 64].into_boxed_slice())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(back.len(), 64);
        let (mut done, mut returned) = (0, None);
        while done < 3 {
            ring.submit_and_wait(true).unwrap();
            while let Some(c) = ring.next_completion() {
                let Completion::Sent {
                    token, result, buf, ..
                } = c
                else {
                    panic!("{c:?}");
                };
                assert_eq!(token, 9);
                assert!(result.unwrap() > 0);
                done += 1;
                assert_eq!(
                    buf.is_some(),
                    done == 3,
                    "the buffer comes with the last chunk"
                );
                returned = returned.or(buf);
            }
        }
        assert_eq!(returned.unwrap().len(), 300);
        assert_eq!(ring.in_flight(), 0);
        let bad = ring.sendmsg(
            a.as_fd(),
            9,
            dst,
            vec![0u8; 8].into_boxed_slice(),
            &[(0..9, None)],
        );
        assert_eq!(bad.unwrap_err().1.len(), 8);
    }
}
