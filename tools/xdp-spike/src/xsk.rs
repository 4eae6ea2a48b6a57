//! An AF_XDP socket with its UMEM and four rings, for one queue of one device.
//!
//! Contract: [`Xsk::open`] registers a UMEM of [`FRAMES`] frames of [`FRAME_SIZE`] bytes,
//! sizes the fill, completion, rx and tx rings to [`RING_SIZE`], maps them, and binds to
//! `(ifindex, queue)`, first asking for zero-copy and, when the driver refuses, for copy mode
//! ([`Xsk::zero_copy`] says which it got, read back with `XDP_OPTIONS`). The first half of the
//! frames is handed to the kernel through the fill ring for receiving; the second half is the
//! transmit pool. The rings are single-producer single-consumer shared with the kernel: we
//! read the other side's index with `Acquire` and publish ours with `Release`
//! (Documentation/networking/af_xdp.rst, tools/lib/bpf xsk.h). Frame addresses handed out by
//! [`Xsk::frame`] / [`Xsk::frame_mut`] are always offsets the kernel gave back or that we own.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes per UMEM frame (one page: the aligned mode's largest chunk is the page size).
pub(crate) const FRAME_SIZE: u32 = 4096;
/// Frames in the UMEM.
pub(crate) const FRAMES: u32 = 4096;
/// Descriptors per ring (a power of two).
pub(crate) const RING_SIZE: u32 = 2048;

/// An anonymous memory mapping, unmapped on drop.
#[derive(Debug)]
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// Maps `len` bytes: anonymous when `fd` is None, else `fd` at `offset` (shared).
    fn new(len: usize, fd: Option<BorrowedFd<'_>>, offset: u64) -> io::Result<Mmap> {
        let (flags, raw) = match fd {
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd.as_raw_fd()),
        };
        // SAFETY: a fresh mapping; the kernel picks the address and checks fd and offset.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave NULL"))?;
        Ok(Mmap { ptr, len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len is a mapping this value made and nothing else unmaps.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One mapped ring: `producer` and `consumer` indices, a `flags` word and `size` entries of
/// `T` (`u64` addresses for fill/completion, `xdp_desc` for rx/tx).
#[derive(Debug)]
struct Ring<T> {
    map: Mmap,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    mask: u32,
    /// Our copy of the index we own (producer for fill/tx, consumer for rx/completion).
    local: u32,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    fn map(fd: BorrowedFd<'_>, off: &libc::xdp_ring_offset, pgoff: u64) -> io::Result<Ring<T>> {
        let len = off.desc as usize + RING_SIZE as usize * std::mem::size_of::<T>();
        let map = Mmap::new(len, Some(fd), pgoff)?;
        Ok(Ring {
            map,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            desc: off.desc as usize,
            mask: RING_SIZE - 1,
            local: 0,
            _t: std::marker::PhantomData,
        })
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `at` is an offset the kernel gave (XDP_MMAP_OFFSETS) inside the mapping, of
        // a u32 that only ever changes atomically.
        unsafe { &*self.map.ptr.as_ptr().add(at).cast::<AtomicU32>() }
    }

    fn slot(&self, i: u32) -> *mut T {
        // SAFETY: (i & mask) < RING_SIZE entries of T follow `desc` inside the mapping.
        unsafe {
            self.map
                .ptr
                .as_ptr()
                .add(self.desc)
                .cast::<T>()
                .add((i & self.mask) as usize)
        }
    }

    /// Producer side: how many entries we may write now.
    fn free(&self) -> u32 {
        let cons = self.index(self.consumer).load(Ordering::Acquire);
        RING_SIZE - self.local.wrapping_sub(cons)
    }

    /// Producer side: writes `v` at our next slot (publish with [`Ring::submit`]).
    fn push(&mut self, v: T) {
        // SAFETY: the caller checked `free`; the slot is ours until we publish it.
        unsafe { self.slot(self.local).write_volatile(v) };
        self.local = self.local.wrapping_add(1);
    }

    fn submit(&self) {
        self.index(self.producer)
            .store(self.local, Ordering::Release);
    }

    /// Consumer side: how many entries are ready.
    fn ready(&self) -> u32 {
        let prod = self.index(self.producer).load(Ordering::Acquire);
        prod.wrapping_sub(self.local)
    }

    /// Consumer side: the entry `k` places after our index (k < ready).
    fn peek(&self, k: u32) -> T {
        // SAFETY: published by the kernel (checked with `ready`) and not yet released.
        unsafe { self.slot(self.local.wrapping_add(k)).read_volatile() }
    }

    fn release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.index(self.consumer)
            .store(self.local, Ordering::Release);
    }

    fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// The socket, its UMEM and rings, and the transmit frame pool.
#[derive(Debug)]
pub(crate) struct Xsk {
    fd: OwnedFd,
    umem: Mmap,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// Transmit frames we own.
    pool: Vec<u64>,
    zero_copy: bool,
}

fn setsockopt<T>(fd: BorrowedFd<'_>, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v points to a live T and the length is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// getsockopt(SOL_XDP) into a `T` made only of integers (an all-zero `T` is valid).
fn getsockopt<T: Copy>(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<T> {
    // SAFETY: every T this file asks for (xdp_options, xdp_statistics, xdp_mmap_offsets) is
    // plain integers, for which all-zero bytes are a value.
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: v is a live T and len its size; the kernel writes at most len bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

fn bind(fd: BorrowedFd<'_>, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let sa = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: sa is a live sockaddr_xdp and the length is its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_xdp).cast(),
            std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn new_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What binding answered: the error of the zero-copy attempt when it fell back to copy mode.
#[derive(Debug)]
pub(crate) struct BindReport {
    pub(crate) zero_copy_refused: Option<io::Error>,
}

impl Xsk {
    /// Sets up the UMEM and rings and binds to `(ifindex, queue)`. `copy_only` skips the
    /// zero-copy attempt.
    pub(crate) fn open(
        ifindex: u32,
        queue: u32,
        copy_only: bool,
    ) -> anyhow::Result<(Xsk, BindReport)> {
        use anyhow::Context;
        let umem_len = (FRAMES * FRAME_SIZE) as usize;
        let mut report = BindReport {
            zero_copy_refused: None,
        };
        // Each attempt gets a fresh socket, UMEM and rings: nothing from a refused bind
        // carries over.
        let modes: &[u16] = if copy_only {
            &[libc::XDP_COPY]
        } else {
            &[libc::XDP_ZEROCOPY, libc::XDP_COPY]
        };
        for &mode in modes {
            let fd = new_socket().context("socket(AF_XDP)")?;
            let umem = Mmap::new(umem_len, None, 0).context("mmap of the UMEM")?;
            let reg = libc::xdp_umem_reg {
                addr: umem.ptr.as_ptr() as u64,
                len: umem_len as u64,
                chunk_size: FRAME_SIZE,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(fd.as_fd(), libc::XDP_UMEM_REG, &reg).context("XDP_UMEM_REG")?;
            for opt in [
                libc::XDP_UMEM_FILL_RING,
                libc::XDP_UMEM_COMPLETION_RING,
                libc::XDP_RX_RING,
                libc::XDP_TX_RING,
            ] {
                setsockopt(fd.as_fd(), opt, &RING_SIZE)
                    .with_context(|| format!("ring size option {opt}"))?;
            }
            let off: libc::xdp_mmap_offsets =
                getsockopt(fd.as_fd(), libc::XDP_MMAP_OFFSETS).context("XDP_MMAP_OFFSETS")?;
            let fill = Ring::map(fd.as_fd(), &off.fr, libc::XDP_UMEM_PGOFF_FILL_RING)
                .context("mmap of the fill ring")?;
            let comp = Ring::map(fd.as_fd(), &off.cr, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
                .context("mmap of the completion ring")?;
            let rx = Ring::map(fd.as_fd(), &off.rx, libc::XDP_PGOFF_RX_RING as u64)
                .context("mmap of the rx ring")?;
            let tx = Ring::map(fd.as_fd(), &off.tx, libc::XDP_PGOFF_TX_RING as u64)
                .context("mmap of the tx ring")?;
            match bind(fd.as_fd(), ifindex, queue, mode | libc::XDP_USE_NEED_WAKEUP) {
                Ok(()) => {}
                Err(e) if mode == libc::XDP_ZEROCOPY => {
                    report.zero_copy_refused = Some(e);
                    continue;
                }
                Err(e) => return Err(e).context("bind(AF_XDP) in copy mode"),
            }
            let opts: libc::xdp_options =
                getsockopt(fd.as_fd(), libc::XDP_OPTIONS).context("XDP_OPTIONS")?;
            let mut xsk = Xsk {
                fd,
                umem,
                fill,
                comp,
                rx,
                tx,
                pool: (FRAMES / 2..FRAMES)
                    .map(|i| u64::from(i * FRAME_SIZE))
                    .collect(),
                zero_copy: opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0,
            };
            for i in 0..FRAMES / 2 {
                xsk.fill.push(u64::from(i * FRAME_SIZE));
            }
            xsk.fill.submit();
            return Ok((xsk, report));
        }
        anyhow::bail!("no bind mode left")
    }

    /// Whether the kernel runs this socket zero-copy.
    pub(crate) fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Received descriptors ready (at most `max`).
    pub(crate) fn rx_ready(&self, max: u32) -> u32 {
        self.rx.ready().min(max)
    }

    /// The `k`th ready received frame's UMEM address and length.
    pub(crate) fn rx_peek(&self, k: u32) -> (u64, u32) {
        let d = self.rx.peek(k);
        (d.addr, d.len)
    }

    /// Releases `n` received descriptors and gives their frames (`addrs`) back to the fill
    /// ring.
    pub(crate) fn rx_release(&mut self, n: u32, addrs: &[u64]) {
        self.rx.release(n);
        for &a in addrs {
            // The fill ring is as large as the frames it ever holds: it always has room.
            self.fill.push(a & !u64::from(FRAME_SIZE - 1));
        }
        self.fill.submit();
    }

    /// Whether the fill ring asks for a wake-up (the kernel stopped polling for frames).
    pub(crate) fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// The bytes of the frame at `addr`, `len` long.
    pub(crate) fn frame(&self, addr: u64, len: u32) -> &[u8] {
        let start = addr as usize;
        let end = (start + len as usize).min(self.umem.len);
        // SAFETY: inside the UMEM mapping; the kernel is done with a frame it handed us.
        unsafe {
            std::slice::from_raw_parts(self.umem.ptr.as_ptr().add(start), end - start.min(end))
        }
    }

    /// The whole writable frame at `addr` (a transmit frame we own).
    pub(crate) fn frame_mut(&mut self, addr: u64) -> &mut [u8] {
        let start = (addr as usize).min(self.umem.len - FRAME_SIZE as usize);
        // SAFETY: one frame inside the UMEM that is in our pool, so the kernel is not using it.
        unsafe {
            std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(start), FRAME_SIZE as usize)
        }
    }

    /// Takes a free transmit frame, first reclaiming completed ones.
    pub(crate) fn tx_frame(&mut self) -> Option<u64> {
        if self.pool.is_empty() {
            self.reclaim();
        }
        self.pool.pop()
    }

    /// Gives an unused transmit frame back.
    pub(crate) fn tx_unused(&mut self, addr: u64) {
        self.pool.push(addr);
    }

    /// Queues frame `addr` of `len` bytes on the tx ring (publish with [`Xsk::kick`]).
    /// Returns false when the ring is full (the frame goes back to the pool).
    pub(crate) fn tx_push(&mut self, addr: u64, len: u32) -> bool {
        if self.tx.free() == 0 {
            self.pool.push(addr);
            return false;
        }
        self.tx.push(libc::xdp_desc {
            addr,
            len,
            options: 0,
        });
        true
    }

    /// Publishes queued transmit descriptors and, in copy mode or when asked, kicks the
    /// kernel with `sendto` (copy mode transmits inside that call).
    pub(crate) fn kick(&mut self) -> io::Result<()> {
        self.tx.submit();
        if !self.zero_copy || self.tx.needs_wakeup() {
            loop {
                // SAFETY: sendto with no buffer on our socket: the AF_XDP transmit kick.
                let r = unsafe {
                    libc::sendto(
                        self.fd.as_raw_fd(),
                        std::ptr::null(),
                        0,
                        libc::MSG_DONTWAIT,
                        std::ptr::null(),
                        0,
                    )
                };
                if r >= 0 {
                    break;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // Busy / more left: the next kick continues.
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => break,
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
        }
        self.reclaim();
        Ok(())
    }

    /// Wakes the kernel to refill from the fill ring (recvfrom with no buffer).
    pub(crate) fn wake_rx(&self) {
        // SAFETY: recvfrom with no buffer on our socket: the AF_XDP receive wake-up.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Moves completed transmit frames back to the pool.
    fn reclaim(&mut self) {
        let n = self.comp.ready();
        for k in 0..n {
            self.pool.push(self.comp.peek(k));
        }
        if n > 0 {
            self.comp.release(n);
        }
    }

    /// The kernel's drop counters (`XDP_STATISTICS`).
    pub(crate) fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        getsockopt(self.fd.as_fd(), libc::XDP_STATISTICS)
    }
}

impl AsFd for Xsk {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
