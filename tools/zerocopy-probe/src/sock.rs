//! UDP sockets and their syscalls: options, GSO `sendmsg`, GRO `recvmsg`, the error queue;
//! and the control messages they carry (the one place cmsg bytes are laid out and read).
//!
//! Contract: every fd is an `OwnedFd` / `BorrowedFd`; every syscall error comes back as
//! `io::Error` (EINTR retried here). [`SendControl`] is an aligned control area holding one
//! UDP_SEGMENT cmsg; [`cmsgs`] walks a received control area with bounds checks.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::notify::{ErrQueueEntry, ZcRange};

/// `SO_ZEROCOPY`, asm-generic/socket.h (the libc crate does not export it for glibc).
const SO_ZEROCOPY: libc::c_int = 60;

/// `CMSG_SPACE(data_len)`.
const fn cmsg_space(data_len: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument; no pointer is read.
    unsafe { libc::CMSG_SPACE(data_len as libc::c_uint) as usize }
}

/// `CMSG_LEN(data_len)`.
const fn cmsg_len(data_len: usize) -> usize {
    // SAFETY: CMSG_LEN is arithmetic on its argument; no pointer is read.
    unsafe { libc::CMSG_LEN(data_len as libc::c_uint) as usize }
}

/// A control area of `N` bytes aligned like `struct cmsghdr`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Control<const N: usize> {
    _align: [libc::cmsghdr; 0],
    pub(crate) bytes: [u8; N],
}

impl<const N: usize> Control<N> {
    pub(crate) const fn new() -> Self {
        Control {
            _align: [],
            bytes: [0; N],
        }
    }
}

/// Room for one UDP_SEGMENT cmsg (a `u16`, net/ipv4/udp.c `udp_cmsg_send`).
const SEND_CONTROL_LEN: usize = cmsg_space(size_of::<u16>());
/// Room for a UDP_GRO cmsg (an `int`) and a few more.
const RECV_CONTROL_LEN: usize = 4 * cmsg_space(size_of::<libc::c_int>());
/// Room for an `IP_RECVERR` cmsg: `sock_extended_err` (16 bytes) and the offender's
/// `sockaddr_in` (net/ipv4/ip_sockglue.c `ip_recv_error`), with spare.
const ERR_CONTROL_LEN: usize = cmsg_space(64);

/// A control area holding one UDP_SEGMENT cmsg.
pub(crate) type SendControl = Control<SEND_CONTROL_LEN>;

impl SendControl {
    /// A UDP_SEGMENT cmsg: the kernel cuts each datagram into `segment_size` pieces.
    pub(crate) fn udp_segment(segment_size: u16) -> SendControl {
        let mut c = Control::new();
        // SAFETY: all-zero is a valid cmsghdr.
        let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
        hdr.cmsg_len = cmsg_len(size_of::<u16>()) as _;
        hdr.cmsg_level = libc::SOL_UDP;
        hdr.cmsg_type = libc::UDP_SEGMENT;
        // SAFETY: bytes has SEND_CONTROL_LEN >= size_of::<cmsghdr>() bytes and is aligned for
        // cmsghdr (the `_align` field).
        unsafe { std::ptr::write(c.bytes.as_mut_ptr().cast::<libc::cmsghdr>(), hdr) };
        let at = cmsg_len(0);
        c.bytes[at..at + 2].copy_from_slice(&segment_size.to_ne_bytes());
        c
    }
}

/// One received control message: `(level, type, data)`.
pub(crate) type Cmsg<'a> = (libc::c_int, libc::c_int, &'a [u8]);

/// The cmsgs of a received control area (`control` = its first `msg_controllen` bytes); stops
/// at the first header whose length does not fit.
pub(crate) fn cmsgs(control: &[u8]) -> impl Iterator<Item = Cmsg<'_>> {
    let hdr_len = cmsg_len(0);
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = control.get(at..)?;
        if rest.len() < hdr_len {
            return None;
        }
        // SAFETY: rest has at least size_of::<cmsghdr>() bytes; read_unaligned has no
        // alignment requirement.
        let hdr: libc::cmsghdr = unsafe { std::ptr::read_unaligned(rest.as_ptr().cast()) };
        let len = hdr.cmsg_len as usize;
        if len < hdr_len || len > rest.len() {
            return None;
        }
        at += cmsg_space(len - hdr_len).min(rest.len());
        Some((hdr.cmsg_level, hdr.cmsg_type, &rest[hdr_len..len]))
    })
}

/// The segment size of a UDP_GRO cmsg, if there is one.
pub(crate) fn gro_segment_size(control: &[u8]) -> Option<usize> {
    cmsgs(control).find_map(|(level, ty, data)| {
        if level != libc::SOL_UDP || ty != libc::UDP_GRO {
            return None;
        }
        let b: [u8; 4] = data.get(..4)?.try_into().ok()?;
        usize::try_from(libc::c_int::from_ne_bytes(b)).ok()
    })
}

/// Retries `f` while it fails with EINTR; maps a negative return to `io::Error`.
fn retry(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let r = f();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// A blocking IPv4 UDP socket.
pub(crate) fn udp_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// setsockopt(2) of an option whose value is `T` (an `int` or a `timeval`).
fn set_opt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v points to size_of::<T>() readable bytes for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An integer socket option.
pub(crate) fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    set_opt(fd, level, name, &v)
}

/// SO_ZEROCOPY on: sends with MSG_ZEROCOPY pin the pages and notify on the error queue.
pub(crate) fn set_zerocopy(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, SO_ZEROCOPY, 1)
}

/// SO_SNDBUFFORCE and SO_RCVBUFFORCE (root), as weftd sets them (engine/src/underlay).
pub(crate) fn set_buffers(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, v)?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v)
}

/// SO_RCVTIMEO and SO_SNDTIMEO: a blocking call returns EAGAIN after `t` (so loops can see the
/// stop flag).
pub(crate) fn set_timeouts(fd: BorrowedFd<'_>, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    set_opt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    set_opt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv)
}

pub(crate) fn bind(fd: BorrowedFd<'_>, a: SocketAddrV4) -> io::Result<()> {
    with_sockaddr(fd, a, libc::bind)
}

pub(crate) fn connect(fd: BorrowedFd<'_>, a: SocketAddrV4) -> io::Result<()> {
    with_sockaddr(fd, a, libc::connect)
}

/// Calls `call` (`bind` or `connect`: the same signature) on `fd` with `a` as a `sockaddr_in`.
fn with_sockaddr(
    fd: BorrowedFd<'_>,
    a: SocketAddrV4,
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
) -> io::Result<()> {
    let s = sockaddr_in(a);
    // SAFETY: s is a valid sockaddr_in that lives across the call; its size is given.
    let r = unsafe {
        call(
            fd.as_raw_fd(),
            (&s as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `msghdr` for a connected socket: one iovec, an optional control area.
///
/// # Safety
/// The returned header points at `iov` and `control`; it may be used only while both live and
/// do not move.
pub(crate) unsafe fn msghdr(iov: *mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov;
    m.msg_iovlen = 1;
    if !control.is_empty() {
        m.msg_control = control.as_mut_ptr().cast();
        m.msg_controllen = control.len() as _;
    }
    m
}

/// One GSO send of `buf` on a connected socket with `flags` (0 or MSG_ZEROCOPY).
pub(crate) fn send_gso(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    control: &mut SendControl,
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: iov and control live on this frame across the sendmsg below.
    let m = unsafe { msghdr(&mut iov, &mut control.bytes) };
    // SAFETY: m describes readable memory (buf, control) that lives across the call; the
    // kernel only reads it (with MSG_ZEROCOPY it pins buf's pages: the caller keeps buf
    // unchanged until the notification).
    retry(|| unsafe { libc::sendmsg(fd.as_raw_fd(), &m, flags) })
}

/// Control area of a receive.
pub(crate) type RecvControl = Control<RECV_CONTROL_LEN>;

/// One receive into `buf`; returns the datagram's length and the GRO segment size (when the
/// kernel coalesced and said so).
pub(crate) fn recv_gro(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    control: &mut RecvControl,
) -> io::Result<(usize, Option<usize>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov and control live on this frame across the recvmsg below.
    let mut m = unsafe { msghdr(&mut iov, &mut control.bytes) };
    // SAFETY: m describes writable memory (buf, control) that lives across the call.
    let n = retry(|| unsafe { libc::recvmsg(fd.as_raw_fd(), &mut m, 0) })?;
    if m.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("recvmsg: control messages truncated"));
    }
    let clen = m.msg_controllen.min(control.bytes.len());
    Ok((n, gro_segment_size(&control.bytes[..clen])))
}

/// Reads every entry of the socket's error queue now (MSG_ERRQUEUE | MSG_DONTWAIT) and hands
/// each to `f`.
pub(crate) fn drain_error_queue(
    fd: BorrowedFd<'_>,
    mut f: impl FnMut(ErrQueueEntry),
) -> io::Result<()> {
    loop {
        let mut control = Control::<ERR_CONTROL_LEN>::new();
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 0,
        };
        // SAFETY: iov and control live on this frame across the recvmsg below.
        let mut m = unsafe { msghdr(&mut iov, &mut control.bytes) };
        // SAFETY: m describes writable memory that lives across the call.
        let r = retry(|| unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut m,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        });
        match r {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
        if m.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(io::Error::other("MSG_ERRQUEUE: control messages truncated"));
        }
        let clen = m.msg_controllen.min(control.bytes.len());
        for (level, ty, data) in cmsgs(&control.bytes[..clen]) {
            if level == libc::SOL_IP && ty == libc::IP_RECVERR {
                let e = ZcRange::parse(data).map_err(io::Error::other)?;
                f(e);
            }
        }
    }
}

/// Waits up to `timeout` for the error queue (POLLERR); true when something is there.
pub(crate) fn wait_error_queue(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one pollfd that lives across the call.
    let r = retry(|| unsafe { libc::poll(&mut p, 1, ms) } as isize)?;
    Ok(r > 0 && p.revents & libc::POLLERR != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_cmsg_reads_back() {
        let c = SendControl::udp_segment(1422);
        let all: Vec<_> = cmsgs(&c.bytes).collect();
        assert_eq!(all.len(), 1);
        let (level, ty, data) = all[0];
        assert_eq!((level, ty), (libc::SOL_UDP, libc::UDP_SEGMENT));
        assert_eq!(data, 1422u16.to_ne_bytes());
    }

    #[test]
    fn gro_segment_size_and_truncated_headers() {
        let mut c = RecvControl::new();
        // SAFETY: all-zero is a valid cmsghdr.
        let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
        hdr.cmsg_len = cmsg_len(4) as _;
        hdr.cmsg_level = libc::SOL_UDP;
        hdr.cmsg_type = libc::UDP_GRO;
        // SAFETY: c.bytes is aligned for cmsghdr and long enough.
        unsafe { std::ptr::write(c.bytes.as_mut_ptr().cast(), hdr) };
        let at = cmsg_len(0);
        c.bytes[at..at + 4].copy_from_slice(&1422i32.to_ne_bytes());
        let used = cmsg_space(4);
        assert_eq!(gro_segment_size(&c.bytes[..used]), Some(1422));
        // A header claiming more than there is ends the walk.
        assert_eq!(gro_segment_size(&c.bytes[..cmsg_len(4) - 1]), None);
        assert_eq!(cmsgs(&[]).count(), 0);
    }
}
