//! `sendmsg`, `recvmsg` and `recvmmsg` for UDP sockets, with the UDP_SEGMENT / UDP_GRO cmsgs.
//!
//! Contract: each call builds its `msghdr` (name, one iovec, control area) on the stack from
//! borrowed buffers, so no raw pointer outlives the call. Sends carry at most a UDP_SEGMENT
//! cmsg; receives report the source, the UDP_GRO segment size if the kernel sent one, and the
//! `MSG_TRUNC` / `MSG_CTRUNC` flags, leaving the policy to the caller. EINTR is retried through
//! [`super::io::retry_eintr`].

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use socket2::SockAddr;

use super::cmsg::{CmsgBuf, Decoder, RECV_CONTROL_LEN, SEND_CONTROL_LEN};
use super::io::{retry_eintr, to_len};

/// The most datagrams one [`RecvBatch`] receives per `recvmmsg`.
pub const RECV_BATCH_MAX: usize = 64;

/// What a receive reported besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes placed in the buffer.
    pub len: usize,
    /// The sender, when the kernel gave an IPv4 or IPv6 address.
    pub src: Option<SocketAddr>,
    /// The UDP_GRO segment size, when the datagram was a GRO batch (or GRO is on and the kernel
    /// reported it); `None` means one plain datagram.
    pub gro_segment_size: Option<u16>,
    /// `MSG_TRUNC`: the datagram was larger than the buffer and was cut.
    pub truncated: bool,
    /// `MSG_CTRUNC`: control messages were lost (the segment size may be missing).
    pub control_truncated: bool,
}

impl RecvMeta {
    fn from_parts(
        len: usize,
        src: Option<SocketAddr>,
        flags: libc::c_int,
        control: &[u8],
    ) -> RecvMeta {
        let (gro_segment_size, control_truncated) = match Decoder::new(control, flags) {
            Ok(decoder) => (decoder.udp_gro_segment_size(), false),
            Err(_) => (None, true),
        };
        RecvMeta {
            len,
            src,
            gro_segment_size,
            truncated: flags & libc::MSG_TRUNC != 0,
            control_truncated,
        }
    }
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero means no name, no iovecs, no control area.
    unsafe { std::mem::zeroed() }
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain data; all-zero is AF_UNSPEC.
    unsafe { std::mem::zeroed() }
}

/// `msg_controllen` as a length (a `size_t` on glibc, a `socklen_t` on musl).
#[allow(
    clippy::unnecessary_cast,
    reason = "the field's type differs between libcs"
)]
fn control_len(hdr: &libc::msghdr) -> usize {
    hdr.msg_controllen as usize
}

/// Converts a kernel-filled `sockaddr_storage` of `len` bytes to a std address. A v4-mapped
/// IPv6 address (an IPv4 sender seen by a dual-stack IPv6 socket) comes back as IPv4, so a
/// peer has one address whichever socket heard it.
pub(crate) fn socket_addr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family is AF_INET, so the kernel wrote a sockaddr_in at the start of
            // the storage, which is larger and at least as aligned as sockaddr_in.
            let sin = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family is AF_INET6, so the kernel wrote a sockaddr_in6 at the start of
            // the storage, which is larger and at least as aligned as sockaddr_in6.
            let sin6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Sends `buf` to `dst` with one `sendmsg`; with `segment_size`, attaches a UDP_SEGMENT cmsg
/// so the kernel (or the NIC) cuts it into datagrams of that size, the last one shorter.
/// Returns the bytes sent (all of `buf` for UDP).
pub fn send_to(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    dst: SocketAddr,
    segment_size: Option<u16>,
) -> io::Result<usize> {
    let addr = SockAddr::from(dst);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    let mut hdr = zeroed_msghdr();
    hdr.msg_name = addr.as_ptr().cast_mut().cast();
    hdr.msg_namelen = addr.len();
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    let mut control = CmsgBuf::<SEND_CONTROL_LEN>::new();
    let mut encoder = control.encoder();
    if let Some(size) = segment_size {
        encoder.push_udp_segment(size)?;
    }
    encoder.finish_into(&mut hdr);
    let ret = retry_eintr(|| {
        // SAFETY: `hdr` points at `addr`, `iov` (which points at `buf`) and `control`, all
        // alive and unmoved until this call returns; sendmsg only reads through them.
        unsafe { libc::sendmsg(fd.as_raw_fd(), &hdr, 0) }
    })?;
    Ok(to_len(ret))
}

/// Receives one datagram (or one GRO batch) into `buf` with `recvmsg`.
pub fn recv_from(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<RecvMeta> {
    let mut name = zeroed_storage();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = CmsgBuf::<RECV_CONTROL_LEN>::new();
    let control_bytes = control.as_mut_bytes();
    let mut hdr = zeroed_msghdr();
    hdr.msg_name = std::ptr::from_mut(&mut name).cast();
    hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control_bytes.as_mut_ptr().cast();
    hdr.msg_controllen = control_bytes.len() as _;
    let ret = retry_eintr(|| {
        // SAFETY: `hdr` points at `name`, `iov` (which points at `buf`) and `control`, all
        // alive, exclusive and unmoved until this call returns; the kernel writes at most the
        // lengths given in `hdr`.
        unsafe { libc::recvmsg(fd.as_raw_fd(), &mut hdr, 0) }
    })?;
    let src = socket_addr(&name, hdr.msg_namelen);
    let control_len = control_len(&hdr);
    Ok(RecvMeta::from_parts(
        to_len(ret),
        src,
        hdr.msg_flags,
        control.filled(control_len),
    ))
}

/// Buffers for receiving up to [`RECV_BATCH_MAX`] datagrams with one `recvmmsg`: one slot of
/// `slot_len` bytes per datagram, each with its own address and control area. Allocated once.
#[derive(Debug)]
pub struct RecvBatch {
    data: Vec<u8>,
    slot_len: usize,
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<CmsgBuf<RECV_CONTROL_LEN>>,
    meta: Vec<RecvMeta>,
    filled: usize,
}

impl RecvBatch {
    /// `slots` datagrams (clamped to 1..=RECV_BATCH_MAX) of up to `slot_len` bytes each.
    pub fn new(slots: usize, slot_len: usize) -> RecvBatch {
        let slots = slots.clamp(1, RECV_BATCH_MAX);
        let empty = RecvMeta {
            len: 0,
            src: None,
            gro_segment_size: None,
            truncated: false,
            control_truncated: false,
        };
        RecvBatch {
            data: vec![0; slots * slot_len],
            slot_len,
            names: (0..slots).map(|_| zeroed_storage()).collect(),
            controls: (0..slots).map(|_| CmsgBuf::new()).collect(),
            meta: vec![empty; slots],
            filled: 0,
        }
    }

    /// How many slots the batch has.
    pub fn capacity(&self) -> usize {
        self.names.len()
    }

    /// Receives up to `capacity()` datagrams with one `recvmmsg(..., MSG_WAITFORONE)`: blocks
    /// (on a blocking fd) only until the first arrives. Returns how many were received.
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.filled = 0;
        let slots = self.capacity();
        // SAFETY: iovec and mmsghdr are plain data; all-zero means empty buffers / no control.
        let mut iovs: [libc::iovec; RECV_BATCH_MAX] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; RECV_BATCH_MAX] = unsafe { std::mem::zeroed() };
        let slot_len = self.slot_len.max(1);
        let chunks = self.data.chunks_mut(slot_len);
        let parts = iovs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(chunks)
            .zip(self.names.iter_mut().zip(self.controls.iter_mut()));
        for (((iov, mm), chunk), (name, control)) in parts {
            iov.iov_base = chunk.as_mut_ptr().cast();
            iov.iov_len = chunk.len();
            let control_bytes = control.as_mut_bytes();
            let hdr = &mut mm.msg_hdr;
            hdr.msg_name = std::ptr::from_mut(name).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = control_bytes.as_mut_ptr().cast();
            hdr.msg_controllen = control_bytes.len() as _;
        }
        let vlen = libc::c_uint::try_from(slots).unwrap_or(1);
        let n = retry_eintr(|| {
            // SAFETY: the first `slots` entries of `hdrs` point at `iovs` entries, slices of
            // `self.data`, and entries of `self.names` / `self.controls`, all alive, exclusive
            // and unmoved until this call returns; the kernel writes at most the lengths given.
            // A null timeout means none.
            unsafe {
                libc::recvmmsg(
                    fd.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    vlen,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            }
        })?;
        let n = usize::try_from(n).unwrap_or(0).min(slots);
        for (i, mm) in hdrs.iter().take(n).enumerate() {
            let hdr = &mm.msg_hdr;
            let src = socket_addr(&self.names[i], hdr.msg_namelen);
            let control = self.controls[i].filled(control_len(hdr));
            self.meta[i] = RecvMeta::from_parts(mm.msg_len as usize, src, hdr.msg_flags, control);
        }
        self.filled = n;
        Ok(n)
    }

    /// The bytes each slot holds.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Datagrams received by the last `recv`.
    pub fn len(&self) -> usize {
        self.filled
    }

    /// Whether the last `recv` received nothing.
    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// The `i`th datagram of the last `recv`: its bytes and what the kernel said about it.
    pub fn get(&self, i: usize) -> Option<(&[u8], &RecvMeta)> {
        if i >= self.filled {
            return None;
        }
        let meta = self.meta.get(i)?;
        let start = i * self.slot_len;
        let bytes = self.data.get(start..start + meta.len.min(self.slot_len))?;
        Some((bytes, meta))
    }

    /// The datagrams of the last `recv`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &RecvMeta)> + '_ {
        (0..self.filled).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind b");
        (a, b)
    }

    #[test]
    fn plain_send_and_recv_on_loopback() {
        let (a, b) = pair();
        let dst = b.local_addr().expect("addr");
        assert_eq!(send_to(a.as_fd(), b"hello", dst, None).expect("send"), 5);
        let mut buf = [0u8; 64];
        let meta = recv_from(b.as_fd(), &mut buf).expect("recv");
        assert_eq!(&buf[..meta.len], b"hello");
        assert_eq!(meta.src, Some(a.local_addr().expect("addr")));
        assert_eq!(meta.gro_segment_size, None);
        assert!(!meta.truncated && !meta.control_truncated);
    }

    #[test]
    fn truncation_is_reported() {
        let (a, b) = pair();
        send_to(a.as_fd(), &[7u8; 100], b.local_addr().expect("addr"), None).expect("send");
        let mut buf = [0u8; 10];
        let meta = recv_from(b.as_fd(), &mut buf).expect("recv");
        assert_eq!(meta.len, 10);
        assert!(meta.truncated);
    }

    #[test]
    fn recvmmsg_batch_gets_several_datagrams() {
        let (a, b) = pair();
        let dst = b.local_addr().expect("addr");
        for i in 0..5u8 {
            send_to(a.as_fd(), &[i; 30], dst, None).expect("send");
        }
        let mut batch = RecvBatch::new(8, 64);
        assert_eq!(batch.capacity(), 8);
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = batch.recv(b.as_fd()).expect("recvmmsg");
            assert!(n >= 1);
            got.extend(batch.iter().map(|(bytes, meta)| (bytes.to_vec(), meta.src)));
        }
        let src = Some(a.local_addr().expect("addr"));
        for (i, (bytes, from)) in got.iter().enumerate() {
            assert_eq!(bytes, &vec![i as u8; 30]);
            assert_eq!(*from, src);
        }
        assert!(batch.get(batch.len()).is_none());
    }
}
