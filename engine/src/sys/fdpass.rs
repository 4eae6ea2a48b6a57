//! Passing open files between processes over a unix stream socket (`SCM_RIGHTS`), and the
//! peer's credentials (`SO_PEERCRED`).
//!
//! Contract: [`send_with_fds`] sends bytes with up to [`MAX_FDS`] descriptors attached in one
//! `sendmsg`; [`recv_with_fds`] receives bytes and the descriptors that came with them, each
//! as an [`OwnedFd`] with close-on-exec set (`MSG_CMSG_CLOEXEC`), so none can leak: a
//! truncated control area (`MSG_CTRUNC`, the kernel closed what did not fit) is an error and
//! the descriptors that did arrive are closed with it. The cmsg bytes are laid out and read by
//! [`super::cmsg`]; EINTR is retried by [`super::io::retry_eintr`].

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cmsg::{cmsg_space, CmsgBuf, Decoder, Encoder};
use super::io::{retry_eintr, to_len};

/// The most descriptors one message carries: the kernel's limit, `SCM_MAX_FD`
/// (include/net/scm.h); more in one `SCM_RIGHTS` cmsg fail with `EINVAL`.
pub const MAX_FDS: usize = 253;

/// Control space for [`MAX_FDS`] descriptors in one `SCM_RIGHTS` cmsg.
const FD_CONTROL_LEN: usize = cmsg_space(MAX_FDS * size_of::<RawFd>());

/// Sends `bytes` (at least one byte: the descriptors ride on it) on the connected unix socket
/// `sock` with `fds` attached; returns the bytes sent. The caller keeps its own descriptors.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors need at least one byte to ride on",
        ));
    }
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one message (at most {MAX_FDS})",
                fds.len()
            ),
        ));
    }
    let mut data = Vec::with_capacity(fds.len() * size_of::<RawFd>());
    for fd in fds {
        data.extend_from_slice(&fd.as_raw_fd().to_ne_bytes());
    }
    let mut control = Box::new(CmsgBuf::<FD_CONTROL_LEN>::new());
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    let mut encoder: Encoder<'_> = control.encoder();
    if !fds.is_empty() {
        encoder.push(libc::SOL_SOCKET, libc::SCM_RIGHTS, &data)?;
    }
    encoder.finish_into(&mut hdr);
    let sent = retry_eintr(|| {
        // SAFETY: `hdr` points at one iovec over `bytes` (only read by sendmsg) and at the
        // control bytes in `control`; all of them live until the call returns. The fds named
        // in the cmsg are borrowed for the call, so they are open.
        unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) }
    })?;
    Ok(to_len(sent))
}

/// Receives up to `buf.len()` bytes from the unix socket `sock` and the descriptors sent with
/// them (at most [`MAX_FDS`]). `Ok((0, []))` is the end of the stream.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut control = Box::new(CmsgBuf::<FD_CONTROL_LEN>::new());
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    let area = control.as_mut_bytes();
    hdr.msg_control = area.as_mut_ptr().cast();
    hdr.msg_controllen = area.len() as _;
    let got = retry_eintr(|| {
        // SAFETY: `hdr` points at one iovec over `buf` and at the control area, both writable
        // and alive until the call returns; the kernel writes at most their lengths.
        unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) }
    })?;
    #[allow(
        clippy::unnecessary_cast,
        reason = "msg_controllen's type differs between libcs"
    )]
    let control_len = hdr.msg_controllen as usize;
    let flags = hdr.msg_flags;
    // Own every descriptor first, so that each is closed whatever happens next.
    let mut fds = Vec::new();
    let truncated = flags & libc::MSG_CTRUNC != 0;
    // Walk the cmsgs even when truncated (the decoder refuses MSG_CTRUNC, so clear it here
    // and fail below), to close what did arrive.
    if let Ok(decoder) = Decoder::new(control.filled(control_len), flags & !libc::MSG_CTRUNC) {
        for cmsg in decoder {
            if cmsg.level != libc::SOL_SOCKET || cmsg.ty != libc::SCM_RIGHTS {
                continue;
            }
            for raw in cmsg.data.chunks_exact(size_of::<RawFd>()) {
                let mut bytes = [0u8; size_of::<RawFd>()];
                bytes.copy_from_slice(raw);
                let fd = RawFd::from_ne_bytes(bytes);
                if fd >= 0 {
                    // SAFETY: the kernel installed this descriptor in our table for this
                    // message (SCM_RIGHTS); nothing else owns it, and it is wrapped once.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
    if truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("descriptors truncated (MSG_CTRUNC): more than {MAX_FDS} sent in one message"),
        ));
    }
    Ok((to_len(got), fds))
}

/// The peer's credentials on a connected unix socket, as the kernel recorded them at
/// `connect` (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// `SO_PEERCRED` of `sock`.
pub fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable ucred of `len` bytes for the call; the kernel writes at
    // most `len` bytes and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    super::io::cvt(ret)?;
    Ok(PeerCred {
        pid: u32::try_from(cred.pid).unwrap_or(0),
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn sockets_cross_a_socket_and_stay_the_same_open_file() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut near, far) = UnixStream::pair().unwrap();
        let (spare, _) = UnixStream::pair().unwrap();
        let sent = send_with_fds(a.as_fd(), b"fds\n", &[far.as_fd(), spare.as_fd()]).unwrap();
        assert_eq!(sent, 4);
        drop(far);
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"fds\n");
        assert_eq!(fds.len(), 2);
        // The received descriptor is the same socket: what `near` writes, it reads.
        let mut got = UnixStream::from(fds.into_iter().next().unwrap());
        near.write_all(b"weft").unwrap();
        let mut text = [0u8; 4];
        got.read_exact(&mut text).unwrap();
        assert_eq!(&text, b"weft");
    }

    #[test]
    fn plain_bytes_end_of_stream_and_limits() {
        let (a, b) = UnixStream::pair().unwrap();
        send_with_fds(a.as_fd(), b"x", &[]).unwrap();
        let mut buf = [0u8; 4];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fds.len()), (1, 0));
        assert!(send_with_fds(a.as_fd(), b"", &[]).is_err());
        let many: Vec<BorrowedFd<'_>> = (0..=MAX_FDS).map(|_| a.as_fd()).collect();
        assert!(send_with_fds(a.as_fd(), b"x", &many).is_err());
        drop(a);
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn peer_credentials_are_ours() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_cred(a.as_fd()).unwrap();
        assert_eq!(cred.pid, std::process::id());
        assert_eq!(cred.uid, effective_uid());
    }
}
