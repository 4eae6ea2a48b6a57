//! Plain fd I/O (`read`, `write`, `fcntl`) and the EINTR policy.
//!
//! Contract: [`retry_eintr`] is the only loop that retries an interrupted syscall; every
//! wrapper in `sys` that can be interrupted goes through it. `EAGAIN` is returned to the
//! caller as [`std::io::ErrorKind::WouldBlock`], never retried here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Runs `f` (a raw syscall returning -1 and setting errno on failure) until it does not fail
/// with `EINTR`; converts -1 to the errno as an [`io::Error`].
pub fn retry_eintr<T, F>(mut f: F) -> io::Result<T>
where
    T: Copy + PartialEq + From<i8>,
    F: FnMut() -> T,
{
    loop {
        let ret = f();
        if ret != T::from(-1) {
            return Ok(ret);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// Converts the return value of a syscall that is not retried (-1 means errno).
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Converts a non-negative `ssize_t` result to `usize`.
pub(crate) fn to_len(ret: libc::ssize_t) -> usize {
    // The kernel never returns a negative length other than -1, which retry_eintr turned into
    // an error before this is called.
    usize::try_from(ret).unwrap_or(0)
}

/// `read(2)` into `buf`, EINTR retried.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let ret = retry_eintr(|| {
        // SAFETY: `buf` is a valid, exclusive byte buffer of `buf.len()` bytes for the whole
        // call and `fd` is a live descriptor borrowed for the call.
        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
    })?;
    Ok(to_len(ret))
}

/// `write(2)` of `buf`, EINTR retried.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let ret = retry_eintr(|| {
        // SAFETY: `buf` is a valid byte buffer of `buf.len()` bytes for the whole call and `fd`
        // is a live descriptor borrowed for the call.
        unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) }
    })?;
    Ok(to_len(ret))
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let wanted = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if wanted != flags {
        // SAFETY: F_SETFL takes an int of file status flags by value.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, wanted) })?;
    }
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd`.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Waits until `fd` is readable or `timeout_ms` passes (`poll(2)`); returns whether it is
/// readable. EINTR is retried (with the full timeout again).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let n = retry_eintr(|| {
        // SAFETY: `pfd` is one valid, exclusive pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) }
    })?;
    Ok(n > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn retry_eintr_passes_values_and_errors() {
        assert_eq!(retry_eintr(|| 5i32).ok(), Some(5));
        let mut calls = 0;
        let r = retry_eintr(|| {
            calls += 1;
            // Set errno to EBADF by closing an invalid fd.
            // SAFETY: closing -1 touches no descriptor; it only sets errno to EBADF.
            unsafe { libc::close(-1) }
        });
        assert_eq!(calls, 1);
        assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EBADF));
    }

    #[test]
    fn nonblocking_round_trip_on_a_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        assert!(!is_nonblocking(s.as_fd()).expect("get"));
        set_nonblocking(s.as_fd(), true).expect("set");
        assert!(is_nonblocking(s.as_fd()).expect("get"));
        let mut buf = [0u8; 16];
        let err = read(s.as_fd(), &mut buf).expect_err("nothing to read");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(!wait_readable(s.as_fd(), 0).expect("poll"));
        set_nonblocking(s.as_fd(), false).expect("clear");
        assert!(!is_nonblocking(s.as_fd()).expect("get"));
    }
}
