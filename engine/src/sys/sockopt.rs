//! Integer socket options, for the ones `socket2` has no setter for (UDP_GRO, UDP_SEGMENT,
//! SO_RCVBUFFORCE / SO_SNDBUFFORCE, SO_NO_CHECK).
//!
//! Contract: `set_int` / `get_int` pass one `c_int` by pointer with its exact length; the
//! kernel never reads or writes past `optlen`, so these are sound for any level and name.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::io::cvt;

/// `UDP_MAX_SEGMENTS` (include/linux/udp.h): the most segments one UDP_SEGMENT send may carry.
pub const UDP_MAX_SEGMENTS: usize = 64;

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
pub fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = socklen_of_int();
    // SAFETY: `value` is a live c_int on the stack and `len` is exactly its size; the kernel
    // only reads `len` bytes from the pointer during the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    };
    cvt(ret).map(drop)
}

/// `getsockopt(fd, level, name, &value, &len)` for an int-valued option.
pub fn get_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = socklen_of_int();
    // SAFETY: `value` is a live, exclusive c_int and `len` holds its size; the kernel writes
    // at most `len` bytes into it and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    cvt(ret)?;
    Ok(value)
}

fn socklen_of_int() -> libc::socklen_t {
    // 4 always fits a socklen_t.
    libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn int_option_round_trip() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        set_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 65536).expect("set SO_RCVBUF");
        // The kernel doubles the value for its bookkeeping (socket(7)).
        assert_eq!(
            get_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF).expect("get"),
            131072
        );
        let err = set_int(s.as_fd(), libc::SOL_UDP, 9999, 1).expect_err("unknown option");
        assert_eq!(err.raw_os_error(), Some(libc::ENOPROTOOPT));
    }
}
